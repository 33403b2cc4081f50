"""modicseg: find, type and measure Modic changes on lumbar spine MRI."""

__version__ = "0.1.0"
