"""The filters of roles/workstation_windows (roles/workstation_windows/filter_plugins/workstation_windows.py):
every decision the role takes on a Windows workstation, fed with what the Windows modules return.

No Windows host is involved: the inputs are shaped as win_powershell (files/discover.ps1),
win_updates (async), win_command (pnputil) and win_package return them. The pnputil outputs are the
wordings Windows 10 and 11 print, as quoted in public material (a driver added, added and installed
on a device, already in the driver store)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles" / "workstation_windows" / "filter_plugins"))

import workstation_windows as ww  # noqa: E402

PRODUCT = "cu-viewer"
OLD_CODE = "{11111111-1111-1111-1111-111111111111}"
NEW_CODE = "{22222222-AAAA-2222-2222-222222222222}"
NV_DRIVER = {"path": r"\\share\drivers\nvidia\553.24\nv_dispwi.inf", "sha256": "3" * 64, "inf": "nv_dispwi.inf",
             "version": "32.0.15.5324"}
CATALOGUE = {
    PRODUCT: {
        "2.3.0": {"install_method": "windows_installer",
                  "installer": {"path": r"\\share\viewer-2.3.0.msi", "sha256": "1" * 64, "product_id": OLD_CODE},
                  "os": {"family": "Windows", "major_versions": ["10", "11"]}, "upgrade_from": [],
                  "min_free_disk_mb": 1024, "min_memory_mb": 4096, "database_migration": "none"},
        "2.4.0": {"install_method": "windows_installer",
                  "installer": {"path": r"\\share\viewer-2.4.0.msi", "sha256": "2" * 64, "product_id": NEW_CODE},
                  "os": {"family": "Windows", "major_versions": ["10", "11"]}, "upgrade_from": ["2.3.0"],
                  "min_free_disk_mb": 2048, "min_memory_mb": 8192, "database_migration": "none",
                  "display_drivers": [{"gpu": "10de:1eb8", "driver": NV_DRIVER}]},
    }
}
WHERE = "release_catalogue.cu-viewer['2.4.0']"
QUADRO = {"name": "NVIDIA Quadro RTX 4000",
          "pnp_device_id": r"PCI\VEN_10DE&DEV_1EB8&SUBSYS_12A010DE&REV_A1\4&2B4F3E8C&0&0008",
          "driver_version": "31.0.15.3713", "inf_filename": "oem12.inf", "config_manager_error_code": 0,
          "installed_display_drivers": r"C:\Windows\System32\DriverStore\FileRepository"
                                       r"\nv_dispwi.inf_amd64_0b3a6c8f2d1e4f5a\nvldumdx.dll,"
                                       r"C:\Windows\System32\DriverStore\FileRepository"
                                       r"\nv_dispwi.inf_amd64_0b3a6c8f2d1e4f5a\nvldumdx.dll"}
RDP = {"name": "Microsoft Remote Display Adapter",
       "pnp_device_id": r"SWD\REMOTEDISPLAYENUM\RDPIDD_INDIRECTDISPLAY&SESSIONID_0002",
       "driver_version": "10.0.22621.2506", "installed_display_drivers": "", "config_manager_error_code": 0}


def probe(adapters=(QUADRO, RDP), viewer=None, product_type=1, build=22631, free_mb=200000, memory_mb=32768):
    """win_powershell's registered result of files/discover.ps1."""
    return {"changed": False, "failed": False, "output": [], "result": {
        "os": {"caption": "Microsoft Windows 11 Enterprise", "version": f"10.0.{build}", "build": build, "ubr": 4317,
               "product_type": product_type, "architecture": "64-bit"},
        "memory": {"total_mb": memory_mb, "free_mb": 20000},
        "disk": {"drive": "C:", "size_mb": 500000, "free_mb": free_mb},
        "adapters": list(adapters),
        "viewer": viewer if viewer is not None else [
            {"product_id": OLD_CODE.lower(), "key": "HKLM:\\...", "display_name": "CU Viewer",
             "display_version": "2.3.0.5"}],
        "reboot_pending": False,
        "system_restore": {"available": True, "enabled": True, "disabled_by_policy": False},
    }}


def update(uid, kb, title, **extra):
    return uid, {"id": uid, "kb": [kb], "title": title, "installed": False, "downloaded": False,
                 "categories": ["Security Updates"], **extra}


def updates_result(*rows, reboot=False, **extra):
    """win_updates' result after async (its module formats it like the synchronous one)."""
    found = dict(rows)
    return {"changed": any(u["installed"] for u in found.values()), "finished": 1, "ansible_job_id": "j1",
            "found_update_count": len(found), "installed_update_count": sum(u["installed"] for u in found.values()),
            "failed_update_count": sum("failure_hresult_code" in u for u in found.values()),
            "updates": found, "filtered_updates": {}, "reboot_required": reboot, "rebooted": False, **extra}


