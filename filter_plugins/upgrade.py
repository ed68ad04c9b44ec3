# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""The upgrade flow's one result per host, and the run around it (roles/upgrade, roles/upgrade_report).

- ``upgrade_run_metadata(awx_vars, run_id, ticket, project_dir)``: who runs this, when, from which
  code revision, under which AWX job/schedule, for which change ticket. Built once per run.
- ``upgrade_result_new(host, product, run, target)``: an empty result object.
- ``result | upgrade_step_begin(name, epoch)`` / ``result | upgrade_step_end(status, epoch, message,
  details)``: every step of the flow appends one record (name, started, ended, duration_s, status,
  message, details).
- ``result | upgrade_downtime(probe, epoch)``: every interval in which the downtime probe
  (tools/downtime_probe.py) found the system unable to accept an association, each attributed to the
  step(s) running then, with their total and longest; or why the downtime was not measured.
- ``hostvars | upgrade_run_summary(hosts, run, evidence_dir)``: one line per host of the play,
  including hosts never attempted because an earlier batch failed.
- ``result | upgrade_journal(phase, status, baseline_file)``: what the run journal on the host
  (module run_journal) keeps of this run, so that a rerun can tell where it was interrupted.
- ``lock | upgrade_lock_holder(journal, run, stale_minutes, resume)``: who holds the host (free, this
  run, a live run, an interrupted run, one whose state cannot be judged from here) and, for an
  interrupted run, how to resume it (docs/upgrade.md, "An interrupted run").

