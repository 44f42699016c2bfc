#!/usr/bin/env python3
"""Speech to text with a Whisper IR folder: a 16 kHz WAV file in, its words streamed.

The audio becomes a log-mel spectrogram (numpy, as transformers' WhisperFeatureExtractor
computes it), 30 seconds at a time. The encoder reads each window once; the decoder
keeps its KV cache in its own state and starts from the forced tokens
(<|startoftranscript|>, for a multilingual model the language and the task, then
<|notimestamps|>), and each step picks the likeliest token that is not suppressed,
until <|endoftext|>. Longer audio is cut into 30-second windows, transcribed one after
the other.
MODEL_DIR is what `optimum-cli export openvino --task
automatic-speech-recognition-with-past` writes (scripts/prepare_whisper.py makes the
default one from Whisper tiny.en).
Example: python samples/whisper.py speech.wav
"""

import argparse
import json
import sys
import time
import wave
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the detokenizer IR's string operations

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models/whisper-tiny.en"
EXPORT_HINT = "run scripts/prepare_whisper.py, or optimum-cli export openvino"
WHISPER_FILES = (
    "openvino_encoder_model.xml",
    "openvino_decoder_model.xml",
    "openvino_detokenizer.xml",
    "generation_config.json",
)
SAMPLE_RATE = 16000  # Whisper heard 16 kHz audio in training
WINDOW = 30 * SAMPLE_RATE  # the encoder's 30 seconds
N_FFT = 400  # 25 ms frames...
HOP = 160  # ...every 10 ms: 3000 frames a window
N_MELS = 80
CONVERT_HINT = "convert it with ffmpeg -i IN -ar 16000 -ac 1 -c:a pcm_s16le OUT.wav"
# Compute in f32: the numbers then equal the references' (the CPU's default may be
# bf16).
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}


def read_wav(parser, path: Path) -> np.ndarray:
    """A 16 kHz mono 16-bit WAV file -> float32 samples in [-1, 1); else exits."""
    if not path.is_file():
        parser.error(f"no WAV file {path}")
    try:
        with wave.open(str(path)) as file:
            layout = (file.getframerate(), file.getnchannels(), file.getsampwidth())
            frames = file.readframes(file.getnframes())
    except (wave.Error, EOFError) as error:
        parser.error(f"{path} is not a WAV file ({error}): {CONVERT_HINT}")
    if layout != (SAMPLE_RATE, 1, 2):
        rate, channels, width = layout
        found = f"{rate} Hz, {channels} channel(s), {8 * width}-bit"
        parser.error(f"{path} is {found}, not 16 kHz mono 16-bit: {CONVERT_HINT}")
    samples = np.frombuffer(frames, dtype="<i2")
    if samples.size == 0:
        parser.error(f"{path} holds no audio")
    return samples.astype(np.float32) / 32768


def mel_filters() -> np.ndarray:
    """(N_FFT / 2 + 1, N_MELS): how much each FFT bin adds to each mel band.

    Triangles evenly spaced on Slaney's mel scale (linear below 1 kHz, logarithmic
    above) from 0 to 8 kHz, each scaled to the same area, as transformers'
    mel_filter_bank(norm="slaney", mel_scale="slaney") makes them."""
    log_step = np.log(6.4) / 27  # ln of the frequency ratio per mel above 1 kHz
    top_mel = 15 + np.log(8000 / 1000) / log_step
    mels = np.linspace(0, top_mel, N_MELS + 2)
    band_edges = np.where(
        mels < 15, mels * 200 / 3, 1000 * np.exp(log_step * (mels - 15))
    )
    bins = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    slopes = band_edges[None, :] - bins[:, None]  # (bins, edges)
    rising = -slopes[:, :-2] / np.diff(band_edges)[:-1]
    falling = slopes[:, 2:] / np.diff(band_edges)[1:]
    triangles = np.maximum(0, np.minimum(rising, falling))
    return triangles * (2 / (band_edges[2:] - band_edges[:-2]))


