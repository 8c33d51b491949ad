"""LLM augmentation: batched local decoding equals one prompt at a time, and the OpenAI-compatible augmenter
against a local stub server (concurrency, retries with backoff, clear errors)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import FICTIONAL
from prag import PragError
from prag.corpus import load_corpus
from prag.generate import generate
from prag.llm_augment import LocalCompleter, ModelAugmenter, OpenAICompleter
from prag.pipeline import Pipeline


def test_batched_local_completions_equal_single_ones(tiny_lm):
    prompts = ["Question: where is Kessary?\nAnswer:", "Hi", "The tidal chime was invented in the year"]
    batched = LocalCompleter(tiny_lm, batch_size=3).complete_many(prompts, 8)
    single = [generate(tiny_lm, p, max_new_tokens=8, stop_at_newline=False) for p in prompts]
    assert batched == single


class Stub(BaseHTTPRequestHandler):
    """Answers chat completions: question prompts get a question about the requested answer, rewrite prompts
    an echo. The first `fail_first` requests get HTTP 503."""
    lock = threading.Lock()
    state = {"requests": 0, "in_flight": 0, "max_in_flight": 0, "fail_first": 0, "status": 503}

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            st = self.state
            st["requests"] += 1
            fail = st["requests"] <= st["fail_first"]
            st["in_flight"] += 1
            st["max_in_flight"] = max(st["max_in_flight"], st["in_flight"])
        try:
            import time

            time.sleep(0.05)
            if fail:
                self.send_response(self.state["status"])
                self.end_headers()
                self.wfile.write(b"busy")
                return
            prompt = body["messages"][-1]["content"]
            if prompt.rstrip().endswith("Question:"):
                last = prompt.rsplit("Topic: ", 1)[1]
                sentence = last.split("Sentence: ", 1)[1].split("\n")[0]
                answer = last.split("Answer: ", 1)[1].split("\n")[0]
                text = sentence.replace(answer, "what").rstrip(".") + "?"
            else:
                text = prompt.rsplit("Passage: ", 1)[1].split("\nRewrite:")[0]
            out = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(out)
        finally:
            with self.lock:
                self.state["in_flight"] -= 1


@pytest.fixture()
def stub():
    Stub.state.update(requests=0, in_flight=0, max_in_flight=0, fail_first=0, status=503)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", Stub.state
    server.shutdown()


def test_openai_augmenter_concurrent_and_grounded(stub):
    url, state = stub
    docs = load_corpus(FICTIONAL / "corpus.jsonl")[:4]
    aug = ModelAugmenter(OpenAICompleter(url, "stub-model", concurrency=4, backoff=0.01))
    out = aug.augment_many(docs, 1, 3)
    assert state["max_in_flight"] > 1, "requests must run concurrently"
    for doc, a in zip(docs, out):
        assert len(a.qa) == 3 and len(a.rewrites) == 1 and a.notes["augmenter"] == "openai:stub-model"
        assert a.rewrites[0] == doc.as_text()
        assert any(q.source == "model" for q in a.qa)
        assert all(q.answer.lower() in doc.text.lower() for q in a.qa)


def test_openai_augmenter_retries_then_succeeds(stub):
    url, state = stub
    state["fail_first"] = 2
    comp = OpenAICompleter(url, "m", concurrency=1, retries=3, backoff=0.01)
    assert comp.complete_many(["Passage: hello\nRewrite:"], 10) == ["hello"]
    assert state["requests"] == 3


def test_openai_augmenter_gives_up_with_a_clear_error(stub):
    url, state = stub
    state["fail_first"] = 100
    with pytest.raises(PragError, match=r"failed after 3 tries: HTTP 503"):
        OpenAICompleter(url, "m", retries=2, backoff=0.01).complete_many(["x"], 5)
    state.update(requests=0, fail_first=1, status=401)
    with pytest.raises(PragError, match="HTTP 401"):  # not retried: a bad key will not get better
        OpenAICompleter(url, "m", retries=5, backoff=0.01).complete_many(["x"], 5)
    assert state["requests"] == 1


def test_openai_augmenter_unreachable(tmp_path):
    with pytest.raises(PragError, match="failed after 2 tries"):
        OpenAICompleter("http://127.0.0.1:9/v1", "m", retries=1, backoff=0.01, timeout=2).complete_many(["x"], 5)


@pytest.mark.parametrize("url, model, match", [("localhost:8000", "m", "http"), ("http://x/v1", "", "model name")])
def test_openai_augmenter_bad_settings(url, model, match):
    with pytest.raises(PragError, match=match):
        OpenAICompleter(url, model)


def test_pipeline_parameterizes_through_an_endpoint(stub, tiny_kb, tiny_lm):
    url, state = stub
    acfg = tiny_kb.config.augment
    acfg.augmenter, acfg.base_url, acfg.model = "openai", url, "stub-model"
    pipe = Pipeline(tiny_kb, tiny_lm)
    s = pipe.parameterize([d.id for d in tiny_kb.docs[:3]], progress=False)
    assert s["done"] == 3 and state["requests"] >= 3
    assert tiny_kb.load_augmentation(tiny_kb.docs[0].id).notes["augmenter"] == "openai:stub-model"
