/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The epoll backend: the only file that calls epoll_*() on a kqueue's set,
 * and the choice of backend (internal.h, BACKENDS): the calls that differ
 * pass to backend_uring.c when kq->uring is set, one predicted branch.
 *
 * Registrations carry a handle (slot index | generation << 32) instead of a
 * pointer: a thread that collected an event before another thread deleted
 * the registration finds a different generation and drops the event.
 *
 * Coalescing: kq_backend_update() only marks a registration dirty; the flush
 * before each wait issues at most one epoll_ctl per dirty registration, and
 * none when what epoll has already equals what is wanted.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#ifdef KQ_STATS
_Atomic unsigned long kq_stat_ctl_calls;
#endif
static bool no_pwait2;

static int
ctl(struct kq_kqueue *kq, int op, int fd, uint32_t events, uint64_t handle)
{
	struct epoll_event ev = { .events = events, .data.u64 = handle };

#ifdef KQ_STATS
	atomic_fetch_add_explicit(&kq_stat_ctl_calls, 1, memory_order_relaxed);
#endif
	return epoll_ctl(kq->fd, op, fd, &ev) == 0 ? 0 : errno;
}

static inline uint64_t
handle_of(const struct kq_poll *p)
{
	return (uint64_t)p->gen << 32 | p->slot;
}

#ifdef HAVE_LIBURING
/* KQFREE_BACKEND, read once: true if io_uring is asked for. */
static pthread_once_t choice_once = PTHREAD_ONCE_INIT;
static bool choice_uring;

static void
read_choice(void)
{
	const char *e = secure_getenv("KQFREE_BACKEND");

	choice_uring = e != NULL && (strcmp(e, "io_uring") == 0 ||
	    strcmp(e, "uring") == 0);
}
#endif

#ifdef KQ_STATS
int kq_uring_test_fail;		/* KQ_URING_FAIL_* (backend_uring.c) */

void
kq_backend_test_reset(void)
{
#ifdef HAVE_LIBURING
	pthread_once_t fresh = PTHREAD_ONCE_INIT;

	choice_once = fresh;
	choice_uring = false;
	kq_uring_test_reset();
#endif
}
#endif

const char *
kq_backend_name(const struct kq_kqueue *kq)
{
	return kq->uring != NULL ? "io_uring" : "epoll";
}

int
kq_backend_init(struct kq_kqueue *kq, bool cloexec)
{
	kq->fd = epoll_create1(cloexec ? EPOLL_CLOEXEC : 0);
	if (kq->fd < 0)
		return errno;
	TAILQ_INIT(&kq->dirty);
#ifdef HAVE_LIBURING
	pthread_once(&choice_once, read_choice);
	/* no ring (kernel, seccomp, memory): this kqueue stays on epoll */
	if (choice_uring)
		(void)kq_uring_init(kq);
#endif
	return 0;
}

void
kq_backend_close(struct kq_kqueue *kq)
{
#ifdef HAVE_LIBURING
	if (kq->uring != NULL)
		kq_uring_close(kq);
#endif
	free(kq->slots);
	free(kq->slot_gen);
	free(kq->slot_next_free);
	kq->slots = NULL;
	kq->slot_gen = kq->slot_next_free = NULL;
	kq->nslots = 0;
}

int
kq_poll_register(struct kq_kqueue *kq, struct kq_poll *p)
{
	uint32_t i;

	if (kq->slot_free == 0) {
		/* slot 0 is never used, so 0 can mean "empty free list" */
		uint32_t n = kq->nslots ? kq->nslots * 2 : 64;
		struct kq_poll **s = realloc(kq->slots, n * sizeof *s);
		if (s == NULL)
			return ENOMEM;
		kq->slots = s;
		uint32_t *g = realloc(kq->slot_gen, n * sizeof *g);
		if (g == NULL)
			return ENOMEM;
		kq->slot_gen = g;
		uint32_t *f = realloc(kq->slot_next_free, n * sizeof *f);
		if (f == NULL)
			return ENOMEM;
		kq->slot_next_free = f;
		for (i = kq->nslots; i < n; i++) {
			s[i] = NULL;
			g[i] = 0;
			f[i] = (i + 1 < n) ? i + 1 : 0;
		}
		kq->slot_free = kq->nslots ? kq->nslots : 1;
		kq->nslots = n;
	}
	i = kq->slot_free;
	kq->slot_free = kq->slot_next_free[i];
	kq->slots[i] = p;
	p->slot = i;
	p->gen = ++kq->slot_gen[i];
	kq->npolls++;
	p->in_backend = false;
	p->dirty = false;
	p->armed = 0;
	return 0;
}

