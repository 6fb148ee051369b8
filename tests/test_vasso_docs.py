"""docs/optimizers.md: every example runs, in order, as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "optimizers.md"


def test_the_examples_in_docs_optimizers_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 8
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    opt, model = namespace["opt"], namespace["model"]
    assert opt.param_groups is opt.base.param_groups
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert namespace["scaler"].get_scale() > 0
