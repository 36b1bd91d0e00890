package clearing

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// TestRetriesKeepTheirDays: a rider in debt is retried on the schedule's
// days after the first decline. A retry whose day passed while none could
// be made (clearing down, the acquirer failing) is not made late: the next
// day ahead is planned, and after the last none (an outside test saw the
// missed retries of a fortnight made one a second, the last sixteen days
// after the first decline, against "at most 6 retries within 14 days").
func TestRetriesKeepTheirDays(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 4, 30, 0, 0, time.UTC)
	day := func(d float64) time.Time { return t0.Add(time.Duration(d * float64(24*time.Hour))) }
	s := DefaultRetrySchedule // 1, 2, 4, 7, 10, 14 days
	for _, tc := range []struct {
		name         string
		attempts     int // slots used, the first decline included
		at           float64
		missed       bool
		wantAttempts int
		wantNext     float64 // 0: none
	}{
		{"the first retry on its day", 1, 1.01, false, 2, 2},
		{"the first retry late, before the second's day", 1, 1.9, false, 2, 2},
		{"the first retry after the second's day", 1, 2.1, true, 3, 4},
		{"back after a fortnight", 1, 15, true, 7, 0},
		{"the last retry within its hour", 6, 14.02, false, 7, 0},
		{"the last retry a day late", 6, 15, true, 7, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := Billing{Status: BillingDebt, FirstDeclined: t0, Attempts: tc.attempts, NextRetry: t0.Add(s[tc.attempts-1])}
			if got := retryMissed(b, day(tc.at), s); got != tc.missed {
				t.Fatalf("missed %v, want %v", got, tc.missed)
			}
			if tc.missed {
				planRetry(&b, b.Attempts, day(tc.at), s)
			} else {
				// Made and declined again: noteDebt.
				noteDebt(&b, &paymentPost{item: billItem{trigger: "retry"}, at: day(tc.at)}, 100, "declined", s)
			}
			want := time.Time{}
			if tc.wantNext != 0 {
				want = day(tc.wantNext)
			}
			if b.Attempts != tc.wantAttempts || !b.NextRetry.Equal(want) {
				t.Errorf("attempts %d, next retry %v; want %d, %v", b.Attempts, b.NextRetry, tc.wantAttempts, want)
			}
		})
	}

	// Through the post path: a missed retry asks nothing, keeps the rider
	// in debt and plans the next day ahead.
	st, err := OpenStore(filepath.Join(t.TempDir(), "store"), auditLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := &Clearing{store: st, log: auditLogger(), payments: make(chan *paymentPost, 8), cfg: Config{RetrySchedule: s}}
	if c.cur, err = st.loadCursor(t0); err != nil {
		t.Fatal(err)
	}
	const rider = "passenger/card/0x0d"
	b := Billing{Rider: rider, Status: BillingDebt, FirstDeclined: t0, Attempts: 1, NextRetry: day(1), Debt: 360}
	raw, _ := json.Marshal(b)
	if err := st.db.Update(func(txn *badger.Txn) error {
		if err := putBalance(txn, Balance{Account: rider, Debits: 360}); err != nil { // the day it owes
			return err
		}
		return txn.Set(billingKey(rider), raw)
	}); err != nil {
		t.Fatal(err)
	}
	p := &paymentPost{item: billItem{rider: rider, trigger: "retry"}, at: day(3), missed: true, reply: make(chan error, 1)}
	c.postPayments(p)
	if err := <-p.reply; err != nil {
		t.Fatal(err)
	}
	got, err := st.Billing(rider)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != BillingDebt || got.Seq != 0 || got.Attempts != 3 || !got.NextRetry.Equal(day(4)) {
		t.Errorf("after a missed retry: %+v; want still in debt, nothing asked, the retry of day 4 next", got)
	}
}

// TestDebtCountsCharges: a debt's attempts are the retry schedule's steps
// used (a step passed while clearing was down included), its charges what
// clearing asked the acquirer for since the debt began (an outside test
// read 7 attempts as 7 charges of a card charged twice).
func TestDebtCountsCharges(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 4, 0, 0, 0, time.UTC)
	b := Billing{Status: BillingDebt, FirstDeclined: t0, Attempts: 7, Debt: 470}
	pays := []Payment{
		{Seq: 1, Through: "20261206", Trigger: "day-close", Approved: true, At: t0.Add(-48 * time.Hour)}, // before the debt
		{Seq: 2, Through: "20261207", Trigger: "day-close", At: t0},
		{Seq: 3, Through: "20261207", Trigger: "api", At: t0.Add(time.Hour)},
		{Seq: 4, Through: "20261207", Trigger: "retry", At: t0.Add(24 * time.Hour)},
	}
	d := debtOf(b, pays)
	if d.Attempts != 7 || d.Charges != 2 || d.Owed != 470 || !d.Denied {
		t.Errorf("debt %+v; want 7 steps used, 2 charges", d)
	}
	if got := attemptOf(pays, pays[3]); got != 3 {
		t.Errorf("the retry is attempt %d of its day, want 3", got)
	}
	if d := debtOf(Billing{Status: BillingClear}, pays); d != (RiderDebt{}) {
		t.Errorf("no debt: %+v", d)
	}
}
