"""filter_plugins/clinical.py: AE title validation, PHI masking, verification records."""

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))

from clinical import (  # noqa: E402
    FilterModule,
    ae_title_error,
    archive_record,
    canary_record,
    counts_record,
    mask_phi,
    modality_ae_item,
    pacs_baseline,
    pacs_modality_entry,
    readback_record,
    verify_record,
    version_record,
)


@pytest.mark.parametrize("value", ["PACS1", "A", "ORTHANC_ARCHIVE16", "RAD WS 01"])
def test_valid_ae_titles_have_no_error(value):
    assert ae_title_error(value[:16]) == ""


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("A" * 17, "at most 16"),
        ("PACS\\1", "backslash"),
        ("PACS\n1", "control characters"),
        ("PACS\t1", "control characters"),
        (42, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_invalid_ae_titles_say_what_to_fix(value, words):
    assert words in ae_title_error(value)


@given(st.one_of(st.text(max_size=40), st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2)))
def test_ae_title_error_never_raises(value):
    assert isinstance(ae_title_error(value), str)


def test_modality_ae_item_names_the_entry():
    item = modality_ae_item({"name": "ws1", "aet": "RADWS01"})
    assert item == {"key": "pacs_server_modalities[ws1].aet", "value": "RADWS01"}
    assert modality_ae_item({"aet": None})["value"] is None


def test_mask_phi_keeps_shape_not_value():
    assert mask_phi("SYNTH^PATIENT^0003") == "S****^P******^0***"
    assert mask_phi("SYN-000003") == "S*********"
    assert mask_phi(None) == ""
    assert mask_phi("AB", keep=0) == "**"


@given(st.text(min_size=2, max_size=60))
def test_mask_phi_never_reveals_more_than_first_letters(value):
    masked = mask_phi(value)
    assert len(masked) == len(value)
    visible = [c for c in masked if c not in "*^ ="]
    components = [p for p in value.replace("=", "^").replace(" ", "^").split("^") if p]
    assert len(visible) <= len(components)


def test_verify_record_passed_failed_skipped():
    ok = verify_record({"changed": False, "latency_ms": 3.5, "count": 2, "invocation": {"x": 1}}, "dicom_echo")
    assert ok == {"check": "dicom_echo", "status": "passed", "elapsed_ms": 3.5, "message": "ok",
                  "details": {"latency_ms": 3.5, "count": 2}}
    bad = verify_record({"failed": True, "msg": "association rejected: called AE title not recognised"}, "dicom_echo")
    assert bad["status"] == "failed"
    assert "called AE title" in bad["message"]
    skipped = verify_record({"skipped": True, "false_condition": "dicom_verify_roundtrip | bool"}, "dicom_roundtrip")
    assert skipped["status"] == "skipped"
    assert "dicom_verify_roundtrip" in skipped["message"]


def test_verify_record_count_expectations():
    assert verify_record({"count": 0}, "order_in_worklist", expect_count_min=1)["status"] == "failed"
    assert verify_record({"count": 1}, "order_in_worklist", expect_count_min=1)["status"] == "passed"
    assert verify_record({"count": 1}, "cancelled_order_gone", expect_count_max=0)["status"] == "failed"
    assert verify_record({"count": 0}, "cancelled_order_gone", expect_count_max=0)["status"] == "passed"
    assert "found None" in verify_record({}, "x", expect_count_min=1)["message"]


def test_verify_record_without_a_result_fails():
    record = verify_record(None, "x")
    assert record["status"] == "failed"
    assert record["message"] == "no result was recorded for this check"


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"ae_title_error", "modality_ae_item", "mask_phi", "verify_record",
                                             "pacs_modality_entry", "canary_record", "counts_record",
                                             "version_record", "pacs_baseline", "archive_record",
                                             "readback_record"}


ECHO_OK = {"latency_ms": 3.2}
INFO_OK = {"version": "1.10.1", "database_version": 6,
        "statistics": {"patients": 10, "studies": 20, "series": 60, "instances": 600}}
STUDIES_FIND = {"count": 20, "identifiers": [{"StudyInstanceUID": "1.2.3"}], "truncated": True}
ARCHIVE = {"last_change": 700, "instances": 3, "sop_instance_uids": ["1.2.3.1", "1.2.3.2", "1.2.3.3"]}
CANARY_FIND = {"count": 2, "identifiers": [{"SOPInstanceUID": "1.2.3.1"}, {"SOPInstanceUID": "1.2.3.2"}]}


