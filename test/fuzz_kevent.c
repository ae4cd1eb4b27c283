/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target: the input is a program of kevent() calls on two
 * kqueues over a small fixed set of resources (a pipe, a socketpair, a
 * temporary file, EVFILT_USER and EVFILT_TIMER idents, our own pid, a
 * blocked real-time signal), with arbitrary filters, flags, fflags and data,
 * interleaved with close/dup2/re-open of the resources, writes and reads,
 * zero-timeout waits, kqfree_release() and close() of a kqueue.
 *
 * Oracle (abort() on the first violation, so libFuzzer keeps the input):
 *   - every returned event is sane: a filter the program registered, flags
 *     a readiness event or a free notice may carry, EV_ERROR entries only in
 *     answer to changes, in their order, with the change's ident, filter and
 *     udata and an errno from FreeBSD's set; -1 returns with such an errno;
 *   - no readiness event for a knote that was deleted (EV_DELETE, its fd
 *     closed or replaced, kqfree_release()) and not added again;
 *   - EV_FREEWATCH references balance: udata always points at one of the
 *     kqueue's own counters; a successful EV_ADD|EV_FREEWATCH (without
 *     EV_DELETE) adds one, each returned EV_FREEWATCH event takes one away
 *     (never below zero); after kqfree_release() and collecting the notices
 *     every counter is zero;
 *   - nothing leaks: ASan/LSan for memory, and the open descriptor count
 *     does not grow from one input to the next.
 *
 * Built with clang -fsanitize=fuzzer,address,undefined together with the
 * library's sources (make fuzz; see test/Makefile.am).  Every wait has a
 * zero (or 1 ms) timeout, so timers of any length never make a run sleep.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/event.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NKQ	2
#define NRES	8		/* resource slots at FDBASE .. FDBASE + 7 */
#define FDBASE	200
#define NCNT	8		/* udata counters per kqueue (+ NULL) */
#define MAXCH	4
#define MAXEV	8
#define FUZZSIG	(SIGRTMIN + 5)

/* ------------------------------------------------------------ input */

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t
in_u8(struct input *in)
{
	if (in->n == 0)
		return 0;
	in->n--;
	return *in->p++;
}

static uint64_t
in_raw(struct input *in, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)in_u8(in) << (8 * i);
	return v;
}

/* ------------------------------------------------------------ oracle */

#define FAIL(...) do {							\
	fprintf(stderr, "fuzz_kevent oracle: " __VA_ARGS__);		\
	fputc('\n', stderr);						\
	abort();							\
} while (0)

struct kqslot {
	int fd;				/* -1: closed */
	int cnt[NCNT + 1];		/* references the kqueue holds; [NCNT] is NULL */
	/* (filter, ident) pairs known dead: deleted, fd closed, released */
	struct dead {
		short filter;
		uintptr_t ident;
	} dead[64], alive[64];
	int ndead, nalive;
	bool alldead;			/* after kqfree_release(): all but alive[] */
};

static struct kqslot kqs[NKQ];
static bool trace;		/* FUZZ_TRACE set: print the program as it runs */
#define TRACE(...) do { if (trace) fprintf(stderr, __VA_ARGS__); } while (0)
static int res_open[NRES];
static bool sig_blocked;

static bool
isfd_filter(short f)
{
	return f == EVFILT_READ || f == EVFILT_WRITE || f == EVFILT_EMPTY ||
	    f == EVFILT_VNODE || f == EVFILT_PROCDESC;
}

static bool
known_filter(short f)
{
	return f == EVFILT_READ || f == EVFILT_WRITE || f == EVFILT_EMPTY ||
	    f == EVFILT_VNODE || f == EVFILT_PROCDESC || f == EVFILT_TIMER ||
	    f == EVFILT_USER || f == EVFILT_SIGNAL || f == EVFILT_PROC;
}

/* FreeBSD's errnos for a kevent() change or call. */
static bool
bsd_errno(int64_t e)
{
	switch (e) {
	case EBADF: case EINVAL: case ENOENT: case ENOMEM: case ESRCH:
	case EPERM: case EACCES: case EOPNOTSUPP: case ENODEV: case EMFILE:
	case ENFILE:
	case EPIPE:	/* EVFILT_WRITE on a pipe whose reader is gone */
		return true;
	}
	return false;
}

