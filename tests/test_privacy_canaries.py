"""Canaries in every identifying attribute of DICOM PS3.15 Table E.1-1, at the top level and nested,
and a search of every output of modicseg for them.

The study: a classic T1 series and an Enhanced MR T2 object (real files written with pydicom).
Every file carries a distinct canary value in every Table E.1-1 attribute (``modicseg.privacy``)
that modicseg does not retain on purpose, top level and inside sequence items (items of the
table's own sequences, ContributingEquipmentSequence, and the per-frame functional groups of the
enhanced object).  Then inspect, convert, analyze (QC figure and DICOM SEG), a reading package
and a batch run over it, and no output holds any canary: not the files (JSON, CSV, NIfTI headers
and extensions, SEG, PNG text chunks, SQLite), not their names, not stdout, stderr or the log.
"""

from __future__ import annotations

import datetime
import gzip
import logging
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from modicseg.io.dicom_write import SeriesSpec, write_mr_series
from modicseg.privacy import RETAINED, TABLE_E1_1
from modicseg.report.dicom_seg import SEG_PATIENT_STUDY_IDENTIFIERS
from tests.dicom_factory import T1_SERIES, T2_SERIES, canary_study
from tests.hostile import make_base, run_cli

pytestmark = pytest.mark.timeout(180)

#: Never given a canary: PatientSex must be M, F or O (highdicom checks it when it builds the SEG);
#: binary VRs cannot hold a searchable text.
NOT_CANARIED = {"PatientSex"}
TEXT_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "UC", "CS", "AE", "DA", "TM", "DT", "DS", "AS", "UI", "IS", "UR"}


def _vr(keyword: str) -> str:
    return dictionary_VR(tag_for_keyword(keyword))


class Canaries:
    """Distinct, searchable canary values by VR; remembers every value handed out."""

    def __init__(self) -> None:
        self.n = 0
        self.values: list[str] = []

    def __call__(self, vr: str) -> str:
        self.n += 1
        n = self.n
        value = {
            "PN": f"CANARY^PN{n:04d}", "CS": f"CANARYCS{n:04d}", "AE": f"CANARYAE{n:04d}",
            "DA": (datetime.date(1901, 1, 1) + datetime.timedelta(days=n)).strftime("%Y%m%d"),
            "TM": f"01{n // 60 % 60:02d}{n % 60:02d}.313370",
            "DT": (datetime.date(1902, 1, 1) + datetime.timedelta(days=n)).strftime("%Y%m%d") + "013713.313370",
            "DS": f"31.337{n:04d}", "IS": f"31337{n:04d}", "AS": f"{n % 1000:03d}Y",
            "UI": f"1.2.826.0.1.3680043.8.498.31337.{n}", "UR": f"http://canary.invalid/{n}",
        }.get(vr, f"CANARY-{vr}-{n:04d}")
        if vr != "AS":  # a 4-character age is too short to search in binary files
            self.values.append(value)
        return value

    def item(self) -> Dataset:
        """A sequence item holding identifying attributes."""
        item = Dataset()
        for keyword in ("PatientName", "PatientID", "InstitutionName", "PersonName", "StationName",
                        "AccessionNumber", "StudyDate"):
            setattr(item, keyword, self(_vr(keyword)))
        return item


def plant(ds: Dataset, canaries: Canaries) -> None:
    """Canaries in every Table E.1-1 attribute that is not retained on purpose, and nested ones."""
    for keyword in TABLE_E1_1:
        if keyword in RETAINED or keyword in NOT_CANARIED or tag_for_keyword(keyword) >> 16 in (0x0000, 0x0002):
            continue  # group 0000 is the command set of network messages, 0002 the file meta information
        vr = _vr(keyword)
        if vr == "SQ":
            setattr(ds, keyword, Sequence([canaries.item()]))
        elif vr in TEXT_VRS:
            setattr(ds, keyword, canaries(vr))
    equipment = Dataset()
    equipment.Manufacturer = "modicseg"
    for keyword in ("InstitutionName", "InstitutionAddress", "StationName", "InstitutionalDepartmentName",
                    "DeviceSerialNumber", "OperatorsName"):
        setattr(equipment, keyword, canaries(_vr(keyword)))
    ds.ContributingEquipmentSequence = Sequence([equipment])
    for frame in ds.get("PerFrameFunctionalGroupsSequence") or []:
        frame.FrameContentSequence[0].FrameComments = canaries("LT")
        frame.ReferencedImageSequence = Sequence([canaries.item()])
    for shared in ds.get("SharedFunctionalGroupsSequence") or []:
        shared.FrameAnatomySequence = Sequence([canaries.item()])


