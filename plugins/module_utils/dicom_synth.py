# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Synthetic DICOM instances for seeding labs and for round-trip checks.

Nothing here is, or is derived from, real patient data. Every instance is
obviously synthetic: patient names ``SYNTH^PATIENT^0003``, patient IDs
``SYN-000003``, institution ``SYNTHETIC LAB``, and ``PatientIdentityRemoved``
set to ``YES``.

UIDs are deterministic: they live under the ``2.25`` root (UUID-derived UIDs,
ISO/IEC 9834-8, no registration needed) and are computed as UUIDv5 values of a
fixed project namespace, the ``seed`` and the indices. Re-running the generator
with the same arguments gives the same Study/Series/SOP Instance UIDs, so a
re-seed of the lab is idempotent.

Public API:

* ``make_instance(patient_index, study_index, series_index, instance_index, *, size_px=64, seed=...)``
* ``generate_studies(out_dir, studies=20, series=3, instances=10, size_px=64, varied=False)``; with
  ``varied`` the studies cycle through ``VARIED_MODALITIES`` and their series through
  ``VARIED_TRANSFER_SYNTAXES`` (uncompressed, deflated and RLE-compressed), as a real archive mixes them
* ``make_canary_instance()`` -- one instance with fresh (random) UIDs.
* ``dataset_digest(ds)`` / ``pixel_digest(ds)`` -- sha256 helpers used by the
  round trip to compare what was sent with what came back.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import random
import struct
import uuid
from io import BytesIO

try:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        ComputedRadiographyImageStorage,
        CTImageStorage,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        MRImageStorage,
        RLELossless,
        SecondaryCaptureImageStorage,
        UltrasoundImageStorage,
    )

    HAS_PYDICOM = True
    PYDICOM_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only without pydicom
    HAS_PYDICOM = False
    PYDICOM_IMPORT_ERROR = exc

#: Namespace for all synthetic UIDs of this project (UUIDv5 of a fixed URN).
SYNTH_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:clinical-upgrade:synthetic-dicom")
#: UID root: UUID-derived UIDs (ISO/IEC 9834-8 / DICOM PS3.5 B.2).
UID_ROOT = "2.25."
#: Default seed; change it to get a disjoint, still deterministic, data set.
DEFAULT_SEED = "clinical-upgrade-lab"
#: Synthetic-data markers (also used by tests to assert nothing real leaks in).
SYNTH_NAME_PREFIX = "SYNTH^PATIENT^"
SYNTH_ID_PREFIX = "SYN-"
INSTITUTION = "SYNTHETIC LAB"
MANIFEST_NAME = "manifest.json"

_BASE_DATE = datetime.date(2020, 1, 6)
_MODALITY_SOP_CLASS = {
    "CT": "CTImageStorage",
    "MR": "MRImageStorage",
    "CR": "ComputedRadiographyImageStorage",
    "US": "UltrasoundImageStorage",
    "OT": "SecondaryCaptureImageStorage",
}
#: What a varied archive cycles through: study s has modality VARIED_MODALITIES[s % 5], and its
#: series e is written in VARIED_TRANSFER_SYNTAXES[(s + e) % 4].
VARIED_MODALITIES = ("CT", "MR", "CR", "US", "OT")
#: Transfer syntaxes the generator writes: explicit and implicit VR little endian, deflated, and RLE
#: Lossless (encapsulated, compressed pixel data), by the names DICOM gives them.
TRANSFER_SYNTAXES = {
    "explicit": "1.2.840.10008.1.2.1",
    "implicit": "1.2.840.10008.1.2",
    "deflated": "1.2.840.10008.1.2.1.99",
    "rle": "1.2.840.10008.1.2.5",
}
VARIED_TRANSFER_SYNTAXES = ("explicit", "rle", "implicit", "deflated")


def _require_pydicom() -> None:
    if not HAS_PYDICOM:
        raise ImportError(f"pydicom is required for dicom_synth: {PYDICOM_IMPORT_ERROR}")


