# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""podman provider against a real systemd container: commit + volume export, revert by recreating
the container, Ansible keeps working on it in the same play, list, remove."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import container_host_vars, inspect, pexec, podman


def host_vars(container, **extra):
    return container_host_vars(container, snapshot_provider="podman", **extra)


def test_podman_create_change_revert_in_one_play(snaptest_container, run_playbook):
    c = snaptest_container
    pexec(c.name, "printf 'volume data v1\\n' > /srv/vol/data.txt")
    before = inspect(c.name)
    # a change in the named volume after the snapshot must be undone too; done from outside the play
    proc, facts = run_playbook("podman_cycle.yml", host_vars(c), {"snapshot_name": "pre"})
    assert proc.returncode == 0, proc.stdout + proc.stderr

    record = facts["snapshot_record"]
    assert facts["snapshot_id"] == "pre"
    assert record["podman"]["image"] == "localhost/cu-snapshot/snaptest-host:pre"
    assert record["podman"]["settings"]["publish"] == [f"127.0.0.1:{c.port}:8042/tcp"]
    assert record["podman"]["volumes"][0]["name"] == c.volume
    assert record["size_bytes"] >= record["podman"]["image_bytes"] > 0
    assert facts["snapshot_reverted"]["verified"] is True
    assert facts["hostname_after"] == "snaphost"  # Ansible ran a task on the recreated container

    after = inspect(c.name)
    assert after["Id"] != before["Id"], "the container was recreated"
    assert after["Name"] == c.name
    assert after["State"]["Running"]
    assert after["HostConfig"]["PortBindings"] == before["HostConfig"]["PortBindings"]
    for key, value in c.labels.items():
        assert after["Config"]["Labels"][key] == value
    assert after["Config"]["SystemdMode"] is True
    assert after["Config"]["Hostname"] == "snaphost"
    assert pexec(c.name, "systemctl is-system-running --wait", check=False).stdout.strip() in ("running", "degraded")
    assert pexec(c.name, "test -e /root/cu-snaptest-marker", check=False).returncode == 1
    assert pexec(c.name, "test -d /usr/share/doc/systemd", check=False).returncode == 0
    assert pexec(c.name, "cat /srv/vol/data.txt").stdout == "volume data v1\n"

    listed = facts["snapshot_list"]
    assert [r["id"] for r in listed] == ["pre"]
    assert listed[0]["age_s"] >= 0 and listed[0]["size_bytes"] == record["size_bytes"]


def test_podman_revert_across_runs_restores_volume_and_remove(snaptest_container, run_playbook):
    c = snaptest_container
    hv = host_vars(c)
    # The volume's own directory belongs to a service account (as /var/lib/ris does): its owner and mode
    # are not in podman's export, and must come back with the revert.
    pexec(c.name, "printf 'v1\\n' > /srv/vol/data.txt && chown 4321:4322 /srv/vol && chmod 0750 /srv/vol")
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "s1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"snapshot s1: podman commit of {c.name}: finished after" in proc.stdout
    assert f"snapshot s1: {c.name} paused" in proc.stdout and "for 0 linked and 1 exported volume(s)" in proc.stdout
    export = Path(facts["snapshot_record"]["podman"]["volumes"][0]["export"])
    assert export.is_file()

    pexec(c.name, "printf 'v2\\n' > /srv/vol/data.txt && printf 'extra\\n' > /srv/vol/extra.txt && touch /root/marker")
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "revert", "snapshot_id": "s1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pexec(c.name, "cat /srv/vol/data.txt").stdout == "v1\n"
    assert pexec(c.name, "stat -c '%u:%g %a' /srv/vol").stdout == "4321:4322 750\n"
    assert pexec(c.name, "test -e /srv/vol/extra.txt", check=False).returncode == 1
    assert pexec(c.name, "test -e /root/marker", check=False).returncode == 1

    # a second snapshot, not in use by the container: remove deletes the image and the exports
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "s2"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    image = facts["snapshot_record"]["podman"]["image"]
    assert podman("image", "exists", image, check=False).returncode == 0
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "remove", "snapshot_id": "s2"})
    assert proc.returncode == 0 and podman("image", "exists", image, check=False).returncode == 0  # kept by default
    proc, facts = run_playbook("snapshot_action.yml", hv,
                               {"snaptest_action": "remove", "snapshot_id": "s2", "snapshot_keep": False})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert podman("image", "exists", image, check=False).returncode == 1
    assert not Path(run_playbook.registry, "snaptest-host", "s2.json").exists()

    # s1 is the image the reverted container runs from: remove untags it (layers go with the container)
    proc, _ = run_playbook("snapshot_action.yml", hv,
                           {"snaptest_action": "remove", "snapshot_id": "s1", "snapshot_keep": False})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert podman("image", "exists", "localhost/cu-snapshot/snaptest-host:s1", check=False).returncode == 1
    assert not export.exists()
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "list"})
    assert facts["snapshot_list"] == []


