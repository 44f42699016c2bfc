"""The house rules a reader relies on: ruff-clean code, short self-contained samples (fast tier)."""
import ast
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

CEILINGS = {"greedy.py": 90, "beam_search.py": 120, "speculative_decoding.py": 110, "prompt_lookup.py": 110}
SAMPLES = sorted((REPO / "samples").glob("*.py"))


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(REPO / ".venv" / "bin")) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is missing: pip install -r tests/requirements-fast.txt")
    check = subprocess.run([ruff, "check", "samples", "scripts", "tests"], cwd=REPO, check=False,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


@pytest.mark.parametrize("sample", SAMPLES, ids=[path.name for path in SAMPLES])
def test_sample_is_short_and_self_contained(sample):
    text = sample.read_text()
    assert text.count("\n") <= CEILINGS.get(sample.name, 100)
    allowed = {"openvino", "openvino_tokenizers", "numpy"} | set(sys.stdlib_module_names)
    allowed |= {"jinja2"} if sample.name == "chat.py" else set()  # the chat template's engine
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module.split(".")[0] in allowed, node.module
        elif isinstance(node, ast.Import):
            assert all(alias.name.split(".")[0] in allowed for alias in node.names)
