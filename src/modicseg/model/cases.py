"""Annotated cases for fine-tuning and validation: folder layouts, label mapping, partial labels.

Accepted layouts of a data folder ``DIR`` (detected automatically):

1. **modicseg** (one sub-folder per case)::

       DIR/<case>/t1.nii.gz | *_T1w.nii.gz      optional   T1-weighted image
       DIR/<case>/t2.nii.gz | *_T2w.nii.gz      optional   T2-weighted image (or STIR/TIRM)
       DIR/<case>/dicom/                        optional   a DICOM study: T1/T2 chosen as by `segment`
       DIR/<case>/labels.nii.gz | labels.dcm    required   label map (NIfTI) or DICOM SEG
       DIR/<case>/case.json                     optional   {"annotated_classes": [1], "label_map": {"*": 1}}

   At least one image. Labels lie on the T2 grid (else the T1's) or are resampled onto it
   (nearest neighbour).
2. **real-spine** (``../shared/real-spine``): ``DIR/<case>/image.nii.gz`` + the label file and
   ``sequence`` named in ``case.json``; T1 -> the T1 channel, T2 and TIRM/STIR -> the T2 channel;
   every label value > 0 -> vertebral body; annotated classes {1}.
3. **nnU-Net raw**: ``DIR/dataset.json`` (``channel_names`` e.g. {"0": "T1", "1": "T2"}, ``labels``
   name -> value), ``DIR/imagesTr/<case>_0000.nii.gz`` ..., ``DIR/labelsTr/<case>.nii.gz``.
   ``dataset.json``'s ``modicseg`` entry may give ``label_map``, ``annotated_classes`` and
   ``validation_cases`` (cases held out for fine-tuning's before/after table: ``review export
   --training-data`` writes this layout).

Label values are mapped to model classes with ``label_map`` (source value -> class; ``"*"`` for
every other value > 0; default identity). ``annotated_classes`` lists the classes a case
annotates (default: all model classes); the loss ignores the others (see ``losses``).
Voxels labelled ``IGNORE_LABEL`` (255; nnU-Net's ``"ignore"`` label) are left out of the loss and
of the validation Dice: the labels say nothing about them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.core.convert import load_nifti
from modicseg.core.image import LPS_TO_RAS, LabelImage, ScalarImage
from modicseg.core.labels import BACKGROUND, BODY, CLASS_NAMES, DISC, IGNORE, LESION, STRUCTURE_VALUES
from modicseg.core.resample import resample_to
from modicseg.io.errors import InputError
from modicseg.io.nifti_input import load_nifti_image

ALL_CLASSES = STRUCTURE_VALUES
IGNORE_LABEL = IGNORE  # training labels: voxels the loss ignores (unlabelled levels, readers' ties)
SEGMENT_NAME_CLASSES = {"vertebra": BODY, "body": BODY, "disc": DISC, "modic": LESION, "lesion": LESION}
SEQUENCE_CHANNEL = {"T1": "T1", "T2": "T2", "TIRM": "T2", "STIR": "T2", "DIXON_WATER": "T2"}
#: weighting recorded in the image's provenance (io.classify's names: fat-suppressed fluid images)
SEQUENCE_WEIGHTING = {"TIRM": "STIR", "STIR": "STIR", "DIXON_WATER": "T2FS"}


@dataclass
class LabelledCase:
    """Images (T1/T2, either may be absent), labels in model classes on the reference grid."""

    name: str
    t1: ScalarImage | None
    t2: ScalarImage | None
    labels: LabelImage
    annotated: tuple[int, ...] = ALL_CLASSES
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def reference(self) -> ScalarImage:
        ref = self.t2 if self.t2 is not None else self.t1
        assert ref is not None
        return ref

    @property
    def contrasts(self) -> list[str]:
        return [n for n, i in (("T1", self.t1), ("T2", self.t2)) if i is not None]


def map_labels(array: np.ndarray, label_map: Mapping[str, int] | None) -> np.ndarray:
    """Source label values -> model classes (``"*"``: any other value > 0; unmapped values -> 0).

    ``IGNORE_LABEL`` (255: voxels the labels say nothing about) stays ``IGNORE_LABEL`` unless the
    map names it."""
    if not label_map:
        return array.astype(np.uint8)
    out = np.zeros(array.shape, dtype=np.uint8)
    other = label_map.get("*")
    explicit = {int(k): int(v) for k, v in label_map.items() if k != "*"}
    if other is not None:
        out[array > 0] = int(other)
    if IGNORE_LABEL not in explicit:
        out[array == IGNORE_LABEL] = IGNORE_LABEL
    for src, dst in explicit.items():
        out[array == src] = dst
    return out


def _finish(name: str, t1: ScalarImage | None, t2: ScalarImage | None, labels: LabelImage,
            label_map: Mapping[str, int] | None, annotated: Any, info: dict[str, Any]) -> LabelledCase:
    if t1 is None and t2 is None:
        raise InputError(f"case {name}: no T1 or T2 image")
    reference = t2 if t2 is not None else t1
    assert reference is not None
    if labels.shape != reference.shape or not np.allclose(labels.affine, reference.affine, atol=1e-3):
        labels = resample_to(labels, reference)
    mapped = map_labels(np.asarray(labels.array), label_map)
    unknown = set(np.unique(mapped).tolist()) - {BACKGROUND, *ALL_CLASSES, IGNORE_LABEL}
    if unknown:
        raise InputError(f"case {name}: label values {sorted(unknown)} are not model classes; give a label_map")
    ann = tuple(sorted(int(c) for c in annotated)) if annotated is not None else ALL_CLASSES
    return LabelledCase(name, t1, t2, LabelImage(mapped, reference.affine.copy(), labels.provenance), ann, info)


def read_dicom_seg(path: Path) -> LabelImage:
    """A DICOM SEG as a label image (value = class from the segment label, else segment number)."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    numbers = list(seg.segment_numbers)
    volume = seg.get_volume(combine_segments=True, relabel=False)
    array = np.asarray(volume.array)
    out = np.zeros(array.shape, dtype=np.uint8)
    for n in numbers:
        label = (seg.get_segment_description(n).segment_label or "").lower()
        cls = next((c for key, c in SEGMENT_NAME_CLASSES.items() if key in label), n)
        out[array == n] = cls
    return LabelImage(out, LPS_TO_RAS @ np.asarray(volume.affine))


