/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * EVFILT_PROC (ident: a pid) and EVFILT_PROCDESC (ident: a pidfd, Linux's
 * process descriptor).
 *
 * NOTE_EXIT.  Each PROC knote opens a pidfd for its process (the library's
 * own descriptor, kq_fd_own) and registers it in the kqueue's epoll set
 * (edge-triggered: a pidfd becomes readable once, when the process has
 * exited).  PROCDESC knotes use the user's pidfd through its fdnode.  The
 * wait(2) status comes, without reaping anything, from waitid(P_PIDFD,
 * WNOWAIT) for our children; for other processes from PIDFD_GET_INFO's
 * exit_code (Linux 6.15+, available once the parent reaped it), else from
 * /proc/PID/stat's exit_code while it is a zombie (PID: its number in
 * /proc's pid namespace, from the pidfd's fdinfo); else 0.  As on FreeBSD
 * the exit report carries EV_EOF|EV_ONESHOT (and the implied EV_CLEAR), and
 * a knote that did not ask for NOTE_EXIT dies silently at exit (a
 * NOTE_FREE_DROP notice if it held an EV_FREEWATCH reference).  A disabled
 * knote keeps its exit, reported or dropped, until EV_ENABLE.
 *
 * NOTE_FORK, NOTE_EXEC, NOTE_TRACK.  Linux tells about forks and execs of
 * arbitrary processes only through the proc connector (procconn.c).  A
 * kqueue that has knotes asking for them opens one connector socket,
 * registered in its epoll set; it is read whenever it is readable and
 * before an exit is reported, so a fork or exec that happened before the
 * exit is never reported after it.  NOTE_TRACK makes a knote for each child
 * (same fflags and udata, no EV_FREEWATCH reference) that first reports
 * NOTE_CHILD with the parent's pid in data.  The connector's own fork and
 * exit messages are enough for that: a child that exited, even was reaped,
 * before the connector was read still gets its NOTE_CHILD, its NOTE_EXIT
 * (status from the exit message) and its own children tracked.  Without
 * the connector, EV_ADD asking for any of them fails with ENOTSUP.
 * Messages name pids, which are reused: attach first reads what was queued
 * before it (about an earlier holder of the pid, maybe), and once the
 * connector has told a pid's exit, its forks and execs are another
 * process's (the knote's own exit still comes from its pidfd).
 *
 * Differences from FreeBSD: one knote per child, not two; its NOTE_CHILD
 * report therefore shows the child's knote's flags (EV_CLEAR, not
 * EV_ONESHOT), and whatever else it has to say comes in the next report.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

/*
 * PIDFD_GET_INFO from include/uapi/linux/pidfd.h (Linux 6.13; exit_code
 * since 6.15).  Debian 12's headers predate it.  The kernel takes the
 * struct size from the ioctl number and accepts the first published size
 * (64 bytes), which already holds exit_code.
 */
struct kq_pidfd_info {
	uint64_t mask;
	uint64_t cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
};
_Static_assert(sizeof(struct kq_pidfd_info) == 64, "PIDFD_INFO_SIZE_VER0");
#define KQ_PIDFD_GET_INFO	_IOWR(0xFF, 11, struct kq_pidfd_info)
#define KQ_PIDFD_INFO_EXIT	(1ull << 3)

#define PROC_NOTE_CONNECTOR	(NOTE_FORK | NOTE_EXEC | NOTE_TRACK)

