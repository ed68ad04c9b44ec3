"""The filters that make the Windows workstation a product of the upgrade flow: the discover fact as
PRE-005 reads it (pending_changes, refusals), the stage's plan and record, the switch's record (the
shape the fleet summary reads), and the dicom_verify profile workstation_windows's baseline and
comparison (filter_plugins/workstation.py). Inputs shaped as the Windows modules return them (the
fixtures of test_workstation_windows_filters.py); no Windows host is involved."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))

import workstation as fleet  # noqa: E402
from test_workstation_windows_filters import (  # noqa: E402
    CATALOGUE,
    CU,
    NEW_CODE,
    NV_DRIVER,
    PRODUCT,
    QUADRO,
    discovered,
    probe,
    update,
    updates_result,
    ww,
)

STAGE = r"C:\ProgramData\clinical-upgrade\stage"


def flow(**kw):
    return ww.workstation_windows_flow_discovery(
        discovered(**kw), CATALOGUE, PRODUCT, "2.4.0", True, False, "rad-ws-11"
    )


# --------------------------------------------------------------------------- PRE-005


def test_pending_changes_name_the_viewer_the_driver_and_the_updates():
    found = flow()
    assert found["problems"] == [] and found["refusals"] == []
    assert found["pending_changes"] == [
        "viewer cu-viewer 2.3.0 -> 2.4.0",
        "display driver of 10de:1eb8: 31.0.15.3713 (nv_dispwi.inf) -> 32.0.15.5324",
        "1 Windows update(s): KB5034441",
    ]


def test_a_current_viewer_with_pending_updates_still_needs_a_run():
    current = ww.workstation_windows_discovery(
        probe(
            viewer=[
                {
                    "product_id": "{22222222-AAAA-2222-2222-222222222222}",
                    "display_name": "CU Viewer",
                    "display_version": "2.4.0.1",
                }
            ]
        ),
        updates_result(update(*CU)),
        CATALOGUE,
        PRODUCT,
        "rad-ws-11",
    )
    found = ww.workstation_windows_flow_discovery(current, CATALOGUE, PRODUCT, "2.4.0", True, False, "rad-ws-11")
    assert found["version"] == "2.4.0"
    assert "1 Windows update(s): KB5034441" in found["pending_changes"]


def test_a_refusal_of_the_catalogue_is_a_problem_the_flow_refuses_before_its_snapshot():
    # The memory is the flow's PRE-002 (host_checks: the precheck reads no Windows host itself) ...
    found = flow(memory_mb=4096)
    assert found["host_checks"]["PRE-002"]["problems"][0].startswith("rad-ws-11 has 4096 MB memory")
    assert found["refusals"] == [] and found["problems"] == []
    # ... an upgrade path the catalogue does not list is a PRE-005 problem.
    newer = [{"product_id": NEW_CODE, "display_name": "CU Viewer", "display_version": "2.4.0"}]
    downgrade = ww.workstation_windows_flow_discovery(
        discovered(adapters=[], viewer=newer), CATALOGUE, PRODUCT, "2.3.0", True, False, "rad-ws-11"
    )
    assert downgrade["refusals"] and downgrade["refusals"][0].startswith("cu-viewer 2.4.0 is installed on rad-ws-11")
    assert downgrade["problems"] == downgrade["refusals"]


def test_an_unread_workstation_keeps_its_problem_once_and_plans_nothing():
    unread = ww.workstation_windows_discovery(
        {"unreachable": True, "msg": "timed out"}, {"skipped": True}, CATALOGUE, PRODUCT, "rad-ws-11"
    )
    found = ww.workstation_windows_flow_discovery(unread, CATALOGUE, PRODUCT, "2.4.0", True, False, "rad-ws-11")
    assert found["pending_changes"] == []
    assert len(found["problems"]) == 1 and "did not answer over WinRM" in found["problems"][0]


# --------------------------------------------------------------------------- stage


def plan():
    entry = CATALOGUE[PRODUCT]["2.4.0"]
    found = flow()
    drivers = ww.workstation_windows_driver_plan(found["hardware"]["gpus"], entry)
    return ww.workstation_windows_stage_plan(found, entry, "2.4.0", STAGE + "\\", drivers)


def test_the_stage_copies_the_msi_and_the_driver_packages_folder():
    staged = plan()
    msi = STAGE + r"\viewer\2.4.0\viewer-2.4.0.msi"
    inf = STAGE + r"\drivers\nv_dispwi.inf-32.0.15.5324\nv_dispwi.inf"
    assert staged["viewer"] == msi and staged["drivers"] == {NV_DRIVER["path"]: inf}
    assert [(c["what"], c["src"], c["dest"], c["staged"]) for c in staged["copies"]] == [
        ("viewer", r"\\share\viewer-2.4.0.msi", STAGE + "\\viewer\\2.4.0\\", msi),
        ("driver", "\\\\share\\drivers\\nvidia\\553.24\\", STAGE + "\\drivers\\nv_dispwi.inf-32.0.15.5324\\", inf),
    ]


def test_nothing_is_copied_when_the_viewer_and_the_driver_are_current():
    entry = CATALOGUE[PRODUCT]["2.4.0"]
    found = dict(flow(), version="2.4.0")
    assert ww.workstation_windows_stage_plan(found, entry, "2.4.0", STAGE, {"installs": []}) == {
        "copies": [],
        "viewer": "",
        "drivers": {},
    }


def stats(*pairs):
    return {"results": [{"item": {"staged": path}, "stat": stat} for path, stat in pairs]}


def test_the_stage_record_checks_each_copy_and_the_download():
    staged_plan = plan()
    msi, inf = (c["staged"] for c in staged_plan["copies"])
    downloaded = updates_result(update(*CU))
    record = ww.workstation_windows_staged(
        staged_plan,
        stats((msi, {"exists": True, "checksum": "2" * 64}), (inf, {"exists": True, "checksum": "3" * 64})),
        downloaded,
        7200,
        "rad-ws-11",
    )
    assert record["problems"] == []
    assert record["updates"] == {
        "downloaded": 1,
        "kbs": ["KB5034441"],
        "message": "1 update(s) downloaded, none installed",
    }


def test_a_corrupt_copy_a_missing_one_and_a_download_that_timed_out_are_named():
    staged_plan = plan()
    msi, inf = (c["staged"] for c in staged_plan["copies"])
    timed_out = {
        "failed": False,
        "msg": "async task did not complete within the requested time - 7200s",
        "async_result": {"ansible_job_id": "j", "started": 1, "finished": 0},
    }
    record = ww.workstation_windows_staged(
        staged_plan,
        stats((msi, {"exists": True, "checksum": "f" * 64}), (inf, {"exists": False})),
        timed_out,
        7200,
        "rad-ws-11",
    )
    assert record["problems"][0] == (
        f"{msi} on rad-ws-11 has sha256 {'f' * 64}, the catalogue says {'2' * 64}: "
        r"\\share\viewer-2.4.0.msi is corrupt, or another file"
    )
    assert record["problems"][1].startswith(f"{inf} (the driver for GPU 10de:1eb8) is not on rad-ws-11")
    assert record["problems"][2].startswith("downloading the Windows updates did not finish within 7200 s")


# --------------------------------------------------------------------------- switch


RESULT = {
    "restore_point": {"created": False, "failed": False, "reason": "the snapshot"},
    "viewer": {"changed": True, "reboot_required": False, "message": "cu-viewer 2.3.0 -> 2.4.0: installed"},
    "driver": {
        "installed": [{"inf": "nv_dispwi.inf", "version": "32.0.15.5324", "changed": True}],
        "reboot_required": False,
    },
    "patch": {"installed_kbs": ["KB5034441"], "reboot_required": True, "rebooted": 0},
}


def test_the_switch_record_has_the_fleet_summarys_shape():
    switched = ww.workstation_windows_switched(RESULT, [], False)
    assert switched["packages"] == [
        "cu-viewer 2.3.0 -> 2.4.0: installed",
        "display driver nv_dispwi.inf 32.0.15.5324",
        "Windows update KB5034441",
    ]
    assert switched["reboot"] == {
        "required": True,
        "done": False,
        "pending": True,
        "why_pending": "workstation_windows_allow_reboot is false",
    }
    row = fleet.fleet_summary(
        {"rad-ws-11": {"upgrade_result": {"outcome": "upgraded", "switch": switched}}}, ["rad-ws-11", "rad-ws-12"]
    )
    assert [(r["host"], r["outcome"], r["changes"]) for r in row] == [
        ("rad-ws-11", "upgraded", 3),
        ("rad-ws-12", "not_attempted", 0),
    ]
    assert row[0]["reboot"]["pending"] is True


def test_a_restart_allowed_is_done_not_pending_and_a_difference_is_a_problem():
    switched = ww.workstation_windows_switched(RESULT, ["cu-viewer 2.4.0 is not installed"], True)
    assert switched["reboot"] == {"required": True, "done": True, "pending": False, "why_pending": None}
    assert switched["problems"] == ["cu-viewer 2.4.0 is not installed"]


# --------------------------------------------------------------------------- dicom_verify profile


ECHO_OK = {"changed": False, "status": "success", "latency_ms": 3.2}
ECHO_REFUSED = {"failed": True, "reason": "association_rejected", "msg": "calling AE RADWS11 not known"}


def state(**kw):
    return {"echo": kw.pop("echo", ECHO_OK), "discovered": discovered(**kw)}


def test_the_baseline_records_the_viewer_the_gpus_and_the_echo():
    record = fleet.windows_workstation_baseline(state(), "rad-ws-11", "2026-01-01T00:00:00Z", "PACS1 as RADWS11")
    assert record["problems"] == []
    baseline = record["baseline"]
    assert baseline["profile"] == "workstation_windows" and baseline["version"] == "2.3.0"
    assert baseline["gpus"] == [
        {
            "id": "10de:1eb8",
            "name": "NVIDIA Quadro RTX 4000",
            "driver_version": "31.0.15.3713",
            "driver_inf": "nv_dispwi.inf",
            "problem_code": 0,
        }
    ]
    assert baseline["summary"].startswith("PACS1 as RADWS11 answers C-ECHO from the controller: passed; viewer 2.3.0")


def test_a_refused_echo_fails_the_baseline_naming_the_reason():
    record = fleet.windows_workstation_baseline(state(echo=ECHO_REFUSED), "rad-ws-11", "", "PACS1 as RADWS11")
    assert record["problems"] == [
        "PACS1 as RADWS11 does not answer C-ECHO from the controller: association_rejected: "
        "calling AE RADWS11 not known"
    ]


def test_the_comparison_checks_the_version_and_every_gpu_of_the_baseline():
    baseline = fleet.windows_workstation_baseline(state(), "rad-ws-11", "", "P")["baseline"]
    checks = fleet.windows_workstation_compare(state(), baseline, "2.4.0", PRODUCT, "P")
    assert {c["check"]: c["status"] for c in checks} == {
        "pacs_echo_from_controller": "passed",
        "viewer_version": "failed",
        "display_adapters": "passed",
    }
    assert checks[1]["message"] == "cu-viewer 2.3.0 (expected 2.4.0)"
    stopped = dict(QUADRO, config_manager_error_code=43)
    checks = fleet.windows_workstation_compare(state(adapters=(stopped,)), baseline, "2.3.0", PRODUCT, "P")
    assert {c["check"]: c["status"] for c in checks}["display_adapters"] == "failed"
    assert "reports device problem code 43" in checks[2]["message"]
    checks = fleet.windows_workstation_compare(state(adapters=()), baseline, "2.3.0", PRODUCT, "P")
    assert checks[2]["message"] == "GPU 10de:1eb8 (NVIDIA Quadro RTX 4000) of the baseline is gone"


def test_an_unread_workstation_or_no_pacs_fails_the_comparison():
    unread = {"echo": {"skipped": True}, "discovered": {"read": False, "problems": ["WinRM timed out"]}}
    checks = fleet.windows_workstation_compare(unread, {}, "2.4.0", PRODUCT, "no PACS")
    assert [(c["check"], c["status"]) for c in checks] == [
        ("pacs_echo_from_controller", "failed"),
        ("workstation_read", "failed"),
    ]
    assert checks[0]["message"].startswith("no PACS to C-ECHO")
    assert checks[1]["message"] == "WinRM timed out"
