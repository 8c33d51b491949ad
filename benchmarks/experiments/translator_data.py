"""Training documents for the parameter translator (issue 24), and exactly which ones.

Real documents: every paragraph of the four shared datasets' corpora that no **test** question (second half of
its questions.jsonl) retrieves with BM25 top-K in its own corpus, and that is no test question's gold document;
duplicates (same text) are kept once, and a text excluded in one dataset is excluded everywhere. Their QA pairs
come from the kb's augmenter at training time; with `--dev-qa` (version 3), a kept paragraph that a dev question is
about gets that natural question instead (qa.jsonl replaces the augmenter's pairs for the documents it names).

Fictional documents: invented entities written here from templates (people, towns, companies, festivals,
buildings, ships, animals, instruments, books) with random names and facts (common encyclopedic relations: some,
such as an occupation, a founding year or a designer, are asked in the evaluation sets too, in generic wordings; no
fact's value is an evaluation answer), each fact in one of two wordings and
in a random order, plus a distractor fact of the same type that no question asks about, and a QA pair per fact in
one of two wordings (version 2; version 1, the first translators' data, had one fixed wording per kind and no
distractor: `git show 1887a36:benchmarks/experiments/translator_data.py`). No name may share a word with the 68 fictional
evaluation documents of benchmarks/data (nor with tests/data), which the translator never sees.

    .venv/bin/python benchmarks/experiments/translator_data.py --out runs/translator-data
writes corpus.jsonl, qa.jsonl ({doc_id, question, answer}) and sources.json (counts, settings, the ids).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from pathlib import Path

from prag.corpus import Document, load_corpus, load_questions, split
from prag.retrieval import BM25Retriever

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ["2wikimultihopqa-comparison", "2wikimultihopqa", "hotpotqa", "popqa"]
HELD_OUT = [ROOT / "benchmarks/data/fictional30", ROOT / "benchmarks/data/fictional-heldout", ROOT / "tests/data/fictional"]

ONSETS = "b br c cl d dr f g gr h k l m n p pr r s st t th tr v w z sk qu".split()
VOWELS = "a e i o u ae ei ou ia".split()
CODAS = "n r l s th nd rk st m x ll ck rn".split()
FIRST = ["Alwin", "Berta", "Casimir", "Delphine", "Edrik", "Faye", "Gideon", "Hesper", "Ingram", "Juno", "Kestrel",
         "Lorcan", "Mirela", "Nico", "Odile", "Perrin", "Quill", "Rowena", "Sorrel", "Tamsin", "Ulric", "Vesna",
         "Wendell", "Yara", "Zeno"]
OCCUPATIONS = ["glassblower", "astronomer", "bookbinder", "shipwright", "botanist", "clockmaker", "violinist",
               "surveyor", "apothecary", "stonemason", "weaver", "architect", "sculptor", "beekeeper", "chemist",
               "lighthouse keeper", "printer", "tanner", "navigator", "composer"]
PRODUCTS = ["copper kettles", "wool blankets", "pocket watches", "glass lenses", "rope", "paper lanterns", "ink",
            "bicycles", "porcelain cups", "sailcloth", "candles", "telescopes", "pianos", "maps", "soap"]
SEASONS = ["spring", "summer", "autumn", "winter"]
FOODS = ["smoked trout", "honey cakes", "barley soup", "plum bread", "roasted chestnuts", "salted herring"]
MATERIALS = ["red granite", "white limestone", "dark basalt", "yellow brick", "grey slate", "pink marble"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + (rng.choice(CODAS) if rng.random() < 0.6 else "")
                   for _ in range(rng.choice([2, 2, 3]))).capitalize()


def _held_out_words() -> set[str]:
    words = set()
    for folder in HELD_OUT:
        for name in ("corpus.jsonl", "questions.jsonl"):
            path = folder / name
            if path.exists():
                words |= {w.lower() for w in re.findall(r"[A-Za-z]+", path.read_text(encoding="utf-8"))}
    return words


COLOURS = ["crimson", "amber", "teal", "ochre", "violet", "slate grey", "saffron", "olive green", "ivory"]
GENRES = ["a mystery novel", "a book of poems", "a travel diary", "a sea adventure", "a cookery book", "a history"]

# Each kind: a title maker and facts. A fact: the value's type (what fills it), two ways to state it (the title as
# {t}, the value as {v}) and two ways to ask for it. A document states its facts in a random order, each in one of
# its wordings, plus a distractor: another value of the same type in a relation not asked about, so that "the year
# in the document" is not the answer.
KINDS = {
    "person": (lambda n, f, r: f"{f()} {n()}", [
        ("occupation", ["{t} was a {v} by trade.", "{t} worked as a {v} for most of a long life."],
         ["What was {t}'s occupation?", "What did {t} do for a living?"]),
        ("town", ["{t} was born in the town of {v}.", "{t} grew up in {v}, the town of {t_first}'s birth."],
         ["In which town was {t} born?", "Where was {t} born?"]),
        ("year", ["{t} was born in {v}.", "The year of {t_first}'s birth was {v}."],
         ["In which year was {t} born?", "When was {t} born?"]),
        ("colour", ["{t_first} always wore {v} coats.", "Coats of {v} cloth were {t_first}'s mark in every portrait."],
         ["What colour was {t}'s coat?", "What colour of coat did {t} wear?"]),
    ], [("year", "{t_first} moved away in {v}."), ("town", "Later in life {t_first} visited {v} each summer.")]),
    "town": (lambda n, f, r: n(), [
        ("year", ["{t} was founded in {v}.", "The first houses of {t} were built in {v}."],
         ["In which year was {t} founded?", "When was {t} founded?"]),
        ("river", ["{t} lies on the banks of the {v}.", "The {v} runs through the middle of {t}."],
         ["On which river does {t} lie?", "Which river flows through {t}?"]),
        ("food", ["{t} is known for its {v}.", "Visitors to {t} come for its {v}."],
         ["What is {t} known for?", "What food is {t} famous for?"]),
        ("person", ["{t} was founded by {v}.", "{v} laid out the first street of {t}."],
         ["Who founded {t}?", "Who was the founder of {t}?"]),
    ], [("year", "A great fire burned half of {t} in {v}."), ("river", "A ferry crosses to the {v} from the town.")]),
    "company": (lambda n, f, r: f"{n()} {r.choice(['Works', 'Brothers', 'Manufactory', 'Trading Company'])}", [
        ("product", ["{t} makes {v}.", "The main trade of {t} is {v}."],
         ["What does {t} make?", "What products is {t} known for?"]),
        ("town", ["{t} is headquartered in the city of {v}.", "The offices of {t} stand in {v}."],
         ["In which city is {t} headquartered?", "Where is {t} based?"]),
        ("person", ["{t} was founded by {v}.", "{v} started {t} in a rented shed."],
         ["Who founded {t}?", "Who started {t}?"]),
        ("number", ["{t} employs {v} people.", "Some {v} workers are employed by {t}."],
         ["How many people does {t} employ?", "How many workers does {t} have?"]),
    ], [("number", "Its catalogue lists {v} designs."), ("town", "It once had a shop in {v}.")]),
    "festival": (lambda n, f, r: f"{n()} Festival", [
        ("season", ["The {t} is held every {v}.", "Each {v} the {t} takes place."],
         ["In which season is the {t} held?", "When in the year does the {t} take place?"]),
        ("town", ["The {t} takes place in the city of {v}.", "{v} hosts the {t}."],
         ["In which city is the {t} held?", "Where does the {t} take place?"]),
        ("year", ["The {t} was first held in {v}.", "The {t} began in {v}."],
         ["When was the {t} first held?", "In which year did the {t} begin?"]),
        ("number", ["At the {t}, {v} lanterns are lit.", "Exactly {v} lanterns are lit during the {t}."],
         ["How many lanterns are lit at the {t}?", "How many lanterns does the {t} light?"]),
    ], [("year", "A second stage was added in {v}."), ("number", "About {v} musicians play there.")]),
    "building": (lambda n, f, r: f"{n()} {r.choice(['Tower', 'Bridge', 'Library', 'Observatory', 'Hall'])}", [
        ("person", ["The {t} was designed by the architect {v}.", "The architect {v} drew the plans of the {t}."],
         ["Who designed the {t}?", "Which architect designed the {t}?"]),
        ("year", ["The {t} was completed in {v}.", "Work on the {t} ended in {v}."],
         ["In which year was the {t} completed?", "When was the {t} finished?"]),
        ("material", ["The {t} is built of {v}.", "The walls of the {t} are {v}."],
         ["What is the {t} built of?", "What material was used for the {t}?"]),
        ("town", ["The {t} stands in {v}.", "The {t} is in the old quarter of {v}."],
         ["In which town is the {t}?", "Where is the {t}?"]),
    ], [("year", "It was repaired in {v}."), ("person", "Its first keeper was {v}.")]),
    "ship": (lambda n, f, r: f"the {n()} {r.choice(['Star', 'Gull', 'Wren', 'Heron'])}", [
        ("person", ["{t} was commanded by {v}.", "{v} was the captain of {t}."],
         ["Who commanded {t}?", "Who was the captain of {t}?"]),
        ("number", ["{t} sailed with a crew of {v}.", "A crew of {v} worked aboard {t}."],
         ["How large was the crew of {t}?", "How many sailors were in the crew of {t}?"]),
        ("town", ["{t} was built in the port of {v}.", "The shipyards of {v} launched {t}."],
         ["Where was {t} built?", "In which port was {t} built?"]),
        ("year", ["{t} was launched in {v}.", "{t} first put to sea in {v}."],
         ["In which year was {t} launched?", "When was {t} launched?"]),
    ], [("year", "It was sold for scrap in {v}."), ("town", "Its last voyage ended at {v}.")]),
    "animal": (lambda n, f, r: f"{n().lower()} {r.choice(['vole', 'newt', 'hare', 'beetle'])}", [
        ("valley", ["The {t} is found in the {v}.", "The {v} is the home of the {t}."],
         ["In which valley is the {t} found?", "Where is the {t} found?"]),
        ("number", ["An adult {t} is {v} millimetres long.", "The {t} grows to {v} millimetres."],
         ["How long is an adult {t} in millimetres?", "To what length does the {t} grow, in millimetres?"]),
        ("colour", ["The {t} has {v} markings.", "Its {v} markings set the {t} apart."],
         ["What colour are the markings of the {t}?", "What colour markings does the {t} have?"]),
        ("person", ["The {t} was first described by {v}.", "{v} was the first to describe the {t}."],
         ["Who first described the {t}?", "Who described the {t} first?"]),
    ], [("valley", "It was once seen in the {v} too."), ("person", "Its call was recorded by {v}.")]),
    "instrument": (lambda n, f, r: f"{n().lower()} {r.choice(['flute', 'drum', 'fiddle', 'horn'])}", [
        ("colour", ["A {t} is traditionally painted {v}.", "Players paint the {t} {v}."],
         ["What colour is a {t} painted?", "What colour are {t}s traditionally?"]),
        ("number", ["A {t} has {v} keys.", "There are {v} keys on a {t}."],
         ["How many keys does a {t} have?", "How many keys are on a {t}?"]),
        ("person", ["The {t} was invented by {v}.", "{v} made the first {t}."],
         ["Who invented the {t}?", "Who made the first {t}?"]),
        ("town", ["The {t} comes from the town of {v}.", "The {t} was first played in {v}."],
         ["Where does the {t} come from?", "In which town was the {t} first played?"]),
    ], [("number", "A good one costs {v} silver coins."), ("person", "{v} played it at court.")]),
    "book": (lambda n, f, r: f"The {n()} {r.choice(['Letters', 'Road', 'Winter', 'Garden'])}", [
        ("genre", ["{t} is {v}.", "Critics call {t} {v}."],
         ["What kind of book is {t}?", "What sort of book is {t}?"]),
        ("person", ["{t} was written by {v}.", "{v} is the author of {t}."],
         ["Who wrote {t}?", "Who is the author of {t}?"]),
        ("year", ["{t} was published in {v}.", "{t} first appeared in {v}."],
         ["When was {t} published?", "In which year was {t} published?"]),
        ("town", ["{t} is set in the town of {v}.", "The story of {t} takes place in {v}."],
         ["Where is {t} set?", "In which town is {t} set?"]),
    ], [("year", "A second edition followed in {v}."), ("person", "It was illustrated by {v}.")]),
}


def _held_out_answers() -> set[str]:
    """The golden answers of the held-out evaluation questions, lowercased: no fixed value list may use one."""
    out = set()
    for folder in HELD_OUT:
        path = folder / "questions.jsonl"
        if path.exists():
            out |= {a.lower() for q in load_questions(path) for a in q.golden_answers}
    return out


# Version 4 (`prose=True`): the translator v5 carried unseen documents of the template style to their questions
# (own / other-document answer loss 1.50 / 4.47) but not the hand-written fictional evaluation documents (3.85 /
# 4.03). Prose documents vary the style: names built like English place and family names, the entity sometimes
# named with its kind ("the town of X"), sentences joined with a pronoun, fact-free sentences between the facts.
# The style turned out not to matter (v5 scores unseen prose documents as it scores its own style, 1.55 / 4.34);
# the answer type did (`open_only`, below).
NAME_HEADS = ["ash", "bram", "cal", "dun", "el", "fern", "gar", "hal", "kel", "lang", "mar", "north", "oak", "pen",
              "raven", "sel", "thorn", "wick", "wyn", "brook", "crag", "ember", "frost", "glen", "heath", "mill",
              "stone", "wold", "birch", "cold", "east", "west", "high", "long", "red", "black", "white", "green",
              "elm", "hazel", "rook", "swan", "wren", "marsh", "moss", "hollin", "tarn", "kirk", "bridge", "far"]
NAME_TAILS = ["by", "ford", "wick", "mere", "holm", "stead", "ton", "ley", "worth", "gate", "haven", "combe",
              "field", "bury", "moor", "wood", "dale", "shaw", "thwaite", "well", "ridge", "brook", "hurst", "cote",
              "ham", "stow", "low", "ing", "den", "more"]
KIND_NOUN = {"town": "the town of {t}", "company": "the firm {t}"}
PRONOUN = {"person": None, "town": "it", "company": "it", "festival": "it", "building": "it", "ship": "she",
           "animal": "it", "instrument": "it", "book": "it"}
FILLERS = ["Records from those years are incomplete.", "Older sources spell the name in several ways.",
           "Little else is known about the early years.", "Local accounts differ on some of the details.",
           "{t_first} is still mentioned in regional guidebooks.", "A short entry in a county register confirms this.",
           "Most of what is known comes from a single surviving letter.", "{t_first} appears in several old travel accounts.",
           "The details were collected by a local historian much later.", "Few pictures from that time survive."]


def _prose_name(rng: random.Random) -> str:
    return (rng.choice(NAME_HEADS) + rng.choice(NAME_TAILS)).capitalize()


def _join(first: str, second: str, title: str, pronoun: str) -> str | None:
    """Two fact sentences as one, the second's leading title replaced by a pronoun; None where that does not read."""
    for lead in (title, title[0].upper() + title[1:]):
        if second.startswith(lead + " "):
            return first.rstrip(".") + _join_word(first) + pronoun + second[len(lead):]
    return None


