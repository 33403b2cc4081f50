"""Parametric lumbar spine in continuous subject coordinates (mm).

Subject frame: +x the patient's right, +y anterior, +z superior (RAS), origin at the centre of L3
(the middle lumbar body).  The spine lies in the mid-sagittal plane x = 0.  Each vertebral body
has its own frame (u lateral = +x, v anterior, w along its cranio-caudal axis, superior positive)
in which its shape is analytic: a super-elliptic cross-section (round anteriorly, flat
posteriorly) bounded by two slightly concave endplate surfaces.  Discs fill the space between the
endplates of neighbouring bodies; everything else (canal, soft tissue) is described in
curvilinear coordinates (s along the spine curve, n anterior distance from it), see ``curve.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from modicseg.core.labels import INFERIOR, LUMBAR_COUNTS, SUPERIOR, level_sequence
from modicseg.synth.curve import SpineCurve

#: Mean (centre height, antero-posterior depth, width) of each body, mm.
BODY_SIZE: dict[str, tuple[float, float, float]] = {
    "T10": (21.0, 27.0, 33.0),
    "T11": (22.5, 28.0, 35.0),
    "T12": (24.0, 29.5, 38.0),
    "L1": (25.5, 31.0, 41.0),
    "L2": (26.5, 32.5, 44.0),
    "L3": (27.0, 33.5, 47.0),
    "L4": (27.0, 34.0, 49.0),
    "L5": (26.5, 34.5, 50.0),
    "L6": (26.0, 34.5, 50.0),
    "S1": (27.0, 35.0, 48.0),
}
#: Mean centre height of the disc below each level, mm (last lumbar: the lumbosacral disc).
DISC_HEIGHT: dict[str, float] = {
    "T10": 5.5, "T11": 6.0, "T12": 7.0, "L1": 8.5, "L2": 9.5, "L3": 10.5, "L4": 11.0,
    "L5": 11.0, "L6": 11.0,
}
#: Fused sacral segments below S1: (height, depth, width) relative to S1.
SACRAL_SEGMENTS = (("S2", 0.80, 0.74, 0.75), ("S3", 0.62, 0.58, 0.55), ("S4", 0.50, 0.44, 0.40),
                   ("S5", 0.40, 0.32, 0.28))
#: Share of the lumbar lordosis taken by each lumbar disc, from the lumbosacral disc upwards.
LORDOSIS_SHARE = (0.36, 0.27, 0.18, 0.12, 0.07, 0.04)
#: Levels whose endplates can carry a Modic lesion (the trials' Th12–S1 range).
LESION_LEVELS_FIRST = "T12"


def lumbar_names(count: int) -> list[str]:
    """Names of the lumbar bodies: L1..L4, L1..L5 or L1..L6."""
    if count not in LUMBAR_COUNTS:
        raise ValueError("the lumbar count must be 4, 5 or 6")
    return [name for name in level_sequence(count) if name.startswith("L")]


def axis_vectors(theta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(e_u, e_v, e_w) of a body tilted by ``theta`` (radians, axis leaning anteriorly)."""
    e_u = np.array([1.0, 0.0, 0.0])
    e_v = np.array([0.0, np.cos(theta), -np.sin(theta)])
    e_w = np.array([0.0, np.sin(theta), np.cos(theta)])
    return e_u, e_v, e_w


@dataclass
class Primitive:
    """An ellipsoid (p=2) or rounded box (p=4) in a vertebra's frame; mirrored to both sides."""

    centre: tuple[float, float, float]
    half: tuple[float, float, float]
    tilt: float = 0.0  # rotation in the (v, w) plane, radians; positive tips the +v end upwards
    power: int = 2
    mirrored: bool = False


