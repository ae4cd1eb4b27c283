/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The process's descriptor numbers: who watches each one, which ones the
 * library owns, and the close interposition.
 *
 * For every fd number that something in the library cares about there is a
 * slot: a tiny spinlock, a chain of watchers (struct kq_fdwatch: a kqueue's
 * node for a watched fd, or a kqueue alias) and flags.  Every libc call that
 * closes or replaces an fd comes here first.  Under the slot's lock the
 * watchers are unlinked and told, through their own callback, that the
 * number is going away; the real close runs with the lock still held, so no
 * EV_ADD on another thread can register the dying file in between.  This
 * file knows nothing about kqueues: it only calls the watchers' callbacks,
 * which are async-signal-safe by contract (internal.h), and so is all of
 * this path - close() is safe in a signal handler and while kevent() runs on
 * another thread.
 *
 * A signal handler that closes a number whose slot its own thread holds (it
 * interrupted the library inside that slot's critical section) cannot touch
 * the chain: it marks the slot SLOT_PENDING and closes; the interrupted
 * section's unlock tells the watchers before anyone else can take the slot.
 *
 * The library's own descriptors (SLOT_OWNED: epoll sets, wake eventfds,
 * timerfds, pidfds...) are invisible to the application's close family:
 * close() answers EBADF as if the number were not open, close_range() and
 * closefrom() step around them, dup2()/dup3() onto one fail with EBUSY.
 *
 * Closing an unwatched fd costs one relaxed load on top of libc's close.
 *
 * What it cannot see: a raw syscall(SYS_close), a close done by io_uring, or
 * by code bound to libc in a way the GOT patch (gotpatch.c) misses.  Then the
 * knote stays until the kqueue is closed or released; epoll drops the
 * registration itself once the last reference to the file is gone.
 * KQFREE_CLOSE_TRACKING=0 in the environment turns all of this off.
 */
#include "internal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK	18	/* Linux 4.14 */
#endif

static void resolve_real(void);

#define CHUNK_BITS	10
#define CHUNK_SIZE	(1u << CHUNK_BITS)
#define TOP_SIZE	(1u << 16)	/* 64M fds */

#define SLOT_OWNED	0x1u	/* one of the library's own descriptors */
#define SLOT_PENDING	0x2u	/* closed by a signal handler while held */
#define SLOT_RANGE	0x4u	/* held by close_range() across the real call */

struct fdslot {
	_Atomic uintptr_t owner;		/* spinlock: thread_id() of holder */
	unsigned depth;				/* nested holds by the owner */
	_Atomic(struct kq_fdwatch *) head;	/* watchers (written under owner) */
	_Atomic unsigned flags;			/* SLOT_* */
	_Atomic int sockerr;			/* SO_ERROR we consumed, the app's */
};

static _Atomic(struct fdslot *) chunks[TOP_SIZE];
bool kq_close_tracking = true;	/* KQFREE_CLOSE_TRACKING != 0 */

/*
 * Whose descriptor table the registry describes.  A vfork() child, or a
 * clone(CLONE_VM) child with a table of its own, runs in our memory (the
 * registry, the kqueues) but its closes are not ours: they must neither
 * kill our knotes nor remove our epoll registrations.  Asking the kernel
 * (getpid) on every close of a watched number cost a syscall, about a
 * microsecond on a hypervisor that traps them, for a child that almost
 * never exists; so the process's own calls that make such a child say so
 * (vfork(), clone() below), and only then does the close path ask.
 *   vforking   this thread called vfork() (or clone(CLONE_VFORK) without a
 *              TLS of its own): its child runs on the thread's memory, this
 *              variable included, until it execs or exits, while the thread
 *              waits.  The first close that finds our own pid clears it.
 *   vm_shared  a child sharing our memory may live on beside us: ask on
 *              every close from now on.
 *   kq_fork_mark  a child with a copy of our memory whose table is its own
 *              holds our registry and kqueues too, and its epoll sets are
 *              ours (the same files): a close there that counted as ours
 *              would unregister the parent's watch.  fork() runs our atfork
 *              handler, which starts the child afresh, but _Fork(), clone()
 *              without CLONE_VM, a raw fork syscall and the atfork handlers
 *              that run before ours do not.  The kernel says it for all of
 *              them: the mark lives in a MADV_WIPEONFORK page, which every
 *              such child gets zeroed, so there the close path asks.  Where
 *              the kernel has no such page (before 4.14) it stays
 *              &kq_fork_mark_none (0): ask on every close, as before.
 * A raw syscall (SYS_vfork, SYS_clone3) or posix_spawn() (whose child calls
 * no interposed function) is not seen.  Architectures without the vfork()
 * stub ask on every close, as before.
 */
