"""Uploaded datasets in Redis: a tenant's records by name and id, and their stored bytes in
chunks addressed by SHA-256, shared by identical uploads and deleted with the last of them."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from typing import Any

from app.store import lua
from app.store.base import StoreBase
from app.store.keys import is_dataset_id
from app.store.records import StoreError, decode_hash, text

logger = logging.getLogger(__name__)

CHUNK_BYTES = 8 << 20  # the largest string the store writes for an upload (8 MiB)


def new_dataset_id() -> str:
    return f"ds-{secrets.token_hex(10)}"


class NameTaken(StoreError):
    def __init__(self, name: str, dataset_id: str) -> None:
        super().__init__(f"the name {name!r} is taken by dataset {dataset_id}")
        self.name = name
        self.dataset_id = dataset_id


class DatasetQuotaExceeded(StoreError):
    """The tenant's uploads would take more than its max_dataset_bytes."""

    def __init__(self, limit: int, used: int, size: int) -> None:
        super().__init__(f"max_dataset_bytes is {limit:,}; the tenant's uploads take "
                         f"{used:,} and this one {size:,}")
        self.limit, self.used, self.size = limit, used, size


class DatasetInUse(StoreError):
    """A DELETE of an upload that a queued or running job (or an unfinished sweep) uses."""

    def __init__(self, dataset_id: str, kind: str, user_id: str, status: str) -> None:
        super().__init__(f"dataset {dataset_id} is used by {kind} {user_id}, which is {status}")
        self.kind, self.user_id, self.status = kind, user_id, status


def dataset_document(fields: dict[str, Any]) -> dict[str, Any]:
    """The public form of a stored upload record."""
    info = json.loads(fields["info"])
    return {"id": fields["id"], "name": fields["name"], "kind": "upload", "available": True,
            **info,
            "bytes": int(fields["bytes"]), "sha256": fields["sha256"],
            "created_at": fields["created_at"]}


