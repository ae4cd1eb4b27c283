/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_read.c: EVFILT_READ on every kind of descriptor, with FreeBSD 14's
 * data/flags/fflags:
 *   pipes/FIFOs (filt_piperead): data = bytes buffered, EV_EOF when the last
 *     writer is gone (a FIFO only after a writer was seen);
 *   stream sockets (filt_soread): data = bytes in the receive buffer, EV_EOF
 *     with so_error in fflags, NOTE_LOWAT with sdata as the low-water mark;
 *   listening sockets: data = completed connections waiting for accept();
 *   datagram sockets: FreeBSD counts every queued byte, Linux can only say
 *     the first datagram's size: asserted as first <= data <= total;
 *   eventfd (sys_eventfd.c filt_eventfdread): data = the counter;
 *   regular files (vfs filt_vfsread): data = size - offset, fires while
 *     non-zero (also negative), NOTE_FILE_POLL fires at EOF too;
 *   ttys/ptys: data = bytes readable;
 *   /dev/null (epoll refuses it): always readable.
 * Plus: READ and WRITE knotes on one fd are independent, and a watched fd
 * closed without EV_DELETE loses its knotes and is never confused with a
 * new file that gets its number.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "util.h"

/* Wait for READ on a level knote until it shows want and flags (the kernel
 * may still be moving bytes), then assert the exact event. */
static void
expect_read_settles(int kq, int fd, unsigned short flags, unsigned fflags,
    int64_t want, void *udata)
{
	struct kevent ev;
	int i;

	for (i = 0; i < 100; i++) {
		memset(&ev, 0, sizeof ev);
		if (kev_wait(kq, &ev, 1, 1000) != 1)
			break;
		ck_assert_int_le(ev.data, want);
		if (ev.data == want && ev.flags == flags)
			break;
		usleep(10000);
	}
	ck_assert_uint_eq(ev.ident, (uintptr_t)fd);
	ck_assert_int_eq(ev.filter, EVFILT_READ);
	ck_assert_uint_eq(ev.flags, flags);
	ck_assert_uint_eq(ev.fflags, fflags);
	ck_assert_int_eq(ev.data, want);
	ck_assert_ptr_eq(ev.udata, udata);
}

/* ------------------------------------------------------------ pipes, FIFOs */

START_TEST(pipe_read_data_is_bytes_buffered)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	expect_quiet(kq, 50);
	xwrite(p[1], 10);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 10, UD(1));
	xread(p[0], 4);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 6, UD(1));
	xwrite(p[1], 4000);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 4006, UD(1));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(pipe_read_eof_when_writer_closes)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(2));
	xwrite(p[1], 3);
	close(p[1]);
	/* EOF with the unread bytes still counted */
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_EOF, 0, 3, UD(2));
	xread(p[0], 3);
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_EOF, 0, 0, UD(2));
	close(p[0]);
	close(kq);
}
END_TEST

START_TEST(pipe_read_added_after_writer_closed_is_eof)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	close(p[1]);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_ONESHOT, 0, 0, UD(3));
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_ONESHOT | EV_EOF, 0, 0, UD(3));
	close(p[0]);
	close(kq);
}
END_TEST

START_TEST(fifo_eof_only_after_a_writer_was_seen)
{
	char path[64];
	int kq = xkqueue(), r, w;

	snprintf(path, sizeof path, "/tmp/kqread-fifo.%d", (int)getpid());
	unlink(path);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	r = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	ck_assert_int_ge(r, 0);
	kev_ok(kq, r, EVFILT_READ, EV_ADD, 0, 0, UD(4));
	/* never had a writer: not EOF, not readable */
	expect_quiet(kq, 100);
	w = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	ck_assert_int_ge(w, 0);
	unlink(path);
	xwrite(w, 4);
	kev_expect(kq, 1000, r, EVFILT_READ, 0, 0, 4, UD(4));
	close(w);
	kev_expect(kq, 1000, r, EVFILT_READ, EV_EOF, 0, 4, UD(4));
	close(r);
	close(kq);
}
END_TEST

/* ---------------------------------------------------------- stream sockets */

START_TEST(unix_stream_read_data_is_bytes_buffered)
{
	int kq = xkqueue(), s[2];

	xsocketpair(SOCK_STREAM, s);
	kev_ok(kq, s[0], EVFILT_READ, EV_ADD, 0, 0, UD(5));
	expect_quiet(kq, 50);
	xwrite(s[1], 7);
	kev_expect(kq, 1000, s[0], EVFILT_READ, 0, 0, 7, UD(5));
	xwrite(s[1], 3);
	kev_expect(kq, 1000, s[0], EVFILT_READ, 0, 0, 10, UD(5));
	xread(s[0], 10);
	kev_expect_none(kq);
	close(s[0]);
	close(s[1]);
	close(kq);
}
END_TEST

