#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The library links when built with link-time optimisation, as distributions
# build packages (-flto=auto): code that only assembly refers to - the vfork()
# stub's call into C (lib/fdreg.c) - must survive it, and the exports stay
# the map's.  Builds lib/*.c straight into a scratch .so (a few seconds).
set -eu

: "${abs_top_srcdir:?run from make check}"
CC=${CC:-cc}
NM=${NM:-nm}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kqfree-lto.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# A compiler without a working LTO plugin (clang with GNU ld, say) cannot
# tell us anything: skip.
echo 'int f(void) { return 0; }' >"$tmp/probe.c"
if ! $CC -O2 -flto -shared -fPIC "$tmp/probe.c" -o "$tmp/probe.so" >/dev/null 2>&1; then
	echo "SKIP: $CC cannot link with -flto"
	exit 77
fi

src=$abs_top_srcdir/lib
if ! $CC -O2 -flto -shared -fPIC -fvisibility=hidden \
    -D_GNU_SOURCE -I"$abs_top_srcdir/include" -I"$src" "$src"/*.c \
    -Wl,--version-script="$src/libkqfree.map" -Wl,-z,defs -Wl,-z,nodelete \
    -lpthread -o "$tmp/libkqfree.so" >"$tmp/log" 2>&1; then
	echo "FAIL: libkqfree does not link with -flto:"
	cat "$tmp/log"
	exit 1
fi
syms=$($NM -D --defined-only "$tmp/libkqfree.so" | awk '{ print $3 }' | sed 's/@.*//')
for s in vfork clone close kevent; do
	case $(uname -m) in x86_64) ;; *) test "$s" != vfork || continue ;; esac
	echo "$syms" | grep -qx "$s" || { echo "FAIL: $s not exported by the -flto build"; exit 1; }
done
if echo "$syms" | grep -q '^kq_'; then
	echo "FAIL: the -flto build exports internal symbols:"; echo "$syms" | grep '^kq_'; exit 1
fi
echo "OK: libkqfree links with -flto and exports the map's interposers"
