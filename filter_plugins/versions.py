# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Version and release-catalogue filters.

- version_compare_debian(a, b): -1, 0 or 1 in Debian's ordering (epoch, upstream, revision, ``~``),
  the same answer as ``dpkg --compare-versions``.
- upstream_version(v): the product version in a Debian version ("1:1.12.7+dfsg-1" -> "1.12.7").
- catalogue_entry(catalogue, product, version): one release_catalogue entry (an error naming the known
  versions when it is missing).
- catalogue_problems(catalogue, product=None): every schema error of a release_catalogue, as messages.
- upgrade_path_error(catalogue, product, current, target, allow_downgrade=False): '' when the catalogue
  allows going from current to target, else why not and what to change.

The catalogue's schema is described in docs/catalogue.md.
"""

from __future__ import annotations

import re

try:  # Ansible is not needed to import this file (unit tests, tools).
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    AnsibleFilterError = ValueError

_EPOCH = re.compile(r"^[0-9]+$")
_UPSTREAM = re.compile(r"^[0-9][A-Za-z0-9.+~:-]*$")
_REVISION = re.compile(r"^[A-Za-z0-9.+~]+$")


# --------------------------------------------------------------------------- Debian versions


def parse_debian_version(version) -> tuple[int, str, str]:
    """Split a Debian version into (epoch, upstream, revision). Raises ValueError saying what is wrong.

    Follows deb-version(7): [epoch:]upstream[-revision]; upstream starts with a digit; a missing
    revision is "" (which compares equal to "0").
    """
    if isinstance(version, bool) or not isinstance(version, (str, int)):
        raise ValueError(f"a version must be a string, got {_type_name(version)}")
    text = str(version).strip()
    if not text:
        raise ValueError("a version must not be empty")
    if any(c.isspace() for c in text):
        raise ValueError(f"version {text!r} contains whitespace")
    epoch = 0
    if ":" in text:
        head, text = text.split(":", 1)
        if not _EPOCH.match(head):
            raise ValueError(f"version {version!r}: the epoch before ':' must be a number")
        epoch = int(head)
    revision = ""
    if "-" in text:
        text, revision = text.rsplit("-", 1)
        if not _REVISION.match(revision):
            raise ValueError(f"version {version!r}: revision {revision!r} may hold only letters, digits and . + ~")
    if not text:
        raise ValueError(f"version {version!r} has no upstream part")
    if not _UPSTREAM.match(text):
        raise ValueError(
            f"version {version!r}: the upstream part must start with a digit and hold "
            "only letters, digits and . + ~ - :"
        )
    return epoch, text, revision


def _order(char: str) -> int:
    if char == "~":
        return -1
    if char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _verrevcmp(a: str, b: str) -> int:
    """dpkg's verrevcmp: alternate non-digit runs (by _order) and digit runs (numerically)."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


def compare_debian(a, b) -> int:
    """-1, 0 or 1; raises ValueError for an invalid version."""
    ea, ua, ra = parse_debian_version(a)
    eb, ub, rb = parse_debian_version(b)
    if ea != eb:
        return _sign(ea - eb)
    return _sign(_verrevcmp(ua, ub)) or _sign(_verrevcmp(ra, rb))


def version_compare_debian(a, b) -> int:
    """Filter: ``a | version_compare_debian(b)`` is -1 (a older), 0 (same) or 1 (a newer)."""
    try:
        return compare_debian(a, b)
    except ValueError as exc:
        raise AnsibleFilterError(f"version_compare_debian: {exc}") from None


def upstream_version(version) -> str:
    """The product version inside a Debian package version.

    Drops the epoch, the Debian revision and a repack suffix (+dfsg, ~bpo, +ds...):
    "1:1.12.7+dfsg-1" -> "1.12.7", "1.10.1+dfsg-2+deb12u1" -> "1.10.1", "1.12.7" -> "1.12.7".
    """
    try:
        _, upstream, _ = parse_debian_version(version)
    except ValueError as exc:
        raise AnsibleFilterError(f"upstream_version: {exc}") from None
    return re.split(r"[+~]", upstream, maxsplit=1)[0]


# --------------------------------------------------------------------------- release catalogue

