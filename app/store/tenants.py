"""Tenants, their API keys and quotas (DESIGN.md, "Tenants and keys").

A key is ``dsk_`` and 256 random bits; Redis keeps only its SHA-256 digest (the name of
its record) and a short display prefix, so a copy of Redis holds no usable key. A key is
found by its digest and then compared in constant time; revoking deletes its record, so
the next request with it is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from redis.asyncio import Redis as AsyncRedis

from app.store import lua
from app.store.base import StoreBase
from app.store.curve import BYTES_PER_POINT, check_curve_query, curve_document
from app.store.keys import KeyLayout, is_job_id
from app.store.records import QuotaExceeded, decode_hash, text

if TYPE_CHECKING:
    from app.settings import Settings

KEY_PREFIX = "dsk_"
KEY_BYTES = 32  # 256 bits of secrets.token_urlsafe
DISPLAY_CHARS = 8  # "dsk_" and the first 4 characters of the random part
TENANT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TENANT_NAME = re.compile(TENANT_NAME_PATTERN)
TENANT_NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"

# Each quota and what the service does over it (DESIGN.md's table).
QUOTAS: dict[str, str] = {
    "max_active_jobs": "queued + running jobs; more: 429",
    "max_running_jobs": "jobs sent to the workers at once; the rest wait, queued",
    "submissions_per_minute": "submissions in any 60 seconds; more: 429",
    "max_job_seconds": "a job's estimated seconds; more: 422 with the estimate",
    "max_dataset_bytes": "uploaded datasets, all together; more: 413",
    "max_sweep_trials": "trials in one sweep; more: 422",
}
QUOTA_FIELD = "quota."  # a tenant hash's fields for the operator's own values


def _whole(value: Any) -> Any:
    """5.0 -> 5 (JSON encoders write integral floats); 5.5 and "5" stay refused."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


MAX_QUOTA = 2**53  # every count stays exact through Redis's strings and Lua's doubles
Count = Annotated[int, BeforeValidator(_whole), Field(le=MAX_QUOTA)]


class QuotaChanges(BaseModel):
    """The operator's quotas for a tenant: a number sets one, null puts it back to the
    deployment's default, an absent one is left as it is."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_active_jobs: Count | None = Field(None, ge=0, description=QUOTAS["max_active_jobs"])
    max_running_jobs: Count | None = Field(None, ge=1, description=QUOTAS["max_running_jobs"])
    submissions_per_minute: Count | None = Field(
        None, ge=0, description=QUOTAS["submissions_per_minute"]
    )
    max_job_seconds: float | None = Field(
        None, gt=0, le=MAX_QUOTA, allow_inf_nan=False, description=QUOTAS["max_job_seconds"]
    )
    max_dataset_bytes: Count | None = Field(None, ge=0, description=QUOTAS["max_dataset_bytes"])
    max_sweep_trials: Count | None = Field(None, ge=1, description=QUOTAS["max_sweep_trials"])

    def changes(self) -> dict[str, int | float | None]:
        """The quotas the operator named, with their new values (None: the default)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class TenantNotFound(LookupError):
    def __init__(self, tenant: str) -> None:
        super().__init__(f"tenant {tenant!r} not found")
        self.tenant = tenant


