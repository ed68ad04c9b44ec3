# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""files provider against a real systemd container: create, change, revert, verify, tamper, list, remove."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import container_host_vars, pexec

PATHS = ["/srv/app/data", "/srv/app/etc"]

SETUP = r"""
set -e
mkdir -p /srv/app/data/studies/s1 /srv/app/etc
printf 'index-v1\n' > /srv/app/data/index.db
head -c 200000 /dev/urandom > /srv/app/data/studies/s1/im0001.dcm
printf 'second\n' > /srv/app/data/studies/s1/im0002.dcm
printf 'secret=1\n' > /srv/app/etc/app.conf
chmod 0640 /srv/app/etc/app.conf
chown 1234:5678 /srv/app/etc/app.conf
chmod 0750 /srv/app/data/studies
ln -s ../index.db /srv/app/data/studies/link-to-index
cat > /etc/systemd/system/cu-snaptest-app.service <<'UNIT'
[Unit]
Description=clinical-upgrade snapshot test service
[Service]
ExecStart=/bin/sleep infinity
UNIT
systemctl daemon-reload
systemctl start cu-snaptest-app
"""

# modify, add, delete, change mode, change owner, replace a symlink, add a directory
CHANGE = r"""
set -e
printf 'index-v2 after upgrade\n' > /srv/app/data/index.db
printf 'new file\n' > /srv/app/data/studies/s1/im0003.dcm
mkdir -p /srv/app/data/new-dir && printf x > /srv/app/data/new-dir/f
rm /srv/app/data/studies/s1/im0002.dcm
chmod 0666 /srv/app/etc/app.conf
chown 0:0 /srv/app/etc/app.conf
rm /srv/app/data/studies/link-to-index && ln -s /etc/passwd /srv/app/data/studies/link-to-index
"""

STATE = r"""
cd / && find srv/app -printf '%p %y %m %U:%G %l\n' | sort
find srv/app -type f -print0 | sort -z | xargs -0 sha256sum
"""


def host_vars(container, **extra):
    settings = {"snapshot_files_paths": PATHS, "snapshot_files_services": ["cu-snaptest-app"], **extra}
    return container_host_vars(container, snapshot_provider="files", **settings)


def test_files_create_change_revert_restores_every_byte_and_mode(snaptest_container, run_playbook):
    name = snaptest_container.name
    pexec(name, SETUP)
    before = pexec(name, STATE).stdout
    hv = host_vars(snaptest_container)

    create = {"snaptest_action": "create", "snapshot_name": "before-upgrade"}
    proc, facts = run_playbook("snapshot_action.yml", hv, create)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the copy ran in the background and its wait reported it
    assert "snapshot before-upgrade: tar of /srv/app/data, /srv/app/etc: finished after" in proc.stdout
    assert "bytes written to /var/backups/clinical-upgrade/before-upgrade/data.tar" in proc.stdout
    record = facts["snapshot_record"]
    assert facts["snapshot_id"] == "before-upgrade"
    assert record["provider"] == "files" and record["host"] == "snaptest-host"
    assert record["files"]["file_count"] == 4
    assert record["size_bytes"] > 200000
    assert record["files"]["services_running"] == ["cu-snaptest-app"]
    saved = Path(run_playbook.registry, "snaptest-host", "before-upgrade.json")
    assert json.loads(saved.read_text())["files"]["archive_sha256"] == record["files"]["archive_sha256"]
    # the service was started again after the copy
    assert pexec(name, "systemctl is-active cu-snaptest-app").stdout.strip() == "active"

    pexec(name, CHANGE)
    assert pexec(name, STATE).stdout != before

    # revert in another run, by id (as playbooks/rollback.yml does)
    revert = {"snaptest_action": "revert", "snapshot_id": "before-upgrade"}
    proc, facts = run_playbook("snapshot_action.yml", hv, revert)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pexec(name, STATE).stdout == before
    reverted = facts["snapshot_reverted"]
    assert reverted["verified"] is True and reverted["id"] == "before-upgrade" and reverted["reverted_at"].endswith("Z")
    assert pexec(name, "systemctl is-active cu-snaptest-app").stdout.strip() == "active"

    # a second snapshot, then list: newest first, with age and size
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "second"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "list"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = facts["snapshot_list"]
    assert [r["id"] for r in listed] == ["second", "before-upgrade"]
    assert all(r["age_s"] >= 0 and r["size_bytes"] > 200000 for r in listed)

    # remove keeps the snapshot unless snapshot_keep is false
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "remove", "snapshot_id": "second"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pexec(name, "test -d /var/backups/clinical-upgrade/second", check=False).returncode == 0
    proc, facts = run_playbook("snapshot_action.yml", hv,
                               {"snaptest_action": "remove", "snapshot_id": "second", "snapshot_keep": False})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert facts["snapshot_removed"]["id"] == "second"
    assert pexec(name, "test -e /var/backups/clinical-upgrade/second", check=False).returncode == 1
    assert not Path(run_playbook.registry, "snaptest-host", "second.json").exists()


