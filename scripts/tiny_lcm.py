#!/usr/bin/env python3
"""Build the tiny random-weight Latent Consistency Model fixture offline, and diffusers' images for the tests.

The tiny SD 1.x pipeline of scripts/tiny_sd.py with a UNet that takes the guidance embedding (time_cond_proj_dim)
and diffusers' LCMScheduler. Writes into OUT_DIR (default tests/data/tiny-lcm):
  diffusers/  the pipeline in diffusers layout
  ir/         `optimum-cli export openvino --task latent-consistency` of it (as main_export)
  expected/   CASE.npy for each case: the uint8 image of diffusers' LatentConsistencyModelPipeline given the sample's
              latents and, between steps, the sample's noise (numpy default_rng(seed): latents first, then a draw per
              step), output_type="np"; expected/cases.json the cases
Nothing is downloaded. Needs tests/requirements.txt.
"""
import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import diffusers.schedulers.scheduling_lcm
import numpy as np
import torch
from diffusers import AutoencoderKL, LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel
from tiny_sd import clip_tokenizer
from transformers import CLIPTextConfig, CLIPTextModel

REPO = Path(__file__).resolve().parent.parent
SCHEDULER = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "original_inference_steps": 50, "timestep_scaling": 10.0, "set_alpha_to_one": True,
             "prediction_type": "epsilon", "clip_sample": False, "timestep_spacing": "leading", "steps_offset": 1}
CASES = {
    "one-step": {"prompt": "a photo of a cat", "steps": 1, "guidance": 8.0},
    "four-steps": {"prompt": "a photo of a cat", "steps": 4, "guidance": 8.0},
    "eight-steps": {"prompt": "an oil painting of a lighthouse", "steps": 8, "guidance": 8.0},
    "low-guidance": {"prompt": "a small robot reading a book", "steps": 4, "guidance": 1.5},
    "non-square": {"prompt": "a futuristic city skyline", "steps": 4, "guidance": 8.0, "width": 96, "height": 64},
}
SEED = 42


def build_pipeline(out: Path) -> LatentConsistencyModelPipeline:
    torch.manual_seed(0)
    tokenizer = clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)).eval()
    unet = UNet2DConditionModel(sample_size=8, block_out_channels=(32, 64), layers_per_block=1,
                                cross_attention_dim=32, attention_head_dim=(2, 4), time_cond_proj_dim=32,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=32).eval()
    vae = AutoencoderKL(block_out_channels=(16, 16, 32, 32), norm_num_groups=8, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4).eval()
    pipeline = LatentConsistencyModelPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                              scheduler=LCMScheduler(**SCHEDULER), safety_checker=None,
                                              feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(out)
    return pipeline


def expected_image(pipeline: LatentConsistencyModelPipeline, case: dict) -> np.ndarray:
    """diffusers' image for a case with the sample's latents and per-step noise, rounded as the sample rounds."""
    shape = (1, 4, case.get("height", 64) // 8, case.get("width", 64) // 8)
    rng = np.random.default_rng(SEED)
    latents = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))

    def sample_noise(shape, generator=None, device=None, dtype=None, layout=None):  # the scheduler's randn_tensor
        return torch.from_numpy(rng.standard_normal(tuple(shape)).astype(np.float32))

    original, diffusers.schedulers.scheduling_lcm.randn_tensor = diffusers.schedulers.scheduling_lcm.randn_tensor, \
        sample_noise
    try:
        image = pipeline(case["prompt"], num_inference_steps=case["steps"], guidance_scale=case["guidance"],
                         width=shape[3] * 8, height=shape[2] * 8, latents=latents, output_type="np").images[0]
    finally:
        diffusers.schedulers.scheduling_lcm.randn_tensor = original
    return np.round(image * 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", type=Path, default=REPO / "tests" / "data" / "tiny-lcm")
    args = parser.parse_args()
    for name in ("diffusers", "ir", "expected"):
        shutil.rmtree(args.out_dir / name, ignore_errors=True)
    pipeline = build_pipeline(args.out_dir / "diffusers")
    print(f"saved {args.out_dir / 'diffusers'}", file=sys.stderr)

    from optimum.exporters.openvino import main_export
    main_export(str(args.out_dir / "diffusers"), args.out_dir / "ir", task="latent-consistency",
                convert_tokenizer=True)
    for config in (args.out_dir / "ir").rglob("*.json"):  # the same files wherever they are built
        config.write_text(config.read_text().replace(str(args.out_dir.resolve()), "tiny-lcm"))
    print(f"exported {args.out_dir / 'ir'}", file=sys.stderr)

    (args.out_dir / "expected").mkdir()
    for name, case in CASES.items():
        np.save(args.out_dir / "expected" / f"{name}.npy", expected_image(pipeline, case))
    cases = {name: {"seed": SEED, "width": 64, "height": 64, **case} for name, case in CASES.items()}
    (args.out_dir / "expected" / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"wrote {len(CASES)} expected images to {args.out_dir / 'expected'}", file=sys.stderr)


if __name__ == "__main__":
    main()
