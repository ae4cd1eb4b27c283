/*
 * EVFILT_PROC (ident: a pid) and EVFILT_PROCDESC (ident: a pidfd, Linux's
 * process descriptor).
 *
 * NOTE_EXIT.  Each PROC knote opens a pidfd for its process and registers it
 * in the kqueue's epoll set (edge-triggered: a pidfd becomes readable once,
 * when the process has exited).  PROCDESC knotes use the user's pidfd
 * through its fdnode.  The wait(2) status comes, without reaping anything,
 * from waitid(P_PIDFD, WNOWAIT) for our children; for other processes from
 * PIDFD_GET_INFO's exit_code (Linux 6.15+, available once the parent reaped
 * it), else from /proc/PID/stat's exit_code while it is a zombie; else 0.
 * As on FreeBSD the exit report carries EV_EOF|EV_ONESHOT (and the implied
 * EV_CLEAR), and a knote that did not ask for NOTE_EXIT dies silently at
 * exit (a NOTE_FREE_DROP notice if it held an EV_FREEWATCH reference).
 *
 * NOTE_FORK, NOTE_EXEC, NOTE_TRACK.  Linux tells about forks and execs of
 * arbitrary processes only through the netlink proc connector (needs
 * CAP_NET_ADMIN in the initial namespaces).  A kqueue that has knotes
 * asking for them opens one connector socket, registered in its epoll set;
 * it is drained whenever it is readable and before an exit is reported, so
 * a fork or exec that happened before the exit is never reported after it.
 * NOTE_TRACK makes a knote for the child at once (same fflags and udata, no
 * EV_FREEWATCH reference) that first reports NOTE_CHILD with the parent's
 * pid in data; NOTE_TRACKERR on the parent if that failed.  Without the
 * connector, EV_ADD asking for any of them fails with ENOTSUP.
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>

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

/* kn->u.proc.pidpoll once the process has exited; u.proc.pidfd then holds
 * its wait status (the pidfd is closed). */
static struct kq_poll proc_exited_mark;
#define PROC_EXITED(kn)	((kn)->u.proc.pidpoll == &proc_exited_mark)

/* kq->proc_priv */
struct proc_kq {
	struct kq_poll nl;		/* proc connector socket, fd -1 if none */
	unsigned nl_users;		/* knotes that need it */
	struct proc_pd {		/* PROCDESC knotes that need it */
		pid_t pid;
		struct kq_knote *kn;
	} *pd;
	size_t npd, pdcap;
};

static void proc_nl_drain(struct kq_kqueue *kq);

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

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	kq_real_close(fd);
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

/* The exited process's wait(2) status, without reaping it. */
static int
proc_exit_status(int pidfd, pid_t pid)
{
	siginfo_t si;
	int status;

	memset(&si, 0, sizeof si);
	if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOWAIT | WNOHANG) == 0 &&
	    si.si_pid != 0)
		return proc_status_of_siginfo(&si);
	/* Not our child, or already reaped.  Its parent may reap it while we
	 * look: the zombie's /proc entry goes, the pidfd's exit info comes;
	 * so ask both, twice. */
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
	char path[64], buf[1024], *p;

	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	if (proc_read_file(path, buf, sizeof buf) < 0)
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
	proc_nl_drain(kq);
}

/* One connector control message: 4-byte op (every kernel), or op plus an
 * event-type filter (Linux 6.6+; older kernels ignore that size). */
