/*
 * EVFILT_READ, EVFILT_WRITE, EVFILT_EMPTY on any fd: sockets, pipes, FIFOs,
 * ttys, eventfds through the fd's epoll registration; regular files,
 * directories and devices epoll refuses (/dev/null) as always-ready knotes.
 *
 * data is computed when the knote is scanned, so it is exact at copy-out:
 * READ bytes readable (a listening TCP socket: its accept backlog), WRITE
 * free space in the send buffer, EMPTY bytes still queued (reported at 0).
 */
#include "internal.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#pragma weak kq_inotify_watch
#pragma weak kq_inotify_unwatch

/* Learn what kind of file this is, once per fdnode. */
static void
fd_type(struct kq_fdnode *fdn)
{
	struct stat st;
	socklen_t len;
	int v;

	if (fdn->typed)
		return;
	fdn->typed = true;
	fdn->fmt = fstat(fdn->fd, &st) == 0 ? (st.st_mode & S_IFMT) : 0;
	if (fdn->fmt != S_IFSOCK)
		return;
	len = sizeof v;
	if (getsockopt(fdn->fd, SOL_SOCKET, SO_TYPE, &v, &len) == 0)
		fdn->sotype = v;
	len = sizeof v;
	if (getsockopt(fdn->fd, SOL_SOCKET, SO_DOMAIN, &v, &len) == 0)
		fdn->sofamily = v;
	len = sizeof v;
	if (getsockopt(fdn->fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0)
		fdn->listening = v != 0;
}

static bool
is_file(const struct kq_fdnode *fdn)
{
	return fdn->fmt == S_IFREG || fdn->fmt == S_IFDIR;
}

/* Pending error of a socket, as FreeBSD's so_error in fflags. */
static unsigned
so_error(int fd)
{
	int v = 0;
	socklen_t len = sizeof v;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &len) < 0)
		return 0;
	return (unsigned)v;
}

static int
rw_attach(struct kq_kqueue *kq, struct kq_knote *kn)
{
	struct kq_fdnode *fdn = kn->fdn;
	int err = kq_fdnode_probe(kq, fdn);

	if (err != 0)
		return err;
	if (fdn->kind == KQ_FD_NOPOLL) {
		fd_type(fdn);
		/* Always ready, as poll() reports it: a level knote the scan
		 * re-checks.  A file at EOF re-arms when it grows (inotify). */
		kn->status |= KN_REQUEUE;
		if (is_file(fdn) && kn->kev.filter == EVFILT_READ && kq_inotify_watch)
			kq_inotify_watch(kq, kn, fdn->fd, IN_MODIFY);
		kq_knote_activate(kq, kn);
	}
	return 0;
}

static void
rw_detach(struct kq_kqueue *kq, struct kq_knote *kn)
{
	if (kn->u.vnode.wd >= 0 && kq_inotify_unwatch)
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
	return (kn->status & KN_DISABLED) ? 0 : KQ_POLLIN | KQ_POLLRDHUP;
}

static uint32_t
write_pollevents(struct kq_kqueue *kq, struct kq_knote *kn)
{
	(void)kq;
	return (kn->status & KN_DISABLED) ? 0 : KQ_POLLOUT;
}

static int
read_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	struct kq_fdnode *fdn = kn->fdn;
	int64_t lowat = (kn->sfflags & NOTE_LOWAT) && kn->sdata > 0 ? kn->sdata : 1;
	int n = 0;

	(void)kq;
	fd_type(fdn);
	if (is_file(fdn)) {
		struct stat st;
		off_t off = lseek(fdn->fd, 0, SEEK_CUR);
		if (fstat(fdn->fd, &st) < 0 || off < 0)
			return 0;
		ev->data = st.st_size > off ? st.st_size - off : 0;
		return ev->data != 0 || (kn->sfflags & NOTE_FILE_POLL);
	}
	if (fdn->kind == KQ_FD_NOPOLL) {
		ev->data = 0;
		return 1;
	}
	if (fdn->fmt == S_IFSOCK && fdn->listening) {
		struct tcp_info ti;
		socklen_t len = sizeof ti;
		if ((fdn->sofamily == AF_INET || fdn->sofamily == AF_INET6) &&
		    getsockopt(fdn->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
			ev->data = ti.tcpi_unacked;	/* accept queue length */
		else
			ev->data = (fdn->revents & KQ_POLLIN) ? 1 : 0;
		return ev->data > 0;
	}
	if (ioctl(fdn->fd, FIONREAD, &n) == 0)
		ev->data = n;
	else	/* eventfd, timerfd, signalfd...: one 8-byte record */
		ev->data = (fdn->revents & KQ_POLLIN) ? (fdn->fmt == 0 ? 8 : 1) : 0;
	if (fdn->revents & (KQ_POLLRDHUP | KQ_POLLHUP)) {
		ev->flags |= EV_EOF;
		if (fdn->fmt == S_IFSOCK)
			ev->fflags = so_error(fdn->fd);
		return 1;
	}
	return ev->data >= lowat;
}

static int
write_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	struct kq_fdnode *fdn = kn->fdn;
	int v = 0, q = 0;
	socklen_t len = sizeof v;

	(void)kq;
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
	}
	if (fdn->revents & (KQ_POLLHUP | KQ_POLLERR)) {
		ev->flags |= EV_EOF;
		if (fdn->fmt == S_IFSOCK)
			ev->fflags = so_error(fdn->fd);
		return 1;
	}
	if (!(fdn->revents & KQ_POLLOUT))
		return 0;
	return (kn->sfflags & NOTE_LOWAT) ? ev->data >= kn->sdata : 1;
}

static int
empty_attach(struct kq_kqueue *kq, struct kq_knote *kn)
{
	int err = rw_attach(kq, kn);

	if (err == 0) {
		fd_type(kn->fdn);
		if (kn->fdn->fmt != S_IFSOCK)
			return EINVAL;
	}
	return err;
}

static int
empty_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	int q = 0;

	(void)kq;
	if (ioctl(kn->fdn->fd, SIOCOUTQ, &q) != 0)
		return 0;
	ev->data = q;
	return q == 0;
}

const struct kq_filterops kq_filt_read = {
	.filter = EVFILT_READ,
	.isfd = true,
	.attach = rw_attach,
	.detach = rw_detach,
	.event = read_event,
	.rearm = rw_rearm,
	.pollevents = read_pollevents,
};

const struct kq_filterops kq_filt_write = {
	.filter = EVFILT_WRITE,
	.isfd = true,
	.attach = rw_attach,
	.detach = rw_detach,
	.event = write_event,
	.rearm = rw_rearm,
	.pollevents = write_pollevents,
};

const struct kq_filterops kq_filt_empty = {
	.filter = EVFILT_EMPTY,
	.isfd = true,
	.attach = empty_attach,
	.detach = rw_detach,
	.event = empty_event,
	.rearm = rw_rearm,
	.pollevents = write_pollevents,
};
