/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * KQFree: libkqfree's kqueue for Perl, with any Perl value as udata.
 *
 * The reference rule (kqfree(3), EV_FREEWATCH):
 *   - every change with EV_ADD and without EV_DELETE is sent with
 *     EV_FREEWATCH and a udata of its own: a new SV holding a copy of the
 *     caller's value (a copy of a reference is one more reference to the
 *     same object).  The kqueue owns that SV from then on;
 *   - the SV is freed when the library hands its pointer back: in an event
 *     with EV_FREEWATCH set - a free notice (EV_FREEWATCH|EV_DELETE, which
 *     the binding consumes) or the last event of a oneshot knote (whose
 *     SV moves into the event given to Perl) - or in the EV_ERROR entry of
 *     the change that failed to take it.
 * Every other change (EV_DELETE, EV_ENABLE, EV_DISABLE, NOTE_TRIGGER...)
 * is sent with EV_KEEPUDATA, so the stored pointer and its reference stay
 * as they are; no table from (ident, filter) to SV is needed.
 *
 * Changes are sent with EV_RECEIPT, so the library answers each one with
 * an entry in order and a failed EV_ADD is known exactly, whatever $max
 * the caller gave (FreeBSD would return -1 with no room left, and then
 * which change failed, and which references were taken, is unknown).
 * Events are collected by a second call; FreeBSD's order is kept: error
 * (and asked-for receipt) entries return at once, without waiting.
 *
 * References are never dropped in the middle of a call: a dropped SV goes
 * on the mortal stack and its destructor (Perl code that may call back
 * into this kqueue) runs at the caller's next statement boundary, after
 * the events are on Perl's stack.
 */
#define PERL_NO_GET_CONTEXT
#include "EXTERN.h"
#include "perl.h"
#include "XSUB.h"

#include <errno.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

#include <sys/event.h>

struct kqfree_perl {
	int kq;			/* -1 once closed */
	pid_t owner;		/* a fork child sees EBADF on it: close only */
};
typedef struct kqfree_perl *KQFree;

/* how many events DESTROY collects per call while draining the notices */
#define DRAIN_BATCH 64

#define FREE_NOTICE(flags) \
	(((flags) & (EV_FREEWATCH | EV_DELETE)) == (EV_FREEWATCH | EV_DELETE))

struct kqfree_constant {
	const char *name;
	IV value;
};

#define K(name) { #name, (IV)(name) }
static const struct kqfree_constant kqfree_constants[] = {
	K(EVFILT_READ), K(EVFILT_WRITE), K(EVFILT_AIO), K(EVFILT_VNODE),
	K(EVFILT_PROC), K(EVFILT_SIGNAL), K(EVFILT_TIMER),
	K(EVFILT_PROCDESC), K(EVFILT_FS), K(EVFILT_LIO), K(EVFILT_USER),
	K(EVFILT_SENDFILE), K(EVFILT_EMPTY), K(EVFILT_SYSCOUNT),
	K(EV_ADD), K(EV_DELETE), K(EV_ENABLE), K(EV_DISABLE),
	K(EV_FORCEONESHOT), K(EV_KEEPUDATA), K(EV_ONESHOT), K(EV_CLEAR),
	K(EV_RECEIPT), K(EV_DISPATCH), K(EV_FREEWATCH), K(EV_SYSFLAGS),
	K(EV_DROP), K(EV_FLAG1), K(EV_FLAG2), K(EV_EOF), K(EV_ERROR),
	K(NOTE_FREE_DELETE), K(NOTE_FREE_CLOSE), K(NOTE_FREE_UDATA),
	K(NOTE_FREE_DROP), K(NOTE_FREE_RELEASE),
	K(NOTE_FFNOP), K(NOTE_FFAND), K(NOTE_FFOR), K(NOTE_FFCOPY),
	K(NOTE_FFCTRLMASK), K(NOTE_FFLAGSMASK), K(NOTE_TRIGGER),
	K(NOTE_LOWAT), K(NOTE_FILE_POLL),
	K(NOTE_DELETE), K(NOTE_WRITE), K(NOTE_EXTEND), K(NOTE_ATTRIB),
	K(NOTE_LINK), K(NOTE_RENAME), K(NOTE_REVOKE), K(NOTE_OPEN),
	K(NOTE_CLOSE), K(NOTE_CLOSE_WRITE), K(NOTE_READ),
	K(NOTE_EXIT), K(NOTE_FORK), K(NOTE_EXEC), K(NOTE_PCTRLMASK),
	K(NOTE_PDATAMASK), K(NOTE_TRACK), K(NOTE_TRACKERR), K(NOTE_CHILD),
	K(NOTE_SECONDS), K(NOTE_MSECONDS), K(NOTE_USECONDS),
	K(NOTE_NSECONDS), K(NOTE_ABSTIME),
	K(KQUEUE_CLOEXEC),
};
#undef K

