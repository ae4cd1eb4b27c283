/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * refcount: what a language binding (Perl IO::KQueue, a Python or Ruby
 * extension) does with EV_FREEWATCH, in miniature.
 *
 * The binding hangs a refcounted object (here a "struct sv", standing in for
 * a Perl SV*) on every knote's udata.  The rule is two lines long:
 *
 *   - before every EV_ADD: take a reference and set EV_FREEWATCH
 *     (give it back at once if the change fails);
 *   - for every returned event whose flags contain EV_FREEWATCH: drop one.
 *
 * That is all: oneshot events, NOTE_EXIT, EV_DELETE, close() of the fd,
 * udata replaced by a later EV_ADD, and kqfree_release() before closing the
 * kqueue all come back through that one test.  No side table from
 * (ident, filter) to pointer is needed.
 *
 * Build: cc refcount.c $(pkg-config --cflags --libs libkqfree)
 * Run:   ./refcount      (exit status 0 when no object leaked)
 */
#define _GNU_SOURCE	/* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/event.h>

/* ------------------------------------------------- the "interpreter" side */

struct sv {
	int refcnt;
	char name[32];
};

static int live;		/* objects not yet freed */

static struct sv *
sv_new(const char *name)
{
	struct sv *sv = calloc(1, sizeof(*sv));
	if (sv == NULL)
		abort();
	sv->refcnt = 1;
	snprintf(sv->name, sizeof(sv->name), "%s", name);
	live++;
	return sv;
}

static void
sv_inc(struct sv *sv)
{
	sv->refcnt++;
}

static void
sv_dec(struct sv *sv)
{
	if (--sv->refcnt == 0) {
		printf("  free %s\n", sv->name);
		free(sv);
		live--;
	}
}

/* ----------------------------------------------------- the binding itself */

/* $kq->EV_SET(ident, filter, flags, fflags, data, $sv) */
static int
binding_add(int kq, uintptr_t ident, short filter, unsigned short flags,
    unsigned fflags, int64_t data, struct sv *sv)
{
	struct kevent kev;

	/* The kqueue now holds a pointer: it owns a reference. */
	sv_inc(sv);
	EV_SET(&kev, ident, filter, EV_ADD | EV_FREEWATCH | flags, fflags, data, sv);
	if (kevent(kq, &kev, 1, NULL, 0, NULL) == -1) {
		int e = errno;
		sv_dec(sv);	/* a failed change takes no reference */
		errno = e;
		return -1;
	}
	return 0;
}

/* Any other change (EV_DELETE, EV_ENABLE, NOTE_TRIGGER...): EV_KEEPUDATA, so
 * the stored pointer - and its reference - stays as it is. */
static int
binding_change(int kq, uintptr_t ident, short filter, unsigned short flags,
    unsigned fflags)
{
	struct kevent kev;

	EV_SET(&kev, ident, filter, flags | EV_KEEPUDATA, fflags, 0, NULL);
	return kevent(kq, &kev, 1, NULL, 0, NULL);
}

static const char *
reason(unsigned fflags)
{
	switch (fflags) {
	case NOTE_FREE_DELETE:	return "EV_DELETE";
	case NOTE_FREE_CLOSE:	return "fd closed";
	case NOTE_FREE_UDATA:	return "udata replaced";
	case NOTE_FREE_DROP:	return "dropped by the library";
	case NOTE_FREE_RELEASE:	return "kqfree_release";
	default:		return "?";
	}
}

/* $kq->kevent(timeout): run callbacks, then return the references. */
static int
binding_poll(int kq, int ms)
{
	struct kevent ev[8];
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	int n = kevent(kq, NULL, 0, ev, 8, &ts);

	for (int i = 0; i < n; i++) {
		struct sv *sv = ev[i].udata;

		if ((ev[i].flags & (EV_FREEWATCH | EV_DELETE)) ==
		    (EV_FREEWATCH | EV_DELETE)) {
			/* A free notice: no callback, just the reference. */
			printf("  notice: %s released (%s)\n", sv->name,
			    reason(ev[i].fflags));
		} else if (ev[i].flags & EV_ERROR) {
			printf("  error on %s: %s\n", sv->name,
			    strerror((int)ev[i].data));
		} else {
			printf("  event: %s fired%s\n", sv->name,
			    (ev[i].flags & EV_FREEWATCH) ? " (and died)" : "");
		}
		if (ev[i].flags & EV_FREEWATCH)
			sv_dec(sv);
	}
	return n;
}

/* ------------------------------------------------------------ the script */

int
main(void)
{
	int kq = kqueue(), p[2], q[2];

	if (kq == -1 || pipe2(p, O_NONBLOCK) == -1 || pipe2(q, O_NONBLOCK) == -1) {
		perror("setup");
		return 1;
	}

	/* my $cb = sub {...}; $kq->EV_SET(...) - the script keeps its own
	 * reference only until it has handed the callbacks over. */
	struct sv *reader = sv_new("reader"), *once = sv_new("once"),
	    *closer = sv_new("closer"), *timer = sv_new("timer"),
	    *keeper = sv_new("keeper"), *bad = sv_new("bad");

	printf("EV_DELETE path\n");
	binding_add(kq, p[0], EVFILT_READ, 0, 0, 0, reader);
	sv_dec(reader);			/* script drops its copy */
	(void)!write(p[1], "x", 1);
	binding_poll(kq, 1000);		/* callback runs, reference kept */
	binding_change(kq, p[0], EVFILT_READ, EV_DELETE, 0);
	binding_poll(kq, 1000);		/* the notice brings it back */

	printf("EV_ONESHOT path\n");
	binding_add(kq, 1, EVFILT_USER, EV_ONESHOT, 0, 0, once);
	sv_dec(once);
	binding_change(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER);
	binding_poll(kq, 1000);		/* the firing event carries EV_FREEWATCH */

	printf("oneshot timer path\n");
	binding_add(kq, 2, EVFILT_TIMER, EV_ONESHOT, 0, 10, timer);
	sv_dec(timer);
	binding_poll(kq, 1000);

	printf("close() path\n");
	binding_add(kq, q[0], EVFILT_READ, 0, 0, 0, closer);
	sv_dec(closer);
	close(q[0]);			/* the kernel would forget silently */
	binding_poll(kq, 1000);

	printf("failed EV_ADD\n");
	if (binding_add(kq, q[0], EVFILT_READ, 0, 0, 0, bad) == -1)
		printf("  EV_ADD on a closed fd: %s (no reference taken)\n",
		    strerror(errno));
	sv_dec(bad);

	printf("teardown with a watch still registered\n");
	binding_add(kq, p[0], EVFILT_READ, 0, 0, 0, keeper);
	sv_dec(keeper);
	kqfree_release(kq);		/* DESTROY: every knote goes... */
	while (binding_poll(kq, 0) > 0)	/* ...and its notice is collected */
		;
	close(kq);

	close(p[0]);
	close(p[1]);
	close(q[1]);
	printf("live objects: %d\n", live);
	return live == 0 ? 0 : 1;
}
