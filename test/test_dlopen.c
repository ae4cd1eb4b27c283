/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The binding case: this program is NOT linked with libkqfree.  It
 * dlopen()s dlmod.so (linked with libkqfree) with RTLD_LOCAL, the way perl
 * or python load an extension module, so libkqfree never enters the global
 * scope and every close() below binds to libc.  The knotes must still die
 * with the fd - through the GOT-patching fallback - and return their
 * references exactly once.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"	/* its kevent() helpers are not used: no libkqfree here */

/* sigset() is an obsolete XSI call, tested because programs still use it. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

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

static const char *
dlmod_ctor_path(void)
{
	const char *p = getenv("DLMOD_CTOR_PATH");
	if (p != NULL && *p != '\0')
		return p;
#ifdef DLMOD_CTOR_PATH
	return DLMOD_CTOR_PATH;
#else
	return "./.libs/dlmod_ctor.so";
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

/*
 * An object loaded after the kqueue's last change, and after the walk that
 * patched everything then, is patched by the next kevent() that watches a
 * descriptor: here a module bound to libc's close() is loaded between two
 * watches, and its close of the second descriptor must be seen.  (That
 * kevent() knows of the load from the loader's count of additions, read
 * without a walk where gotpatch.c found it.)
 */
START_TEST(module_loaded_between_watches_is_patched_by_the_next_kevent)
{
	int p[2], q[2], kq = setup(p);

	void *h = dlopen(DLMOD_CLOSER_PATH, RTLD_NOW | RTLD_LOCAL);
	ck_assert_msg(h != NULL, "dlopen: %s", dlerror());
	int (*closer)(int) = (int (*)(int))dlsym(h, "dlmod_closer_close");
	ck_assert_ptr_nonnull(closer);
	ck_assert_int_eq(pipe2(q, O_NONBLOCK), 0);
	ck_assert_int_eq(M.watch(kq, q[0], U(1)), 0);
	ck_assert_int_eq(closer(q[0]), 0);
	expect_free_close(kq, q[0], U(1));
	expect_quiet(kq, 20);
	ck_assert_int_eq(closer(p[0]), 0);
	expect_free_close(kq, p[0], U(0));
	close(q[1]);
	close(p[1]);
	close(keep);
	close(kq);
}
END_TEST

/*
 * Which object the program's GOT entry for close() points into.  Not inlined:
 * compilers take GOT entries for constants (clang reuses one load across the
 * dlopen that patches it), so each question must be a fresh read.
 */
static __attribute__((noinline)) bool
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

#if defined(__x86_64__) && !defined(KQ_ASAN)
/*
 * A vfork() child runs in the program's memory, the module's kqueue
 * included: its close is not the parent's.  The close path tells them
 * apart only because vfork() marks the thread (lib/fdreg.c, owner_pid), so
 * the program's vfork, bound to libc, must be patched too.
 */
START_TEST(vfork_child_close_is_harmless)
{
	int p[2], kq = setup(p), st;

	pid_t pid = vfork();
	if (pid == 0) {
		close(p[0]);
		_exit(0);
	}
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	expect_ev(kq, 2000, p[0], EVFILT_READ, 0, 0, 1, U(0));
	close(p[0]);
	expect_free_close(kq, p[0], U(0));
	close(p[1]);
	close(keep);
	close(kq);
}
END_TEST
#endif

/*
 * dlclose() of the module drops the last reference to libkqfree, but the
 * program's GOT entries for the close family point into it: the library
 * must stay mapped, and every one of them must still work - and still
 * track the module's kqueue, which reports the close once the module is
 * loaded again.
 */
