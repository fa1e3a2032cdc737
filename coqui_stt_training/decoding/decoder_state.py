"""Coqui's DecoderState::next (coqui-ai/STT 1.4's native_client/ctcdecode): its CTC prefix beam search, frame by
frame, compiled by numba, over the prefix trie of path_trie.py.

One frame visits each pruned class (outer loop) and each prefix of the beam (inner loop), as Coqui's does,
with Coqui's arithmetic, then moves the trie on a frame and cuts the beam with libstdc++'s nth_element
(stl_order.py), ties included. So the beam is Coqui's beam, prefix for prefix, and the transcripts,
candidates, confidences and timesteps are Coqui's. Word scores come from Python (KenLM): a frame that needs
one not known yet lists what it needs, undoes its arithmetic and returns; the caller scores the words and runs
the frame again. Which (class, prefix) pairs a frame visits depends only on the previous frame's scores, and
the nodes it makes are found again, so the second run is the one Coqui's decoder made.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .path_trie import (
    ALPHA,
    B_CUR,
    B_PREV,
    BEAM,
    BETA,
    BLANK,
    CHILD_COUNT,
    CUTOFF_PROB,
    CUTOFF_TOP_N,
    EXISTS,
    EXPANDING,
    FAMILIES_MADE,
    FAMILY,
    FIRST_CHILD,
    FLT_MAX,
    FLT_MIN,
    FREE_COUNT,
    FREE_FAMILIES,
    FST_START,
    FST_STATE,
    HAS_DICTIONARY,
    HAS_HOT_WORDS,
    HAS_SCORER,
    HOT_BOOST,
    LABEL,
    LARGE_FAMILY,
    LAST_CHILD,
    LM_SCORE,
    NB_CUR,
    NB_PREV,
    NEED_ROOM,
    NEED_WORD_SCORES,
    NEW_TIMESTEP,
    NEXT_SIBLING,
    NODES_MADE,
    NONE,
    PARENT,
    PENDING_TIMESTEPS,
    PREFIX_COUNT,
    PREVIOUS_SIBLING,
    PROBABILITY_FIELDS,
    PUT_OFF,
    PUT_OFF_AT,
    PUT_OFF_COUNT,
    READY,
    SCORE,
    START_THRESHOLD,
    TIME_STEP,
    TIMESTEP_NODES,
    TIMESTEPS,
    Rules,
    Trie,
    Work,
    iterate_to_vec,
    log_sum_exp,
    ngram_key,
    remove,
    scored_node,
)  # fmt: skip
from .stl_order import nth_element, partial_sort, sort


@njit(cache=True)
def pruned_classes(frame, rules, work) -> int:
    """Coqui's get_pruned_emissions: the classes one frame extends with, in its order, and their float32
    log-probabilities, in work.classes and work.log_probs; returns their number. The classes are sorted
    (std::sort, by probability) only when a cut-off applies, and only --cutoff_prob cuts: --cutoff_top_n
    limits the cut-off_prob sum, never the count alone."""
    classes, keys = work.classes, work.keys
    n = len(frame)
    for i in range(n):
        classes[i] = i
        keys[i] = np.float32(frame[i])
    count = n
    cutoff_prob, top_n = rules.real_settings[CUTOFF_PROB], rules.settings[CUTOFF_TOP_N]
    if cutoff_prob < 1.0 or top_n < count:
        sort(classes, n, keys, work.no_ties)
        if cutoff_prob < 1.0:
            total, count = 0.0, 0
            for i in range(n):
                total += np.float64(keys[classes[i]])
                count += 1
                if total >= cutoff_prob or count >= top_n:
                    break
    for i in range(count):
        work.log_probs[i] = np.log(np.float32(keys[classes[i]] + FLT_MIN))
    return count


@njit(cache=True)
def room_for_a_frame(trie, n_classes) -> bool:
    """Whether a frame fits the tables: a node, and a family row, for each prefix and class, and a timestep
    node for each node."""
    counters, n_prefixes = trie.counters, trie.counters[PREFIX_COUNT]
    new_nodes = n_prefixes * n_classes
    free_nodes = counters[FREE_COUNT] + len(trie.nodes) - counters[NODES_MADE]
    free_families = counters[FREE_FAMILIES] + len(trie.families) - counters[FAMILIES_MADE]
    live = counters[NODES_MADE] - counters[FREE_COUNT]
    free_timesteps = len(trie.timesteps) - counters[TIMESTEP_NODES]
    return free_nodes >= new_nodes and free_families >= n_prefixes and free_timesteps >= live + new_nodes


@njit(cache=True, inline="always")
def add_blank(nodes, probabilities, prefix, log_prob):
    """A blank after the prefix: the paths that end in a blank."""
    log_p = np.float32(log_prob + probabilities[prefix, SCORE])
    if probabilities[prefix, NB_CUR] < log_p:  # (Coqui compares with nb here: its blank comes last)
        nodes[prefix, PENDING_TIMESTEPS] = NONE
    probabilities[prefix, B_CUR] = log_sum_exp(probabilities[prefix, B_CUR], log_p)


@njit(cache=True, inline="always")
def add_repeat(nodes, probabilities, prefix, log_prob):
    """The prefix's last label again, without a blank between: the same prefix."""
    log_p = np.float32(log_prob + probabilities[prefix, NB_PREV])
    if probabilities[prefix, NB_CUR] < log_p:
        nodes[prefix, PENDING_TIMESTEPS] = NONE
    probabilities[prefix, NB_CUR] = log_sum_exp(probabilities[prefix, NB_CUR], log_p)


