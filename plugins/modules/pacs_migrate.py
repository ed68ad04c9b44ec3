#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pacs_migrate
short_description: Copy every instance an Orthanc archive holds into another, byte for byte, resumably
description:
  - The bulk copy of a migration from one Orthanc PACS to another. Lists both archives (the paged C(/studies) and
    C(/series) of each; an instance is known by its Orthanc id, the same on every Orthanc for the same patient ID and
    study, series and SOP Instance UIDs) and copies only what the target lacks. A re-run copies only what is still
    missing, so an interrupted run (the controller killed) loses nothing and resumes where the target stands; a run
    at the end of a migration is its delta pass.
  - "O(method=archive): the missing instances in batches of O(batch_instances), each batch a ZIP the source writes
    (C(/tools/create-archive)) and the target unpacks (C(POST /instances)). O(method=instance): one instance at a
    time (C(GET /instances/{id}/file), C(POST /instances)). Both store the file as the source stored it: the bytes do
    not change (a C-STORE would rewrite the file meta header), which the reconciliation's file check proves."
  - O(workers) batches are in flight at once; O(max_bytes_per_second) limits the rate for clinical hours; a failed
    batch is retried with a doubling back-off, then copied instance by instance, and what still fails is returned
    with its reason.
  - O(replace) names instances the target holds with other content (the reconciliation's differing ones); each is
    first saved to O(keep_dir), then deleted on the target and copied again from the source.
  - The source is only read. Runs on the controller; use C(delegate_to=localhost).
version_added: "0.6.0"
author:
  - clinical-upgrade contributors
options:
  source:
    description: The Orthanc REST API copied from.
    type: dict
    required: true
    suboptions: &side
      url:
        description: Base URL of the Orthanc REST API.
        type: str
        required: true
      username:
        description: User for HTTP basic authentication.
        type: str
      password:
        description: Its password.
        type: str
      validate_certs:
        description: Verify the server certificate of an C(https) URL.
        type: bool
        default: true
      ca_path:
        description: PEM file of the CA that signed the server's certificate.
        type: path
      timeout:
        description: Seconds to wait for each request (a batch's ZIP included).
        type: float
        default: 300.0
  target:
    description: The Orthanc REST API copied to.
    type: dict
    required: true
    suboptions: *side
  method:
    description: How instances travel (see the description).
    type: str
    choices: [archive, instance]
    default: archive
  batch_instances:
    description: Instances per batch with O(method=archive) (1 to 10000).
    type: int
    default: 200
  workers:
    description: Batches (or instances) in flight at once (1 to 32).
    type: int
    default: 4
  max_bytes_per_second:
    description: Limit the copy to this many bytes per second (for clinical hours); 0 is no limit.
    type: int
    default: 0
  retries:
    description: Attempts after the first for a failed batch or instance, each after a doubling back-off.
    type: int
    default: 4
  backoff_seconds:
    description: The first back-off; it doubles at each retry, up to 60 seconds.
    type: float
    default: 1.0
  replace:
    description: Orthanc ids of instances the target holds with other content, to save, delete and copy again.
    type: list
    elements: str
    default: []
  keep_dir:
    description: Controller directory the files named in O(replace) are saved to before they are deleted. Required
      with O(replace).
    type: path
  journal:
    description: A JSON-lines file on the controller where every batch is recorded as it ends (appended to).
    type: path
attributes:
  check_mode:
    support: full
    details: Lists both archives and returns what would be copied; copies nothing.
  diff_mode:
    support: none
notes:
  - No patient name or ID is returned; instances are named by SOP Instance UID and Orthanc id.
seealso:
  - module: dicom_reconcile
  - module: pacs_archive
"""

EXAMPLES = r"""
- name: Copy what the new PACS lacks, 4 batches at once, at most 20 MB/s during clinical hours
  pacs_migrate:
    source: {url: "http://pacs1:8042", username: cuadmin, password: "{{ pacs_server_rest_password }}"}
    target: {url: "http://pacs2:8042", username: cuadmin, password: "{{ pacs2_rest_password }}"}
    max_bytes_per_second: 20000000
    journal: /var/lib/clinical-upgrade/evidence/migration/journal.jsonl
  delegate_to: localhost
"""

RETURN = r"""
method:
  description: How the instances travelled.
  returned: always
  type: str
source:
  description: Studies, series and instances of the source.
  returned: success
  type: dict
target_before:
  description: The same for the target before the copy.
  returned: success
  type: dict
to_copy:
  description: Instances the target lacked.
  returned: success
  type: int
copied:
  description: Instances stored on the target by this run.
  returned: success
  type: int
already_stored:
  description: Instances the target answered it already held (stored meanwhile by another path).
  returned: success
  type: int
bytes:
  description: Bytes sent to the target (ZIP batches or files).
  returned: success
  type: int
replaced:
  description: Instances of O(replace) saved, deleted and copied again, each with the file it was saved to.
  returned: success
  type: list
  elements: dict
failures:
  description: Instances that could not be copied, with the reason (after every retry).
  returned: always
  type: list
  elements: dict
retries:
  description: Batches or instances that needed more than one attempt.
  returned: success
  type: int
elapsed_s:
  description: Seconds the copy took (the listing included).
  returned: success
  type: float
instances_per_second:
  description: Instances copied per second of copy (the listing excluded).
  returned: success
  type: float
"""

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.archive_reconcile import (
    inventories,
    open_rest_side,
    parent_dir_error,
    rest_side_error,
    rest_side_spec,
)
from ansible.module_utils.arg_types import whole_number
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.orthanc_rest import OrthancError

SIDE = rest_side_spec(timeout=300.0, url_required=True)


def argument_spec():
    return {
        "source": {"type": "dict", "required": True, "options": SIDE},
        "target": {"type": "dict", "required": True, "options": SIDE},
        "method": {"type": "str", "default": "archive", "choices": ["archive", "instance"]},
        "batch_instances": {"type": whole_number, "default": 200},
        "workers": {"type": whole_number, "default": 4},
        "max_bytes_per_second": {"type": whole_number, "default": 0},
        "retries": {"type": whole_number, "default": 4},
        "backoff_seconds": {"type": "float", "default": 1.0},
        "replace": {"type": "list", "elements": "str", "default": []},
        "keep_dir": {"type": "path"},
        "journal": {"type": "path"},
    }


def params_error(p):
    if not 1 <= p["batch_instances"] <= 10000:
        return f"batch_instances must be between 1 and 10000, got {p['batch_instances']}"
    if not 1 <= p["workers"] <= 32:
        return f"workers must be between 1 and 32, got {p['workers']}"
    if p["max_bytes_per_second"] < 0:
        return "max_bytes_per_second must be 0 (no limit) or a number of bytes per second"
    if not 0 <= p["retries"] <= 20:
        return f"retries must be between 0 and 20, got {p['retries']}"
    if not 0 <= p["backoff_seconds"] <= 60:
        return f"backoff_seconds must be between 0 and 60, got {p['backoff_seconds']}"
    if p["replace"] and not p["keep_dir"]:
        return "keep_dir is required with replace: each instance is saved there before it is deleted on the target"
    error = parent_dir_error(p["journal"], "journal")
    for side in ("source", "target"):
        error = error or rest_side_error(p[side], side)
    return error


class RateLimit:
    """At most `rate` bytes per second over the run (0: no limit), shared by the workers."""

    def __init__(self, rate):
        self.rate = rate
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.sent = 0

    def take(self, size):
        if not self.rate:
            return
        with self.lock:
            self.sent += size
            due = self.start + self.sent / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class Copier:
    def __init__(self, source, target, p):
        self.source, self.target, self.p = source, target, p
        self.limit = RateLimit(p["max_bytes_per_second"])
        self.lock = threading.Lock()
        self.copied = self.already = self.bytes = self.retried = 0
        self.failures = []
        self.journal = p["journal"]

    def record(self, entry):
        if not self.journal:
            return
        with self.lock, open(self.journal, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")

    def attempt(self, what, func):
        """func() with retries and a doubling back-off; (result, None) or (None, last error)."""
        delay = self.p["backoff_seconds"]
        for attempt in range(self.p["retries"] + 1):
            try:
                result = func()
                if attempt:
                    with self.lock:
                        self.retried += 1
                return result, None
            except (OrthancError, ValueError, KeyError) as exc:
                error = str(exc)
                if attempt < self.p["retries"]:
                    time.sleep(min(delay, 60))
                    delay *= 2
        return None, f"{what}: {error}"

    def stored(self, answer, expected):
        """(stored, already stored) of a POST /instances answer, checked against the ids sent."""
        items = answer if isinstance(answer, list) else [answer]
        ids = {i.get("ID") for i in items if isinstance(i, dict)}
        if not set(expected) <= ids:
            raise ValueError(f"the target stored {len(ids & set(expected))} of the {len(expected)} instances sent")
        already = sum(1 for i in items if isinstance(i, dict) and i.get("Status") == "AlreadyStored")
        return len(expected) - already, already

    def one(self, key):
        def copy():
            data = self.source.pool.get_bytes(f"/instances/{key}/file")
            if data is None:
                raise ValueError("the source no longer holds it")
            self.limit.take(len(data))
            answer = self.target.pool.post("/instances", data, "application/dicom")
            return (*self.stored(answer, [key]), len(data))

        result, error = self.attempt(f"instance {key}", copy)
        with self.lock:
            if error:
                self.failures.append({"orthanc_id": key, "reason": error})
            else:
                self.copied += result[0]
                self.already += result[1]
                self.bytes += result[2]
        return error is None

    def batch(self, keys):
        started = time.monotonic()

        def copy():
            body = json.dumps({"Resources": keys, "Synchronous": True}).encode()
            status, data = self.source.pool.request("POST", "/tools/create-archive", body=body, accept="*/*",
                                                    content_type="application/json")  # fmt: skip
            if status == 404 or not data.startswith(b"PK"):
                raise ValueError("the source did not answer with a ZIP archive (POST /tools/create-archive)")
            self.limit.take(len(data))
            answer = self.target.pool.post("/instances", data, "application/zip")
            return (*self.stored(answer, keys), len(data))

        result, error = self.attempt(f"batch of {len(keys)}", copy)
        if error is None:
            with self.lock:
                self.copied += result[0]
                self.already += result[1]
                self.bytes += result[2]
            self.record({"instances": len(keys), "bytes": result[2], "seconds": round(time.monotonic() - started, 3),
                         "stored": result[0], "already_stored": result[1]})  # fmt: skip
            return
        # The batch as a whole failed every time: each of its instances on its own, so one bad file fails alone.
        self.record({"instances": len(keys), "error": error, "then": "instance by instance"})
        for key in keys:
            self.one(key)


def batches(inventory, keys, size):
    """The keys in batches of at most `size`, a study's instances together, in the source's order."""
    wanted, out, current = set(keys), [], []
    for study in sorted(inventory.studies):
        for series in sorted(inventory.studies[study]["series"]):
            for key in sorted(inventory.studies[study]["series"][series]):
                if key in wanted:
                    current.append(key)
                    if len(current) >= size:
                        out.append(current)
                        current = []
    if current:
        out.append(current)
    return out


def replace(copier, keys, keep_dir):
    """Save each named instance of the target to keep_dir, delete it there, copy it again from the source."""
    os.makedirs(keep_dir, exist_ok=True)
    done = []
    for key in keys:
        data = copier.target.pool.get_bytes(f"/instances/{key}/file")
        path = None
        if data is not None:
            path = os.path.join(keep_dir, f"{key}.dcm")
            with open(path, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            with open(path, "rb") as handle:
                if hashlib.sha256(handle.read()).digest() != hashlib.sha256(data).digest():
                    raise OSError(f"the copy of {key} in {keep_dir} does not read back as written; nothing deleted")
            copier.target.pool.delete(f"/instances/{key}")
        ok = copier.one(key)
        done.append({"orthanc_id": key, "kept": path, "copied": ok})
    return done


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    error = params_error(p)
    if error:
        module.fail_json(msg=error, reason="invalid_argument", failures=[])
    sides = {side: open_rest_side(p[side], side, p["workers"]) for side in ("source", "target")}
    started = time.monotonic()
    try:
        src, tgt = inventories(sides["source"], sides["target"])
        missing = [k for k in src.where if k not in tgt.where]
        unknown = [k for k in p["replace"] if k not in src.where]
        if unknown:
            module.fail_json(msg=f"replace names {len(unknown)} instance(s) the source does not hold: "
                             f"{', '.join(unknown[:5])}", reason="invalid_argument", failures=[])  # fmt: skip
        result = {"method": p["method"], "source": src.counts(), "target_before": tgt.counts(),
                  "to_copy": len(missing), "failures": []}  # fmt: skip
        if module.check_mode:
            module.exit_json(changed=bool(missing or p["replace"]), copied=0, **result)
        copier = Copier(sides["source"], sides["target"], p)
        listed = time.monotonic()
        with ThreadPoolExecutor(p["workers"]) as pool:
            if p["method"] == "archive":
                list(pool.map(copier.batch, batches(src, missing, p["batch_instances"])))
            else:
                list(pool.map(copier.one, missing))
        replaced = replace(copier, p["replace"], p["keep_dir"]) if p["replace"] else []
        copy_s = time.monotonic() - listed
    except OrthancError as exc:
        module.fail_json(msg=str(exc), reason="unreachable", failures=[])
    finally:
        for inv in sides.values():
            inv.close()
    # The SOP Instance UIDs of what failed, for people and for the report.
    if copier.failures:
        uids = sides["source"].sop_instance_uids([f["orthanc_id"] for f in copier.failures])
        for failure in copier.failures:
            failure["sop_instance_uid"] = uids.get(failure["orthanc_id"], "")
    result.update(
        copied=copier.copied,
        already_stored=copier.already,
        bytes=copier.bytes,
        replaced=replaced,
        failures=copier.failures,
        retries=copier.retried,
        elapsed_s=round(time.monotonic() - started, 2),
        instances_per_second=round(copier.copied / copy_s, 1) if copy_s > 0 else 0.0,
    )
    if copier.failures:
        first = "; ".join(f"{f['sop_instance_uid'] or f['orthanc_id']} ({f['reason']})" for f in copier.failures[:5])
        module.fail_json(msg=f"{len(copier.failures)} of {len(missing)} instance(s) could not be copied after "
                         f"{p['retries']} retries: {first}", **result)  # fmt: skip
    module.exit_json(changed=bool(copier.copied or replaced), **result)


if __name__ == "__main__":
    main()
