/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * EVFILT_USER: an event the application triggers itself.  It needs no
 * descriptor: a trigger just activates the knote, and the kqueue's wake
 * eventfd (kept readable by the core while events are queued) is what wakes
 * a thread blocked in kevent() on this kqueue.
 *
 * FreeBSD 14 semantics (filt_usertouch) followed exactly:
 *  - EV_ADD stores fflags and data verbatim and never triggers, even with
 *    NOTE_TRIGGER (the trigger bit of a new knote is not looked at).
 *  - every later change (EV_ADD again, EV_ENABLE, EV_DISABLE, flags 0):
 *    NOTE_TRIGGER triggers; the NOTE_FFCTRLMASK operation (NOP/AND/OR/COPY)
 *    applies the change's lower 24 bits to the stored fflags; data replaces
 *    the stored data; EV_CLEAR in the change un-triggers it.
 *  - a report returns the stored fflags and data.  With EV_CLEAR on the
 *    knote the trigger resets after the report (stored fflags/data are
 *    kept); without it the knote stays triggered and is reported by every
 *    kevent() until a change with EV_CLEAR, or EV_DELETE.
 */
#include "internal.h"

static int
filt_user_attach(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *kev)
{
	(void)kev;
	(void)kq;
	kn->u.user.triggered = false;
	/* Without EV_CLEAR a triggered knote is level: nothing re-reports it. */
	kn->status |= KN_REQUEUE;
	return 0;
}

static void
filt_user_detach(struct kq_kqueue *kq, struct kq_knote *kn)
{
	(void)kq;
	(void)kn;
}

static int
filt_user_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	(void)kq;
	if (!kn->u.user.triggered)
		return 0;
	ev->fflags = kn->sfflags;
	ev->data = kn->sdata;
	return 1;
}

static int
filt_user_touch(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *change)
{
	unsigned ff = change->fflags & NOTE_FFLAGSMASK;

	if (change->fflags & NOTE_TRIGGER)
		kn->u.user.triggered = true;
	switch (change->fflags & NOTE_FFCTRLMASK) {
	case NOTE_FFAND:
		kn->sfflags &= ff;
		break;
	case NOTE_FFOR:
		kn->sfflags |= ff;
		break;
	case NOTE_FFCOPY:
		kn->sfflags = ff;
		break;
	default:			/* NOTE_FFNOP */
		break;
	}
	kn->sdata = change->data;
	if (change->flags & EV_CLEAR) {
		kn->u.user.triggered = false;
		kn->data = 0;
		kn->fflags = 0;
	}
	/*
	 * As FreeBSD re-evaluates the filter after every change: a triggered
	 * knote (new trigger, or one left triggered by EV_DISPATCH and now
	 * enabled again) is queued; a disabled one is only marked active.
	 */
	if (kn->u.user.triggered)
		kq_knote_activate(kq, kn);
	return 0;
}

static void
filt_user_clear(struct kq_kqueue *kq, struct kq_knote *kn)
{
	(void)kq;
	kn->u.user.triggered = false;
	kn->data = 0;
	kn->fflags = 0;
}

const struct kq_filterops kq_filt_user = {
	.filter = EVFILT_USER,
	.isfd = false,
	.attach = filt_user_attach,
	.detach = filt_user_detach,
	.event = filt_user_event,
	.touch = filt_user_touch,
	.clear = filt_user_clear,
};
