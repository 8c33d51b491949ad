"""A weight average of two translators of the same config, one trained on from the other (WiSE-FT's interpolation):
weights = (1 - t) x A + t x B. With A = v8 (reads facts, overrides a prompt at strength 1) and B = v9 (v8 trained on
with `--in-context`: adds to a prompt, reads a little less), a point between may keep some of each. No training;
the folder lists both parents' documents (their union), so eval and tune flag what either saw.

    .venv/bin/python benchmarks/experiments/translator_soup.py benchmarks/results/translator/v8 \
        benchmarks/results/translator/v9 --t 0.5 --out runs/translator-v8v9-soup
"""
from __future__ import annotations

import argparse
from pathlib import Path

from prag.errors import PragError
from prag.translate import (
    SEEN_FILE,
    SEEN_QUESTIONS_FILE,
    load_translator,
    save_translator,
    seen_fingerprints,
    translator_info,
    write_seen,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--t", type=float, default=0.5, help="the weight of b, in [0, 1]")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if not 0.0 <= args.t <= 1.0:
        ap.error("--t must be in [0, 1]")
    try:
        (ta, sha_a), (tb, sha_b) = load_translator(args.a), load_translator(args.b)
    except PragError as e:
        ap.error(str(e))
    if ta.cfg != tb.cfg:
        ap.error("the two translators differ in config: no average of their weights")
    sb = tb.state_dict()
    ta.load_state_dict({k: (1 - args.t) * v + args.t * sb[k] for k, v in ta.state_dict().items()})
    ia, ib = translator_info(args.a), translator_info(args.b)
    meta = {"name": f"{ia.get('name', args.a.name)}-{ib.get('name', args.b.name)} soup t={args.t}",
            "soup": {"t": args.t, "a": {"path": str(args.a), "sha256": sha_a}, "b": {"path": str(args.b), "sha256": sha_b}},
            "trained_on": f"what {args.a} and {args.b} trained on (their documents.sha256 and questions.sha256, joined)"}
    sha = save_translator(ta, args.out, meta)
    for name in (SEEN_FILE, SEEN_QUESTIONS_FILE):
        seen = (seen_fingerprints(args.a, name) or set()) | (seen_fingerprints(args.b, name) or set())
        write_seen(args.out, [], name, inherited=seen)
    print(sha)


if __name__ == "__main__":
    main()
