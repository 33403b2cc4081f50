"""Into the model's space and back: reorient, resample to the model spacing, normalise; and the
inverse (class probabilities resampled onto the reference T2 grid, then argmax).

The model grid keeps the reference image's directions (only permuted/flipped to the model
orientation, so no rotation is interpolated), its physical centre and extent, and has the model
spacing; a slice spacing inside ``native_slice_spacing_range_mm`` is kept as acquired.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import nibabel as nib
import numpy as np
from scipy import ndimage

from modicseg.core.image import Image, LabelImage, Provenance, ScalarImage
from modicseg.core.resample import resample_to
from modicseg.model.config import ModelConfig


@dataclass
class ModelGrid:
    """The model-space grid of one study and the reference grid results go back to.

    The model grid's axes are parallel to the reference's (permuted/flipped to ``orientation``), its
    physical centre is the reference's, so the two are related axis by axis (separable resampling).
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    reference_shape: tuple[int, int, int]
    reference_affine: np.ndarray
    orientation: str = "RAS"

    def empty(self) -> ScalarImage:
        return ScalarImage(np.zeros(self.shape, dtype=np.uint8), self.affine.copy())

    def reference(self) -> ScalarImage:
        return ScalarImage(np.zeros(self.reference_shape, dtype=np.uint8), self.reference_affine.copy())

    def oriented_reference(self) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
        """(shape of the reference grid in model orientation, model spacing, reference spacing in that
        orientation): what interpolating from the model grid onto the reference grid needs, axis by axis."""
        transform = orientation_transform(self.reference_affine, self.orientation)
        oriented_affine = self.reference_affine @ nib.orientations.inv_ornt_aff(transform, self.reference_shape)
        oriented_shape = nib.orientations.apply_orientation(np.empty(self.reference_shape, dtype=np.uint8),
                                                            transform).shape
        return (tuple(int(n) for n in oriented_shape), np.linalg.norm(self.affine[:3, :3], axis=0),
                np.linalg.norm(oriented_affine[:3, :3], axis=0))

    def back_to_reference(self, oriented: np.ndarray) -> np.ndarray:
        """A 3-D array in model orientation on the reference grid, permuted/flipped back to the reference's axes."""
        inverse = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(tuple(self.orientation)),
                                                  nib.orientations.io_orientation(self.reference_affine))
        out = nib.orientations.apply_orientation(oriented, inverse)
        assert out.shape == tuple(self.reference_shape)
        return out


def orientation_transform(affine: np.ndarray, axcodes: str) -> np.ndarray:
    """nibabel orientation transform from an affine's closest axes to ``axcodes`` (e.g. "RAS")."""
    current = nib.orientations.io_orientation(affine)
    target = nib.orientations.axcodes2ornt(tuple(axcodes))
    return nib.orientations.ornt_transform(current, target)


def reorient(image: Image, axcodes: str) -> Image:
    """The same voxels permuted/flipped so the array axes best match ``axcodes`` (exact, no interpolation)."""
    transform = orientation_transform(image.affine, axcodes)
    array = nib.orientations.apply_orientation(image.array, transform)
    affine = image.affine @ nib.orientations.inv_ornt_aff(transform, image.shape)
    return type(image)(np.ascontiguousarray(array), affine, image.provenance)


def model_grid(reference: Image, config: ModelConfig) -> ModelGrid:
    """The grid a reference image (the T2, or the T1 when alone) maps to in model space."""
    transform = orientation_transform(reference.affine, config.orientation)
    oriented_affine = reference.affine @ nib.orientations.inv_ornt_aff(transform, reference.shape)
    oriented_shape = np.asarray(nib.orientations.apply_orientation(
        np.empty(reference.shape, dtype=np.uint8), transform).shape)
    old_spacing = np.linalg.norm(oriented_affine[:3, :3], axis=0)
    spacing = np.asarray(config.spacing_mm, dtype=np.float64)
    lo, hi = config.native_slice_spacing_range_mm
    if lo <= old_spacing[0] <= hi:
        spacing[0] = old_spacing[0]
    extent = oriented_shape * old_spacing
    new_shape = np.maximum(1, np.round(extent / spacing)).astype(int)
    direction = oriented_affine[:3, :3] / old_spacing
    centre = oriented_affine[:3, :3] @ ((oriented_shape - 1) / 2) + oriented_affine[:3, 3]
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = centre - affine[:3, :3] @ ((new_shape - 1) / 2)
    shape = cast("tuple[int, int, int]", tuple(int(s) for s in new_shape))
    return ModelGrid(shape, affine, reference.shape, reference.affine.copy(), config.orientation)


