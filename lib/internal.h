/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libkqfree private contracts.  Read this before touching any lib/ file.
 *
 * LAYERS (every arrow points down)
 *   kqueue.c   kqueue()/kqueuex(), aliases and liveness, kqfree_release(),
 *              teardown, fork
 *   kevent.c   kevent(): changelist (EV_ERROR, RECEIPT, coalescing), scan, copy-out
 *   fdreg.c    who owns each descriptor number: watchers told of a close,
 *              the library's own fds, the close family's interposition.  It
 *              knows nothing above it: it only calls watchers' callbacks
 *   knote.c    knote lookup, activation queue, THE release function, free notices
 *   filter_*.c one struct kq_filterops each; the core never switches on filter
 *   inotify.c  the process's one inotify instance: wds, their subscribers
 *              (filter_vnode.c's per-kqueue watches), routing events to them
 *   procconn.c the netlink proc connector socket (filter_proc.c's source of
 *              forks, execs and exits of processes that are not ours)
 *   backend_epoll.c  the only file that calls epoll_*() on a kqueue's set,
 *              and the switch to the other backend (BACKENDS below)
 *   backend_uring.c  the io_uring backend (HAVE_LIBURING)
 *
 * OBJECTS
 *   struct kq_kqueue  one per kqueue(); the library waits on its own
 *                     descriptor of the epoll set (kq->fd); the application
 *                     holds aliases of it (see DESCRIPTORS), so the kqueue is
 *                     pollable.  One mutex (kq->lock) guards everything in it.
 *   struct kq_knote   one per (filter, ident) in a kqueue: on its fd's node
 *                     (isfd filters) or in the hash kq->khash (the others);
 *                     sized by its filter (KNOTE SIZES below).
 *   struct kq_poll    anything registered in the epoll set: a watched user fd
 *                     (inside struct kq_fdnode), the wake eventfd, the timerfd
 *                     (io_uring: a ring timeout, no fd), a pidfd...  epoll's data is a HANDLE (slot index and
 *                     generation), never a pointer, so a stale epoll event that
 *                     another thread collected before a delete can never touch
 *                     freed memory: kq_poll_lookup() returns NULL for it.
 *   struct kq_fdnode  per (kqueue, user fd): the fd's epoll registration plus
 *                     every knote whose ident is that fd (filterops.isfd).  It
 *                     is what the fd registry links, and what a close() kills.
 *
 * KNOTE LIFECYCLE
 *   kq_knote_alloc -> kq_knote_insert -> fop->attach ->
 *   (activate / scan / touch)* ->
 *   kq_knote_release(kq, kn, reason, fired)   <- the ONE place a knote dies.
 *   release: fop->detach, unlink from tree/queue/fdnode, and, if the knote
 *   holds an EV_FREEWATCH reference: either marks the event being returned
 *   (fired != NULL: flags |= EV_FREEWATCH) or turns the knote's memory into a
 *   free notice on kq->notices (no allocation, so it cannot fail).  Notices
 *   are returned first by the next scan, in order.
 *
 * ACTIVATION / SCAN (FreeBSD's model)
 *   A source that sees readiness calls kq_knote_activate(kn): the knote goes
 *   on kq->active once (KN_QUEUED).  The scan pops it, calls fop->event() to
 *   fill data/fflags/EOF (0 = not ready after all: dropped), copies it out,
 *   then: ONESHOT -> release(fired); DISPATCH -> disable; CLEAR -> fop->clear
 *   / counters reset; otherwise a level knote is requeued only if its source
 *   will not report again by itself (KN_REQUEUE: regular files, USER without
 *   EV_CLEAR, level knotes on an edge-triggered fd).  Level knotes on a
 *   level-triggered epoll registration are not requeued: epoll re-reports.
 *   Timers are the exception to activation by the source: the timerfd (on
 *   io_uring the ring timeout, BACKENDS) only says which are due (kq->timer_due), and the scan expires them into the
 *   queue as it has room (kq_timer_expire_due), so that a hundred thousand
 *   due timers are not queued, then walked again, knote by knote.
 *   A scan that starts with something queued or due looks at epoll first,
 *   so that what is ready there does not wait behind it; not when only
 *   timers are due and nothing but the wake fd and the timerfd is
 *   registered (kevent.c, backlog_alone): nothing could be ready there.
 *   While kq->active or kq->notices is non-empty, or a timer is due and not
 *   expired (kq_timer_backlog), the wake eventfd is kept
 *   readable, so the kqueue (epoll) fd polls readable; activations inside a
 *   call cost no syscall, only kq_update_wake() at its end touches the fd.
 *   The edge it makes due is written after kq->lock is let go: every hold
 *   that calls kq_update_wake() ends with kq_unlock(), never a bare unlock
 *   (a sleeper woken while the lock is held would only block on it).  An
 *   edge due but not yet written is counted (kq->wake_owed): a kevent()
 *   that empties the queue meanwhile cannot defuse it, and leaves that to
 *   its writer, which looks again under the lock once the edge is in.  So
 *   the fd may lag a trigger by the rest of that trigger's kevent() call.
 *   It may also poll readable once with nothing queued: epoll re-queues an
 *   edge-triggered item that is woken while a wait is collecting it (a
 *   write racing the scan's epoll_wait); the next kevent() takes it.
 *   Knotes nothing wakes (EVFILT_EMPTY) are KN_POLLED: re-activated on every
 *   pass of the scan, whose wait is then capped at KQ_POLL_NS.
 *
 * CHANGE COALESCING
 *   Filters say what they want from epoll by setting kq_poll.want and calling
 *   kq_backend_update(); nothing reaches the kernel until kq_backend_flush(),
 *   which runs once after the changelist and before waiting, and issues at most
 *   one epoll_ctl per dirty registration (none if want == armed).  A new user
 *   fd is added at once (kq_backend_attach) because epoll's answer (EBADF,
 *   EPERM for regular files) decides the knote's mode.  A new, renewed or
 *   changed fd knote whose registration stays edge-triggered as it was is
 *   queued for the scan to ask (kq_fdnode_knote_changed): epoll makes no new
 *   edge for data that was there before, and FreeBSD asks at once.
 *   EV_DELETE immediately followed by EV_ADD of the same fd knote (the
 *   rearm idiom) renews the knote in place (kevent.c, renew_knote).
 *
 * DESCRIPTORS (who owns which number)
 *   The library acts only on descriptors it made, and never on a number the
 *   application may have reused.
 *   - Its own (epoll sets, wake eventfds, timerfds - epoll backend only -,
 *     io_uring rings, inotify, pidfds, signal and netlink fds) are taken with kq_fd_own() (O_CLOEXEC, never 0-2) and
 *     given back with kq_fd_close().  The application's close family cannot
 *     touch them: close() says EBADF, close_range()/closefrom() step around
 *     them, dup2()/dup3() onto one fail with EBUSY (fdreg.c).  A change
 *     naming one is EBADF: it is not the application's descriptor.
 *   - Every descriptor the library makes, even for a moment (a /proc read,
 *     a new eventfd before kq_fd_own() registered it), is made, and given
 *     back (kq_fd_close), between kq_fd_making() and kq_fd_made(): it takes
 *     the lowest free number,
 *     perhaps one the application has just closed.  An EV_ADD that asks
 *     epoll about a number waits until none is being made (kq_fd_quiet) and
 *     asks again if one was made meanwhile (kq_fd_settled), so it never
 *     takes the library's file for the application's.  No lock is taken
 *     inside such a section, and the wait holds no registry slot lock.
 *   - The numbers the application holds for a kqueue are aliases: other
 *     descriptors of the epoll file whose own descriptor kq->fd the library
 *     waits on.  kevent(N) maps N to its kqueue (kq_lookup: a known number
 *     costs one slot lock; an unknown one - a dup - is matched with kcmp),
 *     and holds a reference across the call, so a close on another thread
 *     never makes a waiter use a reused number.  Without close tracking a
 *     known number is re-checked with kcmp on every call.
 *   - A kqueue lives while some descriptor besides kq->fd names its file.
 *     Closing an alias only marks the kqueue a suspect and kicks it
 *     (signal-safe); kq_reap_suspects() - at kqueue(), kevent(),
 *     kqfree_release() and in the kqueue's own woken sleeper, where locks
 *     and free() are safe - checks (kq_alive) and kills what nothing names.
 *     Without close tracking kqueue() checks every kqueue.  A closed
 *     kqueue's memory and fds therefore go back at the process's next such
 *     call, not inside close().
 *
 * CLOSE TRACKING
 *   fdreg.c interposes every libc call that closes or replaces an fd.  Under
 *   the number's slot lock it unlinks the slot's watchers and calls each one's
 *   closed() callback, then runs the real close with the lock still held.
 *   The callbacks (async-signal-safe: no kq->lock, no malloc/free) are
 *   kqueue.c's: an fdnode's marks it closed, removes the epoll registration
 *   (kq_backend_forget), pushes it on the kqueue's lock-free closed stack
 *   and kicks the kqueue if a free notice is due (fdn->nfreewatch); an
 *   alias's makes its kqueue a suspect.  Whoever frees or inspects a watcher
 *   after it may have been told takes and drops that slot's lock first
 *   (kq_drain_closed, kq_alive), so a callback in progress - or the real
 *   close after it - has finished; a slot seen free once the watcher was
 *   found told needs no round trip (kq_fdreg_pass).  A close from a signal
 *   handler that interrupted its own thread inside that slot's lock marks
 *   the slot pending; the holder's unlock tells the watchers.  kevent()
 *   drains the closed stack under kq->lock and releases the knotes with
 *   NOTE_FREE_CLOSE.
 *   A close by a child that shares our memory but not our descriptor table
 *   (vfork, clone(CLONE_VM) without CLONE_FILES) is not ours and touches
 *   nothing; fdreg.c's vfork() and clone() mark the thread or the process
 *   when such a child may exist, and only then does the close path ask the
 *   kernel for the pid (a syscall per close otherwise).  Nor is a close by
 *   a child with a copy of our memory that fork()'s handler did not start
 *   afresh (_Fork, clone without CLONE_VM, a raw fork): a page the kernel
 *   wipes in every such child (MADV_WIPEONFORK) makes it ask too.
 *   A close that finds the slot empty takes no lock, so an EV_ADD on
 *   another thread may link its watch and register the file between that
 *   look and the real call.  The adder fences (seq_cst) between its link
 *   and its epoll_ctl ADD, and the kernel's close orders the file's end
 *   before the closer's next load, so either epoll refused the number or
 *   the closer, looking again after the real call, finds the watch: then
 *   (close_raced, under the slot lock: a watch is linked and registered
 *   within one hold) each watch says whether it was of the ended file
 *   (ops->raced: epoll's item at this number is gone, EPOLL_CTL_MOD
 *   fails; an empty number: every watch there), and only those are told.
 *   A watch of a new file that reused the number is left alone.  io_uring,
 *   and a node epoll does not hold (disabled, a regular file), can tell
 *   only the empty number: after a reuse the race stays there.
 *   Any epoll_ctl on a user fd runs under that fd's slot lock, so a
 *   registration is never re-added after close.  No event reports a file
 *   that reused the number: fop->event() of an fd's knote runs under that
 *   lock too (no other thread closes the number meanwhile), except for
 *   filters whose event() only reads (event_unlocked: READ, one FIONREAD
 *   per event, no lock round trip); either way the scan checks fdn->closed
 *   after the call and drops the report if the fd was closed meanwhile.
 *   The close path marks the node before the real close, so a number
 *   reused before the read (by another thread, or by a signal handler that
 *   interrupted the read on this one) shows as closed after it; the node
 *   itself lives until kq_drain_closed(), under kq->lock.  Code the
 *   interposition cannot reach (RTLD_LOCAL modules) gets the same functions
 *   through its patched GOT (gotpatch.c).
 *
 * FORK
 *   The child inherits no kqueue and reads nothing another thread may have
 *   left half-updated: only the kqueue list and alias numbers (written under
 *   kq_global_lock, which the prepare handler holds).  It closes each alias
 *   that still names its kqueue (kcmp), then every owned descriptor
 *   (kq_fdreg_fork_child), and forgets the kqueues without freeing them.
 *   Process-wide services re-create their fds lazily and never close the old
 *   ones themselves in a child.  glibc does not reset the loader's list lock
 *   in a child, so no library thread may be inside dl_iterate_phdr() when
 *   fork() copies the process: gotpatch.c's prepare handler stops new walks
 *   and waits for running ones (they hold only that lock).  Other code may
 *   hold it at that instant too; so the child looks at the lock (its
 *   address found once at load time) and gives it back if its holder is
 *   no thread of the child: an object the parent loaded after its last
 *   walk must still be patched there.
 *   A child that no fork handler ran in (_Fork, a raw fork system call,
 *   clone() without CLONE_VM) is a process of its own all the same: its
 *   first kqueue(), kevent() or kqfree_release() runs the same child
 *   handlers (kq_fork_adopt), told by the kernel's wipe-on-fork page
 *   (kq_fdreg_copy_child, one load).  Until then its closes touch nothing
 *   (fdreg.c asks the kernel).  Such a child of a threaded parent may call
 *   only async-signal-safe functions (POSIX), which kqueue() is not; the
 *   handlers take kq_global_lock as fork()'s do.  The child's table is its
 *   own from the start: a number it closes (close family, closefrom
 *   included) stops being owned there, so the adoption closes no number
 *   the child has reused.
 *
 * CANCELLATION
 *   No thread ends inside the library holding something: a lock, a slot, a
 *   reference, a wake edge owed.  kqueue(), kevent() and kqfree_release()
 *   run with cancellation disabled, except kevent()'s wait, a cancellation
 *   point as FreeBSD's is: there the thread holds only its reference to the
 *   kqueue, which a cleanup handler drops (the library is built with
 *   -fexceptions: the handler is a frame the unwinding runs, no sigsetjmp
 *   per wait).  A wait that cannot block (zero timeout) is no cancellation
 *   point.  A kevent() that may wait (nevents > 0) also acts on a cancel
 *   already pending at its entry, before any change.  The close family
 *   (close, fclose) acts on a pending cancel before it touches a watched
 *   number's slot, then holds the slot across the real call with
 *   cancellation disabled: a cancel that comes during a blocking close
 *   takes effect at the thread's next cancellation point.  Disabled, not
 *   merely a real call that is no cancellation point (the bare system
 *   call): a signal handler that runs while the slot is held may make one.
 *
 * INOTIFY (inotify.c)
 *   One inotify instance for the process (an owned fd, made on the first
 *   subscription, given back when the last kqueue leaves), never one per
 *   kqueue: instances are a per-user limit (max_user_instances).  A wd is
 *   one inode; each kqueue watching it is a subscriber (struct kq_ino_sub)
 *   and the kernel holds the union of their masks (a superset after a
 *   subscriber left without a path to narrow it by: harmless, events are
 *   filtered per subscriber).  The instance's fd is in the epoll set of
 *   every kqueue with a subscription, level-triggered.  Whichever kqueue's
 *   scan sees it readable reads it (holding its own kq->lock, then
 *   ino_lock) and routes each event to its subscribers' mail (every
 *   kqueue's for IN_Q_OVERFLOW); another kqueue that got mail is marked
 *   (kq->ino_mail) and kicked.  A kqueue takes its mail only under its own
 *   kq->lock: in that ready callback, and from its wake edge (wake_ready);
 *   kq_update_wake() keeps the edge while ino_mail is set.  Mail over
 *   INO_MAIL_MAX or without memory becomes an IN_Q_OVERFLOW for that kqueue
 *   (its watcher re-checks every inode).  The reader never takes another
 *   kqueue's lock.  The fork child forgets the instance (its fd was closed
 *   by kq_fdreg_fork_child) and leaks its memory.
 *
 * LOCK ORDER
 *   kq_global_lock (kqueue list, aliases, fork)  ->  kq->lock  ->  ino_lock
 *   (inotify.c: the instance, its wds and subscribers, every kqueue's
 *   inotify mail)  ->  fd slot lock.  ino_lock is taken only with the
 *   caller's own kq->lock held (or none), never another kqueue's; under it
 *   only kq_kick() of another kqueue (no lock).  The close path takes only
 *   fd slot locks (one at a time, or a close_range()'s in ascending order).
 *   No lock is held while waiting in the backend, nor while writing a wake
 *   edge of one's own kqueue (kq_unlock).

 * NAMING: everything internal is kq_ prefixed and hidden (-fvisibility=hidden);
 * only the symbols in libkqfree.map are exported.
 */
#ifndef KQ_INTERNAL_H
#define KQ_INTERNAL_H

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <time.h>

#include <bsd/sys/tree.h>

#include "sys/event.h"

#define KQ_API __attribute__((visibility("default")))

struct kq_kqueue;
struct kq_knote;
struct kq_poll;
struct kq_fdnode;
struct kq_alias;

/* fdreg.c's watcher of one descriptor number (see fdreg.c below) */
struct kq_fdwatch;
struct kq_fdwatch_ops {
	void (*closed)(struct kq_fdwatch *w, int fd);
	/* After a close that saw no watcher (fdreg.c, close_raced), under the
	 * slot lock: was this watch of the file that close ended?  NULL: no. */
	bool (*raced)(struct kq_fdwatch *w, int fd);
};
struct kq_fdwatch {
	struct kq_fdwatch *next;	/* the slot's chain, under its lock */
	const struct kq_fdwatch_ops *ops;
};

/* ---------------------------------------------------------------- filters */

struct kq_filterops {
	short filter;
	bool isfd;		/* ident is an fd: knote joins the fd's fdnode */
	bool small;		/* knotes end at KQ_KNOTE_SMALL (not isfd) */
	/* isfd: attach begins with kq_fdnode_probe(), before it looks at the
	 * file in any way.  A new fdnode is then linked to its number's slot
	 * by that probe, in the hold of the slot lock that registers it with
	 * epoll (one round trip, not two): no file was taken for the number
	 * before, so none can have been closed behind its back. */
	bool probe_first;
	/* isfd: event() only reads the file and changes nothing but the
	 * fdnode (what it knows of the file; its registration, which the
	 * flush re-checks under the lock) - no knote state, nothing the file
	 * keeps (SO_ERROR is read and kept under the lock by the filter
	 * itself).  The core then calls it without the fd's slot lock and
	 * drops its report if the fd was closed meanwhile (CLOSE TRACKING). */
	bool event_unlocked;
	/* New knote (ident, filter, flags, udata set; in whole knotes also
	 * sfflags and sdata), from change kev.  Return 0 or an errno for the
	 * EV_ERROR entry; on error the core frees the knote without calling
	 * detach.  An isfd attach that probes (kq_fdnode_probe) does so after
	 * everything its pollevents() reads is set: a first probe registers
	 * the fd with what the knotes want, and the core takes that as the
	 * fdnode's update. */
	int (*attach)(struct kq_kqueue *, struct kq_knote *, const struct kevent *kev);
	/* Undo attach.  Must not fail. */
	void (*detach)(struct kq_kqueue *, struct kq_knote *);
	/* Fill ev->data, ev->fflags, EV_EOF in ev->flags for a knote popped
	 * from the active queue.  Return 1 to report it, 0 to drop it. */
	int (*event)(struct kq_kqueue *, struct kq_knote *, struct kevent *ev);
	/* Any change to an existing knote (not EV_DELETE): store the change's
	 * fflags/data as the filter means them (kn->sfflags/sdata still the
	 * old ones; NOTE_TRIGGER etc. for touch-style filters).  Return 0 or
	 * errno.  On error it must leave the knote (and what it owns: timer,
	 * watches, queue state) exactly as it was: validate and get every
	 * resource first, or undo.  The core calls it before it applies
	 * udata, EV_ENABLE/EV_DISABLE or the reference (only EV_FORCEONESHOT
	 * precedes it, and is undone), so a failed change leaves no trace.
	 * May be NULL in whole knotes (the core then copies fflags/data). */
	int (*touch)(struct kq_kqueue *, struct kq_knote *, const struct kevent *change);
	/* Knote became enabled/disabled or its flags changed: update the
	 * source (epoll interest, timer arming).  May be NULL. */
	void (*rearm)(struct kq_kqueue *, struct kq_knote *);
	/* After an EV_CLEAR (or implied-clear) knote was delivered: reset
	 * accumulated state.  May be NULL (core zeroes kn->data, and
	 * kn->fflags in whole knotes). */
	void (*clear)(struct kq_kqueue *, struct kq_knote *);
	/* isfd filters that use the fd's own epoll registration (READ, WRITE,
	 * EMPTY, PROCDESC): the KQ_POLL* events this knote needs now (0 when
	 * disabled).  The fdnode's registration is the union; when epoll
	 * reports any of them (or ERR/HUP) the knote is activated.  KQ_POLLET
	 * asks for edge-triggered wake-ups (NOTE_LOWAT: a level registration
	 * would wake the kqueue for every byte below the mark); the knote is
	 * then re-checked by the scan (KN_REQUEUE) instead of by epoll. */
	uint32_t (*pollevents)(struct kq_kqueue *, struct kq_knote *);
};

extern const struct kq_filterops kq_filt_read, kq_filt_write, kq_filt_empty,
    kq_filt_timer, kq_filt_user, kq_filt_signal, kq_filt_proc,
    kq_filt_procdesc, kq_filt_vnode;

/* ------------------------------------------------------------------ knote */

/* kn->status */
#define KN_ACTIVE	0x0001	/* triggered, waiting to be scanned */
#define KN_QUEUED	0x0002	/* on kq->active */
#define KN_DISABLED	0x0004	/* EV_DISABLE / EV_DISPATCH fired */
#define KN_FREEWATCH	0x0008	/* holds an EV_FREEWATCH reference to udata */
#define KN_REQUEUE	0x0010	/* level knote whose source won't re-report */
#define KN_NOTICE	0x0020	/* dead: this memory is a free notice */
#define KN_FORCED	0x0040	/* EV_FORCEONESHOT: report even if event() says not ready */
#define KN_POLLED	0x0080	/* no wake-up source: re-checked every KQ_POLL_NS (on kq->polled) */
#define KN_WHOLE	0x0100	/* the whole struct, not a small knote (KNOTE SIZES) */

/* How often knotes without a kernel wake-up (EVFILT_EMPTY: Linux does not
 * wake anyone when a send queue drains) are re-checked while one exists. */
#define KQ_POLL_NS	(5 * 1000000)

/* The flags a knote remembers and reports (FreeBSD strips these on add). */
#define KN_STORED_FLAGS_MASK \
	(~(EV_ADD | EV_DELETE | EV_ENABLE | EV_DISABLE | EV_FORCEONESHOT | \
	   EV_FREEWATCH | EV_SYSFLAGS))

struct kq_timer_state {		/* filter_timer.c (a small knote) */
	int64_t period_ns;	/* 0 for oneshot/abstime */
	uint32_t heap_index;	/* its node in kq's timer heap or a node below
				 * it (timerheap.h: kq_theap_index finds the
				 * node), KQ_THEAP_NONE if not armed; the
				 * deadline lives in the heap entry */
};

struct kq_signal_state {	/* filter_signal.c (a small knote) */
	uint64_t seen;		/* global delivery counter already accounted */
};

struct kq_proc_state {		/* filter_proc.c */
	struct kq_poll *pidpoll;/* pidfd registration; NULL for PROCDESC,
				 * after the exit is known, and for a
				 * NOTE_TRACK child known only from the
				 * proc connector */
	int status;		/* after exit: the wait status */
	unsigned state;		/* filter_proc.c's KP_* */
	LIST_ENTRY(kq_knote) cnlink;	/* connector-only knotes (filter_proc.c) */
};

struct kq_vnode_state {		/* filter_vnode.c; also READ on a regular file */
	int wd;			/* inotify watch descriptor, -1 if none */
	LIST_ENTRY(kq_knote) wdlink;	/* knotes sharing wd (filter_vnode.c) */
	int64_t size;
	nlink_t nlink;
};

struct kq_user_state {		/* filter_user.c */
	bool triggered;
};

/*
 * KNOTE SIZES.  A knote is as big as its filter needs (fop->small):
 * timers and signals - the filters a program may hold by the hundred
 * thousand - end at KQ_KNOTE_SMALL (72 bytes on LP64); every other filter's
 * knote is the whole struct.  The fields after `s` exist only in whole
 * knotes: the core touches them only when kn->status has KN_WHOLE (its
 * filter is not small), and small filters keep their fflags, sdata and
 * per-filter state in `s`.  A free notice is a small knote (whatever its
 * memory was), its reason code in `data`.  The filter is kn->filter; its
 * ops are kq_knote_fop(kn).
 */
struct kq_knote {
	TAILQ_ENTRY(kq_knote) link;	/* kq->active while KN_QUEUED; kq->notices while KN_NOTICE */
	struct kq_knote *next;		/* kq->khash chain (not isfd filters) */
	uintptr_t ident;
	void *udata;
	short filter;
	unsigned short flags;		/* stored EV_* flags (KN_STORED_FLAGS_MASK) */
	uint32_t status;		/* KN_* */
	int64_t data;			/* data accumulated for the next report */
	union {				/* small filters' state */
		struct kq_timer_state timer;
		struct kq_signal_state sig;
	} s;
	/* ---- KQ_KNOTE_SMALL: below, whole knotes only (KN_WHOLE) ---- */
	unsigned sfflags;		/* fflags as registered */
	unsigned fflags;		/* fflags accumulated for the next report */
	int64_t sdata;			/* data as registered */
	struct kq_fdnode *fdn;		/* isfd filters */
	LIST_ENTRY(kq_knote) fdlink;	/* fdn->knotes (isfd filters): their index */
	TAILQ_ENTRY(kq_knote) plink;	/* kq->polled while KN_POLLED */
	uint32_t pollmask;		/* its share of fdn's registration as of
					 * the last fdnode update (kqueue.c) */
	union {
		struct kq_proc_state proc;
		struct kq_vnode_state vnode;
		struct kq_user_state user;
	} u;
};
#define KQ_KNOTE_SMALL	offsetof(struct kq_knote, sfflags)

TAILQ_HEAD(kq_knote_list, kq_knote);

/* Non-fd knotes by (filter, ident): chained hash, at most two per bucket
 * on average (a pointer per two knotes: small knotes stay small). */
struct kq_knote_hash {
	struct kq_knote **b;
	uint32_t mask;			/* buckets - 1 */
	uint8_t bits;			/* log2(buckets) */
	uint32_t gen;			/* bumped by every insert, unlink and
					 * resize: a link (kq_khash_link) taken
					 * at the same gen is still good */
	size_t n;
};

/* knote.c's allocator: slabs per kqueue and size (small / whole), so a
 * knote costs its size and nothing more (malloc would add 8-24 bytes). */
struct kq_slab_block;
struct kq_slab {
	TAILQ_HEAD(, kq_slab_block) room;	/* blocks with a free entry */
	size_t size;
	size_t nblocks;				/* blocks mapped (kept until teardown) */
};

extern const struct kq_filterops *const kq_filters[];
static inline const struct kq_filterops *
kq_knote_fop(const struct kq_knote *kn)
{
	return kq_filters[-kn->filter];
}
/* The knote's fdnode, NULL for filters whose ident is not an fd. */
static inline struct kq_fdnode *
kq_knote_fdn(const struct kq_knote *kn)
{
	return (kn->status & KN_WHOLE) ? kn->fdn : NULL;
}

/* knote.c: arrays that grow with the knotes (hash buckets, the timer heap):
 * zeroed; mapped past 64 KiB so that an outgrown array goes back to the
 * kernel at once (malloc's arena would keep every doubling resident).
 * Free with the size they were allocated with. */
void *kq_array_alloc(size_t size);
void *kq_array_resize(void *p, size_t size, size_t to);	/* NULL: p kept */
void kq_array_free(void *p, size_t size);

/* knote.c */
/* A zeroed knote sized for fop (NULL: a free notice), KN_WHOLE set if it
 * is whole; NULL when out of memory. */
struct kq_knote *kq_knote_alloc(struct kq_kqueue *kq, const struct kq_filterops *fop);
void kq_knote_free(struct kq_kqueue *kq, struct kq_knote *kn);	/* never attached, or dead */
void kq_knote_slabs_free(struct kq_kqueue *kq);			/* kqueue teardown */
/* 0 or ENOMEM.  link: NULL, or kq_khash_link()'s for kn's (filter, ident),
 * taken with nothing inserted or unlinked since (saves the walk). */
int kq_knote_insert(struct kq_kqueue *kq, struct kq_knote *kn,
    struct kq_knote **link);
/* The whole EV_ADD of a new knote for a filter whose ident is not an fd,
 * in one call: kq_knote_alloc, kq_knote_set, kq_knote_insert(link),
 * fop->attach (undone if it fails: its error), EV_FREEWATCH. */
int kq_knote_add_hashed(struct kq_kqueue *kq, const struct kq_filterops *fop,
    const struct kevent *kev, struct kq_knote **link);
/* The plain changes of knotes whose ident is not an fd (a new knote's
 * EV_ADD, a bare EV_DELETE) from changelist[i] on, as apply_change() would
 * apply them, each knote looked up once.  Returns the index of the first
 * change it did not apply (nchanges: none), *err saying why: -1, not such
 * a change (nothing done, the general path takes it), or the errno of its
 * EV_ERROR entry (nothing done either). */
int kq_knote_change_run(struct kq_kqueue *kq, const struct kevent *changelist,
    int i, int nchanges, int *err);
void kq_knote_free_unattached(struct kq_kqueue *kq, struct kq_knote *kn);
/* kq_knote_activate: below struct kq_kqueue, inline */
void kq_knote_deactivate(struct kq_kqueue *kq, struct kq_knote *kn);
void kq_knote_poll(struct kq_kqueue *kq, struct kq_knote *kn);	/* make KN_POLLED */
void kq_knote_set_freewatch(struct kq_knote *kn, bool on);	/* KN_FREEWATCH */
void kq_knote_release(struct kq_kqueue *kq, struct kq_knote *kn,
    unsigned reason, struct kevent *fired);
/* kq_knote_release(kq, kn, NOTE_FREE_DELETE, NULL) of a hashed knote found
 * at link (kq_khash_link) at hash generation gen: unlinked from there
 * unless its detach changed the hash meanwhile. */
void kq_knote_delete_at(struct kq_kqueue *kq, struct kq_knote *kn,
    struct kq_knote **link, uint32_t gen);
/* A new knote (or a renewed one) as the change kev describes it. */
static inline void
kq_knote_set(struct kq_knote *kn, const struct kevent *kev)
{
	kn->ident = kev->ident;
	kn->filter = kev->filter;
	kn->flags = kev->flags & KN_STORED_FLAGS_MASK;
	kn->udata = kev->udata;
	if (kn->status & KN_WHOLE) {
		kn->sfflags = kev->fflags;
		kn->sdata = kev->data;
	}
	if (kev->flags & EV_DISABLE)
		kn->status |= KN_DISABLED;
}
/* A notice (note: from kq_knote_alloc(kq, NULL)) handing back udata of
 * (ident, filter) for reason, without the knote dying. */
void kq_knote_queue_notice(struct kq_kqueue *kq, struct kq_knote *note,
    const struct kq_knote *kn, unsigned reason);
int kq_notices_copyout(struct kq_kqueue *kq, struct kevent *out, int max);
void kq_release_all(struct kq_kqueue *kq, unsigned reason, bool notify);

/* ------------------------------------------------------------------- poll */

/* kq_poll.want / armed bits (epoll values are used directly) */
#define KQ_POLLIN	0x001u		/* EPOLLIN */
#define KQ_POLLOUT	0x004u		/* EPOLLOUT */
#define KQ_POLLRDHUP	0x2000u		/* EPOLLRDHUP */
#define KQ_POLLET	(1u << 31)	/* EPOLLET */
#define KQ_POLLONESHOT	(1u << 30)	/* EPOLLONESHOT */
#define KQ_POLLERR	0x008u
#define KQ_POLLHUP	0x010u

struct kq_poll {
	int fd;
	uint32_t slot;			/* handle: index in kq->slots */
	uint32_t gen;			/* handle: generation */
	uint32_t want;			/* events wanted, 0 = not registered */
	uint32_t armed;			/* what the backend has (0 = none) */
	bool in_backend;
	bool dirty;
	bool userfd;			/* a user fd: ctl under its registry lock */
	bool shared;			/* fd not owned by this kqueue (not closed on fork) */
	TAILQ_ENTRY(kq_poll) dirty_link;
	/* Called under kq->lock with the events epoll reported. */
	void (*ready)(struct kq_kqueue *kq, struct kq_poll *p, uint32_t revents);
	void *owner;			/* for the ready callback */
};

TAILQ_HEAD(kq_poll_list, kq_poll);

/* backend_epoll.c: the only code that talks to epoll */
/* One readiness report.  Laid out like struct epoll_event (packed on
 * x86-64) so the epoll backend can have the kernel write these directly. */
struct kq_ready {
	uint32_t revents;
	uint64_t handle;
}
#if defined(__x86_64__)
__attribute__((__packed__))
#endif
;
#define KQ_READY_MAX 256

int kq_backend_init(struct kq_kqueue *kq, bool cloexec);	/* sets kq->fd */
void kq_backend_close(struct kq_kqueue *kq);
/* Give p a handle.  Must precede attach. */
int kq_poll_register(struct kq_kqueue *kq, struct kq_poll *p);
void kq_poll_unregister(struct kq_kqueue *kq, struct kq_poll *p);
struct kq_poll *kq_poll_lookup(struct kq_kqueue *kq, uint64_t handle);
/* Add p->fd with p->want now; returns 0 or errno (EBADF, EPERM...). */
int kq_backend_attach(struct kq_kqueue *kq, struct kq_poll *p);
/* p->want changed: apply at the next flush. */
void kq_backend_update(struct kq_kqueue *kq, struct kq_poll *p);
/* Remove p from epoll now (p->fd must still be open) and from the dirty
 * list.  For a user fd the caller holds kq_fdreg_lock(p->fd). */
void kq_backend_detach(struct kq_kqueue *kq, struct kq_poll *p);
/* Close path: drop the kernel's registration of p (a user fd's, about to be
 * closed) without touching kq state: no kq->lock, async-signal-safe, under
 * the fd's slot lock. */
void kq_backend_forget(struct kq_kqueue *kq, struct kq_poll *p);
/* Under the user fd's slot lock: does the backend still hold p for the
 * file the number names?  (true when it cannot tell: io_uring) */
bool kq_backend_still_attached(struct kq_kqueue *kq, struct kq_poll *p);
/* Apply pending updates; at most one epoll_ctl per dirty registration.
 * kq_backend_flush() (inline, below struct kq_kqueue) calls it when there
 * are any. */
void kq_backend_flush_dirty(struct kq_kqueue *kq, bool at_exit);
/* Wait (called WITHOUT kq->lock).  ts NULL = forever.  Returns count or -errno. */
int kq_backend_wait(struct kq_kqueue *kq, struct kq_ready *out, int max,
    const struct timespec *ts);
/*
 * BACKENDS.  Chosen per kqueue at kqueue(): KQFREE_BACKEND=epoll|io_uring
 * (secure_getenv, read once per process); default epoll.  io_uring is used
 * only if the kernel has everything it needs (io_uring_setup allowed - not
 * ENOSYS/EPERM from seccomp or kernel.io_uring_disabled -, EXT_ARG and
 * NODROP, the POLL_ADD/POLL_REMOVE and TIMEOUT/TIMEOUT_REMOVE opcodes,
 * IORING_REGISTER_SYNC_CANCEL: Linux 6.0), probed once per process; otherwise, and whenever a ring
 * cannot be made, the kqueue silently runs on epoll.  The switch is one
 * predicted branch on kq->uring at the entry of the kq_backend_* calls that
 * differ (KQ_URING): the epoll path stays what it was.
 *
 * io_uring backend (backend_uring.c), the rules:
 *   - The kqueue's file is still the epoll set kq->fd (aliases, kcmp,
 *     nesting, fork: unchanged).  That set holds only the wake eventfd
 *     (edge-triggered, as on epoll) and the ring's fd (readable while CQEs
 *     are unreaped), so the kqueue fd polls readable while events are
 *     queued or the kernel has reported something not yet taken.  (Before
 *     Linux 6.13, see wake edges below: nothing epoll_wait()s that set,
 *     so taking the wake edge - the ring's CQE for it - leaves the
 *     eventfd readable: kq->wake_unread, and kq_update_wake() reads the
 *     count once nothing is queued.)
 *   - Every kq_poll is an IORING_OP_POLL_ADD whose user_data is the poll's
 *     handle (slot | gen << 32).  Each new POLL_ADD takes a new generation
 *     (kq->slot_gen[slot]++), so a CQE of an earlier arm, or of a removed or
 *     cancelled poll, fails kq_poll_lookup() and is dropped.  user_data 0 is
 *     a removal's or cancellation's own completion (ignored); a handle with
 *     KQ_URING_UPDATE set in the slot half is an update's completion.
 *   - Edge-triggered registrations (KQ_POLLET without KQ_POLLONESHOT) are
 *     multishot polls; level and one-shot ones are single-shot polls, which
 *     check readiness when armed: a single-shot CQE (no IORING_CQE_F_MORE)
 *     leaves the poll unarmed and dirty, so the flush before the next wait
 *     re-arms it if a knote still wants it - a level fd is reported again
 *     by every wait, as epoll does.  Deferred re-arms: kevent()'s exit
 *     flush (kq_backend_flush_exit) leaves such a same-again re-arm of a
 *     user fd dirty, unsubmitted; the next call's wait arms it in its own
 *     io_uring_enter (it completes there at once if the fd is still ready).
 *     Freshness: a CQE of a single-shot poll woken by its file says only
 *     that wake-up's events, as they were then (a write says IN, not the
 *     HUP of a close after it), and a level report must say what the file
 *     is now, as epoll_wait's does.  So each pass of the scan starts by
 *     taking what was posted before it (kq_uring_reap_stale): such a
 *     report of a user fd is not taken but made a re-arm, which that
 *     pass's wait arms (vfs_poll: the events as they are); edge, timer
 *     and other CQEs are taken as they are.  The CQEs the reap finds after
 *     the wait (kq_uring_reap) were all posted during this call, and are
 *     taken as they are, with no system call to ask the files again (a
 *     HUP right after a write during the wait may come with the next
 *     report only).  The kqueue fd must poll readable while a deferred
 *     re-arm waits (FreeBSD's kqueue does until the next scan after one
 *     reporting a level knote): the reaps leave the last CQE they take at
 *     the CQ head as a token (u->token; every read skips it), which
 *     kq_uring_commit keeps while deferred re-arms exist and drops
 *     otherwise; with no token to keep, or a thread counted asleep in a
 *     wait (kq->sleepers, counted under kq->lock before the scan lets it
 *     go: only an armed poll wakes it), the re-arms are armed and
 *     submitted before kevent() returns instead.  kq_uring_wait_begin
 *     drops the token before a wait (it would end the wait at once; the
 *     flush just armed what it stood for).  A deferred re-arm is just a
 *     dirty poll: EV_DELETE/EV_DISABLE, a close (kq_drain_closed detaches
 *     it) or the kqueue's end drop it like any other.  Multishot reports
 *     are taken as they are (edge knotes ask their filter anyway).  A change of events keeps the same mode
 *     and is made in place (POLL_REMOVE with IORING_POLL_UPDATE_EVENTS; the
 *     kernel cannot change the mode of a live poll); a change of mode is a
 *     remove and a new add.  An update that finds the poll gone (-ENOENT:
 *     it fired meanwhile) marks it unarmed and dirty.
 *   - SQEs are prepared and published (SQ tail) only under kq->lock
 *     (single producer).  Whoever enters next - the waiter, with no lock,
 *     in the same io_uring_enter as its wait (GETEVENTS|EXT_ARG, relative
 *     timeout), or kevent() before it returns if nothing waited after the
 *     last change (kq_backend_commit) - submits what is published (to_submit = tail - head: the
 *     kernel takes at most what is there).  CQEs are reaped only under
 *     kq->lock (single consumer): the waiter takes the lock after its
 *     enter, as it did after epoll_wait, and reaps (kq_backend_reap).
 *   - A user fd's arm is prepared under its slot lock after checking it is
 *     not closed (as epoll_ctl is), but submitted later, so a close may come
 *     in between: the close path (kq_backend_forget) cancels the poll by its
 *     handle with IORING_REGISTER_SYNC_CANCEL, a plain syscall
 *     (async-signal-safe, never the SQ ring), before the real close, so the
 *     ring holds no reference that would keep the file open; an arm still
 *     in the SQ then is cancelled when kq_drain_closed detaches the node
 *     (a POLL_REMOVE by handle queued behind the add), and the close path
 *     kicks the kqueue so that happens at once.  Removals (detach) are
 *     submitted before kevent() returns (kq_backend_commit): after an
 *     EV_DELETE the application's close() really closes.
 *   - A new user fd is classified (EBADF, EPERM for files without poll) by
 *     an epoll_ctl ADD and DEL on kq->fd, as epoll's answer defines it; a
 *     socket by one getsockopt(SO_TYPE) instead (it succeeds exactly for an
 *     open, non-O_PATH socket, which epoll always takes).  A
 *     node whose poll is gone stays cached when its last knote goes
 *     (kq_fdnode_reap_idle), so re-adding costs no new probe.
 *   - What kevent() submitted itself (kq_backend_commit) is followed by a
 *     reap of the completions that report nothing (kq_uring_reap_quiet:
 *     a removed poll's -ECANCELED, stale CQEs, the wake edge), up to the
 *     first report, which stays in the CQ (the kqueue fd polls readable)
 *     to be re-armed, as stale, by the next scan.
 *   - kevent()'s wait is a cancellation point: the io_uring_enter runs
 *     with asynchronous cancellation, as glibc's cancellable calls do.  A
 *     wait that also submitted returns the count submitted, not EINTR:
 *     kq_uring_wait infers the signal (all taken, nothing reaped, CQ empty,
 *     time left).
 *   - Wake edges (kq_kick, kq_unlock, kq_kill: kq_wake_post) are, on
 *     Linux 6.13+, CQEs posted into the ring by
 *     IORING_REGISTER_SEND_MSG_RING (a plain system call, signal-safe;
 *     user_data: the wake poll's handle), and the eventfd is neither
 *     polled nor in the epoll set: the CQE makes the kqueue fd readable
 *     until reaped, and defusing it is reaping it (kq_uring_defuse, no
 *     system call).  The post is synchronous, so an edge written late
 *     (wake_write) is in the CQ when its writer defuses it.  Before 6.13
 *     the eventfd is polled by the ring (multishot) and kept in the epoll
 *     set, and its CQE comes by task_work of the thread that armed it,
 *     maybe after the edge was defused: the kqueue fd may then poll
 *     readable once with nothing queued.
 *   - EVFILT_TIMER has no timerfd: the heap's earliest deadline (the mark
 *     filter_timer.c keeps in kq->timer_armed, set by kq_timer_flush only
 *     when it moves earlier) is ONE ring timeout per kqueue,
 *     IORING_OP_TIMEOUT with IORING_TIMEOUT_ABS on CLOCK_MONOTONIC (the
 *     timerfd's clock: NOTE_ABSTIME is converted to it when armed), its
 *     user_data kq->timer's handle (kq_uring_timer_set).  A new deadline
 *     while it is live is an update in place (TIMEOUT_REMOVE with
 *     IORING_TIMEOUT_UPDATE, user_data 0: its -ENOENT/-EALREADY, the
 *     timeout fired meanwhile, is ignored since the timeout's own CQE
 *     comes); once its CQE is reaped (-ETIME, or -ECANCELED when its
 *     submitter exited) the next is a new timeout with a new generation,
 *     so a CQE of an earlier one is dropped.  Either goes in with the next
 *     enter: the wait's, or kq_backend_commit's.  The CQE is a report (the
 *     kqueue fd polls readable until the scan reaps it), and calls
 *     timer_ready as the timerfd's readiness did.  The last timer gone
 *     removes the timeout.  Its kernel-read deadline lives per SQE slot
 *     (struct kq_uring), untouched until the kernel has taken the SQE.
 *     kq->timer's fd is the ring's (shared: never closed for it).
 *   - Fork: the ring's memory is MADV_DONTFORK, so a child (which forgets
 *     every kqueue: EBADF) cannot even read the parent's ring; closing its
 *     copy of the ring fd touches nothing of the parent's.
 */
struct kq_uring;
#ifdef HAVE_LIBURING
#define KQ_URING(kq)	__builtin_expect((kq)->uring != NULL, 0)
#else
#define KQ_URING(kq)	0
#endif
#define KQ_URING_UPDATE	0x80000000u	/* slot half of an update's user_data */
#ifdef HAVE_LIBURING
int kq_uring_init(struct kq_kqueue *kq);	/* 0 or errno: stay on epoll */
void kq_uring_close(struct kq_kqueue *kq);
int kq_uring_attach(struct kq_kqueue *kq, struct kq_poll *p);
void kq_uring_detach(struct kq_kqueue *kq, struct kq_poll *p);
void kq_uring_forget(struct kq_kqueue *kq, struct kq_poll *p);
/* backend_epoll.c's flush: one registration's change, then publish them */
void kq_uring_apply(struct kq_kqueue *kq, struct kq_poll *p, uint32_t want);
void kq_uring_publish(struct kq_kqueue *kq);
int kq_uring_wait(struct kq_kqueue *kq, const struct timespec *ts);
void kq_uring_reap(struct kq_kqueue *kq);
void kq_uring_reap_stale(struct kq_kqueue *kq);
void kq_uring_wait_begin(struct kq_kqueue *kq);	/* sleeper count, token */
void kq_uring_commit(struct kq_kqueue *kq);
void kq_uring_reap_quiet(struct kq_kqueue *kq);	/* CQEs that report nothing */
bool kq_uring_post_wake(struct kq_kqueue *kq);	/* signal-safe */
bool kq_uring_defuse(struct kq_kqueue *kq);
/* filter_timer.c: its one deadline is a ring timeout, not a timerfd */
int kq_uring_timer_open(struct kq_kqueue *kq, struct kq_poll *p,
    void (*ready)(struct kq_kqueue *, struct kq_poll *, uint32_t));
void kq_uring_timer_set(struct kq_kqueue *kq, int64_t at);
#else	/* built without liburing: never called (KQ_URING is 0) */
static inline int kq_uring_init(struct kq_kqueue *kq) { (void)kq; return ENOSYS; }
static inline void kq_uring_close(struct kq_kqueue *kq) { (void)kq; }
static inline int kq_uring_attach(struct kq_kqueue *kq, struct kq_poll *p)
{ (void)kq, (void)p; return ENOSYS; }
static inline void kq_uring_detach(struct kq_kqueue *kq, struct kq_poll *p)
{ (void)kq, (void)p; }
static inline void kq_uring_forget(struct kq_kqueue *kq, struct kq_poll *p)
{ (void)kq, (void)p; }
static inline void kq_uring_apply(struct kq_kqueue *kq, struct kq_poll *p,
    uint32_t want) { (void)kq, (void)p, (void)want; }
static inline void kq_uring_publish(struct kq_kqueue *kq) { (void)kq; }
static inline int kq_uring_wait(struct kq_kqueue *kq, const struct timespec *ts)
{ (void)kq, (void)ts; return -ENOSYS; }
static inline void kq_uring_reap(struct kq_kqueue *kq) { (void)kq; }
static inline void kq_uring_reap_stale(struct kq_kqueue *kq) { (void)kq; }
static inline void kq_uring_wait_begin(struct kq_kqueue *kq) { (void)kq; }
static inline void kq_uring_commit(struct kq_kqueue *kq) { (void)kq; }
static inline void kq_uring_reap_quiet(struct kq_kqueue *kq) { (void)kq; }
static inline bool kq_uring_post_wake(struct kq_kqueue *kq) { (void)kq; return false; }
static inline bool kq_uring_defuse(struct kq_kqueue *kq) { (void)kq; return false; }
static inline int kq_uring_timer_open(struct kq_kqueue *kq, struct kq_poll *p,
    void (*ready)(struct kq_kqueue *, struct kq_poll *, uint32_t))
{ (void)kq, (void)p, (void)ready; return ENOSYS; }
static inline void kq_uring_timer_set(struct kq_kqueue *kq, int64_t at)
{ (void)kq, (void)at; }
#endif
/* "epoll" or "io_uring": the backend a kqueue runs on (tests, bench) */
const char *kq_backend_name(const struct kq_kqueue *kq);
/* Tests (KQ_STATS only): make the io_uring probe fail as a kernel could
 * (kq_uring_test_fail = KQ_URING_FAIL_*), and forget the process's backend
 * choice and probe. */
#define KQ_URING_FAIL_NONE		0
#define KQ_URING_FAIL_SETUP_ENOSYS	1	/* no io_uring (or seccomp) */
#define KQ_URING_FAIL_SETUP_EPERM	2	/* io_uring_disabled, seccomp */
#define KQ_URING_FAIL_OPCODE		3	/* POLL_ADD missing per the probe */
#define KQ_URING_FAIL_EXT_ARG		4	/* no IORING_FEAT_EXT_ARG */
#define KQ_URING_FAIL_SYNC_CANCEL	5	/* no IORING_REGISTER_SYNC_CANCEL */
#define KQ_URING_FAIL_TIMEOUT		6	/* TIMEOUT(_REMOVE) missing per the probe */
#ifdef KQ_STATS
extern int kq_uring_test_fail;
void kq_backend_test_reset(void);
void kq_uring_test_reset(void);
#endif

/* Edge detector over a process-wide fd: one taker per batch of wake-ups. */
int kq_edge_open(int fd);			/* detector fd or -errno */
bool kq_edge_take(int efd);
/* Tests: number of epoll_ctl calls made by this process.  Kept only in the
 * tests' build (libkqfree_internal, KQ_STATS): a locked add on every
 * epoll_ctl of the hot paths is not the installed library's business. */
#ifdef KQ_STATS
extern _Atomic unsigned long kq_stat_ctl_calls;
#endif

/* ----------------------------------------------------------------- fdnode */

#define KQ_FD_POLL	1	/* epoll accepted the fd */
#define KQ_FD_NOPOLL	2	/* epoll refused it (regular file, /dev/null): always ready */

/* Laid out for the hot paths: a change to one of its knotes (the rearm
 * idiom) and a report (fdnode_ready, READ's event) read the first 80 bytes
 * only.  Measured with cachegrind on the rearm benchmark at 9900 fds: 6.0
 * L1 read misses per delete+add pair before, 5.3 after. */
struct kq_fdnode {
	struct kq_poll poll;		/* the fd's registration (READ/WRITE/EMPTY/PROCDESC) */
	LIST_HEAD(, kq_knote) knotes;	/* every knote with ident == fd */
	int fd;
	int kind;			/* KQ_FD_POLL, KQ_FD_NOPOLL, 0 = not yet probed */
	_Atomic bool closed;		/* set by the close path */
	bool no_fionread;		/* FIONREAD fails (listening socket, eventfd...) */
	bool force_et;			/* edge-triggered even without EV_CLEAR */
	uint32_t revents;		/* what epoll reported last (EOF/HUP state) */
	struct kq_kqueue *kq;
	/* What filter_read.c learned about the file, lazily (typed). */
	bool typed;
	mode_t fmt;			/* st_mode & S_IFMT (0: anon inode) */
	int sotype;			/* SO_TYPE for sockets */
	bool listening;			/* SO_ACCEPTCONN */
	int sofamily;			/* 0 until sock_type() asked */
	bool eventfd;			/* anon_inode:[eventfd] */
	bool kqueue;			/* one of our kqueues */
	bool anonpipe;			/* pipe(2), not a named FIFO */
	bool watch_deferred;		/* not in its slot yet: the probe links it */
	struct kq_fdwatch watch;	/* in fd's registry slot while watched */
	struct kq_fdnode *closed_next;	/* kq->closed stack */
	/* knotes holding an EV_FREEWATCH reference: only then must a close
	 * wake the kqueue (a notice is due); otherwise the next kevent()
	 * cleans up quietly.  Written under kq->lock, read by the close path. */
	_Atomic int nfreewatch;
	bool idle;			/* no knotes: on kq->idle, reaped after flush */
	TAILQ_ENTRY(kq_fdnode) idle_link;
};
TAILQ_HEAD(kq_fdnode_list, kq_fdnode);

/* kqueue.c / fdnode helpers */
/* The node of fd, made if need be; a new one is linked to fd's slot at
 * once, or by its first probe if probe_first (filterops). */
struct kq_fdnode *kq_fdnode_get(struct kq_kqueue *kq, int fd, bool probe_first,
    int *err);
struct kq_fdnode *kq_fdnode_find_closed(struct kq_kqueue *kq, int fd);
void kq_fdnode_put(struct kq_kqueue *kq, struct kq_fdnode *fdn);	/* free if no knotes */
/* Recompute fdn->poll.want from its knotes' pollevents() and schedule it. */
void kq_fdnode_update(struct kq_kqueue *kq, struct kq_fdnode *fdn);
/* epoll reported what kn wants, or will not (edge: the registration is
 * edge-triggered): kn goes on the active queue, to be re-checked by the
 * scan if it is a level knote on an edge-triggered registration. */
void kq_fdnode_knote_ready(struct kq_kqueue *kq, struct kq_knote *kn, bool edge);

/* One knote's share of its fd's registration: the events it wants now (0:
 * none), KQ_POLLET if it wants edges (EV_CLEAR, or its filter asks),
 * KQ_POLLONESHOT if it fires once (EV_ONESHOT, EV_DISPATCH).  The
 * registration is the union (kqueue.c's fdnode_want, which records each
 * knote's share in kn->pollmask): edge-triggered if any knote wants edges,
 * one-shot only if all fire once. */
static inline uint32_t
kq_knote_share(struct kq_kqueue *kq, struct kq_knote *kn)
{
	const struct kq_filterops *fop = kq_knote_fop(kn);
	uint32_t m;

	if (fop->pollevents == NULL || (m = fop->pollevents(kq, kn)) == 0)
		return 0;
	if (kn->flags & EV_CLEAR)
		m |= KQ_POLLET;
	if (kn->flags & (EV_ONESHOT | EV_DISPATCH))
		m |= KQ_POLLONESHOT;
	return m;
}

/*
 * kn, an fd's knote, is new, renewed or changed.  FreeBSD asks its filter
 * at once (f_event after attach or touch): it may be ready already.  epoll
 * does that for us when the flush changes the registration, and a level
 * registration reports again anyway; only an edge-triggered (or one-shot)
 * one that stays as it was needs the scan to look, since epoll makes no new
 * edge for what was there before.  The registration is recomputed only if
 * kn's share of it changed.  Inline: the rearm idiom calls it for every
 * pair, and nothing but its share usually changes.
 */
static inline void
kq_fdnode_knote_changed(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct kq_fdnode *fdn = kn->fdn;
	struct kq_poll *p = &fdn->poll;
	uint32_t share;

	if (fdn->kind != KQ_FD_POLL)
		return;
	share = kq_knote_share(kq, kn);
	if (share != kn->pollmask)
		kq_fdnode_update(kq, fdn);
	if (share != 0 && p->want == p->armed &&
	    (p->armed & (KQ_POLLET | KQ_POLLONESHOT)))
		kq_fdnode_knote_ready(kq, kn, (p->armed & KQ_POLLET) != 0);
}
/* Probe fdn->fd with epoll once (sets fdn->kind); 0 or errno (EBADF). */
int kq_fdnode_probe(struct kq_kqueue *kq, struct kq_fdnode *fdn);
void kq_drain_closed(struct kq_kqueue *kq);
/* Free idle fdnodes that epoll no longer holds (after a flush):
 * kq_fdnode_reap() (inline, below struct kq_kqueue) when there are any. */
void kq_fdnode_reap_idle(struct kq_kqueue *kq);

/* fdreg.c: descriptor numbers.  A watcher is told, once, that the number it
 * watches is being closed or replaced; it is unlinked first.  Its callback
 * runs in the closer's context (any thread, a signal handler, with kevent()
 * running elsewhere) under the slot lock: async-signal-safe, no kq->lock, no
 * malloc/free.  Whoever frees a watcher that may have been told first takes
 * and drops that slot's lock, so a callback in progress has finished. */
int kq_fdreg_reserve(int fd);			/* make fd's slot exist: 0 or ENOMEM */
void kq_fdreg_lock(int fd);			/* nests; no-op without a slot */
void kq_fdreg_unlock(int fd);
/* Wait until whoever holds fd's slot now has let go: the lock taken and
 * dropped, or nothing if the slot is free. */
void kq_fdreg_pass(int fd);
int kq_fdreg_watch(int fd, struct kq_fdwatch *w);	/* under kq_fdreg_lock(fd) */
void kq_fdreg_unwatch(int fd, struct kq_fdwatch *w);	/* under kq_fdreg_lock(fd) */
/* First watcher of fd with these ops, hold() called on it under the lock. */
struct kq_fdwatch *kq_fdreg_find(int fd, const struct kq_fdwatch_ops *ops,
    void (*hold)(struct kq_fdwatch *));
/* The kernel just handed out fd: tell whatever still watches that number
 * (it was closed behind our back). */
void kq_fdreg_forget(int fd);
extern bool kq_close_tracking;		/* KQFREE_CLOSE_TRACKING != 0 */
static inline bool
kq_fdreg_tracking(void)
{
	return kq_close_tracking;
}
/* The library's own descriptors: take one just made (O_CLOEXEC) - moved
 * above 2, protected from the application's close family - or give it back
 * and close it.  kq_fd_own(-1) and failures return -1 with errno.
 * kq_fd_own(expr) evaluates expr (the call that makes the descriptor)
 * inside a kq_fd_making() section, which kq_fd_adopt() ends. */
int kq_fd_adopt(int fd);
#define kq_fd_own(expr)	(kq_fd_making(), kq_fd_adopt(expr))
int kq_fd_close(int fd);
bool kq_fd_owned(int fd);
/* Sections that make a descriptor of the library's (see DESCRIPTORS). */
void kq_fd_making(void);
void kq_fd_made(void);
unsigned long kq_fd_quiet(void);		/* none being made: a generation */
bool kq_fd_settled(unsigned long gen);	/* none made since kq_fd_quiet() */
/* /proc/self/fdinfo/fd into buf (NUL-terminated), inside such a section:
 * bytes read or -1. */
ssize_t kq_read_fdinfo(int fd, char *buf, size_t len);
/* Fork child: close every owned descriptor, forget every watcher.  Process-
 * wide services never close their own fds in a fork child: this did. */
void kq_fdreg_fork_child(void);
/* A child with a copy of our memory that no fork handler started afresh
 * (_Fork, a raw fork, clone() without CLONE_VM): see FORK.  The mark is the
 * first byte of a MADV_WIPEONFORK page (fdreg.c), or kq_fork_mark_none
 * where the kernel has none: such a child cannot be told without a system
 * call and keeps the parent's view (the close path still asks the kernel).
 * Inline: kqueue(), kevent() and kqfree_release() ask on every call. */
extern unsigned char *kq_fork_mark;
extern unsigned char kq_fork_mark_none;
static inline bool
kq_fdreg_copy_child(void)
{
	return __builtin_expect(*(volatile unsigned char *)kq_fork_mark == 0, 0) &&
	    kq_fork_mark != &kq_fork_mark_none;
}
/* A child in our memory, not our process (vfork, clone(CLONE_VM)). */
bool kq_vfork_child(void);
int kq_real_close(int fd);			/* libc's close, bypassing tracking */
/* SO_ERROR stays the application's: reading it clears it on Linux, so an
 * error the library read (for EV_EOF fflags) is kept per fd number until the
 * application's getsockopt(SO_ERROR) takes it (when the kernel has none
 * newer) or the number is closed.  Read-and-keep under kq_fdreg_lock(fd)
 * after checking the fdnode is not closed. */
void kq_fdreg_stash_sockerr(int fd, int err);	/* remember an error we consumed */
int kq_fdreg_take_sockerr(int fd);		/* 0 if none; clears it */
void kq_fdreg_check_new_objects(void);		/* re-run the GOT patch if dlopen() added objects */

/* gotpatch.c: point other objects' GOT entries for the close family at ours,
 * and filter_signal.c's interposers, for code that symbol interposition
 * cannot reach (RTLD_LOCAL modules).
 *
 * LOADER LOCK ORDER: the dynamic loader's locks come before every libkqfree
 * lock.  A module constructor runs inside dlopen() under the loader's lock
 * and may call kqueue()/kevent(), so no libkqfree lock (kq->lock, the global
 * lock, registry locks, gotpatch's own) may be held while calling a function
 * that takes a loader lock: dlopen, dlclose, dlsym, dladdr, dlinfo,
 * dl_iterate_phdr.  A pthread_once routine that calls one is a lock too:
 * run it from our own constructor.  gotpatch.c's lock is a leaf: it covers
 * the GOT page writes only.  kq_gotpatch_apply() may be re-entered from a
 * constructor (the loader's lock is recursive).
 *
 * NEVER UNLOADED: libkqfree.so is linked -z nodelete, because patched GOT
 * entries elsewhere point into it; dlclose() of the module that brought it
 * in leaves it (and its kqueues) in place. */
struct kq_interpose {
	const char *name;
	void *fn;
};
void kq_gotpatch_apply(const struct kq_interpose *tab, size_t n);
/* An object was added since the last completed apply: usually one load of
 * the loader's own count (gotpatch.c), else a dl_iterate_phdr() call. */
bool kq_gotpatch_stale(void);
void kq_gotpatch_fork_child(void);	/* fork child: forget other threads' walks */
/* filter_signal.c's interposers (dispositions, sigwait*, exec), for the
 * same patch: a program whose sigaction() binds to libc would replace the
 * handler that counts.  fdreg.c patches them whether or not close
 * tracking is on. */
#define KQ_SIGNAL_NINTERPOSE	21
extern const struct kq_interpose kq_signal_interpose[KQ_SIGNAL_NINTERPOSE];

/* ----------------------------------------------------------------- kqueue */

/* filter_timer.c's 4-ary min-heap (timerheap.c): each entry caches its
 * knote's deadline, so sifting reads one cache line per level and no knote
 * but the moved ones. */
struct kq_theap_entry {
	int64_t at;			/* CLOCK_MONOTONIC deadline */
	struct kq_knote *kn;
};
struct kq_timer_heap {
	struct kq_theap_entry *v;	/* node i at v[i + 3] (timerheap.h) */
	uint32_t n, cap;
	uint32_t ndead;			/* entries of deleted timers (kn NULL) */
};

struct kq_kqueue {
	int fd;				/* the library's own descriptor of the
					 * epoll set; the application holds
					 * aliases of it (kqueue.c) */
	pthread_mutex_t lock;
	_Atomic int refs;		/* 1 while alive + one per call in flight */
	bool dead;			/* no alias left; waiters finish, nothing new */
	_Atomic bool suspect;		/* an alias was closed: alive? */
	LIST_HEAD(, kq_alias) aliases;	/* under kq_global_lock */
	pid_t pid;			/* creator; fork children never see it */
	LIST_ENTRY(kq_kqueue) all;	/* kq_global list */

	struct kq_knote_hash khash;	/* knotes whose ident is not an fd */
	struct kq_slab slab[2];		/* knote memory: small, whole (knote.c) */
	struct kq_knote_list active;
	struct kq_knote_list notices;
	struct kq_knote_list polled;	/* KN_POLLED knotes */
	size_t nknotes;

	/* backend */
	struct kq_uring *uring;		/* NULL: epoll (BACKENDS) */
	/* threads between the scan's unlock before its wait and the relock
	 * after it (io_uring: no level re-arm is deferred while one sleeps) */
	_Atomic int sleepers;
	struct kq_poll **slots;
	uint32_t nslots, slot_free;	/* free list threaded through NULL slots */
	uint32_t npolls;		/* registered (kq_poll_register) */
	uint32_t *slot_gen;
	uint32_t *slot_next_free;
	struct kq_poll_list dirty;

	/* per-fd nodes */
	struct kq_fdnode **fds;
	int nfds;
	struct kq_fdnode_list idle;
	_Atomic(struct kq_fdnode *) closed;	/* lock-free stack from the close path */
	struct kq_fdnode *fdnode_cache;	/* freed nodes for reuse (kqueue.c) */
	unsigned nfdnode_cached;

	/* wake eventfd: readable while active/notices pending or kicked */
	struct kq_poll wake;
	_Atomic bool kicked;
	bool wake_due;			/* under lock: kq_unlock() writes an edge */
	bool wake_unread;		/* io_uring: an edge taken, count not read */
	_Atomic unsigned wake_owed;	/* edges due, not yet written (+ KQ_WAKE_DEFUSE) */

	/* mechanisms, created on first use, each one fd for the whole kqueue */
	struct kq_poll timer;		/* timerfd (io_uring: ring timeout), filter_timer.c */
	struct kq_timer_heap theap;
	int64_t timer_armed;		/* what the timerfd / ring timeout is set to (INT64_MAX: not) */
	int64_t timer_due;		/* timers due by then may not be expired yet */
	int64_t change_now;		/* CLOCK_MONOTONIC for this call's changes, 0 = not read */
	struct kq_ino_kq *ino;		/* inotify.c: its subscriptions' mail */
	_Atomic bool ino_mail;		/* another kqueue routed inotify events here */
	void *vnode_priv;		/* filter_vnode.c: this kqueue's watches */
	struct kq_poll sigpoll;		/* global signal eventfd, filter_signal.c */
	size_t nsigknotes;
	void *proc_priv;		/* filter_proc.c */
};

/* fd's live node or NULL (inline: every change to an fd's knote asks) */
static inline struct kq_fdnode *
kq_fdnode_find(struct kq_kqueue *kq, int fd)
{
	struct kq_fdnode *fdn;

	if (fd < 0 || fd >= kq->nfds || (fdn = kq->fds[fd]) == NULL)
		return NULL;
	if (atomic_load(&fdn->closed))
		return kq_fdnode_find_closed(kq, fd);
	return fdn;
}

/* kq_knote_find() for a filter whose ident is an fd (fop->isfd). */
static inline struct kq_knote *
kq_knote_find_fd(struct kq_kqueue *kq, short filter, uintptr_t ident)
{
	struct kq_fdnode *fdn;
	struct kq_knote *kn;

	if (ident > INT_MAX || (fdn = kq_fdnode_find(kq, (int)ident)) == NULL)
		return NULL;
	LIST_FOREACH(kn, &fdn->knotes, fdlink)
		if (kn->filter == filter)
			return kn;
	return NULL;
}

/* Every kevent() pass ends with these; there is seldom anything to do, and
 * that is decided without a call. */
static inline void
kq_backend_flush(struct kq_kqueue *kq)
{
	if (!TAILQ_EMPTY(&kq->dirty))
		kq_backend_flush_dirty(kq, false);
}

/* The flush as kevent() returns: io_uring leaves level re-arms queued for
 * the next call's wait (BACKENDS, deferred re-arms). */
static inline void
kq_backend_flush_exit(struct kq_kqueue *kq)
{
	if (!TAILQ_EMPTY(&kq->dirty))
		kq_backend_flush_dirty(kq, true);
}

/* Under kq->lock, at the top of each pass of the scan, before anything is
 * collected (io_uring): what the kernel said before this pass.  A level
 * report among it is stale, and becomes a re-arm that the next wait's
 * enter makes, so the report it gives is fresh. */
static inline void
kq_backend_reap_stale(struct kq_kqueue *kq)
{
	if (KQ_URING(kq))
		kq_uring_reap_stale(kq);
}

/* After a wait, under kq->lock: what the io_uring backend's kernel said
 * (epoll's answers came with the wait). */
static inline void
kq_backend_reap(struct kq_kqueue *kq)
{
	if (KQ_URING(kq))
		kq_uring_reap(kq);
}

/* Before kevent() returns (io_uring): what is still in the SQ reaches the
 * kernel now - a new poll, so the kqueue fd polls readable when its fd is;
 * a removal, so the application's next close() is a real one - and what
 * that made the kernel say is reaped.  Deferred level re-arms stay queued
 * if a processed CQE can be left in the CQ to keep the kqueue fd readable
 * and no thread sleeps in a wait; else they go in now too. */
static inline void
kq_backend_commit(struct kq_kqueue *kq)
{
	if (KQ_URING(kq))
		kq_uring_commit(kq);
}

static inline void
kq_fdnode_reap(struct kq_kqueue *kq)
{
	if (!TAILQ_EMPTY(&kq->idle))
		kq_fdnode_reap_idle(kq);
}

/* inotify.c: the process's one inotify instance (see INOTIFY above).
 * Every call with the caller's kq->lock held; the ones marked so also under
 * kq_ino_lock(), which the caller holds across an add and the subscribe (or
 * kq_ino_unused) that follows it, so no other kqueue removes the watch in
 * between.  Paths are /proc/self/fd/N forms naming the watched inode. */
struct kq_ino_kq;
struct kq_ino_sub {		/* one kqueue's interest in one wd */
	LIST_ENTRY(kq_ino_sub) link;	/* the wd's subscribers (ino_lock) */
	struct kq_kqueue *kq;
	int wd;
	uint32_t mask;			/* events routed to this subscriber */
	bool linked;			/* false once the kernel dropped the wd */
};
/* Events for kq, as read() from an instance of its own would give them. */
typedef void kq_ino_deliver_fn(struct kq_kqueue *kq, const char *buf, size_t len);
int kq_ino_join(struct kq_kqueue *kq, kq_ino_deliver_fn *deliver);	/* 0 or errno */
void kq_ino_leave(struct kq_kqueue *kq);	/* it has no subscription left */
void kq_ino_mail(struct kq_kqueue *kq);		/* deliver what was routed to kq */
void kq_ino_lock(void);
void kq_ino_unlock(void);
void kq_ino_fork_child(void);		/* fork child: forget the instance */
int kq_ino_add(const char *path, uint32_t mask);	/* locked: wd or -errno */
void kq_ino_unused(int wd);		/* locked: rm the wd if nobody subscribed */
void kq_ino_subscribe(struct kq_ino_sub *s, struct kq_kqueue *kq, int wd,
    uint32_t mask);			/* locked, right after kq_ino_add */
/* locked: s needs mask now; the kernel's is brought to the union by path
 * (NULL: no path, a superset stays). */
void kq_ino_update(struct kq_ino_sub *s, uint32_t mask, const char *path);
void kq_ino_unsubscribe(struct kq_ino_sub *s, const char *path);	/* locked */

/* filter_vnode.c: the kqueue's inotify watches (its subscriptions to the
 * process's instance), shared with READ on a regular file (re-armed when
 * the file grows).  mask = IN_* bits this knote needs, added to the inode's
 * shared watch and kept while the watch lives;
 * calling again for the same knote is cheap.  kn->u.vnode.wd > 0 while
 * watched, -1 otherwise.  Every knote on the watch is activated on any event
 * about the inode itself (not its directory entries), and on overflow.
 * Detach must call kq_inotify_unwatch, also at wd -1 (the kernel dropped
 * the watch, IN_IGNORED): the kqueue may still hold the instance for it.
 * u.vnode.size/nlink belong to VNODE knotes only. */
int kq_inotify_watch(struct kq_kqueue *kq, struct kq_knote *kn, int fd, uint32_t mask);
void kq_inotify_unwatch_held(struct kq_kqueue *kq, struct kq_knote *kn);
/* Inline: every READ/WRITE detach calls it, and a kqueue without a watch
 * (kq->vnode_priv NULL: no inotify state at all) holds nothing for kn. */
static inline void
kq_inotify_unwatch(struct kq_kqueue *kq, struct kq_knote *kn)
{
	if (kq->vnode_priv == NULL)
		kn->u.vnode.wd = -1;
	else
		kq_inotify_unwatch_held(kq, kn);
}

/* procconn.c: the netlink proc connector socket (CAP_NET_ADMIN in the
 * initial namespaces).  open: an owned, non-blocking fd subscribed to forks,
 * execs and exits, or -errno (-ENOTSUP where Linux will not tell us).  read:
 * every queued message, in the kernel's order, through fn (thread creations
 * and thread exits filtered out); true if the kernel dropped some. */
#define KQ_PROCMSG_FORK	1	/* pid forked child */
#define KQ_PROCMSG_EXEC	2	/* pid executed a program */
#define KQ_PROCMSG_EXIT	3	/* pid exited with wait(2) status */
struct kq_procmsg {
	int what;
	pid_t pid;
	pid_t child;
	int status;
};
int kq_procconn_open(void);
void kq_procconn_close(int fd);
bool kq_procconn_read(int fd, void (*fn)(void *arg, const struct kq_procmsg *m),
    void *arg);

/* kqueue.c */
void kq_kick(struct kq_kqueue *kq);		/* make the kq fd readable (signal-safe) */
void kq_wake_post(struct kq_kqueue *kq);	/* one wake edge, unconditionally */
/* Under kq->lock, after scan: the wake fd's edge is made due or defused. */
void kq_update_wake(struct kq_kqueue *kq);
/* Unlock kq->lock, then write the edge kq_update_wake() made due. */
void kq_unlock(struct kq_kqueue *kq);
#define KQ_WAKE_DEFUSE	0x80000000u	/* wake_owed: last writer re-checks */
void kq_put(struct kq_kqueue *kq);		/* drop a reference */
/* The kqueue an application descriptor names, referenced; search: also
 * numbers not seen before (dups), never under a kqueue lock. */
struct kq_kqueue *kq_lookup(int fd, bool search);
void kq_reap_suspects_now(void);
/* Kill kqueues nothing names (see DESCRIPTORS).  Every kqueue(), kevent()
 * and kqfree_release() asks: inline, none is the common answer. */
extern _Atomic int kq_suspects;		/* kqueues with kq->suspect set */
static inline void
kq_reap_suspects(void)
{
	if (!kq_fdreg_tracking() ||
	    atomic_load_explicit(&kq_suspects, memory_order_relaxed) != 0)
		kq_reap_suspects_now();
}
void kq_fork_adopt_child(void);		/* kq_fork_adopt()'s slow path */
/* A copy child's first call runs the fork handlers (see FORK): one load. */
static inline void
kq_fork_adopt(void)
{
	if (kq_fdreg_copy_child())
		kq_fork_adopt_child();
}
int64_t kq_pending_count(int fd);		/* queued events of kqueue fd, -1 if none */
int64_t kq_now_ns(clockid_t clk);

/* filter_timer.c: the timerfd (io_uring: the ring timeout) is set once per
 * call, not per change: after the changelist and before every wait
 * (kevent.c), to the earliest deadline if that is earlier than what it is
 * set to. */
void kq_timer_flush_armed(struct kq_kqueue *kq);
/* Timers the timerfd found due are expired by the scan, as many as it has
 * room for: this queues due timers until `room` more knotes are queued (a
 * timer already queued or disabled takes none), in deadline order. */
void kq_timer_expire_due_armed(struct kq_kqueue *kq, int room);
/* A timer is due and not yet expired: the kqueue fd must poll readable. */
bool kq_timer_backlog_armed(struct kq_kqueue *kq);
/* The three above are asked on every kevent() pass, most often with no
 * timer armed at all: that is decided inline, without a call. */
static inline bool
kq_timer_armed(const struct kq_kqueue *kq)
{
	return kq->theap.n != kq->theap.ndead;
}
static inline void
kq_timer_flush(struct kq_kqueue *kq)
{
	if (kq_timer_armed(kq))
		kq_timer_flush_armed(kq);
}
static inline void
kq_timer_expire_due(struct kq_kqueue *kq, int room)
{
	if (kq_timer_armed(kq))
		kq_timer_expire_due_armed(kq, room);
}
static inline bool
kq_timer_backlog(struct kq_kqueue *kq)
{
	return kq_timer_armed(kq) && kq_timer_backlog_armed(kq);
}
void kq_timer_free(struct kq_kqueue *kq);	/* kqueue freed: the heap's array */

/* kevent.c: the ops of a filter number, NULL if unknown */
static inline const struct kq_filterops *
kq_filterops_lookup(short filter)
{
	if (filter >= 0 || filter < -EVFILT_SYSCOUNT)
		return NULL;
	return kq_filters[-filter];
}

/*
 * knote.c's table of the knotes whose ident is not an fd (kq->khash).
 * A bucket is the ident's own low bits, XORed with a Fibonacci hash of the
 * bits above them and the filter.  Idents are mostly small sequential
 * integers (timer and user event numbers, pids, signals): a run of as many
 * of them as there are buckets then takes every bucket once, neighbours in
 * neighbouring buckets, so walking idents in order walks the table in order
 * and a changelist's lookups hit lines the previous ones loaded (Fibonacci
 * hashing alone scattered them: a cache miss per lookup).  Pointers as
 * idents have zero low bits: a run of them sharing the bits above falls in
 * the buckets their low bits pick (one in 64 for a 64-byte stride), the
 * next run, with other bits above, elsewhere.  Measured with 100k and 1M
 * idents, strides 8 to 2^20: no chain beyond 7 (test_knote.c).
 * Only for a table that exists (h->bits > 0: a shift by 64 is undefined).
 */
static inline uint32_t
kq_khash_bucket(const struct kq_knote_hash *h, short filter, uintptr_t ident)
{
	uint64_t x = (uint64_t)ident;
	uint64_t above = ((x >> h->bits) + ((uint64_t)(uint16_t)filter << 48)) *
	    0x9e3779b97f4a7c15ull;

	return (uint32_t)(x ^ (above >> (64 - h->bits))) & h->mask;
}

/*
 * The link of kq->khash that points at (filter, ident)'s knote or, when it
 * has none, the end of the chain it would go at; NULL while there is no
 * table.  bucket: kq_khash_bucket()'s for the table as it is now.
 */
static inline struct kq_knote **
kq_khash_link(struct kq_knote_hash *h, uint32_t bucket, short filter,
    uintptr_t ident)
{
	struct kq_knote **pp;

	if (h->b == NULL)
		return NULL;
	pp = &h->b[bucket];
	while (*pp != NULL && ((*pp)->ident != ident || (*pp)->filter != filter))
		pp = &(*pp)->next;
	return pp;
}

/* Mark kn active and queue it unless queued or disabled.  No kick: every
 * path that activates ends in kq_update_wake().  Inline: once per event. */
static inline void
kq_knote_activate(struct kq_kqueue *kq, struct kq_knote *kn)
{
	kn->status |= KN_ACTIVE;
	if (kn->status & (KN_QUEUED | KN_DISABLED))
		return;
	kn->status |= KN_QUEUED;
	TAILQ_INSERT_TAIL(&kq->active, kn, link);
}

/* The knote (filter, ident) of any filter, NULL if none. */
static inline struct kq_knote *
kq_knote_find(struct kq_kqueue *kq, short filter, uintptr_t ident)
{
	const struct kq_filterops *fop = kq_filterops_lookup(filter);
	const struct kq_knote_hash *h = &kq->khash;
	struct kq_knote *kn;

	if (fop != NULL && fop->isfd)
		return kq_knote_find_fd(kq, filter, ident);
	if (h->b == NULL)
		return NULL;
	kn = h->b[kq_khash_bucket(h, filter, ident)];
	while (kn != NULL && (kn->ident != ident || kn->filter != filter))
		kn = kn->next;
	return kn;
}

/* filter_signal.c owns the process's signal dispositions while a signal is
 * watched: every libc call that sets one (sigaction, signal, bsd_signal,
 * ssignal, sysv_signal, __sysv_signal, sigset, sigignore, siginterrupt),
 * sigwait*() and the exec family (a watched signal the application ignores
 * is SIG_IGN across exec) are interposed; its fds are owned (kq_fd_own).
 * posix_spawn(), system() and popen() are not covered: glibc's child resets
 * every caught signal, ours included, to SIG_DFL.  A vfork() child (our
 * memory, its own process: kq_vfork_child) records nothing: what it sets
 * goes straight to libc, without a lock a parent thread may hold. */
/* filter_signal.c: was an EINTR only caused by our handler running for a
 * signal the application ignores?  Thread-local counters, snapshot before
 * waiting. */
uint64_t kq_signal_intr_snapshot(void);
void kq_signal_fork_child(void);	/* fork child: dispositions back, fds forgotten */
bool kq_signal_phantom_eintr(uint64_t snapshot);

#endif /* KQ_INTERNAL_H */
