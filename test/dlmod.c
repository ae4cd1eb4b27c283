/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * dlmod: a stand-in for a language binding's XS/extension module.  It is
 * linked with libkqfree and loaded by test_dlopen with RTLD_LOCAL, so
 * libkqfree is not in the global scope: the loading program's own close()
 * calls (and this module's, since the global scope is searched first) bind
 * to libc.  Only the GOT-patching fallback can see them.
 */
#include <errno.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

#include <sys/event.h>

#define DLMOD_API __attribute__((visibility("default")))

DLMOD_API int dlmod_kqueue(void);
DLMOD_API int dlmod_watch(int kq, int fd, void *udata);
DLMOD_API int dlmod_kevent(int kq, const struct kevent *ch, int nch,
    struct kevent *out, int n, int ms);
DLMOD_API int dlmod_collect(int kq, struct kevent *out, int n, int ms);
DLMOD_API int dlmod_release(int kq);
DLMOD_API int dlmod_close(int fd);

int
dlmod_kqueue(void)
{
	return kqueue();
}

/* EV_ADD|EV_FREEWATCH on EVFILT_READ: 0, or -1 with errno. */
int
dlmod_watch(int kq, int fd, void *udata)
{
	struct kevent kev;

	EV_SET(&kev, fd, EVFILT_READ, EV_ADD | EV_FREEWATCH, 0, 0, udata);
	return kevent(kq, &kev, 1, NULL, 0, NULL);
}

/* kevent() with a timeout in ms (< 0: wait forever). */
int
dlmod_kevent(int kq, const struct kevent *ch, int nch, struct kevent *out,
    int n, int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	return kevent(kq, ch, nch, out, n, ms < 0 ? NULL : &ts);
}

int
dlmod_collect(int kq, struct kevent *out, int n, int ms)
{
	return dlmod_kevent(kq, NULL, 0, out, n, ms);
}

int
dlmod_release(int kq)
{
	return kqfree_release(kq);
}

/* The module's own close(): bound to libc too, unless patched. */
int
dlmod_close(int fd)
{
	return close(fd);
}