Pure functions: no host is contacted and no command is run (an execution environment may lack
``hostname`` or ``git``; the controller's name, the ansible-playbook process and the code revision
are read in Python (the process from /proc), and the probe's samples from its file on the controller).
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import re
import socket
import sys
from collections.abc import Mapping

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from versions import upstream_version  # noqa: E402

STEP_STATUSES = ("running", "passed", "failed", "skipped")
OUTCOMES = ("upgraded", "already_current", "prechecked", "refused", "failed_unchanged", "rolled_back",
            "reverted", "rollback_failed", "not_attempted", "unknown")
SCHEMA = 2
# Outcomes after which the host was (or may have been) changed: their downtime is reported.
CHANGE_OUTCOMES = ("upgraded", "failed_unchanged", "rolled_back", "reverted", "rollback_failed", "unknown")
BETWEEN_STEPS = "between steps"


def _iso(epoch) -> str | None:
    if epoch is None or epoch == "":
        return None
    moment = datetime.datetime.fromtimestamp(float(epoch), datetime.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 10000:02d}Z"


def git_revision(project_dir) -> str | None:
    """The commit of a git checkout, read from .git without running git; None when not a checkout."""
    if not project_dir:
        return None
    git = os.path.join(str(project_dir), ".git")
    try:
        if os.path.isfile(git):  # a worktree: "gitdir: <path>"
            with open(git, encoding="utf-8") as handle:
                git = handle.read().split(":", 1)[1].strip()
        with open(os.path.join(git, "HEAD"), encoding="utf-8") as handle:
            head = handle.read().strip()
        if not head.startswith("ref: "):
            return head if re.fullmatch(r"[0-9a-f]{40,64}", head) else None
        ref = head[5:]
        for base in (git, _common_dir(git)):
            path = os.path.join(base, ref)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    return handle.read().strip()
            packed = os.path.join(base, "packed-refs")
            if os.path.isfile(packed):
                with open(packed, encoding="utf-8") as handle:
                    for line in handle:
                        parts = line.split()
                        if len(parts) == 2 and parts[1] == ref:
                            return parts[0]
    except (OSError, IndexError):
        return None
    return None


def _common_dir(git: str) -> str:
    try:
        with open(os.path.join(git, "commondir"), encoding="utf-8") as handle:
            return os.path.normpath(os.path.join(git, handle.read().strip()))
    except OSError:
        return git


def upgrade_run_metadata(awx_vars=None, run_id: str = "", change_ticket: str = "", project_dir: str = "",
                         epoch=None) -> dict:
    """The run's metadata, built once per run.

    ``awx_vars``: the variables AWX/Automation Controller passes to a job (awx_job_id, awx_user_name,
    awx_job_template_name, awx_schedule_id, awx_schedule_name, awx_workflow_job_id, awx_project_revision
    and their tower_* aliases); missing ones are null.
    """
    awx_vars = dict(awx_vars or {})

    def awx(name):
        value = awx_vars.get(f"awx_{name}", awx_vars.get(f"tower_{name}"))
        return None if value in (None, "") else value

    now = datetime.datetime.fromtimestamp(float(epoch), datetime.UTC) if epoch is not None else datetime.datetime.now(
        datetime.UTC)
    job_id = awx("job_id")
    if not run_id:
        run_id = f"awx-{job_id}" if job_id is not None else now.strftime("%Y%m%dT%H%M%SZ") + "-" + os.urandom(3).hex()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {
        "id": str(run_id),
        "started": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "user": awx("user_name") or user,
        "controller": socket.gethostname(),
        "revision": awx("project_revision") or git_revision(project_dir),
        "change_ticket": change_ticket or None,
        "process": controller_process(),
        "awx": {
            "job_id": job_id,
            "job_template": awx("job_template_name"),
            "user": awx("user_name"),
            "schedule_id": awx("schedule_id"),
            "schedule": awx("schedule_name"),
            "workflow_job_id": awx("workflow_job_id"),
            "launch_type": awx("job_launch_type"),
        },
    }


def upgrade_result_new(host: str, product: str, run: dict, target_version=None) -> dict:
    """An empty result object for one host (see roles/upgrade/README.md for every key)."""
    return {
        "kind": "clinical-upgrade/upgrade",
        "schema": SCHEMA,
        "run": _plain(run or {}),
        "host": host,
        "product": product,
        "outcome": "unknown",
        "failed_step": None,
        "message": None,
        "versions": {"before": None, "target": target_version or None, "after": None, "package_before": None,
                     "database_before": None, "database_after": None, "os_release_upgrade": False},
        "snapshot": None,
        "snapshot_reverted": None,
        "timings": {"upgrade_wall_s": None, "switch_downtime_s": None, "rollback_wall_s": None},
        "steps": [],
        "precheck": [],
        "baseline": None,
        "maintenance": None,
        "staged": None,
        "switch": None,
        "verification": [],
        "rollback_verification": [],
        "mark": None,
        "preserved": None,
        "redelivered": None,
        "resumed_from": None,
        "downtime": _downtime_not_measured("no change was attempted, so no probe ran"),
    }


def _plain(value):
    """A copy of a variable's data as plain dicts and lists, to change without touching the variable.

    Not copy.deepcopy: ansible-core 2.19 hands filters its lazy containers, whose deepcopy rebuilds a
    lazy container for every dict and list inside; on upgrade_result (every step, the baseline, the
    verifications) that took seconds per filter call and grew with each step of the run
    (docs/testing.md, "Where the rollback's time goes"). Reading the items once gives the same data.
    """
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _check_result(result) -> dict:
    if not isinstance(result, dict) or not isinstance(result.get("steps"), list):
        raise ValueError("not an upgrade result: build it with upgrade_result_new first")
    return _plain(result)


def upgrade_step_begin(result, name: str, epoch) -> dict:
    """Append a running step record."""
    out = _check_result(result)
    if not name:
        raise ValueError("a step needs a name")
    out["steps"].append({"name": name, "started": _iso(epoch), "ended": None, "duration_s": None,
                         "status": "running", "message": None, "details": None, "_t0": float(epoch)})
    return out


def upgrade_step_end(result, status: str, epoch, message=None, details=None, name=None) -> dict:
    """Close the last running step (or append a closed one named ``name`` when none runs)."""
    out = _check_result(result)
    if status not in STEP_STATUSES[1:]:
        raise ValueError(f"step status must be one of {', '.join(STEP_STATUSES[1:])}, got {status!r}")
    running = [s for s in out["steps"] if s["status"] == "running"]
    if running:
        step = running[-1]
    elif name:
        step = {"name": name, "started": _iso(epoch), "_t0": float(epoch)}
        out["steps"].append(step)
    else:
        return out
    t0 = step.pop("_t0", float(epoch))
    step.update({"ended": _iso(epoch), "duration_s": round(float(epoch) - t0, 2), "status": status,
                 "message": (str(message) if message not in (None, "") else None),
                 "details": details if details not in ("", None) else None})
    return out


def upgrade_timing(result, name: str, epoch) -> dict:
    """Record a moment of the run in ``timings``.

    ``started`` and ``rollback_started`` mark the start of the upgrade and of the rollback
    (``rollback_started_epoch`` keeps the latter as a number, for benchmarks that line it up with
    a probe); ``upgrade_wall_s`` and ``rollback_wall_s`` are the seconds since those marks.
    """
    out = _check_result(result)
    timings = out.setdefault("timings", {})
    epoch = float(epoch)
    if name == "started":
        timings["started"] = _iso(epoch)
        timings["_started"] = epoch
    elif name == "rollback_started":
        timings["rollback_started"] = _iso(epoch)
        timings["rollback_started_epoch"] = round(epoch, 3)
    elif name == "upgrade_wall_s":
        timings["upgrade_wall_s"] = round(epoch - float(timings.get("_started", epoch)), 1)
    elif name == "rollback_wall_s":
        timings["rollback_wall_s"] = round(epoch - float(timings.get("rollback_started_epoch", epoch)), 1)
    else:
        raise ValueError(f"unknown timing {name!r}")
    return out


def upgrade_record_step(result, step: str, value) -> dict:
    """Put the result fact of a finished step where the evidence keeps it.

    snapshot -> ``snapshot``; stage -> ``staged`` (and ``versions.os_release_upgrade``); switch ->
    ``switch`` (and ``versions.after``, ``versions.database_after``, ``timings.switch_downtime_s``);
    verify -> ``verification``; revert -> ``snapshot_reverted``; verify_after_rollback and
    check_after_rollback -> ``rollback_verification``; mark -> ``mark``; preserve -> ``preserved``;
    redeliver -> ``redelivered``.
    Other steps keep their value in the step record's details only.
    """
    out = _check_result(result)
    if value is None or value == "":  # "" is what the vars lookup gives for a fact the step did not set
        return out
    if step == "snapshot":
        out["snapshot"] = value
    elif step == "stage":
        out["staged"] = value
        if isinstance(value, dict) and "release_upgrade" in value:
            out["versions"]["os_release_upgrade"] = bool(value["release_upgrade"])
    elif step == "switch":
        out["switch"] = value
        if isinstance(value, dict):
            out["versions"]["after"] = value.get("version", out["versions"].get("after"))
            out["versions"]["database_after"] = value.get("database_version")
            out["timings"]["switch_downtime_s"] = value.get("downtime_s")
    elif step == "verify":
        out["verification"] = list(value)
    elif step == "revert":
        out["snapshot_reverted"] = value
    elif step in ("verify_after_rollback", "check_after_rollback"):
        out["rollback_verification"] = list(value)
    elif step == "mark":
        out["mark"] = value
    elif step == "preserve":
        out["preserved"] = value
    elif step == "redeliver":
        out["redelivered"] = value
    return out


def upgrade_snapshot_mark(record, margin_s=600) -> dict | None:
    """The mark from which a revert on demand keeps what the clinical system accepted since a snapshot.

    The upgrade run that took the snapshot stored the product's mark in the record (annotations.mark).
    A record without one (taken by hand, or before marks were recorded) gives a mark made of the
    record's creation time less ``margin_s`` (the controller's clock wrote it, the host's clock dates
    the files): ``since`` (UTC, ISO 8601) and ``from: created``. Keeping a little too much is harmless
    (re-delivering an instance that is already there changes nothing); keeping too little is not.
    None when the record has neither.
    """
    if not isinstance(record, dict):
        raise ValueError("upgrade_snapshot_mark needs a snapshot record (the snapshot role's snapshot_shown)")
    mark = (record.get("annotations") or {}).get("mark")
    if isinstance(mark, dict) and mark:
        return _plain(mark)
    created = record.get("created")
    if not created:
        return None
    moment = datetime.datetime.strptime(str(created), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    since = moment - datetime.timedelta(seconds=float(margin_s))
    return {"since": f"{since:%Y-%m-%dT%H:%M:%SZ}", "last_change": None, "from": "created",
            "recorded": str(created)}


def failed_checks(records) -> list:
    """The records of a verification that failed."""
    return [r for r in records or [] if isinstance(r, dict) and r.get("status") == "failed"]


def upgrade_running_step(result) -> str | None:
    """The name of the step that is running (the one a failure interrupted), or None."""
    running = [s for s in (result or {}).get("steps", []) if s.get("status") == "running"]
    return running[-1]["name"] if running else None


def upgrade_public(result) -> dict:
    """The result without internal bookkeeping (what the evidence file holds)."""
    out = _plain(result or {})
    for step in out.get("steps", []):
        step.pop("_t0", None)
    for key in [k for k in out.get("timings", {}) if k.startswith("_")]:
        del out["timings"][key]
    return out


def _downtime_not_measured(reason: str, interval=None, timeout=None, target=None, probe=None) -> dict:
    """A downtime that was not measured: no total, no longest (never 0 for "unknown"), and why."""
    return {"measured": False, "reason": reason, "complete": False, "probe_interval_s": interval,
            "probe_timeout_s": timeout, "target": target, "total_s": None, "longest_s": None, "count": None,
            "intervals": [], "by_step": {}, "gaps": [], "probe": probe}


def _epoch_of(iso) -> float | None:
    """The epoch of an ISO time as _iso writes it (2026-11-28T02:39:00.25Z)."""
    if not iso:
        return None
    text = str(iso).rstrip("Z")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.UTC).timestamp()
        except ValueError:
            continue
    return None


def read_probe_samples(path) -> tuple[dict, list[dict], dict | None]:
    """The header, the samples (sorted by time) and the stop record of a probe's file.

    Lines that do not parse (a line being written when the probe was killed) are skipped. Raises
    OSError when the file cannot be read.
    """
    header, samples, stopped = {}, [], None
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            if "t" in record and "ok" in record:
                samples.append(record)
            elif "probe" in record and not header:
                header = record
            elif "stopped" in record:
                stopped = record
    samples.sort(key=lambda r: float(r["t"]))
    return header, samples, stopped


def downtime_intervals(samples, interval: float = 0.2, timeout: float = 1.0) -> tuple[list[dict], list[dict]]:
    """The outage intervals and the blind gaps of a probe's samples.

    An interval starts at the first echo that failed and ends at the first echo that succeeded
    again (an interval still open at the last sample ends with that sample and is ``ongoing``).
    A gap is a stretch longer than ``2 * timeout + interval + 1`` s without an echo starting: the
    probe itself did not look then.
    """
    limit = 2 * float(timeout) + float(interval) + 1.0
    outages, gaps, current, previous = [], [], None, None
    for sample in samples:
        t = float(sample["t"])
        if previous is not None and t - float(previous["t"]) > limit:
            since = float(previous["t"]) + float(previous.get("ms") or 0) / 1000.0
            gaps.append({"start_epoch": round(since, 3), "end_epoch": round(t, 3), "duration_s": round(t - since, 2)})
        if not sample.get("ok"):
            if current is None:
                current = {"start_epoch": t, "failed_echoes": 0, "reasons": {}}
            current["failed_echoes"] += 1
            reason = str(sample.get("reason") or "unknown")
            current["reasons"][reason] = current["reasons"].get(reason, 0) + 1
            current["last_end"] = t + float(sample.get("ms") or 0) / 1000.0
        elif current is not None:
            current.update(end_epoch=t, ongoing=False)
            outages.append(current)
            current = None
        previous = sample
    if current is not None:
        current.update(end_epoch=current["last_end"], ongoing=True)
        outages.append(current)
    for outage in outages:
        outage.pop("last_end", None)
        outage["duration_s"] = round(outage["end_epoch"] - outage["start_epoch"], 2)
        outage["start_epoch"], outage["end_epoch"] = round(outage["start_epoch"], 3), round(outage["end_epoch"], 3)
    return outages, gaps


def _attribute(outages, steps) -> dict:
    """Name, on each outage, the steps it overlaps (by their recorded times); the seconds per step."""
    spans = []
    for step in steps or []:
        begin = _epoch_of(step.get("started"))
        if begin is None:
            continue
        end = _epoch_of(step.get("ended"))
        spans.append((step.get("name"), begin, float("inf") if end is None else end))
    by_step: dict[str, float] = {}
    for outage in outages:
        a, b = outage["start_epoch"], outage["end_epoch"]
        names, covered = [], 0.0
        for name, begin, end in spans:
            overlap = min(b, end) - max(a, begin)
            if overlap > 0 or (a == b and begin <= a <= end):
                if name not in names:
                    names.append(name)
                covered += max(overlap, 0.0)
                by_step[name] = by_step.get(name, 0.0) + max(overlap, 0.0)
        outage["steps"] = names
        rest = (b - a) - covered
        if rest > 0.005:
            by_step[BETWEEN_STEPS] = by_step.get(BETWEEN_STEPS, 0.0) + rest
    return {name: round(seconds, 2) for name, seconds in by_step.items()}


def _tail(text, limit: int = 300) -> str:
    lines = [line for line in str(text or "").strip().splitlines() if line.strip()]
    return lines[-1][-limit:] if lines else ""


def upgrade_downtime(result, probe=None, epoch=None) -> dict:
    """Put the downtime the probe measured into ``result['downtime']``.

    ``probe`` is what roles/upgrade knows of its probe: ``enabled``, ``target`` (None when the product
    names no service to probe), ``interval_s``, ``timeout_s``, ``file`` (its samples, on the
    controller), ``start`` and ``stop`` (the registered results of ``tools/downtime_probe.py start``
    and ``stop``), ``error`` (why starting it failed before it ran). ``epoch`` is now.

    When nothing was measured (no probe, or not one echo answered: a service down all the time and
    a controller that cannot reach it look the same), ``measured`` is false, ``total_s`` and
    ``longest_s`` are None and ``reason`` says why. Otherwise every interval has ``start``, ``end``,
    ``duration_s``, ``steps`` (the step records it overlaps), ``failed_echoes`` and their ``reasons``;
    ``by_step`` sums the seconds per step; ``complete`` is false when the probe did not look all the
    time (``gaps``, or it ended before it was stopped) and ``reason`` then says so.
    """
    out = _check_result(result)
    probe = dict(probe or {})
    interval, timeout = probe.get("interval_s"), probe.get("timeout_s")
    target = probe.get("target")
    target_name = (f"{target.get('called_ae')}@{target.get('host')}:{target.get('port')}"
                   if isinstance(target, dict) else None)

    def unmeasured(reason, info=None):
        out["downtime"] = _downtime_not_measured(reason, interval, timeout, target_name, info)
        return out

    if not probe or "enabled" not in probe:
        return unmeasured("no probe ran (no change was attempted, or the probe's tasks were not run)")
    if str(probe.get("enabled", True)).strip().lower() in ("false", "no", "off", "0", "none", ""):
        return unmeasured("the probe is switched off (upgrade_probe_enabled: false)")
    if probe.get("error"):
        return unmeasured(f"the probe did not start: {_tail(probe['error'])}")
    if not isinstance(target, dict):
        return unmeasured("the product names no service to probe (probe in roles/upgrade/vars/<product>.yml)")
    start = probe.get("start") or {}
    if start.get("skipped"):
        return unmeasured("the probe's start was skipped")
    if start.get("rc", 1) != 0 or start.get("failed"):
        why = _tail(start.get("stderr")) or _tail(start.get("msg")) or f"exit code {start.get('rc')}"
        return unmeasured(f"the probe did not start: {why}")
    path = probe.get("file")
    try:
        header, samples, stopped = read_probe_samples(path)
    except (OSError, TypeError) as exc:
        return unmeasured(f"the probe's samples cannot be read: {exc}")
    interval = float(header.get("interval_s", interval or 0.2))
    timeout = float(header.get("timeout_s", timeout or 1.0))
    stop = probe.get("stop") or {}
    try:
        stop_info = json.loads(stop.get("stdout") or "{}")
    except ValueError:
        stop_info = {}
    info = {"file": path, "samples": len(samples), "failed": sum(1 for s in samples if not s.get("ok")),
            "started": _iso(samples[0]["t"]) if samples else None,
            "last_sample": _iso(samples[-1]["t"]) if samples else None,
            "ended": ("stopped" if stop_info.get("was_running") and stop_info.get("signal") == "TERM"
                      else "killed" if stop_info.get("was_running")
                      else (stopped or {}).get("why") or "died")}
    if not samples:
        return unmeasured("the probe recorded no answer", info)
    if not any(s.get("ok") for s in samples):
        # Down all the time, or the controller cannot reach the service: the probe cannot tell.
        reasons = sorted({str(s.get("reason")) for s in samples})
        return unmeasured(f"the probe never got an answer from {header.get('target') or target_name} "
                          f"({', '.join(reasons)}): check that the controller reaches it", info)
    if not header.get("target"):
        header["target"] = target_name
    outages, gaps = downtime_intervals(samples, interval, timeout)
    by_step = _attribute(outages, out.get("steps"))
    problems = []
    if info["ended"] not in ("stopped", "killed"):
        last = float(samples[-1]["t"])
        if epoch is not None and float(epoch) > last:
            gaps.append({"start_epoch": round(last, 3), "end_epoch": round(float(epoch), 3),
                         "duration_s": round(float(epoch) - last, 2)})
        problems.append(f"the probe ended ({info['ended']}) before the run stopped it; nothing was measured after "
                        f"{info['last_sample']}")
    if gaps:
        problems.append(f"the probe did not look for {round(sum(g['duration_s'] for g in gaps), 1)} s in "
                        f"{len(gaps)} gap(s); an outage then is not counted")
    for gap in gaps:
        gap["start"], gap["end"] = _iso(gap["start_epoch"]), _iso(gap["end_epoch"])
    intervals = [{"start": _iso(o["start_epoch"]), "end": _iso(o["end_epoch"]), "duration_s": o["duration_s"],
                  "steps": o["steps"], "failed_echoes": o["failed_echoes"], "reasons": o["reasons"],
                  "ongoing": o["ongoing"], "start_epoch": o["start_epoch"], "end_epoch": o["end_epoch"]}
                 for o in outages]
    if any(o["ongoing"] for o in intervals):
        problems.append("the system still did not answer when the probe stopped")
    out["downtime"] = {
        "measured": True,
        "reason": "; ".join(problems) or None,
        "complete": not problems,
        "probe_interval_s": interval,
        "probe_timeout_s": timeout,
        "target": header.get("target"),
        "total_s": round(sum(o["duration_s"] for o in intervals), 2),
        "longest_s": round(max((o["duration_s"] for o in intervals), default=0.0), 2),
        "count": len(intervals),
        "intervals": intervals,
        "by_step": by_step,
        "gaps": gaps,
        "probe": info,
    }
    return out


def upgrade_downtime_lines(downtime) -> list[str]:
    """The downtime as readable lines: the totals (or why not measured), then one line per interval."""
    downtime = downtime or {}
    if not downtime.get("measured"):
        return [f"downtime: NOT MEASURED ({downtime.get('reason') or 'no probe result'})"]
    head = (f"downtime: {downtime.get('total_s')} s in {downtime.get('count')} interval(s), longest "
            f"{downtime.get('longest_s')} s (C-ECHO to {downtime.get('target')} every "
            f"{downtime.get('probe_interval_s')} s)")
    if not downtime.get("complete"):
        head += f"; INCOMPLETE: {downtime.get('reason')}"
    lines = [head]
    for item in downtime.get("intervals") or []:
        where = ", ".join(item.get("steps") or []) or BETWEEN_STEPS
        reasons = ", ".join(f"{k} x{v}" for k, v in sorted((item.get("reasons") or {}).items()))
        lines.append(f"  {item.get('start')} -> {item.get('end')}: {item.get('duration_s')} s during {where}"
                     f"{' (ongoing)' if item.get('ongoing') else ''} [{reasons}]")
    return lines


def _downtime_row(downtime) -> dict | None:
    if not isinstance(downtime, dict):
        return None
    longest = max(downtime.get("intervals") or [{}], key=lambda i: i.get("duration_s") or 0)
    return {"measured": bool(downtime.get("measured")), "complete": bool(downtime.get("complete")),
            "total_s": downtime.get("total_s"), "longest_s": downtime.get("longest_s"),
            "count": downtime.get("count"), "longest_during": longest.get("steps"),
            "reason": downtime.get("reason")}


def upgrade_run_summary(hostvars, hosts, run=None, evidence_dir: str = "") -> dict:
    """One summary across the hosts of the play: outcome, versions, snapshot, evidence path per host.

    A host without a result was never attempted (an earlier batch failed, or the run stopped).
    """
    rows = []
    counts: dict[str, int] = {}
    run_id = (run or {}).get("id")
    for host in hosts or []:
        try:
            result = hostvars[host].get("upgrade_result") if host in hostvars else None
        except (KeyError, TypeError):
            result = None
        if isinstance(result, dict) and result.get("run", {}).get("id") == run_id:
            outcome = result.get("outcome") or "unknown"
            snapshot = result.get("snapshot") or {}
            row = {"host": host, "outcome": outcome,
                   "before": result.get("versions", {}).get("before"),
                   "after": result.get("versions", {}).get("after"),
                   "target": result.get("versions", {}).get("target"),
                   "snapshot_id": snapshot.get("id"),
                   "failed_step": result.get("failed_step"),
                   "downtime": _downtime_row(result.get("downtime")) if outcome in CHANGE_OUTCOMES else None,
                   "evidence": f"{evidence_dir}/upgrade-{run_id}/{host}.json" if evidence_dir else None}
        else:
            outcome = "not_attempted"
            row = {"host": host, "outcome": outcome, "before": None, "after": None, "target": None,
                   "snapshot_id": None, "failed_step": None, "downtime": None, "evidence": None}
        counts[outcome] = counts.get(outcome, 0) + 1
        rows.append(row)
    bad = {"refused", "failed_unchanged", "rolled_back", "rollback_failed", "unknown"}
    return {
        "run": run or {},
        "hosts": rows,
        "counts": counts,
        "ok": bool(rows) and not any(r["outcome"] in bad or r["outcome"] == "not_attempted" for r in rows),
    }


def upgrade_summary_line(row) -> str:
    """One readable line of a run summary's host row."""
    row = row or {}
    text = f"{row.get('host')}: {str(row.get('outcome', 'unknown')).upper()}"
    if row.get("after") and row.get("after") != row.get("before"):
        text += f" {row.get('before')} -> {row.get('after')}"
    elif row.get("before"):
        text += f" at {row.get('before')}"
    if row.get("snapshot_id"):
        text += f", snapshot {row['snapshot_id']}"
    downtime = row.get("downtime")
    if isinstance(downtime, dict) and downtime.get("measured"):
        text += f", downtime {downtime.get('total_s')} s in {downtime.get('count')} interval(s)"
        if downtime.get("count"):
            during = ", ".join(downtime.get("longest_during") or []) or BETWEEN_STEPS
            text += f" (longest {downtime.get('longest_s')} s, {during})"
        if not downtime.get("complete"):
            text += " INCOMPLETE"
    elif isinstance(downtime, dict):
        text += ", downtime NOT MEASURED"
    if row.get("failed_step"):
        text += f", failed step: {row['failed_step']}"
    if row.get("evidence"):
        text += f", evidence {row['evidence']}"
    return text


def upgrade_summary_lines(summary) -> list[str]:
    """The run summary as lines: the run and its counts, then one line per host."""
    summary = summary or {}
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted((summary.get("counts") or {}).items()))
    head = f"run {(summary.get('run') or {}).get('id')}: {counts or 'no hosts'}"
    return [head] + [upgrade_summary_line(row) for row in summary.get("hosts") or []]