/* one change as the caller wrote it, and what the binding sends for it */
struct pending_change {
	SV *udata;		/* the caller's value (mortal reference) */
	SV *held;		/* the knote's SV for an EV_ADD, else NULL */
	bool receipt;		/* the caller asked for EV_RECEIPT */
};

static SV *
change_field(pTHX_ AV *av, SSize_t i)
{
	SV **svp = av_fetch(av, i, 0);

	return svp != NULL ? *svp : &PL_sv_undef;
}

/* ident is a uintptr_t: a negative number wraps as in C (ident -1 is
 * how FreeBSD's tests ask for EBADF) */
static uintptr_t
sv_to_ident(pTHX_ SV *sv)
{
	if (SvIOK(sv) && !SvIsUV(sv))
		return (uintptr_t)SvIV(sv);
	if (!SvIOK(sv) && SvNOK(sv) && SvNV(sv) < 0)
		return (uintptr_t)SvIV(sv);
	return (uintptr_t)SvUV(sv);
}

static int64_t
sv_to_data(pTHX_ SV *sv)
{
	if (SvIOK(sv) && SvIsUV(sv))
		return (int64_t)SvUV(sv);
	return (int64_t)SvIV(sv);
}

/*
 * Fill kev from the caller's [ident, filter, flags, fflags, data, udata].
 * Croaks on a malformed change; nothing is owned yet when it does.
 */
static void
parse_change(pTHX_ SV *change, struct kevent *kev, struct pending_change *pc)
{
	AV *av;
	UV flags, fflags;

	if (!SvROK(change) || SvTYPE(SvRV(change)) != SVt_PVAV)
		croak("KQFree: a change is an array reference "
		    "[ident, filter, flags, fflags, data, udata]");
	av = (AV *)SvRV(change);
	flags = SvUV(change_field(aTHX_ av, 2));
	fflags = SvUV(change_field(aTHX_ av, 3));
	if (flags > 0xffff)
		croak("KQFree: flags 0x%" UVxf " do not fit 16 bits", flags);
	if (fflags > 0xffffffffU)
		croak("KQFree: fflags 0x%" UVxf " do not fit 32 bits", fflags);
	EV_SET(kev, sv_to_ident(aTHX_ change_field(aTHX_ av, 0)),
	    (short)SvIV(change_field(aTHX_ av, 1)), (unsigned short)flags,
	    (unsigned int)fflags, sv_to_data(aTHX_ change_field(aTHX_ av, 4)),
	    NULL);
	pc->udata = sv_2mortal(SvREFCNT_inc_simple_NN(change_field(aTHX_ av, 5)));
	pc->held = NULL;
	pc->receipt = (kev->flags & EV_RECEIPT) != 0;
	if (kev->filter == 0)
		return;		/* FreeBSD skips it: sent as is, no entry */

	if ((kev->flags & (EV_ADD | EV_DELETE)) == EV_ADD) {
		/* whether this takes a reference would depend on whether the
		 * knote exists, which the binding cannot know */
		if (kev->flags & EV_KEEPUDATA)
			croak("KQFree: EV_KEEPUDATA cannot be combined with "
			    "EV_ADD (it is implied on every other change)");
		/* tracked children's knotes would carry this SV without
		 * holding a reference to it */
		if (kev->filter == EVFILT_PROC && (kev->fflags & NOTE_TRACK))
			croak("KQFree: NOTE_TRACK is not supported");
		/* mortal until sent: a croak before then frees it */
		pc->held = sv_2mortal(newSVsv(pc->udata));
		kev->flags |= EV_FREEWATCH;
		kev->udata = pc->held;
	} else if (kev->flags & EV_DELETE) {
		/* a delete takes no reference; with EV_FREEWATCH even an
		 * EV_ADD|EV_DELETE of a missing knote is ENOENT instead of
		 * a knote without one */
		if (kev->flags & EV_ADD)
			kev->flags |= EV_FREEWATCH;
		kev->flags |= EV_KEEPUDATA;
	} else {
		kev->flags &= ~EV_FREEWATCH;
		kev->flags |= EV_KEEPUDATA;
	}
	kev->flags |= EV_RECEIPT;
}

