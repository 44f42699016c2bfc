"""samples/lcm.py on the committed tiny LCM fixture: fast tier, needs only
requirements.txt and pytest.

Known-good source: diffusers' LatentConsistencyModelPipeline (LCMScheduler) on the same
random weights, given the sample's latents and per-step noise, recorded in
tests/data/tiny-lcm/expected/ by tests/fixtures/tiny_lcm.py (tests/test_reference.py rebuilds
the fixture and recomputes them).
"""

import numpy as np
import pytest

from conftest import (
    TINY_LCM,
    check_bad_argument,
    check_image_case,
    generate_image,
    image_cases,
    run_sample,
)


def generate(case: dict, model, output, *extra):
    return generate_image("lcm.py", case, model, output, *extra)


CASES = image_cases(TINY_LCM)


@pytest.mark.parametrize("name", CASES)
def test_tiny_lcm_matches_diffusers(name, tmp_path):
    case = CASES[name]  # first: a missing fixture fails here, saying how to build it
    expected = np.load(TINY_LCM / "expected" / f"{name}.npy")
    check_image_case("lcm.py", case, expected, tmp_path, TINY_LCM / "ir")


def test_the_seed_makes_the_image(tmp_path):
    """The same seed gives the same file; another seed, whose per-step noise differs
    too, another image."""
    case = CASES["four-steps"]
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert (
            generate(
                {**case, "seed": seed}, TINY_LCM / "ir", tmp_path / f"{name}.png"
            ).returncode
            == 0
        )
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


BAD_ARGUMENTS = {
    "width not a multiple of 8": (["--width", "100"], "multiples of 8"),
    "zero height": (["--height", "0"], "multiples of 8"),
    "zero steps": (["--steps", "0"], "--steps must be 1 to 50"),
    "more steps than distilled": (["--steps", "51"], "--steps must be 1 to 50"),
    "no output folder": (["--output", "/nowhere/at/all/x.png"], "--output"),
}


@pytest.mark.parametrize("name", BAD_ARGUMENTS)
def test_bad_arguments_give_one_line_and_exit_code_2(name, tmp_path):
    args, says = BAD_ARGUMENTS[name]
    output = tmp_path / "out.png"
    run = run_sample("lcm.py", TINY_LCM / "ir", "a cat", "--output", output, *args)
    check_bad_argument(run, says)
