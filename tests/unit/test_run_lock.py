"""plugins/modules/run_lock.py: take, release and read the run lock, on real files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import run_lock
import yaml
from support import run_module

RUN = "20250607T220012Z-aaaaaa"
OTHER = "20250607T210000Z-bbbbbb"
RETURN_KEYS = set(yaml.safe_load(run_lock.RETURN))


def run(check_mode=False, **args):
    return run_module(run_lock, args, check_mode=check_mode)


@pytest.fixture
def warned(monkeypatch) -> list[str]:
    """The warnings the module emits (Ansible keeps them process-wide, so they are caught at the source)."""
    texts = []
    original = run_lock.AnsibleModule.warn
    monkeypatch.setattr(
        run_lock.AnsibleModule, "warn", lambda self, text: (texts.append(text), original(self, text))[1]
    )
    return texts


@pytest.fixture
def lock(tmp_path) -> Path:
    return tmp_path / "clinical-upgrade" / "run.lock"


def take(lock, run_id=RUN, **args):
    return run(path=str(lock), state="present", run_id=run_id, user="jdoe", **args)


def write_lock(lock: Path, run_id=OTHER, age_minutes=0.0, text=None) -> None:
    lock.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        text = json.dumps({"run_id": run_id, "user": "asmith", "host": "ctl2", "started": "2025-06-07T21:00:00Z"})
    lock.write_text(text)
    then = time.time() - age_minutes * 60
    os.utime(lock, (then, then))


def leftovers(lock: Path) -> list[str]:
    return sorted(p.name for p in lock.parent.iterdir() if p.name != lock.name)


# --------------------------------------------------------------------------- acquire


def test_acquire_writes_the_lock_and_returns_every_key(lock):
    r = take(lock, info={"controller": "ctl1", "pid": 4242, "phase": "precheck"})
    assert r["_rc"] == 0 and not r.get("failed"), r
    assert len(RETURN_KEYS) == 11
    assert set(r) >= RETURN_KEYS, "every documented return value is set"
    assert r["changed"] is True
    assert r["acquired"] is True and r["released"] is False
    assert r["held"] is True and r["ours"] is True and r["readable"] is True
    assert r["stale"] is False and r["broken_to"] is None
    assert 0 <= r["age_minutes"] < 1
    assert r["path"] == str(lock)
    assert r["msg"] == f"lock {lock} taken by run {RUN}"
    on_disk = json.loads(lock.read_text())
    assert on_disk == r["holder"]
    assert on_disk["run_id"] == RUN and on_disk["user"] == "jdoe"
    assert on_disk["info"] == {"controller": "ctl1", "pid": 4242, "phase": "precheck"}
    assert on_disk["host"] and on_disk["started"].endswith("Z")
    assert oct(lock.stat().st_mode & 0o777) == "0o640"
    assert oct(lock.parent.stat().st_mode & 0o777) == "0o750"
    assert leftovers(lock) == [], "the temporary file must not stay behind"


def test_acquire_again_by_the_same_run_changes_nothing(lock):
    first = take(lock, info={"phase": "stage"})
    before = lock.read_bytes(), lock.stat().st_mtime_ns
    again = take(lock, info={"phase": "stage"})
    assert again["changed"] is False and again["acquired"] is True and again["ours"] is True
    assert again["holder"] == first["holder"]
    assert again["msg"] == f"lock {lock} already held by this run"
    assert (lock.read_bytes(), lock.stat().st_mtime_ns) == before
    without_info = take(lock)
    assert without_info["changed"] is False and without_info["holder"]["info"] == {"phase": "stage"}


def test_acquire_by_the_same_run_with_new_info_rewrites_it(lock):
    first = take(lock, info={"phase": "stage"})
    r = take(lock, info={"phase": "switch"})
    assert r["changed"] is True and r["acquired"] is True
    assert r["msg"] == f"lock {lock} of this run updated"
    on_disk = json.loads(lock.read_text())
    assert on_disk["info"] == {"phase": "switch"}
    assert on_disk["started"] == first["holder"]["started"]
    assert leftovers(lock) == []


def test_a_second_run_is_refused_with_who_and_since_when(lock):
    take(lock, run_id=OTHER)
    before = lock.read_bytes()
    r = take(lock, run_id=RUN)
    assert r["failed"] is True and r["_rc"] == 1
    assert r["changed"] is False and r["acquired"] is False
    assert r["held"] is True and r["ours"] is False and r["stale"] is False
    assert r["holder"]["run_id"] == OTHER
    started = r["holder"]["started"]
    host = r["holder"]["host"]
    assert r["msg"] == (
        f"lock {lock} is held by run {OTHER} of jdoe (on {host}) since {started}, 0 minutes ago. "
        f"Wait for that run to finish. If it died, remove {lock} by hand once you are sure it is gone, "
        "or, once the lock is older than stale_minutes=240, set break_stale: true."
    )
    assert lock.read_bytes() == before


def test_a_stale_lock_is_reported_and_still_refuses(lock):
    write_lock(lock, age_minutes=300)
    r = take(lock, stale_minutes=240)
    assert r["failed"] is True
    assert r["stale"] is True and r["acquired"] is False and r["broken_to"] is None
    assert 299 < r["age_minutes"] < 301
    assert r["msg"] == (
        f"lock {lock} is held by run {OTHER} of asmith (on ctl2) since 2025-06-07T21:00:00Z, 300 minutes ago. "
        "The lock is stale (older than stale_minutes=240): if that run is really gone, set break_stale: true "
        f"to take it over (the old lock is kept as {lock}.stale-<epoch>)."
    )
    assert json.loads(lock.read_text())["run_id"] == OTHER
    assert leftovers(lock) == []


def test_break_stale_does_not_break_a_fresh_lock(lock):
    write_lock(lock, age_minutes=10)
    r = take(lock, stale_minutes=240, break_stale=True)
    assert r["failed"] is True and r["stale"] is False and r["broken_to"] is None
    assert json.loads(lock.read_text())["run_id"] == OTHER


def test_break_stale_moves_the_stale_lock_aside_and_takes_it(lock):
    write_lock(lock, age_minutes=300)
    old = lock.read_text()
    r = take(lock, stale_minutes=240, break_stale=True)
    assert not r.get("failed"), r
    assert r["changed"] is True and r["acquired"] is True and r["ours"] is True and r["stale"] is False
    aside = leftovers(lock)
    assert len(aside) == 1 and aside[0].startswith("run.lock.stale-")
    assert r["broken_to"] == str(lock.parent / aside[0])
    assert (lock.parent / aside[0]).read_text() == old, "the stale lock is kept, not deleted"
    assert json.loads(lock.read_text())["run_id"] == RUN
    assert r["msg"] == f"lock {lock} taken by run {RUN} (the stale lock was moved to {r['broken_to']})"


def test_an_unreadable_lock_refuses_and_says_what_to_do(lock):
    write_lock(lock, text="{half a lock")
    r = take(lock)
    assert r["failed"] is True and r["acquired"] is False
    assert r["held"] is True and r["readable"] is False and r["holder"] is None
    assert r["msg"] == (
        f"lock file {lock} exists but cannot be read (it is not JSON), so it is not known which run holds it. "
        f"Find out whether an upgrade runs on this host. Wait for it to finish. If it died, remove {lock} by hand "
        "once you are sure it is gone, or, once the lock is older than stale_minutes=240, set break_stale: true."
    )
    assert lock.read_text() == "{half a lock"


@pytest.mark.parametrize(
    ("content", "reason"),
    [('["a list"]', "it is JSON but has no run_id"), ('{"user": "x"}', "it is JSON but has no run_id"),
     (b"\xff\xfe", "it is not text")],
)
def test_other_unreadable_locks(lock, content, reason):
    lock.parent.mkdir(parents=True)
    lock.write_bytes(content if isinstance(content, bytes) else content.encode())
    r = run(path=str(lock), state="query")
    assert r["readable"] is False and r["held"] is True
    assert r["msg"] == f"lock file {lock} exists but cannot be read ({reason})"


def test_a_directory_in_the_way_is_unreadable(lock):
    lock.mkdir(parents=True)
    r = take(lock)
    assert r["failed"] is True and r["readable"] is False
    assert "cannot be read (it is a directory)" in r["msg"]


def test_an_unreadable_stale_lock_is_broken_only_with_break_stale(lock):
    write_lock(lock, text="garbage", age_minutes=500)
    assert take(lock)["failed"] is True
    r = take(lock, break_stale=True)
    assert not r.get("failed"), r
    assert r["acquired"] is True
    assert (lock.parent / Path(r["broken_to"]).name).read_text() == "garbage"


def test_path_must_be_absolute():
    r = run(path="run.lock", state="present", run_id=RUN)
    assert r["failed"] is True
    assert r["msg"] == (
        "path must be the absolute path of the lock file, such as /var/lib/clinical-upgrade/run.lock; got 'run.lock'"
    )


def test_run_id_is_required_to_take_or_release(lock):
    for state in ("present", "absent"):
        r = run(path=str(lock), state=state)
        assert r["failed"] is True and "run_id" in r["msg"]
    r = run(path=str(lock), state="present", run_id="  ")
    assert r["msg"] == "run_id is empty: give this run's id (the same for every host of the run)"


def test_a_directory_that_cannot_be_created_fails_with_the_reason(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run(path=str(blocker / "run.lock"), state="present", run_id=RUN)
    assert r["failed"] is True
    assert r["msg"].startswith(f"cannot take the run lock {blocker / 'run.lock'}: ")
    assert r["msg"].endswith("check the path and the permissions of its directory")


# --------------------------------------------------------------------------- the race


def _contenders(lock: Path, tmp_path: Path, count: int, **args) -> list[dict]:
    """Start `count` processes that each run the module at the same moment; return their results."""
    driver = (
        "import json, os, sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from support import run_module\n"
        "import run_lock\n"
        "args, ready, go = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]\n"
        "open(ready, 'w').close()\n"
        "while not os.path.exists(go):\n"
        "    time.sleep(0.0005)\n"
        "print(json.dumps(run_module(run_lock, args)))\n"
    )
    go = tmp_path / "go"
    procs = []
    for i in range(count):
        payload = dict(args, path=str(lock), state="present", run_id=f"run-{i}", user=f"user{i}")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", driver, json.dumps(payload), str(tmp_path / f"ready-{i}"), str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{i}").exists() for i in range(count)):
        assert time.monotonic() < deadline, "the contenders did not start"
        time.sleep(0.01)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_concurrent_runs_exactly_one_wins(lock, tmp_path):
    lock.parent.mkdir(parents=True)
    results = _contenders(lock, tmp_path, 8)
    winners = [r for r in results if r.get("acquired")]
    assert len(winners) == 1, [r["msg"] for r in results]
    winner = winners[0]["holder"]["run_id"]
    assert json.loads(lock.read_text())["run_id"] == winner
    for loser in (r for r in results if not r.get("acquired")):
        assert loser["failed"] is True
        assert loser["msg"].startswith(f"lock {lock} is held by run {winner} of ")
    assert leftovers(lock) == []


def test_concurrent_runs_breaking_one_stale_lock_exactly_one_wins(lock, tmp_path):
    write_lock(lock, age_minutes=600)
    results = _contenders(lock, tmp_path, 6, break_stale=True)
    winners = [r for r in results if r.get("acquired")]
    assert len(winners) == 1, [r["msg"] for r in results]
    assert json.loads(lock.read_text())["run_id"] == winners[0]["holder"]["run_id"]
    aside = leftovers(lock)
    assert len(aside) == 1 and aside[0].startswith("run.lock.stale-"), aside
    assert json.loads((lock.parent / aside[0]).read_text())["run_id"] == OTHER


# --------------------------------------------------------------------------- release


def test_release_by_the_owner_removes_it(lock, warned):
    take(lock)
    r = run(path=str(lock), state="absent", run_id=RUN)
    assert r["changed"] is True and r["released"] is True and r["acquired"] is False
    assert r["held"] is False and r["ours"] is False
    assert r["holder"]["run_id"] == RUN
    assert r["msg"] == f"lock {lock} of run {RUN} released"
    assert not lock.exists()
    again = run(path=str(lock), state="absent", run_id=RUN)
    assert again["changed"] is False and again["released"] is False and again["held"] is False
    assert again["holder"] is None and again["age_minutes"] is None
    assert again["msg"] == f"lock {lock} is not held"
    assert warned == []


def test_release_by_another_run_leaves_it_with_a_warning(lock, warned):
    write_lock(lock)
    before = lock.read_bytes()
    r = run(path=str(lock), state="absent", run_id=RUN)
    assert not r.get("failed")
    assert r["changed"] is False and r["released"] is False and r["held"] is True and r["ours"] is False
    assert r["holder"]["run_id"] == OTHER
    assert r["msg"] == f"lock {lock} belongs to run {OTHER}, not to {RUN}: left in place"
    assert warned == [r["msg"]]
    assert lock.read_bytes() == before


def test_release_of_an_unreadable_lock_leaves_it_with_a_warning(lock, warned):
    write_lock(lock, text="nonsense")
    r = run(path=str(lock), state="absent", run_id=RUN)
    assert not r.get("failed") and r["released"] is False and r["readable"] is False
    assert warned == [r["msg"]] == [
        f"lock file {lock} cannot be read (it is not JSON), so it is not known whose it is: left in place. "
        "Remove it by hand once you are sure no upgrade runs on this host"
    ]
    assert lock.read_text() == "nonsense"


def test_release_when_the_directory_does_not_exist(tmp_path):
    r = run(path=str(tmp_path / "nowhere" / "run.lock"), state="absent", run_id=RUN)
    assert r["changed"] is False and r["held"] is False


# --------------------------------------------------------------------------- query


def test_query_without_a_lock(lock):
    r = run(path=str(lock), state="query", run_id=RUN)
    assert r["changed"] is False and not r.get("failed")
    assert r["held"] is False and r["holder"] is None and r["ours"] is False and r["readable"] is True
    assert r["age_minutes"] is None and r["stale"] is False
    assert r["msg"] == f"lock {lock} is not held"
    assert not lock.parent.exists(), "query creates nothing"


def test_query_another_runs_lock_reports_who_age_and_staleness(lock):
    write_lock(lock, age_minutes=30)
    r = run(path=str(lock), state="query", run_id=RUN, stale_minutes=20)
    assert not r.get("failed") and r["changed"] is False
    assert r["held"] is True and r["ours"] is False and r["stale"] is True
    assert r["holder"]["user"] == "asmith"
    assert 29.5 < r["age_minutes"] < 30.5
    assert r["msg"] == (
        f"lock {lock} is held by run {OTHER} of asmith (on ctl2) since 2025-06-07T21:00:00Z, 30 minutes ago (stale)"
    )
    fresh = run(path=str(lock), state="query", run_id=RUN, stale_minutes=60)
    assert fresh["stale"] is False and not fresh["msg"].endswith("(stale)")


def test_query_own_lock(lock):
    take(lock)
    r = run(path=str(lock), state="query", run_id=RUN)
    assert r["ours"] is True and r["held"] is True
    assert r["msg"] == f"lock {lock} is held by this run ({RUN})"


def test_query_without_run_id_is_never_ours(lock):
    take(lock)
    assert run(path=str(lock))["ours"] is False


def test_query_changes_nothing_even_with_break_stale(lock):
    write_lock(lock, age_minutes=900)
    before = lock.read_bytes(), lock.stat().st_mtime_ns
    r = run(path=str(lock), state="query", run_id=RUN, break_stale=True)
    assert r["changed"] is False and r["stale"] is True and r["acquired"] is False
    assert (lock.read_bytes(), lock.stat().st_mtime_ns) == before
    assert leftovers(lock) == []


# --------------------------------------------------------------------------- check mode


def test_check_mode_acquire_reports_and_writes_nothing(lock):
    r = take(lock, check_mode=True)
    assert r["changed"] is True and r["acquired"] is True and r["held"] is True and r["ours"] is True
    assert r["holder"]["run_id"] == RUN
    assert "check mode" in r["msg"]
    assert not lock.parent.exists()
    lock.parent.mkdir()
    r = take(lock, check_mode=True)
    assert r["changed"] is True and r["acquired"] is True
    assert leftovers(lock) == [] and not lock.exists()


def test_check_mode_refuses_like_a_real_run(lock):
    write_lock(lock)
    r = take(lock, check_mode=True)
    assert r["failed"] is True and r["acquired"] is False


def test_check_mode_break_stale_moves_nothing(lock):
    write_lock(lock, age_minutes=300)
    before = lock.read_bytes()
    r = take(lock, check_mode=True, break_stale=True)
    assert r["changed"] is True and r["acquired"] is True
    assert r["broken_to"] == f"{lock}.stale-<epoch>"
    assert lock.read_bytes() == before and leftovers(lock) == []


def test_check_mode_new_info_and_release_write_nothing(lock):
    take(lock, info={"phase": "stage"})
    before = lock.read_bytes(), lock.stat().st_mtime_ns
    r = take(lock, check_mode=True, info={"phase": "switch"})
    assert r["changed"] is True and r["holder"]["info"] == {"phase": "switch"}
    r = run(path=str(lock), state="absent", run_id=RUN, check_mode=True)
    assert r["changed"] is True and r["released"] is True and r["held"] is False
    assert (lock.read_bytes(), lock.stat().st_mtime_ns) == before
    assert leftovers(lock) == []


# --------------------------------------------------------------------------- the precheck role's entry points

REPO = Path(__file__).resolve().parents[2]
ROLE_PLAY = """\
- name: The precheck role's lock, unlock and PRE-008 on this machine
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    precheck_lock_path: {lock}
  tasks:
    - name: PRE-008 without a lock
      ansible.builtin.include_role: {{name: precheck, tasks_from: lock_check}}
      vars: {{precheck_run_id: run-a}}
    - name: Keep it
      ansible.builtin.set_fact: {{free: "{{{{ __precheck_pre008 }}}}", free_fact: "{{{{ precheck_lock }}}}"}}
    - name: Take the lock as run-a
      ansible.builtin.include_role: {{name: precheck, tasks_from: lock}}
      vars: {{precheck_run_id: run-a, precheck_run: {{id: run-a, user: alice}}}}
    - name: PRE-008 as run-b
      ansible.builtin.include_role: {{name: precheck, tasks_from: lock_check}}
      vars: {{precheck_run_id: run-b}}
    - name: Keep it
      ansible.builtin.set_fact: {{other: "{{{{ __precheck_pre008 }}}}", other_fact: "{{{{ precheck_lock }}}}"}}
    - name: PRE-008 as run-a
      ansible.builtin.include_role: {{name: precheck, tasks_from: lock_check}}
      vars: {{precheck_run_id: run-a}}
    - name: Keep it
      ansible.builtin.set_fact: {{own: "{{{{ __precheck_pre008 }}}}"}}
    - name: Take the lock as run-b
      block:
        - name: Take it
          ansible.builtin.include_role: {{name: precheck, tasks_from: lock}}
          vars: {{precheck_run_id: run-b, precheck_run: {{id: run-b, user: bob}}}}
      rescue:
        - name: Keep the refusal
          ansible.builtin.set_fact: {{refused: "{{{{ ansible_failed_result.msg }}}}"}}
    - name: Release as run-b
      ansible.builtin.include_role: {{name: precheck, tasks_from: unlock}}
      vars: {{precheck_run_id: run-b}}
    - name: Keep it
      ansible.builtin.set_fact: {{release_other: "{{{{ __precheck_lock_release }}}}"}}
    - name: Release as run-a
      ansible.builtin.include_role: {{name: precheck, tasks_from: unlock}}
      vars: {{precheck_run_id: run-a}}
    - name: Write what happened
      ansible.builtin.copy:
        dest: {out}
        content: "{{{{ {{'free': free, 'free_fact': free_fact, 'other': other, 'other_fact': other_fact, 'own': own,
                    'refused': refused, 'release_other': release_other, 'release': __precheck_lock_release}}
                    | to_json }}}}"
        mode: "0600"
