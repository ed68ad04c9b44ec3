"""dicom_query filters at every level they claim, compared with DCMTK findscu on the same peer.

Each case runs the same query twice against the same Orthanc (or DCMTK wlmscpfs for WORKLIST):
once through the module and once through ``/usr/bin/findscu`` with the matching keys, and
compares both counts with the count the seeded datasets give. A filter the module dropped (as
``modality`` once was at SERIES and IMAGE level) shows as a count above the expected one.
"""

from __future__ import annotations

import re
import subprocess

import dicom_query
import pytest
from ansible.module_utils.dicom_client import build_client
from ansible.module_utils.dicom_synth import make_instance
from support import SCU_AE, dcmtk

SEED = "query-filter-tests"
PATIENT = 9  # patient 9 has study 0 (CT only) and study 1 (a CT series and an OT series)
LAYOUT = {(0, 0): ("CT", 2), (1, 0): ("CT", 2), (1, 1): ("OT", 1)}  # (study, series) -> modality, instances

# option -> DICOM keyword
KEYWORDS = {option: keyword for option, (keyword, _levels) in dicom_query.FILTERS.items()}
LEVEL_UID = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


@pytest.fixture(scope="module")
def mixed(orthanc):
    """Patient 9's two studies (5 instances, one OT series) stored in the session's Orthanc."""
    client = build_client(orthanc.dicom_args())
    instances = []
    for (study, series), (modality, count) in LAYOUT.items():
        for inst in range(count):
            ds = make_instance(PATIENT, study, series, inst, size_px=8, seed=SEED, modality=modality)
            client.store(ds)
            instances.append(ds)
    return instances


def filter_value(option: str, target):
    """The value of a filter that selects the target instance's entity (its OT series for modality)."""
    if option == "modality":
        return target.Modality
    return str(getattr(target, KEYWORDS[option]))


def expected_count(instances, level: str, option: str, value: str) -> int:
    """Ground truth from the seeded datasets: distinct entities at the level that match."""
    keyword = "Modality" if option == "modality" else KEYWORDS[option]
    matching = [ds for ds in instances if str(getattr(ds, keyword)) == value]
    if level == "STUDY" and option == "modality":  # ModalitiesInStudy: a study with any such series
        studies = {ds.StudyInstanceUID for ds in matching}
        return len(studies)
    return len({str(getattr(ds, LEVEL_UID[level])) for ds in matching})


def findscu_count(peer_host, peer_port, called_ae, keys: dict, model_flag: str) -> int:
    """Matches of a C-FIND sent by DCMTK findscu with the given keys."""
    cmd = [dcmtk("findscu"), "-v", model_flag, "-aet", SCU_AE, "-aec", called_ae, peer_host, str(peer_port)]
    for keyword, value in keys.items():
        cmd += ["-k", f"{keyword}={value}" if value is not None else keyword]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    text = out.stdout + out.stderr
    assert "Received Final Find Response (Success)" in text, text[-2000:]
    return len(re.findall(r"Find Response: \d+ \(Pending\)", text))


CASES = [
    (level, option)
    for option, (_keyword, levels) in dicom_query.FILTERS.items()
    for level in levels
    if level not in ("PATIENT", "WORKLIST")  # PATIENT and WORKLIST cases are below
]


@pytest.mark.parametrize(("level", "option"), CASES, ids=[f"{lv}-{op}" for lv, op in CASES])
def test_filter_at_level_matches_findscu(orthanc, mixed, module_runner, level, option):
    target = mixed[-1]  # the OT instance: its series differs from the others in modality and UID
    value = filter_value(option, target)
    expected = expected_count(mixed, level, option, value)
    scope = {"patient_id": f"SYN-{PATIENT:06d}"} if option != "patient_id" else {}
    result = module_runner(dicom_query, orthanc.dicom_args(level=level, **scope, **{option: value}))
    assert not result.get("failed"), result.get("msg")

    keys = {"QueryRetrieveLevel": level, LEVEL_UID[level]: None}
    keys.update({"PatientID": f"SYN-{PATIENT:06d}"} if scope else {})
    keyword = KEYWORDS[option] or ("ModalitiesInStudy" if level == "STUDY" else "Modality")
    keys[keyword] = value
    theirs = findscu_count(orthanc.host, orthanc.dicom_port, orthanc.aet, keys, "-S")
    assert (result["count"], theirs) == (expected, expected), f"module {result['count']}, findscu {theirs}"


def test_series_modality_filter_counts_one_series(orthanc, mixed, module_runner):
    """The issue's case: a SERIES query with a modality gave every series of the patient."""
    result = module_runner(
        dicom_query, orthanc.dicom_args(level="SERIES", patient_id=f"SYN-{PATIENT:06d}", modality="OT")
    )
    assert result["count"] == 1
    image = module_runner(
        dicom_query, orthanc.dicom_args(level="IMAGE", patient_id=f"SYN-{PATIENT:06d}", modality="CT")
    )
    assert image["count"] == 4


@pytest.mark.parametrize("option", ["patient_id", "patient_name"])
def test_patient_level_filters_match_findscu(orthanc, mixed, module_runner, option):
    value = filter_value(option, mixed[0])
    result = module_runner(dicom_query, orthanc.dicom_args(level="PATIENT", **{option: value}))
    theirs = findscu_count(
        orthanc.host, orthanc.dicom_port, orthanc.aet, {"QueryRetrieveLevel": "PATIENT", KEYWORDS[option]: value}, "-P"
    )
    assert (result["count"], theirs) == (1, 1)


WORKLIST_FILTERS = [
    ("modality", "CT", "Modality"),
    ("scheduled_date", "20240103", "ScheduledProcedureStepStartDate"),
    ("scheduled_station_ae", "CT01", "ScheduledStationAETitle"),
]


@pytest.mark.parametrize(("option", "value", "keyword"), WORKLIST_FILTERS, ids=[c[0] for c in WORKLIST_FILTERS])
def test_worklist_filters_match_findscu(wlmscpfs, module_runner, option, value, keyword):
    args = {"host": wlmscpfs.host, "port": wlmscpfs.port, "called_ae": wlmscpfs.aet, "level": "WORKLIST"}
    result = module_runner(dicom_query, dict(args, **{option: value}))
    keys = {
        "PatientID": None,
        f"ScheduledProcedureStepSequence[0].{keyword}": value,
        "ScheduledProcedureStepSequence[0].Modality" if keyword != "Modality" else "AccessionNumber": None,
    }
    theirs = findscu_count(wlmscpfs.host, wlmscpfs.port, wlmscpfs.aet, keys, "-W")
    everything = findscu_count(wlmscpfs.host, wlmscpfs.port, wlmscpfs.aet, {"PatientID": None}, "-W")
    assert result["count"] == theirs
    assert 0 < theirs < everything, (theirs, everything)  # the filter filtered
