package diskspace

import (
	"testing"
	"time"
)

func TestMargin(t *testing.T) {
	const mib = 1 << 20
	now := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	disk := func(free, size uint64, err error) func(string) (uint64, uint64, error) {
		return func(string) (uint64, uint64, error) { return free, size, err }
	}
	for _, c := range []struct {
		name      string
		min       int64
		floor     uint64
		free      uint64
		size      uint64
		err       error
		ceiling   uint64
		wantShort bool
		wantNeed  uint64
		wantNever bool // the disk is no bigger than the margin
	}{
		{"default margin, room", 0, 0, 200 * mib, 10000 * mib, nil, 0, false, 64 * mib, false},
		{"default margin, short", 0, 0, 10 * mib, 10000 * mib, nil, 0, true, 64 * mib, false},
		{"default on a small disk: a quarter of it", 0, 0, 20 * mib, 100 * mib, nil, 0, true, 25 * mib, false},
		{"a given margin", 500 * mib, 0, 400 * mib, 10000 * mib, nil, 0, true, 500 * mib, false},
		{"a ceiling below the margin", 500 * mib, 0, 400 * mib, 10000 * mib, nil, 100 * mib, false, 100 * mib, false},
		{"no check", -1, 0, 0, 10000 * mib, nil, 0, false, 0, false},
		{"a file system without figures", 0, 0, 0, 0, ErrNoFigures, 0, false, 64 * mib, false},
		// A quarter of a 20 MiB disk is less than the store needs for its
		// own writes (an outside test saw a flush die of SIGBUS there).
		{"a small disk: never below the floor", 0, 32 * mib, 20 * mib, 18 * mib, nil, 0, true, 32 * mib, true},
		{"a floor below a quarter of the disk", 0, 16 * mib, 20 * mib, 100 * mib, nil, 0, true, 25 * mib, false},
		{"a given margin is not raised to the floor", 2 * mib, 32 * mib, 3 * mib, 20 * mib, nil, 0, false, 2 * mib, false},
	} {
		m := New("/data", c.min, 64*mib).AtLeast(c.floor)
		if c.min >= 0 {
			m.mu.Lock()
			m.statfs = disk(c.free, c.size, c.err)
			m.mu.Unlock()
		}
		free, need, short := m.Short(now, c.ceiling)
		if short != c.wantShort || (c.min >= 0 && need != c.wantNeed) {
			t.Errorf("%s: free %d MiB, need %d MiB, short %v; want need %d MiB, short %v", c.name, free/mib, need/mib, short, c.wantNeed/mib, c.wantShort)
		}
		if _, _, never := m.NeverRoom(now); never != c.wantNever {
			t.Errorf("%s: never room %v, want %v", c.name, never, c.wantNever)
		}
	}
	var nilMargin *Margin
	if _, _, short := nilMargin.Short(now, 0); short {
		t.Error("a nil margin is short")
	}
}

// TestMarginReadsOnceASecond: the figures are read at most once a second
// (every tap asks), and again once the second is over.
func TestMarginReadsOnceASecond(t *testing.T) {
	reads := 0
	free := uint64(1 << 30)
	m := New("/data", 1<<20, 0)
	m.Set(1<<20, 0, func(string) (uint64, uint64, error) { reads++; return free, 1 << 40, nil })
	now := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	for i := range 10 {
		m.Short(now.Add(time.Duration(i)*50*time.Millisecond), 0)
	}
	if reads != 1 {
		t.Fatalf("%d reads within half a second, want 1", reads)
	}
	free = 0
	if _, _, short := m.Short(now.Add(1100*time.Millisecond), 0); !short || reads != 2 {
		t.Fatalf("a second later: short %v after %d reads, want the new figures", short, reads)
	}
	if f, ok := m.FreeNow(now.Add(1200 * time.Millisecond)); !ok || f != 0 {
		t.Fatalf("FreeNow %d %v", f, ok)
	}
}
