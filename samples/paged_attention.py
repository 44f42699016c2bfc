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
from typing import NamedTuple

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

# The graph rewrite that openvino_genai and optimum-intel use.
from openvino._offline_transformations import paged_attention_transformation

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models/SmolLM2-135M-Instruct"
DEFAULT_PROMPT = "Once upon a time, a little robot"
EXPORT_HINT = "run scripts/prepare_default_model.py, or optimum-cli export openvino"
LLM_FILES = ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
# Only a stateful export (--task text-generation-with-past) has beam_idx: the KV
# cache lives in the model's state; beam_idx says which cache row a batch row continues.
LLM_INPUTS = {"input_ids", "attention_mask", "beam_idx"}
# Compute and cache in f32, with no on-the-fly quantization of activations: the numbers
# then equal the references' (the CPU's default may be bf16 with an f16 or u8 cache).
F32_CONFIG = {
    "INFERENCE_PRECISION_HINT": "f32",
    "KV_CACHE_PRECISION": "f32",
    "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0",
}
# config.json's name for the context length: in Llama and most others, GPT-2, MPT.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len")


class LLMFolder(NamedTuple):
    model: ov.Model  # the LLM, read but not compiled: it can still be edited
    tokenizer: ov.CompiledModel  # [text] -> input_ids (1, tokens)
    detokenizer: ov.CompiledModel  # token ids (1, tokens) -> [text]
    stop_token_ids: set[int]  # the tokens that end an answer
    context_length: int  # the positions the model was trained on (unknown: sys.maxsize)
    generation_config: dict  # generation_config.json: the model's own defaults, or {}


def is_prompt(argument: str) -> bool:
    """Is a lone positional argument a prompt for the default model, not MODEL_DIR?

    A prompt alone ("Tell me a joke") is what people type first. Text shaped like a path
    (a folder part and no spaces) stays MODEL_DIR, so that a mistyped folder still gets
    the message that says how to make one."""
    if Path(argument).is_dir():
        return False
    return len(argument.split()) > 1 or Path(argument).name == argument


def read_json(parser, path: Path) -> dict:
    """A JSON file of the model folder, {} where there is none; a broken one exits."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        parser.error(f"cannot read {path}: {error}")


def last_line(error: Exception) -> str:
    """OpenVINO's messages end with the line that says what is wrong."""
    return str(error).strip().splitlines()[-1]


def read_llm_folder(core: ov.Core, parser, model_dir: Path) -> LLMFolder:
    """The folder's LLM, tokenizer and detokenizer; an unfit folder exits (code 2)."""
    for name in LLM_FILES:
        if not (model_dir / name).is_file():
            parser.error(f"no {model_dir / name}: {EXPORT_HINT}")
    try:
        model = core.read_model(model_dir / "openvino_model.xml")
        tokenizer = core.read_model(model_dir / "openvino_tokenizer.xml")
        # The string operations run on the CPU only, whatever --device says.
        compiled_tokenizer = core.compile_model(tokenizer, "CPU")
        detokenizer = core.compile_model(model_dir / "openvino_detokenizer.xml", "CPU")
    except RuntimeError as error:
        parser.error(f"cannot read {model_dir}: {last_line(error)}")
    input_names = {name for port in model.inputs for name in port.names}
    for name in sorted(LLM_INPUTS - input_names):
        parser.error(f"{model_dir} holds no stateful LLM (no {name}): {EXPORT_HINT}")
    # generation_config.json lists every token that ends an answer (Llama 3: two,
    # Phi-3: three); the tokenizer's rt_info knows one. A GGUF folder has no such file.
    generation_config = read_json(parser, model_dir / "generation_config.json")
    stop_token_ids = generation_config.get("eos_token_id", [])
    if isinstance(stop_token_ids, int):
        stop_token_ids = [stop_token_ids]
    rt_info = tokenizer.get_rt_info()
    if "eos_token_id" in rt_info:
        stop_token_ids = [*stop_token_ids, rt_info["eos_token_id"].astype(int)]
    if not stop_token_ids:
        parser.error(
            f"{model_dir}: no eos_token_id in its tokenizer or generation config"
        )
    # A GGUF-converted folder has no config.json: its context length is not known.
    config = read_json(parser, model_dir / "config.json")
    lengths = [config[key] for key in CONTEXT_KEYS if key in config]
    context_length = lengths[0] if lengths else sys.maxsize
    return LLMFolder(
        model,
        compiled_tokenizer,
        detokenizer,
        set(stop_token_ids),
        context_length,
        generation_config,
    )