static pid_t owner_pid;
static _Thread_local bool vforking __attribute__((tls_model("initial-exec")));
static _Atomic bool vm_shared;
unsigned char kq_fork_mark_none;
unsigned char *kq_fork_mark = &kq_fork_mark_none;

static int (*real_close)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_close_range)(unsigned, unsigned, int);
static void (*real_closefrom)(int);
static int (*real_fclose)(FILE *);
static int (*real_closedir)(DIR *);
static int (*real_getsockopt)(int, int, int, void *, socklen_t *);
static pid_t (*real_vfork)(void);
static int (*real_clone)(int (*)(void *), void *, int, void *, ...);

static struct fdslot *
slot_peek(int fd)
{
	if (fd < 0 || (unsigned)fd >= CHUNK_SIZE * TOP_SIZE)
		return NULL;
	struct fdslot *c = atomic_load_explicit(&chunks[fd >> CHUNK_BITS],
	    memory_order_acquire);
	return c != NULL ? &c[fd & (CHUNK_SIZE - 1)] : NULL;
}

/* Anything here at all?  The close path's fast test: inline, every close
 * of a number with a slot asks it. */
static inline __attribute__((always_inline)) bool
slot_busy(struct fdslot *s)
{
	return atomic_load_explicit(&s->head, memory_order_relaxed) != NULL ||
	    atomic_load_explicit(&s->flags, memory_order_relaxed) != 0 ||
	    atomic_load_explicit(&s->sockerr, memory_order_relaxed) != 0;
}

int
kq_fdreg_reserve(int fd)
{
	if (fd < 0 || (unsigned)fd >= CHUNK_SIZE * TOP_SIZE)
		return EBADF;
	if (slot_peek(fd) != NULL)
		return 0;
	struct fdslot *c = calloc(CHUNK_SIZE, sizeof *c), *expect = NULL;
	if (c == NULL)
		return ENOMEM;
	if (!atomic_compare_exchange_strong(&chunks[fd >> CHUNK_BITS], &expect, c))
		free(c);
	return 0;
}

/*
 * The holder's identity: glibc's thread pointer is what pthread_self()
 * returns, read without a call into libc (the slot locks are taken several
 * times per event and per close).
 */
static inline uintptr_t
thread_id(void)
{
#if defined(__has_builtin)
#if __has_builtin(__builtin_thread_pointer) && (defined(__x86_64__) || defined(__aarch64__))
	return (uintptr_t)__builtin_thread_pointer();
#endif
#endif
	return (uintptr_t)pthread_self();
}

/*
 * The close path's lock: false when this thread already holds it (a signal
 * handler interrupted our own critical section), and the caller must then
 * not touch the chain.
 */
static bool
slot_trylock_closing(struct fdslot *s)
{
	uintptr_t self = thread_id(), expect;

	for (;;) {
		expect = 0;
		if (atomic_compare_exchange_weak_explicit(&s->owner, &expect,
		    self, memory_order_acquire, memory_order_relaxed))
			return true;
		if (expect == self)
			return false;
		sched_yield();
	}
}

/* The library's lock: nests (a handler that calls back into the library). */
static void
slot_lock(struct fdslot *s)
{
	if (atomic_load_explicit(&s->owner, memory_order_relaxed) ==
	    thread_id()) {
		s->depth++;
		return;
	}
	slot_trylock_closing(s);
}

static inline void tell_watchers(struct fdslot *s, int fd);

#ifdef KQ_STATS
/* Tests: called between the SLOT_PENDING check and the release. */
void (*kq_test_unlock_window)(int fd);
/* Tests: close() of a number whose slot it found empty, before the real
 * call. */
void (*kq_test_close_window)(int fd);
#endif

