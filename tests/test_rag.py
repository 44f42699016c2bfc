"""samples/rag.py: fast tier on the committed tiny BERT (the embedder) and the tiny
Llama (the LLM); reference tier on the real all-MiniLM-L6-v2 and SmolLM2-135M-Instruct.

Known-good sources, recorded in tests/data/tiny-bert/expected_rag.json by
tests/fixtures/tiny_bert.py and recomputed in the reference tier: the passages ranked by
the cosine similarity of sentence-transformers' embeddings, and transformers' greedy
generate() on apply_chat_template() of the message the docstring lays out.
"""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from conftest import (
    FAMILIES,
    LLM_FILES,
    REPO,
    TINY_IR,
    UNKNOWN_DEVICE,
    check_bad_case,
    check_ctrl_c,
    copy_without,
    detokenize,
    files_read,
    ir_copy_with_eos,
    last_stats,
    read_cases,
    run_sample,
)

TINY_BERT = REPO / "tests" / "data" / "tiny-bert"
EMBEDDER = TINY_BERT / "ir"
DOCUMENTS = TINY_BERT / "documents.txt"
CASES = read_cases(TINY_BERT / "expected_rag.json", "tiny_bert.py")
PASSAGES = [
    passage.strip() for passage in DOCUMENTS.read_text().split("\n\n") if passage
]


def ask(question: str, *extra, model=TINY_IR, embedder=EMBEDDER, documents=DOCUMENTS):
    return run_sample(
        "rag.py",
        model,
        question,
        "--documents",
        documents,
        "--embedder",
        embedder,
        *extra,
    )


def retrieved(stderr: str) -> list[tuple[float, str]]:
    """rag.py's passage lines on stderr (score, preview), before the stats line."""
    pairs = [line.split(" ", 1) for line in stderr.splitlines()[:-1]]
    return [(float(score), text) for score, text in pairs]


def preview(passage: str) -> str:
    return " ".join(passage.split())[:80]


@pytest.mark.parametrize("case", CASES, ids=[case["question"][:30] for case in CASES])
def test_answer_equals_transformers_on_the_passages_sentence_transformers_ranks(case):
    """stderr: the three best passages by sentence-transformers' cosine similarity,
    best first, their scores to three decimals; stdout: transformers' answer to the
    rendered message, token for token (--f32); the stats line counts the prompt's
    tokens as apply_chat_template does (one case's question is cut for its
    embedding)."""
    run = ask(case["question"], "--f32", "--max-new-tokens", len(case["new_ids"]))
    assert run.returncode == 0, run.stderr
    assert run.stdout == case["text"] + "\n"
    expected = [(case["scores"][i], preview(PASSAGES[i])) for i in case["best"]]
    lines = retrieved(run.stderr)
    assert [text for _, text in lines] == [text for _, text in expected]
    for (score, _), (expected_score, _) in zip(lines, expected):
        assert abs(score - expected_score) <= 6e-4
    stats = last_stats(run.stderr)
    assert stats["prompt_tokens"] == len(case["prompt_ids"])
    assert stats["new_tokens"] == len(case["new_ids"])


def test_passages_option_takes_that_many_best_first():
    """--passages 1 and --passages 50 (more than the file holds: all of them)."""
    case = CASES[0]
    order = sorted(range(len(PASSAGES)), key=lambda i: -case["scores"][i])
    for count, expected in ((1, order[:1]), (50, order)):
        run = ask(case["question"], "--f32", "--passages", count, "--max-new-tokens", 1)
        assert run.returncode == 0, run.stderr
        texts = [text for _, text in retrieved(run.stderr)]
        assert texts == [preview(PASSAGES[i]) for i in expected]


@pytest.mark.parametrize("blank", ["\n\n", "\n \n", "\n\t\n", "\n \t \n\n  \n"])
def test_a_line_of_spaces_or_tabs_parts_paragraphs(blank, tmp_path):
    """A line that is empty once stripped is blank: "a" and "b" are two passages,
    each retrieved alone (issue #39; pasted text often has such lines)."""
    documents = tmp_path / "documents.txt"
    documents.write_text(f"The cat sat on the mat.{blank}Paris is in France.")
    run = ask(
        "Where is Paris?", "--passages", 5, "--max-new-tokens", 1, documents=documents
    )
    assert run.returncode == 0, run.stderr
    texts = sorted(text for _, text in retrieved(run.stderr))
    assert texts == ["Paris is in France.", "The cat sat on the mat."]


def test_each_ir_is_read_once(monkeypatch, capsys):
    """read_llm gives the tokenizer IR's rt_info (its chat_template) with the compiled
    tokenizer: each IR of both folders is read once (issue #39)."""
    args = [
        TINY_IR,
        "Where is Paris?",
        "--documents",
        DOCUMENTS,
        "--embedder",
        EMBEDDER,
    ]
    read = files_read("rag.py", [*args, "--max-new-tokens", 2], monkeypatch)
    embedder_files = ["openvino_model.xml", "openvino_tokenizer.xml"]
    assert sorted(read) == sorted(LLM_FILES + embedder_files)
    assert capsys.readouterr().out  # it answered


