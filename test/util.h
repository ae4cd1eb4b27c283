/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Shared helpers for the Check suites: exact kevent assertions, bounded
 * waits, and the descriptors, clocks and threads the cases set up.  All
 * static inline (or macros): a suite that uses none of them pays nothing.
 */
#ifndef KQ_TEST_UTIL_H
#define KQ_TEST_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* pipe2, accept4, pthread_timedjoin_np */
#endif
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/event.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* An integer as udata. */
#define UD(x)	((void *)(uintptr_t)(x))

/* Built with AddressSanitizer, or ThreadSanitizer (gcc says
 * __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__, clang 14 only answers
 * __has_feature). */
#if defined(__SANITIZE_ADDRESS__)
#define KQ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KQ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define KQ_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KQ_TSAN 1
#endif
#endif

/* Apply one change; returns kevent()'s result. */
static inline int
kev_change(int kq, uintptr_t ident, short filter, unsigned short flags,
    unsigned fflags, int64_t data, void *udata)
{
	struct kevent kev;
	EV_SET(&kev, ident, filter, flags, fflags, data, udata);
	return kevent(kq, &kev, 1, NULL, 0, NULL);
}

/* Apply one change that must succeed. */
#define kev_ok(kq, ident, filter, flags, fflags, data, udata) \
	ck_assert_int_eq(kev_change(kq, ident, filter, flags, fflags, data, udata), 0)

/* Wait at most ms milliseconds for events. */
static inline int
kev_wait(int kq, struct kevent *ev, int n, long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	return kevent(kq, NULL, 0, ev, n, &ts);
}

/* Exactly this event must be the next one (waiting at most ms). */
#define kev_expect(kq, ms, ident_, filter_, flags_, fflags_, data_, udata_) do { \
	struct kevent ev_;						\
	memset(&ev_, 0xa5, sizeof ev_);					\
	int n_ = kev_wait(kq, &ev_, 1, ms);				\
	ck_assert_msg(n_ == 1, "expected one event, kevent returned %d (%s)", n_, \
	    n_ < 0 ? strerror(errno) : "no errno");			\
	ck_assert_uint_eq(ev_.ident, (uintptr_t)(ident_));		\
	ck_assert_int_eq(ev_.filter, (filter_));			\
	ck_assert_uint_eq(ev_.flags, (unsigned short)(flags_));		\
	ck_assert_uint_eq(ev_.fflags, (unsigned)(fflags_));		\
	ck_assert_int_eq(ev_.data, (int64_t)(data_));			\
	ck_assert_ptr_eq(ev_.udata, (void *)(udata_));			\
	ck_assert_uint_eq(ev_.ext[0] | ev_.ext[1] | ev_.ext[2] | ev_.ext[3], 0); \
} while (0)

/* No event may be pending (polls without waiting). */
#define kev_expect_none(kq) do {					\
	struct kevent ev_;						\
	int n_ = kev_wait(kq, &ev_, 1, 0);				\
	ck_assert_msg(n_ == 0, "expected no event, got %d: ident %lu filter %d flags 0x%x data %lld", \
	    n_, (unsigned long)ev_.ident, ev_.filter, ev_.flags, (long long)ev_.data); \
} while (0)

/* -1 with this errno */
#define ck_assert_errno(expr, err) do {					\
	errno = 0;							\
	int r_ = (expr);						\
	ck_assert_msg(r_ == -1 && errno == (err),			\
	    "%s: expected -1/%s, got %d/%s", #expr, strerror(err), r_, strerror(errno)); \
} while (0)

/* ------------------------------------------------------ descriptors */

static inline int
xkqueue(void)
{
	int kq = kqueue();

	ck_assert_int_ge(kq, 0);
	return kq;
}

static inline void
xpipe2(int p[2], int flags)
{
	ck_assert_int_eq(pipe2(p, flags), 0);
}

/* The usual test pipe: non-blocking, not inherited across exec. */
static inline void
xpipe(int p[2])
{
	xpipe2(p, O_NONBLOCK | O_CLOEXEC);
}

/* A non-blocking AF_UNIX pair of this type (SOCK_STREAM, SOCK_DGRAM). */
static inline void
xsocketpair(int type, int s[2])
{
	ck_assert_int_eq(socketpair(AF_UNIX, type | SOCK_NONBLOCK, 0, s), 0);
}

/* Write exactly n (at most 4096) bytes in one call. */
static inline void
xwrite(int fd, size_t n)
{
	char buf[4096];

	memset(buf, 'x', sizeof buf);
	ck_assert_uint_le(n, sizeof buf);
	ck_assert_int_eq(write(fd, buf, n), (ssize_t)n);
}

/* Read exactly n (at most 4096) bytes in one call. */
static inline void
xread(int fd, size_t n)
{
	char buf[4096];

	ck_assert_uint_le(n, sizeof buf);
	ck_assert_int_eq(read(fd, buf, n), (ssize_t)n);
}

