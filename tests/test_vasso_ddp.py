"""Data parallel: two CPU processes over gloo, sync="global" and sync="local"."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel
from vasso_reference import batch, mlp

import vasso

WORLD = 2
STEPS = 3


def _loss(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y)


def _optimizer(params, model, sync):
    base = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    return vasso.VaSSO(base, rho=0.1, theta=0.5, model=model, sync=sync)


def _worker(rank: int, directory: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{directory}/store", rank=rank, world_size=WORLD
    )
    results = {}
    for sync in ("global", "local"):
        model = DistributedDataParallel(mlp(seed=0))
        all_reduces = []

        def counting_hook(state, bucket):
            all_reduces.append(1)
            return default_hooks.allreduce_hook(None, bucket)

        model.register_comm_hook(None, counting_hook)
        opt = _optimizer(model.parameters(), model, sync)
        per_step, first_pass_grads = [], None
        for step in range(STEPS):
            x, y = batch(step)
            x, y = x.chunk(WORLD)[rank], y.chunk(WORLD)[rank]
            before = len(all_reduces)
            if step == 0:  # the two-step API, to look at the first-pass gradient
                opt.zero_grad()
                with opt.first_pass():
                    _loss(model, x, y).backward()
                first_pass_grads = [p.grad.clone() for p in model.parameters()]
                assert opt.first_step()
                opt.zero_grad()
                _loss(model, x, y).backward()
                opt.second_step()
            else:
                def closure():
                    loss = _loss(model, x, y)
                    loss.backward()
                    return loss

                opt.step(closure)
            per_step.append(len(all_reduces) - before)
        results[sync] = {
            "params": [p.detach().clone() for p in model.parameters()],
            "optimizer": opt.state_dict(),
            "all_reduces": per_step,
            "first_pass_grads": first_pass_grads,
        }
    torch.save(results, os.path.join(directory, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("ddp"))
    torch.multiprocessing.spawn(_worker, args=(directory,), nprocs=WORLD, join=True)
    return [torch.load(os.path.join(directory, f"rank{r}.pt"), weights_only=True) for r in range(WORLD)]


def _single_process() -> list[torch.Tensor]:
    model = mlp(seed=0)
    opt = _optimizer(model.parameters(), model=None, sync="global")
    for step in range(STEPS):
        x, y = batch(step)

        def closure():
            loss = _loss(model, x, y)
            loss.backward()
            return loss

        opt.step(closure)
    return [p.detach() for p in model.parameters()]


def test_global_sync_matches_one_process_on_the_whole_batch(ranks):
    a, b = ranks[0]["global"], ranks[1]["global"]
    for p, q, r in zip(a["params"], b["params"], _single_process()):
        assert torch.equal(p, q)
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)
    for i, state in a["optimizer"]["state"].items():  # the same d_t on every rank
        assert torch.equal(state["grad_avg"], b["optimizer"]["state"][i]["grad_avg"])
    for i, state in a["optimizer"]["base"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optimizer"]["base"]["state"][i]["momentum_buffer"])
    assert torch.equal(a["first_pass_grads"][0], b["first_pass_grads"][0])


def test_local_sync_skips_the_first_all_reduce(ranks):
    a, b = ranks[0], ranks[1]
    global_count, local_count = a["global"]["all_reduces"], a["local"]["all_reduces"]
    assert all(n > 0 for n in local_count)
    assert global_count == [2 * n for n in local_count]  # one all-reduce per pass, against one
    # The first pass saw each rank's own half of the batch ...
    assert not torch.equal(a["local"]["first_pass_grads"][0], b["local"]["first_pass_grads"][0])
    # ... so the averages differ, but the descent gradient is all-reduced: same weights.
    assert not torch.equal(a["local"]["optimizer"]["state"][0]["grad_avg"], b["local"]["optimizer"]["state"][0]["grad_avg"])
    for p, q in zip(a["local"]["params"], b["local"]["params"]):
        assert torch.equal(p, q)
