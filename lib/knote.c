/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The knote: lookup, memory, activation queue, and the ONE release function
 * that every death goes through, so EV_FREEWATCH cannot miss a path.
 *
 * Lookup: a knote whose ident is an fd hangs on that fd's node
 * (kq->fds[fd], like FreeBSD's kq_knlist) and is found in O(1).  The others
 * (timers, signals, pids, user events) are in a chained hash keyed (filter,
 * ident), at most two knotes per bucket on average; like the timer heap it
 * never shrinks (4 bytes per knote at the kqueue's peak, freed with it).  It replaced a
 * red-black tree: a tree node costs 32 bytes a knote and an insert walks
 * ~17 cold knotes at 100k timers; a bucket costs 4 bytes a knote and one
 * miss.
 *
 * Memory: knotes come from per-kqueue slabs, one for small knotes and one
 * for whole ones (internal.h, KNOTE SIZES): 64 KiB blocks carved into
 * entries of exactly the knote's size, a freed entry reused first.  A block
 * whose last entry is freed stays mapped, to be filled again from its start,
 * until the kqueue is freed: like the timer heap and the hash the slabs are
 * sized by the kqueue's peak.  Giving blocks back as they emptied (beyond
 * 256 kept) cost a TLB flush per block on delete and a page fault per page
 * on the next add: 60% of the time of deleting and re-adding a million
 * timers.  malloc would round a 72-byte knote up to an 80-byte chunk; the
 * slab is what keeps a timer under 96 bytes with its heap entry and bucket.
 * Built with AddressSanitizer, every knote is its own malloc instead, so
 * overruns of a small knote are caught.
 */
#include "internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#define KQ_SLAB_MALLOC	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KQ_SLAB_MALLOC	1
#endif
#endif

/* ----------------------------------------------------------------- slabs */

#define SLAB_BLOCK	(64 * 1024)		/* size and alignment */

struct kq_slab_block {
	TAILQ_ENTRY(kq_slab_block) link;	/* slab->room while it has room */
	void *free;				/* freed entries, chained */
	void *map;				/* the mapping it is in */
	uint32_t fresh;				/* offset of the never-used rest */
	uint32_t used;
	bool in_room;
};
#define SLAB_FIRST	((sizeof(struct kq_slab_block) + 63) & ~(size_t)63)

/* Blocks are mapped, aligned to their size, not taken from malloc: an
 * aligned malloc leaves a block-sized hole beside every block.  The mapping
 * is twice the size and kept whole (trimming it is a TLB flush per block;
 * the unused half is never touched, so costs no memory). */
static struct kq_slab_block *
block_map(void)
{
	char *p = mmap(NULL, 2 * SLAB_BLOCK, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct kq_slab_block *b;

	if (p == MAP_FAILED)
		return NULL;
	b = (struct kq_slab_block *)(((uintptr_t)p + SLAB_BLOCK - 1) &
	    ~(uintptr_t)(SLAB_BLOCK - 1));
	*b = (struct kq_slab_block){ .map = p, .fresh = SLAB_FIRST };
	return b;
}

static void
block_unmap(struct kq_slab_block *b)
{
	munmap(b->map, 2 * SLAB_BLOCK);
}

static void
slab_init(struct kq_slab *s, size_t size)
{
	TAILQ_INIT(&s->room);
	s->size = (size + 7) & ~(size_t)7;
}

static inline __attribute__((always_inline)) void *
slab_alloc(struct kq_slab *s)
{
	struct kq_slab_block *b = TAILQ_FIRST(&s->room);
	void *p;

#ifdef KQ_SLAB_MALLOC
	return malloc(s->size);
#endif
	if (b == NULL) {
		if ((b = block_map()) == NULL)
			return NULL;
		b->in_room = true;
		TAILQ_INSERT_HEAD(&s->room, b, link);
		s->nblocks++;
	}
	if (b->free != NULL) {
		p = b->free;
		b->free = *(void **)p;
		if (b->free != NULL)
			__builtin_prefetch(b->free, 1);	/* the next alloc's */
	} else {
		p = (char *)b + b->fresh;
		b->fresh += s->size;
		/* the block is filled in order: its lines a few knotes on,
		 * probably cold, are written soon */
		if (b->fresh + 4 * 64 < SLAB_BLOCK)
			__builtin_prefetch((char *)b + b->fresh + 4 * 64, 1);
	}
	b->used++;
	if (b->free == NULL && b->fresh + s->size > SLAB_BLOCK) {
		TAILQ_REMOVE(&s->room, b, link);
		b->in_room = false;
	}
	return p;
}

static inline __attribute__((always_inline)) void
slab_free(struct kq_slab *s, void *p)
{
	struct kq_slab_block *b = (struct kq_slab_block *)
	    ((uintptr_t)p & ~(uintptr_t)(SLAB_BLOCK - 1));

#ifdef KQ_SLAB_MALLOC
	free(p);
	return;
#endif
	*(void **)p = b->free;
	b->free = p;
	if (!b->in_room) {
		TAILQ_INSERT_HEAD(&s->room, b, link);
		b->in_room = true;
	}
	if (--b->used == 0) {
		/* refilled in address order, as when it was new: knotes added
		 * together lie together */
		b->free = NULL;
		b->fresh = SLAB_FIRST;
	}
}

/* Every knote was freed (kqueue teardown): every block is empty, in room. */
static void
slab_destroy(struct kq_slab *s)
{
	struct kq_slab_block *b;

	while ((b = TAILQ_FIRST(&s->room)) != NULL) {
		TAILQ_REMOVE(&s->room, b, link);
		block_unmap(b);
		s->nblocks--;
	}
}

static inline __attribute__((always_inline)) struct kq_knote *
knote_alloc(struct kq_kqueue *kq, const struct kq_filterops *fop)
{
	bool whole = fop != NULL && !fop->small;
	struct kq_slab *s = &kq->slab[whole];
	struct kq_knote *kn;

	if (s->size == 0)
		slab_init(s, whole ? sizeof *kn : KQ_KNOTE_SMALL);
	if ((kn = slab_alloc(s)) == NULL)
		return NULL;
	/* sizes the compiler knows: a few stores, not a call */
	if (!whole) {
		memset(kn, 0, KQ_KNOTE_SMALL);
		return kn;
	}
	memset(kn, 0, sizeof *kn);
	kn->status = KN_WHOLE;
	kn->u.vnode.wd = -1;
	return kn;
}

struct kq_knote *
kq_knote_alloc(struct kq_kqueue *kq, const struct kq_filterops *fop)
{
	return knote_alloc(kq, fop);
}

static inline __attribute__((always_inline)) void
knote_free(struct kq_kqueue *kq, struct kq_knote *kn)
{
	slab_free(&kq->slab[!!(kn->status & KN_WHOLE)], kn);
}

void
kq_knote_free(struct kq_kqueue *kq, struct kq_knote *kn)
{
	knote_free(kq, kn);
}

void
kq_knote_slabs_free(struct kq_kqueue *kq)
{
	slab_destroy(&kq->slab[0]);
	slab_destroy(&kq->slab[1]);
	if (kq->khash.b != NULL)
		kq_array_free(kq->khash.b,
		    ((size_t)kq->khash.mask + 1) * sizeof *kq->khash.b);
	kq->khash = (struct kq_knote_hash){ 0 };
}

/* ------------------------------------------------------------ big arrays */

#define BIG_ARRAY	(64 * 1024)

void *
kq_array_alloc(size_t size)
{
	void *p;

	if (size < BIG_ARRAY)
		return calloc(1, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void *
kq_array_resize(void *p, size_t size, size_t to)
{
	void *q;

	if (size >= BIG_ARRAY && to >= BIG_ARRAY) {
		/* the kernel moves the pages: nothing is copied or faulted */
		q = mremap(p, size, to, MREMAP_MAYMOVE);
		return q == MAP_FAILED ? NULL : q;
	}
	if ((q = kq_array_alloc(to)) == NULL)
		return NULL;
	memcpy(q, p, size < to ? size : to);
	kq_array_free(p, size);
	return q;
}

void
kq_array_free(void *p, size_t size)
{
	if (size < BIG_ARRAY)
		free(p);
	else if (p != NULL)
		munmap(p, size);
}

/* ------------------------------------------------------------------ hash */

#define KHASH_MIN	16


/* Rehash into 2^bits buckets; on failure keep the old table (longer chains
 * are slower, not wrong). */
static void
khash_resize(struct kq_knote_hash *h, unsigned buckets)
{
	struct kq_knote **nb = kq_array_alloc(buckets * sizeof *nb), *kn, *next;
	struct kq_knote_hash old = *h;
	uint32_t i;

	if (nb == NULL)
		return;
	h->b = nb;
	h->gen++;
	h->mask = buckets - 1;
	h->bits = (uint8_t)__builtin_ctz(buckets);
	for (i = 0; old.b != NULL && i <= old.mask; i++) {
		/* the chains are cold: start loading a few buckets ahead */
		if (i + 4 <= old.mask && old.b[i + 4] != NULL)
			__builtin_prefetch(old.b[i + 4]);
		for (kn = old.b[i]; kn != NULL; kn = next) {
			uint32_t j = kq_khash_bucket(h, kn->filter, kn->ident);
			next = kn->next;
			kn->next = nb[j];
			nb[j] = kn;
		}
	}
	if (old.b != NULL)
		kq_array_free(old.b, ((size_t)old.mask + 1) * sizeof *old.b);
}

/* ENOMEM only for the first knote of the hash (a table that cannot grow
 * just gets longer chains). */
static inline __attribute__((always_inline)) int
knote_insert(struct kq_kqueue *kq, struct kq_knote *kn, struct kq_knote **link)
{
	struct kq_knote_hash *h = &kq->khash;

	if (kq_knote_fdn(kn) != NULL) {
		LIST_INSERT_HEAD(&kn->fdn->knotes, kn, fdlink);
		kq->nknotes++;
		return 0;
	}
	if (h->b == NULL || h->n >= 2 * ((size_t)h->mask + 1)) {
		khash_resize(h, h->b == NULL ? KHASH_MIN : 2 * (h->mask + 1));
		link = NULL;
	}
	if (h->b == NULL)
		return ENOMEM;
	/* At the end of the chain, which the lookup before the add has just
	 * walked (link): timers mostly go in the order they came, so the
	 * knote that goes next is then first in its chain, and unlinking it
	 * reads no other knote (put first, a million-timer chain's old
	 * partner was a cache miss on every fire and delete). */
	if (link == NULL)
		link = kq_khash_link(h, kq_khash_bucket(h, kn->filter,
		    kn->ident), kn->filter, kn->ident);
	kn->next = NULL;
	*link = kn;
	h->n++;
	h->gen++;
	kq->nknotes++;
	return 0;
}

int
kq_knote_insert(struct kq_kqueue *kq, struct kq_knote *kn,
    struct kq_knote **link)
{
	return knote_insert(kq, kn, link);
}

/* A small knote from the slab, as kq_knote_alloc()'s zeroing and
 * kq_knote_set() would leave it, written once (next excepted). */
static inline __attribute__((always_inline)) void
small_knote_set(struct kq_knote *kn, const struct kevent *kev)
{
	memset(&kn->link, 0, sizeof kn->link);
	kn->ident = kev->ident;
	kn->udata = kev->udata;
	kn->filter = kev->filter;
	kn->flags = kev->flags & KN_STORED_FLAGS_MASK;
	kn->status = (kev->flags & EV_DISABLE) ? KN_DISABLED : 0;
	kn->data = 0;
	memset(&kn->s, 0, sizeof kn->s);
}

/* kq_knote_alloc, kq_knote_set and kq_knote_insert(link) at once */
static inline __attribute__((always_inline)) struct kq_knote *
knote_new_hashed(struct kq_kqueue *kq, const struct kq_filterops *fop,
    const struct kevent *kev, struct kq_knote **link)
{
	struct kq_slab *s = &kq->slab[!fop->small];
	struct kq_knote *kn;

	if (!fop->small || s->size == 0)	/* as kq_knote_alloc() */
		kn = knote_alloc(kq, fop);
	else
		kn = slab_alloc(s);
	if (kn == NULL)
		return NULL;
	if (fop->small) {
		small_knote_set(kn, kev);	/* insert sets next */
	} else {
		kq_knote_set(kn, kev);
	}
	if (knote_insert(kq, kn, link) != 0) {
		knote_free(kq, kn);
		return NULL;
	}
	return kn;
}

/* link: where kn is linked from, or NULL (walk its chain for it) */
static inline __attribute__((always_inline)) void
knote_unlink(struct kq_kqueue *kq, struct kq_knote *kn, struct kq_knote **link)
{
	struct kq_knote_hash *h = &kq->khash;

	kq->nknotes--;
	if (kq_knote_fdn(kn) != NULL)
		return;
	if (link == NULL) {
		link = &h->b[kq_khash_bucket(h, kn->filter, kn->ident)];
		while (*link != kn)
			link = &(*link)->next;
	}
	*link = kn->next;
	h->n--;
	h->gen++;
}

/* Also the run's way (below) when its quick knote cannot be had - the first
 * knote of the table, a table to grow, a whole knote's filter -, kept out
 * of line so that the run's loop saves no registers for it. */
int __attribute__((noinline))
kq_knote_add_hashed(struct kq_kqueue *kq, const struct kq_filterops *fop,
    const struct kevent *kev, struct kq_knote **link)
{
	struct kq_knote *kn = knote_new_hashed(kq, fop, kev, link);
	int err;

	if (kn == NULL)
		return ENOMEM;
	if ((err = fop->attach(kq, kn, kev)) != 0) {
		knote_unlink(kq, kn, NULL);
		knote_free(kq, kn);
		return err;
	}
	/* EV_KEEPUDATA keeps an existing knote's udata; a new knote has
	 * none to keep, so it takes the reference like any EV_FREEWATCH add */
	if (kev->flags & EV_FREEWATCH)
		kq_knote_set_freewatch(kn, true);
	return 0;
}

/* Undo kq_knote_insert for a knote whose attach failed. */
void
kq_knote_free_unattached(struct kq_kqueue *kq, struct kq_knote *kn)
{
	knote_unlink(kq, kn, NULL);
	if (kq_knote_fdn(kn) != NULL) {
		LIST_REMOVE(kn, fdlink);
		kq_fdnode_put(kq, kn->fdn);
	}
	kq_knote_free(kq, kn);
}

void
kq_knote_set_freewatch(struct kq_knote *kn, bool on)
{
	if (on == !!(kn->status & KN_FREEWATCH))
		return;
	kn->status ^= KN_FREEWATCH;
	if (kq_knote_fdn(kn) != NULL)
		atomic_fetch_add(&kn->fdn->nfreewatch, on ? 1 : -1);
}

void
kq_knote_poll(struct kq_kqueue *kq, struct kq_knote *kn)
{
	if (!(kn->status & KN_POLLED)) {
		kn->status |= KN_POLLED;
		TAILQ_INSERT_TAIL(&kq->polled, kn, plink);
	}
	kq_knote_activate(kq, kn);
}

void
kq_knote_deactivate(struct kq_kqueue *kq, struct kq_knote *kn)
{
	if (kn->status & KN_QUEUED)
		TAILQ_REMOVE(&kq->active, kn, link);
	kn->status &= ~(KN_QUEUED | KN_ACTIVE);
}

/*
 * The one place a knote dies.  If it holds an EV_FREEWATCH reference the
 * reference goes back exactly once: in the event being returned (fired), or
 * as a free notice made from the knote's own memory, so releasing can never
 * fail for lack of memory.  link: where a hashed kn is linked from, if known
 * at hash generation gen.
 */
static inline __attribute__((always_inline)) void
knote_release(struct kq_kqueue *kq, struct kq_knote *kn, unsigned reason,
    struct kevent *fired, struct kq_knote **link, uint32_t gen)
{
	kq_knote_fop(kn)->detach(kq, kn);
	if (kn->status & KN_QUEUED)
		TAILQ_REMOVE(&kq->active, kn, link);
	if (kn->status & KN_POLLED)
		TAILQ_REMOVE(&kq->polled, kn, plink);
	/* a detach that released or added another knote moved the links */
	knote_unlink(kq, kn, kq->khash.gen == gen ? link : NULL);
	if (kq_knote_fdn(kn) != NULL) {
		if (kn->status & KN_FREEWATCH)
			atomic_fetch_sub(&kn->fdn->nfreewatch, 1);
		LIST_REMOVE(kn, fdlink);
		kq_fdnode_put(kq, kn->fdn);
		kn->fdn = NULL;
	}
	if (!(kn->status & KN_FREEWATCH)) {
		knote_free(kq, kn);
		return;
	}
	if (fired != NULL) {
		fired->flags |= EV_FREEWATCH;
		knote_free(kq, kn);
		return;
	}
	kq_knote_queue_notice(kq, kn, kn, reason);
}

void
kq_knote_release(struct kq_kqueue *kq, struct kq_knote *kn, unsigned reason,
    struct kevent *fired)
{
	knote_release(kq, kn, reason, fired, NULL, 0);
}

void
kq_knote_delete_at(struct kq_kqueue *kq, struct kq_knote *kn,
    struct kq_knote **link, uint32_t gen)
{
	knote_release(kq, kn, NOTE_FREE_DELETE, NULL, link, gen);
}

/*
 * The changes a changelist of timers (or signals, user events...) is made
 * of, for filters whose ident is not an fd: EV_ADD of a knote that does not
 * exist, without EV_DISABLE, EV_FREEWATCH, EV_RECEIPT or a kernel bit
 * (EV_SYSFLAGS, which kevent() would strip), and a bare EV_DELETE of one
 * that does.  They mean here what apply_change() makes of them (kevent.c:
 * add_knote() then kq_knote_add_hashed(), or kq_knote_delete_at()), applied
 * in one loop that looks each knote up once and reads the change in place.
 * Callgrind, 100k timers: the general path's steps around the same work
 * (the change copied, re-validated, looked up again and passed down three
 * calls, each saving its registers) were a third of an add or a delete.
 *
 * Like kevent()'s loop (PREFETCH_AHEAD there), it loads the bucket of the
 * change 8 on and the first knote of the one 4 on while it works: at a
 * million timers a lookup is otherwise two or three misses to memory.
 */
#define RUN_AHEAD	8

int
kq_knote_change_run(struct kq_kqueue *kq, const struct kevent *changelist,
    int i, int nchanges, int *err)
{
	struct kq_knote_hash *h = &kq->khash;
	uint32_t ahead[RUN_AHEAD];	/* buckets of changes ahead, or none */
	uint32_t bucket, j, gen;
	unsigned slot;
	const struct kq_filterops *fop;
	const struct kevent *kev;
	struct kq_knote **link, *kn;

	memset(ahead, 0xff, sizeof ahead);
	for (; i < nchanges; i++) {
		/* the table as it is now, in registers: the stores below
		 * could alias it, for all the compiler knows */
		struct kq_knote_hash t = *h;

		kev = &changelist[i];
		if ((fop = kq_filterops_lookup(kev->filter)) == NULL ||
		    fop->isfd || t.b == NULL)
			break;
		slot = (unsigned)i % RUN_AHEAD;
		bucket = ahead[slot];
		if (__builtin_expect(bucket == UINT32_MAX, 0))
			bucket = kq_khash_bucket(&t, kev->filter, kev->ident);
		if ((j = ahead[(slot + RUN_AHEAD / 2) % RUN_AHEAD]) != UINT32_MAX &&
		    t.b[j] != NULL)
			__builtin_prefetch(t.b[j]);
		j = UINT32_MAX;
		if (i + RUN_AHEAD < nchanges) {
			const struct kevent *next = &changelist[i + RUN_AHEAD];
			/* whatever its filter: asking costs more than the hash */
			j = kq_khash_bucket(&t, next->filter, next->ident);
			__builtin_prefetch(&t.b[j]);
		}
		ahead[slot] = j;
		link = &t.b[bucket];
		while ((kn = *link) != NULL &&
		    (kn->ident != kev->ident || kn->filter != kev->filter))
			link = &kn->next;
		if (kn != NULL) {
			if (kev->flags != EV_DELETE)
				break;
			if (kn->status & (KN_QUEUED | KN_POLLED | KN_FREEWATCH |
			    KN_WHOLE)) {
				knote_release(kq, kn, NOTE_FREE_DELETE, NULL,
				    link, t.gen);
				if (h->mask != t.mask)	/* as below */
					memset(ahead, 0xff, sizeof ahead);
				continue;
			}
			/* knote_release() of a small knote that is on no
			 * list and holds no reference (the small filters'
			 * attach and detach add no knote: the table stays) */
			gen = t.gen;
			fop->detach(kq, kn);
			if (h->gen != gen)	/* the detach moved links */
				link = NULL;
			knote_unlink(kq, kn, link);
			slab_free(&kq->slab[0], kn);
			continue;
		}
		if ((kev->flags & (EV_ADD | EV_DELETE | EV_DISABLE |
		    EV_RECEIPT | EV_FREEWATCH | EV_SYSFLAGS)) != EV_ADD)
			break;
		if (!fop->small || kq->slab[0].size == 0 ||
		    t.n >= 2 * ((size_t)t.mask + 1)) {
			*err = kq_knote_add_hashed(kq, fop, kev, link);
			/* the table grew (for this knote, or one its attach
			 * added): the buckets ahead are the old table's */
			if (h->mask != t.mask)
				memset(ahead, 0xff, sizeof ahead);
			if (*err != 0)
				return i;
			continue;
		}
		if ((kn = slab_alloc(&kq->slab[0])) == NULL) {
			*err = ENOMEM;
			return i;
		}
		small_knote_set(kn, kev);	/* no EV_DISABLE in a run */
		kn->next = NULL;
		*link = kn;
		h->n = t.n + 1;
		h->gen = t.gen + 1;
		kq->nknotes++;
		if ((*err = fop->attach(kq, kn, kev)) != 0) {
			knote_unlink(kq, kn, NULL);
			knote_free(kq, kn);
			return i;
		}
	}
	*err = -1;
	return i;
}

/*
 * Make note a free notice for kn's udata: note is kn's own memory (the
 * knote died), or - a reference handed back without the knote dying (udata
 * replaced) - memory the caller allocated beforehand (kq_knote_alloc(kq,
 * NULL)), so this cannot fail either.
 */
void
kq_knote_queue_notice(struct kq_kqueue *kq, struct kq_knote *note,
    const struct kq_knote *kn, unsigned reason)
{
	note->ident = kn->ident;
	note->filter = kn->filter;
	note->udata = kn->udata;
	note->status = KN_NOTICE | (note->status & KN_WHOLE);
	note->flags = EV_FREEWATCH | EV_DELETE;
	note->data = reason;
	TAILQ_INSERT_TAIL(&kq->notices, note, link);
}

int
kq_notices_copyout(struct kq_kqueue *kq, struct kevent *out, int max)
{
	struct kq_knote *kn;
	int n = 0;

	while (n < max && (kn = TAILQ_FIRST(&kq->notices)) != NULL) {
		TAILQ_REMOVE(&kq->notices, kn, link);
		out[n++] = (struct kevent){
			.ident = kn->ident,
			.filter = kn->filter,
			.flags = kn->flags,
			.fflags = (unsigned)kn->data,
			.udata = kn->udata,
		};
		kq_knote_free(kq, kn);
	}
	return n;
}

/* Release every knote (kqfree_release, close of the kqueue). */
void
kq_release_all(struct kq_kqueue *kq, unsigned reason, bool notify)
{
	struct kq_knote *kn;
	uint32_t i;
	int fd;

	for (fd = 0; fd < kq->nfds; fd++) {
		struct kq_fdnode *fdn = kq->fds[fd];
		/* releasing leaves fdn in place (idle or closed) */
		while (fdn != NULL && (kn = LIST_FIRST(&fdn->knotes)) != NULL) {
			if (!notify)
				kq_knote_set_freewatch(kn, false);
			kq_knote_release(kq, kn, reason, NULL);
		}
	}
	for (i = 0; kq->khash.n > 0; ) {
		if ((kn = kq->khash.b[i]) == NULL) {
			i++;
			continue;
		}
		if (!notify)
			kq_knote_set_freewatch(kn, false);
		kq_knote_release(kq, kn, reason, NULL);
	}
	if (!notify) {
		while ((kn = TAILQ_FIRST(&kq->notices)) != NULL) {
			TAILQ_REMOVE(&kq->notices, kn, link);
			kq_knote_free(kq, kn);
		}
	}
}
