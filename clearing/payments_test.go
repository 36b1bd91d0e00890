package clearing

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/fare"
)

// TestDebtReasonFitsTheDenyList: whatever an acquirer says of a decline,
// the deny-list reason of a rider in debt fits the list's bound, in valid
// UTF-8, with the money in minor units, decimal and currency.
func TestDebtReasonFitsTheDenyList(t *testing.T) {
	for _, decline := range []string{"", "51 insufficient funds", strings.Repeat("é", 500), strings.Repeat("x", 1000)} {
		r := debtReason(Billing{Debt: 470, LastDecline: decline}, "EUR")
		if _, err := denyChangeOf(fare.Card, "card-1", r, groundDebt, true); err != nil || !utf8.ValidString(r) || !strings.Contains(r, "470 (4.70 EUR)") {
			t.Errorf("decline of %d bytes: reason %q: %v", len(decline), r, err)
		}
	}
}

// TestDenyGrounds: a medium listed by hand and for debt stays listed until
// both grounds are off, each taken off on its own (paying a debt leaves a
// stolen card listed; deny remove leaves a debtor listed); only the first
// listing and the last unlisting change the gates' entry.
func TestDenyGrounds(t *testing.T) {
	st, err := OpenStore(filepath.Join(t.TempDir(), "store"), auditLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	type step struct {
		ground denyGround
		listed bool
		reason string
		// want: the gates' entry changed, the grounds after, the note's start
		gate    bool
		grounds string
		note    string
	}
	for name, steps := range map[string][]step{
		"stolen, then in debt, then paid": {
			{groundHand, true, "reported stolen", true, "listed", ""},
			{groundDebt, true, "debt: payment of 570 declined", false, "listed,debt", "listed already (by hand)"},
			{groundDebt, false, "", false, "listed", "taken off, but still listed (by hand)"},
			{groundHand, false, "", true, "", ""},
		},
		"in debt, then stolen, then removed by hand, then paid": {
			{groundDebt, true, "debt: payment of 570 declined", true, "debt", ""},
			{groundHand, true, "reported stolen", false, "listed,debt", "listed already (for debt)"},
			{groundHand, false, "", false, "debt", "taken off, but still listed (for debt): the rider is in debt"},
			{groundHand, false, "", false, "debt", "not listed on that ground"},
			{groundDebt, false, "", true, "", ""},
		},
		"twice on one ground, off twice": {
			{groundHand, true, "reported stolen", true, "listed", ""},
			{groundHand, true, "another reason", false, "listed", "listed on that ground already"},
			{groundHand, false, "", true, "", ""},
			{groundHand, false, "", false, "", "not listed on that ground"},
		},
		"a hand reason that reads like a debt's is a hand reason": {
			{groundHand, true, "debt: sent to collections by hand", true, "listed", ""},
			{groundHand, false, "", true, "", ""},
		},
		"a debt that grows keeps one entry": {
			{groundDebt, true, "debt: payment of 100 declined", true, "debt", ""},
			{groundDebt, true, "debt: payment of 300 declined", false, "debt", ""},
		},
	} {
		t.Run(name, func(t *testing.T) {
			token := "card-" + name
			for i, s := range steps {
				ch, err := denyChangeOf(fare.Card, token, s.reason, s.ground, s.listed)
				if err != nil {
					t.Fatal(err)
				}
				chs := []denyChange{ch}
				applied, _, err := st.writeDenyChanges(chs, now)
				if err != nil {
					t.Fatal(err)
				}
				_, entries, err := st.DenyEntries("", 0)
				if err != nil {
					t.Fatal(err)
				}
				got := ""
				for _, e := range entries {
					if e.Key == ch.key.Hex() {
						got = strings.Join(e.Grounds, ",")
						if s.ground == groundDebt && s.listed && !strings.Contains(e.Reason, s.reason) {
							t.Errorf("step %d: reason %q lacks the debt as it stands, %q", i+1, e.Reason, s.reason)
						}
					}
				}
				if (len(applied) == 1) != s.gate || got != s.grounds || !strings.HasPrefix(chs[0].note, s.note) || (s.note == "" && chs[0].note != "") {
					t.Errorf("step %d (%+v): gate change %v, grounds %q, note %q", i+1, s, len(applied) == 1, got, chs[0].note)
				}
			}
		})
	}
	// A record written before grounds were kept names a debt by its reason.
	old := denyRecord{Media: "card", Reason: "debt: payment of 470 (4.70 EUR) declined ()"}
	if hand, debt := old.grounds(); hand != "" || debt == "" {
		t.Errorf("an old debt record reads as hand %q, debt %q", hand, debt)
	}
}

// TestFareClockNeverBehindTheJournal: a clearing whose fare clock starts
// behind the latest payment its journal stamped (a kept run reopened
// twice, a host clock gone back) carries on from that payment; one ahead
// of it is left alone.
func TestFareClockNeverBehindTheJournal(t *testing.T) {
	st, err := OpenStore(filepath.Join(t.TempDir(), "store"), auditLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	latest := time.Date(2026, 12, 9, 4, 31, 0, 0, time.UTC)
	if err := st.db.Update(func(txn *badger.Txn) error { return setU64(txn, metaFareClockHigh, uint64(latest.UnixNano())) }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		clock time.Time
		want  time.Time
	}{
		{"behind the journal", time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), latest},
		{"ahead of it", latest.Add(time.Hour), latest.Add(time.Hour)},
	} {
		c := &Clearing{cfg: Config{FareClock: func() time.Time { return tc.clock }}, store: st, log: auditLogger()}
		if err := c.keepFareClockAhead(); err != nil {
			t.Fatal(err)
		}
		if got := c.cfg.FareClock(); !got.Equal(tc.want) {
			t.Errorf("%s: fare clock %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestPaymentsPostedTogether: the acquirer's answers waiting at the
// applying goroutine are posted in one transaction, with consecutive
// journal transfers and the acquirer account debited once for each; a
// group with a payment that cannot be posted (its rider's billing record
// is corrupt) is posted one payment at a time, so only that rider's bill
// fails, with an error naming no other rider.
func TestPaymentsPostedTogether(t *testing.T) {
	st, c, now := postingClearing(t)
	through := parseDateForTest(t, "2026-12-01")
	post := func(rider string, amount fare.Amount) *paymentPost {
		return &paymentPost{
			item: billItem{rider: rider, through: through, trigger: "day-close"},
			req:  ChargeRequest{Key: paymentKeyOf(rider, through, 1), Rider: rider, Amount: amount, Currency: "EUR"},
			res:  ChargeResult{Approved: true, Amount: amount, Reference: "ref-" + rider},
			at:   now, reply: make(chan error, 1),
		}
	}
	const bad = "passenger/card/0xbad"
	if err := st.db.Update(func(txn *badger.Txn) error { return txn.Set(billingKey(bad), []byte("{not json")) }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		riders []string
		fails  string
	}{
		{"a group", []string{"passenger/card/0x01", "passenger/card/0x02", "passenger/card/0x03"}, ""},
		{"a group with one that cannot be posted", []string{"passenger/card/0x11", bad, "passenger/card/0x13"}, bad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := c.cur.nextTransfer
			acq0, err := st.Balance(AcquirerAccount)
			if err != nil {
				t.Fatal(err)
			}
			ps := make([]*paymentPost, len(tc.riders))
			var want fare.Amount
			for i, r := range tc.riders {
				ps[i] = post(r, fare.Amount(100*(i+1)))
				if r != tc.fails {
					want += ps[i].res.Amount
				}
			}
			for _, p := range ps[1:] {
				c.payments <- p // waiting when the first arrives
			}
			c.postPayments(ps[0])
			posted := uint64(0)
			for i, p := range ps {
				err := <-p.reply
				if r := tc.riders[i]; r == tc.fails {
					if err == nil || strings.Contains(err.Error(), tc.riders[0]) || strings.Contains(err.Error(), tc.riders[2]) {
						t.Fatalf("rider %s: %v, want an error of its own", r, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("rider %s: %v", tc.riders[i], err)
				}
				posted++
				pays, err := st.Payments(tc.riders[i])
				if err != nil || len(pays) != 1 || pays[0].Amount != p.res.Amount || !pays[0].Approved || p.billed.Status != BillingClear {
					t.Fatalf("rider %s: payments %+v (%v), billing %+v", tc.riders[i], pays, err, p.billed)
				}
			}
			acq, err := st.Balance(AcquirerAccount)
			if err != nil {
				t.Fatal(err)
			}
			if c.cur.nextTransfer != before+posted || acq.Debits-acq0.Debits != want {
				t.Fatalf("transfers %d to %d for %d payments, acquirer debited %d, want %d", before, c.cur.nextTransfer, posted, acq.Debits-acq0.Debits, want)
			}
			if pays, err := st.Payments(bad); err != nil || len(pays) != 0 {
				t.Fatalf("the corrupt rider has payments %+v (%v)", pays, err)
			}
		})
	}
}

// postingClearing is a store and a clearing around it that posts
// payments (postPayments), with its time.
func postingClearing(t *testing.T) (*Store, *Clearing, time.Time) {
	t.Helper()
	st, err := OpenStore(filepath.Join(t.TempDir(), "store"), auditLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	c := &Clearing{store: st, log: auditLogger(), payments: make(chan *paymentPost, 8)}
	if c.cur, err = st.loadCursor(now); err != nil {
		t.Fatal(err)
	}
	return st, c, now
}

func parseDateForTest(t *testing.T, s string) fares.Date {
	t.Helper()
	d, err := parseFareDate(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestIntentsHeldTogether: bills running side by side hold their charge
// intents in shared synced transactions, each bill getting its own; a bill
// asked again for the same payment gets the intent held first (its key,
// amount and days), not the one it brings.
func TestIntentsHeldTogether(t *testing.T) {
	st, err := OpenStore(filepath.Join(t.TempDir(), "store"), auditLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const riders = 200
	day := fares.Date(20425)
	hold := func(i int, amount fare.Amount, through fares.Date) (billItem, ChargeRequest, error) {
		it := billItem{rider: fmt.Sprintf("card/%032x", i), through: through,
			open: []openDayRef{{key: openDayKeyOf(day, i)}, {key: openDayKeyOf(day+1, i)}}}
		req := ChargeRequest{Key: fmt.Sprintf("key-%d-%d", i, through), Amount: amount}
		err := st.holdIntent(&it, &req, 1)
		return it, req, err
	}
	var wg sync.WaitGroup
	errs := make([]error, riders)
	// The write lock held while the bills queue: on a disk fast enough
	// they might otherwise each find it free.
	st.intentWrite.Lock()
	for i := range riders {
		wg.Go(func() { _, _, errs[i] = hold(i, fare.Amount(100+i), day) })
	}
	for st.intents.waitingNow() < riders {
		time.Sleep(time.Millisecond)
	}
	st.intentWrite.Unlock()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rider %d: %v", i, err)
		}
	}
	if g := &st.intents; g.waitingNow() != 0 || g.groups.Load() >= riders {
		t.Fatalf("%d intents still waiting, %d groups written for %d riders: want none waiting, fewer groups than riders", g.waitingNow(), g.groups.Load(), riders)
	}
	t.Logf("%d intents held in %d transactions", riders, st.intents.groups.Load())
	// Asked again after the next day closed: the first intent stands.
	for i := range riders {
		it, req, err := hold(i, fare.Amount(999), day+1)
		if err != nil || req.Amount != fare.Amount(100+i) || req.Key != fmt.Sprintf("key-%d-%d", i, day) || it.through != day || len(it.open) != 1 {
			t.Fatalf("rider %d asked again: %+v %+v %v; want the intent held first (amount %d, day %d, one index key)", i, req, it, err, 100+i, day)
		}
	}
}

// openDayKeyOf is an index key naming fare day d (its layout's first five
// bytes: prefix and day), unique per i.
func openDayKeyOf(d fares.Date, i int) []byte {
	k := []byte{'x', 0, 0, 0, 0}
	binary.BigEndian.PutUint32(k[1:5], uint32(int32(d)))
	return binary.BigEndian.AppendUint32(k, uint32(i))
}

// TestAuditPayments: the audit finds every payment of the journal in the
// riders' payment records and each approved record in the journal, of the
// same amount; a record edited, or one the journal lacks, is named.
func TestAuditPayments(t *testing.T) {
	st, c, now := postingClearing(t)
	through := parseDateForTest(t, "2026-12-01")
	for i, approved := range []bool{true, true, false} {
		rider := fmt.Sprintf("passenger/card/0x%02d", i)
		amount := fare.Amount(100 * (i + 1))
		p := &paymentPost{
			item:  billItem{rider: rider, through: through, trigger: "day-close"},
			req:   ChargeRequest{Key: paymentKeyOf(rider, through, 1), Rider: rider, Amount: amount, Currency: "EUR"},
			res:   ChargeResult{Approved: approved, Amount: amount, Reference: "ref"},
			at:    now,
			reply: make(chan error, 1),
		}
		if !approved {
			p.res = ChargeResult{Decline: "51 insufficient funds"}
		}
		c.postPayments(p)
		if err := <-p.reply; err != nil {
			t.Fatal(err)
		}
	}
	a, err := st.AuditPayments()
	if err != nil || a.Payments != 3 || a.Approved != 2 || a.Paid != 300 || len(a.Mismatches) != 0 {
		t.Fatalf("audit of the payments as posted: %+v, %v; want 3 payments, 2 approved, 3.00 paid, clean", a, err)
	}
	edit := func(rider string, seq uint64, change func(*Payment)) {
		t.Helper()
		err := st.db.Update(func(txn *badger.Txn) error {
			var p Payment
			if item, err := txn.Get(paymentKey(rider, seq)); err == nil {
				if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &p) }); err != nil {
					return err
				}
			}
			change(&p)
			b, err := json.Marshal(p)
			if err != nil {
				return err
			}
			return txn.Set(paymentKey(rider, seq), b)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		edit func()
		want string
	}{
		{"an approved amount edited", func() { edit("passenger/card/0x01", 1, func(p *Payment) { p.Amount = 150 }) },
			"approved 150; its journal transfer"},
		{"a decline turned into an approval", func() { edit("passenger/card/0x02", 1, func(p *Payment) { p.Approved, p.Amount = true, 300 }) },
			"has no transfer from the acquirer in the journal"},
		{"an approval turned into a decline", func() { edit("passenger/card/0x00", 1, func(p *Payment) { p.Approved = false }) },
			"was declined, yet journal transfer"},
		{"a declined rider's only payment deleted", func() {
			if err := st.db.Update(func(txn *badger.Txn) error { return txn.Delete(paymentKey("passenger/card/0x02", 1)) }); err != nil {
				t.Fatal(err)
			}
		}, "rider passenger/card/0x02 has no payments; its billing record counts 1"},
		{"a payment the billing record does not count", func() {
			edit("passenger/card/0x00", 2, func(p *Payment) { p.Seq, p.Key = 2, "0xabc" })
		}, "has payments [1 2]; its billing record counts 1"},
	} {
		tc.edit()
		a, err := st.AuditPayments()
		if err != nil || !slices.ContainsFunc(a.Mismatches, func(m string) bool { return strings.Contains(m, tc.want) }) {
			t.Errorf("%s: %+v, %v; want a mismatch saying %q", tc.name, a.Mismatches, err, tc.want)
		}
	}
}
