/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * EVFILT_SIGNAL: deliveries are counted whatever the application's
 * disposition (handler, SIG_IGN, SIG_DFL), in every kqueue watching, also
 * when other threads take the signal or every thread blocks it; the
 * application's disposition keeps working and comes back on EV_DELETE.
 * Check runs each case in its own forked process, so dispositions set here
 * do not leak between cases.
 */
/* sigset(), sigignore() and siginterrupt() are obsolete XSI calls, tested
 * here because programs still use them. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include "util.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 5000

/* glibc declares it only for XPG before issue 7; it still exports it. */
extern sighandler_t bsd_signal(int, sighandler_t);

static atomic_int handled;
static atomic_int handled_signo;
static atomic_int handled_code;

static void
on_signal(int sig)
{
	atomic_fetch_add(&handled, 1);
	atomic_store(&handled_signo, sig);
}

static void
on_siginfo(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	atomic_fetch_add(&handled, 1);
	atomic_store(&handled_signo, sig);
	atomic_store(&handled_code, si->si_code);
}

static void
kill_self(int sig, int times)
{
	for (int i = 0; i < times; i++)
		ck_assert_int_eq(kill(getpid(), sig), 0);
}

static void
set_handler(int sig, void (*fn)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(sig, &sa, NULL), 0);
}

START_TEST(signal_counts_each_delivery)
{
	int kq = xkqueue();

	set_handler(SIGUSR1, on_signal);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, &handled);
	kill_self(SIGUSR1, 3);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 3, &handled);
	ck_assert_int_eq(atomic_load(&handled), 3);
	kev_expect_none(kq);
	/* the count restarts after each retrieval */
	kill_self(SIGUSR1, 1);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, &handled);
	close(kq);
}
END_TEST

/*
 * A vfork() child shares the parent's memory but not its dispositions.  A
 * spawner commonly resets signals to SIG_DFL there before exec: that is
 * the child's disposition, not the parent's, which must still be its
 * handler afterwards (reported by sigaction, run on delivery, counted).
 */
START_TEST(vfork_child_resetting_a_watched_signal_leaves_the_parent_alone)
{
	struct sigaction cur;
	int kq = xkqueue(), st;

	set_handler(SIGUSR1, on_signal);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, &handled);
	pid_t pid = vfork();
	if (pid == 0) {
		(void)signal(SIGUSR1, SIG_DFL);
		_exit(0);
	}
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_int_eq(st, 0);
	ck_assert_int_eq(sigaction(SIGUSR1, NULL, &cur), 0);
	ck_assert_ptr_eq((void *)cur.sa_handler, (void *)on_signal);
	kill_self(SIGUSR1, 1);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, &handled);
	ck_assert_int_eq(atomic_load(&handled), 1);
	close(kq);
}
END_TEST

START_TEST(signal_before_add_not_counted)
{
	int kq = xkqueue();

	set_handler(SIGUSR1, on_signal);
	kill_self(SIGUSR1, 1);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(sig_ign_set_after_add_still_counted)
{
	struct sigaction cur;
	int kq = xkqueue();

	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	/* what libevent and nginx do */
	ck_assert_ptr_ne(signal(SIGUSR1, SIG_IGN), SIG_ERR);
	kill_self(SIGUSR1, 2);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 2, NULL);
	/* the application sees its own disposition */
	ck_assert_int_eq(sigaction(SIGUSR1, NULL, &cur), 0);
	ck_assert_ptr_eq((void *)cur.sa_handler, (void *)SIG_IGN);
	close(kq);
}
END_TEST

