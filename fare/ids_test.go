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
