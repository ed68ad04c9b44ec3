#!/usr/bin/env python3
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Write a synthetic DICOM data set (no real patient data) and its manifest.json.

    tools/generate_studies.py --out build/synth --studies 20 --series 3 --instances 10 --size 64
    tools/generate_studies.py --out build/varied --studies 10 --series 4 --instances 5 --varied

Re-running with the same arguments gives the same UIDs and files (deterministic).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "plugins", "module_utils"))

import dicom_synth  # noqa: E402 - path set up above, module_utils is not an installed package


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument("--studies", type=_positive, default=20, help="number of studies (default 20)")
    parser.add_argument("--series", type=_positive, default=3, help="series per study (default 3)")
    parser.add_argument("--instances", type=_positive, default=10, help="instances per series (default 10)")
    parser.add_argument("--size", type=_positive, default=64, help="image rows and columns in pixels (default 64)")
    parser.add_argument("--patients", type=_positive, default=None, help="number of patients (default studies/2)")
    parser.add_argument(
        "--modality", choices=sorted(dicom_synth.VARIED_MODALITIES), default="CT",
        help="the modality of every study (OT is Secondary Capture; default CT)",
    )  # fmt: skip
    parser.add_argument(
        "--varied", action="store_true",
        help="a mixed archive: the studies cycle through CT, MR, CR, US and OT and their series through explicit "
        "and implicit VR little endian, deflated and RLE Lossless (compressed); --modality is not used",
    )  # fmt: skip
    parser.add_argument("--seed", default=dicom_synth.DEFAULT_SEED, help="UID/pixel seed (default: project seed)")
    args = parser.parse_args(argv)
    if args.size > 4096:
        parser.error("--size must be at most 4096")

    manifest = dicom_synth.generate_studies(
        args.out,
        studies=args.studies,
        series=args.series,
        instances=args.instances,
        size_px=args.size,
        patients=args.patients,
        seed=args.seed,
        modality=args.modality,
        varied=args.varied,
    )
    studies = {entry["study_uid"] for entry in manifest.values()}
    patients = {entry["patient_id"] for entry in manifest.values()}
    print(
        f"wrote {len(manifest)} instances in {len(studies)} studies for {len(patients)} patients to "
        f"{args.out} (manifest: {os.path.join(args.out, dicom_synth.MANIFEST_NAME)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
