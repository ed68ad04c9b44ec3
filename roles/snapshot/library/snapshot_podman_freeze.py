#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

import os
import stat
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.link_tree import LinkError, create, exit_with

DOCUMENTATION = r"""
---
module: snapshot_podman_freeze
short_description: Protect a container's named volumes at one frozen instant, in one step
description:
  - Pauses the container (O(pause=true)), builds the tree of hard links of each write-once volume of
    O(links), exports each volume of O(exports) to a tar file, and unpauses the container, whatever
    happened. All in one module run on the controller, so that no task round trip lengthens the
    pause, in which the clinical system accepts no association.
  - With O(pause=false) the caller has paused the container already (to commit it inside the pause)
    and unpauses it itself.
  - Used by the snapshot role's podman provider. Runs podman with the environment of the task
    (CONTAINERS_CONF).
options:
  container:
    description: Name of the container.
    type: str
    required: true
  pause:
    description: Pause the container before and unpause it after (false - the caller does both).
    type: bool
    default: true
  links:
    description:
      - Write-once volumes to protect by hard links, each C(src) (the volume's mount point), C(dest)
        (the tree of links, must not exist) and C(manifest).
    type: list
    elements: dict
    default: []
  exports:
    description: Volumes to export, each C(volume) (its name) and C(dest) (the tar file, must not exist).
    type: list
    elements: dict
    default: []
  podman:
    description: The podman executable.
    type: str
    default: podman
attributes:
  check_mode:
    support: none
    description: The podman provider runs it only outside check mode.
author: clinical-upgrade contributors
"""

EXAMPLES = r"""
- name: Link the storage, export the index, in one pause
  snapshot_podman_freeze:
    container: cu-lab-pacs1
    links:
      - src: /var/lib/containers/storage/volumes/cu-lab-pacs1-orthanc-storage/_data
        dest: /var/lib/containers/clinical-upgrade-links/pacs1/s1/cu-lab-pacs1-orthanc-storage
        manifest: /var/lib/containers/clinical-upgrade-links/pacs1/s1/cu-lab-pacs1-orthanc-storage.links.json
    exports:
      - volume: cu-lab-pacs1-orthanc-index
        dest: /srv/evidence/snapshots/pacs1/s1/cu-lab-pacs1-orthanc-index.tar
  environment:
    CONTAINERS_CONF: "{{ playbook_dir }}/../lab/containers.conf"
"""

RETURN = r"""
paused_s:
  description: Seconds from the pause to the unpause (0 with O(pause=false)).
  returned: always
  type: float
links:
  description:
    - Per entry of O(links), what was linked - C(src), C(dest), C(manifest), C(files), C(bytes) (kept
      by the links) and C(manifest_bytes).
  returned: always
  type: list
  elements: dict
exports:
  description:
    - Per entry of O(exports) - C(volume), C(dest), C(bytes) and C(sha256) of the tar file, and C(root) - the
      C(uid), C(gid) and C(mode) of the volume's own directory, which the export does not hold.
  returned: always
  type: list
  elements: dict
"""


def _podman(module, *args):
    proc = subprocess.run([module.params["podman"], *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LinkError(f"podman {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _volume_root(module, volume):
    """{uid, gid, mode} of a volume's own directory (its mount point on this machine), or None."""
    proc = subprocess.run([module.params["podman"], "volume", "inspect", "--format", "{{.Mountpoint}}", volume],
                          capture_output=True, text=True, check=False)
    try:
        st = os.stat(proc.stdout.strip()) if proc.returncode == 0 else None
    except OSError:
        st = None
    return {"uid": st.st_uid, "gid": st.st_gid, "mode": f"{stat.S_IMODE(st.st_mode):04o}"} if st else None


def freeze(module):
    p = module.params
    for entry in p["links"]:
        if set(entry) != {"src", "dest", "manifest"}:
            raise LinkError(f"each entry of links needs exactly src, dest and manifest, got {sorted(entry)}")
    for entry in p["exports"]:
        if set(entry) != {"volume", "dest"}:
            raise LinkError(f"each entry of exports needs exactly volume and dest, got {sorted(entry)}")
        if os.path.lexists(entry["dest"]):
            raise LinkError(f"{entry['dest']} already exists; choose another snapshot name or remove that snapshot")
    links, exports = [], []
    paused_at = None
    try:
        if p["pause"]:
            _podman(module, "pause", p["container"])
            paused_at = time.monotonic()
        for entry in p["links"]:
            done = create(entry["src"], entry["dest"], entry["manifest"], [], False)
            links.append({**entry, **done})
        for entry in p["exports"]:
            os.makedirs(os.path.dirname(entry["dest"]), mode=0o700, exist_ok=True)
            _podman(module, "volume", "export", "--output", entry["dest"], entry["volume"])
            exports.append({**entry, "bytes": os.path.getsize(entry["dest"])})
    finally:
        if paused_at is not None:
            proc = subprocess.run([p["podman"], "unpause", p["container"]], capture_output=True, text=True,
                                  check=False)
            paused_s = round(time.monotonic() - paused_at, 3)
            if proc.returncode != 0:
                # Nothing may leave a clinical system frozen without saying so loudly.
                module.fail_json(msg=f"podman unpause {p['container']} FAILED, the container stays paused: "
                                     f"{proc.stderr.strip()}; run `podman unpause {p['container']}` now",
                                 paused_s=paused_s)
    # Checksums after the unpause: they only read the exports. The volume's own directory is not in
    # its export (podman exports the content): its owner and mode are recorded, and the revert gives
    # them back (a service that writes beside its files, SQLite's journal, needs them).
    for entry in exports:
        entry["sha256"] = module.sha256(entry["dest"])
        entry["root"] = _volume_root(module, entry["volume"])
    return {"changed": True, "paused_s": paused_s if paused_at is not None else 0.0, "links": links,
            "exports": exports}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container=dict(type="str", required=True),
            pause=dict(type="bool", default=True),
            links=dict(type="list", elements="dict", default=[]),
            exports=dict(type="list", elements="dict", default=[]),
            podman=dict(type="str", default="podman"),
        ),
        supports_check_mode=False,
    )
    exit_with(module, freeze)


if __name__ == "__main__":
    main()
