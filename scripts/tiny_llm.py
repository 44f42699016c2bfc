#!/usr/bin/env python3
"""Build the tiny random-weight Llama test fixture offline, and its reference outputs.

Writes into OUT_DIR (default tests/data/tiny-llama):
  hf/        the Hugging Face model and tokenizer (a byte-level BPE trained here on the
             text below)
  ir/        the stateful IR (optimum-intel, fp32) and
             openvino_tokenizer/detokenizer.xml
  expected.json  transformers' greedy generate() for each test prompt: prompt ids, new
                 ids, text
  expected_beam.json  transformers' beam search (4 beams) over prompts x EOS ids x early
                      stopping x length penalty
  expected_chat.json  scripted conversations: each turn's answer from
                      apply_chat_template(add_generation_prompt=True) and greedy
                      generate() on the whole history, and the tokens a KV-cached chat
                      feeds that turn
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
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

REPO = Path(__file__).resolve().parent.parent
EOS = "<|endoftext|>"
CORPUS = """The quick brown fox jumps over the lazy dog. A small model learns the shape of text.
OpenVINO runs neural networks on CPUs, GPUs and NPUs. Tokenizers turn text into numbers and back.
Once upon a time there was a little robot who wanted to write poems about the sea and the stars.
def greet(name: str) -> str:
    return f"Hello, {name}!"
for i in range(10):
    print(i * i, end=" ")
今天天气很好，我们去公园散步吧。机器学习模型把文字变成数字。你好，世界！
Emoji carry meaning too: 🙂 😀 🎉 🍕 🚀 ❤️ 👍 and they take several bytes each.
Numbers like 3.14159, 2026 and 1,000,000 appear in text; so do URLs such as https://example.org/path?q=1.
"""
# Test prompts: ASCII, code, Chinese, emoji, a long one, one token. The EOS row of the
# LM head is set below so that some of them stop on EOS before max_new_tokens and some
# do not.
PROMPTS = [
    "Hello, world! How are you today?",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "今天天气很好，我们",
    "Party time 🎉🍕🚀 with",
    " ".join(CORPUS.split()) * 3,
    "The",
    "Once upon a time",
]
MAX_NEW_TOKENS = 24
BEAM_PROMPTS = [0, 1, 2, 3, 5]  # indexes into PROMPTS: all but the long one
BEAM_SETTINGS = [
    (early_stopping, length_penalty, 0)
    for early_stopping in (True, False, "never")
    for length_penalty in (1.0, 0.5, 2.0)
] + [(False, 1.0, 2), (True, 1.0, 3)]  # + no_repeat_ngram_size
BEAM_MAX_NEW_TOKENS = 12
# A ChatML-like template that needs no variable but the messages (its turns end with the
# EOS token).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + "
    "'<|endoftext|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
# Short answers re-tokenize to the tokens generated, so the history extends the cache;
# longer ones hold cut UTF-8 characters (U+FFFD once decoded), so it does not and the
# chat must run the history again.
CHATS = [
    {
        "system": None,
        "max_new_tokens": 4,
        "turns": [
            "Hello! Who are you?",
            "Tell me about the sea.",
            "今天天气很好",
            "Thanks, bye 👍",
        ],
    },
    {
        "system": "You are a robot who writes poems.",
        "max_new_tokens": 16,
        "turns": ["A poem about stars", "Now about a fox", "def f():", "The end"],
    },
]


def train_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE like GPT-2's (no BOS, EOS = <|endoftext|> = id 0), trained on
    CORPUS."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=[EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS.splitlines() * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS,
        pad_token=EOS,
        chat_template=CHAT_TEMPLATE,
    )


def greedy(
    model: LlamaForCausalLM,
    prompt_ids: list[int],
    eos_token_id: int | None,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> list[int]:
    """transformers' greedy generate(): the new token ids (EOS not included)."""
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_token_id,
        pad_token_id=0,
    )
    out = model.generate(
        torch.tensor([prompt_ids]),
        attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
        generation_config=config,
    )[0, len(prompt_ids) :].tolist()
    return (
        out[:-1]
        if eos_token_id is not None and out and out[-1] == eos_token_id
        else out
    )