def _join_word(first: str) -> str:  # by the text, not the rng: data v4 was made so (a draw would shift the stream)
    return ", and " if len(first) % 2 else "; "


# Facts whose value comes from a short fixed list (20 occupations, 9 colours, ...). A translator can answer those by
# recognising which of the few values a document holds; v5's answer loss on unseen documents was 0.29 for them, 1.28
# for numbers and 4.01 (other document's adapter 5.17) for names, and the evaluation answers are mostly names.
# With `open_only` no QA pair asks for one (the document still states it).
CLOSED_VALUES = {"occupation": OCCUPATIONS, "colour": COLOURS, "food": FOODS, "product": PRODUCTS, "season": SEASONS,
                 "material": MATERIALS, "genre": GENRES}
CLOSED_TYPES = set(CLOSED_VALUES)


# Version 5 (`open_values=True`): v6, trained without short-list questions, still answered a founder with a first
# name from FIRST ("Lorcan Grind", "Faye Skirk"). Open values: first names built from parts (hundreds), and the
# short-list types drawn from combinations (a modifier and a noun: hundreds of foods, materials, colours and
# products), occupations from a longer list; only the season stays a list (and is not asked with `open_only`).
FIRST_HEADS = ["Al", "Ber", "Cor", "Dar", "El", "Fen", "Gil", "Hal", "Is", "Jes", "Ken", "Lor", "Mar", "Nel", "Os",
               "Per", "Ros", "Sel", "Tam", "Ul", "Ves", "Wil", "Yor", "Zel", "Ar", "Bri", "Ced", "Dor", "Em", "Fla"]
