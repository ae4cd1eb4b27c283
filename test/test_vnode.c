/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * EVFILT_VNODE: FreeBSD's NOTE_* for files, directories and named FIFOs,
 * produced from one inotify instance shared by every kqueue of the process.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define WAIT_MS	2000	/* generous: a loaded machine */
#define QUIET_MS 100	/* inotify queues synchronously; this is slack */

static char tdir[64];

static void
setup(void)
{
	snprintf(tdir, sizeof tdir, "/tmp/kqvnode.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tdir));
}

static int
rm_one(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb; (void)type; (void)ftw;
	return remove(p);
}

static void
teardown(void)
{
	nftw(tdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* tdir/name, in one of a few rotating buffers */
static const char *
P(const char *name)
{
	static char buf[4][256];
	static int i;
	char *b = buf[i++ % 4];

	snprintf(b, 256, "%s/%s", tdir, name);
	return b;
}

static int
mkfile(const char *name, const char *content)
{
	int fd = open(P(name), O_CREAT | O_RDWR | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	if (content != NULL)
		ck_assert_int_eq(write(fd, content, strlen(content)),
		    (ssize_t)strlen(content));
	return fd;
}

static int
mkdirfd(const char *name)
{
	int fd;

	ck_assert_int_eq(mkdir(P(name), 0755), 0);
	fd = open(P(name), O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);
	return fd;
}

static int
new_kq(void)
{
	int kq = kqueue();

	ck_assert_int_ge(kq, 0);
	return kq;
}

/* Nothing arrives within QUIET_MS. */
#define expect_quiet(kq) do {						\
	struct kevent q_;						\
	int n_ = kev_wait(kq, &q_, 1, QUIET_MS);			\
	ck_assert_msg(n_ == 0, "unexpected event: ident %lu fflags 0x%x flags 0x%x", \
	    (unsigned long)q_.ident, q_.fflags, q_.flags);		\
} while (0)

/* Collect exactly n events (in any order) within WAIT_MS. */
static int
collect(int kq, struct kevent *ev, int n)
{
	int got = 0, r;

	while (got < n) {
		r = kev_wait(kq, ev + got, n - got, WAIT_MS);
		if (r <= 0)
			break;
		got += r;
	}
	return got;
}

static const struct kevent *
find_ev(const struct kevent *ev, int n, uintptr_t ident, short filter)
{
	for (int i = 0; i < n; i++)
		if (ev[i].ident == ident && ev[i].filter == filter)
			return &ev[i];
	return NULL;
}

/* ----- white box: the process's inotify fds and their watches ----- */

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/* The inotify fds of this process (libkqfree's, the tests open none). */
static int
inotify_fds(int *out, int max)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	char link[300], target[64];
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL) {
		ssize_t l;
		snprintf(link, sizeof link, "/proc/self/fd/%s", de->d_name);
		if ((l = readlink(link, target, sizeof target - 1)) < 0)
			continue;
		target[l] = 0;
		if (strcmp(target, "anon_inode:inotify") == 0 && n < max)
			out[n++] = atoi(de->d_name);
	}
	closedir(d);
	return n;
}

/* The masks of the watches of the one inotify fd; returns their number. */
static int
watch_masks(unsigned *mask, int max)
{
	int ifd[4], n = 0;
	char path[64], line[256];
	FILE *f;

	ck_assert_int_eq(inotify_fds(ifd, 4), 1);
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ifd[0]);
	ck_assert_ptr_nonnull(f = fopen(path, "r"));
	while (fgets(line, sizeof line, f) != NULL) {
		char *m = strstr(line, " mask:");
		if (strncmp(line, "inotify wd:", 11) != 0 || m == NULL)
			continue;
		if (n < max)
			mask[n] = (unsigned)strtoul(m + 6, NULL, 16);
		n++;
	}
	fclose(f);
	return n;
}

static unsigned
the_watch_mask(void)
{
	unsigned m = 0;

	ck_assert_int_eq(watch_masks(&m, 1), 1);
	return m;
}

/* ------------------------------------------------------------ files */

START_TEST(vnode_write_that_extends_reports_write_and_extend)
{
	int kq = new_kq(), fd = mkfile("f", NULL);

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND | NOTE_ATTRIB, 0, (void *)0x11);
	kev_expect_none(kq);
	ck_assert_int_eq(write(fd, "hello", 5), 5);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, 0x11);
	kev_expect_none(kq);
	/* a write straddling the end also extends */
	ck_assert_int_eq(pwrite(fd, "xyz", 3, 4), 3);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, 0x11);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_overwrite_in_place_reports_write_only)
{
	int kq = new_kq(), fd = mkfile("f", "0123456789abcdef");

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND | NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(pwrite(fd, "ABCD", 4, 0), 4);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_WRITE, 0, NULL);
	/* ending exactly at the old end does not extend either */
	ck_assert_int_eq(pwrite(fd, "WXYZ", 4, 12), 4);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_WRITE, 0, NULL);
	kev_expect_none(kq);
	close(fd);
	close(kq);
}
END_TEST

/* VOP_WRITE_POST posts NOTE_WRITE alone for an overwrite, which is not
 * NOTE_EXTEND's business; a growing write is one NOTE_WRITE|NOTE_EXTEND hint
 * and filt_vfsvnode() hands the whole hint over */
START_TEST(vnode_extend_alone_ignores_overwrites)
{
	int kq = new_kq(), fd = mkfile("f", "0123456789");

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_EXTEND, 0, NULL);
	ck_assert_int_eq(pwrite(fd, "AB", 2, 0), 2);
	expect_quiet(kq);
	ck_assert_int_eq(pwrite(fd, "AB", 2, 10), 2);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, NULL);
	kev_expect_none(kq);
	close(fd);
	close(kq);
}
END_TEST

/* filt_vfsvnode(): any requested note of a hint brings the whole hint */
START_TEST(vnode_write_alone_gets_the_extend_of_an_appending_write)
{
	int kq = new_kq(), fd = mkfile("f", NULL), app;

	ck_assert_int_ge(app = open(P("f"), O_WRONLY | O_APPEND), 0);
	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE, 0,
	    (void *)0x77);
	/* libkqueue's kevent_vnode_note_write: echo hi >> file */
	ck_assert_int_eq(write(app, "hi\n", 3), 3);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, 0x77);
	kev_expect_none(kq);
	/* an overwrite in place is NOTE_WRITE alone */
	ck_assert_int_eq(pwrite(fd, "HI", 2, 0), 2);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_WRITE, 0, 0x77);
	kev_expect_none(kq);
	close(app);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_extend_alone_gets_the_write_of_an_appending_write)
{
	int kq = new_kq(), fd = mkfile("f", "abc"), app;

	ck_assert_int_ge(app = open(P("f"), O_WRONLY | O_APPEND), 0);
	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_ONESHOT, NOTE_EXTEND, 0, NULL);
	ck_assert_int_eq(write(app, "hi\n", 3), 3);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_ONESHOT,
	    NOTE_WRITE | NOTE_EXTEND, 0, NULL);
	kev_expect_none(kq);
	close(app);
	close(fd);
	close(kq);
}
END_TEST

