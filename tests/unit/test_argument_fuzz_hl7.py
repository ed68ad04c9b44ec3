"""Hypothesis feeds random arguments to hl7_check and pacs_info.

Whatever comes in, the module must end with a clean exit_json or fail_json
(a JSON result with a message), never a traceback. Network use is confined to
loopback: hl7_check runs in check mode or against a closed loopback port, and
pacs_info only ever gets loopback URLs on a closed port (or URLs it must refuse
before any network use).
"""

from __future__ import annotations

import string

from hl7_fixtures import free_port, load_module, run_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

hl7_check = load_module("hl7_check")
pacs_info = load_module("pacs_info")

CLOSED_PORT = free_port()

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False),
    st.text(max_size=40),
)
any_value = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=8), scalars, max_size=3))
hl7ish = st.text(alphabet=string.ascii_uppercase + string.digits + "|^~\\&\r\n .-", max_size=120)


def assert_clean(result):
    assert result["_rc"] in (0, 1), result
    if result["_rc"] == 1:
        assert result.get("failed") is True
        assert isinstance(result.get("msg"), str) and result["msg"]
        assert "Traceback" not in result["msg"]
    assert "exception" not in result or "Traceback" not in str(result["exception"])


hl7_args = st.fixed_dictionaries(
    {},
    optional={
        "host": st.one_of(st.just("127.0.0.1"), st.text(max_size=30), any_value),
        "port": st.one_of(st.integers(min_value=-5, max_value=70000), any_value),
        "timeout": st.one_of(st.floats(allow_nan=False, allow_infinity=False, min_value=-5, max_value=5), any_value),
        "message_type": st.one_of(st.sampled_from(["ORM^O01", "ADT^A01", "raw", "ORU^R01", ""]), any_value),
        "raw_message": st.one_of(hl7ish.map(lambda s: "MSH|^~\\&|" + s), hl7ish, any_value),
        "control_id": st.one_of(st.text(max_size=25), any_value),
        "expected_ack": st.one_of(st.sampled_from(["AA", "AE", "AR", "CA", "CE", "CR", "XX"]), any_value),
        "hl7_version": st.one_of(st.sampled_from(["2.3", "2.5.1", "3"]), any_value),
        "encoding": st.one_of(st.sampled_from(["utf-8", "latin-1", "bogus"]), any_value),
        "sending_application": any_value,
        "order": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "control": st.one_of(st.sampled_from(["NW", "CA", "XO"]), any_value),
                    "accession_number": st.one_of(st.text(max_size=20), any_value),
                    "patient_id": any_value,
                    "modality": any_value,
                    "station_aetitle": st.one_of(st.text(max_size=20), any_value),
                    "scheduled_datetime": st.one_of(st.from_regex(r"\A\d{8,14}\Z"), any_value),
                    "bogus": any_value,
                },
            ),
            any_value,
        ),
        "unknown_option": any_value,
    },
)


@FUZZ
@given(args=hl7_args)
def test_hl7_check_check_mode_never_tracebacks(args):
    assert_clean(run_module(hl7_check, args, check_mode=True))


@FUZZ
@given(args=hl7_args)
def test_hl7_check_against_closed_port_never_tracebacks(args):
    args = dict(args, host="127.0.0.1", port=CLOSED_PORT, timeout=1)
    result = run_module(hl7_check, args)
    assert_clean(result)
    assert result["_rc"] == 1  # nothing listens there
    assert result.get("sent") is not True


loopback_urls = st.builds(
    lambda scheme, path: f"{scheme}://127.0.0.1:{CLOSED_PORT}/{path}",
    st.sampled_from(["http", "https"]),
    st.text(alphabet=string.ascii_letters + string.digits + "/-_.%", max_size=20),
)
refused_urls = st.one_of(
    st.text(max_size=30).filter(lambda s: "http" not in s.lower()),
    st.builds(lambda s: "ftp://" + s, st.text(max_size=20)),
    st.builds(lambda s: "http://user:pw@" + s, st.text(max_size=20)),
)


@FUZZ
@given(
    args=st.fixed_dictionaries(
        {"url": st.one_of(loopback_urls, refused_urls)},
        optional={
            "username": any_value,
            "password": any_value,
            "validate_certs": any_value,
            "timeout": st.one_of(st.floats(allow_nan=False, min_value=-1, max_value=2), any_value),
            "include_jobs": any_value,
            "extra": any_value,
        },
    )
)
def test_pacs_info_never_tracebacks(args):
    result = run_module(pacs_info, args)
    assert_clean(result)
    assert result["_rc"] == 1  # closed port or refused url: never a success
    if isinstance(args.get("password"), str) and len(args["password"]) > 3:
        assert args["password"] not in result["msg"]
