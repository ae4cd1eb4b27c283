/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_thread.c: one kqueue, many threads (SPEC 1 "thread-safe"):
 * no lock is held while a thread waits, so changes from other threads go
 * through at once and wake the waiter; an event is returned to one caller
 * only; after EV_DELETE returns, no kevent() call that starts later ever
 * reports that knote; close() of a kqueue another thread waits on is safe.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

/*
 * This program's write(): the library's calls resolve to it.  A thread that
 * armed it has its next 8-byte write (a kqueue's wake edge: a trigger writes
 * nothing else) held until the test releases it, or for at most 2 s, so a
 * test can run in the gap between a change and the edge it makes.
 */
static _Thread_local bool hold_next_edge;
static atomic_bool edge_held, edge_release;

ssize_t
write(int fd, const void *buf, size_t len)
{
	if (hold_next_edge && len == sizeof(uint64_t)) {
		int64_t t0 = now_ms();

		hold_next_edge = false;
		atomic_store(&edge_held, true);
		while (!atomic_load(&edge_release) && now_ms() - t0 < 2000)
			usleep(1000);
	}
	return syscall(SYS_write, fd, buf, len);
}

/*
 * The io_uring backend's wake edge on Linux 6.13+ is no write but a message
 * to the ring (io_uring_register(IORING_REGISTER_SEND_MSG_RING), through
 * libc's syscall()): held the same way.
 */
