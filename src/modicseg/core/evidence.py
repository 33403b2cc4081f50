"""What the network says beyond its labels: per-voxel probabilities and uncertainty on the reference grid.

The model stage makes it (``modicseg.model.segmentation``, two passes: the input as given and mirrored
left-right); the analysis stage reads it to give each lesion a confidence
(``modicseg.analysis.confidence``). Both only know this plain container.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modicseg.core.image import ScalarImage


@dataclass
class NetworkEvidence:
    """Maps on the reference grid (the labels' grid), float32.

    ``lesion_probability``: the lesion class's probability, mean of the passes.
    ``lesion_disagreement``: |difference| of the lesion probability between the two passes (0..1).
    ``uncertainty``: normalised entropy of the mean class probabilities (0 = sure, 1 = all classes equal).
    ``passes``: how many network passes were averaged (1: no test-time augmentation, disagreement 0).
    """

    lesion_probability: ScalarImage
    lesion_disagreement: ScalarImage
    uncertainty: ScalarImage
    passes: int = 2

    def values_at(self, ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lesion probability, disagreement, uncertainty) at voxel indices ``ijk`` (N, 3)."""
        index = tuple(np.asarray(ijk).T)
        return (np.asarray(self.lesion_probability.array)[index], np.asarray(self.lesion_disagreement.array)[index],
                np.asarray(self.uncertainty.array)[index])
