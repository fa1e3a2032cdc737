"""A scorer's vocabulary as Coqui builds it: the words spelled in an alphabet's labels, and the minimal
deterministic acceptor of those spellings, numbered state for state as OpenFST 1.6.7 numbers it, so that the
package is Coqui's byte for byte.

Coqui's Scorer::fill_dictionary adds one chain of states per word to an empty VectorFst (every chain from
state 0, every weight One, a chain's last state final), then runs RmEpsilon, Determinize and Minimize and
converts the result to a ConstFst. What decides the bytes (worked out from OpenFST 1.6.7 and checked
against DeepSpeech 0.7.4's decoder, which embeds the same OpenFST and the same trie code; see
tests/test_scorer_package.py):

* The chains hold no epsilons, so RmEpsilon changes nothing that matters.
* Determinize turns the chains into the prefix trie of the spellings. The start gets id 0; states are
  expanded in id order, and each expansion walks a std::map keyed by label, so new states are numbered
  breadth first, siblings in increasing label order. Distinct prefixes reach disjoint sets of chain states,
  so nothing depends on the order the words were added in (Coqui walks an unordered_set).
* Minimize of an acyclic deterministic acceptor is Revuz's algorithm: states are grouped by height (the
  longest path to a state without arcs) and split by signature (finality, then each arc's label and the
  class of its destination). OpenFST's partition puts each new member at the head of its class's list,
  and states join in increasing id order, so a height's first class lists its states from the largest id
  down. Within a height, the class of its largest id keeps that id's state; every other class is split off
  with its members moved one by one to the head, which leaves its smallest id first. MergeStates keeps each
  class's first state, Connect drops the others keeping the survivors' order, and ArcUniqueMapper sorts
  each state's arcs by label.
* The header's properties are what OpenFST derives from the final machine (vocabulary_properties).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

import numpy as np

from ..formats import const_fst as cf
from ..model.alphabet import AnyAlphabet

# Words Coqui never puts into the vocabulary (scorer.h's START_TOKEN, UNK_TOKEN, END_TOKEN)
SPECIAL_TOKENS = frozenset({b"<s>", b"<unk>", b"</s>"})
EXAMPLES = 5  # words left out that a message quotes

# A word's spelling: FST labels, or in bytes mode the word's bytes themselves (byte b is label b)
Spelling = tuple[int, ...] | bytes
Speller = Callable[[bytes], Spelling | None]  # None: the alphabet cannot spell the word
_EMPTY = np.zeros(0, np.int64)


@dataclass(frozen=True)
class SpelledVocabulary:
    """The spellings Coqui adds to the FST, and the words it skips because the alphabet cannot spell them
    (sorted; <s>, <unk> and </s>, which it skips too, are neither)."""

    spellings: frozenset[Spelling]
    left_out: tuple[bytes, ...]

    @property
    def examples(self) -> tuple[str, ...]:
        """A few of the words left out, as a message quotes them."""
        return tuple(w.decode("utf-8", "backslashreplace") for w in self.left_out[:EXAMPLES])


def spell_vocabulary(words: Iterable[str | bytes], alphabet: AnyAlphabet) -> SpelledVocabulary:
    """Scorer::add_word_to_dictionary over `words`. With a character alphabet (word mode) each code point
    becomes its label + 1 (0 is epsilon), then the space's label + 1 ends the word; a word with a character
    outside the alphabet is left out. With the UTF-8 alphabet (bytes mode) each byte b is label b (label
    index b - 1, plus 1), and no space follows."""
    spellings: set[Spelling] = set()
    left_out: set[bytes] = set()
    spell = _bytes_speller() if alphabet.is_bytes else _word_speller(alphabet)
    for word in words:
        raw = word.encode("utf-8") if isinstance(word, str) else word
        if raw in SPECIAL_TOKENS:
            continue
        spelling = spell(raw)
        if spelling is None:
            left_out.add(raw)
        elif spelling:  # an empty word (only an API caller can give one) would be Coqui's undefined behaviour
            spellings.add(spelling)
    return SpelledVocabulary(frozenset(spellings), tuple(sorted(left_out)))


def _bytes_speller() -> Speller:
    # The UTF-8 alphabet has a label for every byte but NUL; the bytes need not be UTF-8 (Coqui takes them).
    return lambda raw: None if b"\0" in raw else raw


def _word_speller(alphabet: AnyAlphabet) -> Speller:
    # Coqui splits a word where a byte is not a UTF-8 continuation byte and looks each piece up among the
    # labels. Every label is UTF-8 text, and a piece of a word that is not UTF-8 never is, so such a word is
    # always left out; for UTF-8 words the pieces are Python's characters. A label of several code points
    # can never match one piece (model/alphabet.py warns about it), so only one-character labels are kept.
    label_of = {name: index + 1 for index, name in enumerate(alphabet.labels) if len(name) == 1}
    # Coqui's Alphabet::init leaves the space index at -2 when the alphabet has no " " label, and
    # fill_dictionary ends every word with that index + 1: label -1, OpenFST's kNoLabel. Such a vocabulary
    # spells no word a decoder can finish, but it is what Coqui writes, so it is written the same way.
    space = (-2 if alphabet.space_index is None else alphabet.space_index) + 1

    def spell(raw: bytes) -> tuple[int, ...] | None:
        try:
            return (*(label_of[c] for c in raw.decode("utf-8")), space)
        except (UnicodeDecodeError, KeyError):
            return None

    return spell


def vocabulary_fst(spellings: Iterable[Spelling]) -> cf.ConstFst:
    """The minimal acceptor of `spellings`, numbered as OpenFST numbers it (see the module docstring)."""
    words = _sorted_words(spellings)
    if words.count == 0:
        # No word: the VectorFst has no states and no start, and stays so through every step.
        return _const_fst(cf.NO_STATE, np.zeros(0, bool), _EMPTY, _EMPTY, _EMPTY)
    trie = _build_trie(words)
    height = _heights(trie)
    node_class = _classes(trie, height)
    survivor = _survivors(node_class, height)
    # Connect drops the states that were merged away and keeps the survivors in their (breadth-first) order
    class_order = np.argsort(survivor)
    new_id = np.empty_like(class_order)
    new_id[class_order] = np.arange(len(class_order))
    kept = survivor[class_order]
    arc_count = trie.n_children[kept]
    first = np.zeros(len(kept), np.int64)
    np.cumsum(arc_count[:-1], out=first[1:])
    # a state's arcs, sorted by label, are exactly its survivor's block of children
    children = np.repeat(trie.first_child[kept] - first, arc_count) + np.arange(int(arc_count.sum()))
    start = int(new_id[node_class[0]])
    return _const_fst(start, trie.final[kept], arc_count, trie.label[children], new_id[node_class[children]])


def _const_fst(
    start: int, final: np.ndarray, arc_count: np.ndarray, labels: np.ndarray, dests: np.ndarray
) -> cf.ConstFst:
    fst = cf.ConstFst(
        start=start,
        final_weight=np.where(final, cf.TROPICAL_ONE, cf.TROPICAL_ZERO).astype(np.float32),
        arc_count=arc_count.astype(np.int64),
        ilabel=labels.astype(np.int32),
        olabel=labels.astype(np.int32),  # an acceptor: output label = input label
        weight=np.full(len(labels), cf.TROPICAL_ONE, np.float32),
        next_state=dests.astype(np.int32),
        properties=0,
    )
    return dataclasses.replace(fst, properties=vocabulary_properties(fst))


def vocabulary_properties(fst: cf.ConstFst) -> int:
    """The properties word OpenFST writes for a vocabulary FST: ComputeProperties(kCopyProperties) |
    kExpanded. The machine is by construction an acyclic, accessible, co-accessible, deterministic,
    label-sorted, unweighted acceptor (trivially so when empty); what varies is whether it has epsilons
    (label 0), whether it is topologically sorted, and whether it is a single string, each derived as
    OpenFST's test-properties.h derives it."""
    props = cf.EXPANDED | cf.ACYCLIC | cf.INITIAL_ACYCLIC | cf.ACCESSIBLE | cf.CO_ACCESSIBLE | cf.UNWEIGHTED_CYCLES
    props |= cf.ACCEPTOR | cf.I_DETERMINISTIC | cf.O_DETERMINISTIC | cf.UNWEIGHTED
    props |= cf.I_LABEL_SORTED | cf.O_LABEL_SORTED
    sources = fst.arc_states()
    dests = fst.next_state.astype(np.int64)
    if (fst.ilabel == 0).any():
        props |= cf.EPSILONS | cf.I_EPSILONS | cf.O_EPSILONS
    else:
        props |= cf.NO_EPSILONS | cf.NO_I_EPSILONS | cf.NO_O_EPSILONS
    props |= cf.NOT_TOP_SORTED if (dests <= sources).any() else cf.TOP_SORTED
    props |= cf.STRING if _is_string(fst, sources, dests) else cf.NOT_STRING
    return props


