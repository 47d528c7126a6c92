"""SRT and WebVTT written by their libraries, read back by them."""

import datetime

import pytest
import srt
import webvtt

from espnet2_ext.fileio.subtitle_files import subtitle_text
from espnet2_ext.subtitles import Block

BLOCKS = [Block(500, 2250, ("Der Vater schreibt heute", "unsere billigen Bücher.")),
          Block(3_723_004, 3_725_000, ("Ja.",))]


def test_srt_reads_back_as_written():
    text = subtitle_text(BLOCKS, "srt")
    assert text.startswith("1\n00:00:00,500 --> 00:00:02,250\nDer Vater schreibt heute\nunsere billigen Bücher.\n\n2\n")
    parsed = list(srt.parse(text))
    assert [(s.index, s.start, s.end, s.content) for s in parsed] == [
        (1, datetime.timedelta(milliseconds=500), datetime.timedelta(milliseconds=2250),
         "Der Vater schreibt heute\nunsere billigen Bücher."),
        (2, datetime.timedelta(hours=1, minutes=2, seconds=3, milliseconds=4), datetime.timedelta(hours=1, seconds=125),
         "Ja."),
    ]


def test_vtt_reads_back_as_written():
    text = subtitle_text(BLOCKS, "vtt")
    assert text.startswith("WEBVTT\n\n00:00:00.500 --> 00:00:02.250\nDer Vater schreibt heute\n")
    captions = webvtt.from_string(text).captions
    assert [(c.start, c.end, c.lines) for c in captions] == [
        ("00:00:00.500", "00:00:02.250", ["Der Vater schreibt heute", "unsere billigen Bücher."]),
        ("01:02:03.004", "01:02:05.000", ["Ja."]),
    ]


def test_no_blocks_give_valid_empty_files():
    assert subtitle_text([], "srt") == ""
    assert subtitle_text([], "vtt") == "WEBVTT\n"
    assert webvtt.from_string("WEBVTT\n").captions == []


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="subtitle format must be one of srt, vtt"):
        subtitle_text(BLOCKS, "ass")
