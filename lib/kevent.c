/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * kevent(): apply the changelist with FreeBSD's error reporting, then scan.
 *
 * Changes: every change goes through apply_change(), but for the plain
 * adds and deletes of knotes whose ident is not an fd (timers, mostly),
 * which knote.c applies a run at a time (kq_knote_change_run) with the
 * same meaning; a failure (or
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


/* link: for a hashed filter, kq_khash_link()'s for kev (or NULL) */
static int
add_knote(struct kq_kqueue *kq, const struct kq_filterops *fop,
    const struct kevent *kev, struct kq_knote **link)
{
	struct kq_knote *kn;
	bool first_probe = false;
	int err = 0;

	if (!fop->isfd)
		return kq_knote_add_hashed(kq, fop, kev, link);
	/* not open, or not the application's (internal.h, DESCRIPTORS) */
	if (kev->ident > INT_MAX || kq_fd_owned((int)kev->ident))
		return EBADF;
	/*
	 * FreeBSD looks the descriptor up first.  Here the fd table and the
	 * registry grow to the number, so a number beyond the table must be
	 * open before anything is sized by it (one bad add at 67108863 would
	 * cost 512 MiB).  Below kq->nfds nothing grows, and epoll_ctl
	 * answers EBADF: no extra syscall on the common path.
	 */
	if ((int)kev->ident >= kq->nfds && fcntl((int)kev->ident, F_GETFD) < 0)
		return EBADF;
	if ((kn = kq_knote_alloc(kq, fop)) == NULL)
		return ENOMEM;
	kq_knote_set(kn, kev);
	kn->fdn = kq_fdnode_get(kq, (int)kev->ident, fop->probe_first, &err);
	if (kn->fdn == NULL) {
		kq_knote_free(kq, kn);
		return err;
	}
	first_probe = kn->fdn->kind == 0;
	if ((err = kq_knote_insert(kq, kn, NULL)) != 0) {
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
		kq_fdnode_knote_changed(kq, kn);
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
	if (kq_knote_fdn(kn) != NULL)
		kq_fdnode_knote_changed(kq, kn);
	return 0;
}

/*
 * The rearm idiom: EV_DELETE of an fd's knote immediately followed by EV_ADD
 * of the same (ident, filter).  FreeBSD frees the knote and makes a new
 * one; here the new knote takes the old one's memory and its place on the
 * fdnode, which the application cannot tell apart: the filter detaches and
 * attaches again and every field is set anew.  Measured on the rearm
 * benchmark (callgrind, instructions per delete+add pair including the
 * benchmark's own 30): 819 as a delete and an add, 407 renewed through
 * the general functions, 206 with the lookup, the reset and the
 * registration check inline.  Not when the knote holds an
 * EV_FREEWATCH reference (its memory becomes the notice), nor with
 * EV_RECEIPT (each change reports), nor on a number being closed.
 * Returns 2: both changes applied; 1: the delete applied and the add left
 * to the normal path (attach failed: it will fail there the same way, or
 * not); 0: not the idiom, nothing done.  The changes are read in place
 * (EV_SYSFLAGS, which kevent() strips, is none of the bits looked at, and
 * kq_knote_set() keeps none of it).  The knote keeps its pollmask: that is
 * the fdnode's record of what the registration holds for it, which
 * kq_fdnode_knote_changed() compares the new knote's share with.
 */
static int
renew_knote(struct kq_kqueue *kq, const struct kevent *del,
    const struct kevent *add)
{
	const struct kq_filterops *fop;
	struct kq_knote *kn;

	if ((del->flags & (EV_DELETE | EV_RECEIPT)) != EV_DELETE ||
	    (add->flags & (EV_ADD | EV_DELETE | EV_RECEIPT)) != EV_ADD ||
	    (add->flags & (EV_ENABLE | EV_DISABLE)) == (EV_ENABLE | EV_DISABLE) ||
	    add->ident != del->ident || add->filter != del->filter ||
	    (fop = kq_filterops_lookup(del->filter)) == NULL || !fop->isfd ||
	    (kn = kq_knote_find_fd(kq, del->filter, del->ident)) == NULL ||
	    (kn->status & KN_FREEWATCH))
		return 0;
	/* kq_knote_find_fd() found the node open (a closed one is drained
	 * there); a close from here on is drained at the next kevent() */
	fop->detach(kq, kn);
	if (kn->status & KN_QUEUED)
		TAILQ_REMOVE(&kq->active, kn, link);
	if (kn->status & KN_POLLED)
		TAILQ_REMOVE(&kq->polled, kn, plink);
	/* as kq_knote_alloc() leaves a whole knote */
	kn->status = KN_WHOLE;
	kn->data = 0;
	kn->fflags = 0;
	memset(&kn->u, 0, sizeof kn->u);
	kn->u.vnode.wd = -1;
	kq_knote_set(kn, add);
	if (fop->attach(kq, kn, add) != 0) {
		kq_knote_free_unattached(kq, kn);
		return 1;
	}
	if (add->flags & EV_FREEWATCH)
		kq_knote_set_freewatch(kn, true);
	kq_fdnode_knote_changed(kq, kn);
	return 2;
}

/* bucket: kev's in kq->khash as it is now, if known (else UINT32_MAX) */
static int
apply_change(struct kq_kqueue *kq, const struct kevent *kev, uint32_t bucket)
{
	const struct kq_filterops *fop = kq_filterops_lookup(kev->filter);
	struct kq_knote *kn, **link = NULL;
	uint32_t gen = kq->khash.gen;

	if (fop == NULL)
		return EINVAL;
	if ((kev->flags & (EV_ENABLE | EV_DISABLE)) == (EV_ENABLE | EV_DISABLE))
		return EINVAL;
	if (fop->isfd) {
		kn = kq_knote_find_fd(kq, kev->filter, kev->ident);
	} else {
		/* the link is kept: an add goes there, a delete unlinks there */
		if (bucket == UINT32_MAX && kq->khash.b != NULL)
			bucket = kq_khash_bucket(&kq->khash, kev->filter,
			    kev->ident);
		link = kq_khash_link(&kq->khash, bucket, kev->filter,
		    kev->ident);
		kn = link != NULL ? *link : NULL;
	}
	if (kn == NULL) {
		/* EV_DELETE wins over EV_ADD (FreeBSD, on an existing knote).
		 * A change with EV_DELETE takes no reference, so with
		 * EV_FREEWATCH it never makes a knote either: nothing to
		 * delete is ENOENT, and udata goes back in the EV_ERROR entry.
		 * Without EV_FREEWATCH FreeBSD adds the missing knote. */
		if ((kev->flags & EV_ADD) &&
		    (kev->flags & (EV_DELETE | EV_FREEWATCH)) !=
		    (EV_DELETE | EV_FREEWATCH))
			return add_knote(kq, fop, kev, link);
		/* FreeBSD looks the fd up before the knote */
		if (fop->isfd && (kev->ident > INT_MAX ||
		    kq_fd_owned((int)kev->ident) ||
		    fcntl((int)kev->ident, F_GETFD) < 0))
			return EBADF;
		return ENOENT;
	}
	if (kev->flags & EV_DELETE) {
		if (link != NULL)
			kq_knote_delete_at(kq, kn, link, gen);
		else
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

/* A thread cancelled in its wait holds only its reference (CANCELLATION). */
static void
wait_cancelled(void *arg)
{
	struct kq_kqueue *kq = arg;

	if (KQ_URING(kq))
		atomic_fetch_sub_explicit(&kq->sleepers, 1,
		    memory_order_relaxed);
	kq_put(kq);
}

/*
 * The wait, a cancellation point.  The library is built with -fexceptions
 * (lib/Makefile.am), so pthread_cleanup_push() is glibc's cleanup-attribute
 * form: a frame on the stack that the cancellation's unwinding runs, where
 * the C form costs a sigsetjmp() and a register/unregister call pair on
 * every wait (callgrind: about 50 instructions a waiting kevent()).
 */
static int
wait_cancellable(struct kq_kqueue *kq, struct kq_ready *ready,
    const struct timespec *tsp)
{
	int r;

	pthread_cleanup_push(wait_cancelled, kq);
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
	r = kq_backend_wait(kq, ready, KQ_READY_MAX, tsp);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_cleanup_pop(0);
	return r;
}

/*
 * A call that finds timers due and not yet expired (and nothing else
 * queued) looks at epoll first, so that what is ready there is not left
 * behind the backlog.  Unless nothing could be: no registration but the
 * wake eventfd and the timerfd, and the timerfd not set since it fired (it
 * was read then, and is set again only once the backlog is taken), so the
 * wait could only take the wake fd's edge - which the call's end would
 * then write again, the backlog being still there.  Draining 100k due
 * timers 256 per call was an epoll_wait() and a write() per call, a tenth
 * of the time (strace, perf).  Not on io_uring, whose wait also reaps
 * what the kernel said.
 */
static bool
backlog_alone(struct kq_kqueue *kq)
{
	return TAILQ_EMPTY(&kq->active) && !KQ_URING(kq) &&
	    kq->npolls == 1 + (kq->timer.fd >= 0) &&
	    kq->timer_armed == INT64_MAX &&
	    !atomic_load_explicit(&kq->ino_mail, memory_order_relaxed);
}

static int
scan(struct kq_kqueue *kq, struct kevent *out, int max,
    const struct timespec *timeout, bool cancellable)
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
	kq_backend_reap_stale(kq);
	if (!TAILQ_EMPTY(&kq->active) || kq_timer_backlog(kq)) {
		kq_backend_flush(kq);
		kq_timer_flush(kq);
		if (!backlog_alone(kq)) {
			r = kq_backend_wait(kq, ready, KQ_READY_MAX, &zero);
			kq_backend_reap(kq);
			if (r > 0)
				dispatch_ready(kq, ready, r);
		}
	}
	for (;;) {
		kq_drain_closed(kq);
		kq_backend_reap_stale(kq);
		poll_due(kq);
		/* the calls only when there is something to take: this runs
		 * before and after every wait */
		if (!TAILQ_EMPTY(&kq->notices))
			n += kq_notices_copyout(kq, out + n, max - n);
		if (n < max) {
			kq_timer_expire_due(kq, max - n);
			if (!TAILQ_EMPTY(&kq->active))
				n += collect(kq, out + n, max - n);
		}
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
		/* counted under the lock: a kevent() returning meanwhile
		 * sees this sleeper and defers no re-arm (BACKENDS) */
		if (KQ_URING(kq))
			kq_uring_wait_begin(kq);
		kq_unlock(kq);
		/* A wait that cannot block is no wait to be cancelled in: a
		 * cancel pending at entry was acted on there, and one sent
		 * during a zero-timeout epoll_wait() is as if sent after it
		 * (it takes effect at the thread's next cancellation point). */
		r = cancellable && tsp != &zero ?
		    wait_cancellable(kq, ready, tsp) :
		    kq_backend_wait(kq, ready, KQ_READY_MAX, tsp);
		/* an alias was closed: if it was the last one, we are done */
		if (atomic_load_explicit(&kq->suspect, memory_order_relaxed))
			kq_reap_suspects();
		pthread_mutex_lock(&kq->lock);
		if (KQ_URING(kq))
			atomic_fetch_sub_explicit(&kq->sleepers, 1,
			    memory_order_relaxed);
		if (kq->dead) {
			/* the edge kq_kill() wrote woke one sleeper: pass
			 * it on to the next */
			kq_wake_post(kq);
			return -EBADF;
		}
		/* our signal handler ran for a signal the application ignores:
		 * on FreeBSD nothing would have interrupted the wait */
		if (r == -EINTR && kq_signal_phantom_eintr(intr))
			continue;
		if (r < 0)
			return r;
		kq_backend_reap(kq);
		dispatch_ready(kq, ready, r);
		if (tsp != NULL && tsp->tv_sec == 0 && tsp->tv_nsec == 0 &&
		    tsp != &capped) {
			/* timed out: one last look, no more waiting */
			kq_drain_closed(kq);
			n = kq_notices_copyout(kq, out, max);
			if (n < max) {
				kq_timer_expire_due(kq, max - n);
				n += collect(kq, out + n, max - n);
			}
			return n;
		}
	}
}

/*
 * A changelist names knotes the cache has not seen: kevent() loads, ahead of
 * the change it applies, the bucket of the change PREFETCH_AHEAD further on,
 * and the first knote of the one PREFETCH_AHEAD / 2 on (whose bucket came
 * in meanwhile), so that they are on their way while it works.  Measured on
 * 100k timers: a lookup is two or three cache misses, most of an add or
 * delete; at 1M, with the misses going to memory, one change ahead left
 * half of the knote's miss and of the bucket's (reading it to load its
 * knote) in the lookup; eight ahead (the knote four) took 15% off adding
 * and deleting a million timers, four ahead half of that.  Returns the
 * bucket, which the change's turn uses instead of hashing again (unless
 * the table grew meanwhile: kevent() then forgets the ring).  The table
 * only grows, so the number stays a valid bucket to prefetch.
 */
#define PREFETCH_AHEAD	8
static inline uint32_t
prefetch_bucket(struct kq_kqueue *kq, const struct kevent *kev)
{
	/* whatever the filter: an fd's change never uses its bucket, and
	 * asking which filter it is cost more than the hash */
	uint32_t j = kq_khash_bucket(&kq->khash, kev->filter, kev->ident);

	__builtin_prefetch(&kq->khash.b[j]);
	return j;
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
	uint32_t ahead[PREFETCH_AHEAD];	/* buckets of the changes ahead */
	uint32_t ahead_mask;		/* the table they are buckets of */
	int i, nerrors = 0, ret, cs;

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
	/* a cancellation point only where it waits, as FreeBSD's: a pending
	 * cancel ends a call that may wait before it changes anything */
	if (nevents > 0)
		pthread_testcancel();
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
	kq_fork_adopt();
	if (nchanges > 0 && !only_user_changes(changelist, nchanges))
		kq_fdreg_check_new_objects();
	kq_reap_suspects();
	if ((kq = kq_lookup(fd, true)) == NULL) {
		pthread_setcancelstate(cs, NULL);
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
	memset(ahead, 0xff, sizeof ahead);		/* UINT32_MAX: none */
	ahead_mask = kq->khash.mask;
	for (i = 0; i < nchanges; i++) {
		const struct kq_filterops *fop;
		struct kevent kev;
		uint32_t bucket;
		int err;

		/* timers' adds and deletes, mostly: a run of them at once */
		if ((fop = kq_filterops_lookup(changelist[i].filter)) != NULL &&
		    !fop->isfd) {
			int from = i;

			i = kq_knote_change_run(kq, changelist, i, nchanges,
			    &err);
			if (i != from)	/* the buckets ahead were not kept */
				memset(ahead, 0xff, sizeof ahead);
			if (i == nchanges)
				break;
			if (err > 0) {
				/* refused as the run's first change: its slot
				 * still holds its own bucket, and is change
				 * i + PREFETCH_AHEAD's, which must not take it */
				ahead[i % PREFETCH_AHEAD] = UINT32_MAX;
				kev = changelist[i];
				goto failed;
			}
		}
		bucket = ahead[i % PREFETCH_AHEAD];

		if (kq->khash.mask != ahead_mask) {
			/* the table grew: the buckets ahead are the old one's */
			memset(ahead, 0xff, sizeof ahead);
			ahead_mask = kq->khash.mask;
			bucket = UINT32_MAX;
		}
		if (kq->khash.n != 0) {
			/* change i + PREFETCH_AHEAD / 2's bucket came in by
			 * now; change i's slot is free for i + PREFETCH_AHEAD */
			uint32_t j = ahead[(i + PREFETCH_AHEAD / 2) % PREFETCH_AHEAD];

			if (j != UINT32_MAX && kq->khash.b[j] != NULL)
				__builtin_prefetch(kq->khash.b[j]);
			ahead[i % PREFETCH_AHEAD] =
			    i + PREFETCH_AHEAD < nchanges ? prefetch_bucket(kq,
			    &changelist[i + PREFETCH_AHEAD]) : UINT32_MAX;
		} else {
			/* nothing to prefetch, but the slot is change i + 8's:
			 * it must not keep change i's bucket */
			ahead[i % PREFETCH_AHEAD] = UINT32_MAX;
		}
		if ((changelist[i].flags & EV_DELETE) && i + 1 < nchanges) {
			int done = renew_knote(kq, &changelist[i],
			    &changelist[i + 1]);
			if (done == 2) {
				/* change i + 1's turn is skipped: its slot is
				 * not refilled for i + 1 + PREFETCH_AHEAD */
				i++;
				ahead[i % PREFETCH_AHEAD] = UINT32_MAX;
			}
			if (done != 0)
				continue;
		}
		kev = changelist[i];
		if (kev.filter == 0)
			continue;
		kev.flags &= ~EV_SYSFLAGS;
		err = apply_change(kq, &kev, bucket);
		if (err == 0 && !(kev.flags & EV_RECEIPT))
			continue;
failed:
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
	ret = scan(kq, eventlist, nevents, timeout, cs == PTHREAD_CANCEL_ENABLE);
out:
	kq_backend_flush_exit(kq);
	kq_timer_flush(kq);
	kq_fdnode_reap(kq);
	kq_backend_commit(kq);
	kq_update_wake(kq);
	kq_unlock(kq);
	kq_put(kq);
	pthread_setcancelstate(cs, NULL);
	if (ret < 0) {
		errno = -ret;
		return -1;
	}
	return ret;
}
