/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * EVFILT_TIMER against FreeBSD 14 semantics.
 *
 * Timing assertions are two-sided but load tolerant: a timer may never fire
 * before its deadline (exact, both sides use CLOCK_MONOTONIC), and the
 * expiration count must lie between what had certainly elapsed before the
 * retrieving kevent() started and what could have elapsed by its return.
 */
#include "util.h"

#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define MS	1000000LL

static int64_t
real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

/*
 * Arm a timer and remember when: the library took its start time somewhere
 * in [lo, hi].
 */
struct armed {
	int64_t lo, hi;
};

static struct armed
arm(int kq, uintptr_t ident, unsigned short flags, unsigned fflags,
    int64_t data, void *udata)
{
	struct armed a;

	a.lo = now_ns();
	kev_ok(kq, ident, EVFILT_TIMER, flags, fflags, data, udata);
	a.hi = now_ns();
	return a;
}

/*
 * Wait (at most ms) for the next event, which must be this timer with these
 * flags and udata, fflags 0.  Returns its data, checked against the
 * periods of period_ns that elapsed since a (total: expirations already
 * retrieved since a).
 */
static int64_t
expect_timer(int kq, long ms, uintptr_t ident, unsigned short flags,
    void *udata, struct armed a, int64_t period_ns, int64_t total)
{
	struct kevent ev;
	int64_t before = now_ns(), after;
	int n;

	memset(&ev, 0xa5, sizeof ev);
	n = kev_wait(kq, &ev, 1, ms);
	after = now_ns();
	ck_assert_msg(n == 1, "expected a timer event, kevent returned %d (errno %d)",
	    n, errno);
	ck_assert_uint_eq(ev.ident, ident);
	ck_assert_int_eq(ev.filter, EVFILT_TIMER);
	ck_assert_uint_eq(ev.flags, flags);
	ck_assert_uint_eq(ev.fflags, 0);
	ck_assert_ptr_eq(ev.udata, udata);
	ck_assert_uint_eq(ev.ext[0] | ev.ext[1] | ev.ext[2] | ev.ext[3], 0);
	/* never early */
	ck_assert_msg(after - a.lo >= period_ns,
	    "timer fired after %lld ns, period %lld ns",
	    (long long)(after - a.lo), (long long)period_ns);
	/* exact count window */
	int64_t lo = before > a.hi ? (before - a.hi) / period_ns : 0;
	int64_t hi = (after - a.lo) / period_ns;
	if (lo < total + 1)
		lo = total + 1;
	ck_assert_msg(total + ev.data >= lo && total + ev.data <= hi,
	    "data %lld (after %lld) outside [%lld, %lld]", (long long)ev.data,
	    (long long)total, (long long)(lo - total), (long long)(hi - total));
	return ev.data;
}

/* ------------------------------------------------------------ semantics */