START_TEST(sig_ign_set_before_add_counted)
{
	int kq = xkqueue();

	ck_assert_ptr_ne(signal(SIGUSR2, SIG_IGN), SIG_ERR);
	kev_ok(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	kill_self(SIGUSR2, 1);
	kev_expect(kq, WAIT_MS, SIGUSR2, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	close(kq);
}
END_TEST

START_TEST(handler_installed_after_add_runs_with_siginfo)
{
	struct sigaction sa, cur;
	int kq = xkqueue();

	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_siginfo;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	/* oldact reports the application's handler, not the library's */
	ck_assert_int_eq(sigaction(SIGUSR1, NULL, &cur), 0);
	ck_assert_ptr_eq((void *)cur.sa_sigaction, (void *)on_siginfo);
	ck_assert(cur.sa_flags & SA_SIGINFO);

	kill_self(SIGUSR1, 1);
	ck_assert_int_eq(atomic_load(&handled), 1);
	ck_assert_int_eq(atomic_load(&handled_signo), SIGUSR1);
	ck_assert_int_eq(atomic_load(&handled_code), SI_USER);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	close(kq);
}
END_TEST

START_TEST(handler_installed_before_add_keeps_running)
{
	int kq = xkqueue();

	set_handler(SIGUSR2, on_signal);
	kev_ok(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	kill_self(SIGUSR2, 2);
	ck_assert_int_eq(atomic_load(&handled), 2);
	kev_expect(kq, WAIT_MS, SIGUSR2, EVFILT_SIGNAL, EV_CLEAR, 0, 2, NULL);
	close(kq);
}
END_TEST

START_TEST(sig_dfl_still_terminates)
{
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int kq = kqueue();
		struct kevent kev;

		signal(SIGUSR1, SIG_DFL);
		EV_SET(&kev, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
		if (kq < 0 || kevent(kq, &kev, 1, NULL, 0, NULL) != 0)
			_exit(2);
		kill(getpid(), SIGUSR1);
		_exit(3);	/* must not get here */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGUSR1,
	    "status 0x%x", status);
}
END_TEST

START_TEST(resethand_handler_runs_once_then_default)
{
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct sigaction sa, cur;
		struct kevent kev;
		struct timespec ts = { 5, 0 };
		int kq = kqueue();

		EV_SET(&kev, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
		if (kq < 0 || kevent(kq, &kev, 1, NULL, 0, NULL) != 0)
			_exit(2);
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_signal;
		sa.sa_flags = SA_RESETHAND;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGUSR2, &sa, NULL) != 0)
			_exit(3);
		kill(getpid(), SIGUSR2);
		if (atomic_load(&handled) != 1)
			_exit(4);
		if (kevent(kq, NULL, 0, &kev, 1, &ts) != 1 || kev.data != 1)
			_exit(5);
		/* the application now sees SIG_DFL, and gets it */
		if (sigaction(SIGUSR2, NULL, &cur) != 0 ||
		    cur.sa_handler != SIG_DFL)
			_exit(6);
		kill(getpid(), SIGUSR2);
		_exit(7);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGUSR2,
	    "status 0x%x", status);
}
END_TEST

START_TEST(sig_dfl_ignored_signal_counted_without_effect)
{
	int kq = xkqueue();

	signal(SIGWINCH, SIG_DFL);
	kev_ok(kq, SIGWINCH, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	kill_self(SIGWINCH, 1);
	kev_expect(kq, WAIT_MS, SIGWINCH, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	close(kq);
}
END_TEST

static atomic_bool stop_helper;

static void *
idle_thread(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop_helper))
		usleep(1000);
	return NULL;
}

START_TEST(other_thread_not_blocking_takes_signal)
{
	pthread_t t;
	sigset_t set;
	int kq = xkqueue();

	set_handler(SIGUSR1, on_signal);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	ck_assert_int_eq(pthread_create(&t, NULL, idle_thread, NULL), 0);
	/* only the helper can take it: the kernel delivers it there */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
	for (int i = 1; i <= 3; i++) {
		kill_self(SIGUSR1, 1);
		/* Linux merges a signal sent while the last one is still
		 * pending: let the helper take each before the next. */
		for (int ms = 0; atomic_load(&handled) < i && ms < WAIT_MS; ms++)
			usleep(1000);
		ck_assert_int_eq(atomic_load(&handled), i);
		/* seen pending here and delivered there: counted once */
		kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
		kev_expect_none(kq);
	}
	atomic_store(&stop_helper, true);
	pthread_join(t, NULL);
	close(kq);
}
END_TEST

static void *
kill_later(void *arg)
{
	usleep(100000);
	kill(getpid(), (int)(intptr_t)arg);
	return NULL;
}

START_TEST(ignored_signal_does_not_interrupt_kevent)
{
	pthread_t t;
	sigset_t set;
	int kq = xkqueue(), other = xkqueue(), n;
	struct kevent ev;

	ck_assert_ptr_ne(signal(SIGUSR1, SIG_IGN), SIG_ERR);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	/* the helper blocks it, so it lands in this thread, which waits on
	 * a kqueue that does not watch it */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, kill_later,
	    (void *)(intptr_t)SIGUSR1), 0);
	ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &set, NULL), 0);
	/* On FreeBSD an ignored signal interrupts nothing: the wait times
	 * out instead of failing with EINTR. */
	errno = 0;
	n = kev_wait(other, &ev, 1, 600);
	ck_assert_msg(n == 0, "n %d errno %d", n, errno);
	pthread_join(t, NULL);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	close(kq);
	close(other);
}
END_TEST

START_TEST(handled_signal_interrupts_unrelated_kevent)
{
	pthread_t t;
	sigset_t set;
	int kq = xkqueue(), other = xkqueue(), n;
	struct kevent ev;

	set_handler(SIGUSR1, on_signal);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, kill_later,
	    (void *)(intptr_t)SIGUSR1), 0);
	ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &set, NULL), 0);
	/* a handler ran: FreeBSD's kevent() fails with EINTR */
	errno = 0;
	n = kev_wait(other, &ev, 1, WAIT_MS);
	ck_assert_msg(n == -1 && errno == EINTR, "n %d errno %d", n, errno);
	ck_assert_int_eq(atomic_load(&handled), 1);
	pthread_join(t, NULL);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	close(kq);
	close(other);
}
END_TEST

START_TEST(handled_signal_wakes_its_kevent_with_the_event)
{
	pthread_t t;
	sigset_t set;
	int kq = xkqueue();

	set_handler(SIGUSR1, on_signal);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, kill_later,
	    (void *)(intptr_t)SIGUSR1), 0);
	ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &set, NULL), 0);
	/* as on FreeBSD, the knote's activation wins over EINTR */
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	ck_assert_int_eq(atomic_load(&handled), 1);
	pthread_join(t, NULL);
	close(kq);
}
END_TEST

