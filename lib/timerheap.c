/*
 * Binary min-heap of armed timer knotes.  A heap rather than a timing wheel:
 * kqueue timers have arbitrary nanosecond deadlines and periods, the only
 * question ever asked is "which deadline is next", and a heap answers it
 * with one pointer (8 bytes) per armed timer and O(log n) add/delete.
 */
#include "timerheap.h"

#include <stdlib.h>

#define THEAP_MIN_CAP	16

static inline int64_t
key(const struct kq_timer_heap *h, size_t i)
{
	return h->v[i]->u.timer.expiry_ns;
}

static inline void
place(struct kq_timer_heap *h, size_t i, struct kq_knote *kn)
{
	h->v[i] = kn;
	kn->u.timer.heap_index = i;
}

static void
sift_up(struct kq_timer_heap *h, size_t i)
{
	struct kq_knote *kn = h->v[i];
	int64_t k = kn->u.timer.expiry_ns;

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (key(h, parent) <= k)
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, kn);
}

static void
sift_down(struct kq_timer_heap *h, size_t i)
{
	struct kq_knote *kn = h->v[i];
	int64_t k = kn->u.timer.expiry_ns;

	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= h->n)
			break;
		if (child + 1 < h->n && key(h, child + 1) < key(h, child))
			child++;
		if (k <= key(h, child))
			break;
		place(h, i, h->v[child]);
		i = child;
	}
	place(h, i, kn);
}

int
kq_theap_insert(struct kq_timer_heap *h, struct kq_knote *kn)
{
	if (h->n == h->cap) {
		size_t cap = h->cap != 0 ? h->cap * 2 : THEAP_MIN_CAP;
		struct kq_knote **v = realloc(h->v, cap * sizeof *v);
		if (v == NULL)
			return ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	place(h, h->n++, kn);
	sift_up(h, h->n - 1);
	return 0;
}

void
kq_theap_remove(struct kq_timer_heap *h, struct kq_knote *kn)
{
	size_t i = kn->u.timer.heap_index;
	struct kq_knote *last;

	kn->u.timer.heap_index = KQ_THEAP_NONE;
	last = h->v[--h->n];
	if (i != h->n) {
		place(h, i, last);
		if (i > 0 && key(h, (i - 1) / 2) > last->u.timer.expiry_ns)
			sift_up(h, i);
		else
			sift_down(h, i);
	}
	/* Give memory back after a mass delete; never fails (shrinking). */
	if (h->cap > THEAP_MIN_CAP && h->n < h->cap / 4) {
		struct kq_knote **v = realloc(h->v, (h->cap / 2) * sizeof *v);
		if (v != NULL) {
			h->v = v;
			h->cap /= 2;
		}
	}
}

void
kq_theap_update(struct kq_timer_heap *h, struct kq_knote *kn)
{
	size_t i = kn->u.timer.heap_index;

	if (i > 0 && key(h, (i - 1) / 2) > kn->u.timer.expiry_ns)
		sift_up(h, i);
	else
		sift_down(h, i);
}

void
kq_theap_free(struct kq_timer_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
