"""roles/workstation_windows: its public API (defaults/main.yml) and its argument specs
(meta/argument_specs.yml) say the same, every entry point parses, and bad inputs are refused on the
controller before any task reaches a workstation.

No Windows host is contacted: the playbooks run against a host named *.invalid over WinRM, and
every case here stops in the argument spec validation or the role's input validation, which both
run on the controller."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "workstation_windows"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
ENTRY_POINTS = ["main", "discover", "stage", "switch", "restore_point", "viewer", "driver", "patch", "verify"]
# The facts the role sets: public names, but results rather than inputs.
FACTS = {
    "workstation_windows_discovered",
    "workstation_windows_result",
    "workstation_windows_staged",
    "workstation_windows_switched",
}
TYPES = {"str": str, "path": str, "bool": bool, "int": int, "list": list, "dict": dict}

sys.path.insert(0, str(ROLE / "filter_plugins"))
import workstation_windows as filters  # noqa: E402

FILTER_NAMES = set(filters.FilterModule().filters())


def argument_specs() -> dict:
    """The specs as Ansible reads them (its loader resolves the anchors and merge keys)."""
    from ansible.parsing.yaml.loader import AnsibleLoader

    text = (ROLE / "meta" / "argument_specs.yml").read_text()
    return json.loads(json.dumps(AnsibleLoader(text).get_single_data()["argument_specs"]))


def defaults() -> dict:
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def is_template(value) -> bool:
    return isinstance(value, str) and "{{" in value


def test_every_entry_point_has_a_spec():
    assert sorted(argument_specs()) == sorted(ENTRY_POINTS)
    for entry in ENTRY_POINTS:
        assert (ROLE / "tasks" / f"{entry}.yml").is_file(), entry


def test_every_default_is_in_the_main_spec_with_its_type():
    options = argument_specs()["main"]["options"]
    for name, value in defaults().items():
        assert name.startswith("workstation_windows_"), name
        assert name in options, f"{name} is in defaults/main.yml but not in the main argument spec"
        spec = options[name]
        if is_template(value):
            # Its type is known when Ansible templates it; the spec states no default it would contradict.
            assert "default" not in spec, name
            continue
        expected = TYPES[spec["type"]]
        assert isinstance(value, expected) and not (expected is int and isinstance(value, bool)), (
            f"{name}: default {value!r} is not of spec type {spec['type']}"
        )
        if "elements" in spec:
            assert all(isinstance(item, TYPES[spec["elements"]]) for item in value), name
        if "choices" in spec:
            assert value in spec["choices"], name
        assert spec.get("default") == value, f"{name}: spec default {spec.get('default')!r}, defaults {value!r}"


def test_every_main_option_has_a_default_or_is_required():
    values = defaults()
    for name, spec in argument_specs()["main"]["options"].items():
        assert name in values or spec.get("required"), f"{name} has no default in defaults/main.yml and is not required"
        assert spec.get("description"), f"{name} has no description"


def test_main_takes_every_option_and_an_option_reads_the_same_everywhere():
    specs = argument_specs()
    main = specs["main"]["options"]
    for entry, spec in specs.items():
        for name, option in spec["options"].items():
            assert main.get(name) == option, f"{entry}: {name} differs from main's"


def tags(tasks) -> set:
    """The tags of tasks/main.yml (workstation_windows_viewer, ...): names, not variables."""
    found = set()
    for task in tasks or []:
        found |= set(task.get("tags") or []) | tags(task.get("block")) | tags(task.get("rescue"))
    return found


def test_every_public_variable_the_role_reads_is_documented():
    """A workstation_windows_* name in the tasks, vars or the README is a default, a fact, a filter or a tag."""
    known = set(defaults()) | FACTS | FILTER_NAMES | tags(yaml.safe_load((ROLE / "tasks" / "main.yml").read_text()))
    files = [*ROLE.glob("tasks/*.yml"), *ROLE.glob("vars/*.yml"), ROLE / "README.md"]
    for path in files:
        for name in set(re.findall(r"(?<![\w.])workstation_windows_[a-z0-9_]*[a-z0-9](?![\w*])", path.read_text())):
            assert name in known, f"{path.relative_to(REPO)} uses {name}, which defaults/main.yml does not define"


def test_the_readme_documents_every_public_variable():
    readme = (ROLE / "README.md").read_text()
    for name in defaults():
        assert f"`{name}`" in readme, f"README.md does not document {name}"


def ansible_playbook(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "workstations_windows": {
                            "hosts": {
                                "ws-test": {
                                    "ansible_host": "windows-host-for-tests.invalid",
                                    "ansible_connection": "winrm",
                                }
                            }
                        }
                    }
                }
            }
        )
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_every_entry_point_passes_syntax_check(tmp_path):
    result = ansible_playbook("--syntax-check", "tests/test_workstation_windows_entry_points.yml", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("entry", "extra", "message"),
    [
        (
            "patch",
            {"workstation_windows_update_max_passes": "many"},
            "argument 'workstation_windows_update_max_passes' is of type str",
        ),
        (
            "discover",
            {"workstation_windows_update_server_selection": "wsus"},
            "value of workstation_windows_update_server_selection must be one of: default, managed_server, "
            "windows_update, got: wsus",
        ),
        (
            "viewer",
            {"workstation_windows_allow_reboot": "perhaps"},
            "argument 'workstation_windows_allow_reboot' is of type str",
        ),
    ],
)
def test_the_argument_spec_refuses_a_bad_value(entry, extra, message, tmp_path):
    result = ansible_playbook(
        "tests/test_workstation_windows_validation.yml",
        "-e",
        json.dumps({"workstation_windows_test_entry": entry, **extra}),
        tmp_path=tmp_path,
    )
    assert result.returncode != 0
    assert f"Validating arguments against arg spec '{entry}'" in result.stdout
    assert message in result.stdout, result.stdout
    assert "discover | Read the OS" not in result.stdout  # stopped before any task that reaches the host


def test_the_role_refuses_driver_updates_and_an_uncatalogued_version_before_contacting_the_host(tmp_path):
    extra = {
        "workstation_windows_test_entry": "main",
        "workstation_windows_update_categories": ["SecurityUpdates", "Drivers"],
        "workstation_windows_product": "cu-viewer",
        "workstation_windows_target_version": "9.9",
        "release_catalogue": {"cu-viewer": {"2.4.0": {"install_method": "windows_installer"}}},
    }
    result = ansible_playbook(
        "tests/test_workstation_windows_validation.yml", "-e", json.dumps(extra), tmp_path=tmp_path
    )
    assert result.returncode != 0
    assert "validate | Refuse inputs the catalogue or a Windows workstation cannot take" in result.stdout
    assert "workstation_windows_update_categories contains 'Drivers'" in result.stdout
    assert "release_catalogue.cu-viewer['9.9']: not in the catalogue (catalogued: 2.4.0)" in result.stdout
    assert "discover | Read the OS" not in result.stdout
