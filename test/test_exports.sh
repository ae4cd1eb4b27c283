#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The dynamic symbols libkqfree.so defines must be exactly the global list of
# lib/libkqfree.map plus its version node: nothing internal leaks out (a kq_*
# symbol exported would be an ABI promise), nothing the map promises is missing.
set -eu

: "${abs_top_builddir:?run from make check}"
: "${abs_top_srcdir:?run from make check}"
NM=${NM:-nm}

so="$abs_top_builddir/lib/.libs/libkqfree.so"
map="$abs_top_srcdir/lib/libkqfree.map"
test -f "$so" || { echo "FAIL: $so not built"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kqfree-exports.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Global names of the map: between "global:" and "local:", comments removed.
sed -e 's,/\*.*\*/,,g' -e '/\/\*/,/\*\//d' "$map" |
    tr -s ' \t;{}' '\n' |
    sed -n '/^global:$/,/^local:$/p' |
    grep -v -e '^global:$' -e '^local:$' -e '^$' >"$tmp/map"
# The version node itself shows up as an absolute symbol.
node=$(sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_.]*\)[[:space:]]*{.*/\1/p' "$map" | head -n 1)
test -n "$node" || { echo "FAIL: no version node in $map"; exit 1; }
echo "$node" >>"$tmp/map"
# vfork is interposed by an assembly stub that exists on x86-64 only
# (lib/fdreg.c); elsewhere the map's entry matches nothing.
case $(uname -m) in
x86_64) ;;
*) sed -i '/^vfork$/d' "$tmp/map" ;;
esac
sort -u "$tmp/map" >"$tmp/expected"

# Newer binutils print name@@VERSION: keep the name, and check the version.
$NM -D --defined-only "$so" | awk 'NF >= 3 { print $3 }' >"$tmp/raw"
sed 's/@.*//' "$tmp/raw" | sort -u >"$tmp/actual"

status=0
extra=$(comm -13 "$tmp/expected" "$tmp/actual")
missing=$(comm -23 "$tmp/expected" "$tmp/actual")
if test -n "$extra"; then
	echo "FAIL: exported but not in $map:"; echo "$extra" | sed 's/^/  /'; status=1
fi
if test -n "$missing"; then
	echo "FAIL: in $map but not exported:"; echo "$missing" | sed 's/^/  /'; status=1
fi
wrongver=$(grep '@' "$tmp/raw" | grep -v "@@*$node\$" || true)
if test -n "$wrongver"; then
	echo "FAIL: symbols not in version $node:"; echo "$wrongver" | sed 's/^/  /'; status=1
fi
if test $status -eq 0; then
	echo "OK: $(wc -l <"$tmp/expected") symbols exported, exactly the map's list"
fi
exit $status