CU = ("u-cu", "5034441", "2024-01 Cumulative Update for Windows 11 Version 23H2 for x64-based Systems (KB5034441)")
MSRT = ("u-msrt", "890830", "Windows Malicious Software Removal Tool x64 - v5.120 (KB890830)")
TIMED_OUT = {"failed": False, "msg": "async task did not complete within the requested time - 900s",
             "async_result": {"ansible_job_id": "j", "started": 1, "finished": 0}}


def discovered(**kw):
    return ww.workstation_windows_discovery(probe(**kw), updates_result(update(*CU)), CATALOGUE, PRODUCT, "rad-ws-11")


# --------------------------------------------------------------------------- discovery


def test_a_pci_gpu_is_named_by_vendor_device_and_its_driver_by_the_driver_store_inf():
    gpus = ww.workstation_windows_gpus([QUADRO, RDP])
    assert gpus["gpus"] == [{"id": "10de:1eb8", "name": "NVIDIA Quadro RTX 4000",
                             "pnp_device_id": QUADRO["pnp_device_id"], "driver_version": "31.0.15.3713",
                             "driver_inf": "nv_dispwi.inf", "inf_filename": "oem12.inf", "problem_code": 0}]
    assert gpus["ignored"] == ["Microsoft Remote Display Adapter"]


def test_a_gpu_on_the_basic_display_driver_has_no_vendor_inf():
    basic = {"name": "Microsoft Basic Display Adapter", "pnp_device_id": r"PCI\VEN_1002&DEV_6611&SUBSYS_0\4&1",
             "driver_version": "10.0.22621.1", "inf_filename": "display.inf", "installed_display_drivers": None}
    [gpu] = ww.workstation_windows_gpus([basic])["gpus"]
    assert (gpu["id"], gpu["driver_inf"]) == ("1002:6611", "")


def test_discovery_finds_the_catalogued_version_by_its_msi_product_code():
    found = discovered()
    assert (found["version"], found["package"], found["package_version"]) == ("2.3.0", "CU Viewer", "2.3.0.5")
    assert found["read"] is True and found["problems"] == []
    assert found["pending_updates"] == 1 and found["pending_update_kbs"] == ["KB5034441"]
    assert found["os"]["release"] == "11"
    assert found["hardware"]["disk_free_mb"] == 200000 and found["hardware"]["memory_mb"] == 32768
    assert [g["id"] for g in found["hardware"]["gpus"]] == ["10de:1eb8"]


def test_discovery_without_the_viewer_says_which_product_codes_it_looked_for():
    found = discovered(viewer=[])
    assert found["version"] == "" and found["read"] is True
    [problem] = found["problems"]
    assert f"no catalogued version of {PRODUCT} is installed on rad-ws-11" in problem
    assert OLD_CODE in problem and NEW_CODE in problem and "WOW6432Node" in problem


def test_discovery_of_an_unreachable_host_never_raises_and_says_what_to_check():
    unreachable = {"unreachable": True, "msg": "ntlm: HTTPSConnectionPool(host='192.0.2.111', port=5986): timed out"}
    found = ww.workstation_windows_discovery(unreachable, {"skipped": True}, CATALOGUE, PRODUCT, "rad-ws-11")
    assert found["read"] is False and found["version"] == ""
    assert found["problems"] == ["reading rad-ws-11 (files/discover.ps1 with win_powershell): the host did not answer "
                                 "over WinRM (ntlm: HTTPSConnectionPool(host='192.0.2.111', port=5986): timed out)"]
    assert found["pending_updates"] is None


def test_a_search_that_hangs_is_a_problem_naming_the_timeout_and_what_to_check():
    found = ww.workstation_windows_discovery(probe(), TIMED_OUT, CATALOGUE, PRODUCT, "rad-ws-11", 900)
    assert found["pending_updates"] is None
    [problem] = found["problems"]
    assert problem.startswith("the Windows Update search did not finish within 900 s and was stopped: check that the "
                              "Windows Update service (wuauserv) runs")
    assert "workstation_windows_update_search_timeout" in problem


def test_a_failed_search_registered_with_failed_when_false_is_still_told_by_its_missing_count():
    failed = {"changed": False, "failed": False, "msg": "Failed to search for updates: 0x8024402C"}
    found = ww.workstation_windows_discovery(probe(), failed, CATALOGUE, PRODUCT, "rad-ws-11")
    assert found["problems"][0].startswith("the Windows Update search failed: Failed to search for updates: 0x8024402C")


def test_product_codes_are_every_catalogued_versions_once():
    assert ww.workstation_windows_product_ids(CATALOGUE, PRODUCT) == [OLD_CODE, NEW_CODE]
    assert ww.workstation_windows_product_ids(CATALOGUE, "") == []


@pytest.mark.parametrize(("product_type", "build", "release"), [
    (1, 19045, "10"), (1, 22000, "11"), (1, 26100, "11"), (3, 14393, "2016"), (3, 17763, "2019"),
    (2, 20348, "2022"), (3, 26100, "2025"), (3, 9600, ""), (1, 9600, "")])
