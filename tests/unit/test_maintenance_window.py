"""plugins/modules/maintenance_window.py: windows, time zones, DST, override, fail closed."""

from __future__ import annotations

import datetime as dt

import maintenance_window
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import run_module

WEEKEND_NIGHTS = [{"name": "weekend nights", "days": ["Sat", "Sun"], "start": "22:00", "end": "06:00"}]
BERLIN = "Europe/Berlin"


def run(check_mode=False, **args):
    return run_module(maintenance_window, args, check_mode=check_mode)


def test_open_window_returns_every_key():
    r = run(windows=WEEKEND_NIGHTS, timezone=BERLIN, now="2025-06-07T23:00:00", min_minutes_left=120)
    assert r["_rc"] == 0 and not r.get("failed")
    assert r["changed"] is False
    assert r["open"] is True
    assert r["in_window"] is True
    assert r["window"] == {
        "index": 0,
        "name": "weekend nights",
        "days": ["Sat", "Sun"],
        "start": "22:00",
        "end": "06:00",
        "duration_minutes": None,
    }
    assert r["opens_at"] == "2025-06-07T22:00:00+02:00"
    assert r["closes_at"] == "2025-06-08T06:00:00+02:00"
    assert r["minutes_left"] == 420
    assert r["next_open"] == "2025-06-08T22:00:00+02:00"
    assert r["now"] == "2025-06-07T23:00:00+02:00"
    assert r["timezone"] == BERLIN
    assert r["overridden"] is False
    assert r["override_reason"] is None
    assert r["reason"] == "open"
    assert r["msg"] == "maintenance window 'weekend nights' is open until 2025-06-08T06:00:00+02:00 (420 minutes left)"


def test_closed_window_fails_and_says_when_the_next_opens():
    r = run(windows=WEEKEND_NIGHTS, timezone=BERLIN, now="2025-06-04T12:00:00+02:00")
    assert r["failed"] is True
    assert r["open"] is False and r["in_window"] is False and r["reason"] == "closed"
    assert r["minutes_left"] == 0
    assert r["next_open"] == r["opens_at"] == "2025-06-07T22:00:00+02:00"
    assert r["msg"] == (
        "no maintenance window is open at 2025-06-04T12:00:00+02:00 (Europe/Berlin); the next window 'weekend nights' "
        "opens at 2025-06-07T22:00:00+02:00 and closes at 2025-06-08T06:00:00+02:00. Run again then, or set override: "
        "true with an override_reason (the change number and who approved it) to start anyway"
    )


def test_too_little_time_left_fails():
    r = run(windows=WEEKEND_NIGHTS, timezone=BERLIN, now="2025-06-08T05:30:00", min_minutes_left=60)
    assert r["failed"] is True
    assert r["in_window"] is True and r["open"] is False
    assert r["reason"] == "too_little_time"
    assert r["minutes_left"] == 30
    assert "closes at 2025-06-08T06:00:00+02:00, in 30 minutes; the upgrade needs 60" in r["msg"]


def test_override_is_allowed_logged_and_recorded(monkeypatch):
    warned = []
    original = maintenance_window.AnsibleModule.warn
    monkeypatch.setattr(
        maintenance_window.AnsibleModule, "warn", lambda self, text: (warned.append(text), original(self, text))[1]
    )
    r = run(
        windows=WEEKEND_NIGHTS,
        timezone=BERLIN,
        now="2025-06-04T12:00:00",
        override=True,
        override_reason="CHG0042 approved by the radiology IT lead",
    )
    assert not r.get("failed")
    assert r["overridden"] is True
    assert r["override_reason"] == "CHG0042 approved by the radiology IT lead"
    assert r["reason"] == "overridden"
    assert r["open"] is False
    assert len(warned) == 1
    assert warned[0].startswith("maintenance window overridden: CHG0042 approved by the radiology IT lead (without the")


def test_override_of_an_open_window_is_not_recorded():
    r = run(
        windows=WEEKEND_NIGHTS,
        timezone=BERLIN,
        now="2025-06-07T23:00:00",
        override=True,
        override_reason="override-not-needed-7f3a",
    )
    assert r["open"] is True and r["overridden"] is False and r["override_reason"] is None
    assert "override-not-needed-7f3a" not in str(r.get("warnings", ""))