FIRST_TAILS = ["a", "in", "el", "wyn", "ric", "ette", "an", "ia", "o", "ard", "ine", "us", "ey", "ith", "ora"]
MORE_OCCUPATIONS = ["saddler", "cooper", "wheelwright", "chandler", "glazier", "locksmith", "hatter", "miller",
                    "brewer", "potter", "goldsmith", "mapmaker", "ropemaker", "dyer", "fletcher", "furrier",
                    "engraver", "cartwright", "thatcher", "tailor", "shepherd", "falconer", "herbalist", "harpist",
                    "organist", "surgeon", "geologist", "zoologist", "librarian", "schoolteacher", "bookseller",
                    "toymaker", "jeweller", "boatbuilder", "lacemaker", "candlemaker", "cheesemaker", "farrier",
                    "mason", "painter", "poet", "pharmacist", "midwife", "auctioneer", "innkeeper", "gardener"]
MODIFIERS = {"food": (["smoked", "salted", "roasted", "spiced", "pickled", "baked", "dried", "honeyed", "stewed",
                       "candied", "fried", "buttered"],
                      ["trout", "herring", "plums", "chestnuts", "barley", "mussels", "turnips", "pears", "lamb",
                       "cheese", "dumplings", "apples", "beans", "onions", "cabbage", "quince", "figs", "oysters"]),
             "material": (["red", "grey", "white", "black", "yellow", "pale", "dark", "rough", "polished"],
                          ["granite", "limestone", "basalt", "brick", "slate", "marble", "sandstone", "oak", "pine",
                           "flint", "timber", "clay", "ironstone", "chalk"]),
             "colour": (["pale", "dark", "deep", "bright", "dusty", "soft"],
                        ["red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "grey", "rose",
                         "mustard", "plum", "sea green", "sky blue", "copper", "lilac", "tan", "cream"]),
             "product": (["brass", "wooden", "glass", "leather", "copper", "tin", "woollen", "silk", "iron", "paper"],
                         ["buttons", "bells", "lamps", "boxes", "combs", "gloves", "hinges", "spoons", "kites",
                          "barrels", "whistles", "saddles", "clocks", "toys", "bottles", "brushes"])}


