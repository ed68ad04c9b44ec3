"""roles/workstation_linux with real dnf: the plan, the holds and the switch of a RHEL-family workstation.

No RHEL host or repository is reachable here, so the workstation is an RPM installroot on this Debian
machine, driven by Debian's own dnf 4 (``dnf``, ``dnf-plugins-core`` for versionlock and
needs-restarting), ``rpm``/``rpmbuild`` and ``createrepo-c`` (``make deps``). The test builds tiny noarch
RPMs, two local repositories (the updates one carries an updateinfo.xml with one security advisory,
added with ``modifyrepo_c``), installs the 1.0 set into the installroot with dnf, then runs the role's
entry points (discover, stage, switch) through ansible-playbook against localhost with
``workstation_linux_package_manager: dnf`` and ``workstation_linux_dnf_installroot``. The module
respawns under the system Python that has dnf's bindings, as on a RHEL host.

Independent measures: ``rpm -q --root`` after the switch, and versionlock's list as
``dnf versionlock list`` prints it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import LOOPBACK, free_port, run_playbook_with_vars, stop_process, wait_for_port

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("dnf", "rpm", "rpmbuild", "createrepo_c", "modifyrepo_c")

# make deps installs them (the Makefile's DEB_PACKAGES); a machine without them fails here, never skips.
MISSING = [t for t in TOOLS if shutil.which(t) is None] + [
    p for p in ["/usr/lib/python3/dist-packages/dnf-plugins/versionlock.py"] if not Path(p).exists()
]


@pytest.fixture(autouse=True, scope="module")
def _tools():
    if MISSING:
        pytest.fail(f"missing {MISSING}: install dnf, dnf-plugins-core, rpm and createrepo-c (make deps)")


# name, version, the repository, what it requires
PACKAGES = [
    ("cu-viewer", "1.0", "base", None),
    ("cu-viewer", "2.0", "updates", None),  # the catalogue's version
    ("cu-viewer", "3.0", "updates", None),  # newer, not catalogued: never taken
    ("cu-os", "1.0", "base", None),
    ("cu-os", "1.1", "updates", None),  # a bugfix update
    ("cu-sec", "1.0", "base", None),
    ("cu-sec", "1.1", "updates", "cu-libsec"),  # the security update, with a new dependency
    ("cu-libsec", "1.0", "updates", None),
    ("cu-held", "1.0", "base", None),
    ("cu-held", "1.1", "updates", None),  # held by workstation_linux_hold
    ("cu-locked", "1.0", "base", None),
    ("cu-locked", "1.1", "updates", None),  # held by the versionlock list the site keeps
]
INSTALLED = ["cu-viewer-1.0-1", "cu-os-1.0-1", "cu-sec-1.0-1", "cu-held-1.0-1", "cu-locked-1.0-1"]

SPEC = """\
Name: {name}
Version: {version}
Release: 1
Summary: clinical-upgrade test package {name}
License: Apache-2.0
BuildArch: noarch
{requires}
%description
A test package of tests/integration/test_workstation_dnf.py.
%files
"""

UPDATEINFO = """\
<?xml version="1.0" encoding="UTF-8"?>
<updates>
  <update from="security@example.org" status="stable" type="security" version="2.0">
    <id>CU-2026:0001</id>
    <title>cu-sec: security update</title>
    <issued date="2026-01-05 00:00:00"/>
    <updated date="2026-01-05 00:00:00"/>
    <severity>Important</severity>
    <description>A security fix.</description>
    <references/>
    <pkglist>
      <collection short="cu">
        <name>cu</name>
        <package name="cu-sec" version="1.1" release="1" epoch="0" arch="noarch" src="cu-sec-1.1-1.src.rpm">
          <filename>cu-sec-1.1-1.noarch.rpm</filename>
        </package>
      </collection>
    </pkglist>
  </update>
