"""Random arguments to each module end in exit_json/fail_json, never in a traceback.

Host names (labels over 63 characters, non-ASCII, IPv6 literals), URLs (broken brackets, ports
over 65535, over-long labels), encodings and numeric extremes (nan, inf, 1e400, far dates) for
the dicom_* modules, pacs_info, pacs_archive and maintenance_window.

The peer is a closed loopback port, so whatever passes validation fails fast with
connection_refused; no example talks to a real service.
"""

from __future__ import annotations

import math

import dicom_echo
import dicom_query
import dicom_roundtrip
import maintenance_window
import pacs_archive
import pacs_info
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import free_port, run_module

CLOSED_PORT = free_port()
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ae_titles = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["ORTHANC", "", " ", "A" * 16, "A" * 17, "A\\B", "A\nB", "ÄÖ"]),
)
ports = st.one_of(st.just(CLOSED_PORT), st.integers(min_value=-5, max_value=70000).filter(lambda p: p != 104))
timeouts = st.one_of(
    st.just(0.5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10, 10).map(float),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", ""]),
)
extreme_numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from(["nan", "inf", "1e400", "-0", "12abc", "", " 5 "]),
)
long_label = "a" * 64
host_names = st.one_of(
    st.sampled_from(
        [
            "127.0.0.1",
            "",
            " bad host",
            "http://x/",
            f"{long_label}.example",
            "x." * 130 + "example",
            "pacs-\u00e9.example",
            "\u0000",
            "::1",
            "[::1]",
            "-leading.example",
            ".",
        ]
    ),
    st.text(max_size=80),
)
urls = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "http://127.0.0.1:1",
            "ftp://x",
            "",
            "https://",
            "http://[::1",
            "http://[::1]:1",
            "http://127.0.0.1:70000",
            "http://127.0.0.1:-1",
            f"http://{long_label}.example:8042",
            "https://pacs-\u00fc.example",
            "http://u:p@127.0.0.1:1",
            "http://127.0.0.1:1/?q=1",
            "http://127.0.0.1:1/#f",
            "http:///path",
        ]
    ),
    st.text(max_size=40).map(lambda t: "http://" + t),
)
maybe_text = st.one_of(st.none(), st.text(max_size=30))
paths = st.one_of(st.none(), st.sampled_from(["/nonexistent/x.pem", "/etc/hostname", "/", ""]))


def connection(draw_port, draw_timeout):
    return st.fixed_dictionaries(
        {
            "host": host_names,
            "port": draw_port,
            "called_ae": ae_titles,
            "calling_ae": ae_titles,
            "timeout": draw_timeout,
        },
        optional={
            "tls_ca_cert": paths,
            "tls_client_cert": paths,
            "tls_client_key": paths,
            "tls_client_key_passphrase": maybe_text,
        },
    )


def _safe_timeout(args):
    # a finite, small positive timeout would only slow the suite down; keep it bounded
    t = args.get("timeout")
    if isinstance(t, float) and math.isfinite(t) and t > 2:
        args["timeout"] = 0.5
    host = args.get("host")
    if isinstance(host, str) and host not in ("127.0.0.1", "::1", "[::1]") and not host.startswith(("http", " ")):
        # a name that passes validation would go to the resolver: keep the examples on loopback
        args["host"] = host if any(ord(ch) > 0x7E or ch.isspace() for ch in host) or len(host) > 63 else "127.0.0.1"
    if args.get("port") not in (CLOSED_PORT,) and isinstance(args.get("port"), int) and 1 <= args["port"] <= 65535:
        args["port"] = CLOSED_PORT
    return args


def check(module, args):
    result = run_module(module, _safe_timeout(args))
    assert result["_rc"] in (0, 1)
    assert "Traceback" not in str(result.get("msg", ""))
    if result.get("failed"):
        assert result["msg"]
    return result


@SETTINGS
@given(args=connection(ports, timeouts), max_latency=extreme_numbers)
def test_fuzz_dicom_echo(args, max_latency):
    if max_latency is not None:
        args["max_latency_ms"] = max_latency
    check(dicom_echo, args)


