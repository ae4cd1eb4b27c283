/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * EVFILT_READ, EVFILT_WRITE, EVFILT_EMPTY on any fd: sockets, pipes, FIFOs,
 * ttys, eventfds, kqueues through the fd's epoll registration; regular
 * files, directories and devices epoll refuses (/dev/null) as always-ready
 * knotes.
 *
 * data is computed when the knote is scanned, so it is exact at copy-out:
 * READ bytes readable (a listening socket: its accept backlog; an eventfd:
 * its counter; a kqueue: its queued events), WRITE free space in the send
 * buffer, EMPTY bytes still queued (reported at 0).
 */
#include "internal.h"

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define EVENTFD_MAX	UINT64_C(0xfffffffffffffffe)
#define TTY_OUTQ_SIZE	4096	/* N_TTY's output buffer; Linux has no query */

/* Learn what kind of file this is, once per fdnode: one fstat (readlink for
 * the rare anonymous inodes and pipes). */
static void
fd_type(struct kq_fdnode *fdn)
{
	struct stat st;

	if (fdn->typed)
		return;
	fdn->typed = true;
	fdn->fmt = fstat(fdn->fd, &st) == 0 ? (st.st_mode & S_IFMT) : 0;
	if (fdn->fmt == 0) {
		char path[32], link[32];
		ssize_t n;
		snprintf(path, sizeof path, "/proc/self/fd/%d", fdn->fd);
		n = readlink(path, link, sizeof link - 1);
		if (n > 0) {
			link[n] = '\0';
			fdn->eventfd = strcmp(link, "anon_inode:[eventfd]") == 0;
		}
		fdn->kqueue = kq_pending_count(fdn->fd) >= 0;
	} else if (fdn->fmt == S_IFIFO) {
		char path[32], link[8];
		snprintf(path, sizeof path, "/proc/self/fd/%d", fdn->fd);
		fdn->anonpipe = readlink(path, link, sizeof link) >= 5 &&
		    memcmp(link, "pipe:", 5) == 0;
	} else if (fdn->fmt == S_IFSOCK) {
		int v = 0;
		socklen_t len = sizeof v;
		if (getsockopt(fdn->fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0)
			fdn->listening = v != 0;
	}
}

/* Socket type and family: only the rarer paths (EOF, backlog) need them. */
static void
sock_type(struct kq_fdnode *fdn)
{
	socklen_t len;
	int v;

	if (fdn->sofamily != 0)
		return;
	len = sizeof v;
	if (getsockopt(fdn->fd, SOL_SOCKET, SO_TYPE, &v, &len) == 0)
		fdn->sotype = v;
	len = sizeof v;
	if (getsockopt(fdn->fd, SOL_SOCKET, SO_DOMAIN, &v, &len) == 0)
		fdn->sofamily = v;
}

static bool
is_file(const struct kq_fdnode *fdn)
{
	return fdn->fmt == S_IFREG || fdn->fmt == S_IFDIR;
}

/* An eventfd's counter, without reading (and so resetting) it. */
static int64_t
eventfd_count(int fd)
{
	char buf[256];
	unsigned long long v = 0;

	if (kq_read_fdinfo(fd, buf, sizeof buf) <= 0)
		return 0;
	char *p = strstr(buf, "eventfd-count:");
	if (p != NULL)
		v = strtoull(p + 14, NULL, 16);
	return (int64_t)v;
}

/* Pending connections of a listening AF_UNIX socket (sock_diag). */
static int64_t
unix_backlog(int fd)
{
	struct stat st;
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req req;
	} q;
	union {
		char buf[1024];
		struct nlmsghdr align;
	} r;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int64_t backlog = -1;
	int nl;
	ssize_t n;

	if (fstat(fd, &st) < 0)
		return -1;
	kq_fd_making();
	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0) {
		kq_fd_made();
		return -1;
	}
	memset(&q, 0, sizeof q);
	q.nlh.nlmsg_len = sizeof q;
	q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	q.nlh.nlmsg_flags = NLM_F_REQUEST;
	q.req.sdiag_family = AF_UNIX;
	q.req.udiag_ino = st.st_ino;
	q.req.udiag_states = ~0u;
	q.req.udiag_show = UDIAG_SHOW_RQLEN;
	q.req.udiag_cookie[0] = q.req.udiag_cookie[1] = ~0u;
	if (sendto(nl, &q, sizeof q, 0, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    (n = recv(nl, &r, sizeof r, 0)) <= 0)
		goto out;
	for (struct nlmsghdr *h = &r.align; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
			break;
		struct unix_diag_msg *m = NLMSG_DATA(h);
		int len = h->nlmsg_len - NLMSG_LENGTH(sizeof *m);
		for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, len);
		    a = RTA_NEXT(a, len)) {
			if (a->rta_type == UNIX_DIAG_RQLEN) {
				struct unix_diag_rqlen *rq = RTA_DATA(a);
				backlog = rq->udiag_rqueue;
			}
		}
	}