def test_override_needs_a_reason():
    r = run(windows=WEEKEND_NIGHTS, override=True)
    assert r["failed"] is True and r["reason"] == "invalid_argument"
    assert "override_reason is empty" in r["msg"]


@pytest.mark.parametrize(
    ("windows", "timezone", "now", "words"),
    [
        (
            [{"days": ["Sat"], "start": "25:00", "end": "06:00"}],
            "UTC",
            None,
            "windows[0].start: '25:00' is not a time of day",
        ),
        (
            [{"days": ["Caturday"], "start": "22:00", "end": "06:00"}],
            "UTC",
            None,
            "windows[0].days: 'Caturday' is not a weekday",
        ),
        ([{"days": [], "start": "22:00", "end": "06:00"}], "UTC", None, "windows[0].days: must be a non-empty list"),
        ([{"days": ["Sat"], "start": "22:00"}], "UTC", None, "give either end"),
        ([{"days": ["Sat"], "start": "22:00", "end": "06:00", "duration_minutes": 60}], "UTC", None, "exactly one"),
        ([{"days": ["Sat"], "start": "22:00", "duration_minutes": 0}], "UTC", None, "duration_minutes: must be"),
        ([{"days": ["Sat"], "start": "22:00", "end": "22:00"}], "UTC", None, "end equals start"),
        ([{"days": ["Sat"], "start": "22:00", "end": "06:00", "stop": "x"}], "UTC", None, "unknown key(s) stop"),
        (["Sat 22:00"], "UTC", None, "windows[0]: must be a mapping"),
        (WEEKEND_NIGHTS, "Mars/Olympus_Mons", None, "timezone 'Mars/Olympus_Mons' is not a known IANA time zone"),
        (WEEKEND_NIGHTS, "UTC", "next saturday", "now: 'next saturday' is not an ISO 8601 time"),
    ],
)
def test_invalid_arguments_fail_closed(windows, timezone, now, words):
    args = {"windows": windows, "timezone": timezone}
    if now:
        args["now"] = now
    r = run(**args, override=True, override_reason="even with an override")
    assert r["failed"] is True
    assert r["reason"] == "invalid_argument"
    assert words in r["msg"]


def test_empty_windows_fail_closed():
    r = run(windows=[])
    assert r["failed"] is True and r["reason"] == "no_windows"
    assert r["window"] is None and r["next_open"] is None
    assert "no maintenance window is defined (windows is empty)" in r["msg"]


def test_crossing_midnight_is_open_on_the_next_morning():
    r = run(windows=[{"days": ["Fri"], "start": "23:00", "duration_minutes": 180}], now="2025-06-07T01:00:00Z")
    assert r["open"] is True and r["opens_at"] == "2025-06-06T23:00:00+00:00" and r["minutes_left"] == 60


def test_dst_spring_forward_night_is_an_hour_shorter():
    r = run(windows=WEEKEND_NIGHTS, timezone=BERLIN, now="2025-03-29T23:00:00")
    assert r["opens_at"] == "2025-03-29T22:00:00+01:00"
    assert r["closes_at"] == "2025-03-30T06:00:00+02:00"
    assert r["minutes_left"] == 360  # 23:00 CET -> 06:00 CEST is 6 real hours


def test_dst_autumn_night_is_an_hour_longer():
    r = run(windows=WEEKEND_NIGHTS, timezone=BERLIN, now="2025-10-25T23:00:00")
    assert r["closes_at"] == "2025-10-26T06:00:00+01:00"
    assert r["minutes_left"] == 480


def test_start_in_the_dst_gap_starts_when_the_gap_ends():
    r = run(
        windows=[{"days": [7], "start": "02:30", "duration_minutes": 60}], timezone=BERLIN, now="2025-03-30T03:10:00"
    )
    assert r["open"] is True and r["opens_at"] == "2025-03-30T03:00:00+02:00"


