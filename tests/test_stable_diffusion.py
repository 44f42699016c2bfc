"""samples/stable_diffusion.py on the committed tiny SD fixture: fast tier, needs only requirements.txt and pytest.

Known-good source: diffusers' StableDiffusionPipeline with EulerDiscreteScheduler on the same random weights and the
sample's latents, recorded in tests/data/tiny-sd/expected/ by scripts/tiny_sd.py (tests/test_reference.py rebuilds
the fixture and recomputes them).
"""
import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, check_bad_input, check_ctrl_c, run_sample

TINY_SD = REPO / "tests" / "data" / "tiny-sd"
PROGRESS = re.compile(r"^step (\d+)/(\d+): \d+\.\d{3} s$")


def sd_cases(folder: Path = TINY_SD) -> dict:
    cases = folder / "expected" / "cases.json"
    if not cases.is_file():
        pytest.fail(f"{cases} is missing: build it with python scripts/tiny_sd.py")
    return json.loads(cases.read_text())


def read_png(path: Path) -> np.ndarray:
    """A strict reader for what the sample writes: 8-bit RGB, no interlace, filter 0 rows, chunk CRCs checked."""
    data, chunks, offset = path.read_bytes(), {}, 8
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    while offset < len(data):
        (length,), kind = struct.unpack(">I", data[offset:offset + 4]), data[offset + 4:offset + 8]
        body, (crc,) = data[offset + 8:offset + 8 + length], struct.unpack(">I", data[offset + 8 + length:][:4])
        assert crc == zlib.crc32(kind + body), kind
        chunks[kind], offset = chunks.get(kind, b"") + body, offset + 12 + length
    assert list(chunks) == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, color, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, color, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, 1 + width * 3)
    assert not rows[:, 0].any()  # filter type 0 on every row
    return rows[:, 1:].reshape(height, width, 3)


def model_for(case: dict, tmp_path: Path, ir: Path) -> Path:
    """The IR folder, or a copy whose scheduler_config.json carries the case's changes."""
    if not case.get("scheduler"):
        return ir
    shutil.copytree(ir, tmp_path / "model")
    config = tmp_path / "model" / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **case["scheduler"]}))
    return tmp_path / "model"


def generate(case: dict, model: Path, output: Path, *extra: str):
    args = [model, case["prompt"], "--steps", case["steps"], "--guidance-scale", case["guidance"], "--seed",
            case["seed"], "--width", case["width"], "--height", case["height"], "--output", output, *extra]
    return run_sample("stable_diffusion.py", *args, *(["--negative-prompt", case["negative"]] if "negative" in case
                                                     else []))


def check_image(png: Path, expected: np.ndarray, case: dict) -> None:
    """The PNG is the reference image, of the case's size, to within 1 uint8 level on every pixel."""
    image = read_png(png)
    assert image.shape == expected.shape == (case["height"], case["width"], 3)
    assert np.abs(image.astype(int) - expected).max() <= 1


def check_case(case: dict, expected: np.ndarray, tmp_path: Path, ir: Path) -> None:
    """With --f32 the PNG is diffusers' image to within 1 uint8 level on every pixel."""
    run = generate(case, model_for(case, tmp_path, ir), tmp_path / "out.png", "--f32")
    assert run.returncode == 0, run.stderr
    check_image(tmp_path / "out.png", expected, case)


CASES = sd_cases()


@pytest.mark.parametrize("name", CASES)
def test_tiny_sd_matches_diffusers(name, tmp_path):
    check_case(CASES[name], np.load(TINY_SD / "expected" / f"{name}.npy"), tmp_path, TINY_SD / "ir")


def test_fixture_covers_what_it_must():
    """Cases named by the issue: guidance with and without a negative prompt, none, a non-square size, 1 and 20
    steps, the three timestep spacings, v_prediction, and a prompt longer than CLIP's 77 positions."""
    spacings = {case.get("scheduler", {}).get("timestep_spacing", "leading") for case in CASES.values()}
    assert spacings == {"leading", "trailing", "linspace"}
    assert {1, 20} <= {case["steps"] for case in CASES.values()}
    assert {7.5, 1.0} <= {case["guidance"] for case in CASES.values()}
    assert any(case["width"] != case["height"] for case in CASES.values())
    assert any("negative" in case for case in CASES.values())
    assert any(case.get("scheduler", {}).get("prediction_type") == "v_prediction" for case in CASES.values())
    assert max(len(case["prompt"].split()) for case in CASES.values()) > 77


