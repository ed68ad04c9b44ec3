"""roles/package_cache for real on this machine: Debian's apt-cacher-ng as the cache, real apt clients.

The role configures the machine's apt-cacher-ng service (the package's init script or systemd unit) on
127.0.0.1:13142 with a cache and log directory of the test's own; the test puts back what it found
afterwards (the role's files removed, the service stopped - or restarted on its old settings when it
was running - and its boot setting as it was). The workstation side is a throw-away apt state
directory whose only configuration is the drop-in the role's client entry point wrote, and a second
client that downloads from another source address (127.0.0.2), which apt cannot do.

Independent measures: the size and SHA256 the Debian index gives for the .deb, and ``stat`` of the
file apt-get saved. Needs root, apt-cacher-ng and logrotate (``make deps``), and HTTP access to
deb.debian.org (bookworm-security: its index is ~0.4 MB).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from support import run_playbook_with_vars

REPO = Path(__file__).resolve().parents[2]
PORT = 13142
URL = f"http://127.0.0.1:{PORT}"
SERVICE = "apt-cacher-ng"
DROPIN = Path("/etc/apt-cacher-ng/zzz_clinical_upgrade.conf")
LOGROTATE_RULE = Path("/etc/logrotate.d/clinical-upgrade-apt-cacher-ng")
UNIT_DROPIN = Path("/etc/systemd/system/apt-cacher-ng.service.d/clinical-upgrade.conf")
SOURCE = ("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
          "http://deb.debian.org/debian-security bookworm-security main\n")
PACKAGE = "tzdata"  # ~300 KB, in bookworm-security
HEADER_MAX = 1024  # the log counts HTTP responses, header included: a few hundred bytes over the file

PLAYBOOK = """\
- name: Run one package_cache entry point
  hosts: cachehost
  gather_facts: false
  tasks:
    - name: Run the entry point
      ansible.builtin.include_role:
        name: package_cache
        tasks_from: "{{ pc_action }}"

    - name: Write the role's facts for the test
      ansible.builtin.copy:
        content: "{{ {'mark': package_cache_mark | default(None), 'stats': package_cache_stats | default(None)}
                     | to_nice_json }}"
        dest: "{{ pc_out }}"
        mode: "0600"
      changed_when: false  # the test's, not the role's: a second run of the role must change nothing
"""


def systemd() -> bool:
    return os.path.isdir("/run/systemd/system")


def service(action: str) -> subprocess.CompletedProcess:
    return subprocess.run(["service", SERVICE, action], capture_output=True, text=True, timeout=60, check=False)


def enabled() -> bool:
    if systemd():
        return subprocess.run(["systemctl", "is-enabled", "--quiet", SERVICE], check=False).returncode == 0
    return bool(glob.glob(f"/etc/rc[2-5].d/S*{SERVICE}"))


def set_enabled(value: bool) -> None:
    if systemd():
        subprocess.run(["systemctl", "enable" if value else "disable", SERVICE], capture_output=True, check=False)
    else:
        subprocess.run(["update-rc.d", SERVICE, "enable" if value else "disable"], capture_output=True, check=False)


def port_in_use(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@dataclass
class Cache:
    base: Path
    cache_dir: Path
    log_dir: Path
    apt_conf_dir: Path

    @property
    def log(self) -> Path:
        return self.log_dir / "apt-cacher.log"

    @property
    def client_conf(self) -> Path:
        return self.apt_conf_dir / "01clinical-upgrade-proxy"

    def run(self, action: str, **extra) -> tuple[subprocess.CompletedProcess, dict]:
        """ansible-playbook with the project's configuration: one entry point of the role on this machine."""
        inventory = self.base / "hosts.yml"
        inventory.write_text(yaml.safe_dump({"all": {"hosts": {"cachehost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "package_cache_port": PORT, "package_cache_bind_address": "127.0.0.1",
            "package_cache_cache_dir": str(self.cache_dir), "package_cache_log_dir": str(self.log_dir)}}}}))
        playbook = self.base / "package_cache.yml"
        playbook.write_text(PLAYBOOK)
        out = self.base / "out.json"
        variables = {"pc_action": action, "pc_out": str(out),
                     # the workstation's drop-in goes to the test's apt configuration, not the machine's
                     "__package_cache_client_conf": str(self.client_conf), **extra}
        return run_playbook_with_vars(inventory, playbook, variables, self.base / "vars.json", out, timeout=600)