static int
proc_nl_send(int fd, uint32_t seq, uint32_t op, uint32_t events)
{
	struct sockaddr_nl sa;
	struct {
		struct nlmsghdr nh;
		struct cn_msg cn;
		uint32_t op;
		uint32_t events;
	} __attribute__((packed)) req;
	size_t len = sizeof req - (events ? 0 : sizeof req.events);

	memset(&req, 0, sizeof req);
	req.nh.nlmsg_len = len;
	req.nh.nlmsg_type = NLMSG_DONE;
	req.nh.nlmsg_pid = 0;
	req.cn.id.idx = CN_IDX_PROC;
	req.cn.id.val = CN_VAL_PROC;
	req.cn.seq = seq;
	req.cn.ack = seq;	/* the kernel's acknowledgement says seq + 1 */
	req.cn.len = len - sizeof req.nh - sizeof req.cn;
	req.op = op;
	req.events = events;
	memset(&sa, 0, sizeof sa);
	sa.nl_family = AF_NETLINK;
	return sendto(fd, &req, len, 0, (struct sockaddr *)&sa, sizeof sa) < 0 ?
	    -1 : 0;
}

/* The kernel acknowledges a LISTEN it accepted (synchronously, as a
 * PROC_EVENT_NONE to the group).  It stays silent for callers outside the
 * initial user and pid namespaces, which would get no events at all. */
static bool
proc_nl_acked(int fd, uint32_t seq)
{
	union {
		struct nlmsghdr nh;
		char b[4096];
	} buf;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n;

	for (int tries = 0; tries < 64; tries++) {
		n = recv(fd, &buf, sizeof buf, 0);
		if (n < 0) {
			if (errno == EINTR || errno == ENOBUFS)
				continue;
			if (errno != EAGAIN || poll(&pfd, 1, 50) != 1)
				return false;
			continue;
		}
		for (struct nlmsghdr *nh = &buf.nh; NLMSG_OK(nh, (size_t)n);
		    nh = NLMSG_NEXT(nh, n)) {
			struct cn_msg *cn = NLMSG_DATA(nh);
			struct proc_event ev, *pe = &ev;

			if (nh->nlmsg_len < NLMSG_LENGTH(sizeof *cn + sizeof *pe))
				continue;
			/* cn->data is not aligned for proc_event's u64 */
			memcpy(&ev, cn->data, sizeof ev);
			/* (newer kernels renumber the ack's seq) */
			if (pe->what == PROC_EVENT_NONE && cn->ack == seq + 1)
				return pe->event_data.ack.err == 0;
		}
	}
	return false;
}

static int
proc_nl_open(struct kq_kqueue *kq, struct proc_kq *pk)
{
	static _Atomic uint32_t seqs;
	struct sockaddr_nl sa;
	int fd, sz = 1 << 20, err;
	uint32_t seq;

	fd = socket(PF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    NETLINK_CONNECTOR);
	if (fd < 0)
		return errno == EMFILE || errno == ENFILE || errno == ENOMEM ||
		    errno == ENOBUFS ? errno : ENOTSUP;
	/* a busy machine forks a lot: make overruns unlikely */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	memset(&sa, 0, sizeof sa);
	sa.nl_family = AF_NETLINK;
	sa.nl_groups = CN_IDX_PROC;
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		goto unsupported;
	seq = ((uint32_t)getpid() << 12) ^ (atomic_fetch_add(&seqs, 2) << 1);
	if (proc_nl_send(fd, seq, PROC_CN_MCAST_LISTEN, 0) != 0 ||
	    !proc_nl_acked(fd, seq))
		goto unsupported;
	/* Linux 6.6+: only forks and execs, please (best effort) */
	(void)proc_nl_send(fd, seq + 1, PROC_CN_MCAST_LISTEN,
	    PROC_EVENT_FORK | PROC_EVENT_EXEC);

	memset(&pk->nl, 0, sizeof pk->nl);
	pk->nl.fd = fd;
	pk->nl.want = KQ_POLLIN;
	pk->nl.ready = proc_nl_ready;
	pk->nl.owner = pk;
	if ((err = kq_poll_register(kq, &pk->nl)) != 0) {
		kq_real_close(fd);
		pk->nl.fd = -1;
		return err;
	}
	if ((err = kq_backend_attach(kq, &pk->nl)) != 0) {
		kq_poll_unregister(kq, &pk->nl);
		kq_real_close(fd);
		pk->nl.fd = -1;
		return err;
	}
	return 0;
unsupported:
	kq_real_close(fd);
	return ENOTSUP;
}

