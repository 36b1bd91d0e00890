package clearing

import (
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
)

// decAt is a UTC instant on day 1 + d of December 2026, hh:00.
func decAt(d, hh int) time.Time { return time.Date(2026, 12, 1+d, hh, 0, 0, 0, time.UTC) }

// TestEnrolmentPeriods: a later-made record supersedes every earlier one
// from its valid_from on; an enrolment ends at its valid_until; a
// revocation gives the default; the gate and the back office read the same
// periods (fare.CategoryAt).
func TestEnrolmentPeriods(t *testing.T) {
	enrol := func(seq uint64, cat string, from, until time.Time) Enrolment {
		return Enrolment{Seq: seq, Category: cat, ValidFrom: from, ValidUntil: until}
	}
	revoke := func(seq uint64, from time.Time) Enrolment { return Enrolment{Seq: seq, Revoked: true, ValidFrom: from} }
	p := func(cat string, from, until time.Time) fare.EnrolmentPeriod {
		return fare.EnrolmentPeriod{From: from, Until: until, Category: cat}
	}
	for _, tc := range []struct {
		name    string
		history []Enrolment
		want    []fare.EnrolmentPeriod
	}{
		{"none", nil, nil},
		{"one enrolment", []Enrolment{enrol(1, "concession", decAt(1, 4), decAt(5, 4))}, []fare.EnrolmentPeriod{p("concession", decAt(1, 4), decAt(5, 4))}},
		{"revoked from day 3", []Enrolment{enrol(1, "concession", decAt(1, 4), decAt(5, 4)), revoke(2, decAt(3, 4))},
			[]fare.EnrolmentPeriod{p("concession", decAt(1, 4), decAt(3, 4))}},
		{"revoked before it began", []Enrolment{enrol(1, "concession", decAt(4, 4), decAt(9, 4)), revoke(2, decAt(2, 4))}, nil},
		{"a later enrolment from day 3 supersedes", []Enrolment{enrol(1, "concession", decAt(1, 4), decAt(9, 4)), enrol(2, "senior", decAt(3, 4), decAt(4, 4))},
			[]fare.EnrolmentPeriod{p("concession", decAt(1, 4), decAt(3, 4)), p("senior", decAt(3, 4), decAt(4, 4))}},
		{"an earlier-made record starting later does not supersede a later-made one",
			[]Enrolment{enrol(1, "senior", decAt(3, 4), decAt(9, 4)), enrol(2, "concession", decAt(1, 4), decAt(6, 4))},
			[]fare.EnrolmentPeriod{p("concession", decAt(1, 4), decAt(6, 4))}},
		{"renewed back to back merges", []Enrolment{enrol(1, "concession", decAt(1, 4), decAt(3, 4)), enrol(2, "concession", decAt(3, 4), decAt(6, 4))},
			[]fare.EnrolmentPeriod{p("concession", decAt(1, 4), decAt(6, 4))}},
		{"re-enrolled after a revocation", []Enrolment{enrol(1, "concession", decAt(1, 4), decAt(9, 4)), revoke(2, decAt(2, 4)), enrol(3, "concession", decAt(5, 4), decAt(7, 4))},
			[]fare.EnrolmentPeriod{p("concession", decAt(1, 4), decAt(2, 4)), p("concession", decAt(5, 4), decAt(7, 4))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := EnrolmentPeriods(tc.history)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("periods %+v, want %+v", got, tc.want)
			}
			if err := fare.ValidatePeriods(got); err != nil {
				t.Fatal(err)
			}
			for h := 0; h < 24*10; h++ {
				at := decAt(0, 0).Add(time.Duration(h) * time.Hour)
				want := ""
				for _, p := range tc.want {
					if !at.Before(p.From) && at.Before(p.Until) {
						want = p.Category
					}
				}
				if c := fare.CategoryAt(got, at); c != want {
					t.Fatalf("at %s: %q, want %q", at, c, want)
				}
			}
		})
	}
}

