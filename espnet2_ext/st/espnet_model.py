"""Direct ST model with FBK's multi-loss: label-smoothed CE + weighted intermediate CTC."""

from collections.abc import Sequence
from typing import NamedTuple

import torch
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.specaug.abs_specaug import AbsSpecAug
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from espnet2_ext.asr.decoder.fbk_transformer_decoder import FBKTransformerDecoder
from espnet2_ext.asr.encoder.ctc_compress_conformer_encoder import (
    CTCCompressConformerEncoder,
    CTCCompressEncoderOutput,
)
from espnet2_ext.layers.ctc_loss import ctc_loss


class UtteranceLosses(NamedTuple):
    """Loss terms per utterance (all (B,)), before any batch reduction."""

    ce: torch.Tensor  # label-smoothed CE summed over the utterance's scored tokens
    tokens: torch.Tensor  # scored target tokens (language tag excluded, <eos> included)
    correct: torch.Tensor  # argmax hits among the scored tokens
    ctc: torch.Tensor  # CTC loss on the source transcript (0 where infeasible)
    src_tokens: torch.Tensor  # source transcript tokens (no <eos>; 0 without a transcript)
    ctc_feasible: torch.Tensor  # False where the transcript cannot fit the CTC input
    encoder_lengths: torch.Tensor  # frames entering the CTC (after subsampling)
    compressed_lengths: torch.Tensor  # frames leaving the encoder


def label_smoothed_nll(
    logits: torch.Tensor, targets: torch.Tensor, epsilon: float, ignore_id: int
) -> torch.Tensor:
    """Per-token label-smoothed negative log-likelihood (B, L), 0 at ignored tokens.

    fairseq's formula, as FBK trains with it: ``(1 - eps - eps_i) * nll + eps_i *
    sum_v(-log p_v)`` with ``eps_i = eps / (V - 1)``, i.e. the cross-entropy
    against a target distribution putting ``1 - eps`` on the reference token.
    """
    lprobs = logits.float().log_softmax(-1)
    ignore = targets == ignore_id
    safe_targets = targets.masked_fill(ignore, 0)
    nll = -lprobs.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)
    smooth = -lprobs.sum(-1)
    eps_i = epsilon / (lprobs.size(-1) - 1)
    loss = (1.0 - epsilon - eps_i) * nll + eps_i * smooth
    return loss.masked_fill(ignore, 0.0)


