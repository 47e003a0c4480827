"""Text statistics: words, sentences, frequencies and readability."""

from textstats.counter import WordCounter
from textstats.readability import flesch_reading_ease
from textstats.tokenizer import split_sentences, tokenize

__all__ = ["WordCounter", "flesch_reading_ease", "split_sentences", "tokenize"]
__version__ = "0.1.0"
