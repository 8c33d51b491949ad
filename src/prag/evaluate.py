"""Evaluation: SQuAD-style EM/F1 (max over golden answers) and runs of methods over question sets, with
results written as JSON and resumed from a per-question log after an interruption."""
from __future__ import annotations

import collections
import json
import os
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from .config import DynamicConfig, recipe_key
from .errors import PragError
from .generate import reasoning_shots_key
from .methods import METHODS
from .text import normalize_answer
from .translate import translator_sha


def _f1_one(pred: str, gold: str) -> tuple[float, float, float]:
    p, g = normalize_answer(pred), normalize_answer(gold)
    special = {"yes", "no", "noanswer"}
    if (p in special or g in special) and p != g:
        return 0.0, 0.0, 0.0
    pt, gt = p.split(), g.split()
    common = collections.Counter(pt) & collections.Counter(gt)
    same = sum(common.values())
    if same == 0:
        return 0.0, 0.0, 0.0
    prec, rec = same / len(pt), same / len(gt)
    return 2 * prec * rec / (prec + rec), prec, rec


def score(pred: str, golds: list[str]) -> dict[str, float]:
    """EM, F1, precision, recall of one prediction: each the max over the golden answers."""
    em = max(float(normalize_answer(pred) == normalize_answer(g)) for g in golds)
    f1s = [_f1_one(pred, g) for g in golds]
    return {"em": em, "f1": max(f[0] for f in f1s), "precision": max(f[1] for f in f1s),
            "recall": max(f[2] for f in f1s)}


def doc_recall(retrieved: list[str], gold: list[str]) -> float | None:
    """Share of the gold documents among the retrieved ones (recall@k); None without gold documents."""
    if not gold:
        return None
    return len(set(retrieved) & set(gold)) / len(set(gold))


def devices(rows: list[dict]) -> str:
    """Every device the rows were answered on, comma-joined (rows logged before devices were recorded: cpu)."""
    return ",".join(sorted({r.get("device", "cpu") for r in rows}))


def summarize(rows: list[dict]) -> dict:
    n = len(rows)
    if not n:
        return {"n": 0}
    out = {k: sum(r[k] for r in rows) / n for k in ("f1", "em", "precision", "recall")}
    # a batched answer's seconds are its batch's: each of the batch's rows costs its share
    out["sec_per_question"] = sum(r["seconds"] / r.get("batch_rows", 1) for r in rows) / n
    out["update_sec_per_question"] = sum(r.get("update_seconds", 0.0) / r.get("batch_rows", 1) for r in rows) / n
    out["retrieval_rounds"] = sum(r.get("retrieval_rounds", 0) for r in rows) / n
    out["prompt_tokens"] = sum(r.get("prompt_tokens", 0) for r in rows) / n
    out["empty_answers"] = sum(not str(r.get("prediction", "")).strip() for r in rows)
    with_gold = [r["doc_recall"] for r in rows if r.get("doc_recall") is not None]
    if with_gold:
        out["retrieval_recall"] = sum(with_gold) / len(with_gold)  # recall@k of gold_doc_ids in the hits
    out["n"] = n
    out["device"] = devices(rows)
    types = sorted({r.get("type", "") for r in rows} - {""})
    if types:
        out["by_type"] = {}
        for t in types:
            sel = [r for r in rows if r.get("type", "") == t]
            out["by_type"][t] = {k: sum(r[k] for r in sel) / len(sel) for k in ("f1", "em", "precision", "recall")}
            out["by_type"][t]["n"] = len(sel)
    return out


