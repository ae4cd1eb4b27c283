/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_empty.c: EVFILT_EMPTY as FreeBSD 14's filt_soempty defines it:
 * ready when the socket's send buffer holds nothing (for TCP: everything
 * sent was acknowledged), data = bytes still in the send buffer, i.e. 0
 * whenever it fires; a listening socket is always "empty".  Only sockets
 * have it: pipe_kqfilter and vfs_kqfilter answer EINVAL.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

/* Write until EAGAIN (twice, to take what loopback acks in between). */
static size_t
fill(int fd)
{
	static char buf[65536];
	size_t total = 0;
	ssize_t n;
	int round;

	for (round = 0; round < 2; round++) {
		while ((n = write(fd, buf, sizeof buf)) > 0)
			total += (size_t)n;
		ck_assert_int_eq(errno, EAGAIN);
		usleep(50000);
	}
	return total;
}

START_TEST(tcp_empty_fires_on_idle_connection)
{
	int kq = xkqueue(), c, s;

	tcp_pair(&c, &s);
	kev_ok(kq, c, EVFILT_EMPTY, EV_ADD, 0, 0, UD(1));
	kev_expect(kq, 1000, c, EVFILT_EMPTY, 0, 0, 0, UD(1));
	/* level: still empty, still reported */
	kev_expect(kq, 1000, c, EVFILT_EMPTY, 0, 0, 0, UD(1));
	close(c);
	close(s);
	close(kq);
}
END_TEST

START_TEST(tcp_empty_fires_once_small_write_is_acked)
{
	int kq = xkqueue(), c, s;

	tcp_pair(&c, &s);
	kev_ok(kq, c, EVFILT_EMPTY, EV_ADD | EV_CLEAR, 0, 0, UD(2));
	kev_expect(kq, 1000, c, EVFILT_EMPTY, EV_CLEAR, 0, 0, UD(2));
	expect_quiet(kq, 50);
	/* the peer does not read, but loopback acks at once */
	ck_assert_int_eq(write(c, "0123456789", 10), 10);
	kev_expect(kq, 2000, c, EVFILT_EMPTY, EV_CLEAR, 0, 0, UD(2));
	close(c);
	close(s);
	close(kq);
}
END_TEST

START_TEST(tcp_empty_waits_until_peer_reads_everything)
{
	int kq = xkqueue(), c, s;
	size_t n;

	tcp_pair(&c, &s);
	n = fill(c);
	ck_assert_uint_gt(n, 0);
	/* the peer's window is closed: data stays unacknowledged */
	kev_ok(kq, c, EVFILT_EMPTY, EV_ADD, 0, 0, UD(3));
	expect_quiet(kq, 200);
	ck_assert_uint_eq(drain(s, n), n);
	kev_expect(kq, 3000, c, EVFILT_EMPTY, 0, 0, 0, UD(3));
	close(c);
	close(s);
	close(kq);
}
END_TEST

