#!/usr/bin/env python3
"""Text embeddings with an encoder IR: a vector per text, compared by cosine similarity.

The tokenizer IR turns the texts into one padded batch (token ids and an attention mask
that marks the padding); the encoder gives each token a hidden state; pooling makes one
vector per text from them, and normalizing gives it length 1, so that the dot product
of two vectors is their cosine similarity.
MODEL_DIR holds openvino_model.xml and openvino_tokenizer.xml, as `optimum-cli export
openvino --task feature-extraction` writes them, and the sentence-transformers files
beside them: 1_Pooling/config.json says how to pool (the mean of the text's tokens, or
the first token, [CLS]) and modules.json whether to normalize. Without those files the
sample takes the mean and normalizes, as most sentence-transformers models do.
A text longer than the tokenizer IR's limit is cut there (scripts/prepare_embeddings.py
converts it with the model's max_seq_length, where sentence-transformers cuts).
stdout: the similarity matrix, a row per text. --output saves the (texts, dimensions)
float32 embeddings with numpy.
Example: python samples/text_embeddings.py models/all-MiniLM-L6-v2 "A cat" "A kitten"
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  registers the tokenizer IRs' string operations

EMBEDDER_FILES = ("openvino_model.xml", "openvino_tokenizer.xml")
EMBEDDER_HINT = "run scripts/prepare_embeddings.py, or optimum-cli export openvino"
# --f32: compute in f32, as the references do (the CPU's default may be bf16), and
# quantize no activations on the fly (int8 weights do by default): the numbers then
# equal the references'. (An encoder keeps no KV cache: that setting does nothing.)
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
F32_CONFIG["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"


class Embedder(NamedTuple):
    """A compiled text encoder, its tokenizer, and how its token states become one
    vector per text."""

    tokenizer: ov.CompiledModel
    encoder: ov.CompiledModel
    takes_cls: bool  # the first token's state, else the mean of the text's tokens
    normalizes: bool


def read_embedder(core: ov.Core, model_dir: Path, device: str, config):
    """The folder's encoder and tokenizer, compiled, and its pooling settings. What is
    wrong with the folder is raised, for main's guard to print in one line."""
    for name in EMBEDDER_FILES:
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"no {model_dir / name}: {EMBEDDER_HINT}")
    encoder = core.read_model(model_dir / "openvino_model.xml")
    if "last_hidden_state" not in encoder.output(0).names:
        raise ValueError(f"{model_dir} holds no text encoder: {EMBEDDER_HINT}")
    pooling_path = model_dir / "1_Pooling" / "config.json"
    pooling = json.loads(pooling_path.read_text()) if pooling_path.is_file() else {}
    modes = [name for name, used in pooling.items() if "mode" in name and used]
    if modes not in ([], ["pooling_mode_mean_tokens"], ["pooling_mode_cls_token"]):
        raise ValueError(f"{pooling_path}: {modes}; this sample pools by mean or CLS")
    modules_path = model_dir / "modules.json"
    modules = json.loads(modules_path.read_text()) if modules_path.is_file() else []
    module_types = [module["type"] for module in modules]
    return Embedder(
        tokenizer=core.compile_model(model_dir / "openvino_tokenizer.xml", "CPU"),
        encoder=core.compile_model(encoder, device, config),
        takes_cls=modes == ["pooling_mode_cls_token"],
        normalizes=not modules or any("Normalize" in t for t in module_types),
    )


def embed(embedder: Embedder, texts: list[str]) -> tuple[np.ndarray, int]:
    """The texts' (texts, dimensions) embeddings, and how many tokens they took."""
    tokens = embedder.tokenizer(texts)
    # The ids, the mask, and token_type_ids where the encoder has that input.
    inputs = {port.any_name: tokens[port.any_name] for port in embedder.encoder.inputs}
    # share_outputs: numpy reads the (texts, tokens, width) states where the encoder
    # wrote them instead of copying them (9 MB for 64 texts of 100 tokens); they are
    # pooled before the encoder runs again.
    states = embedder.encoder(inputs, share_outputs=True)["last_hidden_state"]
    mask = tokens["attention_mask"].astype(np.float32)  # (texts, tokens): 0 on padding
    if embedder.takes_cls:
        vectors = states[:, 0]
    else:
        # The mean of each text's token states, padding left out: the mask-weighted
        # sum of the states (one matrix product a text) over the text's token count.
        sums = (mask[:, None, :] @ states)[:, 0]
        vectors = sums / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
    if embedder.normalizes:
        lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(lengths, 1e-12)
    return vectors.astype(np.float32), int(mask.sum())


def main() -> None:
    # usage=SUPPRESS: a bad argument gives one line on stderr, not the usage text too.
    parser = argparse.ArgumentParser(description=__doc__, usage=argparse.SUPPRESS)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("texts", nargs="+")
    parser.add_argument("--output", type=Path, help="a .npy file for the embeddings")
    parser.add_argument("--device", default="CPU", help="CPU, GPU, NPU or AUTO")
    parser.add_argument("--f32", action="store_true", help="exact, as the references")
    args = parser.parse_args()
    if args.output and not args.output.resolve().parent.is_dir():
        parser.error(f"no folder for --output {args.output}")

    # Created after `import openvino_tokenizers`, so that it reads the tokenizers.
    core = ov.Core()
    config = F32_CONFIG if args.f32 else {}
    embedder = read_embedder(core, args.model_dir, args.device, config)
    # The tokenizer's first call sets its string operations up (about 10 ms, whatever
    # the text). Made while loading, as openvino_genai's TextEmbeddingPipeline makes it,
    # it leaves the time below to the embedding itself.
    embedder.tokenizer(["warm-up"])
    start = time.perf_counter()
    vectors, token_count = embed(embedder, args.texts)
    milliseconds = (time.perf_counter() - start) * 1000
    # Cosine similarity: the dot product of vectors of length 1 (normalized here, if
    # the model does not).
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for row in unit @ unit.T:
        print(" ".join(f"{similarity:7.4f}" for similarity in row))
    if args.output:
        np.save(args.output, vectors)
        print(f"wrote {args.output}", file=sys.stderr)
    print(
        f"{len(args.texts)} texts, {token_count} tokens, embedded in "
        f"{milliseconds:.0f} ms",
        file=sys.stderr,
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the shell's code for an interrupt, and no traceback
    except (RuntimeError, OSError, ValueError) as error:  # OpenVINO, files, JSON
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
