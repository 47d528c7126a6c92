"""The embedded mini corpus of the demo: word lists, grammar, speech (see ../make_mini_corpus.py)."""
