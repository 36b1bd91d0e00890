package fares

import (
	"strings"
	"testing"
)

// FuzzParseAmount: an amount that parses formats back to the same value
// (FormatAmount's decimal string parses to it again), and the parser never
// panics or wraps around.
func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"3.20", "-1.5", "500", "3.200", ".5", "+1", "", "1e3", "999999999999999.99", "-0.00", strings.Repeat("9", 30)} {
		for _, cur := range []string{"EUR", "JPY", "KWD", "XXX"} {
			f.Add(s, cur)
		}
	}
	f.Fuzz(func(t *testing.T, s, currency string) {
		v, err := ParseAmount(s, currency)
		if err != nil {
			return
		}
		if strings.HasPrefix(s, "-") != (v < 0) && v != 0 {
			t.Fatalf("%q %s: %d has the wrong sign", s, currency, v)
		}
		again, err := ParseAmount(FormatAmount(v, currency), currency)
		if err != nil || again != v {
			t.Fatalf("%q %s: %d formats as %q, which parses as %d, %v", s, currency, v, FormatAmount(v, currency), again, err)
		}
	})
}
