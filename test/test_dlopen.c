/*
 * The binding case: this program is NOT linked with libkqfree.  It
 * dlopen()s dlmod.so (linked with libkqfree) with RTLD_LOCAL, the way perl
 * or python load an extension module, so libkqfree never enters the global
 * scope and every close() below binds to libc.  The knotes must still die
 * with the fd - through the GOT-patching fallback - and return their
 * references exactly once.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"	/* its kevent() helpers are not used: no libkqfree here */

static struct {
	void *h;
	int (*kqueue)(void);
	int (*watch)(int, int, void *);
	int (*kevent)(int, const struct kevent *, int, struct kevent *, int, int);
	int (*collect)(int, struct kevent *, int, int);
	int (*release)(int);
	int (*close)(int);
} M;

static const char *
dlmod_path(void)
{
	const char *p = getenv("DLMOD_PATH");
	if (p != NULL && *p != '\0')
		return p;
#ifdef DLMOD_PATH
	return DLMOD_PATH;
#else
	return "./.libs/dlmod.so";
#endif
}

static void *
sym(const char *name)
{
	void *f = dlsym(M.h, name);
	ck_assert_msg(f != NULL, "dlsym %s: %s", name, dlerror());
	return f;
}

static void
load_module(void)
{
	/* Before the module: the program's close() is plain libc. */
	ck_assert_ptr_null(dlsym(RTLD_DEFAULT, "kqfree_release"));
	M.h = dlopen(dlmod_path(), RTLD_NOW | RTLD_LOCAL);
	ck_assert_msg(M.h != NULL, "dlopen %s: %s", dlmod_path(), dlerror());
	M.kqueue = sym("dlmod_kqueue");
	M.watch = sym("dlmod_watch");
	M.kevent = sym("dlmod_kevent");
	M.collect = sym("dlmod_collect");
	M.release = sym("dlmod_release");
	M.close = sym("dlmod_close");
	/* RTLD_LOCAL really kept libkqfree out of the global scope. */
	ck_assert_ptr_null(dlsym(RTLD_DEFAULT, "kqfree_release"));
}

__attribute__((constructor)) static void
ignore_sigpipe(void)
{
	signal(SIGPIPE, SIG_IGN);
}

/* A descriptor that keeps the watched pipe's read side open after the
 * watched fd dies, so a stale epoll registration would still report. */
static int keep = -1;

static int udata_tag[8];
#define U(i) ((void *)&udata_tag[i])

/* Exactly this event next (bounded wait), through the module. */
#define expect_ev(kq, ms, ident_, filter_, flags_, fflags_, data_, udata_) do { \
	struct kevent e_;						\
	memset(&e_, 0xa5, sizeof e_);					\
	int n_ = M.collect(kq, &e_, 1, ms);				\
	ck_assert_msg(n_ == 1, "expected one event, got %d (errno %d)", n_, errno); \
	ck_assert_uint_eq(e_.ident, (uintptr_t)(ident_));		\
	ck_assert_int_eq(e_.filter, (filter_));				\
	ck_assert_uint_eq(e_.flags, (unsigned short)(flags_));		\
	ck_assert_uint_eq(e_.fflags, (unsigned)(fflags_));		\
	ck_assert_int_eq(e_.data, (int64_t)(data_));			\
	ck_assert_ptr_eq(e_.udata, (void *)(udata_));			\
} while (0)

#define expect_free_close(kq, fd, u) \
	expect_ev(kq, 2000, fd, EVFILT_READ, EV_FREEWATCH | EV_DELETE, NOTE_FREE_CLOSE, 0, u)

#define expect_quiet(kq, ms) do {					\
	struct kevent q_;						\
	int qn_ = M.collect(kq, &q_, 1, ms);				\
	ck_assert_msg(qn_ == 0, "unexpected event: n %d ident %lu flags 0x%x fflags 0x%x", \
	    qn_, (unsigned long)q_.ident, q_.flags, q_.fflags);		\
} while (0)

static int
setup(int p[2])
{
	load_module();
	int kq = M.kqueue();
	ck_assert_int_ge(kq, 0);
	ck_assert_int_eq(pipe2(p, O_NONBLOCK), 0);
	keep = fcntl(p[0], F_DUPFD_CLOEXEC, 100);
	ck_assert_int_ge(keep, 100);
	ck_assert_int_eq(M.watch(kq, p[0], U(0)), 0);
	return kq;
}

