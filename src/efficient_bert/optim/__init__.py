"""Optimizers (decoupled AdamW, Lion, Sophia-G, LAMB, Adafactor, PyTorch's AdamW), their parameter grouping,
and Composer's LR schedulers by name."""

import torch

from efficient_bert.optim.adafactor import Adafactor
from efficient_bert.optim.decoupled_adamw import decoupled_adamw
from efficient_bert.optim.lamb import Lamb
from efficient_bert.optim.lion import Lion
from efficient_bert.optim.param_groups import param_groups
from efficient_bert.optim import schedulers  # noqa: F401  (registers Composer's schedulers)
from efficient_bert.optim.sophia import SophiaG
from efficient_bert.registries import OPTIMIZERS

# PyTorch's own, with PyTorch's defaults (its decay is scaled by the LR)
OPTIMIZERS.register("adamw", torch.optim.AdamW)

__all__ = ["Adafactor", "Lamb", "Lion", "SophiaG", "decoupled_adamw", "param_groups"]
