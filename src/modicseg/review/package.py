"""A reading package on disk: ``package.json``, one folder per case code, per-reader worklists.

Layout::

    PACKAGE/package.json              format, schema, package id, case codes (sorted), order seed,
                                      reading order ("random", or "doubt" with each case's doubt)
    PACKAGE/cases/CODE/case.json      vertebrae (levels, geometry), model lesions and eligibility
    PACKAGE/cases/CODE/confidence.json  the model's confidence: per predicted lesion (keyed by the
                                      lesion's id in lesions.nii.gz's table) and of its verdict
    PACKAGE/cases/CODE/t1.nii.gz      T1 on the T2 grid (when available)
    PACKAGE/cases/CODE/t2.nii.gz      T2
    PACKAGE/cases/CODE/anatomy.nii.gz 1 vertebral body, 2 disc
    PACKAGE/cases/CODE/vertebrae.nii.gz  vertebra instances (label i = case.json vertebrae[i-1])
    PACKAGE/cases/CODE/lesions.nii.gz    predicted lesions, one code per Modic type (review.codes)
    PACKAGE/reads/                    default database (reads.sqlite) and edited masks

Nothing in it names a subject, a date, a time point or an arm; the key is elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.analysis.config import AnalysisConfig
from modicseg.analysis.vertebrae import VertebraSet
from modicseg.core.image import Image
from modicseg.io.errors import InputError
from modicseg.review.lesion_table import vertebra_set
from modicseg.review.volumes import read_nifti

PACKAGE_FORMAT = "modicseg-review-package"
CASE_FORMAT = "modicseg-review-case"
#: package.json schemas this modicseg reads: 1, and 2 (a reading order other than random)
PACKAGE_SCHEMA_VERSION = 2
#: package.json of a package read in random order (readable by every modicseg)
RANDOM_ORDER_SCHEMA_VERSION = 1
CASE_SCHEMA_VERSION = 1
ORDERS = ("random", "doubt")
CONFIDENCE_FILE = "confidence.json"
PACKAGE_FILE = "package.json"
CASE_FILE = "case.json"
CASE_IMAGES = {"t1": "t1.nii.gz", "t2": "t2.nii.gz"}
CASE_LABELS = {"anatomy": "anatomy.nii.gz", "vertebrae": "vertebrae.nii.gz", "lesions": "lesions.nii.gz"}
READS_DIR = "reads"


def reader_key(name: str) -> str:
    """A reader's identity: the name with spaces collapsed, case-folded; InputError when empty."""
    key = " ".join(str(name or "").split()).casefold()
    if not key:
        raise InputError("a reader name is needed")
    return key


def is_package(path: Path) -> bool:
    return (Path(path) / PACKAGE_FILE).is_file()


def is_case_folder(path: Path) -> bool:
    case_file = Path(path) / CASE_FILE
    if not case_file.is_file():
        return False
    try:
        return json.loads(case_file.read_text()).get("format") == CASE_FORMAT
    except (OSError, json.JSONDecodeError):
        return False


