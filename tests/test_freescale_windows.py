"""Window geometry: border-touching windows, FreeScale's 3x3 windows, NPA patches, FreeNoise."""

import pytest
import torch
from float_bounds import gamma

from vidscale.freescale.windows import (
    halved,
    level_of,
    neighborhood_plan,
    reference_plan,
    temporal_plan,
    window_starts,
)


def assert_weights_sum_to_one(plan):
    """Each float64 weight is a count over its token's total (one rounding), and a row adds
    ``depth`` of them (depth - 1 roundings): within gamma(2 * depth) of 1."""
    depth = plan.weight.shape[1]
    assert ((plan.weight.sum(1) - 1).abs() <= gamma(2 * depth, torch.float64)).all()


def test_window_starts_end_at_the_border():
    assert window_starts(80, 40, 20) == [0, 20, 40]
    assert window_starts(128, 64, 32) == [0, 32, 64]
    assert window_starts(10, 5, 2) == [0, 2, 4, 5]
    assert window_starts(40, 16, 4) == [0, 4, 8, 12, 16, 20, 24]
    assert window_starts(42, 16, 4) == [0, 4, 8, 12, 16, 20, 24, 26]
    assert window_starts(16, 16, 4) == [0] and window_starts(8, 16, 4) == [0]


def test_levels_halve_with_ceil_like_the_unet():
    assert [halved((80, 128), k) for k in range(4)] == [(80, 128), (40, 64), (20, 32), (10, 16)]
    assert [halved((45, 27), k) for k in range(3)] == [(45, 27), (23, 14), (12, 7)]
    assert level_of(10 * 16, (80, 128)) == 3
    assert level_of(12 * 7, (45, 27)) == 2
    with pytest.raises(ValueError, match="not a UNet level"):
        level_of(999, (80, 128))


def test_reference_plan_is_nine_base_windows_at_x2():
    plan = reference_plan((80, 128), (40, 64))
    assert plan.query_index.shape == (9, 40 * 64)
    assert torch.equal(plan.query_index, plan.key_index)
    corners = plan.query_index[:, 0].tolist()
    assert corners == [r * 128 + c for r in (0, 20, 40) for c in (0, 32, 64)]
    assert_weights_sum_to_one(plan)
    counts = (plan.weight > 0).sum(1).view(80, 128)
    assert counts[0, 0] == 1 and counts[30, 50] == 4 and counts[30, 0] == 2


def test_neighborhood_plan_patches_and_centred_clamped_windows():
    plan = neighborhood_plan((80, 128), (40, 64))
    assert plan.query_index.shape == (16, 20 * 32) and plan.key_index.shape == (16, 40 * 64)
    assert plan.weight is None  # patches tile the map: each token read once
    assert sorted(plan.source.flatten().tolist()) == list(range(80 * 128))
    assert sorted(plan.query_index.flatten().tolist()) == list(range(80 * 128))
    q_rows = [int(i) // 128 for i in plan.query_index[::4, 0]]
    k_rows = [int(i) // 128 for i in plan.key_index[::4, 0]]
    assert q_rows == [0, 20, 40, 60] and k_rows == [0, 10, 30, 40]  # centred, then clamped
    q_cols = [int(i) % 128 for i in plan.query_index[:4, 0]]
    k_cols = [int(i) % 128 for i in plan.key_index[:4, 0]]
    assert q_cols == [0, 32, 64, 96] and k_cols == [0, 16, 48, 64]


def test_neighborhood_plan_averages_a_moved_back_last_patch():
    plan = neighborhood_plan((7, 4), (4, 4))  # patches of 2 rows at 0, 2, 4, 5
    counts = (plan.weight > 0).sum(1).view(7, 4)
    assert counts[:5].eq(1).all() and counts[5].eq(2).all() and counts[6].eq(1).all()


@pytest.mark.parametrize("frames, starts", [(40, list(range(0, 25, 4))), (42, [*range(0, 25, 4), 26])])
def test_temporal_plan_covers_every_frame_with_pyramid_weights(frames, starts):
    plan = temporal_plan(frames, 16, 4)
    assert plan.query_index[:, 0].tolist() == starts
    assert_weights_sum_to_one(plan)
    pyramid = [1, 2, 3, 4, 5, 6, 7, 8, 8, 7, 6, 5, 4, 3, 2, 1]
    assert plan.weight[0, 0] == 1.0  # frame 0 is in one window only
    frame = 5  # in windows 0 (slot 5) and 4 (slot 1)
    expected = torch.tensor([pyramid[5], pyramid[1]], dtype=torch.float64) / (pyramid[5] + pyramid[1])
    assert torch.equal(plan.weight[frame, :2], expected) and plan.weight[frame, 2:].eq(0).all()
