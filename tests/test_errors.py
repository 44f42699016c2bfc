"""One error path in every sample: an unfit model folder, an unreadable IR or an unknown
device ends with one line on stderr and exit code 2, never a traceback (fast tier)."""

import pytest

from conftest import (
    LLM_FOLDER_PROBLEMS,
    TINY_IR,
    TINY_LCM,
    TINY_SD,
    check_bad_input,
    copy_with_truncated,
    copy_without,
    llm_folder,
    run_sample,
)

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
    check_bad_input(run_llm_sample(name, TINY_IR, "--device", "TPU"), "--device TPU")


IMAGE_SAMPLES = {"stable_diffusion.py": TINY_SD / "ir", "lcm.py": TINY_LCM / "ir"}
IMAGE_FOLDER_PROBLEMS = {
    "missing folder": "tokenizer/openvino_tokenizer.xml",
    "no unet": "unet/openvino_model.xml",
    "no scheduler": "scheduler_config.json",
    "truncated unet": "cannot read",
    "truncated tokenizer": "cannot read",
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
    model = image_folder(problem, IMAGE_SAMPLES[name], tmp_path)
    output = tmp_path / "out.png"
    run = run_sample(name, model, "a cat", "--output", output, "--steps", 1)
    check_bad_input(run, IMAGE_FOLDER_PROBLEMS[problem])
    assert not output.exists()


@pytest.mark.parametrize("name", IMAGE_SAMPLES)
def test_image_sample_on_unknown_device_gives_one_line(name, tmp_path):
    output = tmp_path / "out.png"
    run = run_sample(name, IMAGE_SAMPLES[name], "--device", "TPU", "--output", output)
    check_bad_input(run, "--device TPU")
    assert not output.exists()
