"""DataLoader for MLM pretraining over MDS shards, wrapped as a Composer ``DataSpec``."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from composer.core import DataSpec
from torch.utils.data import DataLoader

from efficient_bert.data.mlm_collator import MLMCollator
from efficient_bert.data.text_dataset import StreamingTextDataset


def real_tokens(batch: Mapping[str, Any]) -> int:
    """Non-pad tokens in a batch: what throughput figures count."""
    if "seq_lengths" in batch:  # the collator's host-side count: no device read
        return sum(batch["seq_lengths"])
    return int(batch["attention_mask"].sum())


def packed_documents(batch: Mapping[str, Any]) -> int:
    """Documents in a batch of packed rows: the samples Composer counts (and resumes the stream by)."""
    return sum(len(row) for row in batch["document_lengths"])


def stop_workers(loader: DataLoader) -> None:
    """Stop a loader's persistent worker processes now, telling each one to stop before joining it.

    Left to the exit handlers, torch 2.11 joins each persistent worker without telling it to stop
    and kills it after a 5 s timeout (pytorch/pytorch#81794): 40 s for a run's 8 train workers.
    The iterator is private API; a loader without one (no workers, or never iterated) is left as it is."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
        loader._iterator = None


def build_mlm_dataloader(tokenizer: Any, device_batch_size: int, *, local: str, remote: Optional[str] = None,
                         split: str = "train", shuffle: bool = True, shuffle_seed: int = 9176,
                         mlm_probability: float = 0.30, mask_seed: int = 0, vary_masks_by_epoch: bool = True,
                         max_seq_len: int = 128, num_workers: int = 2,
                         drop_last: bool = True, pin_memory: bool = True, prefetch_factor: Optional[int] = 2,
                         persistent_workers: bool = True, timeout: float = 0, pack: bool = False,
                         **streaming_kwargs: Any) -> DataSpec:
    """A shuffled, dynamically masked MLM DataLoader over ``local``/``remote`` MDS shards.

    Masks are a function of ``(mask_seed, epoch, sample_id)`` (:class:`MLMCollator`); with
    ``vary_masks_by_epoch=False`` every pass masks a sample the same way (evaluation). With
    ``pack``, each batch's ``device_batch_size`` documents are packed into rows of ``max_seq_len``
    tokens (:meth:`MLMCollator.packed`), and a sample is a document."""
    dataset = StreamingTextDataset(tokenizer, max_seq_len, local=local, remote=remote, split=split,
                                   shuffle=shuffle, shuffle_seed=shuffle_seed, batch_size=device_batch_size,
                                   **{k: v for k, v in streaming_kwargs.items() if v is not None})
    workers = num_workers > 0
    loader = DataLoader(dataset, batch_size=device_batch_size,
                        collate_fn=MLMCollator(tokenizer, mlm_probability, seed=mask_seed,
                                               vary_by_epoch=vary_masks_by_epoch, pack_to=max_seq_len if pack else None),
                        num_workers=num_workers, drop_last=drop_last, pin_memory=pin_memory,
                        prefetch_factor=prefetch_factor if workers else None,
                        persistent_workers=persistent_workers and workers, timeout=timeout)
    if pack:
        return DataSpec(loader, get_num_tokens_in_batch=real_tokens, get_num_samples_in_batch=packed_documents)
    return DataSpec(loader, get_num_tokens_in_batch=real_tokens)