def test_pacs_baseline_records_counts_and_the_first_study_as_canary():
    found = {"echo": ECHO_OK, "info": INFO_OK, "studies": STUDIES_FIND, "canary": CANARY_FIND, "archive": ARCHIVE}
    out = pacs_baseline(found, host="pacs1",
                        recorded="2026-12-01T00:00:00Z")
    assert out["problems"] == []
    base = out["baseline"]
    assert base["counts"] == {"patients": 10, "studies": 20, "series": 60, "instances": 600, "studies_cfind": 20}
    assert base["canary"] == {"study_instance_uid": "1.2.3", "sop_instance_uids": ["1.2.3.1", "1.2.3.2"],
                              "count": 2, "truncated": False}
    assert base["version"] == "1.10.1" and base["database_version"] == 6 and base["echo_ms"] == 3.2
    assert base["sop_instance_uids"] == ARCHIVE["sop_instance_uids"] and base["last_change"] == 700
    # what compare checks afterwards accepts this baseline as it is
    assert canary_record(CANARY_FIND, base["canary"])["status"] == "passed"
    assert counts_record(INFO_OK, base["counts"])["status"] == "passed"


def test_pacs_baseline_names_every_problem_with_its_fix():
    out = pacs_baseline({"echo": {"failed": True, "msg": "connection refused"},
                         "info": {"failed": True, "msg": "401 Unauthorized"},
                         "studies": {"failed": True, "msg": "association rejected"},
                         "canary": {"skipped": True}, "archive": {"failed": True, "msg": "timeout"}},
                        canary_study_uid="9.9.9")
    problems = " | ".join(out["problems"])
    assert "C-ECHO failed: connection refused (check endpoint_host, endpoint_dicom_port" in problems
    assert "Orthanc REST failed: 401 Unauthorized (check endpoint_rest_url" in problems
    assert "study-level C-FIND failed: association rejected" in problems
    assert "IMAGE-level C-FIND of the canary study failed" in problems
    assert "listing the archive's instances failed: timeout" in problems
    assert out["baseline"]["counts"]["instances"] is None and out["baseline"]["version"] is None


def test_pacs_baseline_refuses_an_unknown_or_too_large_canary():
    missing = pacs_baseline({"echo": ECHO_OK, "info": INFO_OK, "studies": STUDIES_FIND, "canary": {"count": 0},
                             "archive": ARCHIVE},
                            canary_study_uid="9.9.9")
    assert missing["problems"] == ['dicom_verify_canary_study_uid 9.9.9 is not on the PACS: set it to a study that '
                                   'exists, or to "" for the first one']
    truncated = {"echo": ECHO_OK, "info": INFO_OK, "studies": STUDIES_FIND, "canary": dict(CANARY_FIND, truncated=True),
                 "archive": ARCHIVE}
    big = pacs_baseline(truncated,
                        canary_max_instances=2)
    assert "more than 2 instances: raise dicom_verify_canary_max_instances" in big["problems"][0]


def test_pacs_baseline_of_an_empty_archive_has_no_canary_and_no_problem():
    out = pacs_baseline({"echo": ECHO_OK, "info": dict(INFO_OK, statistics={"instances": 0}),
                         "studies": {"count": 0, "identifiers": []}, "canary": {"skipped": True},
                         "archive": {"last_change": 0, "instances": 0, "sop_instance_uids": []}})
    assert out["problems"] == [] and out["baseline"]["canary"]["study_instance_uid"] == ""


def test_pacs_modality_entry():
    assert pacs_modality_entry({"name": "ws1", "aet": "RADWS01", "host": "192.0.2.21", "port": "104"}) == [
        "RADWS01", "192.0.2.21", 104]


CANARY = {"study_instance_uid": "2.25.1", "sop_instance_uids": ["2.25.11", "2.25.12", "2.25.13"]}


def test_canary_record_all_present_missing_and_failed_query():
    found = {"identifiers": [{"SOPInstanceUID": u} for u in CANARY["sop_instance_uids"]], "latency_ms": 4.0}
    assert canary_record(found, CANARY)["status"] == "passed"
    partial = {"identifiers": [{"SOPInstanceUID": "2.25.11"}]}
    record = canary_record(partial, CANARY)
    assert record["status"] == "failed"
    assert record["message"] == "2 of 3 canary instances are missing"
    assert record["details"]["missing"] == ["2.25.12", "2.25.13"]
    assert canary_record({"failed": True, "msg": "aborted"}, CANARY)["status"] == "failed"
    assert canary_record({"skipped": True}, CANARY)["message"] == "cannot compare: the query did not run"
    assert canary_record(found, {"sop_instance_uids": []})["status"] == "failed"


