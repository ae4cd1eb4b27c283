/*
 * The process-wide fd registry and the close interposition.
 *
 * For every fd number that some kqueue watches (or that is a kqueue) there is
 * a slot: a tiny spinlock, the chain of fdnodes (one per kqueue watching the
 * fd) and the kqueue living at that number.  Every libc call that closes or
 * replaces an fd comes here first.  For a watched fd we remove the epoll
 * registrations *before* the real close, so the number can never be reused
 * while epoll still holds the old file, and hand the fdnodes to their
 * kqueues' lock-free closed stacks.  Nothing here takes a kqueue lock, which
 * makes close() safe from signal handlers and while kevent() runs elsewhere.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void resolve_real(void);

#define CHUNK_BITS	10
#define CHUNK_SIZE	(1u << CHUNK_BITS)
#define TOP_SIZE	(1u << 16)	/* 64M fds */

struct fdslot {
	_Atomic uintptr_t owner;		/* spinlock: pthread_self() of holder */
	_Atomic(struct kq_fdnode *) head;	/* watchers (written under owner) */
	_Atomic(struct kq_kqueue *) kq;		/* the kqueue at this number */
	_Atomic int sockerr;			/* SO_ERROR we consumed, the app's */
};

static _Atomic(struct fdslot *) chunks[TOP_SIZE];
static bool tracking = true;
static pid_t owner_pid;		/* a vfork child shares our memory: not ours */

static int (*real_close)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_close_range)(unsigned, unsigned, int);
static void (*real_closefrom)(int);
static int (*real_fclose)(FILE *);
static int (*real_closedir)(DIR *);
static int (*real_getsockopt)(int, int, int, void *, socklen_t *);

