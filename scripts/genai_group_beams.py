#!/usr/bin/env python3
"""Record openvino_genai's group beam search on the tiny fixture, for the fast tier.

beam_search.py's default mode (15 beams in 3 groups, diversity penalty 1.0) follows
the rules transformers 4.x and openvino_genai share; the fast tier compares it with what
genai's LLMPipeline gave on the same IR (SDPA, f32 hints), so that it needs no genai.
Writes OUT (default tests/data/tiny-llama/expected_group_beam.json): for each stopping
mode (beam_search.py's --early-stopping true, false, never: genai's EARLY, HEURISTIC,
NEVER) and each prompt, genai's 15 texts and scores, best first in each group.
Needs scripts/requirements.txt (openvino-genai). Rerunning gives the same file.
"""

import argparse
import json
from pathlib import Path

import openvino_genai

REPO = Path(__file__).resolve().parent.parent
IR = REPO / "tests" / "data" / "tiny-llama" / "ir"
F32_HINTS = {
    "INFERENCE_PRECISION_HINT": "f32",
    "KV_CACHE_PRECISION": "f32",
    "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0",
}
STOP_CRITERIA = {"true": "EARLY", "false": "HEURISTIC", "never": "NEVER"}
# The first eight agree with beam_search.py in every mode; the last six do not, in
# one mode or all three (tests/test_beam_search.py says why).
PROMPTS = [
    "Hello, world! How are you today?",
    "Party time 🎉🍕🚀 with",
    "The",
    "你好",
    "OpenVINO runs",
    "for i in range(10):",
    "Numbers like 3.14",
    "def greet(name):",
    "Once upon a time",
    "The quick brown fox",
    "A small model",
    "Tokenizers turn text",
    "import numpy as np",
    "stars and the sea",
]
MAX_NEW_TOKENS = 20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out",
        nargs="?",
        type=Path,
        default=IR.parent / "expected_group_beam.json",
    )
    args = parser.parse_args()
    pipe = openvino_genai.LLMPipeline(
        str(IR), "CPU", ATTENTION_BACKEND="SDPA", **F32_HINTS
    )
    cases = []
    for early_stopping, criterion in STOP_CRITERIA.items():
        config = openvino_genai.GenerationConfig(
            max_new_tokens=MAX_NEW_TOKENS,
            num_beams=15,
            num_beam_groups=3,
            diversity_penalty=1.0,
            length_penalty=1.0,
            num_return_sequences=15,
            apply_chat_template=False,
        )
        config.stop_criteria = getattr(openvino_genai.StopCriteria, criterion)
        for prompt in PROMPTS:
            result = pipe.generate(prompt, config)
            cases.append(
                {
                    "early_stopping": early_stopping,
                    "prompt": prompt,
                    "max_new_tokens": MAX_NEW_TOKENS,
                    "texts": list(result.texts),
                    "scores": list(result.scores),
                }
            )
    args.out.write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
