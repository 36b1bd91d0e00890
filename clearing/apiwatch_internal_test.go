package clearing

import (
	"bytes"
	"log/slog"
	"strings"
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

// TestReplayBarNamesItsBound: the line naming a replaying terminal gives
// the bound it went over, one sequence's or the total's, and its reason;
// a terminal is named once a window of clearing's time, and again in the
// next; replays of an event not read (sequence 0) count in the total only.
func TestReplayBarNamesItsBound(t *testing.T) {
	sent := time.Now()
	tests := []struct {
		name   string
		seqs   func(i int) uint64 // the i-th replay's sequence
		copies int
		want   []string // in the one line logged
	}{
		{"one sequence", func(int) uint64 { return 7 }, replaySeqBudget + 5,
			[]string{"over=20", "sequence 7", "over 20 times within 10s"}},
		{"many sequences", func(i int) uint64 { return uint64(i + 1) }, 45,
			[]string{"over=30", "over 30 found already applied"}},
		{"events not read", func(int) uint64 { return 0 }, 45,
			[]string{"over=30", "over 30 found already applied"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logged bytes.Buffer
			c := &Clearing{log: slog.New(slog.NewTextHandler(&logged, nil)), cfg: Config{FlooderBar: -1, replayBudget: 30}}
			for i := range tc.copies {
				c.noteReplay("t1", tc.seqs(i), sent)
			}
			lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
			if len(lines) != 1 || lines[0] == "" {
				t.Fatalf("%d lines logged, want 1:\n%s", len(lines), logged.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("the line does not say %q:\n%s", w, lines[0])
				}
			}
			if !strings.Contains(lines[0], "terminal=t1") {
				t.Errorf("the line does not name the terminal:\n%s", lines[0])
			}
		})
	}
	// Under both bounds: nothing named.
	var logged bytes.Buffer
	c := &Clearing{log: slog.New(slog.NewTextHandler(&logged, nil)), cfg: Config{FlooderBar: -1, replayBudget: 30}}
	for i := range 30 {
		c.noteReplay("t1", uint64(i%3+1), sent)
	}
	if logged.Len() != 0 {
		t.Errorf("30 replays of 3 sequences named the terminal: %s", logged.String())
	}
	// Named once a window of clearing's time, and again in the next.
	var r replayCounts
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	named := 0
	for i := range 3 * replaySeqBudget {
		if why, _ := r.note("t1", 7, now, now.Add(time.Duration(i)*time.Millisecond), replayBudget); why != "" {
			named++
		}
	}
	if named != 1 {
		t.Errorf("named %d times in one window, want 1", named)
	}
	next := now.Add(apiWindow)
	for i := range replaySeqBudget + 1 {
		if why, over := r.note("t1", 7, next, next, replayBudget); (why != "") != (i == replaySeqBudget) || (why != "" && over != replaySeqBudget) {
			t.Fatalf("the next window, copy %d: %q over %d", i+1, why, over)
		}
	}
}
