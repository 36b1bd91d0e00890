package terminal

import (
	"log/slog"
	"testing"
	"time"
	"unsafe"

	"github.com/faregate/faregate/fare"
)

// TestFollowClock: a gate follows clearing's clock only when its own is
// provably off (beyond half the round trip and clockTolerance) and by no
// more than clockWarnAfter; a clock off by hours or days is broken, not
// drifting, and is shown rather than followed (unless readClock knows
// better: TestClockSteps).
func TestFollowClock(t *testing.T) {
	for _, tc := range []struct {
		offset, half, want time.Duration
	}{
		{0, 0, 0},
		{clockTolerance, 0, 0},
		{clockTolerance + time.Millisecond, 0, clockTolerance + time.Millisecond},
		{-clockTolerance - time.Millisecond, 0, -clockTolerance - time.Millisecond},
		{3 * time.Second, 2 * time.Second, 0}, // within the round trip's uncertainty
		{3 * time.Minute, 50 * time.Millisecond, 3 * time.Minute},
		{-4 * time.Minute, 50 * time.Millisecond, -4 * time.Minute},
		{clockWarnAfter, 0, clockWarnAfter},
		{clockWarnAfter + time.Second, 0, 0},
		{-3 * time.Hour, 0, 0},
		{48 * time.Hour, 0, 0},
	} {
		if got := followClock(tc.offset, tc.half); got != tc.want {
			t.Errorf("followClock(%s, %s) = %s, want %s", tc.offset, tc.half, got, tc.want)
		}
	}
}

// TestClockSteps: what a gate stamps its taps with as its own clock and
// clearing's move, answer after answer (the true time stands still, as
// the monotonic clock nearly does during the test). A clock stepped while
// the gate runs is said and asked about at once, then clearing's is
// followed however far the step, even one made while the request was out;
// a clearing clock that jumps or creeps beyond clockWarnAfter against the
// gate's own is not followed; at start (no answer before) a clock within
// clockWarnAfter of clearing's, or so far off that clearing would hold or
// reject every tap, follows clearing's, and one in between is shown.
func TestClockSteps(t *testing.T) {
	trueNow := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	nonce := []byte("sixteen byte nce")
	const day = 24 * time.Hour
	type step struct {
		gate, clearing time.Duration // each clock less the true time
		answer         bool          // clearing answers (else a tap is stamped)
		sentAt         *time.Duration
		want           time.Duration // a tap's stamp less the true time
		asks           bool          // the gate asks clearing at once
		following      bool
		ready          bool
	}
	before := -time.Hour
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"a synced clock stepped an hour back", []step{
			{gate: 300 * time.Millisecond, answer: true, ready: true},
			{gate: 300 * time.Millisecond, want: 300 * time.Millisecond, ready: true},
			{gate: -time.Hour, want: -time.Hour, asks: true, ready: true}, // said, asked
			{gate: -time.Hour, answer: true, following: true, ready: true},
			{gate: -time.Hour, want: 0, following: true, ready: true},
			{gate: 200 * time.Millisecond, answer: true, ready: true}, // set right again
			{gate: 200 * time.Millisecond, want: 200 * time.Millisecond, ready: true},
		}},
		{"a clock stepped while the request was out", []step{
			{answer: true, ready: true},
			{gate: time.Hour, sentAt: &before, answer: true, following: true, ready: true},
			{gate: time.Hour, want: 0, following: true, ready: true},
		}},
		{"clearing's clock jumping two days back", []step{
			{answer: true, ready: true},
			{clearing: -2 * day, answer: true, ready: false},
			{clearing: -2 * day, want: 0, ready: false},
		}},
		{"clearing's clock jumping 40 days ahead", []step{
			{answer: true, ready: true},
			{clearing: 40 * day, answer: true, ready: false},
			{clearing: 40 * day, want: 0, ready: false},
		}},
		{"clearing's clock creeping 4 minutes an answer", []step{
			{answer: true, ready: true},
			{clearing: 4 * time.Minute, answer: true, following: true, ready: true},
			{clearing: 4 * time.Minute, want: 4 * time.Minute, following: true, ready: true},
			{clearing: 8 * time.Minute, answer: true, ready: false},
			{clearing: 8 * time.Minute, want: 0, ready: false},
			{clearing: 12 * time.Minute, answer: true, ready: false},
			{clearing: 1 * time.Minute, answer: true, following: true, ready: true}, // back near the gate's own
		}},
		{"a clock 3 minutes off at start", []step{
			{gate: 3 * time.Minute, answer: true, following: true, ready: true},
			{gate: 3 * time.Minute, want: 0, following: true, ready: true},
		}},
		{"a clock found 10 minutes off at start", []step{
			{gate: 10 * time.Minute, want: 10 * time.Minute, ready: true},
			{gate: 10 * time.Minute, answer: true, ready: false},
			{gate: 10 * time.Minute, want: 10 * time.Minute, ready: false},
			{gate: 10 * time.Minute, answer: true, ready: false},
		}},
		{"a clock without a battery, 400 days behind", []step{
			{gate: -400 * day, answer: true, following: true, ready: true},
			{gate: -400 * day, want: 0, following: true, ready: true},
			{gate: -400 * day, answer: true, following: true, ready: true},
		}},
		{"a clock without a battery, clearing's then set right", []step{
			{gate: -400 * day, clearing: 8 * time.Minute, answer: true, following: true, ready: true},
			{gate: -400 * day, answer: true, following: true, ready: true},
			{gate: -400 * day, want: 0, following: true, ready: true},
		}},
		{"a clock two days ahead at start", []step{
			{gate: 2 * day, answer: true, following: true, ready: true},
			{gate: 2 * day, want: 0, following: true, ready: true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gateNow time.Time
			term := &Terminal{log: slog.New(slog.DiscardHandler), cfg: Config{Now: func() time.Time { return gateNow }}, watchClock: true}
			s := &sender{t: term, log: fare.NewTally(term.log, "test")}
			for i, st := range tc.steps {
				gateNow = trueNow.Add(st.gate)
				if st.answer {
					sent := gateNow
					if st.sentAt != nil {
						sent = trueNow.Add(*st.sentAt)
					}
					mono := time.Now()
					s.readClock(&fare.Confirmation{IssuedAt: trueNow.Add(st.clearing), Nonce: nonce},
						&answer{nonce: nonce, sent: sent, received: gateNow, sentMono: mono, receivedMono: mono})
				} else {
					if got := term.tapClock().Sub(trueNow); (got - st.want).Abs() > time.Millisecond {
						t.Errorf("step %d: tap stamped %s off the true time, want %s", i, got, st.want)
					}
					if term.clockJumped.Load() != st.asks {
						t.Errorf("step %d: asks at once %v, want %v", i, term.clockJumped.Load(), st.asks)
					}
				}
				if following := term.follow.Load() != nil; following != st.following {
					t.Errorf("step %d: following %v, want %v", i, following, st.following)
				}
				if err := term.Ready(); (err == nil) != st.ready {
					t.Errorf("step %d: Ready() = %v, want ready %v", i, err, st.ready)
				}
			}
		})
	}
}

