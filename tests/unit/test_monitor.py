"""playbooks/monitor.yml against a real Orthanc, then the same Orthanc stopped: the severity 1 finding,
the metrics file (read by prometheus_client's parser), the syslog records (read by an RFC 5424 parser),
the JUnit file and the exit code; and report_metrics and syslog_rfc5424 on their own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import junitparser
import pytest
import syslog_rfc5424
import yaml
from conftest import _orthanc_peer
from support import LOOPBACK, prometheus_samples, stop_process
from syslog_rfc5424_parser import SyslogMessage

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "filter_plugins"))

from report import monitor_view, report_metrics  # noqa: E402


def wait_for(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


class UdpSyslog:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received, self.stop = [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                self.received.append(self.sock.recv(65535).decode("utf-8"))
            except TimeoutError:
                continue

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_the_metrics_read_back_with_prometheus_clients_parser():
    class HostVars(dict):
        pass

    hostvars = HostVars(
        pacs1={"dicom_verify_profile": "pacs", "dicom_verify_results": [
            {"check": "dicom_echo", "status": "failed", "elapsed_ms": None, "message": "refused"},
            {"check": "pacs_info", "status": "passed", "elapsed_ms": 25, "message": "ok"}]},
        ws1={"dicom_verify_profile": "workstation", "dicom_verify_results": [
            {"check": "image_load", "status": "passed", "elapsed_ms": 900, "message": 'a "quoted" \\ text'},
            {"check": "viewer", "status": "skipped", "elapsed_ms": None, "message": "not run"}]},
        ws2={"group_names": ["workstations", "workstations_linux"]})
    view = monitor_view(hostvars, ["pacs1", "ws1", "ws2"], {"id": "m1"})
    assert [(f["host"], f["check"], f["severity"]) for f in view["findings"]] == [
        ("pacs1", "dicom_echo", 1), ("ws2", "host_reachable", 3)]
    got = prometheus_samples(report_metrics(view, 1796337000.5))
    assert got["clinical_check_up", frozenset({"host": "pacs1", "check": "dicom_echo", "phase": "verify"}.items())] == 0
    assert got["clinical_check_up", frozenset({"host": "ws1", "check": "image_load", "phase": "verify"}.items())] == 1
    assert got["clinical_check_latency_seconds",
               frozenset({"host": "pacs1", "check": "pacs_info", "phase": "verify"}.items())] == 0.025
    assert not any(dict(labels).get("check") == "viewer" for _, labels in got)  # skipped: no sample
    assert [got["clinical_findings", frozenset({"severity": s}.items())] for s in "1234"] == [1, 0, 1, 0]
    assert got["clinical_hosts", frozenset({"outcome": "unhealthy"}.items())] == 2
    assert got["clinical_run_timestamp_seconds", frozenset()] == 1796337000.5


def test_syslog_records_read_back_as_rfc_5424(module_runner):
    server = UdpSyslog()
    findings = [{"severity": 1, "host": "pacs1", "check": "dicom_echo", "title": "the PACS does not answer C-ECHO",
                 "message": 'association refused "]" by peer'},
                {"severity": 4, "host": "pacs2", "check": "downtime", "title": "the downtime was not measured",
                 "message": ""}]
    try:
        result = module_runner(syslog_rfc5424, {"server": LOOPBACK, "port": server.port, "run_id": "r1",
                                                "msgid": "monitor", "records": findings})
        assert result["sent"] == 2, result
        wait_for(lambda: len(server.received) >= 2)
    finally:
        server.close()
    parsed = [SyslogMessage.parse(text) for text in server.received]
    assert [(m.severity.name, m.facility.name, m.appname, m.msgid) for m in parsed] == [
        ("crit", "local0", "clinical-upgrade", "monitor"), ("notice", "local0", "clinical-upgrade", "monitor")]
    assert parsed[0].sd["clinical@32473"] == {"host": "pacs1", "check": "dicom_echo", "severity": "1", "run": "r1"}
    assert parsed[0].msg == 'the PACS does not answer C-ECHO - association refused "]" by peer'


def test_bad_syslog_input_and_a_server_that_does_not_listen_are_named(module_runner, closed_port):
    record = {"severity": 2, "host": "h", "check": "c", "title": "t", "message": "m"}
    result = module_runner(syslog_rfc5424, {"server": LOOPBACK, "port": closed_port, "protocol": "tcp", "timeout": 2,
                                            "records": [record]})
    assert result["failed"] and f"could not send to the syslog server {LOOPBACK}:{closed_port} (tcp)" in result["msg"]
    result = module_runner(syslog_rfc5424, {"server": LOOPBACK, "records": [dict(record, severity=7)]})
    assert result["failed"] and "a finding's severity is 1 to 4, got 7" in result["msg"]
    result = module_runner(syslog_rfc5424, {"server": LOOPBACK, "facility": 40, "records": [record]})
    assert result["failed"] and "facility must be 0 to 23" in result["msg"]
    result = module_runner(syslog_rfc5424, {"server": LOOPBACK, "port": 9, "records": [record]}, check_mode=True)
    assert result["sent"] == 0 and result["messages"][0].startswith("<131>1 ")  # local0 (16) * 8 + error (3)


def run_monitor(tmp_path, pacs, syslog_port):
    tmp_path.mkdir()
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "endpoint_host": LOOPBACK,
             "verify_calling_aet": pacs.scu_ae}
    inventory = {"all": {"vars": {"clinical_upgrade_evidence_dir": str(tmp_path / "evidence")}, "children": {
        "pacs": {"hosts": {"monpacs": {**local, "endpoint_dicom_port": pacs.dicom_port,
                                       "pacs_server_dicom_aet": pacs.aet, "endpoint_rest_url": pacs.url,
                                       "pacs_server_rest_user": pacs.user,
                                       "pacs_server_rest_password": pacs.password}}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
         str(REPO / "playbooks" / "monitor.yml"), "-e", f"monitor_syslog_server={LOOPBACK}",
         "-e", f"monitor_syslog_port={syslog_port}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    latest = tmp_path / "evidence" / "monitor" / "monitor-latest.json"
    prom = tmp_path / "evidence" / "monitor" / "clinical_upgrade.prom"
    return proc, json.loads(latest.read_text()), prometheus_samples(prom.read_text())


def test_monitoring_a_pacs_that_answers_then_one_that_stopped(tmp_path_factory, tmp_path):
    peers = _orthanc_peer(tmp_path_factory.mktemp("monitored"))
    pacs = next(peers)
    server = UdpSyslog()
    echo = frozenset({"host": "monpacs", "check": "dicom_echo", "phase": "verify"}.items())
    try:
        proc, view, got = run_monitor(tmp_path / "up", pacs, server.port)
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert view["worst_severity"] is None and view["hosts"][0]["outcome"] == "healthy", view["findings"]
        assert got["clinical_check_up", echo] == 1
        assert {c["check"] for c in view["hosts"][0]["checks"]} >= {"dicom_echo", "pacs_info", "dicom_query_studies"}
        assert "dicom_roundtrip" not in {c["check"] for c in view["hosts"][0]["checks"]}  # read-only by default
        assert server.received == []  # nothing to report

        pacs.process.send_signal(signal.SIGTERM)
        pacs.process.wait(30)
        proc, view, got = run_monitor(tmp_path / "down", pacs, server.port)
        assert proc.returncode == 2, proc.stdout[-4000:]  # the failed assert: a scheduler alerts
        assert "SEVERITY 1: monpacs: the PACS does not answer C-ECHO" in proc.stdout
        found = {(f["check"], f["severity"]) for f in view["findings"]}
        assert found >= {("dicom_echo", 1), ("dicom_query_studies", 1)}, found
        assert got["clinical_check_up", echo] == 0
        assert got["clinical_findings", frozenset({"severity": "1"}.items())] >= 2
        [junit] = (tmp_path / "down" / "evidence" / "monitor").glob("monitor-*.junit.xml")
        cases = {c.name: c for suite in junitparser.JUnitXml.fromfile(str(junit)) for c in suite}
        assert not cases["dicom_echo"].is_passed and "SLA severity 1" in cases["dicom_echo"].result[0].message
        wait_for(lambda: len(server.received) >= len(view["findings"]))
        records = [SyslogMessage.parse(text) for text in server.received]
        assert {(r.severity.name, r.sd["clinical@32473"]["check"]) for r in records} >= {("crit", "dicom_echo")}
    finally:
        server.close()
        stop_process(pacs.process)
        with pytest.raises(StopIteration):
            next(peers)
