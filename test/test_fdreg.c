/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_fdreg.c: the process-wide machinery against a signal handler on the
 * thread that is inside it.  White-box: the tests' build of the library
 * (KQ_STATS) calls a hook at the one instant a handler is hardest to hit
 * by chance:
 *   kq_test_unlock_window()  the fd registry's slot unlock, after it looked
 *                            for a pending close and before it let the slot
 *                            go (a handler's close);
 *   kq_test_walk_window()    gotpatch.c's count of a loader walk, between
 *                            the thread's own count and the process's (a
 *                            handler's fork()); while it is set, every
 *                            staleness check walks (none reads the
 *                            loader's count instead).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

/* lib/fdreg.c, tests' build */
extern void (*kq_test_unlock_window)(int fd);
extern void (*kq_test_walk_window)(void);
extern void (*kq_test_close_window)(int fd);
struct kq_kqueue;
struct kq_kqueue *kq_lookup(int fd, bool search);
void kq_put(struct kq_kqueue *kq);
const char *kq_backend_name(const struct kq_kqueue *kq);

static volatile sig_atomic_t victim = -1;

static void
close_victim(int sig)
{
	(void)sig;
	if (victim >= 0) {
		close(victim);
		victim = -1;
	}
}

/* The first unlock of the victim's slot is interrupted by the handler. */
static void
interrupt_unlock(int fd)
{
	if (fd == victim)
		raise(SIGUSR1);
}

START_TEST(close_in_handler_between_pending_check_and_release_is_told)
{
	struct sigaction sa = { .sa_handler = close_victim };
	int kq = xkqueue(), p[2];

	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, UD(1));
	victim = p[0];
	kq_test_unlock_window = interrupt_unlock;
	/* the flush's epoll_ctl runs under p[0]'s slot lock */
	kev_ok(kq, p[0], EVFILT_READ, EV_DISABLE | EV_KEEPUDATA, 0, 0, NULL);
	kq_test_unlock_window = NULL;
	ck_assert_int_eq(victim, -1);
	kev_expect(kq, 0, p[0], EVFILT_READ, EV_FREEWATCH | EV_DELETE,
	    NOTE_FREE_CLOSE, 0, UD(1));
	kev_expect_none(kq);
	close(p[1]);
	close(kq);
}
END_TEST

/*
 * fork() waits for other threads' loader walks (gotpatch.c), never for the
 * walk of the thread it runs on: a handler that forks while its own thread
 * is half-way through counting a walk, in or out, must not wait for itself.
 */
static volatile sig_atomic_t forks_left, fork_status = -2;

static void
fork_in_handler(int sig)
{
	int st;
	pid_t pid;

	(void)sig;
	pid = fork();
	if (pid == 0)
		_exit(0);
	fork_status = pid > 0 && waitpid(pid, &st, 0) == pid &&
	    WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
interrupt_walk_count(void)
{
	if (forks_left > 0) {
		forks_left--;
		raise(SIGUSR2);
	}
}

START_TEST(fork_in_handler_while_counting_a_loader_walk_returns)
{
	struct sigaction sa = { .sa_handler = fork_in_handler };
	int kq = xkqueue(), p[2];

	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR2, &sa, NULL), 0);
	xpipe(p);
	/* a change that watches a descriptor asks the loader: one walk, its
	 * entry count interrupted by the first fork, its exit by the second */
	forks_left = 2;
	kq_test_walk_window = interrupt_walk_count;
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	kq_test_walk_window = NULL;
	ck_assert_int_eq(forks_left, 0);
	ck_assert_int_eq(fork_status, 0);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	kev_expect(kq, 0, p[0], EVFILT_READ, 0, 0, 1, UD(1));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

/*
 * A close that found the number's slot empty closes without its lock.  An
 * EV_ADD on another thread that links its watch and registers the file in
 * between (here: the whole add runs there) must not leave a knote that
 * outlives the file: it dies with it (NOTE_FREE_CLOSE), and an EV_ADD
 * after close() returned finds no file.
 */
static struct {
	int kq, fd;
	unsigned short add_flags;	/* beside EV_ADD | EV_FREEWATCH */
	short filter;
	int add_err;
	_Atomic bool go, added;
} race;

static void *
race_adder(void *arg)
{
	(void)arg;
	while (!atomic_load(&race.go))
		sched_yield();
	race.add_err = kev_change(race.kq, race.fd,
	    race.filter != 0 ? race.filter : EVFILT_READ,
	    EV_ADD | EV_FREEWATCH | race.add_flags, 0, 0, UD(1)) == 0 ? 0 :
	    errno;
	atomic_store(&race.added, true);
	return NULL;
}

static void
add_in_close_window(int fd)
{
	if (fd != race.fd || atomic_load(&race.go))
		return;
	atomic_store(&race.go, true);
	for (int ms = 0; ms < 10000 && !atomic_load(&race.added); ms++)
		usleep(1000);
}

START_TEST(add_between_closers_look_and_close_dies_with_the_file)
{
	pthread_t t;
	int p[2];

	memset(&race, 0, sizeof race);
	race.kq = xkqueue();
	/* io_uring keeps a node whose knotes went (a new knote needs no new
	 * probe), so the slot is not empty and the close takes the lock: no
	 * window to run the add in */
	struct kq_kqueue *kq = kq_lookup(race.kq, true);
	bool uring = strcmp(kq_backend_name(kq), "io_uring") == 0;
	kq_put(kq);
	if (uring) {
		close(race.kq);
		return;
	}
	xpipe(p);
	race.fd = p[0];
	/* the number's slot exists and is empty again */
	kev_ok(race.kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(0));
	kev_ok(race.kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	kev_expect_none(race.kq);
	ck_assert_int_eq(pthread_create(&t, NULL, race_adder, NULL), 0);
	kq_test_close_window = add_in_close_window;
	ck_assert_int_eq(close(p[0]), 0);
	kq_test_close_window = NULL;
	join_bounded(t, 10000);
	ck_assert(atomic_load(&race.added));
	ck_assert_int_eq(race.add_err, 0);
	/* the knote went with the file, and nothing reopened the number */
	ck_assert_errno(kev_change(race.kq, p[0], EVFILT_READ, EV_ADD, 0, 0,
	    UD(2)), EBADF);
	kev_expect(race.kq, 0, p[0], EVFILT_READ, EV_FREEWATCH | EV_DELETE,
	    NOTE_FREE_CLOSE, 0, UD(1));
	kev_expect_none(race.kq);
	close(p[1]);
	close(race.kq);
}
END_TEST

/*
 * The same with a watch whose file epoll does not hold: one added disabled
 * (probed, then taken out of epoll: nothing to ask epoll about) and one of
 * a regular file (epoll refuses it).  The number is empty after the close:
 * whatever watches it watched the file that close ended.  Before the fix
 * both knotes outlived the file (the disabled one would register whatever
 * file next took the number on EV_ENABLE).  On io_uring too.
 */
static void
add_raced_with_close(int fd, int other_end, short filter, unsigned short flags)
{
	pthread_t t;

	memset(&race, 0, sizeof race);
	race.kq = xkqueue();
	race.fd = fd;
	race.filter = filter;
	race.add_flags = flags;
	/* the kqueue's own number made the slots of its neighbours: fd's
	 * exists, empty (a watched-then-deleted one may stay busy on
	 * io_uring, which keeps the node) */
	ck_assert_int_lt(fd, 1024);
	ck_assert_int_eq(pthread_create(&t, NULL, race_adder, NULL), 0);
	kq_test_close_window = add_in_close_window;
	ck_assert_int_eq(close(fd), 0);
	kq_test_close_window = NULL;
	bool quiet = atomic_exchange(&race.go, true);
	join_bounded(t, 10000);
	ck_assert_msg(quiet, "close() did not find the slot empty");
	ck_assert(atomic_load(&race.added));
	ck_assert_int_eq(race.add_err, 0);
	ck_assert_errno(kev_change(race.kq, fd, filter, EV_ADD, 0, 0, UD(2)),
	    EBADF);
	kev_expect(race.kq, 0, fd, filter, EV_FREEWATCH | EV_DELETE,
	    NOTE_FREE_CLOSE, 0, UD(1));
	kev_expect_none(race.kq);
	if (other_end >= 0)
		close(other_end);
	close(race.kq);
}

START_TEST(disabled_add_between_closers_look_and_close_dies_with_the_file)
{
	int p[2];

	xpipe(p);
	add_raced_with_close(p[0], p[1], EVFILT_READ, EV_DISABLE);
}
END_TEST

START_TEST(regular_file_add_between_closers_look_and_close_dies_with_it)
{
	add_raced_with_close(make_regular_file(16), -1, EVFILT_READ, 0);
}
END_TEST

static Suite *
fdreg_suite(void)
{
	Suite *s = suite_create("fdreg");
	TCase *tc = tcase_create("slots");

	tcase_add_test(tc, close_in_handler_between_pending_check_and_release_is_told);
	suite_add_tcase(s, tc);

	tc = tcase_create("loader");
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, fork_in_handler_while_counting_a_loader_walk_returns);
	tcase_add_test(tc, add_between_closers_look_and_close_dies_with_the_file);
	tcase_add_test(tc, disabled_add_between_closers_look_and_close_dies_with_the_file);
	tcase_add_test(tc, regular_file_add_between_closers_look_and_close_dies_with_it);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(fdreg_suite)