static inline void
set_nonblock(int fd)
{
	ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* An unlinked regular file holding size bytes, offset 0. */
static inline int
make_regular_file(size_t size)
{
	char path[] = "/tmp/kqtest.XXXXXX";
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	unlink(path);
	if (size > 0)
		xwrite(fd, size);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

/* The descriptors this process has open. */
static inline int
count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;		/* the directory stream's own fd */
}

/* ------------------------------------------------------ TCP loopback */

/* A listening loopback TCP socket on an ephemeral port (written to sin). */
static inline int
tcp_listener(int backlog, struct sockaddr_in *sin)
{
	socklen_t len = sizeof *sin;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	ck_assert_int_ge(l, 0);
	ck_assert_int_eq(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
	memset(sin, 0, sizeof *sin);
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(l, (struct sockaddr *)sin, sizeof *sin), 0);
	ck_assert_int_eq(listen(l, backlog), 0);
	ck_assert_int_eq(getsockname(l, (struct sockaddr *)sin, &len), 0);
	return l;
}

/* A blocking client connected to sin. */
static inline int
tcp_connect(const struct sockaddr_in *sin)
{
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(c, 0);
	ck_assert_int_eq(connect(c, (const struct sockaddr *)sin, sizeof *sin), 0);
	return c;
}

/* A connected loopback TCP pair, both ends non-blocking. */
static inline void
tcp_pair(int *client, int *server)
{
	struct sockaddr_in sin;
	int l = tcp_listener(8, &sin);

	*client = tcp_connect(&sin);
	*server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(*server, 0);
	close(l);
	set_nonblock(*client);
	set_nonblock(*server);
}

/* A non-blocking TCP socket whose connect() to a loopback port nothing
 * listens on is in progress (its RST refuses it at once, or nearly). */
static inline int
tcp_refused_connect(void)
{
	struct sockaddr_in sin;
	int l = tcp_listener(1, &sin), c, r;

	close(l);		/* nothing listens on that port now */
	c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(c, 0);
	r = connect(c, (struct sockaddr *)&sin, sizeof sin);
	/* non-blocking: the verdict comes later, through SO_ERROR */
	ck_assert_int_eq(r, -1);
	ck_assert_int_eq(errno, EINPROGRESS);
	return c;
}

/* A non-blocking UDP socket connected to a loopback port nothing listens
 * on, after one datagram: the ICMP port unreachable leaves ECONNREFUSED
 * pending (waited for with poll, at most 2 s). */
static inline int
udp_refused(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	int d = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct pollfd p;

	ck_assert_int_ge(d, 0);
	ck_assert_int_ge(u, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(d, (struct sockaddr *)&sin, sizeof sin), 0);
	ck_assert_int_eq(getsockname(d, (struct sockaddr *)&sin, &len), 0);
	close(d);		/* the port is closed now */
	ck_assert_int_eq(connect(u, (struct sockaddr *)&sin, sizeof sin), 0);
	ck_assert_int_eq(send(u, "x", 1, 0), 1);
	p.fd = u;
	p.events = POLLIN;
	p.revents = 0;
	ck_assert_int_eq(poll(&p, 1, 2000), 1);
	ck_assert_uint_eq(p.revents, POLLERR);
	return u;
}

/* SO_ERROR as the application reads it. */
static inline int
sock_error(int fd)
{
	int v = -1;
	socklen_t len = sizeof v;

	ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &len), 0);
	ck_assert_uint_eq(len, sizeof v);
	return v;
}

/* Read from a non-blocking fd until want bytes came or nothing came for
 * about a second; returns the bytes read. */
static inline size_t
drain(int fd, size_t want)
{
	static char buf[65536];
	size_t total = 0;
	ssize_t n;
	int idle = 0;

	while (total < want && idle < 200) {
		n = read(fd, buf, sizeof buf);
		if (n > 0) {
			total += (size_t)n;
			idle = 0;
		} else {
			ck_assert_int_eq(errno, EAGAIN);
			usleep(5000);
			idle++;
		}
	}
	return total;
}

/* ------------------------------------------------------ events, time */

/* No event may arrive within ms (readiness caused just before is already
 * visible to epoll, so a short wait is enough to catch a stale knote). */
static inline void
expect_quiet(int kq, long ms)
{
	struct kevent ev;
	int n = kev_wait(kq, &ev, 1, ms);

	ck_assert_msg(n == 0, "expected no event in %ld ms, got %d: ident %lu "
	    "filter %d flags 0x%x fflags 0x%x data %lld", ms, n,
	    (unsigned long)ev.ident, ev.filter, ev.flags, ev.fflags,
	    (long long)ev.data);
}

/* CLOCK_MONOTONIC in ns / ms. */
static inline int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------ threads */

/* One kev_wait() (up to 5 s) for one event on another thread. */
struct kev_waiter {
	int kq;
	int n;
	struct kevent ev;
};

