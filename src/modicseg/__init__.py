"""modicseg: find, type and measure Modic changes on lumbar spine MRI."""

from modicseg.core.version import __version__ as __version__


def __getattr__(name: str):
    """Lazy top-level API: ``modicseg.analyze(study) -> Report``, ``modicseg.write_report(report, folder)``."""
    if name == "analyze":
        from modicseg.pipeline import analyze

        return analyze
    if name == "Report":
        from modicseg.analysis.result import Report

        return Report
    if name == "write_report":
        from modicseg.report.writers import write_report

        return write_report
    raise AttributeError(f"module 'modicseg' has no attribute {name!r}")
