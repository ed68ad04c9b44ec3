"""awx/controller.yml, the Controller's configuration as code: every entry checked against the argument
spec of the awx.awx module that playbooks/awx_configure.yml gives it to (read with ansible-doc --json),
the surveys against AWX's survey format, and the schedules built from the site's maintenance windows.
No Controller runs here."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dateutil.rrule import rrulestr

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "filter_plugins"))

from controller import controller_schedules  # noqa: E402

BIN = Path(sys.executable).parent
CONFIG = yaml.safe_load((REPO / "awx" / "controller.yml").read_text())
MODULES = {
    "controller_organizations": "organization",
    "controller_execution_environments": "execution_environment",
    "controller_credentials": "credential",
    "controller_projects": "project",
    "controller_inventories": "inventory",
    "controller_inventory_sources": "inventory_source",
    "controller_job_templates": "job_template",
    "controller_workflow_job_templates": "workflow_job_template",
    "schedules": "schedule",
}
TYPES = {"str": str, "int": int, "bool": bool, "list": list, "dict": dict, "path": str, "raw": object}
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}


@functools.cache
def spec(module):
    out = subprocess.run([str(BIN / "ansible-doc"), "--json", f"awx.awx.{module}"], capture_output=True, text=True,
                         check=True, timeout=120).stdout  # fmt: skip
    return json.loads(out)[f"awx.awx.{module}"]["doc"]["options"]


def problems(options, value, where):
    """What in value the options do not accept: unknown keys, a missing required one, a type, a choice."""
    found = []
    if not isinstance(value, dict):
        return [f"{where}: a mapping, got {type(value).__name__}"]
    for name, option in options.items():
        if option.get("required") and name not in value:
            found.append(f"{where}: {name} is required")
    for key, item in value.items():
        if key not in options:
            found.append(f"{where}: {key} is not an option")
            continue
        option = options[key]
        wanted = TYPES.get(option.get("type", "str"), object)
        templated = isinstance(item, str) and "{{" in item
        if not templated and not isinstance(item, wanted) and not (wanted is str and isinstance(item, (int, float))):
            found.append(f"{where}.{key}: {option.get('type')} expected, got {type(item).__name__}")
        if option.get("choices") and not templated and item not in option["choices"]:
            found.append(f"{where}.{key}: {item!r} is not one of {option['choices']}")
        if option.get("suboptions"):
            elements = item if option.get("type") == "list" else [item]
            for index, element in enumerate(elements):
                found += problems(option["suboptions"], element, f"{where}.{key}[{index}]")
    return found


def schedules():
    site = yaml.safe_load((REPO / "inventories/example/group_vars/all/maintenance.yml").read_text())
    return controller_schedules(site["maintenance_windows"], site["maintenance_timezone"],
                                CONFIG["controller_scheduled_templates"], CONFIG["controller_schedule_start_date"])


@pytest.mark.parametrize("key", sorted(MODULES))
def test_every_entry_is_valid_for_its_module(key):
    entries = schedules() + CONFIG["controller_monitor_schedules"] if key == "schedules" else CONFIG[key]
    assert entries, key
    found = [p for index, entry in enumerate(entries) for p in problems(spec(MODULES[key]), entry, f"{key}[{index}]")]
    assert not found, found


def test_the_check_finds_what_a_module_would_refuse():
    wrong = {"name": "x", "playbok": "a.yml", "verbosity": 9, "survey_enabled": "yes", "job_type": "deploy"}
    assert sorted(problems(spec("job_template"), wrong, "t")) == [
        "t.job_type: 'deploy' is not one of ['run', 'check']", "t.survey_enabled: bool expected, got str",
        "t.verbosity: 9 is not one of [0, 1, 2, 3, 4, 5]", "t: playbok is not an option"]
    assert problems(spec("workflow_job_template"), {"name": "w", "workflow_nodes": [{"related": {}}]}, "w") == [
        "w.workflow_nodes[0]: identifier is required"]


def test_the_playbook_gives_each_list_to_its_module_and_passes_syntax_check():
    play = yaml.safe_load((REPO / "playbooks" / "awx_configure.yml").read_text())[0]
    used = {next(k for k in t if k.startswith("awx.awx.")).split(".")[-1]: t["loop"]
            for t in play["tasks"] if any(k.startswith("awx.awx.") for k in t)}
    expected = {module: "{{ __controller_schedules + controller_monitor_schedules }}" if key == "schedules"
                else "{{ " + key + " }}"
                for key, module in MODULES.items()}
    assert used == expected
    subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,",
                    str(REPO / "playbooks" / "awx_configure.yml")], cwd=REPO, check=True, capture_output=True,
                   timeout=120)  # fmt: skip


def test_job_templates_run_playbooks_of_the_project_and_surveys_ask_for_variables_the_code_reads():
    code = "\n".join(p.read_text() for base in ("roles", "playbooks") for p in (REPO / base).rglob("*.yml"))
    for template in CONFIG["controller_job_templates"] + CONFIG["controller_workflow_job_templates"]:
        if "playbook" in template:
            assert (REPO / template["playbook"]).is_file(), template["playbook"]
        if template["survey_enabled"] is False:  # the monitor: nothing to ask
            assert "survey_spec" not in template, template["name"]
            continue
        survey = template["survey_spec"]
        assert {"name", "description", "spec"} <= set(survey)
        for question in survey["spec"]:
            assert {"question_name", "variable", "type", "required"} <= set(question), question
            assert question["type"] in SURVEY_TYPES, question
            assert question["variable"] in code, f"{template['name']}: no role or playbook reads {question['variable']}"
            if question["type"] == "multiplechoice":
                assert question.get("default") in question["choices"]
    names = {t["name"] for t in CONFIG["controller_job_templates"]}
    assert {"Preflight (inventory and hosts, read-only)", "Upgrade PACS", "Upgrade RIS", "Patch workstations",
            "Verify (health checks, read-only)", "Roll back to a snapshot", "Migrate to the new PACS",
            "Monitor (health checks, findings, alerts)"} == names


def test_the_workflow_is_preflight_then_approval_then_upgrade_then_verify():
    [workflow] = CONFIG["controller_workflow_job_templates"]
    nodes = {n["identifier"]: n for n in workflow["workflow_nodes"]}
    names = {t["name"] for t in CONFIG["controller_job_templates"]}
    chain, node = [], "preflight"
    while node:
        chain.append(node)
        related = nodes[node].get("related", {})
        follow = related.get("success_nodes") or related.get("always_nodes") or []
        node = follow[0]["identifier"] if follow else None
    assert chain == ["preflight", "approval", "upgrade", "verify"]
    assert nodes["approval"]["unified_job_template"]["type"] == "workflow_approval"
    assert all(nodes[n]["unified_job_template"]["name"] in names for n in ("preflight", "upgrade", "verify"))


def test_schedules_start_when_each_window_opens_in_the_sites_zone():
    built = schedules()
    assert [s["unified_job_template"] for s in built] == CONFIG["controller_scheduled_templates"]
    assert {s["rrule"] for s in built} == {
        "DTSTART;TZID=Europe/Berlin:20270101T220000 RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=SA,SU"}
    assert all(s["enabled"] is False for s in built)
    # python-dateutil, an independent iCalendar reader (AWX parses rules with it), reads the rule alike.
    rule = rrulestr(built[0]["rrule"].replace(" RRULE:", "\nRRULE:"))
    first = [rule[0], rule[1], rule[2]]
    assert [d.strftime("%a %Y-%m-%d %H:%M %Z") for d in first] == [
        "Sat 2027-01-02 22:00 CET", "Sun 2027-01-03 22:00 CET", "Sat 2027-01-09 22:00 CET"]


def test_the_monitor_runs_every_15_minutes_on_its_own_job_template():
    (monitor,) = CONFIG["controller_monitor_schedules"]
    names = {t["name"]: t for t in CONFIG["controller_job_templates"]}
    assert names[monitor["unified_job_template"]]["playbook"] == "playbooks/monitor.yml"
    assert monitor["enabled"] is True  # read-only: no window needed
    rule = rrulestr(monitor["rrule"].replace(" RRULE:", "\nRRULE:"))
    assert [d.strftime("%Y-%m-%d %H:%M %Z") for d in (rule[0], rule[1], rule[96])] == [
        "2027-01-01 00:00 UTC", "2027-01-01 00:15 UTC", "2027-01-02 00:00 UTC"]


@pytest.mark.parametrize(("windows", "zone", "words"), [
    ([], "Europe/Berlin", "maintenance_windows is empty"),
    ([{"days": ["Sat"], "start": "22:00"}], "Mars/Olympus", "not an IANA time zone"),
    ([{"days": ["Caturday"], "start": "22:00"}], "UTC", "is not a weekday"),
    ([{"days": ["Sat"], "start": "2200"}], "UTC", "is not HH:MM"),
    ([{"name": "x", "start": "22:00"}], "UTC", "maintenance window x: give its days"),
])
def test_a_window_the_schedules_cannot_read_is_named(windows, zone, words):
    with pytest.raises(ValueError, match=words):
        controller_schedules(windows, zone, ["Patch workstations"])
