"""RHO-loss (Mindermann et al. 2022) for masked-language modelling, as a Composer algorithm.

Mindermann, Brauner, Razzak, Sharma, Kirsch, Xu, Höltgen, Gomez, Morisot, Farquhar, Gal.
"Prioritized Training on Points that are Learnable, Worth Learning, and Not Yet Learnt", ICML 2022.
Kaddour et al., "No Train No Gain", NeurIPS 2023 (the MLM setting).

The workflow has three steps:
1. Train an irreducible-loss (IL) model on held-out data with the normal trainer:
   ``convert_c4.py --holdout_fraction 0.2`` writes a ``holdout`` split, and
   ``yamls/methods/rho-il-model.yaml`` trains on it.
2. Record the IL model's loss on every training sample:
   ``efficient-bert extract-il --model IL_CHECKPOINT ...`` (:func:`extract_irreducible_losses`).
3. Train with :class:`RHOLoss`, which selects by reducible loss.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np
import torch
from composer.core import Algorithm, Event, State
from composer.loggers import Logger

from efficient_bert.algorithms.batch_selection import (DrawsCandidatePool, pool_and_train_rows,
                                                       refuse_row_counted_duration, score_pool, select_rows,
                                                       sequence_losses_from_logits, step_rows)
from efficient_bert.registries import ALGORITHMS

log = logging.getLogger(__name__)


class IrreducibleLosses:
    """Per-sample losses of the irreducible-loss model, looked up by the data layer's ``sample_id``.

    Stored as ``.npz`` with ``sample_id`` (int64), ``loss`` (float32) and ``meta`` (JSON: the model,
    data, split and masking that produced them).
    """

    def __init__(self, sample_ids: np.ndarray, losses: np.ndarray, meta: Optional[dict[str, Any]] = None,
                 path: Optional[Union[str, Path]] = None):
        sample_ids = np.asarray(sample_ids, dtype=np.int64)
        losses = np.asarray(losses, dtype=np.float32)
        if sample_ids.shape != losses.shape or sample_ids.ndim != 1:
            raise ValueError(f"sample_id and loss must be 1-D and the same length, got {sample_ids.shape} "
                             f"and {losses.shape}")
        if len(sample_ids) and sample_ids.min() < 0:
            raise ValueError("sample ids must be non-negative")
        self.meta = dict(meta or {})
        self.path = path
        self.table = np.full(int(sample_ids.max()) + 1 if len(sample_ids) else 0, np.nan, dtype=np.float32)
        self.table[sample_ids] = losses

    def __len__(self) -> int:
        return int(np.isfinite(self.table).sum())

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} exists; choose another output or remove it first")
        path.parent.mkdir(parents=True, exist_ok=True)
        ids = np.nonzero(np.isfinite(self.table))[0]
        with open(path, "wb") as f:  # a file object: np.savez would append .npz to a bare name
            np.savez(f, sample_id=ids.astype(np.int64), loss=self.table[ids], meta=np.array(json.dumps(self.meta)))
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "IrreducibleLosses":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no irreducible-loss file at {path}: write it with `efficient-bert extract-il "
                                    f"--model IL_MODEL ... --out {path}`")
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(data["sample_id"], data["loss"], json.loads(str(data["meta"])), path)
        except (KeyError, ValueError, OSError) as exc:
            raise ValueError(f"{path} is not an irreducible-loss file written by `efficient-bert extract-il` "
                             f"({exc})") from exc

    def missing(self, sample_ids: Iterable[int]) -> list[int]:
        ids = np.asarray(list(sample_ids), dtype=np.int64)
        inside = ids < len(self.table)
        found = np.zeros(len(ids), dtype=bool)
        found[inside] = np.isfinite(self.table[ids[inside]])
        return ids[~found].tolist()

    def lookup(self, sample_ids: torch.Tensor) -> torch.Tensor:
        """The losses of ``sample_ids``; a clear error when any id is not in the file."""
        ids = sample_ids.detach().cpu().numpy().astype(np.int64)
        missing = self.missing(ids)
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
            raise LookupError(f"sample id(s) {shown} have no irreducible loss in {self.path or 'the IL table'} "
                           f"({len(self)} samples, made from {self.meta.get('data', '?')} split "
                           f"{self.meta.get('split', '?')}): extract the losses for the data this run trains on")
        return torch.from_numpy(self.table[ids].copy())


@torch.no_grad()
def extract_irreducible_losses(model: torch.nn.Module, batches: Iterable[dict[str, Any]], device: torch.device,
                               meta: Optional[dict[str, Any]] = None, total: Optional[int] = None,
                               progress: bool = True) -> IrreducibleLosses:
    """Each sample's MLM loss under ``model`` (a ComposerModel), from batches carrying ``sample_id``."""
    from tqdm import tqdm

    model.eval().to(device)
    ids, losses = [], []
    bar = tqdm(total=total, desc="irreducible losses", unit=" samples", disable=not progress, dynamic_ncols=True)
    for batch in batches:
        if "sample_id" not in batch:
            raise ValueError("batches need a sample_id per row (StreamingTextDataset provides it)")
        on_device = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(on_device).logits
        losses.append(sequence_losses_from_logits(logits, on_device["labels"]).cpu())
        ids.append(batch["sample_id"].cpu())
        bar.update(len(batch["sample_id"]))
    bar.close()
    return IrreducibleLosses(torch.cat(ids).numpy(), torch.cat(losses).numpy(), meta)


