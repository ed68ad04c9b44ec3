"""bench/workstation_fleet.py: the summary's ratios per repeat, the goals, the process tree it samples, and
which images it removes between measurements."""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from workstation_fleet import (  # noqa: E402
    START_IMAGE,
    cgroup_cpu_seconds,
    children,
    cpu_delta,
    goals_missed,
    snapshot_images,
    summarise,
)


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
        "workstation_cpus": None,
        "cpu_s": {"controller": 10.0 * count, "workstations": 20.0 * count, "pacs": 1.0, "package_cache": 0.5},
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


def test_the_cpu_of_each_part_is_summarised_by_its_median():
    runs = [measured(1, 1, 100, 1000), measured(8, 1, 150, 1100), measured(1, 2, 100, 1000), measured(8, 2, 150, 1100)]
    runs[1]["cpu_s"]["controller"] = 100.0
    summary = summarise(runs, 8)
    assert summary["median_cpu_s"]["1"] == {"controller": 10.0, "workstations": 20.0, "pacs": 1.0, "package_cache": 0.5}
    assert summary["median_cpu_s"]["8"]["controller"] == 90.0  # median of 100 and 80
    assert summary["median_cpu_s"]["8"]["workstations"] == 160.0


def test_cgroup_v1_cpuacct_usage_is_read_in_seconds(tmp_path):
    scope = tmp_path / "cpuacct" / "machine.slice" / "libpod-abc.scope"
    scope.mkdir(parents=True)
    (scope / "cpuacct.usage").write_text("2500000000\n")
    cgroup = "4:memory:/machine.slice/libpod-abc.scope\n2:cpu,cpuacct:/machine.slice/libpod-abc.scope\n0::/\n"
    assert cgroup_cpu_seconds(cgroup, tmp_path) == 2.5


def test_cgroup_v2_cpu_stat_is_read_in_seconds(tmp_path):
    scope = tmp_path / "machine.slice" / "libpod-abc.scope"
    scope.mkdir(parents=True)
    (scope / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert cgroup_cpu_seconds("0::/machine.slice/libpod-abc.scope\n", tmp_path) == 1.5


def test_a_cgroup_without_cpu_accounting_reads_as_unknown(tmp_path):
    assert cgroup_cpu_seconds("4:memory:/x\n0::/x\n", tmp_path) is None


def test_the_cpu_a_group_used_is_the_sum_of_differences_and_unknown_if_one_is_unknown():
    assert cpu_delta({"a": 1.0, "b": 2.0}, {"a": 11.0, "b": 32.0}) == 40.0
    assert cpu_delta({"a": 1.0, "b": None}, {"a": 11.0, "b": 3.0}) is None
    assert cpu_delta({}, {}) is None
