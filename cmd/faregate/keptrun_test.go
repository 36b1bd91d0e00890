package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/spf13/pflag"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/simulator"
)

// freeLoopbackAddr returns a loopback address no one listens on now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestKeptRunReopens: a kept simulation reopened by `clearing --data DIR`
// (or DIR/clearing) runs on the same chain and contract, shows the same
// batches and anchors nothing again; the role commands act through the
// running node's RPC while it runs (a terminal registered then reaches the
// running clearing); a data dir whose chain is missing is refused before
// anything is created.
func TestKeptRunReopens(t *testing.T) {
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	dir := t.TempDir()
	out, err := runCLI(t, "simulate", "--data", dir, "--duration", "3s", "--rate", "60", "--period", "1s", "--http", "",
		"--operators", "2", "--stops", "1", "--gates", "1", "--passengers", "100", "--inject-bad", "0", "--face", "0")
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, out)
	}
	man, ok, err := simulator.LoadManifest(dir)
	if err != nil || !ok {
		t.Fatalf("run.json: ok %v, %v", ok, err)
	}
	before := auditJSON(t, dir)
	if !before.Clean() || before.ChainBatches < 2 {
		t.Fatalf("audit of the run: %+v", before)
	}
	// The commands printed at the end of a kept run name a real event in
	// an anchored batch: the proof command printed proves it.
	var explore strings.Builder
	if err := printExplore(&explore, dir, "", "", ""); err != nil {
		t.Fatalf("explore: %v", err)
	}
	var proveLine []string
	for _, line := range strings.Split(explore.String(), "\n") {
		if i := strings.Index(line, "faregate ledger prove "); i >= 0 {
			proveLine = strings.Fields(line[i+len("faregate "):])
		}
	}
	if len(proveLine) == 0 || !strings.Contains(explore.String(), "/v1/batches/") {
		t.Fatalf("explore commands:\n%s", explore.String())
	}
	// Reopened as printed, it bills as the run did (an outside test's
	// reopened clearing billed nobody).
	if want := fmt.Sprintf("--acquirer simulated --acquirer-seed %d --decline-rate 0.05", man.AcquirerSeed); man.Acquirer != "simulated" || man.AcquirerSeed == 0 || !strings.Contains(explore.String(), want) {
		t.Errorf("run.json acquirer %q seed %d; explore commands lack %q:\n%s", man.Acquirer, man.AcquirerSeed, want, explore.String())
	}
	if out, err := runCLI(t, proveLine...); err != nil {
		t.Errorf("the printed proof command %q: %v\n%s", proveLine, err, out)
	}
	ledgerJSON, err := os.ReadFile(filepath.Join(dir, "chain", "ledger.json"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := clearing.LoadRegistry(filepath.Join(dir, "registry.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Issued with the kept run's top dir: the token goes to its clearing's file.
	token, err := runCLI(t, "clearing", "token", "issue", "--data", dir, "--role", "auditor", "--name", "kept-run-test")
	if err != nil {
		t.Fatalf("token issue: %v", err)
	}
	token = strings.TrimSpace(token[strings.LastIndex(strings.TrimSpace(token), "\n")+1:])
	// The stopped clearing's lists read from the kept run's top dir too
	// (an outside test saw `enrol list` alone refuse it).
	for _, list := range [][]string{{"deny", "list"}, {"enrol", "list"}} {
		if out, err := runCLI(t, append(append([]string{"clearing"}, list...), "--data", dir)...); err != nil || !strings.Contains(out, map[string]string{"deny": "deny list version", "enrol": "SEQ"}[list[0]]) {
			t.Errorf("%s --data (the kept run): %v\n%s", strings.Join(list, " "), err, out)
		}
	}
	// An operator token for an operator the run's registry does not list
	// is refused: the token would only ever get 403.
	for _, data := range []string{dir, filepath.Join(dir, "clearing")} {
		if out, err := runCLI(t, "clearing", "token", "issue", "--data", data, "--role", "operator", "--operator", "nosuch", "--name", "x"); err == nil || !strings.Contains(err.Error(), `--operator "nosuch" is not in the registry`) {
			t.Errorf("token for an unknown operator on %s: %v\n%s", data, err, out)
		}
	}

	for _, data := range []string{dir, filepath.Join(dir, "clearing")} {
		t.Run(filepath.Base(data), func(t *testing.T) {
			api := freeLoopbackAddr(t)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			var logs strings.Builder
			go func() {
				root := newRootCmd()
				root.SetOut(&logs)
				root.SetErr(&logs)
				root.SetArgs([]string{"clearing", "--data", data, "--http", api, "--nats-listen", freeLoopbackAddr(t)})
				done <- root.ExecuteContext(ctx)
			}()
			defer func() {
				cancel()
				if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("clearing: %v", err)
				}
			}()
			get := func(path string, v any) int {
				req, _ := http.NewRequest("GET", "http://"+api+path, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return 0
				}
				defer resp.Body.Close()
				if v != nil {
					if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
						t.Errorf("GET %s: %v", path, err)
					}
				}
				return resp.StatusCode
			}
			waitFor(t, 60*time.Second, "clearing's API on the reopened run", func() bool {
				select {
				case err := <-done:
					t.Fatalf("clearing --data %s stopped: %v\n%s", data, err, logs.String())
				default:
				}
				return get("/healthz", nil) == 200
			})

			var batches struct {
				Batches []struct {
					ID   uint64 `json:"id"`
					Root string `json:"root"`
				} `json:"batches"`
			}
			if code := get("/v1/batches?limit=1000", &batches); code != 200 || len(batches.Batches) != before.StoreBatches {
				t.Errorf("batches of the reopened run: status %d, %d batches, want %d", code, len(batches.Batches), before.StoreBatches)
			}

			// The role commands, through the running node.
			out, err := runCLI(t, "ledger", "status", "--data", dir)
			if err != nil || !strings.Contains(out, man.Contract) {
				t.Errorf("ledger status while clearing runs: %v\n%s", err, out)
			}
			op, stop := reg.Terminals[0].Operator, reg.Terminals[0].Stop
			id := "added-" + filepath.Base(data)
			seed := make([]byte, ed25519.SeedSize)
			copy(seed, id)
			entry := provenTerminal(ed25519.NewKeyFromSeed(seed), id, op, stop)
			out, err = runCLI(t, "ledger", "register-terminals", "--data", dir, "--operator", op,
				"--terminal", id, "--stop", stop, "--public-key", "0x"+hex.EncodeToString(entry.PublicKey), "--key-proof", "0x"+hex.EncodeToString(entry.KeyProof))
			if err != nil {
				t.Fatalf("register-terminals while clearing runs: %v\n%s", err, out)
			}
			waitFor(t, 30*time.Second, "the running clearing to see the terminal registered through its node", func() bool {
				var terms struct {
					Terminals []struct {
						ID string `json:"id"`
					} `json:"terminals"`
				}
				get("/v1/terminals?limit=1000", &terms)
				for _, tm := range terms.Terminals {
					if tm.ID == id {
						return true
					}
				}
				return false
			})
		})
	}

	after := auditJSON(t, dir)
	if !after.Clean() || after.ChainBatches != before.ChainBatches || after.StoreBatches != before.StoreBatches {
		t.Errorf("after reopening: store %d / chain %d batches (before %d / %d), clean %v: %+v",
			after.StoreBatches, after.ChainBatches, before.StoreBatches, before.ChainBatches, after.Clean(), after.Mismatches)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "chain", "ledger.json")); string(got) != string(ledgerJSON) {
		t.Errorf("ledger.json changed: %s, was %s", got, ledgerJSON)
	}
	if _, err := os.Stat(filepath.Join(dir, "clearing", "chain")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reopening made a chain of its own in clearing/chain: %v", err)
	}

	// A kept run brings its feed, so billing needs no --feed on reopening:
	// this start gets past the flags and stops at the registry named.
	noReg := filepath.Join(t.TempDir(), "none.json")
	out, err = runCLI(t, "clearing", "--data", dir, "--acquirer", "simulated", "--registry", noReg, "--http", freeLoopbackAddr(t))
	if err == nil || strings.Contains(err.Error(), "needs --feed") || !strings.Contains(err.Error(), noReg) {
		t.Errorf("clearing --data (kept run) --acquirer simulated: %v, want it past the flags, refused at the registry\n%s", err, out)
	}

	// A store bound to a contract whose chain is not where clearing looks:
	// refused before a chain is created or a contract deployed.
	orphan := t.TempDir()
	binding := fmt.Sprintf(`{"contract": %q, "since": "2026-12-01T00:00:00Z"}`, man.Contract)
	if err := os.WriteFile(filepath.Join(orphan, clearing.LedgerBindingFile), []byte(binding), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "clearing", "--data", orphan, "--registry", filepath.Join(dir, "registry.json"), "--http", freeLoopbackAddr(t))
	if !errors.Is(err, clearing.ErrLedgerMismatch) || !strings.Contains(err.Error(), man.Contract) {
		t.Errorf("clearing on a bound data dir without its chain: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(orphan, "chain")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused start created %s: %v", filepath.Join(orphan, "chain"), err)
	}
	out, err = runCLI(t, "clearing", "--data", orphan, "--registry", filepath.Join(dir, "registry.json"), "--eth-rpc", "http://127.0.0.1:1", "--eth-key", "k")
	if err == nil || !strings.Contains(err.Error(), "--contract "+man.Contract) {
		t.Errorf("clearing --eth-rpc without --contract on a bound data dir: %v\n%s", err, out)
	}

	// The run's feed changed in place since: refused, naming both
	// versions (an outside test saw new taps priced by the changed feed
	// under the run's old version).
	agency := filepath.Join(dir, "feed", "agency.txt")
	b, err := os.ReadFile(agency)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(agency, append(b, "\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "clearing", "--data", dir, "--http", "", "--nats-listen", freeLoopbackAddr(t))
	if err == nil || !strings.Contains(err.Error(), "it was changed since the run") || !strings.Contains(err.Error(), man.FeedVersion) {
		t.Errorf("a kept run whose feed changed: %v\n%s", err, out)
	}
}

func auditJSON(t *testing.T, dir string) AuditOutput {
	t.Helper()
	out, err := runCLI(t, "ledger", "audit", "--data", dir, "--json")
	var rep AuditOutput
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil || rep.AuditReport == nil {
		t.Fatalf("ledger audit --json: %v, %v\n%s", err, jerr, out)
	}
	return rep
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKeptRunVerifierPartitions: a kept run that had verifier partitions
// reopens with them and admits its verifiers' NATS users again (public keys
// read from the seeds run.json names); flags on the command line win; a
// seed file that is missing or not a seed is refused by name.
func TestKeptRunVerifierPartitions(t *testing.T) {
	dir := t.TempDir()
	var pubs, seeds []string
	for p := range 2 {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := kp.Seed()
		pub, _ := kp.PublicKey()
		rel := fmt.Sprintf("verifiers/verifier-%d.nk", p)
		if err := os.MkdirAll(filepath.Join(dir, "verifiers"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), append(seed, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		pubs, seeds = append(pubs, fmt.Sprintf("%d=%s", p, pub)), append(seeds, rel)
	}
	man := &simulator.RunManifest{Clearing: "clearing", Chain: "chain", Contract: "0x" + strings.Repeat("ab", 20), Registry: "registry.json",
		Period: "10s", VerifierPartitions: 2, VerifierSeeds: seeds}
	apply := func(args []string, m *simulator.RunManifest) (int, []string, error) {
		var dataDir, chainDir, registry, feed, feedVersion, natsCert, natsKey, faceKey, contract string
		var period time.Duration
		var faceMax, parts int
		var keys []string
		fs := pflag.NewFlagSet("clearing", pflag.ContinueOnError)
		fs.IntVar(&parts, "verifier-partitions", 0, "")
		fs.StringSliceVar(&keys, "verifier-key", nil, "")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		err := (&keptRun{dir: dir, man: m}).apply(fs, keptRunFlags{dataDir: &dataDir, chainDir: &chainDir, registry: &registry,
			feed: &feed, feedVersion: &feedVersion, natsCert: &natsCert, natsKey: &natsKey, faceKey: &faceKey, contract: &contract,
			period: &period, faceMaxGallery: &faceMax, verifierPartitions: &parts, verifierKeys: &keys}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		return parts, keys, err
	}
	parts, keys, err := apply(nil, man)
	if err != nil || parts != 2 || strings.Join(keys, ",") != strings.Join(pubs, ",") {
		t.Fatalf("reopened with %d partitions, keys %v (%v); want 2, %v", parts, keys, err, pubs)
	}
	if _, err := checkVerifierFlags(keys, parts); err != nil {
		t.Fatalf("the reopened flags do not pass clearing's own check: %v", err)
	}
	other, _ := nkeys.CreateUser()
	otherPub, _ := other.PublicKey()
	parts, keys, err = apply([]string{"--verifier-partitions", "3", "--verifier-key", "2=" + otherPub}, man)
	if err != nil || parts != 3 || len(keys) != 1 || keys[0] != "2="+otherPub {
		t.Fatalf("flags given: %d partitions, keys %v (%v); want the command line's", parts, keys, err)
	}
	for _, tc := range []struct{ name, content string }{{"missing.nk", ""}, {"junk.nk", "not a seed"}} {
		bad := *man
		bad.VerifierSeeds = []string{seeds[0], tc.name}
		if tc.content != "" {
			if err := os.WriteFile(filepath.Join(dir, tc.name), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := apply(nil, &bad); err == nil || !strings.Contains(err.Error(), "verifier 1") || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("seed %s: %v, want an error naming verifier 1 and the file", tc.name, err)
		}
	}
}

// TestKeptRunFareClock: a kept run whose city clock ran ahead of the wall
// clock reopens with its fare clock carried on from there (payments and
// retries keep the run's timeline); one behind the wall, or without a
// city clock, keeps the wall clock.
func TestKeptRunFareClock(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		city  time.Time
		ahead time.Duration // 0: the wall clock kept
	}{
		{"three days ahead", time.Now().Add(72 * time.Hour), 72 * time.Hour},
		{"behind the wall", time.Now().Add(-time.Hour), 0},
		{"no city clock", time.Time{}, 0},
	} {
		man := &simulator.RunManifest{Clearing: "clearing", Chain: "chain", Contract: "0x" + strings.Repeat("ab", 20), Registry: "registry.json",
			Period: "10s", CityClock: tc.city}
		var dataDir, chainDir, registry, feed, feedVersion, natsCert, natsKey, faceKey, contract string
		var period time.Duration
		var faceMax, parts int
		var keys []string
		var clock func() time.Time
		fs := pflag.NewFlagSet("clearing", pflag.ContinueOnError)
		err := (&keptRun{dir: dir, man: man}).apply(fs, keptRunFlags{dataDir: &dataDir, chainDir: &chainDir, registry: &registry,
			feed: &feed, feedVersion: &feedVersion, natsCert: &natsCert, natsKey: &natsKey, faceKey: &faceKey, contract: &contract,
			period: &period, faceMaxGallery: &faceMax, verifierPartitions: &parts, verifierKeys: &keys, fareClock: &clock},
			slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		switch {
		case tc.ahead == 0 && clock != nil:
			t.Errorf("%s: a fare clock set (%s), want the wall clock", tc.name, clock())
		case tc.ahead > 0 && (clock == nil || clock().Sub(tc.city).Abs() > time.Minute):
			t.Errorf("%s: fare clock set %v, want the city clock carried on (%s)", tc.name, clock != nil, tc.city)
		}
	}
}

// TestKeptFeedVersion: a kept run's feed is priced under the version its
// run.json records when its files still hash to it; a changed feed is
// refused naming both; a run kept by a build that named the version
// ("simulated-city") keeps its name (an outside review saw such runs
// refused as changed).
func TestKeptFeedVersion(t *testing.T) {
	const hash, other = "sha256:0x1111111111111111", "sha256:0x2222222222222222"
	for _, tc := range []struct {
		recorded, computed, want, err string
	}{
		{"", hash, hash, ""},
		{hash, hash, hash, ""},
		{hash, other, "", "it was changed since the run"},
		{"simulated-city", other, "simulated-city", ""},
	} {
		got, err := keptFeedVersion("run/feed", tc.recorded, tc.computed)
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("recorded %q, computed %q: %q, %v; want %q, %q", tc.recorded, tc.computed, got, err, tc.want, tc.err)
		}
	}
}