out:
	kq_real_close(nl);
	kq_fd_made();
	return backlog;
}

/*
 * A stream socket that was never connected polls as hung up on Linux; on
 * FreeBSD it is simply not ready.  Linux's HUP means "both directions shut
 * or state CLOSE": a socket that was connected once and then closed (FIN
 * both ways, reset, refused connect) has its receive side shut too and polls
 * RDHUP as well; one that never connected does not.  (Asking SO_ERROR or
 * getpeername() cannot tell: a half-closed socket whose peer then closed is
 * not connected and has no error either.)  Watch it edge-triggered from then
 * on, so the constant HUP cannot spin the kqueue; connect() makes the next
 * edge.
 */
static bool
unconnected(struct kq_kqueue *kq, struct kq_fdnode *fdn)
{
	struct pollfd p = { fdn->fd, POLLRDHUP, 0 };

	if (fdn->fmt != S_IFSOCK || fdn->listening ||
	    !(fdn->revents & KQ_POLLHUP) || (fdn->revents & KQ_POLLRDHUP))
		return false;
	sock_type(fdn);
	if (fdn->sotype != SOCK_STREAM && fdn->sotype != SOCK_SEQPACKET)
		return false;
	/* RDHUP is only in revents if a READ knote asked for it */
	if (poll(&p, 1, 0) == 1 && (p.revents & POLLRDHUP))
		return false;
	if (!fdn->force_et) {
		fdn->force_et = true;
		kq_fdnode_update(kq, fdn);
	}
	return true;
}

/*
 * so_error for an EV_EOF report.  Linux clears SO_ERROR when it is read, and
 * event libraries read it after the event to learn how a connect() ended:
 * what we take is kept for the application's own getsockopt(SO_ERROR)
 * (fdreg.c), and later reports of the same EOF carry it until the
 * application has taken it, as FreeBSD's so_error stays until then.  Under
 * the fd's registry lock, so a close cannot slip in between the read and
 * the keep; a closed node's number may already be another socket's.
 */
static unsigned
sock_eof_error(struct kq_fdnode *fdn)
{
	int v = 0;
	socklen_t len = sizeof v;

	kq_fdreg_lock(fdn->fd);
	if (!atomic_load(&fdn->closed)) {
		if (getsockopt(fdn->fd, SOL_SOCKET, SO_ERROR, &v, &len) < 0)
			v = 0;
		if (v == 0)
			v = kq_fdreg_take_sockerr(fdn->fd);
		if (v != 0)
			kq_fdreg_stash_sockerr(fdn->fd, v);
	}
	kq_fdreg_unlock(fdn->fd);
	return (unsigned)v;
}

/*
 * POLLERR without an EOF: a socket error the application has not collected
 * yet (a refused UDP datagram, the error queue).  FreeBSD reports so_error
 * as ready ("a temporary udp error") and leaves it; Linux polls ERR until it
 * is collected, so calling it "not ready" would spin.  fdn->revents may be
 * older than the last recv() on an edge-triggered registration: ask again.
 */
