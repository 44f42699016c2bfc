"""samples/continuous_batching.py: every answer equals greedy decoding's, however many
sequences share an inference.

Fast tier: the committed tiny fixture against transformers' greedy texts
(expected.json). With fewer places than prompts, places are reused (a new prompt
overwrites a finished one's cache blocks) and inferences mix a new prompt's prefill with
the others' next tokens. Reference tier (marked): the real default model against
openvino_genai's greedy generate on the same IR.
"""

from collections import Counter

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  lets the Core read the tokenizer IRs
import pytest

from conftest import (
    REAL_BATCH_PROMPTS,
    TINY_IR,
    check_bad_argument,
    check_bad_input,
    genai_greedy_texts,
    ir_copy_with_eos,
    last_stats,
    run_sample,
    tiny_llama_cases,
)

IR = TINY_IR
# A prompts file holds one prompt per line.
CASES = [case for case in tiny_llama_cases() if "\n" not in case.get("prompt", "")]


def run_batching(model, prompts: list[str], tmp_path, *args):
    (tmp_path / "prompts.txt").write_text(
        "".join(prompt + "\n" for prompt in prompts), encoding="utf-8"
    )
    return run_sample(
        "continuous_batching.py", model, "--prompts", tmp_path / "prompts.txt", *args
    )


@pytest.mark.parametrize("places", [1, 3, 32])
def test_answers_are_transformers_greedy_texts_in_prompt_order(places, tmp_path):
    """Twice the fixture's prompts (more prompts than places but for 32), answers in
    input order, one line each."""
    cases = CASES * 2
    run = run_batching(
        IR,
        [case["prompt"] for case in cases],
        tmp_path,
        "--max-sequences",
        places,
        "--max-new-tokens",
        cases[0]["max_new_tokens"],
        "--f32",
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:-1] == [
        case["text"].replace("\n", "\\n") for case in cases
    ]
    stats = last_stats(run.stderr)
    assert stats["prompts"] == len(cases)
    assert stats["new_tokens"] == sum(len(case["new_ids"]) for case in cases)
    assert stats["inferences"] == inferences_for(cases, places)


def inferences_for(cases: list[dict], places: int) -> int:
    """The inferences continuous batching needs, from the answers' lengths alone: a
    sequence holds its place for one inference per new token, plus the one that gives
    its EOS; a freed place takes the next prompt at the next inference."""
    free_at = [0] * places  # the inference after which each place is free
    for case in cases:
        place = free_at.index(min(free_at))
        free_at[place] += len(case["new_ids"]) + case["stops_on_eos"]
    return max(free_at)


def test_answers_ending_on_eos_free_their_places_for_the_next_prompts(tmp_path):
    """With another EOS id, answers end at different steps and their places take the
    next prompts at once."""
    counts = Counter(token for case in CASES for token in set(case["new_ids"]))
    eos = next(
        token for token, count in counts.most_common() if count < len(CASES)
    )  # in some answers, not all
    ends = {case["new_ids"].index(eos) for case in CASES if eos in case["new_ids"]}
    assert len(ends) > 1, "the answers would all end at the same step"
    detokenizer = ov.Core().compile_model(IR / "openvino_detokenizer.xml", "CPU")
    expected = [
        detokenizer(
            np.array(
                [
                    case["new_ids"][
                        : case["new_ids"].index(eos) if eos in case["new_ids"] else None
                    ]
                ],
                dtype=np.int64,
            )
        )["string_output"][0].replace("\n", "\\n")
        for case in CASES * 2
    ]
    run = run_batching(
        ir_copy_with_eos(IR, tmp_path / "ir", eos),
        [case["prompt"] for case in CASES * 2],
        tmp_path,
        "--max-sequences",
        3,
        "--max-new-tokens",
        CASES[0]["max_new_tokens"],
        "--f32",
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:-1] == expected


def test_default_precision_and_prompts_run():
    run = run_sample("continuous_batching.py", IR, "--max-new-tokens", 3)
    assert run.returncode == 0, run.stderr
    assert last_stats(run.stderr)["prompts"] == len(run.stdout.split("\n")[:-1]) >= 4


@pytest.mark.parametrize(
    "args, says",
    [
        (["--max-sequences", "0"], "--max-sequences"),
        (["--max-new-tokens", "0"], "--max-new-tokens"),
    ],
)
def test_bad_argument_gives_one_line_and_exit_code_2(args, says):
    check_bad_argument(run_sample("continuous_batching.py", IR, *args), says)


def test_a_missing_prompts_file_gives_one_line_and_exit_code_2():
    run = run_sample("continuous_batching.py", IR, "--prompts", "/nowhere/prompts.txt")
    check_bad_input(run, "No such file or directory")  # the file system's words


def test_a_prompts_file_without_prompts_is_bad_input(tmp_path):
    check_bad_input(run_batching(IR, ["", "   "], tmp_path), "holds no prompt")


@pytest.fixture(scope="module")
def greedy_texts(default_model) -> list[str]:
    """Known-good source: openvino_genai's greedy generate on the same IR (f32), newlines
    written as \\n."""
    texts = genai_greedy_texts(default_model, REAL_BATCH_PROMPTS, 30)
    return [text.replace("\n", "\\n") for text in texts]


@pytest.mark.reference
@pytest.mark.parametrize("places", [1, 4, 32])
def test_real_model_answers_are_greedy_texts(
    places, default_model, greedy_texts, tmp_path
):
    run = run_batching(
        default_model,
        REAL_BATCH_PROMPTS,
        tmp_path,
        "--max-sequences",
        places,
        "--max-new-tokens",
        30,
        "--f32",
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:-1] == greedy_texts