def test_unquoted_yaml_times_and_numeric_days_are_understood():
    # YAML 1.1 reads 22:00 as 1320; 6 is Saturday (ISO), 0 is Sunday.
    r = run(windows=[{"days": [6, 0], "start": 1320, "end": 360}], timezone=BERLIN, now="2025-06-08T23:00:00")
    assert r["open"] is True and r["window"]["days"] == ["Sat", "Sun"] and r["window"]["start"] == "22:00"


def test_the_window_open_longest_is_reported():
    windows = [
        {"name": "short", "days": ["Sat"], "start": "22:00", "duration_minutes": 60},
        {"name": "long", "days": ["Sat"], "start": "21:00", "duration_minutes": 600},
    ]
    r = run(windows=windows, now="2025-06-07T22:30:00Z")
    assert r["window"]["name"] == "long" and r["window"]["index"] == 1


def test_check_mode_answers_the_same():
    args = {"windows": WEEKEND_NIGHTS, "timezone": BERLIN, "now": "2025-06-07T23:00:00"}
    a, b = run(**args), run(check_mode=True, **args)
    a.pop("invocation", None)
    b.pop("invocation", None)
    assert a == b


def test_default_now_is_the_current_time():
    r = run(windows=[{"days": list(range(1, 8)), "start": "00:00", "duration_minutes": 1440}])
    assert r["open"] is True
    now = dt.datetime.fromisoformat(r["now"])
    assert abs((now - dt.datetime.now(dt.UTC)).total_seconds()) < 60


# ---- fuzz: whatever the arguments, exit_json or fail_json, never a traceback

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3000, 3000),
    st.text(max_size=8),
    st.sampled_from(["22:00", "06:00", "Sat", "sun", "24:00", "7", "0:5"]),
)
window = st.dictionaries(
    st.sampled_from(["days", "start", "end", "duration_minutes", "name", "x"]),
    st.one_of(values, st.lists(values, max_size=3)),
    max_size=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    windows=st.one_of(st.lists(st.one_of(window, values), max_size=3), st.just(WEEKEND_NIGHTS)),
    timezone=st.one_of(
        st.sampled_from(["UTC", BERLIN, "America/New_York", "", "Nope/Nope", "utc"]), st.text(max_size=10)
    ),
    now=st.one_of(
        st.none(),
        st.sampled_from(["2025-03-30T02:30:00", "2025-10-26T02:30:00", "2025-06-07T23:00:00Z"]),
        st.text(max_size=12),
    ),
    minutes=st.integers(-10, 20000),
    override=st.booleans(),
    reason=st.one_of(st.none(), st.text(max_size=10)),
)
def test_fuzz_never_a_traceback(windows, timezone, now, minutes, override, reason):
    args = {"windows": windows, "timezone": timezone, "min_minutes_left": minutes, "override": override}
    if now is not None:
        args["now"] = now
    if reason is not None:
        args["override_reason"] = reason
    r = run(**args)
    assert r["_rc"] in (0, 1)
    assert isinstance(r.get("msg", ""), str)
    assert r["overridden"] in (True, False)
    if not r.get("failed"):
        assert r["open"] or r["overridden"]


def test_back_to_back_windows_stay_open_across_midnight():
    every_day = [{"name": "lab", "days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "start": "00:00",
                  "duration_minutes": 1440}]
    res = run(windows=every_day, now="2026-11-28T23:30:00+00:00", min_minutes_left=60, timezone="UTC")
    assert res["open"] is True
    assert res["closes_at"] > "2026-11-30T00:00:00+00:00"  # chained across every following day it looks at
    assert res["minutes_left"] > 24 * 60 + 30


def test_a_gap_between_windows_is_not_bridged():
    evenings = [{"name": "evening", "days": ["Sat"], "start": "20:00", "end": "23:00"},
                {"name": "night", "days": ["Sat"], "start": "23:30", "duration_minutes": 120}]
    res = run(windows=evenings, now="2026-11-28T22:30:00+00:00", min_minutes_left=60, timezone="UTC")
    assert res["open"] is False
    assert res["reason"] == "too_little_time"
    assert res["closes_at"] == "2026-11-28T23:00:00+00:00"