def changed_count(proc: subprocess.CompletedProcess) -> int:
    match = re.search(r"cachehost\s*:\s*ok=\d+\s+changed=(\d+)", proc.stdout)
    assert match, proc.stdout[-3000:]
    return int(match.group(1))


@pytest.fixture(scope="module")
def cache():
    """The machine's apt-cacher-ng configured by the role on 127.0.0.1:13142; everything put back afterwards."""
    if os.geteuid() != 0:
        pytest.fail("the package_cache integration test configures a system service: run it as root")
    for tool, package in (("/usr/sbin/apt-cacher-ng", "apt-cacher-ng"), ("/usr/sbin/logrotate", "logrotate")):
        if not os.path.exists(tool):
            pytest.fail(f"{package} is not installed: run `make deps` (DEB_PACKAGES has {package})")
    if port_in_use(PORT):
        pytest.fail(f"something listens on 127.0.0.1:{PORT} already: stop it, the test runs apt-cacher-ng there")
    saved = {path: (path.read_bytes() if path.exists() else None) for path in (DROPIN, LOGROTATE_RULE, UNIT_DROPIN)}
    was_running = service("status").returncode == 0
    was_enabled = enabled()
    # apt-cacher-ng runs as its own user: every directory above its cache must be open to it (mkdtemp is 0700)
    base = Path(tempfile.mkdtemp(prefix="cu-package-cache-"))
    base.chmod(0o755)
    site = Cache(base=base, cache_dir=base / "cache", log_dir=base / "log", apt_conf_dir=base / "apt.conf.d")
    site.apt_conf_dir.mkdir()
    try:
        proc, _ = site.run("main")
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        yield site
    finally:
        for path, content in saved.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)
        if systemd():
            subprocess.run(["systemctl", "daemon-reload"], check=False)
        service("restart" if was_running else "stop")
        if enabled() != was_enabled:
            set_enabled(was_enabled)
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- clients


def apt_get(state: Path, conf: Path | None, *args: str) -> subprocess.CompletedProcess:
    """apt-get with a throw-away state directory, the machine's apt configuration and ``conf`` read last (-c).

    (``-o Dir::Etc::parts=...`` would not do: apt reads its configuration directory before the command line.)
    """
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(SOURCE)
    options = [
        *(["-c", str(conf)] if conf else []),
        "-o", f"Dir::Etc::sourcelist={state / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
        "-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
        "-o", "Acquire::Languages=none", "-o", "APT::Sandbox::User=root",
    ]
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
    proc = subprocess.run(["apt-get", "-q", *options, *args], cwd=state, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, f"apt-get {' '.join(args)}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    return proc


@dataclass
class Deb:
    url: str
    name: str
    size: int
    sha256: str


def package_uri(state: Path, conf: Path | None) -> Deb:
    """The .deb's URL, size and SHA256 as the Debian index gives them (apt-get --print-uris)."""
    out = apt_get(state, conf, "--print-uris", "download", PACKAGE).stdout
    match = re.search(r"'(http://[^']+\.deb)' (\S+) (\d+) SHA256:([0-9a-f]{64})", out)
    assert match, f"no URI for {PACKAGE} in: {out}"
    return Deb(match.group(1), match.group(2), int(match.group(3)), match.group(4))


def fetch_from(source: str, url: str) -> bytes:
    """GET ``url`` through the cache as a proxy, from the local address ``source``."""
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120, source_address=(source, 0))
    try:
        conn.request("GET", url, headers={"Host": urlsplit(url).netloc})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, f"{url} via {URL} from {source}: HTTP {response.status}"
        return body
    finally:
        conn.close()


