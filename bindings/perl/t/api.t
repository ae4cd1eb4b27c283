# SPDX-License-Identifier: BSD-2-Clause
#
# KQFree's interface: constants, EV_SET, field widths, error entries and
# receipts, what the binding adds to changes, and a closed kqueue.
use strict;
use warnings;
use Test::More;
use Errno qw(EBADF ENOENT EINVAL);
use IO::Select;
use POSIX ();
use KQFree qw(:all);

# perl's own complaints ("Attempt to free unreferenced scalar"...) fail the test
my @warnings;
$SIG{__WARN__} = sub { push @warnings, @_ };

# --- constants
is(NOTE_EXIT, 0x80000000, 'NOTE_EXIT is unsigned 0x80000000');
is(NOTE_FFCOPY, 0xc0000000, 'NOTE_FFCOPY is unsigned');
is(EVFILT_READ, -1, 'filters are negative');
is(EVFILT_EMPTY, -13, 'EVFILT_EMPTY');
is(EV_FREEWATCH, 0x0400, 'EV_FREEWATCH');
is_deeply([NOTE_FREE_DELETE, NOTE_FREE_CLOSE, NOTE_FREE_UDATA, NOTE_FREE_DROP,
    NOTE_FREE_RELEASE], [1, 2, 4, 8, 16], 'NOTE_FREE_* reasons');
for my $name (@KQFree::EXPORT_OK) {
	ok(defined &{"KQFree::$name"}, "$name is defined") or last;
}
is_deeply(EV_SET(3, EVFILT_READ), [3, EVFILT_READ, 0, 0, 0, undef],
    'EV_SET fills the defaults');

my $kq = KQFree->new;
isa_ok($kq, 'KQFree');

# --- any Perl value round-trips as udata; ident and data are 64-bit,
# fflags 32-bit
{
	my $code = sub { 42 };
	my @values = (17, 'a string', undef, [1, 2], { k => 'v' }, $code, -1.5);
	my $ident = 2**40 + 7;
	my $i = 0;
	for my $value (@values) {
		my $id = $ident + $i++;
		# an add never triggers (FreeBSD); the trigger's fflags and data
		# are stored, its udata is not (the binding adds EV_KEEPUDATA)
		my @ev = $kq->kevent([EV_SET($id, EVFILT_USER, EV_ADD | EV_ONESHOT,
		    0, 0, $value), EV_SET($id, EVFILT_USER, 0,
		    NOTE_TRIGGER | NOTE_FFCOPY | NOTE_FFLAGSMASK, 2**40 + 3, 'other')],
		    4, 0);
		is(scalar @ev, 1, "value $i: one event");
		is($ev[0][KQ_IDENT], $id, "value $i: 64-bit ident");
		is($ev[0][KQ_FFLAGS], NOTE_FFLAGSMASK, "value $i: fflags");
		is($ev[0][KQ_DATA], 2**40 + 3, "value $i: 64-bit data");
		is($ev[0][KQ_FLAGS], EV_ONESHOT | EV_FREEWATCH,
		    "value $i: flags of a last event") or
		    diag(sprintf '0x%x', $ev[0][KQ_FLAGS]);
		if (ref $value) {
			is($ev[0][KQ_UDATA], $value, "value $i: the same reference");
		} else {
			is($ev[0][KQ_UDATA], $value, "value $i: the same value");
		}
	}
	is($code->(), 42, 'the closure still works');
	my @ev = $kq->kevent([EV_SET(5, EVFILT_USER, EV_ADD | EV_ONESHOT, 0, 0,
	    'neg'), EV_SET(5, EVFILT_USER, 0, NOTE_TRIGGER, -5)], 4, 0);
	is($ev[0][KQ_DATA], -5, 'negative data');
}

