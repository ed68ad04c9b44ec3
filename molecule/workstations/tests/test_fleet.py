"""The fleet runs of converge.yml, read from their output and fleet summaries, and the workstations
themselves: patched by policy, the held package unmoved, apt's own history agreeing with the
evidence, the image-load check passed on every patched workstation, each package fetched once."""

import json
import re

import testlib

testinfra_hosts = ["ansible://workstations_linux"]
FLEET = [f"mol-ws{i}" for i in range(1, 7)]
RUNS = ["run1-locked", "run2-threshold", "run3-released", "run4-idempotence"]


def run(name):
    return json.loads((testlib.EPHEMERAL / f"{name}.json").read_text())


def outcomes(name):
    return {w["host"]: w["outcome"] for w in run(name)["fleet"]["workstations"]}


def evidence(host):
    return json.loads((testlib.RESULTS / f"upgrade-latest-{host}.json").read_text())


def test_run1_the_locked_workstation_fails_alone_and_both_batches_run(host):
    del host
    first = run("run1-locked")
    assert first["rc"] != 0, "a refused workstation must fail the run"
    expected = {h: "upgraded" for h in FLEET} | {"mol-ws2": "refused", "mol-ws5": "rolled_back"}
    assert outcomes("run1-locked") == expected
    ws2 = next(w for w in first["fleet"]["workstations"] if w["host"] == "mol-ws2")
    assert "dpkg is locked by process" in ws2["message"] and "lock-frontend" in ws2["message"]


def test_run2_a_batch_over_the_threshold_stops_the_run_before_the_next_batch(host):
    del host
    second = run("run2-threshold")
    assert second["rc"] != 0
    assert outcomes("run2-threshold") == {
        "mol-ws1": "already_current",
        "mol-ws2": "refused",
        "mol-ws3": "already_current",
        "mol-ws4": "not_attempted",
        "mol-ws5": "not_attempted",
        "mol-ws6": "not_attempted",
    }
    assert second["fleet"]["attempted"] == 3


def test_run3_the_released_workstation_is_patched_and_run4_changes_nothing(host):
    del host
    third, fourth = run("run3-released"), run("run4-idempotence")
    assert third["rc"] == 0, third["stdout"][-3000:]
    assert outcomes("run3-released") == {
        h: ("upgraded" if h in ("mol-ws2", "mol-ws5") else "already_current") for h in FLEET
    }
    assert fourth["rc"] == 0, fourth["stdout"][-3000:]
    assert set(outcomes("run4-idempotence").values()) == {"already_current"}
    recap = [line for line in fourth["stdout"].splitlines() if re.match(r"mol-ws\d+ ", line)]
    assert len(recap) == 6 and all(" changed=0 " in line for line in recap), recap


def test_run1_the_workstation_failing_its_verification_is_rolled_back_to_every_package_before(host):
    """mol-ws5's verification after a real switch failed (the injected fault): the flow reverted its
    snapshot, verified it again, and every package is at its version before the run."""
    del host
    ws5 = next(w for w in run("run1-locked")["fleet"]["workstations"] if w["host"] == "mol-ws5")
    assert "3.6.7-injected-fault" in ws5["message"], ws5
    assert ws5["changes"] > 0, "the fault must come after a real switch that installed packages"
    run_id = run("run1-locked")["fleet"]["run"]["id"]
    record = json.loads((testlib.RESULTS / f"upgrade-{run_id}" / "mol-ws5.json").read_text())
    assert record["outcome"] == "rolled_back"
    assert record["snapshot"]["id"] and record["snapshot_reverted"]
    after_switch = {c["check"]: c["status"] for c in record["verification"]}
    assert after_switch["viewer_version"] == "failed", after_switch
    after_rollback = {c["check"]: c["status"] for c in record["rollback_verification"]}
    assert after_rollback and set(after_rollback.values()) == {"passed"}, after_rollback
    before = (testlib.EPHEMERAL / "mol-ws5-packages-before.txt").read_text()
    after = (testlib.EPHEMERAL / "mol-ws5-packages-run1-locked.txt").read_text()
    assert after == before, "mol-ws5's packages after its rollback differ from those before the run"
    patched = (testlib.EPHEMERAL / "mol-ws5-packages-run3-released.txt").read_text()
    assert patched != before, "mol-ws5 was not patched once the fault was gone"


