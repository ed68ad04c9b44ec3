#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: run_lock
short_description: Take, release or read the clinical-upgrade run lock on a host
description:
  - Keeps two upgrade runs from working on the same host at the same time. The lock is a small JSON
    file on the managed host, by default C(/var/lib/clinical-upgrade/run.lock), holding the id of the
    run that took it, who started that run, when, on which host, and a free O(info) mapping.
  - O(state=present) takes the lock for O(run_id). Taking it is atomic, so of two runs started at the
    same moment exactly one gets it, and the lock file is never seen half written. The module writes
    the complete lock under a temporary name in the same directory, then hard-links it to O(path);
    the link fails when O(path) exists. Taking a lock this run already holds changes nothing, unless
    O(info) differs, which rewrites the lock with the new O(info) (and refreshes its age).
  - A lock held by another run fails the task, saying which run holds it, whose it is, since when,
    and how to proceed. A lock older than O(stale_minutes) is reported as stale and still refuses;
    only O(break_stale=true) takes it over. The stale lock is then moved aside to
    C(<path>.stale-<epoch>), not deleted, so what it said stays on the host.
  - O(takeover_from) names an interrupted run whose lock this run takes over, stale or not (roles/upgrade
    resumes a run whose controller process is gone; docs/upgrade.md, "An interrupted run"). The lock is
    replaced atomically by this run's, which keeps the old run's id under C(resumed_from); a lock of any
    other run still refuses.
  - O(state=absent) removes the lock only when it belongs to O(run_id). Another run's lock, or a lock
    file that cannot be read, is left in place with a warning (so a cleanup step never fails on it).
  - O(state=query) only reads. It says whether the lock is held, by whom, how old it is and whether it
    is stale; it never changes anything.
  - Runs on the managed host. Python standard library only.
version_added: "0.2.0"
author:
  - clinical-upgrade contributors
options:
  path:
    description:
      - Absolute path of the lock file. Its directory is created (mode 0750) when the lock is taken.
      - The directory must be on a local file system that supports hard links.
    type: path
    default: /var/lib/clinical-upgrade/run.lock
  state:
    description:
      - V(present) takes the lock, V(absent) releases it when it is this run's, V(query) reads it.
    type: str
    choices: [present, absent, query]
    default: query
  run_id:
    description:
      - The id of this run (the same for every host of the run). Required with O(state=present) and
        O(state=absent); with O(state=query) it decides RV(ours).
    type: str
  user:
    description:
      - Who runs the upgrade, recorded in the lock. Default is the user the module runs as on the host.
    type: str
  stale_minutes:
    description:
      - A lock whose file was last written more than this many minutes ago is stale (its run probably
        died). Stale locks still refuse unless O(break_stale=true).
    type: int
    default: 240
  break_stale:
    description:
      - With O(state=present), take over a stale lock of another run. The stale lock is moved aside
        to C(<path>.stale-<epoch>).
      - Set it only once you know the other run is gone.
    type: bool
    default: false
  takeover_from:
    description:
      - With O(state=present), the id of an interrupted run whose lock this run takes over (see above).
        Ignored when the lock is free or already this run's.
      - Set it only once you know that run is gone (roles/upgrade checks its controller process).
    type: str
  info:
    description:
      - A free mapping stored in the lock under C(info), for example the controller host, its process
        id and the phase of the run. Not given, the lock keeps what it has.
      - With O(state=present) on a lock this run holds, a different O(info) rewrites the lock.
    type: dict
attributes:
  check_mode:
    support: full
    details: Reports what would change (RV(acquired), RV(released), RV(broken_to)) and writes nothing.
  diff_mode:
    support: none
notes:
  - The age of a lock is the age of its file (its modification time), so it does not depend on the
    lock being readable. Rewriting the lock with a new O(info) refreshes it.
  - Breaking a stale lock and releasing one are serialised with an advisory lock (C(flock)) on the
    lock's directory, so two runs breaking the same stale lock do not take it both.
  - Lock files written by the earlier C(run_lock.py) script of the precheck role are read the same way.
  - The precheck role's C(lock) and C(unlock) entry points and its check PRE-008 use this module.