class TenantExists(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a tenant named {name!r} already exists")
        self.name = name


def default_quotas(settings: Settings) -> dict[str, int | float]:
    """Every tenant's quotas unless the operator set its own."""
    return {
        "max_active_jobs": settings.quota_max_active_jobs,
        "max_running_jobs": settings.quota_max_running_jobs,
        "submissions_per_minute": settings.quota_submissions_per_minute,
        "max_job_seconds": settings.max_job_seconds,
        "max_dataset_bytes": settings.quota_max_dataset_bytes,
        "max_sweep_trials": settings.quota_max_sweep_trials,
    }


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()


def check_tenant_name(name: str) -> str:
    if not isinstance(name, str) or TENANT_NAME.search(name) is None:
        raise ValueError(f"a tenant's name is {TENANT_NAME_RULE}, got {name!r}")
    return name


def _number(value: str) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() else number


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: str
    overrides: dict[str, int | float] = field(default_factory=dict)  # the operator's own

    def quotas(self, defaults: Mapping[str, int | float]) -> dict[str, int | float]:
        return {**defaults, **self.overrides}

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> Tenant:
        overrides = {
            name[len(QUOTA_FIELD):]: _number(value)
            for name, value in fields.items()
            if name.startswith(QUOTA_FIELD) and name[len(QUOTA_FIELD):] in QUOTAS
        }
        return cls(fields["id"], fields["name"], fields.get("created_at", ""), overrides)


@dataclass(frozen=True)
class Principal:
    """Who a request's key speaks for."""

    tenant: Tenant
    key_id: str


def plausible_digest(api_key: str) -> str | None:
    """The digest to look a key up by; None for what cannot be a key of ours."""
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 200:
        return None
    return key_digest(api_key)


def principal_of(digest: str, found: list[Any]) -> Principal | None:
    """The Principal from lua.AUTHENTICATE's answer ({key record, tenant}), after comparing
    the record's digest with the presented key's in constant time."""
    record, tenant = found
    if not record or not tenant:
        return None
    fields = decode_hash(dict(zip(record[::2], record[1::2], strict=True)))
    if not hmac.compare_digest(fields.get("digest", ""), digest):
        return None
    tenant_fields = decode_hash(dict(zip(tenant[::2], tenant[1::2], strict=True)))
    return Principal(Tenant.from_hash(tenant_fields), fields["key_id"])


class KeyCheck:
    """The API's per-request key check, on an asyncio Redis client: the request's own
    event loop awaits the one round trip, with no hop to a worker thread."""

    def __init__(self, client: AsyncRedis, prefix: str) -> None:
        self._client = client
        self.keys = KeyLayout(prefix)
        self._auth = client.register_script(lua.AUTHENTICATE)
        self._authenticated_curve = client.register_script(lua.AUTHENTICATED_CURVE)

    async def authenticate(self, api_key: str) -> Principal | None:
        digest = plausible_digest(api_key)
        if digest is None:
            return None
        found = await self._auth(keys=[self.keys.api_key(digest)], args=[self.keys.prefix])
        return principal_of(digest, found)

    async def curve(self, api_key: str, job_id: str, since: int, max_points: int
                    ) -> tuple[Principal | None, dict[str, Any] | None]:
        """A curve poll in one round trip (lua.AUTHENTICATED_CURVE): the key's principal
        (None: unknown or revoked) and, when the job is its tenant's, the curve (as
        JobStore.read_curve answers it, with NumPy arrays for orjson)."""
        check_curve_query(since, max_points)
        digest = plausible_digest(api_key)
        if digest is None:
            return None, None
        if not is_job_id(job_id):
            return await self.authenticate(api_key), None
        record, tenant, found = await self._authenticated_curve(
            keys=[self.keys.api_key(digest), *self.keys.curve_keys(job_id)],
            args=[self.keys.prefix, min(since, 2**40) * BYTES_PER_POINT],
        )
        principal = principal_of(digest, [record, tenant])
        if principal is None or not found:
            return principal, None
        return principal, curve_document(found, since, max_points, arrays=True)


class TenantStore(StoreBase):
    """The operator's and the authenticator's view: tenants, keys, quotas, usage."""

    def _register(self) -> None:
        super()._register()
        self._create_tenant = self._script(lua.CREATE_TENANT)
        self._add_key = self._script(lua.ADD_KEY)
        self._revoke = self._script(lua.REVOKE_KEY)
        self._auth = self._script(lua.AUTHENTICATE)
        self._set_quotas = self._script(lua.SET_QUOTAS)
        self._count_submission = self._script(lua.COUNT_SUBMISSION)

    def _new_key_args(self) -> tuple[str, list[str]]:
        api_key = new_api_key()
        key_id = "key_" + secrets.token_hex(8)
        return api_key, [key_id, key_digest(api_key), api_key[:DISPLAY_CHARS], self._now()]

    def create_tenant(
        self, name: str, quotas: QuotaChanges | None = None, *, tenant_id: str | None = None
    ) -> tuple[Tenant, str, str]:
        """A new tenant with its first key: (tenant, the key, its key_id). The key is
        not kept: this is the one time it is seen. Raises TenantExists. `tenant_id`: a
        chosen id (tests), else a random one."""
        check_tenant_name(name)
        changes = quotas.changes() if quotas else {}
        overrides = {q: v for q, v in changes.items() if v is not None}
        tenant_id = tenant_id or "tnt_" + secrets.token_hex(8)
        api_key, key_args = self._new_key_args()
        quota_args = [item for q, v in overrides.items() for item in (QUOTA_FIELD + q, v)]
        made = self._create_tenant(
            keys=[self.keys.tenant_names, self.keys.tenant(tenant_id), self.keys.tenants,
                  self.keys.key_ids, self.keys.api_key(key_args[1]),
                  self.keys.tenant_keys(tenant_id)],
            args=[name, tenant_id, *key_args, *quota_args],
        )
        if not made:
            raise TenantExists(name)
        return Tenant(tenant_id, name, key_args[3], dict(overrides)), api_key, key_args[0]

    def create_key(self, tenant_id: str) -> tuple[str, str]:
        """Another key for the tenant: (key_id, the key). Raises TenantNotFound."""
        api_key, key_args = self._new_key_args()
        made = self._add_key(
            keys=[self.keys.tenant(tenant_id), self.keys.key_ids,
                  self.keys.api_key(key_args[1]), self.keys.tenant_keys(tenant_id)],
            args=[tenant_id, *key_args],
        )
        if not made:
            raise TenantNotFound(tenant_id)
        return key_args[0], api_key

    def revoke_key(self, key_id: str) -> bool:
        """Delete the key's record, so it is refused from the next request on; False for
        an unknown key id."""
        return bool(self._revoke(keys=[self.keys.key_ids], args=[key_id, self.keys.prefix]))

    def authenticate(self, api_key: str) -> Principal | None:
        """The tenant a key speaks for, or None for an unknown or revoked key (one round
        trip: the key's record and its tenant's hash)."""
        digest = plausible_digest(api_key)
        if digest is None:
            return None
        found = self._auth(keys=[self.keys.api_key(digest)], args=[self.keys.prefix])
        return principal_of(digest, found)

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        fields = decode_hash(self._redis.hgetall(self.keys.tenant(tenant_id)))
        return Tenant.from_hash(fields) if "id" in fields else None

    def find_tenant(self, id_or_name: str) -> Tenant | None:
        """A tenant by its id or its name."""
        tenant = self.get_tenant(id_or_name)
        if tenant is None:
            tenant_id = self._redis.hget(self.keys.tenant_names, id_or_name)
            tenant = self.get_tenant(text(tenant_id)) if tenant_id else None
        return tenant

    def list_tenants(self) -> list[Tenant]:
        ids = [text(t) for t in self._redis.zrange(self.keys.tenants, 0, -1)]
        pipe = self._redis.pipeline(transaction=False)
        for tenant_id in ids:
            pipe.hgetall(self.keys.tenant(tenant_id))
        return [Tenant.from_hash(decode_hash(raw)) for raw in pipe.execute() if raw]

    def list_keys(self, tenant_id: str) -> list[dict[str, str]]:
        """The tenant's keys: key_id, prefix, created_at (never the key)."""
        key_ids = sorted(text(k) for k in self._redis.smembers(self.keys.tenant_keys(tenant_id)))
        digests = self._redis.hmget(self.keys.key_ids, key_ids) if key_ids else []
        pipe = self._redis.pipeline(transaction=False)
        for digest in digests:
            pipe.hmget(self.keys.api_key(text(digest or b"-")), "key_id", "prefix", "created_at")
        rows = [row for row in pipe.execute() if row[0] is not None]
        return [
            {"key_id": text(k), "prefix": text(p), "created_at": text(c)} for k, p, c in rows
        ]

    def set_quotas(self, tenant_id: str, quotas: QuotaChanges) -> Tenant:
        """Set the tenant's own quotas (None: back to the default); a raised
        max_running_jobs sends waiting jobs at once. Raises TenantNotFound."""
        changes = quotas.changes()
        pairs = [item for name, value in changes.items()
                 for item in (QUOTA_FIELD + name, "" if value is None else value)]
        if not self._set_quotas(keys=[self.keys.tenant(tenant_id)], args=pairs):
            raise TenantNotFound(tenant_id)
        if "max_running_jobs" in changes:
            self.dispatch_waiting(tenant_id)
        tenant = self.get_tenant(tenant_id)
        if tenant is None:
            raise TenantNotFound(tenant_id)
        return tenant

    def count_submission(self, tenant_id: str, per_minute: int, what: str) -> None:
        """Count one submission of `what` (a kind of work, as "gradcheck") against the
        tenant's submissions_per_minute, or raise QuotaExceeded when it is at the limit."""
        member = f"{what}:{secrets.token_hex(8)}"
        counted = self._count_submission(keys=[self.keys.tenant_submissions(tenant_id)],
                                         args=[per_minute, member])
        if counted[0] == -1:
            raise QuotaExceeded.refusal(counted[1:])

    def usage(self, tenant_id: str) -> dict[str, int]:
        """What counts against the tenant's quotas now."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcard(self.keys.tenant_status_index(tenant_id, "queued"))
        pipe.zcard(self.keys.tenant_status_index(tenant_id, "running"))
        pipe.zcard(self.keys.tenant_waiting(tenant_id))
        pipe.scard(self.keys.tenant_slots(tenant_id))
        pipe.zcount(self.keys.tenant_submissions(tenant_id), "(" + str(self._redis_ms() - 60_000),
                    "+inf")
        pipe.get(self.keys.tenant_dataset_bytes(tenant_id))
        queued, running, waiting, slots, recent, uploads = pipe.execute()
        return {
            "active_jobs": queued + running,
            "queued_jobs": queued,
            "running_jobs": running,
            "waiting_jobs": waiting,
            "dispatched_jobs": slots,
            "submissions_last_minute": recent,
            "dataset_bytes": int(uploads or 0),
        }

    def _redis_ms(self) -> int:
        seconds, micros = self._redis.time()
        return int(seconds) * 1000 + int(micros) // 1000
