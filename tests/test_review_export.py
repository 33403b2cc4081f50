"""review export: reads joined to subjects, tables, and agreement on a constructed example."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from modicseg.io.errors import InputError
from modicseg.review.agreement import cohen_kappa, icc
from modicseg.review.db import ReadStore
from modicseg.review.export import export
from modicseg.review.key import read_key
from modicseg.review.pack import pack
from modicseg.review.package import Package
from tests.test_review_helpers import make_cohort


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    make_cohort(root / "analyses")
    result = pack([root / "analyses"], root / "package", seed=11)
    return result


def _lesion(level, endplate, mtype, volume, height=0.3, status="edited"):
    primary, _, secondary = mtype.partition("/")
    return {"level": level, "endplate": endplate, "type": mtype, "primary_type": primary,
            "secondary_type": secondary or None, "volume_mm3": volume, "height_fraction": height, "status": status}


# reads of the four cases (sorted codes): A and B agree on case 1, differ on cases 2 and 3, agree on none in 4
READS = {
    "Reader A": [([_lesion("L4", "inferior", "1", 1000.0)], True),
                 ([_lesion("L4", "inferior", "2", 500.0)], False),
                 ([_lesion("L5", "superior", "1", 300.0)], True),
                 ([_lesion("L3", "superior", "2", 50.0, status="rejected")], False)],
    "Reader B": [([_lesion("L4", "inferior", "1", 1100.0)], True),
                 ([_lesion("L4", "inferior", "1", 450.0)], False),
                 ([], False),
                 ([], False)],
}


@pytest.fixture(scope="module")
def exported(package, tmp_path_factory):
    pkg = Package.open(package.package)
    with ReadStore(pkg.default_db_url, pkg.default_masks_dir) as store:
        for reader, reads in READS.items():
            for code, (lesions, eligible) in zip(pkg.codes, reads, strict=True):
                store.save_read(pkg.package_id, code, reader, mask=None, lesions=lesions, status="done",
                                eligible=eligible, seconds=60.0)
        store.save_read(pkg.package_id, pkg.codes[0], "Unfinished", mask=None,
                        lesions=[_lesion("L3", "inferior", "3", 10.0)], status="in_progress")
    out = tmp_path_factory.mktemp("out") / "export"
    summary = export(package.package, package.key, out)
    return out, summary


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _find(summary, measure, raters):
    return next(r for r in summary["agreement"] if r["measure"].startswith(measure) and r["raters"] == raters)


def test_type_kappa_reader_vs_reader(exported):
    _, summary = exported
    # 4 cases x 4 levels x 2 endplates = 32 units; (none,none) 29, (1,1) 1, (2,1) 1, (1,none) 1
    # p_o = 30/32; A: none 29, "1" 2, "2" 1; B: none 30, "1" 2; p_e = (29*30 + 2*2) / 32**2 = 874/1024
    # kappa = (960/1024 - 874/1024) / (150/1024) = 86/150
    row = _find(summary, "type", "Reader A | Reader B")
    assert row["statistic"] == "Cohen's kappa" and row["units"] == 32
    assert row["value"] == pytest.approx(86 / 150, abs=1e-4)
    assert row["percent_agreement"] == pytest.approx(30 / 32, abs=1e-4)


def test_eligibility_kappa(exported):
    _, summary = exported
    # A: yes no yes no, B: yes no no no -> p_o 3/4, p_e (2*1 + 2*3)/16 = 1/2 -> kappa 0.5
    row = _find(summary, "eligibility", "Reader A | Reader B")
    assert row["value"] == pytest.approx(0.5) and row["units"] == 4


def test_icc_volume_and_model_rows(exported):
    _, summary = exported
    row = _find(summary, "volume", "Reader A | Reader B")
    assert row["statistic"] == "ICC(2,1)" and row["units"] == 3
    assert row["value"] == pytest.approx(icc([[1000, 1100], [500, 450], [300, 0]], "2,1"), abs=1e-4)
    assert _find(summary, "height fraction", "Reader A | Reader B")["units"] == 3
    model = [r for r in summary["agreement"] if r["comparison"] == "model vs reader"]
    assert {r["raters"] for r in model} == {"model | Reader A", "model | Reader B"}
    assert all(r["value"] is None or -1 <= r["value"] <= 1 for r in model)
    assert summary["readers"] == ["Reader A", "Reader B"]  # the unfinished read is left out


def test_tables_are_joined_to_subjects(exported, package):
    out, _ = exported
    key = read_key(package.key)
    reads = _rows(out / "reads.csv")
    assert len(reads) == 8
    for row in reads:
        assert (row["subject"], row["timepoint"]) == (key[row["code"]].subject, key[row["code"]].timepoint)
    lesions = _rows(out / "lesions.csv")
    assert {r["rater"] for r in lesions} == {"Reader A", "Reader B", "model"}
    assert any(r["status"] == "rejected" for r in lesions)
    levels = _rows(out / "levels.csv")
    assert len(levels) == 3 * 4 * 8  # model + 2 readers, 4 cases, 8 level/endplates each
    first = sorted(key)[0]
    a_l4 = next(r for r in levels if r["code"] == first and r["rater"] == "Reader A" and r["level"] == "L4"
                and r["endplate"] == "inferior")
    assert a_l4["type"] == "1" and float(a_l4["volume_mm3"]) == 1000.0
    rejected = next(r for r in levels if r["rater"] == "Reader A" and r["level"] == "L3"
                    and r["endplate"] == "superior" and r["code"] == sorted(key)[3])
    assert rejected["type"] == "none"
    data = json.loads((out / "agreement.json").read_text())
    assert "absolute agreement" in data["icc"]


def test_model_vs_reader_kappa_matches_by_hand(exported, package):
    _, summary = exported
    pkg = Package.open(package.package)
    model, reader = [], []
    for code, (lesions, _) in zip(pkg.codes, READS["Reader A"], strict=True):
        case = pkg.case(code)
        for level in case.levels:
            for endplate in ("superior", "inferior"):
                m = [les["type"] for les in case.model_lesions if (les["level"], les["endplate"]) == (level, endplate)]
                r = [les["type"] for les in lesions if (les["level"], les["endplate"]) == (level, endplate)
                     and les["status"] != "rejected"]
                model.append(m[0] if m else "none")
                reader.append(r[0] if r else "none")
    row = _find(summary, "type", "model | Reader A")
    assert row["value"] == pytest.approx(cohen_kappa(model, reader), abs=1e-4)


def test_three_readers_fleiss(package, tmp_path):
    pkg = Package.open(package.package)
    url = f"sqlite:///{tmp_path / 'three.sqlite'}"
    with ReadStore(url, tmp_path / "masks") as store:
        for reader in ("X", "Y", "Z"):
            for code in pkg.codes:
                store.save_read(pkg.package_id, code, reader, mask=None, status="done", eligible=False,
                                lesions=[_lesion("L4", "inferior", "1", 100.0)])
    summary = export(package.package, package.key, tmp_path / "out", db_url=url)
    row = _find(summary, "type", "X | Y | Z")
    assert row["statistic"] == "Fleiss' kappa" and row["value"] == pytest.approx(1.0)


def test_wrong_key_and_cli(package, exported, tmp_path, capsys):
    other = tmp_path / "other-key.json"
    other.write_text(json.dumps({"format": "modicseg-review-key", "schema_version": 1, "package_id": "x",
                                 "cases": []}))
    with pytest.raises(InputError, match="another reading package"):
        export(package.package, other, tmp_path / "o")
    from modicseg.cli import review_cmd

    parser = argparse.ArgumentParser()
    review_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["review", "export", str(package.package), "--key", str(package.key), "-o",
                              str(tmp_path / "cli")])
    assert args.func(args) == 0
    assert "Cohen's kappa" in capsys.readouterr().out
    args = parser.parse_args(["review", "status", str(package.package)])
    assert args.func(args) == 0
    assert "Reader A: 4/4 done" in capsys.readouterr().out


def test_reads_from_each_readers_copy_are_merged(package, exported, tmp_path, capsys):
    """Readers A and B each read their own copy of the package (own SQLite file, own masks). The
    export of both databases equals the export of one shared database; a case that reader A also
    read earlier in B's copy, under another spelling, counts once, with A's latest save."""
    import shutil

    pkg = Package.open(package.package)
    copies = {}
    for reader in READS:
        copy = tmp_path / f"copy-{reader[-1]}"
        shutil.copytree(package.package, copy, ignore=shutil.ignore_patterns("reads"))
        copies[reader] = Package.open(copy)
    with ReadStore(copies["Reader B"].default_db_url, copies["Reader B"].default_masks_dir) as store:
        store.save_read(pkg.package_id, pkg.codes[0], "  reader a", mask=None, status="done", eligible=False,
                        lesions=[_lesion("L2", "superior", "3", 80.0)])  # earlier, superseded below
    for reader, reads in READS.items():
        copy = copies[reader]
        with ReadStore(copy.default_db_url, copy.default_masks_dir) as store:
            for code, (lesions, eligible) in zip(pkg.codes, reads, strict=True):
                store.save_read(pkg.package_id, code, reader, mask=None, lesions=lesions, status="done",
                                eligible=eligible, seconds=60.0)
    urls = [copies[r].default_db_url for r in READS]
    summary = export(package.package, package.key, tmp_path / "merged", db_url=urls)
    _, shared = exported
    assert summary["readers"] == ["Reader A", "Reader B"] and summary["databases"] == 2
    assert summary["reads"] == 8
    assert len(summary["merged_duplicates"]) == 1 and pkg.codes[0] in summary["merged_duplicates"][0]
    for row in summary["agreement"]:
        if "Unfinished" in row["raters"]:
            continue
        twin = _find(shared, row["measure"], row["raters"])
        assert row["value"] == twin["value"] and row["units"] == twin["units"], row
    # the CLI takes --db more than once and says what it merged
    from modicseg.cli import review_cmd

    parser = argparse.ArgumentParser()
    review_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["review", "export", str(package.package), "--key", str(package.key), "-o",
                              str(tmp_path / "cli"), "--db", urls[0], "--db", urls[1]])
    assert args.func(args) == 0
    assert "read in 2 databases" in capsys.readouterr().out
