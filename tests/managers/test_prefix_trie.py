"""PrefixTrie: exact round trips, shared prefixes stored once, and prefixes released when unused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aios.managers.prefix_trie import PrefixTrie


def expected_stored_bytes(texts: list[str]) -> int:
    """A minimal trie stores each distinct non-empty prefix's last character exactly once."""
    prefixes = {t[:i] for t in texts for i in range(1, len(t) + 1)}
    return sum(len(p[-1].encode("utf-8")) for p in prefixes)


def test_inserted_text_comes_back_exactly() -> None:
    trie = PrefixTrie()
    ref = trie.insert("hello world")
    assert trie.text(ref) == "hello world"
    assert trie.stored_bytes == 11
    assert trie.raw_bytes == 11
    assert trie.compression_ratio == 1.0


def test_shared_prefix_is_stored_once() -> None:
    trie = PrefixTrie()
    prefix = "You are a helpful assistant. " * 10  # 290 characters
    a = trie.insert(prefix + "Task one.")
    b = trie.insert(prefix + "Task two!")
    assert trie.text(a) == prefix + "Task one."
    assert trie.text(b) == prefix + "Task two!"
    # Shared: the prefix plus "Task " (5), then "one." and "two!" (4 each).
    assert trie.stored_bytes == len(prefix) + 5 + 4 + 4
    assert trie.raw_bytes == 2 * (len(prefix) + 9)
    assert trie.compression_ratio == pytest.approx(trie.raw_bytes / trie.stored_bytes)
    assert trie.compression_ratio > 1.9


def test_unrelated_texts_do_not_compress() -> None:
    trie = PrefixTrie()
    trie.insert("apples and pears")
    trie.insert("bananas")
    trie.insert("cherries")
    assert trie.compression_ratio == 1.0


def test_identical_texts_share_everything_and_survive_one_release() -> None:
    trie = PrefixTrie()
    a = trie.insert("same text")
    b = trie.insert("same text")
    assert trie.stored_bytes == 9
    assert trie.raw_bytes == 18
    trie.release(a)
    assert trie.text(b) == "same text"
    assert trie.stored_bytes == 9
    trie.release(b)
    assert trie.stored_bytes == 0
    assert trie.node_count() == 0


def test_splitting_an_edge_keeps_existing_refs_valid() -> None:
    trie = PrefixTrie()
    long = trie.insert("abcdefgh")
    short = trie.insert("abc")  # ends in the middle of the existing edge
    other = trie.insert("abcxyz")
    assert [trie.text(r) for r in (long, short, other)] == ["abcdefgh", "abc", "abcxyz"]
    assert trie.stored_bytes == len("abcdefgh") + len("xyz")


def test_release_frees_the_prefix_only_when_nobody_uses_it() -> None:
    trie = PrefixTrie()
    a = trie.insert("shared-prefix/alpha")
    b = trie.insert("shared-prefix/beta")
    trie.release(a)
    assert trie.stored_bytes == len("shared-prefix/beta")
    assert trie.text(b) == "shared-prefix/beta"
    # The chain left by the release is merged back into one node.
    assert trie.node_count() == 1
    trie.release(b)
    assert (trie.stored_bytes, trie.raw_bytes, len(trie), trie.node_count()) == (0, 0, 0, 0)


def test_releasing_a_text_that_is_a_prefix_of_others_keeps_the_others() -> None:
    trie = PrefixTrie()
    short = trie.insert("abc")
    long = trie.insert("abcdef")
    trie.release(short)
    assert trie.text(long) == "abcdef"
    assert trie.stored_bytes == 6
    assert trie.node_count() == 1


def test_bytes_are_counted_in_utf8() -> None:
    trie = PrefixTrie()
    trie.insert("héllo wörld")
    trie.insert("héllo 世界")
    assert trie.stored_bytes == expected_stored_bytes(["héllo wörld", "héllo 世界"])
    assert trie.raw_bytes == len("héllo wörld".encode()) + len("héllo 世界".encode())


def test_double_release_and_foreign_refs_are_errors() -> None:
    trie, other = PrefixTrie(), PrefixTrie()
    ref = trie.insert("x")
    trie.release(ref)
    assert not ref.alive
    with pytest.raises(ValueError, match="already released"):
        trie.release(ref)
    mine = trie.insert("z")
    with pytest.raises(ValueError, match="another trie"):
        other.text(mine)


def test_empty_text_round_trips() -> None:
    trie = PrefixTrie()
    ref = trie.insert("")
    assert trie.text(ref) == ""
    assert trie.stored_bytes == 0
    trie.release(ref)
    assert len(trie) == 0


# Small alphabets make shared prefixes (and edge splits and merges) frequent.
texts_strategy = st.lists(
    st.one_of(
        st.text(alphabet="ab", max_size=8), st.text(alphabet="abé世\n", max_size=12), st.text(max_size=6)
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(texts=texts_strategy, data=st.data())
def test_random_inserts_and_releases_round_trip_and_stay_minimal(
    texts: list[str], data: st.DataObject
) -> None:
    trie = PrefixTrie()
    refs = [trie.insert(t) for t in texts]
    assert [trie.text(r) for r in refs] == texts
    assert trie.stored_bytes == expected_stored_bytes(texts)

    released = data.draw(st.sets(st.integers(min_value=0, max_value=max(len(texts) - 1, 0))))
    for i in sorted(released):
        if i < len(refs):
            trie.release(refs[i])
    live = [t for i, t in enumerate(texts) if i not in released]
    assert [trie.text(r) for i, r in enumerate(refs) if i not in released] == live
    assert trie.stored_bytes == expected_stored_bytes(live)
    assert trie.raw_bytes == sum(len(t.encode("utf-8")) for t in live)
    assert len(trie) == len(live)

    # After releases the trie is exactly as small as one built from the survivors alone.
    fresh = PrefixTrie()
    for t in live:
        fresh.insert(t)
    assert trie.node_count() == fresh.node_count()
