/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_descriptors.c: who owns which descriptor.  The numbers an application
 * holds for a kqueue are aliases (dup, dup2, dup3, F_DUPFD all work until the
 * last one is closed; an in-flight kevent() keeps the kqueue alive); the
 * library's own descriptors are invisible to the application's close family
 * (closefrom(kq + 1) is harmless, as on FreeBSD); and the library never acts
 * on a number the application may have reused, also without close tracking
 * (KQFREE_CLOSE_TRACKING=0, tested by re-running this program with it set).
 */
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "util.h"

static const struct timespec zero;

/* -------------------------------------------------------------- aliases */

START_TEST(dup_of_kqueue_works_until_last_close)
{
	int kq = xkqueue(), d, d2, d3;
	struct kevent ev;

	d = dup(kq);
	ck_assert_int_ge(d, 0);
	/* a number kevent() never saw before */
	kev_ok(d, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(1));
	kev_ok(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(1));
	/* the original goes: the queued event stays, reachable by the dup */
	ck_assert_int_eq(close(kq), 0);
	kev_expect(d, 1000, 1, EVFILT_USER, EV_CLEAR, 0, 0, UD(1));
	d2 = fcntl(d, F_DUPFD_CLOEXEC, 100);
	ck_assert_int_ge(d2, 100);
	d3 = dup3(d, 200, O_CLOEXEC);
	ck_assert_int_eq(d3, 200);
	ck_assert_int_eq(close(d), 0);
	kev_ok(d2, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(1));
	kev_expect(d3, 1000, 1, EVFILT_USER, EV_CLEAR, 0, 0, UD(1));
	ck_assert_int_eq(close(d2), 0);
	kev_ok(d3, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(1));
	kev_expect(d3, 1000, 1, EVFILT_USER, EV_CLEAR, 0, 0, UD(1));
	ck_assert_int_eq(close(d3), 0);
	ck_assert_errno(kevent(d3, NULL, 0, &ev, 1, &zero), EBADF);
	ck_assert_errno(kevent(d, NULL, 0, &ev, 1, &zero), EBADF);
}
END_TEST

