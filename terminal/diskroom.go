package terminal

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/faregate/faregate/fare/diskspace"
)

// The outbox's store writes through mapped files, which a full disk turns
// into SIGBUS (see package diskspace). So the terminal keeps a margin:
// below it, a tap is refused (the gate stays up and says why) and below
// openFloor the outbox is not opened.

// DefaultMinFreeBytes is the free space the outbox's file system must keep
// (Config.MinFreeBytes 0): room for a memtable, a value log file and the
// files a compaction writes before it removes others; on a disk smaller
// than four times that, a quarter of the disk, but never below storeRoom.
const DefaultMinFreeBytes = 64 << 20

// storeRoom is the least automatic margin, however small the disk: room
// for the store's own writes while taps are refused (two write-ahead log
// files of 8 MiB, mapped, and the tables a flush and a compaction write
// before others go). An outside test saw a quarter of a 20 MiB disk, 5 MiB,
// leave a flush to die of SIGBUS.
const storeRoom = MinFreeStoreMiB << 20

// MinFreeStoreMiB is the least margin, in MiB, a gate may be given: the
// room its store needs for its own writes.
const MinFreeStoreMiB = 32

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

// diskRoom is the outbox's margin (diskspace.Margin) with the terminal's
// errors.
type diskRoom struct{ *diskspace.Margin }

// newDiskRoom returns the margin of the outbox in dir (Config.MinFreeBytes).
func newDiskRoom(dir string, minFree int64) *diskRoom {
	return &diskRoom{diskspace.New(dir, minFree, DefaultMinFreeBytes).AtLeast(storeRoom)}
}

// freeNow is the free space (read at most once a second); ok is false
// when the file system cannot tell.
func (r *diskRoom) freeNow(now time.Time) (free uint64, ok bool) {
	if r == nil {
		return 0, false
	}
	return r.FreeNow(now)
}

// check returns ErrDiskFull (wrapped, with the figures) when the free space
// is below the margin. A file system that cannot be asked does not stop
// taps: the store's own errors then say what is wrong.
//
// The free space is read at most once a second, but afresh for every tap
// while the last reading is within twice the margin: a disk filling fast
// (an outside test's dd) let a tap through with 5 MiB free on a reading a
// second old. A statfs is a few microseconds; a tap's fsync milliseconds.
func (r *diskRoom) check(now time.Time) error {
	if free, ok := r.freeNow(now); ok && free < 2*r.Min() {
		r.FreeFresh()
	}
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
	free, need, short := r.Short(now, ceiling)
	if !short {
		return nil
	}
	return fmt.Errorf("%w: %s has %d MiB free, the outbox keeps %d MiB (faregate terminal --min-free-mib): free space there (nothing already accepted is lost)",
		ErrDiskFull, r.Dir(), free>>20, need>>20)
}

// roomFor returns ErrDiskFull (wrapped, with the figures) unless need
// bytes (what) can be written and leave the room the outbox is opened with
// (openFloor, or the margin if smaller). Read now, not a second ago: it
// comes before a large write. No margin, or a file system that cannot be
// asked, is no check.
func (r *diskRoom) roomFor(need uint64, what string) error {
	if r == nil || r.Min() == 0 {
		return nil
	}
	free, ok := r.FreeFresh()
	if !ok {
		return nil
	}
	floor := min(r.Min(), openFloor)
	if free >= floor && free-floor >= need {
		return nil
	}
	return fmt.Errorf("%w: %s has %s free; %s needs %s, and the outbox keeps %s to open: free space there (nothing already accepted is lost)",
		ErrDiskFull, r.Dir(), mib(free), what, mib(need), mib(floor))
}

// mib writes n bytes in MiB, to a tenth.
func mib(n uint64) string { return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB" }
