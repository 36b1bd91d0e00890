package clearing

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"

	"github.com/faregate/faregate/clearing/fares"
)

// FuzzTokenFile: whatever the API token file holds, reading it either fails
// with an error or yields only valid, distinct tokens.
func FuzzTokenFile(f *testing.F) {
	f.Add([]byte(`{"tokens":[{"name":"a","role":"auditor","created":"2026-12-01T00:00:00Z","sha256":"0x` +
		"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff" + `"}]}`))
	f.Add([]byte(`{"tokens":[]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), APITokenFile)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		tf, err := readTokenFile(path)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, tok := range tf.Tokens {
			if validateTokenInfo(tok) != nil || seen[tok.Name] {
				t.Fatalf("accepted an invalid or repeated token: %+v", tok)
			}
			seen[tok.Name] = true
		}
	})
}

// FuzzRotationsFile: a rotation chain file is accepted only as a chain of
// well-formed rotations ending at clearing's key.
func FuzzRotationsFile(f *testing.F) {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	f.Add([]byte("0x4b01\n"))
	f.Add([]byte("not hex"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ConfirmRotationsFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		chain, err := readRotations(dir)
		if err != nil {
			return
		}
		if checkRotations(chain, key.Public().(ed25519.PublicKey)) == nil && len(chain) > 0 {
			t.Fatalf("a chain ending at the test key from fuzzed bytes: %x", b)
		}
	})
}

// FuzzWeekRecord: a rider week record decodes to days of its own week or
// fails; a version 2 record re-encodes as it was.
func FuzzWeekRecord(f *testing.F) {
	start := weekStart(fares.DateOf(2026, 11, 30))
	f.Add([]byte{weekRecordDays, 0b0100101})
	f.Add(weekRecordV1(map[fares.Date]int64{start: 450, start + 3: 1200}))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		bits, err := decodeWeekRecord(b, start)
		if err != nil {
			return
		}
		if bits >= 1<<7 {
			t.Fatalf("days %07b: more than a week", bits)
		}
		if len(b) == 2 && b[0] == weekRecordDays && b[1] != bits {
			t.Fatalf("version 2 record %x read as %07b", b, bits)
		}
	})
}
