/*
 * kevent(): apply the changelist with FreeBSD's error reporting, then scan.
 *
 * Changes: every change goes through apply_change(); a failure (or
 * EV_RECEIPT) becomes an EV_ERROR entry while the eventlist has room, and
 * once any entry was produced kevent() returns them at once, as FreeBSD's
 * kqueue_kevent() does.  No room left: -1 with that errno, and the rest of
 * the changelist is not applied.
 *
 * Scan: free notices first (they are older than any readiness), then the
 * active queue; when both are empty, flush pending epoll changes and wait
 * (without kq->lock), hand what epoll reports to each registration's ready
 * callback, and look again.
 */
#include "internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

const struct kq_filterops *const kq_filters[EVFILT_SYSCOUNT + 1] = {
	[-EVFILT_READ] = &kq_filt_read,
	[-EVFILT_WRITE] = &kq_filt_write,
	[-EVFILT_VNODE] = &kq_filt_vnode,
	[-EVFILT_PROC] = &kq_filt_proc,
	[-EVFILT_SIGNAL] = &kq_filt_signal,
	[-EVFILT_TIMER] = &kq_filt_timer,
	[-EVFILT_PROCDESC] = &kq_filt_procdesc,
	[-EVFILT_USER] = &kq_filt_user,
	[-EVFILT_EMPTY] = &kq_filt_empty,
};


/* A new knote (or a renewed one) as the change kev describes it. */
static void
knote_set(struct kq_knote *kn, const struct kevent *kev)
{
	kn->ident = kev->ident;
	kn->filter = kev->filter;
	kn->flags = kev->flags & KN_STORED_FLAGS_MASK;
	kn->udata = kev->udata;
	if (kn->status & KN_WHOLE) {
		kn->sfflags = kev->fflags;
		kn->sdata = kev->data;
	}
	if (kev->flags & EV_DISABLE)
		kn->status |= KN_DISABLED;
}

static int
add_knote(struct kq_kqueue *kq, const struct kq_filterops *fop,
    const struct kevent *kev)
{
	struct kq_knote *kn;
	bool first_probe = false;
	int err = 0;

	/* not open, or not the application's (internal.h, DESCRIPTORS) */
	if (fop->isfd && (kev->ident > INT_MAX || kq_fd_owned((int)kev->ident)))
		return EBADF;
	/*
	 * FreeBSD looks the descriptor up first.  Here the fd table and the
	 * registry grow to the number, so a number beyond the table must be
	 * open before anything is sized by it (one bad add at 67108863 would
	 * cost 512 MiB).  Below kq->nfds nothing grows, and epoll_ctl
	 * answers EBADF: no extra syscall on the common path.
	 */
	if (fop->isfd && (int)kev->ident >= kq->nfds &&
	    fcntl((int)kev->ident, F_GETFD) < 0)
		return EBADF;
	if ((kn = kq_knote_alloc(kq, fop)) == NULL)
		return ENOMEM;
	knote_set(kn, kev);
	if (fop->isfd) {
		kn->fdn = kq_fdnode_get(kq, (int)kev->ident, fop->probe_first,
		    &err);
		if (kn->fdn == NULL) {
			kq_knote_free(kq, kn);
			return err;
		}
		first_probe = kn->fdn->kind == 0;
	}
	if ((err = kq_knote_insert(kq, kn)) != 0) {
		if (kn->status & KN_WHOLE && kn->fdn != NULL)
			kq_fdnode_put(kq, kn->fdn);
		kq_knote_free(kq, kn);
		return err;
	}
	if ((err = fop->attach(kq, kn, kev)) != 0) {
		kq_knote_free_unattached(kq, kn);
		return err;
	}
	/* EV_KEEPUDATA keeps an existing knote's udata; a new knote has
	 * none to keep, so it takes the reference like any EV_FREEWATCH add */
	if (kev->flags & EV_FREEWATCH)
		kq_knote_set_freewatch(kn, true);
	/* an attach's first probe registered the fd with what its knotes
	 * want, this one's last state included (kq_filterops.attach) */
	if (kq_knote_fdn(kn) != NULL &&
	    !(first_probe && kn->fdn->kind == KQ_FD_POLL))
		kq_fdnode_update(kq, kn->fdn);
	return 0;
}

