/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libevent 2.1 on its epoll method (select and poll are refused; the run
 * fails if libevent would not pick epoll).  Written as a libevent user
 * would: struct events with callbacks, the library's own loop.
 *   dispatch  EV_READ|EV_PERSIST added once; EVLOOP_ONCE|EVLOOP_NONBLOCK
 *   rearm     event_del + event_add of every event each iteration
 *   oneshot   EV_READ without EV_PERSIST, event_add again in the callback
 *   reenable  the same (libevent has one one-shot mechanism)
 *   timers    evtimer_assign into one array, evtimer_add / evtimer_del
 *   churn     event_assign + event_add, loop once, event_del, close
 *             (libevent must be told before the close)
 *   wakeup    event_active() from the other thread (evthread_use_pthreads)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/thread.h>

#include "common.h"

static struct {
	struct bench_ctx *c;
	struct event_base *base;
	struct event **ev;
	/* timers */
	struct event *tm;
	size_t tmcap;
	long tfired;
	/* churn */
	struct event churn;
	bool churn_seen;
	/* wakeup */
	struct event_base *peer_base;
	struct event *main_ev, *peer_ev;
	pthread_t peer;
	atomic_bool stop;
	bool got;
} S;

static struct event_base *
new_base(void)
{
	struct event_config *cfg = event_config_new();
	struct event_base *b;

	event_config_avoid_method(cfg, "select");
	event_config_avoid_method(cfg, "poll");
	b = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (b == NULL || strcmp(event_base_get_method(b), "epoll") != 0) {
		bench_fail("libevent did not give the epoll method (%s)",
		    b ? event_base_get_method(b) : "no base");
		return NULL;
	}
	return b;
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	int idx = (int)(intptr_t)arg;

	(void)fd;
	(void)what;
	bench_on_read(S.c, idx);
	if (S.c->o->workload == W_ONESHOT || S.c->o->workload == W_REENABLE)
		event_add(S.ev[idx], NULL);
}

/* ------------------------------------------------------------- timers */

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	S.tfired++;
}

static int
le_timer_add(struct bench_ctx *c, int count, bool far)
{
	size_t sz = event_get_struct_event_size();
	struct timeval tv;

	(void)c;
	if ((size_t)count > S.tmcap) {
		free(S.tm);
		if ((S.tm = calloc(count, sz)) == NULL)
			return -1;
		S.tmcap = count;
	}
	for (int i = 0; i < count; i++) {
		struct event *ev = (struct event *)((char *)S.tm + i * sz);
		long long us = far ? BENCH_TIMER_FAR_US : BENCH_TIMER_NEAR_US(i);

		tv.tv_sec = us / 1000000;
		tv.tv_usec = us % 1000000;
		evtimer_assign(ev, S.base, timer_cb, NULL);
		if (evtimer_add(ev, &tv) == -1)
			return -1;
	}
	return 0;
}

static int
le_timer_del(struct bench_ctx *c, int count)
{
	size_t sz = event_get_struct_event_size();

	(void)c;
	for (int i = 0; i < count; i++)
		evtimer_del((struct event *)((char *)S.tm + i * sz));
	return 0;
}

static int
le_timer_fire(struct bench_ctx *c, int count)
{
	(void)c;
	S.tfired = 0;
	while (S.tfired < count)
		if (event_base_loop(S.base, EVLOOP_ONCE) == -1)
			return -1;
	return 0;
}

/* ------------------------------------------------------------- wakeup */

static void
peer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (atomic_load_explicit(&S.stop, memory_order_acquire))
		event_base_loopbreak(S.peer_base);
	else
		event_active(S.main_ev, EV_READ, 1);
}

static void
main_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	S.got = true;
}

static void *
peer_main(void *arg)
{
	(void)arg;
	event_base_loop(S.peer_base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static int
wakeup_setup(void)
{
	if ((S.peer_base = new_base()) == NULL)
		return -1;
	S.main_ev = event_new(S.base, -1, EV_PERSIST, main_cb, NULL);
	S.peer_ev = event_new(S.peer_base, -1, EV_PERSIST, peer_cb, NULL);
	if (S.main_ev == NULL || S.peer_ev == NULL)
		return -1;
	return pthread_create(&S.peer, NULL, peer_main, NULL) == 0 ? 0 : -1;
}

static int
wakeup_iter(struct bench_ctx *c)
{
	(void)c;
	S.got = false;
	event_active(S.peer_ev, EV_READ, 1);
	while (!S.got)
		if (event_base_loop(S.base, EVLOOP_ONCE |
		    EVLOOP_NO_EXIT_ON_EMPTY) == -1)
			return -1;
	return 0;
}

/* ------------------------------------------------------------ sockets */

static int
le_setup(struct bench_ctx *c)
{
	const struct bench_opts *o = c->o;
	short what = EV_READ | EV_PERSIST;

	S.c = c;
	if (o->workload == W_WAKEUP && evthread_use_pthreads() == -1)
		return -1;
	if ((S.base = new_base()) == NULL)
		return -1;
	switch (o->workload) {
	case W_TIMERS:
		return 0;
	case W_WAKEUP:
		return wakeup_setup();
	case W_ONESHOT:
	case W_REENABLE:
		what = EV_READ;
		break;
	default:
		break;
	}
	if ((S.ev = calloc(o->n, sizeof(*S.ev))) == NULL)
		return -1;
	for (int i = 0; i < o->n; i++) {
		S.ev[i] = event_new(S.base, c->fds[2 * i], what, read_cb,
		    (void *)(intptr_t)i);
		if (S.ev[i] == NULL || event_add(S.ev[i], NULL) == -1) {
			bench_fail("event_add %d failed", i);
			return -1;
		}
	}
	return 0;
}

static void
churn_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (bench_churn_read(fd) == -1)
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
	event_assign(&S.churn, S.base, sv[0], EV_READ | EV_PERSIST, churn_cb,
	    NULL);
	if (event_add(&S.churn, NULL) == -1)
		return -1;
	S.churn_seen = false;
	while (!S.churn_seen)
		if (event_base_loop(S.base, EVLOOP_ONCE) == -1)
			return -1;
	event_del(&S.churn);
	close(sv[0]);
	close(sv[1]);
	return 0;
}

static int
le_iter(struct bench_ctx *c)
{
	const struct bench_opts *o = c->o;

	switch (o->workload) {
	case W_CHURN:
		return churn_iter(c);
	case W_WAKEUP:
		return wakeup_iter(c);
	case W_REARM:
		for (int i = 0; i < o->n; i++) {
			event_del(S.ev[i]);
			if (event_add(S.ev[i], NULL) == -1)
				return -1;
		}
		break;
	default:
		break;
	}
	bench_iter_start(c);
	do {
		if (event_base_loop(S.base, EVLOOP_ONCE | EVLOOP_NONBLOCK) == -1)
			return -1;
	} while (!bench_iter_done(c));
	return 0;
}

static void
le_teardown(struct bench_ctx *c)
{
	if (c->o->workload == W_WAKEUP) {
		atomic_store_explicit(&S.stop, true, memory_order_release);
		event_active(S.peer_ev, EV_READ, 1);
		pthread_join(S.peer, NULL);
	}
}

static const struct bench_backend backend = {
	.name = "libevent",
	.setup = le_setup,
	.iter = le_iter,
	.timer_add = le_timer_add,
	.timer_del = le_timer_del,
	.timer_fire = le_timer_fire,
	.teardown = le_teardown,
};

int
main(int argc, char **argv)
{
	return bench_main(argc, argv, &backend);
}
