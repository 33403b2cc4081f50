"""Generate one synthetic case: T1 and T2 sagittal images, label / type / instance maps, truth.

``generate_case`` makes a realistic case for writing as a study; ``generate_training_sample``
is the fast in-memory path that feeds training (no DICOM, no truth file).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modicseg.core.image import LabelImage, Provenance, ScalarImage
from modicseg.core.labels import INFERIOR, SUPERIOR
from modicseg.synth import tissues as tis
from modicseg.synth.anatomy import Spine, sample_spine
from modicseg.synth.distractors import add_distractors, add_endplate_notches, add_perivertebral_lookalikes
from modicseg.synth.grid import Grid, make_grid, rotation_matrix
from modicseg.synth.lesions import Lesion, sample_lesions
from modicseg.synth.randomize import (
    Acquisition,
    draw_acquisition,
    draw_appearance,
)
from modicseg.synth.raster import centre_samples, rasterize
from modicseg.synth.render import reference_signal, render_image, signal_lut, texture_fields
from modicseg.synth.scene import Scene, SynthCase
from modicseg.synth.truth import build_truth

MAX_MATRIX = 512


@dataclass
class CaseOptions:
    """Knobs of ``generate_case``; None means "draw at random"."""

    lumbar_count: int | None = None
    fracture: bool | None = None
    degeneration: float = 1.0
    lesion_count: int | None = None
    lesion_types: list[str] | None = None
    lesion_height_fractions: list[float] | None = None
    noise: bool = True
    bias: bool = True
    texture: bool = True
    supersample: tuple[int, int, int] = (1, 1, 3)
    inplane_mm: float | None = None
    thickness_mm: float | None = None
    gap_mm: float | None = None
    n_slices: int | None = None
    fov_mm: float | None = None
    separate_t1_grid: bool | None = None
    rescale: bool | None = None
    max_matrix: int = MAX_MATRIX


def type_lut(lesions: list[Lesion]) -> np.ndarray:
    """Tissue id -> Modic type (0 none)."""
    lut = np.zeros(tis.N_IDS, dtype=np.uint8)
    for lesion in lesions:
        for part in (0, 1):
            if part == 0 or lesion.secondary is not None:
                lut[tis.lesion_part_id(lesion.index, part)] = lesion.part_type(part)
    return lut


def instance_lut(spine: Spine, lesions: list[Lesion]) -> np.ndarray:
    """Tissue id -> vertebra instance (1-based position in ``spine.vertebrae``; 0 elsewhere)."""
    lut = np.zeros(tis.N_IDS, dtype=np.uint8)
    for v in spine.bodies:
        lut[tis.MARROW_BASE + v.index] = v.index + 1
        lut[tis.CORTEX_BASE + v.index] = v.index + 1
    for lesion in lesions:
        value = spine.vertebra(lesion.level).index + 1
        lut[tis.lesion_part_id(lesion.index, 0)] = value
        lut[tis.lesion_part_id(lesion.index, 1)] = value
    return lut


def spine_centre(spine: Spine) -> np.ndarray:
    """Subject point the field of view is centred on: mid T12..S1, just behind the bodies."""
    top = spine.vertebra("T12").endplate_centre(SUPERIOR)
    bottom = spine.vertebra("S1").endplate_centre(INFERIOR)
    mid = 0.5 * (top + bottom)
    l3 = spine.vertebra(spine.bodies[len(spine.bodies) // 2].level)
    return np.array([0.0, l3.centre[1] - l3.depth / 2 - 8.0, mid[2]])


def draw_scene(rng: np.random.Generator, options: CaseOptions, regime: str = "realistic") -> Scene:
    spine = sample_spine(rng, lumbar_count=options.lumbar_count, fracture=options.fracture,
                         degeneration=options.degeneration)
    lesions = sample_lesions(rng, spine, count=options.lesion_count, types=options.lesion_types)
    if options.lesion_height_fractions:
        for lesion, hf in zip(lesions, options.lesion_height_fractions, strict=False):
            vertebra = spine.vertebra(lesion.level)
            lesion.calibrate(vertebra, hf)
            if lesion.secondary is not None:
                lesion.set_split(vertebra, lesion.secondary_target)
    ax, ay, az = (float(a) for a in rng.normal(0.0, [4.0, 2.0, 2.0]))
    angles = (ax, ay, az)
    shift = rng.normal(0.0, [5.0, 12.0, 15.0])
    subject_to_scanner = np.eye(4)
    subject_to_scanner[:3, :3] = rotation_matrix(angles)
    subject_to_scanner[:3, 3] = shift + np.array([0.0, -40.0, 0.0]) - rotation_matrix(angles) @ spine_centre(
        spine)
    appearance = draw_appearance(rng, spine, regime)
    return Scene(spine, lesions, subject_to_scanner, appearance, angles)


def plan_grids(scene: Scene, acq: Acquisition, rng: np.random.Generator, options: CaseOptions) -> dict[str, Grid]:
    """The technologist's planning: sagittal stack(s) centred on the lumbar spine."""
    spine = scene.spine
    extent = float(spine.vertebra("T12").endplate_centre(SUPERIOR)[2]
                   - spine.vertebra("S1").endplate_centre(INFERIOR)[2])
    fov_si = options.fov_mm or max(acq.fov_si, extent + 45.0)
    fov_ap = options.fov_mm or max(acq.fov_ap, 0.85 * fov_si)
    inplane = options.inplane_mm or acq.inplane
    inplane = max(inplane, max(fov_si, fov_ap) / options.max_matrix)
    thickness = options.thickness_mm or acq.thickness
    gap = acq.gap if options.gap_mm is None else options.gap_mm
    n_slices = options.n_slices or acq.n_slices
    centre = scene.subject_to_scanner[:3, :3] @ spine_centre(spine) + scene.subject_to_scanner[:3, 3]
    centre = centre + np.asarray(acq.centre_jitter)
    # the stack follows the patient's tilt partly, plus a small planning obliquity
    angles = np.asarray(scene.subject_angles_deg) * rng.uniform(0.3, 1.0) + np.asarray(acq.obliquity_deg)
    rotation = rotation_matrix(tuple(angles))
    shape = (int(round(fov_ap / inplane)), int(round(fov_si / inplane)), int(n_slices))
    grids = {"T2": make_grid(centre, shape, (inplane, inplane, thickness + gap), thickness=thickness,
                             rotation=rotation, supersample=options.supersample)}
    separate = acq.t1_separate_grid if options.separate_t1_grid is None else options.separate_t1_grid
    if separate:
        t1_inplane = max(acq.t1_inplane or inplane * 1.2, max(fov_si, fov_ap) / options.max_matrix)
        t1_shape = (int(round(fov_ap / t1_inplane)), int(round(fov_si / t1_inplane)), int(n_slices))
        t1_centre = centre + rotation[:, 2] * (acq.t1_shift or 0.4 * (thickness + gap))
        grids["T1"] = make_grid(t1_centre, t1_shape, (t1_inplane, t1_inplane, thickness + gap),
                                thickness=thickness, rotation=rotation, supersample=options.supersample)
    else:
        grids["T1"] = grids["T2"]
    return grids


