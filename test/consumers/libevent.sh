#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# test/consumers/libevent.sh - libevent's own regression suite as a kqueue
# conformance test for libkqfree.
#
# Fetches libevent's source with `apt-get source libevent` (Debian 12's
# package, its patches applied), builds it twice out of tree:
#   epoll   the reference: libevent as Debian builds it on Linux;
#   kqueue  configured against libkqfree's <sys/event.h> and libkqfree.so
#           from this tree, so libevent's kqueue.c backend is compiled in;
# and runs, for each build, libevent's test programs (test-init, test-eof,
# test-closed, test-weof, test-time, test-changelist, test-fdleak) and every
# case of `regress --list-tests`, each one alone under a timeout, with every
# backend but the one under test switched off (EVENT_NO<METHOD>=1).  Before
# the kqueue run it checks that libevent reports "kqueue" as its method.
#
# Prints a line per test (PASS, FAIL, TIMEOUT, NOTRUN, SKIP) and, per
# build, "libevent-<build>: N passed, N failed, N skipped" and the tests
# libevent skipped with its reason; then the tests that pass on epoll and
# not on kqueue.  Logs: $WORKDIR/<build>/logs/<test>.log.
# Exit status: 0 if no test failed in either build.
#
# Runs as root on a fresh Debian 12 (CI): it installs what it needs
# (dpkg-dev for apt-get source, zlib1g-dev for libevent's zlib tests), adds
# deb-src entries for the configured deb ones if there are none, and runs
# apt-get update.  As another user, install those
# beforehand and have deb-src enabled, or point LIBEVENT_SRC at a source tree.
#
# Environment (all optional):
#   KQFREE_SRCDIR    libkqfree source tree (include/sys/event.h); default ../..
#   KQFREE_BUILDDIR  libkqfree build tree (lib/.libs/libkqfree.so); default
#                    KQFREE_SRCDIR
#   WORKDIR          where libevent is fetched and built; default
#                    $KQFREE_BUILDDIR/test/consumers/libevent-work
#   LIBEVENT_SRC     an unpacked libevent source tree to use instead
#   BUILDS           which builds to test, in order (default "epoll kqueue")
#   TEST_TIMEOUT     seconds allowed to each test (default 60)
#   SUITE_TIMEOUT    seconds allowed to each build's suite (default 600): the
#                    tests not started by then are NOTRUN (failed), so a
#                    kqueue that hangs everything still ends in bounded time
#   JOBS             tests run at once and make -j (default 2)
#   REGRESS_TESTS    only these regress cases (default: all of them)
#   REUSE_BUILDS     1: test the builds already in WORKDIR if there are any
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
KQFREE_SRCDIR=$(cd "${KQFREE_SRCDIR:-$here/../..}" && pwd)
KQFREE_BUILDDIR=$(cd "${KQFREE_BUILDDIR:-$KQFREE_SRCDIR}" && pwd)
WORKDIR=${WORKDIR:-$KQFREE_BUILDDIR/test/consumers/libevent-work}
BUILDS=${BUILDS:-epoll kqueue}
TEST_TIMEOUT=${TEST_TIMEOUT:-60}
SUITE_TIMEOUT=${SUITE_TIMEOUT:-600}
JOBS=${JOBS:-2}
REGRESS_TESTS=${REGRESS_TESTS:-}
export DEBIAN_FRONTEND=noninteractive

# The programs libevent's test/test.sh runs for every backend (test-ratelim
# and test-dumpevents are not backend tests: the first needs arguments, the
# second compares a printout with a Python script's).
TEST_PROGRAMS="test-init test-eof test-closed test-weof test-time test-changelist test-fdleak"

die() {
	echo "libevent.sh: $*" >&2
	exit 2
}

mkdir -p "$WORKDIR" || die "cannot make $WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)

kqfree_lib=$KQFREE_BUILDDIR/lib/.libs
[ -f "$KQFREE_SRCDIR/include/sys/event.h" ] || die "no $KQFREE_SRCDIR/include/sys/event.h"
[ -f "$kqfree_lib/libkqfree.so" ] || die "no $kqfree_lib/libkqfree.so: build libkqfree first"