"""


def ansible_playbook(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
         "-e", f"ansible_python_interpreter={sys.executable}", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def test_the_precheck_role_takes_checks_and_releases_the_lock(lock, tmp_path):
    play = tmp_path / "play.yml"
    out = tmp_path / "out.json"
    play.write_text(ROLE_PLAY.format(lock=lock, out=out))
    proc = ansible_playbook(str(play))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["free"]["failed"] is False and got["free"]["msg"] == f"no other run holds {lock}"
    free_fact = got["free_fact"]
    assert {k: free_fact[k] for k in ("path", "held", "holder", "state", "changed")} == {
        "path": str(lock), "held": False, "holder": None, "state": "free", "changed": False}
    assert free_fact["journal_path"] == str(lock.parent / "run.journal.json")
    assert got["other"]["failed"] is True
    assert got["other"]["msg"].startswith(f"{lock} on localhost is held by run run-a of alice since ")
    assert got["other"]["msg"].endswith(
        "(0 minutes ago); it left no journal, so whether it changed the host is not known. Wait for it to finish. "
        "If it died, remove the lock file by hand once you are sure, or wait until it is stale (240 minutes) and set "
        "precheck_break_stale_lock: true."
    )
    assert got["other_fact"]["state"] == "foreign" and got["other_fact"]["changed"] is None
    assert got["other_fact"]["held"] is True and got["other_fact"]["holder"]["run_id"] == "run-a"
    assert got["own"]["failed"] is False and got["own"]["msg"] == "the lock is this run's own (run-a)"
    assert got["refused"].startswith(f"lock {lock} is held by run run-a of alice (on ")
    assert got["refused"].endswith(
        "(In the precheck role: break_stale is precheck_break_stale_lock, stale_minutes is "
        "precheck_lock_stale_minutes=240.)"
    )
    assert got["release_other"]["released"] is False and got["release_other"]["held"] is True
    assert "WARNING" in proc.stdout + proc.stderr
    assert f"lock {lock} belongs to run run-a, not to run-b: left in place" in proc.stdout + proc.stderr
    assert got["release"]["released"] is True and got["release"]["changed"] is True
    assert not lock.exists() and leftovers(lock) == []


def test_the_precheck_role_in_check_mode_writes_nothing(lock, tmp_path):
    play = tmp_path / "play.yml"
    play.write_text(
        "- name: Lock and unlock in check mode\n  hosts: localhost\n  connection: local\n  gather_facts: false\n"
        f"  vars: {{precheck_lock_path: {lock}, precheck_run_id: run-c}}\n  tasks:\n"
        "    - name: Take the lock\n      ansible.builtin.include_role: {name: precheck, tasks_from: lock}\n"
        "    - name: Release it\n      ansible.builtin.include_role: {name: precheck, tasks_from: unlock}\n"
    )
    proc = ansible_playbook("--check", "-v", str(play))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"lock {lock} would be taken by run run-c (check mode" in proc.stdout
    assert not lock.parent.exists()


# --------------------------------------------------------------------------- takeover (an interrupted run)


def test_takeover_replaces_the_named_runs_lock_and_keeps_its_id(lock):
    write_lock(lock, run_id=OTHER, age_minutes=3)
    r = take(lock, takeover_from=OTHER)
    assert r["changed"] is True and r["acquired"] is True and r["ours"] is True
    assert r["taken_over_from"] == OTHER and r["broken_to"] is None
    assert r["msg"] == f"lock {lock} of interrupted run {OTHER} taken over by run {RUN}"
    on_disk = json.loads(lock.read_text())
    assert on_disk["run_id"] == RUN and on_disk["resumed_from"] == OTHER
    assert oct(lock.stat().st_mode & 0o777) == "0o640"
    assert r["age_minutes"] < 1, "the taken-over lock is fresh"
    assert leftovers(lock) == []


def test_takeover_of_another_run_still_refuses(lock):
    write_lock(lock, run_id=OTHER)
    before = lock.read_bytes()
    r = take(lock, takeover_from="20250607T200000Z-cccccc")
    assert r["failed"] is True and r["acquired"] is False and r["taken_over_from"] is None
    assert lock.read_bytes() == before


def test_takeover_of_a_free_lock_just_takes_it_and_in_check_mode_writes_nothing(lock):
    r = take(lock, takeover_from=OTHER)
    assert r["acquired"] is True and r["taken_over_from"] is None
    lock.unlink()
    write_lock(lock, run_id=OTHER)
    before = lock.read_bytes()
    r = run(check_mode=True, path=str(lock), state="present", run_id=RUN, takeover_from=OTHER)
    assert r["changed"] is True and r["taken_over_from"] == OTHER and r["holder"]["resumed_from"] == OTHER
    assert lock.read_bytes() == before


JOURNAL_PLAY = """\
- name: PRE-008 with the journal of a killed run, then of a live one (this ansible-playbook)
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    precheck_lock_path: {lock}
  tasks:
    - name: PRE-008 as run-b (the journal says run-a is in the switch; its process {dead} is gone)
      ansible.builtin.include_role: {{name: precheck, tasks_from: lock_check}}
      vars: {{precheck_run_id: run-b}}
    - name: Keep it
      ansible.builtin.set_fact: {{dead: "{{{{ __precheck_pre008 }}}}", dead_fact: "{{{{ precheck_lock }}}}"}}
    - name: Journal run-a as this very ansible-playbook (a live run), before its snapshot
      ansible.builtin.copy:
        dest: {journal}
        mode: "0640"
        content: >-
          {{{{ {{'run_id': 'run-a', 'phase': 'mark', 'status': 'running',
                'run': {{'id': 'run-a', 'controller': meta.controller, 'process': meta.process}}}} | to_json }}}}
      vars: {{meta: "{{{{ {{}} | upgrade_run_metadata('x') }}}}"}}
    - name: PRE-008 as run-b (run-a live)
      ansible.builtin.include_role: {{name: precheck, tasks_from: lock_check}}
      vars: {{precheck_run_id: run-b}}
    - name: Write what happened
      ansible.builtin.copy:
        dest: {out}
        content: >-
          {{{{ {{'dead': dead, 'dead_fact': dead_fact, 'live': __precheck_pre008,
                'live_fact': precheck_lock}} | to_json }}}}
        mode: "0644"