def test_files_tampered_snapshot_is_refused_before_any_change(snaptest_container, run_playbook):
    name = snaptest_container.name
    pexec(name, SETUP)
    hv = host_vars(snaptest_container)
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "s1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pexec(name, CHANGE)
    changed = pexec(name, STATE).stdout
    # flip bytes inside the archive
    pexec(name, "printf 'XXXX' | dd of=/var/backups/clinical-upgrade/s1/data.tar bs=1 seek=2000 conv=notrunc")

    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "revert", "snapshot_id": "s1"})
    assert proc.returncode != 0
    assert "snapshot s1 on snaptest-host is missing or damaged, so it was not restored and nothing was changed" \
        in proc.stdout
    assert pexec(name, STATE).stdout == changed
    assert pexec(name, "systemctl is-active cu-snaptest-app").stdout.strip() == "active"


def test_files_restore_that_differs_from_the_manifest_fails_naming_the_files(snaptest_container, run_playbook):
    """An archive that passes its checksum but restores other content (the record rewritten to match
    a changed archive) is caught by the manifest check, which names the files; services stay stopped."""
    name = snaptest_container.name
    pexec(name, SETUP)
    hv = host_vars(snaptest_container)
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "s1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # rebuild the archive from changed data, and make the record agree with it
    pexec(name, "printf 'forged\\n' > /srv/app/data/index.db && chmod 0600 /srv/app/data/studies/s1/im0001.dcm && "
                "cd / && tar --create --numeric-owner --file /var/backups/clinical-upgrade/s1/data.tar "
                "srv/app/data srv/app/etc")
    new_sum = pexec(name, "sha256sum /var/backups/clinical-upgrade/s1/data.tar").stdout.split()[0]
    record_path = Path(run_playbook.registry, "snaptest-host", "s1.json")
    record = json.loads(record_path.read_text())
    record["files"]["archive_sha256"] = new_sum
    record_path.write_text(json.dumps(record))

    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "revert", "snapshot_id": "s1"})
    assert proc.returncode != 0
    out = proc.stdout
    assert "mismatch(es) against the snapshot manifest" in out
    assert "/srv/app/data/index.db: sha256 is" in out
    assert "/srv/app/data/studies/s1/im0001.dcm: mode is 0600, snapshot has 0644" in out
    assert "were left stopped" in out
    assert pexec(name, "systemctl is-active cu-snaptest-app", check=False).stdout.strip() == "inactive"


def test_files_refuses_a_snapshot_that_does_not_fit(snaptest_container, run_playbook):
    name = snaptest_container.name
    pexec(name, SETUP)
    hv = host_vars(snaptest_container, snapshot_files_reserve_bytes=10**15)
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "big"})
    assert proc.returncode != 0
    assert "not enough space for the snapshot on snaptest-host" in proc.stdout
    assert pexec(name, "test -e /var/backups/clinical-upgrade/big", check=False).returncode == 1
    assert pexec(name, "systemctl is-active cu-snaptest-app").stdout.strip() == "active"


