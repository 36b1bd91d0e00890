package clearing_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/terminal"
)

// TestTerminalRegistryOnChain: clearing takes terminal keys from the chain,
// where each operator manages its own terminals. A terminal registered while
// clearing runs is accepted at once; after its operator revokes it, its later
// events are quarantined as terminal-revoked, and what it sent before stays
// applied. Another operator cannot revoke it.
func TestTerminalRegistryOnChain(t *testing.T) {
	ctx, keys, led, cl, metro := chainCity(t) // t1 metro, t2 bus

	// Metro registers a new gate after clearing started.
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 0x55
	newKey := ed25519.NewKeyFromSeed(seed)
	if _, err := metro.RegisterTerminals(ctx, []ledger.TerminalRegistration{provenRegistration(newKey, "t-new", "metro", "stop-new")}); err != nil {
		t.Fatal(err)
	}

	// The new terminal connects as itself once clearing's server admits it.
	var newConn *nats.Conn
	waitFor(t, "the newly registered terminal admitted by NATS", 10*time.Second, func() bool {
		ident, _ := fare.NewNATSIdentity(newKey, "t-new")
		nc, err := nats.Connect(cl.NATSURL(), terminal.NATSOptions(ident, "t-new", "")...)
		newConn = nc
		return err == nil
	})
	defer newConn.Close()
	t1Conn := terminalConn(t, cl.NATSURL(), keys["t1"], "t1")
	defer t1Conn.Close()
	admin := adminConn(t, cl.NATSURL())
	defer admin.Close()
	conns := map[string]*nats.Conn{"t1": t1Conn, "t-new": newConn}
	js, _ := jetstream.New(admin)
	send := func(term, stop string, key ed25519.PrivateKey, seq uint64) []byte {
		t.Helper()
		ev := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: term, Operator: "metro", Stop: stop, Gate: "g1",
			Direction: fare.Entry, Media: fare.Card, MediaToken: "card-1", DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: seq}
		raw, err := fare.Sign(&ev, key)
		if err != nil {
			t.Fatal(err)
		}
		publishEvent(t, conns[term], fare.EventSubject("metro", term), raw)
		return raw
	}
	send("t1", "stop-t1", keys["t1"], 1)
	send("t-new", "stop-new", newKey, 1)
	waitFor(t, "events of t1 and the new terminal applied", 10*time.Second, func() bool { return cl.Stats().Applied == 2 })
	if q := cl.Stats().Quarantined; q != 0 {
		t.Fatalf("%d quarantined, want 0", q)
	}

	// Bus may not revoke metro's terminal; metro may.
	bus, err := led.OperatorAccount(ctx, "bus")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.RevokeTerminal(ctx, "t1"); !errors.Is(err, ledger.ErrNotTerminalOwner) {
		t.Fatalf("bus revoking metro's terminal: %v, want ErrNotTerminalOwner", err)
	}
	rcpt, err := metro.RevokeTerminal(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.SyncTerminals(ctx); err != nil {
		t.Fatal(err)
	}
	got, ok := cl.Terminals().Lookup("t1")
	if !ok || got.RevokedBlock != rcpt.BlockNumber {
		t.Fatalf("t1 in clearing's registry: %+v, %v; want revoked in block %d", got, ok, rcpt.BlockNumber)
	}
	// NATS follows the registry: t1 is disconnected and refused.
	waitFor(t, "revoked t1 disconnected", 10*time.Second, func() bool { return !t1Conn.IsConnected() })
	ident, _ := fare.NewNATSIdentity(keys["t1"], "t1")
	if nc, err := nats.Connect(cl.NATSURL(), append(terminal.NATSOptions(ident, "t1", ""), nats.MaxReconnects(0))...); err == nil {
		nc.Close()
		t.Fatal("revoked terminal t1 connected to NATS")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("revoked t1 connecting: %v, want an authorization error", err)
	}
	// An event t1 sent before its revocation, still in the stream when
	// clearing learns of it, is quarantined.
	conns["t1"] = admin
	revokedRaw := send("t1", "stop-t1", keys["t1"], 2)
	send("t-new", "stop-new", newKey, 2)
	waitFor(t, "revoked terminal's event quarantined", 10*time.Second, func() bool {
		s := cl.Stats()
		return s.Quarantined == 1 && s.Applied == 3
	})
	if n := cl.Stats().QuarantineByWhy[clearing.ReasonTerminalRevoked]; n != 1 {
		t.Fatalf("quarantined by reason %v, want 1 %s", cl.Stats().QuarantineByWhy, clearing.ReasonTerminalRevoked)
	}
	cons, err := js.OrderedConsumer(ctx, fare.QuarantineStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data()) != string(revokedRaw) || m.Headers().Get(fare.HeaderReason) != clearing.ReasonTerminalRevoked {
		t.Fatalf("quarantined %q (%s), want the revoked terminal's event", m.Headers().Get(fare.HeaderReason), m.Headers().Get(fare.HeaderDetail))
	}
	t.Logf("quarantined: %s", m.Headers().Get(fare.HeaderDetail))
	// What t1 sent before the revocation stays applied and charged.
	checkBooks(t, cl.Store(), map[string]fare.Amount{"metro": 3 * 250, "bus": 0})
}

