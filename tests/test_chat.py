"""samples/chat.py on the committed tiny fixture: fast tier, needs only requirements.txt
and pytest.

Known-good source: transformers' apply_chat_template(add_generation_prompt=True) and
greedy generate() on the whole history at each turn, recorded in
tests/data/tiny-llama/expected_chat.json by tests/fixtures/tiny_llm.py (tests/test_reference.py
recomputes it, and checks the real model against openvino_genai on the templated history).
"""

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import (
    LLM_FILES,
    TINY_IR,
    chat_args,
    chat_cases,
    check_bad_argument,
    check_bad_input,
    check_chat,
    files_read,
    run_sample,
)

IR = TINY_IR
CASES = chat_cases()


@pytest.mark.parametrize(
    "conversation", CASES, ids=[f"chat{i}" for i in range(len(CASES))]
)
def test_tiny_chat_matches_transformers_on_the_whole_history(conversation):
    run = run_sample(
        "chat.py",
        IR,
        *chat_args(conversation),
        stdin="".join(t + "\n" for t in conversation["turns"]),
    )
    check_chat(run, conversation["answers"])


def test_blank_lines_are_not_turns_and_no_newline_at_eof_is_fine():
    conversation = CASES[0]
    stdin = "\n\n" + "\n  \n".join(
        conversation["turns"]
    )  # the last turn without its newline
    check_chat(
        run_sample("chat.py", IR, *chat_args(conversation), stdin=stdin),
        conversation["answers"],
    )


def test_empty_stdin_says_nothing():
    run = run_sample("chat.py", IR, "--f32", stdin="")
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def ir_without_chat_template(tmp_path: Path) -> Path:
    shutil.copytree(IR, tmp_path, dirs_exist_ok=True)
    xml = tmp_path / "openvino_tokenizer.xml"
    xml.write_text(re.sub(r'<chat_template value="[^"]*" />', "", xml.read_text()))
    return tmp_path


def ir_with_broken_template(tmp_path: Path) -> Path:
    shutil.copytree(IR, tmp_path, dirs_exist_ok=True)
    xml = tmp_path / "openvino_tokenizer.xml"
    xml.write_text(
        re.sub(
            r'<chat_template value="[^"]*" />',
            '<chat_template value="{% if %}" />',
            xml.read_text(),
        )
    )
    return tmp_path


def ir_with_refusing_template(tmp_path: Path) -> Path:
    shutil.copytree(IR, tmp_path, dirs_exist_ok=True)
    xml = tmp_path / "openvino_tokenizer.xml"
    refuse = "{{ raise_exception(&apos;System messages are not supported&apos;) }}"
    xml.write_text(
        re.sub(
            r'<chat_template value="[^"]*" />',
            f'<chat_template value="{refuse}" />',
            xml.read_text(),
        )
    )
    return tmp_path


BAD_INPUTS = {
    "no chat template": (ir_without_chat_template, [], "no chat_template"),
    "broken chat template": (ir_with_broken_template, [], "chat template fails"),
    "template refuses": (
        ir_with_refusing_template,
        [],
        "System messages are not supported",
    ),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_code_2(name, tmp_path):
    make_folder, args, says = BAD_INPUTS[name]
    run = run_sample("chat.py", make_folder(tmp_path), *args, stdin="Hello\n")
    check_bad_input(run, says)


def test_the_tokenizer_ir_is_read_once(monkeypatch, capsys):
    """read_llm gives the tokenizer IR's rt_info (its chat_template) with the compiled
    tokenizer: each IR of the folder is read once (issue #39)."""
    args = [IR, "--max-new-tokens", 2]
    read = files_read("chat.py", args, monkeypatch, stdin="Hello\nAgain\n")
    assert sorted(read) == sorted(LLM_FILES)
    assert capsys.readouterr().out  # it answered


def test_zero_new_tokens_is_a_bad_argument():
    run = run_sample("chat.py", IR, "--max-new-tokens", "0", stdin="Hello\n")
    check_bad_argument(run, "--max-new-tokens must be at least 1")


def small_context_copy(tmp_path, context_length: int) -> Path:
    """A copy of the tiny IR whose config.json says the model's context is shorter."""
    shutil.copytree(IR, tmp_path / "small")
    config_path = tmp_path / "small" / "config.json"
    config = json.loads(config_path.read_text())
    config["max_position_embeddings"] = context_length
    config_path.write_text(json.dumps(config))
    return tmp_path / "small"


def test_chat_that_outgrows_the_context_ends_in_one_line(tmp_path):
    """The first turn's history is 34 tokens: in a context of 36 its answer stops after
    2 tokens; the second turn no longer fits: one line, exit 2."""
    conversation = CASES[0]
    first = conversation["answers"][0]
    model = small_context_copy(tmp_path, context_length=36)
    stdin = "".join(turn + "\n" for turn in conversation["turns"])
    run = run_sample("chat.py", model, "--max-new-tokens", 4, "--f32", stdin=stdin)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"{first['fed']} tokens fed, 2 new tokens",
        "chat.py: error: the prompt fills the model's context of 36",
    ]
    answer = run.stdout.removesuffix("\n")
    assert answer and first["answer"].startswith(answer)


def test_broken_config_json_gives_one_line_and_exit_code_2(tmp_path):
    """chat.py reads config.json for the context length: JSON's own message."""
    shutil.copytree(IR, tmp_path / "ir")
    (tmp_path / "ir" / "config.json").write_text('{"max_position_embeddings": ')
    run = run_sample("chat.py", tmp_path / "ir", stdin="Hello\n")
    check_bad_input(run, "error: Expecting value")
