/*
 * The per-kqueue timer heap: a binary min-heap of armed EVFILT_TIMER knotes
 * keyed by kn->u.timer.expiry_ns, each knote knowing its slot
 * (kn->u.timer.heap_index, KQ_THEAP_NONE when not armed) so that removal
 * and re-keying are O(log n) without a search.
 *
 * Private to filter_timer.c and timerheap.c (proposed for internal.h).
 */
#ifndef KQ_TIMERHEAP_H
#define KQ_TIMERHEAP_H

#include "internal.h"

#define KQ_THEAP_NONE	SIZE_MAX

/* Add kn (its expiry_ns set); 0 or ENOMEM (heap unchanged). */
int kq_theap_insert(struct kq_timer_heap *h, struct kq_knote *kn);
/* Remove an armed kn; its heap_index becomes KQ_THEAP_NONE. */
void kq_theap_remove(struct kq_timer_heap *h, struct kq_knote *kn);
/* kn's expiry_ns changed while armed: restore the heap order. */
void kq_theap_update(struct kq_timer_heap *h, struct kq_knote *kn);
/* Free the slot array (heap must be empty). */
void kq_theap_free(struct kq_timer_heap *h);

static inline struct kq_knote *
kq_theap_min(const struct kq_timer_heap *h)
{
	return h->n != 0 ? h->v[0] : NULL;
}

#endif /* KQ_TIMERHEAP_H */