// TestChainRegistrationsClearingRefuses: the contract takes any non-empty
// terminal id, so an operator can register "*" or ">" (which as NATS
// permissions would grant every terminal's subjects, or break every user's
// reload) or a small-order key (whose signatures anyone can forge).
// Clearing does not follow such registrations: they get no NATS user, no
// terminal entry, and clearing keeps admitting the others.
func TestChainRegistrationsClearingRefuses(t *testing.T) {
	ctx, keys, _, cl, metro := chainCity(t)
	keyOf := func(b byte) ed25519.PrivateKey {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = b
		return ed25519.NewKeyFromSeed(seed)
	}
	// Ids no key can prove (ProveKey refuses them), with 64 bytes where the
	// proof goes: the contract checks only the length.
	unprovable := func(id, stop string, key ed25519.PrivateKey) ledger.TerminalRegistration {
		return ledger.TerminalRegistration{ID: id, Stop: stop, PublicKey: [32]byte(key.Public().(ed25519.PublicKey)), KeyProof: make([]byte, 64)}
	}
	var smallOrder [32]byte
	smallOrder[0] = 1 // the identity point
	bad := []ledger.TerminalRegistration{
		unprovable("*", "s1", keyOf(0x61)),
		unprovable(">", "s1", keyOf(0x62)),
		unprovable("t-stop", "a.b", keyOf(0x63)),
		{ID: "t-identity", Stop: "s1", PublicKey: smallOrder, KeyProof: make([]byte, 64)},
		// The chain bounds no id: a 10 kB one is shown clipped, with its
		// length (an outside review's 100 kB id made every line that
		// quoted it 200 kB).
		unprovable(strings.Repeat("x", 10_000), "s1", keyOf(0x65)),
	}
	for _, r := range bad {
		if err := clearing.CheckRegistration(r.ID, "metro", r.Stop, r.PublicKey[:], r.KeyProof); err == nil {
			t.Errorf("CheckRegistration(%q, stop %q) passed", r.ID, r.Stop)
		}
	}
	// One key, one terminal: metro, which holds t1's key, proves it for a
	// second id of its own; clearing does not follow the second.
	twin := provenRegistration(keys["t1"], "t1-twin", "metro", "s1")
	if err := clearing.CheckRegistration(twin.ID, "metro", twin.Stop, twin.PublicKey[:], twin.KeyProof); err != nil {
		t.Fatalf("the twin's proof: %v (it is refused for its key, later)", err)
	}
	bad = append(bad, twin)
	good := provenRegistration(keyOf(0x64), "t-after", "metro", "s1")
	if _, err := metro.RegisterTerminals(ctx, append(bad, good)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the good registration followed", 10*time.Second, func() bool {
		_, ok := cl.Terminals().Lookup("t-after")
		return ok
	})
	refused := map[string]string{}
	for _, r := range cl.Terminals().Refused() {
		refused[r.Terminal] = r.Why
		if len(r.Terminal)+len(r.Why) > 400 {
			t.Errorf("refused registration shown in %d+%d bytes: %.100q...", len(r.Terminal), len(r.Why), r.Terminal)
		}
	}
	for _, r := range bad {
		if _, ok := cl.Terminals().Lookup(r.ID); ok {
			t.Errorf("terminal %.80q followed", r.ID)
		}
		shown := r.ID
		if len(shown) > fare.MaxIDLen {
			shown = fmt.Sprintf("%s... (%d bytes)", shown[:fare.MaxIDLen], len(shown))
		}
		if refused[shown] == "" {
			t.Errorf("terminal %.80q not among the refused as %.100q: %.300v", r.ID, shown, refused)
		}
	}
	if why := refused["t1-twin"]; !strings.Contains(why, "is terminal t1's already: one key, one terminal") {
		t.Errorf("a second terminal under t1's key: %q, want refused naming t1", why)
	}
	// The API says so beside the terminals it follows: an auditor sees
	// every refused registration, an operator its own, another none.
	srv, ts := servedAPI(t, cl.Clearing, nil)
	for _, c := range []struct {
		role     clearing.Role
		operator string
		want     int
	}{{clearing.RoleAuditor, "", len(bad)}, {clearing.RoleOperator, "metro", len(bad)}, {clearing.RoleOperator, "bus", 0}} {
		tok, err := ts.Issue(c.role, c.operator, string(c.role)+"-"+c.operator)
		if err != nil {
			t.Fatal(err)
		}
		_, out := apiCall(t, srv, http.MethodGet, "/v1/terminals", tok, nil)
		var view struct {
			Refused []clearing.RefusedRegistration `json:"refused"`
		}
		b, _ := json.Marshal(out)
		derr := json.Unmarshal(b, &view)
		if derr != nil || len(view.Refused) != c.want {
			t.Errorf("/v1/terminals as %s %s: refused %+v (%v), want %d", c.role, c.operator, view.Refused, derr, c.want)
		}
		for _, rr := range view.Refused {
			if rr.Operator != "metro" || rr.Why == "" || rr.Block == 0 || !strings.HasPrefix(rr.PublicKey, "0x") {
				t.Errorf("refused registration %+v: want metro's, with why, block and key", rr)
			}
		}
	}
	// NATS still admits the terminals it did (a ">" user would have made
	// every reload fail).
	nc := terminalConn(t, cl.NATSURL(), keys["t1"], "t1")
	nc.Close()
}

