"""The `prag` command line (typer): thin commands that build the run's config once (the kb's settings <- flags,
validated), call the pipeline and print.

Every `PragError` (bad input, missing kb, unknown method...) and every usage error is printed as one line on
stderr with exit code 2; no traceback reaches the user for an input problem.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from .atomic import atomic_write
from .bench import bench_batch as run_bench_batch
from .bench import bench_generate as run_bench_generate
from .bench import bench_parameterize as run_bench_parameterize
from .bench import bench_question as run_bench_question
from .bench import bench_serve as run_bench_serve
from .bench import bench_update as run_bench_update
from .config import WARMUP_EPOCHS, WARMUP_LR, build_config, default_config
from .corpus import dataset_dir, few_shot_examples, load_questions, read_jsonl
from .corpus import split as split_qs
from .distributed import parameterize_on_ray
from .errors import PragError
from .evaluate import answered_by, empty_warnings, pending, run_eval, weak_warnings
from .llamacpp import require_llama_cpp
from .methods import METHODS, parametric
from .models import load_model
from .pipeline import Pipeline
from .report import markdown_table, runtime_table, write_report
from .store import KnowledgeBase
from .translate import TrainConfig, TranslatorConfig, load_translator, train_item, train_translator, translator_folder
from .tune import SCALES, SHOTS, TEMPERATURES, saw_warning, table
from .tune import tune as run_tune

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Parametric RAG: inject retrieved documents into an LLM's FFN weights as per-document LoRAs.")

KB = typer.Option(..., "--kb", help="Knowledge-base directory.")
TEMPERATURE = typer.Option(None, help="With --merge softmax: weights softmax(BM25 score / T); a larger T spreads the weight over the top-k (default: the kb's, 1).")
ADAPTERS = typer.Option(None, help="Which adapters answer: trained | translated | trained-else-translated (default: the kb's; a new kb's is trained-else-translated).")
TRANSLATOR = typer.Option(None, help="A translator folder (prag translator train), or 'default' for the one shipped for the kb's model.")
BACKEND = typer.Option(None, help="Who generates: transformers | llamacpp (llama.cpp; needs the [llamacpp] extra). Default: the kb's config.")


def _command_line(ctx: typer.Context) -> str:
    """The running command with every option it was given (defaults included): what reproduces a result."""
    parts = ["prag", ctx.info_name]
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if v is None or v is False:
            continue
        flag = p.opts[0]
        parts += [flag] if v is True and getattr(p, "is_flag", False) else [flag, str(v)]
    return shlex.join(parts)


def _pipeline(kb_dir: Path, flags: dict | None = None) -> Pipeline:
    """The kb's pipeline, its config the kb's settings with `flags` ({"section.key": value or None}) applied and
    validated, before any model is loaded."""
    kb = KnowledgeBase.open(kb_dir)
    return Pipeline(kb, config=kb.config.override(flags or {}))


@app.command()
def index(corpus: Path = typer.Option(..., help="JSONL corpus: one {id, title, text} per line."),
          kb: Path = KB,
          model: str = typer.Option("smollm2", help="Base model: smollm2, gemma3-270m, a .gguf file or an HF dir."),
          preset: str = typer.Option("default", help="'default' (our tuned settings) or 'paper' (r=2, alpha=32, lr 3e-4, 1 epoch, plain sum)."),
          config: Optional[Path] = typer.Option(None, help="TOML file overriding the config (sections lora, augment, retrieval, generation)."),
          augmenter: Optional[str] = typer.Option(None, help="rule | model | openai | reference (QA pairs from --reference, rules elsewhere)."),
          augment_model: Optional[str] = typer.Option(None, help="For --augmenter model: the augmentation model (default: the base model), e.g. gemma3-270m."),
          reference: Optional[Path] = typer.Option(None, help="For --augmenter reference: JSONL of {doc_id, qa} (e.g. a dataset's augment-reference.jsonl)."),
          parts: Optional[str] = typer.Option(None, help="What encoding trains on: both | rewrite | qa | none (the paper's §5.3 ablation; without rewrites, the document itself)."),
          init_from: Optional[Path] = typer.Option(None, help="Start every document's LoRA from this adapter folder (made by `prag warmup`; §5.2) instead of random init."),
          overwrite: bool = typer.Option(False, help="Replace the settings of an existing kb (encoding then refuses to add adapters unlike the ones it holds: use a new --kb for other encoding settings).")):
    """Validate a corpus and build (or refresh) a knowledge base: corpus copy, BM25 index, config. The encoding
    settings (model, preset, augmentation, warm-up) are stored in kb.toml, so every adapter of a kb is made alike."""
    cfg = build_config(model, preset, config, {
        "augment.augmenter": augmenter, "augment.parts": parts, "augment.model": augment_model,
        "augment.reference": reference and str(reference.resolve()),
        "lora.init_from": init_from and str(init_from.resolve())})
    kbo = KnowledgeBase.create(kb, corpus, cfg, overwrite=overwrite)
    typer.echo(f"indexed {len(kbo.docs)} documents into {kb} (model {cfg.model})")


@app.command()
def parameterize(kb: Path = KB,
                 ids: Optional[str] = typer.Option(None, help="Comma-separated document ids (default: all)."),
                 force: bool = typer.Option(False, help="Redo documents that are already parameterized."),
                 batch_docs: Optional[int] = typer.Option(None, help="Documents trained together (1: one at a time). Same adapters either way."),
                 train_dtype: Optional[str] = typer.Option(None, help="Model dtype while training: float32 | bfloat16 (faster on CPUs with bf16 units; adapters differ slightly)."),
                 adapter_dtype: Optional[str] = typer.Option(None, help="Stored adapter dtype: float32 | float16 | bfloat16."),
                 augmenter: Optional[str] = typer.Option(None, help="rule | model (a local LLM) | openai (an OpenAI-compatible endpoint) | reference (QA pairs from the kb's augment.reference file)."),
                 base_url: Optional[str] = typer.Option(None, help="For --augmenter openai: the endpoint, e.g. http://localhost:8000/v1 (key from $OPENAI_API_KEY)."),
                 model: Optional[str] = typer.Option(None, help="Augmentation model: the endpoint's model name, or a local model spec for --augmenter model."),
                 concurrency: Optional[int] = typer.Option(None, help="Requests in flight for --augmenter openai."),
                 ray: Optional[str] = typer.Option(None, help="Run batches as Ray tasks: 'auto' starts a local Ray, or a cluster ADDRESS (workers must see --kb at the same path)."),
                 workers: Optional[int] = typer.Option(None, help="Ray actors, each with one model (default: one per CPU the cluster has, capped by its CPUs)."),
                 translator: Optional[str] = typer.Option(None, help="Translate instead of train: a translator folder, or 'default'. One forward pass per document; stored beside the trained adapters as kind 'translated'.")):
    """Augment and encode documents into LoRA adapters (or, with --translator, translate them). Resumable and
    crash-safe: a killed job started again skips finished documents and redoes at most the batch it was in."""
    id_list = [i.strip() for i in ids.split(",") if i.strip()] if ids is not None else None
    if id_list == []:
        raise PragError("--ids names no document: give comma-separated document ids, or leave it out for all")
    if batch_docs is not None and batch_docs < 1:
        raise PragError("--batch-docs must be at least 1")
    if translator:
        pipe = _pipeline(kb, {"generation.translator": translator})
        s = pipe.translate(pipe.documents(id_list), force=force, progress=True)
        n = s["done"]
        typer.echo(f"translated {n}, skipped {s['skipped']}" + (f", {s['seconds'] / n:.3f} s/doc" if n else ""))
        return
    pipe = _pipeline(kb, {"lora.batch_docs": batch_docs, "lora.train_dtype": train_dtype,
                          "lora.adapter_dtype": adapter_dtype, "augment.augmenter": augmenter,
                          "augment.base_url": base_url, "augment.model": model, "augment.concurrency": concurrency})
    pipe.augmenter  # builds it: a bad augmenter, URL or model name is reported before any work
    pipe.check_encoding_config()
    pipe.kb.adopt(pipe.config)  # options that change how adapters are made become the kb's settings
    if ray:
        s = parameterize_on_ray(pipe, id_list, ray, workers, force=force)
    else:
        s = pipe.parameterize(id_list, force=force)
    n = s["done"]
    per = f", {s['seconds'] / n:.1f} s/doc" if n else ""
    typer.echo(f"done {n}, skipped {s['skipped']}, failed {len(s['failed'])}{per}")
    for i, why in s["failed"].items():
        typer.echo(f"  failed {i}: {why}")


@app.command()
def warmup(kb: Path = KB,
           out: Path = typer.Option(..., help="Folder for the warm-up LoRA (PEFT layout)."),
           questions: Optional[Path] = typer.Option(None, help="JSONL questions; their dev half is used."),
           dataset: Optional[str] = typer.Option(None, help="A dataset folder by name or path; its dev half is used."),
           limit: Optional[int] = typer.Option(None, help="Only the first N dev questions."),
           lr: float = typer.Option(WARMUP_LR, help="Learning rate (the kb's rank, alpha and modules are kept)."),
           epochs: int = typer.Option(WARMUP_EPOCHS, help="Passes over the questions."),
           force: bool = typer.Option(False, help="Retrain even when OUT already holds this very warm-up.")):
    """Train the paper's warm-up LoRA (§5.2) on (question, answer) pairs of DEV questions only, with the kb's
    LoRA shape and a recipe of its own (--lr, --epochs: chosen on dev; the per-document recipe run over a whole
    dev split diverged). Then a kb made with `prag index ... --init-from OUT` starts every document from it.
    A warm-up already in OUT is kept when its warmup.json matches this model, LoRA shape, recipe and questions
    and its adapter checksum holds; anything else there is retrained."""
    if (questions is None) == (dataset is None):
        raise PragError("give exactly one of --questions FILE or --dataset NAME")
    path = questions or dataset_dir(dataset) / "questions.jsonl"
    qs = split_qs(load_questions(path), "dev")[: limit or None]
    res = _pipeline(kb).warmup(qs, out, lr, epochs, force=force)
    typer.echo(json.dumps({k: v for k, v in res.items() if k not in ("losses", "key")}))  # all is in OUT/warmup.json
    if res["reused"]:
        typer.echo(f"kept the warm-up already in {out} (same model, recipe and questions; --force retrains)", err=True)
    if res["diverged"]:
        typer.echo(f"warning: the warm-up diverged (loss {res['first_loss']:.2f} -> {res['final_loss']:.2f}): "
                   "try a lower --lr", err=True)


@app.command("tune")
def tune_(kb: Path = KB,
          questions: Optional[Path] = typer.Option(None, help="JSONL questions; the first half (dev) is used."),
          dataset: Optional[str] = typer.Option(None, help="A dataset folder by name or path; its dev half is used."),
          budget: int = typer.Option(30, help="Dev questions scored per setting."),
          scales: str = typer.Option(",".join(map(str, SCALES)), help="Adapter strengths to try."),
          shots: str = typer.Option(",".join(map(str, SHOTS)), help="Numbers of worked examples to try (from the end of dev)."),
          temperatures: str = typer.Option(",".join(map(str, TEMPERATURES)), help="Softmax merge temperatures to try (e.g. 1,4,16: a higher one spreads the weight over the top-k)."),
          top_k: int = typer.Option(3, help="Documents retrieved per question."),
          adapters: Optional[str] = ADAPTERS,
          translator: Optional[str] = TRANSLATOR):
    """Pick the adapter strength and the number of worked examples (and, with --temperatures, the softmax merge's
    temperature) on YOUR development questions (P-RAG F1 on the first half of the file), and keep them with the kb: ask, serve and eval use them (flags still override).
    Adapters are shared by every setting; answers are logged in the kb, so a killed tuning resumes. With
    --adapters translated the settings are chosen for a translator's adapters (tuning.json says which); it warns when
    the translator trained on these dev questions or their documents."""
    if (questions is None) == (dataset is None):
        raise PragError("give exactly one of --questions FILE or --dataset NAME")
    path = questions or dataset_dir(dataset) / "questions.jsonl"
    try:
        sc = tuple(float(x) for x in scales.split(",") if x.strip())
        sh = tuple(int(x) for x in shots.split(",") if x.strip())
        ts = tuple(float(x) for x in temperatures.split(",") if x.strip())
    except ValueError:
        raise PragError("--scales and --temperatures take numbers and --shots whole numbers, comma-separated") from None
    pipe = _pipeline(kb, {"generation.adapters": adapters, "generation.translator": translator})
    res = run_tune(pipe, load_questions(path), f"{path} dev", budget=budget, top_k=top_k, scales=sc, shots=sh,
                   temperatures=ts)
    typer.echo(table(res))


@app.command()
def status(kb: Path = KB, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Documents, parameterized, pending and failed (with reasons) in a knowledge base."""
    kbo = KnowledgeBase.open(kb)
    s = kbo.summary()
    tuned = kbo.tuning()
    if as_json:
        typer.echo(json.dumps(s | {"tuning": tuned}))
        return
    typer.echo(" ".join(f"{k}={v}" for k, v in s.items() if k != "failures"))
    for i, why in s["failures"].items():
        typer.echo(f"  failed {i}: {why}")
    g = kbo.config.generation
    typer.echo(f"generation: scale {g.scale}, {g.few_shot} worked examples, merge {g.merge}, adapters {g.adapters}"
               + (f" (translator {g.translator})" if g.translator else ""))
    typer.echo(table(tuned) if tuned else "not tuned: `prag tune --kb KB --questions DEV.jsonl` picks them on your dev questions")