START_TEST(close_family_works_after_module_dlclose)
{
	int p[2], q[2], kq = setup(p);
	int (*volatile cl)(int) = close;

	ck_assert_msg(close_slot_in("libkqfree"), "GOT entry for close not patched");
	ck_assert_int_eq(dlclose(M.h), 0);
	M.h = NULL;

	ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
	ck_assert_int_eq(close(q[1]), 0);
	ck_assert_errno(close(q[1]), EBADF);
	ck_assert_errno(fcntl(q[1], F_GETFD), EBADF);
	ck_assert_int_eq(dup2(q[0], q[1]), q[1]);
	ck_assert_int_eq(fcntl(q[1], F_GETFD), 0);
	ck_assert_int_eq(dup3(q[0], q[1], O_CLOEXEC), q[1]);
	ck_assert_int_eq(fcntl(q[1], F_GETFD), FD_CLOEXEC);
	ck_assert_int_eq(close_range(q[1], q[1], 0), 0);
	ck_assert_errno(fcntl(q[1], F_GETFD), EBADF);
	int hi = fcntl(q[0], F_DUPFD_CLOEXEC, 800);
	ck_assert_int_ge(hi, 800);
	closefrom(800);
	ck_assert_errno(fcntl(hi, F_GETFD), EBADF);
	int d = dup(q[0]);
	ck_assert_int_ge(d, 0);
	ck_assert_int_eq(cl(d), 0);		/* through the GLOB_DAT slot */
	ck_assert_errno(fcntl(d, F_GETFD), EBADF);
	FILE *f = fdopen(q[0], "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_errno(fcntl(q[0], F_GETFD), EBADF);
	DIR *dir = opendir("/");
	ck_assert_ptr_nonnull(dir);
	int dfd = dirfd(dir);
	ck_assert_int_ge(dfd, 0);
	ck_assert_int_eq(closedir(dir), 0);
	ck_assert_errno(fcntl(dfd, F_GETFD), EBADF);

	/* The watched fd: its close is still tracked by the module's kqueue. */
	ck_assert_int_eq(close(p[0]), 0);
	load_module();
	expect_free_close(kq, p[0], U(0));
	expect_quiet(kq, 20);
	check_dead_and_reuse(kq, p[0], p[1]);
}
END_TEST

/*
 * The signal interposers go through the patch too: the program's own
 * sigaction(), signal() and sigset() bind to libc, and would replace the
 * handler that counts the module's EVFILT_SIGNAL (and make the last
 * EV_DELETE restore a disposition the program has since changed).
 */
static atomic_int usr1_handled;

static void
on_usr1(int sig)
{
	(void)sig;
	atomic_fetch_add(&usr1_handled, 1);
}

/* A sanitizer runtime in the program interposes sigaction() and signal()
 * itself (and calls libc's), and the patch leaves a slot bound to another
 * interposer alone: then only sigset() can be checked. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZER_OWNS_SIGACTION 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZER_OWNS_SIGACTION 1
#endif
#endif
#ifndef SANITIZER_OWNS_SIGACTION
#define SANITIZER_OWNS_SIGACTION 0
#endif

START_TEST(program_sigaction_reaches_module_signal_watch)
{
	struct sigaction sa, cur;
	struct kevent ch;
	int kq;

	load_module();
	kq = M.kqueue();
	ck_assert_int_ge(kq, 0);
	EV_SET(&ch, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, U(1));
	ck_assert_int_eq(M.kevent(kq, &ch, 1, NULL, 0, 0), 0);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	if (SANITIZER_OWNS_SIGACTION)
		ck_assert_ptr_eq((void *)sigset(SIGUSR1, on_usr1), (void *)SIG_DFL);
	else
		ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
	ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
	ck_assert_int_eq(atomic_load(&usr1_handled), 2);
	expect_ev(kq, 2000, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 2, U(1));
	/* the program sees its own disposition, whichever call it asks */
	if (SANITIZER_OWNS_SIGACTION) {
		ck_assert_ptr_eq((void *)sigset(SIGUSR1, SIG_IGN), (void *)on_usr1);
	} else {
		ck_assert_int_eq(sigaction(SIGUSR1, NULL, &cur), 0);
		ck_assert_ptr_eq((void *)cur.sa_handler, (void *)on_usr1);
		ck_assert_ptr_eq((void *)signal(SIGUSR1, SIG_IGN), (void *)on_usr1);
	}
	ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
	expect_ev(kq, 2000, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, U(1));
	ck_assert_ptr_eq((void *)sigset(SIGUSR1, on_usr1), (void *)SIG_IGN);
	ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
	ck_assert_int_eq(atomic_load(&usr1_handled), 3);
	expect_ev(kq, 2000, SIGUSR1, EVFILT_SIGNAL, EV_CLEAR, 0, 1, U(1));
	/* the last delete gives the kernel the program's latest handler */
	EV_SET(&ch, SIGUSR1, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);
	ck_assert_int_eq(M.kevent(kq, &ch, 1, NULL, 0, 0), 0);
	ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
	ck_assert_int_eq(atomic_load(&usr1_handled), 4);
	ck_assert_int_eq(M.close(kq), 0);
}
END_TEST

static void
ctor_status(void *h, int *kq, int *kev, int *patched)
{
	void (*status)(int *, int *, int *) =
	    (void (*)(int *, int *, int *))dlsym(h, "dlmod_ctor_status");

	ck_assert_msg(status != NULL, "dlsym dlmod_ctor_status: %s", dlerror());
	status(kq, kev, patched);
}

/*
 * The patch path entered from a constructor, inside dlopen() (the loader's
 * lock held by this thread): kqueue() and kevent() work there, and the
 * module being loaded gets its own GOT patched before its constructor goes
 * on.  Twice: the second load finds libkqfree already there.
 */