INSTALL_METHODS = ("package", "artifact", "windows_installer")
DATABASE_MIGRATIONS = ("none", "orthanc_upgrade", "command")
REQUIRED_KEYS = ("install_method", "os", "upgrade_from", "min_free_disk_mb", "min_memory_mb", "database_migration")
METHOD_KEYS = {"package": ("packages",), "artifact": ("artifacts",), "windows_installer": ("installer",)}
OPTIONAL_KEYS = (
    "os_release_upgrade",
    "migration_command",
    "pre_commands",
    "post_commands",
    "notes",
    "display_drivers",
)
_GPU_ID = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")
KNOWN_KEYS = frozenset(REQUIRED_KEYS + OPTIONAL_KEYS + tuple(k for keys in METHOD_KEYS.values() for k in keys))
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _where(product, version=None, key=None) -> str:
    text = f"release_catalogue.{product}"
    if version is not None:
        text += f"['{version}']"
    if key is not None:
        text += f".{key}"
    return text


def _type_name(value) -> str:
    """The plain type name (Ansible 2.19 tags values with subclasses such as _AnsibleTaggedStr)."""
    for base in (bool, int, float, str, list, dict):
        if isinstance(value, base):
            return base.__name__
    return "null" if value is None else type(value).__name__


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_list_problem(value, where: str, what: str) -> str:
    if not isinstance(value, list):
        return f"{where}: must be a list of {what}, got {_type_name(value)}"
    for item in value:
        if not isinstance(item, str) or not item.strip():
            return f"{where}: must be a list of {what} (quoted strings), got {item!r} ({_type_name(item)})"
    return ""


def artifact_problems(artifacts, where: str) -> list[str]:
    """What is wrong with an entry's artifacts: [{name, sha256, url (optional)}].

    ``name`` is a plain file name: it is looked up in the site's artifact store (a controller
    directory), or downloaded from ``url`` (https only) into it. A name with a directory part
    could reach outside the store, so it is refused.
    """
    if not isinstance(artifacts, list) or not artifacts:
        return [f"{where}.artifacts: must be a non-empty list of {{name, sha256, url}}, got {_type_name(artifacts)}"]
    problems = []
    for i, art in enumerate(artifacts):
        at = f"{where}.artifacts[{i}]"
        if not isinstance(art, dict):
            problems.append(f"{at}: must be a mapping with name and sha256 (and url to download from)")
            continue
        for key in sorted(set(art) - {"name", "sha256", "url"}, key=str):
            problems.append(f"{at}: unknown key {key!r}; use name, sha256 and url")
        name = art.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{at}.name: missing or not a string: the archive's file name in the artifact store")
        elif "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
            problems.append(
                f"{at}.name: {name!r} is not a plain file name; give the archive's name only, it is looked up in the "
                "artifact store (a path could reach outside it)"
            )
        sha = art.get("sha256")
        if sha is None or sha == "":
            problems.append(
                f"{at}.sha256: missing; add the archive's sha256 from the vendor's release notes (an archive "
                "without a checksum is never installed)"
            )
        elif not isinstance(sha, str) or not _SHA256.match(sha):
            problems.append(f"{at}.sha256: must be 64 lower-case hex digits (quoted), got {sha!r}")
        url = art.get("url")
        if url is not None and (not isinstance(url, str) or not url.startswith("https://")):
            problems.append(f"{at}.url: must be an https:// URL (or left out to use the artifact store), got {url!r}")
    return problems


