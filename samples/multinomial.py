#!/usr/bin/env python3
"""Text generation by multinomial sampling with a stateful LLM IR, streamed to stdout.

Each token is drawn from the model's probabilities after transformers' warpers, in
their order: temperature, top-k, top-p. numpy's default_rng(--seed) draws, so the same
seed gives the same text. The model keeps its KV cache in its own state, so each step
feeds only the new token.
MODEL_DIR holds openvino_model.xml, openvino_tokenizer.xml and openvino_detokenizer.xml,
as `optimum-cli export openvino --task text-generation-with-past` writes them.
Example: python samples/multinomial.py models/SmolLM2-135M-Instruct "Once upon a time"
    --temperature 0.8 --top-p 0.9 --seed 7
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models/SmolLM2-135M-Instruct"
DEFAULT_PROMPT = "Once upon a time, a little robot"
EXPORT_HINT = "run scripts/prepare_default_model.py, or optimum-cli export openvino"
LLM_FILES = ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
# --f32: compute and cache in f32, as the references do (the CPU's default may be bf16
# with an f16 or u8 cache), and quantize no activations on the fly (int4 and int8
# weights do by default): the numbers then equal the references'.
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
F32_CONFIG["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"


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


def sampling_defaults(args, config_path: Path) -> None:
    """Give the sampling flags not given the model's values from generation_config.json
    (Qwen2.5: 0.7, 20, 0.8), else transformers' defaults; say which the file gave."""
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    taken = []
    for name, default in (("temperature", 1.0), ("top_k", 50), ("top_p", 1.0)):
        if getattr(args, name) is not None:
            continue
        setattr(args, name, config.get(name, default))
        if name in config:
            taken.append(f"{name} {config[name]}")
    if taken:
        print(f"generation_config.json: {', '.join(taken)}", file=sys.stderr)


def sample(logits: np.ndarray, args, rng: np.random.Generator) -> int:
    """A token id drawn from (vocab,) logits after temperature, top-k and top-p."""
    scores = logits.astype(np.float64) / args.temperature  # < 1 sharpens, > 1 flattens
    # top-k: the k best, and any tied with the k-th, as transformers keeps them.
    kth_best = -np.inf
    if 0 < args.top_k < len(scores):
        kth_best = np.partition(scores, -args.top_k)[-args.top_k]
    candidates = np.flatnonzero(scores >= kth_best)
    # Best first (a stable sort: equal scores keep the order of their ids).
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
    probs = np.exp(scores[candidates] - scores[candidates[0]])  # softmax, not yet / sum
    # top-p: the fewest best candidates whose probability reaches p.
    before = np.cumsum(probs) - probs  # the probability of the better candidates
    kept = np.count_nonzero(before < args.top_p * probs.sum())
    chosen = rng.choice(kept, p=probs[:kept] / probs[:kept].sum())
    return int(candidates[chosen])


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT)
    parser.add_argument("--max-new-tokens", type=int, default=100, help=">= 1")
    # Not given, they are the model's (generation_config.json), else these defaults.
    parser.add_argument("--temperature", type=float, help="> 0; 1.0")
    parser.add_argument("--top-k", type=int, help=">= 0, 0: all tokens; 50")
    parser.add_argument("--top-p", type=float, help="in (0, 1]; 1.0")
    parser.add_argument("--seed", type=int, default=42, help=">= 0")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    if not args.prompt.strip():
        parser.error("the prompt is empty")
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")
    if args.seed < 0:
        parser.error("--seed must be 0 or more")

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    model, tokenizer, detokenizer, stop_token_ids, _ = read_llm(core, args.model_dir)
    sampling_defaults(args, args.model_dir / "generation_config.json")
    if not args.temperature > 0:
        parser.error("--temperature must be above 0")
    if args.top_k < 0:
        parser.error("--top-k must be 0 or more")
    if not 0 < args.top_p <= 1:  # also refuses nan
        parser.error("--top-p must be in (0, 1]")
    config = F32_CONFIG if args.f32 else {}
    request = core.compile_model(model, args.device, config).create_infer_request()
    prompt_ids = tokenizer([args.prompt])["input_ids"][0].tolist()
    rng = np.random.default_rng(args.seed)

    start = time.perf_counter()
    tokens = []  # the answer's token ids
    printed = ""  # the answer's text on stdout so far
    cached = 0  # the tokens whose keys and values the KV cache holds
    while len(tokens) < args.max_new_tokens:
        # The first inference (prefill) feeds the whole prompt, each later one a token.
        request.infer(llm_inputs(request, prompt_ids + tokens, cached))
        cached = len(prompt_ids) + len(tokens)
        next_token = sample(request.get_tensor("logits").data[0, -1], args, rng)
        if next_token in stop_token_ids:
            break
        tokens.append(next_token)
        printed = stream(detokenizer, tokens, printed)
    print(decode(detokenizer, tokens)[len(printed) :], flush=True)

    seconds = time.perf_counter() - start
    print(
        f"{len(prompt_ids)} prompt tokens, {len(tokens)} new tokens in {seconds:.2f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
    except (RuntimeError, OSError, ValueError) as error:  # OpenVINO, files, JSON
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
