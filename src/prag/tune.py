"""Tuning the generation settings on development questions (`prag tune`): the adapter strength
(`generation.scale`), the number of worked examples in every prompt (`generation.few_shot`) and, when asked, the
softmax merge's temperature (`generation.temperature`), chosen by P-RAG's F1 on the user's own dev questions and
kept with the kb.

The adapters do not depend on these settings, so every setting reuses the same adapters (built once, batched).
Every answer goes to a log in the kb (`tuning/tune.log.jsonl`), so a killed tuning resumes where it stopped.
The choice follows the one-standard-error rule: among the settings whose F1 is within one standard error of the
best's (the paired per-question differences), the one closest to what an untuned kb uses (the model's defaults,
chosen across datasets for the worst case), so that differences smaller than the dev set's noise do not move the
settings. The winner is written to kb.toml, its worked examples to `examples.jsonl`, and the table it was chosen
from to `tuning.json`, which `prag status` shows.
"""
from __future__ import annotations

import math
import statistics
import time

from .config import default_config
from .corpus import Question, few_shot_examples, split
from .errors import PragError
from .evaluate import answered_by, run_eval
from .pipeline import Pipeline

SCALES = (0.25, 0.5, 1.0)
SHOTS = (0, 4)
TEMPERATURES = (1.0,)  # one by default: a higher one helped on a two-hop set and hurt on 2WQA dev (docs/results.md)


def tune(pipe: Pipeline, questions: list[Question], source: str, budget: int = 30, top_k: int = 3,
         scales: tuple[float, ...] = SCALES, shots: tuple[int, ...] = SHOTS, method: str = "prag",
         progress: bool = True, temperatures: tuple[float, ...] = TEMPERATURES) -> dict:
    """Score `method` on the first `budget` dev questions (worked examples, drawn from the end of dev, are left
    out) for every (shots, scale, temperature); write the best to the kb and return the table. `source` names the
    questions."""
    if budget < 1:
        raise PragError(f"--budget must be at least 1, not {budget}")
    if not scales or not shots or any(s < 0 for s in scales) or any(n < 0 for n in shots):
        raise PragError("--scales and --shots must name one or more numbers >= 0")
    if not temperatures or any(not t > 0 for t in temperatures):
        raise PragError("--temperatures must name one or more numbers > 0")
    if len(temperatures) > 1 and pipe.config.generation.merge != "softmax":
        raise PragError(f"--temperatures weights the softmax merge; this kb merges with {pipe.config.generation.merge!r}")
    examples = few_shot_examples(questions, max(shots))
    shown = {q.id for q in examples}
    dev = [q for q in split(questions, "dev") if q.id not in shown][:budget]
    if not dev:
        raise PragError(f"{source}: no development questions left to tune on (the dev split is the file's first half)")
    t0 = time.perf_counter()
    kb = pipe.kb
    (kb.root / "tuning").mkdir(exist_ok=True)
    log = kb.root / "tuning" / "tune.log.jsonl"
    need = pipe.parameterize_retrieved(dev, top_k, progress=progress)  # once: every setting uses the same adapters
    rows, scores = [], []
    base = pipe.config
    for n in shots:
        for scale in scales:
            for t in temperatures:
                pipe.config = base.override({"generation.scale": scale, "generation.temperature": t})
                pipe.examples = [(q.question, q.golden_answers[0]) for q in examples[:n]]
                res = run_eval(pipe, dev, [method], top_k, log, progress=progress)
                s = res["methods"][method]
                rows.append({"few_shot": n, "scale": scale, "temperature": t, "f1": round(s["f1"], 4),
                             "em": round(s["em"], 4), "n": s["n"]})
                scores.append(res["scores"][method])
    pipe.config = base
    untuned = default_config(base.model).generation
    best, rule = choose(rows, scores, {"few_shot": untuned.few_shot, "scale": untuned.scale,
                                       "temperature": untuned.temperature})
    result = {"source": source, "method": method, "adapters": answered_by(pipe), "budget": budget, "top_k": top_k,
              "questions": [q.id for q in dev],
              "examples": [q.id for q in examples[:best["few_shot"]]], "table": rows,
              "chosen": _setting(best), "rule": rule, "translator_saw": pipe.translator_saw(need, dev),
              "seconds": round(time.perf_counter() - t0, 1)}  # this run's, adapters included (a resumed run: its part)
    kb.save_tuning(result, [(q.question, q.golden_answers[0]) for q in examples[:best["few_shot"]]])
    return result


