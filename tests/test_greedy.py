"""samples/greedy.py on the committed tiny fixture: fast tier, needs only requirements.txt and pytest.

Known-good source: transformers' greedy generate() on the same weights, recorded in
tests/data/tiny-llama/expected.json by scripts/tiny_llm.py (tests/test_reference.py recomputes it).
"""
import re
import shutil

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  lets the Core read the tokenizer IRs
import pytest

from conftest import TINY_LLAMA, check_bad_input, check_ctrl_c, ir_copy_with_eos, run_sample, tiny_llama_cases

IR = TINY_LLAMA / "ir"
CASES = tiny_llama_cases()
STATS = re.compile(r"^(\d+) prompt tokens, (\d+) new tokens, first in \d+ ms, then [\d.]+ tokens/s$")


def check_against_reference(run, case) -> None:
    """stdout is the text transformers' tokens decode to; stderr counts the same prompt and new tokens."""
    assert run.returncode == 0, run.stderr
    assert run.stdout == case["text"] + "\n"
    stats = STATS.match(run.stderr.strip().splitlines()[-1])
    assert stats, run.stderr
    assert (int(stats[1]), int(stats[2])) == (len(case["prompt_ids"]), len(case["new_ids"]))


@pytest.mark.parametrize("case", CASES, ids=[f"prompt{i}" for i in range(len(CASES))])
def test_tiny_llama_matches_transformers(case):
    """Token for token with transformers' greedy generate (f32), including a stop on EOS."""
    check_against_reference(run_sample("greedy.py", IR, case["prompt"], "--max-new-tokens", case["max_new_tokens"],
                                       "--f32"), case)


def test_fixture_covers_what_it_must():
    """The cases hold a one-token prompt, a long prompt, a stop on EOS and a run to max_new_tokens."""
    lengths = [len(case["prompt_ids"]) for case in CASES]
    assert min(lengths) == 1 and max(lengths) >= 200
    assert {case["stops_on_eos"] for case in CASES} == {True, False}
    assert any(re.search(r"[^\x00-\x7f]", case["prompt"]) for case in CASES)


def test_shorter_max_new_tokens_gives_a_prefix():
    case = next(case for case in CASES if not case["stops_on_eos"])
    run = run_sample("greedy.py", IR, case["prompt"], "--max-new-tokens", 5, "--f32")
    assert run.returncode == 0, run.stderr
    assert STATS.match(run.stderr.strip().splitlines()[-1])[2] == "5"
    assert case["text"].startswith(run.stdout[:-1])


def test_default_precision_runs():
    """Without --f32 the CPU may compute in bf16: the text may differ, the run must still finish."""
    run = run_sample("greedy.py", IR, CASES[0]["prompt"], "--max-new-tokens", 8)
    assert run.returncode == 0, run.stderr
    assert STATS.match(run.stderr.strip().splitlines()[-1])


def test_tokenizer_round_trip_and_prompt_ids():
    """The tokenizer IRs give transformers' prompt ids and decode multi-byte text back unchanged."""
    core = ov.Core()
    tokenizer = core.compile_model(IR / "openvino_tokenizer.xml", "CPU")
    detokenizer = core.compile_model(IR / "openvino_detokenizer.xml", "CPU")
    for case in CASES:
        ids = tokenizer([case["prompt"]])["input_ids"]
        assert ids.tolist() == [case["prompt_ids"]]
        assert detokenizer(ids)["string_output"][0] == case["prompt"]


def test_streaming_equals_one_shot_decode_across_split_characters():
    """Some answers end a step in the middle of a UTF-8 character: stdout still equals the one-shot decode."""
    detokenizer = ov.Core().compile_model(IR / "openvino_detokenizer.xml", "CPU")
    split = []
    for case in CASES:
        prefixes = [detokenizer(np.array([case["new_ids"][:n]]))["string_output"][0]
                    for n in range(1, len(case["new_ids"]) + 1)]
        if any(text.endswith("\ufffd") for text in prefixes[:-1]) and prefixes[-1] == case["text"]:
            split.append(case)
    assert split, "no case splits a character: the streaming test would prove nothing"
    for case in split:
        check_against_reference(run_sample("greedy.py", IR, case["prompt"], "--max-new-tokens",
                                           case["max_new_tokens"], "--f32"), case)


def non_stateful_folder(tmp_path):
    """A folder with the tiny tokenizer IRs and a model that lacks beam_idx (as a non-stateful export)."""
    shutil.copytree(IR, tmp_path, dirs_exist_ok=True)
    inputs = [ov.opset13.parameter([-1, -1], ov.Type.i64, name=name)
              for name in ("input_ids", "attention_mask", "position_ids")]
    logits = ov.opset13.convert(ov.opset13.unsqueeze(inputs[0], 2), ov.Type.f32)
    logits.output(0).set_names({"logits"})
    ov.save_model(ov.Model([logits], inputs), tmp_path / "openvino_model.xml")
    return tmp_path


def folder_without(name):
    def make(tmp_path):
        shutil.copytree(IR, tmp_path, dirs_exist_ok=True)
        (tmp_path / name).unlink()
        return tmp_path
    return make


BAD_INPUTS = {
    "missing folder": (lambda tmp_path: tmp_path / "nowhere", ["hello"], "openvino_model.xml"),
    "empty folder": (lambda tmp_path: tmp_path, ["hello"], "scripts/prepare_default_model.py"),
    "no detokenizer": (folder_without("openvino_detokenizer.xml"), ["hello"], "openvino_detokenizer.xml"),
    "not stateful": (non_stateful_folder, ["hello"], "stateful"),
    "no eos id": (lambda tmp_path: ir_copy_with_eos(IR, tmp_path, None), ["hello"], "eos_token_id"),
    "empty prompt": (lambda tmp_path: IR, [""], "prompt is empty"),
    "blank prompt": (lambda tmp_path: IR, ["  \n"], "prompt is empty"),
    "zero tokens": (lambda tmp_path: IR, ["hello", "--max-new-tokens", "0"], "at least 1"),
    "negative tokens": (lambda tmp_path: IR, ["hello", "--max-new-tokens", "-3"], "at least 1"),
    "not a number": (lambda tmp_path: IR, ["hello", "--max-new-tokens", "many"], "invalid int value"),
    "unknown device": (lambda tmp_path: IR, ["hello", "--device", "TPU"], "--device TPU"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_code_2(name, tmp_path):
    make_folder, args, says = BAD_INPUTS[name]
    run = run_sample("greedy.py", make_folder(tmp_path), *args)
    check_bad_input(run, says)


def test_ctrl_c_exits_130_without_traceback():
    """SIGINT while generating ends the process with 130 and no traceback."""
    check_ctrl_c("greedy.py", IR, "Once upon a time", "--max-new-tokens", 1000000, "--f32",
                 started=lambda process: process.stdout.read(1))  # generation has started
