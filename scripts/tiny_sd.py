#!/usr/bin/env python3
"""Build the tiny random-weight Stable Diffusion 1.x fixture offline, and diffusers'
images for the tests.

Writes into OUT_DIR (default tests/data/tiny-sd):
  diffusers/  the pipeline in diffusers layout (CLIP tokenizer from a small byte-level
              BPE trained here)
  ir/         `optimum-cli export openvino --task stable-diffusion` of it (as
              main_export)
  expected/   for each case in CASES: CASE.npy, the uint8 image diffusers'
              StableDiffusionPipeline makes with EulerDiscreteScheduler, the sample's
              latents (numpy default_rng(seed)) and output_type="np"
  expected/cases.json  the cases: prompt, negative prompt, steps, guidance, size,
                       scheduler config changes
Nothing is downloaded. Needs tests/requirements.txt. Rerunning gives the same files.
"""

import argparse
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from tokenizers import pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

REPO = Path(__file__).resolve().parent.parent
TEXT = """a photo of a cat sitting on a red sofa, highly detailed, studio lighting
an oil painting of a lighthouse on a cliff at sunset, dramatic clouds, waves
a watercolor of a small robot reading a book in a cozy library, warm colors
blurry, low quality, distorted, ugly, watermark, text, bad anatomy, deformed
a futuristic city skyline at night with neon lights and flying cars, cinematic
"""
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
# Each case: what the test passes to the sample, and the scheduler_config.json changes
# of its model folder.
CASES = {
    "cfg": {"prompt": "a photo of a cat", "steps": 4, "guidance": 7.5},
    "negative": {
        "prompt": "a photo of a cat",
        "negative": "blurry, low quality",
        "steps": 4,
        "guidance": 7.5,
    },
    "no-guidance": {"prompt": "a red sofa", "steps": 4, "guidance": 1.0},
    "non-square": {
        "prompt": "a lighthouse at sunset",
        "steps": 3,
        "guidance": 7.5,
        "width": 96,
        "height": 64,
    },
    "one-step": {"prompt": "a robot", "steps": 1, "guidance": 7.5},
    "twenty-steps": {"prompt": "a futuristic city", "steps": 20, "guidance": 7.5},
    "trailing": {
        "prompt": "a photo of a cat",
        "steps": 4,
        "guidance": 7.5,
        "scheduler": {"timestep_spacing": "trailing"},
    },
    "linspace": {
        "prompt": "a photo of a cat",
        "steps": 4,
        "guidance": 7.5,
        "scheduler": {"timestep_spacing": "linspace", "steps_offset": 0},
    },
    "long-prompt": {
        "prompt": ", ".join(["a small robot reading a book in a cozy library"] * 12),
        "steps": 2,
        "guidance": 7.5,
        "negative": "blurry, low quality, distorted, ugly, watermark, text, bad anatomy",
    },
    "v-prediction": {
        "prompt": "a photo of a cat",
        "steps": 4,
        "guidance": 7.5,
        "scheduler": {"prediction_type": "v_prediction", "beta_schedule": "linear"},
    },
}
SEED = 42
MERGES = 200  # BPE merges learnt from TEXT