def product_discovery(info, product: str, package: str, packages=None, rest_url: str = "") -> dict:
    """What a product's ``discover`` entry point found: the running version (from the product's API
    result ``info``) and the installed package's version (from ``ansible_facts.packages``), with every
    problem that makes the current version unknown, each saying what to fix."""
    info = info if isinstance(info, dict) else {}
    packages = packages if isinstance(packages, dict) else {}
    api_ok = not info.get("failed") and not info.get("skipped")
    version = str(info.get("version") or "") if api_ok else ""
    installed = packages.get(package) or []
    package_version = str(installed[0].get("version") or "") if installed and isinstance(installed[0], dict) else ""
    problems = []
    if not api_ok:
        problems.append(f"the {product} API at {rest_url or '?'} did not answer: {info.get('msg', 'no result')} "
                        "(check endpoint_rest_url, pacs_server_rest_user and pacs_server_rest_password, and that "
                        "the service runs)")
    elif not version:
        problems.append(f"the {product} API at {rest_url or '?'} answered without a version: check that "
                        "endpoint_rest_url points at the product's API")
    if not package_version:
        problems.append(f"package {package} is not installed on the host: check the host and pacs_server_product")
    if version and package_version and upstream_version(package_version) != version:
        problems.append(f"the running {product} reports {version} but the installed package is {package_version}: "
                        "restart the service or find out which binary runs before upgrading")
    return {"product": product, "version": version, "database_version": info.get("database_version") if api_ok
            else None, "package": package, "package_version": package_version, "problems": problems}


