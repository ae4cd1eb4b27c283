/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * GOT patching: the close-tracking fallback for code that symbol
 * interposition cannot reach.
 *
 * Interface (for lib/internal.h):
 *
 *	struct kq_interpose {
 *		const char *name;	// imported symbol, e.g. "close"
 *		void *fn;		// our replacement
 *	};
 *	void kq_gotpatch_apply(const struct kq_interpose *tab, size_t n);
 *	bool kq_gotpatch_stale(void);
 *
 * Why: a language runtime (perl, python) dlopen()s a binding module with
 * RTLD_LOCAL; the module is linked with -lkqfree, so libkqfree is loaded,
 * but only into the module's local scope.  Every other object - the runtime,
 * and even the module itself, because the global scope is searched first -
 * binds close() to libc and our interposed close() never runs.  Here we walk
 * every loaded object and point its GOT entries for the symbols in tab at
 * our replacements.
 *
 * Rules:
 *  - Only slots of *imported* symbols (st_shndx == SHN_UNDEF) are touched:
 *    an object that defines close() itself meant to.
 *  - A slot is rewritten only if it still goes to libc, or is an unresolved
 *    lazy-binding slot (it points back into its own object's PLT).  A slot
 *    already bound to some other interposer (a sanitizer runtime, an
 *    LD_PRELOAD shim, or libkqfree's own exported close() when libkqfree is
 *    in the global scope) is left alone.
 *  - Skipped objects: libkqfree itself (its calls must reach libc), the
 *    dynamic loader, libc.so.6 and the vDSO.
 *  - An object on the loader's list may still be in the middle of a dlopen()
 *    on another thread (mapped, not yet relocated, RELRO not yet applied).
 *    Writing into it then would be lost, and restoring "read-only" on its
 *    RELRO page would crash the loader.  So the walk under
 *    dl_iterate_phdr() only records candidates; each one is then pinned
 *    with dlopen(RTLD_NOLOAD), which waits for any load in progress and
 *    keeps the object mapped while we patch it.
 *  - Lock order: the loader's locks come first.  A constructor runs under
 *    the loader's lock and may call kqueue() or kevent(), which come here;
 *    so gp_lock is never held across a loader call (dl_iterate_phdr,
 *    dlopen, dlinfo, dlclose, dladdr).  It is a leaf that only serializes
 *    the mprotect/store/mprotect sequences on GOT pages (two threads
 *    patching one page would otherwise re-protect it under each other's
 *    store).  The walk and the pins run unlocked: concurrent callers
 *    patch the same slots to the same value, which is harmless.
 *  - Re-entry from a constructor of a module being loaded is fine: the
 *    loader's lock is recursive, every object on the list is relocated by
 *    then (constructors run after relocation, and no other thread can be
 *    loading while this one holds the lock), so the module patches itself.
 *  - kq_gotpatch_apply() is idempotent and does nothing if no object was
 *    loaded or unloaded since a completed run (dlpi_adds/dlpi_subs; with
 *    the loader's count of additions found, loaded only: see
 *    gp_find_adds_word), so it may be called from kqueue() and EV_ADD.
 *    Do not call it with kq->lock held: it waits for the loader, and a
 *    constructor running under the loader's lock may call kevent().
 *  - libkqfree is linked -z nodelete (lib/Makefile.am): a patched GOT entry
 *    points into it, so dlclose() of the last module that uses it must not
 *    unmap it.  Un-patching on unload instead could not be made safe: a
 *    thread may be inside our close() at that moment.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* dlinfo, dl_iterate_phdr */
#endif
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <gnu/libc-version.h>
#endif

#include "internal.h"

#if defined(__x86_64__) && !defined(__ILP32__)
#define GP_SUPPORTED	1
#define GP_JUMP_SLOT	R_X86_64_JUMP_SLOT
#define GP_GLOB_DAT	R_X86_64_GLOB_DAT
#elif defined(__aarch64__) && !defined(__ILP32__)
#define GP_SUPPORTED	1
#define GP_JUMP_SLOT	R_AARCH64_JUMP_SLOT
#define GP_GLOB_DAT	R_AARCH64_GLOB_DAT
#elif defined(__i386__)
#define GP_SUPPORTED	1
#define GP_JUMP_SLOT	R_386_JMP_SLOT
#define GP_GLOB_DAT	R_386_GLOB_DAT
#else
#define GP_SUPPORTED	0
#endif

#if __ELF_NATIVE_CLASS == 64
#define GP_R_SYM(i)	ELF64_R_SYM(i)
#define GP_R_TYPE(i)	ELF64_R_TYPE(i)
#else
#define GP_R_SYM(i)	ELF32_R_SYM(i)
#define GP_R_TYPE(i)	ELF32_R_TYPE(i)
#endif

/* An address range [lo, hi) in this process. */
struct gp_range {
	uintptr_t lo, hi;
};

/* One loaded object, as seen by the walk. */
struct gp_obj {
	char *name;			/* "" for the main program */
	ElfW(Addr) bias;
	const ElfW(Phdr) *phdr;
	ElfW(Half) phnum;
};

struct gp_walk {
	/* in: addresses identifying the objects we never patch */
	uintptr_t self_addr, libc_addr, ldso_base, vdso_base;
	/* out */
	struct gp_range libc;
	struct gp_obj *objs;
	size_t nobjs, cap;
	bool oom;
	unsigned long long adds, subs;
	bool have_counts;
};

/* The loader's load address.  A program run as "ld.so ./prog" has no
 * AT_BASE (the kernel loaded no interpreter); the loader's debugger
 * interface has it then.  (Not the address of one of its functions: a
 * sanitizer runtime interposes __tls_get_addr.) */
static uintptr_t
ldso_base(void)
{
	uintptr_t base = (uintptr_t)getauxval(AT_BASE);

#ifdef __GLIBC__
	if (base == 0)
		base = (uintptr_t)_r_debug.r_ldbase;
#endif
	return base;
}

/* A leaf lock: held only while writing GOT pages, and while reading or
 * publishing the state below.  Never across a loader call. */
static pthread_mutex_t gp_lock = PTHREAD_MUTEX_INITIALIZER;
/* A walk of tab gp_tab completed at (gp_adds, gp_subs); the counters are
 * read without the lock by kq_gotpatch_stale(). */
static _Atomic bool gp_done;
static _Atomic unsigned long long gp_adds, gp_subs;
static const struct kq_interpose *gp_tab;
static size_t gp_n;
/* The loader's own count of objects added (dlpi_adds), when it was found
 * (gp_find_adds_word); NULL: kq_gotpatch_stale() asks dl_iterate_phdr(). */
static _Atomic(const unsigned long long *) gp_adds_word;

/* Lowest and highest mapped address of an object (its PT_LOAD segments). */
static struct gp_range
obj_range(ElfW(Addr) bias, const ElfW(Phdr) *phdr, ElfW(Half) phnum)
{
	struct gp_range r = { UINTPTR_MAX, 0 };

	for (ElfW(Half) i = 0; i < phnum; i++) {
		if (phdr[i].p_type != PT_LOAD)
			continue;
		uintptr_t lo = bias + phdr[i].p_vaddr;
		uintptr_t hi = lo + phdr[i].p_memsz;
		if (lo < r.lo)
			r.lo = lo;
		if (hi > r.hi)
			r.hi = hi;
	}
	if (r.lo > r.hi)
		r.lo = r.hi = 0;
	return r;
}

static bool
in_range(const struct gp_range *r, uintptr_t a)
{
	return a >= r->lo && a < r->hi;
}

/* Under the list lock, where the loader writes the count: the word must
 * say what the walk reports, or it is not the count and is never read
 * again. */
static void
adds_word_check(unsigned long long adds)
{
	const unsigned long long *word = atomic_load_explicit(&gp_adds_word,
	    memory_order_relaxed);

	if (word != NULL && __atomic_load_n(word, __ATOMIC_RELAXED) != adds)
		atomic_store_explicit(&gp_adds_word, NULL, memory_order_relaxed);
}

static int
walk_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct gp_walk *w = arg;

	if (size >= offsetof(struct dl_phdr_info, dlpi_subs) +
	    sizeof(info->dlpi_subs)) {
		w->adds = info->dlpi_adds;
		w->subs = info->dlpi_subs;
		w->have_counts = true;
		adds_word_check(info->dlpi_adds);
	}

	struct gp_range r = obj_range(info->dlpi_addr, info->dlpi_phdr,
	    info->dlpi_phnum);
	if (r.hi == 0)
		return 0;
	if (in_range(&r, w->libc_addr)) {
		w->libc = r;
		return 0;
	}
	if (in_range(&r, w->self_addr))
		return 0;
	if (w->vdso_base != 0 && in_range(&r, w->vdso_base))
		return 0;
	if (w->ldso_base != 0 ? info->dlpi_addr == w->ldso_base :
	    (info->dlpi_name != NULL && strstr(info->dlpi_name, "/ld-") != NULL))
		return 0;

	if (w->nobjs == w->cap) {
		size_t ncap = w->cap * 2;
		struct gp_obj *v = realloc(w->objs, ncap * sizeof(*v));
		if (v == NULL) {
			w->oom = true;
			return 1;
		}
		w->objs = v;
		w->cap = ncap;
	}
	char *name = strdup(info->dlpi_name != NULL ? info->dlpi_name : "");
	if (name == NULL) {
		w->oom = true;
		return 1;
	}
	w->objs[w->nobjs++] = (struct gp_obj){
		.name = name,
		.bias = info->dlpi_addr,
		.phdr = info->dlpi_phdr,
		.phnum = info->dlpi_phnum,
	};
	return 0;
}

