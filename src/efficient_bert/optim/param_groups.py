"""Optimizer parameter groups: weight decay on matrices only."""

from __future__ import annotations

from typing import Any

import torch


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weights of dimension >= 2 decay, biases and LayerNorm parameters (1-D) do not.

    Decaying LayerNorm gains and biases pulls them towards zero for no regularisation benefit
    (the convention of BERT, RoBERTa and Mosaic BERT's recipes).
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