static inline void *
kev_waiter_main(void *arg)
{
	struct kev_waiter *w = arg;

	w->n = kev_wait(w->kq, &w->ev, 1, 5000);
	return NULL;
}

/* Thread tid's own syscall: which descriptor it sleeps on (bounded wait
 * until it sleeps in epoll_wait or epoll_pwait2; -1 if it does not). */
static inline int
sleeping_on(pid_t tid)
{
	char path[64], buf[256];
	long nr;
	unsigned long arg0;
	int i;

	snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
	for (i = 0; i < 2000; i++) {
		FILE *f = fopen(path, "r");
		int n = 0;
		if (f != NULL) {
			n = fgets(buf, sizeof buf, f) != NULL &&
			    sscanf(buf, "%ld %lx", &nr, &arg0) == 2;
			fclose(f);
		}
		/* epoll_wait, epoll_pwait2, epoll_pwait, io_uring_enter */
		if (n && (nr == 232 || nr == 441 || nr == 281 || nr == 426))
			return (int)arg0;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return -1;
}

/* Join t, failing the case if it has not returned within ms. */
static inline void
join_bounded(pthread_t t, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	ck_assert_msg(pthread_timedjoin_np(t, NULL, &ts) == 0,
	    "thread did not return within %d ms", ms);
}

/*
 * More kqueues than the user may have inotify instances (max_user_instances,
 * 128 by default), descriptors permitting; 0 if they do not.
 */
static inline int
more_kqueues_than_inotify_instances(void)
{
	FILE *f = fopen("/proc/sys/fs/inotify/max_user_instances", "r");
	struct rlimit rl;
	long max = 128;
	int n;

	if (f != NULL) {
		ck_assert_int_eq(fscanf(f, "%ld", &max), 1);
		fclose(f);
	}
	if (max > 4096)
		return 0;
	n = (int)max + 8;
	/* a kqueue is 3 descriptors (alias, the library's, wake eventfd) */
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < (rlim_t)n * 4 + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)n * 4 + 64)
			return 0;
	}
	return n;
}

/* ------------------------------------------------------ EV_FREEWATCH */

/* A refcounted object as a binding would pass in udata with EV_FREEWATCH. */
struct obj {
	int id;
	_Atomic int refs;	/* references the library holds (test's view) */
	_Atomic int frees;	/* times the count reached zero */
	_Atomic int underflows;	/* a reference returned that was never taken */
};

static inline void
obj_ref(struct obj *o)
{
	atomic_fetch_add(&o->refs, 1);
}

static inline void
obj_unref(struct obj *o)
{
	int left = atomic_fetch_sub(&o->refs, 1) - 1;

	if (left == 0)
		atomic_fetch_add(&o->frees, 1);
	else if (left < 0)
		atomic_fetch_add(&o->underflows, 1);
}

/* The binding's loop: one reference back per EV_FREEWATCH event. */
static inline void
drop_returned(const struct kevent *ev, int n)
{
	for (int i = 0; i < n; i++)
		if (ev[i].flags & EV_FREEWATCH)
			obj_unref(ev[i].udata);
}

/* Run a suite built by make_suite(); exit status for automake. */
#define KQ_TEST_MAIN(make_suite)					\
int main(void) {							\
	SRunner *sr_ = srunner_create(make_suite());			\
	srunner_run_all(sr_, CK_NORMAL);				\
	int failed_ = srunner_ntests_failed(sr_);			\
	srunner_free(sr_);						\
	return failed_ ? 1 : 0;						\
}

/* A forked child's wait status, or -1 if it had not ended within ms
 * milliseconds (it is killed then: a hung child). */
static inline int
wait_child_bounded(pid_t pid, int ms)
{
	int status;

	for (int i = 0; i < ms; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

/* A thread parked inside dl_iterate_phdr(), holding the loader's list lock,
 * until released (or 20 s): what a fork while other code walks the loader
 * leaves a child with. */
struct parked_walk {
	_Atomic bool inside, release;
	pthread_t thread;
};

static inline int
parked_walk_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct parked_walk *w = arg;

	(void)info, (void)size;
	atomic_store(&w->inside, true);
	for (int i = 0; i < 20000 && !atomic_load(&w->release); i++)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	return 1;
}

static inline void *
parked_walk_main(void *arg)
{
	dl_iterate_phdr(parked_walk_cb, arg);
	return NULL;
}

/* Start w's thread and return once it is inside the walk. */
static inline void
park_a_walk(struct parked_walk *w)
{
	ck_assert_int_eq(pthread_create(&w->thread, NULL, parked_walk_main, w), 0);
	for (int i = 0; i < 10000 && !atomic_load(&w->inside); i++)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	ck_assert(atomic_load(&w->inside));
}

/* Let w's walk end and its thread go. */
static inline void
release_the_walk(struct parked_walk *w)
{
	atomic_store(&w->release, true);
	join_bounded(w->thread, 25000);
}

#endif
