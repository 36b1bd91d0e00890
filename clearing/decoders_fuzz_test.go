package clearing

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
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