long
syscall(long nr, ...)
{
	static long (*real)(long, ...);
	long a[6];
	va_list ap;
	int i;

	va_start(ap, nr);
	for (i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (real == NULL)
		real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	if (hold_next_edge && nr == SYS_io_uring_register && a[1] == 31) {
		int64_t t0 = now_ms();

		hold_next_edge = false;
		atomic_store(&edge_held, true);
		while (!atomic_load(&edge_release) && now_ms() - t0 < 2000)
			usleep(1000);
	}
	return real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* One blocking kevent() call on another thread. */
struct waiter {
	pthread_t tid;
	int kq;
	long timeout_ms;
	atomic_bool started;
	atomic_bool done;
	int n;
	int err;
	int64_t returned_ms;
	struct kevent ev[4];
};

static void *
waiter_main(void *arg)
{
	struct waiter *w = arg;

	atomic_store(&w->started, true);
	w->n = kev_wait(w->kq, w->ev, 4, w->timeout_ms);
	w->err = errno;
	w->returned_ms = now_ms();
	atomic_store(&w->done, true);
	return NULL;
}

static void
waiter_start(struct waiter *w, int kq, long timeout_ms)
{
	memset(w, 0, sizeof *w);
	w->kq = kq;
	w->timeout_ms = timeout_ms;
	atomic_init(&w->started, false);
	atomic_init(&w->done, false);
	ck_assert_int_eq(pthread_create(&w->tid, NULL, waiter_main, w), 0);
	while (!atomic_load(&w->started))
		usleep(1000);
	/* give it time to reach the wait */
	usleep(100000);
	ck_assert(!atomic_load(&w->done));
}

START_TEST(change_does_not_wait_behind_blocked_kevent)
{
	int kq = xkqueue(), p[2], q[2];
	struct waiter w;
	int64_t t0, dt;

	xpipe(p);
	xpipe(q);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	waiter_start(&w, kq, 5000);
	t0 = now_ms();
	kev_ok(kq, q[0], EVFILT_READ, EV_ADD, 0, 0, UD(2));
	kev_ok(kq, p[0], EVFILT_READ, EV_DISABLE, 0, 0, UD(1));
	kev_ok(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	/* a kevent() that also scans returns at once too */
	ck_assert_int_eq(kev_wait(kq, (struct kevent[1]){ 0 }, 1, 0), 0);
	dt = now_ms() - t0;
	ck_assert_msg(dt < 500, "changes took %lld ms while another thread waited",
	    (long long)dt);
	ck_assert(!atomic_load(&w.done));
	/* the new knote's event reaches the thread already waiting */
	t0 = now_ms();
	ck_assert_int_eq(write(q[1], "x", 1), 1);
	pthread_join(w.tid, NULL);
	ck_assert_int_eq(w.n, 1);
	ck_assert_uint_eq(w.ev[0].ident, (uintptr_t)q[0]);
	ck_assert_int_eq(w.ev[0].filter, EVFILT_READ);
	ck_assert_int_eq(w.ev[0].data, 1);
	ck_assert_ptr_eq(w.ev[0].udata, UD(2));
	ck_assert_int_lt(w.returned_ms - t0, 2000);
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	close(kq);
}
END_TEST

START_TEST(user_trigger_from_other_thread_wakes_waiter)
{
	int kq = xkqueue();
	struct waiter w;
	int64_t t0;

	kev_ok(kq, 5, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(5));
	waiter_start(&w, kq, 5000);
	t0 = now_ms();
	kev_ok(kq, 5, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(5));
	ck_assert_int_lt(now_ms() - t0, 500);
	pthread_join(w.tid, NULL);
	ck_assert_int_eq(w.n, 1);
	ck_assert_uint_eq(w.ev[0].ident, 5);
	ck_assert_int_eq(w.ev[0].filter, EVFILT_USER);
	ck_assert_ptr_eq(w.ev[0].udata, UD(5));
	ck_assert_int_lt(w.returned_ms - t0, 2000);
	close(kq);
}
END_TEST

/* Two threads wait; one event of a knote that reports once must reach
 * exactly one of them.  A USER event then releases the other waiter. */
static void
one_caller_case(unsigned short flags)
{
	int kq = xkqueue(), p[2], round, i, reads;
	struct waiter w[2];
	int64_t t0;

	kev_ok(kq, 99, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(99));
	for (round = 0; round < 3; round++) {
		xpipe(p);
		kev_ok(kq, p[0], EVFILT_READ, EV_ADD | flags, 0, 0, UD(round));
		waiter_start(&w[0], kq, 5000);
		waiter_start(&w[1], kq, 5000);
		ck_assert_int_eq(write(p[1], "abc", 3), 3);
		t0 = now_ms();
		while (!atomic_load(&w[0].done) && !atomic_load(&w[1].done) &&
		    now_ms() - t0 < 3000)
			usleep(1000);
		/* time for a duplicate to show up, if there were one */
		usleep(100000);
		kev_ok(kq, 99, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(99));
		pthread_join(w[0].tid, NULL);
		pthread_join(w[1].tid, NULL);
		reads = 0;
		for (i = 0; i < 2; i++) {
			int j;
			ck_assert_int_ge(w[i].n, 0);
			for (j = 0; j < w[i].n; j++) {
				if (w[i].ev[j].filter != EVFILT_READ)
					continue;
				reads++;
				ck_assert_uint_eq(w[i].ev[j].ident, (uintptr_t)p[0]);
				ck_assert_uint_eq(w[i].ev[j].flags, flags);
				ck_assert_int_eq(w[i].ev[j].data, 3);
				ck_assert_ptr_eq(w[i].ev[j].udata, UD(round));
			}
		}
		ck_assert_int_eq(reads, 1);
		close(p[0]);
		close(p[1]);
		/* nothing left over for a later caller either */
		ck_assert_int_eq(kev_wait(kq, (struct kevent[1]){ 0 }, 1, 50), 0);
	}
	close(kq);
}

START_TEST(oneshot_event_goes_to_one_caller)
{
	one_caller_case(EV_ONESHOT);
}
END_TEST

START_TEST(dispatch_event_goes_to_one_caller)
{
	one_caller_case(EV_DISPATCH);
}
END_TEST

START_TEST(clear_event_goes_to_one_caller)
{
	one_caller_case(EV_CLEAR);
}
END_TEST

/* --------------------------------------------------------- delete stress */

struct stress {
	int kq;
	int fd;
	atomic_bool stop;
	atomic_ulong deleted_upto;	/* every udata <= this was deleted */
	atomic_ulong added;		/* highest udata added */
	atomic_ulong violations;
	atomic_ulong seen;
	unsigned long bad_udata, bad_start;
};

static void *
stress_waiter(void *arg)
{
	struct stress *st = arg;

	while (!atomic_load(&st->stop)) {
		struct kevent ev[8];
		unsigned long start = atomic_load(&st->deleted_upto);
		int n = kev_wait(st->kq, ev, 8, 20), i;

		if (n < 0) {
			atomic_fetch_add(&st->violations, 1);
			continue;
		}
		for (i = 0; i < n; i++) {
			unsigned long u = (unsigned long)(uintptr_t)ev[i].udata;

			if (ev[i].filter != EVFILT_READ ||
			    ev[i].ident != (uintptr_t)st->fd)
				continue;
			atomic_fetch_add(&st->seen, 1);
			if (u <= start || u > atomic_load(&st->added)) {
				st->bad_udata = u;
				st->bad_start = start;
				atomic_fetch_add(&st->violations, 1);
			}
		}
	}
	return NULL;
}

START_TEST(deleted_knote_is_never_reported_again)
{
	struct stress st;
	pthread_t t[3];
	int p[2], i;
	unsigned long iter;

	memset(&st, 0, sizeof st);
	st.kq = xkqueue();
	xpipe(p);
	st.fd = p[0];
	/* always readable */
	ck_assert_int_eq(write(p[1], "data", 4), 4);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, stress_waiter, &st), 0);
	for (iter = 1; iter <= 3000; iter++) {
		atomic_store(&st.added, iter);
		kev_ok(st.kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(iter));
		if (iter % 3 == 0)
			usleep(100);
		else if (iter % 3 == 1)
			sched_yield();
		kev_ok(st.kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
		atomic_store(&st.deleted_upto, iter);
	}
	atomic_store(&st.stop, true);
	for (i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	ck_assert_msg(atomic_load(&st.violations) == 0,
	    "%lu stale reports (e.g. udata %lu in a call started after %lu was "
	    "deleted)", atomic_load(&st.violations), st.bad_udata, st.bad_start);
	/* the race was really exercised */
	ck_assert_uint_gt(atomic_load(&st.seen), 0);
	ck_assert_int_eq(kev_wait(st.kq, (struct kevent[1]){ 0 }, 1, 0), 0);
	close(p[0]);
	close(p[1]);
	close(st.kq);
}
END_TEST

/* ------------------------------------------------- concurrent changelists */

struct churn {
	int kq;
	int fds[4];
	atomic_ulong errors;
};

static void *
churn_main(void *arg)
{
	struct churn *c = arg;
	int i, j;

	for (i = 0; i < 300; i++) {
		for (j = 0; j < 4; j++) {
			struct kevent ch[4], ev[4];
			int n, k;

			EV_SET(&ch[0], c->fds[j], EVFILT_READ, EV_ADD | EV_RECEIPT, 0, 0, UD(j));
			EV_SET(&ch[1], c->fds[j], EVFILT_READ, EV_DISABLE | EV_RECEIPT, 0, 0, UD(j));
			EV_SET(&ch[2], c->fds[j], EVFILT_READ, EV_ENABLE | EV_RECEIPT, 0, 0, UD(j));
			EV_SET(&ch[3], c->fds[j], EVFILT_READ, EV_DELETE | EV_RECEIPT, 0, 0, UD(j));
			n = kevent(c->kq, ch, 4, ev, 4, NULL);
			if (n != 4) {
				atomic_fetch_add(&c->errors, 1);
				continue;
			}
			for (k = 0; k < 4; k++)
				if (ev[k].flags != EV_ERROR || ev[k].data != 0 ||
				    ev[k].ident != (uintptr_t)c->fds[j])
					atomic_fetch_add(&c->errors, 1);
		}
	}
	return NULL;
}

START_TEST(concurrent_changelists_stay_consistent)
{
	struct churn c[4];
	struct waiter w;
	pthread_t t[4];
	int kq = xkqueue(), p[4][4][2], i, j;

	for (i = 0; i < 4; i++) {
		c[i].kq = kq;
		atomic_init(&c[i].errors, 0);
		for (j = 0; j < 4; j++) {
			xpipe(p[i][j]);
			ck_assert_int_eq(write(p[i][j][1], "x", 1), 1);
			c[i].fds[j] = p[i][j][0];
		}
	}
	waiter_start(&w, kq, 3000);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, churn_main, &c[i]), 0);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	pthread_join(w.tid, NULL);
	ck_assert_int_ge(w.n, 0);
	for (i = 0; i < 4; i++) {
		ck_assert_uint_eq(atomic_load(&c[i].errors), 0);
		for (j = 0; j < 4; j++) {
			/* every knote was deleted by its own thread */
			ck_assert_errno(kev_change(kq, p[i][j][0], EVFILT_READ,
			    EV_DELETE, 0, 0, NULL), ENOENT);
			close(p[i][j][0]);
			close(p[i][j][1]);
		}
	}
	ck_assert_int_eq(kev_wait(kq, (struct kevent[1]){ 0 }, 1, 0), 0);
	close(kq);
}
END_TEST

START_TEST(close_while_another_thread_waits)
{
	int kq = xkqueue(), p[2];
	struct waiter w;
	int64_t t0;

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	waiter_start(&w, kq, 2000);
	t0 = now_ms();
	ck_assert_int_eq(close(kq), 0);
	pthread_join(w.tid, NULL);
	/* FreeBSD keeps the kqueue alive for the sleeping call, which then
	 * times out with 0; returning early with EBADF is fine too */
	ck_assert_msg(w.n == 0 || (w.n == -1 && w.err == EBADF),
	    "blocked kevent returned %d errno %d", w.n, w.err);
	ck_assert_int_lt(w.returned_ms - t0, 4000);
	ck_assert_errno(kev_wait(kq, (struct kevent[1]){ 0 }, 1, 0), EBADF);
	/* the watched pipe is untouched */
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	close(p[0]);
	close(p[1]);
}
END_TEST

#define CLOSE_WAITERS	4
#define CLOSE_ROUNDS	20

/*
 * close() of a kqueue wakes every thread asleep in kevent() on it, one
 * after the other (each returns EBADF and passes the wake-up on), also when
 * a trigger's edge is still pending: no waiter may defuse the edge that
 * wakes the next one.  (FreeBSD would let them sleep to their timeout;
 * the library wakes them, so a NULL timeout does not sleep forever.)
 */
START_TEST(close_after_trigger_wakes_every_waiter)
{
	struct waiter w[CLOSE_WAITERS];
	int round, i, kq;

	for (round = 0; round < CLOSE_ROUNDS; round++) {
		int64_t t0;

		kq = xkqueue();
		kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(1));
		for (i = 0; i < CLOSE_WAITERS; i++) {
			memset(&w[i], 0, sizeof w[i]);
			w[i].kq = kq;
			w[i].timeout_ms = 3000;
			ck_assert_int_eq(pthread_create(&w[i].tid, NULL,
			    waiter_main, &w[i]), 0);
		}
		for (i = 0; i < CLOSE_WAITERS; i++)
			while (!atomic_load(&w[i].started))
				usleep(1000);
		usleep(20000);		/* time to reach the wait */
		t0 = now_ms();
		kev_ok(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(1));
		ck_assert_int_eq(close(kq), 0);
		for (i = 0; i < CLOSE_WAITERS; i++)
			pthread_join(w[i].tid, NULL);
		for (i = 0; i < CLOSE_WAITERS; i++) {
			ck_assert_msg(w[i].returned_ms - t0 < 1000,
			    "round %d: waiter %d slept %lld ms after close",
			    round, i, (long long)(w[i].returned_ms - t0));
			if (w[i].n == 1) {
				ck_assert_uint_eq(w[i].ev[0].ident, 1);
				ck_assert_int_eq(w[i].ev[0].filter, EVFILT_USER);
				ck_assert_uint_eq(w[i].ev[0].flags, EV_CLEAR);
				ck_assert_ptr_eq(w[i].ev[0].udata, UD(1));
			} else {
				ck_assert_msg(w[i].n == -1 && w[i].err == EBADF,
				    "round %d: waiter %d returned %d errno %d",
				    round, i, w[i].n, w[i].err);
			}
		}
	}
}
END_TEST

