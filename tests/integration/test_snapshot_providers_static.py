# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Providers this machine cannot reach for real (VMware, Proxmox; LVM without device-mapper):
input validation with clear messages, argument specs of every entry point, the exact module
arguments built (snapshot_dry_run), checked against the collections' own documented options, and
the LVM probes against a real volume group on a loop device."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ENV, VENV_BIN

ENTRY_POINTS = ["main", "create", "revert", "remove", "show", "list"]
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
VMWARE = {
    **LOCAL,
    "snapshot_provider": "vmware",
    "snapshot_vmware_hostname": "vcenter.example.org",
    "snapshot_vmware_username": "svc-upgrade@vsphere.local",
    "snapshot_vmware_password": "S3cret-vmware-pw",
    "snapshot_vmware_datacenter": "DC1",
    "snapshot_vmware_folder": "/DC1/vm/pacs",
}
PROXMOX = {
    **LOCAL,
    "snapshot_provider": "proxmox",
    "snapshot_proxmox_api_host": "pve1.example.org",
    "snapshot_proxmox_api_user": "upgrade@pve",
    "snapshot_proxmox_api_token_id": "cu",
    "snapshot_proxmox_api_token_secret": "S3cret-token-value",
    "snapshot_proxmox_vmid": "101",
}


def module_options(module: str) -> dict:
    cmd = [str(VENV_BIN / "ansible-doc"), "-j", module]
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, check=True).stdout
    return json.loads(out)[module]["doc"]["options"]


def assert_valid_module_args(module: str, args: dict) -> None:
    """Every argument the role builds is an option the collection's module documents, with a valid choice."""
    options = module_options(module)
    for key, value in args.items():
        assert key in options, f"{module} has no option {key}"
        choices = options[key].get("choices")
        if choices:
            assert value in choices, f"{module} {key}={value!r} not in {choices}"
    required = [k for k, o in options.items() if o.get("required")]
    assert set(required) <= set(args), f"{module} requires {required}"


def seed_record(registry: Path, host: str, record: dict) -> None:
    """A record as an earlier (real) create run writes it, for revert/remove by id."""
    directory = registry / host
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{record['id']}.json").write_text(json.dumps(record))


# ----------------------------------------------------------------------------- argument specs

ROLE = Path(__file__).resolve().parents[2] / "roles" / "snapshot"
COMMON_OPTIONS = ["snapshot_provider", "snapshot_registry_dir", "snapshot_host_registry_dir", "snapshot_dry_run"]
PROVIDER_OPTIONS = [
    "snapshot_files_paths", "snapshot_files_services", "snapshot_files_dir", "snapshot_files_reserve_bytes",
    "snapshot_files_report_max",
    "snapshot_podman_container", "snapshot_podman_containers_conf", "snapshot_podman_image_repository",
    "snapshot_podman_export_dir", "snapshot_podman_boot_timeout", "snapshot_podman_link_volumes",
    "snapshot_podman_link_dir", "snapshot_podman_commit_paused", "snapshot_files_link_paths", "snapshot_files_link_dir",
    "snapshot_lvm_vg", "snapshot_lvm_lvs", "snapshot_lvm_size", "snapshot_lvm_allow_boot_lv",
    "snapshot_vmware_hostname", "snapshot_vmware_username", "snapshot_vmware_password",
    "snapshot_vmware_validate_certs", "snapshot_vmware_datacenter", "snapshot_vmware_folder", "snapshot_vmware_vm_name",
    "snapshot_vmware_quiesce",
    "snapshot_vmware_memory_dump",
    "snapshot_proxmox_api_host", "snapshot_proxmox_api_user", "snapshot_proxmox_api_password",
    "snapshot_proxmox_api_token_id", "snapshot_proxmox_api_token_secret", "snapshot_proxmox_validate_certs",
    "snapshot_proxmox_vmid", "snapshot_proxmox_guest_type", "snapshot_proxmox_vmstate", "snapshot_proxmox_timeout",
]
CREATE_OPTIONS = [*COMMON_OPTIONS, *PROVIDER_OPTIONS, "snapshot_name", "snapshot_description", "snapshot_annotations",
                  "snapshot_async_timeout", "snapshot_async_poll"]