# --- fetching the source ------------------------------------------------------

# True if apt has a deb-src entry (one-line or deb822 format).
deb_src_enabled() {
	grep -qsE '^[[:space:]]*deb-src[[:space:]]' /etc/apt/sources.list \
	    /etc/apt/sources.list.d/*.list ||
	    grep -qsiE '^Types:.*[[:space:]]deb-src([[:space:]]|$)' /etc/apt/sources.list.d/*.sources
}

# Adds a deb-src twin of every enabled deb entry, in a file of its own so the
# system's files stay as they are.
enable_deb_src() {
	local f=/etc/apt/sources.list.d/kqfree-consumers-deb-src
	shopt -s nullglob
	# one-line format: "deb [opts] uri suite comp..." -> "deb-src ..."
	sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' \
	    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null >"$f.list"
	[ -s "$f.list" ] || rm -f "$f.list"
	# deb822 format: copy each enabled stanza whose Types has deb, as deb-src
	awk '
		function flush() {
			if (stanza != "" && isdeb && enabled)
				printf "%s\n", stanza
			stanza = ""; isdeb = 0; enabled = 1
		}
		BEGIN { enabled = 1 }
		/^[[:space:]]*$/ { flush(); next }
		/^#/ { next }
		tolower($1) == "types:" {
			for (i = 2; i <= NF; i++) if ($i == "deb") isdeb = 1
			stanza = stanza "Types: deb-src\n"
			next
		}
		tolower($1) == "enabled:" && tolower($2) == "no" { enabled = 0 }
		{ stanza = stanza $0 "\n" }
		END { flush() }
	' /etc/apt/sources.list.d/*.sources >"$f.sources"
	[ -s "$f.sources" ] || rm -f "$f.sources"
	shopt -u nullglob
	[ -e "$f.list" ] || [ -e "$f.sources" ] || die "no deb entry in apt's sources to make a deb-src entry from"
	echo "libevent.sh: added deb-src entries: $(ls "$f".* | tr '\n' ' ')"
}

need_packages() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} = 0 ] && return 0
	[ "$(id -u)" = 0 ] || die "missing packages (install them as root): ${missing[*]}"
	echo "libevent.sh: apt-get install ${missing[*]}"
	apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
	    { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } ||
	    die "apt-get install ${missing[*]} failed"
}

fetch_source() {
	local dir=$WORKDIR/source src
	src=$(find "$dir" -mindepth 2 -maxdepth 2 -name configure.ac -path '*/libevent-*' 2>/dev/null | head -n 1)
	if [ -n "$src" ] && [ -f "$dir/.complete" ]; then
		LIBEVENT_SRC=$(dirname "$src")
		return
	fi
	rm -rf "$dir"
	mkdir -p "$dir"
	if ! deb_src_enabled; then
		[ "$(id -u)" = 0 ] || die "apt has no deb-src entry; enable one as root, or set LIBEVENT_SRC"
		enable_deb_src
		apt-get update >/dev/null || apt-get update >/dev/null || die "apt-get update failed"
	fi
	# apt-get source extracts the package with its Debian patches applied.
	(cd "$dir" && apt-get source libevent >../apt-get-source.log 2>&1) ||
	    { [ "$(id -u)" = 0 ] && apt-get update >/dev/null &&
	      (cd "$dir" && apt-get source libevent >../apt-get-source.log 2>&1); } ||
	    { cat "$WORKDIR/apt-get-source.log"; die "apt-get source libevent failed"; }
	src=$(find "$dir" -mindepth 2 -maxdepth 2 -name configure.ac -path '*/libevent-*' | head -n 1)
	[ -n "$src" ] || die "apt-get source gave no libevent-*/configure.ac"
	LIBEVENT_SRC=$(dirname "$src")
	touch "$dir/.complete"
}

