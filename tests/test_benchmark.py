"""scripts/benchmark.py --quick runs end to end on the tiny fixtures (reference tier: it
needs openvino_genai).

Speed is never asserted: the benchmark prints figures side by side, and the README
carries a full run's table.
"""

import re
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.reference


def test_quick_benchmark_prints_every_figure_for_both_sides(piper_voice):
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--quick"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [
        line
        for line in run.stdout.splitlines()
        if line.startswith("| ") and "---" not in line
    ][1:]
    number = r"\d+(\.\d+)?"
    for kind in (
        "greedy time to first token",
        "greedy decode",
        "beam search wall time",
        "throughput",
        "image (stable_diffusion.py), 64x64",
        "img2img (image_to_image.py), 64x64",
        "inpaint (inpainting.py), 64x64",
        "whisper (whisper.py)",
        "embeddings (text_embeddings.py), ir,",
        "tts (text_to_speech.py), en_US-joe-medium",
        "tts, compiling",
    ):
        found = [row for row in rows if row.startswith(f"| {kind}")]
        assert found, kind
        for row in found:
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            assert re.fullmatch(number, cells[1]) and re.fullmatch(number, cells[2]), (
                row
            )  # ours and genai
    # 2 prompt lengths x 2 precisions x 2 samples (greedy.py, paged_attention.py)
    assert sum(row.startswith("| greedy decode") for row in rows) == 8
    assert sum("paged_attention.py" in row for row in rows) == 12
    for part in ("image", "img2img", "inpaint"):
        assert any(row.startswith(f"| {part}, per step / floor") for row in rows)
    assert any(
        row.startswith("| throughput") and "continuous_batching.py" in row
        for row in rows
    )
