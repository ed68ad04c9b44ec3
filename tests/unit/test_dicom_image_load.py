"""dicom_image_load: a real Orthanc, the machine's real DCMTK (findscu, getscu, dcmdump, dcmj2pnm).

What the module says about the image is checked against pydicom's reading of the file that was
stored (Rows, Columns, the pixel values), not against the module's own tools."""

from __future__ import annotations

import array
import io
import os
import sys

import dicom_image_load
import pytest
from dicom_synth import make_instance, synth_uid

pydicom = pytest.importorskip("pydicom")


def store(orthanc, ds) -> None:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    orthanc.rest("POST", "/instances", buf.getvalue())


def study(tag: str, instances: int = 2, size_px: int = 48, blank: bool = False):
    """A synthetic study of its own UIDs; returns (study uid, the first instance)."""
    uids = {"study": synth_uid("image-load", tag), "series": synth_uid("image-load", tag, "se")}
    datasets = []
    for i in range(instances):
        ds = make_instance(90, 90, 0, i, size_px=size_px, uids=dict(uids, sop=synth_uid("image-load", tag, i)))
        if blank:
            ds.PixelData = bytes(len(ds.PixelData))
        datasets.append(ds)
    return uids["study"], datasets


def pixel_values(ds) -> array.array:
    """The stored samples as pydicom reads them (no NumPy here): 8 or 16 bits, signed or not."""
    code = {8: "b", 16: "h"}[ds.BitsAllocated]
    values = array.array(code if ds.PixelRepresentation else code.upper(), bytes(ds.PixelData))
    if sys.byteorder != "little":
        values.byteswap()
    return values


def args(orthanc, **extra):
    base = {"host": orthanc.host, "port": orthanc.dicom_port, "called_ae": orthanc.aet, "calling_ae": orthanc.scu_ae}
    base.update(extra)
    return base


@pytest.fixture(scope="module")
def loaded_study(orthanc):
    uid, datasets = study("ok")
    for ds in datasets:
        store(orthanc, ds)
    return uid, datasets


def test_loads_and_renders_the_study_named_by_its_digest(orthanc, module_runner, loaded_study, tmp_path):
    uid, datasets = loaded_study
    result = module_runner(
        dicom_image_load, args(orthanc, study_digest=dicom_image_load.uid_digest(uid), tmp_dir=str(tmp_path))
    )
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    assert result["study_digest"] == dicom_image_load.uid_digest(uid)
    assert uid not in str(result)  # the evidence names the study by its digest only
    assert result["instances_retrieved"] == len(datasets)
    first = min(datasets, key=lambda d: str(d.SOPInstanceUID))
    pixels = pixel_values(first)
    image = result["image"]
    assert (image["rows"], image["columns"]) == (first.Rows, first.Columns)
    assert (image["height"], image["width"]) == (first.Rows, first.Columns)
    assert len(pixels) == first.Rows * first.Columns
    assert image["format"] == "P5"
    assert image["grey_levels"] > 1 and image["max"] > image["min"]
    # pydicom sees a picture with contrast too: the module's "not blank" is the file's truth.
    assert max(pixels) > min(pixels)
    assert result["removed"] is True
    assert os.listdir(tmp_path) == []


def test_without_a_digest_the_smallest_study_uid_is_loaded(orthanc, module_runner, loaded_study):
    result = module_runner(dicom_image_load, args(orthanc))
    assert not result.get("failed"), result.get("msg")
    listed = sorted(s["MainDicomTags"]["StudyInstanceUID"] for s in orthanc.rest("GET", "/studies?expand"))
    assert result["studies_listed"] == len(listed)
    assert result["study_digest"] == dicom_image_load.uid_digest(listed[0])


def test_a_blank_image_fails(orthanc, module_runner, tmp_path):
    uid, datasets = study("blank", instances=1, blank=True)
    store(orthanc, datasets[0])
    result = module_runner(
        dicom_image_load, args(orthanc, study_digest=dicom_image_load.uid_digest(uid), tmp_dir=str(tmp_path))
    )
    assert result["failed"] and result["reason"] == "blank_image", result
    assert result["image"]["grey_levels"] == 1
    assert result["removed"] is True and os.listdir(tmp_path) == []


def test_a_study_no_longer_there_is_named_by_its_digest(orthanc, module_runner, loaded_study):
    result = module_runner(dicom_image_load, args(orthanc, study_digest="0123456789abcdef"))
    assert result["failed"] and result["reason"] == "study_not_found"
    assert "0123456789abcdef" in result["msg"]


def test_an_ae_title_without_c_get_rights_fails_the_retrieve(orthanc, module_runner, loaded_study, tmp_path):
    uid, _ = loaded_study
    result = module_runner(
        dicom_image_load,
        args(
            orthanc, calling_ae=orthanc.noget_ae, study_digest=dicom_image_load.uid_digest(uid), tmp_dir=str(tmp_path)
        ),
    )
    assert result["failed"] and result["reason"] == "retrieve_failed", result
    assert result["removed"] is True and os.listdir(tmp_path) == []


def test_a_closed_port_fails_the_find(module_runner):
    result = module_runner(
        dicom_image_load, {"host": "127.0.0.1", "port": 9, "called_ae": "PACS", "calling_ae": "WS", "timeout": 3}
    )
    assert result["failed"] and result["reason"] == "find_failed"
    assert "findscu" in result["msg"]


def test_missing_tools_are_named(module_runner, tmp_path):
    result = module_runner(
        dicom_image_load,
        {"host": "127.0.0.1", "port": 104, "called_ae": "PACS", "calling_ae": "WS", "dcmtk_bin": str(tmp_path)},
    )
    assert result["failed"] and result["reason"] == "tool_missing"
    assert f"{tmp_path}/findscu is missing" in result["msg"]


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        ({"port": 0}, "port must be 1..65535"),
        ({"calling_ae": "A" * 17}, "calling_ae must be 1 to 16"),
        ({"study_digest": "ABC"}, "study_digest must be 16 lower-case hex digits"),
        ({"timeout": 0}, "timeout must be at least 1"),
    ],
)
def test_bad_arguments_say_what_to_fix(module_runner, extra, text):
    base = {"host": "127.0.0.1", "port": 104, "called_ae": "PACS", "calling_ae": "WS"}
    result = module_runner(dicom_image_load, dict(base, **extra))
    assert result["failed"] and result["reason"] == "invalid_argument"
    assert text in result["msg"]


def test_parse_pnm_reads_comments_colour_and_refuses_short_pictures():
    grey = b"P5\n# dcmj2pnm\n3 2\n255\n" + bytes([0, 10, 20, 30, 40, 50])
    assert dicom_image_load.parse_pnm(grey) == {
        "format": "P5",
        "width": 3,
        "height": 2,
        "min": 0,
        "max": 50,
        "grey_levels": 6,
    }
    colour = b"P6 1 1 255\n" + bytes([7, 7, 9])
    assert dicom_image_load.parse_pnm(colour)["grey_levels"] == 2
    with pytest.raises(ValueError, match="holds 2 bytes"):
        dicom_image_load.parse_pnm(b"P5\n2 2\n255\n" + bytes(2))
    with pytest.raises(ValueError, match="not a binary"):
        dicom_image_load.parse_pnm(b"P2\n1 1\n255\n0")
