#!/usr/bin/env python3
"""Speak English text into a 16 kHz mono 16-bit WAV file, offline, with eSpeak NG.

eSpeak NG's shared library and voice data come in the PyPI wheel espeakng-loader; this
script drives the library through ctypes (retrieval mode: the synthesised audio comes
back through a callback, 22050 Hz 16-bit mono) and resamples it to Whisper's 16 kHz
(scipy's polyphase filter, 320/441). For the tests and benchmarks, not the samples.
Needs tests/requirements.txt. Example: python scripts/speak.py "Hello there." hello.wav
"""

import argparse
import ctypes
import math
import sys
import wave
from pathlib import Path

import numpy as np

RATE = 16000  # Whisper's sampling rate
ESPEAK_RATE = 22050

CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def speak(text: str, voice: str = "en") -> np.ndarray:
    """int16 samples at 16 kHz of eSpeak NG saying TEXT."""
    import espeakng_loader

    library = ctypes.CDLL(espeakng_loader.get_library_path())
    data_path = espeakng_loader.get_data_path().encode()
    # 1: AUDIO_OUTPUT_RETRIEVAL, no buffer length preference, the data folder, options.
    if library.espeak_Initialize(1, 0, data_path, 0) != ESPEAK_RATE:
        raise SystemExit("eSpeak NG did not start at 22050 Hz")
    chunks = []

    def collect(samples, count, events) -> int:
        if count > 0:
            chunks.append(np.ctypeslib.as_array(samples, (count,)).copy())
        return 0  # go on

    callback = CALLBACK(collect)  # kept alive until synthesis ends
    library.espeak_SetSynthCallback(callback)
    library.espeak_SetVoiceByName(voice.encode())
    encoded = text.encode()
    # size, position 0, position type 0 (characters), end 0, flags 1 (UTF-8),
    # no unique identifier, no user data.
    library.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, 1, None, None)
    library.espeak_Synchronize()
    return to_whisper_rate(np.concatenate(chunks), ESPEAK_RATE)


def to_whisper_rate(samples: np.ndarray, rate: int) -> np.ndarray:
    """16-bit samples at RATE (Whisper's 16 kHz) of SAMPLES taken at `rate` Hz."""
    from scipy.signal import resample_poly

    common = math.gcd(RATE, rate)
    resampled = resample_poly(
        samples.astype(np.float64), RATE // common, rate // common
    )
    return np.clip(np.round(resampled), -32768, 32767).astype(np.int16)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(samples.astype("<i2").tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("text")
    parser.add_argument("wav", type=Path)
    args = parser.parse_args()
    samples = speak(args.text)
    write_wav(args.wav, samples)
    print(f"wrote {args.wav}: {len(samples) / RATE:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