def test_files_create_in_check_mode_changes_nothing(snaptest_container, run_playbook):
    name = snaptest_container.name
    pexec(name, SETUP)
    proc, facts = run_playbook("snapshot_action.yml", host_vars(snaptest_container),
                               {"snaptest_action": "create", "snapshot_name": "dry"}, check_mode=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert facts["snapshot_record"]["check_mode"] is True
    assert facts["snapshot_record"]["files"]["file_count"] == 4  # the manifest was computed, not written
    assert pexec(name, "test -e /var/backups/clinical-upgrade", check=False).returncode == 1
    assert not (run_playbook.registry / "snaptest-host" / "dry.json").exists()
    assert pexec(name, "systemctl is-active cu-snaptest-app").stdout.strip() == "active"


def test_files_list_revert_and_remove_from_the_hosts_copy_without_the_controller_registry(
        snaptest_container, run_playbook):
    """AWX throws the project copy (and the controller's registry) away after a job: a later run finds
    the snapshot through the record kept on the host."""
    name = snaptest_container.name
    pexec(name, SETUP)
    before = pexec(name, STATE).stdout
    hv = host_vars(snaptest_container)
    annotations = {"run": "r1", "mark": {"last_change": 7, "since": "@1796170000.25"}}
    create = {"snaptest_action": "create", "snapshot_name": "s1", "snapshot_annotations": annotations}
    proc, facts = run_playbook("snapshot_action.yml", hv, create)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    on_host = json.loads(pexec(name, "cat /var/lib/clinical-upgrade/snapshots/s1.json").stdout)
    assert on_host == facts["snapshot_record"] and on_host["annotations"] == annotations

    shutil.rmtree(run_playbook.registry)
    pexec(name, CHANGE)

    # `show` reads one record (what a revert on demand needs to know about the snapshot's moment).
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "show", "snapshot_id": "s1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert facts["snapshot_shown"] == on_host

    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "list"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (listed,) = facts["snapshot_list"]
    assert listed["id"] == "s1" and listed["stored"] == ["host"] and listed["size_bytes"] > 200000

    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "revert", "snapshot_id": "s1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the controller has no record" in proc.stdout
    assert "using the copy on the host, /var/lib/clinical-upgrade/snapshots/s1.json" in proc.stdout
    assert pexec(name, STATE).stdout == before
    assert facts["snapshot_reverted"]["verified"] is True and facts["snapshot_reverted"]["id"] == "s1"

    proc, facts = run_playbook("snapshot_action.yml", hv,
                               {"snaptest_action": "remove", "snapshot_id": "s1", "snapshot_keep": False})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert facts["snapshot_removed"]["id"] == "s1"
    assert pexec(name, "test -e /var/lib/clinical-upgrade/snapshots/s1.json", check=False).returncode == 1
    assert pexec(name, "test -e /var/backups/clinical-upgrade/s1", check=False).returncode == 1
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "list"})
    assert proc.returncode == 0 and facts["snapshot_list"] == []


def test_files_name_taken_on_the_host_is_refused(snaptest_container, run_playbook):
    name = snaptest_container.name
    pexec(name, SETUP)
    hv = host_vars(snaptest_container)
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "s1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.rmtree(run_playbook.registry)
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "s1"})
    assert proc.returncode != 0
    assert 'snapshot_name "s1" already exists on snaptest-host (/var/lib/clinical-upgrade/snapshots/s1.json)' \
        in proc.stdout


def test_files_write_once_directory_is_linked_not_copied_and_restored_exactly(snaptest_container, run_playbook):
    """Orthanc's layout: stored files written once, the index among them. The index and the configuration
    are copied; the stored files are kept by hard links (no bytes in the archive) and restored from them."""
    name = snaptest_container.name
    pexec(name, SETUP)
    hv = host_vars(
        snaptest_container,
        snapshot_files_paths=["/srv/app/data/index.db", "/srv/app/etc"],
        snapshot_files_link_paths=["/srv/app/data"],
    )
    inode = pexec(name, "stat -c %i /srv/app/data/studies/s1/im0001.dcm").stdout.strip()

    def state():  # the application's trees, without the snapshot's link tree beside them
        return [line for line in pexec(name, STATE).stdout.splitlines() if ".clinical-upgrade-snapshots" not in line]

    before = state()
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "l1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = facts["snapshot_record"]["files"]
    [links] = files["links"]
    assert links["path"] == "/srv/app/data" and links["exclude"] == ["/srv/app/data/index.db"]
    assert links["links"] == "/srv/app/.clinical-upgrade-snapshots/l1/srv_app_data"
    assert links["files"] == 2 and links["linked_bytes"] == 200000 + len("second\n")
    archive = pexec(name, "tar --list --file /var/backups/clinical-upgrade/l1/data.tar").stdout.split()
    assert "srv/app/data/index.db" in archive and not [m for m in archive if "studies" in m]
    assert pexec(name, f"stat -c %i {links['links']}/studies/s1/im0001.dcm").stdout.strip() == inode

    pexec(name, CHANGE)
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "revert", "snapshot_id": "l1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert state() == before  # every byte, mode, owner and link as at the snapshot
    assert pexec(name, "stat -c %i /srv/app/data/studies/s1/im0001.dcm").stdout.strip() == inode

    proc, _ = run_playbook(
        "snapshot_action.yml", hv, {"snaptest_action": "remove", "snapshot_id": "l1", "snapshot_keep": False}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pexec(name, "test -e /srv/app/.clinical-upgrade-snapshots/l1", check=False).returncode == 1
    assert state() == before  # the live files stay


def test_files_copied_path_above_a_write_once_directory_is_refused(snaptest_container, run_playbook):
    pexec(snaptest_container.name, SETUP)
    hv = host_vars(snaptest_container, snapshot_files_link_paths=["/srv/app/data/studies"])
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "l2"})
    assert proc.returncode != 0
    assert "hold the write-once directory /srv/app/data/studies of snapshot_files_link_paths" in proc.stdout