def test_windows_release_from_build_and_product_type(product_type, build, release):
    assert ww.windows_release({"build": build, "product_type": product_type}) == release


# --------------------------------------------------------------------------- inputs


def test_inputs_without_a_target_version_need_no_catalogue():
    assert ww.workstation_windows_input_problems({}, "", "", ["SecurityUpdates", "CriticalUpdates"]) == []


@pytest.mark.parametrize("category", ["Drivers", "drivers", "*"])
def test_driver_updates_from_windows_update_are_refused(category):
    [problem] = ww.workstation_windows_input_problems({}, "", "", ["SecurityUpdates", category])
    assert problem.startswith(f"workstation_windows_update_categories contains {category!r}: Windows Update would "
                              "replace the display driver")


def test_an_uncatalogued_target_version_names_the_catalogued_ones():
    assert ww.workstation_windows_input_problems(CATALOGUE, PRODUCT, "2.5.0") == [
        "release_catalogue.cu-viewer['2.5.0']: not in the catalogue (catalogued: 2.3.0, 2.4.0); set "
        "workstation_windows_target_version to a catalogued version"]
    assert ww.workstation_windows_input_problems(CATALOGUE, "", "2.4.0")[0].startswith(
        "workstation_windows_target_version is '2.4.0' but workstation_windows_product is empty")


def test_a_windows_entry_needs_an_msi_product_code_and_windows_drivers():
    # The catalogue's schema (gpu format, sha256, the keys) is catalogue_problems'; these are the role's own.
    entry = {**CATALOGUE[PRODUCT]["2.4.0"],
             "installer": {"path": r"\\share\v.msi", "sha256": "2" * 64, "product_id": "22222222-2222"},
             "os": {"family": "Debian", "major_versions": ["12"]},
             "display_drivers": [
                 {"gpu": "10de:2230", "driver": {"path": r"\\share\a.sys", "sha256": "4" * 64, "inf": r"x\a.inf"}},
                 {"gpu": "10de:2230", "driver": {**NV_DRIVER, "version": "latest"}},
                 {"gpu": "1002:6611", "packages": {"firmware-amd-graphics": "20230210-5"}}]}
    problems = ww.workstation_windows_input_problems({PRODUCT: {"2.4.0": entry}}, PRODUCT, "2.4.0")
    assert problems == [
        f"{WHERE}.installer.product_id: must be the MSI's ProductCode, a GUID in braces ({{12345678-ABCD-...}}), got "
        "'22222222-2222'",
        f"{WHERE}.os.family is 'Debian': a Windows viewer's entry says Windows",
        f"{WHERE}.display_drivers[0].driver.path: must be the package's .inf file (on the host or a share), got "
        r"'\\share\a.sys'",
        f"{WHERE}.display_drivers[0].driver.inf: must be the package's original INF file name (nv_dispwi.inf), got "
        r"'x\a.inf'",
        f"{WHERE}.display_drivers[1].gpu: 10de:2230 is listed already at display_drivers[0]; list one validated "
        "driver per GPU",
        f"{WHERE}.display_drivers[1].driver.version: must be the driver version Windows reports (Win32_VideoController"
        ".DriverVersion, such as 31.0.15.3713), got 'latest'",
        f"{WHERE}.display_drivers[2]: has packages (a Linux driver) and no driver: a Windows entry needs driver: "
        "{path, sha256, inf}",
    ]


def test_counts_and_timeouts_must_be_whole_numbers_of_at_least_one():
    problems = ww.workstation_windows_input_problems({}, "", "", [], {
        "workstation_windows_update_max_passes": 0, "workstation_windows_update_search_timeout": "900",
        "workstation_windows_update_poll": 2.5, "workstation_windows_reboot_timeout": True})
    assert problems == [
        "workstation_windows_update_max_passes must be a whole number of at least 1, got 0",
        "workstation_windows_update_poll must be a whole number of at least 1, got 2.5",
        "workstation_windows_reboot_timeout must be a whole number of at least 1, got True",
    ]


def test_the_catalogue_itself_is_left_to_catalogue_problems():
    # A missing product is catalogue_problems' finding (filter_plugins/versions.py), not said twice.
    assert ww.workstation_windows_input_problems({}, PRODUCT, "2.4.0") == []


# --------------------------------------------------------------------------- display drivers and the precheck


def test_a_gpu_running_the_catalogued_inf_and_version_keeps_its_driver():
    running = {**QUADRO, "driver_version": "32.0.15.5324"}
    gpus = ww.workstation_windows_gpus([running])["gpus"]
    plan = ww.workstation_windows_driver_plan(gpus, CATALOGUE[PRODUCT]["2.4.0"], WHERE, "rad-ws-11")
    assert [d["action"] for d in plan["drivers"]] == ["keep"] and plan["installs"] == [] and plan["problems"] == []


