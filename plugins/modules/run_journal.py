#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: run_journal
short_description: Keep the clinical-upgrade run journal on a host, or read it
description:
  - The run journal is a small JSON file on the managed host, beside the run lock (by default
    C(/var/lib/clinical-upgrade/run.journal.json)). The run that holds the lock writes in it where it
    is, with its id, the controller and the process of its C(ansible-playbook), the phase (the step of
    the flow that runs or last ended) and what a rerun needs to take over (the baseline file, the
    mark, the snapshot). A rerun that finds the lock held reads it to tell a live run from an interrupted
    one, and whether the host was changed (docs/upgrade.md, "An interrupted run").
  - O(state=present) merges O(data) into the journal of O(run_id) (top-level keys replace) and writes
    it atomically (a complete temporary file in the same directory, then a rename), mode 0640. The
    file always holds C(run_id) and C(updated) (UTC). A journal of another run is replaced only when
    that run has finished (its C(phase) is V(finished)) or is the run named in O(takeover_from);
    otherwise the task fails and writes nothing.
  - O(state=query) only reads.
  - O(state=absent) removes the journal when it is O(run_id)'s (or, with O(takeover_from), that run's).
  - Runs on the managed host. Python standard library only.
version_added: "0.3.0"
author:
  - clinical-upgrade contributors
options:
  path:
    description:
      - Absolute path of the journal file. Its directory is created (mode 0750) when it is written.
    type: path
    default: /var/lib/clinical-upgrade/run.journal.json
  state:
    description:
      - V(present) writes this run's journal, V(query) reads it, V(absent) removes this run's.
    type: str
    choices: [present, absent, query]
    default: query
  run_id:
    description:
      - The id of this run. Required with O(state=present) and O(state=absent); with O(state=query) it
        decides RV(ours).
    type: str
  data:
    description:
      - With O(state=present), the keys to write (C(phase), C(status), C(snapshot), ...); they replace
        the same keys of this run's journal. C(run_id) and C(updated) are the module's.
    type: dict
    default: {}
  takeover_from:
    description:
      - With O(state=present) or O(state=absent), the id of an interrupted run whose unfinished journal
        this run may replace. The replaced journal is returned as RV(previous).
    type: str
attributes:
  check_mode:
    support: full
    details: Reports what would be written (RV(journal)) and writes nothing.
  diff_mode:
    support: none
notes:
  - Written with a rename, so a reader never sees a half-written journal, and a controller killed
    while writing leaves the previous journal, complete.
  - roles/upgrade writes it at the start and the end of every step (tasks/step.yml) and at the end of
    the run (tasks/finish.yml, phase V(finished)); the precheck role's PRE-008 and roles/upgrade's
    tasks/resume.yml read it.
"""

EXAMPLES = r"""
- name: Journal the start of the switch
  run_journal:
    state: present
    run_id: "{{ upgrade_result.run.id }}"
    data: {phase: switch, status: running}

- name: Read the journal (read-only)
  run_journal:
    state: query
  register: __upgrade_journal
  changed_when: false
  check_mode: false

- name: Take over the journal of an interrupted run
  run_journal:
    state: present
    run_id: "{{ upgrade_result.run.id }}"
    takeover_from: 20261201T020000Z-abcdef
    data: {phase: resume, status: running}
"""

RETURN = r"""
path:
  description: The journal file.
  returned: always
  type: str
  sample: /var/lib/clinical-upgrade/run.journal.json
exists:
  description: Whether the journal file exists after the task (in check mode, whether it would).
  returned: always
  type: bool
  sample: true
journal:
  description: What the journal says after the task (in check mode, would say); C(null) without a readable one.
  returned: always
  type: dict
  sample: {"run_id": "20261201T020000Z-abcdef", "phase": "switch", "status": "running",
           "updated": "2026-12-01T02:14:00Z"}
ours:
  description: Whether the journal belongs to O(run_id).
  returned: always
  type: bool
  sample: true
readable:
  description: Whether an existing journal file could be read; C(true) when there is none.
  returned: always
  type: bool
  sample: true
age_minutes:
  description: Minutes since the journal file was last written, one decimal; C(null) without one.
  returned: always
  type: float
  sample: 3.5
previous:
  description: The journal of another run that this task replaced or removed (O(takeover_from)); C(null) otherwise.
  returned: always
  type: dict
  sample: {"run_id": "20261201T020000Z-abcdef", "phase": "switch", "status": "running"}
"""

import contextlib
import datetime
import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

FINISHED = "finished"


class JournalError(Exception):
    """A problem that fails the task; the message says what to fix."""


def now_utc() -> str:
    # datetime.UTC needs Python 3.11; managed hosts (RHEL 9) may run older ones.
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: UP017


def read_journal(path: str):
    """(journal, stat, readable): (None, None, True) without one; (None, stat, False) when unreadable."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, None, True
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None, None, True
    except (OSError, ValueError):
        return None, st, False
    if not isinstance(data, dict) or not isinstance(data.get("run_id"), str) or not data["run_id"]:
        return None, st, False
    return data, st, True


def age_of(st) -> float | None:
    return None if st is None else round(max(0.0, time.time() - st.st_mtime) / 60.0, 1)


