#!/usr/bin/env python3
"""Plant small bugs in a copy of samples/, one at a time, and see which test catches each.

Each bug breaks one promised behaviour. For each, the script copies samples/ into a
temporary checkout (models/ linked, so defaults resolve), plants the bug, runs the
tests that should catch it with SAMPLES_DIR pointing at the copy (tests/conftest.py
runs the samples from there): the fast tier first, then, if the fast tier misses it,
the reference tier. It prints a Markdown table: bug, the tier and test that caught it
(or "not caught"), seconds. The repository's own samples are never touched.
Needs tests/requirements.txt for the reference tier. Takes about half an hour.
Example: python tests/mutation_check.py --only beam
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent


class Bug(NamedTuple):
    name: str  # what breaks
    sample: str  # the file it is planted in
    old: str  # text of the sample, found exactly once
    new: str  # what replaces it
    tests: list[str]  # pytest paths or node ids that should catch it


BUGS = [
    Bug(
        "stops only on the tokenizer's EOS, not generation_config's",
        "greedy.py",
        'stop_token_ids = set(np.atleast_1d(config.get("eos_token_id", [])).tolist())',
        "stop_token_ids = set()",
        ["tests/test_families.py"],
    ),
    Bug(
        "inputs the IR lacks are fed (BLOOM and MPT: position_ids)",
        "greedy.py",
        "    return {port.any_name: inputs[port.any_name] for port in request.model_inputs}",
        "    return inputs",
        ["tests/test_families.py"],
    ),
    Bug(
        "LM-head slice stops at Gemma 2's softcapping",
        "greedy.py",
        '    while lm_head.get_type_name() != "MatMul":\n'
        "        lm_head = lm_head.input_value(0).get_node()",
        "    lm_head = lm_head.input_value(0).get_node()\n"
        '    if lm_head.get_type_name() != "MatMul":\n'
        "        return",
        ["tests/test_families.py"],
    ),
    Bug(
        "a chat turn that fills the context is not refused",
        "chat.py",
        "        if max_new_tokens < 1:",
        "        if max_new_tokens < -(10**9):",
        ["tests/test_chat.py"],
    ),
    Bug(
        "a lone prompt is taken as MODEL_DIR",
        "greedy.py",
        '    if " " in str(args.model_dir) and not args.model_dir.is_dir():',
        "    if False:",
        ["tests/test_greedy.py"],
    ),
    Bug(
        "streaming prints a cut UTF-8 character",
        "greedy.py",
        '    if text.endswith("\\ufffd"):\n        return printed',
        '    if text.endswith("never"):\n        return printed',
        ["tests/test_greedy.py"],
    ),
    Bug(
        "Ctrl-C ends with a traceback",
        "throughput.py",
        "    try:\n        main()\n    except KeyboardInterrupt:\n        sys.exit(130)",
        "    main()\n    if False:\n        sys.exit(130)",
        [
            "tests/test_errors.py::test_ctrl_c_while_generating_exits_130_without_traceback"
        ],
    ),
    Bug(
        "a broken generation_config.json ends with a traceback",
        "multinomial.py",
        "    except (RuntimeError, OSError, ValueError) as error:",
        "    except (RuntimeError, OSError) as error:",
        ["tests/test_errors.py"],
    ),
    Bug(
        "chat template without the special tokens' strings",
        "chat.py",
        "messages=messages, add_generation_prompt=True, **special_tokens",
        "messages=messages, add_generation_prompt=True",
        ["tests/test_families.py"],
    ),
    Bug(
        "chat keeps the tokenizer's added BOS (two BOS)",
        "chat.py",
        "        if history_ids[: len(added_ids)] == added_ids:",
        "        if False:",
        ["tests/test_families.py"],
    ),
    Bug(
        "chat re-runs the whole history every turn",
        "chat.py",
        "        common = shared_prefix(cached, history_ids)",
        "        common = 0",
        ["tests/test_chat.py", "tests/test_families.py"],
    ),
    Bug(
        "beam search: length penalty ignored",
        "beam_search.py",
        "normalized = score / length**args.length_penalty",
        "normalized = score / length",
        ["tests/test_beam_search.py"],
    ),
    Bug(
        "beam search: no-repeat n-grams not banned",
        "beam_search.py",
        "    if n == 0:\n        return []",
        "    if True:\n        return []",
        ["tests/test_beam_search.py"],
    ),
    Bug(
        "diverse beam search: diversity penalty's sign flipped",
        "beam_search.py",
        "    scores -= args.diversity_penalty * picked",
        "    scores += args.diversity_penalty * picked",
        ["tests/test_beam_search.py", "tests/test_reference.py"],
    ),
    Bug(
        "diverse beam search: picks never counted",
        "beam_search.py",
        "    np.add.at(picked, [beam.tokens[-1] for beam in running], 1)",
        "    np.add.at(picked, [], 1)",
        ["tests/test_beam_search.py", "tests/test_reference.py"],
    ),
    Bug(
        "sampling ignores --temperature",
        "multinomial.py",
        "scores = logits.astype(np.float64) / args.temperature",
        "scores = logits.astype(np.float64)",
        ["tests/test_multinomial.py", "tests/test_reference.py"],
    ),
    Bug(
        "top-p drops the token that crosses p",
        "multinomial.py",
        "    before = np.cumsum(probs) - probs",
        "    before = np.cumsum(probs)",
        ["tests/test_multinomial.py", "tests/test_reference.py"],
    ),
    Bug(
        "top-k keeps one candidate too many",
        "multinomial.py",
        "    if 0 < args.top_k < len(scores):",
        "    if 0 < args.top_k < len(scores) - 1:\n        args.top_k += 1",
        ["tests/test_multinomial.py", "tests/test_reference.py"],
    ),
    Bug(
        "prompt lookup trims its cache one token short",
        "prompt_lookup.py",
        "    trim_cache(request, len(tokens) - 1)",
        "    trim_cache(request, len(tokens))",
        ["tests/test_assisted.py"],
    ),
    Bug(
        "prompt lookup takes the earliest n-gram, not the latest",
        "prompt_lookup.py",
        "        for start in range(len(tokens) - n - 1, -1, -1):",
        "        for start in range(0, len(tokens) - n):",
        ["tests/test_assisted.py"],
    ),
    Bug(
        "prompt lookup never guesses",
        "prompt_lookup.py",
        "def guess(tokens: list[int]) -> list[int]:\n",
        "def guess(tokens: list[int]) -> list[int]:\n    return []\n",
        ["tests/test_assisted.py"],
    ),
    Bug(
        "speculative decoding: the draft's cache is not trimmed",
        "speculative_decoding.py",
        "        trim_cache(draft_request, draft_cached)",
        "        draft_cached = draft_cached",
        ["tests/test_assisted.py"],
    ),
    Bug(
        "speculative decoding: the draft's cache keeps one rejected guess",
        "speculative_decoding.py",
        "        draft_cached = min(draft_cached, len(tokens) - 1)",
        "        draft_cached = min(draft_cached, len(tokens))",
        ["tests/test_assisted.py"],
    ),
    Bug(
        "speculative decoding: a fixed draft size",
        "speculative_decoding.py",
        "            draft_size = min(draft_size + 2, MAX_DRAFT)",
        "            draft_size = draft_size",
        ["tests/test_assisted.py"],
    ),
    Bug(
        "throughput.py makes one request whatever --requests says",
        "throughput.py",
        "requests = [compiled.create_infer_request() for _ in range(count)]",
        "requests = [compiled.create_infer_request() for _ in range(1)]",
        ["tests/test_throughput.py"],
    ),
    Bug(
        "continuous batching ignores --max-sequences",
        "continuous_batching.py",
        "    places = min(args.max_sequences, len(prompts))",
        "    places = len(prompts)",
        ["tests/test_continuous_batching.py"],
    ),
    Bug(
        "paged samples run MPT (wrong text) without a word",
        "paged_attention.py",
        '    if config.get("model_type") == "mpt":',
        '    if config.get("model_type") == "none":',
        ["tests/test_families.py"],
    ),
    Bug(
        "paged attention feeds a wrong past length",
        "paged_attention.py",
        '"past_lens": np.array([cached], dtype=np.int32),',
        '"past_lens": np.array([max(cached - 1, 0)], dtype=np.int32),',
        ["tests/test_paged_attention.py"],
    ),
    Bug(
        "Euler step with the wrong sigma difference",
        "stable_diffusion.py",
        "dt = sigmas[i + 1] - sigma",
        "dt = sigma - sigmas[i + 1]",
        ["tests/test_stable_diffusion.py"],
    ),
    Bug(
        "image-to-image: strength ignored, every step run",
        "image_to_image.py",
        "    first = args.steps - steps_run",
        "    first = 0",
        ["tests/test_image_to_image.py"],
    ),
    Bug(
        "image-to-image: the encoder's log-variance taken as a log-std",
        "image_to_image.py",
        "    std = np.exp(0.5 * np.clip(parameters[:, 4:], -30, 20))",
        "    std = np.exp(np.clip(parameters[:, 4:], -30, 20))",
        ["tests/test_image_to_image.py"],
    ),
    Bug(
        "image-to-image: noise added at the next step's level",
        "image_to_image.py",
        "astype(np.float32) * sigmas[first]",
        "astype(np.float32) * sigmas[first + 1]",
        ["tests/test_image_to_image.py"],
    ),
    Bug(
        "PNG reader: Paeth's pick swaps left and above",
        "image_to_image.py",
        "    return (left, up, upper_left)[distances.index(min(distances))]",
        "    return (up, left, upper_left)[distances.index(min(distances))]",
        ["tests/test_image_to_image.py"],
    ),
    Bug(
        "PNG reader: the average filter rounds up",
        "image_to_image.py",
        "(left + above[x]) // 2",
        "(left + above[x] + 1) // 2",
        ["tests/test_image_to_image.py"],
    ),
    Bug(
        "PNG reader: gray+alpha read as gray",
        "image_to_image.py",
        "    if bpp <= 2:  # gray, with or without alpha",
        "    if bpp <= 1:  # gray, with or without alpha",
        ["tests/test_image_to_image.py"],
    ),
    Bug(
        "inpainting: the mask's gray is the mean of R, G and B",
        "inpainting.py",
        "weights = np.array([19595, 38470, 7471])",
        "weights = np.array([21845, 21845, 21846])",
        ["tests/test_inpainting.py"],
    ),
    Bug(
        "inpainting: the 9-channel UNet sees the mask inverted",
        "inpainting.py",
        "np.concatenate([scaled, mask, masked_latents], axis=1)",
        "np.concatenate([scaled, 1 - mask, masked_latents], axis=1)",
        ["tests/test_inpainting.py"],
    ),
    Bug(
        "inpainting: the masked picture is not blanked",
        "inpainting.py",
        "masked_image = picture * (1 - repaint)",
        "masked_image = picture",
        ["tests/test_inpainting.py"],
    ),
    Bug(
        "inpainting: the mask's latent grid from the cells' centres",
        "inpainting.py",
        "mask = repaint[None, None, ::8, ::8]",
        "mask = repaint[None, None, 4::8, 4::8]",
        ["tests/test_inpainting.py"],
    ),
    Bug(
        "inpainting: the plain UNet's kept part is not noised",
        "inpainting.py",
        "kept = image_latents + noise * sigmas[i + 1]",
        "kept = image_latents",
        ["tests/test_inpainting.py"],
    ),
    Bug(
        "whisper: the mel bands unnormalised (no Slaney area scaling)",
        "whisper.py",
        "    return triangles * (2 / (band_edges[2:] - band_edges[:-2]))",
        "    return triangles",
        ["tests/test_whisper.py"],
    ),
    Bug(
        "whisper: the first token may be text",
        "whisper.py",
        "        logits[:first_timestamp] = -np.inf\n        latest",
        "        latest",
        ["tests/test_whisper.py"],
    ),
    Bug(
        "whisper: timestamps may go back",
        "whisper.py",
        "        logits[first_timestamp : max(tokens) + 1] = -np.inf",
        "        pass",
        ["tests/test_whisper.py"],
    ),
    Bug(
        "whisper: the timestamps' total probability is not weighed",
        "whisper.py",
        "    if text_best > -np.inf and np.exp(logits[first_timestamp:] - text_best).sum() > 1:",
        "    if False:",
        ["tests/test_whisper.py"],
    ),
    Bug(
        "whisper: a window always advances by 30 s",
        "whisper.py",
        "            seek += FRAMES_PER_STEP * (tokens[segment_start - 1] - first_timestamp)",
        "            seek += window_frames",
        ["tests/test_whisper.py"],
    ),
    Bug(
        "whisper: the unfinished segment is kept",
        "whisper.py",
        "        if segment_start > 0 and not ends_on_one:",
        "        if False:",
        ["tests/test_whisper.py"],
    ),
    Bug(
        "whisper: nothing suppressed",
        "whisper.py",
        '    suppressed = config.get("suppress_tokens", [])',
        "    suppressed = []",
        ["tests/test_whisper.py"],
    ),
    Bug(
        "whisper: the decoder's cache kept across windows",
        "whisper.py",
        "        request.reset_state()  # a new window: nothing cached",
        "        request.reset_state() if offset == 0 else None",
        ["tests/test_whisper.py"],
    ),
    Bug(
        "whisper: multilingual models get no task token",
        "whisper.py",
        '        tokens.append(config["task_to_id"]["transcribe"])',
        "        pass",
        ["tests/test_whisper.py"],
    ),
    Bug(
        "embeddings: the mean counts the padding",
        "text_embeddings.py",
        "sums / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)",
        "states.mean(axis=1)",
        ["tests/test_embeddings.py"],
    ),
    Bug(
        "embeddings: CLS pooling ignored",
        "text_embeddings.py",
        'takes_cls=modes == ["pooling_mode_cls_token"],',
        "takes_cls=False,",
        ["tests/test_embeddings.py"],
    ),
    Bug(
        "embeddings: always normalized",
        "text_embeddings.py",
        'normalizes=not modules or any("Normalize" in t for t in module_types),',
        "normalizes=True,",
        ["tests/test_embeddings.py"],
    ),
    Bug(
        "embeddings: no Normalize without modules.json",
        "text_embeddings.py",
        'normalizes=not modules or any("Normalize" in t for t in module_types),',
        'normalizes=any("Normalize" in t for t in module_types),',
        ["tests/test_embeddings.py"],
    ),
    Bug(
        "rag: the worst passages first",
        "rag.py",
        'best = np.argsort(-scores, kind="stable")[: args.passages]',
        'best = np.argsort(scores, kind="stable")[: args.passages]',
        ["tests/test_rag.py"],
    ),
    Bug(
        "rag: the passages in the documents' order",
        "rag.py",
        'context = "\\n\\n".join(passages[index] for index in best)',
        'context = "\\n\\n".join(passages[index] for index in sorted(best))',
        ["tests/test_rag.py"],
    ),
    Bug(
        "rag: dot product without normalizing",
        "rag.py",
        "    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)",
        "    return vectors",
        ["tests/test_rag.py"],
    ),
    Bug(
        "rag: a CLS embedder pooled by the mean",
        "rag.py",
        'if not pooling.get("pooling_mode_mean_tokens", True):',
        "if False:",
        ["tests/test_rag.py"],
    ),
    Bug(
        "rag: padding counted in the mean",
        "rag.py",
        "sums = (mask[:, None, :] @ states)[:, 0]",
        "sums = states.sum(axis=1)",
        ["tests/test_rag.py"],
    ),
    Bug(
        "rag: the template without strftime_now",
        "rag.py",
        '    environment.globals["strftime_now"] = strftime_now\n',
        "",
        ["tests/test_rag.py"],
    ),
    Bug(
        "speculative: the answer runs past a stop token",
        "speculative_decoding.py",
        "            answer = answer[: stops.index(True)]",
        "            answer = answer[: stops.index(True) + 1]",
        ["tests/test_assisted.py", "tests/test_families.py"],
    ),
    Bug(
        "rag: the question left out of the prompt",
        "rag.py",
        'f"{context}\\n\\nQuestion: {args.question}"',
        'f"{context}"',
        ["tests/test_rag.py"],
    ),
    Bug(
        "lora: rsLoRA scaled by 1/r",
        "lora.py",
        'divisor = config["r"] ** 0.5 if config.get("use_rslora") else config["r"]',
        'divisor = config["r"]',
        ["tests/test_lora.py"],
    ),
    Bug(
        "lora: --alpha ignored",
        "lora.py",
        'scale = alpha * config["lora_alpha"] / divisor',
        'scale = config["lora_alpha"] / divisor',
        ["tests/test_lora.py"],
    ),
    Bug(
        "lora: bfloat16 read as float16",
        "lora.py",
        "values = (values.astype(np.uint32) << 16).view(np.float32)",
        "values = values.view(np.float16)",
        ["tests/test_lora.py"],
    ),
    Bug(
        "lora: one branch added, the other layers dropped silently",
        "lora.py",
        "        layers.remove(layer)\n",
        "        layers.remove(layer)\n        layers.clear()\n",
        ["tests/test_lora.py"],
    ),
    Bug(
        "LCM v-prediction with the wrong sign",
        "lcm.py",
        "np.sqrt(alpha) * latents - np.sqrt(beta) * output",
        "np.sqrt(alpha) * latents + np.sqrt(beta) * output",
        ["tests/test_lcm.py"],
    ),
    Bug(
        "whisper: a window that ends on a single timestamp restarts at its last segment",
        "whisper.py",
        "        ends_on_one = len(tokens) >= 2 and tokens[-2] < first_timestamp <= tokens[-1]",
        "        ends_on_one = False",
        ["tests/test_whisper.py"],
    ),
    Bug(
        "whisper: the first timestamp may lie a step past its limit",
        "whisper.py",
        "            logits[first_timestamp + latest + 1 :] = -np.inf",
        "            logits[first_timestamp + latest + 2 :] = -np.inf",
        ["tests/test_whisper.py"],
    ),
    Bug(
        "whisper: the first timestamp's limit a step short",
        "whisper.py",
        "            logits[first_timestamp + latest + 1 :] = -np.inf",
        "            logits[first_timestamp + latest :] = -np.inf",
        ["tests/test_whisper.py"],
    ),
    Bug(
        "a model folder whose path holds a space is taken as a prompt",
        "greedy.py",
        '    if " " in str(args.model_dir) and not args.model_dir.is_dir():',
        '    if " " in str(args.model_dir):',
        ["tests/test_greedy.py"],
    ),
    Bug(
        "beam_search.py escapes only newlines in a hypothesis",
        "beam_search.py",
        "            print(line.translate(LINE_ESCAPES), flush=True)",
        '            print(line.replace("\\n", "\\\\n"), flush=True)',
        ["tests/test_beam_search.py"],
    ),
    Bug(
        "rag.py parts paragraphs at empty lines only",
        "rag.py",
        '    paragraphs = re.split(r"\\n\\s*\\n", args.documents.read_text(encoding="utf-8"))',
        '    paragraphs = args.documents.read_text(encoding="utf-8").split("\\n\\n")',
        ["tests/test_rag.py"],
    ),
    Bug(
        "rag.py reads the tokenizer IR twice",
        "rag.py",
        "    model, tokenizer, detokenizer, stop_token_ids, rt_info = llm\n",
        "    model, tokenizer, detokenizer, stop_token_ids, rt_info = llm\n"
        '    rt_info = core.read_model(args.model_dir / "openvino_tokenizer.xml").get_rt_info()\n',
        ["tests/test_rag.py"],
    ),
    Bug(
        "throughput.py's f16 rule for --device CPU only (not AUTO, HETERO, MULTI)",
        "throughput.py",
        '    if on_cpu and "FP16" in capabilities:',
        '    if args.device == "CPU" and "FP16" in capabilities:',
        ["tests/test_throughput.py"],
    ),
    Bug(
        "a folder's problem exits through the parser, not the guard",
        "text_embeddings.py",
        '        raise ValueError(f"{model_dir} holds no text encoder: {EMBEDDER_HINT}")',
        # The parser's line and exit code, as parser.error gives them.
        "        print(f'text_embeddings.py: error: {model_dir} holds no text encoder',"
        " file=sys.stderr)\n        sys.exit(2)",
        ["tests/test_embeddings.py"],
    ),
    Bug(
        "tts: ids without the pads between phonemes",
        "text_to_speech.py",
        '            ids += id_map[phoneme] + id_map["_"]',
        "            ids += id_map[phoneme]",
        ["tests/test_text_to_speech.py"],
    ),
    Bug(
        "tts: the clause's punctuation left out of its phonemes",
        "text_to_speech.py",
        '        sentence += re.sub(r"\\([^)]+\\)", "", phonemes) + mark',
        '        sentence += re.sub(r"\\([^)]+\\)", "", phonemes)',
        ["tests/test_text_to_speech.py"],
    ),
    Bug(
        "tts: an ellipsis read as a full stop",
        "text_to_speech.py",
        '    if text.endswith("..."):',
        "    if False:",
        ["tests/test_text_to_speech.py"],
    ),
    Bug(
        "tts: the character looked ahead at kept in the clause",
        "text_to_speech.py",
        '        clause_text = encoded[start : end - 1].decode(errors="ignore")',
        '        clause_text = encoded[start:end].decode(errors="ignore")',
        ["tests/test_text_to_speech.py"],
    ),
    Bug(
        "tts: a sentence's audio not scaled to its peak",
        "text_to_speech.py",
        "    audio = audio / peak if peak >= 1e-8 else np.zeros_like(audio)",
        "    audio = audio * 0.9",
        ["tests/test_text_to_speech.py"],
    ),
    Bug(
        "tts: the voice's noise scales ignored",
        "text_to_speech.py",
        '    scales = [inference["noise_scale"], inference["length_scale"], inference["noise_w"]]',
        '    scales = [0.0, inference["length_scale"], 0.0]',
        ["tests/test_text_to_speech.py"],
    ),
    Bug(
        "tts: the voice computed in the CPU's default precision (bf16 here)",
        "text_to_speech.py",
        'F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}',
        "F32_CONFIG = {}",
        ["tests/test_text_to_speech.py"],
    ),
    Bug(
        "vlm: the resize always starts with the width (Pillow 12 and older)",
        "visual_language_chat.py",
        "    if image.shape[0] - height > max(2 * (image.shape[1] - width), 0):",
        "    if False:",
        ["tests/test_visual_language_chat.py"],
    ),
    Bug(
        "vlm: weights truncated to the fixed point, not rounded",
        "visual_language_chat.py",
        "    return np.trunc(kernel * FIXED_POINT + np.copysign(0.5, kernel))",
        "    return np.trunc(kernel * FIXED_POINT)",
        ["tests/test_visual_language_chat.py"],
    ),
    Bug(
        "vlm: the center crop's offset rounded up",
        "visual_language_chat.py",
        '        top = (image.shape[0] - crop["height"]) // 2',
        '        top = (image.shape[0] - crop["height"] + 1) // 2',
        ["tests/test_visual_language_chat.py"],
    ),
    Bug(
        "vlm: rescaled in float32, not float64",
        "visual_language_chat.py",
        '    pixels = (image * np.float64(settings["rescale_factor"])).astype(np.float32)',
        '    pixels = image * np.float32(settings["rescale_factor"])',
        ["tests/test_visual_language_chat.py"],
    ),
    Bug(
        "vlm: one image token, not one per feature",
        "visual_language_chat.py",
        "        ids = np.repeat(ids, np.where(ids == image_token_id, features.shape[1], 1))",
        "        ids = ids",
        ["tests/test_visual_language_chat.py"],
    ),
    Bug(
        "vlm: the cache not reset when the history parts from it",
        "visual_language_chat.py",
        "            request.reset_state()\n",
        "",
        ["tests/test_visual_language_chat.py"],
    ),
]


def plant(bug: Bug, checkout: Path) -> None:
    """A fresh copy of samples/ in CHECKOUT with BUG planted."""
    shutil.rmtree(checkout / "samples", ignore_errors=True)
    shutil.copytree(REPO / "samples", checkout / "samples")
    path = checkout / "samples" / bug.sample
    text = path.read_text()
    found = text.count(bug.old)
    if found != 1:
        raise SystemExit(f"{bug.name}: the text to replace is found {found} times")
    path.write_text(text.replace(bug.old, bug.new))


def first_failure(output: str) -> str:
    """The first test pytest reports as failed, or "" when all passed."""
    for line in output.splitlines():
        found = re.match(r"FAILED (\S+)", line)
        if found:
            return found.group(1)
    return ""


def catch(bug: Bug, checkout: Path, marker: str) -> str:
    """Run the bug's tests of one tier against the copy: the first that fails."""
    env = {**os.environ, "SAMPLES_DIR": str(checkout / "samples")}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    command += ["-m", marker, *bug.tests]
    run = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    return first_failure(run.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="run the bugs whose name contains this text")
    parser.add_argument(
        "--fast-only", action="store_true", help="skip the reference tier"
    )
    args = parser.parse_args()
    bugs = [bug for bug in BUGS if not args.only or args.only in bug.name]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        checkout = Path(folder)
        (checkout / "models").symlink_to(REPO / "models")
        for bug in bugs:
            start = time.perf_counter()
            plant(bug, checkout)
            tier = "fast"
            failed = catch(bug, checkout, "not reference")
            if not failed and not args.fast_only:
                tier = "reference"
                failed = catch(bug, checkout, "reference")
            if not failed:
                tier = "not caught"
            seconds = time.perf_counter() - start
            rows.append((bug, tier, failed, seconds))
            print(f"{tier:>10}  {seconds:5.0f} s  {bug.name}", file=sys.stderr)
    print("| bug | sample | caught by | test | seconds |")
    print("|---|---|---|---|---|")
    for bug, tier, failed, seconds in rows:
        print(f"| {bug.name} | {bug.sample} | {tier} | `{failed}` | {seconds:.0f} |")
    fast = sum(tier == "fast" for _, tier, _, _ in rows)
    missed = sum(tier == "not caught" for _, tier, _, _ in rows)
    print(f"\n{len(rows)} bugs: {fast} caught by the fast tier, {missed} not caught")


if __name__ == "__main__":
    main()
