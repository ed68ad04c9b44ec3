# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Filters of the RIS in the upgrade flow (roles/ris_server, roles/dicom_verify's ris profile).

- ``ris_discovery``: what the ris_server ``discover`` entry point found (the release `current`
  points to, the database's schema, whether the listener runs that release), with every problem.
- ``ris_orders_summary`` / ``ris_orders_record``: the orders of the RIS as a baseline (count and a
  sample of order digests, no patient data) and the comparison after a change.
- ``ris_kept_orders`` / ``ris_redelivery_plan``: what a rollback keeps (the orders acknowledged since
  the mark) and the messages that give them back to the restored RIS through its HL7 interface.

An order's digest is the first 16 hex digits of the sha256 of its accession number, patient id and
Study Instance UID: the same order has the same digest before and after an upgrade, and the
evidence never carries the identifiers themselves.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from clinical import _failed  # noqa: E402

DIGEST_FIELDS = ("accession", "patient_id", "study_uid")


def _json(value, what):
    """A command's JSON output (its registered result, or the text) as Python data."""
    if isinstance(value, dict) and "stdout" in value:
        value = value.get("stdout")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError(f"{what} did not print JSON") from None
    return value


def order_digest(order) -> str:
    """The digest of an order row (accession, patient id, Study Instance UID)."""
    text = "\x1f".join(str((order or {}).get(name) or "") for name in DIGEST_FIELDS)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _systemd_time(text):
    """Epoch seconds of a systemd timestamp shown with --timestamp=us+utc, or None."""
    try:
        when = datetime.datetime.strptime(str(text or "").strip(), "%a %Y-%m-%d %H:%M:%S.%f UTC")
    except ValueError:
        return None
    return when.replace(tzinfo=datetime.UTC).timestamp()


def ris_discovery(link, release, status, unit, product="cu-ris", install_dir="", service="") -> dict:
    """The discover entry point's result: {product, version, database_version, package, package_version,
    problems, listener}.

    link: the stat (follow: false) of <install_dir>/current; release: the parsed release.json of
    current (None when unreadable); status: the registered result of ``ris-migrate --status``;
    unit: the registered result of ``systemctl show <service> --property
    ActiveState,ExecMainStartTimestamp --timestamp=us+utc``. The version runs when the listener is
    active and was started after current was last repointed (it then runs the release current
    names). Each problem says what to fix.
    """
    link = (link or {}).get("stat", link) or {}
    problems = []
    version = ""
    schema = None
    if not link.get("exists"):
        problems.append(f"{install_dir}/current does not exist: {product} is not installed by the artifact method here "
                        "(run the ris_server role, or check ris_server_install_dir)")
    elif not link.get("islnk"):
        problems.append(f"{install_dir}/current is not a symbolic link: move that directory to "
                        f"{install_dir}/releases/<its version> and link current to it")
    elif not isinstance(release, dict) or not release.get("version"):
        problems.append(f"{install_dir}/current/release.json is missing or unreadable: the release is damaged; "
                        "stage it again from its archive")
    else:
        version = str(release["version"])
        schema = release.get("schema")
    status_result = status if isinstance(status, dict) else {}
    database = None
    if version:
        if status_result.get("rc") not in (0, None) or status_result.get("failed"):
            problems.append(f"ris-migrate --status failed (exit {status_result.get('rc')}): "
                            f"{str(status_result.get('stderr') or status_result.get('msg') or '').strip()[:300]}")
        else:
            try:
                database = _json(status_result, "ris-migrate --status")
            except ValueError as exc:
                problems.append(str(exc))
        if isinstance(database, dict):
            if not database.get("schema"):
                problems.append(f"the order database {database.get('db')} does not exist: check ris_server_db_path")
            elif schema is not None and database.get("schema") != schema:
                problems.append(f"the order database has schema {database.get('schema')}, release {version} needs "
                                f"{schema}: the database does not match the running release; restore the matching "
                                "database (or migrate it) before an upgrade")
    props = {}
    for line in str((unit or {}).get("stdout") or "").splitlines():
        key, _, value = line.partition("=")
        props[key.strip()] = value.strip()
    active = props.get("ActiveState") == "active"
    started_s = _systemd_time(props.get("ExecMainStartTimestamp", ""))
    link_mtime = link.get("mtime")
    if version and not active:
        state = props.get("ActiveState") or "unknown"
        problems.append(f"the HL7 listener ({service}) is not running ({state}): start it "
                        f"(systemctl start {service}) or find out why it stopped before an upgrade")
    elif version and started_s is not None and link_mtime is not None and started_s < float(link_mtime):
        problems.append(f"the HL7 listener ({service}) was started before current was repointed to {version}: it may "
                        f"run another release; restart it (systemctl restart {service})")
    return {
        "product": product,
        "version": version,
        "database_version": database.get("schema") if isinstance(database, dict) else None,
        "orders": database.get("orders") if isinstance(database, dict) else None,
        "package": f"{product} (artifact)",
        "package_version": version,
        "listener": {"service": service, "active": active, "started": started_s},
        "problems": problems,
    }


def ris_orders_summary(rows, sample: int = 200) -> dict:
    """The baseline of a RIS's orders from ``ris-orders list``: counts, the highest id, and a sample of
    up to ``sample`` orders spread evenly over the ids ({id, digest, status}); no identifiers."""
    rows = _json(rows, "ris-orders list")
    if not isinstance(rows, list):
        raise ValueError("ris-orders list must print a JSON list of orders")
    rows = sorted((r for r in rows if isinstance(r, dict)), key=lambda r: int(r.get("id") or 0))
    sample = max(int(sample), 0)
    if len(rows) <= sample:
        picked = rows
    else:
        step = len(rows) / sample
        picked = [rows[int(i * step)] for i in range(sample - 1)] + [rows[-1]]
    return {
        "orders": len(rows),
        "scheduled": sum(1 for r in rows if r.get("status") == "scheduled"),
        "cancelled": sum(1 for r in rows if r.get("status") == "cancelled"),
        "max_id": max((int(r.get("id") or 0) for r in rows), default=0),
        "sample": [{"id": int(r.get("id") or 0), "digest": order_digest(r), "status": r.get("status")} for r in picked],
    }


def ris_orders_record(rows, baseline, expected=None) -> dict:
    """The verification record ``orders`` after a change: every order of the baseline's sample is
    there with the same digest (status may change: a CA is a legitimate change), there are at least as
    many orders as in the baseline, and every expected digest (the orders a rollback re-delivered) is
    there."""
    check = "orders"
    rows, problem = _orders_of(rows)
    if problem:
        return {"check": check, "status": "failed", "elapsed_ms": None, "message": problem, "details": {}}
    baseline = baseline or {}
    by_id = {int(r.get("id") or 0): r for r in rows if isinstance(r, dict)}
    digests = {order_digest(r) for r in by_id.values()}
    missing = [s for s in baseline.get("sample") or [] if s.get("digest") not in digests]
    expected = [d for d in (expected or []) if d]
    not_there = [d for d in expected if d not in digests]
    before = int(baseline.get("orders") or 0)
    problems = []
    if len(by_id) < before:
        problems.append(f"{len(by_id)} orders, the baseline had {before}")
    if missing:
        sampled = len(baseline.get("sample") or [])
        problems.append(f"{len(missing)} of the baseline's {sampled} sampled orders are missing "
                        f"or changed their identity (ids {', '.join(str(s['id']) for s in missing[:10])})")
    if not_there:
        problems.append(f"{len(not_there)} of the {len(expected)} re-delivered orders are missing "
                        f"(digests {', '.join(not_there[:10])})")
    details = {"orders": len(by_id), "baseline_orders": before, "sampled": len(baseline.get("sample") or []),
               "missing_sampled": [s["id"] for s in missing], "expected": len(expected), "missing_expected": not_there,
               "new_since_baseline": sum(1 for i in by_id if i > int(baseline.get("max_id") or 0))}
    if problems:
        return {"check": check, "status": "failed", "elapsed_ms": None, "message": "; ".join(problems),
                "details": details}
    return {"check": check, "status": "passed", "elapsed_ms": None,
            "message": f"{len(by_id)} orders ({before} in the baseline, {details['new_since_baseline']} new); "
                       f"{len(baseline.get('sample') or [])} sampled and {len(expected)} re-delivered orders all there",
            "details": details}


def ris_kept_orders(since_id_rows, changed_rows) -> list:
    """The orders acknowledged since the mark: those with an id above the mark's highest id, and
    those changed at or after its time, once each, by id."""
    out = {}
    for rows in (since_id_rows, changed_rows):
        for row in _json(rows, "ris-orders list") or []:
            if isinstance(row, dict) and row.get("id") is not None:
                out[int(row["id"])] = row
    return [out[i] for i in sorted(out)]


def _segments(message):
    return [s for s in str(message).replace("\r\n", "\r").replace("\n", "\r").split("\r") if s]


def _order_control(message) -> str:
    for segment in _segments(message):
        if segment.startswith("ORC") and len(segment) > 3:
            return segment.split(segment[3])[1] if len(segment.split(segment[3])) > 1 else ""
    return ""


def _with_order_control(message, control) -> str:
    out = []
    for segment in _segments(message):
        if segment.startswith("ORC") and len(segment) > 3:
            fields = segment.split(segment[3])
            fields[1] = control
            segment = segment[3].join(fields)
        out.append(segment)
    return "\r".join(out)


def ris_redelivery_plan(kept, mark=None) -> dict:
    """How the orders a rollback kept go back into the restored RIS, by its HL7 interface.

    kept: the rows of ``ris_kept_orders``; mark: the mark ({max_id}). Or kept alone: what ``preserve``
    wrote to the controller, {mark, orders}. The restored RIS holds every
    order as it was at the mark. For each kept order, by id:
    - new since the mark and scheduled: its last message as a new order (an XO becomes NW: the
      restored RIS never saw the order, and a release without XO takes an NW);
    - new since the mark and cancelled: nothing (ordered and cancelled within the run: no order);
    - older than the mark: its last message as it was accepted (a CA cancels; an XO changes the order,
      and a restored release that does not take XO answers AR: the order is then not re-delivered and
      stays kept).
    Returns {messages: [{key, message}], skipped: [{key, why}], expected: [digests]} (key: the order's
    digest and id; expected: the digests that must be in the RIS afterwards).
    """
    if mark is None and isinstance(kept, dict):
        kept, mark = kept.get("orders"), kept.get("mark")
    max_id = int((mark or {}).get("max_id") or 0)
    messages, skipped, expected = [], [], []
    for row in kept or []:
        key = f"order {row.get('id')} ({order_digest(row)})"
        new = int(row.get("id") or 0) > max_id
        control = _order_control(row.get("message") or "")
        if new and row.get("status") == "cancelled":
            skipped.append({"key": key, "why": "ordered and cancelled since the mark"})
            continue
        message = row.get("message") or ""
        if new and control == "XO":
            message = _with_order_control(message, "NW")
        messages.append({"key": key, "message": message})
        expected.append(order_digest(row))
    return {"messages": messages, "skipped": skipped, "expected": expected}


def _release_of(slurped):
    """release.json from a slurp result ({} when unreadable)."""
    if _failed(slurped) or not isinstance(slurped, dict) or not slurped.get("content"):
        return {}
    try:
        data = json.loads(base64.b64decode(slurped["content"]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _orders_of(result):
    """(rows, problem) from the registered orders command (or its output, or the rows)."""
    if isinstance(result, (str, list)):
        result = {"rc": 0, "stdout": result} if isinstance(result, str) else {"rc": 0, "rows": result}
    if not isinstance(result, dict) or result.get("rc") not in (0, None) or result.get("failed"):
        detail = str((result or {}).get("stderr") or (result or {}).get("msg") or "no result").strip()[:300]
        return None, f"the orders could not be read (exit {(result or {}).get('rc')}): {detail}"
    try:
        rows = result["rows"] if "rows" in result else _json(result, "the orders command")
    except ValueError as exc:
        return None, str(exc)
    if not isinstance(rows, list):
        return None, "the orders command did not print a JSON list"
    return rows, ""


def ris_baseline(results, host: str = "", sample: int = 200, recorded: str = "") -> dict:
    """The clinical baseline of a RIS from the checks dicom_verify ran before a change.

    ``results``: {echo, worklist (a WORKLIST C-FIND), release (slurp of release.json), orders (the
    orders command)}. Returns {baseline, problems} like pacs_baseline: every reason it cannot serve
    as a baseline names what to fix.
    """
    results = results or {}
    echo, worklist = results.get("echo") or {}, results.get("worklist") or {}
    release = _release_of(results.get("release"))
    rows, orders_problem = _orders_of(results.get("orders"))
    problems = []
    if _failed(echo):
        problems.append(f"C-ECHO to the worklist SCP failed: {echo.get('msg', 'no result')} (check endpoint_host, "
                        "endpoint_worklist_port and ris_server_aetitle)")
    if _failed(worklist):
        problems.append(f"the worklist C-FIND failed: {worklist.get('msg', 'no result')}")
    elif worklist.get("truncated"):
        problems.append("the worklist has more items than dicom_verify_ris_worklist_max: raise it")
    if not release.get("version"):
        problems.append("the RIS release file (dicom_verify_ris_release_file) could not be read: check "
                        "ris_server_install_dir")
    if orders_problem:
        problems.append(orders_problem + " (check dicom_verify_ris_orders_argv, ris_server_db_path)")
    orders = ris_orders_summary(rows, sample) if rows is not None else None
    baseline = {
        "profile": "ris",
        "host": host,
        "recorded": recorded,
        "echo_ms": None if _failed(echo) else echo.get("latency_ms"),
        "version": release.get("version"),
        "database_version": release.get("schema"),
        "worklist_items": None if _failed(worklist) else worklist.get("count"),
        "orders": orders,
    }
    baseline["summary"] = (
        f"worklist C-ECHO {baseline['echo_ms']} ms, {baseline['worklist_items']} worklist item(s); release "
        f"{baseline['version']} (schema {baseline['database_version']}); "
        + (f"{orders['orders']} orders ({orders['scheduled']} scheduled, {orders['cancelled']} cancelled), "
           f"{len(orders['sample'])} sampled" if orders else "orders not read")
    )
    return {"baseline": baseline, "problems": problems}


def ris_version_record(release, expected) -> dict:
    """The verification record ``version``: the release the RIS's current link names is ``expected``."""
    found = _release_of(release).get("version")
    if not found:
        return {"check": "version", "status": "failed", "elapsed_ms": None,
                "message": "the RIS release file could not be read (dicom_verify_ris_release_file)", "details": {}}
    if expected and str(found) != str(expected):
        return {"check": "version", "status": "failed", "elapsed_ms": None,
                "message": f"the RIS runs release {found}, expected {expected}", "details": {"version": found}}
    return {"check": "version", "status": "passed", "elapsed_ms": None, "message": f"release {found}",
            "details": {"version": found}}


def ris_package_changes(pins, dpkg_show) -> list[str]:
    """``name=version`` of each pinned package whose installed version (``dpkg-query --show`` lines,
    "name version") is not the pinned one, or that is not installed."""
    installed = {}
    text = (dpkg_show or {}).get("stdout", "") if isinstance(dpkg_show, dict) else dpkg_show or ""
    for line in str(text).splitlines():
        name, _, version = line.strip().partition(" ")
        if name and version:
            installed[name] = version
    return [f"{name}={version}" for name, version in sorted((pins or {}).items()) if installed.get(name) != version]


class FilterModule:
    def filters(self):
        return {
            "ris_discovery": ris_discovery,
            "ris_orders_summary": ris_orders_summary,
            "ris_orders_record": ris_orders_record,
            "ris_kept_orders": ris_kept_orders,
            "ris_redelivery_plan": ris_redelivery_plan,
            "order_digest": order_digest,
            "ris_baseline": ris_baseline,
            "ris_package_changes": ris_package_changes,
            "ris_version_record": ris_version_record,
        }
