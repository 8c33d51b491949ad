"""The HTTP API on the tiny model: OpenAI client (chat, streaming), document lifecycle, isolation between
concurrent requests with different documents, and a 4xx for every bad request with the server staying up."""
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

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
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(served[1], host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    t.join(5)


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
    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda s: (tuple(s), _ask(client, Q, s)), jobs))
    for s, ans in got:
        assert ans == reference[s], s
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
