package clearing_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io/fs"
	"os"

	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger/merkle"
	"github.com/faregate/faregate/terminal"
)

// checkBooks asserts the journal invariants: postings sum to zero, every
// stored balance equals the sum of its postings, each operator's revenue is
// its flat fare times its charged taps.
func checkBooks(t *testing.T, st *clearing.Store, wantOperator map[string]fare.Amount) {
	t.Helper()
	a, err := st.AuditJournal()
	if err != nil {
		t.Fatal(err)
	}
	if a.Imbalance != 0 {
		t.Errorf("journal imbalance %d, want 0", a.Imbalance)
	}
	if len(a.Mismatches) > 0 {
		t.Errorf("balances differ from the journal: %v", a.Mismatches)
	}
	for op, want := range wantOperator {
		b, err := st.Balance(clearing.OperatorAccount(op))
		if err != nil {
			t.Fatal(err)
		}
		if b.Net() != want {
			t.Errorf("operator %s balance %d, want %d", op, b.Net(), want)
		}
	}
}

// firstEntry is t1's first event, a card entry at its stop, signed.
func firstEntry(t *testing.T, key ed25519.PrivateKey) []byte {
	t.Helper()
	ev := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: "t1", Operator: "metro", Stop: "stop-t1", Gate: "g1",
		Direction: fare.Entry, Media: fare.Card, MediaToken: "card-1", DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: 1}
	raw, err := fare.Sign(&ev, key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestSameEventTwiceAppliedOnce(t *testing.T) {
	_, _, keys, cl := startCity(t, 2)
	raw := firstEntry(t, keys["t1"])
	nc := terminalConn(t, cl.NATSURL(), keys["t1"], "t1")
	defer nc.Close()
	// Different message ids defeat JetStream's window: clearing's own dedup
	// must catch the second copy.
	for i := range 2 {
		publishEvent(t, nc, fare.EventSubject("metro", "t1"), raw, nats.MsgIdHdr, fmt.Sprintf("copy-%d", i))
	}
	waitFor(t, "both copies processed", 10*time.Second, func() bool {
		s := cl.Stats()
		return s.Applied == 1 && s.Duplicates == 1
	})
	checkBooks(t, cl.Store(), map[string]fare.Amount{"metro": 250})
	if w := cl.TerminalWatermark("t1"); w != 1 {
		t.Errorf("watermark %d, want 1", w)
	}
}

// TestCloseStopsRun: Close on a running clearing (a caller returning
// early, without cancelling Run first) stops Run and waits for it before
// it closes the store; a Run after Close is refused.
func TestCloseStopsRun(t *testing.T) {
	_, _, keys, cl := startCity(t, 1)
	raw := firstEntry(t, keys["t1"])
	nc := terminalConn(t, cl.NATSURL(), keys["t1"], "t1")
	defer nc.Close()
	publishEvent(t, nc, fare.EventSubject("metro", "t1"), raw, nats.MsgIdHdr, "only")
	waitFor(t, "the event applied", 10*time.Second, func() bool { return cl.Stats().Applied == 1 })
	if err := cl.Close(); err != nil {
		t.Fatalf("close a running clearing: %v", err)
	}
	// (That Close waits for Run to return is fare.Runs's: TestRunsCloseWaits;
	// here, that Run returns, cleanly, and the race detector sees no use
	// of the closed store.)
	select {
	case err := <-cl.done:
		if err != nil {
			t.Fatalf("run stopped by close: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running 10 s after Close returned")
	}
	cl.cancel() // the cleanup's stop has nothing left to do
	cl.cancel = nil
	if err := cl.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("run after close: %v, want refused", err)
	}
}

func TestResendAfterTerminalRestartAppliedOnce(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	// Clearing is open (NATS and streams up) but not consuming, so the
	// terminal gets no confirmation and must resend after its restart.
	publish(t, clearing.Config{Registry: reg, Ledger: led})
	cl, err := clearing.Open(context.Background(), clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSPort: -1, ConfirmKey: testConfirmKey, NATSSeedFile: clearingSeedFile(t),
		Registry: reg, Ledger: led, Period: time.Hour, DedupWindow: 100 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	url := cl.NATSURL()
	term := startTerminal(t, dir, url, reg, keys, "t1")
	const n = 20
	for i := range n {
		tap(t, term.Terminal, fmt.Sprintf("card-%d", i), fare.Entry)
	}
	waitFor(t, "first sending", 10*time.Second, func() bool { return term.Published() >= n })
	term.stop(t)
	time.Sleep(300 * time.Millisecond) // past JetStream's duplicate window

	term = startTerminal(t, dir, url, reg, keys, "t1")
	defer term.stop(t)
	if term.Pending() != n {
		t.Fatalf("restarted terminal has %d pending, want %d", term.Pending(), n)
	}
	waitFor(t, "resend after restart", 10*time.Second, func() bool { return term.Published() >= n })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		cl.Close()
	}()
	waitFor(t, "outbox drained", 20*time.Second, func() bool { return term.Pending() == 0 })
	s := cl.Stats()
	if s.Applied != n {
		t.Errorf("applied %d, want %d", s.Applied, n)
	}
	if s.Duplicates < n {
		t.Errorf("duplicates %d, want at least %d (every event was sent twice)", s.Duplicates, n)
	}
	checkBooks(t, cl.Store(), map[string]fare.Amount{"metro": n * 250})
}

func TestQuarantine(t *testing.T) {
	_, _, keys, cl := startCity(t, 2)

	good := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: "t1", Operator: "metro", Stop: "stop-t1", Gate: "g1",
		Direction: fare.Entry, Media: fare.Card, MediaToken: "card-1", DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: 1}
	goodRaw, _ := fare.Sign(&good, keys["t1"])
	forged := good
	forged.ID, forged.Sequence = fare.NewEventID(time.Now()), 2
	forgedRaw, _ := fare.Sign(&forged, keys["t2"]) // t1's name, t2's key
	unknown := good
	unknown.ID, unknown.Terminal = fare.NewEventID(time.Now()), "t99"
	unknownRaw, _ := fare.Sign(&unknown, keys["t1"])
	replay := good
	replay.ID, replay.MediaToken = fare.NewEventID(time.Now()), "card-other" // sequence 1 again
	replayRaw, _ := fare.Sign(&replay, keys["t1"])
	wrongOp := good
	wrongOp.ID, wrongOp.Operator, wrongOp.Sequence = fare.NewEventID(time.Now()), "bus", 3
	wrongOpRaw, _ := fare.Sign(&wrongOp, keys["t1"])

	// Everything comes from t1's own NATS identity: a misbehaving terminal.
	nc := terminalConn(t, cl.NATSURL(), keys["t1"], "t1")
	defer nc.Close()
	admin := adminConn(t, cl.NATSURL())
	defer admin.Close()
	adminJS, _ := jetstream.New(admin)
	publish := func(data []byte) {
		t.Helper()
		publishEvent(t, nc, fare.EventSubject("metro", "t1"), data)
	}
	publish(goodRaw)
	waitFor(t, "good event applied", 10*time.Second, func() bool { return cl.Stats().Applied == 1 })
	before, _ := cl.Store().Balances("", "", 100)

	bad := []struct {
		name   string
		data   []byte
		reason string
	}{
		{"forged signature", forgedRaw, clearing.ReasonBadSignature},
		{"another terminal's event on t1's subject", unknownRaw, clearing.ReasonSubjectMismatch},
		{"truncated payload", goodRaw[:len(goodRaw)-10], clearing.ReasonMalformed},
		{"another event t1 signed under a used sequence (a twin unit, a restored outbox)", replayRaw, clearing.ReasonSequenceConflict},
		{"another operator's event on t1's subject", wrongOpRaw, clearing.ReasonSubjectMismatch},
		{"garbage", []byte("hello"), clearing.ReasonMalformed},
	}
	for _, b := range bad {
		publish(b.data)
	}
	waitFor(t, "bad messages quarantined", 10*time.Second, func() bool { return cl.Stats().Quarantined == uint64(len(bad)) })

	// The quarantine stream holds each message with its reason.
	cons, err := adminJS.OrderedConsumer(context.Background(), fare.QuarantineStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range bad {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("quarantine message %d: %v", i, err)
		}
		if got := m.Headers().Get(fare.HeaderReason); got != b.reason {
			t.Errorf("%s: quarantined as %q, want %q (detail %q)", b.name, got, b.reason, m.Headers().Get(fare.HeaderDetail))
		}
		if m.Headers().Get(fare.HeaderDetail) == "" {
			t.Errorf("%s: no detail", b.name)
		}
		if string(m.Data()) != string(b.data) {
			t.Errorf("%s: quarantined payload differs from what was sent", b.name)
		}
	}
	after, _ := cl.Store().Balances("", "", 100)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("quarantined messages changed balances:\nbefore %v\nafter  %v", before, after)
	}
	if s := cl.Stats(); s.Applied != 1 {
		t.Errorf("applied %d before t1's real sequence 2, want 1", s.Applied)
	}
	// A bad signature is junk, whatever subject it came on: it uses up no
	// sequence, so t1's real event 2 still applies.
	if s := cl.Stats(); s.Rejected != 0 || cl.TerminalWatermark("t1") != 1 {
		t.Errorf("rejected %d, t1 watermark %d; want 0 and 1", s.Rejected, cl.TerminalWatermark("t1"))
	}
	real2 := good
	real2.ID, real2.Sequence = fare.NewEventID(time.Now()), 2
	real2Raw, _ := fare.Sign(&real2, keys["t1"])
	publish(real2Raw)
	waitFor(t, "t1's real sequence 2 applied", 10*time.Second, func() bool { return cl.TerminalWatermark("t1") == 2 })
	checkBooks(t, cl.Store(), map[string]fare.Amount{"metro": 500, "bus": 0})
}

