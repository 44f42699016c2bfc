"""One error path in every sample: an unfit model folder, an unreadable IR or an unknown
device ends with one line on stderr and exit code 2, never a traceback (fast tier)."""

import time
from pathlib import Path

import pytest

from conftest import (
    LLM_FOLDER_PROBLEMS,
    REPO,
    TINY_INPAINT,
    TINY_IR,
    TINY_LCM,
    TINY_SD,
    UNKNOWN_DEVICE,
    check_bad_input,
    check_ctrl_c,
    copy_with_truncated,
    copy_without,
    ir_copy_with_eos,
    llm_folder,
    run_sample,
)

LORA_ADAPTER = (
    REPO / "tests" / "data" / "tiny-lora" / "llama"
)  # tests/fixtures/tiny_lora.py
RAG_ARGS = [
    "--documents",
    REPO / "tests" / "data" / "tiny-bert" / "documents.txt",
    "--embedder",
    REPO / "tests" / "data" / "tiny-bert" / "ir",
]
# Each LLM sample's arguments around its model folder (MODEL), and its stdin.
LLM_SAMPLES = {
    "greedy.py": (["MODEL", "hello"], ""),
    "paged_attention.py": (["MODEL", "hello"], ""),
    "beam_search.py": (["MODEL", "hello"], ""),
    "chat.py": (["MODEL"], "Hello\n"),
    "multinomial.py": (["MODEL", "hello"], ""),
    "prompt_lookup.py": (["MODEL", "hello"], ""),
    "speculative_decoding.py": (["MODEL", TINY_IR, "hello"], ""),
    "throughput.py": (["MODEL"], ""),
    "continuous_batching.py": (["MODEL"], ""),
    "lora.py": (["MODEL", LORA_ADAPTER, "hello"], ""),
    "rag.py": (["MODEL", "hello", *RAG_ARGS], ""),
}


def run_llm_sample(name: str, model, *extra):
    template, stdin = LLM_SAMPLES[name]
    args = [model if arg == "MODEL" else arg for arg in template]
    return run_sample(name, *args, *extra, stdin=stdin)


@pytest.mark.parametrize("problem", LLM_FOLDER_PROBLEMS)
@pytest.mark.parametrize("name", LLM_SAMPLES)
def test_unfit_model_folder_gives_one_line_and_exit_code_2(name, problem, tmp_path):
    run = run_llm_sample(name, llm_folder(problem, tmp_path))
    check_bad_input(run, LLM_FOLDER_PROBLEMS[problem])


@pytest.mark.parametrize("name", LLM_SAMPLES)
def test_unknown_device_gives_one_line_and_exit_code_2(name):
    run = run_llm_sample(name, TINY_IR, "--device", "TPU")
    check_bad_input(run, UNKNOWN_DEVICE)


# Each image sample's folder, and the picture image_to_image.py takes before the prompt.
IMAGE_SAMPLES = {
    "stable_diffusion.py": [TINY_SD / "ir"],
    "lcm.py": [TINY_LCM / "ir"],
    "image_to_image.py": [TINY_SD / "ir", TINY_SD / "inputs" / "rgb.png"],
    "inpainting.py": [
        TINY_INPAINT / "ir",
        TINY_INPAINT / "inputs" / "rgb.png",
        TINY_INPAINT / "inputs" / "mask.png",
    ],
}
IMAGE_FOLDER_PROBLEMS = {
    "missing folder": "tokenizer/openvino_tokenizer.xml",
    "no unet": "unet/openvino_model.xml",
    "no scheduler": "scheduler_config.json",
    "truncated unet": "at offset",  # OpenVINO's XML parser says where it failed
    "truncated tokenizer": "at offset",
}


def image_folder(problem: str, ir, tmp_path):
    if problem == "missing folder":
        return tmp_path / "nowhere"
    if problem == "no unet":
        return copy_without(ir, "unet/openvino_model.xml", tmp_path / "model")
    if problem == "no scheduler":
        return copy_without(ir, "scheduler/scheduler_config.json", tmp_path / "model")
    if problem == "truncated unet":
        return copy_with_truncated(ir, "unet/openvino_model.xml", tmp_path / "model")
    tokenizer = "tokenizer/openvino_tokenizer.xml"
    return copy_with_truncated(ir, tokenizer, tmp_path / "model")


