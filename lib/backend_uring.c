/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The io_uring backend (internal.h, BACKENDS, has the rules): every
 * kq_poll is a ring poll whose user_data is its handle; the changes a
 * kevent() call makes go in as SQEs and reach the kernel in the same
 * io_uring_enter as its wait.  SQEs are written under kq->lock, CQEs read
 * under kq->lock; the enter itself holds no lock.
 *
 * liburing (2.3) is used for the ring's mapping, the SQE helpers and the
 * opcode probe only: the ring fd is the library's own (kq_fd_own), so it is
 * set up and closed here, never by io_uring_queue_init/exit (whose close()
 * the close family would refuse), and the enter is a plain system call
 * whose to_submit is what is published, whichever thread makes it.
 */
#include "internal.h"

#ifdef HAVE_LIBURING	/* built without it: internal.h's stubs */
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SQ_ENTRIES	256
#define CQ_ENTRIES	4096
#define REAP_MAX	256	/* CQEs taken per reap; the rest the next time */

struct kq_uring {
	struct io_uring ring;
	int fd;				/* the ring's fd, owned */
	unsigned sq_entries;
	_Atomic unsigned reaps;		/* CQ reads so far (kq_uring_wait) */
	bool msg_wake;			/* wake edges are CQEs sent to the ring */
	/* the CQE at the CQ head is taken already, left there so that the
	 * ring (the kqueue fd) polls readable while level re-arms wait for
	 * the next kevent() (kq_uring_commit); every read skips it */
	_Atomic bool token;
	bool timeout_live;		/* kq->timer's ring timeout is in the SQ
					 * or the kernel, its CQE not reaped */
	/* a timeout SQE's deadline, by the SQE's index: the kernel reads it
	 * when it takes the SQE, maybe in another thread's enter, so each
	 * stays as written until its SQE is taken (get_sqe reuses none
	 * before) */
	struct __kernel_timespec deadline[SQ_ENTRIES];
};

#ifndef IORING_REGISTER_SEND_MSG_RING
#define IORING_REGISTER_SEND_MSG_RING	31	/* Linux 6.13 */
#endif

/*
 * A wake edge as a CQE posted straight into the ring (user_data: the wake
 * poll's handle), by IORING_REGISTER_SEND_MSG_RING: a plain system call
 * (signal-safe: kq_kick), with no ring of the sender's, and synchronous -
 * the CQE is in the CQ when it returns, so an edge defused after it is
 * really gone (kq_uring_defuse), unlike the CQE of a poll on the wake
 * eventfd, which the arming thread's task_work posts some time later.
 * 0 or errno.
 */
static int
send_wake(const struct kq_uring *u, uint64_t ud)
{
	struct io_uring_sqe sqe;

	memset(&sqe, 0, sizeof sqe);
	sqe.opcode = IORING_OP_MSG_RING;
	sqe.fd = u->fd;
	sqe.addr = 0;			/* IORING_MSG_DATA */
	sqe.len = 0;			/* the CQE's res */
	sqe.off = ud;			/* the CQE's user_data */
	return syscall(__NR_io_uring_register, -1, IORING_REGISTER_SEND_MSG_RING,
	    &sqe, 1) < 0 ? errno : 0;
}

#ifdef KQ_STATS
extern _Atomic unsigned long kq_stat_ctl_calls;
#define COUNT_CTL()	atomic_fetch_add_explicit(&kq_stat_ctl_calls, 1, \
			    memory_order_relaxed)
#else
#define COUNT_CTL()	((void)0)
#endif

/* What the kernel offers, asked once per process: 0 not yet, 1 enough,
 * -1 not (every kqueue then runs on epoll). */
static _Atomic int kernel_ok;

#ifdef KQ_STATS
void
kq_uring_test_reset(void)
{
	atomic_store(&kernel_ok, 0);
}
#endif

static inline uint64_t
handle_of(const struct kq_poll *p)
{
	return (uint64_t)p->gen << 32 | p->slot;
}

static int
sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
    void *arg, size_t argsz)
{
	return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete,
	    flags, arg, argsz);
}

/* Published SQEs the kernel has not taken (any thread, no lock). */
static inline unsigned
sq_unsubmitted(const struct kq_uring *u)
{
	return __atomic_load_n(u->ring.sq.ktail, __ATOMIC_ACQUIRE) -
	    __atomic_load_n(u->ring.sq.khead, __ATOMIC_ACQUIRE);
}

static inline unsigned
cq_unreaped(const struct kq_uring *u)
{
	return __atomic_load_n(u->ring.cq.ktail, __ATOMIC_ACQUIRE) -
	    __atomic_load_n(u->ring.cq.khead, __ATOMIC_ACQUIRE);
}

