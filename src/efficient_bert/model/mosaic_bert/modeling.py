"""Mosaic BERT: an unpadded BERT encoder with ALiBi and GeGLU feed-forward (Portes et al. 2023).

Padding is removed once after the embeddings; every linear layer, the GLU and LayerNorm work on
(total_tokens, hidden). In training the MLM head runs only at masked positions (sparse prediction).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput

from efficient_bert.kernels import (add_layer_norm, add_layer_norm_and_sum, cross_entropy, geglu, geglu_reference,
                                    triton_usable)
from efficient_bert.model.mosaic_bert.attention import (AttentionInputs, BackendPlan, attend, plan_backends,
                                                       prepare_attention)
from efficient_bert.model.mosaic_bert.configuration import MosaicBertConfig
from efficient_bert.model.mosaic_bert.padding import Unpadded, labelled_tokens, locate_tokens, pad
from efficient_bert.model.mosaic_bert.portable import add_to_export, modeling_mosaic_bert as portable
from efficient_bert.model.mosaic_bert.portable.modeling_mosaic_bert import sequence_classification_loss


@dataclass
class SparseMaskedLMOutput(MaskedLMOutput):
    """A masked-LM output whose ``logits`` are the labelled positions' only (sparse prediction), with
    ``labels``, theirs in the same order: metrics pair them without selecting the labelled positions
    of the batch again, a selection whose size the host would wait for."""

    labels: Optional[torch.Tensor] = None


def use_triton(kernels: str, device: torch.device) -> bool:
    """Whether the fused Triton kernels run on ``device`` (``auto``: whenever Triton can run there)."""
    if kernels == "torch":
        return False
    usable = triton_usable(device)
    if kernels == "triton" and not usable:
        raise RuntimeError("kernels: triton needs the triton package and a CUDA device; use kernels: auto")
    return usable


def layer_norm(norm: nn.LayerNorm, x: torch.Tensor, residual: Optional[torch.Tensor], fused: bool,
               dropout_p: float = 0.0) -> torch.Tensor:
    """``norm(dropout(x) + residual)``; fused, it runs in one low-precision Triton pass."""
    if fused:
        return add_layer_norm(x, norm.weight, norm.bias, norm.eps, residual, dropout_p)
    if dropout_p > 0:
        x = F.dropout(x, dropout_p)
    return norm(x if residual is None else x + residual)


def add_norm(norm: nn.LayerNorm, x: torch.Tensor, residual: torch.Tensor, fused: bool,
             dropout_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(norm(s), s)`` with ``s = dropout(x) + residual``: a pre-LN residual add and the norm that
    reads it; fused, one Triton pass."""
    if fused:
        return add_layer_norm_and_sum(x, norm.weight, norm.bias, norm.eps, residual, dropout_p)
    s = (F.dropout(x, dropout_p) if dropout_p > 0 else x) + residual
    return norm(s), s


def embed_tokens(ids: torch.Tensor, types: torch.Tensor, word_weight: torch.Tensor, type_weight: torch.Tensor,
                 padding_idx: Optional[int], norm_weight: torch.Tensor, norm_bias: torch.Tensor, eps: float,
                 dropout_p: float, fused: bool) -> torch.Tensor:
    """``dropout(norm(word[ids] + type[types]))`` over the packed tokens.

    With BERT's two token types the type embedding is a choice between two rows, whose gradient
    is two masked sums; a gather's backward would scatter every token onto those two rows."""
    x = F.embedding(ids, word_weight, padding_idx)
    if type_weight.shape[0] == 2:
        x = x + torch.where(types[:, None] == 1, type_weight[1], type_weight[0])
    else:
        x = x + F.embedding(types, type_weight)
    if fused:
        x = add_layer_norm(x, norm_weight, norm_bias, eps)
    else:
        x = F.layer_norm(x, x.shape[-1:], norm_weight, norm_bias, eps)
    return F.dropout(x, dropout_p)


@functools.cache
def _compiled_embed():
    # compiled, the gather, the type choice and the norm share kernels and the word embedding's gradient
    # skips eager's sort: 1017 us against 1118 us forward + backward at base size (bench/kernel_times.py)
    return torch.compile(embed_tokens, dynamic=True)


class Backends(NamedTuple):
    """What runs a model's forward on one device: the attention backends and whether the fused Triton
    kernels (LayerNorm, GeGLU, cross-entropy) do."""

    attention: BackendPlan
    fused_kernels: bool


def resolved_backends(cache: dict, device: torch.device, training: bool, attention: str, kernels: str,
                      dropout_p: float, head_dim: int, windowed: bool = False) -> Backends:
    """A model's :class:`Backends` for ``device`` and mode (attention dropout only in training), resolved
    on the first step there and kept in ``cache``."""
    key = (device, training)
    if key not in cache:
        plan = plan_backends(attention, device, dropout_p if training else 0.0, head_dim, windowed=windowed)
        cache[key] = Backends(plan, use_triton(kernels, device))
    return cache[key]


