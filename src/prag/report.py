"""Reports from `prag eval` result files: a Markdown table laid out like the paper's Table 1 (rows: model ×
method; columns: dataset, with per-type columns where a dataset has question types) and PNG plots (F1 by method
and model; seconds per question by method, with the Update shown apart).

Each result JSON carries its `dataset` (or `questions` path), `model` and `methods` (see evaluate.py); the
report never recomputes a score, it only lays out what the evaluations wrote.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from .errors import PragError
from .methods import METHODS
from .models import MODELS, display_name


def _method_rank(method: str) -> int:
    """Methods in registry order (closed, rag, ... combine); unknown ones last."""
    return METHODS.names().index(method) if method in METHODS else 99


def _model_rank(model: str) -> int:
    return MODELS.names().index(model) if model in MODELS else 99


def _split_selection(spec) -> tuple[Path, list[str] | None]:
    """`results.json` or `results.json:prag,combine` (only those methods of that file). An existing file is always
    taken whole, whatever its name."""
    text = str(spec)
    head, sep, tail = text.rpartition(":")
    if not sep or not head.lower().endswith(".json") or Path(text).is_file():
        return Path(text), None
    methods = [m.strip() for m in tail.split(",") if m.strip()]
    if not methods:
        raise PragError(f"{text}: name at least one method after ':' (e.g. {head}:prag,combine)")
    odd = [m for m in methods if any(c in m for c in "/\\ ")]
    if odd:
        raise PragError(f"{text}: {odd[0]!r} is not a method name; the form is FILE.json:METHOD,METHOD")
    return Path(head), methods


def load_results(paths: list) -> list[dict]:
    """Result files, each optionally as `FILE:METHOD,...` to take only those methods from it (so a newer run's
    rows can replace an older file's without editing either)."""
    out = []
    for spec in paths:
        p, only = _split_selection(spec)
        try:
            res = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PragError(f"{p}: file not found") from None
        except IsADirectoryError:
            raise PragError(f"{p}: is a directory, not a results file") from None
        except json.JSONDecodeError as e:
            raise PragError(f"{p}: not a JSON results file ({e})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise PragError(f"{p}: cannot read it ({e})") from None
        if not isinstance(res, dict) or not isinstance(res.get("methods"), dict):
            raise PragError(f"{p}: not a `prag eval` results file (no 'methods')")
        if only is not None:
            missing = [m for m in only if m not in res["methods"]]
            if missing:
                raise PragError(f"{p}: has no {', '.join(map(repr, missing))} (it has: {', '.join(res['methods'])})")
            res["methods"] = {m: res["methods"][m] for m in only}
        res.setdefault("dataset", Path(res.get("questions", p)).parent.name or p.stem)
        res["_path"] = str(p) + (f" ({', '.join(only)})" if only is not None else "")
        out.append(res)
    return out


def _cells(results: list[dict]):
    """{(model, method): {(dataset, type or ''): summary}} and the column list in first-seen order."""
    cells: dict = defaultdict(dict)
    columns: dict[str, list[str]] = {}
    seen: dict[tuple, str] = {}
    for res in results:
        ds, model = res["dataset"], res.get("model", "?")
        for method, summ in res["methods"].items():
            if not summ.get("n"):
                continue
            other = seen.setdefault((ds, model, method), res.get("_path", "?"))
            if other != res.get("_path", "?"):
                raise PragError(f"{res.get('_path')} and {other} both have {method} on {ds} with {model}: "
                                "report them separately, or take some methods from each (FILE.json:prag,combine)")
            types = sorted(summ.get("by_type", {}))
            cols = columns.setdefault(ds, [])
            for t in types + ["" if types else ""]:
                if t not in cols:
                    cols.append(t)
            cells[(model, method)][(ds, "")] = summ
            for t in types:
                cells[(model, method)][(ds, t)] = summ["by_type"][t]
    for ds, cols in columns.items():  # per-type columns first, then the dataset's total
        columns[ds] = [c for c in cols if c] + [""]
    return cells, columns


def markdown_table(results: list[dict], metric: str = "f1") -> str:
    """The paper's Table 1 layout: one row per (model, method), F1 per dataset (and per question type)."""
    cells, columns = _cells(results)
    head = ["model", "method"]
    for ds, cols in columns.items():
        head += [f"{ds} {c}" if c else (f"{ds} total" if len(cols) > 1 else ds) for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    models = sorted({m for m, _ in cells}, key=_model_rank)
    most = {col: max((c[col].get("n", 0) for c in cells.values() if col in c), default=0)
            for col in {k for c in cells.values() for k in c}}
    for model in models:
        methods = sorted({me for mo, me in cells if mo == model},
                         key=_method_rank)
        for method in methods:
            row = [display_name(model), method]
            for ds, cols in columns.items():
                for c in cols:
                    summ = cells[(model, method)].get((ds, c))
                    if not summ or metric not in summ:
                        row.append("–")
                        continue
                    fewer = summ.get("n", 0) != most[(ds, c)]  # a cell over fewer questions says so
                    row.append(f"{summ[metric]:.3f}" + (f" (n={summ['n']})" if fewer else ""))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def runtime_table(results: list[dict]) -> str:
    """Seconds per question by method (mean over each result file's questions), Update shown apart, the
    device that ran them (results written before `device` was recorded all ran on the CPU), and for prag and
    combine the offline cost of their adapters: median seconds per document, augmentation and training (– where
    the result predates that record; the adapters may have been made on another device than the eval's)."""
    lines = ["| dataset | model | method | n | F1 | EM | s/question | Update ms/question | prompt tokens | retrieval recall "
             "| encoding s/doc (adapters) | device |", "|" + " --- |" * 12]
    for res in results:
        for method in sorted(res["methods"], key=_method_rank):
            s = res["methods"][method]
            if not s.get("n"):
                continue
            rec = f"{s['retrieval_recall']:.2f}" if "retrieval_recall" in s else "–"
            enc = res.get("encoding") if method in METHODS and METHODS.get(method).adapters else None
            if enc and enc.get("sec_per_doc_median") is not None:  # "(timed/used)" when some adapters had no time
                n = enc["timed"] if enc["timed"] == enc["adapters"] else f"{enc['timed']}/{enc['adapters']}"
                enc = f"{enc['sec_per_doc_median']:.1f} ({n})"
            else:
                enc = "–"
            lines.append(f"| {res['dataset']} | {display_name(res.get('model'))} | {method} | "
                         f"{s['n']} | {s['f1']:.3f} | {s['em']:.3f} | {s['sec_per_question']:.2f} | "
                         f"{s.get('update_sec_per_question', 0.0) * 1000:.1f} | {s.get('prompt_tokens', 0):.0f} | {rec} | {enc} | "
                         f"{s.get('device', res.get('device', 'cpu'))} |")
    return "\n".join(lines) + "\n"


def plots(results: list[dict], out_dir: Path) -> list[Path]:
    """f1_by_method.png (one panel per dataset, bars per method and model) and seconds_by_method.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    models = list(dict.fromkeys(r.get("model", "?") for r in results))
    written = []
    for key, fname, label in (("f1", "f1_by_method.png", "F1"),
                              ("sec_per_question", "seconds_by_method.png", "seconds per question")):
        fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
        for ax, ds in zip(axes[0], datasets):
            rs = [r for r in results if r["dataset"] == ds]
            methods = sorted({m for r in rs for m in r["methods"] if r["methods"][m].get("n")},
                             key=_method_rank)
            width = 0.8 / max(1, len(models))
            for j, model in enumerate(models):
                vals = []
                for m in methods:
                    s = next((r["methods"][m] for r in rs if r.get("model") == model and m in r["methods"]), None)
                    vals.append(s[key] if s and s.get("n") else 0.0)
                xs = [i + j * width for i in range(len(methods))]
                ax.bar(xs, vals, width, label=display_name(model))
                if key == "sec_per_question":  # the Update's share, hatched
                    upd = []
                    for m in methods:
                        s = next((r["methods"][m] for r in rs if r.get("model") == model and m in r["methods"]), None)
                        upd.append(s.get("update_sec_per_question", 0.0) if s and s.get("n") else 0.0)
                    ax.bar(xs, upd, width, color="none", edgecolor="black", hatch="//")
            ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(methods))], methods, rotation=30)
            ax.set_title(ds, fontsize=9)
            ax.set_ylabel(label)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(paths: list, out_dir: Path, title: str = "Results") -> dict:
    """Markdown (report.md: F1 table, EM table, runtime table, sources) and the PNG plots into `out_dir`."""
    results = load_results(paths)
    if not results:
        raise PragError("no result files given")
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = plots(results, out_dir)
    md = [f"# {title}", "", "F1 (SQuAD normalization, max over golden answers):", "", markdown_table(results, "f1"),
          "EM:", "", markdown_table(results, "em"), "Runtime and retrieval:", "", runtime_table(results)]
    md += [f"![{p.stem}]({p.name})" for p in pngs] + ["", "Sources (each with the command that produced it):", ""]
    for r in results:
        md.append(f"- `{r['_path']}`" + (f": `{r['command']}`" if r.get("command") else ""))
    (out_dir / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return {"markdown": str(out_dir / "report.md"), "plots": [str(p) for p in pngs]}
