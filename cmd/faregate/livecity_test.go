package main

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/terminal"
)

// cityFeedDir is the simulator city's feed the live tests price from.
const cityFeedDir = "../../clearing/journeys/testdata/city"

// gateSpec is one terminal of a live test city and what its taps ride.
type gateSpec struct{ id, op, stop, network, route string }

// liveCity is a real city for end-to-end tests: an embedded chain holding
// the registry, clearing pricing live from the city feed on embedded NATS,
// and a real terminal at each gate.
type liveCity struct {
	t     *testing.T
	dir   string
	ctx   context.Context
	cl    *clearing.Clearing
	keys  map[string]ed25519.PrivateKey
	gates map[string]gateSpec
	terms map[string]*terminal.Terminal
	stops map[string]context.CancelFunc
	cfg   clearing.Config
	// stopRun stops clearing's Run and waits for it.
	stopRun func()
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func startLiveCity(t *testing.T, gates []gateSpec, edit func(*clearing.Config)) *liveCity {
	t.Helper()
	ctx := context.Background()
	c := &liveCity{t: t, dir: t.TempDir(), ctx: ctx, keys: map[string]ed25519.PrivateKey{}, gates: map[string]gateSpec{},
		terms: map[string]*terminal.Terminal{}, stops: map[string]context.CancelFunc{}}
	reg := &clearing.Registry{Currency: "EUR", Operators: []clearing.OperatorConfig{{ID: "metro", Name: "Metro", FlatFare: 250}, {ID: "bus", Name: "Bus", FlatFare: 180}}}
	for i, g := range gates {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(40 + i)
		c.keys[g.id] = ed25519.NewKeyFromSeed(seed)
		c.gates[g.id] = g
		reg.Terminals = append(reg.Terminals, provenTerminal(c.keys[g.id], g.id, g.op, g.stop))
		reg.Legs = append(reg.Legs, clearing.TerminalLeg{Terminal: g.id, Network: g.network, Route: g.route})
	}
	if err := reg.Validate(); err != nil {
		t.Fatal(err)
	}
	// Setting up the chain takes seconds; bounded, a stall there (once seen
	// in CI with every goroutine of the in-process RPC runnable and none
	// running) fails the test with its error instead of hanging the run.
	setup, cancelSetup := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelSetup()
	led, err := ledger.OpenEmbedded(setup, filepath.Join(c.dir, "chain"), ledger.WithLogger(quietLog))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	if err := clearing.PublishRegistry(setup, led, reg); err != nil {
		t.Fatal(err)
	}
	feed, version, err := loadFeed(cityFeedDir, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	cfg := clearing.Config{DataDir: filepath.Join(c.dir, "clearing"), NATSPort: -1, Registry: reg, Ledger: led,
		Period: time.Hour, Logger: quietLog, Feed: feed, FeedVersion: version}
	if edit != nil {
		edit(&cfg)
	}
	c.cfg = cfg
	c.runClearing()
	t.Cleanup(func() {
		for id := range c.terms {
			c.stopGate(id)
		}
		c.stopRun()
	})
	for _, g := range gates {
		c.startGate(g.id)
	}
	return c
}

// runClearing opens clearing on c.cfg and runs it until stopRun.
func (c *liveCity) runClearing() {
	c.t.Helper()
	var err error
	if c.cl, err = clearing.Open(c.ctx, c.cfg); err != nil {
		c.t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(c.ctx)
	done := make(chan error, 1)
	cl := c.cl
	go func() { done <- cl.Run(runCtx) }()
	c.stopRun = func() {
		stop()
		if err := <-done; err != nil {
			c.t.Errorf("clearing run: %v", err)
		}
		cl.Close()
		c.stopRun = func() {}
	}
}

// restart stops clearing and its gates and starts them again on their
// kept stores (clearing's embedded NATS comes back on another port).
func (c *liveCity) restart() {
	c.t.Helper()
	var gates []string
	for id := range c.terms {
		gates = append(gates, id)
		c.stopGate(id)
	}
	c.stopRun()
	c.runClearing()
	for _, id := range gates {
		c.startGate(id)
	}
}

// startGate opens (or reopens, on its kept store) a gate's terminal and
// runs it.
func (c *liveCity) startGate(id string) *terminal.Terminal {
	c.t.Helper()
	g := c.gates[id]
	tm, err := terminal.Open(terminal.Config{ID: g.id, Operator: g.op, Stop: g.stop, Key: c.keys[g.id], DataDir: filepath.Join(c.dir, g.id),
		NATSURL: c.cl.NATSURL(), ClearingKeys: []ed25519.PublicKey{c.cl.ConfirmationKey()}, Logger: quietLog})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, stop := context.WithCancel(c.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tm.Run(ctx)
	}()
	c.terms[id] = tm
	c.stops[id] = func() { stop(); <-done; tm.Close() }
	return tm
}

// stopGate takes a gate offline (its store stays).
func (c *liveCity) stopGate(id string) {
	if stop, ok := c.stops[id]; ok {
		stop()
		delete(c.stops, id)
		delete(c.terms, id)
	}
}

// tap taps card at a gate and returns the gate's decision.
func (c *liveCity) tap(gate string, dir fare.Direction, card string, at time.Time) fare.Event {
	c.t.Helper()
	ev, err := c.terms[gate].Tap(c.ctx, terminal.Tap{Gate: "g1", Direction: dir, Media: fare.Card, Token: card, RiderCategory: "concession", Time: at})
	if err != nil {
		c.t.Fatal(err)
	}
	return ev
}

// waitFor polls cond until it holds or 30 s pass.
func (c *liveCity) waitFor(what string, cond func() bool) {
	c.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s (clearing %+v)", what, c.cl.Stats())
		}
	}
}

var berlin = func() *time.Location {
	l, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		panic(err)
	}
	return l
}()

// dec2 is a time on Wednesday 2026-12-02 (day 2) or a later day of December.
func decAt(day, hh, mm int) time.Time { return time.Date(2026, 12, day, hh, mm, 0, 0, berlin) }
