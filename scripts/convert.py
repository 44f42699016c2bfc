#!/usr/bin/env python3
"""Turn a local Hugging Face causal LM folder, a GGUF file, or a local diffusers Stable
Diffusion folder into a folder the samples read: OpenVINO IRs with the tokenizer (and
detokenizer) IRs beside them.

Reuses optimum-intel's export (the same steps as `optimum-cli export openvino`), NNCF
weight compression and openvino_tokenizers. Nothing is downloaded. Needs
tests/requirements.txt (torch, transformers, optimum-intel, nncf, and gguf for GGUF
files). Examples:
  python scripts/convert.py models/SmolLM2-135M-Instruct.Q4_1.gguf models/smollm2-fp32 \\
      --weight-format fp32
  python scripts/convert.py my-hf-llm/ out/ --weight-format int4 --group-size 64 \\
      --awq --scale-estimation --dataset calibration.txt
  python scripts/convert.py my-sd-1.5/ out/ --task stable-diffusion --weight-format fp16
A GGUF file is dequantised exactly by transformers (gguf_file=...) and its tokenizer is
rebuilt from the GGUF's own vocabulary and merges: transformers' GGUF tokenizer is wrong
for SmolLM2 (it adds a BOS, takes <|im_start|> for EOS and adds tokens).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # a local path must never turn into a hub download

WEIGHT_FORMATS = ["fp32", "fp16", "int8", "int4"]


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit code 2."""
    print(f"convert.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def calibration_texts(path: Path) -> list[str]:
    """Paragraphs of a local text file (blank-line separated, else lines), as NNCF
    calibration samples."""
    if not path.is_file():
        fail(f"--dataset {path} does not exist: give a local text file")
    text = path.read_text(encoding="utf-8", errors="replace")
    samples = [part.strip() for part in text.split("\n\n") if part.strip()]
    samples = (
        samples
        if len(samples) > 1
        else [line.strip() for line in text.splitlines() if line.strip()]
    )
    if not samples:
        fail(f"--dataset {path} is empty: give a text file with some paragraphs")
    return samples


def weight_config(args: argparse.Namespace) -> dict | None:
    """optimum-intel's weight-compression config for --weight-format int8/int4 (None for
    fp32/fp16)."""
    if args.weight_format in ("fp32", "fp16"):
        return None
    int8 = args.weight_format == "int8"
    return {
        "bits": 8 if int8 else 4,
        "sym": args.sym,
        "group_size": -1 if int8 else args.group_size,
        "ratio": 1.0 if int8 else args.ratio,
        "quant_method": "awq" if args.awq else "default",
        "scale_estimation": args.scale_estimation or None,
        "dtype": args.weight_format,  # None: NNCF's default
        "dataset": args.calibration_texts,
        # Where the group size does not divide a layer's channels (576 in SmolLM2-135M),
        # use the largest power of two that does, as optimum-intel's own defaults do.
        "group_size_fallback": None if int8 else "adjust",
    }


def gguf_to_hf(gguf: Path, hf_dir: Path) -> None:
    """Dequantise a GGUF file into an f32 Hugging Face folder, with a tokenizer rebuilt
    from the GGUF itself."""
    import gguf as gguf_lib
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    reader = gguf_lib.GGUFReader(gguf)

    def field(name: str):
        value = reader.fields.get(name)
        return None if value is None else value.contents()

    if field("tokenizer.ggml.model") != "gpt2":
        fail(
            f"{gguf}: only byte-level BPE (tokenizer.ggml.model = gpt2) GGUF tokenizers are supported"
        )
    tokens, token_types = (
        field("tokenizer.ggml.tokens"),
        field("tokenizer.ggml.token_type"),
    )
    merges = [tuple(merge.split(" ", 1)) for merge in field("tokenizer.ggml.merges")]
    bpe = Tokenizer(
        models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=merges)
    )
    # SmolLM2's pre-tokenizer ("smollm"): digits one by one, then GPT-2's byte-level
    # split.
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    special = [
        token for token, kind in zip(tokens, token_types) if kind == 3
    ]  # 3: control tokens
    bpe.add_special_tokens(special)
    eos = tokens[field("tokenizer.ggml.eos_token_id")]
    pad_id = field("tokenizer.ggml.padding_token_id")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=eos,
        pad_token=tokens[pad_id] if pad_id is not None else eos,
    )
    if field("tokenizer.chat_template"):
        tokenizer.chat_template = field("tokenizer.chat_template")
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    model.generation_config.eos_token_id = model.config.eos_token_id = (
        tokenizer.eos_token_id
    )
    model.generation_config.bos_token_id = model.config.bos_token_id = (
        None  # the GGUF tokenizer adds no BOS
    )
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)


