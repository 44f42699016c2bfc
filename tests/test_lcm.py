"""samples/lcm.py on the committed tiny LCM fixture: fast tier, needs only requirements.txt and pytest.

Known-good source: diffusers' LatentConsistencyModelPipeline (LCMScheduler) on the same random weights, given the
sample's latents and per-step noise, recorded in tests/data/tiny-lcm/expected/ by scripts/tiny_lcm.py
(tests/test_reference.py rebuilds the fixture and recomputes them).
"""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, check_bad_input, run_sample
from test_stable_diffusion import PROGRESS, check_image, without

TINY_LCM = REPO / "tests" / "data" / "tiny-lcm"


def lcm_cases(folder: Path = TINY_LCM) -> dict:
    cases = folder / "expected" / "cases.json"
    if not cases.is_file():
        pytest.fail(f"{cases} is missing: build it with python scripts/tiny_lcm.py")
    return json.loads(cases.read_text())


def generate(case: dict, model: Path, output: Path, *extra):
    return run_sample("lcm.py", model, case["prompt"], "--steps", case["steps"], "--guidance-scale", case["guidance"],
                      "--seed", case["seed"], "--width", case["width"], "--height", case["height"], "--output", output,
                      *extra)


def check_case(case: dict, expected: np.ndarray, model: Path, tmp_path: Path) -> None:
    """With --f32 the PNG is diffusers' image to within 1 uint8 level on every pixel."""
    run = generate(case, model, tmp_path / "out.png", "--f32")
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert [PROGRESS.match(line)[1] for line in run.stderr.splitlines()[:-1]] == [
        str(i) for i in range(1, case["steps"] + 1)]
    check_image(tmp_path / "out.png", expected, case)


CASES = lcm_cases()


@pytest.mark.parametrize("name", CASES)
def test_tiny_lcm_matches_diffusers(name, tmp_path):
    check_case(CASES[name], np.load(TINY_LCM / "expected" / f"{name}.npy"), TINY_LCM / "ir", tmp_path)


def test_fixture_covers_1_4_and_8_steps_and_two_guidance_scales():
    assert {1, 4, 8} <= {case["steps"] for case in CASES.values()}
    assert len({case["guidance"] for case in CASES.values()}) >= 2
    assert any(case["width"] != case["height"] for case in CASES.values())


def test_the_seed_makes_the_image(tmp_path):
    """The same seed gives the same file; another seed, whose per-step noise differs too, another image."""
    case = CASES["four-steps"]
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert generate({**case, "seed": seed}, TINY_LCM / "ir", tmp_path / f"{name}.png").returncode == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


BAD_INPUTS = {
    "missing folder": (lambda tmp_path: tmp_path / "nowhere", [], "tokenizer/openvino_tokenizer.xml"),
    "no unet": (without("unet/openvino_model.xml", TINY_LCM / "ir"), [], "unet/openvino_model.xml"),
    "width not a multiple of 8": (lambda tmp_path: TINY_LCM / "ir", ["--width", "100"], "multiples of 8"),
    "zero height": (lambda tmp_path: TINY_LCM / "ir", ["--height", "0"], "multiples of 8"),
    "zero steps": (lambda tmp_path: TINY_LCM / "ir", ["--steps", "0"], "--steps must be 1 to 50"),
    "more steps than distilled": (lambda tmp_path: TINY_LCM / "ir", ["--steps", "51"], "--steps must be 1 to 50"),
    "no output folder": (lambda tmp_path: TINY_LCM / "ir", ["--output", "/nowhere/at/all/x.png"], "--output"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_code_2(name, tmp_path):
    make_folder, args, says = BAD_INPUTS[name]
    run = run_sample("lcm.py", make_folder(tmp_path), "a cat", "--output", tmp_path / "out.png", *args)
    check_bad_input(run, says)