struct held_trigger {
	int kq;
	int result;
};

static void *
held_trigger_main(void *arg)
{
	struct held_trigger *t = arg;

	hold_next_edge = true;
	t->result = kev_change(t->kq, 1, EVFILT_USER, 0,
	    NOTE_TRIGGER | NOTE_FFCOPY | 0x11, 7, UD(1));
	return NULL;
}

static int
poll_kq(int kq)
{
	struct pollfd pfd = { .fd = kq, .events = POLLIN };

	return poll(&pfd, 1, 0);
}

/*
 * A trigger writes the wake edge after it let go of the kqueue's lock: a
 * woken sleeper must not block on the lock the trigger still holds.  Another
 * kevent() may then take the event before the edge is written; the late
 * edge must not leave the kqueue readable with nothing queued, and the next
 * trigger must make it readable again.
 */
START_TEST(user_trigger_writes_wake_edge_after_unlocking)
{
	struct held_trigger t = { .kq = xkqueue() };
	pthread_t th;
	int64_t t0, dt;

	atomic_store(&edge_held, false);
	atomic_store(&edge_release, false);
	kev_ok(t.kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(1));
	ck_assert_int_eq(pthread_create(&th, NULL, held_trigger_main, &t), 0);
	t0 = now_ms();
	while (!atomic_load(&edge_held) && now_ms() - t0 < 2000)
		usleep(1000);
	ck_assert_msg(atomic_load(&edge_held), "the trigger wrote no wake edge");
	/* the trigger is applied; its edge is not written yet */
	t0 = now_ms();
	kev_expect(t.kq, 0, 1, EVFILT_USER, EV_CLEAR, 0x11, 7, UD(1));
	dt = now_ms() - t0;
	atomic_store(&edge_release, true);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(t.result, 0);
	ck_assert_msg(dt < 1000, "kevent() waited %lld ms for the trigger's "
	    "lock while the trigger wrote its edge", (long long)dt);
	/* the late edge was defused: nothing queued, not readable */
	ck_assert_int_eq(poll_kq(t.kq), 0);
	kev_expect_none(t.kq);
	kev_ok(t.kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 8, UD(1));
	ck_assert_int_eq(poll_kq(t.kq), 1);
	kev_expect(t.kq, 0, 1, EVFILT_USER, EV_CLEAR, 0x11, 8, UD(1));
	ck_assert_int_eq(poll_kq(t.kq), 0);
	close(t.kq);
}
END_TEST

