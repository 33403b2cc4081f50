"""Training data: model-space volumes (synthetic on the fly, or annotated cases), patch sampling,
MONAI augmentations, channel dropout, and the infinite training stream."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from monai.transforms import (
    RandAffined,
    RandBiasField,
    RandGaussianNoise,
    RandGaussianSmooth,
    RandScaleIntensity,
)

from modicseg.core.labels import BODY
from modicseg.model.cases import ALL_CLASSES, IGNORE_LABEL, LabelledCase
from modicseg.model.config import ModelConfig
from modicseg.model.losses import group_matrix
from modicseg.model.preprocess import normalize_intensity, resample_labels_to_grid, to_model_space


@dataclass
class TrainingVolume:
    """One volume in model space: normalised channels (``config.channels`` order), which are
    present, labels (model classes) and the annotated classes."""

    image: np.ndarray  # [n_contrasts, X, Y, Z] float32, normalised; absent channels hold anything
    present: tuple[bool, ...]
    labels: np.ndarray  # [X, Y, Z] uint8
    annotated: tuple[int, ...] = ALL_CLASSES
    name: str = ""
    kinds: tuple[str | None, ...] = ()  # per channel: "T1", "T2", "FS" (fat-suppressed) or None (absent)
    paint: bool = False  # paint Modic-like lesions and look-alikes into its marrow per sample


VolumeFn = Callable[[np.random.Generator], TrainingVolume]


def volume_from_arrays(image: np.ndarray, labels: np.ndarray, config: ModelConfig,
                       present: Sequence[bool] | None = None, annotated: Sequence[int] = ALL_CLASSES,
                       name: str = "") -> TrainingVolume:
    """Normalise raw channels (``config.channels`` order) of a model-space sample."""
    present = tuple(present) if present is not None else (True,) * image.shape[0]
    norm = np.stack([normalize_intensity(c, config) if p else np.zeros_like(c, dtype=np.float32)
                     for c, p in zip(image, present, strict=True)])
    return TrainingVolume(norm, present, np.asarray(labels, dtype=np.uint8), tuple(annotated), name)


FAT_SUPPRESSED_SEQUENCES = ("STIR", "TIRM", "FS", "DIXON_WATER")


def channel_kinds(case: LabelledCase, config: ModelConfig) -> tuple[str | None, ...]:
    """Per model channel: "T1", "T2", "FS" (a fat-suppressed fluid-sensitive image in the T2
    channel: STIR, TIRM, Dixon water) or None where the case has no such image."""
    sequence = str(case.info.get("sequence", "")).upper()
    kinds: list[str | None] = []
    for name in config.channels:
        if name not in case.contrasts:
            kinds.append(None)
        elif name == "T2" and sequence in FAT_SUPPRESSED_SEQUENCES:
            kinds.append("FS")
        else:
            kinds.append(name)
    return tuple(kinds)


def ignore_unlabelled_levels(labels: np.ndarray, above: bool = True, below: bool = False) -> np.ndarray:
    """Labels with the cranio-caudal slabs above the highest / below the lowest labelled body set
    to ``IGNORE_LABEL`` (model axis 2 = inferior -> superior): bodies-only masks that stop at L1
    or L5 while T12 or the sacrum is in view say nothing about the voxels there."""
    out = np.array(labels, copy=True)
    z = np.nonzero(np.any(out == BODY, axis=(0, 1)))[0]
    if z.size == 0:
        return out
    if above:
        out[..., z.max() + 1:] = IGNORE_LABEL
    if below:
        out[..., : z.min()] = IGNORE_LABEL
    return out


def case_to_volume(case: LabelledCase, config: ModelConfig, paint: bool = False,
                   ignore_above: bool = False, ignore_below: bool = False) -> TrainingVolume:
    """An annotated case resampled into model space (images linear, labels nearest).

    ``paint``: lesions and look-alikes are painted into its marrow per sample (``synth.marrow_paint``;
    use only on scans without real lesions, the lesion class then counts as annotated).
    ``ignore_above`` / ``ignore_below``: the loss ignores the slabs beyond the labelled bodies."""
    x, grid = to_model_space({"T1": case.t1, "T2": case.t2}, config, reference=case.reference)
    n = len(config.channels)
    labels = resample_labels_to_grid(case.labels, grid).astype(np.uint8)
    if ignore_above or ignore_below:
        labels = ignore_unlabelled_levels(labels, ignore_above, ignore_below)
    present = tuple(name in case.contrasts for name in config.channels)
    annotated = tuple(sorted({*case.annotated, 3})) if paint else case.annotated
    return TrainingVolume(x[:n], present, labels, annotated, case.name, channel_kinds(case, config), paint)


def random_intensity_curve(channel: np.ndarray, rng: np.random.Generator, monotone: float = 0.75) -> np.ndarray:
    """A random piecewise-linear remapping of a normalised channel (real-anatomy stand-in for
    SynthSeg's per-tissue random intensities): increasing with probability ``monotone``, else any
    order, so marrow, fat, fluid and muscle trade places."""
    knots_x = np.linspace(0.0, 1.5, 7)
    if rng.random() < monotone:
        steps = rng.gamma(1.0, 1.0, 6)
        knots_y = np.concatenate([[0.0], np.cumsum(steps)])
        knots_y *= 1.2 / knots_y[-1]
    else:
        knots_y = np.concatenate([[0.0], rng.uniform(0.05, 1.2, 6)])
    return np.interp(channel, knots_x, knots_y).astype(np.float32)


def sample_real_volume(vol: TrainingVolume, config: ModelConfig, settings: Mapping[str, Any],
                       rng: np.random.Generator) -> TrainingVolume:
    """A per-sample variant of a real volume: random intensity curves, then painted lesions and
    look-alikes (``settings``: the ``data.real.paint`` section)."""
    from modicseg.synth.marrow_paint import paint_real_volume

    image, labels = vol.image, vol.labels
    p_curve = float(settings.get("intensity_curve", 0.0))
    if p_curve > 0 and any(vol.present):
        image = image.copy()
        for c, p in enumerate(vol.present):
            if p and rng.random() < p_curve:
                image[c] = random_intensity_curve(image[c], rng)
    if vol.paint:
        kinds = vol.kinds or tuple(n if p else None for n, p in zip(config.channels, vol.present, strict=True))
        lesions = tuple(settings.get("lesions", (0, 3)))
        lookalikes = tuple(settings.get("lookalikes", (0, 3)))
        image, labels, _ = paint_real_volume(image, labels, config.spacing_mm, kinds, rng,
                                             lesions=(int(lesions[0]), int(lesions[1])),
                                             lookalikes=(int(lookalikes[0]), int(lookalikes[1])))
    return TrainingVolume(image, vol.present, labels, vol.annotated, vol.name, vol.kinds, vol.paint)


# --- synthetic volumes --------------------------------------------------------------------------

def synthetic_volume_fn(config: ModelConfig, settings: Mapping[str, Any]) -> VolumeFn:
    """Synthetic training volumes in model space, with randomised slice spacing and field of view.

    ``settings``: the ``data.synthetic`` section (``source``: "synth" = ``modicseg.synth`` or "toy" =
    the phantom of ``modicseg.model.toy``; ``slice_spacing_mm`` range; ``fov_mm``; ``generator``
    keyword arguments).
    """
    source = settings.get("source", "synth")
    lo, hi = settings.get("slice_spacing_mm", [3.0, 4.5])
    fov = np.asarray(settings.get("fov_mm", [60.0, 200.0, 240.0]), dtype=float)
    kwargs = dict(settings.get("generator") or {})

    if source == "toy":
        from modicseg.model.toy import toy_sample

        def toy(rng: np.random.Generator) -> TrainingVolume:
            shape = cast("tuple[int, int, int]", tuple(int(s) for s in kwargs.get("shape", config.patch_size)))
            image, labels = toy_sample(rng, shape)
            return volume_from_arrays(image, labels, config, name="toy")
        return toy

    if source != "synth":
        raise ValueError(f"unknown synthetic source '{source}'")
    from modicseg.model.synth_adapter import synth_training_sample

    def synth(rng: np.random.Generator) -> TrainingVolume:
        slice_mm = float(rng.uniform(lo, hi))
        spacing = (slice_mm, float(config.spacing_mm[1]), float(config.spacing_mm[2]))
        jitter = rng.uniform(0.85, 1.15, size=3)
        shape = cast("tuple[int, int, int]", tuple(int(max(p, round(f * j / s))) for f, j, s, p in
                                                 zip(fov, jitter, spacing, config.patch_size, strict=True)))
        image, labels = synth_training_sample(rng, spacing, shape, **kwargs)
        return volume_from_arrays(image, labels, config, name="synthetic")
    return synth


# --- patches and augmentation -------------------------------------------------------------------

def crop_patch(vol: TrainingVolume, patch: Sequence[int], rng: np.random.Generator,
               foreground_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A patch (padded where the volume is smaller) centred on foreground with the given probability;
    each present foreground class is equally likely, so small lesions are seen often."""
    shape = np.asarray(vol.labels.shape)
    patch_arr = np.asarray(patch)
    centre = None
    if rng.random() < foreground_fraction:
        classes = [c for c in np.unique(vol.labels) if 0 < c < IGNORE_LABEL]
        if classes:
            idx = np.argwhere(vol.labels == rng.choice(classes))
            centre = idx[rng.integers(len(idx))]
    if centre is None:
        centre = np.array([rng.integers(0, s) for s in shape])
    start = centre - patch_arr // 2
    start = np.clip(start, np.minimum(0, shape - patch_arr), np.maximum(0, shape - patch_arr))
    image = np.zeros((vol.image.shape[0], *patch), dtype=np.float32)
    labels = np.zeros(tuple(patch), dtype=np.uint8)
    src = tuple(slice(max(0, s), min(n, s + p)) for s, n, p in zip(start, shape, patch_arr, strict=True))
    dst = tuple(slice(max(0, -s), max(0, -s) + (sl.stop - sl.start)) for s, sl in zip(start, src, strict=True))
    dst_all, src_all = (slice(None), *dst), (slice(None), *src)  # (every channel, *window)
    image[dst_all] = vol.image[src_all]
    labels[dst] = vol.labels[src]
    return image, labels


class Augmenter:
    """MONAI spatial and intensity augmentations on a model-space patch, then channel dropout."""

    def __init__(self, config: ModelConfig, settings: Mapping[str, Any]) -> None:
        self.config = config
        s = dict(settings)
        self.s = s
        rot = math.radians(float(s.get("rotate_deg", 12.0)))
        scale = float(s.get("scale", 0.1))
        self.affine = RandAffined(keys=["image", "label"], prob=float(s.get("affine", 0.3)),
                                  rotate_range=(rot, 0.0, 0.0), scale_range=(0.0, scale, scale),
                                  mode=("bilinear", "nearest"), padding_mode="zeros")
        self.noise = RandGaussianNoise(prob=1.0, mean=0.0, std=0.06)
        self.bias = RandBiasField(prob=1.0, coeff_range=(0.1, 0.4), degree=3)
        self.smooth = RandGaussianSmooth(prob=1.0, sigma_x=(0.0, 0.0), sigma_y=(0.3, 1.0), sigma_z=(0.3, 1.0))
        self.scale_int = RandScaleIntensity(prob=1.0, factors=0.2)
        self.artefacts = scanner_artefacts(s.get("artefacts") or {}, config.spacing_mm)

    def set_seed(self, seed: int) -> None:
        for t in (self.affine, self.noise, self.bias, self.smooth, self.scale_int):
            t.set_random_state(seed=seed % (2**32))

    def __call__(self, image: np.ndarray, labels: np.ndarray, present: tuple[bool, ...],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[bool, ...]]:
        s = self.s
        if rng.random() < float(s.get("flip_lr", 0.5)):
            image, labels = image[:, ::-1], labels[::-1]
        if float(s.get("affine", 0.0)) > 0:
            out = self.affine({"image": torch.as_tensor(np.ascontiguousarray(image)),
                               "label": torch.as_tensor(np.ascontiguousarray(labels[None]), dtype=torch.float32)})
            image = np.asarray(out["image"], dtype=np.float32)
            labels = np.asarray(out["label"])[0].round().astype(np.uint8)
        channels = []
        for c, p in zip(image, present, strict=True):
            c = np.ascontiguousarray(c)[None]
            if p:
                if rng.random() < float(s.get("gamma", 0.0)):
                    lo = float(c.min())
                    c = lo + np.power(np.clip(c - lo, 0, None), rng.uniform(0.7, 1.5))
                if rng.random() < float(s.get("bias_field", 0.0)):
                    c = np.asarray(self.bias(c))
                if rng.random() < float(s.get("scale_intensity", 0.0)):
                    c = np.asarray(self.scale_int(c))
                if rng.random() < float(s.get("smooth", 0.0)):
                    c = np.asarray(self.smooth(c))
                if rng.random() < float(s.get("noise", 0.0)):
                    c = np.asarray(self.noise(c))
                for prob, transform in self.artefacts:
                    if rng.random() < prob:
                        c = apply_torchio(transform, c, self.config.spacing_mm)
            channels.append(np.asarray(c, dtype=np.float32)[0])
        image = np.stack(channels)
        present = self.channel_dropout(present, rng)
        return image, labels, present

    def channel_dropout(self, present: tuple[bool, ...], rng: np.random.Generator) -> tuple[bool, ...]:
        """Drop (at most all but one of) the present contrasts with their configured probabilities."""
        drop = dict(self.s.get("channel_dropout") or {})
        out = list(present)
        for i, name in enumerate(self.config.channels):
            if out[i] and sum(out) > 1 and rng.random() < float(drop.get(name, 0.0)):
                out[i] = False
        return tuple(out)


def scanner_artefacts(settings: Mapping[str, Any], spacing: Sequence[float]) -> list[tuple[float, Any]]:
    """(probability, TorchIO transform) pairs for the MRI artefacts of real scanners: k-space motion,
    ghosting, spikes and thick-slice / anisotropic resolution (``augment.artefacts``: probability
    per artefact, 0 = off). Bias, blur, gamma and noise are MONAI's, above."""
    import torchio as tio

    in_plane_axes = (1, 2)  # model axes 1 (P->A) and 2 (I->S): the sagittal plane
    catalogue = {
        "motion": lambda: tio.RandomMotion(degrees=4, translation=4, num_transforms=2),
        "ghosting": lambda: tio.RandomGhosting(num_ghosts=(2, 8), axes=in_plane_axes, intensity=(0.15, 0.6)),
        "spike": lambda: tio.RandomSpike(num_spikes=(1, 2), intensity=(0.05, 0.3)),
        "anisotropy": lambda: tio.RandomAnisotropy(axes=in_plane_axes, downsampling=(1.5, 3.5)),
    }
    unknown = set(settings) - set(catalogue)
    if unknown:
        raise ValueError(f"augment.artefacts: unknown artefacts {sorted(unknown)} (known: {sorted(catalogue)})")
    return [(float(p), catalogue[name]()) for name, p in settings.items() if float(p) > 0]


def apply_torchio(transform: Any, channel: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """One TorchIO intensity transform on a [1, X, Y, Z] channel with the model grid's spacing."""
    import torchio as tio

    image = tio.ScalarImage(tensor=torch.as_tensor(np.ascontiguousarray(channel), dtype=torch.float32),
                            affine=np.diag([*(float(v) for v in spacing), 1.0]))
    out = transform(image)
    return np.asarray(out.data, dtype=np.float32)


def network_input(image: np.ndarray, present: Sequence[bool], config: ModelConfig) -> np.ndarray:
    """Normalised channels -> network input: absent channels set to the missing value, flags appended."""
    missing = float(config.normalization.get("missing_channel_value", 0.0))
    chans = [c if p else np.full_like(c, missing) for c, p in zip(image, present, strict=True)]
    if config.presence_flags:
        chans += [np.full_like(image[0], 1.0 if p else 0.0) for p in present]
    return np.stack(chans).astype(np.float32)


# --- the stream ---------------------------------------------------------------------------------

class TrainingStream(torch.utils.data.IterableDataset):
    """Endless (image, labels, groups) patches: a pool of synthetic volumes refreshed on the fly,
    mixed with annotated real volumes with probability ``real_fraction``."""

    def __init__(self, config: ModelConfig, settings: Mapping[str, Any], real_volumes: Sequence[TrainingVolume] = (),
                 seed: int = 0, volume_fn: VolumeFn | None = None) -> None:
        super().__init__()
        self.config = config
        self.settings = settings
        self.custom_volume_fn = volume_fn
        self.real = list(real_volumes)
        self.seed = seed
        data = settings["data"]
        self.synthetic = volume_fn is not None or bool(data["synthetic"].get("enabled", True))
        self.pool_size = int(data["synthetic"].get("pool_size", 16))
        self.refresh_every = max(1, int(data["synthetic"].get("refresh_every", 4)))
        self.real_fraction = float(data["real"].get("fraction", 0.0)) if self.real else 0.0
        if not self.synthetic:
            self.real_fraction = 1.0
        if not self.synthetic and not self.real:
            raise ValueError("no training data: neither synthetic data nor annotated cases")
        self.fg = float(data.get("foreground_fraction", 0.67))

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, worker])
        augmenter = Augmenter(self.config, self.settings["augment"])
        augmenter.set_seed(int(rng.integers(2**31)))
        volume_fn = self.custom_volume_fn
        if volume_fn is None and self.synthetic:
            volume_fn = synthetic_volume_fn(self.config, self.settings["data"]["synthetic"])
        pool: list[TrainingVolume] = []
        n = 0
        n_classes = self.config.out_channels
        while True:
            if rng.random() < self.real_fraction:
                vol = self.real[int(rng.integers(len(self.real)))]
                vol = sample_real_volume(vol, self.config, self.settings["data"]["real"].get("paint") or {}, rng)
            else:
                assert volume_fn is not None
                if len(pool) < self.pool_size and (not pool or n % self.refresh_every == 0 or len(pool) < 2):
                    pool.append(volume_fn(rng))
                elif n % self.refresh_every == 0:
                    pool[int(rng.integers(len(pool)))] = volume_fn(rng)
                vol = pool[int(rng.integers(len(pool)))]
            n += 1
            image, labels = crop_patch(vol, self.config.patch_size, rng, self.fg)
            image, labels, present = augmenter(image, labels, vol.present, rng)
            x = network_input(image, present, self.config)
            groups = group_matrix(vol.annotated, n_classes, self.config.nested)
            yield torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64)), groups
