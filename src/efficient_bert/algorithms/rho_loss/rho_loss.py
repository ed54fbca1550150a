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
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import torch
from composer.core import Algorithm, Event, State
from composer.loggers import Logger

from efficient_bert.algorithms.batch_selection import (DrawsCandidatePool, pool_and_train_rows, score_pool,
                                                       select_rows, sequence_losses_from_logits, step_rows,
                                                       trained_samples_to_batches)

log = logging.getLogger(__name__)


class IrreducibleLosses:
    """Per-sample losses of the irreducible-loss model, looked up by the data layer's ``sample_id``
    and the epoch.

    A sample's MLM loss depends on its mask, and a training run masks each sample afresh every epoch
    (``(mask_seed, epoch, sample_id)``, :class:`~efficient_bert.data.MLMCollator`). So the losses are
    kept per epoch: ``losses[e]`` under the masks the run draws in epoch ``e``, for the epochs the
    file covers; a later epoch gets each sample's mean over them, its expected loss under a random
    mask. Stored as ``.npz`` with ``sample_id`` (int64), ``loss`` (float32, epochs x samples) and
    ``meta`` (JSON: the model, data, split, ``mask_seed`` and ``mlm_probability`` that produced them).
    """

    def __init__(self, sample_ids: np.ndarray, losses: np.ndarray, meta: Optional[dict[str, Any]] = None,
                 path: Optional[Union[str, Path]] = None):
        sample_ids = np.asarray(sample_ids, dtype=np.int64)
        losses = np.asarray(losses, dtype=np.float32)
        losses = losses[None] if losses.ndim == 1 else losses
        if sample_ids.ndim != 1 or losses.ndim != 2 or losses.shape[1] != len(sample_ids):
            raise ValueError(f"sample_id must be 1-D and loss (epochs, samples) of the same length, got "
                             f"{sample_ids.shape} and {losses.shape}")
        if len(sample_ids) and sample_ids.min() < 0:
            raise ValueError("sample ids must be non-negative")
        self.meta = dict(meta or {})
        self.path = path
        self.table = np.full((len(losses), int(sample_ids.max()) + 1 if len(sample_ids) else 0), np.nan,
                             dtype=np.float32)
        self.table[:, sample_ids] = losses

    @property
    def epochs(self) -> int:
        return len(self.table)

    def __len__(self) -> int:
        return int(np.isfinite(self.table[0]).sum())

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} exists; choose another output or remove it first")
        path.parent.mkdir(parents=True, exist_ok=True)
        ids = np.nonzero(np.isfinite(self.table[0]))[0]
        with open(path, "wb") as f:  # a file object: np.savez would append .npz to a bare name
            np.savez(f, sample_id=ids.astype(np.int64), loss=self.table[:, ids], meta=np.array(json.dumps(self.meta)))
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

    @classmethod
    def of_epochs(cls, epochs: Sequence["IrreducibleLosses"], meta: Optional[dict[str, Any]] = None
                  ) -> "IrreducibleLosses":
        """One file from single-epoch losses of the same samples, in epoch order."""
        ids = np.nonzero(np.isfinite(epochs[0].table[0]))[0]
        if any(e.missing(ids) or len(e) != len(ids) for e in epochs):
            raise ValueError("every epoch's losses must cover the same samples")
        return cls(ids, np.stack([e.table[0, ids] for e in epochs]), meta)

    def missing(self, sample_ids: Iterable[int]) -> list[int]:
        ids = np.asarray(list(sample_ids), dtype=np.int64)
        inside = ids < self.table.shape[1]
        found = np.zeros(len(ids), dtype=bool)
        found[inside] = np.isfinite(self.table[0, ids[inside]])
        return ids[~found].tolist()

    def lookup(self, sample_ids: torch.Tensor, epoch: int = 0) -> torch.Tensor:
        """The losses of ``sample_ids`` under epoch ``epoch``'s masks (beyond the file's epochs, their
        mean over them); a clear error when any id is not in the file."""
        ids = sample_ids.detach().cpu().numpy().astype(np.int64)
        missing = self.missing(ids)
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
            raise LookupError(f"sample id(s) {shown} have no irreducible loss in {self.path or 'the IL table'} "
                              f"({len(self)} samples, made from {self.meta.get('data', '?')} split "
                              f"{self.meta.get('split', '?')}): extract the losses for the data this run trains on")
        losses = self.table[epoch, ids] if epoch < self.epochs else self.table[:, ids].mean(axis=0)
        return torch.from_numpy(np.array(losses, dtype=np.float32))

    def check_masks(self, mask_seed: int, mlm_probability: float) -> None:
        """Refuse losses computed under other masks than the run's (an older file without the masking
        recorded is accepted)."""
        seed, probability = self.meta.get("mask_seed"), self.meta.get("mlm_probability")
        if seed is not None and (int(seed) != mask_seed or abs(float(probability) - mlm_probability) > 1e-9):
            raise ValueError(f"{self.path or 'the irreducible losses'} were computed under the masks of seed {seed} "
                             f"at {probability} and this run masks with seed {mask_seed} at {mlm_probability}: "
                             f"extract them with `efficient-bert extract-il --seed {mask_seed} --mlm_probability "
                             f"{mlm_probability}`")


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
        # pinned batches copy asynchronously, and the losses come to the host once, at the end (the
        # per-row reduction still waits for the GPU once a batch: it counts each row's masked tokens)
        on_device = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(on_device).logits
        losses.append(sequence_losses_from_logits(logits, on_device["labels"]))
        ids.append(batch["sample_id"])
        bar.update(len(batch["sample_id"]))
    bar.close()
    return IrreducibleLosses(torch.cat(ids).numpy(), torch.cat(losses).cpu().numpy(), meta)


