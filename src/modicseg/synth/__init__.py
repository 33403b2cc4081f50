"""Synthetic sagittal lumbar MRI with exact ground truth (issue #3).

Main entry points:

- ``generate_case(seed, case_id, options) -> SynthCase``: T1/T2 images, label/type/instance maps
  and the truth dictionary of one subject.
- ``generate_pair(seed, pair_id) -> SynthPair``: baseline and a follow-up a year later.
- ``write_case`` / ``write_pair``: DICOM study + NIfTI + truth.json.
- ``generate_training_sample(rng, spacing, shape) -> (image[2, ...], labels)``: fast, in memory.
- ``make_demo_study(out_dir, seed) -> Path``: the demo study.
"""

from modicseg.synth.case import CaseOptions, generate_case, generate_training_sample
from modicseg.synth.demo import make_demo_study
from modicseg.synth.pairs import SynthPair, generate_pair, write_pair
from modicseg.synth.scene import SynthCase
from modicseg.synth.tissues import TYPE_SIGNAL_BANDS
from modicseg.synth.write import write_case

__all__ = [
    "TYPE_SIGNAL_BANDS",
    "CaseOptions",
    "SynthCase",
    "SynthPair",
    "generate_case",
    "generate_pair",
    "generate_training_sample",
    "make_demo_study",
    "write_case",
    "write_pair",
]
