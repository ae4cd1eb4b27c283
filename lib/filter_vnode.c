/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * EVFILT_VNODE, and the per-kqueue inotify watches EVFILT_READ uses to learn
 * that a regular file at EOF grew, on the process's one inotify instance
 * (inotify.c).
 *
 * A watch is added by the path /proc/self/fd/N: following that magic link
 * lands on the fd's inode, even an unlinked one, so no extra fd is kept per
 * knote.  inotify gives one watch descriptor per inode per instance, so all
 * knotes of this kqueue on one inode (different fds, different filters)
 * share a struct vn_watch, which is this kqueue's subscription to the wd
 * (its mask is the union of what they need; other kqueues subscribe to the
 * same wd with theirs).
 *
 * inotify says which kind of thing happened but not FreeBSD's details, so
 * the hints FreeBSD's VFS would have posted are derived when the events are
 * delivered (under kq->lock, from this kqueue's inotify mail: exactly the
 * events its own instance would have read), with one fstat of the inode
 * per batch.  A hint may carry several notes, and
 * filt_vfsvnode() gives a knote the whole hint when any of its notes was
 * asked for (a NOTE_WRITE watcher sees NOTE_EXTEND on an appending write):
 *   IN_MODIFY  size grew: NOTE_WRITE|NOTE_EXTEND (VOP_WRITE_POST); same
 *              size: NOTE_WRITE; shrank: NOTE_ATTRIB (only a truncate
 *              shrinks; FreeBSD reports truncation as a setattr)
 *   IN_ATTRIB  st_nlink fell: NOTE_DELETE (FreeBSD's vop_remove_post marks
 *              every unlink, and Linux reports the unlink of an open file
 *              only as IN_ATTRIB); rose: NOTE_LINK (vop_link_post); else
 *              NOTE_ATTRIB; a directory's link count moves only with
 *              NOTE_WRITE|NOTE_LINK (mkdir, rmdir, renames)
 *   directory entries (events carrying a name): NOTE_WRITE (create, link,
 *              unlink, symlink, mknod, rename within the directory);
 *              NOTE_WRITE|NOTE_LINK for mkdir, rmdir and a rename within
 *              the directory that replaced a directory;
 *              NOTE_WRITE|NOTE_EXTEND for a rename between directories,
 *              |NOTE_LINK when a directory moved, except on the directory
 *              it replaced one in (vop_rename_post); events about the files
 *              inside are not the directory's
 *   IN_MOVE_SELF NOTE_RENAME, IN_OPEN NOTE_OPEN, IN_CLOSE_WRITE
 *              NOTE_CLOSE_WRITE, IN_CLOSE_NOWRITE NOTE_CLOSE, IN_ACCESS
 *              NOTE_READ (files and directories: FIFO and device data does
 *              not pass VOP_READ/VOP_WRITE on FreeBSD), IN_UNMOUNT
 *              NOTE_REVOKE with EV_EOF
 * Size and link count are compared with what this knote saw last
 * (kn->u.vnode.size / nlink), mode/owner/mtime with what the watch saw last.
 * The accepted hints accumulate in kn->fflags until the core clears them
 * (EV_CLEAR) - without EV_CLEAR a triggered knote stays ready, as
 * filt_vfsvnode() is on FreeBSD.  A lost-events overflow (the kernel's,
 * or mail the shared instance could not allocate) compares every watched
 * inode with those baselines instead; a regular file whose mtime moved
 * was written (the stat that took the baseline makes the kernel's next
 * timestamp a fine-grained one).
 */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef PIDFS_MAGIC
#define PIDFS_MAGIC	0x50494446
#endif

/* Every watch carries this bit: inotify refuses an empty mask, and the
 * inode's final deletion is NOTE_DELETE whatever else was asked. */
#define VN_BASE_MASK	IN_DELETE_SELF
#define VN_DIRENT_MASK	(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)

struct vn_watch {
	RB_ENTRY(vn_watch) node;
	int wd;
	struct kq_ino_sub sub;	/* sub.mask: what this kqueue gets */
	uint32_t foreign;	/* other filters' needs, never narrowed */
	dev_t dev;
	ino_t ino;
	mode_t fmt;		/* st_mode & S_IFMT */
	/* attributes last seen, to tell a chmod from a link when inotify
	 * merged their two IN_ATTRIB events into one */
	mode_t mode;
	uid_t uid;
	gid_t gid;
	struct timespec mtim;
	LIST_HEAD(, kq_knote) knotes;
	LIST_HEAD(, vn_probe) probes;	/* subdirectories' NOTE_DELETE */
	/* one batch of events, folded before anything is delivered */
	struct vn_watch *pnext;
	uint32_t pmask;		/* inotify bits about the inode itself */
	unsigned pnotes;	/* one-note hints from directory entry events */
	unsigned phints;	/* VH_* from directory entry events */
	bool pending;
	bool overflow;		/* events lost: compare with the baselines */
	bool ignored;		/* the kernel dropped the watch */
	bool probe_check;	/* a subdirectory was removed */
};

