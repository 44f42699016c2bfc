"""samples/speculative_decoding.py and samples/prompt_lookup.py: both must give greedy
decoding's text exactly.

Fast tier: the committed tiny fixture, whose transformers greedy texts are in
expected.json. Reference tier (marked): the real pair, the default u4 model drafting for
an fp32 conversion of the same GGUF, against openvino_genai on the same IRs.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from conftest import (
    FAMILIES,
    REPO,
    TINY_IR,
    check_bad_argument,
    check_bad_case,
    check_bad_input,
    detokenize,
    genai_greedy_texts,
    last_stats,
    run_sample,
    tiny_llama_cases,
)

IR = TINY_IR
CASES = tiny_llama_cases()


def stats(run) -> dict:
    """The last stderr line: prompt and new tokens, inferences of the checking model,
    guesses accepted and made."""
    assert run.returncode == 0, run.stderr
    return last_stats(run.stderr)


def disagreeing_draft(tmp_path: Path) -> Path:
    """The tiny model with its vocabulary reversed at the output: same tokenizer,
    guesses the main model rejects."""
    shutil.copytree(IR, tmp_path / "draft")
    model = ov.Core().read_model(IR / "openvino_model.xml")
    logits = model.output("logits").get_node()
    vocab = logits.get_output_partial_shape(0)[2].get_length()
    reversed_logits = ov.opset13.gather(
        logits.input_value(0), np.arange(vocab)[::-1].copy(), np.int64(2)
    )
    logits.input(0).replace_source_output(reversed_logits.output(0))
    ov.save_model(model, tmp_path / "draft" / "openvino_model.xml")
    return tmp_path / "draft"


@pytest.mark.parametrize("case", CASES, ids=[f"prompt{i}" for i in range(len(CASES))])
def test_speculative_with_the_model_itself_as_draft_is_greedy(case):
    """Every guess is the main model's own choice: transformers' greedy text with fewer
    main-model inferences."""
    run = run_sample(
        "speculative_decoding.py",
        IR,
        IR,
        case["prompt"],
        "--max-new-tokens",
        case["max_new_tokens"],
        "--f32",
    )
    assert run.stdout == case["text"] + "\n"
    found = stats(run)
    assert found["new_tokens"] == len(case["new_ids"])
    if found["new_tokens"] >= 4:
        assert found["inferences"] < found["new_tokens"]
        assert (
            found["accepted"] >= found["proposed"] - 1
        )  # the draft may guess on past the main model's EOS


def test_speculative_with_a_disagreeing_draft_is_still_greedy(tmp_path):
    draft = disagreeing_draft(tmp_path)
    for case in CASES[:4]:
        run = run_sample(
            "speculative_decoding.py",
            draft,
            IR,
            case["prompt"],
            "--max-new-tokens",
            case["max_new_tokens"],
            "--f32",
        )
        assert run.stdout == case["text"] + "\n"
        found = stats(run)
        assert found["accepted"] < found["proposed"] / 2


@pytest.mark.parametrize("case", CASES, ids=[f"prompt{i}" for i in range(len(CASES))])
def test_prompt_lookup_is_greedy(case):
    run = run_sample(
        "prompt_lookup.py",
        IR,
        case["prompt"],
        "--max-new-tokens",
        case["max_new_tokens"],
        "--f32",
    )
    assert run.stdout == case["text"] + "\n"
    assert stats(run)["new_tokens"] == len(case["new_ids"])


def test_max_new_tokens_cuts_inside_accepted_guesses():
    """With all guesses accepted several tokens come at once; the text still stops at
    exactly --max-new-tokens."""
    case = next(case for case in CASES if not case["stops_on_eos"])
    for tokens in (1, 2, 7):
        run = run_sample(
            "speculative_decoding.py",
            IR,
            IR,
            case["prompt"],
            "--max-new-tokens",
            tokens,
            "--f32",
        )
        assert stats(run)["new_tokens"] == tokens
        assert run.stdout == detokenize(IR, case["new_ids"][:tokens]) + "\n"


BAD_INPUTS = {
    "other vocabulary": (
        lambda tmp_path: [FAMILIES / "qwen2" / "ir", IR, "hello"],
        "tokenize otherwise: pick one family",
    ),
    "missing draft": (
        lambda tmp_path: [tmp_path / "nowhere", IR, "hello"],
        "openvino_model.xml",
    ),
    "missing main": (
        lambda tmp_path: [IR, tmp_path / "nowhere", "hello"],
        "openvino_model.xml",
    ),
    "empty prompt": (lambda tmp_path: [IR, IR, " "], "prompt is empty"),
    "zero tokens": (
        lambda tmp_path: [IR, IR, "hello", "--max-new-tokens", "0"],
        "at least 1",
    ),
}
# Cases of a bad argument (argparse's line); the others are raised, for the guard.
ARGUMENT_CASES = {"empty prompt", "zero tokens"}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_speculative_bad_input_gives_one_line_and_exit_code_2(name, tmp_path):
    make_args, says = BAD_INPUTS[name]
    run = run_sample("speculative_decoding.py", *make_args(tmp_path))
    check_bad_case(run, says, name in ARGUMENT_CASES)


@pytest.mark.parametrize(
    "args, says",
    [
        ([IR, ""], "prompt is empty"),
        ([IR, "hi", "--max-new-tokens", "-1"], "at least 1"),
    ],
)
def test_prompt_lookup_bad_argument_gives_one_line_and_exit_code_2(args, says):
    run = run_sample("prompt_lookup.py", *args)
    check_bad_argument(run, says)


def test_prompt_lookup_missing_folder_gives_one_line_and_exit_code_2():
    run = run_sample("prompt_lookup.py", "nowhere", "hello")
    check_bad_input(run, "no nowhere/openvino_model.xml")


# Reference tier: the real models.
FP32_MODEL = REPO / "models" / "SmolLM2-135M-Instruct-fp32"
REAL_PROMPTS = {
    "counting (nearly every guess right)": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,",
    "a question (most guesses wrong)": "The capital of France is",
    "a story": "Once upon a time, a little robot",
    "Chinese": "中国的首都是",
    "code": "def quicksort(items):\n",
}
CODE = (
    'def area(width, height):\n    """Return the area of a width x height rectangle."""\n    return width * height'
    '\n\n\ndef perimeter(width, height):\n    """Return the perimeter of a width x height rectangle."""\n'
)
LIST = "Shopping list:\n- 2 apples\n- 3 pears\n- 1 loaf of bread\n- 6 eggs\n\nThe same list, sorted:\n-"
SUMMARY = (
    "Summarise: The lighthouse on the north cliff was built in 1852 to guide fishing boats home through "
    "the fog. It was automated in 1990 and its keeper's cottage became a small museum about the coast.\n"
    "Summary: The lighthouse on the north cliff"
)


@pytest.fixture(scope="module")
def fp32_model(default_model) -> Path:
    """The default model's GGUF converted to fp32 by scripts/convert.py (transformers
    dequantises it exactly)."""
    if not (FP32_MODEL / "openvino_model.xml").is_file():
        convert = subprocess.run(
            [
                sys.executable,
                str(REPO / "scripts" / "convert.py"),
                str(REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"),
                str(FP32_MODEL),
                "--weight-format",
                "fp32",
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        assert convert.returncode == 0, convert.stderr[-3000:]
    return FP32_MODEL


@pytest.mark.reference
def test_real_speculative_pair_gives_the_main_models_greedy_text(
    default_model, fp32_model
):
    """Known-good source: openvino_genai's greedy generate on the fp32 main model.
    Draft: the default u4 model (same GGUF, same tokenizer)."""
    expected = genai_greedy_texts(fp32_model, list(REAL_PROMPTS.values()), 40)
    rates = {}
    for (name, prompt), text in zip(REAL_PROMPTS.items(), expected):
        run = run_sample(
            "speculative_decoding.py",
            default_model,
            fp32_model,
            prompt,
            "--max-new-tokens",
            40,
            "--f32",
        )
        assert run.stdout == text + "\n", name
        found = stats(run)
        rates[name] = found["accepted"] / found["proposed"]
    assert (
        rates["counting (nearly every guess right)"] >= 0.9
        and rates["a question (most guesses wrong)"] < 0.5
    )
    assert found["inferences"] < found["new_tokens"]


@pytest.mark.reference
@pytest.mark.parametrize(
    "prompt", [CODE, LIST, SUMMARY, "Once upon a time, a little robot"]
)
def test_real_prompt_lookup_gives_greedy_text(prompt, default_model):
    """Known-good source: openvino_genai's greedy generate on the same IR; where the
    answer copies the prompt, fewer inferences."""
    run = run_sample(
        "prompt_lookup.py", default_model, prompt, "--max-new-tokens", 40, "--f32"
    )
    assert run.stdout == genai_greedy_texts(default_model, [prompt], 40)[0] + "\n"
    found = stats(run)
    if prompt in (CODE, SUMMARY):
        assert found["inferences"] < found["new_tokens"]


def test_draft_grows_by_two_while_every_guess_holds():
    """The model drafting for itself: every guess holds, so the draft grows 2, 4, 6, 8
    (its cap). Worked by hand for 24 new tokens: the prefill gives 1, then 2 + 1, 4 + 1,
    6 + 1, and the 8 tokens left as 8 guesses (+ 1 cut off): 5 main inferences, 20
    guesses, all accepted."""
    case = CASES[0]
    assert len(case["new_ids"]) == 24 and not case["stops_on_eos"]
    args = [IR, IR, case["prompt"], "--max-new-tokens", 24, "--f32"]
    found = stats(run_sample("speculative_decoding.py", *args))
    assert (found["inferences"], found["proposed"], found["accepted"]) == (5, 20, 20)


def draft_guessing_after(tmp_path: Path, after: int, guess: int) -> Path:
    """The tiny model as a draft that agrees with it except right after token AFTER,
    where it guesses GUESS: its logits get +1e4 on GUESS when the last input token is
    AFTER. Whenever the draft's cache holds the accepted text, its guesses are
    predictable from the main model's greedy tokens alone."""
    shutil.copytree(IR, tmp_path / "draft")
    model = ov.Core().read_model(IR / "openvino_model.xml")
    logits = model.output("logits").get_node()
    vocab = logits.get_output_partial_shape(0)[2].get_length()
    input_ids = model.input("input_ids").get_node()
    end = np.iinfo(np.int64).max
    last_id = ov.opset13.slice(input_ids, [-1], [end], [1], axes=[1])  # (batch, 1)
    is_after = ov.opset13.convert(ov.opset13.equal(last_id, np.int64(after)), "f32")
    boost = np.zeros((1, 1, vocab), dtype=np.float32)
    boost[0, 0, guess] = 1e4
    bias = ov.opset13.multiply(ov.opset13.unsqueeze(is_after, np.int64(2)), boost)
    biased = ov.opset13.add(logits.input_value(0), bias)  # the LM head stays input 0
    logits.input(0).replace_source_output(biased.output(0))
    ov.save_model(model, tmp_path / "draft" / "openvino_model.xml")
    return tmp_path / "draft"


