#!/usr/bin/env python3
"""Greedy text generation with a stateful LLM IR (its KV cache lives inside the model), streamed as it is made.

MODEL_DIR holds openvino_model.xml, openvino_tokenizer.xml and openvino_detokenizer.xml (`optimum-cli export openvino
--task text-generation-with-past` writes them). Example: python samples/greedy.py models/SmolLM2-135M-Instruct "Hi"
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


def logits_of_last_position_only(model: ov.Model) -> None:
    """Slice the hidden state to the last position before the LM head: logits (batch, 1, vocab)."""
    lm_head = model.output("logits").get_node().input_value(0).get_node()
    if lm_head.get_type_name() == "MatMul":  # (batch, seq_len, hidden) @ (vocab, hidden)^T; else leave it
        last = ov.opset13.slice(lm_head.input_value(0), [-1], [np.iinfo(np.int64).max], [1], axes=[1])
        lm_head.input(0).replace_source_output(last.output(0))


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
    logits_of_last_position_only(model)  # then a long prompt costs no (prompt_len, vocab) logits
    try:
        request = core.compile_model(model, args.device, F32_CONFIG if args.f32 else {}).create_infer_request()
    except RuntimeError as error:
        parser.error(f"cannot compile for --device {args.device}: {str(error).strip().splitlines()[-1]}")
    tokenizer = core.compile_model(args.model_dir / "openvino_tokenizer.xml", "CPU")  # string ops: CPU only
    detokenizer = core.compile_model(args.model_dir / "openvino_detokenizer.xml", "CPU")
    prompt_ids = tokenizer([args.prompt])["input_ids"]  # (1, prompt_len)

    request.reset_state()  # the KV cache is the model's state: empty it for each new prompt
    start, tokens, printed = time.perf_counter(), [], ""
    new_ids, length = prompt_ids, prompt_ids.shape[1]  # the first pass (prefill) feeds the whole prompt
    while len(tokens) < args.max_new_tokens:
        request.start_async({"input_ids": new_ids, "attention_mask": np.ones((1, length), dtype=np.int64),
                             "position_ids": np.arange(length - new_ids.shape[1], length)[None],
                             "beam_idx": np.zeros(1, dtype=np.int32)})  # the cache row each batch row continues
        # While the model runs, show the tokens so far. Re-decode them all (alone, a token may lose its leading
        # space); hold back a trailing U+FFFD, a UTF-8 character whose remaining bytes come with the next token.
        text = detokenizer(np.array([tokens], dtype=np.int64))["string_output"][0]
        if not text.endswith("\ufffd"):
            print(text[len(printed):], end="", flush=True)
            printed = text
        request.wait()
        next_token = int(request.get_tensor("logits").data[0, -1].argmax())
        if not tokens:
            first_token_seconds = time.perf_counter() - start
        if next_token == eos_token_id:
            break
        tokens.append(next_token)
        new_ids, length = np.array([[next_token]]), length + 1  # every later pass feeds one token
    print(detokenizer(np.array([tokens], dtype=np.int64))["string_output"][0][len(printed):], flush=True)
    decode_speed = max(len(tokens) - 1, 0) / (time.perf_counter() - start - first_token_seconds)
    print(f"{prompt_ids.shape[1]} prompt tokens, {len(tokens)} new tokens, first in {first_token_seconds * 1000:.0f}"
          f" ms, then {decode_speed:.1f} tokens/s", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