def random_llama(vocab_size: int) -> LlamaForCausalLM:
    """The tiny fixtures' Llama: 2 layers 64 wide, untied embeddings, EOS and padding
    id 0, random weights drawn after torch.manual_seed(0) by the caller."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=0,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def build_model(vocab_size: int, prompt_ids: list[list[int]]) -> LlamaForCausalLM:
    """Random Llama (seed 0, untied embeddings) whose EOS logit copies a token that some
    answers reach."""
    torch.manual_seed(0)
    model = random_llama(vocab_size)
    answers = [greedy(model, ids, None) for ids in prompt_ids]
    # A token that appears after the first few new tokens of some answers but not of
    # all: scaling its LM-head row into the EOS row makes EOS win exactly where that
    # token (positive logit) would.
    for token in sorted({t for answer in answers for t in answer[3:]}):
        hits = sum(
            token in answer[3:] and token not in answer[:3] for answer in answers
        )
        if 0 < hits < len(answers) // 2:
            with torch.no_grad():
                model.lm_head.weight[0] = model.lm_head.weight[token] * 1.25
            return model
    raise SystemExit("no token suits the EOS trick: change the seed")


def beam_search(
    model: LlamaForCausalLM,
    tokenizer,
    prompt_ids: list[int],
    eos_token_id: int,
    early_stopping,
    length_penalty: float,
    no_repeat_ngram_size: int,
) -> list[dict]:
    """transformers' beam search, all 4 hypotheses best first: new tokens (EOS not
    included), score, text."""
    config = GenerationConfig(
        do_sample=False,
        num_beams=4,
        num_return_sequences=4,
        max_new_tokens=BEAM_MAX_NEW_TOKENS,
        early_stopping=early_stopping,
        length_penalty=length_penalty,
        eos_token_id=eos_token_id,
        pad_token_id=0,
        no_repeat_ngram_size=no_repeat_ngram_size or None,
        return_dict_in_generate=True,
        output_scores=True,
    )
    out = model.generate(
        torch.tensor([prompt_ids]),
        attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
        generation_config=config,
    )
    lengths = (
        (out.beam_indices != -1).sum(dim=1).tolist()
    )  # sequences are padded past their ends
    hypotheses = []
    for sequence, length, score in zip(
        out.sequences[:, len(prompt_ids) :].tolist(), lengths, out.sequences_scores
    ):
        tokens = (
            sequence[:length][:-1]
            if sequence[length - 1] == eos_token_id
            else sequence[:length]
        )
        hypotheses.append(
            {
                "tokens": tokens,
                "ends_on_eos": len(tokens) < length,
                "score": float(score),
                "text": tokenizer.decode(tokens, skip_special_tokens=True),
            }
        )
    return hypotheses


def cached_prefix_length(cached: list[int], history_ids: list[int]) -> int:
    """How many first tokens of the new history a chat's KV cache already holds (one
    is always left to feed), as openvino_genai's chat and samples/chat.py count."""
    length = 0
    while (
        length < min(len(cached), len(history_ids) - 1)
        and cached[length] == history_ids[length]
    ):
        length += 1
    return length


def chat(
    model: LlamaForCausalLM,
    tokenizer,
    system: str | None,
    turns: list[str],
    max_new_tokens: int,
) -> list[dict]:
    """Each turn answered from scratch on the whole templated history; `fed`: what a
    chat keeping its KV cache feeds (the history after the longest prefix it shares
    with the cached tokens, at least one token)."""
    messages = [{"role": "system", "content": system}] if system else []
    cached = []
    answers = []
    for turn in turns:
        messages.append({"role": "user", "content": turn})
        history_ids = tokenizer(
            tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            ),
            add_special_tokens=False,
        )["input_ids"]
        common = cached_prefix_length(cached, history_ids)
        extends = common == len(cached)
        new_ids = greedy(model, history_ids, tokenizer.eos_token_id, max_new_tokens)
        stops_on_eos = len(new_ids) < max_new_tokens
        cached = history_ids + (
            new_ids if stops_on_eos else new_ids[:-1]
        )  # the last token is never fed
        answer = tokenizer.decode(new_ids, skip_special_tokens=True)
        messages.append({"role": "assistant", "content": answer})
        answers.append(
            {
                "user": turn,
                "answer": answer,
                "fed": len(history_ids) - common,
                "extends_cache": extends,
                "new_tokens": len(new_ids),
                "stops_on_eos": stops_on_eos,
            }
        )
    return answers


