"""Composer's LR schedulers, by name. Their times are Composer time strings (``t_warmup: 0.06dur``,
``500ba``); the schedule over a training budget is :class:`efficient_bert.budget.BudgetSchedule`."""

from composer.optim import (ConstantScheduler, ConstantWithWarmupScheduler, CosineAnnealingWithWarmupScheduler,
                            LinearWithWarmupScheduler)

from efficient_bert.registries import SCHEDULERS

SCHEDULERS.register("constant", ConstantScheduler)
SCHEDULERS.register("constant_with_warmup", ConstantWithWarmupScheduler)
SCHEDULERS.register("linear_decay_with_warmup", LinearWithWarmupScheduler)
SCHEDULERS.register("cosine_decay_with_warmup", CosineAnnealingWithWarmupScheduler)
