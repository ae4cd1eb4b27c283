/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * EVFILT_SIGNAL: count every delivery of a signal to the process, whatever
 * the application's disposition (handler, SIG_IGN, SIG_DFL), as FreeBSD does.
 *
 * Mechanism.  While any knote of any kqueue watches signal S, S's kernel
 * action is OUR handler (sig_handler), installed process-wide.  The
 * handler counts the delivery in a global per-signal counter, pokes ONE
 * process-wide eventfd, and then does what the application asked for
 * (calls its handler with its flags, ignores, or performs the default
 * action).  The application's own sigaction(), signal() and every other
 * call that sets a disposition are interposed: on a watched signal they
 * record its disposition, keep ours installed, and report the recorded one
 * back as the old action; exec gives the kernel SIG_IGN where the
 * application has it (see "exec" below).  Every kqueue with
 * signal knotes has a dup of the eventfd in its epoll set, edge-triggered,
 * so a write wakes every kqueue and nobody ever has to read (reset) it;
 * each knote remembers how much of the counter it has reported
 * (kn->s.sig.seen).
 *
 * A signal that every thread blocks is never delivered to a handler, yet
 * FreeBSD counts it when it is sent.  For that case each such kqueue also
 * has a dup of one process-wide signalfd for the watched set, again
 * edge-triggered and never read: generating a signal wakes it, and the
 * scan then looks at sigpending() and counts each watched signal that has
 * become pending (pend_counted[S] marks it counted, so the handler, or an
 * interposed sigwait*(), does not count it a second time when it is
 * finally consumed).
 *
 * The last EV_DELETE of S gives the kernel the application's recorded
 * disposition back.  Signal masks are never changed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <alloca.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "internal.h"

#define SIG_NSLOTS	_NSIG		/* 65: signals 1..64 */
/* A signal's bit in a 64-bit set, and back: signal 64 is bit 63. */
#define SIG_BIT(sig)	(1ull << ((sig) - 1))
#define SIG_FIRST(set)	(__builtin_ctzll(set) + 1)

struct sig_slot {
	/* The application's disposition, double-buffered so the handler can
	 * read a consistent copy without a lock: writers (under sig_lock,
	 * with every signal blocked) fill the idle copy and flip `live`. */
	struct sigaction app[2];
	_Atomic unsigned live;
	_Atomic bool resethand_fired;	/* emulated SA_RESETHAND already used */
	_Atomic bool watched;
	_Atomic uint64_t count;		/* deliveries since the process started */
	_Atomic int pend_counted;	/* counted while pending, not yet consumed */
	_Atomic unsigned consumed;	/* consumptions begun (handler, sigwait) */
	unsigned watchers;		/* knotes over all kqueues, under sig_lock */
};

/* Per kqueue (kq->sigpoll.owner): its dup of the signalfd, and which
 * signals it watches. */
struct sig_kq {
	struct kq_poll pend;
	struct kq_kqueue *kq;
	uint64_t mask;			/* SIG_BIT(S): this kqueue has a knote for S */
	LIST_ENTRY(sig_kq) link;	/* sig_kqs */
};

static struct sig_slot sig_slots[SIG_NSLOTS];
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int sig_evfd = -1;	/* written by the handler */
static int sig_sfd = -1;		/* signalfd for sig_set */
static int sig_sfd_edges = -1;		/* kq_edge_open(sig_sfd) */
static sigset_t sig_set;		/* watched signals that can stay pending */
static LIST_HEAD(, sig_kq) sig_kqs = LIST_HEAD_INITIALIZER(sig_kqs);
static pthread_once_t sig_once = PTHREAD_ONCE_INIT;
static pid_t sig_pid;			/* process the state above belongs to */

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
typedef sighandler_t (*signal_fn)(int, sighandler_t);
typedef int (*sigtimedwait_fn)(const sigset_t *, siginfo_t *, const struct timespec *);
typedef int (*sigwaitinfo_fn)(const sigset_t *, siginfo_t *);
typedef int (*sigwait_fn)(const sigset_t *, int *);
typedef int (*sigint_fn)(int, int);
typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*execv_fn)(const char *, char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);
typedef int (*execveat_fn)(int, const char *, char *const[], char *const[], int);

static sigaction_fn real_sigaction_fn;
static signal_fn real_signal_fn, real_sysv_signal_fn, real_sigset_fn;
static sigtimedwait_fn real_sigtimedwait_fn;
static sigwaitinfo_fn real_sigwaitinfo_fn;
static sigwait_fn real_sigwait_fn;
static int (*real_sigignore_fn)(int);
static sigint_fn real_siginterrupt_fn;
static execve_fn real_execve_fn, real_execvpe_fn;
static execv_fn real_execv_fn, real_execvp_fn;
static fexecve_fn real_fexecve_fn;
static execveat_fn real_execveat_fn;

/* SIG_BIT(S): siginterrupt(S, 1) is in force, so signal() on S must not ask for
 * SA_RESTART (glibc keeps the same set for its own signal()). */
static _Atomic uint64_t sig_nointr;

/*
 * Interrupted-wait bookkeeping for kevent(): low 32 bits count deliveries
 * our handler absorbed (the application ignores them, so on FreeBSD they
 * would not have interrupted anything), high 32 bits count deliveries that
 * ran an application handler.  initial-exec: the handler must not call
 * __tls_get_addr.
 */
static _Thread_local _Atomic uint64_t sig_intr
    __attribute__((tls_model("initial-exec")));
