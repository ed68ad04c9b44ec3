"""filter_plugins/report.py and roles/upgrade_report/templates/report.html.j2: the run's HTML report and
JUnit file, read back with independent parsers (junitparser, Python's html.parser)."""

import sys
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import junitparser
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "filter_plugins"))

from report import report_evidences, report_junit, upgrade_report_view  # noqa: E402
from upgrade import (  # noqa: E402
    upgrade_public,
    upgrade_record_step,
    upgrade_result_new,
    upgrade_step_begin,
    upgrade_step_end,
)

RUN = {"id": "20261203T220000Z-abc123", "started": "2026-12-03T22:00:00Z", "user": "root", "controller": "ctl",
       "revision": "c9ce66d", "change_ticket": "CHG-1", "awx": {"job_id": None}}
T0 = 1796335200.0  # 2026-12-03T22:00:00Z


def record(check, status="passed", elapsed_ms=12, message="ok"):
    return {"check": check, "status": status, "elapsed_ms": elapsed_ms, "message": message, "details": {}}


def run_steps(result, plan):
    for name, start, end, status in plan:
        result = upgrade_step_end(upgrade_step_begin(result, name, T0 + start), status, T0 + end,
                                  "verification failed" if status == "failed" else None)
    return result


def evidence_upgraded():
    result = upgrade_result_new("pacs1", "pacs", RUN, "1.12.7")
    result = run_steps(result, [("precheck", 0, 5, "passed"), ("lock", 5, 6, "passed"), ("snapshot", 6, 20, "passed"),
                                ("stage", 20, 120, "passed"), ("switch", 120, 160, "passed"),
                                ("verify", 160, 175, "passed")])
    result = upgrade_record_step(result, "verify", [record("dicom_echo"), record("dicom_roundtrip", elapsed_ms=300)])
    result.update(outcome="upgraded", versions=dict(result["versions"], before="1.10.1", after="1.12.7"),
                  snapshot={"id": "snap-1", "provider": "podman"},
                  downtime={"measured": True, "complete": True, "total_s": 38.2, "longest_s": 38.2},
                  precheck=[{"id": "PRE-001", "title": "reachable", "status": "passed", "message": ""}])
    return upgrade_public(result)


def evidence_rolled_back():
    result = upgrade_result_new("pacs2", "pacs", RUN, "1.12.7")
    result = run_steps(result, [("lock", 2, 3, "passed"), ("snapshot", 3, 15, "passed"), ("stage", 15, 110, "passed"),
                                ("switch", 110, 150, "passed"), ("verify", 150, 160, "failed"),
                                ("preserve", 160, 165, "passed"), ("revert", 165, 190, "passed"),
                                ("verify_after_rollback", 190, 200, "passed")])
    refused = record("dicom_roundtrip", "failed", message="C-STORE refused <0xA700>")
    result = upgrade_record_step(result, "verify", [refused])
    result = upgrade_record_step(result, "verify_after_rollback", [record("dicom_echo")])
    result.update(outcome="rolled_back", failed_step="verify: PACS stores a synthetic instance",
                  message="C-STORE refused <0xA700>", snapshot={"id": "snap-2", "provider": "podman"},
                  snapshot_reverted={"id": "snap-2"},
                  downtime={"measured": True, "complete": True, "total_s": 70.0, "longest_s": 45.0})
    return upgrade_public(result)


@pytest.fixture
def view():
    evidences = {"pacs1": evidence_upgraded(), "pacs2": evidence_rolled_back()}
    return upgrade_report_view(evidences, ["pacs1", "pacs2", "pacs3"], RUN)


def test_the_view_has_every_host_including_those_never_attempted(view):
    assert [(h["host"], h["outcome"]) for h in view["hosts"]] == [
        ("pacs1", "upgraded"), ("pacs2", "rolled_back"), ("pacs3", "not_attempted")]
    assert view["counts"] == {"upgraded": 1, "rolled_back": 1, "not_attempted": 1}
    assert view["ok"] is False