static void
proc_nl_close(struct kq_kqueue *kq, struct proc_kq *pk)
{
	kq_backend_detach(kq, &pk->nl);
	kq_poll_unregister(kq, &pk->nl);
	if (pk->nl.fd >= 0)	/* -1: kqueue.c closed it in a fork child */
		kq_real_close(pk->nl.fd);
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

static int proc_attach_pid(struct kq_kqueue *kq, struct kq_knote *kn);

/* NOTE_TRACK: watch the new child with the parent's fflags and udata. */
static void
proc_track(struct kq_kqueue *kq, struct kq_knote *parent, pid_t child)
{
	struct kq_knote *kn;

	if (kq_knote_find(kq, EVFILT_PROC, (uintptr_t)child) != NULL)
		return;
	if ((kn = kq_knote_alloc(kq)) == NULL)
		goto fail;
	kn->kev.ident = (uintptr_t)child;
	kn->kev.filter = EVFILT_PROC;
	kn->kev.flags = parent->kev.flags;
	kn->kev.udata = parent->kev.udata;
	kn->fop = parent->fop;
	kn->sfflags = parent->sfflags;
	kn->sdata = (int64_t)parent->kev.ident;
	kq_knote_insert(kq, kn);
	if (proc_attach_pid(kq, kn) != 0) {
		kq_knote_free_unattached(kq, kn);
		goto fail;
	}
	/* an exit already seen by attach must come after NOTE_CHILD */
	kn->fflags |= NOTE_CHILD;
	kn->data = (int64_t)parent->kev.ident;
	kq_knote_activate(kq, kn);
	return;
fail:
	parent->fflags |= NOTE_TRACKERR;
	kq_knote_activate(kq, parent);
}

static void
proc_note(struct kq_kqueue *kq, pid_t pid, unsigned hint, pid_t child)
{
	struct proc_kq *pk = kq->proc_priv;
	struct kq_knote *kn;

	kn = kq_knote_find(kq, EVFILT_PROC, (uintptr_t)pid);
	if (kn != NULL && !PROC_EXITED(kn)) {
		if (kn->sfflags & hint) {
			kn->fflags |= hint;
			kq_knote_activate(kq, kn);
		}
		if (hint == NOTE_FORK && (kn->sfflags & NOTE_TRACK))
			proc_track(kq, kn, child);
	}
	for (size_t i = 0; pk != NULL && i < pk->npd; i++) {
		kn = pk->pd[i].kn;
		if (pk->pd[i].pid != pid || !(kn->sfflags & hint) ||
		    PROC_EXITED(kn))
			continue;
		kn->fflags |= hint;
		if (hint == NOTE_FORK)
			kn->data = child;	/* advisory: the latest child */
		kq_knote_activate(kq, kn);
	}
}

static void
proc_nl_drain(struct kq_kqueue *kq)
{
	struct proc_kq *pk = kq->proc_priv;
	union {
		struct nlmsghdr nh;
		char b[8192];
	} buf;
	struct sockaddr_nl from;
	socklen_t fromlen;
	ssize_t n;

	if (pk == NULL || pk->nl.fd < 0)
		return;
	for (;;) {
		fromlen = sizeof from;
		n = recvfrom(pk->nl.fd, &buf, sizeof buf, 0,
		    (struct sockaddr *)&from, &fromlen);
		if (n < 0) {
			if (errno == EINTR || errno == ENOBUFS)
				continue;	/* overrun: events were lost */
			return;
		}
		if (from.nl_pid != 0)
			continue;	/* only the kernel speaks here */
		for (struct nlmsghdr *nh = &buf.nh; NLMSG_OK(nh, (size_t)n);
		    nh = NLMSG_NEXT(nh, n)) {
			struct cn_msg *cn = NLMSG_DATA(nh);
			struct proc_event ev, *pe = &ev;

			if (nh->nlmsg_type == NLMSG_ERROR ||
			    nh->nlmsg_type == NLMSG_NOOP)
				continue;
			if (nh->nlmsg_len < NLMSG_LENGTH(sizeof *cn + sizeof *pe) ||
			    cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC)
				continue;
			/* cn->data is not aligned for proc_event's u64 */
			memcpy(&ev, cn->data, sizeof ev);
			switch (pe->what) {
			case PROC_EVENT_FORK:
				/* a new thread is not a fork */
				if (pe->event_data.fork.child_pid !=
				    pe->event_data.fork.child_tgid ||
				    pe->event_data.fork.parent_tgid ==
				    pe->event_data.fork.child_tgid)
					break;
				proc_note(kq, pe->event_data.fork.parent_tgid,
				    NOTE_FORK, pe->event_data.fork.child_tgid);
				break;
			case PROC_EVENT_EXEC:
				proc_note(kq, pe->event_data.exec.process_tgid,
				    NOTE_EXEC, 0);
				break;
			default:
				break;
			}
		}
	}
}

/* ------------------------------------------------------------ EVFILT_PROC */

static void
proc_close_pidfd(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct kq_poll *p = kn->u.proc.pidpoll;

	if (p == NULL || p == &proc_exited_mark)
		return;
	kq_backend_detach(kq, p);
	kq_poll_unregister(kq, p);
	if (p->fd >= 0)		/* -1: kqueue.c closed it in a fork child */
		kq_real_close(p->fd);
	free(p);
	kn->u.proc.pidpoll = NULL;
	kn->u.proc.pidfd = -1;
}

/*
 * If the process has exited, record it: the status, NOTE_EXIT if asked for,
 * and the pidfd goes.  Forks and execs before the exit are collected first,
 * so they are reported with it, never after it.
 */
static bool
proc_check_exit(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct kq_poll *p = kn->u.proc.pidpoll;
	struct pollfd pfd;
	int status;

	if (p == NULL || PROC_EXITED(kn))
		return PROC_EXITED(kn);
	pfd.fd = p->fd;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & (POLLIN | POLLHUP)))
		return false;
	proc_nl_drain(kq);
	status = proc_exit_status(p->fd, (pid_t)kn->kev.ident);
	proc_close_pidfd(kq, kn);
	kn->u.proc.pidpoll = &proc_exited_mark;
	kn->u.proc.pidfd = status;
	if (kn->sfflags & NOTE_EXIT)
		kn->fflags |= NOTE_EXIT;
	return true;
}

