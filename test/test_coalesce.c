/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_coalesce.c: changes that the kernel cannot see cost no epoll_ctl, and
 * a changelist costs at most one epoll_ctl per registration it really
 * changes (SPEC 3: kevent() adds little over raw epoll).  White-box: it
 * reads the library's count of epoll_ctl calls.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "util.h"

/* lib/internal.h: number of epoll_ctl calls made by this process */
extern _Atomic unsigned long kq_stat_ctl_calls;

static unsigned long
ctl_calls(void)
{
	return atomic_load(&kq_stat_ctl_calls);
}

/* Apply changes and then wait once without blocking, so that whatever the
 * library defers to the flush before a wait is counted too. */
static void
apply_and_poll(int kq, const struct kevent *ch, int n)
{
	struct kevent ev[4];

	ck_assert_int_eq(kevent(kq, ch, n, NULL, 0, NULL), 0);
	ck_assert_int_ge(kev_wait(kq, ev, 4, 0), 0);
}

START_TEST(readd_same_knote_costs_no_epoll_ctl)
{
	int kq = xkqueue(), p[2], i;
	struct kevent ch;
	unsigned long before;

	xpipe(p);
	EV_SET(&ch, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	apply_and_poll(kq, &ch, 1);
	before = ctl_calls();
	for (i = 0; i < 5; i++)
		apply_and_poll(kq, &ch, 1);
	ck_assert_uint_eq(ctl_calls() - before, 0);
	/* with the event pending too */
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	before = ctl_calls();
	apply_and_poll(kq, &ch, 1);
	kev_expect(kq, 0, p[0], EVFILT_READ, 0, 0, 1, UD(1));
	ck_assert_uint_eq(ctl_calls() - before, 0);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(readd_with_new_udata_costs_no_epoll_ctl)
{
	int kq = xkqueue(), s[2];
	struct kevent ch;
	unsigned long before;

	ck_assert_int_eq(pipe2(s, O_NONBLOCK | O_CLOEXEC), 0);
	EV_SET(&ch, s[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	apply_and_poll(kq, &ch, 1);
	before = ctl_calls();
	EV_SET(&ch, s[0], EVFILT_READ, EV_ADD, 0, 0, UD(2));
	apply_and_poll(kq, &ch, 1);
	EV_SET(&ch, s[0], EVFILT_READ, EV_ADD | EV_KEEPUDATA, 0, 0, UD(3));
	apply_and_poll(kq, &ch, 1);
	ck_assert_uint_eq(ctl_calls() - before, 0);
	ck_assert_int_eq(write(s[1], "x", 1), 1);
	kev_expect(kq, 1000, s[0], EVFILT_READ, 0, 0, 1, UD(2));
	close(s[0]);
	close(s[1]);
	close(kq);
}
END_TEST

/*
 * A delete and re-add of the same knote in one changelist (the rearm idiom,
 * renewed in place) is a new knote: what the old one had queued, its flags,
 * udata and state are gone; the new one's apply; an EV_FREEWATCH reference
 * of the old one still comes back.
 */
START_TEST(delete_then_add_is_a_new_knote)
{
	int kq = xkqueue(), p[2];
	struct kevent ch[4];

	xpipe(p);
	ck_assert_int_eq(write(p[1], "abc", 3), 3);
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(1));
	ck_assert_int_eq(kevent(kq, ch, 1, NULL, 0, NULL), 0);
	/* queued and ready; re-added disabled: nothing to report */
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[1], p[0], EVFILT_READ, EV_ADD | EV_DISABLE, 0, 0, UD(2));
	ck_assert_int_eq(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	kev_expect_none(kq);
	/* re-added with EV_DISPATCH and new udata: reported once */
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[1], p[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(3));
	ck_assert_int_eq(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_DISPATCH, 0, 3, UD(3));
	kev_expect_none(kq);
	/* EV_CLEAR of the first is gone: level again after the next pair */
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[1], p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, UD(4));
	ck_assert_int_eq(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 3, UD(4));
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 3, UD(4));
	/* the reference held: the pair hands it back, the new one takes one */
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[1], p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH | EV_ONESHOT,
	    0, 0, UD(5));
	ck_assert_int_eq(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_FREEWATCH | EV_DELETE,
	    NOTE_FREE_DELETE, 0, UD(4));
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_ONESHOT | EV_FREEWATCH, 0,
	    3, UD(5));
	kev_expect_none(kq);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(delete_then_add_in_one_changelist_costs_at_most_one)
{
	int kq = xkqueue(), p[2];
	struct kevent ch[2];
	unsigned long before;

	xpipe(p);
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	apply_and_poll(kq, ch, 1);
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[1], p[0], EVFILT_READ, EV_ADD, 0, 0, UD(2));
	before = ctl_calls();
	apply_and_poll(kq, ch, 2);
	ck_assert_uint_le(ctl_calls() - before, 1);
	/* and the knote works, with the new udata */
	ck_assert_int_eq(write(p[1], "ab", 2), 2);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 2, UD(2));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(disable_then_enable_in_one_changelist_costs_nothing)
{
	int kq = xkqueue(), p[2];
	struct kevent ch[2];
	unsigned long before;

	xpipe(p);
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	apply_and_poll(kq, ch, 1);
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_DISABLE, 0, 0, UD(1));
	EV_SET(&ch[1], p[0], EVFILT_READ, EV_ENABLE, 0, 0, UD(1));
	before = ctl_calls();
	apply_and_poll(kq, ch, 2);
	ck_assert_uint_eq(ctl_calls() - before, 0);
	ck_assert_int_eq(write(p[1], "a", 1), 1);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 1, UD(1));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(level_wait_loop_costs_no_epoll_ctl)
{
	int kq = xkqueue(), p[2], i;
	unsigned long before;

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	kev_ok(kq, p[1], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
	ck_assert_int_eq(write(p[1], "abc", 3), 3);
	(void)kev_wait(kq, (struct kevent[2]){ 0 }, 2, 0);
	before = ctl_calls();
	for (i = 0; i < 100; i++) {
		struct kevent ev[2];
		ck_assert_int_eq(kev_wait(kq, ev, 2, 1000), 2);
	}
	ck_assert_uint_eq(ctl_calls() - before, 0);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(new_fds_cost_one_epoll_ctl_each)
{
	int kq = xkqueue(), p[10][2], i;
	struct kevent ch[10];
	unsigned long before;

	for (i = 0; i < 10; i++) {
		xpipe(p[i]);
		EV_SET(&ch[i], p[i][0], EVFILT_READ, EV_ADD, 0, 0, UD(i));
	}
	before = ctl_calls();
	apply_and_poll(kq, ch, 10);
	ck_assert_uint_le(ctl_calls() - before, 10);
	for (i = 0; i < 10; i++) {
		close(p[i][0]);
		close(p[i][1]);
	}
	close(kq);
}
END_TEST

START_TEST(oneshot_rearm_costs_like_raw_epoll)
{
	int kq = xkqueue(), p[2], i;
	unsigned long before;
	char c;

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_ONESHOT, 0, 0, UD(1));
	(void)kev_wait(kq, (struct kevent[1]){ 0 }, 1, 0);
	before = ctl_calls();
	for (i = 0; i < 20; i++) {
		ck_assert_int_eq(write(p[1], "x", 1), 1);
		kev_expect(kq, 1000, p[0], EVFILT_READ, EV_ONESHOT, 0, 1, UD(1));
		ck_assert_int_eq(read(p[0], &c, 1), 1);
		kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_ONESHOT, 0, 0, UD(1));
	}
	/* raw epoll: one EPOLL_CTL_MOD per EPOLLONESHOT re-arm */
	ck_assert_uint_le(ctl_calls() - before, 20);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(dispatch_enable_costs_like_raw_epoll)
{
	int kq = xkqueue(), p[2], i;
	unsigned long before;
	char c;

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(1));
	(void)kev_wait(kq, (struct kevent[1]){ 0 }, 1, 0);
	before = ctl_calls();
	for (i = 0; i < 20; i++) {
		ck_assert_int_eq(write(p[1], "x", 1), 1);
		kev_expect(kq, 1000, p[0], EVFILT_READ, EV_DISPATCH, 0, 1, UD(1));
		ck_assert_int_eq(read(p[0], &c, 1), 1);
		kev_ok(kq, p[0], EVFILT_READ, EV_ENABLE, 0, 0, UD(1));
	}
	ck_assert_uint_le(ctl_calls() - before, 20);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

static Suite *
coalesce_suite(void)
{
	Suite *s = suite_create("coalesce");
	TCase *tc = tcase_create("coalesce");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, readd_same_knote_costs_no_epoll_ctl);
	tcase_add_test(tc, readd_with_new_udata_costs_no_epoll_ctl);
	tcase_add_test(tc, delete_then_add_in_one_changelist_costs_at_most_one);
	tcase_add_test(tc, delete_then_add_is_a_new_knote);
	tcase_add_test(tc, disable_then_enable_in_one_changelist_costs_nothing);
	tcase_add_test(tc, level_wait_loop_costs_no_epoll_ctl);
	tcase_add_test(tc, new_fds_cost_one_epoll_ctl_each);
	tcase_add_test(tc, oneshot_rearm_costs_like_raw_epoll);
	tcase_add_test(tc, dispatch_enable_costs_like_raw_epoll);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(coalesce_suite)
