package fare

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// LoadOrCreateSecret reads a hex-encoded secret of size bytes from path,
// creating a fresh random one with mode 0600 if the file does not exist.
// what names the secret in errors ("terminal key", "clearing confirmation key").
func LoadOrCreateSecret(path string, size int, what string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		s := make([]byte, size)
		if _, err := rand.Read(s); err != nil {
			return nil, fmt.Errorf("generate %s: %w", what, err)
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(s)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("save %s: %w", what, err)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	s, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"))
	if err != nil || len(s) != size {
		return nil, fmt.Errorf("%s %s: want %d hex-encoded bytes", what, path, size)
	}
	return s, nil
}

// LoadOrCreateKey reads an ed25519 seed (hex) from path, creating a fresh
// key with mode 0600 if the file does not exist.
func LoadOrCreateKey(path, what string) (ed25519.PrivateKey, error) {
	seed, err := LoadOrCreateSecret(path, ed25519.SeedSize, what)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}
