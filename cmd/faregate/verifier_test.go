package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// TestVerifierCommands runs clearing with two verifier partitions and one
// `clearing verifier` per partition through the command line, the
// verifiers reading the registry through clearing's running chain node:
// real terminals' taps are applied and confirmed. verifier-key makes a
// seed once and prints the same key again.
func TestVerifierCommands(t *testing.T) {
	logs := captureLogs(t)
	dir := t.TempDir()
	var keys []string
	for p := range 2 {
		seed := filepath.Join(dir, fmt.Sprintf("verifier-%d.nk", p))
		out, err := runCLI(t, "clearing", "verifier-key", seed)
		if err != nil {
			t.Fatalf("verifier-key: %v\n%s", err, out)
		}
		again, err := runCLI(t, "clearing", "verifier-key", seed)
		key := strings.TrimSpace(again)
		if err != nil || !strings.HasPrefix(key, "U") || !strings.Contains(out, key) {
			t.Fatalf("verifier-key again: %v %q, first %q", err, again, out)
		}
		if st, err := os.Stat(seed); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("seed file %s: %v %v, want mode 0600", seed, st, err)
		}
		keys = append(keys, key)
	}

	reg := &clearing.Registry{Currency: "EUR", Operators: []clearing.OperatorConfig{{ID: "metro", Name: "Metro", FlatFare: 250}, {ID: "bus", Name: "Bus", FlatFare: 180}}}
	termKeys := map[string]ed25519.PrivateKey{}
	for i := range 6 {
		id, op := fmt.Sprintf("gate-%d", i), []string{"metro", "bus"}[i%2]
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[1] = byte(i), 0x5e
		termKeys[id] = ed25519.NewKeyFromSeed(seed)
		reg.Terminals = append(reg.Terminals, provenTerminal(termKeys[id], id, op, "stop-"+id))
	}
	regFile := filepath.Join(dir, "registry.json")
	if err := reg.Save(regFile); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "clearing")
	natsAddr, api := freeLoopbackAddr(t), freeLoopbackAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type proc struct {
		name string
		done chan error
		logs *strings.Builder
	}
	start := func(name string, args ...string) *proc {
		p := &proc{name: name, done: make(chan error, 1), logs: &strings.Builder{}}
		go func() {
			root := newRootCmd()
			root.SetOut(p.logs)
			root.SetErr(p.logs)
			root.SetArgs(args)
			p.done <- root.ExecuteContext(ctx)
		}()
		return p
	}
	cl := start("clearing", "clearing", "--data", data, "--registry", regFile, "--http", api, "--nats-listen", natsAddr,
		"--verifier-partitions", "2", "--verifier-key", "0="+keys[0], "--verifier-key", "1="+keys[1])
	confirmKey, err := clearing.LoadConfirmKey(data, true)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if _, serr := os.Stat(filepath.Join(data, "chain", "node.json")); serr == nil && err == nil {
			break
		}
		select {
		case err := <-cl.done:
			t.Fatalf("clearing stopped: %v\n%s", err, cl.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("clearing's chain node did not start")
		}
		confirmKey, err = clearing.LoadConfirmKey(data, true)
	}
	var verifiers []*proc
	for p := range 2 {
		var v *proc
		waitFor(t, time.Minute, "verifier "+fmt.Sprint(p)+" to start", func() bool {
			v = start("verifier", "clearing", "verifier", "--partition", fmt.Sprint(p), "--nats", "nats://"+natsAddr,
				"--nats-seed", filepath.Join(dir, fmt.Sprintf("verifier-%d.nk", p)), "--data", data)
			select {
			case err := <-v.done: // clearing not listening yet: try again
				t.Logf("verifier %d: %v", p, err)
				time.Sleep(200 * time.Millisecond)
				return false
			case <-time.After(time.Second):
				return true
			}
		})
		verifiers = append(verifiers, v)
	}
	// A verifier whose user clearing did not admit is refused by the
	// server, and told how to be admitted; a missing seed is named.
	stranger := filepath.Join(dir, "stranger.nk")
	user, err := runCLI(t, "clearing", "verifier-key", stranger)
	if err != nil {
		t.Fatal(err)
	}
	user = user[strings.LastIndex(strings.TrimSpace(user), "\n")+1:] // the key, after the note on its seed
	user = strings.TrimSpace(user)
	_, err = runCLI(t, "clearing", "verifier", "--partition", "0", "--nats", "nats://"+natsAddr, "--nats-seed", stranger, "--data", data)
	if err == nil || !strings.Contains(err.Error(), "admit this user: faregate clearing --verifier-key 0="+user) {
		t.Errorf("a verifier clearing did not admit: %v, want the server's refusal and how to admit %s", err, user)
	}
	// Partition 1's verifier may not work on partition 0: the server
	// refuses it, and it says which --verifier-key would admit it.
	_, err = runCLI(t, "clearing", "verifier", "--partition", "0", "--nats", "nats://"+natsAddr, "--nats-seed", filepath.Join(dir, "verifier-1.nk"), "--data", data)
	if err == nil || !strings.Contains(err.Error(), "may not work on partition 0") || !strings.Contains(err.Error(), "--verifier-key 0="+keys[1]) {
		t.Errorf("partition 1's verifier on partition 0: %v, want refused as not admitted to partition 0", err)
	}
	_, err = runCLI(t, "clearing", "verifier", "--partition", "0", "--nats", "nats://"+natsAddr, "--nats-seed", filepath.Join(dir, "missing.nk"), "--data", data)
	if err == nil || !strings.Contains(err.Error(), "verifier NATS user") || !strings.Contains(err.Error(), "missing.nk") {
		t.Errorf("a verifier with a missing seed: %v, want the verifier's seed named", err)
	}
	const perGate = 20
	var terms []*terminal.Terminal
	for _, rt := range reg.Terminals {
		tm, err := terminal.Open(terminal.Config{ID: rt.ID, Operator: rt.Operator, Stop: rt.Stop, Key: termKeys[rt.ID], DataDir: filepath.Join(dir, rt.ID),
			NATSURL: "nats://" + natsAddr, ClearingKeys: []ed25519.PublicKey{confirmKey.Public().(ed25519.PublicKey)}, Logger: quietLog})
		if err != nil {
			t.Fatal(err)
		}
		tctx, stop := context.WithCancel(ctx)
		tdone := make(chan struct{})
		go func() { defer close(tdone); tm.Run(tctx) }()
		t.Cleanup(func() { stop(); <-tdone; tm.Close() })
		for k := range perGate {
			if _, err := tm.Tap(ctx, terminal.Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: fmt.Sprintf("card-%d", k), RiderCategory: "adult"}); err != nil {
				t.Fatal(err)
			}
		}
		terms = append(terms, tm)
	}
	for _, tm := range terms {
		waitFor(t, time.Minute, "terminal "+tm.ID()+" confirmed through the verifiers", func() bool { return tm.Pending() == 0 })
	}
	cancel()
	for _, p := range append(verifiers, cl) {
		if err := <-p.done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v\n%s", p.name, err, p.logs.String())
		}
	}
	// Every tap is in clearing's store once, and each verifier said how
	// many it forwarded.
	out, err := runCLI(t, "ledger", "audit", "--data", data, "--registry", regFile, "--json")
	var audit AuditOutput
	if jerr := json.Unmarshal([]byte(out), &audit); jerr != nil || audit.AuditReport == nil {
		t.Fatalf("ledger audit --json: %v, %v\n%s", err, jerr, out)
	}
	if n := audit.EventsChecked + audit.OpenEvents; !audit.Clean() || n != uint64(len(terms)*perGate) {
		t.Errorf("audit: clean %v, %d events in the store, want %d: %+v", audit.Clean(), n, len(terms)*perGate, audit.Mismatches)
	}
	if n := strings.Count(logs.String(), "verifier stopped"); n != 2 {
		t.Errorf("%d verifiers said how much they forwarded, want 2:\n%s", n, logs.String())
	}
}