static void
slot_unlock(struct fdslot *s, int fd)
{
	if (s->depth > 0) {
		s->depth--;
		return;
	}
	for (;;) {
		/* a handler closed the number while we held it: tell its
		 * watchers before anyone else can see the slot */
		if (atomic_load_explicit(&s->flags, memory_order_relaxed) &
		    SLOT_PENDING) {
			atomic_fetch_and(&s->flags, ~SLOT_PENDING);
			tell_watchers(s, fd);
			atomic_store(&s->sockerr, 0);
		}
#ifdef KQ_STATS
		if (kq_test_unlock_window != NULL)
			kq_test_unlock_window(fd);
#endif
		atomic_store_explicit(&s->owner, 0, memory_order_release);
		/* A handler that ran here, after the check and before the
		 * release, found the slot still ours and left SLOT_PENDING:
		 * nobody else would ever tell the watchers.  Take the slot
		 * back (no handler of ours holds it now) and look again. */
		if (!(atomic_load_explicit(&s->flags, memory_order_acquire) &
		    SLOT_PENDING) || !slot_trylock_closing(s))
			return;
	}
}

void
kq_fdreg_lock(int fd)
{
	struct fdslot *s = slot_peek(fd);
	if (s != NULL)
		slot_lock(s);
}

void
kq_fdreg_unlock(int fd)
{
	struct fdslot *s = slot_peek(fd);
	if (s != NULL)
		slot_unlock(s, fd);
}

/*
 * A watcher told of a close is done with once its closer has let go of the
 * slot.  The closer unlinked and told it while holding the slot, and the
 * caller learnt of it through the closer's own stores (the kqueue's closed
 * stack): a free slot seen after that can only be the closer's release or
 * a later one.  So only a held slot costs the lock round trip.
 */
void
kq_fdreg_pass(int fd)
{
	struct fdslot *s = slot_peek(fd);

	if (s == NULL ||
	    atomic_load_explicit(&s->owner, memory_order_acquire) == 0)
		return;
	slot_lock(s);
	slot_unlock(s, fd);
}

int
kq_fdreg_watch(int fd, struct kq_fdwatch *w)
{
	struct fdslot *s = slot_peek(fd);
	if (s == NULL)
		return ENOMEM;
	w->next = atomic_load_explicit(&s->head, memory_order_relaxed);
	atomic_store_explicit(&s->head, w, memory_order_release);
	return 0;
}

void
kq_fdreg_unwatch(int fd, struct kq_fdwatch *w)
{
	struct fdslot *s = slot_peek(fd);
	struct kq_fdwatch *p, *prev = NULL;

	if (s == NULL)
		return;
	for (p = atomic_load_explicit(&s->head, memory_order_relaxed); p != NULL;
	    prev = p, p = p->next) {
		if (p != w)
			continue;
		if (prev == NULL)
			atomic_store_explicit(&s->head, p->next, memory_order_release);
		else
			prev->next = p->next;
		break;
	}
}

struct kq_fdwatch *
kq_fdreg_find(int fd, const struct kq_fdwatch_ops *ops,
    void (*hold)(struct kq_fdwatch *))
{
	struct fdslot *s = slot_peek(fd);
	struct kq_fdwatch *w;

	if (s == NULL || atomic_load_explicit(&s->head, memory_order_acquire) == NULL)
		return NULL;
	slot_lock(s);
	for (w = atomic_load_explicit(&s->head, memory_order_relaxed); w != NULL;
	    w = w->next)
		if (w->ops == ops)
			break;
	if (w != NULL && hold != NULL)
		hold(w);
	slot_unlock(s, fd);
	return w;
}

/* Under the slot's lock: unlink every watcher and tell it.  The chain is
 * written only by the slot's holder (a handler interrupting it leaves the
 * chain alone: SLOT_PENDING), so taking it needs no atomic exchange. */
static inline void
tell_watchers(struct fdslot *s, int fd)
{
	struct kq_fdwatch *w = atomic_load_explicit(&s->head,
	    memory_order_relaxed), *next;

	atomic_store_explicit(&s->head, NULL, memory_order_release);

	for (; w != NULL; w = next) {
		next = w->next;
		w->next = NULL;
		w->ops->closed(w, fd);
	}
}

void
kq_fdreg_forget(int fd)
{
	struct fdslot *s = slot_peek(fd);

	if (s == NULL || atomic_load(&s->head) == NULL)
		return;
	slot_lock(s);
	tell_watchers(s, fd);
	slot_unlock(s, fd);
}

