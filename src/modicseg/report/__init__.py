"""Report outputs: report.json (schema), CSV tables, NIfTI maps, DICOM SEG and the QC figure."""

from modicseg.report.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION"]
