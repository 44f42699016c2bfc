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
from typing import NamedTuple

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

DEFAULT_PROMPT = "Once upon a time, a little robot"
EXPORT_HINT = "run scripts/prepare_default_model.py, or optimum-cli export openvino"
LLM_FILES = ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
# Only a stateful export (--task text-generation-with-past) has beam_idx: the KV
# cache lives in the model's state; beam_idx says which cache row a batch row continues.
LLM_INPUTS = {"input_ids", "attention_mask", "beam_idx"}
# Compute and cache in f32, with no on-the-fly quantization of activations: the numbers
# then equal the references' (the CPU's default may be bf16 with an f16 or u8 cache).
F32_CONFIG = {
    "INFERENCE_PRECISION_HINT": "f32",
    "KV_CACHE_PRECISION": "f32",
    "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0",
}
MAX_DRAFT = 8  # draft tokens per main inference, at most


# config.json's name for the context length: in Llama and most others, GPT-2, MPT.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len")


class LLMFolder(NamedTuple):
    model: ov.Model  # the LLM, read but not compiled: it can still be edited
    tokenizer: ov.CompiledModel  # [text] -> input_ids (1, tokens)
    detokenizer: ov.CompiledModel  # token ids (1, tokens) -> [text]
    stop_token_ids: set[int]  # the tokens that end an answer
    context_length: int  # the positions the model was trained on (unknown: sys.maxsize)
    generation_config: dict  # generation_config.json: the model's own defaults, or {}


def read_json(parser, path: Path) -> dict:
    """A JSON file of the model folder, {} where there is none; a broken one exits."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        parser.error(f"cannot read {path}: {error}")


def last_line(error: Exception) -> str:
    """OpenVINO's messages end with the line that says what is wrong."""
    return str(error).strip().splitlines()[-1]


def read_llm_folder(core: ov.Core, parser, model_dir: Path) -> LLMFolder:
    """The folder's LLM, tokenizer and detokenizer; an unfit folder exits (code 2)."""
    for name in LLM_FILES:
        if not (model_dir / name).is_file():
            parser.error(f"no {model_dir / name}: {EXPORT_HINT}")
    try:
        model = core.read_model(model_dir / "openvino_model.xml")
        tokenizer = core.read_model(model_dir / "openvino_tokenizer.xml")
        # The string operations run on the CPU only, whatever --device says.
        compiled_tokenizer = core.compile_model(tokenizer, "CPU")
        detokenizer = core.compile_model(model_dir / "openvino_detokenizer.xml", "CPU")
    except RuntimeError as error:
        parser.error(f"cannot read {model_dir}: {last_line(error)}")
    input_names = {name for port in model.inputs for name in port.names}
    for name in sorted(LLM_INPUTS - input_names):
        parser.error(f"{model_dir} holds no stateful LLM (no {name}): {EXPORT_HINT}")
    # generation_config.json lists every token that ends an answer (Llama 3: two,
    # Phi-3: three); the tokenizer's rt_info knows one. A GGUF folder has no such file.
    generation_config = read_json(parser, model_dir / "generation_config.json")
    stop_token_ids = generation_config.get("eos_token_id", [])
    if isinstance(stop_token_ids, int):
        stop_token_ids = [stop_token_ids]
    rt_info = tokenizer.get_rt_info()
    if "eos_token_id" in rt_info:
        stop_token_ids = [*stop_token_ids, rt_info["eos_token_id"].astype(int)]
    if not stop_token_ids:
        parser.error(
            f"{model_dir}: no eos_token_id in its tokenizer or generation config"
        )
    # A GGUF-converted folder has no config.json: its context length is not known.
    config = read_json(parser, model_dir / "config.json")
    lengths = [config[key] for key in CONTEXT_KEYS if key in config]
    context_length = lengths[0] if lengths else sys.maxsize
    return LLMFolder(
        model,
        compiled_tokenizer,
        detokenizer,
        set(stop_token_ids),
        context_length,
        generation_config,
    )


def add_unused_position_ids(model: ov.Model, shape: list[int]) -> None:
    """ALiBi models (BLOOM, MPT) take no positions: an input that they ignore lets every
    model be fed alike."""
    input_names = {name for port in model.inputs for name in port.names}
    if "position_ids" in input_names:
        return
    positions = ov.opset13.parameter(shape, ov.Type.i64)
    positions.output(0).set_names({"position_ids"})
    model.add_parameters([positions])


