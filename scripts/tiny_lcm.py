#!/usr/bin/env python3
"""Build the tiny random-weight Latent Consistency Model fixture offline, and diffusers'
images for the tests.

The tiny SD 1.x pipeline of scripts/tiny_sd.py with a UNet that takes the guidance
embedding (time_cond_proj_dim) and diffusers' LCMScheduler. Writes into OUT_DIR (default
tests/data/tiny-lcm):
  diffusers/  the pipeline in diffusers layout
  ir/         `optimum-cli export openvino --task latent-consistency` of it (as
              main_export)
  expected/   CASE.npy for each case: the uint8 image of diffusers'
              LatentConsistencyModelPipeline given the sample's latents and, between
              steps, the sample's noise (numpy default_rng(seed): latents first, then a
              draw per step), output_type="np"; expected/cases.json the cases
Nothing is downloaded. Needs tests/requirements.txt.
"""

import argparse
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import diffusers.schedulers.scheduling_lcm
import numpy as np
import torch
from diffusers import LatentConsistencyModelPipeline, LCMScheduler
from tiny_sd import SEED, build_fixture, parts

REPO = Path(__file__).resolve().parent.parent
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "original_inference_steps": 50,
    "timestep_scaling": 10.0,
    "set_alpha_to_one": True,
    "prediction_type": "epsilon",
    "clip_sample": False,
    "timestep_spacing": "leading",
    "steps_offset": 1,
}
CASES = {
    "one-step": {"prompt": "a photo of a cat", "steps": 1, "guidance": 8.0},
    "four-steps": {"prompt": "a photo of a cat", "steps": 4, "guidance": 8.0},
    "eight-steps": {
        "prompt": "an oil painting of a lighthouse",
        "steps": 8,
        "guidance": 8.0,
    },
    "low-guidance": {
        "prompt": "a small robot reading a book",
        "steps": 4,
        "guidance": 1.5,
    },
    "non-square": {
        "prompt": "a futuristic city skyline",
        "steps": 4,
        "guidance": 8.0,
        "width": 96,
        "height": 64,
    },
    # The UNet's output read as v (scheduler_config.json's prediction_type).
    "v-prediction": {
        "prompt": "a photo of a cat",
        "steps": 4,
        "guidance": 8.0,
        "scheduler": {"prediction_type": "v_prediction"},
    },
}


def expected_image(pipeline: LatentConsistencyModelPipeline, case: dict) -> np.ndarray:
    """diffusers' image for a case with the sample's latents and per-step noise, rounded
    as the sample rounds."""
    shape = (1, 4, case.get("height", 64) // 8, case.get("width", 64) // 8)
    rng = np.random.default_rng(SEED)
    latents = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))

    def sample_noise(
        shape, generator=None, device=None, dtype=None, layout=None
    ):  # the scheduler's randn_tensor
        return torch.from_numpy(rng.standard_normal(tuple(shape)).astype(np.float32))

    original, diffusers.schedulers.scheduling_lcm.randn_tensor = (
        diffusers.schedulers.scheduling_lcm.randn_tensor,
        sample_noise,
    )
    pipeline.scheduler = LCMScheduler.from_config(
        {**SCHEDULER, **case.get("scheduler", {})}
    )
    try:
        image = pipeline(
            case["prompt"],
            num_inference_steps=case["steps"],
            guidance_scale=case["guidance"],
            width=shape[3] * 8,
            height=shape[2] * 8,
            latents=latents,
            output_type="np",
        ).images[0]
    finally:
        diffusers.schedulers.scheduling_lcm.randn_tensor = original
    return np.round(image * 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=REPO / "tests" / "data" / "tiny-lcm"
    )
    args = parser.parse_args()
    # The cases hold what the tests promise: 1, 4 and 8 steps, two guidance scales, a
    # non-square size.
    assert {1, 4, 8} <= {case["steps"] for case in CASES.values()}
    assert len({case["guidance"] for case in CASES.values()}) >= 2
    assert any(
        case.get("width", 64) != case.get("height", 64) for case in CASES.values()
    )
    pipeline = LatentConsistencyModelPipeline(
        **parts(time_cond_proj_dim=32), scheduler=LCMScheduler(**SCHEDULER)
    )
    build_fixture(
        args.out_dir, pipeline, "latent-consistency", "tiny-lcm", CASES, expected_image
    )


if __name__ == "__main__":
    main()
