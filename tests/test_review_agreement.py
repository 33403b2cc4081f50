"""Agreement statistics against published worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from modicseg.review.agreement import (
    cohen_kappa,
    confusion_matrix,
    fleiss_counts,
    fleiss_kappa,
    icc,
    percent_agreement,
)

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])

# Fleiss (1971) as tabulated on Wikipedia "Fleiss' kappa": 10 subjects, 14 raters, 5 categories.
FLEISS_TABLE = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                         [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])


def test_icc_shrout_fleiss_table():
    # published: ICC(1,1) = .17, ICC(2,1) = .29, ICC(3,1) = .71
    assert icc(SHROUT_FLEISS, "1,1") == pytest.approx(0.1657, abs=1e-4)
    assert icc(SHROUT_FLEISS, "2,1") == pytest.approx(0.2898, abs=1e-4)
    assert icc(SHROUT_FLEISS, "3,1") == pytest.approx(0.7148, abs=1e-4)
    assert icc(SHROUT_FLEISS) == icc(SHROUT_FLEISS, "2,1")


def test_icc_perfect_and_offset():
    values = np.array([[1.0, 1.0], [2.0, 2.0], [5.0, 5.0]])
    assert icc(values) == pytest.approx(1.0)
    shifted = values + np.array([0.0, 1.0])  # consistent but not in absolute agreement
    assert icc(shifted, "3,1") == pytest.approx(1.0)
    assert icc(shifted, "2,1") < 1.0
    assert np.isnan(icc(np.ones((3, 2))))  # no variance: undefined
    with pytest.raises(ValueError):
        icc(values, "4,2")


def test_cohen_kappa_two_by_two():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.70, p_e 0.50, kappa 0.40
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert confusion_matrix(a, b, ["yes", "no"]).tolist() == [[20, 5], [10, 15]]
    assert percent_agreement(a, b) == pytest.approx(0.70)
    assert cohen_kappa(a, b) == pytest.approx(0.40)


def test_cohen_kappa_three_categories_by_hand():
    # confusion [[2,1,0],[0,3,1],[1,0,2]]: p_o = 7/10, p_e = (3*3 + 4*4 + 3*3)/100 = 0.34
    a = ["1"] * 3 + ["2"] * 4 + ["3"] * 3
    b = ["1", "1", "2", "2", "2", "2", "3", "1", "3", "3"]
    assert cohen_kappa(a, b) == pytest.approx((0.7 - 0.34) / (1 - 0.34))
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert np.isnan(cohen_kappa(["x"] * 4, ["x"] * 4))


def test_fleiss_kappa_worked_example():
    # published: P-bar = 0.378, P-e = 0.213, kappa = 0.210
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.2099, abs=1e-4)


def test_fleiss_from_labels_equals_cohen_style_agreement():
    ratings = [["1", "1", "1"], ["2", "2", "2"], ["none", "none", "none"]]
    assert fleiss_kappa(fleiss_counts(ratings)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        fleiss_kappa(np.array([[2, 0], [1, 0]]))
