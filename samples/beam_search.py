#!/usr/bin/env python3
"""Beam search, plain or diverse (groups of beams), with a stateful LLM IR.

The model keeps its KV cache in its own state, and its beam_idx input says which cache
row each batch row continues: the model reorders (and at first grows) its own cache,
and no cache is copied in Python. The rules are transformers' beam search, extended to
groups as diverse beam search defines them. Prints `score: text` per hypothesis, best
first, newlines shown as \\n.
MODEL_DIR holds openvino_model.xml, openvino_tokenizer.xml and openvino_detokenizer.xml,
as `optimum-cli export openvino --task text-generation-with-past` writes them.
Example: python samples/beam_search.py models/SmolLM2-135M-Instruct "The Moon is" Paris
"""

import argparse
import json
import sys
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models/SmolLM2-135M-Instruct"
DEFAULT_PROMPT = "The Moon is"
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


@dataclass
class Beam:
    score: float  # the sum of its tokens' log-probabilities (less diversity penalties)
    tokens: list[int]  # the tokens it added to the prompt
    cache_row: int  # the KV cache's row that holds its past


class Hypothesis(NamedTuple):
    score: float  # the sum of log-probabilities / length ** length_penalty
    tokens: list[int]  # a finished answer, without EOS


@dataclass
class Group:
    running: list[Beam]  # best first; none once the group is done
    finished: list[Hypothesis] = field(default_factory=list)  # best first


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


def compile_llm(core: ov.Core, parser, model: ov.Model, args) -> ov.CompiledModel:
    """The LLM compiled for --device (and --f32); an unfit device exits (code 2)."""
    try:
        return core.compile_model(model, args.device, F32_CONFIG if args.f32 else {})
    except RuntimeError as error:
        parser.error(f"cannot compile for --device {args.device}: {last_line(error)}")


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


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(rows, vocab) logits -> log-probabilities, in float32 as torch computes them."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def banned_tokens(sequence: list[int], n: int) -> list[int]:
    """The tokens that would end an n-gram the sequence already holds (n = 0: none)."""
    if n == 0:
        return []
    tail = sequence[len(sequence) - n + 1 :]  # the n-1 tokens a new n-gram starts with
    banned = []
    for start in range(len(sequence) - n + 1):
        if sequence[start : start + n - 1] == tail:
            banned.append(sequence[start + n - 1])
    return banned


