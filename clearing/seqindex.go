package clearing

import "fmt"

// seqIndex keeps, per terminal, the highest sequence with a dedup record
// (applied or rejected), as the applying goroutine last wrote it. A
// terminal's sequences only grow, so nearly every new event is above it:
// such an event cannot be a duplicate, and its dedup lookup (a miss that
// Badger answers only after searching every level) is skipped. Only the
// applying goroutine uses it; it is emptied, to be read again from the
// store, whenever a batch fails to prepare or commit.
type seqIndex struct {
	highest map[string]uint64
}

// above reports whether seq is above every sequence the store (with the
// batches being applied) holds for terminal; false when it cannot tell.
func (x *seqIndex) above(s *Store, terminal string, seq uint64) bool {
	hi, ok := x.get(s, terminal)
	return ok && seq > hi
}

// MaxSequenceJump bounds how far above a terminal's watermark (every
// sequence up to it applied or rejected) an event's sequence may be: a gate
// numbers its events one by one and no outbox holds a million, so an event
// further ahead (a terminal's bug, or its key misused) is quarantined, not
// applied: applied, it would open a gap of that size that no resend could
// ever fill, and fail every audit after. The bound is from the watermark,
// not from the highest sequence held, so jumps cannot be chained: one
// event just under the bound, then another just under it from there, used
// to reach any sequence.
const MaxSequenceJump = 1 << 20

// farAhead reports whether seq is more than MaxSequenceJump above
// terminal's watermark as txn reads it (false when it cannot tell). The
// watermark is read only for a sequence that skips one: the next in line
// never is.
func (x *seqIndex) farAhead(s *Store, txn *batchTxn, terminal string, seq uint64) (bool, error) {
	hi, ok := x.get(s, terminal)
	if !ok || seq <= hi || seq-hi == 1 { // not hi+1: it wraps at the top
		return false, nil
	}
	if seq-hi > MaxSequenceJump {
		return true, nil
	}
	w, err := txn.u64(keyStr(pWatermark, terminal))
	if err != nil {
		return false, fmt.Errorf("watermark %s: %w", terminal, err)
	}
	return seq > w && seq-w > MaxSequenceJump, nil
}

func (x *seqIndex) get(s *Store, terminal string) (uint64, bool) {
	hi, ok := x.highest[terminal]
	if !ok {
		var err error
		if hi, err = s.HighestSequence(terminal); err != nil {
			return 0, false
		}
		if x.highest == nil {
			x.highest = make(map[string]uint64)
		}
		x.highest[terminal] = hi
	}
	return hi, true
}

// saw records a dedup record written for terminal's seq.
func (x *seqIndex) saw(terminal string, seq uint64) {
	if hi, ok := x.highest[terminal]; ok && seq > hi {
		x.highest[terminal] = seq
	}
}

// reset forgets everything: the next lookups read the store.
func (x *seqIndex) reset() { x.highest = nil }