// TestNewEnrolment: what an enrolment request is refused for, each named;
// times move forward to the start of a fare day (04:00 Berlin in the city
// feed) and are never in the past.
func TestNewEnrolment(t *testing.T) {
	f := newPricedFixture(t, t.TempDir())
	defer f.st.Close()
	days := feedDays{f.pricing}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, berlin)
	dayStart := func(d int) time.Time { return time.Date(2026, 12, d, 4, 0, 0, 0, berlin).UTC() }
	for _, tc := range []struct {
		name        string
		req         EnrolRequest
		err         string
		from, until time.Time
	}{
		{"from now: the next fare day", EnrolRequest{Category: "concession", ApprovedBy: "desk-1", ValidUntil: now.Add(72 * time.Hour)}, "", dayStart(3), dayStart(6)},
		{"from a day start", EnrolRequest{Category: "concession", ApprovedBy: "desk-1", ValidFrom: dayStart(4), ValidUntil: dayStart(5)}, "", dayStart(4), dayStart(5)},
		{"revocation", EnrolRequest{Revoke: true, ApprovedBy: "desk-1"}, "", dayStart(3), time.Time{}},
		{"unknown category", EnrolRequest{Category: "senior", ApprovedBy: "desk-1", ValidUntil: dayStart(9)}, `unknown rider category "senior": the feed has adult, concession`, time.Time{}, time.Time{}},
		{"no category", EnrolRequest{ApprovedBy: "desk-1", ValidUntil: dayStart(9)}, "no category", time.Time{}, time.Time{}},
		{"backdated", EnrolRequest{Category: "concession", ApprovedBy: "desk-1", ValidFrom: now.Add(-time.Hour), ValidUntil: dayStart(9)}, "is in the past", time.Time{}, time.Time{}},
		{"no valid_until", EnrolRequest{Category: "concession", ApprovedBy: "desk-1"}, "no valid_until", time.Time{}, time.Time{}},
		{"until in the past", EnrolRequest{Category: "concession", ApprovedBy: "desk-1", ValidUntil: now.Add(-24 * time.Hour)}, "is in the past", time.Time{}, time.Time{}},
		{"until before from", EnrolRequest{Category: "concession", ApprovedBy: "desk-1", ValidFrom: dayStart(5), ValidUntil: dayStart(4)}, "is not after valid_from", time.Time{}, time.Time{}},
		{"no approver", EnrolRequest{Category: "concession", ValidUntil: dayStart(9)}, "no approver", time.Time{}, time.Time{}},
		{"a blank approver", EnrolRequest{Category: "concession", ApprovedBy: "   ", ValidUntil: dayStart(9)}, "the name is blank", time.Time{}, time.Time{}},
		{"an invisible approver", EnrolRequest{Category: "concession", ApprovedBy: "\u200b\u200d", ValidUntil: dayStart(9)}, "the name is blank", time.Time{}, time.Time{}},
		{"a zero-width space in the approver", EnrolRequest{Category: "concession", ApprovedBy: "desk\u200b1", ValidUntil: dayStart(9)}, "invisible (format) characters", time.Time{}, time.Time{}},
		{"revocation with a category", EnrolRequest{Revoke: true, Category: "concession", ApprovedBy: "x"}, "takes no category", time.Time{}, time.Time{}},
		// The last second of 9999 used to pass, end on a fare day of the
		// year 10000 that JSON cannot write, and stall the CLI's queue.
		{"until the year 9999", EnrolRequest{Category: "concession", ApprovedBy: "desk-1", ValidUntil: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}, "more than 20 years ahead", time.Time{}, time.Time{}},
		{"until 2200", EnrolRequest{Category: "concession", ApprovedBy: "desk-1", ValidUntil: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)}, "more than 20 years ahead", time.Time{}, time.Time{}},
		{"until in 19 years", EnrolRequest{Category: "concession", ApprovedBy: "desk-1", ValidUntil: time.Date(2045, 12, 5, 3, 0, 0, 0, time.UTC)}, "", dayStart(3), time.Date(2045, 12, 5, 3, 0, 0, 0, time.UTC)},
		{"until a day past 20 years", EnrolRequest{Category: "concession", ApprovedBy: "desk-1", ValidUntil: now.AddDate(20, 0, 1)}, "more than 20 years ahead", time.Time{}, time.Time{}},
		// A revocation dated 9999 stalled the queue as the enrolment did.
		{"revocation from 9999", EnrolRequest{Revoke: true, ApprovedBy: "desk-1", ValidFrom: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}, "valid_from 9999-12-31T23:59:59Z is more than 20 years ahead", time.Time{}, time.Time{}},
		{"revocation from 2200", EnrolRequest{Revoke: true, ApprovedBy: "desk-1", ValidFrom: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)}, "more than 20 years ahead", time.Time{}, time.Time{}},
		{"enrolment from 2200", EnrolRequest{Category: "concession", ApprovedBy: "desk-1", ValidFrom: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), ValidUntil: time.Date(2201, 1, 1, 0, 0, 0, 0, time.UTC)}, "valid_from 2200-01-01T00:00:00Z is more than 20 years ahead", time.Time{}, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := newEnrolment(tc.req, days, now)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalidEnrolment) {
					t.Fatalf("err %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !e.ValidFrom.Equal(tc.from) || !e.ValidUntil.Equal(tc.until) || e.ApprovedBy != "desk-1" || !e.CreatedAt.Equal(now.UTC()) {
				t.Fatalf("record %+v, want from %s until %s", e, tc.from, tc.until)
			}
		})
	}
	if _, err := newEnrolment(EnrolRequest{Category: "concession", ApprovedBy: "x", ValidUntil: dayStart(9)}, nil, now); err == nil || !strings.Contains(err.Error(), "without --feed") {
		t.Fatalf("enrolment without a feed: %v", err)
	}
}