START_TEST(dup2_over_last_alias_kills_kqueue)
{
	int kq = xkqueue(), p[2];
	struct kevent ev;

	xpipe(p);
	kev_ok(kq, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
	ck_assert_int_eq(dup2(p[0], kq), kq);
	/* the number is a pipe now, not a kqueue */
	ck_assert_errno(kevent(kq, NULL, 0, &ev, 1, &zero), EBADF);
	xwrite(p[1], 1);
	ck_assert_int_eq(read(kq, &ev, 1), 1);
	close(kq);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* An in-flight kevent() keeps its kqueue and waits on the library's own
 * descriptor: closing the number on another thread and reusing it for
 * another file (here a pipe, which epoll_wait() would refuse with EINVAL)
 * never makes the waiter use that file.  Looped: the window is between the
 * waiter's lookup and its wait. */
struct one_call {
	int kq;
	_Atomic bool started;
	int r, err;
};

static void *
one_kevent(void *arg)
{
	struct one_call *c = arg;
	struct kevent ev;
	struct timespec ts = { 0, 200000000 };

	atomic_store(&c->started, true);
	errno = 0;
	c->r = kevent(c->kq, NULL, 0, &ev, 1, &ts);
	c->err = errno;
	return NULL;
}

START_TEST(close_kqueue_while_waiting_never_uses_reused_number)
{
	int i, reused = 0;
	cpu_set_t one;

	/* one CPU for both threads: the waiter's unlock hands the CPU to a
	 * closer blocked on it, right inside the window */
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
	ck_assert_int_eq(sched_setaffinity(0, sizeof one, &one), 0);

	for (i = 0; i < 300; i++) {
		struct one_call c = { .kq = xkqueue() };
		pthread_t t;
		int p[2];

		ck_assert_int_eq(pthread_create(&t, NULL, one_kevent, &c), 0);
		while (!atomic_load(&c.started))
			sched_yield();
		close(c.kq);
		xpipe(p);
		reused += p[0] == c.kq;
		join_bounded(t, 3000);
		ck_assert_msg(c.r == -1 && c.err == EBADF,
		    "iteration %d: kevent returned %d (%s)", i, c.r, strerror(c.err));
		close(p[0]);
		close(p[1]);
	}
	ck_assert_int_gt(reused, 0);
}
END_TEST

struct tid_waiter {
	struct kev_waiter w;
	_Atomic pid_t tid;
};

static void *
tid_waiter_main(void *arg)
{
	struct tid_waiter *t = arg;

	atomic_store(&t->tid, gettid());
	return kev_waiter_main(&t->w);
}

/* A sleeper waits on the library's own descriptor, never on a number the
 * application can close and reuse; closing the last alias wakes it with
 * EBADF. */
START_TEST(sleeper_waits_on_library_descriptor)
{
	struct tid_waiter w = { .w.kq = xkqueue() };
	pthread_t t;
	int fd;

	ck_assert_int_eq(pthread_create(&t, NULL, tid_waiter_main, &w), 0);
	while (atomic_load(&w.tid) == 0)
		sched_yield();
	fd = sleeping_on(atomic_load(&w.tid));
	ck_assert_int_ge(fd, 0);
	ck_assert_int_ne(fd, w.w.kq);
	ck_assert_int_ge(fcntl(fd, F_GETFD), 0);
	ck_assert_errno(close(fd), EBADF);
	ck_assert_int_eq(close(w.w.kq), 0);
	join_bounded(t, 3000);
	ck_assert_int_eq(w.w.n, -1);
}
END_TEST

/* close(kq) in a signal handler that interrupted the library anywhere
 * (allocating, holding its locks): no deadlock, and the kqueue dies. */
static _Atomic int victim = -1;
static _Atomic int handler_closes;

static void
close_victim(int sig)
{
	int fd = atomic_exchange(&victim, -1);

	(void)sig;
	if (fd >= 0 && close(fd) == 0)
		atomic_fetch_add(&handler_closes, 1);
}

struct pelter {
	pthread_t target;
	_Atomic bool stop;
};

static void *
pelt(void *arg)
{
	struct pelter *p = arg;
	struct timespec ts = { 0, 20000 };

	while (!atomic_load(&p->stop)) {
		pthread_kill(p->target, SIGUSR1);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

START_TEST(close_kqueue_in_signal_handler_inside_library)
{
	struct sigaction sa = { .sa_handler = close_victim };
	struct pelter p = { .target = pthread_self() };
	pthread_t t;
	int i, j, p2[2];

	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	xpipe(p2);
	ck_assert_int_eq(pthread_create(&t, NULL, pelt, &p), 0);
	for (i = 0; i < 3000 && atomic_load(&handler_closes) < 200; i++) {
		int kq = kqueue();
		if (kq < 0) {
			ck_assert_int_eq(errno, EINTR);
			continue;
		}
		atomic_store(&victim, kq);
		for (j = 0; j < 20; j++) {
			struct kevent ch[3];
			EV_SET(&ch[0], 1000 + j, EVFILT_TIMER, EV_ADD, 0, 1000, NULL);
			EV_SET(&ch[1], j, EVFILT_USER, EV_ADD | EV_FREEWATCH, 0, 0, UD(j));
			EV_SET(&ch[2], p2[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
			kevent(kq, ch, 3, NULL, 0, &zero);
		}
		if (atomic_exchange(&victim, -1) == kq)
			close(kq);
	}
	atomic_store(&p.stop, true);
	join_bounded(t, 2000);
	signal(SIGUSR1, SIG_DFL);
	ck_assert_int_gt(atomic_load(&handler_closes), 0);
	close(p2[0]);
	close(p2[1]);
}
END_TEST

/* ----------------------------------------------------- the library's own */

/* The numbers just above a kqueue are the library's (its own epoll
 * descriptor, the wake eventfd, a timerfd): the application's close family
 * cannot close them, and the library never writes into a file that got one
 * of the application's numbers. */
START_TEST(closefrom_above_kqueue_is_harmless)
{
	int kq = xkqueue(), p[2], files[16], i;
	struct kevent ev;
	char c;

	kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(1));
	kev_ok(kq, 2, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 10, UD(2));
	closefrom(kq + 1);
	/* new files take whatever numbers are free now */
	for (i = 0; i < 16; i += 2)
		ck_assert_int_eq(pipe2(&files[i], O_NONBLOCK | O_CLOEXEC), 0);
	kev_ok(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(1));
	kev_expect(kq, 1000, 1, EVFILT_USER, EV_CLEAR, 0, 0, UD(1));
	kev_expect(kq, 1000, 2, EVFILT_TIMER, EV_CLEAR | EV_ONESHOT, 0, 1, UD(2));
	for (i = 0; i < 16; i += 2)
		ck_assert_errno((int)read(files[i], &c, 1), EAGAIN);
	/* the application cannot close them one by one either */
	for (i = kq + 1; i < files[0]; i++)
		ck_assert_errno(close(i), EBADF);
	xpipe(p);
	ck_assert_errno(dup2(p[0], kq + 1), EBUSY);
	ck_assert_int_eq(kevent(kq, NULL, 0, &ev, 1, &zero), 0);
	for (i = 0; i < 16; i++)
		close(files[i]);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(close_range_over_kqueue_spares_library_fds)
{
	int kq = xkqueue(), p[2];

	xpipe(p);
	kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(1));
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, UD(9));
	/* kq itself, the library's numbers and the pipe all in range */
	ck_assert_int_eq(close_range((unsigned)kq, ~0u, 0), 0);
	ck_assert_int_eq(fcntl(kq, F_GETFD), -1);
	ck_assert_int_eq(fcntl(p[0], F_GETFD), -1);
	kq = xkqueue();
	kev_ok(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(2));
	kev_ok(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(2));
	kev_expect(kq, 1000, 1, EVFILT_USER, EV_CLEAR, 0, 0, UD(2));
	close(kq);
}
END_TEST

START_TEST(library_fds_are_cloexec)
{
	bool before[64] = { false };
	int kq, fd, n = 0;
	struct kevent ch[2];

	for (fd = 0; fd < 64; fd++)
		before[fd] = fcntl(fd, F_GETFD) >= 0;
	kq = kqueuex(KQUEUE_CLOEXEC);
	ck_assert_int_ge(kq, 0);
	EV_SET(&ch[0], 1, EVFILT_TIMER, EV_ADD, 0, 1000, NULL);
	EV_SET(&ch[1], 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
	ck_assert_int_eq(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	for (fd = 0; fd < 64; fd++) {
		int fl = fcntl(fd, F_GETFD);
		if (fl < 0 || before[fd])
			continue;
		char path[64], link[256] = "";
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		ck_assert_int_gt(readlink(path, link, sizeof link - 1), 0);
		ck_assert_msg(fl & FD_CLOEXEC, "fd %d (%s) is not close-on-exec", fd, link);
		n++;
	}
	ck_assert_int_ge(n, 2);
	close(kq);
}
END_TEST

/*
 * The library's descriptors are not the application's: a change naming one
 * is EBADF, as for any number the application does not hold (it used to
 * reach epoll: EINVAL for the epoll set, EEXIST for the wake eventfd).
 */
START_TEST(changes_on_library_descriptors_are_ebadf)
{
	static const short filters[] = { EVFILT_READ, EVFILT_WRITE,
	    EVFILT_VNODE, EVFILT_EMPTY };
	bool before[64] = { false };
	int kq, fd, n = 0;

	kevent(-1, NULL, 0, NULL, 0, NULL);	/* reclaim closed kqueues first */
	for (fd = 0; fd < 64; fd++)
		before[fd] = fcntl(fd, F_GETFD) >= 0;
	kq = xkqueue();
	kev_ok(kq, 1, EVFILT_TIMER, EV_ADD, 0, 1000, UD(1));
	for (fd = 0; fd < 64; fd++) {
		if (before[fd] || fd == kq || fcntl(fd, F_GETFD) < 0)
			continue;
		for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
			ck_assert_errno(kev_change(kq, fd, filters[i], EV_ADD,
			    NOTE_WRITE, 0, UD(2)), EBADF);
			ck_assert_errno(kev_change(kq, fd, filters[i], EV_DELETE,
			    0, 0, NULL), EBADF);
		}
		n++;
	}
	ck_assert_int_ge(n, 2);		/* the epoll set, the wake eventfd... */
	kev_expect_none(kq);
	close(kq);
}
END_TEST

/*
 * Reading an eventfd's count opens /proc/self/fdinfo/N for a moment, at the
 * lowest free number, and so does a pidfd for EVFILT_PROC: while
 * another thread does both, an EV_ADD on a number the application has just
 * closed must still fail with EBADF (it used to land on the /proc file,
 * leaving a knote on a closed number).
 */
struct fdinfo_reader {
	int kq;
	_Atomic bool stop;
};

static void *
read_eventfd_counts(void *arg)
{
	struct fdinfo_reader *r = arg;
	struct kevent ev, ch[2];

	/* and a pidfd of the library's own that stays a while */
	EV_SET(&ch[0], getpid(), EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, NULL);
	EV_SET(&ch[1], getpid(), EVFILT_PROC, EV_DELETE, 0, 0, NULL);
	while (!atomic_load(&r->stop)) {
		kevent(r->kq, NULL, 0, &ev, 1, &(struct timespec){ 0, 0 });
		kevent(r->kq, &ch[0], 1, NULL, 0, NULL);
		kevent(r->kq, &ch[1], 1, NULL, 0, NULL);
	}
	return NULL;
}

START_TEST(add_racing_with_library_descriptors_is_ebadf)
{
	struct fdinfo_reader r = { .kq = xkqueue() };
	int kq = xkqueue(), efd = eventfd(1, EFD_CLOEXEC), hole, bad = 0;
	pthread_t t;
	int64_t t0;
	long tries = 0;

	ck_assert_int_ge(efd, 0);
	kev_ok(r.kq, efd, EVFILT_READ, EV_ADD, 0, 0, UD(1));
	hole = open("/dev/null", O_RDONLY | O_CLOEXEC);	/* lowest free */
	ck_assert_int_ge(hole, 0);
	ck_assert_int_eq(close(hole), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, read_eventfd_counts, &r), 0);
	for (t0 = now_ms(); now_ms() - t0 < 1500 && bad == 0; tries++)
		if (kev_change(kq, hole, EVFILT_READ, EV_ADD, 0, 0, UD(2)) == 0)
			bad++;
		else
			ck_assert_int_eq(errno, EBADF);
	atomic_store(&r.stop, true);
	join_bounded(t, 2000);
	ck_assert_msg(bad == 0, "EV_ADD on closed fd %d succeeded (try %ld)",
	    hole, tries);
	ck_assert_errno(kev_change(kq, hole, EVFILT_READ, EV_DELETE, 0, 0,
	    NULL), EBADF);
	close(efd);
	close(r.kq);
	close(kq);
}
END_TEST

/* ------------------------------------------------ without close tracking */

/*
 * KQFREE_CLOSE_TRACKING=0: the library sees no close at all.  Still: a
 * closed kqueue's resources come back (no EMFILE at a low limit), a number
 * reused by another file is not taken for the kqueue, and a fork child
 * closes nothing but what is still the kqueue.  Run in a fresh exec of this
 * program with the variable set (it is read once, at load).
 */
static int
untracked_scenario(void)
{
	struct rlimit rl = { 64, 64 };
	struct kevent ev;
	int i, kq, fd, p[2], status;
	pid_t pid;

	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 1;
	for (i = 0; i < 500; i++) {
		if ((kq = kqueue()) < 0)
			return 2;
		ev.filter = EVFILT_USER;
		EV_SET(&ev, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
		if (kevent(kq, &ev, 1, NULL, 0, NULL) != 0)
			return 3;
		close(kq);
	}
	kq = kqueue();
	close(kq);
	if ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) != kq)
		return 4;
	errno = 0;
	if (kevent(fd, NULL, 0, &ev, 1, &zero) != -1 || errno != EBADF)
		return 5;
	close(fd);
	/* the fork child must leave the pipe that reused the number open */
	kq = kqueue();
	close(kq);
	if (pipe2(p, O_CLOEXEC) != 0 || p[0] != kq)
		return 6;
	if ((pid = fork()) == 0)
		_exit(fcntl(p[0], F_GETFD) < 0 ? 1 : write(p[1], "x", 1) == 1 ? 0 : 2);
	if (waitpid(pid, &status, 0) != pid || status != 0)
		return 7;
	if (read(p[0], &ev, 1) != 1)
		return 8;
	return 0;
}

/* Descriptors of anon_inode:inotify this process holds. */
static int
inotify_fds(void)
{
	char path[64], link[64];
	ssize_t k;
	int fd, n = 0;

	for (fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		if ((k = readlink(path, link, sizeof link - 1)) <= 0)
			continue;
		link[k] = '\0';
		if (strstr(link, "inotify") != NULL)
			n++;
	}
	return n;
}

/*
 * Untracked: the application closes a deleted regular file an EVFILT_READ
 * knote watches, so the kernel drops the inotify watch under the knote.
 * The kqueue's close must still give its share of the inotify instance back
 * (the instance's fd closes; nothing is left pointing at the freed kqueue,
 * which a later overflow would kick).
 */
static int
untracked_inotify_scenario(void)
{
	char path[] = "/tmp/kqfree-untracked-XXXXXX";
	struct kevent ev;
	int kq, f;

	if ((kq = kqueue()) < 0 || (f = mkstemp(path)) < 0)
		return 1;
	EV_SET(&ev, f, EVFILT_READ, EV_ADD, 0, 0, NULL);
	if (kevent(kq, &ev, 1, NULL, 0, NULL) != 0)
		return 2;
	if (inotify_fds() != 1)
		return 3;
	unlink(path);
	close(f);	/* the watch goes: IN_DELETE_SELF, IN_IGNORED */
	if (kevent(kq, NULL, 0, &ev, 1, &zero) < 0)
		return 4;
	close(kq);
	kq = kqueue();	/* reaps the closed one */
	close(kq);
	return inotify_fds() == 0 ? 0 : 5;
}

static char self_exe[4096];

START_TEST(untracked_close_never_confuses_numbers)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		char *argv[] = { self_exe, "--untracked", NULL };
		setenv("KQFREE_CLOSE_TRACKING", "0", 1);
		execv("/proc/self/exe", argv);
		_exit(99);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "untracked scenario failed: status 0x%x", status);
}
END_TEST

START_TEST(untracked_read_on_deleted_file_gives_inotify_back)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		char *argv[] = { self_exe, "--untracked-inotify", NULL };
		setenv("KQFREE_CLOSE_TRACKING", "0", 1);
		execv("/proc/self/exe", argv);
		_exit(99);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "untracked inotify scenario failed: status 0x%x", status);
}
END_TEST