@dataclass
class Case:
    """One case of a package (files are read when asked for)."""

    code: str
    folder: Path
    info: dict[str, Any] = field(repr=False)

    @classmethod
    def open(cls, folder: Path) -> Case:
        folder = Path(folder)
        try:
            info = json.loads((folder / CASE_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{folder}: not a reading case ({exc})") from None
        if info.get("format") != CASE_FORMAT:
            raise InputError(f"{folder}: not a reading case")
        return cls(code=str(info["code"]), folder=folder, info=info)

    def image(self, role: str) -> Image | None:
        """T1 or T2 (ScalarImage), None when the package has none."""
        path = self.folder / CASE_IMAGES[role]
        return read_nifti(path) if path.is_file() else None

    def labels(self, name: str) -> Image:
        """``anatomy``, ``vertebrae`` or ``lesions`` as a LabelImage."""
        return read_nifti(self.folder / CASE_LABELS[name], label=True)

    @cached_property
    def config(self) -> AnalysisConfig:
        return AnalysisConfig.from_dict(self.info.get("config"), source=f"case {self.code}")

    def vertebra_set(self, instances: np.ndarray | None = None) -> VertebraSet:
        if instances is None:
            instances = np.asarray(self.labels("vertebrae").array)
        return vertebra_set(instances, self.info.get("vertebrae", []))

    @property
    def model_lesions(self) -> list[dict[str, Any]]:
        return list(self.info.get("model", {}).get("lesions", []))

    @property
    def model_eligibility(self) -> dict[str, Any]:
        return dict(self.info.get("model", {}).get("eligibility", {}))

    @property
    def levels(self) -> list[str]:
        return [v["level"] for v in self.info.get("vertebrae", []) if v.get("level")]

    @cached_property
    def confidence(self) -> dict[str, Any]:
        """``confidence.json``: {"verdict_confidence": p | None, "lesions": {model lesion id: p | None}}
        (empty values for packages made before it existed)."""
        path = self.folder / CONFIDENCE_FILE
        if not path.is_file():
            return {"verdict_confidence": None, "lesions": {}}
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not readable ({exc})") from None
        return {"verdict_confidence": data.get("verdict_confidence"), "lesions": dict(data.get("lesions") or {})}

    def lesion_confidence(self, model_id: int | None) -> float | None:
        """The model's confidence (0..1) that its lesion ``model_id`` (an id of ``lesion_rows`` on
        lesions.nii.gz) is real; None when unknown (labels given to ``analyze``, an older report)."""
        if model_id is None:
            return None
        value = self.confidence["lesions"].get(str(model_id))
        return None if value is None else float(value)


@dataclass
class Package:
    """A reading package folder."""

    root: Path
    info: dict[str, Any] = field(repr=False)

    @classmethod
    def open(cls, root: str | Path) -> Package:
        root = Path(root)
        try:
            info = json.loads((root / PACKAGE_FILE).read_text())
        except OSError:
            raise InputError(f"{root}: not a reading package (no {PACKAGE_FILE})") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{root / PACKAGE_FILE}: not valid JSON ({exc})") from None
        if info.get("format") != PACKAGE_FORMAT:
            raise InputError(f"{root}: not a modicseg reading package")
        if info.get("schema_version", 0) > PACKAGE_SCHEMA_VERSION:
            raise InputError(f"{root}: package schema {info['schema_version']} is newer than this modicseg")
        if info.get("order", "random") not in ORDERS:
            raise InputError(f"{root / PACKAGE_FILE}: unknown reading order {info.get('order')!r}")
        return cls(root=root, info=info)

    @property
    def package_id(self) -> str:
        return str(self.info["package_id"])

    @property
    def codes(self) -> list[str]:
        return list(self.info["cases"])

    def case(self, code: str) -> Case:
        if code not in self.codes:
            raise InputError(f"case {code} is not in this package")
        return Case.open(self.root / "cases" / code)

    @property
    def order(self) -> str:
        """``random`` or ``doubt`` (``review pack --order``)."""
        return str(self.info.get("order", "random"))

    @property
    def doubt(self) -> dict[str, float]:
        """Case code -> doubt (1 - the model's verdict confidence; 1 where unknown); empty unless
        the package is read in order of doubt."""
        return {str(k): float(v) for k, v in (self.info.get("doubt") or {}).items()}

    def worklist(self, reader: str) -> list[str]:
        """This reader's reading order: a shuffle seeded by the package and the reader's name; in a
        package ordered by doubt, the most doubtful cases first and the shuffle within equal doubt.

        The same reader always gets the same order (so a read can resume); two readers get
        independent orders (within equal doubt).
        """
        seed_text = f"{self.info['order_seed']}\0{reader_key(reader)}"
        seed = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], "big")
        order = sorted(self.codes)
        random.Random(seed).shuffle(order)
        if self.order == "doubt":
            doubt = self.doubt
            order.sort(key=lambda code: -doubt.get(code, 1.0))  # stable: the shuffle stays within ties
        return order

    @property
    def reads_dir(self) -> Path:
        return self.root / READS_DIR

    @property
    def default_db_url(self) -> str:
        return f"sqlite:///{(self.reads_dir / 'reads.sqlite').resolve()}"

    @property
    def default_masks_dir(self) -> Path:
        return self.reads_dir / "masks"
