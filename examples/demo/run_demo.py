"""The demo: index a small fictional corpus, parameterize it, tune the adapter strength on its dev questions (the
first half of questions.jsonl), and ask the test half closed-book and with P-RAG.

The documents are invented, so the model cannot know the answers: closed-book fails, P-RAG answers from the
documents' adapters alone (the question is asked bare, with no document text in the prompt).
Run with `make demo` (or `.venv/bin/python examples/demo/run_demo.py`).
"""
import subprocess
import sys
import time
from pathlib import Path

from prag.corpus import load_questions, split
from prag.evaluate import score
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase

HERE = Path(__file__).parent
KB = Path("kb-demo")


def prag(*args: str) -> None:
    cmd = [str(Path(sys.executable).parent / "prag"), *args]
    print("$ prag " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    t0 = time.time()
    prag("index", "--corpus", str(HERE / "corpus.jsonl"), "--kb", str(KB), "--overwrite")
    prag("parameterize", "--kb", str(KB))
    prag("tune", "--kb", str(KB), "--questions", str(HERE / "questions.jsonl"), "--shots", "0")  # dev half only
    test = split(load_questions(HERE / "questions.jsonl"), "test")
    prag("ask", "--kb", str(KB), "--method", "prag", test[0].question)

    pipe = Pipeline(KnowledgeBase.open(KB))
    rows = []
    for q in test:
        closed = pipe.ask(q.question, method="closed")
        param = pipe.ask(q.question, method="prag")
        rows.append((q, closed, param))
        print(f"\nQ: {q.question}   (gold: {q.golden_answers[0]})")
        print("   retrieved: " + ", ".join(f"{h.doc.title} ({w:.2f})" if w is not None else f"{h.doc.title} ({k})"
                                        for h, w, k in param.per_hit()))
        print(f"   closed-book: {closed.answer}")
        print(f"   P-RAG:       {param.answer}")
    f1 = {"closed": sum(score(c.answer, q.golden_answers)["f1"] for q, c, _ in rows) / len(rows),
          "prag": sum(score(p.answer, q.golden_answers)["f1"] for q, _, p in rows) / len(rows)}
    print(f"\nF1 closed-book {f1['closed']:.2f}  |  P-RAG {f1['prag']:.2f}  |  demo took {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