static bool
error_pending(const struct kq_fdnode *fdn)
{
	struct pollfd p = { fdn->fd, 0, 0 };

	if (!(fdn->revents & KQ_POLLERR))
		return false;
	return poll(&p, 1, 0) == 1 && (p.revents & POLLERR);
}

/*
 * Everything that can refuse a READ/WRITE/EMPTY knote, with no side effect
 * on the knote: an attach that fails must leave nothing behind (the core
 * frees the knote without detach).
 */
static int
rw_check(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct kq_fdnode *fdn = kn->fdn;
	/* probed once per node: a re-add (the rearm idiom) skips the call */
	int err = fdn->kind != 0 ? 0 : kq_fdnode_probe(kq, fdn);

	if (err == ELOOP || err == EINVAL)	/* a kqueue watching itself */
		return EINVAL;
	if (err != 0)
		return err;
	/* READ on a pollable fd learns the file type lazily: the hot path
	 * (FIONREAD works) never needs it */
	if (kn->filter != EVFILT_READ || fdn->kind == KQ_FD_NOPOLL)
		fd_type(fdn);
	if (fdn->kqueue && kn->filter != EVFILT_READ)
		return EINVAL;
	/* FreeBSD: only sockets have EMPTY (pipe_kqfilter, vfs_kqfilter:
	 * EINVAL) */
	if (kn->filter == EVFILT_EMPTY && fdn->fmt != S_IFSOCK)
		return EINVAL;
	if (fdn->fmt == S_IFIFO && kn->filter == EVFILT_WRITE) {
		/* FreeBSD: a pipe whose reader is gone cannot be watched */
		struct pollfd p = { fdn->fd, POLLOUT, 0 };
		if (poll(&p, 1, 0) == 1 && (p.revents & POLLERR))
			return EPIPE;
	}
	return 0;
}

static int
rw_attach(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *kev)
{
	struct kq_fdnode *fdn = kn->fdn;
	int err;

	(void)kev;
	/* READ on a socket, pipe or tty already probed (every re-add of the
	 * rearm idiom): rw_check has nothing to refuse, nothing to set up */
	if (fdn->kind == KQ_FD_POLL && kn->filter == EVFILT_READ)
		return 0;
	if ((err = rw_check(kq, kn)) != 0)
		return err;
	if (fdn->kind == KQ_FD_NOPOLL) {
		/* Always ready, as poll() reports it: a level knote the scan
		 * re-checks.  A file at EOF re-arms when it grows (inotify). */
		kn->status |= KN_REQUEUE;
		if (fdn->fmt == S_IFREG && kn->filter == EVFILT_READ &&
		    (err = kq_inotify_watch(kq, kn, fdn->fd, IN_MODIFY)) != 0)
			return err;
		/* last: nothing may fail once the knote is queued */
		kq_knote_activate(kq, kn);
	}
	return 0;
}

static void
rw_detach(struct kq_kqueue *kq, struct kq_knote *kn)
{
	/* also at wd -1 (the kernel dropped the watch: IN_IGNORED): the
	 * kqueue may still hold its share of the inotify instance for it */
	kq_inotify_unwatch(kq, kn);
}

static void
rw_rearm(struct kq_kqueue *kq, struct kq_knote *kn)
{
	/* an always-ready knote becomes ready again when re-enabled */
	if (kn->fdn->kind == KQ_FD_NOPOLL && !(kn->status & KN_DISABLED))
		kq_knote_activate(kq, kn);
}

static uint32_t
read_pollevents(struct kq_kqueue *kq, struct kq_knote *kn)
{
	(void)kq;
	if (kn->status & KN_DISABLED)
		return 0;
	return KQ_POLLIN | KQ_POLLRDHUP |
	    ((kn->sfflags & NOTE_LOWAT) ? KQ_POLLET : 0);
}

