"""Every LLM sample on what people export: tiny random-weight models of nine families
(Llama 3, Mistral, Phi-3, Gemma 2, Qwen2.5, Zephyr, GPT-2, BLOOM, MPT), each with its
family's special tokens, chat template and generation_config.json (fast tier).

Known-good source: transformers' generate() and apply_chat_template with the folder's
generation config, recorded in tests/data/families/*/expected.json by
tests/fixtures/tiny_families.py (tests/test_reference.py rebuilds and recomputes them).
Texts are compared as the folder's OpenVINO detokenizer writes transformers' token ids.
"""

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  lets the Core read the tokenizer IRs
import pytest

from conftest import (
    FAMILIES,
    FAMILY_NAMES,
    GREEDY_SAMPLES,
    PAGED_SAMPLES,
    check_bad_input,
    check_family_beam,
    check_family_chat,
    check_family_greedy,
    detokenize,
    family_expected,
    last_stats,
    load_sample,
    run_sample,
)

PAIRS = [
    (family, sample)
    for family in FAMILY_NAMES
    for sample in GREEDY_SAMPLES
    if not (family == "mpt" and sample in PAGED_SAMPLES)
]


@pytest.mark.parametrize("family, sample", PAIRS)
def test_greedy_samples_give_transformers_answers(family, sample, tmp_path):
    check_family_greedy(sample, FAMILIES / family, tmp_path)


@pytest.mark.parametrize("sample", PAGED_SAMPLES)
def test_paged_samples_refuse_mpt_saying_why(sample):
    """Their text would be wrong: OpenVINO's paged rewrite of MPT's attention."""
    args = ["hello"] if sample == "paged_attention.py" else []
    run = run_sample(sample, FAMILIES / "mpt" / "ir", *args)
    check_bad_input(run, "OpenVINO's paged attention gets MPT wrong")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_beam_search_gives_transformers_hypotheses(family):
    check_family_beam(FAMILIES / family)


CHATS = [
    (family, index)
    for family in FAMILY_NAMES
    for index in range(2)
    if index < len(family_expected(FAMILIES / family).get("chats", []))
]


@pytest.mark.parametrize("family, index", CHATS)
def test_chat_gives_transformers_answers_and_feeds_only_what_is_new(family, index):
    """Llama 3's template writes today's date: its chats are checked in the reference
    tier, which rebuilds them on the day."""
    conversation = family_expected(FAMILIES / family)["chats"][index]
    if conversation["dated"]:
        assert family == "llama3"
        return
    check_family_chat(FAMILIES / family, conversation)


def test_qwen_sampling_takes_the_models_defaults_not_its_penalty():
    """multinomial.py takes temperature and top_p from generation_config.json where no
    flag is given, and says so; with --top-k 1 it is transformers' greedy answer
    without the file's repetition penalty (1.05), which no sample applies."""
    folder = FAMILIES / "qwen2"
    for case in family_expected(folder)["prompts"]:
        args = [case["prompt"], "--max-new-tokens", case["max_new_tokens"], "--f32"]
        run = run_sample("multinomial.py", folder / "ir", *args, "--top-k", 1)
        assert run.returncode == 0, run.stderr
        assert run.stdout == detokenize(folder / "ir", case["new_ids"]) + "\n"
        assert run.stderr.splitlines()[:-1] == [
            "generation_config.json: temperature 0.7, top_p 0.8",
        ]
        assert last_stats(run.stderr)["new_tokens"] == len(case["new_ids"])


def test_lm_head_slice_reaches_through_gemmas_logit_softcapping():
    """Gemma 2's logits are MatMul -> Divide -> Tanh -> Multiply: the slice must still
    find the MatMul, so a long prompt makes (1, 1, vocab) logits, the last row of the
    full ones."""
    greedy = load_sample("greedy.py")
    core = ov.Core()
    ir = FAMILIES / "gemma2" / "ir" / "openvino_model.xml"
    full = core.compile_model(core.read_model(ir), "CPU", greedy.F32_CONFIG)
    sliced_model = core.read_model(ir)
    greedy.keep_last_logits(sliced_model, 1)
    sliced = core.compile_model(sliced_model, "CPU", greedy.F32_CONFIG)
    full_request = full.create_infer_request()
    inputs = greedy.llm_inputs(full_request, list(range(5, 40)), 0)
    full_logits = full_request.infer(inputs)["logits"]
    sliced_logits = sliced.create_infer_request().infer(inputs)["logits"]
    assert full_logits.shape[1] == 35 and sliced_logits.shape[1] == 1
    # The same arithmetic on fewer rows: equal to f32 rounding.
    np.testing.assert_allclose(sliced_logits[0, 0], full_logits[0, -1], atol=1e-5)


def test_qwen_sampling_defaults_are_the_flags_the_file_names():
    """Without flags, the draws are those of --temperature 0.7 --top-k 20 --top-p 0.8
    (the file's values), not of transformers' defaults (1.0, 50, 1.0)."""
    ir = FAMILIES / "qwen2" / "ir"
    args = [ir, "Once upon a time", "--max-new-tokens", 16, "--seed", 7, "--f32"]
    from_file = run_sample("multinomial.py", *args)
    flags = ["--temperature", 0.7, "--top-k", 20, "--top-p", 0.8]
    explicit = run_sample("multinomial.py", *args, *flags)
    defaults = ["--temperature", 1.0, "--top-k", 50, "--top-p", 1.0]
    transformers_defaults = run_sample("multinomial.py", *args, *defaults)
    assert from_file.returncode == explicit.returncode == 0, from_file.stderr
    assert from_file.stdout == explicit.stdout != transformers_defaults.stdout