#define SIG_INTR_PHANTOM	1ull
#define SIG_INTR_GENUINE	(1ull << 32)

extern int __sigaction(int, const struct sigaction *, struct sigaction *);

static void sig_handler(int sig, siginfo_t *si, void *uc);
static void sig_lock_all(sigset_t *old);
static void sig_unlock_all(const sigset_t *old);
static void sig_fork_check(void);

static void
sig_resolve(void)
{
	real_sigaction_fn = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
	if (real_sigaction_fn == NULL)
		real_sigaction_fn = __sigaction;
	real_signal_fn = (signal_fn)dlsym(RTLD_NEXT, "signal");
	real_sysv_signal_fn = (signal_fn)dlsym(RTLD_NEXT, "sysv_signal");
	real_sigtimedwait_fn = (sigtimedwait_fn)dlsym(RTLD_NEXT, "sigtimedwait");
	real_sigwaitinfo_fn = (sigwaitinfo_fn)dlsym(RTLD_NEXT, "sigwaitinfo");
	real_sigwait_fn = (sigwait_fn)dlsym(RTLD_NEXT, "sigwait");
	real_sigset_fn = (signal_fn)dlsym(RTLD_NEXT, "sigset");
	real_sigignore_fn = (int (*)(int))dlsym(RTLD_NEXT, "sigignore");
	real_siginterrupt_fn = (sigint_fn)dlsym(RTLD_NEXT, "siginterrupt");
	real_execve_fn = (execve_fn)dlsym(RTLD_NEXT, "execve");
	real_execvpe_fn = (execve_fn)dlsym(RTLD_NEXT, "execvpe");
	real_execv_fn = (execv_fn)dlsym(RTLD_NEXT, "execv");
	real_execvp_fn = (execv_fn)dlsym(RTLD_NEXT, "execvp");
	real_fexecve_fn = (fexecve_fn)dlsym(RTLD_NEXT, "fexecve");
	real_execveat_fn = (execveat_fn)dlsym(RTLD_NEXT, "execveat");
	/* No prepare handler: sig_lock nests inside kq->lock (detach), and
	 * atfork prepare handlers run in an order we do not control. */
	pthread_atfork(NULL, NULL, kq_signal_fork_child);
}

/* At load time: the interposers may first run inside a signal handler,
 * where dlsym() must not be called. */
__attribute__((constructor)) static void
sig_init(void)
{
	pthread_once(&sig_once, sig_resolve);
}

static int
real_sigaction(int sig, const struct sigaction *act, struct sigaction *oact)
{
	pthread_once(&sig_once, sig_resolve);
	return real_sigaction_fn(sig, act, oact);
}

/* ------------------------------------------------------------ dispositions */

static bool
sig_watchable(uintptr_t ident)
{
	if (ident < 1 || ident >= SIG_NSLOTS)
		return false;
	if (ident == SIGKILL || ident == SIGSTOP)
		return false;
	/* glibc keeps 32..SIGRTMIN-1 for itself (cancellation, setxid) */
	if (ident >= 32 && (int)ident < SIGRTMIN)
		return false;
	return true;
}

static bool
sig_default_ignores(int sig)
{
	return sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH ||
	    sig == SIGCONT;
}

