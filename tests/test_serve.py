"""The HTTP API on the tiny model: OpenAI client (chat, streaming), document lifecycle, isolation between
concurrent requests with different documents, and a 4xx for every bad request with the server staying up."""
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prag.pipeline import Pipeline


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir, tiny_lm):
    from conftest import FICTIONAL, small_config
    from prag.serve import create_app
    from prag.store import KnowledgeBase

    cfg = small_config(tiny_model_dir, max_seq_len=128, max_new_tokens=6)
    kb = KnowledgeBase.create(tmp_path_factory.mktemp("srv") / "kb", FICTIONAL / "corpus.jsonl", cfg)
    pipe = Pipeline(kb, tiny_lm)
    pipe.parameterize(progress=False)
    return pipe, create_app(pipe, "prag-tiny")


@pytest.fixture(scope="module")
def client(served):
    from fastapi.testclient import TestClient

    return TestClient(served[1])


@pytest.fixture(scope="module")
def live_url(served):
    from prag.serve import serve_in_thread

    server, url = serve_in_thread(served[1], log_level="warning")
    yield f"{url}/v1"
    server.should_exit = True


Q = "Who commands the icebreaker Halvard Sorrel?"


def test_openai_client_chat_and_stream(live_url):
    from openai import OpenAI

    client = OpenAI(base_url=live_url, api_key="unused")
    assert [m.id for m in client.models.list().data] == ["prag-tiny"]
    r = client.chat.completions.create(model="prag-tiny", messages=[{"role": "user", "content": Q}], max_tokens=6,
                                       extra_body={"method": "prag", "top_k": 2})
    text = r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop" and isinstance(text, str)
    docs = r.model_extra["prag"]["documents"]
    assert len(docs) == 2 and docs[0]["id"] == "fic-05"
    stream = client.chat.completions.create(model="prag-tiny", messages=[{"role": "user", "content": Q}],
                                            max_tokens=6, stream=True, extra_body={"method": "prag", "top_k": 2})
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces).strip() == text.strip()


def _ask(client, question, doc_ids=None, method="prag"):
    body = {"model": "prag-tiny", "messages": [{"role": "user", "content": question}], "method": method}
    if doc_ids:
        body["doc_ids"] = doc_ids
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_concurrent_requests_see_only_their_documents(client, served):
    pipe = served[0]
    sets = [["fic-01"], ["fic-02", "fic-03"], ["fic-05"], ["fic-06", "fic-07", "fic-08"]]
    reference = {tuple(s): _ask(client, Q, s) for s in sets}
    assert len(set(reference.values())) > 1, "different documents must give different answers on this model"
    jobs = [sets[i % len(sets)] for i in range(40)]
    widths = []  # rows per forward pass
    real = pipe.injector.apply_rows
    pipe.injector.apply_rows = lambda rows: widths.append(len(rows)) or real(rows)
    batcher, before = served[1].state.batcher, served[1].state.batcher.rows
    try:
        with ThreadPoolExecutor(8) as ex:
            got = list(ex.map(lambda s: (tuple(s), _ask(client, Q, s)), jobs))
    finally:
        pipe.injector.apply_rows = real
    for s, ans in got:
        assert ans == reference[s], s
    assert batcher.rows - before == 40 and max(widths) > 1, f"the requests must have shared batches: {widths}"
    assert all(not t for t in pipe.injector.terms.values()) and not pipe.injector.active


def test_document_lifecycle(client, served):
    r = client.post("/v1/documents", json={"id": "new-1", "title": "Quillfen Abbey",
                                          "text": "Quillfen Abbey was founded in 1204 by the monk Aldric Penhale."})
    assert r.status_code == 201 and r.json()["status"] == "pending"
    assert client.post("/v1/documents", json={"id": "new-1", "text": "again"}).status_code == 409
    served[1].state.jobs.join()
    assert client.get("/v1/documents/new-1").json()["status"] == "done"
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "When was Quillfen Abbey founded?"}],
                                                  "top_k": 1})
    assert r.json()["prag"]["documents"][0]["id"] == "new-1"
    assert client.delete("/v1/documents/new-1").json() == {"id": "new-1", "deleted": True}
    assert client.get("/v1/documents/new-1").status_code == 404
    assert not served[0].kb.doc_dir("new-1").exists()


