/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The kqueue object: kqueue()/kqueuex(), kqfree_release(), teardown on
 * close, fork, the wake eventfd that makes the epoll fd readable while the
 * library has events of its own queued, and the per-fd nodes.
 */
#include "internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_mutex_t kq_global_lock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, kq_kqueue) kq_all = LIST_HEAD_INITIALIZER(kq_all);

int64_t
kq_now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------ wake */

/* One wake edge: the eventfd's count, or (io_uring, Linux 6.13) a message
 * to the ring (internal.h, BACKENDS).  Signal-safe. */
static inline void
wake_post(struct kq_kqueue *kq)
{
	uint64_t one = 1;

	if (KQ_URING(kq) && kq_uring_post_wake(kq))
		return;
	(void)!write(kq->wake.fd, &one, sizeof one);
}

void
kq_wake_post(struct kq_kqueue *kq)
{
	wake_post(kq);
}

/*
 * The wake eventfd sits in the epoll set edge-triggered: each write is one
 * edge, and `kicked` means "an edge is on its way or sitting in epoll's ready
 * list".  The scan that takes the edge clears it (wake_ready), so a
 * cross-thread wake-up costs one write and no read.  Signal-safe: the close
 * path calls it.
 */
void
kq_kick(struct kq_kqueue *kq)
{
	if (!atomic_exchange(&kq->kicked, true))
		wake_post(kq);
}

/*
 * The same under kq->lock, with the write left to kq_unlock(): written with
 * the lock held, the edge wakes a sleeper that then blocks on the lock we
 * still hold (on one CPU the wake-up preempts us first: three switches and
 * two futex calls instead of one switch).  wake_owed counts edges promised
 * this way and not yet written, so that kq_update_wake() does not try to
 * defuse an edge that is not there yet (see wake_write).
 */
static void
kick_later(struct kq_kqueue *kq)
{
	if (!atomic_exchange(&kq->kicked, true)) {
		atomic_fetch_add(&kq->wake_owed, 1);
		kq->wake_due = true;
	}
}

/* Something the close path, or another kqueue's inotify reader, left for
 * a kevent() to pick up. */
static inline bool
closer_pending(struct kq_kqueue *kq)
{
	return atomic_load(&kq->closed) != NULL || atomic_load(&kq->suspect) ||
	    atomic_load(&kq->ino_mail);
}

/*
 * End of every kevent() call: the kqueue fd must poll readable while
 * something is queued, and not after (but for the one spurious edge epoll
 * may leave: internal.h, ACTIVATION / SCAN).  Activations inside a call
 * need no syscall; what is left over at the end costs one write (by
 * kq_unlock).  An edge nobody took while nothing is queued any more is
 * defused by emptying the counter: epoll re-checks a ready item before it
 * reports it, also to poll() on the kqueue fd.  An edge another kevent()
 * promised but has not written yet cannot be defused here: its writer is
 * asked to (KQ_WAKE_DEFUSE) and does it under the lock once the edge is in.
 * A dead kqueue's edge belongs to its sleepers (kq_kill: each passes it on
 * to the next): a sleeper returning EBADF must not defuse it.
 */
void
kq_update_wake(struct kq_kqueue *kq)
{
	bool want = !TAILQ_EMPTY(&kq->active) || !TAILQ_EMPTY(&kq->notices) ||
	    kq_timer_backlog(kq) || closer_pending(kq);

	if (kq->dead)
		return;
	if (want) {
		kick_later(kq);
	} else if (atomic_load_explicit(&kq->kicked, memory_order_relaxed) ||
	    kq->wake_unread) {
		/* increments happen under kq->lock only: with none owed
		 * now, none can appear before we unlock */
		if (atomic_fetch_or(&kq->wake_owed, KQ_WAKE_DEFUSE) &
		    ~KQ_WAKE_DEFUSE)
			return;
		atomic_store(&kq->wake_owed, 0);
		/* io_uring: the edge's own CQE would keep the kqueue fd
		 * readable (internal.h, BACKENDS); a message is all there is */
		if (!KQ_URING(kq) || !kq_uring_defuse(kq)) {
			uint64_t v;
			ssize_t r = read(kq->wake.fd, &v, sizeof v);
			(void)r;
		}
		kq->wake_unread = false;
		atomic_store(&kq->kicked, false);
		/* a close path may have kicked between our check and here */
		if (closer_pending(kq))
			kick_later(kq);
	}
}

/*
 * Write the edge kick_later() promised (no lock held).  If a kevent() found
 * the queue empty before it landed (it took the events without waiting), it
 * left the defusing to the last such writer: look again under the lock.
 * Out of line: kq_unlock() runs twice per waiting kevent() and rarely
 * writes; inlined, its registers cost every unlock a frame.
 */
