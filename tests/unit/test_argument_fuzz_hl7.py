"""Hypothesis feeds random arguments to hl7_check and pacs_info.

Whatever comes in, the module must end with a clean exit_json or fail_json
(a JSON result with a message), never a traceback. Network use is confined to
loopback: hl7_check runs in check mode or against a closed loopback port, and
pacs_info only ever gets loopback URLs on a closed port (or URLs it must refuse
before any network use).

For hl7_check, host names, URLs, encodings and numeric extremes are also checked
exactly: a valid host passes, an invalid one (a label over 63 characters, a URL,
a host:port, ...) fails with a message about the host before any network use,
an encoding that cannot carry the message fails before any network use, and
NaN or infinity never pass as a timeout.
"""

from __future__ import annotations

import json
import math
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

# ---- host names: valid ones, and invalid ones that must be refused before any network use
_label = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?\Z")
host_names = (
    st.lists(_label, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda h: not all(part.isdigit() for part in h.split(".")))
)
valid_hosts = st.one_of(
    host_names,
    host_names.map(lambda h: h + "."),  # a fully qualified name with the root dot
    st.builds(lambda a, n: f"{a}.{'b' * n}.example", _label, st.integers(min_value=40, max_value=63)),
    st.ip_addresses().map(str),
)
invalid_hosts = st.one_of(
    # a label over 63 characters (was 'UnicodeError: label too long' at connect)
    st.builds(lambda a, n: f"{a}.{'b' * n}.example", _label, st.integers(min_value=64, max_value=300)),
    st.builds(lambda n: ".".join(["a" * 50] * n), st.integers(min_value=6, max_value=12)),  # over 253 characters
    # a non-ASCII label that is over 63 characters in its xn-- form
    st.builds(lambda s: s + ".example", st.text(alphabet="äöüéèàçñøå", min_size=64, max_size=80)),
    st.builds(  # URLs
        lambda scheme, h, port, path: f"{scheme}://{h}:{port}/{path}",
        st.sampled_from(["http", "https", "mllp", "tcp", "file"]),
        host_names,
        st.integers(min_value=1, max_value=65535),
        st.text(alphabet=string.ascii_letters + "/", max_size=10),
    ),
    st.builds(lambda h, port: f"{h}:{port}", host_names, st.integers(min_value=0, max_value=99999)),  # host:port
    st.builds(lambda h: f"[{h}]", st.ip_addresses(v=6).map(str)),
    st.builds(  # a character no host name has, somewhere in a valid name
        lambda h, bad, at: h[: at % (len(h) + 1)] + bad + h[at % (len(h) + 1) :],
        host_names,
        st.sampled_from(list(" \t\n\r\x00\x7f!\"#$&'()*+,;<=>?@[\\]^`{|}~/")),
        st.integers(min_value=0, max_value=100),
    ),
    st.builds(lambda h: h + "..example", host_names),
    st.builds(lambda h: "-" + h, host_names),
    st.builds(lambda h: h + "-.example", host_names),
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", *(st.integers(min_value=0, max_value=999),) * 3),  # not an IPv4
)

# ---- encodings: character sets, codecs that are no character sets, nonsense
charsets = st.sampled_from(
    ["utf-8", "UTF8", "latin-1", "iso-8859-15", "cp1252", "ascii", "us-ascii", "utf-16", "utf-16-le", "utf-32",
     "cp037", "cp500", "utf-8-sig", "idna", "punycode", "unicode_escape", "rot13", "base64", "hex", "bogus", "", " "]
)  # fmt: skip
encodings = st.one_of(charsets, st.text(max_size=12))

