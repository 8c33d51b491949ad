"""generate.py: answer extraction from what the model generated."""
from prag.generate import extract_answer


def test_extract_answer():
    assert extract_answer(" Paris.\n\nQuestion: next?") == "Paris"
    assert extract_answer("Answer: Jane Austen") == "Jane Austen"
    assert extract_answer("\n\nQuestion: Who wrote it?\n") == ""  # an echoed question is not an answer
    assert extract_answer("") == ""
