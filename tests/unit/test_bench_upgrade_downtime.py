"""bench/upgrade_downtime.py: how long after a failure the PACS answered again (from outages and steps)."""

import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from upgrade_downtime import back_after_failure  # noqa: E402

T0 = 1_800_000_000.0


def iso(offset: float) -> str:
    return f"{dt.datetime.fromtimestamp(T0 + offset, dt.UTC):%Y-%m-%dT%H:%M:%S.%f}Z"


def step(name: str, start: float, end: float) -> dict:
    return {"name": name, "started": iso(start), "ended": iso(end)}


STEPS = [step("switch", 100, 130), step("verify", 130, 150), step("preserve", 152, 165),
         step("revert", 165, 185), step("redeliver", 185, 280), step("verify_after_rollback", 280, 292)]


def test_back_is_the_end_of_the_outage_the_rollback_caused_not_a_later_blip():
    spans = [(T0 + 110, T0 + 111), (T0 + 155, T0 + 184.5), (T0 + 240, T0 + 241.2)]
    got = back_after_failure(spans, STEPS, T0 + 150, T0)
    assert got == {"failed_at_s": 150.0, "back_after_failure_s": 34.5, "last_outage_end_after_failure_s": 91.2}


def test_a_failed_start_counts_from_the_failure_to_the_end_of_the_outage_through_the_revert():
    steps = [step("switch", 100, 104), step("preserve", 105, 110), step("revert", 110, 125)]
    spans = [(T0 + 101, T0 + 126)]
    got = back_after_failure(spans, steps, T0 + 104, T0)
    assert got["back_after_failure_s"] == 22.0 and got["last_outage_end_after_failure_s"] == 22.0


def test_no_outage_after_the_failure_is_zero_and_no_failure_is_unknown():
    spans = [(T0 + 110, T0 + 111)]
    assert back_after_failure(spans, STEPS, T0 + 150, T0)["back_after_failure_s"] == 0.0
    assert back_after_failure(spans, STEPS, None, T0)["back_after_failure_s"] is None


def test_rescore_adds_the_new_figure_to_runs_saved_with_the_old_one(tmp_path):
    import json

    from upgrade_downtime import rescore

    rollback = {"kind": "rollback", "outcome": "rolled_back", "wall_s": 480.0, "rollback_wall_s": 180.0,
                "longest_unavailable_s": 29.44, "acknowledged_stores": 10, "acknowledged_lost": 0,
                "longest_store_s": 1.9, "back_after_failure_s": 95.7,
                "outages": [{"at_s": 233.5, "duration_s": 0.95, "steps": ["switch"]},
                            {"at_s": 310.8, "duration_s": 29.44, "steps": ["preserve", "revert"]},
                            {"at_s": 390.2, "duration_s": 1.21, "steps": ["redeliver"]}]}
    saved = {"runs": [rollback], "summary": {"repeats": 1, "sender": True, "fault": "verify",
                                             "instances_seeded": 600, "machine": {"cores": 2}}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(saved))
    data = rescore(path)
    (run,) = data["runs"]
    assert run["failed_at_s"] == 295.7 and run["last_outage_end_after_failure_s"] == 95.7
    assert run["back_after_failure_s"] == 44.5
    assert data["summary"]["rollback"]["median_back_after_failure_s"] == 44.5
    assert json.loads(path.read_text()) == data
    assert rescore(path) == data, "a second rescore changes nothing"
