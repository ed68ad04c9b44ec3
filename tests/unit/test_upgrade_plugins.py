"""Every product plug-in of the upgrade flow (roles/upgrade/vars/<product>.yml) has every key the flow
reads, and each entry point it names exists.

The keys are found in the flow itself (roles/upgrade/tasks/*.yml and vars/main.yml): a key the flow
reads only after `__upgrade_plugin.<key> is defined` is optional (mark, preserve, redeliver, fetch,
cleanup, probe); every other one is required. Read statically: no host is contacted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
UPGRADE = REPO / "roles" / "upgrade"
PLUGINS = sorted(p for p in (UPGRADE / "vars").glob("*.yml") if p.name != "main.yml")
FLOW = [*(UPGRADE / "tasks").glob("*.yml"), UPGRADE / "vars" / "main.yml"]
# Keys whose value is an entry point of the product's role: {tasks_from, result}.
ENTRY_POINT_KEYS = {"discover", "stage", "switch", "mark", "preserve", "redeliver", "fetch", "cleanup"}


def flow_keys() -> tuple[set[str], set[str]]:
    """(every key of __upgrade_plugin the flow reads, those it reads only when defined)."""
    text = "\n".join(path.read_text() for path in FLOW)
    read = set(re.findall(r"__upgrade_plugin\.([a-z_]+)", text))
    optional = set(re.findall(r"__upgrade_plugin\.([a-z_]+) is defined", text))
    # redeliver runs only when preserve kept something (undo.yml: upgrade_result.preserved is not none).
    if "preserve" in optional:
        optional.add("redeliver")
    return read, optional


def plugin(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["__upgrade_plugin"]


def test_the_flow_reads_the_keys_this_test_expects():
    read, optional = flow_keys()
    assert {
        "name",
        "catalogue_product",
        "target_version",
        "allow_downgrade",
        "role",
        "discover",
        "stage",
        "switch",
        "verify_profile",
    } <= read - optional
    assert optional <= ENTRY_POINT_KEYS | {"probe"}


def test_the_windows_workstation_is_a_plugin():
    assert UPGRADE / "vars" / "workstation_windows.yml" in PLUGINS


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: p.stem)
def test_a_plugin_has_every_key_the_flow_reads(path):
    read, optional = flow_keys()
    found = plugin(path)
    assert found["name"] == path.stem
    missing = sorted((read - optional) - set(found))
    assert not missing, f"{path.relative_to(REPO)} lacks {missing}, which roles/upgrade reads"
    unknown = sorted(set(found) - read)
    assert not unknown, f"{path.relative_to(REPO)} has {unknown}, which roles/upgrade never reads"


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: p.stem)
def test_every_entry_point_exists_and_sets_its_result(path):
    found = plugin(path)
    role = REPO / "roles" / found["role"]
    tasks = "\n".join(p.read_text() for p in (role / "tasks").glob("*.yml"))
    for key in sorted(ENTRY_POINT_KEYS & set(found)):
        entry = found[key]
        assert set(entry) == {"tasks_from", "result"}, (path.stem, key)
        assert (role / "tasks" / f"{entry['tasks_from']}.yml").is_file(), (path.stem, key, entry)
        assert re.search(rf"^\s+{entry['result']}:", tasks, re.MULTILINE), (
            f"{found['role']} sets no fact {entry['result']} ({path.stem}'s {key})"
        )


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: p.stem)
def test_the_verify_profile_has_a_baseline_and_a_compare(path):
    profile = plugin(path)["verify_profile"]
    tasks = REPO / "roles" / "dicom_verify" / "tasks"
    for entry in ("baseline", "compare", "main"):
        assert f"'{profile}'" in (tasks / f"{entry}.yml").read_text(), (entry, profile)
    assert (tasks / f"baseline_{profile}.yml").is_file()
    assert (tasks / f"compare_{profile}.yml").is_file()
    assert (tasks / f"{profile}.yml").is_file()  # the health check after a revert without a baseline
