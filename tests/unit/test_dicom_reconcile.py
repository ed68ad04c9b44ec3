"""dicom_reconcile: two real Orthanc archives over REST, and Orthanc against DCMTK's dcmqrscp over DICOM.

The archives hold the project's varied synthetic archive (five modalities, four transfer syntaxes, RLE
among them). What the module counts is checked against DCMTK findscu on the same archive, and the
discrepancies it reports are exactly the ones each test made."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import dicom_reconcile
import pydicom
import pytest
from ansible.module_utils import dicom_synth
from ansible.module_utils.archive_reconcile import DicomInventory
from ansible.module_utils.dicom_client import build_client
from conftest import _orthanc_peer
from support import LOOPBACK, SCU_AE, dcmtk, free_port, stop_process, wait_for_port
from support import rest_side as side

STUDIES, SERIES, INSTANCES = 5, 2, 3  # 30 instances


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("varied")
    manifest = dicom_synth.generate_studies(out, STUDIES, SERIES, INSTANCES, size_px=16, varied=True)
    return out, manifest


@pytest.fixture
def two_orthancs(tmp_path_factory, archive):
    """A source holding the archive, and a target holding a byte-for-byte copy of it."""
    source_peers = _orthanc_peer(tmp_path_factory.mktemp("source"))
    target_peers = _orthanc_peer(tmp_path_factory.mktemp("target"))
    source, target = next(source_peers), next(target_peers)
    out, manifest = archive
    for entry in manifest.values():
        data = (out / entry["path"]).read_bytes()
        source.rest("POST", "/instances", data)
        target.rest("POST", "/instances", data)
    yield source, target
    for gen in (source_peers, target_peers):
        with pytest.raises(StopIteration):
            next(gen)


def dicom_side(orthanc):
    return {"host": orthanc.host, "port": orthanc.dicom_port, "called_ae": orthanc.aet, "calling_ae": orthanc.scu_ae,
            "timeout": 10}  # fmt: skip


def instance_id(orthanc, sop_uid):
    return next(r["ID"] for r in orthanc.rest("POST", "/tools/lookup", sop_uid) if r["Type"] == "Instance")


def findscu(host, port, aet, calling, *keys):
    """The values of the last key in each answer of DCMTK findscu (Study Root), the independent witness."""
    proc = subprocess.run(
        [dcmtk("findscu"), "-S", "-aet", calling, "-aec", aet, *[a for k in keys for a in ("-k", k)], host, str(port)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    tag = {"SeriesInstanceUID": "(0020,000e)", "SOPInstanceUID": "(0008,0018)"}[keys[-1]]
    # A UID of odd length travels padded with one NUL (PS3.5 6.2); findscu may print it: not part of the value.
    return {line.split("[", 1)[1].split("]", 1)[0].rstrip("\x00 ") for line in proc.stderr.splitlines()
            if tag in line and "[" in line}  # fmt: skip


def findscu_sop_uids(host, port, aet, calling, study_uids):
    """Every SOP Instance UID of these studies by findscu, series by series (as a strict archive wants)."""
    found = set()
    for study in study_uids:
        for series in findscu(host, port, aet, calling, "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study}",
                              "SeriesInstanceUID"):  # fmt: skip
            found |= findscu(host, port, aet, calling, "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study}",
                             f"SeriesInstanceUID={series}", "SOPInstanceUID")  # fmt: skip
    return found


def test_a_byte_for_byte_copy_reconciles_with_no_discrepancy(two_orthancs, archive, module_runner, tmp_path):
    source, target = two_orthancs
    report = tmp_path / "reconcile.json"
    result = module_runner(dicom_reconcile, {"source": side(source), "target": side(target), "report": str(report),
                                             "max_discrepancy_percent": 0})  # fmt: skip
    assert not result.get("failed"), result.get("msg")
    assert result["method"] == "rest"
    total = STUDIES * SERIES * INSTANCES
    assert result["source"] == result["target"] == {"studies": STUDIES, "series": STUDIES * SERIES, "instances": total}
    assert result["discrepancy_rate"] == 0 and result["passed"]
    assert result["deep_check"]["method"] == "file"
    assert result["deep_check"]["instances_compared"] == total
    assert json.loads(report.read_text())["passed"] is True
    # What the target holds, as DCMTK findscu sees it: the whole archive.
    studies = {e["study_uid"] for e in archive[1].values()}
    assert findscu_sop_uids(LOOPBACK, target.dicom_port, target.aet, SCU_AE, studies) == set(archive[1])


def test_injected_discrepancies_are_found_exactly_and_the_gate_fails(two_orthancs, archive, module_runner):
    source, target = two_orthancs
    out, manifest = archive
    uids = sorted(manifest)
    deleted, altered = uids[:2], uids[5]
    for uid in deleted:
        target.rest("DELETE", f"/instances/{instance_id(target, uid)}")
    # The altered instance: the same UIDs, another content (a changed description), as a faulty copy would leave it.
    ds = pydicom.dcmread(out / manifest[altered]["path"])
    ds.SeriesDescription = "ALTERED IN TRANSIT"
    target.rest("DELETE", f"/instances/{instance_id(target, altered)}")
    altered_path = out.parent / "altered.dcm"
    ds.save_as(altered_path, enforce_file_format=True)
    target.rest("POST", "/instances", altered_path.read_bytes())
    # An extra instance only the target holds.
    extra = dicom_synth.make_canary_instance()
    extra_path = out.parent / "extra.dcm"
    extra.save_as(extra_path, enforce_file_format=True)
    target.rest("POST", "/instances", extra_path.read_bytes())

    result = module_runner(dicom_reconcile, {"source": side(source), "target": side(target)})
    assert result.get("failed"), "the gate passed with 4 discrepancies in 30 instances"
    assert sorted(e["sop_instance_uid"] for e in result["missing"]) == deleted
    assert [e["sop_instance_uid"] for e in result["differing"]] == [altered]
    assert [e["sop_instance_uid"] for e in result["extra"]] == [str(extra.SOPInstanceUID)]
    assert result["misfiled"] == [] and result["unreadable"] == []
    assert result["discrepancy_percent"]["instance_percent"] == round(100 * 4 / 30, 4)
    affected = {manifest[u]["study_uid"] for u in [*deleted, altered]} | {str(extra.StudyInstanceUID)}
    assert result["discrepancies"]["studies_with_discrepancies"] == len(affected)
    assert {e["patient_id"] for e in result["missing"] + result["extra"] + result["differing"]} == {"***"}
    assert "SYN-" not in json.dumps(result)  # no patient ID anywhere in the result
    for uid in [*deleted, altered]:
        assert uid in result["msg"]
    assert "above max_discrepancy_percent 1.0" in result["msg"]
    # The same archives pass a gate that allows them.
    lenient = module_runner(dicom_reconcile, {"source": side(source), "target": side(target),
                                              "max_discrepancy_percent": 100})  # fmt: skip
    assert not lenient.get("failed") and lenient["discrepancies"]["missing_instances"] == 2


def test_a_sample_checks_that_many_studies_and_the_same_seed_gives_the_same_ones(two_orthancs, module_runner):
    source, target = two_orthancs
    args = {"source": side(source), "target": side(target), "sample_size": 2, "sample_seed": "a"}
    first, second = module_runner(dicom_reconcile, args), module_runner(dicom_reconcile, args)
    assert first["deep_check"]["studies_sampled"] == 2
    assert first["deep_check"]["instances_compared"] == 2 * SERIES * INSTANCES
    assert first["deep_check"] == second["deep_check"]
    none = module_runner(dicom_reconcile, {**args, "deep_check": "none"})
    assert none["deep_check"]["instances_compared"] == 0 and none["passed"]


DCMQRSCP_CONFIG = """
NetworkTCPPort  = {port}
MaxPDUSize      = 16384
MaxAssociations = 16
HostTable BEGIN
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
DCMQR  {db}  RW  (200, 1024mb)  ANY
AETable END
"""


@pytest.fixture
def dcmqrscp(tmp_path):
    """DCMTK's dcmqrscp, an archive that is not Orthanc (AE title DCMQR)."""
    db = tmp_path / "dcmqr"
    db.mkdir()
    port = free_port()
    config = tmp_path / "dcmqrscp.cfg"
    config.write_text(DCMQRSCP_CONFIG.format(port=port, db=db))
    proc = subprocess.Popen([dcmtk("dcmqrscp"), "-c", str(config), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for_port(port, proc=proc)
    yield {"host": LOOPBACK, "port": port, "called_ae": "DCMQR", "calling_ae": SCU_AE, "timeout": 10}
    stop_process(proc)


def test_over_dicom_an_orthanc_and_a_dcmqrscp_archive_reconcile_and_the_missing_are_named(
    tmp_path, dcmqrscp, module_runner, tmp_path_factory
):
    # Uncompressed instances: dcmqrscp keeps what it is sent as it is sent, and both sides send them alike.
    manifest = dicom_synth.generate_studies(tmp_path / "plain", 3, 2, 2, size_px=16, modality="MR")
    base = tmp_path_factory.mktemp("dicom-source")
    peers = _orthanc_peer(base)
    source = next(peers)
    try:
        files = sorted(str(tmp_path / "plain" / e["path"]) for e in manifest.values())
        for path in files:
            source.rest("POST", "/instances", Path(path).read_bytes())
        kept = [f for f in files if not f.endswith(("se01/im0001.dcm",))]  # one per study left behind: 3
        subprocess.run([dcmtk("storescu"), "-aec", "DCMQR", "-aet", SCU_AE, LOOPBACK, str(dcmqrscp["port"]), *kept],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        left = sorted(uid for uid, e in manifest.items() if e["path"].endswith("se01/im0001.dcm"))
        result = module_runner(dicom_reconcile, {"source": dicom_side(source), "target": dcmqrscp,
                                                 "max_discrepancy_percent": 100})  # fmt: skip
        assert not result.get("failed"), result.get("msg")
        assert result["method"] == "dicom" and result["deep_check"]["method"] == "dataset"
        assert result["source"] == {"studies": 3, "series": 6, "instances": 12}
        assert result["target"] == {"studies": 3, "series": 6, "instances": 9}
        assert sorted(e["sop_instance_uid"] for e in result["missing"]) == left
        assert len(result["series_counts"]) == 3
        assert result["discrepancies"]["differing_instances"] == 0
        assert result["deep_check"]["instances_compared"] == 9  # every instance both hold, dataset by dataset
        # What reconcile found missing on the non-Orthanc side is what findscu does not find there.
        studies = {e["study_uid"] for e in manifest.values()}
        assert set(manifest) - findscu_sop_uids(LOOPBACK, dcmqrscp["port"], "DCMQR", SCU_AE, studies) == set(left)
    finally:
        stop_process(source.process)
        with pytest.raises(StopIteration):
            next(peers)


def test_over_dicom_every_query_has_an_association_of_its_own_and_finds_what_findscu_finds(tmp_path, dcmqrscp):
    """Reusing an association for the next C-FIND lost an answer now and then under load (an IMAGE query
    answered 1 of 2 instances with a final Success); findscu, an association per query, did not. So every
    query has its own association, released after it: counted here."""
    manifest = dicom_synth.generate_studies(tmp_path / "plain", 3, 2, 2, size_px=16, modality="CT")
    files = sorted(str(tmp_path / "plain" / e["path"]) for e in manifest.values())
    subprocess.run([dcmtk("storescu"), "-aec", "DCMQR", "-aet", SCU_AE, LOOPBACK, str(dcmqrscp["port"]), *files],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    params = {k: dcmqrscp[k] for k in ("host", "port", "called_ae", "calling_ae", "timeout")}
    associations = []

    class Counting:
        def __init__(self):
            self.client = build_client(params)

        def associate(self, *args, **kwargs):
            assoc, rest = self.client.associate(*args, **kwargs)
            associations.append(assoc)
            return assoc, rest

    inventory = DicomInventory(Counting, workers=4)
    found = inventory.inventory()
    inventory.close()
    assert len(associations) == 1 + 3 + 6  # STUDY, SERIES per study, IMAGE per series
    assert all(a.is_released for a in associations)
    studies = {e["study_uid"] for e in manifest.values()}
    assert set(found.where) == findscu_sop_uids(LOOPBACK, dcmqrscp["port"], "DCMQR", SCU_AE, studies) == set(manifest)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"max_discrepancy_percent": 101}, "max_discrepancy_percent must be between 0 and 100"),
        ({"max_discrepancy_percent": -1}, "max_discrepancy_percent must be between 0 and 100"),
        ({"workers": 0}, "workers must be between 1 and 32"),
        ({"method": "rest", "target": {"host": "127.0.0.1", "called_ae": "X"}}, "target.url is needed with method"),
        ({"method": "dicom"}, "source.host and source.called_ae are needed"),
        ({"ignore_attributes": ["NotAKeyword"]}, "neither a DICOM keyword"),
        ({"report": "/nonexistent-dir/r.json"}, "the directory of /nonexistent-dir/r.json does not exist"),
    ],
)
def test_bad_input_is_refused_before_any_request(change, words, module_runner):
    args = {"source": {"url": "http://127.0.0.1:1"}, "target": {"url": "http://127.0.0.1:2"}, **change}
    result = module_runner(dicom_reconcile, args)
    assert result.get("failed") and result["reason"] == "invalid_argument"
    assert words in result["msg"]


def test_an_archive_that_does_not_answer_or_refuses_the_credentials_is_named(orthanc, closed_port, module_runner):
    down = module_runner(dicom_reconcile, {"source": side(orthanc), "target": {"url": f"http://127.0.0.1:{closed_port}"}})
    assert down.get("failed") and "connection refused" in down["msg"] and "target.url" in down["msg"]
    wrong = module_runner(dicom_reconcile, {"source": {**side(orthanc), "password": "wrong-password"},
                                            "target": side(orthanc)})  # fmt: skip
    assert wrong.get("failed") and "401" in wrong["msg"] and "wrong credentials" in wrong["msg"]


def test_an_inventory_read_in_pages_of_two_is_whole(two_orthancs, module_runner, monkeypatch):
    from ansible.module_utils import archive_reconcile

    source, target = two_orthancs
    monkeypatch.setattr(archive_reconcile, "PAGE", 2)
    paged = module_runner(dicom_reconcile, {"source": side(source), "target": side(target), "deep_check": "none"})
    total = STUDIES * SERIES * INSTANCES
    assert paged["source"] == {"studies": STUDIES, "series": STUDIES * SERIES, "instances": total}
    assert paged["discrepancy_rate"] == 0
