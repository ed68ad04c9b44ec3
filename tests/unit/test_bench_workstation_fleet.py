"""bench/workstation_fleet.py: the summary's ratios per repeat, the goals, the process tree it samples, and
which images it removes between measurements."""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from workstation_fleet import START_IMAGE, children, goals_missed, snapshot_images, summarise  # noqa: E402


def measured(count, repeat, wall, upstream, valid=True, served=None):
    return {
        "workstations": count,
        "repeat": repeat,
        "valid": valid,
        "wall_s": wall,
        "upstream_bytes": upstream,
        "served_bytes": served or upstream * count,
        "peak_tree_rss_mb": 100.0 * count,
        "peak_python_rss_mb": 80.0 * count,
    }


def test_ratios_are_taken_within_a_repeat_then_their_median():
    runs = [
        measured(1, 1, 100, 1000),
        measured(8, 1, 150, 1100),
        measured(1, 2, 200, 1000),
        measured(8, 2, 260, 1050),  # a slow repeat: its ratio 1.3 counts
        measured(1, 3, 100, 1000),
        measured(8, 3, 190, 1000),
    ]
    summary = summarise(runs, 8)
    assert summary["median_time_ratio"] == 1.5
    assert summary["median_upstream_ratio"] == 1.05
    assert summary["median_wall_s"] == {"1": 100, "8": 190}
    assert summary["valid_runs"] == 6
    assert goals_missed(summary) == []


def test_a_measurement_that_did_not_upgrade_every_workstation_misses_the_goals():
    runs = [measured(1, 1, 100, 1000), measured(8, 1, 150, 1100, valid=False)]
    summary = summarise(runs, 8)
    assert summary["median_time_ratio"] is None
    missed = goals_missed(summary)
    assert any("did not upgrade every workstation" in m for m in missed)
    assert any("time ratio None" in m for m in missed)


def test_ratios_over_the_goals_are_named():
    summary = summarise([measured(1, 1, 100, 1000), measured(8, 1, 250, 1500)], 8)
    assert goals_missed(summary) == ["time ratio 2.5 > 2.0", "upstream ratio 1.5 > 1.2"]


def test_the_process_tree_holds_the_children_and_their_memory():
    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(64 << 20); time.sleep(30)"])
    try:
        for _ in range(50):
            tree = children(os.getpid())
            if child.pid in tree and tree[child.pid][0] > 60 << 20:
                break
            time.sleep(0.1)
        assert os.getpid() in tree and child.pid in tree
        rss, python = tree[child.pid]
        assert rss > 60 << 20 and python
    finally:
        child.kill()
        child.wait()


def test_only_the_workstations_snapshots_are_removed_never_the_start_image():
    # The start image's name holds "bench-ws" too: an earlier filter on that removed it after the first
    # measurement, and every later measurement failed to start its workstations.
    rows = [
        START_IMAGE,
        "localhost/cu-snapshot/bench-ws1:cu-20261203T090413Z",
        "localhost/cu-snapshot/bench-ws12:cu-20261203T090413Z",
        "localhost/cu-snapshot/mol-ws1:cu-20261203T090413Z",
        "localhost/cu-debian12:latest",
    ]
    assert snapshot_images(rows) == rows[1:3]
