"""The precheck for a host that runs no Python modules (a Windows workstation): the run lock and the
run journal on the controller (precheck_lock_on: controller), and PRE-001 to PRE-004 taken from the
product's discover result (precheck_host_checks: discover).

The host of the play is unreachable on purpose (ssh to port 1 of 127.0.0.1, where nothing listens):
a task that tried to run a module on it would fail the play, so every step here is proved to run on
the controller only. The lock file is then read from the controller's disk, independently of the role.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INVENTORY = "winws ansible_connection=ssh ansible_host=127.0.0.1 ansible_port=1 ansible_user=nobody\n"

PLAY = """\
- name: The precheck of a host that runs no Python modules, on the controller only
  hosts: winws
  gather_facts: false
  vars:
    precheck_lock_on: controller
    precheck_result_dir: {results}
  tasks:
    - name: PRE-008 without a lock
      ansible.builtin.include_role: {{name: precheck, tasks_from: lock_check}}
      vars: {{precheck_run_id: run-a}}
    - name: Keep it
      ansible.builtin.set_fact: {{free: "{{{{ __precheck_pre008 }}}}", free_fact: "{{{{ precheck_lock }}}}"}}
    - name: Take the lock as run-a
      ansible.builtin.include_role: {{name: precheck, tasks_from: lock}}
      vars: {{precheck_run_id: run-a, precheck_run: {{id: run-a, user: alice}}}}
    - name: Copy the lock file as it is while held (read by the test)
      ansible.builtin.copy:
        src: "{{{{ precheck_lock.path }}}}"
        dest: {results}/held.json
        mode: "0600"
      delegate_to: localhost
    - name: PRE-008 as run-b
      ansible.builtin.include_role: {{name: precheck, tasks_from: lock_check}}
      vars: {{precheck_run_id: run-b}}
    - name: Keep it
      ansible.builtin.set_fact: {{other: "{{{{ __precheck_pre008 }}}}"}}
    - name: Release it as run-a
      ansible.builtin.include_role: {{name: precheck, tasks_from: unlock}}
      vars: {{precheck_run_id: run-a}}
    - name: PRE-001 to PRE-004 from the discover result
      ansible.builtin.include_role: {{name: precheck, tasks_from: host_discovered}}
      vars:
        precheck_product: cu-viewer
        precheck_target_version: "2.4.0"
        precheck_current_version: "2.3.0"
        precheck_catalogue: {{cu-viewer: {{"2.4.0": {{}}}}}}
        precheck_allow_pending_reboot: {allow_reboot}
        precheck_discovered: {discovered}
    - name: Write what happened
      ansible.builtin.copy:
        dest: {results}/out.json
        content: "{{{{ {{'free': free, 'free_fact': free_fact, 'other': other, 'needed': precheck_upgrade_needed,
                       'pre': [__precheck_pre001, __precheck_pre002, __precheck_pre003, __precheck_pre004],
                       'disk': precheck_disk, 'required': precheck_required_disk_mb}} | to_json }}}}"
        mode: "0600"
      delegate_to: localhost
"""

DISK = {"mount": "C:", "mounts": ["C:"], "device": None, "what": ["packages (2048 MB)"], "needed_mb": 2048,
        "available_mb": 1000, "ok": False, "message": "drive C: needed 2048 MB, available 1000 MB"}
DISCOVERED = {
    "version": "2.3.0",
    "source": "workstation_windows discover",
    "pending_changes": ["viewer cu-viewer 2.3.0 -> 2.4.0"],
    "host_checks": {
        "PRE-001": {"problems": [], "summary": "Windows 11 (build 22631, release 11) is supported"},
        "PRE-003": {"problems": ["a reboot is pending on winws"], "summary": "no reboot pending"},
        "PRE-004": {"problems": ["winws has 1000 MB free disk on drive C:"], "summary": "", "disk": [DISK]},
    },
}


def play(tmp_path, allow_reboot=False):
    results = tmp_path / "results"
    (tmp_path / "hosts").write_text(INVENTORY)
    (tmp_path / "play.yml").write_text(
        PLAY.format(results=results, allow_reboot=str(allow_reboot).lower(), discovered=json.dumps(DISCOVERED))
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts"),
         "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return results, json.loads((results / "out.json").read_text())


def test_the_lock_and_the_journal_live_on_the_controller_one_directory_per_host(tmp_path):
    results, got = play(tmp_path)
    lock = results / "locks" / "winws" / "run.lock"
    assert got["free_fact"]["path"] == str(lock)
    assert got["free_fact"]["journal_path"] == str(lock.parent / "run.journal.json")
    assert got["free_fact"]["delegate_to"] == "localhost"
    assert got["free"]["failed"] is False
    held = json.loads((results / "held.json").read_text())
    assert held["run_id"] == "run-a" and held["user"] == "alice", held
    assert got["other"]["failed"] is True
    assert got["other"]["msg"].startswith(f"{lock} on winws is held by run run-a of alice since ")
    assert not lock.exists(), "run-a released its lock"


def test_pre001_to_pre004_come_from_the_discover_result_and_a_missing_check_fails(tmp_path):
    _, got = play(tmp_path)
    pre001, pre002, pre003, pre004 = got["pre"]
    assert got["needed"] is True, "a pending change makes the host change"
    assert (pre001["failed"], pre001["msg"]) == (False, "Windows 11 (build 22631, release 11) is supported")
    assert pre002["failed"] is True
    assert pre002["msg"].startswith("workstation_windows discover made no PRE-002")
    assert pre003["failed"] is True and pre003["msg"].startswith("a reboot is pending on winws: reboot winws in a")
    assert pre004["failed"] is True and pre004["msg"] == "winws has 1000 MB free disk on drive C:"
    assert got["disk"] == [DISK] and got["required"] == 2048


def test_a_pending_reboot_passes_pre003_only_with_the_override(tmp_path):
    _, got = play(tmp_path, allow_reboot=True)
    pre003 = got["pre"][2]
    assert pre003["failed"] is False
    assert pre003["msg"] == "reboot pending but allowed (precheck_allow_pending_reboot): a reboot is pending on winws"