/* -------------------------------------------------------- owned numbers */

bool
kq_fd_owned(int fd)
{
	struct fdslot *s = slot_peek(fd);
	return s != NULL && (atomic_load_explicit(&s->flags,
	    memory_order_relaxed) & SLOT_OWNED);
}

/*
 * Take fd (just made by the kernel, O_CLOEXEC) as the library's own.  Never
 * 0, 1 or 2: programs dup2() onto those numbers.  Whatever watched the number
 * before is stale (it was closed behind our back).  Returns the fd, or -1
 * with errno and fd closed.
 */
static int
adopt(int fd)
{
	int err;

	if (fd < 0)
		return -1;
	if (fd < 3) {
		int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		err = errno;
		kq_real_close(fd);
		if (moved < 0) {
			errno = err;
			return -1;
		}
		fd = moved;
	}
	if ((err = kq_fdreg_reserve(fd)) != 0) {
		kq_real_close(fd);
		errno = err;
		return -1;
	}
	kq_fdreg_forget(fd);
	atomic_fetch_or(&slot_peek(fd)->flags, SLOT_OWNED);
	return fd;
}

int
kq_fd_adopt(int fd)
{
	int err, r = adopt(fd);

	err = errno;
	kq_fd_made();
	errno = err;
	return r;
}

/*
 * Descriptors being made (internal.h, DESCRIPTORS).  A maker raises
 * `making' before `made'; a waiter reads `made' before `making': so a maker
 * it did not see in flight shows up as a new generation afterwards.
 */
static _Atomic unsigned making;
static _Atomic unsigned long made;

void
kq_fd_making(void)
{
	atomic_fetch_add(&making, 1);
	atomic_fetch_add(&made, 1);
}

void
kq_fd_made(void)
{
	atomic_fetch_sub(&making, 1);
}

unsigned long
kq_fd_quiet(void)
{
	for (;;) {
		unsigned long gen = atomic_load(&made);
		if (atomic_load(&making) == 0)
			return gen;
		sched_yield();		/* an open/read/close: microseconds */
	}
}

bool
kq_fd_settled(unsigned long gen)
{
	return atomic_load(&making) == 0 && atomic_load(&made) == gen;
}

