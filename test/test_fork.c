/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_fork.c: kqueues are not inherited (kqueue.2: "The queue is not
 * inherited by a child created with fork(2)"): in the child kevent() on the
 * parent's kqueue fails with EBADF, and nothing the child does - using or
 * closing that number, closing watched fds, making its own kqueue, exiting -
 * disturbs the parent's kqueue, which is shared with the child at the Linux
 * level (the epoll and wake descriptors are inherited).
 *
 * Check already runs each case in a forked process; these cases fork again
 * and report the child's findings through its exit status (0 = all good,
 * otherwise the number of the first failed check).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

/* In the child: fail with code c unless cond. */
#define CHILD_CHECK(c, cond) do {					\
	if (!(cond))							\
		_exit(c);						\
} while (0)

static void
expect_child_ok(pid_t pid)
{
	int status;

	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status), "child died (status 0x%x)", status);
	ck_assert_msg(WEXITSTATUS(status) == 0, "child check %d failed",
	    WEXITSTATUS(status));
}

/*
 * The many-fork cases fork up to 300 times, but for at most FORK_BUDGET_S
 * seconds: under valgrind a fork with busy threads takes about a second,
 * and a slower run is not a hang (a hung child fails its own bound).
 */
#define FORK_BUDGET_S	20

/* A child that has not finished in this long is hung: generous, since an
 * ASan child of a process with busy threads on two loaded cores can take
 * seconds to be scheduled, and a real hang never finishes at all. */
#define CHILD_BOUND_MS	15000

static bool
fork_budget_left(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec - t0->tv_sec < FORK_BUDGET_S;
}

/*
 * The many-fork cases fork only once their busy threads are warm: a thread's
 * first laps allocate (its start-up, the kqueue's first knotes, slabs and
 * heap), and gcc 12's ASan does not hold its allocator's locks across
 * fork(), so a child forked while another thread was inside malloc() hangs
 * in its own first malloc() (glibc's malloc is fork-safe; ASan's is not).
 * Steady-state laps allocate nothing, or now and then a heap doubling.
 */
#define WARM_LAPS	256

static void
await_warm(_Atomic unsigned *warm, unsigned threads)
{
	for (int i = 0; i < 10000 && atomic_load(warm) < threads; i++)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	ck_assert_uint_eq(atomic_load(warm), threads);
}