static uint32_t
write_pollevents(struct kq_kqueue *kq, struct kq_knote *kn)
{
	(void)kq;
	if (kn->status & KN_DISABLED)
		return 0;
	return KQ_POLLOUT | ((kn->sfflags & NOTE_LOWAT) ? KQ_POLLET : 0);
}

static int
read_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	struct kq_fdnode *fdn = kn->fdn;
	int64_t lowat = (kn->sfflags & NOTE_LOWAT) && kn->sdata > 0 ? kn->sdata : 1;
	int n = 0;

	if (fdn->kind == KQ_FD_NOPOLL) {
		fd_type(fdn);
		if (!is_file(fdn)) {
			ev->data = 0;
			return 1;
		}
		/* FreeBSD's vfs read filter: size - offset, even negative */
		struct stat st;
		off_t off = lseek(fdn->fd, 0, SEEK_CUR);
		if (fstat(fdn->fd, &st) < 0 || off < 0)
			return 0;
		ev->data = st.st_size - off;
		return ev->data != 0 || (kn->sfflags & NOTE_FILE_POLL);
	}
	/* sockets, pipes, ttys: the one syscall of the hot path */
	if (!fdn->no_fionread && ioctl(fdn->fd, FIONREAD, &n) == 0) {
		ev->data = n;
	} else {
		fdn->no_fionread = true;
		fd_type(fdn);
		if (fdn->kqueue) {
			ev->data = kq_pending_count(fdn->fd);
			if (ev->data <= 0)
				ev->data = (fdn->revents & KQ_POLLIN) ? 1 : 0;
			return ev->data > 0;
		}
		if (fdn->eventfd) {
			ev->data = eventfd_count(fdn->fd);
			return ev->data > 0;
		}
		if (fdn->fmt == S_IFSOCK && fdn->listening) {
			struct tcp_info ti;
			socklen_t len = sizeof ti;
			sock_type(fdn);
			if ((fdn->sofamily == AF_INET || fdn->sofamily == AF_INET6) &&
			    getsockopt(fdn->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
				ev->data = ti.tcpi_unacked;	/* accept queue */
			else if (fdn->sofamily == AF_UNIX)
				ev->data = unix_backlog(fdn->fd);
			if (ev->data <= 0)
				ev->data = (fdn->revents & KQ_POLLIN) ? 1 : 0;
			return ev->data > 0;
		}
		/* timerfd, signalfd...: one record */
		ev->data = (fdn->revents & KQ_POLLIN) ? 1 : 0;
	}
	if (fdn->revents & (KQ_POLLRDHUP | KQ_POLLHUP)) {
		fd_type(fdn);
		if ((fdn->revents & KQ_POLLHUP) && ev->data == 0 &&
		    unconnected(kq, fdn))
			return 0;
		ev->flags |= EV_EOF;
		if (fdn->fmt == S_IFSOCK)
			ev->fflags = sock_eof_error(fdn);
		return 1;
	}
	if (error_pending(fdn))
		return 1;
	return ev->data >= lowat;
}

static int
write_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	struct kq_fdnode *fdn = kn->fdn;
	int v = 0, q = 0;
	socklen_t len = sizeof v;

	fd_type(fdn);
	if (fdn->kind == KQ_FD_NOPOLL) {
		ev->data = 0;
		return 1;
	}
	if (fdn->fmt == S_IFSOCK) {
		if (getsockopt(fdn->fd, SOL_SOCKET, SO_SNDBUF, &v, &len) == 0 &&
		    ioctl(fdn->fd, SIOCOUTQ, &q) == 0)
			ev->data = v > q ? v - q : 0;
	} else if (fdn->fmt == S_IFIFO) {
		v = fcntl(fdn->fd, F_GETPIPE_SZ);
		if (v > 0 && ioctl(fdn->fd, FIONREAD, &q) == 0)
			ev->data = v > q ? v - q : 0;
	} else if (fdn->fmt == S_IFCHR) {
		if (ioctl(fdn->fd, TIOCOUTQ, &q) == 0)
			ev->data = q < TTY_OUTQ_SIZE ? TTY_OUTQ_SIZE - q : 0;
	} else if (fdn->eventfd) {
		ev->data = (int64_t)(EVENTFD_MAX - (uint64_t)eventfd_count(fdn->fd));
	}
	/* a socket's ERR without HUP is so_error without CANTSENDMORE: ready,
	 * not EOF (a pipe's ERR is its reader gone: EOF) */
	if (fdn->fmt == S_IFSOCK && !(fdn->revents & KQ_POLLHUP)) {
		if (error_pending(fdn))
			return 1;
	} else if (fdn->revents & (KQ_POLLHUP | KQ_POLLERR)) {
		if (unconnected(kq, fdn))
			return 0;
		ev->flags |= EV_EOF;
		if (fdn->fmt == S_IFSOCK)
			ev->fflags = sock_eof_error(fdn);
		/* FreeBSD clears a pipe's write knotes when its reader
		 * closes: reported once, then gone */
		if (fdn->anonpipe)
			kn->flags |= EV_ONESHOT;
		return 1;
	}
	if (!(fdn->revents & KQ_POLLOUT))
		return 0;
	return (kn->sfflags & NOTE_LOWAT) ? ev->data >= kn->sdata : 1;
}

