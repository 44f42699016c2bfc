"""samples/inpainting.py on the committed tiny inpainting fixture (a 9-channel UNet)
and on the tiny SD fixture (a plain 4-channel UNet): fast tier, needs only
requirements.txt and pytest.

Known-good source: diffusers' StableDiffusionInpaintPipeline with EulerDiscreteScheduler
on the same random weights, given the sample's random numbers, recorded in
tests/data/tiny-inpaint/expected/ by tests/fixtures/tiny_inpaint.py (tests/test_reference.py
recomputes them).
"""

import numpy as np
import openvino as ov
import pytest

from conftest import (
    TINY_INPAINT,
    TINY_SD,
    check_bad_case,
    check_edit_case,
    copy_without,
    model_for,
    read_cases,
    run_sample,
)

INPUTS = TINY_INPAINT / "inputs"
CASES = read_cases(TINY_INPAINT / "expected" / "cases.json", "tiny_inpaint.py")
FIXTURES = {"tiny-inpaint": TINY_INPAINT / "ir", "tiny-sd": TINY_SD / "ir"}


@pytest.mark.parametrize("name", CASES)
def test_matches_diffusers(name, tmp_path):
    """With --f32, every pixel within one level of diffusers'; stderr counts the steps
    that strength keeps."""
    case = CASES[name]
    expected = np.load(TINY_INPAINT / "expected" / f"{name}.npy")
    model = model_for(case, tmp_path, FIXTURES[case["model"]])
    pictures = [INPUTS / case["image"], INPUTS / case["mask"]]
    output = tmp_path / "out.png"
    check_edit_case("inpainting.py", model, pictures, case, expected, output)


def five_channel_unet(tmp_path):
    """The inpainting folder with a UNet that takes 5 channels (a stand-in network of
    the UNet's inputs and output)."""
    folder = copy_without(
        TINY_INPAINT / "ir", "unet/openvino_model.xml", tmp_path / "m"
    )
    sample = ov.opset13.parameter([-1, 5, -1, -1], ov.Type.f32, name="sample")
    timestep = ov.opset13.parameter([-1], ov.Type.f32, name="timestep")
    hidden = ov.opset13.parameter(
        [-1, 77, 32], ov.Type.f32, name="encoder_hidden_states"
    )
    four = ov.opset13.slice(sample, [0], [4], [1], axes=[1])
    model = ov.Model([four], [sample, timestep, hidden])
    ov.save_model(model, folder / "unet" / "openvino_model.xml")
    return folder


BAD_INPUTS = {
    "mask not found": "no image",
    "mask of another size": "the image's size",
    "mask not a PNG": "is not a PNG",
    "zero strength": "--strength",
    "strength above 1": "--strength",
    "no vae_encoder": "vae_encoder/openvino_model.xml",
    "a 5-channel UNet": "not 4 or 9",
}
# Cases of a bad argument (argparse's line); the others are raised, for the guard.
ARGUMENT_CASES = {"zero strength", "strength above 1"}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_code_2(name, tmp_path):
    """One line, exit code 2, and no output file."""
    model = TINY_INPAINT / "ir"
    mask = INPUTS / "mask.png"
    args = []
    if name == "mask not found":
        mask = tmp_path / "nowhere.png"
    elif name == "mask of another size":
        mask = INPUTS / "wide-mask.png"
    elif name == "mask not a PNG":
        mask = tmp_path / "mask.png"
        mask.write_text("white in the middle")
    elif name == "zero strength":
        args = ["--strength", "0"]
    elif name == "strength above 1":
        args = ["--strength", "1.01"]
    elif name == "no vae_encoder":
        model = copy_without(model, "vae_encoder/openvino_model.xml", tmp_path / "m")
    elif name == "a 5-channel UNet":
        model = five_channel_unet(tmp_path)
    output = tmp_path / "out.png"
    image = INPUTS / "rgb.png"
    run = run_sample("inpainting.py", model, image, mask, "--output", output, *args)
    check_bad_case(run, BAD_INPUTS[name], name in ARGUMENT_CASES)
    assert not output.exists()
