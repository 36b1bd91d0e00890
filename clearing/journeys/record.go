package journeys

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/faregate/faregate/clearing/fares"
)

// Day record encoding, version 2, big endian; str8 is a one-byte length
// and the bytes:
//
//	version u8 | date i32 | category str8 | medium str8 | closed u8 |
//	charged i64 | feed version str8 |
//	bookings u16 | bookings × (agency str8 | amount i64) |
//	taps u16 | taps × (event [16] | kind u8 | time unix ns i64 | stop str8 | route str8 | network str8 | agency str8) |
//	rolling in u8 | rolling out u8 | (in + out) × (fare cap str8 | start unix ns i64 | spent i64)
//
// Versions 2 (no rolling windows) and 1 (nor a tap agency: its taps' legs
// without a route went to the feed's first agency) are still read.
const recordVersion = 3

// maxRolling bounds the rolling windows a day records, in and out each.
const maxRolling = 255

// MaxTaps bounds the taps one fare day of one rider may hold.
const MaxTaps = 4096

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("corrupt fare day record")

// fits reports whether d is within what its record holds.
func (d *Day) fits() bool {
	return len(d.Taps) <= MaxTaps && len(d.Booked) <= 0xffff && len(d.RollingIn) <= maxRolling && len(d.RollingOut) <= maxRolling
}

// MarshalBinary encodes d.
func (d *Day) MarshalBinary() ([]byte, error) {
	if !d.fits() {
		return nil, fmt.Errorf("fare day %s: %d taps, %d bookings, %d+%d rolling cap windows: too many", d.Date, len(d.Taps), len(d.Booked), len(d.RollingIn), len(d.RollingOut))
	}
	// The record's exact size, so that it is built in one allocation.
	n := 1 + 4 + 1 + len(d.Category) + 1 + len(d.Medium) + 1 + 8 + 1 + len(d.FeedVersion) + 2 + 2
	for _, bk := range d.Booked {
		n += 1 + len(bk.Agency) + 8
	}
	for i := range d.Taps {
		t := &d.Taps[i]
		n += 16 + 1 + 8 + 4 + len(t.Stop) + len(t.Route) + len(t.Network) + len(t.Agency)
	}
	n += 2
	for _, w := range d.RollingIn {
		n += 1 + len(w.CapID) + 16
	}
	for _, w := range d.RollingOut {
		n += 1 + len(w.CapID) + 16
	}
	b := make([]byte, 0, n)
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(d.Date))
	var err error
	if b, err = appendStr8(b, d.Category); err != nil {
		return nil, err
	}
	if b, err = appendStr8(b, d.Medium); err != nil {
		return nil, err
	}
	closed := byte(0)
	if d.Closed {
		closed = 1
	}
	b = append(b, closed)
	b = binary.BigEndian.AppendUint64(b, uint64(d.Charged))
	if b, err = appendStr8(b, d.FeedVersion); err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.Booked)))
	for _, bk := range d.Booked {
		if b, err = appendStr8(b, bk.Agency); err != nil {
			return nil, err
		}
		b = binary.BigEndian.AppendUint64(b, uint64(bk.Amount))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.Taps)))
	for i := range d.Taps {
		t := &d.Taps[i]
		b = append(b, t.Event[:]...)
		b = append(b, byte(t.Kind))
		b = binary.BigEndian.AppendUint64(b, uint64(t.Time.UnixNano()))
		if b, err = appendStr8(b, t.Stop); err != nil {
			return nil, err
		}
		if b, err = appendStr8(b, t.Route); err != nil {
			return nil, err
		}
		if b, err = appendStr8(b, t.Network); err != nil {
			return nil, err
		}
		if b, err = appendStr8(b, t.Agency); err != nil {
			return nil, err
		}
	}
	b = append(b, byte(len(d.RollingIn)), byte(len(d.RollingOut)))
	for _, ws := range [][]fares.RollingWindow{d.RollingIn, d.RollingOut} {
		for _, w := range ws {
			if b, err = appendStr8(b, w.CapID); err != nil {
				return nil, err
			}
			b = binary.BigEndian.AppendUint64(b, uint64(w.Start.UnixNano()))
			b = binary.BigEndian.AppendUint64(b, uint64(w.Spent))
		}
	}
	return b, nil
}