/*
 * Linux tells a directory nothing when it is removed while open
 * (IN_DELETE_SELF waits for the last close), so a directory knote asking for
 * NOTE_DELETE also probes its parent: on IN_DELETE of a subdirectory there,
 * its own link count says whether it was the one removed.
 */
struct vn_probe {
	RB_ENTRY(vn_probe) node;	/* vn_state.probes, by knote */
	LIST_ENTRY(vn_probe) link;	/* parent->probes */
	struct kq_knote *kn;
	struct vn_watch *parent;	/* NULL once the parent's watch died */
};

RB_HEAD(vn_tree, vn_watch);
RB_HEAD(vn_probe_tree, vn_probe);

struct vn_state {
	struct vn_tree watches;
	struct vn_probe_tree probes;
};

static int
vn_cmp(const struct vn_watch *a, const struct vn_watch *b)
{
	return a->wd < b->wd ? -1 : a->wd > b->wd;
}

static int
vn_probe_cmp(const struct vn_probe *a, const struct vn_probe *b)
{
	uintptr_t x = (uintptr_t)a->kn, y = (uintptr_t)b->kn;

	return x < y ? -1 : x > y;
}

/* <bsd/sys/tree.h> spells its attribute the BSD way */
#define __unused __attribute__((__unused__))
RB_GENERATE_STATIC(vn_tree, vn_watch, node, vn_cmp)
RB_GENERATE_STATIC(vn_probe_tree, vn_probe, node, vn_probe_cmp)
#undef __unused

static void vn_mail(struct kq_kqueue *, const char *, size_t);

static struct vn_watch *
vn_find(struct vn_state *st, int wd)
{
	struct vn_watch key;

	key.wd = wd;
	return RB_FIND(vn_tree, &st->watches, &key);
}

static struct vn_state *
vn_state_get(struct kq_kqueue *kq, int *err)
{
	struct vn_state *st = kq->vnode_priv;

	if (st != NULL)
		return st;
	if ((st = calloc(1, sizeof *st)) == NULL) {
		*err = ENOMEM;
		return NULL;
	}
	RB_INIT(&st->watches);
	RB_INIT(&st->probes);
	if ((*err = kq_ino_join(kq, vn_mail)) != 0) {
		free(st);
		return NULL;
	}
	kq->vnode_priv = st;
	return st;
}

/* The last watch is gone: leave the inotify instance. */
static void
vn_state_put(struct kq_kqueue *kq)
{
	struct vn_state *st = kq->vnode_priv;

	if (st == NULL || !RB_EMPTY(&st->watches) || !RB_EMPTY(&st->probes))
		return;
	kq_ino_leave(kq);
	free(st);
	kq->vnode_priv = NULL;
}

#define VN_PATH_MAX	(sizeof "/proc/self/fd//.." + 11)

static void
vn_path(char *path, int fd)
{
	snprintf(path, VN_PATH_MAX, "/proc/self/fd/%d", fd);
}

/* What a VNODE knote needs from inotify for the notes it asked for. */
static uint32_t
vn_mask_for(unsigned sf, mode_t fmt)
{
	bool reg = fmt == S_IFREG, dir = fmt == S_IFDIR;
	uint32_t m = VN_BASE_MASK;

	if (sf & (NOTE_DELETE | NOTE_LINK))
		m |= IN_ATTRIB;
	if ((sf & NOTE_LINK) && dir)
		m |= VN_DIRENT_MASK;
	if (sf & NOTE_ATTRIB)
		m |= IN_ATTRIB | (reg ? IN_MODIFY : 0);	/* truncate */
	/* FIFO and device data moves through the pipe/driver code, not
	 * VOP_WRITE/VOP_READ, so FreeBSD has no WRITE/EXTEND/READ there */
	if (sf & (NOTE_WRITE | NOTE_EXTEND)) {
		if (reg)
			m |= IN_MODIFY;
		else if (dir)
			m |= (sf & NOTE_WRITE) ? VN_DIRENT_MASK :
			    IN_MOVED_FROM | IN_MOVED_TO;
	}
	/* a moved directory probes its new parent */
	if ((sf & NOTE_RENAME) || ((sf & NOTE_DELETE) && dir))
		m |= IN_MOVE_SELF;
	if (sf & NOTE_OPEN)
		m |= IN_OPEN;
	if (sf & NOTE_CLOSE)
		m |= IN_CLOSE_NOWRITE;
	if (sf & NOTE_CLOSE_WRITE)
		m |= IN_CLOSE_WRITE;
	if ((sf & NOTE_READ) && (reg || dir))
		m |= IN_ACCESS;
	return m;
}

