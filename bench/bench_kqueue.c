/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The kqueue-API backend.  Compiled once against libkqfree (bench-kqfree)
 * and, when configured, once more against libkqueue (bench-libkqueue):
 * two kqueue libraries cannot share one binary.  BENCH_NAME says which.
 * Only FreeBSD-documented API is used, so the two builds do the same work.
 *   dispatch  EV_ADD (level) once; kevent(changes=0, timeout 0) loop
 *   rearm     every knote EV_DELETE + EV_ADD each iteration, submitted as
 *             one changelist with the first kevent() of the iteration
 *   oneshot   EV_ADD|EV_ONESHOT, re-added through the changelist of the
 *             next kevent() after each event
 *   reenable  EV_ADD|EV_DISPATCH once, EV_ENABLE through the next
 *             changelist after each event (the knote survives)
 *   timers    EVFILT_TIMER EV_ONESHOT with NOTE_USECONDS, changes in
 *             chunks of 1024 with no event list; one timer = one knote
 *   churn     socketpair, EV_ADD in the waiting kevent(), close() only:
 *             the library must drop the knote itself (close tracking).
 *             Built with BENCH_DELETE_BEFORE_CLOSE (libkqueue, which does
 *             not track closes), EV_DELETE first: what its users must do,
 *             as libevent and libev users must say event_del/ev_io_stop.
 *   wakeup    EVFILT_USER EV_CLEAR on two kqueues, NOTE_TRIGGER ping-pong
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/event.h>
#include <unistd.h>

#include "common.h"

#ifndef BENCH_NAME
#define BENCH_NAME "kqfree"
#endif

#define NEVENTS		256
#define CHUNK		1024
#define CHURN_TAG	((void *)(intptr_t)-1)
#define USER_IDENT	1

static struct {
	int kq;
	struct kevent evs[NEVENTS];
	struct kevent *ch;	/* pending changelist */
	int nch;
	/* wakeup */
	int kq_peer;
	pthread_t peer;
	atomic_bool stop;
} S = { .kq = -1, .kq_peer = -1 };

static const struct timespec zero_ts;
/* The churn wait has no timeout, as the epoll floor's (-1): the socket is
 * readable before it is added, and a lost event is the driver's --timeout
 * kill, not a cost paid on every wait. */

/* Submit changes without collecting events; -1 on any change's error. */
static int
submit(int kq, const struct kevent *ch, int n)
{
	if (kevent(kq, ch, n, NULL, 0, &zero_ts) == -1) {
		bench_fail("kevent(%d changes): %s", n, strerror(errno));
		return -1;
	}
	return 0;
}

static bool
event_ok(struct bench_ctx *c, const struct kevent *ev)
{
	if (ev->flags & EV_ERROR) {
		if (c->failures++ == 0)
			bench_fail("EV_ERROR ident %ld filter %d: %s",
			    (long)ev->ident, ev->filter,
			    strerror((int)ev->data));
		return false;
	}
	return true;
}

/* ------------------------------------------------------------- timers */

static int
kq_timer_add(struct bench_ctx *c, int count, bool far)
{
	struct kevent ch[CHUNK];
	int i, k;

	(void)c;
	for (i = 0; i < count; i += k) {
		for (k = 0; k < CHUNK && i + k < count; k++)
			EV_SET(&ch[k], i + k, EVFILT_TIMER, EV_ADD | EV_ONESHOT,
			    NOTE_USECONDS, far ? BENCH_TIMER_FAR_US :
			    BENCH_TIMER_NEAR_US(i + k), NULL);
		if (submit(S.kq, ch, k) == -1)
			return -1;
	}
	return 0;
}

static int
kq_timer_del(struct bench_ctx *c, int count)
{
	struct kevent ch[CHUNK];
	int i, k;

	(void)c;
	for (i = 0; i < count; i += k) {
		for (k = 0; k < CHUNK && i + k < count; k++)
			EV_SET(&ch[k], i + k, EVFILT_TIMER, EV_DELETE, 0, 0,
			    NULL);
		if (submit(S.kq, ch, k) == -1)
			return -1;
	}
	return 0;
}

