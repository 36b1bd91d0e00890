package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestSimulateRefusesBadFlags: travel days and the decline rate are
// checked before anything starts (no data dir, no chain).
func TestSimulateRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--days", "0"}, "--days 0: want 1 or more travel days"},
		{[]string{"--days", "-3"}, "--days -3: want 1 or more travel days"},
		{[]string{"--decline-rate", "1.5"}, "--decline-rate 1.5: want 0 to 1"},
		{[]string{"--decline-rate", "-0.1"}, "--decline-rate -0.1: want 0 to 1"},
	} {
		dir := filepath.Join(t.TempDir(), "sim")
		_, err := runCLI(t, append([]string{"simulate", "--data", dir, "--http", ""}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("simulate %s: %v, want an error containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
