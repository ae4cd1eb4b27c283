/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Close tracking: every way an fd can be closed or replaced removes its
 * knotes (with or without EV_FREEWATCH), also while the file itself stays
 * open elsewhere (a dup, a child), from any thread, and from a signal
 * handler; a new file that gets the number is never confused with the old
 * one; and an unwatched close stays as cheap as libc's.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

/* ------------------------------------------------------------ helpers */

/*
 * The knote (ident, filter) does not exist any more.  For a closed number
 * EV_DELETE answers EBADF before looking (as on FreeBSD), so put a file at
 * the number first - with fcntl, which the library does not interpose, so
 * this cannot clean up a stale knote by itself.
 */
static void
expect_gone(int kq, int fd, short filter)
{
	int tmp = -1;

	if (fcntl(fd, F_GETFD) == -1) {
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
		ck_assert_int_ge(nul, 0);
		if (nul == fd) {
			tmp = nul;
		} else {
			tmp = fcntl(nul, F_DUPFD_CLOEXEC, fd);
			syscall(SYS_close, nul);
		}
		ck_assert_int_eq(tmp, fd);
	}
	ck_assert_errno(kev_change(kq, fd, filter, EV_DELETE, 0, 0, NULL), ENOENT);
	if (tmp != -1)
		close(tmp);
}

/* Writes to a pipe whose read end is gone must fail, not kill the test. */
__attribute__((constructor)) static void
ignore_sigpipe(void)
{
	signal(SIGPIPE, SIG_IGN);
}

/* A second descriptor for fd's open file, out of the way of number reuse:
 * the file stays open after fd is closed, so epoll alone would go on
 * reporting it. */
static int
keep_open(int fd)
{
	int d = fcntl(fd, F_DUPFD_CLOEXEC, 100);
	ck_assert_int_ge(d, 100);
	return d;
}

static int udata_tag[4];
#define U(i) ((void *)&udata_tag[i])

/* --------------------------------------------------- close and reuse */

START_TEST(close_removes_knote_and_reused_number_is_new_file)
{
	int kq = xkqueue(), p[2], q[2];

	xpipe2(p, O_NONBLOCK);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, U(0));
	int old = p[0];
	close(p[0]);
	expect_gone(kq, old, EVFILT_READ);
	expect_quiet(kq, 20);

	/* The lowest free number is the one just closed. */
	xpipe2(q, O_NONBLOCK);
	ck_assert_int_eq(q[0], old);
	kev_ok(kq, q[0], EVFILT_READ, EV_ADD, 0, 0, U(1));
	expect_quiet(kq, 20);		/* the old pipe's byte is not ours */
	ck_assert_int_eq(write(q[1], "yz", 2), 2);
	kev_expect(kq, 2000, old, EVFILT_READ, 0, 0, 2, U(1));
	close(p[1]);
	close(q[0]);
	close(q[1]);
	close(kq);
}
END_TEST