void
kq_poll_unregister(struct kq_kqueue *kq, struct kq_poll *p)
{
	if (p->slot == 0 || p->slot >= kq->nslots || kq->slots[p->slot] != p)
		return;
	if (p->dirty) {
		TAILQ_REMOVE(&kq->dirty, p, dirty_link);
		p->dirty = false;
	}
	kq->slots[p->slot] = NULL;
	kq->slot_gen[p->slot]++;
	kq->npolls--;
	kq->slot_next_free[p->slot] = kq->slot_free;
	kq->slot_free = p->slot;
	p->slot = 0;
}

struct kq_poll *
kq_poll_lookup(struct kq_kqueue *kq, uint64_t handle)
{
	uint32_t slot = (uint32_t)handle, gen = (uint32_t)(handle >> 32);

	if (slot == 0 || slot >= kq->nslots)
		return NULL;
	struct kq_poll *p = kq->slots[slot];
	return p != NULL && p->gen == gen ? p : NULL;
}

int
kq_backend_attach(struct kq_kqueue *kq, struct kq_poll *p)
{
	if (KQ_URING(kq))
		return kq_uring_attach(kq, p);
	int err = ctl(kq, EPOLL_CTL_ADD, p->fd, p->want, handle_of(p));
	if (err == 0) {
		p->in_backend = true;
		p->armed = p->want;
	}
	return err;
}

void
kq_backend_update(struct kq_kqueue *kq, struct kq_poll *p)
{
	if (!p->dirty) {
		p->dirty = true;
		TAILQ_INSERT_TAIL(&kq->dirty, p, dirty_link);
	}
}

void
kq_backend_detach(struct kq_kqueue *kq, struct kq_poll *p)
{
	if (KQ_URING(kq)) {
		kq_uring_detach(kq, p);
		return;
	}
	if (p->dirty) {
		TAILQ_REMOVE(&kq->dirty, p, dirty_link);
		p->dirty = false;
	}
	if (p->in_backend) {
		ctl(kq, EPOLL_CTL_DEL, p->fd, 0, 0);
		p->in_backend = false;
		p->armed = 0;
	}
}

void
kq_backend_forget(struct kq_kqueue *kq, struct kq_poll *p)
{
	if (KQ_URING(kq)) {
		kq_uring_forget(kq, p);
		return;
	}
	ctl(kq, EPOLL_CTL_DEL, p->fd, 0, 0);
}

/* Under the user fd's slot lock: does epoll still hold p's item, the file
 * it registered at this number?  The same events again (EPOLL_CTL_MOD)
 * fail for a closed number (EBADF) or another file there (ENOENT).
 * io_uring's poll holds its file: true (it cannot tell). */
bool
kq_backend_still_attached(struct kq_kqueue *kq, struct kq_poll *p)
{
	if (KQ_URING(kq) || !p->in_backend)
		return true;
	return ctl(kq, EPOLL_CTL_MOD, p->fd, p->armed, handle_of(p)) == 0;
}

/* One registration: bring the backend to p->want, with at most one
 * epoll_ctl (kq_uring_apply: one SQE, two for a change of mode). */