static bool
sig_default_stops(int sig)
{
	return sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

/* The application's disposition as sigaction() should report it. */
static void
sig_app_get(int sig, struct sigaction *out)
{
	struct sig_slot *s = &sig_slots[sig];

	*out = s->app[atomic_load_explicit(&s->live, memory_order_acquire)];
	if ((out->sa_flags & SA_RESETHAND) && atomic_load(&s->resethand_fired)) {
		out->sa_handler = SIG_DFL;
		out->sa_flags &= ~(SA_RESETHAND | SA_SIGINFO);
	}
}

/* Under sig_lock with every signal blocked. */
static void
sig_app_set(int sig, const struct sigaction *act)
{
	struct sig_slot *s = &sig_slots[sig];
	unsigned idle = 1 - atomic_load_explicit(&s->live, memory_order_relaxed);

	s->app[idle] = *act;
	atomic_store(&s->resethand_fired, false);
	atomic_store_explicit(&s->live, idle, memory_order_release);
}

/* Give the kernel our handler for sig, shaped after the application's
 * disposition.  Under sig_lock. */
static int
sig_install(int sig)
{
	struct sigaction app, k;

	sig_app_get(sig, &app);
	memset(&k, 0, sizeof k);
	if (sig == SIGCHLD && app.sa_handler == SIG_IGN) {
		/* FreeBSD does not record SIGCHLD while it is ignored, and the
		 * kernel's SIG_IGN is what makes children reap themselves. */
		k = app;
		return real_sigaction(sig, &k, NULL);
	}
	if (app.sa_handler != SIG_DFL && app.sa_handler != SIG_IGN) {
		k.sa_mask = app.sa_mask;
		k.sa_flags = app.sa_flags & (SA_RESTART | SA_NODEFER |
		    SA_ONSTACK | SA_NOCLDSTOP | SA_NOCLDWAIT);
	} else {
		/* Deliveries the application ignores must not break its
		 * restartable system calls. */
		sigemptyset(&k.sa_mask);
		k.sa_flags = SA_RESTART | (app.sa_flags &
		    (SA_ONSTACK | SA_NOCLDSTOP | SA_NOCLDWAIT));
	}
	k.sa_flags |= SA_SIGINFO;
	k.sa_sigaction = sig_handler;
	return real_sigaction(sig, &k, NULL);
}

/* ------------------------------------------------------------- counting */

/* Signal-safe. */
static void
sig_note(int sig)
{
	uint64_t one = 1;
	int fd;

	atomic_fetch_add(&sig_slots[sig].count, 1);
	fd = atomic_load(&sig_evfd);
	if (fd >= 0)
		(void)!write(fd, &one, sizeof one);
}

/* A watched signal was consumed (handler ran, sigwait* returned it). */
static void
sig_consumed(int sig)
{
	struct sig_slot *s = &sig_slots[sig];

	atomic_fetch_add(&s->consumed, 1);
	if (atomic_exchange(&s->pend_counted, 0) == 0)
		sig_note(sig);
}

/*
 * The signalfd said a signal was generated: count the watched signals that
 * are now pending and blocked, once each until they are consumed.
 *
 * A real-time signal queued again while it is still pending wakes the
 * signalfd too (each one is queued), and FreeBSD counts every generation.
 * The edge detector hands each batch of wake-ups to one scan only, so a
 * batch that made nothing newly pending is counted for the one watched
 * real-time signal pending, if there is exactly one.  (A standard signal sent
 * again while pending is merged by Linux and wakes nothing: not countable.)
 */
static void
sig_scan_pending(void)
{
	unsigned before[SIG_NSLOTS];
	sigset_t pend, old;
	bool edge, counted = false;
	int only = 0, nrt = 0;

	for (int sig = 1; sig < SIG_NSLOTS; sig++)
		before[sig] = atomic_load(&sig_slots[sig].consumed);
	sig_lock_all(&old);
	edge = kq_edge_take(sig_sfd_edges);
	if (sigpending(&pend) != 0) {
		sig_unlock_all(&old);
		return;
	}
	for (int sig = 1; sig < SIG_NSLOTS; sig++) {
		struct sig_slot *s = &sig_slots[sig];
		int one = 1;

		if (!atomic_load(&s->watched))
			continue;
		if (sigismember(&pend, sig) == 1) {
			if (sig >= SIGRTMIN && sig <= SIGRTMAX)
				nrt++, only = sig;
			if (atomic_exchange(&s->pend_counted, 1) != 0)
				continue;
			/* Another thread began taking a signal meanwhile: if
			 * its handler has not seen our mark yet, take the mark
			 * back and let it count; if it has, count here. */
			if (atomic_load(&s->consumed) != before[sig] &&
			    atomic_compare_exchange_strong(&s->pend_counted,
			    &one, 0))
				continue;
			sig_note(sig);
			counted = true;
		} else {
			/* Consumed where we could not see it (the
			 * application's own signalfd): count it next time. */
			atomic_compare_exchange_strong(&s->pend_counted, &one, 0);
		}
	}
	edge |= kq_edge_take(sig_sfd_edges);
	if (edge && !counted && nrt == 1)
		sig_note(only);
	sig_unlock_all(&old);
}

/* Default action of a signal the application left at SIG_DFL. */
static void
sig_default_action(int sig)
{
	struct sigaction dfl;
	sigset_t m;

	if (sig_default_ignores(sig)) {
		atomic_fetch_add(&sig_intr, SIG_INTR_PHANTOM);
		return;
	}
	if (sig_default_stops(sig)) {
		atomic_fetch_add(&sig_intr, SIG_INTR_PHANTOM);
		kill(getpid(), SIGSTOP);
		return;
	}
	/* Terminate (maybe with a core): let the kernel do it for real so
	 * the parent's wait status names this signal. */
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	real_sigaction_fn(sig, &dfl, NULL);
	sigemptyset(&m);
	sigaddset(&m, sig);
	sigprocmask(SIG_UNBLOCK, &m, NULL);
	raise(sig);
	/* Still alive (cannot really happen): watch it again. */
	sig_install(sig);
}

static void
sig_handler(int sig, siginfo_t *si, void *uc)
{
	int saved_errno = errno;
	struct sigaction app;

	if (sig <= 0 || sig >= SIG_NSLOTS)
		goto out;
	/* FreeBSD records the delivery before normal signal processing. */
	sig_consumed(sig);

	sig_app_get(sig, &app);
	if (app.sa_handler == SIG_IGN) {
		atomic_fetch_add(&sig_intr, SIG_INTR_PHANTOM);
	} else if (app.sa_handler == SIG_DFL) {
		sig_default_action(sig);
	} else {
		if ((app.sa_flags & SA_RESETHAND) &&
		    atomic_exchange(&sig_slots[sig].resethand_fired, true)) {
			sig_default_action(sig);
			goto out;
		}
		atomic_fetch_add(&sig_intr, SIG_INTR_GENUINE);
		errno = saved_errno;
		if (app.sa_flags & SA_SIGINFO)
			app.sa_sigaction(sig, si, uc);
		else
			app.sa_handler(sig);
		saved_errno = errno;
	}
out:
	errno = saved_errno;
}

/* ----------------------------------------------------- kevent() EINTR hook */

uint64_t
kq_signal_intr_snapshot(void)
{
	return atomic_load(&sig_intr);
}

bool
kq_signal_phantom_eintr(uint64_t snapshot)
{
	uint64_t now = atomic_load(&sig_intr);

	return now != snapshot &&
	    (now & ~0xffffffffull) == (snapshot & ~0xffffffffull);
}

/* --------------------------------------------------------- global watch */

static void
sig_block_all(sigset_t *old)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, old);
}

static void
sig_lock_all(sigset_t *old)
{
	sig_block_all(old);
	pthread_mutex_lock(&sig_lock);
}

