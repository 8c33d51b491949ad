"""generate.py: answer extraction from what the model generated."""
from prag.generate import extract_answer


def test_extract_answer():
    assert extract_answer(" Paris.\n\nQuestion: next?") == "Paris"
    assert extract_answer("Answer: Jane Austen") == "Jane Austen"
    assert extract_answer("\n\nQuestion: Who wrote it?\n") == ""  # an echoed question is not an answer
    assert extract_answer("") == ""


def test_generation_stops_once_cancelled(tiny_lm):
    import threading

    from prag.generate import generate

    prompt = tiny_lm.prompter.format("Question: Who commands the Halvard Sorrel?")
    full = generate(tiny_lm, prompt, 40, stop_at_newline=False)
    ev = threading.Event()
    ev.set()  # the client went away before the first token
    cut = generate(tiny_lm, prompt, 40, stop_at_newline=False, cancel=ev)
    n = [len(tiny_lm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in (full, cut)]
    assert n[0] > 5 and n[1] <= 1, n
    assert generate(tiny_lm, prompt, 40, stop_at_newline=False, cancel=threading.Event()) == full