need_packages dpkg-dev zlib1g-dev
if [ -n "${LIBEVENT_SRC:-}" ]; then
	LIBEVENT_SRC=$(cd "$LIBEVENT_SRC" && pwd) || die "no LIBEVENT_SRC"
else
	fetch_source
fi
echo "libevent.sh: libevent source: $LIBEVENT_SRC"

# --- building -----------------------------------------------------------------

# Debian's patches change Makefile.am, which Debian's build regenerates from:
# so do we, once.
prepare_source() {
	[ -f "$LIBEVENT_SRC/.kqfree-autoreconf" ] && return 0
	(cd "$LIBEVENT_SRC" && autoreconf -fi) >"$WORKDIR/autoreconf.log" 2>&1 ||
	    { tail -n 30 "$WORKDIR/autoreconf.log"; die "autoreconf in $LIBEVENT_SRC failed"; }
	touch "$LIBEVENT_SRC/.kqfree-autoreconf"
}

# build_libevent NAME: configure and make libevent and its tests in
# $WORKDIR/NAME (a VPATH build).  Static libraries: the test programs are
# then real executables, run without libtool's wrappers.  No OpenSSL:
# libevent 2.1.12's ssl/* and http/https_* tests test its OpenSSL glue, and
# six of them fail with Debian 12's OpenSSL 3 on epoll too (dirty shutdown
# is reported differently since OpenSSL 3.0).
build_libevent() {
	local name=$1 dir=$WORKDIR/$1 log=$WORKDIR/$1/build.log
	local -a env=()
	rm -rf "$dir"
	mkdir -p "$dir"
	if [ "$name" = kqueue ]; then
		# configure finds <sys/event.h> and kqueue() and runs its "working
		# kqueue" test against the libkqfree of this tree.
		env=(CPPFLAGS="-I$KQFREE_SRCDIR/include"
		    LDFLAGS="-L$kqfree_lib -Wl,-rpath,$kqfree_lib"
		    LIBS="-lkqfree")
	fi
	echo "libevent.sh: building libevent ($name) in $dir"
	(cd "$dir" && env "${env[@]}" "$LIBEVENT_SRC/configure" --disable-shared \
	    --disable-samples --disable-openssl --disable-dependency-tracking &&
	    mkdir -p test &&	# the RPC stub rule writes there first
	    make -j"$JOBS" &&
	    make -j"$JOBS" $(echo "$TEST_PROGRAMS" | sed 's|[^ ]*|test/&|g') test/regress) \
	    >"$log" 2>&1 || { tail -n 40 "$log"; die "building libevent ($name) failed, see $log"; }
	if [ "$name" = kqueue ]; then
		grep -q '^checking for working kqueue\.\.\. yes' "$dir/config.log" "$log" ||
		    die "libevent's configure found no working kqueue (see $dir/config.log)"
		grep -q '^#define EVENT__HAVE_WORKING_KQUEUE 1' "$dir/include/event2/event-config.h" ||
		    die "libevent ($name) was built without its kqueue backend"
	fi
}

# --- running ------------------------------------------------------------------

# The environment that leaves only METHOD enabled (as libevent's test.sh).
method_env() {
	local m
	for m in EVPORT KQUEUE EPOLL DEVPOLL POLL SELECT WIN32; do
		[ "$m" = "${1^^}" ] || printf 'EVENT_NO%s=1\n' "$m"
	done
}

# probe_method NAME: the method an event_base_new() of build NAME picks
# under method_env, from event_base_get_method().
probe_method() {
	local dir=$WORKDIR/$1
	cat >"$dir/method-probe.c" <<'PROBE'
#include <stdio.h>
#include <event2/event.h>
int
main(void)
{
	struct event_base *base = event_base_new();

	if (base == NULL)
		return 1;
	puts(event_base_get_method(base));
	event_base_free(base);
	return 0;
}
PROBE
	local -a kq=()
	[ "$1" = kqueue ] && kq=("-L$kqfree_lib" "-Wl,-rpath,$kqfree_lib" -lkqfree)
	cc -I"$dir/include" -I"$LIBEVENT_SRC/include" -o "$dir/method-probe" \
	    "$dir/method-probe.c" "$dir/.libs/libevent_core.a" "${kq[@]}" ||
	    die "cannot build the method probe"
	(cd "$dir" && env $(method_env "$1") ./method-probe)
}