#if GP_SUPPORTED

/* Everything we need from one object to patch it. */
struct gp_image {
	ElfW(Addr) bias;
	const ElfW(Phdr) *phdr;
	ElfW(Half) phnum;
	struct gp_range range;		/* mapped extent */
	struct gp_range relro;		/* page-aligned, read-only after load */
	const ElfW(Sym) *symtab;
	const char *strtab;
	size_t strsz;
	const struct gp_range *libc;
	const struct kq_interpose *tab;
	size_t n;
	unsigned patched;
};

/*
 * A d_ptr from PT_DYNAMIC.  glibc rewrites these to absolute addresses when
 * the dynamic section is writable; musl, the vDSO and read-only dynamic
 * sections keep them as link-time addresses.  Tell the two apart by which
 * one falls inside the object.
 */
static uintptr_t
dyn_addr(const struct gp_image *im, ElfW(Addr) v)
{
	if (in_range(&im->range, v))
		return v;
	if (in_range(&im->range, v + im->bias))
		return v + im->bias;
	return 0;
}

/* Protection of the page holding addr once the loader has finished. */
static int
page_prot(const struct gp_image *im, uintptr_t addr, uintptr_t page)
{
	if (page >= im->relro.lo && page < im->relro.hi)
		return PROT_READ;
	for (ElfW(Half) i = 0; i < im->phnum; i++) {
		const ElfW(Phdr) *ph = &im->phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t lo = im->bias + ph->p_vaddr;
		if (addr >= lo && addr < lo + ph->p_memsz) {
			int prot = 0;
			if (ph->p_flags & PF_R)
				prot |= PROT_READ;
			if (ph->p_flags & PF_W)
				prot |= PROT_WRITE;
			if (ph->p_flags & PF_X)
				prot |= PROT_EXEC;
			return prot;
		}
	}
	return PROT_READ;
}