# --------------------------------------------------------------------------- an interrupted run
#
# The run journal (module run_journal, beside the run lock on the host) says which run works on the
# host, from which controller process, in which phase, and what it recorded (baseline file, mark,
# snapshot). A rerun reads it with the lock and judges here whether that run still works.

# Steps after which the host is (or may be) changed: a run interrupted in one of them left it changed.
CHANGING_PHASES = ("stage", "switch", "verify", "preserve", "revert", "redeliver", "verify_after_rollback",
                   "check_after_rollback")
# Steps of a rollback after which the snapshot is being (or was) restored: resumed by hand only.
REVERTING_PHASES = ("revert", "redeliver", "verify_after_rollback", "check_after_rollback")
FINISHED = "finished"


def _read_text(path) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return None


def _proc_stat(pid: int, proc: str = "/proc") -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks since boot) of a process; None when it does not exist."""
    text = _read_text(f"{proc}/{int(pid)}/stat")
    if not text or ")" not in text:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and ")"
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _proc_cmdline(pid: int, proc: str = "/proc") -> list[str]:
    text = _read_text(f"{proc}/{int(pid)}/cmdline")
    return [part for part in (text or "").split("\0") if part]


def _is_playbook(cmdline) -> bool:
    """Whether a command line is ansible-playbook's (run as a script, or by a Python interpreter)."""
    return any(os.path.basename(part) == "ansible-playbook" for part in list(cmdline)[:3])


