#!/usr/bin/env python3
"""Beam search, plain or diverse (groups of beams), with a stateful LLM IR.

The model keeps its KV cache in its own state, and its beam_idx input says which cache
row each batch row continues: the model reorders (and at first grows) its own cache,
and no cache is copied in Python. The rules are transformers' beam search, extended to
groups as diverse beam search defines them. Prints `score: text` per hypothesis, best
first, one line each: newlines shown as \\n (and \\r, \\x0b... likewise).
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
# A hypothesis is one line: each character that ends or rewinds a line on a terminal
# (str.splitlines() cuts at every one) is printed as Python escapes it, "\n" as \n.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
LINE_ESCAPES = {
    ord(char): char.encode("unicode_escape").decode() for char in LINE_BREAKS
}
# --f32: compute and cache in f32, as the references do (the CPU's default may be bf16
# with an f16 or u8 cache), and quantize no activations on the fly (int4 and int8
# weights do by default): the numbers then equal the references'.
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
F32_CONFIG["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"


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
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("prompts", nargs="*", default=[DEFAULT_PROMPT])
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
    model, tokenizer, detokenizer, stop_token_ids, _ = read_llm(core, args.model_dir)
    config = F32_CONFIG if args.f32 else {}
    request = core.compile_model(model, args.device, config).create_infer_request()

    for prompt in args.prompts:
        prompt_ids = tokenizer([prompt])["input_ids"][0].tolist()
        request.reset_state()  # the KV cache is the model's state: empty it
        # Each group starts from the prompt with one beam.
        groups = [Group([Beam(0.0, [], 0)]) for _ in range(args.num_beam_groups)]
        input_ids = [prompt_ids]  # the first inference feeds the prompt, in batch 1
        parent_rows = [0]
        start = len(prompt_ids)
        for length in range(start, start + args.max_new_tokens):
            # Row r continues cache row beam_idx[r]: the model gathers its own cache.
            new_positions = np.arange(length - len(input_ids[0]), length)
            inputs = {
                "input_ids": np.array(input_ids, dtype=np.int64),
                "attention_mask": np.ones((len(parent_rows), length), np.int64),
                "position_ids": np.tile(new_positions, (len(parent_rows), 1)),
                "beam_idx": np.array(parent_rows, dtype=np.int32),
            }
            # Only the inputs the model takes (BLOOM and MPT take no position_ids).
            ports = request.model_inputs
            request.infer({port.any_name: inputs[port.any_name] for port in ports})
            log_probs = log_softmax(request.get_tensor("logits").data[:, -1])
            picked = np.zeros(log_probs.shape[1], np.float32)  # by earlier groups
            for group in groups:
                if group.running:
                    group_step(
                        group, log_probs, picked, prompt_ids, stop_token_ids, args
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
            text = decode(detokenizer, hypothesis.tokens)
            line = f"{hypothesis.score:.6f}: {text}"
            print(line.translate(LINE_ESCAPES), flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
    except (RuntimeError, OSError, ValueError) as error:  # OpenVINO, files, JSON
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
