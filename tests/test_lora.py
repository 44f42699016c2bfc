"""samples/lora.py: fast tier on the committed tiny Llama and tiny Qwen2 with random
peft adapters (tests/data/tiny-lora, by tests/fixtures/tiny_lora.py); reference tier on
the adapter scripts/train_lora.py trains on the default model.

Known-good source: peft's PeftModel.generate() (greedy) on the same base weights and
adapter, recorded by the builder and recomputed in the reference tier; transformers'
answers of the base model for --alpha 0.
"""

import json
import shutil
import struct

import numpy as np
import pytest

from conftest import (
    FAMILIES,
    REPO,
    TINY_IR,
    UNKNOWN_DEVICE,
    check_bad_case,
    detokenize,
    last_stats,
    read_cases,
    rebuild,
    run_sample,
    tiny_llama_cases,
)

TINY_LORA = REPO / "tests" / "data" / "tiny-lora"
CASES = read_cases(TINY_LORA / "expected.json", "tiny_lora.py")
BASES = {"llama": TINY_IR, "qwen2": FAMILIES / "qwen2" / "ir"}


def case_id(case: dict) -> str:
    return f"{case['adapter']}-{case['alpha']}-{case['prompt'][:12]}"


def lora(model, adapter, prompt, *extra):
    return run_sample("lora.py", model, adapter, prompt, "--f32", *extra)


@pytest.mark.parametrize("case", CASES, ids=[case_id(case) for case in CASES])
def test_adapter_gives_peft_answer(case):
    """Token for token against peft at --f32: float32, bfloat16 (rsLoRA) and float16
    adapters, on attention and MLP layers, at full and half strength (--alpha 0.5
    against peft with every B halved); the text is what the folder's detokenizer makes
    of peft's tokens."""
    model = BASES[case["base"]]
    adapter = TINY_LORA / case["adapter"]
    max_new_tokens = ["--max-new-tokens", 16, "--alpha", case["alpha"]]
    run = lora(model, adapter, case["prompt"], *max_new_tokens)
    assert run.returncode == 0, run.stderr
    assert run.stdout == detokenize(model, case["new_ids"]) + "\n"
    stats = last_stats(run.stderr)
    assert stats["prompt_tokens"] == len(case["prompt_ids"])
    assert stats["new_tokens"] == len(case["new_ids"])


@pytest.mark.parametrize("adapter", ["llama", "llama-rslora"])
def test_alpha_0_gives_the_base_models_answer(adapter):
    """--alpha 0: every branch adds zero, so transformers' answer of the base model."""
    case = tiny_llama_cases()[0]
    args = ["--alpha", 0, "--max-new-tokens", case["max_new_tokens"]]
    run = lora(TINY_IR, TINY_LORA / adapter, case["prompt"], *args)
    assert run.returncode == 0, run.stderr
    assert run.stdout == case["text"] + "\n"


def test_int8_weights_take_the_branches_too():
    """The same base exported with int8 weights: the branches read the MatMuls' inputs,
    so the adapter applies and changes the answer (exactness is the f32 export's)."""
    model = TINY_LORA / "llama-int8"
    prompt = CASES[0]["prompt"]
    answers = []
    for alpha in (1, 0):
        run = lora(model, TINY_LORA / "llama", prompt, "--alpha", alpha)
        assert run.returncode == 0, run.stderr
        answers.append(run.stdout)
    assert answers[0] != answers[1]
    # At --alpha 0 it is the int8 model's own greedy answer.
    plain = run_sample("greedy.py", model, prompt, "--f32")
    assert answers[1] == plain.stdout