/* kn->u.proc.state */
#define KP_EXITED	0x01	/* exit known: u.proc.status is the wait status */
#define KP_DROP		0x02	/* exited with nothing to report: dies unreported
				 * (FreeBSD's EV_DROP) once enabled */
#define KP_NLREF	0x04	/* holds a reference on the kqueue's connector */
#define KP_CONNONLY	0x08	/* NOTE_TRACK child without a pidfd: on pk->conn,
				 * its exit comes from the connector */
#define KP_PENDING	0x10	/* just learnt: try a pidfd after the read */
#define KP_SPLIT	0x20	/* reported NOTE_CHILD alone; the rest follows */
#define KP_EXITMSG	0x40	/* the connector told its exit: later messages
				 * about this pid are of a process that reused it */
#define KP_ATTACHING	0x80	/* attach is reading what was queued before it */

/* kq->proc_priv */
struct proc_kq {
	struct kq_poll nl;		/* proc connector socket, fd -1 if none */
	unsigned nl_users;		/* knotes that need it (KP_NLREF, PROCDESC) */
	LIST_HEAD(, kq_knote) conn;	/* KP_CONNONLY knotes (each holds KP_NLREF) */
	struct proc_pd {		/* PROCDESC knotes that need it */
		pid_t pid;
		struct kq_knote *kn;
	} *pd;
	size_t npd, pdcap;
};

static void proc_nl_drain(struct kq_kqueue *kq);
static void proc_nl_service(struct kq_kqueue *kq);

/* ----------------------------------------------------------- exit status */

static int
proc_status_of_siginfo(const siginfo_t *si)
{
	switch (si->si_code) {
	case CLD_EXITED:
		return (si->si_status & 0xff) << 8;
	case CLD_KILLED:
		return si->si_status & 0x7f;
	case CLD_DUMPED:
		return (si->si_status & 0x7f) | 0x80;
	default:
		return 0;
	}
}

static bool
proc_info_exit(int pidfd, int *status)
{
	struct kq_pidfd_info info;

	memset(&info, 0, sizeof info);
	info.mask = KQ_PIDFD_INFO_EXIT;
	if (ioctl(pidfd, KQ_PIDFD_GET_INFO, &info) != 0 ||
	    !(info.mask & KQ_PIDFD_INFO_EXIT))
		return false;
	*status = info.exit_code;
	return true;
}

static ssize_t
proc_read_file(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	fd = kq_fd_own(open(path, O_RDONLY | O_CLOEXEC));
	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	kq_fd_close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

/* exit_code, field 52 of /proc/PID/stat: readable while it is a zombie. */
static bool
proc_stat_exit(pid_t pid, int *status)
{
	char path[64], buf[1024], *p;
	int field;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (proc_read_file(path, buf, sizeof buf) < 0)
		return false;
	/* the command name may hold spaces and parentheses */
	if ((p = strrchr(buf, ')')) == NULL)
		return false;
	p++;
	for (field = 3; field < 52 && p != NULL; field++)
		p = strchr(p + 1, ' ');
	if (p == NULL)
		return false;
	*status = (int)strtol(p + 1, NULL, 10);
	return true;
}

static pid_t proc_pidfd_pid(int fd);

/* The exited process's wait(2) status, without reaping it. */
static int
proc_exit_status(int pidfd)
{
	siginfo_t si;
	pid_t pid;
	int status;

	memset(&si, 0, sizeof si);
	if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOWAIT | WNOHANG) == 0 &&
	    si.si_pid != 0)
		return proc_status_of_siginfo(&si);
	/* Not our child, or already reaped.  Its parent may reap it while we
	 * look: the zombie's /proc entry goes, the pidfd's exit info comes;
	 * so ask both, twice.  /proc may belong to another pid namespace
	 * than ours (the pid we were given is a number there too, of some
	 * other process): the pidfd says which number the process has in it
	 * (0 if none). */
	pid = proc_pidfd_pid(pidfd);
	for (int tries = 0; tries < 2; tries++) {
		if (proc_info_exit(pidfd, &status))
			return status;
		if (pid > 0 && proc_stat_exit(pid, &status) &&
		    pidfd_send_signal(pidfd, 0, NULL, 0) == 0)
			return status;	/* still a zombie: not a reused pid */
	}
	return proc_info_exit(pidfd, &status) ? status : 0;
}

/* The pid a pidfd refers to (/proc/self/fdinfo), or -1. */
static pid_t
proc_pidfd_pid(int fd)
{
	char buf[1024], *p;

	if (kq_read_fdinfo(fd, buf, sizeof buf) < 0)
		return -1;
	if ((p = strstr(buf, "\nPid:")) == NULL)
		return -1;
	return (pid_t)strtol(p + 5, NULL, 10);
}

/* ------------------------------------------------------ proc connector */