</updates>
"""

PLAYBOOK = """\
- name: Run workstation_linux entry points on an RPM installroot with dnf
  hosts: ws
  gather_facts: false
  tasks:
    - name: Run the entry points in order
      ansible.builtin.include_role:
        name: workstation_linux
        tasks_from: "{{ step }}"
      loop: "{{ ws_steps }}"
      loop_control:
        loop_var: step

    - name: Write the role's facts for the test
      ansible.builtin.copy:
        content: "{{ {'discovered': workstation_linux_discovered | default(None),
                      'staged': workstation_linux_staged | default(None),
                      'switched': workstation_linux_switched | default(None)} | to_nice_json }}"
        dest: "{{ ws_out }}"
        mode: "0600"
"""


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, **kw)


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """The base and updates repositories of tiny noarch RPMs (updates with its security advisory), served
    over HTTP: dnf reads a file:// repository's packages in place and would download nothing."""
    top = tmp_path_factory.mktemp("rpmbuild")
    out = {"base": top / "repo-base", "updates": top / "repo-updates"}
    for path in out.values():
        path.mkdir()
    for name, version, repo, requires in PACKAGES:
        spec = top / f"{name}-{version}.spec"
        spec.write_text(SPEC.format(name=name, version=version, requires=f"Requires: {requires}" if requires else ""))
        built = run(["rpmbuild", "-bb", "--define", f"_topdir {top / 'top'}", str(spec)])
        assert built.returncode == 0, built.stderr
        shutil.copy(top / "top" / "RPMS" / "noarch" / f"{name}-{version}-1.noarch.rpm", out[repo])
    for path in out.values():
        made = run(["createrepo_c", "-q", str(path)])
        assert made.returncode == 0, made.stderr
    (top / "updateinfo.xml").write_text(UPDATEINFO)
    added = run(["modifyrepo_c", "--mdtype=updateinfo", str(top / "updateinfo.xml"), str(out["updates"] / "repodata")])
    assert added.returncode == 0, added.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", LOOPBACK, str(port)],
        cwd=top,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=server)
        yield {name: f"http://{LOOPBACK}:{port}/{path.name}" for name, path in out.items()}
    finally:
        stop_process(server)


def dnf(root, *args):
    return run(["dnf", "-q", "-y", f"--installroot={root}", *args], env=dict(os.environ, LC_ALL="C"))


def rpm_versions(root, *names) -> dict:
    got = run(["rpm", "-q", "--root", str(root), "--qf", "%{NAME} %{VERSION}-%{RELEASE}\n", *names])
    return dict(line.split(" ", 1) for line in got.stdout.splitlines() if " " in line and "not installed" not in line)


@pytest.fixture
def workstation(repos, tmp_path):
    """An installroot with the 1.0 set installed by dnf, cu-locked in versionlock's list."""
    root = tmp_path / "root"
    plugins = root / "etc" / "dnf" / "plugins"
    plugins.mkdir(parents=True)
    (root / "etc" / "yum.repos.d").mkdir(parents=True)
    # dnf reads dnf.conf and the repositories inside the installroot; the plug-ins' configuration
    # (pluginconfpath) is a host path unless dnf.conf names one.
    (root / "etc" / "dnf" / "dnf.conf").write_text(f"[main]\ngpgcheck=0\npluginconfpath={plugins}\n")
    (plugins / "versionlock.conf").write_text(f"[main]\nenabled=1\nlocklist={plugins / 'versionlock.list'}\n")
    (plugins / "versionlock.list").write_text("")
    (root / "etc" / "yum.repos.d" / "cu.repo").write_text(
        "".join(
            f"[cu-{name}]\nname=cu {name}\nbaseurl={url}\ngpgcheck=0\nmetadata_expire=0\n\n"
            for name, url in repos.items()
        )
    )
    done = dnf(root, "install", *INSTALLED)
    assert done.returncode == 0, done.stderr
    locked = dnf(root, "versionlock", "add", "cu-locked")
    assert locked.returncode == 0, locked.stderr
    assert rpm_versions(root, "cu-os", "cu-locked") == {"cu-os": "1.0-1", "cu-locked": "1.0-1"}
    return root


