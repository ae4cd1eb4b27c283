/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * EVFILT_PROC and EVFILT_PROCDESC: NOTE_EXIT with the wait(2) status for
 * children (not reaped) and for other processes, EV_EOF|EV_ONESHOT on exit,
 * ESRCH for a pid that does not exist; NOTE_FORK, NOTE_EXEC and NOTE_TRACK
 * through the proc connector (these suites run as root).
 */
#include "util.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <linux/sched.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 5000
#define EXIT_FLAGS (EV_CLEAR | EV_ONESHOT | EV_EOF)

/* A child that exits with `code` once `*release` is written to. */
static pid_t
spawn_waiting(int code, int *release)
{
	int p[2];
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* Check's SIGTERM handler would kill the whole group */
		signal(SIGTERM, SIG_DFL);
		close(p[1]);
		if (read(p[0], &c, 1) < 0)
			_exit(100);
		_exit(code);
	}
	close(p[0]);
	*release = p[1];
	return pid;
}

static void
release_child(int fd)
{
	ck_assert_int_eq(write(fd, "x", 1), 1);
	close(fd);
}

/* Wait until pid is a zombie, without reaping it. */
static void
wait_zombie(pid_t pid)
{
	siginfo_t si;

	ck_assert_int_eq(waitid(P_PID, pid, &si, WEXITED | WNOWAIT), 0);
}

/* Read exactly len bytes that must come within WAIT_MS. */
static void
read_bounded(int fd, void *buf, size_t len)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	ck_assert_int_eq(poll(&pfd, 1, WAIT_MS), 1);
	ck_assert_int_eq(read(fd, buf, len), (ssize_t)len);
}

static bool have_connector(void);

START_TEST(exit_reports_status_without_reaping)
{
	int kq = xkqueue(), rel, status;
	pid_t pid = spawn_waiting(7, &rel);

	kev_ok(kq, pid, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, &rel);
	kev_expect_none(kq);
	release_child(rel);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
	    7 << 8, &rel);
	/* the child is still ours to reap */
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 7);
	/* and the knote is gone */
	kev_expect_none(kq);
	ck_assert_errno(kev_change(kq, pid, EVFILT_PROC, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	close(kq);
}
END_TEST

START_TEST(exit_reports_killing_signal)
{
	int kq = xkqueue(), rel, status;
	pid_t pid = spawn_waiting(0, &rel);

	kev_ok(kq, pid, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, NULL);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
	    SIGKILL, NULL);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	close(rel);
	close(kq);
}
END_TEST

START_TEST(zombie_reports_exit_at_once)
{
	int kq = xkqueue(), rel;
	pid_t pid = spawn_waiting(3, &rel);

	release_child(rel);
	wait_zombie(pid);
	kev_ok(kq, pid, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, NULL);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
	    3 << 8, NULL);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(kq);
}
END_TEST

/*
 * A grandchild: not ours.  Its parent (our child) reaps it at once
 * (reap_now) or only when told to, so we see it as a zombie or as gone.
 * Returns the grandchild's pid; *ctl releases it ("x") and then, if
 * !reap_now, lets the middle process reap it (second byte).
 */
static pid_t
spawn_grandchild(int code, bool reap_now, int *ctl, pid_t *middle)
{
	int ctlp[2], pidp[2];
	pid_t mid, gc = 0;
	char c;

	ck_assert_int_eq(pipe(ctlp), 0);
	ck_assert_int_eq(pipe(pidp), 0);
	mid = fork();
	ck_assert_int_ge(mid, 0);
	if (mid == 0) {
		int gp[2];

		close(ctlp[1]);
		close(pidp[0]);
		if (pipe(gp) != 0)
			_exit(100);
		gc = fork();
		if (gc == 0) {
			close(gp[1]);
			if (read(gp[0], &c, 1) < 0)
				_exit(100);
			_exit(code);
		}
		close(gp[0]);
		if (write(pidp[1], &gc, sizeof gc) != sizeof gc)
			_exit(100);
		/* first byte: let the grandchild exit */
		if (read(ctlp[0], &c, 1) != 1 || write(gp[1], "x", 1) != 1)
			_exit(100);
		if (!reap_now && read(ctlp[0], &c, 1) != 1)
			_exit(100);
		waitpid(gc, NULL, 0);
		if (read(ctlp[0], &c, 1) < 0)	/* until we close it */
			_exit(100);
		_exit(0);
	}
	close(ctlp[0]);
	close(pidp[1]);
	ck_assert_int_eq(read(pidp[0], &gc, sizeof gc), sizeof gc);
	close(pidp[0]);
	*ctl = ctlp[1];
	*middle = mid;
	return gc;
}

