"""The Windows play of playbooks/patch_workstations.yml, end to end through roles/upgrade: preflight,
precheck (PRE-001 to PRE-009), lock, snapshot (a System Restore point), stage, switch, verify, the
fleet summary; and, with a verification that fails, the rollback to the restore point and its
verification.

No Windows host exists here. The ansible.windows modules are the stand-ins of
test_workstation_windows_flow.py (action plugins that answer on the controller, keeping the
workstation's state in a file), with a restore point that really brings back the state it was taken
from. The workstation itself is **unreachable** (ssh to port 1 of 127.0.0.1, where nothing listens): a
task that tried to run anything on it other than the stand-ins (a Python module: the run lock, the
journal, a stat of a Linux file) would fail the run. So this proves the flow needs nothing of a
Windows host beyond the ansible.windows modules: its lock, journal and host checks stay on the
controller. The viewer's PACS is a real DCMTK storescp, C-ECHOed from the controller. It proves
nothing about Windows itself: molecule/windows does, against a real host.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess

import junitparser
import pytest
import yaml
from test_workstation_windows_flow import (
    ACTIONS,
    ANSIBLE_PLAYBOOK,
    CATALOGUE,
    PNPUTIL_WIN11,
    REPO,
    SCENARIO,
    STANDIN,
    standin_collection,
)
from test_workstation_windows_plugin import STAGED_INF, STAGED_MSI, STANDIN_COPY

OLD_STATE = {"viewer": {"product_id": CATALOGUE["cu-viewer"]["2.3.0"]["installer"]["product_id"], "version": "2.3.0.5"}}
# The provider's script (files/windows_restore_point.ps1) as a stand-in: a restore point keeps the
# workstation's state, a restore brings it back (as System Restore does with programs and drivers).
STANDIN_RESTORE = '''

class FlowPowershell(WinPowershell):
    def run(self, tmp=None, task_vars=None):
        params = self._task.args.get("parameters") or {}
        if "SystemRestore" not in (self._task.args.get("script") or "") or "Action" not in params:
            return super().run(tmp, task_vars)
        action = params["Action"]
        _call("restore_point " + action)
        state = _state()
        if action == "create":
            keep = {k: v for k, v in state.items() if k != "calls"}
            state.setdefault("restore_points", {})["57"] = json.loads(json.dumps(keep))
            _save(state)
            return {"changed": True, "result": {"created": True, "sequence_number": 57,
                                                "description": params["Description"], "creation_time": "now",
                                                "drive": "C:\\\\"}}
        if action == "restore":
            point = state["restore_points"][str(params["SequenceNumber"])]
            for key in ("viewer", "drivers", "updates_installed"):
                state.pop(key, None)
            state.update(json.loads(json.dumps(point)))
            _save(state)
            return {"changed": True, "result": {"scheduled": True, "sequence_number": int(params["SequenceNumber"])}}
        if action == "status":
            return {"changed": False, "result": {"status": 1, "meaning": "succeeded"}}
        state.get("restore_points", {}).pop(str(params["SequenceNumber"]), None)
        _save(state)
        return {"changed": True, "result": {"removed": True, "sequence_number": int(params["SequenceNumber"])}}
'''
UNREACHABLE = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "nobody"}
LAB_CATALOGUE = yaml.safe_load((REPO / "inventories/lab/group_vars/all/catalogue.yml").read_text())["release_catalogue"]
LAB_WINDOWS = yaml.safe_load((REPO / "inventories/lab/group_vars/all/maintenance.yml").read_text())


@pytest.fixture
def fleet(tmp_path, storescp):
    """run(**vars) -> (process, fleet summary, host evidence, calls, state) for one Windows workstation."""
    actions_dir = standin_collection(
        tmp_path,
        STANDIN + STANDIN_COPY + STANDIN_RESTORE,
        {**ACTIONS, "win_file": "WinFile", "win_copy": "WinCopy", "win_powershell": "FlowPowershell"},
    )
    state = tmp_path / "state.json"
    state.write_text(json.dumps(OLD_STATE))
    scenario = copy.deepcopy(SCENARIO)
    scenario["files"].update({STAGED_MSI: "2" * 64, STAGED_INF: "3" * 64})
    scenario["pnputil"][STAGED_INF] = {"rc": 0, "pci": r"PCI\VEN_10DE&DEV_1EB8", "version": "32.0.15.5324",
                                       "inf": "nv_dispwi.inf", "stdout": PNPUTIL_WIN11}
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))
    evidence = tmp_path / "evidence"
    inventory = {"all": {
        "vars": {"release_catalogue": {**LAB_CATALOGUE, **CATALOGUE}, "clinical_upgrade_evidence_dir": str(evidence),
                 **LAB_WINDOWS},
        "children": {
            "workstations": {"children": {"workstations_windows": {"hosts": {"rad-ws-11": {
                **UNREACHABLE,
                "workstation_windows_product": "cu-viewer",
                "workstation_windows_target_version": "2.4.0",
                "workstation_windows_update_poll": 1,
                "workstation_windows_post_reboot_delay": 0,
                "snapshot_provider": "windows_restore_point",
                "snapshot_allow_reboot": True,
            }}}}},
            "pacs": {"hosts": {"pacs-test": {
                "ansible_connection": "local",
                "endpoint_host": storescp.host,
                "endpoint_dicom_port": storescp.port,
                "pacs_server_dicom_aet": storescp.aet,
                "pacs_server_target_version": "1.12.7",
                "pacs_server_installed_version": "1.10.1",
                "pacs_server_rest_password": "not-a-secret",
            }}},
        }}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))

    def run(*extra):
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"), ANSIBLE_ACTION_PLUGINS=str(actions_dir),
                   STANDIN_SCENARIO=str(tmp_path / "scenario.json"), STANDIN_STATE=str(state),
                   STANDIN_JOBS=str(tmp_path / "jobs"))
        proc = subprocess.run(
            [str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "hosts.yml"), "--limit", "rad-ws-11",
             str(REPO / "playbooks" / "patch_workstations.yml"), *extra],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
        )
        summary = evidence / "fleet-latest.json"
        host = evidence / "upgrade-latest-rad-ws-11.json"
        now = json.loads(state.read_text())
        return (proc, json.loads(summary.read_text()) if summary.exists() else None,
                json.loads(host.read_text()) if host.exists() else None, now.get("calls", []), now)

    return run


def test_the_windows_play_patches_through_the_flow_with_nothing_run_on_the_host(fleet, tmp_path):
    proc, summary, record, calls, state = fleet()
    assert proc.returncode == 0, proc.stdout[-5000:]
    [ws] = summary["workstations"]
    assert (ws["host"], ws["outcome"]) == ("rad-ws-11", "upgraded"), ws
    assert record["outcome"] == "upgraded"
    assert (record["versions"]["before"], record["versions"]["after"]) == ("2.3.0", "2.4.0")
    checks = {c["id"]: c for c in record["precheck"]}
    assert all(c["status"] == "passed" for c in checks.values()), checks
    assert checks["PRE-001"]["message"].startswith("Microsoft Windows 11 Enterprise (build 22631, release 11)")
    assert checks["PRE-004"]["message"].startswith("drive C: needed 1024 MB")
    assert record["snapshot"]["id"] and "restore_point create" in calls
    assert [s["name"] for s in record["steps"] if s["status"] == "passed"][-4:] == ["snapshot", "stage", "switch",
                                                                                    "verify"]
    assert {c["check"]: c["status"] for c in record["verification"]} == {
        c["check"]: "passed" for c in record["verification"]}
    assert state["viewer"]["version"] == "2.4.0.100"
    # The lock and the journal were on the controller, and the lock is released.
    lock_dir = tmp_path / "evidence" / "locks" / "rad-ws-11"
    journal = json.loads((lock_dir / "run.journal.json").read_text())
    assert journal["phase"] == "finished" and not (lock_dir / "run.lock").exists(), journal
    # A second run finds the workstation current and changes nothing.
    proc, summary, record, calls_after, _ = fleet()
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert summary["workstations"][0]["outcome"] == "already_current"
    assert "win_package" not in " ".join(calls_after[len(calls):])


def test_a_failed_verification_rolls_back_to_the_restore_point_and_verifies_again(fleet, tmp_path):
    proc, summary, record, calls, state = fleet("-e", "upgrade_expected_version=9.9.9-injected-fault")
    assert proc.returncode != 0
    [ws] = summary["workstations"]
    assert ws["outcome"] == "rolled_back", ws
    assert record["outcome"] == "rolled_back" and record["snapshot_reverted"]
    assert {c["check"]: c["status"] for c in record["verification"]}["viewer_version"] == "failed"
    after = {c["check"]: c["status"] for c in record["rollback_verification"]}
    assert after and set(after.values()) == {"passed"}, after
    assert calls.index("restore_point restore") > calls.index(f"win_package {STAGED_MSI}")
    assert "restore_point status" in calls
    # The restore point brought back the viewer and the driver the workstation had before the run.
    assert state["viewer"] == OLD_STATE["viewer"] and not state.get("drivers"), state
    # The evidence people read: the finding's SLA severity, the JUnit file (read back by junitparser), the
    # HTML report, and each file's sha256 printed in the log as the file has it.
    assert [(f["check"], f["severity"]) for f in record["findings"]] == [("outcome", 3), ("downtime", 4)]
    [run_dir] = (tmp_path / "evidence").glob("upgrade-*-*/")
    junit = {(case.classname, case.name): case
             for suite in junitparser.JUnitXml.fromfile(str(run_dir / "junit.xml")) for case in suite}
    assert "SLA severity 3" in junit["rad-ws-11.outcome", "rolled_back"].result[0].message
    assert not junit["rad-ws-11.verify", "viewer_version"].is_passed
    assert junit["rad-ws-11.rollback", "viewer_version"].is_passed
    assert 'id="timeline-rad-ws-11"' in (run_dir / "report.html").read_text()
    for name in ("rad-ws-11.json", "report.html", "junit.xml", "summary.json"):
        digest = hashlib.sha256((run_dir / name).read_bytes()).hexdigest()
        printed = [line for line in proc.stdout.splitlines() if " sha256 " in line]
        assert any(f"{run_dir / name} sha256 {digest}" in line for line in printed), (name, printed)