def add_sos_eos(
    text: torch.Tensor, text_lengths: torch.Tensor, sos: int, eos: int, ignore_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs ``<sos> y`` padded with ``eos`` and targets ``y <eos>`` padded with
    ``ignore_id``, both (B, L + 1), of targets ``text`` (B, L) with lengths (B,).

    ESPnet's ``add_sos_eos``, from the lengths and for the whole batch at once, where
    ESPnet's strips each utterance's padding in a Python loop (a wait for the device
    per utterance on a GPU).
    """
    position = torch.arange(text.size(1) + 1, device=text.device).expand(text.size(0), -1)
    lengths = text_lengths[:, None]
    previous = text.gather(1, (position - 1).clamp(min=0))  # y[p - 1], and y[0] at p = 0
    current = text.gather(1, position.clamp(max=text.size(1) - 1))  # y[p], and y[L - 1] at p = L
    ys_in = torch.where(position == 0, sos, torch.where(position <= lengths, previous, eos))
    ys_out = torch.where(position < lengths, current, torch.where(position == lengths, eos, ignore_id))
    return ys_in, ys_out


def ctc_min_input_lengths(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Fewest CTC frames that can emit each target: its length plus its repeats.

    A repeated label needs a blank between its two copies.
    """
    position = torch.arange(targets.size(1), device=targets.device)
    inside = position[None, 1:] < target_lengths[:, None]
    repeats = ((targets[:, 1:] == targets[:, :-1]) & inside).sum(1)
    return target_lengths + repeats


class ESPnetSTCTCCompressModel(AbsESPnetModel):
    """Speech translation with a CTC-compressing encoder, as FBK's IWSLT 2022 system.

    Loss (FBK's ``ctc_multi_loss`` over ``label_smoothed_cross_entropy``, not
    ESPnet's interpolation): both terms are summed over the mini-batch, added
    with the CTC weighted, and divided by the CTC's sample size, which fairseq's
    ``CtcCriterion`` hands the trainer: the source transcript tokens counted with
    their ``</s>``::

        loss = (CE_sum + ctc_weight * CTC_sum) / sum_utts(source tokens + 1)

    That is the loss back-propagated (without CTC, ``ctc_weight`` 0, it is
    ``CE_sum`` over the scored target tokens, the plain criterion's). The logged ``loss``, ``loss_ce`` and
    ``loss_ctc`` are per scored target token (``loss = loss_ce + ctc_weight *
    loss_ctc``), and ``valid.loss`` picks the best checkpoints.

    fairseq divides the summed gradients of all GPUs and accumulated
    mini-batches by their summed sample size once per update. ESPnet normalises
    each mini-batch by its own sample size, averages over accumulation steps
    (``accum_grad``) and over GPUs (data-parallel gradient averaging): a mean of
    per-mini-batch ratios instead of one ratio of sums. With FBK's batches of
    tens of utterances the two differ by the spread of tokens per mini-batch
    (a weighting, not a scale).

    Features are normalised (``normalize``, FBK: utterance CMVN), then
    augmented (``specaug``, in training), as FBK's data transforms do.

    The first ``ignore_prefix_size`` target tokens (the ``<lang:xx>`` tag) are
    fed to the decoder but excluded from loss and accuracy; decoding forces them.

    A training step waits for the device twice on a GPU, and nowhere else: for the
    compressed length (the encoder's) and to copy the CTC's lengths to the host
    (``ctc_loss`` reads them there); compiled, only for the latter. Batches may
    be padded beyond their longest utterance: padding changes no loss term, only
    the work (with ESPnet's decoders, ``decoder: transformer``, the targets are
    cut to their longest, which reads the device once more).

    Args:
        vocab_size: target vocabulary size (last id is <sos/eos>).
        token_list: target tokens.
        frontend: feature extractor, or None when features come precomputed.
        specaug: SpecAugment, applied in training only.
        normalize: feature normalisation (utterance or global CMVN).
        encoder: the CTC-compressing Conformer.
        decoder: attention decoder over the compressed states.
        src_token_list: source tokens of the CTC head (blank = index 0).
        ctc_weight: weight of the CTC term (FBK: 0.5).
        lsm_weight: label-smoothing epsilon (FBK: 0.1).
        ignore_prefix_size: leading target tokens left out of the loss.
        ignore_id: padding id of token tensors.
        extract_feats_in_collect_stats: let collect_stats call the frontend.
    """

    def __init__(
        self,
        vocab_size: int,
        token_list: Sequence[str],
        frontend: AbsFrontend | None,
        specaug: AbsSpecAug | None,
        normalize: AbsNormalize | None,
        encoder: CTCCompressConformerEncoder,
        decoder: AbsDecoder,
        src_token_list: Sequence[str] | None = None,
        ctc_weight: float = 0.5,
        lsm_weight: float = 0.1,
        ignore_prefix_size: int = 1,
        ignore_id: int = -1,
        extract_feats_in_collect_stats: bool = True,
    ):
        super().__init__()
        if ctc_weight < 0:
            raise ValueError(f"ctc_weight must be >= 0, got {ctc_weight}")
        if not 0 <= lsm_weight < 1:
            raise ValueError(f"lsm_weight must be in [0, 1), got {lsm_weight}")
        if ignore_prefix_size < 0:
            raise ValueError(f"ignore_prefix_size must be >= 0, got {ignore_prefix_size}")
        self.vocab_size = vocab_size
        self.sos = vocab_size - 1
        self.eos = vocab_size - 1
        self.token_list = list(token_list)
        self.src_token_list = list(src_token_list) if src_token_list is not None else None
        self.frontend = frontend
        self.specaug = specaug
        self.normalize = normalize
        self.encoder = encoder
        self.decoder = decoder
        self.ctc_weight = ctc_weight
        self.lsm_weight = lsm_weight
        self.ignore_prefix_size = ignore_prefix_size
        self.ignore_id = ignore_id
        self.extract_feats_in_collect_stats = extract_feats_in_collect_stats

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        src_text: torch.Tensor | None = None,
        src_text_lengths: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Batch loss, logged stats and the batch size as weight (ESPnet's contract).

        SpecAugment is called here rather than through :meth:`features`: compiled, it is
        the graph's one break (it runs eagerly, see :meth:`_augment`), and a break inside a
        nested call would also cut the graph of every caller.
        """
        feats, feats_lengths = self._normalized_features(speech, speech_lengths)
        if self.specaug is not None and self.training:
            feats, feats_lengths = self._augment(feats, feats_lengths)
        losses = self._feature_losses(feats, feats_lengths, text, text_lengths, src_text, src_text_lengths)
        total = losses.ce.sum() + self.ctc_weight * losses.ctc.sum()
        tokens = losses.tokens.sum().clamp(min=1)
        loss = total / (losses.src_tokens + 1).sum() if self.ctc_weight > 0 else total / tokens
        stats = dict(
            loss=(total / tokens).detach(),
            loss_ce=(losses.ce.sum() / tokens).detach(),
            loss_ctc=(losses.ctc.sum() / tokens).detach(),
            acc=(losses.correct.sum() / tokens).detach(),
            compression_ratio=(
                losses.compressed_lengths.sum() / losses.encoder_lengths.sum().clamp(min=1)
            ).detach().float(),
            ctc_infeasible=(~losses.ctc_feasible).sum().detach().float(),
        )
        batch_size = torch.full((), speech.size(0), dtype=torch.long, device=loss.device)  # no copy from the host
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight

    def utterance_losses(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        src_text: torch.Tensor | None = None,
        src_text_lengths: torch.Tensor | None = None,
    ) -> UtteranceLosses:
        """Every loss term per utterance; ``forward`` only reduces these."""
        feats, feats_lengths = self.features(speech, speech_lengths)
        return self._feature_losses(feats, feats_lengths, text, text_lengths, src_text, src_text_lengths)

    def _feature_losses(
        self,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        src_text: torch.Tensor | None,
        src_text_lengths: torch.Tensor | None,
    ) -> UtteranceLosses:
        enc = self.encoder.encode(feats, feats_lengths)
        ce, tokens, correct = self._translation_terms(enc, text, text_lengths)
        if self.ctc_weight > 0:
            if src_text is None or src_text_lengths is None:
                raise ValueError("ctc_weight > 0 needs src_text (the source transcript) in the data")
            ctc, feasible = self._ctc_terms(enc, src_text, src_text_lengths)
            src_tokens = src_text_lengths
        else:
            ctc = torch.zeros_like(ce)
            feasible = torch.ones_like(text_lengths, dtype=torch.bool)
            src_tokens = torch.zeros_like(text_lengths)
        return UtteranceLosses(
            ce, tokens, correct, ctc, src_tokens, feasible, enc.ctc_lengths, enc.lengths
        )

    def _translation_terms(
        self, enc: CTCCompressEncoderOutput, text: torch.Tensor, text_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not isinstance(self.decoder, FBKTransformerDecoder):
            # ESPnet's decoders mask over the longest target: cut the padding to it (a read of the device)
            text = text[:, : int(text_lengths.max())]
        ys_in, ys_out = add_sos_eos(text, text_lengths, self.sos, self.eos, self.ignore_id)
        logits, _ = self.decoder(enc.hidden, enc.lengths, ys_in, text_lengths + 1)
        prefix = torch.arange(ys_out.size(1), device=ys_out.device) < self.ignore_prefix_size
        ys_out = ys_out.masked_fill(prefix, self.ignore_id)
        scored = ys_out != self.ignore_id
        ce = label_smoothed_nll(logits, ys_out, self.lsm_weight, self.ignore_id).sum(1)
        correct = ((logits.argmax(-1) == ys_out) & scored).sum(1)
        return ce, scored.sum(1), correct

    def _ctc_terms(
        self, enc: CTCCompressEncoderOutput, src_text: torch.Tensor, src_text_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC on the pre-compression frames; infeasible utterances count 0 (zero_infinity)."""
        targets = src_text.masked_fill(src_text == self.ignore_id, 0)
        log_probs = enc.ctc_logits.float().log_softmax(-1).transpose(0, 1)
        # the loss and its gradient read the lengths on the host: one copy there serves both
        input_lengths, target_lengths = torch.stack([enc.ctc_lengths.long(), src_text_lengths.long()]).cpu()
        ctc = ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, zero_infinity=True)
        feasible = enc.ctc_lengths >= ctc_min_input_lengths(targets, src_text_lengths)
        return ctc, feasible

    def encode_with_ctc(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> CTCCompressEncoderOutput:
        """Features -> normalised features -> (augmented in training) -> encoder."""
        return self.encoder.encode(*self.features(speech, speech_lengths))

    def features(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the encoder reads: the features, normalised, augmented in training.

        Padded frames need no zeroing here: the encoder never reads them.
        """
        feats, feats_lengths = self._normalized_features(speech, speech_lengths)
        if self.specaug is not None and self.training:
            feats, feats_lengths = self._augment(feats, feats_lengths)
        return feats, feats_lengths

    def _normalized_features(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feats, feats_lengths = self._extract_feats(speech, speech_lengths)
        if self.normalize is not None:
            feats, feats_lengths = self.normalize(feats, feats_lengths)
        return feats, feats_lengths

    @torch.compiler.disable
    def _augment(self, feats: torch.Tensor, feats_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SpecAugment, never compiled: ESPnet's reads the device to draw its masks' positions
        (two waits for it on a GPU), which a graph cannot hold."""
        return self.specaug(feats, feats_lengths)

    def encode(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ESPnet's inference interface: compressed states (B, T', D) and lengths."""
        enc = self.encode_with_ctc(speech, speech_lengths)
        return enc.hidden, enc.lengths

    def collect_feats(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
        **kwargs,
    ) -> dict[str, torch.Tensor]:
        feats, feats_lengths = self._extract_feats(speech, speech_lengths)
        return {"feats": feats, "feats_lengths": feats_lengths}

    def _extract_feats(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.frontend is None:
            return speech, speech_lengths
        return self.frontend(speech, speech_lengths)
