// Package diskspace keeps a margin of free space under a directory.
//
// Badger, which the terminal's outbox and clearing's store both use, maps
// its files and writes into them through memory: written into a file the
// full disk has no blocks for, a page faults and the process dies of
// SIGBUS, with no word of why, at every start while the disk stays full.
// So each keeps a margin and stops writing (with an error that says why)
// before the disk is full. A file system that reports no sizes (ramfs,
// some FUSE ones) is not judged.
package diskspace

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ErrNoFigures is Free's answer for a file system that reports no blocks
// at all: its free space cannot be told.
var ErrNoFigures = errors.New("the file system reports no sizes")

// Free is the space free to this user on the file system of dir, or of its
// nearest existing parent, and the file system's size.
func Free(dir string) (free, size uint64, err error) {
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(dir, &st)
		if err == nil {
			if st.Blocks == 0 {
				return 0, 0, ErrNoFigures
			}
			// Blocks are counted in fragment-size units (statfs(2)).
			unit := uint64(st.Frsize)
			if unit == 0 {
				unit = uint64(st.Bsize)
			}
			return st.Bavail * unit, st.Blocks * unit, nil
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

// Margin is the free space to keep under a directory, read at most once a
// second. Safe for concurrent use; a nil *Margin keeps none.
type Margin struct {
	dir string

	mu   sync.Mutex
	min  uint64 // 0: no margin
	auto uint64 // not 0: min is min(auto, a quarter of the disk) at each reading
	// floor: with auto, the least min is, whatever the disk's size (the
	// room the store itself needs to write what it holds).
	floor uint64
	// statfs reads the figures (nil: Free; tests give a full disk).
	statfs func(dir string) (free, size uint64, err error)
	at     time.Time
	free   uint64
	size   uint64 // the file system's size at the last reading
	err    error
}

// NeverRoom says whether the file system is no bigger than the margin, so
// that it can never have the margin free (a gate on it refuses every tap),
// with the figures; false when the file system cannot tell.
func (m *Margin) NeverRoom(now time.Time) (size, need uint64, never bool) {
	if m == nil {
		return 0, 0, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refresh(now)
	return m.size, m.min, m.err == nil && m.size > 0 && m.min > 0 && m.size <= m.min
}

// New returns the margin for dir: min bytes; for 0, def, or a quarter of a
// disk smaller than four times that; for a negative min, none.
func New(dir string, min int64, def uint64) *Margin {
	m := &Margin{dir: dir}
	switch {
	case min == 0:
		m.min, m.auto = def, def
	case min > 0:
		m.min = uint64(min)
	}
	return m
}

// AtLeast makes an automatic margin (New's min 0) never smaller than
// floor, however small the disk: a quarter of a small disk may be less than
// the store needs to write its own files. It returns m.
func (m *Margin) AtLeast(floor uint64) *Margin {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.auto != 0 {
		m.floor = floor
		m.min = max(m.min, floor)
	}
	return m
}

// Set replaces the margin (auto as in New's def; 0 for a fixed one) and
// the way the figures are read (nil: Free), and forgets the last reading:
// for tests that need a full disk.
func (m *Margin) Set(min, auto uint64, statfs func(dir string) (free, size uint64, err error)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.min, m.auto, m.statfs, m.at = min, auto, statfs, time.Time{}
}

// Dir is the directory whose file system is watched.
func (m *Margin) Dir() string { return m.dir }

// Min is the margin now, in bytes (0: none).
func (m *Margin) Min() uint64 {
	if m == nil {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.min
}

// FreeNow is the free space (read at most once a second); ok is false when
// the file system cannot tell.
func (m *Margin) FreeNow(now time.Time) (free uint64, ok bool) {
	if m == nil {
		return 0, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refresh(now)
	return m.free, m.err == nil
}

// FreeFresh is FreeNow read now, however recent the last reading: for a
// caller about to write much at once (a copy of a store), which a reading
// a second old would not count.
func (m *Margin) FreeFresh() (free uint64, ok bool) {
	if m == nil {
		return 0, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.at = time.Time{}
	m.refresh(time.Now())
	return m.free, m.err == nil
}

// Short reports whether the free space is below the margin, or below
// ceiling if that is lower and not 0, with the figures. A file system
// that cannot be asked is never short: the store's own errors then say
// what is wrong.
func (m *Margin) Short(now time.Time, ceiling uint64) (free, need uint64, short bool) {
	if m == nil {
		return 0, 0, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.min == 0 {
		return 0, 0, false
	}
	m.refresh(now)
	need = m.min
	if ceiling != 0 {
		need = min(need, ceiling)
	}
	return m.free, need, m.err == nil && m.free < need
}

// refresh reads the figures if the last reading is a second old.
func (m *Margin) refresh(now time.Time) {
	if now.Sub(m.at) < time.Second && !now.Before(m.at) {
		return
	}
	stat := m.statfs
	if stat == nil {
		stat = Free
	}
	var size uint64
	m.free, size, m.err = stat(m.dir)
	m.at, m.size = now, size
	if m.auto != 0 && m.err == nil {
		m.min = max(min(m.auto, size/4), m.floor)
	}
}