#define PINGS 500

struct pinger {
	int kq;
	atomic_int taken;	/* the last data value the main thread took */
	atomic_bool failed;
};

/* Trigger data 1..PINGS, each once the previous one was taken. */
static void *
pinger_main(void *arg)
{
	struct pinger *pg = arg;
	int i;

	for (i = 1; i <= PINGS; i++) {
		int64_t t0 = now_ms();
		if (kev_change(pg->kq, 3, EVFILT_USER, 0,
		    NOTE_TRIGGER | NOTE_FFOR | (unsigned)(1 << (i % 24)), i,
		    UD(3)) != 0)
			break;
		while (atomic_load(&pg->taken) < i && now_ms() - t0 < 5000)
			sched_yield();
		if (atomic_load(&pg->taken) < i)
			break;
	}
	if (i <= PINGS)
		atomic_store(&pg->failed, true);
	return NULL;
}

/*
 * Triggers from another thread, taken alternately by a thread asleep in
 * kevent() and by one polling with a zero timeout (which races the
 * trigger's wake edge): every trigger is reported once, exactly, and no
 * edge is left over.
 */
START_TEST(user_triggers_taken_asleep_and_polling_are_exact)
{
	struct pinger pg = { .kq = xkqueue() };
	struct kevent ev;
	unsigned ff = 0;
	pthread_t th;
	int i, n;

	atomic_init(&pg.taken, 0);
	atomic_init(&pg.failed, false);
	kev_ok(pg.kq, 3, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(3));
	ck_assert_int_eq(pthread_create(&th, NULL, pinger_main, &pg), 0);
	for (i = 1; i <= PINGS; i++) {
		int64_t t0 = now_ms();

		ff |= 1u << (i % 24);
		do {
			memset(&ev, 0xa5, sizeof ev);
			n = kev_wait(pg.kq, &ev, 1, i % 2 ? 5000 : 0);
		} while (n == 0 && now_ms() - t0 < 5000);
		ck_assert_msg(n == 1, "ping %d: kevent returned %d", i, n);
		ck_assert_uint_eq(ev.ident, 3);
		ck_assert_int_eq(ev.filter, EVFILT_USER);
		ck_assert_uint_eq(ev.flags, EV_CLEAR);
		ck_assert_uint_eq(ev.fflags, ff);
		ck_assert_int_eq(ev.data, i);
		ck_assert_ptr_eq(ev.udata, UD(3));
		atomic_store(&pg.taken, i);
	}
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert(!atomic_load(&pg.failed));
	/* Nothing left over.  The kqueue fd may poll readable once here:
	 * epoll re-queues an edge-triggered item whose wake-up lands while
	 * a wait is collecting it (internal.h, ACTIVATION / SCAN); the next
	 * kevent() takes that edge. */
	kev_expect_none(pg.kq);
	ck_assert_int_eq(poll_kq(pg.kq), 0);
	close(pg.kq);
}
END_TEST