static uint32_t
vn_union(const struct vn_watch *w)
{
	const struct kq_knote *kn;
	uint32_t m = VN_BASE_MASK | w->foreign;

	LIST_FOREACH(kn, &w->knotes, u.vnode.wdlink)
		if (kn->filter == EVFILT_VNODE)
			m |= vn_mask_for(kn->sfflags, w->fmt);
	if (!LIST_EMPTY(&w->probes))
		m |= IN_DELETE;
	return m;
}

static bool
vn_watch_unused(const struct vn_watch *w)
{
	return LIST_EMPTY(&w->knotes) && LIST_EMPTY(&w->probes);
}

/*
 * An fd of the watched inode to stat or to re-add the watch by.  A knote's
 * fd may be closed (its knote is released at the next drain) or already
 * reused for another file, hence the checks.
 */
static int
vn_watch_fd(const struct vn_watch *w, struct stat *sb)
{
	const struct kq_knote *kn;
	struct stat tmp;

	if (sb == NULL)
		sb = &tmp;
	LIST_FOREACH(kn, &w->knotes, u.vnode.wdlink) {
		int fd = (int)kn->ident;
		if (kn->fdn != NULL && atomic_load(&kn->fdn->closed))
			continue;
		if (fstat(fd, sb) == 0 && sb->st_dev == w->dev &&
		    sb->st_ino == w->ino)
			return fd;
	}
	return -1;
}

/* Make this kqueue's subscription the union again (knotes came, went or
 * changed); the kernel's mask follows through an fd of the inode. */
static void
vn_watch_sync(struct kq_kqueue *kq, struct vn_watch *w)
{
	uint32_t want = vn_union(w);
	char path[VN_PATH_MAX];
	int fd;

	(void)kq;
	if (want == w->sub.mask)
		return;
	if ((fd = vn_watch_fd(w, NULL)) >= 0)
		vn_path(path, fd);
	kq_ino_lock();
	kq_ino_update(&w->sub, want, fd >= 0 ? path : NULL);
	kq_ino_unlock();
}

/* Refresh the baselines NOTE_EXTEND / NOTE_LINK / NOTE_DELETE compare with. */
static void
vn_baseline(struct kq_knote *kn, const struct stat *sb)
{
	kn->u.vnode.size = sb->st_size;
	kn->u.vnode.nlink = sb->st_nlink;
}

static void
vn_attr_baseline(struct vn_watch *w, const struct stat *sb)
{
	w->mode = sb->st_mode;
	w->uid = sb->st_uid;
	w->gid = sb->st_gid;
	w->mtim = sb->st_mtim;
}

/* chmod, chown or utimes since the last look (mtime only when no write
 * can have moved it) */
static bool
vn_attr_changed(const struct vn_watch *w, const struct stat *sb, bool mtime)
{
	return sb->st_mode != w->mode || sb->st_uid != w->uid ||
	    sb->st_gid != w->gid || (mtime &&
	    (sb->st_mtim.tv_sec != w->mtim.tv_sec ||
	    sb->st_mtim.tv_nsec != w->mtim.tv_nsec));
}

/*
 * The watch of the inode path names (created, or widened with IN_MASK_ADD:
 * it may already be watched for other knotes).  sb describes that inode.
 */
