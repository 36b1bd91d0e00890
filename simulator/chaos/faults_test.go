package chaos

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFaultLogCountsOnlyObservedRecoveries: a fault after which progress
// was never observed (interrupted, the stall limit reached) is logged as
// such, with how long the harness waited, and counts in no longest stall;
// one that recovered counts with its stall.
func TestFaultLogCountsOnlyObservedRecoveries(t *testing.T) {
	interrupted, cancel := context.WithCancel(context.Background())
	cancel()
	type fault struct {
		kind   FaultKind
		ctx    context.Context
		stall  time.Duration // recovered after this
		waited time.Duration // no progress observed within this (when stall is 0)
	}
	for _, tc := range []struct {
		name    string
		faults  []fault
		longest map[FaultKind]time.Duration
		lines   []string
		summary []string
	}{
		{
			name:    "recovered",
			faults:  []fault{{kind: KillClearing, stall: 3 * time.Second}, {kind: KillClearing, stall: 5 * time.Second}},
			longest: map[FaultKind]time.Duration{KillClearing: 5 * time.Second},
			lines:   []string{"progress after 3s", "progress after 5s"},
			summary: []string{"kill-clearing x2 longest stall 5s"},
		},
		{
			name:    "interrupted",
			faults:  []fault{{kind: KillTerminal, stall: time.Second}, {kind: CutTerminal, ctx: interrupted, waited: 40 * time.Second}},
			longest: map[FaultKind]time.Duration{KillTerminal: time.Second},
			lines:   []string{"progress after 1s", "no progress observed within 40s (interrupted)"},
			summary: []string{"cut-terminal x1 longest stall - (1 with no progress observed)", "kill-terminal x1 longest stall 1s"},
		},
		{
			name:    "stall limit",
			faults:  []fault{{kind: RestartChain, stall: 2 * time.Second}, {kind: RestartChain, ctx: context.Background(), waited: 2 * time.Minute}},
			longest: map[FaultKind]time.Duration{RestartChain: 2 * time.Second},
			lines:   []string{"progress after 2s", "no progress observed within 2m0s (stall limit)"},
			summary: []string{"restart-chain x2 longest stall 2s (1 with no progress observed)"},
		},
	} {
		r := &Report{LongestStall: map[FaultKind]Duration{}}
		for i, spec := range tc.faults {
			f := Fault{Kind: spec.kind, Target: "t1", Down: Duration(time.Second)}
			if spec.ctx != nil {
				f.Stall = Duration(spec.waited) // as inject had it before: it must not count
				f.unrecovered(spec.ctx, spec.waited)
			} else {
				f.Stall = Duration(spec.stall)
			}
			r.record(f)
			if line := f.logLine(); !strings.Contains(line, tc.lines[i]) {
				t.Errorf("%s: fault %d logged %q, want %q", tc.name, i+1, line, tc.lines[i])
			}
		}
		if len(r.LongestStall) != len(tc.longest) {
			t.Errorf("%s: longest stalls %v, want %v", tc.name, r.LongestStall, tc.longest)
		}
		for k, d := range tc.longest {
			if got := time.Duration(r.LongestStall[k]); got != d {
				t.Errorf("%s: longest stall of %s %s, want %s", tc.name, k, got, d)
			}
		}
		// Whole lines, spaces aside (the kinds are padded to a column).
		sum := r.Summary()
		var lines []string
		for l := range strings.Lines(sum) {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
		for _, want := range tc.summary {
			if !slices.Contains(lines, want) {
				t.Errorf("%s: summary\n%s\nwant %q", tc.name, sum, want)
			}
		}
	}
}

// TestStoppedReportChecksNothing: a soak that stopped early writes its
// invariants as null and says in its summary that they were not checked
// (an outside test's script read "lost 0, twice 0" from one that had
// checked nothing); a finished soak writes them as numbers.
func TestStoppedReportChecksNothing(t *testing.T) {
	for _, tc := range []struct {
		rep     Report
		json    []string
		summary string
	}{
		{Report{Taps: 10, Applied: 4, Stopped: "interrupted after 1 of 6 faults"},
			[]string{`"lost":null`, `"twice":null`, `"outbox_pending":null`, `"audit_clean":null`, `"applied":null`, `"signatures_checked":null`,
				`"stopped":"interrupted after 1 of 6 faults"`, `"taps":10`},
			"applied, lost, twice, outbox pending and the audit not checked"},
		{Report{Taps: 10, Applied: 10, AuditClean: true},
			[]string{`"lost":0`, `"twice":0`, `"outbox_pending":0`, `"audit_clean":true`},
			"lost 0, twice 0"},
	} {
		b, err := json.Marshal(&tc.rep)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range tc.json {
			if !strings.Contains(string(b), want) {
				t.Errorf("report %s lacks %s", b, want)
			}
		}
		for _, k := range []string{`"lost"`, `"applied"`} {
			if strings.Count(string(b), k) != 1 {
				t.Errorf("report %s: %s written twice", b, k)
			}
		}
		if s := tc.rep.Summary(); !strings.Contains(s, tc.summary) {
			t.Errorf("summary %q, want it to say %q", s, tc.summary)
		}
	}
}

// TestListenInRange: with a port range every listener takes the next free
// port of it, skipping one in use, and says so when none is left.
func TestListenInRange(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	first := taken.Addr().(*net.TCPAddr).Port // Linux picks below 61000: the range fits
	h := &harness{cfg: Config{FirstPort: first, LastPort: first + 2}}
	var got []int
	for range 2 {
		ln, err := h.listen()
		if err != nil {
			t.Fatalf("listen in %d-%d: %v (only the first taken)", first, first+2, err)
		}
		defer ln.Close()
		got = append(got, ln.Addr().(*net.TCPAddr).Port)
	}
	if got[0] != first+1 || got[1] != first+2 {
		t.Errorf("ports %v, want %d and %d: the first is taken", got, first+1, first+2)
	}
	if _, err := h.listen(); err == nil || !strings.Contains(err.Error(), "no free port left") {
		t.Errorf("a listener past the range: %v, want it refused", err)
	}
}

// TestStallOf: a fault's stall runs to the progress seen after it (while
// its part was down, or after), and progress seen only past the limit is
// over it.
func TestStallOf(t *testing.T) {
	began := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name           string
		recovered, now time.Duration // after began; recovered 0: not seen while down
		stall          time.Duration
		within         bool
	}{
		{"progress after the restart", 0, 11 * time.Second, 11 * time.Second, true},
		{"progress while the node was down", 6 * time.Second, 40 * time.Second, 6 * time.Second, true},
		{"at the limit", 0, 30 * time.Second, 30 * time.Second, true},
		{"past the limit, seen at the first look", 0, 45 * time.Second, 45 * time.Second, false},
	} {
		var rec time.Time
		if tc.recovered > 0 {
			rec = began.Add(tc.recovered)
		}
		stall, within := stallOf(began, rec, began.Add(tc.now), 30*time.Second)
		if stall != tc.stall || within != tc.within {
			t.Errorf("%s: stall %s within %v, want %s %v", tc.name, stall, within, tc.stall, tc.within)
		}
	}
}
