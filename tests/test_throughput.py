"""samples/throughput.py: every answer equals greedy decoding's, whatever the number of
requests in flight.

Fast tier: the committed tiny fixture against transformers' greedy texts
(expected.json). Reference tier (marked): the real default model against
openvino_genai's greedy generate on the same IR.
"""

import pytest

from conftest import (
    REAL_BATCH_PROMPTS,
    TINY_IR,
    UNKNOWN_DEVICE,
    check_bad_input,
    genai_greedy_texts,
    last_stats,
    run_sample,
    tiny_llama_cases,
)

IR = TINY_IR
# A prompts file holds one prompt per line.
CASES = [case for case in tiny_llama_cases() if "\n" not in case.get("prompt", "")]


def run_throughput(model, prompts: list[str], tmp_path, *args):
    (tmp_path / "prompts.txt").write_text(
        "".join(prompt + "\n" for prompt in prompts), encoding="utf-8"
    )
    return run_sample(
        "throughput.py", model, "--prompts", tmp_path / "prompts.txt", "--f32", *args
    )


@pytest.mark.parametrize("requests", [1, 2, 4])
def test_answers_are_transformers_greedy_texts_in_prompt_order(requests, tmp_path):
    """Twice the fixture's prompts (more prompts than requests), their answers in input
    order, one line each."""
    cases = CASES * 2
    run = run_throughput(
        IR,
        [case["prompt"] for case in cases],
        tmp_path,
        "--requests",
        requests,
        "--max-new-tokens",
        cases[0]["max_new_tokens"],
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:-1] == [
        case["text"].replace("\n", "\\n") for case in cases
    ]
    stats = last_stats(run.stderr)
    assert stats["prompts"] == len(cases)
    assert stats["new_tokens"] == sum(len(case["new_ids"]) for case in cases)
    assert stats["requests"] == requests


def test_default_prompts_and_requests(tmp_path):
    run = run_sample("throughput.py", IR, "--max-new-tokens", 3)
    assert run.returncode == 0, run.stderr
    assert last_stats(run.stderr)["prompts"] == len(run.stdout.split("\n")[:-1]) >= 4


@pytest.mark.parametrize(
    "args, says",
    [
        (["--prompts", "/nowhere/prompts.txt"], "can't open"),
        (["--requests", "0"], "--requests"),
        (["--max-new-tokens", "0"], "--max-new-tokens"),
        (["--device", "TPU"], UNKNOWN_DEVICE),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(args, says):
    run = run_sample("throughput.py", IR, *args)
    check_bad_input(run, says)


def test_a_prompts_file_without_prompts_is_bad_input(tmp_path):
    run = run_throughput(IR, ["", "   "], tmp_path)
    check_bad_input(run, "holds no prompt")


@pytest.mark.reference
@pytest.mark.parametrize("requests", [1, 2, 4])
def test_real_model_answers_are_greedy_texts(requests, default_model, tmp_path):
    """Known-good source: openvino_genai's greedy generate on the same IR (f32)."""
    texts = genai_greedy_texts(default_model, REAL_BATCH_PROMPTS, 30)
    expected = [text.replace("\n", "\\n") for text in texts]
    run = run_throughput(
        default_model,
        REAL_BATCH_PROMPTS,
        tmp_path,
        "--requests",
        requests,
        "--max-new-tokens",
        30,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:-1] == expected
