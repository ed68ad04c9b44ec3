#!/usr/bin/python3
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""The clinical-upgrade run lock on a host (roles/precheck, entry points lock and unlock).

    run_lock.py acquire PATH RUN_ID USER STALE_MINUTES BREAK_STALE(true|false)
    run_lock.py release PATH RUN_ID

Prints one JSON object: {"changed": bool, "acquired"/"released": bool, "holder": {...} or null, "msg": str}.
Exit 0 on success, 1 when the lock is held by another run (acquire), 2 on a usage or I/O error.
Acquiring is atomic: the lock file is written complete under a temporary name, then hard-linked to
PATH, which fails when PATH exists. Python 3 standard library only.
"""

import datetime
import json
import os
import socket
import sys
import tempfile
import time


def out(code, **result):
    print(json.dumps(result, sort_keys=True))
    sys.exit(code)


def read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"run_id": None, "unreadable": True}


def age_minutes(path):
    try:
        return (time.time() - os.stat(path).st_mtime) / 60.0
    except OSError:
        return 0.0


def acquire(path, run_id, user, stale_minutes, break_stale):
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o750, exist_ok=True)
    record = {
        "run_id": run_id,
        "user": user,
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "pid": os.getppid(),
    }
    fd, tmp = tempfile.mkstemp(prefix=".run.lock.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o640)
        for _attempt in range(2):
            try:
                os.link(tmp, path)
                out(0, changed=True, acquired=True, holder=record, msg=f"lock {path} taken by run {run_id}")
            except FileExistsError:
                holder = read(path)
                if holder is None:
                    continue  # released in between: try again
                if holder.get("run_id") == run_id:
                    out(0, changed=False, acquired=True, holder=holder, msg=f"lock {path} already held by this run")
                age = age_minutes(path)
                if break_stale and age > stale_minutes:
                    aside = f"{path}.stale-{int(time.time())}"
                    os.rename(path, aside)
                    continue
                out(
                    1,
                    changed=False,
                    acquired=False,
                    holder=holder,
                    age_minutes=round(age, 1),
                    stale=age > stale_minutes,
                    msg=f"lock {path} is held by run {holder.get('run_id')} of {holder.get('user')} "
                    f"since {holder.get('started')} ({age:.0f} minutes)",
                )
        out(
            1,
            changed=False,
            acquired=False,
            holder=read(path),
            msg=f"lock {path} changed hands while taking it; run again",
        )
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def release(path, run_id):
    holder = read(path)
    if holder is None:
        out(0, changed=False, released=False, holder=None, msg=f"lock {path} is not held")
    if holder.get("run_id") != run_id:
        out(
            0,
            changed=False,
            released=False,
            holder=holder,
            msg=f"lock {path} belongs to run {holder.get('run_id')}, not to {run_id}: left in place",
        )
    os.unlink(path)
    out(0, changed=True, released=True, holder=holder, msg=f"lock {path} of run {run_id} released")


def main(argv):
    try:
        if len(argv) == 6 and argv[0] == "acquire":
            acquire(argv[1], argv[2], argv[3], float(argv[4]), argv[5].lower() in ("true", "yes", "1"))
        elif len(argv) == 3 and argv[0] == "release":
            release(argv[1], argv[2])
    except OSError as exc:
        out(2, changed=False, msg=f"run lock: {exc}")
    out(
        2,
        changed=False,
        msg="usage: run_lock.py acquire PATH RUN_ID USER STALE_MINUTES BREAK_STALE | release PATH RUN_ID",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
