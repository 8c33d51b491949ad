"""The HTTP API: an OpenAI-compatible chat endpoint answering with P-RAG (or any method), plus document
management. `prag serve --kb DIR` runs it with uvicorn.

    POST /v1/chat/completions   OpenAI body; extra fields `method`, `top_k`, `doc_ids`; `stream` gives SSE
    GET  /v1/models             the one served model
    GET  /health
    POST /v1/documents          {id?, title?, text}: indexed at once; translated at once when a translator is
                                set (status "translated"); trained in the background unless adapters = translated
    GET  /v1/documents          ?limit=&offset=&q=: the documents, newest first, with their status
    GET  /v1/documents/{id}     its text and status: pending | done | stale | failed | corrupt
    GET  /                      the web page: ask, see the documents used and their weights, add and delete
    DELETE /v1/documents/{id}   removes it and its adapter

Requests wait in a queue; one scheduler thread (`Batcher`) answers them as a continuous batch of up to `max_batch`
rows (`Pipeline.answer_jobs`): rows join and leave between decode steps, each with its own documents' adapters
through per-row factors in the same hooks, so one request's adapters never touch another's answer. A deletion
(under the injector's lock) lands between decode steps: a running request that uses the document ends with 404.
`max_batch` = 1 answers one request at a time. Errors map by type (a `PragError`'s status: NotFound 404, Conflict
409, others 400) to an OpenAI-style {"error": {"message", "type", "code"}} body. Generation stops when its client
disconnects or the server shuts down.

With an API key (`prag serve --api-key-file F` or $PRAG_API_KEY) every endpoint but /health and the page asks for
`Authorization: Bearer KEY`; a missing or wrong key gets an OpenAI-style 401. The key is never logged.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import queue
import re
import socket
import threading
import time
import uuid
from pathlib import Path

import uvicorn
from fastapi import FastAPI  # module level: endpoint annotations are resolved from module globals
from fastapi import Request as HTTPRequest
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from transformers import TextIteratorStreamer

from .corpus import Document
from .errors import NotFound, PragError
from .methods import METHODS
from .pipeline import MAX_DOCS, Answer, Job, Pipeline, Request

MAX_BODY_BYTES = 1 << 20
ID_PATTERN = re.compile(r"[A-Za-z0-9_:\-][A-Za-z0-9._:\-]{0,199}")  # ids a URL path carries as they are
MAX_TOKENS_LIMIT = 256
PAGE = Path(__file__).parent / "web" / "index.html"  # the web page at /: one file, no build step


def method_list() -> list[dict]:
    """The methods a request may name, as the page offers them: whether each retrieves (takes top_k) and whether
    it can stream (a method that retrieves while generating cannot)."""
    out = []
    for n in METHODS.names():
        m = METHODS.get(n)
        out.append({"id": n, "retrieves": m.retrieves or m.dynamic is not None, "streams": m.dynamic is None})
    return out


class HTTPError(PragError):
    """A request error with an explicit HTTP status (the body's shape, size, model name)."""

    def __init__(self, status: int, message: str, code: str = "invalid_request"):
        super().__init__(message)
        self.status, self.code = status, code


def _parse_chat(body: dict, model_id: str) -> dict:
    if body.get("model") not in (None, model_id):
        raise HTTPError(404, f"unknown model {body.get('model')!r}; this server has {model_id!r}", "model_not_found")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        raise HTTPError(400, "'messages' must be a non-empty list of {role, content} objects")
    last = msgs[-1]
    if last.get("role") != "user" or not isinstance(last.get("content"), str) or not last["content"].strip():
        raise HTTPError(400, "the last message must be a user message with non-empty string content")
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                   or not 1 <= max_tokens <= MAX_TOKENS_LIMIT):
        raise HTTPError(400, f"'max_tokens' must be an integer between 1 and {MAX_TOKENS_LIMIT}")
    method = body.get("method", "prag")
    METHODS.check(method)
    top_k = body.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_DOCS):
        raise HTTPError(400, f"'top_k' must be an integer between 1 and {MAX_DOCS}")
    doc_ids = body.get("doc_ids")
    if doc_ids is not None and (not isinstance(doc_ids, list) or not all(isinstance(i, str) for i in doc_ids)):
        raise HTTPError(400, "'doc_ids' must be a list of document id strings")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise HTTPError(400, "'stream' must be true or false")
    if stream and METHODS.get(method).dynamic:
        raise HTTPError(400, f"method {method!r} retrieves while generating and cannot stream; send stream: false")
    return {"question": last["content"], "method": method, "top_k": top_k, "doc_ids": doc_ids or None,
            "max_new_tokens": max_tokens, "stream": stream}


