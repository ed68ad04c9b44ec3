"""filter_plugins/workstation.py: the workstation's discover result, its switch, its verification
against the baseline, and the fleet summary."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))
import workstation as ws  # noqa: E402

PLAN = [
    {"name": "libssl3", "from": "3.0.19-1~deb12u2", "to": "3.0.22-1~deb12u2", "security": True, "reason": "policy"},
    {"name": "libdcmtk17", "from": None, "to": "3.6.7-9~deb12u4", "security": False, "reason": "catalogue"},
]
FACTS = {
    "installed": {"dcmtk": "3.6.7-9~deb12u4", "tzdata": "2025b-0+deb12u2"},
    "plan": PLAN,
    "plan_download_bytes": 2_500_000,
    "problems": [],
    "hardware_report": "no GPU found",
    "gpus": [],
}


def test_discovery_names_the_viewer_version_and_every_pending_change():
    found = ws.workstation_linux_discovery(FACTS, "dcmtk", {"rc": 0})
    assert (found["version"], found["package_version"], found["problems"]) == ("3.6.7", "3.6.7-9~deb12u4", [])
    assert found["pending_changes"] == [
        "libssl3 3.0.19-1~deb12u2 -> 3.0.22-1~deb12u2 (policy, security)",
        "libdcmtk17 new -> 3.6.7-9~deb12u4 (catalogue)",
    ]
    assert found["download_bytes"] == 2_500_000 and found["database_version"] is None


def test_discovery_problems_say_what_to_fix():
    found = ws.workstation_linux_discovery(
        dict(FACTS, installed={}, problems=["dpkg is locked by process 42"]),
        "dcmtk",
        {"rc": 100, "stderr": "E: Failed to fetch http://10.88.0.1:3142/..."},
    )
    assert found["version"] == ""
    assert found["problems"][0].startswith("apt-get update failed (exit 100): E: Failed to fetch")
    assert "workstation_linux_package_cache_url" in found["problems"][0]
    assert "dpkg is locked by process 42" in found["problems"]
    assert "the viewer package dcmtk is not installed" in found["problems"][-1]
    failed = ws.workstation_linux_discovery({"failed": True, "msg": "apt-get -s failed"}, "dcmtk")
    assert failed["problems"] == ["workstation_linux_facts failed: apt-get -s failed"]


def test_a_dnf_metadata_refresh_that_fails_is_named_as_dnfs():
    found = ws.workstation_linux_discovery(
        FACTS, "dcmtk", {"rc": 1, "stderr": "Error: Failed to download metadata for repo 'baseos'"}, "dnf"
    )
    assert found["problems"][0].startswith("dnf makecache failed (exit 1): Error: Failed to download metadata")
    assert "/etc/yum.repos.d" in found["problems"][0] and "apt" not in found["problems"][0]


def test_switched_compares_what_is_installed_with_the_plan():
    lines = ["libssl3\t3.0.22-1~deb12u2", "libdcmtk17\t3.6.7-9~deb12u4", "dcmtk\t3.6.7-9~deb12u4"]
    done = ws.workstation_linux_switched(PLAN, lines, "dcmtk", {"required": False}, "0:00:12.345678")
    assert (done["version"], done["count"], done["problems"]) == ("3.6.7", 2, [])
    assert done["phases"] == {"install_s": 12.3}
    short = ws.workstation_linux_switched(PLAN, lines[1:], "dcmtk", {}, "bad")
    assert short["problems"] == ["libssl3 is not installed, the plan said 3.0.22-1~deb12u2"]
    assert short["phases"] == {"install_s": 0.0}


ECHO_OK = {"rc": 0}
IMAGE_OK = {
    "study_digest": "0123456789abcdef",
    "instances_retrieved": 3,
    "removed": True,
    "elapsed_ms": 120.0,
    "image": {"rows": 64, "columns": 64, "grey_levels": 200, "width": 64, "height": 64},
}
PACKAGES = ["hi \tdcmtk\t3.6.7-9~deb12u4", "ii \ttzdata\t2025b-0+deb12u2", "un \tlibdcmtk17\t"]


def test_baseline_records_the_study_and_the_packages_and_its_problems():
    record = ws.workstation_baseline({"echo": ECHO_OK, "image": IMAGE_OK, "packages": PACKAGES}, host="ws1")
    assert record["problems"] == []
    base = record["baseline"]
    assert base["image_load"]["study_digest"] == "0123456789abcdef"
    assert base["packages"] == {"dcmtk": "3.6.7-9~deb12u4", "tzdata": "2025b-0+deb12u2"}
    bad = ws.workstation_baseline(
        {"echo": {"rc": 1, "stderr": "Association Request Failed"}, "image": {"failed": True}}
    )
    assert len(bad["problems"]) == 2 and "Association Request Failed" in bad["problems"][0]


def test_compare_passes_when_the_same_study_loads_and_the_held_package_did_not_move():
    base = ws.workstation_baseline({"echo": ECHO_OK, "image": IMAGE_OK, "packages": PACKAGES})["baseline"]
    catalogue = {"dcmtk": "3.6.7-9~deb12u4", "libdcmtk17": "3.6.7-9~deb12u4"}
    after = PACKAGES[:2] + ["ii \tlibdcmtk17\t3.6.7-9~deb12u4"]
    checks = ws.workstation_compare(
        {"echo": ECHO_OK, "image": IMAGE_OK, "packages": after}, base, "3.6.7", "dcmtk", catalogue
    )
    assert [(c["check"], c["status"]) for c in checks] == [
        ("pacs_echo_from_workstation", "passed"),
        ("image_load", "passed"),
        ("viewer_version", "passed"),
        ("held_packages", "passed"),
    ]


def test_compare_fails_a_moved_held_package_another_study_and_a_wrong_viewer():
    base = ws.workstation_baseline({"echo": ECHO_OK, "image": IMAGE_OK, "packages": PACKAGES})["baseline"]
    other = dict(IMAGE_OK, study_digest="fedcba9876543210", removed=False)
    moved = ["ii \tdcmtk\t3.6.8-1", "ii \ttzdata\t2026b-0+deb12u1"]
    checks = {
        c["check"]: c
        for c in ws.workstation_compare(
            {"echo": ECHO_OK, "image": other, "packages": moved}, base, "3.6.7", "dcmtk", {}
        )
    }
    assert checks["image_load"]["status"] == "failed"
    assert "study_digest is fedcba9876543210, the baseline's was 0123456789abcdef" in checks["image_load"]["message"]
    assert "the temporary copy of the study was not removed" in checks["image_load"]["message"]
    assert checks["viewer_version"]["status"] == "failed"
    assert "tzdata is 2026b-0+deb12u1, expected 2025b-0+deb12u2" in checks["held_packages"]["message"]


def test_fleet_summary_lists_every_host_including_those_never_attempted():
    hostvars = {
        "ws1": {"upgrade_result": {"outcome": "upgraded", "switch": {"packages": PLAN, "reboot": {"pending": True}}}},
        "ws2": {"upgrade_result": {"outcome": "refused", "message": "dpkg is locked"}},
        "ws3": {},
    }
    rows = ws.fleet_summary(hostvars, ["ws1", "ws2", "ws3"])
    assert [(r["host"], r["outcome"], r["changes"]) for r in rows] == [
        ("ws1", "upgraded", 2),
        ("ws2", "refused", 0),
        ("ws3", "not_attempted", 0),
    ]


def test_workstation_ae_titles_and_the_pacs_modalities():
    assert ws.workstation_aet("mol-ws1") == "MOLWS1"
    assert ws.workstation_aet("rad-ws-01.radiology.example.org") == "RADWS01RADIOLOGY"
    assert ws.workstation_modalities(["ws1"]) == [{"name": "ws1", "aet": "WS1", "host": "ws1", "port": 104}]
