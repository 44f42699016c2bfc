#!/usr/bin/env python3
"""Greedy speculative decoding: a small draft model guesses tokens, the main model checks them in one inference, both
KV caches (the models' state) are cut back to what it accepted: out comes the main model's greedy text. DRAFT_DIR and
MAIN_DIR as for greedy.py, with the same tokenizer. Example: python samples/speculative_decoding.py DRAFT MAIN "Hi"."""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the string operations the tokenizer IRs are made of

MAX_DRAFT = 8  # draft tokens per main inference: up by 2 while all are accepted, down by 1 on a rejection
MODEL_INPUTS = {"input_ids", "attention_mask", "position_ids", "beam_idx"}  # beam_idx: only stateful IRs have it
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}


def load(core: ov.Core, folder: Path, last_positions: int, args, parser) -> tuple:
    """The folder's stateful LLM, compiled to give logits for its last positions only, its detokenizer and EOS id."""
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        if not (folder / name).is_file():
            parser.error(f"no {folder / name}: run scripts/prepare_default_model.py or scripts/convert.py")
    rt_info = core.read_model(folder / "openvino_tokenizer.xml").get_rt_info()
    model = core.read_model(folder / "openvino_model.xml")
    if not MODEL_INPUTS <= {name for port in model.inputs for name in port.names} or "eos_token_id" not in rt_info:
        parser.error(f"{folder} needs a stateful LLM and an EOS id: export it with --task text-generation-with-past")
    lm_head = model.output("logits").get_node().input_value(0).get_node()
    if lm_head.get_type_name() == "MatMul":  # the hidden state sliced before the LM head: no logits nobody reads
        kept = ov.opset13.slice(lm_head.input_value(0), [-last_positions], [np.iinfo(np.int64).max], [1], axes=[1])
        lm_head.input(0).replace_source_output(kept.output(0))
    try:
        request = core.compile_model(model, args.device, F32_CONFIG if args.f32 else {}).create_infer_request()
    except RuntimeError as error:
        parser.error(f"cannot compile for --device {args.device}: {str(error).strip().splitlines()[-1]}")
    return request, core.compile_model(folder / "openvino_detokenizer.xml", "CPU"), rt_info["eos_token_id"].astype(int)


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
    parser.add_argument("draft_dir", type=Path, help="the small model's folder")
    parser.add_argument("main_dir", type=Path, help="the model whose greedy text comes out")
    parser.add_argument("prompt", nargs="?", default="Once upon a time, a little robot", help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=100, help="at most this many tokens, >= 1")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO for both models")
    parser.add_argument("--f32", action="store_true", help="compute and cache in f32: exact parity with references")
    args = parser.parse_args()
    if not args.prompt.strip() or args.max_new_tokens < 1:
        parser.error("the prompt is empty" if args.max_new_tokens > 0 else "--max-new-tokens must be at least 1")
    core = ov.Core()  # after `import openvino_tokenizers`, so that it can read the tokenizer IRs
    draft, draft_detokenizer, draft_eos = load(core, args.draft_dir, 1, args, parser)
    main, detokenizer, eos_token_id = load(core, args.main_dir, MAX_DRAFT + 1, args, parser)
    # Guesses are worth checking only if the draft's ids mean the main model's: compare every id's text (U+FFFD aside).
    every_id = np.arange(main.get_compiled_model().output("logits").partial_shape[2].get_length())[:, None]
    vocabularies = [[text.replace("\ufffd", "") for text in d(every_id)[0]] for d in (draft_detokenizer, detokenizer)]
    if draft_eos != eos_token_id or vocabularies[0] != vocabularies[1]:
        parser.error(f"the tokenizers of {args.draft_dir} and {args.main_dir} differ: pick a draft of the same family")
    tokenizer = core.compile_model(args.main_dir / "openvino_tokenizer.xml", "CPU")  # string ops: CPU only
    prompt_ids = tokenizer([args.prompt])["input_ids"][0].tolist()

    start = time.perf_counter()
    infer(draft, prompt_ids, 0)  # both caches hold every token but the last: the prefill feeds the prompt to each
    tokens, printed = prompt_ids + [int(infer(main, prompt_ids, 0)[-1].argmax())], ""
    draft_cached, draft_size, main_calls, proposed, accepted = len(prompt_ids), 2, 1, 0, 0
    while True:
        new_ids = tokens[len(prompt_ids):][:args.max_new_tokens]
        new_ids = new_ids[:new_ids.index(eos_token_id)] if eos_token_id in new_ids else new_ids
        text = detokenizer(np.array([new_ids], dtype=np.int64))["string_output"][0]
        if not text.endswith("\ufffd"):  # stream as greedy.py does: hold back a UTF-8 character cut in two
            print(text[len(printed):], end="", flush=True)
            printed = text
        if len(new_ids) == args.max_new_tokens or eos_token_id in tokens[len(prompt_ids):]:
            break
        draft_ids = []  # the draft's greedy guesses, each fed back to it
        for _ in range(min(draft_size, args.max_new_tokens - len(new_ids))):
            draft_ids.append(int(infer(draft, (tokens + draft_ids)[draft_cached:], draft_cached)[-1].argmax()))
            draft_cached = len(tokens) + len(draft_ids) - 1  # it has not seen its last guess
        # One main inference on the last token and the guesses: its greedy choice after each of them.
        choices = infer(main, tokens[-1:] + draft_ids, len(tokens) - 1)[-len(draft_ids) - 1:].argmax(-1).tolist()
        agreed = next((i for i, guess in enumerate(draft_ids) if guess != choices[i]), len(draft_ids))
        main_calls, proposed, accepted = main_calls + 1, proposed + len(draft_ids), accepted + agreed
        tokens += draft_ids[:agreed] + [choices[agreed]]  # the agreed guesses, then the main model's own next token
        trim_cache(main, len(tokens) - 1)  # rejected guesses left entries: keep every token but the (new) last
        trim_cache(draft, draft_cached := min(draft_cached, len(tokens) - 1))
        draft_size = min(draft_size + 2, MAX_DRAFT) if agreed == len(draft_ids) else max(draft_size - 1, 1)
    print(text[len(printed):], flush=True)
    print(f"{len(prompt_ids)} prompt tokens, {len(new_ids)} new tokens in {time.perf_counter() - start:.2f} s, "
          f"{main_calls} main-model inferences, {accepted} of {proposed} draft tokens accepted", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
