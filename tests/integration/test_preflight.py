"""playbooks/preflight.yml against small inventories written by the test: exact messages.

Runs the real ansible-playbook (no host is contacted: the play runs on localhost and reads only
inventory variables).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "preflight.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"

CATALOGUE = textwrap.dedent(
    """\
    release_catalogue:
      orthanc:
        "1.10.1":
          install_method: package
          packages: {orthanc: "1.10.1+dfsg-2+deb12u1"}
          os: {family: Debian, major_versions: ["12"]}
          upgrade_from: []
          min_free_disk_mb: 512
          min_memory_mb: 256
          database_migration: none
        "1.12.7":
          install_method: package
          packages: {orthanc: "1.12.7+dfsg-4"}
          os: {family: Debian, major_versions: ["12", "13"]}
          os_release_upgrade: {from: bookworm, to: trixie}
          upgrade_from: ["1.10.1"]
          min_free_disk_mb: 1024
          min_memory_mb: 512
          database_migration: none
    """
)


def write_inventory(tmp_path: Path, hosts_yaml: str, catalogue: str = CATALOGUE) -> Path:
    inv = tmp_path / "inventory"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts.yml").write_text(textwrap.dedent(hosts_yaml))
    (inv / "group_vars" / "all" / "catalogue.yml").write_text(catalogue)
    (inv / "group_vars" / "all" / "evidence.yml").write_text("clinical_upgrade_evidence_dir: /var/lib/cu-evidence\n")
    return inv


def ansible_playbook(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ansible-playbook from the repository with the project's configuration."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_preflight(inventory: Path) -> subprocess.CompletedProcess:
    return ansible_playbook("-i", str(inventory / "hosts.yml"), str(PLAYBOOK))


GOOD = """\
all:
  children:
    pacs:
      hosts:
        pacs1:
          ansible_host: 192.0.2.10
          pacs_server_target_version: "1.12.7"
          pacs_server_rest_password: not-a-secret
          pacs_server_dicom_aet: PACS1
          pacs_server_installed_version: "1.10.1"
"""


def test_a_good_inventory_passes(tmp_path):
    result = run_preflight(write_inventory(tmp_path, GOOD))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "inventory preflight passed for 1 host(s)" in result.stdout


def test_the_lab_inventory_passes():
    result = ansible_playbook(str(PLAYBOOK))
    assert result.returncode == 0, result.stdout + result.stderr


BAD = """\
all:
  children:
    pacs:
      hosts:
        pacs1:
          ansible_host: 192.0.2.10
          pacs_server_rest_password: not-a-secret
        pacs2:
          ansible_host: 192.0.2.11
          pacs_server_target_version: 1.12
          pacs_server_rest_password: not-a-secret
          endpoint_dicom_port: 70000
        pacs3:
          ansible_host: 192.0.2.12
          pacs_server_target_version: "1.10.1"
          pacs_server_installed_version: "1.12.7"
          pacs_server_rest_password: not-a-secret
          pacs_server_dicom_aet: THIS_AE_TITLE_IS_TOO_LONG
        pacs4:
          ansible_host: 192.0.2.13
          pacs_server_target_version: "2.0.0"
          pacs_server_rest_password: not-a-secret
          pacs_server_allow_downgrade: "yes"
    ris:
      hosts:
        ris1:
          ris_server_aetitle: "RIS\\\\WL"
