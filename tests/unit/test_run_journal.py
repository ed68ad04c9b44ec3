"""plugins/modules/run_journal.py: the run journal beside the lock, on real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import run_journal
import yaml
from support import run_module

RUN = "20261201T030000Z-bbbbbb"
OLD = "20261201T020000Z-aaaaaa"
RETURN_KEYS = set(yaml.safe_load(run_journal.RETURN))


def run(check_mode=False, **args):
    return run_module(run_journal, args, check_mode=check_mode)


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "clinical-upgrade" / "run.journal.json"


def write(path, run_id=RUN, **data):
    return run(path=str(path), state="present", run_id=run_id, data=data)


def test_write_creates_it_atomically_with_every_key(path):
    r = write(path, phase="lock", status="passed", snapshot=None)
    assert r["_rc"] == 0 and r["changed"] is True, r
    assert set(r) >= RETURN_KEYS
    on_disk = json.loads(path.read_text())
    assert on_disk == r["journal"]
    assert on_disk["run_id"] == RUN and on_disk["phase"] == "lock" and on_disk["updated"].endswith("Z")
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o750"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "no temporary file stays behind"
    assert r["ours"] is True and r["exists"] is True and r["previous"] is None and r["age_minutes"] < 1


def test_writes_merge_into_this_runs_journal_and_the_same_write_changes_nothing(path):
    write(path, phase="snapshot", status="running", baseline={"file": "/ev/b.json"})
    r = write(path, phase="snapshot", status="passed", snapshot={"id": "s1"})
    assert r["changed"] is True
    assert r["journal"]["baseline"] == {"file": "/ev/b.json"} and r["journal"]["snapshot"] == {"id": "s1"}
    inode = path.stat().st_ino
    again = write(path, phase="snapshot", status="passed", snapshot={"id": "s1"})
    assert again["changed"] is False and path.stat().st_ino == inode


def test_an_unfinished_journal_of_another_run_is_never_overwritten(path):
    write(path, run_id=OLD, phase="switch", status="running")
    before = path.read_bytes()
    r = write(path, phase="lock", status="passed")
    assert r["failed"] is True and r["changed"] is False
    assert f"belongs to run {OLD}, which has not finished (phase switch, running" in r["msg"]
    assert "nothing was written" in r["msg"] and r["journal"]["run_id"] == OLD and r["ours"] is False
    assert path.read_bytes() == before


def test_takeover_replaces_an_interrupted_runs_journal_and_returns_it(path):
    write(path, run_id=OLD, phase="switch", status="running", snapshot={"id": "s1"})
    r = run(path=str(path), state="present", run_id=RUN, takeover_from=OLD,
            data={"phase": "resume", "status": "running", "resumed_from": OLD})
    assert r["changed"] is True and r["previous"]["run_id"] == OLD and r["previous"]["phase"] == "switch"
    assert "taking over from run " + OLD in r["msg"]
    on_disk = json.loads(path.read_text())
    assert on_disk["run_id"] == RUN and "snapshot" not in on_disk, "nothing of the old run is merged in"


def test_a_finished_journal_is_replaced_by_the_next_run(path):
    write(path, run_id=OLD, phase="finished", status="passed", outcome="upgraded")
    r = write(path, phase="lock", status="passed")
    assert r["changed"] is True and r["previous"]["outcome"] == "upgraded"


def test_query_reads_without_writing_and_reports_age(path):
    r = run(path=str(path), state="query")
    assert r["exists"] is False and r["journal"] is None and r["readable"] is True and r["age_minutes"] is None
    write(path, run_id=OLD, phase="switch", status="running")
    then = os.stat(path).st_mtime - 600
    os.utime(path, (then, then))
    r = run(path=str(path), state="query", run_id=RUN)
    assert r["changed"] is False and r["journal"]["phase"] == "switch" and r["ours"] is False
    assert 9.9 <= r["age_minutes"] <= 10.1


def test_an_unreadable_journal_is_reported_and_never_replaced(path):
    path.parent.mkdir(parents=True)
    path.write_text("{half")
    r = run(path=str(path), state="query")
    assert r["readable"] is False and r["journal"] is None and r["exists"] is True
    r = write(path, phase="lock")
    assert r["failed"] is True and "cannot be read" in r["msg"] and path.read_text() == "{half"


def test_check_mode_writes_nothing(path):
    r = run(check_mode=True, path=str(path), state="present", run_id=RUN, data={"phase": "lock"})
    assert r["changed"] is True and r["journal"]["phase"] == "lock" and not path.exists()
    assert "would be written" in r["msg"]


def test_absent_removes_only_this_runs_journal(path):
    write(path, run_id=OLD, phase="switch")
    r = run(path=str(path), state="absent", run_id=RUN)
    assert r["changed"] is False and path.exists()
    r = run(path=str(path), state="absent", run_id=RUN, takeover_from=OLD)
    assert r["changed"] is True and not path.exists() and r["previous"]["run_id"] == OLD


def test_bad_arguments_say_what_to_fix(path):
    r = run(path="relative/journal.json", state="query")
    assert r["failed"] is True and "absolute path" in r["msg"]
    r = run(path=str(path), state="present", run_id="  ")
    assert r["failed"] is True and "run_id is empty" in r["msg"]
