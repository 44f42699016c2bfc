"""scripts/compression_study.py's inputs: the held-out text is large enough and never
used for calibration."""

import importlib.util

import openvino as ov
import pytest

from conftest import REPO


@pytest.mark.reference
def test_held_out_text_is_disjoint_from_calibration_and_long_enough(default_model):
    spec = importlib.util.spec_from_file_location(
        "compression_study", REPO / "scripts" / "compression_study.py"
    )
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    calibration, held_out = study.texts()
    paragraphs = [
        {part.strip() for part in text.split("\n\n")} - {""}
        for text in (calibration, held_out)
    ]
    assert len(paragraphs[0]) > 100 and not paragraphs[0] & paragraphs[1]
    tokenizer = ov.Core().compile_model(default_model / "openvino_tokenizer.xml", "CPU")
    assert len(study.token_ids(tokenizer, held_out)) >= max(
        study.HELD_OUT_TOKENS, 20000
    )
