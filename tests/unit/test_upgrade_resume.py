"""filter_plugins/upgrade.py: the controller process of a run, the run journal and who holds a host.

Real processes (a script named ansible-playbook that forks, as ansible-playbook forks its workers)
and real /proc; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "filter_plugins"))

from upgrade import (  # noqa: E402
    FilterModule,
    controller_process,
    process_state,
    upgrade_journal,
    upgrade_lock_holder,
    upgrade_record_step,
    upgrade_result_new,
    upgrade_run_metadata,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

HERE = socket.gethostname()
OLD = "20261201T020000Z-aaaaaa"
NEW = "20261201T030000Z-bbbbbb"


def fake_playbook(tmp_path: Path, body: str) -> Path:
    """A Python script named ansible-playbook (as the real one is a Python script of that name)."""
    script = tmp_path / "bin" / "ansible-playbook"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(textwrap.dedent(body))
    return script


WORKER = f"""
    import json, os, sys
    sys.path.insert(0, {str(ROOT / 'filter_plugins')!r})
    from upgrade import controller_process
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # a worker, forked like ansible-playbook's: the same command line
        os.close(read)
        os.write(write, json.dumps(controller_process()).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    print(json.dumps({{"playbook": os.getpid(), "worker": child, "found": json.loads(os.read(read, 4096))}}))
"""


def test_a_forked_worker_finds_its_ansible_playbook(tmp_path):
    script = fake_playbook(tmp_path, WORKER)
    out = json.loads(subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                                    check=True, timeout=30).stdout)
    found = out["found"]
    assert found["pid"] == out["playbook"] != out["worker"]
    assert isinstance(found["started_ticks"], int) and found["started_ticks"] > 0
    assert found["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_a_nested_ansible_playbook_is_found_not_the_one_that_started_it(tmp_path):
    inner = fake_playbook(tmp_path / "inner", WORKER)
    outer = fake_playbook(tmp_path / "outer", f"""
        import os, subprocess, sys, json
        # A task of the outer run (a module: another program) starts the inner run.
        proc = subprocess.run(["/bin/sh", "-c", "exec {sys.executable} -c 'import subprocess, sys; "
                               "sys.stdout.write(subprocess.run([sys.argv[1], sys.argv[2]], capture_output=True, "
                               "text=True).stdout)' {sys.executable} {inner}"], capture_output=True, text=True)
        print(json.dumps({{"outer": os.getpid(), "inner": json.loads(proc.stdout)}}))
    """)
    out = json.loads(subprocess.run([sys.executable, str(outer)], capture_output=True, text=True,
                                    check=True, timeout=30).stdout)
    assert out["inner"]["found"]["pid"] == out["inner"]["playbook"] != out["outer"]


def test_without_ansible_playbook_above_there_is_no_pid():
    found = controller_process()  # pytest is not ansible-playbook
    assert found["pid"] is None and "no ansible-playbook" in found["reason"]
    missing = controller_process(proc="/nonexistent")
    assert missing["pid"] is None and "cannot be read" in missing["reason"]


def test_the_run_metadata_carries_the_controller_process():
    run = upgrade_run_metadata({}, "r1")
    assert run["controller"] == HERE
    assert set(run["process"]) >= {"pid", "started_ticks", "boot_id"}


@pytest.fixture
def playbook(tmp_path):
    """A live process that looks like ansible-playbook; killed at the end."""
    script = fake_playbook(tmp_path, """
        import json, os, sys, time
        sys.path.insert(0, sys.argv[1])
        from upgrade import controller_process
        print(json.dumps(controller_process()), flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, str(script), str(ROOT / "filter_plugins")], stdout=subprocess.PIPE,
                            text=True)
    record = json.loads(proc.stdout.readline())
    yield proc, record
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_a_live_ansible_playbook_is_running_and_a_killed_one_is_gone(playbook):
    proc, record = playbook
    assert record["pid"] == proc.pid
    state, why = process_state(record, HERE)
    assert state == "running" and str(proc.pid) in why
    proc.send_signal(signal.SIGKILL)  # the laptop lid closes
    proc.wait(timeout=10)
    state, why = process_state(record, HERE)
    assert state == "gone" and "no longer runs" in why


