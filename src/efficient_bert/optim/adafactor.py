"""Adafactor (Shazeer & Stern 2018) with its step size given either way: relative or absolute.

Shazeer, Stern. "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", ICML 2018. Per
step t, with gradient g, and no first moment (β1 = 0, the paper's memory-saving setting):

    β2_t = 1 − t^decay_rate                                    (decay_rate = −0.8)
    matrices:  R ← β2_t·R + (1 − β2_t)·mean_cols(g² + ε1),  C ← β2_t·C + (1 − β2_t)·mean_rows(g² + ε1)
               V̂ = (R / mean(R)) ⊗ C                         (the factored second moment)
    vectors:   V ← β2_t·V + (1 − β2_t)·(g² + ε1),  V̂ = V
    u = g / sqrt(V̂);   u ← u / max(1, RMS(u) / d)           (update clipping, d = clip_threshold)
    θ ← θ − α_t·λ·θ − α_t·u

The step size α_t, by ``mode``:
- ``relative`` (the paper's): α_t = min(lr, 1/√t) · max(ε2, RMS(θ)): ``lr`` caps a step relative
  to the weights' scale (default 1e-2, the paper's). HF's ``relative_step=True,
  scale_parameter=True``; PyTorch's ``torch.optim.Adafactor`` computes the same.
- ``absolute``: α_t = lr, a learning rate as for Adam, which the LR schedule scales. HF's
  ``relative_step=False, scale_parameter=False``: the setting of NoTrainNoGain (lr 1e-3).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


MODES = ("relative", "absolute")


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.norm() / math.sqrt(x.numel())


class Adafactor(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-2, mode: str = "relative", decay_rate: float = -0.8,
                 eps: Sequence[float] = (1e-30, 1e-3), clip_threshold: float = 1.0, weight_decay: float = 0.0):
        if mode not in MODES:
            raise ValueError(f"Adafactor mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(params, dict(lr=lr, mode=mode, decay_rate=decay_rate, eps=tuple(eps),
                                      clip_threshold=clip_threshold, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            eps1, eps2 = group["eps"]
            for p in group["params"]:
                if p.grad is None:  # a layer that did not run this step is left alone
                    continue
                grad = p.grad.float()
                state = self.state[p]
                factored = grad.dim() >= 2
                if not state:
                    state["step"] = 0
                    if factored:
                        state["exp_avg_sq_row"] = grad.new_zeros(grad.shape[:-1])
                        state["exp_avg_sq_col"] = grad.new_zeros(grad.shape[:-2] + grad.shape[-1:])
                    else:
                        state["exp_avg_sq"] = torch.zeros_like(grad)
                state["step"] += 1
                t = state["step"]
                weights = p.float() if p.dtype != torch.float32 else p
                if group["mode"] == "relative":
                    alpha = min(group["lr"], 1.0 / math.sqrt(t)) * max(eps2, float(_rms(weights)))
                else:
                    alpha = group["lr"]
                beta2 = 1.0 - t ** group["decay_rate"]
                squared = grad * grad + eps1
                if factored:
                    row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
                    row.mul_(beta2).add_(squared.mean(dim=-1), alpha=1.0 - beta2)
                    col.mul_(beta2).add_(squared.mean(dim=-2), alpha=1.0 - beta2)
                    row_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt().unsqueeze(-1)
                    update = row_factor * col.unsqueeze(-2).rsqrt() * grad
                else:
                    state["exp_avg_sq"].mul_(beta2).add_(squared, alpha=1.0 - beta2)
                    update = state["exp_avg_sq"].rsqrt().mul_(grad)
                update.div_((_rms(update) / group["clip_threshold"]).clamp_(min=1.0))
                if group["weight_decay"]:
                    weights.add_(weights, alpha=-group["weight_decay"] * alpha)
                weights.add_(update, alpha=-alpha)
                if weights is not p:
                    p.copy_(weights)
        return loss
