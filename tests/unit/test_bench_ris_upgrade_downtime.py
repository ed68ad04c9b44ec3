"""bench/ris_upgrade_downtime.py: outages attributed to the run's steps, the summary and its goals."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ris_upgrade_downtime import attribute, goals_missed, summarise  # noqa: E402
from test_bench_upgrade_downtime import T0, step  # noqa: E402 - the PACS benchmark's test helpers


def outage(start: float, end: float) -> dict:
    return {"start": T0 + start, "end": T0 + end, "seconds": round(end - start, 3), "attempts": 3}


def test_an_outage_is_attributed_to_the_steps_it_overlapped():
    steps = [step("snapshot", 10, 20), step("stage", 20, 30), step("switch", 30, 31), step("verify", 31, 40)]
    got = attribute([outage(30.2, 30.5), outage(19.9, 20.1)], steps)
    assert [o["steps"] for o in got] == [["switch"], ["snapshot", "stage"]]


def run(switch_s, restart_s, lost=0, outcome="upgraded", rollback=None):
    return {"upgrade": {"outcome": outcome, "switch_unavailable_s": switch_s, "longest_s": switch_s,
                        "orders_acknowledged": 100, "orders_lost": lost},
            "restart": {"longest_s": restart_s, "orders_acknowledged": 10, "orders_lost": 0},
            "rollback": rollback}


def test_summary_medians_ratio_and_goals():
    rollback = {"outcome": "rolled_back", "longest_s": 19.0, "rollback_wall_s": 80.0, "redelivered": 5,
                "orders_acknowledged": 50, "orders_lost": 0}
    summary = summarise([run(0.4, 0.2, rollback=rollback), run(0.3, 0.3, rollback=rollback),
                         run(0.3, 0.1, rollback=rollback)])
    assert summary["switch_unavailable_s_median"] == 0.3
    assert summary["restart_unavailable_s_median"] == 0.2
    assert summary["switch_to_restart_ratio_median"] == 2.0
    assert summary["orders_acknowledged"] == 3 * (100 + 10 + 50) and summary["orders_lost"] == 0
    assert summary["rolled_back"] == 3
    assert goals_missed(summary) == []


def test_a_slow_switch_or_a_lost_order_misses_a_goal():
    missed = goals_missed(summarise([run(1.5, 0.2), run(1.2, 0.2, lost=1), run(0.9, 0.2, outcome="rolled_back")]))
    assert any("HL7 unavailable 1.2 s during the switch" in m for m in missed)
    assert any("1 acknowledged orders lost" in m for m in missed)
    assert any("1 upgrade(s) did not end upgraded" in m for m in missed)