static SV *
event_to_perl(pTHX_ const struct kevent *kev, unsigned short flags, SV *udata)
{
	AV *av = newAV();

	av_extend(av, 5);
	av_push(av, newSVuv((UV)kev->ident));
	av_push(av, newSViv((IV)kev->filter));
	av_push(av, newSVuv((UV)flags));
	av_push(av, newSVuv((UV)kev->fflags));
	av_push(av, newSViv((IV)kev->data));
	av_push(av, udata);
	return sv_2mortal(newRV_noinc((SV *)av));
}

/*
 * Collect what is queued now and drop every reference handed back;
 * readiness events are discarded.  Used after kqfree_release() (the queue
 * then holds only free notices).  The SVs are freed after the loop, by
 * the caller, so no destructor runs while the kqueue is being drained.
 */
static void
drain_notices(pTHX_ int kq, AV *dropped)
{
	struct kevent ev[DRAIN_BATCH];
	struct timespec zero = { 0, 0 };
	int i, n;

	while ((n = kevent(kq, NULL, 0, ev, DRAIN_BATCH, &zero)) > 0)
		for (i = 0; i < n; i++)
			if ((ev[i].flags & EV_FREEWATCH) && ev[i].udata != NULL)
				av_push(dropped, (SV *)ev[i].udata);
}

static void
kqfree_close(pTHX_ KQFree self)
{
	AV *dropped;
	int kq = self->kq;

	if (kq < 0)
		return;
	self->kq = -1;
	if (self->owner != getpid()) {
		/* a fork child: libkqfree closed the number at fork (it
		 * may name another file now) and the SVs are unreachable */
		return;
	}
	dropped = newAV();
	kqfree_release(kq);
	drain_notices(aTHX_ kq, dropped);
	close(kq);
	/* destructors run now, with the kqueue gone */
	SvREFCNT_dec((SV *)dropped);
}

static KQFree
self_open(pTHX_ KQFree self)
{
	if (self->kq < 0) {
		errno = EBADF;
		croak("KQFree: the kqueue is closed");
	}
	if (self->owner != getpid()) {
		errno = EBADF;
		croak("KQFree: a kqueue is not inherited by a fork child");
	}
	return self;
}

static struct timespec *
timeout_from_sv(pTHX_ SV *sv, struct timespec *ts)
{
	NV t, whole;

	SvGETMAGIC(sv);
	if (!SvOK(sv))
		return NULL;
	t = SvNV_nomg(sv);
	if (!(t >= 0))
		croak("KQFree: the timeout is a number of seconds, >= 0");
	whole = floor(t);
	ts->tv_sec = (time_t)whole;
	ts->tv_nsec = (long)((t - whole) * 1e9);
	if (ts->tv_nsec > 999999999L)
		ts->tv_nsec = 999999999L;
	return ts;
}

