#!/usr/bin/env python3
"""Greedy generation for many prompts at once with a stateful LLM IR: several infer
requests in flight, each with its own KV cache in its state.

The model is compiled for throughput: the device splits into streams, each running a
request. A request's callback hands it back to the main thread when an inference
ends, which starts its next step, or its next prompt once the current one is
answered. Prints one answer per line, in the prompts' order (newlines written as \\n).
MODEL_DIR holds openvino_model.xml, openvino_tokenizer.xml and openvino_detokenizer.xml,
as `optimum-cli export openvino --task text-generation-with-past` writes them.
Example: python samples/throughput.py --prompts prompts.txt --requests 4
See also samples/continuous_batching.py: many sequences in each inference instead.
"""

import argparse
import json
import queue
import sys
import time
from pathlib import Path

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


DEFAULT_PROMPTS = [
    "Once upon a time",
    "The capital of France is",
    "def quicksort(items):",
    "The Moon is",
    "In 1969,",
]


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


def compile_for_throughput(core: ov.Core, model: ov.Model, args) -> ov.CompiledModel:
    """The LLM compiled for many requests at once: the device splits into streams."""
    config = {"PERFORMANCE_HINT": "THROUGHPUT"}
    if args.device.startswith("AUTO"):
        config = {"PERFORMANCE_HINT": "CUMULATIVE_THROUGHPUT"}  # spread over devices
    # OpenVINO 2026.4.1's CPU plugin dies (SIGFPE) compiling an uncompressed LLM in
    # bf16 on a Xeon with AMX when a stream gets one thread, as this hint gives on few
    # cores. Those CPUs compute in f16 too (they list FP16): they get f16, wherever
    # the CPU may run the model: CPU, AUTO, or a list that names it (HETERO:GPU,CPU).
    listed = args.device.split(":")[-1].split(",")  # AUTO:-CPU leaves the CPU out
    on_cpu = args.device == "AUTO" or "CPU" in listed
    capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if on_cpu and "FP16" in capabilities:
        config["INFERENCE_PRECISION_HINT"] = "f16"
    if args.f32:
        config.update(F32_CONFIG)
    return core.compile_model(model, args.device, config)


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


def read_prompts(prompts_path: Path | None) -> list[str]:
    """The file's lines that are not blank, or DEFAULT_PROMPTS without a file. A file
    without a prompt is raised, for main's guard to print in one line."""
    if prompts_path is None:
        return DEFAULT_PROMPTS
    lines = prompts_path.read_text(encoding="utf-8").split("\n")
    prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise ValueError(f"{prompts_path} holds no prompt")
    return prompts


def generate_with_requests(requests, prompts, max_new_tokens, stop_token_ids):
    """Greedy answers (token ids) to every prompt (token ids), the infer requests kept
    busy while prompts remain."""
    answers = [[] for _ in prompts]
    working_on = [None] * len(requests)  # the prompt index each request answers
    waiting = iter(range(len(prompts)))  # the prompts no request has taken yet
    answered = 0
    ended = queue.Queue()  # the requests whose inference has ended
    for index, request in enumerate(requests):
        # OpenVINO's own thread calls it when the request's inference ends.
        request.set_callback(ended.put, index)
        ended.put(index)  # at first, every request is free
    try:
        while answered < len(prompts):
            index = ended.get()  # whichever request ends first
            request = requests[index]
            prompt_index = working_on[index]
            if prompt_index is not None:
                answer = answers[prompt_index]
                token = int(request.get_tensor("logits").data[0, -1].argmax())
                if token not in stop_token_ids:
                    answer.append(token)
                if token not in stop_token_ids and len(answer) < max_new_tokens:
                    # The cache holds all of the text but its last token.
                    text = prompts[prompt_index] + answer
                    request.start_async(llm_inputs(request, text, len(text) - 1))
                    continue
                answered += 1
            # The request is free: it takes the next prompt, with an empty KV cache.
            working_on[index] = next(waiting, None)
            if working_on[index] is not None:
                request.reset_state()
                request.start_async(llm_inputs(request, prompts[working_on[index]], 0))
    finally:  # Ctrl-C too: no callback may run after Python has ended
        for request in requests:
            request.wait()
    return answers


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--prompts", type=Path, help="a file, a prompt per line")
    parser.add_argument("--max-new-tokens", type=int, default=100, help=">= 1")
    parser.add_argument("--requests", type=int, help="default: the device's optimum")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")
    if args.requests is not None and args.requests < 1:
        parser.error("--requests must be at least 1")
    prompts = read_prompts(args.prompts)

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    model, tokenizer, detokenizer, stop_token_ids, _ = read_llm(core, args.model_dir)
    compiled = compile_for_throughput(core, model, args)
    # One prompt a call: a batch would be padded to its longest prompt.
    prompt_ids = [tokenizer([prompt])["input_ids"][0].tolist() for prompt in prompts]

    count = args.requests or compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    requests = [compiled.create_infer_request() for _ in range(count)]
    start = time.perf_counter()
    answers = generate_with_requests(
        requests, prompt_ids, args.max_new_tokens, stop_token_ids
    )
    seconds = time.perf_counter() - start
    tokens = sum(len(answer) for answer in answers)
    for answer in answers:  # one line per prompt, in the prompts' order
        print(decode(detokenizer, answer).replace("\n", "\\n"))
    print(
        f"{len(prompts)} prompts, {tokens} new tokens in {seconds:.2f} s "
        f"with {len(requests)} requests: {tokens / seconds:.1f} tokens/s",
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
