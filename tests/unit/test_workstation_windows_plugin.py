"""The workstation_windows plug-in's entry points (discover, stage, switch) and the dicom_verify
profile workstation_windows, in the order the upgrade flow calls them, run for real by ansible-playbook
with stand-ins for the ansible.windows modules (the ones of test_workstation_windows_flow.py, plus
win_file and win_copy) and a real DICOM peer (DCMTK storescp) as the viewer's PACS, C-ECHOed from the
controller.

This proves the wiring the flow relies on: the discover fact's shape (pending_changes, refusals among
the problems), the stage's copies and download, the switch installing from the staged files and
leaving workstation_windows_switched, and the profile's baseline and comparison. It does not run
roles/upgrade itself on these stand-ins (its precheck reads the controller's own OS here), and it
proves nothing about Windows: molecule/windows does, against a real Windows host."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_workstation_windows_flow import (  # noqa: E402
    ACTIONS,
    ANSIBLE_PLAYBOOK,
    CATALOGUE,
    INF,
    MSI,
    OLD_CODE,
    PNPUTIL_WIN11,
    REPO,
    SCENARIO,
    STANDIN,
    standin_collection,
)

STAGE = r"C:\ProgramData\clinical-upgrade\stage"
STAGED_MSI = STAGE + r"\viewer\2.4.0\cu-viewer-2.4.0.msi"
STAGED_INF = STAGE + r"\drivers\nv_dispwi.inf-32.0.15.5324\nv_dispwi.inf"
STANDIN_COPY = """

class WinFile(ActionBase):
    def run(self, tmp=None, task_vars=None):
        assert self._task.args["state"] == "directory"
        _call("win_file " + self._task.args["path"])
        return {"changed": True}


class WinCopy(ActionBase):
    def run(self, tmp=None, task_vars=None):
        assert self._task.args["remote_src"] is True
        _call("win_copy " + self._task.args["src"] + " -> " + self._task.args["dest"])
        return {"changed": True}
"""
PLAYBOOK = """\
- name: The workstation_windows plug-in's entry points in the flow's order, with stand-ins
  hosts: workstations_windows
  gather_facts: false
  tasks:
    - name: Discover (the flow's PRE-005)
      ansible.builtin.include_role:
        name: workstation_windows
        tasks_from: discover

    - name: Keep the discovery
      ansible.builtin.set_fact:
        discovered_before: "{{ workstation_windows_discovered }}"

    - name: Record the baseline (the flow's PRE-009)
      ansible.builtin.include_role:
        name: dicom_verify
        tasks_from: baseline

    - name: Stage
      ansible.builtin.include_role:
        name: workstation_windows
        tasks_from: stage

    - name: Switch
      ansible.builtin.include_role:
        name: workstation_windows
        tasks_from: switch

    - name: Verify against the baseline (the flow's verify step)
      ansible.builtin.include_role:
        name: dicom_verify
        tasks_from: compare
      vars:
        dicom_verify_baseline: "{{ dicom_verify_baseline_record.baseline }}"
        dicom_verify_expected_version: "2.4.0"
        dicom_verify_fail_on_difference: false

    - name: Write the record
      ansible.builtin.copy:
        content: "{{ {'discovered': discovered_before, 'baseline': dicom_verify_baseline_record,
                      'staged': workstation_windows_staged, 'switched': workstation_windows_switched,
                      'results': dicom_verify_results} | to_json }}"
        dest: "{{ record_file }}"
        mode: "0600"
      delegate_to: localhost
      changed_when: false  # the test's own file, not the workstation
