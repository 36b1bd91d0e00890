package journeys

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing/fares"
)

// unmarshalDayV0 is Day.UnmarshalBinary as it was before it read the
// record's strings as spans of one buffer (commit bdd11ba): the reference
// FuzzDayDecoders holds the new one to.
func unmarshalDayV0(d *Day, b []byte) error {
	r := readerV0{reader: reader{b: b}}
	v := r.u8("version")
	if r.err == nil && (v < 1 || v > recordVersion) {
		return fmt.Errorf("fare day record version %d, this build reads 1 to %d: %w", v, recordVersion, ErrCorrupt)
	}
	*d = Day{}
	d.Date = fares.Date(int32(r.u32("date")))
	d.Category = r.str8("category")
	d.Medium = r.str8("medium")
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
	d.FeedVersion = r.str8("feed version")
	n := int(r.u16("bookings"))
	for i := 0; i < n && r.err == nil; i++ {
		d.Booked = append(d.Booked, Booking{Agency: r.str8("agency"), Amount: int64(r.u64("amount"))})
	}
	n = int(r.u16("taps"))
	if n > MaxTaps && r.err == nil {
		r.err = fmt.Errorf("%d taps, limit %d: %w", n, MaxTaps, ErrCorrupt)
	}
	for i := 0; i < n && r.err == nil; i++ {
		var t Tap
		copy(t.Event[:], r.bytes(16, "event"))
		t.Kind = fares.TapKind(r.u8("kind"))
		t.Time = time.Unix(0, int64(r.u64("time"))).UTC()
		t.Stop, t.Route, t.Network = r.str8("stop"), r.str8("route"), r.str8("network")
		if v >= 2 {
			t.Agency = r.str8("agency")
		}
		if r.err == nil && (t.Kind < fares.TapIn || t.Kind > fares.Validation) {
			r.err = fmt.Errorf("tap %d: kind %d: %w", i, t.Kind, ErrCorrupt)
		}
		if r.err == nil && i > 0 && tapOrder(d.Taps[i-1], t) >= 0 {
			r.err = fmt.Errorf("tap %d out of order: %w", i, ErrCorrupt)
		}
		d.Taps = append(d.Taps, t)
	}
	if v >= 3 {
		in, out := int(r.u8("rolling windows in")), int(r.u8("rolling windows out"))
		for i := 0; i < in+out && r.err == nil; i++ {
			w := fares.RollingWindow{CapID: r.str8("fare cap")}
			w.Start = time.Unix(0, int64(r.u64("window start"))).UTC()
			w.Spent = int64(r.u64("window spent"))
			if i < in {
				d.RollingIn = append(d.RollingIn, w)
			} else {
				d.RollingOut = append(d.RollingOut, w)
			}
		}
	}
	if r.err != nil {
		return fmt.Errorf("decode fare day: %w", r.err)
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

// readerV0 is the reader with the string reading UnmarshalBinary had.
type readerV0 struct{ reader }

func (r *readerV0) str8(field string) string {
	return string(r.bytes(int(r.u8(field)), field))
}

// FuzzDayDecoders: UnmarshalBinary decodes every input as the reference
// decoder does, with the same error or the same Day.
func FuzzDayDecoders(f *testing.F) {
	b := testBook(f)
	d := newDay(b, at(2, 11, 0), "adult")
	for _, tap := range []Tap{validate("bus", "bus-s01", at(2, 11, 0)), metroIn("metro-s01", at(2, 11, 30)), metroOut("metro-s02", at(2, 11, 50)), validate("tram", "tram-s01", at(2, 12, 30))} {
		if _, _, err := b.Add(d, tap, nil); err != nil {
			f.Fatal(err)
		}
	}
	raw, _ := d.MarshalBinary()
	f.Add(raw)
	// A day with rolling-week windows in and out.
	w := *d
	w.RollingIn = []fares.RollingWindow{{CapID: "r", Start: at(1, 9, 0).UTC(), Spent: 900}}
	w.RollingOut = []fares.RollingWindow{{CapID: "r", Start: at(1, 9, 0).UTC(), Spent: 1400}, {CapID: "r2", Start: at(2, 11, 0).UTC(), Spent: 250}}
	withWindows, _ := w.MarshalBinary()
	f.Add(withWindows)
	f.Add(withWindows[:len(withWindows)-5])
	f.Add(raw[:len(raw)-3])
	f.Add([]byte{recordVersion})
	f.Add(marshalDayV1(d))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var got, want Day
		gerr, werr := got.UnmarshalBinary(raw), unmarshalDayV0(&want, raw)
		if fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("error %v, the reference says %v", gerr, werr)
		}
		// PeekDay reads the same date and version from every record the
		// decoder takes.
		pd, pv, perr := PeekDay(raw)
		if gerr == nil && (perr != nil || pd != got.Date || pv != got.FeedVersion) {
			t.Fatalf("PeekDay %s %q %v, the decoder %s %q", pd, pv, perr, got.Date, got.FeedVersion)
		}
		if gerr != nil {
			return
		}
		if got.Date != want.Date || got.Category != want.Category || got.Medium != want.Medium || got.Closed != want.Closed ||
			got.Charged != want.Charged || got.FeedVersion != want.FeedVersion || !slices.Equal(got.Booked, want.Booked) ||
			!slices.Equal(got.RollingIn, want.RollingIn) || !slices.Equal(got.RollingOut, want.RollingOut) ||
			!slices.EqualFunc(got.Taps, want.Taps, func(a, b Tap) bool {
				return a.Event == b.Event && a.Kind == b.Kind && a.Time.Equal(b.Time) && a.Time.Location() == b.Time.Location() &&
					a.Stop == b.Stop && a.Route == b.Route && a.Network == b.Network && a.Agency == b.Agency
			}) {
			t.Fatalf("decoded %+v, the reference %+v", got, want)
		}
	})
}

