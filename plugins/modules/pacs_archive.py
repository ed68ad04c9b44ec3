#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pacs_archive
short_description: List, read back, keep and re-deliver the instances of an Orthanc PACS
description:
  - "O(state=inventory): the SOP Instance UID of every instance the PACS holds (paged through
    C(/instances?expand)), the position of its change log (C(/changes) C(Last)), and with
    O(since_change) the instances stored after that position. Read-only."
  - "O(state=readback): reads a sample of stored files back (C(/instances/{id}/file)) and compares
    each with the MD5 Orthanc recorded when it stored it (C(StoreMD5ForAttachments)). Read-only."
  - "O(state=export): copies every instance stored after O(since_change) to O(dest) on the
    controller, with a C(manifest.json) of SOP Instance UID and sha256 per file. The PACS is not
    changed. This is how a rollback keeps what the PACS acknowledged after a snapshot."
  - "O(state=describe): writes the C(manifest.json) of O(state=export) for a directory O(src) of DICOM files copied by
    other means (for example the stored files of a PACS whose API no longer answers): SOP Instance UID and sha256 of
    each, the largest file kept where several carry the same SOP Instance UID. Needs pydicom on the controller."
  - "O(state=import): stores every file of O(src) (a directory written by O(state=export)) into the
    PACS, then proves each one by SOP Instance UID and sha256 of the file the PACS returns. Fails,
    naming O(src) and every instance not proven, when any could not be re-delivered; the files stay."
  - "Runs on the controller; use C(delegate_to: localhost)."
version_added: "0.2.0"
author:
  - clinical-upgrade contributors
options:
  url:
    description: Base URL of the Orthanc REST API.
    type: str
    default: http://localhost:8042
  username:
    description: User for HTTP basic authentication (Orthanc C(RegisteredUsers)).
    type: str
  password:
    description: Password for O(username).
    type: str
  validate_certs:
    description: Verify the server certificate for C(https) URLs.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the server's certificate, for an C(https) O(url) signed by a
        site CA rather than a public one. Checked before any request.
    type: path
  timeout:
    description: Seconds to wait for each HTTP request.
    type: float
    default: 30.0
  state:
    description: What to do (see the description).
    type: str
    choices: [inventory, readback, export, describe, import]
    default: inventory
  since_change:
    description:
      - A position of the PACS's change log (the RV(last_change) of an earlier O(state=inventory)).
      - Required for O(state=export); with O(state=inventory) the instances stored after it are returned in RV(new).
    type: int
  dest:
    description:
      - Controller directory for O(state=export); created, must be empty or absent.
      - For O(state=describe), the directory that receives C(manifest.json) (O(src) itself when not set).
    type: path
  src:
    description: Controller directory written by O(state=export) or O(state=describe), for O(state=import); the
      directory of DICOM files for O(state=describe).
    type: path
  sample_size:
    description: How many stored files O(state=readback) reads back (spread over the whole archive).
    type: int
    default: 50
  workers:
    description:
      - How many instances O(state=import) stores and proves at the same time (1 to 16). Each is still
        stored, looked up by its SOP Instance UID and read back on its own; the order of RV(delivered)
        follows the manifest.
    type: int
    default: 4
  include_uids:
    description: Return every SOP Instance UID in RV(sop_instance_uids) (O(state=inventory)).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: inventory, readback and export read only (export writes on the controller, also in check mode); import
      reports what it would store and stores nothing.
  diff_mode:
    support: none
notes:
  - The instances are identified by SOP Instance UID, which is what a modality and a worklist know; no patient name or
    ID is returned.
seealso:
  - module: pacs_info
"""

EXAMPLES = r"""
- name: Record the archive and its change log position before a change
  pacs_archive:
    url: "{{ endpoint_rest_url }}"
    username: cuadmin
    password: "{{ pacs_server_rest_password }}"
  register: before
  delegate_to: localhost

- name: Keep on the controller what the PACS acknowledged after that position
  pacs_archive:
    url: "{{ endpoint_rest_url }}"
    username: cuadmin
    password: "{{ pacs_server_rest_password }}"
    state: export
    since_change: "{{ before.last_change }}"
    dest: /var/lib/clinical-upgrade/evidence/preserved/pacs1
  delegate_to: localhost

- name: Re-deliver it after a revert, proven one by one
  pacs_archive:
    url: "{{ endpoint_rest_url }}"
    username: cuadmin
    password: "{{ pacs_server_rest_password }}"
    state: import
    src: /var/lib/clinical-upgrade/evidence/preserved/pacs1
  delegate_to: localhost