/*
 * Replace udata.  A held EV_FREEWATCH reference comes back as a notice even
 * when the new pointer is equal, so notices always equal references taken.
 * note: allocated by the caller beforehand when the knote holds a reference,
 * so that nothing fails once the change has been validated.
 */
static void
replace_udata(struct kq_kqueue *kq, struct kq_knote *kn, const struct kevent *kev,
    struct kq_knote *note)
{
	if (kn->status & KN_FREEWATCH) {
		kq_knote_queue_notice(kq, note, kn, NOTE_FREE_UDATA);
		kq_knote_set_freewatch(kn, false);
	}
	kn->udata = kev->udata;
	if ((kev->flags & (EV_ADD | EV_FREEWATCH)) == (EV_ADD | EV_FREEWATCH))
		kq_knote_set_freewatch(kn, true);
}

/*
 * A change to an existing knote.  It either applies whole or leaves the
 * knote exactly as it was (udata, reference, flags, enabled state, filter
 * state): what can fail (the notice's memory, the filter's touch) runs
 * before anything visible changes.  Only EV_FORCEONESHOT goes before touch,
 * as in FreeBSD (a timer re-add then runs oneshot and discards the forced
 * activation); touch leaves the knote untouched when it fails, so undoing
 * that one step restores it.
 */
static int
modify_knote(struct kq_kqueue *kq, struct kq_knote *kn, const struct kevent *kev)
{
	const struct kq_filterops *fop = kq_knote_fop(kn);
	bool replace = !(kev->flags & EV_KEEPUDATA);
	unsigned short oflags = kn->flags;
	uint32_t ostatus = kn->status;
	struct kq_knote *note = NULL;
	int err = 0;

	if (replace && (kn->status & KN_FREEWATCH) &&
	    (note = kq_knote_alloc(kq, NULL)) == NULL)
		return ENOMEM;
	if (kev->flags & EV_FORCEONESHOT) {
		kn->flags |= EV_ONESHOT;
		kn->status |= KN_FORCED;
		kq_knote_activate(kq, kn);
	}
	if (fop->touch != NULL) {
		err = fop->touch(kq, kn, kev);
	} else if (kn->status & KN_WHOLE) {
		kn->sfflags = kev->fflags;
		kn->sdata = kev->data;
	}
	if (err != 0) {
		/* activation can only have appended kn to the queue */
		if ((kn->status & KN_QUEUED) && !(ostatus & KN_QUEUED))
			TAILQ_REMOVE(&kq->active, kn, link);
		kn->status = ostatus;
		kn->flags = oflags;
		if (note != NULL)
			kq_knote_free(kq, note);
		return err;
	}
	if (replace)
		replace_udata(kq, kn, kev, note);
	/* After touch: what touch activated is queued or held back by the
	 * new state just as if the state had changed first. */
	if (kev->flags & EV_ENABLE) {
		kn->status &= ~KN_DISABLED;
		if (kn->status & KN_ACTIVE)
			kq_knote_activate(kq, kn);
	} else if (kev->flags & EV_DISABLE) {
		kn->status |= KN_DISABLED;
		if (kn->status & KN_QUEUED) {
			TAILQ_REMOVE(&kq->active, kn, link);
			kn->status &= ~KN_QUEUED;
		}
	}
	if (fop->rearm != NULL)
		fop->rearm(kq, kn);
	if (kq_knote_fdn(kn) != NULL) {
		struct kq_poll *p = &kn->fdn->poll;
		kq_fdnode_update(kq, kn->fdn);
		/* FreeBSD re-runs f_event after any change: the new fflags or
		 * data (NOTE_LOWAT) may make it ready now.  epoll does that for
		 * us when the flush changes the registration, and a level
		 * registration reports again anyway; only an unchanged
		 * edge-triggered one needs the scan to look. */
		if (fop->pollevents != NULL && !(kn->status & KN_DISABLED) &&
		    p->want == p->armed &&
		    (p->armed & (KQ_POLLET | KQ_POLLONESHOT)))
			kq_knote_activate(kq, kn);
	}
	return 0;
}

