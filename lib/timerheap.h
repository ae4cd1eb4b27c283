/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The per-kqueue timer heap: a 4-ary min-heap of armed EVFILT_TIMER knotes.
 * Each entry holds the deadline next to the knote pointer, and each knote
 * knows its node (kn->s.timer.heap_index, KQ_THEAP_NONE when not armed), so
 * removal and re-keying are O(log n) without a search and a sift never
 * reads a knote.  Deleted entries may linger, dead (timerheap.c).
 *
 * Private to filter_timer.c and timerheap.c.
 */
#ifndef KQ_TIMERHEAP_H
#define KQ_TIMERHEAP_H

#include "internal.h"

#define KQ_THEAP_NONE	UINT32_MAX
#define KQ_THEAP_BASE	3	/* node i at v[i + 3]: node i's four children
				 * (4i+1..4i+4) share one 64-byte line */

/* Add kn due at `at`; 0 or ENOMEM (heap unchanged). */
int kq_theap_insert(struct kq_timer_heap *h, struct kq_knote *kn, int64_t at);
/* Remove an armed kn; its heap_index becomes KQ_THEAP_NONE.  Its entry is
 * left dead, even at the root (timerheap.c). */
void kq_theap_remove(struct kq_timer_heap *h, struct kq_knote *kn);
/* Remove the root, which is armed (kq_theap_min's knote): the next one
 * comes up at once. */
void kq_theap_pop(struct kq_timer_heap *h);
/* An armed kn is now due at `at`. */
void kq_theap_update(struct kq_timer_heap *h, struct kq_knote *kn, int64_t at);
/* Free the entries (heap must be empty). */
void kq_theap_free(struct kq_timer_heap *h);

/* The armed knote due first (dead entries before it are dropped), or NULL. */
struct kq_knote *kq_theap_min(struct kq_timer_heap *h);

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

/* An armed kn's deadline. */
static inline int64_t
kq_theap_at(const struct kq_timer_heap *h, const struct kq_knote *kn)
{
	return h->v[kn->s.timer.heap_index + KQ_THEAP_BASE].at;
}

#endif /* KQ_TIMERHEAP_H */