/* Under kq->lock: the first CQE not taken yet (past the token, if kept). */
static inline unsigned
cq_first(const struct kq_uring *u)
{
	return *u->ring.cq.khead + atomic_load_explicit(&u->token,
	    memory_order_relaxed);
}

/* Under kq->lock: the CQEs before end are taken.  keep: the last of them
 * (the token, if nothing new was) stays in the CQ as the token. */
static void
cq_taken(struct kq_uring *u, unsigned end, bool keep)
{
	unsigned head = *u->ring.cq.khead;
	bool token = keep && end != head;

	atomic_store_explicit(&u->token, token, memory_order_relaxed);
	__atomic_store_n(u->ring.cq.khead, token ? end - 1 : end,
	    __ATOMIC_RELEASE);
}

static inline struct io_uring_cqe *
cq_at(struct kq_uring *u, unsigned i)
{
	return &u->ring.cq.cqes[i & u->ring.cq.ring_mask];
}

/* Under kq->lock: the SQEs written so far become visible to the kernel. */
static inline void
publish(struct kq_uring *u)
{
	struct io_uring_sq *sq = &u->ring.sq;

	sq->sqe_head = sq->sqe_tail;
	__atomic_store_n(sq->ktail, sq->sqe_tail, __ATOMIC_RELEASE);
}

/* Under kq->lock: hand the kernel what is published, without waiting. */
static void
submit_now(struct kq_uring *u)
{
	unsigned n;

	publish(u);
	while ((n = sq_unsubmitted(u)) != 0 &&
	    sys_enter(u->fd, n, 0, 0, NULL, 0) < 0 && errno == EINTR)
		;
}

/* Under kq->lock: an SQE, submitting what is queued if the SQ is full. */
static struct io_uring_sqe *
get_sqe(struct kq_uring *u)
{
	struct io_uring_sqe *sqe;

	while ((sqe = io_uring_get_sqe(&u->ring)) == NULL)
		submit_now(u);
	return sqe;
}

/* Edge-triggered and not one-shot: a multishot poll (see BACKENDS). */
static inline bool
multishot(uint32_t want)
{
	return (want & (KQ_POLLET | KQ_POLLONESHOT)) == KQ_POLLET;
}

static inline unsigned
poll_mask(uint32_t want)
{
	return want & ~(KQ_POLLET | KQ_POLLONESHOT);
}

/* A new poll for p: a new generation, so what its earlier arms left in the
 * CQ is dropped by kq_poll_lookup(). */
static void
arm(struct kq_kqueue *kq, struct kq_poll *p, uint32_t want, bool change)
{
	struct kq_uring *u = kq->uring;
	struct io_uring_sqe *sqe = get_sqe(u);

	p->gen = ++kq->slot_gen[p->slot];
	io_uring_prep_poll_add(sqe, p->fd, poll_mask(want));
	if (multishot(want))
		sqe->len |= IORING_POLL_ADD_MULTI;
	sqe->user_data = handle_of(p);
	p->in_backend = true;
	if (change)
		COUNT_CTL();
}

static void
disarm(struct kq_kqueue *kq, struct kq_poll *p)
{
	struct kq_uring *u = kq->uring;
	struct io_uring_sqe *sqe = get_sqe(u);

	io_uring_prep_poll_remove(sqe, handle_of(p));
	sqe->user_data = 0;		/* its own failure: ignored */
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	p->in_backend = false;
	COUNT_CTL();
}

/* Same mode, other events: in place (the kernel re-checks readiness). */
static void
update(struct kq_kqueue *kq, struct kq_poll *p, uint32_t want)
{
	struct kq_uring *u = kq->uring;
	struct io_uring_sqe *sqe = get_sqe(u);

	io_uring_prep_poll_update(sqe, handle_of(p), 0, poll_mask(want),
	    IORING_POLL_UPDATE_EVENTS);
	sqe->user_data = handle_of(p) | KQ_URING_UPDATE;
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	COUNT_CTL();
}

/* ---------------------------------------------------------------- setup */

static void
unmap(struct kq_uring *u)
{
	struct io_uring_sq *sq = &u->ring.sq;
	struct io_uring_cq *cq = &u->ring.cq;

	munmap(sq->sqes, u->sq_entries * sizeof(struct io_uring_sqe));
	if (cq->ring_ptr != NULL && cq->ring_ptr != sq->ring_ptr)
		munmap(cq->ring_ptr, cq->ring_sz);
	munmap(sq->ring_ptr, sq->ring_sz);
}

