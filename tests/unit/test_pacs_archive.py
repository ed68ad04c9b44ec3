"""pacs_archive: inventory, read-back, export and re-delivery against a real Orthanc.

Instances are stored by the project's synthetic modality over DICOM (C-STORE); what the module lists
is checked against DCMTK's findscu on the same Orthanc, and what it re-delivers is checked by a
second, freshly started Orthanc (a PACS restored from a snapshot that lacks the new instances).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pacs_archive
import pytest
from support import REPO, dcmtk

sys.path.insert(0, str(REPO / "tools"))

from modality_sender import Sender, acknowledged  # noqa: E402


def rest(orthanc, **extra):
    args = {"url": orthanc.url, "username": orthanc.user, "password": orthanc.password, "timeout": 10}
    args.update(extra)
    return args


def send(orthanc, tmp_path, count, name="sent.jsonl"):
    out = tmp_path / name
    Sender(orthanc.host, orthanc.dicom_port, orthanc.aet, orthanc.scu_ae, out, interval=0.01,
           max_count=count, timeout=5).run()
    acks = acknowledged(out)
    assert len(acks) == count
    return [a["sop_instance_uid"] for a in acks]


def findscu_sop_uids(orthanc, study_uid):
    """SOP Instance UIDs of a study by DCMTK findscu (IMAGE level), the independent witness."""
    tool = dcmtk("findscu")
    assert tool, "DCMTK findscu missing: run make deps"
    proc = subprocess.run([tool, "-S", "-aet", orthanc.scu_ae, "-aec", orthanc.aet, "-k", "QueryRetrieveLevel=IMAGE",
                           "-k", f"StudyInstanceUID={study_uid}", "-k", "SeriesInstanceUID", "-k", "SOPInstanceUID",
                           orthanc.host, str(orthanc.dicom_port)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    # A UID of odd length travels padded with one NUL (PS3.5 6.2); findscu may print it: not part of the value.
    return {line.split("[", 1)[1].split("]", 1)[0].rstrip("\x00 ") for line in proc.stderr.splitlines()
            if "(0008,0018)" in line and "[" in line}


def test_inventory_lists_what_was_stored_and_agrees_with_findscu(orthanc, module_runner, tmp_path):
    before = module_runner(pacs_archive, rest(orthanc))
    assert not before.get("failed"), before.get("msg")
    sent = send(orthanc, tmp_path, 4)
    after = module_runner(pacs_archive, rest(orthanc, since_change=before["last_change"]))
    assert not after.get("failed"), after.get("msg")
    assert after["instances"] == before["instances"] + 4
    assert set(sent) <= set(after["sop_instance_uids"])
    assert set(after["sop_instance_uids"]) - set(before["sop_instance_uids"]) == set(sent)
    assert [n["sop_instance_uid"] for n in after["new"]] == sent
    assert after["last_change"] > before["last_change"]
    # one stored instance's study, as DCMTK findscu sees it on the same PACS
    study = json.loads(Path(tmp_path / "sent.jsonl").read_text().splitlines()[0])["study_instance_uid"]
    assert findscu_sop_uids(orthanc, study) == {sent[0]}
    assert after["changed"] is False


def test_readback_compares_stored_files_with_their_recorded_md5(orthanc, module_runner, tmp_path):
    send(orthanc, tmp_path, 2)
    result = module_runner(pacs_archive, rest(orthanc, state="readback", sample_size=5))
    assert not result.get("failed"), result.get("msg")
    assert result["checked"] == min(5, result["instances"]) and result["mismatched"] == []


def test_readback_finds_a_stored_file_changed_on_disk(orthanc, module_runner, tmp_path):
    sop = send(orthanc, tmp_path, 1)[0]
    instance = [r for r in orthanc.rest("POST", "/tools/lookup", sop) if r["Type"] == "Instance"][0]["ID"]
    uuid = orthanc.rest("GET", f"/instances/{instance}/attachments/dicom/info")["Uuid"]
    stored = next(p for p in orthanc.storage_dir.rglob(uuid) if p.is_file())
    original = stored.read_bytes()
    try:
        stored.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
        result = module_runner(pacs_archive, rest(orthanc, state="readback", sample_size=100000))
        assert result["failed"] is True
        assert "differ from what the PACS recorded" in result["msg"]
        assert instance in [m["id"] for m in result["mismatched"]]
    finally:
        stored.write_bytes(original)


def test_export_keeps_what_arrived_after_a_position_and_import_redelivers_it(orthanc, empty_orthanc, module_runner,
                                                                              tmp_path):
    mark = module_runner(pacs_archive, rest(orthanc))["last_change"]
    sent = send(orthanc, tmp_path, 3)
    dest = tmp_path / "kept"
    exported = module_runner(pacs_archive, rest(orthanc, state="export", since_change=mark, dest=str(dest)))
    assert not exported.get("failed"), exported.get("msg")
    assert [e["sop_instance_uid"] for e in exported["exported"]] == sent
    manifest = json.loads((dest / "manifest.json").read_text())
    for entry in manifest["instances"]:
        assert hashlib.sha256((dest / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    # export refuses to write into a directory that holds files
    again = module_runner(pacs_archive, rest(orthanc, state="export", since_change=mark, dest=str(dest)))
    assert again["failed"] is True and "not an empty directory" in again["msg"]

    # a PACS restored from before `mark` lacks them: a second, empty Orthanc plays it
    restored = empty_orthanc
    dry = module_runner(pacs_archive, rest(restored, state="import", src=str(dest)), check_mode=True)
    assert [d["status"] for d in dry["delivered"]] == ["would store"] * 3 and dry["changed"] is False
    assert restored.rest("GET", "/statistics")["CountInstances"] == 0
    imported = module_runner(pacs_archive, rest(restored, state="import", src=str(dest)))
    assert not imported.get("failed"), imported.get("msg")
    assert [d["sop_instance_uid"] for d in imported["delivered"]] == sent
    assert imported["changed"] is True and imported["not_delivered"] == []
    twice = module_runner(pacs_archive, rest(restored, state="import", src=str(dest)))
    assert {d["status"] for d in twice["delivered"]} == {"AlreadyStored"} and twice["changed"] is False
    after = module_runner(pacs_archive, rest(restored))
    assert set(after["sop_instance_uids"]) == set(sent)


def test_import_says_loudly_what_it_could_not_redeliver(orthanc, module_runner, tmp_path):
    mark = module_runner(pacs_archive, rest(orthanc))["last_change"]
    send(orthanc, tmp_path, 2)
    dest = tmp_path / "kept"
    module_runner(pacs_archive, rest(orthanc, state="export", since_change=mark, dest=str(dest)))
    manifest = json.loads((dest / "manifest.json").read_text())
    broken = dest / manifest["instances"][0]["file"]
    broken.write_bytes(broken.read_bytes() + b"tampered")
    result = module_runner(pacs_archive, rest(orthanc, state="import", src=str(dest)))
    assert result["failed"] is True
    assert "1 instance(s) could NOT be re-delivered; they are kept in " + str(dest) in result["msg"]
    assert result["not_delivered"][0]["sop_instance_uid"] == manifest["instances"][0]["sop_instance_uid"]
    assert len(result["delivered"]) == 1


@pytest.mark.parametrize(("args", "words"), [
    ({"state": "export"}, "state=export needs since_change"),
    ({"state": "import"}, "state=import needs src"),
    ({"state": "import", "src": "/nonexistent", "workers": 0}, "workers must be 1 to 16, got 0"),
    ({"state": "import", "src": "/nonexistent", "workers": 17}, "workers must be 1 to 16, got 17"),
    ({"since_change": -1}, "since_change must be 0 or more"),
    ({"state": "readback", "sample_size": 0}, "sample_size must be 1 to 100000"),
    ({"timeout": 0}, "timeout must be a number of seconds greater than 0"),
    ({"username": None}, "password is set but username is not"),
])
def test_bad_arguments_say_what_to_fix(orthanc, module_runner, args, words):
    result = module_runner(pacs_archive, rest(orthanc, **args))
    assert result["failed"] is True and words in result["msg"]


def test_wrong_password_is_named(orthanc, module_runner):
    result = module_runner(pacs_archive, rest(orthanc, password="not-the-password"))
    assert result["failed"] is True and "401 Unauthorized: wrong credentials" in result["msg"]


def test_stored_files_newer_than_a_mark_are_described_and_redelivered(orthanc, empty_orthanc, module_runner,
                                                                       tmp_path):
    """The path for a PACS whose API no longer answers: its stored files written after a marker."""
    import shutil
    import time
    import zlib

    marker = tmp_path / "mark"
    marker.write_text("mark")
    time.sleep(1.1)  # file times have whole-second granularity on some file systems
    sent = send(orthanc, tmp_path, 3)
    files = tmp_path / "kept" / "files"
    for path in orthanc.storage_dir.rglob("*"):
        if path.is_file() and not path.name.startswith("index") and path.stat().st_mtime > marker.stat().st_mtime:
            target = files / path.relative_to(orthanc.storage_dir)  # the storage layout, as tar keeps it
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    # one stored file as Orthanc's StorageCompression writes it: 8 bytes of size, then zlib
    first = next(p for p in sorted(files.rglob("*")) if p.is_file())
    plain = first.read_bytes()
    first.write_bytes(len(plain).to_bytes(8, "little") + zlib.compress(plain))
    (files / "not-dicom").write_bytes(b"\x00" * 300)
    described = module_runner(pacs_archive, rest(orthanc, state="describe", src=str(files),
                                                 dest=str(tmp_path / "kept")))
    assert not described.get("failed"), described.get("msg")
    assert sorted(e["sop_instance_uid"] for e in described["exported"]) == sorted(sent)
    assert [u["file"] for u in described["unreadable"]] == ["not-dicom"]
    imported = module_runner(pacs_archive, rest(empty_orthanc, state="import", src=str(tmp_path / "kept")))
    assert not imported.get("failed"), imported.get("msg")
    assert sorted(d["sop_instance_uid"] for d in imported["delivered"]) == sorted(sent)
