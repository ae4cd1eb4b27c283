/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Linux's netlink proc connector: the only way to hear about forks, execs
 * and exits of processes that are not our children.  It needs CAP_NET_ADMIN
 * in the initial user and pid namespaces.  This file owns the socket and
 * speaks the protocol; filter_proc.c decides what a message means for its
 * knotes.  One socket per kqueue that needs it (its epoll set watches it).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>

#include "internal.h"

/* One control message: 4-byte op (every kernel), or op plus an event-type
 * filter (Linux 6.6+; older kernels ignore that size). */
static int
procconn_send(int fd, uint32_t seq, uint32_t op, uint32_t events)
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
procconn_acked(int fd, uint32_t seq)
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
			struct proc_event ev;

			if (nh->nlmsg_len < NLMSG_LENGTH(sizeof *cn + sizeof ev))
				continue;
			/* cn->data is not aligned for proc_event's u64 */
			memcpy(&ev, cn->data, sizeof ev);
			/* (newer kernels renumber the ack's seq) */
			if (ev.what == PROC_EVENT_NONE && cn->ack == seq + 1)
				return ev.event_data.ack.err == 0;
		}
	}
	return false;
}

int
kq_procconn_open(void)
{
	static _Atomic uint32_t seqs;
	struct sockaddr_nl sa;
	int fd, sz = 1 << 20, err;
	uint32_t seq;

	fd = kq_fd_own(socket(PF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, NETLINK_CONNECTOR));
	if (fd < 0) {
		err = errno;
		return -(err == EMFILE || err == ENFILE || err == ENOMEM ||
		    err == ENOBUFS ? err : ENOTSUP);
	}
	/* a busy machine forks a lot: make overruns unlikely */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	memset(&sa, 0, sizeof sa);
	sa.nl_family = AF_NETLINK;
	sa.nl_groups = CN_IDX_PROC;
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		goto unsupported;
	seq = ((uint32_t)getpid() << 12) ^ (atomic_fetch_add(&seqs, 2) << 1);
	if (procconn_send(fd, seq, PROC_CN_MCAST_LISTEN, 0) != 0 ||
	    !procconn_acked(fd, seq))
		goto unsupported;
	/* Linux 6.6+: only what filter_proc.c uses, please (best effort) */
	(void)procconn_send(fd, seq + 1, PROC_CN_MCAST_LISTEN,
	    PROC_EVENT_FORK | PROC_EVENT_EXEC | PROC_EVENT_EXIT);
	return fd;
unsupported:
	kq_fd_close(fd);
	return -ENOTSUP;
}

void
kq_procconn_close(int fd)
{
	if (fd >= 0)
		kq_fd_close(fd);
}

static void
procconn_deliver(const struct proc_event *pe,
    void (*fn)(void *, const struct kq_procmsg *), void *arg)
{
	struct kq_procmsg m;

	memset(&m, 0, sizeof m);
	switch (pe->what) {
	case PROC_EVENT_FORK:
		/* a new thread is not a fork */
		if (pe->event_data.fork.child_pid !=
		    pe->event_data.fork.child_tgid ||
		    pe->event_data.fork.parent_tgid ==
		    pe->event_data.fork.child_tgid)
			return;
		m.what = KQ_PROCMSG_FORK;
		m.pid = pe->event_data.fork.parent_tgid;
		m.child = pe->event_data.fork.child_tgid;
		break;
	case PROC_EVENT_EXEC:
		m.what = KQ_PROCMSG_EXEC;
		m.pid = pe->event_data.exec.process_tgid;
		break;
	case PROC_EVENT_EXIT:
		/* a thread's end is not the process's; the leader's carries
		 * the wait(2) status (the group's, on a group exit) */
		if (pe->event_data.exit.process_pid !=
		    pe->event_data.exit.process_tgid)
			return;
		m.what = KQ_PROCMSG_EXIT;
		m.pid = pe->event_data.exit.process_tgid;
		m.status = (int)pe->event_data.exit.exit_code;
		break;
	default:
		return;
	}
	fn(arg, &m);
}

bool
kq_procconn_read(int fd, void (*fn)(void *, const struct kq_procmsg *),
    void *arg)
{
	union {
		struct nlmsghdr nh;
		char b[8192];
	} buf;
	struct sockaddr_nl from;
	socklen_t fromlen;
	bool lost = false;
	ssize_t n;

	if (fd < 0)
		return false;
	for (;;) {
		fromlen = sizeof from;
		n = recvfrom(fd, &buf, sizeof buf, 0, (struct sockaddr *)&from,
		    &fromlen);
		if (n < 0) {
			if (errno == ENOBUFS)
				lost = true;	/* overrun: events were lost */
			if (errno == EINTR || errno == ENOBUFS)
				continue;
			return lost;
		}
		if (from.nl_pid != 0)
			continue;	/* only the kernel speaks here */
		for (struct nlmsghdr *nh = &buf.nh; NLMSG_OK(nh, (size_t)n);
		    nh = NLMSG_NEXT(nh, n)) {
			struct cn_msg *cn = NLMSG_DATA(nh);
			struct proc_event ev;

			if (nh->nlmsg_type == NLMSG_ERROR ||
			    nh->nlmsg_type == NLMSG_NOOP)
				continue;
			if (nh->nlmsg_len < NLMSG_LENGTH(sizeof *cn + sizeof ev) ||
			    cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC)
				continue;
			/* cn->data is not aligned for proc_event's u64 */
			memcpy(&ev, cn->data, sizeof ev);
			procconn_deliver(&ev, fn, arg);
		}
	}
}