static int
kq_timer_fire(struct bench_ctx *c, int count)
{
	const struct timespec limit = { .tv_sec = 10 };
	int fired = 0, n, i;

	while (fired < count) {
		n = kevent(S.kq, NULL, 0, S.evs, NEVENTS, &limit);
		if (n <= 0) {
			bench_fail("timers: %d of %d fired (%s)", fired, count,
			    n == 0 ? "timeout" : strerror(errno));
			return -1;
		}
		for (i = 0; i < n; i++)
			if (event_ok(c, &S.evs[i]) &&
			    S.evs[i].filter == EVFILT_TIMER)
				fired++;
	}
	return 0;
}

/* ------------------------------------------------------------- wakeup */

static int
trigger(int kq)
{
	struct kevent ch;

	EV_SET(&ch, USER_IDENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	return kevent(kq, &ch, 1, NULL, 0, NULL);
}

static void *
peer_main(void *arg)
{
	struct kevent ev;

	(void)arg;
	for (;;) {
		if (kevent(S.kq_peer, NULL, 0, &ev, 1, NULL) != 1)
			continue;
		if (atomic_load_explicit(&S.stop, memory_order_acquire))
			return NULL;
		if (trigger(S.kq) == -1)
			abort();
	}
}

static int
wakeup_setup(void)
{
	struct kevent ch;

	if ((S.kq_peer = kqueue()) == -1)
		return -1;
	EV_SET(&ch, USER_IDENT, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	if (submit(S.kq, &ch, 1) == -1 || submit(S.kq_peer, &ch, 1) == -1)
		return -1;
	return pthread_create(&S.peer, NULL, peer_main, NULL) == 0 ? 0 : -1;
}

static int
wakeup_iter(struct bench_ctx *c)
{
	if (trigger(S.kq_peer) == -1) {
		bench_fail("trigger: %s", strerror(errno));
		return -1;
	}
	while (kevent(S.kq, NULL, 0, S.evs, 1, NULL) < 1)
		;
	if (S.evs[0].filter != EVFILT_USER)
		c->failures++;
	return 0;
}

/* ------------------------------------------------------------ sockets */

/* KQFREE_BENCH_EXPECT=io_uring (kqfree-bench's kqfree-uring): libkqfree
 * falls back to epoll silently, so look for the ring it would have made
 * (an anon_inode:[io_uring] descriptor) rather than time the wrong thing. */
static int
check_backend(void)
{
	const char *want = getenv("KQFREE_BENCH_EXPECT");
	char path[300], link[64];
	struct dirent *de;
	DIR *d;
	bool found = false;

	if (want == NULL || strcmp(want, "io_uring") != 0)
		return 0;
	if ((d = opendir("/proc/self/fd")) == NULL)
		return 0;
	while (!found && (de = readdir(d)) != NULL) {
		ssize_t n;

		snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
		if ((n = readlink(path, link, sizeof link - 1)) <= 0)
			continue;
		link[n] = '\0';
		found = strcmp(link, "anon_inode:[io_uring]") == 0;
	}
	closedir(d);
	if (found)
		return 0;
	bench_fail("KQFREE_BACKEND=io_uring: the kqueue fell back to epoll");
	return -1;
}

static int
kq_setup(struct bench_ctx *c)
{
	const struct bench_opts *o = c->o;
	unsigned short flags = EV_ADD;
	struct kevent ch[CHUNK];
	int i, k;

	if ((S.kq = kqueue()) == -1) {
		bench_fail("kqueue: %s", strerror(errno));
		return -1;
	}
	if (check_backend() != 0)
		return -1;
	switch (o->workload) {
	case W_TIMERS:
		return 0;
	case W_WAKEUP:
		return wakeup_setup();
	case W_ONESHOT:
		flags |= EV_ONESHOT;
		break;
	case W_REENABLE:
		flags |= EV_DISPATCH;
		break;
	default:
		break;
	}
	S.ch = malloc((2 * (size_t)o->n + NEVENTS) * sizeof(*S.ch));
	if (S.ch == NULL)
		return -1;
	for (i = 0; i < o->n; i += k) {
		for (k = 0; k < CHUNK && i + k < o->n; k++)
			EV_SET(&ch[k], c->fds[2 * (i + k)], EVFILT_READ, flags,
			    0, 0, (void *)(intptr_t)(i + k));
		if (submit(S.kq, ch, k) == -1)
			return -1;
	}
	return 0;
}

static int
churn_iter(struct bench_ctx *c)
{
	struct kevent ch;
	int sv[2], n, i;
	bool seen = false;

	if (bench_churn_open(sv) == -1)
		return -1;
	EV_SET(&ch, sv[0], EVFILT_READ, EV_ADD, 0, 0, CHURN_TAG);
	n = kevent(S.kq, &ch, 1, S.evs, NEVENTS, NULL);
	for (;;) {
		if (n <= 0) {
			bench_fail("churn: kevent for fd %d returned %d (%s)",
			    sv[0], n, n == 0 ? "nothing, without a timeout" :
			    strerror(errno));
			return -1;
		}
		for (i = 0; i < n; i++)
			if (!event_ok(c, &S.evs[i]))
				return -1;
			else if (S.evs[i].udata == CHURN_TAG)
				seen = true;
			else
				c->failures++;
		if (seen)
			break;
		n = kevent(S.kq, NULL, 0, S.evs, NEVENTS, NULL);
	}
	if (bench_churn_read(sv[0]) == -1)
		c->failures++;
#ifdef BENCH_DELETE_BEFORE_CLOSE
	EV_SET(&ch, sv[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	if (submit(S.kq, &ch, 1) == -1)
		return -1;
#endif
	close(sv[0]);
	close(sv[1]);
	return 0;
}

static int
kq_iter(struct bench_ctx *c)
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
			EV_SET(&S.ch[S.nch++], c->fds[2 * i], EVFILT_READ,
			    EV_DELETE, 0, 0, NULL);
			EV_SET(&S.ch[S.nch++], c->fds[2 * i], EVFILT_READ,
			    EV_ADD, 0, 0, (void *)(intptr_t)i);
		}
		break;
	default:
		break;
	}
	bench_iter_start(c);
	do {
		n = kevent(S.kq, S.ch, S.nch, S.evs, NEVENTS, &zero_ts);
		if (n == -1) {
			bench_fail("kevent: %s", strerror(errno));
			return -1;
		}
		S.nch = 0;
		for (i = 0; i < n; i++) {
			int idx = (int)(intptr_t)S.evs[i].udata;

			if (!event_ok(c, &S.evs[i]))
				return -1;
			bench_on_read(c, idx);
			if (o->workload == W_ONESHOT)
				EV_SET(&S.ch[S.nch++], c->fds[2 * idx],
				    EVFILT_READ, EV_ADD | EV_ONESHOT, 0, 0,
				    (void *)(intptr_t)idx);
			else if (o->workload == W_REENABLE)
				EV_SET(&S.ch[S.nch++], c->fds[2 * idx],
				    EVFILT_READ, EV_ENABLE, 0, 0,
				    (void *)(intptr_t)idx);
		}
	} while (!bench_iter_done(c));
	return 0;
}

static void
kq_teardown(struct bench_ctx *c)
{
	if (c->o->workload == W_WAKEUP) {
		atomic_store_explicit(&S.stop, true, memory_order_release);
		if (trigger(S.kq_peer) == 0)
			pthread_join(S.peer, NULL);
	}
}

static const struct bench_backend backend = {
	.name = BENCH_NAME,
	.setup = kq_setup,
	.iter = kq_iter,
	.timer_add = kq_timer_add,
	.timer_del = kq_timer_del,
	.timer_fire = kq_timer_fire,
	.teardown = kq_teardown,
};

int
main(int argc, char **argv)
{
	return bench_main(argc, argv, &backend);
}
