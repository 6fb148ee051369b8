"""Data parallel: two CPU processes over gloo, every method, sync="global" and sync="local",
and a model with BatchNorm under both statistics policies."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel
from vasso_reference import METHODS, batch, method_kwargs, mlp

import vasso

WORLD = 2
STEPS = 3


def _loss(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y)


def _kwargs(name: str, sync: str) -> dict:
    kwargs = method_kwargs(name)
    if name == "GSAM" and sync == "local":
        kwargs = {**kwargs, "alpha": 0.0}  # alpha > 0 needs the all-reduced clean gradient
    return kwargs


def _optimizer(name, params, model, sync, **kwargs):
    base = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    return getattr(vasso, name)(base, model=model, sync=sync, **_kwargs(name, sync), **kwargs)


def _bn_buffers(module) -> list[torch.Tensor]:
    bn = module[1]
    return [bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()]


def _train(rank: int, name: str, sync: str, batchnorm: bool = False, bn_stats: str = "first") -> dict:
    model = DistributedDataParallel(mlp(seed=0, batchnorm=batchnorm))
    all_reduces = []

    def counting_hook(state, bucket):
        all_reduces.append(1)
        return default_hooks.allreduce_hook(None, bucket)

    model.register_comm_hook(None, counting_hook)
    opt = _optimizer(name, model.parameters(), model, sync, bn_stats=bn_stats)
    per_step, first_pass_grads, first_pass_stats = [], None, []
    for step in range(STEPS):
        x, y = batch(step)
        x, y = x.chunk(WORLD)[rank], y.chunk(WORLD)[rank]
        if batchnorm:
            # What a first pass alone does to the statistics: DDP broadcasts rank 0's
            # buffers at the start of each forward, then the rank's batch updates them.
            probe = copy.deepcopy(model.module)
            for buffer in probe.buffers():
                dist.broadcast(buffer, 0)
            probe(x)
            first_pass_stats.append(_bn_buffers(probe))
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
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "optimizer": opt.state_dict(),
        "all_reduces": per_step,
        "first_pass_grads": first_pass_grads,
        "bn": _bn_buffers(model.module) if batchnorm else None,
        "first_pass_bn": first_pass_stats[-1] if batchnorm else None,
    }


def _worker(rank: int, directory: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{directory}/store", rank=rank, world_size=WORLD
    )
    results = {f"{name}-{sync}": _train(rank, name, sync)
               for name in METHODS for sync in ("global", "local")}
    for bn_stats in ("first", "both"):
        results[f"bn-{bn_stats}"] = _train(rank, "SAM", "global", batchnorm=True, bn_stats=bn_stats)
    torch.save(results, os.path.join(directory, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("ddp"))
    torch.multiprocessing.spawn(_worker, args=(directory,), nprocs=WORLD, join=True)
    return [torch.load(os.path.join(directory, f"rank{r}.pt"), weights_only=True) for r in range(WORLD)]


def _single_process(name: str) -> list[torch.Tensor]:
    model = mlp(seed=0)
    opt = _optimizer(name, model.parameters(), model, "global")
    for step in range(STEPS):
        x, y = batch(step)

        def closure():
            loss = _loss(model, x, y)
            loss.backward()
            return loss

        opt.step(closure)
    return [p.detach() for p in model.parameters()]


@pytest.mark.parametrize("name", METHODS)
def test_global_sync_matches_one_process_on_the_whole_batch(ranks, name):
    a, b = ranks[0][f"{name}-global"], ranks[1][f"{name}-global"]
    for p, q, r in zip(a["params"], b["params"], _single_process(name)):
        assert torch.equal(p, q)
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)
    for i, state in a["optimizer"]["state"].items():  # the same method state (d_t) on every rank
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][i][key]), key
    for i, state in a["optimizer"]["base"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optimizer"]["base"]["state"][i]["momentum_buffer"])
    assert torch.equal(a["first_pass_grads"][0], b["first_pass_grads"][0])


@pytest.mark.parametrize("name", METHODS)
def test_local_sync_skips_the_first_all_reduce(ranks, name):
    a, b = ranks[0], ranks[1]
    global_count, local_count = a[f"{name}-global"]["all_reduces"], a[f"{name}-local"]["all_reduces"]
    assert all(n > 0 for n in local_count)
    assert global_count == [2 * n for n in local_count]  # one all-reduce per pass, against one
    # The first pass saw each rank's own half of the batch ...
    local_a, local_b = a[f"{name}-local"], b[f"{name}-local"]
    assert not torch.equal(local_a["first_pass_grads"][0], local_b["first_pass_grads"][0])
    # ... but the descent gradient is all-reduced: the same weights on every rank.
    for p, q in zip(local_a["params"], local_b["params"]):
        assert torch.equal(p, q)
    # Perturbing with the rank's own gradient is a different method from the global one.
    assert not torch.equal(local_a["params"][0], a[f"{name}-global"]["params"][0])


def test_local_sync_keeps_a_vasso_average_per_rank(ranks):
    a, b = ranks[0]["VaSSO-local"], ranks[1]["VaSSO-local"]
    assert not torch.equal(a["optimizer"]["state"][0]["grad_avg"], b["optimizer"]["state"][0]["grad_avg"])


@pytest.mark.parametrize("bn_stats", ["first", "both"])
def test_batchnorm_statistics_policy_under_ddp(ranks, bn_stats):
    for rank in ranks:
        run = rank[f"bn-{bn_stats}"]
        stats, first_pass = run["bn"], run["first_pass_bn"]
        if bn_stats == "first":  # the perturbed forward left no trace
            assert all(torch.equal(s, f) for s, f in zip(stats, first_pass))
            assert int(stats[2]) == STEPS
        else:
            assert int(stats[2]) == 2 * STEPS and not torch.equal(stats[0], first_pass[0])
    a, b = ranks[0][f"bn-{bn_stats}"], ranks[1][f"bn-{bn_stats}"]
    for p, q in zip(a["params"], b["params"]):
        assert torch.equal(p, q)