"""

RETURN = r"""
url:
  description: The base URL used (credentials masked).
  returned: always
  type: str
last_change:
  description: The position of the PACS's change log (C(/changes) C(Last)).
  returned: success and O(state) is inventory or export
  type: int
  sample: 1834
instances:
  description: How many instances the PACS holds.
  returned: success and O(state=inventory)
  type: int
sop_instance_uids:
  description: Every SOP Instance UID, sorted.
  returned: success, O(state=inventory) and O(include_uids=true)
  type: list
  elements: str
new:
  description: Instances stored after O(since_change), in the order of the change log.
  returned: success, O(state) is inventory or export, and O(since_change) set
  type: list
  elements: dict
  sample: [{"sop_instance_uid": "2.25.1", "id": "0a1b...", "seq": 1835}]
checked:
  description: Files read back and compared with their recorded MD5.
  returned: O(state=readback)
  type: int
mismatched:
  description: Files whose bytes differ from the recorded MD5, or that could not be read.
  returned: O(state=readback)
  type: list
  elements: dict
exported:
  description: The files written to O(dest) (or described), each with its SOP Instance UID and sha256.
  returned: O(state) is export or describe
  type: list
  elements: dict
manifest:
  description: Path of the manifest written to O(dest).
  returned: O(state) is export or describe
  type: str
unreadable:
  description: Files of O(src) that are not DICOM instances (left out of the manifest).
  returned: O(state=describe)
  type: list
  elements: dict
delivered:
  description: Instances stored (or found already stored) and proven by SOP Instance UID and sha256.
  returned: O(state=import)
  type: list
  elements: dict
not_delivered:
  description: Instances that could not be re-delivered or proven, with the reason.
  returned: O(state=import)
  type: list
  elements: dict
