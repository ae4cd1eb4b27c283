/*
 * The kqueue object: kqueue()/kqueuex(), kqfree_release(), teardown on
 * close, fork, the wake eventfd that makes the epoll fd readable while the
 * library has events of its own queued, and the per-fd nodes.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
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
	if (!atomic_exchange(&kq->kicked, true)) {
		uint64_t one = 1;
		ssize_t r = write(kq->wake.fd, &one, sizeof one);
		(void)r;
	}
}

/*
 * End of every kevent() call: the kqueue fd must poll readable exactly while
 * something is queued.  Activations inside a call need no syscall; what is
 * left over at the end costs one write.  An edge nobody took while nothing is
 * queued any more is defused by emptying the counter: epoll re-checks a ready
 * item before it reports it, also to poll() on the kqueue fd.
 */
void
kq_update_wake(struct kq_kqueue *kq)
{
	bool want = !TAILQ_EMPTY(&kq->active) || !TAILQ_EMPTY(&kq->notices) ||
	    atomic_load(&kq->closed) != NULL;

	if (want) {
		kq_kick(kq);
	} else if (atomic_load_explicit(&kq->kicked, memory_order_relaxed)) {
		uint64_t v;
		ssize_t r = read(kq->wake.fd, &v, sizeof v);
		(void)r;
		atomic_store(&kq->kicked, false);
		/* a close path may have pushed between our check and here */
		if (atomic_load(&kq->closed) != NULL)
			kq_kick(kq);
	}
}

/* The scan took the edge: the next kick must write again. */
static void
wake_ready(struct kq_kqueue *kq, struct kq_poll *p, uint32_t revents)
{
	(void)p, (void)revents;
	atomic_store(&kq->kicked, false);
}

/* --------------------------------------------------------------- fdnodes */

static void fdnode_ready(struct kq_kqueue *, struct kq_poll *, uint32_t);

/* The live node of fd: one closed (on another thread) since this call
 * drained is drained now, since the number may name another file. */
struct kq_fdnode *
kq_fdnode_find(struct kq_kqueue *kq, int fd)
{
	if (fd < 0 || fd >= kq->nfds || kq->fds[fd] == NULL)
		return NULL;
	if (atomic_load(&kq->fds[fd]->closed))
		kq_drain_closed(kq);
	return kq->fds[fd];
}

