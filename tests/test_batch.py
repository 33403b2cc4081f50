"""Batch runner: manifest, resume, failures, kill -9 safety, Dask spread (stand-in jobs: fast)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from modicseg.batch.fingerprint import inputs_fingerprint
from modicseg.batch.manifest import StudyEntry, read_manifest, timepoint_key, write_manifest
from modicseg.batch.runner import run_batch
from modicseg.batch.store import JOB_FILE, TMP_PREFIX, TRASH_PREFIX, ResultStore
from modicseg.io.errors import InputError
from modicseg.longitudinal.classify import change_row, summarise
from modicseg.longitudinal.matching import LesionPair
from modicseg.report.models import CHANGE_SCHEMA_VERSION, SCHEMA_VERSION, ChangeDocument, ReportDocument

REPO = Path(__file__).resolve().parents[1]
SLEEP_ENV = "MODICSEG_TEST_JOB_SLEEP"
PAYLOAD = 256 * 1024


# --- stand-in jobs (module level: picklable, importable by worker processes) -----------------------

def _payload(seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return block * (PAYLOAD // len(block))


def fake_study(job: Any, out: Path) -> dict[str, Any]:
    """Reads STUDY/lesions.json; fails on STUDY/broken; writes report.json and a 256 KB payload."""
    time.sleep(float(os.environ.get(SLEEP_ENV, "0")))
    study = job.entry.path
    if (study / "broken").exists():
        raise InputError(f"{study}: cannot read this study (stand-in)")
    lesions = json.loads((study / "lesions.json").read_text())
    (out / "payload.bin").write_bytes(_payload(job.job_id))
    (out / "report.json").write_text(stand_in_report(lesions).to_json())
    return {"lesions": len(lesions)}


def stand_in_report(lesions: list[dict[str, Any]]) -> ReportDocument:
    """A complete report.json around the stand-in's lesions (typed: what the cohort tables read)."""
    eligible = bool(lesions)
    return ReportDocument.from_dict({
        "schema_version": SCHEMA_VERSION,
        "provenance": {"tool": "modicseg", "version": "stand-in",
                       "segmentation": {"source": "labels given", "checkpoint_sha256": None},
                       "grid": {"shape": [1, 1, 1], "voxel_size_mm": [1.0, 1.0, 1.0], "orientation": "RAS",
                                "affine_ras": None}},
        "typing": {"possible": True, "reason": None}, "vertebrae": [], "lesions": lesions,
        "eligibility": {"eligible": eligible, "reasons": ["stand-in"],
                        "qualifying_lesions": [les["id"] for les in lesions] if eligible else [], "criteria": {}},
        "outputs": {"labels_seg": {"written": False, "reason": "stand-in"}}, "config": {}, "warnings": []})


def fake_compare(job: Any, out: Path) -> dict[str, Any]:
    """Pairs lesions by level and endplate and writes a change.json like the real one."""
    time.sleep(float(os.environ.get(SLEEP_ENV, "0")))
    b = ReportDocument.load(job.baseline_output / "report.json").lesions
    f = ReportDocument.load(job.followup_output / "report.json").lesions
    key = lambda les: (les.level, les.endplate)  # noqa: E731
    fu = {key(les): les for les in f}
    rows = [change_row(LesionPair(les.id, fu[key(les)].id if key(les) in fu else None, "vertebra+endplate"),
                       les, fu.get(key(les)), les.level) for les in b]
    base_keys = {key(les) for les in b}
    rows += [change_row(LesionPair(None, les.id, ""), None, les, les.level) for les in f
             if key(les) not in base_keys]
    change = {"schema_version": CHANGE_SCHEMA_VERSION, "tool": {"name": "modicseg", "version": "stand-in"},
              "subject": job.subject, "identity": {"same_patient": None},
              **{side: {"analysis": "reused", "lesions": len(les), "vertebrae": 0, "levels": [], "eligible": None}
                 for side, les in (("baseline", b), ("followup", f))},
              "registration": {"method": "-", "affine_ras": [[float(i == j) for j in range(4)] for i in range(4)],
                               "rotation_deg": 0.0, "translation_mm": 0.0},
              "summary": summarise(rows, b, f), "lesions": rows, "definitions": {}, "warnings": []}
    (out / "change.json").write_text(ChangeDocument.from_dict(change).to_json())
    return {"rows": len(rows)}


def lesion(ident: int, level: str, endplate: str, kind: str, volume: float) -> dict[str, Any]:
    fractions = {"1": 0.0, "2": 0.0, "3": 0.0}
    for part in kind.split("/"):
        fractions[part] = 1.0 / len(kind.split("/"))
    return {"id": ident, "level": level, "endplate": endplate, "type": kind, "primary_type": kind.split("/")[0],
            "secondary_type": kind.split("/")[1] if "/" in kind else None, "type_fractions": fractions,
            "unclassified_fraction": 0.0, "volume_mm3": volume, "fraction_of_vertebral_volume": volume / 30000,
            "craniocaudal_extent_mm": 5.0, "height_fraction": volume / 10000, "ap_depth_mm": 10.0,
            "ap_depth_fraction": 0.3, "extent_grade": "A", "centre_ras": [0.0, 0.0, 0.0], "voxels": int(volume),
            "vertebra": 1}