/*
 * The rearm idiom: EV_DELETE of an fd's knote immediately followed by EV_ADD
 * of the same (ident, filter).  FreeBSD frees the knote and makes a new
 * one; here the new knote takes the old one's memory and its place on the
 * fdnode, which the application cannot tell apart: the filter detaches and
 * attaches again and every field is set anew.  Measured on the rearm
 * benchmark (9900 fds deleted and re-added per iteration) it halves the
 * library's instructions per pair.  Not when the knote holds an
 * EV_FREEWATCH reference (its memory becomes the notice), nor with
 * EV_RECEIPT (each change reports), nor on a number being closed.
 * Returns 2: both changes applied; 1: the delete applied and the add left
 * to the normal path (attach failed: it will fail there the same way, or
 * not); 0: not the idiom, nothing done.
 */
static int
renew_knote(struct kq_kqueue *kq, const struct kevent *del,
    const struct kevent *next)
{
	const struct kq_filterops *fop = kq_filterops_lookup(del->filter);
	struct kevent add = *next;
	struct kq_knote *kn;
	struct kq_fdnode *fdn;

	add.flags &= ~EV_SYSFLAGS;
	if (fop == NULL || !fop->isfd ||
	    (del->flags & (EV_DELETE | EV_RECEIPT)) != EV_DELETE ||
	    (add.flags & (EV_ADD | EV_DELETE | EV_RECEIPT)) != EV_ADD ||
	    (add.flags & (EV_ENABLE | EV_DISABLE)) == (EV_ENABLE | EV_DISABLE) ||
	    add.ident != del->ident || add.filter != del->filter ||
	    (kn = kq_knote_find(kq, del->filter, del->ident)) == NULL ||
	    (kn->status & KN_FREEWATCH))
		return 0;
	fdn = kn->fdn;
	if (atomic_load_explicit(&fdn->closed, memory_order_acquire))
		return 0;
	kq_knote_renew(kq, kn);
	knote_set(kn, &add);
	if (fop->attach(kq, kn, &add) != 0) {
		kq_knote_free_unattached(kq, kn);
		return 1;
	}
	if (add.flags & EV_FREEWATCH)
		kq_knote_set_freewatch(kn, true);
	kq_fdnode_update(kq, fdn);
	return 2;
}

static int
apply_change(struct kq_kqueue *kq, const struct kevent *kev)
{
	const struct kq_filterops *fop = kq_filterops_lookup(kev->filter);
	struct kq_knote *kn;

	if (fop == NULL)
		return EINVAL;
	if ((kev->flags & (EV_ENABLE | EV_DISABLE)) == (EV_ENABLE | EV_DISABLE))
		return EINVAL;
	kn = kq_knote_find(kq, kev->filter, kev->ident);
	if (kn == NULL) {
		/* EV_DELETE wins over EV_ADD (FreeBSD, on an existing knote).
		 * A change with EV_DELETE takes no reference, so with
		 * EV_FREEWATCH it never makes a knote either: nothing to
		 * delete is ENOENT, and udata goes back in the EV_ERROR entry.
		 * Without EV_FREEWATCH FreeBSD adds the missing knote. */
		if ((kev->flags & EV_ADD) &&
		    (kev->flags & (EV_DELETE | EV_FREEWATCH)) !=
		    (EV_DELETE | EV_FREEWATCH))
			return add_knote(kq, fop, kev);
		/* FreeBSD looks the fd up before the knote */
		if (fop->isfd && (kev->ident > INT_MAX ||
		    kq_fd_owned((int)kev->ident) ||
		    fcntl((int)kev->ident, F_GETFD) < 0))
			return EBADF;
		return ENOENT;
	}
	if (kev->flags & EV_DELETE) {
		kq_knote_release(kq, kn, NOTE_FREE_DELETE, NULL);
		return 0;
	}
	return modify_knote(kq, kn, kev);
}

