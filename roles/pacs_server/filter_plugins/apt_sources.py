# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Plan the apt sources of a Debian release upgrade (roles/pacs_server, stage.yml).

``slurp_results | apt_sources_plan(release_from, release_to, mirror, security_mirror)`` reads the
host's apt source files (one-line ``*.list`` and deb822 ``*.sources``) and returns what the release
upgrade writes, without touching a third-party repository:

- ``mirror``, ``security_mirror``: the URIs for the new ``debian.sources`` (the given ones, else the
  host's current Debian entries, so a local mirror keeps being used, else Debian's defaults);
- ``types``, ``components``: as in the host's current Debian entries (``deb``, ``main`` if none);
- ``disable``: ``{path, content}`` of every other file holding entries of the old Debian release,
  rewritten with those entries disabled (one-line: commented out; deb822: ``Enabled: no``);
- ``keep``: deb822 stanzas of the target file that are not Debian's (carried over verbatim);
- ``debian_files``: the files that hold Debian entries; ``third_party``: the files with active entries
  that are not Debian's (left as they are; they may not offer the new release);
- ``written_by_us``: files an earlier run wrote (the target file with our header), kept out of the backup.

An entry is Debian's when its suite is the release codename (or ``-updates``, ``-security``,
``/updates``, ``-backports``, ``-proposed-updates``), its components are Debian components, and its URI
or its Signed-By keyring is Debian's (a path ending in ``/debian`` or ``/debian-security``, a host
under debian.org, or the debian-archive-keyring).
"""

from __future__ import annotations

import base64
import re
from urllib.parse import urlparse

TARGET_FILE = "/etc/apt/sources.list.d/debian.sources"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://security.debian.org/debian-security"
DEBIAN_COMPONENTS = ("main", "contrib", "non-free", "non-free-firmware")
SUITE_SUFFIXES = ("", "-updates", "-security", "/updates", "-backports", "-backports-sloppy", "-proposed-updates")
WRITTEN_MARK = "written by clinical-upgrade for the release upgrade"
DISABLED_MARK = "# disabled by clinical-upgrade for the release upgrade to {to}"


class Entry:
    """One source: its types, URIs, suites, components, options and whether it is enabled."""

    def __init__(self, types, uris, suites, components, signed_by="", enabled=True):
        self.types = list(types)
        self.uris = list(uris)
        self.suites = list(suites)
        self.components = list(components)
        self.signed_by = signed_by
        self.enabled = enabled

    def release_of(self, codenames) -> str:
        """The codename (of ``codenames``) every suite of the entry belongs to, or ''."""
        for codename in codenames:
            if self.suites and all(s in {codename + x for x in SUITE_SUFFIXES} for s in self.suites):
                return codename
        return ""

    def is_security(self) -> bool:
        return any(s.endswith(("-security", "/updates")) for s in self.suites)

    def looks_debian(self, codenames) -> bool:
        if not self.release_of(codenames):
            return False
        if not self.components or any(c not in DEBIAN_COMPONENTS for c in self.components):
            return False
        if "debian-archive-keyring" in self.signed_by:
            return True
        for uri in self.uris:
            parsed = urlparse(uri)
            host = (parsed.hostname or "").lower()
            if host == "debian.org" or host.endswith(".debian.org"):
                return True
            if parsed.path.rstrip("/").rsplit("/", 1)[-1] in ("debian", "debian-security"):
                return True
        return False


def _one_line(text):
    """[(line index, Entry)] of a one-line sources file (comments and blank lines skipped)."""
    found = []
    for index, line in enumerate(text.splitlines()):
        stripped = line.split("#", 1)[0].strip()
        if not stripped:
            continue
        m = re.match(r"^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", stripped)
        if not m:
            continue
        options = dict(o.split("=", 1) for o in (m.group(2) or "").split() if "=" in o)
        found.append((index, Entry([m.group(1)], [m.group(3)], [m.group(4)], m.group(5).split(),
                                   options.get("signed-by", ""))))
    return found


def _stanzas(text):
    """[(lines, fields)] of a deb822 file: the raw lines of each stanza and its fields (lower-case keys)."""
    stanzas, lines, fields, key = [], [], {}, None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if lines:
                stanzas.append((lines, fields))
            lines, fields, key = [], {}, None
            continue
        lines.append(line)
        if line.startswith("#"):
            continue
        if line[0] in " \t" and key:
            fields[key] += "\n" + line.strip()
            continue
        if ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    return stanzas


def _entry_of_stanza(fields):
    if not fields.get("types") and not fields.get("uris"):
        return None
    return Entry(fields.get("types", "").split(), fields.get("uris", "").split(), fields.get("suites", "").split(),
                 fields.get("components", "").split(), fields.get("signed-by", "").split("\n")[0],
                 fields.get("enabled", "yes").lower() not in ("no", "false", "0"))


def _decode(item):
    """(path, text) of a slurp result or of a {path, content} dict."""
    path = item.get("source") or item.get("path") or ""
    content = item.get("content", "")
    if item.get("encoding") == "base64":
        content = base64.b64decode(content).decode("utf-8", errors="replace")
    return path, content


def _ordered(components):
    return [c for c in DEBIAN_COMPONENTS if c in components]


def apt_sources_plan(files, release_from, release_to, mirror="", security_mirror=""):
    """The plan described in the module docstring. ``files``: slurp results (or ``{path, content}``)."""
    codenames = [c for c in (release_from, release_to) if c]
    mark = DISABLED_MARK.format(to=release_to)
    archive, security = [], []  # active Debian entries, old release first
    types, components = set(), set()
    disable, keep, debian_files, third_party, written_by_us = [], [], [], [], []

    for item in files or []:
        path, text = _decode(item)
        if path == TARGET_FILE and WRITTEN_MARK in text:
            written_by_us.append(path)
        is_deb822 = path.endswith(".sources")
        if is_deb822:
            pairs = [(lines, _entry_of_stanza(fields)) for lines, fields in _stanzas(text)]
        else:
            pairs = [(index, entry) for index, entry in _one_line(text)]
        has_debian, has_other, new_lines, changed = False, False, text.splitlines(), False
        new_stanzas = []
        for ref, entry in pairs:
            if entry is None:
                if is_deb822 and path == TARGET_FILE and any(not ln.startswith("#") for ln in ref):
                    keep.append("\n".join(ref))
                new_stanzas.append(ref)
                continue
            if not entry.looks_debian(codenames):
                if entry.enabled:
                    has_other = True
                if path == TARGET_FILE:
                    keep.append("\n".join(ref))
                new_stanzas.append(ref)
                continue
            has_debian = True
            if entry.enabled:
                (security if entry.is_security() else archive).append(
                    (0 if entry.release_of(codenames) == release_from else 1, entry))
                types.update(t for t in entry.types if t in ("deb", "deb-src"))
                components.update(entry.components)
            if entry.release_of(codenames) != release_from or not entry.enabled or path == TARGET_FILE:
                new_stanzas.append(ref)
                continue
            changed = True
            if is_deb822:
                kept = [ln for ln in ref if not re.match(r"(?i)^enabled\s*:", ln)]
                new_stanzas.append([mark] + kept + ["Enabled: no"])
            else:
                new_lines[ref] = f"{mark}: {new_lines[ref]}"
        if has_debian:
            debian_files.append(path)
        if has_other:
            third_party.append(path)
        if changed and path != TARGET_FILE:
            content = "\n\n".join("\n".join(s) for s in new_stanzas) if is_deb822 else "\n".join(new_lines)
            disable.append({"path": path, "content": content + "\n"})

    def first_uri(entries):
        for _, entry in sorted(entries, key=lambda pair: pair[0]):
            if entry.uris:
                return entry.uris[0]
        return ""

    return {
        "mirror": mirror or first_uri(archive) or DEFAULT_MIRROR,
        "security_mirror": security_mirror or first_uri(security) or DEFAULT_SECURITY_MIRROR,
        "types": [t for t in ("deb", "deb-src") if t in types] or ["deb"],
        "components": _ordered(components) or ["main"],
        "disable": disable,
        "keep": keep,
        "debian_files": sorted(debian_files),
        "third_party": sorted(third_party),
        "written_by_us": written_by_us,
    }


class FilterModule:
    def filters(self):
        return {"apt_sources_plan": apt_sources_plan}