/* The child's view of the parent's kqueue number. */
static void
child_sees_no_kqueue(int kq, int watched)
{
	struct kevent ch, ev;
	struct timespec zero = { 0, 0 };
	int r;

	errno = 0;
	r = kevent(kq, NULL, 0, &ev, 1, &zero);
	CHILD_CHECK(10, r == -1 && errno == EBADF);
	EV_SET(&ch, watched, EVFILT_READ, EV_ADD, 0, 0, NULL);
	errno = 0;
	r = kevent(kq, &ch, 1, NULL, 0, &zero);
	CHILD_CHECK(11, r == -1 && errno == EBADF);
	EV_SET(&ch, watched, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	errno = 0;
	r = kevent(kq, &ch, 1, &ev, 1, &zero);
	CHILD_CHECK(12, r == -1 && errno == EBADF);
}

START_TEST(child_kevent_on_parent_kqueue_is_ebadf)
{
	int kq = xkqueue(), p[2];
	pid_t pid;

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	ck_assert_int_eq(write(p[1], "ab", 2), 2);
	pid = fork();
	if (pid == 0) {
		child_sees_no_kqueue(kq, p[0]);
		exit(0);
	}
	expect_child_ok(pid);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 2, UD(1));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

/*
 * Children with a copy of our memory that fork()'s handlers did not start
 * afresh: _Fork() (no atfork handlers) and a raw fork system call.  They
 * are new processes all the same: the parent's kqueue is not theirs
 * (EBADF, the parent's knote untouched), and a kqueue of their own tracks
 * their closes as any process's does.
 */
static void
copy_child_is_a_process_of_its_own(int how)
{
	int kq = xkqueue(), p[2];
	pid_t pid;

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	ck_assert_int_eq(write(p[1], "ab", 2), 2);
	pid = how == 0 ? _Fork() : (pid_t)syscall(SYS_fork);
	if (pid == 0) {
		struct kevent ch, ev;
		struct timespec zero = { 0, 0 };
		int own, q[2];

		child_sees_no_kqueue(kq, p[0]);
		own = kqueue();
		CHILD_CHECK(30, own >= 0 && pipe(q) == 0);
		EV_SET(&ch, q[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, UD(5));
		CHILD_CHECK(31, kevent(own, &ch, 1, NULL, 0, &zero) == 0);
		CHILD_CHECK(32, close(q[0]) == 0);
		memset(&ev, 0, sizeof ev);
		CHILD_CHECK(33, kevent(own, NULL, 0, &ev, 1, &zero) == 1);
		CHILD_CHECK(34, ev.ident == (uintptr_t)q[0] &&
		    ev.filter == EVFILT_READ &&
		    ev.flags == (EV_FREEWATCH | EV_DELETE) &&
		    ev.fflags == NOTE_FREE_CLOSE && ev.data == 0 &&
		    ev.udata == UD(5));
		_exit(0);
	}
	expect_child_ok(pid);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 2, UD(1));
	close(p[0]);
	close(p[1]);
	close(kq);
}

START_TEST(underscore_fork_child_is_a_process_of_its_own)
{
	copy_child_is_a_process_of_its_own(0);
}
END_TEST

START_TEST(raw_fork_child_is_a_process_of_its_own)
{
	copy_child_is_a_process_of_its_own(1);
}
END_TEST

/*
 * A copy child owns every number in its table: a closefrom() (or dup2()
 * over one of the parent's internal numbers) before its first kqueue()
 * hands those numbers to whatever it opens next.  The adoption that
 * kqueue() runs must not close them as the library's own.
 */
static void
copy_child_keeps_what_it_opened_after_closefrom(int how)
{
	int kq = xkqueue(), p[2];
	pid_t pid;

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	pid = how == 0 ? _Fork() : (pid_t)syscall(SYS_fork);
	if (pid == 0) {
		int fds[64], n, i, own;
		struct stat null;

		CHILD_CHECK(69, stat("/dev/null", &null) == 0);
		closefrom(3);
		/* one file on every number: two of the parent's numbers
		 * that now name one file are not a kqueue and its alias */
		fds[0] = open("/dev/null", O_RDONLY);
		CHILD_CHECK(70, fds[0] >= 0);
		for (n = 1; n < 64; n++) {
			fds[n] = dup(fds[0]);
			CHILD_CHECK(70, fds[n] >= 0);
		}
		own = kqueue();
		CHILD_CHECK(71, own >= 0);
		/* each number still names the file opened on it (the kqueue
		 * took free numbers: a closed one would have gone to it) */
		for (i = 0; i < n; i++) {
			struct stat st;
			CHILD_CHECK(72, fstat(fds[i], &st) == 0 &&
			    S_ISCHR(st.st_mode) && st.st_rdev == null.st_rdev);
		}
		CHILD_CHECK(73, close(own) == 0);
		_exit(0);
	}
	expect_child_ok(pid);
	ck_assert_int_eq(write(p[1], "ab", 2), 2);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 2, UD(1));
	close(p[0]);
	close(p[1]);
	close(kq);
}

START_TEST(underscore_fork_child_keeps_what_it_opened_after_closefrom)
{
	copy_child_keeps_what_it_opened_after_closefrom(0);
}
END_TEST

START_TEST(raw_fork_child_keeps_what_it_opened_after_closefrom)
{
	copy_child_keeps_what_it_opened_after_closefrom(1);
}
END_TEST

/*
 * A copy child's adoption forgets the signal counting as fork()'s handler
 * does: the library's eventfd number was closed, so a watched signal the
 * child receives afterwards must not be written to whatever file the child
 * opened on that number.
 */
