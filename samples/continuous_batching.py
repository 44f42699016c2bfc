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
from typing import NamedTuple

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

# The graph rewrite that openvino_genai and optimum-intel use.
from openvino._offline_transformations import paged_attention_transformation

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models/SmolLM2-135M-Instruct"
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


# config.json's name for the context length: in Llama and most others, GPT-2, MPT.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len")


class LLMFolder(NamedTuple):
    model: ov.Model  # the LLM, read but not compiled: it can still be edited
    tokenizer: ov.CompiledModel  # [text] -> input_ids (1, tokens)
    detokenizer: ov.CompiledModel  # token ids (1, tokens) -> [text]
    stop_token_ids: set[int]  # the tokens that end an answer
    context_length: int  # the positions the model was trained on (unknown: sys.maxsize)
    generation_config: dict  # generation_config.json: the model's own defaults, or {}


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


def add_last_positions_input(model: ov.Model) -> None:
    """A new input, last_positions: the tokens whose logits to compute, one a sequence.

    After the paged rewrite the tokens of all sequences lie along axis 0. Gathering each
    sequence's last one before the LM head gives logits (sequences, 1, vocab), and
    spares every prompt's (prompt_len, vocab) logits that nobody reads."""
    last_positions = ov.opset13.parameter([-1], ov.Type.i64, name="last_positions")
    last_positions.output(0).set_names({"last_positions"})
    lm_head = find_lm_head(model)
    gathered = ov.opset13.gather(lm_head.input_value(0), last_positions, 0)
    lm_head.input(0).replace_source_output(gathered.output(0))
    model.add_parameters([last_positions])


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


def read_prompts(parser, prompts_file) -> list[str]:
    """The file's lines that are not blank, or DEFAULT_PROMPTS without a file."""
    if prompts_file is None:
        return DEFAULT_PROMPTS
    prompts = [line.rstrip("\n") for line in prompts_file if line.strip()]
    if not prompts:
        parser.error("--prompts holds no prompt")
    return prompts


def generate_in_batches(
    request: ov.InferRequest,
    prompts: list[list[int]],
    max_new_tokens: int,
    stop_token_ids: set[int],
    penalty: float,
    block_table: np.ndarray,
) -> tuple[list[list[int]], int]:
    """Greedy answers to every prompt, and the inferences that made them;
    block_table[place] lists each place's cache blocks."""
    answers = [[] for _ in prompts]
    inferences = 0
    waiting = iter(range(len(prompts)))  # the prompts not started yet
    running = {}  # place: SequenceInFlight
    while True:
        # Free places take the next prompts; their blocks are written from position 0.
        for place in range(len(block_table)):
            if place not in running:
                prompt_index = next(waiting, None)
                if prompt_index is None:
                    break
                running[place] = SequenceInFlight(
                    prompt_index, prompts[prompt_index], 0
                )
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
        blocks_per_place = block_table.shape[1]
        request.infer(
            {
                "input_ids": np.array(new_ids, dtype=np.int64),
                "position_ids": np.array(positions, dtype=np.int64),
                "past_lens": past_lens.astype(np.int32),  # tokens already cached
                "subsequence_begins": begins.astype(np.int32),
                "max_context_len": np.array(max(past_lens + lengths), np.int32),
                # Each sequence's blocks, in order, found from block_indices_begins.
                "block_indices": block_table[list(running)].ravel(),
                "block_indices_begins": (
                    np.arange(len(running) + 1, dtype=np.int32) * blocks_per_place
                ),
                "last_positions": begins[1:] - 1,  # each sequence's last token
            }
        )
        inferences += 1
        logits = request.get_tensor("logits").data[:, -1]  # (sequences, vocab)

        for row, place in enumerate(list(running)):
            sequence = running[place]
            answer = answers[sequence.prompt_index]
            seen = prompts[sequence.prompt_index] + answer
            token = int(penalize_repetition(logits[row], seen, penalty).argmax())
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
    prompts_file = argparse.FileType(encoding="utf-8")
    parser.add_argument("--prompts", type=prompts_file, help="a prompt per line")
    parser.add_argument("--max-new-tokens", type=int, default=100, help=">= 1")
    parser.add_argument(
        "--max-sequences", type=int, default=32, help="in a batch, >= 1"
    )
    parser.add_argument("--device", default="CPU", help="CPU or GPU (tested on CPU)")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    prompts = read_prompts(parser, args.prompts)
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")
    if args.max_sequences < 1:
        parser.error("--max-sequences must be at least 1")

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    llm = read_llm_folder(core, parser, args.model_dir)
    config = read_json(parser, args.model_dir / "config.json")
    # OpenVINO's paged rewrite of MPT's attention gives wrong text (genai's too).
    if config.get("model_type") == "mpt":
        parser.error(f"{args.model_dir}: OpenVINO's paged attention gets MPT wrong")
    # Now input_ids is (tokens,) and logits (tokens, 1, vocab), for all sequences.
    paged_attention_transformation(llm.model)
    add_unused_position_ids(llm.model, [-1])  # (tokens,)
    add_last_positions_input(llm.model)
    # One stream on all cores: the batch, not parallel requests, keeps them busy.
    compiled = compile_llm(core, parser, llm.model, args)
    # One prompt a call: a batch would be padded to its longest prompt.
    prompt_ids = []
    for prompt in prompts:
        prompt_ids.append(llm.tokenizer([prompt])["input_ids"][0].tolist())
    longest = max(prompt_ids, key=len)
    args.max_new_tokens = fit_to_context(parser, llm, longest, args.max_new_tokens)
    penalty = repetition_penalty(llm)

    # Each place owns enough blocks for the longest prompt and its answer.
    places = min(args.max_sequences, len(prompts))
    blocks_per_place = blocks_for(compiled, len(longest) + args.max_new_tokens)
    block_table = np.arange(places * blocks_per_place, dtype=np.int32)
    block_table = block_table.reshape(places, blocks_per_place)
    request = compiled.create_infer_request()
    allocate_cache_blocks(compiled, request, block_table.size)

    start = time.perf_counter()
    answers, inferences = generate_in_batches(
        request,
        prompt_ids,
        args.max_new_tokens,
        llm.stop_token_ids,
        penalty,
        block_table,
    )
    seconds = time.perf_counter() - start
    tokens = sum(len(answer) for answer in answers)
    print(
        f"{len(prompts)} prompts, {tokens} new tokens in {seconds:.1f} s, "
        f"{inferences} inferences: {tokens / seconds:.1f} tokens/s",
        file=sys.stderr,
    )
    for answer in answers:  # one line per prompt, in the prompts' order
        print(decode(llm.detokenizer, answer).replace("\n", "\\n"))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