// TestVerifierWaitsForClearingsChain: a verifier started while clearing is
// restarting (its data dir holds the chain clearing made, which no node
// serves yet) waits for it, saying so, rather than exit (an outside
// re-check's supervisor restarted both together and the partition stalled
// until the verifier was started again by hand); a data dir with no chain
// clearing made is refused at once.
func TestVerifierWaitsForClearingsChain(t *testing.T) {
	logs := captureLogs(t)
	dir := t.TempDir()
	seed := filepath.Join(dir, "v.nk")
	if out, err := runCLI(t, "clearing", "verifier-key", seed); err != nil {
		t.Fatalf("verifier-key: %v\n%s", err, out)
	}
	run := func(data string, d time.Duration) (error, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		root := newRootCmd()
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		root.SetArgs([]string{"clearing", "verifier", "--partition", "0", "--nats", "nats://127.0.0.1:1", "--nats-seed", seed, "--data", data})
		start := time.Now()
		err := root.ExecuteContext(ctx)
		return err, time.Since(start)
	}
	if err, took := run(filepath.Join(dir, "none"), 10*time.Second); err == nil || !strings.Contains(err.Error(), "run clearing first") || took > 5*time.Second {
		t.Fatalf("a data dir with no chain: %v after %s, want refused at once", err, took)
	}
	made := filepath.Join(dir, "made")
	if err := os.MkdirAll(filepath.Join(made, "chain"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(made, "chain", "ledger.json"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, took := run(made, 2500*time.Millisecond); took < 2*time.Second || !strings.Contains(logs.String(), "clearing's embedded chain is not served: waiting for clearing to run") {
		t.Fatalf("a chain clearing made, not served: the verifier returned after %s, want it waiting, saying so:\n%s", took, logs.String())
	}
}
