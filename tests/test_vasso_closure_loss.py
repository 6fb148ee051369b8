"""`opt.step(closure)` returns the first-pass loss detached, as a user reads it: `float(loss)`."""

from __future__ import annotations

import warnings

import pytest
import torch

import vasso


@pytest.mark.parametrize("method", [vasso.SAM, vasso.ASAM, vasso.GSAM, vasso.VaSSO])
def test_step_returns_the_first_pass_loss_detached(method):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    opt = method(torch.optim.SGD(model.parameters(), lr=0.1), model=model)
    first = []

    def closure():
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        first.append(loss.item())
        return loss

    loss = opt.step(closure)
    assert not loss.requires_grad and loss.grad_fn is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when a tensor that requires grad becomes a float
        value = float(loss)
    assert len(first) == 2 and value == first[0]  # the loss at w, not at w + e