def _antialias(image: ScalarImage, target_spacing: np.ndarray) -> ScalarImage:
    """Gaussian pre-filter along axes that are downsampled by more than 1.3x."""
    factor = target_spacing / image.spacing
    if np.all(factor <= 1.3):
        return image
    # voxel axes of the image that correspond to the target axes: compare directions
    sigma = np.where(factor > 1.3, 0.5 * np.sqrt(np.maximum(factor ** 2 - 1, 0)), 0.0)
    smoothed = ndimage.gaussian_filter(image.array.astype(np.float32), sigma=sigma, mode="nearest")
    return image.with_array(smoothed)


def resample_image_to_grid(image: ScalarImage, grid: ModelGrid) -> np.ndarray:
    """An intensity image resampled (linear, physical coordinates) onto the model grid, float32."""
    # target spacing expressed along the image's own axes: world spacing of the model grid
    # projected on each image axis direction
    model_dirs = grid.affine[:3, :3] / np.linalg.norm(grid.affine[:3, :3], axis=0)
    model_spacing = np.linalg.norm(grid.affine[:3, :3], axis=0)
    per_axis = np.array([model_spacing[int(np.argmax(np.abs(model_dirs.T @ d)))]
                         for d in image.direction.T])
    image = _antialias(image, per_axis)
    out = resample_to(image, grid.empty())
    return np.asarray(out.array, dtype=np.float32)


def resample_labels_to_grid(labels: LabelImage, grid: ModelGrid) -> np.ndarray:
    """A label image resampled (nearest neighbour) onto the model grid."""
    return np.asarray(resample_to(labels, grid.empty()).array)


