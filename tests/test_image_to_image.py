"""samples/image_to_image.py on the committed tiny SD fixture: fast tier, needs only
requirements.txt and pytest.

Known-good source: diffusers' StableDiffusionImg2ImgPipeline with EulerDiscreteScheduler
on the same random weights, given the sample's random numbers, recorded in
tests/data/tiny-sd/expected-img2img/ by tests/fixtures/tiny_img2img.py (tests/test_reference.py
recomputes them). The PNG reader is checked here against the PNG specification's
filters on files this test writes, and against Pillow in the reference tier.
"""

import importlib.util

import numpy as np
import pytest

from conftest import (
    SAMPLES_DIR,
    TINY_SD,
    check_bad_case,
    check_edit_case,
    copy_without,
    model_for,
    png_file,
    read_cases,
    run_sample,
)

INPUTS = TINY_SD / "inputs"
CASES = read_cases(TINY_SD / "expected-img2img" / "cases.json", "tiny_img2img.py")


@pytest.mark.parametrize("name", CASES)
def test_matches_diffusers(name, tmp_path):
    """With --f32, every pixel within one level of diffusers'; stderr counts the steps
    that strength keeps."""
    case = CASES[name]
    expected = np.load(TINY_SD / "expected-img2img" / f"{name}.npy")
    model = model_for(case, tmp_path, TINY_SD / "ir")
    pictures = [INPUTS / case["image"]]
    output = tmp_path / "out.png"
    check_edit_case("image_to_image.py", model, pictures, case, expected, output)


def sample_read_png():
    """The sample's own PNG reader (the file itself, imported)."""
    path = SAMPLES_DIR / "image_to_image.py"
    spec = importlib.util.spec_from_file_location("image_to_image", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_png


RNG = np.random.default_rng(0)
PICTURE = RNG.integers(
    0, 256, (16, 24, 3), dtype=np.uint8
)  # noise: every guess differs
GRAY = PICTURE[..., :1]
ALPHA = RNG.integers(0, 256, (16, 24, 1), dtype=np.uint8)
PALETTE = RNG.integers(0, 256, (40, 3), dtype=np.uint8)
INDICES = RNG.integers(0, 40, (16, 24, 1), dtype=np.uint8)
# colour type: (its pixels, the RGB that PIL's convert("RGB") makes of them, palette)
KINDS = {
    "gray": (GRAY, np.repeat(GRAY, 3, axis=2), None),
    "rgb": (PICTURE, PICTURE, None),
    "palette": (INDICES, PALETTE[INDICES[..., 0]], PALETTE),
    "gray-alpha": (
        np.concatenate([GRAY, ALPHA], axis=2),
        np.repeat(GRAY, 3, axis=2),
        None,
    ),
    "rgba": (np.concatenate([PICTURE, ALPHA], axis=2), PICTURE, None),
}
COLOUR_TYPES = {"gray": 0, "rgb": 2, "palette": 3, "gray-alpha": 4, "rgba": 6}


@pytest.mark.parametrize("kind", KINDS)
def test_png_reader_undoes_every_filter_of_every_colour_type(kind, tmp_path):
    pixels, rgb, palette = KINDS[kind]
    path = tmp_path / "in.png"
    path.write_bytes(png_file(pixels, COLOUR_TYPES[kind], palette))
    read = sample_read_png()(path)
    assert read.dtype == np.uint8 and (read == rgb).all()


def bad_png(tmp_path, problem: str):
    """An input file with one problem."""
    path = tmp_path / "in.png"
    picture = np.zeros((64, 64, 3), dtype=np.uint8)
    if problem == "not a PNG":
        path.write_text("a text file")
    elif problem == "interlaced":
        path.write_bytes(png_file(picture, 2, interlace=1))
    elif problem == "16-bit":
        path.write_bytes(png_file(picture, 2, depth=16))
    elif problem == "truncated":
        data = png_file(picture, 2)
        path.write_bytes(data[: len(data) // 2])
    elif problem == "no image data":  # IHDR, then IEND: no IDAT
        data = png_file(picture, 2)
        start = data.index(b"IDAT") - 4
        end = start + 12 + int.from_bytes(data[start : start + 4], "big")
        path.write_bytes(data[:start] + data[end:])
    elif problem == "no header":
        path.write_bytes(png_file(picture, 2)[:8] + png_file(picture, 2)[33:])
    elif problem == "not a multiple of 8":
        path.write_bytes(png_file(np.zeros((60, 64, 3), dtype=np.uint8), 2))
    return path


PNG_PROBLEMS = [
    "no image data",
    "no header",
    "not a PNG",
    "interlaced",
    "16-bit",
    "truncated",
    "not a multiple of 8",
]
BAD_INPUTS = {
    "image not found": (["--strength", "0.5"], "no image"),
    "not a PNG": ([], "is not a PNG"),
    "interlaced": ([], "8-bit non-interlaced"),
    "16-bit": ([], "8-bit non-interlaced"),
    "truncated": ([], "cut short"),
    "no image data": ([], "damaged"),
    "no header": ([], "damaged"),
    "not a multiple of 8": ([], "multiples of 8"),
    "zero strength": (["--strength", "0"], "--strength"),
    "strength above 1": (["--strength", "1.5"], "--strength"),
    "strength not a number": (["--strength", "nan"], "--strength"),
    "no step left": (["--strength", "0.3", "--steps", "3"], "at least 1"),
    "negative prompt without guidance": (
        ["--guidance-scale", "1", "--negative-prompt", "blurry"],
        "> 1",
    ),
    "no vae_encoder": ([], "vae_encoder/openvino_model.xml"),
}
# Cases of a bad argument (argparse's line); the others are raised, for the guard.
ARGUMENT_CASES = {
    "zero strength",
    "strength above 1",
    "strength not a number",
    "no step left",
    "negative prompt without guidance",
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_code_2(name, tmp_path):
    """One line, exit code 2, and no output file."""
    args, says = BAD_INPUTS[name]
    model = TINY_SD / "ir"
    if name == "no vae_encoder":
        model = copy_without(model, "vae_encoder/openvino_model.xml", tmp_path / "m")
    image = INPUTS / "rgb.png"
    if name == "image not found":
        image = tmp_path / "nowhere.png"
    elif name in PNG_PROBLEMS:
        image = bad_png(tmp_path, name)
    output = tmp_path / "out.png"
    run = run_sample(
        "image_to_image.py", model, image, "a cat", "--output", output, *args
    )
    check_bad_case(run, says, name in ARGUMENT_CASES)
    assert not output.exists()
