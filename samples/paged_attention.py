#!/usr/bin/env python3
"""Greedy text generation on a paged KV cache: the PagedAttention kernels openvino_genai
runs by default, streamed to stdout as it is made.

The stateful LLM IR is rewritten at load time: each attention layer stops keeping its
keys and values in the model's state and reads and writes them in blocks of cache
tensors that this program owns (inputs key_cache.N and value_cache.N), found through a
block table. On CPU these kernels prefill long prompts 1.7-2x faster.
MODEL_DIR holds openvino_model.xml, openvino_tokenizer.xml and openvino_detokenizer.xml,
as `optimum-cli export openvino --task text-generation-with-past` writes them.
Example: python samples/paged_attention.py models/SmolLM2-135M-Instruct "Hello"
See also samples/continuous_batching.py: many sequences on one paged cache.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

# The graph rewrite that openvino_genai and optimum-intel use.
from openvino._offline_transformations import paged_attention_transformation

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models/SmolLM2-135M-Instruct"
DEFAULT_PROMPT = "Once upon a time, a little robot"
EXPORT_HINT = "run scripts/prepare_default_model.py, or optimum-cli export openvino"
LLM_FILES = ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
# --f32: compute and cache in f32, as the references do (the CPU's default may be bf16
# with an f16 or u8 cache), and quantize no activations on the fly (int4 and int8
# weights do by default): the numbers then equal the references'.
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
F32_CONFIG["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"


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


def keep_last_token_logits(model: ov.Model) -> None:
    """Compute logits (1, 1, vocab) for the last token only.

    After the paged rewrite the tokens of all sequences lie along axis 0: the LM head's
    input is (tokens, 1, hidden). Gathering its last token before compiling saves
    a long prompt's (prompt_len, vocab) logits that nobody reads. The head is the
    MatMul by the (vocab, hidden) matrix; element-wise operations may follow it (Gemma
    2 caps the logits: divide, tanh, multiply)."""
    lm_head = model.output("logits").get_node()
    while lm_head.get_type_name() != "MatMul":
        lm_head = lm_head.input_value(0).get_node()
    hidden = lm_head.input_value(0)  # (tokens, 1, hidden)
    last = ov.opset8.gather(hidden, [-1], 0)  # (1, 1, hidden)
    lm_head.input(0).replace_source_output(last.output(0))


def blocks_for(compiled: ov.CompiledModel, tokens: int) -> int:
    """How many cache blocks hold `tokens` tokens, at the compiled block size.

    The value cache's block axis is the block size; a u8 key cache may add its scales
    to that axis, so it is read from value_cache.0."""
    block_size = compiled.input("value_cache.0").partial_shape[2].get_length()
    return -(-tokens // block_size)  # rounded up


def allocate_cache_blocks(compiled, request: ov.InferRequest, blocks: int) -> None:
    """Give each key_cache.N and value_cache.N input a tensor of `blocks` cache blocks.

    The plugin chose each cache's precision and layout at compile time: (blocks,
    kv_heads, block_size, head_size), a u8 cache's axes longer by its scales. Only the
    number of blocks is ours to choose."""
    for port in compiled.inputs:
        if port.any_name.startswith(("key_cache.", "value_cache.")):
            shape = [blocks, *port.partial_shape.get_min_shape()[1:]]
            request.set_tensor(port, ov.Tensor(port.element_type, shape))


def paged_inputs(request, new_ids: list[int], cached: int, blocks: int) -> dict:
    """Inputs that feed new_ids after the `cached` tokens of the one sequence.

    Its tokens lie in cache blocks 0, 1, ... in order: a server would hand blocks out to
    many sequences from one pool. Only the inputs the request's model takes (BLOOM:
    no position_ids)."""
    length = cached + len(new_ids)
    inputs = {
        "input_ids": np.array(new_ids, dtype=np.int64),  # (new tokens,)
        "position_ids": np.arange(cached, length, dtype=np.int64),
        "past_lens": np.array([cached], dtype=np.int32),  # per sequence
        "subsequence_begins": np.array([0, len(new_ids)], dtype=np.int32),
        "max_context_len": np.array(length, dtype=np.int32),
        "block_indices": np.arange(blocks, dtype=np.int32),  # the sequence's blocks
        "block_indices_begins": np.array([0, blocks], dtype=np.int32),
    }
    names = {port.any_name for port in request.model_inputs}
    return {name: inputs[name] for name in inputs if name in names}


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
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT)
    parser.add_argument("--max-new-tokens", type=int, default=100, help=">= 1")
    parser.add_argument("--device", default="CPU", help="CPU or GPU (tested on CPU)")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    if not args.prompt.strip():
        parser.error("the prompt is empty")
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    model, tokenizer, detokenizer, stop_token_ids, _ = read_llm(core, args.model_dir)
    # OpenVINO's paged rewrite of MPT's attention gives wrong text (genai's too).
    config_path = args.model_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if config.get("model_type") == "mpt":
        raise ValueError(f"{args.model_dir}: OpenVINO's paged attention gets MPT wrong")
    # Now input_ids is (tokens,) and logits (tokens, 1, vocab), for all sequences.
    paged_attention_transformation(model)
    keep_last_token_logits(model)
    compiled = core.compile_model(model, args.device, F32_CONFIG if args.f32 else {})
    request = compiled.create_infer_request()
    prompt_ids = tokenizer([args.prompt])["input_ids"][0].tolist()
    # Enough blocks for the prompt and the longest answer.
    blocks = blocks_for(compiled, len(prompt_ids) + args.max_new_tokens)
    allocate_cache_blocks(compiled, request, blocks)

    start = time.perf_counter()
    tokens = []  # the answer's token ids
    printed = ""  # the answer's text on stdout so far
    new_ids = prompt_ids  # the first inference (prefill) feeds the whole prompt
    while len(tokens) < args.max_new_tokens:
        cached = len(prompt_ids) + len(tokens) - len(new_ids)
        request.start_async(paged_inputs(request, new_ids, cached, blocks))
        # While the model computes the next token, print the ones before it.
        printed = stream(detokenizer, tokens, printed)
        request.wait()
        next_token = int(request.get_tensor("logits").data[-1, -1].argmax())
        if not tokens:
            first_token_seconds = time.perf_counter() - start
        if next_token in stop_token_ids:
            break
        tokens.append(next_token)
        new_ids = [next_token]  # every later inference feeds one token
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
