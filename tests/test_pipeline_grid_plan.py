"""Plans on a temporally compressed, causal latent grid (Wan's: 1 + 4k frames), as arithmetic.

Chunk k covering frames [S, S + 1 + 4K) and chunk k+1 starting at S' = S + 4(K - a) share
4a + 1 frames; chunk k+1's latent frame j >= 1 must then hold the same frames as chunk k's latent
K - a + j (the same latent frame of the clip), and its lone latent 0 (frame S') the last frame of
chunk k's latent K - a. Checked here for many clip lengths and settings, with the padding, the
segments and the geometry; VideoCrafter2's frame-by-frame grid keeps its plans (test_work_plan).
"""

import pytest
import torch

from vidscale.model.spec import VC2_GRID, LatentGrid
from vidscale.pipeline.detail import on_latent_frames
from vidscale.settings import Settings
from vidscale.work.plan import describe_plan, geometry_for, make_plan, plan_chunks, plan_segments

WAN = LatentGrid(channels=16, spatial=8, temporal=4, causal=True, multiple=2)  # Wan 2.1's VAE and patch
WAN22 = LatentGrid(channels=48, spatial=16, temporal=4, causal=True, multiple=2)  # Wan 2.2 TI2V


def frames_of(chunk_start: int, j: int) -> range:
    """The frames a chunk's latent j holds on the causal 4x grid."""
    return range(chunk_start, chunk_start + 1) if j == 0 else range(chunk_start + 4 * j - 3, chunk_start + 4 * j + 1)


def test_the_grid_maps_frames_to_the_clips_latent_frames():
    assert [WAN.fit(n) for n in (1, 2, 5, 6, 9, 23)] == [1, 5, 5, 9, 9, 25]
    assert [WAN.latent_index(f) for f in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]
    assert [WAN.anchored_latents(n) for n in (0, 1, 4, 5, 9)] == [0, 0, 0, 1, 2]
    assert [VC2_GRID.fit(n) for n in (1, 7)] == [1, 7] and VC2_GRID.latent_index(7) == 7
    assert VC2_GRID.anchored_latents(3) == 3 and VC2_GRID.lone == 0 and WAN.lone == 1


@pytest.mark.parametrize("total", [1, 2, 4, 5, 6, 9, 23, 24, 25, 26, 97])
@pytest.mark.parametrize("chunk_frames, overlap", [(48, 8), (9, 5), (5, 1), (5, 0), (13, 9), (17, 2), (1, 1), (6, 30)])
def test_chunks_lie_on_the_grid_and_own_every_frame_once(total, chunk_frames, overlap):
    chunks = plan_chunks(total, chunk_frames, overlap, WAN)
    assert [f for c in chunks for f in range(*c.owned)] == list(range(total))
    for chunk in chunks:
        length = chunk.end - chunk.start + chunk.pad
        assert chunk.start % 4 == 0 and (length - 1) % 4 == 0  # 1 + 4K frames from a grid point
        assert length <= max(chunk_frames, 5) or total == 1 and length == 1
        assert chunk.end <= total and (chunk.pad == 0 or chunk is chunks[-1] and chunk.pad < 4)
    assert chunks[-1].end + chunks[-1].pad == WAN.fit(total)
    for previous, chunk in zip(chunks, chunks[1:]):
        shared = previous.end + previous.pad - chunk.start
        assert chunk.anchored == shared and (shared - 1) % 4 == 0  # 4a + 1 frames
        assert shared <= max(overlap, 1)  # the overlap rounded down to the grid, at least the lone frame
        big_k, a = (previous.end + previous.pad - previous.start - 1) // 4, (shared - 1) // 4
        assert list(frames_of(chunk.start, 0)) == [frames_of(previous.start, big_k - a)[-1]]
        for j in range(1, a + 1):
            assert frames_of(chunk.start, j) == frames_of(previous.start, big_k - a + j)
            assert WAN.latent_index(chunk.start) + j == WAN.latent_index(previous.start) + big_k - a + j