static struct proc_kq *
proc_kq_get(struct kq_kqueue *kq)
{
	struct proc_kq *pk = kq->proc_priv;

	if (pk == NULL) {
		pk = calloc(1, sizeof *pk);
		if (pk == NULL)
			return NULL;
		pk->nl.fd = -1;
		LIST_INIT(&pk->conn);
		kq->proc_priv = pk;
	}
	return pk;
}

static void
proc_kq_put(struct kq_kqueue *kq)
{
	struct proc_kq *pk = kq->proc_priv;

	if (pk == NULL || pk->nl_users > 0 || pk->npd > 0)
		return;
	free(pk->pd);
	free(pk);
	kq->proc_priv = NULL;
}

static void
proc_nl_ready(struct kq_kqueue *kq, struct kq_poll *p, uint32_t revents)
{
	(void)p, (void)revents;
	proc_nl_service(kq);
}

static int
proc_nl_open(struct kq_kqueue *kq, struct proc_kq *pk)
{
	int fd, err;

	if ((fd = kq_procconn_open()) < 0)
		return -fd;
	memset(&pk->nl, 0, sizeof pk->nl);
	pk->nl.fd = fd;
	pk->nl.want = KQ_POLLIN;
	pk->nl.ready = proc_nl_ready;
	pk->nl.owner = pk;
	if ((err = kq_poll_register(kq, &pk->nl)) != 0)
		goto fail;
	if ((err = kq_backend_attach(kq, &pk->nl)) != 0) {
		kq_poll_unregister(kq, &pk->nl);
		goto fail;
	}
	return 0;
fail:
	kq_procconn_close(fd);
	pk->nl.fd = -1;
	return err;
}

static void
proc_nl_close(struct kq_kqueue *kq, struct proc_kq *pk)
{
	kq_backend_detach(kq, &pk->nl);
	kq_poll_unregister(kq, &pk->nl);
	kq_procconn_close(pk->nl.fd);
	pk->nl.fd = -1;
}

/* A knote starts needing the connector. */
static int
proc_nl_ref(struct kq_kqueue *kq)
{
	struct proc_kq *pk = proc_kq_get(kq);
	int err;

	if (pk == NULL)
		return ENOMEM;
	if (pk->nl_users == 0 && pk->nl.fd < 0 &&
	    (err = proc_nl_open(kq, pk)) != 0) {
		proc_kq_put(kq);
		return err;
	}
	pk->nl_users++;
	return 0;
}

/* May close the connector and free kq->proc_priv. */
static void
proc_nl_unref(struct kq_kqueue *kq)
{
	struct proc_kq *pk = kq->proc_priv;

	if (pk == NULL || pk->nl_users == 0)
		return;
	if (--pk->nl_users == 0)
		proc_nl_close(kq, pk);
	proc_kq_put(kq);
}

static int
proc_pd_add(struct kq_kqueue *kq, struct kq_knote *kn, pid_t pid)
{
	struct proc_kq *pk = kq->proc_priv;

	if (pk->npd == pk->pdcap) {
		size_t n = pk->pdcap ? pk->pdcap * 2 : 4;
		struct proc_pd *v = realloc(pk->pd, n * sizeof *v);
		if (v == NULL)
			return ENOMEM;
		pk->pd = v;
		pk->pdcap = n;
	}
	pk->pd[pk->npd].pid = pid;
	pk->pd[pk->npd].kn = kn;
	pk->npd++;
	return 0;
}

static void
proc_pd_remove(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct proc_kq *pk = kq->proc_priv;

	if (pk == NULL)
		return;
	for (size_t i = 0; i < pk->npd; i++) {
		if (pk->pd[i].kn == kn) {
			pk->pd[i] = pk->pd[--pk->npd];
			return;
		}
	}
}

/* ------------------------------------------------------- a knote's pidfd */

static void proc_pidfd_ready(struct kq_kqueue *kq, struct kq_poll *p,
    uint32_t revents);

