"""Training on real anatomy: lesions and look-alikes painted into real marrow keep exact truth, the
loss ignores unlabelled levels, the subject split is leave-subjects-out, fat-suppressed synthetic
contrast and scanner artefacts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modicseg.model.cases import IGNORE_LABEL
from modicseg.model.config import ModelConfig
from modicseg.model.data import Augmenter, ignore_unlabelled_levels, scanner_artefacts
from modicseg.model.losses import PartialDiceCELoss, group_matrix
from modicseg.model.sources import read_splits
from modicseg.synth import tissues as tis
from modicseg.synth.marrow_paint import RATIO_BANDS, body_components, paint_lesion, paint_lookalike
from tests.conftest import SHARED

SPACING = (4.0, 1.0, 1.0)  # model grid: left-right slices, posterior->anterior, inferior->superior


def spine_phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three box bodies (28 mm high) stacked along the cranio-caudal axis with 9 mm discs between,
    textured marrow ~0.5, discs 0.9, soft tissue 0.3 (one fluid-sensitive-like channel, one T1-like)."""
    rng = np.random.default_rng(seed)
    shape = (9, 60, 120)
    labels = np.zeros(shape, dtype=np.uint8)
    image = np.full((2, *shape), 0.3, dtype=np.float32)
    z = 8
    for _ in range(3):
        labels[1:8, 15:45, z:z + 28] = 1
        image[:, 1:8, 15:45, z:z + 28] = 0.5
        labels[1:8, 17:43, z + 28:z + 37] = 2
        image[:, 1:8, 17:43, z + 28:z + 37] = 0.9
        z += 37
    image *= 1.0 + 0.05 * rng.standard_normal(image.shape).astype(np.float32)
    return image, labels


@pytest.mark.parametrize("seed", range(6))
def test_a_painted_lesion_keeps_exact_truth_against_its_endplate(seed):
    image, labels = spine_phantom(seed)
    comp, n = body_components(labels)
    assert n == 3
    kinds = ("T1", "FS")
    rng = np.random.default_rng(100 + seed)
    out_img, out_lab = image.copy(), labels.copy()
    result = None
    for _ in range(20):  # a draw can be too small to count; the next one is used
        if result is not None:
            break
        result = paint_lesion(out_img, out_lab, comp, 2, SPACING, kinds, rng)
    lesion = out_lab == 3
    # the truth is exactly what was reported, and lies inside the painted body
    assert lesion.sum() == result.voxels > 0
    assert np.all(comp[lesion] == 2)
    assert np.array_equal(out_lab[~lesion], labels[~lesion])
    # it touches the chosen endplate: the top (or bottom) voxel layer of the body
    z = np.nonzero(np.any(comp == 2, axis=(0, 1)))[0]
    edge = z.max() if result.endplate == "superior" else z.min()
    assert lesion[..., edge].any()
    # signal changed only inside that body
    changed = np.any(out_img != image, axis=0)
    assert np.all(comp[changed] == 2)
    # a pure lesion's core has its type's ratio to the same vertebra's normal marrow
    if len(result.types) == 1:
        t = result.types[0]
        core = lesion & (comp == 2)
        for c, kind in enumerate(kinds):
            ratio = np.median(out_img[c][core] / image[c][core])
            lo, hi = RATIO_BANDS[t][kind]
            assert lo * 0.9 <= ratio <= hi * 1.05, (kind, t, ratio)


def test_painting_is_deterministic_for_a_seed():
    image, labels = spine_phantom()
    comp, _ = body_components(labels)
    runs = []
    for _ in range(2):
        img, lab = image.copy(), labels.copy()
        paint_lesion(img, lab, comp, 1, SPACING, ("T1", "T2"), np.random.default_rng(7))
        runs.append((img, lab))
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])


def test_lookalikes_never_carry_the_lesion_label():
    image, labels = spine_phantom(1)
    comp, n = body_components(labels)
    rng = np.random.default_rng(3)
    kinds_seen = set()
    for i in range(60):
        img, lab = image.copy(), labels.copy()
        kind = paint_lookalike(img, lab, comp, 1 + i % n, SPACING, ("T1", "FS"), rng)
        kinds_seen.add(kind)
        assert not np.any(lab == 3), kind
        if kind == "notch":  # disc signal in the endplate: not body any more, and nothing else changed
            removed = (labels == 1) & (lab == 0)
            assert removed.any() and np.array_equal(lab[~removed], labels[~removed])
        else:
            assert np.array_equal(lab, labels), kind
        if kind is not None:
            assert np.any(img != image)
    assert {"haemangioma", "fat_island", "notch", "basivertebral", "disc_partial_volume"} <= kinds_seen


def test_the_loss_ignores_voxels_of_unlabelled_levels():
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 4, 8, 8)
    target = torch.randint(0, 4, (1, 4, 8, 8))
    groups = group_matrix((1, 2, 3), 4)[None]
    loss_fn = PartialDiceCELoss()
    ignored = target.clone()
    ignored[..., :3] = IGNORE_LABEL
    # whatever the labels say or the network predicts in the ignored slab, the loss is the same
    other_logits = logits.clone()
    other_logits[..., :3] = torch.randn_like(other_logits[..., :3]) * 10
    a = loss_fn(logits, ignored, groups)
    b = loss_fn(other_logits, ignored, groups)
    assert torch.isclose(a, b, atol=1e-6)
    # and it differs from the loss that counts those voxels
    assert not torch.isclose(loss_fn(other_logits, target, groups), b)


