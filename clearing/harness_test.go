package clearing_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/terminal"
)

// A test city: two operators, terminals t1..tN with deterministic keys.
func testRegistry(n int) (*clearing.Registry, map[string]ed25519.PrivateKey) {
	reg := &clearing.Registry{Currency: "EUR", Operators: []clearing.OperatorConfig{
		{ID: "metro", Name: "Metro", FlatFare: 250},
		{ID: "bus", Name: "Bus", FlatFare: 180},
	}}
	keys := make(map[string]ed25519.PrivateKey)
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("t%d", i)
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[1] = byte(i), 0xfa
		keys[id] = ed25519.NewKeyFromSeed(seed)
		op := "metro"
		if i%2 == 0 {
			op = "bus"
		}
		reg.Terminals = append(reg.Terminals, provenTerminal(keys[id], id, op, "stop-"+id))
	}
	// Round-trip through JSON so the lookup maps are built as in production.
	b, _ := json.Marshal(reg)
	r, err := clearing.ParseRegistry(b)
	if err != nil {
		panic(err)
	}
	return r, keys
}

// provenTerminal is key's registry entry for terminal id of op at stop,
// with the key's proof of its registration.
func provenTerminal(key ed25519.PrivateKey, id, op, stop string) clearing.TerminalPublicKey {
	e, err := clearing.NewTerminalEntry(key, id, op, stop)
	if err != nil {
		panic(err)
	}
	return e
}

// provenRegistration is the ledger registration of terminal id of op at
// stop signing with key, with the key's proof.
func provenRegistration(key ed25519.PrivateKey, id, op, stop string) ledger.TerminalRegistration {
	e := provenTerminal(key, id, op, stop)
	return ledger.TerminalRegistration{ID: id, Stop: stop, PublicKey: [32]byte(e.PublicKey), KeyProof: e.KeyProof}
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// running is a clearing house running in this process.
type running struct {
	*clearing.Clearing
	cancel context.CancelFunc
	done   chan error
}

func startClearing(t testing.TB, cfg clearing.Config) *running {
	t.Helper()
	if cfg.NATSPort == 0 {
		cfg.NATSPort = -1
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.ConfirmKey == nil {
		cfg.ConfirmKey = testConfirmKey
	}
	if cfg.NATSSeedFile == "" {
		cfg.NATSSeedFile = clearingSeedFile(t)
	}
	publish(t, cfg)
	cl, err := clearing.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open clearing: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Clearing: cl, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- cl.Run(ctx) }()
	return r
}

// startCity starts clearing for testRegistry(n) on a fresh embedded chain
// under a test directory; both are stopped when the test ends.
func startCity(t *testing.T, n int) (dir string, reg *clearing.Registry, keys map[string]ed25519.PrivateKey, cl *running) {
	t.Helper()
	return startCityWith(t, n, func(*clearing.Config) {})
}

// startCityWith is startCity with clearing's configuration edited by edit.
func startCityWith(t *testing.T, n int, edit func(*clearing.Config)) (dir string, reg *clearing.Registry, keys map[string]ed25519.PrivateKey, cl *running) {
	t.Helper()
	dir = t.TempDir()
	reg, keys = testRegistry(n)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	cfg := clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour}
	edit(&cfg)
	cl = startClearing(t, cfg)
	t.Cleanup(func() { cl.stop(t) })
	return dir, reg, keys, cl
}

// stop cancels Run and closes everything; safe to call twice.
func (r *running) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("clearing run: %v", err)
	}
	r.cancel = nil
	if err := r.Close(); err != nil {
		t.Errorf("close clearing: %v", err)
	}
}

// publish puts the test registry's operators and terminals on the embedded
// chain, as their operators would: clearing reads terminals only from there.
func publish(t testing.TB, cfg clearing.Config) {
	t.Helper()
	if e, ok := cfg.Ledger.(*ledger.Embedded); ok && cfg.Registry != nil {
		if err := clearing.PublishRegistry(context.Background(), e, cfg.Registry); err != nil {
			t.Fatalf("publish registry on chain: %v", err)
		}
	}
}

func openLedger(t testing.TB, dir string) *ledger.Embedded {
	t.Helper()
	l, err := ledger.OpenEmbedded(context.Background(), dir, ledger.WithLogger(quietLogger()))
	if err != nil {
		t.Fatalf("open embedded chain: %v", err)
	}
	return l
}

// runningTerminal is a terminal streaming in the background.
type runningTerminal struct {
	*terminal.Terminal
	cancel context.CancelFunc
	done   chan error
}

// testConfirmKey is the confirmation key of every clearing house in these
// tests (in-process and child processes alike); test terminals trust it.
var testConfirmKey = ed25519.NewKeyFromSeed([]byte("faregate test confirmation key!!"))

// startTerminal starts terminal id of reg against the NATS at url.
func startTerminal(t testing.TB, dir, url string, reg *clearing.Registry, keys map[string]ed25519.PrivateKey, id string) *runningTerminal {
	t.Helper()
	return startTerminalWith(t, dir, url, reg, keys, id, func(*terminal.Config) {})
}