START_TEST(two_kqueues_each_count)
{
	int kq1 = xkqueue(), kq2 = xkqueue();

	ck_assert_ptr_ne(signal(SIGUSR1, SIG_IGN), SIG_ERR);
	kev_ok(kq1, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, (void *)1);
	kev_ok(kq2, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, (void *)2);
	kill_self(SIGUSR1, 2);
	kev_expect(kq1, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 2, (void *)1);
	kev_expect(kq2, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 2, (void *)2);
	/* one kqueue letting go does not stop the other */
	kev_ok(kq1, SIGUSR1, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);
	kill_self(SIGUSR1, 1);
	kev_expect(kq2, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, (void *)2);
	kev_expect_none(kq1);
	close(kq1);
	close(kq2);
}
END_TEST

static void
assert_same_action(const struct sigaction *a, const struct sigaction *b)
{
	ck_assert_ptr_eq((void *)a->sa_handler, (void *)b->sa_handler);
	ck_assert_int_eq(a->sa_flags, b->sa_flags);
	for (int s = 1; s < NSIG; s++) {
		if (s >= 32 && s < SIGRTMIN)
			continue;
		ck_assert_int_eq(sigismember(&a->sa_mask, s),
		    sigismember(&b->sa_mask, s));
	}
}

static void
assert_same_mask(const sigset_t *a, const sigset_t *b)
{
	for (int s = 1; s < NSIG; s++) {
		if (s >= 32 && s < SIGRTMIN)
			continue;
		ck_assert_int_eq(sigismember(a, s), sigismember(b, s));
	}
}

START_TEST(delete_restores_disposition_and_mask)
{
	struct sigaction sa, before, after;
	sigset_t mbefore, mafter, block;
	int kq = xkqueue();

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	ck_assert_int_eq(sigprocmask(SIG_BLOCK, &block, NULL), 0);
	ck_assert_int_eq(sigaction(SIGUSR1, NULL, &before), 0);
	ck_assert_int_eq(sigprocmask(SIG_BLOCK, NULL, &mbefore), 0);

	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	kill_self(SIGUSR1, 1);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);

	ck_assert_int_eq(sigaction(SIGUSR1, NULL, &after), 0);
	ck_assert_int_eq(sigprocmask(SIG_BLOCK, NULL, &mafter), 0);
	assert_same_action(&before, &after);
	assert_same_mask(&mbefore, &mafter);
	/* and the kernel runs the handler itself again */
	kill_self(SIGUSR1, 1);
	ck_assert_int_eq(atomic_load(&handled), 2);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(close_of_kqueue_restores_disposition)
{
	struct sigaction before, after;
	int kq = xkqueue();

	signal(SIGUSR2, SIG_DFL);
	ck_assert_int_eq(sigaction(SIGUSR2, NULL, &before), 0);
	kev_ok(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	close(kq);
	ck_assert_int_eq(sigaction(SIGUSR2, NULL, &after), 0);
	assert_same_action(&before, &after);
}
END_TEST

START_TEST(disposition_set_while_watched_survives_delete)
{
	struct sigaction after;
	int kq = xkqueue();

	signal(SIGUSR1, SIG_DFL);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	ck_assert_ptr_eq((void *)signal(SIGUSR1, SIG_IGN), (void *)SIG_DFL);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);
	ck_assert_int_eq(sigaction(SIGUSR1, NULL, &after), 0);
	ck_assert_ptr_eq((void *)after.sa_handler, (void *)SIG_IGN);
	/* really ignored by the kernel now: we survive */
	kill_self(SIGUSR1, 1);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(blocked_signal_counted_while_pending)
{
	sigset_t set, pend;
	int kq = xkqueue();

	set_handler(SIGUSR1, on_signal);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	ck_assert_int_eq(sigprocmask(SIG_BLOCK, &set, NULL), 0);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	kill_self(SIGUSR1, 1);
	/* FreeBSD counts it when sent, though no thread can take it */
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	ck_assert_int_eq(sigpending(&pend), 0);
	ck_assert_int_eq(sigismember(&pend, SIGUSR1), 1);	/* still pending */
	ck_assert_int_eq(atomic_load(&handled), 0);
	/* unblocking delivers it to the handler, and it is not counted twice */
	ck_assert_int_eq(sigprocmask(SIG_UNBLOCK, &set, NULL), 0);
	ck_assert_int_eq(atomic_load(&handled), 1);
	kev_expect_none(kq);
	kill_self(SIGUSR1, 1);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	close(kq);
}
END_TEST

/* Each sigqueue() of a blocked real-time signal is a generation FreeBSD
 * counts, also while earlier ones are still pending, and every kqueue
 * watching it counts it, also one registered after the first generation. */
START_TEST(blocked_realtime_signal_counted_per_generation)
{
	sigset_t set;
	union sigval v = { .sival_int = 0 };
	int sig = SIGRTMIN + 4, a = xkqueue(), b, i;

	sigemptyset(&set);
	sigaddset(&set, sig);
	ck_assert_int_eq(sigprocmask(SIG_BLOCK, &set, NULL), 0);
	kev_ok(a, sig, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(1));
	ck_assert_int_eq(sigqueue(getpid(), sig, v), 0);
	kev_expect(a, WAIT_MS, sig, EVFILT_SIGNAL, EV_CLEAR, 0, 1, UD(1));
	b = xkqueue();
	kev_ok(b, sig, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(2));
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(sigqueue(getpid(), sig, v), 0);
		kev_expect(a, WAIT_MS, sig, EVFILT_SIGNAL, EV_CLEAR, 0, 1, UD(1));
		kev_expect(b, WAIT_MS, sig, EVFILT_SIGNAL, EV_CLEAR, 0, 1, UD(2));
	}
	kev_expect_none(a);
	kev_expect_none(b);
	close(a);
	close(b);
}
END_TEST

