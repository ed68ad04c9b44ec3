"""playbooks/monitor.yml, as a schedule runs it, against the converged lab: every host (PACS, RIS,
workstations) healthy and the run exits 0; then the lab PACS's Orthanc stopped: a severity 1 finding
for the PACS, its checks down in the metrics file (read by prometheus_client's parser), the JUnit
file saying so, and a run that exits non-zero so the scheduler alerts. Orthanc is started again and
answers before the test ends (the other tests of the scenario read the same PACS)."""

import json
import subprocess
import sys
import time

import junitparser
import testlib

# The Prometheus text parser shared with the unit test of the monitor (tests/support.py).
sys.path.insert(0, str(testlib.PROJECT / "tests"))
from support import prometheus_samples  # noqa: E402

LAB_HOSTS = {"mol-pacs1", "mol-ris1", "mol-lab-ws1", "mol-lab-ws2"}
PACS_REST = "http://127.0.0.1:28042"
PACS_PASSWORD = "molecule-only-not-secret"  # noqa: S105 - the scenario's own (molecule.yml)


def monitor(tag: str) -> tuple[subprocess.CompletedProcess, dict, dict, dict]:
    out = testlib.EPHEMERAL / f"monitor-{tag}"
    proc = testlib.run_playbook("monitor.yml", "-e", f"clinical_upgrade_evidence_dir={out}", timeout=600)
    latest = out / "monitor" / "monitor-latest.json"
    assert latest.exists(), f"monitor.yml wrote no result:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    samples = prometheus_samples((out / "monitor" / "clinical_upgrade.prom").read_text())
    [junit] = (out / "monitor").glob("monitor-*.junit.xml")
    cases = {(suite.name, case.name): case for suite in junitparser.JUnitXml.fromfile(str(junit)) for case in suite}
    return proc, json.loads(latest.read_text()), samples, cases


def podman_exec(*argv: str) -> None:
    subprocess.run(["podman", "exec", "mol-pacs1", *argv], check=True, capture_output=True, timeout=120)


def pacs_answers() -> bool:
    try:
        return "Version" in testlib.OrthancRest(PACS_REST, password=PACS_PASSWORD).json("/system")
    except OSError:
        return False


def test_monitor_a_healthy_lab_then_the_pacs_stopped():
    proc, view, samples, _ = monitor("up")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert {h["host"] for h in view["hosts"]} == LAB_HOSTS
    assert view["worst_severity"] is None, view["findings"]
    assert {h["host"]: h["outcome"] for h in view["hosts"]} == dict.fromkeys(LAB_HOSTS, "healthy")
    echo = frozenset({"host": "mol-pacs1", "check": "dicom_echo", "phase": "verify"}.items())
    assert samples["clinical_check_up", echo] == 1
    assert samples["clinical_hosts", frozenset({"outcome": "healthy"}.items())] == len(LAB_HOSTS)

    podman_exec("systemctl", "stop", "orthanc")
    try:
        proc, view, samples, cases = monitor("pacs-down")
        assert proc.returncode != 0, "a severity 1 finding must fail the run (the scheduler's alert)"
        assert "SEVERITY 1: mol-pacs1: the PACS does not answer C-ECHO" in proc.stdout, proc.stdout[-4000:]
        found = {(f["host"], f["check"], f["severity"]) for f in view["findings"]}
        assert ("mol-pacs1", "dicom_echo", 1) in found, found
        assert view["worst_severity"] == 1
        assert samples["clinical_check_up", echo] == 0
        assert samples["clinical_findings", frozenset({"severity": "1"}.items())] >= 1
        failed = [key for key, case in cases.items() if key[1] == "dicom_echo" and not case.is_passed]
        assert failed, "the JUnit file does not show the PACS's C-ECHO failed"
        # The RIS answers on its own: it is not reported down with the PACS.
        assert not [f for f in view["findings"] if f["host"] == "mol-ris1" and f["severity"] == 1], view["findings"]
    finally:
        podman_exec("systemctl", "start", "orthanc")
        deadline = time.monotonic() + 120
        while not pacs_answers() and time.monotonic() < deadline:
            time.sleep(1)
    assert pacs_answers(), "the lab PACS did not answer again after it was started"