EXPECTED_OPTIONS = {
    "main": CREATE_OPTIONS,
    "create": CREATE_OPTIONS,
    "revert": [*COMMON_OPTIONS, *PROVIDER_OPTIONS, "snapshot_id", "snapshot_verify_on_revert", "snapshot_allow_reboot",
               "snapshot_reboot_timeout"],
    "remove": [*COMMON_OPTIONS, *PROVIDER_OPTIONS, "snapshot_id", "snapshot_keep"],
    "show": [*COMMON_OPTIONS, *PROVIDER_OPTIONS, "snapshot_id"],
    "list": ["snapshot_provider", "snapshot_registry_dir", "snapshot_host_registry_dir"],
}


def argument_specs() -> dict:
    """The specs as Ansible reads them (its YAML loader resolves the anchors and merge keys)."""
    from ansible.parsing.yaml.loader import AnsibleLoader

    text = (ROLE / "meta" / "argument_specs.yml").read_text()
    return json.loads(json.dumps(AnsibleLoader(text).get_single_data()["argument_specs"]))


def test_argument_specs_give_every_entry_point_exactly_its_options():
    specs = argument_specs()
    assert sorted(specs) == sorted(ENTRY_POINTS)
    for entry, expected in EXPECTED_OPTIONS.items():
        assert sorted(specs[entry]["options"]) == sorted(expected), entry
    # a shared option reads the same in every entry point that takes it
    for name in {n for entry in specs.values() for n in entry["options"]} - {"snapshot_provider"}:
        variants = [entry["options"][name] for entry in specs.values() if name in entry["options"]]
        assert all(v == variants[0] for v in variants), name
    assert all(specs[e]["options"]["snapshot_provider"]["required"] is True for e in ENTRY_POINTS if e != "list")
    assert "required" not in specs["list"]["options"]["snapshot_provider"]
    for secret in ["snapshot_vmware_password", "snapshot_proxmox_api_password", "snapshot_proxmox_api_token_secret"]:
        assert specs["revert"]["options"][secret]["no_log"] is True


def test_argument_specs_and_defaults_name_the_same_public_variables():
    import yaml

    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    options = {n for entry in argument_specs().values() for n in entry["options"]}
    assert set(defaults) == options - {"snapshot_provider"}
    for entry in argument_specs().values():
        for name, spec in entry["options"].items():
            if "default" in spec:
                assert spec["default"] == defaults[name], name



@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_argument_spec_rejects_unknown_provider(entry, run_playbook):
    proc, _ = run_playbook("snapshot_action.yml", {**LOCAL, "snapshot_provider": "zfs"}, {"snaptest_action": entry})
    assert proc.returncode != 0
    assert f"Validating arguments against arg spec '{entry}'" in proc.stdout
    assert (
        "value of snapshot_provider must be one of: files, podman, lvm, vmware, proxmox, windows_restore_point, "
        "got: zfs" in proc.stdout
    )


@pytest.mark.parametrize("entry", ["main", "create", "revert", "remove", "show"])
def test_argument_spec_requires_provider(entry, run_playbook):
    proc, _ = run_playbook("snapshot_action.yml", LOCAL, {"snaptest_action": entry})
    assert proc.returncode != 0
    assert "missing required arguments: snapshot_provider" in proc.stdout


@pytest.mark.parametrize(("entry", "var", "value"), [
    ("main", "snapshot_files_paths", "not-a-list-but-a-dict={}"),
    ("create", "snapshot_vmware_quiesce", "perhaps"),
    ("revert", "snapshot_verify_on_revert", "perhaps"),
    ("remove", "snapshot_keep", "perhaps"),
])
def test_argument_spec_rejects_wrong_types(entry, var, value, run_playbook):
    hv = {**LOCAL, "snapshot_provider": "files", var: value}
    if var == "snapshot_files_paths":
        hv[var] = {"a": 1}
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": entry})
    assert proc.returncode != 0
    assert f"Validating arguments against arg spec '{entry}'" in proc.stdout
    assert var in proc.stdout


