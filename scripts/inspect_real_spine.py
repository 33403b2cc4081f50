"""Where the model disagrees with the real-spine vertebral-body masks: overlays and voxel counts.

    .venv/bin/python scripts/inspect_real_spine.py -o /tmp/real-overlays [--model DIR] [--cases vb1_02 vb1_16]

For every case of ``../shared/real-spine`` (or those named), segments the image with the model,
counts true-positive, extra (predicted body, not in the mask) and missed voxels, splits the extra
voxels into those of structures beyond the annotated levels (``metrics.beyond_annotated_levels``)
and the rest, and writes ``<case>.png``: three sagittal slices with the agreement in green, extra
voxels in red and missed voxels in blue. ``summary.csv`` holds the counts, voxel precision and
recall, and ``dice_convention_bound`` (see ``convention_bound``). Output goes to the folder given,
never into the repository.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

def convention_bound(pred: np.ndarray, truth: np.ndarray, slice_axis: int, si_axis: int) -> np.ndarray:
    """The prediction stripped, with the mask's help, of what a labelling convention could explain.

    Drops predicted components touching no mask voxel, voxels outside the mask's cranio-caudal and
    left-right range, voxels more than 3 voxels below the lowest mask voxel of their column (the
    sacrum below S1), then erodes one voxel within each sagittal slice. Dice of the result against
    the mask bounds what boundary conventions alone can explain (an oracle, not a method).
    """
    from scipy import ndimage

    comp, _ = ndimage.label(pred)
    touched = np.unique(comp[truth & pred])
    out = np.isin(comp, touched[touched > 0])
    for axis in (si_axis, slice_axis):
        other = tuple(a for a in range(3) if a != axis)
        where = np.flatnonzero(truth.any(axis=other))
        keep = np.zeros(truth.shape[axis], dtype=bool)
        keep[where[0]:where[-1] + 1] = True
        out &= np.expand_dims(keep, other)
    moved = np.moveaxis(truth, si_axis, 0)
    has = moved.any(axis=0)
    lowest = np.where(has, moved.shape[0] - 1 - np.argmax(moved[::-1], axis=0), moved.shape[0])
    rows = np.arange(moved.shape[0]).reshape(-1, 1, 1)
    out &= np.moveaxis(rows <= lowest[None] + 3, 0, si_axis)
    in_plane = np.expand_dims(ndimage.generate_binary_structure(2, 1), slice_axis)  # cross within a slice
    return ndimage.binary_erosion(out, in_plane)


COLOURS = {"agree": (0.0, 1.0, 0.0, 0.35), "extra": (1.0, 0.0, 0.0, 0.5), "missed": (0.0, 0.3, 1.0, 0.5)}


def overlay(path: Path, title: str, image: np.ndarray, pred: np.ndarray, truth: np.ndarray, slice_axis: int) -> None:
    """Three slices across the annotated bodies (a quarter, half and three quarters of their extent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    where = np.flatnonzero(truth.any(axis=tuple(a for a in range(3) if a != slice_axis)))
    picks = [int(where[0] + f * (where[-1] - where[0])) for f in (0.25, 0.5, 0.75)] if where.size else [0]
    fig, axes = plt.subplots(1, len(picks), figsize=(6 * len(picks), 6.5))
    for ax, k in zip(np.atleast_1d(axes), picks, strict=True):
        take = [slice(None)] * 3
        take[slice_axis] = k
        sl = tuple(take)
        ax.imshow(image[sl], cmap="gray")
        rgba = np.zeros((*image[sl].shape, 4))
        p, t = pred[sl], truth[sl]
        rgba[p & t], rgba[p & ~t], rgba[t & ~p] = COLOURS["agree"], COLOURS["extra"], COLOURS["missed"]
        ax.imshow(rgba)
        ax.set_title(f"{title}, slice {k}")
        ax.axis("off")
    fig.suptitle("green: model and mask agree, red: extra (model only), blue: missed (mask only)")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the PNGs and summary.csv")
    parser.add_argument("--model", type=Path, default=REPO / "models" / "modicseg-unet-v1")
    parser.add_argument("--real", type=Path, default=Path(os.environ.get("MODICSEG_SHARED", REPO.parent / "shared"))
                        / "real-spine")
    parser.add_argument("--cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from modicseg.model.cases import load_labelled_cases
    from modicseg.model.inference import Segmenter
    from modicseg.model.metrics import beyond_annotated_levels, dice, precision_recall, predicted_group

    if args.output.resolve().is_relative_to(REPO):
        parser.error("write the overlays outside the repository")
    args.output.mkdir(parents=True, exist_ok=True)
    seg = Segmenter.load(args.model, device=args.device)
    rows = []
    for case in load_labelled_cases(args.real):
        if args.cases and case.name not in args.cases:
            continue
        image = case.t1 if case.t1 is not None else case.t2
        labels = np.asarray(seg.segment(t1=case.t1, t2=case.t2).array)
        truth = np.asarray(case.labels.array) == 1
        pred = predicted_group(labels, 1, case.annotated, seg.config.nested)
        beyond = beyond_annotated_levels(pred, truth, case.labels.affine)
        rows.append({"case": case.name, "sequence": case.info.get("sequence"), "dice": round(dice(pred, truth), 4),
                     "truth_voxels": int(truth.sum()), "agree": int((pred & truth).sum()),
                     "extra_beyond_annotated_levels": int(beyond.sum()),
                     "extra_other": int((pred & ~truth & ~beyond).sum()), "missed": int((truth & ~pred).sum())})
        slice_axis = int(np.argmax(np.abs(case.labels.affine[0, :3])))  # the left-right (sagittal slice) axis
        si_axis = int(np.argmax(np.abs(case.labels.affine[2, :3])))
        precision, recall = precision_recall(pred, truth)
        rows[-1].update({"precision": round(precision, 3), "recall": round(recall, 3),
                         "dice_convention_bound": round(dice(convention_bound(pred, truth, slice_axis, si_axis),
                                                             truth), 4)})
        overlay(args.output / f"{case.name}.png", f"{case.name} ({rows[-1]['sequence']})",
                np.asarray(image.array, dtype=float), pred, truth, slice_axis)
        print(", ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    with open(args.output / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"overlays and summary.csv in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