def fictional(n: int, seed: int, prose: bool = False, open_only: bool = False, open_values: bool = False
              ) -> tuple[list[dict], list[dict]]:
    """n invented documents and their QA pairs (one per fact, in one of two wordings); `prose`: version 4's style;
    `open_only`: no QA pair for a fact of CLOSED_TYPES (with `open_values`: only for the season and the genre);
    `open_values`: version 5's values."""
    rng = random.Random(seed)
    pick = random.Random(seed + 1)  # the title makers' suffix choices
    banned = _held_out_words()
    answers = _held_out_answers()
    allowed = lambda xs: [x for x in xs if x.lower() not in answers]  # noqa: E731
    used: set[str] = set()

    def name() -> str:
        while True:
            w = _prose_name(rng) if prose and rng.random() < 0.7 else _word(rng)
            if w.lower() not in banned and w not in used:
                used.add(w)
                return w

    first = [f for f in FIRST if f.lower() not in banned]
    if open_values:
        first = [h + t for h in FIRST_HEADS for t in FIRST_TAILS if (h + t).lower() not in banned]
    person = lambda: f"{rng.choice(first)} {name()}"  # noqa: E731

    def combined(typ: str) -> str:
        mods, nouns = MODIFIERS[typ]
        while (v := f"{rng.choice(mods)} {rng.choice(nouns)}").lower() in answers:
            pass
        return v
    def number(low: int, high: int) -> str:  # not an evaluation answer either
        while (x := str(rng.randint(low, high))) in answers:
            pass
        return x

    values = {"occupation": lambda: rng.choice(allowed(OCCUPATIONS)), "town": name, "year": lambda: number(1500, 1950),
              "colour": lambda: rng.choice(allowed(COLOURS)), "river": lambda: f"{name()} River",
              "food": lambda: rng.choice(allowed(FOODS)), "person": person,
              "product": lambda: rng.choice(allowed(PRODUCTS)), "number": lambda: number(12, 900),
              "season": lambda: rng.choice(allowed(SEASONS)), "material": lambda: rng.choice(allowed(MATERIALS)),
              "valley": lambda: f"{name()} Valley", "genre": lambda: rng.choice(allowed(GENRES))}
    if open_values:
        values.update({typ: (lambda typ=typ: combined(typ)) for typ in MODIFIERS})
        values["occupation"] = lambda: rng.choice(allowed(OCCUPATIONS + MORE_OCCUPATIONS))
    not_asked = {"season", "genre"} if open_values else CLOSED_TYPES
    docs, qa = [], []
    kinds = list(KINDS)
    for i in range(n):
        kind = kinds[i % len(kinds)]
        make_title, facts, distractors = KINDS[kind]
        title = make_title(name, lambda: rng.choice(first), pick)
        t = title[0].upper() + title[1:]
        fill = {"t": title, "t_first": title.split()[0]}
        named = dict(fill, t=KIND_NOUN[kind].format(t=title)) if prose and kind in KIND_NOUN else fill
        sentences, pairs, stated = [], [], []
        for typ, says, asks in facts:
            v = values[typ]()
            stated.append(v)
            sentences.append(rng.choice(says).format(v=v, **(named if prose and rng.random() < 0.3 else fill)))
            q = rng.choice(asks).format(v=v, **(named if prose and rng.random() < 0.4 else fill))
            if not (open_only and typ in not_asked):
                pairs.append((q, v))
        typ, says = rng.choice(distractors)
        v = values[typ]()
        while v in stated:
            v = values[typ]()
        rng.shuffle(sentences)  # the distractor (it may say "It") never first
        sentences.insert(rng.randint(1, len(sentences)), says.format(v=v, **fill))
        if prose:
            pronoun = PRONOUN[kind] or rng.choice(["he", "she"])
            joined = [sentences[0]]
            for x in sentences[1:]:
                both = _join(joined[-1], x, title, pronoun) if rng.random() < 0.4 and "," not in joined[-1] else None
                if both is None:
                    joined.append(x)
                else:
                    joined[-1] = both
            # version 4 put the title's first word ("The" of "The X Letters") where version 5 puts the title
            subject = dict(fill, t_first=t) if open_values else fill
            for filler in rng.sample(FILLERS, rng.choice([0, 1, 1, 2])):
                joined.insert(rng.randint(1, len(joined)), filler.format(**subject))
            sentences = joined
        text = " ".join(x[0].upper() + x[1:] for x in sentences)
        doc_id = f"syn-{i:05d}"
        docs.append({"id": doc_id, "title": t, "text": text})
        qa += [{"doc_id": doc_id, "question": q[0].upper() + q[1:], "answer": a} for q, a in pairs]
    return docs, qa