START_TEST(exit_status_of_non_child_reaped_by_its_parent)
{
	int kq = xkqueue(), ctl;
	pid_t mid, gc = spawn_grandchild(5, true, &ctl, &mid);

	kev_ok(kq, gc, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, NULL);
	ck_assert_int_eq(write(ctl, "x", 1), 1);
	kev_expect(kq, WAIT_MS, gc, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
	    5 << 8, NULL);
	close(ctl);
	ck_assert_int_eq(waitpid(mid, NULL, 0), mid);
	close(kq);
}
END_TEST

START_TEST(exit_status_of_non_child_zombie)
{
	int kq = xkqueue(), ctl;
	pid_t mid, gc = spawn_grandchild(6, false, &ctl, &mid);

	kev_ok(kq, gc, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, NULL);
	ck_assert_int_eq(write(ctl, "x", 1), 1);
	/* its parent does not reap it until the second byte */
	kev_expect(kq, WAIT_MS, gc, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
	    6 << 8, NULL);
	ck_assert_int_eq(write(ctl, "y", 1), 1);
	close(ctl);
	ck_assert_int_eq(waitpid(mid, NULL, 0), mid);
	close(kq);
}
END_TEST

/*
 * In a pid namespace of its own that still sees its parent's /proc (no
 * remount): pid numbers there name other processes in /proc, so the exit
 * status of a zombie that is not ours must not be read from /proc/<ident>.
 * Runs as pid 1 of the new namespace; returns 0 or a failure code.
 */
static int
non_child_status_in_pid_namespace(void)
{
	struct kevent ev;
	struct timespec ts = { WAIT_MS / 1000, 0 };
	int kq, go[2], ctl[2], pidp[2], n;
	pid_t mid, gc;
	char c;

	if ((kq = kqueue()) < 0 || pipe(go) != 0 || pipe(ctl) != 0 ||
	    pipe(pidp) != 0)
		return 10;
	if ((mid = fork()) < 0)
		return 11;
	if (mid == 0) {
		close(go[1]);
		close(ctl[1]);
		if ((gc = fork()) == 0) {
			if (read(go[0], &c, 1) != 1)
				_exit(100);
			_exit(6);
		}
		if (write(pidp[1], &gc, sizeof gc) != sizeof gc)
			_exit(100);
		/* not reaped until ctl closes: a zombie, not ours */
		(void)!read(ctl[0], &c, 1);
		waitpid(gc, NULL, 0);
		_exit(0);
	}
	close(go[0]);
	close(ctl[0]);
	if (read(pidp[0], &gc, sizeof gc) != sizeof gc)
		return 12;
	EV_SET(&ev, gc, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, NULL);
	if (kevent(kq, &ev, 1, NULL, 0, NULL) != 0)
		return 13;
	if (write(go[1], "x", 1) != 1)
		return 14;
	n = kevent(kq, NULL, 0, &ev, 1, &ts);
	close(ctl[1]);
	waitpid(mid, NULL, 0);
	if (n != 1 || ev.ident != (uintptr_t)gc || ev.fflags != NOTE_EXIT)
		return 15;
	return ev.data == (6 << 8) ? 0 : 16;
}

START_TEST(exit_status_of_non_child_in_pid_namespace_without_its_proc)
{
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pid_t init;

		signal(SIGTERM, SIG_DFL);
		if (unshare(CLONE_NEWPID) != 0)
			_exit(20);
		if ((init = fork()) == 0)
			_exit(non_child_status_in_pid_namespace());
		if (init < 0 || waitpid(init, &status, 0) != init)
			_exit(21);
		_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 22);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "in a new pid namespace: status 0x%x", status);
}
END_TEST

START_TEST(missing_pid_esrch)
{
	int kq = xkqueue();
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	/* reaped: the pid names nothing now */
	ck_assert_errno(kev_change(kq, pid, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0,
	    NULL), ESRCH);
	ck_assert_errno(kev_change(kq, 0, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0,
	    NULL), ESRCH);
	ck_assert_errno(kev_change(kq, (uintptr_t)INT32_MAX + 1, EVFILT_PROC,
	    EV_ADD, NOTE_EXIT, 0, NULL), ESRCH);
	close(kq);
}
END_TEST

START_TEST(missing_pid_reported_as_ev_error_entry)
{
	struct kevent ch, ev;
	int kq = xkqueue();
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	EV_SET(&ch, pid, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, (void *)9);
	ck_assert_int_eq(kevent(kq, &ch, 1, &ev, 1, NULL), 1);
	ck_assert_uint_eq(ev.ident, (uintptr_t)pid);
	ck_assert_int_eq(ev.flags, EV_ERROR);
	ck_assert_int_eq(ev.data, ESRCH);
	ck_assert_ptr_eq(ev.udata, (void *)9);
	close(kq);
}
END_TEST

