"""The fast reader of plain classic MR files (``modicseg.io.fast_header``) against pydicom.

Every file the fast path accepts must give the very record (every field of ``FrameHeader``) and
the very pixels (values and dtype) that the pydicom path gives; files it does not understand must
be left to pydicom.  Material: the dcm2niix conformance set (../shared), the test suite's written
studies (sagittal T1 + T2 with rescale, localizer, axial series), 12-bit data with garbage in the
unused high bits, and files that are damaged after the header.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
import pytest

from modicseg.io.dicom_headers import frames_of
from modicseg.io.dicom_scan import read_header, walk_files
from modicseg.io.fast_header import fast_classic_frame, read_pixels
from modicseg.io.study import StudyRequest, open_study
from tests.dicom_factory import write_multi_series_study

IGNORED = ("dataset", "pixel_data")


def _compare(root: Path) -> tuple[int, int]:
    """(files, files read by the fast path); asserts equality with pydicom for the latter."""
    files = walk_files(root)[0]
    fast = 0
    for path in files:
        record = fast_classic_frame(path)
        if record is None:
            continue
        fast += 1
        ds = read_header(path)
        assert ds is not None
        [reference] = frames_of(ds, path)
        got = {k: v for k, v in dataclasses.asdict(record).items() if k not in IGNORED}
        want = {k: v for k, v in dataclasses.asdict(reference).items() if k not in IGNORED}
        assert got == want, path
        pixels, expected = read_pixels(record), ds.pixel_array
        assert pixels is not None and pixels.dtype == expected.dtype and np.array_equal(pixels, expected), path
    return len(files), fast


def test_fast_records_equal_pydicom_on_the_conformance_set(shared_dir) -> None:
    folder = shared_dir / "dicom-conformance"
    if not folder.is_dir():
        pytest.skip("../shared/dicom-conformance not found")
    files, fast = _compare(folder)
    assert fast >= 100 and files > fast  # classic files fast; enhanced, compressed, big endian not


def test_fast_records_and_volumes_equal_pydicom_on_a_written_study(tmp_path, monkeypatch) -> None:
    write_multi_series_study(tmp_path / "study")
    _, fast = _compare(tmp_path / "study")
    assert fast >= 22  # both sagittal series (11 slices each) and the rest of the clutter
    study = open_study(StudyRequest(path=tmp_path / "study"))
    import modicseg.io.dicom_scan as scan_module

    monkeypatch.setattr(scan_module, "fast_classic_frame", lambda path: None)  # the pydicom path alone
    reference = open_study(StudyRequest(path=tmp_path / "study"))
    for role in ("t1", "t2"):
        a, b = getattr(study, role), getattr(reference, role)
        assert a.array.dtype == b.array.dtype and np.array_equal(a.array, b.array)
        assert np.array_equal(a.affine, b.affine) and a.provenance == b.provenance
    assert study.choice == reference.choice


def test_unused_high_bits_are_handled_like_pydicom(tmp_path) -> None:
    """12 of 16 bits stored, the unused 4 bits set: cleared (unsigned) or sign-filled (signed)."""
    write_multi_series_study(tmp_path / "study")
    source = next(p for p in walk_files(tmp_path / "study")[0]
                  if (r := fast_classic_frame(p)) is not None and r.rows > 32)
    for representation in (0, 1):
        ds = pydicom.dcmread(source)
        pixels = np.frombuffer(ds.PixelData, dtype="<u2").copy()
        pixels = (pixels & 0x0FFF) | 0xA000  # garbage in the unused bits
        ds.PixelData = pixels.astype("<u2").tobytes()
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, representation
        path = tmp_path / f"pr{representation}.dcm"
        ds.save_as(path, enforce_file_format=True)
        record = fast_classic_frame(path)
        assert record is not None and record.pixel_data is not None and record.pixel_data[3] == 4
        got, want = read_pixels(record), pydicom.dcmread(path).pixel_array
        assert got is not None and got.dtype == want.dtype and np.array_equal(got, want)


def test_damaged_or_unusual_files_are_left_to_pydicom(tmp_path) -> None:
    write_multi_series_study(tmp_path / "study")
    source = next(p for p in walk_files(tmp_path / "study")[0] if fast_classic_frame(p) is not None)
    data = source.read_bytes()
    cases = {
        "truncated.dcm": data[:-10],  # pixel data shorter than declared
        "trailing.dcm": data + b"\x00" * 16,  # bytes after the pixel data
        "no_preamble.dcm": data[132:],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        assert fast_classic_frame(tmp_path / name) is None, name
    ds = pydicom.dcmread(source)
    ds.SpecificCharacterSet = "ISO_IR 144"  # Cyrillic: pydicom decodes it
    ds.save_as(tmp_path / "cyrillic.dcm", enforce_file_format=True)
    assert fast_classic_frame(tmp_path / "cyrillic.dcm") is None
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.save_as(tmp_path / "implicit.dcm", enforce_file_format=True)
    assert fast_classic_frame(tmp_path / "implicit.dcm") is None
