/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_backend.c: the choice of backend (internal.h, BACKENDS).
 * KQFREE_BACKEND=io_uring runs a kqueue on io_uring when the kernel has
 * what the backend needs, and silently on epoll when it does not: each way
 * a kernel can refuse is forced, by the tests' build of the library
 * (kq_uring_test_fail, KQ_STATS) or, for io_uring_setup itself, by a
 * seccomp filter in a child, as a container's would.  White-box: it asks
 * the library which backend a kqueue got.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

/* lib/internal.h, tests' build */
struct kq_kqueue;
extern int kq_uring_test_fail;
void kq_backend_test_reset(void);
struct kq_kqueue *kq_lookup(int fd, bool search);
void kq_put(struct kq_kqueue *kq);
const char *kq_backend_name(const struct kq_kqueue *kq);

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif

/* The backend the kqueue behind fd runs on ("none" if fd is none). */
static const char *
backend_of(int fd)
{
	struct kq_kqueue *kq = kq_lookup(fd, true);
	const char *name;

	if (kq == NULL)
		return "none";
	name = kq_backend_name(kq);
	kq_put(kq);
	return name;
}

/* A new kqueue as a fresh process with this environment would make it. */
static int
fresh_kqueue(const char *backend, int fail)
{
	if (backend != NULL)
		setenv("KQFREE_BACKEND", backend, 1);
	else
		unsetenv("KQFREE_BACKEND");
	kq_backend_test_reset();
	kq_uring_test_fail = fail;
	return xkqueue();
}

/* Can this process make a ring at all (a container may forbid it), and
 * was the library built with the backend (--with-liburing)? */
