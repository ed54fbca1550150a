"""Optimizer parameter groups: weight decay on matrices only."""

from __future__ import annotations

from typing import Any, Optional

import torch


def param_groups(model: torch.nn.Module, weight_decay: Optional[float] = None) -> list[dict[str, Any]]:
    """Two groups: weights of dimension >= 2 decay, biases and LayerNorm parameters (1-D) do not.

    Without ``weight_decay`` the decaying group takes the optimizer's own (its default or the one
    it is given); the other group's is 0 either way.

    Decaying LayerNorm gains and biases pulls them towards zero for no regularisation benefit
    (the convention of BERT, RoBERTa and Mosaic BERT's recipes).
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    decaying = {"params": decay} if weight_decay is None else {"params": decay, "weight_decay": weight_decay}
    groups = [decaying, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
