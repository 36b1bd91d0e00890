package clearing_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// denyDecision taps m/token at rt and returns "decision/reason".
func denyDecision(t *testing.T, rt *runningTerminal, m fare.MediaKind, token string) string {
	t.Helper()
	if m == fare.Face {
		// A face tap needs the gate's camera: ask the gate what it would
		// decide had the camera identified token.
		d, why := rt.Decide(terminal.Tap{Gate: "g1", Direction: fare.Entry, Media: m, Token: token})
		return d.String() + "/" + why
	}
	ev, err := rt.Tap(context.Background(), terminal.Tap{Gate: "g1", Direction: fare.Entry, Media: m, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return ev.Decision.String() + "/" + ev.Reason
}

// checkDecision asks rt's gate (without a tap) what it would decide.
func checkDecision(t *testing.T, rt *runningTerminal, m fare.MediaKind, token, want string) {
	t.Helper()
	d, why := rt.Decide(terminal.Tap{Gate: "g1", Direction: fare.Entry, Media: m, Token: token})
	if got := d.String() + "/" + why; got != want {
		t.Errorf("terminal %s, %s %s: %s, want %s", rt.ID(), m, token, got, want)
	}
}

// waitDenyVersion waits until rt holds version of the deny list.
func waitDenyVersion(t *testing.T, rt *runningTerminal, version uint64, d time.Duration) {
	t.Helper()
	waitFor(t, fmt.Sprintf("terminal %s at deny-list version %d", rt.ID(), version), d, func() bool {
		v, _ := rt.DenyListVersion()
		return v == version
	})
}

// TestDenyListFollowedByTerminals: clearing lists and unlists media; running
// terminals follow at once, a terminal stopped while the list changed
// catches up when it starts again, and one with no NATS at all decides from
// its stored copy. Listing a listed medium or unlisting an absent one
// changes nothing. Auditors read the list (hashed keys) page by page.
func TestDenyListFollowedByTerminals(t *testing.T) {
	ctx := context.Background()
	dir, reg, keys, cl := startCity(t, 2)
	url := cl.NATSURL()
	t1 := startTerminal(t, dir, url, reg, keys, "t1")
	defer t1.stop(t)
	t2 := startTerminal(t, dir, url, reg, keys, "t2")
	defer t2.stop(t)

	steps := []struct {
		name    string
		change  func() error
		version uint64
	}{
		{"list a card", func() error { return cl.Deny(ctx, fare.Card, "stolen-1", "reported stolen") }, 1},
		{"list a face", func() error { return cl.Deny(ctx, fare.Face, "subject-9", "fare evasion") }, 2},
		{"list the card again", func() error { return cl.Deny(ctx, fare.Card, "stolen-1", "another reason") }, 2},
		{"unlist an absent card", func() error { return cl.Undeny(ctx, fare.Card, "never-listed") }, 2},
	}
	start := time.Now()
	for _, s := range steps {
		if err := s.change(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if v, _ := cl.DenyListVersion(); v != s.version {
			t.Fatalf("%s: clearing at version %d, want %d", s.name, v, s.version)
		}
	}
	for _, rt := range []*runningTerminal{t1, t2} {
		waitDenyVersion(t, rt, 2, 10*time.Second)
	}
	t.Logf("two running terminals followed 2 changes in %s", time.Since(start).Round(time.Millisecond))
	for _, tc := range []struct {
		m     fare.MediaKind
		token string
		want  string
	}{
		{fare.Card, "stolen-1", "denied/deny-list"},
		{fare.Face, "subject-9", "denied/deny-list"},
		{fare.Card, "good-1", "accepted/card"},
		{fare.Card, "subject-9", "accepted/card"}, // the face is listed, not a card of that token
		{fare.Face, "stolen-1", "accepted/face"},
	} {
		for _, rt := range []*runningTerminal{t1, t2} {
			if got := denyDecision(t, rt, tc.m, tc.token); got != tc.want {
				t.Errorf("%s %s at %s: %s, want %s", tc.m, tc.token, rt.ID(), got, tc.want)
			}
		}
	}

	// t2 is off while the list changes; started again, it catches up.
	t2.stop(t)
	if err := cl.Deny(ctx, fare.Card, "stolen-2", "reported stolen"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Undeny(ctx, fare.Card, "stolen-1"); err != nil {
		t.Fatal(err)
	}
	waitDenyVersion(t, t1, 4, 10*time.Second)
	start = time.Now()
	t2 = startTerminal(t, dir, url, reg, keys, "t2")
	// Once it says its lists are synced, its copy is clearing's: a gate
	// that waits for this decides nothing from the stale copy.
	select {
	case <-t2.ListsSynced():
	case <-time.After(10 * time.Second):
		t.Fatal("the restarted terminal's gate lists never synced")
	}
	if v, n := t2.DenyListVersion(); v != 4 || n != 2 {
		t.Fatalf("synced, the restarted terminal holds deny version %d with %d listed, want 4 with 2", v, n)
	}
	t.Logf("restarted terminal caught up in %s", time.Since(start).Round(time.Millisecond))
	for _, rt := range []*runningTerminal{t1, t2} {
		if got := denyDecision(t, rt, fare.Card, "stolen-2"); got != "denied/deny-list" {
			t.Errorf("stolen-2 at %s: %s", rt.ID(), got)
		}
		if got := denyDecision(t, rt, fare.Card, "stolen-1"); got != "accepted/card" {
			t.Errorf("stolen-1 (unlisted) at %s: %s", rt.ID(), got)
		}
	}
	t2.stop(t)

	// No NATS at all: the stored copy decides.
	offline := startTerminalWith(t, dir, "nats://127.0.0.1:1", reg, keys, "t2", func(*terminal.Config) {})
	if v, n := offline.DenyListVersion(); v != 4 || n != 2 {
		t.Errorf("offline terminal holds version %d with %d entries, want 4 with 2", v, n)
	}
	checkDecision(t, offline, fare.Card, "stolen-2", "denied/deny-list")
	checkDecision(t, offline, fare.Face, "subject-9", "denied/deny-list")
	checkDecision(t, offline, fare.Card, "stolen-1", "accepted/card")
	offline.stop(t)

	// Clearing's list: hashed keys, sorted, reasons and dates; the first
	// reason stays when a medium is listed again.
	list, err := cl.DenyList()
	if err != nil || len(list) != 2 {
		t.Fatalf("deny list: %+v, %v", list, err)
	}
	if !slices.IsSortedFunc(list, func(a, b clearing.DenyEntry) int { return strings.Compare(a.Key, b.Key) }) {
		t.Errorf("deny list not sorted: %+v", list)
	}
	want := map[string]string{fare.DenyKey(fare.Card, "stolen-2"): "card/reported stolen", fare.DenyKey(fare.Face, "subject-9"): "face/fare evasion"}
	for _, e := range list {
		if want[e.Key] != e.Media+"/"+e.Reason || e.Since.IsZero() || e.Since.Location() != time.UTC || strings.Contains(e.Key, "stolen") {
			t.Errorf("deny entry %+v", e)
		}
	}

	// GET /v1/deny for an auditor, one entry a page.
	tokens, err := clearing.LoadTokenStore(filepath.Join(dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	auditor, err := tokens.Issue(clearing.RoleAuditor, "", "auditor")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(clearing.NewAPI(cl.Clearing, nil, clearing.WithTokens(tokens)))
	defer srv.Close()
	var got []clearing.DenyEntry
	for after, pages := "", 0; ; pages++ {
		if pages > 3 {
			t.Fatal("/v1/deny does not end")
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/deny?limit=1&after="+after, nil)
		req.Header.Set("Authorization", "Bearer "+auditor)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Version   uint64
			Entries   []clearing.DenyEntry
			NextAfter string `json:"next_after"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || page.Version != 4 {
			t.Fatalf("GET /v1/deny: %d, version %d, %v", resp.StatusCode, page.Version, err)
		}
		got = append(got, page.Entries...)
		if page.NextAfter == "" {
			break
		}
		after = page.NextAfter
	}
	if !reflect.DeepEqual(got, list) {
		t.Errorf("/v1/deny pages %+v, want %+v", got, list)
	}
}

// TestDenyListBig: a list of 10,000 media reaches a running terminal and
// one started afterwards; the next change reaches both.
func TestDenyListBig(t *testing.T) {
	ctx := context.Background()
	dir, reg, keys, cl := startCity(t, 2)
	t1 := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	defer t1.stop(t)

	const n = 10_000
	media := make([]clearing.DenyMedium, n)
	for i := range media {
		media[i] = clearing.DenyMedium{Media: fare.Card, Token: fmt.Sprintf("card-%05d", i), Reason: "bulk"}
	}
	start := time.Now()
	listed, err := cl.DenyAll(ctx, media)
	if err != nil || listed != n {
		t.Fatalf("DenyAll: %d listed, %v", listed, err)
	}
	t.Logf("clearing listed %d media in %s", n, time.Since(start).Round(time.Millisecond))
	waitDenyVersion(t, t1, n, 30*time.Second)
	t.Logf("running terminal holds them %s after the first write", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	t2 := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t2")
	defer t2.stop(t)
	waitDenyVersion(t, t2, n, 30*time.Second)
	t.Logf("a terminal started afterwards read the bucket whole in %s", time.Since(start).Round(time.Millisecond))
	for _, rt := range []*runningTerminal{t1, t2} {
		if _, got := rt.DenyListVersion(); got != n {
			t.Fatalf("%s holds %d entries, want %d", rt.ID(), got, n)
		}
		checkDecision(t, rt, fare.Card, "card-00000", "denied/deny-list")
		checkDecision(t, rt, fare.Card, "card-09999", "denied/deny-list")
		checkDecision(t, rt, fare.Card, "card-10000", "accepted/card")
	}
	if err := cl.Undeny(ctx, fare.Card, "card-04242"); err != nil {
		t.Fatal(err)
	}
	for _, rt := range []*runningTerminal{t1, t2} {
		waitDenyVersion(t, rt, n+1, 10*time.Second)
		checkDecision(t, rt, fare.Card, "card-04242", "accepted/card")
		// Nothing genuine is refused.
		if by := rt.DenyRefusals(); by[terminal.DenyRefusedUntrusted]+by[terminal.DenyRefusedMalformed]+by[terminal.DenyRefusedOlder] != 0 {
			t.Errorf("%s refused genuine deny-list messages: %v", rt.ID(), by)
		}
	}
	if r, d := cl.GateListGuard(); r != 0 || d != 0 {
		t.Errorf("with nobody attacking, clearing repaired %d values and deleted %d consumers", r, d)
	}
}

// labelled is the value of metric name's series with label=value.
func labelled(t *testing.T, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return metricValue(m)
				}
			}
		}
	}
	return -1
}

// TestDenyListRestoredClearing: clearing's data dir (store and JetStream)
// is restored from a backup older than what a terminal holds. The terminal
// refuses the older list (counted, logged); its next watermark request
// shows clearing the newer head it follows, which clearing signed, and
// clearing numbers its list past it (raiseDenyVersion): the terminal then
// follows the restored list, dropping what clearing's bucket does not hold,
// without waiting for enough new changes to pass its version.
func TestDenyListRestoredClearing(t *testing.T) {
	ctx := context.Background()
	f := newRestoreFixture(t)
	cl := startClearing(t, f.cfg)
	promReg := prometheus.NewRegistry()
	t1 := startTerminalWith(t, f.dir, cl.NATSURL(), f.reg, f.keys, "t1", func(c *terminal.Config) { c.Metrics = promReg })
	defer t1.stop(t)
	deny := func(tokens ...string) {
		t.Helper()
		for _, tok := range tokens {
			if err := cl.Deny(ctx, fare.Card, tok, "reported stolen"); err != nil {
				t.Fatal(err)
			}
		}
	}
	deny("a1", "a2")
	waitDenyVersion(t, t1, 2, 10*time.Second)
	cl.stop(t)
	f.backUp(t)
	cl = startClearing(t, f.cfg)
	deny("a3", "a4")
	waitDenyVersion(t, t1, 4, 10*time.Second)
	cl.stop(t)

	// Restored: clearing is back at version 2.
	f.restore(t)
	cl = startClearing(t, f.cfg)
	defer cl.stop(t)
	if v, n := cl.DenyListVersion(); v != 2 || n != 2 {
		t.Fatalf("restored clearing at version %d with %d entries", v, n)
	}
	// The gate refuses the restored, older head, unless its watermark
	// request had clearing number past it first (a race the machine's load
	// decides; the refusal itself: terminal TestGateListCopy).
	waitFor(t, "the older list refused, or numbered past", 20*time.Second, func() bool {
		v, _ := cl.DenyListVersion()
		return v > 4 || labelled(t, promReg, "faregate_terminal_deny_refused_total", "reason", terminal.DenyRefusedOlder) > 0
	})
	// Clearing learns of the newer head from the gate and numbers past it;
	// the gate follows the restored list (a3 and a4 dropped).
	waitFor(t, "the gate following the restored list", 20*time.Second, func() bool {
		v, n := cl.DenyListVersion()
		tv, tn := t1.DenyListVersion()
		return v > 4 && tv == v && n == 2 && tn == 2
	})
	checkDecision(t, t1, fare.Card, "a3", "accepted/card")
	deny("b1", "b2", "b3")
	waitFor(t, "the new listings at the gate", 20*time.Second, func() bool {
		v, _ := cl.DenyListVersion()
		tv, tn := t1.DenyListVersion()
		return tv == v && tn == 5
	})
	for tok, want := range map[string]string{"a1": "denied/deny-list", "b3": "denied/deny-list", "a3": "accepted/card", "a4": "accepted/card"} {
		checkDecision(t, t1, fare.Card, tok, want)
	}
}

// TestDenyQueue: changes queued in clearing's data dir (what `faregate
// clearing deny add|remove` writes while clearing holds its store) are
// applied by the running clearing within a second and reach the gates; a
// malformed request is set aside; one queued while clearing is stopped is
// applied at its next start; a stopped clearing's list reads back.
func TestDenyQueue(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	dataDir := filepath.Join(dir, "clearing")
	cfg := clearing.Config{DataDir: dataDir, Registry: reg, Ledger: led, Period: time.Hour, NATSPort: freePort(t)}
	cl := startClearing(t, cfg)
	t1 := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	defer t1.stop(t)

	queue := func(m fare.MediaKind, token string, listed bool, reason string) string {
		t.Helper()
		path, err := clearing.QueueDenyChange(dataDir, m, token, listed, reason, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if strings.Contains(string(b), token) {
			t.Fatalf("the queued request holds the raw token: %s", b)
		}
		return path
	}
	bad := filepath.Join(dataDir, clearing.DenyRequestsDir, "00000000000000000001-junk.json")
	if err := os.MkdirAll(filepath.Dir(bad), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(`{"key":"zz","media":"card","listed":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p1 := queue(fare.Card, "queued-1", true, "reported stolen")
	p2 := queue(fare.Face, "queued-2", true, "fare evasion")
	waitFor(t, "queued changes applied", 5*time.Second, func() bool {
		_, e1 := os.Stat(p1)
		_, e2 := os.Stat(p2)
		return os.IsNotExist(e1) && os.IsNotExist(e2)
	})
	waitDenyVersion(t, t1, 2, 5*time.Second)
	t.Logf("queued changes reached the gate in %s", time.Since(start).Round(time.Millisecond))
	checkDecision(t, t1, fare.Card, "queued-1", "denied/deny-list")
	checkDecision(t, t1, fare.Face, "queued-2", "denied/deny-list")
	if _, err := os.Stat(bad + ".rejected"); err != nil {
		t.Errorf("malformed request not set aside: %v", err)
	}
	if _, err := clearing.QueueDenyChange(dataDir, fare.Card, "x", true, "", time.Now()); err == nil {
		t.Error("queued a listing without a reason")
	}
	if _, _, err := clearing.ReadDenyList(dataDir, quietLogger()); err == nil {
		t.Error("read the store of a running clearing")
	}

	// Queued while clearing is stopped: applied at its next start.
	cl.stop(t)
	queue(fare.Card, "queued-1", false, "")
	if pending, err := clearing.PendingDenyRequests(dataDir); err != nil || len(pending) != 1 {
		t.Fatalf("pending requests: %v, %v", pending, err)
	}
	cl = startClearing(t, cfg)
	waitDenyVersion(t, t1, 3, 10*time.Second)
	checkDecision(t, t1, fare.Card, "queued-1", "accepted/card")
	cl.stop(t)
	version, entries, err := clearing.ReadDenyList(dataDir, quietLogger())
	if err != nil || version != 3 || len(entries) != 1 || entries[0].Key != fare.DenyKey(fare.Face, "queued-2") || entries[0].Reason != "fare evasion" {
		t.Fatalf("stopped clearing's list: version %d, %+v, %v", version, entries, err)
	}
}

// TestDenyListAcrossKeyRotation: clearing's confirmation key was rotated
// and a gate provisioned with the old key has no confirmation to learn the
// new one from: it verifies the bucket's entries through the chain bundled
// with them, those written before it started and after. A stranger's link
// in front of an entry signed with the stranger's key is refused.
func TestDenyListAcrossKeyRotation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	dataDir := filepath.Join(dir, "clearing")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, clearing.ConfirmKeyFile), []byte(fmt.Sprintf("%x", testConfirmKey.Seed())), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := clearing.RotateConfirmKey(dataDir, time.Now()); err != nil {
		t.Fatal(err)
	}
	next, err := fare.LoadOrCreateKey(filepath.Join(dataDir, clearing.ConfirmKeyFile), "key")
	if err != nil {
		t.Fatal(err)
	}
	cl := startClearing(t, clearing.Config{DataDir: dataDir, Registry: reg, Ledger: led, Period: time.Hour, ConfirmKey: next})
	defer cl.stop(t)
	if err := cl.Deny(ctx, fare.Card, "before-start", "reported stolen"); err != nil {
		t.Fatal(err)
	}
	t1 := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1") // provisioned with the old key only
	defer t1.stop(t)
	waitDenyVersion(t, t1, 1, 10*time.Second) // the bucket read whole, through the chain
	if err := cl.Deny(ctx, fare.Face, "after-start", "fare evasion"); err != nil {
		t.Fatal(err)
	}
	waitDenyVersion(t, t1, 2, 10*time.Second) // a change followed, through the chain
	checkDecision(t, t1, fare.Card, "before-start", "denied/deny-list")
	checkDecision(t, t1, fare.Face, "after-start", "denied/deny-list")

	_, stranger, _ := ed25519.GenerateKey(nil)
	_, strangerNext, _ := ed25519.GenerateKey(nil)
	rot, _ := (&fare.KeyRotation{NewKey: strangerNext.Public().(ed25519.PublicKey), IssuedAt: time.Now()}).Sign(stranger)
	victim := fare.HashDeny(fare.Card, "victim")
	forged, _ := (&fare.GateEntry{List: fare.DenyGateList, Version: 99, Key: victim, Listed: true}).Sign(strangerNext)
	admin := adminConn(t, cl.NATSURL())
	defer admin.Close()
	before := t1.DenyRefusals()[terminal.DenyRefusedUntrusted]
	if err := admin.Publish("$KV."+fare.DenyBucket+"."+victim.String(), fare.Bundle([][]byte{rot}, forged)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stranger's chain refused", 5*time.Second, func() bool { return t1.DenyRefusals()[terminal.DenyRefusedUntrusted] == before+1 })
	checkDecision(t, t1, fare.Card, "victim", "accepted/card")
	if v, _ := t1.DenyListVersion(); v != 2 {
		t.Fatalf("after the stranger's entry the terminal is at version %d", v)
	}
}

// TestDenyChangesWrittenTogether: single changes made at the same time
// (the collector's billing workers listing declined riders) are written
// in one synced transaction, each caller told its own outcome; a change
// that cannot be written fails alone.
func TestDenyChangesWrittenTogether(t *testing.T) {
	ctx := context.Background()
	dir, reg, keys, cl := startCity(t, 2)
	t1 := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	defer t1.stop(t)
	if err := cl.Deny(ctx, fare.Card, "card-bad", "lost"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Store().CorruptDenyRecord(fare.Card, "card-bad"); err != nil {
		t.Fatal(err)
	}
	const n = 100
	// round makes n changes at once while the write lock is held, so all
	// of them queue, and returns each one's error and the writes it took.
	round := func(change func(i int) error) ([]error, uint64) {
		release := cl.HoldDenyWrites()
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { errs[i] = change(i) })
		}
		for deadline := time.Now().Add(10 * time.Second); cl.DenyChangesWaiting() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d changes queued", cl.DenyChangesWaiting(), n)
			}
		}
		w0 := cl.DenyWrites()
		release()
		wg.Wait()
		return errs, cl.DenyWrites() - w0
	}
	// Ninety-nine listings and the unlisting of the corrupt record: the
	// group fails, then each is written alone.
	errs, writes := round(func(i int) error {
		if i == 0 {
			return cl.Undeny(ctx, fare.Card, "card-bad")
		}
		return cl.Deny(ctx, fare.Card, fmt.Sprintf("card-%03d", i), "lost")
	})
	if errs[0] == nil || !strings.Contains(errs[0].Error(), "deny-list record") {
		t.Errorf("unlisting a corrupt record: %v, want its error", errs[0])
	}
	for i, err := range errs[1:] {
		if err != nil {
			t.Errorf("card-%03d: %v (another's change failed, not this one)", i+1, err)
		}
	}
	if writes != 1+n {
		t.Errorf("%d writes for a failed group of %d, want the group and each alone: %d", writes, n, 1+n)
	}
	// A hundred more at once: one transaction.
	errs, writes = round(func(i int) error {
		return cl.Deny(ctx, fare.Card, fmt.Sprintf("card-%03d", n+i), "lost")
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("card-%03d: %v", n+i, err)
		}
	}
	if writes != 1 {
		t.Errorf("%d changes made at once took %d writes, want 1", n, writes)
	}
	// The gates hold them all: card-bad, 99, then 100.
	const version = 1 + (n - 1) + n
	if v, entries := cl.DenyListVersion(); v != version || entries != version {
		t.Fatalf("deny list version %d with %d entries, want %d", v, entries, version)
	}
	waitDenyVersion(t, t1, version, 30*time.Second)
	checkDecision(t, t1, fare.Card, "card-bad", "denied/deny-list")
	checkDecision(t, t1, fare.Card, "card-001", "denied/deny-list")
	checkDecision(t, t1, fare.Card, "card-199", "denied/deny-list")
	checkDecision(t, t1, fare.Card, "card-200", "accepted/card")
}

// TestWrongClearingKeyIsNotSynced: a gate provisioned with a key that is
// not clearing's refuses every list value, so it holds no deny list; it
// must not say its lists are synced (an outside test saw "gate lists
// synced" and a listed card let through), and its log says what to check.
func TestWrongClearingKeyIsNotSynced(t *testing.T) {
	ctx := context.Background()
	dir, reg, keys, cl := startCity(t, 1)
	if err := cl.Deny(ctx, fare.Card, "stolen-9", "reported stolen"); err != nil {
		t.Fatal(err)
	}
	_, wrong, _ := ed25519.GenerateKey(nil)
	var logs syncBuffer
	t1 := startTerminalWith(t, dir, cl.NATSURL(), reg, keys, "t1", func(c *terminal.Config) {
		c.ClearingKeys = []ed25519.PublicKey{wrong.Public().(ed25519.PublicKey)}
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	defer t1.stop(t)
	waitFor(t, "the refusal said", 10*time.Second, func() bool { return strings.Contains(logs.String(), "gate lists NOT synced") })
	select {
	case <-t1.ListsSynced():
		t.Fatal("a gate that refused every list value says its lists are synced")
	default:
	}
	if !strings.Contains(logs.String(), "is --clearing-key clearing's current key?") {
		t.Errorf("the log does not point at --clearing-key:\n%s", logs.String())
	}
}

// TestDenyListRestoredClearingReusesVersions: a card listed then unlisted
// in the history a restore lost (x: 2, 3) and listed again after it is
// refused at the gate: clearing numbers past the head the gate showed, and
// the gate takes the bucket's entries when they, not its copy, make the
// head. (Outside reviews saw such a card, reported stolen after a restore,
// keep passing: the gate dropped the entry as not newer than its own, and
// refused the restored clearing's older head until its version passed the
// gate's.)
func TestDenyListRestoredClearingReusesVersions(t *testing.T) {
	ctx := context.Background()
	f := newRestoreFixture(t)
	cl := startClearing(t, f.cfg)
	t1 := startTerminal(t, f.dir, cl.NATSURL(), f.reg, f.keys, "t1")
	defer t1.stop(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cl.Deny(ctx, fare.Card, "a1", "reported stolen")) // 1
	waitDenyVersion(t, t1, 1, 10*time.Second)
	cl.stop(t)
	f.backUp(t)
	cl = startClearing(t, f.cfg)
	must(cl.Deny(ctx, fare.Card, "x", "reported stolen")) // 2, lost with the restore
	must(cl.Undeny(ctx, fare.Card, "x"))                  // 3, lost: found again
	waitDenyVersion(t, t1, 3, 10*time.Second)
	cl.stop(t)
	f.restore(t)
	cl = startClearing(t, f.cfg)
	defer cl.stop(t)
	// x stolen again: one change only, clearing never passing the gate's
	// version by its own changes (it learns the gate's head instead).
	must(cl.Deny(ctx, fare.Card, "x", "stolen again"))
	waitFor(t, "the gate at clearing's list", 20*time.Second, func() bool {
		v, n := cl.DenyListVersion()
		tv, tn := t1.DenyListVersion()
		return v > 3 && tv == v && tn == n
	})
	for tok, want := range map[string]string{"a1": "denied/deny-list", "x": "denied/deny-list", "w": "accepted/card"} {
		checkDecision(t, t1, fare.Card, tok, want)
	}
}

// restoreFixture is clearing on a data dir a test backs up and restores
// whole (store and embedded JetStream, as an operator restores a backup),
// on a chain that goes on.
type restoreFixture struct {
	dir  string
	reg  *clearing.Registry
	keys map[string]ed25519.PrivateKey
	cfg  clearing.Config
}

func newRestoreFixture(t *testing.T) *restoreFixture {
	t.Helper()
	f := &restoreFixture{dir: t.TempDir()}
	f.reg, f.keys = testRegistry(2)
	led := openLedger(t, filepath.Join(f.dir, "chain"))
	t.Cleanup(func() { led.Close() })
	f.cfg = clearing.Config{DataDir: filepath.Join(f.dir, "clearing"), Registry: f.reg, Ledger: led, Period: time.Hour, NATSPort: freePort(t)}
	return f
}

func (f *restoreFixture) backup() string { return filepath.Join(f.dir, "backup") }

// backUp copies the (stopped) clearing's data dir aside.
func (f *restoreFixture) backUp(t *testing.T) {
	t.Helper()
	if err := os.CopyFS(f.backup(), os.DirFS(f.cfg.DataDir)); err != nil {
		t.Fatal(err)
	}
}

// feedCityRestoreFixture is a restore fixture of a city with a fare feed
// (enrolments need one), on a port gates reconnect to.
func feedCityRestoreFixture(t *testing.T) *restoreFixture {
	t.Helper()
	fc := startFeedCity(t)
	fc.cl.stop(t)
	f := &restoreFixture{dir: fc.dir, reg: fc.reg, keys: fc.keys}
	led := openLedger(t, filepath.Join(fc.dir, "chain2"))
	t.Cleanup(func() { led.Close() })
	f.cfg = clearing.Config{DataDir: filepath.Join(fc.dir, "clearing2"), Registry: fc.reg, Ledger: led, Period: time.Hour,
		Feed: fc.feed, FeedVersion: "city-test", MaxDeviceTimeAhead: 60 * 24 * time.Hour, NATSPort: freePort(t)}
	return f
}

// restore puts the backup in place of the (stopped) clearing's data dir.
func (f *restoreFixture) restore(t *testing.T) {
	t.Helper()
	if err := os.RemoveAll(f.cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(f.cfg.DataDir, os.DirFS(f.backup())); err != nil {
		t.Fatal(err)
	}
}

// TestGateResumesItsCopy: a gate that holds a copy of the lists asks to
// resume from where it stands, and clearing sends only what was written
// since (an outside test had 600 gates reconnecting at once read a list of
// 50,000 media whole each, for half a minute). A restarted gate resumes
// from the position stored with its copy and decides from what changed
// while it was off. A clearing restored from a backup, whose stream numbers
// new values with sequences the gate has passed, is found by the list's
// signed head sent with the grant: the gate's copy does not make it, and
// the gate reads the list whole.
func TestGateResumesItsCopy(t *testing.T) {
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	synced := func(rt *runningTerminal) {
		t.Helper()
		select {
		case <-rt.ListsSynced():
		case <-time.After(15 * time.Second):
			t.Fatalf("%s's lists not synced in 15 s", rt.ID())
		}
	}
	t.Run("restarted gate", func(t *testing.T) {
		dir, reg, keys, cl := startCity(t, 1)
		const n = 2000
		media := make([]clearing.DenyMedium, n)
		for i := range media {
			media[i] = clearing.DenyMedium{Media: fare.Card, Token: fmt.Sprintf("card-%04d", i), Reason: "bulk"}
		}
		if listed, err := cl.DenyAll(ctx, media); err != nil || listed != n {
			t.Fatalf("DenyAll: %d, %v", listed, err)
		}
		t1 := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
		synced(t1)
		if served, resumed, _ := cl.GateFeedCounts(); served != 2 || resumed != 0 {
			t.Fatalf("a new gate: %d feeds granted, %d resumed; want 2 read whole", served, resumed)
		}
		t1.stop(t)
		must(cl.Deny(ctx, fare.Card, "late-1", "reported stolen"))
		must(cl.Undeny(ctx, fare.Card, "card-0000"))
		t1 = startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
		defer t1.stop(t)
		synced(t1)
		// (A restart within half a second of the last grant is refused as
		// too soon, and asked again.)
		if served, resumed, _ := cl.GateFeedCounts(); served != 4 || resumed != 2 {
			t.Fatalf("the restarted gate: %d feeds granted, %d resumed; want 2 more, both resumed", served, resumed)
		}
		v, listed := cl.DenyListVersion()
		if tv, tn := t1.DenyListVersion(); tv != v || tn != listed || tn != n {
			t.Fatalf("resumed copy at version %d with %d listed; clearing at %d with %d", tv, tn, v, listed)
		}
		for tok, want := range map[string]string{"late-1": "denied/deny-list", "card-0000": "accepted/card", "card-1999": "denied/deny-list"} {
			checkDecision(t, t1, fare.Card, tok, want)
		}
		// Followed after resuming, as after a whole read.
		must(cl.Deny(ctx, fare.Card, "late-2", "reported stolen"))
		waitDenyVersion(t, t1, v+1, 10*time.Second)
		checkDecision(t, t1, fare.Card, "late-2", "denied/deny-list")
	})
	// The gate's copy stands at sequence 6 of the stream; the restored
	// stream stands at 2 and numbers the values written after the restore
	// from 3: ending before the gate's position (read whole at once: the
	// head clearing writes when it learns the gate's newer list would land
	// where the gate does not read), at it (nothing new after it: the head
	// sent with the grant finds the copy wrong) or past it (a head among
	// what is sent finds it). The enrolments are resumed each time.
	// Lost as one batch (x1 to x3: versions 2 to 4 on the same sequences),
	// the restored list's two listings put its head at the gate's position
	// with an older version than the gate's: refused as older, it leaves
	// the resumed copy unchecked, which is then read whole (an outside
	// review saw y1 and y2 pass).
	for _, tc := range []struct {
		after     []string
		lostBatch bool
		resumed   uint64 // feeds granted resumed; one more is the deny list whole
	}{{[]string{"y1"}, false, 1}, {[]string{"y1", "y2"}, false, 3}, {[]string{"y1", "y2", "y3"}, false, 3}, {[]string{"y1", "y2"}, true, 3}} {
		after := tc.after
		name := fmt.Sprintf("clearing restored while the gate was off, then %d listed", len(after))
		if tc.lostBatch {
			name += ", a batch lost"
		}
		t.Run(name, func(t *testing.T) {
			f := newRestoreFixture(t)
			cl := startClearing(t, f.cfg)
			t1 := startTerminal(t, f.dir, cl.NATSURL(), f.reg, f.keys, "t1")
			must(cl.Deny(ctx, fare.Card, "a1", "reported stolen")) // entry and head: sequences 1, 2
			waitDenyVersion(t, t1, 1, 10*time.Second)
			cl.stop(t)
			f.backUp(t)
			cl = startClearing(t, f.cfg)
			if tc.lostBatch {
				lost := []clearing.DenyMedium{{Media: fare.Card, Token: "x1", Reason: "bulk"}, {Media: fare.Card, Token: "x2", Reason: "bulk"}, {Media: fare.Card, Token: "x3", Reason: "bulk"}}
				if n, err := cl.DenyAll(ctx, lost); err != nil || n != 3 { // 3 to 6
					t.Fatalf("DenyAll: %d, %v", n, err)
				}
				waitDenyVersion(t, t1, 4, 10*time.Second)
			} else {
				must(cl.Deny(ctx, fare.Card, "x1", "reported stolen")) // 3, 4: lost with the restore
				must(cl.Deny(ctx, fare.Card, "x2", "reported stolen")) // 5, 6
				waitDenyVersion(t, t1, 3, 10*time.Second)
			}
			t1.stop(t)
			cl.stop(t)
			f.restore(t)
			cl = startClearing(t, f.cfg)
			defer cl.stop(t)
			want := map[string]string{"a1": "denied/deny-list", "x1": "accepted/card", "x2": "accepted/card"}
			for _, tok := range after {
				must(cl.Deny(ctx, fare.Card, tok, "reported stolen"))
				want[tok] = "denied/deny-list"
			}
			t1 = startTerminal(t, f.dir, cl.NATSURL(), f.reg, f.keys, "t1")
			defer t1.stop(t)
			synced(t1)
			// Synced, the gate refuses what clearing listed after the
			// restore, before any other exchange with clearing.
			for _, tok := range after {
				checkDecision(t, t1, fare.Card, tok, "denied/deny-list")
			}
			// With one listed, the restored list's head is older than the
			// gate's and refused, as a whole read refuses it, until the
			// gate's next watermark request shows clearing the head it
			// follows and clearing numbers past it.
			waitFor(t, "the gate at clearing's list", 20*time.Second, func() bool {
				v, n := cl.DenyListVersion()
				tv, tn := t1.DenyListVersion()
				return tv == v && tn == n
			})
			for tok, want := range want {
				checkDecision(t, t1, fare.Card, tok, want)
			}
			if served, resumed, _ := cl.GateFeedCounts(); resumed != tc.resumed || served != resumed+1 {
				t.Errorf("%d feeds granted, %d resumed; want %d resumed and the deny list read whole once", served, resumed, tc.resumed)
			}
		})
	}
}

// TestGateResumedAfterRestores: a gate's copy after restores of clearing
// from a backup (the store and the embedded JetStream together: the
// buckets' streams keep their names and number new values with sequences
// the gate has read), both found by an outside review.
//   - The gate reads the restored list whole, then clearing restarts and
//     lists two cards on sequences below the gate's old position: a whole
//     read leaves the copy's position where the stream ends, even lower,
//     so the next resumption starts there and takes them. (Were it left
//     higher, the head check would now find the copy short and read the
//     list whole: this case passes with either.)
//   - A restored clearing's change of a medium's enrolment periods lands
//     on sequences the gate has read, at the version and with the media
//     the gate holds: the enrolments' head digests each medium with its
//     entry's version, so the resumed copy does not make it and is read
//     whole, and the gate then holds clearing's periods for every medium
//     (the copy takes the bucket's entries, which make the head).
func TestGateResumedAfterRestores(t *testing.T) {
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Run("position lowered by a whole read", func(t *testing.T) {
		f := newRestoreFixture(t)
		cl := startClearing(t, f.cfg)
		t1 := startTerminal(t, f.dir, cl.NATSURL(), f.reg, f.keys, "t1")
		defer t1.stop(t)
		must(cl.Deny(ctx, fare.Card, "a1", "reported stolen")) // sequences 1, 2
		waitDenyVersion(t, t1, 1, 10*time.Second)
		cl.stop(t)
		f.backUp(t)
		cl = startClearing(t, f.cfg)
		must(cl.Deny(ctx, fare.Card, "x1", "reported stolen")) // 3 to 6, lost
		must(cl.Deny(ctx, fare.Card, "x2", "reported stolen"))
		waitDenyVersion(t, t1, 3, 10*time.Second)
		cl.stop(t)
		f.restore(t)
		cl = startClearing(t, f.cfg)
		// The gate's position (6) is past the restored head (2): read whole.
		waitFor(t, "the restored list read whole", 20*time.Second, func() bool { s, r, _ := cl.GateFeedCounts(); return s-r >= 1 })
		time.Sleep(time.Second)
		cl.stop(t)
		cl = startClearing(t, f.cfg)
		defer cl.stop(t)
		must(cl.Deny(ctx, fare.Card, "y1", "reported stolen")) // 3 to 6 again
		must(cl.Deny(ctx, fare.Card, "y2", "reported stolen"))
		waitFor(t, "y1 and y2 refused at the gate", 15*time.Second, func() bool {
			return denyDecisionOf(t1, "y1") == "denied/deny-list" && denyDecisionOf(t1, "y2") == "denied/deny-list"
		})
	})
	t.Run("enrolment periods changed on reused sequences", func(t *testing.T) {
		f := feedCityRestoreFixture(t)
		cl := startClearing(t, f.cfg)
		t1 := startTerminal(t, f.dir, cl.NATSURL(), f.reg, f.keys, "bus-s01-g1")
		defer t1.stop(t)
		until, at := time.Now().Add(30*24*time.Hour), time.Now().Add(3*24*time.Hour)
		enrol := func(tok string) {
			t.Helper()
			if _, err := cl.Enrol(ctx, fare.Card, tok, clearing.EnrolRequest{Category: "concession", ApprovedBy: "desk", ValidUntil: until}); err != nil {
				t.Fatal(err)
			}
		}
		revoke := func(tok string) {
			t.Helper()
			if _, err := cl.RevokeEnrolment(ctx, cl.RiderAccount(fare.Card, tok), "desk", time.Time{}, ""); err != nil {
				t.Fatal(err)
			}
		}
		enrol("r") // record 1
		enrol("s") // record 2
		waitFor(t, "both enrolments at the gate", 10*time.Second, func() bool { v, n := t1.EnrolmentVersion(); return v == 2 && n == 2 })
		cl.stop(t)
		f.backUp(t)
		cl = startClearing(t, f.cfg)
		revoke("r") // record 3, lost with the restore
		waitFor(t, "r's revocation at the gate", 10*time.Second, func() bool { v, _ := t1.EnrolmentVersion(); return v == 3 })
		cl.stop(t)
		f.restore(t)
		cl = startClearing(t, f.cfg)
		defer cl.stop(t)
		revoke("s") // record 3 again, on the same sequences
		waitFor(t, "the gate at clearing's periods", 15*time.Second, func() bool {
			for _, tok := range []string{"r", "s"} {
				_, periods, err := cl.RiderEnrolments(cl.RiderAccount(fare.Card, tok))
				if err != nil || t1.Category(fare.Card, tok, at) != fare.CategoryAt(periods, at) {
					return false
				}
			}
			return true
		})
		if got := t1.Category(fare.Card, "s", at); got != "" {
			t.Fatalf("s, revoked, is %q at the gate", got)
		}
	})
}

// TestEnrolmentsRestoredClearing: as TestDenyListRestoredClearing, for the
// enrolments. A clearing restored from a backup older than the gate's copy
// issues an older head, which the gate refuses; the gate's next watermark
// request shows the newer head it follows (fare.EnrolHeadHeader), clearing
// numbers its enrolments past it, and the gate follows the restored list:
// an enrolment lost with the restore no longer gives its category there,
// without waiting for enough new enrolments to pass the gate's version
// (before, the gate kept it that long). The next enrolment is numbered
// after the raised version and reaches the gate.
func TestEnrolmentsRestoredClearing(t *testing.T) {
	ctx := context.Background()
	f := feedCityRestoreFixture(t)
	cl := startClearing(t, f.cfg)
	promReg := prometheus.NewRegistry()
	t1 := startTerminalWith(t, f.dir, cl.NATSURL(), f.reg, f.keys, "bus-s01-g1", func(c *terminal.Config) { c.Metrics = promReg })
	defer t1.stop(t)
	until, at := time.Now().Add(30*24*time.Hour), time.Now().Add(3*24*time.Hour)
	enrol := func(tok string) {
		t.Helper()
		if _, err := cl.Enrol(ctx, fare.Card, tok, clearing.EnrolRequest{Category: "concession", ApprovedBy: "desk", ValidUntil: until}); err != nil {
			t.Fatal(err)
		}
	}
	enrol("r") // record 1
	enrol("s") // record 2
	waitFor(t, "both enrolments at the gate", 10*time.Second, func() bool { v, n := t1.EnrolmentVersion(); return v == 2 && n == 2 })
	cl.stop(t)
	f.backUp(t)
	cl = startClearing(t, f.cfg)
	enrol("u") // record 3, lost with the restore
	waitFor(t, "u's enrolment at the gate", 10*time.Second, func() bool { v, n := t1.EnrolmentVersion(); return v == 3 && n == 3 })
	if got := t1.Category(fare.Card, "u", at); got != "concession" {
		t.Fatalf("u is %q at the gate", got)
	}
	cl.stop(t)

	f.restore(t)
	cl = startClearing(t, f.cfg)
	defer cl.stop(t)
	if v, n := cl.EnrolmentListVersion(); v != 2 || n != 2 {
		t.Fatalf("restored clearing's enrolments at version %d with %d media", v, n)
	}
	waitFor(t, "the older head refused, or numbered past", 20*time.Second, func() bool {
		v, _ := cl.EnrolmentListVersion()
		return v > 3 || labelled(t, promReg, "faregate_terminal_deny_refused_total", "reason", terminal.DenyRefusedOlder) > 0
	})
	waitFor(t, "the gate following the restored enrolments", 20*time.Second, func() bool {
		v, n := cl.EnrolmentListVersion()
		tv, tn := t1.EnrolmentVersion()
		return v > 3 && tv == v && n == 2 && tn == 2
	})
	if got := t1.Category(fare.Card, "u", at); got != "" {
		t.Fatalf("u, enrolled only in what the restore lost, is %q at the gate", got)
	}
	raised, _ := cl.EnrolmentListVersion()
	enrol("w")
	hist, _, err := cl.RiderEnrolments(cl.RiderAccount(fare.Card, "w"))
	if err != nil || len(hist) != 1 || hist[0].Seq != raised+1 {
		t.Fatalf("w's enrolment after the raise to %d: %+v, %v", raised, hist, err)
	}
	waitFor(t, "w's enrolment at the gate", 15*time.Second, func() bool {
		tv, tn := t1.EnrolmentVersion()
		return tv == raised+1 && tn == 3 && t1.Category(fare.Card, "w", at) == "concession"
	})
	for tok, want := range map[string]string{"r": "concession", "s": "concession", "u": ""} {
		if got := t1.Category(fare.Card, tok, at); got != want {
			t.Errorf("%s is %q at the gate, want %q", tok, got, want)
		}
	}
}

// TestEnrolmentVersionReusedAfterRestore: an enrolment made after a restore
// and before any gate showed clearing its newer head takes the version a
// lost one had. A gate that held the lost one (off meanwhile) sees the
// same version with other periods: the enrolments' head digests each
// entry's periods with its version (fare.EnrolEntrySum), so its copy does
// not make the head and it takes the bucket's entry (an outside review:
// the gate kept the lost, longer enrolment for good).
func TestEnrolmentVersionReusedAfterRestore(t *testing.T) {
	ctx := context.Background()
	f := feedCityRestoreFixture(t)
	cl := startClearing(t, f.cfg)
	defer func() { cl.stop(t) }()
	t1 := startTerminal(t, f.dir, cl.NATSURL(), f.reg, f.keys, "bus-s01-g1")
	enrol := func(tok string, until time.Time) {
		t.Helper()
		if _, err := cl.Enrol(ctx, fare.Card, tok, clearing.EnrolRequest{Category: "concession", ApprovedBy: "desk", ValidUntil: until}); err != nil {
			t.Fatal(err)
		}
	}
	long, short := time.Now().Add(30*24*time.Hour), time.Now().Add(2*24*time.Hour)
	at := time.Now().Add(10 * 24 * time.Hour)
	enrol("r", long)
	enrol("s", long)
	waitFor(t, "r and s at the gate", 10*time.Second, func() bool { v, n := t1.EnrolmentVersion(); return v == 2 && n == 2 })
	cl.stop(t)
	f.backUp(t)
	cl = startClearing(t, f.cfg)
	enrol("u", long) // record 3, lost with the restore
	waitFor(t, "u at the gate", 10*time.Second, func() bool { v, n := t1.EnrolmentVersion(); return v == 3 && n == 3 })
	t1.stop(t)
	cl.stop(t)
	f.restore(t)
	cl = startClearing(t, f.cfg)
	enrol("u", short) // record 3 again, shorter
	t1 = startTerminal(t, f.dir, cl.NATSURL(), f.reg, f.keys, "bus-s01-g1")
	defer t1.stop(t)
	_, periods, err := cl.RiderEnrolments(cl.RiderAccount(fare.Card, "u"))
	if err != nil || fare.CategoryAt(periods, at) != "" || fare.CategoryAt(periods, short.Add(-time.Hour)) != "concession" {
		t.Fatalf("u's periods at clearing: %+v, %v", periods, err)
	}
	waitFor(t, "the gate at u's periods as clearing holds them", 15*time.Second, func() bool {
		v, _ := cl.EnrolmentListVersion()
		tv, tn := t1.EnrolmentVersion()
		return tv == v && tn == 3 && t1.Category(fare.Card, "u", at) == "" && t1.Category(fare.Card, "u", short.Add(-time.Hour)) == "concession"
	})
	// And across a restart of clearing: the digest it reads back from the
	// store is the one it kept change by change (the gate stays resumed).
	cl.stop(t)
	cl = startClearing(t, f.cfg)
	enrol("w", long)
	waitFor(t, "w at the gate", 15*time.Second, func() bool {
		v, _ := cl.EnrolmentListVersion()
		tv, tn := t1.EnrolmentVersion()
		return tv == v && tn == 4 && t1.Category(fare.Card, "w", at) == "concession"
	})
}

// denyDecisionOf is what rt's copy decides for an entry with card token,
// without a tap.
func denyDecisionOf(rt *runningTerminal, token string) string {
	d, why := rt.Decide(terminal.Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: token})
	return d.String() + "/" + why
}

// TestEnrolmentDigestAcrossRestart: clearing digests each enrolled medium
// with its newest record's version when it starts (one reverse seek a
// medium) exactly as it does change by change: after a restart, the next
// enrolment's head is made by the gate's copy, which stays resumed (a
// wrong digest would have the gate read the list whole). Riders with one
// record, with a repeat, and with a revocation are digested.
func TestEnrolmentDigestAcrossRestart(t *testing.T) {
	ctx := context.Background()
	fc := startFeedCity(t)
	fc.cl.stop(t)
	led := openLedger(t, filepath.Join(fc.dir, "chain2"))
	t.Cleanup(func() { led.Close() })
	cfg := clearing.Config{DataDir: filepath.Join(fc.dir, "clearing2"), Registry: fc.reg, Ledger: led, Period: time.Hour,
		Feed: fc.feed, FeedVersion: "city-test", MaxDeviceTimeAhead: 60 * 24 * time.Hour, NATSPort: freePort(t)}
	cl := startClearing(t, cfg)
	t1 := startTerminal(t, fc.dir, cl.NATSURL(), fc.reg, fc.keys, "bus-s01-g1")
	defer t1.stop(t)
	until := time.Now().Add(30 * 24 * time.Hour)
	enrol := func(tok string) {
		t.Helper()
		if _, err := cl.Enrol(ctx, fare.Card, tok, clearing.EnrolRequest{Category: "concession", ApprovedBy: "desk", ValidUntil: until}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 {
		tok := fmt.Sprintf("e%d", i)
		enrol(tok)
		switch i % 3 {
		case 1:
			enrol(tok) // a second record
		case 2:
			if _, err := cl.RevokeEnrolment(ctx, cl.RiderAccount(fare.Card, tok), "desk", time.Time{}, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, _ := cl.EnrolmentListVersion()
	waitFor(t, "the enrolments at the gate", 10*time.Second, func() bool { v, n := t1.EnrolmentVersion(); return v == want && n == 12 })
	cl.stop(t)
	cl = startClearing(t, cfg)
	defer cl.stop(t)
	enrol("late")
	want, _ = cl.EnrolmentListVersion()
	waitFor(t, "the new enrolment at the gate", 15*time.Second, func() bool { v, n := t1.EnrolmentVersion(); return v == want && n == 13 })
	// A copy that did not make the head would be read whole within a
	// second or two (a retry, then the feed asked again).
	time.Sleep(3 * time.Second)
	if served, resumed, _ := cl.GateFeedCounts(); served != resumed || served == 0 {
		t.Fatalf("%d feeds granted, %d resumed: the copy did not make the head clearing signed after its restart", served, resumed)
	}
}
