"""Word frequency counting."""

from collections import Counter

from textstats.tokenizer import tokenize

DEFAULT_STOP_WORDS = frozenset({"a", "an", "and", "the", "of", "to", "in", "is", "it"})


class WordCounter:
    def __init__(self, stop_words: frozenset[str] = DEFAULT_STOP_WORDS) -> None:
        self.stop_words = stop_words
        self.counts: Counter[str] = Counter()
        self.documents = 0

    def add(self, text: str):
        self.documents += 1
        for word in tokenize(text):
            if word not in self.stop_words:
                self.counts[word] += 1

    def reset(self):
        self.counts.clear()
        self.documents = 0

    def most_common(self, limit: int = 10) -> list[tuple[str, int]]:
        """Return the ``limit`` most frequent words, most frequent first."""
        return sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))[:limit]

    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other):
        self.counts.update(other.counts)
        self.documents += other.documents


def count_words(texts: list[str]) -> WordCounter:
    counter = WordCounter()
    for text in texts:
        counter.add(text)
    return counter
