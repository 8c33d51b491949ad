"""The ablation table of ablations.sh: one row per `<OUT>/<STEM>-<ablation>.json` (prag and combine F1 / EM, n,
empty answers, device, the command), written to `<OUT>/<STEM>.md`.

When the ablations answered different numbers of questions (one stopped at the first 50, say), two more columns
score every ablation on the questions all of them answered, from their answer logs, so rows compare like for like.
    .venv/bin/python benchmarks/experiments/ablation_table.py benchmarks/results/ablations 2wikimultihopqa-comparison-smollm2
"""
import json
import sys
from pathlib import Path

METHODS = ("prag", "combine")


def _count(shots) -> int:
    """Worked examples in a result: a count or the list of their question ids."""
    return shots if isinstance(shots, int) else len(shots or [])


def logged_rows(result: dict, log: Path) -> dict[tuple[str, str], dict]:
    """The last logged answer per (method, question) made under this result's setting (top-k, strength, merge,
    number of worked examples): a log may also hold rows of other methods or settings."""
    rows: dict[tuple[str, str], dict] = {}
    if not log.exists():
        return rows
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        s = row.get("setting", {})
        if (row.get("method") in METHODS and s.get("top_k") == result["top_k"] and s.get("scale") == result["scale"]
                and s.get("merge", result.get("merge")) == result.get("merge")
                and len(s.get("few_shot", [])) == _count(result["few_shot"])):
            rows[(row["method"], row["id"])] = row
    return rows


def main(out: Path, stem: str) -> str:
    results = {f.stem[len(stem) + 1:]: json.loads(f.read_text()) for f in sorted(out.glob(f"{stem}-*.json"))}
    if not results:
        raise SystemExit(f"no {stem}-*.json in {out}")
    ns = {r["methods"]["prag"]["n"] for r in results.values()}
    head = ["ablation", "prag F1 / EM", "combine F1 / EM", "n", "empty answers", "device", "command"]
    shared: set[str] = set()
    logs = {}
    if len(ns) > 1:
        logs = {name: logged_rows(r, out / f"{stem}-{name}.log.jsonl") for name, r in results.items()}
        shared = set.intersection(*({i for m, i in rows if m == "prag"} & {i for m, i in rows if m == "combine"}
                                    for rows in logs.values()))
        head[3:3] = [f"prag F1 (shared {len(shared)})", f"combine F1 (shared {len(shared)})"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, r in results.items():
        p, c = (r["methods"][m] for m in METHODS)
        cells = [name, f"{p['f1']:.3f} / {p['em']:.2f}", f"{c['f1']:.3f} / {c['em']:.2f}", str(p["n"]),
                 f"{p.get('empty_answers', '?')} / {c.get('empty_answers', '?')}", r.get("device", "cpu"),
                 f"`{r.get('command', '')}`"]
        if shared:
            cells[3:3] = [f"{sum(logs[name][(m, i)]['f1'] for i in shared) / len(shared):.3f}" for m in METHODS]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if shared:
        text += (f"\nThe shared columns score each ablation on the {len(shared)} questions every ablation answered "
                 "(from the answer logs).\n")
    (out / f"{stem}.md").write_text(text)
    return text


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(main(Path(sys.argv[1]), sys.argv[2]), end="")
