package terminal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// HighWaterFile is the file beside the outbox's store that records the
// highest sequence the outbox ever committed. The store alone cannot tell
// that it lost its tail: a damaged write-ahead log or MANIFEST makes Badger
// open what it can read, silently, and the gate would sign new taps under
// the sequences of the accepted taps it lost. The file is written after
// each commit and synced within a second (not each commit: a gate's fsync
// per tap is the store's), so a loss older than that is caught at Open.
const HighWaterFile = "outbox-high-water"

// ErrOutboxLost is returned by Open when the outbox's store ends before the
// highest sequence it recorded having committed: accepted taps are gone.
var ErrOutboxLost = errors.New("the outbox lost accepted taps")

// highWater keeps HighWaterFile: 8 bytes of sequence, big-endian, then
// their CRC-32C.
type highWater struct {
	mu      sync.Mutex
	f       *os.File
	seq     uint64
	written bool // the file holds seq
	dirty   bool // written since the last sync
	size    int  // bytes the file held when opened
}

var highWaterCRC = crc32.MakeTable(crc32.Castagnoli)

// openHighWater opens (or creates) dir's high-water file and returns the
// sequence it records; ok is false when it records none (a new file, or
// one too short or failing its checksum: then it records nothing, and the
// store is believed).
func openHighWater(dir string) (h *highWater, recorded uint64, ok bool, err error) {
	f, err := os.OpenFile(filepath.Join(dir, HighWaterFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, false, fmt.Errorf("outbox high-water mark: %w", err)
	}
	var b [12]byte
	n, err := f.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, 0, false, fmt.Errorf("outbox high-water mark %s: %w", f.Name(), err)
	}
	h = &highWater{f: f, size: n}
	if n == len(b) && crc32.Checksum(b[:8], highWaterCRC) == binary.BigEndian.Uint32(b[8:]) {
		recorded, ok = binary.BigEndian.Uint64(b[:8]), true
		h.seq, h.written = recorded, true
	}
	return h, recorded, ok, nil
}

// readHighWater reads the sequence dir's high-water file records, leaving
// the file as it is (a copy kept aside); ok as for openHighWater.
func readHighWater(dir string) (recorded uint64, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, HighWaterFile))
	if err != nil || len(b) < 12 || crc32.Checksum(b[:8], highWaterCRC) != binary.BigEndian.Uint32(b[8:12]) {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[:8]), true
}

// note records seq if it is higher than what the file holds (written, not
// synced: sync does that).
func (h *highWater) note(seq uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.written && seq <= h.seq {
		return nil
	}
	seq = max(seq, h.seq)
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], seq)
	binary.BigEndian.PutUint32(b[8:], crc32.Checksum(b[:8], highWaterCRC))
	if _, err := h.f.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("outbox high-water mark %s: %w", h.f.Name(), err)
	}
	h.seq, h.written, h.dirty = seq, true, true
	return nil
}

// reset records seq, lower than what the file holds, and syncs it: the
// loss of the sequences between was accepted (Config.AcceptLostTaps).
func (h *highWater) reset(seq uint64) error {
	h.mu.Lock()
	h.seq, h.written = 0, false
	h.mu.Unlock()
	if err := h.note(seq); err != nil {
		return err
	}
	return h.sync()
}

// sync makes what note wrote durable.
func (h *highWater) sync() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.dirty {
		return nil
	}
	if err := h.f.Sync(); err != nil {
		return fmt.Errorf("outbox high-water mark %s: %w", h.f.Name(), err)
	}
	h.dirty = false
	return nil
}

// close syncs and closes the file.
func (h *highWater) close() error {
	err := h.sync()
	if cerr := h.f.Close(); err == nil {
		err = cerr
	}
	return err
}
