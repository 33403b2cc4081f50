"""Benchmark of ``modicseg batch``: throughput, kill -9 + resume, Dask spread, transition accuracy.

    .venv/bin/python scripts/bench_batch.py --pairs 100 --work /tmp/bench-batch

1. Data: ``--pairs`` baseline/follow-up pairs (2 x pairs studies).  ``--source synth`` writes
   what ``modicseg synth --pairs`` writes (issue #3); ``--source phantom`` writes the test suite's analytic
   phantom pairs (tests/test_longitudinal_pairs.py) as DICOM studies with random lesion evolution
   (1 -> 2, regression, growth, new lesions) and a random rigid repositioning, with the truth;
   ``auto`` picks synth when it is installed.  Ground-truth label maps are analysed (--labels);
   with ``--network`` the manifest has no labels column and every study is segmented by the shipped
   model (ONNX Runtime on CPU when the model folder has a current export, else torch; one model per
   worker process, loaded by its first job).
2. Clean run: the whole batch with ``--workers`` local processes; studies per hour.
3. kill -9: a second batch into a fresh folder is SIGKILLed when half of its jobs are done, then
   re-run; checks that every result is present once and complete, that no finished job ran
   again, and that no temporary folder is left.
4. Dask: ``--dask-pairs`` pairs on a LocalCluster(n_workers=2, threads_per_worker=1); jobs per worker.
5. Transition accuracy of the clean run against the truth (per baseline lesion and new lesion; a
   row counts as right when its level, endplate and "baseline type -> follow-up type" all match;
   synth truth levels are first renamed as the analysis names those vertebrae).

Where the time goes (from the job records): per study, load / segment (network) / analysis /
writing outputs, medians; each worker's resident memory after its first and last job (flat = no
growth per job).  ``--skip-kill`` / ``--dask-pairs 0`` leave out steps 3 / 4.

    .venv/bin/python scripts/bench_batch.py --source synth --pairs 100 --network --skip-kill --dask-pairs 10

Prints a JSON result for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SLOTS = [(level, endplate) for level in ("L2", "L3", "L4", "L5", "S1") for endplate in ("superior", "inferior")
         if (level, endplate) != ("S1", "inferior")]
TYPE_TUPLES = {"1": ("1",), "2": ("2",), "3": ("3",), "1/2": ("1", "2")}


# --- phantom pairs ---------------------------------------------------------------------------

def _evolve(kind: str, rng: np.random.Generator) -> str | None:
    u = rng.random()
    if kind == "1":
        return "2" if u < 0.4 else None if u < 0.6 else "1"
    if kind == "1/2":
        return "2" if u < 0.5 else "1/2"
    return kind


def phantom_pair(index: int, seed: int, root: str) -> dict[str, Any]:
    """Write pair_XXXX/{baseline,followup}/dicom + labels.nii.gz and return the truth."""
    from tests.test_longitudinal_pairs import Motion, Plug, make_study, write_dicom_study

    from modicseg.core.convert import save_nifti

    rng = np.random.default_rng([seed, index])
    slots = [SLOTS[i] for i in rng.choice(len(SLOTS), size=int(rng.integers(1, 4)), replace=False)]
    base_plugs, follow_plugs, truth = [], [], []
    for level, endplate in slots:
        kind = str(rng.choice(["1", "2", "3", "1/2"], p=[0.55, 0.25, 0.1, 0.1]))
        depth = float(rng.uniform(5.0, 10.0))
        base_plugs.append(Plug(level, endplate, depth, TYPE_TUPLES[kind], split=0.7))
        after = _evolve(kind, rng)
        if after is not None:
            grow = float(rng.uniform(0.7, 1.5)) if kind == "1" else float(rng.uniform(0.9, 1.2))
            follow_plugs.append(Plug(level, endplate, min(depth * grow, 14.0), TYPE_TUPLES[after], split=0.7))
        truth.append({"level": level, "endplate": endplate, "baseline": kind, "followup": after or "none"})
    free = [s for s in SLOTS if s not in slots]
    if rng.random() < 0.2:
        level, endplate = free[int(rng.integers(len(free)))]
        follow_plugs.append(Plug(level, endplate, float(rng.uniform(5.0, 9.0)), ("1",)))
        truth.append({"level": level, "endplate": endplate, "baseline": "none", "followup": "1"})
    motion = Motion(float(rng.uniform(-5, 5)), tuple(float(v) for v in rng.uniform(-8, 8, 3)))
    pair = Path(root) / f"pair_{index:04d}"
    patient = f"CANARY-BENCH-{index:04d}"
    for tp, plugs, move, noise_seed in (("baseline", base_plugs, None, 2 * index),
                                        ("followup", follow_plugs, motion, 2 * index + 1)):
        study = make_study(plugs, move, seed=noise_seed)
        write_dicom_study(study, pair / tp / "dicom", patient)
        save_nifti(study.labels, str(pair / tp / "labels.nii.gz"))
    record = {"lesions": truth, "motion": {"angle_deg": motion.angle_deg, "shift_mm": list(motion.shift)}}
    (pair / "pair_truth.json").write_text(json.dumps(record, indent=1))
    return record


def make_phantom_pairs(root: Path, pairs: int, seed: int, workers: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max(1, workers)) as pool:
        list(pool.map(phantom_pair, range(pairs), [seed] * pairs, [str(root)] * pairs))


# --- synth pairs (issue #3) --------------------------------------------------------------------

def synth_available() -> bool:
    try:
        import modicseg.synth.pairs  # noqa: F401
    except ImportError:
        return False
    return True


def synth_pair(index: int, seed: int, root: str) -> None:
    """One ``modicseg synth --pairs`` pair (same seeds and names as the command)."""
    from modicseg.synth.pairs import generate_pair, write_pair

    pair_id = f"pair_{index:04d}"
    write_pair(generate_pair(seed + index, pair_id), Path(root) / pair_id, "both", (), subject_index=index)


def make_synth_pairs(root: Path, pairs: int, seed: int, workers: int) -> None:
    """Like ``modicseg synth -o ROOT --cases PAIRS --seed SEED --pairs``, on ``workers`` processes."""
    root.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max(1, workers)) as pool:
        list(pool.map(synth_pair, range(pairs), [seed] * pairs, [str(root)] * pairs))


def _level_map(truth_vertebrae: list[dict], report_vertebrae: list[dict], tolerance_mm: float = 15.0) -> dict:
    """Truth level name -> the analysis's name of the same vertebra (nearest centre)."""
    mapping = {}
    for tv in truth_vertebrae:
        if tv.get("centre_ras") is None or not report_vertebrae:
            continue
        distances = [np.linalg.norm(np.subtract(tv["centre_ras"], rv["centre_ras"])) for rv in report_vertebrae]
        best = int(np.argmin(distances))
        if distances[best] <= tolerance_mm:
            mapping[tv["level"]] = report_vertebrae[best]["level"]
    return mapping


