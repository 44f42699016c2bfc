"""The one parser of the samples' stats line: the last line a sample prints on stderr.

Used by the tests, scripts/benchmark.py and scripts/compression_study.py, so that a
change of wording in a sample breaks one place, loudly.
"""

import re

NUMBER = r"\d+(?:\.\d+)?"
# Each sample's stats line, whole; the group names are the figures it gives.
FORMATS = {
    # greedy.py, paged_attention.py, rag.py
    "greedy": r"(?P<prompt_tokens>\d+) prompt tokens, (?P<new_tokens>\d+) new tokens, "
    rf"first in (?P<first_token_ms>\d+) ms, then (?P<tokens_per_second>{NUMBER}) tokens/s",
    # visual_language_chat.py: greedy's, and the picture on the first turn
    "vision": r"(?P<prompt_tokens>\d+) prompt tokens, (?P<new_tokens>\d+) new tokens, "
    rf"first in (?P<first_token_ms>\d+) ms, then (?P<tokens_per_second>{NUMBER}) tokens/s"
    r"(?:; the picture: (?P<image_tokens>\d+) tokens in (?P<vision_ms>\d+) ms)?",
    # multinomial.py
    "sampling": r"(?P<prompt_tokens>\d+) prompt tokens, (?P<new_tokens>\d+) new tokens "
    rf"in (?P<seconds>{NUMBER}) s",
    # speculative_decoding.py, prompt_lookup.py
    "assisted": r"(?P<prompt_tokens>\d+) prompt tokens, (?P<new_tokens>\d+) new tokens "
    rf"in (?P<seconds>{NUMBER}) s, (?P<inferences>\d+) (?:main-model )?inferences, "
    r"(?P<accepted>\d+) of (?P<proposed>\d+) (?:draft tokens|guesses) accepted",
    # throughput.py
    "requests": r"(?P<prompts>\d+) prompts, (?P<new_tokens>\d+) new tokens "
    rf"in (?P<seconds>{NUMBER}) s with (?P<requests>\d+) requests: "
    rf"(?P<tokens_per_second>{NUMBER}) tokens/s",
    # continuous_batching.py
    "batching": r"(?P<prompts>\d+) prompts, (?P<new_tokens>\d+) new tokens "
    rf"in (?P<seconds>{NUMBER}) s, (?P<inferences>\d+) inferences: "
    rf"(?P<tokens_per_second>{NUMBER}) tokens/s",
    # text_embeddings.py
    "embeddings": r"(?P<texts>\d+) texts, (?P<tokens>\d+) tokens, "
    r"embedded in (?P<milliseconds>\d+) ms",
}


def parse_stats(line: str) -> dict[str, float]:
    """The figures of one stats line by name: counts as int, times and speeds as float."""
    for pattern in FORMATS.values():
        found = re.fullmatch(pattern, line.strip())
        if found:
            figures = {}
            for name, value in found.groupdict().items():
                if value is not None:  # an optional part left out
                    figures[name] = float(value) if "." in value else int(value)
            return figures
    raise ValueError(f"not a stats line of the samples: {line!r}")


def last_stats(stderr: str) -> dict[str, float]:
    """The figures of a sample's run: its stderr's last line."""
    return parse_stats(stderr.strip().splitlines()[-1])
