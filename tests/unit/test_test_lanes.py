"""tools/test_lanes.sh: every scenario in exactly one lane, the pytest suites in lanes too, and a
verdict that a CI log cut to its end still shows (which item failed, and how); the Makefile's lanes
keep apart what cannot run at the same time.

The script runs here for real, in a copy of its directory layout; the `molecule` and `pytest` it
calls are small programs on PATH that pass or fail by the item's name, since what is tested is the
lane runner, not Molecule or pytest."""

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from support import makefile_lanes

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "test_lanes.sh"

FAKE_MOLECULE = """#!/bin/sh
# molecule test -s <scenario>
scenario=$3
echo "running $scenario"
case $scenario in
  bad*) i=0; while [ $i -lt 100 ]; do echo "filler line $i"; i=$((i + 1)); done
        echo "fatal: [host]: FAILED! => the reason of $scenario"
        echo "  |   E       AssertionError: the assertion of $scenario"
        echo "last words of $scenario"; exit 1 ;;
esac
echo "$scenario fine"
"""

FAKE_PYTEST = """#!/bin/sh
# pytest [arguments] tests/<suite>
echo "pytest $*"
for suite; do :; done
case $suite in
  tests/integration) [ -n "$FAIL_INTEGRATION" ] && { echo "FAILED tests/integration/test_x.py::test_y"; exit 1; } ;;
esac
echo "1 passed in 0.01s"
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "tools").mkdir()
    shutil.copy(SCRIPT, tmp_path / "tools" / "test_lanes.sh")
    for name in ("good1", "bad1", "good2", "good3"):
        (tmp_path / "molecule" / name).mkdir(parents=True)
        (tmp_path / "molecule" / name / "molecule.yml").write_text("---\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("molecule", FAKE_MOLECULE), ("pytest", FAKE_PYTEST)):
        fake = bindir / name
        fake.write_text(text)
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def run(project, *lanes, **env):
    # Not the arguments of the run this test is part of (make test exports PYTEST_UNIT_ARGS).
    base = {k: v for k, v in os.environ.items() if k != "PYTEST_UNIT_ARGS"}
    env = dict(base, PATH=f"{project / 'bin'}:{os.environ['PATH']}", **env)
    return subprocess.run(
        ["bash", str(project / "tools" / "test_lanes.sh"), *lanes],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_scenario_left_out_of_the_lanes_is_refused(project):
    result = run(project, "unit good1 bad1", "good2")
    assert result.returncode == 2
    assert "must name every Molecule scenario exactly once" in result.stdout
    assert "Fix TEST_LANES" in result.stdout


def test_a_suite_named_twice_is_refused(project):
    result = run(project, "unit good1 bad1", "unit good2 good3")
    assert result.returncode == 2
    assert "the suite unit is named more than once" in result.stdout


def test_the_verdict_comes_last_and_names_the_failure(project):
    result = run(project, "unit good1 bad1 good2", "good3 integration")
    assert result.returncode == 1
    out = result.stdout
    verdict = out[out.rindex("================ pytest suite integration"):]
    # After the whole logs: the failed item's last 60 lines (not its beginning) ...
    verdict = verdict[verdict.index("---- bad1: the last 60 lines of its log"):]
    assert "last words of bad1" in verdict and "filler line 10\n" not in verdict
    # ... then every item's status ...
    statuses = verdict[verdict.index("lanes: unit:"):]
    assert "last words of bad1" not in statuses
    for line in ("lanes: unit: passed in", "lanes: good1: passed in", "lanes: bad1: FAILED after",
                 "lanes: good2: not run (an earlier item of its lane failed)", "lanes: good3: passed in",
                 "lanes: integration: passed in"):
        assert line in statuses
    # ... then why it failed (the lines with their numbers in the log, a pytest assertion among them),
    # in the last lines, which is what a CI log cut to its end shows.
    why = statuses[statuses.index("---- bad1: why"):]
    assert "102:fatal: [host]: FAILED! => the reason of bad1" in why
    assert "103:  |   E       AssertionError: the assertion of bad1" in why
    assert len(why.splitlines()) <= 14
    assert verdict.rstrip().endswith("FAILED")


def test_a_failed_suite_stops_its_lane_and_is_named(project):
    shutil.rmtree(project / "molecule" / "bad1")
    result = run(project, "unit integration good1", "good2 good3", FAIL_INTEGRATION="1")
    assert result.returncode == 1
    verdict = result.stdout[result.stdout.index("lanes: unit: passed"):]
    assert "lanes: integration: FAILED after" in verdict
    assert "FAILED tests/integration/test_x.py::test_y" in verdict
    assert "lanes: good1: not run" in verdict
    assert "lanes: good3: passed in" in verdict


def test_every_item_passing_exits_0_and_molecule_only_leaves_the_suites_out(project):
    shutil.rmtree(project / "molecule" / "bad1")
    result = run(project, "unit good1 good2", "integration good3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("all passed")
    assert "not run" not in result.stdout
    assert "pytest tests/unit" in (project / "results" / "lanes" / "unit.log").read_text()

    result = run(project, "--molecule-only", "unit good1 good2", "integration good3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lanes: unit" not in result.stdout
    assert "lanes: integration" not in result.stdout
    assert "lanes: good3: passed in" in result.stdout


def test_the_unit_suite_gets_the_arguments_the_makefile_gives_and_the_integration_suite_none(project):
    shutil.rmtree(project / "molecule" / "bad1")
    result = run(project, "unit good1 good2", "integration good3", PYTEST_UNIT_ARGS="-n 2 --dist loadfile")
    assert result.returncode == 0, result.stdout + result.stderr
    logs = project / "results" / "lanes"
    assert "pytest -n 2 --dist loadfile tests/unit\n" in (logs / "unit.log").read_text()
    assert "pytest tests/integration\n" in (logs / "integration.log").read_text()


def test_the_makefile_runs_every_test_in_two_lanes_the_integration_suite_before_the_workstations():
    lanes = makefile_lanes()
    assert len(lanes) == 2  # a third lane made the machine too slow for a timing check (docs/testing.md)
    # Each lane starts with a suite, so that the unit tests (computing) run beside the integration
    # tests (waiting on podman), not beside a scenario's timing checks only.
    assert sorted(lane[0] for lane in lanes) == ["integration", "unit"]
    # tests/integration/test_package_cache.py reconfigures, restarts and stops the machine's
    # apt-cacher-ng service; the workstations scenario's site cache is that same service: one lane, the
    # suite before the scenario.
    (lane,) = [lane for lane in lanes if "integration" in lane]
    assert "workstations" in lane and lane.index("integration") < lane.index("workstations")
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^test: lint images artifacts\n((?:\t.*\n)+)", text, re.MULTILINE).group(1)
    assert recipe.strip() == 'PYTEST_UNIT_ARGS="$(UNIT_PYTEST_ARGS)" tools/test_lanes.sh $(TEST_LANES)'
    assert "\t$(BIN)/pytest $(UNIT_PYTEST_ARGS) tests/unit\n" in text  # make unit: the same arguments