/* The kernel refuses io_uring, or lacks what this backend needs. */
static bool
kernel_lacks(int err)
{
	return err == ENOSYS || err == EPERM || err == EINVAL ||
	    err == EOPNOTSUPP || err == EACCES;
}

/* The kernel has every feature, opcode and register op used here. */
static int
probe_kernel(struct kq_uring *u, const struct io_uring_params *p)
{
	struct io_uring_probe *pr;
	struct io_uring_sync_cancel_reg reg;
	unsigned features = p->features;
	bool ops;
	int fail = 0;

#ifdef KQ_STATS
	fail = kq_uring_test_fail;
	if (fail == KQ_URING_FAIL_EXT_ARG)
		features &= ~IORING_FEAT_EXT_ARG;
#endif
	if ((features & (IORING_FEAT_EXT_ARG | IORING_FEAT_NODROP)) !=
	    (IORING_FEAT_EXT_ARG | IORING_FEAT_NODROP))
		return EOPNOTSUPP;
	if ((pr = io_uring_get_probe_ring(&u->ring)) == NULL)
		return EOPNOTSUPP;
	ops = io_uring_opcode_supported(pr, IORING_OP_POLL_ADD) &&
	    io_uring_opcode_supported(pr, IORING_OP_POLL_REMOVE) &&
	    fail != KQ_URING_FAIL_OPCODE;
	/* EVFILT_TIMER's one ring timeout (kq_uring_timer_set); its
	 * IORING_TIMEOUT_UPDATE (5.11) predates SYNC_CANCEL (6.0), below */
	ops = ops && io_uring_opcode_supported(pr, IORING_OP_TIMEOUT) &&
	    io_uring_opcode_supported(pr, IORING_OP_TIMEOUT_REMOVE) &&
	    fail != KQ_URING_FAIL_TIMEOUT;
	io_uring_free_probe(pr);
	if (!ops)
		return EOPNOTSUPP;
	/* cancel a request that does not exist: ENOENT if the kernel knows
	 * the operation (6.0), EINVAL if not */
	memset(&reg, 0, sizeof reg);
	reg.addr = 0;
	reg.fd = -1;
	reg.timeout.tv_sec = -1;
	reg.timeout.tv_nsec = -1;
	if (fail == KQ_URING_FAIL_SYNC_CANCEL ||
	    (syscall(__NR_io_uring_register, u->fd, IORING_REGISTER_SYNC_CANCEL,
	    &reg, 1) < 0 && errno != ENOENT))
		return EOPNOTSUPP;
	return 0;
}

static int
ring_setup(struct kq_uring *u, struct io_uring_params *p)
{
	unsigned i;
	int fd, err;

	memset(p, 0, sizeof *p);
	p->flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP |
	    IORING_SETUP_SUBMIT_ALL;
	p->cq_entries = CQ_ENTRIES;
	kq_fd_making();
	fd = (int)syscall(__NR_io_uring_setup, SQ_ENTRIES, p);
#ifdef KQ_STATS
	if (kq_uring_test_fail == KQ_URING_FAIL_SETUP_ENOSYS ||
	    kq_uring_test_fail == KQ_URING_FAIL_SETUP_EPERM) {
		if (fd >= 0)
			kq_real_close(fd);
		fd = -1;
		errno = kq_uring_test_fail == KQ_URING_FAIL_SETUP_ENOSYS ?
		    ENOSYS : EPERM;
	}
#endif
	/* the kernel makes it O_CLOEXEC */
	if ((fd = kq_fd_adopt(fd)) < 0)
		return errno;
	if (p->sq_entries > SQ_ENTRIES) {	/* a deadline per SQE */
		kq_fd_close(fd);
		return ENOMEM;
	}
	if ((err = -io_uring_queue_mmap(fd, p, &u->ring)) != 0) {
		kq_fd_close(fd);
		return err;
	}
	u->fd = fd;
	u->sq_entries = p->sq_entries;
	/* liburing 2.3 leaves the SQ index array to the submitter */
	for (i = 0; i < u->ring.sq.ring_entries; i++)
		u->ring.sq.array[i] = i;
	/* a fork child must not touch the parent's ring: it has none */
	madvise(u->ring.sq.ring_ptr, u->ring.sq.ring_sz, MADV_DONTFORK);
	if (u->ring.cq.ring_ptr != u->ring.sq.ring_ptr)
		madvise(u->ring.cq.ring_ptr, u->ring.cq.ring_sz, MADV_DONTFORK);
	madvise(u->ring.sq.sqes, p->sq_entries * sizeof(struct io_uring_sqe),
	    MADV_DONTFORK);
	return 0;
}

