"""Signals: Ctrl-C, SIGTERM and SIGHUP stop the bench and everything it started, in order."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Processes started meanwhile keep SIGINT blocked: Ctrl-C at the terminal reaches only
    us, and we stop them in order. Needed for multiprocessing children, which share our
    process group (the stack's children each have a group of their own)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interruptible() -> None:
    """Ctrl-C even when started from a shell that ignored SIGINT (a background job);
    SIGTERM and SIGHUP stop everything the same way."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)


def ignore_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # cleanup is bounded: let it finish