@dataclass
class Vertebra:
    """One vertebral body (or fused sacral segment) and its posterior elements."""

    level: str
    index: int
    centre: np.ndarray  # subject mm
    theta: float  # axis tilt from +z towards +y (anterior), radians
    height: float  # H: centre height of an unfractured body
    depth: float  # D: antero-posterior depth
    width: float  # W: left-right width
    concavity: float = 1.5  # depth of each endplate's central depression, mm
    wedge: float = 0.0  # fraction of H lost at the anterior edge of the superior endplate
    cortex: float = 0.8  # cortical shell thickness, mm
    is_body: bool = True  # False for the fused sacral segments below S1 (label 0)
    canal_ap: float = 16.0
    canal_width: float = 23.0
    posterior: list[Primitive] = field(default_factory=list)

    # --- frame ------------------------------------------------------------------------------
    @property
    def rotation(self) -> np.ndarray:
        """3x3 matrix whose columns are e_u, e_v, e_w in subject coordinates."""
        return np.stack(axis_vectors(self.theta), axis=1)

    @property
    def axis(self) -> np.ndarray:
        return axis_vectors(self.theta)[2]

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) subject points -> (N, 3) local (u, v, w)."""
        return (np.asarray(points, dtype=np.float64) - self.centre) @ self.rotation

    def to_subject(self, local: np.ndarray) -> np.ndarray:
        return np.asarray(local, dtype=np.float64) @ self.rotation.T + self.centre

    # --- shape ------------------------------------------------------------------------------
    def rho(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Normalised cross-section radius: 1 on the wall; p=2 anteriorly, p=4 posteriorly."""
        a = self.width / 2.0
        b = self.depth / 2.0
        uu = (u / a) ** 2
        vv = (v / b) ** 2
        ant = np.sqrt(uu + vv)
        post = np.sqrt(np.sqrt(uu * uu + vv * vv))
        return np.where(v >= 0, ant, post)

    def top(self, u: np.ndarray, v: np.ndarray, rho: np.ndarray | None = None) -> np.ndarray:
        """w of the superior endplate surface above (u, v)."""
        r = self.rho(u, v) if rho is None else rho
        surface = self.height / 2.0 + self.concavity * np.minimum(r, 1.0) ** 2
        if self.wedge:
            ramp = np.clip(0.5 + v / self.depth, 0.0, 1.0)
            surface = surface - self.wedge * self.height * ramp
        return surface

    def bottom(self, u: np.ndarray, v: np.ndarray, rho: np.ndarray | None = None) -> np.ndarray:
        """w of the inferior endplate surface below (u, v)."""
        r = self.rho(u, v) if rho is None else rho
        return -self.height / 2.0 - self.concavity * np.minimum(r, 1.0) ** 2

    def endplate(self, which: str, u: np.ndarray, v: np.ndarray,
                 rho: np.ndarray | None = None) -> np.ndarray:
        return self.top(u, v, rho) if which == SUPERIOR else self.bottom(u, v, rho)

    @property
    def centre_height(self) -> float:
        """Height along the body's own axis at its centre (u = v = 0), mm."""
        z = np.zeros(1)
        return float(self.top(z, z)[0] - self.bottom(z, z)[0])

    def endplate_centre(self, which: str) -> np.ndarray:
        z = np.zeros(1)
        w = float(self.endplate(which, z, z)[0])
        return self.centre + w * self.axis

    @property
    def radius(self) -> float:
        """Radius of a sphere around the centre that holds the body."""
        return float(np.sqrt((self.width / 2) ** 2 + (self.depth / 2) ** 2
                             + (self.height / 2 + self.concavity) ** 2)) + 1.0

    def volume_mm3(self, step: float = 0.1) -> float:
        """Exact column integration: sum over a (u, v) grid of (top - bottom), step in mm."""
        u = np.arange(-self.width / 2 + step / 2, self.width / 2, step)
        v = np.arange(-self.depth / 2 + step / 2, self.depth / 2, step)
        uu, vv = np.meshgrid(u, v, indexing="ij")
        r = self.rho(uu, vv)
        inside = r <= 1.0
        length = self.top(uu, vv, r) - self.bottom(uu, vv, r)
        return float(np.sum(length[inside]) * step * step)