def _setting(pipe, top_k: int, method: str) -> dict:
    """What a logged answer depends on besides the question: rows of another setting are redone, not reused.
    prag and combine also depend on the adapters, so their rows carry the kb's `recipe_key` (`prag parameterize`
    keeps kb.toml describing the adapters it holds) and, when translated adapters answer, `answered_by` (which
    translator); a row without it was answered by trained adapters (or logged before the key existed)."""
    gcfg = pipe.config.generation
    setting = {"top_k": top_k, "backend": gcfg.backend, "merge": gcfg.merge, "model": pipe.config.model}
    if gcfg.scale != 1.0:  # keys only when set, so logs written before they existed still resume
        setting["scale"] = gcfg.scale
    if gcfg.temperature != 1.0:
        setting["temperature"] = gcfg.temperature
    m = METHODS.get(method)
    if pipe.examples and not m.reasoning:  # a reasoning method shows its own examples instead
        setting["few_shot"] = [q for q, _ in pipe.examples]
    if m.adapters:
        setting["adapters"] = recipe_key(pipe.config)
        if (by := answered_by(pipe)) != "trained":  # only translated ones carry it: older logs resume
            setting["answered_by"] = by
    if m.reasoning:  # its worked examples are the built-in ones, and its answers longer
        setting["reasoning"] = {"tokens": gcfg.reasoning_tokens, "shots": reasoning_shots_key()}
    if m.dynamic is not None and pipe.config.dynamic != DynamicConfig():
        setting["dynamic"] = asdict(pipe.config.dynamic)  # only when changed: older logs at the defaults resume
    return setting


def answered_by(pipe) -> str:
    """Which adapters answer, as logs and tunings record it: "translated:<the translator's sha256, 16 digits>"
    when `generation.adapters` is "translated", else "trained" ("trained-else-translated" counts as trained here:
    an eval or a tuning trains every document it retrieves before answering)."""
    gcfg = pipe.config.generation
    if gcfg.adapters != "translated" or not gcfg.translator:
        return "trained"
    return f"translated:{translator_sha(gcfg.translator, pipe.config.model)[:16]}"