def _is_string(fst: cf.ConstFst, sources: np.ndarray, dests: np.ndarray) -> bool:
    # kString: every arc goes from s to s + 1, the start is 0 (or there is none), a state that is not final has
    # exactly one arc, and nothing follows the first final state
    if (dests != sources + 1).any() or fst.start not in (cf.NO_STATE, 0):
        return False
    final = fst.is_final
    if not final.any():
        return bool((fst.arc_count == 1).all())
    first_final = int(np.argmax(final))
    return first_final == fst.num_states - 1 and bool((fst.arc_count[:first_final] == 1).all())


# Determinise and minimise, on the sorted unique spellings as numpy arrays: a 100,000-word vocabulary takes
# a fraction of a second, where a node-by-node Python walk takes many.


@dataclass(frozen=True)
class _Words:
    """Sorted unique spellings, concatenated: word i is flat[starts[i]:starts[i] + lens[i]]."""

    flat: np.ndarray
    starts: np.ndarray
    lens: np.ndarray

    @property
    def count(self) -> int:
        return len(self.lens)


@dataclass(frozen=True)
class _Trie:
    """The prefix trie in Determinize's numbering (breadth first, siblings by increasing label). Node 0 is
    the root; the children of node p are the block first_child[p]:first_child[p] + n_children[p], in label
    order."""

    label: np.ndarray  # the label of the arc into each node (the root's: unused)
    final: np.ndarray
    parent: np.ndarray  # the root's: -1
    depth: np.ndarray
    first_child: np.ndarray
    n_children: np.ndarray

    @property
    def size(self) -> int:
        return len(self.label)


