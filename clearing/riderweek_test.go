package clearing

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/fare"
)

// weekRecordV1 is a week record as versions before 2 wrote it: every day
// of the week with what it charged.
func weekRecordV1(w map[fares.Date]int64) []byte {
	dates := make([]fares.Date, 0, len(w))
	for d := range w {
		dates = append(dates, d)
	}
	slices.Sort(dates)
	b := []byte{byte(len(dates))}
	for _, d := range dates {
		b = binary.BigEndian.AppendUint32(b, uint32(d))
		b = binary.BigEndian.AppendUint64(b, uint64(w[d]))
	}
	return b
}

func TestDecodeWeekRecord(t *testing.T) {
	start := weekStart(fares.DateOf(2026, 12, 2))
	for _, tc := range []struct {
		name string
		v    []byte
		bits uint8
		ok   bool
	}{
		{"v2", []byte{weekRecordDays, 0b0100101}, 0b0100101, true},
		{"v2 empty", []byte{weekRecordDays, 0}, 0, true},
		{"v2 an eighth day", []byte{weekRecordDays, 0x80}, 0, false},
		{"v1", weekRecordV1(map[fares.Date]int64{start: 450, start + 2: 0, start + 6: 1200}), 0b1000101, true},
		{"v1 empty", []byte{0}, 0, true},
		{"v1 another week", weekRecordV1(map[fares.Date]int64{start + 7: 450}), 0, false},
		{"v1 truncated", weekRecordV1(map[fares.Date]int64{start: 450})[:12], 0, false},
		{"nothing", nil, 0, false},
	} {
		bits, err := decodeWeekRecord(tc.v, start)
		if (err == nil) != tc.ok || bits != tc.bits {
			t.Errorf("%s: %07b, %v; want %07b, ok %v", tc.name, bits, err, tc.bits, tc.ok)
		}
	}
}

// TestWeekRecordsOfAnEarlierVersion: a store whose week records are of
// version 1 (with every day's charge, which this version no longer keeps
// up to date) prices the rest of the week as if they were version 2: the
// days they list are found, their charges are read from the day records
// (the test makes the records' copies wrong), and the later taps post what
// they post in a store written by this version throughout.
func TestWeekRecordsOfAnEarlierVersion(t *testing.T) {
	type tapPlan struct {
		term string
		dir  fare.Direction
		card string
		at   time.Time
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var plan []tapPlan
	for r := range 40 {
		card := fmt.Sprintf("card-%03d", r)
		at := wednesday(-48+24*rng.IntN(7)+6+rng.IntN(14), rng.IntN(60)) // Monday to Sunday
		for range 1 + rng.IntN(14) {                                     // some reach the weekly cap
			if rng.IntN(3) == 0 {
				plan = append(plan, tapPlan{"bus-s01-g1", fare.Validate, card, at})
			} else {
				plan = append(plan, tapPlan{"metro-s01-g1", fare.Entry, card, at.Add(5 * time.Minute)},
					tapPlan{"metro-s04-g1", fare.Exit, card, at.Add(40 * time.Minute)})
			}
			at = at.Add(time.Duration(45+rng.IntN(600)) * time.Minute)
		}
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	half := len(plan) / 2
	run := func(downgrade bool) ([][]Posting, int) {
		f := newPricedFixture(t, t.TempDir())
		defer f.st.Close()
		cands := make([]candidate, len(plan))
		for i, p := range plan {
			cands[i] = f.tap(t, p.term, p.dir, p.card, p.at)
		}
		for i := 0; i < half; i += 10 {
			f.apply(t, cands[i:min(i+10, half)]...)
		}
		rewritten := 0
		if downgrade {
			// Every week record as version 1 wrote it, its charges wrong.
			err := f.st.db.Update(func(txn *badger.Txn) error {
				it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pRiderWeek}})
				defer it.Close()
				var keys [][]byte
				var vals [][]byte
				for it.Rewind(); it.Valid(); it.Next() {
					k := it.Item().KeyCopy(nil)
					start := fares.Date(int32(binary.BigEndian.Uint32(k[len(k)-4:])))
					var bits uint8
					if err := it.Item().Value(func(v []byte) (err error) { bits, err = decodeWeekRecord(v, start); return err }); err != nil {
						return err
					}
					w := map[fares.Date]int64{}
					for i := range fares.Date(7) {
						if bits&(1<<i) != 0 {
							w[start+i] = 99_999
						}
					}
					keys, vals = append(keys, k), append(vals, weekRecordV1(w))
				}
				for i := range keys {
					if err := txn.Set(keys[i], vals[i]); err != nil {
						return err
					}
				}
				rewritten = len(keys)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			f.st.cache.reset()
		}
		for i := half; i < len(plan); i += 10 {
			f.apply(t, cands[i:min(i+10, len(plan))]...)
		}
		fa, err := f.st.AuditFares(f.pricing, func(m fare.MediaKind, tok string) string { return RiderAccount(f.riderKey, m, tok) })
		// Totals only: a late tap of an earlier day reprices the week's
		// later days under the weekly cap, and its event posts their
		// differences, which the audit's day-by-day comparison counts as
		// mismatches of both days (the same with version 1 throughout).
		if err != nil || fa.Posted != fa.Recomputed || fa.Posted == 0 {
			t.Fatalf("downgraded %v: fare audit %+v, %v", downgrade, fa, err)
		}
		var out [][]Posting
		for _, c := range cands {
			rec, err := f.st.Event(c.ev.ID)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, rec.Postings)
		}
		return out, rewritten
	}
	want, _ := run(false)
	got, rewritten := run(true)
	if rewritten < 20 {
		t.Fatalf("only %d week records rewritten", rewritten)
	}
	for i := range plan {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("tap %d (%+v) posted %v after version 1 week records, %v without", i, plan[i], got[i], want[i])
		}
	}
}
