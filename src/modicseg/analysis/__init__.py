"""From label maps and T1/T2 signal to a radiological report of Modic changes.

One module per job: ``vertebrae`` (instances, axes, heights), ``levels`` (T12..S1 naming),
``lesions`` (components assigned to a vertebra and an endplate), ``modic_typing`` (per-voxel
type from T1/T2 ratios to normal marrow), ``measures`` (extent, fractions, Udby grade),
``eligibility`` (trial rules), ``config`` (thresholds), ``result`` (``Report``) and ``pipeline``
(``analyze_images``: a label map in, a ``Report`` out).  Running the network on a study and then
this stage is ``modicseg.pipeline.analyze`` (``modicseg.analyze``): the analysis stage never
imports the model stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modicseg.analysis.config import AnalysisConfig
    from modicseg.analysis.result import Report

__all__ = ["AnalysisConfig", "Report", "analyze_images", "load_config"]


def __getattr__(name: str) -> Any:
    if name == "analyze_images":
        from modicseg.analysis import pipeline

        return getattr(pipeline, name)
    if name in ("AnalysisConfig", "load_config"):
        from modicseg.analysis import config

        return getattr(config, name)
    if name == "Report":
        from modicseg.analysis.result import Report

        return Report
    raise AttributeError(f"module 'modicseg.analysis' has no attribute {name!r}")
