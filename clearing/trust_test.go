package clearing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// openIdle opens clearing (NATS and streams up) without running it: events
// wait in the stream unconsumed, as while clearing is down.
func openIdle(t *testing.T, dir string, reg *clearing.Registry, cfg clearing.Config) (*clearing.Clearing, func()) {
	t.Helper()
	led := openLedger(t, filepath.Join(dir, "chain"))
	cfg.DataDir, cfg.NATSPort, cfg.Registry, cfg.Ledger = filepath.Join(dir, "clearing"), -1, reg, led
	cfg.ConfirmKey, cfg.NATSSeedFile, cfg.Period = testConfirmKey, clearingSeedFile(t), time.Hour
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	publish(t, cfg)
	cl, err := clearing.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl, func() { cl.Close(); led.Close() }
}

// runIdle runs an idle clearing until the returned stop is called.
func runIdle(t *testing.T, cl *clearing.Clearing) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("clearing run: %v", err)
		}
	}
}

func auditClean(t *testing.T, cl *clearing.Clearing) *clearing.AuditReport {
	t.Helper()
	rep, err := cl.Store().Audit(context.Background(), cl.Ledger(), clearing.AuditOptions{Terminals: cl.Terminals()})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestForgedConfirmationsLoseNothing replays the attacks of issue 9: a
// client telling terminal t1 that events clearing never received are
// applied, by publishing on t1's confirmation subject or answering t1's
// request for one. Anonymous and other terminals cannot even send them; a
// party with full broker access (a compromised NATS) can, and t1 ignores
// every one that clearing did not sign for exactly its outbox.
func TestForgedConfirmationsLoseNothing(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	cl, closeAll := openIdle(t, dir, reg, clearing.Config{})
	defer closeAll()
	url := cl.NATSURL()
	t1 := startTerminal(t, dir, url, reg, keys, "t1")
	defer t1.stop(t)
	for i := range 5 {
		tap(t, t1.Terminal, fmt.Sprintf("card-%d", i), fare.Entry)
	}
	waitFor(t, "five events published", 10*time.Second, func() bool { return t1.Published() >= 5 })

	// Anonymous: no connection at all.
	if nc, err := nats.Connect(url, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("anonymous client connected")
	}
	// Another terminal: refused by NATS permissions, both ways.
	perm := make(chan error, 8)
	t2 := terminalConn(t, url, keys["t2"], "t2", nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { perm <- err }))
	defer t2.Close()
	_ = t2.Publish(fare.AppliedSubject("t1"), []byte("31"))
	if _, err := t2.Subscribe(fare.WatermarkSubject("t1"), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	_ = t2.Flush()
	for range 2 {
		select {
		case err := <-perm:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Fatalf("t2 acting as clearing toward t1: %v, want a permission violation", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("NATS did not refuse t2 acting as clearing toward t1")
		}
	}

	// Full broker access: forged, foreign, replayed confirmations.
	admin := adminConn(t, url)
	defer admin.Close()
	_, stranger, _ := ed25519.GenerateKey(nil)
	sign := func(c fare.Confirmation, key ed25519.PrivateKey) []byte {
		b, err := c.Sign(key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	forgeries := [][]byte{
		[]byte("31"), // the original attack
		sign(fare.Confirmation{Terminal: "t1", Watermark: 5, IssuedAt: time.Now()}, stranger),                            // wrong key
		sign(fare.Confirmation{Terminal: "t2", Watermark: 5, IssuedAt: time.Now()}, testConfirmKey),                      // another terminal's
		sign(fare.Confirmation{Terminal: "t1", Watermark: 5, Digest: [32]byte{7}, IssuedAt: time.Now()}, testConfirmKey), // replayed from an earlier outbox
		sign(fare.Confirmation{Terminal: "t1", Watermark: 50, IssuedAt: time.Now()}, testConfirmKey),                     // beyond the outbox
	}
	for _, b := range forgeries {
		if err := admin.Publish(fare.AppliedSubject("t1"), b); err != nil {
			t.Fatal(err)
		}
	}
	// And answering t1's own requests before clearing does.
	sub, err := admin.Subscribe(fare.WatermarkSubject("t1"), func(m *nats.Msg) { _ = m.Respond(forgeries[1]) })
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "forged confirmations refused", 45*time.Second, func() bool { return t1.RefusedConfirmations() >= uint64(len(forgeries)) })
	// The terminal asks for its watermark once a second, and a forged
	// answer counts only when it reaches the terminal before clearing's
	// own: on an idle machine within a few asks; on a saturated one
	// clearing's in-process answer won every ask for 45 s. Either way
	// nothing is lost (checked next).
	if !waitUntil(20*time.Second, func() bool { return t1.RefusedConfirmations() >= uint64(len(forgeries)+1) }) {
		t.Logf("clearing's own answers reached t1 first for 20 s: no forged answer to refuse")
	}
	_ = sub.Unsubscribe()
	if p := t1.Pending(); p != 5 {
		t.Fatalf("after forged confirmations t1 has %d pending, want all 5", p)
	}

	// Clearing now runs: every event arrives, the outbox drains, the
	// audit is clean.
	stop := runIdle(t, cl)
	defer stop()
	waitFor(t, "t1 drained by genuine confirmations", 20*time.Second, func() bool { return t1.Pending() == 0 })
	if err := cl.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if cl.Stats().Applied != 5 {
		t.Fatalf("applied %d, want 5", cl.Stats().Applied)
	}
	if rep := auditClean(t, cl); !rep.Clean() {
		t.Fatalf("audit after the attacks: %v", rep.Mismatches)
	}
}

// TestTerminalPermissions checks each refusal from the client's side: what a
// terminal (or anyone) may not do on clearing's NATS.
func TestTerminalPermissions(t *testing.T) {
	_, _, keys, cl := startCityWith(t, 2, func(c *clearing.Config) { c.FlooderBar = 4 * time.Second })
	url := cl.NATSURL()

	_, strangerKey, _ := ed25519.GenerateKey(nil)
	for name, opts := range map[string][]nats.Option{
		"anonymous":                 nil,
		"user and password":         {nats.UserInfo("clearing", "clearing")},
		"unregistered terminal key": terminal.NATSOptions(mustIdentity(t, strangerKey, "t1"), "t1", ""),
		"t1's key claiming t2":      terminal.NATSOptions(mustIdentity(t, keys["t1"], "t2"), "t2", ""),
	} {
		nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(0))...)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
		} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: %v, want an authorization error", name, err)
		}
	}

	errs := make(chan error, 16)
	nc := terminalConn(t, url, keys["t1"], "t1", nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	defer nc.Close()
	expectViolation := func(what string, do func() error) {
		t.Helper()
		if err := do(); err != nil && !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("%s: %v", what, err)
		}
		_ = nc.Flush()
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("%s: %v, want a permission violation", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: not refused", what)
		}
	}
	sub := func(subj string) func() error {
		return func() error { _, err := nc.Subscribe(subj, func(*nats.Msg) {}); return err }
	}
	pub := func(subj string) func() error { return func() error { return nc.Publish(subj, []byte("x")) } }
	expectViolation("publish as t2", pub(fare.EventSubject("bus", "t2")))
	expectViolation("publish as t1 of another operator", pub(fare.EventSubject("bus", "t1")))
	expectViolation("publish a confirmation", pub(fare.AppliedSubject("t1")))
	expectViolation("publish to the JetStream API", pub("$JS.API.STREAM.DELETE."+fare.EventStream))
	expectViolation("publish to the quarantine", pub(fare.QuarantineSubject))
	expectViolation("read t2's confirmations", sub(fare.AppliedSubject("t2")))
	expectViolation("read every event", sub(fare.EventSubjects))
	expectViolation("read t2's inbox", sub(fare.TerminalInboxPrefix("t2")+".>"))
	expectViolation("answer t2's confirmation requests", sub(fare.WatermarkSubject("t2")))
	expectViolation("read the JetStream API", sub("$JS.API.>"))
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, fare.EventStream); err == nil {
		t.Error("t1 read the event stream's info through the JetStream API")
	}
	if err := js.DeleteStream(ctx, fare.EventStream); err == nil {
		t.Error("t1 deleted the event stream")
	}
	// What it may do still works: publish its own events, get confirmed.
	ev := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: "t1", Operator: "metro", Stop: "stop-t1", Gate: "g1",
		Direction: fare.Entry, Media: fare.Card, MediaToken: "card-1", DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: 1}
	raw, _ := fare.Sign(&ev, keys["t1"])
	publishEvent(t, nc, fare.EventSubject("metro", "t1"), raw)
	waitFor(t, "t1's own event applied", 10*time.Second, func() bool { return cl.TerminalWatermark("t1") == 1 })
	// Clearing answers only into t1's own inbox: a request naming another
	// reply subject (one t1 may not publish to) gets nothing published.
	admin := adminConn(t, url)
	defer admin.Close()
	leaked, err := admin.SubscribeSync(fare.EventSubject("bus", "t2"))
	if err != nil {
		t.Fatal(err)
	}
	_ = admin.Flush()
	if err := nc.PublishRequest(fare.WatermarkSubject("t1"), fare.EventSubject("bus", "t2"), []byte("0")); err != nil {
		t.Fatal(err)
	}
	if m, err := leaked.NextMsg(time.Second); err == nil {
		t.Fatalf("clearing answered into another terminal's event subject: %q", m.Data)
	}
	// Nor does the server: t1 publishing (an event of its own, junk, a
	// message over the stream's size limit) with t2's event subject as the
	// reply gets no publish ack or refusal stored there, one per publish,
	// to fill t2's share of the stream (the event stream sends no acks).
	ev2 := ev
	ev2.ID, ev2.Sequence = fare.NewEventID(time.Now()), 2
	raw2, _ := fare.Sign(&ev2, keys["t1"])
	for _, data := range [][]byte{raw2, []byte("junk"), bytes.Repeat([]byte("x"), 5000)} {
		if err := nc.PublishRequest(fare.EventSubject("metro", "t1"), fare.EventSubject("bus", "t2"), data); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := leaked.NextMsg(time.Second); err == nil {
		t.Fatalf("a publish of t1's put the server's answer on t2's event subject: %q", m.Data)
	}
	waitFor(t, "t1's second event applied", 10*time.Second, func() bool { return cl.TerminalWatermark("t1") == 2 })
	// Its feed requests may name any reply subject too (NATS checks no
	// reply subject), but clearing answers only into the terminal's inbox:
	// nothing reaches t2's event subject. A terminal flooding them is
	// named, for its key to be revoked.
	feedReq, _ := json.Marshal(fare.GateFeedRequest{Deliver: fare.EventSubject("bus", "t2")})
	for range 300 {
		if err := nc.PublishRequest(fare.GateFeedSubject("t1", fare.FeedDeny), fare.EventSubject("bus", "t2"), feedReq); err != nil {
			t.Fatal(err)
		}
	}
	_ = nc.Flush()
	waitFor(t, "t1 named for flooding its feed requests", 10*time.Second, func() bool { return cl.Stats().APIFlooders["t1"] >= 1 })
	if m, err := leaked.NextMsg(time.Second); err == nil {
		t.Fatalf("a feed answer t1 aimed at t2's event subject reached it: %.80q", m.Data)
	}
	if n := cl.Stats().APIFlooders["t2"]; n != 0 {
		t.Errorf("t2, the flood's target, named %d times", n)
	}
	// And refused by the server for a while (each request held in its
	// queues costs memory), while t2 goes on; then admitted again.
	refused := func(id string) bool { return natsRefuses(t, url, keys[id], id) }
	waitFor(t, "the flooding t1 refused by the NATS server", 5*time.Second, func() bool { return refused("t1") })
	if refused("t2") {
		t.Fatal("t2 refused while t1 is")
	}
	waitFor(t, "t1 admitted again after its bar", 15*time.Second, func() bool { return !refused("t1") })
	nc.Close()
	nc = terminalConn(t, url, keys["t1"], "t1")
	defer nc.Close()
	time.Sleep(250 * time.Millisecond) // past clearing's per-terminal request limit
	m, err := nc.Request(fare.WatermarkSubject("t1"), []byte("0"), 5*time.Second)
	if err != nil {
		t.Fatalf("t1 asking for its confirmation: %v", err)
	}
	c, err := fare.VerifyConfirmation(m.Data, []ed25519.PublicKey{testConfirmKey.Public().(ed25519.PublicKey)})
	if err != nil || c.Watermark != 2 || c.Digest != fare.EventDigest(raw2) {
		t.Fatalf("t1's confirmation: %+v, %v; want watermark 2 with its event's digest", c, err)
	}
}

