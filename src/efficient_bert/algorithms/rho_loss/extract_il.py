"""``efficient-bert extract-il``: the irreducible-loss model's MLM loss on every training sample.

    efficient-bert extract-il --model runs/il/checkpoints/latest-rank0.pt --tokenizer runs/tok \\
        --data_local runs/mds --split train --out runs/il_losses.npz

The model is an HF export folder or a Composer checkpoint (ours or HF BERT). Samples are read in
order and masked as the RHO-loss run will mask them: with its mask seed (``--seed``, the run's seed
unless it sets ``train_loader.dataset.mask_seed``) and masking rate, in each of its first
``--epochs`` epochs; their losses are stored by ``sample_id`` and epoch for
:class:`~efficient_bert.algorithms.RHOLoss`. Each epoch costs one forward pass over the data.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="efficient-bert extract-il", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="IL model: HF export folder or Composer .pt checkpoint")
    p.add_argument("--tokenizer", required=True, help="the local tokenizer directory of the training run")
    p.add_argument("--data_local", required=True, help="MDS root of the training data")
    p.add_argument("--split", default="train")
    p.add_argument("--out", required=True, help="output .npz (never overwritten)")
    p.add_argument("--max_seq_len", type=int, default=128)
    p.add_argument("--mlm_probability", type=float, default=0.30)
    p.add_argument("--batch_size", type=int, default=1024)
    p.add_argument("--num_workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="processes reading and masking samples (0: in the main process)")
    p.add_argument("--seed", type=int, default=17, help="the training run's mask seed (default 17, the recipes' seed)")
    p.add_argument("--epochs", type=int, default=1, help="epochs of training masks to compute losses under")
    p.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    args = p.parse_args(argv)
    if Path(args.out).exists():
        print(f"error: {args.out} exists; choose another --out", file=sys.stderr)
        return 2

    import torch
    from torch.utils.data import DataLoader

    from efficient_bert.algorithms.rho_loss import IrreducibleLosses, extract_irreducible_losses
    from efficient_bert.data.mlm_collator import MLMCollator
    from efficient_bert.data.text_dataset import StreamingTextDataset
    from efficient_bert.data.tokenizer import load_tokenizer
    from efficient_bert.model.checkpoint import load_pretrained
    from efficient_bert.model.composer_mlm import ComposerMLM

    try:
        tokenizer = load_tokenizer(args.tokenizer)
        model = ComposerMLM(load_pretrained(args.model, "masked_lm"), tokenizer)
        dataset = StreamingTextDataset(tokenizer, args.max_seq_len, local=args.data_local, split=args.split,
                                       shuffle=False, batch_size=args.batch_size)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    collator = MLMCollator(tokenizer, args.mlm_probability, seed=args.seed)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    meta = {"model": str(args.model), "data": str(args.data_local), "split": args.split,
            "mlm_probability": args.mlm_probability, "mask_seed": args.seed, "epochs": args.epochs,
            "max_seq_len": args.max_seq_len}
    per_epoch = []
    with dataset:
        for epoch in range(args.epochs):
            def masked_as_in(examples, epoch=epoch):  # the masks the run draws in this epoch
                return collator([{**example, "epoch": epoch} for example in examples])

            loader = DataLoader(dataset, batch_size=args.batch_size, collate_fn=masked_as_in,
                                num_workers=args.num_workers, pin_memory=device.type == "cuda")
            per_epoch.append(extract_irreducible_losses(model, loader, device, total=dataset.num_samples))
    losses = IrreducibleLosses.of_epochs(per_epoch, meta)
    losses.save(args.out)
    print(f"[efficient-bert] irreducible losses of {len(losses)} samples under {args.epochs} epoch(s) of masks "
          f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
