"""text.py: SQuAD-style answer normalization."""
import pytest

from prag.text import normalize_answer


@pytest.mark.parametrize("raw, norm", [
    ("The Cat!", "cat"),
    ("  A  quick,  brown fox. ", "quick brown fox"),
    ("THE END", "end"),
    ("an Apple", "apple"),
    ("Theatre and Anne", "theatre and anne"),    # articles only as whole words
    ("don't stop", "dont stop"),                 # punctuation removed, not replaced by a space
    ("Sallow\tRiver\n", "sallow river"),         # any whitespace collapses to one space
    ("1,912.", "1912"),
    ("", ""),
    ("the a an", ""),
])
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


def test_normalize_is_idempotent():
    for s in ["The Cat!", "Mira Tessaly & Gideon Vorn", "  a  b  "]:
        assert normalize_answer(normalize_answer(s)) == normalize_answer(s)