static struct fdslot *
slot_peek(int fd)
{
	if (fd < 0 || (unsigned)fd >= CHUNK_SIZE * TOP_SIZE)
		return NULL;
	struct fdslot *c = atomic_load_explicit(&chunks[fd >> CHUNK_BITS],
	    memory_order_acquire);
	return c != NULL ? &c[fd & (CHUNK_SIZE - 1)] : NULL;
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
 * Returns false when this thread already holds the lock: a signal handler
 * interrupted our own critical section.  The caller must then not touch the
 * chain (it is mid-update); it degrades to an untracked close.
 */
static bool
slot_lock(struct fdslot *s)
{
	uintptr_t self = (uintptr_t)pthread_self(), expect;

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

static void
slot_unlock(struct fdslot *s)
{
	atomic_store_explicit(&s->owner, 0, memory_order_release);
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
		slot_unlock(s);
}

int
kq_fdreg_link(struct kq_fdnode *fdn)
{
	struct fdslot *s = slot_peek(fdn->fd);
	if (s == NULL)
		return ENOMEM;
	fdn->reg_next = atomic_load_explicit(&s->head, memory_order_relaxed);
	atomic_store_explicit(&s->head, fdn, memory_order_release);
	return 0;
}

void
kq_fdreg_unlink(struct kq_fdnode *fdn)
{
	struct fdslot *s = slot_peek(fdn->fd);
	struct kq_fdnode *p, *prev = NULL;

	if (s == NULL || atomic_load(&fdn->closed))
		return;
	for (p = atomic_load_explicit(&s->head, memory_order_relaxed); p != NULL;
	    prev = p, p = p->reg_next) {
		if (p != fdn)
			continue;
		if (prev == NULL)
			atomic_store_explicit(&s->head, p->reg_next, memory_order_release);
		else
			prev->reg_next = p->reg_next;
		break;
	}
}

void
kq_fdreg_set_kqueue(int fd, struct kq_kqueue *kq)
{
	struct fdslot *s = slot_peek(fd);
	if (s != NULL)
		atomic_store_explicit(&s->kq, kq, memory_order_release);
}

struct kq_kqueue *
kq_fdreg_get_kqueue(int fd)
{
	struct fdslot *s = slot_peek(fd);
	struct kq_kqueue *kq;

	if (s == NULL || atomic_load_explicit(&s->kq, memory_order_acquire) == NULL)
		return NULL;
	if (!slot_lock(s))
		return NULL;
	kq = atomic_load_explicit(&s->kq, memory_order_relaxed);
	if (kq != NULL)
		atomic_fetch_add(&kq->refs, 1);
	slot_unlock(s);
	return kq;
}

/* Child of fork(): forget everything without freeing what may be locked. */
void
kq_fdreg_reset_after_fork(void)
{
	unsigned i;

	owner_pid = (pid_t)syscall(SYS_getpid);
	for (i = 0; i < TOP_SIZE; i++) {
		struct fdslot *c = atomic_load(&chunks[i]);
		if (c != NULL)
			memset((void *)c, 0, CHUNK_SIZE * sizeof *c);
	}
}

/*
 * fd is about to be closed or replaced (or was, behind our back, and its
 * number is being reused).  Returns the kqueue that lives at that number, if
 * any, detached from the registry: the caller destroys it.  With held, the
 * slot stays locked (*held) until the caller's real close is done, so no
 * EV_ADD on another thread can register the dying file in between.
 */
static struct kq_kqueue *
forget(int fd, struct fdslot **held)
{
	struct fdslot *s = slot_peek(fd);
	struct kq_fdnode *fdn, *next;
	struct kq_kqueue *kq;

	if (s == NULL || !tracking)
		return NULL;
	if (atomic_load_explicit(&s->head, memory_order_relaxed) == NULL &&
	    atomic_load_explicit(&s->kq, memory_order_relaxed) == NULL &&
	    atomic_load_explicit(&s->sockerr, memory_order_relaxed) == 0)
		return NULL;
	/* a vfork() child shares our memory but not our fd table: its
	 * close leaves our file open */
	if ((pid_t)syscall(SYS_getpid) != owner_pid)
		return NULL;
	if (!slot_lock(s))
		return NULL;
	kq = atomic_exchange(&s->kq, NULL);
	fdn = atomic_exchange(&s->head, NULL);
	atomic_store(&s->sockerr, 0);		/* the socket's, not the number's */
	for (; fdn != NULL; fdn = next) {
		struct kq_kqueue *wkq = fdn->kq;
		/* a free notice is due: wake the kqueue */
		bool kick = atomic_load(&fdn->nfreewatch) > 0;

		next = fdn->reg_next;
		atomic_store(&fdn->closed, true);
		kq_backend_forget_fd(wkq, fd);
		/* Once pushed, fdn belongs to the kqueue, which may free it
		 * (and then be closed itself) at once: touch neither after
		 * the push without our own reference. */
		atomic_fetch_add(&wkq->refs, 1);
		fdn->closed_next = atomic_load(&wkq->closed);
		while (!atomic_compare_exchange_weak(&wkq->closed,
		    &fdn->closed_next, fdn))
			;
		if (kick)
			kq_kick(wkq);
		kq_put(wkq);
	}
	if (held != NULL)
		*held = s;
	else
		slot_unlock(s);
	return kq;
}

struct kq_kqueue *
kq_fdreg_forget(int fd)
{
	return forget(fd, NULL);
}

/* Close of a number that may be a kqueue or watched (close_range). */
static void
before_close(int fd)
{
	struct kq_kqueue *kq = forget(fd, NULL);
	if (kq != NULL)
		kq_destroy(kq);
}

/* The close family: detach, destroy a kqueue living there, then do the real
 * call with the slot still locked. */
#define CLOSING(fd, call) ({							struct fdslot *held_ = NULL;						struct kq_kqueue *kq_ = forget((fd), &held_);				if (kq_ != NULL)								kq_destroy(kq_);						__typeof__(call) r_ = (call);						int e_ = errno;								if (held_ != NULL)								slot_unlock(held_);						errno = e_;								r_;								})

static void
before_close_range(unsigned first, unsigned last)
{
	unsigned c, i;

	if (!tracking)
		return;
	for (c = first >> CHUNK_BITS; c < TOP_SIZE && c <= (last >> CHUNK_BITS); c++) {
		struct fdslot *chunk = atomic_load(&chunks[c]);
		if (chunk == NULL)
			continue;
		for (i = 0; i < CHUNK_SIZE; i++) {
			unsigned fd = c << CHUNK_BITS | i;
			if (fd < first || fd > last)
				continue;
			if (atomic_load_explicit(&chunk[i].head, memory_order_relaxed) != NULL ||
			    atomic_load_explicit(&chunk[i].kq, memory_order_relaxed) != NULL ||
			    atomic_load_explicit(&chunk[i].sockerr, memory_order_relaxed) != 0)
				before_close((int)fd);
		}
	}
}

#define REAL(fn) (__builtin_expect(real_##fn == NULL, 0) ? resolve_real() : (void)0, real_##fn)

int
kq_real_close(int fd)
{
	return REAL(close)(fd);
}

KQ_API int
close(int fd)
{
	return CLOSING(fd, REAL(close)(fd));
}

KQ_API int
dup2(int oldfd, int newfd)
{
	if (oldfd == newfd || fcntl(oldfd, F_GETFD) < 0)
		return REAL(dup2)(oldfd, newfd);
	return CLOSING(newfd, REAL(dup2)(oldfd, newfd));
}

KQ_API int
dup3(int oldfd, int newfd, int flags)
{
	if (oldfd == newfd || fcntl(oldfd, F_GETFD) < 0)
		return REAL(dup3)(oldfd, newfd, flags);
	return CLOSING(newfd, REAL(dup3)(oldfd, newfd, flags));
}

KQ_API int
close_range(unsigned first, unsigned last, int flags)
{
	if (!(flags & CLOSE_RANGE_CLOEXEC) && first <= last)
		before_close_range(first, last);
	return REAL(close_range)(first, last, flags);
}

KQ_API void
closefrom(int lowfd)
{
	if (lowfd >= 0)
		before_close_range((unsigned)lowfd, ~0u);
	REAL(closefrom)(lowfd);
}

/*
 * SO_ERROR stays the application's.  Reading it clears it on Linux, but an
 * EV_EOF report needs it in fflags (filter_read.c), and event libraries read
 * it after the event to learn how a connect() ended.  What the library
 * consumed is kept per fd number, dies with every close of the number (in
 * forget()), and is handed to the application's getsockopt(SO_ERROR) when
 * the kernel has nothing newer.  Without close tracking nothing is kept: a
 * stale error could outlive its socket.
 */
void
kq_fdreg_stash_sockerr(int fd, int err)
{
	struct fdslot *s = slot_peek(fd);

	if (s != NULL && tracking)
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

	if (__builtin_expect(level == SOL_SOCKET && name == SO_ERROR, 0) &&
	    r == 0 && *len >= sizeof(int) && *(int *)val == 0)
		*(int *)val = kq_fdreg_take_sockerr(fd);
	return r;
}

KQ_API int
fclose(FILE *f)
{
	int fd = fileno(f);
	if (fd < 0)
		return REAL(fclose)(f);
	return CLOSING(fd, REAL(fclose)(f));
}

KQ_API int
closedir(DIR *d)
{
	int fd = dirfd(d);
	if (fd < 0)
		return REAL(closedir)(d);
	return CLOSING(fd, REAL(closedir)(d));
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
};

void
kq_fdreg_check_new_objects(void)
{
	if (tracking && kq_gotpatch_stale())
		kq_gotpatch_apply(interposed, sizeof interposed / sizeof interposed[0]);
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
}

__attribute__((constructor)) static void
fdreg_init(void)
{
	const char *e = getenv("KQFREE_CLOSE_TRACKING");

	resolve_real();
	owner_pid = (pid_t)syscall(SYS_getpid);
	if (e != NULL && strcmp(e, "0") == 0)
		tracking = false;
	kq_fdreg_check_new_objects();
}
