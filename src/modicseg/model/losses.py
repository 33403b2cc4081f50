"""Dice + cross-entropy for partially annotated cases ("marginal" loss).

A case states which classes it annotates. Every class belongs to exactly one *group* named by an
annotated label value:

* an annotated class is its own group;
* an unannotated class nested in an annotated one (the Modic lesion inside the vertebral body)
  joins its parent's group;
* every other unannotated class joins the background group.

The network's class probabilities are summed within each group and the loss (cross-entropy and
soft Dice) is computed on the groups against the label map. So, for a case with vertebral bodies
only, predicting "disc" where the label says background costs nothing (disc and background are one
group), and predicting "lesion" inside a labelled body costs nothing either; but predicting a body
where the label says background does. A fully annotated case reduces to ordinary Dice + CE.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch.nn import functional as F  # noqa: N812


def group_matrix(annotated: Iterable[int], n_classes: int, nested: Mapping[int, int] | None = None) -> torch.Tensor:
    """[G=n_classes, C] 0/1 matrix: row g sums the classes of group g (rows of absent groups are 0).

    Background (0) is always a group.
    """
    ann = {int(c) for c in annotated} | {0}
    nested = dict(nested or {})
    m = torch.zeros(n_classes, n_classes)
    for c in range(n_classes):
        if c in ann:
            g = c
        else:
            parent = nested.get(c)
            g = parent if parent is not None and parent in ann and parent != 0 else 0
        m[g, c] = 1.0
    return m


def group_matrices(annotated_per_sample: list[Iterable[int]], n_classes: int,
                   nested: Mapping[int, int] | None = None) -> torch.Tensor:
    """[B, G, C] group matrices for a batch."""
    return torch.stack([group_matrix(a, n_classes, nested) for a in annotated_per_sample])


class PartialDiceCELoss(torch.nn.Module):
    """Soft Dice (batch Dice per group, over annotated groups) + cross-entropy on grouped probabilities;
    voxels labelled ``ignore_index`` count in neither."""

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0, smooth: float = 1e-5,
                 include_background_dice: bool = False, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.smooth = smooth
        self.include_background_dice = include_background_dice

    def forward(self, logits: torch.Tensor, target: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """``logits`` [B, C, ...], ``target`` [B, ...] (or [B, 1, ...]) integer labels, ``groups`` [B, G, C]."""
        if target.ndim == logits.ndim:
            target = target[:, 0]
        target = target.long()
        n_classes = logits.shape[1]
        known = target != self.ignore_index  # voxels the labels say nothing about are left out
        target = torch.where(known, target, torch.zeros_like(target))
        probs = torch.softmax(logits.float(), dim=1)
        groups = groups.to(probs)
        grouped = torch.einsum("bgc,bc...->bg...", groups, probs).clamp_min(1e-8)
        loss = probs.new_zeros(())
        if self.ce_weight:
            nll = F.nll_loss(torch.log(grouped), target, reduction="none")
            loss = loss + self.ce_weight * (nll * known).sum() / known.sum().clamp_min(1)
        if self.dice_weight:
            weight = known.unsqueeze(1).to(probs)
            onehot = F.one_hot(target, n_classes).movedim(-1, 1).to(probs) * weight
            dims = tuple(range(2, probs.ndim))
            present = groups.sum(dim=2) > 0  # [B, G] groups this sample annotates
            inter = (grouped * onehot).sum(dims) * present
            denom = ((grouped * weight).sum(dims) + onehot.sum(dims)) * present
            inter, denom = inter.sum(0), denom.sum(0)  # batch Dice per group
            dice = (2 * inter + self.smooth) / (denom + self.smooth)
            valid = present.any(0)
            if not self.include_background_dice:
                valid[0] = False
            if valid.any():
                loss = loss + self.dice_weight * (1 - dice[valid]).mean()
        return loss