def add_unused_position_ids(model: ov.Model, shape: list[int]) -> None:
    """ALiBi models (BLOOM, MPT) take no positions: an input that they ignore lets every
    model be fed alike."""
    input_names = {name for port in model.inputs for name in port.names}
    if "position_ids" in input_names:
        return
    positions = ov.opset13.parameter(shape, ov.Type.i64)
    positions.output(0).set_names({"position_ids"})
    model.add_parameters([positions])


def fit_to_context(parser, llm, prompt_ids: list[int], max_new_tokens: int) -> int:
    """max_new_tokens, or fewer where the model's context ends sooner (said on stderr).

    Past its context a model writes nonsense without a word of warning (rotary models
    extrapolate, learned position tables are read out of range)."""
    room = llm.context_length - len(prompt_ids)
    if room < 1:
        parser.error(f"the prompt fills the model's context of {llm.context_length}")
    if room < max_new_tokens:
        print(f"the context leaves room for {room} new tokens", file=sys.stderr)
    return min(room, max_new_tokens)


def repetition_penalty(llm: LLMFolder) -> float:
    """generation_config.json's repetition_penalty (Qwen2.5: 1.05), said on stderr."""
    penalty = llm.generation_config.get("repetition_penalty", 1.0)
    if penalty != 1.0:
        print(f"generation_config.json: repetition_penalty {penalty}", file=sys.stderr)
    return penalty


def find_lm_head(model: ov.Model):
    """The LM head: the MatMul of each position's hidden state by a (vocab, hidden)
    matrix. Element-wise operations may follow it (Gemma 2 caps the logits: divide,
    tanh, multiply); they work position by position. None where there is no MatMul."""
    node = model.output("logits").get_node().input_value(0).get_node()
    while node.get_type_name() in ("Divide", "Tanh", "Multiply", "Add", "Convert"):
        node = node.input_value(0).get_node()
    if node.get_type_name() != "MatMul":
        return None
    return node


def keep_last_token_logits(model: ov.Model) -> None:
    """Compute logits (1, 1, vocab) for the last token only.

    After the paged rewrite the tokens of all sequences lie along axis 0: the LM head's
    input is (tokens, 1, hidden). Slicing it to the last token before compiling saves
    a long prompt's (prompt_len, vocab) logits that nobody reads."""
    lm_head = find_lm_head(model)
    if lm_head is None:
        return
    hidden = lm_head.input_value(0)  # (tokens, 1, hidden)
    end = np.iinfo(np.int64).max
    last = ov.opset13.slice(hidden, [-1], [end], [1], axes=[0])
    lm_head.input(0).replace_source_output(last.output(0))


def compile_llm(core: ov.Core, parser, model: ov.Model, args) -> ov.CompiledModel:
    """The LLM compiled for --device (and --f32); an unfit device exits (code 2)."""
    try:
        return core.compile_model(model, args.device, F32_CONFIG if args.f32 else {})
    except RuntimeError as error:
        parser.error(f"cannot compile for --device {args.device}: {last_line(error)}")


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


def paged_inputs(new_ids: list[int], cached: int, blocks: int) -> dict[str, np.ndarray]:
    """Inputs that feed new_ids after the `cached` tokens of the one sequence.

    Its tokens lie in cache blocks 0, 1, ... in order: a server would hand blocks out to
    many sequences from one pool."""
    length = cached + len(new_ids)
    return {
        "input_ids": np.array(new_ids, dtype=np.int64),  # (new tokens,)
        "position_ids": np.arange(cached, length, dtype=np.int64),
        "past_lens": np.array([cached], dtype=np.int32),  # per sequence
        "subsequence_begins": np.array([0, len(new_ids)], dtype=np.int32),
        "max_context_len": np.array(length, dtype=np.int32),
        "block_indices": np.arange(blocks, dtype=np.int32),  # the sequence's blocks
        "block_indices_begins": np.array([0, blocks], dtype=np.int32),
    }


