#!/usr/bin/env python3
"""Text to speech with a Piper voice (a VITS model), written to a 16-bit WAV file.

eSpeak NG turns the text into IPA phonemes, a clause at a time; the voice's phoneme map
turns each sentence's phonemes into ids; the VITS model turns the ids into audio, one
inference a sentence; the sentences follow each other in the WAV file. Each sentence's
phonemes are printed on stdout, a line each: `--phonemes` takes such lines instead of
text (eSpeak is then not used).
VOICE is a Piper voice's .onnx file, its .onnx.json beside it (the espeak voice, the
phoneme map, the sample rate, the default scales); scripts/prepare_voice.py fetches the
default one. OpenVINO reads the ONNX file as it is.
The noise scales make each run's audio differ (the model draws its own noise, unseeded):
`--noise-scale 0 --noise-w 0` gives the same audio every time. The voice is always
computed in f32 (see F32_CONFIG).
Example: python samples/text_to_speech.py "Hello from OpenVINO." --output hello.wav
"""

import argparse
import ctypes
import json
import os
import re
import sys
import time
import unicodedata
import wave
from pathlib import Path

import espeakng_loader  # eSpeak NG's library and its data, from PyPI
import numpy as np
import openvino as ov

DEFAULT_VOICE = (
    Path(__file__).resolve().parents[1]
    / "models/piper-en_US-joe-medium/en_US-joe-medium.onnx"
)
VOICE_HINT = "run scripts/prepare_voice.py, or download a voice's .onnx and .onnx.json"
# Piper writes a clause's punctuation into its phonemes (the voices learned to read
# it); ". ? !" end a sentence, ", : ;" are followed by a space.
CLAUSE_MARKS = ".?!,:;"
SENTENCE_ENDS = (".", "?", "!")
PAUSES = (",", ":", ";")
AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_Initialize: no sound device, nothing played
IPA = 2  # espeak_TextToPhonemes: phonemes as IPA characters
# Always f32. Where the CPU's default is bf16 (seen on an AMD EPYC with AVX512-BF16),
# OpenVINO 2026.4.1 gets a noisy sentence's length wrong about one time in ten (then
# "Range ... overflow", or no audio); in f32 never, in 400 runs, and the numbers
# equal onnxruntime's.
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def read_voice(path: Path) -> dict:
    """The voice's config, the .onnx.json beside its .onnx file. What is wrong with
    the voice is raised, for main's guard to print in one line."""
    for name in (path, Path(f"{path}.json")):
        if not name.is_file():
            raise FileNotFoundError(f"no {name}: {VOICE_HINT}")
    config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    # Piper voices of other languages take pinyin or plain letters instead.
    if config.get("phoneme_type", "espeak") != "espeak":
        raise ValueError(f"{path}.json: {config['phoneme_type']} phonemes; eSpeak only")
    return config


def start_espeak(espeak_voice: str) -> ctypes.CDLL:
    """eSpeak NG's library, started (synchronous, its data from espeakng-loader) and
    speaking ESPEAK_VOICE."""
    espeak = ctypes.CDLL(espeakng_loader.get_library_path())
    espeak.espeak_TextToPhonemes.restype = ctypes.c_char_p
    data_path = espeakng_loader.get_data_path().encode()
    if espeak.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0) < 0:
        raise RuntimeError(f"eSpeak NG does not start with its data in {data_path}")
    if espeak.espeak_SetVoiceByName(espeak_voice.encode()) != 0:
        raise ValueError(f"eSpeak NG has no voice {espeak_voice}")
    return espeak


def clause_mark(clause_text: str) -> str:
    """The punctuation that ends a clause's text: the first of a run ("?!" is a
    question); none for an ellipsis, which eSpeak reads as a pause."""
    text = clause_text.rstrip().rstrip("\"')]}»”’")  # closing quotes, brackets too
    if text.endswith("..."):
        return ""
    marks = text[len(text.rstrip(CLAUSE_MARKS)) :]
    return marks[:1]


def phonemize(espeak: ctypes.CDLL, text: str) -> list[str]:
    """The text's sentences as Piper phonemizes them: each clause's IPA, its mark and a
    space after ", : ;". A sentence ends at ". ? !", a blank line, or the text's end.

    espeak_TextToPhonemes takes a clause from where the pointer points and moves the
    pointer past it, one character past: it looks ahead to find the clause's end. The
    clause's punctuation is not in the phonemes; it is read from the text consumed.
    (Piper's eSpeak fork returns it instead; stock eSpeak NG has no such call.)"""
    encoded = text.encode()
    buffer = ctypes.create_string_buffer(encoded)
    base = ctypes.addressof(buffer)
    pointer = ctypes.c_void_p(base)
    sentences = []
    sentence = ""
    while pointer.value is not None:
        start = pointer.value - base
        phonemes = espeak.espeak_TextToPhonemes(ctypes.byref(pointer), 0, IPA).decode()
        # The clause's text, without the character looked ahead at (NULL: the end).
        end = pointer.value - base if pointer.value else len(encoded) + 1
        clause_text = encoded[start : end - 1].decode(errors="ignore")
        # A blank line ends a paragraph, for eSpeak: the sentence ends, with no mark.
        paragraph_end = re.search(r"\n\s*\n", clause_text)
        mark = "" if paragraph_end else clause_mark(clause_text)
        # Words of another language come inside (lang) flags: Piper drops the flags.
        sentence += re.sub(r"\([^)]+\)", "", phonemes) + mark
        if mark in PAUSES:
            sentence += " "
        if mark in SENTENCE_ENDS or paragraph_end:
            sentences.append(sentence)
            sentence = ""
    sentences.append(sentence)
    return [sentence for sentence in sentences if sentence]