static Suite *
descriptors_suite(void)
{
	Suite *s = suite_create("descriptors");
	TCase *tc = tcase_create("aliases");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, dup_of_kqueue_works_until_last_close);
	tcase_add_test(tc, dup2_over_last_alias_kills_kqueue);
	tcase_add_test(tc, close_kqueue_while_waiting_never_uses_reused_number);
	tcase_add_test(tc, sleeper_waits_on_library_descriptor);
	tcase_add_test(tc, close_kqueue_in_signal_handler_inside_library);
	suite_add_tcase(s, tc);
	tc = tcase_create("own");
	tcase_add_test(tc, closefrom_above_kqueue_is_harmless);
	tcase_add_test(tc, close_range_over_kqueue_spares_library_fds);
	tcase_add_test(tc, library_fds_are_cloexec);
	tcase_add_test(tc, changes_on_library_descriptors_are_ebadf);
	tcase_add_test(tc, add_racing_with_library_descriptors_is_ebadf);
	suite_add_tcase(s, tc);
	tc = tcase_create("untracked");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, untracked_close_never_confuses_numbers);
	tcase_add_test(tc, untracked_read_on_deleted_file_gives_inotify_back);
	suite_add_tcase(s, tc);
	return s;
}

int
main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	if (argc > 1 && strcmp(argv[1], "--untracked") == 0)
		return untracked_scenario();
	if (argc > 1 && strcmp(argv[1], "--untracked-inotify") == 0)
		return untracked_inotify_scenario();
	snprintf(self_exe, sizeof self_exe, "%s", argv[0]);
	sr = srunner_create(descriptors_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