class UploadStore(StoreBase):
    """What the API does with uploads, and what a worker reads of one."""

    def _register(self) -> None:
        self._create = self._script(lua.CREATE_DATASET)
        self._delete = self._script(lua.DELETE_DATASET)

    def put_blob(self, blob: bytes | bytearray) -> str:
        """Store `blob` under its SHA-256 (unless it is there already); return the digest."""
        digest = hashlib.sha256(blob).hexdigest()
        if not self._redis.exists(self.keys.blob(digest)):
            self._write_chunks(digest, blob)
        return digest

    def _write_chunks(self, digest: str, blob: bytes | bytearray) -> None:
        view = memoryview(blob)
        chunks = max(1, -(-len(blob) // CHUNK_BYTES))
        pipe = self._redis.pipeline(transaction=False)
        for index in range(chunks):
            pipe.set(self.keys.blob_chunk(digest, index),  # no copy: redis-py sends views
                     view[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES])
        # The blob's hash last: whoever sees it sees every chunk.
        pipe.hset(self.keys.blob(digest), mapping={"bytes": len(blob), "chunks": chunks})
        pipe.execute()

    def create_dataset(
        self, *, tenant: str, name: str, blob: bytes | bytearray, info: dict[str, Any],
        max_bytes: int,
    ) -> dict[str, Any]:
        """Store an upload of `tenant` named `name`; NameTaken, or DatasetQuotaExceeded when
        the tenant's uploads would pass `max_bytes`. The record and the blob's reference are
        made in one script, which also finds a blob that a concurrent DELETE of its last
        other upload removed after put_blob, and then it is written again."""
        dataset_id, now = new_dataset_id(), self._now()
        fields = {"id": dataset_id, "tenant": tenant, "name": name, "bytes": len(blob),
                  "created_at": now, "info": json.dumps(info, separators=(",", ":"))}
        for _ in range(3):
            digest = self.put_blob(blob)
            fields["sha256"] = digest
            code, *found = self._create(
                keys=[self.keys.dataset(dataset_id), self.keys.tenant_datasets(tenant),
                      self.keys.tenant_dataset_bytes(tenant), self.keys.blob(digest),
                      self.keys.blob_refs(digest)],
                args=[dataset_id, name, len(blob), max_bytes,
                      *(item for pair in fields.items() for item in pair)],
            )
            if code == 1:
                logger.info("dataset %s (%s) stored for tenant %s", dataset_id, name, tenant)
                return dataset_document(fields)
            if code == -1:
                raise NameTaken(name, text(found[0]))
            if code == -2:
                raise DatasetQuotaExceeded(max_bytes, int(found[0]), len(blob))
            self._write_chunks(digest, blob)  # -3: the blob went meanwhile
        raise StoreError(f"dataset {name!r}: its bytes kept disappearing; try again")

    def get_dataset(self, ref: str, *, tenant: str) -> dict[str, Any] | None:
        """The tenant's upload named or with the id `ref`, or None (another tenant's too)."""
        fields = self._record(ref, tenant)
        return None if fields is None else dataset_document(fields)

    def dataset_by_id(self, dataset_id: str, *, tenant: str | None = None
                      ) -> dict[str, Any] | None:
        """The upload `dataset_id` (None: unknown, or not `tenant`'s when given)."""
        fields = self._by_id(dataset_id, tenant)
        return None if fields is None else dataset_document(fields)

    def _record(self, ref: str, tenant: str) -> dict[str, Any] | None:
        dataset_id = ref if is_dataset_id(ref) else self._redis.hget(
            self.keys.tenant_datasets(tenant), ref)
        return None if dataset_id is None else self._by_id(text(dataset_id), tenant)

    def _by_id(self, dataset_id: str, tenant: str | None) -> dict[str, Any] | None:
        if not is_dataset_id(dataset_id):
            return None
        fields = decode_hash(self._redis.hgetall(self.keys.dataset(dataset_id)))
        if not fields or (tenant is not None and fields.get("tenant") != tenant):
            return None
        return fields

    def list_datasets(self, *, tenant: str) -> list[dict[str, Any]]:
        """The tenant's uploads, oldest first."""
        ids = self._redis.hvals(self.keys.tenant_datasets(tenant))
        pipe = self._redis.pipeline(transaction=False)
        for dataset_id in ids:
            pipe.hgetall(self.keys.dataset(text(dataset_id)))
        records = [decode_hash(found) for found in pipe.execute()]
        documents = [dataset_document(r) for r in records if r.get("tenant") == tenant]
        return sorted(documents, key=lambda d: (d["created_at"], d["id"]))

    def used_bytes(self, tenant: str) -> int:
        return int(self._redis.get(self.keys.tenant_dataset_bytes(tenant)) or 0)

    def delete_dataset(self, ref: str, *, tenant: str) -> bool:
        """Delete the tenant's upload `ref` (name or id); False when it has none such.
        DatasetInUse while one of its queued or running jobs, or unfinished sweeps, names
        it: checked in the same script that job creation's check of the upload races."""
        fields = self._record(ref, tenant)
        if fields is None:
            return False
        digest = fields["sha256"]
        code, *found = self._delete(
            keys=[self.keys.dataset(fields["id"]), self.keys.tenant_datasets(tenant),
                  self.keys.tenant_dataset_bytes(tenant), self.keys.blob(digest),
                  self.keys.blob_refs(digest),
                  self.keys.tenant_status_index(tenant, "queued"),
                  self.keys.tenant_status_index(tenant, "running"),
                  self.keys.active_sweeps],
            args=[fields["id"], tenant, self.keys.prefix],
        )
        if code == -1:
            kind, user, status = (text(item) for item in found)
            raise DatasetInUse(fields["id"], kind, user, status)
        if code == 1:
            logger.info("dataset %s (%s) of tenant %s deleted", fields["id"], fields["name"],
                        tenant)
        return code == 1

    def load_blob(self, digest: str) -> bytes:
        """The stored bytes of `digest`, checked against it; StoreError when absent."""
        found = self._redis.hget(self.keys.blob(digest), "chunks")
        if found is None:
            raise StoreError(f"the stored dataset {digest} is gone")
        chunks = self._redis.mget([self.keys.blob_chunk(digest, i) for i in range(int(found))])
        if any(chunk is None for chunk in chunks):
            raise StoreError(f"the stored dataset {digest} is incomplete")
        blob = b"".join(chunks)
        if hashlib.sha256(blob).hexdigest() != digest:
            raise StoreError(f"the stored dataset {digest} does not match its digest")
        return blob
