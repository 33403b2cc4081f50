"""The one image model of modicseg: a 3-D array, its voxel-to-world affine, and provenance.

World coordinates are **RAS+ millimetres**, nibabel's convention: +x points to the patient's
right, +y anterior, +z superior.  DICOM and ITK use LPS+ (+x left, +y posterior, +z superior):
an LPS position (x, y, z) is the RAS position (-x, -y, z).

Array axes are (i, j, k): ``affine @ [i, j, k, 1]`` is the RAS position of the centre of voxel
``array[i, j, k]``.  LPS appears only at the DICOM and SimpleITK edges (``modicseg.core.convert``,
``modicseg.io``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

ImageT = TypeVar("ImageT", bound="Image")


@dataclass(frozen=True)
class Provenance:
    """Where an image came from. Never holds patient identifiers (name, ID, birth date)."""

    series_instance_uid: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    frame_of_reference_uid: str | None = None
    plane: str | None = None
    weighting: str | None = None
    weighting_reason: str | None = None
    source_format: str | None = None  # "dicom", "nifti", "synthetic", "derived"
    acquisition: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Provenance:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return dataclasses.asdict(self)


@dataclass
class Image:
    """A 3-D image: ``array`` indexed (i, j, k), ``affine`` voxel -> RAS+ mm, and provenance."""

    array: np.ndarray
    affine: np.ndarray
    provenance: Provenance = field(default_factory=Provenance)

    is_label: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.array.ndim != 3:
            raise ValueError(f"an Image is 3-D; got an array of shape {self.array.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4; got {self.affine.shape}")
        if not np.allclose(self.affine[3], [0, 0, 0, 1]):
            raise ValueError("affine's last row must be [0, 0, 0, 1]")
        if abs(np.linalg.det(self.affine[:3, :3])) < 1e-12:
            raise ValueError("affine is singular")

    # --- geometry -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along i, j, k (norms of the affine's columns)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """Unit direction (RAS) of each array axis, as columns."""
        return self.affine[:3, :3] / self.spacing

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """nibabel-style orientation codes, e.g. ('P', 'I', 'R')."""
        import nibabel as nib

        return tuple(nib.aff2axcodes(self.affine))

    def world_coordinates(self, ijk: np.ndarray) -> np.ndarray:
        """RAS mm of voxel indices given as an (N, 3) array."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def voxel_coordinates(self, xyz: np.ndarray) -> np.ndarray:
        """Continuous voxel indices of RAS mm points given as an (N, 3) array."""
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, dtype=np.float64)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def same_grid(self, other: Image, atol_mm: float = 1e-3) -> bool:
        """True when both images have the same shape and (within atol) the same affine."""
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol_mm)

    # --- construction -----------------------------------------------------------------------
    def with_array(self: ImageT, array: np.ndarray) -> ImageT:
        """Same geometry and provenance, new voxel values."""
        return type(self)(array=array, affine=self.affine.copy(), provenance=self.provenance)

    def as_label(self) -> LabelImage:
        """The same voxels as a label image (integer values)."""
        return LabelImage(self.array, self.affine.copy(), self.provenance)


@dataclass
class ScalarImage(Image):
    """An intensity image (MRI). Resampled with linear interpolation."""

    is_label: ClassVar[bool] = False


@dataclass
class LabelImage(Image):
    """A label map (integers). Always resampled nearest-neighbour."""

    is_label: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not np.issubdtype(self.array.dtype, np.integer):
            rounded = np.rint(self.array)
            if not np.array_equal(rounded, self.array):
                raise ValueError("a LabelImage needs integer values")
            self.array = rounded.astype(np.int16)