def apply_rho_loss(pool: dict[str, Any], train_losses: torch.Tensor, irreducible: torch.Tensor,
                   train_rows: int) -> tuple[dict[str, Any], torch.Tensor]:
    """The ``train_rows`` rows of ``pool`` with the largest reducible loss (training loss minus
    irreducible loss), highest first; returns them and the reducible losses of the whole pool."""
    reducible = train_losses.float() - irreducible.float()
    top = torch.argsort(reducible, descending=True, stable=True)[:train_rows]
    return select_rows(pool, top.tolist()), reducible


class RHOLoss(Algorithm, DrawsCandidatePool):
    """Train on the sequences whose loss the model can still reduce the most.

    Rule, every step: the dataloader's batch is a mega-batch of ``mega_batch_size`` candidates
    (default twice the trained batch, NoTrainNoGain's ratio: 3072 for 1536). A no-grad forward
    gives each candidate's training MLM loss (mean over its masked tokens); its reducible loss is
    that minus its irreducible loss (the IL model's loss on the same sample, from ``il_losses``,
    looked up by ``sample_id``); the ``train_batch_size`` candidates with the largest reducible
    loss are trained.

    Sizes are global; each rank selects from its own share. The scoring forward is an extra forward
    of the training budget (``budget.count_extra_forwards``) and runs in eval mode (no dropout), as
    the IL model's losses were computed; ``score_in_eval_mode=False`` scores in train mode. The IL
    loss of a candidate is the one under the same mask as its training loss, for the epochs the file
    covers (:class:`IrreducibleLosses`): the file must be extracted with the run's mask seed and
    masking rate, which the algorithm checks when training starts.
    """

    def __init__(self, train_batch_size: int, il_losses: Union[str, Path, IrreducibleLosses],
                 mega_batch_size: Optional[int] = None, score_batch_size: Optional[int] = None,
                 score_in_eval_mode: bool = True):
        self.train_batch_size = int(train_batch_size)
        self.pool_size = int(mega_batch_size) if mega_batch_size is not None else 2 * self.train_batch_size
        pool_and_train_rows(self.pool_size, self.train_batch_size, 1)  # checks the sizes
        self.il = il_losses if isinstance(il_losses, IrreducibleLosses) else IrreducibleLosses.load(il_losses)
        self.score_batch_size = score_batch_size
        self.score_in_eval_mode = score_in_eval_mode

    def __repr__(self) -> str:
        return (f"RHOLoss(train_batch_size={self.train_batch_size}, mega_batch_size={self.pool_size}, "
                f"il_losses={str(self.il.path)!r})")

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.AFTER_DATALOADER)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.FIT_START:
            trained_samples_to_batches(state, self.train_batch_size, "RHO-loss")
            self._check_coverage(state)
            collator = getattr(state.train_dataloader, "collate_fn", None)
            if hasattr(collator, "seed") and hasattr(collator, "mlm_probability"):
                self.il.check_masks(collator.seed, collator.mlm_probability)
            return
        _, train_rows = step_rows(state, self.pool_size, self.train_batch_size, "RHO-loss", "mega_batch_size")
        if "sample_id" not in state.batch:
            raise ValueError("RHO-loss needs a sample_id in every batch (StreamingTextDataset and MLMCollator "
                             "provide it); this dataloader's batches have none")
        irreducible = self.il.lookup(state.batch["sample_id"], int(state.timestamp.epoch))
        train_losses = score_pool(state, self.score_batch_size, self.score_in_eval_mode)
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
