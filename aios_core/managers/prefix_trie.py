"""A reference-counted radix trie that stores texts sharing a prefix with that prefix only once.

Each inserted text gets a ``TrieRef`` to the node where its path from the root ends; the text is
the concatenation of the edge labels on that path. Shared prefixes are shared nodes, so the
stored size (the sum of the edge labels' UTF-8 bytes) counts a common prefix once. Releasing a
ref drops the nodes no other text uses and merges chains left behind, so the trie stays minimal
and the stored size never includes text that nobody holds.
"""

from __future__ import annotations


def _nbytes(s: str) -> int:
    # Strings are split only at character boundaries, so byte sizes of pieces add up exactly.
    return len(s.encode("utf-8"))


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class _Node:
    __slots__ = ("children", "label", "parent", "refs", "terminals")

    def __init__(self, label: str, parent: _Node | None):
        self.label = label
        self.parent = parent
        self.children: dict[str, _Node] = {}
        self.terminals = 0  # texts that end exactly here
        self.refs = 0  # texts that end here or below: the node lives while this is > 0


class TrieRef:
    """A handle on one inserted text; give it back with ``PrefixTrie.release``."""

    __slots__ = ("_alive", "_node", "_trie")

    def __init__(self, trie: PrefixTrie, node: _Node):
        self._trie = trie
        self._node = node
        self._alive = True

    @property
    def alive(self) -> bool:
        """Whether the ref has not been released yet."""
        return self._alive


class PrefixTrie:
    """Texts stored through shared prefixes, with exact round trips and byte accounting."""

    def __init__(self) -> None:
        self._root = _Node("", None)
        self._stored = 0
        self._raw = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def stored_bytes(self) -> int:
        """UTF-8 bytes of all edge labels: what the texts cost with shared prefixes counted once."""
        return self._stored

    @property
    def raw_bytes(self) -> int:
        """UTF-8 bytes of all live texts, each counted in full."""
        return self._raw

    @property
    def compression_ratio(self) -> float:
        """``raw_bytes / stored_bytes``; 1.0 when nothing (or only empty text) is stored."""
        return self._raw / self._stored if self._stored else 1.0

    def insert(self, text: str) -> TrieRef:
        """Store ``text`` and return a ref to it (inserting the same text twice shares all of it)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        node = self._root
        rest = text
        while rest:
            child = node.children.get(rest[0])
            if child is None:
                child = _Node(rest, node)
                node.children[rest[0]] = child
                self._stored += _nbytes(rest)
                node = child
                break
            common = _common_prefix_len(rest, child.label)
            if common < len(child.label):
                child = self._split(child, common)
            node = child
            rest = rest[common:]
        node.terminals += 1
        walk: _Node | None = node
        while walk is not None:
            walk.refs += 1
            walk = walk.parent
        self._raw += _nbytes(text)
        self._count += 1
        return TrieRef(self, node)

    def _split(self, node: _Node, at: int) -> _Node:
        """Cut ``node``'s label at ``at``: a new parent takes the head, ``node`` keeps the tail.

        ``node`` stays the same object, so refs that point at it keep spelling the same text.
        """
        parent = node.parent
        assert parent is not None and 0 < at < len(node.label)
        head, tail = node.label[:at], node.label[at:]
        mid = _Node(head, parent)
        mid.refs = node.refs
        parent.children[head[0]] = mid
        mid.children[tail[0]] = node
        node.parent = mid
        node.label = tail
        return mid

    def text(self, ref: TrieRef) -> str:
        """The exact text ``ref`` was inserted with."""
        self._check(ref)
        return self._path_text(ref._node)

    def release(self, ref: TrieRef) -> None:
        """Give ``ref`` back: prefixes no other text uses are freed (releasing twice is an error)."""
        self._check(ref)
        ref._alive = False
        node = ref._node
        node.terminals -= 1
        self._raw -= _nbytes(self._path_text(node))
        self._count -= 1
        walk: _Node | None = node
        while walk is not None:
            walk.refs -= 1
            walk = walk.parent
        # Remove the unused tail of the path, then restore the radix invariant where it ended.
        while node.parent is not None and node.refs == 0:
            parent = node.parent
            del parent.children[node.label[0]]
            self._stored -= _nbytes(node.label)
            node = parent
        self._merge_chain(node)

    def _merge_chain(self, node: _Node) -> None:
        """Fold ``node`` into its only child when nothing ends at it (moves no ref)."""
        if node.parent is None or node.terminals or len(node.children) != 1:
            return
        (child,) = node.children.values()
        # The child absorbs the parent's label: refs only ever point at nodes with terminals,
        # and ``node`` has none, so no ref is invalidated.
        child.label = node.label + child.label
        child.parent = node.parent
        node.parent.children[child.label[0]] = child

    @staticmethod
    def _path_text(node: _Node) -> str:
        parts: list[str] = []
        walk: _Node | None = node
        while walk is not None:
            parts.append(walk.label)
            walk = walk.parent
        return "".join(reversed(parts))

    def node_count(self) -> int:
        """Nodes below the root (tests use it to check that released prefixes are gone)."""
        count = 0
        stack = list(self._root.children.values())
        while stack:
            n = stack.pop()
            count += 1
            stack.extend(n.children.values())
        return count

    def _check(self, ref: TrieRef) -> None:
        if ref._trie is not self:
            raise ValueError("ref belongs to another trie")
        if not ref._alive:
            raise ValueError("ref was already released")
