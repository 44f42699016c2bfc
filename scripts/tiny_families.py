#!/usr/bin/env python3
"""Build tiny random-weight models of the common LLM families offline, and their
reference outputs.

Each family keeps what matters to a sample that runs its export: the architecture
(rotary, learned positions, ALiBi, final logit softcapping), the special tokens, whether
the tokenizer adds a BOS, the chat template's shape (`bos_token`, `+ eos_token`,
`| trim`, `strftime_now`) and generation_config.json (several stop ids, a repetition
penalty, sampling defaults). The weights are random and the tokenizer is a byte-level
BPE trained here, so nothing is downloaded.

Writes OUT_DIR/FAMILY/ (default tests/data/families):
  hf/            the transformers model, tokenizer and generation config
  ir/            `optimum-cli export openvino --task text-generation-with-past` of it
                 (fp32, stateful) with its tokenizer IRs
  expected.json  transformers' outputs with the folder's generation config: greedy
                 generate() per prompt, beam search (4 beams), and for the families
                 with a chat template, apply_chat_template + greedy per turn, with the
                 tokens a chat that keeps its KV cache feeds each turn ("dated": the
                 template writes today's date, so the chat holds for the day built)
The stop token that only generation_config.json names is made to win after some
answers' first tokens, so that those answers end on it.
Needs tests/requirements.txt. Example: python scripts/tiny_families.py --family qwen2
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
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_llm import CORPUS, cached_prefix_length

REPO = Path(__file__).resolve().parent.parent
PROMPTS = [
    "Hello, world! How are you today?",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "今天天气很好，我们",
    "Party time 🎉🍕🚀 with",
    "The",
    "Once upon a time",
]
MAX_NEW_TOKENS = 16
BEAM_PROMPTS = [0, 1, 2, 3, 4, 5]
BEAM_MAX_NEW_TOKENS = 8
CHAT_TURNS = ["Hello! Who are you?", "Tell me about the sea.", "今天天气很好", "Bye 👍"]
CHAT_SYSTEM = "You are a robot who writes poems."
CHAT_MAX_NEW_TOKENS = 6
SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}

LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    '{%- set date_string = strftime_now("%d %b %Y") %}'
    '{%- else %}{%- set date_string = "26 Jul 2024" %}{%- endif %}{%- endif %}'
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}"
    '{%- else %}{%- set system_message = "" %}{%- endif %}'
    '{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}'
    '{{- "Today Date: " + date_string + "\\n\\n" }}'
    '{{- system_message }}{{- "<|eot_id|>" }}'
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
    "+ message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)
PHI3_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}"
    "{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)
GEMMA2_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)
QWEN2_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}\n"
    "{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}"
)

# Per family: the transformers config, the special tokens (first ids, in this order),
# which of them is the tokenizer's bos/eos/pad/unk, the extra stop tokens that only
# generation_config.json lists, other generation_config values, the chat template.
FAMILIES = {
    "llama3": {
        "config": lambda vocab: transformers.LlamaConfig(
            vocab_size=vocab, intermediate_size=128, num_key_value_heads=2, **SMALL
        ),
        "special": [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ],
        "bos": "<|begin_of_text|>",
        "eos": "<|end_of_text|>",
        "pad": None,
        "unk": None,
        "add_bos": True,
        "stops": ["<|eot_id|>"],
        "generation": {},
        "template": LLAMA3_TEMPLATE,
    },
    "mistral": {
        "config": lambda vocab: transformers.MistralConfig(
            vocab_size=vocab, intermediate_size=128, num_key_value_heads=2, **SMALL
        ),
        "special": ["<unk>", "<s>", "</s>"],
        "bos": "<s>",
        "eos": "</s>",
        "pad": None,
        "unk": "<unk>",
        "add_bos": True,
        "stops": [],
        "generation": {},
        "template": MISTRAL_TEMPLATE,
    },
    "phi3": {
        "config": lambda vocab: transformers.Phi3Config(
            vocab_size=vocab,
            intermediate_size=128,
            num_key_value_heads=2,
            pad_token_id=None,
            **SMALL,
        ),
        "special": [
            "<unk>",
            "<s>",
            "<|endoftext|>",
            "<|assistant|>",
            "<|end|>",
            "<|user|>",
            "<|system|>",
        ],
        "bos": "<s>",
        "eos": "<|endoftext|>",
        "pad": "<|endoftext|>",
        "unk": "<unk>",
        "add_bos": False,
        "stops": ["<|assistant|>", "<|end|>"],
        "generation": {},
        "template": PHI3_TEMPLATE,
    },
    "gemma2": {
        "config": lambda vocab: transformers.Gemma2Config(
            vocab_size=vocab,
            intermediate_size=128,
            num_key_value_heads=2,
            head_dim=16,
            final_logit_softcapping=30.0,
            attn_logit_softcapping=50.0,
            sliding_window=4096,
            tie_word_embeddings=False,
            **SMALL,
        ),
        "special": [
            "<pad>",
            "<eos>",
            "<bos>",
            "<unk>",
            "<start_of_turn>",
            "<end_of_turn>",
        ],
        "bos": "<bos>",
        "eos": "<eos>",
        "pad": "<pad>",
        "unk": "<unk>",
        "add_bos": True,
        "stops": ["<end_of_turn>"],
        "generation": {},
        "template": GEMMA2_TEMPLATE,
    },
    "qwen2": {
        "config": lambda vocab: transformers.Qwen2Config(
            vocab_size=vocab,
            intermediate_size=128,
            num_key_value_heads=2,
            tie_word_embeddings=False,
            **SMALL,
        ),
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
        "unk": None,
        "add_bos": False,
        "stops": ["<|endoftext|>"],
        # Qwen2.5-Instruct's own values; its file also says do_sample: greedy runs
        # override that, as transformers' and genai's greedy do.
        "generation": {
            "repetition_penalty": 1.05,
            "temperature": 0.7,
            "top_k": 20,
            "top_p": 0.8,
            "do_sample": True,
        },
        "template": QWEN2_TEMPLATE,
    },
    "zephyr": {
        "config": lambda vocab: transformers.LlamaConfig(
            vocab_size=vocab, intermediate_size=128, num_key_value_heads=2, **SMALL
        ),
        "special": ["<unk>", "<s>", "</s>"],
        "bos": "<s>",
        "eos": "</s>",
        "pad": "</s>",
        "unk": "<unk>",
        "add_bos": True,
        "stops": [],
        "generation": {},
        "template": ZEPHYR_TEMPLATE,
    },
    "gpt2": {
        "config": lambda vocab: transformers.GPT2Config(
            vocab_size=vocab,
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_positions=256,
            tie_word_embeddings=False,
        ),
        "special": ["<|endoftext|>"],
        "bos": "<|endoftext|>",
        "eos": "<|endoftext|>",
        "pad": None,
        "unk": None,
        "add_bos": False,
        "stops": [],
        "generation": {},
        "template": None,
    },
    "bloom": {
        "config": lambda vocab: transformers.BloomConfig(
            vocab_size=vocab,
            hidden_size=64,
            n_layer=2,
            n_head=4,
            tie_word_embeddings=False,
        ),
        "special": ["<unk>", "<s>", "</s>", "<pad>"],
        "bos": "<s>",
        "eos": "</s>",
        "pad": "<pad>",
        "unk": "<unk>",
        "add_bos": False,
        "stops": [],
        "generation": {},
        "template": None,
    },
    "mpt": {
        "config": lambda vocab: transformers.MptConfig(
            vocab_size=vocab,
            d_model=64,
            n_layers=2,
            n_heads=4,
            max_seq_len=256,
            expansion_ratio=2,
            tie_word_embeddings=False,
        ),
        "special": ["<|endoftext|>", "<|padding|>"],
        "bos": "<|endoftext|>",
        "eos": "<|endoftext|>",
        "pad": None,
        "unk": None,
        "add_bos": False,
        "stops": [],
        "generation": {},
        "template": None,
    },
}


def train_tokenizer(family: dict) -> transformers.PreTrainedTokenizerFast:
    """A byte-level BPE trained on CORPUS, with the family's special tokens first."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=family["special"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS.splitlines() * 4, trainer)
    if family["add_bos"]:
        bos = family["bos"]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tokenizer.token_to_id(bos))],
        )
    names = {key: family[key] for key in ("bos", "eos", "pad", "unk") if family[key]}
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        **{f"{key}_token": value for key, value in names.items()},
        chat_template=family["template"],
    )


