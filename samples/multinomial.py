#!/usr/bin/env python3
"""Text generation by multinomial sampling (temperature, top-k, top-p) with a stateful LLM IR, streamed; MODEL_DIR as
for greedy.py, and the same --seed gives the same text. Example:
python samples/multinomial.py models/SmolLM2-135M-Instruct "Once upon a time" --temperature 0.8 --top-p 0.9 --seed 7"""
import argparse
import sys
import time
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


def sample(logits: np.ndarray, temperature: float, top_k: int, top_p: float, rng: np.random.Generator) -> int:
    """A token id from logits (vocab,): transformers' temperature, top-k and top-p warpers, then a multinomial draw."""
    scores = logits.astype(np.float64) / temperature
    kth_score = np.partition(scores, -top_k)[-top_k] if 0 < top_k < len(scores) else -np.inf
    candidates = np.flatnonzero(scores >= kth_score)  # top-k: the k best, and any tied with the k-th (as HF)
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")]  # most likely first
    probs = np.exp(scores[candidates] - scores[candidates[0]])  # softmax, but for the division by the sum
    kept = np.count_nonzero(np.cumsum(probs) - probs < top_p * probs.sum())  # top-p: the fewest reaching p
    return int(candidates[rng.choice(kept, p=probs[:kept] / probs[:kept].sum())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)  # errors: one line, no usage
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR, help="model folder")
    parser.add_argument("prompt", nargs="?", default="Once upon a time, a little robot", help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=100, help="at most this many tokens, >= 1")
    parser.add_argument("--temperature", type=float, default=1.0, help="> 0: 1 leaves the logits, < 1 sharpens them")
    parser.add_argument("--top-k", type=int, default=50, help="draw from the k most likely tokens only; 0: all")
    parser.add_argument("--top-p", type=float, default=1.0, help="in (0, 1]: the fewest tokens whose probability >= p")
    parser.add_argument("--seed", type=int, default=42, help="seed of numpy's default_rng, >= 0")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO for the LLM")
    parser.add_argument("--f32", action="store_true", help="compute and cache in f32: exact parity with references")
    args = parser.parse_args()
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        if not (args.model_dir / name).is_file():
            parser.error(f"no {args.model_dir / name}: run scripts/prepare_default_model.py or optimum-cli export")
    for problem, bad in (("the prompt is empty", not args.prompt.strip()), ("--seed must be 0 or more", args.seed < 0),
                         ("--max-new-tokens must be at least 1", args.max_new_tokens < 1), ("--top-p must be in (0, 1]",
                         not 0 < args.top_p <= 1), ("--temperature must be above 0", not args.temperature > 0),
                         ("--top-k must be 0 or more", args.top_k < 0)):
        if bad:
            parser.error(problem)

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
    prompt_ids = tokenizer([args.prompt])["input_ids"]  # (1, prompt_len)

    rng, start, tokens, text, printed = np.random.default_rng(args.seed), time.perf_counter(), [], "", ""
    new_ids, length = prompt_ids, prompt_ids.shape[1]  # the first pass (prefill) feeds the whole prompt
    while len(tokens) < args.max_new_tokens:
        request.infer({"input_ids": new_ids, "attention_mask": np.ones((1, length), dtype=np.int64),
                       "position_ids": np.arange(length - new_ids.shape[1], length)[None],
                       "beam_idx": np.zeros(1, dtype=np.int32)})  # the cache row each batch row continues
        next_token = sample(request.get_tensor("logits").data[0, -1], args.temperature, args.top_k, args.top_p, rng)
        if next_token == eos_token_id:
            break
        tokens.append(next_token)  # streamed as greedy.py streams: re-decode, hold back a cut UTF-8 character
        text = detokenizer(np.array([tokens]))["string_output"][0]
        if not text.endswith("\ufffd"):
            print(text[len(printed):], end="", flush=True)
            printed = text
        new_ids, length = np.array([[next_token]]), length + 1  # every later pass feeds one token
    print(text[len(printed):], flush=True)
    print(f"{prompt_ids.shape[1]} prompt tokens, {len(tokens)} new tokens in {time.perf_counter() - start:.2f} s",
          file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