ssize_t
kq_read_fdinfo(int fd, char *buf, size_t len)
{
	char path[40];
	ssize_t n;
	int f;

	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	kq_fd_making();
	if ((f = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		kq_fd_made();
		return -1;
	}
	n = read(f, buf, len - 1);
	kq_real_close(f);
	kq_fd_made();
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

int
kq_fd_close(int fd)
{
	struct fdslot *s = slot_peek(fd);
	int r, err;

	/* between the flag and the close the number is still ours: a
	 * section, as while it was being made (internal.h, DESCRIPTORS) */
	kq_fd_making();
	if (s != NULL)
		atomic_fetch_and(&s->flags, ~SLOT_OWNED);
	r = kq_real_close(fd);
	err = errno;
	kq_fd_made();
	errno = err;
	return r;
}

/*
 * Fork child: every owned descriptor is closed (they are shared with the
 * parent's objects), and every watcher forgotten without being told: the
 * kqueues they belong to were not inherited.  The slots are plain words
 * updated atomically, so another thread cannot have left them half-written;
 * a lock it held is simply dropped.
 */
void
kq_fdreg_fork_child(void)
{
	unsigned c, i;

	owner_pid = (pid_t)syscall(SYS_getpid);
	vforking = false;
	atomic_store(&vm_shared, false);	/* our memory is our own now */
	atomic_store(&making, 0);	/* other threads' sections ended with them */
	for (c = 0; c < TOP_SIZE; c++) {
		struct fdslot *chunk = atomic_load(&chunks[c]);
		if (chunk == NULL)
			continue;
		for (i = 0; i < CHUNK_SIZE; i++) {
			if (atomic_load(&chunk[i].flags) & SLOT_OWNED)
				kq_real_close((int)(c << CHUNK_BITS | i));
		}
		memset((void *)chunk, 0, CHUNK_SIZE * sizeof *chunk);
	}
	/* the kernel wiped it; set last: another thread of a copy child
	 * that sees it treats its closes as ours, so the slots must be
	 * fresh by then */
	__atomic_store_n(kq_fork_mark, kq_fork_mark != &kq_fork_mark_none,
	    __ATOMIC_RELEASE);
}

/* -------------------------------------------------------- the close path */

#if defined(__x86_64__)
#define HAVE_VFORK_STUB 1
#endif

/* Is this close the process's own (see owner_pid above)? */
static bool
own_table(void)
{
#ifdef HAVE_VFORK_STUB
	if (!vforking && !atomic_load_explicit(&vm_shared, memory_order_relaxed) &&
	    *(volatile unsigned char *)kq_fork_mark != 0)
		return true;
#endif
	if ((pid_t)syscall(SYS_getpid) != owner_pid)
		return false;
	vforking = false;	/* we are the thread that vforked: its child is gone */
	return true;
}

/* A child that runs in our memory but is a process of its own (vfork(),
 * clone(CLONE_VM) without CLONE_FILES): what it does to itself - its
 * descriptors, its signal dispositions - is not ours to record. */
bool
kq_vfork_child(void)
{
	return !own_table() && !kq_fdreg_copy_child();
}

/*
 * fd is about to be closed or replaced.  Returns the slot, locked, if the
 * caller must unlock it after the real call (NULL: nothing to hold).
 * cs: where the caller's cancellation state goes while the slot is held
 * (the real call must not end the thread with the slot locked; CANCELLATION
 * in internal.h), NULL if the real call is no cancellation point.  A close
 * acts on a pending cancel here, before anything is touched.
 */
static struct fdslot *
closing_slot(struct fdslot *s, int fd, int *cs)
{
	if (s == NULL || !kq_close_tracking || !slot_busy(s))
		return NULL;
	/* a vfork() child shares our memory but not our fd table: its
	 * close leaves our file open.  A copy child's memory and table are
	 * its own: the number it closes is no longer one its adoption may
	 * close as ours (kq_fdreg_fork_child), whatever it names next. */
	if (!own_table()) {
		if (kq_fdreg_copy_child())
			atomic_fetch_and(&s->flags, ~SLOT_OWNED);
		return NULL;
	}
	if (cs != NULL) {
		pthread_testcancel();
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, cs);
	}
	if (!slot_trylock_closing(s)) {
		if (cs != NULL)
			pthread_setcancelstate(*cs, NULL);
		atomic_fetch_or(&s->flags, SLOT_PENDING);
		return NULL;
	}
	tell_watchers(s, fd);
	/* the socket's, not the number's (kept under this lock: no locked
	 * store when there is none) */
	if (atomic_load_explicit(&s->sockerr, memory_order_relaxed) != 0)
		atomic_store(&s->sockerr, 0);
	return s;
}

static struct fdslot *
closing(int fd, int *cs)
{
	return closing_slot(slot_peek(fd), fd, cs);
}

/*
 * After a close that found nothing to tell (CLOSE TRACKING in internal.h):
 * an EV_ADD on another thread may have linked its watch and registered the
 * file between that look and the real call.  The adder fences between its
 * link and its registration, and the real call orders the file's end
 * before this look: so a watch that registered the ended file is in the
 * chain now.  Under the lock (a watch is linked and registered within one
 * hold), each watch says whether it was of that file (ops->raced: epoll no
 * longer has it at this number) and only those are told; one of a new file
 * that reused the number is left alone.
 */
static void __attribute__((noinline, cold))
close_raced(struct fdslot *s, int fd)
{
	struct kq_fdwatch *w, *next, *prev = NULL;

	if (!own_table() || !slot_trylock_closing(s))
		return;		/* a vfork child's; a handler's on the holder */
	w = atomic_load_explicit(&s->head, memory_order_relaxed);
	for (; w != NULL; w = next) {
		next = w->next;
		if (w->ops->raced == NULL || !w->ops->raced(w, fd)) {
			prev = w;
			continue;
		}
		if (prev == NULL)
			atomic_store_explicit(&s->head, next,
			    memory_order_release);
		else
			prev->next = next;
		w->next = NULL;
		w->ops->closed(w, fd);
	}
	slot_unlock(s, fd);
}

/* After a close-family call that held no slot: a watch there now may have
 * raced it.  errno is the call's. */
static inline void
closed_quietly(struct fdslot *s, int fd)
{
	if (s != NULL && __builtin_expect(slot_busy(s), 0)) {
		int e = errno;
		close_raced(s, fd);
		errno = e;
	}
}

/* Is fd one of ours, as the application's close family sees it? */
static bool
refused(int fd)
{
	return kq_close_tracking && kq_fd_owned(fd) && own_table();
}

/* The close family: tell the watchers, then the real call with the slot
 * still locked.  cancel: the real call is a cancellation point. */
#define CLOSING(fd, call, cancel) ({						\
	int cs_;								\
	struct fdslot *held_ = closing(fd, (cancel) ? &cs_ : NULL);		\
	__typeof__(call) r_ = (call);						\
	int e_ = errno;								\
	if (held_ != NULL) {							\
		slot_unlock(held_, (fd));					\
		if (cancel)							\
			pthread_setcancelstate(cs_, NULL);			\
	} else if (kq_close_tracking) {						\
		closed_quietly(slot_peek(fd), (fd));				\
	}									\
	errno = e_;								\
	r_;									\
})