START_TEST(blocked_signal_consumed_by_sigwait_counted_once)
{
	sigset_t set;
	int kq = xkqueue(), sig = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	ck_assert_int_eq(sigprocmask(SIG_BLOCK, &set, NULL), 0);
	kev_ok(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	for (int i = 0; i < 3; i++) {
		kill_self(SIGUSR2, 1);
		kev_expect(kq, WAIT_MS, SIGUSR2, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
		ck_assert_int_eq(sigwait(&set, &sig), 0);
		ck_assert_int_eq(sig, SIGUSR2);
		kev_expect_none(kq);
	}
	/* consumed before the kqueue looked: still counted, once */
	kill_self(SIGUSR2, 1);
	ck_assert_int_eq(sigwait(&set, &sig), 0);
	kev_expect(kq, WAIT_MS, SIGUSR2, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(sigchld_counted_on_child_exit)
{
	int kq = xkqueue(), status;
	pid_t pid;

	signal(SIGCHLD, SIG_DFL);
	kev_ok(kq, SIGCHLD, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	kev_expect(kq, WAIT_MS, SIGCHLD, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	/* SIG_DFL: the child waits to be reaped */
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	close(kq);
}
END_TEST

START_TEST(sigchld_ignored_not_counted_and_children_reap_themselves)
{
	siginfo_t si;
	int kq = xkqueue(), status;
	pid_t pid;

	ck_assert_ptr_ne(signal(SIGCHLD, SIG_IGN), SIG_ERR);
	kev_ok(kq, SIGCHLD, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	/* waits until the child is gone (auto-reaped: ECHILD) */
	ck_assert_int_eq(waitid(P_PID, pid, &si, WEXITED), -1);
	ck_assert_int_eq(errno, ECHILD);
	ck_assert_int_eq(waitpid(pid, &status, WNOHANG), -1);
	/* FreeBSD: an ignored SIGCHLD is not recorded */
	{
		struct kevent ev;
		ck_assert_int_eq(kev_wait(kq, &ev, 1, 200), 0);
	}
	close(kq);
}
END_TEST

START_TEST(invalid_signal_numbers_einval)
{
	int kq = xkqueue();
	uintptr_t bad[] = { 0, SIGKILL, SIGSTOP, 32, 33, 65, 9999,
	    (uintptr_t)-1 };

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_errno(kev_change(kq, bad[i], EVFILT_SIGNAL, EV_ADD,
		    0, 0, NULL), EINVAL);
	close(kq);
}
END_TEST

START_TEST(delete_unknown_signal_enoent)
{
	int kq = xkqueue();

	ck_assert_errno(kev_change(kq, SIGUSR2, EVFILT_SIGNAL, EV_DELETE, 0, 0,
	    NULL), ENOENT);
	close(kq);
}
END_TEST

START_TEST(disabled_knote_keeps_counting)
{
	int kq = xkqueue();

	ck_assert_ptr_ne(signal(SIGUSR1, SIG_IGN), SIG_ERR);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD | EV_DISABLE, 0, 0, NULL);
	kill_self(SIGUSR1, 2);
	kev_expect_none(kq);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ENABLE, 0, 0, NULL);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 2, NULL);
	close(kq);
}
END_TEST

START_TEST(dispatch_holds_count_until_enabled)
{
	int kq = xkqueue();

	ck_assert_ptr_ne(signal(SIGUSR1, SIG_IGN), SIG_ERR);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD | EV_DISPATCH, 0, 0, NULL);
	kill_self(SIGUSR1, 1);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR | EV_DISPATCH,
	    0, 1, NULL);
	kill_self(SIGUSR1, 1);
	kev_expect_none(kq);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ENABLE, 0, 0, NULL);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR | EV_DISPATCH,
	    0, 1, NULL);
	close(kq);
}
END_TEST

START_TEST(oneshot_reports_once)
{
	int kq = xkqueue();

	ck_assert_ptr_ne(signal(SIGUSR1, SIG_IGN), SIG_ERR);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD | EV_ONESHOT, 0, 0, NULL);
	kill_self(SIGUSR1, 1);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR | EV_ONESHOT,
	    0, 1, NULL);
	kill_self(SIGUSR1, 1);
	kev_expect_none(kq);
	ck_assert_errno(kev_change(kq, SIGUSR1, EVFILT_SIGNAL, EV_DELETE, 0, 0,
	    NULL), ENOENT);
	close(kq);
}
END_TEST

START_TEST(delete_drops_pending_count)
{
	int kq = xkqueue();

	ck_assert_ptr_ne(signal(SIGUSR1, SIG_IGN), SIG_ERR);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	kill_self(SIGUSR1, 1);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);
	kev_expect_none(kq);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	kev_expect_none(kq);
	close(kq);
}
END_TEST

