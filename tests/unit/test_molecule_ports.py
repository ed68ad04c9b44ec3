"""The Molecule scenarios' published ports and container names: ports below Linux's ephemeral range,
and a port or a container name shared only within a lane.

A port in the ephemeral range (32768-60999 by default) can be held at any moment by an outgoing
connection of the same machine (the lanes' modalities, ordering systems and probes open thousands);
podman then cannot publish it and the scenario's create fails (CI failed so: 127.0.0.1:33242). Two
scenarios of different lanes run at the same time and must not publish the same port, nor name a
container alike (podman names containers after their platform: the second create would fail, or a
destroy would remove the other lane's host)."""

from __future__ import annotations

from pathlib import Path

import yaml
from support import makefile_lanes

REPO = Path(__file__).resolve().parents[2]
EPHEMERAL_START = 32768  # net.ipv4.ip_local_port_range's default low end


def published():
    ports = {}
    for config in sorted((REPO / "molecule").glob("*/molecule.yml")):
        scenario = config.parent.name
        for platform in yaml.safe_load(config.read_text()).get("platforms") or []:
            for spec in platform.get("published_ports") or []:
                host_port = int(str(spec).split(":")[-2])
                ports.setdefault(host_port, []).append((scenario, platform["name"]))
    return ports


def test_every_published_port_is_below_the_ephemeral_range():
    ports = published()
    assert ports, "no published port found: the scan is broken"
    high = {port: users for port, users in ports.items() if port >= EPHEMERAL_START}
    assert not high, f"published ports in the ephemeral range (pick one below {EPHEMERAL_START}): {high}"


def test_a_port_is_shared_only_by_scenarios_of_one_lane():
    lane_of = {scenario: i for i, lane in enumerate(makefile_lanes()) for scenario in lane}
    for port, users in published().items():
        in_lanes = {lane_of.get(scenario) for scenario, _ in users}
        assert len(in_lanes) == 1, f"port {port} is published by {users}, which run in different lanes"


def test_a_container_name_is_shared_only_by_scenarios_of_one_lane():
    lane_of = {scenario: i for i, lane in enumerate(makefile_lanes()) for scenario in lane}
    names = {}
    for config in sorted((REPO / "molecule").glob("*/molecule.yml")):
        for platform in yaml.safe_load(config.read_text()).get("platforms") or []:
            names.setdefault(platform["name"], set()).add(config.parent.name)
    assert names, "no platform found: the scan is broken"
    for name, scenarios in names.items():
        in_lanes = {lane_of.get(scenario) for scenario in scenarios}
        assert len(in_lanes) == 1, (
            f"container {name} is a platform of {sorted(scenarios)}, which run in different lanes"
        )