# --- EV_RECEIPT and error entries map to their changes
{
	my @ev = $kq->kevent([
	    EV_SET(100, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, 'kept'),
	    EV_SET(70000, EVFILT_READ, EV_ADD, 0, 0, 'bad fd'),
	    EV_SET(101, EVFILT_USER, EV_ADD | EV_CLEAR | EV_RECEIPT, 0, 0, 'receipt'),
	    EV_SET(102, EVFILT_USER, EV_DELETE, 0, 0, 'missing'),
	    EV_SET(103, 99, EV_ADD, 0, 0, 'bad filter'),
	], 16, 0);
	is_deeply(\@ev, [
	    [70000, EVFILT_READ, EV_ERROR, 0, EBADF, 'bad fd'],
	    [101, EVFILT_USER, EV_ERROR, 0, 0, 'receipt'],
	    [102, EVFILT_USER, EV_ERROR, 0, ENOENT, 'missing'],
	    [103, 99, EV_ERROR, 0, EINVAL, 'bad filter'],
	], 'entries for the failures and the receipt, in order, with their udata');
	@ev = $kq->kevent([EV_SET(100, EVFILT_USER, 0, NOTE_TRIGGER, 0, 'ignored')],
	    4, 0);
	is_deeply(\@ev, [[100, EVFILT_USER, EV_CLEAR, 0, 0, 'kept']],
	    'a trigger keeps the stored udata (EV_KEEPUDATA)');
	@ev = $kq->kevent([EV_SET(101, EVFILT_USER, EV_ENABLE, NOTE_TRIGGER, 0,
	    'ignored')], 4, 0);
	is_deeply(\@ev, [[101, EVFILT_USER, EV_CLEAR, 0, 0, 'receipt']],
	    'EV_RECEIPT does not show in events');
	@ev = $kq->kevent([EV_SET(100, EVFILT_USER, EV_ADD | EV_DELETE)], 4, 0);
	is_deeply(\@ev, [], 'EV_ADD|EV_DELETE deletes');
	@ev = $kq->kevent([EV_SET(100, EVFILT_USER, EV_ADD | EV_DELETE, 0, 0, 'x')],
	    4, 0);
	is_deeply(\@ev, [[100, EVFILT_USER, EV_ERROR, 0, ENOENT, 'x']],
	    'EV_ADD|EV_DELETE of a missing watch is ENOENT, not an add');
	$kq->kevent([EV_SET(101, EVFILT_USER, EV_DELETE)]);
}

