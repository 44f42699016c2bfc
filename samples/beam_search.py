#!/usr/bin/env python3
"""Beam search, plain or diverse (groups), with a stateful LLM IR that reorders its own KV cache.

MODEL_DIR holds openvino_model.xml (stateful), openvino_tokenizer.xml and openvino_detokenizer.xml, as for greedy.py.
Prints one line per hypothesis, best first, `score: text` (a newline in the text shows as \\n).
Example: python samples/beam_search.py models/SmolLM2-135M-Instruct "The Moon is" --num-beams 4 --num-beam-groups 1
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the string operations the tokenizer IRs are made of

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "SmolLM2-135M-Instruct"
MODEL_INPUTS = {"input_ids", "attention_mask", "position_ids", "beam_idx"}  # beam_idx: only stateful IRs have it
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}


def logits_of_last_position_only(model: ov.Model) -> None:
    """Slice the hidden state to the last position before the LM head: logits (batch, 1, vocab)."""
    lm_head = model.output("logits").get_node().input_value(0).get_node()
    if lm_head.get_type_name() == "MatMul":  # (batch, seq_len, hidden) @ (vocab, hidden)^T; else leave it
        last = ov.opset13.slice(lm_head.input_value(0), [-1], [np.iinfo(np.int64).max], [1], axes=[1])
        lm_head.input(0).replace_source_output(last.output(0))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(rows, vocab) logits -> log-probabilities, in float32 as transformers computes them."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def banned_by_ngrams(sequence: list[int], n: int) -> list[int]:
    """Tokens that would repeat an n-gram already in `sequence` (prompt + hypothesis); n = 0 bans none."""
    if n == 0 or len(sequence) + 1 < n:
        return []
    prefix = sequence[len(sequence) - n + 1:]
    return [sequence[i + n - 1] for i in range(len(sequence) - n + 1) if sequence[i:i + n - 1] == prefix]


def group_step(group: dict, log_probs: np.ndarray, penalty: np.ndarray, prompt: list[int], eos_token_id: int,
               args: argparse.Namespace) -> None:
    """One step of one group, as transformers' beam search: running beams are (score, tokens, cache row)."""
    size, length = args.num_beams // args.num_beam_groups, len(group["running"][0][1]) + 1
    scores = log_probs[[row for _, _, row in group["running"]]] - penalty  # (beams, vocab)
    for beam, (_, tokens, _) in enumerate(group["running"]):
        scores[beam, banned_by_ngrams(prompt + tokens, args.no_repeat_ngram_size)] = -np.inf
    scores = (scores + np.array([score for score, _, _ in group["running"]])[:, None]).ravel()
    top = np.argpartition(-scores, 2 * size)[:2 * size]  # 2 * size candidates: at least `size` are not EOS
    running, full = [], args.early_stopping == "true" and len(group["finished"]) == size
    for rank, index in enumerate(top[np.argsort(-scores[top], kind="stable")]):
        beam, token = divmod(int(index), log_probs.shape[1])
        _, tokens, row = group["running"][beam]
        if token == eos_token_id or length == args.max_new_tokens:  # finished, if it ranks in the top `size`
            if rank < size and not full:  # and early stopping has not filled the group before this step
                text_tokens = tokens if token == eos_token_id else tokens + [token]
                group["finished"].append((scores[index] / length ** args.length_penalty, text_tokens))
        elif len(running) < size:
            running.append((scores[index], tokens + [token], row))
    group["finished"] = sorted(group["finished"], key=lambda hypothesis: -hypothesis[0])[:size]
    group["running"] = running
    # Done: at the length limit, or all `size` slots finished and (early stopping, or no running beam can
    # beat the worst of them: "never" judges it at the longest length when longer sequences score better).
    best_length = args.max_new_tokens if args.early_stopping == "never" and args.length_penalty > 0 else length
    group["done"] = length == args.max_new_tokens or len(group["finished"]) == size and (
        args.early_stopping == "true" or running[0][0] / best_length ** args.length_penalty <= group["finished"][-1][0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)  # errors: one line, no usage
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR, help="model folder")
    parser.add_argument("prompts", nargs="*", default=["The Moon is"], help="prompts, answered one after another")
    parser.add_argument("--max-new-tokens", type=int, default=20, help="at most this many tokens, >= 1")
    parser.add_argument("--num-beams", type=int, default=15, help="beams in all, >= 1")
    parser.add_argument("--num-beam-groups", type=int, default=3, help="groups, dividing --num-beams")
    parser.add_argument("--diversity-penalty", type=float, help="subtracted per earlier group's pick (1.0 if groups)")
    parser.add_argument("--length-penalty", type=float, default=1.0, help="score = sum of log-probs / length ** this")
    parser.add_argument("--num-return-sequences", type=int, help="hypotheses to print, <= beams (default: all)")
    parser.add_argument("--no-repeat-ngram-size", type=int, default=0, help="ban repeating n-grams of this size")
    parser.add_argument("--early-stopping", choices=["true", "false", "never"], default="false",
                        help="stop a group when it has enough hypotheses (true), when none can improve (false), never")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO for the LLM")
    parser.add_argument("--f32", action="store_true", help="compute and cache in f32: exact parity with references")
    args = parser.parse_args()
    args.num_return_sequences = args.num_return_sequences or args.num_beams
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        if not (args.model_dir / name).is_file():
            parser.error(f"no {args.model_dir / name}: run scripts/prepare_default_model.py or export a model "
                         "with optimum-cli export openvino --task text-generation-with-past")
    problems = {"a prompt is empty": not all(prompt.strip() for prompt in args.prompts),
                "--max-new-tokens must be at least 1": args.max_new_tokens < 1,
                "--num-beams must be at least 1": args.num_beams < 1,
                "--num-beam-groups must divide --num-beams": args.num_beam_groups < 1 or args.num_beams % args.num_beam_groups,
                "--diversity-penalty needs --num-beam-groups > 1": args.diversity_penalty and args.num_beam_groups == 1,
                "--num-return-sequences must be 1 to --num-beams": not 0 < args.num_return_sequences <= args.num_beams,
                "--no-repeat-ngram-size must be at least 0": args.no_repeat_ngram_size < 0}
    if any(problems.values()):
        parser.error(next(problem for problem, found in problems.items() if found))
    diversity_penalty = np.float32(1.0 if args.diversity_penalty is None else args.diversity_penalty)

    core = ov.Core()  # after `import openvino_tokenizers`, so that it can read the tokenizer IRs
    rt_info = core.read_model(args.model_dir / "openvino_tokenizer.xml").get_rt_info()
    model = core.read_model(args.model_dir / "openvino_model.xml")
    if not MODEL_INPUTS <= {name for port in model.inputs for name in port.names} or "eos_token_id" not in rt_info:
        parser.error(f"{args.model_dir} needs a stateful LLM (inputs {', '.join(sorted(MODEL_INPUTS))}) and an "
                     "eos_token_id in the tokenizer's rt_info: export it with --task text-generation-with-past")
    eos_token_id = rt_info["eos_token_id"].astype(int)
    logits_of_last_position_only(model)  # then a long prompt costs no (prompt_len, vocab) logits
    try:
        request = core.compile_model(model, args.device, F32_CONFIG if args.f32 else {}).create_infer_request()
    except RuntimeError as error:
        parser.error(f"cannot compile for --device {args.device}: {str(error).strip().splitlines()[-1]}")
    tokenizer = core.compile_model(args.model_dir / "openvino_tokenizer.xml", "CPU")  # string ops: CPU only
    detokenizer = core.compile_model(args.model_dir / "openvino_detokenizer.xml", "CPU")

    for prompt in args.prompts:
        prompt_ids = tokenizer([prompt])["input_ids"]  # (1, prompt_len)
        # Prefill once, batch 1. Each group starts from the prompt with a single live beam (cache row 0).
        request.reset_state()
        request.infer({"input_ids": prompt_ids, "attention_mask": np.ones_like(prompt_ids),
                       "position_ids": np.arange(prompt_ids.shape[1])[None], "beam_idx": np.zeros(1, np.int32)})
        groups = [{"running": [(np.float32(0), [], 0)], "finished": [], "done": False}
                  for _ in range(args.num_beam_groups)]
        for length in range(prompt_ids.shape[1] + 1, prompt_ids.shape[1] + args.max_new_tokens + 1):
            log_probs = log_softmax(request.get_tensor("logits").data[:, -1])  # (rows, vocab)
            picked = np.zeros(log_probs.shape[1], np.float32)  # this step's tokens of earlier groups
            for group in [group for group in groups if not group["done"]]:
                group_step(group, log_probs, diversity_penalty * picked, prompt_ids[0].tolist(), eos_token_id, args)
                np.add.at(picked, [tokens[-1] for _, tokens, _ in group["running"]], 1)
            live = [group for group in groups if not group["done"]]
            if not live:
                break
            # Decode: row r continues cache row beam_idx[r]; the model gathers its cache by these (on the
            # first step growing batch 1 to all beams), so no cache is ever copied here.
            beams = [beam for group in live for beam in group["running"]]
            request.infer({"input_ids": np.array([[tokens[-1]] for _, tokens, _ in beams]),
                           "attention_mask": np.ones((len(beams), length), np.int64),
                           "position_ids": np.full((len(beams), 1), length - 1),
                           "beam_idx": np.array([row for _, _, row in beams], np.int32)})
            rows = iter(range(len(beams)))
            for group in live:
                group["running"] = [(score, tokens, next(rows)) for score, tokens, _ in group["running"]]
        hypotheses = sorted((hypothesis for group in groups for hypothesis in group["finished"]),
                            key=lambda hypothesis: -hypothesis[0])[:args.num_return_sequences]
        for score, tokens in hypotheses:
            text = detokenizer(np.array([tokens], np.int64))["string_output"][0] if tokens else ""
            print(f"{score:.6f}: {text}".replace("\n", "\\n"), flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
