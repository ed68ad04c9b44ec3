"""tools/downtime_probe.py: the probe roles/upgrade runs through an upgrade, against a real DICOM peer.

A pynetdicom Verification SCP is stopped and started again under the running (detached) probe; the
outage the probe recorded, read back by the upgrade filter, is the one that happened. A probe that
cannot run says why and exits non-zero; stop ends only a process of the probe.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import LOOPBACK, free_port

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "tools" / "downtime_probe.py"
sys.path.insert(0, str(ROOT / "filter_plugins"))

from upgrade import read_probe_samples, upgrade_downtime, upgrade_result_new  # noqa: E402


def probe(*args, timeout=60):
    return subprocess.run(
        [sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def verification_scp(port):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="PROBED")
    ae.add_supported_context(Verification)
    return ae.start_server((LOOPBACK, port), block=False)


@pytest.fixture
def files(tmp_path):
    return {"out": tmp_path / "probe.jsonl", "pid": tmp_path / "probe.pid", "log": tmp_path / "probe.log"}


def test_an_outage_under_the_detached_probe_is_measured(files):
    port = free_port()
    server = verification_scp(port)
    connection = json.dumps({"host": LOOPBACK, "port": port, "called_ae": "PROBED", "calling_ae": "CUVERIFY"})
    try:
        started = probe(
            "start",
            "--connection",
            connection,
            "--interval",
            "0.1",
            "--out",
            str(files["out"]),
            "--pidfile",
            str(files["pid"]),
            "--log",
            str(files["log"]),
        )
        assert started.returncode == 0, started.stderr
        info = json.loads(started.stdout)
        assert info["first"]["ok"] is True and info["target"] == f"PROBED@{LOOPBACK}:{port}"
        assert int(files["pid"].read_text()) == info["pid"] != os.getpid()
        result = upgrade_result_new("pacs1", "pacs", {"id": "r"}, "1.12.7")
        time.sleep(1.0)
        server.shutdown()
        down_at = time.time()
        time.sleep(1.5)
        server = verification_scp(port)
        up_at = time.time()
        time.sleep(1.0)
        stopped = probe("stop", "--pidfile", str(files["pid"]), "--out", str(files["out"]))
    finally:
        server.shutdown()
    assert stopped.returncode == 0, stopped.stderr
    stop = json.loads(stopped.stdout)
    assert stop["was_running"] is True and stop["signal"] == "TERM" and stop["samples"] > 20
    assert not files["pid"].exists()
    header, samples, end = read_probe_samples(files["out"])
    assert header["interval_s"] == 0.1 and end["why"] == "signal" and end["samples"] == len(samples)
    downtime = upgrade_downtime(
        result,
        {
            "enabled": True,
            "file": str(files["out"]),
            "interval_s": 0.1,
            "timeout_s": 1.0,
            "target": json.loads(connection),
            "start": {"rc": 0, "stdout": started.stdout},
            "stop": {"rc": 0, "stdout": stopped.stdout},
        },
        time.time(),
    )["downtime"]
    assert downtime["measured"] is True and downtime["complete"] is True, downtime["reason"]
    assert downtime["count"] == 1, downtime["intervals"]
    outage = downtime["intervals"][0]
    # the probe sees it within one interval (plus an echo's time) of when it happened
    assert down_at - 0.05 <= outage["start_epoch"] <= down_at + 0.5
    assert up_at - 0.05 <= outage["end_epoch"] <= up_at + 0.5
    assert 1.0 <= outage["duration_s"] <= 2.2 and "connection_refused" in outage["reasons"]


def test_a_probe_that_cannot_run_says_why_and_starts_nothing(files, closed_port):
    bad = probe(
        "start",
        "--port",
        str(closed_port),
        "--host",
        LOOPBACK,
        "--called-ae",
        "",
        "--out",
        str(files["out"]),
        "--pidfile",
        str(files["pid"]),
    )
    assert bad.returncode == 2 and "called_ae is empty" in bad.stderr
    assert not files["pid"].exists()
    unwritable = probe(
        "start",
        "--port",
        str(closed_port),
        "--called-ae",
        "PACS1",
        "--host",
        LOOPBACK,
        "--out",
        "/proc/nonexistent/probe.jsonl",
        "--pidfile",
        str(files["pid"]),
    )
    assert unwritable.returncode == 2 and "/proc/nonexistent" in unwritable.stderr


def test_a_closed_port_is_recorded_as_failed_echoes(files, closed_port):
    ran = probe(
        "run",
        "--host",
        LOOPBACK,
        "--port",
        str(closed_port),
        "--called-ae",
        "PACS1",
        "--interval",
        "0.05",
        "--max-seconds",
        "0.5",
        "--out",
        str(files["out"]),
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["why"] == "max_seconds"
    _, samples, end = read_probe_samples(files["out"])
    assert samples and all(not s["ok"] and s["reason"] == "connection_refused" for s in samples)
    assert end["why"] == "max_seconds"


def test_stop_ends_only_a_process_of_the_probe(files):
    files["pid"].write_text(f"{os.getpid()}\n")  # a stale pid file naming some other process (here: pytest)
    stopped = probe("stop", "--pidfile", str(files["pid"]))
    assert stopped.returncode == 0
    assert (
        json.loads(stopped.stdout)["was_running"] is False and "is not the probe" in json.loads(stopped.stdout)["why"]
    )
    missing = json.loads(probe("stop", "--pidfile", str(files["pid"])).stdout)
    assert missing["was_running"] is False and "no readable pid file" in missing["why"]


def test_stop_ends_only_the_probe_of_its_own_pid_file(files, closed_port, tmp_path):
    started = probe(
        "start",
        "--host",
        LOOPBACK,
        "--port",
        str(closed_port),
        "--called-ae",
        "PACS1",
        "--out",
        str(files["out"]),
        "--pidfile",
        str(files["pid"]),
    )
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["pid"]
    other = tmp_path / "another-run.pid"
    other.write_text(f"{pid}\n")  # the pid of a probe, but another run's pid file
    assert json.loads(probe("stop", "--pidfile", str(other)).stdout)["was_running"] is False
    assert Path(f"/proc/{pid}").exists()
    stop = json.loads(probe("stop", "--pidfile", str(files["pid"])).stdout)
    assert stop["was_running"] is True and stop["pid"] == pid
    assert not Path(f"/proc/{pid}").exists() or b"downtime_probe" not in Path(f"/proc/{pid}/cmdline").read_bytes()
