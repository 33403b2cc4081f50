"""The bad-input corpus: every broken study, file or output location gets one clear error.

Each case damages a copy of a small valid study (real DICOM files written with pydicom, real NIfTI
files) in one way and runs the command line on it.  Every case must give exit status 2, no
traceback, exactly one line ``error: <path>: <problem>`` that names the damaged file (or folder)
and the problem, write nothing at all (no output folder, no temporary folder, no change in the
input), and stay far below 1 GB of memory.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from modicseg.core.convert import save_nifti
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.io.dicom_write import SeriesSpec, write_mr_series
from tests.dicom_factory import T2_SERIES, axial_affine, canary_study, phantom_image
from tests.hostile import MEMORY_LIMIT, clone, edit, make_base, run_cli, series_files, snapshot

pytestmark = pytest.mark.timeout(120)


@dataclass
class Case:
    argv: list
    where: Path | str  # the path the error line must name
    problem: str  # regular expression the error line must match
    output: Path | None = None  # the output location that must not appear
    #: measure memory exactly (tracemalloc: every Python and numpy allocation, several times slower)
    #: rather than by the growth of the resident set; for the cases that declare huge sizes
    exact_memory: bool = False


@dataclass
class Ctx:
    dir: Path  # the case's folder: a copy of the base study
    study: Path
    labels: Path
    t1: Path
    t2: Path
    phantom: object

    @property
    def out(self) -> Path:
        return self.dir / "out"

    def t2_files(self) -> list[Path]:
        return series_files(self.study / "t2")

    def analyze(self, study: Path | None = None, labels: Path | None = None, *extra) -> list:
        return ["analyze", study or self.study, "--labels", labels or self.labels, "-o", self.out, *extra]


CASES: dict[str, Callable[[Ctx], Case]] = {}


def case(name: str):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


# --- corrupt and truncated DICOM files ------------------------------------------------------------

@case("dicom_truncated_in_pixel_data")
def _(c: Ctx) -> Case:
    f = c.t2_files()[5]
    f.write_bytes(f.read_bytes()[:-3000])
    return Case(c.analyze(), f, r"truncated file")


@case("dicom_truncated_last_byte")
def _(c: Ctx) -> Case:
    f = c.t2_files()[7]
    f.write_bytes(f.read_bytes()[:-1])
    return Case(c.analyze(), f, r"truncated")


@case("dicom_truncated_in_header")
def _(c: Ctx) -> Case:
    f = c.t2_files()[2]
    f.write_bytes(f.read_bytes()[:400])
    return Case(c.analyze(), f, r"corrupt|truncated")


@case("dicom_preamble_then_garbage")
def _(c: Ctx) -> Case:
    f = c.study / "t2" / "JUNK"
    f.write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(3).bytes(600))
    return Case(c.analyze(), f, r"corrupt DICOM file")


@case("dicom_header_overwritten")
def _(c: Ctx) -> Case:
    f = c.t2_files()[4]
    data = bytearray(f.read_bytes())
    data[140:420] = b"\xff" * 280
    f.write_bytes(bytes(data))
    return Case(c.analyze(), f, r"corrupt")


@case("dicom_rows_smaller_than_pixel_data")
def _(c: Ctx) -> Case:  # pydicom would drop the "excess padding" and the image would be scrambled
    f = c.t2_files()[6]
    edit(f, Rows=pydicom.dcmread(f).Rows - 3)
    return Case(c.analyze(), f, r"more than the \d+ bytes .*scrambled")


@case("dicom_rows_smaller_in_every_file")
def _(c: Ctx) -> Case:
    for f in c.t2_files():
        edit(f, Rows=pydicom.dcmread(f).Rows - 3)
    return Case(c.analyze(), c.study / "t2", r"corrupt DICOM image: pixel data holds \d+ bytes, more than")


@case("dicom_rows_larger_than_pixel_data")
def _(c: Ctx) -> Case:
    f = c.t2_files()[6]
    edit(f, Rows=pydicom.dcmread(f).Rows + 2)
    return Case(c.analyze(), f, r"pixel data holds \d+ bytes but Rows")


@case("dicom_columns_wrong")
def _(c: Ctx) -> Case:
    f = c.t2_files()[3]
    edit(f, Columns=pydicom.dcmread(f).Columns + 1)
    return Case(c.analyze(), f, r"pixel data holds \d+ bytes but .*Columns")


@case("dicom_bits_allocated_8")
def _(c: Ctx) -> Case:
    f = c.t2_files()[3]
    edit(f, BitsAllocated=8, BitsStored=8, HighBit=7)
    return Case(c.analyze(), f, r"more than the \d+ bytes")


@case("dicom_bits_allocated_invalid")
def _(c: Ctx) -> Case:
    f = c.t2_files()[3]
    edit(f, BitsAllocated=12)
    return Case(c.analyze(), f, r"invalid BitsAllocated")


@case("dicom_rows_zero")
def _(c: Ctx) -> Case:
    f = c.t2_files()[3]
    edit(f, Rows=0)
    return Case(c.analyze(), f, r"invalid image size")


@case("dicom_samples_per_pixel_3")
def _(c: Ctx) -> Case:
    f = c.t2_files()[3]
    edit(f, SamplesPerPixel=3)
    return Case(c.analyze(), f, r"pixel data holds \d+ bytes but .*3 samples")


@case("dicom_frames_declared_on_classic")
def _(c: Ctx) -> Case:
    f = series_files(c.study / "t1")[3]
    edit(f, NumberOfFrames=40)
    return Case(c.analyze(), f, r"pixel data holds \d+ bytes but .*40 frames", exact_memory=True)


@case("dicom_pixel_data_removed")
def _(c: Ctx) -> Case:
    f = c.t2_files()[8]
    edit(f, PixelData=None)
    return Case(c.analyze(), f, r"no pixel data")


@case("dicom_huge_matrix_declared")
def _(c: Ctx) -> Case:
    f = c.t2_files()[8]
    edit(f, Rows=65535, Columns=65535)
    return Case(c.analyze(), f, r"GiB of pixels, more than any MR image", exact_memory=True)


@case("dicom_compressed_syntax_on_native_data")
def _(c: Ctx) -> Case:
    f = c.t2_files()[8]
    data = f.read_bytes()
    explicit = str(pydicom.uid.ExplicitVRLittleEndian).encode()
    rle = str(pydicom.uid.RLELossless).encode()  # same length: the file stays parseable
    assert len(explicit) == len(rle) and explicit in data
    f.write_bytes(data.replace(explicit + b"\0", rle + b"\0", 1))
    return Case(c.analyze(), f, r"pixel data|decode|corrupt")


def _enhanced_t2(c: Ctx) -> Path:
    """Replace the classic T2 by an Enhanced MR object of the same image; returns its file."""
    shutil.rmtree(c.study / "t2")
    return write_mr_series(c.phantom.t2, c.study / "t2", SeriesSpec(series_number=4, enhanced=True, **T2_SERIES),
                           canary_study())[0]


@case("enhanced_20_million_frames")
def _(c: Ctx) -> Case:  # the runaway-memory case: a record per declared frame came first
    f = _enhanced_t2(c)
    edit(f, NumberOfFrames=20_000_000)
    return Case(c.analyze(), f, r"20000000 frames .*GiB of pixels", exact_memory=True)


@case("enhanced_more_frames_than_data")
def _(c: Ctx) -> Case:
    f = _enhanced_t2(c)
    edit(f, NumberOfFrames=500)
    return Case(c.analyze(), f, r"pixel data holds \d+ bytes but .*500 frames", exact_memory=True)


@case("enhanced_per_frame_items_missing")
def _(c: Ctx) -> Case:
    f = _enhanced_t2(c)
    ds = pydicom.dcmread(f)
    del ds.PerFrameFunctionalGroupsSequence[-4:]
    ds.save_as(f)
    return Case(c.analyze(), f, r"NumberOfFrames is 13 but PerFrameFunctionalGroupsSequence has 9 items")


# --- missing or contradictory geometry --------------------------------------------------------------

@case("position_missing_in_one_t2_file")
def _(c: Ctx) -> Case:  # the T2 is refused: the study must not silently be analysed from T1 alone
    f = c.t2_files()[5]
    edit(f, ImagePositionPatient=None)
    return Case(c.analyze(), c.study, rf"T2 series 4 .*cannot be used: no ImagePositionPatient .*{f.name}")


@case("position_missing_in_every_t2_file")
def _(c: Ctx) -> Case:
    for f in c.t2_files():
        edit(f, ImagePositionPatient=None)
    return Case(c.analyze(), c.study, r"T2 series 4 .*cannot be used: no ImagePositionPatient")


@case("pixel_spacing_missing_in_one_file")
def _(c: Ctx) -> Case:
    f = c.t2_files()[5]
    edit(f, PixelSpacing=None)
    return Case(c.analyze(), c.study / "t2", rf"missing slice.*{f.name} \(PixelSpacing missing")


@case("orientation_broken_in_one_file")
def _(c: Ctx) -> Case:  # was "1 missing slice" without naming the file
    f = c.t2_files()[5]
    edit(f, ImageOrientationPatient=[1, 0, 0, 0, 0, 0])
    return Case(c.analyze(), c.study / "t2", rf"missing slice.*{f.name} \(ImageOrientationPatient")


@case("one_file_with_another_matrix")
def _(c: Ctx) -> Case:  # a consistent file of another matrix: was "1 missing slice" without naming it
    f = c.t2_files()[5]
    ds = pydicom.dcmread(f)
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, :-2]).tobytes()
    ds.Columns = ds.Columns - 2
    ds.save_as(f)
    return Case(c.analyze(), c.study / "t2", rf"1 missing slice.*{f.name} \(Rows x Columns 172x48 instead of 172x50\)")


@case("orientation_not_orthogonal")
def _(c: Ctx) -> Case:
    for f in c.t2_files():
        edit(f, ImageOrientationPatient=[0, 1, 0, 0, 0.5, -1])
    return Case(c.analyze(), c.study, r"invalid ImageOrientationPatient .* not two orthogonal unit vectors")


@case("pixel_spacing_zero")
def _(c: Ctx) -> Case:
    for f in c.t2_files():
        edit(f, PixelSpacing=[0, 0])
    return Case(c.analyze(), c.study, r"invalid PixelSpacing")


@case("duplicate_slice_position")
def _(c: Ctx) -> Case:
    files = c.t2_files()
    edit(files[6], ImagePositionPatient=pydicom.dcmread(files[5]).ImagePositionPatient)
    return Case(c.analyze(), c.study, r"T2 series 4 .*cannot be used: duplicate slice positions")


@case("four_d_t2_series")
def _(c: Ctx) -> Case:
    for n, f in enumerate(c.t2_files()):
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = 100 + n
        ds.TemporalPositionIdentifier = 2
        ds.save_as(f.with_name(f.name + "_t2"))
    return Case(c.analyze(), c.study, r"T2 series 4 .*cannot be used: 4-D")


@case("missing_slice_file_deleted")
def _(c: Ctx) -> Case:
    c.t2_files()[6].unlink()
    return Case(c.analyze(), c.study / "t2", r"1 missing slice")


@case("uneven_slice_spacing")
def _(c: Ctx) -> Case:
    f = c.t2_files()[6]
    position = [float(v) for v in pydicom.dcmread(f).ImagePositionPatient]
    position[0] += 1.3
    edit(f, ImagePositionPatient=position)
    return Case(c.analyze(), c.study / "t2", r"uneven slice spacing")


@case("t2_with_two_slices_only")
def _(c: Ctx) -> Case:
    for f in c.t2_files()[2:]:
        f.unlink()
    return Case(c.analyze(), c.study, r"T2 series 4 .*cannot be used: only 2 slice")


@case("only_axial_series")
def _(c: Ctx) -> Case:
    shutil.rmtree(c.study)
    shape = (40, 40, 9)
    write_mr_series(phantom_image(shape, axial_affine(shape), "t2"), c.study,
                    SeriesSpec(series_number=5, description="t2_tse_tra", repetition_time=4000.0, echo_time=100.0))
    return Case(c.analyze(), c.study,
                r"no usable sagittal T1 or T2 series among 1 stack.*\n.*series 5 't2_tse_tra': axial T2")


# --- non-MR input, empty folders, special files ---------------------------------------------------

@case("ct_images_only")
def _(c: Ctx) -> Case:
    for f in list(c.study.rglob("*")):
        if f.is_file():
            edit(f, Modality="CT", SOPClassUID=pydicom.uid.CTImageStorage)
    return Case(c.analyze(), c.study, r"no MR images found among 26 files \(26 non-MR images\)")


@case("text_files_only")
def _(c: Ctx) -> Case:
    shutil.rmtree(c.study)
    c.study.mkdir()
    (c.study / "notes.txt").write_text("not an image\n")
    return Case(c.analyze(), c.study, r"no MR images found")


@case("empty_folder")
def _(c: Ctx) -> Case:
    shutil.rmtree(c.study)
    c.study.mkdir()
    return Case(c.analyze(), c.study, r"empty folder")


@case("study_does_not_exist")
def _(c: Ctx) -> Case:
    missing = c.dir / "no-such-study"
    return Case(c.analyze(missing), missing, r"no such file or folder")


@case("study_is_a_named_pipe")
def _(c: Ctx) -> Case:  # opening a FIFO blocks forever: it must never be opened
    fifo = c.dir / "pipe"
    os.mkfifo(fifo)
    return Case(c.analyze(fifo), fifo, r"not a regular file or folder")


@case("folder_of_special_files")
def _(c: Ctx) -> Case:
    shutil.rmtree(c.study)
    c.study.mkdir()
    os.mkfifo(c.study / "pipe")
    os.symlink("/dev/zero", c.study / "zero.dcm")
    os.symlink(c.dir / "nowhere", c.study / "dangling")
    return Case(c.analyze(), c.study, r"empty folder \(no regular files; 3 special files")


@case("pipe_and_device_beside_text")
def _(c: Ctx) -> Case:
    shutil.rmtree(c.study)
    c.study.mkdir()
    os.mkfifo(c.study / "pipe")
    os.symlink("/dev/urandom", c.study / "random")
    (c.study / "readme.txt").write_text("hello")
    return Case(c.analyze(), c.study, r"no MR images found among 1 files \(.*2 special files")


# --- NIfTI inputs: NaN / Inf, corrupt, truncated, huge declared sizes -----------------------------

def _nifti_args(c: Ctx, t1: Path | None = None, t2: Path | None = None) -> list:
    return ["analyze", "--t1", t1 or c.t1, "--t2", t2 or c.t2, "--labels", c.labels, "-o", c.out]


@case("nifti_t2_with_2_percent_nan")
def _(c: Ctx) -> Case:
    array = c.phantom.t2.array.copy()
    array[np.random.default_rng(1).random(array.shape) < 0.02] = np.nan
    save_nifti(ScalarImage(array, c.phantom.t2.affine), str(c.t2))
    return Case(_nifti_args(c), c.t2, r"non-finite image values: \d+ of \d+ voxels \(\d(\.\d)? %\) are NaN")


@case("nifti_t1_with_inf")
def _(c: Ctx) -> Case:
    array = c.phantom.t1.array.copy()
    array[10, 20, 5] = np.inf
    save_nifti(ScalarImage(array, c.phantom.t1.affine), str(c.t1))
    return Case(_nifti_args(c), c.t1, r"non-finite image values: 1 of \d+ voxels .* are Inf")


@case("nifti_truncated_gzip")
def _(c: Ctx) -> Case:
    c.t2.write_bytes(c.t2.read_bytes()[:-2000])
    return Case(_nifti_args(c), c.t2, r"cannot read voxel data")


@case("nifti_not_gzip")
def _(c: Ctx) -> Case:
    c.t2.write_text("this is not a NIfTI file\n")
    return Case(_nifti_args(c), c.t2, r"not a readable NIfTI file")


@case("nifti_huge_declared_size")
def _(c: Ctx) -> Case:
    path = c.dir / "huge_T2w.nii"
    nii = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), c.phantom.t2.affine)
    nii.header.set_data_shape((4000, 4000, 4000))
    path.write_bytes(nii.header.binaryblock + b"\0" * 4 + b"\0" * 64)
    return Case(_nifti_args(c, t2=path), path, r"more than any MR image", exact_memory=True)


@case("nifti_uncompressed_truncated")
def _(c: Ctx) -> Case:
    path = c.dir / "cut_T2w.nii"
    save_nifti(c.phantom.t2, str(path))
    path.write_bytes(path.read_bytes()[:-5000])
    return Case(_nifti_args(c, t2=path), path, r"truncated file")


@case("nifti_degenerate_affine")
def _(c: Ctx) -> Case:
    header = nib.Nifti1Image(c.phantom.t2.array, c.phantom.t2.affine).header.copy()
    header.set_qform(None, code=0)
    header["srow_y"] = header["srow_z"] = [0.0, 0.0, 0.0, 0.0]  # zero rows: no volume, no orientation
    nib.save(nib.Nifti1Image(c.phantom.t2.array, None, header), str(c.t2))
    return Case(_nifti_args(c), c.t2, r"degenerate")


@case("nifti_four_d")
def _(c: Ctx) -> Case:
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 5, 3), np.float32), np.eye(4)), str(c.t2))
    return Case(_nifti_args(c), c.t2, r"not a 3-D anatomical image")


@case("nifti_no_orientation")
def _(c: Ctx) -> Case:
    nii = nib.Nifti1Image(c.phantom.t2.array, c.phantom.t2.affine)
    nii.set_sform(None, code=0)
    nii.set_qform(None, code=0)
    nib.save(nii, str(c.t2))
    return Case(_nifti_args(c), c.t2, r"orientation is unknown")


@case("nifti_t1_t2_are_mgz")
def _(c: Ctx) -> Case:  # nibabel reads MGH/MGZ as MGHImage: was an AttributeError traceback (get_sform)
    t1, t2 = c.dir / "t1.mgz", c.dir / "t2.mgz"
    nib.save(nib.MGHImage(c.phantom.t1.array.astype(np.float32), c.phantom.t1.affine), str(t1))
    nib.save(nib.MGHImage(c.phantom.t2.array.astype(np.float32), c.phantom.t2.affine), str(t2))
    return Case(["analyze", "--t1", t1, "--t2", t2, "-o", c.out], t1,
                r"not a NIfTI file: it is a FreeSurfer MGH/MGZ image \(nibabel reads it as MGHImage\)")


@case("nifti_t2_is_analyze")
def _(c: Ctx) -> Case:  # an Analyze 7.5 .img/.hdr pair: no sform or qform, no orientation
    path = c.dir / "t2.img"
    nib.save(nib.AnalyzeImage(c.phantom.t2.array.astype(np.float32), c.phantom.t2.affine), str(path))
    return Case(_nifti_args(c, t2=path), path, r"not a NIfTI file: it is an Analyze 7\.5 image")


# --- wrong label maps -------------------------------------------------------------------------------

def _save_labels(c: Ctx, array: np.ndarray, affine: np.ndarray | None = None, name: str = "labels.nii.gz") -> Path:
    path = c.dir / name
    nib.save(nib.Nifti1Image(array, c.phantom.labels.affine if affine is None else affine), str(path))
    return path


@case("labels_1000_mm_away")
def _(c: Ctx) -> Case:  # was analysed as "not eligible"
    affine = c.phantom.labels.affine.copy()
    affine[0, 3] += 1000.0
    save_nifti(LabelImage(c.phantom.labels.array, affine), str(c.labels))
    return Case(c.analyze(), c.labels, r"does not cover the image .* lie 9\d\d mm from the image")


@case("labels_half_outside")
def _(c: Ctx) -> Case:
    affine = c.phantom.labels.affine.copy()
    affine[2, 3] += 0.5 * c.phantom.labels.shape[1] * 1.6
    save_nifti(LabelImage(c.phantom.labels.array, affine), str(c.labels))
    return Case(c.analyze(), c.labels, r"only \d+\.\d % of its labelled voxels lie inside the image")


@case("labels_not_gzip")
def _(c: Ctx) -> Case:  # was a traceback
    c.labels.write_text("plain text, not gzip\n")
    return Case(c.analyze(), c.labels, r"cannot read label map: not a readable NIfTI file")


@case("labels_unknown_value")
def _(c: Ctx) -> Case:
    array = np.asarray(c.phantom.labels.array).astype(np.uint8).copy()
    array[0, 0, 0] = 7
    return Case(c.analyze(labels=_save_labels(c, array)), c.dir / "labels.nii.gz", r"values \[7\]")


@case("labels_fractional")
def _(c: Ctx) -> Case:
    array = np.asarray(c.phantom.labels.array).astype(np.float32)
    array[array == 2] = 1.5
    path = _save_labels(c, array)
    return Case(c.analyze(labels=path), path, r"label map holds non-integer values \(e\.g\. 1\.5\)")


@case("labels_nan")
def _(c: Ctx) -> Case:
    array = np.asarray(c.phantom.labels.array).astype(np.float32)
    array[0, :, 0] = np.nan
    path = _save_labels(c, array)
    return Case(c.analyze(labels=path), path, r"label map holds non-finite values")


@case("labels_empty")
def _(c: Ctx) -> Case:
    path = _save_labels(c, np.zeros(c.phantom.labels.shape, np.uint8))
    return Case(c.analyze(labels=path), path, r"label map is empty")


@case("labels_missing")
def _(c: Ctx) -> Case:
    path = c.dir / "no-labels.nii.gz"
    return Case(c.analyze(labels=path), path, r"label map not found")


@case("labels_mgz")
def _(c: Ctx) -> Case:
    path = c.dir / "labels.mgz"
    nib.save(nib.MGHImage(np.asarray(c.phantom.labels.array).astype(np.uint8), c.phantom.labels.affine), str(path))
    return Case(c.analyze(labels=path), path, r"not a NIfTI file: it is a FreeSurfer MGH/MGZ image .* convert the "
                                              r"label map to a \.nii or \.nii\.gz file")


@case("labels_four_d")
def _(c: Ctx) -> Case:
    path = _save_labels(c, np.zeros((*c.phantom.labels.shape, 2), np.uint8))
    return Case(c.analyze(labels=path), path, r"not a 3-D image")


# --- output locations -------------------------------------------------------------------------------

@case("output_is_an_existing_file")
def _(c: Ctx) -> Case:  # was a traceback, at the very end of the work
    target = c.dir / "report.txt"
    target.write_text("keep me\n")
    return Case(["analyze", c.study, "--labels", c.labels, "-o", target], target, r"exists and is not a folder")


@case("output_under_a_file")
def _(c: Ctx) -> Case:
    blocker = c.dir / "blocker"
    blocker.write_text("x")
    target = blocker / "out"
    return Case(["analyze", c.study, "--labels", c.labels, "-o", target], target,
                rf"cannot create the output folder: {re.escape(str(blocker))} is a file", output=target)


@case("output_in_proc")
def _(c: Ctx) -> Case:
    target = Path("/proc/modicseg-output")
    return Case(["convert", c.study, "-o", target], target, r"cannot write the output folder", output=target)


@case("output_is_a_named_pipe")
def _(c: Ctx) -> Case:
    fifo = c.dir / "out-pipe"
    os.mkfifo(fifo)
    return Case(["convert", c.study, "-o", fifo], fifo, r"exists and is not a folder")


@case("segment_output_under_a_file")
def _(c: Ctx) -> Case:  # checked before the model is even looked for
    blocker = c.dir / "blocker"
    blocker.write_text("x")
    return Case(["segment", c.study, "-o", blocker / "seg"], blocker / "seg", r"is a file, not a folder",
                output=blocker / "seg")


@case("convert_broken_t2")
def _(c: Ctx) -> Case:
    f = c.t2_files()[6]
    edit(f, Rows=pydicom.dcmread(f).Rows - 3)
    return Case(["convert", c.study, "-o", c.out], f, r"scrambled")


@case("inspect_truncated_file")
def _(c: Ctx) -> Case:
    f = c.t2_files()[1]
    f.write_bytes(f.read_bytes()[:-700])
    return Case(["inspect", c.study], f, r"truncated")


# --- the corpus ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    return make_base(tmp_path_factory.mktemp("base"))


RESULTS: dict[str, dict] = {}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_clear_error_and_writes_nothing(name, base, tmp_path) -> None:
    root = clone(base["root"], tmp_path / "case")
    ctx = Ctx(dir=root, study=root / "study", labels=root / "labels.nii.gz", t1=root / "t1.nii.gz",
              t2=root / "t2.nii.gz", phantom=base["phantom"])
    spec = CASES[name](ctx)
    before = snapshot(tmp_path)
    started = time.perf_counter()
    run = run_cli(spec.argv, measure="tracemalloc" if spec.exact_memory else "rss")
    RESULTS[name] = {"rc": run.rc, "peak_mb": run.peak_bytes / 2**20, "seconds": time.perf_counter() - started,
                     "exact": spec.exact_memory}
    assert run.rc == 2, run.err
    assert "Traceback" not in run.err, run.err
    assert len(run.error_lines) == 1, run.err
    line = run.err[run.err.index("error:"):]  # the error line and the listing indented under it
    assert line.startswith(f"error: {spec.where}"), line
    assert re.search(spec.problem, line), (spec.problem, line)
    # nothing written: no output folder, no temporary folder, no input changed
    assert snapshot(tmp_path) == before
    output = spec.output or ctx.out
    assert not output.exists() or output.is_fifo() or output.is_file()
    assert run.peak_bytes < MEMORY_LIMIT


def test_corpus_size_and_summary() -> None:
    assert len(CASES) >= 40
    if RESULTS:
        worst = max(RESULTS.items(), key=lambda kv: kv[1]["peak_mb"])
        passed = sum(1 for r in RESULTS.values() if r["rc"] == 2)
        exact = max(((n, r) for n, r in RESULTS.items() if r["exact"]), key=lambda kv: kv[1]["peak_mb"],
                    default=("none", {"peak_mb": 0.0}))
        print(f"\nbad-input corpus: {len(CASES)} cases, {passed} refused with exit 2; worst resident-memory growth "
              f"{worst[1]['peak_mb']:.1f} MB ({worst[0]}); worst allocation peak of the huge-size cases "
              f"{exact[1]['peak_mb']:.1f} MB ({exact[0]}); slowest {max(r['seconds'] for r in RESULTS.values()):.2f} s")


# --- the same through the real command line (subprocess): no hang, bounded memory ------------------

#: Runs ``python -m modicseg ...`` as its own child and writes that child's peak RSS (KiB) to argv[1].
#: Two hops because Linux carries a parent's resident size into a forked child's ``ru_maxrss`` across
#: exec: measured straight from the (large) test process, the figure would be the test process's own.
_LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen([sys.executable, "-m", "modicseg", *sys.argv[2:]])
_, status, usage = os.wait4(proc.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def _child_peak_rss(argv: list, tmp: Path, timeout: float = 60) -> tuple[int, str, int]:
    """(exit status, stderr, peak RSS in bytes) of ``python -m modicseg argv`` in a child process,
    killed (and the test failed) after ``timeout`` seconds: a hang is a failure, not a stuck suite."""
    err_path, peak_path = tmp / "child-stderr.txt", tmp / "child-peak-kib.txt"
    with open(os.devnull, "wb") as devnull, open(err_path, "wb") as err_file:
        proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(peak_path), *map(str, argv)],
                                stdout=devnull, stderr=err_file, start_new_session=True)
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
    if proc.returncode == -9:
        pytest.fail(f"modicseg {argv[0]} hung for {timeout} s")
    err_text = err_path.read_text()
    err_path.unlink()
    return proc.returncode, err_text, int(peak_path.read_text()) * 1024


def test_pipe_socket_and_device_in_a_valid_study_are_skipped_without_hanging(base, tmp_path) -> None:
    root = clone(base["root"], tmp_path / "case")
    study = root / "study"
    os.mkfifo(study / "t2" / "fifo.dcm")
    os.symlink("/dev/zero", study / "zero")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(study / "sock"))
    try:
        rc, err, peak = _child_peak_rss(["analyze", study, "--labels", root / "labels.nii.gz", "-o", root / "out",
                                         "--no-qc"], tmp_path)
    finally:
        sock.close()
    assert rc == 0, err
    print(f"\nvalid study with a FIFO, a socket and /dev/zero inside: exit 0, peak RSS {peak / 2**20:.0f} MB")
    report = (root / "out" / "report.json").read_text()
    assert '"eligible": true' in report
    assert peak < MEMORY_LIMIT
    assert stat.S_ISFIFO(os.lstat(study / "t2" / "fifo.dcm").st_mode)  # left as it was


def test_20_million_frames_stay_small_in_a_real_process(base, tmp_path) -> None:
    root = clone(base["root"], tmp_path / "case")
    ctx = Ctx(dir=root, study=root / "study", labels=root / "labels.nii.gz", t1=root / "t1.nii.gz",
              t2=root / "t2.nii.gz", phantom=base["phantom"])
    spec = CASES["enhanced_20_million_frames"](ctx)
    rc, err, peak = _child_peak_rss(spec.argv, tmp_path)
    assert rc == 2 and err.startswith(f"error: {spec.where}") and "Traceback" not in err, err
    print(f"\n20,000,000 declared frames, real process: exit 2, peak RSS {peak / 2**20:.0f} MB")
    assert peak < MEMORY_LIMIT


def test_read_only_file_system_is_refused_before_any_work(base, tmp_path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only file system here (needs root and mount permission)")
    try:
        target = mount / "out"
        run = run_cli(["analyze", base["study"], "--labels", base["labels"], "-o", target])
        assert run.rc == 2 and "Traceback" not in run.err, run.err
        assert run.error_lines == [f"error: {target}: cannot write the output folder: no folder can be created in "
                                   f"{mount} (Read-only file system)"]
        assert run.out == ""  # refused before any work: no analysis summary printed
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_broken_t2_is_analysed_without_it_only_on_request(base, tmp_path) -> None:
    """--allow-missing-contrast: the refused series and why are in the warnings and report.json."""
    import json

    root = clone(base["root"], tmp_path / "case")
    files = series_files(root / "study" / "t2")
    edit(files[5], ImagePositionPatient=None)
    run = run_cli(["analyze", root / "study", "--labels", root / "labels.nii.gz", "-o", root / "out", "--no-qc",
                   "--allow-missing-contrast"], measure="rss")
    assert run.rc == 0, run.err
    report = json.loads((root / "out" / "report.json").read_text())
    refused = [r for r in report["provenance"]["refused_series"] if r["instead_of"] == "t2"]
    assert [(r["series"], r["weighting"]) for r in refused] == [("4", "T2")]
    assert refused[0]["refusal"] == f"no ImagePositionPatient (missing or unreadable) in t2/{files[5].name}"
    assert report["provenance"]["series"]["t2"] is None
    assert report["typing"]["possible"] is False
    assert report["eligibility"]["eligible"] is None  # no verdict from T1 alone
    assert any("T2 series 4 't2_tse_sag' refused" in w for w in report["warnings"])
    assert str(root) not in json.dumps(report)  # files named relative to the study folder


@pytest.mark.timeout(30)
def test_batch_fingerprint_never_opens_special_files(tmp_path) -> None:
    """--content-hash hashes every input file: a named pipe among them must not block it."""
    from modicseg.batch.fingerprint import inputs_fingerprint

    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(b"x" * 10)
    before = inputs_fingerprint([folder], content=True)
    os.mkfifo(folder / "pipe")
    os.symlink(tmp_path / "nowhere", folder / "dangling")
    after = inputs_fingerprint([folder], content=True)
    assert after == before and after["files"] == 1 and after["bytes"] == 10