/*
 * A knote was just copied out: apply what its flags say, as FreeBSD's
 * kqueue_scan() does.  ONESHOT dies here (the returned event carries
 * EV_FREEWATCH if it held a reference); CLEAR resets its state; DISPATCH
 * disables it; a level knote whose source will not report again by itself
 * goes back on the queue.
 */
static void
after_copyout(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	const struct kq_filterops *fop = kq_knote_fop(kn);
	unsigned short flags = kn->flags;

	if (flags & EV_ONESHOT) {
		kq_knote_release(kq, kn, 0, ev);
		return;
	}
	if (flags & EV_CLEAR) {
		if (fop->clear != NULL)
			fop->clear(kq, kn);
		else if (kn->status & KN_WHOLE)
			kn->data = 0, kn->fflags = 0;
		else
			kn->data = 0;
		kn->status &= ~KN_ACTIVE;
	}
	if (flags & EV_DISPATCH) {
		kn->status |= KN_DISABLED;
		if (fop->rearm != NULL)
			fop->rearm(kq, kn);
		if (kq_knote_fdn(kn) != NULL)
			kq_fdnode_update(kq, kn->fdn);
	}
	if (flags & EV_CLEAR)
		return;
	if (!(kn->status & KN_REQUEUE)) {
		kn->status &= ~KN_ACTIVE;	/* epoll reports it again */
	} else if (!(kn->status & KN_DISABLED)) {
		kn->status |= KN_QUEUED;
		TAILQ_INSERT_TAIL(&kq->active, kn, link);
	}
}

/*
 * Ask the filter.  An fd's knote asks under the fd's slot lock, so no other
 * thread can close and reuse the number while event() reads it; one closed
 * already is left to kq_drain_closed.  A filter whose event() only reads
 * (event_unlocked: READ) is asked without the lock: no lock round trip per
 * event.  Either way what was read is dropped if the fd was closed
 * meanwhile - by another thread, or by a signal handler on this one - since
 * the close path marks the node before the real close, a number reused
 * before the read shows as closed after it (internal.h, CLOSE TRACKING).
 */
static int
knote_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	const struct kq_filterops *fop = kq_knote_fop(kn);
	struct kq_fdnode *fdn = kq_knote_fdn(kn);
	int r;

	if (fdn == NULL)
		return fop->event(kq, kn, ev);
	if (fop->event_unlocked) {
		if (atomic_load_explicit(&fdn->closed, memory_order_acquire))
			return 0;
		r = fop->event(kq, kn, ev);
	} else {
		kq_fdreg_lock(fdn->fd);
		r = atomic_load_explicit(&fdn->closed, memory_order_relaxed) ? 0 :
		    fop->event(kq, kn, ev);
		/* a signal handler's close of the number during event() on
		 * this thread is told to the watchers here */
		kq_fdreg_unlock(fdn->fd);
	}
	if (!atomic_load_explicit(&fdn->closed, memory_order_acquire))
		return r;
	/* as if closed before: nothing read is reported (a forced report
	 * goes out empty) */
	ev->flags = kn->flags;
	ev->fflags = 0;
	ev->data = 0;
	return 0;
}

