"""generate.py: answer extraction, cancellation, and batched generation (each row as it would be alone)."""
import pytest

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


PROMPTS = ["Who commands the Halvard Sorrel?", "Where?", "What was Ostrander Pell's occupation, and when did he start?"]


@pytest.mark.parametrize("limits", [[12, 12, 12], [3, 12, 7]])
def test_a_batch_gives_each_row_its_own_answer(tiny_lm, limits):
    """Left padding, one KV cache, rows stopping apart and cut to their own limits: each row's text is the one it
    gets alone."""
    from prag.generate import generate, generate_batch

    prompts = [tiny_lm.prompter.format(f"Question: {q}") for q in PROMPTS]
    alone = [generate(tiny_lm, p, n, stop_at_newline=False) for p, n in zip(prompts, limits)]
    assert len(set(alone)) == 3, "the prompts must give different answers, or the test shows nothing"
    assert generate_batch(tiny_lm, prompts, limits, stop_at_newline=False) == alone


def test_a_batch_streams_and_cancels_row_by_row(tiny_lm):
    import threading

    from prag.generate import generate, generate_batch

    class Collect:
        def __init__(self):
            self.puts = []

        def put(self, value):
            self.puts.append(value.tolist())

        def end(self):
            self.puts.append("end")

    prompts = [tiny_lm.prompter.format(f"Question: {q}") for q in PROMPTS[:2]]
    stop = threading.Event()
    stop.set()
    s0, s1 = Collect(), Collect()
    out = generate_batch(tiny_lm, prompts, [6, 6], stop_at_newline=False, streamers=[s0, s1],
                         cancels=[None, stop])
    assert out[0] == generate(tiny_lm, prompts[0], 6, stop_at_newline=False)
    assert len(tiny_lm.tokenizer(out[1], add_special_tokens=False)["input_ids"]) <= 1, "row 1 was cancelled"
    assert len(s0.puts) == 1 + 6 + 1 and s0.puts[-1] == "end"  # the prompt, 6 tokens, the end
    streamed = [t for p in s0.puts[1:-1] for t in p]
    assert tiny_lm.tokenizer.decode(streamed, skip_special_tokens=True) == out[0]
