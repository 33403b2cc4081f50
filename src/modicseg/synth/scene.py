"""What a generated case is made of: the ``Scene`` (spine, lesions, pose, appearance) and the
``SynthCase`` (images, maps, truth).  Data only, so that ``case`` (which makes them) and ``truth``
(which describes them) both import it and not each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from modicseg.core.image import LabelImage, ScalarImage
from modicseg.synth.anatomy import Spine
from modicseg.synth.grid import Grid
from modicseg.synth.lesions import Lesion
from modicseg.synth.randomize import Acquisition, Appearance


@dataclass
class Scene:
    """Everything that determines the images apart from the grid."""

    spine: Spine
    lesions: list[Lesion]
    subject_to_scanner: np.ndarray
    appearance: Appearance
    subject_angles_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)



@dataclass
class SynthCase:
    """One generated case (images on their grids, maps on the T2 grid, truth dictionary)."""

    case_id: str
    seed: int | None
    scene: Scene
    acquisition: Acquisition
    grids: dict[str, Grid]
    t1: ScalarImage
    t2: ScalarImage
    labels: LabelImage
    types: LabelImage
    instances: LabelImage
    extra_maps: dict[str, LabelImage] = field(default_factory=dict)  # maps on the T1 grid if it differs
    rescale: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    truth: dict = field(default_factory=dict)