def write_atomic(path: str, record: dict) -> None:
    """Write the complete record to a temporary file beside ``path``, then rename it over ``path``."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".run.journal.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, sort_keys=True, indent=1)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power loss
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _may_replace(journal, run_id, takeover_from) -> bool:
    return (journal is None or journal.get("run_id") == run_id or journal.get("phase") == FINISHED
            or (takeover_from and journal.get("run_id") == takeover_from))


def _refusal(path, journal, takeover_from) -> str:
    return (
        f"the run journal {path} belongs to run {journal.get('run_id')}, which has not finished (phase "
        f"{journal.get('phase')}, {journal.get('status')}, updated {journal.get('updated')})"
        + (f", not to run {takeover_from} named in takeover_from" if takeover_from else "")
        + ": nothing was written. Resume or finish that run first (docs/upgrade.md, \"An interrupted run\")."
    )


def present(module, path, run_id, data, takeover_from):
    journal, _st, readable = read_journal(path)
    if not readable:
        raise JournalError(
            f"the run journal {path} exists but cannot be read, so it is not known which run wrote it: nothing "
            f"was written. Look at it; remove it by hand once you are sure no upgrade runs on this host."
        )
    if not _may_replace(journal, run_id, takeover_from):
        raise JournalError(_refusal(path, journal, takeover_from))
    previous = journal if journal and journal.get("run_id") != run_id else None
    base = dict(journal) if journal and journal.get("run_id") == run_id else {}
    record = dict(base)
    record.update(data or {})
    record["run_id"] = run_id
    unchanged = {k: v for k, v in record.items() if k != "updated"} == {
        k: v for k, v in base.items() if k != "updated"}
    if unchanged and journal is not None:
        return {"exists": True, "journal": journal, "previous": None}, f"journal {path} of run {run_id} unchanged", \
            False
    record["updated"] = now_utc()
    if not module.check_mode:
        os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
        write_atomic(path, record)
    verb = "would be written" if module.check_mode else "written"
    msg = f"journal {path} of run {run_id} {verb}" + (
        f" (taking over from run {previous.get('run_id')}, phase {previous.get('phase')})" if previous else "")
    return {"exists": True, "journal": record, "previous": previous}, msg, True


def absent(module, path, run_id, takeover_from):
    journal, st, readable = read_journal(path)
    if journal is None:
        return {"exists": st is not None, "journal": None, "previous": None}, (
            f"journal {path} is not there" if st is None else f"journal {path} cannot be read: left in place"), False
    if journal.get("run_id") not in (run_id, takeover_from):
        module.warn(f"journal {path} belongs to run {journal.get('run_id')}, not to {run_id}: left in place")
        return {"exists": True, "journal": journal, "previous": None}, (
            f"journal {path} belongs to run {journal.get('run_id')}: left in place"), False
    if not module.check_mode:
        os.unlink(path)
    previous = journal if journal.get("run_id") != run_id else None
    return {"exists": bool(module.check_mode), "journal": None, "previous": previous}, (
        f"journal {path} of run {journal.get('run_id')} removed"), True


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/var/lib/clinical-upgrade/run.journal.json"},
            "state": {"type": "str", "choices": ["present", "absent", "query"], "default": "query"},
            "run_id": {"type": "str"},
            "data": {"type": "dict", "default": {}},
            "takeover_from": {"type": "str"},
        },
        required_if=[("state", "present", ["run_id"]), ("state", "absent", ["run_id"])],
        supports_check_mode=True,
    )
    params = module.params
    path, run_id = params["path"], params["run_id"]
    if not os.path.isabs(path) or path.endswith("/"):
        module.fail_json(
            msg="path must be the absolute path of the journal file, such as "
            f"/var/lib/clinical-upgrade/run.journal.json; got {path!r}",
            changed=False,
        )
    if run_id is not None and not run_id.strip():
        module.fail_json(msg="run_id is empty: give this run's id (the same for every host of the run)", changed=False)
    changed = False
    try:
        if params["state"] == "present":
            result, msg, changed = present(module, path, run_id, params["data"], params["takeover_from"])
        elif params["state"] == "absent":
            result, msg, changed = absent(module, path, run_id, params["takeover_from"])
        else:
            journal, st, readable = read_journal(path)
            result = {"exists": st is not None, "journal": journal, "previous": None, "readable": readable}
            msg = (f"journal {path} is not there" if st is None else
                   f"journal {path} of run {journal.get('run_id')}: phase {journal.get('phase')}" if journal else
                   f"journal {path} exists but cannot be read")
    except JournalError as exc:
        journal, st, readable = read_journal(path)
        module.fail_json(msg=str(exc), changed=False, path=path, exists=st is not None, journal=journal,
                         ours=bool(journal) and journal.get("run_id") == run_id, readable=readable,
                         age_minutes=age_of(st), previous=None)
    except OSError as exc:
        module.fail_json(
            msg=f"cannot {'read' if params['state'] == 'query' else 'write'} the run journal {path}: "
            f"{exc.filename or path}: {exc.strerror or exc}; check the path and the permissions of its directory",
            changed=False, path=path, exists=os.path.exists(path), journal=None, ours=False, readable=False,
            age_minutes=None, previous=None,
        )
    journal = result["journal"]
    try:
        st = os.stat(path)
    except OSError:
        st = None
    module.exit_json(
        msg=msg, changed=changed, path=path, exists=result["exists"], journal=journal,
        ours=bool(journal) and journal.get("run_id") == run_id, readable=result.get("readable", True),
        age_minutes=age_of(st) if result["exists"] else None, previous=result["previous"],
    )


if __name__ == "__main__":
    main()