static void __attribute__((noinline, cold))
wake_write(struct kq_kqueue *kq)
{
	bool again = true;

	while (again) {
		wake_post(kq);
		if (atomic_fetch_sub(&kq->wake_owed, 1) != (KQ_WAKE_DEFUSE | 1))
			return;
		pthread_mutex_lock(&kq->lock);
		atomic_fetch_and(&kq->wake_owed, ~KQ_WAKE_DEFUSE);
		kq_update_wake(kq);
		again = kq->wake_due;
		kq->wake_due = false;
		pthread_mutex_unlock(&kq->lock);
	}
}

void
kq_unlock(struct kq_kqueue *kq)
{
	/* read under the lock; without an edge due, only the unlock */
	if (__builtin_expect(!kq->wake_due, 1)) {
		pthread_mutex_unlock(&kq->lock);
		return;
	}
	kq->wake_due = false;
	pthread_mutex_unlock(&kq->lock);
	wake_write(kq);
}

/* The scan took the edge: the next kick must write again. */
static void
wake_ready(struct kq_kqueue *kq, struct kq_poll *p, uint32_t revents)
{
	(void)p, (void)revents;
	/* io_uring: epoll still has the edge, and the eventfd its count */
	if (KQ_URING(kq))
		kq->wake_unread = true;
	atomic_store(&kq->kicked, false);
	/* after clearing kicked: mail routed from now on kicks again */
	if (atomic_load(&kq->ino_mail))
		kq_ino_mail(kq);
}

/* --------------------------------------------------------------- fdnodes */

static void fdnode_ready(struct kq_kqueue *, struct kq_poll *, uint32_t);

/*
 * The close path (fdreg.c) on a watched fd: runs in the closer's context,
 * maybe a signal handler, under the fd's slot lock.  The registration goes
 * before the real close (the file may live on in a dup or a child), and the
 * node goes to its kqueue's lock-free stack.  Touching fdn and kq after the
 * push is safe only because kq_drain_closed() passes through this slot's
 * lock before it frees fdn, and a kqueue is freed only after that drain.
 */
static void
fdnode_closed(struct kq_fdwatch *w, int fd)
{
	struct kq_fdnode *fdn = (struct kq_fdnode *)((char *)w -
	    offsetof(struct kq_fdnode, watch));
	struct kq_kqueue *kq = fdn->kq;
	/* a free notice is due: wake the kqueue */
	bool kick = atomic_load(&fdn->nfreewatch) > 0;

	(void)fd;
	/* release: readers that care hold this slot's lock or take the node
	 * from the closed stack (seq_cst push below) */
	atomic_store_explicit(&fdn->closed, true, memory_order_release);
	kq_backend_forget(kq, &fdn->poll);
	fdn->closed_next = atomic_load(&kq->closed);
	while (!atomic_compare_exchange_weak(&kq->closed, &fdn->closed_next, fdn))
		;
	if (kick)
		kq_kick(kq);
}

/* After a close that saw no watcher (fdreg.c, close_raced): an empty number
 * says yes; otherwise epoll holds an item per (file, number), so the same
 * events again at this number fail once the file this node registered is no
 * longer there.  io_uring cannot tell a reused number (its poll holds the
 * file): no. */
static bool
fdnode_raced(struct kq_fdwatch *w, int fd)
{
	struct kq_fdnode *fdn = (struct kq_fdnode *)((char *)w -
	    offsetof(struct kq_fdnode, watch));

	if (atomic_load(&fdn->closed))
		return false;
	/* Nothing at the number: this watch was of the file the close
	 * ended (a watch of a later file there was told when that one was
	 * closed, or raced its close like this one).  Asked first: a node
	 * epoll does not hold (added disabled, a regular file) and io_uring
	 * have no other answer. */
	if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
		return true;
	/* another file there; one of the library's own may be registered in
	 * this very set at this number: never MOD it */
	if (kq_fd_owned(fd))
		return false;
	return !kq_backend_still_attached(fdn->kq, &fdn->poll);
}

static const struct kq_fdwatch_ops fdnode_watch_ops = {
	.closed = fdnode_closed,
	.raced = fdnode_raced,
};

/* Freed nodes kept per kqueue for reuse (kq->fdnode_cache): a connection's
 * watch-and-close cycle then costs no calloc (glibc's bypasses its thread
 * cache) and no free.  A cached node is unwatched and drained: nothing else
 * can reach it. */
#define FDNODE_CACHE_MAX	64

static struct kq_fdnode *
fdnode_alloc(struct kq_kqueue *kq)
{
	struct kq_fdnode *fdn = kq->fdnode_cache;

	if (fdn == NULL)
		return calloc(1, sizeof *fdn);
	kq->fdnode_cache = fdn->closed_next;
	kq->nfdnode_cached--;
	memset(fdn, 0, sizeof *fdn);
	return fdn;
}

static void
fdnode_dispose(struct kq_kqueue *kq, struct kq_fdnode *fdn)
{
	if (kq->nfdnode_cached >= FDNODE_CACHE_MAX) {
		free(fdn);
		return;
	}
	fdn->closed_next = kq->fdnode_cache;
	kq->fdnode_cache = fdn;
	kq->nfdnode_cached++;
}