START_TEST(copy_child_signal_writes_to_no_number_it_reused)
{
	int kq = xkqueue();
	pid_t pid;

	ck_assert(signal(SIGUSR1, SIG_IGN) != SIG_ERR);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(2));
	pid = _Fork();
	if (pid == 0) {
		struct pollfd pfd[64];
		int own, i, sv[2];

		own = kqueue();
		CHILD_CHECK(80, own >= 0);
		/* every free low number becomes one end of a socket pair:
		 * a write to either end makes the other end readable */
		for (i = 0; i < 64; i += 2) {
			CHILD_CHECK(81, socketpair(AF_UNIX, SOCK_STREAM |
			    SOCK_NONBLOCK, 0, sv) == 0);
			pfd[i] = (struct pollfd){ .fd = sv[0], .events = POLLIN };
			pfd[i + 1] = (struct pollfd){ .fd = sv[1], .events = POLLIN };
		}
		CHILD_CHECK(82, raise(SIGUSR1) == 0);
		CHILD_CHECK(83, poll(pfd, 64, 0) == 0);
		_exit(0);
	}
	expect_child_ok(pid);
	close(kq);
}
END_TEST

/* Sort two events by filter: READ (-1) first, then WRITE (-2). */
static void
order_read_write(struct kevent ev[2])
{
	if (ev[0].filter != EVFILT_READ) {
		struct kevent t = ev[0];
		ev[0] = ev[1];
		ev[1] = t;
	}
}

