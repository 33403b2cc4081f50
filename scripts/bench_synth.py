"""Speed of the synthetic generator (issue #3) on one core.

Measures the in-memory training path (``generate_training_sample``: two channels + labels), a
realistic case (``generate_case``), writing it (DICOM + NIfTI + truth) and the demo study.  Wall
time and CPU time of this process are both reported: on a shared machine the CPU time is the
better measure of the work done; the wall time is what a training loop on an idle core would see.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_synth.py --samples 20 --cases 3
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def _timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _row(name: str, walls: list[float], cpus: list[float]) -> dict:
    return {"what": name, "n": len(walls), "wall_median_s": statistics.median(walls),
            "wall_min_s": min(walls), "cpu_median_s": statistics.median(cpus), "cpu_min_s": min(cpus)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20, help="training samples to time")
    parser.add_argument("--cases", type=int, default=3, help="realistic cases to time")
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 4.0))
    parser.add_argument("--shape", type=int, nargs=3, default=(208, 240, 15))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    from modicseg.synth.case import generate_case, generate_training_sample
    from modicseg.synth.demo import make_demo_study
    from modicseg.synth.write import write_case

    load = os.getloadavg()[0]
    rows = []
    rng = np.random.default_rng(0)
    generate_training_sample(rng, tuple(args.spacing), tuple(args.shape))  # warm-up (imports, noise pool)
    walls, cpus = [], []
    for _ in range(args.samples):
        _, wall, cpu = _timed(generate_training_sample, rng, tuple(args.spacing), tuple(args.shape))
        walls.append(wall)
        cpus.append(cpu)
    rows.append(_row(f"training sample {tuple(args.shape)} @ {tuple(args.spacing)} mm, x3 along k", walls, cpus))

    walls, cpus, wwalls, wcpus, shapes = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.cases):
            case, wall, cpu = _timed(generate_case, 100 + n, f"case_{n:04d}")
            walls.append(wall)
            cpus.append(cpu)
            shapes.append(case.t2.shape)
            _, wall, cpu = _timed(write_case, case, Path(tmp) / case.case_id)
            wwalls.append(wall)
            wcpus.append(cpu)
        rows.append(_row(f"realistic case (T2 grids {shapes})", walls, cpus))
        rows.append(_row("write case (DICOM T1+T2, NIfTI, truth.json)", wwalls, wcpus))
        _, wall, cpu = _timed(make_demo_study, Path(tmp) / "demo")
        rows.append(_row("make_demo_study (4 series + NIfTI + truth)", [wall], [cpu]))

    print(f"load average at start: {load:.2f}; cores: {os.cpu_count()}")
    print("| what | n | wall median (s) | wall min (s) | CPU median (s) | CPU min (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['n']} | {r['wall_median_s']:.3f} | {r['wall_min_s']:.3f} | "
              f"{r['cpu_median_s']:.3f} | {r['cpu_min_s']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"load_average": load, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
