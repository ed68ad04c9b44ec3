"""After the migration: the gate passed, the new PACS holds every instance byte for byte (those the modality
stored during the bulk copy included), answers DICOMweb like findscu; injected discrepancies are found
exactly, fail the gate by name, and a re-run heals them."""

import hashlib
import json
import subprocess
import sys

import testlib

sys.path.insert(0, str(testlib.PROJECT / "tools"))
import ansible_json  # noqa: E402

testinfra_hosts = ["ansible://pacs_targets"]
OLD = testlib.OrthancRest("http://127.0.0.1:23042")
NEW = testlib.OrthancRest("http://127.0.0.1:23043")
EVIDENCE = testlib.RESULTS / "migration"
SEED_DIR = testlib.PROJECT / "lab" / "state" / "seed" / "20x4x5-32px-varied"


def report(name="migration-latest.json"):
    return json.loads((EVIDENCE / name).read_text())


def files(rest):
    """{Orthanc id: sha256 of the stored file} of every instance."""
    return {key: hashlib.sha256(rest.request(f"/instances/{key}/file")).hexdigest() for key in rest.json("/instances")}


def migrate(*extra):
    proc = testlib.run_playbook(
        "migrate.yml", "-e", "pacs_migration_source=mol-mig-pacs1", "-e", "pacs_migration_target=mol-mig-pacs2",
        "-e", f"pacs_migration_evidence_dir={EVIDENCE}", *extra,
    )  # fmt: skip
    return proc


def reconcile():
    """The gate alone (dicom_reconcile through Ansible), at 0 %: (return code, its result)."""
    args = {
        "source": {"url": OLD.url, "username": "cuadmin", "password": testlib.LAB_PASSWORD},
        "target": {"url": NEW.url, "username": "cuadmin", "password": testlib.LAB_PASSWORD},
        "max_discrepancy_percent": 0,
    }
    return ansible_json.run_module("dicom_reconcile", args, timeout=300, python=testlib.venv_bin("python"))


def test_the_target_runs_orthanc_on_postgresql_with_dicomweb(host):
    assert host.file("/etc/debian_version").content_string.startswith("13")
    assert NEW.json("/system")["Version"] == "1.12.7"
    assert {"postgresql-index", "postgresql-storage", "dicom-web"} <= set(NEW.json("/plugins"))
    assert NEW.json("/system")["DatabaseBackendPlugin"]
    assert host.service("postgresql").is_running
    # The plugin's connection file holds the password: readable by orthanc, not by everyone.
    conf = host.file("/etc/orthanc/postgresql.json")
    assert conf.mode == 0o640 and conf.group == "orthanc"


def test_the_gate_passed_with_no_discrepancy(host):
    del host
    final = report()
    assert final["stage"] == "cutover" and final["passed"] is True
    rec = final["reconciliation"]
    assert rec["discrepancy_rate"] == 0 and rec["max_discrepancy_percent"] == 0
    assert rec["source"]["instances"] == rec["target"]["instances"] >= 400
    assert rec["deep_check"]["instances_compared"] == rec["source"]["instances"]  # every study sampled
    text = (EVIDENCE / "migration-latest.txt").read_text()
    assert "PASSED" in text and "Cutover" in text
    assert "SYN-" not in json.dumps(final) + text  # no patient ID in the evidence


def test_every_seeded_and_every_acknowledged_instance_is_on_the_new_pacs_byte_for_byte(host):
    del host
    seed = json.loads((SEED_DIR / "manifest.json").read_text())
    assert len(seed) == 400
    missing = [uid for uid in seed if NEW.instance_by_sop_uid(uid) is None]
    assert not missing, f"{len(missing)} seeded instances are not on the new PACS, e.g. {missing[:3]}"
    acknowledged, lost = testlib.acknowledged_but_missing(NEW)
    assert acknowledged >= 10, f"the modality got only {acknowledged} acknowledgements: see sender.log"
    assert not lost, f"{len(lost)} of {acknowledged} instances the old PACS acknowledged are not on the new one"
    assert files(NEW) == files(OLD)


def test_the_copy_stored_what_arrived_during_the_bulk_copy_in_the_delta_pass(host):
    del host
    runs = sorted(EVIDENCE.glob("migration-2*.json"))
    copy, cutover = (json.loads(p.read_text()) for p in runs[:2])
    assert copy["stage"] == "copy" and copy["copy"]["bulk"]["copied"] >= 400
    assert cutover["copy"]["delta"]["copied"] > 0  # the modality kept storing after the bulk pass listed


def test_qido_rs_on_the_new_pacs_answers_what_findscu_finds(host):
    del host
    qido = {s["0020000D"]["Value"][0] for s in json.loads(NEW.request("/dicom-web/studies"))}
    proc = subprocess.run(
        ["/usr/bin/findscu", "-S", "-aet", "CUVERIFY", "-aec", "PACS2", "-k", "QueryRetrieveLevel=STUDY",
         "-k", "StudyInstanceUID", "127.0.0.1", "23243"], capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    found = {line.split("[", 1)[1].split("]", 1)[0].rstrip("\x00 ") for line in proc.stderr.splitlines()
             if "(0020,000d)" in line and "[" in line}  # fmt: skip
    assert qido == found and len(found) >= 20


def test_z_injected_discrepancies_are_found_exactly_and_a_rerun_heals_them(host):
    """Last (test_z): it changes the new PACS, then heals it."""
    del host
    ids = sorted(NEW.json("/instances"))
    deleted, altered = ids[:3], ids[10]
    deleted_uids = sorted(NEW.json(f"/instances/{i}")["MainDicomTags"]["SOPInstanceUID"] for i in deleted)
    altered_uid = NEW.json(f"/instances/{altered}")["MainDicomTags"]["SOPInstanceUID"]
    for key in deleted:
        NEW.delete(f"/instances/{key}")
    original = NEW.request(f"/instances/{altered}/file")
    NEW.delete(f"/instances/{altered}")
    NEW.request("/instances", testlib.altered_copy(original))

    rc, result = reconcile()
    assert rc != 0 and result["failed"] is True
    assert sorted(e["sop_instance_uid"] for e in result["missing"]) == deleted_uids
    assert [e["sop_instance_uid"] for e in result["differing"]] == [altered_uid]
    assert result["extra"] == [] and result["misfiled"] == []
    for uid in [*deleted_uids, altered_uid]:
        assert uid in result["msg"]

    proc = migrate("-e", "pacs_migration_stage=cutover", "-e", "pacs_migration_max_discrepancy_percent=0")
    assert proc.returncode == 0, proc.stdout[-4000:]
    healed = report()
    assert healed["passed"] and healed["copy"]["delta"]["copied"] == 3
    assert [r["orthanc_id"] for r in healed["copy"]["heal"]["replaced"]] == [altered]
    assert files(NEW) == files(OLD)
