// Package storecheck checks a Badger store's table files against their
// checksums before anything reads them: Badger parses an index or block it
// has not checked, so a flipped bit can panic a process (on a compaction
// goroutine of its own, at every start) or hide a record from a reader.
// The terminal's outbox and clearing's store both use it.
package storecheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
	"golang.org/x/sys/unix"

	"github.com/faregate/faregate/fare"
)

// ErrMissing is returned (wrapped, naming the file) for a table file the
// store's MANIFEST names that is not there.
var ErrMissing = errors.New("which the store's MANIFEST names, is missing")

// ReferencedTables lists the table files the store's MANIFEST names: those
// Badger opens. A table it does not name (one a crash left half-written)
// is no damage: Badger's open deletes it. Without a MANIFEST that reads,
// none: Badger opens no table then, and the open says what is wrong.
func ReferencedTables(opts badger.Options) []string {
	names, _ := referencedTables(opts)
	return names
}

// referencedTables is ReferencedTables, with a description of the
// MANIFEST where it does not read to its end ("" where it does).
func referencedTables(opts badger.Options) (names []string, cut string) {
	f, err := os.Open(filepath.Join(opts.Dir, badger.ManifestFilename))
	if err != nil {
		return nil, ""
	}
	defer f.Close()
	mf, readTo, err := badger.ReplayManifestFile(f, opts.ExternalMagicVersion, opts)
	if err != nil {
		return nil, ""
	}
	if st, err := f.Stat(); err == nil && readTo < st.Size() {
		cut = fmt.Sprintf("the store's MANIFEST reads only to byte %d of its %d (cut short, or overwritten after it)", readTo, st.Size())
	}
	names = make([]string, 0, len(mf.Tables))
	for id := range mf.Tables {
		names = append(names, table.NewFilename(id, opts.Dir))
	}
	slices.Sort(names)
	return names, cut
}

// ErrKeyRegistry is returned (wrapped) for a store's key registry
// (KEYREGISTRY) that does not read.
var ErrKeyRegistry = errors.New("the store's key registry is damaged")

// ErrManifestCut is returned (wrapped) for a MANIFEST that does not read
// to its end and, as far as it reads, names table files that are gone: the
// changes after that point (removing them, adding others) are lost, and
// the file missing is not the damage.
var ErrManifestCut = errors.New("the store's MANIFEST is damaged")

// Table opens one table file as Badger will, verifies the checksums of its
// index and of every block, and closes it. A damaged file is an error
// naming it, never a panic.
func Table(name string, opts badger.Options) (err error) {
	if st, err := os.Stat(name); err == nil && st.Size() == 0 {
		// Mapping it fails with an "invalid argument" naming nothing.
		return fmt.Errorf("table file %s is damaged: empty (cut short to nothing)", name)
	}
	mf, err := z.OpenMmapFile(name, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("table file %s, %w", name, ErrMissing)
	}
	if err != nil && !errors.Is(err, z.NewFile) {
		return fmt.Errorf("table file %s: %w", name, err)
	}
	defer func() {
		if r := recover(); r != nil {
			mf.Close(-1)
			err = fmt.Errorf("table file %s is damaged (cut short or overwritten?): %s", name, oneLine(fmt.Sprint(r)))
		}
	}()
	tbl, err := table.OpenTable(mf, table.Options{ReadOnly: true, BlockSize: opts.BlockSize, Compression: opts.Compression,
		ChkMode: options.OnTableRead})
	if err != nil {
		// Badger's error for an index it could not parse carries a dump
		// of its state, many lines long: its first line says enough.
		if msg := err.Error(); strings.Contains(msg, "\n") {
			return fmt.Errorf("table file %s is damaged (cut short or overwritten?): %s", name, oneLine(msg))
		}
		return fmt.Errorf("table file %s is damaged: %w", name, err)
	}
	if err := tbl.VerifyChecksum(); err != nil {
		tbl.MmapFile.Close(-1)
		return fmt.Errorf("table file %s is damaged: %w", name, err)
	}
	return tbl.MmapFile.Close(-1)
}

