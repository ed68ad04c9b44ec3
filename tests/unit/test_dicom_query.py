"""dicom_query module: C-FIND levels on Orthanc, worklist on wlmscpfs, masking by default."""

from __future__ import annotations

import dicom_query
import pytest
from ansible.module_utils.dicom_client import build_client
from ansible.module_utils.dicom_synth import make_instance

SEED = "query-tests"


@pytest.fixture(scope="module")
def seeded(orthanc):
    """Two studies of patient 7 (2 series x 2 instances) and one of patient 8, stored in Orthanc."""
    client = build_client(orthanc.dicom_args())
    instances = []
    for patient, study in ((7, 0), (7, 1), (8, 2)):
        for series in range(2):
            for inst in range(2):
                ds = make_instance(patient, study, series, inst, size_px=8, seed=SEED)
                client.store(ds)
                instances.append(ds)
    return instances


def args(orthanc, **kw):
    return orthanc.dicom_args(**kw)


def test_patient_level_masked_by_default(orthanc, seeded, module_runner):
    result = module_runner(
        dicom_query, args(orthanc, level="PATIENT", patient_id="SYN-000007", return_identifiers=True)
    )
    assert result["count"] == 1 and result["returned"] == 1
    ident = result["identifiers"][0]
    assert ident["PatientName"] == "***"
    assert ident["PatientID"] == "***"
    assert result["phi_masked"] is True
    assert result["query_model"] == "patient_root"
    assert result["sop_class"] == "1.2.840.10008.5.1.4.1.2.1.1"
    assert "SYN-000007" not in str(result["identifiers"])


def test_study_level_count_and_unmask(orthanc, seeded, module_runner):
    result = module_runner(
        dicom_query,
        args(
            orthanc,
            level="STUDY",
            patient_id="SYN-000007",
            return_identifiers=True,
            unmask_phi=True,
            return_keys=["StudyDescription"],
        ),
    )
    assert result["count"] == 2
    assert result["level"] == "STUDY" and result["query_model"] == "study_root"
    assert result["phi_masked"] is False
    assert {i["PatientID"] for i in result["identifiers"]} == {"SYN-000007"}
    assert all(i["StudyDescription"].startswith("SYNTHETIC STUDY") for i in result["identifiers"])
    assert result["status"] == 0
    assert result["latency_ms"] > 0 and "find_ms" in result["timings"]


def test_series_and_image_levels(orthanc, seeded, module_runner):
    study = seeded[0].StudyInstanceUID
    series = module_runner(dicom_query, args(orthanc, level="SERIES", study_instance_uid=study, modality="CT"))
    assert series["count"] == 2 and series["identifiers"] == [] and series["returned"] == 0
    image = module_runner(
        dicom_query,
        args(orthanc, level="IMAGE", study_instance_uid=study, series_instance_uid=seeded[0].SeriesInstanceUID),
    )
    assert image["count"] == 2


def test_max_results_truncates(orthanc, seeded, module_runner):
    result = module_runner(
        dicom_query, args(orthanc, level="SERIES", patient_id="SYN-000007", return_identifiers=True, max_results=1)
    )
    assert result["count"] == 4 and result["returned"] == 1 and result["truncated"] is True


def test_worklist_masked(wlmscpfs, module_runner):
    base = {"host": wlmscpfs.host, "port": wlmscpfs.port, "called_ae": wlmscpfs.aet, "level": "WORKLIST"}
    result = module_runner(dicom_query, dict(base, modality="CT", return_identifiers=True))
    assert result["count"] == 2
    assert result["query_model"] == "worklist"
    for ident in result["identifiers"]:
        assert ident["PatientName"] == ident["AccessionNumber"] == ident["PatientBirthDate"] == "***"
        step = ident["ScheduledProcedureStepSequence"][0]
        assert step["Modality"] == "CT"
        assert step["ScheduledProcedureStepStartDate"] == "***"  # a date of the patient's care
    dated = module_runner(dicom_query, dict(base, scheduled_date="20240103"))
    assert dated["count"] == 1
    station = module_runner(dicom_query, dict(base, scheduled_station_ae="CT01", _ansible_check_mode=True))
    assert station["count"] == 2