func mustIdentity(t *testing.T, key ed25519.PrivateKey, id string) *fare.NATSIdentity {
	t.Helper()
	ident, err := fare.NewNATSIdentity(key, id)
	if err != nil {
		t.Fatal(err)
	}
	return ident
}

// TestRejectedEventDrains: a gate moved to another stop without being
// re-registered signs events clearing must refuse for good. The terminal is
// told so in signed confirmations, keeps the events in its dead-letter
// store with the reason, and drains; its good events around them apply.
func TestRejectedEventDrains(t *testing.T) {
	dir, reg, keys, cl := startCity(t, 2)

	good := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	tap(t, good.Terminal, "card-1", fare.Entry)
	tap(t, good.Terminal, "card-2", fare.Entry)
	waitFor(t, "good events applied", 10*time.Second, func() bool { return good.Pending() == 0 })
	good.stop(t)

	var logs bytes.Buffer // the gate says, once, that it is set up wrong
	moved := startTerminalWith(t, dir, cl.NATSURL(), reg, keys, "t1", func(c *terminal.Config) {
		c.Stop = "another-stop"
		c.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelError}))
	})
	for i := range 3 {
		tap(t, moved.Terminal, fmt.Sprintf("card-%d", 10+i), fare.Entry)
	}
	waitFor(t, "rejected events drained", 20*time.Second, func() bool { return moved.Pending() == 0 })
	dls, err := moved.DeadLetters()
	if err != nil {
		t.Fatal(err)
	}
	// Not ready: every tap it opens for is refused (an outside test saw
	// a revoked gate and one at the wrong stop answer ready).
	if err := moved.Ready(); err == nil || !strings.Contains(err.Error(), "another stop than --stop another-stop") || moved.RejectedEvents() != 3 {
		t.Errorf("the moved gate's readiness: %v, %d rejected; want not ready naming its stop, 3", err, moved.RejectedEvents())
	}
	moved.stop(t)
	if got := logs.String(); strings.Count(got, "clearing rejects this gate's taps for good") != 1 || !strings.Contains(got, "another stop than --stop another-stop") {
		t.Errorf("the moved gate's error log, want one line naming its stop:\n%s", got)
	}
	// Restarted as it was, it is still not ready before any new tap (an
	// outside test saw a restarted revoked gate answer ready).
	restarted := startTerminalWith(t, dir, cl.NATSURL(), reg, keys, "t1", func(c *terminal.Config) { c.Stop = "another-stop" })
	if err := restarted.Ready(); err == nil || !strings.Contains(err.Error(), "another stop than --stop another-stop") {
		t.Errorf("the moved gate restarted: readiness %v, want not ready naming its stop", err)
	}
	restarted.stop(t)
	// A rejected event sent again (its confirmation came late) is a
	// duplicate: not quarantined, not rejected, a second time.
	if len(dls) > 0 {
		raw, err := hex.DecodeString(strings.TrimPrefix(dls[0].Event, "0x"))
		if err != nil {
			t.Fatal(err)
		}
		before := cl.Stats()
		nc := terminalConn(t, cl.NATSURL(), keys["t1"], "t1")
		publishEvent(t, nc, fare.EventSubject("metro", "t1"), raw)
		nc.Close()
		waitFor(t, "the resent rejected event counted as a duplicate", 10*time.Second, func() bool { return cl.Stats().Duplicates > before.Duplicates })
		if after := cl.Stats(); after.Quarantined != before.Quarantined || after.Rejected != before.Rejected {
			t.Fatalf("a rejected event resent: quarantined %d (was %d), rejected %d (was %d)", after.Quarantined, before.Quarantined, after.Rejected, before.Rejected)
		}
	}
	if len(dls) != 3 {
		t.Fatalf("%d dead letters, want 3: %+v", len(dls), dls)
	}
	for i, dl := range dls {
		if dl.Sequence != uint64(3+i) || dl.Reason != clearing.ReasonStopMismatch || dl.Mismatch {
			t.Errorf("dead letter %d: %+v, want sequence %d, %s", i, dl, 3+i, clearing.ReasonStopMismatch)
		}
	}
	// The CLI's reader sees the same, from the closed store.
	again, err := terminal.ReadDeadLetters(filepath.Join(dir, "terminal-t1"))
	if err != nil || len(again) != 3 {
		t.Fatalf("ReadDeadLetters: %d, %v", len(again), err)
	}
	// Back at the right stop, the terminal goes on past the rejected ones.
	good = startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	defer good.stop(t)
	if ev := tap(t, good.Terminal, "card-3", fare.Entry); ev.Sequence != 6 {
		t.Fatalf("next sequence %d, want 6", ev.Sequence)
	}
	waitFor(t, "good terminal drained", 10*time.Second, func() bool { return good.Pending() == 0 })
	if err := good.Ready(); err != nil {
		t.Errorf("back at its stop, its newest tap applied: %v, want ready", err)
	}
	if s := cl.Stats(); s.Applied != 3 || s.Rejected != 3 || cl.TerminalWatermark("t1") != 6 {
		t.Fatalf("applied %d, rejected %d, watermark %d; want 3, 3, 6", s.Applied, s.Rejected, cl.TerminalWatermark("t1"))
	}
	rejections, err := cl.Store().Rejections()
	if err != nil || len(rejections) != 3 {
		t.Fatalf("store rejections %v, %v", rejections, err)
	}
	if err := cl.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rep := auditClean(t, cl.Clearing); !rep.Clean() {
		t.Fatalf("audit: %v", rep.Mismatches)
	}
	checkBooks(t, cl.Store(), map[string]fare.Amount{"metro": 750})
}