def early_eos(beam_cases: list[dict]) -> int:
    """The token most hypotheses hold at positions 2 to 4: used as EOS, it makes many of
    them end early."""
    counts = {}
    for case in beam_cases:
        for hypotheses in case["hypotheses"]:
            for token in (
                token
                for hypothesis in hypotheses
                for token in hypothesis["tokens"][1:4]
            ):
                counts[token] = counts.get(token, 0) + 1
    return max(sorted(counts), key=lambda token: counts[token])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=REPO / "tests" / "data" / "tiny-llama"
    )
    args = parser.parse_args()
    hf_dir, ir_dir = args.out_dir / "hf", args.out_dir / "ir"
    for folder in (hf_dir, ir_dir):
        shutil.rmtree(folder, ignore_errors=True)

    tokenizer = train_tokenizer()
    prompt_ids = [tokenizer(prompt)["input_ids"] for prompt in PROMPTS]
    assert len(prompt_ids[5]) == 1, "the one-token prompt is not one token"
    model = build_model(len(tokenizer), prompt_ids)
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    print(f"saved {hf_dir} ({len(tokenizer)} tokens)", file=sys.stderr)

    from optimum.exporters.openvino import main_export

    main_export(str(hf_dir), ir_dir, task="text-generation-with-past", stateful=True)
    ov_tokenizer, ov_detokenizer = openvino_tokenizers.convert_tokenizer(
        tokenizer, with_detokenizer=True
    )
    ov.save_model(ov_tokenizer, ir_dir / "openvino_tokenizer.xml")
    ov.save_model(ov_detokenizer, ir_dir / "openvino_detokenizer.xml")
    print(f"exported {ir_dir}", file=sys.stderr)

    cases = []
    for prompt, ids in zip(PROMPTS, prompt_ids):
        new_ids = greedy(model, ids, tokenizer.eos_token_id)
        cases.append(
            {
                "prompt": prompt,
                "prompt_ids": ids,
                "max_new_tokens": MAX_NEW_TOKENS,
                "new_ids": new_ids,
                "stops_on_eos": len(new_ids) < MAX_NEW_TOKENS,
                "text": tokenizer.decode(new_ids, skip_special_tokens=True),
            }
        )
    stops = sum(case["stops_on_eos"] for case in cases)
    assert 0 < stops < len(cases), (
        f"{stops} of {len(cases)} answers stop on EOS: the fixture needs both kinds"
    )
    # What the tests promise: a long prompt, non-ASCII text, and a case (prompt and
    # answer) that fills more than 4 paged-attention blocks of 32 tokens.
    assert max(len(ids) for ids in prompt_ids) >= 200
    assert any(not prompt.isascii() for prompt in PROMPTS)
    assert max(len(case["prompt_ids"]) + len(case["new_ids"]) for case in cases) > 128
    (args.out_dir / "expected.json").write_text(
        json.dumps(cases, ensure_ascii=False, indent=1) + "\n"
    )
    print(
        f"wrote {args.out_dir / 'expected.json'}: {stops} of {len(cases)} answers stop on EOS",
        file=sys.stderr,
    )

    beam_cases = []
    for eos_token_id in (tokenizer.eos_token_id, None):
        eos_token_id = (
            tokenizer.eos_token_id
            if eos_token_id is not None
            else early_eos(beam_cases)
        )
        for early_stopping, length_penalty, no_repeat_ngram_size in BEAM_SETTINGS:
            beam_cases.append(
                {
                    "eos_token_id": eos_token_id,
                    "early_stopping": str(early_stopping).lower(),
                    "length_penalty": length_penalty,
                    "no_repeat_ngram_size": no_repeat_ngram_size,
                    "max_new_tokens": BEAM_MAX_NEW_TOKENS,
                    "prompts": [PROMPTS[i] for i in BEAM_PROMPTS],
                    "hypotheses": [
                        beam_search(
                            model,
                            tokenizer,
                            prompt_ids[i],
                            eos_token_id,
                            early_stopping,
                            length_penalty,
                            no_repeat_ngram_size,
                        )
                        for i in BEAM_PROMPTS
                    ],
                }
            )
    (args.out_dir / "expected_beam.json").write_text(
        json.dumps(beam_cases, ensure_ascii=False, indent=1) + "\n"
    )
    ended = sum(
        h["ends_on_eos"] for case in beam_cases for hs in case["hypotheses"] for h in hs
    )
    # Hypotheses end on EOS before the limit with both EOS ids, and full-length ones
    # exist too.
    for eos_token_id in {case["eos_token_id"] for case in beam_cases}:
        ends = [
            h["ends_on_eos"]
            for case in beam_cases
            if case["eos_token_id"] == eos_token_id
            for hs in case["hypotheses"]
            for h in hs
        ]
        assert any(ends) and not all(ends), eos_token_id
    print(
        f"wrote {args.out_dir / 'expected_beam.json'}: {len(beam_cases)} settings, {ended} hypotheses end on EOS",
        file=sys.stderr,
    )

    chats = [
        {
            **c,
            "answers": chat(
                model, tokenizer, c["system"], c["turns"], c["max_new_tokens"]
            ),
        }
        for c in CHATS
    ]
    (args.out_dir / "expected_chat.json").write_text(
        json.dumps(chats, ensure_ascii=False, indent=1) + "\n"
    )
    extends = [
        answer["extends_cache"]
        for conversation in chats
        for answer in conversation["answers"][1:]
    ]
    assert any(conversation["system"] for conversation in chats)
    assert 0 < sum(extends) < len(extends), (
        "the chats need later turns that extend the cache and turns that do not"
    )
    print(
        f"wrote {args.out_dir / 'expected_chat.json'}: {sum(extends)} of {len(extends)} later turns extend the "
        "cache",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
