from textstats.tokenizer import normalize_whitespace, split_sentences, tokenize


def test_tokenize_lowercases_and_keeps_apostrophes():
    assert tokenize("Don't PANIC, it's fine.") == ["don't", "panic", "it's", "fine"]


def test_split_sentences():
    assert split_sentences("One. Two! Three?") == ["One.", "Two!", "Three?"]


def test_normalize_whitespace():
    assert normalize_whitespace("  a \n b\t c ") == "a b c"
