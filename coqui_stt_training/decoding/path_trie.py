"""Coqui's PathTrie, the prefixes of its CTC beam search, as tables that compiled code (numba) works on;
decoder_state.py runs the search over them frame by frame, beam_search.py drives it.

A node per label sequence, its children in the order they were made, each with the log-probabilities of its
frames so far ending in a blank (b) and in its label (nb), for the previous frame and the current one.
Arithmetic is float32 where Coqui's is, with the same libm calls (expf, logf), and "no probability" is
-FLT_MAX, Coqui's NUM_FLT_INF, not -inf: it takes part in comparisons and sums as a number. The state is
three named tuples of arrays, so that compiled functions take few arguments: Trie (the prefixes and their
bookkeeping), Rules (the settings, the scorer's vocabulary FST and its word scores by key) and Work (one
frame's scratch space). Helpers called for every visit of a frame are inlined and take the arrays they touch
one by one: a compiled call that passes arrays, or takes one out of a tuple, pays for its reference count
(the busiest, finding or making a child, is a closure in decoder_state.search_frame, which pays nothing).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

Trie = namedtuple("Trie", "nodes probabilities words counters free families family_free prefixes timesteps")
Rules = namedtuple("Rules", "settings real_settings next_state final lm_scores boosts")
Work = namedtuple("Work", "classes log_probs keys no_ties put_off missing missing_keys")

# Columns of the node table (int32), a row per node, so that a node's fields share a cache line.
PARENT, LABEL, FIRST_CHILD, LAST_CHILD, NEXT_SIBLING, PREVIOUS_SIBLING = 0, 1, 2, 3, 4, 5
FST_STATE, TIMESTEPS, PENDING_TIMESTEPS, NEW_TIMESTEP, EXISTS, CHILD_COUNT, FAMILY, PUT_OFF = 6, 7, 8, 9, 10, 11, 12, 13
NODE_FIELDS = 14
# Columns of the probability table (float32).
B_PREV, NB_PREV, B_CUR, NB_CUR, SCORE = 0, 1, 2, 3, 4
PROBABILITY_FIELDS = 5
# Columns of the word-score table (float64): the language-model score Coqui's get_log_cond_prob gives the
# words (UTF-8 mode: characters) ending at a node, NaN until known; and their hot-word boost.
LM_SCORE, HOT_BOOST = 0, 1
# Columns of the timestep tree (int32): Coqui keeps each prefix's label timesteps as a path in a tree.
TS_PARENT, TS_DATA, TS_NEWEST_CHILD = 0, 1, 2
TIMESTEP_FIELDS = 3
# The counters (int64).
FREE_COUNT, NODES_MADE, TIMESTEP_NODES, PREFIX_COUNT, TIME_STEP, EXPANDING = range(6)
FREE_FAMILIES, FAMILIES_MADE, PUT_OFF_AT, PUT_OFF_COUNT = range(6, 10)
COUNTERS = 10
# A node with more children than this finds them through a row of its own in the family table, [label] ->
# child: a bytes model's node can have 255 children, too many to scan on every visit; most have a few. It
# gives the row back when pruning leaves it half as many.
LARGE_FAMILY = 8
# Settings (int64, then float64).
BEAM, BLANK, SPACE, CUTOFF_TOP_N, HAS_SCORER, UTF8_MODE, HAS_DICTIONARY, FST_START, MAX_ORDER, HAS_HOT_WORDS = range(10)
SETTINGS = 10
CUTOFF_PROB, ALPHA, BETA = 0, 1, 2
# What a frame's search found: it is done; word scores are missing; the tables might overflow.
READY, NEED_WORD_SCORES, NEED_ROOM = 0, 1, 2

NONE = -1
ROOT_LABEL = 0x7FFFFFFF  # Coqui's ROOT_ is -1 in an unsigned int: it compares as the largest label
FLT_MAX = np.float32(3.4028234663852886e38)
FLT_MIN = np.float32(1.1754943508222875e-38)
START_THRESHOLD = 0.999  # Coqui expands no prefix until a frame's blank probability drops below this


@njit(cache=True, inline="always")
def log_sum_exp(x, y):
    if x <= -FLT_MAX:
        return y
    if y <= -FLT_MAX:
        return x
    top = y if x < y else x
    return np.float32(np.log(np.float32(np.exp(np.float32(x - top)) + np.exp(np.float32(y - top))))) + top


@njit(cache=True, inline="always")
def remove(nodes, counters, free, families, family_free, node):
    """Coqui's PathTrie::remove: out of the beam; freed (and its parent too, if that is left with no
    child and is out of the beam) unless it still has children."""
    nodes[node, EXISTS] = 0
    while nodes[node, FIRST_CHILD] == NONE:
        parent = nodes[node, PARENT]
        previous, following = nodes[node, PREVIOUS_SIBLING], nodes[node, NEXT_SIBLING]
        if previous == NONE:
            nodes[parent, FIRST_CHILD] = following
        else:
            nodes[previous, NEXT_SIBLING] = following
        if following == NONE:
            nodes[parent, LAST_CHILD] = previous
        else:
            nodes[following, PREVIOUS_SIBLING] = previous
        nodes[parent, CHILD_COUNT] -= 1
        family = nodes[parent, FAMILY]
        if family != NONE:
            families[family, nodes[node, LABEL]] = NONE
            if nodes[parent, CHILD_COUNT] <= LARGE_FAMILY // 2:  # small again: back to scanning, the row freed
                kid = nodes[parent, FIRST_CHILD]
                while kid != NONE:
                    families[family, nodes[kid, LABEL]] = NONE
                    kid = nodes[kid, NEXT_SIBLING]
                family_free[counters[FREE_FAMILIES]] = family
                counters[FREE_FAMILIES] += 1
                nodes[parent, FAMILY] = NONE
        free[counters[FREE_COUNT]] = node
        counters[FREE_COUNT] += 1
        if nodes[parent, FIRST_CHILD] != NONE or nodes[parent, EXISTS]:
            return
        node = parent


@njit(cache=True)
def iterate_to_vec(trie) -> int:
    """Coqui's PathTrie::iterate_to_vec from the root: every node still in the beam, children before their
    parent, takes the current frame's probabilities as its previous ones, and its timesteps move on.
    Returns the number of such nodes, listed in trie.prefixes."""
    nodes, probabilities, prefixes, timesteps, counters = (
        trie.nodes, trie.probabilities, trie.prefixes, trie.timesteps, trie.counters,
    )  # fmt: skip
    count, node = 0, 0
    # a post-order walk without recursion: down to the first leaf, then on to each next sibling's first leaf
    while nodes[node, FIRST_CHILD] != NONE:
        node = nodes[node, FIRST_CHILD]
    while True:
        if nodes[node, EXISTS]:
            probabilities[node, B_PREV] = probabilities[node, B_CUR]
            probabilities[node, NB_PREV] = probabilities[node, NB_CUR]
            probabilities[node, B_CUR] = probabilities[node, NB_CUR] = -FLT_MAX
            probabilities[node, SCORE] = log_sum_exp(probabilities[node, B_PREV], probabilities[node, NB_PREV])
            pending = nodes[node, PENDING_TIMESTEPS]
            if pending != NONE:
                nodes[node, TIMESTEPS] = timestep_child(timesteps, counters, pending, nodes[node, NEW_TIMESTEP])
            nodes[node, PENDING_TIMESTEPS] = NONE
            prefixes[count] = node
            count += 1
        if node == 0:
            return count
        following = nodes[node, NEXT_SIBLING]
        if following == NONE:
            node = nodes[node, PARENT]
        else:
            node = following
            while nodes[node, FIRST_CHILD] != NONE:
                node = nodes[node, FIRST_CHILD]


@njit(cache=True, inline="always")
def timestep_child(timesteps, counters, parent, data) -> int:
    """The child of a timestep-tree node holding `data`, made if there is none. (Coqui looks through all the
    node's children; only its newest can hold `data`: every frame's data is its own time step, later than any
    before, so a child holding it was made this frame, after all the others.)"""
    newest = timesteps[parent, TS_NEWEST_CHILD]
    if newest != NONE and timesteps[newest, TS_DATA] == data:
        return newest
    made = counters[TIMESTEP_NODES]
    counters[TIMESTEP_NODES] += 1
    timesteps[made, TS_PARENT], timesteps[made, TS_DATA] = parent, data
    timesteps[made, TS_NEWEST_CHILD] = NONE
    timesteps[parent, TS_NEWEST_CHILD] = made
    return made


@njit(cache=True, inline="always")
def codepoint_complete(nodes, node) -> bool:
    """UTF-8 mode's scoring boundary (Coqui's Scorer::is_scoring_boundary): the node's byte ends a
    codepoint. A bytes model's label n is the byte n + 1."""
    if nodes[node, LABEL] == ROOT_LABEL:
        return False
    distance = 1
    while (nodes[node, LABEL] + 1) & 0xC0 == 0x80:  # a continuation byte: its codepoint began earlier
        node = nodes[node, PARENT]
        if nodes[node, LABEL] == ROOT_LABEL:
            return False  # (unreachable in Coqui: its vocabulary allows no such path)
        distance += 1
    first = nodes[node, LABEL] + 1
    if first >> 3 == 0x1E:
        needed = 4
    elif first >> 4 == 0x0E:
        needed = 3
    elif first >> 5 == 0x06:
        needed = 2
    elif first >> 7 == 0:
        needed = 1
    else:
        return False
    return distance == needed