def test_worklist_wrong_called_ae(wlmscpfs, module_runner):
    """wlmscpfs sends A-ASSOCIATE-RJ and closes the connection at once; now and then pynetdicom handles
    the close before the RJ it has already received (a race in its DUL thread) and the module can only
    say the peer closed without answering. The rejection is asked for up to three times; every answer
    must fail, and one of them must be read as the rejection it is."""
    reasons = []
    for _ in range(3):
        result = module_runner(
            dicom_query, {"host": wlmscpfs.host, "port": wlmscpfs.port, "called_ae": "NOTWL", "level": "WORKLIST"}
        )
        assert result["failed"] and result["reason"] in ("association_rejected", "aborted"), result
        reasons.append(result["reason"])
        if result["reason"] == "association_rejected":
            assert "NOTWL" in result["msg"] or "called" in result["msg"].lower(), result["msg"]
            break
    assert reasons[-1] == "association_rejected", reasons


def test_not_allowed_calling_ae(orthanc, module_runner):
    result = module_runner(dicom_query, args(orthanc, calling_ae="STRANGER"))
    assert result["failed"] and result["reason"] in ("aborted", "dimse_failure")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"level": "PATIENT", "query_model": "study_root"}, "needs query_model patient_root"),
        ({"level": "PATIENT", "modality": "CT"}, "modality does not apply at level PATIENT"),
        ({"study_instance_uid": "1.02.3"}, "study_instance_uid is not a DICOM UID"),
        ({"study_date": "2024-01-01"}, "study_date must be YYYYMMDD"),
        ({"level": "WORKLIST", "scheduled_date": "tomorrow"}, "scheduled_date must be YYYYMMDD"),
        ({"return_keys": ["NotAKeyword"]}, "'NotAKeyword' is not a DICOM attribute keyword"),
        ({"return_keys": ["QueryRetrieveLevel"]}, "QueryRetrieveLevel is set by the module itself (use the level"),
        ({"return_keys": ["PixelData"]}, "PixelData holds bulk data (VR OB or OW), which a C-FIND cannot return"),
        ({"return_keys": ["EncapsulatedDocument"]}, "EncapsulatedDocument holds bulk data"),
        ({"return_keys": ["TransferSyntaxUID"]}, "TransferSyntaxUID is a command, file meta or item attribute"),
        ({"return_keys": ["AffectedSOPClassUID"]}, "AffectedSOPClassUID is a command, file meta or item attribute"),
        ({"max_results": 0}, "max_results must be between 1 and 10000"),
        ({"modality": "ct!"}, "modality must be"),
    ],
)
def test_query_validation(closed_port, module_runner, extra, fragment):
    base = {"host": "127.0.0.1", "port": closed_port, "called_ae": "X"}
    base.update(extra)
    result = module_runner(dicom_query, base)
    assert result["failed"] and result["reason"] == "invalid_argument"
    assert fragment in result["msg"]


def test_every_name_date_and_free_text_masked(orthanc, seeded, module_runner):
    """Masking is by kind of value, not by a fixed list of patient attributes, and leaks no shape."""
    keys = ["ReferringPhysicianName", "StudyDescription", "InstitutionName", "IssuerOfPatientID", "PatientSex"]
    result = module_runner(
        dicom_query, args(orthanc, level="STUDY", patient_id="SYN-000007", return_identifiers=True, return_keys=keys)
    )
    assert result["count"] == 2 and result["phi_masked"] is True
    for ident in result["identifiers"]:
        for keyword in ("PatientName", "PatientID", "AccessionNumber", "StudyDate", "StudyTime", "StudyID",
                        "ReferringPhysicianName", "StudyDescription", "InstitutionName", "IssuerOfPatientID"):
            assert ident[keyword] == "***", keyword
        assert ident["StudyInstanceUID"] in {ds.StudyInstanceUID for ds in seeded}  # UIDs stay usable
        assert ident["PatientSex"] in ("F", "M", "O")
    text = str(result)
    for clear in ("SYNTH", "SYN-000007", "SYNA", "SYNTHETIC STUDY", "REFERRER", "2024"):
        assert clear not in text, clear


def test_return_key_of_ambiguous_vr_is_asked(orthanc, seeded, module_runner):
    """A key whose VR depends on the dataset (US or SS) still encodes; refusals are only for bulk data."""
    result = module_runner(
        dicom_query,
        args(orthanc, level="IMAGE", study_instance_uid=seeded[0].StudyInstanceUID,
             return_keys=["LargestImagePixelValue", "ReferencedSeriesSequence"]),
    )
    assert not result.get("failed"), result.get("msg")
    assert result["count"] == 4


def test_return_key_does_not_replace_the_level(orthanc, seeded, module_runner):
    """return_keys naming a filter's attribute leaves the filter in place (the filter wins)."""
    result = module_runner(
        dicom_query, args(orthanc, level="STUDY", patient_id="SYN-000008", return_keys=["PatientID", "Modality"])
    )
    assert result["count"] == 1
