"""Sharpness-aware optimizers that wrap any torch.optim optimizer: SAM, ASAM, GSAM and VaSSO.

    import torch, vasso
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    opt = vasso.VaSSO(base, rho=0.1, theta=0.4, model=model)
    loss = opt.step(closure)   # closure: forward + backward, returns the loss

The package depends on torch only. See docs/optimizers.md.
"""

from vasso.asam import ASAM
from vasso.gsam import GSAM
from vasso.sam import SAM, SharpnessAware, lay_out_state_like_params
from vasso.vasso import VaSSO

__all__ = ["SAM", "ASAM", "GSAM", "VaSSO", "SharpnessAware", "lay_out_state_like_params"]