def test_a_pid_that_now_runs_another_program_is_gone(playbook):
    _proc, record = playbook
    state, why = process_state(dict(record, started_ticks=record["started_ticks"] - 1), HERE)
    assert state == "gone" and "another program" in why
    # This process (pytest) exists but is not ansible-playbook.
    me = controller_process(os.getpid())  # no playbook: build the record by hand
    assert me["pid"] is None
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    ticks = int(stat[stat.rindex(")") + 2:].split()[19])
    state, why = process_state({"pid": os.getpid(), "started_ticks": ticks}, HERE)
    assert state == "gone" and "another program" in why


def test_an_earlier_boot_means_gone_and_another_controller_means_unknown(playbook):
    _proc, record = playbook
    assert process_state(dict(record, boot_id="0-earlier-boot"), HERE)[0] == "gone"
    state, why = process_state(record, "other-controller.example")
    assert state == "unknown" and "other-controller.example" in why
    assert process_state({"pid": None, "reason": "no /proc"}, HERE) == (
        "unknown", "its controller process was not recorded (no /proc)")


# --------------------------------------------------------------------------- the journal's content


def result_at(phase_steps=(), snapshot=None, mark=None):
    run = {"id": OLD, "user": "jdoe", "controller": HERE, "started": "2026-12-01T02:00:00Z",
           "process": {"pid": 4242, "started_ticks": 1, "boot_id": "b"}}
    out = upgrade_result_new("pacs1", "pacs", run, "1.12.7")
    out["versions"].update(before="1.10.1", package_before="1.10.1+dfsg-2", database_before=6)
    out["baseline"] = {"run_id": OLD, "counts": {}}
    if mark:
        out = upgrade_record_step(out, "mark", mark)
    if snapshot:
        out = upgrade_record_step(out, "snapshot", snapshot)
    return out


def test_the_journal_keeps_what_a_rerun_needs():
    snap = {"id": "cu-pacs1-1", "provider": "podman"}
    mark = {"last_change": 12, "marker": "/var/lib/clinical-upgrade/mark"}
    journal = upgrade_journal(result_at(snapshot=snap, mark=mark), "switch", "running", "/ev/pacs1-baseline-x.json")
    assert journal["run_id"] == OLD and journal["run"]["process"]["pid"] == 4242
    assert journal["run"]["controller"] == HERE
    assert (journal["phase"], journal["status"]) == ("switch", "running")
    assert journal["baseline"] == {"file": "/ev/pacs1-baseline-x.json", "run_id": OLD}
    assert journal["snapshot"] == snap and journal["mark"] == mark
    assert journal["versions"] == {"before": "1.10.1", "target": "1.12.7", "package_before": "1.10.1+dfsg-2",
                                   "database_before": 6}
    assert journal["outcome"] is None and journal["resumed_from"] is None
    done = upgrade_journal(dict(result_at(), outcome="upgraded", resumed_from={"run_id": "r0"}), "finished", "passed")
    assert done["outcome"] == "upgraded" and done["resumed_from"] == "r0" and done["baseline"]["file"] is None
    json.dumps(journal)  # it goes to the host as JSON


# --------------------------------------------------------------------------- who holds the host


def lock_held(run_id=OLD, stale=False):
    return {"held": True, "holder": {"run_id": run_id, "user": "jdoe"}, "stale": stale, "age_minutes": 3.0}


FREE = {"held": False, "holder": None, "stale": False}


def journal_of(phase, process, controller=HERE, snapshot=None, age=1.0, status="running"):
    journal = upgrade_journal(result_at(snapshot=snapshot), phase, status, "/ev/b.json")
    journal["run"]["process"] = process
    journal["run"]["controller"] = controller
    return {"path": "/var/lib/clinical-upgrade/run.journal.json", "journal": journal, "age_minutes": age}


def test_free_ours_and_finished():
    assert upgrade_lock_holder(FREE, {"path": "/j", "journal": None}, {"id": NEW})["state"] == "free"
    assert upgrade_lock_holder(lock_held(NEW), None, {"id": NEW})["state"] == "ours"
    done = journal_of("finished", {"pid": 1})
    assert upgrade_lock_holder(FREE, done, {"id": NEW})["state"] == "free"


def test_a_lock_without_journal_is_foreign_and_nothing_is_claimed():
    held = upgrade_lock_holder(lock_held(), {"path": "/j", "journal": None}, {"id": NEW})
    assert held["state"] == "foreign" and held["changed"] is None and not held["resume"]
    assert "not known" in held["message"]