START_TEST(two_kqueues_both_see_exit)
{
	int kq1 = xkqueue(), kq2 = xkqueue(), rel;
	pid_t pid = spawn_waiting(64, &rel);

	kev_ok(kq1, pid, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, (void *)1);
	kev_ok(kq2, pid, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, (void *)2);
	release_child(rel);
	kev_expect(kq1, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
	    64 << 8, (void *)1);
	kev_expect(kq2, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
	    64 << 8, (void *)2);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(kq1);
	close(kq2);
}
END_TEST

START_TEST(delete_before_exit_reports_nothing)
{
	int kq = xkqueue(), rel;
	pid_t pid = spawn_waiting(1, &rel);

	kev_ok(kq, pid, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, NULL);
	kev_ok(kq, pid, EVFILT_PROC, EV_DELETE, 0, 0, NULL);
	release_child(rel);
	wait_zombie(pid);
	{
		struct kevent ev;
		ck_assert_int_eq(kev_wait(kq, &ev, 1, 200), 0);
	}
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(kq);
}
END_TEST

START_TEST(disabled_exit_reported_when_enabled)
{
	int kq = xkqueue(), rel;
	pid_t pid = spawn_waiting(2, &rel);

	kev_ok(kq, pid, EVFILT_PROC, EV_ADD | EV_DISABLE, NOTE_EXIT, 0, NULL);
	release_child(rel);
	wait_zombie(pid);
	{
		struct kevent ev;
		ck_assert_int_eq(kev_wait(kq, &ev, 1, 200), 0);
	}
	kev_ok(kq, pid, EVFILT_PROC, EV_ENABLE, NOTE_EXIT, 0, NULL);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
	    2 << 8, NULL);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(kq);
}
END_TEST

START_TEST(exit_not_asked_for_drops_knote_with_notice)
{
	int kq = xkqueue(), rel, token;
	pid_t pid = spawn_waiting(0, &rel);

	kev_ok(kq, pid, EVFILT_PROC, EV_ADD | EV_FREEWATCH, 0, 0, &token);
	release_child(rel);
	/* FreeBSD's EV_DROP: no exit event, the knote just goes; the
	 * reference comes back as a NOTE_FREE_DROP notice */
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EV_FREEWATCH | EV_DELETE,
	    NOTE_FREE_DROP, 0, &token);
	kev_expect_none(kq);
	ck_assert_errno(kev_change(kq, pid, EVFILT_PROC, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(kq);
}
END_TEST

START_TEST(exit_fires_with_freewatch_reference)
{
	int kq = xkqueue(), rel, token;
	pid_t pid = spawn_waiting(4, &rel);

	kev_ok(kq, pid, EVFILT_PROC, EV_ADD | EV_FREEWATCH, NOTE_EXIT, 0, &token);
	release_child(rel);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS | EV_FREEWATCH,
	    NOTE_EXIT, 4 << 8, &token);
	kev_expect_none(kq);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(kq);
}
END_TEST

/*
 * Defect 23.  A change's fflags replace the registered ones on FreeBSD, even
 * for a bare EV_DISABLE, so what the knote says at exit depends on what was
 * registered then: NOTE_EXIT kept -> reported at EV_ENABLE; nothing asked
 * -> EV_DROP, but the knote stays (disabled knotes are not scanned) until
 * EV_ENABLE lets the scan drop it.
 */
