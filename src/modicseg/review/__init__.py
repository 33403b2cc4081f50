"""Blinded multi-reader review: reading packages, a napari widget, a reads database, agreement.

One module per job: ``codes`` (lesion-layer values and colours), ``volumes`` (blinded NIfTI
writing, display orientation), ``sources`` (finding ``analyze`` outputs and who they belong to),
``key`` (the code -> subject key file), ``pack`` (``review pack``), ``package`` (reading a
package), ``lesion_table`` (lesion rows from an edited mask), ``db`` (the reads database),
``session`` (one reader's work through the worklist, no GUI), ``agreement`` (kappa, ICC),
``export`` (``review export``), ``training`` (``review export --training-data``: corrected masks
as a fine-tuning dataset), ``napari_reader`` and ``widget`` (the napari plugin).

The GUI modules import napari / Qt; nothing else here does.
"""

from __future__ import annotations