"""

EXPECTED = [
    "pacs1: pacs_server_target_version is not set; the pacs group needs it "
    "(host_vars/pacs1.yml or group_vars/pacs.yml)",
    "ris1: neither endpoint_host nor ansible_host is set; set endpoint_host to "
    "the address the controller reaches it at",
    'pacs2: pacs_server_target_version is a float (1.12); quote it ("1.12") so YAML keeps it a version string',
    "pacs2: endpoint_dicom_port must be a port number from 1 to 65535, got 70000",
    "pacs4: pacs_server_allow_downgrade must be true or false, got 'yes' (str)",
    "pacs3: pacs_server_dicom_aet: AE title 'THIS_AE_TITLE_IS_TOO_LONG' has 25 characters: use at most 16",
    "ris1: ris_server_aetitle: AE title 'RIS\\WL' contains a backslash, which DICOM does not allow",
    "pacs3: target 1.10.1 is lower than the installed 1.12.7: refusing a downgrade; "
    "set pacs_server_allow_downgrade: true to allow it, or raise pacs_server_target_version",
    "pacs4: pacs_server_target_version 2.0.0 is not in release_catalogue.orthanc (known: 1.10.1, 1.12.7); "
    "choose a catalogued version or add 2.0.0 to the catalogue (docs/catalogue.md)",
]


def problems_of(output: str) -> list[str]:
    """The problems listed in the failed assert's msg (the JSON result line)."""
    for raw in output.splitlines():
        line = raw.strip()
        if line.startswith('"msg": ') and "inventory problem(s)" in line:
            msg = json.loads(line[len('"msg": ') :].rstrip(","))
            return [item for item in msg.split("\n- ")[1:]]
    raise AssertionError(f"no preflight failure message in: {output}")


def test_a_bad_inventory_fails_once_with_every_problem(tmp_path):
    result = run_preflight(write_inventory(tmp_path, BAD))
    assert result.returncode != 0
    assert result.stdout.count("fatal:") == 1, result.stdout
    assert f"{len(EXPECTED)} inventory problem(s), nothing was started" in result.stdout
    assert problems_of(result.stdout) == EXPECTED


def test_catalogue_problems_name_the_hosts(tmp_path):
    bad_catalogue = CATALOGUE.replace(
        'install_method: package\n      packages: {orthanc: "1.12.7',
        'install_method: rpm\n      packages: {orthanc: "1.12.7',
    )
    bad_catalogue = bad_catalogue.replace('upgrade_from: ["1.10.1"]', 'upgrade_from: ["1.9.0"]')
    bad_catalogue = bad_catalogue.replace("min_memory_mb: 256", "min_memory_mb: 256MB")
    hosts = (
        GOOD
        + """\
        pacs2:
          ansible_host: 192.0.2.11
          pacs_server_target_version: "1.12.7"
          pacs_server_rest_password: not-a-secret
"""
    )
    result = run_preflight(write_inventory(tmp_path, hosts, bad_catalogue))
    assert result.returncode != 0
    assert problems_of(result.stdout) == [
        "pacs1, pacs2: release_catalogue.orthanc['1.10.1'].min_memory_mb: must be a whole number of MB (0 or more), "
        "got '256MB' (str)",
        "pacs1, pacs2: release_catalogue.orthanc['1.12.7'].install_method: unknown install method 'rpm'; "
        "use one of package, artifact, windows_installer",
        "pacs1, pacs2: release_catalogue.orthanc['1.12.7'].upgrade_from: 1.9.0 is not a version of orthanc in the "
        "catalogue (known: 1.10.1, 1.12.7); add release_catalogue.orthanc['1.9.0'] or remove it",
        "pacs1: orthanc 1.12.7 can be reached from 1.9.0 only (release_catalogue.orthanc['1.12.7'].upgrade_from), "
        "not from the installed 1.10.1: upgrade to an intermediate version first, or add 1.10.1 to upgrade_from "
        "once that path is tested",
    ]