@njit(cache=True, inline="always")
def add_extension(nodes, probabilities, words, settings, alpha, beta, prefix, made, label, log_prob, time_step):
    """A new label after the prefix, into its child `made`, with the word score it completes."""
    log_p = -FLT_MAX
    if label != nodes[prefix, LABEL]:
        log_p = np.float32(log_prob + probabilities[prefix, SCORE])
    elif probabilities[prefix, B_PREV] > -FLT_MAX:  # the same label again, after a blank
        log_p = np.float32(log_prob + probabilities[prefix, B_PREV])
    scored = scored_node(nodes, settings, prefix, made, label)
    if scored != NONE:
        log_p = np.float32(log_p + np.float32((words[scored, LM_SCORE] + words[scored, HOT_BOOST]) * alpha))
        log_p = np.float32(np.float64(log_p) + beta)
    if probabilities[made, NB_CUR] < log_p:
        nodes[made, PENDING_TIMESTEPS] = nodes[prefix, TIMESTEPS]
        nodes[made, NEW_TIMESTEP] = time_step
    probabilities[made, NB_CUR] = log_sum_exp(probabilities[made, NB_CUR], log_p)


@njit(cache=True)
def search_frame(trie, rules, work, frame):
    """One frame: Coqui's loops over the classes and the beam, with their arithmetic, then finish_frame.
    Returns (READY, 0); or (NEED_ROOM, 0), before anything is done, if the tables might overflow (the caller
    grows them and runs the frame again).

    Word scores come from Python. A visit that needs one not known yet (neither its node's own nor its words'
    in rules.lm_scores and rules.boosts, keyed by ngram_key) is put off, with every later one that adds to the
    same node (they read what it adds); the loops go on, listing the nodes to score (work.missing, their keys
    in work.missing_keys), and (NEED_WORD_SCORES, count) is returned. Once the scores are known, finish_frame
    does the visits put off, in their order: each node gets what it would have got, in the same order."""
    if not room_for_a_frame(trie, len(frame)):
        return NEED_ROOM, 0
    nodes, probabilities, words, counters, prefixes = trie[:4] + (trie.prefixes,)
    free, families, family_free = trie.free, trie.families, trie.family_free
    settings, next_state, final = rules.settings, rules.next_state, rules.final
    lm_scores, boosts = rules.lm_scores, rules.boosts
    alpha, beta = rules.real_settings[ALPHA], rules.real_settings[BETA]
    missing, missing_keys, put_off = work.missing, work.missing_keys, work.put_off
    n_prefixes, blank, beam = counters[PREFIX_COUNT], settings[BLANK], settings[BEAM]
    time_step = counters[TIME_STEP]
    scores = probabilities[:, SCORE]
    min_cutoff = -FLT_MAX
    full_beam = False
    if settings[HAS_SCORER]:
        count = min(n_prefixes, beam)
        partial_sort(prefixes, count, n_prefixes, scores, nodes[:, LABEL])
        cutoff = np.float64(scores[prefixes[count - 1]]) + np.log(frame[blank]) - max(0.0, rules.real_settings[BETA])
        min_cutoff = np.float32(cutoff)
        full_beam = count == beam

    def child(node, label):
        """Coqui's PathTrie::get_path_trie: the node's child for `label`, made if the vocabulary allows it
        (NONE if not); a child that was pruned from the beam but kept for its own children starts afresh.
        (A closure over the frame's tables: numba inlines it without counting references to them, which a
        function taking ten arrays pays for on every visit, with atomic instructions: half the search's time.)"""
        state = 0
        if settings[HAS_DICTIONARY]:
            target = next_state[nodes[node, FST_STATE], label]
            if target < 0:
                # (Coqui looks for an existing child first; there is none: children are only made where the
                # vocabulary allows them. Coqui here also resets the node's own state if it is final; no state a
                # node holds ever is.)
                return NONE
            # a whole word (with its space, in word mode) is final: the next word starts afresh
            state = settings[FST_START] if final[target] else target
        family = nodes[node, FAMILY]
        if family != NONE:
            found = families[family, label]
        else:
            found = nodes[node, FIRST_CHILD]
            while found != NONE and nodes[found, LABEL] != label:
                found = nodes[found, NEXT_SIBLING]
        if found != NONE:
            if not nodes[found, EXISTS]:
                nodes[found, EXISTS] = 1
                for column in (B_PREV, NB_PREV, B_CUR, NB_CUR):
                    probabilities[found, column] = -FLT_MAX
            return found
        if counters[FREE_COUNT] > 0:
            counters[FREE_COUNT] -= 1
            made = free[counters[FREE_COUNT]]
        else:
            made = counters[NODES_MADE]
            counters[NODES_MADE] += 1
        nodes[made, PARENT], nodes[made, LABEL] = node, label
        nodes[made, FIRST_CHILD] = nodes[made, LAST_CHILD] = nodes[made, NEXT_SIBLING] = NONE
        last = nodes[node, LAST_CHILD]
        nodes[made, PREVIOUS_SIBLING] = last
        if last == NONE:
            nodes[node, FIRST_CHILD] = made
        else:
            nodes[last, NEXT_SIBLING] = made
        nodes[node, LAST_CHILD] = made
        nodes[made, FST_STATE] = state
        nodes[made, TIMESTEPS] = nodes[made, PENDING_TIMESTEPS] = NONE
        nodes[made, NEW_TIMESTEP] = 0
        nodes[made, EXISTS] = 1
        nodes[made, CHILD_COUNT] = 0
        nodes[made, FAMILY] = NONE
        nodes[made, PUT_OFF] = 0
        for column in range(PROBABILITY_FIELDS):
            probabilities[made, column] = -FLT_MAX
        words[made, LM_SCORE] = np.nan
        words[made, HOT_BOOST] = 0.0
        nodes[node, CHILD_COUNT] += 1
        if family != NONE:
            families[family, label] = made
        elif nodes[node, CHILD_COUNT] > LARGE_FAMILY:
            if counters[FREE_FAMILIES] > 0:
                counters[FREE_FAMILIES] -= 1
                family = family_free[counters[FREE_FAMILIES]]
            else:
                family = counters[FAMILIES_MADE]
                counters[FAMILIES_MADE] += 1
            nodes[node, FAMILY] = family
            kid = nodes[node, FIRST_CHILD]
            while kid != NONE:
                families[family, nodes[kid, LABEL]] = kid
                kid = nodes[kid, NEXT_SIBLING]
        return made

    n_missing, n_put_off = 0, 0
    for k in range(pruned_classes(frame, rules, work)):
        label, log_prob = work.classes[k], work.log_probs[k]
        for i in range(min(n_prefixes, beam)):
            prefix = prefixes[i]
            if full_beam and np.float32(log_prob + scores[prefix]) < min_cutoff:
                break  # (the beam is sorted: every later prefix is below the cut-off too)
            if scores[prefix] == -FLT_MAX:
                continue
            if label == blank or label == nodes[prefix, LABEL]:  # to the prefix itself
                if nodes[prefix, PUT_OFF]:
                    put_off[n_put_off, 0], put_off[n_put_off, 1], put_off[n_put_off, 2] = prefix, k, NONE
                    n_put_off += 1
                elif label == blank:
                    add_blank(nodes, probabilities, prefix, log_prob)
                else:
                    add_repeat(nodes, probabilities, prefix, log_prob)
                if label == blank:
                    continue
            made = child(prefix, label)
            if made == NONE:
                continue
            scored = scored_node(nodes, settings, prefix, made, label)
            if scored != NONE and np.isnan(words[scored, LM_SCORE]):
                key = ngram_key(nodes, settings, scored)
                if key in lm_scores and (not settings[HAS_HOT_WORDS] or key in boosts):
                    words[scored, LM_SCORE] = lm_scores[key]
                    words[scored, HOT_BOOST] = boosts[key] if settings[HAS_HOT_WORDS] else 0.0
                else:
                    words[scored, LM_SCORE] = np.inf  # listed once; unknown again below
                    missing[n_missing], missing_keys[n_missing] = scored, key
                    n_missing += 1
            if nodes[made, PUT_OFF] or (scored != NONE and np.isinf(words[scored, LM_SCORE])):
                nodes[made, PUT_OFF] = 1
                put_off[n_put_off, 0], put_off[n_put_off, 1], put_off[n_put_off, 2] = prefix, k, made
                n_put_off += 1
            else:
                add_extension(
                    nodes, probabilities, words, settings, alpha, beta, prefix, made, label, log_prob, time_step
                )
    counters[PUT_OFF_COUNT] = n_put_off
    if n_missing:
        for j in range(n_missing):
            words[missing[j], LM_SCORE] = np.nan
        return NEED_WORD_SCORES, n_missing
    finish_frame(trie, rules, work)
    return READY, 0


