"""roles/workstation_windows run for real by ansible-playbook, with stand-ins for the Windows modules.

This machine has no Windows host. To test the role's task flow (the includes, the bounded update
loop, the async searches, the rescues, the records and a second run that changes nothing), the
ansible.windows modules the role calls are replaced, for these runs only, by action plugins that
answer as the real modules do (their RETURN shapes) from a scenario file, and keep the workstation's
state in a file: what is installed, which driver each GPU runs, which updates are in. async_status
is replaced the same way (the role runs win_updates async). The stand-ins prove the role's wiring,
never Windows itself: molecule/windows runs the role against a real Windows host.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
OLD_CODE = "{11111111-1111-1111-1111-111111111111}"
NEW_CODE = "{22222222-2222-2222-2222-222222222222}"
MSI = r"C:\inst\cu-viewer-2.4.0.msi"
INF = r"\\share\drivers\nv_dispwi.inf"
PCI = r"PCI\VEN_10DE&DEV_1EB8"

STANDIN = '''
"""Stand-ins for ansible.windows modules (tests/unit/test_workstation_windows_flow.py)."""
import json, os, uuid
from ansible.plugins.action import ActionBase


def _load(name, default):
    path = os.environ[name]
    return json.load(open(path)) if os.path.exists(path) else default


def _state():
    return _load("STANDIN_STATE", {})


def _save(state):
    json.dump(state, open(os.environ["STANDIN_STATE"], "w"))


def _scenario():
    return _load("STANDIN_SCENARIO", {})


def _call(what):
    state = _state()
    state.setdefault("calls", []).append(what)
    _save(state)


def _job(result):
    jid = str(uuid.uuid4())
    json.dump(result, open(os.path.join(os.environ["STANDIN_JOBS"], jid), "w"))
    return {"ansible_job_id": jid, "started": 1, "finished": 0}


class WinPowershell(ActionBase):
    def run(self, tmp=None, task_vars=None):
        parameters = self._task.args.get("parameters") or {}
        if "Description" in parameters:
            _call("restore_point")
            return {"changed": True, "result": {"created": True, "sequence_number": 42,
                                                "description": parameters["Description"], "creation_time": "now"}}
        _call("discover")
        state, probe = _state(), dict(_scenario()["probe"])
        viewer = state.get("viewer")
        probe["viewer"] = [{"product_id": viewer["product_id"], "display_name": "CU Viewer",
                            "display_version": viewer["version"]}] if viewer else []
        adapters = []
        for adapter in probe["adapters"]:
            driver = state.get("drivers", {}).get(adapter["pnp_device_id"][:21].upper())
            if driver:
                store = "C:\\\\Windows\\\\System32\\\\DriverStore\\\\FileRepository\\\\"
                adapter = dict(adapter, driver_version=driver["version"],
                               installed_display_drivers=store + driver["inf"] + "_amd64_0b3a\\\\a.dll")
            adapters.append(adapter)
        probe["adapters"] = adapters
        return {"changed": False, "result": probe, "output": []}


class WinUpdates(ActionBase):
    def run(self, tmp=None, task_vars=None):
        self._supports_async = True
        assert self._task.async_val > 0, "the role runs win_updates async"
        state, scenario = _state(), _scenario()
        mode = self._task.args.get("state", "installed")
        _call("win_updates " + mode)
        if scenario.get("hang") and mode == "searched":
            return _job({"hang": True})
        done = _state().get("updates_installed", [])
        found = {u["id"]: {"id": u["id"], "kb": [u["kb"]], "title": u["title"], "installed": False,
                           "downloaded": False, "categories": ["Security Updates"]}
                 for u in scenario.get("updates", []) if u["id"] not in done}
        reboot = False
        if mode == "installed" and not self._task.check_mode:
            state = _state()
            for update in scenario.get("updates", []):
                if update["id"] in found:
                    found[update["id"]]["installed"] = True
                    state.setdefault("updates_installed", []).append(update["id"])
                    reboot = reboot or update.get("reboot", False)
            _save(state)
        return _job({"changed": any(u["installed"] for u in found.values()), "found_update_count": len(found),
                     "installed_update_count": sum(u["installed"] for u in found.values()), "failed_update_count": 0,
                     "updates": found, "filtered_updates": {}, "reboot_required": reboot, "rebooted": False})


class WinStat(ActionBase):
    def run(self, tmp=None, task_vars=None):
        assert self._task.args["checksum_algorithm"] == "sha256"
        files = _scenario()["files"]
        path = self._task.args["path"]
        return {"changed": False, "stat": {"exists": path in files, "checksum": files.get(path)}}


class WinPackage(ActionBase):
    def run(self, tmp=None, task_vars=None):
        args = self._task.args
        assert args["expected_return_code"] == [0, 3010] and args["checksum_algorithm"] == "sha256"
        _call("win_package " + args["path"])
        state = _state()
        if (state.get("viewer") or {}).get("product_id") == args["product_id"]:
            return {"changed": False, "rc": 0, "reboot_required": False}
        state["viewer"] = {"product_id": args["product_id"], "version": "2.4.0.100"}
        _save(state)
        return {"changed": True, "rc": 0, "reboot_required": False}


class WinCommand(ActionBase):
    def run(self, tmp=None, task_vars=None):
        argv = self._task.args["argv"]
        assert argv[0] == "pnputil.exe" and argv[1] == "/add-driver" and argv[3] == "/install", argv
        _call("pnputil " + argv[2])
        answer = _scenario()["pnputil"][argv[2]]
        if answer["rc"] in (0, 3010):
            state = _state()
            state.setdefault("drivers", {})[answer["pci"]] = {"version": answer["version"], "inf": answer["inf"]}
            _save(state)
        return {"changed": True, "rc": answer["rc"], "stdout": answer["stdout"], "stderr": ""}


class WinReboot(ActionBase):
    def run(self, tmp=None, task_vars=None):
        assert self._task.args["test_command"]
        _call("reboot")
        return {"changed": True, "rebooted": True, "elapsed": 1}


class AsyncStatus(ActionBase):
    def run(self, tmp=None, task_vars=None):
        jid = self._task.args["jid"]
        if self._task.args.get("mode") == "cleanup":
            return {"changed": False}
        result = json.load(open(os.path.join(os.environ["STANDIN_JOBS"], jid)))
        if result.get("hang"):
            return {"ansible_job_id": jid, "started": 1, "finished": 0, "_ansible_parsed": True}
        return {**result, "ansible_job_id": jid, "finished": 1, "_ansible_parsed": True}
'''
ACTIONS = {"win_powershell": "WinPowershell", "win_updates": "WinUpdates", "win_stat": "WinStat",
           "win_package": "WinPackage", "win_command": "WinCommand", "win_reboot": "WinReboot"}

PNPUTIL_WIN11 = ("Microsoft PnP Utility\n\nAdding driver package:  nv_dispwi.inf\nDriver package added successfully.\n"
                 "Published Name:         oem13.inf\nDriver package installed on device: "
                 "PCI\\VEN_10DE&DEV_1EB8&SUBSYS_12A010DE&REV_A1\\4&1\nTotal driver packages:  1\n"
                 "Added driver packages:  1\n")
SCENARIO = {
    "probe": {
        "os": {"caption": "Microsoft Windows 11 Enterprise", "version": "10.0.22631", "build": 22631, "ubr": 4317,
               "product_type": 1, "architecture": "64-bit"},
        "memory": {"total_mb": 32768, "free_mb": 20000}, "disk": {"drive": "C:", "size_mb": 500000, "free_mb": 200000},
        "adapters": [{"name": "NVIDIA Quadro RTX 4000", "pnp_device_id": PCI + r"&SUBSYS_12A010DE&REV_A1\4&1",
                      "driver_version": "31.0.15.3713", "inf_filename": "oem12.inf", "config_manager_error_code": 0,
                      "installed_display_drivers": r"C:\Windows\System32\DriverStore\FileRepository"
                                                   r"\nv_dispwi.inf_amd64_0b3a\nvldumdx.dll"}],
        "reboot_pending": False, "system_restore": {"available": True, "enabled": True}},
    "files": {MSI: "2" * 64, INF: "3" * 64},
    "pnputil": {INF: {"rc": 0, "pci": PCI, "version": "32.0.15.5324", "inf": "nv_dispwi.inf", "stdout": PNPUTIL_WIN11}},
    "updates": [{"id": "u1", "kb": "5034441", "title": "2024-01 Cumulative Update", "reboot": True},
                {"id": "u2", "kb": "890830", "title": "Malicious Software Removal Tool"}],
}
CATALOGUE = {"cu-viewer": {
    "2.3.0": {"install_method": "windows_installer",
              "installer": {"path": r"C:\inst\cu-viewer-2.3.0.msi", "sha256": "1" * 64, "product_id": OLD_CODE},
              "os": {"family": "Windows", "major_versions": ["10", "11"]}, "upgrade_from": [],
              "min_free_disk_mb": 1024, "min_memory_mb": 4096, "database_migration": "none"},
    "2.4.0": {"install_method": "windows_installer",
              "installer": {"path": MSI, "sha256": "2" * 64, "product_id": NEW_CODE},
              "os": {"family": "Windows", "major_versions": ["10", "11"]}, "upgrade_from": ["2.3.0"],
              "min_free_disk_mb": 1024, "min_memory_mb": 4096, "database_migration": "none",
              "display_drivers": [{"gpu": "10de:1eb8", "driver": {"path": INF, "sha256": "3" * 64,
                                                                 "inf": "nv_dispwi.inf", "version": "32.0.15.5324"}}]},
}}
PLAYBOOK = """\
- name: The role with stand-ins for the Windows modules
  hosts: workstations_windows
  gather_facts: false
  tasks:
    - name: Run the role
      ansible.builtin.include_role:
        name: workstation_windows
    - name: Write the record
      ansible.builtin.copy:
        content: "{{ workstation_windows_result | to_json }}"
        dest: "{{ record_file }}"
        mode: "0600"
      delegate_to: localhost
      changed_when: false  # the test's own file, not the workstation