// TestLostEventFailsAudit: an event deleted from JetStream before clearing
// saw it, from a terminal that never resends (its device is gone), leaves a
// gap: the audit fails naming the terminal and the sequence, the metric and
// /v1/terminals show it. When the terminal comes back it is asked to resend
// and the gap closes.
func TestLostEventFailsAudit(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	promReg := prometheus.NewRegistry()
	cl, closeAll := openIdle(t, dir, reg, clearing.Config{Metrics: promReg, RegistryPoll: 100 * time.Millisecond})
	defer closeAll()
	url := cl.NATSURL()
	t1 := startTerminal(t, dir, url, reg, keys, "t1")
	for i := range 5 {
		tap(t, t1.Terminal, fmt.Sprintf("card-%d", i), fare.Entry)
	}
	waitFor(t, "five events published", 10*time.Second, func() bool { return t1.Published() >= 5 })
	t1.stop(t) // the device goes dark with its outbox

	admin := adminConn(t, url)
	defer admin.Close()
	js, _ := jetstream.New(admin)
	ctx := context.Background()
	st, err := js.Stream(ctx, fare.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	deleted := false
	for seq := uint64(1); seq <= 10 && !deleted; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if s, err := fare.Decode(m.Data); err == nil && s.Sequence == 3 {
			if err := st.DeleteMsg(ctx, seq); err != nil {
				t.Fatal(err)
			}
			deleted = true
		}
	}
	if !deleted {
		t.Fatal("t1's sequence 3 not found in the stream")
	}

	stop := runIdle(t, cl)
	defer stop()
	waitFor(t, "four events applied", 45*time.Second, func() bool { return cl.Stats().Applied == 4 })
	if err := cl.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	rep := auditClean(t, cl)
	found := false
	for _, m := range rep.Mismatches {
		if strings.Contains(m.Field, "t1") && strings.Contains(m.Detail, "missing 1 sequence(s): 3;") {
			found = true
		}
	}
	if !found || !rep.GapsChecked {
		t.Fatalf("audit does not name t1's lost sequence 3: %v", rep.Mismatches)
	}
	waitFor(t, "gap metric", 5*time.Second, func() bool { return gauge(t, promReg, "faregate_clearing_terminals_with_gap") == 1 })

	// The terminal comes back: clearing's confirmation shows the gap and
	// the terminal resends from it.
	t1 = startTerminal(t, dir, url, reg, keys, "t1")
	defer t1.stop(t)
	waitFor(t, "gap closed", 20*time.Second, func() bool { return t1.Pending() == 0 })
	if err := cl.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	if rep := auditClean(t, cl); !rep.Clean() {
		t.Fatalf("audit after the resend: %v", rep.Mismatches)
	}
	waitFor(t, "gap metric back to 0", 5*time.Second, func() bool { return gauge(t, promReg, "faregate_clearing_terminals_with_gap") == 0 })
}

