"""Random arguments to run_lock and run_journal (the run's state on the host) end in a message,
never a traceback: numeric extremes, odd run ids and user names, odd paths. Every example works
in a fresh temporary directory."""

from __future__ import annotations

import tempfile
from pathlib import Path

import run_journal
import run_lock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import run_module

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
extreme_numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from(["nan", "inf", "1e400", "999999999999999999", "-0", "12abc", "", " 5 "]),
)
texts = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["", " ", "run\n1", "r" * 300, "é/../x"]))
names = st.sampled_from(["run.lock", "", "sub/dir/run.lock", "../escape.lock", "x" * 300, "ok/"])


def check(module, args):
    result = run_module(module, args)
    assert result["_rc"] in (0, 1)
    if result.get("failed"):
        assert result["msg"] and "Traceback" not in result["msg"]
    return result


@SETTINGS
@given(state=st.sampled_from(["present", "absent", "query", "bogus"]), name=names, run_id=texts, user=texts,
       stale=extreme_numbers, takeover=texts, break_stale=st.booleans(), held=st.booleans())
def test_fuzz_run_lock(state, name, run_id, user, stale, takeover, break_stale, held):
    with tempfile.TemporaryDirectory() as tmp:
        if held:  # another run holds the lock: the staleness arithmetic runs on the extreme values
            run_module(run_lock, {"path": str(Path(tmp) / "run.lock"), "state": "present", "run_id": "holder"})
        args = {"path": str(Path(tmp) / name) if name else "", "state": state, "break_stale": break_stale}
        for key, value in (("run_id", run_id), ("user", user), ("stale_minutes", stale), ("takeover_from", takeover)):
            if value is not None:
                args[key] = value
        check(run_lock, args)


@SETTINGS
@given(state=st.sampled_from(["present", "absent", "query", "bogus"]), name=names, run_id=texts,
       data=st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=10), st.floats(), st.integers()),
                            max_size=3),
       takeover=texts)
def test_fuzz_run_journal(state, name, run_id, data, takeover):
    with tempfile.TemporaryDirectory() as tmp:
        args = {"path": str(Path(tmp) / name) if name else "", "state": state, "data": data}
        for key, value in (("run_id", run_id), ("takeover_from", takeover)):
            if value is not None:
                args[key] = value
        check(run_journal, args)
