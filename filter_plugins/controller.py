# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""AWX / Automation Controller schedules from the site's maintenance windows.

- ``maintenance_windows | controller_schedules(timezone, templates, start_date, extra)``: one
  ``awx.awx.schedule`` entry per window and job template: the weekly iCalendar rule AWX takes
  (``DTSTART;TZID=<zone>:<date>T<HHMM>00 RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=SA,SU``), starting at the
  window's start on its days, in the site's time zone, so the job starts when the window opens and the
  precheck (PRE-007) finds it open. ``start_date`` (YYYYMMDD) is when the schedule begins.

The windows are those of the ``maintenance_window`` module (``days`` as names or numbers 1-7, ``start``
``HH:MM``); a window this cannot read fails with a message that names it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = {"mon": "MO", "tue": "TU", "wed": "WE", "thu": "TH", "fri": "FR", "sat": "SA", "sun": "SU"}
NUMBERS = {1: "MO", 2: "TU", 3: "WE", 4: "TH", 5: "FR", 6: "SA", 7: "SU", 0: "SU"}


def _byday(window, label) -> list:
    out = []
    for day in window.get("days") or []:
        if isinstance(day, int) and not isinstance(day, bool) and day in NUMBERS:
            code = NUMBERS[day]
        elif isinstance(day, str) and day.strip()[:3].lower() in DAYS:
            code = DAYS[day.strip()[:3].lower()]
        else:
            raise ValueError(f"maintenance window {label}: day {day!r} is not a weekday (Mon..Sun or 1..7)")
        if code not in out:
            out.append(code)
    if not out:
        raise ValueError(f"maintenance window {label}: give its days (for example [Sat, Sun])")
    return out


def controller_schedules(windows, timezone, templates, start_date="20270101", extra=None) -> list:
    """awx.awx.schedule entries: each job template starts when each window opens."""
    if not windows:
        raise ValueError("maintenance_windows is empty: the schedules start when a window opens")
    try:
        ZoneInfo(str(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"maintenance_timezone {timezone!r} is not an IANA time zone "
                         "(for example Europe/Berlin)") from None
    if not re.fullmatch(r"20\d\d(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])", str(start_date)):
        raise ValueError(f"start_date {start_date!r}: give the first day as YYYYMMDD")
    out = []
    for index, window in enumerate(windows):
        if not isinstance(window, Mapping):
            raise ValueError(f"maintenance window {index + 1} is not a mapping (days, start, end)")
        label = window.get("name") or str(index + 1)
        match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", str(window.get("start", "")))
        if not match:
            raise ValueError(f"maintenance window {label}: start {window.get('start')!r} is not HH:MM (quote it)")
        rrule = (f"DTSTART;TZID={timezone}:{start_date}T{match.group(1)}{match.group(2)}00 "
                 f"RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY={','.join(_byday(window, label))}")
        for template in templates or []:
            out.append({
                "name": f"{template} - {label}",
                "unified_job_template": template,
                "rrule": rrule,
                "description": f"Starts when the maintenance window '{label}' opens ({timezone})",
                "enabled": False,  # a site enables each schedule once its first run by hand went well
                **(dict(extra) if extra else {}),
            })
    return out


class FilterModule:
    def filters(self):
        return {"controller_schedules": controller_schedules}