@pytest.mark.parametrize("body, status, needle", [
    ({"model": "gpt-9", "messages": [{"role": "user", "content": Q}]}, 404, "unknown model"),
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "user", "content": ""}]}, 400, "user message"),
    ({"messages": [{"role": "user", "content": Q}], "max_tokens": 100000}, 400, "max_tokens"),
    ({"messages": [{"role": "user", "content": Q}], "method": "magic"}, 400, "unknown method"),
    ({"messages": [{"role": "user", "content": Q}], "doc_ids": ["nope"]}, 404, "unknown document"),
    ({"messages": [{"role": "user", "content": Q}], "top_k": 0}, 400, "top_k"),
    ({"messages": [{"role": "user", "content": "Xyzzy qwertz?"}]}, 400, "retrieves no document"),
    ({"messages": [{"role": "user", "content": Q}], "method": "dragin", "stream": True}, 400, "cannot stream"),
    ({"messages": [{"role": "user", "content": Q}], "method": "flare", "doc_ids": ["x"]}, 400, "doc_ids"),
])
def test_bad_chat_requests(client, body, status, needle):
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_invalid_json_oversized_body_and_unknown_document(client):
    r = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"]["message"]
    r = client.post("/v1/documents", content=json.dumps({"text": "x" * (2 << 20)}).encode(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.get("/v1/documents/missing").status_code == 404
    assert client.delete("/v1/documents/missing").status_code == 404
    assert client.post("/v1/documents", json={"title": "no text"}).status_code == 400
    assert client.get("/health").json()["status"] == "ok"  # still up


# ---------------------------------------------------------------- bounded work, ids, a deletion is final (issue 27)
@pytest.mark.parametrize("body, needle", [
    ({"messages": [{"role": "user", "content": "Who? " * 60_000}]}, "characters"),
    ({"messages": [{"role": "user", "content": Q + " x" * 5000}], "method": "closed"}, "tokens"),
    ({"messages": [{"role": "user", "content": Q}], "doc_ids": ["doc-01"] * 60}, "more than once"),
    ({"messages": [{"role": "user", "content": Q}], "doc_ids": [f"d{i}" for i in range(21)]}, "at most 20"),
    ({"messages": [{"role": "user", "content": Q}], "stream": "no"}, "'stream' must be true or false"),
])
def test_requests_beyond_the_bounds_are_refused_at_once(client, body, needle):
    t0 = time.perf_counter()
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and needle in r.json()["error"]["message"], r.text
    assert time.perf_counter() - t0 < 10  # refused before any generation


@pytest.mark.parametrize("doc_id", ["../x", "a/b", ".hidden", "x" * 201, "tab\there", "ünï"])
def test_document_ids_a_url_cannot_carry_are_refused(client, doc_id):
    r = client.post("/v1/documents", json={"id": doc_id, "text": "Some text."})
    assert r.status_code == 400 and "'id' must be" in r.json()["error"]["message"]


def test_ids_are_compared_stripped_and_corpus_ids_with_a_slash_are_reachable(client, served):
    from prag.corpus import Document

    assert client.post("/v1/documents", json={"id": " dup-1 ", "text": "Text one."}).status_code == 201
    assert client.post("/v1/documents", json={"id": "dup-1", "text": "Text two."}).status_code == 409
    assert client.post("/v1/documents", json={"id": " dup-1 ", "text": "Text two."}).status_code == 409
    served[0].kb.add_document(Document("dir/doc", "From a corpus file", "Ids in a corpus may hold a slash."))
    assert client.get("/v1/documents/dir/doc").json()["id"] == "dir/doc"
    assert client.delete("/v1/documents/dir/doc").json() == {"id": "dir/doc", "deleted": True}
    served[1].state.jobs.join()
    client.delete("/v1/documents/dup-1")


def test_delete_during_parameterize_never_brings_the_deleted_text_back(client, served):
    """Fault injection: post, delete at a random moment (before, during or after the background job), re-post the
    same id with other text, wait. Whatever the timing, the stored adapter is the new text's or none."""
    import random

    from prag.store import content_hash

    kb = served[0].kb
    rng = random.Random(0)
    for i in range(20):
        old, new = f"Brannock Hall was built in {1700 + i}.", f"Ossery Mill was built in {1800 + i}."
        assert client.post("/v1/documents", json={"id": "fi", "title": "T", "text": old}).status_code == 201
        time.sleep(rng.uniform(0, 0.4))
        assert client.delete("/v1/documents/fi").status_code == 200
        assert client.post("/v1/documents", json={"id": "fi", "title": "T", "text": new}).status_code == 201
        served[1].state.jobs.join()
        assert client.get("/v1/documents/fi").json()["status"] == "done", i
        aug = (kb.doc_dir("fi") / "augmentation.json").read_text()
        assert str(1800 + i) in aug and str(1700 + i) not in aug, (i, aug)
        assert kb._manifest["fi"]["text_sha256"] == content_hash(kb.by_id["fi"])
        assert client.delete("/v1/documents/fi").status_code == 200
        assert not kb.doc_dir("fi").exists()


def test_the_server_stops_on_sigterm(tmp_path, tiny_model_dir):
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    from conftest import FICTIONAL, small_config
    from prag.store import KnowledgeBase

    KnowledgeBase.create(tmp_path / "kb", FICTIONAL / "corpus.jsonl", small_config(tiny_model_dir))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "prag.cli", "serve", "--kb", str(tmp_path / "kb"), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not start")
        t0 = time.perf_counter()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(15) in (0, -signal.SIGTERM)  # uvicorn shuts down, then re-raises the signal it caught
        assert time.perf_counter() - t0 < 10
        assert b"Finished server process" in proc.stderr.read()  # a graceful shutdown, not a kill
    finally:
        proc.kill()


# ---------------------------------------------------------------- property-based: any request body (issue 27)

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
                     max_leaves=8)
_MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", 3]),
                                            "content": st.text(max_size=40) | _JSON}), max_size=3)