// marshalDayV1 encodes d as version 1 did: no tap agency.
func marshalDayV1(d *Day) []byte {
	b := []byte{1}
	b = binary.BigEndian.AppendUint32(b, uint32(d.Date))
	str := func(s string) { b = append(append(b, byte(len(s))), s...) }
	str(d.Category)
	str(d.Medium)
	closed := byte(0)
	if d.Closed {
		closed = 1
	}
	b = append(b, closed)
	b = binary.BigEndian.AppendUint64(b, uint64(d.Charged))
	str(d.FeedVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.Booked)))
	for _, bk := range d.Booked {
		str(bk.Agency)
		b = binary.BigEndian.AppendUint64(b, uint64(bk.Amount))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.Taps)))
	for _, t := range d.Taps {
		b = append(b, t.Event[:]...)
		b = append(b, byte(t.Kind))
		b = binary.BigEndian.AppendUint64(b, uint64(t.Time.UnixNano()))
		str(t.Stop)
		str(t.Route)
		str(t.Network)
	}
	return b
}

// TestDayRecordVersion1StillRead: a fare day stored before taps carried
// their agency reads back with every field but that one; written again, it
// is the current version and round-trips with the agency. So does one of
// version 2, from before rolling-week windows.
func TestDayRecordVersion1StillRead(t *testing.T) {
	b := testBook(t)
	d := newDay(b, at(2, 11, 0), "adult")
	for _, tap := range []Tap{validate("bus", "bus-s01", at(2, 11, 0)), metroIn("metro-s01", at(2, 11, 30)), metroOut("metro-s02", at(2, 11, 50))} {
		tap.Agency = "metro"
		if _, _, err := b.Add(d, tap, nil); err != nil {
			t.Fatal(err)
		}
	}
	var old Day
	if err := old.UnmarshalBinary(marshalDayV1(d)); err != nil {
		t.Fatalf("a version 1 record: %v", err)
	}
	if len(old.Taps) != 3 || old.Taps[1].Stop != "metro-s01" || old.Taps[1].Agency != "" || old.Charged != d.Charged {
		t.Fatalf("version 1 read as %+v", old)
	}
	raw, err := d.MarshalBinary()
	if err != nil || raw[0] != recordVersion {
		t.Fatalf("written as version %d, %v", raw[0], err)
	}
	var back Day
	if err := back.UnmarshalBinary(raw); err != nil || back.Taps[2].Agency != "metro" {
		t.Fatalf("version %d round trip: %+v, %v", recordVersion, back.Taps, err)
	}
	// Version 2 is version 3 without the rolling windows' counts.
	var v2 Day
	if err := v2.UnmarshalBinary(append([]byte{2}, raw[1:len(raw)-2]...)); err != nil || v2.Taps[2].Agency != "metro" || v2.Charged != d.Charged {
		t.Fatalf("a version 2 record: %+v, %v", v2, err)
	}
}