/* kq_fdnode_find() found fd's node closed (on another thread) since this
 * call drained: drained now, since the number may name another file. */
struct kq_fdnode *
kq_fdnode_find_closed(struct kq_kqueue *kq, int fd)
{
	kq_drain_closed(kq);
	return kq->fds[fd];
}

struct kq_fdnode *
kq_fdnode_get(struct kq_kqueue *kq, int fd, bool probe_first, int *err)
{
	struct kq_fdnode *fdn = kq_fdnode_find(kq, fd);

	if (fdn != NULL) {
		if (fdn->idle) {
			TAILQ_REMOVE(&kq->idle, fdn, idle_link);
			fdn->idle = false;
		}
		/* an earlier change's probe failed before it linked the node:
		 * a filter that does not probe first needs it linked now */
		if (fdn->watch_deferred && !probe_first) {
			kq_fdreg_lock(fd);
			kq_fdreg_watch(fd, &fdn->watch);
			fdn->watch_deferred = false;
			kq_fdreg_unlock(fd);
		}
		return fdn;
	}
	if ((*err = kq_fdreg_reserve(fd)) != 0)
		return NULL;
	if (fd >= kq->nfds) {
		int n = kq->nfds ? kq->nfds : 64;
		while (n <= fd)
			n *= 2;
		struct kq_fdnode **v = realloc(kq->fds, n * sizeof *v);
		if (v == NULL) {
			*err = ENOMEM;
			return NULL;
		}
		memset(v + kq->nfds, 0, (n - kq->nfds) * sizeof *v);
		kq->fds = v;
		kq->nfds = n;
	}
	fdn = fdnode_alloc(kq);
	if (fdn == NULL) {
		*err = ENOMEM;
		return NULL;
	}
	fdn->kq = kq;
	fdn->fd = fd;
	fdn->watch.ops = &fdnode_watch_ops;
	LIST_INIT(&fdn->knotes);
	fdn->poll.fd = fd;
	fdn->poll.userfd = true;
	fdn->poll.owner = fdn;
	fdn->poll.ready = fdnode_ready;
	if ((*err = kq_poll_register(kq, &fdn->poll)) != 0) {
		fdnode_dispose(kq, fdn);
		return NULL;
	}
	if (probe_first) {
		fdn->watch_deferred = true;
	} else {
		kq_fdreg_lock(fd);
		kq_fdreg_watch(fd, &fdn->watch);
		kq_fdreg_unlock(fd);
	}
	kq->fds[fd] = fdn;
	return fdn;
}

/* The union of the knotes' shares (each kept in kn->pollmask); edge-triggered
 * if any knote wants edges, one-shot only if all fire once. */
static uint32_t
fdnode_want(struct kq_kqueue *kq, struct kq_fdnode *fdn)
{
	struct kq_knote *kn;
	uint32_t ev = 0;
	bool oneshot = true;

	LIST_FOREACH(kn, &fdn->knotes, fdlink) {
		uint32_t m = kq_knote_share(kq, kn);
		kn->pollmask = m;
		if (m == 0)
			continue;
		ev |= m & ~KQ_POLLONESHOT;
		if (!(m & KQ_POLLONESHOT))
			oneshot = false;
	}
	if (ev == 0)
		return 0;
	if (fdn->force_et)
		ev |= KQ_POLLET;
	if (oneshot)
		ev |= KQ_POLLONESHOT;
	return ev;
}

int
kq_fdnode_probe(struct kq_kqueue *kq, struct kq_fdnode *fdn)
{
	int err;

	if (fdn->kind != 0)
		return 0;
	fdn->poll.want = fdnode_want(kq, fdn);
	for (;;) {
		/* epoll's answer must not be about a descriptor the library
		 * made at this number, for a moment or for good (internal.h,
		 * DESCRIPTORS): asked again if one was made meanwhile */
		unsigned long gen = kq_fd_quiet();
		if (kq_fd_owned(fdn->fd))
			return EBADF;
		kq_fdreg_lock(fdn->fd);
		if (fdn->watch_deferred) {
			kq_fdreg_watch(fdn->fd, &fdn->watch);
			fdn->watch_deferred = false;
		}
		/* the watch is seen before epoll looks the number up: a close
		 * that missed it finds it after (fdreg.c, close_raced) */
		atomic_thread_fence(memory_order_seq_cst);
		err = kq_backend_attach(kq, &fdn->poll);
		bool settled = kq_fd_settled(gen);
		/* registered with no events epoll still reports HUP/ERR */
		if (err == 0 && (!settled || fdn->poll.want == 0))
			kq_backend_detach(kq, &fdn->poll);
		kq_fdreg_unlock(fdn->fd);
		if (settled)
			break;
	}
	if (err == 0) {
		fdn->kind = KQ_FD_POLL;
	} else if (err == EPERM) {
		/* epoll refuses regular files and devices without poll:
		 * they are always ready, as poll() says. */
		fdn->kind = KQ_FD_NOPOLL;
		fdn->poll.want = 0;
	} else {
		return err;
	}
	return 0;
}

