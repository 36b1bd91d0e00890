package chaos

import "testing"

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
