"""Tests for the pacs_info module against a real Orthanc process (and small real HTTP peers)."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import threading
import time

import hl7_fixtures
import pytest
import yaml
from hl7_fixtures import (
    ORTHANC_PASSWORD,
    ORTHANC_USER,
    free_port,
    load_module,
    run_module,
)

pacs_orthanc = hl7_fixtures.pacs_orthanc  # a fixture, used by name
scripted_mllp_server = hl7_fixtures.scripted_mllp_server  # a fixture, used by name

pacs_info = load_module("pacs_info")


def auth(server, **extra):
    args = {"url": server.url, "username": ORTHANC_USER, "password": ORTHANC_PASSWORD, "timeout": 10}
    args.update(extra)
    return args


def synthetic_instance():
    """A small synthetic Secondary Capture instance (no real patient data)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "ZZTEST^SYNTHETIC"
    ds.PatientID = "SYNPACS1"
    ds.Modality = "OT"
    ds.Rows = ds.Columns = 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = b"\x00\x01\x02\x03"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# ------------------------------------------------------------ real Orthanc


def test_reads_system_and_statistics(pacs_orthanc):
    res = run_module(pacs_info, auth(pacs_orthanc, include_jobs=False))
    assert res["_rc"] == 0, res
    assert res["changed"] is False
    assert res["version"] == "1.10.1"
    assert res["database_version"] == 6
    assert res["api_version"] >= 1
    assert res["name"] == "CUTESTPACS"
    assert res["dicom_aet"] == "CUTEST"
    assert res["dicom_port"] == pacs_orthanc.dicom_port
    assert res["system"]["Version"] == res["version"]
    assert res["url"] == pacs_orthanc.url
    assert set(res["statistics"]) == {"patients", "studies", "series", "instances", "disk_size_mb"}
    assert "jobs" not in res
    assert ORTHANC_PASSWORD not in json.dumps(res)


def test_statistics_follow_uploads(pacs_orthanc):
    before = run_module(pacs_info, auth(pacs_orthanc, include_jobs=False))["statistics"]
    pacs_orthanc.post("/instances", synthetic_instance())
    after = run_module(pacs_info, auth(pacs_orthanc, include_jobs=False))["statistics"]
    assert after["instances"] == before["instances"] + 1
    assert after["studies"] == before["studies"] + 1
    assert after["series"] == before["series"] + 1
    assert after["patients"] >= 1
    assert after["disk_size_mb"] >= 0


def test_jobs_pending_and_running(pacs_orthanc):
    instance = pacs_orthanc.post("/instances", synthetic_instance())["ID"]
    body = json.dumps({"Resources": [instance], "Asynchronous": True}).encode()
    jobs = [pacs_orthanc.post("/modalities/silent/store", body)["ID"] for _ in range(2)]
    try:
        deadline = time.monotonic() + 10
        res = None
        while time.monotonic() < deadline:
            res = run_module(pacs_info, auth(pacs_orthanc))
            if res["running_jobs"] >= 1 and res["pending_jobs"] >= 1:
                break
            time.sleep(0.2)
        assert res["_rc"] == 0, res
        assert res["running_jobs"] >= 1
        assert res["pending_jobs"] >= 1
        ids = {j["id"] for j in res["jobs"]}
        assert set(jobs) <= ids
        job = next(j for j in res["jobs"] if j["id"] in jobs)
        assert job["type"] == "DicomModalityStore"
        assert job["state"] in ("Pending", "Running")
        assert isinstance(job["progress"], int)
    finally:
        for job_id in jobs:
            with contextlib.suppress(OSError):
                pacs_orthanc.post(f"/jobs/{job_id}/cancel", b"")


def test_check_mode_reads_too(pacs_orthanc):
    res = run_module(pacs_info, auth(pacs_orthanc, include_jobs=False), check_mode=True)
    assert res["_rc"] == 0, res
    assert res["version"] == "1.10.1"


def test_wrong_password_names_the_options(pacs_orthanc):
    res = run_module(pacs_info, auth(pacs_orthanc, password="wrong"))
    assert res["_rc"] == 1
    assert "401 Unauthorized" in res["msg"]
    assert f"check username ('{ORTHANC_USER}') and password" in res["msg"]
    assert "wrong" not in res["msg"].replace("wrong credentials", "")