/* Register fd (owned) for kn; on failure fd is closed. */
static int
proc_pidfd_attach(struct kq_kqueue *kq, struct kq_knote *kn, int fd)
{
	struct kq_poll *p;
	int err;

	if ((p = calloc(1, sizeof *p)) == NULL) {
		kq_fd_close(fd);
		return ENOMEM;
	}
	p->fd = fd;
	p->want = KQ_POLLIN | KQ_POLLET;
	p->ready = proc_pidfd_ready;
	p->owner = kn;
	if ((err = kq_poll_register(kq, p)) != 0)
		goto fail;
	if ((err = kq_backend_attach(kq, p)) != 0) {
		kq_poll_unregister(kq, p);
		goto fail;
	}
	kn->u.proc.pidpoll = p;
	return 0;
fail:
	kq_fd_close(fd);
	free(p);
	return err;
}

static void
proc_close_pidfd(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct kq_poll *p = kn->u.proc.pidpoll;

	if (p == NULL)
		return;
	kq_backend_detach(kq, p);
	kq_poll_unregister(kq, p);
	kq_fd_close(p->fd);
	free(p);
	kn->u.proc.pidpoll = NULL;
}

/*
 * A knote that must die unreported (KP_DROP) and is enabled: have a ready
 * callback run soon, the one place where it may be released (never inside
 * the scan's event(), nor while the connector is being read).  Its pidfd,
 * kept for this, is made level-triggered; a connector-only knote kicks the
 * connector socket, which is always writable.
 */
static void
proc_kick(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct kq_poll *p = kn->u.proc.pidpoll;
	struct proc_kq *pk = kq->proc_priv;

	if (p != NULL) {
		p->want = KQ_POLLIN;
		kq_backend_update(kq, p);
	} else if (pk != NULL && pk->nl.fd >= 0 &&
	    !(pk->nl.want & KQ_POLLOUT)) {
		pk->nl.want = KQ_POLLIN | KQ_POLLOUT;
		kq_backend_update(kq, &pk->nl);
	}
}

/*
 * The process has exited with this wait status.  As FreeBSD's filt_proc:
 * NOTE_EXIT if it was asked for, and the knote then reports once more and
 * dies; with nothing to report it dies silently (EV_DROP) - but a disabled
 * knote keeps it all until EV_ENABLE.  release: the caller is a ready
 * callback that may free kn now.
 */
static void
proc_exited(struct kq_kqueue *kq, struct kq_knote *kn, int status,
    bool release)
{
	kn->u.proc.state = (kn->u.proc.state & ~KP_PENDING) | KP_EXITED;
	kn->u.proc.status = status;
	if (kn->sfflags & NOTE_EXIT)
		kn->fflags |= NOTE_EXIT;
	if (kn->fflags != 0) {
		proc_close_pidfd(kq, kn);
		kq_knote_activate(kq, kn);
		return;
	}
	kn->u.proc.state |= KP_DROP;
	if (kn->status & KN_DISABLED) {
		/* the pidfd stays (quiet) to kick the drop at EV_ENABLE */
		if (kn->u.proc.pidpoll != NULL) {
			kn->u.proc.pidpoll->want = 0;
			kq_backend_update(kq, kn->u.proc.pidpoll);
		}
	} else if (release) {
		kq_knote_release(kq, kn, NOTE_FREE_DROP, NULL);
	} else {
		proc_kick(kq, kn);
	}
}

/* ---------------------------------------------------------- NOTE_TRACK */

/*
 * NOTE_TRACK: a knote for the new child with the parent's fflags and udata
 * (no EV_FREEWATCH reference), reporting NOTE_CHILD with the parent's pid
 * in data.  It starts connector-only: its pidfd is opened once the
 * connector has been read to the end (proc_settle), so a child that has
 * already exited - even been reaped - is known from its exit message, and
 * its own children from their fork messages, before any pidfd is tried.
 */