/* udata -> counter index (NCNT for NULL), -1 if not one of kq's */
static int
udata_index(const struct kqslot *k, void *udata)
{
	if (udata == NULL)
		return NCNT;
	for (int i = 0; i < NCNT; i++)
		if (udata == (void *)&k->cnt[i])
			return i;
	return -1;
}

static void *
udata_of(struct kqslot *k, int i)
{
	return i == NCNT ? NULL : (void *)&k->cnt[i];
}

static int
find_pair(const struct dead *v, int n, short filter, uintptr_t ident)
{
	for (int i = 0; i < n; i++)
		if (v[i].filter == filter && v[i].ident == ident)
			return i;
	return -1;
}

/* Dead: deleted since its last add, or (after kqfree_release()) not added
 * since the release. */
static bool
is_dead(const struct kqslot *k, short filter, uintptr_t ident)
{
	if (find_pair(k->dead, k->ndead, filter, ident) >= 0)
		return true;
	return k->alldead && find_pair(k->alive, k->nalive, filter, ident) < 0;
}

static void
set_alive(struct kqslot *k, short filter, uintptr_t ident)
{
	int i = find_pair(k->dead, k->ndead, filter, ident);

	if (i >= 0)
		k->dead[i] = k->dead[--k->ndead];
	if (k->alldead && find_pair(k->alive, k->nalive, filter, ident) < 0) {
		if (k->nalive < (int)(sizeof k->alive / sizeof k->alive[0]))
			k->alive[k->nalive++] = (struct dead){ filter, ident };
		else
			k->alldead = false;	/* too many to follow: forget */
	}
}

static void
set_dead(struct kqslot *k, short filter, uintptr_t ident)
{
	int i;

	if (k->alldead) {
		if ((i = find_pair(k->alive, k->nalive, filter, ident)) >= 0)
			k->alive[i] = k->alive[--k->nalive];
		return;
	}
	if (find_pair(k->dead, k->ndead, filter, ident) < 0 &&
	    k->ndead < (int)(sizeof k->dead / sizeof k->dead[0]))
		k->dead[k->ndead++] = (struct dead){ filter, ident };
}

static void
set_all_dead(struct kqslot *k)
{
	k->alldead = true;
	k->ndead = 0;
	k->nalive = 0;
}

/* A descriptor number was closed or replaced: its knotes died. */
static void
fd_died(int fd)
{
	static const short fs[] = { EVFILT_READ, EVFILT_WRITE, EVFILT_EMPTY,
	    EVFILT_VNODE, EVFILT_PROCDESC };

	for (int k = 0; k < NKQ; k++)
		if (kqs[k].fd >= 0)
			for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
				set_dead(&kqs[k], fs[i], (uintptr_t)fd);
}

/* Check one returned event that is not an EV_ERROR entry. */
static void
check_event(struct kqslot *k, const struct kevent *ev)
{
	int ui = udata_index(k, ev->udata);

	if (ev->ext[0] | ev->ext[1] | ev->ext[2] | ev->ext[3])
		FAIL("ext not zero");
	if (!known_filter(ev->filter))
		FAIL("event with filter %d", ev->filter);
	if (ui < 0)
		FAIL("udata %p is not one of this kqueue's", ev->udata);
	if ((ev->flags & (EV_FREEWATCH | EV_DELETE)) == (EV_FREEWATCH | EV_DELETE)) {
		/* a free notice */
		if (ev->data != 0)
			FAIL("free notice with data %lld", (long long)ev->data);
		if (ev->fflags != NOTE_FREE_DELETE && ev->fflags != NOTE_FREE_CLOSE &&
		    ev->fflags != NOTE_FREE_UDATA && ev->fflags != NOTE_FREE_DROP &&
		    ev->fflags != NOTE_FREE_RELEASE)
			FAIL("free notice with fflags 0x%x", ev->fflags);
		if (ev->flags & (EV_ADD | EV_ENABLE | EV_DISABLE | EV_ERROR | EV_FORCEONESHOT))
			FAIL("free notice with flags 0x%x", ev->flags);
	} else {
		if (ev->flags & (EV_ADD | EV_DELETE | EV_ENABLE | EV_DISABLE |
		    EV_FORCEONESHOT | EV_ERROR | EV_DROP | EV_FLAG1))
			FAIL("event (filter %d ident %lu) with flags 0x%x",
			    ev->filter, (unsigned long)ev->ident, ev->flags);
		if ((ev->flags & EV_FREEWATCH) && !(ev->flags & EV_ONESHOT))
			FAIL("firing EV_FREEWATCH event without EV_ONESHOT (flags 0x%x)",
			    ev->flags);
		if (is_dead(k, ev->filter, ev->ident))
			FAIL("event for a dead knote: filter %d ident %lu flags 0x%x",
			    ev->filter, (unsigned long)ev->ident, ev->flags);
		/* a fired oneshot knote is gone */
		if (ev->flags & EV_ONESHOT)
			set_dead(k, ev->filter, ev->ident);
	}
	if (ev->flags & EV_FREEWATCH) {
		if (k->cnt[ui] <= 0)
			FAIL("EV_FREEWATCH hands back udata %d (filter %d ident %lu "
			    "flags 0x%x fflags 0x%x) that holds no reference",
			    ui, ev->filter, (unsigned long)ev->ident, ev->flags, ev->fflags);
		k->cnt[ui]--;
	}
}

