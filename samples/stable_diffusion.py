#!/usr/bin/env python3
"""Text to image with a Stable Diffusion 1.x/2.x IR folder (`optimum-cli export openvino --task stable-diffusion`
writes one): CLIP text encoder, UNet with classifier-free guidance, diffusers' Euler scheduler in numpy, VAE, PNG.
Example: python samples/stable_diffusion.py models/sd-1.5 "a lighthouse at sunset, oil painting" --output out.png"""
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
parser.add_argument("model_dir", type=Path, help="Stable Diffusion IR folder")
parser.add_argument("prompt", nargs="?", default="a lighthouse on a cliff at sunset, oil painting")
parser.add_argument("--negative-prompt", help="what to steer away from (needs --guidance-scale > 1)")
parser.add_argument("--steps", type=int, default=20, help="denoising steps, >= 1")
parser.add_argument("--guidance-scale", type=float, default=7.5, help="> 1: classifier-free guidance; 1: none")
parser.add_argument("--seed", type=int, default=42, help="seed of the initial latents (numpy default_rng)")
parser.add_argument("--width", type=int, default=512, help="in pixels, a positive multiple of 8")
parser.add_argument("--height", type=int, default=512, help="in pixels, a positive multiple of 8")
parser.add_argument("--output", type=Path, default=Path("image.png"), help="PNG file to write")
parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO for the three networks")
parser.add_argument("--f32", action="store_true", help="compute in f32: exact parity with diffusers")
args = parser.parse_args()
missing = [args.model_dir / name for name in FILES if not (args.model_dir / name).is_file()] + [None]
for error, bad in ((f"no {missing[0]}: run optimum-cli export openvino --task stable-diffusion", missing[0]),
                   ("--width and --height must be positive multiples of 8", min(args.width, args.height) < 8
                    or args.width % 8 or args.height % 8), ("--steps must be at least 1", args.steps < 1),
                   ("--negative-prompt needs --guidance-scale > 1", args.negative_prompt and args.guidance_scale <= 1),
                   (f"no folder for --output {args.output}", not args.output.resolve().parent.is_dir())):
    if bad:
        parser.error(error)

# Static shapes compile faster kernels than dynamic ones. With guidance the batch is (negative or empty prompt, prompt).
core, batch, latent_shape = ov.Core(), 2 if args.guidance_scale > 1 else 1, [1, 4, args.height // 8, args.width // 8]
tokenizer_ir, text_encoder, unet, vae_decoder = (core.read_model(args.model_dir / name) for name in FILES[:4])
text_encoder.reshape({"input_ids": [batch, TEXT_POSITIONS]})
vae_decoder.reshape({"latent_sample": latent_shape})
unet.input("timestep").get_node().set_element_type(ov.Type.f32)  # linspace spacing makes fractional timesteps
unet.reshape({"sample": [batch, *latent_shape[1:]], "timestep": [batch],
              "encoder_hidden_states": text_encoder.output(0).partial_shape})  # (batch, 77, hidden)
hints = {"INFERENCE_PRECISION_HINT": "f32"} if args.f32 else {}
text_encoder, unet, vae_decoder = (core.compile_model(m, args.device, hints) for m in (text_encoder, unet, vae_decoder))
tokenizer = core.compile_model(tokenizer_ir, "CPU")  # string operations run on the CPU only
input_ids = np.full((batch, TEXT_POSITIONS), tokenizer_ir.get_rt_info()["pad_token_id"].astype(int))
for row, text in enumerate([args.negative_prompt or "", args.prompt][-batch:]):
    ids = tokenizer([text])["input_ids"][0]  # one text a call: a batch of only empty strings comes back as one row
    input_ids[row, :len(ids)] = np.append(ids[:-1][:TEXT_POSITIONS - 1], ids[-1])  # too long: cut before EOS, as HF
text_embeddings = text_encoder(input_ids)[0]  # (batch, 77, hidden)

# diffusers' EulerDiscreteScheduler from scheduler_config.json: timesteps, and their noise levels (sigmas).
scheduler = json.loads((args.model_dir / FILES[4]).read_text())
n, spacing = scheduler["num_train_timesteps"], scheduler.get("timestep_spacing", "linspace")
root = 0.5 if scheduler["beta_schedule"] == "scaled_linear" else 1  # scaled_linear: the betas' roots are linear
betas = np.linspace(scheduler["beta_start"] ** root, scheduler["beta_end"] ** root, n, dtype=np.float32) ** (1 / root)
alphas_cumprod = np.cumprod(1 - betas, dtype=np.float32)  # how much of the image is left after t noising steps
timesteps = {"linspace": np.linspace(0, n - 1, args.steps)[::-1],
             "leading": np.arange(args.steps)[::-1] * (n // args.steps) + scheduler.get("steps_offset", 0),
             "trailing": np.arange(n, 0, -n / args.steps).round() - 1}[spacing].astype(np.float32)
sigmas = np.interp(timesteps, range(n), ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5)  # between the trained ones
sigmas = np.append(sigmas, 0).astype(np.float32)  # and last 0: the clean image
# Reproducible from the seed: these latents at the first noise level ("leading" adds the image's unit variance).
latents = np.random.default_rng(args.seed).standard_normal(latent_shape).astype(np.float32)
latents *= np.sqrt(sigmas[0] ** 2 + 1) if spacing == "leading" else sigmas[0]
for i, (timestep, sigma) in enumerate(zip(timesteps, sigmas[:-1])):
    start = time.perf_counter()
    unet_input = np.repeat(latents / np.sqrt(sigma ** 2 + 1), batch, axis=0)  # to the unit variance it was trained on
    noise = unet([unet_input, np.full(batch, timestep), text_embeddings])[0]  # (batch, 4, h / 8, w / 8)
    noise = noise[:1] + np.float32(args.guidance_scale) * (noise[1:] - noise[:1]) if batch == 2 else noise
    # Euler: predict the clean latents (from the noise, or from v as SD 2.x predicts), step to the next sigma.
    denoised = (noise * (-sigma / np.sqrt(sigma ** 2 + 1)) + latents / (sigma ** 2 + 1)
                if scheduler.get("prediction_type") == "v_prediction" else latents - sigma * noise)
    latents = latents + (latents - denoised) / sigma * (sigmas[i + 1] - sigma)
    print(f"step {i + 1}/{args.steps}: {time.perf_counter() - start:.3f} s", file=sys.stderr)

vae_config = args.model_dir / "vae_decoder" / "config.json"  # SD 1.x and 2.x latents were scaled by 0.18215
scale = json.loads(vae_config.read_text()).get("scaling_factor", 0.18215) if vae_config.is_file() else 0.18215
image = vae_decoder(latents / np.float32(scale))[0][0]  # (3, height, width) in [-1, 1]
args.output.write_bytes(png(np.round(np.clip(image / 2 + 0.5, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)))
print(f"wrote {args.output}", file=sys.stderr)
