"""The files of a comparison: change.json, change.csv and the QC figure.

Apart from ``change`` (the result) and ``qc`` (the figure), so that the figure knows the result and
the result knows neither.
"""

from __future__ import annotations

import json
from pathlib import Path

from modicseg.longitudinal.change import CHANGE_CSV, CHANGE_JSON, QC_PNG, ChangeReport
from modicseg.longitudinal.classify import COLUMNS
from modicseg.report.writers import write_csv


def write_change(change: ChangeReport, folder: str | Path, figure: bool = True) -> list[Path]:
    """Write change.json, change.csv and (optionally) qc.png into an existing folder."""
    folder = Path(folder)
    from modicseg.report.schema import validate_change, validating

    written = [folder / CHANGE_JSON, folder / CHANGE_CSV]
    data = change.to_dict()
    if validating():
        validate_change(data)
    written[0].write_text(json.dumps(data, indent=2) + "\n")
    write_csv(written[1], COLUMNS, change.rows)
    if figure:
        from modicseg.longitudinal.qc import qc_figure

        qc_figure(change, folder / QC_PNG)
        written.append(folder / QC_PNG)
    return written