@dataclass
class Disc:
    """An intervertebral disc between two bodies (or a rudimentary sacral disc)."""

    upper: Vertebra
    lower: Vertebra
    height: float  # centre height between the endplate centres, mm
    wedge_deg: float  # angle between the two endplates (lordotic positive)
    grade: int = 0  # degeneration 0 (healthy) .. 3 (black, collapsed)
    bulge: float = 1.5  # outward bulge beyond the bodies, mm
    index: int = 0
    sacral: bool = False

    @property
    def name(self) -> str:
        return f"{self.upper.level}-{self.lower.level}"

    @property
    def centre(self) -> np.ndarray:
        return 0.5 * (self.upper.endplate_centre(INFERIOR) + self.lower.endplate_centre(SUPERIOR))

    @property
    def theta(self) -> float:
        return 0.5 * (self.upper.theta + self.lower.theta)

    @property
    def rotation(self) -> np.ndarray:
        return np.stack(axis_vectors(self.theta), axis=1)

    @property
    def width(self) -> float:
        return 0.5 * (self.upper.width + self.lower.width) + 2 * self.bulge

    @property
    def depth(self) -> float:
        return 0.5 * (self.upper.depth + self.lower.depth) + 2 * self.bulge

    @property
    def radius(self) -> float:
        return float(np.hypot(self.width / 2, self.depth / 2) + self.height) + 2.0


@dataclass
class SoftTissue:
    """Soft-tissue layout around the spine (mm)."""

    back_muscle: float  # posterior canal wall -> muscle/fat boundary
    fat: float  # subcutaneous fat thickness at the back
    belly: float  # anterior body wall distance in front of the bodies
    retro_fat: float  # retroperitoneal fat layer in front of the bodies
    aorta_x: float
    aorta_r: float
    ivc_x: float
    ivc_r: float
    back_wave: float  # amplitude of the slow variation of the back layers along s
    torso_half_width: float  # left-right half width of the elliptic torso outline
    belly_fat: float  # subcutaneous fat of the anterior abdominal wall
    conus_level: str  # level at whose centre the spinal cord ends
    sac_end_level: str  # level at whose centre the thecal sac ends


@dataclass
class Spine:
    """The whole model: bodies top to bottom, discs, soft tissue, the spine curve."""

    vertebrae: list[Vertebra]
    discs: list[Disc]
    soft: SoftTissue
    curve: SpineCurve
    lumbar_count: int
    sacral_slope_deg: float
    lordosis_target_deg: float
    fracture_level: str | None = None

    def vertebra(self, level: str) -> Vertebra:
        for v in self.vertebrae:
            if v.level == level:
                return v
        raise KeyError(level)

    @property
    def bodies(self) -> list[Vertebra]:
        """Vertebral bodies that carry label 1 (T10..S1)."""
        return [v for v in self.vertebrae if v.is_body]

    @property
    def levels_in_scope(self) -> list[str]:
        """T12..S1: the levels of the trials' inclusion rule."""
        names = [v.level for v in self.bodies]
        return names[names.index(LESION_LEVELS_FIRST):]

    @property
    def anatomical_discs(self) -> list[Disc]:
        return [d for d in self.discs if not d.sacral]

    def lordosis_deg(self) -> float:
        """Angle between the superior endplates of L1 and S1 (Cobb-like), degrees."""
        return float(np.degrees(self.vertebra("S1").theta - self.vertebra("L1").theta))


# --- sampling ------------------------------------------------------------------------------