@njit(cache=True, inline="always")
def scored_node(nodes, settings, prefix, made, label) -> int:
    """The node whose last word (or character) an extension of `prefix` by `label` into `made` scores, or
    NONE: a word is scored when a space ends it (the node before the space), a character in UTF-8 mode
    when its last byte arrives."""
    if not settings[HAS_SCORER]:
        return NONE
    if settings[UTF8_MODE]:
        return made if codepoint_complete(nodes, made) else NONE
    return prefix if label == settings[SPACE] else NONE


@njit(cache=True, inline="always")
def ngram_key(nodes, settings, node):
    """A 64-bit FNV-1a hash of the units word_units gives `node` (their labels, a mark after each unit):
    the key of the language-model score it shares with every other node that ends in the same words."""
    h = np.uint64(0xCBF29CE484222325)
    prime = np.uint64(0x100000001B3)
    utf8_mode, space = settings[UTF8_MODE], settings[SPACE]
    units, current = 0, node
    while units < settings[MAX_ORDER] and current != NONE and nodes[current, LABEL] != ROOT_LABEL:
        stop = current
        if utf8_mode:
            while True:
                label = nodes[stop, LABEL]
                h = (h ^ np.uint64(label + 1)) * prime
                if (label + 1) & 0xC0 != 0x80:
                    break
                stop = nodes[stop, PARENT]
                if nodes[stop, LABEL] == ROOT_LABEL:
                    break
        else:
            while nodes[stop, LABEL] != ROOT_LABEL and nodes[stop, LABEL] != space:
                h = (h ^ np.uint64(nodes[stop, LABEL] + 1)) * prime
                stop = nodes[stop, PARENT]
        h = (h ^ np.uint64(0xFFFFFFFFF)) * prime  # the end of a unit
        units += 1
        current = nodes[stop, PARENT]
    return np.int64(h)


