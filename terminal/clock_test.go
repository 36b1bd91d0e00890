package terminal

import (
	"log/slog"
	"testing"
	"time"

	"github.com/faregate/faregate/fare"
)

// TestFollowClock: a gate follows clearing's clock only when its own is
// provably off (beyond half the round trip and clockTolerance) and by no
// more than clockWarnAfter; a clock off by hours or days is broken, not
// drifting, and is shown rather than followed.
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
			s.readClock(&fare.Confirmation{IssuedAt: clearingNow, Nonce: tc.echo}, &answer{nonce: nonce, sent: sent, received: received, receivedMono: time.Now()})
			if got := term.ClockCorrection(); (got - tc.want).Abs() > time.Millisecond {
				t.Errorf("correction %s, want %s", got, tc.want)
			}
			if off := term.ClockOffset(); (off - tc.gateAhead).Abs() > tc.rtt.Abs() {
				t.Errorf("offset shown %s, want %s within the round trip", off, tc.gateAhead)
			}
		})
	}
}
