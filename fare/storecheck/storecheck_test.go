package storecheck

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
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

// TestCutShort: a table cut short or emptied is named damaged in one line
// (Badger's own error for an index it cannot parse dumps its state over
// many); a MANIFEST cut short that, as far as it reads, names tables later
// changes removed is ErrManifestCut, not a missing table to put back.
func TestCutShort(t *testing.T) {
	dir := t.TempDir()
	opts := writeStore(t, dir, 3000, 100)
	db, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	wb := db.NewWriteBatch()
	for i := range 3000 {
		if err := wb.Set(fmt.Appendf(nil, "j%09d", i), make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil { // a second table
		t.Fatal(err)
	}
	// One level-0 table at most: the two are compacted into others.
	if db, err = badger.Open(opts.WithNumLevelZeroTables(1).WithNumLevelZeroTablesStall(2)); err != nil {
		t.Fatal(err)
	}
	if err := db.Flatten(1); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Store(opts); err != nil {
		t.Fatalf("a whole store: %v", err)
	}
	if tables := ReferencedTables(opts); slices.Contains(tables, filepath.Join(dir, "000001.sst")) {
		t.Fatalf("tables %v: the first not compacted away", tables)
	}
	manifest := filepath.Join(dir, badger.ManifestFilename)
	whole, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	cutOnes := 0
	for at := len(whole) - 1; at > 8; at-- {
		if err := os.WriteFile(manifest, whole[:at], 0o600); err != nil {
			t.Fatal(err)
		}
		switch err := Store(opts); {
		case errors.Is(err, ErrManifestCut):
			cutOnes++
			if !strings.Contains(err.Error(), fmt.Sprintf("of its %d", at)) {
				t.Fatalf("MANIFEST cut at %d: %v, want its size named", at, err)
			}
		case errors.Is(err, ErrMissing):
			// Cut at a record's end: it reads to its end, and nothing
			// tells it from a MANIFEST whose table was taken away.
		case err != nil:
			t.Fatalf("MANIFEST cut at %d of %d: %v, want ErrManifestCut, ErrMissing or nothing", at, len(whole), err)
		}
	}
	if cutOnes == 0 {
		t.Fatal("no cut of the MANIFEST named a removed table")
	}
	if err := os.WriteFile(manifest, whole, 0o600); err != nil {
		t.Fatal(err)
	}
	tables := ReferencedTables(opts)
	tbl, err := os.ReadFile(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, len(tbl) / 2, len(tbl) - 3} {
		if err := os.WriteFile(tables[0], tbl[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		err := Store(opts)
		if err == nil || !strings.Contains(err.Error(), "is damaged") || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), filepath.Base(tables[0])) {
			t.Errorf("a table cut to %d of %d bytes: %q, want one line naming it damaged", size, len(tbl), err)
		}
	}
}

// TestKeyRegistryDamaged: a byte flipped in an unencrypted store's key
// registry is named as the damage, not as a wrong encryption key.
func TestKeyRegistryDamaged(t *testing.T) {
	dir := t.TempDir()
	opts := writeStore(t, dir, 10, 10)
	path := filepath.Join(dir, badger.KeyRegistryFileName)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	damaged := 0
	for at := range whole {
		bad := append([]byte(nil), whole...)
		bad[at] ^= 0x01
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		err := Store(opts)
		if err == nil {
			// A byte the registry's check does not cover (its IV, unused
			// without a key): Badger opens the store as well.
			db, err := badger.Open(opts.WithReadOnly(true))
			if err != nil {
				t.Fatalf("byte %d flipped: passed the check, and Badger says %v", at, err)
			}
			db.Close()
			continue
		}
		damaged++
		if !errors.Is(err, ErrKeyRegistry) || !strings.Contains(err.Error(), badger.KeyRegistryFileName) || strings.Contains(err.Error(), "mismatch") {
			t.Errorf("byte %d of %d flipped: %v, want ErrKeyRegistry naming the file, no key mismatch", at, len(whole), err)
		}
	}
	if damaged == 0 {
		t.Error("no flipped byte found")
	}
	if err := os.WriteFile(path, whole, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Store(opts); err != nil {
		t.Fatalf("the registry put back: %v", err)
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

// TestEncryptedStore: an encrypted store with its key passes (its tables
// are left to Badger); with another key its registry is refused.
func TestEncryptedStore(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	opts := badger.DefaultOptions(t.TempDir()).WithLogger(nil).WithEncryptionKey(key).WithIndexCacheSize(1 << 20)
	db, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Store(opts); err != nil {
		t.Fatalf("an encrypted store with its key: %v", err)
	}
	other := make([]byte, 32)
	rand.Read(other)
	if err := Store(opts.WithEncryptionKey(other)); !errors.Is(err, ErrKeyRegistry) {
		t.Fatalf("an encrypted store with another key: %v, want ErrKeyRegistry", err)
	}
}

// TestAccessNamesTheOwner: a store whose files another user owns (a gate
// run once as root, then as its own user) is ErrNoAccess naming the file,
// its owner and the process's user, not a damaged store; read-only, a
// file it may read passes. As root, the check runs in a child process as
// nobody (root may open anything).
func TestAccessNamesTheOwner(t *testing.T) {
	if dir := os.Getenv("STORECHECK_ACCESS_DIR"); dir != "" {
		fmt.Printf("rw: %v\n", Store(badger.DefaultOptions(dir)))
		fmt.Printf("ro: %v\n", Access(dir, true))
		return
	}
	dir := filepath.Join(t.TempDir(), "store")
	opts := writeStore(t, dir, 10, 100)
	if err := Store(opts); err != nil {
		t.Fatalf("the owner's own store: %v", err)
	}
	if os.Geteuid() != 0 {
		// Not root: a file made unwritable is another user's as far as
		// writing goes.
		ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
		if len(ssts) == 0 {
			t.Fatal("no table file")
		}
		if err := os.Chmod(ssts[0], 0o400); err != nil {
			t.Fatal(err)
		}
		err := Store(opts)
		if !errors.Is(err, ErrNoAccess) || !strings.Contains(err.Error(), ssts[0]) || !strings.Contains(err.Error(), "may not read and write it: nothing is damaged") {
			t.Errorf("a table file the process may not write: %v", err)
		}
		if err := Access(dir, true); err != nil {
			t.Errorf("read-only, a file the process may read: %v", err)
		}
		return
	}
	// Root: the files stay root's, mode 0644 (the directory traversable),
	// and a child process checks them as nobody.
	for p := dir; p != "/"; p = filepath.Dir(p) {
		if strings.HasPrefix(p, os.TempDir()+"/") {
			if err := os.Chmod(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The test binary's own directory is root's alone: nobody runs a copy.
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(filepath.Dir(dir), "storecheck.test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func() string {
		t.Helper()
		cmd := exec.Command(exe, "-test.run", "^TestAccessNamesTheOwner$")
		cmd.Dir = filepath.Dir(dir)
		cmd.Env = append(os.Environ(), "STORECHECK_ACCESS_DIR="+dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the check as nobody: %v\n%s", err, out)
		}
		return string(out)
	}
	// All of it root's: the directory is named.
	if s := asNobody(); !strings.Contains(s, "rw: "+ErrNoAccess.Error()+": "+dir+" belongs to user root (0), mode -rwxr-xr-x") ||
		!strings.Contains(s, "this process (user ") || !strings.Contains(s, "(65534)) may not read and write it: nothing is damaged") || !strings.Contains(s, "ro: <nil>") {
		t.Errorf("a store all root's, as nobody:\n%s", s)
	}
	// Nobody's but one table file: that file is named.
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	for _, f := range append(files, dir) {
		if !slices.Contains(ssts, f) {
			if err := os.Chown(f, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
	}
	if s := asNobody(); len(ssts) == 0 || !strings.Contains(s, "rw: "+ErrNoAccess.Error()+": "+ssts[0]+" belongs to user root (0), mode -rw-r--r--") || !strings.Contains(s, "ro: <nil>") {
		t.Errorf("a table file root's in nobody's store, as nobody:\n%s", s)
	}
}