// TestSettlementOnChain runs terminals through several periods, then checks
// every batch's on-chain root against the root recomputed from the store,
// and proves events both off chain and in the contract's view function.
func TestSettlementOnChain(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(4)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	var logs syncBuffer
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer cl.stop(t)
	var terms []*runningTerminal
	for _, id := range []string{"t1", "t2", "t3", "t4"} {
		rt := startTerminal(t, dir, cl.NATSURL(), reg, keys, id)
		defer rt.stop(t)
		terms = append(terms, rt)
	}
	var events []fare.Event
	want := map[string]fare.Amount{}
	for round := range 5 {
		for i, rt := range terms {
			dirn := fare.Validate
			if round == 4 && i == 0 {
				dirn = fare.Exit // exits are not charged
			}
			ev := tap(t, rt.Terminal, fmt.Sprintf("card-%d", i), dirn)
			events = append(events, ev)
			if dirn != fare.Exit {
				op, _ := reg.Operator(ev.Operator)
				want[ev.Operator] += op.FlatFare
			}
		}
		time.Sleep(400 * time.Millisecond) // periods end on whole seconds: taps over 2 s span two
	}
	for _, rt := range terms {
		waitFor(t, "outboxes drained", 10*time.Second, func() bool { return rt.Pending() == 0 })
	}
	if err := cl.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkBooks(t, cl.Store(), want)

	batches, err := cl.Store().Batches(1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) < 2 {
		t.Fatalf("%d batches, want several periods", len(batches))
	}
	var total uint64
	for _, b := range batches {
		total += b.EventCount
	}
	if total != uint64(len(events)) {
		t.Errorf("batches hold %d events, want %d", total, len(events))
	}
	// Each commit is said in the log, with what an operator looks up.
	for _, b := range batches {
		c, err := cl.Store().Commit(b.ID)
		if err != nil {
			t.Fatalf("batch %d: %v", b.ID, err)
		}
		line := fmt.Sprintf("msg=\"batch committed to the ledger\" component=clearing batch=%d events=%d", b.ID, b.EventCount)
		if !strings.Contains(logs.String(), line) || !strings.Contains(logs.String(), fmt.Sprintf("tx=0x%x", c.TxHash)) {
			t.Errorf("no log line for batch %d's commit (want %q and its tx)", b.ID, line)
		}
	}
	audit, err := cl.Store().AuditBatches(context.Background(), led)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range audit {
		if a.Problem != "" || a.ChainRoot != a.ComputedRoot {
			t.Errorf("batch %d: %s (chain %s, recomputed %s)", a.ID, a.Problem, a.ChainRoot, a.ComputedRoot)
		}
	}
	ctx := context.Background()
	for _, ev := range []fare.Event{events[0], events[len(events)/2], events[len(events)-1]} {
		proof, _, err := cl.Store().Prove(ev.ID)
		if err != nil {
			t.Fatalf("prove %s: %v", ev.ID, err)
		}
		if !merkle.Verify(proof.Root, proof.Leaf, proof.Path) {
			t.Errorf("event %s: proof does not verify off chain", ev.ID)
		}
		ok, err := led.VerifyInclusion(ctx, proof.BatchID, proof.Leaf, proof.Path)
		if err != nil || !ok {
			t.Errorf("event %s: contract verify = %v, %v", ev.ID, ok, err)
		}
		// A proof for another leaf must fail in both places.
		wrong := proof.Leaf
		wrong[0] ^= 1
		if merkle.Verify(proof.Root, wrong, proof.Path) {
			t.Errorf("tampered leaf verifies off chain")
		}
		if ok, _ := led.VerifyInclusion(ctx, proof.BatchID, wrong, proof.Path); ok {
			t.Errorf("tampered leaf verifies on chain")
		}
	}
	checkAPI(t, cl.Clearing, events[0], want)
}