def display_driver_problems(drivers, where: str) -> list[str]:
    """display_drivers: the display drivers tested with this version, per GPU (PCI vendor:device).

    Linux: {gpu: "10de:1eb8", packages: {nvidia-driver: "<Debian version>"}}; Windows:
    {gpu: "10de:1eb8", driver: {path, sha256, inf}} (a signed driver package for pnputil)."""
    if not isinstance(drivers, list):
        return [
            f"{where}.display_drivers: must be a list of {{gpu, packages}} or {{gpu, driver}}, "
            f"got {_type_name(drivers)}"
        ]
    problems = []
    for i, item in enumerate(drivers):
        at = f"{where}.display_drivers[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{at}: must be a mapping {{gpu, packages}} or {{gpu, driver}}, got {_type_name(item)}")
            continue
        gpu = item.get("gpu")
        if not isinstance(gpu, str) or not _GPU_ID.match(gpu):
            problems.append(
                f"{at}.gpu: must be the PCI vendor:device in lower-case hex (lspci -nn), such as 10de:1eb8, got {gpu!r}"
            )
        if ("packages" in item) == ("driver" in item):
            problems.append(f"{at}: must have exactly one of packages (Linux) or driver (Windows)")
        packages = item.get("packages")
        if "packages" in item:
            if not isinstance(packages, dict) or not packages:
                problems.append(f"{at}.packages: must map package names to exact Debian versions")
            else:
                for name, pkg_version in packages.items():
                    try:
                        parse_debian_version(pkg_version if isinstance(pkg_version, str) else "")
                    except ValueError:
                        problems.append(f"{at}.packages.{name}: must be a quoted Debian version, got {pkg_version!r}")
        if "driver" in item:
            problems += _windows_file_problems(item["driver"], f"{at}.driver", ("path", "sha256", "inf"))
    return problems


def _windows_file_problems(value, at: str, keys) -> list[str]:
    """A file a Windows host installs (an MSI, a driver package): a mapping of strings with a sha256."""
    if not isinstance(value, dict):
        return [f"{at}: must be a mapping with {', '.join(keys[:-1])} and {keys[-1]}, got {_type_name(value)}"]
    problems = [
        f"{at}.{key}: missing or not a string"
        for key in keys
        if not isinstance(value.get(key), str) or not value.get(key)
    ]
    sha = value.get("sha256")
    if isinstance(sha, str) and sha and not _SHA256.match(sha):
        problems.append(f"{at}.sha256: must be 64 lower-case hex digits")
    return problems


