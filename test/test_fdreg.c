/*
 * test_fdreg.c: the fd registry's slot lock against a signal handler that
 * closes the number on the thread holding it.  White-box: the tests' build
 * of the library (KQ_STATS) calls kq_test_unlock_window() at the one
 * instant a handler is hardest to hit by chance - after the unlock looked
 * for a pending close and before it let the slot go.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#include "util.h"

/* lib/fdreg.c, tests' build */
extern void (*kq_test_unlock_window)(int fd);

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

static Suite *
fdreg_suite(void)
{
	Suite *s = suite_create("fdreg");
	TCase *tc = tcase_create("slots");

	tcase_add_test(tc, close_in_handler_between_pending_check_and_release_is_told);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(fdreg_suite)