def _boot_id(proc: str = "/proc") -> str | None:
    text = _read_text(f"{proc}/sys/kernel/random/boot_id")
    return text.strip() if text else None


def controller_process(pid=None, proc: str = "/proc") -> dict:
    """The ansible-playbook process that runs this run, read from /proc (no command is run).

    Filters run in ansible-playbook's worker processes, forked from it (same command line) or started
    by a fork server: walking up from ``pid`` (default: this process), the first ansible-playbook
    whose parent is not the same ansible-playbook is the run's. A nested ansible-playbook (one started
    by a task of another) is found, not its caller. Returns ``{pid, started_ticks, boot_id}``;
    ``pid`` is None (with ``reason``) where there is no /proc or no ansible-playbook above.
    """
    chain, current = [], int(pid or os.getpid())
    while current > 0 and len(chain) < 64:
        stat = _proc_stat(current, proc)
        if stat is None:
            break
        chain.append((current, stat, _proc_cmdline(current, proc)))
        if stat[0] == current:
            break
        current = stat[0]
    if not chain:
        return {"pid": None, "started_ticks": None, "boot_id": None,
                "reason": f"{proc} cannot be read on this controller"}
    for index, (found, stat, cmdline) in enumerate(chain):
        if not _is_playbook(cmdline):
            continue
        parent = chain[index + 1] if index + 1 < len(chain) else None
        if parent is None or parent[2] != cmdline:
            return {"pid": found, "started_ticks": stat[1], "boot_id": _boot_id(proc)}
    return {"pid": None, "started_ticks": None, "boot_id": None,
            "reason": "no ansible-playbook process above this one"}


