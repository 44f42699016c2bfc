#!/usr/bin/env python3
"""diffusers' image-to-image results on the tiny Stable Diffusion fixture, for the tests.

Uses scripts/tiny_sd.py's pipeline (the same seeded weights as tests/data/tiny-sd/ir)
with StableDiffusionImg2ImgPipeline and EulerDiscreteScheduler. Writes into OUT_DIR
(default tests/data/tiny-sd):
  inputs/           the input pictures, written by PIL: RGB 64x64 and 96x64, a palette
                    image and an RGBA image
  expected-img2img/ CASE.npy for each case: the uint8 image diffusers makes from the
                    input as PIL's convert("RGB") reads it, given the sample's random
                    numbers (numpy default_rng(seed): the VAE encoder's noise, then the
                    noise added to the latents), output_type="np", rounded as the
                    sample rounds; cases.json the cases
Nothing is downloaded. Needs tests/requirements.txt. Rerunning gives the same files.
"""

import argparse
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import diffusers.models.autoencoders.vae
import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img as img2img
import numpy as np
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline
from PIL import Image
from tiny_sd import SCHEDULER, SEED, parts

REPO = Path(__file__).resolve().parent.parent
CASES = {
    "strength-0.3": {"image": "rgb.png", "strength": 0.3, "steps": 10},
    "strength-0.75": {"image": "rgb.png", "strength": 0.75, "steps": 4},
    "strength-1.0": {"image": "rgb.png", "strength": 1.0, "steps": 4},
    "negative": {
        "image": "rgb.png",
        "strength": 0.75,
        "steps": 4,
        "negative": "blurry, low quality",
    },
    "no-guidance": {"image": "rgb.png", "strength": 0.75, "steps": 4, "guidance": 1.0},
    "trailing": {
        "image": "rgb.png",
        "strength": 0.75,
        "steps": 4,
        "scheduler": {"timestep_spacing": "trailing"},
    },
    "v-prediction": {
        "image": "rgb.png",
        "strength": 0.75,
        "steps": 4,
        "scheduler": {"prediction_type": "v_prediction", "beta_schedule": "linear"},
    },
    "non-square": {"image": "wide.png", "strength": 0.6, "steps": 5},
    "palette": {"image": "palette.png", "strength": 0.75, "steps": 4},
    "rgba": {"image": "rgba.png", "strength": 0.75, "steps": 4},
}


def write_pictures(folder: Path) -> Image.Image:
    """wide.png (96x64), rgb.png (its middle 64x64) and palette.png: edges and
    gradients. Returns the 64x64 picture."""
    y, x = np.mgrid[:64, :96]
    disc = (x - 40) ** 2 + (y - 30) ** 2 < 18**2
    picture = np.stack([x * 2, y * 3, np.where(disc, 230, 40)], axis=-1)
    wide = Image.fromarray(picture.astype(np.uint8))
    square = wide.crop((16, 0, 80, 64))
    wide.save(folder / "wide.png")
    square.save(folder / "rgb.png")
    square.quantize(32).save(folder / "palette.png")
    return square


def write_inputs(folder: Path) -> None:
    """Pictures with edges and gradients, in the PNG kinds the cases read."""
    square = write_pictures(folder)
    x = np.arange(64)[None, :].repeat(64, axis=0)
    rgba = square.copy()
    rgba.putalpha(Image.fromarray((x * 4 % 256).astype(np.uint8)))
    rgba.save(folder / "rgba.png")


@contextmanager
def numpy_noise(seed: int, pipeline_module):
    """diffusers draws through randn_tensor, imported into the VAE's module (the
    encoder's sample) and into the pipeline's module: while this lasts, both draw the
    sample's numbers, standard_normal from one numpy default_rng(seed), in turn."""
    rng = np.random.default_rng(seed)

    def sample_noise(shape, generator=None, device=None, dtype=None, layout=None):
        return torch.from_numpy(rng.standard_normal(tuple(shape)).astype(np.float32))

    vae = diffusers.models.autoencoders.vae
    originals = (vae.randn_tensor, pipeline_module.randn_tensor)
    vae.randn_tensor = sample_noise
    pipeline_module.randn_tensor = sample_noise
    try:
        yield
    finally:
        vae.randn_tensor, pipeline_module.randn_tensor = originals


def expected_image(pipeline, case: dict, image: Image.Image) -> np.ndarray:
    """diffusers' image for a case, given the sample's random numbers in its order."""
    pipeline.scheduler = EulerDiscreteScheduler.from_config(
        {**SCHEDULER, **case.get("scheduler", {})}
    )
    with numpy_noise(case["seed"], img2img):
        result = pipeline(
            case["prompt"],
            image=image,
            strength=case["strength"],
            num_inference_steps=case["steps"],
            guidance_scale=case["guidance"],
            negative_prompt=case.get("negative"),
            output_type="np",
        ).images[0]
    return np.round(result * 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=REPO / "tests" / "data" / "tiny-sd"
    )
    args = parser.parse_args()
    inputs = args.out_dir / "inputs"
    expected = args.out_dir / "expected-img2img"
    for folder in (inputs, expected):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    write_inputs(inputs)
    pipeline = StableDiffusionImg2ImgPipeline(
        **parts(), scheduler=EulerDiscreteScheduler(**SCHEDULER)
    )
    cases = {}
    for name, case in CASES.items():
        case = {"prompt": "a photo of a cat", "guidance": 7.5, "seed": SEED, **case}
        image = Image.open(inputs / case["image"]).convert("RGB")
        case["width"], case["height"] = image.size
        np.save(expected / f"{name}.npy", expected_image(pipeline, case, image))
        cases[name] = case
    # The cases hold what the tests promise.
    assert {0.3, 0.75, 1.0} <= {case["strength"] for case in cases.values()}
    assert {case["guidance"] for case in cases.values()} == {1.0, 7.5}
    assert any(case["width"] != case["height"] for case in cases.values())
    (expected / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")


if __name__ == "__main__":
    main()