"""


@pytest.fixture
def plugin_run(tmp_path, storescp):
    """run(**vars) -> (process, record, calls) against a fresh workstation with viewer 2.3.0."""
    action_dir = standin_collection(
        tmp_path, STANDIN + STANDIN_COPY, {**ACTIONS, "win_file": "WinFile", "win_copy": "WinCopy"}
    )
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"viewer": {"product_id": OLD_CODE, "version": "2.3.0.5"}}))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    (tmp_path / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "workstations_windows": {"hosts": {"rad-ws-11": dict(local)}},
                        "pacs": {
                            "hosts": {
                                "pacs-test": {
                                    **local,
                                    "endpoint_host": storescp.host,
                                    "endpoint_dicom_port": storescp.port,
                                    "pacs_server_dicom_aet": storescp.aet,
                                }
                            }
                        },
                    }
                }
            }
        )
    )
    scenario = copy.deepcopy(SCENARIO)
    scenario["files"].update({STAGED_MSI: "2" * 64, STAGED_INF: "3" * 64})
    scenario["pnputil"][STAGED_INF] = {
        "rc": 0,
        "pci": r"PCI\VEN_10DE&DEV_1EB8",
        "version": "32.0.15.5324",
        "inf": "nv_dispwi.inf",
        "stdout": PNPUTIL_WIN11,
    }
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))

    def run(**extra):
        record = tmp_path / "record.json"
        variables = {
            "release_catalogue": CATALOGUE,
            "workstation_windows_product": "cu-viewer",
            "workstation_windows_target_version": "2.4.0",
            "workstation_windows_update_poll": 1,
            "workstation_windows_post_reboot_delay": 0,
            "record_file": str(record),
            "clinical_upgrade_evidence_dir": str(tmp_path / "evidence"),
            **extra,
        }
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"),
            ANSIBLE_ACTION_PLUGINS=str(action_dir),
            STANDIN_SCENARIO=str(tmp_path / "scenario.json"),
            STANDIN_STATE=str(state),
            STANDIN_JOBS=str(tmp_path / "jobs"),
        )
        proc = subprocess.run(
            [
                str(ANSIBLE_PLAYBOOK),
                "-i",
                str(tmp_path / "hosts.yml"),
                "--limit",
                "rad-ws-11",
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
        calls = json.loads(state.read_text()).get("calls", [])
        return proc, (json.loads(record.read_text()) if record.exists() else None), calls

    return run


def test_the_entry_points_and_the_profile_in_the_flows_order(plugin_run):
    proc, record, calls = plugin_run(snapshot_provider="windows_restore_point")
    assert proc.returncode == 0, proc.stdout[-4000:]

    discovered = record["discovered"]
    assert discovered["version"] == "2.3.0" and discovered["problems"] == [] and discovered["refusals"] == []
    assert discovered["pending_changes"] == [
        "viewer cu-viewer 2.3.0 -> 2.4.0",
        "display driver of 10de:1eb8: 31.0.15.3713 (nv_dispwi.inf) -> 32.0.15.5324",
        "2 Windows update(s): KB5034441, KB890830",
    ]

    baseline = record["baseline"]
    assert baseline["problems"] == [], baseline
    assert baseline["baseline"]["profile"] == "workstation_windows"
    assert baseline["baseline"]["version"] == "2.3.0"
    assert [g["id"] for g in baseline["baseline"]["gpus"]] == ["10de:1eb8"]

    staged = record["staged"]
    assert staged["problems"] == [] and staged["viewer"] == STAGED_MSI and staged["drivers"] == {INF: STAGED_INF}
    assert staged["updates"]["downloaded"] == 2

    assert calls == [
        "discover",
        "win_updates searched",  # discover
        "discover",  # the baseline reads the viewer and the GPUs (no update search)
        f"win_file {STAGE}\\viewer\\2.4.0\\",
        f"win_file {STAGE}\\drivers\\nv_dispwi.inf-32.0.15.5324\\",
        f"win_copy {MSI} -> {STAGE}\\viewer\\2.4.0\\",
        "win_copy \\\\share\\drivers\\ -> " + STAGE + "\\drivers\\nv_dispwi.inf-32.0.15.5324\\",
        "win_updates downloaded",  # stage: nothing installed
        f"win_package {STAGED_MSI}",
        f"pnputil {STAGED_INF}",  # switch: from the staged files
        "win_updates searched",
        "win_updates installed",  # no restart: not allowed
        "discover",  # the switch reads the workstation again
        "discover",
    ]  # the comparison

    switched = record["switched"]
    assert switched["problems"] == []
    assert switched["packages"] == [
        "cu-viewer 2.3.0 -> 2.4.0: installed",
        "display driver nv_dispwi.inf 32.0.15.5324",
        "Windows update KB5034441",
        "Windows update KB890830",
    ]
    assert switched["reboot"] == {
        "required": True,
        "done": False,
        "pending": True,
        "why_pending": "workstation_windows_allow_reboot is false",
    }
    assert "snapshot is a restore point" in switched["restore_point"]["reason"]

    results = {r["check"]: r for r in record["results"]}
    assert {name: r["status"] for name, r in results.items()} == {
        "pacs_echo_from_controller": "passed",
        "viewer_version": "passed",
        "display_adapters": "passed",
    }


def test_the_switch_takes_its_own_restore_point_when_the_snapshot_is_a_hypervisors(plugin_run):
    proc, record, calls = plugin_run(snapshot_provider="vmware")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert calls.index("restore_point") < calls.index(f"win_package {STAGED_MSI}")
    assert record["switched"]["restore_point"]["created"] is True