def check_source(source: Path, task: str) -> None:
    if task == "stable-diffusion":
        index = source / "model_index.json"
        if not index.is_file() or "StableDiffusion" not in json.loads(
            index.read_text()
        ).get("_class_name", ""):
            fail(
                f"{source} is not a diffusers Stable Diffusion folder (no model_index.json naming a StableDiffusion "
                "pipeline)"
            )
        return
    config = source / "config.json"
    architectures = (
        json.loads(config.read_text()).get("architectures") or []
        if config.is_file()
        else []
    )
    if not any(name.endswith("ForCausalLM") for name in architectures):
        fail(
            f"{source} is neither a .gguf file nor a causal LM folder (a config.json naming a *ForCausalLM "
            "architecture)"
        )


def export(source: Path, out_dir: Path, task: str, args: argparse.Namespace) -> None:
    """optimum-intel's export (and NNCF compression) into a fresh out_dir, as
    optimum-cli export openvino does."""
    from optimum.exporters.openvino import main_export
    from optimum.exporters.openvino.__main__ import _main_quantize
    from optimum.intel import OVConfig

    compression = weight_config(args)
    ov_config = OVConfig(dtype=args.weight_format) if compression is None else None
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as work:
        main_export(
            str(source),
            Path(work),
            task=task,
            ov_config=ov_config,
            convert_tokenizer=True,
            library_name="diffusers" if task == "stable-diffusion" else "transformers",
        )
        if compression is not None:
            try:
                _main_quantize(
                    str(source),
                    task,
                    "diffusers" if task == "stable-diffusion" else "transformers",
                    compression,
                    Path(work),
                    cache_dir=None,
                )
            # NNCF rejects settings the model cannot take (a group size)
            except Exception as error:  # noqa: BLE001
                lines = str(error).strip().splitlines()
                fail(
                    f"NNCF could not compress the weights: {lines[0]} {lines[-1].strip()}"
                )
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.move(work, out_dir)
        out_dir.chmod(0o755)  # a temporary folder is private to its owner


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=argparse.SUPPRESS,
    )  # errors: one line, no usage
    parser.add_argument(
        "source",
        type=Path,
        help="local HF model folder, .gguf file, or diffusers SD folder",
    )
    parser.add_argument(
        "out_dir", type=Path, help="folder to write (replaced if it exists)"
    )
    parser.add_argument(
        "--task",
        choices=["text-generation", "stable-diffusion"],
        default="text-generation",
    )
    parser.add_argument(
        "--weight-format", choices=WEIGHT_FORMATS, default="fp32", help="default fp32"
    )
    parser.add_argument(
        "--group-size",
        type=int,
        default=128,
        help="int4: weights per scale (-1: per channel)",
    )
    parser.add_argument(
        "--ratio",
        type=float,
        default=1.0,
        help="int4: share of layers in int4, the rest int8",
    )
    parser.add_argument(
        "--sym", action="store_true", help="symmetric quantization (no zero point)"
    )
    parser.add_argument(
        "--awq",
        action="store_true",
        help="int4: activation-aware scaling (needs --dataset)",
    )
    parser.add_argument(
        "--scale-estimation",
        action="store_true",
        help="int4: data-aware scales (needs --dataset)",
    )
    parser.add_argument(
        "--dataset", type=Path, help="local text file for data-aware int4 compression"
    )
    args = parser.parse_args()
    if not args.source.exists():
        fail(f"{args.source} does not exist: give a local model folder or .gguf file")
    if (args.awq or args.scale_estimation) and not args.dataset:
        fail(
            "--awq and --scale-estimation need --dataset with a local calibration text"
        )
    if (
        args.awq or args.scale_estimation or args.dataset
    ) and args.weight_format != "int4":
        fail(
            "--awq, --scale-estimation and --dataset apply to --weight-format int4 only"
        )
    if not 0 < args.ratio <= 1:
        fail("--ratio must be in (0, 1]")
    args.calibration_texts = calibration_texts(args.dataset) if args.dataset else None
    args.out_dir.parent.mkdir(parents=True, exist_ok=True)
    task = (
        "stable-diffusion"
        if args.task == "stable-diffusion"
        else "text-generation-with-past"
    )

    with tempfile.TemporaryDirectory() as hf_dir:
        source = args.source
        if source.suffix == ".gguf":
            if args.task != "text-generation":
                fail("a GGUF file holds a causal LM: use --task text-generation")
            print(f"dequantising {source}", file=sys.stderr)
            gguf_to_hf(source, Path(hf_dir))
            source = Path(hf_dir)
        check_source(source, args.task)
        print(
            f"exporting {source} as {args.weight_format} to {args.out_dir}",
            file=sys.stderr,
        )
        export(source, args.out_dir, task, args)
    print(f"ready: {args.out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
