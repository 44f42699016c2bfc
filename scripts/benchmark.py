#!/usr/bin/env python3
"""Every sample against openvino_genai on the same IR, on this machine, in one run: a
Markdown table on stdout.

Each figure is the median of --runs runs after one warm-up run, the sides taking turns;
each ratio is the median of the runs' own ratios (ours against the genai run next to it:
this shared VM drifts by 20% within minutes). Every run is a fresh process (the sample
file itself, or a small openvino_genai script), so loading and compiling stay out of the
figures, and its peak RSS (VmHWM) is its own.
  greedy        time to first token and decode tokens/s for prompts of about 16, 512 and
                2048 tokens, 128 new tokens, default precision and --f32, for greedy.py
                (stateful model) and paged_attention.py; genai LLMPipeline with
                ignore_eos, no chat template, in its CPU default (paged attention) and
                with ATTENTION_BACKEND=SDPA (the stateful model greedy.py uses)
  beam search   wall time of 20 new tokens with 4 beams, and 15 beams in 3 groups (ours:
                the sample answers the same prompt 1 + K times, one line each: the time
                from the first line to the last, divided by K; genai: its second
                generate() in the process)
  throughput    aggregate tokens/s for 16 prompts of 32 new tokens: throughput.py with 1
                request and the optimal count, continuous_batching.py (all 16 in each
                inference), and genai generate(list of prompts)
  image         seconds per denoising step (steps after the first) at 512x512, 20 steps,
                on the tiny SD model; the floor: the UNet's own inference (batch 2,
                static shapes), timed right after each run
  img2img       the same for image_to_image.py (strength 0.8: 16 steps) against genai's
                Image2ImagePipeline, on a synthetic 512x512 picture
  inpaint       the same for inpainting.py (strength 1.0) on the tiny 9-channel
                inpainting model against genai's InpaintingPipeline, a disc as the mask
  whisper       real-time factor (seconds of transcribing per second of audio, from
                the first window's features to the last token) of whisper.py and of
                genai's WhisperPipeline.generate(return_timestamps=True) on Whisper
                tiny.en, eSpeak speech (scripts/speak.py) of 14 s (both sides giving
                the same text) and of over a minute (long-form: genai's windows part
                from transformers', which whisper.py follows); --quick: the tiny
                fixture
  lora          time to first token and decode tokens/s of lora.py with the adapter
                scripts/train_lora.py writes, and with --alpha 0 (the branches' cost),
                against genai's LLMPipeline with the same adapter (AdapterConfig, its
                alpha set to lora_alpha / r) on the same named int8 IR, a 64-token
                prompt, 128 new tokens; --quick: the tiny Llama and its test adapter
  embeddings    texts/s of text_embeddings.py and of genai's TextEmbeddingPipeline
                (mean pooling, normalized, the folder's max_seq_length, one batch) on
                all-MiniLM-L6-v2 (scripts/prepare_embeddings.py), 64 passages of about
                100 tokens; each side's one call in a fresh process; --quick: the tiny
                BERT fixture
  tts           real-time factor of the voice's inference (seconds computing per second
                of audio) and the time to compile or load the voice, of
                text_to_speech.py and of piper-tts 1.8.0 (onnxruntime, the peer in the
                genai column: openvino_genai has no Piper pipeline) on the Joe voice
                (scripts/prepare_voice.py), two sentences at the voice's own scales;
                needs piper-tts (tests/requirements.txt)
  vlm           time to first token (the picture's encoding included) and decode
                tokens/s of visual_language_chat.py and of genai's VLMPipeline on the
                same IR and picture: the tiny CLIP LLaVA fixture (no real LLaVA reaches
                these machines), a 301 x 203 PNG, one question, 128 new tokens at most;
                genai streams to a callback, as its own sample prints
--quick runs the tiny fixtures with short prompts, once: it shows that everything runs
(the tests use it).
Needs scripts/requirements.txt (openvino-genai). Example: python scripts/benchmark.py
--runs 5 > benchmark.md
"""

import argparse
import json
import os
import re
import runpy
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  lets the Core read the tokenizer IRs

from stats_line import last_stats

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
F32_HINTS = {
    "INFERENCE_PRECISION_HINT": "f32",
    "KV_CACHE_PRECISION": "f32",
    "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0",
}
# Runs a sample file as __main__, then prints the process's peak RSS (VmHWM, kB) on
# stderr.
WITH_RSS = """import atexit, runpy, sys
atexit.register(lambda: print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")),
                              file=sys.stderr))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")"""
