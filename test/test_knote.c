/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_knote.c: the knote table of idents that are not descriptors (timers,
 * signals, pids, user events).  White-box: it walks the kqueue's hash
 * chains, since how long they are shows only as time.  And the timer heap
 * (timerheap.h), driven directly against a model of it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"
#include "timerheap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define NIDENT	100000
#define CHUNK	1000

/* Far timers on idents base + i * stride, i < n. */
static void
add_timers(int kq, uint64_t base, uint64_t stride, int n)
{
	static struct kevent ch[CHUNK];
	int i, k;

	for (i = 0; i < n; i += k) {
		for (k = 0; k < CHUNK && i + k < n; k++)
			EV_SET(&ch[k], base + (uint64_t)(i + k) * stride,
			    EVFILT_TIMER, EV_ADD | EV_ONESHOT, NOTE_SECONDS,
			    3600, NULL);
		ck_assert_int_eq(kevent(kq, ch, k, NULL, 0, NULL), 0);
	}
}

/* The longest chain of kq's table and the number of knotes in it. */
static size_t
longest_chain(int kq, size_t *count)
{
	struct kq_kqueue *k = kq_lookup(kq, false);
	size_t longest = 0, len, total = 0;
	struct kq_knote *kn;
	uint32_t i;

	ck_assert_ptr_nonnull(k);
	pthread_mutex_lock(&k->lock);
	for (i = 0; i <= k->khash.mask; i++) {
		len = 0;
		for (kn = k->khash.b[i]; kn != NULL; kn = kn->next)
			len++;
		total += len;
		if (len > longest)
			longest = len;
	}
	ck_assert_uint_eq(total, k->khash.n);
	pthread_mutex_unlock(&k->lock);
	kq_put(k);
	*count = total;
	return longest;
}

