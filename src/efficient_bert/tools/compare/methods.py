"""The rows a comparison can have: each method is the YAML layers it adds to the recipe, and ``a+b``
composes methods in one run."""

from __future__ import annotations

import argparse
from pathlib import Path

METHODS = {  # name -> the YAML layers (under yamls/) it adds to the recipe
    "baseline": (),
    "layer-stacking": ("methods/layer-stacking.yaml",),
    "layer-drop": ("methods/layer-drop.yaml",),
    "selective-backprop": ("methods/selective-backprop.yaml",),
    "rho-loss": ("methods/rho-loss.yaml",),
    "lion": ("methods/lion.yaml",),
    "sophiag": ("methods/sophiag.yaml",),
    "lamb": ("methods/lamb.yaml",),
    "adafactor": ("methods/adafactor.yaml",),
    "batch-size-warmup": ("methods/batch-size-warmup.yaml",),
}
BASELINE = "baseline"
# Kaddour et al., "No Train No Gain" (NeurIPS 2023), BERT and T5 at 6, 12 and 24 hours of a reference
# system: the six methods it studied gave no training, validation or downstream gain over a baseline
# whose learning rate decays fully within the budget. It did not study the others.
NO_TRAIN_NO_GAIN = {m: "no gain over a fully-decayed baseline" for m in
                    ("layer-stacking", "layer-drop", "selective-backprop", "rho-loss", "lion", "sophiag")}
RHO = "rho-loss"


def parse_method(text: str) -> str:
    """An argparse type: a method name, or several joined with '+'."""
    parts = text.split("+")
    unknown = [p for p in parts if p not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}, "
                                         "or join several with '+'")
    if BASELINE in parts and len(parts) > 1:
        raise argparse.ArgumentTypeError("baseline is the recipe alone: it does not compose")
    return text


def layers_of(method: str, yamls: str | Path) -> list[str]:
    return [str(Path(yamls) / layer) for part in method.split("+") for layer in METHODS[part]]


def uses_rho(method: str) -> bool:
    return RHO in method.split("+")
