"""From tissue ids to MR images: signal look-up, partial volume, texture, bias, Rician noise, gain.

Signal of normal tissue comes from its properties through the spin-echo equation
S = PD (1 - exp(-TR/T1)) exp(-TE/T2); a lesion sub-region's signal is its drawn ratio times the
signal of the same vertebra's normal marrow, so the Modic rule bands hold by construction.
"""

from __future__ import annotations

import numpy as np

from modicseg.synth import tissues as tis
from modicseg.synth.anatomy import Spine
from modicseg.synth.lesions import Lesion
from modicseg.synth.randomize import Appearance


def signal_lut(app: Appearance, weighting: str, spine: Spine, lesions: list[Lesion]) -> np.ndarray:
    """Tissue id -> noiseless signal for one weighting (float32, 256 entries)."""
    lut = np.zeros(tis.N_IDS, dtype=np.float32)
    fat_suppressed = weighting == "T2" and app.fat_suppressed_ti is not None
    if weighting in app.random_lut:
        lut[:] = app.random_lut[weighting]
        lut[tis.AIR] = 0.0
    else:
        seq = app.sequences[weighting]
        for tid, prop in app.properties.items():
            if fat_suppressed:
                ti = float(app.fat_suppressed_ti or 0.0)  # set when fat_suppressed
                lut[tid] = tis.inversion_recovery_signal(prop, seq.tr, seq.te, ti)
            else:
                lut[tid] = tis.spin_echo_signal(prop, seq.tr, seq.te)
    by_level = {v.level: v for v in spine.vertebrae}
    for lesion in lesions:
        marrow = lut[tis.MARROW_BASE + by_level[lesion.level].index]
        for part, ratios in lesion.ratios.items():
            ratio = ratios[weighting]
            if fat_suppressed:
                ratio = tis.fat_suppressed_ratio(lesion.part_type(int(part)), ratios)
            lut[tis.lesion_part_id(lesion.index, int(part))] = marrow * ratio
    return lut


def texture_lut() -> np.ndarray:
    """Tissue id -> relative texture amplitude."""
    amp = np.zeros(tis.N_IDS, dtype=np.float32)
    for tid, value in tis.TEXTURE_AMPLITUDE.items():
        amp[tid] = value
    amp[tis.MARROW_BASE:tis.MARROW_BASE + tis.MAX_VERTEBRAE] = tis.MARROW_TEXTURE
    amp[tis.LESION_BASE:tis.LESION_BASE + tis.MAX_LESION_PARTS] = tis.LESION_TEXTURE
    return amp


_TEXTURE = texture_lut()