def test_an_embedder_without_normalize_ranks_by_cosine_too(tmp_path):
    """The fixture's weights with its Normalize module left out: cosine similarity
    does not depend on the vectors' lengths, so the scores, the passages and the
    answer stay the same."""
    embedder = tmp_path / "mean"
    shutil.copytree(EMBEDDER, embedder)
    modules = json.loads((embedder / "modules.json").read_text())
    kept = [module for module in modules if "Normalize" not in module["type"]]
    assert len(kept) == len(modules) - 1
    (embedder / "modules.json").write_text(json.dumps(kept))
    case = CASES[2]
    max_new_tokens = len(case["new_ids"])
    run = ask(
        case["question"], "--f32", "--max-new-tokens", max_new_tokens, embedder=embedder
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == case["text"] + "\n"
    lines = retrieved(run.stderr)
    assert [text for _, text in lines] == [preview(PASSAGES[i]) for i in case["best"]]
    for (score, _), index in zip(lines, case["best"]):
        assert abs(score - case["scores"][index]) <= 6e-4


def test_missing_pooling_config_falls_back_to_the_normalized_mean(tmp_path):
    """The fixture's own pooling is the mean, normalized: without the
    sentence-transformers files the ranking and the answer stay the same."""
    embedder = copy_without(EMBEDDER, "modules.json", tmp_path / "bare")
    shutil.rmtree(embedder / "1_Pooling")
    case = CASES[1]
    max_new_tokens = len(case["new_ids"])
    run = ask(
        case["question"], "--f32", "--max-new-tokens", max_new_tokens, embedder=embedder
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == case["text"] + "\n"
    texts = [text for _, text in retrieved(run.stderr)]
    assert texts == [preview(PASSAGES[i]) for i in case["best"]]


BAD_INPUTS = {
    "empty documents file": "holds no text",
    "blank documents file": "holds no text",
    "missing documents file": "No such file or directory",
    "no --documents": "the following arguments are required: --documents",
    "empty question": "the question is empty",
    "an LLM as embedder": "holds no text encoder",
    "an embedder as LLM": "openvino_detokenizer.xml",
    "no chat template": "has no chat_template: no chat model",
    "a CLS embedder": "this sample pools by the mean only",
    "a template that needs eos_token": "'eos_token' is undefined",
    "--passages 0": "--passages must be at least 1",
    "--max-new-tokens 0": "--max-new-tokens must be at least 1",
    "unknown device": UNKNOWN_DEVICE,
}
# Cases of a bad argument (argparse's line); the others are raised, for the guard.
ARGUMENT_CASES = {
    "no --documents",
    "empty question",
    "--passages 0",
    "--max-new-tokens 0",
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_code_2(name, tmp_path):
    args = ["What is it?", "--documents", DOCUMENTS, "--embedder", EMBEDDER]
    model = TINY_IR
    if name in ("empty documents file", "blank documents file"):
        documents = tmp_path / "documents.txt"
        documents.write_text("" if name.startswith("empty") else "\n\n  \n\n\n")
        args[2] = documents
    elif name == "missing documents file":
        args[2] = tmp_path / "nowhere.txt"
    elif name == "no --documents":
        args = ["What is it?"]
    elif name == "empty question":
        args[0] = " "
    elif name == "an LLM as embedder":
        args[4] = TINY_IR
    elif name == "an embedder as LLM":
        model = EMBEDDER
    elif name == "no chat template":
        model = FAMILIES / "gpt2" / "ir"  # GPT-2 has none
    elif name == "a CLS embedder":
        args[4] = shutil.copytree(EMBEDDER, tmp_path / "cls")
        pooling = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
        (args[4] / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    elif name == "a template that needs eos_token":
        model = FAMILIES / "zephyr" / "ir"  # `+ eos_token` after every turn
    elif name.startswith("--"):
        args += name.split()
    elif name == "unknown device":
        args += ["--device", "TPU"]
    run = run_sample("rag.py", model, *args)
    check_bad_case(run, BAD_INPUTS[name], name in ARGUMENT_CASES)


def test_ctrl_c_while_answering_exits_130_without_traceback(tmp_path):
    """A model that never says EOS, 20000 new tokens; SIGINT once the answer has
    started on stdout."""
    model = ir_copy_with_eos(TINY_IR, tmp_path / "no-eos", None)
    args = [model, "What is it?", "--documents", DOCUMENTS, "--embedder", EMBEDDER]

    def started(process) -> bool:
        return process.stdout.read(1) != b""

    check_ctrl_c("rag.py", *args, "--max-new-tokens", 20000, started=started)


def test_ctrl_c_while_embedding_exits_130_without_traceback(tmp_path):
    """Thousands of passages to embed; SIGINT a second after the encoder is loaded."""
    documents = tmp_path / "many.txt"
    documents.write_text("\n\n".join(PASSAGES * 2000))
    args = [TINY_IR, "What is it?", "--documents", documents, "--embedder", EMBEDDER]

    def started(process) -> bool:
        maps = Path(f"/proc/{process.pid}/maps")
        while "openvino_detokenizer.bin" not in maps.read_text():
            time.sleep(0.05)
        time.sleep(1)
        return maps.exists()

    check_ctrl_c("rag.py", *args, started=started)


# The real models: ten questions over tests/data/retrieval/documents.txt, each with
# the one passage that answers it (twelve passages: two answer nothing). Written before
# the sample ran on them.
RETRIEVAL = REPO / "tests" / "data" / "retrieval" / "documents.txt"
QUESTIONS = {
    "How do bees tell each other where to find flowers?": "Honey bees",
    "Who discovered penicillin and how?": "Penicillin was discovered",
    "How long is a marathon?": "Marathon runners",
    "What causes a solar eclipse?": "A solar eclipse",
    "Why do volcanoes erupt?": "Volcanoes form",
    "How many strings does a violin have?": "The violin",
    "What is special about castling in chess?": "In chess",
    "What do I need to make sourdough bread?": "To bake sourdough",
    "Which plant do green and black tea come from?": "Tea is",
    "Why was the Great Wall of China built?": "The Great Wall",
}


@pytest.mark.reference
def test_real_models_retrieve_the_passage_that_answers(default_model):
    """all-MiniLM-L6-v2 (the default embedder folder) ranks the answering passage
    first for each question; SmolLM2 answers (stats line last)."""
    from conftest import prepare

    prepare("prepare_embeddings.py")
    for question, opening in QUESTIONS.items():
        run = run_sample(
            "rag.py", question, "--documents", RETRIEVAL, "--max-new-tokens", 8
        )
        assert run.returncode == 0, run.stderr
        lines = retrieved(run.stderr)
        assert len(lines) == 3
        assert lines[0][1].startswith(opening), (question, lines)
        assert run.stdout.strip()
        assert last_stats(run.stderr)["new_tokens"] >= 1


@pytest.mark.reference
def test_real_default_command_answers_from_docs(default_model):
    """The README's command: docs/llm.md, the default folders; the passages come from
    docs/llm.md and the answer is on stdout."""
    from conftest import prepare

    prepare("prepare_embeddings.py")
    question = "How are the caches cut back in speculative decoding?"
    documents = REPO / "docs" / "llm.md"
    run = run_sample("rag.py", "--documents", documents, question)
    assert run.returncode == 0, run.stderr
    text = " ".join(documents.read_text().split())
    for _, passage in retrieved(run.stderr):
        assert passage in text
    assert run.stdout.strip()


# The tiny families whose chat template renders one user message without the
# tokenizer's special token strings (Zephyr's needs eos_token: refused above).
TEMPLATE_FAMILIES = ["gemma2", "llama3", "mistral", "phi3", "qwen2"]


@pytest.mark.reference
@pytest.mark.parametrize("family", TEMPLATE_FAMILIES)
def test_family_prompt_is_transformers_chat_template(family):
    """rag.py's answer on a tiny family equals openvino_genai's greedy answer to the
    token ids of transformers' apply_chat_template() of the same message (the BOS the
    template writes, Llama 3's dated header): rag.py renders the template without the
    special tokens' strings and lets the tokenizer IR add the BOS."""
    import openvino_genai
    from transformers import AutoTokenizer

    ir = FAMILIES / family / "ir"
    case = CASES[0]
    context = "\n\n".join(PASSAGES[index] for index in case["best"])
    content = f"{context}\n\nQuestion: {case['question']}"
    messages = [{"role": "user", "content": content}]
    ids = AutoTokenizer.from_pretrained(ir).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    pipe = openvino_genai.LLMPipeline(
        str(ir),
        "CPU",
        ATTENTION_BACKEND="SDPA",
        INFERENCE_PRECISION_HINT="f32",
        KV_CACHE_PRECISION="f32",
        DYNAMIC_QUANTIZATION_GROUP_SIZE="0",
    )
    config = openvino_genai.GenerationConfig(max_new_tokens=12, do_sample=False)
    tokens = openvino_genai.TokenizedInputs(
        ov.Tensor(np.array([ids], dtype=np.int64)),
        ov.Tensor(np.ones((1, len(ids)), dtype=np.int64)),
    )
    answer = pipe.generate(tokens, config).tokens[0]
    run = ask(case["question"], "--f32", "--max-new-tokens", 12, model=ir)
    assert run.returncode == 0, run.stderr
    assert [text for _, text in retrieved(run.stderr)] == [
        preview(PASSAGES[index]) for index in case["best"]
    ]
    assert last_stats(run.stderr)["prompt_tokens"] == len(ids)
    assert run.stdout == detokenize(ir, list(answer)) + "\n"