def _texts(folder: Path) -> list[tuple[str, bytes]]:
    """(where, bytes) for every file name and content under ``folder``: gzip streams (NIfTI) and
    compressed PNG text chunks (zTXt, iTXt) decompressed, so that nothing hides from the search."""
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        found.append((f"{folder.name}/{rel} (name)", rel.encode()))
        if not path.is_file():
            continue
        data = path.read_bytes()
        found.append((f"{folder.name}/{rel}", data))
        if data[:2] == b"\x1f\x8b":
            found.append((f"{folder.name}/{rel} (gunzipped)", gzip.decompress(data)))
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            found.extend((f"{folder.name}/{rel} ({kind} chunk)", text) for kind, text in _png_text(data))
    return found


def _png_text(data: bytes) -> list[tuple[str, bytes]]:
    out, pos = [], 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8].decode("latin-1")
        body = data[pos + 8:pos + 8 + length]
        if kind == "tEXt":
            out.append((kind, body))
        elif kind == "zTXt":
            key, _, rest = body.partition(b"\0")
            out.append((kind, key + b" " + zlib.decompress(rest[1:])))
        elif kind == "iTXt":
            key, _, rest = body.partition(b"\0")
            compressed = rest[:1] == b"\x01"
            text = rest[2:].split(b"\0", 2)[-1]
            out.append((kind, key + b" " + (zlib.decompress(text) if compressed else text)))
        pos += 12 + length
    return out


def hits(canaries: list[str], sources: list[tuple[str, bytes]]) -> list[str]:
    """'value in where' for every canary found in any source (case-insensitive).

    Every canary contains a marker (see Canaries: "canary", "31337", or the year of a date), so a
    text without any marker is skipped: that makes thousands of canaries cheap to search for."""
    markers = {b"canary", b"31337", b"31.337", b"313370"} | {v[:4].encode() for v in canaries if v[:2] == "19"}
    assert all(any(m in value.lower().encode() for m in markers) for value in canaries)
    found = []
    for where, data in sources:
        data = data.lower()
        if any(marker in data for marker in markers):
            found += [f"{value!r} in {where}" for value in canaries if value.lower().encode() in data]
    return found


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("privacy")
    base = make_base(root / "base")
    study = root / "study"
    phantom = base["phantom"]
    spec = canary_study()
    write_mr_series(phantom.t1, study / "t1", SeriesSpec(series_number=3, **T1_SERIES), spec)
    write_mr_series(phantom.t2, study / "t2", SeriesSpec(series_number=4, enhanced=True, **T2_SERIES), spec)
    canaries = Canaries()
    for path in sorted(study.rglob("*")):
        if path.is_file():
            ds = pydicom.dcmread(path)
            plant(ds, canaries)
            ds.save_as(path)
    return {"root": root, "study": study, "labels": base["labels"], "canaries": canaries.values}


