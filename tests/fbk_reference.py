"""A plain reference of FBK-fairseq's speech-translation model, and tiny FBK checkpoints.

What FBK-fairseq (github.com/hlt-mt/FBK-fairseq, HEAD 4cd7c6dc of 2026-03-19)
computes for one utterance in eval mode, rewritten from its formulas:

- ``fairseq/data/audio/feature_transforms/utterance_cmvn.py``: utterance CMVN (numpy);
- ``fairseq/models/speech_to_text/s2t_transformer.py``: ``Conv1dSubsampler``;
- ``examples/speech_to_text/models/conformer.py`` and ``modules/conformer_*.py``:
  the Conformer encoder (half-step FFNs, FBK's relative attention with its
  absolute sinusoid table and Transformer-XL shift, conv module, final LayerNorm);
- ``examples/speech_to_text/modules/ctc_support.py``: CTC head and compression
  (``CtcSupport.average_same_ctc_features``, ``ensure_max_ctc_out_len``,
  ``CTCCompressStrategy``);
- ``fairseq/models/transformer.py``, ``fairseq/modules/transformer_layer.py``,
  ``multihead_attention.py``, ``sinusoidal_positional_embedding.py``: the decoder
  (``decoder_normalize_before=True``);
- ``fairseq/sequence_generator.py`` and ``fairseq/search.py``: ``SequenceGenerator``
  with ``BeamSearch``;
- ``fairseq/data/dictionary.py`` and ``examples/speech_to_text/tasks/speech_to_text_ctc.py``:
  the dictionaries (``<ctc_blank>`` appended to the source one).

It is deliberately plain and slow: one utterance at a time and unpadded (what
FBK's code computes at batch size 1, so there is no padding to get wrong),
Python loops over frames, hypotheses and candidates, no incremental decoding.
It reads FBK's state dict directly, by FBK's parameter names, and does not
import anything from ``espnet2_ext``. Token ids are fairseq's.

When written, it was checked against FBK-fairseq's own modules run with a
stubbed fairseq registry (``ConformerEncoderLayer``, ``Conv1dSubsampler``,
``CtcSupport`` with every strategy and max-out size, ``TransformerDecoderLayer``,
``SinusoidalPositionalEmbedding``, ``SequenceGenerator`` with prefix and
no-repeat n-grams 0/2/3): outputs within 2e-6, the same n-best lists.

:func:`make_fbk_checkpoint` writes what FBK publishes for a model (checkpoint,
``config.yaml``, fairseq dictionaries, SentencePiece models) with tiny sizes
and random weights.
"""

import argparse
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import yaml

FBK_FAIRSEQ_COMMIT = "4cd7c6dcda7b5e7714f611d99a5d216bbdfc20f4"

# fairseq's Dictionary: these four first, then the file's entries.
FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
BOS, PAD, EOS, UNK = 0, 1, 2, 3
CTC_BLANK = "<ctc_blank>"
LANG_TAG = "<lang:de>"
LAYER_NORM_EPS = 1e-5
BATCH_NORM_EPS = 1e-5
PE_MAX_LEN = 10000  # rows of FBK's PositionalEncoding buffer

Hypothesis = tuple[list[int], float]  # fairseq ids (no initial </s>, final </s>), normalised score


# --------------------------------------------------------------------------- data


def load_fairseq_dictionary(path: Path, add_ctc_blank: bool = False) -> list[str]:
    """Symbols by index, as ``Dictionary.load`` (+ ``add_symbol("<ctc_blank>")``) orders them."""
    symbols = list(FAIRSEQ_SPECIALS)
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        word, field = line.rstrip().rsplit(" ", 1)
        overwrite = field == "#fairseq:overwrite"
        if overwrite:
            word, field = word.rsplit(" ", 1)
        int(field)
        if word in symbols and not overwrite:
            raise ValueError(f"{path}: duplicate word {word!r}")
        symbols.append(word)  # an overwritten word gets a new index too (add_symbol)
    if add_ctc_blank:
        symbols.append(CTC_BLANK)
    return symbols


def utterance_cmvn(x: np.ndarray) -> np.ndarray:
    """fairseq's ``UtteranceCMVN`` (norm_means, norm_vars) on one utterance (T, F), float32."""
    mean = x.mean(axis=0)
    square_sums = (x**2).sum(axis=0)
    x = np.subtract(x, mean)
    var = square_sums / x.shape[0] - mean**2
    std = np.sqrt(np.maximum(var, 1e-10))
    return np.divide(x, std)


# --------------------------------------------------------------------------- CTC compression


def ctc_runs(ctc_logits: torch.Tensor) -> list[tuple[int, int]]:
    """(label, frames) of each run of equal argmax labels of one utterance (T, V)."""
    predicted = torch.softmax(ctc_logits, dim=-1).argmax(-1).tolist()
    return [(label, len(list(group))) for label, group in itertools.groupby(predicted)]


