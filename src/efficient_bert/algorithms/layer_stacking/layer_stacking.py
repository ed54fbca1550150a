"""Progressive layer stacking (Gong et al. 2019) as a Composer algorithm.

Gong, He, Li, Qin, Wang, Liu. "Efficient Training of BERT by Progressively Stacking", ICML 2019.
Kaddour, Key, Nawrot, Minervini, Kusner. "No Train No Gain: Revisiting Efficient Training
Algorithms for Transformer-based Language Models", NeurIPS 2023 (the schedule used here).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Optional, Sequence

import torch
from composer.core import Event, State
from composer.loggers import Logger

from efficient_bert.algorithms.dynamic_depth import DynamicDepthAlgorithm
from efficient_bert.progress import run_progress
from efficient_bert.model.layer_plan import LayerPlan, attach_layer_plan

log = logging.getLogger(__name__)

OPTIMIZER_STATES = ("fresh", "copy", "reset")


def stacking_depths(target_depth: int, num_stackings: int, initial_depth: Optional[int] = None) -> list[int]:
    """The depth before and after each stacking: ``initial, 2·initial, ...``, the last being
    ``target_depth`` (each stacking doubles the depth, the last one up to the target)."""
    initial = initial_depth if initial_depth is not None else target_depth // 2 ** num_stackings
    depths = [initial]
    for _ in range(num_stackings):
        depths.append(min(2 * depths[-1], target_depth))
    if initial < 1 or depths[-1] != target_depth or len(set(depths)) != len(depths):
        raise ValueError(f"{num_stackings} doublings cannot grow {initial} layer(s) to the model's {target_depth}: "
                         f"choose initial_depth so that {num_stackings} doublings end at {target_depth}, or change "
                         f"the number of stacking points")
    return depths


def check_optimizer_state(optimizer_state: str) -> None:
    if optimizer_state not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer_state must be one of {', '.join(OPTIMIZER_STATES)}, got {optimizer_state!r}")


def _param_group_of(optimizer: torch.optim.Optimizer, param: torch.nn.Parameter) -> Optional[dict]:
    return next((g for g in optimizer.param_groups if any(p is param for p in g["params"])), None)


def apply_layer_stacking(model: torch.nn.Module, depth: int, optimizers: Iterable[torch.optim.Optimizer] = (),
                         optimizer_state: str = "fresh", layers_path: Optional[str] = None) -> LayerPlan:
    """Make ``model`` run its first ``depth`` encoder layers, stacking trained layers to grow.

    Growing from ``d`` to ``depth`` layers, new layer ``i`` (``d ≤ i < depth``) becomes a copy of
    layer ``i - d``: the trained stack is repeated on top of itself, as Gong et al. do. Parameters are
    matched by name; one the source lacks keeps its value (ModernBERT's first layer has no pre-attention
    norm, the embeddings' norm does its work, so a copy of it keeps its own norm at its last values). Shrinking
    (at the start of training) copies nothing. Each new parameter is in the optimizers (added to
    its source's parameter group if it was not) with, per ``optimizer_state``: ``fresh`` no state
    (default; what NoTrainNoGain ran, whose reset flag is never passed), ``copy`` a copy of its
    source's state, ``reset`` every parameter's state cleared. The parameters never change
    identity, so DDP and checkpoints hold the same set throughout; layers beyond ``depth`` simply
    do not run.
    """
    check_optimizer_state(optimizer_state)
    plan = attach_layer_plan(model, layers_path)
    current = plan.depth
    plan.set_depth(depth)
    if depth <= current:
        return plan
    optimizers = list(optimizers)
    with torch.no_grad():
        for i in range(current, depth):
            sources = dict(plan.layers[i % current].named_parameters())
            for name, new in plan.layers[i].named_parameters():
                src = sources.get(name)  # None: a parameter its source lacks keeps its value
                if src is not None:
                    if src.shape != new.shape:
                        raise ValueError(f"layer {i}'s {name} has shape {tuple(new.shape)} but layer {i % current}'s "
                                         f"has {tuple(src.shape)}: stacking copies layers of equal shapes only")
                    new.copy_(src)
                for opt in optimizers:
                    group = _param_group_of(opt, new)
                    if group is None:  # an optimizer built from the running layers only
                        group = None if src is None else _param_group_of(opt, src)
                        if group is None:
                            continue
                        group["params"].append(new)
                    opt.state.pop(new, None)
                    if optimizer_state == "copy" and src is not None and src in opt.state:
                        opt.state[new] = {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[src].items()}
    if optimizer_state == "reset":
        for opt in optimizers:
            opt.state.clear()
    return plan


class LayerStacking(DynamicDepthAlgorithm):
    """Progressive stacking: train a shallow encoder, then double its depth by copying the trained
    layers on top, at fixed fractions of the run, until the model's full depth.

    Schedule: with ``stack_at = (f_1, ..., f_n)`` and target depth ``L`` (the model's layer count),
    training starts with ``L / 2^n`` layers (or ``initial_depth``); the first batch whose progress
    reaches ``f_k`` first doubles the depth (layer ``i + d`` := layer ``i``). Progress is the
    fraction of the training budget used when the run has a
    :class:`~efficient_bert.budget.TrainingBudget`, otherwise the elapsed fraction of
    ``max_duration``. Defaults follow NoTrainNoGain: ``stack_at=(0.125, 0.3)``, so a 12-layer
    model runs 3 layers, then 6 from 12.5% of the budget, then 12 from 30%; new layers start with
    fresh optimizer state. The LR schedule is not touched.

    Evaluation, HF exports and Composer checkpoints see the current depth; a resumed run restores
    it. Works on any model whose layers :func:`~efficient_bert.model.layer_plan.find_encoder_layers`
    finds (our Mosaic BERT and ModernBERT, HF BERT and ModernBERT; others through ``layers_path``).
    """

    events = (Event.BATCH_START,)

    def __init__(self, stack_at: Sequence[float] = (0.125, 0.3), initial_depth: Optional[int] = None,
                 optimizer_state: str = "fresh", layers_path: Optional[str] = None):
        stack_at = [float(f) for f in stack_at]
        if not stack_at or sorted(stack_at) != stack_at or not all(0.0 < f < 1.0 for f in stack_at):
            raise ValueError(f"stack_at must be increasing fractions in (0, 1), got {stack_at}")
        check_optimizer_state(optimizer_state)
        super().__init__(layers_path)
        self.stack_at = stack_at
        self.initial_depth = initial_depth
        self.optimizer_state = optimizer_state
        self.depths: list[int] = []
        self.stage = 0  # stackings done

    def __repr__(self) -> str:
        return (f"LayerStacking(stack_at={self.stack_at}, initial_depth={self.initial_depth}, "
                f"optimizer_state={self.optimizer_state!r})")

    def start(self, state: State) -> None:
        self.depths = stacking_depths(self._plan.total, len(self.stack_at), self.initial_depth)
        apply_layer_stacking(state.model, self.depths[self.stage], layers_path=self.layers_path)

    def step(self, event: Event, state: State, logger: Logger) -> None:
        progress = run_progress(state)
        grew = False
        while self.stage < len(self.stack_at) and progress >= self.stack_at[self.stage]:
            self.stage += 1
            apply_layer_stacking(state.model, self.depths[self.stage], state.optimizers, self.optimizer_state,
                                 self.layers_path)
            log.info("layer stacking: %d -> %d layers at %s (progress %.3f)", self.depths[self.stage - 1],
                     self.depths[self.stage], state.timestamp.batch, progress)
            grew = True
        if grew or int(state.timestamp.batch) == 0:
            logger.log_metrics({"layer_stacking/depth": self.depths[self.stage]})

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stage": self.stage}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = int(state["stage"])
        if self._plan is not None and self.depths:  # INIT ran: the model takes the saved depth now
            self._plan.set_depth(self.depths[self.stage])
