#!/usr/bin/env python3
"""LoRA: a fine-tuned adapter added to an LLM IR as low-rank branches, then greedy text.

A LoRA adapter (peft's adapter_config.json and adapter_model.safetensors) holds, for
each layer it fine-tuned, two small matrices: A (r, in) and B (out, r). The adapted
layer computes W x + scale B A x. Here each of those layers' MatMuls in the IR gets the
second term as a branch beside it, x Aᵀ (scale B)ᵀ added to its output, before the
model is compiled. The base weights stay as they are (int8 or int4 compressed ones
too: the branch reads the MatMul's input, not its weights).
scale is lora_alpha / r (lora_alpha / √r with use_rslora) times --alpha, 1 by default;
--alpha 0 gives the base model's text. The scale is a constant folded into B: another
--alpha is another compile.
MODEL_DIR holds openvino_model.xml, openvino_tokenizer.xml and openvino_detokenizer.xml,
as `optimum-cli export openvino --task text-generation-with-past` (or
scripts/convert.py) writes them: their MatMuls keep the layers' names, as
"__module.model.layers.0.self_attn.q_proj/aten::linear/MatMul". A folder converted from
GGUF (the default model's) has anonymous MatMuls and takes no adapter. Adapters of
linear layers only: no DoRA, no embedding or convolution targets, no bias or saved
modules.
Example: python samples/lora.py models/SmolLM2-135M-Instruct-named models/smollm2-lora
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

EXPORT_HINT = "run scripts/prepare_default_model.py, or optimum-cli export openvino"
NAMES_HINT = "export with optimum-cli or scripts/convert.py, which keep layer names"
LLM_FILES = ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
# --f32: compute and cache in f32, as the references do (the CPU's default may be bf16
# with an f16 or u8 cache), and quantize no activations on the fly (int4 and int8
# weights do by default): the numbers then equal the references'.
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
F32_CONFIG["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"
# safetensors' float types, as numpy reads their bytes (bfloat16 as its 16 bits).
SAFETENSORS_TYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def read_llm(core: ov.Core, model_dir: Path):
    """The folder's LLM (read, not compiled: it can still be edited), tokenizer and
    detokenizer, the ids of the tokens that end an answer, and the tokenizer IR's
    rt_info. What is wrong with the folder is raised, for main's guard to print in one
    line."""
    for name in LLM_FILES:
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"no {model_dir / name}: {EXPORT_HINT}")
    model = core.read_model(model_dir / "openvino_model.xml")
    # Only a stateful export (--task text-generation-with-past) keeps its KV cache in
    # its state, and beam_idx says which cache row each batch row continues.
    if "beam_idx" not in {port.any_name for port in model.inputs}:
        raise ValueError(f"{model_dir}: no stateful LLM (no beam_idx): {EXPORT_HINT}")
    tokenizer_model = core.read_model(model_dir / "openvino_tokenizer.xml")
    # generation_config.json may list several end tokens (Llama 3: two, Phi-3: three),
    # as an id or a list; the tokenizer knows one. A GGUF-converted folder has no file.
    config_path = model_dir / "generation_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    stop_token_ids = set(np.atleast_1d(config.get("eos_token_id", [])).tolist())
    if "eos_token_id" in tokenizer_model.get_rt_info():
        stop_token_ids.add(tokenizer_model.get_rt_info()["eos_token_id"].astype(int))
    # The string operations run on the CPU only, whatever --device says.
    tokenizer = core.compile_model(tokenizer_model, "CPU")
    detokenizer = core.compile_model(model_dir / "openvino_detokenizer.xml", "CPU")
    # What the export wrote beside the tokenizer (special tokens' ids, chat template)
    # stays with the model read: the compiled tokenizer keeps none of it.
    return model, tokenizer, detokenizer, stop_token_ids, tokenizer_model.get_rt_info()


def llm_inputs(request: ov.InferRequest, token_ids: list[int], cached: int) -> dict:
    """Inputs that feed token_ids[cached:], what the KV cache lacks of the text: those
    the request's model takes (BLOOM and MPT take no position_ids)."""
    inputs = {
        "input_ids": np.array([token_ids[cached:]], dtype=np.int64),  # (1, new tokens)
        "attention_mask": np.ones((1, len(token_ids)), dtype=np.int64),
        "position_ids": np.arange(cached, len(token_ids), dtype=np.int64)[None],
        "beam_idx": np.zeros(1, dtype=np.int32),  # batch row 0 continues cache row 0
    }
    return {port.any_name: inputs[port.any_name] for port in request.model_inputs}


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


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file's tensors, as float32: an 8-byte little-endian header length,
    a JSON header (each tensor's dtype, shape and data offsets), then the data."""
    data = path.read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_length])
    header.pop("__metadata__", None)
    tensors = {}
    for name, entry in header.items():
        if entry["dtype"] not in SAFETENSORS_TYPES:
            raise ValueError(f"{path}: {name} is {entry['dtype']}, not F32, F16, BF16")
        start, end = entry["data_offsets"]
        raw = data[8 + header_length + start : 8 + header_length + end]
        values = np.frombuffer(raw, SAFETENSORS_TYPES[entry["dtype"]])
        if entry["dtype"] == "BF16":
            # bfloat16 is the upper half of a float32: shift its bits into place.
            values = (values.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = values.astype(np.float32).reshape(entry["shape"])
    return tensors


def add_lora(model: ov.Model, adapter_dir: Path, alpha: float) -> None:
    """Add the adapter's branch beside each MatMul it adapts. An adapter this cannot
    apply is raised, for main's guard to print in one line."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ValueError(f"{adapter_dir}: r or lora_alpha differ by layer; not here")
    tensors = read_safetensors(adapter_dir / "adapter_model.safetensors")
    # peft names a layer's matrices base_model.model.LAYER.lora_A.weight and
    # .lora_B.weight; DoRA's magnitudes, embedding and bias matrices, saved modules
    # have other names.
    for name in tensors:
        if not name.endswith((".lora_A.weight", ".lora_B.weight")):
            raise ValueError(f"{adapter_dir} holds {name}: only LoRA of linear layers")
    layers = {
        name.split(".lora_")[0].removeprefix("base_model.model.") for name in tensors
    }
    divisor = config["r"] ** 0.5 if config.get("use_rslora") else config["r"]
    scale = alpha * config["lora_alpha"] / divisor
    for op in model.get_ops():
        # optimum's export names a layer's MatMul
        # "__module.model.layers.0.mlp.up_proj/aten::linear/MatMul".
        layer = op.get_friendly_name().split("/")[0].removeprefix("__module.")
        if op.get_type_name() != "MatMul" or layer not in layers:
            continue
        layers.remove(layer)
        lora_a = tensors[f"base_model.model.{layer}.lora_A.weight"]  # (r, in)
        lora_b = tensors[f"base_model.model.{layer}.lora_B.weight"] * scale  # (out, r)
        # x Aᵀ (scale B)ᵀ; an adapter made for another model fails here, on shapes.
        down = ov.opset13.matmul(op.input_value(0), lora_a, False, True)
        adapted = ov.opset13.add(op, ov.opset13.matmul(down, lora_b, False, True))
        # Every reader of the MatMul's output reads the sum instead, but the sum.
        op.output(0).replace(adapted.output(0))
        adapted.input(0).replace_source_output(op.output(0))
    if layers:
        raise ValueError(f"the IR has no MatMul of {min(layers)}: {NAMES_HINT}")


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("adapter_dir", type=Path)
    parser.add_argument("prompt", nargs="?", default="Q: Who was Mozart?\nA:")
    parser.add_argument("--alpha", type=float, default=1.0, help="strength, 0: none")
    parser.add_argument("--max-new-tokens", type=int, default=100, help=">= 1")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    if not args.prompt.strip():
        parser.error("the prompt is empty")
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    model, tokenizer, detokenizer, stop_token_ids, _ = read_llm(core, args.model_dir)
    add_lora(model, args.adapter_dir, args.alpha)
    config = F32_CONFIG if args.f32 else {}
    request = core.compile_model(model, args.device, config).create_infer_request()
    prompt_ids = tokenizer([args.prompt])["input_ids"][0].tolist()

    start = time.perf_counter()
    tokens = []  # the answer's token ids
    printed = ""  # the answer's text on stdout so far
    cached = 0  # the tokens whose keys and values the KV cache holds
    while len(tokens) < args.max_new_tokens:
        # The first inference (prefill) feeds the whole prompt, each later one a token.
        request.start_async(llm_inputs(request, prompt_ids + tokens, cached))
        cached = len(prompt_ids) + len(tokens)
        # While the model computes the next token, print the ones before it.
        printed = stream(detokenizer, tokens, printed)
        request.wait()
        next_token = int(request.get_tensor("logits").data[0, -1].argmax())
        if not tokens:
            first_token_seconds = time.perf_counter() - start
        if next_token in stop_token_ids:
            break
        tokens.append(next_token)
    print(decode(detokenizer, tokens)[len(printed) :], flush=True)

    # The tokens after the first, in the time after it.
    decode_speed = len(tokens[1:]) / (time.perf_counter() - start - first_token_seconds)
    stats = f"{len(prompt_ids)} prompt tokens, {len(tokens)} new tokens, first in "
    stats += f"{first_token_seconds * 1000:.0f} ms, then {decode_speed:.1f} tokens/s"
    print(stats, file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
    except (RuntimeError, OSError, ValueError) as error:  # OpenVINO, files, JSON
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
