"""dicom_synth: deterministic, obviously synthetic instances and the generator CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pydicom
from ansible.module_utils import dicom_synth
from support import REPO


def test_make_instance_is_deterministic_and_synthetic():
    a = dicom_synth.make_instance(3, 1, 2, 4)
    b = dicom_synth.make_instance(3, 1, 2, 4)
    assert a.SOPInstanceUID == b.SOPInstanceUID
    assert a.PixelData == b.PixelData
    assert dicom_synth.dataset_digest(a) == dicom_synth.dataset_digest(b)
    assert str(a.PatientName) == "SYNTH^PATIENT^0003"
    assert a.PatientID == "SYN-000003"
    assert a.PatientIdentityRemoved == "YES"
    assert a.SOPInstanceUID.startswith("2.25.")
    assert a.Rows == a.Columns == 64
    assert len(a.PixelData) == 64 * 64 * 2


def test_indices_and_seed_change_uids():
    base = dicom_synth.make_instance(0, 0, 0, 0)
    others = [
        dicom_synth.make_instance(1, 0, 0, 0),
        dicom_synth.make_instance(0, 1, 0, 0),
        dicom_synth.make_instance(0, 0, 1, 0),
        dicom_synth.make_instance(0, 0, 0, 1),
        dicom_synth.make_instance(0, 0, 0, 0, seed="other"),
    ]
    assert len({base.SOPInstanceUID, *(o.SOPInstanceUID for o in others)}) == 6
    assert dicom_synth.make_instance(0, 0, 0, 1).StudyInstanceUID == base.StudyInstanceUID
    assert all(len(o.SOPInstanceUID) <= 64 for o in others)


def test_secondary_capture_and_validation():
    ds = dicom_synth.make_instance(0, 0, 0, 0, modality="OT", size_px=8)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    for kwargs in ({"size_px": 0}, {"modality": "XX"}):
        try:
            dicom_synth.make_instance(0, 0, 0, 0, **kwargs)
        except ValueError as exc:
            assert "must" in str(exc)
        else:
            raise AssertionError(f"{kwargs} accepted")


def test_canary_has_fresh_uids():
    a, b = dicom_synth.make_canary_instance(), dicom_synth.make_canary_instance()
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.PatientID == "SYN-999999"
    assert dicom_synth.pixel_digest(a) == dicom_synth.pixel_digest(b)


def test_generate_studies_manifest(tmp_path):
    manifest = dicom_synth.generate_studies(str(tmp_path), studies=3, series=2, instances=2, size_px=8)
    assert len(manifest) == 12
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest
    uid, entry = next(iter(manifest.items()))
    ds = pydicom.dcmread(tmp_path / entry["path"])
    assert ds.SOPInstanceUID == uid
    assert ds.StudyInstanceUID == entry["study_uid"]
    assert {e["patient_id"] for e in manifest.values()} == {"SYN-000000", "SYN-000001"}
    again = dicom_synth.generate_studies(str(tmp_path), studies=3, series=2, instances=2, size_px=8)
    assert again == manifest  # rerun gives the same UIDs and bytes


def test_cli(tmp_path):
    out = tmp_path / "synth"
    cmd = [sys.executable, str(REPO / "tools" / "generate_studies.py"), "--out", str(out)]
    proc = subprocess.run(
        cmd + ["--studies", "2", "--series", "1", "--instances", "2", "--size", "8"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote 4 instances in 2 studies" in proc.stdout
    assert len(json.loads((out / "manifest.json").read_text())) == 4
    bad = subprocess.run(cmd + ["--studies", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "positive integer" in bad.stderr


def test_two_runs_generating_the_same_seed_at_once_both_succeed(tmp_path):
    """Molecule's lanes prepare their PACS at the same time and both generate the lab's seed into one
    directory: each writes its own temporary files, so neither renames a file the other removed."""
    out = tmp_path / "seed"
    cmd = [sys.executable, str(REPO / "tools" / "generate_studies.py"), "--out", str(out),
           "--studies", "10", "--series", "3", "--instances", "10", "--size", "8"]
    for _ in range(1):
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
        results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        assert all(rc == 0 for rc, _ in results), [err[-500:] for _, err in results]
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest) == 300
    assert not list(out.rglob("*.tmp"))


def test_a_writer_never_uses_a_temporary_name_another_writer_could_take(tmp_path, monkeypatch):
    """The race above, made certain: just before each rename another writer takes the shared name
    "<file>.tmp" away (as its own rename would). A writer whose temporary file had that name fails."""
    import os

    replace = os.replace

    def another_writer_renamed_first(src, dst):
        shared = f"{dst}.tmp"
        if os.path.exists(shared):
            os.remove(shared)
        return replace(src, dst)

    monkeypatch.setattr(dicom_synth.os, "replace", another_writer_renamed_first)
    manifest = dicom_synth.generate_studies(str(tmp_path / "seed"), studies=1, series=1, instances=3, size_px=8)
    assert len(manifest) == 3 and not list((tmp_path / "seed").rglob("*.tmp"))


def _dcmdump(path, *tags):
    """What DCMTK's dcmdump (an independent reader) prints for these tags of a file."""
    args = [arg for tag in tags for arg in ("--search", tag)]
    return subprocess.run(
        ["/usr/bin/dcmdump", "--print-all", "-Un", *args, str(path)], capture_output=True, text=True, check=True
    ).stdout