def process_state(process, controller: str = "", proc: str = "/proc") -> tuple[str, str]:
    """Whether a recorded controller process still runs: ``(running|gone|unknown, why)``.

    Only a process of this controller can be looked at: one recorded on another controller (or
    without a pid) is ``unknown``. A pid that no longer exists, that now runs another program (another
    start time, or not ansible-playbook) or that belongs to an earlier boot is ``gone``.
    """
    process = process if isinstance(process, dict) else {}
    here = socket.gethostname()
    if controller and controller != here:
        return "unknown", (f"it ran from controller {controller}, not this one ({here}); "
                           "its process cannot be seen from here")
    pid = process.get("pid")
    if not pid:
        return "unknown", "its controller process was not recorded (" + str(process.get("reason") or "no pid") + ")"
    boot = _boot_id(proc)
    if process.get("boot_id") and boot and process["boot_id"] != boot:
        return "gone", f"the controller was restarted since (process {pid} belonged to an earlier boot)"
    stat = _proc_stat(int(pid), proc)
    if stat is None:
        return "gone", f"its ansible-playbook process {pid} no longer runs"
    if process.get("started_ticks") is not None and int(process["started_ticks"]) != stat[1]:
        return "gone", f"process {pid} no longer is its ansible-playbook (the pid now runs another program)"
    if not _is_playbook(_proc_cmdline(int(pid), proc)):
        return "gone", f"process {pid} no longer is its ansible-playbook (it runs another program)"
    return "running", f"its ansible-playbook process {pid} still runs on this controller"


