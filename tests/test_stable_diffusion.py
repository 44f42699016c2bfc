"""samples/stable_diffusion.py on the committed tiny SD fixture: fast tier, needs only
requirements.txt and pytest.

Known-good source: diffusers' StableDiffusionPipeline with EulerDiscreteScheduler on the
same random weights and the sample's latents, recorded in tests/data/tiny-sd/expected/
by tests/fixtures/tiny_sd.py (tests/test_reference.py rebuilds the fixture and recomputes
them).
"""

import re

import numpy as np
import pytest

from conftest import (
    TINY_SD,
    check_bad_argument,
    check_image_case,
    generate_image,
    image_cases,
    read_png,
    run_sample,
)

PROGRESS = re.compile(r"^step (\d+)/(\d+): \d+\.\d{3} s$")
CASES = image_cases(TINY_SD)


def generate(case: dict, model, output, *extra):
    return generate_image("stable_diffusion.py", case, model, output, *extra)


@pytest.mark.parametrize("name", CASES)
def test_tiny_sd_matches_diffusers(name, tmp_path):
    case = CASES[name]  # first: a missing fixture fails here, saying how to build it
    expected = np.load(TINY_SD / "expected" / f"{name}.npy")
    check_image_case("stable_diffusion.py", case, expected, tmp_path, TINY_SD / "ir")


def test_stdout_is_empty_and_stderr_shows_progress(tmp_path):
    case = CASES["cfg"]
    run = generate(case, TINY_SD / "ir", tmp_path / "out.png")  # default precision
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert [PROGRESS.match(line).groups() for line in lines[:-1]] == [
        (str(i), str(case["steps"])) for i in range(1, case["steps"] + 1)
    ]
    assert lines[-1] == f"wrote {tmp_path / 'out.png'}"
    assert read_png(tmp_path / "out.png").shape == (64, 64, 3)


def test_seed_makes_the_image(tmp_path):
    """The same seed gives the same file; another seed another image."""
    case = {**CASES["cfg"], "steps": 2}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert (
            generate(
                {**case, "seed": seed},
                TINY_SD / "ir",
                tmp_path / f"{name}.png",
                "--f32",
            ).returncode
            == 0
        )
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


BAD_ARGUMENTS = {
    "width not a multiple of 8": (["--width", "100"], "multiples of 8"),
    "zero height": (["--height", "0"], "multiples of 8"),
    "negative width": (["--width", "-64"], "multiples of 8"),
    "zero steps": (["--steps", "0"], "--steps must be at least 1"),
    "steps not a number": (["--steps", "many"], "invalid int value"),
    "negative prompt without guidance": (
        ["--guidance-scale", "1", "--negative-prompt", "blurry"],
        "> 1",
    ),
    "no output folder": (["--output", "/nowhere/at/all/x.png"], "--output"),
}


@pytest.mark.parametrize("name", BAD_ARGUMENTS)
def test_bad_arguments_give_one_line_and_exit_code_2(name, tmp_path):
    args, says = BAD_ARGUMENTS[name]
    output = tmp_path / "out.png"
    run = run_sample(
        "stable_diffusion.py", TINY_SD / "ir", "a cat", "--output", output, *args
    )
    check_bad_argument(run, says)


def test_long_prompts_are_cut_as_transformers_cuts_them(tmp_path):
    """CLIP keeps BOS, the first 75 tokens and the final EOS (transformers' truncation).
    Each "a" is one token of the fixture's tokenizer: prompts that differ only after the
    75th token give the same file, prompts that differ in the 75th do not. (One of 77
    positions moves the tiny model's image by about one level, so diffusers parity alone
    would not show a cut in the wrong place.)"""

    def png_bytes(prompt: str, name: str) -> bytes:
        run = run_sample(
            "stable_diffusion.py",
            TINY_SD / "ir",
            prompt,
            "--steps",
            2,
            "--width",
            64,
            "--height",
            64,
            "--f32",
            "--output",
            tmp_path / name,
        )
        assert run.returncode == 0, run.stderr
        return (tmp_path / name).read_bytes()

    assert png_bytes("a " * 75 + "cat", "75-cat.png") == png_bytes(
        "a " * 75 + "dog", "75-dog.png"
    )
    assert png_bytes("a " * 74 + "cat", "74-cat.png") != png_bytes(
        "a " * 74 + "dog", "74-dog.png"
    )
