/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libev 4 on EVBACKEND_EPOLL only (the run fails if libev cannot use it).
 * Written as a libev user would: watchers with callbacks, the library's loop.
 *   dispatch  ev_io started once; ev_run(EVRUN_NOWAIT)
 *   rearm     ev_io_stop + ev_io_start of every watcher each iteration
 *   oneshot   ev_io_stop in the callback, ev_io_start after handling
 *             (libev's one-shot idiom; it has no kernel one-shot);
 *   reenable  the same
 *   timers    ev_timer array, ev_timer_start / ev_timer_stop
 *   churn     ev_io_start, run once, ev_io_stop, close (libev must be told
 *             before the close)
 *   wakeup    ev_async_send() from the other thread
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <ev.h>

#include "common.h"

static struct {
	struct bench_ctx *c;
	struct ev_loop *loop;
	ev_io *io;
	/* timers */
	ev_timer *tm;
	int tmcap;
	long tfired;
	/* churn */
	ev_io churn;
	bool churn_seen;
	/* wakeup */
	struct ev_loop *peer_loop;
	ev_async main_async, peer_async;
	pthread_t peer;
	atomic_bool stop;
	bool got;
} S;

static struct ev_loop *
new_loop(void)
{
	struct ev_loop *l = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);

	if (l == NULL || ev_backend(l) != EVBACKEND_EPOLL) {
		bench_fail("libev cannot use its epoll backend");
		return NULL;
	}
	return l;
}

static void
io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	int idx = (int)(w - S.io);

	(void)revents;
	if (S.c->o->workload == W_ONESHOT || S.c->o->workload == W_REENABLE) {
		ev_io_stop(loop, w);
		bench_on_read(S.c, idx);
		ev_io_start(loop, w);
	} else
		bench_on_read(S.c, idx);
}

/* ------------------------------------------------------------- timers */

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	S.tfired++;
}

static int
lv_timer_add(struct bench_ctx *c, int count, bool far)
{
	(void)c;
	if (count > S.tmcap) {
		free(S.tm);
		if ((S.tm = calloc(count, sizeof(*S.tm))) == NULL)
			return -1;
		S.tmcap = count;
	}
	/* Relative to now, not to the loop's cached time of its last run. */
	ev_now_update(S.loop);
	for (int i = 0; i < count; i++) {
		long long us = far ? BENCH_TIMER_FAR_US : BENCH_TIMER_NEAR_US(i);

		ev_timer_init(&S.tm[i], timer_cb, us / 1e6, 0.);
		ev_timer_start(S.loop, &S.tm[i]);
	}
	return 0;
}

static int
lv_timer_del(struct bench_ctx *c, int count)
{
	(void)c;
	for (int i = 0; i < count; i++)
		ev_timer_stop(S.loop, &S.tm[i]);
	return 0;
}

static int
lv_timer_fire(struct bench_ctx *c, int count)
{
	(void)c;
	S.tfired = 0;
	while (S.tfired < count)
		ev_run(S.loop, EVRUN_ONCE);
	return 0;
}

/* ------------------------------------------------------------- wakeup */

static void
peer_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)w;
	(void)revents;
	if (atomic_load_explicit(&S.stop, memory_order_acquire))
		ev_break(loop, EVBREAK_ALL);
	else
		ev_async_send(S.loop, &S.main_async);
}

static void
main_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	S.got = true;
}

static void *
peer_main(void *arg)
{
	(void)arg;
	ev_run(S.peer_loop, 0);
	return NULL;
}

static int
wakeup_setup(void)
{
	if ((S.peer_loop = new_loop()) == NULL)
		return -1;
	ev_async_init(&S.main_async, main_cb);
	ev_async_start(S.loop, &S.main_async);
	ev_async_init(&S.peer_async, peer_cb);
	ev_async_start(S.peer_loop, &S.peer_async);
	return pthread_create(&S.peer, NULL, peer_main, NULL) == 0 ? 0 : -1;
}

static int
wakeup_iter(struct bench_ctx *c)
{
	(void)c;
	S.got = false;
	ev_async_send(S.peer_loop, &S.peer_async);
	while (!S.got)
		ev_run(S.loop, EVRUN_ONCE);
	return 0;
}

/* ------------------------------------------------------------ sockets */

static int
lv_setup(struct bench_ctx *c)
{
	const struct bench_opts *o = c->o;

	S.c = c;
	if ((S.loop = new_loop()) == NULL)
		return -1;
	switch (o->workload) {
	case W_TIMERS:
		return 0;
	case W_WAKEUP:
		return wakeup_setup();
	default:
		break;
	}
	if ((S.io = calloc(o->n, sizeof(*S.io))) == NULL)
		return -1;
	for (int i = 0; i < o->n; i++) {
		ev_io_init(&S.io[i], io_cb, c->fds[2 * i], EV_READ);
		ev_io_start(S.loop, &S.io[i]);
	}
	return 0;
}

static void
churn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	if (bench_churn_read(w->fd) == -1)
		S.c->failures++;
	S.churn_seen = true;
}

static int
churn_iter(struct bench_ctx *c)
{
	int sv[2];

	(void)c;
	if (bench_churn_open(sv) == -1)
		return -1;
	ev_io_init(&S.churn, churn_cb, sv[0], EV_READ);
	ev_io_start(S.loop, &S.churn);
	S.churn_seen = false;
	while (!S.churn_seen)
		ev_run(S.loop, EVRUN_ONCE);
	ev_io_stop(S.loop, &S.churn);
	close(sv[0]);
	close(sv[1]);
	return 0;
}

static int
lv_iter(struct bench_ctx *c)
{
	const struct bench_opts *o = c->o;

	switch (o->workload) {
	case W_CHURN:
		return churn_iter(c);
	case W_WAKEUP:
		return wakeup_iter(c);
	case W_REARM:
		for (int i = 0; i < o->n; i++) {
			ev_io_stop(S.loop, &S.io[i]);
			ev_io_start(S.loop, &S.io[i]);
		}
		break;
	default:
		break;
	}
	bench_iter_start(c);
	do
		ev_run(S.loop, EVRUN_NOWAIT);
	while (!bench_iter_done(c));
	return 0;
}

static void
lv_teardown(struct bench_ctx *c)
{
	if (c->o->workload == W_WAKEUP) {
		atomic_store_explicit(&S.stop, true, memory_order_release);
		ev_async_send(S.peer_loop, &S.peer_async);
		pthread_join(S.peer, NULL);
	}
}

static const struct bench_backend backend = {
	.name = "libev",
	.setup = lv_setup,
	.iter = lv_iter,
	.timer_add = lv_timer_add,
	.timer_del = lv_timer_del,
	.timer_fire = lv_timer_fire,
	.teardown = lv_teardown,
};

int
main(int argc, char **argv)
{
	return bench_main(argc, argv, &backend);
}