@pytest.mark.parametrize("problem", IMAGE_FOLDER_PROBLEMS)
@pytest.mark.parametrize("name", IMAGE_SAMPLES)
def test_unfit_image_folder_gives_one_line_and_exit_code_2(name, problem, tmp_path):
    model = image_folder(problem, IMAGE_SAMPLES[name][0], tmp_path)
    output = tmp_path / "out.png"
    args = [model, *IMAGE_SAMPLES[name][1:], "a cat", "--output", output]
    run = run_sample(name, *args, "--steps", 2)
    check_bad_input(run, IMAGE_FOLDER_PROBLEMS[problem])
    assert not output.exists()


@pytest.mark.parametrize("name", IMAGE_SAMPLES)
def test_image_sample_on_unknown_device_gives_one_line(name, tmp_path):
    output = tmp_path / "out.png"
    run = run_sample(name, *IMAGE_SAMPLES[name], "--device", "TPU", "--output", output)
    check_bad_input(run, UNKNOWN_DEVICE)
    assert not output.exists()


def says_on_stderr(sign: bytes):
    """started() for check_ctrl_c: true once a stderr line holds SIGN (false if the
    process ends first)."""

    def started(process) -> bool:
        for line in process.stderr:
            if sign in line:
                return True
        return False

    return started


def weights_mapped(process) -> bool:
    """started() for check_ctrl_c: true once the sample has read a model (its weights
    are mapped into memory), so main() runs; false if the process ends first."""
    while process.poll() is None:
        maps = Path(f"/proc/{process.pid}/maps").read_text()
        if "openvino_model.bin" in maps:
            time.sleep(1)  # into the generation
            return True
        time.sleep(0.05)
    return False


# Each sample's arguments around its model folder (MODEL): a copy of the tiny model
# without an end token, so that it generates until it is stopped.
LONG_RUNS = {
    "greedy.py": ["MODEL", "The capital of France is"],
    "paged_attention.py": ["MODEL", "The capital of France is"],
    "beam_search.py": ["MODEL", "The capital of France is"],
    "multinomial.py": ["MODEL", "The capital of France is"],
    "prompt_lookup.py": ["MODEL", "The capital of France is"],
    "speculative_decoding.py": ["MODEL", "MODEL", "The capital of France is"],
    "throughput.py": ["MODEL"],
    "continuous_batching.py": ["MODEL"],
    "chat.py": ["MODEL"],
    "lora.py": ["MODEL", LORA_ADAPTER, "The capital of France is"],
    "rag.py": ["MODEL", "What is the capital of France?", *RAG_ARGS],
}


@pytest.mark.parametrize("name", LONG_RUNS)
def test_ctrl_c_while_generating_exits_130_without_traceback(name, tmp_path):
    model = ir_copy_with_eos(TINY_IR, tmp_path / "ir", None)
    args = [model if arg == "MODEL" else arg for arg in LONG_RUNS[name]]
    check_ctrl_c(
        name,
        *args,
        "--max-new-tokens",
        100000,
        started=weights_mapped,
        stdin=b"The capital of France is\n",
    )


@pytest.mark.parametrize("name", IMAGE_SAMPLES)
def test_ctrl_c_while_denoising_exits_130_without_traceback(name, tmp_path):
    output = tmp_path / "out.png"
    # LCM takes at most the 50 steps it was distilled for: a larger image lasts.
    args = ["--steps", 100000, "--width", 64, "--height", 64, "--output", output]
    if name == "lcm.py":
        args = ["--steps", 50, "--width", 512, "--height", 512, "--output", output]
    if name in ("image_to_image.py", "inpainting.py"):  # the picture sets the size
        args = ["--steps", 100000, "--output", output]
    check_ctrl_c(name, *IMAGE_SAMPLES[name], *args, started=says_on_stderr(b"step 1/"))
    assert not output.exists()