static void
ring_free(struct kq_uring *u)
{
	struct io_uring_sync_cancel_reg reg;

	/* release every polled file now, not when the ring's exit work runs */
	memset(&reg, 0, sizeof reg);
	reg.fd = -1;
	reg.flags = IORING_ASYNC_CANCEL_ANY;
	reg.timeout.tv_sec = -1;
	reg.timeout.tv_nsec = -1;
	(void)syscall(__NR_io_uring_register, u->fd, IORING_REGISTER_SYNC_CANCEL,
	    &reg, 1);
	unmap(u);
	kq_fd_close(u->fd);
	free(u);
}

int
kq_uring_init(struct kq_kqueue *kq)
{
	struct io_uring_params p;
	struct epoll_event ev = { .events = EPOLLIN };
	struct kq_uring *u;
	int known = atomic_load(&kernel_ok), err;

	if (known < 0)
		return EOPNOTSUPP;
	if ((u = calloc(1, sizeof *u)) == NULL)
		return ENOMEM;
	if ((err = ring_setup(u, &p)) != 0) {
		free(u);
		if (kernel_lacks(err))
			atomic_store(&kernel_ok, -1);
		return err;
	}
	if (known == 0) {
		if ((err = probe_kernel(u, &p)) != 0) {
			atomic_store(&kernel_ok, -1);
			ring_free(u);
			return err;
		}
		atomic_store(&kernel_ok, 1);
	}
	/* Linux 6.13: a message of user_data 0, whose CQE (there already:
	 * the post is synchronous) is taken at once */
	if ((u->msg_wake = send_wake(u, 0) == 0)) {
		struct io_uring_cqe *cqe;

		if (io_uring_peek_cqe(&u->ring, &cqe) == 0 && cqe != NULL &&
		    cqe->user_data == 0)
			io_uring_cq_advance(&u->ring, 1);
	}
	/* the kqueue fd polls readable while the kernel has said something
	 * not yet reaped */
	if (epoll_ctl(kq->fd, EPOLL_CTL_ADD, u->fd, &ev) < 0) {
		err = errno;
		ring_free(u);
		return err;
	}
	kq->uring = u;
	return 0;
}

void
kq_uring_close(struct kq_kqueue *kq)
{
	ring_free(kq->uring);
	kq->uring = NULL;
}

/* ------------------------------------------------------------- timers */

/*
 * EVFILT_TIMER (filter_timer.c) has one deadline per kqueue to keep in the
 * kernel, the earliest of its heap: here one ring timeout (IORING_OP_TIMEOUT,
 * IORING_TIMEOUT_ABS on CLOCK_MONOTONIC, as the timerfd it replaces),
 * whose user_data is kq->timer's handle.  A new deadline while it is live
 * is an update in place (IORING_TIMEOUT_UPDATE), which keeps the handle;
 * one after it completed is a new timeout with a new generation, so no CQE
 * of an earlier one is taken for it.  The SQEs go in with the next enter,
 * the wait's as a rule.  Its CQE (-ETIME) is a report like a poll's: the
 * kqueue fd polls readable until it is reaped.
 */

/* The timer poll: no descriptor of its own.  Its fd is the ring's, so
 * filter_timer.c sees it open; shared: kq_free does not close it. */
int
kq_uring_timer_open(struct kq_kqueue *kq, struct kq_poll *p,
    void (*ready)(struct kq_kqueue *, struct kq_poll *, uint32_t))
{
	int err;

	*p = (struct kq_poll){
		.fd = kq->uring->fd,
		.shared = true,
		.ready = ready,
		.owner = kq,
	};
	if ((err = kq_poll_register(kq, p)) != 0) {
		p->fd = -1;
		return err;
	}
	kq->uring->timeout_live = false;
	return 0;
}

/* Under kq->lock: the timeout to the CLOCK_MONOTONIC time at (ns). */
void
kq_uring_timer_set(struct kq_kqueue *kq, int64_t at)
{
	struct kq_uring *u = kq->uring;
	struct kq_poll *p = &kq->timer;
	struct io_uring_sqe *sqe = get_sqe(u);
	struct __kernel_timespec *ts = &u->deadline[sqe - u->ring.sq.sqes];

	ts->tv_sec = at / 1000000000;
	ts->tv_nsec = at % 1000000000;
	if (u->timeout_live) {
		/* -ENOENT or -EALREADY: it fired meanwhile, and its own
		 * CQE (maybe after this one's) says so: ignored */
		io_uring_prep_timeout_update(sqe, ts, handle_of(p),
		    IORING_TIMEOUT_ABS);
		sqe->user_data = 0;
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	} else {
		p->gen = ++kq->slot_gen[p->slot];
		io_uring_prep_timeout(sqe, ts, 0, IORING_TIMEOUT_ABS);
		sqe->user_data = handle_of(p);
		u->timeout_live = true;
	}
	publish(u);
}