/* ------------------------------------------------------------ resources */

static int
place(int fd, int slot)
{
	int target = FDBASE + slot;

	if (fd < 0)
		return -1;
	if (fd != target) {
		if (dup2(fd, target) < 0)
			FAIL("dup2 to resource slot: %s", strerror(errno));
		close(fd);
	}
	fcntl(target, F_SETFL, fcntl(target, F_GETFL) | O_NONBLOCK);
	res_open[slot] = 1;
	return 0;
}

static int
tmpfile_fd(void)
{
	int fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0) {
		char path[] = "/tmp/fuzzkq.XXXXXX";
		fd = mkstemp(path);
		if (fd >= 0)
			unlink(path);
	}
	return fd;
}

/* Slot kinds: 0/1 pipe r/w, 2/3 socketpair, 4 temp file, 5 eventfd-less
 * second pipe read end, 6 /dev/null, 7 normally closed (a bad ident). */
static void
open_slot(int slot, bool pair)
{
	int p[2];

	fd_died(FDBASE + slot);
	switch (slot) {
	case 0: case 1: case 5:
		if (pipe2(p, O_CLOEXEC) < 0)
			return;
		if (pair && slot == 0) {
			place(p[0], 0);
			place(p[1], 1);
			fd_died(FDBASE + 1);
		} else {
			place(p[slot == 1], slot);
			close(p[slot != 1]);
		}
		break;
	case 2: case 3:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0)
			return;
		if (pair && slot == 2) {
			place(p[0], 2);
			place(p[1], 3);
			fd_died(FDBASE + 3);
		} else {
			place(p[0], slot);
			close(p[1]);
		}
		break;
	case 4:
		place(tmpfile_fd(), 4);
		break;
	case 6:
		place(open("/dev/null", O_RDWR | O_CLOEXEC), 6);
		break;
	case 7: {
		int fd = pipe2(p, O_CLOEXEC) == 0 ? p[0] : -1;
		if (fd >= 0) {
			close(p[1]);
			place(fd, 7);
		}
		break;
	}
	}
}

static void
close_slot(int slot)
{
	fd_died(FDBASE + slot);
	close(FDBASE + slot);
	res_open[slot] = 0;
}

static void
kq_open(int k)
{
	struct kqslot *s = &kqs[k];

	memset(s, 0, sizeof *s);
	s->fd = kqueue();
	if (s->fd < 0 && !bsd_errno(errno))
		FAIL("kqueue: %s", strerror(errno));
}

