"""The reference clock's price list: what one training step costs on the reference system.

NoTrainNoGain (Kaddour et al. 2023) counts a budget in Reference System Time by charging every step
a time read from a table measured once on its reference GPU, indexed by the number of encoder layers
that run, and the forward passes that only choose data at a forward-only price. Nothing measured
during the run enters the count, so two runs of one config train exactly the same steps, on any
machine. A :class:`CostTable` holds such prices for one model at ``rows`` full rows of ``seq_len``
tokens per pass, for every number of running layers ``k``:

- ``train[k-1]``: seconds of one training step: forward, backward and an AdamW step;
- ``forward[k-1]``: seconds of one forward pass without gradients.

A pass over ``r`` rows with ``k`` layers running costs ``train[k-1] * r / rows`` (training) or
``forward[k-1] * r / rows`` (forward only). A step is charged its training pass over the rows it
trains, plus each extra pass made in it: the forward-only scoring of candidate rows (selective
backprop, RHO-loss) and the forward and backward of a curvature estimate (Sophia's Hessian, charged
as a training pass), each at the layers running when it ran. Rows are summed over processes, so a
budget buys the same training on one GPU or eight.

The training prices include the step of ``optimizer`` (AdamW). Another optimizer's step costs what it
costs: ``optimizer_steps`` holds each optimizer's step over the whole model in reference seconds, and
a step of that optimizer is charged the difference to AdamW's (:meth:`CostTable.step_surcharge`). So
Adafactor and LAMB, slower per step than AdamW, buy fewer steps at equal budget; NoTrainNoGain
charged every optimizer AdamW's price, which gives a slower optimizer its extra time for free.

Measure a table with ``efficient-bert calibrate --cost-table`` (:mod:`.calibrate`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from efficient_bert.model.layer_plan import find_encoder_layers

# the model config entries a table must match
SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size")


def model_shape(model: nn.Module) -> dict[str, Any]:
    """The ``SHAPE_KEYS`` of a model (HF, or in a Composer model), its layers counted in its layer list."""
    root, owner, attribute = find_encoder_layers(model)
    config = getattr(root, "config", None)
    return {**{key: getattr(config, key, None) for key in SHAPE_KEYS},
            "num_hidden_layers": len(owner._modules[attribute])}


@dataclass(frozen=True)
class CostTable:
    """Seconds per pass of ``rows`` rows of ``seq_len`` tokens, by running layers; see the module docstring."""

    model: dict[str, Any]  # SHAPE_KEYS of the model it was measured on
    seq_len: int
    rows: int
    train: tuple[float, ...]
    forward: tuple[float, ...]
    measured_on: dict[str, Any] = field(default_factory=dict)  # device, torch, steps: for the record only
    optimizer: str = "AdamW"  # the class whose step the training prices include
    optimizer_steps: dict[str, float] = field(default_factory=dict)  # class name -> reference s of one step

    def __post_init__(self):
        layers = self.model.get("num_hidden_layers")
        if not (isinstance(layers, int) and layers > 0 and len(self.train) == len(self.forward) == layers):
            raise ValueError(f"a cost table has one train and one forward price per layer count (1..{layers}); "
                             f"this one has {len(self.train)} and {len(self.forward)}")
        if not all(p > 0 for p in (*self.train, *self.forward)) or self.rows <= 0 or self.seq_len <= 0:
            raise ValueError("cost table prices, rows and seq_len must be positive")

    @property
    def num_layers(self) -> int:
        return len(self.train)

    def price(self, layers: int, rows: int, backward: bool = True) -> float:
        """Seconds of a pass over ``rows`` rows (all processes') with ``layers`` layers running: a
        training pass, or with ``backward=False`` a forward pass without gradients."""
        if not 1 <= layers <= self.num_layers:
            raise ValueError(f"{layers} running layers is outside this cost table's 1..{self.num_layers}")
        return (self.train if backward else self.forward)[layers - 1] * rows / self.rows

    def step_surcharge(self, optimizer: str) -> float:
        """Reference seconds a step of the ``optimizer`` class costs beyond the table's own optimizer's."""
        if optimizer == self.optimizer:
            return 0.0
        if optimizer not in self.optimizer_steps or self.optimizer not in self.optimizer_steps:
            priced = ", ".join(sorted({self.optimizer, *self.optimizer_steps}))
            raise ValueError(f"the cost table prices the steps of {priced}, not {optimizer}: measure them with "
                             "`efficient-bert calibrate --optimizer-steps --table <this table>`")
        return self.optimizer_steps[optimizer] - self.optimizer_steps[self.optimizer]

    def check_model(self, model: nn.Module, seq_len: int) -> None:
        """Refuse a model or sequence length the table was not measured for."""
        shape = model_shape(model)
        if shape != self.model:
            differ = ", ".join(f"{k} {self.model.get(k)} (model: {shape[k]})" for k in SHAPE_KEYS
                               if shape[k] != self.model.get(k))
            raise ValueError(f"the cost table was measured for another model: {differ}; measure one for this "
                             "model with `efficient-bert calibrate --cost-table`")
        if seq_len != self.seq_len:
            raise ValueError(f"the cost table prices rows of {self.seq_len} tokens and this run's rows have "
                             f"{seq_len}; measure one with `efficient-bert calibrate --cost-table --seq {seq_len}`")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def load(cls, path: str | Path) -> "CostTable":
        """Read a table written by ``calibrate --cost-table``, with a clear error when it is missing or malformed."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no cost table at {path}; measure one with "
                                    f"`efficient-bert calibrate --cost-table --out {path}`")
        try:
            raw = json.loads(path.read_text())
            return cls(model=dict(raw["model"]), seq_len=int(raw["seq_len"]), rows=int(raw["rows"]),
                       train=tuple(float(p) for p in raw["train"]), forward=tuple(float(p) for p in raw["forward"]),
                       measured_on=dict(raw.get("measured_on", {})), optimizer=str(raw.get("optimizer", "AdamW")),
                       optimizer_steps={k: float(v) for k, v in raw.get("optimizer_steps", {}).items()})
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a cost table ({exc}); write it again with "
                             "`efficient-bert calibrate --cost-table`") from exc