static struct vn_watch *
vn_watch_get(struct kq_kqueue *kq, const char *path, uint32_t mask,
    const struct stat *sb, int *err)
{
	struct vn_state *st = kq->vnode_priv;
	struct vn_watch *w;
	int wd;

	kq_ino_lock();
	if ((wd = kq_ino_add(path, mask)) < 0) {
		kq_ino_unlock();
		*err = -wd;
		return NULL;
	}
	if ((w = vn_find(st, wd)) == NULL) {
		if ((w = calloc(1, sizeof *w)) == NULL) {
			kq_ino_unused(wd);
			kq_ino_unlock();
			*err = ENOMEM;
			return NULL;
		}
		w->wd = wd;
		kq_ino_subscribe(&w->sub, kq, wd, mask);
		w->dev = sb->st_dev;
		w->ino = sb->st_ino;
		w->fmt = sb->st_mode & S_IFMT;
		vn_attr_baseline(w, sb);
		LIST_INIT(&w->knotes);
		LIST_INIT(&w->probes);
		RB_INSERT(vn_tree, &st->watches, w);
	}
	w->sub.mask |= mask;	/* kq_ino_add gave the kernel these */
	kq_ino_unlock();
	return w;
}

/* Put kn on the watch of fd's inode. */
static int
vn_link(struct kq_kqueue *kq, struct kq_knote *kn, int fd, uint32_t mask,
    const struct stat *sb)
{
	char path[VN_PATH_MAX];
	struct vn_watch *w;
	struct stat tmp;
	int err = 0;

	if (vn_state_get(kq, &err) == NULL)
		return err;
	if (sb == NULL) {
		if (fstat(fd, &tmp) < 0)
			memset(&tmp, 0, sizeof tmp);
		sb = &tmp;
	}
	vn_path(path, fd);
	if ((w = vn_watch_get(kq, path, mask, sb, &err)) == NULL) {
		vn_state_put(kq);
		return err;
	}
	if (kn->filter != EVFILT_VNODE)
		w->foreign |= mask;
	LIST_INSERT_HEAD(&w->knotes, kn, u.vnode.wdlink);
	kn->u.vnode.wd = w->wd;
	return 0;
}

/* fd: one of the inode (or -1), to narrow the kernel's mask by if other
 * kqueues still watch it. */
static void
vn_watch_free(struct kq_kqueue *kq, struct vn_watch *w, int fd)
{
	char path[VN_PATH_MAX];

	if (fd >= 0)
		vn_path(path, fd);
	kq_ino_lock();
	kq_ino_unsubscribe(&w->sub, fd >= 0 ? path : NULL);
	kq_ino_unlock();
	RB_REMOVE(vn_tree, &((struct vn_state *)kq->vnode_priv)->watches, w);
	free(w);
}

/* Nothing needs w any more: drop it (later, if a batch is looking at it). */
static void
vn_watch_release(struct kq_kqueue *kq, struct vn_watch *w, int fd)
{
	if (!vn_watch_unused(w)) {
		if (!kq->dead)
			vn_watch_sync(kq, w);
		return;
	}
	if (w->pending)
		return;		/* vn_batch frees it */
	vn_watch_free(kq, w, fd);
}

static struct vn_probe *
vn_probe_find(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct vn_state *st = kq->vnode_priv;
	struct vn_probe key;

	if (st == NULL)
		return NULL;
	key.kn = kn;
	return RB_FIND(vn_probe_tree, &st->probes, &key);
}

/* Best effort: without a probe, rmdir is reported when inotify can. */
static void
vn_probe_add(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct vn_state *st = kq->vnode_priv;
	int fd = (int)kn->ident, err;
	char path[VN_PATH_MAX];
	struct vn_probe *pr;
	struct vn_watch *w;
	struct stat sb;

	if (st == NULL || vn_probe_find(kq, kn) != NULL ||
	    fstatat(fd, "..", &sb, 0) < 0 || (pr = calloc(1, sizeof *pr)) == NULL)
		return;
	snprintf(path, sizeof path, "/proc/self/fd/%d/..", fd);
	if ((w = vn_watch_get(kq, path, IN_DELETE, &sb, &err)) == NULL) {
		free(pr);
		return;
	}
	pr->kn = kn;
	pr->parent = w;
	LIST_INSERT_HEAD(&w->probes, pr, link);
	RB_INSERT(vn_probe_tree, &st->probes, pr);
}

static void
vn_probe_del(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct vn_probe *pr = vn_probe_find(kq, kn);

	if (pr == NULL)
		return;
	RB_REMOVE(vn_probe_tree, &((struct vn_state *)kq->vnode_priv)->probes, pr);
	if (pr->parent != NULL) {
		LIST_REMOVE(pr, link);
		vn_watch_release(kq, pr->parent, -1);
	}
	free(pr);
}

static bool
vn_wants_probe(const struct kq_knote *kn, const struct vn_watch *w)
{
	return w != NULL && w->fmt == S_IFDIR && (kn->sfflags & NOTE_DELETE);
}