@njit(cache=True)
def finish_frame(trie, rules, work):
    """The visits the frame put off, in their order; then the trie moves on a frame (iterate_to_vec) and the
    beam is cut to --beam_width prefixes (nth_element)."""
    nodes, probabilities, words, counters, prefixes = trie[:4] + (trie.prefixes,)
    settings, alpha, beta, put_off = rules.settings, rules.real_settings[ALPHA], rules.real_settings[BETA], work.put_off
    blank, time_step = settings[BLANK], counters[TIME_STEP]
    for j in range(counters[PUT_OFF_COUNT]):
        prefix, k, made = put_off[j, 0], put_off[j, 1], put_off[j, 2]
        label, log_prob = work.classes[k], work.log_probs[k]
        if made != NONE:
            add_extension(nodes, probabilities, words, settings, alpha, beta, prefix, made, label, log_prob, time_step)
            nodes[made, PUT_OFF] = 0
        elif label == blank:
            add_blank(nodes, probabilities, prefix, log_prob)
        else:
            add_repeat(nodes, probabilities, prefix, log_prob)
    counters[PUT_OFF_COUNT] = 0
    n_prefixes = iterate_to_vec(trie)
    beam = settings[BEAM]
    if n_prefixes > beam:
        nth_element(prefixes, beam, n_prefixes, probabilities[:, SCORE], nodes[:, LABEL])
        for i in range(beam, n_prefixes):
            remove(nodes, counters, trie.free, trie.families, trie.family_free, prefixes[i])
        n_prefixes = beam
    counters[PREFIX_COUNT] = n_prefixes


