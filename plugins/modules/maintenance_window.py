#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: maintenance_window
short_description: Decide whether an upgrade may start now, from the site's maintenance windows
description:
  - Checks whether one of the site's weekly maintenance windows is open now, in the site's time zone,
    and stays open at least O(min_minutes_left) minutes, so that an upgrade can finish inside it.
  - Fails closed. An empty or invalid O(windows) list, an unknown O(timezone) or an unreadable O(now)
    fail with C(reason=invalid_argument); a closed window fails with a message that says when the next
    window opens and how to override.
  - An emergency change outside the windows is possible with O(override=true) and an
    O(override_reason); the result then says RV(overridden=true), carries the reason and the module
    emits a warning, so the override is in the log of the run.
  - Windows that cross midnight are handled, and so are daylight saving time changes, see the notes.
  - Reads nothing but the clock; no network. Runs unchanged in check mode.
  - "Runs on the controller; use C(delegate_to: localhost)."
version_added: "0.1.0"
author:
  - clinical-upgrade contributors
options:
  windows:
    description:
      - The weekly maintenance windows. Each is a mapping with C(days), C(start) and either
        C(duration_minutes) or C(end), and optionally a C(name).
      - C(days) is a list of weekdays as names (C(Mon), C(Monday), case-insensitive) or ISO numbers
        (1 = Monday ... 7 = Sunday; 0 is also read as Sunday). The window B(starts) on these days.
      - C(start) and C(end) are local times C(HH:MM) (24 h). Quote them in YAML (C("22:00")); an unquoted
        C(22:00) is read by YAML 1.1 as the number 1320, which is understood as minutes after midnight.
      - C(end) at or before C(start) means the window ends on the next day (C(22:00) to C(06:00)).
      - C(duration_minutes) is elapsed time, from 1 to 10080 (one week).
    type: list
    elements: dict
    required: true
  timezone:
    description: IANA time zone of the windows, for example C(Europe/Berlin).
    type: str
    default: UTC
  now:
    description:
      - The time to decide for, ISO 8601 (C(2025-03-29T23:30:00+01:00)). Without an offset it is a local
        time in O(timezone). Default is the current time. For tests and dry runs.
    type: str
  min_minutes_left:
    description:
      - The window must stay open at least this many minutes from now (the expected duration of the
        upgrade, rollback included). 0 accepts any open window.
      - A whole number (or a string of digits) from 0 to 1440; anything else is refused with a clear
        message, not converted.
    type: raw
    default: 0
  override:
    description:
      - Allow the run although no window is open (emergency change). Needs O(override_reason).
      - Invalid arguments still fail.
    type: bool
    default: false
  override_reason:
    description: Why the window is overridden (change number, who approved it). Required with O(override=true).
    type: str
attributes:
  check_mode:
    support: full
    details: The module only reads the clock, so it runs unchanged in check mode.
  diff_mode:
    support: none
notes:
  - A window starting at a local time that does not exist on a day (the hour skipped when clocks go
    forward) starts at the first instant after the gap; an ambiguous local time (the hour repeated
    when clocks go back) is its first occurrence. A window given with C(end) ends at that local time,
    so a C(22:00)-C(06:00) window lasts 7 or 9 hours on the nights the clocks change; a window given
    with C(duration_minutes) always lasts that long.
  - When several windows are open, the one open longest from now is reported.
seealso:
  - name: IANA time zone database
    description: The time zone names O(timezone) accepts.
    link: https://www.iana.org/time-zones
"""

EXAMPLES = r"""
- name: Refuse to start unless the weekend window is open for 2 more hours
  maintenance_window:
    windows:
      - name: weekend nights
        days: [Sat, Sun]
        start: "22:00"
        end: "06:00"
    timezone: Europe/Berlin
    min_minutes_left: 120
  delegate_to: localhost
  register: __precheck_window

- name: Emergency change outside the windows (logged with a warning)
  maintenance_window:
    windows: "{{ maintenance_windows }}"
    timezone: "{{ maintenance_timezone }}"
    override: true
    override_reason: "CHG0042: security fix approved by the radiology IT lead"
  delegate_to: localhost