START_TEST(disabled_knote_keeps_exit_for_enable)
{
	int kq = xkqueue(), rel1, rel2;
	pid_t kept = spawn_waiting(2, &rel1), bare = spawn_waiting(3, &rel2);
	struct kevent ev;

	kev_ok(kq, kept, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, UD(1));
	kev_ok(kq, kept, EVFILT_PROC, EV_DISABLE, NOTE_EXIT, 0, UD(1));
	kev_ok(kq, bare, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, UD(2));
	kev_ok(kq, bare, EVFILT_PROC, EV_DISABLE, 0, 0, UD(2));
	release_child(rel1);
	release_child(rel2);
	wait_zombie(kept);
	wait_zombie(bare);
	ck_assert_int_eq(kev_wait(kq, &ev, 1, 200), 0);
	/* both knotes are still there */
	kev_ok(kq, bare, EVFILT_PROC, EV_ENABLE, NOTE_EXIT, 0, UD(2));
	kev_ok(kq, kept, EVFILT_PROC, EV_ENABLE, 0, 0, UD(1));
	kev_expect(kq, WAIT_MS, kept, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
	    2 << 8, UD(1));
	/* the bare one had nothing to say at exit: gone, unreported */
	ck_assert_int_eq(kev_wait(kq, &ev, 1, 200), 0);
	ck_assert_errno(kev_change(kq, bare, EVFILT_PROC, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	ck_assert_errno(kev_change(kq, kept, EVFILT_PROC, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	ck_assert_int_eq(waitpid(kept, NULL, 0), kept);
	ck_assert_int_eq(waitpid(bare, NULL, 0), bare);
	close(kq);
}
END_TEST

START_TEST(disabled_knote_dropped_only_once_enabled)
{
	int kq = xkqueue(), rel1, rel2, tok1, tok2;
	pid_t drop = spawn_waiting(4, &rel1), kept = spawn_waiting(5, &rel2);
	struct kevent ev;

	kev_ok(kq, drop, EVFILT_PROC, EV_ADD | EV_FREEWATCH, NOTE_EXIT, 0, &tok1);
	kev_ok(kq, drop, EVFILT_PROC, EV_DISABLE | EV_KEEPUDATA, 0, 0, NULL);
	kev_ok(kq, kept, EVFILT_PROC, EV_ADD | EV_FREEWATCH | EV_DISABLE,
	    NOTE_EXIT, 0, &tok2);
	release_child(rel1);
	release_child(rel2);
	wait_zombie(drop);
	wait_zombie(kept);
	/* neither the drop's notice nor the exit while disabled */
	ck_assert_int_eq(kev_wait(kq, &ev, 1, 200), 0);
	kev_ok(kq, drop, EVFILT_PROC, EV_ENABLE | EV_KEEPUDATA, 0, 0, NULL);
	kev_expect(kq, WAIT_MS, drop, EVFILT_PROC, EV_FREEWATCH | EV_DELETE,
	    NOTE_FREE_DROP, 0, &tok1);
	kev_expect_none(kq);
	ck_assert_errno(kev_change(kq, drop, EVFILT_PROC, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	/* the exit comes with its reference once enabled, and only then */
	kev_ok(kq, kept, EVFILT_PROC, EV_ENABLE | EV_KEEPUDATA, NOTE_EXIT, 0,
	    NULL);
	kev_expect(kq, WAIT_MS, kept, EVFILT_PROC, EXIT_FLAGS | EV_FREEWATCH,
	    NOTE_EXIT, 5 << 8, &tok2);
	kev_expect_none(kq);
	ck_assert_int_eq(waitpid(drop, NULL, 0), drop);
	ck_assert_int_eq(waitpid(kept, NULL, 0), kept);
	close(kq);
}
END_TEST

/* The pidfd (and the connector socket) are the library's: closing every
 * number above the kqueue leaves NOTE_EXIT working. */
START_TEST(close_range_over_kqueue_spares_proc_descriptors)
{
	int rel, kq;
	pid_t pid = spawn_waiting(9, &rel);
	unsigned fflags = NOTE_EXIT | (have_connector() ? NOTE_FORK : 0);

	kq = xkqueue();
	kev_ok(kq, pid, EVFILT_PROC, EV_ADD, fflags, 0, UD(3));
	/* every number above kq but the child's release pipe */
	if (rel > kq + 1)
		ck_assert_int_eq(close_range((unsigned)kq + 1,
		    (unsigned)rel - 1, 0), 0);
	ck_assert_int_eq(close_range((unsigned)(rel > kq ? rel : kq) + 1, ~0u,
	    0), 0);
	release_child(rel);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
	    9 << 8, UD(3));
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(kq);
}
END_TEST

/* ------------------------------------------------------ proc connector */

START_TEST(fork_reported)
{
	int kq = xkqueue(), p[2], status;
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pid_t gc;

		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			_exit(100);
		gc = fork();
		if (gc == 0)
			_exit(0);
		waitpid(gc, NULL, 0);
		if (read(p[0], &c, 1) < 0)
			_exit(100);
		_exit(9);
	}
	close(p[0]);
	kev_ok(kq, pid, EVFILT_PROC, EV_ADD, NOTE_FORK | NOTE_EXIT, 0, NULL);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EV_CLEAR, NOTE_FORK, 0, NULL);
	close(p[1]);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
	    9 << 8, NULL);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	close(kq);
}
END_TEST

static void *
nothing(void *arg)
{
	return arg;
}

START_TEST(thread_creation_is_not_a_fork)
{
	int kq = xkqueue(), p[2];
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pthread_t t;

		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			_exit(100);
		if (pthread_create(&t, NULL, nothing, NULL) != 0)
			_exit(101);
		pthread_join(t, NULL);
		_exit(0);
	}
	close(p[0]);
	kev_ok(kq, pid, EVFILT_PROC, EV_ADD, NOTE_FORK | NOTE_EXIT, 0, NULL);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	close(p[1]);
	/* the kernel's fork event for the thread is not NOTE_FORK */
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT, 0, NULL);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(kq);
}
END_TEST

START_TEST(exec_reported)
{
	int kq = xkqueue(), go[2], hold[2], status;
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(hold), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(go[1]);
		close(hold[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(100);
		/* after exec: exits with 0 when `hold` closes */
		dup2(hold[0], 0);
		execl("/bin/sh", "sh", "-c", "read x; exit 0", (char *)NULL);
		_exit(101);
	}
	close(go[0]);
	close(hold[0]);
	kev_ok(kq, pid, EVFILT_PROC, EV_ADD, NOTE_EXEC | NOTE_EXIT, 0, NULL);
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EV_CLEAR, NOTE_EXEC, 0, NULL);
	close(hold[1]);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT, 0, NULL);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	close(go[1]);
	close(kq);
}
END_TEST