static void
proc_track(struct kq_kqueue *kq, struct kq_knote *parent, pid_t child)
{
	struct proc_kq *pk = kq->proc_priv;
	struct kq_knote *kn;

	if (kq_knote_find(kq, EVFILT_PROC, (uintptr_t)child) != NULL)
		return;
	if ((kn = kq_knote_alloc(kq, &kq_filt_proc)) != NULL) {
		kn->ident = (uintptr_t)child;
		kn->filter = EVFILT_PROC;
		if (kq_knote_insert(kq, kn, NULL) != 0) {
			kq_knote_free(kq, kn);
			kn = NULL;
		}
	}
	if (kn == NULL) {
		parent->fflags |= NOTE_TRACKERR;
		kq_knote_activate(kq, parent);
		return;
	}
	kn->flags = parent->flags;
	kn->udata = parent->udata;
	kn->sfflags = parent->sfflags;
	kn->sdata = (int64_t)parent->ident;
	kn->u.proc.pidpoll = NULL;
	kn->u.proc.state = KP_CONNONLY | KP_PENDING | KP_NLREF;
	pk->nl_users++;		/* open: the parent holds it */
	LIST_INSERT_HEAD(&pk->conn, kn, u.proc.cnlink);
	kn->fflags = NOTE_CHILD;
	kn->data = (int64_t)parent->ident;
	kq_knote_activate(kq, kn);
}

static void
proc_note(struct kq_kqueue *kq, pid_t pid, unsigned hint, pid_t child)
{
	struct proc_kq *pk = kq->proc_priv;
	struct kq_knote *kn;

	kn = kq_knote_find(kq, EVFILT_PROC, (uintptr_t)pid);
	if (kn != NULL &&
	    !(kn->u.proc.state & (KP_EXITED | KP_EXITMSG | KP_ATTACHING))) {
		if (kn->sfflags & hint) {
			kn->fflags |= hint;
			kq_knote_activate(kq, kn);
		}
		if (hint == NOTE_FORK && (kn->sfflags & NOTE_TRACK))
			proc_track(kq, kn, child);
	}
	for (size_t i = 0; i < pk->npd; i++) {
		kn = pk->pd[i].kn;
		if (pk->pd[i].pid != pid || pid <= 0 || !(kn->sfflags & hint) ||
		    (kn->u.proc.state & KP_EXITED))
			continue;
		kn->fflags |= hint;
		if (hint == NOTE_FORK)
			kn->data = child;	/* advisory: the latest child */
		kq_knote_activate(kq, kn);
	}
}

static void
proc_msg(void *arg, const struct kq_procmsg *m)
{
	struct kq_kqueue *kq = arg;
	struct proc_kq *pk = kq->proc_priv;
	struct kq_knote *kn;

	switch (m->what) {
	case KQ_PROCMSG_FORK:
		proc_note(kq, m->pid, NOTE_FORK, m->child);
		break;
	case KQ_PROCMSG_EXEC:
		proc_note(kq, m->pid, NOTE_EXEC, 0);
		break;
	case KQ_PROCMSG_EXIT:
		/* knotes with a pidfd learn it there (the status of the
		 * whole process, not of its first thread to go); until then
		 * forks and execs of this pid are another process's */
		kn = kq_knote_find(kq, EVFILT_PROC, (uintptr_t)m->pid);
		if (kn != NULL && !(kn->u.proc.state & KP_ATTACHING)) {
			kn->u.proc.state |= KP_EXITMSG;
			if ((kn->u.proc.state & KP_CONNONLY) &&
			    !(kn->u.proc.state & KP_EXITED))
				proc_exited(kq, kn, m->status, false);
		}
		for (size_t i = 0; i < pk->npd; i++)
			if (pk->pd[i].pid == m->pid)
				pk->pd[i].pid = 0;
		break;
	}
}

/*
 * After the connector was read to the end: every child learnt meanwhile
 * that has not exited gets its pidfd.  Returns true if one could not be
 * opened because the child was reaped after the read (its exit message is
 * queued now: read again).  last: no more reads; a reaped child whose exit
 * message the kernel dropped (overrun) is taken as exited, status unknown.
 */
