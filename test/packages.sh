#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Debian packages: build libkqfree0 and libkqfree-dev from the committed tree
# (dpkg-buildpackage -us -uc -b, which runs the test suite), check them with
# lintian (no error allowed; warnings are printed), install them, and build
# and run a BSD-style program against the installed -dev package with
# pkg-config.  The packages are removed again at the end.  Needs root (dpkg
# -i) and debhelper, lintian, pkg-config and git (the tree is taken with git
# archive: uncommitted changes are not packaged).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
work=${KQFREE_PKG_WORK:-$top/test/packages-work}
ver=$(sed -n 's/^AC_INIT(\[libkqfree\], \[\([^]]*\)\].*/\1/p' "$top/configure.ac")
[ -n "$ver" ] || { echo "packages: no version in configure.ac"; exit 1; }

rm -rf "$work"
mkdir -p "$work/libkqfree-$ver"
git -C "$top" archive --format=tar HEAD | tar xf - -C "$work/libkqfree-$ver"

echo "packages: dpkg-buildpackage -us -uc -b (libkqfree $ver)"
if ! (cd "$work/libkqfree-$ver" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
	echo "FAIL: dpkg-buildpackage (last lines of $work/build.log):"
	tail -n 40 "$work/build.log"
	exit 1
fi
grep -E '^# (TOTAL|PASS|FAIL):' "$work/build.log" | sed 's/^/packages: tests during the build: /'

changes=$(ls "$work"/libkqfree_*.changes)
lintian --allow-root "$changes" >"$work/lintian.log" 2>&1 || true
echo "packages: lintian:"
sed 's/^/  /' "$work/lintian.log"
if grep -q '^E:' "$work/lintian.log"; then
	echo "FAIL: lintian reports errors"
	exit 1
fi

cleanup() { dpkg -r libkqfree-dev libkqfree0 >/dev/null 2>&1 || true; }
trap cleanup EXIT
dpkg -i "$work"/libkqfree0_*.deb "$work"/libkqfree-dev_*.deb >"$work/install.log" 2>&1 || {
	echo "FAIL: dpkg -i:"; cat "$work/install.log"; exit 1; }

# A BSD program as a user would build it against the installed package.
flags=$(pkg-config --cflags --libs libkqfree)
echo "packages: pkg-config --cflags --libs libkqfree: $flags"
# shellcheck disable=SC2086
cc "$top/test/install_prog.c" -o "$work/install_prog" $flags
ldd "$work/install_prog" | grep -Eq '=> (/usr)?/lib/[^ ]*/libkqfree.so.0 ' || {
	echo "FAIL: install_prog does not use the installed libkqfree.so.0"; exit 1; }
out=$("$work/install_prog")
[ "$out" = OK ] || { echo "FAIL: install_prog printed '$out'"; exit 1; }
for page in man2/kqueue.2 man2/kevent.2 man2/kqueuex.2 man3/EV_SET.3 man3/kqfree.3; do
	dpkg -L libkqfree-dev | grep -q "/usr/share/man/$page" ||
	    { echo "FAIL: libkqfree-dev has no $page"; exit 1; }
done
echo "packages: OK: built, lintian clean of errors, installed, a BSD-style program builds and runs against libkqfree-dev"
