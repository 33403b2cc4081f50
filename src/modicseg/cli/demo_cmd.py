"""``modicseg demo -o DIR``: write the built-in synthetic demo study and run the pipeline on it."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

from modicseg.cli import convert_cmd, inspect_cmd


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the pipeline on a built-in synthetic study",
                                   description=__doc__)
    parser.add_argument("-o", "--output", type=Path, default=Path("demo-output"), metavar="DIR")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modicseg.synth.demo import make_demo_study

    out: Path = args.output
    study = make_demo_study(out / "study", seed=args.seed)
    print(f"demo study written to {study}")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        inspect_cmd.run(argparse.Namespace(study=study, t1=None, t2=None, t1_series=None, t2_series=None,
                                           resample_irregular=False, json=False))
    (out / "inspect.txt").write_text(buffer.getvalue())
    print(buffer.getvalue())
    convert_args = argparse.Namespace(study=study, t1=None, t2=None, t1_series=None, t2_series=None,
                                      resample_irregular=False, output=out / "nifti", all=False,
                                      t1_on_t2_grid=True)
    convert_cmd.run(convert_args)
    print(f"\ndone: see {out}/")
    return 0