START_TEST(add_on_reused_number_before_any_scan)
{
	/* close, reuse and EV_ADD in a row, no kevent() in between: the new
	 * knote belongs to the new file and the old one's reference comes
	 * back (the close may only be noticed by that EV_ADD). */
	static struct obj o[2];
	int kq = xkqueue(), p[2], q[2];
	struct kevent ch, ev[4];

	xpipe2(p, O_NONBLOCK);
	int keep = keep_open(p[0]);
	ck_assert_int_eq(kev_change(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, &o[0]), 0);
	obj_ref(&o[0]);
	int old = p[0];
	close(p[0]);
	xpipe2(q, O_NONBLOCK);
	ck_assert_int_eq(q[0], old);
	EV_SET(&ch, q[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, &o[1]);
	int n = kevent(kq, &ch, 1, ev, 4, &(struct timespec){ 0, 0 });
	ck_assert_int_ge(n, 0);
	obj_ref(&o[1]);
	if (n == 0)
		n = kev_wait(kq, ev, 4, 2000);
	ck_assert_int_eq(n, 1);
	ck_assert_uint_eq(ev[0].ident, old);
	ck_assert_int_eq(ev[0].filter, EVFILT_READ);
	ck_assert_uint_eq(ev[0].flags, EV_FREEWATCH | EV_DELETE);
	ck_assert_uint_eq(ev[0].fflags, NOTE_FREE_CLOSE);
	ck_assert_ptr_eq(ev[0].udata, &o[0]);
	drop_returned(ev, n);
	ck_assert_int_eq(write(p[1], "x", 1), 1);	/* old file: silent */
	expect_quiet(kq, 20);
	ck_assert_int_eq(write(q[1], "x", 1), 1);
	kev_expect(kq, 2000, old, EVFILT_READ, 0, 0, 1, &o[1]);
	close(q[0]);
	kev_expect(kq, 2000, old, EVFILT_READ, EV_FREEWATCH | EV_DELETE, NOTE_FREE_CLOSE, 0, &o[1]);
	obj_unref(&o[1]);
	for (int i = 0; i < 2; i++)
		ck_assert(o[i].refs == 0 && o[i].frees == 1 && o[i].underflows == 0);
	close(keep);
	close(p[1]);
	close(q[1]);
	close(kq);
}
END_TEST

START_TEST(close_removes_knote_while_dup_keeps_file_open)
{
	/* epoll would keep reporting: its registration belongs to the open
	 * file, which the dup keeps alive. */
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	int d = dup(p[0]);
	ck_assert_int_ge(d, 0);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, U(0));
	kev_ok(kq, p[0], EVFILT_WRITE, EV_ADD | EV_FREEWATCH, 0, 0, U(1));
	close(p[0]);
	kev_expect(kq, 2000, p[0], EVFILT_WRITE, EV_FREEWATCH | EV_DELETE, NOTE_FREE_CLOSE, 0, U(1));
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	expect_quiet(kq, 50);
	expect_gone(kq, p[0], EVFILT_READ);
	/* The dup is a different fd: watching it works. */
	kev_ok(kq, d, EVFILT_READ, EV_ADD, 0, 0, U(2));
	kev_expect(kq, 2000, d, EVFILT_READ, 0, 0, 1, U(2));
	close(d);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(close_removes_knote_while_child_keeps_file_open)
{
	int kq = xkqueue(), p[2], go[2], st;

	xpipe2(p, O_NONBLOCK);
	ck_assert_int_eq(pipe(go), 0);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, U(0));
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char c;
		close(go[1]);
		while (read(go[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(go[0]);
	close(p[0]);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	expect_quiet(kq, 50);
	expect_gone(kq, p[0], EVFILT_READ);
	close(go[1]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(child_close_does_not_remove_parent_knote)
{
	/* The child shares the open files (and, underneath, the epoll
	 * instance); its close must not unregister the parent's watch. */
	int kq = xkqueue(), p[2], st;

	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		close(p[1]);
		close(kq);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	kev_expect(kq, 2000, p[0], EVFILT_READ, 0, 0, 1, U(0));
	close(p[0]);
	kev_expect(kq, 2000, p[0], EVFILT_READ, EV_FREEWATCH | EV_DELETE, NOTE_FREE_CLOSE, 0, U(0));
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(vfork_child_close_keeps_parent_knote)
{
	/*
	 * A vfork child shares the parent's memory (the fd registry, the
	 * kqueue) but has its own descriptor table: its close before exec is
	 * not the parent's close and must not kill the parent's watch.
	 */
	int kq = xkqueue(), p[2], st;

	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
	pid_t pid = vfork();
	if (pid == 0) {
		close(p[0]);
		_exit(0);
	}
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_int_ge(fcntl(p[0], F_GETFD), 0);	/* still open here */
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	kev_expect(kq, 2000, p[0], EVFILT_READ, 0, 0, 1, U(0));
	close(p[0]);
	kev_expect(kq, 2000, p[0], EVFILT_READ, EV_FREEWATCH | EV_DELETE, NOTE_FREE_CLOSE, 0, U(0));
	close(p[1]);
	close(kq);
}
END_TEST

/*
 * clone() children that share the parent's memory.  The close path asks
 * the kernel whose close it is only when the process said such a child may
 * exist (lib/fdreg.c, owner_pid): these prove that clone() says so, and that
 * a child sharing the descriptor table too closes the parent's descriptor.
 */
static int
clone_child_close(void *arg)
{
	close(*(int *)arg);
	return 0;
}

/* Run clone_child_close(fd) in a clone() child with flags (plus SIGCHLD),
 * wait for it.  False: valgrind, which runs no clone() child on a stack of
 * its own that is not a thread (a CLONE_VFORK one becomes a fork child that
 * shares nothing). */
static bool
clone_close(int fd, int flags)
{
	const char *pre = getenv("LD_PRELOAD");
	size_t size = 256 * 1024;
	char *stack;
	int st;

	if (pre != NULL && strstr(pre, "vgpreload") != NULL) {
		fprintf(stderr, "valgrind runs no clone() child: skipped\n");
		return false;
	}
	stack = malloc(size);
	ck_assert_ptr_nonnull(stack);
	pid_t pid = clone(clone_child_close, stack + size, flags | SIGCHLD, &fd);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	free(stack);
	return true;
}

/* The parent's READ knote on p[0] is intact: it reports, and the parent's
 * own close still ends it. */
static void
expect_knote_intact(int kq, int p[2])
{
	ck_assert_int_ge(fcntl(p[0], F_GETFD), 0);	/* still open here */
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	kev_expect(kq, 2000, p[0], EVFILT_READ, 0, 0, 1, U(0));
	close(p[0]);
	kev_expect(kq, 2000, p[0], EVFILT_READ, EV_FREEWATCH | EV_DELETE, NOTE_FREE_CLOSE, 0, U(0));
	close(p[1]);
}

START_TEST(clone_vm_child_close_keeps_parent_knote)
{
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
	if (clone_close(p[0], CLONE_VM))
		expect_knote_intact(kq, p);
	close(kq);
}
END_TEST

START_TEST(clone_vfork_child_close_keeps_parent_knote)
{
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
	if (clone_close(p[0], CLONE_VM | CLONE_VFORK))
		expect_knote_intact(kq, p);
	close(kq);
}
END_TEST

START_TEST(clone_files_child_close_is_the_parents)
{
	/* CLONE_FILES: one descriptor table, so the child's close is the
	 * parent's, though the child's pid is not */
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
	if (clone_close(p[0], CLONE_VM | CLONE_FILES)) {
		ck_assert_int_eq(fcntl(p[0], F_GETFD), -1);
		kev_expect(kq, 2000, p[0], EVFILT_READ, EV_FREEWATCH | EV_DELETE, NOTE_FREE_CLOSE, 0, U(0));
	}
	close(p[1]);
	close(kq);
}
END_TEST

/*
 * Children that get a copy of the parent's memory without the parent's
 * fork handlers running: _Fork() (async-signal-safe, no atfork handlers),
 * clone() without CLONE_VM, a raw fork system call.  The copy still holds
 * the parent's kqueues and registry, and the epoll set underneath is shared
 * with the parent: a close in the child must not unregister the parent's
 * watch (lib/fdreg.c, own_table).
 */
static void
copy_child_close_keeps_parent_knote(int how)
{
	int kq = xkqueue(), p[2], st;
	pid_t pid;

	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
	if (how == 1) {
		/* clone() without CLONE_VM: a copy, as fork() makes */
		if (clone_close(p[0], 0))
			expect_knote_intact(kq, p);
		else
			close(p[0]), close(p[1]);
		close(kq);
		return;
	}
	pid = how == 0 ? _Fork() : (pid_t)syscall(SYS_fork);
	if (pid == 0) {
		close(p[0]);
		_exit(0);
	}
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	expect_knote_intact(kq, p);
	close(kq);
}

START_TEST(underscore_fork_child_close_keeps_parent_knote)
{
	copy_child_close_keeps_parent_knote(0);
}
END_TEST

START_TEST(clone_copy_child_close_keeps_parent_knote)
{
	copy_child_close_keeps_parent_knote(1);
}
END_TEST

START_TEST(raw_fork_child_close_keeps_parent_knote)
{
	copy_child_close_keeps_parent_knote(2);
}
END_TEST

/*
 * A signal handler that closes a watched number and puts another file there
 * while the scan is reading it.  This program's ioctl() is the one
 * libkqfree's FIONREAD binds to: armed (reuse_fd), it raises the signal
 * just before the read of that number, as a signal arriving then would.
 */
static volatile sig_atomic_t reuse_fd = -1, reuse_with = -1;

static void
reuse_handler(int sig)
{
	int fd = reuse_fd;

	(void)sig;
	reuse_fd = -1;
	close(fd);
	dup2(reuse_with, fd);
}

int
ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (fd == reuse_fd && req == FIONREAD)
		raise(SIGUSR2);
	return (int)syscall(SYS_ioctl, fd, req, arg);
}

/*
 * The watched end of pipe p (READ: p[0], holding 1 byte; WRITE: p[1]) is
 * closed by the handler during the scan's read and the same end of pipe q
 * (7 bytes queued) put at its number.  What the scan read there is not the
 * watched file's: no event may carry it, and the knote dies with the close
 * (its reference comes back as a notice).
 */
static void
number_reused_during_scan(short filter)
{
	int kq = xkqueue(), p[2], q[2], end = filter == EVFILT_READ ? 0 : 1;
	struct sigaction sa = { .sa_handler = reuse_handler };

	xpipe2(p, O_NONBLOCK);
	xpipe2(q, O_NONBLOCK);
	if (filter == EVFILT_READ)
		ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert_int_eq(write(q[1], "1234567", 7), 7);
	kev_ok(kq, p[end], filter, EV_ADD | EV_FREEWATCH, 0, 0, U(end));
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR2, &sa, NULL), 0);
	reuse_with = q[end];
	reuse_fd = p[end];
	kev_expect(kq, 2000, p[end], filter, EV_FREEWATCH | EV_DELETE,
	    NOTE_FREE_CLOSE, 0, U(end));
	ck_assert_int_eq(reuse_fd, -1);		/* the handler ran */
	expect_quiet(kq, 20);
	close(p[0]);				/* one of them q's now */
	close(p[1]);
	close(q[0]);
	close(q[1]);
	close(kq);
}

/* READ's event() runs without the slot lock. */
START_TEST(read_of_number_reused_during_the_scan_is_not_reported)
{
	number_reused_during_scan(EVFILT_READ);
}
END_TEST

/* WRITE's under it (its event() is not read-only): the handler's close of
 * the held number is told at the unlock, and the report the scan made from
 * the other pipe (less room) is dropped. */
START_TEST(write_of_number_reused_during_the_scan_is_not_reported)
{
	number_reused_during_scan(EVFILT_WRITE);
}
END_TEST

/* ------------------------------------------------ other closing calls */

/* Move an fd to a number >= min (and close the original). */
static int
move_fd(int fd, int min)
{
	int n = fcntl(fd, F_DUPFD_CLOEXEC, min);
	ck_assert_int_ge(n, min);
	close(fd);
	return n;
}

START_TEST(close_range_removes_knotes)
{
	int kq = xkqueue(), p[3][2];

	for (int i = 0; i < 3; i++) {
		xpipe2(p[i], O_NONBLOCK);
		p[i][0] = move_fd(p[i][0], 300 + i);
		p[i][1] = move_fd(p[i][1], 400 + i);
		kev_ok(kq, p[i][0], EVFILT_READ, EV_ADD, 0, 0, U(i));
		ck_assert_int_eq(write(p[i][1], "x", 1), 1);
	}
	/* A reader outside the range keeps the write end a plain writable
	 * pipe (FreeBSD ends a pipe's write knotes when its reader goes). */
	int keep = keep_open(p[2][0]);
	kev_ok(kq, p[2][1], EVFILT_WRITE, EV_ADD | EV_DISABLE, 0, 0, U(3));
	ck_assert_int_eq(close_range(300, 399, 0), 0);
	expect_quiet(kq, 50);
	for (int i = 0; i < 3; i++)
		expect_gone(kq, p[i][0], EVFILT_READ);
	/* Out of range: still there. */
	kev_ok(kq, p[2][1], EVFILT_WRITE, EV_ENABLE | EV_KEEPUDATA, 0, 0, NULL);
	struct kevent ev;
	ck_assert_int_eq(kev_wait(kq, &ev, 1, 2000), 1);
	ck_assert_uint_eq(ev.ident, p[2][1]);
	ck_assert_int_eq(ev.filter, EVFILT_WRITE);
	ck_assert_uint_eq(ev.flags, 0);
	ck_assert_int_gt(ev.data, 0);		/* free space: size is Linux's */
	ck_assert_ptr_eq(ev.udata, U(3));
	ck_assert_int_eq(close_range(400, ~0U, 0), 0);
	expect_gone(kq, p[2][1], EVFILT_WRITE);
	expect_quiet(kq, 20);
	close(keep);
	close(kq);
}
END_TEST

START_TEST(close_range_unshare_removes_knotes)
{
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	p[0] = move_fd(p[0], 300);
	int keep = keep_open(p[0]);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
	ck_assert_int_eq(close_range(300, 300, CLOSE_RANGE_UNSHARE), 0);
	kev_expect(kq, 2000, 300, EVFILT_READ, EV_FREEWATCH | EV_DELETE, NOTE_FREE_CLOSE, 0, U(0));
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	expect_quiet(kq, 50);
	close(keep);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(close_range_cloexec_keeps_knotes)
{
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, U(0));
	ck_assert_int_eq(close_range(p[0], p[0], CLOSE_RANGE_CLOEXEC), 0);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	kev_expect(kq, 2000, p[0], EVFILT_READ, 0, 0, 1, U(0));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(closefrom_removes_knotes)
{
	/* Numbers far above anything Check or the library holds. */
	int kq = xkqueue(), p[2][2];

	for (int i = 0; i < 2; i++) {
		xpipe2(p[i], O_NONBLOCK);
		p[i][0] = move_fd(p[i][0], 500 + i);
		p[i][1] = move_fd(p[i][1], 600 + i);
		kev_ok(kq, p[i][0], EVFILT_READ, EV_ADD | (i ? EV_FREEWATCH : 0), 0, 0, U(i));
	}
	closefrom(600);		/* the write ends: EOF on the read ends */
	struct kevent ev[4];
	int n = kev_wait(kq, ev, 4, 2000);
	if (n == 1)
		n += kev_wait(kq, ev + 1, 3, 2000);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < 2; i++) {
		int k = ev[i].ident == 501;
		ck_assert_uint_eq(ev[i].ident, 500 + k);
		ck_assert_int_eq(ev[i].filter, EVFILT_READ);
		ck_assert_uint_eq(ev[i].flags, EV_EOF);
		ck_assert_uint_eq(ev[i].fflags, 0);
		ck_assert_int_eq(ev[i].data, 0);
		ck_assert_ptr_eq(ev[i].udata, U(k));
	}
	ck_assert_uint_ne(ev[0].ident, ev[1].ident);
	closefrom(500);
	kev_expect(kq, 2000, 501, EVFILT_READ, EV_FREEWATCH | EV_DELETE, NOTE_FREE_CLOSE, 0, U(1));
	expect_quiet(kq, 20);
	expect_gone(kq, 500, EVFILT_READ);
	close(kq);
}
END_TEST

START_TEST(dup2_onto_watched_fd_removes_knote)
{
	int kq = xkqueue(), p[2], q[2];

	xpipe2(p, O_NONBLOCK);
	xpipe2(q, O_NONBLOCK);
	int keep = keep_open(p[0]);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, U(0));
	ck_assert_int_eq(dup2(q[0], p[0]), p[0]);
	expect_gone(kq, p[0], EVFILT_READ);
	/* Neither the old file nor the new one reports through the old knote. */
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert_int_eq(write(q[1], "x", 1), 1);
	expect_quiet(kq, 50);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, U(1));
	kev_expect(kq, 2000, p[0], EVFILT_READ, 0, 0, 1, U(1));
	close(keep);
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	close(kq);
}
END_TEST

START_TEST(dup3_onto_watched_fd_removes_knote)
{
	int kq = xkqueue(), p[2], q[2];

	xpipe2(p, O_NONBLOCK);
	xpipe2(q, O_NONBLOCK);
	int keep = keep_open(p[0]);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
	ck_assert_int_eq(dup3(q[0], p[0], O_CLOEXEC), p[0]);
	kev_expect(kq, 2000, p[0], EVFILT_READ, EV_FREEWATCH | EV_DELETE, NOTE_FREE_CLOSE, 0, U(0));
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	expect_quiet(kq, 50);
	close(keep);
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	close(kq);
}
END_TEST

START_TEST(dup2_onto_itself_keeps_knote)
{
	/* dup2(fd, fd) closes nothing; dup3(fd, fd) fails with EINVAL. */
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
	ck_assert_int_eq(dup2(p[0], p[0]), p[0]);
	ck_assert_errno(dup3(p[0], p[0], 0), EINVAL);
	/* dup2 of a bad fd fails and must not close the target either. */
	ck_assert_errno(dup2(-1, p[0]), EBADF);
	expect_quiet(kq, 20);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	kev_expect(kq, 2000, p[0], EVFILT_READ, 0, 0, 1, U(0));
	kev_ok(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	kev_expect(kq, 2000, p[0], EVFILT_READ, EV_FREEWATCH | EV_DELETE, NOTE_FREE_DELETE, 0, U(0));
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(fclose_removes_knote)
{
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	int keep = keep_open(p[0]);
	FILE *f = fdopen(p[0], "r");
	ck_assert_ptr_nonnull(f);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, U(0));
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	expect_quiet(kq, 50);
	expect_gone(kq, p[0], EVFILT_READ);
	close(keep);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(closedir_removes_knote)
{
	char dir[] = "/tmp/kqfree-closedir-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	int kq = xkqueue();
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	int fd = dirfd(d);

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE, 0, U(0));
	ck_assert_int_eq(closedir(d), 0);
	/* A change in the directory is no longer reported. */
	char path[64];
	snprintf(path, sizeof(path), "%s/f", dir);
	int f = open(path, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(f, 0);
	close(f);
	expect_quiet(kq, 50);
	expect_gone(kq, fd, EVFILT_VNODE);
	unlink(path);
	rmdir(dir);
	close(kq);
}
END_TEST

START_TEST(close_of_kqueue_fd_is_plain)
{
	/* The kqueue fd itself is closed with close(); a watched fd closed
	 * afterwards must not reach the dead kqueue. */
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
	ck_assert_int_eq(close(kq), 0);
	ck_assert_errno(close(kq), EBADF);
	ck_assert_int_eq(close(p[0]), 0);
	ck_assert_int_eq(close(p[1]), 0);
	ck_assert_errno(close(p[0]), EBADF);
}
END_TEST

/* ------------------------------------------------------ concurrency */

struct waiter {
	int kq;
	int n;
	struct kevent ev;
	int64_t waited_ms;
};

static void *
waiter_main(void *arg)
{
	struct waiter *w = arg;
	int64_t t0 = now_ms();
	do
		w->n = kev_wait(w->kq, &w->ev, 1, 5000);
	while (w->n < 0 && errno == EINTR);
	w->waited_ms = now_ms() - t0;
	return NULL;
}

START_TEST(close_on_other_thread_wakes_waiter)
{
	int kq = xkqueue(), p[2];
	struct waiter w = { .kq = kq, .n = -2 };
	pthread_t t;

	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
	ck_assert_int_eq(pthread_create(&t, NULL, waiter_main, &w), 0);
	usleep(30000);
	close(p[0]);
	join_bounded(t, 4500);
	ck_assert_int_eq(w.n, 1);
	ck_assert_uint_eq(w.ev.ident, p[0]);
	ck_assert_int_eq(w.ev.filter, EVFILT_READ);
	ck_assert_uint_eq(w.ev.flags, EV_FREEWATCH | EV_DELETE);
	ck_assert_uint_eq(w.ev.fflags, NOTE_FREE_CLOSE);
	ck_assert_ptr_eq(w.ev.udata, U(0));
	ck_assert_int_lt(w.waited_ms, 4000);	/* woken, not timed out */
	close(p[1]);
	close(kq);
}
END_TEST

static _Atomic int victim = -1;

static void
close_victim(int sig)
{
	(void)sig;
	int saved = errno;
	int fd = atomic_exchange(&victim, -1);
	if (fd >= 0)
		close(fd);
	errno = saved;
}

static void
install_handler(void)
{
	struct sigaction sa = { .sa_handler = close_victim };
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
}

struct kicker {
	pthread_t target;
	int delay_us;
	_Atomic bool stop;
	unsigned sent;
};

static void *
kick_once(void *arg)
{
	struct kicker *k = arg;
	usleep(k->delay_us);
	pthread_kill(k->target, SIGUSR1);
	return NULL;
}

START_TEST(close_in_signal_handler_while_blocked)
{
	int kq = xkqueue(), p[2];
	struct kicker k = { .target = pthread_self(), .delay_us = 50000 };
	pthread_t t;
	struct kevent ev;

	install_handler();
	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
	victim = p[0];
	ck_assert_int_eq(pthread_create(&t, NULL, kick_once, &k), 0);
	/* kevent() may return EINTR (as on BSD) or the notice at once. */
	int64_t t0 = now_ms();
	int n;
	do
		n = kev_wait(kq, &ev, 1, 5000);
	while (n < 0 && errno == EINTR && now_ms() - t0 < 5000);
	join_bounded(t, 1000);
	ck_assert_int_eq(victim, -1);
	ck_assert_int_eq(n, 1);
	ck_assert_int_lt(now_ms() - t0, 4000);
	ck_assert_uint_eq(ev.ident, p[0]);
	ck_assert_uint_eq(ev.flags, EV_FREEWATCH | EV_DELETE);
	ck_assert_uint_eq(ev.fflags, NOTE_FREE_CLOSE);
	ck_assert_ptr_eq(ev.udata, U(0));
	expect_gone(kq, p[0], EVFILT_READ);
	close(p[1]);
	close(kq);
}
END_TEST

static void *
kick_loop(void *arg)
{
	struct kicker *k = arg;
	unsigned seed = 1;
	while (!atomic_load(&k->stop)) {
		if (atomic_load(&victim) >= 0) {
			pthread_kill(k->target, SIGUSR1);
			k->sent++;
		}
		usleep(rand_r(&seed) % 300);
	}
	return NULL;
}

START_TEST(close_in_signal_handler_during_kevent_calls)
{
	/* The handler interrupts the main thread at random points inside
	 * kevent() - while it adds, modifies and scans knotes of the very fd
	 * being closed.  No deadlock, and every reference comes back once. */
	enum { ROUNDS = 300 };
	static struct obj o[ROUNDS];
	int kq = xkqueue();
	struct kicker k = { .target = pthread_self() };
	pthread_t t;
	struct kevent ev[16];

	install_handler();
	memset(o, 0, sizeof(o));
	ck_assert_int_eq(pthread_create(&t, NULL, kick_loop, &k), 0);
	for (int i = 0; i < ROUNDS; i++) {
		int p[2];
		xpipe2(p, O_NONBLOCK);
		ck_assert_int_eq(write(p[1], "x", 1), 1);
		victim = p[0];
		int64_t t0 = now_ms();
		while (atomic_load(&victim) >= 0 && now_ms() - t0 < 5000) {
			/* Re-adding returns the previous reference (UDATA);
			 * the add fails with EBADF once the fd is gone. */
			obj_ref(&o[i]);
			if (kev_change(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH,
			    0, 0, &o[i]) != 0)
				obj_unref(&o[i]);
			int n = kev_wait(kq, ev, 16, 0);
			if (n > 0)
				drop_returned(ev, n);
		}
		ck_assert_msg(victim == -1, "round %d: signal never delivered", i);
		close(p[1]);
	}
	atomic_store(&k.stop, true);
	join_bounded(t, 2000);
	/* Collect what is still queued. */
	int n;
	while ((n = kev_wait(kq, ev, 16, 100)) > 0)
		drop_returned(ev, n);
	ck_assert_int_ge(n, 0);
	for (int i = 0; i < ROUNDS; i++) {
		ck_assert_msg(o[i].underflows == 0, "round %d: reference returned twice", i);
		ck_assert_msg(o[i].refs == 0, "round %d: %d references not returned",
		    i, o[i].refs);
	}
	close(kq);
}
END_TEST

/*
 * The handler closes the fd while the interrupted thread holds that fd's
 * registry lock (it toggles the knote, so the flush's epoll_ctl runs under
 * it, and scans, whose event() does too): the close is still tracked - one
 * NOTE_FREE_CLOSE - and the pipe that gets the number next is a new file,
 * whose readiness is reported under its own udata.
 */
START_TEST(close_in_signal_handler_holding_fd_lock_is_tracked)
{
	enum { ROUNDS = 300 };
	int kq = xkqueue();
	struct kicker k = { .target = pthread_self() };
	pthread_t t;
	struct kevent ev[16];
	int i, n, j;

	install_handler();
	ck_assert_int_eq(pthread_create(&t, NULL, kick_loop, &k), 0);
	for (i = 0; i < ROUNDS; i++) {
		int p[2], q[2], closes = 0;
		bool on = true;

		xpipe2(p, O_NONBLOCK);
		kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, UD(1000 + i));
		victim = p[0];
		int64_t t0 = now_ms();
		while (atomic_load(&victim) >= 0 && now_ms() - t0 < 5000) {
			kev_change(kq, p[0], EVFILT_READ, EV_KEEPUDATA |
			    (on ? EV_DISABLE : EV_ENABLE), 0, 0, NULL);
			on = !on;
			n = kev_wait(kq, ev, 16, 0);
			for (j = 0; j < n; j++)
				closes += ev[j].fflags == NOTE_FREE_CLOSE;
		}
		ck_assert_msg(victim == -1, "round %d: signal never delivered", i);
		while ((n = kev_wait(kq, ev, 16, 0)) > 0) {
			for (j = 0; j < n; j++) {
				ck_assert_msg(ev[j].flags == (EV_FREEWATCH | EV_DELETE) &&
				    ev[j].fflags == NOTE_FREE_CLOSE &&
				    ev[j].udata == UD(1000 + i),
				    "round %d: flags 0x%x fflags %u", i, ev[j].flags, ev[j].fflags);
				closes++;
			}
		}
		ck_assert_msg(closes == 1, "round %d: %d close notices", i, closes);
		close(p[1]);
		xpipe2(q, O_NONBLOCK);
		kev_ok(kq, q[0], EVFILT_READ, EV_ADD, 0, 0, UD(5000 + i));
		ck_assert_int_eq(write(q[1], "y", 1), 1);
		kev_expect(kq, 1000, q[0], EVFILT_READ, 0, 0, 1, UD(5000 + i));
		kev_ok(kq, q[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
		close(q[0]);
		close(q[1]);
	}
	atomic_store(&k.stop, true);
	join_bounded(t, 2000);
	close(kq);
}
END_TEST

#ifndef KQ_TSAN	/* see close_suite() */
struct adder {
	int kq, fd;
	struct obj *o;
	_Atomic bool go;
	_Atomic bool closed;	/* close() has returned */
	unsigned adds;
	int after_close;	/* adds that succeeded after that */
};

static void *
adder_main(void *arg)
{
	struct adder *a = arg;

	while (!atomic_load(&a->go))
		;
	/* Re-add until the fd is gone; each success takes a reference (a
	 * repeated add returns the previous one as NOTE_FREE_UDATA). */
	for (;;) {
		bool closed = atomic_load(&a->closed);
		obj_ref(a->o);
		if (kev_change(a->kq, a->fd, EVFILT_READ, EV_ADD | EV_FREEWATCH,
		    0, 0, a->o) != 0) {
			obj_unref(a->o);
			break;
		}
		a->adds++;
		/* Nothing reopens the number: an add that starts after
		 * close() returned must fail. */
		if (closed && ++a->after_close > 0)
			break;
	}
	return NULL;
}

START_TEST(close_racing_with_add_leaves_no_knote)
{
	/*
	 * Another thread keeps adding a knote for fd while this one closes
	 * it.  Whatever the interleaving, once close() has returned and the
	 * add loop has seen EBADF, no knote may remain for the number: else
	 * it would outlive its file and be confused with the next one.
	 */
	enum { ROUNDS = 400 };
	static struct obj o[ROUNDS];
	int kq = xkqueue();
	struct kevent ev[16];
	unsigned seed = 7;

	memset(o, 0, sizeof(o));
	for (int i = 0; i < ROUNDS; i++) {
		int p[2];
		struct adder a = { .kq = kq, .o = &o[i] };
		pthread_t t;

		xpipe2(p, O_NONBLOCK);
		a.fd = p[0];
		ck_assert_int_eq(pthread_create(&t, NULL, adder_main, &a), 0);
		atomic_store(&a.go, true);
		for (volatile unsigned spin = rand_r(&seed) % 20000; spin > 0; spin--)
			;
		close(p[0]);
		atomic_store(&a.closed, true);
		join_bounded(t, 20000);
		ck_assert_msg(a.after_close == 0, "round %d: EV_ADD on fd %d "
		    "succeeded after close() returned", i, p[0]);
		expect_gone(kq, p[0], EVFILT_READ);
		close(p[1]);
		int n;
		while ((n = kev_wait(kq, ev, 16, 0)) > 0)
			drop_returned(ev, n);
	}
	int n;
	while ((n = kev_wait(kq, ev, 16, 50)) > 0)
		drop_returned(ev, n);
	for (int i = 0; i < ROUNDS; i++) {
		ck_assert_msg(o[i].underflows == 0, "round %d: reference returned twice", i);
		ck_assert_msg(o[i].refs == 0, "round %d: %d references not returned",
		    i, o[i].refs);
	}
	close(kq);
}
END_TEST
#endif

/* ------------------------------------------------------------- stress */

#ifdef KQ_TSAN
#define KQ_TSAN_ONLY_CLOSE	1
#else
#define KQ_TSAN_ONLY_CLOSE	0
#endif

enum { S_THREADS = 4, S_OPS = 5000, S_SLOTS = 24, S_OBJS = S_THREADS * S_OPS };

struct sslot {
	pthread_mutex_t mu;
	_Atomic int rfd, wfd;
};

static struct {
	int kq;
	struct sslot slot[S_SLOTS];
	struct obj *objs;
	_Atomic int nobj;
	_Atomic unsigned long adds, addfail, notices, fired, closes, dups;
	_Atomic int bad_errno;	/* an EV_ADD failure other than EBADF */
} S;

static void
stress_collect(void)
{
	struct kevent ev[16];
	int n = kev_wait(S.kq, ev, 16, 0);
	for (int i = 0; i < n; i++) {
		if (!(ev[i].flags & EV_FREEWATCH))
			continue;
		if (ev[i].flags & EV_DELETE)
			atomic_fetch_add(&S.notices, 1);
		else
			atomic_fetch_add(&S.fired, 1);
		obj_unref(ev[i].udata);
	}
}

static void *
stress_thread(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 7919 + 1;

	for (int op = 0; op < S_OPS; op++) {
		struct sslot *s = &S.slot[rand_r(&seed) % S_SLOTS];
		int r = rand_r(&seed) % 100;

		/*
		 * The test never uses a slot's fds while another thread closes
		 * them (that race is the application's, and TSan reports it):
		 * what races here is the library - one kqueue, its scan, the
		 * close path and the notice queue - across 4 threads.
		 * close_racing_with_add_leaves_no_knote races close with
		 * EV_ADD on purpose.
		 */
		if (r < 40) {
			/* add, with a fresh object; the test's own reference
			 * is dropped right after, so the library's is the
			 * only one left. */
			struct obj *o = &S.objs[atomic_fetch_add(&S.nobj, 1)];
			static const unsigned short fl[] = { 0, EV_ONESHOT,
			    EV_CLEAR, EV_DISPATCH };
			obj_ref(o);
			short filt = rand_r(&seed) % 4 ? EVFILT_READ : EVFILT_WRITE;
			unsigned short flags = EV_ADD | EV_FREEWATCH |
			    fl[rand_r(&seed) % 4];
			bool rd = rand_r(&seed) % 2;
			/* The library's reference is taken before the call:
			 * another thread may collect its return before
			 * kevent() even returns here. */
			obj_ref(o);
			pthread_mutex_lock(&s->mu);
			int ret = kev_change(S.kq, rd ? s->rfd : s->wfd, filt,
			    flags, 0, 0, o);
			pthread_mutex_unlock(&s->mu);
			if (ret == 0) {
				atomic_fetch_add(&S.adds, 1);
			} else {
				obj_unref(o);
				atomic_fetch_add(&S.addfail, 1);
				/* a number may move between slots, so EBADF can
				 * happen; nothing else may */
				if (errno != EBADF)
					atomic_store(&S.bad_errno, errno);
			}
			obj_unref(o);
		} else if (r < 55) {
			short filt = rand_r(&seed) % 2 ? EVFILT_READ : EVFILT_WRITE;
			pthread_mutex_lock(&s->mu);
			kev_change(S.kq, s->rfd, filt, EV_DELETE, 0, 0, NULL);
			pthread_mutex_unlock(&s->mu);
		} else if (r < 67) {
			/* close (or close_range) and reopen */
			int p[2];
			pthread_mutex_lock(&s->mu);
			/* TSan has no close_range() interceptor: the number
			 * would look open to it when pipe2() hands it out again
			 * in another thread, a race it would report. */
			if (KQ_TSAN_ONLY_CLOSE || rand_r(&seed) % 2)
				close(s->rfd);
			else
				close_range(s->rfd, s->rfd, 0);
			close(s->wfd);
			if (pipe2(p, O_NONBLOCK) == 0) {
				s->rfd = p[0];
				s->wfd = p[1];
			}
			pthread_mutex_unlock(&s->mu);
			atomic_fetch_add(&S.closes, 1);
		} else if (r < 77) {
			/* replace the file under the read end's number */
			int p[2];
			pthread_mutex_lock(&s->mu);
			if (pipe2(p, O_NONBLOCK) == 0) {
				dup2(p[0], s->rfd);
				close(p[0]);
				close(s->wfd);
				s->wfd = p[1];
			}
			pthread_mutex_unlock(&s->mu);
			atomic_fetch_add(&S.dups, 1);
		} else if (r < 87) {
			pthread_mutex_lock(&s->mu);
			(void)!write(s->wfd, "x", 1);
			pthread_mutex_unlock(&s->mu);
		} else {
			stress_collect();
		}
	}
	return NULL;
}

START_TEST(stress_threads_random_ops_balance)
{
	pthread_t t[S_THREADS];

	memset(&S, 0, sizeof(S));
	S.objs = calloc(S_OBJS, sizeof(*S.objs));
	ck_assert_ptr_nonnull(S.objs);
	S.kq = xkqueue();
	for (int i = 0; i < S_SLOTS; i++) {
		int p[2];
		pthread_mutex_init(&S.slot[i].mu, NULL);
		xpipe2(p, O_NONBLOCK);
		S.slot[i].rfd = p[0];
		S.slot[i].wfd = p[1];
	}
	for (int i = 0; i < S_THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, stress_thread,
		    (void *)(uintptr_t)i), 0);
	for (int i = 0; i < S_THREADS; i++)
		join_bounded(t[i], 50000);

	ck_assert_int_eq(kqfree_release(S.kq), 0);
	struct kevent ev[64];
	unsigned long released = 0;
	int n;
	while ((n = kev_wait(S.kq, ev, 64, 100)) > 0) {
		for (int i = 0; i < n; i++) {
			ck_assert_msg(ev[i].flags & EV_FREEWATCH,
			    "after release: non-notice event filter %d flags 0x%x",
			    ev[i].filter, ev[i].flags);
			if (ev[i].fflags == NOTE_FREE_RELEASE)
				released++;
		}
		drop_returned(ev, n);
	}
	ck_assert_int_eq(n, 0);
	fprintf(stderr, "stress: %lu adds (%lu failed), %lu fired, %lu notices "
	    "during run, %lu at release, %lu closes, %lu dup2s\n",
	    (unsigned long)S.adds, (unsigned long)S.addfail,
	    (unsigned long)S.fired, (unsigned long)S.notices, released,
	    (unsigned long)S.closes, (unsigned long)S.dups);

	long outstanding = 0;
	int nobj = S.nobj;
	for (int i = 0; i < nobj; i++) {
		ck_assert_msg(S.objs[i].underflows == 0, "obj %d: reference returned twice", i);
		ck_assert_msg(S.objs[i].frees == 1, "obj %d freed %d times", i,
		    S.objs[i].frees);
		outstanding += S.objs[i].refs;
	}
	ck_assert_int_eq(outstanding, 0);
	ck_assert_uint_gt(S.adds, 0);
	ck_assert_msg(S.bad_errno == 0, "an EV_ADD failed with %s",
	    strerror(S.bad_errno));
	for (int i = 0; i < S_SLOTS; i++) {
		close(S.slot[i].rfd);
		close(S.slot[i].wfd);
	}
	close(S.kq);
	free(S.objs);
}
END_TEST

#ifndef KQ_ASAN	/* see the suite */
/*
 * close() is a cancellation point.  A thread cancelled there ends before
 * the descriptor is touched (glibc acts on a pending cancel at entry): its
 * watch, and the number's lock in the registry, must stay as they were.
 */
struct cancelled_close {
	int fd;
	pthread_barrier_t ready, cancelled;
};

static void *
close_with_cancel_pending(void *arg)
{
	struct cancelled_close *c = arg;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_barrier_wait(&c->ready);
	pthread_barrier_wait(&c->cancelled);
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
	close(c->fd);
	return NULL;
}

START_TEST(cancelled_close_leaves_the_watch_and_the_number_alone)
{
	struct cancelled_close c;
	int kq = xkqueue(), p[2], q[2];
	struct timespec ts;
	pthread_t t;
	void *ret = NULL;

	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
	c.fd = p[0];
	pthread_barrier_init(&c.ready, NULL, 2);
	pthread_barrier_init(&c.cancelled, NULL, 2);
	ck_assert_int_eq(pthread_create(&t, NULL, close_with_cancel_pending, &c), 0);
	pthread_barrier_wait(&c.ready);
	ck_assert_int_eq(pthread_cancel(t), 0);
	pthread_barrier_wait(&c.cancelled);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	ck_assert_int_eq(pthread_timedjoin_np(t, &ret, &ts), 0);
	ck_assert_ptr_eq(ret, PTHREAD_CANCELED);
	/* the file is still open under its number, and still watched */
	ck_assert_int_ge(fcntl(p[0], F_GETFD), 0);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	kev_expect(kq, 1000, p[0], EVFILT_READ, 0, 0, 1, U(0));
	/* its own close ends the watch; the number's next file is watched */
	close(p[0]);
	kev_expect(kq, 1000, p[0], EVFILT_READ, EV_FREEWATCH | EV_DELETE,
	    NOTE_FREE_CLOSE, 0, U(0));
	xpipe2(q, O_NONBLOCK);
	ck_assert_int_eq(q[0], p[0]);
	kev_ok(kq, q[0], EVFILT_READ, EV_ADD, 0, 0, U(1));
	ck_assert_int_eq(write(q[1], "yz", 2), 2);
	kev_expect(kq, 1000, q[0], EVFILT_READ, 0, 0, 2, U(1));
	pthread_barrier_destroy(&c.ready);
	pthread_barrier_destroy(&c.cancelled);
	close(q[0]);
	close(q[1]);
	close(p[1]);
	close(kq);
}
END_TEST
#endif

#ifndef KQ_ASAN	/* see the suite */
/*
 * A cancel that comes while a close() of a watched number blocks (SO_LINGER
 * with unsent data) takes effect after it, at the thread's next
 * cancellation point: the close completes, the watch ends with it, and the
 * number's slot is let go (the next file at that number can be watched).
 * The close holds the slot across the real call, which must not act on the
 * cancel (internal.h, CANCELLATION).
 */
struct blocked_close {
	int fd;
	int kq;				/* >= 0: watch fd there first */
	int watch_err;
	_Atomic pid_t tid;
	atomic_bool returned;
	int r;
};

static void *
close_blocking(void *arg)
{
	struct blocked_close *c = arg;
	struct kevent kev;

	/*
	 * The closing thread arms the watch itself: on io_uring the ring's
	 * poll holds the file until the thread that armed it lets go of it
	 * (task work), so a close on another thread may not be the file's
	 * last reference, and would not wait for the peer (README, Choosing
	 * a backend).
	 */
	if (c->kq >= 0) {
		EV_SET(&kev, c->fd, EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, U(0));
		c->watch_err = kevent(c->kq, &kev, 1, NULL, 0, NULL) == 0 ? 0 : errno;
	}
	atomic_store(&c->tid, gettid());
	c->r = close(c->fd);
	atomic_store(&c->returned, true);
	pthread_testcancel();
	return NULL;
}

/* tid is asleep in the close system call (bounded wait). */
static bool
asleep_in_close(pid_t tid)
{
	char path[64], buf[256];
	long nr;
	int i;

	snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
	for (i = 0; i < 2000; i++) {
		FILE *f = fopen(path, "r");
		bool in = false;
		if (f != NULL) {
			in = fgets(buf, sizeof buf, f) != NULL &&
			    sscanf(buf, "%ld", &nr) == 1 && nr == SYS_close;
			fclose(f);
		}
		if (in)
			return true;
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	return false;
}

START_TEST(cancel_during_watched_close_acts_after_it)
{
	struct blocked_close c;
	struct linger lg = { 1, 10 };
	static char buf[65536];
	int kq = xkqueue(), client, server, q[2], i;
	struct timespec ts;
	pthread_t t;
	void *ret = NULL;

	xpipe2(q, O_NONBLOCK);
	tcp_pair(&client, &server);
	while (send(client, buf, sizeof buf, MSG_DONTWAIT) > 0)
		;
	ck_assert_int_eq(errno, EAGAIN);
	/* blocking, lingering: close() waits until the peer took the data */
	ck_assert_int_eq(fcntl(client, F_SETFL, 0), 0);
	ck_assert_int_eq(setsockopt(client, SOL_SOCKET, SO_LINGER, &lg,
	    sizeof lg), 0);
	c = (struct blocked_close){ .fd = client, .kq = kq };
	ck_assert_int_eq(pthread_create(&t, NULL, close_blocking, &c), 0);
	for (i = 0; i < 2000 && atomic_load(&c.tid) == 0; i++)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	ck_assert_int_eq(c.watch_err, 0);
	ck_assert(asleep_in_close(atomic_load(&c.tid)));
	ck_assert_int_eq(pthread_cancel(t), 0);
	/* the peer takes the data: the close can finish */
	for (i = 0; i < 5000 && !atomic_load(&c.returned); i++)
		if (read(server, buf, sizeof buf) <= 0)
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	ck_assert_msg(atomic_load(&c.returned),
	    "the cancel ended the thread inside its close()");
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	ck_assert_int_eq(pthread_timedjoin_np(t, &ret, &ts), 0);
	ck_assert_ptr_eq(ret, PTHREAD_CANCELED);
	ck_assert_int_eq(c.r, 0);
	ck_assert_errno(fcntl(client, F_GETFD), EBADF);
	kev_expect(kq, 1000, client, EVFILT_READ, EV_FREEWATCH | EV_DELETE,
	    NOTE_FREE_CLOSE, 0, U(0));
	/* the number's slot was let go: its next file is watched */
	ck_assert_int_eq(dup2(q[0], client), client);
	kev_ok(kq, client, EVFILT_READ, EV_ADD, 0, 0, U(1));
	ck_assert_int_eq(write(q[1], "yz", 2), 2);
	kev_expect(kq, 1000, client, EVFILT_READ, 0, 0, 2, U(1));
	close(client);
	close(q[0]);
	close(q[1]);
	close(server);
	close(kq);
}
END_TEST
#endif

/* ---------------------------------------------------------------- cost */

/* Sanitizers and valgrind intercept close() themselves: no timing there. */
static bool
instrumented(void)
{
#if defined(KQ_TSAN) || defined(__SANITIZE_ADDRESS__)
	return true;
#else
	const char *pre = getenv("LD_PRELOAD"), *mult = getenv("CK_TIMEOUT_MULTIPLIER");
	return (pre != NULL && strstr(pre, "vgpreload") != NULL) ||
	    (mult != NULL && atoi(mult) > 1);
#endif
}

START_TEST(unwatched_close_costs_like_libc)
{
	enum { BATCH = 256, ROUNDS = 60 };
	int kq = xkqueue(), p[2], fds[BATCH];
	int64_t best_ours = INT64_MAX, best_raw = INT64_MAX;

	/* A live watch, so the registry is in use. */
	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	for (int r = 0; r < ROUNDS; r++) {
		for (int pass = 0; pass < 2; pass++) {
			for (int i = 0; i < BATCH; i++)
				ck_assert_int_ge(fds[i] = dup(p[1]), 0);
			int64_t t0 = now_ns();
			if (pass == 0)
				for (int i = 0; i < BATCH; i++)
					close(fds[i]);
			else
				for (int i = 0; i < BATCH; i++)
					syscall(SYS_close, fds[i]);
			int64_t dt = now_ns() - t0;
			if (pass == 0 && dt < best_ours)
				best_ours = dt;
			if (pass == 1 && dt < best_raw)
				best_raw = dt;
		}
	}
	double ours = (double)best_ours / BATCH, raw = (double)best_raw / BATCH;
	fprintf(stderr, "close of an unwatched fd: %.1f ns through libkqfree, "
	    "%.1f ns raw syscall, ratio %.2f\n", ours, raw, ours / raw);
	if (instrumented()) {
		fprintf(stderr, "(instrumented run: ratio not checked)\n");
	} else {
		ck_assert_msg(ours < raw * 1.5 + 20,
		    "unwatched close: %.1f ns vs %.1f ns raw", ours, raw);
	}
	kev_expect_none(kq);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

static Suite *
close_suite(void)
{
	Suite *s = suite_create("close");
	TCase *tc = tcase_create("paths");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, close_removes_knote_and_reused_number_is_new_file);
	tcase_add_test(tc, add_on_reused_number_before_any_scan);
	tcase_add_test(tc, close_removes_knote_while_dup_keeps_file_open);
	tcase_add_test(tc, close_removes_knote_while_child_keeps_file_open);
	tcase_add_test(tc, child_close_does_not_remove_parent_knote);
	tcase_add_test(tc, vfork_child_close_keeps_parent_knote);
#ifndef KQ_TSAN	/* a CLONE_VM child would run on its parent's TSan state */
	tcase_add_test(tc, clone_vm_child_close_keeps_parent_knote);
	tcase_add_test(tc, clone_vfork_child_close_keeps_parent_knote);
	tcase_add_test(tc, clone_files_child_close_is_the_parents);
#endif
	tcase_add_test(tc, underscore_fork_child_close_keeps_parent_knote);
	tcase_add_test(tc, clone_copy_child_close_keeps_parent_knote);
	tcase_add_test(tc, raw_fork_child_close_keeps_parent_knote);
	tcase_add_test(tc, read_of_number_reused_during_the_scan_is_not_reported);
	tcase_add_test(tc, write_of_number_reused_during_the_scan_is_not_reported);
	tcase_add_test(tc, close_range_removes_knotes);
	tcase_add_test(tc, close_range_unshare_removes_knotes);
	tcase_add_test(tc, close_range_cloexec_keeps_knotes);
	tcase_add_test(tc, closefrom_removes_knotes);
	tcase_add_test(tc, dup2_onto_watched_fd_removes_knote);
	tcase_add_test(tc, dup3_onto_watched_fd_removes_knote);
	tcase_add_test(tc, dup2_onto_itself_keeps_knote);
	tcase_add_test(tc, fclose_removes_knote);
	tcase_add_test(tc, closedir_removes_knote);
	tcase_add_test(tc, close_of_kqueue_fd_is_plain);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, close_on_other_thread_wakes_waiter);
	tcase_add_test(tc, close_in_signal_handler_while_blocked);
	tcase_add_test(tc, close_in_signal_handler_during_kevent_calls);
	tcase_add_test(tc, close_in_signal_handler_holding_fd_lock_is_tracked);
#ifndef KQ_TSAN
	/* A deliberate close/EV_ADD race on one fd: TSan rightly calls it the
	 * application's race, so that build leaves it out. */
	tcase_add_test(tc, close_racing_with_add_leaves_no_knote);
#endif
	tcase_add_test(tc, stress_threads_random_ops_balance);
#ifndef KQ_ASAN
	/* ASan leaves the frames a cancellation unwinds poisoned, and
	 * reports its own stack-buffer-underflow as the thread exits. */
	tcase_add_test(tc, cancelled_close_leaves_the_watch_and_the_number_alone);
	tcase_add_test(tc, cancel_during_watched_close_acts_after_it);
#endif
	suite_add_tcase(s, tc);

	tc = tcase_create("cost");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, unwatched_close_costs_like_libc);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(close_suite)