// TestEnrolledPricing: through the apply transaction, a rider enrolled as
// concession is charged concession fares and caps, a rider who is not is
// charged adult fares whatever the tap claims, an expired enrolment and a
// revoked one price at adult; the independent fare audit agrees; the
// history reads back from a reopened store.
func TestEnrolledPricing(t *testing.T) {
	dir := t.TempDir()
	f := newPricedFixture(t, dir)
	f.pricing.Category = f.st.EnrolledCategory
	berlin, _ := time.LoadLocation("Europe/Berlin")
	day := func(d, hh int) time.Time { return time.Date(2026, 12, d, hh, 0, 0, 0, berlin) }
	dayStart := func(d int) time.Time { return time.Date(2026, 12, d, 4, 0, 0, 0, berlin).UTC() }
	enrol := func(card string, e Enrolment) {
		t.Helper()
		e.Rider, e.Media, e.Key, e.ApprovedBy = f.rider(card), "card", fare.DenyKey(fare.Card, card), "desk-1"
		if _, _, _, err := f.st.appendEnrolment(e, nil); err != nil {
			t.Fatal(err)
		}
	}
	// conc: concession on 2 and 3 December; revoked from the 4th.
	enrol("conc", Enrolment{Category: "concession", ValidFrom: dayStart(2), ValidUntil: dayStart(9)})
	enrol("conc", Enrolment{Revoked: true, ValidFrom: dayStart(4)})
	// short: concession on the 2nd only (expired on the 3rd).
	enrol("short", Enrolment{Category: "concession", ValidFrom: dayStart(2), ValidUntil: dayStart(3)})

	// Every tap claims concession: what a tap line claims never counts.
	rides := func(card string, d int, n int) []candidate {
		var out []candidate
		for i := range n {
			c := f.tap(t, "bus-s01-g1", fare.Validate, card, day(d, 10+i))
			ev := c.ev.Event
			ev.RiderCategory = "concession"
			raw, err := fare.Sign(&ev, f.keys[ev.Terminal])
			if err != nil {
				t.Fatal(err)
			}
			sig, _ := fare.Decode(raw)
			out = append(out, candidate{ev: sig, digest: sig.Digest(), rider: c.rider})
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		cands  []candidate
		rider  string
		charge fare.Amount // the rider's balance after, negative
	}{
		{"enrolled: concession fare", rides("conc", 2, 1), "conc", -90},
		{"enrolled: concession daily cap", rides("conc", 3, 5), "conc", -90 - 400},
		{"revoked: adult", rides("conc", 4, 1), "conc", -90 - 400 - 180},
		{"not enrolled, tap claims a category: adult", rides("claims", 2, 1), "claims", -180},
		{"not enrolled: adult daily cap", rides("claims", 3, 5), "claims", -180 - 800},
		{"enrolled on the day", rides("short", 2, 1), "short", -90},
		{"expired: adult", rides("short", 3, 1), "short", -90 - 180},
	} {
		f.apply(t, tc.cands...)
		if got := f.balance(t, f.rider(tc.rider)); got != tc.charge {
			t.Errorf("%s: rider balance %d, want %d", tc.name, got, tc.charge)
		}
	}
	audit, err := f.st.AuditFares(f.pricing, func(m fare.MediaKind, tok string) string { return RiderAccount(f.riderKey, m, tok) })
	if err != nil {
		t.Fatal(err)
	}
	if audit.Count != 0 || audit.Posted != audit.Recomputed {
		t.Fatalf("fare audit: %+v", audit)
	}
	hist, err := f.st.RiderEnrolments(f.rider("conc"))
	if err != nil || len(hist) != 2 || hist[0].Seq != 1 || !hist[1].Revoked || hist[1].Seq != 2 {
		t.Fatalf("history %+v, %v", hist, err)
	}
	if v, err := f.st.EnrolmentVersion(); err != nil || v != 3 {
		t.Fatalf("enrolment version %d, %v", v, err)
	}
	latest, err := f.st.LatestEnrolments("", 0)
	if err != nil || len(latest) != 2 {
		t.Fatalf("latest %+v, %v", latest, err)
	}
	for _, e := range latest {
		if want := e.Rider == f.rider("conc"); e.Revoked != want {
			t.Errorf("latest record of %s: %+v", e.Rider, e)
		}
	}
	f.st.Close()
	st, err := OpenStoreReadOnly(filepath.Join(dir, "store"), auditLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if h, err := st.RiderEnrolments(f.rider("conc")); err != nil || len(h) != 2 {
		t.Fatalf("reopened history %+v, %v", h, err)
	}
}

// TestParseRiderAccount: only a pseudonymous account is a rider id.
func TestParseRiderAccount(t *testing.T) {
	good := RiderAccount(make([]byte, RiderKeySize), fare.Face, "subject-1")
	for _, tc := range []struct {
		s  string
		ok bool
	}{
		{good, true},
		{"passenger/card/0x" + strings.Repeat("a", 32), true},
		{"passenger/card/0x" + strings.Repeat("A", 32), false},
		{"passenger/bus/0x" + strings.Repeat("a", 32), false},
		{"operator/metro", false},
		{"passenger/card/card-123", false},
		{"", false},
	} {
		if _, err := ParseRiderAccount(tc.s); (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.s, err)
		}
	}
}

// FuzzQueuedEnrolment: whatever an enrolment request file holds, decoding
// it either fails or yields a request naming a valid rider, medium key and
// approver.
func FuzzQueuedEnrolment(f *testing.F) {
	rider := "passenger/card/0x" + strings.Repeat("ab", 16)
	f.Add([]byte(`{"rider":"` + rider + `","media":"card","key":"` + strings.Repeat("0", 32) + `","category":"concession","approved_by":"desk","valid_until":"2027-01-01T00:00:00Z","requested":"2026-12-01T00:00:00Z"}`))
	f.Add([]byte(`{"rider":"` + rider + `","revoke":true,"approved_by":"desk","requested":"2026-12-01T00:00:00Z"}`))
	f.Add([]byte(`{"rider":"passenger/card/x"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := decodeQueuedEnrolment(b)
		if err != nil {
			return
		}
		m, err := ParseRiderAccount(q.Rider)
		if err != nil || validateApprover(q.ApprovedBy) != nil {
			t.Fatalf("accepted %+v", q)
		}
		if !q.Revoke {
			if qm, err := ParseMedia(q.Media); err != nil || qm != m {
				t.Fatalf("accepted an enrolment of another medium: %+v", q)
			}
			if _, err := fare.ParseDenyKey(q.Key); err != nil {
				t.Fatalf("accepted a bad key: %+v", q)
			}
		}
	})
}

// TestEnrolmentDigestShares: the enrolments' digest clearing reads at start
// from the stored shares (pEnrolSum) is the one its changes made, record by
// record (the previous share out, the new one in); a store of an earlier
// build, without the shares, gives the same digest from the riders'
// histories, and has its shares written.
func TestEnrolmentDigestShares(t *testing.T) {
	f := newPricedFixture(t, t.TempDir())
	berlin, _ := time.LoadLocation("Europe/Berlin")
	dayStart := func(d int) time.Time { return time.Date(2026, 12, d, 4, 0, 0, 0, berlin).UTC() }
	var want fare.DenyDigest
	count := 0
	enrol := func(card string, e Enrolment) {
		t.Helper()
		e.Rider, e.Media, e.Key, e.ApprovedBy = f.rider(card), "card", fare.DenyKey(fare.Card, card), "desk-1"
		e, hist, prev, err := f.st.appendEnrolment(e, nil)
		if err != nil {
			t.Fatal(err)
		}
		if prev == nil {
			count++
		} else {
			want.ToggleSum(*prev)
		}
		want.ToggleEnrolment(fare.HashDeny(fare.Card, card), e.Seq, EnrolmentPeriods(hist))
	}
	enrol("a", Enrolment{Category: "concession", ValidFrom: dayStart(2), ValidUntil: dayStart(9)})
	enrol("b", Enrolment{Category: "concession", ValidFrom: dayStart(2), ValidUntil: dayStart(3)})
	enrol("a", Enrolment{Revoked: true, ValidFrom: dayStart(4)})
	enrol("c", Enrolment{Category: "concession", ValidFrom: dayStart(5), ValidUntil: dayStart(20)})
	enrol("b", Enrolment{Category: "concession", ValidFrom: dayStart(3), ValidUntil: dayStart(6)})
	c := &Clearing{store: f.st, log: slog.New(slog.DiscardHandler)}
	load := func(what string) {
		t.Helper()
		if err := c.loadDenyList(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if c.deny.enrolCount != count || c.deny.enrolDigest != want || c.deny.enrolVersion != 5 {
			t.Fatalf("%s: %d media at version %d, digest %s; want %d at 5, %s", what, c.deny.enrolCount, c.deny.enrolVersion, c.deny.enrolDigest, count, want)
		}
	}
	load("the stored shares")
	shares := func() int {
		n := 0
		if err := f.st.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pEnrolSum}})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				n++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := shares(); n != count {
		t.Fatalf("%d shares stored for %d media", n, count)
	}
	// A store of an earlier build: no shares (b's taken out alone too).
	if err := f.st.db.DropPrefix([]byte{pEnrolSum}); err != nil {
		t.Fatal(err)
	}
	load("no shares")
	if n := shares(); n != count {
		t.Fatalf("%d shares written back for %d media", n, count)
	}
	if err := f.st.db.Update(func(txn *badger.Txn) error { return txn.Delete(enrolSumKey(fare.HashDeny(fare.Card, "b"))) }); err != nil {
		t.Fatal(err)
	}
	load("one share missing")
	// The next change of a medium without a share takes its old one out
	// as its history gives it.
	if err := f.st.db.Update(func(txn *badger.Txn) error { return txn.Delete(enrolSumKey(fare.HashDeny(fare.Card, "c"))) }); err != nil {
		t.Fatal(err)
	}
	enrol("c", Enrolment{Revoked: true, ValidFrom: dayStart(10)})
	if err := c.loadDenyList(); err != nil || c.deny.enrolDigest != want || c.deny.enrolVersion != 6 {
		t.Fatalf("after a change of a medium without a share: %s at version %d, want %s at 6 (%v)", c.deny.enrolDigest, c.deny.enrolVersion, want, err)
	}

	// A build before the shares appends a record and leaves a's share as
	// it was (a downgrade, then this build again): the start sees records
	// past the version the shares are whole at and reckons them all.
	old := Enrolment{Rider: f.rider("a"), Media: "card", Key: fare.DenyKey(fare.Card, "a"), ApprovedBy: "desk-1", Category: "concession", ValidFrom: dayStart(12), ValidUntil: dayStart(14), Seq: 7}
	if err := f.st.db.Update(func(txn *badger.Txn) error {
		b, err := json.Marshal(old)
		if err != nil {
			return err
		}
		if err := txn.Set(enrolStoreKey(old.Rider, old.Seq), b); err != nil {
			return err
		}
		return setU64(txn, metaEnrolVersion, old.Seq)
	}); err != nil {
		t.Fatal(err)
	}
	hist, err := f.st.RiderEnrolments(old.Rider)
	if err != nil {
		t.Fatal(err)
	}
	want.ToggleEnrolment(fare.HashDeny(fare.Card, "a"), 3, EnrolmentPeriods(hist[:len(hist)-1]))
	want.ToggleEnrolment(fare.HashDeny(fare.Card, "a"), 7, EnrolmentPeriods(hist))
	if err := c.loadDenyList(); err != nil || c.deny.enrolDigest != want || c.deny.enrolVersion != 7 {
		t.Fatalf("after a record an earlier build appended: %s at version %d, want %s at 7 (%v)", c.deny.enrolDigest, c.deny.enrolVersion, want, err)
	}
	if err := c.loadDenyList(); err != nil || c.deny.enrolDigest != want {
		t.Fatalf("again, from the shares reckoned: %s, want %s (%v)", c.deny.enrolDigest, want, err)
	}
	if at, err := f.st.EnrolmentVersion(); err != nil || at != 7 {
		t.Fatalf("version %d, %v", at, err)
	}
}

// TestEnrolmentOfAnotherRidersMedium: a request pairing a rider with a
// medium enrolled for another rider (a queued file made by hand) is
// refused: it would point the medium at the other rider and count it
// twice in the enrolments' head.
func TestEnrolmentOfAnotherRidersMedium(t *testing.T) {
	f := newPricedFixture(t, t.TempDir())
	at := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	e := Enrolment{Rider: f.rider("a"), Media: "card", Key: fare.DenyKey(fare.Card, "a"), ApprovedBy: "desk-1", Category: "concession", ValidFrom: at, ValidUntil: at.Add(48 * time.Hour)}
	if _, _, _, err := f.st.appendEnrolment(e, nil); err != nil {
		t.Fatal(err)
	}
	e.Rider = f.rider("x")
	if _, _, _, err := f.st.appendEnrolment(e, nil); !errors.Is(err, ErrInvalidEnrolment) || !strings.Contains(err.Error(), "is enrolled for rider") {
		t.Fatalf("another rider's medium: %v", err)
	}
	if v, err := f.st.EnrolmentVersion(); err != nil || v != 1 {
		t.Fatalf("version %d, %v", v, err)
	}
}

// TestGatePeriodsBound: a gate holds a rider's latest
// fare.MaxEnrolmentPeriods periods. An enrolment that would have it leave
// out one not ended when the enrolment is made is refused (a student
// enrolled term by term, 17 terms ahead, lost the term in force at the
// gate and in clearing's pricing: an outside review); once the oldest has
// ended the next is taken, the gate leaves the ended one out, and clearing
// still prices a late tap in it by every period.
func TestGatePeriodsBound(t *testing.T) {
	term := func(seq uint64, made time.Time, i int) Enrolment {
		from := decAt(0, 4).AddDate(0, 2*i, 0)
		return Enrolment{Seq: seq, Category: "student", ValidFrom: from, ValidUntil: from.AddDate(0, 1, 0), CreatedAt: made}
	}
	made := decAt(0, 0)
	var hist []Enrolment
	for i := range fare.MaxEnrolmentPeriods {
		hist = append(hist, term(uint64(i+1), made, i))
		if err := checkGatePeriods(hist); err != nil {
			t.Fatalf("term %d: %v", i+1, err)
		}
	}
	for _, tc := range []struct {
		name    string
		made    time.Time
		revoked bool
		refused bool
	}{
		{"the 17th, the first term not begun", made, false, true},
		{"the 17th, during the first term", decAt(10, 0), false, true},
		{"the 17th, the first term ended", decAt(0, 4).AddDate(0, 1, 0), false, false},
		{"a revocation", made, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := term(17, tc.made, fare.MaxEnrolmentPeriods)
			if tc.revoked {
				next = Enrolment{Seq: 17, Revoked: true, ValidFrom: decAt(40, 4), CreatedAt: tc.made}
			}
			h := append(slices.Clone(hist), next)
			err := checkGatePeriods(h)
			if (err != nil) != tc.refused || (err != nil && !errors.Is(err, ErrInvalidEnrolment)) {
				t.Fatalf("checkGatePeriods: %v, refused want %v", err, tc.refused)
			}
			if tc.refused || tc.revoked {
				return
			}
			gate, all := EnrolmentPeriods(h), allEnrolmentPeriods(h)
			if len(gate) != fare.MaxEnrolmentPeriods || len(all) != 17 || fare.CategoryAt(gate, decAt(1, 12)) != "" || fare.CategoryAt(all, decAt(1, 12)) != "student" {
				t.Fatalf("%d periods at the gate, %d in all; the first term: %q at the gate, %q priced", len(gate), len(all), fare.CategoryAt(gate, decAt(1, 12)), fare.CategoryAt(all, decAt(1, 12)))
			}
		})
	}
}
