/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Allocation failure: this program's own malloc/calloc/realloc (which the
 * library's calls resolve to, the executable coming first in the symbol
 * search order) fail the Nth allocation of the calling thread, once or
 * from then on, while armed.  Each case walks N over every allocation a
 * kevent() change (or kqueue()) makes, for every filter: the failed call
 * must answer ENOMEM (FreeBSD's errno), as an EV_ERROR entry or -1, leave no
 * trace (no knote, no event, no descriptor, no reference), and the same
 * change retried must succeed and deliver exactly the event a run without
 * failures delivers, with EV_FREEWATCH references balanced.  Leaks are
 * valgrind's job (make check-valgrind).
 */
#include "util.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/wait.h>

/* ------------------------------------------------ the failing allocator */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

static __thread bool af_armed;		/* only the arming thread fails */
static __thread bool af_persistent;
static __thread long af_countdown;	/* allocations left before failing */
static __thread long af_hits;		/* failures injected */

static bool
af_fail(void)
{
	if (!af_armed)
		return false;
	if (af_countdown > 0) {
		af_countdown--;
		return false;
	}
	if (!af_persistent)
		af_armed = false;
	af_hits++;
	return true;
}

void *
malloc(size_t n)
{
	if (af_fail()) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_malloc(n);
}

void *
calloc(size_t n, size_t size)
{
	if (af_fail()) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_calloc(n, size);
}

void *
realloc(void *p, size_t n)
{
	if (af_fail()) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_realloc(p, n);
}

/* Fail the allocation after n good ones (and, persistent, every later one). */
static void
af_arm(long n, bool persistent)
{
	af_countdown = n;
	af_persistent = persistent;
	af_hits = 0;
	af_armed = true;
}

/* Disarm; the number of failures injected. */
static long
af_disarm(void)
{
	af_armed = false;
	return af_hits;
}

/* ------------------------------------------------ the scenarios */

struct env {
	int kq;
	int fd[2];
	pid_t pid;
};

struct afcase {
	const char *name;
	short filter;
	unsigned short flags;		/* besides EV_ADD|EV_FREEWATCH|EV_RECEIPT */
	unsigned fflags;
	int64_t data;
	long wait_ms;
	void (*setup)(struct env *);
	uintptr_t (*ident)(struct env *);
	void (*trigger)(struct env *);
	void (*teardown)(struct env *);
};

static void
setup_pipe(struct env *e)
{
	xpipe(e->fd);
}

static void
setup_socket(struct env *e)
{
	xsocketpair(SOCK_STREAM, e->fd);
}

static void
setup_file(struct env *e)
{
	e->fd[0] = make_regular_file(5);
	e->fd[1] = -1;
}

static void
setup_none(struct env *e)
{
	e->fd[0] = e->fd[1] = -1;
}

/* A child that exits with status 7 once fd[1] is closed. */
static void
setup_child(struct env *e)
{
	char c;

	xpipe2(e->fd, O_CLOEXEC);
	e->pid = fork();
	ck_assert_int_ge(e->pid, 0);
	if (e->pid == 0) {
		close(e->fd[1]);
		while (read(e->fd[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(7);
	}
	close(e->fd[0]);
	e->fd[0] = -1;
}

static void
setup_signal(struct env *e)
{
	setup_none(e);
	ck_assert_ptr_ne(signal(SIGUSR1, SIG_IGN), SIG_ERR);
}

static uintptr_t ident_fd0(struct env *e) { return (uintptr_t)e->fd[0]; }
static uintptr_t ident_fd1(struct env *e) { return (uintptr_t)e->fd[1]; }
static uintptr_t ident_pid(struct env *e) { return (uintptr_t)e->pid; }
static uintptr_t ident_sigusr1(struct env *e) { (void)e; return SIGUSR1; }
static uintptr_t ident_seven(struct env *e) { (void)e; return 7; }

static void trigger_none(struct env *e) { (void)e; }
static void trigger_write1(struct env *e) { xwrite(e->fd[1], 3); }
static void trigger_write0(struct env *e) { xwrite(e->fd[0], 1); }
static void trigger_signal(struct env *e) { (void)e; ck_assert_int_eq(kill(getpid(), SIGUSR1), 0); }

static void
trigger_exit(struct env *e)
{
	close(e->fd[1]);
	e->fd[1] = -1;
}

static void
trigger_user(struct env *e)
{
	kev_ok(e->kq, 7, EVFILT_USER, EV_KEEPUDATA, NOTE_TRIGGER | NOTE_FFOR | 5, 0, NULL);
}

static void
teardown_fds(struct env *e)
{
	for (int i = 0; i < 2; i++)
		if (e->fd[i] >= 0)
			close(e->fd[i]);
}

static void
teardown_child(struct env *e)
{
	int st;

	teardown_fds(e);
	ck_assert_int_eq(waitpid(e->pid, &st, 0), e->pid);
}

static const struct afcase cases[] = {
	{ "read_pipe", EVFILT_READ, 0, 0, 0, 1000, setup_pipe, ident_fd0, trigger_write1, teardown_fds },
	{ "write_pipe", EVFILT_WRITE, 0, 0, 0, 1000, setup_pipe, ident_fd1, trigger_none, teardown_fds },
	{ "read_socket", EVFILT_READ, EV_CLEAR, 0, 0, 1000, setup_socket, ident_fd0, trigger_write1, teardown_fds },
	{ "write_socket", EVFILT_WRITE, 0, 0, 0, 1000, setup_socket, ident_fd1, trigger_none, teardown_fds },
	{ "empty_socket", EVFILT_EMPTY, 0, 0, 0, 1000, setup_socket, ident_fd1, trigger_none, teardown_fds },
	{ "read_file", EVFILT_READ, 0, 0, 0, 1000, setup_file, ident_fd0, trigger_none, teardown_fds },
	{ "vnode_file", EVFILT_VNODE, EV_CLEAR, NOTE_WRITE | NOTE_EXTEND, 0, 1000, setup_file, ident_fd0, trigger_write0, teardown_fds },
	{ "timer_oneshot", EVFILT_TIMER, EV_ONESHOT, NOTE_MSECONDS, 1, 1000, setup_none, ident_seven, trigger_none, teardown_fds },
	{ "timer_periodic", EVFILT_TIMER, 0, NOTE_MSECONDS, 100, 1000, setup_none, ident_seven, trigger_none, teardown_fds },
	{ "signal", EVFILT_SIGNAL, 0, 0, 0, 1000, setup_signal, ident_sigusr1, trigger_signal, teardown_fds },
	{ "proc_exit", EVFILT_PROC, 0, NOTE_EXIT, 0, 2000, setup_child, ident_pid, trigger_exit, teardown_child },
	{ "user", EVFILT_USER, EV_CLEAR, 0, 0, 1000, setup_none, ident_seven, trigger_user, teardown_fds },
};
#define NCASES	((int)(sizeof cases / sizeof cases[0]))

static const struct timespec zero_ts = { 0, 0 };

/* Close the kqueue and let the library reclaim it (kevent() reaps). */
static void
kq_close_reap(int kq)
{
	ck_assert_int_eq(close(kq), 0);
	kevent(-1, NULL, 0, NULL, 0, NULL);
}

static void
change_of(const struct afcase *c, struct env *e, struct kevent *kev, void *udata)
{
	EV_SET(kev, c->ident(e), c->filter, EV_ADD | EV_FREEWATCH | EV_RECEIPT | c->flags,
	    c->fflags, c->data, udata);
}

/* Wait for the case's event (armed: every allocation fails meanwhile; an
 * ENOMEM from the wait is allowed if the event then comes unarmed). */
static int
wait_event(const struct afcase *c, int kq, struct kevent *ev, bool armed)
{
	int n;

	memset(ev, 0, sizeof *ev);
	if (armed) {
		af_arm(0, true);
		n = kev_wait(kq, ev, 1, c->wait_ms);
		int err = errno;
		af_disarm();
		if (n == 1)
			return n;
		ck_assert_msg(n == -1 && err == ENOMEM,
		    "%s: wait under allocation failure: %d/%s", c->name, n, strerror(err));
	}
	return kev_wait(kq, ev, 1, c->wait_ms);
}

static void
expect_same(const struct afcase *c, const struct kevent *got, const struct kevent *ref,
    void *udata, long n)
{
	/* a new child each time: its pid is the ident */
	/* a periodic timer's data counts the periods until the wait took it:
	 * more than one when the machine held this thread back a period */
	bool periodic = c->filter == EVFILT_TIMER && !(c->flags & EV_ONESHOT);

	ck_assert_msg(got->ident == (c->filter == EVFILT_PROC ? got->ident : ref->ident) &&
	    got->filter == ref->filter &&
	    got->flags == ref->flags && got->fflags == ref->fflags &&
	    (periodic ? got->data >= 1 : got->data == ref->data) &&
	    got->udata == udata,
	    "%s (N=%ld): got ident %lu filter %d flags 0x%x fflags 0x%x data %lld "
	    "udata %p, expected flags 0x%x fflags 0x%x data %lld udata %p",
	    c->name, n, (unsigned long)got->ident, got->filter, got->flags,
	    got->fflags, (long long)got->data, got->udata, ref->flags,
	    ref->fflags, (long long)ref->data, udata);
}

/* The event that fired, handed back: delete the knote if it still lives,
 * collect its reference; nothing else may be pending. */
static void
finish(const struct afcase *c, struct env *e, const struct kevent *ev, struct obj *o)
{
	drop_returned(ev, 1);
	if (!(ev->flags & EV_FREEWATCH)) {
		kev_ok(e->kq, c->ident(e), c->filter, EV_DELETE, 0, 0, NULL);
		kev_expect(e->kq, 0, c->ident(e), c->filter, EV_FREEWATCH | EV_DELETE,
		    NOTE_FREE_DELETE, 0, o);
		obj_unref(o);
	}
	kev_expect_none(e->kq);
	ck_assert_int_eq(atomic_load(&o->refs), 0);
	ck_assert_int_eq(atomic_load(&o->underflows), 0);
}

/* A run without failures: the event every retry must reproduce. */
static void
reference_event(const struct afcase *c, struct kevent *ref)
{
	struct env e = { .pid = -1 };
	struct kevent kev, out;
	struct obj o = { 0 };

	e.kq = xkqueue();
	c->setup(&e);
	change_of(c, &e, &kev, &o);
	obj_ref(&o);
	ck_assert_int_eq(kevent(e.kq, &kev, 1, &out, 1, &zero_ts), 1);
	ck_assert_uint_eq(out.flags, EV_ERROR);
	ck_assert_int_eq(out.data, 0);
	c->trigger(&e);
	ck_assert_int_eq(kev_wait(e.kq, ref, 1, c->wait_ms), 1);
	ck_assert_ptr_eq(ref->udata, &o);
	finish(c, &e, ref, &o);
	c->teardown(&e);
	kq_close_reap(e.kq);
}

/*
 * Fail the Nth allocation of the EV_ADD|EV_FREEWATCH change (modify: of a
 * second EV_ADD|EV_FREEWATCH replacing the udata of the existing knote),
 * for N = 0, 1, ... until the change no longer allocates that many times.
 */
static void
walk(const struct afcase *c, bool persistent, bool modify)
{
	struct kevent ref, kev, out, ev;
	int base;

	reference_event(c, &ref);
	/* process-wide services the reference run made are counted in */
	base = count_open_fds();
	for (long n = 0; n < 1000; n++) {
		struct env e = { .pid = -1 };
		struct obj o = { 0 }, o2 = { 0 };
		struct obj *holder = &o;
		long hits;
		int r;

		e.kq = xkqueue();
		c->setup(&e);
		if (modify) {
			change_of(c, &e, &kev, &o);
			obj_ref(&o);
			ck_assert_int_eq(kevent(e.kq, &kev, 1, &out, 1, &zero_ts), 1);
			ck_assert_int_eq(out.data, 0);
		}
		change_of(c, &e, &kev, modify ? &o2 : &o);
		obj_ref(modify ? &o2 : &o);
		af_arm(n, persistent);
		r = kevent(e.kq, &kev, 1, &out, 1, &zero_ts);
		hits = af_disarm();
		ck_assert_msg(r == 1 && out.flags == EV_ERROR,
		    "%s (N=%ld): kevent returned %d flags 0x%x", c->name, n, r, out.flags);
		ck_assert_ptr_eq(out.udata, kev.udata);
		if (out.data != 0) {
			ck_assert_msg(out.data == ENOMEM, "%s (N=%ld): EV_ERROR %s",
			    c->name, n, strerror((int)out.data));
			ck_assert_int_gt(hits, 0);
			/* the failed change took no reference ... */
			obj_unref(modify ? &o2 : &o);
			/* ... and left nothing: no event, no knote (modify: the old
			 * one, untouched: its event comes with the old udata) */
			if (!modify) {
				kev_expect_none(e.kq);
				ck_assert_errno(kev_change(e.kq, c->ident(&e), c->filter,
				    EV_DELETE, 0, 0, NULL), ENOENT);
				obj_ref(&o);
				ck_assert_int_eq(kevent(e.kq, &kev, 1, &out, 1, &zero_ts), 1);
				ck_assert_int_eq(out.data, 0);
			}
		} else if (modify) {
			/* the old reference comes back */
			kev_expect(e.kq, 0, c->ident(&e), c->filter, EV_FREEWATCH | EV_DELETE,
			    NOTE_FREE_UDATA, 0, &o);
			obj_unref(&o);
			holder = &o2;
		}
		c->trigger(&e);
		ck_assert_int_eq(wait_event(c, e.kq, &ev, persistent), 1);
		expect_same(c, &ev, &ref, holder, n);
		finish(c, &e, &ev, holder);
		ck_assert_int_eq(atomic_load(&o.refs) + atomic_load(&o2.refs), 0);
		c->teardown(&e);
		kq_close_reap(e.kq);
		ck_assert_msg(count_open_fds() == base, "%s (N=%ld): %d descriptors open, %d before",
		    c->name, n, count_open_fds(), base);
		if (hits == 0) {
			if (getenv("AF_VERBOSE") != NULL)
				fprintf(stderr, "%s%s%s: %ld allocation(s)\n", c->name,
				    modify ? " modify" : "", persistent ? " persistent" : "", n);
			break;	/* the change made fewer than N + 1 allocations */
		}
	}
}

START_TEST(add_fails_once)
{
	walk(&cases[_i], false, false);
}
END_TEST

START_TEST(add_fails_persistently)
{
	walk(&cases[_i], true, false);
}
END_TEST

START_TEST(modify_fails_once)
{
	walk(&cases[_i], false, true);
}
END_TEST

START_TEST(modify_fails_persistently)
{
	walk(&cases[_i], true, true);
}
END_TEST

/* kqueue() itself: -1/ENOMEM and no descriptor, then a working kqueue. */
static void
walk_kqueue(bool persistent)
{
	int base = count_open_fds();

	for (long n = 0; n < 1000; n++) {
		long hits;
		int kq, err;

		af_arm(n, persistent);
		kq = kqueue();
		err = errno;
		hits = af_disarm();
		if (kq < 0) {
			ck_assert_msg(err == ENOMEM, "kqueue (N=%ld): %s", n, strerror(err));
			ck_assert_int_gt(hits, 0);
			kevent(-1, NULL, 0, NULL, 0, NULL);
			ck_assert_int_eq(count_open_fds(), base);
			kq = xkqueue();
		}
		kev_ok(kq, 1, EVFILT_USER, EV_ADD, 0, 0, UD(9));
		kev_ok(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(9));
		kev_expect(kq, 0, 1, EVFILT_USER, 0, 0, 0, UD(9));
		kq_close_reap(kq);
		ck_assert_int_eq(count_open_fds(), base);
		if (hits == 0)
			break;
	}
}

START_TEST(kqueue_fails_once)
{
	walk_kqueue(false);
}
END_TEST

START_TEST(kqueue_fails_persistently)
{
	walk_kqueue(true);
}
END_TEST

static Suite *
allocfail_suite(void)
{
	Suite *s = suite_create("allocfail");
	TCase *tc = tcase_create("allocfail");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, kqueue_fails_once);
	tcase_add_test(tc, kqueue_fails_persistently);
	tcase_add_loop_test(tc, add_fails_once, 0, NCASES);
	tcase_add_loop_test(tc, add_fails_persistently, 0, NCASES);
	tcase_add_loop_test(tc, modify_fails_once, 0, NCASES);
	tcase_add_loop_test(tc, modify_fails_persistently, 0, NCASES);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(allocfail_suite)