static void
sig_unlock_all(const sigset_t *old)
{
	pthread_mutex_unlock(&sig_lock);
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* Under sig_lock. */
static int
sig_fds_open(void)
{
	sigset_t none;
	int fd;

	if (atomic_load(&sig_evfd) < 0) {
		fd = kq_fd_own(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
		if (fd < 0)
			return errno;
		atomic_store(&sig_evfd, fd);
	}
	if (sig_sfd < 0) {
		sigemptyset(&none);
		sig_sfd = kq_fd_own(signalfd(-1, &none, SFD_CLOEXEC | SFD_NONBLOCK));
		if (sig_sfd < 0)
			return errno;
	}
	if (sig_sfd_edges < 0) {
		fd = kq_edge_open(sig_sfd);
		if (fd < 0)
			return -fd;
		sig_sfd_edges = fd;
	}
	return 0;
}

/* Under sig_lock. */
static void
sig_set_update(int sig, bool on)
{
	if (on)
		sigaddset(&sig_set, sig);
	else
		sigdelset(&sig_set, sig);
	if (sig_sfd >= 0)
		signalfd(sig_sfd, &sig_set, 0);
}

static int
sig_watch(int sig)
{
	struct sig_slot *s = &sig_slots[sig];
	struct sigaction cur;
	sigset_t old, pend;
	int err;

	pthread_once(&sig_once, sig_resolve);
	sig_lock_all(&old);
	err = sig_fds_open();
	if (err != 0)
		goto out;
	if (s->watchers++ > 0)
		goto out;
	atomic_store(&s->watched, true);
	real_sigaction(sig, NULL, &cur);
	sig_app_set(sig, &cur);
	/* Sent before anyone watched: FreeBSD would not count it. */
	atomic_store(&s->pend_counted,
	    sigpending(&pend) == 0 && sigismember(&pend, sig) == 1);
	if (sig_install(sig) != 0) {
		err = errno;
		atomic_store(&s->watched, false);
		s->watchers--;
		goto out;
	}
	sig_set_update(sig, true);
out:
	sig_unlock_all(&old);
	return err;
}

static void
sig_unwatch(int sig)
{
	struct sig_slot *s = &sig_slots[sig];
	struct sigaction app;
	sigset_t old;

	sig_lock_all(&old);
	if (s->watchers > 0 && --s->watchers == 0) {
		sig_set_update(sig, false);
		sig_app_get(sig, &app);
		real_sigaction(sig, &app, NULL);
		atomic_store(&s->watched, false);
		atomic_store(&s->pend_counted, 0);
	}
	sig_unlock_all(&old);
}

/* ------------------------------------------------------------ per kqueue */

static void
sig_kq_check(struct kq_kqueue *kq, struct sig_kq *sk)
{
	uint64_t mask = sk->mask;

	while (mask != 0) {
		int sig = SIG_FIRST(mask);
		struct kq_knote *kn;

		mask &= mask - 1;
		kn = kq_knote_find(kq, EVFILT_SIGNAL, (uintptr_t)sig);
		if (kn != NULL &&
		    atomic_load(&sig_slots[sig].count) != kn->s.sig.seen)
			kq_knote_activate(kq, kn);
	}
}

static void
sig_ready_event(struct kq_kqueue *kq, struct kq_poll *p, uint32_t revents)
{
	(void)revents;
	/* Never read the eventfd: other kqueues share it (edge-triggered). */
	sig_kq_check(kq, p->owner);
}

static void
sig_ready_pending(struct kq_kqueue *kq, struct kq_poll *p, uint32_t revents)
{
	(void)revents;
	sig_scan_pending();
	sig_kq_check(kq, p->owner);
}

static void
sig_kq_close(struct kq_kqueue *kq)
{
	struct sig_kq *sk = kq->sigpoll.owner;
	sigset_t old;

	if (sk->pend.in_backend)
		kq_backend_detach(kq, &sk->pend);
	if (sk->pend.fd >= 0) {
		kq_poll_unregister(kq, &sk->pend);
		kq_fd_close(sk->pend.fd);
	}
	if (kq->sigpoll.in_backend)
		kq_backend_detach(kq, &kq->sigpoll);
	if (kq->sigpoll.fd >= 0) {
		kq_poll_unregister(kq, &kq->sigpoll);
		kq_fd_close(kq->sigpoll.fd);
	}
	memset(&kq->sigpoll, 0, sizeof kq->sigpoll);
	kq->sigpoll.fd = -1;
	sig_lock_all(&old);
	LIST_REMOVE(sk, link);
	sig_unlock_all(&old);
	free(sk);
}

static int
sig_poll_open(struct kq_kqueue *kq, struct kq_poll *p, int fd,
    void (*ready)(struct kq_kqueue *, struct kq_poll *, uint32_t), void *owner)
{
	int err;

	memset(p, 0, sizeof *p);
	p->fd = kq_fd_own(fcntl(fd, F_DUPFD_CLOEXEC, 3));
	if (p->fd < 0) {
		err = errno;
		p->fd = -1;
		return err;
	}
	p->want = KQ_POLLIN | KQ_POLLET;
	p->ready = ready;
	p->owner = owner;
	err = kq_poll_register(kq, p);
	if (err != 0) {
		kq_fd_close(p->fd);
		p->fd = -1;
		return err;
	}
	err = kq_backend_attach(kq, p);
	if (err != 0) {
		kq_poll_unregister(kq, p);
		kq_fd_close(p->fd);
		p->fd = -1;
	}
	return err;
}

/* First signal knote of kq: join the global eventfd and signalfd.  The
 * global fds exist (sig_watch ran first). */
static int
sig_kq_open(struct kq_kqueue *kq)
{
	struct sig_kq *sk;
	sigset_t old;
	int err;

	sk = calloc(1, sizeof *sk);
	if (sk == NULL)
		return ENOMEM;
	sk->kq = kq;
	sk->pend.fd = -1;
	err = sig_poll_open(kq, &kq->sigpoll, atomic_load(&sig_evfd),
	    sig_ready_event, sk);
	if (err != 0) {
		memset(&kq->sigpoll, 0, sizeof kq->sigpoll);
		kq->sigpoll.fd = -1;
		free(sk);
		return err;
	}
	sig_lock_all(&old);
	LIST_INSERT_HEAD(&sig_kqs, sk, link);
	sig_unlock_all(&old);
	err = sig_poll_open(kq, &sk->pend, sig_sfd_edges, sig_ready_pending, sk);
	if (err != 0) {
		sk->pend.fd = -1;
		sig_kq_close(kq);
		return err;
	}
	return 0;
}

/* ------------------------------------------------------------- filterops */

static int
filt_signal_attach(struct kq_kqueue *kq, struct kq_knote *kn,
    const struct kevent *kev)
{
	struct sig_kq *sk;
	int sig, err;

	(void)kev;
	if (!sig_watchable(kn->ident))
		return EINVAL;
	sig = (int)kn->ident;
	sig_fork_check();
	kn->flags |= EV_CLEAR;	/* FreeBSD sets it, and shows it */

	err = sig_watch(sig);
	if (err != 0)
		return err;
	if (kq->nsigknotes == 0) {
		err = sig_kq_open(kq);
		if (err != 0) {
			sig_unwatch(sig);
			return err;
		}
	}
	kq->nsigknotes++;
	sk = kq->sigpoll.owner;
	sk->mask |= SIG_BIT(sig);
	kn->s.sig.seen = atomic_load(&sig_slots[sig].count);
	return 0;
}

static void
filt_signal_detach(struct kq_kqueue *kq, struct kq_knote *kn)
{
	int sig = (int)kn->ident;
	struct sig_kq *sk = kq->sigpoll.owner;

	sig_fork_check();
	sk->mask &= ~SIG_BIT(sig);
	if (--kq->nsigknotes == 0)
		sig_kq_close(kq);
	sig_unwatch(sig);
}

static int
filt_signal_event(struct kq_kqueue *kq, struct kq_knote *kn, struct kevent *ev)
{
	uint64_t now = atomic_load(&sig_slots[kn->ident].count);

	(void)kq;
	if (now == kn->s.sig.seen)
		return 0;
	ev->data = (int64_t)(now - kn->s.sig.seen);
	kn->s.sig.seen = now;
	return 1;
}

const struct kq_filterops kq_filt_signal = {
	.filter = EVFILT_SIGNAL,
	.isfd = false,
	.small = true,
	.attach = filt_signal_attach,
	.detach = filt_signal_detach,
	.event = filt_signal_event,
};

/* ----------------------------------------------------------------- fork */

/*
 * A fork child inherits no kqueue, so nothing watches: give the kernel the
 * application's dispositions back (so a program it execs inherits its
 * SIG_IGN) and forget our fds.  Runs from our atfork handler (or a copy
 * child's adoption, kq_fork_adopt) or from the first attach/detach in the
 * child, whichever comes first.  The child is
 * single-threaded here, so no lock is taken; sig_lock may be held by a
 * thread that does not exist any more, and sig_kqs may be half-updated by
 * one: it is dropped unread (kqueue.c forsakes the inherited kqueues, so
 * no detach ever reaches their sig_kq).  The fds are owned, and
 * kq_fdreg_fork_child() closes those: closing them here as well would
 * close whatever number was handed out in between.
 */
static void
sig_fork_check(void)
{
	pid_t me = getpid();

	if (sig_pid == me)
		return;
	if (sig_pid == 0) {
		sig_pid = me;
		return;
	}
	sig_pid = me;
	pthread_mutex_init(&sig_lock, NULL);
	for (int sig = 1; sig < SIG_NSLOTS; sig++) {
		struct sig_slot *s = &sig_slots[sig];
		struct sigaction app;

		if (s->watchers == 0)
			continue;
		sig_app_get(sig, &app);
		real_sigaction_fn(sig, &app, NULL);
		s->watchers = 0;
		atomic_store(&s->watched, false);
		atomic_store(&s->pend_counted, 0);
	}
	sigemptyset(&sig_set);
	LIST_INIT(&sig_kqs);
	atomic_store(&sig_evfd, -1);
	sig_sfd = -1;
	sig_sfd_edges = -1;
}

void
kq_signal_fork_child(void)
{
	sig_fork_check();
}

/* --------------------------------------------------------- interposition */

/*
 * Every libc entry point that sets a disposition is interposed, because
 * glibc's implementations reach the kernel through its internal sigaction,
 * past ours: signal() and its aliases bsd_signal() and ssignal(),
 * sysv_signal() and __sysv_signal() (what signal() becomes under strict
 * ISO C), sigset(), sigignore() and siginterrupt().  Left to libc, each
 * would replace our handler (the signal stops being counted) or report it
 * back as the application's old disposition.
 *
 * The unwatched paths of the interposers run before anything else is ready:
 * a sanitizer runtime calls sigaction() while it initialises, and reaches
 * ours through RTLD_NEXT.  They must touch no instrumented code then.
 */
#define SIG_EARLY __attribute__((no_sanitize_thread, no_sanitize_address))

SIG_EARLY static bool
sig_is_watched(int sig)
{
	return sig > 0 && sig < SIG_NSLOTS &&
	    atomic_load(&sig_slots[sig].watched);
}

/* The application's sigaction() on a watched signal: record, keep ours. */
static int
sig_action(int sig, const struct sigaction *act, struct sigaction *oact)
{
	struct sigaction prev;
	sigset_t old;

	if (kq_vfork_child()) {
		/* its dispositions are its own, our memory is not: record
		 * nothing, take no lock (a parent thread may hold it) */
		sig_app_get(sig, &prev);
		if (act != NULL && real_sigaction(sig, act, NULL) != 0)
			return -1;
		if (oact != NULL)
			*oact = prev;
		return 0;
	}
	sig_lock_all(&old);
	if (!atomic_load(&sig_slots[sig].watched)) {
		sig_unlock_all(&old);
		return real_sigaction(sig, act, oact);
	}
	sig_app_get(sig, &prev);
	if (act != NULL) {
		sig_app_set(sig, act);
		if (sig_install(sig) != 0) {
			int err = errno;
			sig_app_set(sig, &prev);
			sig_install(sig);
			sig_unlock_all(&old);
			errno = err;
			return -1;
		}
	}
	sig_unlock_all(&old);
	if (oact != NULL)
		*oact = prev;
	return 0;
}

SIG_EARLY KQ_API int
sigaction(int sig, const struct sigaction *act, struct sigaction *oact)
{
	if (!sig_is_watched(sig))
		return real_sigaction_fn != NULL ?
		    real_sigaction_fn(sig, act, oact) : __sigaction(sig, act, oact);
	return sig_action(sig, act, oact);
}

static sighandler_t
sig_set_handler(int sig, sighandler_t handler, int flags)
{
	struct sigaction act, oact;

	memset(&act, 0, sizeof act);
	act.sa_handler = handler;
	act.sa_flags = flags;
	sigemptyset(&act.sa_mask);
	if (!(flags & SA_NODEFER))
		sigaddset(&act.sa_mask, sig);
	if (sig_action(sig, &act, &oact) != 0)
		return SIG_ERR;
	return oact.sa_handler;
}

/* BSD semantics, as glibc's signal(): restart unless siginterrupt() said
 * otherwise.  glibc's signal() reaches its sigaction internally, past the
 * interposer. */
SIG_EARLY KQ_API sighandler_t
signal(int sig, sighandler_t handler)
{
	if (!sig_is_watched(sig)) {
		pthread_once(&sig_once, sig_resolve);
		return real_signal_fn(sig, handler);
	}
	return sig_set_handler(sig, handler,
	    (atomic_load(&sig_nointr) & SIG_BIT(sig)) ? 0 : SA_RESTART);
}

SIG_EARLY KQ_API sighandler_t
sysv_signal(int sig, sighandler_t handler)
{
	if (!sig_is_watched(sig)) {
		pthread_once(&sig_once, sig_resolve);
		return real_sysv_signal_fn(sig, handler);
	}
	return sig_set_handler(sig, handler, SA_RESETHAND | SA_NODEFER);
}

/*
 * sigset(): SIG_HOLD adds sig to the thread's mask and leaves the
 * disposition alone; anything else sets the disposition (mask empty, no
 * flags: sig is held while its handler runs) and removes sig from the mask.
 * Either way the answer is SIG_HOLD if sig was blocked before, else the
 * application's previous disposition (never our handler).
 */
SIG_EARLY KQ_API sighandler_t
sigset(int sig, sighandler_t disp)
{
	struct sigaction act, oact;
	sigset_t one, omask;

	if (!sig_is_watched(sig)) {
		pthread_once(&sig_once, sig_resolve);
		return real_sigset_fn(sig, disp);
	}
	sigemptyset(&one);
	sigaddset(&one, sig);
	if (disp == SIG_HOLD) {
		if (pthread_sigmask(SIG_BLOCK, &one, &omask) != 0 ||
		    sig_action(sig, NULL, &oact) != 0)
			return SIG_ERR;
		return sigismember(&omask, sig) == 1 ? SIG_HOLD : oact.sa_handler;
	}
	memset(&act, 0, sizeof act);
	act.sa_handler = disp;
	sigemptyset(&act.sa_mask);
	if (sig_action(sig, &act, &oact) != 0 ||
	    pthread_sigmask(SIG_UNBLOCK, &one, &omask) != 0)
		return SIG_ERR;
	return sigismember(&omask, sig) == 1 ? SIG_HOLD : oact.sa_handler;
}

SIG_EARLY KQ_API int
sigignore(int sig)
{
	struct sigaction act;

	if (!sig_is_watched(sig)) {
		pthread_once(&sig_once, sig_resolve);
		return real_sigignore_fn(sig);
	}
	memset(&act, 0, sizeof act);
	act.sa_handler = SIG_IGN;
	sigemptyset(&act.sa_mask);
	return sig_action(sig, &act, NULL);
}

/*
 * siginterrupt(): remember the choice for our signal() and let libc keep
 * its own copy (its signal() reads it while sig is unwatched).  libc's
 * version rewrites the kernel's action - ours, while watched, which is
 * harmless - so the recorded disposition is then changed and ours
 * installed again, under the lock.
 */
SIG_EARLY KQ_API int
siginterrupt(int sig, int flag)
{
	struct sigaction app;
	sigset_t old;
	int r;

	pthread_once(&sig_once, sig_resolve);
	if (kq_vfork_child())
		return real_siginterrupt_fn(sig, flag);	/* see sig_action */
	if (sig > 0 && sig < SIG_NSLOTS) {
		if (flag)
			atomic_fetch_or(&sig_nointr, SIG_BIT(sig));
		else
			atomic_fetch_and(&sig_nointr, ~SIG_BIT(sig));
	}
	if (!sig_is_watched(sig))
		return real_siginterrupt_fn(sig, flag);
	sig_lock_all(&old);
	r = real_siginterrupt_fn(sig, flag);
	if (r == 0 && atomic_load(&sig_slots[sig].watched)) {
		sig_app_get(sig, &app);
		if (flag)
			app.sa_flags &= ~SA_RESTART;
		else
			app.sa_flags |= SA_RESTART;
		sig_app_set(sig, &app);
		if (sig_install(sig) != 0)
			r = -1;
	}
	sig_unlock_all(&old);
	return r;
}

/* Other names libc gives the same functions. */
extern __typeof(signal) bsd_signal KQ_API __THROW
    __attribute__((alias("signal")));
extern __typeof(signal) ssignal KQ_API __THROW
    __attribute__((alias("signal")));
extern __typeof(sysv_signal) __sysv_signal KQ_API __THROW
    __attribute__((alias("sysv_signal")));

/* sigwait*() consume a pending signal: count it if the signalfd scan has
 * not already done so. */
KQ_API int
sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *ts)
{
	int sig;

	pthread_once(&sig_once, sig_resolve);
	sig = real_sigtimedwait_fn(set, info, ts);
	if (sig_is_watched(sig))
		sig_consumed(sig);
	return sig;
}

KQ_API int
sigwaitinfo(const sigset_t *set, siginfo_t *info)
{
	int sig;

	pthread_once(&sig_once, sig_resolve);
	sig = real_sigwaitinfo_fn(set, info);
	if (sig_is_watched(sig))
		sig_consumed(sig);
	return sig;
}

KQ_API int
sigwait(const sigset_t *set, int *sigp)
{
	int err;

	pthread_once(&sig_once, sig_resolve);
	err = real_sigwait_fn(set, sigp);
	if (err == 0 && sig_is_watched(*sigp))
		sig_consumed(*sigp);
	return err;
}

/* ------------------------------------------------------------------ exec */

/*
 * A signal the application ignores stays ignored in a program it execs
 * (POSIX), but while it is watched the kernel holds our handler, which
 * exec resets to SIG_DFL.  So the exec family gives the kernel SIG_IGN for
 * those signals first, and our handler back if the exec fails.  Only what
 * the application ignores changes: a signal it catches, or that only we
 * catch, reverts to SIG_DFL as any caught signal does.  Deliveries in the
 * window are not counted; it ends with the process image unless exec
 * fails.
 *
 * This may run in a vfork() child, which shares our memory but not our
 * dispositions: it changes nothing but the kernel's actions, takes no lock
 * until the exec has failed, and then only if it is not such a child.
 */
static void
sig_exec_enter(uint64_t *ign)
{
	struct sigaction app, k;

	*ign = 0;
	for (int sig = 1; sig < SIG_NSLOTS; sig++) {
		if (!atomic_load(&sig_slots[sig].watched))
			continue;
		sig_app_get(sig, &app);
		if (app.sa_handler != SIG_IGN)
			continue;
		memset(&k, 0, sizeof k);
		k.sa_handler = SIG_IGN;
		sigemptyset(&k.sa_mask);
		if (real_sigaction(sig, &k, NULL) == 0)
			*ign |= SIG_BIT(sig);
	}
}

static void
sig_exec_leave(uint64_t ign)
{
	int saved_errno = errno;
	bool locked = getpid() == sig_pid;
	sigset_t old;

	if (ign == 0)
		return;
	if (locked)
		sig_lock_all(&old);
	while (ign != 0) {
		int sig = SIG_FIRST(ign);

		ign &= ign - 1;
		/* unwatched meanwhile: the kernel has the application's */
		if (atomic_load(&sig_slots[sig].watched))
			sig_install(sig);
	}
	if (locked)
		sig_unlock_all(&old);
	errno = saved_errno;
}

#define SIG_EXEC(fn, ...) ({						\
	uint64_t ign_;							\
	int r_;								\
	pthread_once(&sig_once, sig_resolve);				\
	if (real_##fn##_fn == NULL) {					\
		errno = ENOSYS;						\
		r_ = -1;						\
	} else {							\
		sig_exec_enter(&ign_);					\
		r_ = real_##fn##_fn(__VA_ARGS__);			\
		sig_exec_leave(ign_);					\
	}								\
	r_;								\
})