- name: Dry run - would the window be open on Saturday night?
  maintenance_window:
    windows: [{days: [6], start: "22:00", duration_minutes: 480}]
    timezone: Europe/Vienna
    now: "2025-06-07T23:00:00"
  delegate_to: localhost
"""

RETURN = r"""
open:
  description: >-
    Whether the upgrade may start by the windows, that is a window is open
    now and stays open at least O(min_minutes_left) minutes.
  returned: success and when a window is closed
  type: bool
  sample: true
in_window:
  description: Whether a window is open now at all (even with too little time left).
  returned: success and when a window is closed
  type: bool
  sample: true
window:
  description:
    - The window open now (with its index in O(windows)); when none is open, the window that opens next.
    - C(null) when O(windows) is empty.
  returned: success and when a window is closed
  type: dict
  sample: {"index": 0, "name": "weekend nights", "days": ["Sat", "Sun"], "start": "22:00", "end": "06:00"}
opens_at:
  description: >-
    When RV(window) opens (the current opening when open, the next
    one otherwise), ISO 8601 with the local offset.
  returned: success and when a window is closed, unless O(windows) is empty
  type: str
  sample: "2025-06-07T22:00:00+02:00"
closes_at:
  description: When RV(window) closes, ISO 8601 with the local offset.
  returned: success and when a window is closed, unless O(windows) is empty
  type: str
  sample: "2025-06-08T06:00:00+02:00"
minutes_left:
  description: Whole minutes until the open window closes; 0 when no window is open.
  returned: success and when a window is closed
  type: int
  sample: 420
next_open:
  description: When the next window opens after now (ISO 8601); C(null) when O(windows) is empty.
  returned: success and when a window is closed
  type: str
  sample: "2025-06-08T22:00:00+02:00"
now:
  description: The time the decision was made for, ISO 8601 in O(timezone).
  returned: success and when a window is closed
  type: str
  sample: "2025-06-07T23:00:00+02:00"
timezone:
  description: The time zone used.
  returned: always
  type: str
  sample: Europe/Berlin
overridden:
  description: Whether the run may start only because of O(override) (no usable window was open).
  returned: always
  type: bool
  sample: false
override_reason:
  description: The O(override_reason) given, when RV(overridden) is true; C(null) otherwise.
  returned: always
  type: str
  sample: "CHG0042: security fix approved by the radiology IT lead"
reason:
  description:
    - Why the answer is what it is, C(open), C(overridden), C(closed), C(too_little_time) (a window is open
      but closes within O(min_minutes_left)), C(no_windows) or C(invalid_argument).
  returned: always
  type: str
  sample: open