void
kq_fdnode_update(struct kq_kqueue *kq, struct kq_fdnode *fdn)
{
	struct kq_poll *p = &fdn->poll;

	if (fdn->kind != KQ_FD_POLL)
		return;
	p->want = fdnode_want(kq, fdn);
	/* epoll has it already (an EV_ADD's probe has just registered it):
	 * nothing for the flush to do */
	if (p->want == p->armed && (p->in_backend || p->want == 0))
		return;
	kq_backend_update(kq, p);
}

/* epoll reported what kn wants, or will not report it (edge: whether the
 * registration is edge-triggered): queue it.  A level knote on an
 * edge-triggered registration is re-checked by the scan, since epoll will
 * not report it again. */
void
kq_fdnode_knote_ready(struct kq_kqueue *kq, struct kq_knote *kn, bool edge)
{
	if (edge && !(kn->flags & EV_CLEAR))
		kn->status |= KN_REQUEUE;
	else
		kn->status &= ~KN_REQUEUE;
	kq_knote_activate(kq, kn);
}

static void
fdnode_ready(struct kq_kqueue *kq, struct kq_poll *p, uint32_t revents)
{
	struct kq_fdnode *fdn = p->owner;
	struct kq_knote *kn;
	bool edge = (p->armed & KQ_POLLET) != 0;

	if (p->armed & KQ_POLLONESHOT) {
		/* the kernel disarmed it; the flush re-arms it if a knote
		 * still wants events after this scan */
		p->armed = 0;
		kq_backend_update(kq, p);
	}
	fdn->revents = revents;
	LIST_FOREACH(kn, &fdn->knotes, fdlink) {
		uint32_t m = kn->pollmask;	/* fdnode_want() keeps it current */
		if (m == 0 || !(revents & (m | KQ_POLLERR | KQ_POLLHUP)))
			continue;
		kq_fdnode_knote_ready(kq, kn, edge);
	}
}

static void
fdnode_free(struct kq_kqueue *kq, struct kq_fdnode *fdn)
{
	if (fdn->idle)
		TAILQ_REMOVE(&kq->idle, fdn, idle_link);
	kq_poll_unregister(kq, &fdn->poll);
	if (fdn->fd < kq->nfds && kq->fds[fdn->fd] == fdn)
		kq->fds[fdn->fd] = NULL;
	fdnode_dispose(kq, fdn);
}

void
kq_fdnode_put(struct kq_kqueue *kq, struct kq_fdnode *fdn)
{
	/* closed: epoll has nothing left of it, kq_drain_closed frees it */
	if (atomic_load(&fdn->closed))
		return;
	kq_fdnode_update(kq, fdn);
	if (!LIST_EMPTY(&fdn->knotes) || fdn->idle)
		return;
	fdn->idle = true;
	TAILQ_INSERT_TAIL(&kq->idle, fdn, idle_link);
}

/*
 * Idle nodes are kept until the changelist is flushed, so an EV_DELETE and
 * EV_ADD of the same fd in one call reuse the registration.  A node that
 * epoll still holds disarmed (EPOLLONESHOT fired) stays cached: re-arming it
 * later costs one EPOLL_CTL_MOD, like raw epoll.
 */
void
kq_fdnode_reap_idle(struct kq_kqueue *kq)
{
	struct kq_fdnode *fdn;

	while ((fdn = TAILQ_FIRST(&kq->idle)) != NULL) {
		TAILQ_REMOVE(&kq->idle, fdn, idle_link);
		fdn->idle = false;
		if (fdn->poll.in_backend && fdn->poll.armed == 0 &&
		    fdn->poll.want == 0 && !fdn->poll.dirty)
			continue;
		/* io_uring: a node whose poll is gone holds nothing in the
		 * kernel; kept, a new knote on the fd needs no new probe
		 * (the close path still frees it) */
		if (KQ_URING(kq) && !fdn->poll.in_backend &&
		    fdn->poll.want == 0 && !fdn->poll.dirty &&
		    fdn->kind == KQ_FD_POLL)
			continue;
		/* all under the fd's lock: a close on another thread either
		 * took the node first (then kq_drain_closed frees it) or finds
		 * it gone, registration and all */
		kq_fdreg_lock(fdn->fd);
		if (atomic_load(&fdn->closed)) {
			kq_fdreg_unlock(fdn->fd);
			continue;
		}
		kq_backend_detach(kq, &fdn->poll);
		kq_fdreg_unwatch(fdn->fd, &fdn->watch);
		kq_fdreg_unlock(fdn->fd);
		fdnode_free(kq, fdn);
	}
}

