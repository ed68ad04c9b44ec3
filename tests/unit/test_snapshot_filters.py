"""filter_plugins/snapshot.py: LVM sizes and plans, path overlap, podman exports, merged records."""

import datetime as dt
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))

from snapshot import (  # noqa: E402
    FilterModule,
    snapshot_lvm_merge_commands,
    snapshot_lvm_merge_plan,
    snapshot_lvm_plan,
    snapshot_lvm_size_bytes,
    snapshot_lvol_calls,
    snapshot_paths_overlap,
    snapshot_podman_bad_exports,
    snapshot_podman_settings,
    snapshot_podman_volumes,
    snapshot_records,
)

GIB = 1024**3
MIB = 1024**2


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(("size", "origin", "expected"), [
    ("100%ORIGIN", 10 * GIB, 10 * GIB),
    ("20%ORIGIN", 10 * GIB, 2 * GIB),
    ("20%ORIGIN", 1001, 201),  # 200.2 rounds up: a snapshot one byte short overflows
    ("1%ORIGIN", 1, 1),
    ("0%ORIGIN", 10 * GIB, 0),
    ("512m", 10 * GIB, 512 * MIB),
    ("512M", 0, 512 * MIB),
    ("4g", 0, 4 * GIB),
    ("4G", 0, 4 * GIB),
    ("1.5g", 0, int(1.5 * GIB)),
    ("0.5t", 0, 512 * GIB),
    ("100", 0, 100 * MIB),  # lvcreate reads a bare number as MiB
    ("2.25", 0, int(2.25 * MIB)),
    ("8s", 0, 4096),
    ("4096b", 0, 4096),
    ("3k", 0, 3072),
])
def test_lvm_size_bytes(size, origin, expected):
    assert snapshot_lvm_size_bytes(size, origin) == expected


@pytest.mark.parametrize("size", ["20%FREE", "20%origin", "1000%ORIGIN", "4gb", "g", "", "-1g", "1,5g", "%ORIGIN"])
def test_lvm_size_bytes_refuses_what_lvcreate_would_not_take(size):
    with pytest.raises(Exception, match="is not understood"):
        snapshot_lvm_size_bytes(size, GIB)


# ----------------------------------------------------------------------------- lvm plan


def lvs(item, size, path, dm, attr="-wi-ao----"):
    return {"item": item, "rc": 0, "stdout": f"  {size}|{path}|{dm}|{attr}  "}


def test_lvm_plan_sizes_paths_and_boot_lv():
    results = [
        lvs("root", 8 * GIB, "/dev/vg0/root", "/dev/mapper/vg0-root"),
        lvs("data", 100 * GIB, "/dev/vg0/data", "/dev/mapper/vg0-data"),
    ]
    plan = snapshot_lvm_plan(results, "25%ORIGIN", "pre", ["/dev/mapper/vg0-root\n", "", "/dev/sda1"])
    assert plan == [
        {"origin": "root", "snapshot": "pre.root", "size": "25%ORIGIN", "origin_bytes": 8 * GIB,
         "bytes": 2 * GIB, "path": "/dev/vg0/root", "dm_path": "/dev/mapper/vg0-root", "boot": True},
        {"origin": "data", "snapshot": "pre.data", "size": "25%ORIGIN", "origin_bytes": 100 * GIB,
         "bytes": 25 * GIB, "path": "/dev/vg0/data", "dm_path": "/dev/mapper/vg0-data", "boot": False},
    ]


def test_lvm_plan_boot_lv_by_lv_path_and_absolute_size():
    plan = snapshot_lvm_plan([lvs("boot", GIB, "/dev/vg0/boot", "/dev/mapper/vg0-boot")], "512m", "s",
                             ["/dev/vg0/boot"])
    assert plan[0]["boot"] is True and plan[0]["bytes"] == 512 * MIB


def test_lvm_plan_empty_boot_sources_never_match_empty_paths():
    # findmnt printed nothing for /boot (no separate /boot) and lvs printed no dm path
    plan = snapshot_lvm_plan([{"item": "data", "stdout": f"{GIB}|/dev/vg0/data||-wi-a-----"}], "100%ORIGIN", "s",
                             ["", "  "])
    assert plan[0]["boot"] is False and plan[0]["dm_path"] == "" and plan[0]["bytes"] == GIB


