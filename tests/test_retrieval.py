"""retrieval.py: BM25 over a small corpus (best document first, only documents that match, nothing when no query
term occurs), an index saved and loaded back, an index refused for another corpus, and a bad top-k."""
import pytest

from prag import PragError
from prag.corpus import Document
from prag.retrieval import RETRIEVERS, BM25Retriever

DOCS = [
    Document("harbour", "Kessary harbour", "The harbour of Kessary shelters fishing boats and glass barges."),
    Document("chime", "Tidal chime", "The tidal chime is a set of glass bells that ring when the harbour water rises."),
    Document("toad", "Brindlecap Toad", "The Brindlecap Toad lives along the shores of Lake Morvessa."),
    Document("comet", "Rook's comet", "Dellaphine Rook discovered a faint comet from the observatory of Sarnholt."),
]


@pytest.fixture(scope="module")
def bm25():
    return BM25Retriever(DOCS)


@pytest.mark.parametrize("query, k, ids", [
    ("Where do the fishing boats of Kessary shelter?", 3, ["harbour"]),   # one document matches: one hit
    ("glass bells of the tidal chime", 1, ["chime"]),                     # best first, cut at k
    ("Who discovered the comet?", 5, ["comet"]),                          # k above the corpus size
    ("Which toad lives by Lake Morvessa?", 2, ["toad"]),
    ("Xyzzy qwertz?", 3, []),                                             # no query term in the corpus
    ("the of and", 3, []),                                                # stop words only
])
def test_bm25_retrieve(bm25, query, k, ids):
    assert [h.doc.id for h in bm25.retrieve(query, k)] == ids


def test_bm25_ranks_the_best_document_first_and_returns_only_matches(bm25):
    hits = bm25.retrieve("glass harbour", 10)
    assert {h.doc.id for h in hits} == {"harbour", "chime"}  # fewer than k: only the documents that match
    assert hits[0].doc.id == "harbour"  # both words, in the shorter document
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True) and all(h.score > 0 for h in hits)


def test_bm25_is_the_registered_default():
    assert RETRIEVERS.get("bm25") is BM25Retriever


@pytest.mark.parametrize("k", [0, -1])
def test_top_k_below_one_is_an_error(bm25, k):
    with pytest.raises(PragError, match="top-k must be at least 1"):
        bm25.retrieve("glass harbour", k)


QUERIES = ["glass harbour", "Who discovered the comet?", "toad", "Xyzzy qwertz?"]


def test_saved_index_loads_back_with_the_same_hits(bm25, tmp_path):
    bm25.save(tmp_path / "index")
    loaded = BM25Retriever.load(tmp_path / "index", DOCS)
    for q in QUERIES:
        assert ([(h.doc.id, h.score) for h in loaded.retrieve(q, 3)]
                == [(h.doc.id, h.score) for h in bm25.retrieve(q, 3)]), q


@pytest.mark.parametrize("docs", [DOCS[:3], DOCS[::-1], DOCS + [Document("x", "", "another document")]],
                         ids=["fewer", "reordered", "more"])
def test_index_of_another_corpus_is_refused(bm25, tmp_path, docs):
    bm25.save(tmp_path / "index")
    with pytest.raises(PragError, match="does not match the corpus"):
        BM25Retriever.load(tmp_path / "index", docs)


def test_folder_without_an_index_is_refused(tmp_path):
    with pytest.raises(PragError, match="does not match the corpus"):
        BM25Retriever.load(tmp_path, DOCS)