def test_podman_revert_of_unknown_id_and_missing_image_fail_before_any_change(snaptest_container, run_playbook):
    c = snaptest_container
    hv = host_vars(c)
    before = inspect(c.name)["Id"]
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "revert", "snapshot_id": "nope"})
    assert proc.returncode != 0
    assert 'snapshot_id "nope" is unknown for snaptest-host' in proc.stdout

    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "s1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    podman("rmi", facts["snapshot_record"]["podman"]["image"])
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "revert", "snapshot_id": "s1"})
    assert proc.returncode != 0
    assert "cannot be restored, nothing was changed: image localhost/cu-snapshot/snaptest-host:s1 is missing" \
        in proc.stdout
    assert inspect(c.name)["Id"] == before


def test_podman_list_revert_and_remove_from_the_hosts_copy_without_the_controller_registry(
        snaptest_container, run_playbook, tmp_path):
    """The controller's registry is gone (AWX throws the project copy away); the volume exports are kept
    elsewhere (snapshot_podman_export_dir on lasting storage). The record kept in the container finds
    the snapshot; the revert recreates the container, which removes that copy, so it is written back."""
    c = snaptest_container
    hv = host_vars(c, snapshot_podman_export_dir=str(tmp_path / "exports"))
    record_on_host = "/var/lib/clinical-upgrade/snapshots/s1.json"
    # The volume's own directory belongs to a service account (as /var/lib/ris does): its owner and mode
    # are not in podman's export, and must come back with the revert.
    pexec(c.name, "printf 'v1\\n' > /srv/vol/data.txt && chown 4321:4322 /srv/vol && chmod 0750 /srv/vol")
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "s1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(pexec(c.name, f"cat {record_on_host}").stdout) == facts["snapshot_record"]

    shutil.rmtree(run_playbook.registry)
    pexec(c.name, "printf 'v2\\n' > /srv/vol/data.txt && touch /root/marker")

    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "list"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [(r["id"], r["stored"]) for r in facts["snapshot_list"]] == [("s1", ["host"])]

    before = inspect(c.name)["Id"]
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "revert", "snapshot_id": "s1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"the controller has no record ({run_playbook.registry}/snaptest-host/s1.json); using the copy on the host" \
        in proc.stdout
    assert facts["snapshot_reverted"]["verified"] is True
    assert inspect(c.name)["Id"] != before, "the container was recreated"
    assert pexec(c.name, "cat /srv/vol/data.txt").stdout == "v1\n"
    assert pexec(c.name, "test -e /root/marker", check=False).returncode == 1
    # the recreated container did not have the record (written after the commit): the revert wrote it back
    assert json.loads(pexec(c.name, f"cat {record_on_host}").stdout)["id"] == "s1"

    proc, _ = run_playbook("snapshot_action.yml", hv,
                           {"snaptest_action": "remove", "snapshot_id": "s1", "snapshot_keep": False})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pexec(c.name, f"test -e {record_on_host}", check=False).returncode == 1
    assert podman("image", "exists", "localhost/cu-snapshot/snaptest-host:s1", check=False).returncode == 1
    assert not (tmp_path / "exports" / "snaptest-host" / "s1").exists()


