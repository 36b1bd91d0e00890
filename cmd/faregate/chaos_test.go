package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/simulator/chaos"
)

// TestChaosRefusesBadFlags: every bad flag of faregate chaos is a usage
// error (exit 64) naming the flag, found before any process starts or
// directory is made. The soak itself runs in simulator/chaos's TestChaosSoak.
func TestChaosRefusesBadFlags(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "soak")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--taps", "0"}, "--taps"},
		{[]string{"--faults", "-1"}, "--faults"},
		{[]string{"--terminals", "0"}, "--terminals"},
		{[]string{"--terminals", "1001"}, "--terminals 1001: want 1 to 1000"},
		// Refused, not replaced by the default behind run.flags' back.
		{[]string{"--period", "0s"}, "--period 0s"},
		{[]string{"--period", "-1s"}, "--period -1s"},
		{[]string{"--period", "1ns"}, "--period 1ns: want a settlement period of at least 100ms"},
		{[]string{"--rate", "0"}, "--rate"},
		{[]string{"--rate", "NaN"}, "--rate NaN"},
		{[]string{"--rate", "Inf"}, "--rate +Inf"},
		{[]string{"--rate", "1e6"}, "at most 10000"},
		{[]string{"--cut-off", "0s"}, "--cut-off"},
		{[]string{"--fault-interval", "0s"}, "--fault-interval"},
		{[]string{"--kinds", "kill-everything"}, "--kinds"},
		{[]string{"--kinds", ""}, `--kinds "": name the fault kinds to inject`},
		{[]string{"--kinds", "kill-verifier", "--verifier-partitions", "0"}, "--kinds"},
		{[]string{"--verifier-partitions", "-1"}, "--verifier-partitions"},
		{[]string{"--verifier-partitions", "65"}, "--verifier-partitions"},
		{[]string{"--terminals", "1"}, "--verifier-partitions 2"}, // one terminal leaves a partition empty
		{[]string{"--report", filepath.Join(dir, "missing", "r.json")}, "--report"},
		// An outage as long as the stall limit fails every such fault as
		// a stall (an outside review): refused before anything starts.
		{[]string{"--cut-off", "3m"}, "--stall-limit 2m0s: a cut-terminal fault keeps its part down 3m0s (--cut-off)"},
		{[]string{"--period", "1m"}, "a restart-chain fault keeps its part down 2m1s (--outage and --period"},
		{[]string{"--faults", "4", "--cut-off", "3m"}, "a cut-terminal fault keeps its part down 3m0s"}, // the fourth of the rotation
		{[]string{"--ports", "0-0"}, "--ports 0-0: want FIRST-LAST within 1-65535"},
		{[]string{"--outage", "5m", "--kinds", "kill-terminal"}, "a kill-terminal fault keeps its part down 5m0s (--outage)"},
		{[]string{"--ports", "25100"}, `--ports "25100": want FIRST-LAST`},
		{[]string{"--ports", "25199-25100"}, "--ports 25199-25100: want FIRST-LAST within 1-65535"},
		{[]string{"--ports", "65530-65540"}, "within 1-65535"},
		{[]string{"--ports", "25100-25105"}, "--ports 25100-25105: 6 ports, and 4 terminals need 20"},
		{[]string{"now"}, "unknown command"},
	} {
		_, err := runCLI(t, append([]string{"chaos", "--data", data}, tc.args...)...)
		var ue usageError
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.want != "unknown command" && !errors.As(err, &ue)) {
			t.Errorf("chaos %v: %v, want a usage error naming %s", tc.args, err, tc.want)
		}
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("chaos %v created %s before refusing", tc.args, data)
		}
	}
	// A kept soak (or any directory with something in it) is not soaked
	// over: its NATS state and registry are the evidence.
	kept := filepath.Join(dir, "kept")
	if err := os.MkdirAll(kept, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kept, "registry.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "chaos", "--data", kept); err == nil || exitCode(err) != exitUsage ||
		!strings.Contains(err.Error(), "holds a kept soak already: reopen it with faregate clearing --data "+filepath.Join(kept, "clearing")+" --registry "+filepath.Join(kept, "registry.json")) {
		t.Errorf("chaos over a kept soak: %v (exit %d), want a usage error", err, exitCode(err))
	}
	// A missing --faregate is named as such (not as the nats-server looked
	// for beside it); a missing file is a failure (1), not a usage error.
	_, err := runCLI(t, "chaos", "--data", data, "--faregate", filepath.Join(dir, "nonexistent"))
	if err == nil || !strings.HasPrefix(err.Error(), "--faregate: ") || exitCode(err) != exitFailure {
		t.Errorf("chaos --faregate nonexistent: %v (exit %d), want a failure naming --faregate", err, exitCode(err))
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("chaos --faregate nonexistent created %s", data)
	}
	chain := filepath.Join(dir, "chain")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--http", "127.0.0.1:0"}, "--dir"},
		{[]string{"--dir", chain, "--http", "nowhere"}, "--http"},
	} {
		_, err := runCLI(t, append([]string{"chaos", "chain-node"}, tc.args...)...)
		var ue usageError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ue) {
			t.Errorf("chaos chain-node %v: %v, want a usage error naming %s", tc.args, err, tc.want)
		}
		if _, err := os.Stat(chain); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("chaos chain-node %v created %s before refusing", tc.args, chain)
		}
	}
}

// TestPrintFaultLog: a fault after which no progress was observed shows no
// stall but how long the harness waited and why it stopped waiting.
func TestPrintFaultLog(t *testing.T) {
	rep := &chaos.Report{
		Faults: []chaos.Fault{
			{At: chaos.Duration(5 * time.Second), Kind: chaos.KillClearing, Target: "clearing", Down: chaos.Duration(time.Second), Stall: chaos.Duration(3 * time.Second)},
			{At: chaos.Duration(20 * time.Second), Kind: chaos.CutTerminal, Target: "t2", Down: chaos.Duration(5 * time.Second),
				Unrecovered: "interrupted", Waited: chaos.Duration(7 * time.Second)},
		},
		LongestStall: map[chaos.FaultKind]chaos.Duration{chaos.KillClearing: chaos.Duration(3 * time.Second)},
		Stopped:      "interrupted after 2 of 6 faults",
	}
	var out strings.Builder
	printFaultLog(&out, rep)
	for _, want := range []string{"kill-clearing  clearing  1s    3s", "cut-terminal   t2        5s    -      no progress observed within 7s (interrupted)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("fault log:\n%s\nwant %q", out.String(), want)
		}
	}
}