/* The last timer is gone: so is the timeout (its -ECANCELED is stale: the
 * caller unregisters p). */
static void
timeout_remove(struct kq_kqueue *kq, struct kq_poll *p)
{
	struct kq_uring *u = kq->uring;
	struct io_uring_sqe *sqe;

	if (!u->timeout_live)
		return;
	sqe = get_sqe(u);
	io_uring_prep_timeout_remove(sqe, handle_of(p), 0);
	sqe->user_data = 0;
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	u->timeout_live = false;
	publish(u);
}

/* ------------------------------------------------------- registrations */

/*
 * A new user fd (under its slot lock, so fd is the number the caller
 * means): an open socket, not an O_PATH one?  Then epoll would take it -
 * every socket has a poll method, and the EBADF/EPERM/EINVAL/ELOOP that
 * epoll_ctl ADD can give are for closed or O_PATH descriptors, files
 * without poll and epoll sets - so the ADD/DEL pair that asks epoll (two
 * calls, an epitem made and freed) is one getsockopt: it looks the
 * descriptor up as epoll does (fdget: O_PATH is EBADF), and says ENOTSOCK
 * for any other file, which epoll is then asked about.  (churn: 12 -> 11
 * system calls per connection.)
 */
static bool
is_socket(int fd)
{
	int type, e = errno;
	socklen_t len = sizeof type;
	bool yes = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;

	errno = e;
	return yes;
}

int
kq_uring_attach(struct kq_kqueue *kq, struct kq_poll *p)
{
	struct epoll_event ev = { .events = 0 };

	if (p->userfd) {
		/* epoll's answer classifies a new fd: EBADF, EPERM (no poll:
		 * always ready), as on the epoll backend - but a socket needs
		 * no asking (classify) */
		if (!is_socket(p->fd)) {
			if (epoll_ctl(kq->fd, EPOLL_CTL_ADD, p->fd, &ev) < 0)
				return errno;
			(void)epoll_ctl(kq->fd, EPOLL_CTL_DEL, p->fd, &ev);
		}
	} else if (p == &kq->wake) {
		/* edges are messages to the ring: the eventfd is not used */
		if (kq->uring->msg_wake)
			return 0;
		/* the wake eventfd also makes the kqueue fd readable */
		ev.events = EPOLLIN | EPOLLET;
		if (epoll_ctl(kq->fd, EPOLL_CTL_ADD, p->fd, &ev) < 0)
			return errno;
	}
	if (p->want != 0) {
		arm(kq, p, p->want, true);
		publish(kq->uring);
	}
	p->armed = p->want;
	return 0;
}

void
kq_uring_detach(struct kq_kqueue *kq, struct kq_poll *p)
{
	if (p == &kq->timer) {
		timeout_remove(kq, p);
		return;
	}
	if (p->dirty) {
		TAILQ_REMOVE(&kq->dirty, p, dirty_link);
		p->dirty = false;
	}
	/* a closed user fd's node (kq_drain_closed): the close path cancelled
	 * what the kernel had; an arm still in the SQ then went in after
	 * it, so remove whatever this handle is now */
	if (p->in_backend || (p->userfd &&
	    atomic_load(&((struct kq_fdnode *)p->owner)->closed))) {
		disarm(kq, p);
		publish(kq->uring);
	}
	p->armed = 0;
}

/* The close path: no kq->lock, maybe a signal handler; a system call
 * only, never the SQ ring.  Under the fd's slot lock, so p's handle is the
 * one its last arm (made under that lock) used. */
void
kq_uring_forget(struct kq_kqueue *kq, struct kq_poll *p)
{
	struct kq_uring *u = kq->uring;
	struct io_uring_sync_cancel_reg reg;
	int e = errno;

	memset(&reg, 0, sizeof reg);
	reg.addr = handle_of(p);
	reg.fd = -1;
	reg.timeout.tv_sec = -1;
	reg.timeout.tv_nsec = -1;
	(void)syscall(__NR_io_uring_register, u->fd, IORING_REGISTER_SYNC_CANCEL,
	    &reg, 1);
	/* an arm not submitted yet is removed by the drain: make it soon */
	if (sq_unsubmitted(u) != 0)
		kq_kick(kq);
	errno = e;
}