def synth_truth(pair: Path, out: Path) -> tuple[list[dict[str, str]], int, int]:
    """Truth transitions of a synth pair, levels renamed as the analysis names them (transitional
    anatomy, e.g. four lumbar vertebrae, makes names counted from S1 differ), and how many levels
    were renamed / mapped."""
    data = json.loads((pair / "pair_truth.json").read_text())
    truth_vertebrae = json.loads((pair / "baseline" / "truth.json").read_text())["vertebrae"]
    report = json.loads((out / "studies" / pair.name / "baseline" / "report.json").read_text())
    mapping = _level_map(truth_vertebrae, report["vertebrae"])
    records = [{"level": mapping.get(link["level"], f"?{link['level']}"), "endplate": link["endplate"],
                "baseline": link.get("baseline_type") or "none", "followup": link.get("followup_type") or "none"}
               for link in data["links"]]
    return records, sum(k != v for k, v in mapping.items()), len(mapping)


# --- manifest, runs, checks ------------------------------------------------------------------

def _labels(folder: Path) -> Path | None:
    for candidate in [folder / "labels.nii.gz", *sorted((folder / "nifti").glob("*labels*.nii.gz"))]:
        if candidate.is_file():
            return candidate
    return None


def build_manifest(data: Path, out: Path, pairs: int | None = None, network: bool = False) -> Path:
    """The batch manifest; ``network``: no labels column, the shipped model segments every study."""
    from modicseg.batch.manifest import StudyEntry, write_manifest

    entries = []
    for pair in sorted(data.glob("pair_*"))[:pairs]:
        for tp in ("baseline", "followup"):
            folder = pair / tp
            study = folder / "dicom" if (folder / "dicom").is_dir() else folder
            entries.append(StudyEntry(pair.name, tp, study, None if network else _labels(folder)))
    write_manifest(entries, out)
    return out


