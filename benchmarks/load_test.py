"""Loopback load test of `prag serve`: N concurrent clients for S seconds, each asking questions with a mixed
set of explicit documents; every answer must equal the single-request answer for the same question and
documents, and no request may fail. Prints one JSON line.

    .venv/bin/python benchmarks/load_test.py --kb kb-demo --questions examples/demo/questions.jsonl \
        --clients 50 --seconds 60 > benchmarks/results/load-test/load-test.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
import socket
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from prag.corpus import load_questions
from prag.pipeline import Pipeline
from prag.serve import create_app
from prag.store import KnowledgeBase


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kb", required=True)
    ap.add_argument("--questions", required=True)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=12)
    args = ap.parse_args()
    pipe = Pipeline(KnowledgeBase.open(Path(args.kb)))
    ids = [d.id for d in pipe.kb.docs if pipe.kb.is_done(d.id)]
    qs = [q.question for q in load_questions(Path(args.questions))]
    rng = random.Random(0)
    sets = [sorted(rng.sample(ids, k)) for k in (1, 2, 3) for _ in range(3)]
    cases = list(itertools.product(qs[:4], [tuple(s) for s in sets]))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(pipe, "prag"), host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"

    def ask(client, q, docs):
        r = client.post(url, json={"messages": [{"role": "user", "content": q}], "doc_ids": list(docs),
                                   "max_tokens": args.max_tokens}, timeout=600)
        r.raise_for_status()
        return r.json()["choices"][0]["message"]["content"]

    with httpx.Client() as c:
        reference = {case: ask(c, *case) for case in cases}  # one request at a time
    stats = {"requests": 0, "errors": 0, "mismatches": 0}
    lock = threading.Lock()
    deadline = time.time() + args.seconds

    def client_loop(seed):
        r = random.Random(seed)
        with httpx.Client() as c:
            while time.time() < deadline:
                case = r.choice(cases)
                try:
                    ok = ask(c, *case) == reference[case]
                    with lock:
                        stats["requests"] += 1
                        stats["mismatches"] += not ok
                except Exception:
                    with lock:
                        stats["errors"] += 1

    t0 = time.time()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats.update(clients=args.clients, seconds=round(time.time() - t0, 1), distinct_cases=len(cases),
                 distinct_answers=len(set(reference.values())), requests_per_s=round(stats["requests"] / (time.time() - t0), 2))
    server.should_exit = True
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
