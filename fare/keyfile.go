package fare

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
		switch err := CreateFile(path, []byte(hex.EncodeToString(s)+"\n")); {
		case err == nil:
			return s, nil
		case errors.Is(err, fs.ErrExist):
			// Another process made it first: that one counts. (Once: a
			// path that exists yet reads as missing is a dangling link.)
			if _, rerr := os.ReadFile(path); rerr != nil {
				return nil, fmt.Errorf("save %s: %s exists but cannot be read (%v): a symbolic link to a file not there?", what, path, rerr)
			}
			return LoadOrCreateSecret(path, size, what)
		default:
			return nil, fmt.Errorf("save %s: %w", what, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return decodeSecret(b, path, size, what)
}

// LoadSecret reads a hex-encoded secret of size bytes from path, which
// must exist: for a reader (an audit) that must not make one.
func LoadSecret(path string, size int, what string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return decodeSecret(b, path, size, what)
}

func decodeSecret(b []byte, path string, size int, what string) ([]byte, error) {
	s, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"))
	if err != nil || len(s) != size {
		return nil, fmt.Errorf("%s %s: want %d hex-encoded bytes", what, path, size)
	}
	return s, nil
}

// CreateFile makes path with data, mode 0600, whole or not at all: written
// and synced under a temporary name, then linked to path (which fails with
// fs.ErrExist rather than replace a file there) and the directory synced.
// A crash half way never leaves a truncated key that every start refuses.
func CreateFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if err := writeSynced(f, data); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		// A file system without hard links: create it exclusively instead
		// (not atomic, but never over another's key).
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if err := writeSynced(f, data); err != nil {
			os.Remove(path)
			return err
		}
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		return err
	}
	return nil
}

// writeSynced writes data to f, syncs and closes it.
func writeSynced(f *os.File, data []byte) error {
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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
