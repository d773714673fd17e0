"""A device worker's journal of model calls in progress, on local disk, read back after the process died.

When a worker process dies (killed, out of memory, segfault, or ended by the watchdog), the tasks it had taken
come back on its queue; the ones that were inside a model call at that moment are the suspects of a poison
event. Each call writes one line when it starts and one when it ends (an append, no Redis round trip); the next
process of the same queue reads the calls that never ended, counts a crash for each of their tasks, and starts a
fresh journal. Tasks that were merely waiting are not blamed for another's crash.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


class CallJournal:
    """Append-only lines `+ <task_id>` / `- <task_id>`; unfinished() is what a dead process left open."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None

    def unfinished(self) -> list[str]:
        """Task ids whose call started and never ended, in the journal a previous process left here."""
        open_calls: dict[str, int] = {}
        for mark, task_id in self._lines():
            if mark == "+":
                open_calls[task_id] = open_calls.get(task_id, 0) + 1
            elif mark == "-" and open_calls.get(task_id):
                open_calls[task_id] -= 1
        return [task_id for task_id, count in open_calls.items() if count > 0]

    def blamed(self) -> list[str]:
        """Task ids a previous process named as what ended it (the watchdog knows the call that overran)."""
        return list(dict.fromkeys(task_id for mark, task_id in self._lines() if mark == "!"))

    def _lines(self) -> list[tuple[str, str]]:
        if not self.path.exists():
            return []
        lines = (line.partition(" ") for line in self.path.read_text(errors="replace").splitlines())
        return [(mark, task_id) for mark, _, task_id in lines if task_id]

    def open(self) -> CallJournal:
        """Start a fresh journal for this process (after its predecessor's was read)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        return self

    def started(self, task_ids: list[str]) -> None:
        self._write("+", task_ids)

    def finished(self, task_ids: list[str]) -> None:
        self._write("-", task_ids)

    def blame(self, task_ids: list[str]) -> None:
        """Name the tasks whose call is about to end this process."""
        self._write("!", task_ids)

    def _write(self, mark: str, task_ids: list[str]) -> None:
        if self._fd is None or not task_ids:
            return
        data = "".join(f"{mark} {task_id}\n" for task_id in task_ids).encode()
        with self._lock:
            os.write(self._fd, data)  # one write(2): survives the process (not the host) dying right after

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