def coil_parameters(scene: Scene) -> tuple[float, float, float]:
    """(scanner y of the posterior coil, decay length, strength)."""
    spine, soft = scene.spine, scene.spine.soft
    l3 = spine.bodies[len(spine.bodies) // 2]
    back = np.array([0.0, l3.centre[1] - l3.depth / 2 - l3.canal_ap - soft.back_muscle - soft.fat, l3.centre[2]])
    y = float((scene.subject_to_scanner[:3, :3] @ back + scene.subject_to_scanner[:3, 3])[1])
    return y, scene.appearance.coil_length_mm, scene.appearance.coil_strength


def render_scene(scene: Scene, grid: Grid, rng: np.random.Generator, *, noise: bool = True,
                 bias: bool = True, texture: bool = True, weightings: tuple[str, ...] = ("T1", "T2"),
                 fast_noise: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Images (float, marrow ~ 1) of the given weightings on ``grid`` and the centre tissue ids."""
    tid = rasterize(scene.spine, scene.lesions, grid, scene.subject_to_scanner)
    app = scene.appearance
    textures = texture_fields(tid, rng, grid.spacing, app.texture_scale) if texture else None
    coil = coil_parameters(scene) if bias else None
    images = {}
    for weighting in weightings:
        lut = signal_lut(app, weighting, scene.spine, scene.lesions)
        ref = reference_signal(lut, scene.spine)
        lut = lut / np.float32(ref)
        images[weighting] = render_image(
            tid, lut, rng, affine=grid.affine, spacing=grid.spacing,
            snr=app.snr[weighting] if noise else None, bias=app.bias[weighting] if bias else None,
            coil=coil, reference=1.0, textures=textures, fast_noise=fast_noise)
    return images, centre_samples(tid)


def _quantise(image: np.ndarray, rng: np.random.Generator, rescale: bool | None,
              gain: float) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Scale to scanner-like integers; with a rescale, values are multiples of the slope."""
    scaled = image * np.float32(gain)
    use = bool(rng.random() < 0.3) if rescale is None else rescale
    if not use:
        return np.rint(scaled).astype(np.float32), None
    slope = float(rng.choice([0.5, 1.25, 2.0, 3.1]))
    intercept = float(rng.choice([0.0, -50.0]))
    stored = np.clip(np.rint((scaled.astype(np.float64) - intercept) / slope), 0, 65535)
    return (stored * slope + intercept).astype(np.float32), (slope, intercept)


def generate_case(seed: int | np.random.SeedSequence, case_id: str = "case_0000",
                  options: CaseOptions | None = None) -> SynthCase:
    """One realistic case (deterministic for a given seed and options)."""
    options = options or CaseOptions()
    rng = np.random.default_rng(seed)
    scene = draw_scene(rng, options)
    acq = draw_acquisition(rng, "realistic")
    return case_from_scene(scene, acq, rng, case_id, seed if isinstance(seed, int) else None, options)


def case_from_scene(scene: Scene, acq: Acquisition, rng: np.random.Generator, case_id: str,
                    seed: int | None, options: CaseOptions) -> SynthCase:
    """Plan the grids, render T1 and T2, quantise, build the maps and the truth."""
    grids = plan_grids(scene, acq, rng, options)
    images: dict[str, np.ndarray] = {}
    centres: dict[str, np.ndarray] = {}
    for name in ("T2", "T1"):
        if name == "T1" and grids["T1"] is grids["T2"]:
            continue
        weightings = ("T1", "T2") if grids["T1"] is grids["T2"] else (name,)
        rendered, centre = render_scene(scene, grids[name], rng, noise=options.noise, bias=options.bias,
                                        texture=options.texture, weightings=weightings)
        images.update(rendered)
        centres[name] = centre
    rescale: dict[str, tuple[float, float] | None] = {}
    final: dict[str, ScalarImage] = {}
    for name in ("T1", "T2"):
        target = float(rng.uniform(700, 1400)) * scene.appearance.gain[name]
        values, rescale[name] = _quantise(images[name], rng, options.rescale, target)
        seq = scene.appearance.sequences[name]
        final[name] = ScalarImage(values, grids[name].affine.copy(), Provenance(
            series_description=seq.description, plane="sagittal", weighting=name, source_format="synthetic",
            acquisition={"repetition_time_ms": seq.tr, "echo_time_ms": seq.te,
                         "slice_thickness_mm": grids[name].slice_thickness}))
    maps = _maps(scene, centres["T2"], grids["T2"])
    extra = {}
    if "T1" in centres:
        extra = {f"{k}_T1grid": v for k, v in _maps(scene, centres["T1"], grids["T1"]).items()}
    case = SynthCase(case_id=case_id, seed=seed, scene=scene, acquisition=acq, grids=grids, t1=final["T1"],
                     t2=final["T2"], labels=maps["labels"], types=maps["types"], instances=maps["instances"],
                     extra_maps=extra, rescale=rescale)
    case.truth = build_truth(case)
    return case


def _maps(scene: Scene, centre: np.ndarray, grid: Grid) -> dict[str, LabelImage]:
    prov = Provenance(source_format="synthetic", plane="sagittal")
    return {
        "labels": LabelImage(tis.LABEL_LUT[centre], grid.affine.copy(), prov),
        "types": LabelImage(type_lut(scene.lesions)[centre], grid.affine.copy(), prov),
        "instances": LabelImage(instance_lut(scene.spine, scene.lesions)[centre], grid.affine.copy(), prov),
    }


def generate_training_sample(rng: np.random.Generator, spacing: tuple[float, float, float] = (1.0, 1.0, 4.0),
                             shape: tuple[int, int, int] = (208, 240, 15),
                             supersample: tuple[int, int, int] = (1, 1, 3),
                             distractors: int = 0, perivertebral: int = 0,
                             notches: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A two-channel (T1, T2) training sample and its labels, in memory.

    Anatomy, lesions, contrast (30 % beyond the physical), bias, coil, noise, slice thickness
    (60-100 % of the slice step), obliquity and position are all randomised.  ``distractors``:
    up to that many marrow-like blobs in the soft tissue (``synth.distractors``; background
    label).  ``perivertebral``: up to that many lesion-like blobs against the outside of the
    bodies (fat, vessels; ``synth.distractors.add_perivertebral_lookalikes``, background label).
    ``notches``: up to that many disc-filled notches in the endplates (Schmorl-node-like, labelled
    disc, some with a dark rim; ``synth.distractors.add_endplate_notches``).
    Each channel is divided by its 99th percentile.
    Returns (image float32 [2, *shape], labels int64 [*shape]).
    """
    options = CaseOptions(supersample=supersample)
    scene = draw_scene(rng, options, regime="training")
    acq = draw_acquisition(rng, "training")
    centre = scene.subject_to_scanner[:3, :3] @ spine_centre(scene.spine) + scene.subject_to_scanner[:3, 3]
    centre = centre + np.asarray(acq.centre_jitter)
    angles = np.asarray(scene.subject_angles_deg) * rng.uniform(0.0, 1.0) + np.asarray(acq.obliquity_deg)
    grid = make_grid(centre, shape, spacing, thickness=spacing[2] * float(rng.uniform(0.6, 1.0)),
                     rotation=rotation_matrix(tuple(angles)), supersample=supersample)
    images, centre_ids = render_scene(scene, grid, rng, fast_noise=True)
    labels = tis.LABEL_LUT[centre_ids]
    if distractors:
        add_distractors(images, centre_ids, labels, grid.spacing, rng, distractors)
    if perivertebral:
        add_perivertebral_lookalikes(images, centre_ids, labels, grid.spacing, rng, perivertebral)
    if notches:
        add_endplate_notches(images, centre_ids, labels, grid.spacing, rng, notches)
    out = np.empty((2, *shape), dtype=np.float32)
    for c, name in enumerate(("T1", "T2")):
        img = images[name]
        scale = np.percentile(img[::2, ::2, :], 99.0)
        out[c] = img / np.float32(max(scale, 1e-6))
    return out, labels.astype(np.int64)
