#!/usr/bin/env python3
"""Prompt-lookup decoding: guess the next tokens by finding the last n-gram (3, 2 or 1 tokens) earlier in the prompt
or the answer and copying what followed; one inference checks the guesses and the KV cache (the model's state) is cut
back to what the model accepted. The text is greedy decoding's, sooner where the answer repeats the prompt
(summaries, code edits). MODEL_DIR as for greedy.py. Example: python samples/prompt_lookup.py models/X "$(cat a.txt)"
"""
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
MAX_NGRAM, MAX_GUESSES = 3, 5  # the longest n-gram looked up; guesses checked per inference


def guess(tokens: list[int]) -> list[int]:
    """What followed the latest earlier occurrence of the last n-gram, longest n first: up to MAX_GUESSES tokens."""
    for n in range(min(MAX_NGRAM, len(tokens) - 1), 0, -1):
        for start in range(len(tokens) - n - 1, -1, -1):
            if tokens[start:start + n] == tokens[-n:]:
                return tokens[start + n:start + n + MAX_GUESSES]
    return []


def infer(request: ov.InferRequest, new_ids: list[int], cached: int) -> np.ndarray:
    """Feed new_ids after the `cached` tokens in the KV cache: logits (up to len(new_ids) last positions, vocab)."""
    length = cached + len(new_ids)
    request.infer({"input_ids": np.array([new_ids]), "attention_mask": np.ones((1, length), dtype=np.int64),
                   "position_ids": np.arange(cached, length)[None], "beam_idx": np.zeros(1, dtype=np.int32)})
    return request.get_tensor("logits").data[0]


def trim_cache(request: ov.InferRequest, length: int) -> None:
    """Keep the first `length` positions of every state (batch, kv_heads, seq_len, head_dim) of the KV cache."""
    for state in request.query_state():
        if state.state.shape[2] > length:
            state.state = ov.Tensor(state.state.data[:, :, :length].copy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)  # errors: one line, no usage
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR, help="model folder")
    parser.add_argument("prompt", nargs="?", default="Once upon a time, a little robot", help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=100, help="at most this many tokens, >= 1")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO for the LLM")
    parser.add_argument("--f32", action="store_true", help="compute and cache in f32: exact parity with references")
    args = parser.parse_args()
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        if not (args.model_dir / name).is_file():
            parser.error(f"no {args.model_dir / name}: run scripts/prepare_default_model.py or optimum-cli export")
    if not args.prompt.strip() or args.max_new_tokens < 1:
        parser.error("the prompt is empty" if args.max_new_tokens > 0 else "--max-new-tokens must be at least 1")
    core = ov.Core()  # after `import openvino_tokenizers`, so that it can read the tokenizer IRs
    rt_info = core.read_model(args.model_dir / "openvino_tokenizer.xml").get_rt_info()
    model = core.read_model(args.model_dir / "openvino_model.xml")
    if not MODEL_INPUTS <= {name for port in model.inputs for name in port.names} or "eos_token_id" not in rt_info:
        parser.error(f"{args.model_dir} needs a stateful LLM (inputs {', '.join(sorted(MODEL_INPUTS))}) and an "
                     "eos_token_id in the tokenizer's rt_info: export it with --task text-generation-with-past")
    eos_token_id = rt_info["eos_token_id"].astype(int)
    lm_head = model.output("logits").get_node().input_value(0).get_node()
    if lm_head.get_type_name() == "MatMul":  # logits for the positions that are checked only, not the whole prompt
        kept = ov.opset13.slice(lm_head.input_value(0), [-MAX_GUESSES - 1], [np.iinfo(np.int64).max], [1], axes=[1])
        lm_head.input(0).replace_source_output(kept.output(0))
    try:
        request = core.compile_model(model, args.device, F32_CONFIG if args.f32 else {}).create_infer_request()
    except RuntimeError as error:
        parser.error(f"cannot compile for --device {args.device}: {str(error).strip().splitlines()[-1]}")
    tokenizer = core.compile_model(args.model_dir / "openvino_tokenizer.xml", "CPU")  # string ops: CPU only
    detokenizer = core.compile_model(args.model_dir / "openvino_detokenizer.xml", "CPU")
    prompt_ids = tokenizer([args.prompt])["input_ids"][0].tolist()

    start = time.perf_counter()  # the cache holds every token but the last: the prefill feeds the prompt
    tokens, printed = prompt_ids + [int(infer(request, prompt_ids, 0)[-1].argmax())], ""
    inferences, proposed, accepted = 1, 0, 0
    while True:
        new_ids = tokens[len(prompt_ids):][:args.max_new_tokens]
        new_ids = new_ids[:new_ids.index(eos_token_id)] if eos_token_id in new_ids else new_ids
        text = detokenizer(np.array([new_ids], dtype=np.int64))["string_output"][0]
        if not text.endswith("\ufffd"):  # stream as greedy.py does: hold back a UTF-8 character cut in two
            print(text[len(printed):], end="", flush=True)
            printed = text
        if len(new_ids) == args.max_new_tokens or eos_token_id in tokens[len(prompt_ids):]:
            break
        guesses = guess(tokens)[:args.max_new_tokens - len(new_ids)]  # none found: a plain greedy step
        # One inference on the last token and the guesses: the model's greedy choice after each of them.
        choices = infer(request, tokens[-1:] + guesses, len(tokens) - 1)[-len(guesses) - 1:].argmax(-1).tolist()
        agreed = next((i for i, token in enumerate(guesses) if token != choices[i]), len(guesses))
        inferences, proposed, accepted = inferences + 1, proposed + len(guesses), accepted + agreed
        tokens += guesses[:agreed] + [choices[agreed]]  # the agreed guesses, then the model's own next token
        trim_cache(request, len(tokens) - 1)  # rejected guesses left entries: keep every token but the (new) last
    print(text[len(printed):], flush=True)
    print(f"{len(prompt_ids)} prompt tokens, {len(new_ids)} new tokens in {time.perf_counter() - start:.2f} s, "
          f"{inferences} inferences, {accepted} of {proposed} guesses accepted", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