# The openvino_genai side: one task given as JSON, its figures printed as JSON.
GENAI = """import atexit, json, sys, time
atexit.register(lambda: print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")),
                              file=sys.stderr))
import openvino_genai
task = json.loads(sys.argv[1])
if task["kind"] == "image":
    pipe = openvino_genai.Text2ImagePipeline(task["model"], "CPU")
    pipe.generate(task["prompt"], width=task["size"], height=task["size"], num_inference_steps=task["steps"],
                  rng_seed=42)
    metrics = pipe.get_performance_metrics()
if task["kind"] in ("img2img", "inpaint"):
    import numpy as np
    import openvino as ov
    image = ov.Tensor(np.load(task["image"]))  # (1, height, width, 3) uint8
    if task["kind"] == "img2img":
        pipe = openvino_genai.Image2ImagePipeline(task["model"], "CPU")
        pipe.generate(task["prompt"], image, strength=task["strength"], num_inference_steps=task["steps"],
                      rng_seed=42)
    else:
        pipe = openvino_genai.InpaintingPipeline(task["model"], "CPU")
        # The picture's size, given: the pipeline would otherwise make the UNet's default size.
        pipe.generate(task["prompt"], image, ov.Tensor(np.load(task["mask"])), strength=task["strength"],
                      num_inference_steps=task["steps"], rng_seed=42, width=task["size"], height=task["size"])
    metrics = pipe.get_performance_metrics()
if task["kind"] == "whisper":
    import wave
    import numpy as np
    with wave.open(task["wav"]) as file:
        audio = np.frombuffer(file.readframes(file.getnframes()), "<i2").astype(np.float32) / 32768
    pipe = openvino_genai.WhisperPipeline(task["model"], "CPU")
    start = time.perf_counter()
    result = pipe.generate(audio.tolist(), return_timestamps=True)
    seconds = time.perf_counter() - start
    print(json.dumps({"rtf": seconds / (len(audio) / 16000), "text": result.texts[0]}))
if task["kind"] == "embeddings":
    Pipeline = openvino_genai.TextEmbeddingPipeline
    config = Pipeline.Config(pooling_type=Pipeline.PoolingType.MEAN, normalize=True,
                             max_length=task["max_length"], batch_size=len(task["texts"]))
    pipe = Pipeline(task["model"], "CPU", config)
    start = time.perf_counter()  # the first call, as the sample's one call
    vectors = pipe.embed_documents(task["texts"])
    seconds = time.perf_counter() - start
    print(json.dumps({"texts_per_s": len(task["texts"]) / seconds, "vectors": [list(v) for v in vectors]}))
if task["kind"] == "vlm":
    import numpy as np
    import openvino as ov
    pipe = openvino_genai.VLMPipeline(task["model"], "CPU")
    config = openvino_genai.GenerationConfig(max_new_tokens=task["max_new_tokens"])
    images = [ov.Tensor(np.load(task["image"]))]  # (1, height, width, 3) uint8
    def stream(text):  # as genai's own visual_language_chat.py streams (the sample prints too)
        sys.stderr.write(text)
        return False  # go on
    start = time.perf_counter()
    result = pipe.generate(task["question"], images=images, generation_config=config, streamer=stream)
    wall = time.perf_counter() - start
    sys.stderr.write("\\n")
    metrics = result.perf_metrics
    # Decode speed over the wall clock after the first token, as the sample's stats line counts it
    # (its own get_throughput() is printed beside it).
    ttft_s = metrics.get_ttft().mean / 1000
    tokens = metrics.get_num_generated_tokens()
    print(json.dumps({"ttft_ms": ttft_s * 1000, "tokens_per_s": (tokens - 1) / (wall - ttft_s),
                      "throughput": metrics.get_throughput().mean, "text": result.texts[0]}))
if task["kind"] in ("image", "img2img", "inpaint"):
    print(json.dumps({"step_s": metrics.get_first_and_other_iter_duration()[1] / 1000,
                      "unet_s": metrics.get_first_and_other_unet_infer_duration()[1] / 1000}))
elif task["kind"] not in ("whisper", "embeddings", "vlm"):
    extra = {}
    if task.get("adapter"):  # genai's alpha is the whole scale (lora_alpha / r included)
        adapter = openvino_genai.Adapter(task["adapter"])
        extra["adapters"] = openvino_genai.AdapterConfig(adapter, task["alpha"])
    pipe = openvino_genai.LLMPipeline(task["model"], "CPU", **extra, **task["properties"])
    config = openvino_genai.GenerationConfig(max_new_tokens=task["max_new_tokens"], ignore_eos=True,
                                             apply_chat_template=False, **task["generation"])
    if task["warm_up"]:
        pipe.generate(task["prompts"], config)
    start = time.perf_counter()
    metrics = pipe.generate(task["prompts"], config).perf_metrics  # a list in, DecodedResults out
    wall = time.perf_counter() - start
    print(json.dumps({"ttft_ms": metrics.get_ttft().mean, "tokens_per_s": metrics.get_throughput().mean,
                      "wall_s": wall, "tokens": metrics.get_num_generated_tokens(),
                      "aggregate_tokens_per_s": metrics.get_num_generated_tokens() / wall}))
"""
TEXT = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, trimmed the wick, polished the great "
    "lens and watched the beam sweep across the dark water, counting the ships that passed the rocks. "
)
WHISPER_SPEECH = [
    "The lighthouse keeper climbed the spiral stairs every evening at dusk.",
    "He trimmed the wick and polished the great lens.",
    "Then he watched the beam sweep across the dark water,",
    "counting the ships that passed the rocks.",
    "In the morning he wrote everything down in a small blue book.",
]
PARTS = [
    "greedy",
    "beam",
    "throughput",
    "image",
    "img2img",
    "inpaint",
    "whisper",
    "embeddings",
    "lora",
    "tts",
    "vlm",
]
# The Piper side: the voice loaded (onnxruntime), the text phonemized, each sentence's
# inference timed; its figures printed as JSON.
PIPER = """import atexit, json, sys, time
atexit.register(lambda: print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")),
                              file=sys.stderr))
import espeakng_loader
from piper import PiperVoice
start = time.perf_counter()
voice = PiperVoice.load(sys.argv[1], espeak_data_dir=espeakng_loader.get_data_path())
load_s = time.perf_counter() - start
samples = 0
start = time.perf_counter()
for phonemes in voice.phonemize(sys.argv[2]):
    samples += voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes)).size
infer_s = time.perf_counter() - start
print(json.dumps({"load_ms": load_s * 1000, "rtf": infer_s / (samples / voice.config.sample_rate)}))
"""
TTS_TEXT = "Please call Stella. Ask her to bring these things with her from the store."
THROUGHPUT_PROMPTS = [
    "Once upon a time",
    "The capital of France is",
    "def quicksort(items):",
    "The Moon is",
    "In 1969,",
    "My favourite recipe is",
    "Three reasons to learn Python:",
    "The best way to learn",
    "A haiku about the sea:",
    "The history of Rome",
    "Water boils at",
    "The largest planet is",
    "How to make bread:",
    "The quick brown fox",
    "Dear diary, today",
    "Machine learning is",
]