START_TEST(constructor_kqueue_patches_its_module)
{
	for (int i = 0; i < 2; i++) {
		void *h = dlopen(dlmod_ctor_path(), RTLD_NOW | RTLD_LOCAL);
		ck_assert_msg(h != NULL, "dlopen %s: %s", dlmod_ctor_path(), dlerror());
		ck_assert_ptr_null(dlsym(RTLD_DEFAULT, "kqfree_release"));
		int kq, kev, patched;
		ctor_status(h, &kq, &kev, &patched);
		ck_assert_int_ge(kq, 0);
		ck_assert_int_eq(kev, 0);
		ck_assert_int_eq(patched, 1);
		ck_assert_errno(fcntl(kq, F_GETFD), EBADF);	/* it closed it */
		if (i == 0)
			load_module();		/* keeps libkqfree loaded */
		ck_assert_int_eq(dlclose(h), 0);
	}
	ck_assert_msg(close_slot_in("libkqfree"), "GOT entry for close not patched");
}
END_TEST

/*
 * Lock order against the dynamic loader.  One thread dlopen()s and
 * dlclose()s dlmod_ctor in a loop: its constructor calls kqueue() and
 * kevent() while the loader's lock is held.  Another thread loops kevent()
 * with a change, which takes the patch path every time the set of loaded
 * objects changed.  If the patch path held its own lock while calling the
 * loader (which waits for the loader's lock), each thread would wait for
 * the other forever.  The main thread is the watchdog.
 */
#define LOADER_ROUNDS	1000	/* before the fix: deadlocked within 50 */
#define LOADER_BUDGET_S	10	/* fewer rounds if slower (valgrind) */
#define LOADER_DEADLINE_S 25

static _Atomic bool loader_stop;
static _Atomic int loader_rounds, loader_bad, kevent_calls, kevent_bad;

static void *
loader_thread(void *arg)
{
	struct timespec t0, t;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < LOADER_ROUNDS && !loader_stop; i++) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec >= LOADER_BUDGET_S)
			break;
		void *h = dlopen(dlmod_ctor_path(), RTLD_NOW | RTLD_LOCAL);
		if (h == NULL) {
			loader_bad++;
			break;
		}
		int kq, kev, patched;
		void (*status)(int *, int *, int *) =
		    (void (*)(int *, int *, int *))dlsym(h, "dlmod_ctor_status");
		if (status == NULL) {
			loader_bad++;
		} else {
			status(&kq, &kev, &patched);
			if (kq < 0 || kev != 0 || patched != 1)
				loader_bad++;
		}
		if (dlclose(h) != 0)
			loader_bad++;
		loader_rounds++;
	}
	loader_stop = true;
	return NULL;
}

static void *
kevent_thread(void *arg)
{
	int kq = *(int *)arg;
	struct kevent ch, ev;

	while (!loader_stop) {
		/* A change: the patch path runs if the loader thread loaded or
		 * unloaded dlmod_ctor since the last call. */
		EV_SET(&ch, 7, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(7));
		memset(&ev, 0xa5, sizeof ev);
		int n = M.kevent(kq, &ch, 1, &ev, 1, 0);
		if (n != 1 || ev.ident != 7 || ev.filter != EVFILT_USER ||
		    ev.flags != EV_CLEAR || ev.fflags != 0 || ev.data != 0 ||
		    ev.udata != UD(7))
			kevent_bad++;
		kevent_calls++;
	}
	return NULL;
}

START_TEST(loader_lock_vs_patch_path_no_deadlock)
{
	pthread_t lt, kt;
	struct timespec dl;

	load_module();
	int kq = M.kqueue();
	ck_assert_int_ge(kq, 0);
	struct kevent ch;
	EV_SET(&ch, 7, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(7));
	ck_assert_int_eq(M.kevent(kq, &ch, 1, NULL, 0, 0), 0);
	ck_assert_int_eq(pthread_create(&kt, NULL, kevent_thread, &kq), 0);
	ck_assert_int_eq(pthread_create(&lt, NULL, loader_thread, NULL), 0);
	ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &dl), 0);
	dl.tv_sec += LOADER_DEADLINE_S;
	int e = pthread_timedjoin_np(lt, NULL, &dl);
	ck_assert_msg(e == 0, "deadlock: dlopen() with kqueue() in a constructor "
	    "vs kevent(): %d rounds, %d kevent calls in %d s",
	    loader_rounds, kevent_calls, LOADER_DEADLINE_S);
	e = pthread_timedjoin_np(kt, NULL, &dl);
	ck_assert_msg(e == 0, "kevent thread stuck after %d calls", kevent_calls);
	ck_assert_int_gt(loader_rounds, 0);
	ck_assert_int_eq(loader_bad, 0);
	ck_assert_int_gt(kevent_calls, 0);
	ck_assert_int_eq(kevent_bad, 0);
	close(kq);
}
END_TEST