def real(data_root: Path, top_k: int) -> tuple[list[dict], dict]:
    texts_out: set[str] = set()
    per = {}
    corpora = {}
    for name in DATASETS:
        folder = data_root / name
        docs = load_corpus(folder / "corpus.jsonl")
        test = split(load_questions(folder / "questions.jsonl"), "test")
        bm25 = BM25Retriever(docs)
        out = {d for q in test for d in q.gold_doc_ids}
        out |= {h.doc.id for q in test for h in bm25.retrieve(q.question, top_k)}
        by_id = {d.id: d for d in docs}
        texts_out |= {_key(by_id[i]) for i in out if i in by_id}
        corpora[name] = docs
        per[name] = {"corpus": len(docs), "test_questions": len(test), "excluded": len(out)}
    kept, seen = [], set()
    for name, docs in corpora.items():
        n = 0
        for d in docs:
            k = _key(d)
            if k in texts_out or k in seen:
                continue
            seen.add(k)
            kept.append({"id": f"{name}--{d.id}", "title": d.title, "text": d.text})
            n += 1
        per[name]["kept"] = n
    return kept, per


def answer_in(text: str, answers: list[str]) -> str | None:
    """The first of `answers` that `text` contains as whole words (any case), as the text writes it."""
    for ans in answers:
        m = re.search(r"(?<!\w)" + re.escape(ans.strip()) + r"(?!\w)", text, re.IGNORECASE) if ans.strip() else None
        if m:
            return m.group(0)
    return None


