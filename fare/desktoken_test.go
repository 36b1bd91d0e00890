package fare

import (
	"strings"
	"testing"
)

// TestCheckDeskToken: a token a desk types or sends for an enrolment is
// refused when no tap line could carry it or no one could see it (an
// outside test enrolled tokens of a Hangul filler alone, of a blank
// Braille pattern, of bytes a JSON decoder had turned into U+FFFD).
func TestCheckDeskToken(t *testing.T) {
	for _, tc := range []struct {
		tok, err string
	}{
		{"card-000070", ""},
		{strings.Repeat("x", MaxTokenLen), ""},
		{strings.Repeat("€", 42) + "xx", ""},
		{"カード-7", ""},
		{"e\u0301", ""}, // a combining mark after a letter
		{"", "1 to 128 bytes"},
		{strings.Repeat("x", MaxTokenLen+1), "got 129 bytes"},
		{"ab\xff\xfe", "not UTF-8"},
		{"a b", "space"},
		{"a\tb", "space"},
		{"a\u00a0b", "space"},
		{"a\x00b", "control"},
		{"a\u200bb", "invisible"},
		{"\ufeffcard", "invisible"},
		{"\u3164", "invisible"},
		{"\u2800", "invisible"},
		{"a\u115fb", "invisible"},
		{"a\uffa0b", "invisible"},
		{"a\u034fb", "invisible"},
		{"a\ufe0fb", "invisible"},
		{"ab\ufffd", "invisible"},
		{"\u0301", "combining mark"},
	} {
		err := CheckDeskToken(tc.tok)
		if tc.err == "" {
			if err != nil {
				t.Errorf("%q: %v, want it accepted", tc.tok, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: %v, want an error saying %q", tc.tok, err, tc.err)
		}
	}
}