// oneLine is Badger's account of a table it could not read, which for an
// index that does not parse is a dump of its state over several lines
// ("== Recovering from initIndex crash ==", the file's size, a checksum
// length read from garbage): its first line of substance, or what the
// dump means.
func oneLine(msg string) string {
	if strings.Contains(msg, "initIndex crash") {
		return "its index does not parse"
	}
	for line := range strings.Lines(msg) {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return "unreadable"
}

// ErrNoAccess is returned (wrapped, naming the file, its owner and mode)
// for a store directory or file this process may not read, or write where
// it opens the store to write: nothing is damaged, the store is another
// user's (a gate run once as root, then as its own user).
var ErrNoAccess = errors.New("this process may not use the store's files")

// Access checks that this process may read (and, unless readOnly, write)
// the store's directory and each of its files. Badger's own error for one
// it may not open reads as a damaged store (an outside test was advised to
// start the gate on an empty store, losing its unsent taps, over a
// permission).
func Access(dir string, readOnly bool) error {
	mode, flag := uint32(unix.R_OK|unix.X_OK), os.O_RDONLY
	if !readOnly {
		mode, flag = unix.R_OK|unix.W_OK|unix.X_OK, os.O_RDWR
	}
	if err := unix.Access(dir, mode); errors.Is(err, fs.ErrPermission) {
		return noAccess(dir, readOnly)
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrPermission) {
		return noAccess(dir, readOnly)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		name := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(name, flag, 0)
		if errors.Is(err, fs.ErrPermission) {
			return noAccess(name, readOnly)
		}
		if err == nil {
			f.Close()
		}
	}
	return nil
}

// noAccess says whose path is and what the process would need of it.
func noAccess(path string, readOnly bool) error {
	need := "read and write"
	if readOnly {
		need = "read"
	}
	owner := "another user"
	if fi, err := os.Stat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner = fmt.Sprintf("user %s, mode %v", userName(st.Uid), fi.Mode().Perm())
		}
	}
	return fmt.Errorf("%w: %s belongs to %s, and this process (user %s) may not %s it: nothing is damaged; give the store back to the user that runs this process (chown -R), or run it as the store's owner",
		ErrNoAccess, path, owner, userName(uint32(os.Geteuid())), need)
}

// userName is uid's login name and number, or its number alone.
func userName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username + " (" + id + ")"
	}
	return id
}

// EmptyLogs lists the value-log (.vlog) and write-ahead-log (.mem) files
// of the store in dir that are empty: files Badger creates and sizes at
// once, left at zero bytes by a power cut between the two. They hold
// nothing, and Badger's open fails on them ("Create a new file") while
// sizing them, so that the next open succeeds: RemoveEmptyLogs removes
// them first.
func EmptyLogs(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(n, ".vlog") && !strings.HasSuffix(n, ".mem") {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Size() == 0 {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out
}

// RemoveEmptyLogs removes EmptyLogs(dir) and returns what it removed.
func RemoveEmptyLogs(dir string) ([]string, error) {
	empty := EmptyLogs(dir)
	for _, name := range empty {
		if err := os.Remove(name); err != nil {
			return nil, fmt.Errorf("remove %s, an empty log file (created, never written): %w", name, err)
		}
	}
	if len(empty) > 0 {
		if err := fare.SyncDir(dir); err != nil {
			return nil, err
		}
	}
	return empty, nil
}

// Store checks that this process may use the store's files (Access), then
// the store's key registry and every table its MANIFEST names (Table); of
// an encrypted store, only the key registry.
func Store(opts badger.Options) error {
	if err := Access(opts.Dir, opts.ReadOnly); err != nil {
		return err
	}
	// The key registry first: damaged, Badger's open says only that the
	// encryption key does not match, of a store that has none (an outside
	// review flipped one byte of it).
	kr, err := badger.OpenKeyRegistry(badger.KeyRegistryOptions{Dir: opts.Dir, ReadOnly: true, EncryptionKey: opts.EncryptionKey})
	switch {
	case errors.Is(err, badger.ErrEncryptionKeyMismatch) && len(opts.EncryptionKey) == 0:
		return fmt.Errorf("%w: %s does not read (the store is not encrypted, so no key is wrong: the file is cut short or overwritten)", ErrKeyRegistry, filepath.Join(opts.Dir, badger.KeyRegistryFileName))
	case err != nil:
		return fmt.Errorf("%w: %s: %w", ErrKeyRegistry, filepath.Join(opts.Dir, badger.KeyRegistryFileName), err)
	}
	_ = kr.Close()
	if len(opts.EncryptionKey) > 0 {
		// Table checks need each table's data key, which this check does
		// not read: an encrypted store's tables are left to Badger (no
		// store Faregate checks is encrypted).
		return nil
	}
	names, cut := referencedTables(opts)
	for _, name := range names {
		if err := Table(name, opts); err != nil {
			if cut != "" && errors.Is(err, ErrMissing) {
				return fmt.Errorf("%w: %s, and as far as it reads it names table file %s, which is gone: a later change removed it, and that change and the ones after it are lost", ErrManifestCut, cut, filepath.Base(name))
			}
			return err
		}
	}
	return nil
}