#define REAL(fn) (__builtin_expect(real_##fn == NULL, 0) ? resolve_real() : (void)0, real_##fn)

int
kq_real_close(int fd)
{
	return REAL(close)(fd);
}

/*
 * close_range()/closefrom() without the owned numbers: every watched number
 * in range is told and held (ascending order, so two ranges cannot deadlock)
 * across the real calls, which close the gaps between owned numbers.
 */
static int
close_range_tracked(unsigned first, unsigned last, int flags)
{
	unsigned c, i, from = first;
	int r = 0, e = 0;

	for (c = first >> CHUNK_BITS; c < TOP_SIZE && c <= (last >> CHUNK_BITS); c++) {
		struct fdslot *chunk = atomic_load(&chunks[c]);
		if (chunk == NULL)
			continue;
		for (i = 0; i < CHUNK_SIZE; i++) {
			unsigned fd = c << CHUNK_BITS | i;
			struct fdslot *s = &chunk[i];
			if (fd < first || fd > last || !slot_busy(s))
				continue;
			if (refused((int)fd)) {
				if (fd > from && REAL(close_range)(from, fd - 1, flags) < 0)
					r = -1, e = errno;
				from = fd + 1;
				continue;
			}
			if (closing((int)fd, NULL) != NULL)
				atomic_fetch_or(&s->flags, SLOT_RANGE);
		}
	}
	if (from <= last && from >= first && REAL(close_range)(from, last, flags) < 0)
		r = -1, e = errno;
	for (c = first >> CHUNK_BITS; c < TOP_SIZE && c <= (last >> CHUNK_BITS); c++) {
		struct fdslot *chunk = atomic_load(&chunks[c]);
		if (chunk == NULL)
			continue;
		for (i = 0; i < CHUNK_SIZE; i++) {
			struct fdslot *s = &chunk[i];
			if (atomic_load_explicit(&s->flags, memory_order_relaxed) & SLOT_RANGE) {
				atomic_fetch_and(&s->flags, ~SLOT_RANGE);
				slot_unlock(s, (int)(c << CHUNK_BITS | i));
			}
		}
	}
	errno = e;
	return r;
}

KQ_API int
close(int fd)
{
	struct fdslot *s = kq_close_tracking ? slot_peek(fd) : NULL, *held;
	int r, err, cs;

	/* nothing watches the number and it is not ours: libc's close */
	if (s == NULL)
		return REAL(close)(fd);
	if (!slot_busy(s)) {
#ifdef KQ_STATS
		if (kq_test_close_window != NULL)
			kq_test_close_window(fd);
#endif
		r = REAL(close)(fd);
		closed_quietly(s, fd);
		return r;
	}
	if ((atomic_load_explicit(&s->flags, memory_order_relaxed) &
	    SLOT_OWNED) && own_table()) {
		errno = EBADF;
		return -1;
	}
	held = closing_slot(s, fd, &cs);
	r = REAL(close)(fd);
	if (held != NULL) {
		err = errno;
		slot_unlock(held, fd);
		pthread_setcancelstate(cs, NULL);
		errno = err;
	}
	return r;
}