static bool
proc_settle(struct kq_kqueue *kq, struct proc_kq *pk, bool last)
{
	struct kq_knote *kn, *next;
	bool again = false;
	int fd;

	for (kn = LIST_FIRST(&pk->conn); kn != NULL; kn = next) {
		next = LIST_NEXT(kn, u.proc.cnlink);
		if (!(kn->u.proc.state & KP_PENDING))
			continue;
		fd = kq_fd_own(pidfd_open((pid_t)kn->ident, 0));
		if (fd >= 0) {
			kn->u.proc.state &= ~KP_PENDING;
			if (proc_pidfd_attach(kq, kn, fd) == 0) {
				LIST_REMOVE(kn, u.proc.cnlink);
				kn->u.proc.state &= ~KP_CONNONLY;
			}
		} else if (errno == ESRCH && !last) {
			again = true;
		} else if (errno == ESRCH) {
			proc_exited(kq, kn, 0, false);
		} else {
			/* no pidfd (EMFILE...): the exit message will do */
			kn->u.proc.state &= ~KP_PENDING;
		}
	}
	return again;
}

/* Read the connector.  Marks and activates; never releases a knote. */
static void
proc_nl_drain(struct kq_kqueue *kq)
{
	struct proc_kq *pk = kq->proc_priv;

	if (pk == NULL || pk->nl.fd < 0)
		return;
	for (int pass = 0; pass < 3; pass++) {
		/* an overrun loses forks and exits alike: nothing to
		 * recover them from */
		(void)kq_procconn_read(pk->nl.fd, proc_msg, kq);
		if (!proc_settle(kq, pk, pass == 2))
			break;
	}
}

/* The connector socket is readable (or kicked). */
static void
proc_nl_service(struct kq_kqueue *kq)
{
	struct proc_kq *pk = kq->proc_priv;
	struct kq_knote *kn, *next;

	if (pk == NULL || pk->nl.fd < 0)
		return;
	pk->nl_users++;		/* releases below may drop the others */
	proc_nl_drain(kq);
	for (kn = LIST_FIRST(&pk->conn); kn != NULL; kn = next) {
		next = LIST_NEXT(kn, u.proc.cnlink);
		if ((kn->u.proc.state & KP_DROP) && !(kn->status & KN_DISABLED))
			kq_knote_release(kq, kn, NOTE_FREE_DROP, NULL);
	}
	if (pk->nl.want & KQ_POLLOUT) {
		pk->nl.want = KQ_POLLIN;
		kq_backend_update(kq, &pk->nl);
	}
	proc_nl_unref(kq);
}

/* ------------------------------------------------------------ EVFILT_PROC */

/*
 * If the process has exited, record it.  Forks and execs before the exit
 * are collected first, so they are reported with it, never after it.
 */
static bool
proc_check_exit(struct kq_kqueue *kq, struct kq_knote *kn, bool release)
{
	struct kq_poll *p = kn->u.proc.pidpoll;
	struct pollfd pfd;

	if (kn->u.proc.state & KP_EXITED)
		return true;
	if (p == NULL)
		return false;
	pfd.fd = p->fd;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & (POLLIN | POLLHUP)))
		return false;
	proc_nl_drain(kq);
	proc_exited(kq, kn, proc_exit_status(p->fd), release);
	return true;
}

static void
proc_pidfd_ready(struct kq_kqueue *kq, struct kq_poll *p, uint32_t revents)
{
	struct kq_knote *kn = p->owner;

	(void)revents;
	if (!(kn->u.proc.state & KP_EXITED)) {
		proc_check_exit(kq, kn, true);	/* may free kn and p */
		return;
	}
	/* a kick: an exited knote kept only to be dropped once enabled */
	if (!(kn->status & KN_DISABLED)) {
		kq_knote_release(kq, kn, NOTE_FREE_DROP, NULL);
	} else {
		p->want = 0;
		kq_backend_update(kq, p);
	}
}

static int
filt_proc_attach(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *kev)
{
	int fd, err;

	(void)kev;
	kn->u.proc.pidpoll = NULL;
	kn->u.proc.status = 0;
	kn->u.proc.state = 0;
	if (kn->ident == 0 || kn->ident > INT_MAX)
		return ESRCH;
	kn->flags |= EV_CLEAR;	/* FreeBSD sets it, and shows it */
	/* What the connector queued so far may be about an earlier process
	 * with this pid (its exit, say): not this knote's */
	kn->u.proc.state = KP_ATTACHING;
	proc_nl_drain(kq);
	kn->u.proc.state = 0;
	fd = kq_fd_own(pidfd_open((pid_t)kn->ident, 0));
	if (fd < 0)
		return errno == EINVAL ? ESRCH : errno;	/* EINVAL: a thread id */
	if (kn->sfflags & PROC_NOTE_CONNECTOR) {
		if ((err = proc_nl_ref(kq)) != 0) {
			kq_fd_close(fd);
			return err;
		}
		kn->u.proc.state |= KP_NLREF;
	}
	if ((err = proc_pidfd_attach(kq, kn, fd)) != 0) {
		if (kn->u.proc.state & KP_NLREF)
			proc_nl_unref(kq);
		return err;
	}
	return 0;
}

