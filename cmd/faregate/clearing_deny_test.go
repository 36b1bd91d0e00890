package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// TestClearingDenyCommands: the deny commands check their flags, queue a
// change in clearing's data dir with the medium's key (never its token) and
// list a data dir's queued changes; clearing's applying them is tested in
// clearing's TestDenyQueue.
func TestClearingDenyCommands(t *testing.T) {
	data := t.TempDir()
	empty := t.TempDir()
	if _, err := fare.LoadOrCreateKey(filepath.Join(data, clearing.ConfirmKeyFile), "key"); err != nil { // as `clearing key` makes it
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"deny", "add", "--media", "card", "--token", "x", "--reason", "r"}, "--data DIR"},
		{[]string{"deny", "add", "--data", data, "--token", "x", "--reason", "r"}, `"media" not set`},
		{[]string{"deny", "add", "--data", data, "--media", "bus", "--token", "x", "--reason", "r"}, `media "bus"`},
		{[]string{"deny", "add", "--data", data, "--media", "card", "--reason", "r"}, `"token" not set`},
		{[]string{"deny", "add", "--data", data, "--media", "card", "--token", "x"}, `"reason" not set`},
		{[]string{"deny", "add", "--data", data, "--media", "card", "--token", strings.Repeat("x", fare.MaxTokenLen+1), "--reason", "r"}, "token must be"},
		{[]string{"deny", "add", "--data", filepath.Join(data, "none"), "--media", "card", "--token", "x", "--reason", "r"}, "clearing data dir"},
		// Queued where no clearing looks, a stolen card would never be
		// listed.
		{[]string{"deny", "add", "--data", empty, "--media", "card", "--token", "x", "--reason", "r"}, "is not clearing's data directory"},
		{[]string{"deny", "remove", "--data", data, "--media", "face"}, `"token" not set`},
		{[]string{"deny", "list"}, "--data DIR"},
		{[]string{"deny", "list", "--data", data}, "no Badger store"},
	} {
		if _, _, err := runClearingCmd(t, "", c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %q", c.args, err, c.want)
		}
	}
	// A directory with no store is a mistyped --data: no running
	// clearing to ask instead (an outside review read that hint there).
	for _, list := range [][]string{{"deny", "list"}, {"enrol", "list"}} {
		args := append(list, "--data", filepath.Join(data, "typo"))
		if _, _, err := runClearingCmd(t, "", args...); err == nil || !strings.Contains(err.Error(), "no Badger store") || strings.Contains(err.Error(), "running clearing") {
			t.Errorf("%v: %v, want no store named, no running clearing", args, err)
		}
	}
	out, _, err := runClearingCmd(t, "secret-card-7\n", "deny", "add", "--data", data, "--media", "card", "--token", "-", "--reason", "reported stolen", "--wait", "0")
	key := fare.DenyKey(fare.Card, "secret-card-7")
	if err != nil || !strings.Contains(out, " "+key+" ") || !strings.Contains(out, "queued") {
		t.Fatalf("deny add: %q, %v (want the key in 0x hex)", out, err)
	}
	if _, _, err := runClearingCmd(t, "", "deny", "remove", "--data", data, "--media", "face", "--token", "subject-1", "--wait", "0"); err != nil {
		t.Fatal(err)
	}
	pending, err := clearing.PendingDenyRequests(data)
	if err != nil || len(pending) != 2 {
		t.Fatalf("pending: %v, %v", pending, err)
	}
	b, err := os.ReadFile(pending[0])
	if err != nil || !strings.Contains(string(b), key) || strings.Contains(string(b), "secret-card-7") || !strings.Contains(string(b), `"listed":true`) {
		t.Fatalf("queued request %s: %v", b, err)
	}
	if _, _, err := runClearingCmd(t, "", "deny", "list", "--data", data); err == nil {
		t.Fatal("deny list without a store succeeded")
	}
	// A kept simulation's top directory stands for its clearing's, as for
	// `clearing --data RUN` (the request used to be queued in the top
	// directory, where no clearing looks, and the command said queued).
	run := t.TempDir()
	if err := os.WriteFile(filepath.Join(run, "run.json"), []byte(`{"format": 1, "clearing": "clearing", "chain": "clearing/chain", "contract": "0x0000000000000000000000000000000000000001", "registry": "registry.json", "period": "10s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(run, "clearing"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := fare.LoadOrCreateKey(filepath.Join(run, "clearing", clearing.ConfirmKeyFile), "key"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runClearingCmd(t, "", "deny", "add", "--data", run, "--media", "card", "--token", "stolen-in-a-kept-run", "--reason", "reported stolen", "--wait", "0"); err != nil {
		t.Fatal(err)
	}
	if pending, err := clearing.PendingDenyRequests(filepath.Join(run, "clearing")); err != nil || len(pending) != 1 {
		t.Fatalf("a request queued with --data RUN: %v, %v; want it in RUN/clearing", pending, err)
	}

	// A running clearing applies the queued change; the list of the stopped
	// one shows the key in 0x hex.
	ctx := t.Context()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := clearing.ParseRegistry([]byte(`{"currency": "EUR", "operators": [{"id": "metro", "name": "Metro", "flat_fare": 250}]}`))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	led, err := ledger.OpenEmbedded(ctx, filepath.Join(dir, "chain"), ledger.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	if err := clearing.PublishRegistry(ctx, led, reg); err != nil {
		t.Fatal(err)
	}
	running := filepath.Join(dir, "clearing")
	cl, err := clearing.Open(ctx, clearing.Config{DataDir: running, NATSPort: -1, Registry: reg, Ledger: led, Period: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cl.Run(runCtx) }()
	out, _, err = runClearingCmd(t, "", "deny", "add", "--data", running, "--media", "card", "--token", "secret-card-7", "--reason", "reported stolen", "--wait", "10s")
	if err != nil || out != "deny list: add card "+key+" applied by clearing\n" {
		t.Fatalf("deny add to a running clearing: %q, %v", out, err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	out, _, err = runClearingCmd(t, "", "deny", "list", "--data", running)
	if err != nil || !strings.Contains(out, "deny list version 1, 1 entries") || !regexp.MustCompile(`(?m)^`+key+` +card +\S+ +listed +reported stolen$`).MatchString(out) {
		t.Fatalf("deny list: %q, %v", out, err)
	}
}