/* Release the knotes of fds the close path saw closing, oldest first. */
void
kq_drain_closed(struct kq_kqueue *kq)
{
	struct kq_fdnode *list, *rev = NULL, *fdn;
	struct kq_knote *kn;

	if (atomic_load_explicit(&kq->closed, memory_order_relaxed) == NULL)
		return;
	list = atomic_exchange(&kq->closed, NULL);
	while (list != NULL) {
		fdn = list;
		list = fdn->closed_next;
		fdn->closed_next = rev;
		rev = fdn;
	}
	while ((fdn = rev) != NULL) {
		rev = fdn->closed_next;
		/* the closer may still be kicking us: it is done once it has
		 * let go of the slot (internal.h, CLOSE TRACKING) */
		kq_fdreg_pass(fdn->fd);
		fdn->poll.in_backend = false;	/* the close path removed it */
		fdn->poll.armed = 0;
		kq_backend_detach(kq, &fdn->poll);
		while ((kn = LIST_FIRST(&fdn->knotes)) != NULL)
			kq_knote_release(kq, kn, NOTE_FREE_CLOSE, NULL);
		fdnode_free(kq, fdn);
	}
}

/* ---------------------------------------------------------------- aliases */

/*
 * The numbers the application holds for a kqueue are aliases: other
 * descriptors of the epoll file the library waits on through its own
 * kq->fd.  kevent(N) maps N to the kqueue (one slot lock when N is known,
 * a search when it is not: a dup), and holds a reference across the call.
 * A kqueue lives while some descriptor other than kq->fd names its file:
 * closing an alias only makes its kqueue a suspect, looked at by the next
 * kqueue(), kevent() or the kqueue's own sleeper (kq_reap_suspects), never
 * by the close path itself, which must not lock or free.
 */
struct kq_alias {
	struct kq_fdwatch watch;	/* in the slot of fd while linked */
	struct kq_kqueue *kq;
	int fd;
	bool linked;			/* under the slot lock of fd */
	LIST_ENTRY(kq_alias) link;	/* kq->aliases, under kq_global_lock */
};

_Atomic int kq_suspects;
static bool kcmp_broken;	/* seccomp or no CONFIG_KCMP: fdinfo instead */

static void
alias_closed(struct kq_fdwatch *w, int fd)
{
	struct kq_alias *a = (struct kq_alias *)w;
	struct kq_kqueue *kq = a->kq;

	(void)fd;
	a->linked = false;
	if (!atomic_exchange(&kq->suspect, true))
		atomic_fetch_add(&kq_suspects, 1);
	/* a sleeper must look: this may have been the last alias */
	kq_kick(kq);
}

static const struct kq_fdwatch_ops alias_watch_ops = { .closed = alias_closed };

static void
alias_hold(struct kq_fdwatch *w)
{
	atomic_fetch_add(&((struct kq_alias *)w)->kq->refs, 1);
}

/* The "tfd:" lines of an epoll fd's fdinfo: which files it watches. */
static ssize_t
epoll_items(int fd, char *buf, size_t len)
{
	char raw[4096], *p, *line;
	ssize_t out = 0;

	if (kq_read_fdinfo(fd, raw, sizeof raw) < 0)
		return -1;
	for (line = raw; (p = strstr(line, "tfd:")) != NULL; line = p + 4) {
		char *end = strchrnul(p, '\n');
		size_t l = (size_t)(end - p);
		if ((size_t)out + l >= len)
			break;
		memcpy(buf + out, p, l);
		out += (ssize_t)l;
	}
	return out;
}

/* Do descriptors a and b name the same open file? */
static bool
same_file(int a, int b)
{
	pid_t pid = getpid();

	if (a < 0 || b < 0)
		return false;
	if (!kcmp_broken) {
		long r = syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b);
		if (r >= 0)
			return r == 0;
		if (errno != ENOSYS && errno != EPERM && errno != EACCES)
			return false;
		kcmp_broken = true;
	}
	/* every kqueue's epoll set holds its own wake eventfd: two sets
	 * watching the same files are the same set */
	char x[2048], y[2048];
	ssize_t nx = epoll_items(a, x, sizeof x), ny = epoll_items(b, y, sizeof y);
	return nx > 0 && nx == ny && memcmp(x, y, (size_t)nx) == 0;
}

/* Link a (new or reused) alias of kq at fd.  Under kq_global_lock. */
static int
alias_add(struct kq_kqueue *kq, int fd)
{
	struct kq_alias *a;
	int err;

	LIST_FOREACH(a, &kq->aliases, link)
		if (!a->linked)
			break;
	if (a == NULL) {
		if ((a = calloc(1, sizeof *a)) == NULL)
			return ENOMEM;
		a->watch.ops = &alias_watch_ops;
		a->kq = kq;
		LIST_INSERT_HEAD(&kq->aliases, a, link);
	}
	if ((err = kq_fdreg_reserve(fd)) != 0)
		return err;
	kq_fdreg_lock(fd);
	if (!a->linked) {
		a->fd = fd;
		a->linked = true;
		kq_fdreg_watch(fd, &a->watch);
	}
	kq_fdreg_unlock(fd);
	return 0;
}

