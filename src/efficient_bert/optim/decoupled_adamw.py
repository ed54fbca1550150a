"""AdamW with fully decoupled weight decay, on PyTorch's fused kernel.

Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019; the form of Composer's
``DecoupledAdamW`` (the Mosaic BERT recipe): each step shrinks the weights by
``1 − wd · lr_t / lr_0``, so the decay follows the LR *schedule* but not the LR's size (``wd``
means the same at any learning rate). PyTorch's AdamW shrinks by ``1 − lr_t · wd'``; with
``wd' = wd / lr_0`` the two updates are identical, and PyTorch's fused kernel does the whole step
in a few launches where Composer's per-parameter loop launches several kernels per tensor (a large
share of a BERT-base step: docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence, Union

import torch


Params = Union[Iterable[torch.nn.Parameter], Iterable[dict[str, Any]]]


def decoupled_adamw(params: Params, lr: float, betas: Sequence[float] = (0.9, 0.98), eps: float = 1e-6,
                    weight_decay: float = 1e-5, fused: bool = True) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` computing Composer's ``DecoupledAdamW`` update (see the module doc).

    ``weight_decay`` (per group too) is the decoupled decay; each group's is divided by ``lr``, the
    LR at construction, which the LR schedule then scales.
    """
    if not lr > 0:
        raise ValueError(f"decoupled_adamw needs a positive lr, got {lr}")
    params = list(params)
    groups = params if params and isinstance(params[0], dict) else [{"params": params}]
    groups = [{**g, "weight_decay": g.get("weight_decay", weight_decay) / lr} for g in groups]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay / lr,
                             fused=fused)