def test_the_timeline_places_each_step_of_each_host_on_the_runs_time_axis(view):
    assert view["span_s"] == 200.0
    pacs1, pacs2 = view["hosts"][0]["timeline"], view["hosts"][1]["timeline"]
    assert [s["phase"] for s in pacs1] == ["precheck", "snapshot", "snapshot", "stage", "switch", "verify"]
    assert [(s["offset_s"], s["left_pct"], s["width_pct"]) for s in pacs1][3] == (20.0, 10.0, 50.0)
    assert [s["phase"] for s in pacs2][-3:] == ["rollback", "rollback", "rollback"]
    assert all(0 <= s["left_pct"] <= 100 and s["left_pct"] + s["width_pct"] <= 100.3 for s in pacs1 + pacs2)
    assert [s["status"] for s in pacs2 if s["name"] == "verify"] == ["failed"]


def test_the_checks_and_findings_of_each_host(view):
    pacs1, pacs2 = view["hosts"][0], view["hosts"][1]
    assert [(c["phase"], c["check"], c["status"]) for c in pacs1["checks"]] == [
        ("precheck", "PRE-001 reachable", "passed"), ("verify", "dicom_echo", "passed"),
        ("verify", "dicom_roundtrip", "passed")]
    assert pacs1["findings"] == []
    assert [(f["severity"], f["check"]) for f in pacs2["findings"]] == [(3, "outcome")]
    assert view["worst_severity"] == 3


def test_the_junit_file_reads_back_with_junitparser(view, tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(report_junit(view), encoding="utf-8")
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = {suite.name: suite for suite in xml}
    assert list(suites) == ["pacs1", "pacs2", "pacs3"]
    assert (suites["pacs1"].tests, suites["pacs1"].failures) == (4, 0)
    cases = {case.name: case for case in suites["pacs2"]}
    assert set(cases) == {"rolled_back", "dicom_roundtrip", "dicom_echo"}
    failure = cases["rolled_back"].result[0]
    assert isinstance(failure, junitparser.Failure)
    assert "C-STORE refused <0xA700>" in failure.message and "SLA severity 3" in failure.message
    assert cases["dicom_roundtrip"].classname == "pacs2.verify" and not cases["dicom_roundtrip"].is_passed
    assert cases["dicom_echo"].classname == "pacs2.rollback" and cases["dicom_echo"].is_passed
    assert cases["dicom_echo"].time == pytest.approx(0.012)
    assert isinstance(next(iter(suites["pacs3"])).result[0], junitparser.Skipped)
    assert (xml.tests, xml.failures, xml.skipped) == (8, 2, 1)


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.text, self.tags = {}, [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids[attrs["id"]] = attrs

    def handle_data(self, data):
        self.text.append(data)


def render(view):
    # Without autoescape, as Ansible's template lookup renders it: the template escapes every text itself.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROOT / "roles/upgrade_report/templates")),  # noqa: S701
                             undefined=jinja2.StrictUndefined)
    return env.get_template("report.html.j2").render(upgrade_report_view_data=view)


def test_the_html_report_is_one_page_with_every_host_its_timeline_and_escaped_text(view):
    html = render(view)
    page = Page()
    page.feed(html)
    text = " ".join(page.text)
    assert {"hosts", "findings", "run-result", "timeline-pacs1", "timeline-pacs2", "host-pacs3"} <= set(page.ids)
    assert "ATTENTION NEEDED" in text and "rolled_back" in text and "not_attempted" in text
    assert "C-STORE refused <0xA700>" in text  # shown as text: escaped in the source
    assert "<0xA700>" not in html and "&lt;0xA700&gt;" in html
    assert not {"script", "link", "img", "iframe"} & set(page.tags)  # self-contained, nothing to fetch
    assert html.count('class="bar ') == 6 + 8


def test_evidences_of_another_run_are_left_out():
    class HostVars(dict):
        pass

    other = dict(evidence_upgraded(), run={"id": "older"})
    hostvars = HostVars(pacs1={"upgrade_report_evidence": evidence_upgraded()},
                        pacs2={"upgrade_report_evidence": other}, pacs3={})
    assert list(report_evidences(hostvars, ["pacs1", "pacs2", "pacs3"], RUN)) == ["pacs1"]


def test_bad_input_says_what_is_expected():
    with pytest.raises(ValueError, match="needs the view"):
        report_junit({"x": 1})
    with pytest.raises(ValueError, match="evidence of each host, by host name"):
        upgrade_report_view(["pacs1"])
