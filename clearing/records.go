package clearing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/faregate/faregate/fare"
)

// Binary record encodings for the hot path (JSON cost more than Badger
// itself). Each starts with a version byte so records can evolve.
const recordVersion = 1

var errCorruptRecord = errors.New("corrupt record")

// eventRecordPostings is the version of an event record that lists its
// postings; version 1 records (a flat fare, all to the event's operator)
// are still read. eventRecordUnpriced adds why live pricing could not
// price the accepted tap (written only then: a rare record).
const (
	eventRecordPostings = 2
	eventRecordUnpriced = 3
)

// maxUnpricedReason bounds the reason an event record keeps.
const maxUnpricedReason = 1024

// MarshalBinary encodes an event record:
//
//	v1: v u8 | apply index u64 | fare i64 | applied at ns i64 | raw
//	v2: v u8 | apply index u64 | fare i64 | applied at ns i64 |
//	    n u8 | n × (amount i64 | operator str8) | raw
//	v3: v2's fields, then unpriced str16 before raw
//
// Version 1 is written when Postings is nil (the flat fare), version 3
// when Unpriced is set (its first maxUnpricedReason bytes are kept).
func (r *EventRecord) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 26+len(r.Postings)*24+len(r.Raw))
	v := byte(recordVersion)
	if r.Postings != nil {
		v = eventRecordPostings
	}
	if r.Unpriced != "" {
		if r.Postings == nil {
			return nil, errors.New("event record: an unpriced tap without its (zero) postings")
		}
		v = eventRecordUnpriced
	}
	b = append(b, v)
	b = binary.BigEndian.AppendUint64(b, r.ApplyIndex)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Fare))
	b = binary.BigEndian.AppendUint64(b, uint64(r.AppliedAt.UnixNano()))
	if r.Postings != nil {
		if len(r.Postings) > 255 {
			return nil, fmt.Errorf("event record: %d postings", len(r.Postings))
		}
		b = append(b, byte(len(r.Postings)))
		for _, p := range r.Postings {
			if len(p.Operator) > 255 {
				return nil, fmt.Errorf("event record: operator id of %d bytes", len(p.Operator))
			}
			b = binary.BigEndian.AppendUint64(b, uint64(p.Amount))
			b = append(b, byte(len(p.Operator)))
			b = append(b, p.Operator...)
		}
	}
	if v == eventRecordUnpriced {
		why := r.Unpriced
		if len(why) > maxUnpricedReason {
			why = why[:maxUnpricedReason]
			for len(why) > 0 && !utf8.ValidString(why) { // not in the middle of a character
				why = why[:len(why)-1]
			}
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(why)))
		b = append(b, why...)
	}
	return append(b, r.Raw...), nil
}

// UnmarshalBinary decodes what MarshalBinary wrote; Raw is copied.
func (r *EventRecord) UnmarshalBinary(b []byte) error {
	if len(b) < 25 || (b[0] != recordVersion && b[0] != eventRecordPostings && b[0] != eventRecordUnpriced) {
		return fmt.Errorf("event record of %d bytes: %w", len(b), errCorruptRecord)
	}
	r.ApplyIndex = binary.BigEndian.Uint64(b[1:])
	r.Fare = fare.Amount(binary.BigEndian.Uint64(b[9:]))
	r.AppliedAt = time.Unix(0, int64(binary.BigEndian.Uint64(b[17:]))).UTC()
	rest := b[25:]
	r.Postings, r.Unpriced = nil, ""
	if b[0] == eventRecordPostings || b[0] == eventRecordUnpriced {
		if len(rest) < 1 {
			return fmt.Errorf("event record: truncated postings: %w", errCorruptRecord)
		}
		n := int(rest[0])
		rest = rest[1:]
		r.Postings = make([]Posting, 0, n)
		for range n {
			if len(rest) < 9 || len(rest) < 9+int(rest[8]) {
				return fmt.Errorf("event record: truncated postings: %w", errCorruptRecord)
			}
			p := Posting{Amount: fare.Amount(binary.BigEndian.Uint64(rest)), Operator: string(rest[9 : 9+int(rest[8])])}
			rest = rest[9+int(rest[8]):]
			r.Postings = append(r.Postings, p)
		}
	}
	if b[0] == eventRecordUnpriced {
		if len(rest) < 2 || len(rest) < 2+int(binary.BigEndian.Uint16(rest)) {
			return fmt.Errorf("event record: truncated unpriced reason: %w", errCorruptRecord)
		}
		n := int(binary.BigEndian.Uint16(rest))
		if n == 0 || n > maxUnpricedReason {
			return fmt.Errorf("event record: unpriced reason of %d bytes: %w", n, errCorruptRecord)
		}
		r.Unpriced = string(rest[2 : 2+n])
		rest = rest[2+n:]
	}
	r.Raw = append([]byte(nil), rest...)
	return nil
}

// MarshalBinary encodes a transfer:
//
//	v u8 | seq u64 | id [16] | amount i64 | apply index u64 | at ns i64 |
//	debit str16 | credit str16 | operator str16
func (t *Transfer) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 49+6+len(t.Debit)+len(t.Credit)+len(t.Operator))
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, t.Seq)
	b = append(b, t.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Amount))
	b = binary.BigEndian.AppendUint64(b, t.ApplyIndex)
	b = binary.BigEndian.AppendUint64(b, uint64(t.At.UnixNano()))
	for _, s := range []string{t.Debit, t.Credit, t.Operator} {
		if len(s) > 0xffff {
			return nil, fmt.Errorf("transfer %d: field of %d bytes", t.Seq, len(s))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote.
func (t *Transfer) UnmarshalBinary(b []byte) error {
	if len(b) < 49 || b[0] != recordVersion {
		return fmt.Errorf("transfer record of %d bytes: %w", len(b), errCorruptRecord)
	}
	t.Seq = binary.BigEndian.Uint64(b[1:])
	copy(t.ID[:], b[9:25])
	t.Amount = fare.Amount(binary.BigEndian.Uint64(b[25:]))
	t.ApplyIndex = binary.BigEndian.Uint64(b[33:])
	t.At = time.Unix(0, int64(binary.BigEndian.Uint64(b[41:]))).UTC()
	rest := b[49:]
	var fields [3]string
	for i := range fields {
		if len(rest) < 2 {
			return fmt.Errorf("transfer %d: truncated: %w", t.Seq, errCorruptRecord)
		}
		n := int(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
		if len(rest) < n {
			return fmt.Errorf("transfer %d: truncated: %w", t.Seq, errCorruptRecord)
		}
		fields[i] = string(rest[:n])
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return fmt.Errorf("transfer %d: %d trailing bytes: %w", t.Seq, len(rest), errCorruptRecord)
	}
	t.Debit, t.Credit, t.Operator = fields[0], fields[1], fields[2]
	return nil
}