KQ_API int
execve(const char *path, char *const argv[], char *const envp[])
{
	return SIG_EXEC(execve, path, argv, envp);
}

KQ_API int
execv(const char *path, char *const argv[])
{
	return SIG_EXEC(execv, path, argv);
}

KQ_API int
execvp(const char *file, char *const argv[])
{
	return SIG_EXEC(execvp, file, argv);
}

KQ_API int
execvpe(const char *file, char *const argv[], char *const envp[])
{
	return SIG_EXEC(execvpe, file, argv, envp);
}

KQ_API int
fexecve(int fd, char *const argv[], char *const envp[])
{
	return SIG_EXEC(fexecve, fd, argv, envp);
}

KQ_API int
execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
    int flags)
{
	return SIG_EXEC(execveat, dirfd, path, argv, envp, flags);
}

/* The list forms: collect the arguments (on the stack: this may be a
 * vfork() child, and malloc is not async-signal-safe) and go through the
 * vector forms' real functions. */
static size_t
sig_exec_count(va_list ap)
{
	size_t n = 1;

	while (va_arg(ap, char *) != NULL)
		n++;
	return n;
}

#define SIG_EXEC_LIST(arg0, argv, envp) do {				\
	va_list ap_;							\
	size_t n_, i_;							\
	va_start(ap_, arg0);						\
	n_ = sig_exec_count(ap_);					\
	va_end(ap_);							\
	if (n_ > 1u << 20) {						\
		errno = E2BIG;						\
		return -1;						\
	}								\
	argv = alloca((n_ + 1) * sizeof *argv);				\
	argv[0] = (char *)(arg0);					\
	va_start(ap_, arg0);						\
	for (i_ = 1; i_ <= n_; i_++)					\
		argv[i_] = va_arg(ap_, char *);				\
	envp = va_arg(ap_, char **);					\
	va_end(ap_);							\
} while (0)