// checkAPI exercises the settlement API over HTTP, good and bad requests.
func checkAPI(t *testing.T, cl *clearing.Clearing, ev fare.Event, want map[string]fare.Amount) {
	t.Helper()
	tokens, err := clearing.LoadTokenStore(filepath.Join(t.TempDir(), clearing.APITokenFile))
	if err != nil {
		t.Fatal(err)
	}
	auditor, err := tokens.Issue(clearing.RoleAuditor, "", "auditor")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(clearing.NewAPI(cl, nil, clearing.WithTokens(tokens)))
	defer srv.Close()
	get := func(path string, wantStatus int, into any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+auditor)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus {
			t.Errorf("GET %s: status %d, want %d: %s", path, resp.StatusCode, wantStatus, body)
			return
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: content type %q", path, ct)
		}
		if into != nil {
			if err := json.Unmarshal(body, into); err != nil {
				t.Errorf("GET %s: %v", path, err)
			}
		}
		if wantStatus >= 400 && !strings.Contains(string(body), `"error"`) {
			t.Errorf("GET %s: error response without an error field: %s", path, body)
		}
	}
	var ops struct {
		Operators []clearing.OperatorView `json:"operators"`
	}
	get("/v1/operators", 200, &ops)
	for _, o := range ops.Operators {
		if fare.Amount(o.Balance.Minor) != want[o.ID] {
			t.Errorf("API operator %s balance %d, want %d", o.ID, o.Balance.Minor, want[o.ID])
		}
	}
	var batch clearing.BatchView
	get("/v1/batches/1", 200, &batch)
	if !batch.Committed || batch.Commit == nil || batch.Commit.TxHash == "" {
		t.Errorf("batch 1 not shown as committed: %+v", batch)
	}
	var evv clearing.EventView
	get("/v1/events/"+ev.ID.String(), 200, &evv)
	if evv.Proof == nil || !evv.Proof.Verified || evv.Proof.OnChain == nil || !*evv.Proof.OnChain {
		t.Errorf("event proof not verified off and on chain: %+v", evv.Proof)
	}
	var ev0x clearing.EventView // the id written as hashes are, 0x in front
	get("/v1/events/0x"+ev.ID.String(), 200, &ev0x)
	if ev0x.ID != ev.ID.String() {
		t.Errorf("event by its 0x id: %+v", ev0x.EventFields)
	}
	var terms struct {
		Terminals []clearing.TerminalView `json:"terminals"`
	}
	get("/v1/terminals", 200, &terms)
	for _, tv := range terms.Terminals {
		if tv.Gap {
			t.Errorf("terminal %s shows a gap", tv.ID)
		}
	}
	get("/v1/balances?prefix=operator/", 200, nil)
	get("/v1/accounts/operator/metro", 200, nil)
	get("/v1/stats", 200, nil)
	for _, bad := range []struct {
		path   string
		status int
	}{
		{"/v1/events/not-hex", 400},
		{"/v1/events/00000000000000000000000000000000", 404},
		{"/v1/batches/zero", 400},
		{"/v1/batches/0", 400},
		{"/v1/batches/999999", 404},
		{"/v1/batches?limit=-1", 400},
		{"/v1/balances?limit=abc", 400},
		{"/v1/operators/nobody", 404},
		{"/v1/accounts/cash", 400},
		{"/v2/nothing", 404},
	} {
		get(bad.path, bad.status, nil)
	}
}

