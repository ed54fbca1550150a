"""The model card of an export: the facts of the run, and fine-tuning results added in place."""

from __future__ import annotations

import torch

from efficient_bert import model_card

FACTS = model_card.TrainingFacts(
    command="composer main.py yamls/pretrain/mosaic-bert-budget.yaml budget.hours=0.05", steps=1536,
    tokens=100_663_296, samples=786_432, batch_size=512, max_seq_len=128, mlm_probability=0.3,
    optimizer="decoupled_adamw", lr=1e-3, precision="amp_bf16", algorithms=["gradient_clipping"],
    budget={"hours": 0.05, "clock": "reference", "charged_hours": 0.050026},
    data={"train": {"documents": 8736, "rows": 251_992, "tokens": 32_255_103, "concat_tokens": 128,
                    "sources": ["/data/enwiki2015-train-00000.jsonl.zst"]}},
    eval_loss=3.2409, eval_step=1536, masked_accuracy=0.4486, unigram_floor=7.2067)


def test_the_card_states_what_a_reader_needs(tokenizer):
    from efficient_bert.model.mosaic_bert import MosaicBertConfig, MosaicBertForMaskedLM

    model = MosaicBertForMaskedLM(MosaicBertConfig(vocab_size=len(tokenizer), hidden_size=48, num_hidden_layers=2,
                                                   num_attention_heads=3, intermediate_size=80, prenorm=True))
    card = model_card.render(model, tokenizer, FACTS)
    params = sum(p.numel() for p in model.parameters())
    for fact in ("**Mosaic BERT**, 2 layers, hidden size 48, 3 heads, feed-forward 80",
                 f"{params / 1e6:.1f}M parameters", "ALiBi", "pre-LN", f"BertTokenizer, {len(tokenizer)} ids",
                 "8,736 documents, 32,255,103 tokens in 251,992 rows of 128 tokens, from enwiki2015-train-00000",
                 "Trained 1,536 steps, 100,663,296 tokens (786,432 rows) of batch 512",
                 "Budget: 0.05 hours on the reference clock (0.0500 hours charged)",
                 "eval split at step 1,536: **3.2409** (unigram floor 7.2067; 3.9658 nats below it)", "masked-token accuracy 44.86%",
                 'from_pretrained("path/to/this/folder", trust_remote_code=True)', FACTS.command):
        assert fact in card, fact
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: fill-mask\n")


def test_fine_tuning_results_replace_their_section_and_leave_other_cards_alone(tmp_path, tokenizer):
    torch.manual_seed(0)
    from efficient_bert.model.mosaic_bert import MosaicBertConfig, MosaicBertForMaskedLM

    model = MosaicBertForMaskedLM(MosaicBertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=64))
    path = model_card.write(tmp_path, model_card.render(model, tokenizer, FACTS))
    before = path.read_text()
    assert model_card.add_results(tmp_path, "# run: ckpt\n\n| task | score |\n| sst2 | 83.4 |\n", "efficient-bert finetune a")
    assert model_card.add_results(tmp_path, "# run: ckpt\n\n| task | score |\n| sst2 | 84.1 |\n", "efficient-bert finetune b")
    card = path.read_text()
    assert "| sst2 | 84.1 |" in card and "83.4" not in card and "finetune b" in card and "finetune a" not in card
    assert "## run: ckpt" in card and "No fine-tuning results yet" not in card
    outside = before.split(model_card.RESULTS_BEGIN)[0], before.split(model_card.RESULTS_END)[1]
    assert card.startswith(outside[0]) and card.endswith(outside[1])  # the rest of the card as it was

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "README.md").write_text("# someone else's card\n")
    assert not model_card.add_results(theirs, "# results\n", "cmd")
    assert (theirs / "README.md").read_text() == "# someone else's card\n"


def test_a_modernbert_card_says_how_its_layers_attend(tokenizer):
    from efficient_bert.model.modernbert import build_modernbert

    model = build_modernbert(tokenizer, size="tiny", global_attn_every_n_layers=2).model  # global, local, global
    card = model_card.render(model, tokenizer, FACTS)
    assert ("global attention in 2 of 3 layers and local attention (window 128) in the others, GeGLU, pre-LN, "
            "no biases in the encoder.") in card
    assert 'from_pretrained("path/to/this/folder")\n' in card  # transformers' own classes: no remote code