START_TEST(timer_periodic_reports_clear_and_counts_expirations)
{
	int kq = xkqueue(), udata;
	struct armed a = arm(kq, 1, EV_ADD, 0, 100, &udata);
	int64_t total;

	total = expect_timer(kq, 3000, 1, EV_CLEAR, &udata, a, 100 * MS, 0);
	/* it keeps running; five periods later all of them are counted */
	sleep_ms(500);
	total += expect_timer(kq, 3000, 1, EV_CLEAR, &udata, a, 100 * MS, total);
	ck_assert_int_ge(total, 6);
	/* EV_CLEAR reset the count: nothing is due right now */
	kev_ok(kq, 1, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(timer_oneshot_fires_once_and_is_deleted)
{
	int kq = xkqueue();
	struct armed a = arm(kq, 7, EV_ADD | EV_ONESHOT, 0, 50, NULL);
	struct kevent ev;

	expect_timer(kq, 3000, 7, EV_ONESHOT | EV_CLEAR, NULL, a, 50 * MS, 0);
	ck_assert_int_eq(kev_wait(kq, &ev, 1, 200), 0);
	ck_assert_errno(kev_change(kq, 7, EVFILT_TIMER, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	close(kq);
}
END_TEST

/* Every unit, all armed at once: each fires no earlier than its period. */
START_TEST(timer_units_scale_data)
{
	static const struct {
		unsigned fflags;
		int64_t data, ns;
	} u[] = {
		{ NOTE_SECONDS, 1, 1000 * MS },
		{ NOTE_MSECONDS, 300, 300 * MS },
		{ 0, 400, 400 * MS },			/* default: ms */
		{ NOTE_USECONDS, 200000, 200 * MS },
		{ NOTE_NSECONDS, 100000000, 100 * MS },
	};
	int kq = xkqueue(), seen = 0;
	size_t i;
	int64_t t0 = now_ns();

	for (i = 0; i < sizeof u / sizeof u[0]; i++)
		kev_ok(kq, i, EVFILT_TIMER, EV_ADD | EV_ONESHOT, u[i].fflags,
		    u[i].data, NULL);
	while (seen != (1 << (sizeof u / sizeof u[0])) - 1) {
		struct kevent ev;
		ck_assert_int_eq(kev_wait(kq, &ev, 1, 5000), 1);
		int64_t t = now_ns();
		ck_assert_uint_lt(ev.ident, sizeof u / sizeof u[0]);
		ck_assert_int_eq(ev.filter, EVFILT_TIMER);
		ck_assert_uint_eq(ev.flags, EV_ONESHOT | EV_CLEAR);
		ck_assert_uint_eq(ev.fflags, 0);
		ck_assert_int_eq(ev.data, 1);
		ck_assert_msg(t - t0 >= u[ev.ident].ns,
		    "unit %#x fired after %lld ns", u[ev.ident].fflags,
		    (long long)(t - t0));
		ck_assert_int_eq(seen & (1 << ev.ident), 0);
		seen |= 1 << ev.ident;
	}
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(timer_abstime_fires_at_realtime_deadline_without_clear)
{
	int kq = xkqueue();
	int64_t deadline_us = real_ns() / 1000 + 300000;
	int64_t deadline_ms = real_ns() / MS + 400;
	int i;

	kev_ok(kq, 1, EVFILT_TIMER, EV_ADD | EV_ONESHOT,
	    NOTE_ABSTIME | NOTE_USECONDS, deadline_us, NULL);
	kev_ok(kq, 2, EVFILT_TIMER, EV_ADD | EV_ONESHOT, NOTE_ABSTIME,
	    deadline_ms, NULL);
	for (i = 1; i <= 2; i++) {
		/* NOTE_ABSTIME timers do not get EV_CLEAR (FreeBSD) */
		kev_expect(kq, 3000, i, EVFILT_TIMER, EV_ONESHOT, 0, 1, NULL);
		ck_assert_int_ge(real_ns(),
		    i == 1 ? deadline_us * 1000 : deadline_ms * MS);
	}
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(timer_abstime_in_the_past_fires_at_once)
{
	int kq = xkqueue();

	kev_ok(kq, 1, EVFILT_TIMER, EV_ADD | EV_ONESHOT, NOTE_ABSTIME,
	    real_ns() / MS - 5000, NULL);
	kev_expect(kq, 0, 1, EVFILT_TIMER, EV_ONESHOT, 0, 1, NULL);
	close(kq);
}
END_TEST

/* No EV_ONESHOT, no EV_CLEAR: fires once and then stays triggered. */
START_TEST(timer_abstime_epoch_stays_triggered_until_deleted)
{
	int kq = xkqueue(), u;

	kev_ok(kq, 3, EVFILT_TIMER, EV_ADD, NOTE_ABSTIME, 0, &u);
	kev_expect(kq, 0, 3, EVFILT_TIMER, 0, 0, 1, &u);
	kev_expect(kq, 0, 3, EVFILT_TIMER, 0, 0, 1, &u);
	kev_ok(kq, 3, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(timer_zero_oneshot_fires_at_once)
{
	int kq = xkqueue();

	kev_ok(kq, 4, EVFILT_TIMER, EV_ADD | EV_ONESHOT, NOTE_SECONDS, 0, NULL);
	kev_expect(kq, 0, 4, EVFILT_TIMER, EV_ONESHOT | EV_CLEAR, 0, 1, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

/* A periodic timer of 0 runs every 1 unit (here 1 ms), not once at once. */
START_TEST(timer_zero_periodic_runs_every_unit)
{
	int kq = xkqueue();
	struct armed a = arm(kq, 5, EV_ADD, NOTE_MSECONDS, 0, NULL);
	int64_t n;

	sleep_ms(100);
	n = expect_timer(kq, 1000, 5, EV_CLEAR, NULL, a, 1 * MS, 0);
	ck_assert_int_ge(n, 100);
	close(kq);
}
END_TEST

START_TEST(timer_negative_data_is_einval)
{
	int kq = xkqueue();

	ck_assert_errno(kev_change(kq, 1, EVFILT_TIMER, EV_ADD, 0, -1, NULL),
	    EINVAL);
	ck_assert_errno(kev_change(kq, 1, EVFILT_TIMER, EV_ADD | EV_ONESHOT,
	    NOTE_NSECONDS, INT64_MIN, NULL), EINVAL);
	ck_assert_errno(kev_change(kq, 1, EVFILT_TIMER, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	close(kq);
}
END_TEST

START_TEST(timer_bad_fflags_are_einval)
{
	static const unsigned bad[] = {
		NOTE_SECONDS | NOTE_MSECONDS,
		NOTE_USECONDS | NOTE_NSECONDS,
		NOTE_ABSTIME | NOTE_SECONDS | NOTE_NSECONDS,
		0x100,
		NOTE_TRIGGER,
		NOTE_MSECONDS | 0x80000000u,
	};
	int kq = xkqueue();
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct kevent ch, ev;
		EV_SET(&ch, 1, EVFILT_TIMER, EV_ADD, bad[i], 10, NULL);
		memset(&ev, 0, sizeof ev);
		ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, NULL), 1);
		ck_assert_uint_eq(ev.ident, 1);
		ck_assert_int_eq(ev.filter, EVFILT_TIMER);
		ck_assert_uint_eq(ev.flags & EV_ERROR, EV_ERROR);
		ck_assert_int_eq(ev.data, EINVAL);
	}
	ck_assert_errno(kev_change(kq, 1, EVFILT_TIMER, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	close(kq);
}
END_TEST

START_TEST(timer_readd_restarts_with_new_period_and_udata)
{
	int kq = xkqueue(), u1, u2;
	struct armed a;

	kev_ok(kq, 1, EVFILT_TIMER, EV_ADD, 0, 10000, &u1);
	a = arm(kq, 1, EV_ADD, NOTE_USECONDS, 150000, &u2);
	expect_timer(kq, 3000, 1, EV_CLEAR, &u2, a, 150 * MS, 0);
	close(kq);
}
END_TEST

START_TEST(timer_readd_discards_undelivered_expirations)
{
	int kq = xkqueue();

	kev_ok(kq, 1, EVFILT_TIMER, EV_ADD, 0, 10, NULL);
	kev_ok(kq, 2, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 10, NULL);
	sleep_ms(100);
	kev_ok(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_SECONDS, 10, NULL);
	kev_ok(kq, 2, EVFILT_TIMER, EV_ADD | EV_ONESHOT, NOTE_SECONDS, 10, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

/* Expirations already counted (while disabled) are thrown away too. */
START_TEST(timer_readd_while_disabled_discards_counted_expirations)
{
	int kq = xkqueue();

	kev_ok(kq, 1, EVFILT_TIMER, EV_ADD | EV_DISABLE, 0, 10, NULL);
	sleep_ms(100);
	kev_expect_none(kq);		/* the expirations get counted here */
	struct armed a = arm(kq, 1, EV_ADD, 0, 150, NULL);
	kev_ok(kq, 1, EVFILT_TIMER, EV_ENABLE, 0, 0, NULL);
	kev_expect_none(kq);
	/* the next report counts only the new timer's expirations */
	expect_timer(kq, 3000, 1, EV_CLEAR, NULL, a, 150 * MS, 0);
	close(kq);
}
END_TEST

/* Deviation from FreeBSD (which silently kills the timer): EINVAL, timer kept. */
START_TEST(timer_invalid_readd_is_einval_and_keeps_timer)
{
	int kq = xkqueue();
	struct armed a = arm(kq, 1, EV_ADD | EV_ONESHOT, 0, 100, NULL);

	ck_assert_errno(kev_change(kq, 1, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0,
	    -5, NULL), EINVAL);
	ck_assert_errno(kev_change(kq, 1, EVFILT_TIMER, EV_ADD | EV_ONESHOT,
	    NOTE_SECONDS | NOTE_NSECONDS, 5, NULL), EINVAL);
	expect_timer(kq, 3000, 1, EV_ONESHOT | EV_CLEAR, NULL, a, 100 * MS, 0);
	close(kq);
}
END_TEST

/*
 * A failed re-add leaves the knote exactly as it was: not its udata, not
 * its EV_DISABLE, not its EV_FORCEONESHOT (a forced report, EV_ONESHOT in
 * the flags) are applied.
 */
START_TEST(timer_invalid_readd_keeps_udata_flags_and_state)
{
	int kq = xkqueue(), u1, u2;
	struct armed a = arm(kq, 1, EV_ADD, 0, 100, &u1);
	struct kevent ch, ev;
	int64_t d;

	EV_SET(&ch, 1, EVFILT_TIMER, EV_ADD | EV_DISABLE | EV_FORCEONESHOT, 0,
	    -5, &u2);
	memset(&ev, 0xa5, sizeof ev);
	ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, &(struct timespec){ 0, 0 }), 1);
	ck_assert_uint_eq(ev.flags, EV_ERROR);
	ck_assert_int_eq(ev.data, EINVAL);
	ck_assert_ptr_eq(ev.udata, &u2);
	ck_assert_errno(kev_change(kq, 1, EVFILT_TIMER, EV_ADD | EV_DISABLE,
	    NOTE_SECONDS | NOTE_NSECONDS, 5, &u2), EINVAL);
	/* enabled, periodic, old udata */
	d = expect_timer(kq, 3000, 1, EV_CLEAR, &u1, a, 100 * MS, 0);
	expect_timer(kq, 3000, 1, EV_CLEAR, &u1, a, 100 * MS, d);
	close(kq);
}
END_TEST

/* ... and a failed re-add with EV_ENABLE leaves a disabled timer disabled. */
START_TEST(timer_invalid_readd_keeps_disabled_timer_disabled)
{
	int kq = xkqueue(), u1, u2;
	struct armed a = arm(kq, 1, EV_ADD | EV_DISABLE, 0, 10, &u1);

	ck_assert_errno(kev_change(kq, 1, EVFILT_TIMER, EV_ADD | EV_ENABLE,
	    0x40000000, 10, &u2), EINVAL);
	sleep_ms(50);
	kev_expect_none(kq);
	kev_ok(kq, 1, EVFILT_TIMER, EV_ENABLE | EV_KEEPUDATA, 0, 0, NULL);
	ck_assert_int_ge(expect_timer(kq, 0, 1, EV_CLEAR, &u1, a, 10 * MS, 0), 4);
	close(kq);
}
END_TEST

/* Whether a kqueue's first armed timer takes a descriptor: the epoll
 * backend's timerfd; the io_uring backend's ring timeout takes none. */
static bool
timers_take_a_descriptor(void)
{
	int kq = xkqueue(), before = count_open_fds(), after;

	kev_ok(kq, 1, EVFILT_TIMER, EV_ADD, 0, 60000, NULL);
	after = count_open_fds();
	close(kq);
	return after > before;
}

/*
 * A re-add that fails for lack of a descriptor (the kqueue's timerfd is
 * opened with its first armed timer) leaves the old timer running: here a
 * NOTE_ABSTIME timer in the past, which stays triggered.  On a backend
 * whose timers need no descriptor the re-add succeeds all the same.
 */
START_TEST(timer_readd_failing_with_emfile_keeps_timer)
{
	int kq, u1, u2, fds[65], n = 0;
	bool need_fd = timers_take_a_descriptor();
	struct rlimit rl;

	kq = xkqueue();

	kev_ok(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_ABSTIME | NOTE_SECONDS, 1, &u1);
	kev_expect(kq, 2000, 1, EVFILT_TIMER, 0, 0, 1, &u1);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	int low = dup(0);
	ck_assert_int_ge(low, 0);
	close(low);
	rl.rlim_cur = low + 64;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	while (n < 65 && (fds[n] = dup(0)) >= 0)
		n++;
	ck_assert_int_eq(errno, EMFILE);
	if (!need_fd) {
		/* restarted: a minute away, nothing to report */
		kev_ok(kq, 1, EVFILT_TIMER, EV_ADD, 0, 60000, &u2);
		kev_expect_none(kq);
		while (n > 0)
			close(fds[--n]);
		close(kq);
		return;
	}
	ck_assert_errno(kev_change(kq, 1, EVFILT_TIMER, EV_ADD, 0, 60000, &u2),
	    EMFILE);
	/* still triggered, same udata, same flags */
	kev_expect(kq, 2000, 1, EVFILT_TIMER, 0, 0, 1, &u1);
	kev_expect(kq, 2000, 1, EVFILT_TIMER, 0, 0, 1, &u1);
	while (n > 0)
		close(fds[--n]);
	close(kq);
}
END_TEST

/* EV_DISABLE disables the event, not the filter: expirations are counted. */
START_TEST(timer_disabled_counts_expirations_until_enabled)
{
	int kq = xkqueue();
	struct armed a = arm(kq, 1, EV_ADD | EV_DISABLE, 0, 20, NULL);

	sleep_ms(200);
	kev_expect_none(kq);
	kev_ok(kq, 1, EVFILT_TIMER, EV_ENABLE, 0, 0, NULL);
	ck_assert_int_ge(expect_timer(kq, 0, 1, EV_CLEAR, NULL, a, 20 * MS, 0),
	    9);
	close(kq);
}
END_TEST

START_TEST(timer_dispatch_disables_after_delivery_and_keeps_counting)
{
	int kq = xkqueue();
	struct armed a = arm(kq, 1, EV_ADD | EV_DISPATCH, 0, 30, NULL);
	int64_t d1, d2, t1;
	struct kevent ev;

	d1 = expect_timer(kq, 3000, 1, EV_CLEAR | EV_DISPATCH, NULL, a, 30 * MS,
	    0);
	t1 = now_ns();
	ck_assert_int_eq(kev_wait(kq, &ev, 1, 200), 0);
	int64_t t2 = now_ns();
	kev_ok(kq, 1, EVFILT_TIMER, EV_ENABLE, 0, 0, NULL);
	d2 = expect_timer(kq, 0, 1, EV_CLEAR | EV_DISPATCH, NULL, a, 30 * MS,
	    d1);
	ck_assert_int_ge(d2, (t2 - t1) / (30 * MS) - 1);
	/* disabled again after this delivery */
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(timer_delete_stops_it)
{
	int kq = xkqueue();
	struct armed a = arm(kq, 9, EV_ADD, 0, 20, NULL);
	struct kevent ev;

	expect_timer(kq, 3000, 9, EV_CLEAR, NULL, a, 20 * MS, 0);
	kev_ok(kq, 9, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	ck_assert_int_eq(kev_wait(kq, &ev, 1, 150), 0);
	ck_assert_errno(kev_change(kq, 9, EVFILT_TIMER, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	close(kq);
}
END_TEST

/*
 * One changelist: a timer added and deleted (the table of timers is then
 * empty), fd changes, then another timer added.  kevent() computes each
 * change's bucket eight changes ahead and skips that while the table is
 * empty: a bucket left from before must not be taken for the later timer's
 * (it was linked into the wrong chain, and its delete was ENOENT).  Idents
 * 1..16 so that some bucket differs from the stale one.
 */
START_TEST(timer_added_after_the_table_emptied_in_one_changelist_is_found)
{
	struct kevent ch[18];
	uintptr_t id;
	int p[2], i;

	xpipe(p);
	for (id = 1; id <= 16; id++) {
		int kq = xkqueue();

		EV_SET(&ch[0], 1000, EVFILT_TIMER, EV_ADD, 0, 60000, NULL);
		EV_SET(&ch[1], 1000, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
		for (i = 2; i < 17; i++)
			EV_SET(&ch[i], p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
		EV_SET(&ch[17], id, EVFILT_TIMER, EV_ADD, 0, 60000, NULL);
		ck_assert_int_eq(kevent(kq, ch, 18, NULL, 0, NULL), 0);
		kev_ok(kq, id, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
		ck_assert_errno(kev_change(kq, id, EVFILT_TIMER, EV_DELETE, 0,
		    0, NULL), ENOENT);
		close(kq);
	}
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(timer_same_ident_in_two_kqueues_is_independent)
{
	int kq1 = xkqueue(), kq2 = xkqueue();
	struct armed a;
	struct kevent ev;

	a = arm(kq1, 1, EV_ADD, 0, 50, NULL);
	kev_ok(kq2, 1, EVFILT_TIMER, EV_ADD, NOTE_SECONDS, 60, NULL);
	expect_timer(kq1, 3000, 1, EV_CLEAR, NULL, a, 50 * MS, 0);
	ck_assert_int_eq(kev_wait(kq2, &ev, 1, 0), 0);
	close(kq1);
	a = arm(kq2, 1, EV_ADD, 0, 50, NULL);
	expect_timer(kq2, 3000, 1, EV_CLEAR, NULL, a, 50 * MS, 0);
	close(kq2);
}
END_TEST

/* Saturates to "never" instead of wrapping into the past. */
START_TEST(timer_huge_values_do_not_wrap)
{
	int kq = xkqueue();
	struct kevent ev;

	kev_ok(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_NSECONDS, INT64_MAX, NULL);
	kev_ok(kq, 2, EVFILT_TIMER, EV_ADD, NOTE_SECONDS, INT64_MAX, NULL);
	kev_ok(kq, 3, EVFILT_TIMER, EV_ADD | EV_ONESHOT, NOTE_SECONDS, INT64_MAX / 2,
	    NULL);
	kev_ok(kq, 4, EVFILT_TIMER, EV_ADD, NOTE_ABSTIME | NOTE_SECONDS,
	    INT64_MAX, NULL);
	ck_assert_int_eq(kev_wait(kq, &ev, 1, 100), 0);
	/* and the shared timerfd still serves a short timer next to them */
	struct armed a = arm(kq, 5, EV_ADD | EV_ONESHOT, 0, 30, NULL);
	expect_timer(kq, 3000, 5, EV_ONESHOT | EV_CLEAR, NULL, a, 30 * MS, 0);
	close(kq);
}
END_TEST

/* A timer due while another thread sleeps in kevent() wakes it. */
static void *
blocked_waiter(void *arg)
{
	int kq = *(int *)arg;
	struct kevent ev;
	struct timespec ts = { 5, 0 };
	intptr_t n = kevent(kq, NULL, 0, &ev, 1, &ts);

	return (void *)(n == 1 && ev.ident == 11 ? now_ns() : 0);
}

START_TEST(timer_wakes_thread_blocked_in_kevent)
{
	int kq = xkqueue();
	pthread_t th;
	void *ret;

	ck_assert_int_eq(pthread_create(&th, NULL, blocked_waiter, &kq), 0);
	sleep_ms(50);
	int64_t t0 = now_ns();
	kev_ok(kq, 11, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 100, NULL);
	ck_assert_int_eq(pthread_join(th, &ret), 0);
	int64_t t = (int64_t)(intptr_t)ret;
	ck_assert_msg(t != 0, "the blocked kevent() did not return the timer");
	ck_assert_int_ge(t - t0, 100 * MS);
	ck_assert_int_lt(t - t0, 1100 * MS);
	close(kq);
}
END_TEST

/*
 * A fork child drops its copy of the kqueue without touching the timerfd
 * and epoll set it shares with the parent, and can use timers of its own.
 */
START_TEST(timer_fork_child_leaves_parent_timer_running)
{
	int kq = xkqueue(), status;
	struct armed a = arm(kq, 1, EV_ADD, 0, 50, NULL);
	int64_t total;
	pid_t pid;

	total = expect_timer(kq, 3000, 1, EV_CLEAR, NULL, a, 50 * MS, 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct kevent ev;
		int kq2 = kqueue(), ok;
		EV_SET(&ev, 2, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 20, NULL);
		ok = kq2 >= 0 && kevent(kq2, &ev, 1, NULL, 0, NULL) == 0 &&
		    kev_wait(kq2, &ev, 1, 3000) == 1 && ev.ident == 2;
		_exit(ok ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "child could not use a timer: status %#x", status);
	/* still armed in the parent, count intact */
	total += expect_timer(kq, 3000, 1, EV_CLEAR, NULL, a, 50 * MS, total);
	close(kq);
}
END_TEST

/* ---------------------------------------------------------------- scale */

#define NMANY 100000

START_TEST(timer_100000_oneshots_fire_exactly_once_each)
{
	static struct kevent ch[1000], ev[1024];
	unsigned char *seen = calloc(NMANY + 1, 1);
	int kq = xkqueue(), i, j, got = 0;
	int64_t deadline;

	ck_assert_ptr_nonnull(seen);
	for (i = 1; i <= NMANY; i += 1000) {
		for (j = 0; j < 1000; j++)
			EV_SET(&ch[j], i + j, EVFILT_TIMER, EV_ADD | EV_ONESHOT,
			    0, (i + j) % 97 + 1, (void *)(uintptr_t)(3 * (i + j)));
		ck_assert_int_eq(kevent(kq, ch, 1000, NULL, 0, NULL), 0);
	}
	deadline = now_ns() + 60000 * MS;
	while (got < NMANY) {
		ck_assert_msg(now_ns() < deadline, "only %d of %d fired", got,
		    NMANY);
		int n = kev_wait(kq, ev, 1024, 1000);
		ck_assert_int_ge(n, 0);
		for (j = 0; j < n; j++) {
			uintptr_t id = ev[j].ident;
			ck_assert_uint_ge(id, 1);
			ck_assert_uint_le(id, NMANY);
			ck_assert_int_eq(ev[j].filter, EVFILT_TIMER);
			ck_assert_uint_eq(ev[j].flags, EV_ONESHOT | EV_CLEAR);
			ck_assert_uint_eq(ev[j].fflags, 0);
			ck_assert_int_eq(ev[j].data, 1);
			ck_assert_ptr_eq(ev[j].udata, (void *)(3 * id));
			ck_assert_msg(!seen[id], "timer %lu fired twice",
			    (unsigned long)id);
			seen[id] = 1;
		}
		got += n;
	}
	ck_assert_int_eq(kev_wait(kq, ev, 1024, 200), 0);
	free(seen);
	close(kq);
}
END_TEST

/*
 * 20,000 timers with scrambled periods of 1..1000 ms, a third deleted at
 * random positions of the heap: the rest must come out in deadline order
 * (no timer may be retrieved by a later kevent() call than one due clearly
 * after it) and the deleted ones never.
 */
#define NORDER 20000

/*
 * NORDER oneshot timers with periods of 1-1000 ms; those for which deleted(i)
 * holds are deleted at once.  The rest fire exactly once each, in the order
 * of their deadlines; the deleted never fire.  Deleting most of them
 * exercises the heap's rebuild without the dead entries.
 */
static void
fire_in_deadline_order_after_deleting(bool (*deleted)(int))
{
	static struct kevent ch[NORDER], ev[1024];
	static int call_of[NORDER], period[NORDER];
	int kq = xkqueue(), i, j, calls = 0, got = 0, want = 0, ndel = 0;
	int maxcall_upto[1002], mincall_at[1002];
	int64_t lo, hi, slack;

	for (i = 0; i < NORDER; i++) {
		period[i] = (int)((i * 7919L) % 1000) + 1;
		call_of[i] = -1;
		EV_SET(&ch[i], i, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, period[i],
		    NULL);
	}
	lo = now_ns();
	ck_assert_int_eq(kevent(kq, ch, NORDER, NULL, 0, NULL), 0);
	hi = now_ns();
	for (i = 0; i < NORDER; i++)
		if (deleted(i))
			EV_SET(&ch[ndel++], i, EVFILT_TIMER, EV_DELETE, 0, 0,
			    NULL);
	ck_assert_int_eq(kevent(kq, ch, ndel, NULL, 0, NULL), 0);
	want = NORDER - ndel;
	while (got < want) {
		int n = kev_wait(kq, ev, 1024, 5000);
		ck_assert_int_gt(n, 0);
		for (j = 0; j < n; j++) {
			int id = (int)ev[j].ident;
			ck_assert(!deleted(id));
			ck_assert_int_eq(call_of[id], -1);
			ck_assert_int_eq(ev[j].data, 1);
			call_of[id] = calls;
		}
		calls++;
		got += n;
	}
	ck_assert_int_eq(kev_wait(kq, ev, 1, 50), 0);
	/* periods differing by more than the add call's duration are ordered */
	slack = (hi - lo) / MS + 1;
	for (i = 0; i <= 1001; i++) {
		maxcall_upto[i] = -1;
		mincall_at[i] = calls;
	}
	for (i = 0; i < NORDER; i++) {
		if (call_of[i] < 0)
			continue;
		if (call_of[i] > maxcall_upto[period[i]])
			maxcall_upto[period[i]] = call_of[i];
		if (call_of[i] < mincall_at[period[i]])
			mincall_at[period[i]] = call_of[i];
	}
	for (i = 1; i <= 1000; i++)
		if (maxcall_upto[i - 1] > maxcall_upto[i])
			maxcall_upto[i] = maxcall_upto[i - 1];
	for (i = 1; i <= 1000; i++) {
		int earlier = i - (int)slack - 1;
		if (earlier < 1)
			continue;
		ck_assert_msg(maxcall_upto[earlier] <= mincall_at[i],
		    "a %d ms timer came out in call %d, after a %d ms one (call %d)",
		    earlier, maxcall_upto[earlier], i, mincall_at[i]);
	}
	close(kq);
}

static bool
every_third(int i)
{
	return i % 3 == 0;
}

static bool
all_but_every_third(int i)
{
	return i % 3 != 0;
}

START_TEST(timer_many_fire_in_deadline_order_after_deletes)
{
	fire_in_deadline_order_after_deleting(every_third);
}
END_TEST

START_TEST(timer_many_fire_in_deadline_order_after_deleting_most)
{
	fire_in_deadline_order_after_deleting(all_but_every_third);
}
END_TEST

/* the earliest half: deleting them deletes the heap's root again and again */
static bool
earliest_half(int i)
{
	return (i * 7919L) % 1000 < 500;
}

START_TEST(timer_many_fire_in_deadline_order_after_deleting_earliest)
{
	fire_in_deadline_order_after_deleting(earliest_half);
}
END_TEST

#define NBACKLOG 1000

/*
 * More timers due at once than one kevent() takes: the rest are taken by
 * the next calls, each exactly once, and until the last is taken the
 * kqueue fd polls readable and a kqueue watching it counts them all.
 */
START_TEST(timer_backlog_keeps_kqueue_readable_until_taken)
{
	static struct kevent ch[NBACKLOG], ev[NBACKLOG];
	static unsigned char seen[NBACKLOG + 1];
	struct pollfd p = { .events = POLLIN };
	int kq = xkqueue(), outer = xkqueue(), i, n, got;

	for (i = 0; i < NBACKLOG; i++)
		EV_SET(&ch[i], i + 1, EVFILT_TIMER, EV_ADD | EV_ONESHOT,
		    NOTE_USECONDS, 1 + i % 10, (void *)(uintptr_t)(i + 1));
	ck_assert_int_eq(kevent(kq, ch, NBACKLOG, NULL, 0, NULL), 0);
	sleep_ms(5);			/* all due */
	got = kev_wait(kq, ev, 10, 1000);
	ck_assert_int_eq(got, 10);
	for (i = 0; i < got; i++)
		seen[ev[i].ident] = 1;
	p.fd = kq;
	ck_assert_int_eq(poll(&p, 1, 0), 1);
	ck_assert_uint_eq(p.revents, POLLIN);
	kev_ok(outer, kq, EVFILT_READ, EV_ADD, 0, 0, NULL);
	kev_expect(outer, 0, kq, EVFILT_READ, 0, 0, NBACKLOG - 10, NULL);
	while (got < NBACKLOG) {
		ck_assert_int_eq(poll(&p, 1, 0), 1);
		n = kev_wait(kq, ev, 100, 0);
		ck_assert_int_eq(n, NBACKLOG - got < 100 ? NBACKLOG - got : 100);
		for (i = 0; i < n; i++) {
			ck_assert_int_eq(ev[i].filter, EVFILT_TIMER);
			ck_assert_uint_eq(ev[i].flags, EV_ONESHOT | EV_CLEAR);
			ck_assert_int_eq(ev[i].data, 1);
			ck_assert_ptr_eq(ev[i].udata, (void *)ev[i].ident);
			ck_assert_uint_ge(ev[i].ident, 1);
			ck_assert_uint_le(ev[i].ident, NBACKLOG);
			ck_assert(!seen[ev[i].ident]);
			seen[ev[i].ident] = 1;
		}
		got += n;
	}
	ck_assert_int_eq(poll(&p, 1, 0), 0);
	ck_assert_int_eq(kev_wait(kq, ev, 1, 0), 0);
	ck_assert_int_eq(kev_wait(outer, ev, 1, 0), 0);
	close(outer);
	close(kq);
}
END_TEST

/*
 * While due timers are taken a few per call, a socket that becomes readable
 * is reported by the next call, not after the whole backlog: the scan looks
 * at epoll before the backlog whenever something besides the library's own
 * fds is registered (kevent.c, backlog_alone).
 */
START_TEST(timer_backlog_does_not_hold_back_a_socket)
{
	static struct kevent ch[NBACKLOG];
	struct kevent ev[10];
	int kq = xkqueue(), s[2], i, n, timers = 0;
	bool seen = false;

	xsocketpair(SOCK_STREAM, s);
	kev_ok(kq, s[0], EVFILT_READ, EV_ADD, 0, 0, UD(0x50));
	for (i = 0; i < NBACKLOG; i++)
		EV_SET(&ch[i], i + 1, EVFILT_TIMER, EV_ADD | EV_ONESHOT,
		    NOTE_USECONDS, 1, NULL);
	ck_assert_int_eq(kevent(kq, ch, NBACKLOG, NULL, 0, NULL), 0);
	sleep_ms(5);			/* all due */
	ck_assert_int_eq(kev_wait(kq, ev, 10, 1000), 10);
	ck_assert_int_eq(write(s[1], "x", 1), 1);
	n = kev_wait(kq, ev, 10, 1000);
	ck_assert_int_eq(n, 10);
	for (i = 0; i < n; i++) {
		if (ev[i].filter == EVFILT_TIMER) {
			timers++;
			continue;
		}
		ck_assert_int_eq(ev[i].filter, EVFILT_READ);
		ck_assert_uint_eq(ev[i].ident, (uintptr_t)s[0]);
		ck_assert_int_eq(ev[i].data, 1);
		ck_assert_ptr_eq(ev[i].udata, UD(0x50));
		seen = true;
	}
	ck_assert_msg(seen, "the readable socket waited behind %d timers",
	    NBACKLOG - 10);
	ck_assert_int_eq(timers, 9);
	close(s[0]);
	close(s[1]);
	close(kq);
}
END_TEST

START_TEST(timer_and_user_knotes_need_at_most_two_fds)
{
	static struct kevent ch[2000];
	int kq = xkqueue(), before, i;
	struct armed a;

	before = count_open_fds();
	for (i = 0; i < 1000; i++) {
		EV_SET(&ch[i], i, EVFILT_TIMER, EV_ADD, 0, 60000 + i, NULL);
		EV_SET(&ch[1000 + i], i, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0,
		    NULL);
	}
	ck_assert_int_eq(kevent(kq, ch, 2000, NULL, 0, NULL), 0);
	ck_assert_int_le(count_open_fds(), before + 2);
	/* they are live: a short timer and a trigger both report */
	a = arm(kq, 5000, EV_ADD | EV_ONESHOT, 0, 20, NULL);
	kev_ok(kq, 999, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	kev_expect(kq, 1000, 999, EVFILT_USER, EV_CLEAR, 0, 0, NULL);
	expect_timer(kq, 3000, 5000, EV_ONESHOT | EV_CLEAR, NULL, a, 20 * MS, 0);
	ck_assert_int_le(count_open_fds(), before + 2);
	/* with its last timer gone the kqueue gives its timerfd back */
	for (i = 0; i < 1000; i++)
		EV_SET(&ch[i], i, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	ck_assert_int_eq(kevent(kq, ch, 1000, NULL, 0, NULL), 0);
	ck_assert_int_eq(count_open_fds(), before);
	close(kq);
}
END_TEST

#define NMILLION 1000000
#define BATCH 10000

START_TEST(timer_million_timers_with_1024_fds)
{
	struct rlimit rl;
	struct kevent *ch = calloc(BATCH, sizeof *ch);
	int kq, i, j;
	int64_t t0, t1, t2;

	ck_assert_ptr_nonnull(ch);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = 1024;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	kq = xkqueue();
	t0 = now_ns();
	for (i = 0; i < NMILLION; i += BATCH) {
		for (j = 0; j < BATCH; j++)
			EV_SET(&ch[j], i + j, EVFILT_TIMER, EV_ADD, 0,
			    3600000 + (i + j) % 1000, NULL);
		ck_assert_int_eq(kevent(kq, ch, BATCH, NULL, 0, NULL), 0);
	}
	t1 = now_ns();
	ck_assert_int_lt(count_open_fds(), 64);
	/* every delete must find its knote (an error would make kevent -1) */
	for (i = 0; i < NMILLION; i += BATCH) {
		for (j = 0; j < BATCH; j++)
			EV_SET(&ch[j], i + j, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
		ck_assert_int_eq(kevent(kq, ch, BATCH, NULL, 0, NULL), 0);
	}
	t2 = now_ns();
	ck_assert_errno(kev_change(kq, 0, EVFILT_TIMER, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	fprintf(stderr, "1M timers: add %.2f s, delete %.2f s\n",
	    (t1 - t0) / 1e9, (t2 - t1) / 1e9);
	ck_assert_int_lt(t1 - t0, 20000 * MS);
	ck_assert_int_lt(t2 - t1, 20000 * MS);
	free(ch);
	close(kq);
}
END_TEST

/*
 * Changelists of plain timer adds and deletes take a shorter path than
 * other changes (kq_knote_change_hashed): what they report must be the
 * general path's.  A timer added first makes the hash table exist, which
 * that path needs.
 */
static void
expect_error_entry(const struct kevent *ev, uintptr_t ident,
    unsigned fflags, int64_t err, void *udata)
{
	ck_assert_uint_eq(ev->ident, ident);
	ck_assert_int_eq(ev->filter, EVFILT_TIMER);
	ck_assert_uint_eq(ev->flags, EV_ERROR);
	ck_assert_uint_eq(ev->fflags, fflags);
	ck_assert_int_eq(ev->data, err);
	ck_assert_ptr_eq(ev->udata, udata);
}

START_TEST(timer_changelist_add_delete_same_ident_then_enoent)
{
	int kq = xkqueue();
	struct kevent ch[4], ev[4];

	kev_ok(kq, 100, EVFILT_TIMER, EV_ADD, 0, 3600000, NULL);
	EV_SET(&ch[0], 5, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 3600000, UD(1));
	EV_SET(&ch[1], 5, EVFILT_TIMER, EV_DELETE, 0, 0, UD(2));
	EV_SET(&ch[2], 5, EVFILT_TIMER, EV_DELETE, 0, 0, UD(3));
	EV_SET(&ch[3], 5, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 0, UD(4));
	memset(ev, 0xa5, sizeof ev);
	ck_assert_int_eq(kevent(kq, ch, 4, ev, 4, NULL), 1);
	expect_error_entry(&ev[0], 5, 0, ENOENT, UD(3));
	/* the last add was applied after the error: it fires at once */
	kev_expect(kq, 1000, 5, EVFILT_TIMER, EV_ONESHOT | EV_CLEAR, 0, 1, UD(4));
	ck_assert_errno(kev_change(kq, 5, EVFILT_TIMER, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	kev_ok(kq, 100, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(timer_changelist_errors_in_the_middle_are_entries_in_order)
{
	int kq = xkqueue();
	struct kevent ch[5], ev[5];

	kev_ok(kq, 100, EVFILT_TIMER, EV_ADD, 0, 3600000, NULL);
	EV_SET(&ch[0], 1, EVFILT_TIMER, EV_ADD, 0, 3600000, UD(1));
	EV_SET(&ch[1], 2, EVFILT_TIMER, EV_ADD, NOTE_SECONDS | NOTE_USECONDS,
	    10, UD(2));
	EV_SET(&ch[2], 3, EVFILT_TIMER, EV_ADD, 0, -1, UD(3));
	EV_SET(&ch[3], 99, EVFILT_TIMER, EV_DELETE, 0, 0, UD(99));
	EV_SET(&ch[4], 4, EVFILT_TIMER, EV_ADD, NOTE_USECONDS, 3600000, UD(4));
	memset(ev, 0xa5, sizeof ev);
	ck_assert_int_eq(kevent(kq, ch, 5, ev, 5, NULL), 3);
	expect_error_entry(&ev[0], 2, NOTE_SECONDS | NOTE_USECONDS, EINVAL,
	    UD(2));
	expect_error_entry(&ev[1], 3, 0, EINVAL, UD(3));
	expect_error_entry(&ev[2], 99, 0, ENOENT, UD(99));
	/* the failed adds left nothing, the good ones are there */
	ck_assert_errno(kev_change(kq, 2, EVFILT_TIMER, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	ck_assert_errno(kev_change(kq, 3, EVFILT_TIMER, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	kev_ok(kq, 1, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	kev_ok(kq, 4, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	kev_ok(kq, 100, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(timer_changelist_error_without_room_stops_the_changelist)
{
	int kq = xkqueue();
	struct kevent ch[3];

	kev_ok(kq, 100, EVFILT_TIMER, EV_ADD, 0, 3600000, NULL);
	EV_SET(&ch[0], 1, EVFILT_TIMER, EV_ADD, 0, 3600000, NULL);
	EV_SET(&ch[1], 42, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[2], 3, EVFILT_TIMER, EV_ADD, 0, 3600000, NULL);
	ck_assert_errno(kevent(kq, ch, 3, NULL, 0, NULL), ENOENT);
	kev_ok(kq, 1, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	ck_assert_errno(kev_change(kq, 3, EVFILT_TIMER, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	kev_ok(kq, 100, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	close(kq);
}
END_TEST

START_TEST(timer_changelist_receipt_answers_every_add_and_delete)
{
	int kq = xkqueue();
	struct kevent ch[4], ev[4];

	kev_ok(kq, 100, EVFILT_TIMER, EV_ADD, 0, 3600000, NULL);
	EV_SET(&ch[0], 7, EVFILT_TIMER, EV_ADD | EV_RECEIPT, 0, 3600000, UD(1));
	EV_SET(&ch[1], 8, EVFILT_TIMER, EV_ADD, 0, 3600000, UD(2));
	EV_SET(&ch[2], 7, EVFILT_TIMER, EV_DELETE | EV_RECEIPT, 0, 0, UD(3));
	EV_SET(&ch[3], 7, EVFILT_TIMER, EV_DELETE | EV_RECEIPT, 0, 0, UD(4));
	memset(ev, 0xa5, sizeof ev);
	ck_assert_int_eq(kevent(kq, ch, 4, ev, 4, NULL), 3);
	expect_error_entry(&ev[0], 7, 0, 0, UD(1));
	expect_error_entry(&ev[1], 7, 0, 0, UD(3));
	expect_error_entry(&ev[2], 7, 0, ENOENT, UD(4));
	kev_ok(kq, 8, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	kev_ok(kq, 100, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	close(kq);
}
END_TEST

START_TEST(timer_changelist_readd_disable_and_sysflags_keep_their_meaning)
{
	int kq = xkqueue();
	struct kevent ch[4];

	kev_ok(kq, 100, EVFILT_TIMER, EV_ADD, 0, 3600000, NULL);
	/* re-add in the same changelist: the second udata and timer win */
	EV_SET(&ch[0], 5, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 3600000, UD(1));
	EV_SET(&ch[1], 5, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 0, UD(2));
	/* added disabled: fires, is held back */
	EV_SET(&ch[2], 6, EVFILT_TIMER, EV_ADD | EV_DISABLE | EV_ONESHOT, 0, 0,
	    UD(3));
	/* the kernel's own bits in a change are ignored, not stored */
	EV_SET(&ch[3], 7, EVFILT_TIMER, EV_ADD | EV_ONESHOT | EV_EOF | EV_FLAG1,
	    0, 0, UD(4));
	ck_assert_int_eq(kevent(kq, ch, 4, NULL, 0, NULL), 0);
	kev_expect(kq, 1000, 5, EVFILT_TIMER, EV_ONESHOT | EV_CLEAR, 0, 1, UD(2));
	kev_expect(kq, 1000, 7, EVFILT_TIMER, EV_ONESHOT | EV_CLEAR, 0, 1, UD(4));
	kev_expect_none(kq);
	kev_ok(kq, 6, EVFILT_TIMER, EV_ENABLE | EV_KEEPUDATA, 0, 0, NULL);
	kev_expect(kq, 0, 6, EVFILT_TIMER, EV_ONESHOT | EV_CLEAR, 0, 1, UD(3));
	kev_ok(kq, 100, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(timer_changelist_delete_of_freewatch_timer_returns_udata)
{
	int kq = xkqueue();
	struct kevent ch[2];

	kev_ok(kq, 100, EVFILT_TIMER, EV_ADD, 0, 3600000, NULL);
	EV_SET(&ch[0], 5, EVFILT_TIMER, EV_ADD | EV_FREEWATCH, 0, 3600000,
	    UD(0x50));
	EV_SET(&ch[1], 5, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	ck_assert_int_eq(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	kev_expect(kq, 0, 5, EVFILT_TIMER, EV_DELETE | EV_FREEWATCH,
	    NOTE_FREE_DELETE, 0, UD(0x50));
	kev_ok(kq, 100, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

/*
 * Long changelists whose runs of timer changes are broken by other changes
 * (an fd's, a user event's) and grow the hash table on the way: every
 * change is applied to its own knote, and every error names its change.
 */
START_TEST(timer_changelist_runs_broken_by_other_changes)
{
	enum { NT = 300 };
	static struct kevent ch[NT + 8], ev[NT + 8];
	int kq = xkqueue(), p[2], i, n = 0;

	ck_assert_int_eq(pipe(p), 0);
	kev_ok(kq, 100000, EVFILT_TIMER, EV_ADD, 0, 3600000, NULL);
	for (i = 0; i < NT; i++) {
		if (i == 7 || i == 150)
			EV_SET(&ch[n++], p[0], EVFILT_READ, EV_ADD, 0, 0, UD(-1));
		if (i == 8 || i == 290)
			EV_SET(&ch[n++], 5 + i, EVFILT_USER, EV_ADD, 0, 0, UD(-2));
		EV_SET(&ch[n++], i, EVFILT_TIMER, EV_ADD, 0, 3600000, UD(i));
	}
	ck_assert_int_eq(kevent(kq, ch, n, NULL, 0, NULL), 0);
	/* delete every other timer, with the other changes in between */
	n = 0;
	for (i = 0; i < NT; i += 2) {
		if (i == 100)
			EV_SET(&ch[n++], p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
		if (i == 200)
			EV_SET(&ch[n++], 13, EVFILT_USER, EV_DELETE, 0, 0, NULL);
		EV_SET(&ch[n++], i, EVFILT_TIMER, EV_DELETE, 0, 0, UD(i));
	}
	ck_assert_int_eq(kevent(kq, ch, n, NULL, 0, NULL), 0);
	/* now every change of the list fails, each with its own entry */
	memset(ev, 0xa5, sizeof ev);
	ck_assert_int_eq(kevent(kq, ch, n, ev, n, NULL), n);
	for (i = 0; i < n; i++) {
		ck_assert_uint_eq(ev[i].ident, ch[i].ident);
		ck_assert_int_eq(ev[i].filter, ch[i].filter);
		ck_assert_uint_eq(ev[i].flags, EV_ERROR);
		ck_assert_int_eq(ev[i].data, ENOENT);
		ck_assert_ptr_eq(ev[i].udata, ch[i].udata);
	}
	/* a change the general path takes right after a run finds its own
	 * knote (the re-add), not the one the bucket it had looked up ahead,
	 * before the run, belongs to */
	n = 0;
	EV_SET(&ch[n++], p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	for (i = 0; i < 15; i++)
		EV_SET(&ch[n++], 1000 + i, EVFILT_TIMER, EV_ADD, 0, 3600000,
		    NULL);
	EV_SET(&ch[n++], 1000, EVFILT_TIMER, EV_ADD, 0, 1, UD(7));
	ck_assert_int_eq(kevent(kq, ch, n, NULL, 0, NULL), 0);
	ck_assert_int_eq(kev_wait(kq, ev, 1, 1000), 1);
	ck_assert_uint_eq(ev[0].ident, 1000);
	ck_assert_ptr_eq(ev[0].udata, UD(7));
	for (i = 0; i < 15; i++)
		kev_ok(kq, 1000 + i, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	ck_assert_errno(kev_change(kq, 1000, EVFILT_TIMER, EV_DELETE, 0, 0,
	    NULL), ENOENT);
	sleep_ms(5);		/* a second timer 1000 would have fired */
	kev_expect_none(kq);
	kev_ok(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	/* the odd ones are all there, the user event 295 too */
	n = 0;
	for (i = 1; i < NT; i += 2)
		EV_SET(&ch[n++], i, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[n++], 295, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[n++], 100000, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	ck_assert_int_eq(kevent(kq, ch, n, NULL, 0, NULL), 0);
	kev_expect_none(kq);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

/*
 * A change the run refuses (a new timer's EINVAL) leaves its slot of the
 * general path's look-ahead ring holding its own bucket: the general
 * change 8 on must not take that bucket for its own.  Around it, changes
 * the general path takes (EV_DISABLE), so the ring is not forgotten.
 * Each round's victim lands in another bucket than the refused timer but
 * for a 1/16 chance, so some round sees it.
 */
START_TEST(timer_changelist_refused_add_keeps_next_changes_buckets)
{
	struct kevent ch[17], ev[4];
	int kq = xkqueue(), round, i, n;

	kev_ok(kq, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
	for (round = 0; round < 8; round++) {
		uintptr_t victim = 500 + 37 * round;

		n = 0;
		for (i = 0; i < 8; i++)
			EV_SET(&ch[n++], 100 + i, EVFILT_USER,
			    EV_ADD | EV_DISABLE, 0, 0, NULL);
		/* two units: EINVAL, from the run */
		EV_SET(&ch[n++], 50 + round, EVFILT_TIMER, EV_ADD,
		    NOTE_SECONDS | NOTE_MSECONDS, 1000, UD(50));
		for (i = 0; i < 7; i++)
			EV_SET(&ch[n++], 200 + i, EVFILT_USER,
			    EV_ADD | EV_DISABLE, 0, 0, NULL);
		EV_SET(&ch[n++], victim, EVFILT_USER, EV_ADD | EV_DISABLE, 0,
		    0, UD(victim));
		memset(ev, 0xa5, sizeof ev);
		ck_assert_int_eq(kevent(kq, ch, n, ev, 4, NULL), 1);
		ck_assert_uint_eq(ev[0].ident, 50 + round);
		ck_assert_uint_eq(ev[0].flags, EV_ERROR);
		ck_assert_int_eq(ev[0].data, EINVAL);
		/* the victim is found where a lookup looks for it */
		kev_ok(kq, victim, EVFILT_USER, EV_ENABLE, NOTE_TRIGGER, 0,
		    UD(victim));
		kev_expect(kq, 0, victim, EVFILT_USER, 0, 0, 0, UD(victim));
		ck_assert_msg(kev_change(kq, victim, EVFILT_USER, EV_DELETE, 0,
		    0, NULL) == 0, "round %d: victim %lu not found: %s", round,
		    (unsigned long)victim, strerror(errno));
		for (i = 0; i < 8; i++)
			kev_ok(kq, 100 + i, EVFILT_USER, EV_DELETE, 0, 0, NULL);
		for (i = 0; i < 7; i++)
			kev_ok(kq, 200 + i, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	}
	kev_ok(kq, 1, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

static Suite *
timer_suite(void)
{
	Suite *s = suite_create("timer");
	TCase *tc = tcase_create("semantics");
	TCase *big = tcase_create("scale");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, timer_periodic_reports_clear_and_counts_expirations);
	tcase_add_test(tc, timer_oneshot_fires_once_and_is_deleted);
	tcase_add_test(tc, timer_units_scale_data);
	tcase_add_test(tc, timer_abstime_fires_at_realtime_deadline_without_clear);
	tcase_add_test(tc, timer_abstime_in_the_past_fires_at_once);
	tcase_add_test(tc, timer_abstime_epoch_stays_triggered_until_deleted);
	tcase_add_test(tc, timer_zero_oneshot_fires_at_once);
	tcase_add_test(tc, timer_zero_periodic_runs_every_unit);
	tcase_add_test(tc, timer_negative_data_is_einval);
	tcase_add_test(tc, timer_bad_fflags_are_einval);
	tcase_add_test(tc, timer_readd_restarts_with_new_period_and_udata);
	tcase_add_test(tc, timer_readd_discards_undelivered_expirations);
	tcase_add_test(tc, timer_readd_while_disabled_discards_counted_expirations);
	tcase_add_test(tc, timer_invalid_readd_is_einval_and_keeps_timer);
	tcase_add_test(tc, timer_invalid_readd_keeps_udata_flags_and_state);
	tcase_add_test(tc, timer_invalid_readd_keeps_disabled_timer_disabled);
	tcase_add_test(tc, timer_readd_failing_with_emfile_keeps_timer);
	tcase_add_test(tc, timer_disabled_counts_expirations_until_enabled);
	tcase_add_test(tc, timer_dispatch_disables_after_delivery_and_keeps_counting);
	tcase_add_test(tc, timer_delete_stops_it);
	tcase_add_test(tc,
	    timer_added_after_the_table_emptied_in_one_changelist_is_found);
	tcase_add_test(tc, timer_same_ident_in_two_kqueues_is_independent);
	tcase_add_test(tc, timer_huge_values_do_not_wrap);
	tcase_add_test(tc, timer_wakes_thread_blocked_in_kevent);
	tcase_add_test(tc, timer_fork_child_leaves_parent_timer_running);
	tcase_add_test(tc, timer_changelist_add_delete_same_ident_then_enoent);
	tcase_add_test(tc,
	    timer_changelist_errors_in_the_middle_are_entries_in_order);
	tcase_add_test(tc,
	    timer_changelist_error_without_room_stops_the_changelist);
	tcase_add_test(tc, timer_changelist_receipt_answers_every_add_and_delete);
	tcase_add_test(tc,
	    timer_changelist_readd_disable_and_sysflags_keep_their_meaning);
	tcase_add_test(tc,
	    timer_changelist_delete_of_freewatch_timer_returns_udata);
	tcase_add_test(tc, timer_changelist_runs_broken_by_other_changes);
	tcase_add_test(tc,
	    timer_changelist_refused_add_keeps_next_changes_buckets);
	suite_add_tcase(s, tc);

	tcase_set_timeout(big, 120);
	tcase_add_test(big, timer_100000_oneshots_fire_exactly_once_each);
	tcase_add_test(big, timer_many_fire_in_deadline_order_after_deletes);
	tcase_add_test(big, timer_many_fire_in_deadline_order_after_deleting_most);
	tcase_add_test(big, timer_many_fire_in_deadline_order_after_deleting_earliest);
	tcase_add_test(big, timer_backlog_keeps_kqueue_readable_until_taken);
	tcase_add_test(big, timer_backlog_does_not_hold_back_a_socket);
	tcase_add_test(big, timer_and_user_knotes_need_at_most_two_fds);
	tcase_add_test(big, timer_million_timers_with_1024_fds);
	suite_add_tcase(s, big);
	return s;
}

KQ_TEST_MAIN(timer_suite)
