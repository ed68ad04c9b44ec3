"""The snapshot provider windows_restore_point (roles/snapshot) run for real by ansible-playbook, with
stand-ins for ansible.windows.win_powershell (answering files/windows_restore_point.ps1's actions as
the script sets $Ansible.Result) and win_reboot.

No Windows host exists here: this proves the provider's wiring (validation, the record on the
controller, the revert's order: schedule, restart, wait, check the restore's status; remove), never
System Restore itself; its PowerShell never ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
STANDIN = '''
"""Stand-ins for win_powershell (files/windows_restore_point.ps1) and win_reboot."""
import json, os
from ansible.plugins.action import ActionBase


def _state():
    path = os.environ["STANDIN_STATE"]
    return json.load(open(path)) if os.path.exists(path) else {}


def _save(state):
    json.dump(state, open(os.environ["STANDIN_STATE"], "w"))


class WinPowershell(ActionBase):
    def run(self, tmp=None, task_vars=None):
        assert "SystemRestore" in self._task.args["script"]
        params = self._task.args["parameters"]
        state = _state()
        state.setdefault("calls", []).append((params["Action"] + " " + str(params.get("SequenceNumber", ""))).strip())
        _save(state)
        if state.get("server"):
            return {"failed": True, "changed": False,
                    "result": {"message": "Windows Server 2022 has no System Restore: snapshot a Windows Server "
                                          "with the vmware or proxmox provider"}}
        if params["Action"] == "create":
            return {"changed": True, "result": {"created": True, "sequence_number": 57,
                                                "description": params["Description"], "creation_time": "now",
                                                "drive": "C:\\\\"}}
        if params["Action"] == "restore":
            return {"changed": True, "result": {"scheduled": True, "sequence_number": int(params["SequenceNumber"])}}
        if params["Action"] == "status":
            code = state.get("restore_status", 1)
            return {"changed": False, "result": {"status": code, "meaning": {0: "failed", 1: "succeeded"}[code]}}
        return {"changed": True, "result": {"removed": True, "sequence_number": int(params["SequenceNumber"])}}


class WinReboot(ActionBase):
    def run(self, tmp=None, task_vars=None):
        state = _state()
        state.setdefault("calls", []).append("reboot")
        _save(state)
        return {"changed": True, "rebooted": True, "elapsed": 1}
'''
PLAYBOOK = """\
- name: One snapshot entry point with the windows_restore_point provider
  hosts: rad-ws-11
  gather_facts: false
  tasks:
    - name: Run the entry point
      ansible.builtin.include_role:
        name: snapshot
        tasks_from: "{{ action }}"

    - name: Write the role's facts
      ansible.builtin.copy:
        content: "{{ {'record': snapshot_record | default({}), 'reverted': snapshot_reverted | default({}),
                      'removed': snapshot_removed | default({})} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      delegate_to: localhost
      changed_when: false  # the test's own file
"""


@pytest.fixture
def snapshot(tmp_path):
    """run(action, state=None, **vars) -> (process, facts, calls)."""
    collection = tmp_path / "collections" / "ansible_collections" / "ansible" / "windows"
    (collection / "plugins" / "action").mkdir(parents=True)
    (collection / "plugins" / "modules").mkdir(parents=True)
    (collection / "galaxy.yml").write_text(
        "namespace: ansible\nname: windows\nversion: 3.3.0\nreadme: R\nauthors: [tests]\n"
    )
    (collection / "plugins" / "action" / "standin.py").write_text(STANDIN)
    for module, cls in {"win_powershell": "WinPowershell", "win_reboot": "WinReboot"}.items():
        (collection / "plugins" / "action" / f"{module}.py").write_text(
            f"from ansible_collections.ansible.windows.plugins.action.standin import {cls} as ActionModule  # noqa\n"
        )
        (collection / "plugins" / "modules" / f"{module}.py").write_text(
            f"DOCUMENTATION = '''\nmodule: {module}\nshort_description: stand-in\ndescription: [stand-in]\n"
            "options: {}\nauthor: [tests]\n'''\n"
        )
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "rad-ws-11": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                        }
                    }
                }
            }
        )
    )
    state_file = tmp_path / "state.json"

    def run(action, state=None, **extra):
        if state is not None:
            state_file.write_text(json.dumps(state))
        out = tmp_path / f"{action}.json"
        variables = {
            "action": action,
            "out": str(out),
            "snapshot_provider": "windows_restore_point",
            "snapshot_host_registry_dir": "",
            "snapshot_registry_dir": str(tmp_path / "registry"),
            "snapshot_name": "cu-rad-ws-11-test",
            "snapshot_reboot_timeout": 30,
            **extra,
        }
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"),
            STANDIN_STATE=str(state_file),
        )
        proc = subprocess.run(
            [
                str(ANSIBLE_PLAYBOOK),
                "-i",
                str(tmp_path / "hosts.yml"),
                str(tmp_path / "play.yml"),
                "-e",
                json.dumps(variables),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        calls = json.loads(state_file.read_text()).get("calls", []) if state_file.exists() else []
        return proc, (json.loads(out.read_text()) if out.exists() else None), calls

    return run


def test_create_revert_and_remove(snapshot):
    proc, facts, calls = snapshot("create", state={})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert facts["record"]["provider"] == "windows_restore_point"
    assert facts["record"]["windows_restore_point"]["sequence_number"] == 57
    assert calls == ["create"]

    proc, facts, calls = snapshot("revert", snapshot_id="cu-rad-ws-11-test", snapshot_allow_reboot=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert calls[1:] == ["restore 57", "reboot", "status"]
    assert facts["reverted"]["verified"] is True

    proc, facts, calls = snapshot("remove", snapshot_id="cu-rad-ws-11-test", snapshot_keep=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert calls[-1] == "remove 57" and facts["removed"]["id"] == "cu-rad-ws-11-test"


def test_a_revert_without_permission_to_restart_is_refused_before_anything(snapshot):
    assert snapshot("create", state={})[0].returncode == 0
    proc, _, calls = snapshot("revert", snapshot_id="cu-rad-ws-11-test")
    assert proc.returncode != 0
    assert "restarts Windows (System Restore runs during the start), and snapshot_allow_reboot is false" in proc.stdout
    assert calls == ["create"]


def test_a_restore_windows_reports_as_failed_fails_the_revert(snapshot):
    assert snapshot("create", state={"restore_status": 0})[0].returncode == 0
    proc, _, calls = snapshot("revert", snapshot_id="cu-rad-ws-11-test", snapshot_allow_reboot=True)
    assert proc.returncode != 0
    assert calls[1:] == ["restore 57", "reboot", "status"]
    assert "reports its last restore as failed: Windows undid the restore" in proc.stdout


def test_a_server_and_a_host_record_directory_are_refused(snapshot):
    proc, _, calls = snapshot("create", state={"server": True})
    assert proc.returncode != 0 and "has no System Restore" in proc.stdout
    proc, _, _ = snapshot("create", state={}, snapshot_host_registry_dir="/var/lib/clinical-upgrade/snapshots")
    assert proc.returncode != 0 and 'set snapshot_host_registry_dir to ""' in proc.stdout