def merge_sublist(elements: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """FBK's ``merge_sublist``: the label with most frames (the first to reach that
    count wins a tie) and the frames of all the runs."""
    sum_num_vectors = 0
    max_element = None
    max_element_cnt = 0
    totals: dict[int, int] = {}
    for label, frames in elements:
        totals[label] = totals.get(label, 0) + frames
        if totals[label] > max_element_cnt:
            max_element_cnt = totals[label]
            max_element = label
        sum_num_vectors += frames
    return max_element, sum_num_vectors


def ensure_max_ctc_out_len(runs: list[tuple[int, int]], max_out_size: int) -> list[tuple[int, int]]:
    """FBK's ``ensure_max_ctc_out_len`` for one utterance: runs merged ``ceil(n / max)`` at a time."""
    if max_out_size <= 0 or len(runs) <= max_out_size:
        return runs
    factor = math.ceil(len(runs) / max_out_size)
    return [merge_sublist(runs[i : i + factor]) for i in range(0, len(runs), factor)]


def compression_weights(
    strategy: str, prob_ctc: torch.Tensor, runs: list[tuple[int, int]], fixed_ratio: int
) -> torch.Tensor:
    """FBK's ``CTCCompressStrategy.<strategy>`` weights matrix (T, T') of one utterance."""
    time = prob_ctc.size(0)
    if strategy == "fixed":
        original_len = sum(frames for _, frames in runs)
        weights = torch.zeros(time, math.ceil(time / fixed_ratio))
        for new_t in range(weights.size(1)):
            start = new_t * fixed_ratio
            end = min(start + fixed_ratio, original_len)
            weights[start:end, new_t] = 1.0 / (end - start)
            if end == original_len:
                return weights[:, : new_t + 1]
        return weights
    weights = torch.zeros(time, len(runs))
    start = 0
    for new_t, (label, frames) in enumerate(runs):
        end = start + frames
        if strategy == "avg":
            weights[start:end, new_t] = 1.0 / frames
        elif strategy == "weighted":
            probs = prob_ctc[start:end, label]
            weights[start:end, new_t] = probs / probs.sum()
        elif strategy == "softmax":
            probs = torch.softmax(prob_ctc[start:end, label], dim=0)  # a softmax of probabilities
            weights[start:end, new_t] = probs / probs.sum()
        else:
            raise ValueError(f"unknown strategy {strategy!r}")
        start = end
    return weights


# --------------------------------------------------------------------------- the model


class EncoderResult(NamedTuple):
    states: torch.Tensor  # (T', D): the encoder output the decoder attends to
    ctc_logits: torch.Tensor  # (T, V_src): CTC head logits, before compression
    runs: list[tuple[int, int]]  # the CTC runs compression used (after max-out-size merging)


def fbk_model_args(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The model's arguments from a checkpoint: ``args`` (a Namespace) or ``cfg.model``."""
    if checkpoint.get("args") is not None:
        return dict(vars(checkpoint["args"]))
    model = checkpoint["cfg"]["model"]
    if isinstance(model, argparse.Namespace):
        return dict(vars(model))
    from omegaconf import OmegaConf

    return OmegaConf.to_container(model)


class FBKReference:
    """FBK's Conformer ST model on one utterance at a time, from FBK's state dict.

    Args:
        state_dict: FBK-fairseq's ``model`` entry of a checkpoint.
        args: the model's arguments (FBK-fairseq's names).
        tgt_symbols, src_symbols: fairseq dictionaries (the source one with ``<ctc_blank>``).
    """

    def __init__(self, state_dict: dict[str, torch.Tensor], args: dict[str, Any], tgt_symbols, src_symbols):
        self.sd = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
        self.args = args
        self.tgt_symbols = list(tgt_symbols)
        self.src_symbols = list(src_symbols)
        assert args["criterion"] == "ctc_multi_loss" or args["ctc_compress_strategy"] != "none"
        assert args.get("decoder_normalize_before", True) and args.get("activation_fn", "relu") == "relu"
        self.d_model = args["encoder_embed_dim"]
        self.heads = args["encoder_attention_heads"]
        self.decoder_heads = args["decoder_attention_heads"]
        self.scale_embedding = not args.get("no_scale_embedding", False)
        self.strategy = args.get("ctc_compress_strategy", "none")
        self.max_out_size = args.get("ctc_compress_max_out_size", -1)
        self.fixed_ratio = args.get("ctc_compress_fixed_ratio", 4)
        self.ffn_residual = 0.5 if args.get("conformer_half_step_residual", True) else 1.0

    @classmethod
    def from_files(cls, checkpoint: Path, tgt_dict: Path, src_dict: Path) -> "FBKReference":
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        args = fbk_model_args(state)
        return cls(
            state["model"],
            args,
            load_fairseq_dictionary(tgt_dict),
            load_fairseq_dictionary(src_dict, add_ctc_blank=args["criterion"] == "ctc_multi_loss"),
        )

    # ------------------------------------------------------------ building blocks

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        y = x @ self.sd[f"{name}.weight"].T
        bias = self.sd.get(f"{name}.bias")
        return y if bias is None else y + bias

    def _layer_norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + LAYER_NORM_EPS) * self.sd[f"{name}.weight"] + self.sd[f"{name}.bias"]

    def _conv1d(self, x: torch.Tensor, name: str, stride: int, padding: int, depthwise: bool = False) -> torch.Tensor:
        """``nn.Conv1d`` (zero padding) on one utterance (C_in, T) -> (C_out, T_out)."""
        weight = self.sd[f"{name}.weight"]  # (C_out, C_in or 1, K)
        bias = self.sd.get(f"{name}.bias")
        kernel = weight.size(2)
        zeros = x.new_zeros(x.size(0), padding)
        x = torch.cat([zeros, x, zeros], dim=1)
        outputs = []
        for t in range((x.size(1) - kernel) // stride + 1):
            window = x[:, t * stride : t * stride + kernel]  # (C_in, K)
            if depthwise:
                y = (weight[:, 0, :] * window).sum(1)
            else:
                y = (weight * window.unsqueeze(0)).sum((1, 2))
            outputs.append(y if bias is None else y + bias)
        return torch.stack(outputs, dim=1)

    @staticmethod
    def _glu(x: torch.Tensor, dim: int) -> torch.Tensor:
        a, b = x.chunk(2, dim=dim)
        return a * torch.sigmoid(b)

    # ------------------------------------------------------------ encoder

    def subsample(self, features: torch.Tensor) -> torch.Tensor:
        """``Conv1dSubsampler``: stride-2 convs + GLU over time, (T, F) -> (T', D)."""
        x = features.T
        length = features.size(0)
        layer = 0
        while f"encoder.subsample.conv_layers.{layer}.weight" in self.sd:
            name = f"encoder.subsample.conv_layers.{layer}"
            kernel = self.sd[f"{name}.weight"].size(2)
            x = self._glu(self._conv1d(x, name, stride=2, padding=kernel // 2), dim=0)
            length = math.floor((length - kernel + 2 * (kernel // 2)) / 2 + 1)  # fairseq's get_length
            assert x.size(1) == length
            layer += 1
        return x.T

    @staticmethod
    def relative_shift(pos_score: torch.Tensor) -> torch.Tensor:
        """FBK's ``_relative_shift`` on one utterance (H, L, L): zero column, reshape, drop a row."""
        heads, length, _ = pos_score.shape
        padded = torch.cat([pos_score.new_zeros(heads, length, 1), pos_score], dim=-1)
        return padded.reshape(heads, length + 1, length)[:, 1:, :]

    def _self_attention(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """``MultiHeadedSelfAttentionModule`` (dropout off): LayerNorm then relative MHA."""
        length, heads = x.size(0), self.heads
        x = self._layer_norm(x, f"{name}.layer_norm")
        pe = self.sd[f"{name}.positional_encoding.pe"][0, :length]  # table positions 0..L-1
        att = f"{name}.attention"
        q = self._linear(x, f"{att}.query_proj").view(length, heads, -1)
        k = self._linear(x, f"{att}.key_proj").view(length, heads, -1)
        v = self._linear(x, f"{att}.value_proj").view(length, heads, -1)
        p = self._linear(pe, f"{att}.pos_proj").view(length, heads, -1)
        content = torch.einsum("ihd,jhd->hij", q + self.sd[f"{att}.u_bias"], k)
        position = torch.einsum("ihd,jhd->hij", q + self.sd[f"{att}.v_bias"], p)
        score = (content + self.relative_shift(position)) / math.sqrt(self.d_model)
        attn = torch.softmax(score, dim=-1)
        context = torch.einsum("hij,jhd->ihd", attn, v).reshape(length, self.d_model)
        return self._linear(context, f"{att}.out_proj")

    def _feed_forward(self, x: torch.Tensor, name: str) -> torch.Tensor:
        h = self._linear(self._layer_norm(x, f"{name}.layernorm"), f"{name}.first_linear")
        return self._linear(h * torch.sigmoid(h), f"{name}.second_linear")

    def _conv_module(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """``ConformerConvModule`` (eval): LN, pointwise, GLU, depthwise, BatchNorm, SiLU, pointwise."""
        h = self._layer_norm(x, f"{name}.layernorm").T  # (D, L)
        h = self._glu(self._conv1d(h, f"{name}.first_pointwise_conv1d", 1, 0), dim=0)
        kernel = self.sd[f"{name}.depthwise_conv1d.weight"].size(2)
        h = self._conv1d(h, f"{name}.depthwise_conv1d", 1, (kernel - 1) // 2, depthwise=True)
        bn = f"{name}.batchnorm"
        h = (h - self.sd[f"{bn}.running_mean"][:, None]) / torch.sqrt(
            self.sd[f"{bn}.running_var"][:, None] + BATCH_NORM_EPS
        ) * self.sd[f"{bn}.weight"][:, None] + self.sd[f"{bn}.bias"][:, None]
        h = h * torch.sigmoid(h)
        return self._conv1d(h, f"{name}.second_pointwise_conv1d", 1, 0).T

    def conformer_layer(self, x: torch.Tensor, n: int) -> torch.Tensor:
        name = f"encoder.conformer_layers.{n}"
        x = self._feed_forward(x, f"{name}.first_feed_forward") * self.ffn_residual + x
        x = self._self_attention(x, f"{name}.attention") + x
        x = self._conv_module(x, f"{name}.conv_module") + x
        x = self._feed_forward(x, f"{name}.second_feed_forward") * self.ffn_residual + x
        return self._layer_norm(x, f"{name}.layernorm")

    def compress(self, x: torch.Tensor, ctc_logits: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """``average_same_ctc_features`` on one utterance: (T, D) -> (T', D)."""
        runs = ensure_max_ctc_out_len(ctc_runs(ctc_logits), self.max_out_size)
        prob_ctc = torch.softmax(ctc_logits, dim=-1)
        weights = compression_weights(self.strategy, prob_ctc, runs, self.fixed_ratio)
        return weights.T @ x, runs

    def encode(self, features: torch.Tensor) -> EncoderResult:
        """Normalised features (T, F) of one utterance -> encoder output and CTC logits."""
        x = self.subsample(features.float())
        if self.scale_embedding:
            x = x * math.sqrt(self.d_model)
        ctc_logits, runs = None, []
        for n in range(self.args["encoder_layers"]):
            x = self.conformer_layer(x, n)
            if n + 1 == self.args["ctc_encoder_layer"]:
                ctc_logits = self._linear(x, "encoder.ctc_fc")
                if self.strategy != "none":
                    x, runs = self.compress(x, ctc_logits)
        return EncoderResult(x, ctc_logits, runs)

    # ------------------------------------------------------------ decoder

    @staticmethod
    def sinusoidal_embedding(num_embeddings: int, dim: int, padding_idx: int = PAD) -> torch.Tensor:
        """fairseq's ``SinusoidalPositionalEmbedding.get_embedding``: sin half, then cos half."""
        half_dim = dim // 2
        rate = math.log(10000) / (half_dim - 1)
        freqs = torch.exp(torch.arange(half_dim, dtype=torch.float) * -rate)
        angles = torch.arange(num_embeddings, dtype=torch.float).unsqueeze(1) * freqs.unsqueeze(0)
        emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
        if dim % 2 == 1:
            emb = torch.cat([emb, torch.zeros(num_embeddings, 1)], dim=1)
        emb[padding_idx, :] = 0
        return emb

    def _attention(
        self, query: torch.Tensor, memory: torch.Tensor, name: str, causal: bool, kept: list | None = None
    ) -> torch.Tensor:
        """fairseq's ``MultiheadAttention`` (L, D) over (S, D): scaled q, -inf mask, float softmax.
        ``kept`` gets the weights averaged over heads (L, S), as fairseq's ``need_head_weights``
        then ``attn.mean(dim=0)`` give the alignment layer's."""
        heads = self.decoder_heads
        head_dim = query.size(1) // heads
        q = self._linear(query, f"{name}.q_proj") * head_dim**-0.5
        k = self._linear(memory, f"{name}.k_proj")
        v = self._linear(memory, f"{name}.v_proj")
        outputs, weights = [], []
        for h in range(heads):
            cols = slice(h * head_dim, (h + 1) * head_dim)
            scores = q[:, cols] @ k[:, cols].T
            if causal:
                scores = scores + torch.triu(torch.full_like(scores, float("-inf")), 1)
            weights.append(torch.softmax(scores.float(), dim=-1))
            outputs.append(weights[-1] @ v[:, cols])
        if kept is not None:
            kept.append(torch.stack(weights).mean(dim=0))
        return self._linear(torch.cat(outputs, dim=1), f"{name}.out_proj")

    def decoder_log_probs(
        self, encoder_states: torch.Tensor, tokens: Sequence[int], attention: list | None = None
    ) -> torch.Tensor:
        """Log-probabilities (L, V) of the token after each prefix of ``tokens`` (fairseq ids,
        ``tokens[0]`` is </s>), teacher forced over ``encoder_states`` (T', D); ``attention``
        gets each layer's cross-attention averaged over heads (L, T')."""
        tokens = torch.tensor(list(tokens))
        dim = self.sd["decoder.embed_tokens.weight"].size(1)
        scale = math.sqrt(dim) if self.scale_embedding else 1.0
        positions = self.sinusoidal_embedding(PAD + 1 + len(tokens), dim)[PAD + 1 :]  # positions 2, 3, ...
        x = scale * self.sd["decoder.embed_tokens.weight"][tokens] + positions
        n = 0
        while f"decoder.layers.{n}.fc1.weight" in self.sd:
            name = f"decoder.layers.{n}"
            h = self._layer_norm(x, f"{name}.self_attn_layer_norm")
            x = x + self._attention(h, h, f"{name}.self_attn", causal=True)
            h = self._layer_norm(x, f"{name}.encoder_attn_layer_norm")
            x = x + self._attention(h, encoder_states, f"{name}.encoder_attn", causal=False, kept=attention)
            h = self._layer_norm(x, f"{name}.final_layer_norm")
            x = x + self._linear(torch.relu(self._linear(h, f"{name}.fc1")), f"{name}.fc2")
            n += 1
        x = self._layer_norm(x, "decoder.layer_norm")
        logits = x @ self.sd["decoder.output_projection.weight"].T
        return torch.log_softmax(logits.float(), dim=-1)

    # ------------------------------------------------------------ search

    def max_len(self, src_len: int, max_len_a: float, max_len_b: int) -> int:
        """``SequenceGenerator``'s length limit (``src_len``: input frames)."""
        return min(int(max_len_a * src_len + max_len_b), self.args.get("max_target_positions", 1024) - 1)

    @staticmethod
    def banned_ngram_tokens(row: list[int], step: int, n: int) -> list[int]:
        """``SequenceGenerator._no_repeat_ngram`` for one hypothesis: ``row`` is its whole
        token buffer (</s>, tokens, then <pad> up to max_len + 2)."""
        if step + 2 - n < 0:
            return []
        gen_ngrams: dict[tuple[int, ...], list[int]] = {}
        for start in range(len(row) - n + 1):
            ngram = row[start : start + n]
            gen_ngrams.setdefault(tuple(ngram[:-1]), []).append(ngram[-1])
        return gen_ngrams.get(tuple(row[step + 2 - n : step + 1]), [])

    def beam_search(
        self,
        encoder_states: torch.Tensor,
        beam_size: int,
        max_len: int,
        prefix: Sequence[int] = (),
        no_repeat_ngram_size: int = 0,
        min_len: int = 1,
    ) -> list[Hypothesis]:
        """fairseq's ``SequenceGenerator`` + ``BeamSearch`` for one utterance, n-best by score.

        Hypotheses with score -inf (fairseq keeps some in its beam, e.g. after a
        forced prefix) are left out: they can never end with a finite score, so
        they change nothing.
        """
        vocab = len(self.tgt_symbols)
        beam_size = min(beam_size, vocab - 1)
        neg_inf = torch.tensor(float("-inf"))
        # step 0 extends fairseq's first beam only: one hypothesis, </s> alone
        hyps: list[tuple[list[int], torch.Tensor]] = [([EOS], torch.tensor(0.0))]
        finalized: list[Hypothesis] = []
        for step in range(max_len + 1):
            candidates = []  # (cumulative float32 score, hypothesis, token)
            for h, (tokens, score) in enumerate(hyps):
                lprobs = self.decoder_log_probs(encoder_states, tokens)[-1].clone()
                lprobs[lprobs != lprobs] = neg_inf
                lprobs[PAD] = neg_inf
                if step >= max_len:
                    lprobs[:EOS] = neg_inf
                    lprobs[EOS + 1 :] = neg_inf
                if step < len(prefix) and step < max_len:
                    forced = lprobs[prefix[step]].clone()
                    lprobs[:] = neg_inf
                    lprobs[prefix[step]] = forced
                elif step < min_len:
                    lprobs[EOS] = neg_inf
                if no_repeat_ngram_size > 0:
                    row = tokens + [PAD] * (max_len + 2 - len(tokens))
                    for banned in self.banned_ngram_tokens(row, step, no_repeat_ngram_size):
                        lprobs[banned] = neg_inf
                cumulative = lprobs if step == 0 else lprobs + score
                candidates.extend((cumulative[t], h, t) for t in range(vocab))
            k = min(2 * beam_size, (1 if step == 0 else beam_size) * vocab - 1)
            top = sorted(candidates, key=lambda c: -float(c[0]))[:k]
            ended_now = False
            for score, h, token in top[:beam_size]:  # only the best `beam` candidates may end
                if token == EOS and score != neg_inf and len(finalized) < beam_size:
                    finalized.append((hyps[h][0][1:] + [EOS], float(score / (step + 1))))
                    ended_now = True
            if ended_now and (len(finalized) == beam_size or step == max_len):
                break
            # the next beam: the best `beam` candidates that do not end (fairseq's active_hypos)
            going_on = [c for c in top if not (c[2] == EOS and c[0] != neg_inf)][:beam_size]
            hyps = [(hyps[h][0] + [token], score) for score, h, token in going_on if score != neg_inf]
        return sorted(finalized, key=lambda hyp: -hyp[1])


# --------------------------------------------------------------------------- test inputs

FRAMES = [37, 80, 53, 61]  # input frames of the test utterances (20 features each)


def features(seed: int = 1) -> list[np.ndarray]:
    """fbank-like features (T, 20) of the test utterances: mean 5, std 3."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((frames, 20)) * 3 + 5).astype(np.float32) for frames in FRAMES]


def pad(arrays: list[np.ndarray]) -> torch.Tensor:
    """Arrays (T_i, ...) zero-padded into one batch (B, max T_i, ...)."""
    batch = torch.zeros(len(arrays), max(len(a) for a in arrays), *arrays[0].shape[1:])
    for i, a in enumerate(arrays):
        batch[i, : len(a)] = torch.as_tensor(a)
    return batch


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


# --------------------------------------------------------------------------- tiny FBK model files

SOURCE_WORDS = "the a small large house tree river stone light night day water fire green blue talk".split()
TARGET_WORDS = "Das Ein kleine große Haus Baum Fluss Stein Licht Nacht Tag Wasser Feuer grün blau Rede".split()


class FBKFiles(NamedTuple):
    """What FBK publishes for a model, and the arguments its checkpoint holds."""

    checkpoint: Path
    config: Path
    tgt_spm: Path
    tgt_dict: Path
    src_spm: Path
    src_dict: Path
    args: dict[str, Any]


def _train_sentencepiece(prefix: Path, sentences: list[str], vocab_size: int, tags: list[str]) -> list[str]:
    """A SentencePiece model with FBK's special ids (``gen_vocab``) and its fairseq dictionary
    (``<prefix>.txt``: every piece but <s>, <pad>, </s>, <unk>, in id order, count 1)."""
    import sentencepiece as spm

    text = prefix.with_suffix(".input.txt")
    text.write_text("".join(f"{s}\n" for s in sentences), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(prefix), vocab_size=vocab_size, model_type="unigram",
        character_coverage=1.0, unk_id=3, bos_id=0, eos_id=2, pad_id=1,
        user_defined_symbols=tags, hard_vocab_limit=False, minloglevel=2, num_threads=1,
    )
    model = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    pieces = [model.id_to_piece(i) for i in range(model.get_piece_size())]
    assert pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    entries = pieces[4:]
    prefix.with_suffix(".txt").write_text("".join(f"{p} 1\n" for p in entries), encoding="utf-8")
    return entries


def fbk_model_namespace(**overrides: Any) -> argparse.Namespace:
    """A tiny conformer's arguments as FBK-fairseq's trainer stores them (FBK's names)."""
    args = dict(
        arch="conformer", task="speech_to_text_ctc", criterion="ctc_multi_loss",
        underlying_criterion="label_smoothed_cross_entropy", label_smoothing=0.1, ctc_weight=0.5,
        data="/data/mustc", config_yaml="config.yaml", user_dir="examples/speech_to_text",
        encoder_embed_dim=32, encoder_layers=3, encoder_attention_heads=4,
        encoder_ffn_embed_dim=2048,  # base_architecture's default: the Conformer does not use it
        encoder_normalize_before=True, conv_channels=32, conv_kernel_sizes="5,5",
        conformer_conv_kernel_size=7, feed_forward_expansion_factor=4, conv_expansion_factor=2,
        conformer_feedforward_dropout=0.1, conformer_attention_dropout=0.1, conformer_conv_dropout=0.1,
        conformer_half_step_residual=True, no_syncbatchnorm=False, batch_unsafe_relative_shift=False,
        ctc_encoder_layer=2, ctc_compress_strategy="avg", ctc_compress_max_out_size=-1,
        ctc_compress_fixed_ratio=4,
        decoder_layers=2, decoder_embed_dim=32, decoder_ffn_embed_dim=64, decoder_attention_heads=4,
        decoder_normalize_before=True, decoder_learned_pos=False, decoder_output_dim=32,
        decoder_input_dim=32, decoder_layerdrop=0.0, share_decoder_input_output_embed=False,
        no_token_positional_embeddings=False, adaptive_input=False, adaptive_softmax_cutoff=None,
        layernorm_embedding=False, no_scale_embedding=False, activation_fn="relu",
        dropout=0.1, attention_dropout=0.1, activation_dropout=0.1, quant_noise_pq=0,
        input_feat_per_channel=20, input_channels=1,
        max_source_positions=6000, max_target_positions=1024, ignore_prefix_size=0,
        distance_penalty=False, init_variance=0.0, allow_extra_tokens=False,
        optimizer="adam", lr=[0.002], lr_scheduler="inverse_sqrt", warmup_updates=25000, seed=1,
    )
    args.update(overrides)
    return argparse.Namespace(**args)


def fbk_state_dict(args: argparse.Namespace, tgt_size: int, src_size: int, seed: int) -> dict[str, torch.Tensor]:
    """Random weights with FBK-fairseq's names and shapes (BatchNorm statistics included).

    The CTC head favours the blank (the last source symbol) so that its argmax
    makes runs of several frames, as a trained model's does.
    """
    gen = torch.Generator().manual_seed(seed)

    def normal(*shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=gen) * std + mean

    def linear(name, out_size, in_size, bias=True):
        sd[f"{name}.weight"] = normal(out_size, in_size, std=in_size**-0.5)
        if bias:
            sd[f"{name}.bias"] = normal(out_size, std=0.1)

    def conv(name, out_size, in_size, kernel, bias=True):
        sd[f"{name}.weight"] = normal(out_size, in_size, kernel, std=(in_size * kernel) ** -0.5)
        if bias:
            sd[f"{name}.bias"] = normal(out_size, std=0.1)

    def layer_norm(name, size):
        sd[f"{name}.weight"] = normal(size, std=0.1, mean=1.0)
        sd[f"{name}.bias"] = normal(size, std=0.1)

    d = args.encoder_embed_dim
    heads = args.encoder_attention_heads
    sd: dict[str, torch.Tensor] = {}
    kernels = [int(k) for k in args.conv_kernel_sizes.split(",")]
    in_size = args.input_feat_per_channel * args.input_channels
    for i, k in enumerate(kernels):
        last = i == len(kernels) - 1
        conv(f"encoder.subsample.conv_layers.{i}", 2 * d if last else args.conv_channels,
             in_size if i == 0 else args.conv_channels // 2, k)
    pe = torch.zeros(PE_MAX_LEN, d)  # FBK's PositionalEncoding buffer, saved with the model
    position = torch.arange(0, PE_MAX_LEN, dtype=torch.float).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d, 2).float() * -(math.log(10000.0) / d))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    ffn = d * args.feed_forward_expansion_factor
    for n in range(args.encoder_layers):
        name = f"encoder.conformer_layers.{n}"
        for ff in ("first_feed_forward", "second_feed_forward"):
            layer_norm(f"{name}.{ff}.layernorm", d)
            linear(f"{name}.{ff}.first_linear", ffn, d)
            linear(f"{name}.{ff}.second_linear", d, ffn)
        att = f"{name}.attention"
        sd[f"{att}.positional_encoding.pe"] = pe.unsqueeze(0)
        layer_norm(f"{att}.layer_norm", d)
        sd[f"{att}.attention.u_bias"] = normal(heads, d // heads, std=0.3)
        sd[f"{att}.attention.v_bias"] = normal(heads, d // heads, std=0.3)
        for proj in ("query_proj", "key_proj", "value_proj"):
            linear(f"{att}.attention.{proj}", d, d)
        linear(f"{att}.attention.pos_proj", d, d, bias=False)
        linear(f"{att}.attention.out_proj", d, d)
        cm = f"{name}.conv_module"
        layer_norm(f"{cm}.layernorm", d)
        layer_norm(f"{cm}.batchnorm", d)
        sd[f"{cm}.batchnorm.running_mean"] = normal(d, std=0.3)
        sd[f"{cm}.batchnorm.running_var"] = torch.rand(d, generator=gen) + 0.5
        sd[f"{cm}.batchnorm.num_batches_tracked"] = torch.tensor(1000)
        conv(f"{cm}.first_pointwise_conv1d", 2 * d, d, 1)
        conv(f"{cm}.second_pointwise_conv1d", d, d, 1)
        conv(f"{cm}.depthwise_conv1d", d, 1, args.conformer_conv_kernel_size, bias=False)
        layer_norm(f"{name}.layernorm", d)
    linear("encoder.ctc_fc", src_size, d)
    sd["encoder.ctc_fc.bias"][-1] += 3.0  # <ctc_blank>

    dd = args.decoder_embed_dim
    sd["decoder.version"] = torch.Tensor([3])
    sd["decoder.embed_tokens.weight"] = normal(tgt_size, dd, std=dd**-0.5)
    sd["decoder.embed_positions._float_tensor"] = torch.FloatTensor(1).zero_()
    for n in range(args.decoder_layers):
        name = f"decoder.layers.{n}"
        for att in ("self_attn", "encoder_attn"):
            for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
                linear(f"{name}.{att}.{proj}", dd, dd)
            layer_norm(f"{name}.{att}_layer_norm", dd)
        linear(f"{name}.fc1", args.decoder_ffn_embed_dim, dd)
        linear(f"{name}.fc2", dd, args.decoder_ffn_embed_dim)
        layer_norm(f"{name}.final_layer_norm", dd)
    layer_norm("decoder.layer_norm", dd)
    if args.share_decoder_input_output_embed:
        sd["decoder.output_projection.weight"] = sd["decoder.embed_tokens.weight"]
    else:
        sd["decoder.output_projection.weight"] = normal(tgt_size, dd, std=dd**-0.5)
    return sd


def make_fbk_checkpoint(
    tmp_path: Path,
    strategy: str = "avg",
    max_out_size: int = -1,
    fixed_ratio: int = 4,
    lang_tag: bool = False,
    args_format: str = "namespace",
    share_embeddings: bool = False,
    eos_scale: float = 1.0,
    seed: int = 0,
    input_size: int = 20,
) -> FBKFiles:
    """Write a tiny FBK model into ``tmp_path``: ``ckp.pt``, ``config.yaml``,
    ``tgtdict.{model,txt}`` and ``srcdict.{model,txt}``, as FBK publishes them.

    Args:
        strategy, max_out_size, fixed_ratio: ``--ctc-compress-*``.
        lang_tag: the target pieces start with the user-defined symbol ``<lang:de>``
            (``prepend_tgt_lang_tag`` in the config, ``--ignore-prefix-size 1``).
        args_format: ``namespace``: ``{"args": Namespace}`` (fairseq before hydra);
            ``cfg``: ``{"args": None, "cfg": DictConfig}`` with a ``model`` node
            holding the arguments; ``cfg_namespace``: the same with the Namespace
            itself as ``cfg.model``, as fairseq's ``convert_namespace_to_omegaconf``
            stores a legacy architecture (needs omegaconf's ``allow_objects``).
        share_embeddings: ``--share-decoder-input-output-embed``.
        eos_scale: factor on </s>'s row of the output projection (makes hypotheses
            end at different lengths).
        seed: random weights.
        input_size: feature dimensions (80 for real fbank features).
    """
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    target = [" ".join(rng.choice(TARGET_WORDS, size=rng.integers(3, 8))) + "." for _ in range(60)]
    source = [" ".join(rng.choice(SOURCE_WORDS, size=rng.integers(3, 8))).lower() for _ in range(60)]
    tags = [LANG_TAG] if lang_tag else []
    tgt_entries = _train_sentencepiece(tmp_path / "tgtdict", target, 40, tags)
    src_entries = _train_sentencepiece(tmp_path / "srcdict", source, 30, [])

    args = fbk_model_namespace(
        ctc_compress_strategy=strategy, ctc_compress_max_out_size=max_out_size,
        ctc_compress_fixed_ratio=fixed_ratio, ignore_prefix_size=1 if lang_tag else 0,
        share_decoder_input_output_embed=share_embeddings, input_feat_per_channel=input_size,
    )
    tgt_size = len(FAIRSEQ_SPECIALS) + len(tgt_entries)
    src_size = len(FAIRSEQ_SPECIALS) + len(src_entries) + 1  # + <ctc_blank>
    state_dict = fbk_state_dict(args, tgt_size, src_size, seed)
    with torch.no_grad():  # in place: a shared projection is the embedding's tensor
        state_dict["decoder.output_projection.weight"][EOS] *= eos_scale
    state = {
        "model": state_dict,
        "optimizer_history": [
            {"criterion_name": "CtcMultiLoss", "optimizer_name": "FairseqAdam",
             "lr_scheduler_state": {"best": 2.5}, "num_updates": 1000}
        ],
        "extra_state": {"epoch": 5, "val_loss": 2.5, "train_iterator": {"epoch": 5}},
    }
    if args_format == "namespace":
        state["args"] = args
    elif args_format in ("cfg", "cfg_namespace"):
        from omegaconf import OmegaConf

        cfg = OmegaConf.create(
            {"common": {"seed": 1}, "checkpoint": {"no_save_optimizer_state": False},
             "task": {"_name": "speech_to_text_ctc", "data": "/data/mustc", "config_yaml": "config.yaml"},
             "model": None},
            flags={"allow_objects": True},
        )
        if args_format == "cfg":
            cfg.model = {**vars(args), "_name": args.arch}
        else:
            cfg.model = argparse.Namespace(**vars(args), _name=args.arch)
        state["args"] = None
        state["cfg"] = cfg
    else:
        raise ValueError(f"unknown args_format {args_format!r}")
    checkpoint = tmp_path / "ckp.pt"
    torch.save(state, checkpoint)

    config = {
        "bpe_tokenizer": {"bpe": "sentencepiece", "sentencepiece_model": "tgtdict.model"},
        "bpe_tokenizer_src": {"bpe": "sentencepiece", "sentencepiece_model": "srcdict.model"},
        "input_channels": 1,
        "input_feat_per_channel": args.input_feat_per_channel,
        "sampling_alpha": 1.0,
        "specaugment": {"freq_mask_F": 27, "freq_mask_N": 1, "time_mask_N": 1, "time_mask_T": 100,
                        "time_mask_p": 1.0, "time_wrap_W": 0},
        "transforms": {"*": ["utterance_cmvn"], "_train": ["utterance_cmvn", "specaugment"]},
        "vocab_filename": "tgtdict.txt",
        "vocab_filename_src": "srcdict.txt",
    }
    if lang_tag:
        config["prepend_tgt_lang_tag"] = True
    text = yaml.safe_dump(config, sort_keys=True)
    (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    return FBKFiles(
        checkpoint, tmp_path / "config.yaml", tmp_path / "tgtdict.model", tmp_path / "tgtdict.txt",
        tmp_path / "srcdict.model", tmp_path / "srcdict.txt", vars(args),
    )