static void
timespec_sub_now(struct timespec *left, const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	left->tv_sec = deadline->tv_sec - now.tv_sec;
	left->tv_nsec = deadline->tv_nsec - now.tv_nsec;
	if (left->tv_nsec < 0) {
		left->tv_nsec += 1000000000L;
		left->tv_sec--;
	}
	if (left->tv_sec < 0)
		left->tv_sec = left->tv_nsec = 0;
}

MODULE = KQFree		PACKAGE = KQFree

PROTOTYPES: DISABLE

BOOT:
{
	HV *stash = gv_stashpv("KQFree", GV_ADD);
	size_t i;

	for (i = 0; i < sizeof kqfree_constants / sizeof kqfree_constants[0]; i++) {
		const struct kqfree_constant *c = &kqfree_constants[i];
		/* fflags and flags are unsigned: NOTE_EXIT is 0x80000000 */
		SV *value = c->value < 0 && strncmp(c->name, "EVFILT_", 7) != 0 ?
		    newSVuv((UV)(unsigned int)c->value) : newSViv(c->value);

		newCONSTSUB(stash, c->name, value);
	}
}

void
_constant_names()
    PREINIT:
	size_t i;
    PPCODE:
	for (i = 0; i < sizeof kqfree_constants / sizeof kqfree_constants[0]; i++)
		mXPUSHp(kqfree_constants[i].name, strlen(kqfree_constants[i].name));

KQFree
new(class)
	const char *class
    PREINIT:
	int kq;
    CODE:
	PERL_UNUSED_VAR(class);
	if ((kq = kqueuex(KQUEUE_CLOEXEC)) == -1)
		croak("KQFree: kqueue: %s", strerror(errno));
	Newxz(RETVAL, 1, struct kqfree_perl);
	RETVAL->kq = kq;
	RETVAL->owner = getpid();
    OUTPUT:
	RETVAL

int
fileno(self)
	KQFree self
    CODE:
	RETVAL = self_open(aTHX_ self)->kq;
    OUTPUT:
	RETVAL

