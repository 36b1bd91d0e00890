package clearing

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
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
	// The acquirer's text in any script (three-byte Japanese, four-byte
	// emoji, bytes that are no UTF-8) beside a large debt fits in bytes
	// (an outside review: 55 Japanese characters made a reason the list
	// refused, and the rider was never listed).
	for _, debt := range []fare.Amount{470, 123456789012} {
		for _, decline := range []string{"", "51 insufficient funds", strings.Repeat("é", 500), strings.Repeat("x", 1000),
			strings.Repeat("残高不足", 14), strings.Repeat("💳", 60), "\xff\xfe" + strings.Repeat("\x80", 300)} {
			r := debtReason(Billing{Debt: debt, LastDecline: decline}, "EUR")
			if _, err := denyChangeOf(fare.Card, "card-1", r, groundDebt, true); err != nil || !utf8.ValidString(r) || !strings.Contains(r, fmt.Sprintf("%d (%s EUR)", debt, debt.Format("EUR"))) {
				t.Errorf("decline of %d bytes, debt %d: reason %q (%d bytes): %v", len(decline), debt, r, len(r), err)
			}
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

// billingFixture is a priced store whose riders' taps are applied, and a
// clearing around it that posts their payments by hand: each step of a
// bill (asked, answered, posted) in the order a test needs.
type billingFixture struct {
	*pricedFixture
	c   *Clearing
	now time.Time
}

// newBillingFixture applies taps (card, time) on bus-s01-g1 and returns
// the fixture ready to post payments.
func newBillingFixture(t *testing.T, taps ...struct {
	card string
	at   time.Time
}) *billingFixture {
	t.Helper()
	f := newPricedFixture(t, t.TempDir())
	t.Cleanup(func() { f.st.Close() })
	for _, tp := range taps {
		f.apply(t, f.tap(t, "bus-s01-g1", fare.Validate, tp.card, tp.at))
	}
	// The clearing takes the cursor over: no tap is applied after this.
	return &billingFixture{pricedFixture: f, c: &Clearing{store: f.st, log: auditLogger(), payments: make(chan *paymentPost, 8), cur: f.cur}, now: time.Now()}
}

// post posts p and fails the test on an error.
func (b *billingFixture) post(t *testing.T, p *paymentPost) Billing {
	t.Helper()
	p.at, p.currency, p.reply = b.now, "EUR", make(chan error, 1)
	b.c.postPayments(p)
	if err := <-p.reply; err != nil {
		t.Fatal(err)
	}
	return p.billed
}

// closeDays is a collector round billing the days before upTo: a clear
// rider's charge is answered by answer, a debtor's day only posted (its
// debt grows), as Clearing.bill does.
func (b *billingFixture) closeDays(t *testing.T, upTo fares.Date, answer func(ChargeRequest) ChargeResult) {
	t.Helper()
	b.st.noteBilledBefore(upTo)
	items, err := b.st.dueRiders(upTo, b.now, 256, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		req, bl, err := b.st.chargeRequest(&it, "EUR")
		if err != nil {
			t.Fatal(err)
		}
		p := &paymentPost{item: it}
		if req != nil && bl.Status != BillingDebt {
			p.req, p.res = *req, answer(*req)
		}
		b.post(t, p)
	}
}

// TestHeldChargeAfterTheDebtGrew: a debtor's charge is asked and its
// answer lost (held, to be asked again); the rider's next fare day closes
// meanwhile and joins the debt, leaving the index of days to bill; then
// the held charge is answered and posted. The rider's billing follows
// what they owe for every day billed: approved in full, the later day is
// still owed (in debt, listed, retried); approved in part, the rest of both
// days; declined, both days. (Approved in full, the rider was marked clear
// and unlisted with the later day owed and never billed; approved in part
// or declined, the debt was the held charge's days only: an outside test.)
func TestHeldChargeAfterTheDebtGrew(t *testing.T) {
	decline := func(ChargeRequest) ChargeResult {
		return ChargeResult{Decline: "51 insufficient funds", Reference: "d"}
	}
	for _, tc := range []struct {
		name   string
		answer func(ChargeRequest) ChargeResult
		// want: the debt after the post, from the two days' fares x and y
		want   func(x, y fare.Amount) fare.Amount
		reason string
		verb   string // of the deny list's reason
	}{
		{"approved in full", func(r ChargeRequest) ChargeResult {
			return ChargeResult{Approved: true, Amount: r.Amount, Reference: "a"}
		},
			func(x, y fare.Amount) fare.Amount { return y }, stillOwedAfter, ") owed ("},
		{"approved in part", func(r ChargeRequest) ChargeResult {
			return ChargeResult{Approved: true, Amount: r.Amount / 3, Reference: "p"}
		},
			func(x, y fare.Amount) fare.Amount { return x - x/3 + y }, "partially approved", ") owed ("},
		{"declined", decline, func(x, y fare.Amount) fare.Amount { return x + y }, "51 insufficient funds", ") declined ("},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBillingFixture(t, []struct {
				card string
				at   time.Time
			}{{"card-a", wednesday(10, 0)}, {"card-a", wednesday(34, 0)}}...)
			rider := b.rider("card-a")
			d := b.pricing.Book.Feed.FareDay(wednesday(10, 0))
			b.closeDays(t, d+1, decline) // the first day: declined, a debt
			first, err := b.st.Billing(rider)
			if err != nil || first.Status != BillingDebt {
				t.Fatalf("billing after the first day's decline: %+v, %v", first, err)
			}
			x := first.Debt
			// The desk asks for the debt again; the answer is lost.
			held := billItem{rider: rider, through: d, trigger: "api"}
			req, _, err := b.st.chargeRequest(&held, "EUR")
			if err != nil || req == nil || req.Amount != x || x <= 0 {
				t.Fatalf("the desk's charge: %+v, %v; want the debt, %d", req, err, x)
			}
			b.closeDays(t, d+2, nil) // the next day closes: the debt grows
			bl, err := b.st.Billing(rider)
			y := -b.balance(t, rider) - x
			if err != nil || bl.Status != BillingDebt || bl.Debt != x+y || y <= 0 {
				t.Fatalf("billing once the next day closed: %+v, %v; want a debt of %d + %d", bl, err, x, y)
			}
			got := b.post(t, &paymentPost{item: held, req: *req, res: tc.answer(*req)})
			if want := tc.want(x, y); got.Status != BillingDebt || got.Debt != want || !strings.HasPrefix(got.LastDecline, tc.reason) {
				t.Errorf("billing after the held charge's post: %+v; want in debt for %d (%s)", got, want, tc.reason)
			}
			if r := debtReason(got, "EUR"); !strings.Contains(r, tc.verb) {
				t.Errorf("deny list reason %q; want %q", r, tc.verb)
			}
			if owes := -b.balance(t, rider); owes != got.Debt {
				t.Errorf("the rider owes %d; the billing record says %d", owes, got.Debt)
			}
			if a, err := b.st.AuditPayments(); err != nil || len(a.Mismatches) > 0 {
				t.Errorf("payments audit: %+v, %v", a, err)
			}
		})
	}
}