def synth_uid(*parts: object, seed: str = DEFAULT_SEED) -> str:
    """Deterministic ``2.25.<uuid-int>`` UID from the seed and the given parts."""
    name = "/".join([str(seed)] + [str(p) for p in parts])
    return UID_ROOT + str(uuid.uuid5(SYNTH_NAMESPACE, name).int)


def fresh_uid() -> str:
    """A new random ``2.25.<uuid4-int>`` UID (used by the canary instance)."""
    return UID_ROOT + str(uuid.uuid4().int)


def patient_name(patient_index: int) -> str:
    return f"{SYNTH_NAME_PREFIX}{patient_index:04d}"


def patient_id(patient_index: int) -> str:
    return f"{SYNTH_ID_PREFIX}{patient_index:06d}"


def _pixel_bytes(size_px: int, rng_seed: str) -> bytes:
    """Deterministic 16-bit MONOCHROME2 image: a gradient plus a seeded pattern."""
    rng = random.Random(rng_seed)  # noqa: S311 - synthetic pixels, not security
    offset = rng.randrange(0, 1024)
    stripe = rng.randrange(2, 9)
    values = []
    for y in range(size_px):
        row_base = (y * 4095) // max(size_px - 1, 1)
        for x in range(size_px):
            v = (row_base + offset + (x // stripe) * 37) % 4096
            values.append(v)
    return struct.pack(f"<{len(values)}H", *values)


def _validate_indices(**indices: int) -> None:
    for name, value in indices.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def make_instance(
    patient_index: int,
    study_index: int,
    series_index: int,
    instance_index: int,
    *,
    size_px: int = 64,
    seed: str = DEFAULT_SEED,
    modality: str = "CT",
    uids: dict | None = None,
    transfer_syntax: str = "explicit",
) -> Dataset:
    """Build one synthetic instance of ``modality`` (a key of _MODALITY_SOP_CLASS: CT, MR, CR, US,
    or OT for Secondary Capture) in ``transfer_syntax`` (a key of TRANSFER_SYNTAXES).

    The same arguments always give the same UIDs and pixel data. ``uids`` may
    override ``study``, ``series`` and ``sop`` UIDs (used by ``make_canary_instance``).
    """
    _require_pydicom()
    _validate_indices(
        patient_index=patient_index,
        study_index=study_index,
        series_index=series_index,
        instance_index=instance_index,
    )
    if not isinstance(size_px, int) or not 1 <= size_px <= 4096:
        raise ValueError(f"size_px must be an integer between 1 and 4096, got {size_px!r}")
    modality = modality.upper()
    if modality not in _MODALITY_SOP_CLASS:
        choices = ", ".join(sorted(_MODALITY_SOP_CLASS))
        raise ValueError(f"modality must be one of {choices}, got {modality!r}")
    if transfer_syntax not in TRANSFER_SYNTAXES:
        choices = ", ".join(sorted(TRANSFER_SYNTAXES))
        raise ValueError(f"transfer_syntax must be one of {choices}, got {transfer_syntax!r}")

    uids = dict(uids or {})
    study_uid = uids.get("study") or synth_uid("study", patient_index, study_index, seed=seed)
    series_uid = uids.get("series") or synth_uid("series", patient_index, study_index, series_index, seed=seed)
    sop_uid = uids.get("sop") or synth_uid(
        "instance", patient_index, study_index, series_index, instance_index, seed=seed
    )
    sop_class = {
        "CT": CTImageStorage,
        "MR": MRImageStorage,
        "CR": ComputedRadiographyImageStorage,
        "US": UltrasoundImageStorage,
        "OT": SecondaryCaptureImageStorage,
    }[modality]

    study_date = (_BASE_DATE + datetime.timedelta(days=study_index)).strftime("%Y%m%d")
    birth_date = datetime.date(1950 + patient_index % 50, 1 + patient_index % 12, 1 + patient_index % 28)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "CLINUPG_SYNTH"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY"] if modality == "OT" else ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = f"{8 + study_index % 10:02d}{(series_index * 7) % 60:02d}00"
    ds.SeriesTime = ds.StudyTime
    ds.ContentTime = ds.StudyTime
    ds.AccessionNumber = f"SYNA{patient_index % 1000000:06d}{study_index % 100:02d}"
    ds.Modality = modality
    if modality == "OT":
        ds.ConversionType = "SYN"
    ds.Manufacturer = "clinical-upgrade synthetic generator"
    ds.InstitutionName = INSTITUTION
    ds.ReferringPhysicianName = "SYNTH^REFERRER"
    ds.StudyDescription = f"SYNTHETIC STUDY {study_index}"
    ds.SeriesDescription = f"SYNTHETIC SERIES {series_index}"
    ds.PatientName = patient_name(patient_index)
    ds.PatientID = patient_id(patient_index)
    ds.IssuerOfPatientID = "SYNTHETIC"
    ds.PatientBirthDate = birth_date.strftime("%Y%m%d")
    ds.PatientSex = "OFM"[patient_index % 3]
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "SYNTHETIC - generated by clinical-upgrade, no real patient"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f"SYN{study_index}"
    ds.SeriesNumber = series_index + 1
    ds.InstanceNumber = instance_index + 1
    ds.PatientOrientation = ""
    if modality == "CT":
        ds.KVP = "120"
        ds.SliceThickness = "1.0"
        ds.ImagePositionPatient = [0, 0, float(instance_index)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = uids.get("frame") or synth_uid("for", patient_index, study_index, seed=seed)
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = float(instance_index)
        ds.PixelSpacing = [0.5, 0.5]
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
    elif modality == "MR":
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.SliceThickness = "3.0"
        ds.RepetitionTime = "500"
        ds.EchoTime = "15"
        ds.EchoTrainLength = "1"
        ds.MagneticFieldStrength = "1.5"
        ds.ImagePositionPatient = [0, 0, 3.0 * instance_index]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = uids.get("frame") or synth_uid("for", patient_index, study_index, seed=seed)
        ds.PositionReferenceIndicator = ""
        ds.PixelSpacing = [1.0, 1.0]
    elif modality == "CR":
        ds.BodyPartExamined = "CHEST"
        ds.ViewPosition = "PA"
        ds.ImagerPixelSpacing = [0.2, 0.2]
    elif modality == "US":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size_px
    ds.Columns = size_px
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = _pixel_bytes(size_px, f"{seed}/px/{patient_index}/{study_index}/{series_index}/{instance_index}")
    if transfer_syntax == "rle":
        # Sets the transfer syntax and encapsulates the pixels; the SOP Instance UID stays the generator's.
        ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    else:
        meta.TransferSyntaxUID = {
            "explicit": ExplicitVRLittleEndian,
            "implicit": ImplicitVRLittleEndian,
            "deflated": DeflatedExplicitVRLittleEndian,
        }[transfer_syntax]
    return ds


def make_canary_instance(*, size_px: int = 16, modality: str = "OT") -> Dataset:
    """One instance with fresh random UIDs, for a single store/find/get/delete round trip.

    The patient is ``SYNTH^PATIENT^9999`` / ``SYN-999999`` (index 999999 would not
    fit the name format, so the name index is 9999). The SOP Instance UID is new
    on every call so a round trip never collides with seeded or earlier data.
    """
    uids = {"study": fresh_uid(), "series": fresh_uid(), "sop": fresh_uid(), "frame": fresh_uid()}
    ds = make_instance(9999, 0, 0, 0, size_px=size_px, seed="canary", modality=modality, uids=uids)
    ds.PatientID = patient_id(999999)
    ds.StudyDescription = "SYNTHETIC CANARY"
    ds.SeriesDescription = "SYNTHETIC CANARY"
    now = datetime.datetime.now()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AccessionNumber = "SYNCANARY"
    return ds


def dataset_digest(ds: Dataset) -> str:
    """sha256 of the dataset (without file meta) encoded as explicit VR little endian.

    Group 0x0002 and anything a peer may legitimately add in the retired or
    private range are left out so a stored-then-retrieved copy compares equal.
    """
    _require_pydicom()
    copy = Dataset()
    for elem in ds:
        if elem.tag.group == 0x0002 or elem.tag.is_private:
            continue
        copy.add(elem)
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, copy)
    return hashlib.sha256(fp.getvalue()).hexdigest()


def pixel_digest(ds: Dataset) -> str | None:
    """sha256 of the raw PixelData bytes, or None when the dataset has none."""
    data = ds.get("PixelData")
    if data is None:
        return None
    return hashlib.sha256(bytes(data)).hexdigest()


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(65536), b""):
            h.update(chunk)
    return h.hexdigest()


def generate_studies(
    out_dir: str,
    studies: int = 20,
    series: int = 3,
    instances: int = 10,
    size_px: int = 64,
    *,
    patients: int | None = None,
    seed: str = DEFAULT_SEED,
    modality: str = "CT",
    varied: bool = False,
) -> dict:
    """Write ``studies x series x instances`` files under ``out_dir`` plus ``manifest.json``.

    With ``varied``, study ``s`` is of modality ``VARIED_MODALITIES[s % 5]`` (``modality`` is not used)
    and its series ``e`` is written in ``VARIED_TRANSFER_SYNTAXES[(s + e) % 4]``.

    Study ``s`` belongs to patient ``s // 2`` unless ``patients`` is given (then
    ``s % patients``), so patient-level queries find patients with two studies.
    Files are laid out as ``<PatientID>/st<NNN>/se<NN>/im<NNNN>.dcm``.

    Returns the manifest: ``{sop_instance_uid: {path, sha256, study_uid,
    series_uid, patient_id}}`` where ``path`` is relative to ``out_dir`` and
    ``sha256`` is that of the file. The same dict is written to
    ``out_dir/manifest.json``. Existing identical files are left untouched.
    """
    _require_pydicom()
    for name, value in (("studies", studies), ("series", series), ("instances", instances)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if patients is not None and (not isinstance(patients, int) or patients < 1):
        raise ValueError(f"patients must be a positive integer, got {patients!r}")

    os.makedirs(out_dir, exist_ok=True)
    manifest: dict[str, dict] = {}
    for st in range(studies):
        p = st % patients if patients else st // 2
        for se in range(series):
            for im in range(instances):
                if varied:
                    ds = make_instance(
                        p, st, se, im, size_px=size_px, seed=seed,
                        modality=VARIED_MODALITIES[st % len(VARIED_MODALITIES)],
                        transfer_syntax=VARIED_TRANSFER_SYNTAXES[(st + se) % len(VARIED_TRANSFER_SYNTAXES)],
                    )  # fmt: skip
                else:
                    ds = make_instance(p, st, se, im, size_px=size_px, seed=seed, modality=modality)
                rel = os.path.join(ds.PatientID, f"st{st:03d}", f"se{se:02d}", f"im{im:04d}.dcm")
                path = os.path.join(out_dir, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                buf = BytesIO()
                ds.save_as(buf, enforce_file_format=True)
                data = buf.getvalue()
                digest = hashlib.sha256(data).hexdigest()
                if not (os.path.exists(path) and _sha256_file(path) == digest):
                    # A temporary name of this process's own: two runs may generate the same seed at once
                    # (Molecule's lanes); each renames its own copy of the same bytes into place.
                    tmp = f"{path}.{os.getpid()}.tmp"
                    with open(tmp, "wb") as fh:
                        fh.write(data)
                    os.replace(tmp, path)
                manifest[str(ds.SOPInstanceUID)] = {
                    "path": rel,
                    "sha256": digest,
                    "study_uid": str(ds.StudyInstanceUID),
                    "series_uid": str(ds.SeriesInstanceUID),
                    "patient_id": str(ds.PatientID),
                }
    # Written last and renamed into place: a manifest that exists is whole, and so is the seed it lists.
    target = os.path.join(out_dir, MANIFEST_NAME)
    tmp = f"{target}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, target)
    return manifest
