/*
 * The knote: lookup, activation queue, and the ONE release function that
 * every death goes through, so EV_FREEWATCH cannot miss a path.
 *
 * Lookup: the knotes whose ident is not an fd (timers, signals, pids, user
 * events) are in a red-black tree keyed (filter, ident).  A knote whose ident
 * is an fd hangs on that fd's node instead (kq->fds[fd], like FreeBSD's
 * kq_knlist) and is found in O(1): measured on the rearm benchmark (9900
 * fds deleted and re-added per iteration) that halves the cost of a change
 * (2.1 ms -> 1.05 ms per iteration), the tree's insert and remove being most
 * of it.  (A hash for the others was tried too: 7% on 100k timers, not worth
 * a hand-written table.)
 */
#include "internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Freed knotes kept per kqueue for reuse: delete-and-add loops, oneshot
 * re-arms and timer churn then cost no malloc/free. */
#define KNOTE_CACHE_MAX	1024

static int
knote_cmp(const struct kq_knote *a, const struct kq_knote *b)
{
	if (a->kev.filter != b->kev.filter)
		return a->kev.filter < b->kev.filter ? -1 : 1;
	if (a->kev.ident != b->kev.ident)
		return a->kev.ident < b->kev.ident ? -1 : 1;
	return 0;
}

/* <bsd/sys/tree.h> spells its attribute the BSD way */
#define __unused __attribute__((__unused__))
RB_GENERATE_STATIC(kq_knote_tree, kq_knote, tree, knote_cmp)
#undef __unused

struct kq_knote *
kq_knote_find(struct kq_kqueue *kq, short filter, uintptr_t ident)
{
	const struct kq_filterops *fop = kq_filterops_lookup(filter);
	struct kq_knote *kn;
	struct kq_fdnode *fdn;

	if (fop == NULL || !fop->isfd) {
		struct kq_knote key;
		key.kev.filter = filter;
		key.kev.ident = ident;
		return RB_FIND(kq_knote_tree, &kq->knotes, &key);
	}
	if (ident > INT_MAX || (fdn = kq_fdnode_find(kq, (int)ident)) == NULL)
		return NULL;
	LIST_FOREACH(kn, &fdn->knotes, fdlink)
		if (kn->kev.filter == filter)
			return kn;
	return NULL;
}

struct kq_knote *
kq_knote_alloc(struct kq_kqueue *kq)
{
	struct kq_knote *kn = kq->knote_cache;

	if (kn != NULL) {
		kq->knote_cache = (struct kq_knote *)kn->fop;
		kq->ncached--;
		memset(kn, 0, sizeof *kn);
	} else if ((kn = calloc(1, sizeof *kn)) == NULL) {
		return NULL;
	}
	kn->u.vnode.wd = -1;
	return kn;
}

void
kq_knote_free(struct kq_kqueue *kq, struct kq_knote *kn)
{
	if (kq->ncached >= KNOTE_CACHE_MAX) {
		free(kn);
		return;
	}
	kn->fop = (const struct kq_filterops *)kq->knote_cache;
	kq->knote_cache = kn;
	kq->ncached++;
}

void
kq_knote_cache_free(struct kq_kqueue *kq)
{
	struct kq_knote *kn;

	while ((kn = kq->knote_cache) != NULL) {
		kq->knote_cache = (struct kq_knote *)kn->fop;
		free(kn);
	}
	kq->ncached = 0;
}

void
kq_knote_insert(struct kq_kqueue *kq, struct kq_knote *kn)
{
	if (kn->fdn != NULL) {
		LIST_INSERT_HEAD(&kn->fdn->knotes, kn, fdlink);
	} else {
		RB_INSERT(kq_knote_tree, &kq->knotes, kn);
	}
	kq->nknotes++;
}

static void
knote_unlink(struct kq_kqueue *kq, struct kq_knote *kn)
{
	if (kn->fdn == NULL)
		RB_REMOVE(kq_knote_tree, &kq->knotes, kn);
	kq->nknotes--;
}

/* Undo kq_knote_insert for a knote whose attach failed. */
void
kq_knote_free_unattached(struct kq_kqueue *kq, struct kq_knote *kn)
{
	knote_unlink(kq, kn);
	if (kn->fdn != NULL) {
		LIST_REMOVE(kn, fdlink);
		kq_fdnode_put(kq, kn->fdn);
	}
	kq_knote_free(kq, kn);
}

void
kq_knote_activate(struct kq_kqueue *kq, struct kq_knote *kn)
{
	kn->status |= KN_ACTIVE;
	if (kn->status & (KN_QUEUED | KN_DISABLED))
		return;
	kn->status |= KN_QUEUED;
	TAILQ_INSERT_TAIL(&kq->active, kn, link);
	/* no kick: every path that activates ends in kq_update_wake() */
}

void
kq_knote_set_freewatch(struct kq_knote *kn, bool on)
{
	if (on == !!(kn->status & KN_FREEWATCH))
		return;
	kn->status ^= KN_FREEWATCH;
	if (kn->fdn != NULL)
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
 * fail for lack of memory.
 */
void
kq_knote_release(struct kq_kqueue *kq, struct kq_knote *kn, unsigned reason,
    struct kevent *fired)
{
	kn->fop->detach(kq, kn);
	if (kn->status & KN_QUEUED)
		TAILQ_REMOVE(&kq->active, kn, link);
	if (kn->status & KN_POLLED)
		TAILQ_REMOVE(&kq->polled, kn, plink);
	knote_unlink(kq, kn);
	if (kn->fdn != NULL) {
		if (kn->status & KN_FREEWATCH)
			atomic_fetch_sub(&kn->fdn->nfreewatch, 1);
		LIST_REMOVE(kn, fdlink);
		kq_fdnode_put(kq, kn->fdn);
		kn->fdn = NULL;
	}
	if (!(kn->status & KN_FREEWATCH)) {
		kq_knote_free(kq, kn);
		return;
	}
	if (fired != NULL) {
		fired->flags |= EV_FREEWATCH;
		kq_knote_free(kq, kn);
		return;
	}
	kn->status = KN_NOTICE;
	kn->kev.flags = EV_FREEWATCH | EV_DELETE;
	kn->kev.fflags = reason;
	kn->kev.data = 0;
	memset(kn->kev.ext, 0, sizeof kn->kev.ext);
	TAILQ_INSERT_TAIL(&kq->notices, kn, link);
}

/*
 * A reference handed back without the knote dying (udata replaced): the
 * notice needs memory of its own.  The caller allocated it beforehand
 * (kq_knote_alloc), so this cannot fail either.
 */
void
kq_knote_queue_notice(struct kq_kqueue *kq, struct kq_knote *note,
    const struct kevent *ev)
{
	note->status = KN_NOTICE;
	note->kev = *ev;
	memset(note->kev.ext, 0, sizeof note->kev.ext);
	TAILQ_INSERT_TAIL(&kq->notices, note, link);
}

int
kq_notices_copyout(struct kq_kqueue *kq, struct kevent *out, int max)
{
	struct kq_knote *kn;
	int n = 0;

	while (n < max && (kn = TAILQ_FIRST(&kq->notices)) != NULL) {
		TAILQ_REMOVE(&kq->notices, kn, link);
		out[n++] = kn->kev;
		kq_knote_free(kq, kn);
	}
	return n;
}

/* Release every knote (kqfree_release, close of the kqueue). */
void
kq_release_all(struct kq_kqueue *kq, unsigned reason, bool notify)
{
	struct kq_knote *kn;
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
	while ((kn = RB_ROOT(&kq->knotes)) != NULL) {
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