def test_slabs_beyond_the_labelled_bodies_are_ignored():
    _, labels = spine_phantom()
    z = np.nonzero(np.any(labels == 1, axis=(0, 1)))[0]
    out = ignore_unlabelled_levels(labels, above=True, below=True)
    assert np.all(out[..., z.max() + 1:] == IGNORE_LABEL) and np.all(out[..., : z.min()] == IGNORE_LABEL)
    assert np.array_equal(out[..., z.min(): z.max() + 1], labels[..., z.min(): z.max() + 1])
    only_above = ignore_unlabelled_levels(labels, above=True)
    assert np.array_equal(only_above[..., : z.min()], labels[..., : z.min()])


def test_the_shipped_split_keeps_every_subject_on_one_side():
    splits = read_splits()
    for name, parts in splits.items():
        assert not set(parts["train"]) & set(parts["heldout"]), name
        assert set(parts.get("healthy", [])) <= set(parts["train"]) | set(parts["heldout"])
    real = SHARED / "real-spine"
    if not real.is_dir():
        pytest.skip("../shared/real-spine not found")
    side = {c: "train" for c in splits["real-spine"]["train"]} | {c: "heldout" for c in splits["real-spine"]["heldout"]}
    for case_dir in sorted(p for p in real.iterdir() if (p / "case.json").is_file()):
        meta = json.loads((case_dir / "case.json").read_text())
        assert case_dir.name in side, f"{case_dir.name} is in no split"
        for other in meta.get("same_subject_cases_here", []):
            assert side[other] == side[case_dir.name], (case_dir.name, other)
    dixon = SHARED / "real-spine-dixon"
    if dixon.is_dir():
        names = {p.name for p in dixon.iterdir() if (p / "case.json").is_file()}
        assert names == set(splits["real-spine-dixon"]["train"]) | set(splits["real-spine-dixon"]["heldout"])


def test_fat_suppressed_contrast_darkens_fat_and_marrow_and_keeps_the_type_ratios():
    from types import SimpleNamespace

    from modicseg.synth.render import signal_lut

    lesion = SimpleNamespace(index=0, level="L4", ratios={"0": {"T1": 0.55, "T2": 1.8}, "1": {"T1": 1.5, "T2": 1.2}},
                             part_type=lambda part: 1 if part == 0 else 2)  # part 0 oedema, part 1 fat
    spine = SimpleNamespace(vertebrae=[SimpleNamespace(index=3, level="L4")])
    from modicseg.synth.randomize import Appearance, draw_sequences

    rng = np.random.default_rng(0)
    props = dict(tis.TISSUE_PROPERTIES)
    props[tis.MARROW_BASE + 3] = tis.MARROW
    app = Appearance(properties=props, sequences=draw_sequences(rng))
    t2 = signal_lut(app, "T2", spine, [lesion])
    app.fat_suppressed_ti = tis.TISSUE_PROPERTIES[tis.FAT].t1 * np.log(2.0)
    stir = signal_lut(app, "T2", spine, [lesion])
    marrow_t2, marrow_stir = t2[tis.MARROW_BASE + 3], stir[tis.MARROW_BASE + 3]
    assert stir[tis.FAT] < 0.05 * t2[tis.FAT]  # fat nulled
    assert stir[tis.CSF] / marrow_stir > 2 * t2[tis.CSF] / marrow_t2  # marrow dark against fluid
    oedema, fat = tis.lesion_part_id(0, 0), tis.lesion_part_id(0, 1)
    assert stir[oedema] / marrow_stir > t2[oedema] / marrow_t2 > 1.2  # type 1 brighter still
    assert stir[fat] / marrow_stir < 1.0 < t2[fat] / marrow_t2  # type-2 fat suppressed


def test_scanner_artefacts_change_the_image_and_never_the_labels():
    config = ModelConfig.from_dict({"patch_size": [16, 48, 48]}).resolved()
    settings = {"flip_lr": 0.0, "affine": 0.0, "noise": 0.0, "bias_field": 0.0, "gamma": 0.0, "smooth": 0.0,
                "scale_intensity": 0.0, "artefacts": {"motion": 1.0, "ghosting": 1.0, "spike": 1.0, "anisotropy": 1.0}}
    aug = Augmenter(config, settings)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    image = rng.random((2, 16, 48, 48)).astype(np.float32)
    labels = (rng.random((16, 48, 48)) > 0.5).astype(np.uint8)
    out, out_labels, present = aug(image, labels, (True, True), rng)
    assert out.shape == image.shape and np.array_equal(out_labels, labels) and present == (True, True)
    assert np.abs(out - image).mean() > 1e-3
    with pytest.raises(ValueError, match="unknown artefacts"):
        scanner_artefacts({"wobble": 1.0}, SPACING)
