"""What translate is given: the inputs named on the command line, checked before any work."""

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.inference.file_inputs import Input, InputListError, expand_inputs


@pytest.fixture
def wavs(tmp_path) -> list:
    paths = [tmp_path / "audio" / name for name in ("b.wav", "a.flac", "sub/c.wav")]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.zeros(1600, dtype=np.float32), 16000)
    return paths


def test_files_directories_and_wav_scp_in_order(wavs, tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text(f"utt2 {wavs[1]}\nutt1 {wavs[0]}\n", encoding="utf-8")
    inputs = expand_inputs([str(wavs[2]), str(tmp_path / "audio"), str(scp)])
    directory = sorted(str(p) for p in wavs)
    assert inputs == [Input(str(wavs[2]), str(wavs[2]))] + [Input(p, p) for p in directory] + [
        Input("utt2", str(wavs[1])), Input("utt1", str(wavs[0]))
    ]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: tmp / "missing.wav", "{path}: no such file or directory"),
        (lambda tmp: tmp / "missing.scp", "{path}: no such file or directory"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "directory {path} holds no audio files"),
        (lambda tmp: (tmp / "wav.scp").write_text("\n") and tmp / "wav.scp", "{path} lists no audio files"),
    ],
    ids=["missing audio file", "missing wav.scp", "audio-less directory", "empty wav.scp"],
)
def test_every_input_named_must_exist_and_hold_audio(wavs, tmp_path, make, message):
    """The same rule for each kind of input: a path typed wrong stops the run before any work."""
    path = make(tmp_path)
    with pytest.raises(InputListError, match="^" + message.format(path=path)):
        expand_inputs([str(wavs[0]), str(path)])


def test_missing_inputs_are_listed_together(wavs, tmp_path):
    missing = [str(tmp_path / f"missing{i}.wav") for i in range(3)]
    with pytest.raises(InputListError, match=f"^3 inputs do not exist: {missing[0]}, {missing[1]}, {missing[2]}$"):
        expand_inputs([missing[0], str(wavs[0]), *missing[1:]])


def test_wav_scp_naming_missing_files_is_refused_naming_them(wavs, tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text(f"utt1 {wavs[0]}\nutt2 {tmp_path / 'gone.wav'}\nutt3 {wavs[1]}\n", encoding="utf-8")
    message = f"^{scp}: 1 of 3 listed audio files do not exist: utt2 {tmp_path}/gone.wav$"
    with pytest.raises(InputListError, match=message):
        expand_inputs([str(scp)])


def test_non_utf8_wav_scp_names_the_line_and_the_byte_offset(wavs, tmp_path):
    scp = tmp_path / "wav.scp"
    good = "".join(f"utt{i:05d} {wavs[0]}\n" for i in range(2000)).encode()  # past the text reader's 8 KiB chunks
    scp.write_bytes(good + b"caf\xe9 " + str(wavs[1]).encode() + b"\n")
    with pytest.raises(InputListError) as caught:
        expand_inputs([str(scp)])
    assert str(caught.value) == (
        f"{scp}:2001: not UTF-8: byte 0xe9 at byte offset {len(good) + 3} (column 4): invalid continuation byte"
    )


def test_headerless_files_are_searched_for_only_when_their_rate_is_given(wavs, tmp_path):
    raw = tmp_path / "audio" / "d.raw"
    raw.write_bytes(np.zeros(1600, dtype="<i2").tobytes())
    assert str(raw) not in [i.path for i in expand_inputs([str(tmp_path / "audio")])]
    assert str(raw) in [i.path for i in expand_inputs([str(tmp_path / "audio")], headerless=True)]
    assert expand_inputs([str(raw)]) == [Input(str(raw), str(raw))], "named: its own error, if any, comes on reading"
