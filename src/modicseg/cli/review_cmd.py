"""``modicseg review``: blinded multi-reader review of ``analyze`` outputs.

  review pack ANALYSES... -o PACKAGE [--key KEY] [--seed S] [--order doubt]
                                         anonymised, randomised reading package (most doubtful first)
  review open PACKAGE [--reader NAME] [--db URL] [--hide-confidence]
                                         read it in napari ("Modic review")
  review status PACKAGE [--db URL]       cases done per reader
  review export PACKAGE --key KEY -o DIR [--db URL]...   tables and agreement (kappa, ICC)
  review export PACKAGE --training-data DIR [--per-reader]
                                         readers' corrected labels as a fine-tuning dataset
                                         (modicseg finetune --data DIR)

Reads are kept in PACKAGE/reads/reads.sqlite unless --db gives another database URL (e.g.
postgresql+psycopg://host/modic_reads for multi-site reading; install a PostgreSQL driver).
Readers who each read their own copy of the package are merged at export: give every copy's
database, e.g. --db sqlite:////data/copy-A/reads/reads.sqlite --db sqlite:////data/copy-B/reads/reads.sqlite.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("review", help="blinded multi-reader review in napari; reader agreement",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="review_command", metavar="ACTION", required=True)

    pack = sub.add_parser("pack", help="build an anonymised, randomised reading package")
    pack.add_argument("analyses", nargs="+", type=Path, metavar="ANALYSES",
                      help="analyze output folder(s), folders of them (sub-XX/ses-YY), or a CSV manifest "
                           "(analysis,subject,timepoint,arm,t1,t2,study)")
    pack.add_argument("-o", "--output", type=Path, required=True, metavar="PACKAGE", help="package folder (new)")
    pack.add_argument("--key", type=Path, metavar="KEY",
                      help="key file (code -> subject, time point); default PACKAGE-key.json next to the "
                           "package; never inside it")
    pack.add_argument("--seed", type=int, help="seed for codes and orders (reproducible packages: tests only)")
    pack.add_argument("--order", choices=("random", "doubt"), default="random",
                      help="reading order: random (default), or doubt: the cases whose verdict the model is least "
                           "sure of first (1 - eligibility.verdict_confidence; none counts as maximal doubt), "
                           "random within equal doubt")
    pack.set_defaults(func=run)

    for name, help_text in (("open", "read a package in napari"), ("status", "progress of each reader")):
        action = sub.add_parser(name, help=help_text)
        action.add_argument("package", type=Path, metavar="PACKAGE")
        action.add_argument("--db", metavar="URL", help="reads database URL (default: the package's SQLite file)")
        action.add_argument("--masks", type=Path, metavar="DIR", help="folder for edited masks "
                            "(default PACKAGE/reads/masks)")
        if name == "open":
            action.add_argument("--reader", metavar="NAME", help="start as this reader")
            action.add_argument("--hide-confidence", action="store_true",
                                help="do not show the model's confidence of each lesion (an unbiased read)")
        action.set_defaults(func=run)

    export = sub.add_parser("export", help="reads joined to subjects; per-lesion/per-level tables; agreement; "
                                           "corrected labels as fine-tuning data")
    export.add_argument("package", type=Path, metavar="PACKAGE")
    export.add_argument("--key", type=Path, metavar="KEY", help="the package's key (needed with -o)")
    export.add_argument("-o", "--output", type=Path, metavar="DIR",
                        help="tables and agreement (joined to subjects through the key)")
    export.add_argument("--training-data", type=Path, metavar="DIR",
                        help="write the readers' corrected label maps with their images as a fine-tuning dataset "
                             "(nnU-Net layout with dataset.json; no key needed, nothing identifies a patient)")
    export.add_argument("--per-reader", action="store_true",
                        help="with --training-data: one label map per reader instead of the voxelwise majority")
    export.add_argument("--validation-fraction", type=float, default=0.25, metavar="F",
                        help="with --training-data: share of cases held out for fine-tuning's before/after "
                             "table (default 0.25, at least one case when there are two or more)")
    export.add_argument("--seed", type=int, default=0, help="with --training-data: seed of the held-out choice")
    export.add_argument("--db", metavar="URL", action="append",
                        help="reads database URL, repeat to merge several (default: the package's SQLite file)")
    export.add_argument("--masks", type=Path, metavar="DIR",
                        help="folder of edited masks (default: beside each SQLite file, else the package's)")
    export.add_argument("--include-unfinished", action="store_true", help="count reads not marked done")
    export.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return {"pack": _pack, "open": _open, "status": _status, "export": _export}[args.review_command](args)


def _pack(args: argparse.Namespace) -> int:
    from modicseg.review.pack import pack

    result = pack(args.analyses, args.output, key=args.key, seed=args.seed, order=args.order)
    for note in result.warnings:
        print(f"warning: {note}")
    print(f"reading package: {result.package} ({len(result.codes)} cases)")
    print(f"key (keep it away from the readers): {result.key}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from modicseg.review.db import ReadStore
    from modicseg.review.package import Package

    package = Package.open(args.package)
    with ReadStore(args.db or package.default_db_url, args.masks or package.default_masks_dir) as store:
        progress = store.progress(package.package_id)
    total = len(package.codes)
    if not progress:
        print(f"{total} cases, no reads yet")
    for name, counts in progress.items():
        done = counts.get("done", 0)
        mean = f", {counts['done_seconds'] / done / 60:.1f} min per done case" if done else ""
        print(f"{name}: {done}/{total} done, {counts.get('in_progress', 0)} in progress{mean}")
    return 0


def _open(args: argparse.Namespace) -> int:  # pragma: no cover - starts the GUI event loop
    import napari

    from modicseg.review.widget import TITLE, ReviewWidget

    viewer = napari.Viewer(title=TITLE)
    widget = ReviewWidget(viewer, package=args.package, reader=args.reader, db_url=args.db, masks_dir=args.masks,
                          show_confidence=not args.hide_confidence)
    viewer.window.add_dock_widget(widget, name=TITLE, area="right")
    napari.run()
    return 0


def _export(args: argparse.Namespace) -> int:
    from modicseg.io.errors import InputError
    from modicseg.review.export import export

    if args.per_reader and args.training_data is None:
        raise InputError("--per-reader goes with --training-data DIR")
    if args.output is None and args.training_data is None:
        raise InputError("review export: give -o DIR (tables, with --key) and/or --training-data DIR")
    if args.output is not None and args.key is None:
        raise InputError("review export -o DIR needs the package's key (--key KEY)")
    if args.training_data is not None:
        _training_data(args)
    if args.output is None:
        return 0
    summary = export(args.package, args.key, args.output, db_url=args.db, masks_dir=args.masks,
                     include_unfinished=args.include_unfinished)
    print(f"{summary['reads']} read(s) by {len(summary['readers'])} reader(s) exported to {args.output}/")
    for note in summary["merged_duplicates"]:
        print(f"  note: {note}")
    for row in summary["agreement"]:
        if row["statistic"] != "ICC(2,1)" or row["value"] is not None:
            value = "n/a" if row["value"] is None else f"{row['value']:.2f}"
            print(f"  {row['measure']:<40} {row['raters']:<30} {row['statistic']:<14} {value:>5}  "
                  f"(n={row['units']})")
    return 0


def _training_data(args: argparse.Namespace) -> None:
    from modicseg.review.training import export_training_data

    result = export_training_data(args.package, args.training_data, db_url=args.db, masks_dir=args.masks,
                                  per_reader=args.per_reader, include_unfinished=args.include_unfinished,
                                  validation_fraction=args.validation_fraction, seed=args.seed, key=args.key)
    kind = "label maps, one per reader and case" if args.per_reader else "consensus label maps (majority of readers)"
    print(f"training data: {len(result.cases)} {kind} of {result.read_cases} read case(s) written to "
          f"{result.folder}/ ({len(result.validation)} held out for validation)")
    if result.ignored_voxels:
        print(f"  {result.ignored_voxels} voxel(s) where readers tie are left unlabelled (ignored by the loss)")
    for note in result.notes:
        print(f"  note: {note}")
    print(f"fine-tune with: modicseg finetune --data {result.folder} --from MODEL")
