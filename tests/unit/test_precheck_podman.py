"""PRE-004 with snapshot provider podman: what a snapshot keeps on the controller (filter_plugins/precheck.py, role).

A podman snapshot commits the host's container (the committed image's own layer, a copy of the
container's writable layer, lands in podman's graph root) and exports each named volume as a tar.
No real podman is run here: the role test puts a fake ``podman`` first on PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))

from precheck import (  # noqa: E402
    disk_plan,
    disk_plan_merge,
    disk_problems,
    podman_snapshot_estimate,
    podman_volume_paths,
)

REPO = Path(__file__).resolve().parents[2]
MB = 1048576
GRAPH = "/var/lib/containers/storage"
EXPORTS = "/srv/clinical-upgrade/results/snapshots"
VOLUMES = [
    {
        "Type": "volume",
        "Name": "orthanc-db",
        "Source": "/var/lib/containers/storage/volumes/orthanc-db/_data",
        "Destination": "/var/lib/orthanc/db",
    },
    {"Type": "bind", "Source": "/srv/config", "Destination": "/etc/orthanc"},
]


def inspect(size_rw=300 * MB, mounts=(), rc=0, stderr=""):
    container = {"Name": "pacs1", "Mounts": list(mounts)}
    if size_rw is not None:
        container["SizeRw"] = size_rw
    return {"rc": rc, "stdout": json.dumps([container]) if rc == 0 else "", "stderr": stderr}


def record(snapshot_id, created, layer_bytes, volumes=(), provider="podman"):
    return {
        "id": snapshot_id,
        "provider": provider,
        "host": "pacs1",
        "created": created,
        "size_bytes": 547212840,
        "podman": {"image_bytes": 547212840, "layer_bytes": layer_bytes, "volumes": list(volumes)},
    }


# The lab's real records: image_bytes counts the shared base image, layer_bytes is the snapshot's own.
LAB_RECORDS = [
    record("cu-pacs1-20261201T234422Z", "2026-12-01T23:44:22Z", 244577792),
    json.dumps(record("cu-pacs1-20261202T020352Z", "2026-12-02T02:03:52Z", 244592640)),
    "{not json",
    record("cu-pacs1-files", "2026-12-03T00:00:00Z", 1, provider="files") | {"podman": None},
]


def test_the_writable_layer_now_sizes_the_image_layer():
    got = podman_snapshot_estimate(inspect(300 * MB), None, LAB_RECORDS, GRAPH, EXPORTS)
    assert got["problems"] == [] and got["volumes"] == []
    assert got["needs"] == [
        {"path": GRAPH, "what": "snapshot image layer (the container's writable layer now)", "mb": 300.0}
    ]


def test_without_size_rw_the_last_recorded_layer_counts_not_the_image():
    got = podman_snapshot_estimate(inspect(None), None, LAB_RECORDS, GRAPH, EXPORTS)
    assert got["problems"] == []
    assert got["needs"] == [
        {
            "path": GRAPH,
            "what": "snapshot image layer (the layer of the last snapshot cu-pacs1-20261202T020352Z of "
            "2026-12-02T02:03:52Z)",
            "mb": 233.3,
        }
    ], "244592640 bytes of layer_bytes, not the 547212840 bytes of the whole image"


def test_named_volumes_count_their_du_and_bind_mounts_do_not():
    assert podman_volume_paths(inspect(mounts=VOLUMES)) == [VOLUMES[0]["Source"]]
    du = {"rc": 0, "stdout": f"{150 * 1024}\t{VOLUMES[0]['Source']}\n", "stderr": ""}
    got = podman_snapshot_estimate(inspect(300 * MB, VOLUMES), du, [], GRAPH, EXPORTS)
    assert got["problems"] == []
    assert got["needs"][1] == {"path": EXPORTS, "what": "snapshot volume exports (orthanc-db)", "mb": 150.0}
    assert got["volumes"] == [
        {
            "name": "orthanc-db",
            "source": VOLUMES[0]["Source"],
            "linked": False,
            "mb": 150.0,
            "basis": "du of the volume now",
        }
    ]


def test_a_volume_du_cannot_read_falls_back_to_its_last_export_else_is_a_problem():
    du = {"rc": 1, "stdout": "", "stderr": "du: cannot read directory: Permission denied"}
    last = record("cu-1", "2026-12-01T00:00:00Z", MB, [{"name": "orthanc-db", "bytes": 80 * MB}])
    got = podman_snapshot_estimate(inspect(10 * MB, VOLUMES), du, [last], GRAPH, EXPORTS)
    assert got["needs"][1]["mb"] == 80.0 and got["problems"] == []
    got = podman_snapshot_estimate(inspect(10 * MB, VOLUMES), du, [], GRAPH, EXPORTS)
    assert got["problems"] == [
        f"cannot size the export of podman volume orthanc-db ({VOLUMES[0]['Source']}): du failed (du: cannot read "
        "directory: Permission denied) and no earlier snapshot exported it"
    ]


def test_a_linked_volume_counts_zero():
    """Volumes protected by hard links instead of an export keep ~0 bytes on the controller."""
    du = {"rc": 0, "stdout": f"{150 * 1024}\t{VOLUMES[0]['Source']}\n", "stderr": ""}
    got = podman_snapshot_estimate(inspect(300 * MB, VOLUMES), du, [], GRAPH, EXPORTS, ["orthanc-db"])
    assert [n["path"] for n in got["needs"]] == [GRAPH], "no export need when every volume is linked"
    assert got["volumes"][0] | {} == {
        "name": "orthanc-db",
        "source": VOLUMES[0]["Source"],
        "linked": True,
        "mb": 0.0,
        "basis": "linked, not exported",
    }


def test_nothing_to_size_it_by_is_a_problem():
    got = podman_snapshot_estimate(inspect(rc=125, stderr="Error: no such container pacs9\n"), None, [], "", EXPORTS)
    assert got["needs"] == []
    assert got["problems"] == [
        "cannot size the podman snapshot's image layer: podman container inspect --size gave nothing usable (Error: "
        "no such container pacs9) and the snapshot registry has no earlier podman snapshot of this host (check "
        "precheck_snapshot_podman_container and precheck_snapshot_podman_containers_conf)",
        "cannot tell where podman keeps its images (podman system info gave no store.graphRoot): check "
        "precheck_snapshot_podman_containers_conf",
    ]


def mount(point, device, free_mb):
    return {"mount": point, "device": device, "fstype": "ext4", "size_available": free_mb * MB}


def test_the_controller_plan_is_reported_as_the_controllers():
    estimate = podman_snapshot_estimate(inspect(300 * MB), None, [], GRAPH, EXPORTS)
    controller = disk_plan([mount("/", "/dev/vda", 200)], estimate["needs"], 20, "the controller")
    host = disk_plan(
        [mount("/", "/dev/sda1", 5000)], [{"path": "/var/cache/apt/archives", "what": "packages", "mb": 1024}], 20
    )
    plan = disk_plan_merge(host, controller)
    assert [e.get("where") for e in plan] == ["the controller", None], "the tightest first"
    assert disk_problems(plan, "pacs1", "orthanc", "1.12.7", {"os": {}}, None, estimate) == [
        "not enough free disk on the controller, / (/dev/vda): needed 360 MB for snapshot image layer (the "
        "container's writable layer now) (/var/lib/containers/storage: 300.0 MB) + 20% margin, available 200 MB"
    ]
    unknown = disk_plan([], estimate["needs"], 20, "the controller")
    assert disk_problems(unknown, "pacs1", "orthanc", "1.12.7", {"os": {}})[0].endswith(
        "(check precheck_snapshot_podman_export_dir and podman's graph root)"
    )


# --------------------------------------------------------------------------- the role on this machine

FAKE_PODMAN = """#!/bin/sh
# Fake podman for the precheck test: answers the two read-only questions PRE-004 asks.
case "$1 $2" in
  "container inspect") cat {inspect} ;;
  "system info") printf '{{"store": {{"graphRoot": "{graph}"}}}}\\n' ;;
  *) echo "fake podman: unexpected $*" >&2; exit 2 ;;