START_TEST(fork_and_exit_together_are_one_report)
{
	int kq = xkqueue(), p[2];
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			_exit(100);
		if (fork() == 0)
			_exit(0);
		_exit(8);
	}
	close(p[0]);
	kev_ok(kq, pid, EVFILT_PROC, EV_ADD, NOTE_FORK | NOTE_EXIT, 0, NULL);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	close(p[1]);
	wait_zombie(pid);
	/* the fork happened before the exit, so it is never reported after */
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS,
	    NOTE_FORK | NOTE_EXIT, 8 << 8, NULL);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(kq);
}
END_TEST

START_TEST(track_follows_child)
{
	struct kevent ev;
	int kq = xkqueue(), go[2], gcp[2], token, n;
	pid_t pid, gc;
	char c;

	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(gcp), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(go[1]);
		close(gcp[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(100);
		gc = fork();
		if (gc == 0) {
			/* exits 3 when gcp closes */
			if (read(gcp[0], &c, 1) < 0)
				_exit(100);
			_exit(3);
		}
		waitpid(gc, NULL, 0);
		_exit(1);
	}
	close(go[0]);
	close(gcp[0]);
	kev_ok(kq, pid, EVFILT_PROC, EV_ADD | EV_FREEWATCH,
	    NOTE_TRACK | NOTE_FORK | NOTE_EXIT, 0, &token);
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	/* the parent's fork, then the new child with its parent in data */
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EV_CLEAR, NOTE_FORK, 0, &token);
	memset(&ev, 0, sizeof ev);
	n = kev_wait(kq, &ev, 1, WAIT_MS);
	ck_assert_int_eq(n, 1);
	gc = (pid_t)ev.ident;
	ck_assert_int_ne(gc, pid);
	ck_assert_int_eq(ev.filter, EVFILT_PROC);
	/* knotes the library makes take no EV_FREEWATCH reference */
	ck_assert_uint_eq(ev.flags, EV_CLEAR);
	ck_assert_uint_eq(ev.fflags, NOTE_CHILD);
	ck_assert_int_eq(ev.data, pid);
	ck_assert_ptr_eq(ev.udata, &token);
	/* the child is watched with the same fflags: its exit comes */
	close(gcp[1]);
	kev_expect(kq, WAIT_MS, gc, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
	    3 << 8, &token);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS | EV_FREEWATCH,
	    NOTE_EXIT, 1 << 8, &token);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(go[1]);
	close(kq);
}
END_TEST

START_TEST(track_child_exit_before_read_comes_after_note_child)
{
	int kq = xkqueue(), go[2];
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(go), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pid_t gc;

		close(go[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(100);
		gc = fork();
		if (gc == 0)
			_exit(4);
		/* reap it only when told: it stays a zombie meanwhile */
		if (read(go[0], &c, 1) != 1)
			_exit(100);
		waitpid(gc, NULL, 0);
		_exit(0);
	}
	close(go[0]);
	kev_ok(kq, pid, EVFILT_PROC, EV_ADD, NOTE_TRACK | NOTE_EXIT, 0, NULL);
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	{
		struct kevent ev;
		pid_t gc;

		ck_assert_int_eq(kev_wait(kq, &ev, 1, WAIT_MS), 1);
		gc = (pid_t)ev.ident;
		ck_assert_uint_eq(ev.fflags, NOTE_CHILD);
		ck_assert_int_eq(ev.data, pid);
		ck_assert_uint_eq(ev.flags, EV_CLEAR);
		/* NOTE_CHILD (data: parent) and NOTE_EXIT (data: status)
		 * cannot share an event: the exit follows */
		kev_expect(kq, WAIT_MS, gc, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
		    4 << 8, NULL);
	}
	ck_assert_int_eq(write(go[1], "y", 1), 1);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT, 0, NULL);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(go[1]);
	close(kq);
}
END_TEST

/*
 * Defect 21.  The tracked process forks a child that exits and is reaped
 * before anyone reads the connector: no pidfd can be had for it any more,
 * yet the connector's fork and exit messages say all NOTE_CHILD and
 * NOTE_EXIT need.
 */