# run_test BUILD KIND NAME: one test alone under a timeout; its output goes to
# logs/<name>.log and its verdict to results/<name> (PASS, FAIL, TIMEOUT,
# SKIP), "/" in names becoming "__".  Prints the verdict line.
run_test() {
	local build=$1 kind=$2 name=$3 dir=$WORKDIR/$1 file rc=0 verdict start ms
	file=${name//\//__}
	if [ "$(date +%s)" -ge "$SUITE_DEADLINE" ]; then
		echo NOTRUN >"$dir/results/$file"
		echo "NOTRUN  libevent-$build $name (the suite ran out of time)"
		return
	fi
	start=${EPOCHREALTIME/./}
	if [ "$kind" = program ]; then
		(cd "$dir/run" && env $(method_env "$build") \
		    timeout -k 5 "$TEST_TIMEOUT" "$dir/test/$name") >"$dir/logs/$file.log" 2>&1 || rc=$?
	else
		(cd "$dir/run" && env $(method_env "$build") \
		    timeout -k 5 "$TEST_TIMEOUT" "$dir/test/regress" "$name") >"$dir/logs/$file.log" 2>&1 || rc=$?
	fi
	ms=$(((${EPOCHREALTIME/./} - start) / 1000))
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		verdict=TIMEOUT
	elif [ "$rc" != 0 ]; then
		verdict=FAIL
	elif [ "$kind" = regress ] && grep -q '^0 tests ok\.  (1 skipped)' "$dir/logs/$file.log"; then
		verdict=SKIP
	elif [ "$kind" = regress ] && ! grep -q '^1 tests ok\.  (0 skipped)' "$dir/logs/$file.log"; then
		verdict=FAIL	# exited 0 without running it
	else
		verdict=PASS
	fi
	echo "$verdict" >"$dir/results/$file"
	printf '%-7s libevent-%s %s (%d.%02ds)\n' "$verdict" "$build" "$name" $((ms / 1000)) $((ms % 1000 / 10))
}

# The regress cases libevent runs by default; regress_unrun lists the
# others ("Off by default", DISABLED), which are not run here either.
regress_cases() {
	local dir=$WORKDIR/$1
	"$dir/test/regress" --list-tests | sed -n 's/^    \([^ ]*\)$/\1/p'
}

regress_unrun() {
	"$WORKDIR/$1/test/regress" --list-tests | sed -n 's/^    \([^ ]*\) *(\(.*\))$/\1 (\2)/p'
}

# Why libevent skips a test (tinytest prints no reason), read off its source.
skip_reason() {
	case $1 in
	main/simpleclose_*)
		echo "test_simpleclose() needs EV_FEATURE_EARLY_CLOSE (EV_CLOSED), which libevent's kqueue backend does not offer (on FreeBSD either)" ;;
	main/event_closed_fd_poll)
		echo "test_event_closed_fd_poll() runs only on the poll backend" ;;
	*)
		echo "no reason on record: see libevent's test/regress*.c" ;;
	esac
}