def fit_to_context(parser, llm, prompt_ids: list[int], max_new_tokens: int) -> int:
    """max_new_tokens, or fewer where the model's context ends sooner (said on stderr).

    Past its context a model writes nonsense without a word of warning (rotary models
    extrapolate, learned position tables are read out of range)."""
    room = llm.context_length - len(prompt_ids)
    if room < 1:
        parser.error(f"the prompt fills the model's context of {llm.context_length}")
    if room < max_new_tokens:
        print(f"the context leaves room for {room} new tokens", file=sys.stderr)
    return min(room, max_new_tokens)


def repetition_penalty(llm: LLMFolder) -> float:
    """generation_config.json's repetition_penalty (Qwen2.5: 1.05), said on stderr."""
    penalty = llm.generation_config.get("repetition_penalty", 1.0)
    if penalty != 1.0:
        print(f"generation_config.json: repetition_penalty {penalty}", file=sys.stderr)
    return penalty


def find_lm_head(model: ov.Model):
    """The LM head: the MatMul of each position's hidden state by a (vocab, hidden)
    matrix. Element-wise operations may follow it (Gemma 2 caps the logits: divide,
    tanh, multiply); they work position by position. None where there is no MatMul."""
    node = model.output("logits").get_node().input_value(0).get_node()
    while node.get_type_name() in ("Divide", "Tanh", "Multiply", "Add", "Convert"):
        node = node.input_value(0).get_node()
    if node.get_type_name() != "MatMul":
        return None
    return node


def keep_last_logits(model: ov.Model, positions: int) -> None:
    """Compute logits (batch, positions, vocab) for the last positions only.

    A long prompt would cost (prompt_len, vocab) logits that nobody reads. Slicing the
    LM head's input before compiling removes that work. Without a MatMul head, the
    model is left as is."""
    lm_head = find_lm_head(model)
    if lm_head is None:
        return
    hidden = lm_head.input_value(0)  # (batch, seq_len, hidden)
    end = np.iinfo(np.int64).max
    last = ov.opset13.slice(hidden, [-positions], [end], [1], axes=[1])
    lm_head.input(0).replace_source_output(last.output(0))


def compile_llm(core: ov.Core, parser, model: ov.Model, args) -> ov.CompiledModel:
    """The LLM compiled for --device (and --f32); an unfit device exits (code 2)."""
    try:
        return core.compile_model(model, args.device, F32_CONFIG if args.f32 else {})
    except RuntimeError as error:
        parser.error(f"cannot compile for --device {args.device}: {last_line(error)}")


def llm_inputs(new_ids: list[int], cached: int) -> dict[str, np.ndarray]:
    """Inputs that feed new_ids after the `cached` tokens that the KV cache holds."""
    length = cached + len(new_ids)
    return {
        "input_ids": np.array([new_ids], dtype=np.int64),  # (1, new tokens)
        "attention_mask": np.ones((1, length), dtype=np.int64),
        "position_ids": np.arange(cached, length, dtype=np.int64)[None],
        "beam_idx": np.zeros(1, dtype=np.int32),  # batch row 0 continues cache row 0
    }


def penalize_repetition(logits: np.ndarray, token_ids: list[int], penalty: float):
    """Logits (vocab,) with each token already in the text made less likely, as
    transformers' RepetitionPenaltyLogitsProcessor does: a positive logit divided by
    the penalty, a negative one multiplied. A penalty of 1.0 changes nothing."""
    if penalty == 1.0:
        return logits
    seen = np.unique(token_ids)
    penalized = logits.copy()
    penalized[seen] = np.where(
        logits[seen] < 0, logits[seen] * penalty, logits[seen] / penalty
    )
    return penalized


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


def infer_logits(request: ov.InferRequest, new_ids: list[int], cached: int):
    """Feed new_ids after `cached` tokens: logits (last positions kept, vocab)."""
    request.infer(llm_inputs(new_ids, cached))
    return request.get_tensor("logits").data[0]


def trim_cache(request: ov.InferRequest, length: int) -> None:
    """Keep the first `length` positions of every KV cache state.

    Each state is (batch, kv_heads, seq_len, head_size): the model reads it back on its
    next inference, so cutting it along seq_len forgets the positions after `length`."""
    for state in request.query_state():
        if state.state.shape[2] > length:
            state.state = ov.Tensor(state.state.data[:, :, :length].copy())


