# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Filters of the precheck role: turn the output of read-only probes into numbers.

- du_total_mb(stdout): MB in the output of ``du -sk PATH...``.
- apt_download_mb(stdout): MB apt would download, from ``apt-get install --print-uris -qq``.
- disk_plan(df_stdout, needs, margin_pct): per filesystem, MB needed (with margin) and available,
  from ``df -P -k`` of one path per need, in the order of needs.
- precheck_record(result, check_id, title): one record of precheck_results from a registered assert.
"""

from __future__ import annotations

import math

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    AnsibleFilterError = ValueError


def du_total_mb(stdout) -> float:
    total_kb = 0
    for line in str(stdout or "").splitlines():
        fields = line.split()
        if fields and fields[0].isdigit():
            total_kb += int(fields[0])
    return round(total_kb / 1024.0, 1)


def apt_download_mb(stdout) -> float:
    """Sum of the sizes in apt's --print-uris lines: 'URI' FILENAME SIZE HASH."""
    total = 0
    for line in str(stdout or "").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0].startswith("'") and fields[2].isdigit():
            total += int(fields[2])
    return round(total / 1048576.0, 1)


def disk_plan(df_stdout, needs, margin_pct=20) -> list[dict]:
    """Group needs by filesystem and compare with what df says is available.

    needs: list of {path, what, mb}, in the same order as the paths given to df (one df data line
    per path). Returns one dict per filesystem, the one with the least headroom first: mount,
    device, what (list), needed_mb (margin included, rounded up), available_mb, ok, message.
    """
    lines = [ln for ln in str(df_stdout or "").splitlines() if ln.strip() and not ln.startswith("Filesystem")]
    if not isinstance(needs, list) or len(lines) != len(needs):
        raise AnsibleFilterError(
            f"disk_plan: df printed {len(lines)} line(s) for {len(needs) if isinstance(needs, list) else '?'} path(s)"
        )
    plan: dict[str, dict] = {}
    for line, need in zip(lines, needs, strict=True):
        fields = line.split()
        if len(fields) < 6 or not fields[3].isdigit():
            raise AnsibleFilterError(f"disk_plan: cannot read df line {line!r}")
        mount = " ".join(fields[5:])
        entry = plan.setdefault(
            mount,
            {"mount": mount, "device": fields[0], "what": [], "raw_mb": 0.0, "available_mb": int(fields[3]) // 1024},
        )
        entry["what"].append(f"{need.get('what')} ({need.get('path')}: {need.get('mb')} MB)")
        entry["raw_mb"] += float(need.get("mb") or 0)
    out = []
    for entry in plan.values():
        needed = int(math.ceil(entry.pop("raw_mb") * (1 + float(margin_pct) / 100.0)))
        entry["needed_mb"] = needed
        entry["ok"] = entry["available_mb"] >= needed
        entry["message"] = (
            f"{entry['mount']} ({entry['device']}): needed {needed} MB for {' + '.join(entry['what'])} "
            f"+ {margin_pct}% margin, available {entry['available_mb']} MB"
        )
        out.append(entry)
    # Tightest filesystem (least headroom) first.
    return sorted(out, key=lambda e: e["available_mb"] - e["needed_mb"])


def precheck_record(result, check_id: str, title: str) -> dict:
    """{id, title, status, message} from a registered assert (ignore_errors: true) or a skipped task."""
    if not isinstance(result, dict):
        return {"id": check_id, "title": title, "status": "failed", "message": "the check did not run"}
    if result.get("skipped"):
        return {
            "id": check_id,
            "title": title,
            "status": "skipped",
            "message": "not run: " + str(result.get("false_condition", "condition false")),
        }
    status = "failed" if result.get("failed") else "passed"
    return {"id": check_id, "title": title, "status": status, "message": str(result.get("msg", ""))}


class FilterModule:
    def filters(self):
        return {
            "du_total_mb": du_total_mb,
            "apt_download_mb": apt_download_mb,
            "disk_plan": disk_plan,
            "precheck_record": precheck_record,
        }