START_TEST(child_closing_kqueue_and_watched_fds_leaves_parent_alone)
{
	int kq = xkqueue(), p[2], q[2], cap;
	struct kevent ev[2];
	pid_t pid;

	xpipe(p);
	xpipe(q);
	cap = fcntl(q[1], F_GETPIPE_SZ);
	/* level knotes: they fire again without any epoll_ctl, so a
	 * registration the child removed from the shared epoll shows */
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	kev_ok(kq, q[1], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
	kev_expect(kq, 1000, q[1], EVFILT_WRITE, 0, 0, cap, UD(2));
	pid = fork();
	if (pid == 0) {
		int r;

		child_sees_no_kqueue(kq, p[0]);
		/* FreeBSD: the number is not open in the child (EBADF); a
		 * Linux library may still hold it: 0 is accepted too */
		errno = 0;
		r = close(kq);
		CHILD_CHECK(20, r == 0 || (r == -1 && errno == EBADF));
		/* closing the parent's watched fds in the child is the
		 * child's business only */
		CHILD_CHECK(21, close(p[0]) == 0);
		CHILD_CHECK(22, close(q[1]) == 0);
		exit(0);	/* atexit handlers and destructors run */
	}
	expect_child_ok(pid);
	ck_assert_int_eq(write(p[1], "xyz", 3), 3);
	memset(ev, 0, sizeof ev);
	ck_assert_int_eq(kev_wait(kq, ev, 2, 1000), 2);
	order_read_write(ev);
	ck_assert_uint_eq(ev[0].ident, (uintptr_t)p[0]);
	ck_assert_int_eq(ev[0].filter, EVFILT_READ);
	ck_assert_int_eq(ev[0].data, 3);
	ck_assert_ptr_eq(ev[0].udata, UD(1));
	ck_assert_uint_eq(ev[1].ident, (uintptr_t)q[1]);
	ck_assert_int_eq(ev[1].filter, EVFILT_WRITE);
	ck_assert_int_eq(ev[1].data, cap);
	ck_assert_ptr_eq(ev[1].udata, UD(2));
	/* and new changes work */
	kev_ok(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	kev_ok(kq, q[1], EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	kev_ok(kq, q[0], EVFILT_READ, EV_ADD, 0, 0, UD(3));
	ck_assert_int_eq(write(q[1], "v", 1), 1);
	kev_expect(kq, 1000, q[0], EVFILT_READ, 0, 0, 1, UD(3));
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	close(kq);
}
END_TEST

START_TEST(child_does_not_consume_parent_pending_events)
{
	int kq = xkqueue(), p[2];
	pid_t pid;

	xpipe(p);
	kev_ok(kq, 3, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(3));
	kev_ok(kq, 3, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(3));
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(4));
	ck_assert_int_eq(write(p[1], "a", 1), 1);
	ck_assert_int_eq(poll(&(struct pollfd){ .fd = kq, .events = POLLIN }, 1,
	    1000), 1);
	pid = fork();
	if (pid == 0) {
		struct kevent ev;
		int kq2;

		child_sees_no_kqueue(kq, p[0]);
		/* a kqueue of the child's own, with the same kinds of work */
		kq2 = kqueue();
		CHILD_CHECK(30, kq2 >= 0);
		/* (FreeBSD's EV_ADD ignores NOTE_TRIGGER: trigger apart) */
		EV_SET(&ev, 3, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
		CHILD_CHECK(31, kevent(kq2, &ev, 1, NULL, 0, NULL) == 0);
		EV_SET(&ev, 3, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
		CHILD_CHECK(31, kevent(kq2, &ev, 1, NULL, 0, NULL) == 0);
		CHILD_CHECK(33, kev_wait(kq2, &ev, 1, 1000) == 1);
		CHILD_CHECK(34, ev.filter == EVFILT_USER && ev.ident == 3);
		EV_SET(&ev, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
		CHILD_CHECK(32, kevent(kq2, &ev, 1, NULL, 0, NULL) == 0);
		CHILD_CHECK(37, kev_wait(kq2, &ev, 1, 1000) == 1);
		CHILD_CHECK(38, ev.filter == EVFILT_READ && ev.data == 1);
		/* drain the shared pipe: level knotes in the parent see it */
		CHILD_CHECK(35, read(p[0], &ev, 1) == 1);
		CHILD_CHECK(36, close(kq2) == 0);
		exit(0);
	}
	expect_child_ok(pid);
	/* the USER event is still pending for the parent ... */
	ck_assert_int_eq(poll(&(struct pollfd){ .fd = kq, .events = POLLIN }, 1,
	    1000), 1);
	kev_expect(kq, 1000, 3, EVFILT_USER, EV_CLEAR, 0, 0, UD(3));
	/* ... and the pipe the child drained is honestly not ready */
	kev_expect_none(kq);
	ck_assert_int_eq(write(p[1], "b", 1), 1);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 1, UD(4));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(fork_while_a_thread_waits_in_kevent)
{
	int kq = xkqueue(), p[2];
	struct kev_waiter w = { .kq = kq };
	pthread_t t;
	pid_t pid;

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(5));
	ck_assert_int_eq(pthread_create(&t, NULL, kev_waiter_main, &w), 0);
	usleep(100000);
	pid = fork();
	if (pid == 0) {
		struct kevent ev;
		int kq2;

		/* no lock left held by the waiting thread */
		child_sees_no_kqueue(kq, p[0]);
		kq2 = kqueue();
		CHILD_CHECK(40, kq2 >= 0);
		EV_SET(&ev, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
		CHILD_CHECK(44, kevent(kq2, &ev, 1, NULL, 0, NULL) == 0);
		EV_SET(&ev, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
		CHILD_CHECK(41, kevent(kq2, &ev, 1, &ev, 1,
		    &(struct timespec){ 2, 0 }) == 1);
		CHILD_CHECK(42, ev.filter == EVFILT_USER && ev.ident == 1);
		CHILD_CHECK(43, close(kq2) == 0);
		exit(0);
	}
	expect_child_ok(pid);
	ck_assert_int_eq(write(p[1], "q", 1), 1);
	pthread_join(t, NULL);
	ck_assert_int_eq(w.n, 1);
	ck_assert_uint_eq(w.ev.ident, (uintptr_t)p[0]);
	ck_assert_int_eq(w.ev.filter, EVFILT_READ);
	ck_assert_int_eq(w.ev.data, 1);
	ck_assert_ptr_eq(w.ev.udata, UD(5));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

/*
 * fork() while another thread is inside kevent(), mutating the kqueue's
 * trees, timer heap and queues: the child must not walk any of it (it used
 * to, and died in RB_REMOVE_COLOR or the heap now and then).  Many forks,
 * each child checked with a bounded wait.
 */
struct churner {
	int kq;
	_Atomic bool stop;
	_Atomic unsigned warm;	/* threads past WARM_LAPS laps */
	bool nopipe;		/* no ck_assert in the thread: its location record
				 * would be a leak in every forked child */
};

static void *
churn_kevent(void *arg)
{
	struct churner *c = arg;
	struct kevent ch[8], ev[8];
	int p[2], i = 0;

	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
		c->nopipe = true;
		atomic_fetch_add(&c->warm, 1);
		return NULL;
	}
	while (!atomic_load(&c->stop)) {
		int id = i++ % 64;
		EV_SET(&ch[0], id, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 1 + id % 3, NULL);
		EV_SET(&ch[1], (id + 32) % 64, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
		EV_SET(&ch[2], id, EVFILT_USER, EV_ADD | EV_CLEAR, NOTE_TRIGGER, 0, NULL);
		EV_SET(&ch[3], (id + 7) % 64, EVFILT_USER, EV_DELETE, 0, 0, NULL);
		EV_SET(&ch[4], p[0], EVFILT_READ, (id & 1) ? EV_ADD : EV_DELETE, 0, 0, NULL);
		EV_SET(&ch[5], 1000 + id, EVFILT_TIMER, EV_ADD, 0, 1000, NULL);
		EV_SET(&ch[6], 1000 + (id + 16) % 64, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
		EV_SET(&ch[7], p[1], EVFILT_WRITE, EV_ADD | EV_ONESHOT, 0, 0, NULL);
		for (int j = 0; j < 8; j++)
			ch[j].flags |= EV_RECEIPT;
		kevent(c->kq, ch, 8, ev, 8, &(struct timespec){ 0, 0 });
		kevent(c->kq, NULL, 0, ev, 8, &(struct timespec){ 0, 0 });
		if (i == WARM_LAPS)
			atomic_fetch_add(&c->warm, 1);
	}
	close(p[0]);
	close(p[1]);
	return NULL;
}

START_TEST(fork_while_a_thread_mutates_the_kqueue)
{
	struct churner c = { .kq = xkqueue() };
	pthread_t t;
	int i, bad = 0, first = 0;
	struct timespec t0;

	ck_assert_int_eq(pthread_create(&t, NULL, churn_kevent, &c), 0);
	await_warm(&c.warm, 1);
	ck_assert(!c.nopipe);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < 300 && fork_budget_left(&t0); i++) {
		pid_t pid = fork();
		if (pid == 0) {
			struct kevent ev;
			int kq2;

			child_sees_no_kqueue(c.kq, 0);
			kq2 = kqueue();
			CHILD_CHECK(50, kq2 >= 0);
			EV_SET(&ev, 1, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 1, NULL);
			CHILD_CHECK(51, kevent(kq2, &ev, 1, &ev, 1,
			    &(struct timespec){ 2, 0 }) == 1);
			CHILD_CHECK(52, ev.filter == EVFILT_TIMER && ev.ident == 1);
			CHILD_CHECK(53, close(kq2) == 0);
			_exit(0);
		}
		ck_assert_int_gt(pid, 0);
		int status = wait_child_bounded(pid, CHILD_BOUND_MS);
		if (status != 0 && bad++ == 0)
			first = status;
	}
	atomic_store(&c.stop, true);
	join_bounded(t, 2000);
	ck_assert(!c.nopipe);
	ck_assert_msg(bad == 0, "%d of %d children failed (first: status 0x%x)",
	    bad, i, first);
	close(c.kq);
}
END_TEST

/*
 * Every kevent() asks the loader whether objects came or went (the GOT
 * patch), and the loader's object-list lock is not reset in a fork child:
 * a fork while another thread was inside that query left the lock held for
 * ever in the child, whose first kevent() then hung.  Two threads call
 * kevent() back to back while the main thread forks; each child must finish
 * its own kqueue work within a bounded time.
 */
struct spinner {
	int kq, fd;
	_Atomic bool stop;
	_Atomic unsigned warm;	/* threads past WARM_LAPS laps */
};

static void *
spin_kevent(void *arg)
{
	struct spinner *s = arg;
	struct kevent ch, ev;
	unsigned laps = 0;

	/* a change each time: only a call with changes asks the loader, and
	 * not one made only of EVFILT_USER changes (they watch nothing) */
	EV_SET(&ch, s->fd, EVFILT_READ, EV_ADD, 0, 0, NULL);
	while (!atomic_load(&s->stop)) {
		kevent(s->kq, &ch, 1, &ev, 1, &(struct timespec){ 0, 0 });
		if (++laps == WARM_LAPS)
			atomic_fetch_add(&s->warm, 1);
	}
	return NULL;
}

START_TEST(fork_while_threads_poll_the_loader_never_hangs_the_child)
{
	struct spinner s = { .kq = xkqueue() };
	pthread_t t[2];
	int i, bad = 0, first = 0, which = -1, p[2];
	struct timespec t0;

	xpipe(p);
	s.fd = p[0];
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, spin_kevent, &s), 0);
	await_warm(&s.warm, 2);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < 300 && fork_budget_left(&t0); i++) {
		pid_t pid = fork();
		if (pid == 0) {
			struct kevent ch[2], ev;
			int kq2 = kqueue();

			CHILD_CHECK(60, kq2 >= 0);
			EV_SET(&ch[0], 1, EVFILT_USER, EV_ADD, 0, 0, UD(6));
			EV_SET(&ch[1], 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(6));
			CHILD_CHECK(61, kevent(kq2, ch, 2, &ev, 1,
			    &(struct timespec){ 2, 0 }) == 1);
			CHILD_CHECK(62, ev.filter == EVFILT_USER && ev.ident == 1 &&
			    ev.udata == UD(6));
			_exit(0);
		}
		ck_assert_int_gt(pid, 0);
		int status = wait_child_bounded(pid, CHILD_BOUND_MS);
		if (status != 0) {
			bad = 1, first = status, which = i;
			break;
		}
	}
	atomic_store(&s.stop, true);
	for (i = 0; i < 2; i++)
		join_bounded(t[i], 2000);
	ck_assert_msg(bad == 0, "child %d failed (status 0x%x: "
	    "-1 = hung)", which, first);
	close(s.kq);
	close(p[0]);
	close(p[1]);
}
END_TEST

/*
 * Code that is not the library's may be inside dl_iterate_phdr() when
 * another thread forks (an unwinder, a profiler, backtrace()): the loader's
 * list lock is then held for ever in the child, and the child's first
 * kqueue() - which asks the loader whether objects came or went - hung on
 * it.  A thread parks inside a walk; the child must still use a kqueue of
 * its own, changes and events included, within a bounded time.
 */
START_TEST(fork_while_another_thread_walks_the_loader_child_still_works)
{
	struct parked_walk w = { 0 };
	int kq = xkqueue(), p[2];

	xpipe(p);
	park_a_walk(&w);
	pid_t pid = fork();
	if (pid == 0) {
		struct kevent ch[3], ev[2];
		int kq2 = kqueue();

		CHILD_CHECK(90, kq2 >= 0);
		EV_SET(&ch[0], p[0], EVFILT_READ, EV_ADD, 0, 0, UD(9));
		EV_SET(&ch[1], 1, EVFILT_USER, EV_ADD, 0, 0, UD(10));
		EV_SET(&ch[2], 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(10));
		CHILD_CHECK(91, write(p[1], "x", 1) == 1);
		CHILD_CHECK(92, kevent(kq2, ch, 3, ev, 2,
		    &(struct timespec){ 2, 0 }) == 2);
		for (int i = 0; i < 2; i++)
			CHILD_CHECK(93, ev[i].filter == EVFILT_READ ?
			    ev[i].ident == (uintptr_t)p[0] && ev[i].data == 1 &&
			    ev[i].udata == UD(9) :
			    ev[i].filter == EVFILT_USER && ev[i].ident == 1 &&
			    ev[i].udata == UD(10));
		CHILD_CHECK(94, ev[0].filter != ev[1].filter);
		CHILD_CHECK(95, close(kq2) == 0);
		_exit(0);
	}
	ck_assert_int_gt(pid, 0);
	int status = wait_child_bounded(pid, CHILD_BOUND_MS);
	release_the_walk(&w);
	ck_assert_msg(status == 0, "child failed (status 0x%x: -1 = hung)",
	    status);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

/*
 * A child whose list lock is stuck must stay so through its own forks: the
 * parent side of its fork() re-opened the walk gate, and its next kevent()
 * with a change waited for the stuck lock for ever.
 */
static int
child_uses_own_kqueue(const int p[2])
{
	struct kevent ch[2], ev;
	int kq2 = kqueue();

	if (kq2 < 0)
		return 80;
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_ADD, 0, 0, UD(9));
	EV_SET(&ch[1], 1, EVFILT_USER, EV_ADD, 0, 0, UD(10));
	if (write(p[1], "x", 1) != 1)
		return 81;
	if (kevent(kq2, ch, 2, &ev, 1, &(struct timespec){ 2, 0 }) != 1)
		return 82;
	if (ev.ident != (uintptr_t)p[0] || ev.filter != EVFILT_READ ||
	    ev.data != 1 || ev.udata != UD(9))
		return 83;
	if (read(p[0], (char[1]){ 0 }, 1) != 1 || close(kq2) != 0)
		return 84;
	return 0;
}

START_TEST(child_with_stuck_loader_lock_forks_and_still_works)
{
	struct parked_walk w = { 0 };
	int p[2];

	xpipe(p);
	park_a_walk(&w);
	pid_t pid = fork();
	if (pid == 0) {
		pid_t g = fork();
		if (g == 0)
			_exit(child_uses_own_kqueue(p));
		CHILD_CHECK(70, g > 0);
		CHILD_CHECK(71, wait_child_bounded(g, 5000) == 0);
		_exit(child_uses_own_kqueue(p));
	}
	ck_assert_int_gt(pid, 0);
	int status = wait_child_bounded(pid, CHILD_BOUND_MS);
	release_the_walk(&w);
	ck_assert_msg(status == 0, "child failed (status 0x%x: -1 = hung)",
	    status);
	close(p[0]);
	close(p[1]);
}
END_TEST

/*
 * fork() from a signal handler that interrupted the application's own walk
 * of the loader on the forking thread: in the child the list lock is held
 * by that thread's parent-side id, which the child's thread does not have.
 * The child returns from the handler, finishes the walk, and must then use
 * a kqueue (the walk's unlock is refused there: the lock is not its own).
 */
static volatile sig_atomic_t walk_fork_pid = -2;

static void
fork_in_walk_handler(int sig)
{
	(void)sig;
	walk_fork_pid = fork();
}

static int
raise_in_walk_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)info, (void)size, (void)arg;
	raise(SIGUSR2);
	return 1;
}

START_TEST(fork_in_handler_inside_own_walk_child_still_works)
{
	struct sigaction sa = { .sa_handler = fork_in_walk_handler }, old;
	int p[2];

	xpipe(p);
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR2, &sa, &old), 0);
	dl_iterate_phdr(raise_in_walk_cb, NULL);
	if (walk_fork_pid == 0)
		_exit(child_uses_own_kqueue(p));
	ck_assert_int_eq(sigaction(SIGUSR2, &old, NULL), 0);
	ck_assert_int_gt(walk_fork_pid, 0);
	int status = wait_child_bounded(walk_fork_pid, CHILD_BOUND_MS);
	ck_assert_msg(status == 0, "child failed (status 0x%x: -1 = hung)",
	    status);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(grandchild_sees_no_kqueue_of_child)
{
	int p[2];
	pid_t pid;

	xpipe(p);
	pid = fork();
	if (pid == 0) {
		/* the child's own kqueue is not inherited by its child either */
		int kq = kqueue(), status;
		struct kevent ev;
		pid_t g;

		CHILD_CHECK(50, kq >= 0);
		EV_SET(&ev, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
		CHILD_CHECK(51, kevent(kq, &ev, 1, NULL, 0, NULL) == 0);
		g = fork();
		if (g == 0) {
			child_sees_no_kqueue(kq, p[0]);
			exit(0);
		}
		CHILD_CHECK(52, waitpid(g, &status, 0) == g);
		CHILD_CHECK(53, WIFEXITED(status) && WEXITSTATUS(status) == 0);
		CHILD_CHECK(54, write(p[1], "z", 1) == 1);
		CHILD_CHECK(55, kev_wait(kq, &ev, 1, 1000) == 1);
		CHILD_CHECK(56, ev.ident == (uintptr_t)p[0] && ev.data == 1);
		exit(0);
	}
	expect_child_ok(pid);
	close(p[0]);
	close(p[1]);
}
END_TEST

/*
 * fork() while another thread's kevent() is inside the dynamic loader
 * (dl_iterate_phdr holds the loader's list lock, which glibc does not reset
 * in a fork child): the child's first kevent() with a change asks the loader
 * again and waited forever for a lock nobody would release.  Forks until a
 * child hangs (2 s) or 400 children went fine.
 */

/*
 * A program run through the loader itself (/lib64/ld-linux-x86-64.so.2
 * ./prog) has no AT_BASE: the kernel loaded no interpreter.  The library
 * must still find the loader's list lock, or a child forked while another
 * thread walks the loader hangs.  Runs this program's stuck_loader_lock
 * cases that way.
 */
static int
interp_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_INTERP)
			*(const char **)arg = (const char *)(info->dlpi_addr +
			    info->dlpi_phdr[i].p_vaddr);
	return 1;			/* the program is the first */
}

