#!/usr/bin/env python3
"""Live translation in a browser: a page at ``http://HOST:PORT/``, simulstream's protocol at ``ws://HOST:PORT/ws``.

Open the page, press the button and speak: the words appear as the translator commits
them. Any simulstream client works too (``simulstream_wavs_client --uri
ws://HOST:PORT/ws --wav-list-file LIST``). Each client gets a translator of its own
(``--translator live``: the stream cut at the speaker's pauses, each utterance
translated simultaneously); up to ``--max_clients`` at once, each computing with
``--num_threads`` threads. A client past the limit, one that sends malformed JSON,
an odd number of bytes, audio before its configuration, or nothing for
``--idle_seconds``, gets one error message and is closed; the others go on.

Binds to 127.0.0.1 (this machine only) unless ``--host`` says otherwise. Exit status
1 with one ``ERROR:`` line: the port in use, bad options, a model that cannot be
loaded. Ctrl-C stops it.

Usage:
    python -m espnet2_ext.bin.serve --model model.zip --segment_ms 400 --attention_layer 2
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
from espnet2_ext.utils.cli import ArgumentParser, CommandError, command

DEFAULTS = SimulOptions()


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model.zip from recipe stage 8, or its unpacked directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    parser.add_argument("--translator", default="live", choices=tuple(TRANSLATORS), help="what translates a stream")
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
    group = parser.add_argument_group("The translator's policy (as simulate's options)")
    group.add_argument("--policy", default=DEFAULTS.policy, choices=POLICIES)
    group.add_argument("--frame_num", type=int, default=DEFAULTS.frame_num, help="AlignAtt's f, EDAtt's lambda")
    group.add_argument("--frame_unit", default=DEFAULTS.frame_unit, choices=FRAME_UNITS)
    group.add_argument("--attn_threshold", type=float, default=DEFAULTS.attn_threshold, help="EDAtt's alpha")
    group.add_argument("--waitk", type=int, default=DEFAULTS.waitk, help="wait-k's k")
    group.add_argument("--waitk_source", default=DEFAULTS.waitk_source, choices=WAITK_SOURCES)
    group.add_argument("--segment_factor", type=int, default=DEFAULTS.segment_factor, help="40-ms frames a word")
    group.add_argument("--attention_layer", type=int, default=DEFAULTS.attention_layer, help="0-based")
    group.add_argument("--segment_ms", type=int, default=DEFAULTS.segment_ms, help="the policy runs once a chunk")
    group.add_argument("--cmvn", default=DEFAULTS.cmvn, choices=CMVN_MODES, help="global: the zip's statistics")
    group.add_argument("--beam_size", type=int, default=DEFAULTS.beam_size)
    group.add_argument("--no_repeat_ngram_size", type=int, default=DEFAULTS.no_repeat_ngram_size)
    group.add_argument("--maxlen_b", type=int, default=DEFAULTS.maxlen_b, help="tokens of an utterance at most")
    group.add_argument("--lang_tag", type=str_or_none, default=None)
    return parser


def checked(args: argparse.Namespace) -> SimulOptions:
    """The policy's options; CommandError for the server's own that are out of range."""
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
    return SimulOptions.checked(**{field.name: getattr(args, field.name) for field in fields(SimulOptions)})


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
        make = translator_factory(args.translator, args.model, args.cache_dir, args.device, **vars(options))
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