def spine_curve(vertebrae: list[Vertebra], discs: list[Disc]) -> SpineCurve:
    """The spine curve through body and disc centres (vertebrae ordered top to bottom)."""
    disc_below = {d.upper.level: d for d in discs}
    names: list[str] = []
    nodes: list[np.ndarray] = []
    rows: list[tuple[float, float, float, float]] = []  # half depth, canal ap, canal width, width
    for v in vertebrae:
        names.append(v.level)
        nodes.append(v.centre[1:])
        rows.append((v.depth / 2, v.canal_ap, v.canal_width, v.width))
        d = disc_below.get(v.level)
        if d is not None:
            names.append(d.name)
            nodes.append(d.centre[1:])
            rows.append(((d.upper.depth + d.lower.depth) / 4, (d.upper.canal_ap + d.lower.canal_ap) / 2,
                         (d.upper.canal_width + d.lower.canal_width) / 2,
                         (d.upper.width + d.lower.width) / 2))
    return SpineCurve.from_nodes(names, nodes, rows)


def _posterior_primitives(v: Vertebra, kind: str) -> list[Primitive]:
    """Pedicles, laminae, spinous process, articular and transverse processes."""
    H, D = v.height, v.depth
    ap, cw = v.canal_ap, v.canal_width
    v_pw = -D / 2.0
    v_cp = v_pw - ap
    prims: list[Primitive] = []
    if kind == "sacral":
        prims.append(Primitive((cw / 4 + 1, v_cp - 2.5, 0.0), (cw / 4 + 5, 3.5, 0.48 * H), 0.0, 4, True))
        prims.append(Primitive((0.0, v_cp - 7.0, -0.05 * H), (2.5, 4.0, 0.32 * H), 0.0, 2))
        if v.level == "S1":
            prims.append(Primitive((cw / 2 + 4, v_pw - 0.45 * ap, 0.1 * H), (4.5, 0.55 * ap + 1.5, 0.3 * H),
                                   0.0, 2, True))
            prims.append(Primitive((cw / 2 + 3, v_cp + 1.0, 0.5 * H), (5.0, 6.0, 0.28 * H), 0.0, 2, True))
            prims.append(Primitive((v.width / 2 + 9, -0.05 * D, 0.02 * H), (21.0, 0.46 * D, 0.5 * H),
                                   0.0, 2, True))
        return prims
    steep = np.radians(40.0 if kind == "thoracic" else 18.0)
    length = (30.0 if kind == "thoracic" else 26.0) * (D / 33.0)
    prims.append(Primitive((cw / 2 + 4, v_pw - 0.45 * ap, 0.15 * H), (4.5, 0.55 * ap + 1.5, 0.28 * H),
                           0.0, 2, True))  # pedicles
    prims.append(Primitive((cw / 4 + 1, v_cp - 2.5, -0.12 * H), (cw / 4 + 4, 3.2, 0.36 * H),
                           np.radians(12.0), 4, True))  # laminae
    sp_centre_v = v_cp - 1.0 - 0.5 * length * np.cos(steep)
    sp_centre_w = -0.15 * H - 0.5 * length * np.sin(steep)
    prims.append(Primitive((0.0, sp_centre_v, sp_centre_w), (3.5, 0.5 * length + 1.0, 0.3 * H), steep, 4))
    prims.append(Primitive((cw / 2 + 3, v_cp + 1.0, 0.45 * H), (5.0, 6.0, 0.28 * H), 0.0, 2, True))
    prims.append(Primitive((cw / 2 + 2, v_cp - 2.0, -0.5 * H), (5.0, 6.0, 0.3 * H), 0.0, 2, True))
    if kind == "lumbar":
        prims.append(Primitive((cw / 2 + 24, v_pw - 0.4 * ap, 0.1 * H), (17.0, 4.0, 5.0), 0.0, 2, True))
    return prims


