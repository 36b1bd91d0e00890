package clearing

import (
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/faregate/faregate/fare"
)

// TestFlooderBars: a flooding terminal is refused for the base bar, twice
// as long at each repeat within a day, never more than an hour, and not
// after its bar.
func TestFlooderBars(t *testing.T) {
	var w apiWatch
	now := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	// Each bar within a day of the last doubles, up to an hour.
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour} {
		at := now.Add(time.Duration(i) * time.Hour)
		if got := w.bar("t1", at, time.Minute).Sub(at); got != want {
			t.Errorf("bar %d: %s, want %s", i+1, got, want)
		}
	}
	// A day without one: the next is the base bar again (an honest gate
	// caught once a week is not barred for an hour).
	later := now.Add(8*time.Hour + flooderMemory + time.Minute)
	if got := w.bar("t1", later, time.Minute).Sub(later); got != time.Minute {
		t.Errorf("a bar after a day without one: %s, want a minute", got)
	}
	w.bar("t2", later, time.Minute)
	if b := w.barred(later.Add(30 * time.Second)); !b["t1"] || !b["t2"] {
		t.Errorf("barred half a minute on: %v", b)
	}
	if b := w.barred(later.Add(2 * time.Minute)); b["t1"] || b["t2"] {
		t.Errorf("barred two minutes on: %v, want none", b)
	}
}

// TestJunkCounted: only what a misused key sends counts towards its junk
// bar: an honest gate's events held or refused for its clock, sequence or
// stop (re-sent every round) do not, nor what a verifier forwarded.
func TestJunkCounted(t *testing.T) {
	msg := func(reason, subject string) *nats.Msg {
		m := nats.NewMsg(fare.QuarantineSubject)
		m.Header.Set(fare.HeaderReason, reason)
		m.Header.Set(quarantineSubjectHeader, subject)
		return m
	}
	for _, tc := range []struct {
		reason, subject string
		flagged         bool
	}{
		{ReasonMalformed, fare.EventSubject("metro", "t1"), true},
		{ReasonBadSignature, fare.EventSubject("metro", "t1"), true},
		{ReasonSubjectMismatch, "faregate.events.2.metro.t1", true},
		{ReasonDeviceTimeAhead, fare.EventSubject("metro", "t1"), false},
		{ReasonSequenceAhead, fare.EventSubject("metro", "t1"), false},
		{ReasonStopMismatch, fare.EventSubject("metro", "t1"), false},
		{ReasonMalformed, "faregate.verified.1.metro.t1", false},
	} {
		c := &Clearing{log: slog.New(slog.DiscardHandler), cfg: Config{FlooderBar: -1}}
		for range quarantineBudget + 1 {
			c.countJunk(msg(tc.reason, tc.subject))
		}
		if got := c.apiCalls.flooders()["t1"] > 0; got != tc.flagged {
			t.Errorf("%s on %s: flagged %v, want %v", tc.reason, tc.subject, got, tc.flagged)
		}
	}
}

// TestReplaysCounted: a terminal's own signed events quarantined for a
// sequence or id clearing already holds others under count towards the
// replay budget, far above junk's (an honest gate restored from a backup
// sends some), and name the terminal once over it.
func TestReplaysCounted(t *testing.T) {
	for _, reason := range []string{ReasonSequenceConflict, ReasonSequenceReplayed, ReasonEventIDTaken} {
		m := nats.NewMsg(fare.QuarantineSubject)
		m.Header.Set(fare.HeaderReason, reason)
		m.Header.Set(quarantineSubjectHeader, fare.EventSubject("metro", "t1"))
		m.Header.Set(sentHeader, "2026-12-06T09:00:00Z")
		c := &Clearing{log: slog.New(slog.DiscardHandler), cfg: Config{FlooderBar: -1}}
		for range quarantineBudget + 1 {
			c.countJunk(m)
		}
		if c.apiCalls.flooders()["t1"] != 0 {
			t.Errorf("%s: named at junk's budget", reason)
		}
		for range replayBudget - quarantineBudget {
			c.countJunk(m)
		}
		if c.apiCalls.flooders()["t1"] != 1 {
			t.Errorf("%s: not named over the replay budget", reason)
		}
	}
}

// TestReplayedSeqCountedBySendTime: one sequence sent again more than
// replaySeqBudget times within a window of send time names its terminal,
// once a window; an honest gate's probes of an hour's outage, one a
// minute, met by clearing all at once when it is back, do not; nor do
// replays of other sequences or terminals beside a flooded one.
func TestReplayedSeqCountedBySendTime(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	var probes replayCounts
	for i := range 60 {
		if why, _ := probes.note("t1", 7, now.Add(time.Duration(i-60)*time.Minute), now, replayBudget); why != "" {
			t.Fatalf("probe %d of an hour's outage named the gate: %s", i+1, why)
		}
	}
	var flood replayCounts
	for i := range replaySeqBudget + 5 {
		why, over := flood.note("t1", 7, now.Add(time.Duration(i)*time.Millisecond), now, replayBudget)
		if (why != "") != (i == replaySeqBudget) || (why != "" && over != replaySeqBudget) {
			t.Fatalf("copy %d sent within a second: %q over %d", i+1, why, over)
		}
	}
	if why, _ := flood.note("t1", 8, now, now, replayBudget); why != "" {
		t.Fatal("another sequence of the flooded terminal named it again in the window")
	}
	if why, _ := flood.note("t2", 7, now, now, replayBudget); why != "" {
		t.Fatal("another terminal named with the flooded one")
	}
	// The total, by send time too: a round of 300 events resent, met with
	// 10 more rounds' copies at once, under a total of 1,000 a window.
	var rounds replayCounts
	for r := range 10 {
		for seq := range uint64(300) {
			if why, _ := rounds.note("t1", seq+1, now.Add(time.Duration(r)*3*apiWindow), now, 1000); why != "" {
				t.Fatalf("round %d, sequence %d: %s", r, seq+1, why)
			}
		}
	}
}
