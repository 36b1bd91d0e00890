package clearing_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

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
		reg.Terminals = append(reg.Terminals, clearing.TerminalPublicKey{ID: id, Operator: op, Stop: "stop-" + id, PublicKey: keys[id].Public().(ed25519.PublicKey)})
	}
	// Round-trip through JSON so the lookup maps are built as in production.
	b, _ := json.Marshal(reg)
	r, err := clearing.ParseRegistry(b)
	if err != nil {
		panic(err)
	}
	return r, keys
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

func startTerminal(t testing.TB, dir, natsURL string, reg *clearing.Registry, keys map[string]ed25519.PrivateKey, id string) *runningTerminal {
	t.Helper()
	rt, _ := reg.Terminal(id)
	term, err := terminal.Open(terminal.Config{
		ID: id, Operator: rt.Operator, Stop: rt.Stop, Key: keys[id],
		DataDir: filepath.Join(dir, "terminal-"+id), NATSURL: natsURL,
		ResendAfter: 500 * time.Millisecond, Logger: quietLogger(),
	})
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

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
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

// Child process mode: TestMain runs a real clearing house process that the
// kill test SIGKILLs. Configured through the environment.
const childEnv = "FAREGATE_TEST_CLEARING_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

type childSpec struct {
	Dir      string `json:"dir"`
	Registry string `json:"registry"`
	Port     int    `json:"port"`
}

func runChild(spec string) int {
	var s childSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, "child spec:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	reg, err := clearing.LoadRegistry(s.Registry)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	led, err := ledger.OpenEmbedded(ctx, filepath.Join(s.Dir, "chain"), ledger.WithLogger(quietLogger()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "chain:", err)
		return 2
	}
	defer led.Close()
	if err := clearing.PublishRegistry(ctx, led, reg); err != nil {
		fmt.Fprintln(os.Stderr, "publish registry:", err)
		return 2
	}
	cl, err := clearing.Open(ctx, clearing.Config{
		DataDir: filepath.Join(s.Dir, "clearing"), NATSPort: s.Port, Registry: reg, Ledger: led,
		Period: 300 * time.Millisecond, FetchBatch: 64, Logger: quietLogger(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "clearing:", err)
		return 2
	}
	defer cl.Close()
	fmt.Println("ready")
	if err := cl.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	}
	return 0
}
