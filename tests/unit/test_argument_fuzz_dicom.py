"""Random arguments to each dicom_* module end in exit_json/fail_json, never in a traceback.

The peer is a closed loopback port, so whatever passes validation fails fast with
connection_refused; no example talks to a real service.
"""

from __future__ import annotations

import math

import dicom_echo
import dicom_query
import dicom_roundtrip
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
timeouts = st.one_of(st.just(0.5), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10).map(float))
maybe_text = st.one_of(st.none(), st.text(max_size=30))
paths = st.one_of(st.none(), st.sampled_from(["/nonexistent/x.pem", "/etc/hostname", "/", ""]))


def connection(draw_port, draw_timeout):
    return st.fixed_dictionaries(
        {
            "host": st.sampled_from(["127.0.0.1", "", " bad host", "http://x/"]),
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
@given(args=connection(ports, timeouts), max_latency=st.one_of(st.none(), st.floats(allow_nan=False)))
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
    url=st.one_of(st.none(), st.sampled_from(["http://127.0.0.1:1", "ftp://x", "", "https://"])),
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
