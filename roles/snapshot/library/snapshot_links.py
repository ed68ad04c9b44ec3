#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.link_tree import LinkError, check, create, excludes_of, exit_with, load, remove, restore

DOCUMENTATION = r"""
---
module: snapshot_links
short_description: Protect a directory of write-once files with hard links, and restore it from them
description:
  - A PACS such as Orthanc writes each stored file once under a new name and never rewrites it. Such a
    directory needs no copy to be restorable. A tree of hard links to its files keeps every one of them
    (a file the application deletes later stays reachable through the link), costs one directory entry
    per file instead of the file's bytes, and takes a fraction of a second for thousands of files.
  - With O(state=present), builds that tree at O(dest) (same directories, modes and owners; a hard link
    for each regular file; the same symbolic links) and writes a manifest (path, size, modification time
    and inode of every file) to O(manifest). O(dest) must be on the file system of O(src) (hard links
    cannot cross file systems); the module refuses otherwise, naming both.
  - With O(state=verified), checks that every file of the manifest is still in O(dest) with its size,
    modification time and inode, i.e. that nothing rewrote a protected file in place. Only reads.
  - With O(state=restored), first does the same check and changes nothing when it fails; then makes
    O(src) exactly the tree of the manifest. Files that are not in it (written after the snapshot) are
    removed, files that are missing or are another inode are linked back from O(dest), directory modes
    and owners are set again. Run it with the application stopped.
  - With O(state=absent), removes O(dest) and O(manifest) (the files themselves stay wherever another
    link to them exists).
  - Paths under O(exclude) are neither linked nor touched by a restore (for example a database index
    kept in the same directory, which is rewritten in place and must be copied instead).
  - Used by the snapshot role's files provider (on the host) and podman provider (on the controller,
    for named volumes).
options:
  src:
    description: The protected directory (absolute path). Required with O(state=present) and O(state=restored).
    type: path
  dest:
    description: Where the tree of links is (absolute path, must not exist for state=present).
    type: path
    required: true
  manifest:
    description: Path of the JSON manifest (outside O(dest)).
    type: path
    required: true
  exclude:
    description: Absolute paths inside O(src) (files or directories) left out.
    type: list
    elements: path
    default: []
  state:
    description: What to do.
    type: str
    choices: [present, verified, restored, absent]
    default: present
  report_max:
    description: How many paths a failure or a restore names.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
    description: Counts what would be linked, removed or restored and changes nothing.
notes:
  - Protecting files by hard links is correct only for files the application never rewrites in place.
    The manifest's size and modification time of each file detect such a rewrite (O(state=verified)),
    except for a file being written at the snapshot's instant (see RV(in_flight)).
  - Rootless podman keeps volume files under other user ids; the kernel's protected_hardlinks setting
    then forbids linking them. Run the podman provider as root or export such volumes instead.
author: clinical-upgrade contributors
"""

EXAMPLES = r"""
- name: Protect Orthanc's storage (the index beside it is copied by the files provider)
  snapshot_links:
    src: /var/lib/orthanc/db-v6
    dest: /var/lib/orthanc/.clinical-upgrade-snapshots/s1/db-v6
    manifest: /var/lib/orthanc/.clinical-upgrade-snapshots/s1/db-v6.json
    exclude: [/var/lib/orthanc/db-v6/index]

- name: Restore it, Orthanc stopped
  snapshot_links:
    src: /var/lib/orthanc/db-v6
    dest: /var/lib/orthanc/.clinical-upgrade-snapshots/s1/db-v6
    manifest: /var/lib/orthanc/.clinical-upgrade-snapshots/s1/db-v6.json
    exclude: [/var/lib/orthanc/db-v6/index]
    state: restored
"""

RETURN = r"""
files:
  description: Regular files in the manifest (state=present counts what it links).
  returned: state != absent
  type: int
bytes:
  description: Sum of their sizes (bytes the links keep without copying them).
  returned: state != absent
  type: int
manifest_bytes:
  description: Size of the manifest (state=present), the only bytes written besides directory entries.
  returned: state=present and not check mode
  type: int
seconds:
  description: Time the operation took.
  returned: always
  type: float
removed:
  description: Files removed from O(src) by a restore because they were not in the snapshot.
  returned: state=restored
  type: int
linked_back:
  description: Files linked back into O(src) by a restore (missing, or another inode).
  returned: state=restored
  type: int
unchanged:
  description: Files a restore found already in place.
  returned: state=restored
  type: int
in_flight:
  description:
    - Files that were being written when the snapshot was taken (they grew afterwards, their time within
      10 s of it). The application had not finished them, so they are not part of the snapshot - a
      restore removes them like any file written after it.
  returned: state=verified or state=restored
  type: list
  elements: str
sample:
  description: Up to O(report_max) of the paths removed or linked back, relative to O(src).
  returned: state=restored
  type: list
  elements: str
"""

def run(module):
    p = module.params
    src = os.path.normpath(p["src"] or "/")
    dest = os.path.normpath(p["dest"])
    manifest = os.path.normpath(p["manifest"])
    for name, value in (("src", src), ("dest", dest), ("manifest", manifest)):
        if not os.path.isabs(value):
            raise LinkError(f"{name} must be an absolute path, got {value}")
    started = time.monotonic()
    state = p["state"]
    if state == "absent":
        changed = remove(dest, manifest, module.check_mode)
        return {"changed": changed, "seconds": round(time.monotonic() - started, 3)}
    excludes = excludes_of(src, p["exclude"]) if p["src"] else []
    if state == "present":
        result = create(src, dest, manifest, excludes, module.check_mode)
        return {"changed": True, **result, "seconds": round(time.monotonic() - started, 3)}
    data = load(manifest, dest)
    bad, in_flight = check(data, dest, p["report_max"])
    totals = {"files": len(data["files"]), "bytes": sum(f[1] for f in data["files"]), "in_flight": in_flight}
    if bad:
        raise LinkError(
            f"the tree of links {dest} no longer matches its manifest, so it cannot restore {src} and nothing "
            f"was changed: {'; '.join(bad)}"
        )
    if state == "verified":
        return {"changed": False, **totals, "seconds": round(time.monotonic() - started, 3)}
    result = restore(src, dest, data, excludes, module.check_mode, p["report_max"], in_flight)
    changed = bool(result["removed"] or result["linked_back"])
    return {"changed": changed, **totals, **result, "seconds": round(time.monotonic() - started, 3)}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path"),
            dest=dict(type="path", required=True),
            manifest=dict(type="path", required=True),
            exclude=dict(type="list", elements="path", default=[]),
            state=dict(type="str", choices=["present", "verified", "restored", "absent"], default="present"),
            report_max=dict(type="int", default=10),
        ),
        required_if=[("state", "present", ["src"]), ("state", "restored", ["src"])],
        supports_check_mode=True,
    )
    exit_with(module, run)


if __name__ == "__main__":
    main()