/* Pop queued knotes into out[]; each queued knote is looked at once. */
static int
collect(struct kq_kqueue *kq, struct kevent *out, int max)
{
	struct kq_knote *kn, *last = TAILQ_LAST(&kq->active, kq_knote_list);
	int n = 0;

	while (n < max && (kn = TAILQ_FIRST(&kq->active)) != NULL) {
		bool was_last = kn == last;
		struct kevent *ev = &out[n];

		TAILQ_REMOVE(&kq->active, kn, link);
		kn->status &= ~KN_QUEUED;
		*ev = (struct kevent){
			.ident = kn->ident,
			.filter = kn->filter,
			.flags = kn->flags,
			.udata = kn->udata,
		};
		if (knote_event(kq, kn, ev) || (kn->status & KN_FORCED)) {
			kn->status &= ~KN_FORCED;
			/* event() may have made it die with this report */
			ev->flags |= kn->flags & EV_ONESHOT;
			n++;
			after_copyout(kq, kn, ev);
		} else {
			kn->status &= ~KN_ACTIVE;
		}
		if (was_last)
			break;
	}
	return n;
}

static void
dispatch_ready(struct kq_kqueue *kq, const struct kq_ready *r, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		struct kq_poll *p = kq_poll_lookup(kq, r[i].handle);
		if (p != NULL)
			p->ready(kq, p, r[i].revents);
	}
}

static int64_t
ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* Knotes nothing wakes up for are looked at again on every pass. */
static void
poll_due(struct kq_kqueue *kq)
{
	struct kq_knote *kn;

	TAILQ_FOREACH(kn, &kq->polled, plink)
		kq_knote_activate(kq, kn);
}

static int
scan(struct kq_kqueue *kq, struct kevent *out, int max,
    const struct timespec *timeout)
{
	struct kq_ready ready[KQ_READY_MAX];
	struct timespec zero = { 0, 0 }, left, capped, *tsp;
	int64_t deadline = 0;
	uint64_t intr;
	int n = 0, r;

	if (max == 0)
		return 0;
	if (timeout != NULL) {
		if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 ||
		    timeout->tv_nsec >= 1000000000)
			return -EINVAL;
		if (timeout->tv_sec || timeout->tv_nsec) {
			int64_t now = kq_now_ns(CLOCK_MONOTONIC);
			if (timeout->tv_sec >= (INT64_MAX - now) / 1000000000 - 1)
				deadline = INT64_MAX;	/* centuries: forever */
			else
				deadline = now + ts_ns(timeout);
		}
	}
	/* Something left from before: pick up what epoll has too, so
	 * always-ready knotes cannot starve sockets. */
	if (!TAILQ_EMPTY(&kq->active)) {
		kq_backend_flush(kq);
		kq_timer_flush(kq);
		r = kq_backend_wait(kq, ready, KQ_READY_MAX, &zero);
		if (r > 0)
			dispatch_ready(kq, ready, r);
	}
	for (;;) {
		kq_drain_closed(kq);
		poll_due(kq);
		/* the calls only when there is something to take: this runs
		 * before and after every wait */
		if (!TAILQ_EMPTY(&kq->notices))
			n += kq_notices_copyout(kq, out + n, max - n);
		if (n < max && !TAILQ_EMPTY(&kq->active))
			n += collect(kq, out + n, max - n);
		if (n > 0)
			return n;
		if (timeout == NULL) {
			tsp = NULL;
		} else if (deadline == 0) {
			tsp = &zero;
		} else if (deadline == INT64_MAX && TAILQ_EMPTY(&kq->polled)) {
			tsp = NULL;
		} else {
			int64_t d = deadline - kq_now_ns(CLOCK_MONOTONIC);
			if (d < 0)
				d = 0;
			left.tv_sec = d / 1000000000;
			left.tv_nsec = d % 1000000000;
			tsp = &left;
		}
		if (!TAILQ_EMPTY(&kq->polled) && (tsp == NULL || ts_ns(tsp) > KQ_POLL_NS)) {
			capped.tv_sec = 0;
			capped.tv_nsec = KQ_POLL_NS;
			tsp = &capped;
		}
		kq_backend_flush(kq);
		kq_timer_flush(kq);
		kq_fdnode_reap(kq);
		kq_update_wake(kq);
		intr = kq_signal_intr_snapshot();
		kq_unlock(kq);
		r = kq_backend_wait(kq, ready, KQ_READY_MAX, tsp);
		/* an alias was closed: if it was the last one, we are done */
		if (atomic_load_explicit(&kq->suspect, memory_order_relaxed))
			kq_reap_suspects();
		pthread_mutex_lock(&kq->lock);
		if (kq->dead) {
			/* the edge kq_kill() wrote woke one sleeper: pass
			 * it on to the next */
			uint64_t one = 1;
			(void)!write(kq->wake.fd, &one, sizeof one);
			return -EBADF;
		}
		/* our signal handler ran for a signal the application ignores:
		 * on FreeBSD nothing would have interrupted the wait */
		if (r == -EINTR && kq_signal_phantom_eintr(intr))
			continue;
		if (r < 0)
			return r;
		dispatch_ready(kq, ready, r);
		if (tsp != NULL && tsp->tv_sec == 0 && tsp->tv_nsec == 0 &&
		    tsp != &capped) {
			/* timed out: one last look, no more waiting */
			kq_drain_closed(kq);
			n = kq_notices_copyout(kq, out, max);
			if (n < max)
				n += collect(kq, out + n, max - n);
			return n;
		}
	}
}