# --- what the binding refuses
{
	my @bad = (
	    ['not an array', qr/array reference/],
	    [[1, EVFILT_USER, 0x10000], qr/16 bits/],
	    [[1, EVFILT_USER, EV_ADD, 2**32], qr/32 bits/],
	    [[1, EVFILT_USER, EV_ADD | EV_KEEPUDATA], qr/EV_KEEPUDATA/],
	    [[$$, EVFILT_PROC, EV_ADD, NOTE_EXIT | NOTE_TRACK], qr/NOTE_TRACK/],
	);
	for my $case (@bad) {
		my $obj = bless {}, 'Watched';
		my $destroyed = 0;
		no warnings 'once';
		local *Watched::DESTROY = sub { $destroyed++ };
		my $change = ref $case->[0] ?
		    [@{$case->[0]}[0 .. 2], $case->[0][3] // 0, 0, $obj] : $case->[0];
		eval { $kq->kevent([EV_SET(200, EVFILT_USER, EV_ADD, 0, 0, $obj), $change]) };
		like($@, $case->[1], "refused: $case->[1]");
		undef $obj;
		undef $change;
		is($destroyed, 1, 'a refused changelist keeps nothing, even its good changes');
	}
	is_deeply([$kq->kevent([EV_SET(200, EVFILT_USER, EV_DELETE, 0, 0, 'x')], 4, 0)],
	    [[200, EVFILT_USER, EV_ERROR, 0, ENOENT, 'x']],
	    'nothing of a refused changelist was applied');
	eval { $kq->kevent(undef, -1) };
	like($@, qr/max/, 'negative max');
	eval { $kq->kevent(undef, 1, -1) };
	like($@, qr/timeout/, 'negative timeout');
}

# --- free notices do not end a wait early
{
	my $gone = 0;
	{
		no warnings 'once';
		*Gone::DESTROY = sub { $gone++ };
	}
	$kq->kevent([EV_SET(300, EVFILT_USER, EV_ADD, 0, 0, bless({}, 'Gone'))]);
	$kq->kevent([EV_SET(300, EVFILT_USER, EV_DELETE)], 0);
	is($gone, 0, 'notice queued');
	require Time::HiRes;
	my $t0 = Time::HiRes::time();
	my @ev = $kq->kevent(undef, 4, 0.2);
	my $waited = Time::HiRes::time() - $t0;
	is_deeply(\@ev, [], 'no event');
	is($gone, 1, 'the notice dropped the object');
	cmp_ok($waited, '>=', 0.15, 'and the call still waited its timeout');
}

# --- the kqueue descriptor is readable while something is pending
{
	$kq->kevent([EV_SET(400, EVFILT_USER, EV_ADD | EV_ONESHOT),
	    EV_SET(400, EVFILT_USER, 0, NOTE_TRIGGER)]);
	my $sel = IO::Select->new($kq->fileno);	# a number: no handle to close it
	is(scalar(my @r1 = $sel->can_read(1)), 1, 'fileno is readable with an event pending');
	is(scalar(() = $kq->kevent(undef, 4, 0)), 1, 'the event');
	is(scalar(my @r0 = $sel->can_read(0)), 0, 'and not after it');
}

# --- a fork child: the kqueue is not inherited, and its DESTROY there
# touches nothing of the parent's
{
	$kq->kevent([EV_SET(500, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, 'parent')]);
	# the answer comes through a pipe: valgrind may replace the child's
	# exit status (perl leaves memory behind at _exit)
	pipe(my $answer_r, my $answer_w) or die "pipe: $!";
	my $pid = fork // die "fork: $!";
	if ($pid == 0) {
		close $answer_r;
		my $answer = eval { $kq->kevent(undef, 1, 0); 1 } ? 'usable' :
		    $@ =~ /not inherited/ ? 'refused' : "error: $@";
		undef $kq;		# DESTROY in the child
		syswrite($answer_w, $answer);
		POSIX::_exit(0);
	}
	close $answer_w;
	my $answer = do { local $/; <$answer_r> };
	waitpid($pid, 0);
	is($answer, 'refused', 'the child cannot use the kqueue');
	is_deeply([$kq->kevent([EV_SET(500, EVFILT_USER, 0, NOTE_TRIGGER)], 4, 0)],
	    [[500, EVFILT_USER, EV_CLEAR, 0, 0, 'parent']],
	    'the parent still has its watch and its value');
	$kq->kevent([EV_SET(500, EVFILT_USER, EV_DELETE)]);
}

# --- release, close, and a closed kqueue
{
	my $gone = 0;
	{
		no warnings 'once';
		*Released::DESTROY = sub { $gone++ };
	}
	my $k = KQFree->new;
	$k->kevent([map { (EV_SET($_, EVFILT_USER, EV_ADD, 0, 0,
	    bless({}, 'Released')), EV_SET($_, EVFILT_USER, 0, NOTE_TRIGGER)) } 1 .. 10]);
	$k->release;
	is($gone, 10, 'release drops every value');
	is_deeply([$k->kevent(undef, 16, 0)], [], 'and discards pending events');
	$k->kevent([EV_SET(1, EVFILT_USER, EV_ADD, 0, 0, bless({}, 'Released'))]);
	$k->close;
	is($gone, 11, 'close drops every value');
	eval { $k->kevent(undef, 1, 0) };
	like($@, qr/closed/, 'a closed kqueue croaks');
	eval { $k->close };
	is($@, '', 'close twice is harmless');
}

is_deeply(\@warnings, [], 'no warnings');
done_testing();
