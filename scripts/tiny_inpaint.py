#!/usr/bin/env python3
"""The tiny inpainting fixture, and diffusers' inpainting results for the tests.

scripts/tiny_sd.py's pipeline with a 9-channel UNet (latents, mask, masked image's
latents), as SD 1.5 / SD 2 inpainting have, exported with optimum-intel; and for the
4-channel fallback, tiny_sd.py's own pipeline (tests/data/tiny-sd/ir). Writes into
OUT_DIR (default tests/data/tiny-inpaint):
  diffusers/  the 9-channel pipeline in diffusers layout
  ir/         `optimum-cli export openvino --task inpainting` of it (as main_export)
  inputs/     pictures and masks written by PIL: the masks' edges off the 8-pixel grid,
              a gray, an RGB and a palette mask
  expected/   CASE.npy for each case: the uint8 image of diffusers'
              StableDiffusionInpaintPipeline with EulerDiscreteScheduler, given the
              sample's random numbers (numpy default_rng(seed), in diffusers' order:
              the image's encoder noise where the image is encoded, the added noise,
              the masked image's encoder noise), output_type="np", rounded as the
              sample rounds; cases.json the cases ("model": which fixture)
Nothing is downloaded. Needs tests/requirements.txt. Rerunning gives the same files.
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint as inpaint
import numpy as np
from diffusers import EulerDiscreteScheduler, StableDiffusionInpaintPipeline
from PIL import Image
from tiny_img2img import numpy_noise, write_pictures
from tiny_sd import SCHEDULER, SEED, parts

REPO = Path(__file__).resolve().parent.parent
CASES = {
    "strength-1.0": {"image": "rgb.png", "mask": "mask.png", "strength": 1.0},
    "strength-0.75": {"image": "rgb.png", "mask": "mask.png", "strength": 0.75},
    "strength-0.3": {
        "image": "rgb.png",
        "mask": "mask.png",
        "strength": 0.3,
        "steps": 10,
    },
    "no-guidance": {
        "image": "rgb.png",
        "mask": "mask.png",
        "strength": 1.0,
        "guidance": 1.0,
    },
    "negative": {
        "image": "rgb.png",
        "mask": "mask.png",
        "strength": 1.0,
        "negative": "blurry, low quality",
    },
    "trailing": {
        "image": "rgb.png",
        "mask": "mask.png",
        "strength": 1.0,
        "scheduler": {"timestep_spacing": "trailing"},
    },
    "v-prediction": {
        "image": "rgb.png",
        "mask": "mask.png",
        "strength": 0.75,
        "scheduler": {"prediction_type": "v_prediction", "beta_schedule": "linear"},
    },
    "non-square": {"image": "wide.png", "mask": "wide-mask.png", "strength": 1.0},
    "rgb-mask": {"image": "rgb.png", "mask": "rgb-mask.png", "strength": 1.0},
    "palette": {"image": "palette.png", "mask": "palette-mask.png", "strength": 0.75},
    "plain-unet": {
        "model": "tiny-sd",
        "image": "rgb.png",
        "mask": "mask.png",
        "strength": 1.0,
    },
    "plain-unet-0.6": {
        "model": "tiny-sd",
        "image": "wide.png",
        "mask": "wide-mask.png",
        "strength": 0.6,
        "steps": 5,
    },
}


def write_inputs(folder: Path) -> None:
    """Pictures, and masks whose white (repaint) regions do not follow the 8-pixel
    latent grid."""
    write_pictures(folder)
    y, x = np.mgrid[:64, :96]
    repaint = ((x - 45) ** 2 + (y - 27) ** 2 < 15**2) | ((y > 50) & (x < 37))
    wide_mask = Image.fromarray(np.where(repaint, 255, 0).astype(np.uint8))
    wide_mask.save(folder / "wide-mask.png")
    wide_mask.crop((16, 0, 80, 64)).save(folder / "mask.png")
    # Colours on both sides of the 0.5 gray threshold (ITU-R 601 luma).
    colours = np.where(repaint[:, 16:80, None], [250, 90, 40], [60, 140, 20])
    rgb_mask = Image.fromarray(colours.astype(np.uint8))
    rgb_mask.save(folder / "rgb-mask.png")
    # A palette of 32 entries, so that PIL writes 8 bits a pixel (the samples read 8-bit
    # PNGs; for 2 colours PIL would write 1 bit).
    palette_mask = rgb_mask.quantize(2)
    palette_mask.putpalette(palette_mask.getpalette()[:6] + [128] * 90)
    palette_mask.save(folder / "palette-mask.png")


def expected_image(pipeline, case: dict, image, mask) -> np.ndarray:
    """diffusers' image for a case, given the sample's random numbers in its order."""
    pipeline.scheduler = EulerDiscreteScheduler.from_config(
        {**SCHEDULER, **case.get("scheduler", {})}
    )
    with numpy_noise(case["seed"], inpaint):
        result = pipeline(
            case["prompt"],
            image=image,
            mask_image=mask,
            strength=case["strength"],
            num_inference_steps=case["steps"],
            guidance_scale=case["guidance"],
            negative_prompt=case.get("negative"),
            width=case["width"],
            height=case["height"],
            output_type="np",
        ).images[0]
    return np.round(result * 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=REPO / "tests" / "data" / "tiny-inpaint",
    )
    args = parser.parse_args()
    for name in ("diffusers", "ir", "inputs", "expected"):
        shutil.rmtree(args.out_dir / name, ignore_errors=True)
    (args.out_dir / "inputs").mkdir(parents=True)
    (args.out_dir / "expected").mkdir()
    write_inputs(args.out_dir / "inputs")

    pipelines = {
        "tiny-inpaint": StableDiffusionInpaintPipeline(
            **parts(in_channels=9), scheduler=EulerDiscreteScheduler(**SCHEDULER)
        ),
        "tiny-sd": StableDiffusionInpaintPipeline(
            **parts(), scheduler=EulerDiscreteScheduler(**SCHEDULER)
        ),
    }
    pipelines["tiny-inpaint"].save_pretrained(args.out_dir / "diffusers")

    from optimum.exporters.openvino import main_export

    main_export(
        str(args.out_dir / "diffusers"),
        args.out_dir / "ir",
        task="inpainting",
        convert_tokenizer=True,
    )
    for config in (args.out_dir / "ir").rglob("*.json"):  # the same wherever built
        config.write_text(
            config.read_text().replace(str(args.out_dir.resolve()), "tiny-inpaint")
        )
    print(f"exported {args.out_dir / 'ir'}", file=sys.stderr)

    cases = {}
    for name, case in CASES.items():
        defaults = {"model": "tiny-inpaint", "prompt": "a photo of a cat"}
        case = {**defaults, "steps": 4, "guidance": 7.5, "seed": SEED, **case}
        image = Image.open(args.out_dir / "inputs" / case["image"]).convert("RGB")
        mask = Image.open(args.out_dir / "inputs" / case["mask"])
        case["width"], case["height"] = image.size
        result = expected_image(pipelines[case["model"]], case, image, mask)
        np.save(args.out_dir / "expected" / f"{name}.npy", result)
        cases[name] = case
    # The cases hold what the tests promise.
    assert {0.3, 0.75, 1.0} <= {case["strength"] for case in cases.values()}
    assert {case["guidance"] for case in cases.values()} == {1.0, 7.5}
    assert {case["model"] for case in cases.values()} == set(pipelines)
    assert any(case["width"] != case["height"] for case in cases.values())
    (args.out_dir / "expected" / "cases.json").write_text(
        json.dumps(cases, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