/* One registration to p->want, with at most one SQE (two for a change of
 * mode).  backend_epoll.c's flush_one decided there is a change, and holds a
 * user fd's slot (the close path cannot cancel under us). */
void
kq_uring_apply(struct kq_kqueue *kq, struct kq_poll *p, uint32_t want)
{
	if (want == 0) {
		if (p->in_backend)
			disarm(kq, p);
	} else if (p->in_backend && multishot(want) == multishot(p->armed)) {
		update(kq, p, want);
	} else if (!p->in_backend && p->armed == want) {
		/* a single-shot poll that reported: the same again (the level
		 * mechanism, not a change: KQ_STATS does not count it) */
		arm(kq, p, want, false);
	} else {
		if (p->in_backend)
			disarm(kq, p);
		arm(kq, p, want, true);
	}
}

/* After a flush: the SQEs it wrote become visible to the kernel. */
void
kq_uring_publish(struct kq_kqueue *kq)
{
	publish(kq->uring);
}

/* ----------------------------------------------------------------- wait */

/* Without kq->lock: submit what is published and wait for a completion
 * (none for a zero timeout) in one call.  The CQEs are reaped after, under
 * the lock (kq_uring_reap).  0 or -errno. */
int
kq_uring_wait(struct kq_kqueue *kq, const struct timespec *ts)
{
	struct kq_uring *u = kq->uring;
	struct io_uring_getevents_arg arg;
	struct __kernel_timespec kts;
	unsigned n = sq_unsubmitted(u), min = 1;
	unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;

	unsigned reaps = atomic_load_explicit(&u->reaps, memory_order_acquire);
	int64_t deadline = INT64_MAX;
	int r, e, oldtype;

	memset(&arg, 0, sizeof arg);
	if (ts != NULL && ts->tv_sec == 0 && ts->tv_nsec == 0) {
		/* nothing to submit: no call.  The CQ is in our memory, and
		 * this thread's task work (the completions of what it armed)
		 * ran when it last came back from the kernel; only CQEs the
		 * kernel kept aside (the CQ was full) need an enter to come */
		if (n == 0 && (cq_unreaped(u) > atomic_load_explicit(&u->token,
		    memory_order_relaxed) ||
		    !(__atomic_load_n(u->ring.sq.kflags, __ATOMIC_ACQUIRE) &
		    IORING_SQ_CQ_OVERFLOW)))
			return 0;
		min = 0;
	} else if (ts != NULL) {
		kts.tv_sec = ts->tv_sec;
		kts.tv_nsec = ts->tv_nsec;
		arg.ts = (uint64_t)(uintptr_t)&kts;
		if (n != 0)
			deadline = kq_now_ns(CLOCK_MONOTONIC) +
			    (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
	}
	/* a plain syscall() is no cancellation point, and kevent()'s wait is
	 * one (CANCELLATION): as glibc's own cancellable calls do, the
	 * system call alone runs with asynchronous cancellation (no effect
	 * where the caller disabled cancellation) */
	pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &oldtype);
	r = sys_enter(u->fd, n, min, flags, &arg, sizeof arg);
	e = errno;
	pthread_setcanceltype(oldtype, NULL);
	errno = e;
	if (r < 0) {
		/* timed out, or the CQ's overflow must be reaped first */
		if (errno == ETIME || errno == EBUSY || errno == EAGAIN)
			return 0;
		return -errno;
	}
	/*
	 * Having submitted, the kernel returns how many, not why the wait
	 * ended: it waited (all n taken), nothing is in the CQ, nobody reaped
	 * meanwhile and the time is not up - a signal handler ran (EINTR).
	 */
	if (min != 0 && n != 0 && (unsigned)r == n && cq_unreaped(u) == 0 &&
	    atomic_load_explicit(&u->reaps, memory_order_acquire) == reaps &&
	    (deadline == INT64_MAX || kq_now_ns(CLOCK_MONOTONIC) < deadline))
		return -EINTR;
	return 0;
}

struct completion {
	uint64_t ud;
	int32_t res;
	uint32_t flags;
};

