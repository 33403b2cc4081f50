"""A fast reader for the common case: a classic single-frame MR image, Explicit VR Little Endian.

``modicseg.io.dicom_scan`` parses every file with pydicom, which costs ~2 ms of Python per file
before a single pixel is decoded.  Most lumbar studies are plain files of this one kind, and the
loader needs only ~40 of their attributes.  ``fast_classic_frame`` walks the element stream with
``struct`` (values are not converted unless wanted), keeps those attributes, notes where the pixel
data lies, and builds the same :class:`~modicseg.io.dicom_headers.FrameHeader` that the pydicom
path builds (``tests/test_fast_header.py`` compares every field on the conformance set and on the
test suite's studies).  ``read_pixels`` then reads the frame straight from the file.

Anything else returns None and goes through pydicom, with all its checks and messages: another
transfer syntax, enhanced or multi-frame objects, non-MR objects, DICOMDIRs, a character set other
than the default, Latin-1 or UTF-8, an attribute that does not parse, pixel data whose length is
not exactly Rows x Columns x bytes, anything after the pixel data, a header longer than
``MAX_HEADER_BYTES``.  Only technical attributes are read: no identifier enters a record.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.io.dicom_headers import FrameHeader, _float, _int, _text, _tokens, classic_frame_fields

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
#: the header must lie within this many bytes from the start of the file (else: pydicom)
HEADER_BYTES = 1 << 16
#: ... or, read in a second go, within this many (a longer header: pydicom)
MAX_HEADER_BYTES = 1 << 22
UNDEFINED = 0xFFFFFFFF
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "PN", "UC"})
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
MOSAIC_TAG = 0x0019100A
#: attributes that make the object something the fast path does not read
REFUSE = frozenset({0x00041220, 0x52009230, 0x52009229, 0x7FE00008, 0x7FE00009})

KEYWORDS = {
    0x00080005: "SpecificCharacterSet", 0x00080008: "ImageType", 0x00080016: "SOPClassUID",
    0x00080018: "SOPInstanceUID", 0x00080060: "Modality", 0x00080070: "Manufacturer",
    0x0008103E: "SeriesDescription", 0x00081090: "ManufacturerModelName", 0x00180020: "ScanningSequence",
    0x00180021: "SequenceVariant", 0x00180022: "ScanOptions", 0x00180023: "MRAcquisitionType",
    0x00180024: "SequenceName", 0x00180050: "SliceThickness", 0x00180080: "RepetitionTime",
    0x00180081: "EchoTime", 0x00180082: "InversionTime", 0x00180086: "EchoNumbers",
    0x00180087: "MagneticFieldStrength", 0x00180088: "SpacingBetweenSlices", 0x00181030: "ProtocolName",
    0x00181314: "FlipAngle", 0x0020000E: "SeriesInstanceUID", 0x00200011: "SeriesNumber",
    0x00200013: "InstanceNumber", 0x00200032: "ImagePositionPatient", 0x00200037: "ImageOrientationPatient",
    0x00200052: "FrameOfReferenceUID", 0x00200100: "TemporalPositionIdentifier", 0x00280002: "SamplesPerPixel",
    0x00280008: "NumberOfFrames", 0x00280010: "Rows", 0x00280011: "Columns", 0x00280030: "PixelSpacing",
    0x00280100: "BitsAllocated", 0x00280101: "BitsStored", 0x00280102: "HighBit",
    0x00280103: "PixelRepresentation", 0x00281052: "RescaleIntercept", 0x00281053: "RescaleSlope",
}
ENCODINGS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}

_HH = struct.Struct("<HH")
_SHORT = struct.Struct("<HH2sH")  # group, element, VR, 2-byte length
_H = struct.Struct("<H")
_I = struct.Struct("<I")


class _NeedsPydicomError(Exception):
    """The file needs pydicom."""


class _NeedsMoreBytesError(_NeedsPydicomError):
    """The header goes on past the bytes read so far."""


def _element(buf: bytes | memoryview, pos: int) -> tuple[int, bytes, int, int]:
    """(tag, VR, value position, length) of the explicit-VR element at ``pos``."""
    group, elem = _HH.unpack_from(buf, pos)
    vr = bytes(buf[pos + 4:pos + 6])
    if not vr.isalpha() or not vr.isupper():
        raise _NeedsPydicomError("not explicit VR")
    if vr in LONG_VRS:
        return (group << 16) | elem, vr, pos + 12, _I.unpack_from(buf, pos + 8)[0]
    return (group << 16) | elem, vr, pos + 8, _H.unpack_from(buf, pos + 6)[0]


def _skip_sequence(buf: bytes | memoryview, pos: int) -> int:
    """Position after an undefined-length sequence whose items start at ``pos``."""
    n = len(buf)
    while pos + 8 <= n:
        group, elem = _HH.unpack_from(buf, pos)
        tag, length = (group << 16) | elem, _I.unpack_from(buf, pos + 4)[0]
        pos += 8
        if tag == SEQUENCE_END:
            return pos
        if tag != ITEM:
            raise _NeedsPydicomError("malformed sequence")
        if length != UNDEFINED:
            pos += length
            continue
        while True:  # an undefined-length item: elements up to the item delimiter
            if pos + 8 > n:
                raise _NeedsMoreBytesError("item runs past the bytes read")
            group, elem = _HH.unpack_from(buf, pos)
            if ((group << 16) | elem) == ITEM_END:
                pos += 8
                break
            _, vr, value, length = _element(buf, pos)
            if length == UNDEFINED:
                if vr != b"SQ":
                    raise _NeedsPydicomError("undefined length outside a sequence")
                pos = _skip_sequence(buf, value)
            else:
                pos = value + length
    raise _NeedsMoreBytesError("sequence runs past the bytes read")


def _scan(buf: bytes, file_size: int) -> tuple[str, dict[int, tuple[bytes, bytes]], int, int, bool]:
    """(transfer syntax, wanted raw values, pixel data position, length, mosaic tag present)."""
    try:
        return _scan_elements(buf, file_size)
    except struct.error:  # an element header cut by the end of the bytes read
        raise _NeedsMoreBytesError("element header past the bytes read") from None


def _scan_elements(buf: bytes, file_size: int) -> tuple[str, dict[int, tuple[bytes, bytes]], int, int, bool]:
    if len(buf) < 144 or buf[128:132] != b"DICM":
        raise _NeedsPydicomError("no DICM preamble")
    view = memoryview(buf)
    pos, syntax = 132, None
    while pos + 8 <= len(buf) and _HH.unpack_from(buf, pos)[0] == 0x0002:
        tag, _, value, length = _element(view, pos)
        if length == UNDEFINED:
            raise _NeedsPydicomError("undefined length in the file meta information")
        if tag == 0x00020010:
            syntax = bytes(view[value:value + length]).decode("ascii").rstrip("\x00 ")
        pos = value + length
    if syntax != EXPLICIT_VR_LITTLE_ENDIAN:
        raise _NeedsPydicomError(f"transfer syntax {syntax}")
    values: dict[int, tuple[bytes, bytes]] = {}
    mosaic = False
    n = len(buf)
    short, long_length = _SHORT.unpack_from, _I.unpack_from  # the loop below runs ~100-600 times a file
    while pos + 8 <= n:
        group, elem, vr, length = short(buf, pos)
        tag = (group << 16) | elem
        if vr in LONG_VRS:
            value, length = pos + 12, long_length(buf, pos + 8)[0]
        elif vr.isalpha() and vr.isupper():
            value = pos + 8
        else:
            raise _NeedsPydicomError("not explicit VR")
        if tag == PIXEL_DATA:
            if length == UNDEFINED or value + length != file_size:  # encapsulated, or bytes after the pixels
                raise _NeedsPydicomError("pixel data not the last element")
            return syntax, values, value, length, mosaic
        if tag in REFUSE:
            raise _NeedsPydicomError("not a classic image")
        if length == UNDEFINED:
            if vr != b"SQ":
                raise _NeedsPydicomError("undefined length")
            pos = _skip_sequence(view, value)
            continue
        if value + length > n:
            raise _NeedsMoreBytesError("element runs past the bytes read")
        if tag in KEYWORDS:
            values[tag] = (vr, buf[value:value + length])
        elif tag == MOSAIC_TAG:
            mosaic = True
        pos = value + length
    raise _NeedsMoreBytesError("no pixel data in the bytes read")


def _value(vr: bytes, raw: bytes, encoding: str) -> Any:
    """The value as pydicom gives it: one value, or a list for several; None when empty."""
    kind = vr.decode()
    if kind == "US":
        if len(raw) % 2:
            raise _NeedsPydicomError("odd US length")
        numbers = [v[0] for v in struct.iter_unpack("<H", raw)]
        return None if not numbers else numbers[0] if len(numbers) == 1 else numbers
    if kind in ("DS", "IS"):
        text = raw.decode("ascii").strip(" \x00")
        if not text:
            return None
        parts = [p.strip(" \x00") for p in text.split("\\")]
        try:
            numbers = [float(p) if kind == "DS" else int(p) for p in parts]
        except ValueError:
            raise _NeedsPydicomError("unparsable number") from None
        return numbers[0] if len(numbers) == 1 else numbers
    if kind in TEXT_VRS:
        parts = [p.rstrip("\x00 ") for p in raw.decode(encoding).split("\\")]
    elif kind in ("CS", "UI", "AE", "AS", "SH", "DA", "TM", "DT"):
        parts = raw.decode(encoding).rstrip(" \x00").split("\\")
    else:
        raise _NeedsPydicomError(f"VR {kind}")
    return parts[0] if len(parts) == 1 else parts


def fast_classic_frame(path: Path) -> FrameHeader | None:
    """The header record of a classic MR image in Explicit VR Little Endian, or None (use pydicom)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            buf = fh.read(HEADER_BYTES)
            try:
                syntax, raw, pixel_pos, pixel_len, mosaic = _scan(buf, size)
            except _NeedsMoreBytesError:  # a long header (Siemens CSA): read up to MAX_HEADER_BYTES
                if size <= len(buf):
                    raise
                buf += fh.read(MAX_HEADER_BYTES - len(buf))
                syntax, raw, pixel_pos, pixel_len, mosaic = _scan(buf, size)
        charset = raw.get(0x00080005)
        encoding = ENCODINGS.get(charset[1].decode("ascii").strip(" \x00") if charset else "")
        if encoding is None:
            return None
        ds = {KEYWORDS[tag]: _value(vr, value, encoding) for tag, (vr, value) in raw.items()}
        if ds.get("SOPClassUID") != MR_IMAGE_STORAGE or ds.get("Modality") != "MR":
            return None
        rows, columns = ds.get("Rows"), ds.get("Columns")
        samples, bits = ds.get("SamplesPerPixel", 1), ds.get("BitsAllocated")
        stored, representation = ds.get("BitsStored", bits), ds.get("PixelRepresentation", 0)
        if not (isinstance(rows, int) and isinstance(columns, int) and rows > 0 and columns > 0 and samples == 1
                and bits in (8, 16) and isinstance(stored, int) and 1 <= stored <= bits
                and ds.get("HighBit", stored - 1) == stored - 1
                and representation in (0, 1) and ds.get("NumberOfFrames") in (None, 1)):
            return None
        expected = rows * columns * bits // 8
        if pixel_len not in (expected, expected + 1):
            return None
        dtype = f"<{'iu'[representation == 0]}{bits // 8}"
    except (_NeedsPydicomError, OSError, struct.error, UnicodeDecodeError, ValueError, TypeError, KeyError):
        return None
    image_type = tuple(str(v).upper() for v in (ds.get("ImageType") or ()))
    return FrameHeader(
        path=path, frame_index=None,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        series_number=_int(ds.get("SeriesNumber")),
        series_description=_text(ds.get("SeriesDescription") or ds.get("ProtocolName") or ""),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID") or "") if "FrameOfReferenceUID" in ds else None,
        transfer_syntax_uid=syntax, rows=rows, columns=columns,
        **classic_frame_fields(ds),
        image_type=image_type,
        instance_number=_int(ds.get("InstanceNumber")),
        samples_per_pixel=1,
        is_mosaic="MOSAIC" in image_type or mosaic,
        magnetic_field_strength=_float(ds.get("MagneticFieldStrength")),
        manufacturer=_text(ds.get("Manufacturer")),
        model_name=_text(ds.get("ManufacturerModelName")),
        scan_options=_tokens(ds.get("ScanOptions")),
        pixel_data=(pixel_pos, expected, dtype, bits - stored),
    )


def read_pixels(frame: FrameHeader) -> np.ndarray | None:
    """The frame's (rows, columns) array read straight from its file, or None (decode with pydicom).

    With BitsStored < BitsAllocated the unused high bits are cleared (unsigned) or filled with the
    sign (signed), as pydicom does.
    """
    if frame.pixel_data is None:
        return None
    offset, length, dtype, unused_bits = frame.pixel_data
    data = bytearray(length)
    with open(frame.path, "rb") as fh:
        fh.seek(offset)
        if fh.readinto(data) != length:
            return None
    array = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(frame.rows, frame.columns)
    if unused_bits:
        np.left_shift(array, unused_bits, out=array)
        np.right_shift(array, unused_bits, out=array)
    return array
