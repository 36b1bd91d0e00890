package terminal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/fare/storecheck"
)

// copyStore copies the files of the store in dir to the new directory to,
// readable by their owner only (they hold card tokens), and syncs them and
// the directories: the repair that follows deletes the originals.
func copyStore(dir, to string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if err := os.Mkdir(to, 0o700); err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if err := copyFileSynced(filepath.Join(dir, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return err
		}
	}
	for _, d := range []string{to, filepath.Dir(to)} {
		if err := fare.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// copyBlock is the unit in which a copy leaves out zeros.
const copyBlock = 4 << 10

// copyFileSynced copies from to the new file to, owner-only, and syncs it.
// Only the bytes in use are written, the rest left as holes of the same
// size: Badger pre-sizes its write-ahead logs and value logs (8 and 32 MiB
// here) and fills them as it goes, so a store of 100 KB has 40 MB of
// files, and a copy written in full needs room a nearly full disk lacks
// (an outside test saw a gate with 33 MiB free fail to start after a crash,
// for want of room for the copy). The holes are found with SEEK_DATA and
// SEEK_HOLE where the file system tells them, and blocks of zeros are left
// out wherever they are.
func copyFileSynced(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return err
	}
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = copyData(dst, src, info.Size())
	if err == nil {
		err = dst.Truncate(info.Size())
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", from, to, err)
	}
	return nil
}

// copyData writes into dst, at the same offsets, the blocks of src's first
// size bytes that are not holes and not all zeros.
func copyData(dst, src *os.File, size int64) error {
	buf := make([]byte, 256<<10)
	for off := int64(0); off < size; {
		start, end, err := dataExtent(src, off, size)
		if err != nil {
			return err
		}
		for p := start; p < end; {
			n, err := src.ReadAt(buf[:min(int64(len(buf)), end-p)], p)
			if n == 0 && err != nil {
				if errors.Is(err, io.EOF) {
					return nil // the file shrank meanwhile: the store is not in use, so never
				}
				return err
			}
			if err := writeNonZero(dst, buf[:n], p); err != nil {
				return err
			}
			p += int64(n)
		}
		off = end
	}
	return nil
}

// dataExtent is the first extent of data in f at or after off: [start,
// end), start == end == size past the last one. A file system that cannot
// tell holes gives the rest of the file as one extent.
func dataExtent(f *os.File, off, size int64) (start, end int64, err error) {
	fd := int(f.Fd())
	start, err = unix.Seek(fd, off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, syscall.ENXIO): // no data past off
		return size, size, nil
	case err != nil:
		return off, size, nil // no SEEK_DATA here: read it all
	}
	end, err = unix.Seek(fd, start, unix.SEEK_HOLE)
	if err != nil {
		end = size
	}
	return min(start, size), min(end, size), nil
}

// writeNonZero writes b to dst at off, leaving out each copyBlock-aligned
// block of zeros (a hole in a file truncated to its size reads as zeros).
func writeNonZero(dst *os.File, b []byte, off int64) error {
	for len(b) > 0 {
		n := copyBlock - int(off%copyBlock)
		n = min(n, len(b))
		// Extend the run of non-zero blocks as far as it goes.
		run := 0
		for run < len(b) {
			k := min(copyBlock-int((off+int64(run))%copyBlock), len(b)-run)
			if allZero(b[run : run+k]) {
				break
			}
			run += k
		}
		if run > 0 {
			if _, err := dst.WriteAt(b[:run], off); err != nil {
				return err
			}
			n = run
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

func allZero(b []byte) bool {
	return len(bytes.TrimLeft(b, "\x00")) == 0
}

// storeBytesInUse is the room the files of the store in dir take on
// disk (their allocated blocks, not their sizes): what a copy of them
// needs at most.
func storeBytesInUse(dir string) (uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return 0, err
		}
		used := uint64(info.Size())
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			used = min(used+copyBlock, uint64(st.Blocks)*512) // st_blocks counts 512-byte units
		}
		n += used
	}
	return n, nil
}

// checkingInfix names a scratch copy of a kept copy, opened to check it
// (copyRedundant) and removed after; removingInfix a kept copy being
// removed. One a crash left goes at the next start.
const (
	checkingInfix = ".checking-"
	removingInfix = ".removing-"
)