KQ_API int
dup2(int oldfd, int newfd)
{
	if (refused(newfd) && oldfd != newfd) {
		errno = EBUSY;
		return -1;
	}
	if (oldfd == newfd || fcntl(oldfd, F_GETFD) < 0)
		return REAL(dup2)(oldfd, newfd);
	return CLOSING(newfd, REAL(dup2)(oldfd, newfd), false);
}

KQ_API int
dup3(int oldfd, int newfd, int flags)
{
	if (refused(newfd) && oldfd != newfd) {
		errno = EBUSY;
		return -1;
	}
	if (oldfd == newfd || fcntl(oldfd, F_GETFD) < 0)
		return REAL(dup3)(oldfd, newfd, flags);
	return CLOSING(newfd, REAL(dup3)(oldfd, newfd, flags), false);
}

KQ_API int
close_range(unsigned first, unsigned last, int flags)
{
	/* CLOEXEC closes nothing now (our own fds have it already) */
	if (!kq_close_tracking || (flags & ~CLOSE_RANGE_UNSHARE) || first > last)
		return REAL(close_range)(first, last, flags);
	return close_range_tracked(first, last, flags);
}

KQ_API void
closefrom(int lowfd)
{
	if (!kq_close_tracking || lowfd < 0) {
		REAL(closefrom)(lowfd);
		return;
	}
	if (close_range_tracked((unsigned)lowfd, ~0u, 0) < 0 && errno == ENOSYS)
		REAL(closefrom)(lowfd);	/* no close_range(): nothing to skip */
}

/*
 * SO_ERROR stays the application's.  Reading it clears it on Linux, but an
 * EV_EOF report needs it in fflags (filter_read.c), and event libraries read
 * it after the event to learn how a connect() ended.  What the library
 * consumed is kept per fd number, dies with every close of the number
 * (closing()), and is handed to the application's getsockopt(SO_ERROR) when
 * the kernel has nothing newer.  Without close tracking nothing is kept: a
 * stale error could outlive its socket.
 */
void
kq_fdreg_stash_sockerr(int fd, int err)
{
	struct fdslot *s = slot_peek(fd);

	if (s != NULL && kq_close_tracking)
		atomic_store(&s->sockerr, err);
}

int
kq_fdreg_take_sockerr(int fd)
{
	struct fdslot *s = slot_peek(fd);

	if (s == NULL || atomic_load_explicit(&s->sockerr, memory_order_relaxed) == 0)
		return 0;
	return atomic_exchange(&s->sockerr, 0);
}

KQ_API int
getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	int r = REAL(getsockopt)(fd, level, name, val, len);

	/* a vfork() child's number may name another socket: what we kept
	 * is the parent's */
	if (__builtin_expect(level == SOL_SOCKET && name == SO_ERROR, 0) &&
	    r == 0 && *len >= sizeof(int) && *(int *)val == 0 && own_table())
		*(int *)val = kq_fdreg_take_sockerr(fd);
	return r;
}

KQ_API int
fclose(FILE *f)
{
	int fd = fileno(f);
	if (fd < 0)
		return REAL(fclose)(f);
	return CLOSING(fd, REAL(fclose)(f), true);
}

KQ_API int
closedir(DIR *d)
{
	int fd = dirfd(d);
	if (fd < 0)
		return REAL(closedir)(d);
	return CLOSING(fd, REAL(closedir)(d), false);
}

/*
 * vfork(): mark the calling thread (owner_pid above), then jump to libc's
 * vfork, which returns straight to our caller in the parent and in the
 * child.  A C wrapper cannot do this: the child would return through the
 * wrapper's frame and overwrite the return address the parent still needs.
 * The call below is balanced before the jump, so no stack is shared.
 */
void *kq_vfork_enter(void);

/* used: only the assembly below calls it, which link-time optimisation does
 * not see (without it, an -flto build drops the function and fails to
 * link). */
__attribute__((used)) void *
kq_vfork_enter(void)
{
	vforking = true;
	return (void *)REAL(vfork);
}

#ifdef HAVE_VFORK_STUB
__asm__(
	"	.text\n"
	"	.globl	vfork\n"
	"	.type	vfork, @function\n"
	"vfork:\n"
#ifdef __CET__
	"	endbr64\n"
#endif
	"	subq	$8, %rsp\n"		/* the call needs a 16-byte aligned stack */
	"	call	kq_vfork_enter\n"
	"	addq	$8, %rsp\n"
	"	jmp	*%rax\n"
	"	.size	vfork, .-vfork\n");
