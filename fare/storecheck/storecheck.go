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
	"path/filepath"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
)

// ErrMissing is returned (wrapped, naming the file) for a table file the
// store's MANIFEST names that is not there.
var ErrMissing = errors.New("which the store's MANIFEST names, is missing")

// ReferencedTables lists the table files the store's MANIFEST names: those
// Badger opens. A table it does not name (one a crash left half-written)
// is no damage: Badger's open deletes it. Without a MANIFEST that reads,
// none: Badger opens no table then, and the open says what is wrong.
func ReferencedTables(opts badger.Options) []string {
	f, err := os.Open(filepath.Join(opts.Dir, badger.ManifestFilename))
	if err != nil {
		return nil
	}
	defer f.Close()
	mf, _, err := badger.ReplayManifestFile(f, opts.ExternalMagicVersion, opts)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(mf.Tables))
	for id := range mf.Tables {
		names = append(names, table.NewFilename(id, opts.Dir))
	}
	slices.Sort(names)
	return names
}

// Table opens one table file as Badger will, verifies the checksums of its
// index and of every block, and closes it. A damaged file is an error
// naming it, never a panic.
func Table(name string, opts badger.Options) (err error) {
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
			err = fmt.Errorf("table file %s is damaged (cut short or overwritten?): %v", name, r)
		}
	}()
	tbl, err := table.OpenTable(mf, table.Options{ReadOnly: true, BlockSize: opts.BlockSize, Compression: opts.Compression,
		ChkMode: options.OnTableRead})
	if err != nil {
		return fmt.Errorf("table file %s is damaged: %w", name, err)
	}
	if err := tbl.VerifyChecksum(); err != nil {
		tbl.MmapFile.Close(-1)
		return fmt.Errorf("table file %s is damaged: %w", name, err)
	}
	return tbl.MmapFile.Close(-1)
}

// Store checks every table the store's MANIFEST names (Table).
func Store(opts badger.Options) error {
	for _, name := range ReferencedTables(opts) {
		if err := Table(name, opts); err != nil {
			return err
		}
	}
	return nil
}