// TestClockCreep: a clearing clock creeping a second an answer is
// followed only until it is 5 minutes (and the 2 s a clock may be off
// unnoticed) off the gate's own: each answer
// used to move the anchor, and it was followed without bound (an outside
// recheck: 30 minutes in a month, gates restarted meanwhile stamping the
// true time).
func TestClockCreep(t *testing.T) {
	trueNow := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	nonce := []byte("sixteen byte nce")
	term := &Terminal{log: slog.New(slog.DiscardHandler), cfg: Config{Now: func() time.Time { return trueNow }}, watchClock: true}
	s := &sender{t: term, log: fare.NewTally(term.log, "test")}
	stopped := 0
	for i := range 400 {
		creep := time.Duration(i) * time.Second
		mono := time.Now()
		s.readClock(&fare.Confirmation{IssuedAt: trueNow.Add(creep), Nonce: nonce},
			&answer{nonce: nonce, sent: trueNow, received: trueNow, sentMono: mono, receivedMono: mono})
		if off := term.tapClock().Sub(trueNow); off > clockWarnAfter+clockTolerance+time.Second || off < -clockWarnAfter {
			t.Fatalf("answer %d, clearing %s ahead: taps stamped %s off the true time", i, creep, off)
		}
		if term.follow.Load() == nil && creep > clockTolerance && stopped == 0 {
			stopped = i
		}
	}
	if stopped == 0 || time.Duration(stopped)*time.Second <= clockWarnAfter {
		t.Fatalf("stopped following at answer %d, want just past %s of creep", stopped, clockWarnAfter)
	}
}