static bool
only_user_changes(const struct kevent *changelist, int nchanges)
{
	int i;

	for (i = 0; i < nchanges; i++)
		if (changelist[i].filter != EVFILT_USER)
			return false;
	return true;
}

KQ_API int
kevent(int fd, const struct kevent *changelist, int nchanges,
    struct kevent *eventlist, int nevents, const struct timespec *timeout)
{
	struct kq_kqueue *kq;
	int i, nerrors = 0, ret;

	if (nchanges < 0 || nevents < 0) {
		errno = EINVAL;
		return -1;
	}
	if ((nchanges > 0 && changelist == NULL) ||
	    (nevents > 0 && eventlist == NULL)) {
		errno = EFAULT;
		return -1;
	}
	/* a module dlopen()ed since the last call may need the GOT patch
	 * before a descriptor or a signal is watched for it; never with a
	 * kqueue lock held.  EVFILT_USER changes watch neither: a trigger
	 * skips the walk (dl_iterate_phdr takes the loader's lock). */
	if (nchanges > 0 && !only_user_changes(changelist, nchanges))
		kq_fdreg_check_new_objects();
	kq_reap_suspects();
	if ((kq = kq_lookup(fd, true)) == NULL) {
		errno = EBADF;
		return -1;
	}
	pthread_mutex_lock(&kq->lock);
	if (kq->dead) {
		ret = -EBADF;
		goto out;
	}
	kq_drain_closed(kq);
	kq->change_now = 0;
	for (i = 0; i < nchanges; i++) {
		struct kevent kev = changelist[i];
		int err;

		if (i + 2 < nchanges && kq->khash.n != 0) {
			kq_knote_prefetch(kq, &changelist[i + 2], 2);
			kq_knote_prefetch(kq, &changelist[i + 1], 1);
		}

		if (kev.filter == 0)
			continue;
		kev.flags &= ~EV_SYSFLAGS;
		if ((kev.flags & EV_DELETE) && i + 1 < nchanges) {
			int done = renew_knote(kq, &kev, &changelist[i + 1]);
			i += done == 2;
			if (done != 0)
				continue;
		}
		err = apply_change(kq, &kev);
		if (err == 0 && !(kev.flags & EV_RECEIPT))
			continue;
		if (nevents == 0) {
			ret = err ? -err : 0;
			goto out;
		}
		kev.flags = EV_ERROR;
		kev.data = err;
		eventlist[nerrors++] = kev;
		nevents--;
	}
	if (nerrors > 0) {
		ret = nerrors;
		goto out;
	}
	ret = scan(kq, eventlist, nevents, timeout);
out:
	kq_backend_flush(kq);
	kq_timer_flush(kq);
	kq_fdnode_reap(kq);
	kq_update_wake(kq);
	kq_unlock(kq);
	kq_put(kq);
	if (ret < 0) {
		errno = -ret;
		return -1;
	}
	return ret;
}
