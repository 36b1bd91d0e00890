package fare_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faregate/faregate/fare"
)

// TestPrivateDir: a directory open to others is made owner-only (Badger's
// files in it are 0644: the directory is what keeps card tokens private),
// one not there is made owner-only, one already private is left alone,
// and a file is refused.
func TestPrivateDir(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		name    string
		setup   func(string) error
		wasOpen os.FileMode
		wantErr string
	}{
		{"not there", func(string) error { return nil }, 0, ""},
		{"open to all", func(d string) error { return os.Mkdir(d, 0o755) }, 0o755, ""},
		{"open to its group", func(d string) error { return os.Mkdir(d, 0o750) }, 0o750, ""},
		{"private", func(d string) error { return os.Mkdir(d, 0o700) }, 0, ""},
		{"a file", func(d string) error { return os.WriteFile(d, nil, 0o600) }, 0, "not a directory"},
	}
	for i, tc := range tests {
		dir := filepath.Join(root, string(rune('a'+i)), "data")
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := tc.setup(dir); err != nil {
			t.Fatal(err)
		}
		// Set the mode past the umask.
		if tc.wasOpen != 0 {
			if err := os.Chmod(dir, tc.wasOpen); err != nil {
				t.Fatal(err)
			}
		}
		was, err := fare.PrivateDir(dir)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || was != tc.wasOpen {
			t.Errorf("%s: PrivateDir = %#o, %v; want %#o", tc.name, was, err, tc.wasOpen)
			continue
		}
		if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode after %v (%v), want 0700", tc.name, st.Mode().Perm(), err)
		}
	}
}
