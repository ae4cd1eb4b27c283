dnl SPDX-License-Identifier: BSD-2-Clause
# kq_flags.m4 - small compiler-flag probes for libkqfree            -*- autoconf -*-
#
# KQ_CHECK_CFLAGS(FLAGS, [ACTION-IF-OK], [ACTION-IF-NOT])
#   Compile and link an empty program with FLAGS added to both CFLAGS and
#   LDFLAGS (sanitizers need the flag at link time too).  Written here rather
#   than taken from autoconf-archive so a fresh Debian box needs no extra
#   package to run autoreconf.
AC_DEFUN([KQ_CHECK_CFLAGS], [
	AS_VAR_PUSHDEF([kq_var], [kq_cv_cflags_$1])
	AC_CACHE_CHECK([whether $CC accepts $1], [kq_var], [
		kq_save_CFLAGS=$CFLAGS
		kq_save_LDFLAGS=$LDFLAGS
		CFLAGS="$CFLAGS $1"
		LDFLAGS="$LDFLAGS $1"
		AC_LINK_IFELSE([AC_LANG_PROGRAM([], [])],
		    [AS_VAR_SET([kq_var], [yes])], [AS_VAR_SET([kq_var], [no])])
		CFLAGS=$kq_save_CFLAGS
		LDFLAGS=$kq_save_LDFLAGS
	])
	AS_VAR_IF([kq_var], [yes], [$2], [$3])
	AS_VAR_POPDEF([kq_var])
])