/*
 * After the old fd died: the write end of the old pipe is silent, and a new
 * pipe on the same number is a new watch with its own udata.
 */
static void
check_dead_and_reuse(int kq, int oldfd, int oldw)
{
	ck_assert_int_eq(write(oldw, "x", 1), 1);
	expect_quiet(kq, 50);

	int q[2];
	ck_assert_int_eq(pipe2(q, O_NONBLOCK), 0);
	if (q[0] != oldfd) {
		ck_assert_int_eq(dup2(q[0], oldfd), oldfd);
		close(q[0]);
		q[0] = oldfd;
	}
	expect_quiet(kq, 0);
	ck_assert_int_eq(M.watch(kq, q[0], U(1)), 0);
	ck_assert_int_eq(write(q[1], "ab", 2), 2);
	expect_ev(kq, 2000, oldfd, EVFILT_READ, 0, 0, 2, U(1));
	close(q[0]);
	expect_free_close(kq, oldfd, U(1));
	expect_quiet(kq, 20);
	close(q[1]);
	close(oldw);
	close(keep);
	close(kq);
}

START_TEST(program_close_reaches_module_kqueue)
{
	int p[2], kq = setup(p);

	ck_assert_int_eq(close(p[0]), 0);
	expect_free_close(kq, p[0], U(0));
	expect_quiet(kq, 20);
	check_dead_and_reuse(kq, p[0], p[1]);
}
END_TEST

START_TEST(module_own_close_is_tracked)
{
	int p[2], kq = setup(p);

	ck_assert_int_eq(M.close(p[0]), 0);
	expect_free_close(kq, p[0], U(0));
	expect_quiet(kq, 20);
	check_dead_and_reuse(kq, p[0], p[1]);
}
END_TEST

/* Which object the program's GOT entry for close() points into. */
static bool
close_slot_in(const char *lib)
{
	/* Taking close's address reads the GOT (GLOB_DAT), not the PLT. */
	int (*volatile cl)(int) = close;
	Dl_info di;

	ck_assert_int_ne(dladdr((void *)cl, &di), 0);
	return di.dli_fname != NULL && strstr(di.dli_fname, lib) != NULL;
}

START_TEST(program_close_through_pointer_is_tracked)
{
	ck_assert_msg(close_slot_in("libc.so"), "close not bound to libc before dlopen");
	int p[2], kq = setup(p);
	ck_assert_msg(close_slot_in("libkqfree"), "GOT entry for close not patched");
	int (*volatile cl)(int) = close;

	ck_assert_int_eq(cl(p[0]), 0);
	expect_free_close(kq, p[0], U(0));
	check_dead_and_reuse(kq, p[0], p[1]);
}
END_TEST

START_TEST(program_dup2_reaches_module_kqueue)
{
	int p[2], q[2], kq = setup(p);

	ck_assert_int_eq(pipe2(q, O_NONBLOCK), 0);
	ck_assert_int_eq(dup2(q[0], p[0]), p[0]);
	expect_free_close(kq, p[0], U(0));
	/* The new file at the number is not watched. */
	ck_assert_int_eq(write(q[1], "x", 1), 1);
	expect_quiet(kq, 50);
	close(p[0]);
	close(q[0]);
	close(q[1]);
	check_dead_and_reuse(kq, p[0], p[1]);
}
END_TEST

START_TEST(program_dup3_reaches_module_kqueue)
{
	int p[2], q[2], kq = setup(p);

	ck_assert_int_eq(pipe2(q, O_NONBLOCK), 0);
	ck_assert_int_eq(dup3(q[0], p[0], O_CLOEXEC), p[0]);
	expect_free_close(kq, p[0], U(0));
	close(p[0]);
	close(q[0]);
	close(q[1]);
	check_dead_and_reuse(kq, p[0], p[1]);
}
END_TEST

START_TEST(program_fclose_reaches_module_kqueue)
{
	int p[2], kq = setup(p);
	FILE *f = fdopen(p[0], "r");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fclose(f), 0);
	expect_free_close(kq, p[0], U(0));
	check_dead_and_reuse(kq, p[0], p[1]);
}
END_TEST

