#!/usr/bin/env python3
"""Greedy speculative decoding with two stateful LLM IRs: the main model's greedy text,
in fewer of its inferences where a small draft model guesses right.

The draft model guesses a few tokens, one inference of the main model checks them all,
and the main model keeps the guesses up to the first it disagrees with, then adds its
own next token. Both models keep their KV cache in their state, so the rejected
guesses' entries are cut out of both caches.
DRAFT_DIR and MAIN_DIR each hold openvino_model.xml, openvino_tokenizer.xml and
openvino_detokenizer.xml (optimum-cli export openvino --task text-generation-with-past),
and the two models share one tokenizer.
Example: python samples/speculative_decoding.py models/small models/large "Hello"
See also samples/prompt_lookup.py: guesses copied from the prompt, no draft model.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

DEFAULT_PROMPT = "Once upon a time, a little robot"
EXPORT_HINT = "run scripts/prepare_default_model.py, or optimum-cli export openvino"
LLM_FILES = ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
# --f32: compute and cache in f32, as the references do (the CPU's default may be bf16
# with an f16 or u8 cache), and quantize no activations on the fly (int4 and int8
# weights do by default): the numbers then equal the references'.
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
F32_CONFIG["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"


MAX_DRAFT = 8  # draft tokens per main inference, at most


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


def keep_last_logits(model: ov.Model, positions: int) -> None:
    """Compute logits (batch, positions, vocab) for the last positions only.

    A long prompt would cost (prompt_len, vocab) logits that nobody reads: slicing the
    LM head's input (each position's hidden state, which the MatMul by the (vocab,
    hidden) matrix turns into logits) before compiling removes that work. Element-wise
    operations may follow the MatMul (Gemma 2 caps the logits: divide, tanh,
    multiply); they work position by position."""
    lm_head = model.output("logits").get_node()
    while lm_head.get_type_name() != "MatMul":
        lm_head = lm_head.input_value(0).get_node()
    hidden = lm_head.input_value(0)  # (batch, seq_len, hidden)
    # From -positions to the end (the largest int64), a step of 1, along axis 1.
    last = ov.opset13.slice(hidden, [-positions], [np.iinfo(np.int64).max], [1], [1])
    lm_head.input(0).replace_source_output(last.output(0))


def llm_inputs(request: ov.InferRequest, token_ids: list[int], cached: int) -> dict:
    """Inputs that feed token_ids[cached:], what the KV cache lacks of the text: those
    the request's model takes (BLOOM and MPT take no position_ids)."""
    inputs = {
        "input_ids": np.array([token_ids[cached:]], dtype=np.int64),  # (1, new tokens)
        "attention_mask": np.ones((1, len(token_ids)), dtype=np.int64),
        "position_ids": np.arange(cached, len(token_ids), dtype=np.int64)[None],
        "beam_idx": np.zeros(1, dtype=np.int32),  # batch row 0 continues cache row 0
    }
    return {port.any_name: inputs[port.any_name] for port in request.model_inputs}


def decode(detokenizer: ov.CompiledModel, tokens: list[int]) -> str:
    """The text of some token ids."""
    return str(detokenizer(np.array([tokens], dtype=np.int64))["string_output"][0])


def stream(detokenizer: ov.CompiledModel, tokens: list[int], printed: str) -> str:
    """Print what the tokens' text adds to `printed` (the text so far); return the text.

    All tokens are decoded again each time: decoded alone, a token may lose its leading
    space. A text ending in U+FFFD ends inside a UTF-8 character whose other bytes come
    with the next token, so it waits."""
    text = decode(detokenizer, tokens)
    if text.endswith("\ufffd"):
        return printed
    print(text[len(printed) :], end="", flush=True)
    return text


def infer_logits(request: ov.InferRequest, token_ids: list[int], cached: int):
    """Feed token_ids[cached:], what the KV cache lacks: logits (positions, vocab)."""
    request.infer(llm_inputs(request, token_ids, cached))
    return request.get_tensor("logits").data[0]


def trim_cache(request: ov.InferRequest, length: int) -> None:
    """Keep the first `length` positions of every KV cache state.

    Each state is (batch, kv_heads, seq_len, head_size): the model reads it back on its
    next inference, so cutting it along seq_len forgets the positions after `length`."""
    for state in request.query_state():
        if state.state.shape[2] > length:
            state.state = ov.Tensor(state.state.data[:, :, :length].copy())


