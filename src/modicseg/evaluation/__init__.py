"""Evaluation on data the training generator did not produce.

- :mod:`modicseg.evaluation.independent_painter`: Modic-like lesions painted into the real marrow of
  real volumes, written independently of the synthetic generator (own shape, border and signal
  models), with an exact truth mask.
- :mod:`modicseg.evaluation.generalisation`: the held-out real-subject benchmark behind
  ``scripts/bench_generalisation.py`` (subject split from ``configs/splits.yaml``).
"""