def test_a_ris_target_is_checked_when_set(tmp_path):
    """A RIS's target is optional (a site may upgrade only its PACS); when set it must be a string the
    catalogue knows, and the catalogue's entries of the RIS's product are checked too."""
    catalogue = CATALOGUE + (
        "  cu-ris:\n"
        '    "1.0":\n'
        "      install_method: artifact\n"
        "      artifacts: [{name: cu-ris-1.0.tar.gz}]\n"
        '      os: {family: Debian, major_versions: ["12"]}\n'
        "      upgrade_from: []\n"
        "      min_free_disk_mb: 16\n"
        "      min_memory_mb: 64\n"
        "      database_migration: none\n"
    )
    hosts = GOOD + """\
    ris:
      hosts:
        ris1:
          ansible_host: 192.0.2.20
          ris_server_target_version: "1.1"
        ris2:
          ansible_host: 192.0.2.21
          ris_server_target_version: 1.1
        ris3:
          ansible_host: 192.0.2.22
"""
    result = run_preflight(write_inventory(tmp_path, hosts, catalogue))
    assert result.returncode != 0
    problems = problems_of(result.stdout)
    assert ('ris2: ris_server_target_version is a float (1.1); quote it ("1.1") so YAML keeps it a version string'
            in problems)
    assert any(p.startswith("ris1: ris_server_target_version 1.1 is not in release_catalogue.cu-ris (known: 1.0)")
               for p in problems), problems
    assert any(p.startswith("ris1, ris2: release_catalogue.cu-ris['1.0'].artifacts[0].sha256: missing")
               for p in problems), problems
    assert not any(p.startswith("ris3") for p in problems), problems  # no target: nothing to check


def test_missing_catalogue(tmp_path):
    result = run_preflight(write_inventory(tmp_path, GOOD, catalogue="---\n{}\n"))
    assert result.returncode != 0
    assert problems_of(result.stdout) == [
        "pacs1: release_catalogue is not defined: put it in the inventory (group_vars/all/catalogue.yml, "
        "see docs/catalogue.md)"
    ]


def test_the_evidence_directory_is_required_and_absolute(tmp_path):
    inv = write_inventory(tmp_path, GOOD)
    (inv / "group_vars" / "all" / "evidence.yml").write_text("clinical_upgrade_evidence_dir: results\n")
    result = run_preflight(inv)
    assert result.returncode != 0
    assert problems_of(result.stdout) == [
        "pacs1: clinical_upgrade_evidence_dir must be an absolute directory on the controller "
        "(for example /var/lib/clinical-upgrade/evidence), got 'results'"]
    (inv / "group_vars" / "all" / "evidence.yml").unlink()
    result = run_preflight(inv)
    assert problems_of(result.stdout) == [
        "pacs1: clinical_upgrade_evidence_dir is not set; the pacs group needs it "
        "(host_vars/pacs1.yml or group_vars/pacs.yml)"]


def test_the_preflight_runs_once_per_run(tmp_path):
    """site.yml imports the preflight and each product playbook imports it again: it runs once."""
    twice = tmp_path / "twice.yml"
    twice.write_text(f"- import_playbook: {REPO}/playbooks/preflight.yml\n"
                     f"- import_playbook: {REPO}/playbooks/preflight.yml\n")
    result = ansible_playbook("-i", str(write_inventory(tmp_path, GOOD) / "hosts.yml"), str(twice))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("inventory preflight passed") == 1, result.stdout


def test_a_workstation_target_is_checked_when_set(tmp_path):
    """The Linux workstations' viewer target: a quoted version of the viewer's catalogue product."""
    hosts = GOOD + """\
    workstations:
      children:
        workstations_linux:
          hosts:
            ws1:
              workstation_linux_target_version: "9.9"
            ws2:
              workstation_linux_target_version: 3.6
              workstation_linux_product: orthanc
            ws3:
"""
    result = run_preflight(write_inventory(tmp_path, hosts, CATALOGUE))
    assert result.returncode != 0
    problems = problems_of(result.stdout)
    assert ('ws2: workstation_linux_target_version is a float (3.6); quote it ("3.6") so YAML keeps it a version '
            "string") in problems, problems
    assert "ws1: release_catalogue has no product 'dcmtk' (known: orthanc); add it (see docs/catalogue.md)" in problems
    assert not any(p.startswith("ws3") for p in problems), problems  # no target: nothing to check


