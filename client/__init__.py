"""Descent's Python client and the `descent` command (client.cli)."""

from client.api import TERMINAL, Descent, DescentError, Event, TimedOut

__all__ = ["TERMINAL", "Descent", "DescentError", "Event", "TimedOut"]
