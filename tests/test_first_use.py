"""What a newcomer types first (fast tier, on the committed tiny fixture).

- A lone prompt (`greedy.py "Tell me a joke"`) runs on the default model folder;
  text shaped like a path stays MODEL_DIR and gets the message that says how to make it.
- A prompt that fills the model's context (config.json's max_position_embeddings)
  exits 2 in one line; one that leaves less room than --max-new-tokens generates up to
  the context and says so on stderr; a conversation that outgrows it ends the chat in
  one line.
- chat.py in a terminal asks for each turn on stderr.

Known-good source: transformers' greedy generate() on the tiny Llama
(tests/data/tiny-llama/expected.json, expected_chat.json, from scripts/tiny_llm.py).
"""

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import openvino as ov
import openvino_tokenizers  # noqa: F401  lets the Core read the tokenizer IRs
import pytest

from conftest import (
    SAMPLES_DIR,
    TINY_IR,
    chat_cases,
    check_against_reference,
    check_bad_input,
    detokenize,
    last_stats,
    run_sample,
    sample_env,
    tiny_llama_cases,
)

CASES = tiny_llama_cases()
SPACED = CASES[0]  # "Hello, world! How are you today?": 21 prompt tokens, no EOS
ONE_WORD = CASES[5]  # "The": 1 prompt token
LONG = CASES[4]  # 489 prompt tokens
# The samples whose answer is transformers' greedy answer.
GREEDY_SAMPLES = ["greedy.py", "paged_attention.py", "prompt_lookup.py"]
PROMPT_SAMPLES = [*GREEDY_SAMPLES, "multinomial.py", "beam_search.py"]


def checkout_with_tiny_default(name: str, tmp_path) -> Path:
    """A checkout holding samples/NAME (the file itself, copied) whose default model
    folder, models/SmolLM2-135M-Instruct, is the tiny fixture."""
    (tmp_path / "samples").mkdir()
    shutil.copy(SAMPLES_DIR / name, tmp_path / "samples" / name)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "SmolLM2-135M-Instruct").symlink_to(TINY_IR)
    return tmp_path / "samples"


@pytest.mark.parametrize("case", [SPACED, ONE_WORD], ids=["spaced", "one-word"])
@pytest.mark.parametrize("name", GREEDY_SAMPLES)
def test_lone_prompt_runs_on_the_default_model(name, case, tmp_path):
    folder = checkout_with_tiny_default(name, tmp_path)
    max_new_tokens = ["--max-new-tokens", case["max_new_tokens"], "--f32"]
    run = run_sample(name, case["prompt"], *max_new_tokens, folder=folder)
    check_against_reference(run, case)


@pytest.mark.parametrize("name", ["multinomial.py", "beam_search.py"])
def test_lone_prompt_is_the_prompt_given_after_the_default_folder(name, tmp_path):
    """Sampling (seeded) and beam search give what they give for MODEL_DIR PROMPT."""
    folder = checkout_with_tiny_default(name, tmp_path)
    args = ["--max-new-tokens", 6, "--f32"]
    lone = run_sample(name, SPACED["prompt"], *args, folder=folder)
    both = run_sample(name, TINY_IR, SPACED["prompt"], *args)
    assert lone.returncode == 0, lone.stderr
    assert lone.stdout == both.stdout != ""


def test_lone_folder_is_the_model_with_the_default_prompt():
    """The documented default prompt, not the folder's path, is what is fed."""
    tokenizer = ov.Core().compile_model(TINY_IR / "openvino_tokenizer.xml", "CPU")
    default_prompt = tokenizer(["Once upon a time, a little robot"])["input_ids"]
    run = run_sample("greedy.py", TINY_IR, "--max-new-tokens", 2)
    assert run.returncode == 0, run.stderr
    assert last_stats(run.stderr)["prompt_tokens"] == default_prompt.shape[1]


@pytest.mark.parametrize("name", PROMPT_SAMPLES)
def test_missing_folder_shaped_like_a_path_says_how_to_make_it(name):
    run = run_sample(name, "models/nowhere")
    check_bad_input(run, "no models/nowhere/openvino_model.xml: run scripts/prepare")


def small_context_copy(tmp_path, context_length: int = 32) -> Path:
    """A copy of the tiny IR whose config.json says the model's context is shorter."""
    shutil.copytree(TINY_IR, tmp_path / "small")
    config_path = tmp_path / "small" / "config.json"
    config = json.loads(config_path.read_text())
    config["max_position_embeddings"] = context_length
    config_path.write_text(json.dumps(config))
    return tmp_path / "small"


def run_on_prompt(name: str, model: Path, prompt: str, tmp_path, *extra):
    """Run an LLM sample on one prompt, given as each sample takes it."""
    if name in ("throughput.py", "continuous_batching.py"):
        (tmp_path / "prompts.txt").write_text(prompt + "\n", encoding="utf-8")
        return run_sample(name, model, "--prompts", tmp_path / "prompts.txt", *extra)
    if name == "speculative_decoding.py":
        return run_sample(name, TINY_IR, model, prompt, *extra)  # the draft: no limit
    if name == "chat.py":
        return run_sample(name, model, *extra, stdin=prompt + "\n")
    return run_sample(name, model, prompt, *extra)