START_TEST(readd_keeps_pending_count_and_takes_udata)
{
	int kq = xkqueue();

	ck_assert_ptr_ne(signal(SIGUSR1, SIG_IGN), SIG_ERR);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, (void *)1);
	kill_self(SIGUSR1, 1);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, (void *)2);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, (void *)2);
	close(kq);
}
END_TEST

START_TEST(realtime_signals_counted_each)
{
	union sigval v = { .sival_int = 0 };
	int kq = xkqueue(), sig = SIGRTMIN + 2;

	ck_assert_ptr_ne(signal(sig, SIG_IGN), SIG_ERR);
	kev_ok(kq, sig, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(sigqueue(getpid(), sig, v), 0);
	kev_expect(kq, WAIT_MS, sig, EVFILT_SIGNAL, EV_CLEAR, 0, 4, NULL);
	close(kq);
}
END_TEST

/* The last one, 64: a kqueue's set of watched signals has room for it. */
START_TEST(sigrtmax_counted)
{
	union sigval v = { .sival_int = 0 };
	int kq = xkqueue();

	ck_assert_int_eq(SIGRTMAX, 64);
	ck_assert_ptr_ne(signal(SIGRTMAX, SIG_IGN), SIG_ERR);
	kev_ok(kq, SIGRTMAX, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(64));
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(sigqueue(getpid(), SIGRTMAX, v), 0);
	kev_expect(kq, WAIT_MS, SIGRTMAX, EVFILT_SIGNAL, EV_CLEAR, 0, 2, UD(64));
	close(kq);
}
END_TEST

START_TEST(sigcont_counted)
{
	int kq = xkqueue();

	kev_ok(kq, SIGCONT, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	kill_self(SIGCONT, 1);
	kev_expect(kq, WAIT_MS, SIGCONT, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	close(kq);
}
END_TEST

START_TEST(fork_child_gets_application_disposition)
{
	int kq = xkqueue(), status;
	pid_t pid;

	ck_assert_ptr_ne(signal(SIGUSR1, SIG_IGN), SIG_ERR);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct sigaction cur;

		/* Ask the kernel itself (libc's sigaction would be ours):
		 * its SIG_IGN is what an exec'd program inherits.  The
		 * kernel's struct starts with the handler too. */
		if (syscall(SYS_rt_sigaction, SIGUSR1, NULL, &cur, 8) != 0)
			_exit(2);
		if (cur.sa_handler != SIG_IGN)
			_exit(1);
		/* and the child can watch signals with kqueues of its own */
		{
			struct kevent kev;
			struct timespec ts = { 5, 0 };
			int ckq = kqueue();

			EV_SET(&kev, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
			if (ckq < 0 || kevent(ckq, &kev, 1, NULL, 0, NULL) != 0)
				_exit(3);
			kill(getpid(), SIGUSR1);
			if (kevent(ckq, NULL, 0, &kev, 1, &ts) != 1 ||
			    kev.ident != SIGUSR1 || kev.data != 1)
				_exit(4);
		}
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "status 0x%x", status);
	/* the parent still counts */
	kill_self(SIGUSR1, 1);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	close(kq);
}
END_TEST

START_TEST(freewatch_reference_back_on_delete)
{
	int kq = xkqueue();
	int token;

	kev_ok(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD | EV_FREEWATCH, 0, 0, &token);
	kev_ok(kq, SIGUSR2, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);
	kev_expect(kq, 0, SIGUSR2, EVFILT_SIGNAL, EV_FREEWATCH | EV_DELETE,
	    NOTE_FREE_DELETE, 0, &token);
	close(kq);
}
END_TEST

/* -------------------------------------- the other disposition setters */

/*
 * glibc's sigset(), bsd_signal(), ssignal(), sysv_signal(), sigignore()
 * and siginterrupt() reach the kernel through its internal sigaction: each
 * is interposed, so the signal stays counted, the application's handler
 * runs, and the old disposition they report is the application's.
 */
START_TEST(sigset_handler_keeps_counting_and_runs)
{
	struct sigaction cur;
	int kq = xkqueue();

	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(1));
	ck_assert_ptr_eq((void *)sigset(SIGUSR1, on_signal), (void *)SIG_DFL);
	kill_self(SIGUSR1, 2);
	ck_assert_int_eq(atomic_load(&handled), 2);
	ck_assert_int_eq(atomic_load(&handled_signo), SIGUSR1);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 2, UD(1));
	ck_assert_int_eq(sigaction(SIGUSR1, NULL, &cur), 0);
	ck_assert_ptr_eq((void *)cur.sa_handler, (void *)on_signal);
	/* SIG_IGN through sigset: still counted, nothing runs */
	ck_assert_ptr_eq((void *)sigset(SIGUSR1, SIG_IGN), (void *)on_signal);
	kill_self(SIGUSR1, 1);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, UD(1));
	ck_assert_int_eq(atomic_load(&handled), 2);
	close(kq);
}
END_TEST