static void
filt_proc_detach(struct kq_kqueue *kq, struct kq_knote *kn)
{
	proc_close_pidfd(kq, kn);
	if (kn->u.proc.state & KP_CONNONLY)
		LIST_REMOVE(kn, u.proc.cnlink);
	if (kn->u.proc.state & KP_NLREF)
		proc_nl_unref(kq);
	kn->u.proc.state = 0;
}

/* Shared by PROC and PROCDESC. */
static int
proc_report(struct kq_knote *kn, struct kevent *ev)
{
	if (kn->fflags == 0)
		return 0;
	if ((kn->fflags & NOTE_CHILD) && (kn->fflags & ~NOTE_CHILD)) {
		/* FreeBSD reports NOTE_CHILD (data: the parent) from a knote
		 * of its own; the rest (NOTE_EXIT's data is the status)
		 * follows in the next report (clear re-queues it). */
		ev->fflags = NOTE_CHILD;
		ev->data = kn->data;
		kn->u.proc.state |= KP_SPLIT;
		return 1;
	}
	ev->fflags = kn->fflags;
	if (!(kn->u.proc.state & KP_EXITED)) {
		ev->data = kn->data;
		return 1;
	}
	ev->data = (kn->fflags & NOTE_EXIT) ? kn->u.proc.status : kn->data;
	kn->flags |= EV_ONESHOT;
	ev->flags |= EV_EOF | EV_ONESHOT;
	return 1;
}

static int
filt_proc_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	/* a fork seen first may have an exit right behind it */
	proc_check_exit(kq, kn, false);
	return proc_report(kn, ev);
}

static void
filt_proc_clear(struct kq_kqueue *kq, struct kq_knote *kn)
{
	if (kn->u.proc.state & KP_SPLIT) {
		kn->u.proc.state &= ~KP_SPLIT;
		kn->fflags &= ~NOTE_CHILD;
		kn->data = 0;
		if (kn->fflags != 0)
			kq_knote_activate(kq, kn);
		return;
	}
	kn->fflags = 0;
	kn->data = 0;
}

/* Enabled or disabled. */
static void
filt_proc_rearm(struct kq_kqueue *kq, struct kq_knote *kn)
{
	if (!(kn->status & KN_DISABLED)) {
		if (kn->u.proc.state & KP_DROP)
			proc_kick(kq, kn);
	} else if (kn->status & KN_QUEUED) {
		/* EV_DISPATCH after a split report: hold the rest back */
		kq_knote_deactivate(kq, kn);
		kn->status |= KN_ACTIVE;
	}
}

/* EV_ADD on an existing knote: the connector may be needed now, or not. */
static int
filt_proc_touch(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *change)
{
	bool had = (kn->u.proc.state & KP_NLREF) != 0;
	bool wants = (change->fflags & PROC_NOTE_CONNECTOR) ||
	    (kn->u.proc.state & KP_CONNONLY);
	int err;

	if (wants && !had) {
		if ((err = proc_nl_ref(kq)) != 0)
			return err;
		kn->u.proc.state |= KP_NLREF;
	}
	if (had && !wants) {
		kn->u.proc.state &= ~KP_NLREF;
		proc_nl_unref(kq);
	}
	kn->sfflags = change->fflags;
	kn->sdata = change->data;
	return 0;
}

const struct kq_filterops kq_filt_proc = {
	.filter = EVFILT_PROC,
	.isfd = false,
	.attach = filt_proc_attach,
	.detach = filt_proc_detach,
	.event = filt_proc_event,
	.touch = filt_proc_touch,
	.rearm = filt_proc_rearm,
	.clear = filt_proc_clear,
};