def apply_rho_loss(pool: dict[str, Any], train_losses: torch.Tensor, irreducible: torch.Tensor,
                   train_rows: int) -> tuple[dict[str, Any], torch.Tensor]:
    """The ``train_rows`` rows of ``pool`` with the largest reducible loss (training loss minus
    irreducible loss), highest first; returns them and the reducible losses of the whole pool."""
    reducible = train_losses.float() - irreducible.float()
    top = torch.argsort(reducible, descending=True, stable=True)[:train_rows]
    return select_rows(pool, top.tolist()), reducible


@ALGORITHMS.register("rho_loss")
class RHOLoss(Algorithm, DrawsCandidatePool):
    """Train on the sequences whose loss the model can still reduce the most.

    Rule, every step: the dataloader's batch is a mega-batch of ``mega_batch_size`` candidates
    (default twice the trained batch, NoTrainNoGain's ratio: 3072 for 1536). A no-grad forward
    gives each candidate's training MLM loss (mean over its masked tokens); its reducible loss is
    that minus its irreducible loss (the IL model's loss on the same sample, from ``il_losses``,
    looked up by ``sample_id``); the ``train_batch_size`` candidates with the largest reducible
    loss are trained.

    Sizes are global; each rank selects from its own share. The scoring forward is an extra forward
    of the training budget (``budget.count_extra_forwards``). The IL losses were computed under a
    fixed masking and the training loss under this step's: their difference is a noisy estimate,
    as in NoTrainNoGain's MLM setting.
    """

    def __init__(self, train_batch_size: int, il_losses: Union[str, Path, IrreducibleLosses],
                 mega_batch_size: Optional[int] = None, score_batch_size: Optional[int] = None):
        self.train_batch_size = int(train_batch_size)
        self.pool_size = int(mega_batch_size) if mega_batch_size is not None else 2 * self.train_batch_size
        pool_and_train_rows(self.pool_size, self.train_batch_size, 1)  # checks the sizes
        self.il = il_losses if isinstance(il_losses, IrreducibleLosses) else IrreducibleLosses.load(il_losses)
        self.score_batch_size = score_batch_size

    def __repr__(self) -> str:
        return (f"RHOLoss(train_batch_size={self.train_batch_size}, mega_batch_size={self.pool_size}, "
                f"il_losses={str(self.il.path)!r})")

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.AFTER_DATALOADER)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.FIT_START:
            refuse_row_counted_duration(state, "RHO-loss")
            self._check_coverage(state)
            return
        _, train_rows = step_rows(state, self.pool_size, self.train_batch_size, "RHO-loss", "mega_batch_size")
        if "sample_id" not in state.batch:
            raise ValueError("RHO-loss needs a sample_id in every batch (StreamingTextDataset and MLMCollator "
                             "provide it); this dataloader's batches have none")
        irreducible = self.il.lookup(state.batch["sample_id"])
        train_losses = score_pool(state, self.score_batch_size)
        state.batch, reducible = apply_rho_loss(state.batch, train_losses, irreducible, train_rows)
        logger.log_metrics({"rho_loss/mean_reducible_selected": float(reducible.topk(train_rows).values.mean()),
                            "rho_loss/mean_reducible_pool": float(reducible.mean())})

    def _check_coverage(self, state: State) -> None:
        """Fail at the start, not hours in, when the IL file does not cover the training data."""
        dataset = getattr(state.train_dataloader, "dataset", None)
        num_samples = getattr(dataset, "num_samples", None)
        if isinstance(num_samples, int) and num_samples > 0:
            missing = self.il.missing(range(num_samples))
            if missing:
                raise LookupError(f"{len(missing)} of the {num_samples} training samples (ids {missing[:5]} ...) "
                                  f"have no irreducible loss in {self.il.path}: extract the losses for this training "
                                  "data")
