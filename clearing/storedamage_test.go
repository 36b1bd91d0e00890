package clearing

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestDamagedStoreRefused: a flipped bit anywhere in a table of clearing's
// store is an error naming the table, at clearing's open and at an
// audit's (read-only) open: never a panic, never a store read as if whole.
// (An outside test flipped single bits of a kept run's table: some crashed
// `ledger audit`, some let it say "audit clean", and one made clearing
// start without the enrolments of a damaged block and purge them from
// every gate.)
func TestDamagedStoreRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	st, err := OpenStore(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.db.Update(func(txn *badger.Txn) error {
		for i := range 5000 {
			if err := txn.Set(fmt.Appendf(nil, "k%06d", i), []byte(strings.Repeat("v", 40))); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil { // flushes the memtable to a table
		t.Fatal(err)
	}
	tables, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(tables) != 1 {
		t.Fatalf("tables %v, want one", tables)
	}
	whole, err := os.ReadFile(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	opens := []struct {
		name string
		open func(string, *slog.Logger) (*Store, error)
	}{{"clearing", OpenStore}, {"read-only", OpenStoreReadOnly}}
	// Offsets through the data blocks, and the index at the end.
	for _, at := range []int{100, len(whole) / 3, len(whole) / 2, len(whole) - 200} {
		bad := append([]byte(nil), whole...)
		bad[at] ^= 1
		if err := os.WriteFile(tables[0], bad, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, o := range opens {
			s, err := o.open(dir, slog.New(slog.DiscardHandler))
			if err == nil {
				s.Close()
				t.Errorf("%s open with a bit flipped at %d of %d: no error", o.name, at, len(whole))
				continue
			}
			if !strings.Contains(err.Error(), "is damaged") || !strings.Contains(err.Error(), filepath.Base(tables[0])) {
				t.Errorf("%s open with a bit flipped at %d: %v, want it said damaged, naming the table", o.name, at, err)
			}
		}
	}
	if err := os.WriteFile(tables[0], whole, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStoreReadOnly(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("the store made whole again: %v", err)
	}
	s.Close()
}

// TestStoreEmptyLogFilesOpen: a value-log or write-ahead-log file Badger
// made and never wrote (zero bytes: a power cut right after) holds
// nothing: the store opens at once, with what it held (Badger's own open
// failed on it with "Create a new file").
func TestStoreEmptyLogFilesOpen(t *testing.T) {
	for _, c := range []struct {
		name     string
		readOnly bool // as ledger audit and prove open it (an outside test's audit failed)
	}{{"000009.vlog", false}, {"00009.mem", false}, {"000009.vlog", true}, {"00009.mem", true}} {
		name := c.name
		t.Run(fmt.Sprintf("%s read-only %v", name, c.readOnly), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			st, err := OpenStore(dir, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if err := st.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("kept"), []byte("yes")) }); err != nil {
				t.Fatal(err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			// The newest of its kind, cut to nothing, or a new one.
			path := filepath.Join(dir, name)
			if old, _ := filepath.Glob(filepath.Join(dir, "*"+filepath.Ext(name))); len(old) > 0 {
				path = old[len(old)-1]
			}
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			open := OpenStore
			if c.readOnly {
				open = OpenStoreReadOnly
			}
			st, err = open(dir, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("a store with an empty %s: %v", name, err)
			}
			defer st.Close()
			if err := st.db.View(func(txn *badger.Txn) error { _, err := txn.Get([]byte("kept")); return err }); err != nil {
				t.Errorf("what the store held: %v", err)
			}
		})
	}
}