_CHAT = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["prag-tiny", "gpt-4"]) | _JSON, "messages": _MESSAGES | _JSON,
    "method": st.sampled_from(["prag", "rag", "closed", "flare", "nope"]) | _JSON,
    "top_k": st.integers(-3, 30) | _JSON, "doc_ids": st.lists(st.text(max_size=8), max_size=3) | _JSON,
    "max_tokens": st.integers(-5, 300) | _JSON, "stream": st.booleans() | _JSON})


@settings(max_examples=500, deadline=None)
@given(body=_CHAT | _JSON)
def test_parse_chat_gives_a_request_or_a_clear_error(body):
    from prag.errors import PragError
    from prag.serve import _parse_chat

    try:
        req = _parse_chat(body if isinstance(body, dict) else {"messages": body}, "prag-tiny")
    except PragError as e:
        assert 400 <= e.status < 500 and str(e)
        return
    assert isinstance(req["question"], str) and req["question"].strip()
    assert req["top_k"] is None or 1 <= req["top_k"] <= 20
    assert isinstance(req["stream"], bool)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.fixed_dictionaries({}, optional={"id": st.text(max_size=12) | _JSON, "title": st.text(max_size=12) | _JSON,
                                                "text": st.text(max_size=60) | _JSON}) | _JSON)
def test_the_documents_api_answers_4xx_never_500_and_writes_only_inside_the_kb(client, served, body):
    kb_root = served[0].kb.root
    outside = sorted(p.name for p in kb_root.parent.iterdir())
    r = client.post("/v1/documents", json=body)
    assert r.status_code in (201, 400, 409), r.text
    if r.status_code == 201:
        doc_id = r.json()["id"]
        assert client.get(f"/v1/documents/{doc_id}").json()["id"] == doc_id
        assert client.delete(f"/v1/documents/{doc_id}").status_code == 200
    else:
        assert r.json()["error"]["message"]
    assert sorted(p.name for p in kb_root.parent.iterdir()) == outside


@pytest.mark.parametrize("stream", [False, True])
def test_generation_is_cancelled_when_the_client_goes_away(served, live_url, stream):
    import httpx

    pipe = served[0]
    seen = {}
    real_row = pipe._row

    def slow_row(job):  # the request's row waits until cancelled (10 s at most)
        t0 = time.perf_counter()
        while not (job.cancel is not None and job.cancel.is_set()) and time.perf_counter() - t0 < 10:
            time.sleep(0.02)
        seen["cancelled_after"] = time.perf_counter() - t0
        return real_row(job)

    pipe._row = slow_row
    try:
        body = {"messages": [{"role": "user", "content": Q}], "stream": stream}
        with pytest.raises(httpx.ReadTimeout):
            with httpx.Client(timeout=1.0) as c:
                r = c.post(f"{live_url}/chat/completions", json=body)
                if stream:
                    for _ in r.iter_lines():
                        pass
        for _ in range(100):
            if "cancelled_after" in seen:
                break
            time.sleep(0.05)
        assert seen.get("cancelled_after", 99) < 5, seen
    finally:
        pipe._row = real_row


