/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_kqueue.c: the kqueue object and kevent()'s contract, as FreeBSD 14
 * defines them (kern_event.c kqueue_kevent/kqueue_register/kqueue_scan,
 * kqueue.2): the kqueue fd is pollable and nestable, close() frees it,
 * EV_ERROR/EV_RECEIPT reporting, errno semantics, timeouts, EINTR and the
 * generic flags (ONESHOT, CLEAR, DISPATCH, ENABLE/DISABLE, FORCEONESHOT,
 * KEEPUDATA).  Generic flag behaviour is proven on EVFILT_READ of pipes and
 * socketpairs, which the core ships with.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

/* Does a knote (ident, filter) exist?  EV_DISABLE|EV_ENABLE would be EINVAL,
 * so probe with EV_ENABLE + EV_RECEIPT|EV_KEEPUDATA: 0 if present, ENOENT not. */
static int
knote_exists(int kq, uintptr_t ident, short filter)
{
	struct kevent ch, ev;

	EV_SET(&ch, ident, filter, EV_ENABLE | EV_KEEPUDATA | EV_RECEIPT, 0, 0, NULL);
	ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, &(struct timespec){ 2, 0 }), 1);
	ck_assert_uint_eq(ev.flags, EV_ERROR);
	ck_assert_msg(ev.data == 0 || ev.data == ENOENT, "probe got errno %lld",
	    (long long)ev.data);
	return ev.data == 0;
}

static void
assert_entry(const struct kevent *ev, uintptr_t ident, short filter,
    unsigned short flags, unsigned fflags, int64_t data, void *udata)
{
	ck_assert_uint_eq(ev->ident, ident);
	ck_assert_int_eq(ev->filter, filter);
	ck_assert_uint_eq(ev->flags, flags);
	ck_assert_uint_eq(ev->fflags, fflags);
	ck_assert_int_eq(ev->data, data);
	ck_assert_ptr_eq(ev->udata, udata);
}

/* ------------------------------------------------------------------ pollable */