"""

EXAMPLES = r"""
- name: Take the run lock
  run_lock:
    path: /var/lib/clinical-upgrade/run.lock
    state: present
    run_id: "{{ precheck_run_id }}"
    user: "{{ precheck_run.user }}"
    info:
      controller: "{{ lookup('ansible.builtin.pipe', 'hostname') }}"
      phase: stage

- name: See whether another run holds the lock (read-only)
  run_lock:
    state: query
    run_id: "{{ precheck_run_id }}"
  register: __precheck_lock_query
  changed_when: false
  check_mode: false

- name: Take over the lock of a run that died more than 4 hours ago
  run_lock:
    state: present
    run_id: "{{ precheck_run_id }}"
    stale_minutes: 240
    break_stale: true

- name: Take over the lock of a run whose controller was killed
  run_lock:
    state: present
    run_id: "{{ precheck_run_id }}"
    takeover_from: 20261201T020000Z-abcdef

- name: Release the run lock (left in place, with a warning, when it is another run's)
  run_lock:
    state: absent
    run_id: "{{ precheck_run_id }}"
"""

RETURN = r"""
path:
  description: The lock file.
  returned: always
  type: str
  sample: /var/lib/clinical-upgrade/run.lock
held:
  description:
    - Whether the lock file exists after the task (with O(state=absent), whether it is still there;
      in check mode, whether it would be).
  returned: always
  type: bool
  sample: true
holder:
  description:
    - What the lock says (C(run_id), C(user), C(host), C(started), C(info)), after the task; for
      O(state=absent), the lock that was released or left in place.
    - C(null) when there is no lock or it cannot be read.
  returned: always
  type: dict
  sample: {"run_id": "20250607T220012Z-3fa2c1", "user": "jdoe", "host": "pacs1", "started": "2025-06-07T22:00:12Z",
           "info": {"phase": "stage"}}
ours:
  description: Whether the lock belongs to O(run_id) (after the task; in check mode, as it would).
  returned: always
  type: bool
  sample: true
readable:
  description: Whether an existing lock file could be read as a lock; C(true) when there is none.
  returned: always
  type: bool
  sample: true
age_minutes:
  description: Minutes since the lock file was last written, one decimal; C(null) without a lock.
  returned: always
  type: float
  sample: 12.5
stale:
  description: Whether the lock is older than O(stale_minutes).
  returned: always
  type: bool
  sample: false
acquired:
  description: With O(state=present), whether this run holds the lock now (in check mode, would hold it).
  returned: always
  type: bool
  sample: true
released:
  description: With O(state=absent), whether this run's lock was removed (in check mode, would be).
  returned: always
  type: bool
  sample: false
broken_to:
  description: Where a stale lock was moved aside (C(<path>.stale-<epoch>)); C(null) when none was broken.
  returned: always
  type: str
  sample: /var/lib/clinical-upgrade/run.lock.stale-1749333612
taken_over_from:
  description: The run whose lock this run took over (O(takeover_from)); C(null) when none was.
  returned: always
  type: str
  sample: 20261201T020000Z-abcdef
"""

import contextlib
import datetime
import errno
import fcntl
import getpass
import json
import os
import socket
import tempfile
import time

from ansible.module_utils.arg_types import whole_number
from ansible.module_utils.basic import AnsibleModule

ATTEMPTS = 5


class LockError(Exception):
    """A problem that fails the task; the message says what to fix."""


class Unreadable(Exception):
    pass


def now_utc() -> str:
    # datetime.UTC needs Python 3.11; managed hosts (RHEL 9) may run older ones.
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: UP017


def read_lock(path: str):
    """(holder dict, stat) of the lock; (None, None) without one. Raises Unreadable(reason, stat)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        raise Unreadable(_reason(exc), st) from None
    if not isinstance(data, dict) or not isinstance(data.get("run_id"), str) or not data["run_id"]:
        raise Unreadable("it is JSON but has no run_id", st)
    return data, st


def _reason(exc) -> str:
    if isinstance(exc, IsADirectoryError):
        return "it is a directory"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return "it is not text"
    return "it is not JSON"


def age_of(st) -> float | None:
    if st is None:
        return None
    return round(max(0.0, time.time() - st.st_mtime) / 60.0, 1)


@contextlib.contextmanager
def guard(directory: str):
    """Advisory lock on the directory: serialises breaking and releasing (not taking, which is atomic)."""
    fd = None
    try:
        fd = os.open(directory, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        # No flock here (some network file systems): go on unserialised, as the script did.
        if fd is not None:
            os.close(fd)
        fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def write_temp(directory: str, record: dict) -> str:
    fd, tmp = tempfile.mkstemp(prefix=".run.lock.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o640)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


class RunLock:
    def __init__(self, module: AnsibleModule):
        params = module.params
        self.module = module
        self.path = params["path"]
        self.directory = os.path.dirname(self.path)
        self.run_id = params["run_id"]
        self.stale_minutes = params["stale_minutes"]
        self.break_stale = params["break_stale"]
        self.info = params["info"]
        self.takeover_from = params.get("takeover_from")
        self.user = params["user"] or _current_user()
        self.check = module.check_mode

    # ------------------------------------------------------------------ reporting

    def state(self, holder, st, readable=True, **extra) -> dict:
        age = age_of(st)
        result = {
            "path": self.path,
            "held": st is not None,
            "holder": holder,
            "ours": bool(holder) and holder.get("run_id") == self.run_id,
            "readable": readable,
            "age_minutes": age,
            "stale": age is not None and age > self.stale_minutes,
            "acquired": False,
            "released": False,
            "broken_to": None,
            "taken_over_from": None,
        }
        result.update(extra)
        return result

    def who(self, holder, st) -> str:
        return (
            f"lock {self.path} is held by run {holder.get('run_id')} of {holder.get('user', '?')} "
            f"(on {holder.get('host', '?')}) since {holder.get('started', '?')}, {age_of(st):.0f} minutes ago"
        )

    def advice(self, stale: bool, what: str = "that run") -> str:
        if stale:
            return (
                f"The lock is stale (older than stale_minutes={self.stale_minutes}): if {what} is really gone, "
                f"set break_stale: true to take it over (the old lock is kept as {self.path}.stale-<epoch>)."
            )
        return (
            f"Wait for {what} to finish. If it died, remove {self.path} by hand once you are sure it is gone, "
            f"or, once the lock is older than stale_minutes={self.stale_minutes}, set break_stale: true."
        )

    # ------------------------------------------------------------------ query

    def query(self):
        try:
            holder, st = read_lock(self.path)
        except Unreadable as exc:
            reason, st = exc.args
            result = self.state(None, st, readable=False)
            return result, f"lock file {self.path} exists but cannot be read ({reason})"
        result = self.state(holder, st)
        if holder is None:
            return result, f"lock {self.path} is not held"
        if result["ours"]:
            return result, f"lock {self.path} is held by this run ({self.run_id})"
        return result, self.who(holder, st) + (" (stale)" if result["stale"] else "")

    # ------------------------------------------------------------------ acquire

    def record(self, started=None) -> dict:
        record = {
            "run_id": self.run_id,
            "user": self.user,
            "host": socket.gethostname(),
            "started": started or now_utc(),
        }
        if self.info is not None:
            record["info"] = self.info
        return record

    def acquire(self):
        if not os.path.isdir(self.directory):
            if self.check:
                record = self.record()
                return self.state(record, None, held=True, ours=True, acquired=True), (
                    f"lock {self.path} would be taken by run {self.run_id} "
                    f"(check mode; {self.directory} would be created)"
                ), True
            os.makedirs(self.directory, mode=0o750, exist_ok=True)
        broken_to = None
        for _attempt in range(ATTEMPTS):
            try:
                holder, st = read_lock(self.path)
                unreadable = None
            except Unreadable as exc:
                unreadable, st = exc.args
                holder = None
            if st is None:
                record = self.record()
                if self.check:
                    return self.state(record, None, held=True, ours=True, acquired=True, broken_to=broken_to), (
                        f"lock {self.path} would be taken by run {self.run_id} (check mode)"
                    ), True
                if self.link(record):
                    new_st = os.stat(self.path)
                    msg = f"lock {self.path} taken by run {self.run_id}"
                    if broken_to:
                        msg += f" (the stale lock was moved to {broken_to})"
                    return self.state(record, new_st, acquired=True, broken_to=broken_to), msg, True
                continue  # another run linked first: look at its lock
            stale = age_of(st) > self.stale_minutes
            if holder is not None and holder.get("run_id") == self.run_id:
                return self.refresh(holder, st)
            if holder is not None and self.takeover_from and holder.get("run_id") == self.takeover_from:
                taken = self.take_over(holder, st)
                if taken is not None:
                    return taken
                continue  # replaced or rewritten since: judge it again
            if stale and self.break_stale:
                if self.check:
                    record = self.record()
                    return self.state(
                        record, None, held=True, ours=True, acquired=True, broken_to=f"{self.path}.stale-<epoch>"
                    ), (
                        f"the stale lock {self.path} would be moved aside and taken by run {self.run_id} (check mode)"
                    ), True
                broken_to = self.move_aside(st) or broken_to
                continue
            if unreadable is not None:
                raise LockError(
                    f"lock file {self.path} exists but cannot be read ({unreadable}), so it is not known which "
                    f"run holds it. Find out whether an upgrade runs on this host. "
                    + self.advice(stale, "it"),
                    self.state(None, st, readable=False, broken_to=broken_to),
                )
            raise LockError(
                self.who(holder, st) + ". " + self.advice(stale),
                self.state(holder, st, broken_to=broken_to),
            )
        holder, st = self.safe_read()
        raise LockError(
            f"lock {self.path} changed hands {ATTEMPTS} times while taking it; run again",
            self.state(holder, st, broken_to=broken_to),
        )

    def link(self, record) -> bool:
        tmp = write_temp(self.directory, record)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def move_aside(self, stale_st):
        """Move the stale lock aside, if it is still the one judged stale. Returns where, or None."""
        with guard(self.directory):
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return None
            if (st.st_dev, st.st_ino, st.st_mtime) != (stale_st.st_dev, stale_st.st_ino, stale_st.st_mtime):
                return None  # replaced or rewritten since: judge it again
            aside = f"{self.path}.stale-{int(time.time())}"
            suffix = 1
            while os.path.lexists(aside):
                aside = f"{self.path}.stale-{int(time.time())}-{suffix}"
                suffix += 1
            os.rename(self.path, aside)
            return aside

    def take_over(self, holder, old_st):
        """Replace the lock of the interrupted run ``takeover_from`` by this run's; None when it changed meanwhile."""
        record = self.record()
        record["resumed_from"] = holder.get("run_id")
        msg = f"lock {self.path} of interrupted run {holder.get('run_id')} taken over by run {self.run_id}"
        if self.check:
            return self.state(record, None, held=True, ours=True, acquired=True,
                              taken_over_from=holder.get("run_id")), msg + " (check mode)", True
        with guard(self.directory):
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return None
            if (st.st_dev, st.st_ino, st.st_mtime) != (old_st.st_dev, old_st.st_ino, old_st.st_mtime):
                return None
            tmp = write_temp(self.directory, record)
            try:
                os.replace(tmp, self.path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        return self.state(record, os.stat(self.path), acquired=True, taken_over_from=holder.get("run_id")), msg, True

    def refresh(self, holder, st):
        """This run holds the lock: rewrite it only when info changes."""
        if self.info is None or holder.get("info") == self.info:
            return self.state(holder, st, acquired=True), f"lock {self.path} already held by this run", False
        record = dict(holder, info=self.info)
        if self.check:
            return self.state(record, st, acquired=True), (
                f"lock {self.path} of this run would get new info (check mode)"
            ), True
        with guard(self.directory):
            tmp = write_temp(self.directory, record)
            try:
                os.replace(tmp, self.path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        return self.state(record, os.stat(self.path), acquired=True), f"lock {self.path} of this run updated", True

    # ------------------------------------------------------------------ release

    def release(self):
        with guard(self.directory) if os.path.isdir(self.directory) else contextlib.nullcontext():
            try:
                holder, st = read_lock(self.path)
            except Unreadable as exc:
                reason, st = exc.args
                msg = (
                    f"lock file {self.path} cannot be read ({reason}), so it is not known whose it is: left in place. "
                    f"Remove it by hand once you are sure no upgrade runs on this host"
                )
                self.module.warn(msg)
                return self.state(None, st, readable=False), msg, False
            if holder is None:
                return self.state(None, None), f"lock {self.path} is not held", False
            if holder.get("run_id") != self.run_id:
                msg = f"lock {self.path} belongs to run {holder.get('run_id')}, not to {self.run_id}: left in place"
                self.module.warn(msg)
                return self.state(holder, st), msg, False
            if self.check:
                return self.state(holder, None, held=False, ours=False, released=True), (
                    f"lock {self.path} of run {self.run_id} would be released (check mode)"
                ), True
            os.unlink(self.path)
        return self.state(holder, None, held=False, ours=False, released=True), (
            f"lock {self.path} of run {self.run_id} released"
        ), True

    def safe_read(self):
        try:
            return read_lock(self.path)
        except Unreadable as exc:
            return None, exc.args[1]
        except OSError:
            return None, None


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/var/lib/clinical-upgrade/run.lock"},
            "state": {"type": "str", "choices": ["present", "absent", "query"], "default": "query"},
            "run_id": {"type": "str"},
            "user": {"type": "str"},
            "stale_minutes": {"type": whole_number, "default": 240},
            "break_stale": {"type": "bool", "default": False},
            "info": {"type": "dict"},
            "takeover_from": {"type": "str"},
        },
        required_if=[("state", "present", ["run_id"]), ("state", "absent", ["run_id"])],
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    if not os.path.isabs(path) or path.endswith("/"):
        module.fail_json(
            msg="path must be the absolute path of the lock file, such as /var/lib/clinical-upgrade/run.lock; "
            f"got {path!r}",
            changed=False,
        )
    if params["run_id"] is not None and not params["run_id"].strip():
        module.fail_json(msg="run_id is empty: give this run's id (the same for every host of the run)", changed=False)
    if params["stale_minutes"] < 1:
        module.fail_json(msg=f"stale_minutes must be 1 or more, got {params['stale_minutes']}", changed=False)
    lock = RunLock(module)
    try:
        if params["state"] == "present":
            result, msg, changed = lock.acquire()
        elif params["state"] == "absent":
            result, msg, changed = lock.release()
        else:
            (result, msg), changed = lock.query(), False
    except LockError as exc:
        message, result = exc.args
        module.fail_json(msg=message, changed=False, **result)
    except OSError as exc:
        holder, st = lock.safe_read()
        where = exc.filename or path
        hint = " (the directory must be on a local file system that supports hard links)" if exc.errno in (
            errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV) else ""
        verb = {"present": "take", "absent": "release", "query": "read"}[params["state"]]
        module.fail_json(
            msg=f"cannot {verb} the run lock {path}: {where}: {exc.strerror or exc}{hint}; "
            "check the path and the permissions of its directory",
            changed=False,
            **lock.state(holder, st),
        )
    module.exit_json(msg=msg, changed=changed, **result)


if __name__ == "__main__":
    main()
