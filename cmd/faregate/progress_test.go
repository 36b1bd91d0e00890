package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestSummaryFormats(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{latencies(map[string]float64{"max": 40.25, "p50": 4.3, "p99": 13.94, "p90": 8.1}), "p50 4.3 · p90 8.1 · p99 13.9 · max 40.2 ms"},
		{latencies(nil), "none"},
		{counts(map[string]int{"face-no-match": 442, "face-ambiguous": 15, "face-none": 2, "face-several": 2}), "face-no-match 442, face-ambiguous 15, face-none 2, face-several 2"},
		{counts(map[string]uint64{}), "none"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// Off a terminal (a log, CI) the run's status is printed every ten
// seconds, not every second.
func TestRunProgressOffTerminal(t *testing.T) {
	var out bytes.Buffer
	p := newRunProgress(&out, time.Minute)
	for i := 1; i <= 25; i++ {
		p.status(fmt.Sprintf("t=%3ds city Wed 08:00 taps=%d", i, i*10))
	}
	p.done()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "t= 10s") || !strings.HasPrefix(lines[1], "t= 20s") {
		t.Fatalf("printed %q", out.String())
	}
}