def run_child(argv: list[str]) -> None:
    """The batch process (internal): MANIFEST OUTDIR WORKERS."""
    from modicseg.batch.jobs import JobOptions
    from modicseg.batch.manifest import read_manifest
    from modicseg.batch.runner import run_batch

    options = JobOptions(confidence=os.environ.get("BENCH_BATCH_CONFIDENCE", "1") == "1")
    run_batch(read_manifest(argv[0]), argv[1], options, workers=int(argv[2]), progress=False)


def _child(manifest: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "_run", str(manifest), str(out), str(workers)]


def check_results(out: Path, n_studies: int, n_compares: int) -> dict[str, Any]:
    """Every result present once, parseable, agreeing with its state record; nothing temporary left."""
    import nibabel as nib

    from modicseg.batch.store import TMP_PREFIX, TRASH_PREFIX

    problems = []
    studies = sorted(p.parent for p in (out / "studies").rglob("job.json"))
    compares = sorted(p.parent for p in (out / "compare").rglob("job.json"))
    for folder in studies + compares:
        job = json.loads((folder / "job.json").read_text())
        state = json.loads((out / "state" / (job["job_id"].replace("/", "__") + ".json")).read_text())
        if state.get("status") != "done" or state.get("fingerprint") != job["fingerprint"]:
            problems.append(f"{folder}: state record disagrees")
        for name in ("report.json", "change.json"):
            if (folder / name).is_file():
                json.loads((folder / name).read_text())
        if (folder / "labels.nii.gz").is_file():
            np.asarray(nib.load(folder / "labels.nii.gz").dataobj)
        if not (folder / "report.json").is_file() and not (folder / "change.json").is_file():
            problems.append(f"{folder}: no report.json / change.json")
    leftovers = [str(p) for p in out.rglob("*") if p.name.startswith((TMP_PREFIX, TRASH_PREFIX))]
    canary = [str(p) for p in out.rglob("*") if p.is_file() and b"CANARY" in p.read_bytes()]
    return {"studies": len(studies), "studies_expected": n_studies, "comparisons": len(compares),
            "comparisons_expected": n_compares, "leftover_temporary": leftovers, "problems": problems,
            "canary_files": canary,
            "ok": not problems and not leftovers and not canary and len(studies) == n_studies
            and len(compares) == n_compares}


def transition_accuracy(data: Path, out: Path, source: str) -> dict[str, Any]:
    right = total = renamed_pairs = 0
    wrong: list[str] = []
    by_truth: dict[str, list[int]] = {}
    for pair in sorted(data.glob("pair_*")):
        change_file = out / "compare" / pair.name / "baseline_to_followup" / "change.json"
        if not change_file.is_file():
            continue
        if source == "phantom":
            truth = json.loads((pair / "pair_truth.json").read_text())["lesions"]
        else:
            truth, renamed, _ = synth_truth(pair, out)
            renamed_pairs += renamed > 0
        rows = json.loads(change_file.read_text())["lesions"]
        predicted = {(r["level"], r["endplate"]): f"{r['baseline_type']} -> {r['followup_type']}" for r in rows}
        expected = {(t["level"], t["endplate"]): f"{t['baseline']} -> {t['followup']}" for t in truth}
        for key in expected.keys() | predicted.keys():
            ok = predicted.get(key) == expected.get(key)
            total += 1
            right += ok
            by_truth.setdefault(expected.get(key, "(none in truth)"), [0, 0])[0 if ok else 1] += 1
            if not ok:
                wrong.append(f"{pair.name} {key[0]} {key[1]}: truth {expected.get(key)}, got {predicted.get(key)}")
    return {"lesions": total, "right": right, "accuracy": right / total if total else None,
            "pairs_with_levels_named_unlike_truth": renamed_pairs,
            "by_truth": {k: {"right": v[0], "wrong": v[1]} for k, v in sorted(by_truth.items())},
            "errors": wrong[:20]}