class MosaicBertLayer(portable.MosaicBertLayer):
    """The portable layer's parameters, run on packed tokens with our attention backends and kernels."""

    def attention(self, x: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        return self.attn_out(attend(self.qkv(x), self.heads, inputs, self.attention_dropout if self.training else 0.0))

    def mlp(self, x: torch.Tensor, fused: bool) -> torch.Tensor:
        glu = geglu if fused else geglu_reference
        return self.mlp_out(glu(self.gated(x), self.gated.bias))

    def forward(self, x: torch.Tensor, inputs: AttentionInputs, fused: bool = False,
                branch: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(x, branch)`` -> the same pair after this layer. Pre-LN, ``branch`` is the previous layer's
        MLP output, not yet added to the residual stream ``x``: the add runs fused into this layer's
        first norm, and this layer returns its own MLP output unadded (the encoder adds the last one
        in its final norm). Post-LN, ``branch`` is None in and out."""
        p = self.dropout.p if self.training else 0.0
        if self.prenorm:
            if branch is None:
                h = layer_norm(self.attn_norm, x, None, fused)
            else:
                h, x = add_norm(self.attn_norm, branch, x, fused, p)
            h, x = add_norm(self.mlp_norm, self.attention(h, inputs), x, fused, p)
            return x, self.mlp(h, fused)
        # post-LN: norm(x + dropout(branch)), the dropout fused into the norm's kernel
        x = layer_norm(self.attn_norm, self.attention(x, inputs), x, fused, p)
        return layer_norm(self.mlp_norm, self.mlp(x, fused), x, fused, p), None


class MosaicBertPreTrainedModel(portable.MosaicBertPreTrainedModel):
    config_class = MosaicBertConfig

    def fsdp_wrap_fn(self, module: nn.Module) -> bool:
        """Composer's FSDP hook: one shard unit per encoder layer, so that only one layer's full
        weights are gathered at a time."""
        return isinstance(module, MosaicBertLayer)

    def save_pretrained(self, save_directory, *args, is_main_process: bool = True, **kwargs) -> None:
        """HF's ``save_pretrained``, plus the portable modeling code and ``auto_map``: the folder loads with
        ``trust_remote_code=True`` where efficient_bert is not installed."""
        super().save_pretrained(save_directory, *args, is_main_process=is_main_process, **kwargs)
        if is_main_process:
            add_to_export(save_directory)


def compute_dtype(device: torch.device, fallback: torch.dtype) -> torch.dtype:
    """The dtype activations have inside the linear layers (autocast's, when it is on)."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return fallback


class MosaicBertModel(MosaicBertPreTrainedModel, portable.MosaicBertModel):
    """Embeddings (no learned positions: ALiBi carries position) and the unpadded encoder."""

    layer_class = MosaicBertLayer

    def __init__(self, config: MosaicBertConfig):
        super().__init__(config)
        self.compiled_embeddings = False
        self._resolved: dict[tuple[torch.device, bool], Backends] = {}

    def backends(self, device: torch.device) -> Backends:
        """The attention plan and whether the fused Triton kernels run, for ``device`` and the current mode."""
        c = self.config
        return resolved_backends(self._resolved, device, self.training, c.attention, c.kernels,
                                 c.attention_probs_dropout_prob, c.hidden_size // c.num_attention_heads)

    locate_tokens = staticmethod(locate_tokens)

    def encode(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
               token_type_ids: Optional[torch.Tensor] = None, info: Optional[Unpadded] = None
               ) -> tuple[torch.Tensor, AttentionInputs]:
        """Hidden states of the real tokens, (total_tokens, hidden), and where they sit."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if info is None:
            info = self.locate_tokens(input_ids, attention_mask)
        device = input_ids.device
        attention, fused = self.backends(device)
        dtype = compute_dtype(device, self.word_embeddings.weight.dtype)
        inputs = prepare_attention(attention.backend_for_batch(info.max_seqlen, dtype), info, self.config.num_attention_heads,
                                   device, dtype)
        flat_ids = input_ids.flatten()[info.indices]
        flat_types = token_type_ids.flatten()[info.indices]
        embed = _compiled_embed() if self.compiled_embeddings else embed_tokens
        norm = self.embedding_norm
        x = embed(flat_ids, flat_types, self.word_embeddings.weight, self.token_type_embeddings.weight,
                  self.word_embeddings.padding_idx, norm.weight, norm.bias, norm.eps,
                  self.embedding_dropout.p if self.training else 0.0, fused)
        branch = None
        for layer in self.layers:
            x, branch = layer(x, inputs, fused, branch)
        if self.config.prenorm and branch is None:  # no layer ran
            x = layer_norm(self.final_norm, x, None, fused)
        elif self.config.prenorm:  # the last layer's MLP output joins the residual stream in the final norm
            p = self.config.hidden_dropout_prob if self.training else 0.0
            x = layer_norm(self.final_norm, branch, x, fused, p)
        return x, inputs

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, seq_lengths: Optional[Sequence[int]] = None,
                document_lengths: Optional[Sequence[Sequence[int]]] = None, **_) -> BaseModelOutput:
        """Padded (batch, seq, hidden) hidden states (zeros at padding), for HF-style callers; packed
        rows (``document_lengths``, :func:`~efficient_bert.model.mosaic_bert.padding.locate`) attend
        within each document."""
        info = self.locate_tokens(input_ids, attention_mask, seq_lengths, document_lengths)
        x, inputs = self.encode(input_ids, attention_mask, token_type_ids, info)
        return BaseModelOutput(last_hidden_state=pad(x, inputs.info))

    def compile_layers(self, **compile_kwargs) -> None:
        """Compile each encoder layer in place (regional compilation): one graph serves every layer
        and every number of tokens, any subset of layers can run (layer dropping), and the state
        dict keeps its names. (Compiling the whole stack as one graph measured no faster.) The
        embeddings are compiled too, as one function shared by every model."""
        for layer in self.layers:
            layer.compile(**{"dynamic": True, **compile_kwargs})
        self.compiled_embeddings = True


class MosaicBertForMaskedLM(MosaicBertPreTrainedModel, portable.MosaicBertForMaskedLM):
    encoder_class = MosaicBertModel
    sparse_prediction = True  # the MLM head runs only on labelled tokens (FLOP counting reads this)

    def compile_regions(self, **compile_kwargs) -> None:
        """``torch.compile`` the layers and the head; unpadding and the attention setup stay eager."""
        self.bert.compile_layers(**compile_kwargs)
        self.head.compile(**{"dynamic": True, **compile_kwargs})

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                seq_lengths: Optional[Sequence[int]] = None, masked_counts: Optional[Sequence[int]] = None,
                document_lengths: Optional[Sequence[Sequence[int]]] = None, **_) -> MaskedLMOutput:
        """With ``labels``, logits are computed only at labelled (masked) positions: shape
        (n_masked, vocab), returned with their labels (:class:`SparseMaskedLMOutput`); the loss is
        their cross-entropy. Without labels, padded full logits.

        ``seq_lengths`` (real tokens per row) and ``masked_counts`` (labelled tokens per row), when
        the caller knows them on the host as our collator does, spare the step its host syncs.
        Packed rows come with ``document_lengths`` (each row's documents, numbered in the mask) and
        attend within each document.
        """
        info = self.bert.locate_tokens(input_ids, attention_mask, seq_lengths, document_lengths)
        if labels is None:
            x, _ = self.bert.encode(input_ids, attention_mask, token_type_ids, info)
            return MaskedLMOutput(logits=pad(self.head(x)[0], info))
        masked, masked_labels = labelled_tokens(labels, info, masked_counts)
        x, _ = self.bert.encode(input_ids, attention_mask, token_type_ids, info)
        x = x.index_select(0, masked)
        if self.bert.backends(x.device).fused_kernels:
            # our kernel reads the bf16 logits once each way. It runs outside the compiled head: a
            # compiled region returning the logits beside the loss gets a zero gradient for them
            # in the backward and adds it to the loss's (0.5 ms per base step, docs/benchmarks.md)
            logits, _ = self.head(x)
            return SparseMaskedLMOutput(loss=cross_entropy(logits, masked_labels), logits=logits, labels=masked_labels)
        logits, loss = self.head(x, masked_labels)
        return SparseMaskedLMOutput(loss=loss, logits=logits, labels=masked_labels)


class MosaicBertForSequenceClassification(MosaicBertPreTrainedModel, portable.MosaicBertForSequenceClassification):
    """BERT's pooler (dense + tanh on the first token) and a linear classifier; HF's loss rules
    (regression for one label, cross-entropy for integer labels, BCE for multi-label)."""

    encoder_class = MosaicBertModel

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                seq_lengths: Optional[Sequence[int]] = None, **_) -> SequenceClassifierOutput:
        if attention_mask is not None and not bool(attention_mask[:, 0].all()):
            raise ValueError("MosaicBertForSequenceClassification needs right padding: the first token of "
                             "every row must be real ([CLS])")
        info = self.bert.locate_tokens(input_ids, attention_mask, seq_lengths)
        x, inputs = self.bert.encode(input_ids, attention_mask, token_type_ids, info)
        first = x[inputs.info.cu_seqlens[:-1].long()]  # [CLS] of each sequence
        logits = self.classifier(self.dropout(self.pooler(first)))
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(self.config, logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
