"""radiology_workflow: HL7 order -> worklist -> simulated modality -> PACS -> cleanup, against real peers.

The RIS is the ris_server role's MLLP listener (hl7_fixtures.mllp_listener: orders become .wl files
made with DCMTK dump2dcm) with DCMTK wlmscpfs serving the same directory; the PACS is the session
Orthanc of tests/conftest.py. DCMTK findscu and Orthanc's REST API are the independent witnesses.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import hl7_fixtures
import pydicom
import pytest
import radiology_workflow
import yaml
from ansible.module_utils.dicom_client import build_client
from ansible.module_utils.dicom_synth import make_canary_instance
from ansible.module_utils.net_checks import host_name_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import LOOPBACK, dcmtk, free_port, run_module, stop_process, wait_for_port

mllp_listener = hl7_fixtures.mllp_listener  # a fixture, used by name
hl7 = hl7_fixtures.hl7_client()

WLMSCPFS = dcmtk("wlmscpfs")
FINDSCU = dcmtk("findscu")  # DCMTK's, not pynetdicom's app of the same name in the venv
COUNTS = ("CountPatients", "CountStudies", "CountSeries", "CountInstances")
PATIENT_ID_RE = re.compile(r"SYN[0-9A-F]{12}")
CLOSED_PORT = free_port()


@dataclass
class Ris:
    listener: hl7_fixtures.ListenerProcess
    worklist_port: int
    ae: str

    def wl_files(self) -> list[str]:
        return sorted(p.name for p in Path(self.listener.dir).glob("*.wl"))


@pytest.fixture
def ris(mllp_listener):
    """The RIS: the project's MLLP listener, and wlmscpfs serving the worklist directory it fills."""
    if not (WLMSCPFS and FINDSCU):
        pytest.fail("DCMTK wlmscpfs/findscu are not installed: run `make deps` (apt-get install dcmtk)")
    # The listener writes into BASE/<AE> (with BASE/<AE>/lockfile); wlmscpfs serves BASE by called AE.
    assert (mllp_listener.dir / "lockfile").exists() and mllp_listener.dir.parent == mllp_listener.base
    port = free_port()
    proc = subprocess.Popen(
        [WLMSCPFS, "--data-files-path", str(mllp_listener.base), "-ll", "warn", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=proc)
        yield Ris(mllp_listener, port, mllp_listener.aetitle)
    finally:
        stop_process(proc)


def workflow_args(ris, orthanc, **extra):
    args = {
        "hl7_host": LOOPBACK,
        "hl7_port": ris.listener.port,
        "worklist_port": ris.worklist_port,
        "worklist_ae": ris.ae,
        "pacs_host": orthanc.host,
        "pacs_port": orthanc.dicom_port,
        "pacs_ae": orthanc.aet,
        "pacs_url": orthanc.url,
        "pacs_user": orthanc.user,
        "pacs_password": orthanc.password,
        "timeout": 5,
        "worklist_wait": 3,
    }
    args.update(extra)
    return {k: v for k, v in args.items() if v is not None}


def counts(orthanc) -> dict:
    stats = orthanc.rest("GET", "/statistics")
    return {key: stats[key] for key in COUNTS}


def last_change(orthanc) -> int:
    return orthanc.rest("GET", "/changes?last")["Last"]


def studies_by_uid(orthanc, study_uid) -> list[str]:
    return [r["ID"] for r in orthanc.rest("POST", "/tools/lookup", study_uid) if r["Type"] == "Study"]


def cancel_order(ris, accession):
    params = {"host": LOOPBACK, "port": ris.listener.port, "order": {"control": "CA", "accession_number": accession}}
    ack = hl7.send_message(LOOPBACK, ris.listener.port, hl7.build_message(params, hl7.new_control_id()), timeout=10)
    assert ack["ack_code"] == "AA", ack


def findscu(tmp_path, args) -> list:
    """DCMTK findscu with -X; returns the response datasets."""
    out = tmp_path / f"rsp-{time.monotonic_ns()}"
    out.mkdir()
    proc = subprocess.run([FINDSCU, "-X", "-od", str(out), *args], capture_output=True, text=True, timeout=30,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return [pydicom.dcmread(str(p)) for p in sorted(out.iterdir())]


def assert_no_phi(result):
    text = json.dumps(result)
    assert "ZZTEST" not in text and "SYNTHETIC^" not in text
    assert not PATIENT_ID_RE.search(text), PATIENT_ID_RE.search(text)


# ------------------------------------------------------------------ the workflow


def test_workflow_passes_and_leaves_nothing_behind(ris, orthanc):
    before = counts(orthanc)
    result = run_module(radiology_workflow, workflow_args(ris, orthanc))
    assert not result.get("failed"), result.get("msg")
    assert {name: step["status"] for name, step in result["steps"].items()} == {
        "echo": "skipped", **{name: "ok" for name in radiology_workflow.STEPS[1:]}
    }
    assert result["changed"] is False
    assert result["matched"] is True and result["deleted"] is True and result["cancelled"] is True
    assert re.fullmatch(r"CUW\d{12}", result["accession_number"])
    assert result["study_instance_uid"].startswith("2.25.") and result["sop_instance_uid"].startswith("2.25.")
    assert result["study_instance_uid"] != result["sop_instance_uid"]
    # the worklist item and the PACS study are returned masked, UIDs in clear
    item, study = result["worklist_item"], result["pacs_study"]
    assert item["PatientID"] == item["PatientName"] == item["AccessionNumber"] == "***"
    assert item["StudyInstanceUID"] == study["StudyInstanceUID"] == result["study_instance_uid"]
    assert study["PatientID"] == study["AccessionNumber"] == "***"
    assert item["ScheduledProcedureStepSequence"][0]["ScheduledStationAETitle"] == "CLINUPG"
    assert_no_phi(result)
    assert orthanc.password not in json.dumps(result)
    # the study is gone again with its patient (Orthanc drops the changes of deleted resources too, so
    # test_pacs_find_agrees_with_dcmtk_findscu is the witness that the study does reach the PACS)
    assert counts(orthanc) == before
    assert studies_by_uid(orthanc, result["study_instance_uid"]) == []
    # the order was scheduled, then removed
    log = ris.listener.log_text()
    assert "ORM NW" in log and "worklist entry scheduled" in log and "worklist entry removed" in log
    assert ris.wl_files() == []


def test_every_documented_return_value_is_set(ris, orthanc):
    result = run_module(radiology_workflow, workflow_args(ris, orthanc, modality="CT"))
    assert not result.get("failed"), result.get("msg")
    documented = yaml.safe_load(radiology_workflow.RETURN)
    always = {key for key, doc in documented.items() if doc["returned"] == "always"}
    assert always <= set(result), always - set(result)
    assert set(documented) - always == {"failed_step", "reason"}
    assert set(result["steps"]) == set(radiology_workflow.STEPS)
    failed = run_module(radiology_workflow, workflow_args(ris, orthanc, pacs_ae="NOTORTHANC"))
    assert {"failed_step", "reason"} <= set(failed)


def test_pacs_find_agrees_with_dcmtk_findscu(ris, orthanc, tmp_path):
    """With cleanup false the order and the study stay: findscu sees what the module saw, then they go."""
    before = counts(orthanc)
    result = run_module(radiology_workflow, workflow_args(ris, orthanc, pacs_url=None, pacs_user=None,
                                                          pacs_password=None, cleanup=False))
    assert not result.get("failed"), result.get("msg")
    accession, study_uid = result["accession_number"], result["study_instance_uid"]
    try:
        assert result["changed"] is True and result["deleted"] is False and result["cancelled"] is False
        assert [result["steps"][s]["status"] for s in ("cleanup_study", "cancel", "worklist_gone")] == ["skipped"] * 3
        assert ris.wl_files() == [f"{accession}.wl"]
        worklist = findscu(tmp_path, ["-W", "-aet", "CUTEST", "-aec", ris.ae, "-k", f"AccessionNumber={accession}",
                                      "-k", "PatientID", "-k", "PatientName", "-k", "StudyInstanceUID",
                                      LOOPBACK, str(ris.worklist_port)])
        pacs = findscu(tmp_path, ["-S", "-aet", orthanc.scu_ae, "-aec", orthanc.aet,
                                  "-k", "QueryRetrieveLevel=STUDY", "-k", f"AccessionNumber={accession}",
                                  "-k", "StudyInstanceUID", "-k", "PatientID", "-k", "PatientName",
                                  orthanc.host, str(orthanc.dicom_port)])
        assert len(worklist) == 1 and len(pacs) == 1  # the module's counts: 1 and 1
        assert pacs[0].StudyInstanceUID == worklist[0].StudyInstanceUID == study_uid
        assert pacs[0].PatientID == worklist[0].PatientID and PATIENT_ID_RE.fullmatch(pacs[0].PatientID)
        assert str(pacs[0].PatientName) == str(worklist[0].PatientName) == "ZZTEST^SYNTHETIC"
        instance = orthanc.rest("POST", "/tools/lookup", result["sop_instance_uid"])[0]["ID"]
        tags = orthanc.rest("GET", f"/instances/{instance}/simplified-tags")
        assert tags["PatientIdentityRemoved"] == "YES" and tags["AccessionNumber"] == accession
        assert tags["StudyInstanceUID"] == study_uid and tags["Modality"] == "OT"
    finally:
        for study in studies_by_uid(orthanc, study_uid):
            orthanc.rest("DELETE", f"/studies/{study}")
        cancel_order(ris, accession)
    assert counts(orthanc) == before and ris.wl_files() == []


@pytest.mark.parametrize(
    ("extra", "step", "reason", "fragment", "stored"),
    [
        ({"pacs_ae": "NOTORTHANC"}, "store", "association_rejected", "check pacs_ae", False),
        # Orthanc stores from any AE here (DicomAlwaysAllowStore) but aborts a C-FIND from an unknown one
        ({"calling_ae": "UNKNOWNMOD"}, "pacs_find", "aborted", "association aborted by ORTHANC@", True),
    ],
)
def test_pacs_failure_still_cleans_up(ris, orthanc, extra, step, reason, fragment, stored):
    before = counts(orthanc)
    result = run_module(radiology_workflow, workflow_args(ris, orthanc, **extra))
    assert result["failed"] and result["failed_step"] == step and result["reason"] == reason, result["msg"]
    assert result["msg"].startswith(f"radiology workflow failed at step {step}: ")
    assert fragment in result["msg"]
    assert result["steps"][step]["status"] == "failed"
    assert result["steps"]["cleanup_study"]["status"] == ("ok" if stored else "skipped")
    assert result["deleted"] is stored
    assert result["steps"]["cancel"]["status"] == result["steps"]["worklist_gone"]["status"] == "ok"
    assert result["cancelled"] is True and result["changed"] is False and result["matched"] is False
    assert counts(orthanc) == before
    assert ris.wl_files() == []
    assert_no_phi(result)


def test_another_study_with_the_accession_is_ambiguous_and_is_left_alone(ris, orthanc):
    """A study of the same accession number already on the PACS: 2 matches; only this run's instance goes."""
    accession = f"CUWT{time.time_ns() % 10**12:012d}"
    other = make_canary_instance()
    other.AccessionNumber = accession
    build_client(orthanc.dicom_args()).store(other)
    before = counts(orthanc)
    try:
        result = run_module(radiology_workflow, workflow_args(ris, orthanc, accession_number=accession))
        assert result["failed"] and result["failed_step"] == "pacs_find" and result["reason"] == "ambiguous"
        assert f"found 2 studies for accession {accession}, expected 1" in result["msg"]
        assert result["steps"]["cleanup_study"]["status"] == "ok" and result["deleted"] is True
        assert result["cancelled"] is True and result["changed"] is False
        assert counts(orthanc) == before
        assert studies_by_uid(orthanc, str(other.StudyInstanceUID))  # the other study is untouched
    finally:
        for study in studies_by_uid(orthanc, str(other.StudyInstanceUID)):
            orthanc.rest("DELETE", f"/studies/{study}")
    assert ris.wl_files() == []


def test_ris_down_fails_at_order(orthanc, closed_port):
    before = counts(orthanc)
    args = {
        "hl7_host": LOOPBACK, "hl7_port": closed_port, "worklist_port": closed_port, "worklist_ae": "RIS1",
        "pacs_host": orthanc.host, "pacs_port": orthanc.dicom_port, "pacs_ae": orthanc.aet,
        "pacs_url": orthanc.url, "pacs_user": orthanc.user, "pacs_password": orthanc.password,
    }
    result = run_module(radiology_workflow, args)
    assert result["failed"] and result["failed_step"] == "order" and result["reason"] == "connection_refused"
    assert f"connection refused by 127.0.0.1:{closed_port}" in result["msg"]
    assert "check hl7_host and hl7_port" in result["msg"]
    assert [result["steps"][s]["status"] for s in radiology_workflow.STEPS] == ["skipped", "failed"] + ["skipped"] * 6
    assert result["steps"]["cancel"]["msg"] == "no order was sent"
    assert result["changed"] is False
    assert counts(orthanc) == before


def test_wrong_rest_password_is_cleanup_failed_and_the_study_stays(ris, orthanc):
    before = counts(orthanc)
    result = run_module(radiology_workflow, workflow_args(ris, orthanc, pacs_password="wrong-password"))
    assert result["failed"] and result["failed_step"] == "cleanup_study" and result["reason"] == "cleanup_failed"
    assert "401 Unauthorized" in result["steps"]["cleanup_study"]["msg"]
    assert "check pacs_user ('clinupg') and pacs_password" in result["msg"]
    assert "NOT removed from the PACS" in result["msg"] and result["study_instance_uid"] in result["msg"]
    assert result["matched"] is True and result["deleted"] is False and result["changed"] is True
    # the order is cancelled all the same
    assert result["steps"]["cancel"]["status"] == result["steps"]["worklist_gone"]["status"] == "ok"
    assert ris.wl_files() == []
    assert "wrong-password" not in json.dumps(result)
    studies = studies_by_uid(orthanc, result["study_instance_uid"])
    assert len(studies) == 1  # it really is still there
    orthanc.rest("DELETE", f"/studies/{studies[0]}")
    assert counts(orthanc) == before


def test_order_not_in_this_worklist_fails_at_worklist_and_is_cancelled(ris, orthanc, wlmscpfs):
    """The orders go to the listener, the worklist query to another worklist: nothing to find."""
    args = workflow_args(ris, orthanc, worklist_port=wlmscpfs.port, worklist_ae=wlmscpfs.aet, worklist_wait=1)
    result = run_module(radiology_workflow, args)
    assert result["failed"] and result["failed_step"] == "worklist" and result["reason"] == "not_found"
    assert "within 1 s" in result["msg"] and "worklist_ae" in result["msg"]
    assert result["steps"]["worklist"]["ms"] >= 1000  # it waited, querying again
    assert result["steps"]["store"]["status"] == "skipped"
    assert result["steps"]["cancel"]["status"] == "ok" and result["cancelled"] is True
    assert result["changed"] is False
    assert ris.wl_files() == []


def test_unreachable_worklist_still_cancels_and_warns_about_the_proof(ris, orthanc):
    result = run_module(radiology_workflow, workflow_args(ris, orthanc, worklist_ae="NOSUCHAE"))
    assert result["failed"] and result["failed_step"] == "worklist", result["msg"]
    assert result["reason"] == "association_rejected" and "check worklist_ae" in result["msg"]
    assert result["steps"]["cancel"]["status"] == "ok" and result["steps"]["worklist_gone"]["status"] == "failed"
    assert result["changed"] is True and result["cancelled"] is False  # the cancel is not proven
    assert "worklist item is not proven gone" in json.dumps(result["warnings"]), result.get("warnings")
    assert ris.wl_files() == []  # the listener did remove it


@pytest.mark.parametrize("pacs", ["orthanc", "storescp"])
def test_check_mode_sends_nothing(ris, orthanc, storescp, pacs):
    """Orthanc forgets the changes of deleted resources; storescp keeps every file it receives."""
    last, before = last_change(orthanc), counts(orthanc)
    extra = {} if pacs == "orthanc" else {"pacs_port": storescp.port, "pacs_ae": storescp.aet}
    result = run_module(radiology_workflow, workflow_args(ris, orthanc, **extra), check_mode=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    assert result["steps"]["echo"]["status"] == "ok"
    assert result["steps"]["echo"]["msg"].count("0x0000") == 2
    assert all(result["steps"][s]["status"] == "skipped" for s in radiology_workflow.STEPS[1:])
    assert last_change(orthanc) == last and counts(orthanc) == before
    assert list(storescp.directory.iterdir()) == []
    assert ris.wl_files() == []
    assert "control_id=" not in ris.listener.log_text()  # no message reached the RIS


def test_check_mode_fails_when_a_peer_does_not_answer(ris, orthanc):
    result = run_module(radiology_workflow, workflow_args(ris, orthanc, pacs_ae="NOTORTHANC"), check_mode=True)
    assert result["failed"] and result["failed_step"] == "echo" and result["reason"] == "association_rejected"
    assert "check pacs_ae" in result["msg"]
    result = run_module(radiology_workflow, workflow_args(ris, orthanc, worklist_ae="NOSUCHAE"), check_mode=True)
    assert result["failed"] and result["failed_step"] == "echo", result["msg"]
    assert "called_ae" not in result["msg"]
    assert ris.wl_files() == []


# ------------------------------------------------------------------ validation, before any traffic

BASE = {
    "hl7_host": LOOPBACK, "hl7_port": CLOSED_PORT, "worklist_port": CLOSED_PORT, "worklist_ae": "RIS1",
    "pacs_host": LOOPBACK, "pacs_port": CLOSED_PORT, "pacs_ae": "ORTHANC", "pacs_url": "http://127.0.0.1:1",
}


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"worklist_ae": "A" * 17}, "worklist_ae is 17 characters long: an AE title has at most 16 characters"),
        ({"pacs_ae": "BAD\\AE"}, "pacs_ae contains a backslash"),
        ({"calling_ae": " "}, "calling_ae is all spaces"),
        ({"station_aetitle": "CT[1]"}, "station_aetitle contains [ or ]"),
        ({"station_aetitle": "X" * 17}, "station_aetitle is 17 characters long"),
        ({"hl7_port": 70000}, "hl7_port must be an integer between 1 and 65535"),
        ({"pacs_port": 0}, "pacs_port must be an integer between 1 and 65535"),
        ({"worklist_port": -1}, "worklist_port must be an integer between 1 and 65535"),
        ({"hl7_host": "a" * 64 + ".example"}, "a part between dots has 64 characters, at most 63"),
        ({"worklist_host": "http://ris1/"}, "worklist_host must be a bare host name or IP address"),
        ({"pacs_url": "ftp://pacs1"}, "pacs_url must start with http:// or https://"),
        ({"pacs_url": "http://u:p@pacs1:8042"}, "put credentials in the user and password options, not in pacs_url"),
        ({"pacs_url": None}, "pacs_url is required to delete the synthetic study"),
        ({"pacs_password": "x"}, "pacs_password is set but pacs_user is not"),
        ({"pacs_ca_path": "/nonexistent/ca.pem"}, "pacs_ca_path: /nonexistent/ca.pem is not a file"),
        ({"pacs_tls_ca_cert": "/nonexistent/ca.pem"}, "pacs_tls_ca_cert: file /nonexistent/ca.pem does not exist"),
        ({"pacs_tls_client_key": "/etc/hostname"}, "pacs_tls_client_key is set but pacs_tls_client_cert is not"),
        ({"accession_number": "A" * 17}, "accession_number must be 1 to 16 letters, digits"),
        ({"accession_number": "ACC|1"}, "the value is not shown"),
        ({"worklist_wait": 3601}, "worklist_wait must be a number of seconds from 0 to 3600"),
        ({"timeout": float("nan")}, "timeout must be a number of seconds greater than 0"),
        ({"hl7_receiving_application": "R|S"}, "hl7_receiving_application must be at most 64 characters"),
    ],
)
def test_arguments_are_refused_before_any_traffic(extra, fragment):
    result = run_module(radiology_workflow, {k: v for k, v in {**BASE, **extra}.items() if v is not None})
    assert result["failed"] and result["failed_step"] == "validate" and result["reason"] == "invalid_argument"
    assert fragment in result["msg"], result["msg"]
    assert "ACC|1" not in result["msg"] and "A" * 17 not in result["msg"].replace("worklist_ae", "")
    assert "steps" not in result


