/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * EVFILT_USER against FreeBSD 14 semantics (filt_usertouch): triggers,
 * the NOTE_FF* operations on the stored fflags, EV_CLEAR / level behaviour,
 * ONESHOT / DISPATCH / DISABLE, udata, and cross-thread wake-up.
 */
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#define trigger(kq, id, ff, data, udata) \
	kev_ok(kq, id, EVFILT_USER, 0, NOTE_TRIGGER | (ff), data, udata)

START_TEST(user_add_and_delete_report_nothing)
{
	int kq = xkqueue();

	kev_ok(kq, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
	kev_expect_none(kq);
	kev_ok(kq, 1, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	kev_expect_none(kq);
	ck_assert_errno(kev_change(kq, 1, EVFILT_USER, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	close(kq);
}
END_TEST

/* FreeBSD looks at NOTE_TRIGGER only on changes to an existing knote. */
START_TEST(user_add_with_trigger_does_not_fire)
{
	int kq = xkqueue();

	kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, NOTE_TRIGGER, 0, NULL);
	kev_expect_none(kq);
	trigger(kq, 1, 0, 0, NULL);
	/* the fflags of the add were stored verbatim, trigger bit included */
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR, NOTE_TRIGGER, 0, NULL);
	close(kq);
}
END_TEST

START_TEST(user_trigger_reports_stored_fflags_and_change_data)
{
	int kq = xkqueue(), u;

	kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, &u);
	trigger(kq, 1, NOTE_FFCOPY | 0x123, 42, &u);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR, 0x123, 42, &u);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(user_ffctrl_operations_edit_stored_fflags)
{
	int kq = xkqueue();

	kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0x0f0, 0, NULL);
	trigger(kq, 1, NOTE_FFOR | 0x00f, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR, 0x0ff, 0, NULL);
	trigger(kq, 1, NOTE_FFAND | 0xff0, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR, 0x0f0, 0, NULL);
	trigger(kq, 1, NOTE_FFCOPY | 0x005, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR, 0x005, 0, NULL);
	trigger(kq, 1, NOTE_FFNOP | 0x999, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR, 0x005, 0, NULL);
	/* without NOTE_TRIGGER the fflags change but nothing fires */
	kev_ok(kq, 1, EVFILT_USER, 0, NOTE_FFOR | 0x100, 0, NULL);
	kev_expect_none(kq);
	trigger(kq, 1, 0, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR, 0x105, 0, NULL);
	close(kq);
}
END_TEST

START_TEST(user_ffcopy_keeps_only_the_low_24_bits)
{
	int kq = xkqueue();

	kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	trigger(kq, 1, NOTE_FFCOPY | 0x0effffff, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR, NOTE_FFLAGSMASK, 0, NULL);
	close(kq);
}
END_TEST

/* FreeBSD stores the add's fflags verbatim, control bits included. */
START_TEST(user_add_stores_fflags_verbatim)
{
	int kq = xkqueue();

	kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, NOTE_FFOR | 0x5, 0, NULL);
	trigger(kq, 1, 0, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR, NOTE_FFOR | 0x5, 0, NULL);
	close(kq);
}
END_TEST

