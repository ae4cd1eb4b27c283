/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Shared part of the per-backend bench programs (bench-epoll, bench-kqfree,
 * bench-libkqueue, bench-libevent, bench-libev).
 *
 * common.c owns everything that must be identical across backends so the
 * numbers compare: option parsing, the socketpair set, the chained-write
 * callback body of libevent's test/bench.c, timing, syscall counting, RSS,
 * and the one RESULT line the driver (kqfree-bench) parses.  A backend file
 * only says how its event mechanism registers, waits and re-arms.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum bench_workload {
	W_DISPATCH,	/* persistent watchers, chained writes */
	W_REARM,	/* same, every watcher deleted + re-added each iteration */
	W_ONESHOT,	/* one-shot watchers re-armed after each event */
	W_REENABLE,	/* the same with EV_DISPATCH + EV_ENABLE (kqueue) */
	W_TIMERS,	/* add/delete + add/fire T timers */
	W_CHURN,	/* socketpair, watch, one event, close */
	W_WAKEUP,	/* cross-thread ping-pong through user events */
	W_COUNT
};

extern const char *const bench_workload_names[W_COUNT];

struct bench_opts {
	enum bench_workload workload;
	int n;		/* socketpairs registered (dispatch/rearm/oneshot/churn) */
	int active;	/* pairs written at the start of an iteration */
	int writes;	/* chained writes per iteration */
	int timers;	/* timers per iteration (timers workload) */
	int runs;	/* timed runs; median/min/max are over these */
	int iters;	/* iterations per run */
	bool count;	/* one extra run with syscall counters */
	bool wall;	/* time with the wall clock instead of process CPU time */
	bool verbose;
};

/* What one process measures; the backend sees it through its callbacks. */
struct bench_ctx {
	const struct bench_opts *o;
	int *fds;		/* fds[2*i] read end (watched), fds[2*i+1] write end */
	void *be;		/* backend's private state */
	/* chained-write state of the current iteration (libevent bench.c) */
	long count, fired, writes_left;
	long failures;
};

/*
 * A backend.  Workload hooks that are NULL are reported as unsupported.
 * iter() runs ONE iteration of dispatch/rearm/oneshot/churn/wakeup and
 * returns 0, or -1 after printing why.
 */
struct bench_backend {
	const char *name;
	/* BENCH_WL(w) bits of the workloads it runs; 0: every workload it
	 * has hooks for.  A floor is only a floor where its extra work is the
	 * price of the kqueue contract (bench_epoll.c). */
	unsigned workloads;
	int (*setup)(struct bench_ctx *);
	int (*iter)(struct bench_ctx *);
	/* timers: add `count` timers (far: 1 hour, else 1..10 us) */
	int (*timer_add)(struct bench_ctx *, int count, bool far);
	int (*timer_del)(struct bench_ctx *, int count);
	/* wait until `count` added (near) timers have fired */
	int (*timer_fire)(struct bench_ctx *, int count);
	void (*teardown)(struct bench_ctx *);
};

#define BENCH_WL(w)	(1u << (w))

int bench_main(int argc, char **argv, const struct bench_backend *be);

/* Start an iteration of the chained-write workloads: write to A pairs. */
void bench_iter_start(struct bench_ctx *c);
static inline bool bench_iter_done(const struct bench_ctx *c)
{
	return c->count == c->fired;
}
/* Body of bench.c's read_cb for pair idx: read one byte, chain a write. */
void bench_on_read(struct bench_ctx *c, int idx);

/* Churn: a fresh socketpair with one byte already queued on sv[0]. */
int bench_churn_open(int sv[2]);
/* Churn: consume the byte (the event handler's work). */
int bench_churn_read(int fd);

/*
 * Timer i's relative timeout for the fire phase: 1..10 us, so every timer
 * has expired by the time the adds are done and the fire phase measures
 * expiry processing, not sleeping.  Far timers (add/delete phase): 1 hour.
 */
#define BENCH_TIMER_NEAR_US(i)	(1 + (i) % 10)
#define BENCH_TIMER_FAR_US	3600000000LL

void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t bench_now_ns(void);

#endif /* BENCH_COMMON_H */