func gauge(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += metricValue(m)
			}
			return sum
		}
	}
	return -1
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}

// TestJunkFlood: an authorised terminal gone wrong sends 10,000 junk
// messages. The streams stay within their limits, the log within a few
// summary lines, another terminal's accepted events all apply, and the
// flooder is named and refused by the server for a while once clearing
// has quarantined more than quarantineBudget of its messages in a window.
func TestJunkFlood(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	lim := clearing.Limits{EventMaxPerTerminal: 2000, QuarantineMaxMessages: 1000}
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour, Logger: log, Limits: lim})
	defer cl.stop(t)
	url := cl.NATSURL()

	good := startTerminal(t, dir, url, reg, keys, "t2")
	defer good.stop(t)
	junk := terminalConn(t, url, keys["t1"], "t1")
	defer junk.Close()
	const flood = 10_000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range flood {
			_ = junk.Publish(fare.EventSubject("metro", "t1"), []byte(fmt.Sprintf("junk %d", i)))
		}
		_ = junk.Flush()
	}()
	for i := range 50 {
		tap(t, good.Terminal, fmt.Sprintf("card-%d", i), fare.Entry)
	}
	<-done
	waitFor(t, "good terminal drained", 30*time.Second, func() bool { return good.Pending() == 0 })
	if cl.TerminalWatermark("t2") != 50 {
		t.Fatalf("t2 watermark %d, want 50", cl.TerminalWatermark("t2"))
	}
	admin := adminConn(t, url)
	defer admin.Close()
	js, _ := jetstream.New(admin)
	ctx := context.Background()
	waitFor(t, "junk consumed", 30*time.Second, func() bool {
		st, err := js.Stream(ctx, fare.EventStream)
		return err == nil && st.CachedInfo().State.Msgs == 0
	})
	q, err := js.Stream(ctx, fare.QuarantineStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := q.CachedInfo().State.Msgs; n == 0 || n > uint64(lim.QuarantineMaxMessages) {
		t.Fatalf("quarantine stream holds %d messages, want 1..%d", n, lim.QuarantineMaxMessages)
	}
	if s := cl.Stats(); s.Applied != 50 || s.Quarantined == 0 {
		t.Fatalf("applied %d, quarantined %d", s.Applied, s.Quarantined)
	}
	// t1 named and barred for its junk: the server refuses it for a while.
	waitFor(t, "t1 named and refused for its junk", 10*time.Second, func() bool {
		return cl.Stats().APIFlooders["t1"] >= 1 && natsRefuses(t, url, keys["t1"], "t1")
	})
	if natsRefuses(t, url, keys["t2"], "t2") || cl.Stats().APIFlooders["t2"] != 0 {
		t.Fatal("t2 barred beside the flooder")
	}
	lines := strings.Count(logs.String(), "\n")
	if lines > 11 {
		t.Fatalf("%d log lines for %d junk messages:\n%s", lines, flood, logs.String())
	}
	checkBooks(t, cl.Store(), map[string]fare.Amount{"bus": 50 * 180})
}

// TestReplayFlood: a stolen key replays its own validly signed events,
// with a fresh message id each time, as fast as its connection goes (an
// outside red team's flood held back four in five of another gate's taps,
// and was never named: junk's budget counts only what no honest gate
// sends). Replaying one event, it is named once that sequence comes back
// more than replaySeqBudget times in a window (a re-check's full-speed
// flood was named only after it ended, at the total budget); replaying
// many, each a few times, once its replays go over the total budget
// (lowered here, so that the test floods for seconds). Either way clearing
// applies each event once, the server refuses the thief, and the other
// terminal's events all apply, it not barred.
func TestReplayFlood(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events int    // distinct events replayed in turn
		named  string // what the log names it for
	}{
		{"one event", 1, "(sequence 1) sent again and again"},
		{"many events, each a few times", 400, "its own signed events sent again (over 5000 found already applied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			reg, keys := testRegistry(2)
			led := openLedger(t, filepath.Join(dir, "chain"))
			defer led.Close()
			var logs syncBuffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			cfg := clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour, Logger: log}
			const budget = clearing.ReplayBudget / 10
			clearing.WithReplayBudget(&cfg, budget)
			cl := startClearing(t, cfg)
			defer cl.stop(t)
			url := cl.NATSURL()

			good := startTerminal(t, dir, url, reg, keys, "t2")
			defer good.stop(t)
			rt, _ := reg.TerminalKey("t1")
			var raws [][]byte
			for seq := 1; seq <= tc.events; seq++ {
				ev := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: "t1", Operator: rt.Operator, Stop: rt.Stop, Gate: "g1",
					Direction: fare.Validate, Media: fare.Card, MediaToken: fmt.Sprintf("card-replayed-%d", seq), DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: uint64(seq)}
				raw, err := fare.Sign(&ev, keys["t1"])
				if err != nil {
					t.Fatal(err)
				}
				raws = append(raws, raw)
			}
			thief := terminalConn(t, url, keys["t1"], "t1", nats.MaxReconnects(0))
			defer thief.Close()
			flagged := func() bool { return cl.Stats().APIFlooders["t1"] >= 1 }
			deadline := time.Now().Add(60 * time.Second)
			sent := 0
			for i := 0; !flagged() && time.Now().Before(deadline); i++ {
				for range 2000 {
					m := nats.NewMsg(fare.EventSubject(rt.Operator, "t1"))
					m.Data = raws[sent%len(raws)]
					m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("replay-%d", sent))
					if thief.PublishMsg(m) != nil {
						break
					}
					sent++
				}
				if i%5 == 4 {
					tap(t, good.Terminal, fmt.Sprintf("card-%d", i), fare.Entry)
				}
				_ = thief.FlushTimeout(5 * time.Second)
			}
			if !flagged() {
				t.Fatalf("%d replays sent in 60 s: t1 not named (duplicates %d)", sent, cl.Stats().Duplicates)
			}
			waitFor(t, "t1 refused by the server", 10*time.Second, func() bool { return natsRefuses(t, url, keys["t1"], "t1") })
			if natsRefuses(t, url, keys["t2"], "t2") || cl.Stats().APIFlooders["t2"] != 0 {
				t.Fatal("t2 barred beside the flooder")
			}
			waitFor(t, "good terminal drained", 30*time.Second, func() bool { return good.Pending() == 0 })
			if w := cl.TerminalWatermark("t1"); w != uint64(tc.events) {
				t.Fatalf("t1 watermark %d, want its %d events applied once", w, tc.events)
			}
			if !strings.Contains(logs.String(), tc.named) || !strings.Contains(logs.String(), "terminal=t1") {
				t.Fatalf("the flooder not named for %q in the log:\n%s", tc.named, logs.String())
			}
		})
	}
}

