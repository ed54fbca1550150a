"""Optimizers and their parameter grouping."""

from efficient_bert.optim.param_groups import param_groups

__all__ = ["param_groups"]
