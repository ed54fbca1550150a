"""LAMB (You et al. 2020): Adam's direction with a per-tensor trust ratio.

You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer, Hsieh. "Large Batch Optimization
for Deep Learning: Training BERT in 76 minutes", ICLR 2020, Algorithm 2. Per tensor x, step t:

    m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
    r = m / (1 − β1^t) / (sqrt(v / (1 − β2^t)) + ε) + λ·x
    x ← x − η_t · φ(‖x‖) / ‖r‖ · r,        φ(z) = min(z, c); the ratio is 1 when a norm is 0

c is ``max_trust_norm``: ``None`` (the default) applies no clamp, as the authors' TensorFlow code,
NVIDIA's and timm's LAMB do. A clamp binds on any weight whose norm exceeds c: c = 10 binds at init on
50 of Mosaic BERT-Base's 51 weight matrices (the word embedding's norm is 96.7), making their steps
smaller than LAMB's at the same LR, a hybrid no reference ran.

(torch_optimizer's ``Lamb``, which Composer installs, leaves the bias correction out of r, or
applies it outside the trust ratio with ``debias=True``: neither is the paper's update.)
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from efficient_bert.optim.foreach import ForeachOptimizer


class Lamb(ForeachOptimizer):
    def __init__(self, params, lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.01, max_trust_norm: Optional[float] = None):
        if not lr >= 0:
            raise ValueError(f"lr must be non-negative, got {lr}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      max_trust_norm=max_trust_norm))

    def update_group(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
        (beta1, beta2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        steps = [self.state[p]["step"] for p in params]  # per tensor: stacked layers join later
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
        denominators = torch._foreach_div(exp_avg_sqs, [1.0 - beta2 ** t for t in steps])
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, eps)
        updates = torch._foreach_div(exp_avgs, [1.0 - beta1 ** t for t in steps])
        torch._foreach_div_(updates, denominators)
        if wd:
            torch._foreach_add_(updates, params, alpha=wd)
        weight_norms = torch.stack(torch._foreach_norm(params))
        if group["max_trust_norm"] is not None:
            weight_norms = weight_norms.clamp(max=group["max_trust_norm"])
        update_norms = torch.stack(torch._foreach_norm(updates))
        trust = torch.where((weight_norms > 0) & (update_norms > 0), weight_norms / update_norms,
                            torch.ones_like(weight_norms))
        torch._foreach_mul_(updates, list(trust.unbind()))
        torch._foreach_add_(params, updates, alpha=-group["lr"])
