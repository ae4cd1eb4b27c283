/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Raw epoll: the floor.  Each workload is written as the least work an
 * epoll program needs for the job, so every other backend's ratio to this
 * one is the price of its abstraction:
 *   dispatch  level-triggered EPOLLIN registered once, epoll_wait(0)
 *   rearm     EPOLL_CTL_DEL + EPOLL_CTL_ADD for every fd, every iteration
 *   oneshot   EPOLLIN|EPOLLONESHOT, EPOLL_CTL_MOD after each event
 *   reenable  the same: epoll has one one-shot mechanism
 *   timers    one binary min-heap + ONE timerfd (a timerfd per timer would
 *             need a million fds); the timerfd is re-armed lazily, only
 *             before a wait and only when the earliest expiry changed
 *   churn     socketpair, EPOLL_CTL_ADD, epoll_wait, close (the kernel drops
 *             the registration with the file: no DEL)
 *   wakeup    one eventfd per thread registered EPOLLET, so every write is
 *             a new edge and the counter never needs reading
 *
 * Compiled twice more as the floors of the kqueue contract: raw epoll plus
 * exactly the syscalls that the kqueue API's promises cost, so that a
 * kqueue library's ratio to its floor is the price of its implementation,
 * not of the API.
 *   epoll+fionread      (BENCH_FLOOR_FIONREAD) one ioctl(FIONREAD) per
 *                       reported event: an EVFILT_READ event carries the
 *                       exact byte count in `data`.  Socket workloads only.
 *   epoll+fionread+del  (BENCH_FLOOR_DEL as well) churn only: also an
 *                       EPOLL_CTL_DEL before each close() of a watched fd,
 *                       the least a library must do to stop reporting a
 *                       closed descriptor (close() alone leaves the
 *                       registration while the file lives in a fork child
 *                       or a dup).
 * Timers and wakeup have no such extra work: raw epoll is their floor, so
 * the floor builds refuse them (SKIP).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common.h"

#if defined(BENCH_FLOOR_DEL)
#define BENCH_FLOOR_FIONREAD
#define BENCH_NAME	"epoll+fionread+del"
#define BENCH_WORKLOADS	BENCH_WL(W_CHURN)
#elif defined(BENCH_FLOOR_FIONREAD)
#define BENCH_NAME	"epoll+fionread"
#define BENCH_WORKLOADS	(BENCH_WL(W_DISPATCH) | BENCH_WL(W_REARM) | \
			BENCH_WL(W_ONESHOT) | BENCH_WL(W_REENABLE) | \
			BENCH_WL(W_CHURN))
#else
#define BENCH_NAME	"epoll"
#define BENCH_WORKLOADS	0
#endif

#define NEVENTS		256
#define CHURN_TAG	UINT32_MAX

struct ep_timer {
	uint64_t expiry;	/* CLOCK_MONOTONIC ns */
	uint32_t pos;		/* index in heap, UINT32_MAX when not armed */
};

static struct {
	int ep;
	struct epoll_event evs[NEVENTS];
	/* timers */
	int tfd;
	struct ep_timer *tm;
	uint32_t *heap;
	uint32_t nheap, cap;
	uint64_t armed;
	/* wakeup */
	int ep_peer, efd_main, efd_peer;
	pthread_t peer;
	atomic_bool stop;
} S = { .ep = -1, .tfd = -1 };