#ifndef KQ_ASAN	/* see the suite */
/*
 * kevent() is a cancellation point, as FreeBSD's is: a thread cancelled
 * while it waits ends there and leaves the kqueue whole - usable by the
 * others, and nothing of it left once the application closes it.
 */
struct forever {
	int kq;
	_Atomic pid_t tid;
};

static void *
wait_forever(void *arg)
{
	struct forever *f = arg;
	struct kevent ev;

	atomic_store(&f->tid, gettid());
	kevent(f->kq, NULL, 0, &ev, 1, NULL);
	return NULL;
}

START_TEST(cancelled_waiter_leaves_the_kqueue_whole)
{
	int base = count_open_fds(), kq = xkqueue(), i;
	struct forever f = { .kq = kq };
	struct timespec ts;
	pthread_t t;
	void *ret = NULL;

	ck_assert_int_eq(pthread_create(&t, NULL, wait_forever, &f), 0);
	for (i = 0; i < 2000 && atomic_load(&f.tid) == 0; i++)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	/* asleep in the wait, not cancelled on the way in */
	ck_assert_int_ge(sleeping_on(atomic_load(&f.tid)), 0);
	ck_assert_int_eq(pthread_cancel(t), 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	ck_assert_int_eq(pthread_timedjoin_np(t, &ret, &ts), 0);
	ck_assert_ptr_eq(ret, PTHREAD_CANCELED);
	kev_ok(kq, 1, EVFILT_USER, EV_ADD, 0, 0, UD(1));
	kev_ok(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(1));
	kev_expect(kq, 1000, 1, EVFILT_USER, 0, 0, 0, UD(1));
	ck_assert_int_eq(close(kq), 0);
	/* a closed kqueue's fds go back at the next call (internal.h) */
	ck_assert_errno(kev_wait(kq, (struct kevent[1]){ 0 }, 1, 0), EBADF);
	ck_assert_int_eq(count_open_fds(), base);
}
END_TEST
#endif

static Suite *
thread_suite(void)
{
	Suite *s = suite_create("thread");
	TCase *tc = tcase_create("thread");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, change_does_not_wait_behind_blocked_kevent);
	tcase_add_test(tc, user_trigger_from_other_thread_wakes_waiter);
	tcase_add_test(tc, oneshot_event_goes_to_one_caller);
	tcase_add_test(tc, dispatch_event_goes_to_one_caller);
	tcase_add_test(tc, clear_event_goes_to_one_caller);
	tcase_add_test(tc, deleted_knote_is_never_reported_again);
	tcase_add_test(tc, concurrent_changelists_stay_consistent);
	tcase_add_test(tc, close_while_another_thread_waits);
	tcase_add_test(tc, close_after_trigger_wakes_every_waiter);
	tcase_add_test(tc, user_trigger_writes_wake_edge_after_unlocking);
	tcase_add_test(tc, user_triggers_taken_asleep_and_polling_are_exact);
#ifndef KQ_ASAN
	/* ASan leaves the frames a cancellation unwinds poisoned, and
	 * reports its own stack-buffer-underflow as the thread exits. */
	tcase_add_test(tc, cancelled_waiter_leaves_the_kqueue_whole);
#endif
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(thread_suite)