static void
flush_one(struct kq_kqueue *kq, struct kq_poll *p)
{
	uint32_t want = p->want;

	if (want == p->armed && (p->in_backend || want == 0))
		return;
	if (p->userfd) {
		kq_fdreg_lock(p->fd);
		/* The close path already removed it: never re-add a dead fd. */
		struct kq_fdnode *fdn = p->owner;
		if (atomic_load(&fdn->closed)) {
			kq_fdreg_unlock(p->fd);
			return;
		}
	}
	if (KQ_URING(kq)) {
		kq_uring_apply(kq, p, want);
	} else if (want == 0) {
		if (p->in_backend)
			ctl(kq, EPOLL_CTL_DEL, p->fd, 0, 0);
		p->in_backend = false;
	} else if (p->in_backend) {
		if (ctl(kq, EPOLL_CTL_MOD, p->fd, want, handle_of(p)) == ENOENT)
			ctl(kq, EPOLL_CTL_ADD, p->fd, want, handle_of(p));
	} else {
		if (ctl(kq, EPOLL_CTL_ADD, p->fd, want, handle_of(p)) == 0)
			p->in_backend = true;
	}
	p->armed = want;
	if (p->userfd)
		kq_fdreg_unlock(p->fd);
}

/* A registration whose single-shot ring poll reported and is to be armed
 * the same again: at kevent()'s exit left dirty, for the next call's wait
 * to arm (BACKENDS, deferred re-arms). */
static inline bool
rearm_deferrable(const struct kq_poll *p)
{
	return p->userfd && !p->in_backend && p->want == p->armed &&
	    p->want != 0 && (p->want & (KQ_POLLET | KQ_POLLONESHOT)) != KQ_POLLET;
}

void
kq_backend_flush_dirty(struct kq_kqueue *kq, bool at_exit)
{
	struct kq_poll_list later = TAILQ_HEAD_INITIALIZER(later);
	struct kq_poll *p;

	while ((p = TAILQ_FIRST(&kq->dirty)) != NULL) {
		TAILQ_REMOVE(&kq->dirty, p, dirty_link);
		if (at_exit && KQ_URING(kq) && rearm_deferrable(p)) {
			TAILQ_INSERT_TAIL(&later, p, dirty_link);
			continue;	/* still p->dirty */
		}
		p->dirty = false;
		flush_one(kq, p);
	}
	if (KQ_URING(kq)) {
		TAILQ_CONCAT(&kq->dirty, &later, dirty_link);
		kq_uring_publish(kq);
	}
}

_Static_assert(sizeof(struct kq_ready) == sizeof(struct epoll_event) &&
    offsetof(struct kq_ready, handle) == offsetof(struct epoll_event, data),
    "struct kq_ready must match struct epoll_event");

int
kq_backend_wait(struct kq_kqueue *kq, struct kq_ready *out, int max,
    const struct timespec *ts)
{
	struct epoll_event *ev = (struct epoll_event *)out;
	int n;

	if (KQ_URING(kq))
		return kq_uring_wait(kq, ts);
	if (max > KQ_READY_MAX)
		max = KQ_READY_MAX;
	if (ts == NULL || (ts->tv_sec == 0 && ts->tv_nsec == 0))
		n = epoll_wait(kq->fd, ev, max, ts == NULL ? -1 : 0);
	else if (!no_pwait2)
		n = epoll_pwait2(kq->fd, ev, max, ts, NULL);
	else
		n = -1, errno = ENOSYS;
	if (n < 0 && errno == ENOSYS) {
		/* before Linux 5.11 (or under valgrind 3.19): millisecond
		 * resolution, rounded up so a timeout never fires early */
		int64_t ms = ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000;
		no_pwait2 = true;
		n = epoll_wait(kq->fd, ev, max, ms > INT32_MAX ? INT32_MAX : (int)ms);
	}
	return n < 0 ? -errno : n;
}

/*
 * An edge detector over a process-wide fd (filter_signal.c's signalfd): a
 * private epoll set holding fd edge-triggered.  Each batch of wake-ups of fd
 * is taken exactly once, by whichever kq_edge_take() comes first, however
 * many kqueues poll the detector (it polls readable while a batch is
 * untaken).  Returns the detector's fd or -errno.
 */
int
kq_edge_open(int fd)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	int e = kq_fd_own(epoll_create1(EPOLL_CLOEXEC)), err;

	if (e < 0)
		return -errno;
	if (epoll_ctl(e, EPOLL_CTL_ADD, fd, &ev) < 0) {
		err = errno;
		kq_fd_close(e);
		return -err;
	}
	return e;
}

bool
kq_edge_take(int efd)
{
	struct epoll_event ev;

	return epoll_wait(efd, &ev, 1, 0) == 1;
}