def dev_qa(data_root: Path, kept: list[dict], skip: int = 0) -> tuple[list[dict], dict]:
    """Natural questions about real prose (version 3): each **dev** question (first half of its questions.jsonl) on
    each of its gold paragraphs that was kept (no test question retrieves it) and contains one of its golden answers
    as whole words; that answer, as the paragraph writes it, is the QA pair's answer. Comparison questions are left
    out (which of two entities is the answer needs the other paragraph too). The rule augmenter's QA pairs
    are cloze sentences copied from the paragraph; a translator trained on them and on template documents alone
    barely carried held-out facts to natural questions (docs/results.md, translator v5). The first `skip` dev
    questions of each dataset are left out: `prag tune` scores the first 30, and a translator that trained on them
    makes them useless for tuning its strength (docs/results.md, "v8 at a translated kb's own strength")."""
    kept_ids = {d["id"]: d for d in kept}
    qa, per = [], {}
    for name in DATASETS:
        dev = split(load_questions(data_root / name / "questions.jsonl"), "dev")[skip:]
        n = 0
        for q in dev:
            if "comparison" in q.type:
                continue
            for g in q.gold_doc_ids:
                d = kept_ids.get(f"{name}--{g}")
                if d is None:
                    continue
                ans = answer_in(d["title"] + "\n" + d["text"], q.golden_answers)
                if ans:
                    qa.append({"doc_id": d["id"], "question": q.question, "answer": ans})
                    n += 1
        per[name] = {"dev_questions": len(dev), "dev_qa": n}
    return qa, per


