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
from prag.translate import has_shipped_translator

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

    kb = KnowledgeBase.open(KB)
    pipe = Pipeline(kb)
    translated = None
    if has_shipped_translator(kb.config.model):  # the same documents, translated in one forward pass each
        prag("parameterize", "--kb", str(KB), "--translator", "default")
        translated = Pipeline(kb, pipe.lm, kb.config.override({"generation.adapters": "translated",
                                                                "generation.translator": "default"}))
    rows = []
    for q in test:
        answers = {"closed-book": pipe.ask(q.question, method="closed"), "P-RAG": pipe.ask(q.question, method="prag")}
        if translated is not None:
            answers["translated"] = translated.ask(q.question, method="prag")
        rows.append((q, answers))
        print(f"\nQ: {q.question}   (gold: {q.golden_answers[0]})")
        print("   retrieved: " + ", ".join(f"{h.doc.title} ({w:.2f})" if w is not None else f"{h.doc.title} ({k})"
                                        for h, w, k in answers["P-RAG"].per_hit()))
        for name, ans in answers.items():
            print(f"   {name + ':':13}{ans.answer}")
    f1 = {name: sum(score(a[name].answer, q.golden_answers)["f1"] for q, a in rows) / len(rows) for name in rows[0][1]}
    print("\nF1 " + "  |  ".join(f"{k} {v:.2f}" for k, v in f1.items()) + f"  |  demo took {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
