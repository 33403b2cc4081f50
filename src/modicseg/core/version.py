"""The package version (``modicseg.__version__``), importable by every stage without importing the
top-level package's lazy API."""

__version__ = "0.1.0"
