"""modicseg: find, type and measure Modic changes on lumbar spine MRI."""

__version__ = "0.1.0"


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    """Lazy top-level API: ``modicseg.analyze(study) -> Report``."""
    if name in ("analyze", "Report"):
        from modicseg import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'modicseg' has no attribute {name!r}")
