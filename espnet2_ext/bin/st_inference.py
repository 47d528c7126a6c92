#!/usr/bin/env python3
"""Translate speech with a trained CTC-compressing ST model (FBK's decoding set-up).

Utterances are encoded in batches (the encoder is padding-invariant, so batching
never changes a result); each is then searched with ESPnet's batch beam search,
extended with fairseq's no-repeat n-gram rule, its stopping rule, and a forced
language tag after <sos>.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.text.build_tokenizer import build_tokenizer
from espnet2.text.token_id_converter import TokenIDConverter
from espnet2.torch_utils.device_funcs import to_device
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
from espnet2.utils import config_argparse
from espnet2.utils.types import str2triple_str, str_or_none

from espnet2_ext.st.beam_search import EarlyStopBatchBeamSearch, NoRepeatNGramScorer
from espnet2_ext.tasks.st_ctc_compress import STCTCCompressTask

LANG_TAG_PREFIX = "<lang:"


class Translation(NamedTuple):
    """One hypothesis: detokenised text, its pieces and ids (tag and <eos> removed)."""

    text: str
    tokens: List[str]
    token_ids: List[int]
    score: float


def resolve_lang_tag(token_list: Sequence[str], lang_tag: Optional[str]) -> int:
    """Id of the language tag to force; the model's only tag when none is given."""
    tags = [t for t in token_list if t.startswith(LANG_TAG_PREFIX)]
    if lang_tag is None:
        if len(tags) != 1:
            raise ValueError(
                f"the model knows {len(tags)} language tags ({', '.join(tags) or 'none'}); "
                "choose one with --lang_tag"
            )
        lang_tag = tags[0]
    if lang_tag not in token_list:
        raise ValueError(f"--lang_tag {lang_tag!r} is not in the model's token list (tags: {tags})")
    return token_list.index(lang_tag)


