"""The context manager: snapshots of interrupted generations, kept until the syscall resumes.

When a slice ends mid-generation the backend returns a ``Snapshot``; the dispatcher hands it
here and takes it back when the syscall runs again. State snapshots (llama.cpp's KV cache) are
megabytes each, so the store has a byte budget: past it, the oldest state snapshots are
downgraded to text snapshots (their model state dropped, the generated text and token ids kept),
which every backend can resume by recomputation. Nothing generated is ever lost.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from aios.backends.base import Snapshot
from aios.errors import ConfigError


@dataclass(slots=True)
class ContextStats:
    """Counters of the context manager."""

    saved: int = 0
    restored: int = 0
    dropped: int = 0
    downgraded: int = 0
    held: int = 0
    held_bytes: int = 0
    peak_bytes: int = 0


class ContextManager:
    """Holds one snapshot per preempted syscall, within a byte budget."""

    def __init__(self, *, max_bytes: int = 512 * 1024 * 1024):
        if max_bytes <= 0:
            raise ConfigError(
                f"context max_bytes must be positive, got {max_bytes}", field="context_max_bytes"
            )
        self.max_bytes = max_bytes
        self._snaps: OrderedDict[str, Snapshot] = OrderedDict()
        self._bytes = 0
        self.stats = ContextStats()

    def save(self, syscall_id: str, snap: Snapshot) -> None:
        """Keep ``snap`` for ``syscall_id`` until ``restore``."""
        self.drop(syscall_id)
        self._snaps[syscall_id] = snap
        self._bytes += snap.nbytes
        self.stats.saved += 1
        self._enforce_budget()
        self._update()

    def restore(self, syscall_id: str) -> Snapshot | None:
        """Take back the snapshot of ``syscall_id`` (None if it never was cut)."""
        snap = self._snaps.pop(syscall_id, None)
        if snap is not None:
            self._bytes -= snap.nbytes
            self.stats.restored += 1
            self._update()
        return snap

    def drop(self, syscall_id: str) -> None:
        """Forget the snapshot of a syscall that will not resume (cancelled, failed)."""
        snap = self._snaps.pop(syscall_id, None)
        if snap is not None:
            self._bytes -= snap.nbytes
            self.stats.dropped += 1
            self._update()

    def _enforce_budget(self) -> None:
        for snap in list(self._snaps.values()):
            if self._bytes <= self.max_bytes:
                break
            if snap.kind != "state":
                continue
            before = snap.nbytes
            downgrade = getattr(snap.data, "downgrade", None)
            snap.kind = "text"
            snap.data = downgrade() if callable(downgrade) else None
            self._bytes -= before - snap.nbytes
            self.stats.downgraded += 1

    def _update(self) -> None:
        self.stats.held = len(self._snaps)
        self.stats.held_bytes = self._bytes
        self.stats.peak_bytes = max(self.stats.peak_bytes, self._bytes)
