"""Rasterise the continuous model into tissue ids on a (supersampled) grid.

The tissue-id array is 6-D: (ni, si, nj, sj, nk, sk) -- voxel index and sub-sample index per
axis -- so that partial-volume averaging is a mean over axes 1, 3, 5 and the centre sub-sample
gives the voxel's label (centre-point rule).  Structures are painted in order (soft tissue, canal,
vessels, posterior elements, discs, bodies with their lesions); each is evaluated only inside the
index box around its oriented bounding box.  Painting is branch-free uint8 arithmetic
(``v + m * (new - v)``), much faster than masked assignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modicseg.synth import tissues as tis
from modicseg.synth.anatomy import Primitive, Spine, Vertebra
from modicseg.synth.curve import CurveLUT
from modicseg.synth.grid import Grid
from modicseg.synth.lesions import Lesion

Box = tuple[slice, slice, slice]
F = np.float32


def _blend(view: np.ndarray, mask: np.ndarray, value: int | np.ndarray) -> None:
    """In place: view = value where mask (uint8 wrap-around arithmetic, no branches)."""
    new = np.asarray(value, dtype=np.uint8)
    view += mask.view(np.uint8) * (new - view)


@dataclass
class Sampler:
    """Sub-sample coordinates of a grid in the subject frame."""

    grid: Grid
    voxel_to_subject: np.ndarray  # 4x4

    def __post_init__(self) -> None:
        self.inverse = np.linalg.inv(self.voxel_to_subject)
        offsets = self.grid.sub_offsets()
        self.offsets = offsets
        self.index = [(np.arange(n)[:, None] + off[None, :]).astype(np.float64)
                      for n, off in zip(self.grid.shape, offsets, strict=True)]  # (n, s) per axis
        ni, nj, nk = self.grid.shape
        si, sj, sk = self.grid.supersample
        self.shape6 = (ni, si, nj, sj, nk, sk)

    def box(self, centre: np.ndarray, rotation: np.ndarray, half: np.ndarray) -> Box | None:
        """Index box holding an oriented box (subject centre, axes as columns, half sizes)."""
        corners = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]) * half
        pts = corners @ rotation.T + centre
        idx = pts @ self.inverse[:3, :3].T + self.inverse[:3, 3]
        lo = np.floor(idx.min(axis=0) - 1.0).astype(int)
        hi = np.ceil(idx.max(axis=0) + 1.0).astype(int) + 1
        slices = []
        for axis, n in enumerate(self.grid.shape):
            a, b = max(lo[axis], 0), min(hi[axis], n)
            if b <= a:
                return None
            slices.append(slice(a, b))
        return tuple(slices)  # type: ignore[return-value]

    def coordinate(self, direction: np.ndarray, origin_value: float, box: Box | None = None,
                   centre_only: bool = False) -> np.ndarray:
        """``direction . p_subject - origin_value`` at the sub-samples of ``box`` (6-D, float32)."""
        m = self.voxel_to_subject
        vector = direction @ m[:3, :3]
        const = float(direction @ m[:3, 3]) - origin_value
        box = box or (slice(None),) * 3
        parts = []
        for axis in range(3):
            idx = self.index[axis][box[axis]]
            if centre_only:
                mid = idx.shape[1] // 2
                idx = idx[:, mid:mid + 1]
            values = (idx * vector[axis]).astype(F)
            shape = [1] * 6
            shape[2 * axis] = values.shape[0]
            shape[2 * axis + 1] = values.shape[1]
            parts.append(values.reshape(shape))
        return (parts[0] + parts[1]) + (parts[2] + F(const))

    def local(self, rotation: np.ndarray, centre: np.ndarray, box: Box) -> tuple[np.ndarray, ...]:
        """Local coordinates (columns of ``rotation``) about ``centre`` on the box's sub-samples."""
        return tuple(self.coordinate(rotation[:, c], float(rotation[:, c] @ centre), box) for c in range(3))

    def sub_delta(self, direction: np.ndarray) -> np.ndarray:
        """Offset of each sub-sample from its voxel centre along ``direction`` (si*sj*sk,)."""
        vector = direction @ self.voxel_to_subject[:3, :3]
        oi, oj, ok = self.offsets
        d = (oi[:, None, None] * vector[0] + oj[None, :, None] * vector[1] + ok[None, None, :] * vector[2])
        return d.ravel().astype(F)


