/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * dlmod_ctor: a module whose constructor uses libkqfree.  Its constructor
 * runs inside dlopen(), under the dynamic loader's lock, and its kqueue()
 * and kevent() (with a change) take libkqfree's GOT-patch path from there:
 * the patch path must neither deadlock against another thread that is in
 * it (test_dlopen: loader_lock_vs_patch_path_no_deadlock) nor misbehave
 * when re-entered from the loader (it must patch this very module).
 * Linked with libkqfree and loaded RTLD_LOCAL by test_dlopen.
 */
#include <dlfcn.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include <sys/event.h>

#define DLMOD_API __attribute__((visibility("default")))

DLMOD_API void dlmod_ctor_status(int *kq, int *kev, int *patched);

static int ctor_kq = -2, ctor_kev = -2, ctor_patched = -1;

/* Whether this module's GOT entry for close() leads into libkqfree. */
static int
close_is_kqfree(void)
{
	/* Taking close's address reads the GOT (GLOB_DAT), not the PLT. */
	int (*volatile cl)(int) = close;
	Dl_info di;

	if (dladdr((void *)cl, &di) == 0 || di.dli_fname == NULL)
		return 0;
	return strstr(di.dli_fname, "libkqfree") != NULL;
}

__attribute__((constructor)) static void
dlmod_ctor_init(void)
{
	struct kevent kev;

	ctor_kq = kqueue();
	if (ctor_kq < 0)
		return;
	EV_SET(&kev, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	ctor_kev = kevent(ctor_kq, &kev, 1, NULL, 0, NULL);
	ctor_patched = close_is_kqfree();
	(void)close(ctor_kq);
}

/* What the last run of the constructor saw. */
void
dlmod_ctor_status(int *kq, int *kev, int *patched)
{
	*kq = ctor_kq;
	*kev = ctor_kev;
	*patched = ctor_patched;
}