// TestConfirmKeyRotation: clearing's confirmation key is replaced while a
// terminal provisioned with the old one is in service. The terminal learns
// the new key from the signed rotation carried with its confirmations,
// refuses nothing genuine, keeps the key across a restart, and refuses a
// rotation nobody it trusts signed.
func TestConfirmKeyRotation(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	dataDir := filepath.Join(dir, "clearing")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, clearing.ConfirmKeyFile), []byte(hex.EncodeToString(testConfirmKey.Seed())), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := clearing.Config{DataDir: dataDir, Registry: reg, Ledger: led, Period: time.Hour, NATSPort: freePort(t)}
	cl := startClearing(t, cfg)
	t1 := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	tap(t, t1.Terminal, "card-1", fare.Entry)
	waitFor(t, "drained under the first key", 10*time.Second, func() bool { return t1.Pending() == 0 })
	// Not while clearing runs: it would sign with the old key while
	// `clearing key` printed the new one (an outside test set up a gate
	// from it, which refused every confirmation as forged).
	if _, _, err := clearing.RotateConfirmKey(dataDir, time.Now()); err == nil || !strings.Contains(err.Error(), "is open (clearing is running") {
		t.Fatalf("rotation while clearing runs: %v, want refused", err)
	}
	if k, err := clearing.LoadConfirmKey(dataDir, false); err != nil || !k.Equal(testConfirmKey) {
		t.Fatalf("the key after a refused rotation: %v", err)
	}
	cl.stop(t)

	oldKey, newKey, err := clearing.RotateConfirmKey(dataDir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !oldKey.Equal(testConfirmKey.Public().(ed25519.PublicKey)) || newKey.Equal(oldKey) {
		t.Fatal("rotation did not replace the key")
	}
	next, err := fare.LoadOrCreateKey(filepath.Join(dataDir, clearing.ConfirmKeyFile), "key")
	if err != nil || !next.Public().(ed25519.PublicKey).Equal(newKey) {
		t.Fatalf("new key file: %v", err)
	}
	// A key that is not the chain's end is refused at start.
	bad := cfg
	bad.ConfirmKey = testConfirmKey
	bad.NATSSeedFile = clearingSeedFile(t)
	if _, err := clearing.Open(context.Background(), bad); err == nil || !strings.Contains(err.Error(), clearing.ConfirmRotationsFile) {
		t.Fatalf("clearing with a key off the rotation chain: %v", err)
	}

	cfg.ConfirmKey = next
	cl = startClearing(t, cfg)
	defer cl.stop(t)
	for i := range 3 {
		tap(t, t1.Terminal, fmt.Sprintf("card-%d", 10+i), fare.Entry)
	}
	waitFor(t, "drained under the rotated key", 10*time.Second, func() bool { return t1.Pending() == 0 })
	if n := t1.RefusedConfirmations(); n != 0 {
		t.Fatalf("terminal refused %d genuine confirmations across the rotation", n)
	}

	// A rotation signed by a stranger, bundled with a confirmation under
	// the stranger's new key, deletes nothing.
	tap(t, t1.Terminal, "card-20", fare.Entry)
	t1.stop(t)
	t1 = startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	defer t1.stop(t)
	// The old key is retired: after the restart (provisioned with it
	// still) the terminal trusts the new key alone.
	trusted := t1.ClearingKeys()
	if len(trusted) != 1 || !trusted[0].Equal(newKey) {
		t.Fatalf("after a restart the terminal trusts %d keys, want only the learnt one", len(trusted))
	}
	old, _ := (&fare.Confirmation{Terminal: "t1", From: 4, Watermark: 5, IssuedAt: time.Now()}).Sign(testConfirmKey)
	waitFor(t, "the real event confirmed", 10*time.Second, func() bool { return t1.Pending() == 0 })
	_, stranger, _ := ed25519.GenerateKey(nil)
	_, strangerNext, _ := ed25519.GenerateKey(nil)
	rot, _ := (&fare.KeyRotation{NewKey: strangerNext.Public().(ed25519.PublicKey), IssuedAt: time.Now()}).Sign(stranger)
	conf, _ := (&fare.Confirmation{Terminal: "t1", From: 4, Watermark: 5, IssuedAt: time.Now()}).Sign(strangerNext)
	admin := adminConn(t, cl.NATSURL())
	defer admin.Close()
	if err := admin.Publish(fare.AppliedSubject("t1"), fare.Bundle([][]byte{rot}, conf)); err != nil {
		t.Fatal(err)
	}
	if err := admin.Publish(fare.AppliedSubject("t1"), old); err != nil { // signed by the retired key
		t.Fatal(err)
	}
	// The stranger's link is passed over (no trusted key signed it); the
	// confirmation under its key and the one under the retired key are refused.
	waitFor(t, "forged rotation and retired key refused", 10*time.Second, func() bool { return t1.RefusedConfirmations() >= 2 })
	if len(t1.ClearingKeys()) != 1 || cl.TerminalWatermark("t1") != 5 {
		t.Fatalf("t1 watermark %d, want 5", cl.TerminalWatermark("t1"))
	}
	// A terminal provisioned with both keys retires the old one as soon as
	// it sees the link: the old key can sign nothing it acts on any more.
	t2 := startTerminalWith(t, dir, cl.NATSURL(), reg, keys, "t2", func(c *terminal.Config) {
		c.ClearingKeys = []ed25519.PublicKey{testConfirmKey.Public().(ed25519.PublicKey), newKey}
	})
	defer t2.stop(t)
	tap(t, t2.Terminal, "card-30", fare.Entry)
	waitFor(t, "t2 drained", 10*time.Second, func() bool { return t2.Pending() == 0 })
	if k := t2.ClearingKeys(); len(k) != 1 || !k[0].Equal(newKey) {
		t.Fatalf("t2 provisioned with old and new key still trusts %d keys", len(k))
	}
}

