package clearing_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// TestDenyListReachesTerminals: clearing lists and unlists media; running
// terminals follow at once, a terminal that was off catches up when it comes
// back, and a terminal with no NATS at all decides from its stored copy.
// Terminals may watch the list but not write it, nor read any other stream.
func TestDenyListReachesTerminals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour})
	defer cl.stop(t)
	url := cl.NATSURL()

	t1 := startTerminal(t, dir, url, reg, keys, "t1")
	defer t1.stop(t)
	t2 := startTerminal(t, dir, url, reg, keys, "t2")
	for _, rt := range []*runningTerminal{t1, t2} {
		waitFor(t, "deny list synced", 10*time.Second, func() bool { ok, _ := rt.DenyListSynced(); return ok })
	}
	decision := func(rt *runningTerminal, m fare.MediaKind, token string) fare.Decision {
		t.Helper()
		ev, err := rt.Tap(ctx, terminal.Tap{Gate: "g1", Direction: fare.Entry, Media: m, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return ev.Decision
	}
	if err := cl.Deny(ctx, fare.Card, "stolen-1", "debt"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Deny(ctx, fare.Face, "subject-9", "debt"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "t1 follows the list", 10*time.Second, func() bool { _, n := t1.DenyListSynced(); return n == 2 })
	for _, tc := range []struct {
		m     fare.MediaKind
		token string
		want  fare.Decision
	}{
		{fare.Card, "stolen-1", fare.Denied}, {fare.Face, "subject-9", fare.Denied},
		{fare.Card, "good-1", fare.Accepted}, {fare.Card, "subject-9", fare.Accepted},
	} {
		if got := decision(t1, tc.m, tc.token); got != tc.want {
			t.Errorf("%s %s at t1: %s, want %s", tc.m, tc.token, got, tc.want)
		}
	}

	// t2 is off while the list changes; back, it catches up.
	t2.stop(t)
	if err := cl.Deny(ctx, fare.Card, "stolen-2", "debt"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Undeny(ctx, fare.Card, "stolen-1"); err != nil {
		t.Fatal(err)
	}
	t2 = startTerminal(t, dir, url, reg, keys, "t2")
	waitFor(t, "t2 caught up", 10*time.Second, func() bool {
		ok, n := t2.DenyListSynced()
		return ok && n == 2
	})
	if decision(t2, fare.Card, "stolen-2") != fare.Denied || decision(t2, fare.Card, "stolen-1") != fare.Accepted {
		t.Error("t2 after catching up: stolen-2 not denied or stolen-1 still denied")
	}
	t2.stop(t)
	// No NATS at all: the stored copy decides.
	offline := startTerminalWith(t, dir, "nats://127.0.0.1:1", reg, keys, "t2", func(*terminal.Config) {})
	if _, n := offline.DenyListSynced(); n != 2 || decision(offline, fare.Card, "stolen-2") != fare.Denied {
		t.Errorf("offline terminal: %d media listed, stolen-2 not denied", n)
	}
	offline.stop(t)

	list, err := cl.DenyList(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("deny list: %v, %v", list, err)
	}
	for _, e := range list {
		if e.Key == "stolen-2" || e.Reason != "debt" || e.Since.IsZero() {
			t.Errorf("deny entry %+v", e)
		}
	}

	// A terminal may watch the list, not write it or read other streams.
	nc := terminalConn(t, url, keys["t1"], "t1")
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	kv, err := js.KeyValue(cctx, fare.DenyBucket)
	if err != nil {
		t.Fatalf("terminal opening the deny list: %v", err)
	}
	if _, err := kv.Put(cctx, fare.DenyKey(fare.Card, "victim"), []byte("{}")); err == nil {
		t.Error("a terminal wrote the deny list")
	}
	if err := kv.Delete(cctx, fare.DenyKey(fare.Card, "stolen-2")); err == nil {
		t.Error("a terminal deleted from the deny list")
	}
	if _, err := js.OrderedConsumer(cctx, fare.EventStream, jetstream.OrderedConsumerConfig{}); err == nil {
		t.Error("a terminal made a consumer on the event stream")
	}
	if _, err := js.OrderedConsumer(cctx, fare.QuarantineStream, jetstream.OrderedConsumerConfig{}); err == nil {
		t.Error("a terminal made a consumer on the quarantine stream")
	}
	if _, n := t1.DenyListSynced(); n != 2 {
		t.Errorf("after the terminal's attempts t1 lists %d media, want 2", n)
	}
}