@njit(cache=True)
def word_units(nodes, settings, node_list):
    """Coqui's Scorer::make_ngram for each node of `node_list`: the labels of up to the model's order of
    words (UTF-8 mode: codepoints) ending at the node, in reading order, all in one array. A word runs back
    to a space or the root (neither included), a codepoint back to its first byte. Returns (labels,
    unit_starts, node_starts): unit u is labels[unit_starts[u]:unit_starts[u + 1]], and node i's units are
    node_starts[i]..node_starts[i + 1]."""
    utf8_mode, space, max_order = settings[UTF8_MODE], settings[SPACE], settings[MAX_ORDER]
    labels, unit_starts, node_starts = [np.int64(0)][:0], [np.int64(0)], [np.int64(0)]
    backwards = [np.int64(0)][:0]
    for node in node_list:
        ends = [np.int64(0)][:0]  # this node's units, last first: (start, end) pairs in `backwards`
        backwards.clear()
        current = node
        while len(ends) < 2 * max_order and current != NONE and nodes[current, LABEL] != ROOT_LABEL:
            begin = len(backwards)
            stop = current
            if utf8_mode:
                while True:
                    label = nodes[stop, LABEL]
                    backwards.append(label)
                    if (label + 1) & 0xC0 != 0x80:  # the codepoint's first byte
                        break
                    stop = nodes[stop, PARENT]
                    if nodes[stop, LABEL] == ROOT_LABEL:
                        break
            else:
                while nodes[stop, LABEL] != ROOT_LABEL and nodes[stop, LABEL] != space:
                    backwards.append(nodes[stop, LABEL])
                    stop = nodes[stop, PARENT]
            ends.append(np.int64(begin))
            ends.append(np.int64(len(backwards)))
            current = nodes[stop, PARENT]
        for u in range(len(ends) // 2 - 1, -1, -1):  # the first word first, each in reading order
            for k in range(ends[2 * u + 1] - 1, ends[2 * u] - 1, -1):
                labels.append(backwards[k])
            unit_starts.append(np.int64(len(labels)))
        node_starts.append(np.int64(len(unit_starts) - 1))
    return np.array(labels, np.int64), np.array(unit_starts, np.int64), np.array(node_starts, np.int64)


@njit(cache=True)
def distinct_keys(keys):
    """(first, same) for a list of word keys: the position of each distinct key's first occurrence, and for
    each position the index in `first` of its key (numpy's unique(return_index, return_inverse), without its
    Python overhead, which the search pays on every frame that needs word scores)."""
    order = np.argsort(keys, kind="mergesort")  # stable: equal keys stay in their order, the first first
    first, same = np.empty(len(keys), np.int64), np.empty(len(keys), np.int64)
    count = 0
    for j in range(len(order)):
        if j == 0 or keys[order[j]] != keys[order[j - 1]]:
            first[count] = order[j]
            count += 1
        same[order[j]] = count - 1
    return first[:count], same


@njit(cache=True)
def keep_word_scores(words, lm_scores, boosts, node_list, lm_values, boost_values, keys):
    """Python's word scores into the nodes and, under their words' keys (unless `keys` is empty), into the
    tables compiled code reads. (Arrays one by one, not in their tuples: see decoder_state.advance_tables.)"""
    for i in range(len(node_list)):
        words[node_list[i], LM_SCORE] = lm_values[i]
        words[node_list[i], HOT_BOOST] = boost_values[i]
        if len(keys):
            lm_scores[keys[i]] = lm_values[i]
            boosts[keys[i]] = boost_values[i]


@njit(cache=True)
def unfinished_nodes(nodes, settings, prefixes):
    """Which prefixes end in an unscored word (Coqui's decode: word mode, a prefix not ending in a space;
    UTF-8 mode, an unfinished codepoint, or the empty prefix)."""
    out = np.zeros(len(prefixes), np.bool_)
    for i in range(len(prefixes)):
        node = prefixes[i]
        if settings[UTF8_MODE]:
            out[i] = not codepoint_complete(nodes, node)
        else:
            out[i] = nodes[node, PARENT] != NONE and nodes[node, LABEL] != settings[SPACE]
    return out


@njit(cache=True)
def timestep_history(timesteps, node):
    """The timesteps of a prefix's labels, first to last (Coqui's get_history)."""
    count, walker = 0, node
    while walker > 0:
        count += 1
        walker = timesteps[walker, TS_PARENT]
    out = np.zeros(count, np.int32)
    while node > 0:
        count -= 1
        out[count] = timesteps[node, TS_DATA]
        node = timesteps[node, TS_PARENT]
    return out