// plantTransfer writes a journal transfer from debit to credit, its
// balances kept (the journal audit sees nothing wrong), as a forger with
// the store would.
func plantTransfer(t *testing.T, b *billingFixture, debit, credit string, amount fare.Amount, id fare.EventID) {
	t.Helper()
	err := b.st.db.Update(func(txn *badger.Txn) error {
		tr := Transfer{Seq: b.c.cur.nextTransfer, ID: id, Debit: debit, Credit: credit, Amount: amount, ApplyIndex: math.MaxUint64, At: b.now}
		b.c.cur.nextTransfer++
		tb, err := tr.MarshalBinary()
		if err != nil {
			return err
		}
		if err := txn.Set(keyU64(pTransfer, tr.Seq), tb); err != nil {
			return err
		}
		for acct, debits := range map[string]bool{debit: true, credit: false} {
			bal, err := getBalance(txn, acct)
			if err != nil {
				return err
			}
			if debits {
				bal.Debits += amount
			} else {
				bal.Credits += amount
			}
			if err := putBalance(txn, bal); err != nil {
				return err
			}
		}
		return setU64(txn, metaNextTransfer, b.c.cur.nextTransfer)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAuditPaymentsFindsPlantedEntries: riders travel and are billed (one
// pays, one is declined), and the audit is clean; then each entry an
// outside test planted, none from the acquirer's account and all missed,
// is named: a rider's transfer to the acquirer with no payment record, a
// credit to a debtor from another account, a credit from an operator for
// no applied event, a debtor's billing record whose debt is not what they
// owe, a payer marked in debt, and an idempotency record naming a payment
// that does not exist. The journal audit finds none of them (balances
// kept).
func TestAuditPaymentsFindsPlantedEntries(t *testing.T) {
	setBilling := func(t *testing.T, b *billingFixture, rider string, edit func(*Billing)) {
		t.Helper()
		err := b.st.db.Update(func(txn *badger.Txn) error {
			bl, err := getBilling(txn, rider)
			if err != nil {
				return err
			}
			edit(&bl)
			v, err := json.Marshal(bl)
			if err != nil {
				return err
			}
			return txn.Set(billingKey(rider), v)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, b *billingFixture, payer, debtor string)
		want  string
	}{
		{"a payer's transfer to the acquirer, no payment record", func(t *testing.T, b *billingFixture, payer, _ string) {
			plantTransfer(t, b, payer, AcquirerAccount, 180, fare.EventID{2})
		}, "to the acquirer: clearing posts nothing to the acquirer"},
		{"a debtor credited from acquirer2", func(t *testing.T, b *billingFixture, _, debtor string) {
			plantTransfer(t, b, "acquirer2", debtor, 180, fare.EventID{4})
		}, "from acquirer2 to " + "passenger/"},
		{"a debtor credited by an operator for no event", func(t *testing.T, b *billingFixture, _, debtor string) {
			plantTransfer(t, b, OperatorAccount("bus"), debtor, 180, fare.EventID{5})
		}, "neither a fare's posting nor a payment"},
		{"a debtor's debt not what they owe", func(t *testing.T, b *billingFixture, _, debtor string) {
			setBilling(t, b, debtor, func(bl *Billing) { bl.Debt = 1 })
		}, "is in debt for 1; for the fare days billed"},
		{"a payer marked in debt", func(t *testing.T, b *billingFixture, payer, _ string) {
			setBilling(t, b, payer, func(bl *Billing) { bl.Status, bl.Debt = BillingDebt, 180 })
		}, "is in debt for 180; for the fare days billed"},
		{"an idempotency record of a payment that does not exist", func(t *testing.T, b *billingFixture, payer, _ string) {
			if err := b.st.db.Update(func(txn *badger.Txn) error { return txn.Set(payIdemKey("desk/k"), payIdemValue(payer, 9)) }); err != nil {
				t.Fatal(err)
			}
		}, `"desk/k" names payment 9 of passenger/`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, payer, debtor := payerAndDebtor(t)
			if a, err := b.st.AuditPayments(); err != nil || len(a.Mismatches) > 0 || a.Payments != 2 || a.Approved != 1 {
				t.Fatalf("audit as billed: %+v, %v; want two payments, one approved, clean", a, err)
			}
			tc.plant(t, b, payer, debtor)
			a, err := b.st.AuditPayments()
			if err != nil || !slices.ContainsFunc(a.Mismatches, func(m string) bool { return strings.Contains(m, tc.want) }) {
				t.Errorf("audit: %q, %v; want a mismatch saying %q", a.Mismatches, err, tc.want)
			}
			if j, err := b.st.AuditJournal(); err != nil || j.Imbalance != 0 || len(j.Mismatches) > 0 {
				t.Errorf("journal audit: %+v, %v; want it clean (the balances were kept)", j, err)
			}
		})
	}
}

// payerAndDebtor is a billing fixture of two riders travelling on a
// Wednesday whose fare day has been billed: the payer's charge approved,
// the debtor's declined.
func payerAndDebtor(t *testing.T) (b *billingFixture, payer, debtor string) {
	t.Helper()
	b = newBillingFixture(t, []struct {
		card string
		at   time.Time
	}{{"card-payer", wednesday(10, 0)}, {"card-debtor", wednesday(10, 5)}}...)
	payer, debtor = b.rider("card-payer"), b.rider("card-debtor")
	d := b.pricing.Book.Feed.FareDay(wednesday(10, 0))
	b.closeDays(t, d+1, func(r ChargeRequest) ChargeResult {
		if r.Rider == debtor {
			return ChargeResult{Decline: "51 insufficient funds", Reference: "d"}
		}
		return ChargeResult{Approved: true, Amount: r.Amount, Reference: "a"}
	})
	return b, payer, debtor
}

// listingClearing is postingClearing with a deny list to write (no
// bucket: the store alone) and what listing a debtor needs.
func listingClearing(t *testing.T) (*Store, *Clearing, time.Time) {
	t.Helper()
	st, c, now := postingClearing(t)
	_, c.cfg.ConfirmKey, _ = ed25519.GenerateKey(nil)
	c.cfg.Registry = &Registry{Currency: "EUR"}
	c.cfg.Now = func() time.Time { return now }
	c.deny = newGateLists(c.log)
	c.debtLog = fare.NewTally(c.log, "debts")
	return st, c, now
}

// runApplier runs the applying goroutine's part of a payment's
// post (postPayments) for c until the test ends.
func runApplier(t *testing.T, c *Clearing) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case p := <-c.payments:
				c.postPayments(p)
			case <-stop:
				return
			}
		}
	}()
}

