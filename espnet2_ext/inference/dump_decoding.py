"""The recipe's decode stage: translate a dump dir of features into ESPnet's output files."""

from collections.abc import Sequence

from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

from espnet2_ext.inference.speech2translation import Speech2Translation


def decode_dump(
    output_dir: str,
    data_path_and_name_and_type: Sequence[tuple[str, str, str]],
    st_train_config: str,
    st_model_file: str,
    key_file: str | None = None,
    batch_size: int = 1,
    ngpu: int = 0,
    num_workers: int = 1,
    seed: int = 0,
    **search_kwargs,
) -> None:
    """Translate every utterance of the data; write ``<output_dir>/<n>best_recog/{text,...}``."""
    from espnet2_ext.tasks.st_ctc_compress import STCTCCompressTask  # ESPnet's data loading

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
            nbests = translator.translate_features(batch["speech"], batch["speech_lengths"])
            for key, nbest in zip(keys, nbests):
                for n, hyp in enumerate(nbest, start=1):
                    out = writer[f"{n}best_recog"]
                    out["text"][key] = hyp.text
                    out["token"][key] = " ".join(hyp.tokens)
                    out["token_int"][key] = " ".join(map(str, hyp.token_ids))
                    out["score"][key] = str(hyp.score)