def phoneme_ids(phonemes: str, id_map: dict) -> list[int]:
    """Piper's ids of a sentence: BOS, then each phoneme (a Unicode code point after
    NFD, so an accent is a phoneme of its own) followed by a pad, then EOS. Phonemes
    the map lacks are skipped, as Piper skips them."""
    ids = id_map["^"] + id_map["_"]
    for phoneme in unicodedata.normalize("NFD", phonemes):
        if phoneme in id_map:
            ids += id_map[phoneme] + id_map["_"]
    return ids + id_map["$"]


def to_int16(audio: np.ndarray) -> np.ndarray:
    """A sentence's audio as Piper writes it: scaled to its own peak, 16-bit."""
    peak = np.abs(audio).max()
    audio = audio / peak if peak >= 1e-8 else np.zeros_like(audio)
    return np.clip(audio * 32767, -32767, 32767).astype(np.int16)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """Mono 16-bit PCM. Written beside PATH and renamed when whole: an interrupted run
    leaves no half-written file behind."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with wave.open(str(partial), "wb") as file:
            file.setnchannels(1)
            file.setsampwidth(2)
            file.setframerate(sample_rate)
            file.writeframes(samples.astype("<i2").tobytes())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("voice", nargs="?", type=Path, default=DEFAULT_VOICE)
    parser.add_argument(
        "text", help="what to say (with --phonemes: IPA, a sentence a line)"
    )
    parser.add_argument("--output", type=Path, required=True, help="a .wav file")
    parser.add_argument("--speaker", type=int, help="multi-speaker voices: 0, 1...")
    parser.add_argument("--length-scale", type=float, help="> 1 speaks slower")
    parser.add_argument("--noise-scale", type=float, help="0: no noise in the voice")
    parser.add_argument("--noise-w", type=float, help="0: no noise in the durations")
    parser.add_argument("--phonemes", action="store_true", help="TEXT is IPA")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    args = parser.parse_args()
    if not args.text.strip():
        parser.error("the text is empty")
    if not args.output.resolve().parent.is_dir():
        parser.error(f"no folder for --output {args.output}")
    config = read_voice(args.voice)
    speakers = config.get("num_speakers", 1)
    if args.speaker is not None and speakers <= 1:
        parser.error(f"{args.voice} has one speaker: leave --speaker out")
    if args.speaker is not None and not 0 <= args.speaker < speakers:
        parser.error(f"--speaker must be 0 to {speakers - 1} for {args.voice}")
    # The voice's own noise, length and noise_w scales, unless the arguments say others.
    inference = config["inference"]
    scales = [inference["noise_scale"], inference["length_scale"], inference["noise_w"]]
    asked = [args.noise_scale, args.length_scale, args.noise_w]
    for index, value in enumerate(asked):
        if value is not None:
            scales[index] = value
    if scales[1] <= 0:
        parser.error("--length-scale must be above 0")

    start = time.perf_counter()
    if args.phonemes:
        sentences = [line for line in args.text.split("\n") if line.strip()]
    else:
        espeak = start_espeak(config["espeak"]["voice"])
        sentences = phonemize(espeak, args.text)
    phonemize_ms = (time.perf_counter() - start) * 1000
    id_map = config["phoneme_id_map"]
    sentence_ids = [phoneme_ids(sentence, id_map) for sentence in sentences]
    # Spaces and punctuation alone, or phonemes the voice lacks, say nothing.
    phonemes = unicodedata.normalize("NFD", "".join(sentences))
    if not any(char in id_map and char not in " " + CLAUSE_MARKS for char in phonemes):
        parser.error("the text holds nothing to say")

    start = time.perf_counter()
    voice = ov.Core().compile_model(args.voice, args.device, F32_CONFIG)
    compile_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    audio = []
    for sentence, ids in zip(sentences, sentence_ids):
        inputs = {
            "input": np.array([ids], dtype=np.int64),  # (1, phoneme ids)
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array(scales, dtype=np.float32),  # noise, length, noise_w
            "sid": np.array([args.speaker or 0], dtype=np.int64),
        }
        # A single-speaker voice has no sid input.
        inputs = {port.any_name: inputs[port.any_name] for port in voice.inputs}
        output = voice(inputs)[0]  # (1, 1, 1, samples)
        audio.append(to_int16(output.reshape(-1)))
        print(sentence, flush=True)
    infer_ms = (time.perf_counter() - start) * 1000
    samples = np.concatenate(audio)
    write_wav(args.output, samples, config["audio"]["sample_rate"])
    print(f"wrote {args.output}", file=sys.stderr)

    audio_seconds = len(samples) / config["audio"]["sample_rate"]
    stats = f"{len(sentences)} sentences, {sum(map(len, sentence_ids))} phoneme ids, "
    stats += f"{audio_seconds:.2f} s of audio; phonemized in {phonemize_ms:.0f} ms, "
    stats += f"compiled in {compile_ms:.0f} ms, inferred in {infer_ms:.0f} ms "
    stats += f"(real-time factor {infer_ms / 1000 / audio_seconds:.3f})"
    print(stats, file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
    except (RuntimeError, OSError, ValueError) as error:  # OpenVINO, files, JSON
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