def run(
    label: str, command: list[str], stdin: str = ""
) -> tuple[str, str, float, float]:
    """stdout, stderr without the RSS line, peak RSS in MB, wall seconds of one process
    (STDIN its standard input)."""
    start = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, input=stdin
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{label} failed: {done.stderr.strip()[-800:]}")
    *lines, rss = done.stderr.strip().splitlines()
    return done.stdout, "\n".join(lines), int(rss.split()[1]) / 1024, wall


def sample(name: str, *args, stdin: str = "") -> tuple[str, str, float, float]:
    return run(
        f"samples/{name}",
        [sys.executable, "-c", WITH_RSS, str(SAMPLES / name), *map(str, args)],
        stdin,
    )


def line_times(name: str, *args) -> tuple[list[float], float]:
    """When each stdout line of a sample's run arrived (perf_counter seconds), and the
    run's peak RSS in MB."""
    command = [sys.executable, "-c", WITH_RSS, str(SAMPLES / name), *map(str, args)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    times = [time.perf_counter() for _ in process.stdout]
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"samples/{name} failed: {stderr.strip()[-800:]}")
    return times, int(stderr.strip().splitlines()[-1].split()[1]) / 1024


def genai(task: dict) -> tuple[dict, float]:
    stdout, _, rss, _ = run(
        f"openvino_genai on {task}", [sys.executable, "-c", GENAI, json.dumps(task)]
    )
    return json.loads(stdout), rss


