#!/usr/bin/env python3
"""Greedy generation for many prompts at once: the model compiled for throughput, several infer requests in flight
(each with its own KV cache in its state), each taking the next prompt as soon as it finishes one. MODEL_DIR as for
greedy.py; the prompts file holds one per line. Example: python samples/throughput.py --prompts p.txt --compare"""
import argparse
import queue
import sys
import time
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the string operations the tokenizer IRs are made of

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "SmolLM2-135M-Instruct"
DEFAULT_PROMPTS = ["Once upon a time", "The capital of France is", "def quicksort(items):", "The Moon is", "In 1969,"]
MODEL_INPUTS = {"input_ids", "attention_mask", "position_ids", "beam_idx"}  # beam_idx: only stateful IRs have it
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}


def feed(request: ov.InferRequest, new_ids: list[int], length: int) -> None:
    """Start an inference on new_ids, the last of `length` tokens (the others are in this request's KV cache)."""
    request.start_async({"input_ids": np.array([new_ids]), "attention_mask": np.ones((1, length), dtype=np.int64),
                         "position_ids": np.arange(length - len(new_ids), length)[None],
                         "beam_idx": np.zeros(1, dtype=np.int32)})


def generate_all(requests: list, prompts: list[list[int]], max_new_tokens: int, eos_token_id: int) -> list[list[int]]:
    """Greedy new tokens for every prompt, all requests kept busy while prompts remain."""
    finished, answers, jobs, done = queue.Queue(), [[] for _ in prompts], [None] * len(requests), 0
    waiting = iter(range(len(prompts)))  # the prompts no request has taken yet
    for index, request in enumerate(requests):
        request.set_callback(finished.put, index)  # OpenVINO's thread calls it when the request's inference ends
        finished.put(index)  # and at first every request is free
    while done < len(prompts):
        index = finished.get()  # the next request to end an inference, whichever it is
        if jobs[index] is not None:  # it was working on a prompt: take its next token
            token, answer = int(requests[index].get_tensor("logits").data[0, -1].argmax()), answers[jobs[index]]
            answer += [token] if token != eos_token_id else []
            if token != eos_token_id and len(answer) < max_new_tokens:
                feed(requests[index], [token], len(prompts[jobs[index]]) + len(answer))
                continue
            done += 1
        jobs[index] = next(waiting, None)
        if jobs[index] is not None:
            requests[index].reset_state()  # a fresh KV cache for the new prompt, which goes in whole
            feed(requests[index], prompts[jobs[index]], len(prompts[jobs[index]]))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)  # errors: one line, no usage
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR, help="model folder")
    parser.add_argument("--prompts", type=argparse.FileType(encoding="utf-8"), help="a text file, a prompt per line")
    parser.add_argument("--max-new-tokens", type=int, default=100, help="at most this many tokens per prompt, >= 1")
    parser.add_argument("--requests", type=int, help="infer requests in flight (default: the device's optimum)")
    parser.add_argument("--compare", action="store_true", help="run once more with one request, and compare")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU, or AUTO (cumulative throughput) for the LLM")
    parser.add_argument("--f32", action="store_true", help="compute and cache in f32: exact parity with references")
    args = parser.parse_args()
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        if not (args.model_dir / name).is_file():
            parser.error(f"no {args.model_dir / name}: run scripts/prepare_default_model.py or optimum-cli export")
    prompts = [line.rstrip("\n") for line in args.prompts if line.strip()] if args.prompts else DEFAULT_PROMPTS
    if not prompts or args.max_new_tokens < 1 or (args.requests is not None and args.requests < 1):
        parser.error("--prompts holds no prompt" if not prompts else "--max-new-tokens and --requests must be >= 1")
    core = ov.Core()  # after `import openvino_tokenizers`, so that it can read the tokenizer IRs
    rt_info = core.read_model(args.model_dir / "openvino_tokenizer.xml").get_rt_info()
    model = core.read_model(args.model_dir / "openvino_model.xml")
    if not MODEL_INPUTS <= {name for port in model.inputs for name in port.names} or "eos_token_id" not in rt_info:
        parser.error(f"{args.model_dir} needs a stateful LLM and an EOS id (--task text-generation-with-past)")
    lm_head = model.output("logits").get_node().input_value(0).get_node()
    if lm_head.get_type_name() == "MatMul":  # logits for the last position only, as greedy.py explains
        last = ov.opset13.slice(lm_head.input_value(0), [-1], [np.iinfo(np.int64).max], [1], axes=[1])
        lm_head.input(0).replace_source_output(last.output(0))
    hint = "CUMULATIVE_THROUGHPUT" if args.device.startswith("AUTO") else "THROUGHPUT"  # streams: AUTO, all devices
    try:  # the device splits into streams, each running a request
        compiled = core.compile_model(model, args.device, {"PERFORMANCE_HINT": hint} | (F32_CONFIG if args.f32 else {}))
    except RuntimeError as error:
        parser.error(f"cannot compile for --device {args.device}: {str(error).strip().splitlines()[-1]}")
    tokenizer = core.compile_model(args.model_dir / "openvino_tokenizer.xml", "CPU")  # string ops: CPU only
    detokenizer = core.compile_model(args.model_dir / "openvino_detokenizer.xml", "CPU")
    prompt_ids = [tokenizer([prompt])["input_ids"][0].tolist() for prompt in prompts]  # one at a time: no padding

    for count in [args.requests or compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")] + [1] * args.compare:
        start = time.perf_counter()
        answers = generate_all([compiled.create_infer_request() for _ in range(count)], prompt_ids,
                               args.max_new_tokens, rt_info["eos_token_id"].astype(int))
        seconds, tokens = time.perf_counter() - start, sum(map(len, answers))
        print(f"{len(prompts)} prompts, {tokens} new tokens in {seconds:.2f} s with {count} requests: "
              f"{tokens / seconds:.1f} tokens/s", file=sys.stderr)
    for answer in answers:  # one line per prompt, in the prompts' order; newlines written as \n
        print(detokenizer(np.array([answer], dtype=np.int64))["string_output"][0].replace("\n", "\\n"))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
