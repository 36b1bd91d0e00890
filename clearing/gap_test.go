package clearing_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// TestExternalNATSAndGaps runs clearing against a NATS server it did not
// start (the --nats URL path), and checks gap detection: sequences 1 and 3
// leave the watermark at 1 until 2 arrives.
func TestExternalNATSAndGaps(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	users, _ := clearing.NATSUsers(registered(reg), testClearingUser(), clearing.Verifiers{})
	srv, err := clearing.StartEmbeddedNATS(clearing.EmbeddedOptions{Dir: filepath.Join(dir, "external-nats"), Host: "127.0.0.1", Port: -1, Users: users, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSURL: srv.ClientURL(), Registry: reg, Ledger: led, Period: time.Hour})
	defer cl.stop(t)

	nc := terminalConn(t, srv.ClientURL(), keys["t1"], "t1")
	defer nc.Close()
	send := func(seq uint64) {
		t.Helper()
		ev := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: "t1", Operator: "metro", Stop: "stop-t1", Gate: "g1",
			Direction: fare.Validate, Media: fare.Card, MediaToken: "c", DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: seq}
		raw, _ := fare.Sign(&ev, keys["t1"])
		publishEvent(t, nc, fare.EventSubject("metro", "t1"), raw)
	}
	send(1)
	send(3)
	waitFor(t, "two events applied", 10*time.Second, func() bool { return cl.Stats().Applied == 2 })
	hi, _ := cl.Store().HighestSequence("t1")
	if w := cl.TerminalWatermark("t1"); w != 1 || hi != 3 {
		t.Fatalf("with sequence 2 missing: watermark %d, highest %d; want 1, 3", w, hi)
	}
	send(2)
	waitFor(t, "gap filled", 10*time.Second, func() bool { return cl.TerminalWatermark("t1") == 3 })
	checkBooks(t, cl.Store(), map[string]fare.Amount{"metro": 750})
	// A sequence a million ahead (a terminal's bug, or its key misused) is
	// quarantined, not applied: it would open a gap no resend could fill.
	send(3 + clearing.MaxSequenceJump + 1)
	waitFor(t, "the far sequence quarantined", 10*time.Second, func() bool {
		return cl.Stats().QuarantineByWhy[clearing.ReasonSequenceAhead] == 1
	})
	send(4)
	waitFor(t, "the next sequence applied", 10*time.Second, func() bool { return cl.TerminalWatermark("t1") == 4 })
	if hi, _ := cl.Store().HighestSequence("t1"); hi != 4 || cl.Stats().Applied != 4 {
		t.Fatalf("after a sequence far ahead: highest %d, applied %d; want 4, 4", hi, cl.Stats().Applied)
	}
	// Jumps are bounded from the watermark: one just under the bound is
	// applied (a gap, reported), a second just under it from there, which
	// used to be applied too and chain to any sequence, is quarantined.
	send(4 + clearing.MaxSequenceJump)
	waitFor(t, "the jump within the bound applied", 10*time.Second, func() bool { return cl.Stats().Applied == 5 })
	send(4 + clearing.MaxSequenceJump + 100)
	waitFor(t, "the chained jump quarantined", 10*time.Second, func() bool {
		return cl.Stats().QuarantineByWhy[clearing.ReasonSequenceAhead] == 2
	})
	if hi, _ := cl.Store().HighestSequence("t1"); hi != 4+clearing.MaxSequenceJump || cl.TerminalWatermark("t1") != 4 {
		t.Fatalf("after a chained jump: highest %d, watermark %d; want %d, 4", hi, cl.TerminalWatermark("t1"), 4+clearing.MaxSequenceJump)
	}

	// Clearing's own event stream as an earlier build made it, with publish
	// acks on: a restart turns them off rather than refusing the stream.
	cl.stop(t)
	admin := adminConn(t, srv.ClientURL())
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	ctx := context.Background()
	st, err := ajs.Stream(ctx, fare.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	old := st.CachedInfo().Config
	old.NoAck = false
	if _, err := ajs.UpdateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	// And its quarantine stream without the verifier partitions' subjects
	// (before 2026-12-05): the restart adds them.
	qs, err := ajs.Stream(ctx, fare.QuarantineStream)
	if err != nil {
		t.Fatal(err)
	}
	oldQ := qs.CachedInfo().Config
	oldQ.Subjects = []string{fare.QuarantineSubject}
	if _, err := ajs.UpdateStream(ctx, oldQ); err != nil {
		t.Fatal(err)
	}
	cl = startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSURL: srv.ClientURL(), Registry: reg, Ledger: led, Period: time.Hour})
	defer cl.stop(t)
	if st, err = ajs.Stream(ctx, fare.EventStream); err != nil || !st.CachedInfo().Config.NoAck {
		t.Fatalf("clearing's own stream after a restart: no_ack %v, %v; want acks turned off", err == nil && st.CachedInfo().Config.NoAck, err)
	}
	if qs, err = ajs.Stream(ctx, fare.QuarantineStream); err != nil || !slices.Contains(qs.CachedInfo().Config.Subjects, fare.QuarantineSubject+".>") {
		t.Fatalf("clearing's own quarantine stream after a restart: %v, %v; want the partitions' subjects added", err, qs.CachedInfo().Config.Subjects)
	}
}

// TestOperatorEventStreamNamedWhole: an event stream an operator made with
// other settings than clearing needs, and another partitioning, is refused
// naming every difference, not only the partitioning (whose advice, to
// drain it, would not help).
func TestOperatorEventStreamNamedWhole(t *testing.T) {
	dir := t.TempDir()
	reg, _ := testRegistry(2)
	_, pub := verifierSeed(t)
	users, _ := clearing.NATSUsers(registered(reg), testClearingUser(), clearing.Verifiers{})
	srv, err := clearing.StartEmbeddedNATS(clearing.EmbeddedOptions{Dir: filepath.Join(dir, "external-nats"), Host: "127.0.0.1", Port: -1, Users: users, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	admin := adminConn(t, srv.ClientURL())
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	if _, err := ajs.CreateStream(context.Background(), jetstream.StreamConfig{Name: fare.EventStream, Subjects: []string{fare.EventSubjects}, Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy}); err != nil {
		t.Fatal(err)
	}
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	cl, err := clearing.Open(context.Background(), clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSURL: srv.ClientURL(), NATSSeedFile: clearingSeedFile(t),
		Registry: reg, Ledger: led, Period: time.Hour, Logger: quietLogger(), VerifierPartitions: 2,
		VerifierKeys: []clearing.VerifierKey{{Partition: 0, Key: pub}, {Partition: 1, Key: pub}}})
	if err == nil {
		cl.Close()
	}
	if !errors.Is(err, clearing.ErrStreamMismatch) || !strings.Contains(err.Error(), "retention Limits, clearing needs Interest") || !strings.Contains(err.Error(), "partitioned for") {
		t.Fatalf("%v, want ErrStreamMismatch naming the retention and the partitioning", err)
	}
	// Refused before clearing made any stream of its own (an outside
	// review found the quarantine stream left by such a start).
	for _, name := range []string{fare.QuarantineStream, clearing.VerifiedStream} {
		if _, err := ajs.Stream(context.Background(), name); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("stream %s after the refused start: %v, want none", name, err)
		}
	}
}