@SETTINGS
@given(
    args=connection(ports, timeouts),
    level=st.sampled_from(["PATIENT", "STUDY", "SERIES", "IMAGE", "WORKLIST", "FRAME", "study"]),
    model=st.sampled_from([None, "patient_root", "study_root", "bogus"]),
    filters=st.dictionaries(
        st.sampled_from(
            [
                "patient_id",
                "patient_name",
                "study_instance_uid",
                "modality",
                "study_date",
                "scheduled_date",
                "scheduled_station_ae",
                "accession_number",
                "sop_instance_uid",
            ]
        ),
        st.text(max_size=70),
        max_size=3,
    ),
    max_results=st.integers(-5, 20000),
    return_keys=st.lists(st.sampled_from(["StudyDescription", "Nope", "", "PatientAge"]), max_size=2),
)
def test_fuzz_dicom_query(args, level, model, filters, max_results, return_keys):
    args.update(filters, level=level, max_results=max_results, return_keys=return_keys, return_identifiers=True)
    if model is not None:
        args["query_model"] = model
    check(dicom_query, args)


@SETTINGS
@given(
    args=connection(ports, timeouts),
    method=st.sampled_from(["auto", "get", "move", "ftp"]),
    move_ae=st.one_of(st.none(), ae_titles),
    move_port=st.integers(-5, 70000),
    url=urls,
    user=maybe_text,
    password=maybe_text,
    size=st.integers(-5, 1000),
    check_mode=st.booleans(),
)
def test_fuzz_dicom_roundtrip(args, method, move_ae, move_port, url, user, password, size, check_mode):
    args.update(
        retrieve_method=method,
        move_destination_ae=move_ae,
        move_listen_port=move_port,
        move_listen_address="127.0.0.1",
        orthanc_url=url,
        orthanc_user=user,
        orthanc_password=password,
        size_px=size,
        _ansible_check_mode=check_mode,
    )
    check(dicom_roundtrip, args)


def rest_args(url, timeout, extra):
    args = {"url": url, "timeout": timeout}
    args.update(extra)
    if isinstance(args["timeout"], float) and math.isfinite(args["timeout"]) and args["timeout"] > 2:
        args["timeout"] = 0.5
    if isinstance(url, str) and url.startswith("http://") and "127.0.0.1" not in url and "[::1]" not in url:
        # a URL whose host name passes validation would go to the resolver: only refusals are exercised
        host = url[7:].split("/")[0].split(":")[0]
        if host and all(ord(ch) < 0x7F for ch in host) and len(host) <= 63:
            args["url"] = "http://127.0.0.1:1"
    return args


@SETTINGS
@given(
    url=urls,
    timeout=timeouts,
    extra=st.fixed_dictionaries(
        {},
        optional={
            "username": st.one_of(st.none(), st.text(max_size=10)),
            "password": st.one_of(st.none(), st.text(max_size=10)),
            "ca_path": paths,
            "validate_certs": st.booleans(),
        },
    ),
)
def test_fuzz_pacs_info(url, timeout, extra):
    args = rest_args(url, timeout, extra)
    if args["url"] is None:
        args.pop("url")
    check(pacs_info, args)


@SETTINGS
@given(
    url=urls,
    timeout=timeouts,
    state=st.sampled_from(["inventory", "readback", "export", "describe", "import", "bogus"]),
    numbers=st.fixed_dictionaries(
        {},
        optional={
            "since_change": extreme_numbers,
            "sample_size": extreme_numbers,
            "workers": extreme_numbers,
        },
    ),
)
def test_fuzz_pacs_archive(url, timeout, state, numbers, tmp_path_factory):
    args = rest_args(url, timeout, {"state": state, "dest": str(tmp_path_factory.mktemp("dest"))})
    args.update({k: v for k, v in numbers.items() if v is not None})
    if args["url"] is None:
        args.pop("url")
    check(pacs_archive, args)


WINDOW = {"name": "night", "days": ["Sat"], "start": "22:00", "duration_minutes": 240}


@SETTINGS
@given(
    now=st.one_of(
        st.none(),
        st.sampled_from(["9999-12-31T23:59:59", "0001-01-01T00:00:00", "1969-12-31T23:59:59Z", "2025-06-07T23:00:00",
                         "2025-06-07T23:00:00+14:00", "2025-13-01T00:00:00", "", "now"]),
        st.datetimes().map(lambda d: d.isoformat()),
    ),
    minutes=extreme_numbers,
    timezone=st.sampled_from(["UTC", "Europe/Berlin", "Pacific/Kiritimati", "Mars/Base", "", "../etc/passwd"]),
)
def test_fuzz_maintenance_window(now, minutes, timezone):
    args = {"windows": [WINDOW], "timezone": timezone}
    if now is not None:
        args["now"] = now
    if minutes is not None:
        args["min_minutes_left"] = minutes
    check(maintenance_window, args)
