#!/usr/bin/env python3
"""Greedy generation for many prompts by continuous batching: one inference advances every sequence in flight (a new
one by its whole prompt, the others by one token), and a finished sequence's place goes to the next prompt at once.
The KV cache is paged as in paged_attention.py. Example: python samples/continuous_batching.py --prompts prompts.txt"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the string operations the tokenizer IRs are made of
from openvino._offline_transformations import paged_attention_transformation  # what genai and optimum-intel use

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "SmolLM2-135M-Instruct"
DEFAULT_PROMPTS = ["Once upon a time", "The capital of France is", "def quicksort(items):", "The Moon is", "In 1969,"]
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}


def generate_all(request: ov.InferRequest, prompts: list[list[int]], max_new_tokens: int, eos_token_id: int,
                 block_table: np.ndarray) -> list[list[int]]:
    """Greedy new tokens for every prompt; block_table[place] lists the cache blocks of a place for a sequence."""
    answers, waiting, running = [[] for _ in prompts], iter(range(len(prompts))), {}  # place: [prompt, feed, cached]
    while True:
        for place, index in zip(set(range(len(block_table))) - set(running), waiting):  # free places, next prompts
            running[place] = [index, prompts[index], 0]  # the place's blocks are overwritten from position 0
        if not running:
            return answers
        feeds, cached = [job[1] for job in running.values()], [job[2] for job in running.values()]
        begins = np.cumsum([0] + [len(feed) for feed in feeds])  # the sequences lie one after another on axis 0
        request.infer({"input_ids": np.concatenate(feeds).astype(np.int64),
                       "position_ids": np.concatenate([np.arange(n, n + len(f)) for n, f in zip(cached, feeds)]),
                       "past_lens": np.array(cached, dtype=np.int32), "subsequence_begins": begins.astype(np.int32),
                       "max_context_len": np.array(max(begins[1:] - begins[:-1] + cached), dtype=np.int32),
                       "block_indices": block_table[list(running)].ravel(),  # each sequence's blocks, in order
                       "block_indices_begins": np.arange(len(running) + 1, dtype=np.int32) * block_table.shape[1],
                       "last_positions": begins[1:] - 1})
        next_tokens = request.get_tensor("logits").data[:, -1].argmax(axis=-1)  # one row per sequence
        for (place, (index, feed, past)), token in zip(list(running.items()), next_tokens.tolist()):
            answers[index] += [token] if token != eos_token_id else []
            running[place] = [index, [token], past + len(feed)]  # the token goes in next, unless the answer is done
            if token == eos_token_id or len(answers[index]) == max_new_tokens:
                del running[place]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)  # errors: one line, no usage
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR, help="model folder")
    parser.add_argument("--prompts", type=argparse.FileType(encoding="utf-8"), help="a text file, a prompt per line")
    parser.add_argument("--max-new-tokens", type=int, default=100, help="at most this many tokens per prompt, >= 1")
    parser.add_argument("--max-sequences", type=int, default=32, help="sequences in one inference at most, >= 1")
    parser.add_argument("--device", default="CPU", help="CPU or GPU for the LLM (tested on CPU)")
    parser.add_argument("--f32", action="store_true", help="compute and cache in f32: exact parity with references")
    args = parser.parse_args()
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        if not (args.model_dir / name).is_file():
            parser.error(f"no {args.model_dir / name}: run scripts/prepare_default_model.py or optimum-cli export")
    prompts = [line.rstrip("\n") for line in args.prompts if line.strip()] if args.prompts else DEFAULT_PROMPTS
    if not prompts or min(args.max_new_tokens, args.max_sequences) < 1:
        parser.error("--prompts holds no prompt" if prompts == [] else "--max-new-tokens, --max-sequences: >= 1")
    core = ov.Core()
    rt_info = core.read_model(args.model_dir / "openvino_tokenizer.xml").get_rt_info()
    model = core.read_model(args.model_dir / "openvino_model.xml")
    if "beam_idx" not in {name for port in model.inputs for name in port.names} or "eos_token_id" not in rt_info:
        parser.error(f"{args.model_dir} needs a stateful LLM and an eos_token_id (--task text-generation-with-past)")
    paged_attention_transformation(model)
    last_positions = ov.opset13.parameter([-1], ov.Type.i64, name="last_positions")  # where each sequence ends:
    last_positions.output(0).set_names({"last_positions"})  # only those rows reach the LM head (see greedy.py)
    lm_head = model.output("logits").get_node().input_value(0).get_node()
    lm_head.input(0).replace_source_output(ov.opset13.gather(lm_head.input_value(0), last_positions, 0).output(0))
    model.add_parameters([last_positions])
    try:  # one stream on all cores: the batch, not parallel requests, keeps them busy
        compiled = core.compile_model(model, args.device, F32_CONFIG if args.f32 else {})
    except RuntimeError as error:
        parser.error(f"cannot compile for --device {args.device}: {str(error).strip().splitlines()[-1]}")
    tokenizer = core.compile_model(args.model_dir / "openvino_tokenizer.xml", "CPU")  # string ops: CPU only
    detokenizer = core.compile_model(args.model_dir / "openvino_detokenizer.xml", "CPU")
    prompt_ids = [tokenizer([prompt])["input_ids"][0].tolist() for prompt in prompts]  # one at a time: no padding
    # Each place (a sequence in flight) owns blocks for the longest prompt and its answer (see paged_attention.py).
    places, block_size = min(args.max_sequences, len(prompts)), compiled.input("value_cache.0").partial_shape[2]
    blocks_per_place = -(-(max(map(len, prompt_ids)) + args.max_new_tokens) // block_size.get_length())
    block_table = np.arange(places * blocks_per_place, dtype=np.int32).reshape(places, blocks_per_place)
    request = compiled.create_infer_request()
    for port in (port for port in compiled.inputs if port.any_name.startswith(("key_cache.", "value_cache."))):
        shape = [block_table.size, *port.partial_shape.get_min_shape()[1:]]  # the plugin's layout, our block count
        request.set_tensor(port, ov.Tensor(port.element_type, shape))
    start = time.perf_counter()
    answers = generate_all(request, prompt_ids, args.max_new_tokens, rt_info["eos_token_id"].astype(int), block_table)
    tokens, seconds = sum(map(len, answers)), time.perf_counter() - start
    print(f"{len(prompts)} prompts, {tokens} new tokens in {seconds:.1f} s: {tokens / seconds:.1f} tokens/s",
          file=sys.stderr)
    for answer in answers:  # one line per prompt, in the prompts' order; newlines written as \n
        print(detokenizer(np.array([answer], dtype=np.int64))["string_output"][0].replace("\n", "\\n"))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