def test_lvol_calls_for_create_and_remove():
    volumes = [{"origin": "data", "snapshot": "pre.data", "size": "20%ORIGIN"}]
    assert snapshot_lvol_calls(volumes, "vg0", create=True) == [
        {"module": "community.general.lvol",
         "args": {"vg": "vg0", "lv": "data", "snapshot": "pre.data", "size": "20%ORIGIN"}}]
    assert snapshot_lvol_calls(volumes, "vg0", state="absent", force=True) == [
        {"module": "community.general.lvol", "args": {"vg": "vg0", "lv": "pre.data", "state": "absent", "force": True}}]
    assert snapshot_lvol_calls([], "vg0") == []


# ----------------------------------------------------------------------------- lvm merge


def merge_result(lines, snapshot="pre.data", origin="data"):
    return {"item": {"snapshot": snapshot, "origin": origin}, "stdout_lines": lines}


def test_merge_plan_valid_snapshot_of_closed_origin():
    plan = snapshot_lvm_merge_plan([merge_result(["  data|owi-a-s---||", "  pre.data|swi-a-s---|data|12.50"])])
    assert plan == [{"snapshot": "pre.data", "origin": "data", "exists": True, "invalid": False,
                     "data_percent": "12.50", "origin_open": False}]
    assert snapshot_lvm_merge_commands(plan, "vg0") == ["lvconvert --merge --yes vg0/pre.data"]


def test_merge_plan_invalid_snapshot_and_open_origin_need_attention():
    plan = snapshot_lvm_merge_plan([merge_result(["data|owi-aos---||", "pre.data|swi-I-s---|data|100.00"])])
    assert plan[0]["invalid"] is True and plan[0]["origin_open"] is True
    assert snapshot_lvm_merge_commands(plan, "vg0") == ["lvconvert --merge --yes vg0/pre.data", "reboot"]


def test_merge_plan_missing_snapshot():
    plan = snapshot_lvm_merge_plan([merge_result(["data|-wi-a-----||"])])
    assert plan[0]["exists"] is False and plan[0]["invalid"] is False and plan[0]["data_percent"] == ""
    plan = snapshot_lvm_merge_plan([merge_result([])])
    assert plan[0]["exists"] is False and plan[0]["origin_open"] is False


# ----------------------------------------------------------------------------- overlap


@pytest.mark.parametrize(("paths", "directory", "expected"), [
    (["/var"], "/var/backups/cu", ["/var"]),
    (["/var/"], "/var/backups/cu/", ["/var/"]),
    (["/srv/app/data"], "/srv/app/data", ["/srv/app/data"]),
    (["/srv/app/data/"], "/srv/app/data//", ["/srv/app/data/"]),
    (["/var/backups/cu/inner"], "/var/backups/cu", ["/var/backups/cu/inner"]),
    (["/var/lib/orthanc", "/etc/orthanc"], "/var/backups/clinical-upgrade", []),
    (["/var/backup"], "/var/backups", []),  # a common prefix is not an overlap
    (["/var/backups-old"], "/var/backups", []),
    (["/srv/a", "/srv/a/b", "/etc"], "/srv/a/b/c", ["/srv/a", "/srv/a/b"]),
    (["/"], "/var/backups", ["/"]),
    ([], "/var/backups", []),
])
def test_paths_overlap(paths, directory, expected):
    assert snapshot_paths_overlap(paths, directory) == expected


# ----------------------------------------------------------------------------- podman exports


