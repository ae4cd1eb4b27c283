/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The process's one inotify instance, shared by every kqueue.
 *
 * inotify instances are a per-user resource (fs.inotify.max_user_instances,
 * 128 by default), so one per kqueue would make the 129th kqueue's first
 * EVFILT_VNODE (or EVFILT_READ on a regular file) fail with EMFILE.  One
 * instance serves the process instead:
 *
 *   - The kernel gives one watch descriptor per inode per instance, so
 *     kqueues watching the same inode share a wd.  Each wd has a list of
 *     subscribers (struct kq_ino_sub, one per kqueue watching that inode:
 *     filter_vnode.c's per-kqueue watch) and the kernel holds the union of
 *     their masks (or a superset: narrowing needs a path to the inode).
 *     The last subscriber to leave removes the watch.
 *   - Every kqueue with a subscription (a "consumer") has the instance's fd
 *     in its epoll set, level-triggered.  Whichever kqueue's scan sees it
 *     readable reads it and routes each event, under ino_lock, to the mail
 *     of every consumer subscribed to its wd for that kind of event (all of
 *     them for IN_Q_OVERFLOW), then marks the other consumers' kqueues
 *     (kq->ino_mail) and kicks them (kq_kick: one write to their wake
 *     eventfd, no lock).  A kqueue takes its mail in its own scan, under
 *     its own lock (kq_ino_mail from the ready callback and from the wake
 *     edge), and hands it to filter_vnode.c as if it had read it from an
 *     instance of its own: the same bytes, filtered to its own watches.
 *   - Mail that cannot be kept (too much for a kqueue nobody scans, or no
 *     memory) is dropped and delivered as an IN_Q_OVERFLOW: the watcher
 *     re-checks every inode it watches, as for a kernel overflow.
 *
 * The reader never takes another kqueue's lock, so there is no order
 * between two kqueues' locks to get wrong.
 */
#include "internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

/* Mail a kqueue may have waiting before the rest becomes an overflow. */
#define INO_MAIL_MAX	(256 * 1024)

struct ino_wd {
	RB_ENTRY(ino_wd) node;
	int wd;
	uint32_t mask;			/* the kernel's, or a superset */
	LIST_HEAD(, kq_ino_sub) subs;
};

/* kq->ino: a kqueue that has subscriptions */
struct kq_ino_kq {
	struct kq_poll poll;		/* ino_fd in this kqueue's epoll set */
	struct kq_kqueue *kq;
	kq_ino_deliver_fn *deliver;
	LIST_ENTRY(kq_ino_kq) link;	/* ino_kqs */
	char *mail;			/* routed events, not yet delivered */
	size_t len, cap;
	bool lost;			/* some were dropped: overflow */
};

static int
ino_cmp(const struct ino_wd *a, const struct ino_wd *b)
{
	return a->wd < b->wd ? -1 : a->wd > b->wd;
}

RB_HEAD(ino_tree, ino_wd);
/* <bsd/sys/tree.h> spells its attribute the BSD way */
#define __unused __attribute__((__unused__))
RB_GENERATE_STATIC(ino_tree, ino_wd, node, ino_cmp)
#undef __unused

/* All of this under ino_lock (see internal.h, INOTIFY). */
static pthread_mutex_t ino_lock = PTHREAD_MUTEX_INITIALIZER;
static int ino_fd = -1;
static struct ino_tree ino_wds = RB_INITIALIZER(&ino_wds);
static LIST_HEAD(, kq_ino_kq) ino_kqs = LIST_HEAD_INITIALIZER(ino_kqs);

void
kq_ino_lock(void)
{
	pthread_mutex_lock(&ino_lock);
}

void
kq_ino_unlock(void)
{
	pthread_mutex_unlock(&ino_lock);
}

static struct ino_wd *
ino_find(int wd)
{
	struct ino_wd key;

	key.wd = wd;
	return RB_FIND(ino_tree, &ino_wds, &key);
}

/* The instance has no consumer left: give its fd back. */
static void
ino_close_if_idle(void)
{
	if (ino_fd >= 0 && LIST_EMPTY(&ino_kqs) && RB_EMPTY(&ino_wds)) {
		kq_fd_close(ino_fd);
		ino_fd = -1;
	}
}

/* ------------------------------------------------------------ routing */

static void
ino_post(struct kq_ino_kq *c, const struct inotify_event *ev,
    struct kq_kqueue *reader)
{
	size_t sz = sizeof *ev + ev->len;

	if (c->len + sz > c->cap) {
		size_t cap = c->cap ? c->cap : 4096;
		char *m;

		while (cap < c->len + sz)
			cap *= 2;
		if (cap > INO_MAIL_MAX ||
		    (m = realloc(c->mail, cap)) == NULL) {
			c->lost = true;
			goto kick;
		}
		c->mail = m;
		c->cap = cap;
	}
	memcpy(c->mail + c->len, ev, sz);
	c->len += sz;
kick:
	if (c->kq != reader) {
		atomic_store(&c->kq->ino_mail, true);
		kq_kick(c->kq);
	}
}

/* One read()'s worth of events to their subscribers.  Under ino_lock. */
static void
ino_route(const char *buf, size_t len, struct kq_kqueue *reader)
{
	const struct inotify_event *ev;
	struct kq_ino_sub *s;
	struct kq_ino_kq *c;
	struct ino_wd *w;
	size_t off;

	for (off = 0; off + sizeof *ev <= len; off += sizeof *ev + ev->len) {
		ev = (const struct inotify_event *)(buf + off);
		if (ev->mask & IN_Q_OVERFLOW) {
			LIST_FOREACH(c, &ino_kqs, link)
				ino_post(c, ev, reader);
			continue;
		}
		if ((w = ino_find(ev->wd)) == NULL)
			continue;	/* a watch we removed */
		/* each subscriber gets what its own instance would have */
		LIST_FOREACH(s, &w->subs, link)
			if (ev->mask & (s->mask | IN_IGNORED | IN_UNMOUNT))
				ino_post(s->kq->ino, ev, reader);
		if (ev->mask & IN_IGNORED) {
			/* the kernel dropped the watch: so do we */
			while ((s = LIST_FIRST(&w->subs)) != NULL) {
				LIST_REMOVE(s, link);
				s->linked = false;
			}
			RB_REMOVE(ino_tree, &ino_wds, w);
			free(w);
		}
	}
}

/* Read what the instance has and route it.  Under kq->lock of reader. */
static void
ino_read(struct kq_kqueue *reader)
{
	/* room for many events, and always for one with the longest name */
	char buf[8192]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;
	int rounds;

	pthread_mutex_lock(&ino_lock);
	/* bounded: epoll reports the fd again if more is queued */
	for (rounds = 0; ino_fd >= 0 && rounds < 16; rounds++) {
		n = read(ino_fd, buf, sizeof buf);
		if (n <= 0)
			break;
		ino_route(buf, (size_t)n, reader);
		if ((size_t)n + sizeof(struct inotify_event) + NAME_MAX + 1 <
		    sizeof buf)
			break;	/* the queue was drained */
	}
	pthread_mutex_unlock(&ino_lock);
}

void
kq_ino_mail(struct kq_kqueue *kq)
{
	struct kq_ino_kq *c = kq->ino;
	struct inotify_event lost = { .wd = -1, .mask = IN_Q_OVERFLOW };
	kq_ino_deliver_fn *deliver;
	char *mail;
	size_t len;
	bool dropped;

	if (c == NULL)
		return;
	pthread_mutex_lock(&ino_lock);
	atomic_store(&kq->ino_mail, false);
	mail = c->mail;
	len = c->len;
	dropped = c->lost;
	c->mail = NULL;
	c->len = c->cap = 0;
	c->lost = false;
	deliver = c->deliver;
	pthread_mutex_unlock(&ino_lock);
	/* c may go while delivering (a watch released): not used again */
	if (dropped)
		deliver(kq, (const char *)&lost, sizeof lost);
	if (len > 0)
		deliver(kq, mail, len);
	free(mail);
}

static void
ino_ready(struct kq_kqueue *kq, struct kq_poll *p, uint32_t revents)
{
	(void)revents;
	if (kq->ino != p->owner)
		return;
	ino_read(kq);
	kq_ino_mail(kq);
}

/* ---------------------------------------------------------- consumers */

int
kq_ino_join(struct kq_kqueue *kq, kq_ino_deliver_fn *deliver)
{
	struct kq_ino_kq *c;
	int err = 0;

	if (kq->ino != NULL)
		return 0;
	if ((c = calloc(1, sizeof *c)) == NULL)
		return ENOMEM;
	pthread_mutex_lock(&ino_lock);
	if (ino_fd < 0 &&
	    (ino_fd = kq_fd_own(inotify_init1(IN_CLOEXEC | IN_NONBLOCK))) < 0) {
		err = errno;
		ino_fd = -1;
		goto fail;
	}
	c->kq = kq;
	c->deliver = deliver;
	c->poll.fd = ino_fd;
	c->poll.want = KQ_POLLIN;
	c->poll.ready = ino_ready;
	c->poll.owner = c;
	c->poll.shared = true;		/* not this kqueue's to close */
	if ((err = kq_poll_register(kq, &c->poll)) != 0)
		goto fail;
	if ((err = kq_backend_attach(kq, &c->poll)) != 0) {
		kq_poll_unregister(kq, &c->poll);
		goto fail;
	}
	LIST_INSERT_HEAD(&ino_kqs, c, link);
	kq->ino = c;
	pthread_mutex_unlock(&ino_lock);
	return 0;
fail:
	ino_close_if_idle();
	pthread_mutex_unlock(&ino_lock);
	free(c);
	return err;
}

void
kq_ino_leave(struct kq_kqueue *kq)
{
	struct kq_ino_kq *c = kq->ino;

	if (c == NULL)
		return;
	pthread_mutex_lock(&ino_lock);
	/* ino_fd is open while we are on ino_kqs */
	kq_backend_detach(kq, &c->poll);
	kq_poll_unregister(kq, &c->poll);
	LIST_REMOVE(c, link);
	kq->ino = NULL;
	atomic_store(&kq->ino_mail, false);
	ino_close_if_idle();
	pthread_mutex_unlock(&ino_lock);
	free(c->mail);
	free(c);
}

/* ------------------------------------------------------------ watches */

int
kq_ino_add(const char *path, uint32_t mask)
{
	struct ino_wd *w;
	int wd;

	if (ino_fd < 0)
		return -EBADF;
	if ((wd = inotify_add_watch(ino_fd, path, mask | IN_MASK_ADD)) < 0)
		return -errno;
	if ((w = ino_find(wd)) == NULL) {
		if ((w = calloc(1, sizeof *w)) == NULL) {
			inotify_rm_watch(ino_fd, wd);
			return -ENOMEM;
		}
		w->wd = wd;
		LIST_INIT(&w->subs);
		RB_INSERT(ino_tree, &ino_wds, w);
	}
	w->mask |= mask;
	return wd;
}

void
kq_ino_unused(int wd)
{
	struct ino_wd *w = ino_find(wd);

	if (w == NULL || !LIST_EMPTY(&w->subs))
		return;
	inotify_rm_watch(ino_fd, wd);
	RB_REMOVE(ino_tree, &ino_wds, w);
	free(w);
}

void
kq_ino_subscribe(struct kq_ino_sub *s, struct kq_kqueue *kq, int wd,
    uint32_t mask)
{
	struct ino_wd *w = ino_find(wd);

	s->kq = kq;
	s->wd = wd;
	s->mask = mask;
	s->linked = w != NULL;
	if (w != NULL)
		LIST_INSERT_HEAD(&w->subs, s, link);
}

/*
 * inotify_add_watch by a path that turned out to name another inode (an fd
 * reused behind our back) replaced or created that inode's watch: put back
 * what it had, or drop what nobody asked for.
 */
static void
ino_stray(const char *path, int wd)
{
	struct ino_wd *other = ino_find(wd);

	if (other == NULL)
		inotify_rm_watch(ino_fd, wd);
	else if (inotify_add_watch(ino_fd, path, other->mask) != wd)
		other->mask = IN_ALL_EVENTS;	/* unknown: the next sync sets it */
}

/* Bring the kernel's mask of w to its subscribers' union (by path). */
static void
ino_sync(struct ino_wd *w, const char *path)
{
	struct kq_ino_sub *s;
	uint32_t want = 0;
	int wd;

	LIST_FOREACH(s, &w->subs, link)
		want |= s->mask;
	if (want == w->mask || path == NULL)
		return;		/* without a path a superset stays */
	wd = inotify_add_watch(ino_fd, path, want);
	if (wd == w->wd)
		w->mask = want;
	else if (wd >= 0)
		ino_stray(path, wd);
}

void
kq_ino_update(struct kq_ino_sub *s, uint32_t mask, const char *path)
{
	struct ino_wd *w;

	s->mask = mask;
	if (s->linked && (w = ino_find(s->wd)) != NULL)
		ino_sync(w, path);
}

void
kq_ino_unsubscribe(struct kq_ino_sub *s, const char *path)
{
	struct ino_wd *w;

	if (!s->linked)
		return;
	s->linked = false;
	LIST_REMOVE(s, link);
	if ((w = ino_find(s->wd)) == NULL)
		return;
	if (LIST_EMPTY(&w->subs))
		kq_ino_unused(w->wd);
	else
		ino_sync(w, path);
}

/* --------------------------------------------------------------- fork */

/*
 * The child inherits no kqueue, and kq_fdreg_fork_child() closed the
 * instance's fd.  Another thread may have been half-way through these
 * structures: forget them (the memory stays) and start afresh.
 */
void
kq_ino_fork_child(void)
{
	ino_fd = -1;
	RB_INIT(&ino_wds);
	LIST_INIT(&ino_kqs);
	pthread_mutex_init(&ino_lock, NULL);
}

__attribute__((constructor)) static void
ino_init(void)
{
	pthread_atfork(NULL, NULL, kq_ino_fork_child);
}