START_TEST(bsd_signal_handler_keeps_counting_and_runs)
{
	struct sigaction cur;
	int kq = xkqueue();

	kev_ok(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(2));
	ck_assert_ptr_eq((void *)bsd_signal(SIGUSR2, on_signal), (void *)SIG_DFL);
	kill_self(SIGUSR2, 3);
	ck_assert_int_eq(atomic_load(&handled), 3);
	ck_assert_int_eq(atomic_load(&handled_signo), SIGUSR2);
	kev_expect(kq, WAIT_MS, SIGUSR2, EVFILT_SIGNAL, EV_CLEAR, 0, 3, UD(2));
	/* BSD semantics: restartable, the signal held while its handler runs */
	ck_assert_int_eq(sigaction(SIGUSR2, NULL, &cur), 0);
	ck_assert_ptr_eq((void *)cur.sa_handler, (void *)on_signal);
	ck_assert(cur.sa_flags & SA_RESTART);
	ck_assert(!(cur.sa_flags & (SA_RESETHAND | SA_NODEFER)));
	ck_assert_int_eq(sigismember(&cur.sa_mask, SIGUSR2), 1);
	ck_assert_ptr_eq((void *)bsd_signal(SIGUSR2, SIG_DFL), (void *)on_signal);
	close(kq);
}
END_TEST

/* SIG_HOLD blocks the signal and leaves the disposition; the pending
 * signal is counted once, and runs the handler when sigset() releases it. */
START_TEST(sigset_hold_blocks_counts_and_releases)
{
	sigset_t mask;
	int kq = xkqueue();

	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	ck_assert_ptr_eq((void *)sigset(SIGUSR1, on_signal), (void *)SIG_DFL);
	/* not blocked before: the previous disposition (the application's) */
	ck_assert_ptr_eq((void *)sigset(SIGUSR1, SIG_HOLD), (void *)on_signal);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, NULL, &mask), 0);
	ck_assert_int_eq(sigismember(&mask, SIGUSR1), 1);
	kill_self(SIGUSR1, 1);
	ck_assert_int_eq(atomic_load(&handled), 0);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	/* blocked before: SIG_HOLD */
	ck_assert_ptr_eq((void *)sigset(SIGUSR1, SIG_HOLD), (void *)SIG_HOLD);
	ck_assert_ptr_eq((void *)sigset(SIGUSR1, on_signal), (void *)SIG_HOLD);
	/* unblocked: the pending one ran the handler, counted only once */
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, NULL, &mask), 0);
	ck_assert_int_eq(sigismember(&mask, SIGUSR1), 0);
	ck_assert_int_eq(atomic_load(&handled), 1);
	kev_expect_none(kq);
	kill_self(SIGUSR1, 1);
	ck_assert_int_eq(atomic_load(&handled), 2);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	close(kq);
}
END_TEST

/* Loop test: ssignal, sysv_signal, __sysv_signal with a handler, then
 * sigignore: each keeps the signal counted. */
START_TEST(other_disposition_setters_keep_counting)
{
	sighandler_t old = SIG_ERR;
	struct sigaction cur;
	int kq = xkqueue();

	kev_ok(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(_i));
	switch (_i) {
	case 0:
		old = ssignal(SIGUSR2, on_signal);
		break;
	case 1:
		old = sysv_signal(SIGUSR2, on_signal);
		break;
	case 2:
		old = __sysv_signal(SIGUSR2, on_signal);
		break;
	}
	ck_assert_ptr_eq((void *)old, (void *)SIG_DFL);
	ck_assert_int_eq(sigaction(SIGUSR2, NULL, &cur), 0);
	ck_assert_ptr_eq((void *)cur.sa_handler, (void *)on_signal);
	kill_self(SIGUSR2, 1);
	ck_assert_int_eq(atomic_load(&handled), 1);
	kev_expect(kq, WAIT_MS, SIGUSR2, EVFILT_SIGNAL, EV_CLEAR, 0, 1, UD(_i));
	ck_assert_int_eq(sigignore(SIGUSR2), 0);
	ck_assert_int_eq(sigaction(SIGUSR2, NULL, &cur), 0);
	ck_assert_ptr_eq((void *)cur.sa_handler, (void *)SIG_IGN);
	kill_self(SIGUSR2, 2);
	kev_expect(kq, WAIT_MS, SIGUSR2, EVFILT_SIGNAL, EV_CLEAR, 0, 2, UD(_i));
	ck_assert_int_eq(atomic_load(&handled), 1);
	close(kq);
}
END_TEST

/* siginterrupt() changes the application's SA_RESTART (as its sigaction()
 * reports it), for signal() too, and the signal stays counted. */
START_TEST(siginterrupt_on_watched_signal_changes_application_flags)
{
	struct sigaction cur;
	int kq = xkqueue();

	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	ck_assert_ptr_eq((void *)signal(SIGUSR1, on_signal), (void *)SIG_DFL);
	ck_assert_int_eq(siginterrupt(SIGUSR1, 1), 0);
	ck_assert_int_eq(sigaction(SIGUSR1, NULL, &cur), 0);
	ck_assert_ptr_eq((void *)cur.sa_handler, (void *)on_signal);
	ck_assert(!(cur.sa_flags & SA_RESTART));
	/* glibc's signal() honours siginterrupt(): so must ours */
	ck_assert_ptr_eq((void *)signal(SIGUSR1, on_signal), (void *)on_signal);
	ck_assert_int_eq(sigaction(SIGUSR1, NULL, &cur), 0);
	ck_assert(!(cur.sa_flags & SA_RESTART));
	kill_self(SIGUSR1, 1);
	ck_assert_int_eq(atomic_load(&handled), 1);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	ck_assert_int_eq(siginterrupt(SIGUSR1, 0), 0);
	ck_assert_int_eq(sigaction(SIGUSR1, NULL, &cur), 0);
	ck_assert(cur.sa_flags & SA_RESTART);
	close(kq);
}
END_TEST