def generation_config(family: dict, tokenizer) -> transformers.GenerationConfig:
    """What the family's generation_config.json holds: every stop id, and its values."""
    stops = [tokenizer.convert_tokens_to_ids(family["eos"])]
    stops += [tokenizer.convert_tokens_to_ids(token) for token in family["stops"]]
    bos = family["bos"]
    return transformers.GenerationConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids(bos) if bos else None,
        eos_token_id=stops if len(stops) > 1 else stops[0],
        pad_token_id=tokenizer.pad_token_id,
        **family["generation"],
    )


def stop_ids(config) -> list[int]:
    if isinstance(config.eos_token_id, list):
        return config.eos_token_id
    return [config.eos_token_id]


def greedy(model, config, prompt_ids: list[int], max_new_tokens: int) -> dict:
    """transformers' greedy generate() with the folder's stop tokens. The samples take
    nothing else from generation_config.json, as openvino_genai's samples: Qwen2.5's
    repetition penalty (1.05) stays in the file and is switched off here."""
    out = model.generate(
        torch.tensor([prompt_ids]),
        attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
        generation_config=config,
        do_sample=False,
        repetition_penalty=1.0,
        max_new_tokens=max_new_tokens,
    )[0, len(prompt_ids) :].tolist()
    stop = out[-1] if out and out[-1] in stop_ids(config) else None
    new_ids = out[:-1] if stop is not None else out
    return {"new_ids": new_ids, "stop": stop}


