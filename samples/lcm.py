#!/usr/bin/env python3
"""Text to image in a few steps with a Latent Consistency Model IR folder (`optimum-cli export openvino --task
latent-consistency` writes one): the guidance scale goes into the UNet as an embedding (no second batch row), diffusers'
LCM scheduler in numpy, fresh noise between steps from the seeded generator, VAE, PNG. Example:
python samples/lcm.py models/lcm-dreamshaper-v7 "a lighthouse at sunset, oil painting" --output out.png"""
import argparse
import json
import signal
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the string operations the tokenizer IR is made of

TEXT_POSITIONS = 77  # CLIP's context: every prompt is padded or truncated to it
FILES = ("tokenizer/openvino_tokenizer.xml", "text_encoder/openvino_model.xml", "unet/openvino_model.xml",
         "vae_decoder/openvino_model.xml", "scheduler/scheduler_config.json")


def png(image: np.ndarray) -> bytes:
    """(height, width, 3) uint8 -> an RGB PNG file: signature, then IHDR, IDAT (zlib of filter-0 rows), IEND chunks."""
    chunks = ((b"IHDR", struct.pack(">IIBBBBB", image.shape[1], image.shape[0], 8, 2, 0, 0, 0)),
              (b"IDAT", zlib.compress(b"".join(b"\x00" + row.tobytes() for row in image))), (b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(struct.pack(">I", len(data)) + kind + data +
                                           struct.pack(">I", zlib.crc32(kind + data)) for kind, data in chunks)


signal.signal(signal.SIGINT, lambda signum, frame: sys.exit(130))  # Ctrl-C: exit code 130, no traceback
parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)  # errors: one line, no usage
parser.add_argument("model_dir", type=Path, help="Latent Consistency Model IR folder")
parser.add_argument("prompt", nargs="?", default="a lighthouse on a cliff at sunset, oil painting")
parser.add_argument("--steps", type=int, default=4, help="denoising steps, 1 to original_inference_steps (50)")
parser.add_argument("--guidance-scale", type=float, default=8.0, help="how closely to follow the prompt")
parser.add_argument("--seed", type=int, default=42, help="seed of the latents and of each step's noise (numpy)")
parser.add_argument("--width", type=int, default=512, help="in pixels, a positive multiple of 8")
parser.add_argument("--height", type=int, default=512, help="in pixels, a positive multiple of 8")
parser.add_argument("--output", type=Path, default=Path("image.png"), help="PNG file to write")
parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO for the three networks")
parser.add_argument("--f32", action="store_true", help="compute in f32: exact parity with diffusers")
args = parser.parse_args()
missing = [args.model_dir / name for name in FILES if not (args.model_dir / name).is_file()] + [None]
scheduler = json.loads((args.model_dir / FILES[4]).read_text()) if missing[0] is None else {}
original_steps = scheduler.get("original_inference_steps", 50)  # the distilled schedule's steps, to pick from
for error, bad in ((f"no {missing[0]}: run optimum-cli export openvino --task latent-consistency", missing[0]),
                   ("--width and --height must be positive multiples of 8", min(args.width, args.height) < 8
                    or args.width % 8 or args.height % 8),
                   (f"--steps must be 1 to {original_steps}", not 1 <= args.steps <= original_steps),
                   (f"no folder for --output {args.output}", not args.output.resolve().parent.is_dir())):
    if bad:
        parser.error(error)

# Static shapes compile faster kernels than dynamic ones. One batch row: guidance is an input, not a second row.
core, latent_shape = ov.Core(), [1, 4, args.height // 8, args.width // 8]
tokenizer_ir, text_encoder, unet, vae_decoder = (core.read_model(args.model_dir / name) for name in FILES[:4])
text_encoder.reshape({"input_ids": [1, TEXT_POSITIONS]})
vae_decoder.reshape({"latent_sample": latent_shape})
guidance_size = unet.input("timestep_cond").partial_shape[1].get_length()
unet.reshape({"sample": latent_shape, "timestep": [1], "timestep_cond": [1, guidance_size],
              "encoder_hidden_states": text_encoder.output(0).partial_shape})  # (1, 77, hidden)
hints = {"INFERENCE_PRECISION_HINT": "f32"} if args.f32 else {}
text_encoder, unet, vae_decoder = (core.compile_model(m, args.device, hints) for m in (text_encoder, unet, vae_decoder))
input_ids = np.full((1, TEXT_POSITIONS), tokenizer_ir.get_rt_info()["pad_token_id"].astype(int))
ids = core.compile_model(tokenizer_ir, "CPU")([args.prompt])["input_ids"][0]  # string operations: CPU only
input_ids[0, :len(ids)] = np.append(ids[:-1][:TEXT_POSITIONS - 1], ids[-1])  # too long: cut before EOS, as HF
text_embeddings = text_encoder(input_ids)[0]  # (1, 77, hidden)
# The guidance scale as the UNet was distilled to take it: a sinusoidal embedding of (scale - 1) * 1000.
angles = np.float32((args.guidance_scale - 1) * 1000) * np.exp(
    np.arange(guidance_size // 2, dtype=np.float32) * -np.float32(np.log(10000) / (guidance_size // 2 - 1)))
guidance = np.pad(np.concatenate([np.sin(angles), np.cos(angles)]), (0, guidance_size % 2))[None]  # (1, size)

# diffusers' LCMScheduler from scheduler_config.json: the steps are picked evenly from the distilled schedule.
n, root = scheduler["num_train_timesteps"], 0.5 if scheduler["beta_schedule"] == "scaled_linear" else 1  # or linear
betas = np.linspace(scheduler["beta_start"] ** root, scheduler["beta_end"] ** root, n, dtype=np.float32) ** (1 / root)
alphas_cumprod = np.cumprod(1 - betas, dtype=np.float32)  # how much of the image is left after t noising steps
distilled = (np.arange(1, original_steps + 1) * (n // original_steps) - 1)[::-1]
timesteps = distilled[np.linspace(0, original_steps, args.steps, endpoint=False).astype(np.int64)]
rng = np.random.default_rng(args.seed)  # reproducible: the initial latents, then each step's noise, in that order
latents = rng.standard_normal(latent_shape).astype(np.float32)
for i, timestep in enumerate(timesteps):
    start = time.perf_counter()
    output = unet([latents, np.array([timestep]), text_embeddings, guidance])[0]  # (1, 4, h / 8, w / 8)
    alpha, beta = alphas_cumprod[timestep], 1 - alphas_cumprod[timestep]
    clean = ((latents - np.sqrt(beta) * output) / np.sqrt(alpha) if scheduler.get("prediction_type") != "v_prediction"
             else np.sqrt(alpha) * latents - np.sqrt(beta) * output)  # the image the model sees under the noise
    scaled = np.float32(timestep * scheduler.get("timestep_scaling", 10.0))  # boundary condition: t = 0 gives the input
    denoised = scaled / np.sqrt(scaled ** 2 + 0.25) * clean + 0.25 / (scaled ** 2 + 0.25) * latents  # sigma_data 0.5
    if i + 1 < len(timesteps):  # noise the clean guess again, to the next (lower) timestep's level
        noise, next_alpha = rng.standard_normal(latent_shape).astype(np.float32), alphas_cumprod[timesteps[i + 1]]
        latents = np.sqrt(next_alpha) * denoised + np.sqrt(1 - next_alpha) * noise
    print(f"step {i + 1}/{args.steps}: {time.perf_counter() - start:.3f} s", file=sys.stderr)

vae_config = args.model_dir / "vae_decoder" / "config.json"  # SD 1.x and 2.x latents were scaled by 0.18215
scale = json.loads(vae_config.read_text()).get("scaling_factor", 0.18215) if vae_config.is_file() else 0.18215
image = vae_decoder(denoised / np.float32(scale))[0][0]  # (3, height, width) in [-1, 1]
args.output.write_bytes(png(np.round(np.clip(image / 2 + 0.5, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)))
print(f"wrote {args.output}", file=sys.stderr)
