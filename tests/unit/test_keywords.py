"""memory/keywords.py: the light stemmer, query terms and the incremental BM25 index."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.memory.keywords import KeywordIndex, stem, terms


@pytest.mark.parametrize("word", ["hiking", "hikes", "hiked"])
def test_stem_meets_inflections_at_one_root(word: str) -> None:
    assert stem(word) == "hik"


@pytest.mark.parametrize("word,root", [("studies", "study"), ("studied", "study"), ("happily", "happi"), ("cats", "cat"), ("amazingly", "amaz")])
def test_stem_strips_the_first_matching_suffix(word: str, root: str) -> None:
    assert stem(word) == root


@pytest.mark.parametrize("word", ["is", "was", "bus", "red", "sing", ""])
def test_stem_keeps_at_least_three_letters(word: str) -> None:
    assert stem(word) == word


def test_terms_drop_stopwords_single_letters_and_punctuation() -> None:
    assert terms("I'm a Python developer, and I like hiking!") == ["python", "developer", "like", "hik"]


def test_terms_keep_unicode_words() -> None:
    assert terms("Grüße aus Zürich, 東京") == ["grüße", "aus", "zürich", "東京"]


def test_terms_split_on_underscores() -> None:
    assert terms("snake_case") == ["snake", "case"]


def test_terms_of_empty_text_are_empty() -> None:
    assert terms("") == [] and terms("the and of") == []


def index_of(*texts: str) -> KeywordIndex:
    index = KeywordIndex()
    index.add(list(texts))
    return index


def test_an_empty_index_scores_nothing() -> None:
    assert KeywordIndex().scores(["vim"]).shape == (0,)


def test_an_empty_query_scores_every_document_zero() -> None:
    assert index_of("User likes Vim", "User likes Emacs").scores([]).tolist() == [0.0, 0.0]


def test_only_documents_with_a_query_term_score() -> None:
    scores = index_of("User likes Vim", "User lives in Paris", "User plays chess").scores(terms("which editor: vim?"))
    assert scores[0] > 0 and scores[1] == 0 and scores[2] == 0


def test_a_rarer_term_weighs_more() -> None:
    index = index_of("python django", "python flask", "python rust")
    scores = index.scores(["python", "rust"])
    assert int(np.argmax(scores)) == 2


def test_a_shorter_document_with_the_term_ranks_higher() -> None:
    index = index_of("user hikes in the alps every summer with friends and family", "user hikes", "other words entirely")
    scores = index.scores(terms("hiking"))
    assert scores[1] > scores[0] > 0


def test_more_occurrences_rank_higher_at_equal_length() -> None:
    scores = index_of("tea tea coffee", "tea coffee coffee").scores(["tea"])
    assert scores[0] > scores[1]


def test_a_repeated_query_term_counts_once() -> None:
    index = index_of("tea coffee", "coffee milk")
    assert index.scores(["tea", "tea"]).tolist() == index.scores(["tea"]).tolist()


def test_adding_incrementally_scores_like_adding_at_once() -> None:
    texts = ["User likes Vim", "User lives in Paris", "User likes Paris in spring", "Vim Vim Vim"]
    incremental = KeywordIndex()
    for text in texts:
        incremental.add([text])
    query = terms("vim paris spring")
    assert np.allclose(incremental.scores(query), index_of(*texts).scores(query))


def test_scores_are_fresh_after_an_add() -> None:
    index = index_of("tea", "coffee")
    before = index.scores(["tea"])
    index.add(["tea time", "tea again"])
    after = index.scores(["tea"])
    assert len(after) == 4 and after[0] != before[0]  # idf and average length changed


def test_keep_renumbers_and_scores_like_a_fresh_index() -> None:
    texts = ["User likes Vim", "User lives in Paris", "User likes Paris", "Vim forever"]
    index = index_of(*texts)
    index.scores(["vim"])  # warm the cached arrays
    index.keep(np.array([True, False, True, True]))
    query = terms("vim paris")
    assert len(index) == 3
    assert np.allclose(index.scores(query), index_of(texts[0], texts[2], texts[3]).scores(query))


def test_add_after_keep_still_matches_a_fresh_index() -> None:
    index = index_of("a1 tea", "b2 coffee", "c3 tea")
    index.keep(np.array([False, True, True]))
    index.add(["d4 tea coffee"])
    assert np.allclose(index.scores(["tea", "coffee"]), index_of("b2 coffee", "c3 tea", "d4 tea coffee").scores(["tea", "coffee"]))


def test_keeping_nothing_empties_the_index() -> None:
    index = index_of("tea", "coffee")
    index.keep(np.array([False, False]))
    assert len(index) == 0 and index.scores(["tea"]).shape == (0,)


def test_documents_without_terms_do_not_break_scoring() -> None:
    scores = index_of("", "the and", "tea").scores(["tea"])
    assert scores[0] == scores[1] == 0 and scores[2] > 0 and np.isfinite(scores).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="abc de", max_size=12), min_size=1, max_size=12), st.data())
def test_incremental_adds_and_removals_match_a_rebuilt_index(texts: list[str], data: st.DataObject) -> None:
    split = data.draw(st.integers(0, len(texts)))
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(texts), max_size=len(texts))))
    index = KeywordIndex()
    index.add(texts[:split])
    index.add(texts[split:])
    index.keep(mask)
    query = terms("abc de aab")
    rebuilt = index_of(*[t for t, ok in zip(texts, mask) if ok])
    assert np.allclose(index.scores(query), rebuilt.scores(query))
    assert (index.scores(query) >= 0).all()