def test_a_gpu_on_another_driver_version_gets_the_catalogued_one_once_for_two_cards():
    second = {**QUADRO, "pnp_device_id": r"PCI\VEN_10DE&DEV_1EB8&SUBSYS_12A010DE&REV_A1\4&1&0010"}
    gpus = ww.workstation_windows_gpus([QUADRO, second])["gpus"]
    plan = ww.workstation_windows_driver_plan(gpus, CATALOGUE[PRODUCT]["2.4.0"], WHERE, "rad-ws-11")
    assert [d["action"] for d in plan["drivers"]] == ["install", "install"]
    assert plan["installs"] == [{**NV_DRIVER, "gpus": ["10de:1eb8", "10de:1eb8"]}]
    assert plan["drivers"][0]["running"] == "31.0.15.3713 (nv_dispwi.inf)"


def test_a_gpu_the_catalogue_lists_no_driver_for_is_refused_naming_vendor_device_and_driver():
    amd = {"name": "AMD Radeon Pro W6600", "pnp_device_id": r"PCI\VEN_1002&DEV_73E3&SUBSYS_0E1C1028&REV_00\6&1",
           "driver_version": "31.0.21001.45002",
           "installed_display_drivers": r"C:\Windows\System32\DriverStore\FileRepository"
                                        r"\u0398226.inf_amd64_9f\B398x\a.dll"}
    refusals = ww.workstation_windows_precheck(discovered(adapters=[amd]), CATALOGUE, PRODUCT, "2.4.0", "rad-ws-11")
    assert refusals == [
        "GPU 1002:73e3 (AMD Radeon Pro W6600) on rad-ws-11 runs display driver 31.0.21001.45002 (u0398226.inf), and "
        f"{WHERE}.display_drivers lists no driver for 1002:73e3: this viewer version is not validated with this GPU. "
        "Add the validated driver ({gpu: '1002:73e3', driver: {path, sha256, inf, version}}) once tested, or keep the "
        "workstation on its current version"]


def test_the_precheck_passes_a_catalogued_upgrade_on_covered_hardware():
    assert ww.workstation_windows_precheck(discovered(), CATALOGUE, PRODUCT, "2.4.0", "rad-ws-11") == []
    # No target: only that the workstation could be read.
    assert ww.workstation_windows_precheck(discovered(adapters=[]), CATALOGUE, PRODUCT, "", "rad-ws-11") == []


def test_the_precheck_refuses_release_path_disk_and_memory():
    server = discovered(product_type=3, build=20348, free_mb=1000, memory_mb=4096)
    refusals = ww.workstation_windows_precheck(server, CATALOGUE, PRODUCT, "2.4.0", "rad-ws-11")
    assert refusals[0] == (f"rad-ws-11 runs Microsoft Windows 11 Enterprise (build 20348, release 2022), and "
                           f"{WHERE}.os.major_versions is ['10', '11']: this viewer version is not catalogued for it")
    assert refusals[1:] == [
        f"rad-ws-11 has 4096 MB memory, and {WHERE}.min_memory_mb is 8192 MB: choose another workstation, or add "
        "memory",
        f"rad-ws-11 has 1000 MB free disk on drive C:, and {WHERE}.min_free_disk_mb is 2048 MB: free space or "
        "choose another workstation"]
    downgrade = discovered(adapters=[],
                           viewer=[{"product_id": NEW_CODE, "display_name": "CU Viewer", "display_version": "2.4.0"}])
    [refusal] = ww.workstation_windows_precheck(downgrade, CATALOGUE, PRODUCT, "2.3.0", "rad-ws-11")
    assert refusal.startswith("cu-viewer 2.4.0 is installed on rad-ws-11, and release_catalogue.cu-viewer['2.3.0']"
                              ".upgrade_from is empty: the path 2.4.0 -> 2.3.0 is not catalogued (a downgrade")


def test_the_host_checks_are_the_flows_pre001_to_pre004_and_a_pending_reboot_is_pre003():
    checks = ww.workstation_windows_host_checks(discovered(), CATALOGUE, PRODUCT, "2.4.0", "rad-ws-11")
    assert sorted(checks) == ["PRE-001", "PRE-002", "PRE-003", "PRE-004"]
    assert all(check["problems"] == [] for check in checks.values()), checks
    [disk] = checks["PRE-004"]["disk"]
    assert (disk["mount"], disk["needed_mb"], disk["available_mb"], disk["ok"]) == ("C:", 2048, 200000, True)
    pending = ww.workstation_windows_host_checks(
        dict(discovered(), reboot_pending=True), CATALOGUE, PRODUCT, "2.4.0", "rad-ws-11")
    assert pending["PRE-003"]["problems"][0].startswith("a reboot is pending on rad-ws-11")
    # This role's own precheck leaves a pending reboot to the flow's PRE-003 (and its override).
    assert ww.workstation_windows_precheck(dict(discovered(), reboot_pending=True), CATALOGUE, PRODUCT, "2.4.0") == []
    unread = ww.workstation_windows_host_checks({"read": False, "problems": ["timed out"]}, CATALOGUE, PRODUCT, "2.4.0")
    assert {check_id: check["problems"] for check_id, check in unread.items()} == {
        c: ["timed out"] for c in ("PRE-001", "PRE-002", "PRE-003", "PRE-004")}


