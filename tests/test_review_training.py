"""Issue 18 items 3-4 without a GUI: the worklist ordered by doubt, lesion confidence in the package,
and readers' corrections exported as fine-tuning data (consensus with ties ignored, per reader,
no identifiers, read back by ``finetune --data``)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from modicseg.cli import main
from modicseg.core.labels import BODY, DISC, IGNORE, LESION
from modicseg.model.cases import load_labelled_cases
from modicseg.model.finetune import split_cases
from modicseg.model.losses import PartialDiceCELoss, group_matrices
from modicseg.review.key import read_key
from modicseg.review.pack import pack
from modicseg.review.package import Package
from modicseg.review.session import ReviewSession
from modicseg.review.training import consensus, export_training_data, held_out
from modicseg.review.volumes import read_nifti
from tests.test_review_helpers import DEFAULT_LESIONS, make_analysis
from tests.test_review_pack import _all_text

#: (subject, time point) -> (verdict confidence, lesion confidences by (level, endplate))
CONFIDENCE = {
    ("001", "baseline"): (0.9, {("L4", "inferior"): 0.93, ("L5", "superior"): 0.61}),
    ("001", "1year"): (0.3, {}),
    ("002", "baseline"): (None, {}),  # no confidence (labels given, older report): maximal doubt
    ("002", "1year"): (0.3, {}),
}
#: where the readers who add a lesion paint it (case grid; the phantom's L3, clear of the model's lesions)
BLOB = (slice(28, 34), slice(30, 36), slice(4, 7))
LESIONS = {("001", "baseline"): DEFAULT_LESIONS, ("001", "1year"): (("L4", "inferior", "2", 7.0),),
           ("002", "baseline"): (("L3", "superior", "1", 5.0),), ("002", "1year"): DEFAULT_LESIONS}


def _set_confidence(folder: Path, verdict: float | None, lesions: dict[tuple[str, str], float]) -> None:
    """What ``analyze`` with the network writes (schema 1.3.0): verdict and lesion confidences."""
    report = json.loads((folder / "report.json").read_text())
    report["eligibility"]["verdict_confidence"] = verdict
    for lesion in report["lesions"]:
        lesion["confidence"] = lesions.get((lesion["level"], lesion["endplate"]))
    (folder / "report.json").write_text(json.dumps(report, indent=1))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("doubt") / "analyses"
    for n, ((subject, timepoint), (verdict, lesions)) in enumerate(CONFIDENCE.items()):
        folder = make_analysis(root / f"sub-{subject}" / f"ses-{timepoint}", LESIONS[(subject, timepoint)], seed=n)
        _set_confidence(folder, verdict, lesions)
    return root


@pytest.fixture(scope="module")
def doubt_package(cohort, tmp_path_factory):
    return pack([cohort], tmp_path_factory.mktemp("doubt-pkg") / "package", seed=11, order="doubt")


def _who(result) -> dict[str, tuple[str, str]]:
    return {code: (e.subject, e.timepoint) for code, e in read_key(result.key).items()}


# --- the worklist ordered by doubt ------------------------------------------------------------------

def test_doubtful_cases_come_first_and_ties_stay_random_per_reader(doubt_package):
    package = Package.open(doubt_package.package)
    who = _who(doubt_package)
    code_of = {v: k for k, v in who.items()}
    assert package.order == "doubt"
    assert package.doubt == {code_of[k]: (1.0 if v is None else pytest.approx(1 - v))
                             for k, (v, _) in CONFIDENCE.items()}
    tied = {code_of[("001", "1year")], code_of[("002", "1year")]}  # both 0.3: doubt 0.7
    firsts = set()
    for reader in ("Alice", "Bob", "Carol", "Dan", "Eve", "Frank", "Grace", "Heidi"):
        order = package.worklist(reader)
        assert order[0] == code_of[("002", "baseline")]  # no confidence: maximal doubt, first
        assert set(order[1:3]) == tied
        assert order[3] == code_of[("001", "baseline")]  # the model is surest of this verdict
        assert package.worklist(reader.upper()) == order  # the same reader resumes in the same order
        firsts.add(order[1])
    assert firsts == tied  # within equal doubt each reader has their own random order


def test_doubt_order_is_reproducible_with_the_seed_and_the_default_stays_random(cohort, doubt_package, tmp_path):
    again = pack([cohort], tmp_path / "again", seed=11, order="doubt")
    first, second = Package.open(doubt_package.package), Package.open(again.package)
    assert first.info == second.info
    assert first.worklist("Alice") == second.worklist("Alice")
    plain = Package.open(pack([cohort], tmp_path / "plain", seed=11).package)
    assert plain.order == "random" and "doubt" not in plain.info and plain.info["schema_version"] == 1
    # the default order is the reader's shuffle, as before: no doubt in it
    seed_text = f"{plain.info['order_seed']}\0alice"
    expected = sorted(plain.codes)
    random.Random(int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], "big")).shuffle(expected)
    assert plain.worklist("Alice") == expected


def test_doubt_ordered_package_is_blinded(doubt_package):
    text = _all_text(doubt_package.package)
    for token in ("baseline", "1year", "sub-0", "ses-"):
        assert token not in text
    info = json.loads((doubt_package.package / "package.json").read_text())
    assert list(info["doubt"]) == sorted(info["doubt"]) == info["cases"]  # keyed by code, sorted: no pairing


def test_lesion_confidence_reaches_the_case(doubt_package):
    package = Package.open(doubt_package.package)
    code = {v: k for k, v in _who(doubt_package).items()}[("001", "baseline")]
    session = ReviewSession.open(package, "Dr Conf")
    state = session.open_index(session.worklist.index(code))
    shown = {(row.level, row.endplate): state.confidence(row) for row in state.rows()}
    assert shown == {("L4", "inferior"): 0.93, ("L5", "superior"): 0.61}
    assert package.case(code).confidence["verdict_confidence"] == 0.9
    session.close()


def test_cli_pack_order_doubt_and_bad_order(cohort, tmp_path, capsys):
    assert main(["review", "pack", str(cohort), "-o", str(tmp_path / "p"), "--order", "doubt", "--seed", "2"]) == 0
    assert Package.open(tmp_path / "p").order == "doubt"
    with pytest.raises(SystemExit) as exc:
        main(["review", "pack", str(cohort), "-o", str(tmp_path / "q"), "--order", "size"])
    assert exc.value.code == 2
    (tmp_path / "p" / "package.json").write_text(
        (tmp_path / "p" / "package.json").read_text().replace('"order": "doubt"', '"order": "sideways"'))
    assert main(["review", "status", str(tmp_path / "p")]) == 2
    assert "package.json: unknown reading order 'sideways'" in capsys.readouterr().err


# --- corrections as training data ----------------------------------------------------------------

def test_consensus_majority_and_ties():
    anatomy = np.array([BODY, BODY, BODY, DISC, 0, BODY], dtype=np.uint8)
    a = np.array([1, 1, 0, 0, 0, 2], dtype=np.uint8)
    b = np.array([1, 0, 0, 0, 3, 0], dtype=np.uint8)
    labels, tied = consensus(anatomy, [a, b])
    assert labels.tolist() == [LESION, IGNORE, BODY, DISC, IGNORE, IGNORE] and tied == 3
    c = np.array([0, 1, 0, 0, 0, 0], dtype=np.uint8)
    labels, tied = consensus(anatomy, [a, b, c])  # three readers: 2 of 3 is a majority, 1 of 3 is not
    assert labels.tolist() == [LESION, LESION, BODY, DISC, 0, BODY] and tied == 0
    labels, tied = consensus(anatomy, [a])
    assert labels.tolist() == [LESION, LESION, BODY, DISC, 0, LESION] and tied == 0


def test_held_out_is_seeded_and_keeps_one_for_training():
    codes = [f"C{n}" for n in range(8)]
    assert held_out(codes, 0.25, 1) == held_out(codes, 0.25, 1) and len(held_out(codes, 0.25, 1)) == 2
    assert len(held_out(codes[:2], 0.25, 0)) == 1 and held_out(codes[:1], 0.5, 0) == []


@pytest.fixture(scope="module")
def read_package(tmp_path_factory):
    """A package of two studies read by three readers through the session API (no GUI):
    Ann adds a blob and keeps everything; Ben rejects the first model lesion; Cy agrees with Ann on
    one case only and does not finish the other."""
    root = tmp_path_factory.mktemp("reads")
    make_analysis(root / "analyses" / "sub-0815" / "ses-baseline", DEFAULT_LESIONS, seed=1)
    make_analysis(root / "analyses" / "sub-0815" / "ses-followup", DEFAULT_LESIONS, seed=2)
    result = pack([root / "analyses"], root / "package", key=root / "secret" / "key.json", seed=3)
    package = Package.open(result.package)
    truth: dict[str, dict[str, np.ndarray]] = {}
    for reader in ("Ann Reader", "Ben Reader", "Cy Reader"):
        session = ReviewSession.open(package, reader)
        for code in package.codes:
            state = session.open_index(session.worklist.index(code))
            codes = state.grid_codes().copy()
            if reader in ("Ann Reader", "Cy Reader"):
                codes[BLOB] = 1  # a missed type 1 lesion
            else:
                codes.ravel()[state.model_rows[0].flat_index] = 0  # not a Modic change
            status = "in_progress" if reader == "Cy Reader" and code == package.codes[1] else "done"
            session.save(state.grid.to_display(codes), status=status)
            truth.setdefault(code, {})[reader] = codes
        session.close()
    return result, package, truth


def test_export_consensus_ties_are_ignored_and_finetune_reads_them(read_package, tmp_path, capsys):
    result, package, truth = read_package
    out = tmp_path / "train"
    assert main(["review", "export", str(result.package), "--training-data", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 consensus label maps" in printed and "left unlabelled" in printed
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["numTraining"] == 2 and dataset["channel_names"] == {"0": "T1", "1": "T2"}
    assert dataset["labels"] == {"background": 0, "vertebral_body": 1, "disc": 2, "modic_lesion": 3, "ignore": 255}
    assert [t["label"] for t in dataset["training"]] == [f"./labelsTr/{c}.nii.gz" for c in package.codes]
    assert len(dataset["modicseg"]["validation_cases"]) == 1
    full, partial = package.codes  # Cy finished the first case only
    for code, readers in ((full, ("Ann Reader", "Ben Reader", "Cy Reader")), (partial, ("Ann Reader", "Ben Reader"))):
        anatomy = np.asarray(package.case(code).labels("anatomy").array)
        votes = sum((truth[code][r] > 0).astype(int) for r in readers)
        expected = anatomy.copy()
        expected[2 * votes > len(readers)] = LESION
        expected[(2 * votes == len(readers)) & (votes > 0)] = IGNORE
        labels = np.asarray(read_nifti(out / "labelsTr" / f"{code}.nii.gz", label=True).array)
        assert np.array_equal(labels, expected)
        for n, role in enumerate(("t1", "t2")):
            assert (out / "imagesTr" / f"{code}_{n:04d}.nii.gz").read_bytes() == \
                (package.root / "cases" / code / f"{role}.nii.gz").read_bytes()
    ties = np.asarray(read_nifti(out / "labelsTr" / f"{partial}.nii.gz", label=True).array) == IGNORE
    blob = np.zeros_like(ties)
    blob[BLOB] = True
    assert ties[blob].all()  # Ann yes, Ben no: unlabelled
    full_labels = np.asarray(read_nifti(out / "labelsTr" / f"{full}.nii.gz", label=True).array)
    assert (full_labels[blob] == LESION).all()  # Ann and Cy against Ben: a lesion

    # finetune --data reads it: ties stay 255, the held-out case is the validation case, the loss ignores ties
    cases = {c.name: c for c in load_labelled_cases(out)}
    assert np.array_equal(np.asarray(cases[partial].labels.array),
                          np.asarray(read_nifti(out / "labelsTr" / f"{partial}.nii.gz", label=True).array))
    assert cases[full].annotated == (1, 2, 3)
    train, val = split_cases(list(cases.values()), {"fraction": 0.5}, seed=0)
    assert [c.name for c in val] == dataset["modicseg"]["validation_cases"] and len(train) == 1
    target = torch.from_numpy(np.asarray(cases[partial].labels.array, dtype=np.int64))[None, 24:40, 24:40, :]
    logits = torch.randn(1, 4, *target.shape[1:])
    loss = PartialDiceCELoss()
    groups = group_matrices([(1, 2, 3)], 4)
    changed = logits.clone()
    changed[:, :, target[0] == IGNORE] = torch.randn(4, int((target == IGNORE).sum()))
    assert (target == IGNORE).any()
    assert loss(changed, target, groups).item() == pytest.approx(loss(logits, target, groups).item(), rel=1e-5)


def test_export_per_reader(read_package, tmp_path):
    result, package, truth = read_package
    out = tmp_path / "per-reader"
    summary = export_training_data(result.package, out, per_reader=True, include_unfinished=True)
    full, partial = package.codes
    names = sorted(p.name.removesuffix(".nii.gz") for p in (out / "labelsTr").iterdir())
    assert names == sorted(f"{c}_r{n}" for c in (full, partial) for n in (1, 2, 3)) == sorted(summary.cases)
    assert summary.ignored_voxels == 0
    for n, reader in enumerate(("Ann Reader", "Ben Reader", "Cy Reader"), start=1):
        for code in (full, partial):
            labels = np.asarray(read_nifti(out / "labelsTr" / f"{code}_r{n}.nii.gz", label=True).array)
            anatomy = np.asarray(package.case(code).labels("anatomy").array)
            assert np.array_equal(labels, np.where(truth[code][reader] > 0, LESION, anatomy))
    dataset = json.loads((out / "dataset.json").read_text())
    held = dataset["modicseg"]["validation_cases"]
    assert len(held) == 3 and len({h.split("_")[0] for h in held}) == 1  # one case, all its readers


def test_export_names_nobody(read_package, tmp_path):
    result, _, _ = read_package
    out = tmp_path / "blind"
    export_training_data(result.package, out, key=result.key)
    text = _all_text(out)
    for token in ("0815", "baseline", "followup", "sub-", "ses-", "Ann Reader", "Ben Reader", "Cy Reader",
                  str(result.package), str(result.key), "secret"):
        assert token not in text, token
    assert not re.search(r"\b(19|20)\d\d-?[01]\d-?[0-3]\d", text)  # no dates
    assert not re.search(r"\b1\.2\.\d+(\.\d+){3,}", text)  # no DICOM UIDs
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "imagesTr", "labelsTr"]


def test_export_bad_input_is_one_clear_error(read_package, tmp_path, capsys):
    result, _, _ = read_package
    package = str(result.package)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.txt").write_text("x")
    for args, message in (
        ([package, "--training-data", str(tmp_path / "full")], "full: exists and is not empty"),
        ([package, "--training-data", str(tmp_path / "k"), "--key", str(tmp_path / "k" / "key.json")],
         "outside"),
        ([package, "--per-reader"], "--per-reader goes with --training-data"),
        ([package, "-o", str(tmp_path / "tables")], "needs the package's key"),
        ([package], "give -o DIR"),
        ([str(tmp_path), "--training-data", str(tmp_path / "t")], "not a reading package"),
    ):
        assert main(["review", "export", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    empty = pack([Path(result.key).parent.parent / "analyses"], tmp_path / "unread", seed=4)
    assert main(["review", "export", str(empty.package), "--training-data", str(tmp_path / "none")]) == 2
    assert "no reads marked done" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_cli_open_has_hide_confidence():
    import argparse

    from modicseg.cli import review_cmd

    parser = argparse.ArgumentParser()
    review_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["review", "open", "PKG", "--reader", "A", "--hide-confidence"])
    assert args.hide_confidence is True
    assert parser.parse_args(["review", "open", "PKG"]).hide_confidence is False
