/* Shared helpers for the Check suites: exact kevent assertions, bounded waits. */
#ifndef KQ_TEST_UTIL_H
#define KQ_TEST_UTIL_H

#include <check.h>
#include <errno.h>
#include <string.h>
#include <sys/event.h>
#include <time.h>

/* Apply one change; returns kevent()'s result. */
static inline int
kev_change(int kq, uintptr_t ident, short filter, unsigned short flags,
    unsigned fflags, int64_t data, void *udata)
{
	struct kevent kev;
	EV_SET(&kev, ident, filter, flags, fflags, data, udata);
	return kevent(kq, &kev, 1, NULL, 0, NULL);
}

/* Apply one change that must succeed. */
#define kev_ok(kq, ident, filter, flags, fflags, data, udata) \
	ck_assert_int_eq(kev_change(kq, ident, filter, flags, fflags, data, udata), 0)

/* Wait at most ms milliseconds for events. */
static inline int
kev_wait(int kq, struct kevent *ev, int n, long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	return kevent(kq, NULL, 0, ev, n, &ts);
}

/* Exactly this event must be the next one (waiting at most ms). */
#define kev_expect(kq, ms, ident_, filter_, flags_, fflags_, data_, udata_) do { \
	struct kevent ev_;						\
	memset(&ev_, 0xa5, sizeof ev_);					\
	int n_ = kev_wait(kq, &ev_, 1, ms);				\
	ck_assert_msg(n_ == 1, "expected one event, kevent returned %d (%s)", n_, \
	    n_ < 0 ? strerror(errno) : "no errno");			\
	ck_assert_uint_eq(ev_.ident, (uintptr_t)(ident_));		\
	ck_assert_int_eq(ev_.filter, (filter_));			\
	ck_assert_uint_eq(ev_.flags, (unsigned short)(flags_));		\
	ck_assert_uint_eq(ev_.fflags, (unsigned)(fflags_));		\
	ck_assert_int_eq(ev_.data, (int64_t)(data_));			\
	ck_assert_ptr_eq(ev_.udata, (void *)(udata_));			\
	ck_assert_uint_eq(ev_.ext[0] | ev_.ext[1] | ev_.ext[2] | ev_.ext[3], 0); \
} while (0)

/* No event may be pending (polls without waiting). */
#define kev_expect_none(kq) do {					\
	struct kevent ev_;						\
	int n_ = kev_wait(kq, &ev_, 1, 0);				\
	ck_assert_msg(n_ == 0, "expected no event, got %d: ident %lu filter %d flags 0x%x data %lld", \
	    n_, (unsigned long)ev_.ident, ev_.filter, ev_.flags, (long long)ev_.data); \
} while (0)

/* -1 with this errno */
#define ck_assert_errno(expr, err) do {					\
	errno = 0;							\
	int r_ = (expr);						\
	ck_assert_msg(r_ == -1 && errno == (err),			\
	    "%s: expected -1/%s, got %d/%s", #expr, strerror(err), r_, strerror(errno)); \
} while (0)

/* Run a suite built by make_suite(); exit status for automake. */
#define KQ_TEST_MAIN(make_suite)					\
int main(void) {							\
	SRunner *sr_ = srunner_create(make_suite());			\
	srunner_run_all(sr_, CK_NORMAL);				\
	int failed_ = srunner_ntests_failed(sr_);			\
	srunner_free(sr_);						\
	return failed_ ? 1 : 0;						\
}

#endif