# ---- numeric extremes
NAN, INF = float("nan"), float("inf")
extreme_numbers = st.one_of(
    st.sampled_from([NAN, INF, -INF, 1e308, -1e308, 5e-324, 0.0, -0.0, 3600.0, 3600.0000001, 1e-9, 2**63, -(2**63)]),
    st.floats(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", "0x10", "3600", "3601", "5e-324"]),
)
extreme_ports = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([NAN, INF, -INF, "nan", "inf", "1e400", "0", "65535", "65536", "-1"]),
)


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
        "host": st.one_of(st.just("127.0.0.1"), st.text(max_size=30), valid_hosts, invalid_hosts, any_value),
        "port": st.one_of(st.integers(min_value=-5, max_value=70000), extreme_ports, any_value),
        "timeout": st.one_of(
            st.floats(allow_nan=False, allow_infinity=False, min_value=-5, max_value=5), extreme_numbers, any_value
        ),
        "message_type": st.one_of(st.sampled_from(["ORM^O01", "ADT^A01", "raw", "ORU^R01", ""]), any_value),
        "raw_message": st.one_of(hl7ish.map(lambda s: "MSH|^~\\&|" + s), hl7ish, any_value),
        "control_id": st.one_of(st.text(max_size=25), any_value),
        "expected_ack": st.one_of(st.sampled_from(["AA", "AE", "AR", "CA", "CE", "CR", "XX"]), any_value),
        "hl7_version": st.one_of(st.sampled_from(["2.3", "2.5.1", "3"]), any_value),
        "encoding": st.one_of(encodings, any_value),
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


@FUZZ
@given(case=st.one_of(valid_hosts.map(lambda h: (h, True)), invalid_hosts.map(lambda h: (h, False))))
def test_hl7_check_host_validation_is_exact(case):
    host, valid = case
    if valid:  # check mode: validated and built, nothing sent, no name looked up
        result = run_module(hl7_check, {"host": host}, check_mode=True)
        assert result["_rc"] == 0, result
        return
    result = run_module(hl7_check, {"host": host, "port": CLOSED_PORT, "timeout": 1})
    assert_clean(result)
    assert result["_rc"] == 1
    assert result["msg"].startswith("host "), result["msg"]
    assert "error_kind" not in result  # refused by validation, before any network use
    assert result["sent"] is False


@FUZZ
@given(encoding=encodings, name=st.text(alphabet=st.characters(categories=("Lu", "Ll")), min_size=1, max_size=12))
def test_hl7_check_encoding_is_checked_before_network(encoding, name):
    raw = f"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|ENC1|P|2.5.1\rPID|1||SYN1||ZQX{name}^ANNA||19700101|O"
    args = {"host": "127.0.0.1", "port": CLOSED_PORT, "timeout": 1, "message_type": "raw", "raw_message": raw}
    result = run_module(hl7_check, dict(args, encoding=encoding))
    assert_clean(result)
    assert result["_rc"] == 1  # a validation error, or nothing listens
    assert result["sent"] is False
    if "error_kind" in result:  # the message could be encoded: it got as far as the closed port
        assert result["error_kind"] == "refused"
        assert raw.encode(encoding).startswith(b"MSH|^~\\&|")
    else:
        assert "encoding" in result["msg"], result["msg"]
    assert "ZQX" not in json.dumps(result, ensure_ascii=False)  # the patient name is never shown


def _as_number(value, convert):
    if isinstance(value, bool):
        return None
    try:
        return convert(value)
    except (TypeError, ValueError, OverflowError):
        return None


@FUZZ
@given(timeout=extreme_numbers, port=extreme_ports)
def test_hl7_check_numeric_extremes(timeout, port):
    result = run_module(hl7_check, {"host": "127.0.0.1", "port": port, "timeout": timeout}, check_mode=True)
    assert_clean(result)
    t = _as_number(timeout, float)
    p = _as_number(port, lambda v: v if isinstance(v, int) else int(v))
    valid = t is not None and math.isfinite(t) and 0 < t <= 3600 and p is not None and 1 <= p <= 65535
    assert (result["_rc"] == 0) == valid, (timeout, port, result.get("msg"))
    if not valid:
        assert "timeout" in result["msg"] or "port" in result["msg"]


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