def make_cohort(root: Path, n: int, extra: bool = True) -> Path:
    """n complete subjects (even: type 1 -> 2, odd: type 1 stays and grows); with ``extra`` also a
    subject without follow-up and one whose baseline cannot be read.  Returns the manifest CSV."""
    entries = []
    for i in range(n):
        subject = f"S{i:03d}"
        follow_type, follow_volume = ("2", 800.0) if i % 2 == 0 else ("1", 1500.0)
        timepoints = {"baseline": [lesion(1, "L4", "inferior", "1", 1000.0 + i)],
                      "m12": [lesion(1, "L4", "inferior", follow_type, follow_volume)]}
        for tp, lesions in timepoints.items():
            folder = root / "data" / subject / tp
            folder.mkdir(parents=True)
            (folder / "lesions.json").write_text(json.dumps(lesions))
            entries.append(StudyEntry(subject, tp, folder))
    if extra:
        lonely = root / "data" / "LONE" / "baseline"
        lonely.mkdir(parents=True)
        (lonely / "lesions.json").write_text("[]")
        entries.append(StudyEntry("LONE", "baseline", lonely))
        for tp in ("baseline", "m12"):
            folder = root / "data" / "BROKEN" / tp
            folder.mkdir(parents=True)
            (folder / "lesions.json").write_text("[]")
            entries.append(StudyEntry("BROKEN", tp, folder))
        (root / "data" / "BROKEN" / "baseline" / "broken").write_text("x")
    manifest = root / "manifest.csv"
    write_manifest(entries, manifest)
    return manifest


def run_cli(argv: list[str]) -> None:
    """Entry point of the subprocess in the kill -9 test: MANIFEST OUTDIR."""
    run_batch(read_manifest(argv[0]), argv[1], workers=2, study_fn=fake_study, compare_fn=fake_compare,
              progress=False)


def _leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith((TMP_PREFIX, TRASH_PREFIX))]


def _check_complete(out: Path, manifest: Path) -> None:
    """Every study and comparison present once, complete, its state record agreeing."""
    entries = read_manifest(manifest).entries
    studies = sorted(p.parent for p in (out / "studies").rglob(JOB_FILE))
    assert len(studies) == len(entries) - 1  # the broken study has no result
    for folder in studies:
        job = json.loads((folder / JOB_FILE).read_text())
        assert (folder / "payload.bin").read_bytes() == _payload(job["job_id"]), folder
        state = json.loads((out / "state" / (job["job_id"].replace("/", "__") + ".json")).read_text())
        assert state["status"] == "done" and state["fingerprint"] == job["fingerprint"]
    compares = list((out / "compare").rglob(JOB_FILE))
    assert len(compares) == len({e.subject for e in entries}) - 2  # LONE (no follow-up), BROKEN
    assert _leftovers(out) == []


# --- manifest ----------------------------------------------------------------------------------

