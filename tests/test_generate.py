"""generate.py: answer extraction, cancellation, and batched generation (each row as it would be alone)."""
from pathlib import Path

import pytest

from prag.generate import REASONING_SHOTS, extract_answer, extract_reasoned, reasoning_shots

ROOT = Path(__file__).resolve().parents[1]


def test_extract_answer():
    assert extract_answer(" Paris.\n\nQuestion: next?") == "Paris"
    assert extract_answer("Answer: Jane Austen") == "Jane Austen"
    assert extract_answer("\n\nQuestion: Who wrote it?\n") == ""  # an echoed question is not an answer
    assert extract_answer("") == ""


@pytest.mark.parametrize("raw, answer", [
    ("X was directed by Mara Venn. Mara Venn was born in Dorrington. So the answer is: Dorrington", "Dorrington"),
    ("A came out in 1961. So the answer is The Copper Bell.\nQuestion: next?", "The Copper Bell"),  # no colon
    ("the answer is: B. So the answer is: C", "C"),          # the last one counts
    ("Mara Venn was born in Dorrington.", "Mara Venn was born in Dorrington"),  # no answer line: read as it is
    ("Answer: Paris", "Paris"),
    ("The answer is:\nThe Copper Bell: a film. So the answer is: The Copper Bell", "The Copper Bell"),  # on a later line
    ("So the answer is:\n\nIda Brenn\nmore", "Ida Brenn"),   # the line after an "answer is" that ends its line
    ("So the answer is: C\nQuestion: next? So the answer is: D", "C"),  # not from an echoed question
    ("", ""),
])
def test_extract_reasoned(raw, answer):
    assert extract_reasoned(raw) == answer


@pytest.mark.parametrize("with_documents", [True, False])
def test_reasoning_shots_are_one_line_answers_that_end_in_their_answer(with_documents):
    shots = reasoning_shots(with_documents)
    assert len(shots) == len(REASONING_SHOTS) >= 2
    for (user, answer), (q, docs, _) in zip(shots, REASONING_SHOTS):
        assert q in user and "\n" not in answer and extract_reasoned(answer) == answer.rsplit(": ", 1)[1]
        assert all((d.text in user) == with_documents for d in docs)