// chainCity starts clearing for testRegistry(2) (t1 metro, t2 bus) on an
// embedded chain it follows every 200 ms, and returns metro's account on
// the chain; everything stops when the test ends.
func chainCity(t *testing.T) (context.Context, map[string]ed25519.PrivateKey, *ledger.Embedded, *running, *ledger.Account) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led,
		Period: time.Hour, RegistryPoll: 200 * time.Millisecond})
	t.Cleanup(func() { cl.stop(t) })
	metro, err := led.OperatorAccount(ctx, "metro")
	if err != nil {
		t.Fatal(err)
	}
	return ctx, keys, led, cl, metro
}

// TestGateStartedBeforeItsRegistration: a gate installed and tapping before
// its operator registered its key is refused by NATS again and again (its
// user does not exist yet); once registered it connects by itself and its
// outbox drains. (nats.go drops a server that refuses the same user twice
// in a row, for good, unless told not to: the gate then never sent.)
func TestGateStartedBeforeItsRegistration(t *testing.T) {
	ctx, keys, _, cl, metro := chainCity(t)
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 0x66
	keys["t-early"] = ed25519.NewKeyFromSeed(seed)
	// The gate's own view of itself (clearing's registry does not list it).
	b, _ := json.Marshal(&clearing.Registry{Currency: "EUR", Operators: []clearing.OperatorConfig{{ID: "metro", Name: "Metro", FlatFare: 250}},
		Terminals: []clearing.TerminalPublicKey{provenTerminal(keys["t-early"], "t-early", "metro", "stop-early")}})
	reg, err := clearing.ParseRegistry(b)
	if err != nil {
		t.Fatal(err)
	}
	rt := startTerminal(t, t.TempDir(), cl.NATSURL(), reg, keys, "t-early")
	defer rt.stop(t)
	tap(t, rt.Terminal, "card-early", fare.Entry)
	// Long enough for several refusals (the first attempts come 250 ms
	// apart): before the fix the connection was closed after the second.
	time.Sleep(3 * time.Second)
	if rt.Pending() != 1 {
		t.Fatalf("%d pending before registration, want the one tap", rt.Pending())
	}
	if _, err := metro.RegisterTerminals(ctx, []ledger.TerminalRegistration{provenRegistration(keys["t-early"], "t-early", "metro", "stop-early")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the gate's outbox drained once it was registered", 30*time.Second, func() bool { return rt.Pending() == 0 })
	if s := cl.Stats(); s.Applied != 1 || s.Quarantined != 0 {
		t.Fatalf("applied %d, quarantined %d; want the one tap applied", s.Applied, s.Quarantined)
	}
}

// TestKeySquattingRefused: from the squatter's side. Metro has published
// its new gate's registry entry (key and key proof) but not registered it
// yet; bus, another operator, tries to take the key first: under an id of
// its own with metro's proof copied, with 64 bytes of its own, and under
// metro's very id (front-running it). Clearing follows none of them, so
// the key stays free: metro registers it (under another id, since the
// contract holds the front-run one) and the gate's taps are applied.
func TestKeySquattingRefused(t *testing.T) {
	ctx, _, led, cl, metro := chainCity(t)
	bus, err := led.OperatorAccount(ctx, "bus")
	if err != nil {
		t.Fatal(err)
	}
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 0x5a
	gateKey := ed25519.NewKeyFromSeed(seed)
	published := provenRegistration(gateKey, "m-new", "metro", "stop-new") // what metro's registry file shows
	forged := make([]byte, 64)
	forged[0] = 0x01
	squats := []ledger.TerminalRegistration{
		{ID: "bus-copy", Stop: "stop-new", PublicKey: published.PublicKey, KeyProof: published.KeyProof},
		{ID: "bus-forged", Stop: "stop-new", PublicKey: published.PublicKey, KeyProof: forged},
		{ID: "m-new", Stop: "stop-new", PublicKey: published.PublicKey, KeyProof: published.KeyProof},
	}
	// The pre-send check refuses each for bus; the contract cannot check
	// ed25519, so bus sends them anyway.
	for _, sq := range squats {
		err := clearing.CheckRegistration(sq.ID, "bus", sq.Stop, sq.PublicKey[:], sq.KeyProof)
		if err == nil || !strings.Contains(err.Error(), "key proof does not verify") {
			t.Errorf("CheckRegistration of bus's %s: %v, want the key proof refused", sq.ID, err)
		}
	}
	if _, err := bus.RegisterTerminals(ctx, squats); err != nil {
		t.Fatal(err)
	}
	// The contract now holds "m-new" for bus: metro's own registration of
	// it is refused by the contract (ids are never reused).
	if _, err := metro.RegisterTerminals(ctx, []ledger.TerminalRegistration{published}); !errors.Is(err, ledger.ErrTerminalExists) {
		t.Fatalf("metro registering the front-run id: %v, want ErrTerminalExists", err)
	}
	waitFor(t, "the squats seen and refused", 10*time.Second, func() bool { return len(cl.Terminals().Refused()) == len(squats) })
	for _, r := range cl.Terminals().Refused() {
		if r.Operator != "bus" || !strings.Contains(r.Why, "key proof does not verify") {
			t.Errorf("refused %s of %s: %q, want bus's, for its key proof", r.Terminal, r.Operator, r.Why)
		}
		if _, ok := cl.Terminals().Lookup(r.Terminal); ok {
			t.Errorf("squat %s followed", r.Terminal)
		}
	}
	if id, ok := cl.Terminals().KeyHolder(published.PublicKey); ok {
		t.Fatalf("the gate's key is held by %s after the squats", id)
	}
	// Put on the embedded chain from a registry file, the front-run id is
	// refused naming who holds it and what to do.
	withSquatted := *cl.Registry()
	withSquatted.Terminals = append(slices.Clone(withSquatted.Terminals), provenTerminal(gateKey, "m-new", "metro", "stop-new"))
	if err := clearing.PublishRegistry(ctx, led, &withSquatted); err == nil || !strings.Contains(err.Error(), "terminal id m-new is on chain, registered by operator bus") {
		t.Fatalf("publishing a registry with the front-run id: %v", err)
	}
	// Metro registers the same key under another id, with a new proof the
	// gate's key signs: followed, and the gate's taps are applied as
	// metro's.
	rightful := provenRegistration(gateKey, "m-new2", "metro", "stop-new")
	if _, err := metro.RegisterTerminals(ctx, []ledger.TerminalRegistration{rightful}); err != nil {
		t.Fatal(err)
	}
	var nc *nats.Conn
	waitFor(t, "metro's gate admitted by NATS", 10*time.Second, func() bool {
		ident, _ := fare.NewNATSIdentity(gateKey, "m-new2")
		c, err := nats.Connect(cl.NATSURL(), terminal.NATSOptions(ident, "m-new2", "")...)
		nc = c
		return err == nil
	})
	defer nc.Close()
	if got, ok := cl.Terminals().Lookup("m-new2"); !ok || got.Operator != "metro" {
		t.Fatalf("m-new2 in clearing's registry: %+v %v, want metro's", got, ok)
	}
	ev := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: "m-new2", Operator: "metro", Stop: "stop-new", Gate: "g1",
		Direction: fare.Entry, Media: fare.Card, MediaToken: "card-sq", DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: 1}
	raw, err := fare.Sign(&ev, gateKey)
	if err != nil {
		t.Fatal(err)
	}
	publishEvent(t, nc, fare.EventSubject("metro", "m-new2"), raw)
	waitFor(t, "the rightful gate's tap applied", 10*time.Second, func() bool { return cl.Stats().Applied == 1 })
	checkBooks(t, cl.Store(), map[string]fare.Amount{"metro": 250, "bus": 0})
}

// laggingView is a node whose answer to a registry read lacks the changes
// of the newest blocks once (a replica behind a load balancer answering
// before it has their logs, or a Clique chain about to reorganise them in),
// while saying it read up to its head.
type laggingView struct {
	ledger.Ledger
	hideFrom atomic.Uint64 // changes at or past this block are left out once (0: none)
}

func (l *laggingView) TerminalChanges(ctx context.Context, from uint64) (ledger.RegistryRead, error) {
	read, err := l.Ledger.TerminalChanges(ctx, from)
	if h := l.hideFrom.Swap(0); h != 0 {
		read.Changes = slices.DeleteFunc(read.Changes, func(c ledger.TerminalChange) bool { return c.Block >= h })
	}
	return read, err
}

// TestRegistryFollowerRereadsRecentBlocks: a revocation a node left out of
// one answer (its block already counted as read) is followed at the next
// read, which reads the recent blocks again (an outside review's follower
// never saw it: the revoked terminal's taps were accepted until clearing
// restarted); following a change again changes nothing.
func TestRegistryFollowerRereadsRecentBlocks(t *testing.T) {
	ctx := context.Background()
	led := openLedger(t, filepath.Join(t.TempDir(), "chain"))
	defer led.Close()
	metro, err := led.OperatorAccount(ctx, "metro")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]ed25519.PrivateKey{}
	for i, id := range []string{"t-a", "t-b"} {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(0x70 + i)
		keys[id] = ed25519.NewKeyFromSeed(seed)
		if _, err := metro.RegisterTerminals(ctx, []ledger.TerminalRegistration{provenRegistration(keys[id], id, "metro", "stop-"+id)}); err != nil {
			t.Fatal(err)
		}
	}
	view := &laggingView{Ledger: led}
	reg := clearing.NewChainTerminals(view)
	if err := reg.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	rcpt, err := metro.RevokeTerminal(ctx, "t-a")
	if err != nil {
		t.Fatal(err)
	}
	view.hideFrom.Store(rcpt.BlockNumber)
	if err := reg.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ta, _ := reg.Lookup("t-a"); ta.Revoked() {
		t.Fatal("the lagging answer showed the revocation: nothing to test")
	}
	if err := reg.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	ta, _ := reg.Lookup("t-a")
	tb, okB := reg.Lookup("t-b")
	if !ta.Revoked() || ta.RevokedBlock != rcpt.BlockNumber || !okB || tb.Revoked() || len(reg.Refused()) != 0 {
		t.Fatalf("after the next read: t-a %+v, t-b %+v (%v), refused %v; want t-a revoked in block %d, t-b followed", ta, tb, okB, reg.Refused(), rcpt.BlockNumber)
	}
}