def test_podman_freeze_plans_and_the_recorded_volumes():
    from ansible.errors import AnsibleFilterError
    from snapshot import snapshot_podman_export_plan, snapshot_podman_link_plan

    info = [{"item": {"name": "store", "destination": "/var/lib/orthanc/db-v6"},
             "volumes": [{"Mountpoint": "/var/lib/containers/storage/volumes/store/_data"}]}]
    links = snapshot_podman_link_plan(info, "", "pacs1", "s1")
    assert links == [{"src": "/var/lib/containers/storage/volumes/store/_data",
                      "dest": "/var/lib/containers/clinical-upgrade-links/pacs1/s1/store",
                      "manifest": "/var/lib/containers/clinical-upgrade-links/pacs1/s1/store.links.json"}]
    assert snapshot_podman_link_plan(info, "/srv/l/", "pacs1", "s1")[0]["dest"] == "/srv/l/pacs1/s1/store"
    with pytest.raises(AnsibleFilterError, match="podman gave no mount point for volume store"):
        snapshot_podman_link_plan([{"item": {"name": "store"}, "volumes": []}], "", "pacs1", "s1")
    exports = snapshot_podman_export_plan(["index"], "/reg/h/s1/")
    assert exports == [{"volume": "index", "dest": "/reg/h/s1/index.tar"}]

    frozen = {"paused_s": 0.4,
              "links": [{**links[0], "files": 10000, "bytes": 5_000_000_000, "manifest_bytes": 700_000}],
              "exports": [{**exports[0], "bytes": 10, "sha256": "ab",
                           "root": {"uid": 101, "gid": 102, "mode": "0750"}}]}
    volumes = [{"name": "index", "destination": "/var/lib/orthanc/index"}, info[0]["item"]]
    assert snapshot_podman_volumes(volumes, frozen) == [
        {"name": "index", "destination": "/var/lib/orthanc/index", "method": "export",
         "export": "/reg/h/s1/index.tar", "sha256": "ab", "bytes": 10,
         "root": {"uid": 101, "gid": 102, "mode": "0750"}},  # the volume's own directory, not in its export
        {"name": "store", "destination": "/var/lib/orthanc/db-v6", "method": "link",
         "links": links[0]["dest"], "manifest": links[0]["manifest"], "files": 10000,
         "linked_bytes": 5_000_000_000, "bytes": 700_000},  # a linked volume costs its manifest only
    ]
    assert snapshot_podman_volumes(volumes, {}) == []  # check mode: nothing was kept

    # a linked volume has no export to check; a record written before the link method has no method
    recorded = snapshot_podman_volumes(volumes, frozen)
    legacy = {"name": "v1", "export": "/reg/h/s1/v1.tar", "sha256": "ab"}
    check = [{"item": recorded[0], "stat": {"exists": True, "checksum": "ab"}},
             {"item": recorded[0], "stat": {"exists": True, "checksum": "changed"}},
             {"item": recorded[1], "stat": {"exists": False}},
             {"item": legacy, "stat": {"exists": False}}]
    assert snapshot_podman_bad_exports(check) == ["/reg/h/s1/index.tar", "/reg/h/s1/v1.tar"]


INSPECT = {
    "Name": "cu-lab-pacs1",
    "Image": "sha256:abc",
    "ImageName": "localhost/cu-debian12:latest",
    "State": {"Running": True},
    "Config": {
        "Cmd": ["/sbin/init"], "Entrypoint": None, "Hostname": "pacs1", "SystemdMode": True,
        "Labels": {"org.clinical-upgrade.host": "pacs1"}, "User": "", "WorkingDir": "/",
        "Env": ["PATH=/usr/bin:/bin", "container=podman", "HOSTNAME=pacs1", "HOME=/root", "ORTHANC=1", "EMPTY="],
    },
    "HostConfig": {
        "PortBindings": {"8042/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18042"}],
                         "104/tcp": [{"HostIp": "", "HostPort": "10104"}, {"HostPort": "10105"}]},
        "Privileged": False, "CapAdd": ["CAP_NET_RAW"],
    },
    "Mounts": [
        {"Type": "volume", "Name": "pacs1-db", "Destination": "/var/lib/orthanc", "RW": True},
        {"Type": "bind", "Source": "/srv/lab/dicom", "Destination": "/dicom", "RW": False},
    ],
    "NetworkSettings": {"Networks": {"podman": {}}},
}


def test_podman_settings_from_inspect():
    result = snapshot_podman_settings(INSPECT)
    assert result["running"] is True and result["image_id"] == "sha256:abc"
    assert result["volumes"] == [{"name": "pacs1-db", "destination": "/var/lib/orthanc"}]
    assert result["settings"] == {
        "name": "cu-lab-pacs1", "image": "localhost/cu-debian12:latest", "command": ["/sbin/init"], "entrypoint": [],
        "hostname": "pacs1",
        "publish": ["10104:104/tcp", "10105:104/tcp", "127.0.0.1:18042:8042/tcp"],
        "volume": ["/srv/lab/dicom:/dicom:ro", "pacs1-db:/var/lib/orthanc:rw"],  # sorted: podman gives no fixed order
        "label": {"org.clinical-upgrade.host": "pacs1"},
        "env": {"PATH": "/usr/bin:/bin", "ORTHANC": "1", "EMPTY": ""},  # runtime entries left out
        "systemd": "always", "privileged": False, "cap_add": ["CAP_NET_RAW"], "network": [], "user": "",
        "workdir": "/",
    }


def test_podman_settings_custom_network_string_entrypoint_and_stopped():
    inspect = {**INSPECT, "State": {"Running": False},
               "Config": {**INSPECT["Config"], "Entrypoint": "/entry.sh", "SystemdMode": False, "WorkingDir": ""},
               "NetworkSettings": {"Networks": {"lab": {}, "podman": {}}}}
    result = snapshot_podman_settings(inspect)
    assert result["running"] is False
    assert result["settings"]["entrypoint"] == ["/entry.sh"] and result["settings"]["systemd"] == "false"
    assert result["settings"]["network"] == ["lab", "podman"] and result["settings"]["workdir"] == "/"


