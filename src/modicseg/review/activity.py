"""Reading time of one case that leaves out the reader's breaks.

Wall time from opening a case to saving it counts a coffee break as reading. With
``idle_after_s`` set, only the time between activity marks counts (the napari widget marks every
mouse press, move, wheel turn and key press), each gap up to ``idle_after_s``: a reader who
walks away adds at most that much. Without it the clock is plain wall time (scripts, tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: default idle limit of the review widget (s): longer than a reader looks at one slice unmoving
IDLE_AFTER_S = 120.0


@dataclass
class ActivityClock:
    """Active seconds since the clock started or was last reset (see module docstring)."""

    idle_after_s: float | None = None
    now: Callable[[], float] = time.monotonic
    counted: float = 0.0
    last: float = field(init=False)

    def __post_init__(self) -> None:
        self.last = self.now()

    def _gap(self, at: float) -> float:
        gap = at - self.last
        return gap if self.idle_after_s is None else min(gap, self.idle_after_s)

    def touch(self) -> None:
        """Mark activity now."""
        at = self.now()
        self.counted += self._gap(at)
        self.last = at

    def elapsed(self, reset: bool = True) -> float:
        """Active seconds so far (the open gap counts up to ``idle_after_s``); ``reset`` restarts."""
        at = self.now()
        seconds = self.counted + self._gap(at)
        if reset:
            self.counted, self.last = 0.0, at
        return seconds