def test_podman_write_once_volume_is_protected_by_links_and_restored_exactly(snaptest_container, run_playbook):
    """A PACS-like storage volume: files written once. The snapshot links them (no export, no bytes copied),
    commits after the pause; the revert removes what was stored after it and links back what was deleted."""
    c = snaptest_container
    hv = host_vars(c, snapshot_podman_link_volumes=[c.volume], snapshot_podman_commit_paused=False)
    pexec(c.name, "mkdir -p /srv/vol/ab/cd && head -c 200000 /dev/urandom > /srv/vol/ab/cd/one "
                  "&& printf two > /srv/vol/ab/cd/two && ln -s ab/cd/one /srv/vol/latest")
    inode = pexec(c.name, "stat -c %i /srv/vol/ab/cd/one").stdout.strip()
    digest = pexec(c.name, "sha256sum /srv/vol/ab/cd/one").stdout.split()[0]
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "w1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "for 1 linked and 0 exported volume(s); the commit follows, unpaused" in proc.stdout
    podman_record = facts["snapshot_record"]["podman"]
    assert podman_record["commit_paused"] is False
    [volume] = podman_record["volumes"]
    assert volume["method"] == "link" and volume["files"] == 2 and volume["linked_bytes"] == 200003
    assert 0 < volume["bytes"] < 2000, "a linked volume costs its manifest only"
    links = Path(volume["links"])
    assert links.parts[-3:] == ("snaptest-host", "w1", c.volume)
    assert str(links.stat().st_ino) and (links / "ab" / "cd" / "one").stat().st_ino == int(inode)

    # after the snapshot: a new study arrives, one is deleted, the system changes
    pexec(c.name, "mkdir -p /srv/vol/ef && printf new > /srv/vol/ef/new && rm /srv/vol/ab/cd/one && touch /root/m")
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "revert", "snapshot_id": "w1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pexec(c.name, "test -e /srv/vol/ef/new || test -e /srv/vol/ef", check=False).returncode == 1
    assert pexec(c.name, "stat -c %i /srv/vol/ab/cd/one").stdout.strip() == inode
    assert pexec(c.name, "sha256sum /srv/vol/ab/cd/one").stdout.split()[0] == digest
    assert pexec(c.name, "cat /srv/vol/ab/cd/two && readlink /srv/vol/latest").stdout == "twoab/cd/one\n"
    assert pexec(c.name, "test -e /root/m", check=False).returncode == 1

    # a protected file rewritten in place: the snapshot refuses to restore, and changes nothing
    proc, facts = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "create", "snapshot_name": "w2"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pexec(c.name, "printf changed >> /srv/vol/ab/cd/two && printf new > /srv/vol/after")
    before = inspect(c.name)["Id"]
    proc, _ = run_playbook("snapshot_action.yml", hv, {"snaptest_action": "revert", "snapshot_id": "w2"})
    assert proc.returncode != 0
    assert "ab/cd/two: rewritten in place" in proc.stdout and "nothing was changed" in proc.stdout
    assert inspect(c.name)["Id"] == before and pexec(c.name, "cat /srv/vol/after").stdout == "new"

    for snap in ("w1", "w2"):
        proc, facts = run_playbook("snapshot_action.yml", hv,
                                   {"snaptest_action": "remove", "snapshot_id": snap, "snapshot_keep": False})
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not links.exists() and not links.parent.exists()
    assert pexec(c.name, "sha256sum /srv/vol/ab/cd/one").stdout.split()[0] == digest  # the live files stay