START_TEST(program_close_range_reaches_module_kqueue)
{
	int p[2], kq = setup(p);

	ck_assert_int_eq(close_range(p[0], p[0], 0), 0);
	expect_free_close(kq, p[0], U(0));
	check_dead_and_reuse(kq, p[0], p[1]);
}
END_TEST

START_TEST(program_closefrom_reaches_module_kqueue)
{
	int p[2], kq = setup(p);
	int hi = fcntl(p[0], F_DUPFD_CLOEXEC, 700);

	ck_assert_int_ge(hi, 700);
	ck_assert_int_eq(M.watch(kq, hi, U(2)), 0);
	closefrom(700);
	expect_ev(kq, 2000, hi, EVFILT_READ, EV_FREEWATCH | EV_DELETE, NOTE_FREE_CLOSE, 0, U(2));
	expect_quiet(kq, 20);
	/* p[0] is the same file and still watched. */
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	expect_ev(kq, 2000, p[0], EVFILT_READ, 0, 0, 1, U(0));
	close(p[0]);
	expect_free_close(kq, p[0], U(0));
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(close_errors_are_libc_errors)
{
	int p[2], q[2], kq = setup(p);

	ck_assert_int_eq(pipe(q), 0);
	ck_assert_errno(close(-1), EBADF);
	ck_assert_int_eq(close(q[1]), 0);
	ck_assert_errno(close(q[1]), EBADF);
	ck_assert_errno(dup2(-1, p[0]), EBADF);
	expect_quiet(kq, 0);		/* the failed dup2 closed nothing */
	ck_assert_int_eq(close(p[0]), 0);
	expect_free_close(kq, p[0], U(0));
	close(q[0]);
	close(p[1]);
	close(keep);
	close(kq);
}
END_TEST

START_TEST(release_through_module_returns_all)
{
	int p[2], kq = setup(p);
	int d = dup(p[0]);
	struct kevent ev[4];

	ck_assert_int_ge(d, 0);
	ck_assert_int_eq(M.watch(kq, d, U(1)), 0);
	ck_assert_int_eq(M.release(kq), 0);
	int n = M.collect(kq, ev, 4, 2000);
	if (n == 1)
		n += M.collect(kq, ev + 1, 3, 2000);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < 2; i++) {
		int k = ev[i].udata == U(1);
		ck_assert_uint_eq(ev[i].ident, k ? d : p[0]);
		ck_assert_uint_eq(ev[i].flags, EV_FREEWATCH | EV_DELETE);
		ck_assert_uint_eq(ev[i].fflags, NOTE_FREE_RELEASE);
	}
	ck_assert_ptr_ne(ev[0].udata, ev[1].udata);
	close(p[0]);
	close(d);
	expect_quiet(kq, 20);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(fork_child_close_is_harmless)
{
	int p[2], kq = setup(p), st;

	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct kevent ev;
		int bad = 0;
		close(p[0]);
		if (M.collect(kq, &ev, 1, 0) != -1 || errno != EBADF)
			bad = 1;
		_exit(bad);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	expect_ev(kq, 2000, p[0], EVFILT_READ, 0, 0, 1, U(0));
	close(p[0]);
	expect_free_close(kq, p[0], U(0));
	close(p[1]);
	close(kq);
}
END_TEST

static Suite *
dlopen_suite(void)
{
	Suite *s = suite_create("dlopen");
	TCase *tc = tcase_create("rtld_local");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, program_close_reaches_module_kqueue);
	tcase_add_test(tc, module_own_close_is_tracked);
	tcase_add_test(tc, program_close_through_pointer_is_tracked);
	tcase_add_test(tc, program_dup2_reaches_module_kqueue);
	tcase_add_test(tc, program_dup3_reaches_module_kqueue);
#ifndef __SANITIZE_ADDRESS__
	/* ASan interposes fclose itself and calls libc's directly; the GOT
	 * patch leaves another interposer's binding alone (see kqfree(3)) */
	tcase_add_test(tc, program_fclose_reaches_module_kqueue);
#endif
	tcase_add_test(tc, program_close_range_reaches_module_kqueue);
	tcase_add_test(tc, program_closefrom_reaches_module_kqueue);
	tcase_add_test(tc, close_errors_are_libc_errors);
	tcase_add_test(tc, release_through_module_returns_all);
	tcase_add_test(tc, fork_child_close_is_harmless);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(dlopen_suite)