struct kq_fdnode *
kq_fdnode_get(struct kq_kqueue *kq, int fd, int *err)
{
	struct kq_fdnode *fdn = kq_fdnode_find(kq, fd);

	if (fdn != NULL) {
		if (fdn->idle) {
			TAILQ_REMOVE(&kq->idle, fdn, idle_link);
			fdn->idle = false;
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
	fdn = calloc(1, sizeof *fdn);
	if (fdn == NULL) {
		*err = ENOMEM;
		return NULL;
	}
	fdn->kq = kq;
	fdn->fd = fd;
	LIST_INIT(&fdn->knotes);
	fdn->poll.fd = fd;
	fdn->poll.userfd = true;
	fdn->poll.owner = fdn;
	fdn->poll.ready = fdnode_ready;
	if ((*err = kq_poll_register(kq, &fdn->poll)) != 0) {
		free(fdn);
		return NULL;
	}
	kq_fdreg_lock(fd);
	kq_fdreg_link(fdn);
	kq_fdreg_unlock(fd);
	kq->fds[fd] = fdn;
	return fdn;
}

static uint32_t
fdnode_want(struct kq_kqueue *kq, struct kq_fdnode *fdn)
{
	struct kq_knote *kn;
	uint32_t ev = 0;
	bool clear = false, oneshot = true;

	LIST_FOREACH(kn, &fdn->knotes, fdlink) {
		uint32_t m = kn->fop->pollevents != NULL ?
		    kn->fop->pollevents(kq, kn) : 0;
		kn->pollmask = m;
		if (m == 0)
			continue;
		ev |= m;
		if ((kn->kev.flags & EV_CLEAR) || (m & KQ_POLLET))
			clear = true;
		if (!(kn->kev.flags & (EV_ONESHOT | EV_DISPATCH)))
			oneshot = false;
	}
	if (ev == 0)
		return 0;
	if (clear || fdn->force_et)
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
	kq_fdreg_lock(fdn->fd);
	err = kq_backend_attach(kq, &fdn->poll);
	/* registered with no events epoll still reports HUP/ERR */
	if (err == 0 && fdn->poll.want == 0)
		kq_backend_detach(kq, &fdn->poll);
	kq_fdreg_unlock(fdn->fd);
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
	if (fdn->kind != KQ_FD_POLL)
		return;
	fdn->poll.want = fdnode_want(kq, fdn);
	kq_backend_update(kq, &fdn->poll);
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
		/* a level knote sharing an edge-triggered registration must
		 * be re-checked by the scan: epoll will not report it again */
		if (edge && !(kn->kev.flags & EV_CLEAR))
			kn->status |= KN_REQUEUE;
		else
			kn->status &= ~KN_REQUEUE;
		kq_knote_activate(kq, kn);
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
	free(fdn);
}

void
kq_fdnode_put(struct kq_kqueue *kq, struct kq_fdnode *fdn)
{
	kq_fdnode_update(kq, fdn);
	if (!LIST_EMPTY(&fdn->knotes) || atomic_load(&fdn->closed) || fdn->idle)
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
kq_fdnode_reap(struct kq_kqueue *kq)
{
	struct kq_fdnode *fdn;

	while ((fdn = TAILQ_FIRST(&kq->idle)) != NULL) {
		TAILQ_REMOVE(&kq->idle, fdn, idle_link);
		fdn->idle = false;
		if (fdn->poll.in_backend && fdn->poll.armed == 0 &&
		    fdn->poll.want == 0 && !fdn->poll.dirty)
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
		kq_fdreg_unlink(fdn);
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
		fdn->poll.in_backend = false;	/* the close path removed it */
		fdn->poll.armed = 0;
		kq_backend_detach(kq, &fdn->poll);
		while ((kn = LIST_FIRST(&fdn->knotes)) != NULL)
			kq_knote_release(kq, kn, NOTE_FREE_CLOSE, NULL);
		fdnode_free(kq, fdn);
	}
}

/* ---------------------------------------------------------------- kqueue */

static int
kq_create(bool cloexec)
{
	struct kq_kqueue *kq = calloc(1, sizeof *kq), *stale;
	int err;

	if (kq == NULL) {
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
	kq->wake.fd = kq->timer.fd = kq->inotify.fd = kq->sigpoll.fd = -1;
	kq->fd = -1;
	RB_INIT(&kq->knotes);
	if ((err = kq_backend_init(kq, cloexec)) != 0)
		goto fail;
	kq->wake.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (kq->wake.fd < 0) {
		err = errno;
		goto fail;
	}
	kq->wake.ready = wake_ready;
	kq->wake.want = KQ_POLLIN | KQ_POLLET;
	if ((err = kq_poll_register(kq, &kq->wake)) != 0 ||
	    (err = kq_backend_attach(kq, &kq->wake)) != 0 ||
	    (err = kq_fdreg_reserve(kq->fd)) != 0)
		goto fail;
	/* The number may have been closed behind our back while watched. */
	if ((stale = kq_fdreg_forget(kq->fd)) != NULL)
		kq_destroy(stale);
	pthread_mutex_lock(&kq_global_lock);
	LIST_INSERT_HEAD(&kq_all, kq, all);
	pthread_mutex_unlock(&kq_global_lock);
	kq_fdreg_set_kqueue(kq->fd, kq);
	kq_fdreg_check_new_objects();
	return kq->fd;
fail:
	if (kq->wake.fd >= 0)
		kq_real_close(kq->wake.fd);
	if (kq->fd >= 0)
		kq_real_close(kq->fd);
	kq_backend_close(kq);
	pthread_mutex_destroy(&kq->lock);
	free(kq);
	errno = err;
	return -1;
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
	unsigned i;

	/* mechanism fds a filter kept (the wake fd always) */
	for (i = 1; i < kq->nslots; i++) {
		struct kq_poll *p = kq->slots[i];
		if (p != NULL && !p->userfd && !p->shared && p->fd >= 0) {
			kq_real_close(p->fd);
			p->fd = -1;
		}
	}
	for (i = 0; i < (unsigned)kq->nfds; i++)
		free(kq->fds[i]);
	free(kq->fds);
	kq_knote_cache_free(kq);
	free(kq->theap.v);
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
 * close() of the kqueue fd (the caller closes the epoll fd itself right
 * after).  Knotes die without notices: the fd that would carry them is going
 * away; bindings call kqfree_release() first to collect them.
 */
void
kq_destroy(struct kq_kqueue *kq)
{
	int i;

	pthread_mutex_lock(&kq_global_lock);
	LIST_REMOVE(kq, all);
	pthread_mutex_unlock(&kq_global_lock);

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
		kq_fdreg_unlink(fdn);
		kq_fdreg_unlock(fdn->fd);
	}
	/* no close path can push any more; what it pushed is in kq->fds */
	atomic_store(&kq->closed, NULL);
	/* as FreeBSD's kqueue_close, wake threads sleeping in kevent() on it:
	 * they return EBADF, each waking the next (scan) */
	uint64_t one = 1;
	ssize_t r = write(kq->wake.fd, &one, sizeof one);
	(void)r;
	pthread_mutex_unlock(&kq->lock);
	kq_put(kq);
}

KQ_API int
kqfree_release(int fd)
{
	struct kq_kqueue *kq = kq_fdreg_get_kqueue(fd);

	if (kq == NULL) {
		errno = EBADF;
		return -1;
	}
	pthread_mutex_lock(&kq->lock);
	kq_drain_closed(kq);
	kq_release_all(kq, NOTE_FREE_RELEASE, true);
	kq_backend_flush(kq);
	kq_fdnode_reap(kq);
	kq_update_wake(kq);
	pthread_mutex_unlock(&kq->lock);
	kq_put(kq);
	return 0;
}

/*
 * EVFILT_READ on a kqueue fd: how many events it has queued, like FreeBSD's
 * kq_count.  -1 if fd is not one of ours.  Only a try-lock: the caller holds
 * its own kqueue's lock and must not wait for another's.
 */
int64_t
kq_pending_count(int fd)
{
	struct kq_kqueue *kq = kq_fdreg_get_kqueue(fd);
	struct kq_knote *kn;
	int64_t n = 0;

	if (kq == NULL)
		return -1;
	if (pthread_mutex_trylock(&kq->lock) == 0) {
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
 * As on BSD the child does not inherit kqueues.  The epoll, timerfd and
 * inotify objects are shared with the parent, so the child must not modify
 * them: close every fd the kqueues own first (later epoll_ctl / timerfd
 * calls then fail with EBADF and change nothing), then free the memory.
 * Locks held by threads that do not exist in the child are not taken.
 */
static void
fork_child(void)
{
	struct kq_kqueue *kq, *next;
	uint32_t i;

	LIST_FOREACH(kq, &kq_all, all) {
		for (i = 1; i < kq->nslots; i++) {
			struct kq_poll *p = kq->slots[i];
			if (p != NULL && !p->userfd && !p->shared && p->fd >= 0) {
				kq_real_close(p->fd);
				p->fd = -1;
			}
		}
		kq_real_close(kq->fd);
	}
	kq_fdreg_reset_after_fork();
	for (kq = LIST_FIRST(&kq_all); kq != NULL; kq = next) {
		next = LIST_NEXT(kq, all);
		pthread_mutex_init(&kq->lock, NULL);
		kq->dead = true;
		atomic_store(&kq->closed, NULL);
		kq_release_all(kq, NOTE_FREE_RELEASE, false);
		kq_free(kq);
	}
	LIST_INIT(&kq_all);
	pthread_mutex_init(&kq_global_lock, NULL);
}

__attribute__((constructor)) static void
kqueue_init(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}
