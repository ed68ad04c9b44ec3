# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's podman connection: containers.podman.podman with Ansible pipelining."""

from __future__ import annotations

DOCUMENTATION = r"""
name: lab_podman
short_description: Run tasks in the lab's podman containers, pipelined
description:
  - The connection of the lab's and the Molecule scenarios' containers. It is C(containers.podman.podman)
    (the same C(podman exec), C(podman mount) and C(podman cp)) with Ansible pipelining, as the
    project's SSH configuration has for real hosts (C(ansible.cfg), C([ssh_connection] pipelining)).
  - Without pipelining every task costs several C(podman exec) (home directory, temporary directory,
    permissions, the module and its removal); pipelined, the module goes to C(python3) on the standard
    input of one C(podman exec --interactive). Each C(podman exec) starts conmon and runc, so this
    is most of the lab's time (C(bench/podman_connection.py) measures it).
  - C(containers.podman.podman) declares no pipelining because its C(podman exec) does not pass the
    standard input (no C(--interactive)); this plugin passes it whenever there is input.
  - The container's file system is mounted (C(podman mount)) only when a file is copied in (always
    into Ansible's temporary directory), not at every task as the collection's plugin does.
  - A file is fetched with C(podman cp), which sees the container's volumes. The collection's plugin
    reads it from the mounted root file system, where a file on a volume (Orthanc's storage in the
    lab) is not.
  - Asynchronous tasks and C(ANSIBLE_KEEP_REMOTE_FILES) go through files, as with every connection.
author: clinical-upgrade
options:
  remote_addr:
    description: The name or ID of the container.
    default: inventory_hostname
    vars:
      - name: ansible_host
      - name: inventory_hostname
      - name: ansible_podman_host
  remote_user:
    description: The user (name or UID) that runs the commands inside the container.
    ini:
      - section: defaults
        key: remote_user
    env:
      - name: ANSIBLE_REMOTE_USER
    vars:
      - name: ansible_user
  podman_extra_args:
    description: Extra arguments to pass to the podman command line.
    default: ''
    ini:
      - section: defaults
        key: podman_extra_args
    vars:
      - name: ansible_podman_extra_args
    env:
      - name: ANSIBLE_PODMAN_EXTRA_ARGS
  podman_executable:
    description: The podman executable.
    default: podman
    vars:
      - name: ansible_podman_executable
    env:
      - name: ANSIBLE_PODMAN_EXECUTABLE
  pipelining:
    description:
      - Send modules on the standard input of C(podman exec) instead of copying them into the container.
      - On by default (the reason this plugin exists); C(ansible_pipelining=false) turns it off.
    type: boolean
    default: true
    env:
      - name: ANSIBLE_LAB_PODMAN_PIPELINING
    vars:
      - name: ansible_pipelining
"""

import shlex

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ConnectionBase, ensure_connect
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection


class Connection(PodmanConnection):
    """containers.podman.podman, with the standard input passed to ``podman exec`` and pipelining declared."""

    transport = "lab_podman"
    has_pipelining = True

    def _connect(self):
        # No `podman mount` here: a pipelined task copies no file. put_file mounts; fetch_file uses podman cp.
        ConnectionBase._connect(self)
        self._connected = True

    def put_file(self, in_path, out_path):
        if self._mount_point is None:
            PodmanConnection._connect(self)  # mounts; on failure the parent's put_file falls back to podman cp
        super().put_file(in_path, out_path)

    @ensure_connect
    def fetch_file(self, in_path, out_path):
        ConnectionBase.fetch_file(self, in_path, out_path)
        rc, _, stderr = self._podman("cp", [f"{self._container_id}:{in_path}", out_path], use_container_id=False)
        if rc != 0:
            raise AnsibleError(f"podman cp of {in_path} out of container {self._container_id} failed: "
                               f"{to_native(stderr).strip()}")

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        args = ["exec"]
        if in_data is not None:
            args.append("--interactive")
        if self.user:
            args.extend(("--user", self.user))
        return self._podman(args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)
