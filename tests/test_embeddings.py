"""samples/text_embeddings.py: fast tier on the committed tiny random BERT (needs only
requirements.txt and pytest); reference tier on the real all-MiniLM-L6-v2 that
scripts/prepare_embeddings.py fetches.

Known-good source: sentence-transformers' encode() on the same weights, recorded in
tests/data/tiny-bert/expected.json by tests/fixtures/tiny_bert.py for four pooling
variants (mean or CLS, with or without Normalize) and recomputed in the reference tier.
"""

import json
import shutil

import numpy as np
import pytest

from conftest import (
    REPO,
    TINY_IR,
    UNKNOWN_DEVICE,
    check_bad_case,
    check_same_weights,
    copy_with_truncated,
    copy_without,
    last_stats,
    read_cases,
    rebuild,
    run_sample,
)

TINY_BERT = REPO / "tests" / "data" / "tiny-bert"
IR = TINY_BERT / "ir"
EXPECTED = read_cases(TINY_BERT / "expected.json", "tiny_bert.py")
VARIANTS = ["mean-normalize", "mean", "cls-normalize", "cls"]
EMBEDDINGS_MODEL = REPO / "models" / "all-MiniLM-L6-v2"  # prepare_embeddings.py


def variant_folder(name: str, tmp_path):
    """The tiny IR with the sentence-transformers files of one pooling variant."""
    folder = tmp_path / name
    shutil.copytree(IR, folder)
    for file_name, content in EXPECTED["variants"][name]["files"].items():
        (folder / file_name).write_text(json.dumps(content))
    return folder


def embed(model, texts: list[str], tmp_path, *extra):
    """Run the sample with --f32 --output; its run and the saved embeddings."""
    output = tmp_path / "embeddings.npy"
    run = run_sample("text_embeddings.py", model, *texts, "--f32", "--output", output)
    assert run.returncode == 0, run.stderr
    return run, np.load(output)


def similarities(stdout: str) -> np.ndarray:
    return np.array([[float(x) for x in line.split()] for line in stdout.splitlines()])


@pytest.mark.parametrize("name", VARIANTS)
def test_embeddings_equal_sentence_transformers(name, tmp_path):
    """One batch of texts of different lengths (one cut at 256 tokens, one empty):
    each row within 1e-5 of encode()'s, float32, in the texts' order; stdout is the
    cosine similarity matrix to four decimals; the stats line counts texts and
    tokens."""
    texts = EXPECTED["texts"]
    run, vectors = embed(variant_folder(name, tmp_path), texts, tmp_path)
    expected = np.array(EXPECTED["variants"][name]["vectors"], dtype=np.float32)
    assert vectors.dtype == np.float32 and vectors.shape == expected.shape
    np.testing.assert_allclose(vectors, expected, rtol=0, atol=1e-5)
    unit = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.abs(similarities(run.stdout) - unit @ unit.T).max() <= 6e-5
    stats = last_stats(run.stderr)
    assert stats["texts"] == len(texts) and stats["tokens"] == EXPECTED["tokens"]


def test_the_variants_differ():
    """The four recorded variants are four different answers (so each test above
    checks its own pooling)."""
    vectors = [np.array(EXPECTED["variants"][name]["vectors"]) for name in VARIANTS]
    for i, one in enumerate(vectors):
        for other in vectors[i + 1 :]:
            assert np.abs(one - other).max() > 1e-2


def test_without_sentence_transformers_files_mean_and_normalize(tmp_path):
    """No modules.json and no 1_Pooling/config.json: the mean, normalized (the
    docstring's fallback)."""
    folder = copy_without(IR, "modules.json", tmp_path / "bare")
    shutil.rmtree(folder / "1_Pooling")
    _, vectors = embed(folder, EXPECTED["texts"], tmp_path)
    expected = EXPECTED["variants"]["mean-normalize"]["vectors"]
    np.testing.assert_allclose(vectors, expected, rtol=0, atol=1e-5)


def test_a_text_alone_equals_its_row_in_a_batch(tmp_path):
    """Padding changes nothing: a short text and the cut long one, each alone."""
    expected = EXPECTED["variants"]["mean-normalize"]["vectors"]
    for index in (0, 5):
        _, vectors = embed(IR, [EXPECTED["texts"][index]], tmp_path)
        np.testing.assert_allclose(vectors[0], expected[index], rtol=0, atol=1e-5)


def unsupported_pooling(tmp_path):
    folder = variant_folder("mean", tmp_path)
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    pooling["pooling_mode_mean_tokens"] = False
    pooling["pooling_mode_max_tokens"] = True
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


