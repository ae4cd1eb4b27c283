#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Install into a scratch DESTDIR, then build a plain BSD-style program the way
# a user would (cc + pkg-config) and run it against the installed library.
# Writes only under $TMPDIR, so it works in make distcheck's read-only srcdir.
set -eu

: "${abs_top_builddir:?run from make check}"
: "${abs_top_srcdir:?run from make check}"
MAKE=${MAKE:-make}
CC=${CC:-cc}
PKG_CONFIG=${PKG_CONFIG:-pkg-config}

dest=$(mktemp -d "${TMPDIR:-/tmp}/kqfree-install.XXXXXX")
trap 'rm -rf "$dest"' EXIT

# Only the install targets (not "make install", whose all-am would rebuild
# and race with the running make check); no jobserver from the outer make.
unset MAKEFLAGS MFLAGS || true
if ! { $MAKE -s -C "$abs_top_builddir/lib" install-libLTLIBRARIES DESTDIR="$dest" &&
    $MAKE -s -C "$abs_top_builddir" install-kqfreesysHEADERS install-pkgconfigDATA DESTDIR="$dest"; } \
    >"$dest/install.log" 2>&1; then
	echo "FAIL: install into DESTDIR failed:"; cat "$dest/install.log"; exit 1
fi

pcdir=$(dirname "$(find "$dest" -name libkqfree.pc | head -n 1)")
test -f "$pcdir/libkqfree.pc" || { echo "FAIL: libkqfree.pc not installed"; exit 1; }
hdr=$(find "$dest" -path '*/kqfree/sys/event.h' | head -n 1)
test -n "$hdr" || { echo "FAIL: kqfree/sys/event.h not installed"; exit 1; }

# The .pc names the real prefix; the sysroot variable maps it into DESTDIR.
PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_LIBDIR=$pcdir
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR
flags=$($PKG_CONFIG --cflags --libs libkqfree)
echo "pkg-config --cflags --libs libkqfree: $flags"
case "$flags" in
*"-I$dest/"*"/kqfree"*) ;;
*) echo "FAIL: cflags do not point into the installed include/kqfree"; exit 1 ;;
esac
libdir=$($PKG_CONFIG --variable=libdir libkqfree)
libdir=$dest${libdir#"$dest"}
test -e "$libdir/libkqfree.so" || { echo "FAIL: $libdir/libkqfree.so not installed"; exit 1; }

# A static link pulls in Libs.private: it names only what the library links
# (libpthread is part of libc on glibc 2.34 and later).
needed=$(readelf -d "$libdir/libkqfree.so" | sed -n 's/.*Shared library: \[lib\([^].]*\)\..*/\1/p')
for l in $($PKG_CONFIG --static --libs-only-l libkqfree); do
	l=${l#-l}
	case "$l" in kqfree|pthread) continue ;; esac
	echo "$needed" | grep -qx "$l" || {
		echo "FAIL: libkqfree.pc's Libs.private names -l$l, which the library does not link"; exit 1
	}
done

# CFLAGS/LDFLAGS of the build come along: an ASan library needs an ASan program.
# shellcheck disable=SC2086
$CC ${CFLAGS:-} "$abs_top_srcdir/test/install_prog.c" -o "$dest/install_prog" $flags ${LDFLAGS:-} || {
	echo "FAIL: install_prog.c does not build against the installed tree"; exit 1
}
out=$(LD_LIBRARY_PATH=$libdir "$dest/install_prog") || {
	echo "FAIL: install_prog exited with $?: $out"; exit 1
}
# It must have used the installed copy, not the build tree's.
LD_LIBRARY_PATH=$libdir ldd "$dest/install_prog" | grep -q "$libdir/libkqfree.so" || {
	echo "FAIL: install_prog did not resolve libkqfree.so from $libdir"; exit 1
}
test "$out" = OK || { echo "FAIL: install_prog printed '$out', not OK"; exit 1; }
echo "OK: installed header, library and pkg-config file work for a BSD-style program"
