#!/usr/bin/env python3
"""Speech to text with a Whisper IR folder: a 16 kHz WAV file in, its words out, with
their times if asked.

The audio becomes a log-mel spectrogram (numpy, as transformers' WhisperFeatureExtractor
computes it). The encoder reads 30 seconds of it at a time; the decoder keeps its KV
cache in its own state and starts from the forced tokens (<|startoftranscript|>, for a
multilingual model the language and the task), and each step picks the likeliest token
that is not suppressed, until <|endoftext|>. The decoder writes timestamp tokens
(<|0.00|> to <|30.00|>, 20 ms apart) that cut the text into segments, by the rules
transformers and openai's whisper apply: the first token is a timestamp; timestamps
come in pairs (the end of a segment, then the start of the next) and never go back;
when all timestamps together are likelier than any single text token, one is taken.
Audio over 30 seconds is read window after window, each starting where the last
complete segment of the one before ended: a word cut by the window's edge is heard
again whole. A window advances by its full length only when it ends on a single
timestamp or has no pair of them, as transformers' long-form generate() does.
stdout: the text, a segment at a time; with --timestamps, a line per segment,
"[start --> end] text", in seconds from the start of the file.
MODEL_DIR is what `optimum-cli export openvino --task
automatic-speech-recognition-with-past` writes (scripts/prepare_whisper.py makes the
default one from Whisper tiny.en).
Example: python samples/whisper.py --timestamps speech.wav
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
WINDOW_FRAMES = WINDOW // HOP
STEP = 0.02  # seconds between two timestamp tokens...
FRAMES_PER_STEP = 2  # ...2 frames of features
N_MELS = 80
CONVERT_HINT = "convert it with ffmpeg -i IN -ar 16000 -ac 1 -c:a pcm_s16le OUT.wav"
# Compute in f32: the numbers then equal the references' (the CPU's default may be
# bf16).
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}


def read_wav(path: Path) -> np.ndarray:
    """A 16 kHz mono 16-bit WAV file -> float32 samples in [-1, 1). Any other file is
    raised, for main's guard to print in one line."""
    try:
        with wave.open(str(path)) as file:
            layout = (file.getframerate(), file.getnchannels(), file.getsampwidth())
            frames = file.readframes(file.getnframes())
    except (wave.Error, EOFError) as error:
        raise ValueError(f"{path} is not a WAV file ({error}): {CONVERT_HINT}")
    if layout != (SAMPLE_RATE, 1, 2):
        rate, channels, width = layout
        found = f"{rate} Hz, {channels} channel(s), {8 * width}-bit"
        raise ValueError(f"{path} is {found}, not 16 kHz mono 16-bit: {CONVERT_HINT}")
    samples = np.frombuffer(frames, dtype="<i2")
    if samples.size == 0:
        raise ValueError(f"{path} holds no audio")
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
    """Audio -> (N_MELS, frames) features, a frame every 10 ms. Audio of 30 s or less is
    padded with silence to 30 s first, as the feature extractor pads it by default;
    longer audio is not (transformers' long-form generate() pads a short last window
    with zero features instead)."""
    padded = np.pad(samples, (0, max(WINDOW - len(samples), 0)))
    # Frames centred on every HOP-th sample: the ends mirrored, as torch.stft does.
    padded = np.pad(padded, N_FFT // 2, mode="reflect")
    # The last frame is dropped, as transformers drops it.
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:-1]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic
    # A window's frames at a time: the spectrum of an hour at once takes gigabytes.
    mel = []
    for first in range(0, len(frames), WINDOW_FRAMES):
        power = np.abs(np.fft.rfft(frames[first : first + WINDOW_FRAMES] * hann)) ** 2
        mel.append(power @ filters)
    log_spec = np.log10(np.maximum(np.concatenate(mel), 1e-10)).T
    # Within 8 decades (80 dB) of the loudest in the file, scaled to about [-1, 1].
    log_spec = np.maximum(log_spec, log_spec.max() - 8)
    return ((log_spec + 4) / 4).astype(np.float32)


def forced_tokens(config: dict, language: str) -> list[int]:
    """The decoder's first tokens: start, language and task (multilingual models
    only: English-only ones know neither)."""
    tokens = [config["decoder_start_token_id"]]
    if config.get("is_multilingual"):
        tokens.append(config["lang_to_id"][f"<|{language}|>"])
        tokens.append(config["task_to_id"]["transcribe"])
    return tokens


def apply_timestamp_rules(logits: np.ndarray, tokens: list[int], config: dict) -> None:
    """Rule out, in place, what may not follow a window's TOKENS so far, as
    transformers' WhisperTimeStampLogitsProcessor does. Timestamp ids come after every
    text id and never decrease: the largest token so far is the last timestamp."""
    first_timestamp = config["no_timestamps_token_id"] + 1  # <|0.00|>
    logits[first_timestamp - 1] = -np.inf  # <|notimestamps|>
    if not tokens:  # the first token: a timestamp, an early one
        logits[:first_timestamp] = -np.inf
        latest = config.get("max_initial_timestamp_index")
        if latest is not None:
            logits[first_timestamp + latest + 1 :] = -np.inf
    elif tokens[-1] < first_timestamp:
        # After text: more text, or a timestamp that ends the segment after its start.
        logits[first_timestamp : max(tokens) + 1] = -np.inf
    elif len(tokens) >= 2 and tokens[-2] < first_timestamp:  # a segment's end:
        logits[: config["eos_token_id"]] = -np.inf  # the next one's start, or the end
        logits[first_timestamp : max(tokens)] = -np.inf
    else:  # a segment's start: its text
        logits[first_timestamp:] = -np.inf
    # The timestamps' probabilities together beat the likeliest text token's when
    # their exps, each over that token's, add up to more than 1 (no softmax needed).
    # Where text is ruled out already (a window's first token) there is nothing to do.
    text_best = logits[:first_timestamp].max()
    if text_best > -np.inf and np.exp(logits[first_timestamp:] - text_best).sum() > 1:
        logits[:first_timestamp] = -np.inf