/* ----------------------------------------------------------------- exec */

/*
 * After exec, a signal the application ignored is still ignored (POSIX),
 * whichever call set SIG_IGN and whether it was watched before or after;
 * a signal only the library caught, or the application caught, is back at
 * SIG_DFL.  The new image (this program with --dispositions) checks the
 * kernel's actions.  vfork: a fork child would have had the application's
 * dispositions put back by the library's atfork handler already.
 */
static const struct {
	int sig;
	bool ignored;
} exec_expect[] = {
	{ SIGUSR1, true },	/* sigset(SIG_IGN) while watched */
	{ SIGUSR2, true },	/* signal(SIG_IGN) before watching */
	{ SIGINT, true },	/* sigignore() while watched */
	{ SIGHUP, false },	/* SIG_DFL: only the library caught it */
	{ SIGTERM, false },	/* the application's handler (bsd_signal) */
};
#define NEXEC_EXPECT	(int)(sizeof exec_expect / sizeof exec_expect[0])

static char self_exe[4096];

static int
check_dispositions(void)
{
	for (int i = 0; i < NEXEC_EXPECT; i++) {
		struct sigaction k;

		/* the kernel's struct starts with the handler too */
		if (syscall(SYS_rt_sigaction, exec_expect[i].sig, NULL, &k, 8) != 0)
			return 2;
		if (k.sa_handler != (exec_expect[i].ignored ? SIG_IGN : SIG_DFL))
			return 10 + i;
	}
	return 0;
}

START_TEST(exec_keeps_application_sig_ign)
{
	char *argv[] = { self_exe, "--dispositions", NULL };
	char **envp = environ;
	int kq = xkqueue(), exe, status;
	pid_t pid;

	ck_assert_ptr_ne(signal(SIGUSR2, SIG_IGN), SIG_ERR);
	for (int i = 0; i < NEXEC_EXPECT; i++)
		kev_ok(kq, exec_expect[i].sig, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	ck_assert_ptr_ne(sigset(SIGUSR1, SIG_IGN), SIG_ERR);
	ck_assert_int_eq(sigignore(SIGINT), 0);
	ck_assert_ptr_ne(bsd_signal(SIGTERM, on_signal), SIG_ERR);
	exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(exe, 0);
	pid = vfork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		switch (_i) {
		case 0: execv(self_exe, argv); break;
		case 1: execve(self_exe, argv, envp); break;
		case 2: execvp(self_exe, argv); break;
		case 3: execvpe(self_exe, argv, envp); break;
		case 4: execl(self_exe, self_exe, "--dispositions", (char *)NULL); break;
		case 5: execle(self_exe, self_exe, "--dispositions", (char *)NULL, envp); break;
		case 6: execlp(self_exe, self_exe, "--dispositions", (char *)NULL); break;
		case 7: fexecve(exe, argv, envp); break;
		case 8: execveat(AT_FDCWD, self_exe, argv, envp, 0); break;
		}
		_exit(99);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "exec variant %d: status 0x%x", _i, status);
	/* the parent still counts every one of them */
	kill_self(SIGUSR1, 1);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	kill_self(SIGTERM, 1);
	kev_expect(kq, WAIT_MS, SIGTERM, EVFILT_SIGNAL, EV_CLEAR, 0, 1, NULL);
	ck_assert_int_eq(atomic_load(&handled), 1);
	close(exe);
	close(kq);
}
END_TEST

/* An exec that fails leaves everything as it was: counted, ignored. */
START_TEST(failed_exec_keeps_counting)
{
	char *argv[] = { "/nonexistent/kqtest", NULL };
	struct sigaction k, cur;
	int kq = xkqueue();

	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	ck_assert_ptr_ne(signal(SIGUSR1, SIG_IGN), SIG_ERR);
	ck_assert_errno(execv(argv[0], argv), ENOENT);
	ck_assert_errno(execvp("kqtest-no-such-program", argv), ENOENT);
	/* the kernel has the library's handler again */
	ck_assert_int_eq(syscall(SYS_rt_sigaction, SIGUSR1, NULL, &k, 8), 0);
	ck_assert_ptr_ne((void *)k.sa_handler, (void *)SIG_IGN);
	ck_assert_int_eq(sigaction(SIGUSR1, NULL, &cur), 0);
	ck_assert_ptr_eq((void *)cur.sa_handler, (void *)SIG_IGN);
	kill_self(SIGUSR1, 2);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 2, NULL);
	close(kq);
}
END_TEST

/* ------------------------------------------------- the library's own fds */

/*
 * The process-wide eventfd the handler writes, the signalfd, its edge
 * detector and each kqueue's dups of them are the library's: closefrom()
 * or close_range() over them leaves them alone, so counting goes on and the
 * handler never writes its counter into a file that reused a number.
 */