/* Collect everything pending; all references must come back. */
static void
kq_teardown(int k, bool release)
{
	struct kqslot *s = &kqs[k];
	struct kevent ev[MAXEV];
	struct timespec zero = { 0, 0 };
	int n, rounds = 0;

	if (s->fd < 0)
		return;
	if (release) {
		if (kqfree_release(s->fd) != 0)
			FAIL("kqfree_release: %s", strerror(errno));
		set_all_dead(s);
		while ((n = kevent(s->fd, NULL, 0, ev, MAXEV, &zero)) > 0) {
			for (int i = 0; i < n; i++) {
				/* readiness was discarded: only notices */
				if ((ev[i].flags & (EV_FREEWATCH | EV_DELETE)) !=
				    (EV_FREEWATCH | EV_DELETE))
					FAIL("after kqfree_release: filter %d ident %lu flags 0x%x fflags 0x%x",
					    ev[i].filter, (unsigned long)ev[i].ident,
					    ev[i].flags, ev[i].fflags);
				check_event(s, &ev[i]);
			}
			if (++rounds > 100000)
				FAIL("notices never end");
		}
		if (n < 0)
			FAIL("kevent after release: %s", strerror(errno));
		for (int i = 0; i <= NCNT; i++)
			if (s->cnt[i] != 0)
				FAIL("after kqfree_release udata %d still holds %d reference(s)",
				    i, s->cnt[i]);
	}
	fd_died(s->fd);
	close(s->fd);
	s->fd = -1;
}

/* ------------------------------------------------------------ changes */

static short
pick_filter(uint8_t b)
{
	static const short fs[] = {
		EVFILT_READ, EVFILT_WRITE, EVFILT_EMPTY, EVFILT_TIMER,
		EVFILT_USER, EVFILT_SIGNAL, EVFILT_PROC, EVFILT_VNODE,
		EVFILT_READ, EVFILT_WRITE, EVFILT_TIMER, EVFILT_USER,
		EVFILT_PROCDESC, EVFILT_AIO, EVFILT_FS, 0, -14, 3,
	};

	return fs[b % (sizeof fs / sizeof fs[0])];
}

static uintptr_t
pick_ident(struct input *in, short filter, int k)
{
	uint8_t b = in_u8(in);

	if (b >= 0xf8)		/* hostile idents */
		switch (b & 7) {
		case 0: return (uintptr_t)-1;
		case 1: return 67108863;
		case 2: return (uintptr_t)1 << 31;
		case 3: return (uintptr_t)INT32_MAX;
		case 4: return (uintptr_t)in_raw(in, 8);
		case 5: return kqs[!k].fd >= 0 ? (uintptr_t)kqs[!k].fd : 0;
		case 6: return kqs[k].fd >= 0 ? (uintptr_t)kqs[k].fd : 0;
		default: return 0;
		}
	switch (filter) {
	case EVFILT_SIGNAL: {
		static const int sigs[] = { 0, SIGCHLD, 65, SIGKILL };
		return (b & 3) == 0 ? (uintptr_t)FUZZSIG : (uintptr_t)sigs[b % 4];
	}
	case EVFILT_PROC:
		return (b & 3) ? (uintptr_t)getpid() : (uintptr_t)0x3ffffff;
	case EVFILT_TIMER:
	case EVFILT_USER:
		return b % 4;
	default:
		return FDBASE + b % NRES;
	}
}

static unsigned
pick_fflags(struct input *in, short filter)
{
	uint8_t b = in_u8(in);

	if (b >= 0xe0)
		return (unsigned)in_raw(in, 4);
	switch (filter) {
	case EVFILT_USER: {
		static const unsigned u[] = { NOTE_TRIGGER, NOTE_FFOR | 3,
		    NOTE_FFAND | 1, NOTE_FFCOPY | 0x7, NOTE_TRIGGER | NOTE_FFOR | 8, 0 };
		return u[b % 6];
	}
	case EVFILT_TIMER: {
		static const unsigned t[] = { 0, NOTE_NSECONDS, NOTE_USECONDS,
		    NOTE_MSECONDS, NOTE_SECONDS, NOTE_ABSTIME, NOTE_NSECONDS | NOTE_ABSTIME,
		    0x20 };
		return t[b % 8];
	}
	case EVFILT_PROC: {
		static const unsigned p[] = { NOTE_EXIT, NOTE_FORK, NOTE_EXEC,
		    NOTE_EXIT | NOTE_TRACK, 0, NOTE_EXIT | NOTE_FORK | NOTE_EXEC };
		return p[b % 6];
	}
	case EVFILT_VNODE:
		return b & 0x7ff;
	case EVFILT_READ:
	case EVFILT_WRITE:
		return (b & 1) ? NOTE_LOWAT : (b & 2) ? NOTE_FILE_POLL : 0;
	}
	return b & 3;
}