esac
"""

PLAY = """\
- name: PRE-004 of a podman host on this machine (fake podman)
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{repo}/inventories/lab/group_vars/all/catalogue.yml]
  vars:
    precheck_product: orthanc
    precheck_target_version: "1.12.7"
    precheck_current_version: "1.10.1"
    precheck_snapshot_provider: podman
    precheck_snapshot_podman_container: pacs-test
    precheck_snapshot_podman_containers_conf: {repo}/lab/containers.conf
    precheck_snapshot_registry_dir: {tmp}/registry
    precheck_snapshot_podman_export_dir: {tmp}/exports
  tasks:
    - name: Read the OS and memory
      ansible.builtin.setup:
        gather_subset: ["!all", "!min", distribution, hardware]
    - name: PRE-001 to PRE-004
      ansible.builtin.include_role: {{name: precheck, tasks_from: host}}
    - name: Write what happened
      ansible.builtin.copy:
        dest: {tmp}/out.json
        content: "{{{{ {{'pre004': __precheck_pre004, 'disk': precheck_disk}} | to_json }}}}"
        mode: "0600"
"""


def test_pre004_counts_the_podman_snapshot_on_the_controller(tmp_path):
    volume = tmp_path / "volumes" / "orthanc-db" / "_data"
    volume.mkdir(parents=True)
    (volume / "index").write_bytes(b"\0" * (3 * MB))
    graph = tmp_path / "graph"
    (tmp_path / "inspect.json").write_text(
        json.dumps(
            [
                {
                    "Name": "pacs-test",
                    "SizeRw": 250 * MB,
                    "Mounts": [
                        {
                            "Type": "volume",
                            "Name": "orthanc-db",
                            "Source": str(volume),
                            "Destination": "/var/lib/orthanc",
                        }
                    ],
                }
            ]
        )
    )
    (tmp_path / "registry" / "localhost").mkdir(parents=True)
    (tmp_path / "registry" / "localhost" / "cu-old.json").write_text(
        json.dumps(record("cu-old", "2026-12-01T00:00:00Z", 244577792))
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    podman = bin_dir / "podman"
    podman.write_text(FAKE_PODMAN.format(inspect=tmp_path / "inspect.json", graph=graph))
    podman.chmod(0o755)
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(repo=REPO, tmp=tmp_path))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        PATH=f"{bin_dir}:{os.environ.get('PATH', '')}",
    )
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(play),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads((tmp_path / "out.json").read_text())
    controller = [e for e in got["disk"] if e.get("where") == "the controller"]
    whats = [w for e in controller for w in e["what"]]
    assert f"snapshot image layer (the container's writable layer now) ({graph}: 250.0 MB)" in whats
    assert f"snapshot volume exports (orthanc-db) ({tmp_path}/exports: 3.0 MB)" in whats
    assert not any(w.startswith("snapshot (") for e in got["disk"] for w in e["what"]), "no 0 MB snapshot on the host"
    assert "on the controller, " in got["pre004"]["msg"]