START_TEST(track_reports_child_reaped_before_read)
{
	int kq = xkqueue(), go[2], rep[2], token;
	pid_t pid, c;
	char ch;

	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(rep), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(go[1]);
		close(rep[0]);
		if (read(go[0], &ch, 1) != 1)
			_exit(100);
		if ((c = fork()) == 0)
			_exit(5);
		if (waitpid(c, NULL, 0) != c ||
		    write(rep[1], &c, sizeof c) != sizeof c)
			_exit(101);
		if (read(go[0], &ch, 1) < 0)	/* until we close it */
			_exit(102);
		_exit(0);
	}
	close(go[0]);
	close(rep[1]);
	kev_ok(kq, pid, EVFILT_PROC, EV_ADD, NOTE_TRACK | NOTE_FORK | NOTE_EXIT,
	    0, &token);
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	read_bounded(rep[0], &c, sizeof c);	/* reaped already */
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EV_CLEAR, NOTE_FORK, 0, &token);
	kev_expect(kq, WAIT_MS, c, EVFILT_PROC, EV_CLEAR, NOTE_CHILD, pid,
	    &token);
	kev_expect(kq, WAIT_MS, c, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT, 5 << 8,
	    &token);
	kev_expect_none(kq);
	close(go[1]);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT, 0,
	    &token);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(rep[0]);
	close(kq);
}
END_TEST

/*
 * The tracked process's child forks a grandchild; both have exited and been
 * reaped before the connector is read.  The grandchild is tracked through
 * the child all the same.  Order: each knote's NOTE_CHILD first, the rest
 * of what it has to say re-queued behind it.
 */
START_TEST(track_follows_grandchild_of_reaped_child)
{
	int kq = xkqueue(), go[2], rep[2];
	pid_t pid, c, g;
	char ch;

	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(rep), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(go[1]);
		close(rep[0]);
		if (read(go[0], &ch, 1) != 1)
			_exit(100);
		if ((c = fork()) == 0) {
			if ((g = fork()) == 0)
				_exit(6);
			if (waitpid(g, NULL, 0) != g ||
			    write(rep[1], &g, sizeof g) != sizeof g)
				_exit(101);
			_exit(3);
		}
		if (waitpid(c, NULL, 0) != c ||
		    write(rep[1], &c, sizeof c) != sizeof c)
			_exit(102);
		if (read(go[0], &ch, 1) < 0)
			_exit(103);
		_exit(0);
	}
	close(go[0]);
	close(rep[1]);
	kev_ok(kq, pid, EVFILT_PROC, EV_ADD, NOTE_TRACK | NOTE_FORK | NOTE_EXIT,
	    0, UD(7));
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	read_bounded(rep[0], &g, sizeof g);
	read_bounded(rep[0], &c, sizeof c);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EV_CLEAR, NOTE_FORK, 0, UD(7));
	kev_expect(kq, WAIT_MS, c, EVFILT_PROC, EV_CLEAR, NOTE_CHILD, pid, UD(7));
	kev_expect(kq, WAIT_MS, g, EVFILT_PROC, EV_CLEAR, NOTE_CHILD, c, UD(7));
	kev_expect(kq, WAIT_MS, c, EVFILT_PROC, EXIT_FLAGS,
	    NOTE_FORK | NOTE_EXIT, 3 << 8, UD(7));
	kev_expect(kq, WAIT_MS, g, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT, 6 << 8,
	    UD(7));
	kev_expect_none(kq);
	close(go[1]);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT, 0,
	    UD(7));
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(rep[0]);
	close(kq);
}
END_TEST

/* --------------------------------------------------------------- PROCDESC */

/* A child with a pid of our choosing (clone3's set_tid: root), as fork(). */
static pid_t
fork_with_pid(pid_t want)
{
	struct clone_args a;
	pid_t tid = want;

	memset(&a, 0, sizeof a);
	a.exit_signal = SIGCHLD;
	a.set_tid = (uintptr_t)&tid;
	a.set_tid_size = 1;
	return (pid_t)syscall(SYS_clone3, &a, sizeof a);
}

/* The watched process exited and was reaped; another process got its pid
 * and forked before the kqueue was read.  Those are not the watched
 * process's forks: it exited without forking, and nothing of the newcomer
 * is tracked. */
START_TEST(reused_pid_forks_are_not_the_exited_process)
{
	int kq = xkqueue(), go[2], ready[2], token;
	pid_t pid, again;
	char c;

	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(ready), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (read(go[0], &c, 1) != 1)
			_exit(100);
		_exit(5);
	}
	kev_ok(kq, pid, EVFILT_PROC, EV_ADD, NOTE_FORK | NOTE_EXIT | NOTE_TRACK,
	    0, &token);
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	again = fork_with_pid(pid);
	ck_assert_msg(again >= 0, "clone3 set_tid: %s", strerror(errno));
	if (again == 0) {
		pid_t gc;

		signal(SIGTERM, SIG_DFL);
		close(go[1]);
		if ((gc = fork()) == 0)
			_exit(0);
		waitpid(gc, NULL, 0);
		if (write(ready[1], "y", 1) != 1)
			_exit(100);
		if (read(go[0], &c, 1) < 0)
			_exit(100);
		_exit(0);
	}
	ck_assert_int_eq(again, pid);
	read_bounded(ready[0], &c, 1);
	kev_expect(kq, WAIT_MS, pid, EVFILT_PROC, EXIT_FLAGS, NOTE_EXIT,
	    5 << 8, &token);
	kev_expect_none(kq);
	close(go[1]);
	ck_assert_int_eq(waitpid(again, NULL, 0), again);
	close(go[0]);
	close(ready[0]);
	close(ready[1]);
	close(kq);
}
END_TEST