# run_suite BUILD: every test of build BUILD, JOBS at a time; prints the
# verdicts and the build's count line.
run_suite() {
	local build=$1 dir=$WORKDIR/$1 cases p f s t
	rm -rf "$dir/logs" "$dir/results" "$dir/run" "$dir/passed-on-retry"
	mkdir -p "$dir/logs" "$dir/results" "$dir/run"
	if [ -n "$REGRESS_TESTS" ]; then
		cases=$REGRESS_TESTS
	else
		cases=$(regress_cases "$build")
	fi
	{
		for t in $TEST_PROGRAMS; do echo "program $t"; done
		for t in $cases; do echo "regress $t"; done
	} >"$dir/tests"
	export -f run_test method_env
	SUITE_DEADLINE=$(($(date +%s) + SUITE_TIMEOUT))
	export WORKDIR TEST_TIMEOUT SUITE_DEADLINE
	xargs -P "$JOBS" -L 1 bash -c 'run_test "$0" "$1" "$2"' "$build" <"$dir/tests"
	# A few failures get one more run each, alone: libevent's timing tests
	# allow 50 ms, which a loaded machine can miss.  A pass on the retry is
	# a pass, and is listed; many failures are not a loaded machine, nor is
	# a hang (TIMEOUT: 60 s against at most 13 s).
	local kind failures
	failures=$(grep -lx FAIL "$dir"/results/* 2>/dev/null | wc -l)
	if [ "$failures" -gt 0 ] && [ "$failures" -le 10 ]; then
		while read -r kind t; do
			[ "$(cat "$dir/results/${t//\//__}")" = FAIL ] || continue
			mv "$dir/logs/${t//\//__}.log" "$dir/logs/${t//\//__}.first.log"
			echo "RETRY   libevent-$build $t"
			run_test "$build" "$kind" "$t"
			[ "$(cat "$dir/results/${t//\//__}")" = PASS ] &&
			    echo "$t" >>"$dir/passed-on-retry"
		done <"$dir/tests"
	fi
	p=0 f=0 s=0
	while read -r _ t; do
		case $(cat "$dir/results/${t//\//__}" 2>/dev/null) in
		PASS) p=$((p + 1)) ;;
		SKIP) s=$((s + 1)) ;;
		*) f=$((f + 1)) ;;
		esac
	done <"$dir/tests"
	echo "libevent-$build: $p passed, $f failed, $s skipped"
	while read -r _ t; do
		[ "$(cat "$dir/results/${t//\//__}")" = SKIP ] &&
		    echo "libevent-$build: skipped by libevent: $t: $(skip_reason "$t")"
	done <"$dir/tests"
	[ -f "$dir/passed-on-retry" ] &&
	    sed "s/^/libevent-$build: passed only on a retry (first log: logs\/<name>.first.log): /" "$dir/passed-on-retry"
	[ -z "$REGRESS_TESTS" ] && regress_unrun "$build" | sed "s/^/libevent-$build: not run by libevent: /"
	SUITE_FAILED=$((SUITE_FAILED + f))
}

# --- main ---------------------------------------------------------------------

prepare_source
SUITE_FAILED=0
for build in $BUILDS; do
	case $build in
	epoll|kqueue) ;;
	*) die "unknown build '$build' (epoll or kqueue)" ;;
	esac
	if [ "${REUSE_BUILDS:-0}" = 1 ] && [ -x "$WORKDIR/$build/test/regress" ]; then
		echo "libevent.sh: reusing the libevent ($build) build in $WORKDIR/$build"
	else
		build_libevent "$build"
	fi
	method=$(probe_method "$build") || die "libevent ($build) cannot make an event_base"
	[ "$method" = "$build" ] ||
	    die "libevent ($build) uses '$method' with only $build enabled"
	echo "libevent.sh: libevent-$build: event_base_get_method() = \"$method\""
	run_suite "$build"
done

# What passes on epoll but not on kqueue: what libkqfree has to answer for
# (unless libevent itself skips it on kqueue, listed above with its reason).
if [ -d "$WORKDIR/epoll/results" ] && [ -d "$WORKDIR/kqueue/results" ]; then
	for r in "$WORKDIR"/epoll/results/*; do
		t=$(basename "$r")
		[ "$(cat "$r")" = PASS ] && [ -f "$WORKDIR/kqueue/results/$t" ] || continue
		case $(cat "$WORKDIR/kqueue/results/$t") in
		PASS) ;;
		SKIP) echo "passes on epoll, skipped by libevent on kqueue: ${t//__//}" ;;
		*) echo "passes on epoll, not on kqueue: ${t//__//} ($(cat "$WORKDIR/kqueue/results/$t"))" ;;
		esac
	done
fi
[ "$SUITE_FAILED" = 0 ]