def test_stdout_is_empty_and_stderr_shows_progress(tmp_path):
    case = CASES["cfg"]
    run = generate(case, TINY_SD / "ir", tmp_path / "out.png")  # default precision
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert [PROGRESS.match(line).groups() for line in lines[:-1]] == [(str(i), str(case["steps"]))
                                                                      for i in range(1, case["steps"] + 1)]
    assert lines[-1] == f"wrote {tmp_path / 'out.png'}"
    assert read_png(tmp_path / "out.png").shape == (64, 64, 3)


def test_seed_makes_the_image(tmp_path):
    """The same seed gives the same file; another seed another image."""
    case = {**CASES["cfg"], "steps": 2}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert generate({**case, "seed": seed}, TINY_SD / "ir", tmp_path / f"{name}.png", "--f32").returncode == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


def without(name: str, ir: Path = TINY_SD / "ir"):
    """A maker of a copy of the IR folder without one of its files."""
    def make(tmp_path):
        shutil.copytree(ir, tmp_path / "model")
        (tmp_path / "model" / name).unlink()
        return tmp_path / "model"
    return make


BAD_INPUTS = {
    "missing folder": (lambda tmp_path: tmp_path / "nowhere", [], "tokenizer/openvino_tokenizer.xml"),
    "no unet": (without("unet/openvino_model.xml"), [], "unet/openvino_model.xml"),
    "no scheduler": (without("scheduler/scheduler_config.json"), [], "scheduler_config.json"),
    "width not a multiple of 8": (lambda tmp_path: TINY_SD / "ir", ["--width", "100"], "multiples of 8"),
    "zero height": (lambda tmp_path: TINY_SD / "ir", ["--height", "0"], "multiples of 8"),
    "negative width": (lambda tmp_path: TINY_SD / "ir", ["--width", "-64"], "multiples of 8"),
    "zero steps": (lambda tmp_path: TINY_SD / "ir", ["--steps", "0"], "--steps must be at least 1"),
    "steps not a number": (lambda tmp_path: TINY_SD / "ir", ["--steps", "many"], "invalid int value"),
    "negative prompt without guidance": (lambda tmp_path: TINY_SD / "ir", ["--guidance-scale", "1",
                                                                           "--negative-prompt", "blurry"], "> 1"),
    "no output folder": (lambda tmp_path: TINY_SD / "ir", ["--output", "/nowhere/at/all/x.png"], "--output"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_code_2(name, tmp_path):
    make_folder, args, says = BAD_INPUTS[name]
    run = run_sample("stable_diffusion.py", make_folder(tmp_path), "a cat", "--output", tmp_path / "out.png", *args)
    check_bad_input(run, says)


def test_ctrl_c_exits_130_without_traceback(tmp_path):
    """SIGINT while denoising ends the process with 130 and no traceback."""
    check_ctrl_c("stable_diffusion.py", TINY_SD / "ir", "--steps", 100000, "--width", 64, "--height", 64, "--output",
                 tmp_path / "out.png", started=lambda process: process.stderr.readline().startswith(b"step 1/"))
    assert not (tmp_path / "out.png").exists()


def test_long_prompts_are_cut_as_transformers_cuts_them(tmp_path):
    """CLIP keeps BOS, the first 75 tokens and the final EOS (transformers' truncation). Each "a" is one token of
    the fixture's tokenizer: prompts that differ only after the 75th token give the same file, prompts that differ in
    the 75th do not. (One of 77 positions moves the tiny model's image by about one level, so diffusers parity alone
    would not show a cut in the wrong place.)"""
    def png_bytes(prompt: str, name: str) -> bytes:
        run = run_sample("stable_diffusion.py", TINY_SD / "ir", prompt, "--steps", 2, "--width", 64, "--height", 64,
                         "--f32", "--output", tmp_path / name)
        assert run.returncode == 0, run.stderr
        return (tmp_path / name).read_bytes()

    assert png_bytes("a " * 75 + "cat", "75-cat.png") == png_bytes("a " * 75 + "dog", "75-dog.png")
    assert png_bytes("a " * 74 + "cat", "74-cat.png") != png_bytes("a " * 74 + "dog", "74-dog.png")