/* The write hint carries no NOTE_ATTRIB, NOTE_LINK or NOTE_DELETE: those
 * watchers get nothing of it, not even the notes they did not ask for. */
START_TEST(vnode_appending_write_is_not_for_other_notes)
{
	int kq = new_kq(), fd = mkfile("f", NULL), app;

	ck_assert_int_ge(app = open(P("f"), O_WRONLY | O_APPEND), 0);
	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(write(app, "hi\n", 3), 3);
	ck_assert_int_eq(pwrite(fd, "HI", 2, 0), 2);
	expect_quiet(kq);
	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_LINK | NOTE_DELETE | NOTE_RENAME | NOTE_OPEN | NOTE_CLOSE,
	    0, NULL);
	ck_assert_int_eq(write(app, "hi\n", 3), 3);
	expect_quiet(kq);
	/* the knote is alive: its own notes come alone */
	ck_assert_int_eq(link(P("f"), P("g")), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_LINK, 0, NULL);
	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(fchmod(fd, 0600), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	kev_expect_none(kq);
	close(app);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_unlink_while_open_reports_delete)
{
	int kq = new_kq(), fd = mkfile("f", "abc");

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_DELETE | NOTE_ATTRIB | NOTE_LINK | NOTE_WRITE | NOTE_EXTEND,
	    0, NULL);
	ck_assert_int_eq(unlink(P("f")), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_DELETE, 0, NULL);
	kev_expect_none(kq);
	/* the open file lives on, and so does its knote */
	ck_assert_int_eq(write(fd, "d", 1), 1);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, NULL);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_rename_over_file_reports_delete_to_the_replaced_one)
{
	int kq = new_kq(), tgt = mkfile("tgt", NULL), src = mkfile("src", NULL);
	struct kevent ev[2];

	kev_ok(kq, tgt, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_DELETE | NOTE_RENAME | NOTE_ATTRIB, 0, NULL);
	kev_ok(kq, src, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_DELETE | NOTE_RENAME | NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(rename(P("src"), P("tgt")), 0);
	ck_assert_int_eq(collect(kq, ev, 2), 2);
	ck_assert_ptr_nonnull(find_ev(ev, 2, tgt, EVFILT_VNODE));
	ck_assert_uint_eq(find_ev(ev, 2, tgt, EVFILT_VNODE)->fflags, NOTE_DELETE);
	ck_assert_ptr_nonnull(find_ev(ev, 2, src, EVFILT_VNODE));
	ck_assert_uint_eq(find_ev(ev, 2, src, EVFILT_VNODE)->fflags, NOTE_RENAME);
	kev_expect_none(kq);
	close(src);
	close(tgt);
	close(kq);
}
END_TEST

START_TEST(vnode_link_count_changes_report_link_and_delete)
{
	int kq = new_kq(), fd = mkfile("f", NULL);

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_LINK | NOTE_DELETE | NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(link(P("f"), P("g")), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_LINK, 0, NULL);
	/* FreeBSD's vop_remove_post marks every unlink of the vnode */
	ck_assert_int_eq(unlink(P("g")), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_DELETE, 0, NULL);
	kev_expect_none(kq);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_rename_reports_rename)
{
	int kq = new_kq(), fd = mkfile("f", NULL);

	ck_assert_int_eq(mkdir(P("other"), 0755), 0);
	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_RENAME | NOTE_DELETE | NOTE_ATTRIB | NOTE_WRITE, 0, NULL);
	ck_assert_int_eq(rename(P("f"), P("g")), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_RENAME, 0, NULL);
	ck_assert_int_eq(rename(P("g"), P("other/g")), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_RENAME, 0, NULL);
	kev_expect_none(kq);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_attribute_changes_report_attrib)
{
	int kq = new_kq(), fd = mkfile("f", "abc");
	struct stat sb;

	ck_assert_int_eq(fstat(fd, &sb), 0);
	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_ATTRIB | NOTE_WRITE | NOTE_EXTEND | NOTE_LINK, 0, NULL);
	ck_assert_int_eq(fchmod(fd, 0600), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(futimens(fd, NULL), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(fchown(fd, sb.st_uid, sb.st_gid), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	kev_expect_none(kq);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_truncate_that_shrinks_reports_attrib)
{
	int kq = new_kq(), fd = mkfile("f", "0123456789");

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_ATTRIB | NOTE_WRITE | NOTE_EXTEND, 0, NULL);
	ck_assert_int_eq(ftruncate(fd, 3), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	kev_expect_none(kq);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_open_read_close_report_their_notes)
{
	int kq = new_kq(), fd = mkfile("f", "abc"), r, w;
	char c;

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_OPEN | NOTE_READ | NOTE_CLOSE | NOTE_CLOSE_WRITE, 0, NULL);
	ck_assert_int_ge(r = open(P("f"), O_RDONLY), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_OPEN, 0, NULL);
	ck_assert_int_eq(read(r, &c, 1), 1);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_READ, 0, NULL);
	ck_assert_int_eq(close(r), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_CLOSE, 0, NULL);
	ck_assert_int_ge(w = open(P("f"), O_WRONLY), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_OPEN, 0, NULL);
	ck_assert_int_eq(close(w), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_CLOSE_WRITE, 0, NULL);
	kev_expect_none(kq);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_reports_only_the_requested_notes)
{
	int kq = new_kq(), fd = mkfile("f", NULL), r;

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(write(fd, "abc", 3), 3);
	ck_assert_int_ge(r = open(P("f"), O_RDONLY), 0);
	close(r);
	ck_assert_int_eq(rename(P("f"), P("g")), 0);
	expect_quiet(kq);
	ck_assert_int_eq(fchmod(fd, 0600), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_notes_accumulate_until_retrieved)
{
	int kq = new_kq(), fd = mkfile("f", NULL);

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_ATTRIB | NOTE_WRITE | NOTE_EXTEND | NOTE_LINK | NOTE_RENAME,
	    0, NULL);
	ck_assert_int_eq(fchmod(fd, 0600), 0);
	ck_assert_int_eq(write(fd, "abc", 3), 3);
	ck_assert_int_eq(link(P("f"), P("g")), 0);
	ck_assert_int_eq(rename(P("f"), P("h")), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
	    NOTE_ATTRIB | NOTE_WRITE | NOTE_EXTEND | NOTE_LINK | NOTE_RENAME,
	    0, NULL);
	kev_expect_none(kq);
	close(fd);
	close(kq);
}
END_TEST

