"""The playbooks run unchanged under ansible-runner, which AWX / Automation Controller uses: the preflight on
the lab inventory (it connects to no host) and the health check (playbooks/verify.yml) of a real Orthanc,
each through ansible_runner.run, reading its status, return code and events as AWX does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ansible_runner
import yaml
from support import LOOPBACK

REPO = Path(__file__).resolve().parents[2]


def run(tmp_path, playbook, inventory, extravars=None):
    private = tmp_path / "runner"
    private.mkdir()
    return ansible_runner.run(
        private_data_dir=str(private), project_dir=str(REPO), playbook=playbook, inventory=str(inventory),
        envvars={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        extravars=extravars or {}, quiet=True, timeout=300,
    )  # fmt: skip


def events(result, name):
    return [e for e in result.events if e.get("event") == name]


def test_the_preflight_runs_under_ansible_runner(tmp_path):
    result = run(tmp_path, "playbooks/preflight.yml", REPO / "inventories" / "lab" / "hosts.yml")
    assert (result.status, result.rc) == ("successful", 0), result.stdout.read()[-3000:]
    [stats] = events(result, "playbook_on_stats")
    assert not stats["event_data"]["failures"] and not stats["event_data"]["dark"]
    tasks = [e["event_data"].get("task", "") for e in events(result, "runner_on_ok")]
    assert any(task.startswith("Check the whole inventory") for task in tasks), tasks
    # AWX keeps these: the job's artifacts (status, rc, every event as JSON).
    artifacts = Path(result.config.artifact_dir)
    assert (artifacts / "status").read_text() == "successful" and (artifacts / "rc").read_text() == "0"
    assert len(list((artifacts / "job_events").glob("*.json"))) == len(list(result.events))


def test_the_health_check_of_a_real_pacs_runs_under_ansible_runner(tmp_path, orthanc):
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "endpoint_host": LOOPBACK,
             "verify_calling_aet": orthanc.scu_ae}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"clinical_upgrade_evidence_dir": str(tmp_path / "evidence")},
        "children": {"pacs": {"hosts": {"runnerpacs": {
            **local, "endpoint_dicom_port": orthanc.dicom_port, "pacs_server_dicom_aet": orthanc.aet,
            "endpoint_rest_url": orthanc.url, "pacs_server_rest_user": orthanc.user,
            "pacs_server_rest_password": orthanc.password}}}}}}))
    result = run(tmp_path, "playbooks/verify.yml", inventory)
    assert (result.status, result.rc) == ("successful", 0), result.stdout.read()[-3000:]
    ok = {e["event_data"]["task"] for e in events(result, "runner_on_ok")
          if e["event_data"].get("host") == "runnerpacs"}
    assert {"PACS answers C-ECHO", "PACS answers a study-level C-FIND"} <= ok
    report = json.loads((tmp_path / "evidence" / "verify-latest.json").read_text())
    assert report["summary"]["failed"] == 0 and report["summary"]["passed"] >= 4