// startTerminalWith is startTerminal with the configuration edited by edit.
func startTerminalWith(t testing.TB, dir, url string, reg *clearing.Registry, keys map[string]ed25519.PrivateKey, id string, edit func(*terminal.Config)) *runningTerminal {
	t.Helper()
	rt, _ := reg.TerminalKey(id)
	cfg := terminal.Config{
		ID: id, Operator: rt.Operator, Stop: rt.Stop, Key: keys[id],
		DataDir: filepath.Join(dir, "terminal-"+id), NATSURL: url,
		ClearingKeys: []ed25519.PublicKey{testConfirmKey.Public().(ed25519.PublicKey)},
		ResendAfter:  500 * time.Millisecond, Logger: quietLogger(),
	}
	edit(&cfg)
	term, err := terminal.Open(cfg)
	if err != nil {
		t.Fatalf("open terminal %s: %v", id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningTerminal{Terminal: term, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- term.Run(ctx) }()
	return r
}

func (r *runningTerminal) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("terminal run: %v", err)
	}
	r.cancel = nil
	if err := r.Close(); err != nil {
		t.Errorf("close terminal: %v", err)
	}
}

func tap(t testing.TB, term *terminal.Terminal, token string, dir fare.Direction) fare.Event {
	t.Helper()
	ev, err := term.Tap(context.Background(), terminal.Tap{Gate: "g1", Direction: dir, Media: fare.Card, Token: token, RiderCategory: "adult"})
	if err != nil {
		t.Fatalf("tap: %v", err)
	}
	return ev
}

// tapper taps on every terminal, each in its own goroutine, until stopped:
// traffic that keeps flowing while a test kills and restarts clearing.
type tapper struct {
	tapped atomic.Uint64
	quit   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func startTapping(t testing.TB, terms []*runningTerminal, every time.Duration) *tapper {
	p := &tapper{quit: make(chan struct{})}
	for i, rt := range terms {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for k := 0; ; k++ {
				select {
				case <-p.quit:
					return
				default:
				}
				if _, err := rt.Tap(context.Background(), tapFor(i, k)); err != nil {
					t.Errorf("tap: %v", err)
					return
				}
				p.tapped.Add(1)
				time.Sleep(every)
			}
		}()
	}
	return p
}

// stop ends the taps and waits for them; safe to call twice.
func (p *tapper) stop() {
	p.once.Do(func() { close(p.quit) })
	p.wg.Wait()
}

// count is the number of taps made so far.
func (p *tapper) count() uint64 { return p.tapped.Load() }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	if !waitUntil(d, cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// waitUntil polls cond for up to d and says whether it came to hold.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// testClearingSeed is the NATS user seed of clearing in these tests, so a
// test can also connect as clearing (adminConn) to look into the streams.
var testClearingSeed = func() []byte {
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, []byte("faregate test clearing nats user"))
	if err != nil {
		panic(err)
	}
	seed, _ := kp.Seed()
	return seed
}()

// clearingSeedFile writes testClearingSeed to a file of its own.
func clearingSeedFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clearing.nk")
	if err := os.WriteFile(path, testClearingSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testClearingUser is testClearingSeed's public NKey.
func testClearingUser() string {
	kp, _ := nkeys.FromSeed(testClearingSeed)
	pub, _ := kp.PublicKey()
	return pub
}

// adminConn connects to NATS as clearing's user: full access, as an
// operator of clearing would have with its credentials.
func adminConn(t testing.TB, url string, extra ...nats.Option) *nats.Conn {
	t.Helper()
	kp, _ := nkeys.FromSeed(testClearingSeed)
	nc, err := nats.Connect(url, append([]nats.Option{nats.Nkey(testClearingUser(), kp.Sign)}, extra...)...)
	if err != nil {
		t.Fatalf("connect as clearing: %v", err)
	}
	return nc
}

// adminKV is bucket as clearing's own NATS user reads and writes it: what
// an attacker with full access could do to it. The connection closes when
// the test ends.
func adminKV(t testing.TB, url, bucket string) jetstream.KeyValue {
	t.Helper()
	admin := adminConn(t, url)
	t.Cleanup(admin.Close)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), bucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", bucket, err)
	}
	return kv
}

// registered lists reg's terminals as the chain registry would hold them.
func registered(reg *clearing.Registry) []clearing.RegisteredTerminal {
	out := make([]clearing.RegisteredTerminal, len(reg.Terminals))
	for i, t := range reg.Terminals {
		out[i] = clearing.RegisteredTerminal{TerminalPublicKey: t, RegisteredBlock: 1}
	}
	return out
}

// terminalConn connects to NATS as terminal id (its derived NKey), as a
// misbehaving or compromised terminal would.
func terminalConn(t testing.TB, url string, key ed25519.PrivateKey, id string, extra ...nats.Option) *nats.Conn {
	t.Helper()
	ident, err := fare.NewNATSIdentity(key, id)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, append(terminal.NATSOptions(ident, id, ""), extra...)...)
	if err != nil {
		t.Fatalf("connect as terminal %s: %v", id, err)
	}
	return nc
}

// publishEvent publishes data on subject as a terminal does (a plain
// publish: the event stream sends no acks), with headers (name, value
// pairs), and waits for the server to have it.
func publishEvent(t testing.TB, nc *nats.Conn, subject string, data []byte, hdr ...string) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