def sample_spine(rng: np.random.Generator, lumbar_count: int | None = None,
                 fracture: bool | None = None, degeneration: float = 1.0) -> Spine:
    """Draw a spine: sizes, curvature, disc heights and degeneration, optional variants.

    ``lumbar_count`` None draws 5 (90 %), 4 or 6 (5 % each); ``fracture`` None draws a wedge
    (compression) fracture of T12, L1 or L2 in 8 % of spines.  ``degeneration`` scales how
    degenerate the discs are (0: all healthy).
    """
    if lumbar_count is None:
        lumbar_count = int(rng.choice([4, 5, 6], p=[0.05, 0.9, 0.05]))
    lumbar = lumbar_names(lumbar_count)
    levels = ["T10", "T11", "T12", *lumbar, "S1"]
    scale = rng.uniform(0.88, 1.12)
    depth_scale = scale * rng.uniform(0.95, 1.05)
    if fracture is None:
        fracture = bool(rng.random() < 0.08)
    fracture_level = str(rng.choice(["T12", "L1", "L2"])) if fracture else None

    # disc degeneration grades, more frequent and severe at the lower levels
    grades: dict[str, int] = {}
    for position, name in enumerate(levels[:-1]):
        below = len(levels) - 2 - position  # 0 for the lumbosacral disc
        p_degen = degeneration * (0.55 if below <= 1 else 0.3 if below <= 3 else 0.12)
        grade = 0
        while grade < 3 and rng.random() < p_degen:
            grade += 1
        grades[name] = grade

    sacral_slope = np.radians(35.0)  # re-oriented below
    lordosis_target = rng.uniform(38.0, 62.0)
    share = np.array(LORDOSIS_SHARE[:lumbar_count]) * rng.uniform(0.8, 1.2, lumbar_count)
    share = share / share.sum()

    vertebrae: list[Vertebra] = []
    # build from S1 upwards
    H, D, W = BODY_SIZE["S1"]
    s1 = Vertebra("S1", 0, np.zeros(3), sacral_slope, H * scale * rng.uniform(0.96, 1.04),
                  D * depth_scale, W * scale, concavity=rng.uniform(0.8, 1.6), canal_ap=12.0 * scale,
                  canal_width=26.0 * scale)
    vertebrae.append(s1)
    discs_spec: list[tuple[Vertebra, Vertebra, float, float, int]] = []
    lower = s1
    upward = list(reversed(levels[:-1]))
    for position, name in enumerate(upward):
        h0, d0, w0 = BODY_SIZE[name]
        jitter = rng.uniform(0.96, 1.04, 3)
        kind = "thoracic" if name.startswith("T") else "lumbar"
        canal_ap = (14.0 if kind == "thoracic" else 16.5) * scale * rng.uniform(0.9, 1.1)
        canal_w = (18.0 if kind == "thoracic" else 23.0) * scale * rng.uniform(0.92, 1.08)
        wedge = rng.uniform(0.15, 0.4) if name == fracture_level else 0.0
        upper = Vertebra(name, 0, np.zeros(3), 0.0, h0 * scale * jitter[0], d0 * depth_scale * jitter[1],
                         w0 * scale * jitter[2], concavity=rng.uniform(0.8, 1.8), wedge=wedge,
                         canal_ap=canal_ap, canal_width=canal_w)
        grade = grades[name]
        height = DISC_HEIGHT[name] * scale * rng.uniform(0.85, 1.15) * (1.0, 0.9, 0.72, 0.5)[grade]
        if position < lumbar_count:
            alpha = lordosis_target * share[position]
        elif name == "T12":
            alpha = rng.uniform(-2.0, 2.0)
        else:
            alpha = -rng.uniform(2.0, 5.0)
        if lower.wedge:
            alpha -= np.degrees(np.arctan(lower.wedge * lower.height / lower.depth))
        rim_room = height - lower.concavity - upper.concavity - 1.2
        max_alpha = np.degrees(np.arctan(max(rim_room, 0.2) / (0.5 * max(lower.depth, upper.depth))))
        alpha = float(np.clip(alpha, -max_alpha, max_alpha))
        upper.theta = lower.theta - np.radians(alpha)
        p = lower.endplate_centre(SUPERIOR)
        a_d = lower.axis + upper.axis
        a_d /= np.linalg.norm(a_d)
        q = p + height * a_d
        z = np.zeros(1)
        upper.centre = q - float(upper.bottom(z, z)[0]) * upper.axis
        vertebrae.append(upper)
        discs_spec.append((upper, lower, height, alpha, grade))
        lower = upper

    # fused sacral segments below S1
    sacral: list[Vertebra] = []
    discs_sacral: list[tuple[Vertebra, Vertebra, float, float, int]] = []
    upper = s1
    for name, fh, fd, fw in SACRAL_SEGMENTS:
        seg = Vertebra(name, 0, np.zeros(3), upper.theta - np.radians(rng.uniform(6.0, 12.0)),
                       s1.height * fh, s1.depth * fd, s1.width * fw, concavity=0.4, is_body=False,
                       canal_ap=max(5.0, s1.canal_ap * (fd + 0.2)), canal_width=s1.canal_width * fw)
        gap = 1.6
        q = upper.endplate_centre(INFERIOR)
        a_d = upper.axis + seg.axis
        a_d /= np.linalg.norm(a_d)
        p = q - gap * a_d
        z = np.zeros(1)
        seg.centre = p - float(seg.top(z, z)[0]) * seg.axis
        sacral.append(seg)
        discs_sacral.append((upper, seg, gap, float(np.degrees(upper.theta - seg.theta)), 0))
        upper = seg

    ordered = list(reversed(vertebrae)) + sacral  # top to bottom
    # orient the whole spine as in a supine patient: L1 a little anterior of S1
    l1 = next(v for v in ordered if v.level == "L1")
    d = l1.centre - s1.centre
    delta = np.radians(rng.uniform(3.0, 15.0)) - np.arctan2(d[1], d[2])
    cos_d, sin_d = np.cos(delta), np.sin(delta)
    for v in ordered:
        rel = v.centre - s1.centre
        v.centre = s1.centre + np.array([rel[0], rel[1] * cos_d + rel[2] * sin_d, -rel[1] * sin_d + rel[2] * cos_d])
        v.theta = v.theta + delta
    # origin at the middle lumbar body
    mid = lumbar[len(lumbar) // 2]
    origin = next(v for v in ordered if v.level == mid).centre.copy()
    for index, v in enumerate(ordered):
        v.centre = v.centre - origin
        v.index = index
        kind = "sacral" if v.level.startswith("S") else "thoracic" if v.level.startswith("T") else "lumbar"
        v.posterior = _posterior_primitives(v, kind)
    discs: list[Disc] = []
    for upper_v, lower_v, height, alpha, grade in reversed(discs_spec):
        discs.append(Disc(upper_v, lower_v, height, alpha, grade,
                          bulge=rng.uniform(0.8, 1.8) + 0.8 * grade))
    for upper_v, lower_v, height, alpha, grade in discs_sacral:
        discs.append(Disc(upper_v, lower_v, height, alpha, grade, bulge=-1.0, sacral=True))
    for index, d in enumerate(discs):
        d.index = index

    soft = SoftTissue(
        back_muscle=rng.uniform(42.0, 65.0) * scale,
        fat=rng.uniform(6.0, 38.0),
        belly=rng.uniform(95.0, 165.0),
        retro_fat=rng.uniform(1.0, 5.0),
        aorta_x=-rng.uniform(8.0, 16.0),
        aorta_r=rng.uniform(8.0, 11.5),
        ivc_x=rng.uniform(14.0, 22.0),
        ivc_r=rng.uniform(9.0, 12.5),
        back_wave=rng.uniform(0.0, 8.0),
        torso_half_width=rng.uniform(135.0, 180.0),
        belly_fat=rng.uniform(8.0, 35.0),
        conus_level=str(rng.choice(["T12", "L1", "L1", "L2"])),
        sac_end_level="S2",
    )
    curve = spine_curve(ordered, discs)
    return Spine(vertebrae=ordered, discs=discs, soft=soft, curve=curve, lumbar_count=lumbar_count,
                 sacral_slope_deg=float(np.degrees(s1.theta)), lordosis_target_deg=float(lordosis_target),
                 fracture_level=fracture_level)