static void
complete(struct kq_kqueue *kq, const struct completion *c)
{
	struct kq_poll *p;
	uint64_t ud = c->ud;
	uint32_t revents;

	if (ud == 0)
		return;			/* a removal's own completion */
	if ((uint32_t)ud & KQ_URING_UPDATE) {
		/* an update found no poll: it fired (single-shot) before */
		p = kq_poll_lookup(kq, ud & ~(uint64_t)KQ_URING_UPDATE);
		if (p != NULL && c->res == -ENOENT && p->in_backend) {
			p->in_backend = false;
			p->armed = 0;
			kq_backend_update(kq, p);
		}
		return;
	}
	if ((p = kq_poll_lookup(kq, ud)) == NULL)
		return;			/* an earlier arm's, or a dead poll's */
	if (p == &kq->timer) {
		/* the timeout is over: expired (-ETIME) or cancelled (its
		 * submitter exited); either way the timer poll fired, which
		 * may be early: the flush sets a new one if a timer is left */
		kq->uring->timeout_live = false;
		p->ready(kq, p, 0);
		return;
	}
	if (c->res == -ECANCELED) {
		/* the close path's cancel, or the kernel's: re-armed by the
		 * flush if still wanted (never a closed fd) */
		if (p->in_backend) {
			p->in_backend = false;
			p->armed = 0;
			kq_backend_update(kq, p);
		}
		return;
	}
	/* an error stays armed (as it is: re-arming would fail again) and
	 * is told as one */
	revents = c->res >= 0 ? (uint32_t)c->res : KQ_POLLERR;
	p->ready(kq, p, revents);
	if (c->res < 0 || (c->flags & IORING_CQE_F_MORE))
		return;
	/* a single-shot poll is done: the flush re-arms it if a knote still
	 * wants it (ready may have let go of p: looked up again).  armed
	 * stays what the poll had, so the flush can tell a re-arm of the
	 * same from a change (fdnode_ready zeroes it for one-shot ones) */
	if ((p = kq_poll_lookup(kq, ud)) != NULL && p->in_backend) {
		p->in_backend = false;
		kq_backend_update(kq, p);
	}
}

static inline void
completion_of(struct completion *c, const struct io_uring_cqe *cqe)
{
	c->ud = cqe->user_data;
	c->res = cqe->res;
	c->flags = cqe->flags;
}

/* A CQE that reports readiness of a live poll. */
static bool
is_report(struct kq_kqueue *kq, const struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;

	struct kq_poll *p;

	if (ud == 0 || ((uint32_t)ud & KQ_URING_UPDATE) ||
	    cqe->res == -ECANCELED || (p = kq_poll_lookup(kq, ud)) == NULL)
		return false;
	return p != &kq->wake;	/* the wake edge is the kqueue's own */
}

/*
 * After kevent()'s own submission, or before the wake edge is defused:
 * take the completions that report nothing of the application's (a
 * removed poll's -ECANCELED, stale CQEs, failed updates, the wake edge),
 * up to the first report.  Reports stay in the CQ, so the kqueue fd polls
 * readable, and the next scan has their polls armed again
 * (kq_uring_reap_stale): a report taken now would be stale by then.  A
 * token kept stays kept (moved to the last CQE taken).
 */
void
kq_uring_reap_quiet(struct kq_kqueue *kq)
{
	struct kq_uring *u = kq->uring;
	unsigned i = cq_first(u);
	bool keep = atomic_load_explicit(&u->token, memory_order_relaxed);
	struct io_uring_cqe *cqe;
	struct completion c;

	while (i != __atomic_load_n(u->ring.cq.ktail, __ATOMIC_ACQUIRE) &&
	    !is_report(kq, cqe = cq_at(u, i))) {
		completion_of(&c, cqe);
		cq_taken(u, ++i, keep);
		atomic_fetch_add_explicit(&u->reaps, 1, memory_order_release);
		complete(kq, &c);
	}
}

/*
 * Under kq->lock, before anything of a scan's pass is collected: the CQEs
 * posted before it.  A single-shot poll woken by its file reports the
 * wake-up's events only (a write says IN, not the HUP of a close after it),
 * and what was true then, maybe long ago: a level report must say what the
 * file is now, as epoll_wait's does.  So such a report of a user fd is not
 * taken: its poll is marked done and dirty, and the flush arms it again
 * before the wait, in the wait's own io_uring_enter; a poll armed on a
 * ready file completes at once with the file's events as they are
 * (vfs_poll), and its CQE, posted during this call, is fresh.  Edge
 * (multishot) reports, timeouts and the rest are taken as they are.  The
 * last CQE taken is kept as the token (kq_uring_commit).
 */