def group_step(group, log_probs, picked, prompt_ids, stop_token_ids, args) -> None:
    """One step of one group, as transformers' beam search makes it.

    log_probs: (cache rows, vocab). picked counts the tokens that earlier groups took at
    this step; each costs --diversity-penalty. This group's picks are added to it."""
    size = args.num_beams // args.num_beam_groups
    length = len(group.running[0].tokens) + 1  # the new tokens' count after this step
    rows = [beam.cache_row for beam in group.running]
    scores = log_probs[rows]  # (beams, vocab)
    for index, beam in enumerate(group.running):
        sequence = prompt_ids + beam.tokens
        scores[index] = penalize_repetition(
            scores[index], sequence, args.repetition_penalty
        )
        scores[index, banned_tokens(sequence, args.no_repeat_ngram_size)] = -np.inf
        scores[index] += beam.score
    scores -= args.diversity_penalty * picked
    # Enough candidates, best first, that at least `size` of them do not end on a stop
    # token: each beam may end on each.
    flat = scores.ravel()
    count = max(2, 1 + len(stop_token_ids)) * size
    top = np.argpartition(-flat, count)[:count]
    top = top[np.argsort(-flat[top])]
    candidates = []  # (score, beam index, token, ends)
    for position in top:
        beam_index, token = divmod(int(position), scores.shape[1])
        ends = token in stop_token_ids or length == args.max_new_tokens
        candidates.append((flat[position], beam_index, token, ends))

    # Only candidates ranked within `size` may finish; under early stopping, a group
    # with `size` hypotheses keeps them.
    if not (args.early_stopping == "true" and len(group.finished) == size):
        for score, beam_index, token, ends in candidates[:size]:
            if ends:
                tokens = group.running[beam_index].tokens
                if token not in stop_token_ids:
                    tokens = tokens + [token]
                normalized = score / length**args.length_penalty
                group.finished.append(Hypothesis(float(normalized), tokens))
        group.finished.sort(key=attrgetter("score"), reverse=True)
        del group.finished[size:]

    running = []
    for score, beam_index, token, ends in candidates:
        if not ends and len(running) < size:
            parent = group.running[beam_index]
            running.append(Beam(score, parent.tokens + [token], parent.cache_row))
    np.add.at(picked, [beam.tokens[-1] for beam in running], 1)
    group.running = running

    # Done: with `size` hypotheses under early stopping, or when the best running beam
    # cannot beat the worst of them (at its best length under "never").
    if not running or len(group.finished) < size:
        return
    best_length = length
    if args.early_stopping == "never" and args.length_penalty > 0:
        best_length = args.max_new_tokens
    best_possible = running[0].score / best_length**args.length_penalty
    if args.early_stopping == "true" or best_possible <= group.finished[-1].score:
        group.running = []


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("model_dir", nargs="?", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("prompts", nargs="*", help=f"default: {DEFAULT_PROMPT}")
    parser.add_argument("--max-new-tokens", type=int, default=20, help=">= 1")
    parser.add_argument("--num-beams", type=int, default=15, help="in all groups, >= 1")
    parser.add_argument("--num-beam-groups", type=int, default=3, help="divides beams")
    parser.add_argument("--diversity-penalty", type=float, help="1.0 with groups")
    parser.add_argument("--length-penalty", type=float, default=1.0)
    parser.add_argument("--num-return-sequences", type=int, help="default: all")
    parser.add_argument("--no-repeat-ngram-size", type=int, default=0, help=">= 0")
    stops = ["true", "false", "never"]  # as transformers' early_stopping
    parser.add_argument("--early-stopping", choices=stops, default="false")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    # A lone argument that names no folder is a prompt for the default model.
    if not args.prompts and is_prompt(args.model_dir):
        args.prompts = [args.model_dir]
        args.model_dir = str(DEFAULT_MODEL_DIR)
    if not args.prompts:
        args.prompts = [DEFAULT_PROMPT]
    if not all(prompt.strip() for prompt in args.prompts):
        parser.error("a prompt is empty")
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")
    if args.num_beams < 1 or args.num_beam_groups < 1:
        parser.error("--num-beams and --num-beam-groups must be at least 1")
    if args.num_beams % args.num_beam_groups:
        parser.error("--num-beams must be divisible by --num-beam-groups")
    if args.diversity_penalty and args.num_beam_groups == 1:
        parser.error("--diversity-penalty needs --num-beam-groups > 1")
    returned = args.num_return_sequences
    if returned is not None and not 1 <= returned <= args.num_beams:
        parser.error("--num-return-sequences must be 1 to --num-beams")
    if args.no_repeat_ngram_size < 0:
        parser.error("--no-repeat-ngram-size must be at least 0")
    if args.diversity_penalty is None:
        args.diversity_penalty = 1.0

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    llm = read_llm_folder(core, parser, Path(args.model_dir))
    add_unused_position_ids(llm.model, [-1, -1])  # (batch, new tokens)
    args.repetition_penalty = repetition_penalty(llm)
    keep_last_logits(llm.model, 1)
    request = compile_llm(core, parser, llm.model, args).create_infer_request()
    every_prompt_ids = []
    for prompt in args.prompts:
        every_prompt_ids.append(llm.tokenizer([prompt])["input_ids"][0].tolist())
    longest = max(every_prompt_ids, key=len)
    args.max_new_tokens = fit_to_context(parser, llm, longest, args.max_new_tokens)

    for prompt_ids in every_prompt_ids:
        request.reset_state()  # the KV cache is the model's state: empty it
        # Each group starts from the prompt with one beam.
        groups = [Group([Beam(0.0, [], 0)]) for _ in range(args.num_beam_groups)]
        input_ids = [prompt_ids]  # the first inference feeds the prompt, in batch 1
        parent_rows = [0]
        start = len(prompt_ids)
        for length in range(start, start + args.max_new_tokens):
            # Row r continues cache row beam_idx[r]: the model gathers its own cache.
            new_positions = np.arange(length - len(input_ids[0]), length)
            request.infer(
                {
                    "input_ids": np.array(input_ids, dtype=np.int64),
                    "attention_mask": np.ones((len(parent_rows), length), np.int64),
                    "position_ids": np.tile(new_positions, (len(parent_rows), 1)),
                    "beam_idx": np.array(parent_rows, dtype=np.int32),
                }
            )
            log_probs = log_softmax(request.get_tensor("logits").data[:, -1])
            picked = np.zeros(log_probs.shape[1], np.float32)  # by earlier groups
            for group in groups:
                if group.running:
                    group_step(
                        group, log_probs, picked, prompt_ids, llm.stop_token_ids, args
                    )
            beams = [beam for group in groups for beam in group.running]
            if not beams:
                break
            # Next, row r of the batch is beam r: it continues its parent's cache row.
            input_ids = [[beam.tokens[-1]] for beam in beams]
            parent_rows = [beam.cache_row for beam in beams]
            for row, beam in enumerate(beams):
                beam.cache_row = row

        hypotheses = [hypothesis for group in groups for hypothesis in group.finished]
        hypotheses.sort(key=attrgetter("score"), reverse=True)
        for hypothesis in hypotheses[: args.num_return_sequences]:  # None: all
            text = decode(llm.detokenizer, hypothesis.tokens)
            line = f"{hypothesis.score:.6f}: {text}"
            print(line.replace("\n", "\\n"), flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
