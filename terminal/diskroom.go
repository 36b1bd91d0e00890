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
// (Config.MinFreeBytes 0): room for a memtable, a value log file and the
// files a compaction writes before it removes others; on a disk smaller
// than four times that, a quarter of the disk.
const DefaultMinFreeBytes = 64 << 20

// openFloor is the least free space an outbox is opened with, below its
// margin: enough for the store's first memtable file, so that a gate whose
// disk filled up can still open and send (and so free) what it holds.
const openFloor = 8 << 20

// ErrDiskFull is returned by Tap, and Open, when the outbox's file system
// has less free space than the terminal's margin.
var ErrDiskFull = errors.New("the outbox's disk is (nearly) full")

// errNoRoom: a write the terminal left for later, the disk being below
// openFloor (the store's own writes are not made then).
var errNoRoom = errors.New("no room on the outbox's disk for the write; left for later")

// diskRoom checks the free space under dir, at most once a second.
type diskRoom struct {
	dir  string
	min  uint64
	auto bool // min is DefaultMinFreeBytes, or a quarter of a smaller disk
	// statfs reads the figures (nil: freeBytes; tests give a full disk).
	statfs func(dir string) (free, size uint64, err error)

	mu     sync.Mutex
	at     time.Time
	free   uint64
	statEr error
}

// errNoFigures is freeBytes' answer for a file system that reports no
// blocks at all (ramfs, some FUSE ones): its free space cannot be told.
var errNoFigures = errors.New("the file system reports no sizes")

// freeBytes is the space free to this user on the file system of dir, or of
// its nearest existing parent, and the file system's size.
func freeBytes(dir string) (free, size uint64, err error) {
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(dir, &st)
		if err == nil {
			if st.Blocks == 0 {
				return 0, 0, errNoFigures
			}
			return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return 0, 0, err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return 0, 0, err
		}
		dir = parent
	}
}

// freeNow is the free space (read at most once a second); ok is false
// when the file system cannot tell.
func (r *diskRoom) freeNow(now time.Time) (free uint64, ok bool) {
	if r == nil {
		return 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refresh(now)
	return r.free, r.statEr == nil
}

// refresh reads the figures if the last reading is a second old.
func (r *diskRoom) refresh(now time.Time) {
	if now.Sub(r.at) < time.Second && !now.Before(r.at) {
		return
	}
	stat := r.statfs
	if stat == nil {
		stat = freeBytes
	}
	var size uint64
	r.free, size, r.statEr = stat(r.dir)
	r.at = now
	if r.auto && r.statEr == nil {
		r.min = min(DefaultMinFreeBytes, size/4)
	}
}

// check returns ErrDiskFull (wrapped, with the figures) when the free space
// is below the margin. A file system that cannot be asked does not stop
// taps: the store's own errors then say what is wrong.
func (r *diskRoom) check(now time.Time) error {
	return r.checkAbove(now, 0)
}

// checkOpen is check for opening the outbox: only below openFloor (or the
// margin, if smaller) is it refused.
func (r *diskRoom) checkOpen(now time.Time) error {
	return r.checkAbove(now, openFloor)
}

// checkAbove checks the free space against the margin, or against
// ceiling if that is lower and not 0.
func (r *diskRoom) checkAbove(now time.Time, ceiling uint64) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.min == 0 { // no margin kept (refresh changes min: read under mu)
		return nil
	}
	r.refresh(now)
	need := r.min
	if ceiling != 0 {
		need = min(need, ceiling)
	}
	if r.statEr != nil || r.free >= need {
		return nil
	}
	return fmt.Errorf("%w: %s has %d MiB free, the outbox keeps %d MiB (faregate terminal --min-free-mib): free space there (nothing already accepted is lost)",
		ErrDiskFull, r.dir, r.free>>20, need>>20)
}