static int64_t
pick_data(struct input *in)
{
	static const int64_t d[] = { 0, 1, 2, 5, 100, 1000, 4096, 65536, -1,
	    INT64_MAX, INT64_MIN, (int64_t)1 << 40, 1000000, 3 };
	uint8_t b = in_u8(in);

	if (b >= 0xf0)
		return (int64_t)in_raw(in, 8);
	return d[b % (sizeof d / sizeof d[0])];
}

static void
op_kevent(struct input *in, int k)
{
	struct kqslot *s = &kqs[k];
	struct kevent ch[MAXCH], ev[MAXEV];
	struct timespec zero = { 0, 0 };
	uint8_t b = in_u8(in);
	int nch = 1 + (b & 3), nev = (b >> 2) & 7, n, e, i, j;
	int fd = s->fd;
	bool badkq = false;

	/* With no room for EV_ERROR entries FreeBSD stops at the first failed
	 * change (or receipt): with one change, -1 says which one failed. */
	if (nev == 0)
		nch = 1;
	else if (nev < nch)
		nev = nch;
	if (fd < 0) {
		/* a closed kqueue: kevent() on a number that is no kqueue */
		fd = res_open[0] ? FDBASE : -1;
		badkq = true;
	}
	for (i = 0; i < nch; i++) {
		short filter = pick_filter(in_u8(in));
		uintptr_t ident = pick_ident(in, filter, k);
		unsigned short flags = (unsigned short)in_raw(in, 2);
		unsigned fflags = pick_fflags(in, filter);
		int64_t data = pick_data(in);
		int ui = in_u8(in) % (NCNT + 1);

		/* Mostly the interesting flags; sometimes any bits. */
		if (!(flags & 0x8000))
			flags &= EV_ADD | EV_DELETE | EV_ENABLE | EV_DISABLE |
			    EV_FORCEONESHOT | EV_KEEPUDATA | EV_ONESHOT | EV_CLEAR |
			    EV_RECEIPT | EV_DISPATCH | EV_FREEWATCH;
		/* Whether this takes a reference would depend on whether the
		 * knote exists, which the program does not know. */
		if ((flags & (EV_ADD | EV_FREEWATCH | EV_KEEPUDATA)) ==
		    (EV_ADD | EV_FREEWATCH | EV_KEEPUDATA) && !(flags & EV_DELETE))
			flags &= ~EV_KEEPUDATA;
		/* (ident, filter, udata) unique in this call, so an EV_ERROR
		 * entry names its change */
		for (j = 0; j < i; j++)
			if (ch[j].ident == ident && ch[j].filter == filter &&
			    ch[j].udata == udata_of(s, ui)) {
				ui = (ui + 1) % (NCNT + 1);
				j = -1;
			}
		EV_SET(&ch[i], ident, filter, flags, fflags, data, udata_of(s, ui));
	}

	n = kevent(fd, ch, nch, ev, nev, &zero);
	e = errno;
	for (i = 0; i < nch; i++)
		TRACE("kq%d change ident %lu filter %d flags 0x%x fflags 0x%x data %lld udata %d\n",
		    k, (unsigned long)ch[i].ident, ch[i].filter, ch[i].flags, ch[i].fflags,
		    (long long)ch[i].data, udata_index(s, ch[i].udata));
	TRACE("  -> %d (%s)\n", n, n < 0 ? strerror(e) : "");
	for (i = 0; i < n; i++)
		TRACE("  ev ident %lu filter %d flags 0x%x fflags 0x%x data %lld udata %d\n",
		    (unsigned long)ev[i].ident, ev[i].filter, ev[i].flags, ev[i].fflags,
		    (long long)ev[i].data, udata_index(s, ev[i].udata));
	if (badkq) {
		if (n != -1 || e != EBADF)
			FAIL("kevent on a closed kqueue number: %d/%s", n, strerror(e));
		return;
	}
	if (n < 0) {
		if (!bsd_errno(e))
			FAIL("kevent: -1 with errno %d (%s)", e, strerror(e));
		if (nev != 0)
			FAIL("kevent with room for errors: -1/%s", strerror(e));
		return;		/* the one change failed: nothing taken */
	}
	if (n > nev)
		FAIL("kevent returned %d > %d", n, nev);

	/* EV_ERROR entries: in change order, all of the result or none */
	bool errors = n > 0 && (ev[0].flags & EV_ERROR);
	bool failed[MAXCH] = { false };
	j = 0;
	for (i = 0; i < n; i++) {
		if (!errors) {
			if (ev[i].flags & EV_ERROR)
				FAIL("EV_ERROR entry after readiness events");
			continue;
		}
		if (ev[i].flags != EV_ERROR)
			FAIL("EV_ERROR entry with flags 0x%x", ev[i].flags);
		while (j < nch && !(ch[j].ident == ev[i].ident &&
		    ch[j].filter == ev[i].filter && ch[j].udata == ev[i].udata))
			j++;
		if (j == nch)
			FAIL("EV_ERROR entry (ident %lu filter %d) matches no change",
			    (unsigned long)ev[i].ident, ev[i].filter);
		if (ev[i].data == 0) {
			if (!(ch[j].flags & EV_RECEIPT))
				FAIL("EV_ERROR data 0 without EV_RECEIPT");
		} else if (!bsd_errno(ev[i].data)) {
			FAIL("EV_ERROR data %lld (filter %d ident %lu flags 0x%x)",
			    (long long)ev[i].data, ch[j].filter,
			    (unsigned long)ch[j].ident, ch[j].flags);
		} else
			failed[j] = true;
		j++;
	}
	/* The model: what each successful change did. */
	for (i = 0; i < nch; i++) {
		struct kevent *c = &ch[i];

		if (failed[i] || c->filter == 0)
			continue;
		if (c->flags & EV_DELETE) {
			/* EV_ADD|EV_DELETE deletes a knote that exists, but
			 * (as on FreeBSD) adds a missing one, unless it has
			 * EV_FREEWATCH (then ENOENT): it may live now */
			if ((c->flags & (EV_ADD | EV_FREEWATCH)) == EV_ADD)
				set_alive(s, c->filter, c->ident);
			else
				set_dead(s, c->filter, c->ident);
			continue;
		}
		if (c->flags & EV_ADD) {
			set_alive(s, c->filter, c->ident);
			if (c->flags & EV_FREEWATCH)
				s->cnt[udata_index(s, c->udata)]++;
		}
	}
	if (!errors)
		for (i = 0; i < n; i++)
			check_event(s, &ev[i]);
}