def test_generation_stops_once_cancelled(tiny_lm):
    import threading

    from prag.generate import generate

    prompt = tiny_lm.prompter.format("Question: Who commands the Halvard Sorrel?")
    full = generate(tiny_lm, prompt, 40, stop_at_newline=False)
    ev = threading.Event()
    ev.set()  # the client went away before the first token
    cut = generate(tiny_lm, prompt, 40, stop_at_newline=False, cancel=ev)
    n = [len(tiny_lm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in (full, cut)]
    assert n[0] >= 5 and n[1] <= 1, n
    assert generate(tiny_lm, prompt, 40, stop_at_newline=False, cancel=threading.Event()) == full


class Collect:
    """A streamer that records what it is given: the prompt, each token, and "end"."""

    def __init__(self):
        self.puts = []

    def put(self, value):
        self.puts.append(value.tolist())

    def end(self):
        self.puts.append("end")


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


# ---------------------------------------------------------------- the continuous batch
LIMITS = [12, 3, 20, 7, 15]
SETS = [[0], [1, 2], [], [2, 0], [1]]  # each row's adapters (indices into three random ones), at weights 1, 0.5


@pytest.fixture()
def rows_and_alone(tiny_lm):
    """Five prompts with different adapter sets and limits, and each one's text alone (`generate` with only its
    adapters installed). Yields (make_rows, alone, injector)."""
    from conftest import random_adapter
    from prag.generate import Row, generate
    from prag.update import Injector

    inj = Injector(tiny_lm.model, ["gate_proj", "up_proj", "down_proj"])
    ads = [random_adapter(inj, s) for s in range(3)]
    prompts = [tiny_lm.prompter.format(f"Question: {q}") for q in PROMPTS + ["Why not?", "x"]]
    sets = [([ads[i] for i in s], [1.0, 0.5][:len(s)]) for s in SETS]
    alone = []
    for p, n, (a, w) in zip(prompts, LIMITS, sets):
        with inj.applied(a, w):
            alone.append(generate(tiny_lm, p, n, stop_at_newline=False))
    assert len(set(alone)) == 5, "the rows must differ, or the test shows nothing"

    def make_rows(out: dict) -> list:
        return [Row(p, n, a, w, done=lambda text, u, i=i: out.__setitem__(i, text))
                for i, (p, n, (a, w)) in enumerate(zip(prompts, LIMITS, sets))]

    yield make_rows, alone, inj
    inj.remove()


def _feed(rows: list, per_call: int | None = None):
    """A `take` over a list: up to n rows per call (at most `per_call`: rows arriving one by one)."""
    def take(n, idle):
        k = min(n, per_call or n)
        got = rows[:k]
        del rows[:k]
        return got
    return take


@pytest.mark.parametrize("max_rows, per_call, min_join", [(1, None, 1), (2, None, 1), (3, 1, 1), (5, None, 1),
                                                           (8, 2, 1), (3, None, 2), (3, None, 3)])
def test_a_continuous_batch_gives_each_row_its_own_answer(tiny_lm, rows_and_alone, max_rows, per_call, min_join):
    """Rows with their own adapters and limits join as places free up (or as they arrive) and leave when done:
    each row's text is the one it gets alone, and the model is the base model again afterwards."""
    from prag.generate import generate_continuous

    make_rows, alone, inj = rows_and_alone
    out: dict = {}
    widths = []
    real = inj.apply_rows
    inj.apply_rows = lambda rows: widths.append(len(rows)) or real(rows)
    takes = []
    feed = _feed(make_rows(out), per_call)
    generate_continuous(tiny_lm, inj, lambda n, idle: takes.append((n, idle)) or feed(n, idle), max_rows,
                        stop_at_newline=False, min_join=min_join)
    assert [out[i] for i in range(5)] == alone
    assert all(idle or n >= min_join for n, idle in takes), "rows join only once min_join places are free"
    assert max(widths) <= max_rows and (max_rows == 1 or max(widths) > 1), widths  # rows did share passes
    assert not inj.active and all(not t for t in inj.terms.values())


def test_between_steps_the_model_is_the_base_model(tiny_lm, rows_and_alone):
    """`take` runs between decode steps, outside the lock: whoever takes the lock then (training a document, a
    method that retrieves while generating) must not see the running rows' factors."""
    from prag.generate import generate_continuous

    make_rows, alone, inj = rows_and_alone
    rows, out, seen = make_rows({}), {}, []

    def take(n, idle):
        seen.append(dict(inj.active))
        inj.apply([], [])  # another user installs (nothing) meanwhile: the running rows must get theirs back
        got = rows[:1]
        del rows[:1]
        return got

    for r in rows:
        r.done = (lambda i: lambda text, u: out.__setitem__(i, text))(len(out) + rows.index(r))
    generate_continuous(tiny_lm, inj, take, 3, stop_at_newline=False)
    assert len(seen) > 5 and not any(seen)
    assert [out[i] for i in range(5)] == alone


def test_a_continuous_batch_streams_cancels_and_refuses_row_by_row(tiny_lm, rows_and_alone):
    import threading

    from prag.generate import generate_continuous

    make_rows, alone, inj = rows_and_alone
    out: dict = {}
    rows = make_rows(out)
    n_tok = [len(tiny_lm.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in alone]
    s = max(range(5), key=lambda i: n_tok[i])  # the row with the longest answer is streamed
    c = next(i for i in range(5) if i != s and n_tok[i] > 1)  # a row that would say more is cancelled
    x = next(i for i in range(5) if i not in (s, c))  # a row whose documents went away is refused
    rows[s].streamer, rows[c].cancel = Collect(), threading.Event()
    rows[c].cancel.set()  # its client went away: it stops after its first token
    rows[x].admit = lambda: KeyError("deleted")
    generate_continuous(tiny_lm, inj, _feed(list(rows)), 2, stop_at_newline=False)
    assert all(out[i] == alone[i] for i in range(5) if i not in (c, x))
    assert len(tiny_lm.tokenizer(out[c], add_special_tokens=False)["input_ids"]) <= 1 < n_tok[c]
    assert isinstance(out[x], KeyError), "a refused row hears why, and never runs"
    puts = rows[s].streamer.puts
    assert puts[-1] == "end" and len(puts) == 1 + n_tok[s] + 1  # the prompt, its tokens, the end
    assert tiny_lm.tokenizer.decode([t for p in puts[1:-1] for t in p], skip_special_tokens=True) == out[s]


def test_a_base_model_row_ends_at_its_first_line_break(tmp_path):
    """No chat template: an answer ends with the token that holds a line break, as `generate`'s stop string does."""
    from conftest import make_tiny_model_dir
    from prag.generate import Row, generate, generate_continuous
    from prag.models import load_model
    from prag.update import Injector

    lm = load_model(str(make_tiny_model_dir(tmp_path / "base", seed=8, chat=False)))  # a seed that writes "\n"
    inj = Injector(lm.model, ["down_proj"])
    prompts = [lm.prompter.format(f"Question: {q}") for q in PROMPTS]
    alone = [generate(lm, p, 30) for p in prompts]
    assert any("\n" in a for a in alone), "some row must stop at a line break, or the test shows nothing"
    out: dict = {}
    rows = [Row(p, 30, done=lambda t, u, i=i: out.__setitem__(i, t)) for i, p in enumerate(prompts)]
    generate_continuous(lm, inj, _feed(rows), 2)
    assert [out[i] for i in range(3)] == alone


def test_a_failing_batch_tells_every_running_row(tiny_lm, rows_and_alone):
    from prag.generate import generate_continuous

    make_rows, alone, inj = rows_and_alone
    out: dict = {}
    rows = make_rows(out)
    calls = []

    def boom(module, args, output):
        calls.append(1)
        if len(calls) > 3:  # after the prefill, in a decode step
            raise RuntimeError("device lost")

    h = tiny_lm.model.lm_head.register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="device lost"):
            generate_continuous(tiny_lm, inj, _feed(rows), 3, stop_at_newline=False)
    finally:
        h.remove()
    assert sorted(out) == [0, 1, 2, 3], "every row taken hears how it ended"  # row 4 was never taken
    assert any(isinstance(v, RuntimeError) for v in out.values())
    assert all(v == alone[i] for i, v in out.items() if not isinstance(v, RuntimeError)), "rows done before: theirs"
    with pytest.raises(ValueError, match="max_rows"):
        generate_continuous(tiny_lm, inj, _feed([]), 0)
    for bad in (0, 4, 1.5):
        with pytest.raises(ValueError, match="min_join"):
            generate_continuous(tiny_lm, inj, _feed([]), 3, min_join=bad)


def test_a_continuous_batch_keeps_gemmas_sliding_window(tmp_path):
    """Gemma 3 attends within a sliding window on most layers. The continuous batch keeps full caches, so the
    window must come from the mask: with prompts longer than a window of 8 tokens, every row still gets the text
    it gets alone (and the window changes the text, or the test shows nothing)."""
    from conftest import make_tiny_gemma_dir
    from prag.generate import Row, generate, generate_continuous
    from prag.models import load_model
    from prag.update import Injector

    d = make_tiny_gemma_dir(tmp_path / "gemma", seed=1)
    lm = load_model(str(d))
    prompts = [lm.prompter.format(f"Question: {q}") for q in PROMPTS + ["Why not?"]]
    limits = [12, 3, 20, 7]
    alone = [generate(lm, p, n, stop_at_newline=False) for p, n in zip(prompts, limits)]
    inj = Injector(lm.model, ["down_proj"])
    for max_rows in (2, 4):
        out: dict = {}
        rows = [Row(p, n, done=lambda t, u, i=i, out=out: out.__setitem__(i, t))
                for i, (p, n) in enumerate(zip(prompts, limits))]
        generate_continuous(lm, inj, _feed(rows, 1), max_rows, stop_at_newline=False)
        assert [out[i] for i in range(4)] == alone, max_rows
    for layer in lm.model.model.layers:  # the same weights with a window wider than any prompt
        layer.self_attn.sliding_window = None if layer.self_attn.sliding_window is None else 10_000
    lm.model.config.sliding_window = 10_000
    assert [generate(lm, p, n, stop_at_newline=False) for p, n in zip(prompts, limits)] != alone


def test_a_row_whose_documents_go_away_ends_at_the_next_step(tiny_lm, rows_and_alone):
    """`admit` is asked again before every step (a deletion lands between steps): the row it refuses ends with that
    error at once, the other rows are unaffected."""
    from prag.generate import generate_continuous

    make_rows, alone, inj = rows_and_alone
    out: dict = {}
    rows = make_rows(out)
    n_tok = [len(tiny_lm.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in alone]
    v = max(range(5), key=lambda i: n_tok[i])  # the longest answer: still running after 3 steps
    steps = {"n": 0}

    def admit():
        steps["n"] += 1
        return LookupError("document deleted") if steps["n"] > 3 else None

    rows[v].admit = admit
    generate_continuous(tiny_lm, inj, _feed(list(rows)), 5, stop_at_newline=False)
    assert isinstance(out[v], LookupError) and steps["n"] == 4, "it ended at the first step after the deletion"
    assert all(out[i] == alone[i] for i in range(5) if i != v)


def test_every_row_taken_hears_once_whatever_fails(tiny_lm, rows_and_alone):
    """A refused row and a finished row in the step that fails, and a `done` callback that raises: each row still
    gets exactly one `done`."""
    from prag.generate import generate_continuous

    make_rows, _, inj = rows_and_alone
    heard: dict = {}
    rows = make_rows({})
    for i, r in enumerate(rows):
        r.done = lambda res, u, i=i: heard.setdefault(i, []).append(res)
    rows[0].done = lambda res, u: (heard.setdefault(0, []).append(res), 1 / 0)  # a failing callback
    rows[3].admit = lambda: KeyError("deleted")
    calls = []

    def boom(module, args, output):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("device lost")

    h = tiny_lm.model.lm_head.register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="device lost"):
            generate_continuous(tiny_lm, inj, _feed(list(rows)), 5, stop_at_newline=False)
    finally:
        h.remove()
    assert sorted(heard) == [0, 1, 2, 3, 4] and all(len(v) == 1 for v in heard.values()), heard
    assert isinstance(heard[3][0], KeyError) and isinstance(heard[2][0], RuntimeError)
    assert not inj.active


def test_one_row_installs_its_adapters_once(tiny_lm, rows_and_alone):
    """Alone in the batch, the prefill's factors serve every decode step: the Update is paid (and reported) once."""
    from prag.generate import generate_continuous

    make_rows, _, inj = rows_and_alone
    calls = []
    real = inj.apply_rows
    inj.apply_rows = lambda rows: calls.append(len(rows)) or real(rows)
    generate_continuous(tiny_lm, inj, _feed(make_rows({})[:1]), 4, stop_at_newline=False)
    assert calls == [1]


class Scripted:
    """A forward hook on the output layer that makes greedy decoding write `script` (token ids), then the last
    id of it forever: the model's own weights play no part."""

    def __init__(self, script: list[int]):
        self.script, self.step = script, 0

    def __call__(self, module, args, out):
        import torch

        tok = self.script[min(self.step, len(self.script) - 1)]
        self.step += 1
        forced = torch.full_like(out, -1e4)
        forced[..., tok] = 0.0
        return forced


@pytest.mark.parametrize("special", ["<s>", "<unk>", "</s>"])
@pytest.mark.parametrize("path", ["generate", "continuous"])
def test_an_answer_ends_at_any_special_token(tiny_lm, special, path):
    """A model that starts a new turn (here the tiny tokenizer's <s> or <unk>, in SmolLM2 <|im_start|>) has ended
    its answer: what follows is not part of it, though decoding would hide the special token and glue the rest on."""
    from prag.generate import Row, generate, generate_continuous
    from prag.update import Injector

    tok = tiny_lm.tokenizer
    assert tok.convert_tokens_to_ids(special) in tiny_lm.end_ids and tok.eos_token_id in tiny_lm.end_ids
    script = [tok.convert_tokens_to_ids(c) for c in "ab"] + [tok.convert_tokens_to_ids(special)] + \
        [tok.convert_tokens_to_ids("c")]
    hook = tiny_lm.model.lm_head.register_forward_hook(Scripted(script))
    try:
        prompt = tiny_lm.prompter.format("Question: Who commands the Halvard Sorrel?")
        if path == "generate":
            got = generate(tiny_lm, prompt, 10, stop_at_newline=False)
        else:
            out: dict = {}
            generate_continuous(tiny_lm, Injector(tiny_lm.model, ["down_proj"]),
                                _feed([Row(prompt, 10, done=lambda t, u: out.setdefault("t", t))]), 1)
            got = out["t"]
    finally:
        hook.remove()
    assert got == "ab", got  # without the stop: "abccccccc"


def test_the_reasoning_examples_name_nothing_in_our_invented_sets():
    """Their facts are invented: a name shared with an invented evaluation set would lend or contradict facts."""
    texts = [p.read_text(encoding="utf-8").lower() for p in [*ROOT.glob("benchmarks/data/*/*.jsonl"),
                                                              *ROOT.glob("tests/data/*/*.jsonl")]]
    assert len(texts) >= 4
    names = {d.title for _, docs, _ in REASONING_SHOTS for d in docs} | {a.rsplit(": ", 1)[1] for *_, a in REASONING_SHOTS}
    assert not [n for n in names if any(n.lower() in t for t in texts)]
