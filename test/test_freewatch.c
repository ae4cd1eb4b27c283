/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * EV_FREEWATCH accounting (SPEC section 2): every reference a successful
 * EV_ADD|EV_FREEWATCH takes comes back exactly once, in an event carrying
 * EV_FREEWATCH, whichever way the knote dies.  The objects below play the
 * binding's refcounted SV: the test takes a reference for every successful
 * add and drops one for every returned EV_FREEWATCH event; at the end each
 * object must have been freed exactly once.
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE	(1U << 1)
#endif

/* ------------------------------------------------------------ refcounting */

#define NOBJ 4096
static struct obj objs[NOBJ];

static struct obj *
obj(int i)
{
	objs[i].id = i;
	return &objs[i];
}

/* Add with EV_FREEWATCH, the binding's way: take the reference first (the
 * return may race ahead on another thread), give it back if the add fails. */
static int
fw_add(int kq, uintptr_t ident, short filter, unsigned short flags,
    unsigned fflags, int64_t data, struct obj *o)
{
	obj_ref(o);
	int r = kev_change(kq, ident, filter, EV_ADD | EV_FREEWATCH | flags,
	    fflags, data, o);
	if (r != 0) {
		int e = errno;
		obj_unref(o);
		errno = e;
	}
	return r;
}

#define fw_add_ok(kq, ident, filter, flags, fflags, data, o) \
	ck_assert_int_eq(fw_add(kq, ident, filter, flags, fflags, data, o), 0)

/* Next event must be this free notice; its reference is dropped. */
#define expect_notice(kq, ident, filter, reason, o) do {		\
	kev_expect(kq, 2000, ident, filter, EV_FREEWATCH | EV_DELETE,	\
	    reason, 0, o);						\
	obj_unref(o);							\
} while (0)

/* Every object used by the case is balanced and freed exactly once. */
static void
assert_all_freed(int first, int n)
{
	for (int i = first; i < first + n; i++) {
		ck_assert_msg(objs[i].refs == 0, "obj %d: %d references not returned",
		    i, objs[i].refs);
		ck_assert_msg(objs[i].underflows == 0, "obj %d: %d references returned twice",
		    i, objs[i].underflows);
		ck_assert_msg(objs[i].frees == 1, "obj %d freed %d times", i,
		    objs[i].frees);
	}
}

static void
reset_objs(void)
{
	memset(objs, 0, sizeof(objs));
}

/* ------------------------------------------------------------- EV_DELETE */

