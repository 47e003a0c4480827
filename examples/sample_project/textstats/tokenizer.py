"""Split text into words and sentences."""

import re

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def tokenize(text: str) -> list[str]:
    """Return the lower-cased words of ``text``."""
    return [match.group().lower() for match in WORD.finditer(text)]


def split_sentences(text: str) -> list[str]:
    parts = SENTENCE_END.split(text.strip())
    return [part for part in parts if part]


def normalize_whitespace(text):
    return " ".join(text.split())


def is_stop_word(word: str, stop_words: frozenset[str]) -> bool:
    return word.lower() in stop_words