def test_podman_settings_needs_inspect_data():
    with pytest.raises(Exception, match="needs one container"):
        snapshot_podman_settings({})


# ----------------------------------------------------------------------------- records


NOW = "2026-01-02T00:00:00Z"


def rec(rid, created, host="pacs1", **extra):
    return {"id": rid, "host": host, "created": created, "size_bytes": extra.pop("size_bytes", "42"), **extra}


def test_records_merge_controller_first_newest_first_with_age():
    controller = [rec("a", "2026-01-01T00:00:00Z", note="controller"), rec("b", "2026-01-01T12:00:00Z")]
    host = [rec("a", "2026-01-01T00:00:00Z", note="host"), rec("c", "2026-01-01T23:59:00Z", size_bytes=None)]
    listed = snapshot_records(controller, host, "pacs1", NOW)
    assert [r["id"] for r in listed] == ["c", "b", "a"]
    by_id = {r["id"]: r for r in listed}
    assert by_id["a"]["note"] == "controller" and by_id["a"]["stored"] == ["controller", "host"]
    assert by_id["b"]["stored"] == ["controller"] and by_id["c"]["stored"] == ["host"]
    assert by_id["a"]["age_s"] == 86400 and by_id["c"]["age_s"] == 60
    assert by_id["a"]["size_bytes"] == 42 and by_id["c"]["size_bytes"] == 0


def test_records_only_from_the_host_and_of_this_host():
    host = [rec("x", "2026-01-01T00:00:00Z"), rec("y", "2026-01-01T00:00:00Z", host="ws1"), "not a record", {}]
    listed = snapshot_records([], host, "pacs1", dt.datetime(2026, 1, 1, 0, 0, 10, tzinfo=dt.UTC))
    assert [(r["id"], r["stored"], r["age_s"]) for r in listed] == [("x", ["host"], 10)]
    assert snapshot_records(None, None, "pacs1", NOW) == []
    # the controller's registry is per host: its records are kept as they are
    assert [r["id"] for r in snapshot_records([rec("z", NOW, host="renamed")], [], "pacs1", NOW)] == ["z"]


def test_records_do_not_change_their_inputs():
    controller = [rec("a", "2026-01-01T00:00:00Z")]
    snapshot_records(controller, controller, "pacs1", NOW)
    assert "stored" not in controller[0] and controller[0]["size_bytes"] == "42"


def test_filter_module_exposes_every_filter():
    names = set(FilterModule().filters())
    assert names == {"snapshot_lvm_size_bytes", "snapshot_lvm_plan", "snapshot_lvol_calls", "snapshot_lvm_merge_plan",
                     "snapshot_lvm_merge_commands", "snapshot_paths_overlap", "snapshot_podman_settings",
                     "snapshot_podman_volumes", "snapshot_podman_bad_exports", "snapshot_records",
                     "snapshot_files_link_plan", "snapshot_link_records", "snapshot_podman_link_plan",
                     "snapshot_podman_export_plan"}


def test_files_link_plan_places_the_links_beside_each_path_and_excludes_copied_paths_inside():
    from ansible.errors import AnsibleFilterError
    from snapshot import snapshot_files_link_plan, snapshot_link_records

    copied = ["/etc/orthanc", "/var/lib/orthanc/db-v6/index"]
    plan = snapshot_files_link_plan(["/var/lib/orthanc/db-v6/"], copied, "", "s1")
    assert plan == [{"path": "/var/lib/orthanc/db-v6",
                     "links": "/var/lib/orthanc/.clinical-upgrade-snapshots/s1/var_lib_orthanc_db-v6",
                     "manifest": "/var/lib/orthanc/.clinical-upgrade-snapshots/s1/var_lib_orthanc_db-v6.links.json",
                     "exclude": ["/var/lib/orthanc/db-v6/index"]}]
    assert snapshot_files_link_plan(["/data"], [], "/srv/links/", "s2")[0]["links"] == "/srv/links/s2/data"
    for above in (["/var/lib/orthanc"], ["/var/lib/orthanc/db-v6"]):
        with pytest.raises(AnsibleFilterError, match="hold the write-once directory /var/lib/orthanc/db-v6"):
            snapshot_files_link_plan(["/var/lib/orthanc/db-v6"], above, "", "s1")
    results = [{"item": plan[0], "files": 3, "bytes": 30, "manifest_bytes": 9}, {"skipped": True}]
    assert snapshot_link_records(results) == [{**plan[0], "files": 3, "linked_bytes": 30, "bytes": 9}]
