#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0

import json

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: snapshot_podman_settings
short_description: Read the settings needed to recreate a podman container
description:
  - Runs C(podman container inspect) and returns the container's settings in the form the
    containers.podman.podman_container module takes them (image, command, hostname, publish,
    volume, label, env, systemd, privileged, cap_add, network), plus its named volumes and state.
  - Read-only. Used by the snapshot role's podman provider on the controller; give C(CONTAINERS_CONF)
    through the task's environment.
options:
  container:
    description: Container name or id.
    type: str
    required: true
attributes:
  check_mode:
    support: full
    description: Read-only.
author: clinical-upgrade contributors
"""

EXAMPLES = r"""
- name: Read the container's settings
  snapshot_podman_settings:
    container: cu-lab-pacs1
  environment:
    CONTAINERS_CONF: /work/main/lab/containers.conf
  delegate_to: localhost
"""

RETURN = r"""
exists:
  description: Whether the container exists.
  returned: always
  type: bool
settings:
  description: Recreate settings (keys named as in containers.podman.podman_container).
  returned: when exists
  type: dict
volumes:
  description: Named volumes mounted in the container (name, destination).
  returned: when exists
  type: list
  elements: dict
running:
  description: Whether the container is running.
  returned: when exists
  type: bool
image_id:
  description: Id of the image the container was created from.
  returned: when exists
  type: str
"""


# Environment entries podman sets itself on every start; carrying them over would pin stale values.
RUNTIME_ENV = ("HOSTNAME", "container", "container_uuid", "HOME", "TERM")


def settings_from_inspect(data):
    config = data.get("Config") or {}
    host = data.get("HostConfig") or {}
    publish = []
    for container_port, bindings in sorted((host.get("PortBindings") or {}).items()):
        for binding in bindings or []:
            prefix = "{}:".format(binding["HostIp"]) if binding.get("HostIp") else ""
            publish.append("{}{}:{}".format(prefix, binding.get("HostPort", ""), container_port))
    volume, volumes = [], []
    for mount in data.get("Mounts") or []:
        mode = "rw" if mount.get("RW", True) else "ro"
        if mount.get("Type") == "volume":
            volume.append("{}:{}:{}".format(mount["Name"], mount["Destination"], mode))
            volumes.append({"name": mount["Name"], "destination": mount["Destination"]})
        elif mount.get("Type") == "bind":
            volume.append("{}:{}:{}".format(mount["Source"], mount["Destination"], mode))
    env = {}
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        if key not in RUNTIME_ENV:
            env[key] = value
    networks = sorted((data.get("NetworkSettings") or {}).get("Networks") or {})
    systemd = config.get("SystemdMode")
    settings = {
        "name": data.get("Name"),
        "image": data.get("ImageName") or config.get("Image"),
        "command": list(config.get("Cmd") or []),
        "entrypoint": list(config.get("Entrypoint") or []) if isinstance(config.get("Entrypoint"), list)
        else ([config["Entrypoint"]] if config.get("Entrypoint") else []),
        "hostname": config.get("Hostname"),
        "publish": publish,
        "volume": volume,
        "label": dict(config.get("Labels") or {}),
        "env": env,
        "systemd": "always" if systemd else "false",
        "privileged": bool(host.get("Privileged")),
        "cap_add": list(host.get("CapAdd") or []),
        "network": networks if networks and networks != ["podman"] else [],
        "user": config.get("User") or "",
        "workdir": config.get("WorkingDir") or "/",
    }
    return settings, volumes


def main():
    module = AnsibleModule(argument_spec=dict(container=dict(type="str", required=True)), supports_check_mode=True)
    podman = module.get_bin_path("podman", required=True)
    rc, out, err = module.run_command([podman, "container", "inspect", module.params["container"]])
    if rc != 0:
        module.exit_json(changed=False, exists=False, stderr=err.strip())
    try:
        data = json.loads(out)[0]
    except (ValueError, IndexError) as exc:
        module.fail_json(msg=f"cannot parse podman inspect output: {exc}")
    settings, volumes = settings_from_inspect(data)
    state = data.get("State") or {}
    module.exit_json(
        changed=False,
        exists=True,
        settings=settings,
        volumes=volumes,
        running=bool(state.get("Running")),
        image_id=data.get("Image"),
    )


if __name__ == "__main__":
    main()