@njit(cache=True)
def advance(trie, rules, work, probs, start):
    """Frames `start`.. of `probs` [frames, classes] (float64), until done or until the caller must act:
    returns (READY, frames, 0) when all are searched, else (status, the frame to resume at, count) with
    search_frame's status."""
    counters, blank = trie.counters, rules.settings[BLANK]
    for t in range(start, len(probs)):
        frame = probs[t]
        # Coqui waits for the first frame whose blank is below 0.999 before it expands any prefix, so that
        # leading silence does not smear the first labels' timesteps
        if frame[blank] < START_THRESHOLD:
            counters[EXPANDING] = 1
        if not counters[EXPANDING]:
            counters[TIME_STEP] += 1
            continue
        if counters[PUT_OFF_AT] == counters[TIME_STEP]:  # its word scores came: the frame's put-off visits
            finish_frame(trie, rules, work)
            counters[PUT_OFF_AT] = -1
        else:
            status, count = search_frame(trie, rules, work, frame)
            if status == NEED_WORD_SCORES:
                counters[PUT_OFF_AT] = counters[TIME_STEP]
            if status != READY:
                return status, t, count
        counters[TIME_STEP] += 1
    return READY, len(probs), 0


@njit(cache=True)
def advance_tables(
    nodes, probabilities, words, counters, free, families, family_free, prefixes, timesteps,
    settings, real_settings, next_state, final, lm_scores, boosts,
    classes, log_probs, keys, no_ties, put_off, missing, missing_keys,
    probs, start,
):  # fmt: skip
    """advance() for a caller in Python, which passes the tuples' arrays one by one: numba types a tuple of
    arrays in Python, array by array, on every call (about a millisecond for these), and a plain array in C."""
    trie = Trie(nodes, probabilities, words, counters, free, families, family_free, prefixes, timesteps)
    rules = Rules(settings, real_settings, next_state, final, lm_scores, boosts)
    work = Work(classes, log_probs, keys, no_ties, put_off, missing, missing_keys)
    return advance(trie, rules, work, probs, start)
