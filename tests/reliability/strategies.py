"""Hypothesis strategies for hostile input: JSON from the wire, with everything JSON lets through.

JSON decoders hand Python lone surrogates (``"\\ud800"``), huge integers, and (in lenient
decoders) NaN and infinities; these strategies produce all of them.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

#: Text with the characters that break things: controls, NUL, lone surrogates, astral planes.
nasty_text = st.text(
    alphabet=st.one_of(
        st.characters(codec=None, categories=("L", "N", "P", "S", "Z")),
        st.characters(categories=("Cc", "Cs")),
        st.sampled_from(["\x00", "\ud800", "\udfff", "/", ".", "*", "%", "\n", "𝄞"]),
    ),
    max_size=24,
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
)


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any JSON-shaped value (lists and objects nested a few levels)."""
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(nasty_text, children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def json_objects(keys: st.SearchStrategy[str], max_size: int = 5) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects whose keys come from ``keys`` (mix known parameter names with junk)."""
    return st.dictionaries(keys, json_values(), max_size=max_size)
