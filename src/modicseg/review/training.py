"""``review export --training-data``: the readers' corrected label maps as a fine-tuning dataset.

Written in the nnU-Net raw layout that ``modicseg finetune --data`` reads (``model.cases``)::

    DIR/dataset.json                 channel names, labels, numTraining, training list, held-out cases
    DIR/imagesTr/CODE_0000.nii.gz    T1 on the case's grid (when the package has it)
    DIR/imagesTr/CODE_0001.nii.gz    T2
    DIR/labelsTr/CODE.nii.gz         0 background, 1 vertebral body, 2 disc, 3 Modic lesion, 255 unlabelled

A label map is the case's anatomy (vertebral bodies and discs as the model drew them: readers
correct lesions, not anatomy) with the readers' lesions on it:

* default, one map per case: the **voxelwise majority** of the readers who read it (a voxel is a
  lesion when more than half of them left it one, not a lesion when fewer than half did); where
  they tie (half and half) the voxel is ``IGNORE`` (255), which the fine-tuning loss and its
  validation Dice leave out;
* ``per_reader``: one map per reader and case, named ``CODE_rN`` (reader N of the readers sorted
  by name; names are not written).

Only reads marked done count (``include_unfinished`` for all); cases nobody read are left out.
``validation_fraction`` of the cases (by case code, so one case's per-reader maps stay together)
are named in ``dataset.json`` → ``modicseg.validation_cases``: fine-tuning holds them out for its
before/after table.  Case names are the package's blinded codes and images are copied from the
package (blinded NIfTI), so nothing identifies a patient; no reader name, date, path or UID is
written.  No key is needed; given one (``key``), every file is searched for its subjects, time
points and arms before anything is moved into place, and the key may not lie inside the export.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.core.image import LabelImage
from modicseg.core.labels import BACKGROUND, BODY, CLASS_NAMES, IGNORE, LESION, STRUCTURE_VALUES
from modicseg.core.version import __version__
from modicseg.io.atomic import atomic_output_dir, check_output_dir
from modicseg.io.errors import InputError
from modicseg.review.db import ReadRecord, load_mask
from modicseg.review.export import collect_reads, read_sources
from modicseg.review.key import read_key
from modicseg.review.pack import BlindingError, check_blinded
from modicseg.review.package import CASE_IMAGES, Package, reader_key
from modicseg.review.volumes import write_blinded_nifti

#: nnU-Net channel index of each package image
CHANNELS = {"t1": 0, "t2": 1}
CHANNEL_NAMES = {"0": "T1", "1": "T2"}
FILE_ENDING = ".nii.gz"


@dataclass
class TrainingExport:
    """What ``export_training_data`` wrote."""

    folder: Path
    cases: list[str]  # training-case names (CODE, or CODE_rN per reader)
    validation: list[str]  # those held out
    read_cases: int  # package cases with at least one counted read
    ignored_voxels: int = 0  # voxels left unlabelled where readers tie
    notes: list[str] = field(default_factory=list)


def consensus(anatomy: np.ndarray, masks: Sequence[np.ndarray]) -> tuple[np.ndarray, int]:
    """(label map, voxels tied): ``anatomy`` (1 body, 2 disc) with ``LESION`` where more than half of
    the readers' lesion masks (> 0 = lesion) mark a lesion and ``IGNORE`` where exactly half do."""
    if not masks:
        raise ValueError("consensus needs at least one reader's mask")
    votes = np.zeros(anatomy.shape, dtype=np.int32)
    for mask in masks:
        votes += np.asarray(mask) > 0
    readers = len(masks)
    labels = np.asarray(anatomy, dtype=np.uint8).copy()
    labels[labels == LESION] = BODY  # the anatomy layer holds none; a lesion nobody kept is body
    labels[2 * votes > readers] = LESION
    tied = (2 * votes == readers) & (votes > 0)
    labels[tied] = IGNORE
    return labels, int(tied.sum())


def reader_labels(anatomy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One reader's label map: ``anatomy`` with ``LESION`` wherever the reader left a lesion."""
    labels, _ = consensus(anatomy, [mask])
    return labels


def held_out(codes: Sequence[str], fraction: float, seed: int) -> list[str]:
    """Case codes held out for validation: ``fraction`` of them (at least one, at most all but one,
    when there are two or more and ``fraction`` > 0), chosen with ``seed``."""
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"validation fraction must be in [0, 1), not {fraction}")
    codes = sorted(codes)
    if len(codes) < 2 or fraction == 0.0:
        return []
    count = min(max(int(round(fraction * len(codes))), 1), len(codes) - 1)
    return sorted(random.Random(seed).sample(codes, count))


