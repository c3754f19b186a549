"""The bench's progress lines, stamped with seconds since it started."""

from __future__ import annotations

import time

T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)
