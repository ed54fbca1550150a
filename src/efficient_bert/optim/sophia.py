"""Sophia-G (Liu et al. 2023): a clipped, diagonal-Hessian-preconditioned update.

Liu, Li, Hall, Liang, Ma. "Sophia: A Scalable Stochastic Second-order Optimizer for Language Model
Pre-training", ICLR 2024. Per step, with gradient g, learning rate η_t:

    m ← β1·m + (1 − β1)·g
    θ ← θ − η_t·λ·θ                                   (decoupled weight decay)
    θ ← θ − η_t·clip(m / max(ρ·h, ε), 1)              (clip(z, 1) = max(min(z, 1), −1))

and every k steps (:class:`~efficient_bert.algorithms.SophiaHessian`) the Gauss-Newton-Bartlett
estimate: with labels ŷ sampled from the model's own predictions on a batch of B predicted tokens,
ĝ = ∇ mean CE(logits, ŷ) and

    h ← β2·h + (1 − β2)·B·ĝ⊙ĝ                         (:meth:`SophiaG.update_hessian`)

Until the first estimate h = 0, and every coordinate moves by ±η_t (a sign update).

Where this differs from the official code, on purpose: after n estimates the update divides by
ρ·h / (1 − β2^n), Adam's bias correction. The official code uses h as it is, which over its 100k-step
runs makes no difference; over a 3-minute budget (about 150 estimates at k = 10) h would reach only
1 − 0.99^150 ≈ 78% of its steady value, and the steps would stay a fifth too large throughout.
``bias_correction=False`` is the official update.
"""

from __future__ import annotations

from typing import Sequence

import torch

from efficient_bert.optim.foreach import ForeachOptimizer


class SophiaG(ForeachOptimizer):
    def __init__(self, params, lr: float = 1e-3, betas: Sequence[float] = (0.965, 0.99), rho: float = 0.04,
                 weight_decay: float = 0.1, eps: float = 1e-12, bias_correction: bool = True):
        if not lr >= 0:
            raise ValueError(f"lr must be non-negative, got {lr}")
        if not rho > 0:
            raise ValueError(f"rho must be positive, got {rho}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), rho=rho, weight_decay=weight_decay, eps=eps,
                                      bias_correction=bias_correction))

    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["hessian_updates"] = 0
        return state

    @torch.no_grad()
    def update_hessian(self, batch_tokens: float) -> int:
        """Fold the current gradients, those of the sampled-label loss averaged over
        ``batch_tokens`` predictions, into the Hessian EMA; returns how many tensors it updated."""
        updated = 0
        for group, params, grads in self.groups_with_grads():
            hessians = [self._state(p)["hessian"] for p in params]
            beta2 = group["betas"][1]
            torch._foreach_mul_(hessians, beta2)
            torch._foreach_addcmul_(hessians, grads, grads, value=(1.0 - beta2) * batch_tokens)
            for p in params:
                self.state[p]["hessian_updates"] = self.state[p].get("hessian_updates", 0) + 1
            updated += len(params)
        return updated

    @staticmethod
    def _curvatures(group: dict, states: list[dict], rho: float) -> list[torch.Tensor]:
        """ρ·h per tensor, bias-corrected per tensor: a layer that joins later (layer stacking) has had
        fewer estimates."""
        beta2 = group["betas"][1]
        return torch._foreach_mul([s["hessian"] for s in states],
                                  [rho / (1.0 - beta2 ** s["hessian_updates"]) if group.get("bias_correction", True)
                                   and s.get("hessian_updates", 0) else rho for s in states])

    @torch.no_grad()
    def win_rate(self, quantiles: Sequence[float] = (0.1, 0.5)) -> dict[str, float]:
        """How the next step will clip, over every coordinate with a Hessian estimate: ``win_rate``, the
        fraction whose step is not clipped (|m| < ρ·h, the official code's ``train/win_rate``, which it
        advises keeping between 0.1 and 0.5 by tuning ρ), and ``rho_for_win_rate_<q>`` for each q, the ρ
        that would give win rate q now (the q-quantile of |m| / h, from a histogram of its log10 in
        steps of 0.02, so within 5%). Empty before the first estimate."""
        bins, low, high = 1200, -12.0, 12.0
        histogram, unclipped, total = None, None, 0
        for group in self.param_groups:
            states = [self.state[p] for p in group["params"] if "hessian" in self.state.get(p, {})]
            if not states:
                continue
            momenta = [s["exp_avg"].abs().float() for s in states]
            curvatures = [c.float() for c in self._curvatures(group, states, 1.0)]
            for m, h in zip(momenta, curvatures):
                wins = (m < torch.clamp(h * group["rho"], min=group["eps"])).sum()
                ratio = torch.log10(m / h).nan_to_num_(nan=low, posinf=high, neginf=low).clamp_(low, high)
                counts = torch.histc(ratio, bins=bins, min=low, max=high)
                histogram = counts if histogram is None else histogram + counts
                unclipped = wins if unclipped is None else unclipped + wins
                total += m.numel()
        if histogram is None:
            return {}
        cumulative = torch.cumsum(histogram, 0).cpu()
        result = {"win_rate": float(unclipped) / total}
        for q in quantiles:
            upper = int(torch.searchsorted(cumulative, q * total))
            result[f"rho_for_win_rate_{q:g}"] = 10.0 ** (low + (min(upper, bins - 1) + 1) * (high - low) / bins)
        return result

    def update_group(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        states = [self._state(p) for p in params]
        exp_avgs = [s["exp_avg"] for s in states]
        lr, (beta1, _), rho, wd, eps = group["lr"], group["betas"], group["rho"], group["weight_decay"], group["eps"]
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
        if wd:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        scale = self._curvatures(group, states, rho)
        torch._foreach_clamp_min_(scale, eps)
        updates = torch._foreach_div(exp_avgs, scale)
        torch._foreach_clamp_min_(updates, -1.0)
        torch._foreach_clamp_max_(updates, 1.0)
        torch._foreach_add_(params, updates, alpha=-lr)