static int
ctl(int op, int fd, uint32_t events, uint32_t tag)
{
	struct epoll_event ev = { .events = events, .data.u32 = tag };

	if (epoll_ctl(S.ep, op, fd, &ev) == -1) {
		bench_fail("epoll_ctl(%d, fd %d): %s", op, fd, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * What a kqueue library must learn about a reported readable fd before it
 * can return the event: the byte count for `data` (floors only).
 */
static inline void
event_data(struct bench_ctx *c, int fd)
{
#ifdef BENCH_FLOOR_FIONREAD
	int avail;

	/* a reported socket with nothing queued would be a lost byte */
	if (ioctl(fd, FIONREAD, &avail) == -1 || avail < 1)
		c->failures++;
#else
	(void)c;
	(void)fd;
#endif
}

/* ------------------------------------------------------------- timers */

static inline bool
tm_less(uint32_t a, uint32_t b)
{
	return S.tm[a].expiry < S.tm[b].expiry;
}

static void
heap_set(uint32_t pos, uint32_t id)
{
	S.heap[pos] = id;
	S.tm[id].pos = pos;
}

static void
heap_up(uint32_t pos)
{
	uint32_t id = S.heap[pos];

	while (pos > 0 && tm_less(id, S.heap[(pos - 1) / 2])) {
		heap_set(pos, S.heap[(pos - 1) / 2]);
		pos = (pos - 1) / 2;
	}
	heap_set(pos, id);
}

static void
heap_down(uint32_t pos)
{
	uint32_t id = S.heap[pos], c;

	while ((c = 2 * pos + 1) < S.nheap) {
		if (c + 1 < S.nheap && tm_less(S.heap[c + 1], S.heap[c]))
			c++;
		if (!tm_less(S.heap[c], id))
			break;
		heap_set(pos, S.heap[c]);
		pos = c;
	}
	heap_set(pos, id);
}

static void
heap_remove(uint32_t id)
{
	uint32_t pos = S.tm[id].pos, last;

	S.tm[id].pos = UINT32_MAX;
	last = S.heap[--S.nheap];
	if (pos == S.nheap)
		return;
	heap_set(pos, last);
	if (pos > 0 && tm_less(last, S.heap[(pos - 1) / 2]))
		heap_up(pos);
	else
		heap_down(pos);
}

static int
ep_timer_add(struct bench_ctx *c, int count, bool far)
{
	uint64_t now = bench_now_ns();

	(void)c;
	if ((uint32_t)count > S.cap) {
		free(S.tm);
		free(S.heap);
		S.tm = malloc(count * sizeof(*S.tm));
		S.heap = malloc(count * sizeof(*S.heap));
		if (S.tm == NULL || S.heap == NULL)
			return -1;
		S.cap = count;
	}
	for (int i = 0; i < count; i++) {
		S.tm[i].expiry = now + (uint64_t)(far ? BENCH_TIMER_FAR_US :
		    BENCH_TIMER_NEAR_US(i)) * 1000u;
		S.heap[S.nheap] = i;
		S.tm[i].pos = S.nheap++;
		heap_up(S.nheap - 1);
	}
	return 0;
}

static int
ep_timer_del(struct bench_ctx *c, int count)
{
	(void)c;
	for (int i = 0; i < count; i++)
		heap_remove(i);
	return 0;
}

static int
ep_timer_fire(struct bench_ctx *c, int count)
{
	int fired = 0;

	while (fired < count) {
		uint64_t now = bench_now_ns(), top;
		uint64_t buf;
		int n;

		while (S.nheap > 0 && S.tm[S.heap[0]].expiry <= now) {
			heap_remove(S.heap[0]);
			fired++;
		}
		if (S.nheap == 0)
			break;
		top = S.tm[S.heap[0]].expiry;
		if (top != S.armed) {
			struct itimerspec its = {
				.it_value.tv_sec = top / 1000000000u,
				.it_value.tv_nsec = top % 1000000000u,
			};

			if (timerfd_settime(S.tfd, TFD_TIMER_ABSTIME, &its,
			    NULL) == -1)
				return -1;
			S.armed = top;
		}
		n = epoll_wait(S.ep, S.evs, NEVENTS, -1);
		if (n > 0 && read(S.tfd, &buf, sizeof(buf)) < 0 &&
		    errno != EAGAIN)
			c->failures++;
	}
	if (fired != count) {
		bench_fail("timers: %d of %d fired", fired, count);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------- wakeup */

static void *
peer_main(void *arg)
{
	struct epoll_event ev;
	uint64_t one = 1;

	(void)arg;
	for (;;) {
		if (epoll_wait(S.ep_peer, &ev, 1, -1) != 1)
			continue;
		if (atomic_load_explicit(&S.stop, memory_order_acquire))
			return NULL;
		if (write(S.efd_main, &one, sizeof(one)) != sizeof(one))
			abort();
	}
}

static int
wakeup_setup(void)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };

	S.efd_main = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	S.efd_peer = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	S.ep_peer = epoll_create1(EPOLL_CLOEXEC);
	if (S.efd_main == -1 || S.efd_peer == -1 || S.ep_peer == -1 ||
	    epoll_ctl(S.ep, EPOLL_CTL_ADD, S.efd_main, &ev) == -1 ||
	    epoll_ctl(S.ep_peer, EPOLL_CTL_ADD, S.efd_peer, &ev) == -1) {
		bench_fail("wakeup setup: %s", strerror(errno));
		return -1;
	}
	return pthread_create(&S.peer, NULL, peer_main, NULL) == 0 ? 0 : -1;
}

static int
wakeup_iter(struct bench_ctx *c)
{
	uint64_t one = 1;

	if (write(S.efd_peer, &one, sizeof(one)) != sizeof(one))
		c->failures++;
	while (epoll_wait(S.ep, S.evs, NEVENTS, -1) < 1)
		;
	return 0;
}

/* ------------------------------------------------------------ sockets */

static int
ep_setup(struct bench_ctx *c)
{
	const struct bench_opts *o = c->o;
	uint32_t events = EPOLLIN;

	if ((S.ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		return -1;
	switch (o->workload) {
	case W_TIMERS:
		S.tfd = timerfd_create(CLOCK_MONOTONIC,
		    TFD_NONBLOCK | TFD_CLOEXEC);
		return S.tfd == -1 ? -1 : ctl(EPOLL_CTL_ADD, S.tfd, EPOLLIN, 0);
	case W_WAKEUP:
		return wakeup_setup();
	case W_ONESHOT:
	case W_REENABLE:
		events |= EPOLLONESHOT;
		break;
	default:
		break;
	}
	for (int i = 0; i < o->n; i++)
		if (ctl(EPOLL_CTL_ADD, c->fds[2 * i], events, i) == -1)
			return -1;
	return 0;
}

static int
churn_iter(struct bench_ctx *c)
{
	int sv[2], n, i;
	bool seen = false;

	if (bench_churn_open(sv) == -1 ||
	    ctl(EPOLL_CTL_ADD, sv[0], EPOLLIN, CHURN_TAG) == -1)
		return -1;
	while (!seen) {
		n = epoll_wait(S.ep, S.evs, NEVENTS, -1);
		for (i = 0; i < n; i++)
			if (S.evs[i].data.u32 == CHURN_TAG) {
				event_data(c, sv[0]);
				seen = true;
			} else
				c->failures++;
	}
	if (bench_churn_read(sv[0]) == -1)
		c->failures++;
#ifdef BENCH_FLOOR_DEL
	if (ctl(EPOLL_CTL_DEL, sv[0], 0, 0) == -1)
		return -1;
#endif
	close(sv[0]);
	close(sv[1]);
	return 0;
}

static int
ep_iter(struct bench_ctx *c)
{
	const struct bench_opts *o = c->o;
	int i, n;

	switch (o->workload) {
	case W_CHURN:
		return churn_iter(c);
	case W_WAKEUP:
		return wakeup_iter(c);
	case W_REARM:
		for (i = 0; i < o->n; i++) {
			if (ctl(EPOLL_CTL_DEL, c->fds[2 * i], 0, 0) == -1 ||
			    ctl(EPOLL_CTL_ADD, c->fds[2 * i], EPOLLIN, i) == -1)
				return -1;
		}
		break;
	default:
		break;
	}
	bench_iter_start(c);
	do {
		n = epoll_wait(S.ep, S.evs, NEVENTS, 0);
		for (i = 0; i < n; i++) {
			int idx = (int)S.evs[i].data.u32;

			event_data(c, c->fds[2 * idx]);
			bench_on_read(c, idx);
			if ((o->workload == W_ONESHOT ||
			    o->workload == W_REENABLE) &&
			    ctl(EPOLL_CTL_MOD, c->fds[2 * idx],
			    EPOLLIN | EPOLLONESHOT, idx) == -1)
				return -1;
		}
	} while (!bench_iter_done(c));
	return 0;
}

static void
ep_teardown(struct bench_ctx *c)
{
	uint64_t one = 1;

	if (c->o->workload == W_WAKEUP) {
		atomic_store_explicit(&S.stop, true, memory_order_release);
		if (write(S.efd_peer, &one, sizeof(one)) == sizeof(one))
			pthread_join(S.peer, NULL);
	}
}

static const struct bench_backend backend = {
	.name = BENCH_NAME,
	.workloads = BENCH_WORKLOADS,
	.setup = ep_setup,
	.iter = ep_iter,
	.timer_add = ep_timer_add,
	.timer_del = ep_timer_del,
	.timer_fire = ep_timer_fire,
	.teardown = ep_teardown,
};

int
main(int argc, char **argv)
{
	return bench_main(argc, argv, &backend);
}