LLM_SAMPLES = [
    *PROMPT_SAMPLES,
    "speculative_decoding.py",
    "throughput.py",
    "continuous_batching.py",
    "chat.py",
]


@pytest.mark.parametrize("name", LLM_SAMPLES)
def test_prompt_that_fills_the_context_gives_one_line_and_exit_code_2(name, tmp_path):
    model = small_context_copy(tmp_path)
    run = run_on_prompt(name, model, LONG["prompt"].replace("\n", " "), tmp_path)
    check_bad_input(run, "the prompt fills the model's context of 32")


@pytest.mark.parametrize(
    "name",
    [
        *GREEDY_SAMPLES,
        "speculative_decoding.py",
        "throughput.py",
        "continuous_batching.py",
    ],
)
def test_answer_stops_at_the_end_of_the_context_and_says_so(name, tmp_path):
    """21 prompt tokens in a context of 32: transformers' first 11 new tokens, and a
    line on stderr, though --max-new-tokens asks for 24."""
    model = small_context_copy(tmp_path)
    args = ["--max-new-tokens", SPACED["max_new_tokens"], "--f32"]
    run = run_on_prompt(name, model, SPACED["prompt"], tmp_path, *args)
    assert run.returncode == 0, run.stderr
    assert "the context leaves room for 11 new tokens" in run.stderr
    assert last_stats(run.stderr)["new_tokens"] == 11
    expected = detokenize(TINY_IR, SPACED["new_ids"][:11])
    if name in ("throughput.py", "continuous_batching.py"):
        expected = expected.replace("\n", "\\n")  # their answers are a line each
    assert run.stdout == expected + "\n"


@pytest.mark.parametrize("name", ["multinomial.py", "beam_search.py"])
def test_sampling_and_beams_stop_at_the_end_of_the_context(name, tmp_path):
    model = small_context_copy(tmp_path)
    run = run_on_prompt(name, model, SPACED["prompt"], tmp_path, "--max-new-tokens", 24)
    assert run.returncode == 0, run.stderr
    assert "the context leaves room for 11 new tokens" in run.stderr
    if name == "multinomial.py":
        assert last_stats(run.stderr)["new_tokens"] <= 11


def test_folder_without_config_json_has_no_context_limit(tmp_path):
    """The GGUF-converted default folder has no config.json: nothing is checked."""
    model = small_context_copy(tmp_path)
    (model / "config.json").unlink()
    run = run_sample("greedy.py", model, LONG["prompt"], "--max-new-tokens", 3)
    assert run.returncode == 0, run.stderr
    assert last_stats(run.stderr)["new_tokens"] == 3
    assert "context" not in run.stderr


def test_chat_that_outgrows_the_context_ends_in_one_line(tmp_path):
    """The first turn's history is 34 tokens: in a context of 36 its answer stops after
    2 tokens (said on stderr); the second turn no longer fits: one line, exit 2."""
    conversation = chat_cases()[0]
    first = conversation["answers"][0]
    model = small_context_copy(tmp_path, context_length=36)
    stdin = "".join(turn + "\n" for turn in conversation["turns"])
    run = run_sample("chat.py", model, "--max-new-tokens", 4, "--f32", stdin=stdin)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "the context leaves room for 2 new tokens",
        f"{first['fed']} tokens fed, 2 new tokens",
        "chat.py: error: the prompt fills the model's context of 36",
    ]
    answer = run.stdout.removesuffix("\n")
    assert answer and first["answer"].startswith(answer)


def test_chat_in_a_terminal_asks_for_each_turn_on_stderr():
    """In a terminal the user sees a hint and a prompt on stderr; stdout is the answer.
    (Piped input shows neither: tests/test_chat.py compares its stderr line by line.)"""
    conversation = chat_cases()[0]
    first = conversation["answers"][0]
    terminal, user_side = pty.openpty()
    command = [sys.executable, str(SAMPLES_DIR / "chat.py"), TINY_IR]
    command += ["--max-new-tokens", conversation["max_new_tokens"], "--f32"]
    process = subprocess.Popen(
        [str(arg) for arg in command],
        stdin=user_side,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=sample_env(),
    )
    os.close(user_side)
    # Typed ahead: the terminal holds the line until the sample reads it; Ctrl-D at
    # the start of a line is the end of input.
    os.write(terminal, conversation["turns"][0].encode() + b"\n\x04")
    stdout, stderr = process.communicate(timeout=120)
    os.close(terminal)
    assert process.returncode == 0, stderr
    assert stdout.decode() == first["answer"] + "\n"
    assert stderr.decode().splitlines() == [
        "Type a message, then Enter. Ctrl-D ends the chat.",
        f"> {first['fed']} tokens fed, {first['new_tokens']} new tokens",
        "> ",
    ]