static bool
kernel_has_io_uring(void)
{
#ifndef HAVE_LIBURING
	return false;
#endif
	unsigned char params[120];	/* struct io_uring_params */
	int fd;

	memset(params, 0, sizeof params);
	fd = (int)syscall(__NR_io_uring_setup, 1, params);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* A level read event and a user event, whatever the backend; 0 if fine. */
static int
exercise(int kq)
{
	struct kevent ch[3], ev[2];
	struct timespec ts = { 2, 0 };
	int p[2], n, bad = 0;

	if (pipe2(p, O_CLOEXEC) < 0)
		return 1;
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	EV_SET(&ch[1], 7, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(2));
	EV_SET(&ch[2], 7, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(2));
	if (kevent(kq, ch, 3, NULL, 0, NULL) != 0 || write(p[1], "ab", 2) != 2)
		bad = 2;
	n = kevent(kq, NULL, 0, ev, 2, &ts);
	if (n != 2)
		bad = 3;
	for (int i = 0; i < n && !bad; i++)
		if (ev[i].filter == EVFILT_READ ? ev[i].ident != (uintptr_t)p[0] ||
		    ev[i].data != 2 || ev[i].udata != UD(1) :
		    ev[i].filter != EVFILT_USER || ev[i].ident != 7 ||
		    ev[i].udata != UD(2))
			bad = 4;
	close(p[0]);
	close(p[1]);
	return bad;
}

START_TEST(default_is_epoll)
{
	int kq = fresh_kqueue(NULL, 0);

	ck_assert_str_eq(backend_of(kq), "epoll");
	ck_assert_int_eq(exercise(kq), 0);
	close(kq);
	kq = fresh_kqueue("epoll", 0);
	ck_assert_str_eq(backend_of(kq), "epoll");
	close(kq);
	/* an unknown name is the default, not an error */
	kq = fresh_kqueue("kqueue", 0);
	ck_assert_str_eq(backend_of(kq), "epoll");
	close(kq);
}
END_TEST

START_TEST(environment_selects_io_uring)
{
	const char *expect = getenv("KQ_EXPECT_BACKEND");
	int kq = fresh_kqueue("io_uring", 0), kq2;

	/* make check-uring: the suite must not run on epoll by mistake */
	if (expect != NULL)
		ck_assert_str_eq(backend_of(kq), expect);
	ck_assert_str_eq(backend_of(kq), kernel_has_io_uring() ? "io_uring" :
	    "epoll");
	ck_assert_int_eq(exercise(kq), 0);
	/* read once per process: changing it later changes nothing */
	setenv("KQFREE_BACKEND", "epoll", 1);
	kq2 = xkqueue();
	ck_assert_str_eq(backend_of(kq2), backend_of(kq));
	close(kq2);
	close(kq);
}
END_TEST

/*
 * EVFILT_TIMER on io_uring is a ring timeout, not a timerfd: a kqueue's
 * timers take no descriptor, and still fire (the earliest one moved in
 * place by a later, earlier one), deleted or not.
 */
START_TEST(io_uring_timers_take_no_descriptor)
{
	struct kevent ch[1000];
	struct timespec ts = { 5, 0 };
	struct kevent ev;
	int kq = fresh_kqueue("io_uring", 0), before, i;

	if (strcmp(backend_of(kq), "io_uring") != 0) {
		close(kq);
		return;			/* no ring here: nothing to show */
	}
	before = count_open_fds();
	for (i = 0; i < 1000; i++)
		EV_SET(&ch[i], i + 1, EVFILT_TIMER, EV_ADD, 0, 60000 + i, UD(i));
	ck_assert_int_eq(kevent(kq, ch, 1000, NULL, 0, NULL), 0);
	ck_assert_int_eq(count_open_fds(), before);
	EV_SET(&ch[0], 5000, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 20, UD(3));
	ck_assert_int_eq(kevent(kq, ch, 1, &ev, 1, &ts), 1);
	ck_assert_int_eq(ev.ident, 5000);
	ck_assert_int_eq(ev.filter, EVFILT_TIMER);
	ck_assert_int_eq(ev.flags, EV_ONESHOT | EV_CLEAR);
	ck_assert_int_eq(ev.data, 1);
	ck_assert_ptr_eq(ev.udata, UD(3));
	ck_assert_int_eq(count_open_fds(), before);
	for (i = 0; i < 1000; i++)
		EV_SET(&ch[i], i + 1, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	ck_assert_int_eq(kevent(kq, ch, 1000, NULL, 0, NULL), 0);
	ck_assert_int_eq(count_open_fds(), before);
	close(kq);
}
END_TEST

/* Each way the kernel can refuse (KQ_URING_FAIL_*, 1..6): epoll, silently,
 * for this kqueue and the next (the probe is not repeated). */
START_TEST(refused_io_uring_falls_back_to_epoll)
{
	int kq = fresh_kqueue("io_uring", _i), kq2;

	ck_assert_int_ge(kq, 0);
	ck_assert_str_eq(backend_of(kq), "epoll");
	ck_assert_int_eq(exercise(kq), 0);
	kq_uring_test_fail = 0;
	kq2 = xkqueue();
	ck_assert_str_eq(backend_of(kq2), "epoll");
	ck_assert_int_eq(exercise(kq2), 0);
	close(kq2);
	close(kq);
}
END_TEST

/* io_uring_setup refused for real, as seccomp or kernel.io_uring_disabled
 * (EPERM) or a kernel without it (ENOSYS) would: in a child, since the
 * filter cannot be lifted. */
static int
child_under_seccomp(int err)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO |
		    ((unsigned)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
	int kq, bad;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
		return 10;
	if (syscall(__NR_io_uring_setup, 1, NULL) != -1 || errno != err)
		return 11;
	setenv("KQFREE_BACKEND", "io_uring", 1);
	kq_backend_test_reset();
	kq_uring_test_fail = 0;
	if ((kq = kqueue()) < 0)
		return 12;
	if (strcmp(backend_of(kq), "epoll") != 0)
		return 13;
	bad = exercise(kq);
	close(kq);
	return bad;
}

START_TEST(seccomp_refusal_falls_back_to_epoll)
{
	int err = _i ? EPERM : ENOSYS, status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(child_under_seccomp(err));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "child status 0x%x", status);
}
END_TEST

static Suite *
backend_suite(void)
{
	Suite *s = suite_create("backend");
	TCase *tc = tcase_create("choice");

	tcase_add_test(tc, default_is_epoll);
	tcase_add_test(tc, environment_selects_io_uring);
	tcase_add_test(tc, io_uring_timers_take_no_descriptor);
	tcase_add_loop_test(tc, refused_io_uring_falls_back_to_epoll, 1, 7);
	tcase_add_loop_test(tc, seccomp_refusal_falls_back_to_epoll, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(backend_suite)
