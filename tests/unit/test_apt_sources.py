"""Unit tests of the apt_sources_plan filter (roles/pacs_server/filter_plugins/apt_sources.py).

Run: .venv/bin/pytest roles/pacs_server/tests/unit
"""

import base64
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles" / "pacs_server" / "filter_plugins"))

from apt_sources import TARGET_FILE, apt_sources_plan  # noqa: E402


def files(**by_path):
    return [{"path": path, "content": text} for path, text in by_path.items()]


def plan(sources, **kw):
    return apt_sources_plan(sources, "bookworm", "trixie", **kw)


def test_one_line_debian_sources_list_is_disabled_line_by_line_and_the_mirror_kept():
    text = ("# local mirror\n"
            "deb http://mirror.hospital.example/debian bookworm main contrib\n"
            "deb-src http://mirror.hospital.example/debian bookworm main\n"
            "deb http://mirror.hospital.example/debian-security bookworm-security main\n")
    result = plan(files(**{"/etc/apt/sources.list": text}))
    assert result["mirror"] == "http://mirror.hospital.example/debian"
    assert result["security_mirror"] == "http://mirror.hospital.example/debian-security"
    assert result["types"] == ["deb", "deb-src"]
    assert result["components"] == ["main", "contrib"]
    assert result["third_party"] == []
    [disabled] = result["disable"]
    lines = disabled["content"].splitlines()
    assert lines[0] == "# local mirror"
    assert all(line.startswith("# disabled by clinical-upgrade") for line in lines[1:])
    # Applying the plan again finds nothing more to disable.
    again = plan(files(**{"/etc/apt/sources.list": disabled["content"]}))
    assert again["disable"] == []


def test_third_party_sources_are_listed_and_never_rewritten():
    sources = files(**{
        "/etc/apt/sources.list": "deb http://deb.debian.org/debian bookworm main\n",
        "/etc/apt/sources.list.d/docker.list":
            "deb [signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable\n",
        "/etc/apt/sources.list.d/sury.list": "deb https://packages.sury.org/php/ bookworm main\n",
        "/etc/apt/sources.list.d/pgdg.sources":
            "Types: deb\nURIs: http://apt.postgresql.org/pub/repos/apt\nSuites: bookworm-pgdg\nComponents: main\n",
    })
    result = plan(sources)
    assert [d["path"] for d in result["disable"]] == ["/etc/apt/sources.list"]
    assert result["third_party"] == ["/etc/apt/sources.list.d/docker.list", "/etc/apt/sources.list.d/pgdg.sources",
                                     "/etc/apt/sources.list.d/sury.list"]
    assert result["mirror"] == "http://deb.debian.org/debian"
    assert result["security_mirror"] == "http://security.debian.org/debian-security"


def test_a_deb822_debian_file_other_than_the_target_gets_enabled_no():
    text = ("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
            "Components: main non-free-firmware\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            "Types: deb\nURIs: https://repo.vendor.example/apt\nSuites: bookworm\nComponents: pacs\n")
    result = plan(files(**{"/etc/apt/sources.list.d/mirror.sources": text}))
    [disabled] = result["disable"]
    stanzas = disabled["content"].strip().split("\n\n")
    assert stanzas[0].endswith("Enabled: no")
    assert "Enabled" not in stanzas[1]
    assert result["components"] == ["main", "non-free-firmware"]
    assert result["third_party"] == ["/etc/apt/sources.list.d/mirror.sources"]


def test_the_target_file_is_replaced_and_its_foreign_stanzas_kept():
    text = ("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            "Types: deb\nURIs: https://vendor.example/apt\nSuites: stable\nComponents: viewer\n")
    result = plan(files(**{TARGET_FILE: text}))
    assert result["disable"] == []
    assert result["security_mirror"] == "http://deb.debian.org/debian-security"
    assert result["keep"] == ["Types: deb\nURIs: https://vendor.example/apt\nSuites: stable\nComponents: viewer"]


def test_after_the_rewrite_the_new_debian_sources_give_the_same_plan():
    text = ("Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie trixie-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            "Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: trixie-security\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    commented = "# disabled by clinical-upgrade for the release upgrade to trixie: deb http://x/debian bookworm main\n"
    result = plan(files(**{TARGET_FILE: text, "/etc/apt/sources.list": commented}))
    assert result["mirror"] == "http://mirror.example/debian"
    assert result["disable"] == [] and result["keep"] == [] and result["third_party"] == []


def test_given_mirrors_win_and_slurp_results_are_decoded():
    slurped = [{"source": "/etc/apt/sources.list", "encoding": "base64",
                "content": base64.b64encode(b"deb http://deb.debian.org/debian bookworm main\n").decode()}]
    result = plan(slurped, mirror="http://local/debian", security_mirror="http://local/debian-security")
    assert result["mirror"] == "http://local/debian"
    assert result["security_mirror"] == "http://local/debian-security"
    assert result["debian_files"] == ["/etc/apt/sources.list"]


def test_a_debian_sources_an_earlier_run_wrote_is_named_to_keep_it_out_of_the_backup():
    ours = ("# Debian trixie sources, written by clinical-upgrade for the release upgrade from\n# bookworm.\n"
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie trixie-updates\nComponents: main\n")
    theirs = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n"
    assert plan(files(**{TARGET_FILE: ours}))["written_by_us"] == [TARGET_FILE]
    assert plan(files(**{TARGET_FILE: theirs}))["written_by_us"] == []
