"""The `prag` command line (typer): thin commands that parse options, call the pipeline and print.

Every `PragError` (bad input, missing kb, unknown method...) is printed as one line on stderr with exit code 2;
no traceback reaches the user for an input problem.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from . import PragError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Parametric RAG: inject retrieved documents into an LLM's FFN weights as per-document LoRAs.")

KB = typer.Option(..., "--kb", help="Knowledge-base directory.")


def _pipeline(kb_dir: Path):
    from .pipeline import Pipeline
    from .store import KnowledgeBase

    return Pipeline(KnowledgeBase.open(kb_dir))


@app.command()
def index(corpus: Path = typer.Option(..., help="JSONL corpus: one {id, title, text} per line."),
          kb: Path = KB,
          model: str = typer.Option("smollm2", help="Base model: smollm2, gemma3-270m, a .gguf file or an HF dir."),
          preset: str = typer.Option("default", help="'default' (our tuned settings) or 'paper' (r=2, alpha=32, lr 3e-4, 1 epoch, plain sum)."),
          config: Optional[Path] = typer.Option(None, help="TOML file overriding the config (sections lora, augment, retrieval, generation)."),
          overwrite: bool = typer.Option(False, help="Replace the settings of an existing kb (its adapters are then stale).")):
    """Validate a corpus and build (or refresh) a knowledge base: corpus copy, BM25 index, config."""
    from .config import default_config, read_toml
    from .store import KnowledgeBase

    cfg = default_config(model, preset)
    if config:
        cfg.apply(read_toml(config))
    kbo = KnowledgeBase.create(kb, corpus, cfg, overwrite=overwrite)
    typer.echo(f"indexed {len(kbo.docs)} documents into {kb} (model {cfg.model})")


@app.command()
def parameterize(kb: Path = KB,
                 ids: Optional[str] = typer.Option(None, help="Comma-separated document ids (default: all)."),
                 force: bool = typer.Option(False, help="Redo documents that are already parameterized."),
                 batch_docs: Optional[int] = typer.Option(None, help="Documents trained together (1: one at a time). Same adapters either way."),
                 train_dtype: Optional[str] = typer.Option(None, help="Model dtype while training: float32 | bfloat16 (faster on CPUs with bf16 units; adapters differ slightly)."),
                 adapter_dtype: Optional[str] = typer.Option(None, help="Stored adapter dtype: float32 | float16 | bfloat16."),
                 augmenter: Optional[str] = typer.Option(None, help="rule | model (a local LLM) | openai (an OpenAI-compatible endpoint)."),
                 base_url: Optional[str] = typer.Option(None, help="For --augmenter openai: the endpoint, e.g. http://localhost:8000/v1 (key from $OPENAI_API_KEY)."),
                 model: Optional[str] = typer.Option(None, help="Augmentation model: the endpoint's model name, or a local model spec for --augmenter model."),
                 concurrency: Optional[int] = typer.Option(None, help="Requests in flight for --augmenter openai."),
                 ray: Optional[str] = typer.Option(None, help="Run batches as Ray tasks: 'auto' starts a local Ray, or a cluster ADDRESS (workers must see --kb at the same path)."),
                 workers: Optional[int] = typer.Option(None, help="Ray actors, each with one model (default: one per CPU the cluster has, capped by its CPUs).")):
    """Augment and encode documents into LoRA adapters. Resumable and crash-safe: a killed job started again
    skips finished documents and redoes at most the batch it was in."""
    pipe = _pipeline(kb)
    lcfg = pipe.config.lora
    if batch_docs is not None:
        if batch_docs < 1:
            raise PragError("--batch-docs must be at least 1")
        lcfg.batch_docs = batch_docs
    if train_dtype is not None:
        lcfg.train_dtype = train_dtype
    if adapter_dtype is not None:
        lcfg.adapter_dtype = adapter_dtype
    acfg = pipe.config.augment
    for key, value in (("augmenter", augmenter), ("base_url", base_url), ("model", model),
                       ("concurrency", concurrency)):
        if value is not None:
            setattr(acfg, key, value)
    if acfg.concurrency < 1:
        raise PragError("--concurrency must be at least 1")
    pipe.augmenter  # builds it: a bad augmenter, URL or model name is reported before any work
    pipe.check_encoding_config()
    id_list = [i.strip() for i in ids.split(",") if i.strip()] if ids else None
    s = pipe.parameterize(id_list, force=force)
    n = s["done"]
    per = f", {s['seconds'] / n:.1f} s/doc" if n else ""
    typer.echo(f"done {n}, skipped {s['skipped']}, failed {len(s['failed'])}{per}")
    for i, why in s["failed"].items():
        typer.echo(f"  failed {i}: {why}")


@app.command()
def status(kb: Path = KB, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Documents, parameterized, pending and failed (with reasons) in a knowledge base."""
    from .store import KnowledgeBase

    s = KnowledgeBase.open(kb).summary()
    if as_json:
        typer.echo(json.dumps(s))
    else:
        typer.echo(" ".join(f"{k}={v}" for k, v in s.items() if k != "failures"))
        for i, why in s["failures"].items():
            typer.echo(f"  failed {i}: {why}")