def test_a_varied_archive_mixes_modalities_and_transfer_syntaxes_that_dcmtk_reads(tmp_path):
    manifest = dicom_synth.generate_studies(tmp_path, studies=5, series=4, instances=1, size_px=16, varied=True)
    seen = set()
    for entry in manifest.values():
        dump = _dcmdump(tmp_path / entry["path"], "0002,0010", "0008,0060")
        syntax = dump.split("(0002,0010) UI [")[1].split("]")[0]
        modality = dump.split("(0008,0060) CS [")[1].split("]")[0]
        seen.add((modality, syntax))
    modalities = {m for m, _ in seen}
    syntaxes = {s for _, s in seen}
    assert modalities == set(dicom_synth.VARIED_MODALITIES)
    assert syntaxes == set(dicom_synth.TRANSFER_SYNTAXES.values())
    assert len(seen) == 20  # every modality in every transfer syntax
    # Deterministic like the plain archive: the same UIDs and the same bytes again.
    again = dicom_synth.generate_studies(tmp_path / "again", studies=5, series=4, instances=1, size_px=16, varied=True)
    assert {uid: e["sha256"] for uid, e in again.items()} == {uid: e["sha256"] for uid, e in manifest.items()}


def test_rle_pixel_data_decodes_with_dcmtk_to_the_uncompressed_pixels(tmp_path):
    plain = dicom_synth.make_instance(0, 1, 0, 0, modality="MR", size_px=16)
    rle = dicom_synth.make_instance(0, 1, 0, 0, modality="MR", size_px=16, transfer_syntax="rle")
    assert rle.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
    assert plain.SOPInstanceUID == rle.SOPInstanceUID
    rle.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    # DCMTK's own RLE decoder, not pydicom's: the decompressed file's pixels are the generator's.
    subprocess.run(["/usr/bin/dcmdrle", str(tmp_path / "rle.dcm"), str(tmp_path / "plain.dcm")], check=True)
    assert pydicom.dcmread(tmp_path / "plain.dcm").PixelData == plain.PixelData


def test_an_unknown_transfer_syntax_is_refused_with_the_choices():
    try:
        dicom_synth.make_instance(0, 0, 0, 0, transfer_syntax="jpeg")
    except ValueError as exc:
        assert "deflated, explicit, implicit, rle" in str(exc)
    else:
        raise AssertionError("jpeg accepted")
