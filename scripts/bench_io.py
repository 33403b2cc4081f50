"""Benchmark DICOM loading against dcm2niix: wall time and peak memory per series.

    .venv/bin/python scripts/bench_io.py [--repeats 5] [--markdown]

For every volume case of ../shared/dicom-conformance and a 30-file two-series sagittal study
(2 x 15 slices of 448 x 448, written with pydicom), it times, each in a fresh process:
  * modicseg in-process: ``load_series`` / ``open_study`` after imports (what a batch pays per study),
  * modicseg CLI: ``modicseg convert`` end to end (interpreter start, imports, NIfTI writing),
  * dcm2niix: ``dcm2niix -z n`` end to end (C program, writes NIfTI).
Median of the repeats; peak RSS from getrusage of the child process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MODICSEG_SHARED", REPO.parent / "shared"))

INPROCESS = r"""
import json, resource, sys, time
from modicseg.io.dicom_series import load_series
from modicseg.io.study import StudyRequest, open_study
from pathlib import Path
path, mode = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if mode == "series":
    load_series(path)
else:
    open_study(StudyRequest(path=Path(path)))
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""




def _peak_rss(cmd: list[str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, _, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return wall, usage.ru_maxrss, out


def bench_case(name: str, path: Path, mode: str, repeats: int) -> dict:
    py = sys.executable
    inproc, cli, d2n = [], [], []
    for _ in range(repeats):
        _, _, out = _peak_rss([py, "-c", INPROCESS, str(path), mode])
        inproc.append((json.loads(out)["seconds"], json.loads(out)["maxrss_kb"]))
        with tempfile.TemporaryDirectory() as tmp:
            args = ["convert", str(path), "-o", tmp]
            if mode == "series":
                args.append("--all")
            wall, rss, _ = _peak_rss([py, "-m", "modicseg", *args])
            cli.append((wall, rss))
        if shutil.which("dcm2niix"):
            with tempfile.TemporaryDirectory() as tmp:
                wall, rss, _ = _peak_rss(["dcm2niix", "-z", "n", "-o", tmp, str(path)])
                d2n.append((wall, rss))
    med = lambda xs, i: statistics.median(x[i] for x in xs) if xs else float("nan")  # noqa: E731
    n_files = sum(1 for p in path.rglob("*") if p.is_file())
    return {"case": name, "files": n_files,
            "modicseg_load_s": med(inproc, 0), "modicseg_load_rss_mb": med(inproc, 1) / 1024,
            "modicseg_cli_s": med(cli, 0), "modicseg_cli_rss_mb": med(cli, 1) / 1024,
            "dcm2niix_s": med(d2n, 0), "dcm2niix_rss_mb": med(d2n, 1) / 1024}


def make_study(root: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from tests.dicom_factory import phantom_image, sagittal_affine

    from modicseg.io.dicom_write import SeriesSpec, StudySpec, write_mr_series

    shape = (448, 448, 15)
    affine = sagittal_affine(shape, in_plane=0.6, step=4.0)
    study = StudySpec()
    write_mr_series(phantom_image(shape, affine, "t1"), root, SeriesSpec(
        series_number=3, description="T1_TSE_SAG", repetition_time=550.0, echo_time=11.0), study)
    write_mr_series(phantom_image(shape, affine, "t2"), root, SeriesSpec(
        series_number=4, description="t2_tse_sag", repetition_time=3500.0, echo_time=95.0), study)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--make-study", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_study:
        make_study(Path(args.make_study))
        return
    rows = []
    conformance = SHARED / "dicom-conformance"
    for case in sorted(p for p in conformance.iterdir() if (p / "case.json").is_file()):
        if json.loads((case / "case.json").read_text())["expect"] != "volume":
            continue
        rows.append(bench_case(case.name, case / "dicom", "series", args.repeats))
    with tempfile.TemporaryDirectory() as tmp:
        # built in a child so that this process stays small (a forked child's peak RSS counts it)
        subprocess.run([sys.executable, __file__, "--make-study", tmp], check=True)
        rows.append(bench_case("two-series sagittal study (2x15 slices 448x448)", Path(tmp),
                               "study", args.repeats))
    header = ("| case | files | modicseg load (s) | load peak RSS (MB) | modicseg convert CLI (s) | "
              "CLI peak RSS (MB) | dcm2niix (s) | dcm2niix peak RSS (MB) | load / dcm2niix |")
    print(header)
    print("|" + "---|" * 9)
    for r in rows:
        ratio = r["modicseg_load_s"] / r["dcm2niix_s"] if r["dcm2niix_s"] == r["dcm2niix_s"] else float("nan")
        print(f"| {r['case']} | {r['files']} | {r['modicseg_load_s']:.3f} | {r['modicseg_load_rss_mb']:.0f} | "
              f"{r['modicseg_cli_s']:.2f} | {r['modicseg_cli_rss_mb']:.0f} | {r['dcm2niix_s']:.3f} | "
              f"{r['dcm2niix_rss_mb']:.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
