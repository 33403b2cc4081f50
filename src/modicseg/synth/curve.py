"""The spine curve and curvilinear coordinates (s, n) in the mid-sagittal plane.

The curve is a cubic spline through the centres of the bodies and discs (subject y, z), extended
straight beyond both ends.  ``s`` is the arclength (mm, increasing superiorly, 0 at the S1 centre)
and ``n`` the signed distance from the curve, positive anteriorly.  Soft tissue, the canal and
its contents are laid out in (x, s, n); profiles give level-dependent sizes as functions of s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial import cKDTree

_EXTEND_MM = 400.0
_STEP_MM = 0.5


@dataclass
class SpineCurve:
    """Dense polyline of the spine curve with its arclength, tangents and anterior normals."""

    points: np.ndarray  # (M, 2) subject (y, z)
    s: np.ndarray  # (M,) arclength, increasing superiorly
    tangent: np.ndarray  # (M, 2) unit, pointing superiorly
    normal: np.ndarray  # (M, 2) unit, pointing anteriorly
    node_s: dict[str, float]  # s of each body / disc centre by name
    profiles: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (node s ascending, values)

    @classmethod
    def from_nodes(cls, names: list[str], nodes: list[np.ndarray],
                   rows: list[tuple[float, float, float, float]]) -> SpineCurve:
        """Spline through the centres (subject (y, z)) of the bodies and discs called ``names``, ordered top
        to bottom (one of them "S1"), each with its profile values (half depth, canal ap, canal width,
        width); ``anatomy.spine_curve`` builds them from a spine's vertebrae and discs."""
        pts = np.array(nodes[::-1])  # bottom to top
        chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        spline = CubicSpline(chord, pts, bc_type="natural")
        t = np.arange(0.0, chord[-1] + 1e-9, _STEP_MM / 2)
        dense = spline(t)
        seg = np.linalg.norm(np.diff(dense, axis=0), axis=1)
        arclength = np.concatenate([[0.0], np.cumsum(seg)])
        node_arc = np.interp(chord, t, arclength)
        # extend straight beyond both ends
        d0 = spline(chord[0], 1)
        d0 /= np.linalg.norm(d0)
        d1 = spline(chord[-1], 1)
        d1 /= np.linalg.norm(d1)
        ext = np.arange(_STEP_MM, _EXTEND_MM, _STEP_MM)
        below = dense[0] - ext[::-1, None] * d0
        above = dense[-1] + ext[:, None] * d1
        points = np.concatenate([below, dense, above])
        arc = np.concatenate([-ext[::-1], arclength, arclength[-1] + ext])
        # resample uniformly in arclength
        s_uniform = np.arange(arc[0], arc[-1], _STEP_MM)
        points = np.stack([np.interp(s_uniform, arc, points[:, 0]), np.interp(s_uniform, arc, points[:, 1])],
                          axis=1)
        tangent = np.gradient(points, axis=0)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
        s1_index = names[::-1].index("S1")
        offset = node_arc[s1_index]
        node_s = {name: float(a - offset) for name, a in zip(names[::-1], node_arc, strict=True)}
        profile_s = node_arc - offset
        values = np.array(rows[::-1])
        profiles = {key: (profile_s, values[:, i]) for i, key in
                    enumerate(("half_depth", "canal_ap", "canal_width", "width"))}
        return cls(points=points, s=s_uniform - offset, tangent=tangent, normal=normal, node_s=node_s,
                   profiles=profiles)

    def profile(self, name: str, s: np.ndarray) -> np.ndarray:
        """A level-dependent size at arclength ``s`` (linear between nodes, constant beyond)."""
        xs, ys = self.profiles[name]
        return np.interp(s, xs, ys)

    def profile_table(self, step: float = 0.5) -> tuple[float, float, dict[str, np.ndarray]]:
        """(s0, step, {name: values}) of every profile on a uniform s grid, for fast look-up."""
        cached = self.__dict__.get("_profile_table")
        if cached is not None and cached[1] == step:
            return cached
        s_grid = np.arange(self.s[0], self.s[-1], step)
        table = {name: np.interp(s_grid, xs, ys).astype(np.float32) for name, (xs, ys) in self.profiles.items()}
        self.__dict__["_profile_table"] = (float(s_grid[0]), step, table)
        return self.__dict__["_profile_table"]

    def project(self, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(s, n) of subject points (exact to well under 0.1 mm near the curve)."""
        y = np.asarray(y, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        query = np.stack([y.ravel(), z.ravel()], axis=1)
        coarse = 4  # KD tree on every 4th point (2 mm), then the best of the 9 dense neighbours
        tree = self.__dict__.get("_tree")
        if tree is None:
            tree = self.__dict__["_tree"] = cKDTree(self.points[::coarse])
        _, near = tree.query(query)
        candidates = np.clip(near[:, None] * coarse + np.arange(-coarse, coarse + 1)[None, :], 0,
                             len(self.points) - 1)
        d2 = ((query[:, None, :] - self.points[candidates]) ** 2).sum(axis=2)
        index = candidates[np.arange(len(query)), np.argmin(d2, axis=1)]
        delta = query - self.points[index]
        s = self.s[index] + np.einsum("ij,ij->i", delta, self.tangent[index])
        n = np.einsum("ij,ij->i", delta, self.normal[index])
        return s.reshape(y.shape), n.reshape(y.shape)


@dataclass
class CurveLUT:
    """(s, n) tabulated on a regular (y, z) grid: projected exactly on a coarse grid, refined
    bilinearly to ``fine`` mm and read back by nearest neighbour (error <= fine * 0.71 mm)."""

    origin: np.ndarray  # (y0, z0)
    step: float
    s: np.ndarray  # (ny, nz) float32
    n: np.ndarray

    @classmethod
    def build(cls, curve: SpineCurve, y_range: tuple[float, float], z_range: tuple[float, float],
              coarse: float = 2.0, fine: float = 0.5) -> CurveLUT:
        y = np.arange(y_range[0] - coarse, y_range[1] + 2 * coarse, coarse)
        z = np.arange(z_range[0] - coarse, z_range[1] + 2 * coarse, coarse)
        yy, zz = np.meshgrid(y, z, indexing="ij")
        s, n = curve.project(yy, zz)
        factor = coarse / fine
        shape = (int((len(y) - 1) * factor) + 1, int((len(z) - 1) * factor) + 1)
        s_fine = _refine(s, shape)
        n_fine = _refine(n, shape)
        return cls(np.array([y[0], z[0]]), fine, s_fine, n_fine)

    def index(self, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Flat index of the nearest table cell of each subject point (int32)."""
        ny, nz = self.s.shape
        inv = np.float32(1.0 / self.step)
        iy = ((y - np.float32(self.origin[0] - 0.5 * self.step)) * inv).astype(np.int32)
        iz = ((z - np.float32(self.origin[1] - 0.5 * self.step)) * inv).astype(np.int32)
        np.clip(iy, 0, ny - 1, out=iy)
        np.clip(iz, 0, nz - 1, out=iz)
        iy *= np.int32(nz)
        iy += iz
        return iy

    def lookup(self, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest-neighbour (s, n) at subject points (arrays of any shape)."""
        flat = self.index(y, z)
        return self.s.ravel()[flat], self.n.ravel()[flat]

    def cell_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Subject (y, z) of the table cells, as broadcastable (ny, 1) and (1, nz) arrays."""
        ny, nz = self.s.shape
        y = (self.origin[0] + self.step * np.arange(ny, dtype=np.float32))[:, None]
        z = (self.origin[1] + self.step * np.arange(nz, dtype=np.float32))[None, :]
        return y.astype(np.float32), z.astype(np.float32)


def _refine(table: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation of a 2-D table onto a finer grid spanning the same corners."""
    out = table.astype(np.float32)
    for axis, n in enumerate(shape):
        pos = np.linspace(0, out.shape[axis] - 1, n, dtype=np.float32)
        lo = np.minimum(pos.astype(np.int64), out.shape[axis] - 2)
        w = (pos - lo).astype(np.float32)
        a = np.take(out, lo, axis=axis)
        b = np.take(out, lo + 1, axis=axis)
        w = w[:, None] if axis == 0 else w[None, :]
        out = a + (b - a) * w
    return out