def _logged(log_path: Path | None, settings: dict[str, dict]) -> dict[tuple[str, str], dict]:
    """Rows of `log_path` answered under `settings[method]`. A row logged before `adapters` was recorded matches
    on its other keys."""
    done: dict[tuple[str, str], dict] = {}
    if log_path and log_path.exists():
        for line in log_path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                key = (row["method"], row["id"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a crash
            setting = settings.get(key[0])
            if setting is None:
                continue
            logged = row.get("setting", setting)
            if "adapters" not in logged:
                setting = {k: v for k, v in setting.items() if k != "adapters"}
            if logged == setting:
                done[key] = row
    return done


def pending(pipe, questions, methods: list[str], top_k: int, log_path: Path | None = None) -> list:
    """The questions that some method in `methods` has not answered yet in `log_path` (all of them without a log):
    a resumed eval builds adapters only for these."""
    done = _logged(log_path, {m: _setting(pipe, top_k, m) for m in methods})
    return [q for q in questions if any((m, q.id) not in done for m in methods)]


def run_device(pipe) -> str:
    """What answers: "llamacpp" for that backend, else the torch device of the model (cpu, cuda:0, ...)."""
    return pipe.backend.device()


DOC_SOURCES = ("retrieved", "gold")


def jobs(methods: list[str], questions, doc_source: str = "retrieved") -> list[tuple[str, str, object, list | None]]:
    """What an eval answers: (label, method, question, doc_ids) rows. "retrieved": each method as it is (BM25 top-k;
    label = method). "gold", the oracle that isolates composition from retrieval: each method on the question's
    `gold_doc_ids` together (label "M@gold") and, for methods with adapters, on each gold document alone
    ("M@gold-1", "M@gold-2", ...; only where a question has two or more)."""
    if doc_source not in DOC_SOURCES:
        raise PragError(f"unknown doc source {doc_source!r}: use {' or '.join(DOC_SOURCES)}")
    if doc_source == "retrieved":
        return [(m, m, q, None) for m in methods for q in questions]
    missing = [q.id for q in questions if not q.gold_doc_ids]
    if missing:
        raise PragError(f"--doc-source gold needs gold_doc_ids on every question; {len(missing)} have none "
                        f"(first: {missing[0]})")
    dynamic = [m for m in methods if METHODS.get(m).dynamic is not None or not METHODS.get(m).retrieves]
    if dynamic:
        raise PragError(f"--doc-source gold answers with given documents; {', '.join(dynamic)} cannot take them")
    out = []
    for m in methods:
        out += [(f"{m}@gold", m, q, list(q.gold_doc_ids)) for q in questions]
        if METHODS.get(m).adapters:
            out += [(f"{m}@gold-{i}", m, q, [d]) for q in questions if len(q.gold_doc_ids) > 1
                    for i, d in enumerate(q.gold_doc_ids, 1)]
    return out


def run_eval(pipe, questions, methods: list[str], top_k: int, log_path: Path | None = None,
             progress: bool = True, batch_size: int = 1, doc_source: str = "retrieved") -> dict:
    """Answer every question with every method, `batch_size` questions per batch (`Pipeline.ask_batch`: the same
    answers as one at a time); rows already in `log_path` (JSONL) are reused (resume). With `doc_source` "gold",
    the oracle conditions of `jobs`, and each adapter method's composition gain (`composition`)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise PragError(f"batch size must be a positive integer, not {batch_size!r}")
    todo_all = jobs(methods, questions, doc_source)
    settings = {label: _setting(pipe, top_k, m) | ({"doc_source": doc_source} if doc_source != "retrieved" else {})
                for label, m, _, _ in todo_all}
    done = _logged(log_path, settings)
    log = open(log_path, "a", encoding="utf-8") if log_path else None
    try:
        todo = [j for j in todo_all if (j[0], j[2].id) not in done]
        device = run_device(pipe) if todo else None
        bar = tqdm(total=len(todo), desc="eval", unit="q", disable=not progress or not todo)
        for chunk in _batches(pipe, todo, top_k, batch_size):
            answers = pipe.ask_batch([(q.question, m, top_k, ids) for _, m, q, ids, _ in chunk],
                                     [plan for *_, plan in chunk], max_rows=batch_size)
            for res in answers:
                if isinstance(res, Exception):
                    raise res
            for (label, _, q, _, _), res in zip(chunk, answers):
                _log_row(done, log, settings[label], device, label, q, res, len(chunk))
            bar.update(len(chunk))
        bar.close()
    finally:
        if log:
            log.close()
    ids = {q.id for q in questions}
    labels = list(dict.fromkeys(j[0] for j in todo_all))
    rows = {label: [r for (mm, i), r in done.items() if mm == label and i in ids] for label in labels}
    out = {"methods": {label: summarize(rs) for label, rs in rows.items()}, "device": devices(sum(rows.values(), [])),
           "scores": {label: {r["id"]: r["f1"] for r in rs} for label, rs in rows.items()}}  # F1 per question
    if doc_source == "gold":
        out["composition"] = {m: composition(rows, m) for m in methods if METHODS.get(m).adapters}
    return out


def composition(rows: dict[str, list[dict]], method: str) -> dict:
    """On the questions with two or more gold documents: F1 with all of them together, F1 of the best single one
    (per question, the best of `method@gold-i`), and the composition gain (together minus best single), overall
    and per question type."""
    singles: dict[str, list[float]] = {}
    for label, rs in rows.items():
        if label.startswith(f"{method}@gold-"):
            for r in rs:
                singles.setdefault(r["id"], []).append(r["f1"])
    both = {r["id"]: r for r in rows.get(f"{method}@gold", []) if r["id"] in singles}

    def table(ids: list[str]) -> dict:
        if not ids:
            return {"n": 0}
        t, b = sum(both[i]["f1"] for i in ids) / len(ids), sum(max(singles[i]) for i in ids) / len(ids)
        mean = sum(sum(singles[i]) / len(singles[i]) for i in ids) / len(ids)
        # best_single is a max over tries: on a two-way choice (which film?), it is right whenever any one is
        return {"n": len(ids), "together": t, "best_single": b, "mean_single": mean, "gain": t - b}

    out = table(sorted(both))
    types = sorted({r.get("type", "") for r in both.values()} - {""})
    if types:
        out["by_type"] = {t: table([i for i, r in both.items() if r.get("type", "") == t]) for t in types}
    return out


ROWS_PER_CHUNK = 4  # with batch_size > 1, a chunk holds 4 batches' questions: a row that ends makes room for the next


def _batches(pipe, todo: list, top_k: int, batch_size: int):
    """(label, method, question, doc_ids, plan) chunks: one label per chunk, and with batch_size > 1, its
    questions planned first and sorted by prompt length, so that left padding wastes little (a padded token costs
    as much as a real one), `ROWS_PER_CHUNK` batches' worth per chunk (the log is written after each)."""
    for label in dict.fromkeys(j[0] for j in todo):
        rows = [(*j, None) for j in todo if j[0] == label]
        if batch_size > 1 and METHODS.get(rows[0][1]).dynamic is None:
            rows = sorted(((lb, m, q, ids, pipe.plan(q.question, m, top_k, ids)) for lb, m, q, ids, _ in rows),
                          key=lambda r: len(r[4].prompt))
        size = batch_size * ROWS_PER_CHUNK if batch_size > 1 else 1
        for start in range(0, len(rows), size):
            yield rows[start:start + size]
            # answered: let their plans go. A plan holds its adapters, and an adapter the Update used holds its packed
            # copy (tens of MB with a translator's token memory); kept to the end, they outgrew the kb's adapter cache
            rows[start:start + size] = [None] * len(rows[start:start + size])


def _log_row(done: dict, log, setting: dict, device: str, method: str, q, res, batch_rows: int) -> None:
    """Record one answer in `done` and append it to the eval log (flushed to disk: a crash loses nothing).
    `seconds` is the wall time of the answer's batch, shared by `batch_rows` questions. A method that reasons
    first (its setting says so) also records its whole generation, the reasoning."""
    row = {"method": method, "id": q.id, "type": q.type, "setting": setting, "prediction": res.answer,
           "golden_answers": q.golden_answers, "doc_ids": [h.doc.id for h in res.hits],
           "seconds": res.seconds, "update_seconds": res.update_seconds, "batch_rows": batch_rows,
           "retrieval_rounds": res.retrieval_rounds, "prompt_tokens": res.prompt_tokens, "device": device,
           "doc_recall": doc_recall([h.doc.id for h in res.hits], q.gold_doc_ids) if res.hits else None,
           **score(res.answer, q.golden_answers)} | ({"raw": res.raw} if "reasoning" in setting else {})
    done[(method, q.id)] = row
    if log:
        log.write(json.dumps(row) + "\n")
        log.flush()
        os.fsync(log.fileno())


def empty_warnings(res: dict) -> list[str]:
    """A line for each method of an eval result that answered nothing for more than half its questions: a sign of
    a broken adapter, prompt or answer extraction rather than a finding."""
    return [f"warning: {m} answered nothing for {s['empty_answers']} of {s['n']} questions"
            for m, s in res.get("methods", {}).items() if s.get("n") and s.get("empty_answers", 0) * 2 > s["n"]]


def weak_warnings(res: dict, margin: float = 0.1, min_n: int = 10) -> list[str]:
    """A line when prag or combine scores far below closed-book or rag on enough questions: the generation settings
    (adapter strength, worked examples) likely do not suit these questions."""
    methods = res.get("methods", {})
    ref = {m: s["f1"] for m, s in methods.items() if m in ("closed", "rag") and s.get("n", 0) >= min_n}
    if not ref:
        return []
    best, f1 = max(ref.items(), key=lambda kv: kv[1])
    return [f"warning: {m} F1 {s['f1']:.3f} is far below {best}'s {f1:.3f} on {s['n']} questions: run `prag tune` on "
            "your dev questions to pick the adapter strength and worked examples"
            for m, s in methods.items() if METHODS.get(m).adapters and s.get("n", 0) >= min_n
            and s["f1"] < f1 - margin]
