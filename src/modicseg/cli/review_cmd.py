"""``modicseg review``: blinded multi-reader review of ``analyze`` outputs.

  review pack ANALYSES... -o PACKAGE [--key KEY] [--seed S]   anonymised, randomised reading package
  review open PACKAGE [--reader NAME] [--db URL]                read it in napari ("Modic review")
  review status PACKAGE [--db URL]                              cases done per reader
  review export PACKAGE --key KEY -o DIR [--db URL]...          tables and agreement (kappa, ICC)

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
    pack.set_defaults(func=run)

    for name, help_text in (("open", "read a package in napari"), ("status", "progress of each reader")):
        action = sub.add_parser(name, help=help_text)
        action.add_argument("package", type=Path, metavar="PACKAGE")
        action.add_argument("--db", metavar="URL", help="reads database URL (default: the package's SQLite file)")
        action.add_argument("--masks", type=Path, metavar="DIR", help="folder for edited masks "
                            "(default PACKAGE/reads/masks)")
        if name == "open":
            action.add_argument("--reader", metavar="NAME", help="start as this reader")
        action.set_defaults(func=run)

    export = sub.add_parser("export", help="reads joined to subjects; per-lesion/per-level tables; agreement")
    export.add_argument("package", type=Path, metavar="PACKAGE")
    export.add_argument("--key", type=Path, required=True, metavar="KEY")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
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

    result = pack(args.analyses, args.output, key=args.key, seed=args.seed)
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
    widget = ReviewWidget(viewer, package=args.package, reader=args.reader, db_url=args.db, masks_dir=args.masks)
    viewer.window.add_dock_widget(widget, name=TITLE, area="right")
    napari.run()
    return 0


def _export(args: argparse.Namespace) -> int:
    from modicseg.review.export import export

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