def print_segment(detokenizer, segment: list[int], start: float, end: float, args):
    """Print a segment's words (the detokenizer leaves timestamp tokens out), after its
    start and end in seconds on a line of its own with --timestamps."""
    text = str(detokenizer(np.array([segment], dtype=np.int64))["string_output"][0])
    if args.timestamps:
        print(f"[{start:.2f} --> {end:.2f}]{text}", flush=True)
    else:
        print(text, end="", flush=True)


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("wav", type=Path, help="16 kHz mono 16-bit PCM")
    parser.add_argument("--language", default="en", help="multilingual models: de, fr")
    parser.add_argument("--timestamps", action="store_true", help="a line a segment")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    for name in WHISPER_FILES:
        if not (args.model_dir / name).is_file():
            raise FileNotFoundError(f"no {args.model_dir / name}: {EXPORT_HINT}")
    samples = read_wav(args.wav)
    config = json.loads((args.model_dir / "generation_config.json").read_text())
    languages = config.get("lang_to_id", {})
    if config.get("is_multilingual") and f"<|{args.language}|>" not in languages:
        parser.error(f"the model knows no language {args.language}")

    # Created after `import openvino_tokenizers`, so that it reads the detokenizer.
    core = ov.Core()
    networks = [core.read_model(args.model_dir / name) for name in WHISPER_FILES[:3]]
    encoder_model, decoder_model, detokenizer_model = networks
    # Only a stateful export (with-past) has beam_idx: the KV cache lives in the
    # decoder's state, and the encoder's keys and values are computed once a window.
    if "beam_idx" not in decoder_model.inputs[-1].get_names():
        raise ValueError(f"{args.model_dir} holds no stateful decoder: {EXPORT_HINT}")
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

    # Tokens never written (begin_suppress_tokens need no rule: a window's first token
    # is a timestamp).
    suppressed = config.get("suppress_tokens", [])
    beam_idx = np.zeros(1, dtype=np.int32)  # batch row 0 continues cache row 0
    forced = forced_tokens(config, args.language)
    first_timestamp = config["no_timestamps_token_id"] + 1  # <|0.00|>
    start = time.perf_counter()
    features = log_mel(samples, mel_filters())
    generated = 0  # every token the decoder gave, timestamps included
    seek = 0  # the frame the next window starts at
    while seek < features.shape[1]:
        window_frames = min(WINDOW_FRAMES, features.shape[1] - seek)
        window = np.zeros((1, N_MELS, WINDOW_FRAMES), dtype=np.float32)
        window[0, :, :window_frames] = features[:, seek : seek + window_frames]
        offset = seek * HOP / SAMPLE_RATE  # the window's start in the file, seconds
        # The encoder's output stays the decoder's input for the whole window: set once,
        # it is not copied again at every step.
        request.set_tensor("encoder_hidden_states", ov.Tensor(encoder(window)[0]))
        request.reset_state()  # a new window: nothing cached
        tokens = []  # the window's tokens
        segment_start = 0  # where in tokens the segment being written starts
        new_ids = forced
        while len(forced) + len(tokens) < config.get("max_length", 448):
            inputs = {"input_ids": np.array([new_ids]), "beam_idx": beam_idx}
            # infer() hands back copies of the outputs: this one may be changed.
            logits = request.infer(inputs)["logits"][0, -1]
            logits[suppressed] = -np.inf
            apply_timestamp_rules(logits, tokens, config)
            next_token = int(logits.argmax())
            if next_token == config["eos_token_id"]:
                break
            tokens.append(next_token)
            new_ids = [next_token]
            # Two timestamps in a row: a segment ended, the next one starts.
            if len(tokens) >= 2 and min(tokens[-2:]) >= first_timestamp:
                segment = tokens[segment_start:-1]  # its start, its words, its end
                start_seconds = offset + STEP * (segment[0] - first_timestamp)
                end_seconds = offset + STEP * (segment[-1] - first_timestamp)
                print_segment(detokenizer, segment, start_seconds, end_seconds, args)
                segment_start = len(tokens) - 1
        generated += len(tokens)
        ends_on_one = len(tokens) >= 2 and tokens[-2] < first_timestamp <= tokens[-1]
        if segment_start > 0 and not ends_on_one:
            # The words after the last complete segment may run past the window's
            # edge: the next window starts where that segment ended, and hears them.
            seek += FRAMES_PER_STEP * (tokens[segment_start - 1] - first_timestamp)
            continue
        # The window ends on a complete segment; or it holds no pair of timestamps and
        # is one segment, from its start to its last timestamp (to its end if that is
        # <|0.00|>).
        segment = tokens[segment_start:]
        start_step = segment[0] - first_timestamp if segment_start > 0 else 0
        # The last timestamp, or the window's end when that is <|0.00|> (step 0).
        end_step = max(tokens) - first_timestamp or window_frames / FRAMES_PER_STEP
        times = [offset + STEP * start_step, offset + STEP * end_step]
        print_segment(detokenizer, segment, *times, args)
        seek += window_frames
    if not args.timestamps:
        print()
    seconds_taken = time.perf_counter() - start
    audio_seconds = len(samples) / SAMPLE_RATE
    print(
        f"{audio_seconds:.1f} s of audio, {generated} tokens (timestamps included) in "
        f"{seconds_taken:.2f} s (real-time factor {seconds_taken / audio_seconds:.3f})",
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