def test_draft_cache_keeps_only_the_accepted_text(tmp_path):
    """A draft that is wrong right after token 373, which the answer holds twice.
    Trimmed to the accepted text after each check, its cache makes its next guesses the
    main model's own, so the counts follow docs/llm.md's rule (draft size 2, up by 2
    while every guess holds, down by 1 otherwise, at most 8) on transformers' tokens.
    A cache that kept the rejected guesses would guess otherwise."""
    after, guess = 373, 5
    case = CASES[0]
    text = case["prompt_ids"] + case["new_ids"]
    assert case["new_ids"].count(after) == 2 and guess not in case["new_ids"]
    tokens = text[: len(case["prompt_ids"]) + 1]  # the prefill gives the first token
    inferences, proposed, accepted, size = 1, 0, 0, 2
    while len(tokens) < len(text):
        count = min(size, len(text) - len(tokens))
        agreed = 0  # guesses before the first wrong one, all on the greedy text
        while agreed < count and text[len(tokens) + agreed - 1] != after:
            agreed += 1
        tokens = text[: len(tokens) + agreed + 1]
        inferences += 1
        proposed += count
        accepted += agreed
        size = min(size + 2, 8) if agreed == count else max(size - 1, 1)
    draft = draft_guessing_after(tmp_path, after, guess)
    args = [draft, IR, case["prompt"], "--max-new-tokens", len(case["new_ids"])]
    run = run_sample("speculative_decoding.py", *args, "--f32")
    assert run.stdout == case["text"] + "\n"
    found = stats(run)
    assert accepted < proposed  # the case has rejections to trim
    assert (found["inferences"], found["proposed"], found["accepted"]) == (
        inferences,
        proposed,
        accepted,
    )