START_TEST(close_range_over_signal_fds_keeps_counting)
{
	int kq = xkqueue(), files[16], i;
	sigset_t block, old;
	char c;

	set_handler(SIGUSR1, on_signal);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(7));
	kev_ok(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(8));
	ck_assert_ptr_ne(signal(SIGUSR2, SIG_IGN), SIG_ERR);
	if (_i == 0)
		closefrom(kq + 1);
	else
		ck_assert_int_eq(close_range((unsigned)kq + 1, ~0u, 0), 0);
	for (i = 0; i < 16; i += 2)
		ck_assert_int_eq(pipe2(&files[i], O_NONBLOCK | O_CLOEXEC), 0);
	/* delivered to the handler: the eventfd */
	kill_self(SIGUSR1, 2);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 2, UD(7));
	ck_assert_int_eq(atomic_load(&handled), 2);
	/* blocked and pending: the signalfd */
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
	kill_self(SIGUSR2, 1);
	kev_expect(kq, WAIT_MS, SIGUSR2, EVFILT_SIGNAL, EV_CLEAR, 0, 1, UD(8));
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
	for (i = 0; i < 16; i += 2)
		ck_assert_errno((int)read(files[i], &c, 1), EAGAIN);
	/* the last delete gives the fds back cleanly; a new watch works */
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);
	kev_ok(kq, SIGUSR2, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);
	kev_ok(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(9));
	kill_self(SIGUSR1, 1);
	kev_expect(kq, WAIT_MS, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, UD(9));
	for (i = 0; i < 16; i++)
		close(files[i]);
	close(kq);
}
END_TEST

static Suite *
signal_suite(void)
{
	Suite *s = suite_create("signal");
	TCase *tc = tcase_create("signal");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, signal_counts_each_delivery);
	tcase_add_test(tc, signal_before_add_not_counted);
	tcase_add_test(tc, vfork_child_resetting_a_watched_signal_leaves_the_parent_alone);
	tcase_add_test(tc, sig_ign_set_after_add_still_counted);
	tcase_add_test(tc, sig_ign_set_before_add_counted);
	tcase_add_test(tc, handler_installed_after_add_runs_with_siginfo);
	tcase_add_test(tc, handler_installed_before_add_keeps_running);
	tcase_add_test(tc, sig_dfl_still_terminates);
	tcase_add_test(tc, resethand_handler_runs_once_then_default);
	tcase_add_test(tc, sig_dfl_ignored_signal_counted_without_effect);
	tcase_add_test(tc, other_thread_not_blocking_takes_signal);
	tcase_add_test(tc, ignored_signal_does_not_interrupt_kevent);
	tcase_add_test(tc, handled_signal_interrupts_unrelated_kevent);
	tcase_add_test(tc, handled_signal_wakes_its_kevent_with_the_event);
	tcase_add_test(tc, two_kqueues_each_count);
	tcase_add_test(tc, delete_restores_disposition_and_mask);
	tcase_add_test(tc, close_of_kqueue_restores_disposition);
	tcase_add_test(tc, disposition_set_while_watched_survives_delete);
	tcase_add_test(tc, blocked_signal_counted_while_pending);
	tcase_add_test(tc, blocked_signal_consumed_by_sigwait_counted_once);
	tcase_add_test(tc, blocked_realtime_signal_counted_per_generation);
	tcase_add_test(tc, sigchld_counted_on_child_exit);
	tcase_add_test(tc, sigchld_ignored_not_counted_and_children_reap_themselves);
	tcase_add_test(tc, invalid_signal_numbers_einval);
	tcase_add_test(tc, delete_unknown_signal_enoent);
	tcase_add_test(tc, disabled_knote_keeps_counting);
	tcase_add_test(tc, dispatch_holds_count_until_enabled);
	tcase_add_test(tc, oneshot_reports_once);
	tcase_add_test(tc, delete_drops_pending_count);
	tcase_add_test(tc, readd_keeps_pending_count_and_takes_udata);
	tcase_add_test(tc, realtime_signals_counted_each);
	tcase_add_test(tc, sigcont_counted);
	tcase_add_test(tc, sigrtmax_counted);
	tcase_add_test(tc, fork_child_gets_application_disposition);
	tcase_add_test(tc, freewatch_reference_back_on_delete);
	tcase_add_test(tc, sigset_handler_keeps_counting_and_runs);
	tcase_add_test(tc, bsd_signal_handler_keeps_counting_and_runs);
	tcase_add_test(tc, sigset_hold_blocks_counts_and_releases);
	tcase_add_loop_test(tc, other_disposition_setters_keep_counting, 0, 3);
	tcase_add_test(tc, siginterrupt_on_watched_signal_changes_application_flags);
	tcase_add_loop_test(tc, exec_keeps_application_sig_ign, 0, 9);
	tcase_add_test(tc, failed_exec_keeps_counting);
	tcase_add_loop_test(tc, close_range_over_signal_fds_keeps_counting, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int
main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	/* the new image of exec_keeps_application_sig_ign */
	if (argc > 1 && strcmp(argv[1], "--dispositions") == 0)
		return check_dispositions();
	snprintf(self_exe, sizeof self_exe, "%s", argv[0]);
	sr = srunner_create(signal_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