void
kevent(self, changes = &PL_sv_undef, max = 0, timeout = &PL_sv_undef)
	KQFree self
	SV *changes
	IV max
	SV *timeout
    PREINIT:
	struct kevent *sent, *got;
	struct pending_change *pc;
	int *which;		/* sent[j] is the caller's change which[j] */
	struct timespec ts, deadline, *tsp;
	SSize_t nchanges = 0, i;
	int nsent = 0, n, j;
	bool answered = false;
    PPCODE:
	self_open(aTHX_ self);
	if (max < 0 || max > INT_MAX)
		croak("KQFree: max must be between 0 and %d", INT_MAX);
	tsp = timeout_from_sv(aTHX_ timeout, &ts);
	SvGETMAGIC(changes);
	if (SvOK(changes)) {
		if (!SvROK(changes) || SvTYPE(SvRV(changes)) != SVt_PVAV)
			croak("KQFree: changes is an array reference");
		nchanges = av_len((AV *)SvRV(changes)) + 1;
		if (nchanges > INT_MAX)
			croak("KQFree: too many changes");
	}

	if (nchanges > 0) {
		Newx(sent, nchanges, struct kevent);
		SAVEFREEPV(sent);
		Newx(got, nchanges, struct kevent);
		SAVEFREEPV(got);
		Newx(pc, nchanges, struct pending_change);
		SAVEFREEPV(pc);
		Newx(which, nchanges, int);
		SAVEFREEPV(which);
		for (i = 0; i < nchanges; i++) {
			parse_change(aTHX_ change_field(aTHX_
			    (AV *)SvRV(changes), i), &sent[nsent], &pc[i]);
			which[nsent++] = (int)i;
		}
		/* nothing croaks from here on: each EV_ADD's SV now belongs
		 * to its knote-to-be (the mortal reference is the call's) */
		for (i = 0; i < nchanges; i++)
			if (pc[i].held != NULL)
				SvREFCNT_inc_simple_void_NN(pc[i].held);
		n = kevent(self->kq, sent, nsent, got, nsent, NULL);
		if (n < 0) {
			/* before any change (EBADF, EINVAL): nothing taken */
			int err = errno;

			for (i = 0; i < nchanges; i++)
				if (pc[i].held != NULL)
					SvREFCNT_dec(pc[i].held);
			errno = err;
			croak("KQFree: kevent: %s", strerror(err));
		}
		/* one entry per change with a filter, in changelist order */
		for (j = 0, i = 0; j < n; j++) {
			struct pending_change *c;

			while (i < nsent && sent[i].filter == 0)
				i++;
			if (i >= nsent || got[j].ident != sent[i].ident ||
			    got[j].filter != sent[i].filter) {
				/* cannot happen (kevent.c applies changes in
				 * order); leaking beats freeing a live SV */
				warn("KQFree: receipt %d does not match its change", j);
				break;
			}
			c = &pc[which[i++]];
			if (got[j].data != 0 && c->held != NULL)
				SvREFCNT_dec(c->held);	/* not taken */
			if (got[j].data != 0 || c->receipt) {
				answered = true;
				XPUSHs(event_to_perl(aTHX_ &got[j], EV_ERROR,
				    newSVsv(c->held != NULL ? c->held : c->udata)));
			}
		}
		/* FreeBSD: with error or receipt entries, no scan */
		if (answered || max == 0) {
			PUTBACK;
			return;
		}
	}
	if (max == 0)
		XSRETURN_EMPTY;

	Newx(got, max, struct kevent);
	SAVEFREEPV(got);
	if (tsp != NULL) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += ts.tv_sec;
		deadline.tv_nsec += ts.tv_nsec;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_nsec -= 1000000000L;
			deadline.tv_sec++;
		}
	}
	for (;;) {
		int nreturned = 0, nnotices = 0;

		n = kevent(self->kq, NULL, 0, got, (int)max, tsp);
		if (n < 0) {
			if (errno == EINTR)
				XSRETURN_EMPTY;	/* $! says why */
			croak("KQFree: kevent: %s", strerror(errno));
		}
		for (j = 0; j < n; j++) {
			SV *held = (SV *)got[j].udata;

			if (FREE_NOTICE(got[j].flags)) {
				/* the knote's reference: consumed here */
				if (held != NULL)
					sv_2mortal(held);
				nnotices++;
				continue;
			}
			/* the last event of a oneshot knote carries its
			 * reference into the event; any other shares it.
			 * The knote keeps the EV_RECEIPT it was added with:
			 * the binding's, not the caller's. */
			XPUSHs(event_to_perl(aTHX_ &got[j],
			    got[j].flags & ~EV_RECEIPT,
			    held == NULL ? newSV(0) :
			    (got[j].flags & EV_FREEWATCH) ? held : newSVsv(held)));
			nreturned++;
		}
		/* only notices came back: they ended the wait early, so wait
		 * again for what the caller asked for */
		if (nreturned > 0 || nnotices == 0)
			break;
		if (tsp != NULL) {
			timespec_sub_now(&ts, &deadline);
			if (ts.tv_sec == 0 && ts.tv_nsec == 0 && n < max)
				break;	/* drained, and no time left */
		}
	}
	PUTBACK;
	return;

void
release(self)
	KQFree self
    PREINIT:
	AV *dropped;
    CODE:
	self_open(aTHX_ self);
	if (kqfree_release(self->kq) == -1)
		croak("KQFree: kqfree_release: %s", strerror(errno));
	dropped = (AV *)sv_2mortal((SV *)newAV());
	drain_notices(aTHX_ self->kq, dropped);

void
close(self)
	KQFree self
    CODE:
	kqfree_close(aTHX_ self);

void
DESTROY(self)
	KQFree self
    CODE:
	kqfree_close(aTHX_ self);
	Safefree(self);
