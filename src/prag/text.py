"""Answer-text normalization (SQuAD's), shared by augmentation's grounding checks and evaluation's metrics."""
from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NO_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD normalization: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", s.lower().translate(_NO_PUNCT)).split())


def words(text: str) -> list[str]:
    """The normalized words of `text`."""
    return normalize_answer(text).split()