// TestReconcileDebtorsBesideBills: a rider billed while clearing's start
// reconciles the deny list with the riders' billing ends listed as the
// billing says (an outside review: a debtor who paid at the desk meanwhile
// was listed again for debt, a rider declined meanwhile taken off, both
// until the next start). Many billed riders keep the reconciliation
// running while the bill posts.
func TestReconcileDebtorsBesideBills(t *testing.T) {
	const rider = "passenger/card/0xffffffffffffffffffffffffffffffff"
	const tok = "debtor-token"
	for _, tc := range []struct {
		name     string
		before   func(now time.Time) Billing
		listed   bool // on the deny list for debt before
		trigger  string
		res      ChargeResult
		wantDebt bool
	}{
		{"a debtor pays", func(now time.Time) Billing {
			return Billing{Rider: rider, Status: BillingDebt, Debt: 360, Attempts: 1, Seq: 1, BilledThrough: "2026-12-01",
				FirstDeclined: now.Add(-time.Hour), NextRetry: now.Add(23 * time.Hour), LastDecline: "51"}
		}, true, "api", ChargeResult{Approved: true, Amount: 360, Reference: "ref"}, false},
		{"a rider is declined", func(time.Time) Billing {
			return Billing{Rider: rider, Status: BillingClear, Seq: 1, BilledThrough: "2026-11-30"}
		}, false, "day-close", ChargeResult{Decline: "51 insufficient funds", Reference: "ref"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, c, now := listingClearing(t)
			const others = 60000
			for lo := 0; lo < others; lo += 5000 {
				if err := st.db.Update(func(txn *badger.Txn) error {
					for i := lo; i < lo+5000; i++ {
						r := fmt.Sprintf("passenger/card/0x%032x", i)
						b, _ := json.Marshal(Billing{Rider: r, Status: BillingClear, Seq: 1, BilledThrough: "2026-12-01"})
						if err := txn.Set(billingKey(r), b); err != nil {
							return err
						}
						if err := txn.Set(riderMediumKey(r), riderMediumValue(fare.Card, fmt.Sprintf("tok-%d", i))); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			before := tc.before(now)
			raw, _ := json.Marshal(before)
			if err := st.db.Update(func(txn *badger.Txn) error {
				if err := putBalance(txn, Balance{Account: rider, Debits: 360}); err != nil {
					return err
				}
				if err := txn.Set(riderMediumKey(rider), riderMediumValue(fare.Card, tok)); err != nil {
					return err
				}
				return txn.Set(billingKey(rider), raw)
			}); err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if tc.listed {
				if err := c.denyDebt(ctx, fare.Card, tok, debtReason(before, "EUR"), true); err != nil {
					t.Fatal(err)
				}
			}
			runApplier(t, c)
			reconciled := make(chan bool, 1)
			go func() { reconciled <- c.reconcileDebtors(ctx) }()
			time.Sleep(300 * time.Millisecond) // read its riders, walking them
			select {
			case <-reconciled:
				t.Log("the reconciliation ended before the bill: the race was not run")
			default:
			}
			through := parseDateForTest(t, "2026-12-01")
			p := &paymentPost{item: billItem{rider: rider, through: through, trigger: tc.trigger},
				req: ChargeRequest{Key: paymentKeyOf(rider, through, 2), Rider: rider, Amount: 360, Currency: "EUR"},
				res: tc.res, at: now, currency: "EUR"}
			if posted, err := c.postBill(ctx, p); !posted || err != nil {
				t.Fatalf("bill: posted %v, %v", posted, err)
			}
			if ok := <-reconciled; !ok {
				t.Error("the reconciliation failed")
			}
			b, err := st.Billing(rider)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := st.denyRecordOf(fare.HashDeny(fare.Card, tok))
			if err != nil {
				t.Fatal(err)
			}
			listed := false
			if rec != nil {
				_, debt := rec.grounds()
				listed = debt != ""
			}
			if (b.Status == BillingDebt) != tc.wantDebt || listed != tc.wantDebt {
				t.Errorf("billing %s (debt %d), listed for debt %v (%+v): want in debt and listed %v", b.Status, b.Debt, listed, rec, tc.wantDebt)
			}
		})
	}
}

// TestFailedListingMarked: a decline posted whose listing failed marks the
// deny list for the collector's next round (debtListStale), whose
// reconciliation lists the rider once the listing can be made; the list
// was made good only at the next start.
func TestFailedListingMarked(t *testing.T) {
	const rider = "passenger/card/0x0000000000000000000000000000abcd"
	st, c, now := listingClearing(t)
	if err := st.db.Update(func(txn *badger.Txn) error { return putBalance(txn, Balance{Account: rider, Debits: 360}) }); err != nil {
		t.Fatal(err)
	}
	runApplier(t, c)
	// The rider's medium cannot be read: the listing fails after the post.
	through := parseDateForTest(t, "2026-12-01")
	p := &paymentPost{item: billItem{rider: rider, through: through, trigger: "day-close"},
		req: ChargeRequest{Key: paymentKeyOf(rider, through, 1), Rider: rider, Amount: 360, Currency: "EUR"},
		res: ChargeResult{Decline: "51 insufficient funds", Reference: "ref"}, at: now, currency: "EUR"}
	posted, err := c.postBill(t.Context(), p)
	if !posted || err == nil || !c.debtListStale.Load() {
		t.Fatalf("posted %v, %v, list marked stale %v: want posted, the listing's error, marked", posted, err, c.debtListStale.Load())
	}
	if err := st.db.Update(func(txn *badger.Txn) error {
		return txn.Set(riderMediumKey(rider), riderMediumValue(fare.Card, "tok"))
	}); err != nil {
		t.Fatal(err)
	}
	if !c.reconcileDebtors(t.Context()) {
		t.Fatal("the reconciliation failed")
	}
	rec, err := st.denyRecordOf(fare.HashDeny(fare.Card, "tok"))
	if err != nil || rec == nil {
		t.Fatalf("deny record %+v, %v: want the rider in debt listed", rec, err)
	}
}
