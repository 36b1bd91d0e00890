package storecheck

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// writeStore makes a Badger store in dir holding n values of size bytes
// (random: they do not compress) and closes it, its tables on disk.
func writeStore(t testing.TB, dir string, n, size int) badger.Options {
	opts := badger.DefaultOptions(dir).WithLogger(nil)
	db, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	wb := db.NewWriteBatch()
	v := make([]byte, size)
	for i := range n {
		rand.Read(v)
		if err := wb.Set(fmt.Appendf(nil, "k%09d", i), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return opts
}

// TestStore: a whole store passes; a bit flipped anywhere in a table (a
// data block, the index at its end) is an error naming the table; a table
// the MANIFEST names that is gone is ErrMissing; a table no MANIFEST names
// (a crash's half-written flush) is not looked at.
func TestStore(t *testing.T) {
	dir := t.TempDir()
	opts := writeStore(t, dir, 3000, 100)
	if err := Store(opts); err != nil {
		t.Fatalf("a whole store: %v", err)
	}
	tables := ReferencedTables(opts)
	if len(tables) == 0 {
		t.Fatal("no tables referenced")
	}
	whole, err := os.ReadFile(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{50, len(whole) / 2, len(whole) - 100} {
		bad := append([]byte(nil), whole...)
		bad[at] ^= 0x10
		if err := os.WriteFile(tables[0], bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Store(opts); err == nil || !strings.Contains(err.Error(), "is damaged") || !strings.Contains(err.Error(), filepath.Base(tables[0])) {
			t.Errorf("a bit flipped at %d of %d: %v, want the table named damaged", at, len(whole), err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "999999.sst"), []byte("half a flush"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tables[0], whole, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Store(opts); err != nil {
		t.Errorf("a table no MANIFEST names beside a whole store: %v", err)
	}
	if err := os.Remove(tables[0]); err != nil {
		t.Fatal(err)
	}
	if err := Store(opts); !errors.Is(err, ErrMissing) {
		t.Errorf("a referenced table gone: %v, want ErrMissing", err)
	}
}

// BenchmarkStore checks a 64 MiB store (random values): what clearing's
// and a gate's every open costs per MiB of tables.
func BenchmarkStore(b *testing.B) {
	opts := writeStore(b, b.TempDir(), 64*1024, 1024)
	var size int64
	for _, n := range ReferencedTables(opts) {
		st, err := os.Stat(n)
		if err != nil {
			b.Fatal(err)
		}
		size += st.Size()
	}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if err := Store(opts); err != nil {
			b.Fatal(err)
		}
	}
}