@pytest.mark.parametrize(
    ("extra", "option"),
    [({"worklist_port": "inf"}, "worklist_port"), ({"hl7_port": "1e400"}, "hl7_port"),
     ({"worklist_wait": "nan"}, "worklist_wait"), ({"modality": "MR"}, "modality")],
)
def test_argument_types_are_refused_without_a_traceback(extra, option):
    result = run_module(radiology_workflow, {**BASE, **extra})
    assert result["failed"] and option in result["msg"]


def test_bad_url_with_real_peers_sends_nothing(ris, orthanc):
    last = last_change(orthanc)
    for extra in ({"pacs_url": "http://[::1"}, {"accession_number": "X" * 20}):
        result = run_module(radiology_workflow, workflow_args(ris, orthanc, **extra))
        assert result["failed"] and result["failed_step"] == "validate", result["msg"]
    assert last_change(orthanc) == last
    assert "control_id=" not in ris.listener.log_text() and ris.wl_files() == []


# ------------------------------------------------------------------ property test

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ae_titles = st.one_of(st.text(max_size=20), st.sampled_from(["ORTHANC", "", " ", "A" * 17, "A\\B", "A\nB", "ÄÖ"]))
hosts = st.one_of(st.sampled_from(["127.0.0.1", "", " x", "http://x/", "a" * 64 + ".x", "::1", "[::1]", "ü.x"]),
                  st.text(max_size=30))
