#!/usr/bin/env python3
"""Multi-turn chat with a stateful LLM IR, the conversation kept in its KV cache: a user turn per line of stdin until
EOF, each answer streamed to stdout. MODEL_DIR as for greedy.py, with a chat_template in the tokenizer IR's rt_info.
Example: printf 'Hi!\\nWhat is 2 + 2?\\n' | python samples/chat.py"""
import argparse
import sys
from pathlib import Path

import jinja2.sandbox
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


def raise_exception(message: str):
    raise jinja2.TemplateError(message)  # what templates call to reject a conversation, as in transformers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)  # errors: one line, no usage
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR, help="model folder")
    parser.add_argument("--system", help="a system message that opens the conversation")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="at most this many tokens per answer, >= 1")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO for the LLM")
    parser.add_argument("--f32", action="store_true", help="compute and cache in f32: exact parity with references")
    args = parser.parse_args()
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        if not (args.model_dir / name).is_file():
            parser.error(f"no {args.model_dir / name}: run scripts/prepare_default_model.py or export a model "
                         "with optimum-cli export openvino --task text-generation-with-past")
    core = ov.Core()  # after `import openvino_tokenizers`, so that it can read the tokenizer IRs
    rt_info = core.read_model(args.model_dir / "openvino_tokenizer.xml").get_rt_info()
    model = core.read_model(args.model_dir / "openvino_model.xml")
    if not MODEL_INPUTS <= {name for port in model.inputs for name in port.names} or "eos_token_id" not in rt_info:
        parser.error(f"{args.model_dir} needs a stateful LLM (inputs {', '.join(sorted(MODEL_INPUTS))}) and an "
                     "eos_token_id in the tokenizer's rt_info: export it with --task text-generation-with-past")
    if args.max_new_tokens < 1 or "chat_template" not in rt_info:
        parser.error("--max-new-tokens must be at least 1" if args.max_new_tokens < 1 else
                     f"{args.model_dir} has no chat_template in its tokenizer's rt_info: it is not a chat model")
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)  # as transformers
    eos_token_id = rt_info["eos_token_id"].astype(int)
    logits_of_last_position_only(model)  # then a long history costs no (history_len, vocab) logits
    try:
        request = core.compile_model(model, args.device, F32_CONFIG if args.f32 else {}).create_infer_request()
    except RuntimeError as error:
        parser.error(f"cannot compile for --device {args.device}: {str(error).strip().splitlines()[-1]}")
    tokenizer = core.compile_model(args.model_dir / "openvino_tokenizer.xml", "CPU")  # string ops: CPU only
    detokenizer = core.compile_model(args.model_dir / "openvino_detokenizer.xml", "CPU")

    messages, cached = [{"role": "system", "content": args.system}] if args.system else [], []  # cached: token ids
    for line in filter(str.strip, sys.stdin):  # each non-blank line is a user turn
        messages.append({"role": "user", "content": line.rstrip("\n")})
        try:
            history = environment.from_string(rt_info["chat_template"].astype(str)).render(
                messages=messages, add_generation_prompt=True, raise_exception=raise_exception)
        except jinja2.TemplateError as error:  # a broken template, or one that refuses this conversation
            parser.error(f"the model's chat template fails: {error}")
        history_ids = tokenizer([history])["input_ids"][0].tolist()
        # The cache holds `cached`: feed only what the templated history adds, or all of it where it is no extension.
        if history_ids[:len(cached)] != cached:
            print("the history does not extend the cache: running all of it again", file=sys.stderr)
            request.reset_state()
            cached = []
        new_ids, fed, tokens, text, printed = history_ids[len(cached):], len(history_ids) - len(cached), [], "", ""
        while len(tokens) < args.max_new_tokens:
            cached += new_ids  # what the cache holds after this inference
            request.infer({"input_ids": np.array([new_ids]), "beam_idx": np.zeros(1, dtype=np.int32),
                           "attention_mask": np.ones((1, len(cached)), dtype=np.int64),
                           "position_ids": np.arange(len(cached) - len(new_ids), len(cached))[None]})
            next_token = int(request.get_tensor("logits").data[0, -1].argmax())
            if next_token == eos_token_id:
                break
            tokens.append(next_token)  # streamed as greedy.py streams: re-decode, hold back a cut UTF-8 character
            text = detokenizer(np.array([tokens]))["string_output"][0]
            if not text.endswith("\ufffd"):
                print(text[len(printed):], end="", flush=True)
                printed = text
            new_ids = [next_token]
        print(text[len(printed):], flush=True)
        messages.append({"role": "assistant", "content": text})
        print(f"{fed} tokens fed, {len(tokens)} new tokens", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