START_TEST(kqueue_fd_not_readable_when_idle)
{
	int kq = xkqueue(), p[2];
	struct pollfd pfd = { .fd = kq, .events = POLLIN };

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	ck_assert_int_eq(poll(&pfd, 1, 50), 0);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(kqueue_fd_readable_while_fd_event_pending)
{
	int kq = xkqueue(), p[2];
	struct pollfd pfd = { .fd = kq, .events = POLLIN };

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	xwrite(p[1], 3);
	ck_assert_int_eq(poll(&pfd, 1, 2000), 1);
	ck_assert(pfd.revents & POLLIN);
	/* a poll does not consume: still readable, and kevent still reports */
	ck_assert_int_eq(poll(&pfd, 1, 0), 1);
	kev_expect(kq, 0, p[0], EVFILT_READ, 0, 0, 3, NULL);
	/* drained and rescanned: no longer readable */
	xread(p[0], 3);
	kev_expect_none(kq);
	ck_assert_int_eq(poll(&pfd, 1, 50), 0);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

/* FreeBSD keeps a reported level knote queued: the kqueue fd polls readable
 * until the next scan, which finds it still ready (a partial read) or drops
 * it.  (io_uring: the level re-arm waits for the next kevent(), and the
 * ring keeps a taken completion so the kqueue fd stays readable.) */
START_TEST(kqueue_fd_readable_after_partial_read)
{
	int kq = xkqueue(), p[2];
	struct pollfd pfd = { .fd = kq, .events = POLLIN };

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	xwrite(p[1], 4);
	kev_expect(kq, 0, p[0], EVFILT_READ, 0, 0, 4, NULL);
	xread(p[0], 2);
	ck_assert_int_eq(poll(&pfd, 1, 2000), 1);
	ck_assert(pfd.revents & POLLIN);
	kev_expect(kq, 0, p[0], EVFILT_READ, 0, 0, 2, NULL);
	/* drained after a report, then new data with no kevent() between:
	 * readable again, and reported */
	xread(p[0], 2);
	xwrite(p[1], 1);
	ck_assert_int_eq(poll(&pfd, 1, 2000), 1);
	ck_assert(pfd.revents & POLLIN);
	kev_expect(kq, 0, p[0], EVFILT_READ, 0, 0, 1, NULL);
	xread(p[0], 1);
	kev_expect_none(kq);
	ck_assert_int_eq(poll(&pfd, 1, 50), 0);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(kqueue_fd_readable_for_user_trigger)
{
	int kq = xkqueue();
	struct pollfd pfd = { .fd = kq, .events = POLLIN };

	kev_ok(kq, 7, EVFILT_USER, EV_ADD, 0, 0, NULL);
	ck_assert_int_eq(poll(&pfd, 1, 0), 0);
	kev_ok(kq, 7, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	ck_assert_int_eq(poll(&pfd, 1, 1000), 1);
	ck_assert(pfd.revents & POLLIN);
	close(kq);
}
END_TEST

START_TEST(kqueue_fd_readable_for_regular_file)
{
	int kq = xkqueue(), fd = make_regular_file(10);
	struct pollfd pfd = { .fd = kq, .events = POLLIN };

	kev_ok(kq, fd, EVFILT_READ, EV_ADD, 0, 0, UD(1));
	ck_assert_int_eq(poll(&pfd, 1, 1000), 1);
	ck_assert(pfd.revents & POLLIN);
	kev_expect(kq, 0, fd, EVFILT_READ, 0, 0, 10, UD(1));
	/* level: a regular file with unread data stays ready */
	ck_assert_int_eq(poll(&pfd, 1, 1000), 1);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(kqueue_fd_nests_in_epoll)
{
	int kq = xkqueue(), ep = epoll_create1(EPOLL_CLOEXEC), p[2];
	struct epoll_event ee = { .events = EPOLLIN, .data.u64 = 42 }, out;

	ck_assert_int_ge(ep, 0);
	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, kq, &ee), 0);
	ck_assert_int_eq(epoll_wait(ep, &out, 1, 50), 0);
	xwrite(p[1], 1);
	ck_assert_int_eq(epoll_wait(ep, &out, 1, 2000), 1);
	ck_assert_uint_eq(out.data.u64, 42);
	ck_assert(out.events & EPOLLIN);
	kev_expect(kq, 0, p[0], EVFILT_READ, 0, 0, 1, NULL);
	close(ep);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(kqueue_fd_nests_in_kqueue)
{
	int inner = xkqueue(), outer = xkqueue(), p[2];
	struct kevent ev;

	xpipe(p);
	kev_ok(inner, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	kev_ok(outer, inner, EVFILT_READ, EV_ADD, 0, 0, UD(5));
	expect_quiet(outer, 50);
	xwrite(p[1], 2);
	/* FreeBSD filt_kqueue: data = kq_count, the pending events (1 here,
	 * at least 1 whatever the implementation counts) */
	memset(&ev, 0, sizeof ev);
	ck_assert_int_eq(kev_wait(outer, &ev, 1, 2000), 1);
	ck_assert_uint_eq(ev.ident, (uintptr_t)inner);
	ck_assert_int_eq(ev.filter, EVFILT_READ);
	ck_assert_uint_eq(ev.flags, 0);
	ck_assert_uint_eq(ev.fflags, 0);
	ck_assert_int_ge(ev.data, 1);
	ck_assert_ptr_eq(ev.udata, UD(5));
	kev_expect(inner, 0, p[0], EVFILT_READ, 0, 0, 2, NULL);
	xread(p[0], 2);
	kev_expect_none(inner);
	expect_quiet(outer, 50);
	close(p[0]);
	close(p[1]);
	close(outer);
	close(inner);
}
END_TEST

START_TEST(nested_kqueue_data_counts_queued_events)
{
	int inner = xkqueue(), outer = xkqueue();

	/* USER events sit on the inner kqueue's own queue, so the library
	 * knows the count exactly, as FreeBSD's kq_count */
	kev_ok(inner, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	kev_ok(inner, 2, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	kev_ok(inner, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	kev_ok(inner, 2, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	kev_ok(outer, inner, EVFILT_READ, EV_ADD, 0, 0, NULL);
	kev_expect(outer, 1000, inner, EVFILT_READ, 0, 0, 2, NULL);
	close(outer);
	close(inner);
}
END_TEST

START_TEST(kqueue_cannot_watch_itself)
{
	int kq = xkqueue();
	struct kevent ch, ev;

	/* kqueue_register: fp->f_data == kq -> EINVAL */
	EV_SET(&ch, kq, EVFILT_READ, EV_ADD, 0, 0, UD(3));
	memset(&ev, 0, sizeof ev);
	ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, &(struct timespec){ 1, 0 }), 1);
	assert_entry(&ev, kq, EVFILT_READ, EV_ERROR, 0, EINVAL, UD(3));
	close(kq);
}
END_TEST

START_TEST(kqueue_write_filter_on_kqueue_is_einval)
{
	int kq = xkqueue(), other = xkqueue();
	struct kevent ch, ev;

	/* kqueue_kqfilter accepts EVFILT_READ only */
	EV_SET(&ch, other, EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	memset(&ev, 0, sizeof ev);
	ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, &(struct timespec){ 1, 0 }), 1);
	assert_entry(&ev, other, EVFILT_WRITE, EV_ERROR, 0, EINVAL, NULL);
	close(other);
	close(kq);
}
END_TEST

/* -------------------------------------------------------------- kqueue/close */

START_TEST(kqueue_is_not_cloexec_and_kqueuex_is)
{
	int a = xkqueue(), b = kqueuex(KQUEUE_CLOEXEC), c = kqueuex(0);

	ck_assert_int_ge(b, 0);
	ck_assert_int_ge(c, 0);
	ck_assert_int_eq(fcntl(a, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_int_eq(fcntl(b, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	ck_assert_int_eq(fcntl(c, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_errno(kqueuex(0x2), EINVAL);
	close(a);
	close(b);
	close(c);
}
END_TEST

START_TEST(close_kqueue_then_ebadf)
{
	int kq = xkqueue(), p[2];
	struct kevent ev;
	struct timespec zero = { 0, 0 };

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	xwrite(p[1], 1);
	ck_assert_int_eq(close(kq), 0);
	ck_assert_errno(close(kq), EBADF);
	ck_assert_errno(kevent(kq, NULL, 0, &ev, 1, &zero), EBADF);
	ck_assert_errno(kev_change(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL), EBADF);
	/* the watched fds are the application's: untouched */
	xwrite(p[1], 1);
	xread(p[0], 2);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(close_kqueue_frees_its_descriptors)
{
	int p[2], f, base, kq, i;

	xpipe(p);
	f = make_regular_file(5);
	/* round 0 only warms up anything process-wide (not per kqueue) */
	base = -1;
	for (i = 0; i < 4; i++) {
		if (i == 1)
			base = count_open_fds();
		kq = xkqueue();
		kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
		kev_ok(kq, p[1], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
		kev_ok(kq, f, EVFILT_READ, EV_ADD, 0, 0, NULL);
		kev_ok(kq, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
		kev_ok(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
		xwrite(p[1], 1);
		ck_assert_int_ge(kev_wait(kq, (struct kevent[4]){ 0 }, 4, 1000), 1);
		ck_assert_int_eq(close(kq), 0);
		xread(p[0], 1);
		/* synchronous: every descriptor the kqueue used is gone now */
		if (base >= 0)
			ck_assert_int_eq(count_open_fds(), base);
	}
	close(f);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* ------------------------------------------------------------ kevent errnos */

START_TEST(kevent_on_non_kqueue_is_ebadf)
{
	int kq = xkqueue(), p[2], ep = epoll_create1(0), f = make_regular_file(0);
	int closed_fd, bad[5], i;
	struct kevent ch, ev;
	struct timespec zero = { 0, 0 };

	xpipe(p);
	ck_assert_int_ge(ep, 0);
	closed_fd = dup(p[0]);
	close(closed_fd);
	bad[0] = p[0];
	bad[1] = -1;
	bad[2] = closed_fd;
	bad[3] = ep;		/* an epoll fd is not a kqueue */
	bad[4] = f;
	EV_SET(&ch, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	for (i = 0; i < 5; i++) {
		ck_assert_errno(kevent(bad[i], NULL, 0, &ev, 1, &zero), EBADF);
		ck_assert_errno(kevent(bad[i], &ch, 1, NULL, 0, &zero), EBADF);
		ck_assert_errno(kevent(bad[i], &ch, 1, &ev, 1, &zero), EBADF);
	}
	close(f);
	close(ep);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(invalid_timeouts_are_einval)
{
	int kq = xkqueue();
	struct kevent ev;
	static const struct timespec bad[] = {
		{ 0, 1000000000 }, { 0, -1 }, { -1, 0 }, { 1, 1000000000 },
		{ -1, 500 },
	};
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_errno(kevent(kq, NULL, 0, &ev, 1, &bad[i]), EINVAL);
	/* the largest valid nanosecond count is fine */
	ck_assert_int_eq(kevent(kq, NULL, 0, &ev, 1,
	    &(struct timespec){ 0, 999999999 }), 0);
	close(kq);
}
END_TEST

START_TEST(invalid_timeout_fails_after_changes_are_applied)
{
	int kq = xkqueue(), p[2];
	struct kevent ch, ev;
	struct timespec bad = { 0, 1000000000 };

	/* kqueue_kevent applies the changelist, kqueue_scan then rejects
	 * the timeout */
	xpipe(p);
	EV_SET(&ch, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(9));
	ck_assert_errno(kevent(kq, &ch, 1, &ev, 1, &bad), EINVAL);
	xwrite(p[1], 1);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 1, UD(9));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(negative_counts_are_einval)
{
	int kq = xkqueue();
	struct kevent ch, ev;
	struct timespec zero = { 0, 0 };

	EV_SET(&ch, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
	ck_assert_errno(kevent(kq, NULL, 0, &ev, -1, &zero), EINVAL);
	ck_assert_errno(kevent(kq, &ev, -1, NULL, 0, &zero), EINVAL);
	ck_assert_errno(kevent(kq, &ch, -5, &ev, 1, &zero), EINVAL);
	close(kq);
}
END_TEST

START_TEST(null_lists_with_counts_are_efault)
{
	int kq = xkqueue(), p[2];
	struct timespec zero = { 0, 0 };

	xpipe(p);
	ck_assert_errno(kevent(kq, NULL, 1, NULL, 0, &zero), EFAULT);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	xwrite(p[1], 1);
	/* copyout of a pending event to NULL */
	ck_assert_errno(kevent(kq, NULL, 0, NULL, 1, &zero), EFAULT);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(ident_minus_one_is_ebadf)
{
	int kq = xkqueue();
	struct kevent ch, ev;

	/* libevent probes kqueue with exactly this change */
	EV_SET(&ch, (uintptr_t)-1, EVFILT_READ, EV_ADD, 0, 0, UD(77));
	memset(&ev, 0, sizeof ev);
	ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, &(struct timespec){ 2, 0 }), 1);
	assert_entry(&ev, (uintptr_t)-1, EVFILT_READ, EV_ERROR, 0, EBADF, UD(77));
	ck_assert_errno(kevent(kq, &ch, 1, NULL, 0, NULL), EBADF);
	/* an ident above INT_MAX and one that is simply not open */
	EV_SET(&ch, (uintptr_t)INT_MAX + 1, EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	ck_assert_errno(kevent(kq, &ch, 1, NULL, 0, NULL), EBADF);
	EV_SET(&ch, 900000, EVFILT_READ, EV_ADD, 0, 0, NULL);
	ck_assert_errno(kevent(kq, &ch, 1, NULL, 0, NULL), EBADF);
	close(kq);
}
END_TEST

/*
 * An O_PATH descriptor of a socket's inode is no socket to poll: EBADF,
 * as epoll_ctl says (the io_uring backend classifies sockets by
 * getsockopt, which must say the same).
 */
START_TEST(o_path_socket_is_ebadf)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int kq = xkqueue(), s, o;
	struct kevent ch;

	snprintf(sa.sun_path, sizeof sa.sun_path, "/tmp/kqfree-opath-%d",
	    (int)getpid());
	(void)unlink(sa.sun_path);
	ck_assert_int_ge(s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), 0);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
	ck_assert_int_ge(o = open(sa.sun_path, O_PATH | O_CLOEXEC), 0);
	EV_SET(&ch, o, EVFILT_READ, EV_ADD, 0, 0, NULL);
	ck_assert_errno(kevent(kq, &ch, 1, NULL, 0, NULL), EBADF);
	EV_SET(&ch, s, EVFILT_READ, EV_ADD, 0, 0, NULL);
	ck_assert_int_eq(kevent(kq, &ch, 1, NULL, 0, NULL), 0);
	close(o);
	close(s);
	(void)unlink(sa.sun_path);
	close(kq);
}
END_TEST

/* Resident memory of this process, in bytes. */
static long
rss_bytes(void)
{
	long size, resident;
	FILE *f = fopen("/proc/self/statm", "r");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld %ld", &size, &resident), 2);
	fclose(f);
	return resident * sysconf(_SC_PAGESIZE);
}

/*
 * FreeBSD looks the descriptor up before anything else: an EV_ADD on a
 * number that is not open is EBADF having allocated nothing (no fd table,
 * no registry grown to that number).
 */
START_TEST(add_of_unopened_huge_fd_is_ebadf_without_allocating)
{
	int kq = xkqueue(), p[2];
	static const uintptr_t idents[] = { 67108863, 8000000, 67108863 - 1024 };
	struct kevent ch, ev;
	long before;

	/* first-use allocations (fd table, registry) out of the way */
	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	kev_ok(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	before = rss_bytes();
	for (size_t i = 0; i < sizeof idents / sizeof idents[0]; i++) {
		EV_SET(&ch, idents[i], i % 2 ? EVFILT_WRITE : EVFILT_READ,
		    EV_ADD | EV_FREEWATCH, 0, 0, UD(i + 2));
		memset(&ev, 0xa5, sizeof ev);
		ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, NULL), 1);
		assert_entry(&ev, idents[i], ch.filter, EV_ERROR, 0, EBADF,
		    UD(i + 2));
		ck_assert_errno(kevent(kq, &ch, 1, NULL, 0, NULL), EBADF);
	}
	ck_assert_msg(rss_bytes() - before < 1024 * 1024,
	    "failed adds grew the RSS by %ld KiB", (rss_bytes() - before) / 1024);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(unknown_filter_is_einval)
{
	int kq = xkqueue(), p[2];
	short filters[] = { -14, -100, 1, 100, SHRT_MIN, SHRT_MAX };
	struct kevent ch, ev;
	size_t i;

	xpipe(p);
	for (i = 0; i < sizeof filters / sizeof filters[0]; i++) {
		EV_SET(&ch, p[0], filters[i], EV_ADD, 0, 0, UD(i));
		memset(&ev, 0, sizeof ev);
		ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, &(struct timespec){ 2, 0 }), 1);
		assert_entry(&ev, p[0], filters[i], EV_ERROR, 0, EINVAL, UD(i));
		ck_assert_errno(kevent(kq, &ch, 1, NULL, 0, NULL), EINVAL);
	}
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(unsupported_filters_are_einval)
{
	int kq = xkqueue(), p[2];
	short filters[] = { EVFILT_AIO, EVFILT_FS, EVFILT_LIO, EVFILT_SENDFILE };
	size_t i;

	/* SPEC 1: named by the header, answered with EINVAL */
	xpipe(p);
	for (i = 0; i < sizeof filters / sizeof filters[0]; i++)
		ck_assert_errno(kev_change(kq, p[0], filters[i], EV_ADD, 0, 0,
		    NULL), EINVAL);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(change_with_filter_zero_is_skipped)
{
	int kq = xkqueue();
	struct kevent ch[2], ev[2];
	struct timespec zero = { 0, 0 };

	/* kqueue_kevent: "if (!kevp->filter) continue;" - no entry at all */
	EV_SET(&ch[0], 5, 0, EV_ADD | EV_RECEIPT, 0, 0, NULL);
	EV_SET(&ch[1], 6, EVFILT_USER, EV_ADD | EV_RECEIPT, 0, 0, UD(6));
	memset(ev, 0, sizeof ev);
	ck_assert_int_eq(kevent(kq, ch, 2, ev, 2, &zero), 1);
	assert_entry(&ev[0], 6, EVFILT_USER, EV_ERROR, 0, 0, UD(6));
	ck_assert_int_eq(kevent(kq, ch, 1, NULL, 0, &zero), 0);
	close(kq);
}
END_TEST

START_TEST(enable_with_disable_is_einval)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	/* checked before the lookup: EINVAL even for a missing knote */
	ck_assert_errno(kev_change(kq, p[0], EVFILT_READ, EV_ENABLE | EV_DISABLE,
	    0, 0, NULL), EINVAL);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	ck_assert_errno(kev_change(kq, p[0], EVFILT_READ,
	    EV_ADD | EV_ENABLE | EV_DISABLE, 0, 0, NULL), EINVAL);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(missing_knote_is_enoent)
{
	int kq = xkqueue(), p[2];
	unsigned short ops[] = { EV_DELETE, EV_ENABLE, EV_DISABLE, 0, EV_KEEPUDATA };
	size_t i;

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	for (i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		/* right fd, other filter; and an open fd without knotes */
		ck_assert_errno(kev_change(kq, p[0], EVFILT_WRITE, ops[i], 0, 0,
		    NULL), ENOENT);
		ck_assert_errno(kev_change(kq, p[1], EVFILT_READ, ops[i], 0, 0,
		    NULL), ENOENT);
	}
	kev_ok(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	ck_assert_errno(kev_change(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(error_entry_copies_the_change)
{
	int kq = xkqueue(), p[2];
	struct kevent ch, ev;

	xpipe(p);
	EV_SET(&ch, p[0], EVFILT_READ, EV_DELETE | EV_ONESHOT, 0x1234, 99, UD(0xbeef));
	memset(&ev, 0xa5, sizeof ev);
	ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, &(struct timespec){ 2, 0 }), 1);
	/* flags are exactly EV_ERROR, data the errno, the rest as given */
	assert_entry(&ev, p[0], EVFILT_READ, EV_ERROR, 0x1234, ENOENT, UD(0xbeef));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(error_without_room_returns_errno_and_stops)
{
	int kq = xkqueue(), a[2], b[2];
	struct kevent ch[3];

	xpipe(a);
	xpipe(b);
	EV_SET(&ch[0], a[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	EV_SET(&ch[1], a[1], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[2], b[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	ck_assert_errno(kevent(kq, ch, 3, NULL, 0, NULL), ENOENT);
	/* the change before the failure was applied, the one after not */
	ck_assert(knote_exists(kq, a[0], EVFILT_READ));
	ck_assert(!knote_exists(kq, b[0], EVFILT_READ));
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
	close(kq);
}
END_TEST

START_TEST(change_processing_stops_when_eventlist_full)
{
	int kq = xkqueue(), a[2], b[2], c[2], gone;
	struct kevent ch[4], ev[2];

	xpipe(a);
	xpipe(b);
	xpipe(c);
	gone = dup(c[0]);
	close(gone);
	EV_SET(&ch[0], a[1], EVFILT_READ, EV_DELETE, 0, 0, UD(1));	/* ENOENT */
	EV_SET(&ch[1], a[0], EVFILT_READ, EV_ADD, 0, 0, UD(2));	/* applied */
	EV_SET(&ch[2], gone, EVFILT_READ, EV_ADD, 0, 0, UD(3));	/* EBADF, no room */
	EV_SET(&ch[3], b[0], EVFILT_READ, EV_ADD, 0, 0, UD(4));	/* never seen */
	memset(ev, 0, sizeof ev);
	ck_assert_errno(kevent(kq, ch, 4, ev, 1, &(struct timespec){ 2, 0 }), EBADF);
	assert_entry(&ev[0], a[1], EVFILT_READ, EV_ERROR, 0, ENOENT, UD(1));
	ck_assert_uint_eq(ev[1].flags, 0);	/* nothing written past nevents */
	ck_assert(knote_exists(kq, a[0], EVFILT_READ));
	ck_assert(!knote_exists(kq, b[0], EVFILT_READ));
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
	close(c[0]);
	close(c[1]);
	close(kq);
}
END_TEST

START_TEST(receipt_reports_each_change_without_scanning)
{
	int kq = xkqueue(), a[2], b[2];
	struct kevent ch[2], ev[4];
	struct timespec longwait = { 5, 0 };
	int64_t t0;

	xpipe(a);
	xpipe(b);
	xwrite(a[1], 1);
	xwrite(b[1], 2);
	EV_SET(&ch[0], a[0], EVFILT_READ, EV_ADD | EV_RECEIPT, 0, 0, UD(10));
	EV_SET(&ch[1], b[0], EVFILT_READ, EV_ADD | EV_RECEIPT, 0, 0, UD(11));
	memset(ev, 0, sizeof ev);
	t0 = now_ns();
	/* both knotes are ready, yet only the receipts come back, at once */
	ck_assert_int_eq(kevent(kq, ch, 2, ev, 4, &longwait), 2);
	ck_assert_int_lt(now_ns() - t0, 1000000000LL);
	assert_entry(&ev[0], a[0], EVFILT_READ, EV_ERROR, 0, 0, UD(10));
	assert_entry(&ev[1], b[0], EVFILT_READ, EV_ERROR, 0, 0, UD(11));
	ck_assert_uint_eq(ev[2].flags, 0);
	/* EV_RECEIPT is not stripped from the stored flags */
	memset(ev, 0, sizeof ev);
	ck_assert_int_eq(kev_wait(kq, ev, 4, 1000), 2);
	if (ev[0].ident != (uintptr_t)a[0]) {
		struct kevent t = ev[0];
		ev[0] = ev[1];
		ev[1] = t;
	}
	assert_entry(&ev[0], a[0], EVFILT_READ, EV_RECEIPT, 0, 1, UD(10));
	assert_entry(&ev[1], b[0], EVFILT_READ, EV_RECEIPT, 0, 2, UD(11));
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
	close(kq);
}
END_TEST

START_TEST(receipt_without_room_returns_zero_and_stops)
{
	int kq = xkqueue(), a[2], b[2];
	struct kevent ch[2];

	/* nevents == 0 at a receipt: kqueue_kevent returns its error, 0 */
	xpipe(a);
	xpipe(b);
	EV_SET(&ch[0], a[0], EVFILT_READ, EV_ADD | EV_RECEIPT, 0, 0, NULL);
	EV_SET(&ch[1], b[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	ck_assert_int_eq(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	ck_assert(knote_exists(kq, a[0], EVFILT_READ));
	ck_assert(!knote_exists(kq, b[0], EVFILT_READ));
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
	close(kq);
}
END_TEST

START_TEST(error_entries_return_at_once_without_scanning)
{
	int kq = xkqueue(), p[2], q[2];
	struct kevent ch[3], ev[4];
	struct timespec longwait = { 5, 0 };
	int64_t t0;

	xpipe(p);
	xpipe(q);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	xwrite(p[1], 1);
	EV_SET(&ch[0], p[1], EVFILT_READ, EV_DELETE, 0, 0, UD(2));	/* ENOENT */
	EV_SET(&ch[1], q[0], EVFILT_READ, EV_ADD, 0, 0, UD(3));	/* fine */
	EV_SET(&ch[2], p[0], -30, EV_ADD, 0, 0, UD(4));			/* EINVAL */
	memset(ev, 0, sizeof ev);
	t0 = now_ns();
	ck_assert_int_eq(kevent(kq, ch, 3, ev, 4, &longwait), 2);
	ck_assert_int_lt(now_ns() - t0, 1000000000LL);
	assert_entry(&ev[0], p[1], EVFILT_READ, EV_ERROR, 0, ENOENT, UD(2));
	assert_entry(&ev[1], p[0], -30, EV_ERROR, 0, EINVAL, UD(4));
	ck_assert_uint_eq(ev[2].flags, 0);
	/* the pending read event was left for the next call */
	kev_expect(kq, 0, p[0], EVFILT_READ, 0, 0, 1, UD(1));
	ck_assert(knote_exists(kq, q[0], EVFILT_READ));
	close(q[0]);
	close(q[1]);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(event_of_knote_added_in_same_call)
{
	int kq = xkqueue(), p[2];
	struct kevent ch, ev;

	xpipe(p);
	xwrite(p[1], 4);
	EV_SET(&ch, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(8));
	memset(&ev, 0, sizeof ev);
	ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, &(struct timespec){ 0, 0 }), 1);
	assert_entry(&ev, p[0], EVFILT_READ, 0, 0, 4, UD(8));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

/* ---------------------------------------------------------------- timeouts */

START_TEST(zero_timeout_does_not_wait)
{
	int kq = xkqueue(), p[2];
	struct kevent ev;
	int64_t t0;

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	t0 = now_ns();
	ck_assert_int_eq(kevent(kq, NULL, 0, &ev, 1, &(struct timespec){ 0, 0 }), 0);
	ck_assert_int_lt(now_ns() - t0, 100000000LL);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(timeout_has_nanosecond_precision)
{
	int kq = xkqueue();
	struct kevent ev;
	static const long waits_ns[] = { 1900000, 1, 999999, 20500000, 200000000 };
	size_t i;
	int64_t t0, dt;

	for (i = 0; i < sizeof waits_ns / sizeof waits_ns[0]; i++) {
		t0 = now_ns();
		ck_assert_int_eq(kevent(kq, NULL, 0, &ev, 1,
		    &(struct timespec){ 0, waits_ns[i] }), 0);
		dt = now_ns() - t0;
		/* never shorter than asked (truncating to ms would be) */
		ck_assert_msg(dt >= waits_ns[i], "waited %lld ns for a %ld ns timeout",
		    (long long)dt, waits_ns[i]);
		ck_assert_int_lt(dt, waits_ns[i] + 1000000000LL);
	}
	t0 = now_ns();
	ck_assert_int_eq(kevent(kq, NULL, 0, &ev, 1, &(struct timespec){ 1, 5000000 }), 0);
	ck_assert_int_ge(now_ns() - t0, 1005000000LL);
	close(kq);
}
END_TEST

struct delayed_write {
	int fd;
	long delay_ms;
};

static void *
delayed_write_main(void *arg)
{
	struct delayed_write *dw = arg;

	usleep(dw->delay_ms * 1000);
	ck_assert_int_eq(write(dw->fd, "z", 1), 1);
	return NULL;
}

static void
wait_with_timeout_until_written(const struct timespec *ts)
{
	int kq = xkqueue(), p[2];
	struct delayed_write dw;
	struct kevent ev;
	pthread_t t;
	int64_t t0;

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	dw.fd = p[1];
	dw.delay_ms = 150;
	t0 = now_ns();
	ck_assert_int_eq(pthread_create(&t, NULL, delayed_write_main, &dw), 0);
	memset(&ev, 0, sizeof ev);
	ck_assert_int_eq(kevent(kq, NULL, 0, &ev, 1, ts), 1);
	ck_assert_int_ge(now_ns() - t0, 100000000LL);
	assert_entry(&ev, p[0], EVFILT_READ, 0, 0, 1, UD(1));
	pthread_join(t, NULL);
	close(p[0]);
	close(p[1]);
	close(kq);
}

START_TEST(null_timeout_waits_for_an_event)
{
	wait_with_timeout_until_written(NULL);
}
END_TEST

START_TEST(huge_timeout_waits_without_overflow)
{
	/* tv_sec beyond INT32_MAX means "forever" on FreeBSD; it must not
	 * overflow into an immediate return */
	wait_with_timeout_until_written(&(struct timespec){ (time_t)INT32_MAX + 10, 0 });
	wait_with_timeout_until_written(&(struct timespec){ LONG_MAX, 999999999 });
	wait_with_timeout_until_written(&(struct timespec){ LONG_MAX / 1000 + 1, 0 });
}
END_TEST

static volatile sig_atomic_t sigusr1_seen;

static void
on_sigusr1(int sig)
{
	(void)sig;
	sigusr1_seen++;
}

struct pester {
	pthread_t target;
	atomic_bool stop;
};

/* Keep signalling until the target reports back: the first signal may land
 * before the target blocks; a later one must interrupt the wait. */
static void *
pester_main(void *arg)
{
	struct pester *p = arg;

	usleep(100000);
	while (!atomic_load(&p->stop)) {
		pthread_kill(p->target, SIGUSR1);
		usleep(100000);
	}
	return NULL;
}

static void
eintr_case(const struct timespec *ts)
{
	int kq = xkqueue(), p[2], r, e;
	struct sigaction sa;
	struct pester pst;
	struct kevent ch, ev;
	pthread_t t;
	int64_t t0;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigusr1;
	sa.sa_flags = 0;	/* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	xpipe(p);
	pst.target = pthread_self();
	atomic_init(&pst.stop, false);
	sigusr1_seen = 0;
	ck_assert_int_eq(pthread_create(&t, NULL, pester_main, &pst), 0);
	EV_SET(&ch, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(12));
	t0 = now_ns();
	errno = 0;
	r = kevent(kq, &ch, 1, &ev, 1, ts);
	e = errno;
	atomic_store(&pst.stop, true);
	pthread_join(t, NULL);
	ck_assert_msg(r == -1 && e == EINTR, "kevent returned %d errno %d", r, e);
	ck_assert_int_ge(sigusr1_seen, 1);
	ck_assert_int_lt(now_ns() - t0, 4000000000LL);
	/* the change made before the wait stays applied */
	xwrite(p[1], 1);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 1, UD(12));
	signal(SIGUSR1, SIG_DFL);
	close(p[0]);
	close(p[1]);
	close(kq);
}

START_TEST(signal_interrupts_wait_with_eintr)
{
	eintr_case(&(struct timespec){ 10, 0 });
}
END_TEST

START_TEST(signal_interrupts_infinite_wait_with_eintr)
{
	eintr_case(NULL);
}
END_TEST

/* ------------------------------------------------------------------- flags */

START_TEST(oneshot_fires_once_then_is_deleted)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_ONESHOT, 0, 0, UD(1));
	expect_quiet(kq, 20);
	xwrite(p[1], 5);
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_ONESHOT, 0, 5, UD(1));
	expect_quiet(kq, 50);
	ck_assert_errno(kev_change(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(clear_reports_only_new_activity)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(2));
	xwrite(p[1], 5);
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_CLEAR, 0, 5, UD(2));
	expect_quiet(kq, 50);		/* still 5 unread bytes: no new activity */
	xwrite(p[1], 3);
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_CLEAR, 0, 8, UD(2));
	kev_expect_none(kq);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(level_knote_reports_until_drained)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(3));
	xwrite(p[1], 5);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 5, UD(3));
	kev_expect(kq, 0, p[0], EVFILT_READ, 0, 0, 5, UD(3));
	xread(p[0], 2);
	kev_expect(kq, 0, p[0], EVFILT_READ, 0, 0, 3, UD(3));
	xread(p[0], 3);
	kev_expect_none(kq);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(dispatch_disables_until_enable)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(4));
	xwrite(p[1], 5);
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_DISPATCH, 0, 5, UD(4));
	expect_quiet(kq, 50);
	xwrite(p[1], 1);
	expect_quiet(kq, 50);
	kev_ok(kq, p[0], EVFILT_READ, EV_ENABLE, 0, 0, UD(4));
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_DISPATCH, 0, 6, UD(4));
	expect_quiet(kq, 50);
	/* still there, just disabled */
	kev_ok(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(dispatch_clear_knote_is_reevaluated_on_enable)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_DISPATCH | EV_CLEAR, 0, 0, NULL);
	xwrite(p[1], 5);
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_DISPATCH | EV_CLEAR, 0, 5, NULL);
	kev_ok(kq, p[0], EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	/* FreeBSD re-evaluates the filter on EV_ENABLE (kqueue_register calls
	 * f_event), so a pipe that still holds data fires again */
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_DISPATCH | EV_CLEAR, 0, 5, NULL);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(add_disabled_then_enable)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	xwrite(p[1], 2);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_DISABLE, 0, 0, UD(5));
	expect_quiet(kq, 50);
	kev_ok(kq, p[0], EVFILT_READ, EV_ENABLE, 0, 0, UD(5));
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 2, UD(5));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(disable_hides_pending_event)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(6));
	xwrite(p[1], 2);
	ck_assert_int_eq(poll(&(struct pollfd){ .fd = kq, .events = POLLIN }, 1,
	    1000), 1);
	kev_ok(kq, p[0], EVFILT_READ, EV_DISABLE, 0, 0, UD(6));
	expect_quiet(kq, 50);
	xwrite(p[1], 1);
	expect_quiet(kq, 50);
	kev_ok(kq, p[0], EVFILT_READ, EV_ENABLE, 0, 0, UD(6));
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 3, UD(6));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(readd_replaces_udata)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(2));
	xwrite(p[1], 1);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 1, UD(2));
	/* with EV_CLEAR in the re-add: udata still replaced; the stored
	 * flags are the registration's (FreeBSD does not update kn_flags) */
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(3));
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 1, UD(3));
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 1, UD(3));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(readd_modifies_fflags_and_data)
{
	int kq = xkqueue(), s[2];

	/* NOTE_LOWAT is what sfflags/sdata mean for a socket read */
	xsocketpair(SOCK_STREAM, s);
	kev_ok(kq, s[0], EVFILT_READ, EV_ADD, NOTE_LOWAT, 10, UD(1));
	xwrite(s[1], 5);
	expect_quiet(kq, 100);
	kev_ok(kq, s[0], EVFILT_READ, EV_ADD, NOTE_LOWAT, 3, UD(2));
	kev_expect(kq, 1000, s[0], EVFILT_READ, 0, 0, 5, UD(2));
	/* raise it again, this time passing EV_CLEAR along */
	kev_ok(kq, s[0], EVFILT_READ, EV_ADD | EV_CLEAR, NOTE_LOWAT, 8, UD(3));
	expect_quiet(kq, 100);
	xwrite(s[1], 3);
	kev_expect(kq, 1000, s[0], EVFILT_READ, 0, 0, 8, UD(3));
	/* and drop NOTE_LOWAT altogether */
	xread(s[0], 8);
	kev_ok(kq, s[0], EVFILT_READ, EV_ADD, 0, 0, UD(4));
	xwrite(s[1], 1);
	kev_expect(kq, 1000, s[0], EVFILT_READ, 0, 0, 1, UD(4));
	close(s[0]);
	close(s[1]);
	close(kq);
}
END_TEST

START_TEST(keepudata_keeps_udata)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_KEEPUDATA, 0, 0, UD(2));
	kev_ok(kq, p[0], EVFILT_READ, EV_DISABLE | EV_KEEPUDATA, 0, 0, UD(3));
	kev_ok(kq, p[0], EVFILT_READ, EV_ENABLE | EV_KEEPUDATA, 0, 0, NULL);
	xwrite(p[1], 1);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 1, UD(1));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(enable_and_disable_replace_udata)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	xwrite(p[1], 1);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	/* FreeBSD stores kev->udata on every change to an existing knote */
	kev_ok(kq, p[0], EVFILT_READ, EV_DISABLE, 0, 0, UD(2));
	kev_ok(kq, p[0], EVFILT_READ, EV_ENABLE | EV_KEEPUDATA, 0, 0, UD(9));
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 1, UD(2));
	kev_ok(kq, p[0], EVFILT_READ, EV_ENABLE, 0, 0, UD(3));
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 1, UD(3));
	kev_ok(kq, p[0], EVFILT_READ, EV_DISABLE, 0, 0, NULL);
	kev_ok(kq, p[0], EVFILT_READ, EV_ENABLE | EV_KEEPUDATA, 0, 0, UD(4));
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 1, NULL);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(forceoneshot_fires_and_deletes)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(1));
	xwrite(p[1], 5);
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_DISPATCH, 0, 5, UD(1));
	/* disabled by dispatch; FORCEONESHOT on its own does not enable */
	kev_ok(kq, p[0], EVFILT_READ, EV_ENABLE | EV_FORCEONESHOT, 0, 0, UD(2));
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_DISPATCH | EV_ONESHOT, 0, 5, UD(2));
	expect_quiet(kq, 50);
	ck_assert_errno(kev_change(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(forceoneshot_fires_even_when_not_ready)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	expect_quiet(kq, 20);
	/* KNOTE_ACTIVATE without a readiness check: reported with data 0 */
	kev_ok(kq, p[0], EVFILT_READ, EV_FORCEONESHOT, 0, 0, UD(2));
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_ONESHOT, 0, 0, UD(2));
	ck_assert_errno(kev_change(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(stored_flags_are_registration_flags)
{
	int kq = xkqueue(), p[2];
	struct kevent ch, ev;

	xpipe(p);
	xwrite(p[1], 1);
	/* kept: RECEIPT, KEEPUDATA, CLEAR; stripped: ADD, ENABLE */
	EV_SET(&ch, p[0], EVFILT_READ,
	    EV_ADD | EV_ENABLE | EV_RECEIPT | EV_KEEPUDATA | EV_CLEAR, 0, 0, UD(7));
	ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, &(struct timespec){ 2, 0 }), 1);
	assert_entry(&ev, p[0], EVFILT_READ, EV_ERROR, 0, 0, UD(7));
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_RECEIPT | EV_KEEPUDATA | EV_CLEAR,
	    0, 1, UD(7));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(sysflags_in_changes_are_ignored)
{
	int kq = xkqueue(), p[2];
	struct kevent ch, ev;

	xpipe(p);
	xwrite(p[1], 1);
	/* kqueue_kevent clears EV_SYSFLAGS before registering */
	EV_SET(&ch, p[0], EVFILT_READ, EV_ADD | EV_EOF | EV_ERROR | EV_FLAG1, 0, 0,
	    UD(1));
	memset(&ev, 0, sizeof ev);
	ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, &(struct timespec){ 1, 0 }), 1);
	assert_entry(&ev, p[0], EVFILT_READ, 0, 0, 1, UD(1));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(same_knote_twice_in_one_changelist_is_one_knote)
{
	int kq = xkqueue(), p[2];
	struct kevent ch[2], ev[2];

	xpipe(p);
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	EV_SET(&ch[1], p[0], EVFILT_READ, EV_ADD, 0, 0, UD(2));
	ck_assert_int_eq(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	xwrite(p[1], 1);
	memset(ev, 0, sizeof ev);
	ck_assert_int_eq(kev_wait(kq, ev, 2, 1000), 1);
	assert_entry(&ev[0], p[0], EVFILT_READ, 0, 0, 1, UD(2));
	kev_ok(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	ck_assert(!knote_exists(kq, p[0], EVFILT_READ));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(one_fd_in_two_kqueues)
{
	int a = xkqueue(), b = xkqueue(), p[2];

	xpipe(p);
	kev_ok(a, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	kev_ok(b, p[0], EVFILT_READ, EV_ADD | EV_ONESHOT, 0, 0, UD(2));
	xwrite(p[1], 3);
	kev_expect(a, 1000, p[0], EVFILT_READ, 0, 0, 3, UD(1));
	kev_expect(b, 1000, p[0], EVFILT_READ, EV_ONESHOT, 0, 3, UD(2));
	/* b's oneshot is gone, a's level knote is not */
	kev_expect(a, 1000, p[0], EVFILT_READ, 0, 0, 3, UD(1));
	kev_expect_none(b);
	kev_ok(a, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	kev_expect_none(a);
	close(p[0]);
	close(p[1]);
	close(a);
	close(b);
}
END_TEST

START_TEST(small_eventlist_rotates_through_ready_knotes)
{
	int kq = xkqueue(), p[3][2], i, j, seen[3] = { 0 };
	struct kevent ev;

	for (i = 0; i < 3; i++) {
		xpipe(p[i]);
		kev_ok(kq, p[i][0], EVFILT_READ, EV_ADD, 0, 0, UD(i));
		xwrite(p[i][1], i + 1);
	}
	/* level knotes go to the queue's tail after a report: three calls
	 * with room for one see all three */
	for (j = 0; j < 3; j++) {
		memset(&ev, 0, sizeof ev);
		ck_assert_int_eq(kev_wait(kq, &ev, 1, 1000), 1);
		i = (int)(uintptr_t)ev.udata;
		ck_assert_int_ge(i, 0);
		ck_assert_int_lt(i, 3);
		assert_entry(&ev, p[i][0], EVFILT_READ, 0, 0, i + 1, UD(i));
		seen[i]++;
	}
	ck_assert_int_eq(seen[0] + seen[1] + seen[2], 3);
	ck_assert(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
	for (i = 0; i < 3; i++) {
		close(p[i][0]);
		close(p[i][1]);
	}
	close(kq);
}
END_TEST

START_TEST(receipt_on_modify_and_delete)
{
	int kq = xkqueue(), p[2];
	struct kevent ch[3], ev[3];

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_DISABLE | EV_RECEIPT, 0, 0, UD(2));
	EV_SET(&ch[1], p[0], EVFILT_READ, EV_DELETE | EV_RECEIPT, 0, 0, UD(3));
	EV_SET(&ch[2], p[0], EVFILT_READ, EV_DELETE | EV_RECEIPT, 0, 0, UD(4));
	memset(ev, 0, sizeof ev);
	ck_assert_int_eq(kevent(kq, ch, 3, ev, 3, &(struct timespec){ 2, 0 }), 3);
	assert_entry(&ev[0], p[0], EVFILT_READ, EV_ERROR, 0, 0, UD(2));
	assert_entry(&ev[1], p[0], EVFILT_READ, EV_ERROR, 0, 0, UD(3));
	assert_entry(&ev[2], p[0], EVFILT_READ, EV_ERROR, 0, ENOENT, UD(4));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

/*
 * Knotes whose ident is not an fd are found by (filter, ident): the same
 * ident under three filters is three knotes, and thousands of them (the
 * lookup table grows, then shrinks as they go) are each found, deleted and
 * reported exactly once.
 */
#define NIDENT 3000
START_TEST(same_idents_under_three_filters_stay_distinct)
{
	static struct kevent ch[2 * NIDENT], ev[512];
	static char seen[NIDENT];
	int kq = xkqueue(), i, n, got = 0;

	for (i = 0; i < NIDENT; i++) {
		EV_SET(&ch[2 * i], i, EVFILT_TIMER, EV_ADD, 0, 3600000,
		    (void *)(uintptr_t)(i + 1));
		EV_SET(&ch[2 * i + 1], i, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0,
		    (void *)(uintptr_t)(i + 100000));
	}
	ck_assert_int_eq(kevent(kq, ch, 2 * NIDENT, NULL, 0, NULL), 0);
	kev_ok(kq, 7, EVFILT_SIGNAL, EV_ADD, 0, 0, (void *)7);
	/* the timers go; the user events and the signal stay */
	for (i = 0; i < NIDENT; i++)
		EV_SET(&ch[i], i, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	ck_assert_int_eq(kevent(kq, ch, NIDENT, NULL, 0, NULL), 0);
	ck_assert_int_eq(kev_change(kq, 5, EVFILT_TIMER, EV_DELETE, 0, 0, NULL),
	    -1);
	ck_assert_int_eq(errno, ENOENT);
	for (i = 0; i < NIDENT; i += 2)
		EV_SET(&ch[i / 2], i, EVFILT_USER, EV_KEEPUDATA,
		    NOTE_TRIGGER | NOTE_FFCOPY | 3, 0, NULL);
	ck_assert_int_eq(kevent(kq, ch, NIDENT / 2, NULL, 0, NULL), 0);
	while (got < NIDENT / 2) {
		n = kev_wait(kq, ev, 512, 5000);
		ck_assert_int_gt(n, 0);
		for (i = 0; i < n; i++) {
			ck_assert_int_eq(ev[i].filter, EVFILT_USER);
			ck_assert_uint_eq(ev[i].ident % 2, 0);
			ck_assert_uint_lt(ev[i].ident, NIDENT);
			ck_assert_int_eq(seen[ev[i].ident], 0);
			seen[ev[i].ident] = 1;
			ck_assert_uint_eq(ev[i].flags, EV_CLEAR);
			ck_assert_uint_eq(ev[i].fflags, 3);
			ck_assert_ptr_eq(ev[i].udata,
			    (void *)(uintptr_t)(ev[i].ident + 100000));
		}
		got += n;
	}
	kev_expect_none(kq);
	ck_assert_int_eq(kev_change(kq, 7, EVFILT_SIGNAL, EV_DELETE, 0, 0,
	    NULL), 0);
	ck_assert_int_eq(kev_change(kq, 7, EVFILT_SIGNAL, EV_DELETE, 0, 0,
	    NULL), -1);
	ck_assert_int_eq(errno, ENOENT);
	close(kq);
}
END_TEST

START_TEST(many_knotes_report_exactly_the_ready_ones)
{
	enum { NPIPES = 300 };
	static int p[NPIPES][2];
	static struct kevent ev[2 * NPIPES];
	static char seen[NPIPES];
	struct rlimit rl;
	int kq, i, n, calls, total = 0;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < 2 * NPIPES + 64) {
		rl.rlim_cur = rl.rlim_max < 2 * NPIPES + 64 ? rl.rlim_max :
		    2 * NPIPES + 64;
		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	kq = xkqueue();
	memset(seen, 0, sizeof seen);
	for (i = 0; i < NPIPES; i++) {
		xpipe(p[i]);
		kev_ok(kq, p[i][0], EVFILT_READ, EV_ADD | EV_ONESHOT, 0, 0, UD(i));
	}
	/* every pipe but the multiples of 7 gets (i % 5) + 1 bytes */
	for (i = 0; i < NPIPES; i++)
		if (i % 7 != 0)
			xwrite(p[i][1], (size_t)(i % 5) + 1);
	for (calls = 0; calls < 10; calls++) {
		n = kev_wait(kq, ev, 2 * NPIPES, 1000);
		ck_assert_int_ge(n, 0);
		if (n == 0)
			break;
		for (i = 0; i < n; i++) {
			int k = (int)(uintptr_t)ev[i].udata;

			ck_assert_int_ge(k, 0);
			ck_assert_int_lt(k, NPIPES);
			ck_assert_int_ne(k % 7, 0);
			ck_assert_int_eq(seen[k], 0);
			seen[k] = 1;
			assert_entry(&ev[i], p[k][0], EVFILT_READ, EV_ONESHOT, 0,
			    (k % 5) + 1, UD(k));
		}
		total += n;
	}
	ck_assert_int_eq(total, NPIPES - (NPIPES + 6) / 7);
	ck_assert_int_le(calls, 3);
	for (i = 0; i < NPIPES; i++) {
		close(p[i][0]);
		close(p[i][1]);
	}
	close(kq);
}
END_TEST

static Suite *
kqueue_suite(void)
{
	Suite *s = suite_create("kqueue");
	TCase *tc;

	tc = tcase_create("pollable");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, kqueue_fd_not_readable_when_idle);
	tcase_add_test(tc, kqueue_fd_readable_while_fd_event_pending);
	tcase_add_test(tc, kqueue_fd_readable_after_partial_read);
	tcase_add_test(tc, kqueue_fd_readable_for_user_trigger);
	tcase_add_test(tc, kqueue_fd_readable_for_regular_file);
	tcase_add_test(tc, kqueue_fd_nests_in_epoll);
	tcase_add_test(tc, kqueue_fd_nests_in_kqueue);
	tcase_add_test(tc, nested_kqueue_data_counts_queued_events);
	tcase_add_test(tc, kqueue_cannot_watch_itself);
	tcase_add_test(tc, kqueue_write_filter_on_kqueue_is_einval);
	suite_add_tcase(s, tc);

	tc = tcase_create("lifetime");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, kqueue_is_not_cloexec_and_kqueuex_is);
	tcase_add_test(tc, close_kqueue_then_ebadf);
	tcase_add_test(tc, close_kqueue_frees_its_descriptors);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, kevent_on_non_kqueue_is_ebadf);
	tcase_add_test(tc, invalid_timeouts_are_einval);
	tcase_add_test(tc, invalid_timeout_fails_after_changes_are_applied);
	tcase_add_test(tc, negative_counts_are_einval);
	tcase_add_test(tc, null_lists_with_counts_are_efault);
	tcase_add_test(tc, ident_minus_one_is_ebadf);
	tcase_add_test(tc, o_path_socket_is_ebadf);
	tcase_add_test(tc, add_of_unopened_huge_fd_is_ebadf_without_allocating);
	tcase_add_test(tc, unknown_filter_is_einval);
	tcase_add_test(tc, unsupported_filters_are_einval);
	tcase_add_test(tc, change_with_filter_zero_is_skipped);
	tcase_add_test(tc, enable_with_disable_is_einval);
	tcase_add_test(tc, missing_knote_is_enoent);
	tcase_add_test(tc, error_entry_copies_the_change);
	tcase_add_test(tc, error_without_room_returns_errno_and_stops);
	tcase_add_test(tc, change_processing_stops_when_eventlist_full);
	tcase_add_test(tc, receipt_reports_each_change_without_scanning);
	tcase_add_test(tc, receipt_without_room_returns_zero_and_stops);
	tcase_add_test(tc, error_entries_return_at_once_without_scanning);
	tcase_add_test(tc, event_of_knote_added_in_same_call);
	tcase_add_test(tc, receipt_on_modify_and_delete);
	suite_add_tcase(s, tc);

	tc = tcase_create("timeouts");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, zero_timeout_does_not_wait);
	tcase_add_test(tc, timeout_has_nanosecond_precision);
	tcase_add_test(tc, null_timeout_waits_for_an_event);
	tcase_add_test(tc, huge_timeout_waits_without_overflow);
	tcase_add_test(tc, signal_interrupts_wait_with_eintr);
	tcase_add_test(tc, signal_interrupts_infinite_wait_with_eintr);
	suite_add_tcase(s, tc);

	tc = tcase_create("flags");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, oneshot_fires_once_then_is_deleted);
	tcase_add_test(tc, clear_reports_only_new_activity);
	tcase_add_test(tc, level_knote_reports_until_drained);
	tcase_add_test(tc, dispatch_disables_until_enable);
	tcase_add_test(tc, dispatch_clear_knote_is_reevaluated_on_enable);
	tcase_add_test(tc, add_disabled_then_enable);
	tcase_add_test(tc, disable_hides_pending_event);
	tcase_add_test(tc, readd_replaces_udata);
	tcase_add_test(tc, readd_modifies_fflags_and_data);
	tcase_add_test(tc, keepudata_keeps_udata);
	tcase_add_test(tc, enable_and_disable_replace_udata);
	tcase_add_test(tc, forceoneshot_fires_and_deletes);
	tcase_add_test(tc, forceoneshot_fires_even_when_not_ready);
	tcase_add_test(tc, stored_flags_are_registration_flags);
	tcase_add_test(tc, sysflags_in_changes_are_ignored);
	tcase_add_test(tc, same_knote_twice_in_one_changelist_is_one_knote);
	tcase_add_test(tc, one_fd_in_two_kqueues);
	tcase_add_test(tc, small_eventlist_rotates_through_ready_knotes);
	tcase_add_test(tc, many_knotes_report_exactly_the_ready_ones);
	tcase_add_test(tc, same_idents_under_three_filters_stay_distinct);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(kqueue_suite)
