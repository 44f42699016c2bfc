"""scripts/convert.py: bad inputs (fast tier); every weight format on the tiny fixture
and the GGUF route on the real model (reference tier, needs tests/requirements.txt)."""

import collections
import os
import subprocess
import sys

import numpy as np
import openvino as ov
import pytest

from conftest import (
    DEFAULT_MODEL,
    REPO,
    check_against_reference,
    run_sample,
    sample_env,
    tiny_llama_cases,
)


def convert(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "convert.py"), *map(str, args)],
        capture_output=True,
        text=True,
        env=sample_env(),
        check=False,
    )


def write(path, text):
    path.write_text(text)
    return path


BAD_INPUTS = {
    "missing path": (lambda tmp: [tmp / "nowhere", tmp / "out"], "does not exist"),
    "unknown format": (
        lambda tmp: [tmp, tmp / "out", "--weight-format", "int3"],
        "invalid choice",
    ),
    "not a causal LM": (
        lambda tmp: [
            write(tmp / "config.json", '{"architectures": ["BertModel"]}').parent,
            tmp / "out",
        ],
        "causal LM",
    ),
    "not an SD pipeline": (
        lambda tmp: [tmp, tmp / "out", "--task", "stable-diffusion"],
        "Stable Diffusion",
    ),
    "missing dataset": (
        lambda tmp: [
            tmp,
            tmp / "out",
            "--weight-format",
            "int4",
            "--awq",
            "--dataset",
            tmp / "none.txt",
        ],
        "does not exist",
    ),
    "empty dataset": (
        lambda tmp: [
            tmp,
            tmp / "out",
            "--weight-format",
            "int4",
            "--scale-estimation",
            "--dataset",
            write(tmp / "empty.txt", "\n \n"),
        ],
        "empty",
    ),
    "awq without dataset": (
        lambda tmp: [tmp, tmp / "out", "--weight-format", "int4", "--awq"],
        "--dataset",
    ),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_code_2(name, tmp_path):
    make_args, says = BAD_INPUTS[name]
    result = convert(*make_args(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr


def constant_types(model_xml) -> collections.Counter:
    model = ov.Core().read_model(model_xml)
    return collections.Counter(
        op.get_output_element_type(0)
        for op in model.get_ops()
        if op.get_type_name() == "Constant"
    )


@pytest.mark.reference
@pytest.mark.parametrize(
    "weight_format, extra, weight_type",
    [
        ("fp32", [], ov.Type.f32),
        ("fp16", [], ov.Type.f16),
        ("int8", [], ov.Type.u8),
        ("int4", ["--group-size", "32"], ov.Type.u4),
        (
            "int4",
            [
                "--group-size",
                "16",
                "--sym",
                "--awq",
                "--scale-estimation",
                "--dataset",
                REPO / "README.md",
            ],
            ov.Type.i4,
        ),
    ],
    ids=["fp32", "fp16", "int8", "int4-asym", "int4-sym-data-aware"],
)
def test_each_weight_format_gives_a_folder_greedy_runs(
    weight_format, extra, weight_type, rebuilt_tiny_llama, tmp_path
):
    """fp32 equals transformers token for token; compressed folders really hold u8 / u4
    / i4 weights."""
    out = tmp_path / weight_format
    result = convert(
        rebuilt_tiny_llama / "hf", out, "--weight-format", weight_format, *extra
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert constant_types(out / "openvino_model.xml")[weight_type] > 0
    case = tiny_llama_cases(rebuilt_tiny_llama)[0]
    run = run_sample(
        "greedy.py",
        out,
        case["prompt"],
        "--max-new-tokens",
        case["max_new_tokens"],
        "--f32",
    )
    if weight_format == "fp32":
        check_against_reference(run, case)
    assert run.returncode == 0 and run.stdout.strip(), run.stderr


@pytest.mark.reference
def test_gguf_route_is_faithful_to_transformers(default_model, tmp_path):
    """Known-good source: transformers generate() on the dequantised GGUF
    (gguf_file=...), f32."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    gguf = DEFAULT_MODEL.parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf.is_file(), (
        "run scripts/prepare_default_model.py first: it keeps the GGUF next to the model folder"
    )
    out = tmp_path / "smollm2-fp32"
    result = convert(gguf, out, "--weight-format", "fp32")
    assert result.returncode == 0, result.stderr[-2000:]
    core = ov.Core()
    tokenizer = core.compile_model(out / "openvino_tokenizer.xml", "CPU")
    detokenizer = core.compile_model(out / "openvino_detokenizer.xml", "CPU")
    genai_tokenizer = core.compile_model(
        default_model / "openvino_tokenizer.xml", "CPU"
    )
    os.environ["HF_HUB_OFFLINE"] = "1"
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    for prompt in [
        "The capital of France is",
        "def fibonacci(n):",
        "中国的首都是 12345 🙂",
    ]:
        ids = tokenizer([prompt])["input_ids"]
        assert (
            ids.tolist() == genai_tokenizer([prompt])["input_ids"].tolist()
        )  # the GGUF's own tokenizer
        config = GenerationConfig(
            do_sample=False, max_new_tokens=40, eos_token_id=2, pad_token_id=2
        )
        new_ids = model.generate(
            torch.from_numpy(ids),
            attention_mask=torch.ones(ids.shape, dtype=torch.long),
            generation_config=config,
        )[0, ids.shape[1] :].tolist()
        new_ids = new_ids[:-1] if new_ids and new_ids[-1] == 2 else new_ids
        text = detokenizer(np.array([new_ids]))["string_output"][0] if new_ids else ""
        check_against_reference(
            run_sample("greedy.py", out, prompt, "--max-new-tokens", 40, "--f32"),
            {"prompt_ids": ids[0].tolist(), "new_ids": new_ids, "text": text},
        )
