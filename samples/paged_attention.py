#!/usr/bin/env python3
"""Greedy text generation with a paged KV cache: the PagedAttention kernels openvino_genai runs by default.

The same stateful IR as greedy.py, rewritten at load time: each attention layer stops keeping its keys and values in
the model's state and reads and writes them in blocks of cache tensors that this program owns (inputs key_cache.N
and value_cache.N), found through a block table. On CPU these kernels prefill long prompts 1.7-2x faster than
the stateful model's. Example: python samples/paged_attention.py models/SmolLM2-135M-Instruct "Hi"
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the string operations the tokenizer IRs are made of
from openvino._offline_transformations import paged_attention_transformation  # what genai and optimum-intel use

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "SmolLM2-135M-Instruct"
MODEL_INPUTS = {"input_ids", "attention_mask", "position_ids", "beam_idx"}
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)  # errors: one line, no usage
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR, help="model folder")
    parser.add_argument("prompt", nargs="?", default="Once upon a time, a little robot", help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=100, help="at most this many tokens, >= 1")
    parser.add_argument("--device", default="CPU", help="CPU or GPU for the LLM (tested on CPU)")
    parser.add_argument("--f32", action="store_true", help="compute and cache in f32: exact parity with references")
    args = parser.parse_args()
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        if not (args.model_dir / name).is_file():
            parser.error(f"no {args.model_dir / name}: run scripts/prepare_default_model.py or optimum-cli export")
    if not args.prompt.strip() or args.max_new_tokens < 1:
        parser.error("the prompt is empty" if args.max_new_tokens > 0 else "--max-new-tokens must be at least 1")

    core = ov.Core()
    rt_info = core.read_model(args.model_dir / "openvino_tokenizer.xml").get_rt_info()
    model = core.read_model(args.model_dir / "openvino_model.xml")
    if not MODEL_INPUTS <= {name for port in model.inputs for name in port.names} or "eos_token_id" not in rt_info:
        parser.error(f"{args.model_dir} needs a stateful LLM (inputs {', '.join(sorted(MODEL_INPUTS))}) and an "
                     "eos_token_id in the tokenizer's rt_info: export it with --task text-generation-with-past")
    eos_token_id = rt_info["eos_token_id"].astype(int)
    paged_attention_transformation(model)  # tokens now run along axis 0: input_ids (n,), logits (n, 1, vocab)
    lm_head = model.output("logits").get_node().input_value(0).get_node()
    if lm_head.get_type_name() == "MatMul":  # only the last token's logits: a long prompt costs no (n, vocab) logits
        last = ov.opset13.slice(lm_head.input_value(0), [-1], [np.iinfo(np.int64).max], [1], axes=[0])
        lm_head.input(0).replace_source_output(last.output(0))
    try:
        compiled = core.compile_model(model, args.device, F32_CONFIG if args.f32 else {})
    except RuntimeError as error:
        parser.error(f"cannot compile for --device {args.device}: {str(error).strip().splitlines()[-1]}")
    tokenizer = core.compile_model(args.model_dir / "openvino_tokenizer.xml", "CPU")  # string ops: CPU only
    detokenizer = core.compile_model(args.model_dir / "openvino_detokenizer.xml", "CPU")
    prompt_ids = tokenizer([args.prompt])["input_ids"][0]

    # The plugin chose each cache's precision and layout at compile time: (blocks, kv_heads, block_size, head_size),
    # a u8 cache's head or block axis longer by its scales. One sequence needs only enough blocks for its tokens,
    # in order; a server would hand blocks out to many sequences from one pool.
    request = compiled.create_infer_request()
    caches = [port for port in compiled.inputs if port.any_name.startswith(("key_cache.", "value_cache."))]
    block_size = compiled.input("value_cache.0").partial_shape[2].get_length()
    blocks = -(-(len(prompt_ids) + args.max_new_tokens) // block_size)
    for port in caches:
        shape = [blocks, *(dim.get_length() for dim in list(port.partial_shape)[1:])]
        request.set_tensor(port, ov.Tensor(port.element_type, shape))
    block_table = {"block_indices": np.arange(blocks, dtype=np.int32),
                   "block_indices_begins": np.array([0, blocks], dtype=np.int32)}

    start, tokens, printed = time.perf_counter(), [], ""
    new_ids, past = prompt_ids, 0  # the first pass (prefill) feeds the whole prompt
    while len(tokens) < args.max_new_tokens:
        request.start_async({"input_ids": new_ids, "position_ids": np.arange(past, past + len(new_ids)),
                             "past_lens": np.array([past], dtype=np.int32),  # tokens already in the cache
                             "subsequence_begins": np.array([0, len(new_ids)], dtype=np.int32),  # one sequence
                             "max_context_len": np.array(past + len(new_ids), dtype=np.int32), **block_table})
        text = detokenizer(np.array([tokens], dtype=np.int64))["string_output"][0]  # meanwhile: see greedy.py
        if not text.endswith("\ufffd"):
            print(text[len(printed):], end="", flush=True)
            printed = text
        request.wait()
        next_token = int(request.get_tensor("logits").data[-1, -1].argmax())
        if not tokens:
            first_token_seconds = time.perf_counter() - start
        if next_token == eos_token_id:
            break
        tokens.append(next_token)
        new_ids, past = np.array([next_token]), past + len(new_ids)  # every later pass feeds one token
    print(detokenizer(np.array([tokens], dtype=np.int64))["string_output"][0][len(printed):], flush=True)
    decode_speed = max(len(tokens) - 1, 0) / (time.perf_counter() - start - first_token_seconds)
    print(f"{len(prompt_ids)} prompt tokens, {len(tokens)} new tokens, first in {first_token_seconds * 1000:.0f}"
          f" ms, then {decode_speed:.1f} tokens/s", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