static void
alias_unlink_all(struct kq_kqueue *kq)
{
	struct kq_alias *a;

	LIST_FOREACH(a, &kq->aliases, link) {
		kq_fdreg_lock(a->fd);
		if (a->linked) {
			kq_fdreg_unwatch(a->fd, &a->watch);
			a->linked = false;
		}
		kq_fdreg_unlock(a->fd);
	}
}

/* Does fd name kq?  Under fd's slot lock: a close in progress there (it
 * told us before its real close) has finished. */
static bool
names(int fd, struct kq_kqueue *kq)
{
	bool r;

	kq_fdreg_lock(fd);
	r = same_file(fd, kq->fd);
	kq_fdreg_unlock(fd);
	return r;
}

/*
 * Does any descriptor besides kq->fd still name kq?  The numbers known to
 * be aliases first, then every open descriptor.  Under kq_global_lock.
 */
static bool
kq_alive(struct kq_kqueue *kq)
{
	struct kq_alias *a;
	struct dirent *de;
	DIR *d;
	int *fds = NULL, nfds = 0, cap = 0, *v;
	bool found = false, oom = false;

	LIST_FOREACH(a, &kq->aliases, link)
		if (names(a->fd, kq))
			return true;
	/* the numbers first, the directory closed, then the looks (no lock
	 * inside a descriptor-making section: internal.h, DESCRIPTORS) */
	kq_fd_making();
	if ((d = opendir("/proc/self/fd")) == NULL) {
		kq_fd_made();
		return true;	/* cannot tell: keep it */
	}
	while (!oom && (de = readdir(d)) != NULL) {
		char *end;
		long fd = strtol(de->d_name, &end, 10);
		if (*end != '\0' || end == de->d_name || fd == kq->fd ||
		    fd == dirfd(d) || kq_fd_owned((int)fd))
			continue;
		if (nfds == cap) {
			cap = cap ? cap * 2 : 64;
			if ((v = realloc(fds, cap * sizeof *v)) == NULL) {
				oom = true;
				break;
			}
			fds = v;
		}
		fds[nfds++] = (int)fd;
	}
	closedir(d);
	kq_fd_made();
	for (int i = 0; !oom && !found && i < nfds; i++)
		if (names(fds[i], kq) && alias_add(kq, fds[i]) == 0)
			found = true;
	free(fds);
	return found || oom;	/* out of memory: cannot tell, keep it */
}

/* ---------------------------------------------------------------- kqueue */

static void kq_kill(struct kq_kqueue *kq);
static void kq_free(struct kq_kqueue *kq);

/*
 * Kqueues whose alias was closed (and, without close tracking, every one):
 * kill those nothing names any more.  Called where locks and free() are
 * safe: kqueue(), kevent() and a sleeper woken by alias_closed.
 */
void
kq_reap_suspects_now(void)
{
	struct kq_kqueue *kq, *next;
	bool all = !kq_fdreg_tracking();

	pthread_mutex_lock(&kq_global_lock);
	for (kq = LIST_FIRST(&kq_all); kq != NULL; kq = next) {
		next = LIST_NEXT(kq, all);
		bool suspect = atomic_exchange(&kq->suspect, false);
		if (suspect)
			atomic_fetch_sub(&kq_suspects, 1);
		if ((suspect || all) && !kq_alive(kq))
			kq_kill(kq);
	}
	pthread_mutex_unlock(&kq_global_lock);
}

/*
 * The kqueue named by descriptor fd, with a reference, or NULL.  A number
 * seen before costs one slot lock (and, without close tracking, a kcmp to
 * be sure it still names the same file); a new one (a dup) is searched for
 * among the live kqueues when search is set (never under a kqueue lock).
 */
struct kq_kqueue *
kq_lookup(int fd, bool search)
{
	struct kq_fdwatch *w = kq_fdreg_find(fd, &alias_watch_ops, alias_hold);
	struct kq_kqueue *kq = NULL, *k;

	if (w != NULL) {
		kq = ((struct kq_alias *)w)->kq;
		if (kq_fdreg_tracking() || same_file(fd, kq->fd))
			return kq;
		kq_put(kq);
		kq = NULL;
	}
	if (!search || fd < 0 || kq_fd_owned(fd) || fcntl(fd, F_GETFD) < 0)
		return NULL;
	pthread_mutex_lock(&kq_global_lock);
	LIST_FOREACH(k, &kq_all, all) {
		if (!same_file(fd, k->fd))
			continue;
		/* a stale alias of another kqueue may sit at fd */
		kq_fdreg_forget(fd);
		if (alias_add(k, fd) == 0) {
			atomic_fetch_add(&k->refs, 1);
			kq = k;
		}
		break;
	}
	pthread_mutex_unlock(&kq_global_lock);
	return kq;
}

