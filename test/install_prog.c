/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A BSD program as a user would write it, compiled by test_install.sh against
 * the installed tree with nothing but `pkg-config --cflags --libs libkqfree`.
 */
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
main(void)
{
	struct kevent change, ev;
	struct timespec ts = { 5, 0 };
	int kq, p[2];
	char marker;

	if ((kq = kqueue()) == -1) {
		perror("kqueue");
		return 1;
	}
	if (pipe(p) == -1) {
		perror("pipe");
		return 1;
	}
	EV_SET(&change, p[0], EVFILT_READ, EV_ADD, 0, 0, &marker);
	if (kevent(kq, &change, 1, NULL, 0, NULL) == -1) {
		perror("kevent add");
		return 1;
	}
	if (write(p[1], "hello", 5) != 5) {
		perror("write");
		return 1;
	}
	memset(&ev, 0, sizeof ev);
	if (kevent(kq, NULL, 0, &ev, 1, &ts) != 1) {
		perror("kevent wait");
		return 1;
	}
	if (ev.ident != (uintptr_t)p[0] || ev.filter != EVFILT_READ ||
	    ev.data != 5 || ev.udata != &marker || (ev.flags & EV_ERROR)) {
		fprintf(stderr, "unexpected event: ident %lu filter %d flags 0x%x data %lld\n",
		    (unsigned long)ev.ident, ev.filter, ev.flags, (long long)ev.data);
		return 1;
	}
	close(p[0]);
	close(p[1]);
	close(kq);
	printf("OK\n");
	return 0;
}
