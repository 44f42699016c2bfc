#!/usr/bin/env python3
"""Chat about a picture with a LLaVA IR folder: a PNG and questions in, answers out.

The picture becomes pixel values as transformers' image processor makes them (Pillow's
bicubic resize, reproduced here exactly), the vision IR turns them into image
features already in the language model's embedding space, and those rows replace the
image token's rows of the prompt's text embeddings; the language IR then answers
greedily, fed `inputs_embeds` instead of ids, with the conversation in its KV cache.
Questions come one a line on stdin until EOF (a blank line is skipped): the first is
asked about the picture, later ones continue the conversation; each turn feeds only
what the templated history adds. Answers stream to stdout; a stats line per turn goes
to stderr (the first also says how long the picture took).
MODEL_DIR is what `optimum-cli export openvino --task image-text-to-text` writes for a
LLaVA model (llava-1.5, llava-interleave-qwen, BakLLaVA). IMAGE is an 8-bit PNG.
Example: echo "What is in the picture?" | python samples/visual_language_chat.py
models/llava-interleave-0.5b photo.png
"""

import argparse
import json
import re
import struct
import sys
import time
import zlib
from pathlib import Path

import jinja2.ext
import jinja2.sandbox
import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models/llava-interleave-0.5b"
EXPORT_HINT = "export one with optimum-cli export openvino --task image-text-to-text"
# The export's IRs, openvino_{name}_model.xml: language, text embeddings, vision.
VLM_IRS = ("language", "text_embeddings", "vision_embeddings")
TEXT_FILES = ("openvino_tokenizer.xml", "openvino_detokenizer.xml", "config.json")
# --f32: compute and cache in f32, as the references do (the CPU's default may be bf16
# with an f16 or u8 cache), and quantize no activations on the fly (int4 and int8
# weights do by default): the numbers then equal the references'.
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
F32_CONFIG["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"
FIXED_POINT = 1 << 22  # Pillow's 8-bit resize weighs pixels in 22-bit fixed point
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bytes per pixel of an 8-bit PNG, by colour type: gray, RGB, palette index,
# gray + alpha, RGBA.
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def read_vlm(core: ov.Core, model_dir: Path):
    """The folder's language, text embeddings and vision IRs (read, not compiled),
    tokenizer and detokenizer, the ids of the tokens that end an answer, the chat
    template and the image token's id. What is wrong with the folder is raised,
    for main's guard to print in one line."""
    names = [f"openvino_{name}_model.xml" for name in VLM_IRS] + list(TEXT_FILES)
    for name in names:
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"no {model_dir / name}: {EXPORT_HINT}")
    config = json.loads((model_dir / "config.json").read_text())
    # Other families add what this loop lacks (Qwen2-VL: a merger IR and 3-D
    # position_ids; LLaVA-NeXT: tiles of the picture).
    if config.get("model_type") != "llava":
        raise ValueError(f"{model_dir}: a {config.get('model_type')} model, not LLaVA")
    models = [core.read_model(model_dir / name) for name in names[:3]]
    tokenizer_model = core.read_model(model_dir / "openvino_tokenizer.xml")
    # generation_config.json may list several end tokens, as an id or a list.
    config_path = model_dir / "generation_config.json"
    generation = json.loads(config_path.read_text()) if config_path.is_file() else {}
    stop_token_ids = set(np.atleast_1d(generation.get("eos_token_id", [])).tolist())
    if "eos_token_id" in tokenizer_model.get_rt_info():
        stop_token_ids.add(tokenizer_model.get_rt_info()["eos_token_id"].astype(int))
    # The string operations run on the CPU only, whatever --device says.
    tokenizer = core.compile_model(tokenizer_model, "CPU")
    detokenizer = core.compile_model(model_dir / "openvino_detokenizer.xml", "CPU")
    if "chat_template" not in tokenizer_model.get_rt_info():
        raise ValueError(f"{model_dir} has no chat_template: no chat model")
    chat_template = tokenizer_model.get_rt_info()["chat_template"].astype(str)
    image_token_id = config["image_token_index"]
    return models, tokenizer, detokenizer, stop_token_ids, chat_template, image_token_id


def read_image_settings(model_dir: Path) -> dict:
    """The image processor's settings: preprocessor_config.json, or (transformers 5)
    processor_config.json's image_processor."""
    path = model_dir / "preprocessor_config.json"
    if path.is_file():
        return json.loads(path.read_text())
    processor = json.loads((model_dir / "processor_config.json").read_text())
    return processor["image_processor"]


def resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) weights of Pillow's 8-bit bicubic resize along one axis, in
    its 22-bit fixed point: each output pixel's kernel, widened by the scale when
    shrinking, cut to the pixels Pillow reads, normalized, rounded half away from
    zero."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 2.0 * filter_scale  # the kernel reaches 2 pixels, or 2 x scale
    centers = (np.arange(out_size) + 0.5) * scale
    first = np.maximum((centers - support + 0.5).astype(int), 0)[:, None]
    last = np.minimum((centers + support + 0.5).astype(int), in_size)[:, None]
    pixels = np.arange(in_size)[None]
    x = np.abs((pixels - centers[:, None] + 0.5) * (1.0 / filter_scale))
    # Pillow's bicubic kernel (a = -0.5), in its order of operations.
    near = ((-0.5 + 2.0) * x - (-0.5 + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * -0.5
    kernel = np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))
    kernel = np.where((pixels >= first) & (pixels < last), kernel, 0.0)
    kernel = kernel / kernel.sum(axis=1, keepdims=True)
    # Rounded half away from zero.
    return np.trunc(kernel * FIXED_POINT + np.copysign(0.5, kernel))


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8, equal to Pillow's
    `Image.resize((width, height), Image.BICUBIC)`, which transformers' image
    processors call.

    A float bicubic in numpy differs from Pillow by up to 19 levels on a few percent of
    the pixels, enough to move the answer's logits. Pillow weighs pixels in 22-bit
    fixed point, resizes the width first, rounds and clips that to 8 bits, then
    resizes the height (Pillow 13 resizes the height first when it shrinks more than
    twice the width does). The sums are integers below 2**53, so float64 matrix
    products hold them exactly."""
    if image.shape[0] - height > max(2 * (image.shape[1] - width), 0):
        return resize(image.transpose(1, 0, 2), width, height).transpose(1, 0, 2)
    across = resize_weights(image.shape[1], width) @ image.astype(np.float64)
    across = np.clip(np.floor((across + FIXED_POINT // 2) / FIXED_POINT), 0, 255)
    down = resize_weights(image.shape[0], height) @ across.reshape(image.shape[0], -1)
    down = np.clip(np.floor((down + FIXED_POINT // 2) / FIXED_POINT), 0, 255)
    return down.reshape(height, width, 3).astype(np.uint8)


def paeth(left: int, up: int, upper_left: int) -> int:
    """Of the three neighbours, the one nearest to left + up - upper_left."""
    estimate = left + up - upper_left
    distances = [abs(estimate - left), abs(estimate - up), abs(estimate - upper_left)]
    return (left, up, upper_left)[distances.index(min(distances))]


def unfilter(rows: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the filter each PNG row starts with: (height, 1 + bytes) -> (height, bytes).

    A filter stores each byte minus a guess (modulo 256) made from the rebuilt byte bpp
    to its left and the bytes above: 0 no guess, 1 left, 2 above, 3 their mean, 4
    Paeth's pick. Each byte needs the one just rebuilt, so it goes byte by byte."""
    above = [0] * (rows.shape[1] - 1)  # zeros above the first row
    pixels = []
    for row in rows.tolist():
        kind, row = row[0], row[1:]
        for x, value in enumerate(row):
            left = row[x - bpp] if x >= bpp else 0
            upper_left = above[x - bpp] if x >= bpp else 0
            guesses = [0, left, above[x], (left + above[x]) // 2]
            guesses.append(paeth(left, above[x], upper_left))
            row[x] = (value + guesses[kind]) % 256
        pixels.append(row)
        above = row
    return np.array(pixels, dtype=np.uint8)


def read_png(path: Path) -> np.ndarray:
    """An 8-bit non-interlaced PNG -> (height, width, 3) uint8, as PIL's convert("RGB")
    makes it: gray repeated, palette looked up, alpha dropped. Any other file is
    raised, for main's guard to print in one line.

    A PNG is a signature and chunks (length, type, data, CRC): IHDR says the size and
    the pixel format, PLTE holds a palette, the IDATs hold the zlib-compressed rows."""
    if not path.is_file():
        raise FileNotFoundError(f"no image {path}")
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG: convert it to one (8-bit RGB)")
    chunks = {}  # chunk type -> its data, the IDATs joined
    offset = len(PNG_SIGNATURE)
    while offset + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        chunks[kind] = chunks.get(kind, b"") + data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    if offset != len(data) or b"IEND" not in chunks:
        raise ValueError(f"{path} is cut short: save it again as a PNG")
    if len(chunks.get(b"IHDR", b"")) != 13:
        raise ValueError(f"{path} is damaged: save it again as a PNG")
    header = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    width, height, depth, colour, _, _, interlaced = header
    if depth != 8 or colour not in PNG_CHANNELS or interlaced:
        raise ValueError(f"{path} is not an 8-bit non-interlaced PNG: convert it")
    bpp = PNG_CHANNELS[colour]
    try:
        rows = np.frombuffer(zlib.decompress(chunks.get(b"IDAT", b"")), dtype=np.uint8)
    except zlib.error:
        raise ValueError(f"{path} is damaged: save it again as a PNG")
    if rows.size != height * (1 + width * bpp) or (rows[:: 1 + width * bpp] > 4).any():
        raise ValueError(f"{path} is damaged: save it again as a PNG")
    pixels = unfilter(rows.reshape(height, -1), bpp).reshape(height, width, bpp)
    if colour == 3:
        palette = np.frombuffer(chunks.get(b"PLTE", b""), dtype=np.uint8)
        if pixels.max() >= len(palette) // 3:
            raise ValueError(f"{path} is damaged: save it again as a PNG")
        return palette.reshape(-1, 3)[pixels[..., 0]]
    if bpp <= 2:  # gray, with or without alpha
        return np.repeat(pixels[..., :1], 3, axis=2)
    return pixels[..., :3]


def keep_last_logits(model: ov.Model, positions: int) -> None:
    """Compute logits (batch, positions, vocab) for the last positions only.

    A long prompt would cost (prompt_len, vocab) logits that nobody reads: slicing the
    LM head's input (each position's hidden state, which the MatMul by the (vocab,
    hidden) matrix turns into logits) before compiling removes that work. Element-wise
    operations may follow the MatMul (Gemma 2 caps the logits: divide, tanh,
    multiply); they work position by position."""
    lm_head = model.output("logits").get_node()
    while lm_head.get_type_name() != "MatMul":
        lm_head = lm_head.input_value(0).get_node()
    hidden = lm_head.input_value(0)  # (batch, seq_len, hidden)
    # From -positions to the end (the largest int64), a step of 1, along axis 1.
    last = ov.opset13.slice(hidden, [-positions], [np.iinfo(np.int64).max], [1], [1])
    lm_head.input(0).replace_source_output(last.output(0))


def decode(detokenizer: ov.CompiledModel, tokens: list[int]) -> str:
    """The text of some token ids."""
    return str(detokenizer(np.array([tokens], dtype=np.int64))["string_output"][0])


def stream(detokenizer: ov.CompiledModel, tokens: list[int], printed: str) -> str:
    """Print what the tokens' text adds to `printed` (the text so far); return the text.

    All tokens are decoded again each time: decoded alone, a token may lose its leading
    space. A text ending in U+FFFD ends inside a UTF-8 character whose other bytes come
    with the next token, so it waits."""
    text = decode(detokenizer, tokens)
    if text.endswith("\ufffd"):
        return printed
    print(text[len(printed) :], end="", flush=True)
    return text


def pixel_values(image: np.ndarray, settings: dict) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, height, width) float32, as transformers' image
    processor makes them: resized (the shortest edge to a size, the other in
    proportion; or to height x width), center cropped, rescaled in float64 then
    float32, normalized."""
    # 3: PIL's number for bicubic, as image processor configs write `resample`.
    if settings.get("resample", 3) != 3:
        raise ValueError(f"resample {settings['resample']}: only bicubic (3) is done")
    if settings.get("do_resize", True):
        size = settings["size"]
        if "shortest_edge" in size:
            # transformers: int(shortest_edge * long / short), in this order.
            height = int(size["shortest_edge"] * image.shape[0] / min(image.shape[:2]))
            width = int(size["shortest_edge"] * image.shape[1] / min(image.shape[:2]))
        else:
            height, width = size["height"], size["width"]
        image = resize(image, height, width)
    if settings.get("do_center_crop"):
        crop = settings["crop_size"]
        top = (image.shape[0] - crop["height"]) // 2
        left = (image.shape[1] - crop["width"]) // 2
        image = image[top : top + crop["height"], left : left + crop["width"]]
    pixels = (image * np.float64(settings["rescale_factor"])).astype(np.float32)
    mean = np.array(settings["image_mean"], dtype=np.float32)
    pixels = (pixels - mean) / np.array(settings["image_std"], dtype=np.float32)
    return pixels.transpose(2, 0, 1)[None]


def render_messages(chat_template: str, messages: list[dict]) -> str:
    """The conversation as the model was trained to read it, ready for its answer."""
    # The settings transformers renders chat templates with.
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    # llava-hf's templates mark an answer's text {% generation %} for training masks,
    # a tag of transformers' own: the text is kept, the tags go.
    chat_template = re.sub(r"{%-?\s*(end)?generation\s*-?%}", "", chat_template)
    template = environment.from_string(chat_template)
    return template.render(messages=messages, add_generation_prompt=True)


def language_inputs(request: ov.InferRequest, embeds: np.ndarray, cached: int) -> dict:
    """Inputs that feed EMBEDS (1, new tokens, hidden) after the CACHED tokens whose
    keys and values the KV cache holds: those the request's model takes."""
    length = cached + embeds.shape[1]
    inputs = {
        "inputs_embeds": embeds,  # (1, new tokens, hidden)
        "attention_mask": np.ones((1, length), dtype=np.int64),
        "position_ids": np.arange(cached, length, dtype=np.int64)[None],
        "beam_idx": np.zeros(1, dtype=np.int32),  # batch row 0 continues cache row 0
    }
    return {port.any_name: inputs[port.any_name] for port in request.model_inputs}


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("image", type=Path, help="an 8-bit PNG")
    parser.add_argument("--max-new-tokens", type=int, default=200, help=">= 1 a turn")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    vlm = read_vlm(core, args.model_dir)
    models, tokenizer, detokenizer, stop_token_ids, chat_template, image_token_id = vlm
    image = read_png(args.image)  # (height, width, 3) uint8
    keep_last_logits(models[0], 1)
    # The export asks for an f16 KV cache in its rt_info; --f32 overrides it too.
    config = F32_CONFIG if args.f32 else {}
    compiled = [core.compile_model(m, args.device, config) for m in models]
    language, embed, vision = compiled  # the language, text embeddings, vision IRs
    request = language.create_infer_request()

    start = time.perf_counter()
    settings = read_image_settings(args.model_dir)
    features = vision(pixel_values(image, settings))[0]  # (1, image tokens, hidden)
    vision_ms = (time.perf_counter() - start) * 1000

    messages = []  # the conversation, as the chat template takes it
    cached = []  # the token ids whose keys and values the KV cache holds
    for line in sys.stdin:  # a question a line, to the end of input (Ctrl-D)
        if not line.strip():
            continue  # a blank line is no question
        start = time.perf_counter()  # the first token's time counts from the question
        # The first question shows the picture.
        content = [{"type": "image"}] if not messages else []
        content.append({"type": "text", "text": line.rstrip("\n")})
        messages.append({"role": "user", "content": content})
        ids = tokenizer([render_messages(chat_template, messages)])["input_ids"][0]
        # The template writes one image token: it becomes a row per image feature.
        ids = np.repeat(ids, np.where(ids == image_token_id, features.shape[1], 1))
        embeds = embed(ids[None])[0]  # (1, tokens, hidden)
        embeds[0, ids == image_token_id] = features[0]
        # Feed only what the cache lacks: the picture and the answers so far stay.
        # An answer whose text tokenizes otherwise parts the history from the cache:
        # then it all runs again.
        if ids[: len(cached)].tolist() != cached:
            request.reset_state()
            cached = []
        new_embeds = embeds[:, len(cached) :]

        tokens = []  # the answer's token ids
        printed = ""  # the answer's text on stdout so far
        while len(tokens) < args.max_new_tokens:
            request.start_async(language_inputs(request, new_embeds, len(cached)))
            cached = ids.tolist() + tokens
            # While the model computes the next token, print the ones before it.
            printed = stream(detokenizer, tokens, printed)
            request.wait()
            next_token = int(request.get_tensor("logits").data[0, -1].argmax())
            if not tokens:
                first_token_seconds = time.perf_counter() - start
            if next_token in stop_token_ids:
                break
            tokens.append(next_token)
            new_embeds = embed(np.array([[next_token]], dtype=np.int64))[0]
        answer = decode(detokenizer, tokens)
        print(answer[len(printed) :], flush=True)
        messages.append({"role": "assistant", "content": [{"type": "text"}]})
        messages[-1]["content"][0]["text"] = answer

        # The tokens after the first, in the time after it.
        speed = len(tokens[1:]) / (time.perf_counter() - start - first_token_seconds)
        stats = f"{len(ids)} prompt tokens, {len(tokens)} new tokens, first in "
        stats += f"{first_token_seconds * 1000:.0f} ms, then {speed:.1f} tokens/s"
        if len(messages) == 2:
            stats += f"; the picture: {features.shape[1]} tokens in {vision_ms:.0f} ms"
        print(stats, file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
    except (RuntimeError, OSError, ValueError) as error:  # OpenVINO, files, JSON
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