def test_a_failed_preflight_stops_every_host_before_the_next_play(tmp_path):
    """The check runs once, on the first host; its failure must stop the plays after it for every host."""
    inventory = write_inventory(tmp_path, GOOD.replace('          pacs_server_target_version: "1.12.7"\n', ""))
    after = tmp_path / "after.yml"
    after.write_text(f"- import_playbook: {PLAYBOOK}\n"
                     "- name: A play after the preflight\n  hosts: all\n  gather_facts: false\n  tasks:\n"
                     "    - name: Must not run\n      ansible.builtin.debug: {msg: STARTED-AFTER-PREFLIGHT}\n")
    second = "    other:\n      hosts:\n        second:\n          ansible_host: 192.0.2.11\n"
    (inventory / "hosts.yml").write_text((inventory / "hosts.yml").read_text() + second)
    result = ansible_playbook("-i", str(inventory / "hosts.yml"), str(after))
    assert result.returncode != 0
    assert "pacs_server_target_version is not set" in result.stdout, result.stdout
    assert "STARTED-AFTER-PREFLIGHT" not in result.stdout, result.stdout


def test_a_windows_workstation_target_is_checked_when_set(tmp_path):
    """The Windows workstations' viewer: no default product, so a target without one says to name it."""
    hosts = GOOD + """\
    workstations:
      children:
        workstations_windows:
          hosts:
            win1:
              workstation_windows_target_version: "2.4.0"
            win2:
              workstation_windows_target_version: 2.4
              workstation_windows_product: orthanc
            win3:
"""
    result = run_preflight(write_inventory(tmp_path, hosts, CATALOGUE))
    assert result.returncode != 0
    problems = problems_of(result.stdout)
    assert ("win1: workstation_windows_product is not set; name the viewer's catalogue product "
            "(group_vars/workstations_windows.yml, see docs/workstations.md)") in problems, problems
    assert any(p.startswith("win2: workstation_windows_target_version is a float (2.4)") for p in problems), problems
    assert not any(p.startswith("win3") for p in problems), problems  # no target: nothing to check


@pytest.mark.parametrize("path", ["playbooks/preflight.yml", "playbooks/site.yml", "playbooks/upgrade_pacs.yml",
                                  "playbooks/upgrade_ris.yml", "playbooks/patch_workstations.yml"])
def test_syntax(path):
    result = ansible_playbook("--syntax-check", path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_playbook_using_the_precheck_role_passes_syntax_check(tmp_path):
    playbook = tmp_path / "precheck_example.yml"
    playbook.write_text(
        textwrap.dedent(
            """\
            - name: Precheck, lock, unlock
              hosts: pacs
              gather_facts: false
              roles:
                - role: precheck
              tasks:
                - name: Take the run lock
                  ansible.builtin.include_role: {name: precheck, tasks_from: lock}
                - name: Release the run lock
                  ansible.builtin.include_role: {name: precheck, tasks_from: unlock}
            """
        )
    )
    result = ansible_playbook("--syntax-check", str(playbook), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tls_files_must_exist_on_the_controller(tmp_path):
    ca = tmp_path / "site-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    hosts = GOOD.replace(
        "        pacs1:\n",
        "        pacs1:\n"
        f"          endpoint_rest_ca_path: {ca}\n"
        "          endpoint_dicom_tls: 'yes'\n"
        "          endpoint_dicom_tls_ca_cert: /nonexistent/ca.pem\n",
        1,
    )
    result = run_preflight(write_inventory(tmp_path, hosts))
    assert result.returncode != 0
    assert problems_of(result.stdout) == [
        "pacs1: endpoint_dicom_tls_ca_cert must be a PEM file on the controller, got '/nonexistent/ca.pem', "
        "which is not a file there",
        "pacs1: endpoint_dicom_tls must be true or false, got 'yes' (str)",
    ]