# ----------------------------------------------------------------------------- common validation


def test_bad_snapshot_name_names_the_variable_and_the_fix(run_playbook):
    proc, _ = run_playbook("snapshot_action.yml", VMWARE, {"snaptest_action": "create", "snapshot_name": "../etc/x y"})
    assert proc.returncode != 0
    assert 'snapshot_name "../etc/x y" is not valid: use 1 to 100 letters, digits' in proc.stdout


def test_revert_of_unknown_id_lists_known_ids(run_playbook):
    record = {"id": "known-1", "host": "snaptest-host", "provider": "vmware"}
    seed_record(run_playbook.registry, "snaptest-host", record)
    proc, _ = run_playbook("snapshot_action.yml", VMWARE, {"snaptest_action": "revert", "snapshot_id": "nope"})
    assert proc.returncode != 0
    assert 'snapshot_id "nope" is unknown for snaptest-host' in proc.stdout
    assert "Known ids: known-1." in proc.stdout


def test_revert_without_id_in_a_fresh_play_says_what_to_do(run_playbook):
    proc, _ = run_playbook("snapshot_action.yml", VMWARE, {"snaptest_action": "revert"})
    assert proc.returncode != 0
    assert "snapshot_id is empty for snaptest-host: run the snapshot role's create entry point" in proc.stdout


def test_revert_refuses_a_record_of_another_provider(run_playbook):
    seed_record(run_playbook.registry, "snaptest-host", {"id": "p1", "host": "snaptest-host", "provider": "proxmox"})
    proc, _ = run_playbook("snapshot_action.yml", VMWARE, {"snaptest_action": "revert", "snapshot_id": "p1"})
    assert proc.returncode != 0
    assert "snapshot p1 was taken by provider proxmox on snaptest-host" in proc.stdout


def test_dry_run_is_refused_for_files_and_podman(run_playbook):
    hv = {**LOCAL, "snapshot_provider": "files", "snapshot_files_paths": ["/srv"], "snapshot_dry_run": True}
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create"})
    assert proc.returncode != 0
    assert "snapshot_dry_run is for the lvm, vmware and proxmox providers" in proc.stdout


@pytest.mark.parametrize(("hv", "message"), [
    ({"snapshot_files_paths": []}, "snapshot_files_paths must list the absolute directories"),
    ({"snapshot_files_paths": ["relative/dir"]}, "snapshot_files_paths must list the absolute directories"),
    ({"snapshot_files_paths": ["/"]}, "snapshot_files_paths must list the absolute directories"),
    ({"snapshot_files_paths": ["/srv/../etc"]}, "snapshot_files_paths must list the absolute directories"),
    ({"snapshot_files_paths": ["/var"], "snapshot_files_dir": "/var/backups/cu"},
     "snapshot_files_dir /var/backups/cu overlaps snapshot_files_paths or snapshot_files_link_paths ['/var']"),
    ({"snapshot_files_paths": ["/srv/a"], "snapshot_files_services": ["orthanc; rm -rf /"]},
     "snapshot_files_services must be systemd unit names"),
])
def test_files_settings_are_validated(hv, message, run_playbook):
    proc, _ = run_playbook("snapshot_action.yml", {**LOCAL, "snapshot_provider": "files", **hv},
                           {"snaptest_action": "create"})
    assert proc.returncode != 0
    assert message in proc.stdout


def test_podman_settings_are_validated(run_playbook):
    hv = {**LOCAL, "snapshot_provider": "podman", "snapshot_podman_containers_conf": "/nonexistent/containers.conf"}
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create"})
    assert proc.returncode != 0
    assert "snapshot_podman_containers_conf must be an existing file" in proc.stdout


# ----------------------------------------------------------------------------- vmware


def test_vmware_missing_settings_are_named(run_playbook):
    hv = {**VMWARE, "snapshot_vmware_password": "", "snapshot_vmware_folder": ""}
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create"})
    assert proc.returncode != 0
    assert "vmware provider for snaptest-host: missing snapshot_vmware_password, snapshot_vmware_folder." in proc.stdout