def test_security_updates_applied_and_the_held_packages_unmoved(host):
    name = host.backend.get_hostname()
    record = evidence(name)
    assert record["outcome"] in ("upgraded", "already_current")
    held = host.check_output("apt-mark showhold").split()
    assert {"tzdata", "dcmtk", "libdcmtk17"} <= set(held)
    assert host.package("dcmtk").version == "3.6.7-9~deb12u4"
    # Nothing the security policy admits is pending any more (apt's own simulation, held packages aside).
    pending = host.check_output("apt-get -s -o Debug::NoLocking=1 dist-upgrade | grep ^Inst || true")
    assert "-security" not in pending, pending
    # tzdata did not move although an update is pending for it.
    policy = host.check_output("apt-cache policy tzdata")
    installed = policy.split("Installed: ")[1].split()[0]
    candidate = policy.split("Candidate: ")[1].split()[0]
    assert installed != candidate, "tzdata has no pending update: the hold was not tested"


def test_apts_history_agrees_with_the_evidence(host):
    """apt's own log of the patch run lists exactly the packages the evidence says were installed."""
    name = host.backend.get_hostname()
    # Only this converge's runs: an interrupted earlier converge may have left its records in the results.
    records = [testlib.RESULTS / f"upgrade-{run(r)['fleet']['run']['id']}" / f"{name}.json" for r in RUNS]
    switches = [json.loads(e.read_text()) for e in records if e.exists()]
    switches = [s for s in switches if s.get("outcome") == "upgraded"]
    assert len(switches) == 1, f"{name} was patched {len(switches)} times"
    recorded = {p["name"]: p["to"] for p in switches[0]["switch"]["packages"]}
    history = host.file("/var/log/apt/history.log").content_string
    patch_runs = [block for block in history.split("\n\n") if "--no-download" in block]
    assert len(patch_runs) == 1, "the patch run's apt-get install is not in apt's history exactly once"
    upgraded = {}
    for line in patch_runs[0].splitlines():
        if line.startswith(("Upgrade: ", "Install: ")):
            for item in line.split(": ", 1)[1].split("), "):
                pkg, versions = item.split(" (", 1)
                upgraded[pkg.split(":")[0]] = versions.rstrip(")").split(", ")[-1].split(" ")[0]
    assert upgraded == recorded


def test_the_image_loaded_on_every_patched_workstation(host):
    name = host.backend.get_hostname()
    record = [json.loads(e.read_text()) for e in testlib.RESULTS.glob(f"upgrade-*/{name}.json")]
    upgraded = [r for r in record if r.get("outcome") == "upgraded"][0]
    checks = {c["check"]: c for c in upgraded["verification"]}
    assert checks["image_load"]["status"] == "passed", checks["image_load"]
    assert checks["image_load"]["details"]["removed"] is True
    assert checks["pacs_echo_from_workstation"]["status"] == "passed"
    assert checks["held_packages"]["status"] == "passed"
    assert not [f for f in host.file("/var/tmp").listdir() if f.startswith("cu-image-load.")]  # noqa: S108 - on the workstation


def test_the_site_cache_fetched_each_package_once(host):
    del host
    cache = run("run1-locked")["fleet"]["package_cache"]
    assert cache is not None, "the fleet summary has no package cache counters"
    assert cache["upstream_bytes"] > 0
    # Five workstations patched from the same packages: served about five times what was fetched.
    assert cache["served_bytes"] >= 3 * cache["upstream_bytes"], cache
