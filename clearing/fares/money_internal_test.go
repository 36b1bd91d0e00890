package fares

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestShortValueKeepsCharactersWhole: a cut value is still valid UTF-8
// and says how long it was; a short one is kept as it is.
func TestShortValueKeepsCharactersWhole(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"metro-z1", "metro-z1"},
		{strings.Repeat("z", 256), strings.Repeat("z", 256)},
		{strings.Repeat("z", 257), strings.Repeat("z", 128) + "... (257 bytes)"},
		{"a" + strings.Repeat("€", 100), "a" + strings.Repeat("€", 42) + "... (301 bytes)"}, // 1 + 42×3 = 127 bytes
	} {
		got := ShortValue(c.in)
		if got != c.want || !utf8.ValidString(got) {
			t.Errorf("ShortValue(%d bytes) = %q, want %q", len(c.in), got, c.want)
		}
	}
	if m := ShortMessage(strings.Repeat("ü", 2000)); !utf8.ValidString(m) || !strings.HasSuffix(m, "... (message of 4000 bytes cut)") || len(m) > 2100 {
		t.Errorf("ShortMessage of 4000 bytes: %d bytes, %q...", len(m), m[len(m)-40:])
	}
}
