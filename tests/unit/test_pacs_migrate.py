"""pacs_migrate: a real Orthanc copied into another, byte for byte, resumed after the controller is killed.

The source holds the project's varied synthetic archive. Every copied file is compared byte for byte with
the source's (sha256 of both files), the reconciliation module checks the whole archive, and DCMTK findscu
on the target sees every instance."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dicom_reconcile
import pacs_migrate
import pydicom
import pytest
from ansible.module_utils import dicom_synth
from conftest import _orthanc_peer
from support import REPO
from support import rest_side as side

STUDIES, SERIES, INSTANCES = 6, 2, 4  # 48 instances


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("varied")
    return out, dicom_synth.generate_studies(out, STUDIES, SERIES, INSTANCES, size_px=16, varied=True)


@pytest.fixture
def pair(tmp_path_factory, archive):
    """A source holding the archive and an empty target."""
    gens = [_orthanc_peer(tmp_path_factory.mktemp(name)) for name in ("source", "target")]
    source, target = (next(g) for g in gens)
    out, manifest = archive
    for entry in manifest.values():
        source.rest("POST", "/instances", (out / entry["path"]).read_bytes())
    yield source, target
    for gen in gens:
        with pytest.raises(StopIteration):
            next(gen)


def files(orthanc):
    """{Orthanc id: sha256 of the stored file} of every instance."""
    out = {}
    for key in orthanc.rest("GET", "/instances"):
        out[key] = hashlib.sha256(raw(orthanc, f"/instances/{key}/file")).hexdigest()
    return out


def raw(orthanc, path):
    req = urllib.request.Request(orthanc.url + path)  # noqa: S310 - loopback test peer
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{orthanc.user}:{orthanc.password}".encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as rsp:  # noqa: S310
        return rsp.read()


@pytest.mark.parametrize("method", ["archive", "instance"])
def test_every_instance_is_copied_byte_for_byte(pair, method, module_runner):
    source, target = pair
    result = module_runner(pacs_migrate, {"source": side(source), "target": side(target), "method": method,
                                          "batch_instances": 10})  # fmt: skip
    assert not result.get("failed"), result.get("msg")
    total = STUDIES * SERIES * INSTANCES
    assert result["to_copy"] == result["copied"] == total and result["failures"] == []
    assert result["changed"] is True
    assert files(target) == files(source)  # the same ids, and the same bytes in every file
    again = module_runner(pacs_migrate, {"source": side(source), "target": side(target), "method": method})
    assert again["to_copy"] == again["copied"] == 0 and again["changed"] is False
    gate = module_runner(dicom_reconcile, {"source": side(source), "target": side(target),
                                           "max_discrepancy_percent": 0})  # fmt: skip
    assert gate["passed"] and gate["deep_check"]["instances_compared"] == total


def test_check_mode_copies_nothing(pair, module_runner):
    source, target = pair
    result = module_runner(pacs_migrate, {"source": side(source), "target": side(target)}, check_mode=True)
    assert result["to_copy"] == STUDIES * SERIES * INSTANCES and result["copied"] == 0
    assert target.rest("GET", "/instances") == []


def test_a_controller_killed_mid_copy_loses_nothing_and_the_rerun_copies_only_the_rest(pair, module_runner, tmp_path):
    source, target = pair
    journal = tmp_path / "journal.jsonl"
    args = {"source": side(source), "target": side(target), "batch_instances": 4, "workers": 1,
            "max_bytes_per_second": 10000, "journal": str(journal)}  # fmt: skip
    # The copy run by Ansible itself, as a site runs it, killed (SIGKILL, no clean-up) after a few batches.
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", "-m", "pacs_migrate", "-a", json.dumps(args)],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 2):
        assert proc.poll() is None, "the copy ended before it could be interrupted"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(target.rest("GET", "/instances"))
    total = STUDIES * SERIES * INSTANCES
    assert 8 <= partial < total
    resumed = module_runner(pacs_migrate, {**args, "max_bytes_per_second": 0})
    assert not resumed.get("failed"), resumed.get("msg")
    assert resumed["to_copy"] == total - partial  # only what the killed run had not stored
    assert files(target) == files(source)


def test_a_differing_instance_is_kept_then_replaced_from_the_source(pair, module_runner, tmp_path, archive):
    source, target = pair
    module_runner(pacs_migrate, {"source": side(source), "target": side(target)})
    key = sorted(target.rest("GET", "/instances"))[3]
    original = raw(target, f"/instances/{key}/file")
    # Alter it on the target: same UIDs, other content.
    ds = pydicom.dcmread(io.BytesIO(original))
    ds.SeriesDescription = "ALTERED"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    target.rest("DELETE", f"/instances/{key}")
    target.rest("POST", "/instances", buf.getvalue())
    gate = module_runner(dicom_reconcile, {"source": side(source), "target": side(target),
                                           "max_discrepancy_percent": 0})  # fmt: skip
    assert [d["orthanc_id"] for d in gate["differing"]] == [key]
    healed = module_runner(pacs_migrate, {"source": side(source), "target": side(target),
                                          "replace": [key], "keep_dir": str(tmp_path / "kept")})  # fmt: skip
    assert not healed.get("failed"), healed.get("msg")
    assert healed["replaced"] == [{"orthanc_id": key, "kept": str(tmp_path / "kept" / f"{key}.dcm"), "copied": True}]
    assert (tmp_path / "kept" / f"{key}.dcm").read_bytes() == buf.getvalue()  # the altered file is kept, not lost
    assert raw(target, f"/instances/{key}/file") == original
    assert module_runner(dicom_reconcile, {"source": side(source), "target": side(target),
                                           "max_discrepancy_percent": 0})["passed"]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"workers": 33}, "workers must be between 1 and 32"),
        ({"batch_instances": 0}, "batch_instances must be between 1 and 10000"),
        ({"replace": ["abc"]}, "keep_dir is required with replace"),
        ({"max_bytes_per_second": -1}, "max_bytes_per_second must be 0"),
        ({"target": {"url": "ftp://x"}}, "target.url must start with http"),
    ],
)
def test_bad_input_is_refused_before_any_request(change, words, module_runner):
    args = {"source": {"url": "http://127.0.0.1:1"}, "target": {"url": "http://127.0.0.1:2"}, **change}
    result = module_runner(pacs_migrate, args)
    assert result.get("failed") and result["reason"] == "invalid_argument" and words in result["msg"]


def test_a_target_that_does_not_answer_is_named_before_any_copy(pair, closed_port, module_runner):
    source, _ = pair
    result = module_runner(pacs_migrate, {"source": side(source), "target": {"url": f"http://127.0.0.1:{closed_port}"}})
    assert result.get("failed") and "connection refused" in result["msg"] and "target.url" in result["msg"]