def log_mel(samples: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """A window of audio (padded with silence to 30 s) -> (N_MELS, 3000) features."""
    padded = np.pad(samples, (0, WINDOW - len(samples)))
    # Frames centred on every HOP-th sample: the ends mirrored, as torch.stft does.
    padded = np.pad(padded, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic
    power = np.abs(np.fft.rfft(frames * hann)) ** 2  # (3001, bins)
    mel = power[:-1] @ filters  # the last frame is dropped, as transformers drops it
    log_spec = np.log10(np.maximum(mel, 1e-10)).T
    # Within 8 decades (80 dB) of the loudest, then scaled to about [-1, 1].
    log_spec = np.maximum(log_spec, log_spec.max() - 8)
    return ((log_spec + 4) / 4).astype(np.float32)


def forced_tokens(config: dict, language: str) -> list[int]:
    """The decoder's first tokens: start, language and task (multilingual models
    only: English-only ones know neither), no timestamps."""
    tokens = [config["decoder_start_token_id"]]
    if config.get("is_multilingual"):
        tokens.append(config["lang_to_id"][f"<|{language}|>"])
        tokens.append(config["task_to_id"]["transcribe"])
    tokens.append(config["no_timestamps_token_id"])
    return tokens


def decode(detokenizer: ov.CompiledModel, tokens: list[int]) -> str:
    """The text of some token ids."""
    return str(detokenizer(np.array([tokens], dtype=np.int64))["string_output"][0])


def stream(detokenizer: ov.CompiledModel, tokens: list[int], printed: str) -> str:
    """Print what the tokens' text adds to `printed` (the text so far); return the text.

    All tokens are decoded again each time: decoded alone, a token may lose its leading
    space. A text ending in U+FFFD ends inside a UTF-8 character whose other bytes come
    with the next token, so it waits."""
    text = decode(detokenizer, tokens)
    if text.endswith("\ufffd"):
        return printed
    print(text[len(printed) :], end="", flush=True)
    return text


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("model_dir", nargs="?", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("wav", type=Path, help="16 kHz mono 16-bit PCM")
    parser.add_argument("--language", default="en", help="multilingual models: de, fr")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    model_dir = Path(args.model_dir)
    for name in WHISPER_FILES:
        if not (model_dir / name).is_file():
            parser.error(f"no {model_dir / name}: {EXPORT_HINT}")
    samples = read_wav(parser, args.wav)
    config = json.loads((model_dir / "generation_config.json").read_text())
    languages = config.get("lang_to_id", {})
    if config.get("is_multilingual") and f"<|{args.language}|>" not in languages:
        parser.error(f"the model knows no language {args.language}")

    # Created after `import openvino_tokenizers`, so that it reads the detokenizer.
    core = ov.Core()
    networks = [core.read_model(model_dir / name) for name in WHISPER_FILES[:3]]
    encoder_model, decoder_model, detokenizer_model = networks
    # Only a stateful export (with-past) has beam_idx: the KV cache lives in the
    # decoder's state, and the encoder's keys and values are computed once a window.
    if "beam_idx" not in decoder_model.inputs[-1].get_names():
        parser.error(f"{model_dir} holds no stateful decoder: {EXPORT_HINT}")
    # Static shapes compile faster kernels than dynamic ones: one window of features,
    # and its 1500 encoder states, at a time.
    encoder_model.reshape([1, N_MELS, WINDOW // HOP])
    states_shape = encoder_model.output(0).partial_shape  # (1, 1500, hidden)
    decoder_model.reshape({"encoder_hidden_states": states_shape})
    device_config = F32_CONFIG if args.f32 else {}
    encoder = core.compile_model(encoder_model, args.device, device_config)
    decoder = core.compile_model(decoder_model, args.device, device_config)
    request = decoder.create_infer_request()
    detokenizer = core.compile_model(detokenizer_model, "CPU")  # strings: CPU only

    filters = mel_filters()
    suppressed = config.get("suppress_tokens", [])
    suppressed_first = suppressed + config.get("begin_suppress_tokens", [])
    end_of_text = config["eos_token_id"]
    forced = forced_tokens(config, args.language)
    start = time.perf_counter()
    tokens = []  # the transcript's token ids, every window's
    printed = ""  # the transcript's text on stdout so far
    for offset in range(0, len(samples), WINDOW):
        features = log_mel(samples[offset : offset + WINDOW], filters)
        # The encoder's output stays the decoder's input for the whole window: set once,
        # it is not copied again at every step.
        audio_states = ov.Tensor(encoder(features[None])[0])  # (1, 1500, hidden)
        request.set_tensor("encoder_hidden_states", audio_states)
        request.reset_state()  # a new window: nothing cached
        new_ids = forced
        length = len(forced)  # the positions the decoder has seen in this window
        while length < config.get("max_length", 448):
            request.start_async(
                {
                    "input_ids": np.array([new_ids], dtype=np.int64),
                    "beam_idx": np.zeros(1, dtype=np.int32),
                }
            )
            # While the decoder computes the next token, print the ones before it.
            printed = stream(detokenizer, tokens, printed)
            request.wait()
            logits = request.get_tensor("logits").data[0, -1].copy()
            # The first token may not be a space or the end; some never come.
            if length == len(forced):
                logits[suppressed_first] = -np.inf
            else:
                logits[suppressed] = -np.inf
            next_token = int(logits.argmax())
            if next_token == end_of_text:
                break
            tokens.append(next_token)
            new_ids = [next_token]
            length += 1
    print(decode(detokenizer, tokens)[len(printed) :], flush=True)
    seconds = time.perf_counter() - start
    audio_seconds = len(samples) / SAMPLE_RATE
    print(
        f"{audio_seconds:.1f} s of audio, {len(tokens)} tokens in {seconds:.2f} s "
        f"(real-time factor {seconds / audio_seconds:.3f})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
    except (RuntimeError, OSError, ValueError) as error:  # OpenVINO, files, JSON
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