int
kq_inotify_watch(struct kq_kqueue *kq, struct kq_knote *kn, int fd, uint32_t mask)
{
	char path[VN_PATH_MAX];
	struct vn_watch *w;
	int wd;

	if (kn->u.vnode.wd > 0 && kq->vnode_priv != NULL &&
	    (w = vn_find(kq->vnode_priv, kn->u.vnode.wd)) != NULL) {
		if (kn->filter != EVFILT_VNODE && (mask & ~w->foreign) == 0)
			return 0;
		vn_path(path, fd);
		kq_ino_lock();
		if ((wd = kq_ino_add(path, mask)) == w->wd) {
			w->sub.mask |= mask;
			if (kn->filter != EVFILT_VNODE)
				w->foreign |= mask;
			kq_ino_unlock();
			return 0;
		}
		/* fd names another inode now: a watch nobody wants goes */
		if (wd >= 0)
			kq_ino_unused(wd);
		kq_ino_unlock();
		kq_inotify_unwatch(kq, kn);
	}
	return vn_link(kq, kn, fd, mask, NULL);
}

void
kq_inotify_unwatch_held(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct vn_watch *w = NULL;
	int fd;

	/* READ on a socket or pipe (every detach of one comes here): no
	 * watch was ever made */
	if (kq->vnode_priv == NULL) {
		kn->u.vnode.wd = -1;
		return;
	}
	if (kn->u.vnode.wd > 0)
		w = vn_find(kq->vnode_priv, kn->u.vnode.wd);
	kn->u.vnode.wd = -1;
	if (w != NULL) {
		/* while kn is still on it: its fd may be the last one here */
		fd = vn_watch_fd(w, NULL);
		LIST_REMOVE(kn, u.vnode.wdlink);
		vn_watch_release(kq, w, fd);
	}
	vn_state_put(kq);
}

/* ----------------------------------------------------------- reading events */

/*
 * FreeBSD's hints of more than one note, as a set.  A one-note hint is
 * accepted exactly when its note was asked for, so those travel as plain
 * NOTE_* bits; these must be accepted or refused whole.
 */
#define VH_WE		0x01	/* NOTE_WRITE|NOTE_EXTEND */
#define VH_WL		0x02	/* NOTE_WRITE|NOTE_LINK */
#define VH_WEL		0x04	/* NOTE_WRITE|NOTE_EXTEND|NOTE_LINK */
/* a directory renamed, whose hint depends on whether it replaced one:
 * told by the watched directory's link count when the batch is delivered */
#define VH_DIR_IN	0x08	/* moved in: VH_WEL, or VH_WE */
#define VH_DIR_SAME	0x10	/* renamed within: NOTE_WRITE, or VH_WL */

static const unsigned vn_hint_notes[] = {
	NOTE_WRITE | NOTE_EXTEND,
	NOTE_WRITE | NOTE_LINK,
	NOTE_WRITE | NOTE_EXTEND | NOTE_LINK,
};

/* What filt_vfsvnode() keeps of these hints for a knote asking for sf. */
static unsigned
vn_accept(unsigned notes, unsigned hints, unsigned sf)
{
	unsigned out = notes & sf;
	size_t i;

	for (i = 0; i < sizeof vn_hint_notes / sizeof vn_hint_notes[0]; i++)
		if ((hints & (1u << i)) && (vn_hint_notes[i] & sf))
			out |= vn_hint_notes[i];
	return out;
}

/* FreeBSD's hints on a directory for one event naming an entry in it. */
static void
vn_dirent_hints(const struct inotify_event *ev, const char *buf, size_t len,
    unsigned *notes, unsigned *hints)
{
	const struct inotify_event *o;
	bool dir = (ev->mask & IN_ISDIR) != 0;
	uint32_t partner;
	size_t off;

	if (ev->mask & (IN_CREATE | IN_DELETE)) {
		if (dir)
			*hints |= VH_WL;	/* mkdir, rmdir */
		else
			*notes |= NOTE_WRITE;
		return;
	}
	if (!(ev->mask & (IN_MOVED_FROM | IN_MOVED_TO)))
		return;	/* about the entry's own file, not the directory */
	/*
	 * A rename inside one watched directory queues both halves on its wd;
	 * a half without its partner here came from or went to a directory
	 * this kqueue does not watch, which is another directory.
	 */
	partner = (ev->mask & IN_MOVED_FROM) ? IN_MOVED_TO : IN_MOVED_FROM;
	for (off = 0; off < len; off += sizeof *o + o->len) {
		o = (const struct inotify_event *)(buf + off);
		if ((o->mask & partner) && o->cookie == ev->cookie)
			break;
	}
	if (off < len && o->wd == ev->wd) {
		*notes |= NOTE_WRITE;
		if (dir)
			*hints |= VH_DIR_SAME;
	} else if (!dir)
		*hints |= VH_WE;
	else if (ev->mask & IN_MOVED_FROM)
		*hints |= VH_WEL;
	else
		*hints |= VH_DIR_IN;
}