START_TEST(program_run_through_the_loader_forks_while_it_walks)
{
	const char *interp = NULL;
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	ck_assert_int_gt(n, 0);
	self[n] = '\0';
	dl_iterate_phdr(interp_cb, &interp);
	ck_assert_ptr_nonnull(interp);
	pid_t pid = fork();
	if (pid == 0) {
		setenv("CK_RUN_CASE", "stuck_loader_lock", 1);
#ifdef KQ_ASAN
		/* LeakSanitizer counts the loader's own lists of a program
		 * it runs as a leak */
		char opts[1024];
		const char *o = getenv("ASAN_OPTIONS");
		snprintf(opts, sizeof opts, "%s%sdetect_leaks=0",
		    o != NULL ? o : "", o != NULL && *o != '\0' ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
#endif
		execl(interp, interp, self, (char *)NULL);
		_exit(127);
	}
	ck_assert_int_gt(pid, 0);
	int status = wait_child_bounded(pid, 50000);
	ck_assert_msg(status == 0, "%s %s: status 0x%x (-1: hung)", interp,
	    self, status);
}
END_TEST

static Suite *
fork_suite(void)
{
	Suite *s = suite_create("fork");
	TCase *tc = tcase_create("fork");

	tcase_set_timeout(tc, 60);	/* 600 forks under ASan on 2 busy cores */
	tcase_add_test(tc, child_kevent_on_parent_kqueue_is_ebadf);
	tcase_add_test(tc, underscore_fork_child_is_a_process_of_its_own);
	tcase_add_test(tc, raw_fork_child_is_a_process_of_its_own);
	tcase_add_test(tc, underscore_fork_child_keeps_what_it_opened_after_closefrom);
	tcase_add_test(tc, raw_fork_child_keeps_what_it_opened_after_closefrom);
	tcase_add_test(tc, copy_child_signal_writes_to_no_number_it_reused);
	tcase_add_test(tc, child_closing_kqueue_and_watched_fds_leaves_parent_alone);
	tcase_add_test(tc, child_does_not_consume_parent_pending_events);
	tcase_add_test(tc, fork_while_a_thread_waits_in_kevent);
	tcase_add_test(tc, grandchild_sees_no_kqueue_of_child);
	tcase_add_test(tc, fork_while_a_thread_mutates_the_kqueue);
	tcase_add_test(tc, fork_while_threads_poll_the_loader_never_hangs_the_child);
	suite_add_tcase(s, tc);

	tc = tcase_create("stuck_loader_lock");
	tcase_set_timeout(tc, 45);
	tcase_add_test(tc, fork_while_another_thread_walks_the_loader_child_still_works);
	tcase_add_test(tc, child_with_stuck_loader_lock_forks_and_still_works);
	tcase_add_test(tc, fork_in_handler_inside_own_walk_child_still_works);
	suite_add_tcase(s, tc);

	tc = tcase_create("through_the_loader");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, program_run_through_the_loader_forks_while_it_walks);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(fork_suite)
