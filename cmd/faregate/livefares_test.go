package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/terminal"
)

// TestLiveFaresMatchQuote: journeys tapped at real terminals, through NATS
// and clearing pricing live from the city feed, are charged exactly what
// `faregate fares quote` says for the same legs; the tap's claimed
// category is ignored.
func TestLiveFaresMatchQuote(t *testing.T) {
	const feedDir = "../../clearing/journeys/testdata/city"
	ctx := context.Background()
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	gates := []struct{ id, op, stop, network, route string }{
		{"bus-s01-g1", "bus", "bus-s01", "bus", "bus-L1"},
		{"metro-s01-g1", "metro", "metro-s01", "metro", "metro-L1"},
		{"metro-s03-g1", "metro", "metro-s03", "metro", "metro-L1"},
	}
	reg := &clearing.Registry{Currency: "EUR", Operators: []clearing.OperatorConfig{{ID: "metro", Name: "Metro", FlatFare: 250}, {ID: "bus", Name: "Bus", FlatFare: 180}}}
	keys := map[string]ed25519.PrivateKey{}
	for i, g := range gates {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(40 + i)
		keys[g.id] = ed25519.NewKeyFromSeed(seed)
		reg.Terminals = append(reg.Terminals, clearing.TerminalPublicKey{ID: g.id, Operator: g.op, Stop: g.stop, PublicKey: keys[g.id].Public().(ed25519.PublicKey)})
		reg.Legs = append(reg.Legs, clearing.TerminalLeg{Terminal: g.id, Network: g.network, Route: g.route})
	}
	if err := reg.Validate(); err != nil {
		t.Fatal(err)
	}
	led, err := ledger.OpenEmbedded(ctx, filepath.Join(dir, "chain"), ledger.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	if err := clearing.PublishRegistry(ctx, led, reg); err != nil {
		t.Fatal(err)
	}
	feed, version, err := loadFeed(feedDir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := clearing.Open(ctx, clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSPort: -1, Registry: reg, Ledger: led,
		Period: time.Hour, Logger: quiet, Feed: feed, FeedVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cl.Run(runCtx) }()
	defer func() { stop(); <-done }()

	terms := map[string]*terminal.Terminal{}
	for _, g := range gates {
		tm, err := terminal.Open(terminal.Config{ID: g.id, Operator: g.op, Stop: g.stop, Key: keys[g.id], DataDir: filepath.Join(dir, g.id),
			NATSURL: cl.NATSURL(), ClearingKeys: []ed25519.PublicKey{cl.ConfirmationKey()}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		terms[g.id] = tm
		go tm.Run(runCtx)
		defer tm.Close()
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	at := func(hh, mm int) time.Time { return time.Date(2026, 12, 2, hh, mm, 0, 0, berlin) }
	taps := []struct {
		gate string
		dir  fare.Direction
		at   time.Time
	}{
		{"bus-s01-g1", fare.Validate, at(11, 0)},
		{"metro-s01-g1", fare.Entry, at(11, 30)},
		{"metro-s03-g1", fare.Exit, at(11, 45)},
	}
	for _, tp := range taps {
		if _, err := terms[tp.gate].Tap(ctx, terminal.Tap{Gate: "g1", Direction: tp.dir, Media: fare.Card, Token: "card-q", RiderCategory: "concession", Time: tp.at}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for cl.Stats().Priced < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("taps not priced: %+v", cl.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, err := cl.Store().Balance(cl.RiderAccount(fare.Card, "card-q"))
	if err != nil {
		t.Fatal(err)
	}

	journey := fmt.Sprintf(`{"legs": [
		{"route_id": "bus-L1", "network_id": null, "from_stop": "bus-s01", "to_stop": null, "start_time": %q, "end_time": %q},
		{"route_id": "metro-L1", "network_id": "metro", "from_stop": "metro-s01", "to_stop": "metro-s03", "start_time": %q, "end_time": %q}],
		"rider_category": null, "fare_media": "card"}`,
		at(11, 0).Format(time.RFC3339), at(11, 0).Format(time.RFC3339), at(11, 30).Format(time.RFC3339), at(11, 45).Format(time.RFC3339))
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(journey))
	root.SetArgs([]string{"fares", "quote", "--feed", feedDir})
	if err := root.Execute(); err != nil {
		t.Fatalf("fares quote: %v\n%s", err, out.String())
	}
	var quote struct {
		Total    *string `json:"total"`
		Currency string  `json:"currency"`
	}
	if err := json.Unmarshal(out.Bytes(), &quote); err != nil || quote.Total == nil {
		t.Fatalf("quote %s: %v", out.String(), err)
	}
	if got := (-b.Net()).Format("EUR"); got != *quote.Total || quote.Currency != "EUR" {
		t.Fatalf("rider charged %s EUR through terminals and clearing; fares quote says %s %s", got, *quote.Total, quote.Currency)
	}
	// Bus 1.80 + metro zone 1 to 2 off-peak 3.50 - 0.60 transfer, at the
	// adult price: the tap's claimed concession is ignored.
	if *quote.Total != "4.70" {
		t.Errorf("quote %s, want 4.70", *quote.Total)
	}
}
