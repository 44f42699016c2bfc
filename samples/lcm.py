#!/usr/bin/env python3
"""Text to image in a few steps with a Latent Consistency Model IR folder, as a PNG.

The CLIP text encoder reads the prompt; the UNet, distilled to take the guidance scale
as an embedding (one batch row, no second prompt), predicts the clean latents in a few
steps of diffusers' LCM scheduler (in numpy), with fresh seeded noise between steps;
the VAE decoder turns the latents into pixels. The PNG is written with the standard
library.
MODEL_DIR is what `optimum-cli export openvino --task latent-consistency` writes.
Example: python samples/lcm.py models/lcm-dreamshaper-v7 "a lighthouse at sunset"
See also samples/stable_diffusion.py: Stable Diffusion's Euler scheduler and guidance.
"""

import argparse
import json
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IR's string operations

DEFAULT_PROMPT = "a lighthouse on a cliff at sunset, oil painting"
EXPORT_HINT = "export one with optimum-cli export openvino --task latent-consistency"
IMAGE_FILES = (
    "tokenizer/openvino_tokenizer.xml",
    "text_encoder/openvino_model.xml",
    "unet/openvino_model.xml",
    "vae_decoder/openvino_model.xml",
    "scheduler/scheduler_config.json",
)
TEXT_POSITIONS = 77  # CLIP's context: every prompt is padded or cut to it
VAE_SCALING_FACTOR = 0.18215  # SD 1.x and 2.x scaled their latents by it


def read_image_models(core: ov.Core, model_dir: Path) -> list[ov.Model]:
    """The folder's tokenizer, text encoder, UNet and VAE decoder, read but not
    compiled. A missing file is raised, for main's guard to print in one line."""
    for name in IMAGE_FILES:
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"no {model_dir / name}: {EXPORT_HINT}")
    return [core.read_model(model_dir / name) for name in IMAGE_FILES[:4]]


def clip_input_ids(tokenizer: ov.CompiledModel, text: str, pad_token_id: int):
    """(77,) ids of the text: padded, or cut before its EOS as transformers cuts it."""
    # One text a call: a batch made only of empty strings comes back as one row.
    ids = tokenizer([text])["input_ids"][0]
    kept = np.append(ids[:-1][: TEXT_POSITIONS - 1], ids[-1])
    input_ids = np.full(TEXT_POSITIONS, pad_token_id)
    input_ids[: len(kept)] = kept
    return input_ids


def alphas_cumprod(scheduler: dict) -> np.ndarray:
    """How much of the image is left after t noising steps, t = 0 .. train steps - 1."""
    steps = scheduler["num_train_timesteps"]
    start = scheduler["beta_start"]
    end = scheduler["beta_end"]
    if scheduler["beta_schedule"] == "scaled_linear":  # the betas' roots are linear
        betas = np.linspace(start**0.5, end**0.5, steps, dtype=np.float32) ** 2
    else:  # linear
        betas = np.linspace(start, end, steps, dtype=np.float32)
    return np.cumprod(1 - betas, dtype=np.float32)


def guidance_embedding(guidance_scale: float, size: int) -> np.ndarray:
    """(1, size): the sinusoidal embedding of (scale - 1) * 1000 the UNet was taught."""
    half = size // 2
    frequencies = np.exp(
        np.arange(half, dtype=np.float32) * -np.float32(np.log(10000) / (half - 1))
    )
    angles = np.float32((guidance_scale - 1) * 1000) * frequencies
    embedding = np.concatenate([np.sin(angles), np.cos(angles)])
    return np.pad(embedding, (0, size % 2))[None]  # an odd size ends with a 0


def lcm_timesteps(scheduler: dict, steps: int) -> np.ndarray:
    """The timesteps to denoise at, picked evenly from the distilled schedule's."""
    train_steps = scheduler["num_train_timesteps"]
    original_steps = scheduler.get("original_inference_steps", 50)
    distilled = np.arange(1, original_steps + 1) * (train_steps // original_steps) - 1
    picked = np.linspace(0, original_steps, steps, endpoint=False).astype(np.int64)
    return distilled[::-1][picked]


def vae_scaling_factor(model_dir: Path) -> float:
    """What the latents were multiplied by in training: the VAE's config says."""
    config_path = model_dir / "vae_decoder" / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    return config.get("scaling_factor", VAE_SCALING_FACTOR)


def png(image: np.ndarray) -> bytes:
    """(height, width, 3) uint8 -> the bytes of an RGB PNG file.

    A PNG is a signature and chunks (length, type, data, CRC): IHDR says the size and
    8-bit RGB; IDAT holds the zlib-compressed rows, each after a filter byte 0 (none);
    IEND ends the file."""
    height, width, _ = image.shape
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + row.tobytes() for row in image)
    chunks = [(b"IHDR", header), (b"IDAT", zlib.compress(rows)), (b"IEND", b"")]
    data = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        data += struct.pack(">I", len(body)) + kind + body
        data += struct.pack(">I", zlib.crc32(kind + body))
    return data