START_TEST(delete_notice_in_same_call)
{
	int kq = xkqueue(), p[2];
	struct kevent ch, ev[4];

	xpipe2(p, O_NONBLOCK);
	fw_add_ok(kq, p[0], EVFILT_READ, 0, 0, 0, obj(0));
	EV_SET(&ch, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	memset(ev, 0xa5, sizeof(ev));
	ck_assert_int_eq(kevent(kq, &ch, 1, ev, 4, &(struct timespec){ 0, 0 }), 1);
	ck_assert_uint_eq(ev[0].ident, p[0]);
	ck_assert_int_eq(ev[0].filter, EVFILT_READ);
	ck_assert_uint_eq(ev[0].flags, EV_FREEWATCH | EV_DELETE);
	ck_assert_uint_eq(ev[0].fflags, NOTE_FREE_DELETE);
	ck_assert_int_eq(ev[0].data, 0);
	ck_assert_ptr_eq(ev[0].udata, obj(0));
	drop_returned(ev, 1);
	kev_expect_none(kq);
	ck_assert_errno(kev_change(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL), ENOENT);
	assert_all_freed(0, 1);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(delete_notice_queued_without_room)
{
	int kq = xkqueue();

	fw_add_ok(kq, 7, EVFILT_USER, 0, 0, 0, obj(0));
	kev_ok(kq, 7, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	expect_notice(kq, 7, EVFILT_USER, NOTE_FREE_DELETE, obj(0));
	kev_expect_none(kq);
	assert_all_freed(0, 1);
	close(kq);
}
END_TEST

START_TEST(delete_notice_keeps_original_udata)
{
	/* EV_DELETE's own udata is ignored: the notice hands back the stored
	 * pointer, which the binding may not otherwise know. */
	int kq = xkqueue();

	fw_add_ok(kq, 3, EVFILT_USER, 0, 0, 0, obj(0));
	kev_ok(kq, 3, EVFILT_USER, EV_DELETE, 0, 0, obj(1));
	expect_notice(kq, 3, EVFILT_USER, NOTE_FREE_DELETE, obj(0));
	assert_all_freed(0, 1);
	close(kq);
}
END_TEST

START_TEST(no_freewatch_never_notifies)
{
	int kq = xkqueue(), p[2];
	struct kevent ev[4];

	xpipe2(p, O_NONBLOCK);
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD, 0, 0, obj(0));
	kev_ok(kq, 5, EVFILT_USER, EV_ADD | EV_ONESHOT, 0, 0, obj(1));
	kev_ok(kq, 6, EVFILT_USER, EV_ADD, 0, 0, obj(2));
	kev_ok(kq, 1, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 1, obj(3));
	kev_ok(kq, 6, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	kev_ok(kq, 5, EVFILT_USER, EV_KEEPUDATA, NOTE_TRIGGER, 0, NULL);
	int n = kev_wait(kq, ev, 4, 2000);
	if (n == 1)	/* the timer may still be running */
		n += kev_wait(kq, ev + 1, 3, 2000);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < n; i++) {
		if (ev[i].filter == EVFILT_USER) {
			ck_assert_uint_eq(ev[i].ident, 5);
			ck_assert_uint_eq(ev[i].flags, EV_ONESHOT);
			ck_assert_ptr_eq(ev[i].udata, obj(1));
		} else {
			ck_assert_int_eq(ev[i].filter, EVFILT_TIMER);
			ck_assert_uint_eq(ev[i].flags, EV_ONESHOT | EV_CLEAR);
			ck_assert_ptr_eq(ev[i].udata, obj(3));
		}
	}
	close(p[0]);
	kev_expect_none(kq);
	ck_assert_int_eq(kqfree_release(kq), 0);
	kev_expect_none(kq);
	close(p[1]);
	close(kq);
}
END_TEST

/* --------------------------------------------------- firing and dying */

START_TEST(oneshot_fire_carries_freewatch)
{
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	ck_assert_int_eq(write(p[1], "abc", 3), 3);
	fw_add_ok(kq, p[0], EVFILT_READ, EV_ONESHOT, 0, 0, obj(0));
	kev_expect(kq, 2000, p[0], EVFILT_READ, EV_ONESHOT | EV_FREEWATCH, 0, 3, obj(0));
	obj_unref(obj(0));
	kev_expect_none(kq);
	ck_assert_errno(kev_change(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL), ENOENT);
	close(p[0]);
	kev_expect_none(kq);
	assert_all_freed(0, 1);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(oneshot_user_fire_carries_freewatch)
{
	int kq = xkqueue();

	fw_add_ok(kq, 9, EVFILT_USER, EV_ONESHOT, 0, 0, obj(0));
	kev_ok(kq, 9, EVFILT_USER, EV_KEEPUDATA, NOTE_TRIGGER, 0, NULL);
	kev_expect(kq, 2000, 9, EVFILT_USER, EV_ONESHOT | EV_FREEWATCH, 0, 0, obj(0));
	obj_unref(obj(0));
	kev_expect_none(kq);
	assert_all_freed(0, 1);
	close(kq);
}
END_TEST

START_TEST(oneshot_timer_fire_carries_freewatch)
{
	int kq = xkqueue();

	fw_add_ok(kq, 1, EVFILT_TIMER, EV_ONESHOT, 0, 5, obj(0));
	kev_expect(kq, 2000, 1, EVFILT_TIMER, EV_ONESHOT | EV_CLEAR | EV_FREEWATCH, 0, 1, obj(0));
	obj_unref(obj(0));
	kev_expect_none(kq);
	assert_all_freed(0, 1);
	close(kq);
}
END_TEST

START_TEST(forceoneshot_fire_carries_freewatch)
{
	/* EV_FORCEONESHOT on an existing FREEWATCH knote: it fires once and
	 * dies, and that event returns the reference. */
	int kq = xkqueue();

	fw_add_ok(kq, 4, EVFILT_USER, 0, 0, 0, obj(0));
	kev_ok(kq, 4, EVFILT_USER, EV_FORCEONESHOT | EV_KEEPUDATA, 0, 0, NULL);
	kev_expect(kq, 2000, 4, EVFILT_USER, EV_ONESHOT | EV_FREEWATCH, 0, 0, obj(0));
	obj_unref(obj(0));
	kev_expect_none(kq);
	assert_all_freed(0, 1);
	close(kq);
}
END_TEST

/* EVFILT_PROC needs pidfd_open(2); valgrind 3.19 does not know it (ENOSYS).
 * That is test_proc's business: here it only means "cannot test". */
static bool
proc_unavailable(int kq, pid_t pid, int go[2])
{
	int r = kev_change(kq, pid, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, NULL);
	if (r == -1 && errno == ENOSYS) {
		fprintf(stderr, "EVFILT_PROC unavailable (ENOSYS): skipped\n");
		close(go[1]);
		waitpid(pid, NULL, 0);
		return true;
	}
	ck_assert_int_eq(r, 0);
	kev_ok(kq, pid, EVFILT_PROC, EV_DELETE, 0, 0, NULL);
	return false;
}

/* Child blocks until the parent writes to go[1], then exits with code. */
static pid_t
spawn_child(int go[2], int code)
{
	ck_assert_int_eq(pipe(go), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char c;
		close(go[1]);
		while (read(go[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(code);
	}
	close(go[0]);
	return pid;
}

START_TEST(proc_exit_event_carries_freewatch)
{
	int kq = xkqueue(), go[2], st;
	pid_t pid = spawn_child(go, 7);

	if (proc_unavailable(kq, pid, go))
		return;
	fw_add_ok(kq, pid, EVFILT_PROC, 0, NOTE_EXIT, 0, obj(0));
	close(go[1]);
	/* EV_CLEAR: FreeBSD's proc filter sets it on every PROC knote. */
	kev_expect(kq, 5000, pid, EVFILT_PROC,
	    EV_EOF | EV_ONESHOT | EV_CLEAR | EV_FREEWATCH, NOTE_EXIT, 7 << 8, obj(0));
	obj_unref(obj(0));
	kev_expect_none(kq);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	assert_all_freed(0, 1);
	close(kq);
}
END_TEST

START_TEST(proc_exit_not_asked_for_drops_with_notice)
{
	/* FreeBSD drops (EV_DROP) a PROC knote whose process exits when no
	 * requested event happened; the reference comes back as a notice. */
	int kq = xkqueue(), go[2], st;
	pid_t pid = spawn_child(go, 0);

	if (proc_unavailable(kq, pid, go))
		return;
	fw_add_ok(kq, pid, EVFILT_PROC, 0, 0, 0, obj(0));	/* nothing asked for */
	close(go[1]);
	expect_notice(kq, pid, EVFILT_PROC, NOTE_FREE_DROP, obj(0));
	kev_expect_none(kq);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	assert_all_freed(0, 1);
	close(kq);
}
END_TEST

/* ------------------------------------------------------------ close paths */

START_TEST(close_returns_notice)
{
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	fw_add_ok(kq, p[0], EVFILT_READ, 0, 0, 0, obj(0));
	fw_add_ok(kq, p[1], EVFILT_WRITE, EV_DISABLE, 0, 0, obj(1));
	close(p[0]);
	expect_notice(kq, p[0], EVFILT_READ, NOTE_FREE_CLOSE, obj(0));
	kev_expect_none(kq);
	close(p[1]);
	expect_notice(kq, p[1], EVFILT_WRITE, NOTE_FREE_CLOSE, obj(1));
	kev_expect_none(kq);
	assert_all_freed(0, 2);
	close(kq);
}
END_TEST

START_TEST(close_returns_one_notice_per_knote)
{
	/* Two knotes on one fd: two references, two notices. */
	int kq = xkqueue(), p[2];
	struct kevent ev[4];

	xpipe2(p, O_NONBLOCK);
	fw_add_ok(kq, p[0], EVFILT_READ, 0, 0, 0, obj(0));
	fw_add_ok(kq, p[0], EVFILT_WRITE, 0, 0, 0, obj(1));
	close(p[0]);
	int n = kev_wait(kq, ev, 4, 2000);
	if (n == 1)	/* the second may lag behind only by a scan */
		n += kev_wait(kq, ev + 1, 3, 2000);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < 2; i++) {
		ck_assert_uint_eq(ev[i].ident, p[0]);
		ck_assert_uint_eq(ev[i].flags, EV_FREEWATCH | EV_DELETE);
		ck_assert_uint_eq(ev[i].fflags, NOTE_FREE_CLOSE);
		ck_assert_int_eq(ev[i].data, 0);
		ck_assert_ptr_eq(ev[i].udata,
		    ev[i].filter == EVFILT_READ ? obj(0) : obj(1));
	}
	ck_assert_int_ne(ev[0].filter, ev[1].filter);
	drop_returned(ev, n);
	kev_expect_none(kq);
	assert_all_freed(0, 2);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(dup2_onto_watched_fd_returns_notice)
{
	int kq = xkqueue(), p[2], q[2];

	xpipe2(p, O_NONBLOCK);
	xpipe2(q, O_NONBLOCK);
	fw_add_ok(kq, p[0], EVFILT_READ, 0, 0, 0, obj(0));
	ck_assert_int_eq(dup2(q[0], p[0]), p[0]);
	expect_notice(kq, p[0], EVFILT_READ, NOTE_FREE_CLOSE, obj(0));
	kev_expect_none(kq);
	/* The number now names q's read end: a new watch works on it. */
	fw_add_ok(kq, p[0], EVFILT_READ, 0, 0, 0, obj(1));
	ck_assert_int_eq(write(q[1], "x", 1), 1);
	kev_expect(kq, 2000, p[0], EVFILT_READ, 0, 0, 1, obj(1));
	kev_ok(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	expect_notice(kq, p[0], EVFILT_READ, NOTE_FREE_DELETE, obj(1));
	assert_all_freed(0, 2);
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	close(kq);
}
END_TEST

START_TEST(dup3_onto_watched_fd_returns_notice)
{
	int kq = xkqueue(), p[2], q[2];

	xpipe2(p, O_NONBLOCK);
	xpipe2(q, O_NONBLOCK);
	fw_add_ok(kq, p[0], EVFILT_READ, 0, 0, 0, obj(0));
	ck_assert_int_eq(dup3(q[0], p[0], O_CLOEXEC), p[0]);
	expect_notice(kq, p[0], EVFILT_READ, NOTE_FREE_CLOSE, obj(0));
	kev_expect_none(kq);
	assert_all_freed(0, 1);
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	close(kq);
}
END_TEST

START_TEST(close_range_returns_notices)
{
	int kq = xkqueue(), p[3][2];

	for (int i = 0; i < 3; i++)
		xpipe2(p[i], O_NONBLOCK);
	int lo = p[0][0], hi = p[0][0];
	for (int i = 0; i < 3; i++) {
		fw_add_ok(kq, p[i][0], EVFILT_READ, 0, 0, 0, obj(i));
		lo = p[i][0] < lo ? p[i][0] : lo;
		hi = p[i][0] > hi ? p[i][0] : hi;
	}
	/* Keep the write ends out of the range by moving them up. */
	for (int i = 0; i < 3; i++) {
		int w = fcntl(p[i][1], F_DUPFD_CLOEXEC, hi + 100);
		ck_assert_int_gt(w, hi);
		close(p[i][1]);
		p[i][1] = w;
	}
	ck_assert_int_eq(close_range(lo, hi, 0), 0);
	struct kevent ev[8];
	int n = 0;
	for (int tries = 0; n < 3 && tries < 10; tries++)
		n += kev_wait(kq, ev + n, 8 - n, 500);
	ck_assert_int_eq(n, 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(ev[i].flags, EV_FREEWATCH | EV_DELETE);
		ck_assert_uint_eq(ev[i].fflags, NOTE_FREE_CLOSE);
		ck_assert_int_eq(ev[i].filter, EVFILT_READ);
		struct obj *o = ev[i].udata;
		ck_assert_uint_eq(ev[i].ident, p[o - objs][0]);
	}
	drop_returned(ev, n);
	kev_expect_none(kq);
	assert_all_freed(0, 3);
	for (int i = 0; i < 3; i++)
		close(p[i][1]);
	close(kq);
}
END_TEST

START_TEST(close_range_cloexec_keeps_knotes)
{
	/* CLOSE_RANGE_CLOEXEC closes nothing: the knote must survive. */
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	fw_add_ok(kq, p[0], EVFILT_READ, 0, 0, 0, obj(0));
	ck_assert_int_eq(close_range(p[0], p[0], CLOSE_RANGE_CLOEXEC), 0);
	kev_expect_none(kq);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	kev_expect(kq, 2000, p[0], EVFILT_READ, 0, 0, 1, obj(0));
	kev_ok(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	expect_notice(kq, p[0], EVFILT_READ, NOTE_FREE_DELETE, obj(0));
	assert_all_freed(0, 1);
	close(p[0]);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(fclose_returns_notice)
{
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	FILE *f = fdopen(p[0], "r");
	ck_assert_ptr_nonnull(f);
	fw_add_ok(kq, fileno(f), EVFILT_READ, 0, 0, 0, obj(0));
	ck_assert_int_eq(fclose(f), 0);
	expect_notice(kq, p[0], EVFILT_READ, NOTE_FREE_CLOSE, obj(0));
	kev_expect_none(kq);
	assert_all_freed(0, 1);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(closedir_returns_notice)
{
	int kq = xkqueue();
	DIR *d = opendir("/");
	ck_assert_ptr_nonnull(d);
	int fd = dirfd(d);

	fw_add_ok(kq, fd, EVFILT_VNODE, EV_CLEAR, NOTE_WRITE, 0, obj(0));
	ck_assert_int_eq(closedir(d), 0);
	expect_notice(kq, fd, EVFILT_VNODE, NOTE_FREE_CLOSE, obj(0));
	kev_expect_none(kq);
	assert_all_freed(0, 1);
	close(kq);
}
END_TEST

START_TEST(close_of_unwatched_number_is_silent)
{
	/* Closing a different fd, or an fd watched by a knote without
	 * FREEWATCH, returns nothing and keeps the FREEWATCH knote. */
	int kq = xkqueue(), p[2], q[2];

	xpipe2(p, O_NONBLOCK);
	xpipe2(q, O_NONBLOCK);
	fw_add_ok(kq, p[0], EVFILT_READ, 0, 0, 0, obj(0));
	kev_ok(kq, q[0], EVFILT_READ, EV_ADD, 0, 0, obj(1));
	close(q[0]);
	close(q[1]);
	kev_expect_none(kq);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	kev_expect(kq, 2000, p[0], EVFILT_READ, 0, 0, 1, obj(0));
	close(p[0]);
	expect_notice(kq, p[0], EVFILT_READ, NOTE_FREE_CLOSE, obj(0));
	assert_all_freed(0, 1);
	close(p[1]);
	close(kq);
}
END_TEST

/* --------------------------------------------------------- udata changes */

START_TEST(udata_replaced_returns_old_pointer)
{
	int kq = xkqueue();

	fw_add_ok(kq, 2, EVFILT_USER, 0, 0, 0, obj(0));
	fw_add_ok(kq, 2, EVFILT_USER, 0, 0, 0, obj(1));
	expect_notice(kq, 2, EVFILT_USER, NOTE_FREE_UDATA, obj(0));
	kev_expect_none(kq);
	kev_ok(kq, 2, EVFILT_USER, EV_KEEPUDATA, NOTE_TRIGGER, 0, NULL);
	kev_expect(kq, 2000, 2, EVFILT_USER, 0, 0, 0, obj(1));
	kev_ok(kq, 2, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	expect_notice(kq, 2, EVFILT_USER, NOTE_FREE_DELETE, obj(1));
	assert_all_freed(0, 2);
	close(kq);
}
END_TEST

START_TEST(udata_replaced_by_same_pointer_returns_it)
{
	/* Notices always equal references taken, even for an equal pointer. */
	int kq = xkqueue();

	fw_add_ok(kq, 2, EVFILT_USER, 0, 0, 0, obj(0));
	fw_add_ok(kq, 2, EVFILT_USER, 0, 0, 0, obj(0));
	ck_assert_int_eq(obj(0)->refs, 2);
	expect_notice(kq, 2, EVFILT_USER, NOTE_FREE_UDATA, obj(0));
	kev_expect_none(kq);
	ck_assert_int_eq(obj(0)->refs, 1);
	kev_ok(kq, 2, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	expect_notice(kq, 2, EVFILT_USER, NOTE_FREE_DELETE, obj(0));
	assert_all_freed(0, 1);
	close(kq);
}
END_TEST

START_TEST(udata_replaced_without_freewatch_returns_old)
{
	/* A plain EV_ADD that replaces the pointer of a FREEWATCH knote: the
	 * library drops its copy of the old pointer, so the reference comes
	 * back; the new pointer was not referenced, so nothing more comes. */
	int kq = xkqueue();

	fw_add_ok(kq, 2, EVFILT_USER, 0, 0, 0, obj(0));
	kev_ok(kq, 2, EVFILT_USER, EV_ADD, 0, 0, obj(1));
	expect_notice(kq, 2, EVFILT_USER, NOTE_FREE_UDATA, obj(0));
	kev_ok(kq, 2, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	kev_expect_none(kq);
	assert_all_freed(0, 1);
	ck_assert_int_eq(obj(1)->refs, 0);
	close(kq);
}
END_TEST

START_TEST(keepudata_takes_no_reference)
{
	int kq = xkqueue();

	fw_add_ok(kq, 2, EVFILT_USER, 0, 0, 0, obj(0));
	/* udata ignored, no new reference, the old one stays held */
	kev_ok(kq, 2, EVFILT_USER, EV_ADD | EV_FREEWATCH | EV_KEEPUDATA, 0, 0, obj(1));
	kev_ok(kq, 2, EVFILT_USER, EV_ADD | EV_KEEPUDATA, 0, 0, obj(1));
	kev_ok(kq, 2, EVFILT_USER, EV_ENABLE | EV_KEEPUDATA, 0, 0, obj(1));
	kev_expect_none(kq);
	kev_ok(kq, 2, EVFILT_USER, EV_KEEPUDATA, NOTE_TRIGGER, 0, obj(1));
	kev_expect(kq, 2000, 2, EVFILT_USER, 0, 0, 0, obj(0));
	kev_ok(kq, 2, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	expect_notice(kq, 2, EVFILT_USER, NOTE_FREE_DELETE, obj(0));
	kev_expect_none(kq);
	assert_all_freed(0, 1);
	ck_assert_int_eq(obj(1)->refs, 0);
	close(kq);
}
END_TEST

START_TEST(failed_add_takes_no_reference)
{
	int kq = xkqueue(), p[2];
	struct kevent ch[2], ev[4];

	xpipe2(p, O_NONBLOCK);
	int bad = dup(p[1]);
	ck_assert_int_ge(bad, 0);
	close(bad);		/* a closed number: EBADF */
	EV_SET(&ch[0], bad, EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, obj(0));
	EV_SET(&ch[1], p[0], EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, obj(1));
	memset(ev, 0xa5, sizeof(ev));
	int n = kevent(kq, ch, 2, ev, 4, &(struct timespec){ 0, 0 });
	ck_assert_int_eq(n, 1);
	obj_ref(obj(1));	/* the second change succeeded */
	ck_assert_uint_eq(ev[0].ident, bad);
	ck_assert_int_eq(ev[0].filter, EVFILT_READ);
	ck_assert_uint_eq(ev[0].flags, EV_ERROR);
	ck_assert_int_eq(ev[0].data, EBADF);
	ck_assert_ptr_eq(ev[0].udata, obj(0));
	/* No room for the error: kevent fails with the errno, no reference. */
	ck_assert_errno(kev_change(kq, bad, EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0,
	    obj(0)), EBADF);
	ck_assert_errno(kev_change(kq, 1, EVFILT_TIMER, EV_ADD | EV_FREEWATCH, 0, -1,
	    obj(0)), EINVAL);
	ck_assert_int_eq(obj(0)->refs, 0);
	kev_expect_none(kq);
	close(p[0]);
	expect_notice(kq, p[0], EVFILT_READ, NOTE_FREE_CLOSE, obj(1));
	kev_expect_none(kq);
	assert_all_freed(1, 1);
	close(p[1]);
	close(kq);
}
END_TEST

/*
 * A change that fails leaves the knote exactly as it was: an EV_ADD whose
 * touch fails (an invalid timer re-add) must not store its udata, take its
 * reference, return the old one, or apply its EV_DISABLE / EV_FORCEONESHOT.
 */
START_TEST(failed_modify_keeps_udata_and_reference)
{
	int kq = xkqueue();
	struct kevent ch, ev[4];

	fw_add_ok(kq, 1, EVFILT_TIMER, 0, 0, 30, obj(0));
	obj_ref(obj(1));
	EV_SET(&ch, 1, EVFILT_TIMER,
	    EV_ADD | EV_FREEWATCH | EV_DISABLE | EV_FORCEONESHOT, 0, -1, obj(1));
	memset(ev, 0xa5, sizeof(ev));
	ck_assert_int_eq(kevent(kq, &ch, 1, ev, 4, &(struct timespec){ 0, 0 }), 1);
	ck_assert_uint_eq(ev[0].ident, 1);
	ck_assert_int_eq(ev[0].filter, EVFILT_TIMER);
	ck_assert_uint_eq(ev[0].flags, EV_ERROR);
	ck_assert_int_eq(ev[0].data, EINVAL);
	ck_assert_ptr_eq(ev[0].udata, obj(1));
	obj_unref(obj(1));	/* the failed change took no reference */
	/* without room for the entry: -1/EINVAL, no reference either */
	ck_assert_errno(fw_add(kq, 1, EVFILT_TIMER, EV_DISABLE,
	    NOTE_SECONDS | NOTE_NSECONDS, 5, obj(1)), EINVAL);
	/* Still the old pointer, still enabled, still periodic (no notice
	 * for obj 0, no forced oneshot report). */
	for (int i = 0; i < 2; i++) {
		memset(ev, 0xa5, sizeof(ev));
		ck_assert_int_eq(kev_wait(kq, ev, 1, 2000), 1);
		ck_assert_uint_eq(ev[0].ident, 1);
		ck_assert_int_eq(ev[0].filter, EVFILT_TIMER);
		ck_assert_uint_eq(ev[0].flags, EV_CLEAR);
		ck_assert_uint_eq(ev[0].fflags, 0);
		ck_assert_int_ge(ev[0].data, 1);
		ck_assert_ptr_eq(ev[0].udata, obj(0));
	}
	kev_ok(kq, 1, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	expect_notice(kq, 1, EVFILT_TIMER, NOTE_FREE_DELETE, obj(0));
	kev_expect_none(kq);
	assert_all_freed(0, 1);
	ck_assert_int_eq(obj(1)->refs, 0);
	ck_assert_int_eq(obj(1)->underflows, 0);
	close(kq);
}
END_TEST

/*
 * EV_ADD|EV_DELETE: the delete wins (FreeBSD's kqueue_register looks at
 * EV_DELETE before EV_ADD for an existing knote), and a change with
 * EV_DELETE takes no reference: the old one comes back, once.
 */
START_TEST(add_delete_freewatch_on_existing_knote_is_a_delete)
{
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	fw_add_ok(kq, 3, EVFILT_USER, 0, 0, 0, obj(0));
	fw_add_ok(kq, p[0], EVFILT_READ, 0, 0, 0, obj(1));
	kev_ok(kq, 3, EVFILT_USER, EV_ADD | EV_DELETE | EV_FREEWATCH, 0, 0, obj(2));
	kev_ok(kq, p[0], EVFILT_READ, EV_ADD | EV_DELETE | EV_FREEWATCH, 0, 0,
	    obj(3));
	expect_notice(kq, 3, EVFILT_USER, NOTE_FREE_DELETE, obj(0));
	expect_notice(kq, p[0], EVFILT_READ, NOTE_FREE_DELETE, obj(1));
	kev_expect_none(kq);
	ck_assert_errno(kev_change(kq, 3, EVFILT_USER, EV_DELETE, 0, 0, NULL), ENOENT);
	ck_assert_errno(kev_change(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	close(p[0]);
	kev_expect_none(kq);
	assert_all_freed(0, 2);
	for (int i = 2; i < 4; i++) {
		ck_assert_int_eq(objs[i].refs, 0);
		ck_assert_int_eq(objs[i].underflows, 0);
	}
	close(p[1]);
	close(kq);
}
END_TEST

/* Nothing to delete: ENOENT (EBADF for a closed fd, looked up first, as
 * FreeBSD does), the EV_ERROR entry hands udata back, nothing is kept. */
START_TEST(add_delete_freewatch_on_missing_knote_is_enoent)
{
	int kq = xkqueue(), p[2];
	struct kevent ch[3], ev[4];

	xpipe2(p, O_NONBLOCK);
	int bad = dup(p[1]);
	ck_assert_int_ge(bad, 0);
	close(bad);
	EV_SET(&ch[0], 5, EVFILT_USER, EV_ADD | EV_DELETE | EV_FREEWATCH, 0, 0, obj(0));
	EV_SET(&ch[1], p[0], EVFILT_READ, EV_ADD | EV_DELETE | EV_FREEWATCH, 0, 0,
	    obj(1));
	EV_SET(&ch[2], bad, EVFILT_READ, EV_ADD | EV_DELETE | EV_FREEWATCH, 0, 0,
	    obj(2));
	memset(ev, 0xa5, sizeof(ev));
	ck_assert_int_eq(kevent(kq, ch, 3, ev, 4, &(struct timespec){ 0, 0 }), 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(ev[i].ident, ch[i].ident);
		ck_assert_int_eq(ev[i].filter, ch[i].filter);
		ck_assert_uint_eq(ev[i].flags, EV_ERROR);
		ck_assert_int_eq(ev[i].data, i == 2 ? EBADF : ENOENT);
		ck_assert_ptr_eq(ev[i].udata, obj(i));
	}
	ck_assert_errno(kev_change(kq, 5, EVFILT_USER,
	    EV_ADD | EV_DELETE | EV_FREEWATCH, 0, 0, obj(0)), ENOENT);
	/* no knote was made */
	ck_assert_errno(kev_change(kq, 5, EVFILT_USER, EV_DELETE, 0, 0, NULL), ENOENT);
	ck_assert_errno(kev_change(kq, p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	kev_expect_none(kq);
	close(p[0]);
	kev_expect_none(kq);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(objs[i].refs, 0);
		ck_assert_int_eq(objs[i].underflows, 0);
	}
	close(p[1]);
	close(kq);
}
END_TEST

/* A new knote has no old udata to keep: EV_KEEPUDATA changes nothing, the
 * add takes its reference and it comes back. */
START_TEST(keepudata_on_new_knote_takes_reference)
{
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	fw_add_ok(kq, 2, EVFILT_USER, EV_KEEPUDATA, 0, 0, obj(0));
	fw_add_ok(kq, p[0], EVFILT_READ, EV_KEEPUDATA, 0, 0, obj(1));
	kev_ok(kq, 2, EVFILT_USER, EV_KEEPUDATA, NOTE_TRIGGER, 0, NULL);
	/* stored like any flag, as FreeBSD does */
	kev_expect(kq, 2000, 2, EVFILT_USER, EV_KEEPUDATA, 0, 0, obj(0));
	kev_ok(kq, 2, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	expect_notice(kq, 2, EVFILT_USER, NOTE_FREE_DELETE, obj(0));
	close(p[0]);
	expect_notice(kq, p[0], EVFILT_READ, NOTE_FREE_CLOSE, obj(1));
	kev_expect_none(kq);
	assert_all_freed(0, 2);
	close(p[1]);
	close(kq);
}
END_TEST

/* ------------------------------------------------------------ release */

START_TEST(release_returns_every_reference)
{
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	fw_add_ok(kq, p[0], EVFILT_READ, 0, 0, 0, obj(0));
	fw_add_ok(kq, p[1], EVFILT_WRITE, 0, 0, 0, obj(1));
	fw_add_ok(kq, 10, EVFILT_USER, 0, 0, 0, obj(2));
	fw_add_ok(kq, 11, EVFILT_TIMER, 0, 0, 60000, obj(3));
	fw_add_ok(kq, SIGUSR2, EVFILT_SIGNAL, 0, 0, 0, obj(4));
	kev_ok(kq, 12, EVFILT_USER, EV_ADD, 0, 0, obj(5));	/* no reference */
	/* A pending readiness event is discarded by the release too. */
	kev_ok(kq, 10, EVFILT_USER, EV_KEEPUDATA, NOTE_TRIGGER, 0, NULL);
	ck_assert_int_eq(kqfree_release(kq), 0);

	struct kevent ev[16];
	int n = kev_wait(kq, ev, 16, 2000);
	ck_assert_int_eq(n, 5);
	bool seen[5] = { false };
	for (int i = 0; i < n; i++) {
		ck_assert_uint_eq(ev[i].flags, EV_FREEWATCH | EV_DELETE);
		ck_assert_uint_eq(ev[i].fflags, NOTE_FREE_RELEASE);
		ck_assert_int_eq(ev[i].data, 0);
		struct obj *o = ev[i].udata;
		ck_assert(o >= objs && o < objs + 5);
		ck_assert(!seen[o->id]);
		seen[o->id] = true;
		static const short filt[5] = { EVFILT_READ, EVFILT_WRITE,
		    EVFILT_USER, EVFILT_TIMER, EVFILT_SIGNAL };
		static const uintptr_t ident[5] = { 0, 0, 10, 11, SIGUSR2 };
		ck_assert_int_eq(ev[i].filter, filt[o->id]);
		ck_assert_uint_eq(ev[i].ident, o->id == 0 ? (uintptr_t)p[0] :
		    o->id == 1 ? (uintptr_t)p[1] : ident[o->id]);
	}
	drop_returned(ev, n);
	kev_expect_none(kq);
	assert_all_freed(0, 5);
	/* The knotes are gone; the kqueue still works. */
	ck_assert_errno(kev_change(kq, 12, EVFILT_USER, EV_DELETE, 0, 0, NULL), ENOENT);
	close(p[0]);
	close(p[1]);
	kev_expect_none(kq);
	fw_add_ok(kq, 10, EVFILT_USER, 0, 0, 0, obj(6));
	kev_ok(kq, 10, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	expect_notice(kq, 10, EVFILT_USER, NOTE_FREE_DELETE, obj(6));
	assert_all_freed(6, 1);
	close(kq);
}
END_TEST

START_TEST(release_of_bad_fd_fails)
{
	int p[2];

	xpipe2(p, O_NONBLOCK);
	ck_assert_errno(kqfree_release(p[0]), EBADF);	/* not a kqueue */
	close(p[0]);
	close(p[1]);
	ck_assert_errno(kqfree_release(p[0]), EBADF);
	ck_assert_errno(kqfree_release(-1), EBADF);
}
END_TEST

/* --------------------------------------------------------- queueing */

START_TEST(notices_drain_in_order_without_loss)
{
	enum { N = 2000 };
	int kq = xkqueue();
	static struct kevent ch[N];

	for (int i = 0; i < N; i++)
		EV_SET(&ch[i], i, EVFILT_USER, EV_ADD | EV_FREEWATCH, 0, 0, obj(i));
	ck_assert_int_eq(kevent(kq, ch, N, NULL, 0, NULL), 0);
	for (int i = 0; i < N; i++)
		obj_ref(obj(i));
	/* Delete in a scrambled but known order. */
	int order[N];
	for (int i = 0; i < N; i++)
		order[i] = (i * 7919) % N;
	for (int i = 0; i < N; i++)
		EV_SET(&ch[i], order[i], EVFILT_USER, EV_DELETE, 0, 0, NULL);
	ck_assert_int_eq(kevent(kq, ch, N, NULL, 0, NULL), 0);

	struct kevent ev[64];
	int got = 0, n;
	while (got < N && (n = kev_wait(kq, ev, 64, 2000)) > 0) {
		for (int i = 0; i < n; i++) {
			ck_assert_int_lt(got + i, N);
			ck_assert_uint_eq(ev[i].ident, order[got + i]);
			ck_assert_int_eq(ev[i].filter, EVFILT_USER);
			ck_assert_uint_eq(ev[i].flags, EV_FREEWATCH | EV_DELETE);
			ck_assert_uint_eq(ev[i].fflags, NOTE_FREE_DELETE);
			ck_assert_ptr_eq(ev[i].udata, obj(order[got + i]));
		}
		drop_returned(ev, n);
		got += n;
	}
	ck_assert_int_eq(got, N);
	kev_expect_none(kq);
	assert_all_freed(0, N);
	close(kq);
}
END_TEST

static bool
kq_readable(int kq, int ms)
{
	struct pollfd pfd = { .fd = kq, .events = POLLIN };
	int r = poll(&pfd, 1, ms);
	ck_assert_int_ge(r, 0);
	return r == 1 && (pfd.revents & POLLIN);
}

START_TEST(pending_notice_makes_kqueue_readable)
{
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	fw_add_ok(kq, 1, EVFILT_USER, 0, 0, 0, obj(0));
	fw_add_ok(kq, p[0], EVFILT_READ, 0, 0, 0, obj(1));
	ck_assert(!kq_readable(kq, 0));
	kev_ok(kq, 1, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	ck_assert(kq_readable(kq, 2000));
	expect_notice(kq, 1, EVFILT_USER, NOTE_FREE_DELETE, obj(0));
	ck_assert(!kq_readable(kq, 0));
	/* Same for the close path, which never takes the kqueue's lock. */
	close(p[0]);
	ck_assert(kq_readable(kq, 2000));
	expect_notice(kq, p[0], EVFILT_READ, NOTE_FREE_CLOSE, obj(1));
	ck_assert(!kq_readable(kq, 0));
	assert_all_freed(0, 2);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(notice_returned_to_other_thread)
{
	int kq = xkqueue();
	struct kev_waiter w = { .kq = kq, .n = -2 };
	pthread_t t;

	fw_add_ok(kq, 1, EVFILT_USER, 0, 0, 0, obj(0));
	ck_assert_int_eq(pthread_create(&t, NULL, kev_waiter_main, &w), 0);
	usleep(20000);		/* usually already blocked; either way works */
	kev_ok(kq, 1, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	join_bounded(t, 4000);
	ck_assert_int_eq(w.n, 1);
	ck_assert_uint_eq(w.ev.ident, 1);
	ck_assert_uint_eq(w.ev.flags, EV_FREEWATCH | EV_DELETE);
	ck_assert_uint_eq(w.ev.fflags, NOTE_FREE_DELETE);
	ck_assert_ptr_eq(w.ev.udata, obj(0));
	drop_returned(&w.ev, 1);
	kev_expect_none(kq);
	assert_all_freed(0, 1);
	close(kq);
}
END_TEST

START_TEST(fork_child_gets_no_notices)
{
	int kq = xkqueue(), p[2], st;

	xpipe2(p, O_NONBLOCK);
	fw_add_ok(kq, 1, EVFILT_USER, 0, 0, 0, obj(0));
	fw_add_ok(kq, p[0], EVFILT_READ, 0, 0, 0, obj(1));
	kev_ok(kq, 1, EVFILT_USER, EV_DELETE, 0, 0, NULL);	/* one queued */
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct kevent ev;
		int code = 0;
		/* The kqueue is not inherited; closing the watched fd here
		 * must not touch the parent's knote either. */
		close(p[0]);
		errno = 0;
		if (kevent(kq, NULL, 0, &ev, 1, &(struct timespec){ 0, 0 }) != -1 ||
		    errno != EBADF)
			code = 1;
		if (kqfree_release(kq) != -1 || errno != EBADF)
			code |= 2;
		_exit(code);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	/* The parent still has both: the queued notice and the live knote. */
	expect_notice(kq, 1, EVFILT_USER, NOTE_FREE_DELETE, obj(0));
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	kev_expect(kq, 2000, p[0], EVFILT_READ, 0, 0, 1, obj(1));
	close(p[0]);
	expect_notice(kq, p[0], EVFILT_READ, NOTE_FREE_CLOSE, obj(1));
	kev_expect_none(kq);
	assert_all_freed(0, 2);
	close(p[1]);
	close(kq);
}
END_TEST

START_TEST(close_kqueue_with_notices_pending_is_clean)
{
	/* Closing the kqueue itself drops its knotes and notices; nothing
	 * can be returned any more (documented: call kqfree_release first).
	 * The process must not crash or leak when it happens. */
	int kq = xkqueue(), p[2];

	xpipe2(p, O_NONBLOCK);
	fw_add_ok(kq, p[0], EVFILT_READ, 0, 0, 0, obj(0));
	fw_add_ok(kq, 1, EVFILT_USER, 0, 0, 0, obj(1));
	kev_ok(kq, 1, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	ck_assert_int_eq(close(kq), 0);
	close(p[0]);		/* the registry must not reach the dead kqueue */
	close(p[1]);
	int kq2 = xkqueue();	/* likely the same number */
	kev_expect_none(kq2);
	close(kq2);
}
END_TEST

static Suite *
freewatch_suite(void)
{
	Suite *s = suite_create("freewatch");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, reset_objs, NULL);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, delete_notice_in_same_call);
	tcase_add_test(tc, delete_notice_queued_without_room);
	tcase_add_test(tc, delete_notice_keeps_original_udata);
	tcase_add_test(tc, no_freewatch_never_notifies);
	tcase_add_test(tc, oneshot_fire_carries_freewatch);
	tcase_add_test(tc, oneshot_user_fire_carries_freewatch);
	tcase_add_test(tc, oneshot_timer_fire_carries_freewatch);
	tcase_add_test(tc, forceoneshot_fire_carries_freewatch);
	tcase_add_test(tc, proc_exit_event_carries_freewatch);
	tcase_add_test(tc, proc_exit_not_asked_for_drops_with_notice);
	tcase_add_test(tc, close_returns_notice);
	tcase_add_test(tc, close_returns_one_notice_per_knote);
	tcase_add_test(tc, dup2_onto_watched_fd_returns_notice);
	tcase_add_test(tc, dup3_onto_watched_fd_returns_notice);
	tcase_add_test(tc, close_range_returns_notices);
	tcase_add_test(tc, close_range_cloexec_keeps_knotes);
	tcase_add_test(tc, fclose_returns_notice);
	tcase_add_test(tc, closedir_returns_notice);
	tcase_add_test(tc, close_of_unwatched_number_is_silent);
	tcase_add_test(tc, udata_replaced_returns_old_pointer);
	tcase_add_test(tc, udata_replaced_by_same_pointer_returns_it);
	tcase_add_test(tc, udata_replaced_without_freewatch_returns_old);
	tcase_add_test(tc, keepudata_takes_no_reference);
	tcase_add_test(tc, failed_add_takes_no_reference);
	tcase_add_test(tc, failed_modify_keeps_udata_and_reference);
	tcase_add_test(tc, add_delete_freewatch_on_existing_knote_is_a_delete);
	tcase_add_test(tc, add_delete_freewatch_on_missing_knote_is_enoent);
	tcase_add_test(tc, keepudata_on_new_knote_takes_reference);
	tcase_add_test(tc, release_returns_every_reference);
	tcase_add_test(tc, release_of_bad_fd_fails);
	tcase_add_test(tc, notices_drain_in_order_without_loss);
	tcase_add_test(tc, pending_notice_makes_kqueue_readable);
	tcase_add_test(tc, notice_returned_to_other_thread);
	tcase_add_test(tc, fork_child_gets_no_notices);
	tcase_add_test(tc, close_kqueue_with_notices_pending_is_clean);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(freewatch_suite)