POST_CORTEX_MM = 1.0
#: Evaluate the torso outline with x at every voxel (reference for the sparse evaluation).
TORSO_EVERYWHERE = False


def _superellipsoid(a: np.ndarray, b: np.ndarray, c: np.ndarray, half: np.ndarray, power: int) -> np.ndarray:
    """(a/h0)^p + (b/h1)^p + (c/h2)^p for p = 2 or 4."""
    na, nb, nc = a * F(1 / half[0]), b * F(1 / half[1]), c * F(1 / half[2])
    na *= na
    nb *= nb
    nc *= nc
    if power == 4:
        na *= na
        nb *= nb
        nc *= nc
    return na + nb + nc


def _rho(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Super-elliptic radius: p=2 for v >= 0, p=4 for v < 0 (float32, branch-free)."""
    uu = u * F(1.0 / a)
    uu *= uu
    vv = v * F(1.0 / b)
    vv *= vv
    ant = np.sqrt(uu + vv)
    post = np.sqrt(np.sqrt(uu * uu + vv * vv))
    return post + (v >= 0) * (ant - post)


class Rasterizer:
    """Paints a spine with its lesions onto a grid; ``paint()`` returns the 6-D id array."""

    def __init__(self, grid: Grid, subject_to_scanner: np.ndarray) -> None:
        self.grid = grid
        self.sampler = Sampler(grid, np.linalg.inv(subject_to_scanner) @ grid.affine)
        self.tid = np.zeros(self.sampler.shape6, dtype=np.uint8)

    # --- soft tissue and canal in curvilinear coordinates --------------------------------------
    def paint_soft_tissue(self, spine: Spine) -> None:
        """Layers that depend only on (y, z) are tabulated on the fine (s, n) table and gathered
        per voxel; canal contents, psoas and vessels (x-dependent) are evaluated on candidates."""
        sp, curve, soft = self.sampler, spine.curve, spine.soft
        ex, ey, ez = np.eye(3)
        ni, nj, nk = self.grid.shape
        x = sp.coordinate(ex, 0.0, centre_only=True).reshape(ni, nj, nk)
        y = sp.coordinate(ey, 0.0, centre_only=True).reshape(ni, nj, nk)
        z = sp.coordinate(ez, 0.0, centre_only=True).reshape(ni, nj, nk)
        fine = float(min(0.5, 0.5 * self.grid.spacing[:2].min()))
        lut = CurveLUT.build(curve, (float(y.min()), float(y.max())), (float(z.min()), float(z.max())),
                             coarse=4.0, fine=fine)
        s, n = lut.s, lut.n
        s0, step, table = curve.profile_table()
        si = np.clip(((s - F(s0)) * F(1 / step)).astype(np.int32), 0, len(table["half_depth"]) - 1)
        half = table["half_depth"][si]
        canal_ap = table["canal_ap"][si]
        rel = n + half  # 0 at the posterior wall of the bodies, negative posteriorly
        front = n - half  # 0 at the anterior wall, positive anteriorly
        wave = F(soft.back_wave) * np.sin(s * F(1 / 70.0) + F(soft.fat))
        muscle_end = -canal_ap - F(soft.back_muscle) - wave
        back = muscle_end - F(soft.fat) - F(0.5) * wave - F(2.0) - half  # n of the back skin surface
        layer = np.full(s.shape, tis.FAT, dtype=np.uint8)
        _blend(layer, rel >= muscle_end - 1.0, tis.LIGAMENT)  # thoracolumbar fascia
        _blend(layer, rel >= muscle_end, tis.MUSCLE)
        _blend(layer, front >= 0.0, tis.FAT)
        _blend(layer, front >= F(soft.retro_fat), tis.VISCERA)
        s_top = curve.node_s.get("L1", 0.0)
        s_bottom = curve.node_s["S1"]
        vessel_front = F(soft.aorta_r + soft.retro_fat * 0.5)
        ivc_front = F(0.8 * soft.ivc_r + soft.retro_fat * 0.5)
        zone = ((rel <= 0.5) & (rel >= -canal_ap - 0.5)).view(np.uint8)
        zone += np.uint8(2) * ((s <= s_top + 10) & (s >= s_bottom - 25) & (n >= -25.0) & (n <= 30.0))
        zone += np.uint8(4) * ((front >= 0.0) & (front <= 2 * max(vessel_front, ivc_front) + 1.0))

        # torso outline: exact at x = 0 on the table; redone with x only near the outline
        inner = layer.copy()
        self._torso(layer, np.zeros(1, dtype=F), n, back, spine)
        l3 = spine.bodies[len(spine.bodies) // 2]
        front_skin = F(l3.depth / 2 + soft.belly)
        b = (front_skin - back) * F(0.5)
        depth0 = b - np.abs(n - (back + front_skin) * F(0.5))
        x_max = float(np.abs(x).max())
        ratio = min(1.0, (x_max / soft.torso_half_width) ** 2)
        shrink = float(b.max()) * (1.0 - np.sqrt(1.0 - ratio)) + x_max * np.sqrt(ratio) + 1.0
        reach = np.inf if TORSO_EVERYWHERE else max(soft.fat, soft.belly_fat) + 13.0 + shrink
        zone += np.uint8(8) * ((depth0 >= 0.0) & (depth0 < F(reach)))

        flat = lut.index(y, z).ravel()
        voxel_layer = layer.ravel()[flat]
        voxel_zone = zone.ravel()[flat]
        xf = x.ravel()
        cand = np.flatnonzero(voxel_zone & 8)
        if cand.size:
            cell = flat[cand]
            redo = inner.ravel()[cell]
            self._torso(redo, xf[cand], n.ravel()[cell], back.ravel()[cell], spine)
            voxel_layer[cand] = redo

        # psoas along the lumbar spine (voxel level)
        cand = np.flatnonzero(voxel_zone & 2)
        if cand.size:
            cell = flat[cand]
            sl, nl, xl = s.ravel()[cell], n.ravel()[cell], xf[cand]
            grow = np.clip((F(s_top) - sl) / F(max(s_top - s_bottom, 1.0)), 0.0, 1.0)
            rp = F(4.0) + F(18.0) * grow
            px = table["width"][si.ravel()[cell]] / 2 + F(0.6) * rp
            psoas = ((np.abs(xl) - px) ** 2 + F(1.6) * (nl - F(0.25) * rp) ** 2) <= rp * rp
            voxel_layer[cand[psoas]] = tis.MUSCLE
        # great vessels: the aorta divides at L4, the IVC is formed at L5 (voxel level)
        cand = np.flatnonzero(voxel_zone & 4)
        if cand.size:
            cell = flat[cand]
            sb, fb, xb = s.ravel()[cell], front.ravel()[cell], xf[cand]
            below = np.clip(F(curve.node_s.get("L4", s_bottom + 40.0)) - sb, 0.0, None)
            r_aorta = F(soft.aorta_r) * (F(1.0) - F(0.25) * (below > 0))
            ax = F(soft.aorta_x)
            dz = (fb - vessel_front) ** 2
            left = ((xb - (ax - F(0.6) * below)) ** 2 + dz) <= r_aorta * r_aorta
            right = (((xb - (ax + F(0.6) * below)) ** 2 + dz) <= r_aorta * r_aorta) & (below > 0)
            ivc_below = np.clip(F(curve.node_s.get("L5", s_bottom + 20.0)) - sb, 0.0, None)
            ivc = (((xb - (F(soft.ivc_x) + F(0.5) * ivc_below)) / F(soft.ivc_r)) ** 2
                   + ((fb - ivc_front) / F(0.8 * soft.ivc_r)) ** 2) <= 1.0
            voxel_layer[cand[left | right | ivc]] = tis.VESSEL
        self.tid[:] = voxel_layer.reshape(ni, nj, nk)[:, None, :, None, :, None]

        # spinal canal: full sub-sampling on candidate voxels (epidural fat, CSF, cord, roots)
        dx = sp.sub_delta(ex)
        margin = F(np.abs(dx).max() + 0.5)
        cand = np.flatnonzero(voxel_zone & 1)
        if cand.size == 0:
            return
        cell = flat[cand]
        cw_all = table["canal_width"][si.ravel()[cell]]
        keep = np.abs(xf[cand]) <= cw_all / 2 + margin
        cand, cell, cw = cand[keep], cell[keep], cw_all[keep][:, None]
        if cand.size == 0:
            return
        a, b, c = np.unravel_index(cand, (ni, nj, nk))
        xs = xf[cand][:, None] + dx[None, :]  # (N, nsub)
        rel_, s_ = rel.ravel()[cell][:, None], s.ravel()[cell][:, None]
        cap = canal_ap.ravel()[cell][:, None]
        s_sac = curve.node_s.get(soft.sac_end_level, s_bottom - 40.0)
        s_conus = curve.node_s[soft.conus_level]
        current = self.tid[a, :, b, :, c, :].reshape(len(cand), -1)
        _blend(current, (rel_ <= 0.0) & (rel_ >= -cap) & (np.abs(xs) <= cw / 2), tis.FAT)
        sac_a = F(0.42) * cw
        sac_b = F(0.36) * cap * np.clip((s_ - F(s_sac)) / F(25.0), 0.25, 1.0)
        sac_c = -F(0.6) - sac_b
        xa = xs / sac_a
        in_sac = ((xa * xa + ((rel_ - sac_c) / sac_b) ** 2) <= 1.0) & (s_ >= s_sac)
        _blend(current, in_sac, tis.CSF)
        taper = np.clip((s_ - F(s_conus)) / F(15.0), 0.0, 1.0)
        cord = ((xs / (F(4.5) * taper + F(1e-3))) ** 2
                + ((rel_ - sac_c - F(0.3)) / (F(3.6) * taper + F(1e-3))) ** 2) <= 1.0
        _blend(current, cord & in_sac, tis.CORD)
        roots = ((xa * F(1 / 0.55)) ** 2 + ((rel_ - sac_c + F(0.45) * sac_b) / (F(0.35) * sac_b)) ** 2) <= 1.0
        _blend(current, roots & in_sac & (s_ < s_conus) & (s_ > s_sac + 8.0), tis.ROOTS)
        self.tid[a, :, b, :, c, :] = current.reshape((len(cand), *self.grid.supersample))

    @staticmethod
    def _torso(layer: np.ndarray, x: np.ndarray, n: np.ndarray, back: np.ndarray, spine: Spine) -> None:
        """Elliptic torso outline in (x, n): air outside, then skin, subcutaneous fat and (in
        front) the abdominal wall muscle, all following the outline."""
        soft = spine.soft
        l3 = spine.bodies[len(spine.bodies) // 2]
        front_skin = F(l3.depth / 2 + soft.belly)
        centre = (back + front_skin) * F(0.5)
        b = (front_skin - back) * F(0.5)
        dx = x * F(1.0 / soft.torso_half_width)
        dn = (n - centre) / b
        rho = np.sqrt(dx * dx + dn * dn)
        radius = np.sqrt(x * x + (n - centre) ** 2)
        # inward distance to the outline along the ray from the centre (deep at the centre itself)
        depth = (F(1.0) - rho) * radius / np.maximum(rho, F(1e-6)) + (rho < F(1e-4)) * F(1e4)
        anterior = dn > F(-0.2)
        fat = np.where(anterior, F(soft.belly_fat), F(soft.fat))
        _blend(layer, anterior & (depth < fat + F(11.0)), tis.MUSCLE)
        _blend(layer, depth < fat + F(2.0), tis.FAT)
        _blend(layer, depth < F(2.0), tis.SKIN)
        _blend(layer, rho > 1.0, tis.AIR)

    # --- posterior elements -------------------------------------------------------------------
    def paint_posterior(self, vertebra: Vertebra) -> None:
        for prim in vertebra.posterior:
            for side in ((1.0, -1.0) if prim.mirrored else (1.0,)):
                self._paint_primitive(vertebra, prim, side)

    def _paint_primitive(self, vertebra: Vertebra, prim: Primitive, side: float) -> None:
        cu, cv, cw = prim.centre
        centre = vertebra.to_subject(np.array([[side * cu, cv, cw]]))[0]
        c, s_ = np.cos(prim.tilt), np.sin(prim.tilt)
        # primitive axes in the vertebra frame: u, (c, s) in (v, w), (-s, c) in (v, w)
        axes_local = np.array([[1, 0, 0], [0, c, s_], [0, -s_, c]]).T
        rotation = vertebra.rotation @ axes_local
        box = self.sampler.box(centre, rotation, np.asarray(prim.half) + 0.5)
        if box is None:
            return
        du, pv, pw = self.sampler.local(rotation, centre, box)
        half = np.asarray(prim.half, dtype=np.float64)
        inner = np.maximum(half - POST_CORTEX_MM, 0.3)
        outer_norm = _superellipsoid(du, pv, pw, half, prim.power)
        inner_norm = _superellipsoid(du, pv, pw, inner, prim.power)
        ids = (inner_norm > 1.0).view(np.uint8) + np.uint8(tis.POST_MARROW)  # POST_CORTEX = POST_MARROW + 1
        view = self.tid[box[0], :, box[1], :, box[2], :]
        _blend(view, outer_norm <= 1.0, ids)

    # --- discs ---------------------------------------------------------------------------------
    def paint_disc(self, spine: Spine, disc_index: int) -> None:
        disc = spine.discs[disc_index]
        half = np.array([disc.width / 2, disc.depth / 2, disc.height / 2 + 4.0])
        box = self.sampler.box(disc.centre, disc.rotation, half)
        if box is None:
            return
        up, lo = disc.upper, disc.lower
        uu, vu, wu = self.sampler.local(up.rotation, up.centre, box)
        ul, vl, wl = self.sampler.local(lo.rotation, lo.centre, box)
        ud, vd, wd = self.sampler.local(disc.rotation, disc.centre, box)
        rho = _rho(ud, vd, disc.width / 2, disc.depth / 2)
        d_low = wl - lo.top(ul, vl, _rho(ul, vl, lo.width / 2, lo.depth / 2))
        d_up = up.bottom(uu, vu, _rho(uu, vu, up.width / 2, up.depth / 2)) - wu
        inside = (rho <= 1.0) & (d_low >= 0) & (d_up >= 0) & (np.abs(wd) <= disc.height / 2 + 4.0)
        view = self.tid[box[0], :, box[1], :, box[2], :]
        if disc.sacral:
            _blend(view, inside, tis.SACRAL_DISC)
            return
        f = d_low / (d_low + d_up + F(1e-3)) - F(0.5)
        shrink = 1.0 - 0.12 * disc.grade
        na, nb = disc.width / 2 * 0.55 * shrink, disc.depth / 2 * 0.5 * shrink
        q = ud * F(1 / na)
        r = (vd + F(0.08 * disc.depth / 2)) * F(1 / nb)
        t = f * F(1 / 0.36)
        nucleus = (q * q + r * r + t * t) <= 1.0
        if disc.grade >= 2:
            nucleus &= np.abs(f) > 0.05  # intranuclear cleft
        ids = np.uint8(tis.ANNULUS_BASE + disc.index) - nucleus.view(np.uint8) * np.uint8(
            tis.ANNULUS_BASE - tis.NUCLEUS_BASE)
        _blend(view, inside, ids)

    # --- vertebral bodies and lesions -----------------------------------------------------------
    def paint_body(self, vertebra: Vertebra, lesions: list[Lesion]) -> None:
        half = np.array([vertebra.width / 2, vertebra.depth / 2, vertebra.height / 2 + vertebra.concavity]) + 0.3
        box = self.sampler.box(vertebra.centre, vertebra.rotation, half)
        if box is None:
            return
        u, v, w = self.sampler.local(vertebra.rotation, vertebra.centre, box)
        rho = _rho(u, v, vertebra.width / 2, vertebra.depth / 2)
        top = vertebra.top(u, v, rho)
        bottom = vertebra.bottom(u, v, rho)
        inside = (rho <= 1.0) & (w <= top) & (w >= bottom)
        ct = F(vertebra.cortex)
        radial = np.sqrt(u * u + v * v) * (F(1.0) / np.maximum(rho, F(1e-3)) - F(1.0))
        cortex = (top - w < ct) | (w - bottom < ct) | (radial < ct * F(1.3))
        if vertebra.is_body:
            marrow_id, cortex_id = tis.MARROW_BASE + vertebra.index, tis.CORTEX_BASE + vertebra.index
        else:
            marrow_id, cortex_id = tis.POST_MARROW, tis.POST_CORTEX
        ids = cortex.view(np.uint8) * np.uint8(cortex_id - marrow_id) + np.uint8(marrow_id)
        view = self.tid[box[0], :, box[1], :, box[2], :]
        _blend(view, inside, ids)
        for lesion in lesions:
            if lesion.level == vertebra.level:
                self.paint_lesion(vertebra, lesion)

    def paint_lesion(self, vertebra: Vertebra, lesion: Lesion) -> None:
        """Lesion voxels inside the body, evaluated only in the slab next to its endplate."""
        w_lo, w_hi = lesion.w_range(vertebra)
        reach = lesion.reach + 0.5
        centre = vertebra.to_subject(np.array([[lesion.u0, lesion.v0, 0.5 * (w_lo + w_hi)]]))[0]
        box = self.sampler.box(centre, vertebra.rotation, np.array([reach, reach, 0.5 * (w_hi - w_lo)]))
        if box is None:
            return
        u, v, w = self.sampler.local(vertebra.rotation, vertebra.centre, box)
        rho = _rho(u, v, vertebra.width / 2, vertebra.depth / 2)
        inside = lesion.contains(vertebra, u, v, w, rho) & (rho <= 1.0)
        if not inside.any():
            return
        ids = lesion.part(u, v) + np.uint8(tis.lesion_part_id(lesion.index, 0))
        view = self.tid[box[0], :, box[1], :, box[2], :]
        _blend(view, inside, ids)

    def paint(self, spine: Spine, lesions: list[Lesion]) -> np.ndarray:
        """Paint everything; returns the 6-D tissue-id array."""
        self.paint_soft_tissue(spine)
        for vertebra in spine.vertebrae:
            self.paint_posterior(vertebra)
        for index in range(len(spine.discs)):
            self.paint_disc(spine, index)
        for vertebra in spine.vertebrae:
            self.paint_body(vertebra, lesions)
        return self.tid


def rasterize(spine: Spine, lesions: list[Lesion], grid: Grid, subject_to_scanner: np.ndarray) -> np.ndarray:
    """6-D tissue ids (ni, si, nj, sj, nk, sk) of the model on ``grid``."""
    return Rasterizer(grid, subject_to_scanner).paint(spine, lesions)


def centre_samples(tid: np.ndarray) -> np.ndarray:
    """The tissue id at each voxel centre (centre-point rule), shape (ni, nj, nk)."""
    si, sj, sk = tid.shape[1], tid.shape[3], tid.shape[5]
    return tid[:, si // 2, :, sj // 2, :, sk // 2]