def to_pixels(image: np.ndarray) -> np.ndarray:
    """The VAE's (3, height, width) output in [-1, 1] -> (height, width, 3) uint8."""
    scaled = np.clip(image / 2 + 0.5, 0, 1) * 255
    return np.round(scaled).astype(np.uint8).transpose(1, 2, 0)


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("model_dir", type=Path, help="LCM IR folder")
    parser.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT)
    parser.add_argument("--steps", type=int, default=4, help="1 to the distilled 50")
    parser.add_argument("--guidance-scale", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=42, help="of latents and noise")
    parser.add_argument("--width", type=int, default=512, help="a multiple of 8")
    parser.add_argument("--height", type=int, default=512, help="a multiple of 8")
    parser.add_argument("--output", type=Path, default=Path("image.png"))
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as diffusers")
    args = parser.parse_args()
    if min(args.width, args.height) < 8 or args.width % 8 or args.height % 8:
        parser.error("--width and --height must be positive multiples of 8")
    if not args.output.resolve().parent.is_dir():
        parser.error(f"no folder for --output {args.output}")

    # Created after `import openvino_tokenizers`, so that it reads the tokenizer.
    core = ov.Core()
    networks = read_image_models(core, args.model_dir)
    tokenizer, text_encoder, unet, vae_decoder = networks
    scheduler = json.loads((args.model_dir / IMAGE_FILES[4]).read_text())
    # The distilled schedule's steps, that --steps picks from.
    original_steps = scheduler.get("original_inference_steps", 50)
    if not 1 <= args.steps <= original_steps:
        parser.error(f"--steps must be 1 to {original_steps}")
    # Static shapes compile faster kernels than dynamic ones.
    latent_shape = [1, 4, args.height // 8, args.width // 8]
    text_encoder.reshape({"input_ids": [1, TEXT_POSITIONS]})
    vae_decoder.reshape({"latent_sample": latent_shape})
    guidance_size = unet.input("timestep_cond").partial_shape[1].get_length()
    unet_shapes = {"sample": latent_shape, "timestep": [1]}
    unet_shapes["timestep_cond"] = [1, guidance_size]
    # (1, 77, hidden), as the text encoder gives it
    unet_shapes["encoder_hidden_states"] = text_encoder.output(0).partial_shape
    unet.reshape(unet_shapes)
    config = {"INFERENCE_PRECISION_HINT": "f32"} if args.f32 else {}
    text_encoder = core.compile_model(text_encoder, args.device, config)
    unet = core.compile_model(unet, args.device, config)
    vae_decoder = core.compile_model(vae_decoder, args.device, config)
    pad_token_id = tokenizer.get_rt_info()["pad_token_id"].astype(int)
    # The string operations run on the CPU only, whatever --device says.
    tokenizer = core.compile_model(tokenizer, "CPU")

    input_ids = clip_input_ids(tokenizer, args.prompt, pad_token_id)[None]
    text_embeddings = text_encoder(input_ids)[0]  # (1, 77, hidden)
    guidance = guidance_embedding(args.guidance_scale, guidance_size)

    # diffusers' LCMScheduler, configured by scheduler_config.json.
    alphas = alphas_cumprod(scheduler)
    timesteps = lcm_timesteps(scheduler, args.steps)
    timestep_scaling = scheduler.get("timestep_scaling", 10.0)
    v_prediction = scheduler.get("prediction_type") == "v_prediction"
    # One generator, drawn in this order: the first latents, then each step's noise.
    rng = np.random.default_rng(args.seed)
    latents = rng.standard_normal(latent_shape).astype(np.float32)
    for i, timestep in enumerate(timesteps):
        start = time.perf_counter()
        output = unet([latents, np.array([timestep]), text_embeddings, guidance])[0]
        alpha = alphas[timestep]  # how much of the image the latents hold
        beta = 1 - alpha  # and how much noise
        if v_prediction:
            pred_original_sample = np.sqrt(alpha) * latents - np.sqrt(beta) * output
        else:  # the UNet predicts the noise
            pred_original_sample = (latents - np.sqrt(beta) * output) / np.sqrt(alpha)
        # The consistency boundary condition (sigma_data 0.5): at t = 0 the output is
        # the input.
        scaled = np.float32(timestep * timestep_scaling)
        c_skip = 0.25 / (scaled**2 + 0.25)
        c_out = scaled / np.sqrt(scaled**2 + 0.25)
        denoised = c_out * pred_original_sample + c_skip * latents
        if i + 1 < len(timesteps):  # noise the clean guess to the next timestep's level
            noise = rng.standard_normal(latent_shape).astype(np.float32)
            next_alpha = alphas[timesteps[i + 1]]
            latents = np.sqrt(next_alpha) * denoised + np.sqrt(1 - next_alpha) * noise
        seconds = time.perf_counter() - start
        print(f"step {i + 1}/{args.steps}: {seconds:.3f} s", file=sys.stderr)

    scaling_factor = np.float32(vae_scaling_factor(args.model_dir))
    image = vae_decoder(denoised / scaling_factor)[0][0]  # (3, height, width)
    args.output.write_bytes(png(to_pixels(image)))
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
    except (RuntimeError, OSError, ValueError) as error:  # OpenVINO, files, JSON
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
