#!/usr/bin/env python3
"""Retrieval-augmented generation: answer a question from your own documents.

The documents file is cut into passages at its blank lines. An embedding model turns
each passage, and the question, into a vector of length 1; the passages whose vectors
lie closest to the question's (the largest dot product: cosine similarity) go to the
LLM with the question, as one user message through the model's own chat template:

    <best passage>

    <second passage>

    <third passage>

    Question: <the question>

The LLM then answers greedily, streamed to stdout; the passages it got go to stderr,
best first, with their scores. The model keeps its KV cache in its own state, so each
step after the long first one feeds only the new token.
MODEL_DIR holds openvino_model.xml, openvino_tokenizer.xml (with a chat_template in its
rt_info) and openvino_detokenizer.xml, as `optimum-cli export openvino --task
text-generation-with-past` writes them. The embedder's folder holds openvino_model.xml
and openvino_tokenizer.xml, as `optimum-cli export openvino --task feature-extraction`
writes them. Its vectors are the mean of each text's token states (all-MiniLM-L6-v2 and
most sentence-transformers models pool so): a folder whose 1_Pooling/config.json says
otherwise (the first token, [CLS]) is refused. A passage or question longer than the
embedder's tokenizer IR takes is cut there for its embedding
(scripts/prepare_embeddings.py converts it with the model's max_seq_length, where
sentence-transformers cuts); the LLM reads it whole.
The chat template gets the message only, not the tokenizer's special tokens: a
template that writes a BOS leaves it to the tokenizer IR, which adds it to any text,
and one that needs another (Zephyr's appends eos_token to each turn) is refused in one
line.
Example: python samples/rag.py --documents docs/llm.md "How does beam search end?"
"""

import argparse
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

import jinja2.ext
import jinja2.sandbox
import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = REPO / "models/SmolLM2-135M-Instruct"
DEFAULT_EMBEDDER_DIR = REPO / "models/all-MiniLM-L6-v2"
EXPORT_HINT = "run scripts/prepare_default_model.py, or optimum-cli export openvino"
LLM_FILES = ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
EMBEDDER_FILES = ("openvino_model.xml", "openvino_tokenizer.xml")
EMBEDDER_HINT = "run scripts/prepare_embeddings.py, or optimum-cli export openvino"
# --f32: compute and cache in f32, as the references do (the CPU's default may be bf16
# with an f16 or u8 cache), and quantize no activations on the fly (int4 and int8
# weights do by default): the numbers then equal the references'.
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
F32_CONFIG["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"
BATCH_SIZE = 32  # texts embedded at once


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


def read_encoder(core: ov.Core, model_dir: Path, device: str, config: dict):
    """The embedder folder's tokenizer and text encoder, compiled. What is wrong with
    the folder is raised, for main's guard to print in one line."""
    for name in EMBEDDER_FILES:
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"no {model_dir / name}: {EMBEDDER_HINT}")
    encoder = core.read_model(model_dir / "openvino_model.xml")
    if "last_hidden_state" not in encoder.output(0).names:
        raise ValueError(f"{model_dir} holds no text encoder: {EMBEDDER_HINT}")
    # sentence-transformers' pooling: without the file, the mean.
    pooling_path = model_dir / "1_Pooling" / "config.json"
    pooling = json.loads(pooling_path.read_text()) if pooling_path.is_file() else {}
    if not pooling.get("pooling_mode_mean_tokens", True):
        raise ValueError(f"{pooling_path}: this sample pools by the mean only")
    tokenizer = core.compile_model(model_dir / "openvino_tokenizer.xml", "CPU")
    return tokenizer, core.compile_model(encoder, device, config)


def mean_embeddings(tokenizer, encoder, texts: list[str]) -> np.ndarray:
    """The texts' (texts, dimensions) embeddings, each of length 1: the mean of the
    text's token states, padding left out. BATCH_SIZE texts go in at a time; the
    tokenizer pads a batch to its longest text."""
    batch_vectors = []
    for begin in range(0, len(texts), BATCH_SIZE):
        tokens = tokenizer(texts[begin : begin + BATCH_SIZE])
        # The ids, the mask, and token_type_ids where the encoder has that input.
        inputs = {port.any_name: tokens[port.any_name] for port in encoder.inputs}
        # share_outputs: numpy reads the (texts, tokens, width) states where the
        # encoder wrote them instead of copying them; they are pooled before the
        # encoder runs again, on the next batch.
        states = encoder(inputs, share_outputs=True)["last_hidden_state"]
        mask = tokens["attention_mask"].astype(np.float32)  # (texts, tokens)
        # The mask is 0 on padding: the mask-weighted sum of the states (one matrix
        # product a text) over the text's token count is the mean of its own tokens.
        sums = (mask[:, None, :] @ states)[:, 0]
        batch_vectors.append(sums / mask.sum(axis=1, keepdims=True))
    vectors = np.concatenate(batch_vectors)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def strftime_now(date_format: str) -> str:
    """Today's date as a template asks for it (Llama 3.2 dates its system header)."""
    return datetime.now().strftime(date_format)