static void
op_wait(struct input *in, int k)
{
	struct kqslot *s = &kqs[k];
	struct kevent ev[MAXEV];
	uint8_t b = in_u8(in);
	struct timespec ts = { 0, (b & 0x80) ? 1000000 : 0 };
	int nev = 1 + (b & 7), n;

	if (s->fd < 0)
		return;
	n = kevent(s->fd, NULL, 0, ev, nev, &ts);
	/* libFuzzer's SIGALRM (its -timeout watchdog) may land in a 1 ms
	 * wait: EINTR, as on FreeBSD for a signal with a handler */
	if (n < 0 && errno == EINTR && ts.tv_nsec != 0)
		return;
	if (n < 0)
		FAIL("wait: %s", strerror(errno));
	TRACE("kq%d wait -> %d\n", k, n);
	for (int i = 0; i < n; i++)
		TRACE("  ev ident %lu filter %d flags 0x%x fflags 0x%x data %lld udata %d\n",
		    (unsigned long)ev[i].ident, ev[i].filter, ev[i].flags, ev[i].fflags,
		    (long long)ev[i].data, udata_index(s, ev[i].udata));
	if (n > nev)
		FAIL("wait returned %d > %d", n, nev);
	for (int i = 0; i < n; i++) {
		if (ev[i].flags & EV_ERROR)
			FAIL("EV_ERROR entry from a wait");
		check_event(s, &ev[i]);
	}
}