/* Every knote can be found, and deleted, by its ident. */
static void
delete_timers(int kq, uint64_t base, uint64_t stride, int n)
{
	static struct kevent ch[CHUNK];
	int i, k;

	for (i = 0; i < n; i += k) {
		for (k = 0; k < CHUNK && i + k < n; k++)
			EV_SET(&ch[k], base + (uint64_t)(i + k) * stride,
			    EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
		ck_assert_int_eq(kevent(kq, ch, k, NULL, 0, NULL), 0);
	}
}

/*
 * Consecutive idents in one aligned window of as many idents as there are
 * buckets take every bucket once: the table holds at most two knotes per
 * bucket on average, so a run of them, which spans three windows at most,
 * makes no chain longer than three (two where it spans two).
 */
START_TEST(sequential_idents_make_no_chain_longer_than_three)
{
	static const struct {
		uint64_t base;
		size_t longest;
	} run[] = {
		{ 0, 2 }, { 1, 2 }, { 1000000, 2 }, { 1ull << 40, 2 },
		{ 0xfffffff0, 3 },
	};
	size_t i, n;

	for (i = 0; i < sizeof run / sizeof run[0]; i++) {
		int kq = xkqueue();

		add_timers(kq, run[i].base, 1, NIDENT);
		ck_assert_uint_le(longest_chain(kq, &n), run[i].longest);
		ck_assert_uint_eq(n, NIDENT);
		delete_timers(kq, run[i].base, 1, NIDENT);
		close(kq);
	}
}
END_TEST

/*
 * Pointers as idents: aligned, so their low bits - the ones that pick the
 * bucket of a small ident - are zero.  The rest of the ident must spread
 * them still: no chain beyond a few knotes, whatever the alignment.
 */
START_TEST(aligned_idents_still_spread)
{
	static const uint64_t strides[] = { 8, 16, 48, 64, 4096, 65536, 1 << 20 };
	size_t i, n, longest;

	for (i = 0; i < sizeof strides / sizeof strides[0]; i++) {
		int kq = xkqueue();
		uint64_t base = 0x7f3a12340000ull;

		add_timers(kq, base, strides[i], NIDENT);
		longest = longest_chain(kq, &n);
		ck_assert_uint_eq(n, NIDENT);
		ck_assert_msg(longest <= 8, "stride %llu: a chain of %zu knotes",
		    (unsigned long long)strides[i], longest);
		delete_timers(kq, base, strides[i], NIDENT);
		close(kq);
	}
}
END_TEST

/* The same idents under two filters are two knotes, each found by its
 * own (filter, ident). */
START_TEST(same_ident_under_two_filters_are_two_knotes)
{
	int kq = xkqueue(), i;
	size_t n;

	for (i = 0; i < 1000; i++) {
		kev_ok(kq, i, EVFILT_TIMER, EV_ADD, NOTE_SECONDS, 3600, NULL);
		kev_ok(kq, i, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0,
		    (void *)(uintptr_t)i);
	}
	ck_assert_uint_le(longest_chain(kq, &n), 4);
	ck_assert_uint_eq(n, 2000);
	for (i = 0; i < 1000; i += 2)
		kev_ok(kq, i, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	for (i = 0; i < 1000; i++) {
		kev_ok(kq, i, EVFILT_USER, 0, NOTE_TRIGGER, 0,
		    (void *)(uintptr_t)i);
		kev_expect(kq, 0, i, EVFILT_USER, EV_CLEAR, 0, 0,
		    (void *)(uintptr_t)i);
		if (i % 2 == 0)
			ck_assert_errno(kev_change(kq, i, EVFILT_TIMER,
			    EV_DELETE, 0, 0, NULL), ENOENT);
		else
			kev_ok(kq, i, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	}
	close(kq);
}
END_TEST

/* ------------------------------------------------------------- memory */

/* Blocks the kqueue's slab of small knotes (timers) has mapped; 0 when
 * every knote is its own malloc (AddressSanitizer). */
static size_t
small_blocks(int kq)
{
	struct kq_kqueue *k = kq_lookup(kq, false);
	size_t n;

	ck_assert_ptr_nonnull(k);
	pthread_mutex_lock(&k->lock);
	n = k->slab[0].nblocks;
	pthread_mutex_unlock(&k->lock);
	kq_put(k);
	return n;
}

static long
resident_kb(void)
{
	long size, resident;
	FILE *f = fopen("/proc/self/statm", "r");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld %ld", &size, &resident), 2);
	fclose(f);
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* valgrind and AddressSanitizer keep freed memory themselves */
static bool
instrumented(void)
{
#if defined(KQ_ASAN)
	return true;
#else
	const char *pre = getenv("LD_PRELOAD");
	return pre != NULL && strstr(pre, "vgpreload") != NULL;
#endif
}

/*
 * Timers deleted en masse leave their memory to the next ones: adding them
 * again maps nothing new (nor faults a page in), and deleting them unmaps
 * nothing (a TLB flush per block).
 */
#define NSLAB	300000		/* 21 MB of knotes: more blocks than were kept */

START_TEST(slab_blocks_are_reused_after_mass_delete)
{
	int kq = xkqueue(), round;
	size_t blocks;

	add_timers(kq, 0, 1, NSLAB);
	blocks = small_blocks(kq);
#if !defined(KQ_ASAN)
	/* 72-byte knotes, 64 KiB blocks */
	ck_assert_uint_ge(blocks, NSLAB / (64 * 1024 / 72));
#endif
	for (round = 0; round < 3; round++) {
		delete_timers(kq, 0, 1, NSLAB);
		ck_assert_uint_eq(small_blocks(kq), blocks);
		/* other idents, other deadlines: only the number matters */
		add_timers(kq, 5000000 + round, 3, NSLAB);
		ck_assert_uint_eq(small_blocks(kq), blocks);
		delete_timers(kq, 5000000 + round, 3, NSLAB);
		add_timers(kq, 0, 1, NSLAB);
	}
	ck_assert_uint_eq(small_blocks(kq), blocks);
	/* none left at exit: LeakSanitizer does not look into the mapped
	 * hash table, so knotes only it points to would look leaked */
	delete_timers(kq, 0, 1, NSLAB);
	close(kq);
}
END_TEST

/* What the kqueue kept for its peak goes back to the kernel with it. */
START_TEST(memory_comes_back_when_the_kqueue_is_closed)
{
	long before, peak, deleted, after;
	int kq;

	if (instrumented()) {
		fprintf(stderr, "memory_comes_back: not measured here\n");
		return;
	}
	before = resident_kb();
	kq = xkqueue();
	add_timers(kq, 0, 1, 2 * NIDENT);
	peak = resident_kb();
	/* 200k timers: 72-byte knotes, heap entries and buckets */
	ck_assert_int_ge(peak - before, 2 * NIDENT * 80 / 1024);
	delete_timers(kq, 0, 1, 2 * NIDENT);
	deleted = resident_kb();
	close(kq);
	/* a closed kqueue is freed by the library's next call (kqueue.c) */
	close(xkqueue());
	after = resident_kb();
	ck_assert_msg(after - before < (peak - before) / 10,
	    "resident: %ld KiB before, %ld with the timers, %ld deleted, "
	    "%ld closed", before, peak, deleted, after);
}
END_TEST

/* --------------------------------------------------------- timer heap */

#define NHEAP	3000

static uint64_t heap_rng = 88172645463325252ull;

static uint64_t
heap_rand(void)
{
	heap_rng ^= heap_rng << 13;
	heap_rng ^= heap_rng >> 7;
	heap_rng ^= heap_rng << 17;
	return heap_rng;
}

/* The earliest armed deadline of the model (INT64_MAX: none armed). */
static int64_t
model_min(const int64_t *at, const bool *armed)
{
	int64_t m = INT64_MAX;
	int i;

	for (i = 0; i < NHEAP; i++)
		if (armed[i] && at[i] < m)
			m = at[i];
	return m;
}

/*
 * Knotes know their node only as a node at or below it (timerheap.h: an
 * entry rising as the root is popped does not tell its knote).  Random
 * inserts, pops, deletes and re-keyings, with as many pops as the rest so
 * that most entries have risen: every armed knote's deadline read through
 * the heap is the model's, every pop takes an earliest one, and the heap
 * empties in deadline order.
 */
START_TEST(timer_heap_finds_knotes_that_rose)
{
	static struct kq_knote kn[NHEAP];
	static int64_t at[NHEAP];
	static bool armed[NHEAP];
	struct kq_timer_heap h = { 0 };
	int64_t last;
	int op, i, narmed = 0;

	for (i = 0; i < NHEAP; i++)
		kn[i].s.timer.heap_index = KQ_THEAP_NONE;
	for (op = 0; op < 100000; op++) {
		struct kq_knote *min;
		int r = (int)(heap_rand() % 8);

		i = (int)(heap_rand() % NHEAP);
		if (r < 3 && !armed[i]) {		/* add */
			at[i] = (int64_t)(heap_rand() % 100000);
			ck_assert_int_eq(kq_theap_insert(&h, &kn[i], at[i]), 0);
			armed[i] = true;
			narmed++;
		} else if (r < 6 && narmed > 0) {	/* fire the earliest */
			min = kq_theap_min(&h);
			ck_assert_ptr_nonnull(min);
			i = (int)(min - kn);
			ck_assert(armed[i]);
			ck_assert_int_eq(at[i], model_min(at, armed));
			ck_assert_int_eq(kq_theap_min_at(&h), at[i]);
			kq_theap_pop(&h);
			ck_assert_uint_eq(kn[i].s.timer.heap_index,
			    KQ_THEAP_NONE);
			armed[i] = false;
			narmed--;
		} else if (r == 6 && armed[i]) {	/* delete */
			ck_assert_int_eq(kq_theap_at(&h, &kn[i]), at[i]);
			kq_theap_remove(&h, &kn[i]);
			ck_assert_uint_eq(kn[i].s.timer.heap_index,
			    KQ_THEAP_NONE);
			armed[i] = false;
			narmed--;
		} else if (r == 7 && armed[i]) {	/* re-add */
			ck_assert_int_eq(kq_theap_at(&h, &kn[i]), at[i]);
			at[i] = (int64_t)(heap_rand() % 100000);
			kq_theap_update(&h, &kn[i], at[i]);
		}
		ck_assert(kq_theap_empty(&h) == (narmed == 0));
	}
	for (i = 0; i < NHEAP; i++)
		if (armed[i])
			ck_assert_int_eq(kq_theap_at(&h, &kn[i]), at[i]);
	for (last = INT64_MIN; narmed > 0; narmed--) {
		struct kq_knote *min = kq_theap_min(&h);

		ck_assert_ptr_nonnull(min);
		i = (int)(min - kn);
		ck_assert(armed[i]);
		ck_assert_int_ge(at[i], last);
		last = at[i];
		armed[i] = false;
		kq_theap_pop(&h);
	}
	ck_assert(kq_theap_empty(&h));
	kq_theap_free(&h);
}
END_TEST

static Suite *
knote_suite(void)
{
	Suite *s = suite_create("knote");
	TCase *tc = tcase_create("hash");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, sequential_idents_make_no_chain_longer_than_three);
	tcase_add_test(tc, aligned_idents_still_spread);
	tcase_add_test(tc, same_ident_under_two_filters_are_two_knotes);
	suite_add_tcase(s, tc);
	tc = tcase_create("memory");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, slab_blocks_are_reused_after_mass_delete);
	tcase_add_test(tc, memory_comes_back_when_the_kqueue_is_closed);
	suite_add_tcase(s, tc);
	tc = tcase_create("heap");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, timer_heap_finds_knotes_that_rose);
	suite_add_tcase(s, tc);
	return s;
}

KQ_TEST_MAIN(knote_suite)