def test_manifest_csv_folder_and_refusals(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("subject,timepoint,path,labels,note\nP1,m12,studies/p1b,,x\n"
                                    "P1,baseline,studies/p1a,lab/p1a.nii.gz,\n\nP2,bl,/abs/p2,,\n")
    manifest = read_manifest(tmp_path / "m.csv")
    assert [e.timepoint for e in manifest.subjects()["P1"]] == ["baseline", "m12"]
    assert manifest.subjects()["P1"][0].labels == tmp_path / "lab/p1a.nii.gz"
    assert [(b.timepoint, f.timepoint) for b, f in manifest.comparisons()] == [("baseline", "m12")]
    assert [e.subject for e in manifest.single_timepoint()] == ["P2"]
    assert sorted(["m12", "m6", "baseline", "y2"], key=timepoint_key) == ["baseline", "m6", "m12", "y2"]
    for text, message in (("subject,timepoint,path,arm\nP1,bl,x,A\n", "allocation"),
                          ("subject,timepoint,path\nP1,bl,x\nP1,bl,y\n", "twice"),
                          ("subject,timepoint,path\nP 1/x,bl,x\n", "subject"),
                          ("subject,path\nP1,x\n", "missing column")):
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(InputError, match=message):
            read_manifest(tmp_path / "bad.csv")
    for subject, tp in (("P1", "baseline"), ("P1", "m12"), ("P2", "baseline")):
        (tmp_path / "tree" / subject / tp / "dicom").mkdir(parents=True)
    (tmp_path / "tree" / "P1" / "m12" / "labels.nii.gz").write_bytes(b"")
    tree = read_manifest(tmp_path / "tree")
    p1 = tree.subjects()["P1"]
    assert p1[0].path == tmp_path / "tree/P1/baseline/dicom" and p1[1].labels is not None
    assert len(tree.comparisons()) == 1


def test_fingerprint_follows_inputs(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a").write_text("1")
    first = inputs_fingerprint([tmp_path / "s"])
    assert inputs_fingerprint([tmp_path / "s"]) == first
    (tmp_path / "s" / "a").write_text("22")
    assert inputs_fingerprint([tmp_path / "s"]) != first
    content = inputs_fingerprint([tmp_path / "s"], content=True)
    os.utime(tmp_path / "s" / "a", ns=(1, 1))
    assert inputs_fingerprint([tmp_path / "s"], content=True) == content


# --- runner ------------------------------------------------------------------------------------

def test_failures_recorded_resume_skips_and_changes_rerun(tmp_path: Path) -> None:
    manifest = make_cohort(tmp_path, 3)
    out = tmp_path / "out"
    first = run_batch(read_manifest(manifest), out, workers=0, study_fn=fake_study, compare_fn=fake_compare,
                      progress=False)
    d = first.to_dict()
    assert d["studies"] == {"done": 8, "failed": 1} and d["comparisons"] == {"done": 3, "not run": 1}
    kinds = {(p["subject"], p["kind"]) for p in d["problems"]}
    assert kinds == {("LONE", "missing follow-up"), ("BROKEN", "study failed"), ("BROKEN", "not compared")}
    assert "cannot read this study" in (out / "summary.md").read_text()
    failure = json.loads((out / "state" / "study__BROKEN__baseline.json").read_text())
    assert failure["status"] == "failed" and "cannot read" in failure["error"]
    cohort = out / "cohort"
    assert (cohort / "transition_counts.csv").read_text().splitlines()[:2] == ["baseline_type,1,2,total", "1,1,2,3"]
    assert len((cohort / "subject_changes.csv").read_text().splitlines()) == 4
    assert (cohort / "transition_bars.png").is_file() and (cohort / "volume_change.png").is_file()
    _check_complete(out, manifest)

    second = run_batch(read_manifest(manifest), out, workers=0, study_fn=fake_study, compare_fn=fake_compare,
                       progress=False).to_dict()
    assert second["studies"] == {"skipped": 8, "failed": 1} and second["comparisons"] == {"skipped": 3, "not run": 1}

    changed = tmp_path / "data" / "S001" / "m12" / "lesions.json"
    changed.write_text(json.dumps([lesion(1, "L4", "inferior", "2", 700.0)]))
    third = run_batch(read_manifest(manifest), out, workers=0, study_fn=fake_study, compare_fn=fake_compare,
                      progress=False).to_dict()
    assert third["studies"] == {"skipped": 7, "done": 1, "failed": 1}
    assert third["comparisons"] == {"skipped": 2, "done": 1, "not run": 1}
    assert (cohort / "transition_counts.csv").read_text().splitlines()[1] == "1,0,3,3"
    _check_complete(out, manifest)


def test_kill_minus_9_midway_then_resume(tmp_path: Path) -> None:
    manifest = make_cohort(tmp_path, 8)
    out = tmp_path / "out"
    env = {**os.environ, SLEEP_ENV: "0.6", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-c", "import sys; from tests.test_batch import run_cli; run_cli(sys.argv[1:])",
               str(manifest), str(out)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 90
    done_before: set[str] = set()
    while time.time() < deadline and process.poll() is None:
        done_before = ResultStore(out).done_job_ids()
        if len(done_before) >= 5:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[0].decode()[-2000:]
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    time.sleep(0.5)  # workers die with the batch (PR_SET_PDEATHSIG)
    done_at_kill = ResultStore(out).done_job_ids()
    total_jobs = 18 + 8  # 18 readable studies, 8 comparisons
    assert 5 <= len(done_at_kill) < total_jobs
    assert not (out / "summary.json").exists()

    rerun = subprocess.run(command, cwd=REPO, env={**env, SLEEP_ENV: "0"}, capture_output=True, timeout=180)
    assert rerun.returncode == 0, rerun.stdout.decode()[-2000:] + rerun.stderr.decode()[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    skipped = summary["studies"].get("skipped", 0) + summary["comparisons"].get("skipped", 0)
    assert skipped >= len(done_at_kill)  # nothing finished before the kill was done again
    assert summary["studies"].get("done", 0) + summary["studies"].get("skipped", 0) == 18
    _check_complete(out, manifest)


def test_dask_cluster_spreads_jobs_over_two_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv(SLEEP_ENV, "0.3")
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    manifest = make_cohort(tmp_path, 4, extra=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster:
        summary = run_batch(read_manifest(manifest), tmp_path / "out", scheduler=cluster.scheduler_address,
                            study_fn=fake_study, compare_fn=fake_compare, progress=False)
        addresses = set(cluster.workers[name].worker_address for name in cluster.workers)
    d = summary.to_dict()
    assert d["studies"] == {"done": 8} and d["comparisons"] == {"done": 4}
    assert set(d["workers"]) == addresses and len(addresses) == 2
    assert all(count >= 2 for count in d["workers"].values())
