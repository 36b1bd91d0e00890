package chaos_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/simulator/chaos"
)

// The CI soak's size; a longer soak sets them on the command line, e.g.
// go test ./simulator/chaos -run TestChaosSoak -timeout 60m -chaos.timeout 55m -chaos.taps 50000 -chaos.faults 20 -chaos.rate 50 -chaos.report soak.json
var (
	taps      = flag.Int("chaos.taps", 3000, "taps to take at least")
	faults    = flag.Int("chaos.faults", 12, "faults to inject (12: each of the six kinds twice)")
	rate      = flag.Float64("chaos.rate", 10, "taps per second per terminal")
	terminals = flag.Int("chaos.terminals", 4, "terminal processes")
	verifiers = flag.Int("chaos.verifier-partitions", 2, "verifier partitions, one verifier process each (0: clearing verifies)")
	cutOff    = flag.Duration("chaos.cutoff", 5*time.Second, "how long a terminal is cut off from NATS")
	natsDown  = flag.Duration("chaos.nats-outage", 3*time.Second, "how long a killed NATS node stays down")
	interval  = flag.Duration("chaos.fault-interval", 3*time.Second, "quiet time between one fault's recovery and the next")
	stall     = flag.Duration("chaos.stall-limit", 2*time.Minute, "fail when nothing progresses this long after a fault")
	timeout   = flag.Duration("chaos.timeout", 10*time.Minute, "the whole soak's deadline")
	report    = flag.String("chaos.report", "", "write the report as JSON to this file")
	keep      = flag.String("chaos.dir", "", "run in this directory and keep it (default: a temporary one)")
)

// faregateBin is the faregate binary TestMain builds.
var faregateBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "faregate-chaos-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	faregateBin = filepath.Join(dir, "faregate")
	build := exec.Command("go", "build", "-o", faregateBin, "./cmd/faregate")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "GOEXPERIMENT=simd")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/faregate: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// natsServer is the repository's bin/nats-server; the soak fails without
// it.
func natsServer(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "nats-server"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("no usable %s (%v): run make nats-server", bin, err)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
	return bin
}

// TestChaosSoak is the CI soak: three nats-server processes in one
// JetStream cluster, a clearing process with two verifier partitions and a
// verifier process for each, its chain node as a process of its own, four
// terminal processes tapping through proxies (two in each partition), at
// twelve faults, two of every kind (clearing SIGKILLed, the event stream's
// leader node SIGKILLed, a terminal SIGKILLed, a terminal cut off from
// NATS, the chain node SIGKILLed, each partition's verifier SIGKILLed), then every outbox
// drained, the ledger audit clean, every accepted tap applied exactly once,
// read from the stores, and every partition's verifier forwarded taps.
func TestChaosSoak(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	dir := *keep
	if dir == "" {
		dir = t.TempDir()
	}
	// Every listener in a range of its own (as on a firewalled host),
	// below the kernel's ephemeral ports, apart for concurrent runs.
	first := 20000 + os.Getpid()%300*40
	last := first + chaos.PortsNeeded(*terminals) + 9
	var api string
	cfg := chaos.Config{
		Faregate: faregateBin, NATSServer: natsServer(t), Dir: dir,
		Terminals: *terminals, VerifierPartitions: *verifiers, Taps: *taps, Rate: *rate, Faults: *faults,
		CutOff: *cutOff, NATSOutage: *natsDown, FaultInterval: *interval, StallLimit: *stall,
		FirstPort: first, LastPort: last,
		Logf: func(format string, args ...any) {
			line := fmt.Sprintf(format, args...)
			if _, rest, ok := strings.Cut(line, "clearing (API "); ok {
				api, _, _ = strings.Cut(rest, ")")
			}
			t.Log(line)
		},
	}
	rep, err := chaos.Run(ctx, cfg)
	if rep != nil {
		t.Logf("fault log:")
		for i, f := range rep.Faults {
			progress := "progress after " + f.Stall.String()
			if f.Unrecovered != "" {
				progress = fmt.Sprintf("no progress observed within %s (%s)", f.Waited, f.Unrecovered)
			}
			t.Logf("  %2d at %7s  %-24s %-42s down %-8s %s %s", i+1, f.At, f.Kind, f.Target, f.Down, progress, f.Note)
		}
		t.Logf("report:\n%s", rep.Summary())
		if *report != "" {
			b, _ := json.MarshalIndent(rep, "", "  ")
			if err := os.WriteFile(*report, b, 0o644); err != nil {
				t.Error(err)
			}
		}
	}
	if err != nil {
		t.Fatalf("soak: %v (logs in %s/logs)", err, dir)
	}
	if _, p, _ := strings.Cut(api, ":"); func() bool { n, err := strconv.Atoi(p); return err != nil || n < first || n > last }() {
		t.Errorf("clearing's API at %q, want a port of %d-%d", api, first, last)
	}
	if !rep.OK() {
		t.Fatalf("broken invariants (logs in %s/logs):\n%s", dir, strings.Join(rep.Problems, "\n"))
	}
	if rep.Taps < uint64(*taps) || len(rep.Faults) < *faults {
		t.Errorf("%d taps and %d faults, want at least %d and %d", rep.Taps, len(rep.Faults), *taps, *faults)
	}
	if rep.Lost != 0 || rep.Twice != 0 || rep.Rejected != 0 || rep.OutboxPending != 0 || !rep.AuditClean || rep.Applied != rep.Taps {
		t.Errorf("report: %+v", rep)
	}
	kinds := map[chaos.FaultKind]bool{}
	for _, f := range rep.Faults {
		kinds[f.Kind] = true
	}
	want := chaos.DefaultKindsFor(*verifiers)
	if *faults >= len(want) && len(kinds) != len(want) {
		t.Errorf("fault kinds %v, want all of %v", kinds, want)
	}
	if len(rep.Partitions) != *verifiers {
		t.Errorf("%d partitions in the report, want %d", len(rep.Partitions), *verifiers)
	}
	killed := 0 // kill-verifier faults: each partition in turn
	for _, f := range rep.Faults {
		if f.Kind == chaos.KillVerifier {
			killed++
		}
	}
	for _, p := range rep.Partitions {
		if p.Applied == 0 || p.Delivered < p.Applied || p.Forwarded == 0 || p.Pending != 0 {
			t.Errorf("verifier partition %+v: want taps applied, delivered, forwarded and none left", p)
		}
		if p.Partition < killed && p.Starts < 2 {
			t.Errorf("verifier partition %d: %d verifier starts, want a restart after its kill", p.Partition, p.Starts)
		}
	}
	restarts := 0
	for _, tr := range rep.Terminals {
		restarts += tr.Restarts
	}
	if restarts == 0 && *faults >= len(want) {
		t.Error("no terminal was restarted")
	}
}