START_TEST(unix_stream_read_eof_on_peer_shutdown)
{
	int kq = xkqueue(), s[2];

	xsocketpair(SOCK_STREAM, s);
	kev_ok(kq, s[0], EVFILT_READ, EV_ADD, 0, 0, UD(6));
	xwrite(s[1], 3);
	ck_assert_int_eq(shutdown(s[1], SHUT_WR), 0);
	kev_expect(kq, 1000, s[0], EVFILT_READ, EV_EOF, 0, 3, UD(6));
	close(s[0]);
	close(s[1]);
	close(kq);
}
END_TEST

START_TEST(unix_stream_read_eof_on_peer_close)
{
	int kq = xkqueue(), s[2];

	xsocketpair(SOCK_STREAM, s);
	kev_ok(kq, s[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(7));
	close(s[1]);
	kev_expect(kq, 1000, s[0], EVFILT_READ, EV_CLEAR | EV_EOF, 0, 0, UD(7));
	close(s[0]);
	close(kq);
}
END_TEST

START_TEST(tcp_read_data_is_bytes_buffered)
{
	int kq = xkqueue(), c, s;

	tcp_pair(&c, &s);
	kev_ok(kq, s, EVFILT_READ, EV_ADD, 0, 0, UD(8));
	expect_quiet(kq, 50);
	xwrite(c, 100);
	expect_read_settles(kq, s, 0, 0, 100, UD(8));
	xread(s, 60);
	kev_expect(kq, 1000, s, EVFILT_READ, 0, 0, 40, UD(8));
	close(c);
	close(s);
	close(kq);
}
END_TEST

START_TEST(tcp_read_eof_on_peer_shutdown)
{
	int kq = xkqueue(), c, s;

	tcp_pair(&c, &s);
	kev_ok(kq, s, EVFILT_READ, EV_ADD, 0, 0, UD(9));
	xwrite(c, 5);
	ck_assert_int_eq(shutdown(c, SHUT_WR), 0);
	expect_read_settles(kq, s, EV_EOF, 0, 5, UD(9));
	close(c);
	close(s);
	close(kq);
}
END_TEST

START_TEST(tcp_read_reset_reports_econnreset)
{
	int kq = xkqueue(), c, s;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	tcp_pair(&c, &s);
	kev_ok(kq, c, EVFILT_READ, EV_ADD, 0, 0, UD(10));
	expect_quiet(kq, 20);
	/* linger 0: close() sends RST; so_error = ECONNRESET, CANTRCVMORE */
	ck_assert_int_eq(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
	close(s);
	kev_expect(kq, 2000, c, EVFILT_READ, EV_EOF, ECONNRESET, 0, UD(10));
	close(c);
	close(kq);
}
END_TEST

START_TEST(read_lowat_waits_for_that_many_bytes)
{
	int kq = xkqueue(), s[2], c, t;

	xsocketpair(SOCK_STREAM, s);
	kev_ok(kq, s[0], EVFILT_READ, EV_ADD, NOTE_LOWAT, 10, UD(11));
	xwrite(s[1], 5);
	expect_quiet(kq, 100);
	xwrite(s[1], 4);
	expect_quiet(kq, 100);
	xwrite(s[1], 1);
	kev_expect(kq, 1000, s[0], EVFILT_READ, 0, 0, 10, UD(11));
	/* EOF overrides the low-water mark */
	xread(s[0], 8);
	ck_assert_int_eq(shutdown(s[1], SHUT_WR), 0);
	kev_expect(kq, 1000, s[0], EVFILT_READ, EV_EOF, 0, 2, UD(11));
	close(s[0]);
	close(s[1]);

	tcp_pair(&c, &t);
	kev_ok(kq, t, EVFILT_READ, EV_ADD, NOTE_LOWAT, 100, UD(12));
	xwrite(c, 60);
	expect_quiet(kq, 100);
	xwrite(c, 40);
	expect_read_settles(kq, t, 0, 0, 100, UD(12));
	close(c);
	close(t);
	close(kq);
}
END_TEST

/* ------------------------------------------------------- listening sockets */

START_TEST(tcp_listen_data_is_pending_connections)
{
	struct sockaddr_in sin;
	int kq = xkqueue(), l = tcp_listener(8, &sin), c[3], a, i;

	set_nonblock(l);
	kev_ok(kq, l, EVFILT_READ, EV_ADD, 0, 0, UD(13));
	expect_quiet(kq, 50);
	for (i = 0; i < 3; i++)
		c[i] = tcp_connect(&sin);
	/* handshakes complete in softirq context: let the count settle */
	expect_read_settles(kq, l, 0, 0, 3, UD(13));
	a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(a, 0);
	kev_expect(kq, 1000, l, EVFILT_READ, 0, 0, 2, UD(13));
	close(a);
	for (i = 0; i < 2; i++)
		close(accept4(l, NULL, NULL, SOCK_CLOEXEC));
	kev_expect_none(kq);
	for (i = 0; i < 3; i++)
		close(c[i]);
	close(l);
	close(kq);
}
END_TEST

START_TEST(unix_listen_data_is_pending_connections)
{
	struct sockaddr_un sun;
	socklen_t len;
	int kq = xkqueue(), l, c[3], i;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	/* abstract name: nothing to clean up */
	len = offsetof(struct sockaddr_un, sun_path) + 1 +
	    snprintf(sun.sun_path + 1, sizeof sun.sun_path - 1, "kqread-%d",
	    (int)getpid());
	l = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(l, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&sun, len), 0);
	ck_assert_int_eq(listen(l, 8), 0);
	kev_ok(kq, l, EVFILT_READ, EV_ADD, 0, 0, UD(14));
	expect_quiet(kq, 50);
	for (i = 0; i < 3; i++) {
		c[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ck_assert_int_eq(connect(c[i], (struct sockaddr *)&sun, len), 0);
	}
	kev_expect(kq, 1000, l, EVFILT_READ, 0, 0, 3, UD(14));
	close(accept4(l, NULL, NULL, SOCK_CLOEXEC));
	kev_expect(kq, 1000, l, EVFILT_READ, 0, 0, 2, UD(14));
	for (i = 0; i < 3; i++)
		close(c[i]);
	close(l);
	close(kq);
}
END_TEST

/*
 * HTTP client shape: the request is written and the write side shut down;
 * the server answers and closes.  Linux then polls the client as
 * IN|RDHUP|HUP (both directions shut), which must not be mistaken for a
 * socket that was never connected: FreeBSD has CANTRCVMORE, so EV_EOF.
 */
static void
half_close_client(int *c, int *s)
{
	tcp_pair(c, s);
	xwrite(*c, 10);
	ck_assert_int_eq(shutdown(*c, SHUT_WR), 0);
	ck_assert_uint_eq(drain(*s, 10), 10);
}

START_TEST(tcp_read_eof_after_local_half_close)
{
	int kq = xkqueue(), c, s;

	half_close_client(&c, &s);
	kev_ok(kq, c, EVFILT_READ, EV_ADD, 0, 0, UD(30));
	expect_quiet(kq, 50);
	xwrite(s, 5);
	close(s);
	expect_read_settles(kq, c, EV_EOF, 0, 5, UD(30));
	xread(c, 5);
	/* everything read: still EOF, level, with data 0 */
	kev_expect(kq, 1000, c, EVFILT_READ, EV_EOF, 0, 0, UD(30));
	kev_expect(kq, 1000, c, EVFILT_READ, EV_EOF, 0, 0, UD(30));
	close(c);
	close(kq);
}
END_TEST

START_TEST(tcp_read_clear_eof_after_local_half_close)
{
	int kq = xkqueue(), c, s;

	half_close_client(&c, &s);
	kev_ok(kq, c, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(31));
	expect_quiet(kq, 50);
	close(s);
	kev_expect(kq, 2000, c, EVFILT_READ, EV_CLEAR | EV_EOF, 0, 0, UD(31));
	expect_quiet(kq, 50);
	close(c);
	close(kq);
}
END_TEST

/*
 * A refused non-blocking connect: FreeBSD sets CANTRCVMORE|CANTSENDMORE and
 * so_error, so READ and WRITE both report EV_EOF with ECONNREFUSED, and the
 * error is still there for the application's getsockopt(SO_ERROR).
 */
START_TEST(tcp_connect_refused_read_and_write_both_report_econnrefused)
{
	int kq = xkqueue(), c = tcp_refused_connect(), n, i, seen = 0;
	struct kevent ch[2], ev[2];

	EV_SET(&ch[0], c, EVFILT_READ, EV_ADD, 0, 0, UD(32));
	EV_SET(&ch[1], c, EVFILT_WRITE, EV_ADD, 0, 0, UD(33));
	ck_assert_int_eq(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	for (int round = 0; round < 2; round++) {
		memset(ev, 0, sizeof ev);
		n = kevent(kq, NULL, 0, ev, 2, &(struct timespec){ 2, 0 });
		ck_assert_int_eq(n, 2);
		for (i = 0; i < n; i++) {
			int rd = ev[i].filter == EVFILT_READ;
			ck_assert_uint_eq(ev[i].ident, (uintptr_t)c);
			ck_assert(rd || ev[i].filter == EVFILT_WRITE);
			ck_assert_uint_eq(ev[i].flags, EV_EOF);
			ck_assert_uint_eq(ev[i].fflags, ECONNREFUSED);
			if (rd)
				ck_assert_int_eq(ev[i].data, 0);
			ck_assert_ptr_eq(ev[i].udata, rd ? UD(32) : UD(33));
			seen |= rd ? 1 : 2;
		}
		ck_assert_int_eq(seen, 3);
	}
	ck_assert_int_eq(sock_error(c), ECONNREFUSED);
	/* read by the application: gone, as on FreeBSD */
	ck_assert_int_eq(sock_error(c), 0);
	kev_ok(kq, c, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	kev_expect(kq, 1000, c, EVFILT_READ, EV_EOF, 0, 0, UD(32));
	close(c);
	close(kq);
}
END_TEST

/* ------------------------------------------------------- datagram sockets */

/*
 * A connected UDP socket whose datagram was refused (ICMP port
 * unreachable): FreeBSD's filt_soread reports so_error as "a temporary udp
 * error": ready, no EV_EOF, data = bytes queued, and so_error stays for the
 * application's recv() or getsockopt().  Linux polls it as POLLERR until
 * then, so a knote that called it "not ready" made kevent() spin.
 */
START_TEST(udp_pending_error_is_readable_without_eof)
{
	int kq = xkqueue(), u = udp_refused();
	char b;

	kev_ok(kq, u, EVFILT_READ, EV_ADD, 0, 0, UD(34));
	kev_expect(kq, 1000, u, EVFILT_READ, 0, 0, 0, UD(34));
	/* level: reported while the error is pending */
	kev_expect(kq, 1000, u, EVFILT_READ, 0, 0, 0, UD(34));
	/* the kernel still has it: the next recv() returns it */
	ck_assert_errno(recv(u, &b, 1, 0), ECONNREFUSED);
	expect_quiet(kq, 50);
	close(u);
	close(kq);
}
END_TEST

static void
dgram_case(int rx, int tx, const struct sockaddr *to, socklen_t tolen)
{
	char buf[200];
	struct kevent ev;
	int kq = xkqueue();

	memset(buf, 'd', sizeof buf);
	kev_ok(kq, rx, EVFILT_READ, EV_ADD, 0, 0, UD(15));
	expect_quiet(kq, 50);
	ck_assert_int_eq(sendto(tx, buf, 100, 0, to, tolen), 100);
	/* one datagram: FreeBSD and any honest count agree */
	kev_expect(kq, 1000, rx, EVFILT_READ, 0, 0, 100, UD(15));
	ck_assert_int_eq(sendto(tx, buf, 50, 0, to, tolen), 50);
	/* FreeBSD: sbavail - sb_ctl = 150 (all payload); Linux FIONREAD: 100
	 * (the next datagram).  Both let the reader size its next read. */
	memset(&ev, 0, sizeof ev);
	ck_assert_int_eq(kev_wait(kq, &ev, 1, 1000), 1);
	ck_assert_uint_eq(ev.ident, (uintptr_t)rx);
	ck_assert_uint_eq(ev.flags, 0);
	ck_assert_uint_eq(ev.fflags, 0);
	ck_assert_int_ge(ev.data, 100);
	ck_assert_int_le(ev.data, 150);
	ck_assert_ptr_eq(ev.udata, UD(15));
	ck_assert_int_eq(recv(rx, buf, sizeof buf, 0), 100);
	kev_expect(kq, 1000, rx, EVFILT_READ, 0, 0, 50, UD(15));
	ck_assert_int_eq(recv(rx, buf, sizeof buf, 0), 50);
	kev_expect_none(kq);
	close(kq);
}

START_TEST(udp_read_data_counts_datagram_bytes)
{
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	int rx = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	int tx = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);

	ck_assert_int_ge(rx, 0);
	ck_assert_int_ge(tx, 0);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(rx, (struct sockaddr *)&a, sizeof a), 0);
	ck_assert_int_eq(getsockname(rx, (struct sockaddr *)&a, &len), 0);
	dgram_case(rx, tx, (struct sockaddr *)&a, sizeof a);
	close(rx);
	close(tx);
}
END_TEST

START_TEST(unix_dgram_read_data_counts_datagram_bytes)
{
	int s[2];

	xsocketpair(SOCK_DGRAM, s);
	dgram_case(s[0], s[1], NULL, 0);
	close(s[0]);
	close(s[1]);
}
END_TEST

/* ----------------------------------------------------------- ttys, eventfd */

START_TEST(pty_read_data_is_bytes_readable)
{
	int kq = xkqueue(), m, s;
	struct termios tio;

	m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	ck_assert_int_ge(m, 0);
	ck_assert_int_eq(grantpt(m), 0);
	ck_assert_int_eq(unlockpt(m), 0);
	s = open(ptsname(m), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	ck_assert_int_ge(s, 0);
	set_nonblock(m);
	/* raw: no echo, no line discipline, so bytes in == bytes readable */
	ck_assert_int_eq(tcgetattr(s, &tio), 0);
	cfmakeraw(&tio);
	ck_assert_int_eq(tcsetattr(s, TCSANOW, &tio), 0);

	kev_ok(kq, s, EVFILT_READ, EV_ADD, 0, 0, UD(16));
	kev_ok(kq, m, EVFILT_READ, EV_ADD, 0, 0, UD(17));
	expect_quiet(kq, 50);
	xwrite(m, 5);
	expect_read_settles(kq, s, 0, 0, 5, UD(16));
	xread(s, 5);
	expect_quiet(kq, 50);
	xwrite(s, 3);
	expect_read_settles(kq, m, 0, 0, 3, UD(17));
	xread(m, 3);
	expect_quiet(kq, 50);
	close(s);
	close(m);
	close(kq);
}
END_TEST

START_TEST(eventfd_read_data_is_counter)
{
	int kq = xkqueue(), e = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint64_t v;

	ck_assert_int_ge(e, 0);
	kev_ok(kq, e, EVFILT_READ, EV_ADD, 0, 0, UD(18));
	expect_quiet(kq, 50);
	v = 7;
	ck_assert_int_eq(write(e, &v, sizeof v), sizeof v);
	/* sys_eventfd.c filt_eventfdread: kn_data = efd_count */
	kev_expect(kq, 1000, e, EVFILT_READ, 0, 0, 7, UD(18));
	v = 3;
	ck_assert_int_eq(write(e, &v, sizeof v), sizeof v);
	kev_expect(kq, 1000, e, EVFILT_READ, 0, 0, 10, UD(18));
	ck_assert_int_eq(read(e, &v, sizeof v), sizeof v);
	ck_assert_uint_eq(v, 10);
	kev_expect_none(kq);
	close(e);
	close(kq);
}
END_TEST

/* ---------------------------------------------------------- regular files */

START_TEST(file_read_data_is_bytes_to_eof)
{
	int kq = xkqueue(), f = make_regular_file(100);

	kev_ok(kq, f, EVFILT_READ, EV_ADD, 0, 0, UD(19));
	kev_expect(kq, 1000, f, EVFILT_READ, 0, 0, 100, UD(19));
	/* level: stays ready, follows the offset */
	kev_expect(kq, 0, f, EVFILT_READ, 0, 0, 100, UD(19));
	ck_assert_int_eq(lseek(f, 40, SEEK_SET), 40);
	kev_expect(kq, 0, f, EVFILT_READ, 0, 0, 60, UD(19));
	xread(f, 60);
	/* at EOF: nothing to read, no event */
	expect_quiet(kq, 50);
	close(f);
	close(kq);
}
END_TEST

START_TEST(file_read_rearms_when_file_grows)
{
	int kq = xkqueue(), f = make_regular_file(20), w;
	char path[64];

	ck_assert_int_eq(lseek(f, 0, SEEK_END), 20);
	kev_ok(kq, f, EVFILT_READ, EV_ADD, 0, 0, UD(20));
	expect_quiet(kq, 50);
	/* grown through another open file description */
	snprintf(path, sizeof path, "/proc/self/fd/%d", f);
	w = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	ck_assert_int_ge(w, 0);
	xwrite(w, 10);
	kev_expect(kq, 1000, f, EVFILT_READ, 0, 0, 10, UD(20));
	xread(f, 10);
	expect_quiet(kq, 50);
	/* EV_CLEAR: one report per growth */
	kev_ok(kq, f, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	kev_ok(kq, f, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(21));
	expect_quiet(kq, 50);
	xwrite(w, 7);
	kev_expect(kq, 1000, f, EVFILT_READ, EV_CLEAR, 0, 7, UD(21));
	expect_quiet(kq, 50);
	xwrite(w, 5);
	kev_expect(kq, 1000, f, EVFILT_READ, EV_CLEAR, 0, 12, UD(21));
	close(w);
	close(f);
	close(kq);
}
END_TEST

START_TEST(file_read_note_file_poll_fires_at_eof)
{
	int kq = xkqueue(), f = make_regular_file(8);

	ck_assert_int_eq(lseek(f, 0, SEEK_END), 8);
	kev_ok(kq, f, EVFILT_READ, EV_ADD, NOTE_FILE_POLL, 0, UD(22));
	kev_expect(kq, 1000, f, EVFILT_READ, 0, 0, 0, UD(22));
	ck_assert_int_eq(lseek(f, 3, SEEK_SET), 3);
	kev_expect(kq, 1000, f, EVFILT_READ, 0, 0, 5, UD(22));
	close(f);
	close(kq);
}
END_TEST

START_TEST(file_read_offset_past_eof_reports_negative_data)
{
	int kq = xkqueue(), f = make_regular_file(100);

	/* filt_vfsread: data = size - offset, ready while != 0 */
	ck_assert_int_eq(lseek(f, 150, SEEK_SET), 150);
	kev_ok(kq, f, EVFILT_READ, EV_ADD, 0, 0, UD(23));
	kev_expect(kq, 1000, f, EVFILT_READ, 0, 0, -50, UD(23));
	close(f);
	close(kq);
}
END_TEST

/* One inotify instance serves every kqueue: the 129th kqueue's EV_ADD on a
 * regular file is no EMFILE, and every kqueue hears of the growth. */
START_TEST(file_read_on_more_kqueues_than_inotify_instances)
{
	int n = more_kqueues_than_inotify_instances(), f, w, i, *kq;
	char path[64];

	if (n == 0)
		return;		/* cannot make that many here */
	ck_assert_ptr_nonnull(kq = calloc((size_t)n, sizeof *kq));
	f = make_regular_file(10);
	ck_assert_int_eq(lseek(f, 0, SEEK_END), 10);
	for (i = 0; i < n; i++) {
		kq[i] = xkqueue();
		ck_assert_msg(kev_change(kq[i], f, EVFILT_READ, EV_ADD | EV_CLEAR,
		    0, 0, UD(i)) == 0, "kqueue %d of %d: EV_ADD: %s", i + 1, n,
		    strerror(errno));
	}
	for (i = 0; i < n; i++)
		kev_expect_none(kq[i]);
	snprintf(path, sizeof path, "/proc/self/fd/%d", f);
	ck_assert_int_ge(w = open(path, O_WRONLY | O_APPEND | O_CLOEXEC), 0);
	xwrite(w, 5);
	for (i = 0; i < n; i++) {
		kev_expect(kq[i], 2000, f, EVFILT_READ, EV_CLEAR, 0, 5, UD(i));
		kev_expect_none(kq[i]);
	}
	for (i = 0; i < n; i++)
		close(kq[i]);
	free(kq);
	close(w);
	close(f);
}
END_TEST

/* Two kqueues on one file share the process's inotify watch of it: both
 * hear of growth, and either leaving keeps the other's working. */
START_TEST(file_read_two_kqueues_share_the_watch)
{
	int kq1 = xkqueue(), kq2 = xkqueue(), f = make_regular_file(0), w;
	char path[64];

	snprintf(path, sizeof path, "/proc/self/fd/%d", f);
	ck_assert_int_ge(w = open(path, O_WRONLY | O_APPEND | O_CLOEXEC), 0);
	kev_ok(kq1, f, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(1));
	kev_ok(kq2, f, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(2));
	expect_quiet(kq1, 50);
	expect_quiet(kq2, 50);
	xwrite(w, 3);
	kev_expect(kq1, 1000, f, EVFILT_READ, EV_CLEAR, 0, 3, UD(1));
	kev_expect(kq2, 1000, f, EVFILT_READ, EV_CLEAR, 0, 3, UD(2));
	kev_ok(kq1, f, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	xwrite(w, 2);
	kev_expect(kq2, 1000, f, EVFILT_READ, EV_CLEAR, 0, 5, UD(2));
	expect_quiet(kq1, 50);
	/* back on kq1, off kq2 */
	xread(f, 5);
	kev_ok(kq1, f, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(3));
	kev_ok(kq2, f, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	expect_quiet(kq1, 50);
	xwrite(w, 4);
	kev_expect(kq1, 1000, f, EVFILT_READ, EV_CLEAR, 0, 4, UD(3));
	expect_quiet(kq2, 50);
	close(w);
	close(f);
	close(kq1);
	close(kq2);
}
END_TEST

START_TEST(dev_null_is_always_readable)
{
	int kq = xkqueue(), n = open("/dev/null", O_RDWR | O_CLOEXEC);
	struct kevent ev;
	int i;

	ck_assert_int_ge(n, 0);
	kev_ok(kq, n, EVFILT_READ, EV_ADD, 0, 0, UD(24));
	for (i = 0; i < 2; i++) {
		memset(&ev, 0, sizeof ev);
		ck_assert_int_eq(kev_wait(kq, &ev, 1, 1000), 1);
		ck_assert_uint_eq(ev.ident, (uintptr_t)n);
		ck_assert_int_eq(ev.filter, EVFILT_READ);
		/* nothing to read but never blocks; EV_EOF is allowed */
		ck_assert_uint_eq(ev.flags & ~EV_EOF, 0);
		ck_assert_uint_eq(ev.fflags, 0);
		ck_assert_int_eq(ev.data, 0);
		ck_assert_ptr_eq(ev.udata, UD(24));
	}
	kev_ok(kq, n, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	kev_expect_none(kq);
	close(n);
	close(kq);
}
END_TEST

/* ---------------------------------------------------- independence, close */

START_TEST(read_and_write_knotes_are_independent)
{
	int kq = xkqueue(), s[2], i;
	struct kevent ev[2];

	xsocketpair(SOCK_STREAM, s);
	kev_ok(kq, s[0], EVFILT_READ, EV_ADD | EV_ONESHOT, 0, 0, UD(1));
	kev_ok(kq, s[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
	xwrite(s[1], 4);
	memset(ev, 0, sizeof ev);
	ck_assert_int_eq(kev_wait(kq, ev, 2, 1000), 2);
	if (ev[0].filter != EVFILT_READ) {
		struct kevent t = ev[0];
		ev[0] = ev[1];
		ev[1] = t;
	}
	ck_assert_int_eq(ev[0].filter, EVFILT_READ);
	ck_assert_uint_eq(ev[0].flags, EV_ONESHOT);
	ck_assert_int_eq(ev[0].data, 4);
	ck_assert_ptr_eq(ev[0].udata, UD(1));
	ck_assert_int_eq(ev[1].filter, EVFILT_WRITE);
	ck_assert_uint_eq(ev[1].flags, 0);
	ck_assert_int_gt(ev[1].data, 0);
	ck_assert_ptr_eq(ev[1].udata, UD(2));
	/* the oneshot READ is gone; the level WRITE keeps reporting */
	for (i = 0; i < 3; i++) {
		memset(ev, 0, sizeof ev);
		ck_assert_int_eq(kev_wait(kq, ev, 2, 1000), 1);
		ck_assert_int_eq(ev[0].filter, EVFILT_WRITE);
		ck_assert_ptr_eq(ev[0].udata, UD(2));
	}
	ck_assert_errno(kev_change(kq, s[0], EVFILT_READ, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	/* deleting WRITE leaves a new READ alone */
	kev_ok(kq, s[0], EVFILT_READ, EV_ADD, 0, 0, UD(3));
	kev_ok(kq, s[0], EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	kev_expect(kq, 1000, s[0], EVFILT_READ, 0, 0, 4, UD(3));
	kev_expect(kq, 1000, s[0], EVFILT_READ, 0, 0, 4, UD(3));
	close(s[0]);
	close(s[1]);
	close(kq);
}
END_TEST

/*
 * A knote deleted and added again in one changelist is a new knote, and a
 * new knote on a readable file reports at once (FreeBSD's kqueue_register
 * runs f_event after attach), also when the fd's epoll registration is
 * edge-triggered (EV_CLEAR, NOTE_LOWAT) and stays as it was: epoll makes no
 * new edge for data that was there before.  A level knote on such a
 * registration keeps reporting.
 */
START_TEST(readd_in_one_changelist_reports_data_already_there)
{
	int kq = xkqueue(), p[2], q[2];
	struct kevent ch[3];

	xpipe(p);
	xpipe(q);
	xwrite(p[1], 3);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(1));
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_CLEAR, 0, 3, UD(1));
	kev_expect_none(kq);
	/* the next change re-adds it */
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[1], p[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(2));
	ck_assert_int_eq(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_CLEAR, 0, 3, UD(2));
	kev_expect_none(kq);
	/* another change in between */
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[1], q[0], EVFILT_READ, EV_ADD, 0, 0, UD(9));
	EV_SET(&ch[2], p[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(3));
	ck_assert_int_eq(kevent(kq, ch, 3, NULL, 0, NULL), 0);
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_CLEAR, 0, 3, UD(3));
	kev_expect_none(kq);
	/* level, below a low-water mark: the registration stays edge-triggered */
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[1], p[0], EVFILT_READ, EV_ADD, NOTE_LOWAT, 2, UD(4));
	ck_assert_int_eq(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 3, UD(4));
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 3, UD(4));
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	close(kq);
}
END_TEST

START_TEST(closed_fd_knote_is_gone_and_number_reuse_is_clean)
{
	int kq = xkqueue(), p[2], q[2], num, d;

	xpipe(p);
	num = p[0];
	kev_ok(kq, num, EVFILT_READ, EV_ADD, 0, 0, UD(0xa1d));
	xwrite(p[1], 3);
	ck_assert_int_eq(poll(&(struct pollfd){ .fd = kq, .events = POLLIN }, 1,
	    1000), 1);
	/* closed with an event pending and no EV_DELETE */
	close(num);
	kev_expect_none(kq);
	ck_assert_errno(kev_change(kq, num, EVFILT_READ, EV_DELETE, 0, 0, NULL),
	    EBADF);
	/* a new file gets the same number */
	xpipe(q);
	if (q[0] != num) {
		d = fcntl(q[0], F_DUPFD_CLOEXEC, num);
		ck_assert_int_eq(d, num);
		close(q[0]);
		q[0] = d;
	}
	ck_assert_int_eq(q[0], num);
	ck_assert_errno(kev_change(kq, num, EVFILT_READ, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	expect_quiet(kq, 50);
	kev_ok(kq, num, EVFILT_READ, EV_ADD, 0, 0, UD(0xb2e));
	expect_quiet(kq, 50);
	xwrite(q[1], 6);
	kev_expect(kq, 1000, num, EVFILT_READ, 0, 0, 6, UD(0xb2e));
	xread(q[0], 6);
	kev_expect_none(kq);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	close(kq);
}
END_TEST

START_TEST(closed_fd_knote_is_gone_while_dup_keeps_file_open)
{
	int kq = xkqueue(), p[2], d;

	xpipe(p);
	d = dup(p[0]);
	ck_assert_int_ge(d, 0);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	close(p[0]);
	xwrite(p[1], 2);
	expect_quiet(kq, 100);
	/* the surviving descriptor can be watched on its own */
	kev_ok(kq, d, EVFILT_READ, EV_ADD, 0, 0, UD(2));
	kev_expect(kq, 1000, d, EVFILT_READ, 0, 0, 2, UD(2));
	close(d);
	close(p[1]);
	close(kq);
}
END_TEST

static Suite *
read_suite(void)
{
	Suite *s = suite_create("read");
	TCase *tc;

	tc = tcase_create("pipes");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, pipe_read_data_is_bytes_buffered);
	tcase_add_test(tc, pipe_read_eof_when_writer_closes);
	tcase_add_test(tc, pipe_read_added_after_writer_closed_is_eof);
	tcase_add_test(tc, fifo_eof_only_after_a_writer_was_seen);
	suite_add_tcase(s, tc);

	tc = tcase_create("sockets");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, unix_stream_read_data_is_bytes_buffered);
	tcase_add_test(tc, unix_stream_read_eof_on_peer_shutdown);
	tcase_add_test(tc, unix_stream_read_eof_on_peer_close);
	tcase_add_test(tc, tcp_read_data_is_bytes_buffered);
	tcase_add_test(tc, tcp_read_eof_on_peer_shutdown);
	tcase_add_test(tc, tcp_read_reset_reports_econnreset);
	tcase_add_test(tc, tcp_read_eof_after_local_half_close);
	tcase_add_test(tc, tcp_read_clear_eof_after_local_half_close);
	tcase_add_test(tc, tcp_connect_refused_read_and_write_both_report_econnrefused);
	tcase_add_test(tc, read_lowat_waits_for_that_many_bytes);
	tcase_add_test(tc, tcp_listen_data_is_pending_connections);
	tcase_add_test(tc, unix_listen_data_is_pending_connections);
	tcase_add_test(tc, udp_read_data_counts_datagram_bytes);
	tcase_add_test(tc, unix_dgram_read_data_counts_datagram_bytes);
	tcase_add_test(tc, udp_pending_error_is_readable_without_eof);
	suite_add_tcase(s, tc);

	tc = tcase_create("devices");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, pty_read_data_is_bytes_readable);
	tcase_add_test(tc, eventfd_read_data_is_counter);
	tcase_add_test(tc, dev_null_is_always_readable);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, file_read_data_is_bytes_to_eof);
	tcase_add_test(tc, file_read_rearms_when_file_grows);
	tcase_add_test(tc, file_read_note_file_poll_fires_at_eof);
	tcase_add_test(tc, file_read_offset_past_eof_reports_negative_data);
	tcase_add_test(tc, file_read_on_more_kqueues_than_inotify_instances);
	tcase_add_test(tc, file_read_two_kqueues_share_the_watch);
	suite_add_tcase(s, tc);

	tc = tcase_create("fd_lifetime");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, read_and_write_knotes_are_independent);
	tcase_add_test(tc, readd_in_one_changelist_reports_data_already_there);
	tcase_add_test(tc, closed_fd_knote_is_gone_and_number_reuse_is_clean);
	tcase_add_test(tc, closed_fd_knote_is_gone_while_dup_keeps_file_open);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(read_suite)