def test_the_precheck_of_a_host_it_could_not_read_repeats_why():
    denied = {"failed": True, "msg": "Access is denied"}
    found = ww.workstation_windows_discovery(denied, None, CATALOGUE, PRODUCT, "ws")
    assert ww.workstation_windows_precheck(found, CATALOGUE, PRODUCT, "2.4.0", "ws") == [
        "reading ws (files/discover.ps1 with win_powershell) failed: Access is denied; check WinRM and that the "
        "account is a local administrator"]


def test_changes_list_what_the_run_would_do_and_nothing_when_current():
    assert ww.workstation_windows_changes(discovered(), CATALOGUE, PRODUCT, "2.4.0") == [
        "viewer cu-viewer 2.3.0 -> 2.4.0",
        "display driver of 10de:1eb8: 31.0.15.3713 (nv_dispwi.inf) -> 32.0.15.5324",
        "1 Windows update(s): KB5034441"]
    current = ww.workstation_windows_discovery(
        probe(adapters=[{**QUADRO, "driver_version": "32.0.15.5324"}],
              viewer=[{"product_id": NEW_CODE, "display_name": "CU Viewer", "display_version": "2.4.0"}]),
        updates_result(), CATALOGUE, PRODUCT)
    assert ww.workstation_windows_changes(current, CATALOGUE, PRODUCT, "2.4.0") == []
    assert ww.workstation_windows_changes({**current, "pending_updates": None}, CATALOGUE, PRODUCT, "2.4.0") == [
        "Windows updates: not searched yet (may install some)"]
    assert ww.workstation_windows_changes({**current, "pending_updates": None}, CATALOGUE, PRODUCT, "2.4.0",
                                          apply_updates=False) == []
    # A restart Windows waits for, not allowed: the patch step installs nothing, so the updates are no change.
    waiting = {**current, "pending_updates": 2, "reboot_pending": True}
    assert ww.workstation_windows_changes(waiting, CATALOGUE, PRODUCT, "2.4.0", allow_reboot=False) == []
    assert ww.workstation_windows_changes(waiting, CATALOGUE, PRODUCT, "2.4.0", allow_reboot=True) == [
        "2 Windows update(s)"]


# --------------------------------------------------------------------------- restore point


def test_a_restore_point_only_on_client_windows_with_something_to_change():
    client = discovered()
    assert ww.workstation_windows_restore_plan(client, True, ["viewer a -> b"]) == {"take": True,
                                                                                    "reason": "before: viewer a -> b"}
    assert ww.workstation_windows_restore_plan(client, True, []) == {"take": False,
                                                                     "reason": "nothing to change on this run"}
    assert ww.workstation_windows_restore_plan(client, False, ["x"])["reason"] == (
        "turned off by workstation_windows_restore_point: false")
    server = ww.workstation_windows_restore_plan(discovered(product_type=3, build=20348), True, ["x"])
    assert server["take"] is False
    assert "has no System Restore: a server is snapshotted by the snapshot role's hypervisor" in server["reason"]


def test_the_restore_point_record():
    plan = {"take": True, "reason": "before: x"}
    created = {"changed": True, "result": {"created": True, "sequence_number": 57,
                                           "description": "clinical-upgrade 2.4.0",
                                           "creation_time": "12/02/2026 18:05:11"}}
    assert ww.workstation_windows_restore_record(plan, created) == {
        "created": True, "failed": False, "sequence_number": 57, "description": "clinical-upgrade 2.4.0",
        "creation_time": "12/02/2026 18:05:11", "reason": "before: x"}
    off = {"changed": False, "failed": False, "result": {"created": False, "message": "Get-ComputerRestorePoint lists "
                                                                                      "no new restore point: ..."}}
    assert ww.workstation_windows_restore_record(plan, off)["failed"] is True
    # win_powershell does not run a script in check mode.
    not_run = ww.workstation_windows_restore_record(plan, {"changed": True, "result": {}})
    assert not_run["reason"].startswith("check mode")
    assert ww.workstation_windows_restore_record({"take": False, "reason": "r"}, None) == {
        "created": False, "failed": False, "reason": "r"}


# --------------------------------------------------------------------------- viewer


def test_msiexec_3010_is_installed_with_a_restart_needed():
    record = ww.workstation_windows_viewer_record({"changed": True, "rc": 3010, "reboot_required": True},
                                                  discovered(), PRODUCT, "2.4.0")
    assert record["reboot_required"] is True and record["changed"] is True
    assert record["message"] == ("cu-viewer 2.3.0 -> 2.4.0: installed (msiexec exit 3010: Windows must restart to "
                                 "finish the installation)")
    same = ww.workstation_windows_viewer_record({"skipped": True}, discovered(), PRODUCT, "2.3.0")
    assert (same["changed"], same["message"]) == (False, "cu-viewer 2.3.0 is installed already")
    assert ww.workstation_windows_viewer_record(None, discovered(), PRODUCT, "")["skipped"] is True