/*
 * A fork child whose loader list lock is stuck (another thread was inside
 * dl_iterate_phdr() at the fork) walks the loader no more; but an object the
 * parent loaded after its last walk is in the child too, unpatched.  Here a
 * module whose close() is bound to libc is loaded, the process forks before
 * any kevent() walked again, and the child watches a pipe and closes it
 * through that module: the free notice must come, as it does in a child
 * whose lock was free.
 */
/* In the child: watch a pipe, close it through closer, expect the notice. */
static int
child_close_through(int (*closer)(int))
{
	struct kevent ev;
	int p[2], kq = M.kqueue();

	if (kq < 0 || pipe2(p, O_NONBLOCK) != 0)
		return 60;
	if (M.watch(kq, p[0], U(0)) != 0)
		return 61;
	if (closer(p[0]) != 0)
		return 62;
	if (M.collect(kq, &ev, 1, 2000) != 1)
		return 63;		/* no free notice: the close went unseen */
	if (ev.ident != (uintptr_t)p[0] || ev.filter != EVFILT_READ ||
	    ev.flags != (EV_FREEWATCH | EV_DELETE) ||
	    ev.fflags != NOTE_FREE_CLOSE || ev.udata != U(0))
		return 64;
	return 0;
}

START_TEST(stuck_lock_child_tracks_module_loaded_before_fork)
{
	struct parked_walk w = { 0 };
	int st;

	load_module();
	void *h = dlopen(DLMOD_CLOSER_PATH, RTLD_NOW | RTLD_LOCAL);
	ck_assert_msg(h != NULL, "dlopen: %s", dlerror());
	int (*closer)(int) = (int (*)(int))dlsym(h, "dlmod_closer_close");
	ck_assert_ptr_nonnull(closer);

	/* the lock free at the fork: the child's first kevent() patches */
	pid_t pid = fork();
	if (pid == 0)
		_exit(child_close_through(closer));
	ck_assert_int_gt(pid, 0);
	st = wait_child_bounded(pid, 15000);
	ck_assert_msg(st == 0, "lock free: child status %#x", st);

	/* the lock held by another thread at the fork */
	park_a_walk(&w);
	pid = fork();
	if (pid == 0)
		_exit(child_close_through(closer));
	ck_assert_int_gt(pid, 0);
	st = wait_child_bounded(pid, 15000);
	release_the_walk(&w);
	ck_assert_msg(st == 0, "lock held: child status %#x (-1: hung)", st);
}
END_TEST

/*
 * libkqfree loaded by a dlopen() inside a dl_iterate_phdr() callback: its
 * constructor runs with the list lock already held by this thread, so the
 * lock is still held after the constructor's own walk.  It must be found
 * all the same, or a child forked while another thread walks hangs.
 */
static int
load_in_walk_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)info, (void)size, (void)arg;
	load_module();
	return 1;
}

START_TEST(module_loaded_inside_a_walk_child_forked_while_walking_works)
{
	struct parked_walk w = { 0 };

	dl_iterate_phdr(load_in_walk_cb, NULL);
	ck_assert_ptr_nonnull(M.close);
	park_a_walk(&w);
	pid_t pid = fork();
	if (pid == 0)
		_exit(child_close_through(M.close));
	ck_assert_int_gt(pid, 0);
	int st = wait_child_bounded(pid, 15000);
	release_the_walk(&w);
	ck_assert_msg(st == 0, "child status %#x (-1: hung)", st);
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
	tcase_add_test(tc, module_loaded_between_watches_is_patched_by_the_next_kevent);
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
	/* Not under ASan: the program's vfork() is ASan's interceptor, which
	 * looked up the real vfork (libc's) before libkqfree was loaded by
	 * dlopen, and the GOT patch leaves an entry bound to an interceptor
	 * alone; so nothing marks the thread. */
#if defined(__x86_64__) && !defined(KQ_ASAN)
	tcase_add_test(tc, vfork_child_close_is_harmless);
#endif
	tcase_add_test(tc, close_family_works_after_module_dlclose);
	tcase_add_test(tc, constructor_kqueue_patches_its_module);
	tcase_add_test(tc, program_sigaction_reaches_module_signal_watch);
	tcase_add_test(tc, stuck_lock_child_tracks_module_loaded_before_fork);
	tcase_add_test(tc, module_loaded_inside_a_walk_child_forked_while_walking_works);
	suite_add_tcase(s, tc);

	tc = tcase_create("loader_lock");
	tcase_set_timeout(tc, LOADER_DEADLINE_S + 10);
	tcase_add_test(tc, loader_lock_vs_patch_path_no_deadlock);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(dlopen_suite)
