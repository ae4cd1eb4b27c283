# SPDX-License-Identifier: BSD-2-Clause
package KQFree;

use strict;
use warnings;

our $VERSION = '0.01';

require XSLoader;
XSLoader::load('KQFree', $VERSION);

use Exporter 'import';

my @constants = _constant_names();
our @EXPORT_OK = (@constants, 'EV_SET');
our %EXPORT_TAGS = (
	all => \@EXPORT_OK,
	constants => \@constants,
	filters => [grep { /^EVFILT_/ } @constants],
	flags => [grep { /^EV_/ } @constants],
	notes => [grep { /^NOTE_/ } @constants],
);

# Field positions in a change or an event array.
use constant { KQ_IDENT => 0, KQ_FILTER => 1, KQ_FLAGS => 2, KQ_FFLAGS => 3,
    KQ_DATA => 4, KQ_UDATA => 5 };
push @EXPORT_OK, qw(KQ_IDENT KQ_FILTER KQ_FLAGS KQ_FFLAGS KQ_DATA KQ_UDATA);

sub EV_SET {
	my ($ident, $filter, $flags, $fflags, $data, $udata) = @_;
	return [$ident, $filter, $flags // 0, $fflags // 0, $data // 0, $udata];
}

# A kqueue belongs to the thread that made it; a clone would release it.
sub CLONE_SKIP { 1 }

1;

__END__

=head1 NAME

KQFree - BSD kqueue/kevent for Perl on Linux, through libkqfree

=head1 SYNOPSIS

    use KQFree qw(:all);

    my $kq = KQFree->new;
    pipe(my $r, my $w) or die;
    $kq->kevent([EV_SET(fileno($r), EVFILT_READ, EV_ADD, 0, 0,
        sub { print "readable\n" })], 0);
    syswrite $w, "x";
    for my $ev ($kq->kevent(undef, 64, 1.5)) {
        my ($ident, $filter, $flags, $fflags, $data, $udata) = @$ev;
        $udata->($ev);
    }

=head1 DESCRIPTION

A kqueue created by libkqfree, whose C<udata> may be any Perl value: a
number, a string, a reference to an object or a closure.
The kqueue holds its own copy of the value (for a reference, one more
reference to the same thing) for as long as the watch lives, and lets go of
it exactly when libkqfree says the watch died, whichever way it died: a
oneshot event, C<EV_DELETE>, a later C<EV_ADD> with another value, the close
of the watched descriptor (C<close>, C<dup2> over it...), a process exit, a
failed change, or the kqueue itself going away.
No side table is kept; see L<kqfree(3)>, C<EV_FREEWATCH>.

=head1 METHODS

=over 4

=item KQFree->new

A new kqueue (close-on-exec).  Croaks if libkqfree cannot make one.

=item $kq->kevent(\@changes, $max, $timeout)

Applies C<@changes> in order, then returns up to C<$max> events, waiting at
most C<$timeout> seconds (a fraction is fine; C<undef> waits for ever, 0
polls).  All arguments are optional: C<< $kq->kevent(\@changes) >> only
applies changes.

A change, and a returned event, is an array reference
C<[ident, filter, flags, fflags, data, udata]> (C<EV_SET> makes one; the
C<KQ_IDENT> ... C<KQ_UDATA> constants name the positions).  C<ident> and
C<data> are 64-bit, C<fflags> unsigned 32-bit (C<NOTE_EXIT> is 0x80000000),
C<flags> 16-bit.

The binding sets the bits the reference rule needs:

=over 2

=item *

a change with C<EV_ADD> (and without C<EV_DELETE>) is sent with
C<EV_FREEWATCH> and stores a copy of its C<udata>; it may not carry
C<EV_KEEPUDATA> (croaks), and C<EVFILT_PROC> with C<NOTE_TRACK> is refused
(libkqfree's tracked children would share the value without a reference);

=item *

every other change is sent with C<EV_KEEPUDATA>: C<EV_DELETE>,
C<EV_ENABLE>, C<EV_DISABLE> and C<NOTE_TRIGGER> never replace the value.
Their C<udata> is not used.

=back

A change that fails is answered, as on FreeBSD, by an event with flags
C<EV_ERROR> and the errno in C<data>, carrying that change's C<udata>; the
failed change kept nothing.  When any change produced such an entry (or
asked for C<EV_RECEIPT>), those entries are returned at once and no events
are collected.  Unlike FreeBSD, error entries come back whatever C<$max> is
(there is no C<-1> with "no room").

Changes are sent with C<EV_RECEIPT> (so a failed one is known exactly);
returned events never show that flag.

An event's C<udata> is the value of its watch (a copy: for a reference, the
same object).  An event whose C<flags> contain C<EV_FREEWATCH> is the last
one of its watch (a oneshot event, a timer's last expiry, a process exit):
the kqueue's copy moves into the event.

Free notices (C<EV_FREEWATCH|EV_DELETE>, see L<kqfree(3)>) are consumed by
the binding and never returned: the kqueue's copy is dropped, so an object
held only there is destroyed at the end of the statement that called
C<kevent>.  When only notices came back, the call waits again for the rest
of C<$timeout>, so a wait does not end early for them.

Croaks on a malformed change, a closed kqueue or a failing C<kevent()>;
returns an empty list with C<$!> set to C<EINTR> when a signal interrupted
the wait.

=item $kq->release

C<kqfree_release()>: every watch is removed at once and its value dropped;
pending events are discarded.  The kqueue stays usable.

=item $kq->close

Releases every watch, drops their values and closes the kqueue.  Also done
by C<DESTROY>.  After it any method but C<close> croaks.

=item $kq->fileno

The kqueue's descriptor, readable while events are pending (for nesting in
another event loop).

=back

=head1 FUNCTIONS AND CONSTANTS

Exported on request: C<EV_SET>, every C<EVFILT_*>, C<EV_*> and C<NOTE_*>
constant of C<< <sys/event.h> >> (including C<EV_FREEWATCH> and the
C<NOTE_FREE_*> reasons), C<KQUEUE_CLOEXEC> and the C<KQ_*> positions.
Tags: C<:all>, C<:constants>, C<:filters>, C<:flags>, C<:notes>.

=head1 PROCESSES AND THREADS

A kqueue is not inherited by a fork child (libkqfree closes it there): in
the child every method but C<close> croaks, and the child's copies of the
values are never dropped (they go with the child).  A thread created with
L<threads> does not get a copy of the object (C<CLONE_SKIP>).

=head1 SEE ALSO

L<kqueue(2)>, L<kqfree(3)>

=cut