def test_every_output_is_free_of_table_e1_canaries(planted, caplog) -> None:
    root, study, labels = planted["root"], planted["study"], planted["labels"]
    canaries = planted["canaries"]
    # the inputs really carry them, nested ones included
    raw = b"".join(p.read_bytes() for p in study.rglob("*") if p.is_file()).lower()
    assert all(value.lower().encode() in raw for value in canaries)
    assert len(canaries) > 250

    caplog.set_level(logging.DEBUG)
    sources: list[tuple[str, bytes]] = []
    runs = {
        "inspect": ["-v", "inspect", study],
        "inspect --json": ["-v", "inspect", study, "--json"],
        "convert": ["-v", "convert", study, "-o", root / "convert", "--t1-on-t2-grid"],
        "convert --all": ["-v", "convert", study, "-o", root / "convert_all", "--all"],
        "analyze": ["-v", "analyze", study, "--labels", labels, "-o", root / "analysis"],
    }
    for name, argv in runs.items():
        run = run_cli(argv, measure="rss")
        assert run.rc == 0, (name, run.err)
        sources += [(f"{name} stdout", run.out.encode()), (f"{name} stderr", run.err.encode())]
    (root / "manifest.csv").write_text(f"subject,timepoint,path,labels\nP01,baseline,{study},{labels}\n")
    (root / "reading.csv").write_text(f"analysis,subject,timepoint,study\n{root / 'analysis'},P01,baseline,{study}\n")
    more = {
        "review pack": ["-v", "review", "pack", root / "reading.csv", "-o", root / "package", "--key",
                        root / "keys" / "key.json", "--seed", "3"],
        "batch": ["-v", "batch", root / "manifest.csv", "-o", root / "batch", "--workers", "0", "--no-progress"],
    }
    for name, argv in more.items():
        run = run_cli(argv, measure="rss")
        assert run.rc == 0, (name, run.err)
        sources += [(f"{name} stdout", run.out.encode()), (f"{name} stderr", run.err.encode())]
    sources.append(("log records", "\n".join(r.getMessage() for r in caplog.records).encode()))
    for folder in ("convert", "convert_all", "analysis", "package", "keys", "batch"):
        sources += _texts(root / folder)
    assert (root / "analysis" / "labels_seg.dcm").is_file() and (root / "analysis" / "qc.png").is_file()
    assert any((root / "batch").rglob("labels_seg.dcm"))
    found = hits(canaries, sources)
    print(f"\nprivacy: {len(canaries)} canaries, {len(sources)} output texts searched, {len(found)} hits")
    assert found == []


def test_seg_is_allow_listed_and_keeps_only_the_nine_identifiers_on_request(planted) -> None:
    root, study, labels, canaries = planted["root"], planted["study"], planted["labels"], planted["canaries"]
    out = root / "keep"
    run = run_cli(["analyze", study, "--labels", labels, "-o", out, "--no-qc", "--seg-keep-patient-identifiers"],
                  measure="rss")
    assert run.rc == 0, run.err
    source = pydicom.dcmread(next((study / "t2").iterdir()), stop_before_pixels=True)
    seg = pydicom.dcmread(out / "labels_seg.dcm")
    for keyword in SEG_PATIENT_STUDY_IDENTIFIERS:
        assert str(seg.get(keyword, "")) == str(source.get(keyword, "")), keyword
    kept = {str(source.get(k)) for k in SEG_PATIENT_STUDY_IDENTIFIERS if source.get(k)}
    assert {str(source.PatientName), str(source.AccessionNumber), str(source.ReferringPhysicianName)} <= kept
    seg_hits = hits([c for c in canaries if c not in kept], [("SEG", (out / "labels_seg.dcm").read_bytes())])
    assert seg_hits == []  # nothing beyond the nine: no comments, institution, station, nested items
    # the default SEG: the nine present and empty, the identity removed and how
    default = pydicom.dcmread(root / "analysis" / "labels_seg.dcm") if (root / "analysis").exists() else None
    if default is not None:
        assert all(str(default.get(k, "x")) == "" for k in SEG_PATIENT_STUDY_IDENTIFIERS)
        assert default.PatientIdentityRemoved == "YES"
        assert [item.CodeValue for item in default.DeidentificationMethodCodeSequence] == ["113100", "113110"]
        assert "ContributingEquipmentSequence" in default
        assert all("InstitutionName" not in item and "StationName" not in item
                   for item in default.ContributingEquipmentSequence)
    # the SEG still lines up with its source: referenced instances and frame of reference kept
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
