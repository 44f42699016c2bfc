"""samples/throughput.py: every answer equals greedy decoding's, whatever the number of
requests in flight.

Fast tier: the committed tiny fixture against transformers' greedy texts
(expected.json). Reference tier (marked): the real default model against
openvino_genai's greedy generate on the same IR.
"""

import argparse
import os
import threading
from types import SimpleNamespace

import numpy as np
import openvino as ov
import pytest

from conftest import (
    REAL_BATCH_PROMPTS,
    TINY_IR,
    UNKNOWN_DEVICE,
    check_bad_argument,
    check_bad_input,
    genai_greedy_texts,
    last_stats,
    load_sample,
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
        (["--requests", "0"], "--requests"),
        (["--max-new-tokens", "0"], "--max-new-tokens"),
    ],
)
def test_bad_argument_gives_one_line_and_exit_code_2(args, says):
    run = run_sample("throughput.py", IR, *args)
    check_bad_argument(run, says)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--prompts", "/nowhere/prompts.txt"], "No such file or directory"),
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


class CpuCore:
    """Stands for ov.Core on a CPU that lists CAPABILITIES and computes in bf16 by
    default (as Intel Xeons with AMX and AMD EPYCs with AVX512-BF16 do); its
    compile_model gives back the configuration it was asked for."""

    def __init__(self, capabilities: list[str]):
        self.capabilities = capabilities

    def get_property(self, device: str, name: str):
        assert device == "CPU"
        if name == "OPTIMIZATION_CAPABILITIES":
            return self.capabilities
        return ov.Type.bf16 if name == "INFERENCE_PRECISION_HINT" else None

    def compile_model(self, model, device: str, config: dict) -> dict:
        return config


# What an Intel Xeon with AMX lists as OPTIMIZATION_CAPABILITIES.
XEON_CAPABILITIES = ["FP32", "BF16", "FP16", "INT8", "BIN", "EXPORT_IMPORT"]


def test_no_bf16_throughput_streams_on_a_xeon_with_amx():
    """OpenVINO 2026.4.1's CPU plugin dies (SIGFPE) compiling an uncompressed LLM in
    bf16 with one thread a stream on a Xeon with AMX, which the throughput hint gives
    on 2 cores (2 streams of 1 thread, as read back here from a compiled model). Such a
    CPU, which lists FP16, must be asked for f16; a CPU without FP16 (AMD EPYC) keeps
    its default precision, and its speed."""
    compiled = ov.Core().compile_model(
        TINY_IR / "openvino_model.xml", "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"}
    )
    threads = compiled.get_property("INFERENCE_NUM_THREADS")
    streams = compiled.get_property("NUM_STREAMS")
    if os.cpu_count() == 2:
        assert threads // streams == 1  # what the plugin gives the hint on 2 cores
    throughput = load_sample("throughput.py")
    args = argparse.Namespace(device="CPU", f32=False)
    xeon = CpuCore(XEON_CAPABILITIES)
    config = throughput.compile_for_throughput(xeon, None, args)
    assert config["INFERENCE_PRECISION_HINT"] == "f16"
    assert config["PERFORMANCE_HINT"] == "THROUGHPUT"
    epyc = CpuCore(["BF16", "WINOGRAD", "FP32", "INT8", "BIN", "EXPORT_IMPORT"])
    config = throughput.compile_for_throughput(epyc, None, args)
    assert config == {"PERFORMANCE_HINT": "THROUGHPUT"}
    args.f32 = True  # exact: f32 whatever the CPU
    config = throughput.compile_for_throughput(xeon, None, args)
    assert config["INFERENCE_PRECISION_HINT"] == "f32"


# Device strings, and whether the CPU may run the model on each.
DEVICES = {
    "CPU": True,
    "AUTO": True,  # every device, the CPU among them
    "AUTO:GPU,CPU": True,
    "AUTO:CPU": True,
    "AUTO:GPU": False,
    "AUTO:-CPU": False,  # AUTO without the CPU
    "HETERO:GPU,CPU": True,
    "MULTI:CPU,GPU": True,
    "GPU": False,
    "GPU.1": False,
    "NPU": False,
}


@pytest.mark.parametrize("device", DEVICES)
def test_the_f16_rule_holds_wherever_the_cpu_may_run_the_model(device):
    """AUTO, or a HETERO/MULTI list that names the CPU, may put the model on a Xeon with
    AMX as --device CPU does: the f16 rule applies there too, and only there (a GPU
    computes in f16 anyway)."""
    throughput = load_sample("throughput.py")
    args = argparse.Namespace(device=device, f32=False)
    xeon = CpuCore(XEON_CAPABILITIES)
    config = throughput.compile_for_throughput(xeon, None, args)
    assert ("INFERENCE_PRECISION_HINT" in config) == DEVICES[device], config
    if DEVICES[device]:
        assert config["INFERENCE_PRECISION_HINT"] == "f16"


class QuickRequest:
    """Stands for an InferRequest whose inference ends on another thread 20 ms after it
    starts (its callback then runs there, as OpenVINO's does), with logits that pick
    token 7, never a stop token; it counts the requests computing at once."""

    in_flight = 0
    most_in_flight = 0
    lock = threading.Lock()
    model_inputs = tuple(
        SimpleNamespace(any_name=name)
        for name in ("input_ids", "attention_mask", "position_ids", "beam_idx")
    )

    def set_callback(self, callback, userdata) -> None:
        self.callback = callback
        self.userdata = userdata

    def start_async(self, inputs: dict) -> None:
        with QuickRequest.lock:
            QuickRequest.in_flight += 1
            QuickRequest.most_in_flight = max(
                QuickRequest.most_in_flight, QuickRequest.in_flight
            )
        self.timer = threading.Timer(0.02, self.end)
        self.timer.start()

    def end(self) -> None:
        with QuickRequest.lock:
            QuickRequest.in_flight -= 1
        self.callback(self.userdata)

    def get_tensor(self, name: str):
        logits = np.zeros((1, 1, 10), dtype=np.float32)
        logits[0, 0, 7] = 1
        return SimpleNamespace(data=logits)

    def reset_state(self) -> None:
        pass

    def wait(self) -> None:
        if hasattr(self, "timer"):
            self.timer.join()


def test_every_request_computes_at_once_while_prompts_remain():
    """throughput.py's scheduler keeps all its requests busy: with 9 prompts of 5
    tokens each and 4 requests, 4 inferences are in flight at once, and every answer
    is complete."""
    throughput = load_sample("throughput.py")
    requests = [QuickRequest() for _ in range(4)]
    prompts = [[1, 2, 3]] * 9
    answers = throughput.generate_with_requests(requests, prompts, 5, {0})
    assert answers == [[7] * 5] * 9
    assert QuickRequest.most_in_flight == 4