def normalize_intensity(array: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Percentile scaling: the lower percentile -> 0, the upper -> 1, then clipping."""
    norm = config.normalization
    if norm.get("method", "percentile") != "percentile":
        raise ValueError(f"unknown normalisation method {norm.get('method')}")
    a = np.asarray(array, dtype=np.float32)
    lo, hi = np.percentile(a, [norm["lower_percentile"], norm["upper_percentile"]])
    if hi - lo < 1e-6:
        hi = lo + 1.0
    out = (a - lo) / (hi - lo)
    c_lo, c_hi = norm["clip"]
    return np.clip(out, c_lo, c_hi).astype(np.float32)


def assemble_channels(images: Mapping[str, np.ndarray | None], config: ModelConfig,
                      normalized: bool = False) -> np.ndarray:
    """The network input [C, ...]: each contrast of ``config.channels`` (normalised unless
    ``normalized``; the missing-channel value where absent), followed by its presence flag."""
    shape = next(a.shape for a in images.values() if a is not None)
    missing = float(config.normalization.get("missing_channel_value", 0.0))
    channels, flags = [], []
    for name in config.channels:
        a = images.get(name)
        if a is None:
            channels.append(np.full(shape, missing, dtype=np.float32))
            flags.append(np.zeros(shape, dtype=np.float32))
        else:
            channels.append(a.astype(np.float32) if normalized else normalize_intensity(a, config))
            flags.append(np.ones(shape, dtype=np.float32))
    stacked = channels + flags if config.presence_flags else channels
    return np.stack(stacked, axis=0)


def to_model_space(images: Mapping[str, ScalarImage | None], config: ModelConfig,
                   reference: Image | None = None) -> tuple[np.ndarray, ModelGrid]:
    """The network input for a study and its grid.

    ``images`` maps channel names ("T1", "T2") to images (any grids sharing one physical space,
    e.g. the T1 resampled onto the T2); ``reference`` defaults to the T2, else the first given.
    """
    given = {k: v for k, v in images.items() if v is not None}
    if not given:
        raise ValueError("no image given")
    unknown = set(given) - set(config.channels)
    if unknown:
        raise ValueError(f"channels {sorted(unknown)} not in the model's channels {config.channels}")
    if reference is None:
        reference = given.get("T2") or next(iter(given.values()))
    grid = model_grid(reference, config)
    arrays = {name: resample_image_to_grid(img, grid) for name, img in given.items()}
    return assemble_channels(arrays, config), grid


def axis_weights(n_src: int, spacing_src: float, n_dst: int, spacing_dst: float) -> np.ndarray:
    """[n_dst, n_src] linear-interpolation matrix between two centred grids along one axis
    (positions beyond the source's first/last voxel centre take the edge value)."""
    pos = (np.arange(n_dst) - (n_dst - 1) / 2) * (spacing_dst / spacing_src) + (n_src - 1) / 2
    pos = np.clip(pos, 0, n_src - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_src - 1)
    frac = pos - lo
    w = np.zeros((n_dst, n_src), dtype=np.float32)
    rows = np.arange(n_dst)
    np.add.at(w, (rows, lo), 1 - frac)
    np.add.at(w, (rows, hi), frac)
    return w


def probabilities_to_labels(probs: np.ndarray, grid: ModelGrid, backend: str = "torch") -> LabelImage:
    """Class probabilities [C, ...] on the model grid -> labels on the reference grid.

    The probabilities are interpolated linearly onto the reference grid (separably, axis by axis:
    the grids share their axes up to a permutation) and the argmax is taken there, which gives
    smoother boundaries than resampling labels. The result has the reference's exact shape and affine.
    ``backend``: "torch" (the torch inference path) or "numpy" (the ONNX Runtime path, without torch).
    """
    oriented_shape, model_spacing, ref_spacing = grid.oriented_reference()
    if backend == "numpy":
        oriented_labels = _interpolated_argmax_numpy(probs, oriented_shape, model_spacing, ref_spacing)
    elif backend == "torch":
        oriented_labels = _interpolated_argmax_torch(probs, oriented_shape, model_spacing, ref_spacing)
    else:
        raise ValueError(f"unknown backend '{backend}' (torch, numpy)")
    labels = grid.back_to_reference(oriented_labels)
    return LabelImage(np.ascontiguousarray(labels), grid.reference_affine.copy(),
                      Provenance(source_format="derived", series_description="modicseg segmentation"))


def _interpolated_argmax_torch(probs: np.ndarray, oriented_shape: tuple[int, ...], model_spacing: np.ndarray,
                               ref_spacing: np.ndarray) -> np.ndarray:
    import torch

    out = torch.as_tensor(np.ascontiguousarray(probs), dtype=torch.float32)
    for axis in range(3):
        n_src, n_dst = out.shape[axis + 1], int(oriented_shape[axis])
        if n_src == n_dst and np.isclose(model_spacing[axis], ref_spacing[axis]):
            continue
        w = torch.from_numpy(axis_weights(n_src, float(model_spacing[axis]), n_dst, float(ref_spacing[axis])))
        equation = ("cajk,ba->cbjk", "ciak,ba->cibk", "cija,ba->cijb")[axis]
        out = torch.einsum(equation, out, w)
    # argmax over classes, channel by channel (torch.argmax over dim 0 is slow on CPU)
    best = out[0].contiguous()
    index = torch.zeros(best.shape, dtype=torch.uint8)
    for c in range(1, out.shape[0]):
        channel = out[c].contiguous()
        better = channel > best
        index[better] = c
        best = torch.maximum(best, channel)
    return index.numpy()


def _interpolate_numpy(maps: np.ndarray, oriented_shape: tuple[int, ...], model_spacing: np.ndarray,
                      ref_spacing: np.ndarray) -> np.ndarray:
    """Maps [K, ...] on the model grid interpolated linearly (axis by axis) onto the oriented reference grid."""
    out = np.ascontiguousarray(maps, dtype=np.float32)
    for axis in range(3):
        n_src, n_dst = out.shape[axis + 1], int(oriented_shape[axis])
        if n_src == n_dst and np.isclose(model_spacing[axis], ref_spacing[axis]):
            continue
        w = axis_weights(n_src, float(model_spacing[axis]), n_dst, float(ref_spacing[axis]))
        out = np.ascontiguousarray(np.moveaxis(np.tensordot(out, w, axes=([axis + 1], [1])), -1, axis + 1))
    return out


def maps_to_reference(maps: np.ndarray, grid: ModelGrid) -> np.ndarray:
    """Maps [K, ...] on the model grid -> [K, *reference shape] on the reference grid (linear, float32).

    The same interpolation as ``probabilities_to_labels`` uses before its argmax, without the argmax.
    """
    out = _interpolate_numpy(maps, *grid.oriented_reference())
    back = np.stack([grid.back_to_reference(channel) for channel in out])
    return np.ascontiguousarray(back, dtype=np.float32)


def _interpolated_argmax_numpy(probs: np.ndarray, oriented_shape: tuple[int, ...], model_spacing: np.ndarray,
                               ref_spacing: np.ndarray) -> np.ndarray:
    out = _interpolate_numpy(probs, oriented_shape, model_spacing, ref_spacing)
    best = out[0].copy()
    index = np.zeros(best.shape, dtype=np.uint8)
    for c in range(1, out.shape[0]):
        better = out[c] > best
        index[better] = c
        np.maximum(best, out[c], out=best)
    return index