static void
proc_pidfd_ready(struct kq_kqueue *kq, struct kq_poll *p, uint32_t revents)
{
	struct kq_knote *kn = p->owner;

	(void)revents;
	if (!proc_check_exit(kq, kn))	/* may free p */
		return;
	if (kn->fflags == 0) {
		/* FreeBSD's EV_DROP: nothing the application asked for */
		kq_knote_release(kq, kn, NOTE_FREE_DROP, NULL);
		return;
	}
	kq_knote_activate(kq, kn);
}

static int
proc_attach_pid(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct kq_poll *p;
	int fd, err;

	kn->u.proc.pidpoll = NULL;
	kn->u.proc.pidfd = -1;
	if (kn->kev.ident == 0 || kn->kev.ident > INT_MAX)
		return ESRCH;
	kn->kev.flags |= EV_CLEAR;	/* FreeBSD sets it, and shows it */
	fd = pidfd_open((pid_t)kn->kev.ident, 0);
	if (fd < 0)
		return errno == EINVAL ? ESRCH : errno;	/* EINVAL: a thread id */
	if ((p = calloc(1, sizeof *p)) == NULL) {
		kq_real_close(fd);
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
	kn->u.proc.pidfd = fd;
	if ((kn->sfflags & PROC_NOTE_CONNECTOR) && (err = proc_nl_ref(kq)) != 0) {
		proc_close_pidfd(kq, kn);
		return err;
	}
	return 0;
fail:
	kq_real_close(fd);
	free(p);
	return err;
}

static int
filt_proc_attach(struct kq_kqueue *kq, struct kq_knote *kn)
{
	return proc_attach_pid(kq, kn);
}

static void
filt_proc_detach(struct kq_kqueue *kq, struct kq_knote *kn)
{
	if (!PROC_EXITED(kn))
		proc_close_pidfd(kq, kn);
	if (kn->sfflags & PROC_NOTE_CONNECTOR)
		proc_nl_unref(kq);
}

/* Shared by PROC and PROCDESC once the exit is known. */
static int
proc_report(struct kq_knote *kn, struct kevent *ev)
{
	if (!PROC_EXITED(kn)) {
		if (kn->fflags == 0)
			return 0;
		ev->fflags = kn->fflags;
		ev->data = kn->data;
		return 1;
	}
	if (kn->fflags == 0)
		return 0;
	if ((kn->fflags & NOTE_CHILD) && (kn->fflags & NOTE_EXIT)) {
		/* NOTE_CHILD's data is the parent, NOTE_EXIT's the status:
		 * FreeBSD uses two knotes; report the child first, the exit
		 * next (clear re-queues it). */
		ev->fflags = kn->fflags & ~NOTE_EXIT;
		ev->data = kn->data;
		return 1;
	}
	ev->fflags = kn->fflags;
	ev->data = (kn->fflags & NOTE_EXIT) ? kn->u.proc.pidfd : kn->data;
	kn->kev.flags |= EV_ONESHOT;
	ev->flags |= EV_EOF | EV_ONESHOT;
	return 1;
}

static int
filt_proc_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	/* a fork seen first may have an exit right behind it */
	proc_check_exit(kq, kn);
	return proc_report(kn, ev);
}