def _setting(row: dict) -> dict:
    """A tuning row's setting: few_shot, scale, temperature."""
    return {k: row[k] for k in ("few_shot", "scale", "temperature")}


def choose(rows: list[dict], scores: list[dict[str, float]], untuned: dict) -> tuple[dict, dict]:
    """The one-standard-error rule (Breiman et al. 1984): `rows` (few_shot, scale, temperature, f1, em) and each
    row's F1 per question; returns the chosen row and how it was chosen. The best row is the highest F1 (then EM).
    A row is as good when its mean paired difference to the best is at most one standard error of those
    differences; of those, the one closest to `untuned` (fewest examples beyond it, then the strength, then the
    temperature nearest) wins."""
    i_best = max(range(len(rows)), key=lambda i: (rows[i]["f1"], rows[i]["em"]))
    ids = sorted(scores[i_best])
    within, se_of = [], {}
    for i, per_q in enumerate(scores):
        d = [scores[i_best][q] - per_q.get(q, 0.0) for q in ids]
        se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else 0.0
        se_of[i] = se
        if sum(d) / max(1, len(d)) <= se + 1e-12:
            within.append(i)

    def distance(i: int) -> tuple:
        r = rows[i]
        return (abs(r["few_shot"] - untuned["few_shot"]), abs(math.log(max(r["scale"], 1e-9) / max(untuned["scale"], 1e-9))),
                abs(math.log(r["temperature"] / untuned["temperature"])), -r["f1"], -r["em"])
    pick = min(within, key=distance)
    return rows[pick], {"name": "one standard error", "best": _setting(rows[i_best]), "untuned": untuned,
                        "within_one_se": [_setting(rows[i]) for i in within],
                        "se_to_best": [round(se_of[i], 4) for i in range(len(rows))]}


def table(result: dict) -> str:
    """The tuning table as text, the chosen row marked."""
    chosen = result["chosen"]
    lines = [f"tuned on {len(result['questions'])} dev questions of {result['source']} ({result['method']} F1, "
             f"{result.get('adapters', 'trained')} adapters):",
             "  few_shot  scale  temperature     F1     EM"]
    key = ("few_shot", "scale", "temperature")  # a table from before temperatures were tuned has none: 1
    best = result.get("rule", {}).get("best")
    for r in result["table"]:
        mark = "  <- chosen" if all(r.get(k, 1.0) == chosen.get(k, 1.0) for k in key) else ""
        if best and best != chosen and all(r.get(k, 1.0) == best.get(k, 1.0) for k in key):
            mark = "  <- best F1 (the chosen one is within one standard error, nearer the untuned defaults)"
        lines.append(f"  {r['few_shot']:>8}  {r['scale']:>5}  {r.get('temperature', 1.0):>11}  {r['f1']:.3f}  "
                     f"{r['em']:.3f}{mark}")
    if warning := saw_warning(result.get("translator_saw"), "these dev questions retrieve"):
        lines.append(warning)
    return "\n".join(lines)


def saw_warning(saw: dict | None, what: str) -> str | None:
    """A warning when a translator trained on documents or questions that an eval or a tuning uses
    (Pipeline.translator_saw)."""
    if not saw or not (saw["seen"] or saw.get("questions_seen")):
        return None
    parts = [f"{saw['seen']} of the {saw['of']} documents {what}"] if saw["seen"] else []
    if saw.get("questions_seen"):
        parts.append(f"{saw['questions_seen']} of the {saw['questions_of']} questions")
    return (f"warning: {' and '.join(parts)} were in the translator's training data: translated F1 on them "
            "overstates what it does on new ones (docs/results.md, \"A translator on its own training data\")")