def upgrade_journal(result, phase: str, status: str = "running", baseline_file: str = "") -> dict:
    """What the run journal keeps of this run: its id and controller process, the phase (a step of the
    flow, ``resume`` or ``finished``) and its status, and what a rerun needs to resume it: the baseline
    file, the versions, the mark, the snapshot and the outcome."""
    result = result or {}
    run = result.get("run") or {}
    versions = result.get("versions") or {}
    snapshot = result.get("snapshot")
    return {
        "run_id": run.get("id"),
        "run": {"id": run.get("id"), "user": run.get("user"), "controller": run.get("controller"),
                "started": run.get("started"), "process": run.get("process")},
        "host": result.get("host"),
        "product": result.get("product"),
        "phase": phase,
        "status": status,
        "baseline": {"file": baseline_file or None, "run_id": (result.get("baseline") or {}).get("run_id")},
        "versions": {key: versions.get(key) for key in ("before", "target", "package_before", "database_before")},
        "mark": result.get("mark"),
        "snapshot": dict(snapshot) if isinstance(snapshot, dict) else None,
        "outcome": result.get("outcome") if phase == FINISHED else None,
        "resumed_from": (result.get("resumed_from") or {}).get("run_id"),
    }


def _journal_of(journal) -> tuple[dict | None, float | None]:
    """The journal mapping and its age in minutes, from run_journal's registered result (or the mapping)."""
    age = None
    if isinstance(journal, dict) and "journal" in journal and "path" in journal:
        age = journal.get("age_minutes")
        journal = journal.get("journal")
    if not (isinstance(journal, dict) and journal.get("run_id")):
        return None, None
    return journal, (float(age) if isinstance(age, (int, float)) else None)