static void
patch_slot(struct gp_image *im, void **slot, void *fn)
{
	long pagesz = sysconf(_SC_PAGESIZE);
	uintptr_t page = (uintptr_t)slot & ~((uintptr_t)pagesz - 1);
	int prot = page_prot(im, (uintptr_t)slot, page);

	if (!(prot & PROT_WRITE) &&
	    mprotect((void *)page, pagesz, prot | PROT_READ | PROT_WRITE) != 0)
		return;		/* cannot patch (e.g. a security policy): degrade */
	/* Other threads may be calling through this slot right now. */
	__atomic_store_n(slot, fn, __ATOMIC_RELEASE);
	if (!(prot & PROT_WRITE))
		(void)mprotect((void *)page, pagesz, prot);
	im->patched++;
}

static void
patch_relocs(struct gp_image *im, uintptr_t rel, size_t size, bool rela)
{
	size_t ent = rela ? sizeof(ElfW(Rela)) : sizeof(ElfW(Rel));

	if (rel == 0)
		return;
	for (size_t off = 0; off + ent <= size; off += ent) {
		ElfW(Addr) r_offset;
		ElfW(Xword) r_info;

		if (rela) {
			const ElfW(Rela) *r = (const void *)(rel + off);
			r_offset = r->r_offset;
			r_info = r->r_info;
		} else {
			const ElfW(Rel) *r = (const void *)(rel + off);
			r_offset = r->r_offset;
			r_info = r->r_info;
		}
		unsigned type = GP_R_TYPE(r_info);
		if (type != GP_JUMP_SLOT && type != GP_GLOB_DAT)
			continue;
		size_t symi = GP_R_SYM(r_info);
		if (symi == 0)
			continue;
		const ElfW(Sym) *sym = &im->symtab[symi];
		if (sym->st_shndx != SHN_UNDEF || sym->st_name >= im->strsz)
			continue;
		const char *name = im->strtab + sym->st_name;
		for (size_t i = 0; i < im->n; i++) {
			if (name[0] != im->tab[i].name[0] ||
			    strcmp(name, im->tab[i].name) != 0)
				continue;
			void **slot = (void **)(im->bias + r_offset);
			if (!in_range(&im->range, (uintptr_t)slot) ||
			    ((uintptr_t)slot & (sizeof(void *) - 1)) != 0)
				break;
			uintptr_t cur = (uintptr_t)__atomic_load_n(slot,
			    __ATOMIC_ACQUIRE);
			if (cur == (uintptr_t)im->tab[i].fn)
				break;
			/* Bound to libc, or lazy and not yet bound. */
			if (in_range(im->libc, cur) || in_range(&im->range, cur))
				patch_slot(im, slot, im->tab[i].fn);
			break;
		}
	}
}