def beam_search(model, config, tokenizer, prompt_ids: list[int]) -> list[dict]:
    """transformers' beam search (4 beams, all returned, best first)."""
    out = model.generate(
        torch.tensor([prompt_ids]),
        attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
        generation_config=config,
        do_sample=False,
        repetition_penalty=1.0,
        num_beams=4,
        num_return_sequences=4,
        max_new_tokens=BEAM_MAX_NEW_TOKENS,
        early_stopping=False,
        length_penalty=1.0,
        return_dict_in_generate=True,
        output_scores=True,
    )
    stops = stop_ids(config)
    lengths = (out.beam_indices != -1).sum(dim=1).tolist()
    hypotheses = []
    for sequence, length, score in zip(
        out.sequences[:, len(prompt_ids) :].tolist(), lengths, out.sequences_scores
    ):
        ends = sequence[length - 1] in stops
        tokens = sequence[: length - 1] if ends else sequence[:length]
        hypotheses.append(
            {"tokens": tokens, "ends_on_stop": ends, "score": float(score)}
        )
    return hypotheses


def chat(model, config, tokenizer, system: str | None) -> list[dict]:
    """Each turn answered by greedy generate() on apply_chat_template's whole history,
    tokenized without special tokens, as transformers does; `fed`: what a chat keeping
    its KV cache feeds (the history after the longest prefix it shares with the
    cached tokens)."""
    messages = [{"role": "system", "content": system}] if system else []
    cached = []
    answers = []
    for turn in CHAT_TURNS:
        messages.append({"role": "user", "content": turn})
        text = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        history_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        common = cached_prefix_length(cached, history_ids)
        result = greedy(model, config, history_ids, CHAT_MAX_NEW_TOKENS)
        new_ids = result["new_ids"]
        # The cache holds what was fed: the history and the answer but its last token,
        # or, when the answer ended on a stop token (never fed), all of it.
        cached = history_ids + new_ids
        if result["stop"] is None:
            cached = cached[:-1]
        answer = tokenizer.decode(new_ids, skip_special_tokens=True)
        messages.append({"role": "assistant", "content": answer})
        answers.append(
            {
                "user": turn,
                "history_ids": history_ids,
                "new_ids": new_ids,
                "answer": answer,
                "fed": len(history_ids) - common,
            }
        )
    return answers


def stop_after_some(model, family_stop: int, config, prompt_ids) -> None:
    """Make `family_stop` win where a token that some answers reach after their first
    tokens would: its LM-head row becomes that token's, scaled."""
    head = model.get_output_embeddings()
    answers = [
        greedy(model, config, ids, MAX_NEW_TOKENS)["new_ids"] for ids in prompt_ids
    ]
    for token in sorted({t for answer in answers for t in answer[3:]}):
        hits = sum(
            token in answer[3:] and token not in answer[:3] for answer in answers
        )
        if 0 < hits < len(answers) // 2 and token != family_stop:
            with torch.no_grad():
                head.weight[family_stop] = head.weight[token] * 1.25
            return
    raise SystemExit("no token suits the stop trick: change the seed")


