/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_write.c: EVFILT_WRITE with FreeBSD 14's semantics:
 *   pipes/FIFOs (filt_pipewrite): data = free space in the pipe buffer
 *     (Linux: F_GETPIPE_SZ minus queued bytes); EV_EOF once the reader is
 *     gone - for an anonymous pipe pipeclose()'s knlist_clear() also makes
 *     it EV_ONESHOT - and EPIPE for a new knote when the reader already is
 *     gone (pipe_kqfilter);
 *   sockets (filt_sowrite): data = sbspace(so_snd).  Linux charges the
 *     send buffer with skb truesize, so the robust facts asserted are:
 *     0 < data <= SO_SNDBUF, writing n unread bytes lowers it by at least
 *     n, it comes back to the initial value once the peer drained it, no
 *     event while the buffer is full, NOTE_LOWAT, EV_EOF with so_error;
 *     an unconnected TCP socket is not writable until connected;
 *   regular files (filt_vfswrite): always ready, data 0;
 *   eventfd (filt_eventfdwrite): data = UINT64_MAX - 1 - counter;
 *   /dev/null and ptys: writable.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

/* The next event must be WRITE for fd with these flags/fflags/udata;
 * returns its data. */
static int64_t
expect_write(int kq, int fd, unsigned short flags, unsigned fflags, void *udata)
{
	struct kevent ev;

	memset(&ev, 0, sizeof ev);
	ck_assert_int_eq(kev_wait(kq, &ev, 1, 2000), 1);
	ck_assert_uint_eq(ev.ident, (uintptr_t)fd);
	ck_assert_int_eq(ev.filter, EVFILT_WRITE);
	ck_assert_uint_eq(ev.flags, flags);
	ck_assert_uint_eq(ev.fflags, fflags);
	ck_assert_ptr_eq(ev.udata, udata);
	return ev.data;
}

/* Write until EAGAIN; returns the bytes written. */
static size_t
fill(int fd)
{
	static char buf[65536];
	size_t total = 0;
	ssize_t n;

	for (;;) {
		n = write(fd, buf, sizeof buf);
		if (n < 0) {
			ck_assert_int_eq(errno, EAGAIN);
			/* top up with small writes until truly full */
			while ((n = write(fd, buf, 1)) == 1)
				total++;
			ck_assert_int_eq(errno, EAGAIN);
			return total;
		}
		total += (size_t)n;
	}
}

static int
sndbuf(int fd)
{
	int v = 0;
	socklen_t len = sizeof v;

	ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &len), 0);
	return v;
}

/* ------------------------------------------------------------------ pipes */