def _check_destination(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{folder}: exists and is not empty (training data is written into a new folder)")


def dataset_json(entries: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    """nnU-Net style ``dataset.json`` of the written cases."""
    labels = {CLASS_NAMES[v]: v for v in (BACKGROUND, *STRUCTURE_VALUES)}
    labels["ignore"] = IGNORE  # nnU-Net v2's name for "no label here"; the highest value, as it asks
    return {
        "name": "modicseg-review-corrections",
        "description": ("readers' corrected label maps of a blinded reading package ("
                        + ("one per reader and case" if info["per_reader"] else
                           "voxelwise majority of readers; ties unlabelled (255, ignored by the loss)") + ")"),
        "channel_names": dict(CHANNEL_NAMES),
        "labels": labels,
        "numTraining": len(entries),
        "file_ending": FILE_ENDING,
        "training": [{"image": [f"./imagesTr/{e['name']}_{c:04d}{FILE_ENDING}" for c in e["channels"]],
                      "label": f"./labelsTr/{e['name']}{FILE_ENDING}"} for e in entries],
        "modicseg": {
            "source": "modicseg review export --training-data",
            "package_id": info["package_id"],
            "labels_from": "per reader" if info["per_reader"] else "majority of readers",
            "annotated_classes": list(STRUCTURE_VALUES),
            "corrected_classes": [LESION],
            "validation_cases": info["validation"],
            "cases": {e["name"]: {k: v for k, v in e.items() if k not in ("name", "channels")} for e in entries},
            "written_by": f"modicseg {__version__}",
        },
    }


def export_training_data(package_path: str | Path, out: str | Path, *, db_url: str | Sequence[str] | None = None,
                         masks_dir: str | Path | None = None, per_reader: bool = False,
                         include_unfinished: bool = False, validation_fraction: float = 0.25, seed: int = 0,
                         key: str | Path | None = None) -> TrainingExport:
    """Write the readers' corrected label maps with their images into ``out`` (new or empty), all or
    nothing; see the module docstring."""
    package = Package.open(package_path)
    folder = Path(out)
    _check_destination(folder)
    check_output_dir(folder)  # writable, before any work
    tokens: list[str] = []
    if key is not None:
        if Path(key).resolve().is_relative_to(folder.resolve()):
            raise InputError(f"{key}: the key must stay outside the training data ({folder})")
        for entry in read_key(Path(key), package.package_id).values():
            folders = [p for p in Path(entry.source).parts[-3:] if any(c.isdigit() for c in p)]
            tokens += [entry.subject, entry.timepoint, entry.arm, entry.source, *folders]
    sources = read_sources(package, db_url, masks_dir)
    records, notes = collect_reads(package, sources, None if include_unfinished else "done")
    by_case: dict[str, list[ReadRecord]] = {}
    for record in records:
        if record.case_code in package.codes:
            by_case.setdefault(record.case_code, []).append(record)
    if not by_case:
        which = "reads" if include_unfinished else "reads marked done (--include-unfinished counts the others)"
        raise InputError(f"{package.root}: no {which} in the reads database(s): nothing to export")
    readers = sorted({reader_key(r.reader) for r in records})
    reader_code = {name: f"r{n}" for n, name in enumerate(readers, start=1)}
    unread = len(set(package.codes) - set(by_case))
    if unread:
        notes.append(f"{unread} case(s) without a counted read left out")
    validation_codes = held_out(list(by_case), validation_fraction, seed)
    entries: list[dict[str, Any]] = []
    ignored = 0
    with atomic_output_dir(folder) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        for code in sorted(by_case):
            case = package.case(code)
            anatomy_image = case.labels("anatomy")
            anatomy = np.asarray(anatomy_image.array)
            masks: list[tuple[str, np.ndarray]] = []
            for record in sorted(by_case[code], key=lambda r: reader_key(r.reader)):
                mask = load_mask(record)
                if mask is None:
                    notes.append(f"case {code}: a read without a saved mask left out")
                    continue
                if mask.shape != anatomy.shape:
                    raise InputError(f"{record.mask_file}: mask shape {mask.shape} is not the case's "
                                     f"{anatomy.shape} (case {code})")
                masks.append((reader_code[reader_key(record.reader)], mask))
            if not masks:
                continue
            if per_reader:
                maps = [(f"{code}_{who}", reader_labels(anatomy, mask), {"reader": who, "readers": 1})
                        for who, mask in masks]
            else:
                labels, tied = consensus(anatomy, [m for _, m in masks])
                ignored += tied
                maps = [(code, labels, {"readers": len(masks), "ignored_voxels": tied})]
            for name, labels, extra in maps:
                channels = []
                for role, channel in CHANNELS.items():
                    image = case.folder / CASE_IMAGES[role]
                    if image.is_file():  # already a blinded NIfTI: copied as it is
                        shutil.copyfile(image, tmp / "imagesTr" / f"{name}_{channel:04d}{FILE_ENDING}")
                        channels.append(channel)
                write_blinded_nifti(LabelImage(labels, anatomy_image.affine.copy()),
                                    tmp / "labelsTr" / f"{name}{FILE_ENDING}")
                entries.append({"name": name, "channels": channels, "case": code,
                                "lesion_voxels": int((labels == LESION).sum()), **extra})
        names = [e["name"] for e in entries]
        validation = [e["name"] for e in entries if e["case"] in validation_codes]
        info = {"package_id": package.package_id, "per_reader": per_reader, "validation": validation}
        (tmp / "dataset.json").write_text(json.dumps(dataset_json(entries, info), indent=1) + "\n")
        if tokens:
            problems = check_blinded(tmp, tokens, generated=[*package.codes, package.package_id, *names])
            if problems:
                shown = "\n  ".join(problems[:10])
                raise BlindingError(f"identifiers would leak into the training data; nothing written:\n  {shown}")
    return TrainingExport(folder, names, validation, len(by_case), ignored, notes)
