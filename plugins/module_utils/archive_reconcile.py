# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Instance-level inventories of two archives and their reconciliation (the dicom_reconcile module).

* ``RestPool(url, username, password, ...)`` -- keep-alive HTTP connections to one Orthanc, one per
  thread, for the many small requests of an inventory or a deep check (``get_json``, ``get_bytes``,
  ``post``). Failures are ``orthanc_rest.OrthancError`` with the same words as the project's client.
* ``OrthancInventory(pool)`` -- an archive over Orthanc's REST API: every study and series from the
  paged ``/studies?expand`` and ``/series?expand``; an instance is keyed by its Orthanc id, which
  Orthanc computes from the patient ID and the study, series and SOP Instance UIDs (the same four
  values give the same id on every Orthanc), so two Orthanc archives are compared instance by
  instance without reading each instance. The SOP Instance UID of a discrepant instance is read
  afterwards. Deep check: the MD5 Orthanc recorded of each stored file (``file``), or the dataset.
* ``DicomInventory(params, workers)`` -- any archive over DICOM: C-FIND (Study Root) at STUDY, then
  SERIES per study, then IMAGE per series, ``workers`` queries at once, each on an association of its
  own; an instance is keyed by its SOP Instance UID. Deep check: the dataset of each instance retrieved with C-GET.
* ``rest_side_spec``, ``rest_side_error``, ``open_rest_side``, ``parent_dir_error`` -- the REST options of
  one archive (``source`` or ``target``) as dicom_reconcile and pacs_migrate take them, checked before any
  request, and the inventory they open; ``inventories(source, target)`` lists both at once.
* ``reconcile(source, target, ...)`` -- the comparison: missing, extra, misfiled and differing
  instances, per-series counts, the discrepancy rates per instance and per study, every
  discrepancy by UID with the patient identifier masked.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import random
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from ansible.module_utils.orthanc_rest import OrthancError, ca_path_error, normalise_url

try:
    from pydicom import dcmread
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.tag import Tag

    HAS_PYDICOM = True
except ImportError:  # pragma: no cover - the module reports the missing library
    HAS_PYDICOM = False

PAGE = 1000
MASK = "***"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
#: Transfer syntaxes offered for the instances a C-GET brings back: an archive sends each as it
#: stores it when it may, so two archives holding the same file send the same dataset.
RETRIEVE_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
]
#: The image storage SOP classes offered for a C-GET when neither archive said an instance's class in
#: its C-FIND answer (SOP Class UID is optional at IMAGE level): 10 classes x 12 syntaxes + 1 < 128 contexts.
COMMON_STORAGE_CLASSES = [
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.4",  # MR
    "1.2.840.10008.5.1.4.1.1.1",  # CR
    "1.2.840.10008.5.1.4.1.1.1.1",  # DX
    "1.2.840.10008.5.1.4.1.1.6.1",  # US
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.1.2",  # MG
    "1.2.840.10008.5.1.4.1.1.20",  # NM
    "1.2.840.10008.5.1.4.1.1.128",  # PET
    "1.2.840.10008.5.1.4.1.1.12.1",  # XA
]


# --------------------------------------------------------------------------- REST, kept alive


