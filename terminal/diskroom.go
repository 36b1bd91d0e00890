package terminal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// The outbox's store maps its files and writes into them through memory:
// written into a file the full disk has no blocks for, a page faults and
// the process dies of SIGBUS with no word of why, at every start while the
// disk stays full. So the terminal keeps a margin: below it, a tap is
// refused (the gate stays up and says why) and the outbox is not opened.

// DefaultMinFreeBytes is the free space the outbox's file system must keep
// (Config.MinFreeBytes): room for a memtable, a value log file and the
// files a compaction writes before it removes others.
const DefaultMinFreeBytes = 64 << 20

// ErrDiskFull is returned by Tap, and Open, when the outbox's file system
// has less free space than the terminal's margin.
var ErrDiskFull = errors.New("the outbox's disk is (nearly) full")

// diskRoom checks the free space under dir, at most once a second.
type diskRoom struct {
	dir string
	min uint64

	mu     sync.Mutex
	at     time.Time
	free   uint64
	statEr error
}

// freeBytes is the space free to this user on the file system of dir, or of
// its nearest existing parent.
func freeBytes(dir string) (uint64, error) {
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(dir, &st)
		if err == nil {
			return st.Bavail * uint64(st.Bsize), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return 0, err
		}
		dir = parent
	}
}

// check returns ErrDiskFull (wrapped, with the figures) when the free space
// is below the margin. A file system that cannot be asked does not stop
// taps: the store's own errors then say what is wrong.
func (r *diskRoom) check(now time.Time) error {
	if r == nil || r.min == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.at) >= time.Second || now.Before(r.at) {
		r.free, r.statEr = freeBytes(r.dir)
		r.at = now
	}
	if r.statEr != nil || r.free >= r.min {
		return nil
	}
	return fmt.Errorf("%w: %s has %d MiB free, the outbox keeps %d MiB: free space there (nothing already accepted is lost)",
		ErrDiskFull, r.dir, r.free>>20, r.min>>20)
}
