package clearing

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"testing"
	"time"
)

// FuzzParseVerifierKey: a key that parses prints back as the same key and
// names a partition in range.
func FuzzParseVerifierKey(f *testing.F) {
	for _, s := range []string{"0=UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4", "63=U", "-1=U", "x", "", "1==", "9999999999999999999=UA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseVerifierKey(s)
		if err != nil {
			return
		}
		if k.Partition < 0 || k.Partition >= MaxVerifierPartitions {
			t.Fatalf("%q: partition %d", s, k.Partition)
		}
		if again, err := ParseVerifierKey(k.String()); err != nil || again != k {
			t.Fatalf("%q parsed as %v, which reads back as %v, %v", s, k, again, err)
		}
	})
}

// FuzzDecodePublicKey: what decodes is what the 0x hex or base64 encoded.
func FuzzDecodePublicKey(f *testing.F) {
	key := bytes.Repeat([]byte{7}, 32)
	for _, s := range []string{"0x" + hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key), "0x", "0xzz", "===", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := DecodePublicKey(s)
		if err != nil {
			return
		}
		hexForm := "0x" + hex.EncodeToString(k)
		if again, err := DecodePublicKey(hexForm); err != nil || !bytes.Equal(again, k) {
			t.Fatalf("%q decoded as %x, whose hex form reads back as %x, %v", s, k, again, err)
		}
	})
}

// TestParseQueryTime: RFC 3339 as the standard writes it, lower-case t and
// z included, and a "+" sent unescaped; offsets beyond 23:59 refused.
func TestParseQueryTime(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // RFC 3339 in UTC, "" for an error
	}{
		{"2026-12-02T08:00:00+01:00", "2026-12-02T07:00:00Z"},
		{"2026-12-02t08:00:00z", "2026-12-02T08:00:00Z"},
		{"2026-12-02T08:00:00 01:00", "2026-12-02T07:00:00Z"},
		{"2026-12-02T08:00:00.5-03:30", "2026-12-02T11:30:00.5Z"},
		{"2026-12-02T08:00:00+24:00", ""},
		{"2026-12-02T08:00:00+01:60", ""},
		{"2026-12-02T08:00:00", ""},
		{"2026-12-02", ""},
		{"", ""},
	} {
		got, err := parseQueryTime(c.in)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("%q: accepted as %s", c.in, got)
		case c.want != "" && (err != nil || got.UTC().Format(time.RFC3339Nano) != c.want):
			t.Errorf("%q: %s, %v; want %s", c.in, got.UTC().Format(time.RFC3339Nano), err, c.want)
		}
	}
}
