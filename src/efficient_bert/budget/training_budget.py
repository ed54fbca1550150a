"""A training budget in hours, counted in wall-clock time, in Reference System Time (RST), or in
reference seconds charged from a cost table.

Training time is what the budget counts: from the moment a batch is requested from the dataloader
(``BEFORE_DATALOADER``) to the end of its step (``BATCH_END``). Evaluation and checkpointing run
between ``BATCH_END`` and the next ``BEFORE_DATALOADER``, so they are never counted. Neither is
``torch.compile``'s work inside a step (tracing, Inductor, the lazy backward compile; timed by
dynamo's compile callbacks) unless ``count_compilation``: it depends on the compile cache, not on
the recipe, and a cold cache would otherwise eat a minute of a short budget. With several
processes, rank 0's count is broadcast after every step, so all ranks stop, schedule and export on
the same step.

Three clocks:

- ``wall``: training time on this machine.
- ``rst`` (Kaddour et al. 2023, "No Train No Gain"): time as the reference system would have spent
  it, approximated as every wall-clock second here being worth ``rst_factor`` reference seconds, the
  factor from ``efficient-bert calibrate`` on this machine. It still moves with machine noise,
  host and data-loading time.
- ``reference``: each step is charged its price from a :class:`~.cost_table.CostTable` measured once
  on the reference system, by running layers, trained rows and extra rows (NoTrainNoGain's own
  accounting). Nothing measured during the run enters it, so two runs of one config train exactly
  the same steps on any machine. The wall clock is still kept, for the record.

Extra passes made to choose data or curvature (selective backprop, RHO-loss, Sophia's Hessian) run
inside :func:`extra_forward` and count by default; with ``count_extra_forwards=False`` their time
(wall, rst) or price (reference) is left out (NoTrainNoGain's ablation).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Callable, Iterator, Mapping, Optional

import torch
from composer.core import Event, State
from composer.loggers import Logger
from composer.utils import dist

from efficient_bert.budget.cost_table import CostTable
from efficient_bert.data.mlm_collator import batch_rows
from efficient_bert.model.layer_plan import running_layer_count
from efficient_bert.progress import BudgetProgress
from efficient_bert.run_files import (BUDGET_COMPILE_SECONDS, BUDGET_FRACTION, BUDGET_REFERENCE_HOURS, BUDGET_RST_HOURS,
                                      BUDGET_WALL_HOURS)

log = logging.getLogger(__name__)

CLOCKS = ("wall", "rst", "reference")


class TrainingBudget(BudgetProgress):
    """Stop training when ``hours`` of training time are spent; expose the fraction used.

    Args:
        hours: the budget.
        clock: ``"wall"``, ``"rst"`` (needs ``rst_factor``) or ``"reference"`` (needs ``cost_table``).
        rst_factor: reference seconds per wall-clock second on this machine (see ``calibrate``).
        count_extra_forwards: whether the passes inside :func:`extra_forward` count.
        count_compilation: whether ``torch.compile`` time inside a step counts.
        timer: seconds from a monotonic clock; injectable for tests.
        cost_table: the prices the ``reference`` clock charges.
    """

    def __init__(self, hours: float, clock: str = "wall", rst_factor: Optional[float] = None,
                 count_extra_forwards: bool = True, count_compilation: bool = False,
                 timer: Callable[[], float] = time.monotonic, cost_table: Optional[CostTable] = None):
        if not hours > 0:
            raise ValueError(f"budget hours must be positive, got {hours}")
        if clock not in CLOCKS:
            raise ValueError(f"budget clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
        if clock == "rst" and not (rst_factor and rst_factor > 0):
            raise ValueError("an RST budget needs the machine's rst_factor: run `efficient-bert calibrate --out "
                             "FILE` and pass its file as budget.calibration")
        if clock == "reference" and cost_table is None:
            raise ValueError("the reference clock charges prices from a cost table: measure one with "
                             "`efficient-bert calibrate --cost-table` and pass its file as budget.cost_table")
        self.seconds = hours * 3600.0
        self.clock = clock
        self.rst_factor = rst_factor if rst_factor else 1.0
        self.cost_table = cost_table
        self.charged_seconds = 0.0  # reference seconds charged from the cost table
        self.count_extra_forwards = count_extra_forwards
        self.count_compilation = count_compilation
        self.timer = timer
        self.wall_seconds = 0.0  # training time spent, wall clock
        self.excluded_seconds = 0.0  # extra forwards not counted, wall clock
        self.last_step_seconds = 0.0  # budget seconds of the last step
        self.compile_seconds = 0.0  # torch.compile time inside steps, left out of wall_seconds
        self._resumed_at: Optional[float] = None
        self._pending_exclusion = 0.0
        self._compile_started: Optional[float] = None
        self._pending_compile = 0.0
        self._step_layers = 0  # running layers and rows of the step in progress (reference clock)
        self._step_rows = 0
        self._pending_charge = 0.0  # reference seconds of the step's extra passes
        self._step_surcharge = 0.0  # reference seconds the optimizer's step costs beyond the table's (reference clock)

    # --- what the budget has used --------------------------------------------------------------
    @property
    def rst_seconds(self) -> float:
        return (self.wall_seconds - self.excluded_seconds) * self.rst_factor

    @property
    def used_seconds(self) -> float:
        """Seconds counted against the budget, by its clock."""
        if self.clock == "reference":
            return self.charged_seconds
        return self.rst_seconds if self.clock == "rst" else self.wall_seconds - self.excluded_seconds

    @property
    def fraction(self) -> float:
        """Fraction of the budget used at the end of the last step (may exceed 1 by one step)."""
        return self.used_seconds / self.seconds

    def expected_fraction(self, steps_ahead: int = 1) -> float:
        """Fraction expected after ``steps_ahead`` more steps as long as the last one, capped at 1."""
        return min(1.0, (self.used_seconds + steps_ahead * self.last_step_seconds) / self.seconds)

    @property
    def spent(self) -> bool:
        return self.used_seconds >= self.seconds

    def exclude(self, seconds: float) -> None:
        """Take ``seconds`` of the current step off the count (extra forwards when they do not count)."""
        self._pending_exclusion += seconds

    def charge_extra(self, layers: int, rows: int, backward: bool) -> None:
        """Add a pass over ``rows`` rows of each process with ``layers`` layers running, forward-only
        or forward and backward, to the current step's price (reference clock)."""
        assert self.cost_table is not None
        self._pending_charge += self.cost_table.price(layers, rows * dist.get_world_size(), backward)

    # --- compilation, timed by dynamo's callbacks (outermost compile only) --------------------
    def _compile_start(self, _args: Any) -> None:
        if self._resumed_at is not None:  # inside a step; compiling for evaluation is never counted anyway
            self._compile_started = self.timer()

    def _compile_end(self, _args: Any) -> None:
        if self._compile_started is not None:
            self._pending_compile += self.timer() - self._compile_started
            self._compile_started = None

    def _watch_compilation(self, on: bool) -> None:
        from torch._dynamo.callback import callback_handler

        hooks = ((callback_handler.start_callbacks, self._compile_start),
                 (callback_handler.end_callbacks, self._compile_end))
        for registered, hook in hooks:
            if on and hook not in registered:
                registered.append(hook)
            elif not on and hook in registered:
                registered.remove(hook)

    # --- Composer events -----------------------------------------------------------------------
    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.BEFORE_DATALOADER:
            self._resumed_at = self.timer()
        elif event == Event.BATCH_START and self.cost_table is not None:
            # algorithms have run: the batch holds the rows this step trains, the plan its layers
            self._step_rows = _batch_rows(state.batch) * dist.get_world_size()
            self._step_layers = running_layer_count(state.model, training=True) or self.cost_table.num_layers
        elif event == Event.BATCH_END:
            self._account(state, logger)
        elif event == Event.FIT_START:
            if self.cost_table is not None and state.optimizers:
                self._step_surcharge = self.cost_table.step_surcharge(type(state.optimizers[0]).__name__)
            if not self.count_compilation:
                self._watch_compilation(True)
        elif event == Event.FIT_END:
            self._watch_compilation(False)

    def close(self, state: State, logger: Logger) -> None:
        self._watch_compilation(False)  # also when fit ended in an exception

    def _account(self, state: State, logger: Logger) -> None:
        now = self.timer()
        step = now - (self._resumed_at if self._resumed_at is not None else now)
        self._resumed_at = None
        compiling, self._pending_compile = self._pending_compile, 0.0
        step -= compiling
        self.compile_seconds += compiling
        before = self.used_seconds
        wall, excluded = self.wall_seconds + step, self.excluded_seconds + self._pending_exclusion
        self._pending_exclusion = 0.0
        if dist.get_world_size() > 1:  # every rank follows rank 0's clock
            synced = state.device.tensor_to_device(torch.tensor([wall, excluded], dtype=torch.float64))
            dist.broadcast(synced, src=0)
            wall, excluded = synced.tolist()
        self.wall_seconds, self.excluded_seconds = wall, excluded
        extra, self._pending_charge = self._pending_charge, 0.0
        if self.cost_table is not None:
            self.charged_seconds += self.cost_table.price(self._step_layers, self._step_rows) + extra + \
                self._step_surcharge
        self.last_step_seconds = self.used_seconds - before
        metrics = {BUDGET_FRACTION: self.fraction, BUDGET_WALL_HOURS: self.wall_seconds / 3600,
                   BUDGET_RST_HOURS: self.rst_seconds / 3600, BUDGET_COMPILE_SECONDS: self.compile_seconds}
        if self.cost_table is not None:
            metrics[BUDGET_REFERENCE_HOURS] = self.charged_seconds / 3600
        logger.log_metrics(metrics)
        if self.spent:
            lrs = [g["lr"] for opt in state.optimizers for g in opt.param_groups][:1]
            log.info("training budget of %.4g h (%s) spent after %s: stopping (LR now %s)", self.seconds / 3600,
                     self.clock, state.timestamp.batch, f"{lrs[0]:.3e}" if lrs else "n/a")
            state.stop_training()

    def state_dict(self) -> dict[str, Any]:
        return {"wall_seconds": self.wall_seconds, "excluded_seconds": self.excluded_seconds,
                "last_step_seconds": self.last_step_seconds, "compile_seconds": self.compile_seconds,
                "charged_seconds": self.charged_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wall_seconds = float(state["wall_seconds"])
        self.excluded_seconds = float(state["excluded_seconds"])
        self.last_step_seconds = float(state.get("last_step_seconds", 0.0))
        self.compile_seconds = float(state.get("compile_seconds", 0.0))
        self.charged_seconds = float(state.get("charged_seconds", 0.0))


def find_budget(state: State) -> Optional[TrainingBudget]:
    """The run's :class:`TrainingBudget` among the Trainer's callbacks, if any."""
    return next((cb for cb in state.callbacks if isinstance(cb, TrainingBudget)), None)


def _batch_rows(batch: Any) -> int:
    if isinstance(batch, Mapping) and torch.is_tensor(batch.get("input_ids")):
        return batch_rows(batch)
    raise ValueError("the reference clock prices rows of dict batches with input_ids; this batch is a "
                     f"{type(batch).__name__}: use budget.clock wall or rst")


@contextlib.contextmanager
def extra_forward(state: State, rows: Optional[int] = None, backward: bool = False) -> Iterator[None]:
    """Wrap a pass made only to select data (forward-only) or estimate curvature (``backward``) over
    ``rows`` rows of this process. When the run's budget does not count such passes, their time
    (GPU work included) is taken off the budget; when it does and its clock is ``reference``, their
    rows are charged at the cost table's prices."""
    budget = find_budget(state)
    if budget is not None and budget.cost_table is not None:
        if rows is None:
            raise ValueError("the reference clock prices extra passes by their rows: pass rows= to extra_forward")
        if budget.count_extra_forwards:
            budget.charge_extra(running_layer_count(state.model) or budget.cost_table.num_layers, rows, backward)
    if budget is None or budget.count_extra_forwards:
        yield
        return
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    start = budget.timer()
    try:
        yield
    finally:
        sync()
        budget.exclude(budget.timer() - start)