@app.command()
def ask(question: str = typer.Argument(..., help="The question."),
        kb: Path = KB,
        method: str = typer.Option("prag", help="closed | rag | prag | combine | flare | dragin."),
        top_k: Optional[int] = typer.Option(None, help="Documents to retrieve (default: the kb's config, 3)."),
        merge: Optional[str] = typer.Option(None, help="Adapter weights: sum (paper) | mean | softmax | top1."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Answer a question. With prag/combine, retrieved documents without an adapter are parameterized first."""
    pipe = _pipeline(kb)
    if merge:
        pipe.config.generation.merge = merge
    ans = pipe.ask(question, method=method, top_k=top_k)
    if as_json:
        typer.echo(json.dumps(ans.to_dict(), ensure_ascii=False))
        return
    for h, w in zip(ans.hits, ans.weights or [None] * len(ans.hits)):
        wt = f"  weight {w:.2f}" if w is not None else ""
        typer.echo(f"  [{h.doc.id}] {h.doc.title} (bm25 {h.score:.2f}){wt}")
    typer.echo(f"{method}: {ans.answer}")


@app.command("eval")
def eval_(kb: Path = KB,
          questions: Path = typer.Option(..., help="JSONL questions: {id, question, golden_answers}."),
          split: str = typer.Option("all", help="dev (first half of the file) | test (second half) | all."),
          limit: Optional[int] = typer.Option(None, help="Only the first N questions of the split."),
          methods: str = typer.Option("closed,rag,prag,combine", help="Comma-separated methods: closed, rag, prag, combine, flare, dragin."),
          top_k: int = typer.Option(3, help="Documents retrieved per question."),
          merge: Optional[str] = typer.Option(None, help="Adapter weights: sum | mean | softmax | top1."),
          json_out: Optional[Path] = typer.Option(None, "--json", help="Write results JSON here (a .log.jsonl beside it lets an interrupted run resume).")):
    """Score methods on a question set: EM and F1 (SQuAD normalization, max over golden answers), seconds per question."""
    from .corpus import load_questions, split as split_qs
    from .evaluate import run_eval
    from .pipeline import METHODS

    ms = [m.strip() for m in methods.split(",") if m.strip()]
    bad = [m for m in ms if m not in METHODS]
    if bad:
        raise PragError(f"unknown method {bad[0]!r}: use one of {', '.join(METHODS)}")
    qs = split_qs(load_questions(questions), split)[: limit or None]
    pipe = _pipeline(kb)
    if merge:
        pipe.config.generation.merge = merge
    log = json_out.with_suffix(".log.jsonl") if json_out else None
    res = run_eval(pipe, qs, ms, top_k, log)
    res.update(questions=str(questions), split=split, top_k=top_k, model=pipe.config.model,
               merge=pipe.config.generation.merge)
    text = json.dumps(res, indent=2)
    if json_out:
        json_out.write_text(text)
    typer.echo(text)


@app.command()
def serve(kb: Path = KB,
          host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
          port: int = typer.Option(8000, help="Port."),
          model_id: Optional[str] = typer.Option(None, help="Model name clients must send (default prag-<model>).")):
    """Serve the kb over an OpenAI-compatible HTTP API (POST /v1/chat/completions, /v1/documents, ...)."""
    import uvicorn

    from .serve import create_app

    pipe = _pipeline(kb)
    pipe.lm  # load before accepting requests
    uvicorn.run(create_app(pipe, model_id), host=host, port=port, log_level="info")


bench_app = typer.Typer(help="Benchmarks that print one JSON line, baseline measured in the same run.")
app.add_typer(bench_app, name="bench")


@bench_app.command("update")
def bench_update(model: str = typer.Option("smollm2", help="Base model."),
                 top_k: int = typer.Option(3, help="Adapters merged per question."),
                 repeats: int = typer.Option(30, help="Timed repetitions of our Update."),
                 peft_repeats: int = typer.Option(5, help="Timed repetitions of the PEFT path."),
                 as_json: bool = typer.Option(True, "--json/--no-json", help="Print JSON (default).")):
    """Update (apply + restore top-k LoRAs) p50 ms: ours warm and cold vs the reference PEFT merge path."""
    from .bench import bench_update as run
    from .models import load_model

    res = run(load_model(model), k=top_k, repeats=repeats, peft_repeats=peft_repeats)
    typer.echo(json.dumps(res) if as_json else "\n".join(f"{k}: {v}" for k, v in res.items()))


@bench_app.command("parameterize")
def bench_parameterize(docs: int = typer.Option(32, help="Documents of the dataset's corpus parameterized by the batched path."),
                       loop_docs: Optional[int] = typer.Option(None, help="Documents for the one-at-a-time loop (default docs/4, at least 2)."),
                       dataset: str = typer.Option("2wikimultihopqa-comparison", help="Dataset name or folder (its corpus.jsonl)."),
                       model: str = typer.Option("smollm2", help="Base model."),
                       batch_docs: int = typer.Option(16, help="Documents trained together."),
                       train_dtype: str = typer.Option("float32", help="float32 | bfloat16 (both paths)."),
                       as_json: bool = typer.Option(True, "--json/--no-json", help="Print JSON (default).")):
    """Documents per hour, augmentation included: the batched path vs the one-document loop, same run."""
    from .bench import bench_parameterize as run
    from .corpus import dataset_dir
    from .models import load_model

    if docs < 2:
        raise PragError("--docs must be at least 2")
    corpus = dataset_dir(dataset) / "corpus.jsonl"
    res = run(load_model(model), corpus, docs=docs, loop_docs=loop_docs, batch_docs=batch_docs,
              train_dtype=train_dtype)
    typer.echo(json.dumps(res) if as_json else "\n".join(f"{k}: {v}" for k, v in res.items()))


@bench_app.command("question")
def bench_question(kb: Path = KB,
                   questions: Path = typer.Option(..., help="JSONL questions (e.g. a dataset's questions.jsonl)."),
                   split: str = typer.Option("dev", help="dev | test | all."),
                   limit: int = typer.Option(20, help="Questions timed per method."),
                   top_k: int = typer.Option(3, help="Documents retrieved per question.")):
    """Seconds per question (p50) for closed, rag and prag in one run; prag includes its Update."""
    from .bench import bench_question as run
    from .corpus import load_questions, split as split_qs

    qs = split_qs(load_questions(questions), split)[:limit]
    typer.echo(json.dumps(run(_pipeline(kb), qs, top_k=top_k)))


def main() -> None:
    try:
        app(standalone_mode=False)
    except PragError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