def clip_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer (BOS/EOS added, pad = eos = <|endoftext|>, 77 positions) with
    BPE merges learnt from TEXT.

    Learnt here, not with tokenizers' BpeTrainer, whose ties and ids change from run to
    run: the most frequent pair wins, ties go to the smallest pair. Vocabulary laid out
    as CLIP's: bytes, bytes ending a word, merges, specials.
    """
    template = (
        CLIPTokenizer().backend_tokenizer
    )  # CLIP's normalizer and pre-tokenizer (byte-level, by word)
    words = Counter(
        word
        for line in TEXT.splitlines()
        for word, _ in template.pre_tokenizer.pre_tokenize_str(
            template.normalizer.normalize_str(line)
        )
    )
    pieces = {word: [*word[:-1], word[-1] + "</w>"] for word in words}
    merges = []
    for _ in range(MERGES):
        pairs = Counter()
        for word, count in words.items():
            pairs.update({pair: count for pair in zip(pieces[word], pieces[word][1:])})
        if not pairs:
            break
        merges.append(best := min(pairs, key=lambda pair: (-pairs[pair], pair)))
        for parts in pieces.values():
            i = 0
            while i < len(parts) - 1:
                if (parts[i], parts[i + 1]) == best:
                    parts[i : i + 2] = ["".join(best)]
                i += 1
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = (
        alphabet
        + [char + "</w>" for char in alphabet]
        + ["".join(merge) for merge in merges]
    )
    vocab = {
        token: i
        for i, token in enumerate(
            dict.fromkeys(tokens + ["<|startoftext|>", "<|endoftext|>"])
        )
    }
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def parts(time_cond_proj_dim: int | None = None, in_channels: int = 4) -> dict:
    """The tiny pipeline's tokenizer, text encoder, UNet (time_cond_proj_dim: LCM's
    guidance input; in_channels 9: an inpainting UNet), VAE; seed 0."""
    torch.manual_seed(0)
    tokenizer = clip_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        time_cond_proj_dim=time_cond_proj_dim,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=32,
    ).eval()
    vae = AutoencoderKL(
        block_out_channels=(16, 16, 32, 32),
        norm_num_groups=8,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    ).eval()
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "unet": unet,
        "vae": vae,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def build_fixture(
    out_dir: Path, pipeline, task: str, label: str, cases: dict, expected_image
) -> None:
    """Save the pipeline in diffusers layout, export it with optimum-intel (TASK),
    record expected_image per case."""
    for name in ("diffusers", "ir", "expected"):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    pipeline.save_pretrained(out_dir / "diffusers")
    print(f"saved {out_dir / 'diffusers'}", file=sys.stderr)

    from optimum.exporters.openvino import main_export

    main_export(
        str(out_dir / "diffusers"), out_dir / "ir", task=task, convert_tokenizer=True
    )
    for config in (out_dir / "ir").rglob(
        "*.json"
    ):  # the same files wherever they are built
        config.write_text(config.read_text().replace(str(out_dir.resolve()), label))
    print(f"exported {out_dir / 'ir'}", file=sys.stderr)

    (out_dir / "expected").mkdir()
    for name, case in cases.items():
        np.save(out_dir / "expected" / f"{name}.npy", expected_image(pipeline, case))
    cases = {
        name: {"seed": SEED, "width": 64, "height": 64, **case}
        for name, case in cases.items()
    }
    (out_dir / "expected" / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(
        f"wrote {len(cases)} expected images to {out_dir / 'expected'}", file=sys.stderr
    )


def expected_image(pipeline: StableDiffusionPipeline, case: dict) -> np.ndarray:
    """diffusers' image for a case, with the sample's latents, rounded to uint8 as the
    sample rounds."""
    width, height = case.get("width", 64), case.get("height", 64)
    pipeline.scheduler = EulerDiscreteScheduler.from_config(
        {**SCHEDULER, **case.get("scheduler", {})}
    )
    latents = (
        np.random.default_rng(SEED)
        .standard_normal((1, 4, height // 8, width // 8))
        .astype(np.float32)
    )
    image = pipeline(
        case["prompt"],
        negative_prompt=case.get("negative"),
        num_inference_steps=case["steps"],
        guidance_scale=case["guidance"],
        width=width,
        height=height,
        latents=torch.from_numpy(latents),
        output_type="np",
    ).images[0]
    return np.round(image * 255).astype(np.uint8)


def check_coverage(cases: dict) -> None:
    """The cases hold what the tests promise: guidance with and without a negative
    prompt, none, a non-square size, 1 and 20 steps, the three timestep spacings,
    v_prediction, and a prompt longer than CLIP's 77 positions."""
    spacings = {
        case.get("scheduler", {}).get("timestep_spacing", "leading")
        for case in cases.values()
    }
    assert spacings == {"leading", "trailing", "linspace"}
    assert {1, 20} <= {case["steps"] for case in cases.values()}
    assert {7.5, 1.0} <= {case["guidance"] for case in cases.values()}
    assert any(
        case.get("width", 64) != case.get("height", 64) for case in cases.values()
    )
    assert any("negative" in case for case in cases.values())
    assert any(
        case.get("scheduler", {}).get("prediction_type") == "v_prediction"
        for case in cases.values()
    )
    assert max(len(case["prompt"].split()) for case in cases.values()) > 77


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=REPO / "tests" / "data" / "tiny-sd"
    )
    args = parser.parse_args()
    check_coverage(CASES)
    pipeline = StableDiffusionPipeline(
        **parts(), scheduler=EulerDiscreteScheduler(**SCHEDULER)
    )
    build_fixture(
        args.out_dir, pipeline, "stable-diffusion", "tiny-sd", CASES, expected_image
    )


if __name__ == "__main__":
    main()
