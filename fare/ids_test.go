package fare

import (
	"strings"
	"testing"
)

// TestValidateID: ids travel as NATS subject tokens and account names; a
// refusal names the character as typed (a rune, not a byte of it).
func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id, err string
	}{
		{"metro-s01_g1", ""},
		{strings.Repeat("a", MaxIDLen), ""},
		{"", "empty"},
		{strings.Repeat("a", MaxIDLen+1), "longer than 64"},
		{"metro.s01", `character '.' at byte 5`},
		{"mân-a11", `character 'â' at byte 1`},
		{"a b", `character ' ' at byte 1`},
		{"x>", `character '>' at byte 1`},
	} {
		err := ValidateID(tc.id)
		if tc.err == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.id, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: %v, want an error containing %q", tc.id, err, tc.err)
		}
	}
}

// TestParseEventID: the bare form String writes, in either case and with
// or without 0x, parses to the same id; anything else is refused, naming
// the input without echoing all of an oversized one.
func TestParseEventID(t *testing.T) {
	want := EventID{0x01, 0xa2, 0x37, 0x2c, 0x80, 0xf0, 0xc5, 0x3f, 0x0f, 0xd4, 0xc2, 0x70, 0x03, 0xca, 0x51, 0x1f}
	for _, tc := range []struct {
		in, err string
	}{
		{"01a2372c80f0c53f0fd4c27003ca511f", ""},
		{"0x01a2372c80f0c53f0fd4c27003ca511f", ""},
		{"0X01A2372C80F0C53F0FD4C27003CA511F", ""},
		{"01a2372c80f0c53f0fd4c27003ca511", "want 32 hex digits"},
		{"0x", "want 32 hex digits"},
		{"", "want 32 hex digits"},
		{"0x0x01a2372c80f0c53f0fd4c27003ca51", `'x' at position 2 is not a hex digit`},
		{"0x0X01a2372c80f0c53f0fd4c27003ca511f", "got 34"}, // one prefix only (an outside review)
		{"0x01a2372c80f0c53f0fd4c27003ca511", "got 31"},
		{"01a2372c80f0c53f0fd4c27003ca511g", `'g' at position 32 is not a hex digit`},
		{" 01a2372c80f0c53f0fd4c27003ca511f", `got 33 characters, and ' ' at position 1 is not a hex digit`}, // not counted as a digit (an outside review)
		{strings.Repeat("a", 100000), `"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"...`},
	} {
		id, err := ParseEventID(tc.in)
		if tc.err == "" {
			if err != nil || id != want {
				t.Errorf("%q: %v, %v; want %v", tc.in, id, err, want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) || len(err.Error()) > 200 {
			t.Errorf("%.50q: %v, want a short error containing %q", tc.in, err, tc.err)
		}
	}
}