def partial_volume(tid: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Mean of ``lut[tid]`` over the sub-samples of each voxel: (ni, nj, nk) float32."""
    si, sj, sk = tid.shape[1], tid.shape[3], tid.shape[5]
    if si == sj == 1:
        # most voxels hold one tissue: look those up once, average only the mixed ones
        sub = tid[:, 0, :, 0, :, :]
        first = sub[..., 0]
        mixed = np.zeros(first.shape, dtype=bool)
        for m in range(1, sk):
            mixed |= sub[..., m] != first
        out = lut[first]
        where = np.nonzero(mixed)
        if where[0].size:
            out[where] = lut[sub[where]].mean(axis=-1, dtype=np.float32)
        return out
    return lut[tid].mean(axis=(1, 3, 5), dtype=np.float32)


def _upsample_matrix(n_fine: int, n_coarse: int, smooth: bool = False) -> np.ndarray:
    """(n_fine, n_coarse) interpolation weights spanning the same extent: linear, or Gaussian
    (sigma 0.6 coarse cells, rows normalised) for smooth random fields."""
    pos = np.linspace(0.0, n_coarse - 1, n_fine)
    if smooth:
        d = pos[:, None] - np.arange(n_coarse)[None, :]
        m = np.exp(-0.5 * (d / 0.6) ** 2)
        return (m / m.sum(axis=1, keepdims=True)).astype(np.float32)
    lo = np.minimum(np.floor(pos).astype(int), max(n_coarse - 2, 0))
    w = pos - lo
    m = np.zeros((n_fine, n_coarse), dtype=np.float32)
    m[np.arange(n_fine), lo] = 1.0 - w
    if n_coarse > 1:
        m[np.arange(n_fine), lo + 1] += w
    return m


def upsample(coarse: np.ndarray, shape: tuple[int, int, int], smooth: bool = False) -> np.ndarray:
    """Separable upsampling of a small 3-D array to ``shape`` (three small matrix products)."""
    a = _upsample_matrix(shape[0], coarse.shape[0], smooth)
    b = _upsample_matrix(shape[1], coarse.shape[1], smooth)
    c = _upsample_matrix(shape[2], coarse.shape[2], smooth)
    c0, c1, c2 = coarse.shape
    out = (a @ coarse.astype(np.float32).reshape(c0, c1 * c2)).reshape(shape[0], c1, c2)
    out = out @ c.T  # (n0, c1, n2)
    return np.matmul(b, out)  # (n0, n1, n2)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], spacing: np.ndarray,
                 correlation_mm: float = 6.0) -> np.ndarray:
    """Zero-mean, unit-variance smooth random field (coarse Gaussian noise, linearly upsampled)."""
    coarse = [max(2, int(np.ceil(n * s / correlation_mm)) + 1) for n, s in zip(shape, spacing, strict=True)]
    field = upsample(rng.standard_normal(coarse).astype(np.float32), shape, smooth=True)
    field -= field.mean()
    field /= field.std() + np.float32(1e-6)
    return field


def bias_field(shape: tuple[int, int, int], coefficients: np.ndarray) -> np.ndarray:
    """exp(second-order polynomial) over normalised coordinates in [-1, 1] (computed coarse, upsampled)."""
    coarse_shape = tuple(min(n, 12) for n in shape)
    x, y, z = (np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in coarse_shape)
    x = x[:, None, None]
    y = y[None, :, None]
    z = z[None, None, :]
    c = coefficients.astype(np.float32)
    poly = (c[1] * x + c[2] * y + c[3] * z + c[4] * (x * x - 1 / 3) + c[5] * (y * y - 1 / 3)
            + c[6] * (z * z - 1 / 3) + c[7] * x * y + c[8] * x * z + c[9] * y * z)
    return upsample(np.exp(poly), shape)


def coil_profile(affine: np.ndarray, shape: tuple[int, int, int], coil_y: float, length: float,
                 strength: float) -> np.ndarray:
    """Posterior spine-coil sensitivity: brighter near the patient's back (scanner y = coil_y)."""
    coarse_shape = tuple(min(n, 24) for n in shape)
    idx = [np.linspace(0, n - 1, c, dtype=np.float32) for n, c in zip(shape, coarse_shape, strict=True)]
    y = (affine[1, 0] * idx[0][:, None, None] + affine[1, 1] * idx[1][None, :, None]
         + affine[1, 2] * idx[2][None, None, :] + affine[1, 3])
    distance = np.clip(y - np.float32(coil_y), 0.0, None)
    profile = (1.0 + np.float32(strength) * np.exp(-distance / np.float32(length))) / (1.0 + np.float32(strength))
    return upsample(profile, shape)


_NOISE_BANK: np.ndarray | None = None


def noise_bank() -> np.ndarray:
    """A fixed pool of 2^23 standard normal float32 values (for the fast training path)."""
    global _NOISE_BANK
    if _NOISE_BANK is None:
        _NOISE_BANK = np.random.default_rng(20240601).standard_normal(1 << 23, dtype=np.float32)
    return _NOISE_BANK


def _normal(rng: np.random.Generator, shape: tuple[int, ...], fast: bool) -> np.ndarray:
    if not fast:
        return rng.standard_normal(shape, dtype=np.float32)
    bank = noise_bank()
    size = int(np.prod(shape))
    if size > len(bank) // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(0, len(bank) - size))
    out = bank[start:start + size].reshape(shape)
    return -out if rng.random() < 0.5 else out


def rician(image: np.ndarray, sigma: float, rng: np.random.Generator, fast: bool = False) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of standard deviation ``sigma``.

    ``fast`` takes the Gaussian samples from a fixed pool at a random offset (training only).
    """
    real = image + _normal(rng, image.shape, fast) * np.float32(sigma)
    imag = _normal(rng, image.shape, fast) * np.float32(sigma)
    return np.sqrt(real * real + imag * imag)


def reference_signal(lut: np.ndarray, spine: Spine) -> float:
    """Signal of normal marrow (median over bodies): the scale SNR refers to."""
    return float(np.median([lut[tis.MARROW_BASE + v.index] for v in spine.bodies]))


def render_image(tid: np.ndarray, lut: np.ndarray, rng: np.random.Generator, *, affine: np.ndarray,
                 spacing: np.ndarray, snr: float | None, bias: np.ndarray | None,
                 coil: tuple[float, float, float] | None, reference: float = 1.0,
                 textures: list[tuple[np.ndarray, np.ndarray]] | None = None,
                 fast_noise: bool = False) -> np.ndarray:
    """One channel: partial volume, texture, bias and coil, Rician noise (snr None: noiseless).

    ``textures`` holds (per-voxel amplitude, zero-mean field) pairs; the texture term is
    ``lut[centre id] * amplitude * field`` (texture follows the voxel-centre tissue).
    """
    base = partial_volume(tid, lut)
    shape = base.shape
    if textures:
        centre = tid[:, tid.shape[1] // 2, :, tid.shape[3] // 2, :, tid.shape[5] // 2]
        signal = lut[centre]
        for amplitude, field in textures:
            base += signal * amplitude * field
    if bias is not None:
        base *= bias_field(shape, bias)
    if coil is not None:
        base *= coil_profile(affine, shape, *coil)
    if snr is not None:
        base = rician(base, reference / snr, rng, fast=fast_noise)
    return np.clip(base, 0.0, None).astype(np.float32, copy=False)


def texture_fields(tid: np.ndarray, rng: np.random.Generator, spacing: np.ndarray,
                   scale: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two texture layers shared by both weightings: fine (marrow, muscle) and coarse (viscera)."""
    centre = tid[:, tid.shape[1] // 2, :, tid.shape[3] // 2, :, tid.shape[5] // 2]
    shape = centre.shape
    fine_amp = _TEXTURE_FINE[centre] * np.float32(scale)
    coarse_amp = _TEXTURE_COARSE[centre] * np.float32(scale)
    return [(fine_amp, smooth_noise(rng, shape, spacing, 4.0)),
            (coarse_amp, smooth_noise(rng, shape, spacing, 14.0))]


_TEXTURE_FINE = _TEXTURE.copy()
_TEXTURE_FINE[tis.VISCERA] = 0.0
_TEXTURE_COARSE = np.zeros_like(_TEXTURE)
_TEXTURE_COARSE[tis.VISCERA] = _TEXTURE[tis.VISCERA]