numbers = st.one_of(
    st.integers(-5, 70000), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["inf", "nan", "1e400", "", "12abc", " 5 "]),
)


def _loopback_only(args):
    """Keep every example on closed loopback ports: nothing resolves names or waits long."""
    for key in ("hl7_host", "worklist_host", "pacs_host"):
        value = args.get(key)
        if isinstance(value, str) and host_name_error(value) is None:
            args[key] = LOOPBACK
    for key in ("hl7_port", "worklist_port", "pacs_port"):
        if isinstance(args.get(key), int) and 1 <= args[key] <= 65535:
            args[key] = CLOSED_PORT
    timeout = args.get("timeout")
    if isinstance(timeout, float) and math.isfinite(timeout) and timeout > 2:
        args["timeout"] = 0.5
    if isinstance(args.get("worklist_wait"), int) and args["worklist_wait"] > 1:
        args["worklist_wait"] = 1
    return {k: v for k, v in args.items() if v is not None}


@SETTINGS
@given(
    hl7_host=hosts, worklist_host=st.one_of(st.none(), hosts), pacs_host=hosts,
    hl7_port=numbers, worklist_port=numbers, pacs_port=numbers, worklist_wait=numbers, timeout=numbers,
    worklist_ae=ae_titles, pacs_ae=ae_titles, calling_ae=ae_titles, station=st.one_of(st.none(), ae_titles),
    accession=st.one_of(st.none(), st.text(max_size=20)),
    url=st.one_of(st.none(), st.sampled_from(["http://127.0.0.1:1", "ftp://x", "", "http://[::1", "http://x:99999"]),
                  st.text(max_size=30).map(lambda t: "http://" + t)),
    cleanup=st.booleans(), check_mode=st.booleans(),
)
def test_fuzz_arguments_never_end_in_a_traceback(hl7_host, worklist_host, pacs_host, hl7_port, worklist_port,
                                                 pacs_port, worklist_wait, timeout, worklist_ae, pacs_ae,
                                                 calling_ae, station, accession, url, cleanup, check_mode):
    args = _loopback_only({
        "hl7_host": hl7_host, "worklist_host": worklist_host, "pacs_host": pacs_host, "hl7_port": hl7_port,
        "worklist_port": worklist_port, "pacs_port": pacs_port, "worklist_wait": worklist_wait, "timeout": timeout,
        "worklist_ae": worklist_ae, "pacs_ae": pacs_ae, "calling_ae": calling_ae, "station_aetitle": station,
        "accession_number": accession, "pacs_url": url, "cleanup": cleanup,
    })
    result = run_module(radiology_workflow, args, check_mode=check_mode)
    assert result["_rc"] in (0, 1)
    assert result.get("failed"), "nothing listens on the closed ports: every example must fail"
    assert result["msg"] and "Traceback" not in result["msg"]
    if "accession_number must be" in result["msg"]:
        assert accession not in result["msg"]


