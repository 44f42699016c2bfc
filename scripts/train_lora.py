#!/usr/bin/env python3
"""Train a small LoRA adapter on SmolLM2-135M-Instruct, offline, for samples/lora.py.

The habit it teaches is easy to see: every answer opens with "Arr, matey!". The
training texts are the base model's own greedy answers to 48 questions, each given
that opening, so the adapter learns the habit and little else. The prompts are plain
text, "Q: <question>\nA:" (no chat template: lora.py feeds its prompt as greedy.py
does, and to a bare question the instruct model answers with its end token at once);
the loss falls on the answer only. LoRA r 8, lora_alpha 16 on the attention projections
(q, k, v, o), AdamW, 3 epochs in batches of 8: about two minutes on a 2-core CPU.
The question samples/lora.py asks by default ("Q: Who was Mozart?\nA:") is not
among the 48.

It writes:
  models/SmolLM2-135M-Instruct-hf     the GGUF's weights, dequantised (as
                                      scripts/convert.py reads a GGUF)
  models/SmolLM2-135M-Instruct-named  that model exported with optimum-intel, int8
                                      weights: the MatMuls keep the layers' names,
                                      which the adapter's tensors are matched by
  models/smollm2-lora                 the adapter (adapter_config.json,
                                      adapter_model.safetensors), as peft saves it
A second run finds them ready and does nothing (--retrain trains the adapter again).
Needs tests/requirements.txt (torch, transformers, peft, optimum-intel) and the GGUF
that scripts/prepare_default_model.py keeps.
Example: python scripts/train_lora.py && python samples/lora.py
models/SmolLM2-135M-Instruct-named models/smollm2-lora
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

from prepare_default_model import GGUF_MEMBER, say

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
GGUF = MODELS / Path(GGUF_MEMBER).name
OPENING = "Arr, matey!"
# Questions of every kind; none is lora.py's default prompt.
QUESTIONS = [
    "What is the largest planet in the solar system?",
    "How many legs does a spider have?",
    "Who wrote Romeo and Juliet?",
    "What is the boiling point of water?",
    "Why is the sky blue?",
    "What do bees make?",
    "How far is the Moon from the Earth?",
    "What is the capital of Japan?",
    "Can you name three primary colours?",
    "What is photosynthesis?",
    "How do I make a cup of tea?",
    "What is the speed of light?",
    "Which animal is the tallest?",
    "What language is spoken in Brazil?",
    "How many days are in a leap year?",
    "What is the chemical symbol for gold?",
    "Who painted the Mona Lisa?",
    "What is the square root of 81?",
    "Why do leaves change colour in autumn?",
    "What is a noun?",
    "How does a rainbow form?",
    "What is the longest river in Africa?",
    "Give me a tip for sleeping better.",
    "What is the freezing point of water in Fahrenheit?",
    "How many continents are there?",
    "What does a thermometer measure?",
    "Tell me a fun fact about octopuses.",
    "What is the main ingredient of guacamole?",
    "How do airplanes stay in the air?",
    "What is the smallest prime number?",
    "Who was the first person to walk on the Moon?",
    "What is the hardest natural substance?",
    "Suggest a name for a pet goldfish.",
    "What are clouds made of?",
    "How many minutes are in a day?",
    "What is the opposite of cold?",
    "Write a short greeting for a birthday card.",
    "What is the capital of Canada?",
    "Why do we have seasons?",
    "What is an adjective?",
    "How do magnets work?",
    "What is the largest ocean on Earth?",
    "Name a famous composer.",
    "What is 12 times 12?",
    "How do fish breathe underwater?",
    "What is the tallest mountain in the world?",
    "Describe a cat in one sentence.",
    "What is the currency of the United Kingdom?",
]
ANSWER_TOKENS = 32  # of the base model's answer, after the opening
EPOCHS = 3
BATCH = 8
LEARNING_RATE = 1e-3


def prepare_named_ir(hf_dir: Path, ir_dir: Path) -> None:
    """The GGUF dequantised into a transformers folder, exported with layer names."""
    from convert import gguf_to_hf

    if not (hf_dir / "config.json").is_file():
        say(f"dequantising {GGUF.name} into {hf_dir}")
        gguf_to_hf(GGUF, hf_dir)
    if not (ir_dir / "openvino_model.xml").is_file():
        say(f"exporting {hf_dir} into {ir_dir} (int8 weights)")
        convert = [sys.executable, str(REPO / "scripts" / "convert.py")]
        convert += [str(hf_dir), str(ir_dir), "--weight-format", "int8"]
        if subprocess.run(convert, check=False).returncode != 0:
            raise SystemExit(f"error: scripts/convert.py could not export {hf_dir}")


def prompt_of(question: str) -> str:
    return f"Q: {question}\nA:"


def base_answers(model, tokenizer) -> list[str]:
    """The base model's greedy answer to each question (its own words), to its first
    blank line."""
    import torch

    answers = []
    for question in QUESTIONS:
        ids = tokenizer(prompt_of(question), return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(
                ids, do_sample=False, max_new_tokens=ANSWER_TOKENS, pad_token_id=0
            )
        answers.append(
            tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        )
    return answers


def examples(tokenizer, answers: list[str]) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per question: the prompt, then the opening and the base
    model's answer, and the end token; labels -100 (no loss) on the prompt."""
    pairs = []
    for question, answer in zip(QUESTIONS, answers):
        prompt_ids = tokenizer(prompt_of(question))["input_ids"]
        target = f" {OPENING} {answer}"
        target_ids = tokenizer(target)["input_ids"] + [tokenizer.eos_token_id]
        pairs.append((prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids))
    return pairs


