"""A child process that dies with its launcher, runs in its own process group and stops in order."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
POLL = 0.05

T = TypeVar("T")


class StackError(RuntimeError):
    """A process of the stack could not start, or died, or never became ready."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def accepts_connections(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    watch: Sequence[Child] = (),
    interval: float = POLL,
) -> T:
    """Poll `condition` until it returns something truthy and return that.

    Raises StackError naming `what` when `timeout` seconds pass first, or at once when
    a process in `watch` exits (it never will be ready then).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for child in watch:
            status = child.exit_status()
            if status is not None:
                raise StackError(f"{child.name} exited ({status}) while waiting for {what}"
                                 + child.log_tail())
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def die_with_parent(death_signal: int) -> Callable[[], None] | None:
    """A preexec_fn that has the kernel send `death_signal` to the child when we die.

    Linux only (prctl PR_SET_PDEATHSIG); None elsewhere. The signal comes when the thread
    that started the child ends, so start children from a thread that lives as long as the
    launcher: the main thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent:  # the launcher died before prctl: act as if after
            os.kill(os.getpid(), death_signal)

    return preexec


def exit_status(pid: int) -> str | None:
    """How the child `pid` ended, or None while it runs; it stays unreaped (a zombie).

    Not reaping keeps the pid, and so its process group id, from being reused before
    `Child.stop` has killed what is left of the group.
    """
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    if info is None or info.si_pid == 0:
        return None
    if info.si_code == os.CLD_EXITED:
        return f"exit code {info.si_status}"
    try:
        return f"signal {signal.Signals(info.si_status).name}"
    except ValueError:
        return f"signal {info.si_status}"


class Child:
    """One command in its own process group (a terminal's Ctrl-C reaches only the
    launcher, which stops its children in order), killed by the kernel if the launcher dies.

    `log`: a file that gets the command's stdout and stderr (appended), or None to share
    the launcher's.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        death_signal: int = signal.SIGTERM,
        **popen: Any,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log = log
        output: Any = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            output = log.open("ab")
        try:
            self.process: subprocess.Popen[bytes] = subprocess.Popen(
                self.command,
                cwd=popen.pop("cwd", ROOT),
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
                process_group=0,
                preexec_fn=die_with_parent(death_signal),
                **popen,
            )
        finally:
            if output is not None:
                output.close()  # the child has its own copy

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_status(self) -> str | None:
        """None while it runs, else how it ended ("exit code 1", "signal SIGKILL")."""
        if self.process.returncode is not None:
            return f"exit code {self.process.returncode}"
        return exit_status(self.process.pid)

    def running(self) -> bool:
        return self.exit_status() is None

    def log_tail(self, size: int = 2000) -> str:
        """The end of the log file, to put in an error message ('' without a log)."""
        if self.log is None or not self.log.exists():
            return ""
        with self.log.open("rb") as file:
            file.seek(max(0, self.log.stat().st_size - size))
            tail = file.read().decode("utf-8", "replace")
        return f"\n--- the end of {self.log} ---\n{tail}"

    def stop(self, timeout: float = 10.0, forced: Callable[[], bool] = lambda: False) -> bool:
        """SIGTERM the leader and wait up to `timeout` s (or until `forced()`), then
        SIGKILL whatever is left of its process group. True when it stopped in time."""
        in_time = True
        if self.process.returncode is None:
            if self.running():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while self.running() and not forced():
                    if time.monotonic() > deadline:
                        break
                    time.sleep(POLL)
                in_time = not self.running()
            # The leader is a zombie or stuck, so the group id is still ours: kill the rest.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()
        return in_time

    def __repr__(self) -> str:
        state = self.exit_status() or "running"
        return f"<{type(self).__name__} {self.name} pid={self.pid} {state}>"
