"""The reading clock: wall time without an idle limit; breaks cut to the limit with one."""

from __future__ import annotations

import pytest

from modicseg.review.activity import ActivityClock


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_without_an_idle_limit_the_clock_is_wall_time() -> None:
    t = FakeTime()
    clock = ActivityClock(now=t)
    t.t += 50.0
    clock.touch()
    t.t += 4000.0
    assert clock.elapsed() == pytest.approx(4050.0)
    t.t += 5.0
    assert clock.elapsed(reset=False) == pytest.approx(5.0)


def test_gaps_between_activity_count_up_to_the_idle_limit() -> None:
    t = FakeTime()
    clock = ActivityClock(idle_after_s=120.0, now=t)
    for gap in (10.0, 10.0, 600.0, 10.0):  # a 10-minute break in the middle
        t.t += gap
        clock.touch()
    t.t += 900.0  # left the case open and walked away
    assert clock.elapsed(reset=False) == pytest.approx(10 + 10 + 120 + 10 + 120)
    assert clock.elapsed() == pytest.approx(270.0)
    assert clock.elapsed() == 0.0