/*
 * A directory renamed onto another one removed it, which the watched
 * directory's link count shows (fell by one within it, did not rise when
 * moved in).  Without a count to look at, assume nothing was replaced.
 */
static unsigned
vn_dir_hints(unsigned hints, const struct kq_knote *kn, const struct stat *sb)
{
	/* a filesystem counting subdirectories gives a directory 2 or more */
	bool counted = sb != NULL && sb->st_nlink >= 2;

	if (hints & VH_DIR_IN)
		hints |= (counted && sb->st_nlink <= kn->u.vnode.nlink) ?
		    VH_WE : VH_WEL;
	if ((hints & VH_DIR_SAME) && counted &&
	    sb->st_nlink < kn->u.vnode.nlink)
		hints |= VH_WL;
	return hints;
}

/* The notes the folded batch gives one VNODE knote. */
static unsigned
vn_notes(struct vn_watch *w, struct kq_knote *kn, const struct stat *sb)
{
	uint32_t m = w->pmask;
	unsigned h = w->pnotes, hints = w->phints;

	if (m & IN_MOVE_SELF)
		h |= NOTE_RENAME;
	if (m & IN_DELETE_SELF)
		h |= NOTE_DELETE;
	if (m & IN_OPEN)
		h |= NOTE_OPEN;
	if (m & IN_CLOSE_WRITE)
		h |= NOTE_CLOSE_WRITE;
	if (m & IN_CLOSE_NOWRITE)
		h |= NOTE_CLOSE;
	if ((m & IN_ACCESS) && (w->fmt == S_IFREG || w->fmt == S_IFDIR))
		h |= NOTE_READ;
	if (m & IN_UNMOUNT)
		h |= NOTE_REVOKE;
	if (sb == NULL) {
		/* no open fd to look through: say what inotify said */
		if (m & IN_ATTRIB)
			h |= NOTE_ATTRIB;
		if ((m & IN_MODIFY) && w->fmt == S_IFREG)
			h |= NOTE_WRITE;
		return vn_accept(h, vn_dir_hints(hints, kn, NULL), kn->sfflags);
	}
	/* lost events: a write that kept the size shows only in mtime */
	bool mtime_moved = sb->st_mtim.tv_sec != w->mtim.tv_sec ||
	    sb->st_mtim.tv_nsec != w->mtim.tv_nsec;
	if (w->fmt == S_IFREG && ((m & IN_MODIFY) || (w->overflow &&
	    (sb->st_size != kn->u.vnode.size || mtime_moved)))) {
		if (sb->st_size > kn->u.vnode.size)
			hints |= VH_WE;
		else if (sb->st_size < kn->u.vnode.size)
			h |= NOTE_ATTRIB;
		else
			h |= NOTE_WRITE;
	}
	if ((m & IN_ATTRIB) || w->overflow) {
		/* a directory gains and loses links only with NOTE_WRITE
		 * in the same hint (its subdirectories' ".." entries) */
		if (sb->st_nlink != kn->u.vnode.nlink && w->fmt == S_IFDIR &&
		    sb->st_nlink > 0)
			hints |= VH_WL;
		else if (sb->st_nlink < kn->u.vnode.nlink)
			h |= NOTE_DELETE;
		else if (sb->st_nlink > kn->u.vnode.nlink)
			h |= NOTE_LINK;
		else if (m & IN_ATTRIB)
			h |= NOTE_ATTRIB;
		/* FIFO and device writes move mtime silently */
		if (vn_attr_changed(w, sb, !(m & IN_MODIFY) && !w->overflow &&
		    (w->fmt == S_IFREG || w->fmt == S_IFDIR)))
			h |= NOTE_ATTRIB;
	}
	return vn_accept(h, vn_dir_hints(hints, kn, sb), kn->sfflags);
}