def penalize_repetition(logits: np.ndarray, token_ids: list[int], penalty: float):
    """Logits (vocab,) with each token already in the text made less likely, as
    transformers' RepetitionPenaltyLogitsProcessor does: a positive logit divided by
    the penalty, a negative one multiplied. A penalty of 1.0 changes nothing."""
    if penalty == 1.0:
        return logits
    seen = np.unique(token_ids)
    penalized = logits.copy()
    penalized[seen] = np.where(
        logits[seen] < 0, logits[seen] * penalty, logits[seen] / penalty
    )
    return penalized


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
    parser.add_argument("prompt", nargs="?", help=f"default: {DEFAULT_PROMPT}")
    parser.add_argument("--max-new-tokens", type=int, default=100, help=">= 1")
    parser.add_argument("--device", default="CPU", help="CPU or GPU (tested on CPU)")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    # A lone argument that names no folder is a prompt for the default model.
    if args.prompt is None and is_prompt(args.model_dir):
        args.prompt = args.model_dir
        args.model_dir = str(DEFAULT_MODEL_DIR)
    if args.prompt is None:
        args.prompt = DEFAULT_PROMPT
    if not args.prompt.strip():
        parser.error("the prompt is empty")
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    llm = read_llm_folder(core, parser, Path(args.model_dir))
    config = read_json(parser, Path(args.model_dir) / "config.json")
    # OpenVINO's paged rewrite of MPT's attention gives wrong text (genai's too).
    if config.get("model_type") == "mpt":
        parser.error(f"{args.model_dir}: OpenVINO's paged attention gets MPT wrong")
    # Now input_ids is (tokens,) and logits (tokens, 1, vocab), for all sequences.
    paged_attention_transformation(llm.model)
    add_unused_position_ids(llm.model, [-1])  # (tokens,)
    keep_last_token_logits(llm.model)
    compiled = compile_llm(core, parser, llm.model, args)
    request = compiled.create_infer_request()
    prompt_ids = llm.tokenizer([args.prompt])["input_ids"][0].tolist()
    penalty = repetition_penalty(llm)
    args.max_new_tokens = fit_to_context(parser, llm, prompt_ids, args.max_new_tokens)
    # Enough blocks for the prompt and the longest answer.
    blocks = blocks_for(compiled, len(prompt_ids) + args.max_new_tokens)
    allocate_cache_blocks(compiled, request, blocks)

    start = time.perf_counter()
    tokens = []  # the answer's token ids
    printed = ""  # the answer's text on stdout so far
    new_ids = prompt_ids  # the first inference (prefill) feeds the whole prompt
    while len(tokens) < args.max_new_tokens:
        cached = len(prompt_ids) + len(tokens) - len(new_ids)
        request.start_async(paged_inputs(new_ids, cached, blocks))
        # While the model computes the next token, print the ones before it.
        printed = stream(llm.detokenizer, tokens, printed)
        request.wait()
        logits = request.get_tensor("logits").data[-1, -1]
        logits = penalize_repetition(logits, prompt_ids + tokens, penalty)
        next_token = int(logits.argmax())
        if not tokens:
            first_token_seconds = time.perf_counter() - start
        if next_token in llm.stop_token_ids:
            break
        tokens.append(next_token)
        new_ids = [next_token]  # every later inference feeds one token
    print(decode(llm.detokenizer, tokens)[len(printed) :], flush=True)

    decode_seconds = time.perf_counter() - start - first_token_seconds
    decode_speed = max(len(tokens) - 1, 0) / decode_seconds
    print(
        f"{len(prompt_ids)} prompt tokens, {len(tokens)} new tokens, "
        f"first in {first_token_seconds * 1000:.0f} ms, "
        f"then {decode_speed:.1f} tokens/s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
