package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/ledger"
)

// Bounds of the files a flag names that are read whole. A file over its
// bound is refused rather than read: a device or a file that never ends
// (--key /dev/zero) once made the gate read without limit.
const (
	// maxKeyFileSize bounds a key, seed or API token file: tens to a few
	// hundred bytes of text.
	maxKeyFileSize = 64 << 10
	// maxPEMFileSize bounds a PEM CA file (a system's whole bundle is a
	// few hundred KiB).
	maxPEMFileSize = 16 << 20
	// maxDenySeedSize bounds a terminal's --deny seed: some 500,000 tokens
	// of the longest (128 bytes), millions of common ones.
	maxDenySeedSize = 64 << 20
	// maxRegistrySize bounds a registry or API token store file: a
	// registry entry is some 500 bytes, so a city of 100,000 gates.
	maxRegistrySize = 64 << 20
)

// openInputFile opens the file a flag names for reading, refusing what is
// not a regular file (a device, a FIFO, a directory, a socket) as a usage
// error naming the flag: such a file may never end, and a FIFO no one
// writes would hold the command up (it is opened without blocking). Errors
// opening it keep their cause (errors.Is(err, fs.ErrNotExist)).
func openInputFile(flag, path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", flag, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", flag, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, usageErrorf("%s %s: %s, not a regular file", flag, path, fileKind(st.Mode()))
	}
	return f, st, nil
}

// checkDataDir refuses a --data path that is there but no directory (a
// file, or a path through one): a usage error naming the flag, where the
// store's own error said its key registry was damaged and to restore a
// backup (an outside test gave a gate a plain file). A path not there is
// made by the store.
func checkDataDir(flag, dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, syscall.ENOTDIR):
		return usageErrorf("%s %s: not a directory (a file is on the way there): give the directory for the stores", flag, dir)
	case err != nil:
		return nil
	case st.Mode().IsRegular():
		return usageErrorf("%s %s: a file, not a directory: give the directory for the stores", flag, dir)
	case !st.IsDir():
		return usageErrorf("%s %s: %s, not a directory: give the directory for the stores", flag, dir, fileKind(st.Mode()))
	}
	return nil
}

// readInputFile reads the whole file a flag names: a regular file
// (openInputFile) of at most max bytes. One over max is a usage error
// naming the flag and the bound, also one that grows past it while read.
func readInputFile(flag, path string, max int64) ([]byte, error) {
	f, st, err := openInputFile(flag, path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size() > max {
		return nil, tooLargeError(flag, path, max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	if int64(len(b)) > max {
		return nil, tooLargeError(flag, path, max)
	}
	return b, nil
}

// checkInputFile checks a file a flag names that another package reads
// whole (a registry, a token store, a key): when it is there, it must be a
// regular file of at most max bytes (usage errors, as readInputFile's). A
// file not there, or one that cannot be looked at, passes: the reader
// says what is wrong, or makes it where that is its job.
func checkInputFile(flag, path string, max int64) error {
	if path == "" {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if !st.Mode().IsRegular() {
		return usageErrorf("%s %s: %s, not a regular file", flag, path, fileKind(st.Mode()))
	}
	if st.Size() > max {
		return tooLargeError(flag, path, max)
	}
	return nil
}

func tooLargeError(flag, path string, max int64) error {
	return usageErrorf("%s %s: larger than the %s this file may hold", flag, path, byteSize(max))
}

// fileKind names what a file that is not a regular one is.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0, m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	default:
		return "a special file"
	}
}

// byteSize writes a bound in KiB or MiB.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// inputFile is a file a flag names, to be checked by checkInputFiles.
type inputFile struct {
	flag, path string
	max        int64
}

// checkInputFiles checks each file (checkInputFile), in order.
func checkInputFiles(files ...inputFile) error {
	for _, f := range files {
		if err := checkInputFile(f.flag, f.path, f.max); err != nil {
			return err
		}
	}
	return nil
}

// loadRegistry is clearing.LoadRegistry of the file flag names, checked
// first (checkInputFile).
func loadRegistry(flag, path string) (*clearing.Registry, error) {
	if err := checkInputFile(flag, path, maxRegistrySize); err != nil {
		return nil, err
	}
	return clearing.LoadRegistry(path)
}

// loadTokenStore is clearing.LoadTokenStore of an --api-tokens file,
// checked first (checkInputFile).
func loadTokenStore(path string) (*clearing.TokenStore, error) {
	if err := checkInputFile("--api-tokens", path, maxRegistrySize); err != nil {
		return nil, err
	}
	return clearing.LoadTokenStore(path)
}

// dialLedger is ledger.Dial with its --eth-key file checked first
// (checkInputFile).
func dialLedger(ctx context.Context, rpc, keyFile, contract string) (*ledger.Client, error) {
	if err := checkInputFile("--eth-key", keyFile, maxKeyFileSize); err != nil {
		return nil, err
	}
	return ledger.Dial(ctx, rpc, keyFile, contract)
}