# --------------------------------------------------------------------------- pnputil

WIN10_ADDED = """Microsoft PnP Utility

Adding driver package:  nv_dispwi.inf
Driver package added successfully.
Published Name:         oem13.inf
Driver package installed on matching devices.

Total driver packages:  1
Added driver packages:  1
"""
WIN11_INSTALLED = """Microsoft PnP Utility

Adding driver package:  nv_dispwi.inf
Driver package added successfully.
Published Name:         oem2.inf
Driver package installed on device: PCI\\VEN_10DE&DEV_1EB8&SUBSYS_12A010DE&REV_A1\\4&2b4f3e8c&0&0008
Total driver packages:  1
Added driver packages:  1
"""
ALREADY = """Microsoft PnP Utility

Adding driver package:  nv_dispwi.inf
Driver package added successfully. (Already exists in the system)
Published Name:         oem13.inf

Total driver packages:  1
Added driver packages:  1
"""
ADDED_ONLY = """Microsoft PnP Utility

Adding driver package:  nv_dispwi.inf
Driver package added successfully.
Published Name:         oem14.inf

Total driver packages:  1
Added driver packages:  1
"""


def pnp(rc, stdout, stderr=""):
    return ww.workstation_windows_pnputil({"rc": rc, "stdout": stdout, "stderr": stderr})


def test_pnputil_windows_10_added_and_installed_on_matching_devices_is_a_change():
    out = pnp(0, WIN10_ADDED)
    assert (out["changed"], out["failed"], out["reboot_required"]) == (True, False, False)
    assert out["published_name"] == "oem13.inf" and out["installed_on"] == ["matching devices"]


def test_pnputil_windows_11_installed_on_a_device_is_a_change_naming_the_device():
    out = pnp(0, WIN11_INSTALLED)
    assert out["changed"] is True
    assert out["installed_on"] == ["PCI\\VEN_10DE&DEV_1EB8&SUBSYS_12A010DE&REV_A1\\4&2b4f3e8c&0&0008"]


def test_pnputil_already_in_the_system_and_on_no_device_changes_nothing():
    out = pnp(0, ALREADY)
    assert (out["changed"], out["failed"], out["already_present"]) == (False, False, True)
    assert pnp(0, "Microsoft PnP Utility\n\nTotal driver packages:  1\nAdded driver packages:  0\n")["changed"] is False


def test_pnputil_a_package_newly_added_to_the_driver_store_is_a_change():
    assert pnp(0, ADDED_ONLY)["changed"] is True


def test_pnputil_3010_succeeds_and_asks_for_a_restart():
    out = pnp(3010, WIN10_ADDED + "System reboot is needed to complete install operations!\n")
    assert (out["changed"], out["failed"], out["reboot_required"]) == (True, False, True)
    assert "restart" in out["message"]


def test_pnputil_259_fails_because_the_gpu_still_runs_another_driver():
    out = pnp(259, ALREADY)
    assert out["failed"] is True and out["changed"] is False
    assert out["message"].startswith("pnputil failed (ERROR_NO_MORE_ITEMS: the package is in the driver store, but "
                                     "Windows installed it on no device")
    assert out["message"].endswith("details in %windir%\\inf\\setupapi.dev.log")


def test_pnputil_a_failed_add_names_pnputils_reason():
    out = pnp(2, "Microsoft PnP Utility\n\nAdding driver package:  nv_dispwi.inf\nFailed to add driver package: "
                 "The third-party INF does not contain digital signature information.\n")
    assert out["failed"] is True
    assert "Failed to add driver package: The third-party INF does not contain digital signature information." in (
        out["message"])


def test_pnputil_output_in_another_language_lets_the_exit_code_decide_and_assumes_a_change():
    german = "Microsoft-PnP-Dienstprogramm\n\nTreiberpaket wird hinzugefügt:  nv_dispwi.inf\n" \
             "Das Treiberpaket wurde erfolgreich hinzugefügt.\n"
    out = pnp(0, german)
    assert (out["changed"], out["failed"], out["recognised"]) == (True, False, False)


def test_driver_failures_name_gpu_driver_and_reason_or_pass_on_the_check_message():
    item = {**NV_DRIVER, "gpus": ["10de:1eb8"]}
    failed = {"failed": True, "results": [
        {"failed": True, "rc": 259, "stdout": ALREADY, "stderr": "", "item": item},
        {"failed": False, "rc": 0, "stdout": WIN10_ADDED, "item": item},
        {"failed": True, "msg": "the INF has sha256 x, the catalogue says y", "item": {"stat": {}}}]}
    messages = ww.workstation_windows_driver_failures(failed, "rad-ws-11")
    assert messages[0].startswith(f"the display driver nv_dispwi.inf 32.0.15.5324 ({NV_DRIVER['path']}) for GPU "
                                  "10de:1eb8 on rad-ws-11: pnputil failed (ERROR_NO_MORE_ITEMS")
    assert messages[1] == "the INF has sha256 x, the catalogue says y"
    record = ww.workstation_windows_driver_record({"drivers": [], "installs": []}, failed)
    assert [r["rc"] for r in record["installed"]] == [259, 0, None]