BAD_INPUTS = {
    "missing folder": "openvino_model.xml: run scripts/prepare_embeddings.py",
    "an LLM folder": "holds no text encoder",
    "no tokenizer": "openvino_tokenizer.xml: run scripts/prepare_embeddings.py",
    "truncated model": "at offset",  # OpenVINO's XML parser says where it failed
    "broken modules.json": "error: Expecting value",  # JSON's own words
    "max pooling": "['pooling_mode_max_tokens']; this sample pools by mean or CLS",
    "no text": "the following arguments are required: texts",
    "no folder for --output": "no folder for --output",
    "unknown device": UNKNOWN_DEVICE,
}
# Cases of a bad argument (argparse's line); the others are raised, for the guard.
ARGUMENT_CASES = {"no text", "no folder for --output"}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_code_2(name, tmp_path):
    model = IR
    args = ["A cat"]
    if name == "missing folder":
        model = tmp_path / "nowhere"
    elif name == "an LLM folder":
        model = TINY_IR
    elif name == "no tokenizer":
        model = copy_without(IR, "openvino_tokenizer.xml", tmp_path / "m")
    elif name == "truncated model":
        model = copy_with_truncated(IR, "openvino_model.xml", tmp_path / "m")
    elif name == "broken modules.json":
        model = tmp_path / "m"
        shutil.copytree(IR, model)
        (model / "modules.json").write_text('[{"idx": ')
    elif name == "max pooling":
        model = unsupported_pooling(tmp_path)
    elif name == "no text":
        args = []
    elif name == "no folder for --output":
        args += ["--output", tmp_path / "nowhere" / "e.npy"]
    elif name == "unknown device":
        args += ["--device", "TPU"]
    run = run_sample("text_embeddings.py", model, *args)
    check_bad_case(run, BAD_INPUTS[name], name in ARGUMENT_CASES)
    assert not (tmp_path / "nowhere").exists()


# Texts for the real model, chosen before the sample ran on them: plain English, a
# question, French, Chinese, code, emoji, numbers, a single word, an empty text, and
# one over sentence-transformers' 256 tokens.
REAL_TEXTS = [
    "The weather is lovely today.",
    "How do I reset my password?",
    "Le petit chat dort sur le canapé.",
    "机器学习模型把文字变成数字。",
    "def add(a, b):\n    return a + b",
    "Party time 🎉🍕 with friends",
    "In 2026, 3.5 million people visited the museum.",
    "Hello",
    "",
    " ".join(["A very long document keeps repeating the same sentence."] * 40),
]


@pytest.fixture(scope="module")
def embeddings_model():
    """The real all-MiniLM-L6-v2 IR folder; prepared (idempotently) when missing."""
    from conftest import prepare

    prepare("prepare_embeddings.py")
    return EMBEDDINGS_MODEL


@pytest.mark.reference
def test_real_model_equals_sentence_transformers(embeddings_model, tmp_path):
    """SentenceTransformer on the extracted folder against the sample (--f32), ten
    texts, one over 256 tokens: within 1e-5."""
    from sentence_transformers import SentenceTransformer

    hf_dir = embeddings_model.with_name(embeddings_model.name + "-hf")
    reference = SentenceTransformer(str(hf_dir), device="cpu")
    assert reference.max_seq_length == 256
    assert len(reference.tokenize(REAL_TEXTS[-1:])["input_ids"][0]) == 256
    expected = reference.encode(REAL_TEXTS, batch_size=len(REAL_TEXTS))
    _, vectors = embed(embeddings_model, REAL_TEXTS, tmp_path)
    np.testing.assert_allclose(vectors, expected, rtol=0, atol=1e-5)


@pytest.mark.reference
def test_committed_tiny_bert_is_what_the_script_builds(tmp_path):
    """tests/fixtures/tiny_bert.py afresh: the same weights, tokenizer, embeddings and
    RAG answers."""
    rebuilt = rebuild("tiny_bert.py", tmp_path)
    check_same_weights(rebuilt / "ir" / "openvino_model.xml", IR / "openvino_model.xml")
    # The tokenizer IR holds strings, not numbers: it is rebuilt byte for byte.
    for name in (
        "openvino_tokenizer.xml",
        "openvino_tokenizer.bin",
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
    ):
        assert (rebuilt / "ir" / name).read_bytes() == (IR / name).read_bytes(), name
    fresh = json.loads((rebuilt / "expected.json").read_text())
    assert fresh["texts"] == EXPECTED["texts"]
    assert fresh["tokens"] == EXPECTED["tokens"]
    for name in VARIANTS:
        variant = fresh["variants"][name]
        assert variant["files"] == EXPECTED["variants"][name]["files"]
        np.testing.assert_allclose(
            variant["vectors"], EXPECTED["variants"][name]["vectors"], atol=1e-6
        )
    documents = (rebuilt / "documents.txt").read_text()
    assert documents == (TINY_BERT / "documents.txt").read_text()
    rag = json.loads((rebuilt / "expected_rag.json").read_text())
    committed = json.loads((TINY_BERT / "expected_rag.json").read_text())
    for fresh_case, case in zip(rag, committed, strict=True):
        np.testing.assert_allclose(
            fresh_case.pop("scores"), case.pop("scores"), atol=1e-6
        )
        assert fresh_case == case