static unsigned
patch_object(const struct gp_obj *o, const struct gp_range *libc,
    const struct kq_interpose *tab, size_t n)
{
	struct gp_image im = {
		.bias = o->bias,
		.phdr = o->phdr,
		.phnum = o->phnum,
		.libc = libc,
		.tab = tab,
		.n = n,
	};
	const ElfW(Dyn) *dyn = NULL;
	long pagesz = sysconf(_SC_PAGESIZE);

	im.range = obj_range(o->bias, o->phdr, o->phnum);
	for (ElfW(Half) i = 0; i < o->phnum; i++) {
		const ElfW(Phdr) *ph = &o->phdr[i];
		if (ph->p_type == PT_DYNAMIC)
			dyn = (const void *)(o->bias + ph->p_vaddr);
		else if (ph->p_type == PT_GNU_RELRO) {
			/* The loader protects whole pages only. */
			uintptr_t lo = o->bias + ph->p_vaddr;
			uintptr_t hi = lo + ph->p_memsz;
			im.relro.lo = lo & ~((uintptr_t)pagesz - 1);
			im.relro.hi = hi & ~((uintptr_t)pagesz - 1);
		}
	}
	if (dyn == NULL)
		return 0;

	ElfW(Addr) jmprel = 0, rela = 0, rel = 0;
	size_t pltrelsz = 0, relasz = 0, relsz = 0;
#if defined(__i386__)
	ElfW(Sxword) pltrel = DT_REL;
#else
	ElfW(Sxword) pltrel = DT_RELA;
#endif
	for (; dyn->d_tag != DT_NULL; dyn++) {
		switch (dyn->d_tag) {
		case DT_SYMTAB:
			im.symtab = (const void *)dyn_addr(&im, dyn->d_un.d_ptr);
			break;
		case DT_STRTAB:
			im.strtab = (const void *)dyn_addr(&im, dyn->d_un.d_ptr);
			break;
		case DT_STRSZ:
			im.strsz = dyn->d_un.d_val;
			break;
		case DT_JMPREL:
			jmprel = dyn_addr(&im, dyn->d_un.d_ptr);
			break;
		case DT_PLTRELSZ:
			pltrelsz = dyn->d_un.d_val;
			break;
		case DT_PLTREL:
			pltrel = dyn->d_un.d_val;
			break;
		case DT_RELA:
			rela = dyn_addr(&im, dyn->d_un.d_ptr);
			break;
		case DT_RELASZ:
			relasz = dyn->d_un.d_val;
			break;
		case DT_REL:
			rel = dyn_addr(&im, dyn->d_un.d_ptr);
			break;
		case DT_RELSZ:
			relsz = dyn->d_un.d_val;
			break;
		}
	}
	if (im.symtab == NULL || im.strtab == NULL || im.strsz == 0)
		return 0;

	/* PLT slots (lazy or -z now), then GLOB_DAT slots (-fno-plt calls,
	 * and code that takes the function's address). */
	patch_relocs(&im, jmprel, pltrelsz, pltrel == DT_RELA);
	patch_relocs(&im, rela, relasz, true);
	patch_relocs(&im, rel, relsz, false);
	return im.patched;
}