def verify(request: ov.InferRequest, tokens: list[int], guesses: list[int]) -> int:
    """Check guesses of what follows `tokens` in one inference; return how many hold.

    The model sees the last token and the guesses, and gives its greedy choice after
    each. `tokens` grows by the guesses up to the first it disagrees with, then by its
    own choice there. Then the cache keeps every token but the new last one."""
    logits = infer_logits(request, tokens + guesses, len(tokens) - 1)
    choices = logits[-len(guesses) - 1 :].argmax(axis=-1).tolist()
    agreed = 0
    while agreed < len(guesses) and guesses[agreed] == choices[agreed]:
        agreed += 1
    tokens.extend(guesses[:agreed])
    tokens.append(choices[agreed])
    trim_cache(request, len(tokens) - 1)
    return agreed


def vocabulary(detokenizer: ov.CompiledModel, size: int) -> list[str]:
    """Each token id's text (byte tokens' U+FFFD left out)."""
    every_id = np.arange(size, dtype=np.int64)[:, None]  # (size, 1): one id a row
    texts = detokenizer(every_id)["string_output"]
    return [str(text).replace("\ufffd", "") for text in texts]


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("draft_dir", type=Path, help="the small model that guesses")
    parser.add_argument("main_dir", type=Path, help="the model whose text comes out")
    parser.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT)
    parser.add_argument("--max-new-tokens", type=int, default=100, help=">= 1")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    if not args.prompt.strip():
        parser.error("the prompt is empty")
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    # The main model's tokenizer and stop tokens make the text; the draft only guesses.
    draft_model, _, draft_detokenizer, _, _ = read_llm(core, args.draft_dir)
    main_llm = read_llm(core, args.main_dir)
    main_model, tokenizer, detokenizer, stop_token_ids, _ = main_llm
    keep_last_logits(draft_model, 1)
    keep_last_logits(main_model, MAX_DRAFT + 1)  # the positions that are checked
    config = F32_CONFIG if args.f32 else {}
    draft_compiled = core.compile_model(draft_model, args.device, config)
    draft_request = draft_compiled.create_infer_request()
    main_compiled = core.compile_model(main_model, args.device, config)
    main_request = main_compiled.create_infer_request()
    # Guesses are worth checking only if the draft's ids mean what the main model's do.
    size = main_compiled.output("logits").partial_shape[2].get_length()
    if vocabulary(draft_detokenizer, size) != vocabulary(detokenizer, size):
        folders = f"{args.draft_dir} and {args.main_dir}"
        raise ValueError(f"{folders} tokenize otherwise: pick one family")
    prompt_ids = tokenizer([args.prompt])["input_ids"][0].tolist()

    start = time.perf_counter()
    # The prefill feeds the prompt to both: each cache holds every token but the last.
    infer_logits(draft_request, prompt_ids, 0)
    first_token = int(infer_logits(main_request, prompt_ids, 0)[-1].argmax())
    tokens = prompt_ids + [first_token]
    draft_cached = len(prompt_ids)  # the tokens in the draft's cache
    draft_size = 2  # guesses per step: up by 2 while all hold, down by 1 otherwise
    printed = ""  # the answer's text on stdout so far
    main_inferences = 1
    proposed = 0  # draft tokens made
    accepted = 0  # draft tokens the main model agreed with
    while True:
        # Several tokens may come at once: the answer ends at the limit or a stop token.
        answer = tokens[len(prompt_ids) :][: args.max_new_tokens]
        stops = [token in stop_token_ids for token in answer]
        if any(stops):
            answer = answer[: stops.index(True)]
        printed = stream(detokenizer, answer, printed)
        if any(stops) or len(answer) == args.max_new_tokens:
            break
        # The draft's greedy guesses, each fed back to it.
        guesses = []
        for _ in range(min(draft_size, args.max_new_tokens - len(answer))):
            logits = infer_logits(draft_request, tokens + guesses, draft_cached)
            guesses.append(int(logits[-1].argmax()))
            draft_cached = len(tokens) + len(guesses) - 1  # not its last guess
        agreed = verify(main_request, tokens, guesses)
        main_inferences += 1
        proposed += len(guesses)
        accepted += agreed
        # The draft's cache too keeps only what the main model accepted.
        draft_cached = min(draft_cached, len(tokens) - 1)
        trim_cache(draft_request, draft_cached)
        if agreed == len(guesses):
            draft_size = min(draft_size + 2, MAX_DRAFT)
        else:
            draft_size = max(draft_size - 1, 1)
    print(decode(detokenizer, answer)[len(printed) :], flush=True)
    seconds = time.perf_counter() - start
    stats = f"{len(prompt_ids)} prompt tokens, {len(answer)} new tokens "
    stats += f"in {seconds:.2f} s, {main_inferences} main-model inferences, "
    stats += f"{accepted} of {proposed} draft tokens accepted"
    print(stats, file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
    except (RuntimeError, OSError, ValueError) as error:  # OpenVINO, files, JSON
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