# --------------------------------------------------------------------------- the Windows Update loop


def run_loop(passes, max_passes=3, allow_reboot=True, check_mode=False):
    """Play the loop of tasks/patch.yml over (search, install) results, as the tasks do."""
    state = {}
    for number, (search, install) in enumerate(passes, start=1):
        if state.get("done"):
            break
        state = ww.workstation_windows_update_searched(state, search, number, max_passes, 900, check_mode)
        if state["done"]:
            break
        state = ww.workstation_windows_update_installed(state, install, number, 7200, allow_reboot)
        if not state["done"] and state["reboot_required"]:
            state = ww.workstation_windows_update_rebooted(state)
    return state, ww.workstation_windows_update_result(state, ["SecurityUpdates", "CriticalUpdates"])


def test_updates_installed_with_a_restart_then_none_found_is_complete():
    first = updates_result(update(*CU), update(*MSRT))
    installed = updates_result(update(*CU, installed=True), update(*MSRT, installed=True), reboot=True)
    state, result = run_loop([(first, installed), (updates_result(), None)])
    assert result["outcome"] == "complete" and result["passes"] == 1 and result["rebooted"] == 1
    assert result["installed_kbs"] == ["KB5034441", "KB890830"] and result["failed_kbs"] == []
    assert result["reboot_required"] is False and result["pending_kbs"] == []


def test_a_restart_needed_but_not_allowed_ends_the_loop_without_failing():
    installed = updates_result(update(*CU, installed=True), reboot=True)
    _, result = run_loop([(updates_result(update(*CU)), installed)], allow_reboot=False)
    assert result["outcome"] == "reboot_needed" and result["reboot_required"] is True
    assert result["message"].endswith("or set workstation_windows_allow_reboot")


def test_a_restart_windows_already_waits_for_keeps_the_loop_from_starting():
    # tasks/patch.yml starts the loop done when the restart is pending and not allowed.
    result = ww.workstation_windows_update_result({"done": True, "outcome": "reboot_pending", "reboot_required": True})
    assert (result["outcome"], result["reboot_required"], result["passes"]) == ("reboot_pending", True, 0)
    assert result["message"].startswith("Windows waits for a restart from an earlier installation")


def test_an_update_offered_again_after_the_restart_is_a_loop_naming_the_kb():
    installed = updates_result(update(*CU, installed=True), reboot=True)
    _, result = run_loop([(updates_result(update(*CU)), installed), (updates_result(update(*CU)), None)])
    assert result["outcome"] == "loop"
    assert result["problems"][0].startswith(f"update loop: KB5034441 ({CU[2]}) was installed in pass 1 and is offered "
                                            "again. Windows rolled it back at the restart")


def test_updates_still_found_after_the_last_pass_fail_naming_them():
    def installing(*rows):
        return updates_result(*[update(*r, installed=True) for r in rows], reboot=True)
    ssu = ("u-ssu", "5035349", "Servicing Stack Update")
    net = ("u-net", "5034467", ".NET Framework cumulative update")
    passes = [(updates_result(update(*CU)), installing(CU)), (updates_result(update(*ssu)), installing(ssu)),
              (updates_result(update(*net)), None)]
    _, result = run_loop(passes, max_passes=2)
    assert result["outcome"] == "incomplete" and result["installed_kbs"] == ["KB5034441", "KB5035349"]
    assert result["pending_kbs"] == ["KB5034467"]
    assert result["problems"] == [
        "1 update(s) still pending after 2 install pass(es) (workstation_windows_update_max_passes 2): KB5034467 "
        "(.NET Framework cumulative update); raise the bound, or look at Settings > Windows Update on the workstation"]


def test_a_failing_update_ends_the_loop_with_its_hresult_once_nothing_else_installs():
    failing = update(*MSRT, failure_hresult_code=-2145124318)
    first = updates_result(update(*CU, installed=True), failing, reboot=True)
    again = updates_result(failing)
    _, result = run_loop([(updates_result(update(*CU), update(*MSRT)), first), (updates_result(update(*MSRT)), again)])
    assert result["outcome"] == "failed" and result["failed_kbs"] == ["KB890830"]
    assert result["installed_kbs"] == ["KB5034441"] and result["pending_kbs"] == []
    assert result["problems"] == [f"Windows updates failed to install: KB890830 ({MSRT[2]}): HRESULT 0x80240022. Look "
                                  "the HRESULT up in Microsoft's Windows Update error code list, and read "
                                  "Get-WindowsUpdateLog"]