/* FreeBSD's filt_vfsvnode() stays true until the fflags are cleared */
START_TEST(vnode_without_clear_stays_triggered)
{
	int kq = new_kq(), fd = mkfile("f", NULL);

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD, NOTE_ATTRIB | NOTE_WRITE, 0, NULL);
	ck_assert_int_eq(fchmod(fd, 0600), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, 0, NOTE_ATTRIB, 0, NULL);
	kev_expect(kq, 0, fd, EVFILT_VNODE, 0, NOTE_ATTRIB, 0, NULL);
	/* the file grows: NOTE_EXTEND comes in the same hint as NOTE_WRITE */
	ck_assert_int_eq(write(fd, "x", 1), 1);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, 0,
	    NOTE_ATTRIB | NOTE_WRITE | NOTE_EXTEND, 0, NULL);
	kev_ok(kq, fd, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	kev_expect_none(kq);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_dispatch_accumulates_while_disabled)
{
	int kq = new_kq(), fd = mkfile("f", NULL);

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR | EV_DISPATCH,
	    NOTE_ATTRIB | NOTE_WRITE, 0, NULL);
	ck_assert_int_eq(fchmod(fd, 0600), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR | EV_DISPATCH,
	    NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(fchmod(fd, 0644), 0);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	expect_quiet(kq);
	/* as on FreeBSD every change sets the fflags: name them again */
	kev_ok(kq, fd, EVFILT_VNODE, EV_ENABLE, NOTE_ATTRIB | NOTE_WRITE, 0, NULL);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR | EV_DISPATCH,
	    NOTE_ATTRIB | NOTE_WRITE | NOTE_EXTEND, 0, NULL);
	kev_expect_none(kq);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_oneshot_knote_is_gone_after_its_event)
{
	int kq = new_kq(), fd = mkfile("f", NULL);

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_ONESHOT, NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(fchmod(fd, 0600), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_ONESHOT, NOTE_ATTRIB, 0, NULL);
	ck_assert_errno(kev_change(kq, fd, EVFILT_VNODE, EV_DELETE, 0, 0, NULL),
	    ENOENT);
	ck_assert_int_eq(fchmod(fd, 0644), 0);
	kev_expect_none(kq);
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_readd_with_other_notes_changes_the_watch)
{
	int kq = new_kq(), fd = mkfile("f", NULL), r;

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_RENAME, 0, NULL);
	ck_assert_uint_eq(the_watch_mask(), IN_MOVE_SELF | IN_DELETE_SELF);
	ck_assert_int_ge(r = open(P("f"), O_RDONLY), 0);
	close(r);
	expect_quiet(kq);
	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_RENAME | NOTE_OPEN,
	    0, NULL);
	ck_assert_uint_eq(the_watch_mask(),
	    IN_MOVE_SELF | IN_DELETE_SELF | IN_OPEN);
	ck_assert_int_ge(r = open(P("f"), O_RDONLY), 0);
	close(r);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_OPEN, 0, NULL);
	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_RENAME, 0, NULL);
	ck_assert_uint_eq(the_watch_mask(), IN_MOVE_SELF | IN_DELETE_SELF);
	ck_assert_int_ge(r = open(P("f"), O_RDONLY), 0);
	close(r);
	expect_quiet(kq);
	/* gone with its last knote: no inotify fd left */
	kev_ok(kq, fd, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	{
		int ifd[2];
		ck_assert_int_eq(inotify_fds(ifd, 2), 0);
	}
	close(fd);
	close(kq);
}
END_TEST

START_TEST(vnode_two_fds_of_one_file_share_one_watch)
{
	int kq = new_kq(), a = mkfile("f", NULL), b = open(P("f"), O_RDONLY);
	unsigned m;

	ck_assert_int_ge(b, 0);
	kev_ok(kq, a, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE, 0, (void *)1);
	kev_ok(kq, b, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_RENAME, 0, (void *)2);
	ck_assert_int_eq(watch_masks(&m, 1), 1);
	ck_assert_uint_eq(m, IN_MODIFY | IN_MOVE_SELF | IN_DELETE_SELF);
	ck_assert_int_eq(write(a, "x", 1), 1);
	kev_expect(kq, WAIT_MS, a, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, 1);
	ck_assert_int_eq(rename(P("f"), P("g")), 0);
	kev_expect(kq, WAIT_MS, b, EVFILT_VNODE, EV_CLEAR, NOTE_RENAME, 0, 2);
	kev_expect_none(kq);
	/* the watch narrows to what the remaining knote needs */
	kev_ok(kq, a, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	ck_assert_uint_eq(the_watch_mask(), IN_MOVE_SELF | IN_DELETE_SELF);
	ck_assert_int_eq(write(a, "x", 1), 1);
	expect_quiet(kq);
	ck_assert_int_eq(rename(P("g"), P("f")), 0);
	kev_expect(kq, WAIT_MS, b, EVFILT_VNODE, EV_CLEAR, NOTE_RENAME, 0, 2);
	close(a);
	close(b);
	close(kq);
}
END_TEST

START_TEST(vnode_two_kqueues_both_see_a_change)
{
	int kq1 = new_kq(), kq2 = new_kq(), fd = mkfile("f", NULL);

	kev_ok(kq1, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_ATTRIB, 0, (void *)1);
	kev_ok(kq2, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_ATTRIB, 0, (void *)2);
	ck_assert_int_eq(fchmod(fd, 0600), 0);
	kev_expect(kq1, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, 1);
	kev_expect(kq2, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, 2);
	kev_expect_none(kq1);
	kev_expect_none(kq2);
	close(fd);
	close(kq1);
	close(kq2);
}
END_TEST

START_TEST(vnode_works_on_an_o_path_fd)
{
	int kq = new_kq(), fd, w = mkfile("f", NULL);

	ck_assert_int_ge(fd = open(P("f"), O_PATH), 0);
	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_ATTRIB | NOTE_WRITE | NOTE_EXTEND, 0, NULL);
	ck_assert_int_eq(chmod(P("f"), 0600), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(write(w, "ab", 2), 2);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, NULL);
	close(w);
	close(fd);
	close(kq);
}
END_TEST

/* ------------------------------------------------------- directories */