def build(name: str, out_dir: Path) -> None:
    family = FAMILIES[name]
    hf_dir = out_dir / name / "hf"
    ir_dir = out_dir / name / "ir"
    for folder in (hf_dir, ir_dir):
        shutil.rmtree(folder, ignore_errors=True)
    tokenizer = train_tokenizer(family)
    config = generation_config(family, tokenizer)
    torch.manual_seed(0)
    model_config = family["config"](len(tokenizer))
    model_config.bos_token_id = config.bos_token_id
    model_config.eos_token_id = tokenizer.convert_tokens_to_ids(family["eos"])
    model_config.pad_token_id = tokenizer.pad_token_id
    model = transformers.AutoModelForCausalLM.from_config(model_config).eval()
    prompt_ids = [tokenizer(prompt)["input_ids"] for prompt in PROMPTS]
    # The stop only generation_config.json lists, where there is one, else the EOS.
    trick = (family["stops"] or [family["eos"]])[-1]
    stop_after_some(model, tokenizer.convert_tokens_to_ids(trick), config, prompt_ids)
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    config.save_pretrained(hf_dir)

    from optimum.exporters.openvino import main_export, model_configs

    # optimum-intel 2.2.0 caps Gemma at transformers 5.0; the export is exact without
    # the cap (checked against transformers below, token for token).
    model_configs.Gemma2OpenVINOConfig.MAX_TRANSFORMERS_VERSION = None
    main_export(str(hf_dir), ir_dir, task="text-generation-with-past", stateful=True)
    ov_tokenizer, ov_detokenizer = openvino_tokenizers.convert_tokenizer(
        tokenizer, with_detokenizer=True
    )
    ov.save_model(ov_tokenizer, ir_dir / "openvino_tokenizer.xml")
    ov.save_model(ov_detokenizer, ir_dir / "openvino_detokenizer.xml")

    expected = {"family": name, "prompts": [], "beam": [], "chats": []}
    for prompt, ids in zip(PROMPTS, prompt_ids):
        result = greedy(model, config, ids, MAX_NEW_TOKENS)
        expected["prompts"].append(
            {
                "prompt": prompt,
                "prompt_ids": ids,
                "max_new_tokens": MAX_NEW_TOKENS,
                **result,
            }
        )
    for index in BEAM_PROMPTS:
        expected["beam"].append(
            {
                "prompt": PROMPTS[index],
                "max_new_tokens": BEAM_MAX_NEW_TOKENS,
                "hypotheses": beam_search(model, config, tokenizer, prompt_ids[index]),
            }
        )
    if family["template"]:
        for system in (None, CHAT_SYSTEM):
            if system and "System role not supported" in family["template"]:
                continue
            if system and "Only user and assistant" in family["template"]:
                continue
            expected["chats"].append(
                {
                    "system": system,
                    "max_new_tokens": CHAT_MAX_NEW_TOKENS,
                    # A template that writes today's date renders otherwise tomorrow.
                    "dated": "strftime_now" in family["template"],
                    "answers": chat(model, config, tokenizer, system),
                }
            )
    (out_dir / name / "expected.json").write_text(
        json.dumps(expected, ensure_ascii=False, indent=1) + "\n"
    )
    stops = sum(case["stop"] is not None for case in expected["prompts"])
    print(
        f"{name}: {stops} of {len(PROMPTS)} answers end on a stop token",
        file=sys.stderr,
    )


def check_coverage(out_dir: Path) -> None:
    """The fixtures hold what the tests promise: answers that end on a stop token only
    generation_config.json names (Llama 3's <|eot_id|>, Phi-3's <|end|>, Gemma 2's
    <end_of_turn>, Qwen2.5's <|endoftext|>); a chat for every family with a template;
    beam hypotheses that end on a stop and ones that do not."""
    core = ov.Core()
    expected = {
        name: json.loads((out_dir / name / "expected.json").read_text())
        for name in FAMILIES
    }
    for name in ("llama3", "phi3", "gemma2", "qwen2"):
        tokenizer = core.read_model(out_dir / name / "ir" / "openvino_tokenizer.xml")
        eos = tokenizer.get_rt_info()["eos_token_id"].astype(int)
        stops = [case["stop"] for case in expected[name]["prompts"]]
        assert any(stop is not None and stop != eos for stop in stops), name
    for name in ("llama3", "mistral", "phi3", "gemma2", "qwen2", "zephyr"):
        assert expected[name]["chats"], name
    ended = [
        hypothesis["ends_on_stop"]
        for name in FAMILIES
        for case in expected[name]["beam"]
        for hypothesis in case["hypotheses"]
    ]
    assert 0 < sum(ended) < len(ended)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=REPO / "tests" / "data" / "families"
    )
    parser.add_argument("--family", choices=FAMILIES, action="append")
    args = parser.parse_args()
    for name in args.family or FAMILIES:
        build(name, args.out_dir)
    if not args.family:
        check_coverage(args.out_dir)


if __name__ == "__main__":
    main()