#endif

/*
 * clone(): a child that shares our memory but not our descriptor table
 * (CLONE_VM without CLONE_FILES) makes the close path ask whose close it
 * is: for good, or, for a CLONE_VFORK child on the calling thread's TLS,
 * until that thread's next close (owner_pid above).  A child sharing the
 * table too closes our descriptors: its close is ours.  pthread_create()
 * does not come here.  The optional arguments are passed on as they came
 * (glibc's clone reads all three).
 */
KQ_API int
clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
	va_list ap;
	pid_t *ptid;
	void *tls;
	pid_t *ctid;

	va_start(ap, arg);
	ptid = va_arg(ap, pid_t *);
	tls = va_arg(ap, void *);
	ctid = va_arg(ap, pid_t *);
	va_end(ap);
	if ((flags & CLONE_VM) && !(flags & CLONE_FILES)) {
		if ((flags & CLONE_VFORK) && !(flags & CLONE_SETTLS))
			vforking = true;
		else
			atomic_store(&vm_shared, true);
	}
	return REAL(clone)(fn, stack, flags, arg, ptid, tls, ctid);
}

static const struct kq_interpose interposed[] = {
	{ "close", (void *)close },
	{ "dup2", (void *)dup2 },
	{ "dup3", (void *)dup3 },
	{ "close_range", (void *)close_range },
	{ "closefrom", (void *)closefrom },
	{ "fclose", (void *)fclose },
	{ "closedir", (void *)closedir },
	{ "getsockopt", (void *)getsockopt },
#ifdef HAVE_VFORK_STUB
	{ "vfork", (void *)vfork },
#endif
	{ "clone", (void *)clone },
};
#define NCLOSE	(sizeof interposed / sizeof interposed[0])

/* What the GOT patch installs: the close family (only with tracking on)
 * and the signal interposers (always).  One table for the process, filled
 * by the constructor before its first use. */
static struct kq_interpose patch_tab[NCLOSE + KQ_SIGNAL_NINTERPOSE];
static size_t patch_n;

void
kq_fdreg_check_new_objects(void)
{
	if (patch_n != 0 && kq_gotpatch_stale())
		kq_gotpatch_apply(patch_tab, patch_n);
}

static void *
next_sym(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (p == NULL)
		p = dlsym(RTLD_DEFAULT, name);
	return p;
}

static void
resolve_real(void)
{
	real_close = next_sym("close");
	real_dup2 = next_sym("dup2");
	real_dup3 = next_sym("dup3");
	real_close_range = next_sym("close_range");
	real_closefrom = next_sym("closefrom");
	real_fclose = next_sym("fclose");
	real_closedir = next_sym("closedir");
	real_getsockopt = next_sym("getsockopt");
	real_vfork = next_sym("vfork");
	real_clone = next_sym("clone");
}

/* kq_fork_mark (see owner_pid): one page of its own, since the kernel wipes
 * whole pages.  Not an owned descriptor: an anonymous mapping has none. */
static void
fork_mark_init(void)
{
	long psz = sysconf(_SC_PAGESIZE);
	unsigned char *p = mmap(NULL, (size_t)psz, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return;
	if (madvise(p, (size_t)psz, MADV_WIPEONFORK) != 0) {
		munmap(p, (size_t)psz);
		return;
	}
	*p = 1;
	kq_fork_mark = p;
}

__attribute__((constructor)) static void
fdreg_init(void)
{
	/* a set-uid program must not let its caller switch tracking off */
	const char *e = secure_getenv("KQFREE_CLOSE_TRACKING");

	resolve_real();
	owner_pid = (pid_t)syscall(SYS_getpid);
	fork_mark_init();
	if (e != NULL && strcmp(e, "0") == 0)
		kq_close_tracking = false;
	if (kq_close_tracking) {
		memcpy(patch_tab, interposed, sizeof interposed);
		patch_n = NCLOSE;
	}
	memcpy(patch_tab + patch_n, kq_signal_interpose, sizeof kq_signal_interpose);
	patch_n += KQ_SIGNAL_NINTERPOSE;
	kq_fdreg_check_new_objects();
}
