package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{[]string{"--rate", "0"}, "--rate"},
		{[]string{"--rate", "NaN"}, "--rate NaN"},
		{[]string{"--rate", "Inf"}, "--rate +Inf"},
		{[]string{"--rate", "1e6"}, "at most 10000"},
		{[]string{"--cut-off", "0s"}, "--cut-off"},
		{[]string{"--fault-interval", "0s"}, "--fault-interval"},
		{[]string{"--kinds", "kill-everything"}, "--kinds"},
		{[]string{"--kinds", "kill-verifier", "--verifier-partitions", "0"}, "--kinds"},
		{[]string{"--verifier-partitions", "-1"}, "--verifier-partitions"},
		{[]string{"--verifier-partitions", "65"}, "--verifier-partitions"},
		{[]string{"--terminals", "1"}, "--verifier-partitions 2"}, // one terminal leaves a partition empty
		{[]string{"--report", filepath.Join(dir, "missing", "r.json")}, "--report"},
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