/* -------------------------------------------------------- EVFILT_PROCDESC */

/* Is fd a pidfd?  0, EBADF or EINVAL (FreeBSD's answer for a descriptor
 * that is not a process descriptor). */
static int
procdesc_check(int fd)
{
	if (pidfd_send_signal(fd, 0, NULL, 0) == 0 || errno == ESRCH ||
	    errno == EPERM)
		return 0;
	if (fcntl(fd, F_GETFD) < 0)
		return EBADF;
	return EINVAL;
}

static int
filt_procdesc_attach(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *kev)
{
	int err;
	pid_t pid;

	(void)kev;
	kn->u.proc.pidpoll = NULL;
	kn->u.proc.status = 0;
	kn->u.proc.state = 0;
	if ((err = procdesc_check(kn->fdn->fd)) != 0)
		return err;
	kn->flags |= EV_CLEAR;	/* FreeBSD sets it, and shows it */
	if (kn->sfflags & (NOTE_FORK | NOTE_EXEC)) {
		pid = proc_pidfd_pid(kn->fdn->fd);
		if ((err = proc_nl_ref(kq)) != 0)
			return err;
		proc_nl_drain(kq);	/* earlier news is not this process's */
		if ((err = proc_pd_add(kq, kn, pid)) != 0) {
			proc_nl_unref(kq);
			return err;
		}
	}
	if ((err = kq_fdnode_probe(kq, kn->fdn)) != 0 &&
	    (kn->sfflags & (NOTE_FORK | NOTE_EXEC))) {
		/* no detach follows a failed attach */
		proc_pd_remove(kq, kn);
		proc_nl_unref(kq);
	}
	return err;
}

static void
filt_procdesc_detach(struct kq_kqueue *kq, struct kq_knote *kn)
{
	if (kn->sfflags & (NOTE_FORK | NOTE_EXEC)) {
		proc_pd_remove(kq, kn);
		proc_nl_unref(kq);
	}
}

static uint32_t
procdesc_pollevents(struct kq_kqueue *kq, struct kq_knote *kn)
{
	(void)kq;
	return (kn->status & KN_DISABLED) ? 0 : KQ_POLLIN;
}

static int
filt_procdesc_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	struct pollfd pfd = { .fd = kn->fdn->fd, .events = POLLIN };

	if (!(kn->u.proc.state & KP_EXITED) && poll(&pfd, 1, 0) == 1 &&
	    (pfd.revents & (POLLIN | POLLHUP))) {
		proc_nl_drain(kq);
		kn->u.proc.state |= KP_EXITED;
		kn->u.proc.status = proc_exit_status(kn->fdn->fd);
		if (kn->sfflags & NOTE_EXIT)
			kn->fflags |= NOTE_EXIT;
		/* Nothing asked for: FreeBSD drops the knote; here it stays,
		 * silent (the pidfd will not report again). */
		if (kn->fflags == 0)
			return 0;
	}
	return proc_report(kn, ev);
}

static int
filt_procdesc_touch(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *change)
{
	bool had = (kn->sfflags & (NOTE_FORK | NOTE_EXEC)) != 0;
	bool wants = (change->fflags & (NOTE_FORK | NOTE_EXEC)) != 0;
	int err;

	if (wants && !had) {
		if ((err = proc_nl_ref(kq)) != 0)
			return err;
		proc_nl_drain(kq);	/* earlier news is not this process's */
		if ((err = proc_pd_add(kq, kn, proc_pidfd_pid(kn->fdn->fd))) != 0) {
			proc_nl_unref(kq);
			return err;
		}
	}
	if (had && !wants) {
		proc_pd_remove(kq, kn);
		proc_nl_unref(kq);
	}
	kn->sfflags = change->fflags;
	kn->sdata = change->data;
	return 0;
}

const struct kq_filterops kq_filt_procdesc = {
	.filter = EVFILT_PROCDESC,
	.isfd = true,
	.attach = filt_procdesc_attach,
	.detach = filt_procdesc_detach,
	.event = filt_procdesc_event,
	.touch = filt_procdesc_touch,
	.clear = NULL,
	.pollevents = procdesc_pollevents,
};