def test_missing_credentials(pacs_orthanc):
    res = run_module(pacs_info, {"url": pacs_orthanc.url})
    assert res["_rc"] == 1
    assert "requires authentication; set username and password" in res["msg"]


def test_password_without_username(pacs_orthanc):
    res = run_module(pacs_info, {"url": pacs_orthanc.url, "password": "x"})
    assert res["_rc"] == 1
    assert "password is set but username is not" in res["msg"]


def test_trailing_slash_and_path_prefix(pacs_orthanc):
    res = run_module(pacs_info, auth(pacs_orthanc, url=pacs_orthanc.url + "/", include_jobs=False))
    assert res["_rc"] == 0
    assert res["url"] == pacs_orthanc.url
    res = run_module(pacs_info, auth(pacs_orthanc, url=pacs_orthanc.url + "/nope"))
    assert res["_rc"] == 1
    assert "404 Not Found" in res["msg"]


# ---------------------------------------------------- other real peers


def test_connection_refused():
    url = f"http://127.0.0.1:{free_port()}"
    res = run_module(pacs_info, {"url": url, "timeout": 3})
    assert res["_rc"] == 1
    assert f"connection refused by {url}" in res["msg"]


def test_timeout(scripted_mllp_server):
    # a TCP peer that accepts and never answers
    scripted_mllp_server.responder = lambda req: None
    res = run_module(pacs_info, {"url": f"http://127.0.0.1:{scripted_mllp_server.port}", "timeout": 0.5})
    assert res["_rc"] == 1
    assert "timeout" in res["msg"] or "within 0.5 s" in res["msg"]


class _FakeHandler(http.server.BaseHTTPRequestHandler):
    body = b"{}"
    content_type = "application/json"

    def do_GET(self):  # noqa: N802 - http.server API
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_peer():
    servers = []

    def start(body, content_type="application/json"):
        handler = type("H", (_FakeHandler,), {"body": body, "content_type": content_type})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_non_orthanc_json(http_peer):
    url = http_peer(json.dumps({"status": "ok"}).encode())
    res = run_module(pacs_info, {"url": url})
    assert res["_rc"] == 1
    assert "not like Orthanc (no Version and DatabaseVersion)" in res["msg"]


def test_non_json_answer(http_peer):
    url = http_peer(b"<html>hello</html>", "text/html")
    res = run_module(pacs_info, {"url": url})
    assert res["_rc"] == 1
    assert "did not answer with JSON" in res["msg"]


def test_not_http_at_all(scripted_mllp_server):
    scripted_mllp_server.responder = lambda req: b"\x0bNOT HTTP\x1c\x0d"
    url = f"http://127.0.0.1:{scripted_mllp_server.port}"
    # the scripted server waits for an MLLP end block: send it in the path so it answers
    res = run_module(pacs_info, {"url": url + "/%1C%0D", "timeout": 3})
    assert res["_rc"] == 1
    assert res["msg"]


def test_tls_to_plain_http(http_peer):
    url = http_peer(b"{}").replace("http://", "https://")
    res = run_module(pacs_info, {"url": url, "timeout": 3})
    assert res["_rc"] == 1
    assert "does not speak TLS (https) on this port: use an http:// url" in res["msg"]
    assert "WRONG_VERSION_NUMBER" not in res["msg"]


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("ftp://pacs", "must start with http:// or https://"),
        ("http://", "has no host name"),
        ("http://u:p@pacs:8042", "not in url"),
        ("http://pacs:99999", "not a valid URL"),
        ("http://pacs:8042/?x=1", "without query"),
        ("", "url must be the Orthanc base URL"),
    ],
)
def test_url_validation(url, fragment):
    res = run_module(pacs_info, {"url": url})
    assert res["_rc"] == 1
    assert fragment in res["msg"]
    assert "u:p" not in json.dumps(res)


def test_return_keys_are_documented_and_tested():
    documented = set(yaml.safe_load(pacs_info.RETURN))
    tested = {
        "url", "version", "database_version", "api_version", "name", "dicom_aet", "dicom_port", "system",
        "statistics", "jobs", "pending_jobs", "running_jobs",
    }  # fmt: skip
    assert documented == tested
