#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

import hashlib
import json
import os
import stat

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: snapshot_manifest
short_description: Write or check a sha256 manifest of directory trees
description:
  - With O(state=present), walks O(paths) and writes a JSON manifest to O(manifest) with one entry per
    directory, regular file and symbolic link (type, mode, owner, group, size, sha256 of the content,
    link target).
  - With O(state=verified), reads the manifest and compares the live trees with it. Every missing,
    extra or different entry is a mismatch; the module fails naming the first O(report_max) of them.
  - Used by the snapshot role's files provider; runs on the host.
options:
  paths:
    description: Absolute paths to walk (state=present). Ignored with state=verified (read from the manifest).
    type: list
    elements: path
  manifest:
    description: Path of the manifest file.
    type: path
    required: true
  state:
    description: present writes the manifest; verified checks the trees against it.
    type: str
    choices: [present, verified]
    default: present
  report_max:
    description: How many mismatches the failure message names.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
    description: state=present computes the manifest and does not write it; state=verified only reads.
author: clinical-upgrade contributors
"""

EXAMPLES = r"""
- name: Write the manifest
  snapshot_manifest:
    paths: [/var/lib/orthanc, /etc/orthanc]
    manifest: /var/backups/clinical-upgrade/s1/manifest.json

- name: Check the restored trees
  snapshot_manifest:
    manifest: /var/backups/clinical-upgrade/s1/manifest.json
    state: verified
"""

RETURN = r"""
file_count:
  description: Number of regular files in the manifest.
  returned: always
  type: int
entry_count:
  description: Number of entries (directories, files, links) in the manifest.
  returned: always
  type: int
total_bytes:
  description: Sum of the sizes of the regular files.
  returned: always
  type: int
manifest_sha256:
  description: sha256 of the manifest file (state=present, not in check mode; state=verified).
  returned: success
  type: str
mismatches:
  description: Differences found by state=verified, one string per entry naming the path and what differs.
  returned: always
  type: list
  elements: str
"""


TYPES = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "link"}


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe(path):
    """One manifest entry for path, or None for sockets, fifos and devices (tar does not keep them)."""
    st = os.lstat(path)
    kind = TYPES.get(stat.S_IFMT(st.st_mode))
    if kind is None:
        return None
    entry = {"type": kind, "mode": f"{stat.S_IMODE(st.st_mode):04o}", "uid": st.st_uid, "gid": st.st_gid}
    if kind == "file":
        entry["size"] = st.st_size
        entry["sha256"] = sha256_file(path)
    elif kind == "link":
        entry["target"] = os.readlink(path)
    return entry


def walk(roots):
    entries = {}
    for root in roots:
        root = os.path.normpath(root)
        entry = describe(root)
        if entry is not None:
            entries[root] = entry
        if entry is None or entry["type"] != "dir":
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                item = describe(full)
                if item is not None:
                    entries[full] = item
    return entries


def compare(expected, actual):
    mismatches = []
    for path in sorted(set(expected) | set(actual)):
        want, have = expected.get(path), actual.get(path)
        if have is None:
            mismatches.append(f"{path}: missing (in the snapshot, not on the host)")
        elif want is None:
            mismatches.append(f"{path}: extra (on the host, not in the snapshot)")
        else:
            for key in ("type", "sha256", "size", "mode", "uid", "gid", "target"):
                if want.get(key) != have.get(key):
                    mismatches.append(f"{path}: {key} is {have.get(key)}, snapshot has {want.get(key)}")
                    break
    return mismatches


def summary(entries):
    files = [e for e in entries.values() if e["type"] == "file"]
    return {"entry_count": len(entries), "file_count": len(files), "total_bytes": sum(e["size"] for e in files)}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path"),
            manifest=dict(type="path", required=True),
            state=dict(type="str", choices=["present", "verified"], default="present"),
            report_max=dict(type="int", default=10),
        ),
        required_if=[("state", "present", ["paths"])],
        supports_check_mode=True,
    )
    params = module.params
    if params["state"] == "present":
        roots = params["paths"]
        bad = [p for p in roots if not os.path.isabs(p) or not os.path.lexists(p)]
        if bad:
            module.fail_json(msg=f"snapshot_files_paths: not absolute or not present on the host: {', '.join(bad)}")
        entries = walk(roots)
        result = dict(changed=not module.check_mode, mismatches=[], **summary(entries))
        if not module.check_mode:
            document = {"version": 1, "roots": [os.path.normpath(p) for p in roots], "entries": entries}
            data = json.dumps(document, indent=1, sort_keys=True).encode()
            tmp = params["manifest"] + ".tmp"
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o600)
            os.rename(tmp, params["manifest"])
            result["manifest_sha256"] = hashlib.sha256(data).hexdigest()
        module.exit_json(**result)

    try:
        manifest_sha256 = sha256_file(params["manifest"])
        with open(params["manifest"], "rb") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as exc:
        module.fail_json(msg="cannot read manifest {}: {}".format(params["manifest"], exc))
    expected = document["entries"]
    actual = walk(document["roots"])
    mismatches = compare(expected, actual)
    result = dict(changed=False, mismatches=mismatches, manifest_sha256=manifest_sha256, **summary(expected))
    if mismatches:
        shown = mismatches[: params["report_max"]]
        module.fail_json(
            msg=f"{len(mismatches)} mismatch(es) against the snapshot manifest {params['manifest']}; "
            f"first: {'; '.join(shown)}",
            **result
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
