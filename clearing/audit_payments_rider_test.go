package clearing

import (
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestAuditPaymentsFareOnAnotherRider: a rider's fare transfer moved onto
// another account, the balances kept to match (the journal audit sees
// nothing), is a payments mismatch: the event names its rider's medium.
// (The audit took the event's rider from its first transfer: an outside
// recheck moved a payer's fare onto an account with no billing record,
// and the audit passed.)
func TestAuditPaymentsFareOnAnotherRider(t *testing.T) {
	for _, tc := range []struct {
		name string
		onto func(b *billingFixture) string
	}{
		{"an account clearing never billed", func(*billingFixture) string { return "passenger/card/0xdeadbeef" }},
		{"another rider, in debt", func(b *billingFixture) string { return b.rider("card-debtor") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, payer, _ := payerAndDebtor(t)
			if a, err := b.st.AuditPayments(); err != nil || len(a.Mismatches) > 0 {
				t.Fatalf("audit as billed: %+v, %v", a, err)
			}
			other := tc.onto(b)
			var moved Transfer
			err := b.st.db.Update(func(txn *badger.Txn) error {
				found := false
				if err := eachTransfer(txn, func(tr *Transfer) {
					if tr.Debit == payer && !found {
						moved, found = *tr, true
					}
				}); err != nil {
					return err
				}
				if !found {
					t.Fatal("no fare transfer of the payer")
				}
				moved.Debit = other
				tb, err := moved.MarshalBinary()
				if err != nil {
					return err
				}
				if err := txn.Set(keyU64(pTransfer, moved.Seq), tb); err != nil {
					return err
				}
				pb, err := getBalance(txn, payer)
				if err != nil {
					return err
				}
				pb.Debits -= moved.Amount
				if err := putBalance(txn, pb); err != nil {
					return err
				}
				ob, err := getBalance(txn, other)
				if err != nil {
					return err
				}
				ob.Debits += moved.Amount
				return putBalance(txn, ob)
			})
			if err != nil {
				t.Fatal(err)
			}
			if j, err := b.st.AuditJournal(); err != nil || len(j.Mismatches) > 0 || j.Imbalance != 0 {
				t.Fatalf("journal audit: %+v, %v; want it clean (the balances match the transfers)", j, err)
			}
			a, err := b.st.AuditPayments()
			if err != nil {
				t.Fatal(err)
			}
			want := "whose fare is " + payer + "'s"
			if !slices.ContainsFunc(a.Mismatches, func(m string) bool { return strings.Contains(m, want) }) {
				t.Errorf("payments audit %q: want a mismatch %q", a.Mismatches, want)
			}
		})
	}
}