"""

import datetime as dt
import re

from ansible.module_utils.basic import AnsibleModule

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # pragma: no cover - Python < 3.9
    ZoneInfo = None
    ZoneInfoNotFoundError = Exception

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HHMM = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
MAX_DURATION = 7 * 24 * 60
WINDOW_KEYS = frozenset({"name", "days", "start", "end", "duration_minutes"})


class WindowError(ValueError):
    pass


def parse_day(value, where: str) -> int:
    """A weekday as 0 (Monday) .. 6 (Sunday)."""
    if isinstance(value, bool):
        raise WindowError(f"{where}: {value!r} is not a weekday; use Mon..Sun or 1..7 (1 = Monday)")
    if isinstance(value, int):
        if 1 <= value <= 7:
            return value - 1
        if value == 0:
            return 6
        raise WindowError(f"{where}: {value} is not a weekday number; use 1..7 (1 = Monday, 7 = Sunday)")
    if isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            return parse_day(int(text), where)
        for i, full in enumerate(_FULL_DAYS):
            if text in (full, full[:3]):
                return i
    raise WindowError(f"{where}: {value!r} is not a weekday; use Mon..Sun, Monday..Sunday or 1..7 (1 = Monday)")


def parse_time(value, where: str) -> dt.time:
    if isinstance(value, bool):
        raise WindowError(f'{where}: {value!r} is not a time of day; use HH:MM (24 h), for example "22:00"')
    if isinstance(value, int):
        # YAML 1.1 reads an unquoted 22:00 as the sexagesimal number 1320.
        if 0 <= value < 24 * 60:
            return dt.time(value // 60, value % 60)
        raise WindowError(f'{where}: {value} is not a time of day; use HH:MM (24 h) in quotes, for example "22:00"')
    if isinstance(value, str):
        match = _HHMM.match(value.strip())
        if match:
            return dt.time(int(match.group(1)), int(match.group(2)))
    raise WindowError(f'{where}: {value!r} is not a time of day; use HH:MM (24 h), for example "22:00"')


def parse_windows(windows) -> list[dict]:
    """Validate the windows; return them normalised. Raises WindowError naming the bad entry."""
    if not isinstance(windows, list):
        raise WindowError("windows must be a list of {days, start, end or duration_minutes}")
    parsed = []
    for index, window in enumerate(windows):
        where = f"windows[{index}]"
        if not isinstance(window, dict):
            raise WindowError(f"{where}: must be a mapping with days, start and end or duration_minutes")
        unknown = sorted(str(k) for k in set(window) - WINDOW_KEYS)
        if unknown:
            raise WindowError(
                f"{where}: unknown key(s) {', '.join(unknown)}; use name, days, start, end or duration_minutes"
            )
        days = window.get("days")
        if isinstance(days, (str, int)) and not isinstance(days, bool):
            days = [days]
        if not isinstance(days, list) or not days:
            raise WindowError(f"{where}.days: must be a non-empty list of weekdays, for example [Sat, Sun]")
        day_numbers = sorted({parse_day(d, f"{where}.days") for d in days})
        if "start" not in window:
            raise WindowError(f'{where}.start: missing; give the local start time as "HH:MM"')
        start = parse_time(window["start"], f"{where}.start")
        has_end = window.get("end") is not None
        has_duration = window.get("duration_minutes") is not None
        if has_end == has_duration:
            raise WindowError(f'{where}: give either end ("HH:MM") or duration_minutes, exactly one of them')
        end = None
        duration = None
        if has_end:
            end = parse_time(window["end"], f"{where}.end")
            if end == start:
                raise WindowError(f"{where}: end equals start; for a whole day use duration_minutes: 1440")
        else:
            duration = window["duration_minutes"]
            if isinstance(duration, str) and duration.strip().isdigit():
                duration = int(duration.strip())
            if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= MAX_DURATION:
                raise WindowError(
                    f"{where}.duration_minutes: must be a whole number of minutes from 1 to "
                    f"{MAX_DURATION}, got {duration!r}"
                )
        name = window.get("name")
        parsed.append(
            {
                "index": index,
                "name": str(name) if name is not None else f"window {index}",
                "days": [DAY_NAMES[d] for d in day_numbers],
                "_days": day_numbers,
                "start": start.strftime("%H:%M"),
                "end": end.strftime("%H:%M") if end else None,
                "duration_minutes": duration,
                "_start": start,
                "_end": end,
            }
        )
    return parsed


def localize(day: dt.date, time: dt.time, tz) -> dt.datetime:
    """The instant of local `time` on `day`; a time in a DST gap moves to the first instant after it."""
    naive = dt.datetime.combine(day, time)
    aware = naive.replace(tzinfo=tz, fold=0)
    back = aware.astimezone(dt.UTC).astimezone(tz)
    if back.replace(tzinfo=None) == naive:
        return aware
    # Non-existent local time (clocks went forward): the first instant whose local time is later,
    # which is the end of the gap. Binary search in seconds between the two readings of the time.
    lo, hi = sorted(naive.replace(tzinfo=tz, fold=f).astimezone(dt.UTC) for f in (0, 1))
    lo -= dt.timedelta(hours=3)
    hi += dt.timedelta(hours=3)
    while (hi - lo) > dt.timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0).astimezone(tz)


def occurrences(window: dict, tz, around: dt.datetime, days_before: int = 8, days_after: int = 9):
    """(opens, closes) instants of the window on days around `around` (aware, in tz)."""
    local_day = around.astimezone(tz).date()
    for offset in range(-days_before, days_after):
        day = local_day + dt.timedelta(days=offset)
        if day.weekday() not in window["_days"]:
            continue
        opens = localize(day, window["_start"], tz)
        if window["_end"] is not None:
            end_day = day if window["_end"] > window["_start"] else day + dt.timedelta(days=1)
            closes = localize(end_day, window["_end"], tz)
        else:
            closes = (opens.astimezone(dt.UTC) + dt.timedelta(minutes=window["duration_minutes"])).astimezone(tz)
        # Compare and subtract in UTC: Python compares two times of the same ZoneInfo by wall clock.
        opens, closes = opens.astimezone(dt.UTC), closes.astimezone(dt.UTC)
        if closes > opens:
            yield opens.astimezone(tz), closes.astimezone(tz)


NOW_YEARS = (1970, 9998)


def parse_now(value, tz) -> dt.datetime:
    if value is None or (isinstance(value, str) and not value.strip()):
        return dt.datetime.now(dt.UTC).astimezone(tz)
    if not isinstance(value, str):
        raise WindowError(f"now must be an ISO 8601 time such as 2025-06-07T23:00:00+02:00, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise WindowError(f"now: {value!r} is not an ISO 8601 time such as 2025-06-07T23:00:00+02:00") from None
    if not NOW_YEARS[0] <= parsed.year <= NOW_YEARS[1]:
        # the windows are looked up a week either side of now: the calendar's ends are out of reach
        raise WindowError(
            f"now: year {parsed.year} is out of range; give a time between {NOW_YEARS[0]} and {NOW_YEARS[1]}"
        )
    if parsed.tzinfo is None:
        parsed = localize(parsed.date(), parsed.time(), tz)
    return parsed.astimezone(tz)


def public(window: dict | None):
    if window is None:
        return None
    return {k: v for k, v in window.items() if not k.startswith("_")}


def iso(value: dt.datetime | None):
    return value.isoformat() if value is not None else None


def decide(windows, timezone: str, now=None, min_minutes_left: int = 0) -> dict:
    """The decision as a dict (without override handling). Raises WindowError on invalid input."""
    if ZoneInfo is None:  # pragma: no cover
        raise WindowError("Python's zoneinfo module is missing (Python 3.9 or later is needed)")
    if not isinstance(timezone, str) or not timezone.strip():
        raise WindowError("timezone must be an IANA time zone name such as Europe/Berlin")
    try:
        tz = ZoneInfo(timezone.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise WindowError(
            f"timezone {timezone!r} is not a known IANA time zone; use a name such as Europe/Berlin or UTC"
        ) from None
    if isinstance(min_minutes_left, str) and min_minutes_left.strip().isdigit():
        min_minutes_left = int(min_minutes_left.strip())
    elif isinstance(min_minutes_left, float) and min_minutes_left.is_integer():  # is_integer: False for inf, nan
        min_minutes_left = int(min_minutes_left)
    if (
        isinstance(min_minutes_left, bool)
        or not isinstance(min_minutes_left, int)
        or not 0 <= min_minutes_left <= MAX_DURATION
    ):
        raise WindowError(f"min_minutes_left must be a whole number of minutes from 0 to {MAX_DURATION}")
    parsed = parse_windows(windows)
    current = parse_now(now, tz)
    result = {
        "now": iso(current),
        "timezone": timezone.strip(),
        "open": False,
        "in_window": False,
        "window": None,
        "opens_at": None,
        "closes_at": None,
        "minutes_left": 0,
        "next_open": None,
    }
    if not parsed:
        result["reason"] = "no_windows"
        return result
    open_now = []
    upcoming = []
    utc = dt.UTC
    for window in parsed:
        for opens, closes in occurrences(window, tz, current):
            if opens.astimezone(utc) <= current.astimezone(utc) < closes.astimezone(utc):
                open_now.append((closes, opens, window))
            elif opens.astimezone(utc) > current.astimezone(utc):
                upcoming.append((opens, closes, window))
    upcoming.sort(key=lambda item: (item[0].astimezone(utc), item[2]["index"]))
    if upcoming:
        result["next_open"] = iso(upcoming[0][0])
    if open_now:
        closes, opens, window = max(open_now, key=lambda item: (item[0].astimezone(utc), -item[2]["index"]))
        # A window that opens before (or as) this one closes continues it: "every day 00:00 for 24 h"
        # stays open across midnight, and back-to-back windows form one.
        for next_opens, next_closes, _next in upcoming:
            if next_opens.astimezone(utc) <= closes.astimezone(utc) < next_closes.astimezone(utc):
                closes = next_closes
        minutes_left = int((closes.astimezone(utc) - current.astimezone(utc)).total_seconds() // 60)
        result.update(
            in_window=True, window=public(window), opens_at=iso(opens), closes_at=iso(closes), minutes_left=minutes_left
        )
        if minutes_left >= min_minutes_left:
            result.update(open=True, reason="open")
        else:
            result["reason"] = "too_little_time"
        return result
    opens, closes, window = upcoming[0]
    result.update(window=public(window), opens_at=iso(opens), closes_at=iso(closes), reason="closed")
    return result


def closed_message(result: dict, min_minutes_left: int) -> str:
    how = "set override: true with an override_reason (the change number and who approved it) to start anyway"
    if result["reason"] == "no_windows":
        return f"no maintenance window is defined (windows is empty): define the site's windows, or {how}"
    if result["reason"] == "too_little_time":
        return (
            f"maintenance window '{result['window']['name']}' is open but closes at {result['closes_at']}, "
            f"in {result['minutes_left']} minutes; the upgrade needs {min_minutes_left} (min_minutes_left). "
            f"The next window opens at {result['next_open']}; wait for it, or {how}"
        )
    return (
        f"no maintenance window is open at {result['now']} ({result['timezone']}); the next window "
        f"'{result['window']['name']}' opens at {result['opens_at']} and closes at {result['closes_at']}. "
        f"Run again then, or {how}"
    )


def main():
    module = AnsibleModule(
        argument_spec={
            "windows": {"type": "list", "elements": "raw", "required": True},
            "timezone": {"type": "str", "default": "UTC"},
            "now": {"type": "str"},
            # raw, checked by decide(): Ansible's own int conversion crashes on 1e400 (OverflowError)
            "min_minutes_left": {"type": "raw", "default": 0},
            "override": {"type": "bool", "default": False},
            "override_reason": {"type": "str"},
        },
        supports_check_mode=True,
    )
    params = module.params
    override = params["override"]
    reason_text = (params["override_reason"] or "").strip()
    base = {"changed": False, "timezone": params["timezone"], "overridden": False, "override_reason": None}
    if override and not reason_text:
        module.fail_json(
            msg="override is true but override_reason is empty: say why the window is overridden "
            "(change number, who approved it)",
            reason="invalid_argument",
            **base,
        )
    try:
        result = decide(params["windows"], params["timezone"], params["now"], params["min_minutes_left"])
    except WindowError as exc:
        module.fail_json(msg=str(exc), reason="invalid_argument", **base)
    result.update(changed=False, overridden=False, override_reason=None)
    if result["open"]:
        module.exit_json(
            msg=f"maintenance window '{result['window']['name']}' is open until {result['closes_at']} "
            f"({result['minutes_left']} minutes left)",
            **result,
        )
    message = closed_message(result, params["min_minutes_left"])
    if override:
        result.update(overridden=True, override_reason=reason_text, reason="overridden")
        module.warn(f"maintenance window overridden: {reason_text} (without the override: {message})")
        module.exit_json(msg=f"maintenance window overridden: {reason_text}", **result)
    module.fail_json(msg=message, **result)


if __name__ == "__main__":
    main()