#endif /* GP_SUPPORTED */

/*
 * Fork and the loader's list lock.  dl_iterate_phdr() holds it while it
 * runs, and glibc does not reset it in a fork child: a fork while another
 * thread walks the objects (kq_gotpatch_stale() may walk in any kevent()
 * with changes) leaves it held forever there, and the child's first walk - its
 * first kevent() with a change - waited for it.  So walks are counted, and
 * the prepare handler closes the gate to new ones (they skip: "not stale",
 * the next call looks again) and waits for those running.  No lock: the
 * running walks hold the list lock only, which no thread holds while it
 * waits for us.  A walk of the forking thread itself (fork() from a signal
 * handler that interrupted it) is not waited for: gp_my_walks counts it,
 * and is never less than what this thread added to gp_walkers (it goes up
 * first and down last), so a handler that interrupted the counting itself
 * does not wait for its own thread, which would be for ever.  (The price,
 * in that instant only: it may not wait for another thread's walk either.)
 */
static _Atomic int gp_walkers;
static _Atomic bool gp_gate_shut;	/* no walk starts: a fork is being
					 * prepared, or (child) the lock is stuck */
/* The list lock was caught held at a fork, by a holder that cannot be told
 * (list_lock_give_back): the gate stays shut, through the parent side of
 * this process's own forks too. */
static _Atomic bool gp_lock_stuck;
/* initial-exec: kq_gotpatch_stale() runs in every kevent() with changes,
 * and the default model would cost a __tls_get_addr() call per walk. */
static _Thread_local int gp_my_walks __attribute__((tls_model("initial-exec")));

#ifdef KQ_STATS
/* Tests: called between the two counts of a walk's entry and exit. */
void (*kq_test_walk_window)(void);
#define WALK_WINDOW()	do {						\
	if (kq_test_walk_window != NULL)				\
		kq_test_walk_window();					\
} while (0)
/* ... and with that hook set, every staleness check walks */
#define WALK_WANTED()	(kq_test_walk_window != NULL)
#else
#define WALK_WINDOW()	do { } while (0)
#define WALK_WANTED()	false
#endif

static bool
gp_walk_enter(void)
{
	gp_my_walks++;
	atomic_signal_fence(memory_order_seq_cst);	/* for our own handler */
	WALK_WINDOW();
	atomic_fetch_add(&gp_walkers, 1);
	if (atomic_load(&gp_gate_shut)) {
		atomic_fetch_sub(&gp_walkers, 1);
		atomic_signal_fence(memory_order_seq_cst);
		gp_my_walks--;
		return false;
	}
	return true;
}

static void
gp_walk_leave(void)
{
	atomic_fetch_sub(&gp_walkers, 1);
	atomic_signal_fence(memory_order_seq_cst);
	WALK_WINDOW();
	gp_my_walks--;
}

static void
gp_atfork_prepare(void)
{
	atomic_store(&gp_gate_shut, true);
	while (atomic_load(&gp_walkers) > gp_my_walks)
		sched_yield();
}

static void
gp_atfork_parent(void)
{
	atomic_store(&gp_gate_shut, atomic_load(&gp_lock_stuck));
}

/*
 * The gate only keeps our own walks out of the fork.  Any other code of the
 * parent may hold the loader's list lock at that instant - an unwinder, a
 * profiler, backtrace(), the application's own dl_iterate_phdr() - and in
 * the child it is then held for ever by a thread the child does not have:
 * a walk would never return, and nothing could be loaded (dlopen() takes
 * it too).  Shutting our walks out of such a child is not enough: an
 * object the parent loaded after its last walk is in the child too, never
 * patched, and its closes would go unseen.  So the child gives the lock
 * back, as glibc itself does with the loader's other locks in a fork child:
 * gp_list_lock is where it lives, found once at load time
 * (gp_find_list_lock).  The holder was reading the list (a walk) or
 * linking one object in or out of it with single pointer stores, so the
 * list is whole.  A copy child adopted late (kq_fork_adopt) may have
 * threads of its own: a lock one of them holds is left alone, and one
 * caught between its taking and its owner's record keeps our walks out of
 * this process for good.  Without the lock's address (not glibc, or the
 * search was ambiguous) the child walks as the parent did.
 */
#ifdef __GLIBC__
static pthread_mutex_t *gp_list_lock;