// TestReadClock: the answer to the gate's own request sets its tap clock
// only when it echoes the request's nonce; an answer replayed from before
// (another nonce, or none) shows the offset and moves no tap's date.
func TestReadClock(t *testing.T) {
	clearingNow := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	nonce := []byte("sixteen byte nce")
	for _, tc := range []struct {
		name      string
		gateAhead time.Duration
		echo      []byte
		rtt       time.Duration
		want      time.Duration
	}{
		{"bound, 3 minutes ahead", 3 * time.Minute, nonce, 40 * time.Millisecond, 3 * time.Minute},
		{"bound, 90 s behind", -90 * time.Second, nonce, 40 * time.Millisecond, -90 * time.Second},
		{"bound, in time", 300 * time.Millisecond, nonce, 40 * time.Millisecond, 0},
		{"bound, 3 hours ahead: shown, not followed", 3 * time.Hour, nonce, 40 * time.Millisecond, 0},
		{"another request's answer", 3 * time.Minute, []byte("another nonce.."), 40 * time.Millisecond, 0},
		{"an answer without a nonce", 3 * time.Minute, nil, 40 * time.Millisecond, 0},
		{"received before sent (the gate's clock stepped)", 3 * time.Minute, nonce, -time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Clearing answered half way through the round trip.
			sent := clearingNow.Add(tc.gateAhead - tc.rtt/2)
			received := sent.Add(tc.rtt)
			term := &Terminal{log: slog.New(slog.DiscardHandler), cfg: Config{Now: func() time.Time { return received }}}
			s := &sender{t: term, log: fare.NewTally(term.log, "test")}
			mono := time.Now()
			s.readClock(&fare.Confirmation{IssuedAt: clearingNow, Nonce: tc.echo}, &answer{nonce: nonce, sent: sent, received: received, sentMono: mono.Add(-tc.rtt), receivedMono: mono})
			if got := term.ClockCorrection(); (got - tc.want).Abs() > time.Millisecond {
				t.Errorf("correction %s, want %s", got, tc.want)
			}
			if off := term.ClockOffset(); (off - tc.gateAhead).Abs() > tc.rtt.Abs() {
				t.Errorf("offset shown %s, want %s within the round trip", off, tc.gateAhead)
			}
		})
	}
}

// stepWall is now, a time.Now() value, with its wall reading moved by secs
// seconds and its monotonic reading kept: what time.Now() returns after
// the system's wall clock is stepped. (time.Time has no API for it; the
// layout is checked by TestStepWall.)
func stepWall(now time.Time, secs int64) time.Time {
	type timeLayout struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	p := (*timeLayout)(unsafe.Pointer(&now))
	if p.wall&(1<<63) == 0 {
		panic("stepWall: no monotonic reading")
	}
	p.wall = uint64(int64(p.wall) + secs<<30)
	return now
}

func TestStepWall(t *testing.T) {
	a := time.Now()
	b := stepWall(time.Now(), -3600)
	if d := b.Round(0).Sub(a.Round(0)); (d + time.Hour).Abs() > time.Second {
		t.Fatalf("wall moved %s, want -1h", d)
	}
	if d := b.Sub(a); d < 0 || d > time.Second {
		t.Fatalf("monotonic moved %s, want none", d)
	}
}

// TestClockStepOnSystemClock: a gate on the system clock (Config.Now
// unset: time.Now, whose values carry a monotonic reading) whose wall
// clock is stepped an hour back after clearing's answer flags the step at
// its next tap, as one whose clock gives wall readings only does (an
// outside recheck saw the system-clock gate never flag it, stamping the
// step for ten minutes and charging each ride a maximum fare).
func TestClockStepOnSystemClock(t *testing.T) {
	for _, wallOnly := range []bool{false, true} {
		var step int64
		now := func() time.Time {
			n := stepWall(time.Now(), step)
			if wallOnly {
				n = n.Round(0)
			}
			return n
		}
		term := &Terminal{log: slog.New(slog.DiscardHandler), cfg: Config{Now: now}, watchClock: true}
		s := &sender{t: term, log: fare.NewTally(term.log, "test")}
		nonce := []byte("sixteen byte nce")
		ans := &answer{nonce: nonce}
		ans.sent, ans.sentMono = now(), time.Now()
		issued := time.Now().Round(0) // clearing in time; from the wire: no monotonic reading
		ans.received, ans.receivedMono = now(), time.Now()
		s.readClock(&fare.Confirmation{IssuedAt: issued, Nonce: nonce}, ans)
		if term.follow.Load() != nil || term.kept.Load() == nil {
			t.Fatalf("wall only %v: following %v, anchor %v", wallOnly, term.follow.Load() != nil, term.kept.Load())
		}
		term.tapClock()
		if term.clockJumped.Load() {
			t.Fatalf("wall only %v: flagged before any step", wallOnly)
		}
		step = -3600
		term.tapClock()
		if !term.clockJumped.Load() {
			t.Errorf("wall only %v: a step of the wall clock an hour back not flagged at the next tap", wallOnly)
		}
	}
}