START_TEST(vnode_directory_entries_report_write_and_subdirectories_link)
{
	int kq = new_kq(), d = mkdirfd("d"), f;

	kev_ok(kq, d, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_WRITE | NOTE_LINK | NOTE_EXTEND | NOTE_ATTRIB | NOTE_DELETE,
	    0, NULL);
	ck_assert_int_ge(f = open(P("d/f"), O_CREAT | O_WRONLY, 0644), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_WRITE, 0, NULL);
	ck_assert_int_eq(close(f), 0);
	ck_assert_int_eq(link(P("d/f"), P("d/g")), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_WRITE, 0, NULL);
	ck_assert_int_eq(rename(P("d/g"), P("d/h")), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_WRITE, 0, NULL);
	ck_assert_int_eq(unlink(P("d/h")), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_WRITE, 0, NULL);
	ck_assert_int_eq(symlink("f", P("d/s")), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_WRITE, 0, NULL);
	ck_assert_int_eq(mkdir(P("d/sub"), 0755), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_LINK, 0, NULL);
	ck_assert_int_eq(rmdir(P("d/sub")), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_LINK, 0, NULL);
	/* the link count moved by subdirectories is not a chmod's business */
	ck_assert_int_eq(mkdir(P("d/sub2"), 0755), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_LINK, 0, NULL);
	ck_assert_int_eq(fchmod(d, 0700), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	kev_expect_none(kq);
	close(d);
	close(kq);
}
END_TEST

START_TEST(vnode_directory_rename_across_directories_reports_extend)
{
	int kq = new_kq(), a = mkdirfd("a"), b = mkdirfd("b"), f;
	struct kevent ev[2];

	ck_assert_int_ge(f = open(P("a/f"), O_CREAT | O_WRONLY, 0644), 0);
	close(f);
	ck_assert_int_eq(mkdir(P("a/sub"), 0755), 0);
	kev_ok(kq, a, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND | NOTE_LINK, 0, (void *)'a');
	/* b unwatched: the half in a stands alone */
	ck_assert_int_eq(rename(P("a/f"), P("b/f")), 0);
	kev_expect(kq, WAIT_MS, a, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, 'a');
	ck_assert_int_eq(rename(P("b/f"), P("a/f")), 0);
	kev_expect(kq, WAIT_MS, a, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, 'a');
	/* both watched: both get it, a moved directory changes link counts */
	kev_ok(kq, b, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND | NOTE_LINK, 0, (void *)'b');
	ck_assert_int_eq(rename(P("a/sub"), P("b/sub")), 0);
	ck_assert_int_eq(collect(kq, ev, 2), 2);
	ck_assert_ptr_nonnull(find_ev(ev, 2, a, EVFILT_VNODE));
	ck_assert_uint_eq(find_ev(ev, 2, a, EVFILT_VNODE)->fflags,
	    NOTE_WRITE | NOTE_EXTEND | NOTE_LINK);
	ck_assert_ptr_nonnull(find_ev(ev, 2, b, EVFILT_VNODE));
	ck_assert_uint_eq(find_ev(ev, 2, b, EVFILT_VNODE)->fflags,
	    NOTE_WRITE | NOTE_EXTEND | NOTE_LINK);
	/* within one directory: a name change only */
	ck_assert_int_eq(rename(P("a/f"), P("a/g")), 0);
	kev_expect(kq, WAIT_MS, a, EVFILT_VNODE, EV_CLEAR, NOTE_WRITE, 0, 'a');
	kev_expect_none(kq);
	close(a);
	close(b);
	close(kq);
}
END_TEST

/* vop_mkdir_post and vop_rmdir_post post NOTE_WRITE|NOTE_LINK on the parent
 * as one hint; a plain entry (create, unlink) is NOTE_WRITE alone. */
START_TEST(vnode_mkdir_and_rmdir_are_one_write_link_hint)
{
	int kq = new_kq(), w = mkdirfd("w"), l = mkdirfd("l"), e = mkdirfd("e");
	int f;

	kev_ok(kq, w, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE, 0,
	    (void *)'w');
	kev_ok(kq, l, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_LINK, 0,
	    (void *)'l');
	kev_ok(kq, e, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_EXTEND, 0,
	    (void *)'e');
	ck_assert_int_eq(mkdir(P("w/sub"), 0755), 0);
	kev_expect(kq, WAIT_MS, w, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_LINK, 0, 'w');
	ck_assert_int_eq(mkdir(P("l/sub"), 0755), 0);
	kev_expect(kq, WAIT_MS, l, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_LINK, 0, 'l');
	ck_assert_int_eq(mkdir(P("e/sub"), 0755), 0);
	expect_quiet(kq);
	ck_assert_int_eq(rmdir(P("w/sub")), 0);
	kev_expect(kq, WAIT_MS, w, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_LINK, 0, 'w');
	ck_assert_int_eq(rmdir(P("l/sub")), 0);
	kev_expect(kq, WAIT_MS, l, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_LINK, 0, 'l');
	ck_assert_int_eq(rmdir(P("e/sub")), 0);
	expect_quiet(kq);
	/* a file's entry is NOTE_WRITE alone: nothing for NOTE_LINK */
	ck_assert_int_ge(f = open(P("w/f"), O_CREAT | O_WRONLY, 0644), 0);
	close(f);
	kev_expect(kq, WAIT_MS, w, EVFILT_VNODE, EV_CLEAR, NOTE_WRITE, 0, 'w');
	ck_assert_int_ge(f = open(P("l/f"), O_CREAT | O_WRONLY, 0644), 0);
	close(f);
	ck_assert_int_eq(unlink(P("l/f")), 0);
	ck_assert_int_eq(symlink("x", P("l/s")), 0);
	expect_quiet(kq);
	close(w);
	close(l);
	close(e);
	close(kq);
}
END_TEST

/* vop_rename_post: within one directory NOTE_WRITE, |NOTE_LINK when a
 * directory was replaced; between directories NOTE_WRITE|NOTE_EXTEND,
 * |NOTE_LINK when a directory moved, except on the directory where it
 * replaced one (that one's link count does not change). */
START_TEST(vnode_directory_rename_hints_follow_vop_rename_post)
{
	int kq = new_kq(), a = mkdirfd("a"), b = mkdirfd("b"), f;
	struct kevent ev[2];

	ck_assert_int_eq(mkdir(P("a/d1"), 0755), 0);
	ck_assert_int_eq(mkdir(P("a/d2"), 0755), 0);
	ck_assert_int_eq(mkdir(P("a/d3"), 0755), 0);
	ck_assert_int_eq(mkdir(P("b/old"), 0755), 0);
	ck_assert_int_ge(f = open(P("a/f"), O_CREAT | O_WRONLY, 0644), 0);
	close(f);
	ck_assert_int_ge(f = open(P("a/g"), O_CREAT | O_WRONLY, 0644), 0);
	close(f);
	kev_ok(kq, a, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_LINK, 0,
	    (void *)'a');
	/* a file over a file: NOTE_WRITE only */
	ck_assert_int_eq(rename(P("a/f"), P("a/g")), 0);
	expect_quiet(kq);
	/* a directory over a directory: NOTE_WRITE|NOTE_LINK */
	ck_assert_int_eq(rename(P("a/d1"), P("a/d2")), 0);
	kev_expect(kq, WAIT_MS, a, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_LINK, 0, 'a');
	/* a directory to a new name: NOTE_WRITE only */
	ck_assert_int_eq(rename(P("a/d2"), P("a/d4")), 0);
	expect_quiet(kq);
	kev_ok(kq, a, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE, 0,
	    (void *)'a');
	ck_assert_int_eq(rename(P("a/d4"), P("a/d3")), 0);
	kev_expect(kq, WAIT_MS, a, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_LINK, 0, 'a');
	ck_assert_int_eq(rename(P("a/g"), P("a/h")), 0);
	kev_expect(kq, WAIT_MS, a, EVFILT_VNODE, EV_CLEAR, NOTE_WRITE, 0, 'a');
	/* between watched directories; NOTE_EXTEND alone takes it all */
	kev_ok(kq, a, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_EXTEND, 0,
	    (void *)'a');
	kev_ok(kq, b, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_EXTEND, 0,
	    (void *)'b');
	ck_assert_int_eq(rename(P("a/h"), P("b/h")), 0);
	ck_assert_int_eq(collect(kq, ev, 2), 2);
	ck_assert_ptr_nonnull(find_ev(ev, 2, a, EVFILT_VNODE));
	ck_assert_uint_eq(find_ev(ev, 2, a, EVFILT_VNODE)->fflags,
	    NOTE_WRITE | NOTE_EXTEND);
	ck_assert_ptr_nonnull(find_ev(ev, 2, b, EVFILT_VNODE));
	ck_assert_uint_eq(find_ev(ev, 2, b, EVFILT_VNODE)->fflags,
	    NOTE_WRITE | NOTE_EXTEND);
	kev_expect_none(kq);
	/* a directory onto a directory elsewhere: b keeps its link count */
	ck_assert_int_eq(rename(P("a/d3"), P("b/old")), 0);
	ck_assert_int_eq(collect(kq, ev, 2), 2);
	ck_assert_ptr_nonnull(find_ev(ev, 2, a, EVFILT_VNODE));
	ck_assert_uint_eq(find_ev(ev, 2, a, EVFILT_VNODE)->fflags,
	    NOTE_WRITE | NOTE_EXTEND | NOTE_LINK);
	ck_assert_ptr_nonnull(find_ev(ev, 2, b, EVFILT_VNODE));
	ck_assert_uint_eq(find_ev(ev, 2, b, EVFILT_VNODE)->fflags,
	    NOTE_WRITE | NOTE_EXTEND);
	kev_expect_none(kq);
	/* and to a new name there: NOTE_LINK on both sides */
	ck_assert_int_eq(rename(P("b/old"), P("a/new")), 0);
	ck_assert_int_eq(collect(kq, ev, 2), 2);
	ck_assert_ptr_nonnull(find_ev(ev, 2, a, EVFILT_VNODE));
	ck_assert_uint_eq(find_ev(ev, 2, a, EVFILT_VNODE)->fflags,
	    NOTE_WRITE | NOTE_EXTEND | NOTE_LINK);
	ck_assert_ptr_nonnull(find_ev(ev, 2, b, EVFILT_VNODE));
	ck_assert_uint_eq(find_ev(ev, 2, b, EVFILT_VNODE)->fflags,
	    NOTE_WRITE | NOTE_EXTEND | NOTE_LINK);
	kev_expect_none(kq);
	close(a);
	close(b);
	close(kq);
}
END_TEST

START_TEST(vnode_directory_ignores_changes_inside_its_files)
{
	int kq = new_kq(), d = mkdirfd("d"), f;
	char c;

	ck_assert_int_ge(f = open(P("d/f"), O_CREAT | O_RDWR, 0644), 0);
	kev_ok(kq, d, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_WRITE | NOTE_ATTRIB | NOTE_OPEN | NOTE_CLOSE |
	    NOTE_CLOSE_WRITE | NOTE_READ | NOTE_EXTEND | NOTE_LINK, 0, NULL);
	ck_assert_int_eq(write(f, "abc", 3), 3);
	ck_assert_int_eq(pread(f, &c, 1, 0), 1);
	ck_assert_int_eq(fchmod(f, 0600), 0);
	ck_assert_int_eq(close(f), 0);
	ck_assert_int_ge(f = open(P("d/f"), O_RDONLY), 0);
	ck_assert_int_eq(close(f), 0);
	expect_quiet(kq);
	close(d);
	close(kq);
}
END_TEST

START_TEST(vnode_directory_open_read_attrib_rename)
{
	int kq = new_kq(), d = mkdirfd("d"), r;
	char buf[1024];

	kev_ok(kq, d, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_OPEN | NOTE_READ | NOTE_CLOSE | NOTE_ATTRIB | NOTE_RENAME,
	    0, NULL);
	ck_assert_int_ge(r = open(P("d"), O_RDONLY | O_DIRECTORY), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_OPEN, 0, NULL);
	ck_assert_int_gt(syscall(SYS_getdents64, r, buf, sizeof buf), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_READ, 0, NULL);
	ck_assert_int_eq(close(r), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_CLOSE, 0, NULL);
	ck_assert_int_eq(fchmod(d, 0700), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(rename(P("d"), P("e")), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_RENAME, 0, NULL);
	kev_expect_none(kq);
	close(d);
	close(kq);
}
END_TEST

/* Linux says nothing to an open directory that is removed (IN_DELETE_SELF
 * waits for the last close); FreeBSD says NOTE_DELETE at once. */
START_TEST(vnode_rmdir_of_watched_directory_reports_delete)
{
	int kq = new_kq(), d, e, ifd;

	ck_assert_int_eq(mkdir(P("a"), 0755), 0);
	ck_assert_int_eq(mkdir(P("b"), 0755), 0);
	d = mkdirfd("a/d");
	e = mkdirfd("a/e");
	ck_assert_int_eq(mkdir(P("a/x"), 0755), 0);
	kev_ok(kq, d, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_DELETE | NOTE_RENAME, 0, (void *)'d');
	kev_ok(kq, e, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_DELETE, 0,
	    (void *)'e');
	/* a sibling going is not d's business */
	ck_assert_int_eq(rmdir(P("a/x")), 0);
	expect_quiet(kq);
	ck_assert_int_eq(rmdir(P("a/e")), 0);
	kev_expect(kq, WAIT_MS, e, EVFILT_VNODE, EV_CLEAR, NOTE_DELETE, 0, 'e');
	/* d moves: the probe follows it to its new parent */
	ck_assert_int_eq(rename(P("a/d"), P("b/d")), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_RENAME, 0, 'd');
	ck_assert_int_eq(rmdir(P("a")), 0);
	expect_quiet(kq);
	ck_assert_int_eq(rmdir(P("b/d")), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_DELETE, 0, 'd');
	kev_expect_none(kq);
	kev_ok(kq, d, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	kev_ok(kq, e, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	ck_assert_int_eq(inotify_fds(&ifd, 1), 0);
	close(d);
	close(e);
	close(kq);
}
END_TEST

START_TEST(vnode_directory_replaced_by_rename_reports_delete)
{
	int kq = new_kq(), d = mkdirfd("d");

	ck_assert_int_eq(mkdir(P("e"), 0755), 0);
	kev_ok(kq, d, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_DELETE | NOTE_LINK | NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(rename(P("e"), P("d")), 0);
	kev_expect(kq, WAIT_MS, d, EVFILT_VNODE, EV_CLEAR, NOTE_DELETE, 0, NULL);
	kev_expect_none(kq);
	close(d);
	close(kq);
}
END_TEST

/* ---------------------------------------------------------- FIFOs */

START_TEST(vnode_fifo_reports_open_close_attrib_but_not_data)
{
	int kq = new_kq(), fd, r, w;
	char buf[4];

	ck_assert_int_eq(mkfifo(P("p"), 0644), 0);
	ck_assert_int_ge(fd = open(P("p"), O_RDWR | O_NONBLOCK), 0);
	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_OPEN | NOTE_CLOSE | NOTE_CLOSE_WRITE | NOTE_ATTRIB |
	    NOTE_WRITE | NOTE_EXTEND | NOTE_READ | NOTE_RENAME | NOTE_DELETE,
	    0, NULL);
	/* FIFO data goes through the pipe code on FreeBSD, not VOP_WRITE */
	ck_assert_int_eq(write(fd, "ab", 2), 2);
	ck_assert_int_eq(read(fd, buf, sizeof buf), 2);
	expect_quiet(kq);
	ck_assert_int_ge(r = open(P("p"), O_RDONLY | O_NONBLOCK), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_OPEN, 0, NULL);
	ck_assert_int_eq(close(r), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_CLOSE, 0, NULL);
	ck_assert_int_ge(w = open(P("p"), O_WRONLY | O_NONBLOCK), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_OPEN, 0, NULL);
	ck_assert_int_eq(close(w), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_CLOSE_WRITE,
	    0, NULL);
	ck_assert_int_eq(fchmod(fd, 0600), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(rename(P("p"), P("q")), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_RENAME, 0, NULL);
	ck_assert_int_eq(unlink(P("q")), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_DELETE, 0, NULL);
	kev_expect_none(kq);
	close(fd);
	close(kq);
}
END_TEST

/* ------------------------------------------------------ registration */

START_TEST(vnode_rejects_what_is_not_a_vnode)
{
	int kq = new_kq(), p[2], s[2], efd, nul, fd = mkfile("f", NULL);

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
	ck_assert_int_ge(efd = eventfd(0, 0), 0);
	ck_assert_errno(kev_change(kq, p[0], EVFILT_VNODE, EV_ADD, NOTE_WRITE,
	    0, NULL), EINVAL);
	ck_assert_errno(kev_change(kq, s[0], EVFILT_VNODE, EV_ADD, NOTE_WRITE,
	    0, NULL), EINVAL);
	ck_assert_errno(kev_change(kq, efd, EVFILT_VNODE, EV_ADD, NOTE_WRITE,
	    0, NULL), EINVAL);
	ck_assert_errno(kev_change(kq, kq, EVFILT_VNODE, EV_ADD, NOTE_WRITE,
	    0, NULL), EINVAL);
	close(fd);
	ck_assert_errno(kev_change(kq, fd, EVFILT_VNODE, EV_ADD, NOTE_WRITE,
	    0, NULL), EBADF);
	/* a device is a vnode */
	ck_assert_int_ge(nul = open("/dev/null", O_RDWR), 0);
	kev_ok(kq, nul, EVFILT_VNODE, EV_ADD, NOTE_ATTRIB, 0, NULL);
	kev_expect_none(kq);
	close(nul);
	close(p[0]);
	close(p[1]);
	close(s[0]);
	close(s[1]);
	close(efd);
	close(kq);
}
END_TEST

START_TEST(vnode_200_knotes_use_one_inotify_fd)
{
	enum { N = 200 };
	int kq = new_kq(), fd[N], before, after, i;
	char name[16];

	for (i = 0; i < N; i++) {
		snprintf(name, sizeof name, "f%d", i);
		fd[i] = mkfile(name, NULL);
	}
	before = count_fds();
	for (i = 0; i < N; i++)
		kev_ok(kq, fd[i], EVFILT_VNODE, EV_ADD | EV_CLEAR,
		    NOTE_WRITE | NOTE_DELETE, 0, (void *)(intptr_t)i);
	after = count_fds();
	ck_assert_int_le(after - before, 2);
	ck_assert_int_eq(watch_masks(NULL, 0), N);
	ck_assert_int_eq(write(fd[137], "x", 1), 1);
	kev_expect(kq, WAIT_MS, fd[137], EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, 137);
	ck_assert_int_eq(unlink(P("f42")), 0);
	kev_expect(kq, WAIT_MS, fd[42], EVFILT_VNODE, EV_CLEAR, NOTE_DELETE,
	    0, 42);
	kev_expect_none(kq);
	for (i = 0; i < N; i++)
		close(fd[i]);
	kev_expect_none(kq);	/* lets the kqueue see the closes */
	ck_assert_int_eq(inotify_fds(fd, 1), 0);
	close(kq);
}
END_TEST

START_TEST(vnode_close_of_the_watched_fd_removes_its_knote)
{
	int kq = new_kq(), fd = mkfile("f", NULL), again, ifd;

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_ATTRIB | NOTE_WRITE,
	    0, NULL);
	ck_assert_int_eq(close(fd), 0);
	ck_assert_int_eq(chmod(P("f"), 0600), 0);
	expect_quiet(kq);
	ck_assert_int_eq(inotify_fds(&ifd, 1), 0);
	/* the number comes back for the same file: no knote on it */
	ck_assert_int_eq(again = open(P("f"), O_RDWR), fd);
	ck_assert_errno(kev_change(kq, again, EVFILT_VNODE, EV_DELETE, 0, 0,
	    NULL), ENOENT);
	ck_assert_int_eq(write(again, "x", 1), 1);
	expect_quiet(kq);
	close(again);
	close(kq);
}
END_TEST

/* Events lost to a full inotify queue still reach the knotes: the inode's
 * size, links and attributes are compared with what was seen last. */
START_TEST(vnode_queue_overflow_still_reports_changes)
{
	int kq = new_kq(), a = mkfile("a", "0123"), b = mkfile("b", NULL), i;
	long max = 16384;
	struct kevent ev[1];
	unsigned fa = 0, fb = 0;
	FILE *f = fopen("/proc/sys/fs/inotify/max_queued_events", "r");

	if (f != NULL) {
		ck_assert_int_eq(fscanf(f, "%ld", &max), 1);
		fclose(f);
	}
	if (max > 1000000)
		return;	/* too big to fill in a test */
	kev_ok(kq, a, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_ATTRIB | NOTE_WRITE, 0, (void *)'a');
	kev_ok(kq, b, EVFILT_VNODE, EV_ADD | EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND | NOTE_LINK, 0, (void *)'b');
	/* alternate, so inotify cannot merge them */
	for (i = 0; i <= max / 2; i++) {
		ck_assert_int_eq(fchmod(a, (i & 1) ? 0600 : 0644), 0);
		ck_assert_int_eq(pwrite(a, "x", 1, 0), 1);
	}
	/* the queue is full: these events are lost */
	ck_assert_int_eq(write(b, "grow", 4), 4);
	ck_assert_int_eq(link(P("b"), P("b2")), 0);
	/* a's queued events may come in several reads, b's in one look */
	while (fb == 0) {
		ck_assert_int_eq(kev_wait(kq, ev, 1, WAIT_MS), 1);
		ck_assert_int_eq(ev[0].filter, EVFILT_VNODE);
		if (ev[0].ident == (uintptr_t)a) {
			fa |= ev[0].fflags;
		} else {
			ck_assert_uint_eq(ev[0].ident, b);
			fb = ev[0].fflags;
		}
	}
	ck_assert_uint_eq(fb, NOTE_WRITE | NOTE_EXTEND | NOTE_LINK);
	while (kev_wait(kq, ev, 1, QUIET_MS) == 1) {
		ck_assert_uint_eq(ev[0].ident, a);
		fa |= ev[0].fflags;
	}
	ck_assert_uint_eq(fa, NOTE_ATTRIB | NOTE_WRITE);
	/* and the watches work on */
	ck_assert_int_eq(write(b, "more", 4), 4);
	kev_expect(kq, WAIT_MS, b, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, 'b');
	close(a);
	close(b);
	close(kq);
}
END_TEST

/* The inotify instance is shared with a fork child: the child's teardown of
 * its (not inherited) kqueue must not remove the parent's watches. */
START_TEST(vnode_fork_child_leaves_the_parents_watches_alone)
{
	int kq = new_kq(), fd = mkfile("f", NULL), status;
	pid_t pid;

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_ATTRIB | NOTE_WRITE,
	    0, NULL);
	ck_assert_int_ge(pid = fork(), 0);
	if (pid == 0) {
		struct kevent ev;
		int bad = kevent(kq, NULL, 0, &ev, 1, NULL) != -1 || errno != EBADF;
		_exit(bad);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(fchmod(fd, 0600), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, NULL);
	close(fd);
	close(kq);
}
END_TEST

/* EVFILT_READ on a regular file re-arms through the same inotify watch. */
START_TEST(vnode_and_read_knotes_share_the_inode_watch)
{
	int kq = new_kq(), fd = mkfile("f", NULL), app;
	struct kevent ev[2];
	char buf[8];

	ck_assert_int_ge(app = open(P("f"), O_WRONLY | O_APPEND), 0);
	kev_ok(kq, fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, (void *)'r');
	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_EXTEND, 0,
	    (void *)'v');
	kev_expect_none(kq);
	ck_assert_int_eq(write(app, "abc", 3), 3);
	ck_assert_int_eq(collect(kq, ev, 2), 2);
	ck_assert_ptr_nonnull(find_ev(ev, 2, fd, EVFILT_READ));
	ck_assert_int_eq(find_ev(ev, 2, fd, EVFILT_READ)->data, 3);
	ck_assert_ptr_nonnull(find_ev(ev, 2, fd, EVFILT_VNODE));
	ck_assert_uint_eq(find_ev(ev, 2, fd, EVFILT_VNODE)->fflags,
	    NOTE_WRITE | NOTE_EXTEND);
	/* without the VNODE knote, READ still learns of growth */
	kev_ok(kq, fd, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	ck_assert_int_eq(read(fd, buf, sizeof buf), 3);
	kev_expect_none(kq);
	ck_assert_int_eq(write(app, "de", 2), 2);
	kev_expect(kq, WAIT_MS, fd, EVFILT_READ, EV_CLEAR, 0, 2, 'r');
	kev_expect_none(kq);
	close(app);
	close(fd);
	close(kq);
}
END_TEST

/* ------------------------------------------- one instance for the process */

START_TEST(vnode_write_on_more_kqueues_than_inotify_instances)
{
	int n = more_kqueues_than_inotify_instances(), fd, i, *kq, ifd[2];

	if (n == 0)
		return;		/* cannot make that many here */
	ck_assert_ptr_nonnull(kq = calloc((size_t)n, sizeof *kq));
	fd = mkfile("f", "0123");
	for (i = 0; i < n; i++) {
		kq[i] = new_kq();
		ck_assert_msg(kev_change(kq[i], fd, EVFILT_VNODE, EV_ADD | EV_CLEAR,
		    NOTE_WRITE | NOTE_EXTEND, 0, (void *)(intptr_t)i) == 0,
		    "kqueue %d of %d: EV_ADD: %s", i + 1, n, strerror(errno));
	}
	ck_assert_int_eq(inotify_fds(ifd, 2), 1);
	ck_assert_int_eq(watch_masks(NULL, 0), 1);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	for (i = 0; i < n; i++) {
		kev_expect(kq[i], WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
		    NOTE_WRITE | NOTE_EXTEND, 0, (intptr_t)i);
		kev_expect_none(kq[i]);
	}
	ck_assert_int_eq(pwrite(fd, "y", 1, 0), 1);
	for (i = 0; i < n; i++)
		kev_expect(kq[i], WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
		    NOTE_WRITE, 0, (intptr_t)i);
	for (i = 0; i < n; i++)
		close(kq[i]);
	free(kq);
	close(fd);
}
END_TEST

/* Two kqueues on one file share one wd: the kernel has the union of what
 * they asked for, each gets only its own notes, and either leaving narrows
 * the watch and keeps the other's working. */
START_TEST(vnode_two_kqueues_share_one_wd_and_either_may_leave)
{
	int kq1 = new_kq(), kq2 = new_kq(), fd = mkfile("f", NULL), ifd;

	kev_ok(kq1, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE, 0, (void *)1);
	kev_ok(kq2, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_RENAME, 0, (void *)2);
	ck_assert_uint_eq(the_watch_mask(),
	    IN_MODIFY | IN_MOVE_SELF | IN_DELETE_SELF);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	kev_expect(kq1, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, 1);
	expect_quiet(kq2);
	ck_assert_int_eq(rename(P("f"), P("g")), 0);
	kev_expect(kq2, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_RENAME, 0, 2);
	kev_expect_none(kq1);
	/* kq1 leaves: the watch narrows, kq2's notes still come */
	kev_ok(kq1, fd, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	ck_assert_uint_eq(the_watch_mask(), IN_MOVE_SELF | IN_DELETE_SELF);
	ck_assert_int_eq(rename(P("g"), P("f")), 0);
	kev_expect(kq2, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_RENAME, 0, 2);
	/* kq1 back, kq2 leaves */
	kev_ok(kq1, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE, 0, (void *)3);
	kev_ok(kq2, fd, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	ck_assert_uint_eq(the_watch_mask(), IN_MODIFY | IN_DELETE_SELF);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	kev_expect(kq1, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, 3);
	kev_expect_none(kq2);
	/* the last one gone, so is the instance */
	close(kq1);
	kev_expect_none(kq2);
	ck_assert_int_eq(inotify_fds(&ifd, 1), 0);
	close(fd);
	close(kq2);
}
END_TEST

/* The library's inotify descriptor is its own: close_range() over it (and
 * close()) cannot take it away from the kqueues. */
START_TEST(vnode_survives_close_range_over_the_library_fds)
{
	int kq = new_kq(), fd = mkfile("f", NULL), ifd[2];

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE | NOTE_ATTRIB,
	    0, (void *)7);
	ck_assert_int_eq(inotify_fds(ifd, 2), 1);
	ck_assert_int_gt(ifd[0], fd);
	ck_assert_int_gt(ifd[0], kq);
	ck_assert_int_eq(close_range((unsigned)ifd[0], (unsigned)ifd[0], 0), 0);
	ck_assert_errno(close(ifd[0]), EBADF);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, 7);
	ck_assert_int_eq(fchmod(fd, 0600), 0);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR, NOTE_ATTRIB, 0, 7);
	close(fd);
	close(kq);
}
END_TEST

struct waiter {
	int kq;
	int n;
	struct kevent ev;
};

static void *
wait_one(void *arg)
{
	struct waiter *w = arg;

	w->n = kev_wait(w->kq, &w->ev, 1, WAIT_MS);
	return NULL;
}

/* A kqueue asleep in kevent() hears of an event another kqueue's scan read
 * from the shared instance first (routed to it, and its sleeper woken). */
START_TEST(vnode_sleeping_kqueue_gets_events_another_kqueue_read)
{
	int kq1 = new_kq(), kq2 = new_kq(), fd = mkfile("f", NULL), i;
	struct waiter w = { .kq = kq2 };
	struct kevent ev;
	pthread_t t;

	kev_ok(kq1, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE, 0, (void *)1);
	kev_ok(kq2, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE, 0, (void *)2);
	for (i = 0; i < 50; i++) {
		w.n = -2;
		ck_assert_int_eq(pthread_create(&t, NULL, wait_one, &w), 0);
		ck_assert_int_eq(write(fd, "x", 1), 1);
		ck_assert_int_eq(kev_wait(kq1, &ev, 1, WAIT_MS), 1);
		ck_assert_uint_eq(ev.fflags, NOTE_WRITE | NOTE_EXTEND);
		ck_assert_ptr_eq(ev.udata, (void *)1);
		ck_assert_int_eq(pthread_join(t, NULL), 0);
		ck_assert_int_eq(w.n, 1);
		ck_assert_uint_eq(w.ev.ident, (uintptr_t)fd);
		ck_assert_uint_eq(w.ev.fflags, NOTE_WRITE | NOTE_EXTEND);
		ck_assert_ptr_eq(w.ev.udata, (void *)2);
	}
	kev_expect_none(kq1);
	kev_expect_none(kq2);
	close(fd);
	close(kq1);
	close(kq2);
}
END_TEST

/* A fork child forgets the parent's instance and makes its own. */
START_TEST(vnode_fork_child_watches_with_an_instance_of_its_own)
{
	int kq = new_kq(), fd = mkfile("f", NULL), status;
	pid_t pid;

	kev_ok(kq, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE, 0, NULL);
	ck_assert_int_ge(pid = fork(), 0);
	if (pid == 0) {
		struct kevent ev;
		int kq2 = kqueue(), ifd[2], bad = 0;

		EV_SET(&ev, fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_ATTRIB, 0, NULL);
		bad |= kevent(kq2, &ev, 1, NULL, 0, NULL) != 0;
		bad |= (inotify_fds(ifd, 2) != 1) << 1;
		bad |= (fchmod(fd, 0600) != 0) << 2;
		bad |= (kev_wait(kq2, &ev, 1, WAIT_MS) != 1 ||
		    ev.fflags != NOTE_ATTRIB) << 3;
		_exit(bad);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "child status 0x%x", status);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	kev_expect(kq, WAIT_MS, fd, EVFILT_VNODE, EV_CLEAR,
	    NOTE_WRITE | NOTE_EXTEND, 0, NULL);
	kev_expect_none(kq);
	close(fd);
	close(kq);
}
END_TEST

static Suite *
vnode_suite(void)
{
	Suite *s = suite_create("vnode");
	TCase *tc;

	tc = tcase_create("file");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, vnode_write_that_extends_reports_write_and_extend);
	tcase_add_test(tc, vnode_overwrite_in_place_reports_write_only);
	tcase_add_test(tc, vnode_extend_alone_ignores_overwrites);
	tcase_add_test(tc, vnode_write_alone_gets_the_extend_of_an_appending_write);
	tcase_add_test(tc, vnode_extend_alone_gets_the_write_of_an_appending_write);
	tcase_add_test(tc, vnode_appending_write_is_not_for_other_notes);
	tcase_add_test(tc, vnode_unlink_while_open_reports_delete);
	tcase_add_test(tc, vnode_rename_over_file_reports_delete_to_the_replaced_one);
	tcase_add_test(tc, vnode_link_count_changes_report_link_and_delete);
	tcase_add_test(tc, vnode_rename_reports_rename);
	tcase_add_test(tc, vnode_attribute_changes_report_attrib);
	tcase_add_test(tc, vnode_truncate_that_shrinks_reports_attrib);
	tcase_add_test(tc, vnode_open_read_close_report_their_notes);
	tcase_add_test(tc, vnode_reports_only_the_requested_notes);
	tcase_add_test(tc, vnode_notes_accumulate_until_retrieved);
	tcase_add_test(tc, vnode_without_clear_stays_triggered);
	tcase_add_test(tc, vnode_dispatch_accumulates_while_disabled);
	tcase_add_test(tc, vnode_oneshot_knote_is_gone_after_its_event);
	tcase_add_test(tc, vnode_readd_with_other_notes_changes_the_watch);
	tcase_add_test(tc, vnode_two_fds_of_one_file_share_one_watch);
	tcase_add_test(tc, vnode_two_kqueues_both_see_a_change);
	tcase_add_test(tc, vnode_works_on_an_o_path_fd);
	suite_add_tcase(s, tc);

	tc = tcase_create("directory");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, vnode_directory_entries_report_write_and_subdirectories_link);
	tcase_add_test(tc, vnode_directory_rename_across_directories_reports_extend);
	tcase_add_test(tc, vnode_mkdir_and_rmdir_are_one_write_link_hint);
	tcase_add_test(tc, vnode_directory_rename_hints_follow_vop_rename_post);
	tcase_add_test(tc, vnode_directory_ignores_changes_inside_its_files);
	tcase_add_test(tc, vnode_directory_open_read_attrib_rename);
	tcase_add_test(tc, vnode_rmdir_of_watched_directory_reports_delete);
	tcase_add_test(tc, vnode_directory_replaced_by_rename_reports_delete);
	suite_add_tcase(s, tc);

	tc = tcase_create("fifo");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, vnode_fifo_reports_open_close_attrib_but_not_data);
	suite_add_tcase(s, tc);

	tc = tcase_create("registration");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, vnode_rejects_what_is_not_a_vnode);
	tcase_add_test(tc, vnode_200_knotes_use_one_inotify_fd);
	tcase_add_test(tc, vnode_close_of_the_watched_fd_removes_its_knote);
	tcase_add_test(tc, vnode_and_read_knotes_share_the_inode_watch);
	tcase_add_test(tc, vnode_queue_overflow_still_reports_changes);
	tcase_add_test(tc, vnode_fork_child_leaves_the_parents_watches_alone);
	suite_add_tcase(s, tc);

	tc = tcase_create("shared_instance");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, vnode_write_on_more_kqueues_than_inotify_instances);
	tcase_add_test(tc, vnode_two_kqueues_share_one_wd_and_either_may_leave);
	tcase_add_test(tc, vnode_survives_close_range_over_the_library_fds);
	tcase_add_test(tc, vnode_sleeping_kqueue_gets_events_another_kqueue_read);
	tcase_add_test(tc, vnode_fork_child_watches_with_an_instance_of_its_own);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(vnode_suite)