@app.command()
def ask(question: str = typer.Argument(..., help="The question."),
        kb: Path = KB,
        method: str = typer.Option("prag", help=f"One of: {METHODS.choices()}."),
        top_k: Optional[int] = typer.Option(None, help="Documents to retrieve (default: the kb's config, 3)."),
        merge: Optional[str] = typer.Option(None, help="Adapter weights: sum (paper) | mean | softmax | top1."),
        temperature: Optional[float] = TEMPERATURE,
        backend: Optional[str] = BACKEND,
        adapters: Optional[str] = ADAPTERS,
        translator: Optional[str] = TRANSLATOR,
        as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Answer a question. With prag/combine, a retrieved document without a trained adapter uses its translated one
    (--translator), or goes in the prompt; `--adapters trained` trains it first instead."""
    pipe = _pipeline(kb, {"generation.backend": backend, "generation.merge": merge,
                          "generation.temperature": temperature, "generation.adapters": adapters,
                          "generation.translator": translator})
    ans = pipe.ask(question, method=method, top_k=top_k)
    if as_json:
        typer.echo(json.dumps(ans.to_dict(), ensure_ascii=False))
        return
    for h, w, kind in ans.per_hit():
        wt = f"  weight {w:.2f}" if w is not None else ""
        typer.echo(f"  [{h.doc.id}] {h.doc.title} (bm25 {h.score:.2f}){wt}" + (f"  {kind}" if kind else ""))
    typer.echo(f"{method}: {ans.answer}")


@app.command("eval")
def eval_(ctx: typer.Context,
          kb: Optional[Path] = typer.Option(None, "--kb", help="Knowledge-base directory. With --dataset it may be left out: runs/kb-<dataset>-<model>, indexed from the dataset's corpus on first use."),
          questions: Optional[Path] = typer.Option(None, help="JSONL questions: {id, question, golden_answers[, type, gold_doc_ids]}."),
          dataset: Optional[str] = typer.Option(None, help="A dataset folder (questions.jsonl + corpus.jsonl) by name under ../shared/datasets or by path; replaces --questions."),
          model: Optional[str] = typer.Option(None, help="Base model when --dataset creates the kb (default smollm2); must match an existing kb's."),
          split: str = typer.Option("all", help="dev (first half of the file) | test (second half) | all."),
          limit: Optional[int] = typer.Option(None, help="Only the first N questions of the split."),
          methods: str = typer.Option("closed,rag,prag,combine", help=f"Comma-separated methods, of: {METHODS.choices()}."),
          top_k: int = typer.Option(3, help="Documents retrieved per question."),
          merge: Optional[str] = typer.Option(None, help="Adapter weights: sum | mean | softmax | top1."),
          temperature: Optional[float] = TEMPERATURE,
          scale: Optional[float] = typer.Option(None, help="Multiply every adapter weight (strength of the injected update; default the kb's, 1)."),
          few_shot: Optional[int] = typer.Option(None, help="Worked examples in every method's prompt, from the end of the question file's dev split (one question type after another); they are left out of the scored questions. Default: the kb's tuned ones (prag tune), else none."),
          tune_budget: int = typer.Option(30, help="With --dataset on a kb never tuned (and no --scale/--few-shot): dev questions `prag tune` uses first."),
          backend: Optional[str] = BACKEND,
          adapters: Optional[str] = ADAPTERS,
          translator: Optional[str] = TRANSLATOR,
          doc_source: str = typer.Option("retrieved", help="retrieved: BM25 top-k. gold: the oracle that isolates composition from retrieval: each method on the question's gold_doc_ids together (M@gold) and, with adapters, on each alone (M@gold-1, ...); the JSON's `composition` is together minus the best single document, on questions with two or more."),
          batch_size: int = typer.Option(1, min=1, help="Questions answered together in one batch, each with its own documents' adapters (the same answers as 1, up to float rounding; faster per question)."),
          json_out: Optional[Path] = typer.Option(None, "--json", help="Write results JSON here, and a Markdown table beside it (.md); a .log.jsonl beside it lets an interrupted run resume.")):
    """Score methods on a question set: EM, F1, precision, recall (SQuAD normalization, max over golden answers;
    per question type), retrieval recall@k against gold_doc_ids, seconds per question with the Update apart."""
    ms = [METHODS.check(m.strip()) for m in methods.split(",") if m.strip()]
    if (questions is None) == (dataset is None):
        raise PragError("give exactly one of --questions FILE or --dataset NAME")
    if split not in ("dev", "test", "all"):
        raise PragError(f"unknown split {split!r}: use dev, test or all")
    if json_out is not None:  # before any work: a missing folder must not fail a run at its end
        json_out.parent.mkdir(parents=True, exist_ok=True)
    ds_dir = dataset_dir(dataset) if dataset else None
    questions = questions or ds_dir / "questions.jsonl"
    all_qs = load_questions(questions)
    if kb is None:
        if ds_dir is None:
            raise PragError("--kb is required with --questions")
        kb = Path("runs") / f"kb-{ds_dir.name}-{Path(model or 'smollm2').stem}"
    if ds_dir is not None and not (kb / "kb.toml").exists():
        KnowledgeBase.create(kb, ds_dir / "corpus.jsonl", default_config(model or "smollm2"))
    flags = {"generation.backend": backend, "generation.merge": merge, "generation.scale": scale,
             "generation.temperature": temperature, "generation.adapters": adapters, "generation.translator": translator}
    pipe = _pipeline(kb, flags)
    if model is not None and model != pipe.config.model:
        raise PragError(f"--model {model} but the kb {kb} was built for {pipe.config.model}")
    if (ds_dir is not None and parametric(ms) and pipe.kb.tuning() is None and scale is None
            and few_shot is None):  # never tuned: tune on the dataset's dev questions first (never on test)
        typer.echo(f"{kb} has no tuned settings: tuning on the first {tune_budget} dev questions of "
                   f"{ds_dir.name} (prag tune)", err=True)
        tuned = run_tune(pipe, all_qs, f"{ds_dir.name} dev", budget=tune_budget, top_k=top_k)
        if warning := saw_warning(tuned["translator_saw"], "the dev questions retrieve"):
            typer.echo(warning, err=True)
        pipe = _pipeline(kb, flags)
    if few_shot is not None:  # the flag: examples from this file's dev split
        shots = few_shot_examples(all_qs, few_shot)
        pipe.examples = [(q.question, q.golden_answers[0]) for q in shots]
        source = "flags"
    else:
        tuned = pipe.kb.tuning()
        shots = [q for q in all_qs if q.id in set(tuned["examples"])] if tuned else []
        source = f"tuned on {tuned['source']} (kb tuning.json)" if tuned else "the kb's kb.toml (never tuned)"
    if (tuned := pipe.kb.tuning()) and parametric(ms) and (scale is None or few_shot is None):
        was, now = tuned.get("adapters"), answered_by(pipe)  # a tuning from before the key: not known, no warning
        if was is not None and was != now:  # another kind, or another translator
            g = pipe.config.generation
            typer.echo(f"warning: {kb}'s settings were tuned with {was} adapters, and this run answers with {now} "
                       f"ones; `prag tune --kb {kb} --adapters {g.adapters}"
                       + (f" --translator {g.translator}" if g.adapters == "translated" else "")
                       + "` re-tunes the kb for them", err=True)
    shown = {q.id for q in shots} | {q for q, _ in pipe.examples}
    qs = [q for q in split_qs(all_qs, split) if q.id not in shown and q.question not in shown][: limit or None]
    log = json_out.with_suffix(".log.jsonl") if json_out else None
    with_adapters = parametric(ms)
    gold = sorted({d for q in qs for d in q.gold_doc_ids}) if doc_source == "gold" else None
    if with_adapters and gold is not None:  # the oracle's documents: every gold one
        if pipe.config.generation.adapters != "translated":
            pipe.parameterize(gold)
    elif with_adapters:  # adapters of every document retrieved for a question still to answer: batched, resumable
        pipe.parameterize_retrieved(pending(pipe, qs, with_adapters, top_k, log), top_k)
    if pending(pipe, qs, ms, top_k, log):
        pipe.backend.start()  # before timing: its start-up is not the first question's
    res = run_eval(pipe, qs, ms, top_k, log, batch_size=batch_size, doc_source=doc_source)
    res.update(dataset=ds_dir.name if ds_dir else questions.parent.name, questions=str(questions), split=split,
               limit=limit, top_k=top_k, doc_source=doc_source, batch_size=batch_size, model=pipe.config.model, merge=pipe.config.generation.merge,
               temperature=pipe.config.generation.temperature,
               scale=pipe.config.generation.scale, few_shot=[q.id for q in shots],
               settings={"scale": pipe.config.generation.scale, "few_shot": len(pipe.examples),
                         "source": "flags" if scale is not None else source},
               backend=pipe.config.generation.backend, kb=str(kb), command=_command_line(ctx),
               adapters=pipe.config.generation.adapters, translator=pipe.config.generation.translator or None,
               kb_config={k: pipe.config.to_dict()[k] for k in ("lora", "augment")})  # how its adapters were made
    if with_adapters:  # the offline cost of the adapters these questions use, whichever run made them
        pipe.kb.refresh()  # adapters another process wrote to this kb count too
        used = gold if gold is not None else pipe.retrieved_ids(qs, top_k)
        res["encoding"] = pipe.kb.encoding_cost(used)
        res["translator_saw"] = pipe.translator_saw(used, qs)
    text = json.dumps(res, indent=2)
    if json_out:
        atomic_write(json_out, text)
        atomic_write(json_out.with_suffix(".md"), markdown_table([res]) + "\n" + runtime_table([res]))
    typer.echo(text)
    for line in empty_warnings(res) + weak_warnings(res) + [w for w in [saw_warning(res.get("translator_saw"),
                                                                             "these questions use")] if w]:
        typer.echo(line, err=True)


@app.command()
def report(results: list[str] = typer.Argument(..., help="Result JSON files written by `prag eval --json`; FILE.json:prag,combine takes only those methods from FILE."),
           out: Path = typer.Option(..., help="Folder for report.md and the PNG plots."),
           title: str = typer.Option("Results", help="Heading of report.md.")):
    """Lay out eval results like the paper's Table 1 (Markdown) with plots: F1 by method and model, seconds per question."""
    typer.echo(json.dumps(write_report(results, out, title)))


@app.command()
def serve(kb: Path = KB,
          host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
          port: int = typer.Option(8000, help="Port."),
          model_id: Optional[str] = typer.Option(None, help="Model name clients must send (default prag-<model>)."),
          backend: Optional[str] = BACKEND,
          adapters: Optional[str] = ADAPTERS,
          translator: Optional[str] = TRANSLATOR,
          max_batch: int = typer.Option(8, min=1, help="Requests generating together in the continuous batch, each with its own documents' adapters (1: one at a time)."),
          min_join: int = typer.Option(1, min=1, help="While the batch runs, waiting requests join once this many places are free (1: at once; max-batch: only when the batch empties)."),
          api_key_file: Optional[Path] = typer.Option(None, help="File whose first line is the API key every endpoint but /health then asks for (Authorization: Bearer KEY). Default: $PRAG_API_KEY if set, else no key.")):
    """Serve the kb over an OpenAI-compatible HTTP API (POST /v1/chat/completions, /v1/documents, ...) and a web
    page at /."""
    if min_join > max_batch:
        raise PragError(f"--min-join {min_join} is more than --max-batch {max_batch}")
    import uvicorn  # the [serve] extra

    from .serve import create_app, exposure_warning, read_api_key

    key = read_api_key(api_key_file, os.environ)
    if (warning := exposure_warning(host, key)) is not None:
        typer.echo(warning, err=True)
    pipe = _pipeline(kb, {"generation.backend": backend, "generation.adapters": adapters,
                          "generation.translator": translator})
    pipe.lm  # load before accepting requests
    pipe.backend.start()
    # On SIGTERM: open requests get a few seconds, then running generations are stopped at their next token.
    uvicorn.run(create_app(pipe, model_id, api_key=key, max_batch=max_batch, min_join=min_join), host=host,
                port=port, log_level="info", timeout_graceful_shutdown=3)


translator_app = typer.Typer(help="The parameter translator: any document to an adapter in one forward pass.")
app.add_typer(translator_app, name="translator")


@translator_app.command("train")
def translator_train(kb: Path = typer.Option(..., "--kb", help="Knowledge base whose documents (and base model) it trains on."),
                     out: Path = typer.Option(..., help="Folder for the translator, its checkpoints and loss curve (resumes from them)."),
                     qa: Optional[Path] = typer.Option(None, help="JSONL {doc_id, question, answer}: QA pairs for these documents instead of the kb's augmenter."),
                     epochs: float = typer.Option(1.0, help="Passes over the documents (fractions allowed)."),
                     batch_docs: int = typer.Option(8, help="Documents per step."),
                     qa_per_doc: int = typer.Option(2, help="QA pairs per document per step."),
                     lr: float = typer.Option(3e-4, help="AdamW learning rate (cosine schedule)."),
                     read_layer: int = typer.Option(8, help="The translator reads the hidden states after this many decoder layers."),
                     rank: int = typer.Option(2, help="Rank of the adapters it emits."),
                     max_doc_tokens: int = typer.Option(256, help="Tokens of a document read at most."),
                     memory_layers: str = typer.Option("", help="Token memory: comma-separated 0-based layers below --read-layer whose down_proj also gets one rank per document token (e.g. 5,6,7); empty: none."),
                     bf16: Optional[bool] = typer.Option(None, help="bfloat16 autocast for the frozen model's passes (default: where bf16 is fast, a GPU or a CPU with bf16 units)."),
                     contrast: float = typer.Option(0.0, help="Weight of a margin term that asks each QA pair's loss to be lower with its own document's adapter than with another's (runs every row twice)."),
                     in_context: float = typer.Option(0.0, help="Share of QA rows asked as combine asks: the document and another in the prompt, half of them with the other's adapter, so that an adapter learns not to override its context (0-1; rows are longer)."),
                     memory_push: Optional[float] = typer.Option(None, help="A new run's token memory starts writing this share of its module's output on the first documents, whatever the model (0.4: SmolLM2's fixed start; none: that fixed start, which writes 9-38x on Gemma 3). Needs --memory-layers."),
                     minutes: Optional[float] = typer.Option(None, help="Stop after this many minutes of training in this call, leaving a checkpoint and a usable (partial) translator; run again to go on."),
                     init_from: Optional[str] = typer.Option(None, help="Start a new run from this translator's weights (a folder, or 'default': the shipped one); same settings needed."),
                     threads: Optional[int] = typer.Option(None, help="CPU threads (default: torch's).")):
    """Train a translator once per base model: the LM loss of each document's QA pairs (answers only) with the
    adapter the translator makes from the document applied. No adapter is trained per document."""
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise PragError(f"--minutes must be a number > 0, not {minutes}")
    try:
        mem = [int(x) for x in memory_layers.split(",") if x.strip()]
    except ValueError:
        raise PragError(f"--memory-layers must be comma-separated integers, not {memory_layers!r}") from None
    train = TrainConfig(epochs=epochs, batch_docs=batch_docs, qa_per_doc=qa_per_doc, lr=lr, bf16=bf16,
                        contrast=contrast, in_context=in_context, memory_push=memory_push).validate()
    pipe = _pipeline(kb)
    cfg = TranslatorConfig(model=pipe.config.model, read_layer=read_layer, r=rank, max_doc_tokens=max_doc_tokens,
                           memory_layers=mem).validate()  # before the model loads: a bad setting fails at once
    init, init_meta = None, {}
    if init_from:
        folder = translator_folder(init_from, pipe.config.model)
        init, init_sha = load_translator(folder, pipe.config.model)
        asked = {"read_layer": read_layer, "r": rank, "max_doc_tokens": max_doc_tokens}
        differ = [f"{k} {getattr(init.cfg, k)} (asked {v})" for k, v in asked.items() if getattr(init.cfg, k) != v]
        if differ:
            raise PragError(f"--init-from {init_from}: that translator has {', '.join(differ)}")
        init_meta = {"init_from": {"path": str(folder), "sha256": init_sha}}
    given: dict[str, list[tuple[str, str]]] = {}
    if qa is not None:
        for n, row in read_jsonl(qa):
            if not all(isinstance(row.get(k), str) and row.get(k) for k in ("doc_id", "question", "answer")):
                raise PragError(f"{qa}:{n}: needs string fields doc_id, question and answer")
            given.setdefault(row["doc_id"], []).append((row["question"], row["answer"]))
    unknown = sorted(set(given) - set(pipe.kb.by_id))
    if unknown:
        raise PragError(f"{qa}: QA pairs for document(s) not in the kb: {', '.join(unknown[:5])}")
    lm = load_model(pipe.config.model, threads=threads)
    pipe = Pipeline(pipe.kb, lm, pipe.config)
    rest = [d for d in pipe.kb.docs if d.id not in given]
    augs = dict(zip([d.id for d in rest], pipe.augment_many(rest))) if rest else {}
    items = [train_item(lm, d.id, d.as_text(), given[d.id] if d.id in given
                        else [(q.question, q.answer) for q in augs[d.id].qa])
             for d in pipe.kb.docs]
    ids = [d.id for d in pipe.kb.docs]
    meta = {"kb": str(kb), "qa_file": str(qa) if qa else None, "trained_on": ids,
            "trained_on_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(), **init_meta}
    asked = [q for rows in given.values() for q, _ in rows] + [q.question for a in augs.values() for q in a.qa]
    typer.echo(json.dumps(train_translator(lm, pipe.injector, items, cfg, train, out, meta, questions=asked,
                                           init_folder=folder if init_from else None,
                                           budget_s=minutes * 60 if minutes else None, init=init)))


bench_app = typer.Typer(help="Benchmarks that print one JSON line, baseline measured in the same run.")
app.add_typer(bench_app, name="bench")


@bench_app.command("update")
def bench_update(model: str = typer.Option("smollm2", help="Base model."),
                 top_k: int = typer.Option(3, help="Adapters merged per question."),
                 repeats: int = typer.Option(30, help="Timed repetitions of our Update."),
                 peft_repeats: int = typer.Option(5, help="Timed repetitions of the PEFT path."),
                 as_json: bool = typer.Option(True, "--json/--no-json", help="Print JSON (default).")):
    """Update (apply + restore top-k LoRAs) p50 ms: ours warm and cold vs the reference PEFT merge path."""
    res = run_bench_update(load_model(model), k=top_k, repeats=repeats, peft_repeats=peft_repeats)
    typer.echo(json.dumps(res) if as_json else "\n".join(f"{k}: {v}" for k, v in res.items()))


@bench_app.command("parameterize")
def bench_parameterize(docs: int = typer.Option(32, help="Documents of the dataset's corpus parameterized by the batched path."),
                       loop_docs: Optional[int] = typer.Option(None, help="Documents for the one-at-a-time loop (default docs/4, at least 2)."),
                       dataset: str = typer.Option("2wikimultihopqa-comparison", help="Dataset name or folder (its corpus.jsonl)."),
                       model: str = typer.Option("smollm2", help="Base model."),
                       batch_docs: int = typer.Option(16, help="Documents trained together."),
                       train_dtype: str = typer.Option("float32", help="float32 | bfloat16 (both paths)."),
                       translator: Optional[str] = typer.Option(None, help="Also the translated path: a translator folder or 'default'."),
                       translated_docs: Optional[int] = typer.Option(None, help="Documents translated (default --docs)."),
                       as_json: bool = typer.Option(True, "--json/--no-json", help="Print JSON (default).")):
    """Documents per hour, augmentation included: the batched path vs the one-document loop, and vs the batched
    path with its loss from the full logits (the chunked output-layer loss's baseline), same run; with
    --translator, the translated path too (translated_docs_per_hour, translated_speedup)."""
    if docs < 2:
        raise PragError("--docs must be at least 2")
    corpus = dataset_dir(dataset) / "corpus.jsonl"
    res = run_bench_parameterize(load_model(model), corpus, docs=docs, loop_docs=loop_docs, batch_docs=batch_docs,
                                 train_dtype=train_dtype, translator=translator, translated_docs=translated_docs)
    typer.echo(json.dumps(res) if as_json else "\n".join(f"{k}: {v}" for k, v in res.items()))


@bench_app.command("generate")
def bench_generate(model: str = typer.Option("smollm2", help="Base model (a GGUF one: smollm2, gemma3-270m or a .gguf file)."),
                   tokens: int = typer.Option(64, help="Tokens decoded per timed generation."),
                   repeats: int = typer.Option(3, help="Timed generations per setting (median reported)."),
                   top_k: int = typer.Option(3, help="Adapters active for the prag settings."),
                   original: bool = typer.Option(True, help="Also time llama.cpp on the shipped quantized GGUF (llamacpp_q_*)."),
                   as_json: bool = typer.Option(True, "--json/--no-json", help="Print JSON (default).")):
    """Decode tokens/s and seconds per question: transformers vs llama.cpp, closed-book and with top-k adapters."""
    if tokens < 1 or repeats < 1 or top_k < 1:
        raise PragError("--tokens, --repeats and --top-k must be at least 1")
    require_llama_cpp()
    res = run_bench_generate(load_model(model), tokens=tokens, repeats=repeats, k=top_k, original=original)
    typer.echo(json.dumps(res) if as_json else "\n".join(f"{k}: {v}" for k, v in res.items()))


@bench_app.command("question")
def bench_question(kb: Path = KB,
                   questions: Path = typer.Option(..., help="JSONL questions (e.g. a dataset's questions.jsonl)."),
                   split: str = typer.Option("dev", help="dev | test | all."),
                   limit: int = typer.Option(20, help="Questions timed per method."),
                   top_k: int = typer.Option(3, help="Documents retrieved per question.")):
    """Seconds per question (p50) for closed, rag and prag in one run; prag includes its Update."""
    qs = split_qs(load_questions(questions), split)[:limit]
    typer.echo(json.dumps(run_bench_question(_pipeline(kb), qs, top_k=top_k)))


def _bench_kb(kb: Path | None, questions: Path | None) -> tuple[Pipeline, list[str]]:
    """The served benchmarks' kb, every document parameterized (default: the demo corpus in runs/kb-bench-serve,
    made on first use), and their questions (default: the demo's)."""
    demo = Path(__file__).resolve().parents[2] / "examples" / "demo"
    if kb is None:
        kb = Path("runs") / "kb-bench-serve"
        if not (kb / "kb.toml").exists():
            KnowledgeBase.create(kb, demo / "corpus.jsonl", default_config("smollm2"))
    pipe = _pipeline(kb, {"generation.adapters": "trained"})
    pipe.parameterize()  # what is already done is kept
    return pipe, [q.question for q in load_questions(questions or demo / "questions.jsonl")]


@bench_app.command("serve")
def bench_serve(clients: int = typer.Option(16, min=1, help="Concurrent HTTP clients."),
                kb: Optional[Path] = typer.Option(None, "--kb", help="Knowledge base served (its parameterized documents are asked about). Default: the demo corpus, indexed and parameterized into runs/kb-bench-serve on first use."),
                questions: Optional[Path] = typer.Option(None, help="JSONL questions (the first 4 are asked). Default: the demo's."),
                seconds: float = typer.Option(30.0, help="How long the clients send, per mode."),
                max_batch: int = typer.Option(16, min=1, help="Rows per batch in the batched mode."),
                max_tokens: Optional[int] = typer.Option(None, min=1, help="Tokens generated per answer at most (default: the kb's generation.max_new_tokens, as a request without max_tokens)."),
                as_json: bool = typer.Option(True, "--json/--no-json", help="Print JSON (default).")):
    """Requests per second of the real server on loopback: one request at a time (max_batch 1) against batched, in
    the same run, with p50/p95 latency, errors, and answers that differ from the single-request answer."""
    pipe, qs = _bench_kb(kb, questions)
    res = run_bench_serve(pipe, qs, clients=clients, seconds=seconds, max_batch=max_batch, max_tokens=max_tokens)
    typer.echo(json.dumps(res) if as_json else "\n".join(f"{k}: {v}" for k, v in res.items()))


@bench_app.command("batch")
def bench_batch(kb: Optional[Path] = typer.Option(None, "--kb", help="Knowledge base (default: the demo's, as `bench serve` makes it)."),
                questions: Optional[Path] = typer.Option(None, help="JSONL questions (default: the demo's)."),
                methods: str = typer.Option("closed,rag,prag,combine", help="Methods, cycled with the questions."),
                rows: int = typer.Option(96, min=1, help="Questions answered by each path."),
                max_rows: int = typer.Option(16, min=1, help="Rows generating at once."),
                max_tokens: Optional[int] = typer.Option(None, min=1, help="Tokens generated per answer at most (default: the kb's).")):
    """Static batches (model.generate, every row to the end of the longest) against the continuous batch (rows join
    and leave between decode steps) on the same queue of planned questions, in the same run; answers compared."""
    pipe, qs = _bench_kb(kb, questions)
    typer.echo(json.dumps(run_bench_batch(pipe, qs, [m.strip() for m in methods.split(",") if m.strip()], rows,
                                          max_rows, max_tokens)))


def load_plugins() -> None:
    """Import the modules named in $PRAG_PLUGINS (comma-separated): where a user's own retriever, augmenter, model,
    merge, method or backend registers itself before any command runs."""
    for name in filter(None, (m.strip() for m in os.environ.get("PRAG_PLUGINS", "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise PragError(f"$PRAG_PLUGINS: cannot import {name!r} ({e})") from None


def main() -> None:
    try:
        load_plugins()
        app(standalone_mode=False)
    except PragError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except OSError as e:  # the file system refused (read-only kb, disk full, permissions): one line, not a traceback
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        typer.echo(f"error: {e.strerror or e}{where}", err=True)
        sys.exit(1)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as e:
        # usage errors (unknown option, missing argument...): click's ClickException, or the same class from the
        # copy of click that newer typer releases vendor, so matched by what it does rather than by its type
        if callable(getattr(e, "format_message", None)) and isinstance(getattr(e, "exit_code", None), int):
            if type(e).__name__ == "NoArgsIsHelpError":  # `prag` alone: the help
                e.show()
                sys.exit(0)
            ctx = getattr(e, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            typer.echo(f"error: {e.format_message()}{where}", err=True)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
