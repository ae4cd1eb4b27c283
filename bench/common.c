/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The part of every bench program that must not differ between backends:
 * options, the socketpair set, libevent bench.c's chained-write handler,
 * the run loop, timing, syscall counting, memory, and the RESULT line.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <linux/perf_event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

const char *const bench_workload_names[W_COUNT] = {
	[W_DISPATCH] = "dispatch",
	[W_REARM] = "rearm",
	[W_ONESHOT] = "oneshot",
	[W_REENABLE] = "reenable",
	[W_TIMERS] = "timers",
	[W_CHURN] = "churn",
	[W_WAKEUP] = "wakeup",
};

static const char *prog_backend = "?";

void
bench_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bench-%s: ", prog_backend);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

uint64_t
bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * What a run is timed with.  By default the process's CPU time (all its
 * threads, user + system): on a shared machine the time other processes
 * hold the CPU is not the backend's cost, and wall-clock medians swing by
 * 2x under load.  --wall gives wall-clock time for an idle machine.
 */
static clockid_t run_clock = CLOCK_PROCESS_CPUTIME_ID;

static uint64_t
run_now_ns(void)
{
	struct timespec ts;

	clock_gettime(run_clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ workload */

void
bench_iter_start(struct bench_ctx *c)
{
	const struct bench_opts *o = c->o;
	int space = o->n / o->active;
	int i;

	if (space < 1)
		space = 1;
	c->fired = 0;
	c->count = 0;
	c->writes_left = o->writes;
	for (i = 0; i < o->active; i++, c->fired++) {
		if (send(c->fds[2 * ((i * space) % o->n) + 1], "e", 1, 0) != 1)
			c->failures++;
	}
}

void
bench_on_read(struct bench_ctx *c, int idx)
{
	int widx = idx + 1;
	unsigned char ch;
	ssize_t n;

	n = recv(c->fds[2 * idx], &ch, 1, 0);
	if (n >= 0)
		c->count += n;
	else
		c->failures++;
	if (c->writes_left > 0) {
		if (widx >= c->o->n)
			widx -= c->o->n;
		if (send(c->fds[2 * widx + 1], "e", 1, 0) != 1)
			c->failures++;
		c->writes_left--;
		c->fired++;
	}
}

int
bench_churn_open(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) == -1) {
		bench_fail("socketpair: %s", strerror(errno));
		return -1;
	}
	if (send(sv[1], "c", 1, 0) != 1) {
		bench_fail("send: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int
bench_churn_read(int fd)
{
	unsigned char ch;

	return recv(fd, &ch, 1, 0) == 1 ? 0 : -1;
}

/* ---------------------------------------------------- syscall counting */

/*
 * Syscalls are counted by the kernel, not by wrapping anything: one perf
 * tracepoint counter per event, opened on this process with inherit so a
 * helper thread (wakeup) is included, enabled only around the extra counted
 * run.  Needs perf_event_paranoid <= 1 or root, and tracefs; otherwise the
 * columns say NA.
 */
enum { SC_ALL, SC_CTL, SC_WAIT, SC_PWAIT, SC_PWAIT2, SC_N };
static const char *const sc_events[SC_N] = {
	"raw_syscalls/sys_enter",
	"syscalls/sys_enter_epoll_ctl",
	"syscalls/sys_enter_epoll_wait",
	"syscalls/sys_enter_epoll_pwait",
	"syscalls/sys_enter_epoll_pwait2",
};
static int sc_fd[SC_N] = { -1, -1, -1, -1, -1 };

static long long
tracepoint_id(const char *ev)
{
	static const char *const roots[] = {
		"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events",
	};
	char path[256];
	long long id;
	FILE *f;

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s/id", roots[i], ev);
		if ((f = fopen(path, "re")) == NULL)
			continue;
		if (fscanf(f, "%lld", &id) != 1)
			id = -1;
		fclose(f);
		return id;
	}
	return -1;
}

static void
sc_open(void)
{
	struct perf_event_attr a;
	long long id;

	for (int i = 0; i < SC_N; i++) {
		if ((id = tracepoint_id(sc_events[i])) < 0)
			continue;
		memset(&a, 0, sizeof(a));
		a.type = PERF_TYPE_TRACEPOINT;
		a.size = sizeof(a);
		a.config = (uint64_t)id;
		a.disabled = 1;
		a.inherit = 1;
		sc_fd[i] = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1,
		    PERF_FLAG_FD_CLOEXEC);
	}
}

static void
sc_ctl(unsigned long req)
{
	for (int i = 0; i < SC_N; i++)
		if (sc_fd[i] >= 0)
			ioctl(sc_fd[i], req, 0);
}

static long long
sc_read(int i)
{
	uint64_t v;

	if (sc_fd[i] < 0 || read(sc_fd[i], &v, sizeof(v)) != sizeof(v))
		return -1;
	return (long long)v;
}

static void
sc_close(void)
{
	for (int i = 0; i < SC_N; i++)
		if (sc_fd[i] >= 0) {
			close(sc_fd[i]);
			sc_fd[i] = -1;
		}
}

/* ------------------------------------------------------------- memory */

static long
rss_now_kb(void)
{
	long size, res;
	FILE *f;

	if ((f = fopen("/proc/self/statm", "re")) == NULL)
		return -1;
	if (fscanf(f, "%ld %ld", &size, &res) != 2)
		res = -1;
	fclose(f);
	return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

static int
count_fds(void)
{
	struct dirent *d;
	DIR *dir;
	int n = 0;

	if ((dir = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((d = readdir(dir)) != NULL)
		if (d->d_name[0] != '.')
			n++;
	closedir(dir);
	return n - 1;		/* the directory's own fd */
}

/* -------------------------------------------------------------- main */

static void
usage(FILE *f, const char *argv0)
{
	fprintf(f,
"usage: %s [options]\n"
"One backend of the kqfree-bench harness (normally run by kqfree-bench).\n"
"  -w, --workload NAME  dispatch|rearm|oneshot|reenable|timers|churn|wakeup\n"
"  -n, --n N            socketpairs registered (default 1000)\n"
"  -a, --active A       pairs written per iteration (default 100)\n"
"  -W, --writes W       chained writes per iteration (default 100)\n"
"  -t, --timers T       timers per run for 'timers' (default 100000)\n"
"  -r, --runs R         timed runs (default 5)\n"
"  -i, --iters I        iterations per run (default 100)\n"
"  -c, --count          one extra run counting syscalls (perf tracepoints)\n"
"      --wall           time runs with the wall clock (default: process CPU\n"
"                       time, user+system, all threads)\n"
"  -v, --verbose        print every run on stderr\n"
"Prints one line: RESULT key=value ... (times in ns per iteration).\n",
	    argv0);
}

static int
parse(int argc, char **argv, struct bench_opts *o)
{
	static const struct option lo[] = {
		{ "workload", required_argument, NULL, 'w' },
		{ "n", required_argument, NULL, 'n' },
		{ "active", required_argument, NULL, 'a' },
		{ "writes", required_argument, NULL, 'W' },
		{ "timers", required_argument, NULL, 't' },
		{ "runs", required_argument, NULL, 'r' },
		{ "iters", required_argument, NULL, 'i' },
		{ "count", no_argument, NULL, 'c' },
		{ "wall", no_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch, w;

	*o = (struct bench_opts){ .workload = W_DISPATCH, .n = 1000,
	    .active = 100, .writes = 100, .timers = 100000, .runs = 5,
	    .iters = 100 };
	while ((ch = getopt_long(argc, argv, "w:n:a:W:t:r:i:cvh", lo, NULL)) != -1) {
		switch (ch) {
		case 'w':
			for (w = 0; w < W_COUNT; w++)
				if (strcmp(optarg, bench_workload_names[w]) == 0)
					break;
			if (w == W_COUNT) {
				bench_fail("unknown workload '%s'", optarg);
				return 2;
			}
			o->workload = w;
			break;
		case 'n': o->n = atoi(optarg); break;
		case 'a': o->active = atoi(optarg); break;
		case 'W': o->writes = atoi(optarg); break;
		case 't': o->timers = atoi(optarg); break;
		case 'r': o->runs = atoi(optarg); break;
		case 'i': o->iters = atoi(optarg); break;
		case 'c': o->count = true; break;
		case 'C': o->wall = true; break;
		case 'v': o->verbose = true; break;
		case 'h': usage(stdout, argv[0]); exit(0);
		default: usage(stderr, argv[0]); return 2;
		}
	}
	if (o->n < 1 || o->active < 1 || o->writes < 0 ||
	    (o->active > o->n && o->workload <= W_REENABLE) ||
	    o->timers < 1 || o->runs < 1 || o->iters < 1) {
		bench_fail("bad sizes");
		return 2;
	}
	return 0;
}

/* Per-iteration count with enough digits for per-timer fractions. */
static void
print_per(const char *key, long long total, int unit)
{
	double v = (double)total / unit;

	if (total < 0)
		printf(" %s=NA", key);
	else if (v != 0 && v < 0.01)
		printf(" %s=%.2g", key, v);
	else
		printf(" %s=%.2f", key, v);
}

static bool
uses_pairs(enum bench_workload w)
{
	return w == W_DISPATCH || w == W_REARM || w == W_ONESHOT ||
	    w == W_REENABLE || w == W_CHURN;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	/* 9900 pairs need 19800 fds: take the whole hard limit. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* One timers cycle: add far, delete, add near, fire; phases in ns. */
static int
timers_cycle(struct bench_ctx *c, const struct bench_backend *be,
    double ph[3], long *rss_add_kb, int *fd_add)
{
	int T = c->o->timers;
	long rss0 = 0;
	int fd0 = 0;
	uint64_t t0, t1, t2, t3;

	if (rss_add_kb != NULL) {
		rss0 = rss_now_kb();
		fd0 = count_fds();
	}
	t0 = run_now_ns();
	if (be->timer_add(c, T, true) == -1)
		return -1;
	t1 = run_now_ns();
	if (rss_add_kb != NULL) {
		*rss_add_kb = rss_now_kb() - rss0;
		*fd_add = count_fds() - fd0;
		t1 = run_now_ns();	/* /proc reads are not the timers' cost */
	}
	if (be->timer_del(c, T) == -1)
		return -1;
	t2 = run_now_ns();
	if (be->timer_add(c, T, false) == -1 || be->timer_fire(c, T) == -1)
		return -1;
	t3 = run_now_ns();
	ph[0] = (double)(t1 - t0);
	ph[1] = (double)(t2 - t1);
	ph[2] = (double)(t3 - t2);
	return 0;
}

int
bench_main(int argc, char **argv, const struct bench_backend *be)
{
	struct bench_opts o;
	struct bench_ctx c = { .o = &o };
	double *samples, *order, *padd = NULL, *pdel = NULL, *pfire = NULL;
	long long sc[SC_N];
	long rss_add_kb = -1, rss_setup_kb;
	int fd_add = 0, rc, r, i, unit;
	struct rusage ru;
	bool supported;

	prog_backend = be->name;
	if ((rc = parse(argc, argv, &o)) != 0)
		return rc;
	if (o.wall)
		run_clock = CLOCK_MONOTONIC;
	switch (o.workload) {
	case W_TIMERS:
		supported = be->timer_add && be->timer_del && be->timer_fire;
		break;
	default:
		supported = be->iter != NULL;
		break;
	}
	if (be->workloads != 0 && !(be->workloads & BENCH_WL(o.workload)))
		supported = false;
	if (!supported) {
		printf("SKIP backend=%s workload=%s reason=unsupported\n",
		    be->name, bench_workload_names[o.workload]);
		return 3;
	}
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);

	if (uses_pairs(o.workload)) {
		if ((c.fds = calloc(2 * (size_t)o.n, sizeof(int))) == NULL)
			return 1;
		for (i = 0; i < o.n; i++) {
			if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
			    SOCK_CLOEXEC, 0, &c.fds[2 * i]) == -1) {
				bench_fail("socketpair %d: %s", i, strerror(errno));
				return 1;
			}
		}
	}
	if (o.count)
		sc_open();
	/*
	 * Peak-RSS growth from here on is what registering the N sockets and
	 * running costs the backend in memory (the socketpairs and the fd
	 * array already exist): reported per socket.
	 */
	getrusage(RUSAGE_SELF, &ru);
	rss_setup_kb = ru.ru_maxrss;
	if (be->setup(&c) == -1)
		return 1;

	samples = calloc(o.runs, sizeof(double));
	order = calloc(o.runs, sizeof(double));
	if (o.workload == W_TIMERS) {
		padd = calloc(o.runs, sizeof(double));
		pdel = calloc(o.runs, sizeof(double));
		pfire = calloc(o.runs, sizeof(double));
	} else if (be->iter(&c) == -1)	/* warm-up */
		return 1;

	for (r = 0; r < o.runs; r++) {
		if (o.workload == W_TIMERS) {
			double ph[3];

			if (timers_cycle(&c, be, ph, r == 0 ? &rss_add_kb :
			    NULL, &fd_add) == -1)
				return 1;
			padd[r] = ph[0] / o.timers;
			pdel[r] = ph[1] / o.timers;
			pfire[r] = ph[2] / o.timers;
			samples[r] = (ph[0] + ph[1] + ph[2]) / o.timers;
		} else {
			uint64_t t0 = run_now_ns();

			for (i = 0; i < o.iters; i++)
				if (be->iter(&c) == -1)
					return 1;
			samples[r] = (double)(run_now_ns() - t0) / o.iters;
		}
		order[r] = samples[r];
		if (o.verbose)
			fprintf(stderr, "bench-%s %s run %d: %.1f ns/iter\n",
			    be->name, bench_workload_names[o.workload], r,
			    samples[r]);
	}

	for (i = 0; i < SC_N; i++)
		sc[i] = -1;
	unit = o.workload == W_TIMERS ? o.timers : o.iters;
	if (o.count) {
		sc_ctl(PERF_EVENT_IOC_RESET);
		sc_ctl(PERF_EVENT_IOC_ENABLE);
		if (o.workload == W_TIMERS) {
			double ph[3];

			rc = timers_cycle(&c, be, ph, NULL, NULL);
		} else {
			for (i = 0, rc = 0; i < o.iters && rc == 0; i++)
				rc = be->iter(&c);
		}
		sc_ctl(PERF_EVENT_IOC_DISABLE);
		if (rc == -1)
			return 1;
		for (i = 0; i < SC_N; i++)
			sc[i] = sc_read(i);
		sc_close();
	}
	if (be->teardown)
		be->teardown(&c);
	getrusage(RUSAGE_SELF, &ru);

	printf("RESULT backend=%s workload=%s n=%d active=%d writes=%d "
	    "timers=%d runs=%d iters=%d clock=%s", be->name,
	    bench_workload_names[o.workload],
	    uses_pairs(o.workload) ? o.n : 0,
	    o.workload == W_TIMERS || o.workload == W_WAKEUP ||
	    o.workload == W_CHURN ? 0 : o.active,
	    o.workload == W_TIMERS || o.workload == W_WAKEUP ||
	    o.workload == W_CHURN ? 0 : o.writes,
	    o.workload == W_TIMERS ? o.timers : 0, o.runs,
	    o.workload == W_TIMERS ? 1 : o.iters, o.wall ? "wall" : "cpu");
	{
		double mn = samples[0], mx = samples[0];

		for (r = 1; r < o.runs; r++) {
			if (samples[r] < mn)
				mn = samples[r];
			if (samples[r] > mx)
				mx = samples[r];
		}
		printf(" median_ns=%.1f min_ns=%.1f max_ns=%.1f samples=",
		    median(samples, o.runs), mn, mx);
		/* in run order (median() sorted them: keep a copy) */
		for (r = 0; r < o.runs; r++)
			printf("%s%.1f", r ? ":" : "", order[r]);
	}
	{
		long long w = sc[SC_WAIT];

		/* the events that exist on this kernel; -1 means not counted */
		if (w >= 0 && sc[SC_PWAIT] > 0)
			w += sc[SC_PWAIT];
		if (w >= 0 && sc[SC_PWAIT2] > 0)
			w += sc[SC_PWAIT2];
		print_per("sys", sc[SC_ALL], unit);
		print_per("ctl", sc[SC_CTL], unit);
		print_per("wait", w, unit);
	}
	printf(" rss_kb=%ld", ru.ru_maxrss);
	if (uses_pairs(o.workload))
		printf(" bytes_per_socket=%.1f",
		    (ru.ru_maxrss - rss_setup_kb) * 1024.0 / o.n);
	if (o.workload == W_TIMERS) {
		printf(" bytes_per_timer=%.1f fd_growth=%d add_ns=%.1f "
		    "del_ns=%.1f fire_ns=%.1f",
		    rss_add_kb * 1024.0 / o.timers, fd_add,
		    median(padd, o.runs), median(pdel, o.runs),
		    median(pfire, o.runs));
	}
	printf(" failures=%ld\n", c.failures);
	fflush(stdout);
	return c.failures ? 1 : 0;
}
