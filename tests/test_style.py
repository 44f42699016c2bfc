"""The house rules a reader relies on: ruff-clean code, short self-contained samples
(fast tier)."""

import ast
import io
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from conftest import REPO

SAMPLES = sorted((REPO / "samples").glob("*.py"))
# Code lines after formatting: blank lines, comments and docstrings are free. Issue
# #25 set these as hard ceilings.
BUDGETS = {
    "greedy.py": 100,
    "multinomial.py": 130,
    "prompt_lookup.py": 130,
    "paged_attention.py": 140,
    "throughput.py": 140,
    "chat.py": 150,
    "speculative_decoding.py": 150,
    "lcm.py": 150,
    "stable_diffusion.py": 160,
    "continuous_batching.py": 170,
    "whisper.py": 190,
    "beam_search.py": 190,
    "image_to_image.py": 230,
    "inpainting.py": 260,
    "text_embeddings.py": 90,
    "rag.py": 170,
    "lora.py": 140,
    "text_to_speech.py": 170,
    "visual_language_chat.py": 250,
}


def ruff() -> str:
    found = shutil.which("ruff", path=str(REPO / ".venv" / "bin")) or shutil.which(
        "ruff"
    )
    if found is None:
        pytest.fail("ruff is missing: pip install -r tests/requirements-fast.txt")
    return found