START_TEST(empty_and_write_are_independent)
{
	int kq = xkqueue(), c, s;
	size_t n;
	struct kevent ev;

	tcp_pair(&c, &s);
	kev_ok(kq, c, EVFILT_EMPTY, EV_ADD | EV_ONESHOT, 0, 0, UD(4));
	kev_ok(kq, c, EVFILT_WRITE, EV_ADD | EV_DISABLE, 0, 0, UD(5));
	kev_expect(kq, 1000, c, EVFILT_EMPTY, EV_ONESHOT, 0, 0, UD(4));
	ck_assert_errno(kev_change(kq, c, EVFILT_EMPTY, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	/* the WRITE knote on the same socket is untouched */
	kev_ok(kq, c, EVFILT_WRITE, EV_ENABLE, 0, 0, UD(5));
	memset(&ev, 0, sizeof ev);
	ck_assert_int_eq(kev_wait(kq, &ev, 1, 1000), 1);
	ck_assert_int_eq(ev.filter, EVFILT_WRITE);
	ck_assert_ptr_eq(ev.udata, UD(5));
	ck_assert_int_gt(ev.data, 0);
	kev_ok(kq, c, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	/* EMPTY added while data is in flight stays quiet */
	n = fill(c);
	kev_ok(kq, c, EVFILT_EMPTY, EV_ADD, 0, 0, UD(6));
	expect_quiet(kq, 100);
	ck_assert_uint_eq(drain(s, n), n);
	kev_expect(kq, 3000, c, EVFILT_EMPTY, 0, 0, 0, UD(6));
	close(c);
	close(s);
	close(kq);
}
END_TEST

START_TEST(listening_socket_is_always_empty)
{
	struct sockaddr_in sin;
	int kq = xkqueue(), l = tcp_listener(8, &sin);

	kev_ok(kq, l, EVFILT_EMPTY, EV_ADD, 0, 0, UD(7));
	kev_expect(kq, 1000, l, EVFILT_EMPTY, 0, 0, 0, UD(7));
	close(l);
	close(kq);
}
END_TEST

START_TEST(udp_empty_fires)
{
	int kq = xkqueue(), u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);

	ck_assert_int_ge(u, 0);
	kev_ok(kq, u, EVFILT_EMPTY, EV_ADD | EV_ONESHOT, 0, 0, UD(8));
	kev_expect(kq, 1000, u, EVFILT_EMPTY, EV_ONESHOT, 0, 0, UD(8));
	close(u);
	close(kq);
}
END_TEST

START_TEST(empty_on_non_socket_is_einval)
{
	char path[] = "/tmp/kqempty.XXXXXX";
	int kq = xkqueue(), p[2], f = mkstemp(path);
	struct kevent ch, ev;

	ck_assert_int_ge(f, 0);
	unlink(path);
	ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	EV_SET(&ch, p[1], EVFILT_EMPTY, EV_ADD, 0, 0, UD(9));
	memset(&ev, 0, sizeof ev);
	ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, &(struct timespec){ 2, 0 }), 1);
	ck_assert_uint_eq(ev.ident, (uintptr_t)p[1]);
	ck_assert_int_eq(ev.filter, EVFILT_EMPTY);
	ck_assert_uint_eq(ev.flags, EV_ERROR);
	ck_assert_int_eq(ev.data, EINVAL);
	ck_assert_ptr_eq(ev.udata, UD(9));
	ck_assert_errno(kev_change(kq, f, EVFILT_EMPTY, EV_ADD, 0, 0, NULL), EINVAL);
	/* and a bad descriptor is still EBADF */
	ck_assert_errno(kev_change(kq, (uintptr_t)-1, EVFILT_EMPTY, EV_ADD, 0, 0,
	    NULL), EBADF);
	close(f);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

/*
 * A rejected EV_ADD leaves nothing behind.  Files, directories and
 * /dev/null are always-ready knotes for READ/WRITE; EMPTY must refuse them
 * before any of that happens, or a freed knote stays queued and the next
 * scan runs through recycled memory.
 */
START_TEST(empty_rejected_on_file_leaves_nothing_queued)
{
	int kq = xkqueue(), f = make_regular_file(10), p[2], i;
	int d = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int n = open("/dev/null", O_RDWR | O_CLOEXEC);

	ck_assert_int_ge(d, 0);
	ck_assert_int_ge(n, 0);
	xpipe(p);
	for (i = 0; i < 3; i++) {
		ck_assert_errno(kev_change(kq, f, EVFILT_EMPTY, EV_ADD, 0, 0,
		    UD(10)), EINVAL);
		ck_assert_errno(kev_change(kq, d, EVFILT_EMPTY, EV_ADD, 0, 0,
		    UD(11)), EINVAL);
		ck_assert_errno(kev_change(kq, n, EVFILT_EMPTY, EV_ADD, 0, 0,
		    UD(12)), EINVAL);
	}
	kev_expect_none(kq);
	ck_assert_errno(kev_change(kq, f, EVFILT_EMPTY, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	/* the kqueue still works: a new knote (recycled memory) reports */
	xwrite(p[1], 3);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(13));
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 3, UD(13));
	/* and /dev/null still takes an always-ready WRITE knote */
	kev_ok(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	kev_ok(kq, n, EVFILT_WRITE, EV_ADD, 0, 0, UD(14));
	kev_expect(kq, 1000, n, EVFILT_WRITE, 0, 0, 0, UD(14));
	close(n);
	close(d);
	close(f);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

static Suite *
empty_suite(void)
{
	Suite *s = suite_create("empty");
	TCase *tc = tcase_create("empty");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, tcp_empty_fires_on_idle_connection);
	tcase_add_test(tc, tcp_empty_fires_once_small_write_is_acked);
	tcase_add_test(tc, tcp_empty_waits_until_peer_reads_everything);
	tcase_add_test(tc, empty_and_write_are_independent);
	tcase_add_test(tc, listening_socket_is_always_empty);
	tcase_add_test(tc, udp_empty_fires);
	tcase_add_test(tc, empty_on_non_socket_is_einval);
	tcase_add_test(tc, empty_rejected_on_file_leaves_nothing_queued);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(empty_suite)