def verify(
    request: ov.InferRequest, tokens: list[int], guesses: list[int], penalty: float
) -> int:
    """Check guesses of what follows `tokens` in one inference; return how many hold.

    The model sees the last token and the guesses, and gives its greedy choice after
    each (with the repetition penalty of the text up to there). `tokens` grows by the
    guesses up to the first it disagrees with, then by its own choice there. Then the
    cache keeps every token but the new last one."""
    logits = infer_logits(request, tokens[-1:] + guesses, len(tokens) - 1)
    choices = []
    for row, row_logits in enumerate(logits[-len(guesses) - 1 :]):
        seen = tokens + guesses[:row]
        choices.append(int(penalize_repetition(row_logits, seen, penalty).argmax()))
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
    draft_llm = read_llm_folder(core, parser, args.draft_dir)
    main_llm = read_llm_folder(core, parser, args.main_dir)
    add_unused_position_ids(draft_llm.model, [-1, -1])  # (batch, new tokens)
    add_unused_position_ids(main_llm.model, [-1, -1])
    keep_last_logits(draft_llm.model, 1)
    keep_last_logits(main_llm.model, MAX_DRAFT + 1)  # the positions that are checked
    draft_compiled = compile_llm(core, parser, draft_llm.model, args)
    draft_request = draft_compiled.create_infer_request()
    main_compiled = compile_llm(core, parser, main_llm.model, args)
    main_request = main_compiled.create_infer_request()
    # Guesses are worth checking only if the draft's ids mean what the main model's do.
    size = main_compiled.output("logits").partial_shape[2].get_length()
    draft_vocabulary = vocabulary(draft_llm.detokenizer, size)
    main_vocabulary = vocabulary(main_llm.detokenizer, size)
    if draft_vocabulary != main_vocabulary:
        parser.error(
            f"the tokenizers of {args.draft_dir} and {args.main_dir} differ: "
            "pick a draft model of the same family"
        )
    prompt_ids = main_llm.tokenizer([args.prompt])["input_ids"][0].tolist()
    # Only the main model's context counts: past its own, the draft guesses worse.
    args.max_new_tokens = fit_to_context(
        parser, main_llm, prompt_ids, args.max_new_tokens
    )

    penalty = repetition_penalty(main_llm)

    start = time.perf_counter()
    # The prefill feeds the prompt to both: each cache holds every token but the last.
    infer_logits(draft_request, prompt_ids, 0)
    logits = infer_logits(main_request, prompt_ids, 0)[-1]
    first_token = int(penalize_repetition(logits, prompt_ids, penalty).argmax())
    tokens = prompt_ids + [first_token]
    draft_cached = len(prompt_ids)  # the tokens in the draft's cache
    draft_size = 2  # guesses per step: up by 2 while all hold, down by 1 otherwise
    printed = ""  # the answer's text on stdout so far
    main_inferences = 1
    proposed = 0  # draft tokens made
    accepted = 0  # draft tokens the main model agreed with
    while True:
        answer = tokens[len(prompt_ids) :]
        stops = [token in main_llm.stop_token_ids for token in answer]
        ended = any(stops)
        if ended:
            answer = answer[: stops.index(True)]
        answer = answer[: args.max_new_tokens]  # several tokens may come at once
        printed = stream(main_llm.detokenizer, answer, printed)
        if ended or len(answer) == args.max_new_tokens:
            break
        # The draft's greedy guesses, each fed back to it.
        guesses = []
        for _ in range(min(draft_size, args.max_new_tokens - len(answer))):
            new_ids = (tokens + guesses)[draft_cached:]
            logits = infer_logits(draft_request, new_ids, draft_cached)
            guesses.append(int(logits[-1].argmax()))
            draft_cached = len(tokens) + len(guesses) - 1  # not its last guess
        agreed = verify(main_request, tokens, guesses, penalty)
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
    print(decode(main_llm.detokenizer, answer)[len(printed) :], flush=True)
    seconds = time.perf_counter() - start
    print(
        f"{len(prompt_ids)} prompt tokens, {len(answer)} new tokens "
        f"in {seconds:.2f} s, {main_inferences} main-model inferences, "
        f"{accepted} of {proposed} draft tokens accepted",
        file=sys.stderr,
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