def test_vc2s_grid_plans_chunks_as_before():
    assert [(c.start, c.end, c.anchored, c.pad) for c in plan_chunks(10, 4, 3, VC2_GRID)] == \
        [(0, 4, 0, 0), (1, 5, 3, 0), (2, 6, 3, 0), (3, 7, 3, 0), (4, 8, 3, 0), (5, 9, 3, 0), (6, 10, 3, 0)]
    assert plan_chunks(10, 4, 3) == plan_chunks(10, 4, 3, VC2_GRID)


@pytest.mark.parametrize("grid, scale, size, padded", [
    (WAN, 2, (854, 480), (856, 480)), (WAN, 4, (854, 481), (856, 488)), (WAN, 2, (832, 480), (832, 480)),
    (WAN22, 2, (1279, 704), (1280, 704)), (WAN22, 4, (1279, 705), (1280, 720)),
])
def test_geometry_pads_to_the_grids_pixels_and_outputs_exact_scale(grid, scale, size, padded):
    geometry = geometry_for(*size, scale, grid=grid)
    assert (geometry.padded_width, geometry.padded_height) == padded
    assert geometry.output_size == (size[0] * scale, size[1] * scale)
    assert all(n % grid.multiple == 0 for n in geometry.target_latent_size)  # even sides for the patch
    assert geometry.latent_size == (padded[1] // grid.spatial, padded[0] // grid.spatial)


def test_a_plan_on_the_causal_grid_counts_latent_frames_and_says_what_it_pads():
    settings = Settings().replace({"jobs.chunk_frames": 21, "jobs.overlap_frames": 8, "jobs.memory_budget_gb": 80.0})
    plan = make_plan(832, 480, (0, 50), settings, grid=WAN)
    assert [(c.start, c.end, c.anchored, c.pad) for c in plan.chunks] == \
        [(0, 21, 0, 0), (16, 37, 5, 0), (32, 50, 5, 3)]
    same_size = make_plan(832, 480, (0, 6), settings.replace({"jobs.chunk_frames": 6}))  # 6 VC2 frames
    assert plan.memory_gb == same_size.memory_gb  # 21 frames are 6 latent frames
    text = describe_plan(plan.to_dict())
    assert ("frames    0-49 (50) in 3 chunk(s): 0-20, 16-36 (first 5 anchored), "
            "32-49 (first 5 anchored) (+3 padded)") in text

    # The budget limits latent frames: as many as VC2 gets frames at the same latent size.
    long = settings.replace({"jobs.chunk_frames": 1000, "jobs.memory_budget_gb": 20.0})
    tight, vc2 = make_plan(832, 480, (0, 200), long, grid=WAN), make_plan(832, 480, (0, 200), long)
    fit = vc2.chunks[0].end
    assert 1 < fit < 50 and not tight.tiles and tight.memory_gb == vc2.memory_gb <= 20.0
    assert tight.chunks[0].end == 1 + 4 * (fit - 1)


def test_segments_start_on_the_grid_and_fade_over_the_shared_frames():
    chunks = plan_chunks(59, 13, 5, WAN)
    segments = plan_segments(chunks, 24)
    assert len(segments) > 2
    for previous, segment in zip(segments, segments[1:]):
        assert segment.start % 4 == 0 and segment.fade == 5 and segment.start == previous.end - segment.fade
        assert segment.chunks[0].anchored == 0 and segment.chunks[-1].pad == (segment is segments[-1]) * 2
    owned = [f for s in segments for c in s.chunks for f in range(*c.owned)]
    assert sorted(set(owned)) == list(range(59)) and len(owned) == 59 + 5 * (len(segments) - 1)


def test_a_matte_folds_onto_latent_frames_like_the_frames_do():
    cover = torch.arange(9, dtype=torch.float32)[:, None, None].expand(9, 2, 2)
    assert on_latent_frames(cover, WAN)[:, 0, 0].tolist() == [0.0, 2.5, 6.5]
    assert on_latent_frames(cover, VC2_GRID) is cover