// UnmarshalBinary decodes a record MarshalBinary wrote, naming what is
// wrong with anything else.
func (d *Day) UnmarshalBinary(b []byte) error {
	// The record's strings are read as spans of one buffer of their
	// distinct values (a day's taps repeat the same few stops, routes and
	// networks), made a string once at the end: one allocation instead of
	// one a field, three a tap.
	var strs [256]byte
	var spans [64]span
	r := reader{b: b, strs: strs[:0], spans: spans[:0]}
	v := r.u8("version")
	if r.err == nil && (v < 1 || v > recordVersion) {
		return fmt.Errorf("fare day record version %d, this build reads 1 to %d: %w", v, recordVersion, ErrCorrupt)
	}
	agencies := v >= 2
	*d = Day{}
	d.Date = fares.Date(int32(r.u32("date")))
	r.str8("category")
	r.str8("medium")
	switch r.u8("closed") {
	case 0:
	case 1:
		d.Closed = true
	default:
		if r.err == nil {
			r.err = fmt.Errorf("closed flag at offset %d is not 0 or 1: %w", r.off-1, ErrCorrupt)
		}
	}
	d.Charged = int64(r.u64("charged"))
	r.str8("feed version")
	n := int(r.u16("bookings"))
	if r.err == nil && n > 0 {
		// A booking takes at least 9 bytes: a corrupt count cannot make
		// it allocate more than the record's size.
		d.Booked = make([]Booking, 0, min(n, (len(b)-r.off)/9))
	}
	for i := 0; i < n && r.err == nil; i++ {
		r.str8("agency")
		d.Booked = append(d.Booked, Booking{Amount: int64(r.u64("amount"))})
	}
	n = int(r.u16("taps"))
	if n > MaxTaps && r.err == nil {
		r.err = fmt.Errorf("%d taps, limit %d: %w", n, MaxTaps, ErrCorrupt)
	}
	if r.err == nil && n > 0 {
		// A tap takes at least 28 bytes (as for bookings above; 29 in
		// version 2, and 28 bounds both).
		d.Taps = make([]Tap, 0, min(n, (len(b)-r.off)/28))
	}
	for i := 0; i < n && r.err == nil; i++ {
		var t Tap
		copy(t.Event[:], r.bytes(16, "event"))
		t.Kind = fares.TapKind(r.u8("kind"))
		t.Time = time.Unix(0, int64(r.u64("time"))).UTC()
		r.str8("stop")
		r.str8("route")
		r.str8("network")
		if agencies {
			r.str8("agency")
		}
		if r.err == nil && (t.Kind < fares.TapIn || t.Kind > fares.Validation) {
			r.err = fmt.Errorf("tap %d: kind %d: %w", i, t.Kind, ErrCorrupt)
		}
		if r.err == nil && i > 0 && tapOrder(d.Taps[i-1], t) >= 0 {
			r.err = fmt.Errorf("tap %d out of order: %w", i, ErrCorrupt)
		}
		d.Taps = append(d.Taps, t)
	}
	var rolling [2]int
	if v >= 3 {
		rolling[0], rolling[1] = int(r.u8("rolling windows in")), int(r.u8("rolling windows out"))
	}
	var windows []fares.RollingWindow
	if r.err == nil && rolling[0]+rolling[1] > 0 {
		// A window takes at least 17 bytes.
		windows = make([]fares.RollingWindow, 0, min(rolling[0]+rolling[1], (len(b)-r.off)/17))
	}
	for i := 0; i < rolling[0]+rolling[1] && r.err == nil; i++ {
		r.str8("fare cap")
		start := time.Unix(0, int64(r.u64("window start"))).UTC()
		windows = append(windows, fares.RollingWindow{Start: start, Spent: int64(r.u64("window spent"))})
	}
	if r.err != nil {
		return fmt.Errorf("decode fare day: %w", r.err)
	}
	all, k := string(r.strs), 0
	str := func() string {
		sp := r.spans[k]
		k++
		return all[sp.off : sp.off+sp.n]
	}
	d.Category, d.Medium, d.FeedVersion = str(), str(), str()
	for i := range d.Booked {
		d.Booked[i].Agency = str()
	}
	for i := range d.Taps {
		t := &d.Taps[i]
		t.Stop, t.Route, t.Network = str(), str(), str()
		if agencies {
			t.Agency = str()
		}
	}
	for i := range windows {
		windows[i].CapID = str()
	}
	if len(windows) > 0 {
		d.RollingIn = slices.Clip(windows[:rolling[0]])
		d.RollingOut = windows[rolling[0]:]
		if len(d.RollingIn) == 0 {
			d.RollingIn = nil
		}
		if len(d.RollingOut) == 0 {
			d.RollingOut = nil
		}
	}
	if r.off != len(b) {
		return fmt.Errorf("decode fare day %s: %d unexpected bytes at the end: %w", d.Date, len(b)-r.off, ErrCorrupt)
	}
	var sum int64
	for i, bk := range d.Booked {
		if bk.Amount == 0 || (i > 0 && d.Booked[i-1].Agency >= bk.Agency) {
			return fmt.Errorf("decode fare day %s: booking %d (%s) zero or out of order: %w", d.Date, i, bk.Agency, ErrCorrupt)
		}
		sum += bk.Amount
	}
	if sum != d.Charged {
		return fmt.Errorf("decode fare day %s: bookings sum to %d, charged %d: %w", d.Date, sum, d.Charged, ErrCorrupt)
	}
	return nil
}

