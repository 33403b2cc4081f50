"""``modicseg segment STUDY -o OUT``: label vertebral bodies, discs and Modic lesions.

Writes OUT/labels.nii.gz (0 background, 1 vertebral body, 2 disc, 3 Modic lesion) on the T2 grid
with the T2's affine (the T1's when there is no T2) and OUT/segmentation.json (model, runtime,
contrasts used, timings). On the CPU the shipped model runs with ONNX Runtime when its export is
current, as in ``analyze`` (``$MODICSEG_RUNTIME=torch`` or an explicit ``--precision`` uses torch).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from modicseg.cli.common import add_study_arguments, study_request


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("segment", help="segment vertebral bodies, discs and Modic lesions",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_arguments(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    parser.add_argument("--model", type=Path, metavar="DIR",
                        help="checkpoint folder (default: the shipped model, or $MODICSEG_MODEL)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                        help="torch runtime only (auto: fp16 on CUDA, bf16 on CPUs with AMX/AVX512-BF16, else "
                             "fp32); on the CPU, auto runs ONNX Runtime fp32 when the model has a current export")
    parser.add_argument("--register", choices=["auto", "always", "never"], default="auto",
                        help="T1->T2 rigid registration (auto: only for different frames of reference)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modicseg.core.convert import save_nifti
    from modicseg.io.atomic import atomic_output_dir
    from modicseg.io.study import open_study
    from modicseg.model.runtime import load_segmenter

    study = open_study(study_request(args), require=())
    if study.t1 is None and study.t2 is None:
        from modicseg.io.errors import SelectionError

        raise SelectionError("no T1 or T2 image found in the study")
    if args.precision == "auto":
        segmenter = load_segmenter(args.model, device=args.device, cache=False)
    else:
        from modicseg.model.inference import Segmenter
        from modicseg.shipped import shipped_model

        segmenter = Segmenter.load(shipped_model(args.model), device=args.device, precision=args.precision)
    result = segmenter.segment_detailed(study, register=args.register)
    info = {"model": segmenter.describe(), "contrasts": result.contrasts,
            "typing_possible": result.typing_possible, "timings_s": result.timings_s, "notes": result.notes,
            "labels": {str(k): v for k, v in segmenter.config.labels.items()},
            "shape": list(result.labels.shape), "affine": result.labels.affine.tolist()}
    with atomic_output_dir(args.output) as tmp:
        save_nifti(result.labels, str(tmp / "labels.nii.gz"))
        (tmp / "segmentation.json").write_text(json.dumps(info, indent=2) + "\n")
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {args.output / 'labels.nii.gz'} ({', '.join(result.contrasts)}; "
          f"{result.timings_s['total_s']:.1f} s on {segmenter.device})")
    return 0