def _entry_problems(product: str, version: str, entry, versions: dict) -> list[str]:
    where = _where(product, version)
    if not isinstance(entry, dict):
        return [f"{where}: must be a mapping of the keys {', '.join(REQUIRED_KEYS)}, got {_type_name(entry)}"]
    problems = []
    method = entry.get("install_method")
    for key in REQUIRED_KEYS + (METHOD_KEYS.get(method, ()) if isinstance(method, str) else ()):
        if key not in entry:
            problems.append(f"{where}: missing key {key} (see docs/catalogue.md)")
    for key in sorted(set(entry) - KNOWN_KEYS, key=str):
        problems.append(f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(KNOWN_KEYS))}")

    if "install_method" in entry and method not in INSTALL_METHODS:
        problems.append(
            f"{where}.install_method: unknown install method {method!r}; use one of {', '.join(INSTALL_METHODS)}"
        )

    # An artifact release may name the OS packages it runs with (the RIS's DCMTK worklist SCP): the
    # same exact versions, installed by the package method beside the archive.
    if method in ("package", "artifact") and "packages" in entry:
        packages = entry["packages"]
        if not isinstance(packages, dict) or not packages:
            problems.append(
                f"{where}.packages: must map package names to exact Debian versions, got {_type_name(packages)}"
            )
        else:
            for name, pkg_version in packages.items():
                if not isinstance(pkg_version, str):
                    problems.append(
                        f"{where}.packages.{name}: must be a quoted Debian version string, "
                        f"got {_type_name(pkg_version)}"
                    )
                    continue
                try:
                    parse_debian_version(pkg_version)
                except ValueError as exc:
                    problems.append(f"{where}.packages.{name}: {exc}")
                    continue
                if method == "package" and name == product and upstream_version(pkg_version) != version:
                    problems.append(
                        f"{where}.packages.{name}: {pkg_version!r} is upstream version "
                        f"{upstream_version(pkg_version)}, "
                        f"not {version}; fix the package version or the catalogue key"
                    )
    if method == "artifact" and "artifacts" in entry:
        problems += artifact_problems(entry["artifacts"], where)
    if method == "windows_installer" and "installer" in entry:
        problems += _windows_file_problems(entry["installer"], f"{where}.installer", ("path", "sha256", "product_id"))

    if "display_drivers" in entry:
        problems += display_driver_problems(entry["display_drivers"], where)

    if "os" in entry:
        os_ = entry["os"]
        if not isinstance(os_, dict):
            problems.append(f"{where}.os: must be a mapping {{family, major_versions}}, got {_type_name(os_)}")
        else:
            if not isinstance(os_.get("family"), str) or not os_.get("family"):
                problems.append(
                    f"{where}.os.family: must be an OS family string such as Debian, got {os_.get('family')!r}"
                )
            problem = _str_list_problem(
                os_.get("major_versions"), f"{where}.os.major_versions", "major versions such as '12'"
            )
            if problem:
                problems.append(problem)
            elif not os_["major_versions"]:
                problems.append(f"{where}.os.major_versions: must name at least one major version, such as ['12']")
    if "os_release_upgrade" in entry:
        rel = entry["os_release_upgrade"]
        if not isinstance(rel, dict) or not all(isinstance(rel.get(k), str) and rel.get(k) for k in ("from", "to")):
            problems.append(
                f"{where}.os_release_upgrade: must be {{from: <codename>, to: <codename>}}, for "
                f"example {{from: bookworm, to: trixie}}"
            )

    if "upgrade_from" in entry:
        upgrade_from = entry["upgrade_from"]
        problem = _str_list_problem(upgrade_from, f"{where}.upgrade_from", "catalogued versions")
        if problem:
            problems.append(problem)
        else:
            for source in upgrade_from:
                if source == version:
                    problems.append(f"{where}.upgrade_from: names the version itself ({source})")
                elif source not in versions:
                    problems.append(
                        f"{where}.upgrade_from: {source} is not a version of {product} in the catalogue "
                        f"(known: {', '.join(sorted(map(str, versions)))}); add {_where(product, source)} or remove it"
                    )
                else:
                    try:
                        if compare_debian(source, version) > 0:
                            problems.append(
                                f"{where}.upgrade_from: {source} is newer than {version}; a "
                                "downgrade is not an upgrade path"
                            )
                    except ValueError:
                        pass  # reported as a bad version key

    for key in ("min_free_disk_mb", "min_memory_mb"):
        if key in entry and (not _is_int(entry[key]) or entry[key] < 0):
            problems.append(
                f"{where}.{key}: must be a whole number of MB (0 or more), got "
                f"{entry[key]!r} ({_type_name(entry[key])})"
            )

    if "database_migration" in entry:
        migration = entry["database_migration"]
        if migration not in DATABASE_MIGRATIONS:
            problems.append(
                f"{where}.database_migration: unknown value {migration!r}; use one of {', '.join(DATABASE_MIGRATIONS)}"
            )
        elif migration == "command" and not isinstance(entry.get("migration_command"), str):
            problems.append(
                f"{where}.migration_command: database_migration 'command' needs migration_command (a string)"
            )
    for key in ("pre_commands", "post_commands"):
        if key in entry:
            problem = _str_list_problem(entry[key], f"{where}.{key}", "commands")
            if problem:
                problems.append(problem)
    return problems


def catalogue_problems(catalogue, product=None) -> list[str]:
    """Every schema error of a release catalogue (or of one product's part of it), as messages."""
    if catalogue is None or (isinstance(catalogue, str) and not catalogue.strip()):
        return [
            "release_catalogue is not defined: put it in the inventory "
            "(group_vars/all/catalogue.yml, see docs/catalogue.md)"
        ]
    if not isinstance(catalogue, dict):
        return [f"release_catalogue: must be a mapping of products to versions, got {_type_name(catalogue)}"]
    if product is not None:
        if product not in catalogue:
            known = ", ".join(sorted(map(str, catalogue))) or "none"
            return [f"release_catalogue has no product {product!r} (known: {known}); add it (see docs/catalogue.md)"]
        products = [product]
    else:
        products = list(catalogue)
        if not products:
            return ["release_catalogue is empty: add at least one product version (see docs/catalogue.md)"]
    problems = []
    for name in products:
        versions = catalogue[name]
        if not isinstance(versions, dict) or not versions:
            problems.append(
                f"{_where(name)}: must be a mapping of version strings to entries, got {_type_name(versions)}"
            )
            continue
        for version, entry in versions.items():
            if not isinstance(version, str):
                problems.append(
                    f"{_where(name)}: version key {version!r} is a {_type_name(version)}; quote it "
                    f'("{version}") so YAML keeps it a string'
                )
                continue
            try:
                parse_debian_version(version)
            except ValueError as exc:
                problems.append(f"{_where(name, version)}: the key is not a version: {exc}")
                continue
            problems.extend(_entry_problems(name, version, entry, versions))
    return problems