START_TEST(procdesc_exit_reports_status)
{
	int kq = xkqueue(), rel, pfd, status;
	pid_t pid = spawn_waiting(7, &rel);

	pfd = pidfd_open(pid, 0);
	ck_assert_int_ge(pfd, 0);
	kev_ok(kq, pfd, EVFILT_PROCDESC, EV_ADD, NOTE_EXIT, 0, &rel);
	kev_expect_none(kq);
	release_child(rel);
	kev_expect(kq, WAIT_MS, pfd, EVFILT_PROCDESC, EXIT_FLAGS, NOTE_EXIT,
	    7 << 8, &rel);
	kev_expect_none(kq);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(WEXITSTATUS(status), 7);
	close(pfd);
	close(kq);
}
END_TEST

START_TEST(procdesc_of_exited_process_reports_at_once)
{
	int kq = xkqueue(), rel, pfd;
	pid_t pid = spawn_waiting(0, &rel);

	pfd = pidfd_open(pid, 0);
	ck_assert_int_ge(pfd, 0);
	ck_assert_int_eq(kill(pid, SIGUSR1), 0);
	wait_zombie(pid);
	kev_ok(kq, pfd, EVFILT_PROCDESC, EV_ADD, NOTE_EXIT, 0, NULL);
	kev_expect(kq, WAIT_MS, pfd, EVFILT_PROCDESC, EXIT_FLAGS, NOTE_EXIT,
	    SIGUSR1, NULL);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(rel);
	close(pfd);
	close(kq);
}
END_TEST

START_TEST(procdesc_rejects_other_descriptors)
{
	int kq = xkqueue(), p[2];

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_errno(kev_change(kq, p[0], EVFILT_PROCDESC, EV_ADD, NOTE_EXIT,
	    0, NULL), EINVAL);
	close(p[0]);
	ck_assert_errno(kev_change(kq, p[0], EVFILT_PROCDESC, EV_ADD, NOTE_EXIT,
	    0, NULL), EBADF);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(procdesc_close_removes_knote)
{
	int kq = xkqueue(), rel, pfd, token;
	pid_t pid = spawn_waiting(0, &rel);

	pfd = pidfd_open(pid, 0);
	ck_assert_int_ge(pfd, 0);
	kev_ok(kq, pfd, EVFILT_PROCDESC, EV_ADD | EV_FREEWATCH, NOTE_EXIT, 0,
	    &token);
	close(pfd);
	kev_expect(kq, WAIT_MS, pfd, EVFILT_PROCDESC, EV_FREEWATCH | EV_DELETE,
	    NOTE_FREE_CLOSE, 0, &token);
	release_child(rel);
	wait_zombie(pid);
	kev_expect_none(kq);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(kq);
}
END_TEST

START_TEST(procdesc_fork_reports_child_pid)
{
	int kq = xkqueue(), p[2], pfd;
	pid_t pid, gc = 0;
	char c;
	int gcp[2];

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(pipe(gcp), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[1]);
		close(gcp[0]);
		if (read(p[0], &c, 1) != 1)
			_exit(100);
		gc = fork();
		if (gc == 0)
			_exit(0);
		if (write(gcp[1], &gc, sizeof gc) != sizeof gc)
			_exit(100);
		waitpid(gc, NULL, 0);
		if (read(p[0], &c, 1) < 0)
			_exit(100);
		_exit(0);
	}
	close(p[0]);
	close(gcp[1]);
	pfd = pidfd_open(pid, 0);
	ck_assert_int_ge(pfd, 0);
	kev_ok(kq, pfd, EVFILT_PROCDESC, EV_ADD, NOTE_FORK, 0, NULL);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert_int_eq(read(gcp[0], &gc, sizeof gc), sizeof gc);
	/* FreeBSD: data is the pid of the latest child */
	kev_expect(kq, WAIT_MS, pfd, EVFILT_PROCDESC, EV_CLEAR, NOTE_FORK, gc,
	    NULL);
	close(p[1]);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	close(gcp[0]);
	close(pfd);
	close(kq);
}
END_TEST

/* Without pidfd_open() (Linux < 5.3, valgrind 3.19) the filter says so. */
START_TEST(add_without_pidfd_is_enosys)
{
	int kq = xkqueue();

	ck_assert_errno(kev_change(kq, getpid(), EVFILT_PROC, EV_ADD, NOTE_EXIT,
	    0, NULL), ENOSYS);
	close(kq);
}
END_TEST

