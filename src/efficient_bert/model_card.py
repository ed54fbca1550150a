"""The model card (``README.md``) of an HF export: what the model is, what it was trained on and for how
long, how good it is, how to load it, and the command that made it.

Rendered from facts the training run knows (:class:`TrainingFacts`); the fine-tuning suite adds its GLUE
table to the card of the export it fine-tuned (:func:`add_results`). No Composer here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from efficient_bert.files import write_text_atomically

CARD = "README.md"
RESULTS_BEGIN = "<!-- efficient-bert finetune results -->"
RESULTS_END = "<!-- end of finetune results -->"


@dataclass
class TrainingFacts:
    """What a run knows of itself when it exports."""

    command: str
    steps: int = 0
    tokens: int = 0
    samples: int = 0
    batch_size: Optional[int] = None
    max_seq_len: Optional[int] = None
    mlm_probability: Optional[float] = None
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    precision: Optional[str] = None
    algorithms: list[str] = field(default_factory=list)
    budget: Optional[dict[str, Any]] = None  # hours, clock, charged_hours
    data: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> its conversion.json (convert_c4.py)
    eval_loss: Optional[float] = None  # of the last evaluation, at step eval_step
    eval_step: Optional[int] = None
    masked_accuracy: Optional[float] = None
    unigram_floor: Optional[float] = None

    def take_evaluation(self, record: dict[str, Any]) -> None:
        """The figures of one evaluation, as ``EvalHistory`` records it (``eval_history.json``)."""
        self.eval_loss = record.get("eval/LanguageCrossEntropy")
        self.masked_accuracy = record.get("eval/MaskedAccuracy")
        self.unigram_floor = record.get("eval/UnigramEntropy")
        self.eval_step = record.get("batch")


def _architecture(model: Any) -> list[str]:
    c = model.config
    kind = c.model_type
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    lines = [f"- **{ARCHITECTURES.get(kind, kind)}**, {c.num_hidden_layers} layers, hidden size {c.hidden_size}, "
             f"{c.num_attention_heads} heads, feed-forward {c.intermediate_size}; "
             f"{total / 1e6:.1f}M parameters ({(total - embedding) / 1e6:.1f}M without the embeddings), "
             f"vocabulary {c.vocab_size}."]
    if kind == "mosaic_bert":
        lines.append(f"- ALiBi attention bias (no position embeddings), GeGLU feed-forward, "
                     f"{'pre' if c.prenorm else 'post'}-LN, {'with' if c.linear_bias else 'no'} linear biases.")
    elif kind == "modernbert":
        types = getattr(c, "layer_types", None)  # not a field of every transformers version's config
        where = f"in {types.count('full_attention')} of {c.num_hidden_layers} layers" if types else "in some layers"
        biases = "with" if c.attention_bias or c.mlp_bias or c.norm_bias else "no"
        lines.append(f"- Rotary positions, global attention {where} and local attention (window "
                     f"{c.local_attention}) in the others, GeGLU, pre-LN, {biases} biases in the encoder.")
    return lines


ARCHITECTURES = {"mosaic_bert": "Mosaic BERT", "bert": "BERT", "modernbert": "ModernBERT"}
LOADING = {
    "mosaic_bert": ("The modeling code is in this folder (plain PyTorch: SDPA with the ALiBi bias), so only torch "
                    "and transformers are needed:", ", trust_remote_code=True"),
    "bert": ("transformers' own BERT:", ""),
    "modernbert": ("transformers' own ModernBERT (no custom code):", ""),
}


def _number(value: Optional[float], fmt: str = ".4f") -> str:
    return "n/a" if value is None else format(value, fmt)


def render(model: Any, tokenizer: Any, facts: TrainingFacts) -> str:
    """The card's text for ``model`` (an HF model) trained as ``facts`` say."""
    kind = model.config.model_type
    intro, remote = LOADING.get(kind, ("", ""))
    lines = ["---", "library_name: transformers", "pipeline_tag: fill-mask",
             f"tags: [efficient-bert, {kind}, masked-lm]", "---", "",
             f"# {ARCHITECTURES.get(kind, kind)} pretrained from scratch with efficient-bert", "",
             "## Model", "", *_architecture(model)]
    if tokenizer is not None:
        lines.append(f"- Tokenizer: {type(tokenizer).__name__}, {len(tokenizer)} ids"
                     f"{', lowercased' if getattr(tokenizer, 'do_lower_case', False) else ''} (in this folder).")
    lines += ["", "## Training", ""]
    for split, info in facts.data.items():
        sources = ", ".join(Path(s).name for s in info.get("sources", [])[:8])
        more = f" and {len(info['sources']) - 8} more" if len(info.get("sources", [])) > 8 else ""
        lines.append(f"- **{split}** data: {info.get('documents', 0):,} documents, {info.get('tokens', 0):,} tokens "
                     f"in {info.get('rows', 0):,} rows of {info.get('concat_tokens') or 'up to ' + str(facts.max_seq_len)} "
                     f"tokens, from {sources}{more}.")
    trained = f"- Trained {facts.steps:,} steps, {facts.tokens:,} tokens ({facts.samples:,} rows)"
    if facts.batch_size:
        trained += f" of batch {facts.batch_size}"
    if facts.max_seq_len:
        trained += f", sequence length {facts.max_seq_len}"
    lines.append(trained + (f", {facts.mlm_probability:.0%} masking" if facts.mlm_probability else "") + ".")
    if facts.optimizer:
        lines.append(f"- Optimizer {facts.optimizer}, peak LR {_number(facts.lr, 'g')}"
                     + (f", precision {facts.precision}" if facts.precision else "")
                     + (f"; methods: {', '.join(facts.algorithms)}" if facts.algorithms else "") + ".")
    if facts.budget:
        b = facts.budget
        lines.append(f"- Budget: {b['hours']:g} hours on the {b['clock']} clock ({_number(b.get('charged_hours'))} "
                     f"hours charged).")
    lines += ["", "## Quality", ""]
    if facts.eval_loss is None:
        lines.append("No evaluation ran.")
    else:
        split = "validation" if "validation" in facts.data else "eval"
        gap = ""
        if facts.unigram_floor is not None:
            below = facts.unigram_floor - facts.eval_loss
            gap = f" (unigram floor {facts.unigram_floor:.4f}; {abs(below):.4f} nats {'below' if below > 0 else 'above'} it)"
        at = "" if facts.eval_step is None else f" at step {facts.eval_step:,}"
        lines.append(f"- Eval MLM loss on the {split} split{at}: **{facts.eval_loss:.4f}**{gap}; masked-token "
                     f"accuracy {_number(None if facts.masked_accuracy is None else 100 * facts.masked_accuracy, '.2f')}%.")
        lines.append("- The unigram floor is the loss of a model that knows only token frequencies: the distance "
                     "below it is what the model learned from context.")
    lines += ["", RESULTS_BEGIN, "No fine-tuning results yet: `efficient-bert finetune` adds them here.", RESULTS_END,
              "", "## Use", "", intro, "", "```python",
              "from transformers import AutoModelForMaskedLM, AutoTokenizer", "",
              'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
              f'model = AutoModelForMaskedLM.from_pretrained("path/to/this/folder"{remote})', "```", "",
              "## Reproduce", "", "```bash", facts.command, "```", ""]
    return "\n".join(lines)


def write(folder: str | Path, text: str) -> Path:
    path = Path(folder) / CARD
    path.write_text(text)
    return path


def add_results(folder: str | Path, markdown: str, command: str) -> bool:
    """Put fine-tuning results (``markdown``, made by ``command``) into the card in ``folder``, replacing
    earlier ones. False where the folder has no card of ours: a card written by someone else is left alone."""
    path = Path(folder) / CARD
    if not path.is_file():
        return False
    text = path.read_text()
    if RESULTS_BEGIN not in text or RESULTS_END not in text:
        return False
    body = re.sub(r"^# ", "## ", markdown.strip(), count=1)
    section = f"{RESULTS_BEGIN}\n{body}\n\n```bash\n{command}\n```\n{RESULTS_END}"
    start, end = text.index(RESULTS_BEGIN), text.index(RESULTS_END) + len(RESULTS_END)
    write_text_atomically(path, text[:start] + section + text[end:])  # the user's export: never half a card
    return True