struct gp_lock_search {
	uintptr_t ldso_base;
	pid_t tid;
	pthread_mutex_t *found[4];
	unsigned count[4];		/* its depth during the walk */
	int nfound;
};

/* A mutex that looks held, recursively, by the calling thread. */
static bool
held_by(const volatile pthread_mutex_t *m, pid_t tid)
{
	return m->__data.__lock != 0 && m->__data.__owner == tid &&
	    m->__data.__count >= 1 &&
	    (m->__data.__kind & 3) == PTHREAD_MUTEX_RECURSIVE_NP;
}

/* Runs under the list lock: every recursive mutex in the loader's writable
 * memory that this thread holds is a candidate. */
static int
lock_search_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct gp_lock_search *ls = arg;

	(void)size;
	if (info->dlpi_addr != ls->ldso_base)
		return 0;
	for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W))
			continue;
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		uintptr_t end = a + ph->p_memsz;
		uintptr_t align = _Alignof(pthread_mutex_t);
		for (a = (a + align - 1) & ~(align - 1);
		    a + sizeof(pthread_mutex_t) <= end; a += align) {
			if (!held_by((const volatile pthread_mutex_t *)a, ls->tid))
				continue;
			if (ls->nfound == 4)
				return 1;	/* ambiguous: give up */
			ls->count[ls->nfound] =
			    ((const volatile pthread_mutex_t *)a)->__data.__count;
			ls->found[ls->nfound++] = (pthread_mutex_t *)a;
		}
	}
	return 1;
}

/* The list lock is the one candidate the walk let go of, once: a loader
 * lock this thread held around the walk (dlopen()'s, when a constructor
 * calls us) is held as deep after it; the list lock itself may still be
 * held, one level less, when the dlopen() that loads us was called from a
 * dl_iterate_phdr() callback. */
static void
gp_find_list_lock(void)
{
	struct gp_lock_search ls = {
		.ldso_base = ldso_base(),
		.tid = gettid(),
	};
	pthread_mutex_t *lock = NULL;

	if (ls.ldso_base == 0)
		return;
	dl_iterate_phdr(lock_search_cb, &ls);
	for (int i = 0; i < ls.nfound; i++) {
		if (held_by(ls.found[i], ls.tid) &&
		    ls.found[i]->__data.__count == ls.count[i])
			continue;
		if (lock != NULL)
			return;		/* two let go: ambiguous */
		lock = ls.found[i];
	}
	gp_list_lock = lock;
}

/*
 * The loader's count of objects added - what dl_iterate_phdr() reports as
 * dlpi_adds - is a word of its state just after the list lock: glibc keeps
 * _dl_load_write_lock, then (2.34 and later) _dl_load_tls_lock, then
 * _dl_load_adds, each lock a pthread_mutex_t.  Reading it is one load,
 * where asking dl_iterate_phdr() takes and gives back the list lock and
 * looks for the caller's namespace: about 200 instructions and two locked
 * operations in every kevent() with changes (callgrind, churn benchmark).
 * A word is taken for the count only if, under the list lock, exactly one
 * of the two places holds what the walk reports; every walk compares it
 * again (adds_word_check), and so does one in GP_ADDS_RECHECK of
 * kq_gotpatch_stale()'s calls, so a word that is not the count - another
 * glibc's layout that happened to hold the same number - is dropped at the
 * first disagreement.  Only the count of additions is read: an object
 * that went away needs no patch, and one added is counted whatever went.
 */
struct gp_adds_search {
	uintptr_t ldso_base;
	const unsigned long long *found;
};

/* [a, a + len) inside one of the loader's writable segments */
static bool
in_writable_segment(const struct dl_phdr_info *info, uintptr_t a, size_t len)
{
	for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W) &&
		    a >= lo && a + len <= lo + ph->p_memsz)
			return true;
	}
	return false;
}

static int
adds_search_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct gp_adds_search *as = arg;
	const unsigned long long *found = NULL;
	int nfound = 0;

	if (size < offsetof(struct dl_phdr_info, dlpi_subs) +
	    sizeof(info->dlpi_subs))
		return 1;
	if (info->dlpi_addr != as->ldso_base)
		return 0;
	for (uintptr_t k = 1; k <= 2; k++) {
		uintptr_t a = (uintptr_t)gp_list_lock +
		    k * sizeof(pthread_mutex_t);

		if (a % _Alignof(unsigned long long) != 0 ||
		    !in_writable_segment(info, a, sizeof(unsigned long long)))
			continue;
		if (*(const volatile unsigned long long *)a == info->dlpi_adds) {
			found = (const unsigned long long *)a;
			nfound++;
		}
	}
	if (nfound == 1)
		as->found = found;
	return 1;
}