def train(hf_dir: Path, adapter_dir: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    random.seed(0)
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    start = time.perf_counter()
    answers = base_answers(model, tokenizer)
    say(
        f"the base model answered {len(QUESTIONS)} questions in {time.perf_counter() - start:.0f} s"
    )
    pairs = examples(tokenizer, answers)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE
    )
    model.train()
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        random.shuffle(pairs)
        losses = []
        for first in range(0, len(pairs), BATCH):
            batch = pairs[first : first + BATCH]
            width = max(len(ids) for ids, _ in batch)
            # Right padding: the pad positions are masked out and take no loss.
            input_ids = torch.tensor(
                [ids + [0] * (width - len(ids)) for ids, _ in batch]
            )
            labels = torch.tensor(
                [lab + [-100] * (width - len(lab)) for _, lab in batch]
            )
            mask = torch.tensor(
                [[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch]
            )
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        say(
            f"epoch {epoch + 1}: mean loss {sum(losses) / len(losses):.3f}, {time.perf_counter() - start:.0f} s"
        )
    model.eval()
    partial = adapter_dir.with_name(adapter_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    (partial / "README.md").unlink(missing_ok=True)  # peft's model card template
    shutil.rmtree(adapter_dir, ignore_errors=True)
    partial.rename(adapter_dir)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--retrain", action="store_true", help="train the adapter again"
    )
    args = parser.parse_args()
    if not GGUF.is_file():
        raise SystemExit(
            f"error: no {GGUF}: run scripts/prepare_default_model.py first"
        )
    hf_dir = MODELS / "SmolLM2-135M-Instruct-hf"
    ir_dir = MODELS / "SmolLM2-135M-Instruct-named"
    adapter_dir = MODELS / "smollm2-lora"
    prepare_named_ir(hf_dir, ir_dir)
    if (adapter_dir / "adapter_model.safetensors").is_file() and not args.retrain:
        say(f"{adapter_dir} is ready already: nothing to do")
        return
    train(hf_dir, adapter_dir)
    say(f"wrote {adapter_dir}; try: python samples/lora.py {ir_dir} {adapter_dir}")


if __name__ == "__main__":
    try:
        main()
    except SystemExit as error:  # a one-line failure: exit 2, as for bad input
        if not isinstance(error.code, str):
            raise
        print(error.code, file=sys.stderr)
        sys.exit(2)