class RestPool:
    """Keep-alive connections to one Orthanc REST API, one per thread."""

    def __init__(self, url, username=None, password=None, validate_certs=True, ca_path=None, timeout=30.0,
                 option="url"):  # fmt: skip
        parts = urlsplit(url)
        self.url = url
        self.option = option
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.headers = {"Connection": "keep-alive"}
        if username is not None:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self.username = username
        self.context = None
        if self.scheme == "https":
            self.context = ssl.create_default_context(cafile=ca_path)
            if not validate_certs:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE
        self.local = threading.local()

    def _connection(self):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            if self.scheme == "https":
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.local.conn = conn
        return conn

    def _drop(self):
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()
        self.local.conn = None

    def request(self, method, path, body=None, accept="application/json", content_type=None, retries=2):
        """(status, body bytes) of METHOD on PATH; a 404 is returned, other failures raise OrthancError."""
        headers = dict(self.headers, Accept=accept)
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in range(retries + 1):
            conn = self._connection()
            try:
                conn.request(method, self.prefix + path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except ConnectionRefusedError:
                self._drop()
                raise OrthancError(
                    f"connection refused by {self.url}: nothing listens there; check {self.option} (host and "
                    "port) and that Orthanc is running"
                ) from None
            except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
                # A kept-alive connection the server closed meanwhile: open a new one and ask again.
                self._drop()
                if attempt < retries:
                    continue
                raise OrthancError(f"{self.url}{path}: no answer ({type(exc).__name__}: {exc})") from None
            except ssl.SSLError as exc:
                self._drop()
                raise OrthancError(f"TLS error talking to {self.url}: {exc}; check {self.option}") from None
            except OSError as exc:
                self._drop()
                raise OrthancError(f"cannot reach {self.url}: {exc}; check {self.option}") from None
            if resp.getheader("Connection", "").lower() == "close":
                self._drop()
            if resp.status == 401:
                raise OrthancError(
                    f"{self.url}{path} answered 401 Unauthorized: "
                    + ("wrong credentials; check the user and password" if self.username is not None
                       else "the server requires authentication; set the user and password")
                )  # fmt: skip
            if resp.status == 404:
                return 404, data
            if resp.status >= 400:
                raise OrthancError(f"{self.url}{path} answered HTTP {resp.status} {data[:200]!r}")
            return resp.status, data
        raise AssertionError("unreachable")  # pragma: no cover

    def get_json(self, path):
        status, data = self.request("GET", path)
        if status == 404:
            raise OrthancError(f"{self.url}{path} answered 404 Not Found: is {self.option} an Orthanc REST API?")
        try:
            return json.loads(data)
        except ValueError:
            raise OrthancError(f"{self.url}{path} did not answer with JSON: is {self.option} Orthanc?") from None

    def get_bytes(self, path):
        """The body, or None for a 404."""
        status, data = self.request("GET", path, accept="*/*")
        return None if status == 404 else data

    def post(self, path, body, content_type="application/octet-stream"):
        status, data = self.request("POST", path, body=body, content_type=content_type)
        if status == 404:
            raise OrthancError(f"{self.url}{path} answered 404 Not Found")
        return json.loads(data) if data else None

    def delete(self, path):
        self.request("DELETE", path)

    def close(self):
        self._drop()


# --------------------------------------------------------------------------- one archive's REST options


def rest_side_spec(timeout: float, url_required: bool = False) -> dict:
    """The REST suboptions of one archive (``source`` or ``target``)."""
    return {
        "url": {"type": "str", "required": url_required},
        "username": {"type": "str"},
        "password": {"type": "str", "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "timeout": {"type": "float", "default": timeout},
    }


def rest_side_error(opts: dict, side: str):
    """What is wrong with one archive's REST options (named ``side.option``), else None."""
    try:
        normalise_url(opts["url"], f"{side}.url")
    except OrthancError as exc:
        return str(exc)
    if opts["password"] is not None and opts["username"] is None:
        return f"{side}.password is set but {side}.username is not; set both or neither"
    return ca_path_error(opts["ca_path"], f"{side}.ca_path") or timeout_error(opts, side)


def timeout_error(opts: dict, side: str):
    if not 0 < opts["timeout"] <= 3600:
        return f"{side}.timeout must be more than 0 and at most 3600 seconds"
    return None


def parent_dir_error(path, option: str):
    """A file option whose directory does not exist (checked before any work), else None."""
    if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        return f"{option}: the directory of {path} does not exist; create it or choose another path"
    return None


def open_rest_side(opts: dict, side: str, workers: int) -> OrthancInventory:
    """The inventory of one archive over REST, from options rest_side_error accepted."""
    pool = RestPool(normalise_url(opts["url"], f"{side}.url"), opts["username"], opts["password"],
                    opts["validate_certs"], opts["ca_path"], opts["timeout"], option=f"{side}.url")  # fmt: skip
    return OrthancInventory(pool, workers)


def inventories(source, target):
    """Both archives listed at the same time: (source inventory, target inventory)."""
    with ThreadPoolExecutor(2) as pool:
        src, tgt = pool.submit(source.inventory), pool.submit(target.inventory)
        return src.result(), tgt.result()


# --------------------------------------------------------------------------- inventories


class Inventory:
    """What an archive holds: studies -> series -> instance keys, and each key's place."""

    def __init__(self, key_kind):
        self.key_kind = key_kind  # "orthanc-id" or "sop-instance-uid"
        self.studies = {}  # study_uid -> {"patient_id": str, "series": {series_uid: set(keys)}}
        self.where = {}  # key -> (study_uid, series_uid)
        self.sop_class = {}  # key -> SOP Class UID, where the archive said it

    def add(self, study_uid, series_uid, key, patient_id=""):
        study = self.studies.setdefault(study_uid, {"patient_id": patient_id, "series": {}})
        study["series"].setdefault(series_uid, set()).add(key)
        self.where[key] = (study_uid, series_uid)

    def add_series(self, study_uid, series_uid, patient_id=""):
        study = self.studies.setdefault(study_uid, {"patient_id": patient_id, "series": {}})
        study["series"].setdefault(series_uid, set())

    def counts(self):
        return {
            "studies": len(self.studies),
            "series": sum(len(s["series"]) for s in self.studies.values()),
            "instances": len(self.where),
        }


def _paged(pool, path):
    since = 0
    while True:
        page = pool.get_json(f"{path}?expand&since={since}&limit={PAGE}")
        if not isinstance(page, list):
            raise OrthancError(f"{pool.url}{path} answered, but not with a list: is {pool.option} Orthanc?")
        yield from page
        if len(page) < PAGE:
            return
        since += PAGE


class OrthancInventory:
    kind = "rest"

    def __init__(self, pool, workers=8):
        self.pool = pool
        self.workers = workers

    def inventory(self):
        inv = Inventory("orthanc-id")
        studies = {}
        for study in _paged(self.pool, "/studies"):
            tags = study.get("MainDicomTags") or {}
            patient = (study.get("PatientMainDicomTags") or {}).get("PatientID", "")
            studies[study["ID"]] = (tags.get("StudyInstanceUID", ""), patient)
        for series in _paged(self.pool, "/series"):
            study_uid, patient = studies.get(series.get("ParentStudy"), ("", ""))
            series_uid = (series.get("MainDicomTags") or {}).get("SeriesInstanceUID", "")
            inv.add_series(study_uid, series_uid, patient)
            for key in series.get("Instances") or []:
                inv.add(study_uid, series_uid, key, patient)
        return inv

    def sop_instance_uids(self, keys):
        """{key: SOP Instance UID} of these instances (all of them paged when there are many)."""
        keys = list(keys)
        if len(keys) > 2 * PAGE:
            wanted = set(keys)
            return {
                item["ID"]: (item.get("MainDicomTags") or {}).get("SOPInstanceUID", "")
                for item in _paged(self.pool, "/instances")
                if item["ID"] in wanted
            }

        def one(key):
            status, data = self.pool.request("GET", f"/instances/{key}")
            if status == 404:
                return key, ""
            return key, (json.loads(data).get("MainDicomTags") or {}).get("SOPInstanceUID", "")

        with ThreadPoolExecutor(self.workers) as pool:
            return dict(pool.map(one, keys))

    def file_digest(self, key):
        """The MD5 Orthanc recorded of the stored file (uncompressed), else the MD5 of the file read back."""
        status, data = self.pool.request("GET", f"/instances/{key}/attachments/dicom/uncompressed-md5", accept="*/*")
        if status != 404 and data:
            return data.decode().strip().strip('"')
        content = self.pool.get_bytes(f"/instances/{key}/file")
        return None if content is None else hashlib.md5(content).hexdigest()  # noqa: S324 - Orthanc's own checksum

    def dataset_digest(self, key, ignore, sop_class=None):  # noqa: ARG002 - the file says its class
        content = self.pool.get_bytes(f"/instances/{key}/file")
        return None if content is None else dataset_digest(dcmread(io.BytesIO(content)), ignore)

    def close(self):
        self.pool.close()


class DicomInventory:
    kind = "dicom"

    def __init__(self, client_factory, workers=4):
        """client_factory() gives a new dicom_client.DicomClient (one per association)."""
        self.client_factory = client_factory
        self.workers = workers
        self.sop_classes = set()

    # One association per C-FIND, as DCMTK's findscu does. Reusing one association for the next query
    # lost an answer now and then under load (against DCMTK dcmqrscp, an IMAGE query answering 1 of its
    # 2 instances with a final Success; docs/migration.md). An inventory that silently
    # misses instances would hide a discrepancy, so the few milliseconds per association are paid.
    def _associate(self):
        from pynetdicom import build_context

        client = self.client_factory()
        assoc, _ = client.associate([build_context(STUDY_ROOT_FIND, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])])
        return assoc

    def find(self, level, **keys):
        from ansible.module_utils.dicom_client import REASON_DIMSE_FAILURE, DicomError

        ident = Dataset()
        ident.QueryRetrieveLevel = level
        for keyword, value in keys.items():
            setattr(ident, keyword, value)
        assoc = self._associate()
        out, final = [], None
        try:
            for status, answer in assoc.send_c_find(ident, STUDY_ROOT_FIND):
                code = getattr(status, "Status", None)
                if code is None:
                    raise DicomError(REASON_DIMSE_FAILURE, f"C-FIND at {level} level got no answer (association lost)")
                if code in (0xFF00, 0xFF01):
                    if answer is None:
                        raise DicomError(REASON_DIMSE_FAILURE, f"C-FIND at {level} level: a match could not be decoded")
                    out.append(answer)
                else:
                    final = code
        finally:
            if assoc.is_established:
                assoc.release()
        if final != 0x0000:
            raise DicomError(REASON_DIMSE_FAILURE, f"C-FIND at {level} level failed with status 0x{final:04X}")
        return out

    def inventory(self):
        inv = Inventory("sop-instance-uid")
        studies = [
            (str(a.get("StudyInstanceUID", "")), str(a.get("PatientID", "")))
            for a in self.find("STUDY", StudyInstanceUID="", PatientID="")
        ]

        def series_of(study):
            study_uid, patient = study
            found = []
            for series in self.find("SERIES", StudyInstanceUID=study_uid, SeriesInstanceUID=""):
                series_uid = str(series.get("SeriesInstanceUID", ""))
                images = self.find(
                    "IMAGE", StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid, SOPInstanceUID="", SOPClassUID=""
                )
                found.append((series_uid, [(str(i.get("SOPInstanceUID", "")), str(i.get("SOPClassUID", "")))
                                           for i in images]))  # fmt: skip
            return study_uid, patient, found

        with ThreadPoolExecutor(self.workers) as pool:
            for study_uid, patient, found in pool.map(series_of, studies):
                for series_uid, images in found:
                    inv.add_series(study_uid, series_uid, patient)
                    for sop_uid, sop_class in images:
                        inv.add(study_uid, series_uid, sop_uid, patient)
                        if sop_class:
                            inv.sop_class[sop_uid] = sop_class
        self.inv = inv
        return inv

    def sop_instance_uids(self, keys):
        return {key: key for key in keys}

    def file_digest(self, key):  # noqa: ARG002 - the same interface as OrthancInventory
        return None  # a C-GET gives the dataset, never the stored file

    def dataset_digest(self, key, ignore, sop_class=None):
        """The dataset digest of one instance retrieved with C-GET (sop_class: what either archive said)."""
        from pynetdicom import build_context, build_role, evt

        study_uid, series_uid = self.inv.where[key]
        classes = [sop_class] if sop_class else COMMON_STORAGE_CLASSES
        received = []

        def on_store(event):
            ds = event.dataset
            ds.file_meta = event.file_meta
            received.append(ds)
            return 0x0000

        client = self.client_factory()
        contexts = [build_context(STUDY_ROOT_GET, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])]
        contexts += [build_context(uid, [ts]) for uid in classes for ts in RETRIEVE_TRANSFER_SYNTAXES]
        assoc, _ = client.associate(
            contexts, ext_neg=[build_role(uid, scp_role=True) for uid in classes],
            evt_handlers=[(evt.EVT_C_STORE, on_store)],
        )  # fmt: skip
        try:
            ident = Dataset()
            ident.QueryRetrieveLevel = "IMAGE"
            ident.StudyInstanceUID, ident.SeriesInstanceUID, ident.SOPInstanceUID = study_uid, series_uid, key
            for _status, _answer in assoc.send_c_get(ident, STUDY_ROOT_GET):
                pass
        finally:
            assoc.release()
        return dataset_digest(received[0], ignore) if received else None

    def close(self):
        """Nothing stays open: every association is released after its query or retrieval."""


