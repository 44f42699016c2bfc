"""Shared helpers: run a sample file as a user would, and the fixtures' locations."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY_LLAMA = REPO / "tests" / "data" / "tiny-llama"
DEFAULT_MODEL = REPO / "models" / "SmolLM2-135M-Instruct"


class Run:
    """A finished sample process: exit code, stdout and stderr as UTF-8 text (no newline translation)."""

    def __init__(self, process: subprocess.CompletedProcess):
        self.returncode = process.returncode
        self.stdout = process.stdout.decode("utf-8")
        self.stderr = process.stderr.decode("utf-8")


def sample_env() -> dict:
    return {**os.environ, "PYTHONIOENCODING": "utf-8", "HF_HUB_OFFLINE": "1"}


def check_ctrl_c(name: str, *args, started) -> None:
    """SIGINT to samples/NAME once started(process) is true (it may block until then): exit code 130, no traceback."""
    command = [sys.executable, str(REPO / "samples" / name), *map(str, args)]
    # A shell's background job (CI under nohup, say) ignores SIGINT, and a child inherits an ignored signal; a handled
    # one is reset to the default on exec. So the sample starts as it would in a terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sample_env())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert started(process)
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert b"Traceback" not in stderr


def run_sample(name: str, *args: str, timeout: float = 300, stdin: str = "") -> Run:
    """Run samples/NAME with ARGS in a fresh Python process, STDIN as its standard input."""
    command = [sys.executable, str(REPO / "samples" / name), *map(str, args)]
    return Run(subprocess.run(command, check=False, capture_output=True, timeout=timeout, env=sample_env(),
                              input=stdin.encode("utf-8")))


def check_bad_input(run: Run, says: str) -> None:
    """Bad input: exit code 2, nothing on stdout, one line on stderr that contains SAYS, no traceback."""
    assert run.returncode == 2
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert says in run.stderr and "Traceback" not in run.stderr


def rebuild(script: str, out: Path) -> Path:
    """Run scripts/SCRIPT afresh into OUT (a fixture builder) and return OUT."""
    build = subprocess.run([sys.executable, str(REPO / "scripts" / script), str(out)], check=False,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    return out


def ir_copy_with_eos(folder: Path, destination: Path, eos_token_id: int | None) -> Path:
    """A copy of an IR folder whose tokenizer rt_info names another EOS id, or none (None)."""
    shutil.copytree(folder, destination, dirs_exist_ok=True)
    xml = destination / "openvino_tokenizer.xml"
    entry = "" if eos_token_id is None else f'<eos_token_id value="{eos_token_id}" />'
    xml.write_text(re.sub(r"<eos_token_id [^>]*/>", entry, xml.read_text()))
    return destination


def tiny_llama_cases(folder: Path = TINY_LLAMA) -> list[dict]:
    expected = folder / "expected.json"
    if not expected.is_file():
        pytest.fail(f"{expected} is missing: build it with python scripts/tiny_llm.py")
    return json.loads(expected.read_text())


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The real default model folder; prepared (idempotently) when missing."""
    if not (DEFAULT_MODEL / "openvino_model.xml").is_file():
        prepare = subprocess.run([sys.executable, str(REPO / "scripts" / "prepare_default_model.py")],
                                 check=False, capture_output=True, text=True)
        if prepare.returncode != 0:
            pytest.fail(f"scripts/prepare_default_model.py failed: {prepare.stderr.strip()}")
    return DEFAULT_MODEL


@pytest.fixture(scope="session")
def rebuilt_tiny_llama(tmp_path_factory):
    """scripts/tiny_llm.py run afresh: new weights, IR and transformers outputs."""
    return rebuild("tiny_llm.py", tmp_path_factory.mktemp("tiny-llama"))
