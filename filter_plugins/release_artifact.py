# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Filters of the artifact install method (roles/release_artifact), run on the controller.

- artifact_source: the catalogue entry's archive, resolved to a file of the artifact store.
- archive_problems: what makes a release archive unsafe or wrong to unpack (absolute paths, '..',
  links leaving the release, devices, release.json of another version).
- artifact_commands: the entry's pre-commands, migration command and post-commands, placeholders
  replaced, in the order the switch runs them.
"""

from __future__ import annotations

import json
import os
import posixpath
import shlex
import sys
import tarfile

from ansible.errors import AnsibleFilterError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from versions import artifact_problems  # noqa: E402

PLACEHOLDERS = ("release_dir", "install_dir", "version", "previous_dir", "previous_version")


def _entry(catalogue, product, version):
    where = f"release_catalogue.{product}['{version}']"
    versions = (catalogue or {}).get(product) if isinstance(catalogue, dict) else None
    if not isinstance(versions, dict):
        raise AnsibleFilterError(f"release_catalogue has no product {product!r}; add it (docs/catalogue.md)")
    entry = versions.get(str(version))
    if not isinstance(entry, dict):
        known = ", ".join(sorted(map(str, versions)))
        raise AnsibleFilterError(f"{where} is not in the release catalogue (known: {known}); add it or fix the version")
    if entry.get("install_method") != "artifact":
        raise AnsibleFilterError(
            f"{where}.install_method is {entry.get('install_method')!r}, not artifact: this role installs archives only"
        )
    return where, entry


def artifact_source(catalogue, product, version, store) -> dict:
    """{name, sha256, url, path} of the entry's (first) archive; path is inside the store, checked."""
    where, entry = _entry(catalogue, product, version)
    problems = artifact_problems(entry.get("artifacts"), where)
    if problems:
        raise AnsibleFilterError("; ".join(problems))
    if len(entry["artifacts"]) != 1:
        raise AnsibleFilterError(f"{where}.artifacts: this role installs one archive per release; list exactly one")
    art = entry["artifacts"][0]
    if not isinstance(store, str) or not store.startswith("/"):
        raise AnsibleFilterError(
            f"release_artifact_store must be the absolute controller directory of the release archives, got {store!r}"
        )
    root = os.path.realpath(store)
    path = os.path.realpath(os.path.join(root, art["name"]))
    if os.path.dirname(path) != root:  # a symlink in the store pointing elsewhere
        raise AnsibleFilterError(
            f"{where}.artifacts[0].name {art['name']!r} resolves to {path}, outside the artifact store {root}; "
            "put the archive itself in the store"
        )
    return {"name": art["name"], "sha256": art["sha256"], "url": art.get("url"), "path": path, "store": root}


def _inside(path: str) -> bool:
    norm = posixpath.normpath(path)
    return not (norm.startswith("/") or norm == ".." or norm.startswith("../"))


def archive_problems(path, version=None) -> list[str]:  # noqa: PLR0912 - one check per kind of member
    """Why the archive must not be unpacked as release `version` (empty: it may).

    Every member is under one top directory; none is absolute or climbs with '..'; a symbolic or
    hard link stays inside the release; no device, FIFO or other special file; a release.json at the
    top, when there is one, names `version`.
    """
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 - closed below
    except (OSError, tarfile.TarError) as exc:
        return [f"{path} is not a readable tar archive: {exc}"]
    problems, tops, release_json = [], set(), None
    with archive:
        for member in archive.getmembers():
            name = member.name
            if name.startswith("/") or not _inside(name):
                problems.append(f"member {name!r} is absolute or climbs out of the release with '..'")
                continue
            parts = posixpath.normpath(name).split("/")
            tops.add(parts[0])
            if member.issym():
                target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
                if member.linkname.startswith("/") or not _inside(target) or target.split("/")[0] != parts[0]:
                    problems.append(f"symbolic link {name!r} -> {member.linkname!r} points outside the release")
            elif member.islnk():
                if not _inside(member.linkname) or posixpath.normpath(member.linkname).split("/")[0] != parts[0]:
                    problems.append(f"hard link {name!r} -> {member.linkname!r} points outside the release")
            elif not (member.isfile() or member.isdir()):
                problems.append(f"member {name!r} is a device, FIFO or other special file")
            if len(parts) == 2 and parts[1] == "release.json" and member.isfile():
                handle = archive.extractfile(member)
                try:
                    release_json = json.loads(handle.read(65536).decode("utf-8")) if handle else None
                except (UnicodeDecodeError, ValueError):
                    problems.append("release.json is not valid JSON")
    if len(tops) != 1:
        problems.append(f"the archive must hold one top directory (the release), it holds {len(tops)}: "
                        f"{', '.join(sorted(tops)[:5])}")
    if isinstance(release_json, dict) and version is not None and str(release_json.get("version")) != str(version):
        found = release_json.get("version")
        problems.append(f"release.json says version {found!r}, the catalogue entry is {version!r}")
    return problems


def artifact_commands(catalogue, product, version, install_dir, previous_version=None, placeholders=None) -> list[dict]:
    """[{phase, key, where, command, argv, skip}] in the switch's order: pre_commands, migration_command,
    post_commands. ``argv`` is the command split like a shell would (no shell runs it), each placeholder
    filled into its argument.

    ``placeholders`` adds the product's own ({db}, {user}...), given by its role.
    """
    where, entry = _entry(catalogue, product, version)
    extra = dict(placeholders or {})
    for name in extra:
        if not isinstance(name, str) or not name.isidentifier() or name in PLACEHOLDERS:
            raise AnsibleFilterError(f"release_artifact_placeholders: {name!r} is not a usable placeholder name")
    values = {
        "release_dir": f"{install_dir}/releases/{version}",
        "install_dir": install_dir,
        "version": str(version),
        "previous_dir": f"{install_dir}/releases/{previous_version}" if previous_version else "",
        "previous_version": str(previous_version or ""),
        **{name: str(value) for name, value in extra.items()},
    }

    def fill(text):
        for name, value in values.items():
            text = text.replace("{" + name + "}", value)
        return text

    def command(phase, key, text):
        if not isinstance(text, str) or not text.strip():
            raise AnsibleFilterError(f"{where}.{key}: must be a non-empty command string")
        try:
            # Split first, then fill: a placeholder's value is always one argument, whatever it holds.
            argv = [fill(token) for token in shlex.split(text)]
        except ValueError as exc:
            raise AnsibleFilterError(f"{where}.{key}: cannot be split into arguments ({exc}); fix its quoting") \
                from None
        out = fill(text)
        # A first install has no previous release: a command about it (a backup of its data) is skipped.
        skip = "{previous_" in text and not previous_version
        return {"phase": phase, "key": key, "where": f"{where}.{key}", "command": out, "argv": argv, "skip": skip}

    commands = [command("pre", f"pre_commands[{i}]", c) for i, c in enumerate(entry.get("pre_commands") or [])]
    if entry.get("database_migration") == "command":
        commands.append(command("migration", "migration_command", entry.get("migration_command")))
    commands += [command("post", f"post_commands[{i}]", c) for i, c in enumerate(entry.get("post_commands") or [])]
    return commands


class FilterModule:
    def filters(self):
        return {
            "artifact_source": artifact_source,
            "archive_problems": archive_problems,
            "artifact_commands": artifact_commands,
        }
