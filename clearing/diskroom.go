package clearing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/faregate/faregate/fare/diskspace"
)

// Clearing's store writes through mapped files, which a full disk turns
// into SIGBUS at every start (see package diskspace). So clearing keeps a
// margin on its data dir's file system: below it, it stops taking events
// (they wait in the stream and the gates' outboxes; nothing accepted is
// lost), readiness says why, and it goes on by itself once there is room.
// Sealing, anchoring and the API go on meanwhile: their writes are small
// beside the margin.

// DefaultMinFreeBytes is the free space clearing's data dir keeps
// (Config.MinFreeBytes 0): room for what is written between two readings a
// second apart (tens of MiB at clearing's peak), Badger's next memtable
// file (mapped at 128 MiB), a compaction's output before it removes its
// inputs, and the embedded chain's and JetStream's writes. On a disk
// smaller than four times that, a quarter of the disk, but never below
// storeRoom.
const DefaultMinFreeBytes = 512 << 20

// storeRoom is the least automatic margin, however small the disk: Badger's
// next memtable file (mapped at 128 MiB) and a flush's table (a quarter of
// a small disk may be less, and a flush then dies of SIGBUS).
const storeRoom = 256 << 20

// storeOpenFloor is the least free space the store is opened with (or the
// margin, if smaller): its first memtable file is mapped at 128 MiB.
const storeOpenFloor = 256 << 20

// ErrDiskFull is wrapped by Open, by readiness and in the log when the
// data dir's file system has less free space than clearing's margin.
var ErrDiskFull = errors.New("clearing's disk is (nearly) full")

// roomError says, with the figures, that the data dir is short of room
// (below the margin, or ceiling if lower and not 0), or returns nil.
func roomError(m *diskspace.Margin, now time.Time, ceiling uint64, doing string) error {
	free, need, short := m.Short(now, ceiling)
	if !short {
		return nil
	}
	return fmt.Errorf("%w: %s has %d MiB free, clearing keeps %d MiB (faregate clearing --min-free-mib): %s; free space there (nothing already accepted is lost: events wait in the stream and the gates' outboxes)",
		ErrDiskFull, m.Dir(), free>>20, need>>20, doing)
}

// waitForRoom holds the verifier (and so everything behind it) while the
// data dir is short of room, checking every second; it reports whether it
// waited. The first wait is an error in the log, the end of it a line too.
func (c *Clearing) waitForRoom(ctx context.Context) bool {
	err := roomError(c.room, c.cfg.Now(), 0, "not taking events")
	if err == nil {
		if c.roomPaused.CompareAndSwap(true, false) {
			free, _ := c.room.FreeNow(c.cfg.Now())
			c.log.Info("room on the data dir's disk again: taking events", "dir", c.room.Dir(), "free_mib", free>>20)
		}
		return false
	}
	if c.roomPaused.CompareAndSwap(false, true) {
		c.log.Error("taking no events until there is room", "err", err)
	}
	sleep(ctx, time.Second)
	return true
}
