#!/usr/bin/env python3
"""Text to image with a Stable Diffusion 1.x/2.x IR folder, written as a PNG.

The CLIP text encoder reads the prompt, the UNet predicts the noise in the latents
with classifier-free guidance, diffusers' Euler scheduler (in numpy) removes it step by
step, and the VAE decoder turns the latents into pixels. The PNG is written with the
standard library.
MODEL_DIR is what `optimum-cli export openvino --task stable-diffusion` writes.
Example: python samples/stable_diffusion.py models/sd-1.5 "a lighthouse at sunset"
See also samples/lcm.py: a Latent Consistency Model, in a few steps.
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
EXPORT_HINT = "export one with optimum-cli export openvino --task stable-diffusion"
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


def euler_timesteps(scheduler: dict, steps: int) -> np.ndarray:
    """The timesteps to denoise at, first (noisiest) first, as diffusers spaces them."""
    train_steps = scheduler["num_train_timesteps"]
    spacing = scheduler.get("timestep_spacing", "linspace")
    if spacing == "linspace":
        timesteps = np.linspace(0, train_steps - 1, steps)[::-1]
    elif spacing == "leading":
        offset = scheduler.get("steps_offset", 0)
        timesteps = np.arange(steps)[::-1] * (train_steps // steps) + offset
    else:  # trailing
        timesteps = np.arange(train_steps, 0, -train_steps / steps).round() - 1
    return timesteps.astype(np.float32)


def euler_sigmas(scheduler: dict, timesteps: np.ndarray) -> np.ndarray:
    """The noise level at each timestep (interpolated between trained ones), then 0."""
    alphas = alphas_cumprod(scheduler)
    trained_sigmas = ((1 - alphas) / alphas) ** 0.5
    sigmas = np.interp(timesteps, range(len(alphas)), trained_sigmas)
    return np.append(sigmas, 0).astype(np.float32)  # 0: the clean image


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
    parser.add_argument("model_dir", type=Path, help="Stable Diffusion IR folder")
    parser.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT)
    parser.add_argument("--negative-prompt", help="what to steer away from")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps, >= 1")
    parser.add_argument("--guidance-scale", type=float, default=7.5, help="1: none")
    parser.add_argument("--seed", type=int, default=42, help="of the first latents")
    parser.add_argument("--width", type=int, default=512, help="a multiple of 8")
    parser.add_argument("--height", type=int, default=512, help="a multiple of 8")
    parser.add_argument("--output", type=Path, default=Path("image.png"))
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as diffusers")
    args = parser.parse_args()
    if min(args.width, args.height) < 8 or args.width % 8 or args.height % 8:
        parser.error("--width and --height must be positive multiples of 8")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.negative_prompt and args.guidance_scale <= 1:
        parser.error("--negative-prompt needs --guidance-scale > 1")
    if not args.output.resolve().parent.is_dir():
        parser.error(f"no folder for --output {args.output}")

    # Created after `import openvino_tokenizers`, so that it reads the tokenizer.
    core = ov.Core()
    networks = read_image_models(core, args.model_dir)
    tokenizer, text_encoder, unet, vae_decoder = networks
    # With guidance, the UNet sees a batch of two: the negative (or empty) prompt, then
    # the prompt. Static shapes compile faster kernels than dynamic ones.
    batch = 2 if args.guidance_scale > 1 else 1
    latent_shape = [1, 4, args.height // 8, args.width // 8]
    text_encoder.reshape({"input_ids": [batch, TEXT_POSITIONS]})
    vae_decoder.reshape({"latent_sample": latent_shape})
    # Linspace spacing makes fractional timesteps: the UNet takes them as floats.
    unet.input("timestep").get_node().set_element_type(ov.Type.f32)
    unet_shapes = {"sample": [batch, *latent_shape[1:]], "timestep": [batch]}
    # (batch, 77, hidden), as the text encoder gives it
    unet_shapes["encoder_hidden_states"] = text_encoder.output(0).partial_shape
    unet.reshape(unet_shapes)
    config = {"INFERENCE_PRECISION_HINT": "f32"} if args.f32 else {}
    text_encoder = core.compile_model(text_encoder, args.device, config)
    unet = core.compile_model(unet, args.device, config)
    vae_decoder = core.compile_model(vae_decoder, args.device, config)
    pad_token_id = tokenizer.get_rt_info()["pad_token_id"].astype(int)
    # The string operations run on the CPU only, whatever --device says.
    tokenizer = core.compile_model(tokenizer, "CPU")

    texts = [args.negative_prompt or "", args.prompt] if batch == 2 else [args.prompt]
    input_ids = np.stack([clip_input_ids(tokenizer, t, pad_token_id) for t in texts])
    text_embeddings = text_encoder(input_ids)[0]  # (batch, 77, hidden)

    # diffusers' EulerDiscreteScheduler, configured by scheduler_config.json.
    scheduler = json.loads((args.model_dir / IMAGE_FILES[4]).read_text())
    timesteps = euler_timesteps(scheduler, args.steps)
    sigmas = euler_sigmas(scheduler, timesteps)
    # The seed's random latents, scaled to the first noise level ("leading" spacing
    # also counts the image's own unit variance).
    rng = np.random.default_rng(args.seed)
    latents = rng.standard_normal(latent_shape).astype(np.float32)
    leading = scheduler.get("timestep_spacing", "linspace") == "leading"
    latents *= np.sqrt(sigmas[0] ** 2 + 1) if leading else sigmas[0]
    v_prediction = scheduler.get("prediction_type") == "v_prediction"  # SD 2.x
    for i, timestep in enumerate(timesteps):
        start = time.perf_counter()
        sigma = sigmas[i]
        # The UNet was trained on inputs of unit variance.
        scaled = latents / np.sqrt(sigma**2 + 1)
        unet_input = np.repeat(scaled, batch, axis=0)
        output = unet([unet_input, np.full(batch, timestep), text_embeddings])[0]
        if batch == 2:  # guidance: from the negative prompt's towards the prompt's
            unconditional = output[:1]
            guidance = np.float32(args.guidance_scale)
            output = unconditional + guidance * (output[1:] - unconditional)
        # Euler: predict the clean latents, then step to the next noise level.
        if v_prediction:
            pred_original_sample = output * (-sigma / np.sqrt(sigma**2 + 1)) + (
                latents / (sigma**2 + 1)
            )
        else:  # the UNet predicts the noise
            pred_original_sample = latents - sigma * output
        derivative = (latents - pred_original_sample) / sigma
        dt = sigmas[i + 1] - sigma
        latents = latents + derivative * dt
        seconds = time.perf_counter() - start
        print(f"step {i + 1}/{args.steps}: {seconds:.3f} s", file=sys.stderr)

    scaling_factor = np.float32(vae_scaling_factor(args.model_dir))
    image = vae_decoder(latents / scaling_factor)[0][0]  # (3, height, width)
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