/* A subdirectory of w was removed: was it a probing directory? */
static void
vn_probe_check(struct kq_kqueue *kq, struct vn_watch *w)
{
	struct vn_probe *pr;
	struct kq_knote *kn;
	struct stat sb;

	LIST_FOREACH(pr, &w->probes, link) {
		kn = pr->kn;
		if (kn->u.vnode.nlink == 0 ||
		    (kn->fdn != NULL && atomic_load(&kn->fdn->closed)) ||
		    fstat((int)kn->ident, &sb) < 0 || sb.st_nlink != 0)
			continue;
		kn->u.vnode.nlink = 0;
		kn->fflags |= NOTE_DELETE & kn->sfflags;
		if (kn->fflags != 0)
			kq_knote_activate(kq, kn);
	}
}

static void
vn_deliver(struct kq_kqueue *kq, struct vn_watch *w)
{
	struct kq_knote *kn;
	struct vn_probe *pr;
	struct stat sb;
	bool have_sb = false;

	/* entry changes move a directory's link count and mtime: look too,
	 * so a later IN_ATTRIB is not taken for a link change */
	if ((w->pmask & (IN_MODIFY | IN_ATTRIB)) || w->pnotes || w->phints ||
	    w->overflow)
		have_sb = vn_watch_fd(w, &sb) >= 0;
	LIST_FOREACH(kn, &w->knotes, u.vnode.wdlink) {
		if (kn->filter != EVFILT_VNODE) {
			/* READ at EOF: its event() looks at the size again
			 * (not for what happens to a directory's files) */
			if (w->pmask != 0 || w->overflow)
				kq_knote_activate(kq, kn);
			continue;
		}
		kn->fflags |= vn_notes(w, kn, have_sb ? &sb : NULL);
		if (have_sb)
			vn_baseline(kn, &sb);
		if (w->pmask & IN_UNMOUNT)
			kn->flags |= EV_EOF;
		if (kn->fflags != 0 || (kn->flags & EV_EOF))
			kq_knote_activate(kq, kn);
	}
	if (have_sb)
		vn_attr_baseline(w, &sb);
	if (w->probe_check || w->overflow)
		vn_probe_check(kq, w);
	if (w->ignored) {
		while ((kn = LIST_FIRST(&w->knotes)) != NULL) {
			LIST_REMOVE(kn, u.vnode.wdlink);
			kn->u.vnode.wd = -1;
		}
		while ((pr = LIST_FIRST(&w->probes)) != NULL) {
			LIST_REMOVE(pr, link);
			pr->parent = NULL;
		}
	}
}

/* w's directory moved: its probes follow it to the new parent. */
static void
vn_reprobe(struct kq_kqueue *kq, struct vn_watch *w)
{
	struct kq_knote *kn;

	LIST_FOREACH(kn, &w->knotes, u.vnode.wdlink) {
		if (vn_probe_find(kq, kn) == NULL)
			continue;
		vn_probe_del(kq, kn);
		vn_probe_add(kq, kn);
	}
}

static void
vn_mark(struct vn_watch *w, struct vn_watch **pending)
{
	if (w->pending)
		return;
	w->pending = true;
	w->pnext = *pending;
	*pending = w;
}

/*
 * Fold one read()'s worth of events per watch, then deliver.  Watches of
 * the batch are freed only at its end (re-probing may drop one).
 */
static void
vn_batch(struct kq_kqueue *kq, struct vn_state *st, const char *buf, size_t len)
{
	const struct inotify_event *ev;
	struct vn_watch *w, *pending = NULL;
	size_t off;

	for (off = 0; off + sizeof *ev <= len; off += sizeof *ev + ev->len) {
		ev = (const struct inotify_event *)(buf + off);
		if (ev->mask & IN_Q_OVERFLOW) {
			RB_FOREACH(w, vn_tree, &st->watches) {
				w->overflow = true;
				vn_mark(w, &pending);
			}
			continue;
		}
		if ((w = vn_find(st, ev->wd)) == NULL)
			continue;	/* a watch we removed */
		vn_mark(w, &pending);
		if (ev->len > 0) {
			vn_dirent_hints(ev, buf, len, &w->pnotes, &w->phints);
			if ((ev->mask & (IN_DELETE | IN_ISDIR)) ==
			    (IN_DELETE | IN_ISDIR))
				w->probe_check = true;
		} else {
			w->pmask |= ev->mask;
		}
		if (ev->mask & IN_IGNORED)
			w->ignored = true;
	}
	for (w = pending; w != NULL; w = w->pnext)
		vn_deliver(kq, w);
	for (w = pending; w != NULL; w = w->pnext)
		if ((w->pmask & IN_MOVE_SELF) && !w->ignored)
			vn_reprobe(kq, w);
	while ((w = pending) != NULL) {
		pending = w->pnext;
		w->pending = w->overflow = w->probe_check = false;
		w->pmask = 0;
		w->pnotes = w->phints = 0;
		if (w->ignored)
			vn_watch_free(kq, w, -1);	/* the kernel's is gone */
		else if (vn_watch_unused(w))
			vn_watch_release(kq, w, -1);
	}
}