KQ_API int
execl(const char *path, const char *arg, ...)
{
	char **argv, **envp;

	SIG_EXEC_LIST(arg, argv, envp);
	(void)envp;
	return SIG_EXEC(execv, path, argv);
}

KQ_API int
execlp(const char *file, const char *arg, ...)
{
	char **argv, **envp;

	SIG_EXEC_LIST(arg, argv, envp);
	(void)envp;
	return SIG_EXEC(execvp, file, argv);
}

KQ_API int
execle(const char *path, const char *arg, ...)
{
	char **argv, **envp;

	SIG_EXEC_LIST(arg, argv, envp);
	return SIG_EXEC(execve, path, argv, envp);
}

/*
 * The same functions under hidden names, for the GOT patch (libkqfree loaded
 * RTLD_LOCAL, so the program's sigaction() binds to libc's): inside the
 * library a reference to `sigaction` may bind to libc's too, these always
 * bind here.  What applies to the close family applies here: a program
 * whose sigaction() reaches libc replaces the handler that counts, and the
 * last EV_DELETE then restores a disposition it has since changed.
 */
#define SIG_HIDDEN(name, target) \
	extern __typeof(target) name __attribute__((alias(#target), visibility("hidden")))
/* for those glibc declares __THROW (leaf, nothrow): the alias must match */
#define SIG_HIDDEN_THROW(name, target) \
	extern __typeof(target) name __THROW __attribute__((alias(#target), visibility("hidden")))
/* __typeof of the obsolete XSI functions would warn: they are ours here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
SIG_HIDDEN_THROW(kq_interposed_sigaction, sigaction);
SIG_HIDDEN_THROW(kq_interposed_signal, signal);
SIG_HIDDEN_THROW(kq_interposed_sysv_signal, sysv_signal);
SIG_HIDDEN(kq_interposed_sigset, sigset);
SIG_HIDDEN(kq_interposed_sigignore, sigignore);
SIG_HIDDEN(kq_interposed_siginterrupt, siginterrupt);
SIG_HIDDEN(kq_interposed_sigtimedwait, sigtimedwait);
SIG_HIDDEN(kq_interposed_sigwaitinfo, sigwaitinfo);
SIG_HIDDEN(kq_interposed_sigwait, sigwait);
SIG_HIDDEN_THROW(kq_interposed_execve, execve);
SIG_HIDDEN_THROW(kq_interposed_execv, execv);
SIG_HIDDEN_THROW(kq_interposed_execvp, execvp);
SIG_HIDDEN_THROW(kq_interposed_execvpe, execvpe);
SIG_HIDDEN_THROW(kq_interposed_fexecve, fexecve);
SIG_HIDDEN_THROW(kq_interposed_execveat, execveat);
SIG_HIDDEN_THROW(kq_interposed_execl, execl);
SIG_HIDDEN_THROW(kq_interposed_execle, execle);
SIG_HIDDEN_THROW(kq_interposed_execlp, execlp);
#pragma GCC diagnostic pop

const struct kq_interpose kq_signal_interpose[KQ_SIGNAL_NINTERPOSE] = {
	{ "sigaction", (void *)kq_interposed_sigaction },
	{ "signal", (void *)kq_interposed_signal },
	{ "bsd_signal", (void *)kq_interposed_signal },
	{ "ssignal", (void *)kq_interposed_signal },
	{ "sysv_signal", (void *)kq_interposed_sysv_signal },
	{ "__sysv_signal", (void *)kq_interposed_sysv_signal },
	{ "sigset", (void *)kq_interposed_sigset },
	{ "sigignore", (void *)kq_interposed_sigignore },
	{ "siginterrupt", (void *)kq_interposed_siginterrupt },
	{ "sigtimedwait", (void *)kq_interposed_sigtimedwait },
	{ "sigwaitinfo", (void *)kq_interposed_sigwaitinfo },
	{ "sigwait", (void *)kq_interposed_sigwait },
	{ "execve", (void *)kq_interposed_execve },
	{ "execv", (void *)kq_interposed_execv },
	{ "execvp", (void *)kq_interposed_execvp },
	{ "execvpe", (void *)kq_interposed_execvpe },
	{ "fexecve", (void *)kq_interposed_fexecve },
	{ "execveat", (void *)kq_interposed_execveat },
	{ "execl", (void *)kq_interposed_execl },
	{ "execle", (void *)kq_interposed_execle },
	{ "execlp", (void *)kq_interposed_execlp },
};