def upgrade_lock_holder(lock, journal, run=None, stale_minutes=240, resume=False) -> dict:
    """Who holds the host, from run_lock's and run_journal's query results, for a run ``run``.

    ``state``: ``free`` (no lock, no unfinished journal), ``ours`` (this run's), ``live`` (a run whose
    ansible-playbook still runs on this controller), ``interrupted`` (its controller process is gone;
    or it ran from another controller and the lock is stale, or ``resume`` says it is gone),
    ``unknown`` (from another controller, not stale: it may still run), ``foreign`` (a lock with no
    journal of its run: whether it changed the host is not known). ``changed`` says whether that run
    changed the host (True/False; None when not known); ``plan`` how a resume goes: ``fresh`` (no
    snapshot: nothing was changed), ``verify`` (a snapshot: verify against the recorded baseline,
    then complete or roll back), ``manual`` (interrupted while reverting: by hand); ``message`` says it
    all in one sentence.
    """
    lock = lock if isinstance(lock, dict) else {}
    run_id = (run or {}).get("id") if isinstance(run, dict) else run
    journal, journal_age = _journal_of(journal)
    holder = lock.get("holder") if isinstance(lock.get("holder"), dict) else None
    held = bool(lock.get("held"))
    if journal and journal.get("phase") == FINISHED:
        journal = None
    out = {"state": "free", "run_id": None, "phase": None, "status": None, "changed": False, "plan": None,
           "resume": False, "controller": None, "pid": None, "process": None, "stale": bool(lock.get("stale")),
           "journal": journal, "message": "no other run holds the host"}
    if (held and holder and holder.get("run_id") == run_id) or (journal and journal.get("run_id") == run_id):
        out.update(state="ours", run_id=run_id, message=f"the host is held by this run ({run_id})")
        return out
    if journal is None or (held and (not holder or holder.get("run_id") != journal.get("run_id"))):
        if not held:
            return out
        other = (holder or {}).get("run_id") or "unreadable lock file"
        out.update(state="foreign", run_id=other, changed=None,
                   message=(f"run {other} holds the lock and left no journal of its phase, so whether it "
                            "changed the host is not known"))
        return out
    other = journal["run_id"]
    info = journal.get("run") or {}
    phase, status = journal.get("phase"), journal.get("status")
    snapshot = journal.get("snapshot") if isinstance(journal.get("snapshot"), dict) else None
    changed = phase in CHANGING_PHASES
    plan = "manual" if phase in REVERTING_PHASES else ("verify" if snapshot and snapshot.get("id") else "fresh")
    state, why = process_state(info.get("process"), info.get("controller") or "")
    # The lock's age says whether it is stale; with the lock removed by hand, the journal's age does.
    stale = bool(lock.get("stale")) if held else (journal_age is not None and journal_age > float(stale_minutes))
    where = f"in phase {phase}" + (f" ({status})" if status and status != "running" else "")
    what = ("it had changed the host (snapshot " + str((snapshot or {}).get("id")) + ")" if changed else
            ("it had taken snapshot " + str(snapshot.get("id")) + " but not yet changed the host" if snapshot
             else "it had not changed the host"))
    out.update(run_id=other, phase=phase, status=status, changed=changed, plan=plan,
               controller=info.get("controller"), pid=(info.get("process") or {}).get("pid"), process=state,
               stale=stale)
    if state == "running":
        out.update(state="live", message=f"run {other} is running {where}: {why}; {what}")
    elif state == "gone" or stale or bool(resume):
        because = why if state == "gone" else (
            f"{why}, and " + ("upgrade_resume is true" if resume else
                              f"its lock is stale (older than {stale_minutes} minutes)"))
        out.update(state="interrupted", resume=True,
                   message=f"run {other} was interrupted {where}: {because}; {what}")
    else:
        out.update(state="unknown",
                   message=(f"run {other} holds the host {where}: {why}; {what}. If it is gone, set "
                            f"upgrade_resume: true to resume it (or wait until its lock is older than "
                            f"{stale_minutes} minutes)"))
    return out


class FilterModule:
    def filters(self):
        return {
            "upgrade_run_metadata": upgrade_run_metadata,
            "upgrade_result_new": upgrade_result_new,
            "upgrade_step_begin": upgrade_step_begin,
            "upgrade_step_end": upgrade_step_end,
            "upgrade_running_step": upgrade_running_step,
            "upgrade_public": upgrade_public,
            "upgrade_run_summary": upgrade_run_summary,
            "product_discovery": product_discovery,
            "upgrade_timing": upgrade_timing,
            "upgrade_summary_line": upgrade_summary_line,
            "upgrade_summary_lines": upgrade_summary_lines,
            "upgrade_record_step": upgrade_record_step,
            "failed_checks": failed_checks,
            "upgrade_snapshot_mark": upgrade_snapshot_mark,
            "upgrade_downtime": upgrade_downtime,
            "upgrade_downtime_lines": upgrade_downtime_lines,
            "upgrade_journal": upgrade_journal,
            "upgrade_lock_holder": upgrade_lock_holder,
        }