def _key(d: Document) -> str:
    return hashlib.sha256((d.title + "\n" + d.text).encode()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--top-k", type=int, default=10, help="a test question's BM25 hits excluded (eval uses 3)")
    ap.add_argument("--fictional", type=int, default=6000, help="invented documents")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dev-qa", action="store_true", help="version 3: add the dev questions about kept paragraphs")
    ap.add_argument("--dev-qa-skip", type=int, default=0,
                    help="with --dev-qa: leave out each dataset's first N dev questions (30: those `prag tune` scores)")
    ap.add_argument("--prose", action="store_true", help="version 4 (with --dev-qa): invented documents in varied prose")
    ap.add_argument("--open-answers", action="store_true",
                    help="version 4: no QA pair asks for a value from a short fixed list (occupation, colour, ...)")
    ap.add_argument("--open-values", action="store_true",
                    help="version 5: first names, foods, materials, colours, products from hundreds of combinations")
    a = ap.parse_args()
    docs, per = real(a.data, a.top_k)
    syn, qa = fictional(a.fictional, a.seed, prose=a.prose, open_only=a.open_answers, open_values=a.open_values)
    natural, dev_per = dev_qa(a.data, docs, a.dev_qa_skip) if a.dev_qa else ([], {})
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for d in docs + syn:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(a.out / "qa.jsonl", "w", encoding="utf-8") as f:
        for q in natural + qa:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    sources = {"real": per, "real_kept": len(docs), "fictional": len(syn), "fictional_qa": len(qa),
               "top_k_excluded": a.top_k, "seed": a.seed, "generator": 5 if a.open_values else 4 if a.prose else 3 if a.dev_qa else 2,
               "prose": a.prose, "open_answers": a.open_answers, "open_values": a.open_values,
               "dev_qa": dev_per, "dev_qa_skip": a.dev_qa_skip, "ids": [d["id"] for d in docs + syn]}
    (a.out / "sources.json").write_text(json.dumps(sources, indent=1))
    print(json.dumps({k: v for k, v in sources.items() if k != "ids"}, indent=1))


if __name__ == "__main__":
    main()
