"""augment.py: RuleAugmenter's promise of exactly n rewrites and m grounded pairs per document, the §5.3
ablation's select_parts, and ReferenceAugmenter (given QA pairs, rule pairs for the rest)."""
import json

import pytest

from conftest import FICTIONAL
from prag import PragError
from prag.augment import ReferenceAugmenter, RuleAugmenter, select_parts
from prag.corpus import Document, load_corpus
from prag.rules import QA, Augmentation, is_faithful_rewrite, is_grounded
from prag.text import normalize_answer

DOCS = load_corpus(FICTIONAL / "corpus.jsonl")
BY_ID = {d.id: d for d in DOCS}
IDS = [d.id for d in DOCS]


# ---------------------------------------------------------------- RuleAugmenter
def _augment_cases():
    for n, m in [(1, 3), (2, 6)]:
        for doc_id in IDS:
            yield pytest.param(doc_id, n, m, id=f"{doc_id}-n{n}-m{m}")


@pytest.mark.parametrize("doc_id, n, m", list(_augment_cases()))
def test_rule_augmenter_exact_counts(doc_id, n, m):
    aug = RuleAugmenter().augment(BY_ID[doc_id], n, m)
    assert len(aug.rewrites) == n
    assert len(aug.qa) == m


@pytest.mark.parametrize("doc_id", IDS)
@pytest.mark.parametrize("n, m", [(0, 0), (1, 3), (3, 6)])
def test_rule_augmenter_output_is_valid(doc_id, n, m):
    """What holds today whatever the count: n rewrites, at most m pairs, all grounded, answers unique."""
    doc = BY_ID[doc_id]
    aug = RuleAugmenter().augment(doc, n, m)
    assert len(aug.rewrites) == n
    assert all(is_faithful_rewrite(r, doc) for r in aug.rewrites)
    assert len(aug.qa) <= m
    assert all(is_grounded(q, doc) for q in aug.qa)
    answers = [normalize_answer(q.answer) for q in aug.qa]
    assert len(set(answers)) == len(answers)
    assert aug.notes["augmenter"] == "rule"
    assert aug.notes["qa_kept"] == 0 and aug.notes["rewrites_kept"] == 0


# ---------------------------------------------------------------- ablation switches (§5.3) and reference QA
def test_select_parts():
    doc = Document("d", "T", "Body text.")
    aug = Augmentation(["rewrite one"], [QA("q?", "a", "rule")], {})
    assert select_parts(aug, doc, "both").rewrites == ["rewrite one"] and len(select_parts(aug, doc, "both").qa) == 1
    assert select_parts(aug, doc, "rewrite").qa == [] and select_parts(aug, doc, "rewrite").rewrites == ["rewrite one"]
    assert select_parts(aug, doc, "qa").rewrites == ["T: Body text."] and len(select_parts(aug, doc, "qa").qa) == 1
    none = select_parts(aug, doc, "none")
    assert none.rewrites == ["T: Body text."] and none.qa == [] and none.notes["parts"] == "none"
    with pytest.raises(PragError, match="unknown augment.parts"):
        select_parts(aug, doc, "all")


def test_reference_augmenter(tmp_path):
    docs = load_corpus(FICTIONAL / "corpus.jsonl")
    ref = tmp_path / "ref.jsonl"
    ref.write_text(json.dumps({"doc_id": docs[0].id, "qa": [{"question": "Who is it?", "answer": "Someone"}]}) + "\n")
    aug = ReferenceAugmenter(str(ref))
    a0, a1 = aug.augment_many(docs[:2], 1, 3)
    assert [(q.question, q.answer) for q in a0.qa] == [("Who is it?", "Someone")] and a0.notes["qa_source"] == "reference"
    assert a1.notes["qa_source"] == "rule" and a1.qa  # not covered: rule pairs
    ref.write_text('{"doc_id": "x", "pairs": []}\n')
    with pytest.raises(PragError, match="line 1"):
        ReferenceAugmenter(str(ref))
    with pytest.raises(PragError, match="needs augment.reference"):
        ReferenceAugmenter(None)
