/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * <sys/event.h> - the FreeBSD 14 kqueue/kevent API for Linux (libkqfree).
 *
 * Constants have FreeBSD's values; struct kevent is the FreeBSD 12+ layout.
 * Extensions: EV_FREEWATCH with its NOTE_FREE_* reasons, and kqfree_release().
 */
#ifndef KQFREE_SYS_EVENT_H
#define KQFREE_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

#define EVFILT_READ		(-1)
#define EVFILT_WRITE		(-2)
#define EVFILT_AIO		(-3)	/* POSIX AIO completion (not offered: EINVAL) */
#define EVFILT_VNODE		(-4)	/* changes to a file or directory */
#define EVFILT_PROC		(-5)	/* exit, fork and exec of a process id */
#define EVFILT_SIGNAL		(-6)	/* deliveries of a signal to this process */
#define EVFILT_TIMER		(-7)	/* one-shot and periodic timers */
#define EVFILT_PROCDESC		(-8)	/* exit of a process descriptor (a pidfd) */
#define EVFILT_FS		(-9)	/* mount table changes (not offered: EINVAL) */
#define EVFILT_LIO		(-10)	/* lio_listio completion (not offered: EINVAL) */
#define EVFILT_USER		(-11)	/* events the application triggers itself */
#define EVFILT_SENDFILE		(-12)	/* sendfile completion (not offered: EINVAL) */
#define EVFILT_EMPTY		(-13)	/* a socket's send queue has drained */
#define EVFILT_SYSCOUNT		13

struct kevent {
	uintptr_t	ident;		/* what is watched: fd, pid, signal, id */
	short		filter;		/* EVFILT_*: which kind of watch */
	unsigned short	flags;		/* EV_*: action in, state out */
	unsigned int	fflags;		/* NOTE_*: per-filter options */
	int64_t		data;		/* per-filter value (bytes, count...) */
	void		*udata;		/* the application's, returned as given */
	uint64_t	ext[4];		/* zeroed; reserved for extensions */
};

#define EV_SET(kevp_, a, b, c, d, e, f) do {		\
	*(kevp_) = (struct kevent){			\
	    .ident = (a),				\
	    .filter = (b),				\
	    .flags = (c),				\
	    .fflags = (d),				\
	    .data = (e),				\
	    .udata = (f),				\
	    .ext = {0},					\
	};						\
} while (0)

/* actions */
#define EV_ADD		0x0001		/* create or update the watch, enabled */
#define EV_DELETE	0x0002		/* remove the watch */
#define EV_ENABLE	0x0004		/* report the watch's events again */
#define EV_DISABLE	0x0008		/* keep the watch but report nothing */
#define EV_FORCEONESHOT	0x0100		/* make it one-shot and fire it now */
#define EV_KEEPUDATA	0x0200		/* leave the stored udata as it is */

/* flags */
#define EV_ONESHOT	0x0010		/* remove the watch after its first event */
#define EV_CLEAR	0x0020		/* reset the state once it is returned */
#define EV_RECEIPT	0x0040		/* answer every change with EV_ERROR */
#define EV_DISPATCH	0x0080		/* disable the watch after each event */

/* libkqfree extension: hand udata back when the watch dies (see kqfree(3)) */
#define EV_FREEWATCH	0x0400

#define EV_SYSFLAGS	0xF000		/* the kernel's own bits: ignored in */
#define EV_DROP		0x1000		/* internal use */
#define EV_FLAG1	0x2000		/* internal use */
#define EV_FLAG2	0x4000		/* internal use */

/* returned values */
#define EV_EOF		0x8000		/* the other end is gone (fflags: error) */
#define EV_ERROR	0x4000		/* a change failed: data holds errno */

/* fflags of an EV_FREEWATCH|EV_DELETE free notice: why the watch died */
#define NOTE_FREE_DELETE	0x0001	/* the application's EV_DELETE */
#define NOTE_FREE_CLOSE		0x0002	/* the watched fd was closed or replaced */
#define NOTE_FREE_UDATA		0x0004	/* a later EV_ADD replaced the udata */
#define NOTE_FREE_DROP		0x0008	/* the library dropped the knote */
#define NOTE_FREE_RELEASE	0x0010	/* kqfree_release() or kqueue teardown */

/* EVFILT_USER: how a change's fflags combine with the stored ones */
#define NOTE_FFNOP	0x00000000		/* keep the stored fflags */
#define NOTE_FFAND	0x40000000		/* stored &= given */
#define NOTE_FFOR	0x80000000		/* stored |= given */
#define NOTE_FFCOPY	0xc0000000		/* stored = given */
#define NOTE_FFCTRLMASK	0xc0000000		/* the combining bits above */
#define NOTE_FFLAGSMASK	0x00ffffff		/* the application's 24 bits */
#define NOTE_TRIGGER	0x01000000		/* fire the user event */

/* EVFILT_READ and EVFILT_WRITE */
#define NOTE_LOWAT	0x0001			/* fire only at data bytes or more */
#define NOTE_FILE_POLL	0x0002			/* ready whenever poll() says so */

/* EVFILT_VNODE: what happened to the file */
#define NOTE_DELETE	0x0001			/* its last name was unlinked */
#define NOTE_WRITE	0x0002			/* its contents were written */
#define NOTE_EXTEND	0x0004			/* it grew */
#define NOTE_ATTRIB	0x0008			/* mode, owner or times changed */
#define NOTE_LINK	0x0010			/* a hard link came or went */
#define NOTE_RENAME	0x0020			/* it was renamed */
#define NOTE_REVOKE	0x0040			/* its filesystem went away */
#define NOTE_OPEN	0x0080			/* someone opened it */
#define NOTE_CLOSE	0x0100			/* a read-only open of it closed */
#define NOTE_CLOSE_WRITE 0x0200			/* a writable open of it closed */
#define NOTE_READ	0x0400			/* someone read it */

/* EVFILT_PROC and EVFILT_PROCDESC: what the process did */
#define NOTE_EXIT	0x80000000		/* it ended: data is its wait status */
#define NOTE_FORK	0x40000000		/* it made a child */
#define NOTE_EXEC	0x20000000		/* it ran a new program */
#define NOTE_PCTRLMASK	0xf0000000		/* the event bits above */
#define NOTE_PDATAMASK	0x000fffff		/* where a pid fits */

/* EVFILT_PROC: following a process's descendants */
#define NOTE_TRACK	0x00000001		/* watch each new child as well */
#define NOTE_TRACKERR	0x00000002		/* a child could not be watched */
#define NOTE_CHILD	0x00000004		/* this event is a tracked child's */

/* EVFILT_TIMER: the unit of data, and absolute deadlines */
#define NOTE_SECONDS	0x00000001		/* data counts seconds */
#define NOTE_MSECONDS	0x00000002		/* data counts milliseconds (default) */
#define NOTE_USECONDS	0x00000004		/* data counts microseconds */
#define NOTE_NSECONDS	0x00000008		/* data counts nanoseconds */
#define NOTE_ABSTIME	0x00000010		/* data is a time since the epoch */

/* kqueuex() */
#define KQUEUE_CLOEXEC	0x00000001		/* the kqueue fd is not inherited by exec */

#ifdef __cplusplus
extern "C" {
#endif

int kqueue(void);
int kqueuex(unsigned int flags);
int kevent(int kq, const struct kevent *changelist, int nchanges,
    struct kevent *eventlist, int nevents, const struct timespec *timeout);

/* libkqfree: release every knote of kq now, queueing their free notices */
int kqfree_release(int kq);

#ifdef __cplusplus
}
#endif

#endif /* KQFREE_SYS_EVENT_H */