void
kq_uring_reap_stale(struct kq_kqueue *kq)
{
	struct kq_uring *u = kq->uring;
	unsigned i = cq_first(u);
	unsigned tail = __atomic_load_n(u->ring.cq.ktail, __ATOMIC_ACQUIRE);
	struct io_uring_cqe *cqe;
	struct completion c;
	struct kq_poll *p;

	if (i == tail)
		return;
	for (; i != tail; i++) {
		cqe = cq_at(u, i);
		completion_of(&c, cqe);
		if (c.res >= 0 && !(c.flags & IORING_CQE_F_MORE) && c.ud != 0 &&
		    !((uint32_t)c.ud & KQ_URING_UPDATE) &&
		    (p = kq_poll_lookup(kq, c.ud)) != NULL && p->userfd &&
		    p->in_backend) {
			p->in_backend = false;
			kq_backend_update(kq, p);
			continue;
		}
		complete(kq, &c);
	}
	cq_taken(u, tail, true);
	atomic_fetch_add_explicit(&u->reaps, 1, memory_order_release);
}

/*
 * After a wait: every CQE in the CQ was posted during this kevent() call
 * (the pass's kq_uring_reap_stale took the older ones, and made stale
 * level reports re-arms that this wait's enter armed), so each is taken as
 * it is, with no poll() to ask the files again.  (A wake-up's CQE says the
 * events of that wake-up, during this call: a HUP right after a write may
 * be told by the next report only - the level poll is armed again.)  The
 * last CQE taken is kept as the token (kq_uring_commit).
 */
void
kq_uring_reap(struct kq_kqueue *kq)
{
	struct kq_uring *u = kq->uring;
	unsigned i = cq_first(u);
	unsigned tail = __atomic_load_n(u->ring.cq.ktail, __ATOMIC_ACQUIRE);
	struct completion c;

	if (i == tail)
		return;
	for (; i != tail; i++) {
		completion_of(&c, cq_at(u, i));
		complete(kq, &c);
	}
	cq_taken(u, tail, true);
	atomic_fetch_add_explicit(&u->reaps, 1, memory_order_release);
}

/* Under kq->lock, just before the scan lets it go to wait: the thread is a
 * sleeper (no kevent() returning meanwhile defers a re-arm), and the token
 * goes (the flush armed what it stood for; kept, it would end the wait at
 * once). */
void
kq_uring_wait_begin(struct kq_kqueue *kq)
{
	struct kq_uring *u = kq->uring;

	atomic_fetch_add_explicit(&kq->sleepers, 1, memory_order_relaxed);
	if (atomic_load_explicit(&u->token, memory_order_relaxed))
		cq_taken(u, cq_first(u), false);
}

/*
 * Before kevent() returns.  Level re-arms (single-shot polls that
 * reported, or whose stale report was not taken) are left dirty by the
 * exit's flush (kq_backend_flush_exit): the next call's wait arms them in
 * its own enter, so this call makes no system call for them, and their
 * reports come fresh.  While they wait, nothing in the kernel polls their
 * files, so the kqueue fd is kept readable by the token, an already taken
 * CQE left at the CQ head: as FreeBSD's kqueue polls readable after a scan
 * that left a level knote queued, until the next scan.  With no token, or a
 * thread asleep in a wait (it must be woken when such a file becomes
 * ready: only an armed poll can), they are armed and submitted now.  What
 * else is in the SQ (removals, changes, timeouts) goes in now, and the
 * completions that report nothing are reaped.
 */
void
kq_uring_commit(struct kq_kqueue *kq)
{
	struct kq_uring *u = kq->uring;
	bool deferred = !TAILQ_EMPTY(&kq->dirty);

	if (deferred && (!atomic_load_explicit(&u->token, memory_order_relaxed) ||
	    atomic_load_explicit(&kq->sleepers, memory_order_relaxed) != 0)) {
		kq_backend_flush_dirty(kq, false);
		deferred = false;
	}
	if (u->ring.sq.sqe_tail != __atomic_load_n(u->ring.sq.khead,
	    __ATOMIC_ACQUIRE)) {
		submit_now(u);
		kq_uring_reap_quiet(kq);
	}
	if (!deferred && atomic_load_explicit(&u->token, memory_order_relaxed))
		cq_taken(u, cq_first(u), false);
}

/* A wake edge (kq_kick, kq_unlock): true if sent as a message to the ring,
 * false if the caller writes the wake eventfd (kernels before 6.13). */
bool
kq_uring_post_wake(struct kq_kqueue *kq)
{
	struct kq_uring *u = kq->uring;
	int e = errno;

	if (!u->msg_wake)
		return false;
	(void)send_wake(u, handle_of(&kq->wake));
	errno = e;
	return true;
}

/* Under kq->lock, nothing queued: take back the edges sent (their CQEs);
 * true if that is all (messages), false if the eventfd must be read too. */
bool
kq_uring_defuse(struct kq_kqueue *kq)
{
	kq_uring_reap_quiet(kq);
	return kq->uring->msg_wake;
}

#endif /* HAVE_LIBURING */