def _first(folder: Path, names: list[str]) -> Path | None:
    for pattern in names:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def _load_modicseg_case(folder: Path, overrides: Mapping[str, Any]) -> LabelledCase:
    meta = json.loads((folder / "case.json").read_text()) if (folder / "case.json").is_file() else {}
    settings = {**meta, **{k: v for k, v in overrides.items() if v is not None}}
    t1_path = _first(folder, ["t1.nii.gz", "t1.nii", "*_T1w.nii.gz", "*_T1w.nii"])
    t2_path = _first(folder, ["t2.nii.gz", "t2.nii", "*_T2w.nii.gz", "*_T2w.nii"])
    t1 = load_nifti_image(t1_path, "T1") if t1_path else None
    t2 = load_nifti_image(t2_path, "T2") if t2_path else None
    if t1 is None and t2 is None and (folder / "dicom").is_dir():
        from modicseg.io.study import StudyRequest, open_study

        study = open_study(StudyRequest(path=folder / "dicom"), require=())
        t1, t2 = study.t1, study.t2
    label_path = _first(folder, ["labels.nii.gz", "labels.nii", "labels.dcm", "seg.dcm", "labels/*.dcm"])
    if label_path is None:
        raise InputError(f"{folder}: no labels.nii.gz or labels.dcm (DICOM SEG)")
    labels = read_dicom_seg(label_path) if label_path.suffix == ".dcm" else load_nifti(label_path, LabelImage)
    return _finish(folder.name, t1, t2, labels, settings.get("label_map"),
                   settings.get("annotated_classes"), {"layout": "modicseg", "path": str(folder)})


def _load_real_spine_case(folder: Path, overrides: Mapping[str, Any]) -> LabelledCase:
    meta = json.loads((folder / "case.json").read_text())
    sequence = str(overrides.get("sequence") or meta.get("sequence", "T2")).upper()
    channel = overrides.get("image_channel") or SEQUENCE_CHANNEL.get(sequence)
    if channel is None:
        raise InputError(f"{folder}: unknown sequence '{sequence}'")
    weighting = SEQUENCE_WEIGHTING.get(sequence, channel)  # the analysis types a STIR with its own bands
    image = load_nifti_image(folder / "image.nii.gz", weighting, f"case.json sequence '{sequence}'")
    label_path = folder / meta.get("label_file", "vertebrae.nii.gz")
    labels = load_nifti(label_path, LabelImage)
    label_map = overrides.get("label_map") or {"*": 1}
    annotated = overrides.get("annotated_classes") or [1]
    return _finish(folder.name, image if channel == "T1" else None, image if channel == "T2" else None,
                   labels, label_map, annotated,
                   {"layout": "real-spine", "sequence": sequence, "path": str(folder),
                    "level_map": str(label_path),
                    "level_names": {int(k): str(v) for k, v in meta.get("levels", {}).items()}})