// TestConfirmKeyFiles: a rotation interrupted after its chain was written is
// finished at the next load; a lost key beside a rotation chain is an error,
// never silently replaced by a fresh one terminals would not trust.
func TestConfirmKeyFiles(t *testing.T) {
	dir := t.TempDir()
	first, err := clearing.LoadConfirmKey(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := clearing.LoadConfirmKey(dir, true); err != nil || !again.Equal(first) {
		t.Fatalf("second load: %v", err)
	}
	_, newKey, err := clearing.RotateConfirmKey(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, clearing.ConfirmKeyFile)
	// Interrupted before the final rename: the new key still waits in
	// confirm.key.new and confirm.key holds the old one.
	if err := os.Rename(key, key+".new"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte(hex.EncodeToString(first.Seed())), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := clearing.LoadConfirmKey(dir, true)
	if err != nil || !got.Public().(ed25519.PublicKey).Equal(newKey) {
		t.Fatalf("interrupted rotation not finished: %v", err)
	}
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if _, err := clearing.LoadConfirmKey(dir, true); err == nil || !strings.Contains(err.Error(), "restored, not replaced") {
		t.Fatalf("lost key beside a rotation chain: %v", err)
	}
	if _, _, err := clearing.RotateConfirmKey(t.TempDir(), time.Now()); err == nil {
		t.Fatal("rotated a key that was never made")
	}
}

// syncWriter serialises writes to w: a logger shared by goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestFarFutureTapHeld: a gate whose clock runs a few hours ahead has its
// taps applied; a tap dated more than Config.MaxDeviceTimeAhead ahead of
// clearing's fare clock is quarantined as device-time-ahead and not
// recorded: the gate keeps it (no dead letter, no sequence used up) and
// sends it again, and it applies once clearing's clock is within the bound
// of it. A wrong clock at clearing loses nothing. A tap more than
// Config.MaxDeviceTimeHeld ahead (a year 2200 tap) is a broken clock: it
// is rejected for good as device-time-far-ahead, so it never opens a fare
// day that never closes, nor keeps its gate's later taps waiting.
func TestFarFutureTapHeld(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(3)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	var behind atomic.Int64 // how far clearing's fare clock is behind the wall clock
	behind.Store(int64(2 * 24 * time.Hour))
	var clLogs syncBuffer
	metrics := prometheus.NewRegistry()
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour,
		Metrics:   metrics,
		FareClock: func() time.Time { return time.Now().Add(-time.Duration(behind.Load())) },
		Logger:    slog.New(slog.NewTextHandler(&clLogs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	t.Cleanup(func() { cl.stop(t) })
	gate := func(id string, ahead time.Duration) *runningTerminal {
		return startTerminalWith(t, dir, cl.NATSURL(), reg, keys, id, func(c *terminal.Config) {
			c.ResendAfter = 200 * time.Millisecond
			c.Now = func() time.Time { return time.Now().Add(ahead) }
		})
	}
	held := func() uint64 { return cl.Stats().QuarantineByWhy[clearing.ReasonDeviceTimeAhead] }

	// Clearing's clock two days behind: the gate's right-time taps are
	// held, not lost.
	t1 := gate("t1", 0)
	defer t1.stop(t)
	tap(t, t1.Terminal, "card-1", fare.Entry)
	tap(t, t1.Terminal, "card-2", fare.Entry)
	waitFor(t, "the taps held", 10*time.Second, func() bool { return held() >= 2 })
	if s := cl.Stats(); s.Applied != 0 || s.Rejected != 0 || t1.Pending() != 2 {
		t.Fatalf("with clearing's clock 2 days behind: applied %d, rejected %d, pending at the gate %d; want 0, 0, 2", s.Applied, s.Rejected, t1.Pending())
	}
	// Its clock put right, the gate's resends apply.
	behind.Store(0)
	waitFor(t, "the held taps applied", 20*time.Second, func() bool { return t1.Pending() == 0 })
	if dls, err := t1.DeadLetters(); err != nil || len(dls) != 0 || cl.Stats().Applied != 2 || cl.TerminalWatermark("t1") != 2 {
		t.Fatalf("after clearing's clock was put right: dead letters %v (%v), applied %d, watermark %d; want none, 2, 2", dls, err, cl.Stats().Applied, cl.TerminalWatermark("t1"))
	}

	// A gate a few hours ahead: applied. One dated the year 2200: held
	// for as long as it claims that date.
	var logs bytes.Buffer // and says so in its log
	t2 := startTerminalWith(t, dir, cl.NATSURL(), reg, keys, "t2", func(c *terminal.Config) {
		c.ResendAfter = 200 * time.Millisecond
		c.Now = func() time.Time { return time.Now().Add(3 * time.Hour) }
		c.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	tap(t, t2.Terminal, "card-3", fare.Entry)
	waitFor(t, "the gate a few hours ahead drained", 10*time.Second, func() bool { return t2.Pending() == 0 })
	// The gate knows how far its clock is from clearing's.
	waitFor(t, "the gate's clock offset", 10*time.Second, func() bool { return t2.ClockOffset() != 0 })
	if off := t2.ClockOffset(); off < 3*time.Hour-5*time.Second || off > 3*time.Hour+5*time.Second {
		t.Errorf("the gate 3 hours ahead sees its clock %s off clearing's", off)
	}
	// A clock hours off is broken, not drifting: the gate does not follow
	// clearing's (whose own clock may be the wrong one) but says so.
	if corr := t2.ClockCorrection(); corr != 0 {
		t.Errorf("the gate 3 hours ahead corrects its taps by %s, want its own clock shown, not followed", corr)
	}
	// Clearing says which gate dates its taps ahead.
	if got := clLogs.String(); !strings.Contains(got, "taps applied though dated ahead of clearing's clock") || !strings.Contains(got, "terminal t2 dated event") {
		t.Errorf("clearing's log does not name the gate 3 hours ahead:\n%s", got)
	}
	// And is not ready: its taps are priced by the wrong time (an outside
	// test saw a journey an hour fast charged the peak fare, unflagged).
	if err := t2.Ready(); err == nil || !strings.Contains(err.Error(), "the gate's clock is 3h0m0s off clearing's") {
		t.Errorf("the gate 3 hours ahead: ready %v, want not ready naming its clock", err)
	}
	t2.stop(t)
	if got := logs.String(); !strings.Contains(got, "reason=clock-offset") || !strings.Contains(got, "off clearing's (positive: ahead)") {
		t.Errorf("the gate 3 hours ahead logged, want its clock offset named:\n%s", got)
	}
	// One dated three days ahead: held for as long as it is (clearing's
	// clock may be the wrong one).
	before := held()
	t2 = gate("t2", 3*24*time.Hour)
	defer t2.stop(t)
	tap(t, t2.Terminal, "card-4", fare.Entry)
	waitFor(t, "the tap three days ahead held, again and again", 10*time.Second, func() bool { return held() >= before+2 })
	if dls, err := t2.DeadLetters(); err != nil || len(dls) != 0 || t2.Pending() != 1 || cl.Stats().Applied != 3 || cl.TerminalWatermark("t2") != 1 {
		t.Fatalf("a tap three days ahead: dead letters %v (%v), pending %d, applied %d, watermark %d; want none, 1, 3, 1", dls, err, t2.Pending(), cl.Stats().Applied, cl.TerminalWatermark("t2"))
	}
	// One dated the year 2200 is a broken clock: rejected for good, never
	// charged, so the gate goes on (held, it would keep every later tap
	// of its gate in the outbox for ever).
	datedAhead := gauge(t, metrics, "faregate_clearing_taps_dated_ahead_total")
	var t3Ahead atomic.Int64
	t3Ahead.Store(int64(174 * 365 * 24 * time.Hour))
	t3 := startTerminalWith(t, dir, cl.NATSURL(), reg, keys, "t3", func(c *terminal.Config) {
		c.ResendAfter = 200 * time.Millisecond
		c.Now = func() time.Time { return time.Now().Add(time.Duration(t3Ahead.Load())) }
	})
	defer t3.stop(t)
	tap(t, t3.Terminal, "card-5", fare.Entry)
	t3Ahead.Store(0) // its clock put right
	tap(t, t3.Terminal, "card-6", fare.Entry)
	waitFor(t, "the gate with the year 2200 tap drained", 10*time.Second, func() bool { return t3.Pending() == 0 })
	dls, err := t3.DeadLetters()
	if err != nil || len(dls) != 1 || dls[0].Reason != clearing.ReasonDeviceTimeFarAhead || dls[0].Sequence != 1 {
		t.Fatalf("a year 2200 tap: dead letters %+v (%v), want sequence 1 rejected as %s", dls, err, clearing.ReasonDeviceTimeFarAhead)
	}
	if got := gauge(t, metrics, "faregate_clearing_taps_dated_ahead_total"); datedAhead == 0 || got != datedAhead {
		t.Errorf("taps dated ahead %v after the rejected year 2200 tap, %v before: want it not counted among taps applied though dated ahead", got, datedAhead)
	}
	if s := cl.Stats(); s.Applied != 4 || cl.TerminalWatermark("t3") != 2 {
		t.Fatalf("after a year 2200 tap: applied %d, watermark %d; want the gate's next tap applied (4 in all), both sequences settled", s.Applied, cl.TerminalWatermark("t3"))
	}
	if err := cl.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rep := auditClean(t, cl.Clearing); !rep.Clean() {
		t.Fatalf("audit: %v", rep.Mismatches)
	}
}

// TestFarPastTapRejected: a gate whose clock was reset (a tap dated 1971)
// or set more than Config.MaxDeviceTimeBehind back has that tap rejected
// for good as device-time-behind: never charged, recorded, dead-lettered
// at the gate, which goes on; a gate offline for a week still has its
// taps charged.
func TestFarPastTapRejected(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour})
	t.Cleanup(func() { cl.stop(t) })
	var offset atomic.Int64
	t1 := startTerminalWith(t, dir, cl.NATSURL(), reg, keys, "t1", func(c *terminal.Config) {
		c.ResendAfter = 200 * time.Millisecond
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	defer t1.stop(t)
	for _, back := range []time.Duration{7 * 24 * time.Hour, 490000 * time.Hour, 31 * 24 * time.Hour} {
		offset.Store(int64(-back))
		tap(t, t1.Terminal, fmt.Sprintf("card-%d", back/time.Hour), fare.Entry)
	}
	offset.Store(0)
	tap(t, t1.Terminal, "card-now", fare.Entry)
	waitFor(t, "the gate drained", 20*time.Second, func() bool { return t1.Pending() == 0 })
	dls, err := t1.DeadLetters()
	if err != nil || len(dls) != 2 {
		t.Fatalf("dead letters %+v (%v), want the 1971 and the month-old taps", dls, err)
	}
	for _, dl := range dls {
		if dl.Reason != clearing.ReasonDeviceTimeBehind {
			t.Errorf("dead letter %+v, want reason %s", dl, clearing.ReasonDeviceTimeBehind)
		}
	}
	if s := cl.Stats(); s.Applied != 2 || cl.TerminalWatermark("t1") != 4 {
		t.Fatalf("applied %d, watermark %d; want the week-old and the current tap applied, all 4 sequences settled", s.Applied, cl.TerminalWatermark("t1"))
	}
	checkBooks(t, cl.Store(), map[string]fare.Amount{"metro": 2 * 250})
}

// TestGateRereadsClockOnReconnect: a gate that finds NATS again asks
// clearing for its clock at once, not at its next 10-minute refresh: an
// outside test restarted clearing on a clock 40 days on (the gate's own
// had never agreed with clearing's), and the gate, with nothing to send,
// stamped its next taps on its own clock, which clearing rejected for good
// as 30 days behind, so the journey was never charged.
func TestGateRereadsClockOnReconnect(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(1)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	var ahead atomic.Int64 // clearing's fare clock ahead of the wall clock
	ahead.Store(int64(2 * time.Hour))
	cfg := clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour, NATSPort: freePort(t),
		FareClock: func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }}
	first := startClearing(t, cfg)
	t.Cleanup(func() { first.stop(t) })
	t1 := startTerminalWith(t, dir, first.NATSURL(), reg, keys, "t1", func(c *terminal.Config) { c.ResendAfter = 200 * time.Millisecond })
	defer t1.stop(t)
	// A tap applied first: a gate whose taps clearing confirmed asks no more
	// with nothing to send (the reviewer's gates had tapped).
	tap(t, t1.Terminal, "card-0", fare.Entry)
	waitFor(t, "the first tap confirmed", 10*time.Second, func() bool { return t1.Pending() == 0 })
	waitFor(t, "the gate's first answer", 10*time.Second, func() bool { return t1.ClockOffset() != 0 })
	if corr := t1.ClockCorrection(); corr != 0 {
		t.Fatalf("clearing 2 hours ahead at the gate's start: the gate corrects by %s, want its own clock kept (shown, not followed)", corr)
	}
	first.stop(t)
	ahead.Store(int64(40 * 24 * time.Hour))
	second := startClearing(t, cfg)
	t.Cleanup(func() { second.stop(t) })
	waitFor(t, "the gate following clearing's clock once reconnected, with nothing to send", 20*time.Second, func() bool { return t1.ClockCorrection() != 0 })
	tap(t, t1.Terminal, "card-1", fare.Entry)
	waitFor(t, "the gate drained", 10*time.Second, func() bool { return t1.Pending() == 0 })
	if dls, err := t1.DeadLetters(); err != nil || len(dls) != 0 || second.Stats().Applied != 1 || second.Stats().Rejected != 0 {
		t.Fatalf("a tap after the reconnect: dead letters %+v (%v), applied %d, rejected %d; want it applied", dls, err, second.Stats().Applied, second.Stats().Rejected)
	}
}

// TestWrongOperatorSaid: a gate started with another --operator than the
// one the ledger registered it under has its taps refused by the server
// (its user may publish only on its registered operator's subject); the
// gate says so, naming --operator, and is not ready, where it used to log
// only the server's "Permissions Violation" and stay ready while its taps
// piled up (an outside test).
func TestWrongOperatorSaid(t *testing.T) {
	dir, reg, keys, cl := startCity(t, 1)
	var logs syncBuffer
	t1 := startTerminalWith(t, dir, cl.NATSURL(), reg, keys, "t1", func(c *terminal.Config) {
		c.Operator = "not-" + c.Operator
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	defer t1.stop(t)
	tap(t, t1.Terminal, "card-1", fare.Entry)
	waitFor(t, "the gate not ready", 10*time.Second, func() bool { return t1.Ready() != nil })
	if err := t1.Ready(); !strings.Contains(err.Error(), "is --operator not-") {
		t.Errorf("ready: %v, want the refusal explained naming --operator", err)
	}
	if cl.Stats().Applied != 0 || t1.Pending() != 1 {
		t.Errorf("applied %d, pending %d; want the tap kept at the gate", cl.Stats().Applied, t1.Pending())
	}
	t1.stop(t)
	if !strings.Contains(logs.String(), "is --operator not-") {
		t.Errorf("the gate's log does not name --operator:\n%s", logs.String())
	}
}

// natsRefuses says whether the NATS server at url refuses terminal id's
// user (barred or revoked).
func natsRefuses(t *testing.T, url string, key ed25519.PrivateKey, id string) bool {
	t.Helper()
	ident := mustIdentity(t, key, id)
	c, err := nats.Connect(url, append(terminal.NATSOptions(ident, id, ""), nats.MaxReconnects(0))...)
	if err == nil {
		c.Close()
		return false
	}
	return strings.Contains(strings.ToLower(err.Error()), "authorization")
}

// TestTerminalConnectionsBarred: a stolen terminal key opening connection
// after connection (NATS has no per-user connection limit: one key could
// take every connection the terminals' account may hold) is named and
// refused by the embedded server for a while, its connections closed;
// another gate goes on.
func TestTerminalConnectionsBarred(t *testing.T) {
	dir, reg, keys, cl := startCityWith(t, 2, func(c *clearing.Config) { c.RegistryPoll = 200 * time.Millisecond })
	url := cl.NATSURL()
	good := startTerminal(t, dir, url, reg, keys, "t2")
	defer good.stop(t)
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for range 12 {
		nc, err := nats.Connect(url, append(terminal.NATSOptions(mustIdentity(t, keys["t1"], "t1"), "t1", ""), nats.NoReconnect())...)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
	}
	waitFor(t, "t1 named and its connections closed", 10*time.Second, func() bool {
		if cl.Stats().APIFlooders["t1"] == 0 {
			return false
		}
		for _, nc := range conns {
			if !nc.IsClosed() {
				return false
			}
		}
		return true
	})
	if !natsRefuses(t, url, keys["t1"], "t1") {
		t.Fatal("t1 admitted again at once")
	}
	tap(t, good.Terminal, "card-1", fare.Entry)
	waitFor(t, "t2's tap applied", 10*time.Second, func() bool { return good.Pending() == 0 })
	if natsRefuses(t, url, keys["t2"], "t2") {
		t.Fatal("t2 refused beside the flooder")
	}
}

// TestFeedAndRequestFloods, from a stolen terminal key's side: floods of
// its feed requests, its confirmation requests (with no reply subject)
// and its feeds' flow-control answers are each named and barred (an
// outside red team's watermark flood ran at 2 million a second, silent);
// its flow-control answers for another terminal's feed are refused by
// NATS; and a gate starting during the flood gets its lists within the
// time it waits for them (a feed flood filled the queue their requests
// shared, and a gate starting then passed a denied card for ten seconds).
func TestFeedAndRequestFloods(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flood func(nc *nats.Conn) error
	}{
		{"feed requests", func(nc *nats.Conn) error {
			req, _ := json.Marshal(fare.GateFeedRequest{Deliver: nc.NewInbox()})
			return nc.PublishRequest(fare.GateFeedSubject("t1", fare.FeedDeny), nc.NewInbox(), req)
		}},
		{"confirmation requests without a reply", func(nc *nats.Conn) error {
			return nc.Publish(fare.WatermarkSubject("t1"), []byte("0"))
		}},
		{"flow-control answers", func(nc *nats.Conn) error {
			return nc.Publish("$JS.FC.KV_"+fare.DenyBucket+"."+fare.GateFeedConsumer("t1", fare.FeedDeny)+".x1y2", nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, reg, keys, cl := startCityWith(t, 2, func(c *clearing.Config) { c.RegistryPoll = 200 * time.Millisecond })
			url := cl.NATSURL()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var floods []*nats.Conn
			for range 4 { // connected first: the bar comes within milliseconds
				nc, err := nats.Connect(url, append(terminal.NATSOptions(mustIdentity(t, keys["t1"], "t1"), "t1", ""), nats.NoReconnect())...)
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				floods = append(floods, nc)
			}
			for _, nc := range floods {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						if tc.flood(nc) != nil {
							return
						}
					}
				})
			}
			// A gate starting during the flood gets its lists within the
			// time it waits for them (--list-wait, 5 s).
			time.Sleep(300 * time.Millisecond)
			t2 := startTerminal(t, dir, url, reg, keys, "t2")
			defer t2.stop(t)
			select {
			case <-t2.ListsSynced():
			case <-time.After(5 * time.Second):
				t.Fatal("t2 started during the flood: its lists not synced within 5 s")
			}
			waitFor(t, "t1 named and refused", 10*time.Second, func() bool {
				return cl.Stats().APIFlooders["t1"] >= 1 && natsRefuses(t, url, keys["t1"], "t1")
			})
			close(stop)
			wg.Wait()
			if cl.Stats().APIFlooders["t2"] != 0 || natsRefuses(t, url, keys["t2"], "t2") {
				t.Fatal("t2 barred beside the flooder")
			}
		})
	}
	// Another terminal's feeds' flow control: not t1's to answer.
	_, _, keys, cl := startCity(t, 2)
	errs := make(chan error, 8)
	nc := terminalConn(t, cl.NATSURL(), keys["t1"], "t1", nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	defer nc.Close()
	checkPermissions(t, nc, errs, []permCase{
		{name: "its own deny feed's flow control", pub: "$JS.FC.KV_" + fare.DenyBucket + "." + fare.GateFeedConsumer("t1", fare.FeedDeny) + ".abcd"},
		{name: "t2's deny feed's flow control", pub: "$JS.FC.KV_" + fare.DenyBucket + "." + fare.GateFeedConsumer("t2", fare.FeedDeny) + ".abcd", denied: true},
		{name: "any consumer's flow control", pub: "$JS.FC.KV_" + fare.DenyBucket + ".other.abcd", denied: true},
	})
}

// TestGateAsksOnceAtStart: a gate starting asks for each feed once (a late
// first connection's handler, which nats.go also calls on an early one,
// made every start ask twice, refused as too soon the second time).
func TestGateAsksOnceAtStart(t *testing.T) {
	dir, reg, keys, cl := startCity(t, 1)
	t1 := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	defer t1.stop(t)
	select {
	case <-t1.ListsSynced():
	case <-time.After(10 * time.Second):
		t.Fatal("t1's lists not synced in 10 s")
	}
	time.Sleep(1500 * time.Millisecond) // a second request would have come by now
	if served, _, refused := cl.GateFeedCounts(); served != 2 || refused != 0 {
		t.Errorf("feeds granted %d, refused %d; want deny and enrol granted once each", served, refused)
	}
}
