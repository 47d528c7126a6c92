#!/usr/bin/env python3
"""Live translation in a browser: a page at ``http://HOST:PORT/``, simulstream's protocol at ``ws://HOST:PORT/ws``.

Open the page, press the button and speak: the words appear as the translator commits
them. Any simulstream client works too (``simulstream_wavs_client --uri
ws://HOST:PORT/ws --wav-list-file LIST``). Each client gets a translator of its own
(``--translator stream``: the whole stream translated with a bounded history, FBK's
StreamAtt; ``live``: the stream cut at the speaker's pauses, each utterance translated
simultaneously); up to ``--max_clients`` at once, each computing with
``--num_threads`` threads. A client past the limit, one that sends malformed JSON,
an odd number of bytes, audio before its configuration, or nothing for
``--idle_seconds``, gets one error message and is closed; the others go on.

Binds to 127.0.0.1 (this machine only) unless ``--host`` says otherwise. Exit status
1 with one ``ERROR:`` line: the port in use, bad options, a model that cannot be
loaded. Ctrl-C stops it.

The translator's options not given are the model's packed settings (stage 8 packs the
recipe's ``conf/simulate.yaml`` and ``conf/stream.yaml`` shared keys), else FBK's.

Usage:
    python -m espnet2_ext.bin.serve --model model.zip
    python -m espnet2_ext.bin.serve --model model.zip --host 0.0.0.0 --port 8000 --max_clients 4
"""

import argparse
import asyncio
import errno
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from espnet2.utils.types import str_or_none

from espnet2_ext.main_funcs.model_archive import ModelArchiveError
from espnet2_ext.serving.translators import TRANSLATORS
from espnet2_ext.simultaneous.options import CMVN_MODES, FRAME_UNITS, POLICIES, WAITK_SOURCES, SimulOptions
from espnet2_ext.streaming.options import ATTENTION_HISTORIES, AUDIO_CUTS, StreamOptions
from espnet2_ext.utils.cli import ArgumentParser, CommandError, command

STREAM_ONLY = tuple(f.name for f in fields(StreamOptions) if f.name not in {g.name for g in fields(SimulOptions)})


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--model", required=True, help="model.zip from recipe stage 8, or its unpacked directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    parser.add_argument("--translator", default="stream", choices=tuple(TRANSLATORS), help="what translates a stream")
    parser.add_argument(
        "--max_clients", type=int, default=None, help="clients at once (default: the cores / --num_threads)"
    )
    parser.add_argument("--idle_seconds", type=float, default=30.0, help="a client silent this long is closed")
    parser.add_argument("--num_threads", type=int, default=1, help="CPU threads of each client's computation")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--cache_dir", type=str_or_none, default=None, help="where zips are extracted")
    parser.add_argument(
        "--log_level", default="INFO", choices=("ERROR", "WARNING", "INFO", "DEBUG"), help="of the clients' log"
    )
    group = parser.add_argument_group("The translator (as simulate's options); each unset: the model's, else FBK's")
    group.add_argument("--policy", choices=POLICIES)
    group.add_argument("--frame_num", type=int, help="AlignAtt's f, EDAtt's lambda")
    group.add_argument("--frame_unit", choices=FRAME_UNITS)
    group.add_argument("--attn_threshold", type=float, help="EDAtt's alpha")
    group.add_argument("--waitk", type=int, help="wait-k's k")
    group.add_argument("--waitk_source", choices=WAITK_SOURCES)
    group.add_argument("--segment_factor", type=int, help="40-ms frames a word")
    group.add_argument("--attention_layer", type=int, help="0-based")
    group.add_argument("--segment_ms", type=int, help="the policy runs once a chunk")
    group.add_argument("--cmvn", choices=CMVN_MODES, help="global: the zip's statistics")
    group.add_argument("--beam_size", type=int)
    group.add_argument("--no_repeat_ngram_size", type=int)
    group.add_argument("--maxlen_b", type=int, help="tokens of an utterance at most")
    group.add_argument("--lang_tag", type=str_or_none)
    group.add_argument("--history", choices=ATTENTION_HISTORIES, help="--translator stream's text history")
    group.add_argument("--history_words", type=int, help="words of text kept (words, audio)")
    group.add_argument("--history_max_tokens", type=int, help="most tokens punctuation keeps")
    group.add_argument("--audio_cut", choices=AUDIO_CUTS, help="where the audio history starts once text left it")
    group.add_argument("--max_history_seconds", type=float, help="most audio re-encoded")
    group.add_argument("--pause_flush_seconds", type=float, help="a pause this long writes the hypothesis whole")
    return parser


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown, but not the translator's None (the model's, else FBK's)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def checked(args: argparse.Namespace) -> dict:
    """The translator's options given (checked as the translator checks them, the rest coming
    from the model); CommandError for the server's own that are out of range."""
    for option, lowest in (("num_threads", 1), ("max_clients", 1)):
        value = getattr(args, option)
        if value is not None and value < lowest:
            raise CommandError(f"--{option} must be >= {lowest}, got {value}")
    if not args.idle_seconds > 0:
        raise CommandError(f"--idle_seconds must be > 0, got {args.idle_seconds}")
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be in 0..65535, got {args.port}")
    if not Path(args.model).exists():
        raise CommandError(f"--model {args.model}: no such file or directory")
    given = {f.name: getattr(args, f.name) for f in fields(StreamOptions) if getattr(args, f.name) is not None}
    if args.translator != "stream":
        stream_only = [f"--{name}" for name in STREAM_ONLY if name in given]
        if stream_only:
            raise CommandError(f"{', '.join(stream_only)}: for --translator stream, not {args.translator}")
        SimulOptions.checked(**given)
    else:
        StreamOptions.checked(**{"history": "words", **given})
    return given


@command(ModelArchiveError, ValueError, on_interrupt="the server stopped")
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("espnet2_ext.serving").setLevel(args.log_level)
    options = checked(args)
    max_clients = args.max_clients or max(1, cores() // args.num_threads)

    from espnet2_ext.serving.server import LiveServer, listen

    try:
        sock = listen(args.host, args.port)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise CommandError(f"--port {args.port}: {args.host}:{args.port} is already in use") from None
        raise CommandError(f"--host {args.host} --port {args.port}: cannot listen there ({err.strerror or err})") from None
    with sock:
        import torch

        from espnet2_ext.inference.speech2translation import check_device
        from espnet2_ext.serving.translators import translator_factory

        check_device(args.device)
        torch.set_num_threads(args.num_threads)
        make = translator_factory(args.translator, args.model, args.cache_dir, args.device, **options)
        server = LiveServer(make, max_clients, args.idle_seconds)
        host, port = sock.getsockname()[:2]
        url = f"{'[' + host + ']' if ':' in host else host}:{port}"
        print(f"Serving http://{url}/ (WebSocket ws://{url}/ws): the {args.translator} translator, "
              f"{max_clients} client(s) at once, {args.num_threads} thread(s) each; Ctrl-C stops", file=sys.stderr)
        try:
            asyncio.run(server.run(sock))
        finally:
            server.close()


if __name__ == "__main__":
    sys.exit(main())
