"""Retrieval recall@k on hand-made similarity matrices."""

import pytest
import torch

from medran.evaluation.retrieval import recall_at_k


def test_recall_counts_rank_of_the_match_in_both_directions() -> None:
    similarity = torch.tensor(
        [
            [0.9, 0.1, 0.0],  # image 0: match ranked 1st
            [0.8, 0.5, 0.1],  # image 1: match ranked 2nd
            [0.7, 0.6, 0.2],  # image 2: match ranked 3rd
        ]
    )
    out = recall_at_k(similarity, [1, 2, 3])
    assert [out[f"i2t_r{k}"] for k in (1, 2, 3)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    # text 0 -> images [0.9, 0.8, 0.7]: 1st; text 1 -> [0.1, 0.5, 0.6]: 2nd; text 2: 1st
    assert [out[f"t2i_r{k}"] for k in (1, 2)] == pytest.approx([2 / 3, 1.0])


def test_ties_count_against_the_match() -> None:
    out = recall_at_k(torch.ones(4, 4), [1, 3, 4])
    assert out["i2t_r1"] == 0.0 and out["i2t_r3"] == 0.0 and out["i2t_r4"] == 1.0