/*
 * EVFILT_EMPTY: Linux wakes nobody when a send queue drains (acks only wake
 * writers that found the buffer full), so these knotes are polled
 * (KN_POLLED) while they exist.  With EV_CLEAR only the transition to empty
 * is reported; u.vnode.size remembers "empty already reported".
 */
static int
empty_attach(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *kev)
{
	int err = rw_check(kq, kn);

	(void)kev;
	if (err != 0)
		return err;
	kq_knote_poll(kq, kn);
	return 0;
}

static int
empty_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	struct kq_fdnode *fdn = kn->fdn;
	int64_t mark = 1;
	int q = 0;

	(void)kq;
	if (!fdn->listening && ioctl(fdn->fd, SIOCOUTQ, &q) != 0)
		return 0;
	ev->data = q;
	if (q != 0) {
		kn->u.vnode.size = 0;
		return 0;
	}
	/* TCP: an ack that emptied the queue between two polls still counts
	 * as a new transition: the acked byte counter moved */
	sock_type(fdn);
	if (!fdn->listening && (fdn->sofamily == AF_INET || fdn->sofamily == AF_INET6)) {
		struct tcp_info ti;
		socklen_t len = sizeof ti;
		if (getsockopt(fdn->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
		    len >= offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof ti.tcpi_bytes_acked)
			mark = (int64_t)ti.tcpi_bytes_acked + 1;
	}
	if ((kn->flags & EV_CLEAR) && kn->u.vnode.size == mark)
		return 0;
	kn->u.vnode.size = mark;
	return 1;
}

const struct kq_filterops kq_filt_read = {
	.filter = EVFILT_READ,
	.isfd = true,
	.probe_first = true,	/* rw_check() */
	.event_unlocked = true,	/* FIONREAD, fstat, getsockopt, poll: reads */
	.attach = rw_attach,
	.detach = rw_detach,
	.event = read_event,
	.rearm = rw_rearm,
	.pollevents = read_pollevents,
};

const struct kq_filterops kq_filt_write = {
	.filter = EVFILT_WRITE,
	.isfd = true,
	.probe_first = true,	/* rw_check() */
	.attach = rw_attach,
	.detach = rw_detach,
	.event = write_event,
	.rearm = rw_rearm,
	.pollevents = write_pollevents,
};

const struct kq_filterops kq_filt_empty = {
	.filter = EVFILT_EMPTY,
	.isfd = true,
	.probe_first = true,	/* rw_check() */
	.attach = empty_attach,
	.detach = rw_detach,
	.event = empty_event,
};
