/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * 4-ary min-heap of armed timer knotes with cached deadlines (timerheap.h).
 * A heap rather than a timing wheel: kqueue timers have arbitrary
 * nanosecond deadlines and periods, and the only question ever asked is
 * "which deadline is next".  Four children per node halve the depth of a
 * binary heap, and with the deadline kept in the entry the four keys a
 * sift-down step compares are one cache line: measured on 100k timers this
 * is what makes delete and fire cheap (a heap of knote pointers read a cold
 * knote per comparison).
 *
 * A deleted timer only loses its knote, even at the root: the entry stays,
 * dead (kn NULL), until it reaches the root and the root is wanted
 * (kq_theap_min pops it), or the heap is rebuilt without the dead entries
 * in one linear pass: when they are seven eighths of it, or a quarter when
 * the root is wanted and dead (one pass is then cheaper than popping them
 * one by one).  Timers tend to be deleted in the order they were added, so
 * the one deleted is mostly the root: popping it at once sank the last
 * entry through every level (eight at 100k timers, each moving a knote's
 * node) for every delete; dead, it costs a store, and the rebuilds add up
 * to a seventh of an entry moved (and its knote told) per delete - at half
 * they moved one per delete, a cache miss on its knote each.  A timer that
 * fires is popped at once (kq_theap_pop): the next one is wanted then.
 *
 * The array never shrinks (libev's does not either): it is sized by the
 * kqueue's peak number of armed timers, 16 bytes each, and freed with the
 * kqueue.  Shrinking it after a mass delete only to grow it again cost
 * 140 ns per timer in the timers benchmark (page faults on the regrowth).
 */
#include "timerheap.h"

#include <stdlib.h>
#include <string.h>

#define THEAP_MIN_CAP	(64 - KQ_THEAP_BASE)
#define ENTRY(h, i)	((h)->v[(i) + KQ_THEAP_BASE])

static inline void
place(struct kq_timer_heap *h, uint32_t i, struct kq_theap_entry e)
{
	ENTRY(h, i) = e;
	if (e.kn != NULL)
		e.kn->s.timer.heap_index = i;
}

static void
sift_up(struct kq_timer_heap *h, uint32_t i, struct kq_theap_entry e)
{
	while (i > 0) {
		uint32_t parent = (i - 1) / 4;
		if (ENTRY(h, parent).at <= e.at)
			break;
		place(h, i, ENTRY(h, parent));
		i = parent;
	}
	place(h, i, e);
}

static void
sift_down(struct kq_timer_heap *h, uint32_t i, struct kq_theap_entry e)
{
	for (;;) {
		uint32_t first = 4 * i + 1, best, c;
		int64_t at;

		if (first + 3 < h->n) {
			/* all four children, one cache line: no loop */
			uint32_t a = ENTRY(h, first).at <= ENTRY(h, first + 1).at ?
			    first : first + 1;
			uint32_t b = ENTRY(h, first + 2).at <= ENTRY(h, first + 3).at ?
			    first + 2 : first + 3;
			best = ENTRY(h, a).at <= ENTRY(h, b).at ? a : b;
		} else if (first < h->n) {
			best = first;
			for (c = first + 1; c < h->n; c++)
				if (ENTRY(h, c).at < ENTRY(h, best).at)
					best = c;
		} else {
			break;
		}
		at = ENTRY(h, best).at;
		if (e.at <= at)
			break;
		ENTRY(h, i) = ENTRY(h, best);	/* up: not told (timerheap.h) */
		i = best;
	}
	place(h, i, e);
}

static size_t
bytes(uint32_t cap)
{
	return ((size_t)cap + KQ_THEAP_BASE) * sizeof(struct kq_theap_entry);
}

/* A big array is mapped, so page-aligned: each node's four children then
 * share one cache line; a small one (malloc's 16-byte alignment) fits in a
 * few lines anyway. */
static int
resize(struct kq_timer_heap *h, uint32_t cap)
{
	struct kq_theap_entry *v = h->v == NULL ? kq_array_alloc(bytes(cap)) :
	    kq_array_resize(h->v, bytes(h->cap), bytes(cap));

	if (v == NULL)
		return ENOMEM;
	h->v = v;
	h->cap = cap;
	return 0;
}

int
kq_theap_insert_slow(struct kq_timer_heap *h, struct kq_knote *kn, int64_t at)
{
	if (h->n == h->cap) {
		uint32_t cap = h->cap != 0 ? h->cap * 2 + KQ_THEAP_BASE :
		    THEAP_MIN_CAP;
		if (h->cap >= UINT32_MAX / 4 || resize(h, cap) != 0)
			return ENOMEM;
	}
	h->n++;
	sift_up(h, h->n - 1, (struct kq_theap_entry){ .at = at, .kn = kn });
	return 0;
}

/* Drop the dead entries and restore the heap order (Floyd's heapify). */
void
kq_theap_compact(struct kq_timer_heap *h)
{
	uint32_t i, n = 0;

	for (i = 0; i < h->n; i++)
		if (ENTRY(h, i).kn != NULL)
			ENTRY(h, n++) = ENTRY(h, i);
	h->n = n;
	h->ndead = 0;
	for (i = 0; i < n; i++)
		ENTRY(h, i).kn->s.timer.heap_index = i;
	for (i = n > 1 ? (n - 2) / 4 + 1 : 0; i-- > 0; )
		sift_down(h, i, ENTRY(h, i));
}

/*
 * Remove the root.  The last entry, which replaces it, is among the latest
 * deadlines and nearly always belongs back at the bottom: so the hole goes
 * down first, the earliest child moving up into it at each level (three
 * comparisons a level, not four), and the last entry is sifted up from
 * where the hole ends, mostly not at all.  While the four children of the
 * hole are compared, their sixteen children (four cache lines side by
 * side) are fetched: the level below is on its way before it is known
 * which of them is wanted.
 */
static void
pop_root(struct kq_timer_heap *h)
{
	struct kq_theap_entry *v = &ENTRY(h, 0), last = v[--h->n];
	size_t i = 0, n = h->n, full, best, c;

	if (n == 0)
		return;
	/* the last entry lands where the hole ends, and its knote is told
	 * then: a knote nothing else touched lately */
	if (last.kn != NULL)
		__builtin_prefetch(last.kn, 1);
	/* the nodes whose four children all exist (4i + 4 < n) come first;
	 * their loop has no other bound to check */
	full = n > 4 ? (n - 5) / 4 + 1 : 0;
	while (i < full) {
		const struct kq_theap_entry *kids = &v[4 * i + 1];
		const char *below = (const char *)&v[16 * i + 5];
		int64_t a0 = kids[0].at, a1 = kids[1].at;
		int64_t a2 = kids[2].at, a3 = kids[3].at, m01, m23;
		size_t o01, o23;

		__builtin_prefetch(below);
		__builtin_prefetch(below + 64);
		__builtin_prefetch(below + 128);
		__builtin_prefetch(below + 192);
		/* without branches: which child is earliest is anybody's
		 * guess, a mispredicted branch per level */
		o01 = a1 < a0;
		m01 = a1 < a0 ? a1 : a0;
		o23 = 2 + (a3 < a2);
		m23 = a3 < a2 ? a3 : a2;
		best = 4 * i + 1 + o01 + ((o23 - o01) & -(size_t)(m23 < m01));
		/* moving up: its knote is not told (timerheap.h); but the
		 * ones rising to the root and into the level below it fire
		 * next: their knotes are fetched now, ahead of the expiry
		 * that writes them */
		if (i <= 4) {
			/* both its lines: a small knote from a slab spans
			 * two, and the timer's state is at its end */
			uintptr_t kn = (uintptr_t)v[best].kn;

			/* a dead entry's is NULL: address arithmetic on
			 * an integer (a prefetch never faults) */
			__builtin_prefetch((const void *)kn, 1);
			__builtin_prefetch((const void *)(kn +
			    KQ_KNOTE_SMALL - 1), 1);
		}
		v[i] = v[best];
		i = best;
	}
	if (4 * i + 1 < n) {
		best = 4 * i + 1;
		for (c = best + 1; c < n; c++)
			if (v[c].at < v[best].at)
				best = c;
		v[i] = v[best];
		i = best;
	}
	/* mostly it stays there: among the latest deadlines, it came from
	 * the bottom */
	if (i == 0 || v[(i - 1) / 4].at <= last.at)
		place(h, (uint32_t)i, last);
	else
		sift_up(h, (uint32_t)i, last);
}

void
kq_theap_pop_root(struct kq_timer_heap *h)
{
	pop_root(h);
}

struct kq_knote *
kq_theap_min_slow(struct kq_timer_heap *h)
{
	while (h->n != 0 && ENTRY(h, 0).kn == NULL) {
		if (h->ndead > h->n / 4) {
			kq_theap_compact(h);		/* cheaper than a pop each */
			break;
		}
		h->ndead--;
		pop_root(h);
	}
	return h->n != 0 ? ENTRY(h, 0).kn : NULL;
}

void
kq_theap_update(struct kq_timer_heap *h, struct kq_knote *kn, int64_t at)
{
	uint32_t i = kq_theap_index(h, kn);
	struct kq_theap_entry e = { .at = at, .kn = kn };

	if (i > 0 && ENTRY(h, (i - 1) / 4).at > at)
		sift_up(h, i, e);
	else
		sift_down(h, i, e);
}

void
kq_theap_free(struct kq_timer_heap *h)
{
	if (h->v != NULL)
		kq_array_free(h->v, bytes(h->cap));
	h->v = NULL;
	h->n = h->cap = 0;
}