def test_verify_playbook_runs_the_workflow_check(ris, orthanc, tmp_path):
    """playbooks/verify.yml on a RIS host and the PACS it feeds: the `workflow` check, from the inventory."""
    import os
    import sys

    repo = Path(__file__).resolve().parents[2]
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
             "endpoint_host": LOOPBACK, "verify_calling_aet": orthanc.scu_ae}
    inventory = {"all": {"vars": {"clinical_upgrade_evidence_dir": str(tmp_path / "evidence")}, "children": {
        "pacs": {"hosts": {"wfpacs": {**local, "endpoint_dicom_port": orthanc.dicom_port,
                                      "pacs_server_dicom_aet": orthanc.aet, "endpoint_rest_url": orthanc.url,
                                      "pacs_server_rest_user": orthanc.user,
                                      "pacs_server_rest_password": orthanc.password}}},
        "ris": {"hosts": {"wfris": {**local, "endpoint_hl7_port": ris.listener.port,
                                    "endpoint_worklist_port": ris.worklist_port, "ris_server_aetitle": ris.ae}}},
    }}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    before = counts(orthanc)
    env = dict(os.environ, ANSIBLE_CONFIG=str(repo / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
         str(repo / "playbooks" / "verify.yml"), "--limit", "wfris"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    report = json.loads((tmp_path / "evidence" / "verify-latest.json").read_text())
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["workflow"]["status"] == "passed", checks["workflow"]["message"]
    assert checks["workflow"]["details"]["matched"] is True
    assert {c["status"] for c in checks.values()} == {"passed"}
    assert counts(orthanc) == before and ris.wl_files() == []
