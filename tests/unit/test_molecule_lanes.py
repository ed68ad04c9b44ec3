"""tools/molecule_lanes.sh: every scenario in exactly one lane, and a verdict that a CI log cut
to its end still shows (which scenario failed, and how).

The script runs here for real, in a copy of its directory layout; the `molecule` it calls is a
small program on PATH that passes or fails by the scenario's name, since what is tested is the
lane runner, not Molecule."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "molecule_lanes.sh"

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


@pytest.fixture
def project(tmp_path):
    (tmp_path / "tools").mkdir()
    shutil.copy(SCRIPT, tmp_path / "tools" / "molecule_lanes.sh")
    for name in ("good1", "bad1", "good2", "good3"):
        (tmp_path / "molecule" / name).mkdir(parents=True)
        (tmp_path / "molecule" / name / "molecule.yml").write_text("---\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "molecule"
    fake.write_text(FAKE_MOLECULE)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def run(project, *lanes):
    env = dict(os.environ, PATH=f"{project / 'bin'}:{os.environ['PATH']}")
    return subprocess.run(
        ["bash", str(project / "tools" / "molecule_lanes.sh"), *lanes],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )


def test_a_scenario_left_out_of_the_lanes_is_refused(project):
    result = run(project, "good1 bad1", "good2")
    assert result.returncode == 2
    assert "must name every scenario exactly once" in result.stdout
    assert "Fix MOLECULE_LANES" in result.stdout


def test_the_verdict_comes_last_and_names_the_failure(project):
    result = run(project, "good1 bad1 good2", "good3")
    assert result.returncode == 1
    out = result.stdout
    verdict = out[out.rindex("================ molecule scenario good3"):]
    verdict = verdict[verdict.index("molecule: good1:"):]
    assert "molecule: good1: passed in" in verdict
    assert "molecule: bad1: FAILED after" in verdict
    assert "molecule: good2: not run (an earlier scenario of its lane failed)" in verdict
    assert "molecule: good3: passed in" in verdict
    # The failure line with its line number in the log, and the log's end, after the verdict.
    assert "fatal: [host]: FAILED! => the reason of bad1" in verdict
    assert "last words of bad1" in verdict
    assert verdict.rstrip().endswith("FAILED")
    # The log's beginning is not repeated: only its failure lines and its last 60 lines.
    assert "filler line 10\n" not in verdict


def test_every_scenario_passing_exits_0(project):
    shutil.rmtree(project / "molecule" / "bad1")
    result = run(project, "good1 good2", "good3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("all passed")
    assert "not run" not in result.stdout