def wait_for_lines(log: Path, pattern: str, count: int, timeout: float = 10.0) -> None:
    """apt-cacher-ng writes a line when a transfer ends, which may be a moment after the client has it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = "".join(p.read_text() for p in (log.with_name(log.name + ".1"), log) if p.exists())
        if len(re.findall(pattern, text, re.M)) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{log}: fewer than {count} lines match {pattern!r}:\n{text}")


# --------------------------------------------------------------------------- tests


def test_the_server_is_idempotent_and_listens_where_told(cache):
    proc, _ = cache.run("main")
    assert proc.returncode == 0 and changed_count(proc) == 0, proc.stdout[-3000:]
    settings = dict(line.split(": ", 1) for line in DROPIN.read_text().splitlines() if ": " in line and
                    not line.startswith("#"))
    assert settings["Port"] == str(PORT) and settings["BindAddress"] == "127.0.0.1"
    assert settings["CacheDir"] == str(cache.cache_dir) and settings["LogDir"] == str(cache.log_dir)
    assert settings["VerboseLog"] == "1" and settings["UnbufferLogs"] == "1"
    assert oct(DROPIN.stat().st_mode & 0o777) == "0o640"
    assert LOGROTATE_RULE.read_text().startswith("# Managed by Ansible")
    assert f"{cache.log_dir}/apt-cache*.log {{" in LOGROTATE_RULE.read_text()
    assert cache.log.exists() and cache.cache_dir.stat().st_uid == cache.log_dir.stat().st_uid != 0


def test_the_client_drop_in_is_checked_written_and_removed(cache):
    for bad in ("https://127.0.0.1:3142", "http://127.0.0.1", "http://user:pw@10.88.0.1:3142",
                "http://10.88.0.1:3142/debian", "10.88.0.1:3142", "http://10.88.0.1:70000"):
        proc, _ = cache.run("client", package_cache_url=bad)
        assert proc.returncode != 0, bad
        assert "package_cache_url must be the package cache's address" in proc.stdout and f"Got '{bad}'" in proc.stdout
        assert not cache.client_conf.exists()
    # a cache that does not answer: refused before apt is pointed to it
    proc, _ = cache.run("client", package_cache_url="http://127.0.0.1:9")
    assert proc.returncode != 0 and "This workstation does not reach the package cache at http://127.0.0.1:9" in \
        proc.stdout and "Nothing was changed" in proc.stdout
    assert not cache.client_conf.exists()

    proc, _ = cache.run("client", package_cache_url=URL + "/", package_cache_client_direct_hosts=["mirror.example"])
    assert proc.returncode == 0, proc.stdout[-3000:]
    lines = [line for line in cache.client_conf.read_text().splitlines() if not line.startswith("//")]
    assert lines == [f'Acquire::http::Proxy "{URL}";', 'Acquire::http::Proxy::mirror.example "DIRECT";']
    assert oct(cache.client_conf.stat().st_mode & 0o777) == "0o644"
    proc, _ = cache.run("client", package_cache_url=URL, package_cache_client_direct_hosts=["mirror.example"])
    assert proc.returncode == 0 and changed_count(proc) == 0
    proc, _ = cache.run("client", package_cache_url="")
    assert proc.returncode == 0 and changed_count(proc) == 1 and not cache.client_conf.exists()


def test_two_workstations_download_a_package_once_from_upstream(cache, tmp_path):
    proc, _ = cache.run("client", package_cache_url=URL)
    assert proc.returncode == 0, proc.stdout[-3000:]
    proc, facts = cache.run("mark")
    assert proc.returncode == 0, proc.stdout[-3000:]
    mark = facts["mark"]
    assert mark["path"] == str(cache.log) and mark["offset"] == cache.log.stat().st_size

    # workstation 1 (127.0.0.1): apt-get update and download, through the proxy the role's drop-in names
    first = tmp_path / "ws1"
    first.mkdir()
    apt_get(first, cache.client_conf, "update")
    deb = package_uri(first, cache.client_conf)
    apt_get(first, cache.client_conf, "download", PACKAGE)
    saved = first / deb.name
    assert saved.stat().st_size == deb.size and hashlib.sha256(saved.read_bytes()).hexdigest() == deb.sha256
    # workstation 2 (127.0.0.2): the same .deb
    body = fetch_from("127.0.0.2", deb.url)
    assert len(body) == deb.size and hashlib.sha256(body).hexdigest() == deb.sha256
    deb_path = re.escape(deb.name)  # the log has the path decoded (+, not %2b)
    wait_for_lines(cache.log, rf"\|O\|\d+\|[0-9.]+\|\S*{deb_path}$", 2)

    proc, facts = cache.run("stats", package_cache_stats_since=mark)
    assert proc.returncode == 0, proc.stdout[-3000:]
    stats = facts["stats"]
    package, index = stats["by_kind"]["package"], stats["by_kind"]["index"]
    print(f"\npackage_cache measured: {deb.name} {deb.size} bytes (index and stat); stats: {json.dumps(stats)}")
    # upstream: one copy of the .deb; served: two, one to each workstation
    assert package["files_fetched"] == 1 and package["files_served"] == 2
    assert deb.size < package["upstream_bytes"] <= deb.size + HEADER_MAX
    assert 2 * deb.size < package["served_bytes"] <= 2 * (deb.size + HEADER_MAX)
    assert deb.size < stats["clients"]["127.0.0.2"] <= deb.size + HEADER_MAX
    assert set(stats["clients"]) == {"127.0.0.1", "127.0.0.2"}
    assert sum(stats["clients"].values()) == stats["served_bytes"]
    # the index files the site paid for are counted: InRelease and the Packages file, fetched once
    in_release = next((first / "lists").glob("*_InRelease"))
    assert index["files_fetched"] >= 2 and index["upstream_bytes"] > in_release.stat().st_size
    assert stats["upstream_bytes"] == sum(kind["upstream_bytes"] for kind in stats["by_kind"].values())
    assert stats["files_fetched"] == package["files_fetched"] + index["files_fetched"]
    assert stats["rotated"] is False and stats["complete"] is True and stats["method"] == "offset"
    assert f"bytes from upstream ({stats['files_fetched']} files)" in proc.stdout  # the summary is shown


def test_the_statistics_follow_a_real_logrotate(cache, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    apt_get(ws, None, "-o", f"Acquire::http::Proxy={URL}", "update")
    deb = package_uri(ws, None)
    fetch_from("127.0.0.2", deb.url)  # in the cache now
    proc, facts = cache.run("mark")
    assert proc.returncode == 0, proc.stdout[-3000:]
    mark = facts["mark"]
    fetch_from("127.0.0.2", deb.url)  # logged in the log that is rotated next
    deb_path = re.escape(deb.name)  # the log has the path decoded (+, not %2b)
    wait_for_lines(cache.log, rf"\|O\|\d+\|127\.0\.0\.2\|\S*{deb_path}$", 2)
    # the role's logrotate rule, forced, with a state file of the test's own: renames the log, signals apt-cacher-ng
    rotate = subprocess.run(["logrotate", "--force", "--state", str(tmp_path / "logrotate.state"), str(LOGROTATE_RULE)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert rotate.returncode == 0, rotate.stderr
    rotated = cache.log.with_name("apt-cacher.log.1")
    assert rotated.stat().st_ino == mark["inode"] and cache.log.stat().st_ino != mark["inode"]
    fetch_from("127.0.0.3", deb.url)  # logged in the new log, once apt-cacher-ng has reopened it
    wait_for_lines(cache.log, rf"\|O\|\d+\|127\.0\.0\.3\|\S*{deb_path}$", 1)
    assert "127.0.0.3" in cache.log.read_text(), "apt-cacher-ng did not reopen its log after the rotation"

    proc, facts = cache.run("stats", package_cache_stats_since=mark)
    assert proc.returncode == 0, proc.stdout[-3000:]
    stats = facts["stats"]
    assert stats["rotated"] is True and stats["complete"] is True and stats["method"] == "offset"
    assert stats["files_read"] == [str(rotated), str(cache.log)]
    assert stats["by_kind"]["package"]["upstream_bytes"] == 0 and stats["by_kind"]["package"]["files_served"] == 2
    assert set(stats["clients"]) == {"127.0.0.2", "127.0.0.3"}
    assert all(deb.size < served <= deb.size + HEADER_MAX for served in stats["clients"].values())
    assert "apt-cacher-ng's log was rotated since the mark" in proc.stderr  # the warning