// TestClearingKilledMidStream SIGKILLs a real clearing process (embedded
// NATS, Badger, embedded chain) while terminals stream, restarts it, and
// checks nothing was lost or applied twice and every outbox drains.
func TestClearingKilledMidStream(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(4)
	regFile := filepath.Join(dir, "registry.json")
	if err := reg.Save(regFile); err != nil {
		t.Fatal(err)
	}
	spec := ledgerCrashSpec{Dir: dir, Registry: regFile, Port: freePort(t), Period: 300 * time.Millisecond, Kill: killNever}
	child := startLedgerCrashChild(t, spec)
	url := fmt.Sprintf("nats://127.0.0.1:%d", spec.Port)
	var terms []*runningTerminal
	for _, id := range []string{"t1", "t2", "t3", "t4"} {
		terms = append(terms, startTerminal(t, dir, url, reg, keys, id))
	}
	// Taps flow the whole time, through two kills.
	taps := startTapping(t, terms, 2*time.Millisecond)
	for kill := range 2 {
		time.Sleep(700 * time.Millisecond)
		if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = child.cmd.Wait()
		t.Logf("kill %d: clearing SIGKILLed after %d taps", kill+1, taps.count())
		time.Sleep(200 * time.Millisecond) // terminals keep tapping offline
		child = startLedgerCrashChild(t, spec)
	}
	time.Sleep(500 * time.Millisecond)
	taps.stop()
	for _, rt := range terms {
		waitFor(t, "outbox "+rt.ID()+" drained", 60*time.Second, func() bool { return rt.Pending() == 0 })
	}
	for _, rt := range terms {
		rt.stop(t)
	}
	// Seal the last period, commit everything, stop cleanly.
	_ = child.cmd.Process.Signal(syscall.SIGTERM)
	child.expect(t, "settled", 60*time.Second)
	if err := child.cmd.Wait(); err != nil {
		t.Fatalf("clearing child: %v", err)
	}

	st, err := clearing.OpenStore(filepath.Join(dir, "clearing", "store"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var applied uint64
	for _, rt := range terms {
		w, _ := st.Watermark(rt.ID())
		hi, _ := st.HighestSequence(rt.ID())
		if w != rt.LastSequence() || hi != w {
			t.Errorf("terminal %s: clearing watermark %d, highest %d, terminal used %d", rt.ID(), w, hi, rt.LastSequence())
		}
		applied += w
	}
	if applied != taps.count() {
		t.Errorf("applied %d, tapped %d", applied, taps.count())
	}
	ids, err := st.AppliedEventIDs()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[fare.EventID]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("event %s applied twice", id)
		}
		seen[id] = true
	}
	if uint64(len(ids)) != taps.count() {
		t.Errorf("store holds %d applied events, %d tapped", len(ids), taps.count())
	}
	want := map[string]fare.Amount{}
	for _, rt := range terms {
		r, _ := reg.TerminalKey(rt.ID())
		op, _ := reg.Operator(r.Operator)
		want[r.Operator] += op.FlatFare * fare.Amount(rt.LastSequence())
	}
	checkBooks(t, st, want)
	// Every sealed batch reached the chain: reopen it and compare.
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	audit, err := st.AuditBatches(context.Background(), led)
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) == 0 {
		t.Error("no batches sealed")
	}
	for _, a := range audit {
		if a.Problem != "" {
			t.Errorf("batch %d after kills: %s", a.ID, a.Problem)
		}
	}
}