"""


def test_pre008_tells_an_interrupted_run_from_a_live_one(lock, tmp_path):
    write_lock(lock, run_id="run-a")
    journal = lock.parent / "run.journal.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    journal.write_text(json.dumps({
        "run_id": "run-a", "phase": "switch", "status": "running", "snapshot": {"id": "snap-1"},
        "run": {"id": "run-a", "controller": socket.gethostname(), "process": {"pid": dead.pid, "started_ticks": 1}},
    }))
    play, out = tmp_path / "play.yml", tmp_path / "out.json"
    play.write_text(JOURNAL_PLAY.format(lock=lock, journal=journal, out=out, dead=dead.pid))
    proc = ansible_playbook(str(play))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["dead"]["failed"] is True
    assert got["dead"]["msg"].startswith(f"run run-a was interrupted in phase switch: its ansible-playbook process "
                                         f"{dead.pid} no longer runs; it had changed the host (snapshot snap-1). "
                                         "Run the upgrade again without --tags")
    assert got["dead_fact"]["state"] == "interrupted" and got["dead_fact"]["plan"] == "verify"
    assert got["dead_fact"]["resume"] is True and got["dead_fact"]["changed"] is True
    assert got["live"]["failed"] is True
    assert got["live"]["msg"].startswith("Another upgrade is running on localhost: run run-a is running in phase mark")
    assert "it had not changed the host" in got["live"]["msg"]
    assert got["live_fact"]["state"] == "live" and got["live_fact"]["changed"] is False
