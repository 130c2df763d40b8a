"""A one-line progress bar with the running score and an ETA (no dependency; redraws on a TTY)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """``update(success)`` after each task; redraws in place on a TTY, one line per task otherwise."""

    def __init__(
        self,
        total: int,
        *,
        label: str = "",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        width: int = 24,
        done: int = 0,
        successes: int = 0,
    ):
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.width = width
        #: Tasks finished before this run (resumed): shown, but not used for the ETA.
        self.done_before = done
        self.done = done
        self.successes = successes
        self.started = clock()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def eta(self) -> float | None:
        """Seconds left at this run's pace (None before the first task of this run finishes)."""
        ran = self.done - self.done_before
        if ran <= 0:
            return None
        return (self.clock() - self.started) / ran * (self.total - self.done)

    def line(self) -> str:
        """The bar as text: ``label [####....] 3/10  score 33.3%  elapsed 1m02s  ETA 2m20s``."""
        frac = self.done / self.total if self.total else 1.0
        filled = round(frac * self.width)
        score = self.successes / self.done if self.done else 0.0
        eta = self.eta()
        return (
            f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}"
            f"  score {score:.1%}  elapsed {_duration(self.clock() - self.started)}"
            f"  ETA {'?' if eta is None else _duration(eta)}"
        ).strip()

    def update(self, success: bool) -> None:
        """Count one finished task and redraw."""
        self.done += 1
        self.successes += bool(success)
        self.draw()

    def draw(self) -> None:
        """Write the bar."""
        if self._tty:
            self.stream.write("\r" + self.line() + "\x1b[K")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