START_TEST(pipe_write_data_is_free_space)
{
	int kq = xkqueue(), p[2], cap;

	xpipe(p);
	cap = fcntl(p[1], F_GETPIPE_SZ);
	ck_assert_int_gt(cap, 0);
	kev_ok(kq, p[1], EVFILT_WRITE, EV_ADD, 0, 0, UD(1));
	kev_expect(kq, 1000, p[1], EVFILT_WRITE, 0, 0, cap, UD(1));
	xwrite(p[1], 100);
	kev_expect(kq, 1000, p[1], EVFILT_WRITE, 0, 0, cap - 100, UD(1));
	xwrite(p[1], 1000);
	kev_expect(kq, 1000, p[1], EVFILT_WRITE, 0, 0, cap - 1100, UD(1));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(pipe_write_not_ready_while_full)
{
	int kq = xkqueue(), p[2], cap;
	size_t n;

	xpipe(p);
	cap = fcntl(p[1], F_GETPIPE_SZ);
	kev_ok(kq, p[1], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
	kev_expect(kq, 1000, p[1], EVFILT_WRITE, 0, 0, cap, UD(2));
	n = fill(p[1]);
	ck_assert_uint_eq(n, (size_t)cap);
	expect_quiet(kq, 100);
	ck_assert_uint_eq(drain(p[0], n), n);
	kev_expect(kq, 1000, p[1], EVFILT_WRITE, 0, 0, cap, UD(2));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(pipe_write_eof_when_reader_closes)
{
	int kq = xkqueue(), p[2], cap;

	xpipe(p);
	cap = fcntl(p[1], F_GETPIPE_SZ);
	signal(SIGPIPE, SIG_IGN);
	kev_ok(kq, p[1], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, UD(3));
	ck_assert_int_eq(expect_write(kq, p[1], EV_CLEAR, 0, UD(3)), cap);
	expect_quiet(kq, 50);
	xwrite(p[1], 10);
	(void)kev_wait(kq, (struct kevent[1]){ 0 }, 1, 0);
	/* pipeclose(): pipeselwakeup computes data (free space) and sets
	 * EV_EOF; knlist_clear() then adds EV_ONESHOT: reported once, gone */
	close(p[0]);
	kev_expect(kq, 1000, p[1], EVFILT_WRITE, EV_CLEAR | EV_EOF | EV_ONESHOT, 0,
	    cap - 10, UD(3));
	expect_quiet(kq, 50);
	ck_assert_errno(kev_change(kq, p[1], EVFILT_WRITE, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(pipe_write_add_after_reader_closed_is_epipe)
{
	int kq = xkqueue(), p[2];
	struct kevent ch, ev;

	xpipe(p);
	close(p[0]);
	EV_SET(&ch, p[1], EVFILT_WRITE, EV_ADD, 0, 0, UD(4));
	memset(&ev, 0, sizeof ev);
	ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, &(struct timespec){ 2, 0 }), 1);
	ck_assert_uint_eq(ev.ident, (uintptr_t)p[1]);
	ck_assert_int_eq(ev.filter, EVFILT_WRITE);
	ck_assert_uint_eq(ev.flags, EV_ERROR);
	ck_assert_int_eq(ev.data, EPIPE);
	ck_assert_ptr_eq(ev.udata, UD(4));
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(fifo_write_data_and_eof)
{
	char path[64];
	int kq = xkqueue(), r, w, cap;

	snprintf(path, sizeof path, "/tmp/kqwrite-fifo.%d", (int)getpid());
	unlink(path);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	r = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	ck_assert_int_ge(r, 0);
	w = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	ck_assert_int_ge(w, 0);
	unlink(path);
	signal(SIGPIPE, SIG_IGN);
	cap = fcntl(w, F_GETPIPE_SZ);
	ck_assert_int_gt(cap, 0);
	xwrite(w, 10);
	kev_ok(kq, w, EVFILT_WRITE, EV_ADD, 0, 0, UD(5));
	kev_expect(kq, 1000, w, EVFILT_WRITE, 0, 0, cap - 10, UD(5));
	/* a FIFO's pipe outlives its reader: filt_pipewrite still computes
	 * the free space, EV_EOF is added, the knote stays (level) */
	close(r);
	kev_expect(kq, 1000, w, EVFILT_WRITE, EV_EOF, 0, cap - 10, UD(5));
	kev_expect(kq, 1000, w, EVFILT_WRITE, EV_EOF, 0, cap - 10, UD(5));
	close(w);
	close(kq);
}
END_TEST

/* ---------------------------------------------------------------- sockets */

START_TEST(unix_stream_write_space_accounting)
{
	int kq = xkqueue(), s[2];
	int64_t d0, d1, d2;

	xsocketpair(SOCK_STREAM, s);
	kev_ok(kq, s[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(6));
	d0 = expect_write(kq, s[0], 0, 0, UD(6));
	ck_assert_int_gt(d0, 0);
	ck_assert_int_le(d0, sndbuf(s[0]));
	xwrite(s[0], 1000);
	d1 = expect_write(kq, s[0], 0, 0, UD(6));
	ck_assert_int_le(d1, d0 - 1000);
	ck_assert_int_gt(d1, 0);
	xwrite(s[0], 1000);
	d2 = expect_write(kq, s[0], 0, 0, UD(6));
	ck_assert_int_le(d2, d1 - 1000);
	/* the peer takes it all: the space comes back exactly */
	ck_assert_uint_eq(drain(s[1], 2000), 2000);
	ck_assert_int_eq(expect_write(kq, s[0], 0, 0, UD(6)), d0);
	close(s[0]);
	close(s[1]);
	close(kq);
}
END_TEST

START_TEST(unix_stream_write_not_ready_while_full)
{
	int kq = xkqueue(), s[2];
	int64_t d0;
	size_t n;

	xsocketpair(SOCK_STREAM, s);
	kev_ok(kq, s[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(7));
	d0 = expect_write(kq, s[0], 0, 0, UD(7));
	n = fill(s[0]);
	ck_assert_uint_gt(n, 0);
	expect_quiet(kq, 100);
	ck_assert_uint_eq(drain(s[1], n), n);
	ck_assert_int_eq(expect_write(kq, s[0], 0, 0, UD(7)), d0);
	close(s[0]);
	close(s[1]);
	close(kq);
}
END_TEST

START_TEST(tcp_write_data_within_send_buffer)
{
	int kq = xkqueue(), c, s;
	int64_t d;

	tcp_pair(&c, &s);
	kev_ok(kq, c, EVFILT_WRITE, EV_ADD, 0, 0, UD(8));
	d = expect_write(kq, c, 0, 0, UD(8));
	ck_assert_int_gt(d, 0);
	ck_assert_int_le(d, sndbuf(c));
	close(c);
	close(s);
	close(kq);
}
END_TEST

START_TEST(tcp_write_not_ready_while_full)
{
	int kq = xkqueue(), c, s;
	size_t n;

	tcp_pair(&c, &s);
	kev_ok(kq, c, EVFILT_WRITE, EV_ADD, 0, 0, UD(9));
	ck_assert_int_gt(expect_write(kq, c, 0, 0, UD(9)), 0);
	n = fill(c);
	/* let loopback settle, then fill what the ack freed */
	usleep(50000);
	n += fill(c);
	expect_quiet(kq, 200);
	ck_assert_uint_eq(drain(s, n), n);
	ck_assert_int_gt(expect_write(kq, c, 0, 0, UD(9)), 0);
	close(c);
	close(s);
	close(kq);
}
END_TEST

START_TEST(write_lowat_waits_for_that_much_space)
{
	int kq = xkqueue(), s[2];
	int64_t d0;

	xsocketpair(SOCK_STREAM, s);
	kev_ok(kq, s[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(10));
	d0 = expect_write(kq, s[0], 0, 0, UD(10));
	/* more than can ever be free: never ready */
	kev_ok(kq, s[0], EVFILT_WRITE, EV_ADD, NOTE_LOWAT, d0 + 1, UD(11));
	expect_quiet(kq, 100);
	/* exactly what is free: ready */
	kev_ok(kq, s[0], EVFILT_WRITE, EV_ADD, NOTE_LOWAT, d0, UD(12));
	ck_assert_int_eq(expect_write(kq, s[0], 0, 0, UD(12)), d0);
	/* after a write the free space is below d0 again */
	xwrite(s[0], 1);
	expect_quiet(kq, 100);
	close(s[0]);
	close(s[1]);
	close(kq);
}
END_TEST

START_TEST(unix_stream_write_eof_on_peer_close)
{
	int kq = xkqueue(), s[2];

	xsocketpair(SOCK_STREAM, s);
	kev_ok(kq, s[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, UD(13));
	ck_assert_int_gt(expect_write(kq, s[0], EV_CLEAR, 0, UD(13)), 0);
	close(s[1]);
	/* CANTSENDMORE, no error pending: EV_EOF with fflags 0 */
	(void)expect_write(kq, s[0], EV_CLEAR | EV_EOF, 0, UD(13));
	close(s[0]);
	close(kq);
}
END_TEST

START_TEST(tcp_write_reset_reports_econnreset)
{
	int kq = xkqueue(), c, s;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	tcp_pair(&c, &s);
	kev_ok(kq, c, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, UD(14));
	ck_assert_int_gt(expect_write(kq, c, EV_CLEAR, 0, UD(14)), 0);
	ck_assert_int_eq(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
	close(s);
	(void)expect_write(kq, c, EV_CLEAR | EV_EOF, ECONNRESET, UD(14));
	close(c);
	close(kq);
}
END_TEST

START_TEST(tcp_connect_completion_makes_writable)
{
	struct sockaddr_in sin;
	int kq = xkqueue(), l = tcp_listener(8, &sin), c, a;

	c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(c, 0);
	/* not connected yet: PR_CONNREQUIRED and !SS_ISCONNECTED -> not ready */
	kev_ok(kq, c, EVFILT_WRITE, EV_ADD | EV_ONESHOT, 0, 0, UD(15));
	expect_quiet(kq, 50);
	if (connect(c, (struct sockaddr *)&sin, sizeof sin) != 0)
		ck_assert_int_eq(errno, EINPROGRESS);
	ck_assert_int_gt(expect_write(kq, c, EV_ONESHOT, 0, UD(15)), 0);
	a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(a, 0);
	close(a);
	close(c);
	close(l);
	close(kq);
}
END_TEST

START_TEST(tcp_connect_refused_reports_econnrefused)
{
	struct sockaddr_in sin;
	int kq = xkqueue(), l = tcp_listener(8, &sin), c, r, e;

	close(l);		/* nothing listens on that port now */
	c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(c, 0);
	r = connect(c, (struct sockaddr *)&sin, sizeof sin);
	e = errno;
	ck_assert_int_eq(r, -1);
	ck_assert(e == EINPROGRESS || e == ECONNREFUSED);
	kev_ok(kq, c, EVFILT_WRITE, EV_ADD | EV_ONESHOT, 0, 0, UD(16));
	/* a connect() that already failed consumed so_error */
	(void)expect_write(kq, c, EV_ONESHOT | EV_EOF,
	    e == EINPROGRESS ? ECONNREFUSED : 0, UD(16));
	close(c);
	close(kq);
}
END_TEST

/*
 * Event libraries decide whether a non-blocking connect() succeeded by
 * reading SO_ERROR once the socket is writable.  Linux clears SO_ERROR when
 * read, so the library's own read must not take it from them: the
 * application's getsockopt still gets ECONNREFUSED, exactly once.
 */
START_TEST(tcp_connect_refused_leaves_so_error_to_application)
{
	int kq = xkqueue(), c = tcp_refused_connect();

	kev_ok(kq, c, EVFILT_WRITE, EV_ADD | EV_ONESHOT, 0, 0, UD(20));
	(void)expect_write(kq, c, EV_ONESHOT | EV_EOF, ECONNREFUSED, UD(20));
	ck_assert_int_eq(sock_error(c), ECONNREFUSED);
	ck_assert_int_eq(sock_error(c), 0);
	close(c);
	close(kq);
}
END_TEST

/* An error the library read and kept for the application belongs to that
 * socket: whatever gets its number next (close, dup2) starts clean. */
START_TEST(kept_so_error_dies_with_the_fd_number)
{
	int kq = xkqueue(), c, n;

	c = tcp_refused_connect();
	kev_ok(kq, c, EVFILT_WRITE, EV_ADD | EV_ONESHOT, 0, 0, UD(21));
	(void)expect_write(kq, c, EV_ONESHOT | EV_EOF, ECONNREFUSED, UD(21));
	close(c);
	n = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(n, c);		/* lowest free number */
	ck_assert_int_eq(sock_error(n), 0);
	close(n);

	c = tcp_refused_connect();
	kev_ok(kq, c, EVFILT_WRITE, EV_ADD | EV_ONESHOT, 0, 0, UD(22));
	(void)expect_write(kq, c, EV_ONESHOT | EV_EOF, ECONNREFUSED, UD(22));
	n = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(n, 0);
	ck_assert_int_eq(dup2(n, c), c);
	ck_assert_int_eq(sock_error(c), 0);
	close(n);
	close(c);
	close(kq);
}
END_TEST

/*
 * A vfork() child runs in the parent's memory, where the kept error lives,
 * but its descriptor table is its own: what its getsockopt(SO_ERROR) asks
 * about may be another socket under the same number.  The kept error stays
 * the parent's.
 */
START_TEST(kept_so_error_is_not_taken_by_a_vfork_child)
{
	int kq = xkqueue(), c = tcp_refused_connect(), st;

	kev_ok(kq, c, EVFILT_WRITE, EV_ADD | EV_ONESHOT, 0, 0, UD(24));
	(void)expect_write(kq, c, EV_ONESHOT | EV_EOF, ECONNREFUSED, UD(24));
	pid_t pid = vfork();
	if (pid == 0) {
		int n = socket(AF_INET, SOCK_STREAM, 0);
		_exit(n >= 0 && dup2(n, c) == c ? sock_error(c) : 100);
	}
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	ck_assert_int_eq(sock_error(c), ECONNREFUSED);
	close(c);
	close(kq);
}
END_TEST

/* FreeBSD's filt_sowrite: so_error without CANTSENDMORE is "a temporary udp
 * error": writable, no EV_EOF, no fflags, and so_error stays. */
START_TEST(udp_pending_error_is_writable_without_eof)
{
	int kq = xkqueue(), u = udp_refused();
	int64_t d;

	kev_ok(kq, u, EVFILT_WRITE, EV_ADD, 0, 0, UD(23));
	d = expect_write(kq, u, 0, 0, UD(23));
	ck_assert_int_gt(d, 0);
	ck_assert_int_le(d, sndbuf(u));
	ck_assert_int_eq(sock_error(u), ECONNREFUSED);
	ck_assert_int_eq(sock_error(u), 0);
	d = expect_write(kq, u, 0, 0, UD(23));
	ck_assert_int_gt(d, 0);
	close(u);
	close(kq);
}
END_TEST

START_TEST(udp_is_writable)
{
	int kq = xkqueue(), u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	int64_t d;

	ck_assert_int_ge(u, 0);
	kev_ok(kq, u, EVFILT_WRITE, EV_ADD, 0, 0, UD(17));
	d = expect_write(kq, u, 0, 0, UD(17));
	ck_assert_int_gt(d, 0);
	ck_assert_int_le(d, sndbuf(u));
	close(u);
	close(kq);
}
END_TEST

/* ------------------------------------------------- files, devices, eventfd */

START_TEST(file_write_always_ready_with_data_zero)
{
	char path[] = "/tmp/kqwrite.XXXXXX";
	int kq = xkqueue(), f = mkstemp(path);

	ck_assert_int_ge(f, 0);
	unlink(path);
	kev_ok(kq, f, EVFILT_WRITE, EV_ADD, 0, 0, UD(18));
	kev_expect(kq, 1000, f, EVFILT_WRITE, 0, 0, 0, UD(18));
	xwrite(f, 100);
	kev_expect(kq, 1000, f, EVFILT_WRITE, 0, 0, 0, UD(18));
	/* oneshot on a file: one report, then gone */
	kev_ok(kq, f, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	kev_ok(kq, f, EVFILT_WRITE, EV_ADD | EV_ONESHOT, 0, 0, UD(19));
	kev_expect(kq, 1000, f, EVFILT_WRITE, EV_ONESHOT, 0, 0, UD(19));
	kev_expect_none(kq);
	close(f);
	close(kq);
}
END_TEST

START_TEST(dev_null_is_always_writable)
{
	int kq = xkqueue(), n = open("/dev/null", O_WRONLY | O_CLOEXEC), i;

	ck_assert_int_ge(n, 0);
	kev_ok(kq, n, EVFILT_WRITE, EV_ADD, 0, 0, UD(20));
	for (i = 0; i < 2; i++) {
		struct kevent ev;

		memset(&ev, 0, sizeof ev);
		ck_assert_int_eq(kev_wait(kq, &ev, 1, 1000), 1);
		ck_assert_uint_eq(ev.ident, (uintptr_t)n);
		ck_assert_int_eq(ev.filter, EVFILT_WRITE);
		ck_assert_uint_eq(ev.flags, 0);
		ck_assert_uint_eq(ev.fflags, 0);
		ck_assert_int_ge(ev.data, 0);
		ck_assert_ptr_eq(ev.udata, UD(20));
	}
	close(n);
	close(kq);
}
END_TEST

START_TEST(eventfd_write_data_is_headroom)
{
	int kq = xkqueue(), e = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint64_t v = 5;

	ck_assert_int_ge(e, 0);
	kev_ok(kq, e, EVFILT_WRITE, EV_ADD, 0, 0, UD(21));
	kev_expect(kq, 1000, e, EVFILT_WRITE, 0, 0,
	    (int64_t)(UINT64_MAX - 1), UD(21));
	ck_assert_int_eq(write(e, &v, sizeof v), sizeof v);
	kev_expect(kq, 1000, e, EVFILT_WRITE, 0, 0,
	    (int64_t)(UINT64_MAX - 1 - 5), UD(21));
	/* at the maximum count the eventfd is not writable */
	v = UINT64_MAX - 1 - 5;
	ck_assert_int_eq(write(e, &v, sizeof v), sizeof v);
	expect_quiet(kq, 100);
	ck_assert_int_eq(read(e, &v, sizeof v), sizeof v);
	kev_expect(kq, 1000, e, EVFILT_WRITE, 0, 0,
	    (int64_t)(UINT64_MAX - 1), UD(21));
	close(e);
	close(kq);
}
END_TEST

START_TEST(pty_is_writable)
{
	int kq = xkqueue(), m, s;

	m = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	ck_assert_int_ge(m, 0);
	ck_assert_int_eq(grantpt(m), 0);
	ck_assert_int_eq(unlockpt(m), 0);
	s = open(ptsname(m), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	ck_assert_int_ge(s, 0);
	kev_ok(kq, m, EVFILT_WRITE, EV_ADD | EV_ONESHOT, 0, 0, UD(22));
	ck_assert_int_gt(expect_write(kq, m, EV_ONESHOT, 0, UD(22)), 0);
	kev_ok(kq, s, EVFILT_WRITE, EV_ADD | EV_ONESHOT, 0, 0, UD(23));
	ck_assert_int_gt(expect_write(kq, s, EV_ONESHOT, 0, UD(23)), 0);
	close(s);
	close(m);
	close(kq);
}
END_TEST

static Suite *
write_suite(void)
{
	Suite *s = suite_create("write");
	TCase *tc;

	tc = tcase_create("pipes");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, pipe_write_data_is_free_space);
	tcase_add_test(tc, pipe_write_not_ready_while_full);
	tcase_add_test(tc, pipe_write_eof_when_reader_closes);
	tcase_add_test(tc, pipe_write_add_after_reader_closed_is_epipe);
	tcase_add_test(tc, fifo_write_data_and_eof);
	suite_add_tcase(s, tc);

	tc = tcase_create("sockets");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, unix_stream_write_space_accounting);
	tcase_add_test(tc, unix_stream_write_not_ready_while_full);
	tcase_add_test(tc, tcp_write_data_within_send_buffer);
	tcase_add_test(tc, tcp_write_not_ready_while_full);
	tcase_add_test(tc, write_lowat_waits_for_that_much_space);
	tcase_add_test(tc, unix_stream_write_eof_on_peer_close);
	tcase_add_test(tc, tcp_write_reset_reports_econnreset);
	tcase_add_test(tc, tcp_connect_completion_makes_writable);
	tcase_add_test(tc, tcp_connect_refused_reports_econnrefused);
	tcase_add_test(tc, tcp_connect_refused_leaves_so_error_to_application);
	tcase_add_test(tc, kept_so_error_dies_with_the_fd_number);
	tcase_add_test(tc, kept_so_error_is_not_taken_by_a_vfork_child);
	tcase_add_test(tc, udp_is_writable);
	tcase_add_test(tc, udp_pending_error_is_writable_without_eof);
	suite_add_tcase(s, tc);

	tc = tcase_create("other");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, file_write_always_ready_with_data_zero);
	tcase_add_test(tc, dev_null_is_always_writable);
	tcase_add_test(tc, eventfd_write_data_is_headroom);
	tcase_add_test(tc, pty_is_writable);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(write_suite)
