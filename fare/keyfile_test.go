package fare

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadOrCreateSecret: a secret is made once, whole, mode 0600, with no
// temporary file left; later calls read it; a damaged file is refused
// naming it, never replaced.
func TestLoadOrCreateSecret(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "confirm.key")
	first, err := LoadOrCreateSecret(path, 32, "test key")
	if err != nil || len(first) != 32 {
		t.Fatalf("create: %x, %v", first, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the key file: %v, %v; want mode 0600", st, err)
	}
	again, err := LoadOrCreateSecret(path, 32, "test key")
	if err != nil || !bytes.Equal(again, first) {
		t.Fatalf("read back: %x, %v; want %x", again, err, first)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("files left beside the key: %v", entries)
	}
	for name, content := range map[string]string{"short": "abcd\n", "not hex": strings.Repeat("zz", 32), "empty": ""} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateSecret(p, 32, "test key"); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming %s", name, err, p)
		}
		if b, _ := os.ReadFile(p); string(b) != content {
			t.Errorf("%s: the damaged file was replaced", name)
		}
	}
}

// TestLoadOrCreateSecretDanglingLink: a key path that is a symbolic link to
// a file not there is refused naming it (it used to recurse without end).
func TestLoadOrCreateSecretDanglingLink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := os.Symlink(filepath.Join(dir, "mount", "key"), path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSecret(path, 32, "test key"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("a dangling link: %v", err)
	}
}
