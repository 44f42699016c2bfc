#!/usr/bin/env python3
"""Greedy generation for many prompts by continuous batching on a paged KV cache.

One inference advances every sequence in flight: a new one by its whole prompt, the
others by one token. A finished sequence's place goes to the next prompt at once. The
stateful LLM IR is rewritten at load time so that its keys and values live in blocks
of cache tensors this program owns (inputs key_cache.N and value_cache.N): each place
in the batch owns a fixed run of blocks. Prints one answer per line, in the prompts'
order (newlines written as \\n).
MODEL_DIR holds openvino_model.xml, openvino_tokenizer.xml and openvino_detokenizer.xml,
as `optimum-cli export openvino --task text-generation-with-past` writes them.
Example: python samples/continuous_batching.py --prompts prompts.txt
See also samples/paged_attention.py: one sequence on the paged cache, streamed.
"""

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

# The graph rewrite that openvino_genai and optimum-intel use.
from openvino._offline_transformations import paged_attention_transformation

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models/SmolLM2-135M-Instruct"
EXPORT_HINT = "run scripts/prepare_default_model.py, or optimum-cli export openvino"
LLM_FILES = ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
# --f32: compute and cache in f32, as the references do (the CPU's default may be bf16
# with an f16 or u8 cache), and quantize no activations on the fly (int4 and int8
# weights do by default): the numbers then equal the references'.
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
F32_CONFIG["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"


DEFAULT_PROMPTS = [
    "Once upon a time",
    "The capital of France is",
    "def quicksort(items):",
    "The Moon is",
    "In 1969,",
]


@dataclass
class SequenceInFlight:
    prompt_index: int  # the prompt it answers
    new_ids: list[int]  # what the next inference feeds: the prompt, then one token
    cached: int  # the tokens in its cache blocks


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


def add_last_positions_input(model: ov.Model) -> None:
    """A new input, last_positions: the tokens whose logits to compute, one a sequence.

    After the paged rewrite the tokens of all sequences lie along axis 0. Gathering each
    sequence's last one before the LM head (the MatMul by the (vocab, hidden) matrix,
    which element-wise operations may follow) gives logits (sequences, 1, vocab), and
    spares every prompt's (prompt_len, vocab) logits that nobody reads."""
    last_positions = ov.opset13.parameter([-1], ov.Type.i64, name="last_positions")
    last_positions.output(0).set_names({"last_positions"})
    lm_head = model.output("logits").get_node()
    while lm_head.get_type_name() != "MatMul":
        lm_head = lm_head.input_value(0).get_node()
    gathered = ov.opset13.gather(lm_head.input_value(0), last_positions, 0)
    lm_head.input(0).replace_source_output(gathered.output(0))
    model.add_parameters([last_positions])


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


def decode(detokenizer: ov.CompiledModel, tokens: list[int]) -> str:
    """The text of some token ids."""
    return str(detokenizer(np.array([tokens], dtype=np.int64))["string_output"][0])


def read_prompts(prompts_path: Path | None) -> list[str]:
    """The file's lines that are not blank, or DEFAULT_PROMPTS without a file. A file
    without a prompt is raised, for main's guard to print in one line."""
    if prompts_path is None:
        return DEFAULT_PROMPTS
    lines = prompts_path.read_text(encoding="utf-8").split("\n")
    prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise ValueError(f"{prompts_path} holds no prompt")
    return prompts


def generate_in_batches(request, prompts, max_new_tokens, stop_token_ids, block_table):
    """Greedy answers (lists of token ids) to every prompt (a list of token ids), and
    the number of inferences that made them; block_table[place] lists each place's
    cache blocks."""
    answers = [[] for _ in prompts]
    places, blocks_per_place = block_table.shape
    inferences = 0
    waiting = iter(range(len(prompts)))  # the prompts not started yet
    running = {}  # place: SequenceInFlight
    while True:
        # Free places take the next prompts; their blocks are written from position 0.
        # (zip stops at the last free place before it takes another prompt.)
        free_places = [place for place in range(places) if place not in running]
        for place, prompt_index in zip(free_places, waiting):
            running[place] = SequenceInFlight(prompt_index, prompts[prompt_index], 0)
        if not running:
            return answers, inferences

        sequences = list(running.values())
        # The sequences' new tokens lie one after another along axis 0.
        lengths = [len(sequence.new_ids) for sequence in sequences]
        begins = np.cumsum([0] + lengths)
        new_ids = []
        positions = []
        for sequence in sequences:
            new_ids += sequence.new_ids
            positions += range(sequence.cached, sequence.cached + len(sequence.new_ids))
        past_lens = np.array([sequence.cached for sequence in sequences])
        block_begins = np.arange(len(running) + 1, dtype=np.int32) * blocks_per_place
        inputs = {
            "input_ids": np.array(new_ids, dtype=np.int64),
            "position_ids": np.array(positions, dtype=np.int64),
            "past_lens": past_lens.astype(np.int32),  # tokens already cached
            "subsequence_begins": begins.astype(np.int32),
            "max_context_len": np.array(max(past_lens + lengths), np.int32),
            # Each sequence's blocks, in order, found from block_indices_begins.
            "block_indices": block_table[list(running)].ravel(),
            "block_indices_begins": block_begins,
            "last_positions": begins[1:] - 1,  # each sequence's last token
        }
        # Only the inputs the model takes (BLOOM: no position_ids).
        names = {port.any_name for port in request.model_inputs}
        request.infer({name: inputs[name] for name in inputs if name in names})
        inferences += 1
        logits = request.get_tensor("logits").data[:, -1]  # (sequences, vocab)

        for row, place in enumerate(list(running)):
            sequence = running[place]
            answer = answers[sequence.prompt_index]
            token = int(logits[row].argmax())
            if token not in stop_token_ids:
                answer.append(token)
            sequence.cached += len(sequence.new_ids)
            sequence.new_ids = [token]  # the token goes in next, unless the answer ends
            if token in stop_token_ids or len(answer) == max_new_tokens:
                del running[place]


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--prompts", type=Path, help="a file, a prompt per line")
    parser.add_argument("--max-new-tokens", type=int, default=100, help=">= 1")
    parser.add_argument("--max-sequences", type=int, default=32, help="a batch, >= 1")
    parser.add_argument("--device", default="CPU", help="CPU or GPU (tested on CPU)")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")
    if args.max_sequences < 1:
        parser.error("--max-sequences must be at least 1")
    prompts = read_prompts(args.prompts)

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    model, tokenizer, detokenizer, stop_token_ids, _ = read_llm(core, args.model_dir)
    config_path = args.model_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    # OpenVINO's paged rewrite of MPT's attention gives wrong text (genai's too).
    if config.get("model_type") == "mpt":
        raise ValueError(f"{args.model_dir}: OpenVINO's paged attention gets MPT wrong")
    # Now input_ids is (tokens,) and logits (tokens, 1, vocab), for all sequences.
    paged_attention_transformation(model)
    add_last_positions_input(model)
    # One stream on all cores: the batch, not parallel requests, keeps them busy.
    compiled = core.compile_model(model, args.device, F32_CONFIG if args.f32 else {})
    # One prompt a call: a batch would be padded to its longest prompt.
    prompt_ids = [tokenizer([prompt])["input_ids"][0].tolist() for prompt in prompts]
    longest = max(prompt_ids, key=len)

    # Each place owns enough blocks for the longest prompt and its answer.
    places = min(args.max_sequences, len(prompts))
    blocks_per_place = blocks_for(compiled, len(longest) + args.max_new_tokens)
    block_table = np.arange(places * blocks_per_place, dtype=np.int32)
    block_table = block_table.reshape(places, blocks_per_place)
    request = compiled.create_infer_request()
    allocate_cache_blocks(compiled, request, block_table.size)

    start = time.perf_counter()
    answers, inferences = generate_in_batches(
        request, prompt_ids, args.max_new_tokens, stop_token_ids, block_table
    )
    seconds = time.perf_counter() - start
    tokens = sum(len(answer) for answer in answers)
    stats = f"{len(prompts)} prompts, {tokens} new tokens in {seconds:.1f} s, "
    stats += f"{inferences} inferences: {tokens / seconds:.1f} tokens/s"
    print(stats, file=sys.stderr)
    for answer in answers:  # one line per prompt, in the prompts' order
        print(decode(detokenizer, answer).replace("\n", "\\n"))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
    except (RuntimeError, OSError, ValueError) as error:  # OpenVINO, files, JSON
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