log = logging.getLogger(__name__)


class Batcher:
    """The scheduler: requests wait in a queue and one thread answers them as a continuous batch of up to
    `max_batch` rows (`Pipeline.answer_jobs`), each row with its own method, documents and adapters: between
    decode steps, finished rows leave and waiting requests join. When nothing runs, the first request waits up to
    `window` seconds for others (clients whose answers just came back send their next question in that time), so
    that they are prefilled together."""

    def __init__(self, pipe: Pipeline, max_batch: int = 8, window: float = 0.05, min_join: int = 1):
        if not isinstance(max_batch, int) or max_batch < 1:
            raise PragError(f"max_batch must be a positive integer, not {max_batch!r}")
        if not isinstance(min_join, int) or not 1 <= min_join <= max_batch:
            raise PragError(f"min_join must be an integer from 1 to max_batch ({max_batch}), not {min_join!r}")
        self.pipe, self.max_batch, self.window = pipe, max_batch, window if max_batch > 1 else 0.0
        self.min_join = min_join
        self.waiting: queue.Queue = queue.Queue()
        self.takes = self.rows = 0  # times the scheduler took waiting requests, and how many it took
        threading.Thread(target=self._run, daemon=True, name="prag-batcher").start()

    def submit(self, req: Request, planned=None, streamer=None, cancel: threading.Event | None = None):
        """Queue one request; returns a future of its `Answer` (or its error)."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()

        def settle(res) -> None:
            if isinstance(res, Exception) and streamer is not None:
                streamer.end()
            loop.call_soon_threadsafe(_settle, fut, res)

        self.waiting.put(Job(req, planned, streamer, cancel, settle))
        return fut

    def _take(self, n: int, idle: bool) -> list[Job]:
        """Up to n waiting requests; when nothing runs, wait for one, then up to `window` seconds for more."""
        jobs = []
        if idle:
            jobs.append(self.waiting.get())
            until = time.monotonic() + self.window
            while len(jobs) < n:
                try:
                    jobs.append(self.waiting.get(timeout=max(0.0, until - time.monotonic())))
                except queue.Empty:
                    break
        while len(jobs) < n:
            try:
                jobs.append(self.waiting.get_nowait())
            except queue.Empty:
                break
        if jobs:
            self.takes, self.rows = self.takes + 1, self.rows + len(jobs)
        return jobs

    def _run(self) -> None:
        while True:
            try:
                self.pipe.answer_jobs(self._take, self.max_batch, self.min_join)
            except Exception:  # noqa: BLE001 - a model error: every row taken has its error; go on
                log.exception("the batch failed")
                time.sleep(0.1)  # a failure that repeats does not spin


def _settle(fut: asyncio.Future, res) -> None:
    if not fut.done():  # its handler may be gone (client disconnected)
        fut.set_exception(res) if isinstance(res, Exception) else fut.set_result(res)


class Service:
    """What the routes do, one method per endpoint, around one Pipeline and the background parameterizer."""

    def __init__(self, pipe: Pipeline, model_id: str | None = None, max_batch: int = 8, min_join: int = 1):
        self.pipe = pipe
        self.model_id = model_id or f"prag-{pipe.config.model}"
        self.batcher = Batcher(pipe, max_batch, min_join=min_join)
        self.jobs: queue.Queue[str] = queue.Queue()
        self.stopping = threading.Event()  # set at shutdown: running generations stop at their next token
        threading.Thread(target=self._parameterize_added, daemon=True, name="prag-parameterize").start()

    def _parameterize_added(self) -> None:
        """Background parameterization of documents added through the API, one at a time."""
        kb = self.pipe.kb
        while True:
            doc_id = self.jobs.get()
            try:
                doc = kb.by_id.get(doc_id)
                if doc is not None and not kb.is_done(doc_id):
                    self.pipe.encode([doc])  # a document deleted or changed meanwhile is not published
            except Exception as e:  # noqa: BLE001 - recorded for the document; the worker goes on with the next
                if kb.by_id.get(doc_id) is not None:
                    try:
                        kb.mark_failed(doc_id, f"{type(e).__name__}: {e}")
                    except OSError:
                        pass
            finally:
                self.jobs.task_done()

    def health(self) -> dict:
        s = self.pipe.kb.summary()
        return {"status": "ok", "model": self.model_id, "documents": s["documents"], "parameterized": s["parameterized"],
                "translated": s["translated"], "methods": method_list()}

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": 0, "owned_by": "prag"}]}

    async def chat(self, body: dict, request: HTTPRequest | None = None):
        req = _parse_chat(body, self.model_id)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        args = Request(req["question"], req["method"], req["top_k"], req["doc_ids"], req["max_new_tokens"])
        if not req["stream"]:
            ans = await self._answer(args, request)
            n_out = self.pipe.count_tokens(ans.raw)
            return {"id": cid, "object": "chat.completion", "created": created, "model": self.model_id,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": ans.raw.strip()},
                                 "finish_reason": "stop"}],
                    "usage": _usage(ans.prompt_tokens, n_out), "prag": _extension(ans)}
        # Validate and retrieve before the stream starts, so errors are still proper 4xx responses.
        planned = await run_in_threadpool(self.pipe.plan, *args)
        return StreamingResponse(self._stream(cid, created, args, planned, request), media_type="text/event-stream")

    async def _answer(self, args: Request, request: HTTPRequest | None):
        """The request's answer from the batcher, cancelled (its row stops at its next token) when the client
        disconnects or the server shuts down."""
        cancel = threading.Event()
        # Planned here, in a worker thread, so that retrieval, reading adapters (or making a missing one, when the
        # kb says trained) never holds up the batcher; methods that retrieve while generating plan as they go.
        planned = None if METHODS.get(args.method).dynamic else await run_in_threadpool(self.pipe.plan, *args)
        job = self.batcher.submit(args, planned, cancel=cancel)
        try:
            while not job.done():
                await asyncio.wait({job}, timeout=0.25)
                if not job.done() and (self.stopping.is_set()
                                       or (request is not None and await request.is_disconnected())):
                    cancel.set()
            return job.result()
        finally:
            cancel.set()  # also when this handler itself is cancelled

    async def _stream(self, cid: str, created: int, args: Request, planned: tuple, request: HTTPRequest | None = None):
        """Server-sent chat.completion.chunk events as the answer is generated (in the batcher's thread). When the
        client goes away or the server shuts down, the generation is cancelled."""
        streamer = TextIteratorStreamer(self.pipe.lm.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=0.25)  # between pieces: a look at the client
        cancel = threading.Event()

        job = self.batcher.submit(args, planned, streamer, cancel)
        pieces = iter(streamer)

        def chunk(delta: dict, finish=None, extra=None) -> str:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": self.model_id,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if extra:
                obj["prag"] = extra
            return f"data: {json.dumps(obj)}\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""})
            first = True
            while True:
                try:
                    piece = await run_in_threadpool(next, pieces, None)
                except queue.Empty:  # no new piece yet
                    if self.stopping.is_set() or (request is not None and await request.is_disconnected()):
                        cancel.set()
                    continue
                if piece is None:
                    break
                if first:
                    piece, first = piece.lstrip(), not piece.strip()
                if piece:
                    yield chunk({"content": piece})
            try:
                answer = await job
            except Exception as e:  # noqa: BLE001 - reported in the stream; the server stays up
                yield f"data: {json.dumps({'error': {'message': str(e), 'type': 'server_error'}})}\n\n"
            else:
                yield chunk({}, "stop", _extension(answer))
            yield "data: [DONE]\n\n"
        finally:
            cancel.set()  # the client disconnected, or the stream ended: nothing more to generate

    def add_document(self, body: dict) -> dict:
        text, title = body.get("text"), body.get("title", "")
        doc_id = body.get("id") or f"doc-{uuid.uuid4().hex[:12]}"
        if not isinstance(text, str) or not text.strip():
            raise HTTPError(400, "'text' must be a non-empty string")
        if not isinstance(title, str) or not isinstance(doc_id, str):
            raise HTTPError(400, "'title' and 'id' must be strings")
        doc_id = doc_id.strip()
        if not ID_PATTERN.fullmatch(doc_id):
            raise HTTPError(400, "'id' must be 1-200 characters: letters, digits and . _ : - (not starting with a dot)")
        doc = Document(doc_id, title.strip(), text.strip())
        self.pipe.kb.add_document(doc)  # Conflict if taken
        status = "pending"
        if self.pipe.config.generation.translator:  # usable at once: one forward pass, no training
            self.pipe.translate([doc])
            status = "translated"
        if self.pipe.config.generation.adapters != "translated":
            self.jobs.put(doc_id)  # trained in the background; answers use it once done
        return {"id": doc_id, "status": status}

    def _document(self, doc_id: str) -> Document:
        doc = self.pipe.kb.by_id.get(doc_id)
        if doc is None:
            raise NotFound(f"unknown document id {doc_id!r}")
        return doc

    def list_documents(self, limit: int = 50, offset: int = 0, q: str = "") -> dict:
        """The documents, newest first, `limit` from `offset`, optionally only those whose id or title holds `q`
        (case-insensitive): id, title, status, and whether a translated adapter exists."""
        if not 1 <= limit <= 1000 or offset < 0:
            raise HTTPError(400, "'limit' must be between 1 and 1000 and 'offset' at least 0")
        kb, q = self.pipe.kb, q.strip().lower()
        docs = [d for d in reversed(kb.docs) if not q or q in d.id.lower() or q in d.title.lower()]
        page = docs[offset:offset + limit]
        return {"object": "list", "total": len(docs), "offset": offset,
                "data": [{"id": d.id, "title": d.title, "status": "done" if kb.is_done(d.id) else kb.status(d.id),
                          "translated": kb.has_translated(d.id)} for d in page]}

    def get_document(self, doc_id: str) -> dict:
        d = self._document(doc_id)
        kb = self.pipe.kb
        return {"id": d.id, "title": d.title, "text": d.text, "status": "done" if kb.is_done(doc_id) else kb.status(doc_id),
                "translated": kb.has_translated(doc_id)}

    def delete_document(self, doc_id: str) -> dict:
        self._document(doc_id)
        with self.pipe.injector.lock:  # between decode steps: a row using the document ends with 404 at the next
            self.pipe.kb.remove_document(doc_id)
        return {"id": doc_id, "deleted": True}


def _error(status: int, message: str, code: str) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status)


async def _read_json(request: HTTPRequest) -> dict:
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        raise HTTPError(413, f"request body over {MAX_BODY_BYTES} bytes", "body_too_large")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPError(413, f"request body over {MAX_BODY_BYTES} bytes", "body_too_large")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HTTPError(400, f"invalid JSON body: {e}", "invalid_json") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "the JSON body must be an object", "invalid_json")
    return body


def _unauthorized(message: str) -> JSONResponse:
    resp = _error(401, message, "invalid_api_key")
    resp.headers["WWW-Authenticate"] = "Bearer"
    return resp


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


OPEN_PATHS = ("/health", "/")  # no key asked: the liveness probe, and the page (which sends the key it is given)


def check_api_key(key: str | None) -> str | None:
    """A usable API key or None; an empty or blank key is refused (it would let everyone in)."""
    if key is None:
        return None
    key = key.strip()
    if not key or any(c.isspace() for c in key):
        raise PragError("the API key is empty or holds whitespace; put one line of printable characters in the file")
    return key


def read_api_key(path: Path | None, env: dict) -> str | None:
    """The server's API key: from `path` (its first line) or else $PRAG_API_KEY; None when neither is set."""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise PragError(f"cannot read the API key file {path}: {e.strerror}") from None
        return check_api_key(text.splitlines()[0] if text.strip() else "")
    return check_api_key(env.get("PRAG_API_KEY")) if env.get("PRAG_API_KEY") is not None else None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """A warning when the server listens where others can reach it and asks for no key; None otherwise."""
    if api_key is None and not is_loopback(host):
        return (f"warning: serving on {host} without an API key: anyone who can reach this port can ask questions "
                "and add or delete documents. Use --api-key-file FILE or $PRAG_API_KEY.")
    return None


def create_app(pipe: Pipeline, model_id: str | None = None, api_key: str | None = None,
               max_batch: int = 8, min_join: int = 1) -> FastAPI:
    """The FastAPI app: the routes, each a line calling `Service`; errors mapped by type (a `PragError`'s status).
    With `api_key`, every path but /health and the page asks for `Authorization: Bearer <api_key>`."""
    api_key = check_api_key(api_key)
    svc = Service(pipe, model_id, max_batch, min_join)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        svc.stopping.set()  # shutdown (SIGTERM): running generations stop at their next token

    app = FastAPI(title="prag", description="Parametric RAG, OpenAI-compatible", lifespan=lifespan)
    app.state.jobs, app.state.batcher = svc.jobs, svc.batcher
    app.add_exception_handler(PragError, lambda request, e: _error(e.status, str(e), e.code))

    if api_key is not None:
        expected = f"Bearer {api_key}".encode()

        @app.middleware("http")
        async def require_key(request: HTTPRequest, call_next):
            if request.url.path not in OPEN_PATHS:
                given = request.headers.get("authorization")
                if given is None:
                    return _unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
                if not hmac.compare_digest(given.encode(), expected):  # constant time; the key is never echoed
                    return _unauthorized("incorrect API key provided")
            return await call_next(request)

    @app.get("/", include_in_schema=False)
    def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/health")
    def health():
        return svc.health()

    @app.get("/v1/models")
    def models():
        return svc.models()

    @app.post("/v1/chat/completions")
    async def chat(request: HTTPRequest):
        return await svc.chat(await _read_json(request), request)

    @app.post("/v1/documents", status_code=201)
    async def add_document(request: HTTPRequest):
        body = await _read_json(request)
        return await run_in_threadpool(svc.add_document, body)  # it may wait for the kb's lock: not on the loop

    @app.get("/v1/documents")
    def list_documents(limit: int = 50, offset: int = 0, q: str = ""):
        return svc.list_documents(limit, offset, q)

    @app.get("/v1/documents/{doc_id:path}")  # ids from a corpus file may hold a '/'
    def get_document(doc_id: str):
        return svc.get_document(doc_id)

    @app.delete("/v1/documents/{doc_id:path}")
    def delete_document(doc_id: str):
        return svc.delete_document(doc_id)

    return app


def _extension(ans: Answer) -> dict:
    d = ans.to_dict()
    return {"method": d["method"], "answer": d["answer"], "documents": d["documents"],
            "update_seconds": d["update_seconds"], **({"adapters": d["adapters"]} if "adapters" in d else {})}


def serve_in_thread(app: FastAPI, log_level: str = "error") -> tuple[uvicorn.Server, str]:
    """Run `app` with uvicorn on a free loopback port in a daemon thread (benchmarks, tests, screenshots): the
    started server (set `should_exit` to stop it) and its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    threading.Thread(target=server.run, daemon=True, name="prag-uvicorn").start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"