func tapFor(term, k int) terminal.Tap {
	return terminal.Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: fmt.Sprintf("card-%d-%d", term, k%50), RiderCategory: "adult"}
}

// TestMissingKeyBesideTheStore: a data dir whose store exists lost its
// rider key or confirmation key (a bad restore, a typo'd copy): clearing
// refuses to start and names the file, rather than making a new key that
// splits every rider's account or that no terminal trusts.
func TestMissingKeyBesideTheStore(t *testing.T) {
	dir := t.TempDir()
	reg, _ := testRegistry(1)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	data := filepath.Join(dir, "clearing")
	cfg := clearing.Config{DataDir: data, Registry: reg, Ledger: led, Period: time.Hour, NATSPort: -1, Logger: quietLogger(), NATSSeedFile: clearingSeedFile(t)}
	cl, err := clearing.Open(context.Background(), cfg) // first start: both keys made
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{clearing.RiderKeyFile, clearing.ConfirmKeyFile} {
		path := filepath.Join(data, file)
		key, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		cl, err := clearing.Open(context.Background(), cfg)
		if err == nil {
			cl.Close()
			t.Fatalf("clearing started without %s beside its store", file)
		}
		if !strings.Contains(err.Error(), path+" is missing beside the store") {
			t.Errorf("without %s: %v, want the file named", file, err)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a refused start made a new %s", file)
		}
		if err := os.WriteFile(path, key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cl, err = clearing.Open(context.Background(), cfg) // restored: starts
	if err != nil {
		t.Fatalf("with both keys restored: %v", err)
	}
	cl.Close()
}
