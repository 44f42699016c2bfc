#!/usr/bin/env python3
"""Greedy generation for many prompts at once with a stateful LLM IR: several infer
requests in flight, each with its own KV cache in its state.

The model is compiled for throughput: the device splits into streams, each running a
request. A request's callback hands it back to the main thread when an inference
ends, which starts its next step, or its next prompt once the current one is
answered. Prints one answer per line, in the prompts' order (newlines written as \\n).
MODEL_DIR holds openvino_model.xml, openvino_tokenizer.xml and openvino_detokenizer.xml,
as `optimum-cli export openvino --task text-generation-with-past` writes them.
Example: python samples/throughput.py --prompts prompts.txt --compare
See also samples/continuous_batching.py: many sequences in each inference instead.
"""

import argparse
import json
import queue
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

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


def keep_last_logits(model: ov.Model, positions: int) -> None:
    """Compute logits (batch, positions, vocab) for the last positions only.

    A long prompt would cost (prompt_len, vocab) logits that nobody reads. Slicing the
    LM head's input before compiling removes that work. Without a MatMul head, the
    model is left as is."""
    lm_head = find_lm_head(model)
    if lm_head is None:
        return
    hidden = lm_head.input_value(0)  # (batch, seq_len, hidden)
    end = np.iinfo(np.int64).max
    last = ov.opset13.slice(hidden, [-positions], [end], [1], axes=[1])
    lm_head.input(0).replace_source_output(last.output(0))


def compile_for_throughput(core: ov.Core, parser, model: ov.Model, args):
    """The LLM compiled for many requests at once; an unfit device exits (code 2)."""
    config = {"PERFORMANCE_HINT": "THROUGHPUT"}
    if args.device.startswith("AUTO"):
        config = {"PERFORMANCE_HINT": "CUMULATIVE_THROUGHPUT"}  # spread over devices
    if args.f32:
        config.update(F32_CONFIG)
    try:
        return core.compile_model(model, args.device, config)
    except RuntimeError as error:
        parser.error(f"cannot compile for --device {args.device}: {last_line(error)}")


def llm_inputs(new_ids: list[int], cached: int) -> dict[str, np.ndarray]:
    """Inputs that feed new_ids after the `cached` tokens that the KV cache holds."""
    length = cached + len(new_ids)
    return {
        "input_ids": np.array([new_ids], dtype=np.int64),  # (1, new tokens)
        "attention_mask": np.ones((1, length), dtype=np.int64),
        "position_ids": np.arange(cached, length, dtype=np.int64)[None],
        "beam_idx": np.zeros(1, dtype=np.int32),  # batch row 0 continues cache row 0
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


def read_prompts(parser, prompts_file) -> list[str]:
    """The file's lines that are not blank, or DEFAULT_PROMPTS without a file."""
    if prompts_file is None:
        return DEFAULT_PROMPTS
    prompts = [line.rstrip("\n") for line in prompts_file if line.strip()]
    if not prompts:
        parser.error("--prompts holds no prompt")
    return prompts


def generate_with_requests(
    requests: list[ov.InferRequest],
    prompts: list[list[int]],
    max_new_tokens: int,
    stop_token_ids: set[int],
    penalty: float,
) -> tuple[list[list[int]], int]:
    """Greedy answers to every prompt, the requests kept busy while prompts remain;
    and the most requests that were computing at once."""
    answers = [[] for _ in prompts]
    in_flight = 0  # requests started whose end has not been taken from the queue
    most_in_flight = 0
    working_on = [None] * len(requests)  # the prompt index each request answers
    waiting = iter(range(len(prompts)))  # the prompts no request has taken yet
    answered = 0
    ended = queue.Queue()  # the requests whose inference has ended
    for index, request in enumerate(requests):
        # OpenVINO's own thread calls it when the request's inference ends.
        request.set_callback(ended.put, index)
        ended.put(index)  # at first, every request is free
    while answered < len(prompts):
        index = ended.get()  # whichever request ends first
        request = requests[index]
        prompt_index = working_on[index]
        if prompt_index is not None:
            in_flight -= 1
            answer = answers[prompt_index]
            logits = request.get_tensor("logits").data[0, -1]
            seen = prompts[prompt_index] + answer
            token = int(penalize_repetition(logits, seen, penalty).argmax())
            if token not in stop_token_ids:
                answer.append(token)
            if token not in stop_token_ids and len(answer) < max_new_tokens:
                cached = len(prompts[prompt_index]) + len(answer) - 1
                request.start_async(llm_inputs([token], cached))
                in_flight += 1
                continue
            answered += 1
        # The request is free: it takes the next prompt, with an empty KV cache.
        working_on[index] = next(waiting, None)
        if working_on[index] is not None:
            request.reset_state()
            request.start_async(llm_inputs(prompts[working_on[index]], 0))
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
    return answers, most_in_flight


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR)
    prompts_file = argparse.FileType(encoding="utf-8")
    parser.add_argument("--prompts", type=prompts_file, help="a prompt per line")
    parser.add_argument("--max-new-tokens", type=int, default=100, help=">= 1")
    parser.add_argument("--requests", type=int, help="default: the device's optimum")
    parser.add_argument("--compare", action="store_true", help="then with 1 request")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    prompts = read_prompts(parser, args.prompts)
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")
    if args.requests is not None and args.requests < 1:
        parser.error("--requests must be at least 1")

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    llm = read_llm_folder(core, parser, args.model_dir)
    add_unused_position_ids(llm.model, [-1, -1])  # (batch, new tokens)
    keep_last_logits(llm.model, 1)
    compiled = compile_for_throughput(core, parser, llm.model, args)
    # One prompt a call: a batch would be padded to its longest prompt.
    prompt_ids = []
    for prompt in prompts:
        prompt_ids.append(llm.tokenizer([prompt])["input_ids"][0].tolist())
    longest = max(prompt_ids, key=len)
    args.max_new_tokens = fit_to_context(parser, llm, longest, args.max_new_tokens)
    penalty = repetition_penalty(llm)

    counts = [
        args.requests or compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    ]
    if args.compare:
        counts.append(1)
    for count in counts:
        requests = [compiled.create_infer_request() for _ in range(count)]
        start = time.perf_counter()
        answers, most_in_flight = generate_with_requests(
            requests, prompt_ids, args.max_new_tokens, llm.stop_token_ids, penalty
        )
        seconds = time.perf_counter() - start
        tokens = sum(len(answer) for answer in answers)
        print(
            f"{len(prompts)} prompts, {tokens} new tokens in {seconds:.2f} s "
            f"with {count} requests, {most_in_flight} in flight at most: "
            f"{tokens / seconds:.1f} tokens/s",
            file=sys.stderr,
        )
    for answer in answers:  # one line per prompt, in the prompts' order
        print(decode(llm.detokenizer, answer).replace("\n", "\\n"))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
