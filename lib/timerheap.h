/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The per-kqueue timer heap: a 4-ary min-heap of armed EVFILT_TIMER knotes.
 * Each entry holds the deadline next to the knote pointer, and each knote
 * knows where its node is (kn->s.timer.heap_index, KQ_THEAP_NONE when not
 * armed), so removal and re-keying are O(log n) without a search and a
 * sift never reads a knote.  Deleted entries may linger, dead (timerheap.c).
 *
 * heap_index is the node or one of its descendants: an entry moving DOWN
 * (or placed) records its node, one moving UP does not, so the node is
 * found by climbing from heap_index to the first ancestor holding kn
 * (kq_theap_index).  Entries move up when the root is popped - a level
 * each, along the whole path - and every one of them told its knote: a
 * write to a cold knote per level, eight per timer fired at 100k timers.
 * The climb costs a few reads of the heap's top levels, which are cached,
 * and only a delete or a re-add of a timer that was passed over does it.
 *
 * Private to filter_timer.c and timerheap.c.
 */
#ifndef KQ_TIMERHEAP_H
#define KQ_TIMERHEAP_H

#include "internal.h"

#define KQ_THEAP_NONE	UINT32_MAX
#define KQ_THEAP_BASE	3	/* node i at v[i + 3]: node i's four children
				 * (4i+1..4i+4) share one 64-byte line */

/* kq_theap_insert when the new leaf moves up, or the array must grow. */
int kq_theap_insert_slow(struct kq_timer_heap *h, struct kq_knote *kn,
    int64_t at);
/* Drop the dead entries and restore the heap order (timerheap.c). */
void kq_theap_compact(struct kq_timer_heap *h);
/* kq_theap_pop with more than the root armed. */
void kq_theap_pop_root(struct kq_timer_heap *h);
/* kq_theap_min when the root is dead. */
struct kq_knote *kq_theap_min_slow(struct kq_timer_heap *h);
/* An armed kn is now due at `at`. */
void kq_theap_update(struct kq_timer_heap *h, struct kq_knote *kn, int64_t at);
/* Free the entries (heap must be empty). */
void kq_theap_free(struct kq_timer_heap *h);


/* No timer armed. */
static inline bool
kq_theap_empty(const struct kq_timer_heap *h)
{
	return h->n == h->ndead;
}

/* A deadline no later than the earliest armed one (the root's, which may
 * be a deleted timer's); the heap is not empty. */
static inline int64_t
kq_theap_min_at(const struct kq_timer_heap *h)
{
	return h->v[KQ_THEAP_BASE].at;
}

/* An armed kn's node (see above); it is recorded again for next time. */
static inline uint32_t
kq_theap_index(const struct kq_timer_heap *h, struct kq_knote *kn)
{
	uint32_t i = kn->s.timer.heap_index;

	if (h->v[i + KQ_THEAP_BASE].kn == kn)
		return i;
	if (h->v[KQ_THEAP_BASE].kn == kn) {
		i = 0;		/* the root, whose line is hot: no climb */
	} else {
		do
			i = (i - 1) / 4;
		while (h->v[i + KQ_THEAP_BASE].kn != kn);
	}
	kn->s.timer.heap_index = i;
	return i;
}

/* An armed kn's deadline. */
static inline int64_t
kq_theap_at(const struct kq_timer_heap *h, struct kq_knote *kn)
{
	return h->v[kq_theap_index(h, kn) + KQ_THEAP_BASE].at;
}

/* Add kn due at `at`; 0 or ENOMEM (heap unchanged).  Inline: every timer
 * add comes here, and mostly it is a leaf that stays where it is. */
static inline int
kq_theap_insert(struct kq_timer_heap *h, struct kq_knote *kn, int64_t at)
{
	uint32_t i = h->n;

	/* room, and no later than its parent: a leaf where it is (timers
	 * added in deadline order, or together at one deadline) */
	if (i < h->cap && (i == 0 || h->v[(i - 1) / 4 + KQ_THEAP_BASE].at <= at)) {
		h->v[i + KQ_THEAP_BASE] = (struct kq_theap_entry){ .at = at,
		    .kn = kn };
		kn->s.timer.heap_index = i;
		h->n = i + 1;
		return 0;
	}
	return kq_theap_insert_slow(h, kn, at);
}

/* Remove an armed kn; its heap_index becomes KQ_THEAP_NONE.  Its entry is
 * left dead, even at the root (timerheap.c).  Inline: every delete of an
 * armed timer comes here. */
static inline void
kq_theap_remove(struct kq_timer_heap *h, struct kq_knote *kn)
{
	uint32_t i = kq_theap_index(h, kn);

	kn->s.timer.heap_index = KQ_THEAP_NONE;
	if (h->n - h->ndead == 1) {		/* the last live one */
		h->n = h->ndead = 0;
	} else {
		h->v[i + KQ_THEAP_BASE].kn = NULL;
		if (++h->ndead > h->n - h->n / 8)
			kq_theap_compact(h);
	}
}

/* The armed knote due first (dead entries before it are dropped), or NULL.
 * Inline: asked once per timer that fires. */
static inline struct kq_knote *
kq_theap_min(struct kq_timer_heap *h)
{
	if (h->n != 0 && h->v[KQ_THEAP_BASE].kn != NULL)
		return h->v[KQ_THEAP_BASE].kn;
	return kq_theap_min_slow(h);
}

/* Remove the root, which is armed (kq_theap_min's knote): the next one
 * comes up at once. */
static inline void
kq_theap_pop(struct kq_timer_heap *h)
{
	h->v[KQ_THEAP_BASE].kn->s.timer.heap_index = KQ_THEAP_NONE;
	if (h->n - h->ndead == 1)
		h->n = h->ndead = 0;
	else
		kq_theap_pop_root(h);
}

#endif /* KQ_TIMERHEAP_H */