def _find_version(versions: dict, version) -> str | None:
    text = str(version)
    if text in versions:
        return text
    try:
        up = upstream_version(text)
    except AnsibleFilterError:
        return None
    return up if up in versions else None


_MISSING = object()


def catalogue_entry(catalogue, product, version, default=_MISSING):
    """The catalogue entry of product at version (a Debian package version is looked up by its upstream part).

    Without default, a missing entry raises an error that names the known versions; with default
    (``catalogue_entry(cat, 'orthanc', v, {})``) that default is returned instead.
    """
    versions = catalogue.get(product) if isinstance(catalogue, dict) else None
    key = _find_version(versions, version) if isinstance(versions, dict) and version not in (None, "") else None
    if key is not None:
        return versions[key]
    if default is not _MISSING:
        return default
    if not isinstance(versions, dict):
        raise AnsibleFilterError(f"release_catalogue has no product {product!r}; add it (see docs/catalogue.md)")
    known = ", ".join(sorted(map(str, versions))) or "none"
    raise AnsibleFilterError(
        f"release_catalogue.{product} has no version {version!r} (known: {known}); "
        f"add it to the catalogue (docs/catalogue.md) or choose a catalogued version"
    )


def upgrade_path_error(catalogue, product, current, target, allow_downgrade=False) -> str:
    """'' when the catalogue allows going from current to target, else why not and what to change.

    current == target is allowed (nothing to do). A lower target needs allow_downgrade. A higher
    target must list current in its upgrade_from.
    """
    versions = catalogue.get(product) if isinstance(catalogue, dict) else None
    if not isinstance(versions, dict):
        return f"release_catalogue has no product {product!r}; add it (see docs/catalogue.md)"
    if target in (None, "") or not isinstance(target, str):
        return f'pacs_server_target_version must be a quoted version string such as "1.12.7", got {target!r}'
    target_key = _find_version(versions, target)
    if target_key is None:
        known = ", ".join(sorted(map(str, versions))) or "none"
        return (
            f"target version {target} of {product} is not in release_catalogue.{product} (known: {known}); "
            f"set pacs_server_target_version to a catalogued version or add {target} to the catalogue"
        )
    if current is None or not str(current).strip():
        # Not read (None, "" or blanks): unknown, not an invalid version.
        return f"the current version of {product} is unknown, so the upgrade path to {target_key} cannot be checked"
    current = str(current).strip()
    try:
        current_up = upstream_version(current)
        order = compare_debian(current_up, target_key)
    except (ValueError, AnsibleFilterError) as exc:
        return f"cannot compare versions {current!r} and {target_key!r}: {exc}"
    if order == 0:
        return ""
    if order > 0:
        if str(allow_downgrade).lower() in ("true", "yes", "1", "on"):
            return ""
        return (
            f"target {target_key} is lower than the installed {current_up}: refusing a downgrade; "
            f"set pacs_server_allow_downgrade: true to allow it, or raise pacs_server_target_version"
        )
    sources = versions[target_key].get("upgrade_from") if isinstance(versions[target_key], dict) else None
    sources = sources if isinstance(sources, list) else []
    if current_up not in [str(s) for s in sources]:
        allowed = ", ".join(map(str, sources)) or "no version"
        return (
            f"{product} {target_key} can be reached from {allowed} only "
            f"(release_catalogue.{product}['{target_key}'].upgrade_from), not from the installed {current_up}: "
            f"upgrade to an intermediate version first, or add {current_up} to upgrade_from once that path is tested"
        )
    return ""


class FilterModule:
    def filters(self):
        return {
            "version_compare_debian": version_compare_debian,
            "upstream_version": upstream_version,
            "catalogue_entry": catalogue_entry,
            "catalogue_problems": catalogue_problems,
            "upgrade_path_error": upgrade_path_error,
        }
