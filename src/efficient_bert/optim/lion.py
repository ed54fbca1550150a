"""Lion (Chen et al. 2023), with decoupled weight decay.

Chen, Liang, Huang, Real, Wang, Pham, Dong, Luong, Hsieh, Lu, Le. "Symbolic Discovery of
Optimization Algorithms", NeurIPS 2023. Per step, with gradient g, momentum m, learning rate η_t
and weight decay λ:

    c = β1·m + (1 − β1)·g
    θ ← θ − η_t·(sign(c) + λ·θ)
    m ← β2·m + (1 − β2)·g

The paper recommends an LR 3-10x smaller and a weight decay 3-10x larger than AdamW's.
"""

from __future__ import annotations

from typing import Sequence

import torch

from efficient_bert.optim.foreach import ForeachOptimizer


class Lion(ForeachOptimizer):
    def __init__(self, params, lr: float = 1e-4, betas: Sequence[float] = (0.9, 0.99), weight_decay: float = 0.1):
        if not lr >= 0:
            raise ValueError(f"lr must be non-negative, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    def update_group(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        for p in params:
            if not self.state[p]:
                self.state[p]["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        if wd:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        update = torch._foreach_mul(exp_avgs, beta1)
        torch._foreach_add_(update, grads, alpha=1.0 - beta1)
        torch._foreach_sign_(update)
        torch._foreach_add_(params, update, alpha=-lr)
        torch._foreach_mul_(exp_avgs, beta2)
        torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta2)
