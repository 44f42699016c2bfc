"""samples/greedy.py on the committed tiny fixture: fast tier, needs only
requirements.txt and pytest.

Known-good source: transformers' greedy generate() on the same weights, recorded in
tests/data/tiny-llama/expected.json by tests/fixtures/tiny_llm.py (tests/test_reference.py
recomputes it).
"""

import shutil
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  lets the Core read the tokenizer IRs
import pytest

from conftest import (
    SAMPLES_DIR,
    TINY_IR,
    check_against_reference,
    check_bad_argument,
    check_bad_input,
    ir_copy_with_eos,
    last_stats,
    run_sample,
    tiny_llama_cases,
)

IR = TINY_IR
CASES = tiny_llama_cases()


@pytest.mark.parametrize("case", CASES, ids=[f"prompt{i}" for i in range(len(CASES))])
def test_tiny_llama_matches_transformers(case):
    """Token for token with transformers' greedy generate (f32), including a stop on
    EOS."""
    check_against_reference(
        run_sample(
            "greedy.py",
            IR,
            case["prompt"],
            "--max-new-tokens",
            case["max_new_tokens"],
            "--f32",
        ),
        case,
    )


def test_shorter_max_new_tokens_gives_a_prefix():
    case = next(case for case in CASES if not case["stops_on_eos"])
    run = run_sample("greedy.py", IR, case["prompt"], "--max-new-tokens", 5, "--f32")
    assert run.returncode == 0, run.stderr
    assert last_stats(run.stderr)["new_tokens"] == 5
    assert case["text"].startswith(run.stdout[:-1])


def test_default_precision_runs():
    """Without --f32 the CPU may compute in bf16: the text may differ, the run must
    still finish."""
    run = run_sample("greedy.py", IR, CASES[0]["prompt"], "--max-new-tokens", 8)
    assert run.returncode == 0, run.stderr
    assert last_stats(run.stderr)["new_tokens"] == 8


def test_tokenizer_round_trip_and_prompt_ids():
    """The tokenizer IRs give transformers' prompt ids and decode multi-byte text back
    unchanged."""
    core = ov.Core()
    tokenizer = core.compile_model(IR / "openvino_tokenizer.xml", "CPU")
    detokenizer = core.compile_model(IR / "openvino_detokenizer.xml", "CPU")
    for case in CASES:
        ids = tokenizer([case["prompt"]])["input_ids"]
        assert ids.tolist() == [case["prompt_ids"]]
        assert detokenizer(ids)["string_output"][0] == case["prompt"]


def test_streaming_equals_one_shot_decode_across_split_characters():
    """Some answers end a step in the middle of a UTF-8 character: stdout still equals
    the one-shot decode."""
    detokenizer = ov.Core().compile_model(IR / "openvino_detokenizer.xml", "CPU")
    split = []
    for case in CASES:
        prefixes = [
            detokenizer(np.array([case["new_ids"][:n]]))["string_output"][0]
            for n in range(1, len(case["new_ids"]) + 1)
        ]
        if (
            any(text.endswith("\ufffd") for text in prefixes[:-1])
            and prefixes[-1] == case["text"]
        ):
            split.append(case)
    assert split, "no case splits a character: the streaming test would prove nothing"
    for case in split:
        check_against_reference(
            run_sample(
                "greedy.py",
                IR,
                case["prompt"],
                "--max-new-tokens",
                case["max_new_tokens"],
                "--f32",
            ),
            case,
        )


BAD_ARGUMENTS = {
    "empty prompt": ([""], "prompt is empty"),
    "blank prompt": (["  \n"], "prompt is empty"),
    "zero tokens": (["hello", "--max-new-tokens", "0"], "at least 1"),
    "negative tokens": (["hello", "--max-new-tokens", "-3"], "at least 1"),
    "not a number": (["hello", "--max-new-tokens", "many"], "invalid int value"),
}
# An unknown device (OpenVINO's error, through the guard): tests/test_errors.py.


@pytest.mark.parametrize("name", BAD_ARGUMENTS)
def test_bad_arguments_give_one_line_and_exit_code_2(name):
    args, says = BAD_ARGUMENTS[name]
    check_bad_argument(run_sample("greedy.py", IR, *args), says)


def checkout_with_tiny_default(tmp_path) -> Path:
    """A checkout holding samples/greedy.py (the file itself, copied) whose default
    model folder, models/SmolLM2-135M-Instruct, is the tiny fixture."""
    (tmp_path / "samples").mkdir()
    shutil.copy(SAMPLES_DIR / "greedy.py", tmp_path / "samples" / "greedy.py")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "SmolLM2-135M-Instruct").symlink_to(IR)
    return tmp_path / "samples"


@pytest.mark.parametrize("prompt_first", [True, False])
def test_lone_prompt_runs_on_the_default_model(tmp_path, prompt_first):
    """`greedy.py "Tell me a joke"`: text with a space that names no folder is the
    prompt, for the default model folder, before or after the options."""
    case = CASES[0]  # "Hello, world! How are you today?"
    folder = checkout_with_tiny_default(tmp_path)
    options = ["--max-new-tokens", case["max_new_tokens"], "--f32"]
    args = [case["prompt"], *options] if prompt_first else [*options, case["prompt"]]
    check_against_reference(run_sample("greedy.py", *args, folder=folder), case)


def test_lone_folder_is_the_model_with_the_default_prompt():
    """The documented default prompt, not the folder's path, is what is fed."""
    tokenizer = ov.Core().compile_model(IR / "openvino_tokenizer.xml", "CPU")
    default_prompt = tokenizer(["Once upon a time, a little robot"])["input_ids"]
    run = run_sample("greedy.py", IR, "--max-new-tokens", 2)
    assert run.returncode == 0, run.stderr
    assert last_stats(run.stderr)["prompt_tokens"] == default_prompt.shape[1]


def test_a_folder_whose_path_holds_a_space_is_the_model(tmp_path):
    """A model folder with a space in its path ("My Models/...") is MODEL_DIR, not a
    prompt: it answers as transformers does on its weights, alone or with a prompt;
    alone, it is fed the default prompt (issue #41)."""
    folder = tmp_path / "My Models" / "tiny llama"
    folder.parent.mkdir()
    folder.symlink_to(IR)
    case = CASES[0]
    options = ["--max-new-tokens", case["max_new_tokens"], "--f32"]
    check_against_reference(
        run_sample("greedy.py", folder, case["prompt"], *options), case
    )
    tokenizer = ov.Core().compile_model(IR / "openvino_tokenizer.xml", "CPU")
    default_prompt = tokenizer(["Once upon a time, a little robot"])["input_ids"]
    run = run_sample("greedy.py", folder, "--max-new-tokens", 2)
    assert run.returncode == 0, run.stderr
    assert last_stats(run.stderr)["prompt_tokens"] == default_prompt.shape[1]


def test_missing_folder_shaped_like_a_path_says_how_to_make_it():
    run = run_sample("greedy.py", "models/nowhere")
    check_bad_input(run, "no models/nowhere/openvino_model.xml: run scripts/prepare")


def test_folder_without_a_stop_token_generates_to_the_limit(tmp_path):
    """No eos_token_id in the tokenizer or generation_config.json: nothing ends the
    answer but --max-new-tokens (as openvino_genai does)."""
    model = ir_copy_with_eos(IR, tmp_path / "ir", None)
    run = run_sample("greedy.py", model, "Hello", "--max-new-tokens", 40)
    assert run.returncode == 0, run.stderr
    assert last_stats(run.stderr)["new_tokens"] == 40
