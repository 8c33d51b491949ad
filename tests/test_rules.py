"""rules.py without a model: the grounding and faithfulness checks, the rule-based QA generator and rewrites,
and the Augmentation/QA types' (de)serialization."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FICTIONAL
from prag.augment import RuleAugmenter
from prag.corpus import Document, load_corpus
from prag.rules import QA, Augmentation, is_faithful_rewrite, is_grounded, rule_qa, rule_rewrite
from prag.rules import on_topic as _on_topic
from prag.text import normalize_answer

DOCS = load_corpus(FICTIONAL / "corpus.jsonl")
BY_ID = {d.id: d for d in DOCS}
PELL = BY_ID["fic-01"]
IDS = [d.id for d in DOCS]


# ---------------------------------------------------------------- is_grounded
@pytest.mark.parametrize("question, answer", [
    ("Where did Ostrander Pell retire to?", "a cottage on Dunlin Point"),
    ("In what year did Pell invent the tidal chime?", "1912"),
    ("When did Ostrander Pell invent the tidal chime?", "1912"),
    ("What was Ostrander Pell's occupation?", "glassblower"),
    ("Which port city was Ostrander Pell from?", "Kessary."),            # punctuation is normalized away
    ("What did Ostrander Pell invent in 1912?", "glass bells that rang whenever the harbour water rose"),  # 8 words
])
def test_is_grounded_accepts(question, answer):
    assert is_grounded(QA(question, answer), PELL)


@pytest.mark.parametrize("question, answer, why", [
    ("What did Ostrander Pell invent?", "the steam engine", "answer not in the document"),
    ("Where did Ostrander Pell retire to?", "a cottage in Paris", "one answer word not in the document"),
    ("What did Ostrander Pell invent, the tidal chime?", "the tidal chime", "answer inside its question"),
    ("What did Ostrander Pell invent in 1912?",
     "a set of glass bells that rang whenever the harbour water rose", "answer longer than 8 words"),
    ("Where did Ostrander Pell retire to", "Dunlin Point", "question without '?'"),
    ("Tell me where Ostrander Pell retired.", "Dunlin Point", "question without '?'"),
    ("Who invented the tidal chime?", "1912", "year answer to a 'who' question"),
    ("How many chimes did Ostrander Pell sell?", "1912", "year answer to a 'how many' question"),
    ("In what year did Ostrander Pell invent the tidal chime?", "Kessary", "non-year answer to a year question"),
    ("What did Ostrander Pell invent?", "", "empty answer"),
    ("What did Ostrander Pell invent?", "the", "answer of articles only"),
    ("What is it?", "Kessary", "question names nothing from the document"),
])
def test_is_grounded_rejects(question, answer, why):
    assert not is_grounded(QA(question, answer), PELL), why


def test_is_grounded_uses_the_title_too():
    doc = Document("x", "Zorblax Tower", "It was built in 1847 by the mason Ilse Varn.")
    assert is_grounded(QA("Who built the Zorblax Tower?", "Ilse Varn"), doc)
    assert is_grounded(QA("What is the name of the tower built by Ilse Varn?", "Zorblax Tower"), doc)


# ---------------------------------------------------------------- rule_qa
@pytest.mark.parametrize("doc_id", IDS)
def test_rule_qa_pairs_are_grounded_substrings(doc_id):
    doc = BY_ID[doc_id]
    pairs = rule_qa(doc, 10)
    assert pairs, f"{doc_id}: no rule pairs at all"
    for qa in pairs:
        assert qa.source == "rule"
        assert qa.question.endswith("?")
        assert is_grounded(qa, doc), qa
        assert qa.answer in doc.text, qa
        assert normalize_answer(qa.answer) not in normalize_answer(qa.question), qa
    answers = [normalize_answer(q.answer) for q in pairs]
    assert len(answers) == len(set(answers)), f"{doc_id}: duplicate answers {answers}"


@pytest.mark.parametrize("limit", [
    0, 1, 2, 3, 6, 100])
def test_rule_qa_respects_limit(limit):
    for doc in DOCS:
        assert len(rule_qa(doc, limit)) <= limit, doc.id


def test_rule_qa_limit_takes_a_prefix():
    for doc in DOCS:
        full = rule_qa(doc, 100)
        assert len(full) >= 6, (doc.id, len(full))   # enough for the default m=6
        for k in (1, 2):
            assert rule_qa(doc, k) == full[:k]


def test_rule_qa_is_deterministic():
    for doc in DOCS:
        assert rule_qa(doc, 6) == rule_qa(doc, 6)
        assert RuleAugmenter().augment(doc, 2, 3) == RuleAugmenter().augment(doc, 2, 3)


def test_rule_qa_known_pair():
    pairs = rule_qa(PELL, 10)
    assert any(q.answer == "1912" and "what year" in q.question for q in pairs)


def test_rule_spans_find_objects_after_prepositions():
    doc = Document("m", "Kestrove Marmot", "The Kestrove Marmot lives on high plateaus. It feeds mainly on lichen "
                   "scraped from rocks. Its burrows are lined with dry moss.")
    answers = [q.answer for q in rule_qa(doc, 10)]
    assert "lichen" in answers and "dry moss" in answers
    assert not any(a.endswith(("ly", "ing")) for a in answers)


def test_generated_question_must_be_on_topic():
    doc = BY_ID["fic-02"]
    sentence = next(s for s in doc.text.split(". ") if "4817" in s)
    assert not _on_topic(QA("How many species of birds live in Wrenmoor Gate?", "4817"), sentence, doc)
    assert _on_topic(QA("What is the population of Wrenmoor Gate according to the census?", "4817"), sentence, doc)


def test_rule_spans_ask_for_what_a_linking_verb_states_not_for_verbs():
    doc = Document("s", "Marrow Finch", "The Marrow Finch was a songbird from the valley of Oster Dell. Its wings are "
                   "russet with pale bars. Its nest was woven from reed and lined with wool. Farmers "
                   "prized eggs for luck.")
    answers = [q.answer for q in rule_qa(doc, 10)]
    assert answers[:2] == ["songbird", "russet"], answers    # each sentence's main statement comes first
    assert "eggs" in answers                                   # object of a past-tense verb
    assert not {"woven", "prized", "lined"} & set(answers), answers
    assert "songbird from" not in answers                      # a trailing function word is trimmed, not kept


# ---------------------------------------------------------------- is_faithful_rewrite
@pytest.mark.parametrize("doc_id", IDS)
def test_faithful_rewrite_accepts_the_document(doc_id):
    doc = BY_ID[doc_id]
    assert is_faithful_rewrite(doc.text, doc)
    assert is_faithful_rewrite(doc.as_text(), doc)
    for i in range(3):
        assert is_faithful_rewrite(rule_rewrite(doc, i), doc)


@pytest.mark.parametrize("text", [
    "The weather in Paris was sunny and warm yesterday afternoon.",
    "",
    "the of and a",                                   # stop words only
    "Ostrander Pell.",                                # far too little of the content
])
def test_faithful_rewrite_rejects(text):
    assert not is_faithful_rewrite(text, PELL)


def test_faithful_rewrite_rejects_rambling():
    assert not is_faithful_rewrite(" ".join([PELL.text] * 4), PELL)


# ---------------------------------------------------------------- Augmentation (de)serialization
def test_augmentation_round_trip():
    aug = Augmentation(["r1", "r2"], [QA("Who?", "Pell", "model"), QA("When?", "1912", "rule")], {"k": 1})
    d = json.loads(json.dumps(aug.to_dict()))
    assert d == {"rewrites": ["r1", "r2"],
                 "qa": [{"question": "Who?", "answer": "Pell", "source": "model"},
                        {"question": "When?", "answer": "1912", "source": "rule"}],
                 "notes": {"k": 1}}
    assert Augmentation.from_dict(d) == aug


def test_augmentation_round_trip_of_rule_output():
    for doc in DOCS:
        aug = RuleAugmenter().augment(doc, 2, 3)
        assert Augmentation.from_dict(json.loads(json.dumps(aug.to_dict()))) == aug


def test_augmentation_from_dict_defaults():
    aug = Augmentation.from_dict({"rewrites": [], "qa": [{"question": "Q?", "answer": "A"}]})
    assert aug.notes == {} and aug.qa == [QA("Q?", "A", "model")]


# ---------------------------------------------------------------- linear time on text without sentence breaks (issue 27)
@settings(max_examples=300, deadline=None)
@given(spans=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 8)), max_size=40))
def test_overlap_index_equals_the_plain_scan(spans):
    """rules._Taken (binary search over disjoint ranges) keeps exactly what the quadratic scan it replaced kept."""
    from prag.rules import _Taken

    taken, plain, kept, kept_plain = _Taken(), [], [], []
    for a, n in spans:
        b = a + n
        if not taken.overlaps(a, b):
            taken.add(a, b)
            kept.append((a, b))
        if not any(x < b and a < y for x, y in plain):
            plain.append((a, b))
            kept_plain.append((a, b))
    assert kept == kept_plain


def test_rules_on_a_long_text_without_sentence_breaks_scale_linearly():
    """Work counted, not timed: the number of overlap checks grows with the text, not with its square."""
    import random

    from prag import rules

    calls = {"n": 0}
    real = rules._Taken.overlaps

    def counted(self, a, b):
        calls["n"] += 1
        return real(self, a, b)

    words = ["alpha", "Beta", "gamma", "Delta", "river", "1923", "mountain", "Harlow", "was", "built", "in", "the"]
    rng = random.Random(0)
    per_char = []
    for n in (20_000, 80_000):
        calls["n"] = 0
        text = " ".join(rng.choice(words) for _ in range(n // 6))
        rules._Taken.overlaps = counted
        try:
            rules.answer_spans(Document("a", "T", text))
        finally:
            rules._Taken.overlaps = real
        per_char.append(calls["n"] / len(text))
    assert per_char[1] < 1.5 * per_char[0], per_char