def test_counts_may_grow_on_a_live_pacs_but_never_shrink():
    base = {"patients": 10, "studies": 20, "series": 60, "instances": 600}
    assert counts_record({"statistics": dict(base, disk_size_mb=5)}, base)["status"] == "passed"
    grown = counts_record({"statistics": dict(base, instances=610, studies=22)}, base)
    assert grown["status"] == "passed" and grown["check"] == "counts_not_lower"
    assert grown["message"] == "no count is lower than the baseline; arrived since: 2 studies, 10 instances"
    record = counts_record({"statistics": dict(base, instances=599)}, base)
    assert record["status"] == "failed"
    assert record["message"] == "counts are lower than the baseline: instances 600 -> 599"


def test_archive_record_compares_sets():
    now = {"sop_instance_uids": ["a", "b", "c", "d"], "instances": 4}
    ok = archive_record(now, ["a", "b"])
    assert ok["status"] == "passed" and ok["check"] == "instances_preserved"
    assert ok["message"] == "all 2 instances of the baseline present; 2 arrived since"
    assert ok["details"]["arrived_sample"] == ["c", "d"]
    lost = archive_record({"sop_instance_uids": ["a", "c"]}, ["a", "b"])
    assert lost["status"] == "failed" and lost["message"] == "1 of 2 instances of the baseline are missing"
    assert lost["details"]["missing_sample"] == ["b"]
    redelivered = archive_record(now, ["a"], ["c", "x"])
    assert redelivered["status"] == "failed"
    assert redelivered["message"] == "1 of 2 re-delivered instances are missing"
    both = archive_record(now, ["a"], ["c", "d"])
    assert both["message"] == ("all 1 instances of the baseline present, all 2 re-delivered instances present; "
                               "1 arrived since")
    assert archive_record({"failed": True, "msg": "x"}, ["a"])["status"] == "failed"
    assert archive_record(now, [])["message"] == "the baseline has no instance list to compare with"


def test_readback_record():
    assert readback_record({"checked": 50, "instances": 600, "mismatched": []})["status"] == "passed"
    bad = readback_record({"failed": True, "msg": "1 of 50 stored files read back differ", "checked": 50,
                           "mismatched": [{"id": "x"}]})
    assert bad["status"] == "failed" and bad["details"]["mismatched"] == [{"id": "x"}]
    assert readback_record({"skipped": True})["status"] == "failed"


def test_version_record():
    assert version_record({"version": "1.12.7"}, "1.12.7")["status"] == "passed"
    record = version_record({"version": "1.10.1"}, "1.12.7")
    assert record["status"] == "failed"
    assert record["message"] == "the PACS reports version 1.10.1, expected 1.12.7"
    assert version_record(None, "1.12.7")["status"] == "failed"


def test_verify_record_prefers_the_count_message_when_retries_ran_out():
    # An `until: count >= 1` loop that ran out of retries fails the task; the count says why.
    record = verify_record({"failed": True, "msg": "Retries exceeded", "count": 0, "attempts": 5},
                           "order_in_worklist", expect_count_min=1)
    assert record["status"] == "failed"
    assert record["message"] == "expected at least 1 match(es), found 0"
    ok = verify_record({"failed": True, "count": 1}, "order_in_worklist", expect_count_min=1)
    assert ok["status"] == "passed"


def test_failed_check_names_the_inventory_variable():
    """A module names its option; the verification record adds the inventory variable behind it."""
    from clinical import inventory_words

    rec = verify_record({"failed": True, "msg": "association rejected; check called_ae and calling_ae"}, "dicom_echo")
    assert rec["message"] == ("association rejected; check called_ae (inventory: pacs_server_dicom_aet) and "
                              "calling_ae (inventory: verify_calling_aet)")
    worklist = inventory_words("check called_ae", "worklist_echo")
    assert worklist == "check called_ae (inventory: ris_server_aetitle)"
    rest = inventory_words("set orthanc_ca_path to the site CA; check orthanc_user", "dicom_roundtrip")
    assert rest == ("set orthanc_ca_path (inventory: endpoint_rest_ca_path) to the site CA; "
                    "check orthanc_user (inventory: pacs_server_rest_user)")
    assert inventory_words("check ca_path (inventory: endpoint_rest_ca_path)", "pacs_info").count("inventory") == 1
    assert inventory_words("anything", "no_such_check") == "anything"
