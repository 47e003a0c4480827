from textstats.counter import count_words
from textstats.readability import count_syllables, flesch_reading_ease
from textstats.report import render_report


def test_most_common_skips_stop_words():
    counter = count_words(["the cat and the hat", "a cat"])
    assert counter.most_common(2) == [("cat", 2), ("hat", 1)]
    assert counter.total() == 3
    assert counter.documents == 2


def test_count_syllables():
    assert [count_syllables(w) for w in ["cat", "table", "readability", "jumped"]] == [1, 2, 5, 1]


def test_reading_ease_of_simple_text_is_high():
    assert flesch_reading_ease("The cat sat. The dog ran.") > 90


def test_render_report_mentions_counts():
    report = render_report("Sample", "The cat sat on the mat. The cat ran.")
    assert "words:      9" in report
    assert "cat" in report