static void
op_io(struct input *in)
{
	static char buf[70000];
	uint8_t b = in_u8(in);
	int slot = b % NRES;
	size_t len = (b & 0x80) ? sizeof buf : 1 + in_u8(in);

	if (!res_open[slot])
		return;
	if (b & 0x40) {
		if (read(FDBASE + slot, buf, len) < 0 && errno == EINTR)
			FAIL("read EINTR");
	} else {
		memset(buf, 'z', len);
		(void)!write(FDBASE + slot, buf, len);
	}
}

static void
run(struct input *in)
{
	sigset_t ss;
	int ops = 0;

	if (!sig_blocked) {
		trace = getenv("FUZZ_TRACE") != NULL;
		sigemptyset(&ss);
		sigaddset(&ss, FUZZSIG);
		sigprocmask(SIG_BLOCK, &ss, NULL);
		/* writes into a pipe whose reader the program closed */
		signal(SIGPIPE, SIG_IGN);
		sig_blocked = true;
	}
	for (int i = 0; i < NRES; i++)
		res_open[i] = 0;
	open_slot(0, true);
	open_slot(2, true);
	open_slot(4, false);
	open_slot(5, false);
	open_slot(6, false);
	for (int k = 0; k < NKQ; k++)
		kq_open(k);

	while (in->n > 0 && ops++ < 400) {
		uint8_t op = in_u8(in);
		int k = (op >> 7) & 1;

		TRACE("op 0x%02x\n", op);
		switch (op & 0x0f) {
		case 0: case 1: case 2: case 3: case 4:
			if (kqs[k].fd >= 0 || (op & 0x40))
				op_kevent(in, k);
			break;
		case 5: case 6:
			op_wait(in, k);
			break;
		case 7:
			op_io(in);
			break;
		case 8:
			close_slot(in_u8(in) % NRES);
			break;
		case 9: {
			uint8_t b = in_u8(in);
			int from = b % NRES, to = (b >> 4) % NRES;
			if (from != to && res_open[from]) {
				fd_died(FDBASE + to);
				if (dup2(FDBASE + from, FDBASE + to) < 0)
					FAIL("dup2: %s", strerror(errno));
				res_open[to] = 1;
			}
			break;
		}
		case 10: {
			uint8_t b = in_u8(in);
			open_slot(b % NRES, b & 0x80);
			break;
		}
		case 11:
			if (kqs[k].fd >= 0) {
				if (kqfree_release(kqs[k].fd) != 0)
					FAIL("kqfree_release: %s", strerror(errno));
				set_all_dead(&kqs[k]);
			}
			break;
		case 12:
			/* close a kqueue: its references are dropped with it */
			if (kqs[k].fd >= 0 && (op & 0x40))
				kq_teardown(k, false);
			else if (kqs[k].fd < 0)
				kq_open(k);
			break;
		case 13:
			raise(FUZZSIG);
			break;
		case 14:
			/* close_range over the resources only */
			if (op & 0x40) {
				uint8_t b = in_u8(in);
				int lo = b % NRES, hi = (b >> 4) % NRES;
				if (lo <= hi) {
					for (int i = lo; i <= hi; i++) {
						fd_died(FDBASE + i);
						res_open[i] = 0;
					}
					close_range(FDBASE + lo, FDBASE + hi, 0);
				}
			}
			break;
		default:
			op_wait(in, k);
			break;
		}
	}

	for (int k = 0; k < NKQ; k++)
		kq_teardown(k, true);
	for (int i = 0; i < NRES; i++)
		if (res_open[i])
			close_slot(i);
}

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int base = -1;
	struct input in = { data, size };
	int nfd;

	run(&in);
	/* reap the closed kqueues (kevent() on no kqueue does it) */
	kevent(-1, NULL, 0, NULL, 0, NULL);
	/* drain the pending signal so the next input starts alike */
	{
		sigset_t ss;
		struct timespec zero = { 0, 0 };
		sigemptyset(&ss);
		sigaddset(&ss, FUZZSIG);
		while (sigtimedwait(&ss, NULL, &zero) > 0)
			;
	}
	nfd = count_fds();
	/* Process-wide services (signal, proc connector, inotify) keep a few
	 * descriptors once made; anything beyond that is a leak. */
	if (base < 0 || nfd < base)
		base = nfd;
	if (nfd > base + 8)
		FAIL("descriptor leak: %d open, %d after the first input", nfd, base);
	return 0;
}