# --------------------------------------------------------------------------- comparison


def parse_ignore(values):
    """Tags (ints) of the attributes a dataset comparison leaves out: keywords or (gggg,eeee)."""
    tags = set()
    for value in values or []:
        text = str(value).strip()
        try:
            if text.startswith("(") or "," in text:
                group, element = text.strip("()").split(",")
                tags.add(int(Tag(int(group, 16), int(element, 16))))
            else:
                tags.add(int(Tag(text)))
        except (ValueError, TypeError):
            raise ValueError(
                f"ignore_attributes: {value!r} is neither a DICOM keyword (StationName) nor a tag ((0008,1010))"
            ) from None
    return tags


def dataset_digest(ds, ignore=frozenset()):
    """sha256 of a dataset's elements, explicit VR little endian, without the file meta group and the ignored tags."""
    copy = Dataset()
    for elem in ds:
        if elem.tag.group == 0x0002 or int(elem.tag) in ignore:
            continue
        copy.add(elem)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, copy)
    return hashlib.sha256(fp.getvalue()).hexdigest()


def sample_studies(study_uids, size, seed=""):
    """A reproducible sample of studies (all of them when there are no more than size)."""
    ordered = sorted(study_uids)
    if size >= len(ordered):
        return ordered
    return sorted(random.Random(f"reconcile/{seed}").sample(ordered, size))  # noqa: S311 - a sample, not a secret