/* Events for this kqueue's watches (inotify.c routed them here). */
static void
vn_mail(struct kq_kqueue *kq, const char *buf, size_t len)
{
	struct vn_state *st = kq->vnode_priv;

	if (st != NULL)
		vn_batch(kq, st, buf, len);
}

/* ------------------------------------------------------------ filterops */

/* FreeBSD takes vnodes (files, directories, devices, named FIFOs) only. */
static int
vn_check_fd(int fd, struct stat *sb)
{
	struct statfs sfs;

	if (fstat(fd, sb) < 0)
		return errno;
	switch (sb->st_mode & S_IFMT) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
		break;
	default:		/* sockets, anonymous inodes (epoll, eventfd...) */
		return EINVAL;
	}
	/* pipe(), pidfds: not named in any filesystem */
	if (fstatfs(fd, &sfs) == 0 &&
	    (sfs.f_type == PIPEFS_MAGIC || sfs.f_type == SOCKFS_MAGIC ||
	    sfs.f_type == ANON_INODE_FS_MAGIC || sfs.f_type == PIDFS_MAGIC))
		return EINVAL;
	return 0;
}

static int
filt_vnode_attach(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *kev)
{
	int fd = (int)kn->ident, err;
	struct stat sb;

	(void)kev;
	if ((err = vn_check_fd(fd, &sb)) != 0)
		return err;
	if ((err = vn_link(kq, kn, fd,
	    vn_mask_for(kn->sfflags, sb.st_mode & S_IFMT), &sb)) != 0)
		return err;
	vn_baseline(kn, &sb);
	if (S_ISDIR(sb.st_mode) && (kn->sfflags & NOTE_DELETE))
		vn_probe_add(kq, kn);
	/* a triggered knote without EV_CLEAR is reported at every scan */
	kn->status |= KN_REQUEUE;
	return 0;
}

static void
filt_vnode_detach(struct kq_kqueue *kq, struct kq_knote *kn)
{
	vn_probe_del(kq, kn);
	kq_inotify_unwatch(kq, kn);
}

static int
filt_vnode_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	(void)kq;
	if (kn->fflags == 0 && !(kn->flags & EV_EOF))
		return 0;
	ev->fflags = kn->fflags;
	ev->data = 0;
	if (kn->flags & EV_EOF) {
		/* the filesystem is gone: last report (FreeBSD's knlist_clear) */
		kn->flags |= EV_ONESHOT;
		ev->flags |= EV_EOF | EV_ONESHOT;
	}
	return 1;
}

/* New fflags (EV_ADD again, or any change: FreeBSD copies fflags then). */
static void
filt_vnode_rearm(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct vn_watch *w = NULL;
	struct kq_knote *o;
	struct stat sb;
	uint32_t had;

	if (kn->u.vnode.wd > 0 && kq->vnode_priv != NULL)
		w = vn_find(kq->vnode_priv, kn->u.vnode.wd);
	if (w != NULL) {
		had = w->sub.mask;
		vn_watch_sync(kq, w);
		/* nothing reported size or link changes until now */
		if ((~had & w->sub.mask &
		    (IN_MODIFY | IN_ATTRIB | VN_DIRENT_MASK)) &&
		    vn_watch_fd(w, &sb) >= 0) {
			LIST_FOREACH(o, &w->knotes, u.vnode.wdlink)
				if (o->filter == EVFILT_VNODE)
					vn_baseline(o, &sb);
			vn_attr_baseline(w, &sb);
		}
		if (!vn_wants_probe(kn, w))
			vn_probe_del(kq, kn);
		else if (kn->u.vnode.nlink != 0)
			vn_probe_add(kq, kn);
	}
	/* FreeBSD runs the filter after every change: what accumulated
	 * (while disabled, say) is still there to report */
	if (kn->fflags != 0 || (kn->flags & EV_EOF))
		kq_knote_activate(kq, kn);
}

const struct kq_filterops kq_filt_vnode = {
	.filter = EVFILT_VNODE,
	.isfd = true,
	.attach = filt_vnode_attach,
	.detach = filt_vnode_detach,
	.event = filt_vnode_event,
	.rearm = filt_vnode_rearm,
};