// removeKept removes kept, a copy of the store kept aside, by first
// renaming it out of the kept copies' names: a removal is not atomic, and
// one a crash cut short left a copy of a few files that no start could
// show redundant, so it stayed for good (three such, and the gate refused
// to start after its next crash; an outside test's crash loop).
func removeKept(kept string) error {
	i := strings.LastIndex(kept, damagedInfix)
	if i < 0 {
		return fmt.Errorf("remove %s: not a kept copy's name", kept)
	}
	removing := kept[:i] + removingInfix + kept[i+len(damagedInfix):]
	if err := os.Rename(kept, removing); err != nil {
		return err
	}
	if err := fare.SyncDir(filepath.Dir(removing)); err != nil {
		return err
	}
	return os.RemoveAll(removing)
}

// pruneKeptCopies removes the copies of dir's store, kept by earlier
// starts, that hold nothing the store they were taken of did not keep
// (copyRedundant), and any scratch copy or unfinished copy a crash left. A
// start stopped while opening (a power flicker at boot) never reaches the
// check after which it removes its copy, and each start's open changes the
// files, so the next one copies them again: an outside test saw three
// crashes at boot leave three copies, and every later start refused for
// them, though nothing was lost. Copies that stay are returned, for the
// log to name at every start. A store another process has open is left
// to it.
func pruneKeptCopies(dir string, room *diskRoom, log *slog.Logger) (left []string) {
	dir = filepath.Clean(dir)
	if fare.DirLocked(dir) {
		return keptCopies(dir, damagedInfix)
	}
	for _, infix := range []string{checkingInfix, copyingInfix, removingInfix} {
		for _, p := range keptCopies(dir, infix) {
			if err := os.RemoveAll(p); err != nil {
				log.Error("remove a scratch copy of the outbox an earlier start left", "dir", p, "err", err)
			}
		}
	}
	for _, kept := range keptCopies(dir, damagedInfix) {
		ok, why := copyRedundant(dir, kept, room)
		if !ok {
			log.Info("a copy of the outbox kept by an earlier start is needed", "kept", kept, "why", why)
			left = append(left, kept)
			continue
		}
		if err := removeKept(kept); err != nil {
			log.Error("remove a copy of the outbox that holds nothing lost", "kept", kept, "err", err)
			left = append(left, kept)
			continue
		}
		log.Info("removed a copy of the outbox kept by an earlier start that was stopped before it checked it: repaired, it holds every unconfirmed tap up to its high-water mark, so nothing accepted was lost when the store was repaired", "kept", kept)
	}
	return left
}

// copyRedundant says whether the copy kept of dir's store holds nothing
// the store it was taken of does not: opened as the start that made it
// opened that store (Badger's repair, on a scratch copy beside dir: the
// copy itself is left as it is), it reaches its own high-water mark (the
// file as it was when copied) and holds every tap it had not had
// confirmed. That is the check after which the start that made it would
// have removed it. If not, why says what is missing.
func copyRedundant(dir, kept string, room *diskRoom) (ok bool, why string) {
	recorded, hwOK := readHighWater(kept)
	if !hwOK {
		return false, "its high-water mark is damaged, empty or missing"
	}
	need, err := storeBytesInUse(kept)
	if err == nil {
		err = room.roomFor(need, "a check of a copy kept by an earlier start")
	}
	if err != nil {
		return false, err.Error()
	}
	scratch := dir + checkingInfix + time.Now().UTC().Format(copyStamp)
	defer os.RemoveAll(scratch)
	if err := copyStore(kept, scratch); err != nil {
		return false, err.Error()
	}
	if _, err := storecheck.RemoveEmptyLogs(scratch); err != nil { // as openStore does
		return false, err.Error()
	}
	opts := storeOptions(scratch)
	if err := storecheck.Store(opts); err != nil {
		return false, err.Error()
	}
	db, err := badger.Open(opts)
	if err != nil {
		return false, err.Error()
	}
	defer db.Close()
	var last, conf uint64
	err = db.View(func(txn *badger.Txn) error {
		var err error
		if last, err = getU64(txn, keyLastSeq); err != nil {
			return err
		}
		conf, err = getU64(txn, keyConfirmed)
		return err
	})
	if err != nil {
		return false, err.Error()
	}
	held, want, err := countHeld(db, conf, last)
	switch {
	case err != nil:
		return false, err.Error()
	case last < recorded:
		return false, fmt.Sprintf("repaired, it ends at sequence %d, below its high-water mark %d", last, recorded)
	case held != want:
		return false, fmt.Sprintf("repaired, it holds %d of its %d unconfirmed taps", held, want)
	}
	return true, ""
}
