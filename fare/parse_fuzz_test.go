package fare

import (
	"strings"
	"testing"
)

// FuzzParseEventID: what parses is 32 hex digits (0x optional, any case)
// and prints back as the same id; an error never echoes more than 40 bytes
// of the input.
func FuzzParseEventID(f *testing.F) {
	for _, s := range []string{"01a23b06534028efbc5848942ced5990", "0x01A23B06534028EFBC5848942CED5990", "0X00", "", strings.Repeat("z", 32), strings.Repeat("a", 1000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseEventID(s)
		if err != nil {
			if len(err.Error()) > 400 { // 40 bytes quoted, escapes and all, and the message
				t.Fatalf("an error of %d bytes for %d bytes of input", len(err.Error()), len(s))
			}
			return
		}
		again, err := ParseEventID(id.String())
		if err != nil || again != id || !strings.EqualFold(trimHexPrefix(s), id.String()) {
			t.Fatalf("%q parsed as %s, which reads back as %s, %v", s, id, again, err)
		}
	})
}

// FuzzParseDenyKey: as FuzzParseEventID, for deny-list keys.
func FuzzParseDenyKey(f *testing.F) {
	for _, s := range []string{DenyKey(Card, "x"), strings.ToUpper(DenyKey(Face, "y")), "0X" + strings.Repeat("A", 32), "zz", strings.Repeat("b", 500)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseDenyKey(s)
		if err != nil {
			if len(err.Error()) > 400 { // 40 bytes quoted, escapes and all, and the message
				t.Fatalf("an error of %d bytes for %d bytes of input", len(err.Error()), len(s))
			}
			return
		}
		if again, err := ParseDenyKey(k.Hex()); err != nil || again != k {
			t.Fatalf("%q parsed as %s, which reads back as %s, %v", s, k.Hex(), again.Hex(), err)
		}
	})
}
