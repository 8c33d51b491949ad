"""Scale-out of offline parameterization on Ray: batches of documents become tasks for Ray actors, each
holding one loaded base model and writing into the same knowledge-base directory with the same atomicity
as a local job (temporary folder + rename per document, checksummed manifest lines appended under a lock).

`--ray auto` starts a local Ray instance on this machine; `--ray ADDRESS` joins an existing cluster, whose
workers must see the kb directory at the same path (a shared filesystem).
"""
from __future__ import annotations

from pathlib import Path

from . import PragError


def _worker_class(ray):
    @ray.remote
    class ParameterizeWorker:
        def __init__(self, kb_root: str, overrides: dict, threads: int):
            import torch

            from .pipeline import Pipeline
            from .store import KnowledgeBase

            torch.set_num_threads(threads)
            kb = KnowledgeBase.open(Path(kb_root))
            kb.config.apply(overrides)
            self.pipe = Pipeline(kb)

        def run(self, ids: list[str]) -> dict[str, str]:
            """Parameterize these documents (one batch); returns the failures {id: reason}."""
            docs = [self.pipe.kb.by_id[i] for i in ids]
            failed = self.pipe.parameterize_batch(docs)
            for i, why in failed.items():
                self.pipe.kb.mark_failed(i, why)
            return failed

    return ParameterizeWorker


def parameterize_on_ray(kb, ids: list[str], address: str, overrides: dict, workers: int | None = None,
                        progress: bool = True) -> dict[str, str]:
    """Run the batches of `ids` on Ray actors; returns the failures. `overrides` (config sections as a dict)
    carry this run's settings, e.g. batch size, to the workers."""
    try:
        import ray
    except ImportError:
        raise PragError("--ray needs the ray package: pip install -e .[ray]") from None
    from ray.util import ActorPool
    from tqdm import tqdm

    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "auto" else address, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = max(1, min(workers or cpus, cpus))
        threads = max(1, cpus // n)
        cls = _worker_class(ray)
        actors = [cls.options(num_cpus=threads).remote(str(Path(kb.root).resolve()), overrides, threads)
                  for _ in range(n)]
        size = max(1, overrides.get("lora", {}).get("batch_docs", kb.config.lora.batch_docs))
        batches = [ids[i:i + size] for i in range(0, len(ids), size)]
        failed: dict[str, str] = {}
        with tqdm(total=len(ids), desc=f"parameterize (ray, {n} workers)", unit="doc", disable=not progress) as bar:
            for batch, res in zip(batches, ActorPool(actors).map(lambda a, b: a.run.remote(b), batches)):
                failed.update(res)
                bar.update(len(batch))
        return failed
    finally:
        if started:
            ray.shutdown()
        kb.refresh()