def test_an_update_that_failed_and_then_installed_is_no_longer_failed():
    failing = update(*MSRT, failure_hresult_code=-2145124318)
    passes = [(updates_result(update(*CU), update(*MSRT)),
               updates_result(update(*CU, installed=True), failing, reboot=True)),
              (updates_result(update(*MSRT)), updates_result(update(*MSRT, installed=True))),
              (updates_result(), None)]
    _, result = run_loop(passes)
    assert result["outcome"] == "complete" and result["failed_kbs"] == []
    assert result["installed_kbs"] == ["KB5034441", "KB890830"]


def test_a_search_or_install_that_hangs_is_stopped_and_named():
    _, result = run_loop([(TIMED_OUT, None)])
    assert result["outcome"] == "failed"
    assert result["problems"][0].startswith("the Windows Update search did not finish within 900 s and was stopped")
    _, result = run_loop([(updates_result(update(*CU)), {**TIMED_OUT, "msg": TIMED_OUT["msg"].replace("900", "7200")})])
    assert result["problems"][0].startswith("installing Windows updates did not finish within 7200 s and was stopped: "
                                            "raise workstation_windows_update_install_timeout")


def test_updates_found_but_none_installed_and_none_failed_end_the_loop():
    _, result = run_loop([(updates_result(update(*CU)), updates_result(update(*CU)))])
    assert result["outcome"] == "incomplete"
    assert result["problems"][0].startswith(f"Windows Update found KB5034441 ({CU[2]}) but installed none of them")


def test_check_mode_searches_once_and_says_what_would_be_installed():
    _, result = run_loop([(updates_result(update(*CU)), None)], check_mode=True)
    assert result["outcome"] == "would_install" and result["passes"] == 0
    assert result["message"] == f"check mode: 1 update(s) would be installed: KB5034441 ({CU[2]})"


# --------------------------------------------------------------------------- verification and failure


def test_compliance_names_what_differs_from_the_catalogue():
    stopped = {**QUADRO, "config_manager_error_code": 43}
    found = discovered(adapters=[stopped])
    problems = ww.workstation_windows_compliance(found, CATALOGUE, PRODUCT, "2.4.0", "rad-ws-11")
    assert problems[0] == "cu-viewer 2.4.0 is not installed on rad-ws-11 (installed: 2.3.0)"
    assert problems[1].startswith("GPU 10de:1eb8 (NVIDIA Quadro RTX 4000) on rad-ws-11 runs display driver "
                                  "31.0.15.3713 (nv_dispwi.inf), not the catalogued 32.0.15.5324 (nv_dispwi.inf) of "
                                  f"{WHERE}")
    assert problems[2] == ("GPU 10de:1eb8 (NVIDIA Quadro RTX 4000) on rad-ws-11 reports device problem code 43 "
                           "(Device Manager; 43: Windows stopped the device); check the driver and the card")
    current = ww.workstation_windows_discovery(
        probe(adapters=[{**QUADRO, "driver_version": "32.0.15.5324"}],
              viewer=[{"product_id": NEW_CODE, "display_name": "CU Viewer", "display_version": "2.4.0"}]),
        None, CATALOGUE, PRODUCT)
    assert ww.workstation_windows_compliance(current, CATALOGUE, PRODUCT, "2.4.0") == []


def test_the_verify_record_judges_the_pacs_echo():
    passed = ww.workstation_windows_verify_record([], {"status": 0, "latency_ms": 4.8, "changed": False}, "pacs1",
                                                  "RADWS11")
    assert passed["passed"] is True and passed["echo"]["status"] == "passed"
    failed = ww.workstation_windows_verify_record([], {"failed": False, "reason": "association_rejected",
                                                       "msg": "calling AE title not recognised"}, "pacs1", "RADWS11")
    assert failed["passed"] is False
    assert failed["problems"] == ["pacs1 does not answer C-ECHO as RADWS11: association_rejected: calling AE title not "
                                  "recognised"]
    skipped = ww.workstation_windows_verify_record(["viewer differs"], None, "", "")
    assert skipped["echo"]["status"] == "skipped" and skipped["problems"] == ["viewer differs"]


def test_the_failure_message_names_the_restore_point_to_go_back_to():
    result = {"restore_point": {"created": True, "sequence_number": 57, "description": "clinical-upgrade 2.4.0"}}
    message = ww.workstation_windows_failure_message(result, "viewer | Install the catalogued viewer cu-viewer 2.4.0",
                                                     "msiexec exit 1603", "rad-ws-11")
    assert message == ("viewer | Install the catalogued viewer cu-viewer 2.4.0 failed on rad-ws-11: msiexec exit 1603. "
                       "Restore point #57 (\"clinical-upgrade 2.4.0\") was taken before the change: to go back, choose "
                       "it in rstrui.exe on the workstation, or run Restore-Computer -RestorePoint 57 (Windows "
                       "restarts). Nothing was rolled back automatically.")
    own = ww.workstation_windows_failure_message({"restore_point": {"created": False, "reason": "nothing to change"}},
                                                 "patch | Fail naming the updates", "Windows updates on ws: ...", "ws")
    assert own == ("Windows updates on ws: ... No restore point was taken (nothing to change). Nothing was rolled "
                   "back automatically.")
