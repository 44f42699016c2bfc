#!/usr/bin/env python3
"""Multi-turn chat with a stateful LLM IR that keeps the conversation in its KV cache.

Reads a user turn per line of stdin until EOF and streams each answer to stdout. Each
turn renders the whole conversation with the model's chat template (jinja2, as
transformers renders it), and feeds the model only the tokens that the cache does not
hold yet: the model keeps its KV cache in its own state between turns.
MODEL_DIR holds openvino_model.xml, openvino_tokenizer.xml (with a chat_template in its
rt_info) and openvino_detokenizer.xml, as `optimum-cli export openvino --task
text-generation-with-past` writes them.
Example: printf 'Hi!\\nWhat is 2 + 2?\\n' | python samples/chat.py
"""

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

import jinja2.ext
import jinja2.sandbox
import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models/SmolLM2-135M-Instruct"
EXPORT_HINT = "run scripts/prepare_default_model.py, or optimum-cli export openvino"
LLM_FILES = ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
# --f32: compute and cache in f32, as the references do (the CPU's default may be bf16
# with an f16 or u8 cache), and quantize no activations on the fly (int4 and int8
# weights do by default): the numbers then equal the references'.
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
F32_CONFIG["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"


# config.json's name for the context length: in Llama and most others, GPT-2, MPT.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len")


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


def trim_cache(request: ov.InferRequest, length: int) -> None:
    """Keep the first `length` positions of every KV cache state.

    Each state is (batch, kv_heads, seq_len, head_size): the model reads it back on its
    next inference, so cutting it along seq_len forgets the positions after `length`."""
    for state in request.query_state():
        if state.state.shape[2] > length:
            state.state = ov.Tensor(state.state.data[:, :, :length].copy())


def raise_exception(message: str):
    """What a template calls to refuse a conversation, as in transformers."""
    raise jinja2.TemplateError(message)


def strftime_now(date_format: str) -> str:
    """Today's date as a template asks for it (Llama 3.2 dates its system header)."""
    return datetime.now().strftime(date_format)


def read_special_tokens(model_dir: Path) -> dict[str, str]:
    """The special tokens' strings (bos_token, eos_token, ...) that templates write
    themselves (Mistral: `+ eos_token`), as transformers passes them: from
    tokenizer_config.json (GGUF: none)."""
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    names = [name for name in config if name.endswith("_token")]
    return {name: config[name] for name in names if isinstance(config[name], str)}


def render(chat_template: str, messages: list[dict], special_tokens: dict) -> str:
    """The conversation as the model was trained to read it, ready for its answer."""
    # The settings and variables transformers renders chat templates with.
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    return environment.from_string(chat_template).render(
        messages=messages, add_generation_prompt=True, **special_tokens
    )


def shared_prefix(cached: list[int], history_ids: list[int]) -> int:
    """How many first tokens the history shares with the cache (one is left to feed)."""
    for length, (old, new) in enumerate(zip(cached, history_ids[:-1])):
        if old != new:
            return length
    return min(len(cached), len(history_ids) - 1)


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--system", help="a system message that opens the conversation")
    parser.add_argument("--max-new-tokens", type=int, default=200, help=">= 1 a turn")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    llm = read_llm(core, args.model_dir)
    model, tokenizer, detokenizer, stop_token_ids, rt_info = llm
    if "chat_template" not in rt_info:
        raise ValueError(f"{args.model_dir} has no chat_template: no chat model")
    chat_template = rt_info["chat_template"].astype(str)
    special_tokens = read_special_tokens(args.model_dir)
    # config.json's context length; a GGUF-converted folder has none, and no limit.
    config_path = args.model_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    lengths = [config[key] for key in CONTEXT_KEYS if key in config]
    context_length = lengths[0] if lengths else sys.maxsize
    # The tokenizer IR adds its special tokens (a BOS) to any text. The rendered
    # history holds its own, so they come off, as transformers tokenizes it without.
    added_ids = tokenizer([""])["input_ids"][0].tolist()
    keep_last_logits(model, 1)
    compiled = core.compile_model(model, args.device, F32_CONFIG if args.f32 else {})
    request = compiled.create_infer_request()

    # The conversation, as the chat template takes it.
    messages = [{"role": "system", "content": args.system}] if args.system else []
    cached = []  # the token ids whose keys and values the KV cache holds
    for line in sys.stdin:  # a turn a line, to the end of input (Ctrl-D)
        if not line.strip():
            continue  # a blank line is no turn
        messages.append({"role": "user", "content": line.rstrip("\n")})
        try:
            history = render(chat_template, messages, special_tokens)
        except jinja2.TemplateError as error:  # broken, or refusing this conversation
            raise ValueError(f"the model's chat template fails: {error}") from error
        history_ids = tokenizer([history])["input_ids"][0].tolist()
        if history_ids[: len(added_ids)] == added_ids:
            history_ids = history_ids[len(added_ids) :]
        # Past its context a model writes nonsense without a word of warning (rotary
        # models extrapolate, learned position tables are read out of range): the
        # answer stops there, and a conversation that fills the context ends.
        max_new_tokens = min(args.max_new_tokens, context_length - len(history_ids))
        if max_new_tokens < 1:
            parser.error(f"the prompt fills the model's context of {context_length}")
        # Feed only what the cache lacks. A template that trims or rewrites the last
        # answer (Llama 3, Gemma 2), or an answer whose text tokenizes otherwise, parts
        # from the cached tokens early: the cache forgets what follows that point.
        common = shared_prefix(cached, history_ids)
        trim_cache(request, common)
        cached = cached[:common]

        tokens = []  # the answer's token ids
        printed = ""  # the answer's text on stdout so far
        while len(tokens) < max_new_tokens:
            request.infer(llm_inputs(request, history_ids + tokens, len(cached)))
            cached = history_ids + tokens
            next_token = int(request.get_tensor("logits").data[0, -1].argmax())
            if next_token in stop_token_ids:
                break
            tokens.append(next_token)
            printed = stream(detokenizer, tokens, printed)
        answer = decode(detokenizer, tokens)
        print(answer[len(printed) :], flush=True)
        messages.append({"role": "assistant", "content": answer})
        fed = len(history_ids) - common
        print(f"{fed} tokens fed, {len(tokens)} new tokens", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
    except (RuntimeError, OSError, ValueError) as error:  # OpenVINO, files, JSON
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