/* Outside the initial namespaces (or before Linux 6.6 without
 * CAP_NET_ADMIN) there is no proc connector: EV_ADD says so. */
START_TEST(connector_unavailable_is_enotsup)
{
	int kq = xkqueue();

	ck_assert_errno(kev_change(kq, getpid(), EVFILT_PROC, EV_ADD, NOTE_FORK,
	    0, NULL), ENOTSUP);
	ck_assert_errno(kev_change(kq, getpid(), EVFILT_PROC, EV_ADD,
	    NOTE_EXEC | NOTE_EXIT, 0, NULL), ENOTSUP);
	ck_assert_errno(kev_change(kq, getpid(), EVFILT_PROC, EV_ADD, NOTE_TRACK,
	    0, NULL), ENOTSUP);
	/* NOTE_EXIT alone does not need it */
	kev_ok(kq, getpid(), EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, NULL);
	close(kq);
}
END_TEST

/* Skip what needs the proc connector (root / CAP_NET_ADMIN in the initial
 * namespaces) where it is unavailable. */
static bool
have_connector(void)
{
	int kq = kqueue();
	bool ok = kev_change(kq, getpid(), EVFILT_PROC, EV_ADD, NOTE_FORK, 0,
	    NULL) == 0 || errno != ENOTSUP;

	close(kq);
	return ok;
}

static Suite *
proc_suite(void)
{
	Suite *s = suite_create("proc");
	TCase *tc = tcase_create("proc");
	TCase *cn, *pd;
	int fd = pidfd_open(getpid(), 0);

	if (fd < 0 && errno == ENOSYS) {
		tcase_add_test(tc, add_without_pidfd_is_enosys);
		suite_add_tcase(s, tc);
		return s;
	}
	close(fd);
	cn = tcase_create("connector");
	pd = tcase_create("procdesc");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, exit_reports_status_without_reaping);
	tcase_add_test(tc, exit_reports_killing_signal);
	tcase_add_test(tc, zombie_reports_exit_at_once);
	tcase_add_test(tc, exit_status_of_non_child_reaped_by_its_parent);
	tcase_add_test(tc, exit_status_of_non_child_zombie);
	if (geteuid() == 0)
		tcase_add_test(tc,
		    exit_status_of_non_child_in_pid_namespace_without_its_proc);
	tcase_add_test(tc, missing_pid_esrch);
	tcase_add_test(tc, missing_pid_reported_as_ev_error_entry);
	tcase_add_test(tc, two_kqueues_both_see_exit);
	tcase_add_test(tc, delete_before_exit_reports_nothing);
	tcase_add_test(tc, disabled_exit_reported_when_enabled);
	tcase_add_test(tc, exit_not_asked_for_drops_knote_with_notice);
	tcase_add_test(tc, exit_fires_with_freewatch_reference);
	tcase_add_test(tc, disabled_knote_keeps_exit_for_enable);
	tcase_add_test(tc, disabled_knote_dropped_only_once_enabled);
	tcase_add_test(tc, close_range_over_kqueue_spares_proc_descriptors);
	suite_add_tcase(s, tc);

	tcase_set_timeout(cn, 30);
	if (!have_connector()) {
		tcase_add_test(cn, connector_unavailable_is_enotsup);
		suite_add_tcase(s, cn);
		tcase_add_test(pd, procdesc_exit_reports_status);
		tcase_add_test(pd, procdesc_of_exited_process_reports_at_once);
		tcase_add_test(pd, procdesc_rejects_other_descriptors);
		tcase_add_test(pd, procdesc_close_removes_knote);
		suite_add_tcase(s, pd);
		return s;
	}
	tcase_add_test(cn, fork_reported);
	tcase_add_test(cn, thread_creation_is_not_a_fork);
	tcase_add_test(cn, exec_reported);
	tcase_add_test(cn, fork_and_exit_together_are_one_report);
	tcase_add_test(cn, track_follows_child);
	tcase_add_test(cn, track_child_exit_before_read_comes_after_note_child);
	tcase_add_test(cn, track_reports_child_reaped_before_read);
	tcase_add_test(cn, track_follows_grandchild_of_reaped_child);
	tcase_add_test(cn, reused_pid_forks_are_not_the_exited_process);
	suite_add_tcase(s, cn);

	tcase_set_timeout(pd, 30);
	tcase_add_test(pd, procdesc_exit_reports_status);
	tcase_add_test(pd, procdesc_of_exited_process_reports_at_once);
	tcase_add_test(pd, procdesc_rejects_other_descriptors);
	tcase_add_test(pd, procdesc_close_removes_knote);
	tcase_add_test(pd, procdesc_fork_reports_child_pid);
	suite_add_tcase(s, pd);
	return s;
}

KQ_TEST_MAIN(proc_suite)
