"""vasso/_reference.py: the plain per-tensor reference the classes are tested against
is itself checked here, from the equations, on numbers small enough to work by hand."""

from __future__ import annotations

import ast
import inspect

import pytest
import torch

import vasso
from vasso import _reference as R


def test_the_reference_is_plain_torch_sharing_no_code_with_the_fast_path():
    tree = ast.parse(inspect.getsource(R))
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not [a for a in attributes if a.startswith("_foreach")]
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not [m for m in imported if m.startswith("vasso")], imported
    for cls in (vasso.SAM, vasso.ASAM, vasso.GSAM, vasso.VaSSO):
        assert "vasso._reference" in cls.__doc__, f"{cls.__name__}'s docstring does not link it"


def test_sam_perturbation_has_norm_rho_along_g():
    g = [torch.tensor([3.0, 0.0], dtype=torch.float64), torch.tensor([[4.0]], dtype=torch.float64)]
    e = R.sam_perturbation(g, rho=0.5, eps=0.0)
    torch.testing.assert_close(e[0], torch.tensor([0.3, 0.0], dtype=torch.float64))  # 0.5 * 3 / 5
    torch.testing.assert_close(e[1], torch.tensor([[0.4]], dtype=torch.float64))
    assert float(R.global_norm(e)) == pytest.approx(0.5, abs=1e-15)


def test_asam_perturbation_scales_only_the_scaled_tensors():
    w = [torch.tensor([1.0, -3.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)]
    g = [torch.tensor([1.0, 1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)]
    e = R.asam_perturbation(w, g, [True, False], rho=1.0, eta=0.0, eps=0.0)
    # T = (1, 3) and 1: T g = (1, 3, 1), ||T g|| = sqrt(11); e = T^2 g / sqrt(11).
    root = 11 ** 0.5
    torch.testing.assert_close(e[0], torch.tensor([1.0, 9.0], dtype=torch.float64) / root)
    torch.testing.assert_close(e[1], torch.tensor([1.0], dtype=torch.float64) / root)


def test_gsam_radius_follows_the_lr_and_never_goes_negative():
    assert R.gsam_radius(0.1, 0.1, lr=0.3, lr_max=1.0, lr_min=0.0) == 0.1  # constant
    assert R.gsam_radius(0.1, 0.02, lr=0.5, lr_max=1.0, lr_min=0.0) == pytest.approx(0.06)
    assert R.gsam_radius(0.1, 0.02, lr=0.0, lr_max=1.0, lr_min=0.5) == 0.0  # warm-up: clamped
    assert float(R.gsam_radius(0.1, 0.02, lr=torch.tensor(0.0), lr_max=1.0, lr_min=0.5)) == 0.0


def test_gsam_direction_removes_alpha_times_the_orthogonal_part():
    g = [torch.tensor([1.0, 1.0], dtype=torch.float64)]
    g_p = [torch.tensor([2.0, 0.0], dtype=torch.float64)]
    # g_perp = g - (<g, g_p>/||g_p||^2) g_p = (1, 1) - 0.5 (2, 0) = (0, 1)
    [d] = R.gsam_direction(g, g_p, alpha=0.5, eps=0.0)
    torch.testing.assert_close(d, torch.tensor([2.0, -0.5], dtype=torch.float64))


def test_vasso_average_starts_at_g0_then_moves_by_theta():
    d = R.vasso_average(None, [torch.tensor([2.0])], theta=0.25)
    assert torch.equal(d[0], torch.tensor([2.0]))
    d = R.vasso_average(d, [torch.tensor([6.0])], theta=0.25)
    assert torch.equal(d[0], torch.tensor([3.0]))  # 0.75 * 2 + 0.25 * 6


def test_reference_step_counts_passes_and_reuses_the_last_perturbation():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    seen = []

    def closure():
        seen.append(w.detach().clone())
        loss = (w * w).sum() / 2  # gradient: w
        loss.backward()
        return loss

    ref = R.ReferenceStep([w], torch.optim.SGD([w], lr=0.0), "sam", rho=0.5, skip="reuse")
    ref.step(closure, ascend=True)
    ref.step(closure, ascend=False)
    e = 0.5 * torch.tensor([1.0, 2.0], dtype=torch.float64) / 5 ** 0.5
    assert ref.passes == 3 and len(seen) == 3
    torch.testing.assert_close(seen[1], seen[0] + e)  # the ascent's pass at w + e
    torch.testing.assert_close(seen[2], seen[0] + e)  # the reused step's one pass there too
    assert torch.equal(w.detach(), seen[0])  # lr 0: the weights are restored exactly
    with pytest.raises(ValueError, match="sam, asam, gsam or vasso"):
        R.ReferenceStep([w], torch.optim.SGD([w], lr=0.0), "adam", rho=0.1)