class Speech2Translation:
    """Load a trained model once, then translate batches of features.

    Args:
        st_train_config: the ``config.yaml`` written by training.
        st_model_file: model weights (e.g. the averaged checkpoint).
        device: ``cpu`` or ``cuda``.
        beam_size: beam width (FBK: 5).
        no_repeat_ngram_size: forbid repeating n-grams of this size (0: off; FBK: 5).
        maxlen_a, maxlen_b: at most ``maxlen_a * input_frames + maxlen_b`` tokens.
        nbest: hypotheses returned per utterance.
        lang_tag: target-language tag forced after <sos>, e.g. ``<lang:de>``.
        dtype: inference dtype.
    """

    def __init__(
        self,
        st_train_config: Union[Path, str],
        st_model_file: Union[Path, str],
        device: str = "cpu",
        beam_size: int = 5,
        no_repeat_ngram_size: int = 5,
        maxlen_a: float = 0.0,
        maxlen_b: int = 200,
        nbest: int = 1,
        lang_tag: Optional[str] = None,
        dtype: str = "float32",
    ):
        if nbest > beam_size:
            raise ValueError(f"nbest ({nbest}) cannot exceed beam_size ({beam_size})")
        model, train_args = STCTCCompressTask.build_model_from_file(
            st_train_config, st_model_file, device
        )
        self.model = model.to(dtype=getattr(torch, dtype)).eval()
        self.train_args = train_args
        self.device = device
        self.dtype = dtype
        self.nbest = nbest
        self.maxlen_a = maxlen_a
        self.maxlen_b = maxlen_b
        token_list = model.token_list
        self.converter = TokenIDConverter(token_list=token_list)
        self.tokenizer = build_tokenizer(token_type=train_args.token_type, bpemodel=train_args.bpemodel)
        self.primer = [model.sos, resolve_lang_tag(token_list, lang_tag)]
        scorers = {"decoder": model.decoder}
        if no_repeat_ngram_size > 0:
            scorers["no_repeat_ngram"] = NoRepeatNGramScorer(no_repeat_ngram_size, len(token_list))
        self.beam_search = EarlyStopBatchBeamSearch(
            scorers=scorers,
            weights={name: 1.0 for name in scorers},
            beam_size=beam_size,
            vocab_size=len(token_list),
            sos=model.sos,
            eos=model.eos,
            hyp_primer=self.primer,
            normalize_length=True,
        ).to(device=device, dtype=getattr(torch, dtype)).eval()

    @torch.no_grad()
    def __call__(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> List[List[Translation]]:
        """N-best translations of each utterance of a padded batch (B, T, F)."""
        batch = to_device(
            {"speech": speech.to(getattr(torch, self.dtype)), "speech_lengths": speech_lengths},
            self.device,
        )
        hidden, lengths = self.model.encode(**batch)
        return [
            self._search(hidden[i, : lengths[i]], int(speech_lengths[i]))
            for i in range(hidden.size(0))
        ]

    def _search(self, hidden: torch.Tensor, n_frames: int) -> List[Translation]:
        maxlen = max(1, int(self.maxlen_a * n_frames + self.maxlen_b))
        hyps = self.beam_search(hidden, maxlenratio=-float(maxlen))[: self.nbest]
        return [self._to_translation(hyp.yseq.tolist(), float(hyp.score)) for hyp in hyps]

    def _to_translation(self, yseq: List[int], score: float) -> Translation:
        token_ids = yseq[len(self.primer) :]
        if token_ids and token_ids[-1] == self.model.eos:
            token_ids = token_ids[:-1]
        tokens = self.converter.ids2tokens(token_ids)
        return Translation(self.tokenizer.tokens2text(tokens), tokens, token_ids, score)


def inference(
    output_dir: str,
    data_path_and_name_and_type: Sequence[Tuple[str, str, str]],
    st_train_config: str,
    st_model_file: str,
    key_file: Optional[str] = None,
    batch_size: int = 1,
    ngpu: int = 0,
    num_workers: int = 1,
    seed: int = 0,
    **search_kwargs,
) -> None:
    """Translate every utterance of the data; write ``<output_dir>/<n>best_recog/{text,...}``."""
    set_all_random_seed(seed)
    translator = Speech2Translation(
        st_train_config, st_model_file, device="cuda" if ngpu > 0 else "cpu", **search_kwargs
    )
    loader = STCTCCompressTask.build_streaming_iterator(
        data_path_and_name_and_type,
        dtype=translator.dtype,
        batch_size=batch_size,
        key_file=key_file,
        num_workers=num_workers,
        preprocess_fn=STCTCCompressTask.build_preprocess_fn(translator.train_args, False),
        collate_fn=STCTCCompressTask.build_collate_fn(translator.train_args, False),
        inference=True,
    )
    with DatadirWriter(output_dir) as writer:
        for keys, batch in loader:
            nbests = translator(batch["speech"], batch["speech_lengths"])
            for key, nbest in zip(keys, nbests):
                for n, hyp in enumerate(nbest, start=1):
                    out = writer[f"{n}best_recog"]
                    out["text"][key] = hyp.text
                    out["token"][key] = " ".join(hyp.tokens)
                    out["token_int"][key] = " ".join(map(str, hyp.token_ids))
                    out["score"][key] = str(hyp.score)


def get_parser() -> argparse.ArgumentParser:
    parser = config_argparse.ArgumentParser(
        description="Translate speech with a CTC-compressing ST model",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--log_level", default="INFO", choices=("ERROR", "WARNING", "INFO", "DEBUG"))
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: one GPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=1, help="utterances encoded together")
    group = parser.add_argument_group("Input data")
    group.add_argument(
        "--data_path_and_name_and_type", type=str2triple_str, required=True, action="append",
        help="e.g. dump/test/feats.scp,speech,kaldi_ark",
    )
    group.add_argument("--key_file", type=str_or_none)
    group = parser.add_argument_group("Model")
    group.add_argument("--st_train_config", required=True)
    group.add_argument("--st_model_file", required=True)
    group = parser.add_argument_group("Search")
    group.add_argument("--beam_size", type=int, default=5)
    group.add_argument("--no_repeat_ngram_size", type=int, default=5)
    group.add_argument("--maxlen_a", type=float, default=0.0)
    group.add_argument("--maxlen_b", type=int, default=200)
    group.add_argument("--nbest", type=int, default=1)
    group.add_argument("--lang_tag", type=str_or_none, default=None, help="e.g. <lang:de>")
    group.add_argument("--dtype", default="float32", choices=("float16", "float32", "float64"))
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = vars(get_parser().parse_args(cmd))
    args.pop("config", None)
    logging.basicConfig(
        level=args.pop("log_level"),
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    inference(**args)


if __name__ == "__main__":
    main()
