#!/usr/bin/env python3
"""Beam search, plain or diverse (groups), with a stateful LLM IR that reorders its own KV cache.

MODEL_DIR is as for greedy.py. Prints `score: text` per hypothesis, best first (newlines shown as \\n).
Example: python samples/beam_search.py models/SmolLM2-135M-Instruct "The Moon is" "Paris" --num-beams 4"""
import argparse
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the string operations the tokenizer IRs are made of

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "SmolLM2-135M-Instruct"
MODEL_INPUTS = {"input_ids", "attention_mask", "position_ids", "beam_idx"}  # beam_idx: only stateful IRs have it
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}


def group_step(group: dict, log_probs: np.ndarray, picked: np.ndarray, prompt: list[int], eos_token_id: int,
               args: argparse.Namespace) -> None:
    """One step of one group as transformers' beam search makes it; counts the tokens its beams take in `picked`."""
    beams, size, length = group["running"], args.num_beams // args.num_beam_groups, len(group["running"][0][1]) + 1
    scores = log_probs[[row for *_, row in beams]] - args.diversity_penalty * picked  # (beams, vocab)
    for beam, (score, tokens, _) in enumerate(beams):
        sequence, n = prompt + tokens, args.no_repeat_ngram_size  # ban tokens that would repeat an n-gram of it
        tail = sequence[len(sequence) - n + 1:]
        bans = [sequence[i + n - 1] for i in range(len(sequence) - n + 1 if n else 0) if sequence[i:i + n - 1] == tail]
        scores[beam, bans] = -np.inf
        scores[beam] += score
    top = np.argpartition(-scores.ravel(), 2 * size)[:2 * size]  # 2 * size candidates: at least `size` are not EOS
    ranked = [(scores.ravel()[i], *divmod(int(i), scores.shape[1])) for i in top[np.argsort(-scores.ravel()[top])]]
    ends = [token == eos_token_id or length == args.max_new_tokens for _, _, token in ranked]
    if not (args.early_stopping == "true" and len(group["finished"]) == size):  # under early stopping full is final
        ended = [(score / length ** args.length_penalty, beams[beam][1] + [token] * (token != eos_token_id))
                 for (score, beam, token), end in zip(ranked[:size], ends) if end]  # from the top `size` only
        group["finished"] = sorted(group["finished"] + ended, key=lambda hypothesis: -hypothesis[0])[:size]
    running = [[score, beams[beam][1] + [token], beams[beam][2]]
               for (score, beam, token), end in zip(ranked, ends) if not end][:size]
    # Done with `size` hypotheses under early stopping, or when the best running beam cannot beat the worst of them.
    best_length = args.max_new_tokens if args.early_stopping == "never" and args.length_penalty > 0 else length
    group["running"] = [] if running and len(group["finished"]) == size and (
        args.early_stopping == "true" or running[0][0] / best_length ** args.length_penalty <= group["finished"][-1][0]
    ) else running
    np.add.at(picked, [tokens[-1] for _, tokens, _ in running], 1)


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
    parser.add_argument("--early-stopping", choices=["true", "false", "never"], default="false", help="as transformers")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO for the LLM")
    parser.add_argument("--f32", action="store_true", help="compute and cache in f32: exact parity with references")
    args = parser.parse_args()
    problems = {"a prompt is empty": not all(prompt.strip() for prompt in args.prompts),
                "--max-new-tokens must be at least 1": args.max_new_tokens < 1,
                "--num-beams must be at least 1 and divisible by --num-beam-groups":
                args.num_beams < 1 or args.num_beam_groups < 1 or args.num_beams % args.num_beam_groups,
                "--diversity-penalty needs --num-beam-groups > 1": args.diversity_penalty and args.num_beam_groups == 1,
                "--num-return-sequences must be 1 to --num-beams":
                args.num_return_sequences not in (None, *range(1, args.num_beams + 1)),
                "--no-repeat-ngram-size must be at least 0": args.no_repeat_ngram_size < 0}
    if found := [problem for problem, bad in problems.items() if bad]:
        parser.error(found[0])
    args.diversity_penalty = 1.0 if args.diversity_penalty is None else args.diversity_penalty
    core = ov.Core()  # after `import openvino_tokenizers`, so that it can read the tokenizer IRs
    try:
        rt_info = core.read_model(args.model_dir / "openvino_tokenizer.xml").get_rt_info()
        model = core.read_model(args.model_dir / "openvino_model.xml")
        if not MODEL_INPUTS <= {name for port in model.inputs for name in port.names} or "eos_token_id" not in rt_info:
            raise RuntimeError(f"{args.model_dir} needs a stateful LLM and an eos_token_id in its tokenizer's rt_info")
        if (lm_head := model.output("logits").get_node().input_value(0).get_node()).get_type_name() == "MatMul":
            # Only the last position needs logits: slice the hidden state before the LM head (batch, 1, vocab).
            last = ov.opset13.slice(lm_head.input_value(0), [-1], [np.iinfo(np.int64).max], [1], axes=[1])
            lm_head.input(0).replace_source_output(last.output(0))
        request = core.compile_model(model, args.device, F32_CONFIG if args.f32 else {}).create_infer_request()
        tokenizer = core.compile_model(args.model_dir / "openvino_tokenizer.xml", "CPU")  # string ops: CPU only
        detokenizer = core.compile_model(args.model_dir / "openvino_detokenizer.xml", "CPU")
    except RuntimeError as error:  # a missing or unfit IR, an unknown device: the last line of the message says which
        parser.error(f"{str(error).strip().splitlines()[-1]} (scripts/prepare_default_model.py prepares the default "
                     "model folder; optimum-cli export openvino --task text-generation-with-past exports others)")

    for prompt in args.prompts:
        prompt_ids = tokenizer([prompt])["input_ids"]  # (1, prompt_len)
        request.reset_state()  # the KV cache is the model's state: empty it for each prompt
        groups = [{"running": [[0.0, [], 0]], "finished": []} for _ in range(args.num_beam_groups)]  # 1 beam each
        input_ids, parent_rows = prompt_ids, [0]  # the first pass (prefill) feeds the prompt once, in batch 1
        for length in range(prompt_ids.shape[1], prompt_ids.shape[1] + args.max_new_tokens):
            # Row r continues cache row beam_idx[r]: the model gathers (first, grows) its own cache; none is copied.
            positions = np.arange(length - input_ids.shape[1], length)[None].repeat(len(parent_rows), axis=0)
            request.infer({"input_ids": input_ids, "attention_mask": np.ones((len(parent_rows), length), np.int64),
                           "position_ids": positions, "beam_idx": np.array(parent_rows, np.int32)})
            logits = request.get_tensor("logits").data[:, -1]  # (rows, vocab); log-softmax in float32 like torch
            log_probs = logits - logits.max(axis=-1, keepdims=True)
            log_probs -= np.log(np.exp(log_probs).sum(axis=-1, keepdims=True))
            picked = np.zeros(log_probs.shape[1], np.float32)  # tokens that earlier groups took in this step
            for group in [group for group in groups if group["running"]]:  # a running beam: [score, tokens, row]
                group_step(group, log_probs, picked, prompt_ids[0].tolist(), rt_info["eos_token_id"].astype(int), args)
            if not (beams := [beam for group in groups for beam in group["running"]]):
                break
            input_ids, parent_rows = np.array([[tokens[-1]] for _, tokens, _ in beams]), [row for *_, row in beams]
            for row, beam in enumerate(beams):
                beam[2] = row
        for score, tokens in sorted((hypothesis for group in groups for hypothesis in group["finished"]),
                                    key=lambda hypothesis: -hypothesis[0])[:args.num_return_sequences]:  # None: all
            text = detokenizer(np.array([tokens], np.int64))["string_output"][0] if tokens else ""
            print(f"{score:.6f}: {text}".replace("\n", "\\n"), flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