static void
filt_proc_clear(struct kq_kqueue *kq, struct kq_knote *kn)
{
	bool exit_left = PROC_EXITED(kn) && (kn->fflags & NOTE_CHILD) &&
	    (kn->fflags & NOTE_EXIT);

	kn->fflags = 0;
	kn->data = 0;
	if (exit_left) {
		kn->fflags = NOTE_EXIT;
		kq_knote_activate(kq, kn);
	}
}

/* EV_ADD on an existing knote: the connector may be needed now, or not. */
static int
filt_proc_touch(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *change)
{
	bool had = (kn->sfflags & PROC_NOTE_CONNECTOR) != 0;
	bool wants = (change->fflags & PROC_NOTE_CONNECTOR) != 0;
	int err;

	if (wants && !had && (err = proc_nl_ref(kq)) != 0)
		return err;
	if (had && !wants)
		proc_nl_unref(kq);
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
filt_procdesc_attach(struct kq_kqueue *kq, struct kq_knote *kn)
{
	int err;
	pid_t pid;

	kn->u.proc.pidpoll = NULL;
	kn->u.proc.pidfd = -1;
	if ((err = procdesc_check(kn->fdn->fd)) != 0)
		return err;
	kn->kev.flags |= EV_CLEAR;	/* FreeBSD sets it, and shows it */
	if (kn->sfflags & (NOTE_FORK | NOTE_EXEC)) {
		pid = proc_pidfd_pid(kn->fdn->fd);
		if ((err = proc_nl_ref(kq)) != 0)
			return err;
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

	if (!PROC_EXITED(kn) && poll(&pfd, 1, 0) == 1 &&
	    (pfd.revents & (POLLIN | POLLHUP))) {
		proc_nl_drain(kq);
		kn->u.proc.pidpoll = &proc_exited_mark;
		kn->u.proc.pidfd = proc_exit_status(kn->fdn->fd,
		    proc_pidfd_pid(kn->fdn->fd));
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