static void
gp_find_adds_word(void)
{
	struct gp_adds_search as = { .ldso_base = ldso_base() };

	if (gp_list_lock == NULL || as.ldso_base == 0)
		return;
	dl_iterate_phdr(adds_search_cb, &as);
	atomic_store_explicit(&gp_adds_word, as.found, memory_order_relaxed);
}

/* Free the list lock if its holder is no thread of this process; false if
 * that cannot be told (the holder's id not yet recorded, or the kernel
 * will not say). */
static bool
list_lock_give_back(void)
{
	volatile pthread_mutex_t *m = gp_list_lock;
	pthread_mutexattr_t attr;

	if (m == NULL || m->__data.__lock == 0)
		return true;
	pid_t owner = m->__data.__owner;
	if (owner == 0)
		return false;
	if (syscall(SYS_tgkill, getpid(), owner, 0) == 0)
		return true;	/* ours: it gives it back itself */
	if (errno != ESRCH)
		return false;	/* cannot ask (a seccomp filter) */
	(void)pthread_mutexattr_init(&attr);
	(void)pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	(void)pthread_mutex_init(gp_list_lock, &attr);
	(void)pthread_mutexattr_destroy(&attr);
	/* a thread of a copy child may be waiting for it */
	(void)syscall(SYS_futex, &gp_list_lock->__data.__lock, FUTEX_WAKE,
	    INT_MAX, NULL, NULL, 0);
	return true;
}
#else
static void gp_find_list_lock(void) { }
static void gp_find_adds_word(void) { }
static bool list_lock_give_back(void) { return true; }
#endif

void
kq_gotpatch_fork_child(void)
{
	/* Another thread of the parent may have been patching. */
	pthread_mutex_init(&gp_lock, NULL);
	atomic_store(&gp_walkers, gp_my_walks);
	int saved = errno;
	if (!list_lock_give_back())
		atomic_store(&gp_lock_stuck, true);
	errno = saved;
	atomic_store(&gp_gate_shut, atomic_load(&gp_lock_stuck));
}

/* At load time, not in a pthread_once on first use: a once routine is a
 * lock too (internal.h: LOADER LOCK ORDER). */
__attribute__((constructor)) static void
gp_init(void)
{
	gp_find_list_lock();
	gp_find_adds_word();
	(void)pthread_atfork(gp_atfork_prepare, gp_atfork_parent,
	    kq_gotpatch_fork_child);
}

static void
walk_free(struct gp_walk *w)
{
	for (size_t i = 0; i < w->nobjs; i++)
		free(w->objs[i].name);
	free(w->objs);
}

static void *
libc_marker(void)
{
#ifdef __GLIBC__
	return (void *)&gnu_get_libc_version;
#else
	return (void *)&abort;
#endif
}

void
kq_gotpatch_apply(const struct kq_interpose *tab, size_t n)
{
	if (!GP_SUPPORTED)
		return;
	pthread_mutex_lock(&gp_lock);
	bool same = tab == gp_tab && n == gp_n;
	pthread_mutex_unlock(&gp_lock);
	if (same && !kq_gotpatch_stale())
		return;

	/* gp_lock is a hidden variable of this object: its address is
	 * inside libkqfree, whichever object calls us (no dladdr needed). */
	struct gp_walk w = {
		.self_addr = (uintptr_t)&gp_lock,
		.libc_addr = (uintptr_t)libc_marker(),
		.ldso_base = ldso_base(),
		.vdso_base = (uintptr_t)getauxval(AT_SYSINFO_EHDR),
	};
	w.cap = 16;
	w.objs = malloc(w.cap * sizeof(*w.objs));
	if (w.objs == NULL)
		return;
	if (!gp_walk_enter()) {
		/* a fork is being prepared: the next call walks */
		free(w.objs);
		return;
	}
	dl_iterate_phdr(walk_cb, &w);
	gp_walk_leave();

#if GP_SUPPORTED
	for (size_t i = 0; i < w.nobjs; i++) {
		const struct gp_obj *o = &w.objs[i];
		/* Wait for a load in progress and pin the object; give up on
		 * it if it went away or was replaced meanwhile. */
		void *h = dlopen(o->name[0] != '\0' ? o->name : NULL,
		    RTLD_LAZY | RTLD_NOLOAD);
		if (h == NULL) {
			(void)dlerror();	/* not the application's error */
			continue;
		}
		struct link_map *lm = NULL;
		if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm != NULL &&
		    lm->l_addr == o->bias) {
			pthread_mutex_lock(&gp_lock);
			(void)patch_object(o, &w.libc, tab, n);
			pthread_mutex_unlock(&gp_lock);
		}
		dlclose(h);
	}
