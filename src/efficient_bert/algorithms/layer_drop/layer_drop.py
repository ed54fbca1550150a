"""Progressive layer dropping (Zhang & He 2020) as a Composer algorithm.

Zhang, He. "Accelerating Training of Transformer-Based Language Models with Progressive Layer
Dropping", NeurIPS 2020. Kaddour et al., "No Train No Gain", NeurIPS 2023 (γ per budget).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from composer.core import Event, State
from composer.loggers import Logger

from efficient_bert.algorithms.dynamic_depth import DynamicDepthAlgorithm
from efficient_bert.progress import run_progress
from efficient_bert.model.layer_plan import attach_layer_plan


def keep_probability(progress: float, theta_bar: float = 0.5, gamma: float = 100.0) -> float:
    """θ(t) = (1 − θ̄)·exp(−γ·t) + θ̄, with t the fraction of the run done: 1 at the start,
    decaying to θ̄."""
    return (1.0 - theta_bar) * math.exp(-gamma * progress) + theta_bar


def layer_keep_probabilities(theta: float, num_layers: int) -> list[float]:
    """p_l = 1 − (l / L)·(1 − θ) for layers l = 1..L: deeper layers are dropped more often."""
    return [1.0 - (l / num_layers) * (1.0 - theta) for l in range(1, num_layers + 1)]


def apply_layer_drop(model: torch.nn.Module, theta: float, generator: Optional[torch.Generator] = None,
                     layers_path: Optional[str] = None) -> frozenset[int]:
    """Choose the layers ``model``'s next training forward passes skip (each is the identity), one
    Bernoulli draw per running layer with keep probability p_l; returns the dropped indices.
    Evaluation (``model.eval()``) never drops. Call it again for the next step's draw."""
    plan = attach_layer_plan(model, layers_path)
    keep = torch.tensor(layer_keep_probabilities(theta, plan.depth), dtype=torch.float64)
    draws = torch.rand(plan.depth, generator=generator, dtype=torch.float64)
    plan.dropped = frozenset(int(i) for i in torch.nonzero(draws >= keep).flatten())
    return plan.dropped


class LayerDrop(DynamicDepthAlgorithm):
    """Progressive layer dropping: each training step skips encoder layers at random, more of them
    and deeper ones as training goes on.

    Schedule: at progress t in [0, 1] the global keep probability is θ(t) = (1 − θ̄)·e^(−γt) + θ̄
    and layer l of L (1-based) is kept with p_l = 1 − (l/L)(1 − θ(t)). Progress is the fraction of
    the training budget used when the run has a :class:`~efficient_bert.budget.TrainingBudget`,
    otherwise the elapsed fraction of ``max_duration``. Defaults θ̄ = 0.5 (the paper's) and γ = 100
    per run (NoTrainNoGain's γ = 100/T; Zhang & He's 0.001 per step is the same over 100k steps).
    L is the number of layers running (with :class:`LayerStacking`, the current depth).

    One draw per optimizer step, taken at ``BATCH_START`` from a generator seeded with the run's
    seed and the batch index: every microbatch and every rank makes the same decision, with no
    communication, and a resumed run repeats the same draws. A dropped layer is the identity;
    evaluation runs every layer.
    """

    events = (Event.BATCH_START, Event.BATCH_END)

    def __init__(self, theta_bar: float = 0.5, gamma: float = 100.0, layers_path: Optional[str] = None):
        if not 0.0 < theta_bar <= 1.0:
            raise ValueError(f"theta_bar (the final keep probability) must be in (0, 1], got {theta_bar}")
        if gamma < 0:
            raise ValueError(f"gamma must be non-negative, got {gamma}")
        super().__init__(layers_path)
        self.theta_bar, self.gamma = theta_bar, gamma
        self._generator = torch.Generator()

    def __repr__(self) -> str:
        return f"LayerDrop(theta_bar={self.theta_bar}, gamma={self.gamma})"

    def step(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.BATCH_END:  # nothing outside a training step sees a dropped layer
            self._plan.dropped = frozenset()
            return
        theta = keep_probability(run_progress(state), self.theta_bar, self.gamma)
        self._generator.manual_seed((state.rank_zero_seed * 1_000_003 + int(state.timestamp.batch)) % 2 ** 63)
        dropped = apply_layer_drop(state.model, theta, self._generator, self.layers_path)
        logger.log_metrics({"layer_drop/theta": theta, "layer_drop/running_layers": self._plan.depth - len(dropped)})
