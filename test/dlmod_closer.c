/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A module that is not linked with libkqfree and closes descriptors: its
 * close() is bound to libc, and only the GOT patch makes it tracked.
 */
#include <unistd.h>

__attribute__((visibility("default"))) int dlmod_closer_close(int fd);

int
dlmod_closer_close(int fd)
{
	return close(fd);
}
