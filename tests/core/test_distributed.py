"""spkid.training.distributed: the micro-batch split every data-parallel backend follows."""
from __future__ import annotations

import pytest

from spkid.training.distributed import device_count, micro_batches, usable
from spkid.errors import ConfigError


@pytest.mark.parametrize("n,world,accum", [(32, 1, 1), (32, 2, 1), (31, 2, 2), (9, 3, 3), (7, 1, 3)])
def test_micro_batches_tile_the_global_batch_without_gaps_or_overlap(n, world, accum):
    pieces = [p for r in range(world) for p in micro_batches(n, world, accum, r)]
    assert len(pieces) == world * accum
    assert pieces[0][0] == 0 and pieces[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))  # contiguous, in rank order
    sizes = [stop - start for start, stop, _ in pieces]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert sum(w for *_, w in pieces) == pytest.approx(1.0)
    assert all(w == pytest.approx((stop - start) / n) for start, stop, w in pieces)


def test_two_ranks_see_what_one_process_with_two_micro_batches_sees():
    assert micro_batches(10, 2, 1, 0) + micro_batches(10, 2, 1, 1) == micro_batches(10, 1, 2, 0)


def test_too_small_batches_and_bad_ranks_are_refused():
    with pytest.raises(ConfigError):
        micro_batches(3, 2, 2, 0)
    with pytest.raises(ConfigError):
        micro_batches(8, 2, 1, 2)
    assert usable(8, 2, 2) and not usable(7, 2, 2) and usable(2, 1, 1) and not usable(1, 1, 1)


def test_device_count():
    assert [device_count(d) for d in ("4", "1", "cpu", "cuda:1", "auto")] == [4, 1, 1, 1, 1]
