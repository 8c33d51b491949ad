"""Scale-out of offline parameterization on Ray: batches of documents become tasks for Ray actors, each
holding one loaded base model and writing into the same knowledge-base directory with the same atomicity
as a local job (temporary folder + rename per document, checksummed manifest lines appended under a lock).

`--ray auto` starts a local Ray instance on this machine; `--ray ADDRESS` joins an existing cluster, whose
workers must see the kb directory at the same path (a shared filesystem).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm import tqdm

from .errors import PragError
from .pipeline import Pipeline
from .store import KnowledgeBase


def _worker_class(ray):
    @ray.remote
    class ParameterizeWorker:
        def __init__(self, kb_root: str, overrides: dict, threads: int, force: bool = False):
            torch.set_num_threads(threads)
            kb = KnowledgeBase.open(Path(kb_root))
            kb.config.apply(overrides)
            self.pipe = Pipeline(kb)
            self.force = force

        def run(self, ids: list[str]) -> dict[str, str]:
            """Parameterize these documents (one batch); returns the failures {id: reason}."""
            return self.pipe.encode([self.pipe.kb.by_id[i] for i in ids], self.force)

    return ParameterizeWorker


def parameterize_on_ray(pipe: Pipeline, ids: list[str] | None, address: str, workers: int | None = None,
                        force: bool = False, progress: bool = True) -> dict:
    """`pipe.parameterize(ids, force)` with its batches run on Ray actors; returns the same summary. The run's
    encoding settings travel to the workers with each actor."""
    try:
        import ray
    except ImportError:
        raise PragError("--ray needs the ray package: pip install -e .[ray]") from None
    from ray.util import ActorPool

    docs, todo = pipe.to_parameterize(ids, force)
    summary = {"done": 0, "skipped": len(docs) - len(todo), "failed": {}, "seconds": 0.0}
    if not todo:
        return summary
    t0 = time.perf_counter()
    overrides = {k: v for k, v in pipe.config.to_dict().items() if k in ("lora", "augment")}
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "auto" else address, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = max(1, min(workers or cpus, cpus))
        threads = max(1, cpus // n)
        cls = _worker_class(ray)
        actors = [cls.options(num_cpus=threads).remote(str(Path(pipe.kb.root).resolve()), overrides, threads, force)
                  for _ in range(n)]
        size = max(1, pipe.config.lora.batch_docs)
        batches = [[d.id for d in todo[i:i + size]] for i in range(0, len(todo), size)]
        with tqdm(total=len(todo), desc=f"parameterize (ray, {n} workers)", unit="doc", disable=not progress) as bar:
            for batch, res in zip(batches, ActorPool(actors).map(lambda a, b: a.run.remote(b), batches)):
                summary["failed"].update(res)
                bar.update(len(batch))
    finally:
        if started:
            ray.shutdown()
        pipe.kb.refresh()
    summary["done"] = len(todo) - len(summary["failed"])
    summary["seconds"] = time.perf_counter() - t0
    return summary