def prompt_of(model: Path, tokens: int) -> str:
    """A prompt of about `tokens` tokens of the model's tokenizer (a repeated paragraph,
    cut, decoded)."""
    core = ov.Core()
    ids = core.compile_model(model / "openvino_tokenizer.xml", "CPU")(
        [TEXT * (tokens // 20 + 2)]
    )["input_ids"]
    return str(
        core.compile_model(model / "openvino_detokenizer.xml", "CPU")(ids[:, :tokens])[
            "string_output"
        ][0]
    )


def write_png(path: Path, pixels: np.ndarray) -> None:
    """(height, width, 3) uint8 -> an RGB PNG file (no filters), for the samples' input."""
    height, width, _ = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    data = b"\x89PNG\r\n\x1a\n"
    for kind, body in (
        (b"IHDR", header),
        (b"IDAT", zlib.compress(rows)),
        (b"IEND", b""),
    ):
        data += struct.pack(">I", len(body)) + kind + body
        data += struct.pack(">I", zlib.crc32(kind + body))
    path.write_bytes(data)


def picture_and_mask(scratch: Path, size: int) -> dict:
    """A synthetic picture (gradients and a disc) and a mask (the disc, white), as PNG
    files for the samples and as (1, size, size, 3) arrays for genai."""
    y, x = np.mgrid[:size, :size] * (256 / size)
    disc = (x - 128) ** 2 + (y - 110) ** 2 < 60**2
    picture = np.stack([x, y, np.where(disc, 230, 40)], axis=-1).astype(np.uint8)
    mask = np.repeat(np.where(disc, 255, 0)[..., None], 3, axis=2).astype(np.uint8)
    files = {}
    for name, pixels in (("image", picture), ("mask", mask)):
        write_png(scratch / f"{name}.png", pixels)
        np.save(scratch / f"{name}.npy", pixels[None])
        files[name] = scratch / f"{name}.png"
        files[f"{name} array"] = str(scratch / f"{name}.npy")
    return files


def unet_floor(model: Path, size: int) -> float:
    """Seconds of one UNet inference as the sample runs it (batch 2, static shapes, f32
    timestep), median of 10."""
    core = ov.Core()
    unet = core.read_model(model / "unet" / "openvino_model.xml")
    hidden = unet.input("encoder_hidden_states").partial_shape[2].get_length()
    channels = unet.input("sample").partial_shape[1].get_length()  # 9: inpainting
    unet.input("timestep").get_node().set_element_type(ov.Type.f32)
    unet.reshape(
        {
            "sample": [2, channels, size // 8, size // 8],
            "timestep": [2],
            "encoder_hidden_states": [2, 77, hidden],
        }
    )
    request = core.compile_model(unet, "CPU").create_infer_request()
    inputs = [
        np.random.default_rng(0)
        .standard_normal((2, channels, size // 8, size // 8))
        .astype(np.float32),
        np.full(2, 500, np.float32),
        np.zeros((2, 77, hidden), np.float32),
    ]
    request.infer(inputs)
    times = []
    for _ in range(10):
        start = time.perf_counter()
        request.infer(inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Table:
    """Rows of medians: a figure, ours, genai (paged attention), genai (SDPA), and our
    ratio to each."""

    def __init__(self):
        self.rows = []

    def add(
        self,
        figure: str,
        ours: list[float],
        paged: list[float] | None,
        sdpa: list[float] | None,
        unit: str,
    ):
        """Each list holds one figure a run; run i of every side ran next to run i of
        the others."""
        cells = [
            statistics.median(values) if values else None
            for values in (ours, paged, sdpa)
        ]
        ratios = [
            f"{statistics.median(mine / theirs for mine, theirs in zip(ours, other)):.2f}"
            if other
            else ""
            for other in (paged, sdpa)
        ]
        shown = [
            ""
            if value is None
            else f"{value:.2f}"
            if unit.startswith("ratio")
            else f"{value:.{0 if value >= 100 else 3 if value < 1 else 1}f}"
            for value in cells
        ]
        self.rows.append(
            f"| {figure} ({unit}) | {' | '.join(shown)} | {' | '.join(ratios)} |"
        )
        print(self.rows[-1], file=sys.stderr)

    def __str__(self):
        return "\n".join(
            [
                "| figure | ours | genai (paged) | genai (SDPA) | ours / paged | ours / SDPA |",
                "| --- | ---: | ---: | ---: | ---: | ---: |",
                *self.rows,
            ]
        )


def figures(stderr: str) -> tuple[float, float]:
    """greedy.py's (and paged_attention.py's) last stderr line: time to first token (ms)
    and decode tokens/s."""
    stats = last_stats(stderr)
    return stats["first_token_ms"], stats["tokens_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=REPO / "models" / "SmolLM2-135M-Instruct",
        help="LLM folder",
    )
    parser.add_argument(
        "--sd-model", type=Path, default=REPO / "tests" / "data" / "tiny-sd" / "ir"
    )
    parser.add_argument(
        "--whisper-model",
        type=Path,
        default=REPO / "models" / "whisper-tiny.en",
        help="a Whisper folder (scripts/prepare_whisper.py)",
    )
    parser.add_argument(
        "--inpaint-model",
        type=Path,
        default=REPO / "tests" / "data" / "tiny-inpaint" / "ir",
        help="an inpainting (9-channel UNet) folder",
    )
    parser.add_argument(
        "--embeddings-model",
        type=Path,
        default=REPO / "models" / "all-MiniLM-L6-v2",
        help="an embedding folder (scripts/prepare_embeddings.py)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=5,
        help="measured runs per figure, after one warm-up run",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny fixtures, short prompts, one run: a smoke test",
    )
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        help="greedy prompt lengths (default 16 512 2048)",
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=PARTS,
        help="the figures to measure (default all)",
    )
    args = parser.parse_args()
    model = REPO / "tests" / "data" / "tiny-llama" / "ir" if args.quick else args.model
    lengths, new_tokens, beam_tokens, extra = (
        ((16, 64), 16, 8, 3) if args.quick else ((16, 512, 2048), 128, 20, 5)
    )
    lengths = args.lengths or lengths
    throughput_tokens = 16 if args.quick else 32
    runs, warm_up = (1, 0) if args.quick else (args.runs, 1)
    size, steps = (64, 3) if args.quick else (512, 20)
    table, sides = Table(), {"paged": {}, "sdpa": {"ATTENTION_BACKEND": "SDPA"}}
    with open("/proc/cpuinfo") as cpuinfo:
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo
                if line.startswith("model name")
            ),
            "a CPU",
        )
    print(
        f"{cpu}, {os.cpu_count()} logical cores, OpenVINO {ov.get_version()}, {runs} run(s) per figure (median)\n"
    )
    scratch = Path(tempfile.mkdtemp(prefix="benchmark-"))

    if "greedy" in args.parts:
        for f32 in (False, True):
            hints, precision = (F32_HINTS, "f32") if f32 else ({}, "default precision")
            for length in lengths:
                prompt = prompt_of(model, length)
                results = {
                    "greedy.py": [],
                    "paged_attention.py": [],
                    "paged": [],
                    "sdpa": [],
                }
                for run_index in range(warm_up + runs):
                    measured = []
                    for name in ("greedy.py", "paged_attention.py"):
                        _, stderr, rss, _ = sample(
                            name,
                            model,
                            prompt,
                            "--max-new-tokens",
                            new_tokens,
                            *(["--f32"] if f32 else []),
                        )
                        measured.append((name, *figures(stderr), rss))
                    for side, properties in sides.items():
                        task = {
                            "kind": "text",
                            "model": str(model),
                            "properties": {**properties, **hints},
                            "generation": {},
                            "prompts": [prompt],
                            "max_new_tokens": new_tokens,
                            "warm_up": False,
                        }
                        result, rss = genai(task)
                        measured.append(
                            (side, result["ttft_ms"], result["tokens_per_s"], rss)
                        )
                    if run_index >= warm_up:
                        for side, ttft, speed, rss in measured:
                            results[side].append((ttft, speed, rss))
                for column, name, unit in (
                    (0, "time to first token", "ms, lower is better"),
                    (1, "decode", "tokens/s, higher is better"),
                    (2, "peak RSS", "MB"),
                ):
                    for ours in ("greedy.py", "paged_attention.py"):
                        table.add(
                            f"greedy {name}, {length}-token prompt, {precision}, {ours}",
                            *(
                                [row[column] for row in results[side]]
                                for side in (ours, "paged", "sdpa")
                            ),
                            unit,
                        )

    if "beam" in args.parts:
        short = prompt_of(model, 16)
        for beams, groups in ((4, 1), (15, 3)):
            options = [
                "--max-new-tokens",
                beam_tokens,
                "--num-beams",
                beams,
                "--num-beam-groups",
                groups,
                "--num-return-sequences",
                1,
            ]
            generation = {
                "num_beams": beams,
                "num_beam_groups": groups,
                "num_return_sequences": beams,
                "diversity_penalty": 1.0 if groups > 1 else 0.0,
            }
            results = {"ours": [], "paged": [], "sdpa": []}
            for run_index in range(warm_up + runs):
                times, rss = line_times(
                    "beam_search.py", model, *[short] * (1 + extra), *options
                )
                measured = [("ours", (times[-1] - times[0]) / extra, rss)]
                for side, properties in sides.items():
                    result, rss = genai(
                        {
                            "kind": "text",
                            "model": str(model),
                            "properties": properties,
                            "prompts": [short],
                            "generation": generation,
                            "max_new_tokens": beam_tokens,
                            "warm_up": True,
                        }
                    )
                    measured.append((side, result["wall_s"], rss))
                if run_index >= warm_up:
                    for side, seconds, rss in measured:
                        results[side].append((seconds, rss))
            for column, name, unit in (
                (0, "wall time", "s, lower is better"),
                (1, "peak RSS", "MB"),
            ):
                table.add(
                    f"beam search {name}, {beam_tokens} new tokens, {beams} beams in {groups} group(s)",
                    *(
                        [row[column] for row in results[side]]
                        for side in ("ours", "paged", "sdpa")
                    ),
                    unit,
                )

    if "throughput" in args.parts:
        prompts = THROUGHPUT_PROMPTS[:4] if args.quick else THROUGHPUT_PROMPTS
        prompts_file = scratch / "prompts.txt"
        prompts_file.write_text("".join(prompt + "\n" for prompt in prompts))
        results = {
            "ours": [],
            "ours, 1 request": [],
            "batching": [],
            "paged": [],
            "sdpa": [],
        }
        for run_index in range(warm_up + runs):
            speeds = []
            for requests in ([], ["--requests", 1]):  # the device's optimum, then one
                _, stderr, _, _ = sample(
                    "throughput.py",
                    model,
                    "--prompts",
                    prompts_file,
                    "--max-new-tokens",
                    throughput_tokens,
                    *requests,
                )
                speeds.append(last_stats(stderr)["tokens_per_second"])
            _, stderr, _, _ = sample(
                "continuous_batching.py",
                model,
                "--prompts",
                prompts_file,
                "--max-new-tokens",
                throughput_tokens,
            )
            measured = [
                ("ours", speeds[0]),
                ("ours, 1 request", speeds[1]),
                ("batching", last_stats(stderr)["tokens_per_second"]),
            ]
            for side, properties in sides.items():
                result, _ = genai(
                    {
                        "kind": "text",
                        "model": str(model),
                        "properties": properties,
                        "prompts": prompts,
                        "generation": {},
                        "max_new_tokens": throughput_tokens,
                        "warm_up": False,
                    }
                )
                measured.append((side, result["aggregate_tokens_per_s"]))
            if run_index >= warm_up:
                for side, speed in measured:
                    results[side].append(speed)
        for how, ours in (
            ("throughput.py, optimal requests", results["ours"]),
            ("throughput.py, 1 request", results["ours, 1 request"]),
            ("continuous_batching.py", results["batching"]),
        ):
            table.add(
                f"throughput, {len(prompts)} prompts x {throughput_tokens} new tokens, {how}",
                ours,
                results["paged"],
                results["sdpa"],
                "tokens/s, higher is better",
            )

    inputs = picture_and_mask(scratch, size)
    image_parts = {
        "image": ("stable_diffusion.py", args.sd_model, [], {}),
        "img2img": (
            "image_to_image.py",
            args.sd_model,
            [inputs["image"]],
            {"image": inputs["image array"], "strength": 0.8},
        ),
        "inpaint": (
            "inpainting.py",
            args.inpaint_model,
            [inputs["image"], inputs["mask"]],
            {
                "image": inputs["image array"],
                "mask": inputs["mask array"],
                "strength": 1.0,
            },
        ),
    }
    for part, (name, image_model, pictures, task) in image_parts.items():
        if part not in args.parts:
            continue
        results = {"ours": [], "paged": [], "floor": [], "rss": [], "genai rss": []}
        image = scratch / "image-out.png"
        size_args = []
        if part == "image":
            size_args = ["--width", size, "--height", size]
        for run_index in range(warm_up + runs):
            _, stderr, rss, _ = sample(
                name,
                image_model,
                *pictures,
                "a lighthouse at sunset",
                "--steps",
                steps,
                *size_args,
                "--output",
                image,
            )
            step_times = [
                float(line.split()[2])
                for line in stderr.splitlines()
                if line.startswith("step ")
            ]
            result, genai_rss = genai(
                {
                    "kind": part,
                    "model": str(image_model),
                    "prompt": "a lighthouse at sunset",
                    "size": size,
                    "steps": steps,
                    **task,
                }
            )
            floor = unet_floor(image_model, size)
            if run_index >= warm_up:
                results["ours"].append(statistics.median(step_times[1:]))
                results["paged"].append(result["step_s"])
                results["floor"].append(floor)
                results["rss"].append(rss)
                results["genai rss"].append(genai_rss)
        table.add(
            f"{part} ({name}), {size}x{size}, {steps} steps, per step after the first",
            results["ours"],
            results["paged"],
            None,
            "s, lower is better",
        )
        table.add(
            f"{part}, the UNet's own inference (the floor)",
            results["floor"],
            None,
            None,
            "s",
        )
        table.add(
            f"{part}, per step / floor",
            [mine / floor for mine, floor in zip(results["ours"], results["floor"])],
            None,
            None,
            "ratio, run by run",
        )
        table.add(f"{part}, peak RSS", results["rss"], results["genai rss"], None, "MB")
    if "whisper" in args.parts:
        from speak import speak, write_wav

        whisper_model = args.whisper_model
        if args.quick:
            whisper_model = REPO / "tests" / "data" / "tiny-whisper" / "ir"
        speeches = {"14 s": WHISPER_SPEECH, "over 60 s": WHISPER_SPEECH * 5}
        for label, sentences in speeches.items():
            wav = scratch / "speech.wav"
            write_wav(wav, speak(" ".join(sentences)))
            results = {"ours": [], "genai": [], "rss": [], "genai rss": []}
            for run_index in range(warm_up + runs):
                stdout, stderr, rss, _ = sample("whisper.py", whisper_model, wav)
                task = {"kind": "whisper", "model": str(whisper_model), "wav": str(wav)}
                result, genai_rss = genai(task)
                # genai's long-form windows part from transformers' (whisper.py's)
                # after a few segments: the texts agree on the short speech only.
                same = stdout.strip() == result["text"].strip()
                if label == "14 s" and not same and not args.quick:
                    raise SystemExit(
                        f"whisper.py and genai heard otherwise: {stdout!r}"
                    )
                if run_index >= warm_up:
                    factor = re.search(r"real-time factor ([\d.]+)", stderr).group(1)
                    results["ours"].append(float(factor))
                    results["genai"].append(result["rtf"])
                    results["rss"].append(rss)
                    results["genai rss"].append(genai_rss)
            table.add(
                f"whisper (whisper.py), {whisper_model.name}, {label} of speech, "
                "real-time factor",
                results["ours"],
                results["genai"],
                None,
                "lower is better",
            )
            table.add(
                f"whisper, {label}, peak RSS",
                results["rss"],
                results["genai rss"],
                None,
                "MB",
            )
    if "embeddings" in args.parts:
        embeddings_model = args.embeddings_model
        if args.quick:
            embeddings_model = REPO / "tests" / "data" / "tiny-bert" / "ir"
        words = (TEXT * 8).split()
        # 64 passages of about 100 tokens (80 words), one batch on both sides.
        passages = [" ".join(words[i : i + 80]) for i in range(64)]
        st_config = json.loads(
            (embeddings_model / "sentence_bert_config.json").read_text()
        )
        task = {
            "kind": "embeddings",
            "model": str(embeddings_model),
            "texts": passages,
            "max_length": st_config["max_seq_length"],
        }
        results = {"ours": [], "genai": [], "rss": [], "genai rss": []}
        for run_index in range(warm_up + runs):
            output = scratch / "embeddings.npy"
            _, stderr, rss, _ = sample(
                "text_embeddings.py", embeddings_model, *passages, "--output", output
            )
            result, genai_rss = genai(task)
            difference = np.abs(np.load(output) - np.array(result["vectors"])).max()
            if difference > 1e-2:
                raise SystemExit(
                    f"the embeddings differ by {difference}: not the same task"
                )
            if run_index >= warm_up:
                stats = last_stats(stderr)
                results["ours"].append(stats["texts"] / stats["milliseconds"] * 1000)
                results["genai"].append(result["texts_per_s"])
                results["rss"].append(rss)
                results["genai rss"].append(genai_rss)
        table.add(
            f"embeddings (text_embeddings.py), {embeddings_model.name}, 64 passages of "
            "about 100 tokens",
            results["ours"],
            results["genai"],
            None,
            "texts/s",
        )
        table.add(
            "embeddings, peak RSS", results["rss"], results["genai rss"], None, "MB"
        )
    if "lora" in args.parts:
        lora_model = REPO / "models" / "SmolLM2-135M-Instruct-named"
        adapter = REPO / "models" / "smollm2-lora"
        if args.quick:
            lora_model = REPO / "tests" / "data" / "tiny-llama" / "ir"
            adapter = REPO / "tests" / "data" / "tiny-lora" / "llama"
        adapter_config = json.loads((adapter / "adapter_config.json").read_text())
        prompt = prompt_of(lora_model, 64)
        results = {"adapter": [], "alpha 0": [], "paged": [], "sdpa": []}
        for run_index in range(warm_up + runs):
            measured = []
            for label, alpha in (("adapter", 1), ("alpha 0", 0)):
                args_lora = [lora_model, adapter, prompt, "--alpha", alpha]
                _, stderr, rss, _ = sample(
                    "lora.py", *args_lora, "--max-new-tokens", new_tokens
                )
                measured.append((label, *figures(stderr), rss))
            for side, properties in sides.items():
                task = {
                    "kind": "text",
                    "model": str(lora_model),
                    "adapter": str(adapter / "adapter_model.safetensors"),
                    "alpha": adapter_config["lora_alpha"] / adapter_config["r"],
                    "properties": properties,
                    "generation": {},
                    "prompts": [prompt],
                    "max_new_tokens": new_tokens,
                    "warm_up": False,
                }
                result, rss = genai(task)
                measured.append((side, result["ttft_ms"], result["tokens_per_s"], rss))
            if run_index >= warm_up:
                for side, ttft, speed, rss in measured:
                    results[side].append((ttft, speed, rss))
        for column, name, unit in (
            (0, "time to first token", "ms, lower is better"),
            (1, "decode", "tokens/s, higher is better"),
            (2, "peak RSS", "MB"),
        ):
            for ours in ("adapter", "alpha 0"):
                table.add(
                    f"lora {name}, lora.py {ours}, {lora_model.name}",
                    *(
                        [row[column] for row in results[side]]
                        for side in (ours, "paged", "sdpa")
                    ),
                    unit,
                )
    if "tts" in args.parts:
        voice = REPO / "models" / "piper-en_US-joe-medium" / "en_US-joe-medium.onnx"
        results = {"ours": [], "piper": [], "compile": [], "load": [], "rss": []}
        results["piper rss"] = []
        for run_index in range(warm_up + runs):
            wav = scratch / "speech.wav"
            _, stderr, rss, _ = sample("text_to_speech.py", TTS_TEXT, "--output", wav)
            command = [sys.executable, "-c", PIPER, str(voice), TTS_TEXT]
            stdout, _, piper_rss, _ = run("piper-tts", command)
            result = json.loads(stdout)
            if run_index >= warm_up:
                factor = re.search(r"real-time factor ([\d.]+)", stderr).group(1)
                results["ours"].append(float(factor))
                results["piper"].append(result["rtf"])
                compile_ms = re.search(r"compiled in (\d+) ms", stderr).group(1)
                results["compile"].append(float(compile_ms))
                results["load"].append(result["load_ms"])
                results["rss"].append(rss)
                results["piper rss"].append(piper_rss)
        table.add(
            "tts (text_to_speech.py), en_US-joe-medium, two sentences, inference "
            "real-time factor (peer: piper-tts, onnxruntime)",
            results["ours"],
            results["piper"],
            None,
            "lower is better",
        )
        table.add(
            "tts, compiling (ours) or loading (piper-tts) the voice",
            results["compile"],
            results["load"],
            None,
            "ms",
        )
        table.add("tts, peak RSS", results["rss"], results["piper rss"], None, "MB")
    if "vlm" in args.parts:
        # genai reads the image processor's settings only from preprocessor_config.json.
        vlm_model = scratch / "tiny-llava-clip"
        shutil.copytree(
            REPO / "tests" / "data" / "tiny-llava" / "clip" / "ir", vlm_model
        )
        settings = json.loads((vlm_model / "processor_config.json").read_text())
        settings_path = vlm_model / "preprocessor_config.json"
        settings_path.write_text(json.dumps(settings["image_processor"]))
        picture = (
            REPO
            / "tests"
            / "data"
            / "tiny-llava"
            / "pictures"
            / "rgb-portrait-large.png"
        )
        read_png = runpy.run_path(str(SAMPLES / "visual_language_chat.py"))["read_png"]
        np.save(scratch / "picture.npy", read_png(picture)[None])
        question = "What is in the picture?"
        vlm_tokens = 16 if args.quick else 128
        task = {
            "kind": "vlm",
            "model": str(vlm_model),
            "image": str(scratch / "picture.npy"),
        }
        task.update(question=question, max_new_tokens=vlm_tokens)
        results = {key: [] for key in ("ttft", "genai ttft", "speed", "genai speed")}
        results["genai throughput"] = []
        results.update(rss=[], genai_rss=[])
        for run_index in range(warm_up + runs):
            stdout, stderr, rss, _ = sample(
                "visual_language_chat.py",
                vlm_model,
                picture,
                "--max-new-tokens",
                vlm_tokens,
                stdin=question + "\n",
            )
            result, genai_rss = genai(task)
            if stdout != result["text"] + "\n":
                raise SystemExit("the answers differ: not the same task")
            if run_index >= warm_up:
                stats = last_stats(stderr)
                results["ttft"].append(stats["first_token_ms"] + stats["vision_ms"])
                results["genai ttft"].append(result["ttft_ms"])
                results["speed"].append(stats["tokens_per_second"])
                results["genai speed"].append(result["tokens_per_s"])
                results["genai throughput"].append(result["throughput"])
                results["rss"].append(rss)
                results["genai_rss"].append(genai_rss)
        table.add(
            "vlm (visual_language_chat.py), tiny CLIP LLaVA, 301 x 203 PNG, time to "
            "first token with the picture's encoding",
            results["ttft"],
            results["genai ttft"],
            None,
            "ms",
        )
        table.add(
            "vlm, decode over the wall clock after the first token",
            results["speed"],
            results["genai speed"],
            None,
            "tokens/s",
        )
        table.add(
            "vlm, decode against genai's own get_throughput()",
            results["speed"],
            results["genai throughput"],
            None,
            "tokens/s",
        )
        table.add("vlm, peak RSS", results["rss"], results["genai_rss"], None, "MB")
    shutil.rmtree(scratch)
    print(table)


if __name__ == "__main__":
    main()
