"""The ``modicseg`` command line: parses arguments and calls the library, nothing more.

Each sub-command lives in its own module with ``register(subparsers)``, which adds a parser whose
``func`` default takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
import warnings
from pathlib import Path

from modicseg.core.version import __version__
from modicseg.io.errors import ModicsegError

#: Exit status of an unexpected failure (a bug, not a refused input): sysexits.h EX_SOFTWARE.
EXIT_INTERNAL_ERROR = 70

COMMAND_MODULES = [
    "modicseg.cli.inspect_cmd",
    "modicseg.cli.convert_cmd",
    "modicseg.cli.synth_cmd",
    "modicseg.cli.train_cmd",
    "modicseg.cli.finetune_cmd",
    "modicseg.cli.segment_cmd",
    "modicseg.cli.analyze_cmd",
    "modicseg.cli.compare_cmd",
    "modicseg.cli.batch_cmd",
    "modicseg.cli.outcomes_cmd",
    "modicseg.cli.review_cmd",
    "modicseg.cli.demo_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modicseg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"modicseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # command not written yet
                continue
            raise
        module.register(subparsers)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    warnings.formatwarning = _format_warning
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        output = getattr(args, "output", None)
        if isinstance(output, Path):
            from modicseg.io.atomic import check_output_dir

            check_output_dir(output)  # before any work: a run never fails at its very end for this
        return int(args.func(args) or 0)
    except ModicsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an input that cannot be read (permissions, I/O error, vanished file)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory (an input larger than this machine can hold?)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line, the traceback only with -v
        if args.verbose:
            traceback.print_exc()
        text = str(exc).splitlines()[0] if str(exc) else ""
        print(f"error: internal error in modicseg {args.command} ({type(exc).__name__}: {text}); please report "
              "it (-v shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
