"""What a job trains on, by the name its spec stores: a built-in dataset's name, or an
upload's id. Each process reads a built-in once and an upload once per digest."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from functools import lru_cache
from typing import Any

from app.store.keys import is_dataset_id
from app.store.records import StoreError
from app.store.uploads import UploadStore
from trainer import Dataset, DatasetError, DatasetInfo, dataset_info, load_dataset
from trainer.uploads import from_bytes

logger = logging.getLogger(__name__)

CACHED_UPLOADS = 4  # stored forms each process keeps, least recently used out


@lru_cache(maxsize=4)
def builtin_dataset(name: str, data_dir: str | None) -> Dataset:
    """Built-in datasets are read once per process (Fashion-MNIST takes about a second)."""
    return load_dataset(name, data_dir)


def upload_info(document: dict[str, Any]) -> DatasetInfo:
    """An upload as a catalogue entry (its sizes, for admission and cost estimates)."""
    return DatasetInfo(
        document["id"], f"uploaded dataset {document['name']!r}", True, document["n_train"],
        document["n_test"], document["n_features"], document["n_classes"],
    )


class UploadCache:
    """Uploads' Datasets by digest: each is read from Redis once per process, and identical
    uploads (one blob) share one entry."""

    def __init__(self, entries: int = CACHED_UPLOADS) -> None:
        self.entries = entries
        self._datasets: OrderedDict[str, Dataset] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0  # blobs read from Redis, for tests and the benchmark

    def get(self, digest: str, name: str, read: Any) -> Dataset:
        with self._lock:
            found = self._datasets.get(digest)
            if found is not None:
                self._datasets.move_to_end(digest)
                return found if found.name == name else _renamed(found, name)
            started = time.perf_counter()
            blob = read(digest)
            dataset = from_bytes(blob, name)
            self.reads += 1
            logger.info("upload %s (%s): %d bytes read from the store in %.3f s", name,
                        digest[:12], len(blob), time.perf_counter() - started)
            self._datasets[digest] = dataset
            while len(self._datasets) > self.entries:
                self._datasets.popitem(last=False)
            return dataset


def _renamed(dataset: Dataset, name: str) -> Dataset:
    return replace(dataset, name=name)


uploads_cache = UploadCache()


class Datasets:
    """The datasets of jobs' specs, for a worker (or the API's gradient check)."""

    def __init__(self, uploads: UploadStore, data_dir: str | None,
                 cache: UploadCache = uploads_cache) -> None:
        self.uploads, self.data_dir, self.cache = uploads, data_dir, cache

    def _upload(self, ref: str, tenant: str | None) -> dict[str, Any]:
        document = self.uploads.dataset_by_id(ref, tenant=tenant)
        if document is None:
            raise DatasetError(f"the uploaded dataset {ref} was deleted")
        return document

    def open(self, ref: str) -> tuple[DatasetInfo, Dataset]:
        """A job's dataset and its sizes, with an upload's record read once for both."""
        if not is_dataset_id(ref):
            return dataset_info(ref, self.data_dir), builtin_dataset(ref, self.data_dir)
        document = self._upload(ref, None)
        return upload_info(document), self._read(document)

    def load(self, ref: str, tenant: str | None = None) -> Dataset:
        """The Dataset of a spec's `dataset`; DatasetError when an upload is gone."""
        if not is_dataset_id(ref):
            return builtin_dataset(ref, self.data_dir)
        return self._read(self._upload(ref, tenant))

    def _read(self, document: dict[str, Any]) -> Dataset:
        try:
            return self.cache.get(document["sha256"], document["name"],
                                  self.uploads.load_blob)
        except StoreError as exc:
            raise DatasetError(str(exc)) from exc