func appendStr8(b []byte, s string) ([]byte, error) {
	if len(s) > 255 {
		return nil, fmt.Errorf("field of %d bytes, limit 255", len(s))
	}
	b = append(b, byte(len(s)))
	return append(b, s...), nil
}

type reader struct {
	b   []byte
	off int
	err error
	// strs holds the distinct strings str8 read; spans has one entry per
	// str8 call, in order, locating its value in strs.
	strs  []byte
	spans []span
}

type span struct{ off, n int }

func (r *reader) bytes(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b)-r.off < n {
		r.err = fmt.Errorf("truncated at %s (offset %d): %w", field, r.off, ErrCorrupt)
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

func (r *reader) u8(field string) uint8 {
	if v := r.bytes(1, field); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16(field string) uint16 {
	if v := r.bytes(2, field); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32(field string) uint32 {
	if v := r.bytes(4, field); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64(field string) uint64 {
	if v := r.bytes(8, field); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// str8 reads a string and records its span (see reader); the caller
// takes the values from there once the record is read.
func (r *reader) str8(field string) {
	v := r.bytes(int(r.u8(field)), field)
	if r.err != nil {
		return
	}
	// The same value read lately: most a day's strings are.
	for i := len(r.spans) - 1; i >= max(0, len(r.spans)-8); i-- {
		if sp := r.spans[i]; string(r.strs[sp.off:sp.off+sp.n]) == string(v) {
			r.spans = append(r.spans, sp)
			return
		}
	}
	r.spans = append(r.spans, span{off: len(r.strs), n: len(v)})
	r.strs = append(r.strs, v...)
}

// PeekDay reads a day record's fare day and the feed version it was last
// priced with, without decoding the rest.
func PeekDay(b []byte) (fares.Date, string, error) {
	if len(b) < 1 || b[0] < 1 || b[0] > recordVersion {
		return 0, "", fmt.Errorf("fare day record of %d bytes, version byte not 1 to %d: %w", len(b), recordVersion, ErrCorrupt)
	}
	off := 1
	if len(b) < off+4 {
		return 0, "", fmt.Errorf("fare day record of %d bytes: no date: %w", len(b), ErrCorrupt)
	}
	date := fares.Date(int32(binary.BigEndian.Uint32(b[off:])))
	off += 4
	skip := func(what string, n int) error {
		if len(b) < off+n {
			return fmt.Errorf("fare day record of %d bytes ends in its %s: %w", len(b), what, ErrCorrupt)
		}
		off += n
		return nil
	}
	for _, what := range []string{"category", "medium"} {
		if err := skip(what, 1); err != nil {
			return 0, "", err
		}
		if err := skip(what, int(b[off-1])); err != nil {
			return 0, "", err
		}
	}
	if err := skip("charge", 1+8+1); err != nil {
		return 0, "", err
	}
	n := int(b[off-1])
	if err := skip("feed version", n); err != nil {
		return 0, "", err
	}
	return date, string(b[off-n : off]), nil
}