#endif

	/*
	 * A failed walk (no memory) must be retried by the next call.  Walks
	 * are ordered (dl_iterate_phdr runs under the loader's list lock) and
	 * both counters only grow, so the pairs of any two walks are ordered
	 * too.  Keeping the newest keeps "everything was patched at these
	 * counters" true when another caller's older walk finishes last; and
	 * kq_gotpatch_stale() reading one counter of an update and the other
	 * of the previous one can only match the current counters if the new
	 * pair does.
	 */
	pthread_mutex_lock(&gp_lock);
	if (!w.oom && w.have_counts &&
	    (tab != gp_tab || n != gp_n ||
	     !atomic_load_explicit(&gp_done, memory_order_relaxed) ||
	     (w.adds >= atomic_load_explicit(&gp_adds, memory_order_relaxed) &&
	      w.subs >= atomic_load_explicit(&gp_subs, memory_order_relaxed)))) {
		/* release: a reader that sees them sees our GOT stores */
		atomic_store_explicit(&gp_adds, w.adds, memory_order_release);
		atomic_store_explicit(&gp_subs, w.subs, memory_order_release);
		atomic_store_explicit(&gp_done, true, memory_order_release);
		gp_tab = tab;
		gp_n = n;
	}
	pthread_mutex_unlock(&gp_lock);
	walk_free(&w);
}

/* What kq_gotpatch_stale() needs of a walk: the loader's counters, which
 * every object's report carries, so the first one is enough. */
struct gp_counts {
	unsigned long long adds, subs;
	bool have;
};

static int
counts_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct gp_counts *c = arg;

	if (size >= offsetof(struct dl_phdr_info, dlpi_subs) +
	    sizeof(info->dlpi_subs)) {
		c->adds = info->dlpi_adds;
		c->subs = info->dlpi_subs;
		c->have = true;
		adds_word_check(info->dlpi_adds);
	}
	return 1;
}

/* One in this many kq_gotpatch_stale() calls of a thread asks the loader
 * even when the count's word is known, and so checks the word. */
#define GP_ADDS_RECHECK	1024u
static _Thread_local unsigned gp_my_checks
    __attribute__((tls_model("initial-exec")));

/*
 * True if an object was loaded or unloaded since the last completed
 * kq_gotpatch_apply() (or none ran yet).  Costs one load of the loader's
 * count of additions when it is known (gp_find_adds_word: an unload alone
 * is then not news, and needs no patch), else one dl_iterate_phdr()
 * callback.  An object whose dlopen() returned before this call began
 * (on any thread, so long as that return happens before this call) is
 * counted: the loader adds to the count under its list lock, before the
 * object's dlopen() returns.
 */
bool
kq_gotpatch_stale(void)
{
	const unsigned long long *word = atomic_load_explicit(&gp_adds_word,
	    memory_order_relaxed);
	struct gp_counts c;

	if (word != NULL && ++gp_my_checks % GP_ADDS_RECHECK != 0 &&
	    !WALK_WANTED()) {
		if (!atomic_load_explicit(&gp_done, memory_order_acquire))
			return true;
		if (__atomic_load_n(word, __ATOMIC_RELAXED) ==
		    atomic_load_explicit(&gp_adds, memory_order_acquire))
			return false;
		/* a fork is being prepared (or the child's lock is stuck):
		 * no walk now, as below */
		return !atomic_load(&gp_gate_shut);
	}
	c.have = false;
	if (!gp_walk_enter())
		return false;	/* a fork is being prepared: ask next time */
	dl_iterate_phdr(counts_cb, &c);
	gp_walk_leave();
	if (!atomic_load_explicit(&gp_done, memory_order_acquire))
		return true;
	return !c.have ||
	    c.adds != atomic_load_explicit(&gp_adds, memory_order_acquire) ||
	    c.subs != atomic_load_explicit(&gp_subs, memory_order_acquire);
}
