#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Every source file says its licence (LICENSE: BSD-2-Clause) in an SPDX line.
set -eu

: "${abs_top_srcdir:?run from make check}"
cd "$abs_top_srcdir"
missing=0
for f in configure.ac Makefile.am libkqfree.pc.in m4/kq_*.m4 \
    include/sys/*.h lib/*.[ch] lib/*.map lib/Makefile.am \
    test/*.[ch] test/*.sh test/Makefile.am test/consumers/*.sh \
    bench/*.[ch] bench/kqfree-bench.in bench/Makefile.am examples/*.c man/*.[0-9]; do
	[ -f "$f" ] || continue
	head -n 3 "$f" | grep -q 'SPDX-License-Identifier: BSD-2-Clause' || {
		echo "FAIL: $f has no SPDX-License-Identifier line"; missing=1
	}
done
[ "$missing" = 0 ] && echo "OK: every source file has its SPDX line"
exit $missing