static int
kq_make(bool cloexec)
{
	struct kq_kqueue *kq;
	int err, app = -1;

	kq_fork_adopt();
	kq_reap_suspects();
	if ((kq = calloc(1, sizeof *kq)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	pthread_mutex_init(&kq->lock, NULL);
	atomic_init(&kq->refs, 1);
	kq->pid = getpid();
	TAILQ_INIT(&kq->active);
	TAILQ_INIT(&kq->notices);
	TAILQ_INIT(&kq->polled);
	TAILQ_INIT(&kq->idle);
	LIST_INIT(&kq->aliases);
	kq->wake.fd = kq->timer.fd = kq->sigpoll.fd = -1;
	kq->fd = -1;
	kq->timer_armed = INT64_MAX;
	/* the backend's set gets the lowest free number, as kqueue(2) would:
	 * that one is the application's; the library waits on its own dup */
	if ((err = kq_backend_init(kq, cloexec)) != 0)
		goto fail;
	app = kq->fd;
	kq->fd = kq_fd_own(fcntl(app, F_DUPFD_CLOEXEC, 3));
	if (kq->fd < 0) {
		err = errno;
		goto fail;
	}
	kq->wake.fd = kq_fd_own(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (kq->wake.fd < 0) {
		err = errno;
		goto fail;
	}
	kq->wake.ready = wake_ready;
	kq->wake.want = KQ_POLLIN | KQ_POLLET;
	if ((err = kq_poll_register(kq, &kq->wake)) != 0 ||
	    (err = kq_backend_attach(kq, &kq->wake)) != 0)
		goto fail;
	pthread_mutex_lock(&kq_global_lock);
	/* the number is new: whatever watched it was closed behind our back */
	kq_fdreg_forget(app);
	if ((err = alias_add(kq, app)) != 0) {
		pthread_mutex_unlock(&kq_global_lock);
		goto fail;
	}
	LIST_INSERT_HEAD(&kq_all, kq, all);
	pthread_mutex_unlock(&kq_global_lock);
	kq_fdreg_check_new_objects();
	return app;
fail:
	if (app >= 0)
		kq_real_close(app);
	kq_free(kq);
	errno = err;
	return -1;
}

/* Not a cancellation point (CANCELLATION in internal.h). */
static int
kq_create(bool cloexec)
{
	int cs, fd, e;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
	fd = kq_make(cloexec);
	e = errno;
	pthread_setcancelstate(cs, NULL);
	errno = e;
	return fd;
}

KQ_API int
kqueue(void)
{
	return kq_create(false);
}

KQ_API int
kqueuex(unsigned int flags)
{
	if (flags & ~KQUEUE_CLOEXEC) {
		errno = EINVAL;
		return -1;
	}
	return kq_create(flags & KQUEUE_CLOEXEC);
}

static void
kq_free(struct kq_kqueue *kq)
{
	struct kq_alias *a;
	struct kq_fdnode *fdn;
	unsigned i;

	/* mechanism fds a filter kept (the wake fd always) */
	for (i = 1; i < kq->nslots; i++) {
		struct kq_poll *p = kq->slots[i];
		if (p != NULL && !p->userfd && !p->shared && p->fd >= 0) {
			kq_fd_close(p->fd);
			p->fd = -1;
		}
	}
	if (kq->wake.fd >= 0)
		kq_fd_close(kq->wake.fd);	/* failed kq_create */
	if (kq->fd >= 0)
		kq_fd_close(kq->fd);
	while ((a = LIST_FIRST(&kq->aliases)) != NULL) {
		LIST_REMOVE(a, link);
		free(a);
	}
	for (i = 0; i < (unsigned)kq->nfds; i++)
		free(kq->fds[i]);
	free(kq->fds);
	while ((fdn = kq->fdnode_cache) != NULL) {
		kq->fdnode_cache = fdn->closed_next;
		free(fdn);
	}
	kq_knote_slabs_free(kq);
	kq_timer_free(kq);
	kq_backend_close(kq);
	pthread_mutex_destroy(&kq->lock);
	free(kq);
}

void
kq_put(struct kq_kqueue *kq)
{
	if (atomic_fetch_sub(&kq->refs, 1) == 1)
		kq_free(kq);
}

/*
 * Nothing names kq any more (under kq_global_lock).  Knotes die without
 * notices: the fd that would carry them is gone; bindings call
 * kqfree_release() first to collect them.  As FreeBSD's kqueue_close,
 * threads sleeping in kevent() on it wake up: they return EBADF, each
 * waking the next (scan).  The memory goes with the last reference.
 */
static void
kq_kill(struct kq_kqueue *kq)
{
	int i;

	LIST_REMOVE(kq, all);
	alias_unlink_all(kq);
	pthread_mutex_lock(&kq->lock);
	kq->dead = true;
	kq_drain_closed(kq);
	kq_release_all(kq, NOTE_FREE_RELEASE, false);
	kq_backend_flush(kq);
	for (i = 0; i < kq->nfds; i++) {
		struct kq_fdnode *fdn = kq->fds[i];
		if (fdn == NULL)
			continue;
		kq_fdreg_lock(fdn->fd);
		kq_fdreg_unwatch(fdn->fd, &fdn->watch);
		kq_fdreg_unlock(fdn->fd);
	}
	/* a close path that took a node before our unwatch has pushed it
	 * (we passed its lock): those are in kq->fds too */
	atomic_store(&kq->closed, NULL);
	wake_post(kq);
	pthread_mutex_unlock(&kq->lock);
	kq_put(kq);
}

KQ_API int
kqfree_release(int fd)
{
	struct kq_kqueue *kq;
	int cs;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
	kq_fork_adopt();
	kq_reap_suspects();
	if ((kq = kq_lookup(fd, true)) == NULL) {
		pthread_setcancelstate(cs, NULL);
		errno = EBADF;
		return -1;
	}
	pthread_mutex_lock(&kq->lock);
	if (!kq->dead) {
		kq_drain_closed(kq);
		kq_release_all(kq, NOTE_FREE_RELEASE, true);
		kq_backend_flush_exit(kq);
		kq_fdnode_reap(kq);
		kq_backend_commit(kq);
		kq_update_wake(kq);
	}
	kq_unlock(kq);
	kq_put(kq);
	pthread_setcancelstate(cs, NULL);
	return 0;
}

/*
 * EVFILT_READ on a kqueue fd: how many events it has queued, like FreeBSD's
 * kq_count.  -1 if fd is not a kqueue we know by that number.  Only a
 * try-lock: the caller holds its own kqueue's lock and must not wait for
 * another's.
 */
int64_t
kq_pending_count(int fd)
{
	struct kq_kqueue *kq = kq_lookup(fd, false);
	struct kq_knote *kn;
	int64_t n = 0;

	if (kq == NULL)
		return -1;
	if (pthread_mutex_trylock(&kq->lock) == 0) {
		/* due timers are queued only as a scan has room: count them */
		kq_timer_expire_due(kq, INT_MAX);
		TAILQ_FOREACH(kn, &kq->active, link)
			n++;
		TAILQ_FOREACH(kn, &kq->notices, link)
			n++;
		pthread_mutex_unlock(&kq->lock);
	}
	kq_put(kq);
	return n;
}

/* ------------------------------------------------------------------ fork */

/* Kqueues a fork child inherited: never touched again, kept reachable. */
static struct kq_kqueue *kq_forsaken;

static void
fork_prepare(void)
{
	pthread_mutex_lock(&kq_global_lock);
}

static void
fork_parent(void)
{
	pthread_mutex_unlock(&kq_global_lock);
}

/*
 * As on BSD the child does not inherit kqueues.  Other threads of the parent
 * may have been anywhere inside one (trees, heaps, queues half-updated), so
 * the child reads nothing of them but the list and the alias numbers, both
 * written only under kq_global_lock, which fork_prepare holds.  It closes
 * each alias that still names its kqueue (a number the application reused
 * is left alone), then every descriptor the library owns (fdreg.c), and
 * forgets the kqueues: their memory stays, unreachable from any call.
 */
static void
fork_child(void)
{
	struct kq_kqueue *kq;
	struct kq_alias *a;

	/* (a copy child may have closed kq->fd: its number then tells
	 * nothing about the aliases, which stay the child's) */
	LIST_FOREACH(kq, &kq_all, all)
		if (kq_fd_owned(kq->fd))
			LIST_FOREACH(a, &kq->aliases, link)
				if (a->fd != kq->fd && same_file(a->fd, kq->fd))
					kq_real_close(a->fd);
	kq_fdreg_fork_child();
	if ((kq = LIST_FIRST(&kq_all)) != NULL) {
		while (LIST_NEXT(kq, all) != NULL)
			kq = LIST_NEXT(kq, all);
		kq->all.le_next = kq_forsaken;
		kq_forsaken = LIST_FIRST(&kq_all);
	}
	LIST_INIT(&kq_all);
	atomic_store(&kq_suspects, 0);
	/* fork_prepare took it on this very thread: give it back as the
	 * parent does (re-initialising a locked mutex is undefined, and
	 * ThreadSanitizer then sees the next lock as a double lock) */
	pthread_mutex_unlock(&kq_global_lock);
}

/*
 * A child no fork handler ran in (_Fork, a raw fork, clone() without
 * CLONE_VM; internal.h: FORK): its first call into a kqueue runs them.
 */
void
kq_fork_adopt_child(void)
{
	fork_prepare();
	if (!kq_fdreg_copy_child()) {
		fork_parent();		/* another thread of the child did it */
		return;
	}
	kq_gotpatch_fork_child();
	kq_ino_fork_child();
	kq_signal_fork_child();
	fork_child();			/* unlocks kq_global_lock */
}

__attribute__((constructor)) static void
kqueue_init(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}
