#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The manual pages lint clean: mandoc -Tlint reports no warning or error
# (its notes about the system's own manual database are not about us), and
# groff -ww formats them without a warning.
set -eu

: "${abs_top_srcdir:?run from make check}"
command -v mandoc >/dev/null 2>&1 || { echo "SKIP: mandoc not installed"; exit 77; }

fail=0
for page in "$abs_top_srcdir"/man/*.[0-9]; do
	out=$(mandoc -Tlint -W warning "$page" 2>&1 |
	    grep -v -e 'outdated mandoc.db' -e 'referenced manual not found' || true)
	if command -v groff >/dev/null 2>&1; then
		out="$out$(groff -ww -z -mandoc "$page" 2>&1 || true)"
	fi
	if [ -n "$out" ]; then
		echo "FAIL: $page:"; echo "$out"; fail=1
	else
		echo "ok: $page"
	fi
done
exit $fail
