"""Token bytes to streamed text for the embedded backend: whole characters, stop strings, hold-back.

A token's bytes may end in the middle of a UTF-8 character, and a stop string may arrive split
over several tokens; both mean some text must wait before it can be shown. ``TextStream`` keeps
that waiting part, so that what it has released is always a prefix of the final text: the deltas
a caller sees join to exactly the answer, whatever the cuts between tokens or time slices.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

#: "none": release text as soon as it is safe; "json": hold the output while it may still be a
#: JSON tool call (it starts with "{"); "all": hold everything until the end (forced tool calls).
HoldMode = Literal["none", "json", "all"]


@dataclass(slots=True, frozen=True)
class StreamState:
    """What a ``TextStream`` needs to continue after a cut (kept in a snapshot)."""

    #: Trailing bytes of an incomplete UTF-8 character.
    pending: bytes = b""
    #: All text decoded so far (stop-truncated), released or not.
    text: str = ""
    #: How many characters of ``text`` were released to the caller.
    released: int = 0
    #: For hold mode "json": None until the first non-blank character decides it.
    looks_like_json: bool | None = None
    #: A stop string was seen: nothing more is released, even after a resume.
    stopped: bool = False


class TextStream:
    """Turns token bytes into safe text deltas; ``text[:released]`` is final."""

    __slots__ = ("_hold", "_looks_like_json", "_pending", "_released", "_stops", "_text", "stopped")

    def __init__(
        self, *, stop: Sequence[str] = (), hold: HoldMode = "none", state: StreamState | None = None
    ):
        state = state or StreamState()
        self._stops = tuple(s for s in stop if s)
        self._hold: HoldMode = hold
        self._pending = state.pending
        self._text = state.text
        self._released = state.released
        self._looks_like_json = state.looks_like_json
        #: True once a stop string was seen; the text ends before it.
        self.stopped = state.stopped

    @property
    def text(self) -> str:
        """Everything decoded so far, including text not yet released."""
        return self._text

    @property
    def released_text(self) -> str:
        """The text released so far: a prefix of the final answer."""
        return self._text[: self._released]

    def state(self) -> StreamState:
        """The state to store in a snapshot."""
        return StreamState(self._pending, self._text, self._released, self._looks_like_json, self.stopped)

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that may now be released (maybe "")."""
        if self.stopped:
            return ""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        decoder.setstate((self._pending, 0))
        new = decoder.decode(piece)
        self._pending = decoder.getstate()[0]
        if not new:
            return ""
        before = len(self._text)
        self._text += new
        cut = self._find_stop(before)
        if cut is not None:
            self._text = self._text[:cut]
            self.stopped = True
            # A stop ends the answer: what is left is final, unless a tool call may still be held.
            return self._release(len(self._text)) if not self._holding() else ""
        return self._release(self._safe_end())

    def finish(self, *, release: bool = True) -> str:
        """End of generation: release what is held (unless ``release`` is False, for a tool call)."""
        if self._pending and not self.stopped:
            # A character cut off by the end of output: show the replacement, never drop bytes.
            self._text += self._pending.decode("utf-8", errors="replace")
        self._pending = b""
        if not release:
            return ""
        return self._release(len(self._text))

    def _release(self, end: int) -> str:
        if end <= self._released:
            return ""
        delta = self._text[self._released : end]
        self._released = end
        return delta

    def _holding(self) -> bool:
        if self._hold == "all":
            return True
        if self._hold == "none":
            return False
        if self._looks_like_json is None:
            stripped = self._text.lstrip()
            if not stripped:
                return True
            self._looks_like_json = stripped.startswith("{")
        return self._looks_like_json

    def _find_stop(self, before: int) -> int | None:
        if self._hold == "all":
            return None
        best: int | None = None
        for stop in self._stops:
            # A match cannot start inside released text (see _safe_end), nor end before `before`.
            start = max(self._released, before - len(stop) + 1)
            at = self._text.find(stop, start)
            if at != -1 and (best is None or at < best):
                best = at
        return best

    def _safe_end(self) -> int:
        if self._holding():
            return self._released
        end = len(self._text)
        # Hold back the longest tail that could be the start of a stop string.
        for stop in self._stops:
            for k in range(min(len(stop) - 1, end - self._released), 0, -1):
                if self._text.endswith(stop[:k]):
                    end = min(end, len(self._text) - k)
                    break
        return end