def clean_run(manifest: Path, out: Path, workers: int) -> dict[str, Any]:
    started = time.time()
    load = os.getloadavg()
    subprocess.run(_child(manifest, out, workers), check=True)
    summary = json.loads((out / "summary.json").read_text())
    summary["wall_s"] = time.time() - started
    summary["load_average_before_after"] = [round(load[0], 2), round(os.getloadavg()[0], 2)]
    summary["time_and_memory"] = time_and_memory(out)
    return summary


def time_and_memory(out: Path) -> dict[str, Any]:
    """Where a study's time goes (medians over the job records) and each worker's memory per job."""
    rows = []
    for path in sorted((out / "studies").rglob("job.json")):
        job = json.loads(path.read_text())
        info = job.get("info", {})
        timings = info.get("timings_s") or {}
        rows.append({"worker": job.get("worker"), "elapsed_s": job.get("elapsed_s"), "finished": path.stat().st_mtime,
                     "load_s": timings.get("load_s"), "segment_s": timings.get("segment_s"),
                     "network_s": info.get("network_s"), "analysis_s": timings.get("total_s"),
                     "rss_mb": info.get("worker_rss_mb"), "peak_mb": info.get("worker_peak_rss_mb"),
                     "runtime": info.get("runtime"), "segmentation": info.get("segmentation")})
    if not rows:
        return {}

    def median(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return round(float(np.median(values)), 3) if values else None

    for r in rows:
        if r["elapsed_s"] is not None and r["analysis_s"] is not None:
            r["write_s"] = r["elapsed_s"] - r["analysis_s"]
    workers: dict[str, Any] = {}
    for r in sorted(rows, key=lambda r: r["finished"]):
        w = workers.setdefault(r["worker"], {"jobs": 0, "rss_mb": []})
        w["jobs"] += 1
        w["rss_mb"].append(r["rss_mb"])
    memory = {}
    for name, w in workers.items():
        rss = [v for v in w["rss_mb"] if v is not None]
        if rss:
            tail = rss[len(rss) // 2:]
            slope = round(float(np.polyfit(range(len(tail)), tail, 1)[0]), 3) if len(tail) >= 3 else None
            memory[name] = {"jobs": w["jobs"], "rss_after_first_job_mb": rss[0],
                            "rss_after_job_10_mb": rss[min(9, len(rss) - 1)], "rss_after_last_job_mb": rss[-1],
                            "rss_max_mb": max(rss), "second_half_slope_mb_per_job": slope}
    return {"studies": len(rows), "runtime": sorted({str(r["runtime"]) for r in rows}),
            "segmentation": sorted({str(r["segmentation"]) for r in rows}),
            "median_s": {k: median(k) for k in ("elapsed_s", "load_s", "segment_s", "network_s", "analysis_s",
                                                 "write_s")},
            "peak_rss_mb_max": max((r["peak_mb"] for r in rows if r["peak_mb"] is not None), default=None),
            "workers": memory}


def kill_run(manifest: Path, out: Path, workers: int, total_jobs: int, n_studies: int, n_compares: int,
             fraction: float = 0.5) -> dict[str, Any]:
    from modicseg.batch.store import ResultStore

    process = subprocess.Popen(_child(manifest, out, workers), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None and len(ResultStore(out).done_job_ids()) < fraction * total_jobs:
        time.sleep(0.2)
    if process.poll() is not None:
        raise SystemExit("the batch finished before it could be killed")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(1.0)
    done_at_kill = ResultStore(out).done_job_ids()
    from modicseg.batch.store import TMP_PREFIX

    partial = [str(p.relative_to(out)) for p in out.rglob("*") if p.name.startswith(TMP_PREFIX)]
    started = time.time()
    subprocess.run(_child(manifest, out, workers), check=True)
    summary = json.loads((out / "summary.json").read_text())
    skipped = summary["studies"].get("skipped", 0) + summary["comparisons"].get("skipped", 0)
    return {"done_at_kill": len(done_at_kill), "temporary_folders_at_kill": len(partial),
            "resume_wall_s": time.time() - started, "resume_skipped": skipped,
            "resume_run": summary["studies"].get("done", 0) + summary["comparisons"].get("done", 0),
            "no_finished_job_rerun": skipped >= len(done_at_kill),
            "check": check_results(out, n_studies, n_compares)}


def dask_run(manifest: Path, out: Path) -> dict[str, Any]:
    from distributed import LocalCluster

    from modicseg.batch.manifest import read_manifest
    from modicseg.batch.runner import run_batch

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster:
        started = time.time()
        summary = run_batch(read_manifest(manifest), out, scheduler=cluster.scheduler_address, progress=False)
        wall = time.time() - started
    d = summary.to_dict()
    return {"wall_s": wall, "studies": d["studies"], "comparisons": d["comparisons"], "workers": d["workers"],
            "studies_per_hour": d["studies_per_hour"], "time_and_memory": time_and_memory(out)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        run_child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--dask-pairs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--source", choices=["auto", "synth", "phantom"], default="auto")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-batch"))
    parser.add_argument("--keep-data", action="store_true", help="reuse WORK/data when it exists")
    parser.add_argument("--network", action="store_true",
                        help="segment with the shipped model instead of analysing the truth label maps")
    parser.add_argument("--skip-kill", action="store_true", help="leave out the kill -9 + resume step")
    parser.add_argument("--no-confidence", action="store_true",
                        help="batch --no-confidence: one network pass per study (the batch processes only)")
    parser.add_argument("--data-only", action="store_true", help="write WORK/data and stop (then --keep-data)")
    args = parser.parse_args()
    os.environ["BENCH_BATCH_CONFIDENCE"] = "0" if args.no_confidence else "1"
    source = args.source if args.source != "auto" else ("synth" if synth_available() else "phantom")
    data = args.work / "data"
    result: dict[str, Any] = {"source": source, "pairs": args.pairs, "workers": args.workers,
                              "cpus": os.cpu_count(), "network": args.network,
                              "confidence": not args.no_confidence}
    if not (args.keep_data and data.is_dir()):
        shutil.rmtree(args.work, ignore_errors=True)
        started = time.time()
        if source == "synth":
            make_synth_pairs(data, args.pairs, args.seed, args.workers)
        else:
            make_phantom_pairs(data, args.pairs, args.seed, args.workers)
        result["data_s"] = time.time() - started
    if args.data_only:
        print(json.dumps(result, indent=2, default=str))
        return
    for name in ("clean", "killed", "dask"):
        shutil.rmtree(args.work / name, ignore_errors=True)
    manifest = build_manifest(data, args.work / "manifest.csv", args.pairs, args.network)
    n_studies, n_compares = 2 * args.pairs, args.pairs
    result["clean"] = clean_run(manifest, args.work / "clean", args.workers)
    result["clean_check"] = check_results(args.work / "clean", n_studies, n_compares)
    result["transitions"] = transition_accuracy(data, args.work / "clean", source)
    if not args.skip_kill:
        result["kill9"] = kill_run(manifest, args.work / "killed", args.workers, n_studies + n_compares, n_studies,
                                   n_compares)
    if args.dask_pairs > 0:
        small = build_manifest(data, args.work / "manifest_dask.csv", args.dask_pairs, args.network)
        result["dask"] = dask_run(small, args.work / "dask")
    (args.work / "bench_result.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
