"""SQuAD-style answer normalization, EM/F1 scoring (max over golden answers, exact yes/no) and summaries."""
import pytest

from prag.evaluate import normalize_answer, score, summarize


# ---------------------------------------------------------------- normalize_answer
@pytest.mark.parametrize("raw, norm", [
    ("The Cat!", "cat"),
    ("  A  quick,  brown fox. ", "quick brown fox"),
    ("THE END", "end"),
    ("an Apple", "apple"),
    ("Theatre and Anne", "theatre and anne"),    # articles only as whole words
    ("don't stop", "dont stop"),                 # punctuation removed, not replaced by a space
    ("Sallow\tRiver\n", "sallow river"),         # any whitespace collapses to one space
    ("1,912.", "1912"),
    ("", ""),
    ("the a an", ""),
])
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


def test_normalize_is_idempotent():
    for s in ["The Cat!", "Mira Tessaly & Gideon Vorn", "  a  b  "]:
        assert normalize_answer(normalize_answer(s)) == normalize_answer(s)


# ---------------------------------------------------------------- score
def test_exact_match_after_normalization():
    s = score("The Sallow River.", ["sallow river"])
    assert s == {"em": 1.0, "f1": 1.0, "precision": 1.0, "recall": 1.0}


def test_no_overlap_is_zero():
    assert score("Pellinvar", ["Kessary"]) == {"em": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_partial_overlap_by_hand():
    # pred -> "tidal chime of kessary" (4 tokens), gold -> "tidal chime" (2): 2 common
    s = score("the tidal chime of Kessary", ["a tidal chime"])
    assert s["em"] == 0.0
    assert s["precision"] == pytest.approx(2 / 4)
    assert s["recall"] == pytest.approx(2 / 2)
    assert s["f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)  # 2/3


def test_partial_overlap_half():
    s = score("Captain Runa", ["Runa Edevane"])  # 1 common of 2 and 2
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((0.5, 0.5, 0.5))


def test_repeated_tokens_count_once_per_gold_occurrence():
    s = score("cat cat", ["the cat"])  # Counter intersection: min(2, 1) = 1 common
    assert (s["precision"], s["recall"]) == pytest.approx((0.5, 1.0))
    assert s["f1"] == pytest.approx(2 / 3)


def test_max_over_golden_answers():
    assert score("Sallow", ["Sallow River", "Sallow"])["em"] == 1.0
    # "sallow river bank" vs "sallow river": P 2/3, R 1, F1 0.8; vs "river": P 1/3, R 1, F1 0.5
    s = score("the Sallow River bank", ["Sallow River", "river"])
    assert s["em"] == 0.0
    assert s["f1"] == pytest.approx(0.8)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(1.0)
    # order of golden answers does not matter
    assert score("the Sallow River bank", ["river", "Sallow River"]) == s


@pytest.mark.parametrize("pred, golds, em, f1", [
    ("no", ["yes"], 0.0, 0.0),
    ("yes", ["no"], 0.0, 0.0),
    ("yes it is", ["yes"], 0.0, 0.0),      # special answers must match exactly: no partial credit
    ("yes", ["yes it is"], 0.0, 0.0),      # ... in either direction
    ("no answer", ["noanswer"], 0.0, 0.0),
    ("Yes.", ["yes"], 1.0, 1.0),           # after normalization it is the same answer
    ("NO!", ["no"], 1.0, 1.0),
    ("yes", ["no", "yes"], 1.0, 1.0),      # max over golden answers still applies
])
def test_yes_no_must_match_exactly(pred, golds, em, f1):
    s = score(pred, golds)
    assert (s["em"], s["f1"]) == (em, f1)
    if f1 == 0.0:
        assert s["precision"] == s["recall"] == 0.0


def test_empty_prediction_scores_zero():
    assert score("", ["glassblower"]) == {"em": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_em_is_binary_and_f1_bounded():
    for pred, golds in [("a b c", ["b c d"]), ("x", ["x y z"]), ("1912", ["in 1912"])]:
        s = score(pred, golds)
        assert s["em"] in (0.0, 1.0)
        for k in ("f1", "precision", "recall"):
            assert 0.0 <= s[k] <= 1.0


# ---------------------------------------------------------------- summarize
def _row(f1, em, p, r, secs, typ=None, upd=None):
    row = {"f1": f1, "em": em, "precision": p, "recall": r, "seconds": secs}
    if typ is not None:
        row["type"] = typ
    if upd is not None:
        row["update_seconds"] = upd
    return row


def test_summarize_empty():
    assert summarize([]) == {"n": 0}


def test_summarize_means_and_by_type():
    rows = [_row(1.0, 1.0, 1.0, 1.0, 2.0, "bridge", 0.5),
            _row(0.5, 0.0, 0.25, 1.0, 4.0, "comparison", 1.5),
            _row(0.0, 0.0, 0.0, 0.0, 3.0, "bridge")]          # no update_seconds: counts as 0
    s = summarize(rows)
    assert s["n"] == 3
    assert s["f1"] == pytest.approx(0.5)
    assert s["em"] == pytest.approx(1 / 3)
    assert s["precision"] == pytest.approx(1.25 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["sec_per_question"] == pytest.approx(3.0)
    assert s["update_sec_per_question"] == pytest.approx(2 / 3)
    assert set(s["by_type"]) == {"bridge", "comparison"}
    assert s["by_type"]["bridge"]["n"] == 2
    assert s["by_type"]["bridge"]["f1"] == pytest.approx(0.5)
    assert s["by_type"]["comparison"] == {"f1": pytest.approx(0.5), "em": 0.0, "precision": pytest.approx(0.25),
                                          "recall": 1.0, "n": 1}
    assert s["by_type"]["bridge"]["em"] == pytest.approx(0.5) and s["by_type"]["bridge"]["recall"] == pytest.approx(0.5)


def test_summarize_without_types_has_no_by_type():
    s = summarize([_row(1.0, 1.0, 1.0, 1.0, 1.0, ""), _row(0.0, 0.0, 0.0, 0.0, 1.0, "")])
    assert "by_type" not in s
    assert s["n"] == 2 and s["f1"] == pytest.approx(0.5)


def test_summarize_mixed_rows_with_and_without_type_key():
    s = summarize([_row(1.0, 1.0, 1.0, 1.0, 1.0, "bridge"), _row(0.0, 0.0, 0.0, 0.0, 1.0)])
    assert s["by_type"] == {"bridge": {"f1": 1.0, "em": 1.0, "precision": 1.0, "recall": 1.0, "n": 1}}
