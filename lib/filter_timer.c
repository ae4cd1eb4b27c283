/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * EVFILT_TIMER: every timer of a kqueue lives in one 4-ary heap
 * (kq->theap) and the whole heap is driven by ONE timerfd (kq->timer,
 * CLOCK_MONOTONIC), programmed for the earliest deadline.  A million timers
 * therefore cost a million heap slots, not a million descriptors.  When it
 * fires, the timers due are expired by the scan as it has room for their
 * events (timer_ready, kq_timer_expire_due), not all at once.  On the
 * io_uring backend the timerfd is a ring timeout instead (kq_uring_timer_*,
 * internal.h BACKENDS): no descriptor, set in the wait's io_uring_enter.
 *
 * FreeBSD 14 semantics followed here:
 *  - data is in NOTE_SECONDS / NOTE_MSECONDS (default) / NOTE_USECONDS /
 *    NOTE_NSECONDS; more than one unit, any other fflags bit, or a negative
 *    data is EINVAL.
 *  - periodic unless EV_ONESHOT or NOTE_ABSTIME; a periodic timer with data 0
 *    runs with a period of 1 unit, a oneshot one with data 0 fires at once.
 *  - EV_CLEAR is set on the knote (and so shows in returned flags) for every
 *    timer except NOTE_ABSTIME ones; an NOTE_ABSTIME timer without
 *    EV_ONESHOT/EV_CLEAR therefore stays triggered (data 1) until deleted.
 *  - data returned = expirations since the last retrieval, late periods
 *    included.  Expirations keep being counted while the knote is disabled
 *    (EV_DISABLE / EV_DISPATCH disable the event, not the filter) and are
 *    reported when it is enabled again.
 *  - EV_ADD on an existing timer throws away undelivered expirations and
 *    restarts it with the new data/fflags.  Deviation: an invalid re-add
 *    fails with EINVAL and leaves the knote untouched: timer, udata, flags,
 *    enabled state (FreeBSD reports success and leaves a dead timer).
 *  - NOTE_ABSTIME: data is a CLOCK_REALTIME time since the Epoch.  It is
 *    converted to a CLOCK_MONOTONIC deadline when the timer is armed, so
 *    later steps of the wall clock do not move it; a time already passed
 *    fires at once.
 *
 * The timerfd is opened with the first armed timer and closed when a timer
 * knote dies leaving the heap empty, so a kqueue without timers holds no
 * timerfd, and re-arming one timer again and again reuses the same fd.
 * The heap's array stays until the kqueue is freed (timerheap.c).
 *
 * Invariant that keeps syscalls rare: before any wait the timerfd is
 * armed no later than the earliest deadline (kq->timer_armed says when).
 * Adding timers only lowers a mark that kq_timer_flush() applies once per
 * kevent() call, so a changelist of a thousand timers costs one
 * timerfd_settime; removing the earliest timer (delete, fire) does not
 * re-program it: the early wake-up finds nothing due and re-programs then,
 * so deleting many timers costs none at all.
 *
 * Timer knotes are small (internal.h, KNOTE SIZES): the deadline is in the
 * heap entry, the period and heap node in kn->s.timer, and the fflags the
 * timer was registered with are not kept (a re-add brings its own).
 */
#include "internal.h"
#include "timerheap.h"

#include <sys/timerfd.h>
#include <unistd.h>

#define NOTE_TIMER_UNITS \
	(NOTE_SECONDS | NOTE_MSECONDS | NOTE_USECONDS | NOTE_NSECONDS)

