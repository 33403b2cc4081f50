"""``modicseg demo -o DIR``: write the built-in synthetic demo study and run the pipeline on it.

Steps: write a DICOM study (sagittal T1/T2, localizer, axial series; canary patient identifiers),
``inspect`` it, ``convert`` the chosen T1/T2 to NIfTI, then ``analyze`` it twice: with the shipped
network (the real job) and with the generator's exact label map (post-processing alone), and
print both beside the generator's truth.  When the network step cannot run (no model found), the
demo says so and exits with status 2: it never reports success without the network.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

from modicseg.cli import analyze_cmd, convert_cmd, inspect_cmd
from modicseg.io.errors import ModicsegError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the pipeline on a built-in synthetic study",
                                   description=__doc__)
    parser.add_argument("-o", "--output", type=Path, default=Path("demo-output"), metavar="DIR")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def _clear_previous_demo_study(folder: Path) -> None:
    """Remove the study of an earlier demo run in ``folder`` (fresh UIDs each run: kept, the two
    studies would sit side by side in one DICOM folder); refuse a folder that is not a demo study."""
    if not folder.exists():
        return
    if not (folder / "truth.json").is_file() or not (folder / "dicom").is_dir():
        from modicseg.io.errors import InputError

        raise InputError(f"{folder}: exists and is not a demo study written by modicseg demo; choose another -o")
    import shutil

    shutil.rmtree(folder)


def _truth_lines(truth: dict) -> list[str]:
    lines = []
    for lesion in truth.get("lesions", []):
        lines.append(f"  truth: {lesion['level']} {lesion['endplate']:<8} type {lesion['type']:<5} "
                     f"{lesion['volume_mm3']:8.0f} mm³  height {100 * lesion['height_fraction']:4.0f} %")
    return lines


def run(args: argparse.Namespace) -> int:
    from modicseg.io.study import StudyRequest
    from modicseg.pipeline import analyze
    from modicseg.report.writers import write_report
    from modicseg.synth.demo import make_demo_study

    out: Path = args.output
    _clear_previous_demo_study(out / "study")
    study = make_demo_study(out / "study", seed=args.seed)
    print(f"demo study written to {study}\n")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        inspect_cmd.run(argparse.Namespace(study=study, t1=None, t2=None, stir=None, t1_series=None, t2_series=None,
                                           resample_irregular=False, json=False))
    (out / "inspect.txt").write_text(buffer.getvalue())
    print(buffer.getvalue())
    convert_cmd.run(argparse.Namespace(study=study, t1=None, t2=None, stir=None, t1_series=None, t2_series=None,
                                       resample_irregular=False, output=out / "nifti", all=False,
                                       t1_on_t2_grid=True))
    truth = json.loads((study.parent / "truth.json").read_text())
    exact_labels = study.parent / "nifti" / "labels.nii.gz"
    runs = [("network (shipped model)", out / "analysis", None),
            ("exact label map from the generator (post-processing alone)", out / "analysis_exact_labels",
             exact_labels)]
    failed = []
    for title, folder, labels in runs:
        print(f"\n== analyze with the {title} -> {folder}")
        try:
            report = analyze(StudyRequest(path=study), labels=labels)
        except ModicsegError as exc:
            print(f"FAILED: {exc}")
            failed.append((title, str(exc)))
            continue
        write_report(report, folder)
        print(analyze_cmd.summary(report))
    print("\n== generator truth (truth.json)")
    print("\n".join(_truth_lines(truth)))
    if failed:
        for title, message in failed:
            print(f"error: the analysis with the {title} did not run: {message}", file=sys.stderr)
        print(f"\nincomplete: see {out}/; the demo needs the shipped model (pass it with MODICSEG_MODEL=DIR)",
              file=sys.stderr)
        return 2
    print(f"\ndone: see {out}/ (analysis/qc.png shows the network's result)")
    return 0
