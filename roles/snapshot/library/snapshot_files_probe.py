#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: snapshot_files_probe
short_description: Read what a files snapshot needs to know about the host, in one call
description:
  - Read-only. Reports which of O(paths) are missing, the bytes and entries under them, the free
    bytes on the file system that will hold O(dir), whether O(dir) already exists, and the load and
    active state of each of O(services).
  - Used by the snapshot role's files provider before it changes anything.
options:
  paths:
    description: Absolute paths to be copied.
    type: list
    elements: path
    required: true
  dir:
    description: Directory that will hold the snapshot (it may not exist yet).
    type: path
    required: true
  services:
    description: systemd units to look at.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Read-only.
author: clinical-upgrade contributors
"""

EXAMPLES = r"""
- name: Probe the host
  snapshot_files_probe:
    paths: [/var/lib/orthanc, /etc/orthanc]
    dir: /var/backups/clinical-upgrade/cu-pacs1-20250101T000000Z
    services: [orthanc]
"""

RETURN = r"""
missing:
  description: Paths of O(paths) that do not exist.
  returned: always
  type: list
  elements: str
data_bytes:
  description: Sum of the sizes of the regular files under O(paths).
  returned: always
  type: int
entries:
  description: Number of files, directories and links under O(paths).
  returned: always
  type: int
avail_bytes:
  description: Bytes available on the file system of O(dir) (or its nearest existing parent).
  returned: always
  type: int
dir_exists:
  description: Whether O(dir) exists.
  returned: always
  type: bool
services:
  description: Per unit, C(load_state) and C(active_state) as systemctl shows them.
  returned: always
  type: dict
"""


def measure(paths):
    total, entries = 0, 0
    for root in paths:
        if not os.path.lexists(root):
            continue
        entries += 1
        st = os.lstat(root)
        if not os.path.isdir(root) or os.path.islink(root):
            total += st.st_size
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            entries += len(dirnames) + len(filenames)
            for name in filenames:
                full = os.path.join(dirpath, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if not os.path.islink(full):
                    total += st.st_size
    return total, entries


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", required=True),
            dir=dict(type="path", required=True),
            services=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    paths, target = module.params["paths"], module.params["dir"]
    missing = [p for p in paths if not os.path.lexists(p)]
    data_bytes, entries = measure(paths)
    existing = target
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing) or "/"
    vfs = os.statvfs(existing)
    services = {}
    if module.params["services"]:
        systemctl = module.get_bin_path("systemctl", required=True)
        for unit in module.params["services"]:
            command = [systemctl, "show", "--property=LoadState", "--property=ActiveState", unit]
            _rc, out, _err = module.run_command(command)
            props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
            services[unit] = {
                "load_state": props.get("LoadState", "unknown"),
                "active_state": props.get("ActiveState", "unknown"),
            }
    module.exit_json(
        changed=False,
        missing=missing,
        data_bytes=data_bytes,
        entries=entries,
        avail_bytes=vfs.f_bavail * vfs.f_frsize,
        dir_exists=os.path.lexists(target),
        services=services,
    )


if __name__ == "__main__":
    main()
