"""Data parallel's plumbing (benchmarks/distributed.py): which process this is, and
each rank's share of one global batch."""

from __future__ import annotations

import pytest

from benchmarks.config import ConfigError
from benchmarks.distributed import World, check_global_batch, share, world_from_environment


def test_one_process_without_torchruns_variables():
    assert world_from_environment({}) == World(0, 1, 0)
    assert world_from_environment({}).main


def test_torchruns_variables_name_the_rank():
    world = world_from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert world == World(3, 4, 1) and not world.main


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "2"}, "RANK=None"),
    ({"WORLD_SIZE": "2", "RANK": "x"}, "are not integers"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 is not in [0, WORLD_SIZE=2)"),
])
def test_inconsistent_variables_are_one_line(env, message):
    with pytest.raises(ConfigError) as err:
        world_from_environment(env)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_ranks_shares_make_the_global_batch_in_order():
    batch = list(range(12))
    for size in (1, 2, 3, 4):
        shares = [share(batch, World(rank, size)) for rank in range(size)]
        assert sum(shares, []) == batch and {len(s) for s in shares} == {12 // size}


def test_a_world_size_that_does_not_divide_the_global_batch_is_refused():
    check_global_batch(12, World(0, 4))
    with pytest.raises(ConfigError, match=r"--batch-size=10 is the global batch over 4 processes "
                                          r"and must be a multiple of 4; use 8 or 12"):
        check_global_batch(10, World(1, 4))
    with pytest.raises(ValueError, match="does not split into 4 equal shares"):
        share(list(range(10)), World(0, 4))