"""


def standin_collection(tmp_path, source, actions) -> Path:
    """A collection ansible.windows under tmp_path/collections whose modules are the stand-ins of
    source (action plugins named by actions: {module: class}), async_status's stand-in in
    tmp_path/actions (returned: the ANSIBLE_ACTION_PLUGINS directory), and tmp_path/jobs."""
    collection = tmp_path / "collections" / "ansible_collections" / "ansible" / "windows"
    (collection / "plugins" / "action").mkdir(parents=True)
    (collection / "plugins" / "modules").mkdir(parents=True)
    (collection / "galaxy.yml").write_text(
        "namespace: ansible\nname: windows\nversion: 3.3.0\nreadme: R\nauthors: [tests]\n")
    (collection / "plugins" / "action" / "standin.py").write_text(source)
    for module, cls in actions.items():
        (collection / "plugins" / "action" / f"{module}.py").write_text(
            f"from ansible_collections.ansible.windows.plugins.action.standin import {cls} as ActionModule  # noqa\n")
        (collection / "plugins" / "modules" / f"{module}.py").write_text(
            f"DOCUMENTATION = '''\nmodule: {module}\nshort_description: stand-in\ndescription: [stand-in]\n"
            "options: {}\nauthor: [tests]\n'''\n")
    action_dir = tmp_path / "actions"
    action_dir.mkdir()
    (action_dir / "async_status.py").write_text(source + "\nActionModule = AsyncStatus\n")
    (tmp_path / "jobs").mkdir()
    return action_dir


@pytest.fixture
def workstation(tmp_path):
    """run(scenario_changes=None, **vars) -> (process, record, calls); the state lasts for the test."""
    actions = standin_collection(tmp_path, STANDIN, ACTIONS)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"viewer": {"product_id": OLD_CODE, "version": "2.3.0.5"}}))
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"workstations_windows": {"hosts": {"rad-ws-11": {
        "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}}}}))

    def run(scenario_changes=None, **extra):
        scenario = copy.deepcopy(SCENARIO)
        if scenario_changes:
            scenario_changes(scenario)
        (tmp_path / "scenario.json").write_text(json.dumps(scenario))
        record = tmp_path / "record.json"
        record.unlink(missing_ok=True)
        calls_before = len(json.loads(state.read_text()).get("calls", []))
        variables = {"release_catalogue": CATALOGUE, "workstation_windows_product": "cu-viewer",
                     "workstation_windows_target_version": "2.4.0", "workstation_windows_update_poll": 1,
                     "workstation_windows_post_reboot_delay": 0, "record_file": str(record), **extra}
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"), ANSIBLE_ACTION_PLUGINS=str(actions),
                   STANDIN_SCENARIO=str(tmp_path / "scenario.json"), STANDIN_STATE=str(state),
                   STANDIN_JOBS=str(tmp_path / "jobs"))
        proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook), "-e", json.dumps(variables)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
        calls = json.loads(state.read_text()).get("calls", [])[calls_before:]
        return proc, (json.loads(record.read_text()) if record.exists() else None), calls

    return run


def recap(proc) -> str:
    return next(line for line in proc.stdout.splitlines() if line.startswith("rad-ws-11 "))


def test_a_full_run_then_a_second_run_that_changes_nothing(workstation):
    proc, record, calls = workstation(workstation_windows_allow_reboot=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert calls == ["discover", "win_updates searched", "restore_point", f"win_package {MSI}", f"pnputil {INF}",
                     "win_updates searched", "win_updates installed", "reboot", "win_updates searched", "discover"]
    assert record["restore_point"]["created"] is True and record["restore_point"]["sequence_number"] == 42
    assert record["viewer"]["message"] == "cu-viewer 2.3.0 -> 2.4.0: installed"
    assert [(r["inf"], r["changed"], r["published_name"]) for r in record["driver"]["installed"]] == [
        ("nv_dispwi.inf", True, "oem13.inf")]
    assert record["patch"]["outcome"] == "complete" and record["patch"]["rebooted"] == 1
    assert record["patch"]["installed_kbs"] == ["KB5034441", "KB890830"]
    assert record["verify"]["passed"] is True

    proc, record, calls = workstation(workstation_windows_allow_reboot=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " changed=0 " in recap(proc)
    assert calls == ["discover", "win_updates searched", "win_updates searched", "discover"]
    assert record["restore_point"] == {"created": False, "failed": False, "reason": "nothing to change on this run"}


def test_a_restart_not_allowed_is_recorded_and_the_run_does_not_fail(workstation):
    proc, record, calls = workstation()
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "reboot" not in calls
    assert record["patch"]["outcome"] == "reboot_needed" and record["patch"]["reboot_required"] is True


def test_an_uncatalogued_gpu_is_refused_before_anything_changes(workstation):
    def amd(scenario):
        scenario["probe"]["adapters"][0].update(name="AMD Radeon Pro W6600",
                                                pnp_device_id=r"PCI\VEN_1002&DEV_73E3&SUBSYS_0\6&1")
    proc, record, calls = workstation(amd)
    assert proc.returncode != 0
    assert "GPU 1002:73e3 (AMD Radeon Pro W6600) on rad-ws-11 runs display driver 31.0.15.3713 (nv_dispwi.inf)" in (
        proc.stdout)
    assert calls == ["discover", "win_updates searched"]


def test_pnputil_259_fails_naming_gpu_and_driver_and_the_restore_point(workstation):
    def refused(scenario):
        scenario["pnputil"][INF].update(rc=259, stdout=textwrap.dedent("""\
            Microsoft PnP Utility

            Adding driver package:  nv_dispwi.inf
            Driver package added successfully. (Already exists in the system)
            Published Name:         oem13.inf

            Total driver packages:  1
            Added driver packages:  1
            """))
    proc, _, calls = workstation(refused)
    assert proc.returncode != 0
    assert calls[-1] == f"pnputil {INF}"
    assert (f"the display driver nv_dispwi.inf 32.0.15.5324 ({INF}) for GPU 10de:1eb8 on rad-ws-11: pnputil failed "
            "(ERROR_NO_MORE_ITEMS") in proc.stdout.replace("\\\\", "\\")
    assert "Restore point #42" in proc.stdout and "Nothing was rolled back automatically." in proc.stdout


def test_a_search_that_hangs_is_stopped_after_its_timeout(workstation):
    proc, _, calls = workstation(lambda scenario: scenario.update(hang=True),
                                 workstation_windows_update_search_timeout=2)
    assert proc.returncode != 0
    assert "the Windows Update search did not finish within 2 s and was stopped" in proc.stdout
    assert "win_updates installed" not in calls
