"""Evaluation of the model with the analysis, and on data the training generator did not produce.

The stage above both ``model`` and ``analysis`` (docs/architecture.md): code that needs both lives here.

- :mod:`modicseg.evaluation.segmentation`: ``evaluate_cases``, Dice per class (``model.validation``) plus
  the analysis's level names and vertebral heights on the prediction.

- :mod:`modicseg.evaluation.independent_painter`: Modic-like lesions painted into the real marrow of
  real volumes, written independently of the synthetic generator (own shape, border and signal
  models), with an exact truth mask.
- :mod:`modicseg.evaluation.generalisation`: the held-out real-subject benchmark behind
  ``scripts/bench_generalisation.py`` (subject split from ``configs/splits.yaml``).
"""
