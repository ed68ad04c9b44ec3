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
        echo "last words of $scenario"; exit 1 ;;
esac
echo "$scenario fine"
"""

FAKE_PYTEST = """#!/bin/sh
# pytest tests/<suite>
echo "pytest $1"
case $1 in
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
    env = dict(os.environ, PATH=f"{project / 'bin'}:{os.environ['PATH']}", **env)
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
    verdict = verdict[verdict.index("lanes: unit:"):]
    assert "lanes: unit: passed in" in verdict
    assert "lanes: good1: passed in" in verdict
    assert "lanes: bad1: FAILED after" in verdict
    assert "lanes: good2: not run (an earlier item of its lane failed)" in verdict
    assert "lanes: good3: passed in" in verdict
    assert "lanes: integration: passed in" in verdict
    # The failure line with its line number in the log, and the log's end, after the verdict.
    assert "fatal: [host]: FAILED! => the reason of bad1" in verdict
    assert "last words of bad1" in verdict
    assert verdict.rstrip().endswith("FAILED")
    # The log's beginning is not repeated: only its failure lines and its last 60 lines.
    assert "filler line 10\n" not in verdict


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


def test_the_makefile_runs_the_suites_before_the_lanes_never_beside_a_scenario():
    # tests/integration/test_package_cache.py reconfigures, restarts and stops the machine's
    # apt-cacher-ng service; the workstations scenario's site cache is that same service.
    items = [item for lane in makefile_lanes() for item in lane]
    assert "unit" not in items and "integration" not in items
    text = (REPO / "Makefile").read_text()
    # The unit and integration suites at once (they share no container, port or file), then the lanes.
    recipe = re.search(r"^test: lint images\n((?:\t.*\n)+)", text, re.MULTILINE).group(1).splitlines()
    assert [line.split()[-3:] if "-j2" in line else line.split()[-1:] for line in recipe] == [
        ["-j2", "unit", "integration"], ["molecule"]]
