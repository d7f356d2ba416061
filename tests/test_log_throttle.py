"""LogThrottle: one line per key and interval, with a count of the lines held back."""

from __future__ import annotations

import logging

import pytest

from aldero_fastapi.log_throttle import LogThrottle


class FakeClock:
    """A monotonic clock that tests move by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_line_passes() -> None:
    throttle = LogThrottle(10.0, clock=FakeClock())

    assert throttle.allow("outage") == 0


def test_repeats_held_then_counted() -> None:
    clock = FakeClock()
    throttle = LogThrottle(10.0, clock=clock)

    first = throttle.allow("outage")
    repeats = [throttle.allow("outage") for _ in range(3)]
    clock.now += 9.9
    still_held = throttle.allow("outage")
    clock.now += 0.1
    reported = throttle.allow("outage")
    right_after = throttle.allow("outage")

    assert first == 0
    assert repeats == [None, None, None]
    assert still_held is None
    assert reported == 4
    assert right_after is None


def test_keys_independent() -> None:
    throttle = LogThrottle(10.0, clock=FakeClock())

    throttle.allow(("unavailable", "/a"))

    assert throttle.allow(("unavailable", "/b")) == 0
    assert throttle.allow(("unavailable", "/a")) is None


def test_keys_bounded() -> None:
    throttle = LogThrottle(10.0, max_keys=2, clock=FakeClock())

    for key in ("a", "b", "c"):
        throttle.allow(key)

    # "a" was forgotten, so its next line passes as a first one.
    assert throttle.allow("a") == 0
    assert throttle.allow("c") is None


def test_note_reports_held_lines() -> None:
    throttle = LogThrottle(10.0, clock=FakeClock())

    assert throttle.note(0) == ""
    assert throttle.note(3) == " (3 more like it in the last 10 s)"


def test_log_appends_held_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    throttle = LogThrottle(10.0, clock=clock)
    logger = logging.getLogger("tests.log_throttle")

    with caplog.at_level(logging.WARNING, logger="tests.log_throttle"):
        for _ in range(3):
            throttle.log(logger, logging.WARNING, "outage", "Billing is down for user %s", "alice")
        clock.now += 10
        throttle.log(logger, logging.WARNING, "outage", "Billing is down for user %s", "bob")

    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "Billing is down for user alice",
        "Billing is down for user bob (2 more like it in the last 10 s)",
    ]