def play(root, tmp_path, steps, updates="security", hold=("cu-held",), catalogue_packages=None):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {"all": {"hosts": {"ws": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}
        )
    )
    playbook = tmp_path / "ws_dnf.yml"
    playbook.write_text(PLAYBOOK)
    variables = {
        "ws_steps": list(steps),
        "ws_out": str(tmp_path / "out.json"),
        "workstation_linux_package_manager": "dnf",
        "workstation_linux_dnf_installroot": str(root),
        "workstation_linux_product": "cu-viewer",
        "workstation_linux_target_version": "2.0",
        "workstation_linux_updates": updates,
        "workstation_linux_hold": list(hold),
        "release_catalogue": {"cu-viewer": {"2.0": {"packages": catalogue_packages or {"cu-viewer": "2.0-1"}}}},
    }
    proc, facts = run_playbook_with_vars(
        inventory, playbook, variables, tmp_path / "vars.json", tmp_path / "out.json", timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return facts


def plan_of(facts) -> dict:
    return {
        item["name"]: (item["from"], item["to"], item["reason"], item["security"])
        for item in facts["discovered"]["plan"]
    }


def test_security_takes_the_security_update_its_dependency_and_the_catalogue_version(workstation, tmp_path):
    facts = play(workstation, tmp_path, ["discover"], updates="security")
    found = facts["discovered"]
    assert found["problems"] == []
    assert plan_of(facts) == {
        "cu-sec": ("1.0-1", "1.1-1", "policy", True),
        "cu-libsec": (None, "1.0-1", "dependency", False),
        "cu-viewer": ("1.0-1", "2.0-1", "catalogue", False),
    }
    assert found["version"] == "1.0" and found["package_version"] == "1.0-1"
    assert {item["origin"] for item in found["plan"]} == {"cu-updates"}
    assert found["download_bytes"] > 0
    assert found["dpkg_lock"] == {"held": False, "pid": None, "command": None}
    assert found["reboot"] == {"required": False, "packages": []}
    assert found["installed"] == {"cu-held": "1.0-1", "cu-locked": "1.0-1", "cu-viewer": "1.0-1"}
    assert "cu-sec 1.0-1 -> 1.1-1 (policy, security)" in found["pending_changes"]


def test_all_takes_every_update_but_never_a_held_or_versionlocked_package(workstation, tmp_path):
    facts = play(workstation, tmp_path, ["discover"], updates="all")
    assert facts["discovered"]["problems"] == []
    assert plan_of(facts) == {
        "cu-os": ("1.0-1", "1.1-1", "policy", False),
        "cu-sec": ("1.0-1", "1.1-1", "policy", True),
        "cu-libsec": (None, "1.0-1", "dependency", False),
        "cu-viewer": ("1.0-1", "2.0-1", "catalogue", False),
    }


def test_none_takes_the_catalogue_version_only(workstation, tmp_path):
    facts = play(workstation, tmp_path, ["discover"], updates="none", hold=())
    assert plan_of(facts) == {"cu-viewer": ("1.0-1", "2.0-1", "catalogue", False)}


def test_a_held_package_the_catalogue_does_not_name_is_a_problem_when_the_plan_needs_it(workstation, tmp_path):
    # cu-sec 1.1 needs cu-libsec, which the site holds (not installed, so nothing to keep): no problem;
    # holding cu-sec itself keeps the security update out of the plan.
    facts = play(workstation, tmp_path, ["discover"], updates="security", hold=("cu-sec",))
    assert "cu-sec" not in plan_of(facts)
    assert facts["discovered"]["problems"] == []


def test_the_switch_installs_exactly_the_plan_and_locks_the_held_packages(workstation, tmp_path):
    facts = play(workstation, tmp_path, ["discover", "stage", "switch"], updates="security")
    assert facts["staged"]["packages"] == 3
    switched = facts["switched"]
    assert switched["problems"] == []
    assert switched["version"] == "2.0" and switched["package_version"] == "2.0-1"
    assert {p["name"]: p["to"] for p in switched["packages"]} == {
        "cu-sec": "1.1-1",
        "cu-libsec": "1.0-1",
        "cu-viewer": "2.0-1",
    }
    assert switched["reboot"]["required"] is False and switched["reboot"]["done"] is False
    # rpm itself, in the installroot: exactly the plan moved, nothing else.
    assert rpm_versions(workstation, "cu-viewer", "cu-os", "cu-sec", "cu-libsec", "cu-held", "cu-locked") == {
        "cu-viewer": "2.0-1",
        "cu-os": "1.0-1",
        "cu-sec": "1.1-1",
        "cu-libsec": "1.0-1",
        "cu-held": "1.0-1",
        "cu-locked": "1.0-1",
    }
    # The new dependency is marked as one (dnf would mark a package named on its command line "user").
    reasons = dnf(
        workstation, "repoquery", "--installed", "--qf", "%{name} %{reason}", "cu-libsec", "cu-sec", "cu-viewer"
    )
    assert sorted(reasons.stdout.splitlines()) == ["cu-libsec dependency", "cu-sec user", "cu-viewer user"]
    listed = dnf(workstation, "versionlock", "list")
    assert sorted(listed.stdout.split()) == ["cu-held-0:1.0-1.*", "cu-locked-0:1.0-1.*", "cu-viewer-0:2.0-1.*"]
    # The locks hold for a plain dnf: `dnf upgrade` moves cu-os only.
    upgraded = dnf(workstation, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert rpm_versions(workstation, "cu-viewer", "cu-os", "cu-held", "cu-locked") == {
        "cu-viewer": "2.0-1",
        "cu-os": "1.1-1",
        "cu-held": "1.0-1",
        "cu-locked": "1.0-1",
    }
    # A second run has nothing to do under the same policy.
    again = play(workstation, tmp_path, ["discover"], updates="security")
    assert again["discovered"]["plan"] == [] and again["discovered"]["problems"] == []


def test_the_switch_installs_from_the_cache_only(workstation, tmp_path):
    """Without the stage's download the switch fails (dnf -C), installing nothing."""
    facts = play(workstation, tmp_path, ["discover"], updates="security")
    assert len(facts["discovered"]["plan"]) == 3
    inventory = tmp_path / "hosts.yml"
    variables = json.loads((tmp_path / "vars.json").read_text())
    variables["ws_steps"] = ["discover", "switch"]
    proc, _ = run_playbook_with_vars(
        inventory, tmp_path / "ws_dnf.yml", variables, tmp_path / "vars.json", tmp_path / "out.json", timeout=600
    )
    assert proc.returncode != 0
    failed_task = proc.stdout.split("fatal: [ws]")[0].rsplit("TASK [", 1)[-1]
    assert failed_task.startswith("workstation_linux : Switch | Install the plan]")
    assert "/var/cache/dnf/cu-updates-" in proc.stdout and "No such file or directory" in proc.stdout
    assert rpm_versions(workstation, "cu-viewer", "cu-sec") == {"cu-viewer": "1.0-1", "cu-sec": "1.0-1"}


def test_a_running_dnf_is_named_as_the_lock_holder(workstation, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)  # dnf-automatic stand-in"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "ready"
    pid_file = workstation / "var" / "lib" / "dnf" / "rpmdb_lock.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(holder.pid))
    try:
        facts = play(workstation, tmp_path, ["discover"], updates="security")
    finally:
        holder.kill()
        holder.wait()
    lock = facts["discovered"]["dpkg_lock"]
    assert lock["held"] is True and lock["pid"] == holder.pid
    assert any(f"dnf/rpm is locked by process {holder.pid}" in p for p in facts["discovered"]["problems"])


def test_a_catalogue_version_no_repository_has_is_a_problem(workstation, tmp_path):
    facts = play(
        workstation, tmp_path, ["discover"], updates="none", hold=(), catalogue_packages={"cu-viewer": "2.5-1"}
    )
    assert plan_of(facts) == {}
    assert any("cu-viewer-2.5-1 is in no enabled repository" in p for p in facts["discovered"]["problems"])
