"""Write the JSON Schemas of report.json, change.json and case.json into docs/schemas/, generated from
the typed models in ``modicseg.report.models`` (``make schemas``); ``--check`` only compares and exits 1
when a committed schema differs from the models (tests/test_report_models.py checks the same)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modicseg.report.models import DOCUMENTS, schema_text

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "docs" / "schemas"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when a schema is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, model in DOCUMENTS.items():
        path = SCHEMA_DIR / name
        text = schema_text(model)
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if args.check and stale:
        print(f"stale: {', '.join(stale)} (run make schemas)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