def write_safetensors(path, tensors: dict[str, np.ndarray], dtype="F32") -> None:
    """A safetensors file: header length, JSON header, data (float32, or raw bytes
    labelled DTYPE)."""
    header = {}
    data = b""
    for name, values in tensors.items():
        raw = values.tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(values.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


def adapter_copy(tmp_path, change: str):
    """The llama adapter with one thing wrong."""
    folder = tmp_path / "adapter"
    shutil.copytree(TINY_LORA / "llama", folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    layer = "base_model.model.model.layers.0.self_attn.q_proj"
    lora_a = np.ones((4, 64), np.float32)
    lora_b = np.ones((64, 4), np.float32)
    tensors = {f"{layer}.lora_A.weight": lora_a, f"{layer}.lora_B.weight": lora_b}
    if change == "no safetensors":
        (folder / "adapter_model.safetensors").unlink()
    elif change == "DoRA":
        tensors[f"{layer}.lora_magnitude_vector"] = np.ones(64, np.float32)
    elif change == "embedding":
        tensors["base_model.model.model.embed_tokens.lora_embedding_A"] = lora_a
    elif change == "shape":
        tensors[f"{layer}.lora_A.weight"] = np.ones((4, 32), np.float32)
    elif change == "rank_pattern":
        config["rank_pattern"] = {"q_proj": 8}
    elif change == "unknown layer":
        other = "base_model.model.model.layers.0.self_attn.qkv_proj"
        tensors = {f"{other}.lora_A.weight": lora_a, f"{other}.lora_B.weight": lora_b}
    if change not in ("no safetensors", "rank_pattern"):
        write_safetensors(folder / "adapter_model.safetensors", tensors)
    if change == "int64":
        write_safetensors(folder / "adapter_model.safetensors", tensors, "I64")
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def anonymous_matmuls(tmp_path):
    """The tiny Llama with its MatMuls unnamed, as a GGUF conversion leaves them."""
    folder = tmp_path / "anonymous"
    shutil.copytree(TINY_IR, folder)
    xml = folder / "openvino_model.xml"
    xml.write_text(xml.read_text().replace('name="__module.', 'name="anon.'))
    return folder


BAD_INPUTS = {
    "no adapter folder": "No such file or directory",
    "no safetensors": "adapter_model.safetensors",
    "DoRA": "lora_magnitude_vector: only LoRA of linear layers",
    "embedding": "lora_embedding_A: only LoRA of linear layers",
    "shape": "Incompatible MatMul matrix dimension",  # OpenVINO's words
    "rank_pattern": "r or lora_alpha differ by layer",
    "int64": "is I64, not F32, F16, BF16",
    "unknown layer": "the IR has no MatMul of model.layers.0.self_attn.qkv_proj",
    "anonymous MatMuls": "no MatMul of model.layers.0.mlp.down_proj: export with",
    "empty prompt": "the prompt is empty",
    "--max-new-tokens 0": "--max-new-tokens must be at least 1",
    "unknown device": UNKNOWN_DEVICE,
}
# Cases of a bad argument (argparse's line); the others are raised, for the guard.
ARGUMENT_CASES = {"empty prompt", "--max-new-tokens 0"}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_code_2(name, tmp_path):
    model = TINY_IR
    adapter = TINY_LORA / "llama"
    prompt = "hello"
    extra = []
    if name == "no adapter folder":
        adapter = tmp_path / "nowhere"
    elif name == "anonymous MatMuls":
        model = anonymous_matmuls(tmp_path)
    elif name == "empty prompt":
        prompt = " "
    elif name.startswith("--"):
        extra = name.split()
    elif name == "unknown device":
        extra = ["--device", "TPU"]
    else:
        adapter = adapter_copy(tmp_path, name)
    run = run_sample("lora.py", model, adapter, prompt, *extra)
    check_bad_case(run, BAD_INPUTS[name], name in ARGUMENT_CASES)


@pytest.mark.reference
def test_committed_tiny_lora_is_what_the_script_builds(tmp_path):
    """tests/fixtures/tiny_lora.py afresh: the same adapters and peft answers."""
    rebuilt = rebuild("tiny_lora.py", tmp_path)
    for adapter in ("llama", "llama-rslora", "qwen2"):
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            fresh = (rebuilt / adapter / name).read_bytes()
            assert fresh == (TINY_LORA / adapter / name).read_bytes(), (adapter, name)
    fresh_cases = json.loads((rebuilt / "expected.json").read_text())
    assert fresh_cases == CASES


@pytest.mark.reference
def test_trained_adapter_opens_every_answer_as_trained(default_model):
    """scripts/train_lora.py (about three minutes on 2 cores) teaches SmolLM2 to open
    its answers with "Arr, matey!": lora.py's default question and two others, none
    of them trained on, open so with the adapter and not without it."""
    from conftest import prepare

    prepare("train_lora.py")
    model = REPO / "models" / "SmolLM2-135M-Instruct-named"
    adapter = REPO / "models" / "smollm2-lora"
    for question in ("Who was Mozart?", "Where is Paris?", "What do cows eat?"):
        prompt = f"Q: {question}\nA:"
        answers = []
        for alpha in (1, 0):
            args = [model, adapter, prompt, "--alpha", alpha, "--max-new-tokens", 12]
            run = run_sample("lora.py", *args)
            assert run.returncode == 0, run.stderr
            answers.append(run.stdout.strip())
        assert answers[0].startswith("Arr, matey!"), (question, answers)
        assert "matey" not in answers[1], (question, answers)
