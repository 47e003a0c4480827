"""Plain-text reports of text statistics."""

from textstats.counter import WordCounter
from textstats.readability import count_syllables, flesch_reading_ease, grade_label
from textstats.tokenizer import split_sentences, tokenize


def render_report(title: str, text: str, width: int = 60, top: int = 5, show_words: bool = True) -> str:
    lines = []
    rule = "=" * width
    lines.append(rule)
    if len(title) > width - 4:
        title = title[: width - 7] + "..."
    lines.append(title.center(width))
    lines.append(rule)
    words = tokenize(text)
    sentences = split_sentences(text)
    if not words:
        lines.append("(no words)")
        lines.append(rule)
        return "\n".join(lines)
    lines.append(f"words:      {len(words)}")
    lines.append(f"sentences:  {len(sentences)}")
    unique = len(set(words))
    lines.append(f"unique:     {unique}")
    if len(words) > 0:
        ratio = unique / len(words)
        lines.append(f"variety:    {ratio:.2f}")
    longest = max(words, key=len)
    lines.append(f"longest:    {longest}")
    syllables = sum(count_syllables(word) for word in words)
    lines.append(f"syllables:  {syllables}")
    score = flesch_reading_ease(text)
    label = grade_label(score)
    lines.append(f"readability: {score} ({label})")
    if score < 30 and len(sentences) > 1:
        lines.append("hint: shorten your sentences")
    elif score < 30:
        lines.append("hint: use shorter words")
    if show_words:
        counter = WordCounter()
        counter.add(text)
        common = counter.most_common(top)
        if common:
            lines.append("")
            lines.append("most common words:")
            for word, count in common:
                bar = "#" * min(count, width - 20)
                lines.append(f"  {word:<12} {count:>4} {bar}")
        else:
            lines.append("(only stop words)")
    long_sentences = [s for s in sentences if len(tokenize(s)) > 25]
    if long_sentences:
        lines.append("")
        lines.append(f"long sentences: {len(long_sentences)}")
        for sentence in long_sentences[:3]:
            preview = sentence if len(sentence) <= width else sentence[: width - 3] + "..."
            lines.append(f"  - {preview}")
    lines.append(rule)
    return "\n".join(lines)


def print_report(title: str, text: str, width: int = 60):
    print(render_report(title, text, width))


def summary_line(text):
    words = tokenize(text)
    return f"{len(words)} words, {len(split_sentences(text))} sentences"
