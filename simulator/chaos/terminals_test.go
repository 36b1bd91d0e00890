package chaos

import (
	"fmt"
	"slices"
	"testing"
)

// TestTapLineParsed: the harness reads each tap line a terminal prints
// for its event id and sequence, and whether the sequence is provisional
// (such a tap may be signed again under another sequence, so its id is
// not held against it).
func TestTapLineParsed(t *testing.T) {
	for _, tc := range []struct {
		line             string
		id, seq          string
		provisional, tap bool
	}{
		{"0123456789abcdef0123456789abcdef seq=42 accept ok category=default", "0123456789abcdef0123456789abcdef", "42", false, true},
		{"0123456789abcdef0123456789abcdef seq=7(provisional) accept ok category=default", "0123456789abcdef0123456789abcdef", "7", true, true},
		{"line 3: tap line: want 3 fields", "", "", false, false},
		{"face 0123 seq=9 accept", "", "", false, false},
	} {
		m := seqRE.FindStringSubmatch(tc.line)
		if (m != nil) != tc.tap {
			t.Errorf("%q: read as a tap %v, want %v", tc.line, m != nil, tc.tap)
			continue
		}
		if m != nil && (m[1] != tc.id || m[2] != tc.seq || (m[3] != "") != tc.provisional) {
			t.Errorf("%q: id %q seq %q provisional %q", tc.line, m[1], m[2], m[3])
		}
	}
}

// TestTerminalLossFindsInjectedLosses: the end-of-run comparison of a
// terminal's taps with clearing's store catches each kind of loss put in
// on purpose (a reviewer found no test that showed it would): a sequence
// never applied, a tap replaced under its sequence by another event, and
// clearing holding a sequence the terminal never took; a rejected
// sequence is not lost here (the soak counts it as a problem of its own).
func TestTerminalLossFindsInjectedLosses(t *testing.T) {
	ids := func(n int) map[uint64]string {
		m := map[uint64]string{}
		for s := 1; s <= n; s++ {
			m[uint64(s)] = fmt.Sprintf("%032x", s)
		}
		return m
	}
	all := func(n int) (map[uint64]int, map[string]int) {
		applied, seen := map[uint64]int{}, map[string]int{}
		for s, id := range ids(n) {
			applied[s], seen[id] = 1, 1
		}
		return applied, seen
	}
	for _, tc := range []struct {
		name     string
		edit     func(applied map[uint64]int, seen map[string]int, rejected map[uint64]bool, printed map[uint64]string)
		lost     []uint64
		problems int
	}{
		{"every tap applied", func(map[uint64]int, map[string]int, map[uint64]bool, map[uint64]string) {}, nil, 0},
		{"sequence 3 never applied", func(a map[uint64]int, seen map[string]int, _ map[uint64]bool, p map[uint64]string) {
			delete(a, 3)
			delete(seen, p[3])
		}, []uint64{3}, 0},
		{"sequence 3 rejected", func(a map[uint64]int, seen map[string]int, r map[uint64]bool, p map[uint64]string) {
			delete(a, 3)
			delete(seen, p[3])
			r[3] = true
		}, nil, 0},
		{"the tap at 4 replaced by another event", func(a map[uint64]int, seen map[string]int, _ map[uint64]bool, p map[uint64]string) {
			delete(seen, p[4])
			seen["ffffffffffffffffffffffffffffffff"] = 1
		}, []uint64{4}, 1},
		{"clearing holds sequence 9, the terminal took 5", func(a map[uint64]int, _ map[string]int, _ map[uint64]bool, _ map[uint64]string) {
			a[9] = 1
		}, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			applied, seen := all(5)
			rejected, printed := map[uint64]bool{}, ids(5)
			tc.edit(applied, seen, rejected, printed)
			lost, problems := terminalLoss("t1", 5, applied, rejected, seen, printed)
			if !slices.Equal(lost, tc.lost) || len(problems) != tc.problems {
				t.Fatalf("lost %v, problems %q; want lost %v and %d problems", lost, problems, tc.lost, tc.problems)
			}
		})
	}
}
