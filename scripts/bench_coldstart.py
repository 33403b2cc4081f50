"""Cold start: a fresh `modicseg analyze` of the demo study against a bare `import torch, numpy, scipy.ndimage`.

    .venv/bin/python scripts/bench_coldstart.py --rounds 7 --json coldstart.json

Each round runs, in this order, fresh interpreter processes of: the bare import (the reference),
``modicseg analyze`` of the demo study (default runtime: ONNX Runtime on the CPU when the shipped
model has a current export), the same with ``MODICSEG_RUNTIME=torch`` (the torch path), ``modicseg
--help`` and ``modicseg inspect``.  Every analyze writes into a fresh folder.  Reported: per command
the median wall time and the median peak RSS of the process, and per analyze variant the median of
the per-round ratios analyze / bare import (paired: each ratio's two runs are neighbours in time,
so a change of machine load between rounds cancels).  The 1-minute load average is printed before
and after: absolute times mean something only when it is low.  The demo study is written once into
``--work`` (``modicseg.synth.demo.make_demo_study``, seed 0, in a child process) unless it is already
there.  This process imports nothing heavy: Linux carries a parent's peak RSS into its children's
``ru_maxrss``, so the children's peaks are only right while this process stays smaller than them
(about 15 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child process; it must exit 0."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({process.returncode}): "
                         f"{process.stderr.read().decode()[-2000:] if process.stderr else ''}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-coldstart"))
    parser.add_argument("--no-torch-path", action="store_true", help="leave out the MODICSEG_RUNTIME=torch runs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    study = args.work / "demo" / "dicom"
    if not study.is_dir():
        subprocess.run([sys.executable, "-c", "import sys; from modicseg.synth.demo import make_demo_study; "
                        "make_demo_study(sys.argv[1], seed=0)", str(args.work / "demo")], check=True)
    modicseg = str(BIN / "modicseg")
    out = args.work / "out"
    commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "bare import torch, numpy, scipy.ndimage": ([sys.executable, "-c", "import torch, numpy, scipy.ndimage"], None),
        "modicseg analyze (default runtime)": ([modicseg, "analyze", str(study), "-o", str(out)], None),
    }
    if not args.no_torch_path:
        commands["modicseg analyze (MODICSEG_RUNTIME=torch)"] = ([modicseg, "analyze", str(study), "-o", str(out)],
                                                                 {"MODICSEG_RUNTIME": "torch"})
    commands["modicseg --help"] = ([modicseg, "--help"], None)
    commands["modicseg inspect"] = ([modicseg, "inspect", str(study)], None)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {k: [] for k in commands}
    rss: dict[str, list[float]] = {k: [] for k in commands}
    # one unmeasured round: page cache and .pyc files warm, as for any repeated use
    for argv, env in commands.values():
        shutil.rmtree(out, ignore_errors=True)
        timed(argv, env)
    for _ in range(args.rounds):
        for name, (argv, env) in commands.items():
            shutil.rmtree(out, ignore_errors=True)
            wall, peak = timed(argv, env)
            times[name].append(wall)
            rss[name].append(peak)
    load_after = os.getloadavg()
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    bare = times["bare import torch, numpy, scipy.ndimage"]
    result: dict[str, Any] = {
        "rounds": args.rounds, "load_average_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "cpus": os.cpu_count(), "commands": {
            name: {"median_s": round(statistics.median(v), 3), "min_s": round(min(v), 3),
                   "median_peak_rss_mb": round(statistics.median(rss[name]), 1),
                   "median_ratio_to_bare_import": round(statistics.median(a / b for a, b in zip(v, bare, strict=True)),
                                                        2)}
            for name, v in times.items()},
        "last_runtime": report.get("provenance", {}).get("segmentation", {}).get("runtime"),
    }
    print(json.dumps(result, indent=2))
    print("\n| command | median wall (s) | min (s) | median peak RSS (MB) | median paired ratio to bare import |")
    print("|---|---|---|---|---|")
    for name, row in result["commands"].items():
        print(f"| {name} | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['median_peak_rss_mb']:.0f} | "
              f"{row['median_ratio_to_bare_import']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