def same_grid_pair(t1_case: LabelledCase, t2_case: LabelledCase) -> LabelledCase:
    """One subject's T1 case and T2 (or TIRM) case on one grid as one two-contrast case with the
    T2 case's labels and info (real-spine vb1_10 + vb1_11, for example)."""
    t1, t2 = t1_case.t1, t2_case.t2
    if t1 is None or t2 is None:
        raise InputError(f"{t1_case.name} needs a T1 and {t2_case.name} a T2 image")
    if t1.shape != t2.shape or not np.allclose(t1.affine, t2.affine):
        raise InputError(f"{t1_case.name} and {t2_case.name} are not on one grid")
    t1_on_grid = ScalarImage(np.asarray(t1.array), t2.affine)  # the T2's affine, exactly
    return LabelledCase(f"{t1_case.name}+{t2_case.name}", t1_on_grid, t2, t2_case.labels, t2_case.annotated,
                        dict(t2_case.info))


def _load_nnunet(root: Path, overrides: Mapping[str, Any]) -> list[LabelledCase]:
    dataset = json.loads((root / "dataset.json").read_text())
    channels = {int(k): str(v).upper() for k, v in dataset.get("channel_names", dataset.get("modality", {})).items()}
    ext = dataset.get("file_ending", ".nii.gz")
    label_names = dataset.get("labels", {})
    default_map: dict[str, int] = {}
    ours = {**{name: value for value, name in CLASS_NAMES.items()}, "vertebra": BODY, "lesion": LESION}
    for name, value in label_names.items():
        if isinstance(value, int) and name.lower() in ours:
            default_map[str(value)] = ours[name.lower()]
    extra = dataset.get("modicseg", {})
    label_map = overrides.get("label_map") or extra.get("label_map") or default_map or None
    annotated = overrides.get("annotated_classes") or extra.get("annotated_classes")
    if annotated is None and default_map:
        annotated = sorted({v for v in default_map.values() if v > 0})
    held_out = {str(n) for n in extra.get("validation_cases") or []}
    cases = []
    for label_path in sorted((root / "labelsTr").glob("*" + ext)):
        name = label_path.name[: -len(ext)]
        images: dict[str, ScalarImage | None] = {"T1": None, "T2": None}
        for idx, contrast in channels.items():
            p = root / "imagesTr" / f"{name}_{idx:04d}{ext}"
            role = SEQUENCE_CHANNEL.get(contrast, contrast)
            if p.is_file() and role in images:
                images[role] = load_nifti_image(p, role)
        labels = load_nifti(label_path, LabelImage)
        info: dict[str, Any] = {"layout": "nnunet", "path": str(label_path)}
        if name in held_out:
            info["held_out"] = True
        cases.append(_finish(name, images["T1"], images["T2"], labels, label_map, annotated, info))
    return cases


def load_labelled_cases(data_dir: str | Path, overrides: Mapping[str, Any] | None = None,
                        limit: int | None = None, include: Sequence[str] | None = None) -> list[LabelledCase]:
    """The cases of a data folder in any accepted layout (see module docstring): all of them, or
    those named in ``include``, at most ``limit``."""
    root = Path(data_dir)
    overrides = dict(overrides or {})
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    if (root / "dataset.json").is_file() and (root / "labelsTr").is_dir():
        cases = [c for c in _load_nnunet(root, overrides) if include is None or c.name in include]
    else:
        cases = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if include is not None and folder.name not in include:
                continue
            meta_path = folder / "case.json"
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            if (folder / "image.nii.gz").is_file() and "label_file" in meta:
                cases.append(_load_real_spine_case(folder, overrides))
            elif any(folder.glob("labels*")) or any(folder.glob("seg.dcm")):
                cases.append(_load_modicseg_case(folder, overrides))
            if limit is not None and len(cases) >= limit:
                break
    if include is not None:
        missing = set(include) - {c.name for c in cases}
        if missing and limit is None:
            raise InputError(f"{root}: cases not found: {sorted(missing)}")
    if not cases:
        raise InputError(f"{root}: no annotated cases found (see docs/model.md for the folder layouts)")
    return cases[:limit] if limit is not None else cases