def render_message(chat_template: str, message: dict) -> str:
    """One user message as the model was trained to read it, ready for its answer."""
    # The settings and the date function transformers renders chat templates with.
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    environment.globals["strftime_now"] = strftime_now
    template = environment.from_string(chat_template)
    return template.render(messages=[message], add_generation_prompt=True)


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("question")
    parser.add_argument("--documents", type=Path, required=True, help="a text file")
    parser.add_argument("--embedder", type=Path, default=DEFAULT_EMBEDDER_DIR)
    parser.add_argument("--passages", type=int, default=3, help="how many, >= 1")
    parser.add_argument("--max-new-tokens", type=int, default=200, help=">= 1")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_intermixed_args()
    if not args.question.strip():
        parser.error("the question is empty")
    if args.passages < 1:
        parser.error("--passages must be at least 1")
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")
    # The passages: the documents' paragraphs, parted by blank lines (a line of only
    # spaces or tabs, as pasted text often has, is blank too).
    paragraphs = re.split(r"\n\s*\n", args.documents.read_text(encoding="utf-8"))
    passages = [paragraph.strip() for paragraph in paragraphs if paragraph.strip()]
    if not passages:
        raise ValueError(f"{args.documents} holds no text")

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    config = F32_CONFIG if args.f32 else {}
    embedder_tokenizer, encoder = read_encoder(core, args.embedder, args.device, config)
    llm = read_llm(core, args.model_dir)
    model, tokenizer, detokenizer, stop_token_ids, rt_info = llm
    if "chat_template" not in rt_info:
        raise ValueError(f"{args.model_dir} has no chat_template: no chat model")
    chat_template = rt_info["chat_template"].astype(str)
    keep_last_logits(model, 1)
    request = core.compile_model(model, args.device, config).create_infer_request()

    # Retrieval: the passages nearest the question, whose embedding comes last.
    vectors = mean_embeddings(embedder_tokenizer, encoder, passages + [args.question])
    # Cosine similarity: the dot product of vectors of length 1.
    scores = vectors[:-1] @ vectors[-1]
    best = np.argsort(-scores, kind="stable")[: args.passages]

    # Generation: the passages and the question in one user message.
    context = "\n\n".join(passages[index] for index in best)
    message = {"role": "user", "content": f"{context}\n\nQuestion: {args.question}"}
    try:
        prompt = render_message(chat_template, message)
    except jinja2.TemplateError as error:
        raise ValueError(f"the model's chat template fails: {error}") from error
    for index in best:  # the passages the answer comes from
        preview = " ".join(passages[index].split())[:80]
        print(f"{scores[index]:.3f} {preview}", file=sys.stderr)
    # The template got no special tokens' strings, so it wrote no BOS (Llama 3, Mistral,
    # Gemma 2): the tokenizer IR adds it, as it does to any text.
    prompt_ids = tokenizer([prompt])["input_ids"][0].tolist()

    start = time.perf_counter()
    tokens = []  # the answer's token ids
    printed = ""  # the answer's text on stdout so far
    cached = 0  # the tokens whose keys and values the KV cache holds
    while len(tokens) < args.max_new_tokens:
        # The first inference (prefill) feeds the whole prompt, each later one a token.
        request.start_async(llm_inputs(request, prompt_ids + tokens, cached))
        cached = len(prompt_ids) + len(tokens)
        # While the model computes the next token, print the ones before it.
        printed = stream(detokenizer, tokens, printed)
        request.wait()
        next_token = int(request.get_tensor("logits").data[0, -1].argmax())
        if not tokens:
            first_token_seconds = time.perf_counter() - start
        if next_token in stop_token_ids:
            break
        tokens.append(next_token)
    print(decode(detokenizer, tokens)[len(printed) :], flush=True)

    # The tokens after the first, in the time after it.
    decode_speed = len(tokens[1:]) / (time.perf_counter() - start - first_token_seconds)
    stats = f"{len(prompt_ids)} prompt tokens, {len(tokens)} new tokens, first in "
    stats += f"{first_token_seconds * 1000:.0f} ms, then {decode_speed:.1f} tokens/s"
    print(stats, file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
    except (RuntimeError, OSError, ValueError) as error:  # OpenVINO, files, JSON
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
