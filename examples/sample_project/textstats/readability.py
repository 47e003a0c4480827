"""Readability scores."""

from textstats.tokenizer import split_sentences, tokenize

VOWELS = "aeiouy"


def count_syllables(word: str) -> int:
    word = word.lower().strip("'")
    if not word:
        return 0
    if len(word) <= 3:
        return 1
    count = 0
    previous_vowel = False
    for char in word:
        is_vowel = char in VOWELS
        if is_vowel and not previous_vowel:
            count += 1
        previous_vowel = is_vowel
    if word.endswith("e") and not word.endswith(("le", "ee", "ye")):
        count -= 1
    elif word.endswith("ed") and len(word) > 4 and word[-3] not in "td":
        count -= 1
    if word.endswith("ia") or word.endswith("io"):
        count += 1
    return max(count, 1)


def flesch_reading_ease(text: str) -> float:
    """Return the Flesch reading-ease score of ``text`` (higher reads easier)."""
    words = tokenize(text)
    sentences = split_sentences(text)
    if not words or not sentences:
        return 0.0
    syllables = sum(count_syllables(word) for word in words)
    score = 206.835 - 1.015 * (len(words) / len(sentences)) - 84.6 * (syllables / len(words))
    return round(score, 2)


def grade_label(score: float) -> str:
    if score >= 90:
        return "very easy"
    if score >= 70:
        return "easy"
    if score >= 50:
        return "fairly difficult"
    return "difficult"
