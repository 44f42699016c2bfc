#!/usr/bin/env python3
"""Build the tiny "sampler" fixture offline: a Llama whose next-token distribution is
the same at every step, and transformers' sampling probabilities for it.

Every row of its embedding table is the same vector, so every position holds the same
input; attention then averages identical values, and every position (every step) ends
with the same hidden state whatever the text. Its LM head is set so that this state
gives 12 letters chosen logits and every other token (EOS included) -1e4. One run of
multinomial.py with N new tokens is then N independent draws from one distribution: a
test can count them, with no process per draw.

Writes into OUT_DIR (default tests/data/tiny-sampler):
  hf/            the Hugging Face model and tokenizer (tiny_llm.py's tokenizer)
  ir/            the stateful IR (optimum-intel, fp32) and the tokenizer IRs
  expected.json  per setting (temperature, top_k, top_p): the probability of each letter
                 after transformers' sampling warpers (softmax of generate()'s
                 output_scores), the number of draws, and the chi-square critical value
                 at a false-alarm rate of 0.001 (scipy)
Nothing is downloaded. Needs tests/requirements.txt. Rerunning gives the same files.
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import openvino as ov
import openvino_tokenizers
import torch
from scipy.stats import chi2
from tiny_llm import random_llama, train_tokenizer
from transformers import GenerationConfig, LlamaForCausalLM

REPO = Path(__file__).resolve().parent.parent
PROMPT = "abc"
LETTERS = "abcdefghijkl"
LETTER_LOGITS = [2.0, 1.6, 1.3, 1.0, 0.8, 0.5, 0.3, 0.0, -0.2, -0.5, -0.8, -1.0]
DRAWS = 1500
FALSE_ALARM_RATE = 0.001
# Each setting leaves every kept letter at least 5 expected draws (the chi-square
# test's rule of thumb), and no kept probability near a top-p boundary.
SETTINGS = [
    {"temperature": 0.7, "top_k": 0, "top_p": 1.0},
    {"temperature": 1.3, "top_k": 5, "top_p": 1.0},
    {"temperature": 1.0, "top_k": 0, "top_p": 0.75},
    {"temperature": 0.8, "top_k": 8, "top_p": 0.9},
]


def build_model(tokenizer) -> LlamaForCausalLM:
    torch.manual_seed(0)
    model = random_llama(len(tokenizer))
    with torch.no_grad():
        embeddings = model.model.embed_tokens.weight
        embeddings[:] = embeddings[1].clone()  # row 0, the padding row, is zeros
        ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
        hidden = model.model(ids).last_hidden_state[0, -1]
        # Row i = logit_i * hidden / |hidden|^2, so that row_i . hidden = logit_i.
        direction = hidden / hidden.dot(hidden)
        logits = torch.full((len(tokenizer),), -1e4)
        for letter, logit in zip(LETTERS, LETTER_LOGITS):
            logits[tokenizer.convert_tokens_to_ids(letter)] = logit
        model.lm_head.weight[:] = logits[:, None] * direction[None, :]
    return model


def warped_probabilities(model, tokenizer, setting: dict) -> dict[str, float]:
    """transformers' own sampling warpers, as generate() orders and applies them."""
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
    config = GenerationConfig(
        do_sample=True,
        max_new_tokens=1,
        pad_token_id=0,
        eos_token_id=0,
        output_scores=True,
        return_dict_in_generate=True,
        **setting,
    )
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), generation_config=config
    )
    probs = torch.softmax(out.scores[0][0].double(), dim=-1)
    kept = torch.nonzero(probs).flatten().tolist()
    letters = tokenizer.convert_ids_to_tokens(kept)
    assert set(letters) <= set(LETTERS), letters
    return {letter: probs[i].item() for letter, i in zip(letters, kept)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=REPO / "tests" / "data" / "tiny-sampler",
    )
    args = parser.parse_args()
    hf_dir, ir_dir = args.out_dir / "hf", args.out_dir / "ir"
    for folder in (hf_dir, ir_dir):
        shutil.rmtree(folder, ignore_errors=True)

    tokenizer = train_tokenizer()
    for letter in LETTERS:
        assert tokenizer.convert_tokens_to_ids(letter) > 0, f"no token {letter!r}"
    model = build_model(tokenizer)
    # The same state at every step, whatever the text: check it on another prefix.
    with torch.no_grad():
        other = tokenizer("The quick brown fox, and more")["input_ids"]
        states = model.model(torch.tensor([other])).last_hidden_state[0]
    assert torch.allclose(states, states[-1:].expand_as(states), atol=1e-5)
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)

    from optimum.exporters.openvino import main_export

    main_export(str(hf_dir), ir_dir, task="text-generation-with-past", stateful=True)
    ov_tokenizer, ov_detokenizer = openvino_tokenizers.convert_tokenizer(
        tokenizer, with_detokenizer=True
    )
    ov.save_model(ov_tokenizer, ir_dir / "openvino_tokenizer.xml")
    ov.save_model(ov_detokenizer, ir_dir / "openvino_detokenizer.xml")
    print(f"exported {ir_dir}", file=sys.stderr)

    cases = []
    for setting in SETTINGS:
        probabilities = warped_probabilities(model, tokenizer, setting)
        fewest = min(probabilities.values()) * DRAWS
        assert fewest >= 5, f"{setting}: a kept letter expects {fewest:.1f} draws"
        cases.append(
            {
                **setting,
                "prompt": PROMPT,
                "draws": DRAWS,
                "probabilities": probabilities,
                "false_alarm_rate": FALSE_ALARM_RATE,
                # Degrees of freedom: the kept letters less one (the total is fixed).
                "chi2_critical": chi2.isf(FALSE_ALARM_RATE, len(probabilities) - 1),
            }
        )
        print(f"{setting}: {len(probabilities)} letters kept", file=sys.stderr)
    (args.out_dir / "expected.json").write_text(json.dumps(cases, indent=1) + "\n")


if __name__ == "__main__":
    main()