def _sorted_words(spellings: Iterable[Spelling]) -> _Words:
    unique = sorted(set(spellings))
    lens = np.fromiter((len(s) for s in unique), np.int64, count=len(unique))
    if unique and isinstance(unique[0], bytes):
        # bytes-mode labels are the byte values, and bytes sort exactly as their label tuples would
        flat = np.frombuffer(b"".join(cast(list[bytes], unique)), np.uint8).astype(np.int64)
    else:
        flat = np.fromiter(itertools.chain.from_iterable(unique), np.int64, count=int(lens.sum()))
    starts = np.zeros(len(unique), np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    return _Words(flat=flat, starts=starts, lens=lens)


def _common_prefix_lengths(words: _Words) -> np.ndarray:
    """lcp[i]: the length of the common prefix of words i - 1 and i (lcp[0] = 0), one column at a time over
    the pairs still equal: work in proportion to the prefixes, and no padded matrix of the longest word."""
    lcp = np.zeros(words.count, np.int64)
    active = np.arange(1, words.count)
    column = 0
    while active.size:
        active = active[column < np.minimum(words.lens[active - 1], words.lens[active])]
        same = words.flat[words.starts[active - 1] + column] == words.flat[words.starts[active] + column]
        active = active[same]
        column += 1
        lcp[active] = column
    return lcp


def _build_trie(words: _Words) -> _Trie:
    """The trie's nodes numbered as Determinize numbers its subsets. Sorted, word i owns the nodes of its
    prefixes longer than lcp[i]; breadth-first order with siblings by label is the order of (depth, owning
    word), and the parent of a node is the last node one level up whose owner is not after its own."""
    n = words.count
    lcp = _common_prefix_lengths(words)
    new_nodes = words.lens - lcp  # at least 1: no word is a prefix of a smaller one
    owner = np.repeat(np.arange(n, dtype=np.int64), new_nodes)
    first_new = np.zeros(n, np.int64)
    np.cumsum(new_nodes[:-1], out=first_new[1:])
    depth = np.arange(len(owner), dtype=np.int64) - np.repeat(first_new - lcp - 1, new_nodes)
    key = depth * n + owner
    order = np.argsort(key, kind="stable")
    key = np.concatenate([[0], key[order]])  # the root's key, 0, is below every key of depth 1 or more
    owner = np.concatenate([[0], owner[order]])
    depth = np.concatenate([[0], depth[order]])
    size = len(key)
    parent = np.searchsorted(key, key - n, side="right") - 1
    parent[0] = -1
    label = words.flat[words.starts[owner] + depth - 1]
    label[0] = 0
    final = depth == words.lens[owner]
    final[0] = False
    n_children = np.bincount(parent[1:], minlength=size)
    first_child = np.ones(size, np.int64)
    np.cumsum(n_children[:-1], out=first_child[1:])
    first_child[1:] += 1
    return _Trie(label=label, final=final, parent=parent, depth=depth, first_child=first_child, n_children=n_children)


def _heights(trie: _Trie) -> np.ndarray:
    """Each node's longest path to a node without arcs, deepest level first. A level is a block of ids whose
    parents do not decrease, so a parent's children form one run, and maximum.reduceat gives its height."""
    height = np.zeros(trie.size, np.int64)
    deepest = int(trie.depth[-1])
    level_starts = np.searchsorted(trie.depth, np.arange(deepest + 2))
    for d in range(deepest, 0, -1):
        lo, hi = level_starts[d], level_starts[d + 1]
        parents = trie.parent[lo:hi]
        runs = np.flatnonzero(np.concatenate([[True], parents[1:] != parents[:-1]]))
        height[parents[runs]] = np.maximum.reduceat(height[lo:hi] + 1, runs)
    return height


def _classes(trie: _Trie, height: np.ndarray) -> np.ndarray:
    """Revuz's classes: same height, same finality, same arcs (label, class of the destination). Heights go
    upwards, so destinations have their classes; a height's nodes are grouped by arc count and each group's
    signature rows numbered by _row_ids."""
    node_class = np.full(trie.size, -1, np.int64)
    order = np.lexsort((trie.n_children, height))
    group_key = height[order] * (int(trie.n_children.max()) + 1) + trie.n_children[order]
    bounds = np.flatnonzero(np.concatenate([[True], group_key[1:] != group_key[:-1], [True]]))
    next_class = 0
    for lo, hi in itertools.pairwise(bounds):
        nodes = order[lo:hi]
        degree = int(trie.n_children[nodes[0]])
        rows = np.empty((len(nodes), 1 + 2 * degree), np.int64)
        rows[:, 0] = trie.final[nodes]
        children = trie.first_child[nodes][:, None] + np.arange(degree)
        rows[:, 1::2] = trie.label[children]
        rows[:, 2::2] = node_class[children]
        ids, count = _row_ids(rows)
        node_class[nodes] = next_class + ids
        next_class += count
    return node_class


def _row_ids(rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense ids of equal rows, and how many distinct: np.unique(axis=0) without its slow sort of records."""
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    new = np.concatenate([[True], np.any(ordered[1:] != ordered[:-1], axis=1)])
    ids = np.empty(len(rows), np.int64)
    ids[order] = np.cumsum(new) - 1
    return ids, int(new.sum())


def _survivors(node_class: np.ndarray, height: np.ndarray) -> np.ndarray:
    """The node MergeStates keeps of each class: the class holding its height's largest id keeps that id,
    any other class its smallest (see the module docstring)."""
    num_classes = int(node_class.max()) + 1
    ids = np.arange(len(node_class), dtype=np.int64)
    smallest = np.full(num_classes, len(node_class), np.int64)
    np.minimum.at(smallest, node_class, ids)
    largest = np.full(num_classes, -1, np.int64)
    np.maximum.at(largest, node_class, ids)
    top_of_height = np.full(int(height.max()) + 1, -1, np.int64)
    np.maximum.at(top_of_height, height, ids)
    is_top = np.zeros(num_classes, bool)
    is_top[node_class[top_of_height[top_of_height >= 0]]] = True
    return np.where(is_top, largest, smallest)