def test_vmware_create_builds_the_module_arguments(run_playbook):
    proc, facts = run_playbook("snapshot_action.yml", {**VMWARE, "snapshot_dry_run": True},
                               {"snaptest_action": "create", "snapshot_name": "cu-pacs1-pre"}, verbosity=3)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "S3cret-vmware-pw" not in proc.stdout + proc.stderr
    (call,) = facts["snapshot_plan"]
    assert call["module"] == "community.vmware.vmware_guest_snapshot"
    assert call["args"] == {
        "hostname": "vcenter.example.org", "username": "svc-upgrade@vsphere.local", "password": "********",
        "validate_certs": True, "datacenter": "DC1", "folder": "/DC1/vm/pacs", "name": "snaptest-host",
        "state": "present", "snapshot_name": "cu-pacs1-pre", "description": "clinical-upgrade snapshot",
        "quiesce": True, "memory_dump": False,
    }
    assert_valid_module_args(call["module"], call["args"])
    assert not (run_playbook.registry / "snaptest-host" / "cu-pacs1-pre.json").exists(), "a dry run records nothing"


def test_vmware_revert_and_remove_build_the_module_arguments(run_playbook):
    record = {"id": "cu-pacs1-pre", "name": "cu-pacs1-pre", "host": "snaptest-host", "provider": "vmware",
              "created": "2025-01-01T00:00:00Z", "size_bytes": 0,
              "vmware": {"datacenter": "DC1", "folder": "/DC1/vm/pacs", "vm_name": "pacs1-vm"}}
    seed_record(run_playbook.registry, "snaptest-host", record)
    proc, facts = run_playbook("snapshot_action.yml", {**VMWARE, "snapshot_dry_run": True},
                               {"snaptest_action": "revert", "snapshot_id": "cu-pacs1-pre"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    revert, power = facts["snapshot_plan"]
    assert revert["args"]["state"] == "revert" and revert["args"]["snapshot_name"] == "cu-pacs1-pre"
    assert revert["args"]["name"] == "pacs1-vm"
    assert_valid_module_args(revert["module"], revert["args"])
    assert power["module"] == "community.vmware.vmware_guest_powerstate" and power["args"]["state"] == "powered-on"
    assert_valid_module_args(power["module"], power["args"])

    proc, facts = run_playbook("snapshot_action.yml", {**VMWARE, "snapshot_dry_run": True},
                               {"snaptest_action": "remove", "snapshot_id": "cu-pacs1-pre", "snapshot_keep": False})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (remove,) = facts["snapshot_plan"]
    assert remove["args"]["state"] == "absent"
    assert_valid_module_args(remove["module"], remove["args"])
    assert (run_playbook.registry / "snaptest-host" / "cu-pacs1-pre.json").exists(), "a dry run removes nothing"


# ----------------------------------------------------------------------------- proxmox


def test_proxmox_validation(run_playbook):
    hv = {**PROXMOX, "snapshot_proxmox_api_password": "also-set", "snapshot_proxmox_vmid": "pacs1"}
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create"})
    assert proc.returncode != 0
    assert 'snapshot_proxmox_vmid to the guest\'s numeric id (got "pacs1")' in proc.stdout
    assert "exactly one way to log in" in proc.stdout

    proc, _ = run_playbook("snapshot_action.yml", PROXMOX, {"snaptest_action": "create", "snapshot_name": "cu.pre.1"})
    assert proc.returncode != 0
    assert 'snapshot_name "cu.pre.1" is not valid for Proxmox' in proc.stdout


def test_proxmox_builds_the_module_arguments(run_playbook):
    proc, facts = run_playbook("snapshot_action.yml", {**PROXMOX, "snapshot_dry_run": True},
                               {"snaptest_action": "create", "snapshot_name": "cu-pre"}, verbosity=3)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "S3cret-token-value" not in proc.stdout + proc.stderr
    (call,) = facts["snapshot_plan"]
    assert call["module"] == "community.proxmox.proxmox_snap"
    assert call["args"] == {
        "api_host": "pve1.example.org", "api_user": "upgrade@pve", "api_token_id": "cu", "api_token_secret": "********",
        "validate_certs": True, "vmid": "101", "state": "present", "snapname": "cu-pre",
        "description": "clinical-upgrade snapshot", "vmstate": False, "timeout": 300,
    }
    assert_valid_module_args(call["module"], call["args"])

    seed_record(run_playbook.registry, "snaptest-host",
                {"id": "cu-pre", "host": "snaptest-host", "provider": "proxmox", "created": "2025-01-01T00:00:00Z"})
    proc, facts = run_playbook("snapshot_action.yml", {**PROXMOX, "snapshot_dry_run": True},
                               {"snaptest_action": "revert", "snapshot_id": "cu-pre"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rollback, start = facts["snapshot_plan"]
    assert rollback["args"]["state"] == "rollback" and rollback["args"]["snapname"] == "cu-pre"
    assert_valid_module_args(rollback["module"], rollback["args"])
    assert start["module"] == "community.proxmox.proxmox_kvm" and start["args"]["state"] == "started"
    assert_valid_module_args(start["module"], start["args"])


# ----------------------------------------------------------------------------- lvm


def test_lvm_settings_are_validated(run_playbook):
    hv = {**LOCAL, "snapshot_provider": "lvm", "snapshot_lvm_vg": "vg0", "snapshot_lvm_lvs": []}
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create"})
    assert proc.returncode != 0
    assert "set snapshot_lvm_vg to the volume group" in proc.stdout

    hv = {**hv, "snapshot_lvm_lvs": ["data"], "snapshot_lvm_size": "20%FREE"}
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create"})
    assert proc.returncode != 0
    assert 'snapshot_lvm_size "20%FREE" is not understood: use N%ORIGIN' in proc.stdout


@pytest.fixture
def loop_vg(tmp_path):
    """A real LVM volume group on a loop device (device-mapper is not needed for VG metadata)."""
    if shutil.which("vgcreate") is None:
        pytest.fail("lvm2 is not installed: apt-get install lvm2 (the Makefile's DEB_PACKAGES)")
    image = tmp_path / "cu-snaptest-pv.img"
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    dev = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True,
                         check=True).stdout.strip()
    vg = f"cu_snaptest_{tmp_path.name[-6:].replace('-', '_')}"
    try:
        subprocess.run(["vgcreate", "-q", vg, dev], capture_output=True, check=True)
        yield vg
    finally:
        subprocess.run(["vgremove", "-f", vg], capture_output=True, check=False)
        subprocess.run(["pvremove", "-f", dev], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)


def test_lvm_probes_a_real_volume_group(loop_vg, run_playbook):
    hv = {**LOCAL, "snapshot_provider": "lvm", "snapshot_lvm_vg": "cu_snaptest_absent", "snapshot_lvm_lvs": ["data"]}
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create"})
    assert proc.returncode != 0
    assert 'snapshot_lvm_vg "cu_snaptest_absent" is not a volume group on snaptest-host' in proc.stdout

    hv["snapshot_lvm_vg"] = loop_vg
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create"})
    assert proc.returncode != 0
    assert f"snapshot_lvm_lvs: data not found in volume group {loop_vg} on snaptest-host" in proc.stdout


def test_lvm_revert_and_remove_of_a_recorded_snapshot(loop_vg, run_playbook):
    record = {"id": "pre", "host": "snaptest-host", "provider": "lvm", "created": "2025-01-01T00:00:00Z",
              "lvm": {"vg": loop_vg, "volumes": [{"origin": "data", "snapshot": "pre.data", "size": "20%ORIGIN"}]}}
    seed_record(run_playbook.registry, "snaptest-host", record)
    hv = {**LOCAL, "snapshot_provider": "lvm", "snapshot_lvm_vg": loop_vg, "snapshot_lvm_lvs": ["data"],
          "snapshot_dry_run": True}
    # the snapshot LV is not in the VG: the merge is refused before anything happens
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "revert", "snapshot_id": "pre"})
    assert proc.returncode != 0
    assert "snapshot pre of snaptest-host cannot be merged, nothing was changed: missing ['pre.data']" in proc.stdout

    proc, facts = run_playbook("snapshot_action.yml", hv,
                               {"snaptest_action": "remove", "snapshot_id": "pre", "snapshot_keep": False})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (call,) = facts["snapshot_plan"]
    assert call == {"module": "community.general.lvol",
                    "args": {"vg": loop_vg, "lv": "pre.data", "state": "absent", "force": True}}
    assert_valid_module_args(call["module"], call["args"])


# ----------------------------------------------------------------------------- module_defaults


@pytest.mark.parametrize(("hv", "action", "module", "expected"), [
    ({**VMWARE, "snapshot_vmware_hostname": "127.0.0.1"}, "create", "vmware_guest_snapshot",
     {"hostname": "127.0.0.1", "username": "svc-upgrade@vsphere.local", "validate_certs": True,
      "datacenter": "DC1", "folder": "/DC1/vm/pacs", "snapshot_name": "cu-pre", "state": "present"}),
    ({**PROXMOX, "snapshot_proxmox_api_host": "127.0.0.1"}, "create", "proxmox_snap",
     {"api_host": "127.0.0.1", "api_user": "upgrade@pve", "api_token_id": "cu", "validate_certs": True,
      "vmid": "101", "snapname": "cu-pre", "state": "present"}),
])
def test_real_calls_get_the_connection_from_module_defaults(hv, action, module, expected, run_playbook):
    """Without a hypervisor here, the real call fails to connect; the arguments the module received (its
    invocation) show the connection and credentials came from the action group's module_defaults."""
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": action, "snapshot_name": "cu-pre"},
                           verbosity=3)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "S3cret" not in out
    start = out.index('"invocation"', out.index(f"{module}"))
    invocation = json.JSONDecoder().raw_decode(out[out.index("{", start):])[0]
    args = invocation["module_args"]
    for key, value in expected.items():
        assert args[key] == value, key
    secret = "password" if module.startswith("vmware") else "api_token_secret"
    assert args[secret] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