static int64_t
sat_add(int64_t a, int64_t b)		/* a, b >= 0 */
{
	int64_t r;

	return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

static int64_t
sat_mul(int64_t a, int64_t b)		/* a, b >= 0 */
{
	int64_t r;

	return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

/*
 * Validate (fflags, data) for kn and compute the first deadline and the
 * period (0: fires once).  Huge values saturate ("never") instead of
 * wrapping into the past.
 */
/* nanoseconds per unit by the unit bits; 0: more than one (EINVAL) */
static const int64_t timer_unit_ns[NOTE_TIMER_UNITS + 1] = {
	[0] = 1000000,
	[NOTE_SECONDS] = 1000000000,
	[NOTE_MSECONDS] = 1000000,
	[NOTE_USECONDS] = 1000,
	[NOTE_NSECONDS] = 1,
};

static inline int
timer_params(const struct kq_knote *kn, unsigned fflags, int64_t data,
    int64_t now, int64_t *expiry, int64_t *period)
{
	int64_t unit, ns;

	if (fflags & ~(NOTE_TIMER_UNITS | NOTE_ABSTIME))
		return EINVAL;
	if ((unit = timer_unit_ns[fflags & NOTE_TIMER_UNITS]) == 0)
		return EINVAL;
	if (data < 0)
		return EINVAL;
	if (data == 0 && !(kn->flags & EV_ONESHOT))
		data = 1;
	ns = sat_mul(data, unit);
	if (fflags & NOTE_ABSTIME) {
		/* Wall clock read first: the deadline can only come out late. */
		int64_t left = ns - kq_now_ns(CLOCK_REALTIME);
		*expiry = left <= 0 ? now :
		    sat_add(kq_now_ns(CLOCK_MONOTONIC), left);
		*period = 0;
	} else {
		*expiry = sat_add(now, ns);
		*period = (kn->flags & EV_ONESHOT) ? 0 : ns;
	}
	return 0;
}

static void timer_ready(struct kq_kqueue *, struct kq_poll *, uint32_t);

static int
timerfd_open(struct kq_kqueue *kq)
{
	struct kq_poll *p = &kq->timer;
	int fd, err;

	if (p->fd >= 0)
		return 0;
	if (KQ_URING(kq))	/* a ring timeout, no timerfd (BACKENDS) */
		return kq_uring_timer_open(kq, p, timer_ready);
	fd = kq_fd_own(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
	if (fd < 0)
		return errno;
	*p = (struct kq_poll){
		.fd = fd,
		.want = KQ_POLLIN,
		.ready = timer_ready,
		.owner = kq,
	};
	if ((err = kq_poll_register(kq, p)) != 0) {
		kq_fd_close(fd);
		p->fd = -1;
		return err;
	}
	if ((err = kq_backend_attach(kq, p)) != 0) {
		kq_poll_unregister(kq, p);
		kq_fd_close(fd);
		p->fd = -1;
		return err;
	}
	return 0;
}

static void
timerfd_shut(struct kq_kqueue *kq)
{
	struct kq_poll *p = &kq->timer;

	if (p->fd < 0)
		return;
	/* A fork child: the core already closed our fd and the epoll fd. */
	if (kq->pid == getpid()) {
		kq_backend_detach(kq, p);
		if (!p->shared)		/* io_uring: the ring's fd */
			kq_fd_close(p->fd);
	}
	kq_poll_unregister(kq, p);
	p->fd = -1;
	p->ready = NULL;
	kq->timer_armed = INT64_MAX;
}

void
kq_timer_free(struct kq_kqueue *kq)
{
	kq_theap_free(&kq->theap);
}

void
kq_timer_flush_armed(struct kq_kqueue *kq)
{
	struct itimerspec its = { .it_interval = { 0, 0 } };
	int64_t t;

	if (kq_theap_empty(&kq->theap) ||
	    kq_theap_min_at(&kq->theap) >= kq->timer_armed)
		return;
	/* Due and not yet expired: the wake fd says so (kq_update_wake), and
	 * the timerfd is for the first one that is not.  Looking may drop
	 * deleted timers' entries from the root: look at it again. */
	if (kq_timer_backlog(kq) || kq_theap_empty(&kq->theap) ||
	    (t = kq_theap_min_at(&kq->theap)) >= kq->timer_armed)
		return;
	kq->timer_armed = t;
	if (t < 1)
		t = 1;			/* {0, 0} would disarm it */
	if (KQ_URING(kq)) {
		kq_uring_timer_set(kq, t);
		return;
	}
	its.it_value.tv_sec = t / 1000000000;
	its.it_value.tv_nsec = t % 1000000000;
	(void)timerfd_settime(kq->timer.fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* The clock a change's relative timer counts from: read once per kevent()
 * call (kevent.c zeroes it), which no caller can tell from reading it per
 * change - it is still after the caller's own reading before the call. */
static int64_t
change_now(struct kq_kqueue *kq)
{
	if (kq->change_now == 0)
		kq->change_now = kq_now_ns(CLOCK_MONOTONIC);
	return kq->change_now;
}

/*
 * kn is due at now: count its expirations and move or disarm it.  activate
 * is false when called from the scan, which already holds the knote.
 */
static inline __attribute__((always_inline)) void
timer_expire(struct kq_kqueue *kq, struct kq_knote *kn, int64_t now,
    bool activate)
{
	struct kq_timer_state *t = &kn->s.timer;
	int64_t n = 1;

	if (t->period_ns == 0) {
		if (t->heap_index == KQ_THEAP_NONE)
			;			/* never armed: fired at once */
		else if (kq->theap.v[KQ_THEAP_BASE].kn == kn)	/* the root */
			kq_theap_pop(&kq->theap);
		else
			kq_theap_remove(&kq->theap, kn);
	} else {
		int64_t at = kq_theap_at(&kq->theap, kn);
		n = (now - at) / t->period_ns + 1;
		kq_theap_update(&kq->theap, kn,
		    sat_add(at, sat_mul(n, t->period_ns)));
	}
	kn->data = sat_add(kn->data, n);
	if (activate)
		kq_knote_activate(kq, kn);
}

/*
 * The timerfd fired (or fired early, see the invariant above): every timer
 * due by now is due, but none is expired here.  The scan expires them as it
 * has room for their events (kq_timer_expire_due), so a timer's knote is
 * touched once, when its event is copied out, instead of going through a
 * queue as long as the number of timers due (measured: 100k timers due at
 * once made every knote a cache miss twice).
 */
static void
timer_ready(struct kq_kqueue *kq, struct kq_poll *p, uint32_t revents)
{
	uint64_t ticks;
	int64_t now;

	(void)revents;
	if (!KQ_URING(kq))	/* level-triggered: drain (io_uring: a CQE) */
		(void)!read(p->fd, &ticks, sizeof ticks);
	kq->timer_armed = INT64_MAX;		/* it fired: set no more */
	now = kq_now_ns(CLOCK_MONOTONIC);
	if (now > kq->timer_due)
		kq->timer_due = now;
	/* what is not due is set before the next wait (kq_timer_flush) */
}

void
kq_timer_expire_due_armed(struct kq_kqueue *kq, int room)
{
	struct kq_timer_heap *h = &kq->theap;
	struct kq_knote *kn;

	if (kq_theap_empty(h) || kq_theap_min_at(h) > kq->timer_due)
		return;				/* the common case: none due */
	/* kn is the root: its deadline is the root's (its knote's
	 * heap_index may still name a node it has risen from) */
	while (room > 0 && (kn = kq_theap_min(h)) != NULL &&
	    kq_theap_min_at(h) <= kq->timer_due) {
		bool queued = kn->status & KN_QUEUED;
		timer_expire(kq, kn, kq->timer_due, true);
		if (!queued && (kn->status & KN_QUEUED))
			room--;
	}
}

bool
kq_timer_backlog_armed(struct kq_kqueue *kq)
{
	struct kq_timer_heap *h = &kq->theap;
	struct kq_knote *kn;

	if (kq_theap_empty(h) || kq_theap_min_at(h) > kq->timer_due)
		return false;
	/* the root may be a deleted timer's: look at the first armed one */
	kn = kq_theap_min(h);
	return kn != NULL && kq_theap_min_at(h) <= kq->timer_due;
}

/* Start kn from (fflags, data): fire now or arm it in the heap. */
static inline __attribute__((always_inline)) int
timer_start(struct kq_kqueue *kq, struct kq_knote *kn, int64_t expiry,
    int64_t period, int64_t now)
{
	struct kq_timer_state *t = &kn->s.timer;
	int err;

	t->period_ns = period;
	if (expiry <= now && period == 0) {
		timer_expire(kq, kn, now, true);
		return 0;
	}
	if (kq->timer.fd < 0 && (err = timerfd_open(kq)) != 0)
		return err;
	if (t->heap_index == KQ_THEAP_NONE) {
		if ((err = kq_theap_insert(&kq->theap, kn, expiry)) != 0) {
			if (kq_theap_empty(&kq->theap))
				timerfd_shut(kq);
			return err;
		}
	} else {
		kq_theap_update(&kq->theap, kn, expiry);
	}
	return 0;
}

/* Any new timer (filt_timer_attach takes the usual ones first). */
static int __attribute__((noinline))
timer_attach(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *kev)
{
	int64_t now = change_now(kq), expiry, period;
	int err;

	kn->s.timer.heap_index = KQ_THEAP_NONE;
	err = timer_params(kn, kev->fflags, kev->data, now, &expiry, &period);
	if (err != 0)
		return err;
	if (!(kev->fflags & NOTE_ABSTIME))
		kn->flags |= EV_CLEAR;
	/* Only matters without EV_CLEAR (NOTE_ABSTIME): stays triggered. */
	kn->status |= KN_REQUEUE;
	kn->data = 0;
	return timer_start(kq, kn, expiry, period, now);
}

/*
 * The usual timer first, as timer_attach() would take it: relative, in one
 * unit (or the default), due later than now without saturating, the clock
 * read for this call already, the timerfd open, and a heap leaf that stays
 * where it is.  Callgrind, 100k timers: 83 instructions an attach through
 * the general steps (and their register saves), 30 here.
 */
static int
filt_timer_attach(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *kev)
{
	struct kq_timer_heap *h = &kq->theap;
	unsigned fflags = kev->fflags;
	int64_t data = kev->data, now = kq->change_now, ns, expiry;
	uint32_t i = h->n;

	if (fflags <= NOTE_TIMER_UNITS && data > 0 && now != 0 &&
	    kq->timer.fd >= 0 &&
	    !__builtin_mul_overflow(data, timer_unit_ns[fflags], &ns) &&
	    ns != 0 && !__builtin_add_overflow(now, ns, &expiry) &&
	    i < h->cap &&
	    (i == 0 || h->v[(i - 1) / 4 + KQ_THEAP_BASE].at <= expiry)) {
		kn->flags |= EV_CLEAR;
		kn->status |= KN_REQUEUE;
		kn->s.timer.period_ns = (kn->flags & EV_ONESHOT) ? 0 : ns;
		/* kq_theap_insert's leaf */
		h->v[i + KQ_THEAP_BASE] = (struct kq_theap_entry){
			.at = expiry, .kn = kn };
		kn->s.timer.heap_index = i;
		h->n = i + 1;
		return 0;
	}
	return timer_attach(kq, kn, kev);
}

static void
filt_timer_detach(struct kq_kqueue *kq, struct kq_knote *kn)
{
	if (kn->s.timer.heap_index != KQ_THEAP_NONE)
		kq_theap_remove(&kq->theap, kn);
	if (kq_theap_empty(&kq->theap))
		timerfd_shut(kq);
}

static int
filt_timer_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	struct kq_timer_state *t = &kn->s.timer;

	/*
	 * Count periods that elapsed since the timerfd was last read, so data
	 * is exact at retrieval even if the backend was not polled first.
	 */
	if (t->heap_index != KQ_THEAP_NONE) {
		int64_t now = kq_now_ns(CLOCK_MONOTONIC);
		if (kq_theap_at(&kq->theap, kn) <= now)
			timer_expire(kq, kn, now, false);
	}
	ev->fflags = 0;
	ev->data = kn->data;
	return kn->data != 0;
}

/*
 * EV_ADD on an existing timer: restart it; other changes leave it alone.
 * A re-add that fails leaves the timer as it was (internal.h, touch): the
 * timerfd and the heap slot a restart needs are got before anything is
 * thrown away, so the restart itself cannot fail.
 */
static int
filt_timer_touch(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *change)
{
	struct kq_timer_state *t = &kn->s.timer;
	int64_t now, expiry, period;
	int err;

	if (!(change->flags & EV_ADD))
		return 0;
	now = change_now(kq);
	err = timer_params(kn, change->fflags, change->data, now, &expiry,
	    &period);
	if (err != 0)
		return err;
	if ((expiry > now || period != 0) && t->heap_index == KQ_THEAP_NONE) {
		if (kq->timer.fd < 0 && (err = timerfd_open(kq)) != 0)
			return err;
		/* not armed: it takes its node at the new deadline now, so
		 * that the restart below cannot fail */
		if ((err = kq_theap_insert(&kq->theap, kn, expiry)) != 0) {
			if (kq_theap_empty(&kq->theap))
				timerfd_shut(kq);
			return err;
		}
	}
	kq_knote_deactivate(kq, kn);
	kn->data = 0;
	return timer_start(kq, kn, expiry, period, now);
}

const struct kq_filterops kq_filt_timer = {
	.filter = EVFILT_TIMER,
	.isfd = false,
	.small = true,
	.attach = filt_timer_attach,
	.detach = filt_timer_detach,
	.event = filt_timer_event,
	.touch = filt_timer_touch,
};