START_TEST(user_without_clear_stays_triggered_until_a_clear_change)
{
	int kq = xkqueue();

	kev_ok(kq, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
	trigger(kq, 1, NOTE_FFCOPY | 0x7, 3, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, 0, 0x7, 3, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, 0, 0x7, 3, NULL);
	/* a change carrying EV_CLEAR un-triggers it (also via EV_ADD) */
	kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	kev_expect_none(kq);
	/* the knote itself did not become EV_CLEAR */
	trigger(kq, 1, 0, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, 0, 0x7, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, 0, 0x7, 0, NULL);
	kev_ok(kq, 1, EVFILT_USER, EV_CLEAR, 0, 0, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(user_clear_resets_trigger_but_keeps_fflags)
{
	int kq = xkqueue();

	kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	trigger(kq, 1, NOTE_FFCOPY | 0x3, 9, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR, 0x3, 9, NULL);
	kev_expect_none(kq);
	trigger(kq, 1, 0, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR, 0x3, 0, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(user_oneshot_is_deleted_after_report)
{
	int kq = xkqueue();

	kev_ok(kq, 2, EVFILT_USER, EV_ADD | EV_ONESHOT, 0, 0, NULL);
	trigger(kq, 2, 0, 0, NULL);
	kev_expect(kq, 0, 2, EVFILT_USER, EV_ONESHOT, 0, 0, NULL);
	kev_expect_none(kq);
	ck_assert_errno(kev_change(kq, 2, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL),
	    ENOENT);
	close(kq);
}
END_TEST

START_TEST(user_dispatch_disables_until_enabled)
{
	int kq = xkqueue();

	kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR | EV_DISPATCH, 0, 0, NULL);
	trigger(kq, 1, 0, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR | EV_DISPATCH, 0, 0, NULL);
	/* enabling without a trigger reports nothing */
	kev_ok(kq, 1, EVFILT_USER, EV_ENABLE, 0, 0, NULL);
	kev_expect_none(kq);
	trigger(kq, 1, 0, 1, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR | EV_DISPATCH, 0, 1, NULL);
	/* a trigger while dispatched-disabled is held until EV_ENABLE */
	trigger(kq, 1, 0, 2, NULL);
	kev_expect_none(kq);
	kev_ok(kq, 1, EVFILT_USER, EV_ENABLE, 0, 2, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR | EV_DISPATCH, 0, 2, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

/* Without EV_CLEAR the knote is still triggered when re-enabled. */
START_TEST(user_dispatch_without_clear_reports_again_on_enable)
{
	int kq = xkqueue();

	kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_DISPATCH, 0, 0, NULL);
	trigger(kq, 1, 0, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_DISPATCH, 0, 0, NULL);
	kev_expect_none(kq);
	kev_ok(kq, 1, EVFILT_USER, EV_ENABLE, 0, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_DISPATCH, 0, 0, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(user_trigger_while_disabled_fires_on_enable)
{
	int kq = xkqueue();

	kev_ok(kq, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
	kev_ok(kq, 1, EVFILT_USER, EV_DISABLE, 0, 0, NULL);
	trigger(kq, 1, 0, 0, NULL);
	kev_expect_none(kq);
	kev_ok(kq, 1, EVFILT_USER, EV_ENABLE, 0, 0, NULL);
	kev_expect(kq, 0, 1, EVFILT_USER, 0, 0, 0, NULL);
	close(kq);
}
END_TEST

START_TEST(user_trigger_replaces_udata_unless_keepudata)
{
	int kq = xkqueue(), a, b;

	kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, &a);
	kev_ok(kq, 1, EVFILT_USER, EV_KEEPUDATA, NOTE_TRIGGER, 0, &b);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR, 0, 0, &a);
	kev_ok(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, &b);
	kev_expect(kq, 0, 1, EVFILT_USER, EV_CLEAR, 0, 0, &b);
	close(kq);
}
END_TEST

START_TEST(user_trigger_of_unknown_ident_is_enoent)
{
	int kq = xkqueue();

	ck_assert_errno(kev_change(kq, 5, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL),
	    ENOENT);
	kev_ok(kq, 5, EVFILT_USER, EV_ADD, 0, 0, NULL);
	ck_assert_errno(kev_change(kq, 6, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL),
	    ENOENT);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

#define NUSER 1000

START_TEST(user_1000_knotes_each_report_once)
{
	static struct kevent ch[NUSER], ev[NUSER + 1];
	static unsigned char seen[NUSER];
	int kq = xkqueue(), i, got = 0;

	for (i = 0; i < NUSER; i++)
		EV_SET(&ch[i], i, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0,
		    (void *)(uintptr_t)(i + 1));
	ck_assert_int_eq(kevent(kq, ch, NUSER, NULL, 0, NULL), 0);
	for (i = 0; i < NUSER; i++)
		EV_SET(&ch[i], i, EVFILT_USER, EV_KEEPUDATA,
		    NOTE_TRIGGER | NOTE_FFCOPY | (unsigned)i, i, NULL);
	ck_assert_int_eq(kevent(kq, ch, NUSER, NULL, 0, NULL), 0);
	while (got < NUSER) {
		int n = kev_wait(kq, ev, NUSER + 1, 1000);
		ck_assert_int_gt(n, 0);
		for (i = 0; i < n; i++) {
			uintptr_t id = ev[i].ident;
			ck_assert_uint_lt(id, NUSER);
			ck_assert_int_eq(ev[i].filter, EVFILT_USER);
			ck_assert_uint_eq(ev[i].flags, EV_CLEAR);
			ck_assert_uint_eq(ev[i].fflags, id);
			ck_assert_int_eq(ev[i].data, (int64_t)id);
			ck_assert_ptr_eq(ev[i].udata, (void *)(id + 1));
			ck_assert_int_eq(seen[id], 0);
			seen[id] = 1;
		}
		got += n;
	}
	kev_expect_none(kq);
	close(kq);
}
END_TEST

struct trig {
	int kq;
	_Atomic int64_t at;
};

static void *
trigger_later(void *arg)
{
	struct trig *t = arg;
	struct timespec ts = { 0, 200 * 1000000L };

	nanosleep(&ts, NULL);
	atomic_store(&t->at, now_ns());
	if (kev_change(t->kq, 77, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFCOPY | 0x42,
	    5, NULL) != 0)
		atomic_store(&t->at, -1);
	return NULL;
}

START_TEST(user_trigger_from_another_thread_wakes_blocked_kevent)
{
	struct trig t = { .kq = xkqueue() };
	pthread_t th;
	struct kevent ev;
	struct timespec ts = { 5, 0 };
	int64_t t0, t1;
	int n;

	kev_ok(t.kq, 77, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	t0 = now_ns();
	ck_assert_int_eq(pthread_create(&th, NULL, trigger_later, &t), 0);
	n = kevent(t.kq, NULL, 0, &ev, 1, &ts);
	t1 = now_ns();
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_uint_eq(ev.ident, 77);
	ck_assert_int_eq(ev.filter, EVFILT_USER);
	ck_assert_uint_eq(ev.flags, EV_CLEAR);
	ck_assert_uint_eq(ev.fflags, 0x42);
	ck_assert_int_eq(ev.data, 5);
	int64_t at = atomic_load(&t.at);
	ck_assert_int_ge(at, t0 + 200000000LL);
	ck_assert_int_ge(t1, at);		/* it really was blocked */
	ck_assert_int_lt(t1 - at, 1000000000LL);	/* woken within 1 s */
	close(t.kq);
}
END_TEST

static Suite *
user_suite(void)
{
	Suite *s = suite_create("user");
	TCase *tc = tcase_create("semantics");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, user_add_and_delete_report_nothing);
	tcase_add_test(tc, user_add_with_trigger_does_not_fire);
	tcase_add_test(tc, user_trigger_reports_stored_fflags_and_change_data);
	tcase_add_test(tc, user_ffctrl_operations_edit_stored_fflags);
	tcase_add_test(tc, user_ffcopy_keeps_only_the_low_24_bits);
	tcase_add_test(tc, user_add_stores_fflags_verbatim);
	tcase_add_test(tc, user_without_clear_stays_triggered_until_a_clear_change);
	tcase_add_test(tc, user_clear_resets_trigger_but_keeps_fflags);
	tcase_add_test(tc, user_oneshot_is_deleted_after_report);
	tcase_add_test(tc, user_dispatch_disables_until_enabled);
	tcase_add_test(tc, user_dispatch_without_clear_reports_again_on_enable);
	tcase_add_test(tc, user_trigger_while_disabled_fires_on_enable);
	tcase_add_test(tc, user_trigger_replaces_udata_unless_keepudata);
	tcase_add_test(tc, user_trigger_of_unknown_ident_is_enoent);
	tcase_add_test(tc, user_1000_knotes_each_report_once);
	tcase_add_test(tc, user_trigger_from_another_thread_wakes_blocked_kevent);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(user_suite)