# ----------------------------------------------------------------------------- progress of long steps

PROGRESS_PLAYBOOK = """
- name: Wait for a slow background step with the snapshot role's progress loop
  hosts: localhost
  gather_facts: false
  vars:
    snapshot_async_poll: 1
  tasks:
    - name: Note the start
      ansible.builtin.set_fact:
        __snapshot_job_started: "{{ now(utc=true, fmt='%Y-%m-%dT%H:%M:%SZ') }}"
    - name: Start a slow step that writes a file
      ansible.builtin.shell: "for i in 1 2 3 4; do head -c 100000 /dev/zero >> OUT; sleep 1; done; exit EXIT"
      async: 60
      poll: 0
      register: job
      changed_when: true
    - name: Wait for it
      ansible.builtin.include_role:
        name: snapshot
        tasks_from: common/async_wait.yml
      vars:
        __snapshot_job: "{{ job }}"
        __snapshot_job_label: slow step
        __snapshot_job_output: OUT
        __snapshot_job_where: localhost
"""


@pytest.mark.parametrize("exit_code", [0, 3])
def test_progress_loop_shows_elapsed_time_and_bytes_and_passes_on_failure(exit_code, tmp_path):
    out = tmp_path / "written.bin"
    playbook = tmp_path / "progress.yml"
    playbook.write_text(PROGRESS_PLAYBOOK.replace("OUT", str(out)).replace("EXIT", str(exit_code)))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"localhost": LOCAL}}}))
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)],
                          cwd=Path(__file__).resolve().parents[2], env=ENV, capture_output=True, text=True,
                          timeout=120)
    lines = [line.strip() for line in proc.stdout.splitlines() if "slow step:" in line]
    running = [line for line in lines if "slow step: running for" in line]
    assert running, proc.stdout
    assert all(f"bytes written to {out}" in line for line in running)
    assert len({line.split("bytes")[0] for line in running}) == len(running), "the numbers move"
    if exit_code == 0:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "slow step: finished after" in lines[-1] and f"400000 bytes written to {out}" in lines[-1]
    else:
        assert proc.returncode != 0
        assert '"rc": 3' in proc.stdout and "non-zero return code" in proc.stdout
