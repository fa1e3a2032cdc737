"""The orders libstdc++'s std::sort, std::partial_sort and std::nth_element leave equal elements in, compiled
by numba.

Coqui's decoder sorts a frame's classes by probability (std::sort), its beam by score before each frame
(std::partial_sort) and cuts the beam after it (std::nth_element). None of them is stable: where two
classes are equally probable, or two prefixes equally scored, which comes first (or which is kept) is
what GNU's introsort, heap select and introselect happen to do. Prefixes of a score of -FLT_MAX (no
probability at all) tie often, so the cut among them has to be the same as Coqui's for the beam, and the
search that follows, to be the same. These are the library's algorithms (GCC 4.9 and later), with Coqui's
comparison "a sorts before b": a greater first key (a float32), and among equal first keys a smaller second
key (an integer that fits 32 bits). Each sorts an index array in place.

The comparison is packed into one unsigned 64-bit rank per element (a before b exactly when rank a > rank b),
kept beside the indices and moved with them: comparing two loaded integers, in place, rather than calling a
comparison on the key arrays, matters here because numba counts references to every array a call is given,
with atomic instructions that cost more than the comparison itself.
"""

from __future__ import annotations

import numpy as np
from numba import njit

THRESHOLD = 16  # below this introsort leaves a range to the final insertion sort


@njit(cache=True)
def floor_log2(n: int) -> int:
    """std::__lg: the depth limit of introsort and introselect is twice this."""
    k = 0
    while n > 1:
        n >>= 1
        k += 1
    return k


@njit(cache=True)
def ranks(items, last, first_key, second_key):
    """Each of items[:last]'s rank: its first key's float32 bits made to order as integers (-0.0 as 0.0, as
    C++ compares them) in the high half, its second key reversed in the low half."""
    scores = np.empty(last, np.float32)
    for j in range(last):
        scores[j] = np.float32(first_key[items[j]]) + np.float32(0.0)
    bits = scores.view(np.uint32)
    out = np.empty(last, np.uint64)
    sign, low = np.uint64(0x80000000), np.uint64(0xFFFFFFFF)
    for j in range(last):
        b = np.uint64(bits[j])
        b = (~b & low) if b & sign else b | sign
        second = np.uint64((np.int64(second_key[items[j]]) + 0x80000000) & 0xFFFFFFFF)
        out[j] = (b << np.uint64(32)) | (low - second)
    return out


@njit(cache=True)
def _adjust_heap(items, rank, first, hole, length, value, value_rank):
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if rank[first + child] > rank[first + child - 1]:
            child -= 1
        items[first + hole], rank[first + hole] = items[first + child], rank[first + child]
        hole = child
    if (length & 1) == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        items[first + hole], rank[first + hole] = items[first + child - 1], rank[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and rank[first + parent] > value_rank:
        items[first + hole], rank[first + hole] = items[first + parent], rank[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    items[first + hole], rank[first + hole] = value, value_rank


@njit(cache=True)
def _heap_select(items, rank, first, middle, last):
    length = middle - first
    if length >= 2:  # make_heap
        parent = (length - 2) // 2
        while True:
            _adjust_heap(items, rank, first, parent, length, items[first + parent], rank[first + parent])
            if parent == 0:
                break
            parent -= 1
    for i in range(middle, last):
        if rank[i] > rank[first]:  # pop_heap(first, middle, i)
            value, value_rank = items[i], rank[i]
            items[i], rank[i] = items[first], rank[first]
            _adjust_heap(items, rank, first, 0, length, value, value_rank)


@njit(cache=True)
def _sort_heap(items, rank, first, last):
    while last - first > 1:
        last -= 1
        value, value_rank = items[last], rank[last]
        items[last], rank[last] = items[first], rank[first]
        _adjust_heap(items, rank, first, 0, last - first, value, value_rank)


@njit(cache=True)
def _swap(items, rank, i, j):
    items[i], items[j] = items[j], items[i]
    rank[i], rank[j] = rank[j], rank[i]


@njit(cache=True)
def _partition_pivot(items, rank, first, last):
    """GNU's median of three moved to `first`, then the unguarded partition around it."""
    a, b, c = first + 1, first + (last - first) // 2, last - 1
    x, y, z = rank[a], rank[b], rank[c]
    if x > y:
        if y > z:
            pick = b
        elif x > z:
            pick = c
        else:
            pick = a
    elif x > z:
        pick = a
    elif y > z:
        pick = c
    else:
        pick = b
    _swap(items, rank, first, pick)
    pivot = rank[first]
    low, high = first + 1, last
    while True:
        while rank[low] > pivot:
            low += 1
        high -= 1
        while pivot > rank[high]:
            high -= 1
        if not low < high:
            return low
        _swap(items, rank, low, high)
        low += 1


@njit(cache=True)
def _insertion_sort(items, rank, first, last, guarded):
    """GNU's insertion sort of [first, last); `guarded` false: its unguarded form, where an element smaller
    than everything before it is known to stop at `first` or later."""
    if first == last:
        return
    for i in range(first + 1, last):
        value, value_rank = items[i], rank[i]
        if guarded and value_rank > rank[first]:
            items[first + 1 : i + 1] = items[first:i].copy()
            rank[first + 1 : i + 1] = rank[first:i].copy()
            items[first], rank[first] = value, value_rank
            continue
        hole = i
        while value_rank > rank[hole - 1]:
            items[hole], rank[hole] = items[hole - 1], rank[hole - 1]
            hole -= 1
        items[hole], rank[hole] = value, value_rank


@njit(cache=True)
def _introsort_loop(items, rank, first, last, depth):
    # GNU's recursion (right part first, then on with the left) with a stack: the parts are disjoint, so the
    # order they are done in changes nothing
    stack = [(first, last, depth)]
    while stack:
        first, last, depth = stack.pop()
        while last - first > THRESHOLD:
            if depth == 0:
                _heap_select(items, rank, first, last, last)
                _sort_heap(items, rank, first, last)
                break
            depth -= 1
            cut = _partition_pivot(items, rank, first, last)
            stack.append((cut, last, depth))
            last = cut


@njit(cache=True)
def sort(items, last, first_key, second_key):
    """std::sort(items, items + last)."""
    if last == 0:
        return
    rank = ranks(items, last, first_key, second_key)
    _introsort_loop(items, rank, 0, last, floor_log2(last) * 2)
    if last > THRESHOLD:
        _insertion_sort(items, rank, 0, THRESHOLD, True)
        _insertion_sort(items, rank, THRESHOLD - 1, last, False)
    else:
        _insertion_sort(items, rank, 0, last, True)


@njit(cache=True)
def partial_sort(items, middle, last, first_key, second_key):
    """std::partial_sort(items, items + middle, items + last)."""
    rank = ranks(items, last, first_key, second_key)
    _heap_select(items, rank, 0, middle, last)
    _sort_heap(items, rank, 0, middle)


@njit(cache=True)
def nth_element(items, nth, last, first_key, second_key):
    """std::nth_element(items, items + nth, items + last)."""
    if last == 0 or nth == last:
        return
    rank = ranks(items, last, first_key, second_key)
    first, depth = 0, floor_log2(last) * 2
    while last - first > 3:
        if depth == 0:
            _heap_select(items, rank, first, nth + 1, last)
            _swap(items, rank, first, nth)
            return
        depth -= 1
        cut = _partition_pivot(items, rank, first, last)
        if cut <= nth:
            first = cut
        else:
            last = cut
    _insertion_sort(items, rank, first, last, True)