def reconcile(source, target, *, sample_size=500, seed="", deep_check="file", ignore=frozenset(), workers=8,
              max_percent=1.0):  # fmt: skip
    """Compare two archives (OrthancInventory or DicomInventory each); the dict dicom_reconcile returns."""
    started = time.monotonic()
    src, tgt = inventories(source, target)
    inventoried = time.monotonic()
    src_keys, tgt_keys = set(src.where), set(tgt.where)
    missing = src_keys - tgt_keys
    extra = tgt_keys - src_keys
    misfiled = {k for k in src_keys & tgt_keys if src.where[k] != tgt.where[k]}

    # Per series: the number of instances on each side (a series absent on one side counts 0 there).
    series_counts = []
    for study_uid in sorted(set(src.studies) | set(tgt.studies)):
        src_series = (src.studies.get(study_uid) or {}).get("series", {})
        tgt_series = (tgt.studies.get(study_uid) or {}).get("series", {})
        for series_uid in sorted(set(src_series) | set(tgt_series)):
            a, b = len(src_series.get(series_uid, ())), len(tgt_series.get(series_uid, ()))
            if a != b:
                series_counts.append({"study_instance_uid": study_uid, "series_instance_uid": series_uid,
                                      "source_instances": a, "target_instances": b})  # fmt: skip

    # Deep check: the content of every instance both hold, in a sample of the studies both hold.
    differing, compared, unreadable = [], 0, []
    sampled = []
    if deep_check != "none" and sample_size > 0:
        sampled = sample_studies(set(src.studies) & set(tgt.studies), sample_size, seed)
        keys = [
            k for study_uid in sampled for series in src.studies[study_uid]["series"].values()
            for k in sorted(series) if k in tgt_keys and k not in misfiled
        ]  # fmt: skip

        def digests(key):
            if deep_check == "file":
                return key, source.file_digest(key), target.file_digest(key)
            sop_class = src.sop_class.get(key) or tgt.sop_class.get(key)
            return key, source.dataset_digest(key, ignore, sop_class), target.dataset_digest(key, ignore, sop_class)

        with ThreadPoolExecutor(workers) as pool:
            for key, a, b in pool.map(digests, keys):
                if a is None or b is None:
                    unreadable.append(key)
                elif a != b:
                    differing.append((key, a, b))
                compared += 1
    checked = time.monotonic()

    # Every discrepancy by UID; the SOP Instance UIDs of Orthanc ids are read from the side that has them.
    src_uids = source.sop_instance_uids(missing | misfiled | {k for k, _, _ in differing} | set(unreadable))
    tgt_uids = target.sop_instance_uids(extra)

    def entry(inv, key, uids, **more):
        study_uid, series_uid = inv.where[key]
        out = {"sop_instance_uid": uids.get(key, ""), "series_instance_uid": series_uid,
               "study_instance_uid": study_uid, "patient_id": MASK if inv.studies[study_uid]["patient_id"] else ""}
        if inv.key_kind == "orthanc-id":
            out["orthanc_id"] = key
        out.update(more)
        return out  # fmt: skip

    listed = {
        "missing": sorted((entry(src, k, src_uids) for k in missing), key=_order),
        "extra": sorted((entry(tgt, k, tgt_uids) for k in extra), key=_order),
        "misfiled": sorted(
            (entry(src, k, src_uids, target_study_instance_uid=tgt.where[k][0],
                   target_series_instance_uid=tgt.where[k][1]) for k in misfiled), key=_order),
        "differing": sorted(
            (entry(src, k, src_uids, source_digest=a, target_digest=b) for k, a, b in differing), key=_order),
        "unreadable": sorted((entry(src, k, src_uids) for k in unreadable), key=_order),
    }  # fmt: skip
    bad_studies = {e["study_instance_uid"] for name in listed for e in listed[name]}
    bad_studies |= {e["study_instance_uid"] for e in series_counts}
    instances = len(src_keys)
    bad_instances = sum(len(v) for v in listed.values())
    studies = len(src.studies)
    rates = {
        "instance_percent": _percent(bad_instances, instances),
        "study_percent": _percent(len(bad_studies), studies),
    }
    rate = max(rates.values())
    return {
        "method": source.kind,
        "source": src.counts(),
        "target": tgt.counts(),
        "discrepancies": {
            "missing_instances": len(missing),
            "extra_instances": len(extra),
            "misfiled_instances": len(misfiled),
            "differing_instances": len(differing),
            "unreadable_instances": len(unreadable),
            "series_with_other_counts": len(series_counts),
            "studies_with_discrepancies": len(bad_studies),
        },
        "discrepancy_percent": rates,
        "discrepancy_rate": rate,
        "max_discrepancy_percent": max_percent,
        "passed": rate <= max_percent,
        **listed,
        "series_counts": series_counts,
        "deep_check": {
            "method": deep_check,
            "studies_sampled": len(sampled),
            "instances_compared": compared,
            "sample_size": sample_size,
            "seed": seed,
            "ignored_attributes": [f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in sorted(ignore)],
        },
        "timings_s": {
            "inventory": round(inventoried - started, 2),
            "deep_check": round(checked - inventoried, 2),
            "total": round(time.monotonic() - started, 2),
        },
    }


def _order(entry):
    return (entry["study_instance_uid"], entry["series_instance_uid"], entry["sop_instance_uid"])


def _percent(part, whole):
    if whole == 0:
        return 0.0 if part == 0 else 100.0
    return round(100.0 * part / whole, 4)