// TestChaosInterrupted: a soak interrupted after its first fault returns a
// partial report (the fault log until then) that says it stopped early and
// is not OK, with the error; every child process is stopped.
func TestChaosInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	interrupt, stop := context.WithCancel(ctx)
	defer stop()
	cfg := chaos.Config{
		Faregate: faregateBin, NATSServer: natsServer(t), Dir: t.TempDir(),
		Terminals: 2, VerifierPartitions: 0, Taps: 1_000_000, Rate: 10, Faults: 6,
		Kinds: []chaos.FaultKind{chaos.KillTerminal}, FaultInterval: time.Second, StallLimit: time.Minute,
		Logf: func(format string, args ...any) {
			line := fmt.Sprintf(format, args...)
			t.Log(line)
			if strings.Contains(line, " fault 1 kill-terminal ") {
				stop() // as Ctrl-C would
			}
		},
	}
	rep, err := chaos.Run(interrupt, cfg)
	if !errors.Is(err, context.Canceled) || rep == nil {
		t.Fatalf("interrupted soak: %v, report %v", err, rep)
	}
	if rep.OK() || !strings.Contains(rep.Stopped, "interrupted after 1 of 6 faults") || len(rep.Faults) != 1 || rep.Faults[0].Kind != chaos.KillTerminal {
		t.Errorf("partial report: stopped %q, ok %v, faults %+v", rep.Stopped, rep.OK(), rep.Faults)
	}
	if !strings.HasPrefix(rep.Summary(), "STOPPED EARLY, invariants not checked") || !strings.Contains(rep.Summary(), "the audit not checked") {
		t.Errorf("summary does not say it stopped early:\n%s", rep.Summary())
	}
	// What was not measured is null, not 0; the taps the terminals took
	// until the interrupt are counted (an outside test read taps 0 and
	// applied 0 after some 700 taps).
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"lost", "twice", "outbox_pending", "audit_clean", "applied", "batches", "chain_batches", "signatures_checked", "journal_imbalance"} {
		if v, ok := m[k]; !ok || v != nil {
			t.Errorf("stopped report's %s: %v, want null", k, v)
		}
	}
	if taps, _ := m["taps"].(float64); taps < 1 {
		t.Errorf("stopped report's taps: %v, want those the terminals took", m["taps"])
	}
}