def test_a_live_run_is_refused_and_says_whether_it_changed_the_host(playbook):
    _proc, record = playbook
    early = upgrade_lock_holder(lock_held(), journal_of("stage", record), {"id": NEW})
    assert early["state"] == "live" and not early["resume"] and early["changed"] is True
    assert f"run {OLD} is running in phase stage" in early["message"] and "had changed the host" in early["message"]
    before = upgrade_lock_holder(lock_held(), journal_of("mark", record), {"id": NEW})
    assert before["changed"] is False and "had not changed the host" in before["message"]


def test_an_interrupted_switch_on_this_controller_resumes_by_verifying(playbook):
    proc, record = playbook
    proc.kill()
    proc.wait(timeout=10)
    snap = {"id": "cu-pacs1-1"}
    held = upgrade_lock_holder(lock_held(), journal_of("switch", record, snapshot=snap), {"id": NEW})
    assert held["state"] == "interrupted" and held["resume"] and held["plan"] == "verify"
    assert held["changed"] is True and held["phase"] == "switch" and held["pid"] == record["pid"]
    assert held["message"].startswith(f"run {OLD} was interrupted in phase switch: its ansible-playbook process")
    # The lock removed by hand: the journal alone still says so (never already_current unverified).
    assert upgrade_lock_holder(FREE, journal_of("switch", record, snapshot=snap), {"id": NEW})["plan"] == "verify"


def test_the_plan_follows_the_phase():
    gone = {"pid": 999999999, "started_ticks": 1}
    snap = {"id": "s1"}

    def plan(phase, snapshot=None):
        return upgrade_lock_holder(lock_held(), journal_of(phase, gone, snapshot=snapshot), {"id": NEW})["plan"]

    assert plan("lock") == plan("mark") == plan("snapshot") == "fresh"
    assert plan("snapshot", snap) == plan("stage", snap) == plan("verify", snap) == plan("preserve", snap) == "verify"
    assert plan("revert", snap) == plan("redeliver", snap) == plan("verify_after_rollback", snap) == "manual"
    assert plan("check_after_rollback", snap) == "manual"


def test_another_controller_resumes_only_when_stale_or_asked():
    other = {"pid": 4242, "started_ticks": 1}
    journal = journal_of("switch", other, controller="ctl2.example", snapshot={"id": "s1"})
    fresh_lock = upgrade_lock_holder(lock_held(), journal, {"id": NEW}, 240)
    assert fresh_lock["state"] == "unknown" and not fresh_lock["resume"]
    assert "upgrade_resume: true" in fresh_lock["message"] and "ctl2.example" in fresh_lock["message"]
    stale = upgrade_lock_holder(lock_held(stale=True), journal, {"id": NEW}, 240)
    assert stale["state"] == "interrupted" and "stale" in stale["message"]
    asked = upgrade_lock_holder(lock_held(), journal, {"id": NEW}, 240, True)
    assert asked["state"] == "interrupted" and "upgrade_resume is true" in asked["message"]
    # No lock left: the journal's own age decides.
    assert upgrade_lock_holder(FREE, dict(journal, age_minutes=300), {"id": NEW}, 240)["resume"]
    assert not upgrade_lock_holder(FREE, dict(journal, age_minutes=3), {"id": NEW}, 240)["resume"]


def test_a_lock_of_another_run_than_the_journal_is_foreign():
    journal = journal_of("switch", {"pid": 999999999}, snapshot={"id": "s1"})
    held = upgrade_lock_holder(lock_held("someone-else"), journal, {"id": NEW})
    assert held["state"] == "foreign" and held["run_id"] == "someone-else" and not held["resume"]


def test_the_filters_are_registered():
    filters = FilterModule().filters()
    assert filters["upgrade_journal"] is upgrade_journal
    assert filters["upgrade_lock_holder"] is upgrade_lock_holder
    assert upgrade_result_new("h", "p", {})["resumed_from"] is None


def test_a_killed_playbook_started_by_its_process_group_is_gone(tmp_path):
    """What the Molecule scenario does: kill -9 the process group; the pid stays gone."""
    script = fake_playbook(tmp_path, "import time\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    time.sleep(0.3)
    record = controller_process(proc.pid)
    assert record["pid"] == proc.pid
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert process_state(record, HERE)[0] == "gone"
