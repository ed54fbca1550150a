"""Optimizers (decoupled AdamW, Lion, Sophia-G, LAMB, Adafactor) and their parameter grouping."""

from efficient_bert.optim.adafactor import Adafactor
from efficient_bert.optim.decoupled_adamw import decoupled_adamw
from efficient_bert.optim.lamb import Lamb
from efficient_bert.optim.lion import Lion
from efficient_bert.optim.param_groups import param_groups
from efficient_bert.optim.sophia import SophiaG

__all__ = ["Adafactor", "Lamb", "Lion", "SophiaG", "decoupled_adamw", "param_groups"]