# ---------------------------------------------------------------- API keys, the document list, the page
@pytest.fixture(scope="module")
def keyed(served):
    from fastapi.testclient import TestClient

    from prag.serve import create_app

    return TestClient(create_app(served[0], "prag-tiny", api_key="s3cret-key"))


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "s3cret-key", "Bearer s3cret-key2", "Basic s3cret-key"])
@pytest.mark.parametrize("method, path", [("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                                          ("GET", "/v1/documents"), ("GET", "/v1/documents/fic-01"),
                                          ("POST", "/v1/documents"), ("DELETE", "/v1/documents/fic-01")])
def test_a_missing_or_wrong_key_gets_an_openai_style_401(keyed, served, auth, method, path):
    headers = {"Authorization": auth} if auth else {}
    n = len(served[0].kb.docs)
    r = keyed.request(method, path, headers=headers, json={"messages": [{"role": "user", "content": Q}]})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    err = r.json()["error"]
    assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error" and err["message"]
    assert "s3cret" not in r.text
    assert len(served[0].kb.docs) == n and "fic-01" in served[0].kb.by_id, "nothing may change without the key"


def test_health_lists_the_methods_with_what_the_page_needs(keyed):
    from prag.methods import METHODS

    got = {m["id"]: m for m in keyed.get("/health").json()["methods"]}
    assert list(got) == METHODS.names()
    assert got["prag"] == {"id": "prag", "retrieves": True, "streams": True}
    assert got["closed"]["retrieves"] is False and got["closed"]["streams"] is True
    for dyn in ("flare", "dragin", "prag-chain"):
        assert got[dyn]["streams"] is False and got[dyn]["retrieves"] is True


def test_the_right_key_opens_every_endpoint_and_health_and_the_page_need_none(keyed):
    from openai import AuthenticationError, OpenAI

    good = {"Authorization": "Bearer s3cret-key"}
    assert keyed.get("/health").status_code == 200
    page = keyed.get("/")
    assert page.status_code == 200 and "<title>prag</title>" in page.text
    assert keyed.get("/v1/models", headers=good).json()["data"][0]["id"] == "prag-tiny"
    r = keyed.post("/v1/chat/completions", headers=good, json={"messages": [{"role": "user", "content": Q}]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None
    assert keyed.get("/v1/documents/fic-01", headers=good).json()["id"] == "fic-01"
    with pytest.raises(AuthenticationError):  # what an OpenAI client makes of the 401
        OpenAI(base_url="http://testserver/v1", api_key="wrong", http_client=keyed).models.list()
    ok = OpenAI(base_url="http://testserver/v1", api_key="s3cret-key", http_client=keyed)
    assert [m.id for m in ok.models.list().data] == ["prag-tiny"]


@pytest.mark.parametrize("text, error", [("k1\n", None), ("  k2  \nignored", None), ("", "empty"), ("  \n", "empty"),
                                         ("a b", "whitespace")])
def test_the_key_file_is_read_and_a_blank_key_refused(tmp_path, text, error):
    from prag import PragError
    from prag.serve import read_api_key

    f = tmp_path / "key"
    f.write_text(text)
    if error:
        with pytest.raises(PragError, match=error):
            read_api_key(f, {})
    else:
        assert read_api_key(f, {"PRAG_API_KEY": "from-env"}) == text.splitlines()[0].strip()
    assert read_api_key(None, {"PRAG_API_KEY": "from-env"}) == "from-env"
    assert read_api_key(None, {}) is None
    with pytest.raises(PragError, match="cannot read"):
        read_api_key(tmp_path / "missing", {})


@pytest.mark.parametrize("host, key, warns", [("127.0.0.1", None, False), ("localhost", None, False),
                                              ("::1", None, False), ("0.0.0.0", None, True),
                                              ("192.168.1.5", None, True), ("0.0.0.0", "k", False)])
def test_a_server_others_can_reach_without_a_key_warns(host, key, warns):
    from prag.serve import exposure_warning

    assert (exposure_warning(host, key) is not None) == warns


def test_the_document_list_pages_filters_and_puts_the_newest_first(client, served):
    kb = served[0].kb
    r = client.get("/v1/documents", params={"limit": 3}).json()
    assert r["total"] == len(kb.docs) and [d["id"] for d in r["data"]] == [d.id for d in kb.docs[::-1][:3]]
    assert set(r["data"][0]) == {"id", "title", "status", "translated"}
    r2 = client.get("/v1/documents", params={"limit": 3, "offset": 3}).json()
    assert [d["id"] for d in r2["data"]] == [d.id for d in kb.docs[::-1][3:6]]
    hal = client.get("/v1/documents", params={"q": "HALVARD"}).json()
    assert [d["id"] for d in hal["data"]] == ["fic-05"] and hal["data"][0]["status"] == "done"
    for bad in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"limit": "x"}):
        assert client.get("/v1/documents", params=bad).status_code in (400, 422)


@pytest.mark.parametrize("max_batch, min_join", [(0, 1), (2.5, 1), (4, 0), (4, 5), (4, "2")])
def test_the_batcher_refuses_bad_sizes(served, max_batch, min_join):
    from prag.errors import PragError
    from prag.serve import Batcher

    with pytest.raises(PragError, match="max_batch|min_join"):
        Batcher(served[0], max_batch, min_join=min_join)