def lookup_rule(tokens: list[int]) -> list[int]:
    """docs/llm.md's rule: the tokens (5 at most) that followed the latest earlier
    occurrence of the last n-gram, n from 3 down to 1."""
    for n in (3, 2, 1):
        if n < len(tokens):
            for start in range(len(tokens) - n - 1, -1, -1):
                if tokens[start : start + n] == tokens[-n:]:
                    return tokens[start + n : start + n + 5]
    return []


@pytest.mark.parametrize("index", [5, 6], ids=["repeating", "once-upon"])
def test_prompt_lookup_makes_the_documented_guesses(index):
    """The guesses, checks and inferences that the rule makes on transformers' own
    tokens (the model agrees with a guess exactly where it is the next greedy token)."""
    case = CASES[index]
    text = case["prompt_ids"] + case["new_ids"]
    tokens = text[: len(case["prompt_ids"]) + 1]  # the prefill gives the first token
    inferences, proposed, accepted = 1, 0, 0
    while len(tokens) < len(text):
        guesses = lookup_rule(tokens)[: len(text) - len(tokens)]
        agreed = 0
        while agreed < len(guesses) and guesses[agreed] == text[len(tokens) + agreed]:
            agreed += 1
        tokens = text[: len(tokens) + agreed + 1]
        inferences += 1
        proposed += len(guesses)
        accepted += agreed
    args = [IR, case["prompt"], "--max-new-tokens", len(case["new_ids"]), "--f32"]
    found = stats(run_sample("prompt_lookup.py", *args))
    assert (found["inferences"], found["proposed"], found["accepted"]) == (
        inferences,
        proposed,
        accepted,
    )
    assert accepted > 0  # the case has guesses that hold
