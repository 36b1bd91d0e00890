package clearing

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/fare"
)

// TestErasureLog: lines appended read back; a last line cut short (a crash
// while appending) is left out; any other line that does not read is an
// error naming its line.
func TestErasureLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), FaceErasureLogFile)
	if got, err := readErasureLog(path); err != nil || got != nil {
		t.Fatalf("no log: %v, %v", got, err)
	}
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for i, s := range []string{"alice-1", "bob-2"} {
		if err := appendErasureLog(path, &FaceErasure{Subject: s, EnrolledVersion: uint64(i + 1), Version: uint64(i + 3), ErasedAt: at, ErasedBy: "desk-1"}, "0xab"); err != nil {
			t.Fatal(err)
		}
	}
	got, err := readErasureLog(path)
	if err != nil || len(got) != 2 || got[1].Subject != "bob-2" || got[1].EnrolledVersion != 2 || !got[0].ErasedAt.Equal(at) {
		t.Fatalf("read back: %+v, %v", got, err)
	}
	whole, _ := os.ReadFile(path)
	// A crash cut the last line short; the next erasure's line is not
	// glued to it (an outside recheck saw the log then refuse to read,
	// and the advised fix drop an acknowledged erasure).
	if err := os.WriteFile(path, append(slices.Clone(whole), `{"subject":"carol","enrolled_ver`...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := appendErasureLog(path, &FaceErasure{Subject: "dave-4", EnrolledVersion: 9, ErasedAt: at, ErasedBy: "desk-1"}, "0xab"); err != nil {
		t.Fatal(err)
	}
	if got, err := readErasureLog(path); err != nil || len(got) != 3 || got[2].Subject != "dave-4" || got[2].Store != "0xab" {
		t.Fatalf("after a line cut short and an erasure after it: %+v, %v; want the three whole entries", got, err)
	}
	if err := os.WriteFile(path, whole, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body, err string
		n               int
	}{
		{"a last line cut short", string(whole) + `{"subject":"carol`, "", 2},
		{"a line in the middle overwritten", `{"subject":"alice-1"}` + "\nxx\n" + `{"subject":"bob-2"}` + "\n", "line 2 does not read", 0},
		{"a subject that is no id", `{"subject":"a b"}` + "\n", "line 1 does not read", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readErasureLog(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("%v, want an error saying %q", err, tc.err)
				}
				return
			}
			if err != nil || len(got) != tc.n {
				t.Fatalf("%+v, %v; want %d entries", got, err, tc.n)
			}
		})
	}
}

// FuzzErasureLog: whatever the file holds, reading it never panics, and
// every entry it returns names a valid subject id.
func FuzzErasureLog(f *testing.F) {
	f.Add([]byte(`{"subject":"alice-1","enrolled_version":1,"version":3,"erased_at":"2026-12-04T10:00:00Z","erased_by":"desk-1"}` + "\n"))
	f.Add([]byte("\n\n{"))
	f.Add([]byte(`{"subject":""}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "log")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readErasureLog(path)
		if err != nil {
			return
		}
		for _, e := range got {
			if fare.ValidateID(e.Subject) != nil {
				t.Fatalf("entry with subject %q read", e.Subject)
			}
		}
	})
}