def test_ruff_is_clean():
    command = [ruff(), "check", "samples", "scripts", "tests"]
    check = subprocess.run(
        command, cwd=REPO, check=False, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout


def test_code_is_formatted():
    """ruff format at 88 columns (pyproject.toml) for samples, scripts and tests."""
    command = [ruff(), "format", "--check", "samples", "scripts", "tests"]
    check = subprocess.run(
        command, cwd=REPO, check=False, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def code_lines(text: str) -> int:
    """Lines that hold code: not blank, not only a comment, not part of a docstring."""
    docstrings = set()
    for node in ast.walk(ast.parse(text)):
        has_docstring = isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
        if has_docstring and ast.get_docstring(node) is not None:
            first = node.body[0]
            docstrings |= set(range(first.lineno, first.end_lineno + 1))
    skipped = {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
    }
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in skipped:
            lines |= set(range(token.start[0], token.end[0] + 1))
    return len(lines - docstrings)


def test_code_lines_are_counted_as_promised():
    text = '"""Doc\nstring."""\n\n# a comment\nx = [\n    1,  # one\n]\n\n\ndef f():\n    """Doc."""\n    return x\n'
    assert code_lines(text) == 5


def test_every_sample_has_a_budget():
    assert {sample.name for sample in SAMPLES} == set(BUDGETS)


@pytest.mark.parametrize("sample", SAMPLES, ids=[path.name for path in SAMPLES])
def test_sample_is_within_its_budget(sample):
    count = code_lines(sample.read_text())
    budget = BUDGETS[sample.name]
    assert count <= budget, f"{sample.name}: {count} code lines, budget {budget}"


@pytest.mark.parametrize("sample", SAMPLES, ids=[path.name for path in SAMPLES])
def test_sample_imports_only_the_runtime_and_numpy(sample):
    allowed = {"openvino", "openvino_tokenizers", "numpy"} | set(
        sys.stdlib_module_names
    )
    if sample.name in ("chat.py", "rag.py", "visual_language_chat.py"):
        allowed.add("jinja2")  # the chat template's engine
    if sample.name == "text_to_speech.py":
        allowed.add("espeakng_loader")  # eSpeak NG's library and data
    for node in ast.walk(ast.parse(sample.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module.split(".")[0] in allowed, node.module
        elif isinstance(node, ast.Import):
            assert all(alias.name.split(".")[0] in allowed for alias in node.names)


@pytest.mark.parametrize("sample", SAMPLES, ids=[path.name for path in SAMPLES])
def test_sample_is_plain(sample):
    """No walrus, no lambda; main() under the __main__ guard, the one error path of
    every sample: Ctrl-C exits 130; OpenVINO's, the file system's and JSON's errors
    print their last line and exit 2."""
    tree = ast.parse(sample.read_text())
    for node in ast.walk(tree):
        assert not isinstance(node, ast.NamedExpr), f"line {node.lineno}: :="
        assert not isinstance(node, ast.Lambda), f"line {node.lineno}: lambda"
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert "main" in functions
    guard = tree.body[-1]
    assert ast.unparse(guard) == (
        "if __name__ == '__main__':\n"
        "    try:\n"
        "        main()\n"
        "    except KeyboardInterrupt:\n"
        "        sys.exit(130)\n"
        "    except (RuntimeError, OSError, ValueError) as error:\n"
        "        print(f'error: {str(error).strip().splitlines()[-1]}', file=sys.stderr)\n"
        "        sys.exit(2)"
    )
    # Everything else at module level is an import, a constant or a definition.
    for node in tree.body[:-1]:
        kinds = (ast.Import, ast.ImportFrom, ast.Assign, ast.FunctionDef, ast.ClassDef)
        is_docstring = isinstance(node, ast.Expr) and isinstance(
            node.value, ast.Constant
        )
        assert isinstance(node, kinds) or is_docstring, f"line {node.lineno}"


@pytest.mark.parametrize("sample", SAMPLES, ids=[path.name for path in SAMPLES])
def test_sample_stands_alone(sample):
    """A copied file has no other sample beside it: it never sends its reader to one
    (a "See also" pointer to a related sample is fine)."""
    for line in sample.read_text().splitlines():
        if line.startswith("See also samples/"):
            continue
        for other in SAMPLES:
            # A whole name: chat.py inside visual_language_chat.py is not chat.py.
            named = re.search(rf"(?<![\w.]){re.escape(other.name)}", line)
            assert not named or other == sample, line


def top_level_definitions(path: Path) -> dict[str, str]:
    """The source of each top-level function and class, by name."""
    text = path.read_text()
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found[node.name] = ast.get_source_segment(text, node)
    return found


def test_shared_blocks_are_identical_copies():
    """A function or class two samples both define is the same text in both (main
    aside): a reader recognises it, and grep finds every copy to mend."""
    first_seen = {}  # name: (sample, source)
    differing = []
    for sample in SAMPLES:
        for name, source in top_level_definitions(sample).items():
            if name == "main":
                continue
            if name not in first_seen:
                first_seen[name] = (sample.name, source)
            elif first_seen[name][1] != source:
                differing.append(f"{name}: {first_seen[name][0]} and {sample.name}")
    assert not differing, differing


def test_shared_blocks_are_shared():
    """The steps several samples take are one function each, found in each."""
    users = {}
    for sample in SAMPLES:
        for name in top_level_definitions(sample):
            users.setdefault(name, []).append(sample.name)
    image_samples = [
        "image_to_image.py",
        "inpainting.py",
        "lcm.py",
        "stable_diffusion.py",
    ]
    not_llm = [*image_samples, "whisper.py", "text_embeddings.py", "text_to_speech.py"]
    not_llm.append("visual_language_chat.py")  # read_vlm: three IRs, not one
    llm_samples = [s.name for s in SAMPLES if s.name not in not_llm]
    assert sorted(users["read_llm"]) == sorted(llm_samples)
    assert sorted(users["keep_last_logits"]) == [
        "chat.py",
        "greedy.py",
        "prompt_lookup.py",
        "rag.py",
        "speculative_decoding.py",
        "visual_language_chat.py",
    ]
    assert len(users["stream"]) >= 6
    assert sorted(users["trim_cache"]) == [
        "chat.py",
        "prompt_lookup.py",
        "speculative_decoding.py",
    ]
    for name in ("png", "clip_input_ids", "alphas_cumprod", "read_image_models"):
        assert sorted(users[name]) == image_samples, name
    assert sorted(users["strftime_now"]) == ["chat.py", "rag.py"]
    for name in ("read_png", "unfilter", "encode", "euler_sigmas"):
        assert {"image_to_image.py", "inpainting.py"} <= set(users[name]), name


def tracked_text_files() -> list[Path]:
    """The repository's tracked files that are text (git's list on a clone)."""
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO, check=True, capture_output=True, text=True
    )
    files = []
    for name in listed.stdout.splitlines():
        path = REPO / name
        if path.suffix in (".py", ".md", ".toml", ".txt", ".sh", ".json", "") and (
            path.is_file()
        ):
            files.append(path)
    return files


def test_no_file_names_a_fixture_builder_in_scripts():
    """The fixture builders live in tests/fixtures/ and the mutation check in tests/:
    scripts/ holds what a user runs (issue #28)."""
    old_places = [
        "scripts" + "/" + name
        for name in ("tiny_", "genai_group_beams", "mutation_check")
    ]
    for path in tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for old in old_places:
            assert old not in text, f"{path.relative_to(REPO)} names {old}"


def test_scripts_holds_the_user_tools_each_documented():
    """Each script says what it is for and how to run it, and the README or docs/ name
    it."""
    docs = (REPO / "README.md").read_text() + "".join(
        path.read_text() for path in sorted((REPO / "docs").glob("*.md"))
    )
    scripts = sorted((REPO / "scripts").glob("*.py"))
    assert not [path.name for path in scripts if path.name.startswith("tiny_")]
    for path in scripts:
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring, path.name
        if path.name != "stats_line.py":  # a module the tools import, not run
            assert f"python scripts/{path.name}" in docstring, path.name
        assert path.name in docs, path.name
