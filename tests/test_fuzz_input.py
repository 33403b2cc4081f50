"""Fuzz test: random header mutations and byte truncations of a valid DICOM study.

A fixed seed draws a bounded number of mutations (each on a fresh copy of a small valid study:
real DICOM T1 and T2 written with pydicom, and its exact label map) and runs ``modicseg analyze``
on each, within a wall-clock budget.  Whatever the mutation, the run must end with exit 0 or 2,
never a traceback or an internal error; a refusal is one ``error:`` line and writes nothing; memory
stays far below 1 GB; and a mutation that corrupts pixel data (a truncated file, a declared size
that no longer matches the pixel data, an invalid bit layout) must never end with exit 0 and a
verdict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.hostile import MEMORY_LIMIT, clone, edit, make_base, run_cli, series_files, snapshot

SEED = 20260716
MUTATIONS = 70
BUDGET_S = 30.0  # wall clock for all mutations; at least MIN_RUNS must fit
MIN_RUNS = 30

#: Attribute -> candidate values (None deletes it).  "@" marks values that corrupt the pixel data
#: layout: the run must then be refused.
HEADER_VALUES: dict[str, list] = {
    "Rows": ["@0", "@1", "@-1", "@+1", "@x2", "@65535"],
    "Columns": ["@0", "@1", "@-1", "@+1", "@x2", "@65535"],
    "BitsAllocated": ["@1", "@8", "@12", "@32", "@64"],
    "BitsStored": ["@0", "@17", "@99", 12, 16],
    "HighBit": ["@20", "@0", 15],
    "PixelRepresentation": ["@2", 0],
    "SamplesPerPixel": ["@0", "@2", "@3"],
    "NumberOfFrames": ["@0", "@2", "@1000", "@20000000"],
    "ImagePositionPatient": [None, [0, 0, 0], [1e9, 0, 0], ["x", "y", "z"], [0, 0]],
    "ImageOrientationPatient": [None, [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0.5, -1], [1, 0, 0]],
    "PixelSpacing": [None, [0, 0], [-1, 1], [1e6, 1e6], ["a", "b"], [1.6]],
    "RescaleSlope": ["0", "-1", "1e30", "abc"],
    "RescaleIntercept": ["1e30", "-1e6", "abc"],
    "SeriesInstanceUID": ["new"],
    "SOPClassUID": ["1.2.840.10008.5.1.4.1.1.2", "1.2.3"],
    "Modality": ["CT", ""],
    "PhotometricInterpretation": ["RGB", "PALETTE COLOR", "MONOCHROME1", ""],
    "EchoTime": [0, 1e9, "abc", None],
    "RepetitionTime": [0, -5, None],
    "SliceThickness": [0, -5, None],
    "InstanceNumber": [-7, 99999, None],
    "SeriesDescription": ["", "LOCALIZER", "x" * 200],
    "ImageType": [["DERIVED", "SECONDARY", "LOCALIZER"], ["ORIGINAL", "PRIMARY", "MOSAIC"]],
    "TransferSyntaxUID": ["1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.5",
                          "1.2.840.10008.1.2.4.50", "1.2.3.4"],
    "PixelData": ["@short"],
}


@dataclass
class Mutation:
    kind: str  # "header", "truncate"
    file: Path
    detail: str
    corrupts_pixels: bool


def _apply_header(path: Path, keyword: str, value, rng: np.random.Generator) -> tuple[str, bool]:
    ds = pydicom.dcmread(path)
    corrupt = isinstance(value, str) and value.startswith("@")
    if keyword == "TransferSyntaxUID":
        ds.file_meta.TransferSyntaxUID = value
        ds.save_as(path)  # pydicom writes the data set in the new syntax's encoding when it can
        return f"TransferSyntaxUID={value}", False
    if keyword == "PixelData":
        data = ds.PixelData
        ds.PixelData = data[: int(rng.integers(0, len(data) // 2)) * 2]
        ds.save_as(path)
        return "PixelData shortened", True
    if corrupt:
        current = int(ds.get(keyword, 1) or 1)
        text = value[1:]
        new = {"-1": current - 1, "+1": current + 1, "x2": current * 2}.get(text)
        value = int(text) if new is None else new
        corrupt = value != current
    if value == "new":
        value = generate_uid()
    edit(path, **{keyword: value})
    return f"{keyword}={value!r:.40}", corrupt


def draw_mutations(base: Path, rng: np.random.Generator, n: int) -> list[tuple]:
    """(kind, series, file index, attribute, value or cut fraction) for ``n`` mutations."""
    counts = {s: len(series_files(base / "study" / s)) for s in ("t1", "t2")}
    drawn = []
    keywords = sorted(HEADER_VALUES)
    for _ in range(n):
        series = str(rng.choice(["t1", "t2"]))
        index = int(rng.integers(0, counts[series]))
        if rng.random() < 0.25:
            drawn.append(("truncate", series, index, None, float(rng.random())))
        else:
            keyword = keywords[int(rng.integers(0, len(keywords)))]
            values = HEADER_VALUES[keyword]
            drawn.append(("header", series, index, keyword, values[int(rng.integers(0, len(values)))]))
    return drawn


def mutate(root: Path, spec: tuple, rng: np.random.Generator) -> Mutation:
    kind, series, index, keyword, value = spec
    path = series_files(root / "study" / series)[index]
    if kind == "truncate":
        data = path.read_bytes()
        cut = int(value * (len(data) - 1))
        path.write_bytes(data[:cut])
        return Mutation(kind, path, f"cut at {cut} of {len(data)} bytes", True)
    detail, corrupt = _apply_header(path, keyword, value, rng)
    return Mutation(kind, path, detail, corrupt)


@pytest.mark.timeout(180)
def test_fuzzed_studies_never_crash_hang_or_give_a_verdict_on_corrupt_pixels(tmp_path_factory) -> None:
    base = make_base(tmp_path_factory.mktemp("fuzzbase"))
    rng = np.random.default_rng(SEED)
    specs = draw_mutations(base["root"], rng, MUTATIONS)
    started = time.perf_counter()
    outcomes = {"refused": 0, "analysed": 0, "corrupting": 0}
    worst_peak = 0
    failures = []
    for number, spec in enumerate(specs):
        if time.perf_counter() - started > BUDGET_S:
            break
        work = tmp_path_factory.mktemp(f"fuzz{number:03d}")
        root = clone(base["root"], work / "case")
        try:
            mutation = mutate(root, spec, rng)
        except (ValueError, TypeError, OverflowError, AttributeError) as exc:
            # pydicom refused to write that value (e.g. a non-numeric IS): nothing to test
            outcomes.setdefault("not writable", 0)
            outcomes["not writable"] += 1
            _ = exc
            continue
        out = root / "out"
        before = snapshot(work)
        run = run_cli(["analyze", root / "study", "--labels", root / "labels.nii.gz", "-o", out, "--no-qc",
                       "--no-seg"], measure="rss")
        worst_peak = max(worst_peak, run.peak_bytes)
        what = f"#{number} {mutation.kind} {mutation.file.parent.name}/{mutation.file.name}: {mutation.detail}"
        outcomes["corrupting"] += mutation.corrupts_pixels
        if run.rc not in (0, 2) or "Traceback" in run.err:
            failures.append(f"{what}: exit {run.rc}\n{run.err[-2000:]}")
            continue
        if run.rc == 2:
            outcomes["refused"] += 1
            if len(run.error_lines) != 1 or out.exists() or snapshot(work) != before:
                failures.append(f"{what}: refusal not clean: {run.err[-800:]}")
        else:
            outcomes["analysed"] += 1
            if mutation.corrupts_pixels:
                failures.append(f"{what}: exit 0 with a verdict from corrupted pixel data:\n{run.out[-600:]}")
            elif "eligibility:" not in run.out or not (out / "report.json").is_file():
                failures.append(f"{what}: exit 0 without a report")
        if run.peak_bytes >= MEMORY_LIMIT:
            failures.append(f"{what}: memory grew by {run.peak_bytes / 2**20:.0f} MB")
    runs = outcomes["refused"] + outcomes["analysed"]
    elapsed = time.perf_counter() - started
    print(f"\nfuzz: seed {SEED}, {runs} runs in {elapsed:.1f} s: {outcomes}; worst memory growth "
          f"{worst_peak / 2**20:.0f} MB")
    assert not failures, "\n\n".join(failures)
    assert runs >= MIN_RUNS
    assert outcomes["refused"] > 0 and outcomes["analysed"] > 0  # both paths exercised
