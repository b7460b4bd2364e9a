"""Data order, micro-batch splitting and the learning-rate schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertbench.training.optim import warmup_decay_schedule
from bertbench.training.sampler import epoch_order, length_grouped_order, micro_batches, steps_per_epoch


def test_micro_batches_partition_each_step_across_ranks_and_accumulation() -> None:
    order = epoch_order(103, seed=7, epoch=0)
    assert sorted(order.tolist()) == list(range(103))
    global_batch, world, accum = 12, 2, 3
    assert steps_per_epoch(103, global_batch, world * accum) == 9  # 8 full + a last one of 7 >= 6 parts
    for step in range(9):
        parts = [micro_batches(order, step, global_batch, world, accum, rank) for rank in range(world)]
        rows = np.concatenate([m for micro, _ in parts for m in micro])
        assert sorted(rows.tolist()) == sorted(order[step * 12 : (step + 1) * 12].tolist())
        assert all(total == len(rows) for _, total in parts)
        assert all(len(m) > 0 for micro, _ in parts for m in micro)


def test_orders_depend_on_seed_and_epoch_only() -> None:
    assert np.array_equal(epoch_order(50, 1, 2), epoch_order(50, 1, 2))
    assert not np.array_equal(epoch_order(50, 1, 2), epoch_order(50, 1, 3))
    lengths = np.random.default_rng(0).integers(5, 120, 1000)
    a, b = length_grouped_order(lengths, 3, 0, 16), length_grouped_order(lengths, 3, 0, 16)
    assert np.array_equal(a, b) and sorted(a.tolist()) == list(range(1000))


def test_length_grouping_cuts_padding() -> None:
    lengths = np.random.default_rng(0).integers(5, 120, 2000)

    def padded(order: np.ndarray) -> float:
        return float(np.mean([lengths[order[i : i + 32]].max() for i in range(0, len(order), 32)]))

    assert padded(length_grouped_order(lengths, 1, 0, 32)) < 0.7 * padded(epoch_order(2000, 1, 0))


def test_warmup_then_linear_decay_matches_the_transformers_shape() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_decay_schedule(optimizer, warmup_steps=4, total_steps=12)
    rates = []
    for _ in range(12):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert rates[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert rates[8] == pytest.approx(0.5) and rates[-1] == pytest.approx(1 / 8)