"""

import hashlib
import io
import json
import os
import random
import zlib
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.arg_types import whole_number
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.orthanc_rest import (
    OrthancError,
    build_client,
    display_url,
    rest_argument_spec,
    rest_params_error,
)

PAGE = 1000
MANIFEST = "manifest.json"


def argument_spec():
    spec = rest_argument_spec()
    spec["timeout"]["default"] = 30.0
    spec.update(
        state={"type": "str", "default": "inventory",
               "choices": ["inventory", "readback", "export", "describe", "import"]},
        since_change={"type": whole_number},
        dest={"type": "path"},
        src={"type": "path"},
        sample_size={"type": whole_number, "default": 50},
        workers={"type": whole_number, "default": 4},
        include_uids={"type": "bool", "default": True},
    )
    return spec


def last_change(client) -> int:
    answer = client.get("/changes?last")
    if not isinstance(answer, dict) or "Last" not in answer:
        raise OrthancError(f"{client.url}/changes?last answered, but not like Orthanc (no Last)")
    return int(answer["Last"])


def all_instances(client) -> list[dict]:
    """[{id, sop_instance_uid}] of every instance, paged."""
    out, since = [], 0
    while True:
        page = client.get(f"/instances?expand&since={since}&limit={PAGE}")
        if not isinstance(page, list):
            raise OrthancError(f"{client.url}/instances answered, but not with a list")
        for item in page:
            tags = item.get("MainDicomTags") or {}
            out.append({"id": item.get("ID"), "sop_instance_uid": tags.get("SOPInstanceUID")})
        if len(page) < PAGE:
            return out
        since += PAGE


def new_instances(client, since_change: int) -> list[dict]:
    """Instances stored after the change log position, oldest first (still present on the PACS)."""
    out, seen, since = [], set(), since_change
    while True:
        answer = client.get(f"/changes?since={since}&limit={PAGE}")
        changes = answer.get("Changes") if isinstance(answer, dict) else None
        if changes is None:
            raise OrthancError(f"{client.url}/changes answered, but not like Orthanc (no Changes)")
        for change in changes:
            if change.get("ChangeType") == "NewInstance" and change.get("ID") not in seen:
                seen.add(change.get("ID"))
                out.append({"id": change.get("ID"), "seq": change.get("Seq")})
        if answer.get("Done", True) or not changes:
            break
        since = int(answer.get("Last", since))
    present = []
    for item in out:
        try:
            tags = client.get(f"/instances/{item['id']}")
        except OrthancError:
            continue  # deleted since it was stored: nothing to keep
        item["sop_instance_uid"] = (tags.get("MainDicomTags") or {}).get("SOPInstanceUID")
        present.append(item)
    return present


def readback(client, sample_size: int) -> dict:
    instances = all_instances(client)
    sample = instances if len(instances) <= sample_size else random.sample(instances, sample_size)
    mismatched = []
    for item in sample:
        try:
            data = client.get_bytes(f"/instances/{item['id']}/file")
            recorded = client.get_bytes(f"/instances/{item['id']}/attachments/dicom/md5").decode().strip().strip('"')
        except OrthancError as exc:
            mismatched.append({**item, "reason": str(exc)})
            continue
        actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if actual != recorded:
            mismatched.append({**item, "reason": f"md5 {actual} differs from the recorded {recorded}"})
    return {"checked": len(sample), "instances": len(instances), "mismatched": mismatched}


def export(client, since_change: int, dest: str, check_mode: bool) -> dict:
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise OrthancError(f"dest {dest} exists and is not an empty directory: choose a new directory")
    position = last_change(client)
    items = new_instances(client, since_change)
    os.makedirs(dest, mode=0o750, exist_ok=True)
    exported = []
    for item in items:
        data = client.get_bytes(f"/instances/{item['id']}/file")
        name = f"{item['sop_instance_uid']}.dcm"
        path = os.path.join(dest, name)
        with open(path, "wb") as handle:
            handle.write(data)
        exported.append({"sop_instance_uid": item["sop_instance_uid"], "file": name,
                         "sha256": hashlib.sha256(data).hexdigest(), "seq": item.get("seq")})
    manifest = os.path.join(dest, MANIFEST)
    with open(manifest, "w", encoding="utf-8") as handle:
        json.dump({"since_change": since_change, "last_change": position, "url": display_url(client.url),
                   "instances": exported}, handle, indent=1, sort_keys=True)
    return {"last_change": position, "new": items, "exported": exported, "manifest": manifest,
            "changed": bool(exported) and not check_mode}


def _plain_dicom(data: bytes, path: str) -> tuple[bytes, str]:
    """(DICOM bytes, the file holding them) of a stored file, which Orthanc may have compressed.

    Orthanc's StorageCompression writes 8 bytes of uncompressed size (little endian), then zlib; such
    a file is written out decompressed beside it as <name>.dcm.
    """
    if len(data) > 132 and data[128:132] == b"DICM":
        return data, path
    if len(data) > 10:
        size = int.from_bytes(data[:8], "little")
        try:
            plain = zlib.decompress(data[8:])
        except zlib.error:
            return data, path
        if len(plain) == size and len(plain) > 132 and plain[128:132] == b"DICM":
            target = path + ".dcm"
            with open(target, "wb") as handle:
                handle.write(plain)
            return plain, target
    return data, path


def describe(src: str, dest: str) -> dict:
    """Write the export manifest for a directory of DICOM files (largest file per SOP Instance UID)."""
    try:
        import pydicom
    except ImportError as exc:
        raise OrthancError(f"state=describe needs pydicom on the controller ({exc})") from None
    if not os.path.isdir(src):
        raise OrthancError(f"src {src} is not a directory")
    best: dict[str, dict] = {}
    unreadable = []
    paths = sorted(os.path.join(root, name) for root, _dirs, names in os.walk(src) for name in names)
    for path in paths:
        name = os.path.relpath(path, src)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            data, path = _plain_dicom(data, path)
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
            sop = str(ds.SOPInstanceUID)
        except Exception as exc:  # not DICOM (a partial file, another attachment)  # noqa: BLE001
            unreadable.append({"file": name, "reason": f"{type(exc).__name__}: {exc}"})
            continue
        entry = {"sop_instance_uid": sop, "file": os.path.relpath(path, dest),
                 "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        if sop not in best or entry["size"] > best[sop]["size"]:
            best[sop] = entry
    exported = sorted(best.values(), key=lambda e: e["file"])
    os.makedirs(dest, mode=0o750, exist_ok=True)
    manifest = os.path.join(dest, MANIFEST)
    with open(manifest, "w", encoding="utf-8") as handle:
        json.dump({"described_from": src, "instances": exported, "unreadable": unreadable}, handle, indent=1,
                  sort_keys=True)
    return {"exported": exported, "unreadable": unreadable, "manifest": manifest, "changed": True}


def _lookup(client, sop_uid: str) -> str | None:
    found = client.post("/tools/lookup", sop_uid.encode())
    ids = [f.get("ID") for f in found or [] if isinstance(f, dict) and f.get("Type") == "Instance"]
    return ids[0] if ids else None


def _deliver(client, src: str, entry: dict, check_mode: bool) -> tuple[dict | None, dict | None]:
    """Store one kept instance and prove it: (delivered record, None) or (None, not-delivered record)."""
    sop, path = entry.get("sop_instance_uid"), os.path.join(src, entry.get("file", ""))
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise OrthancError(f"{path} no longer matches its sha256 in the manifest")
        if check_mode:
            return {"sop_instance_uid": sop, "sha256": entry["sha256"], "status": "would store"}, None
        answer = client.post("/instances", data)
        status = answer.get("Status") if isinstance(answer, dict) else None
        if status not in ("Success", "AlreadyStored"):
            raise OrthancError(f"the PACS answered {answer!r}")
        instance = _lookup(client, sop)
        if instance is None:
            raise OrthancError("stored, but not found by its SOP Instance UID")
        back = hashlib.sha256(client.get_bytes(f"/instances/{instance}/file")).hexdigest()
        if back != entry["sha256"]:
            raise OrthancError(f"stored, but the PACS returns other bytes (sha256 {back})")
        return {"sop_instance_uid": sop, "sha256": back, "status": status}, None
    except (OSError, OrthancError) as exc:
        return None, {"sop_instance_uid": sop, "file": path, "reason": str(exc)}


def import_(client, src: str, check_mode: bool, workers: int = 1) -> dict:
    manifest_path = os.path.join(src, MANIFEST)
    try:
        with open(manifest_path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        raise OrthancError(
            f"src {src} has no readable {MANIFEST} ({exc}): give the directory state=export wrote") from None
    entries = manifest.get("instances", [])
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        outcomes = list(pool.map(lambda e: _deliver(client, src, e, check_mode), entries))
    delivered = [d for d, _n in outcomes if d is not None]
    not_delivered = [n for _d, n in outcomes if n is not None]
    return {"delivered": delivered, "not_delivered": not_delivered,
            "changed": any(d["status"] == "Success" for d in delivered)}


def run_module(module):
    params = module.params
    result = {"changed": False, "url": display_url(params.get("url"))}
    state = params["state"]
    if state == "export" and (params.get("since_change") is None or not params.get("dest")):
        module.fail_json(msg="state=export needs since_change (the last_change recorded before) and dest", **result)
    if state in ("import", "describe") and not params.get("src"):
        module.fail_json(msg=f"state={state} needs src, the directory state=export wrote (import) or the "
                         "directory of DICOM files to describe", **result)
    if params.get("since_change") is not None and params["since_change"] < 0:
        module.fail_json(msg="since_change must be 0 or more", **result)
    if not 1 <= params["sample_size"] <= 100000:
        module.fail_json(msg="sample_size must be 1 to 100000", **result)
    if not 1 <= params["workers"] <= 16:
        module.fail_json(msg=f"workers must be 1 to 16, got {params['workers']}", **result)
    error = rest_params_error(params)
    if error:
        module.fail_json(msg=error, **result)
    try:
        client = build_client(params)
        result["url"] = display_url(client.url)
        if state == "inventory":
            result["last_change"] = last_change(client)
            instances = all_instances(client)
            result["instances"] = len(instances)
            if params["include_uids"]:
                result["sop_instance_uids"] = sorted(i["sop_instance_uid"] for i in instances if i["sop_instance_uid"])
            if params.get("since_change") is not None:
                result["new"] = new_instances(client, params["since_change"])
        elif state == "readback":
            result.update(readback(client, params["sample_size"]))
            if result["mismatched"]:
                module.fail_json(msg=f"{len(result['mismatched'])} of {result['checked']} stored files read back "
                                 "differ from what the PACS recorded when it stored them", **result)
        elif state == "export":
            result.update(export(client, params["since_change"], params["dest"], module.check_mode))
        elif state == "describe":
            result.update(describe(params["src"], params.get("dest") or params["src"]))
        else:
            result.update(import_(client, params["src"], module.check_mode, params["workers"]))
            missing = result["not_delivered"]
            if missing:
                module.fail_json(msg=f"{len(missing)} instance(s) could NOT be re-delivered; they are kept in "
                                 f"{params['src']}: store them by hand (for example storescu) and check them. "
                                 f"First: {missing[0]['sop_instance_uid']}: {missing[0]['reason']}", **result)
    except OrthancError as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run_module(module)


if __name__ == "__main__":
    main()
