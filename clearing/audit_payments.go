package clearing

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
)

// PaymentsAudit is the audit of riders' payments against the journal
// (Store.AuditPayments).
type PaymentsAudit struct {
	// Payments counts the payment records read (each acquirer answer
	// posted), Approved those the acquirer approved, Paid their sum.
	Payments int         `json:"payments"`
	Approved int         `json:"approved"`
	Paid     fare.Amount `json:"paid"`
	// Mismatches lists every disagreement between the payment records, the
	// riders' billing records and the journal.
	Mismatches []string `json:"mismatches,omitempty"`
}

// AuditPayments checks every rider's payment records against the journal:
// each approved payment is exactly one transfer from the acquirer's account
// to the rider's, of its amount and under its key's transfer id; a
// declined one is none; the journal holds no transfer from the acquirer
// that no approved payment records; and each rider's payments are
// numbered 1 to the billing record's count, none missing. (An outside payments review
// found the audit checked charges, not payments.)
func (s *Store) AuditPayments() (PaymentsAudit, error) {
	var a PaymentsAudit
	fromAcquirer := map[fare.EventID]Transfer{}
	err := s.db.View(func(txn *badger.Txn) error {
		err := eachTransfer(txn, func(t *Transfer) {
			if t.Debit == AcquirerAccount {
				if _, dup := fromAcquirer[t.ID]; dup {
					a.Mismatches = append(a.Mismatches, fmt.Sprintf("journal transfers %d and another from the acquirer share id %s: a payment posted twice", t.Seq, t.ID))
				}
				fromAcquirer[t.ID] = *t
			}
		})
		if err != nil {
			return err
		}
		seqs := map[string][]uint64{}
		pit := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 500, Prefix: []byte{pPayment}})
		defer pit.Close()
		for pit.Rewind(); pit.Valid(); pit.Next() {
			k := pit.Item().Key()
			if len(k) < 10 || k[len(k)-9] != 0 {
				return fmt.Errorf("payment key %q: %w", k, errCorruptRecord)
			}
			rider, seq := string(k[1:len(k)-9]), binary.BigEndian.Uint64(k[len(k)-8:])
			var p Payment
			if err := pit.Item().Value(func(v []byte) error { return json.Unmarshal(v, &p) }); err != nil {
				return fmt.Errorf("payment %d of %s: %w: %w", seq, rider, errCorruptRecord, err)
			}
			a.Payments++
			seqs[rider] = append(seqs[rider], seq)
			id := paymentTransferID(p.Key)
			t, posted := fromAcquirer[id]
			delete(fromAcquirer, id)
			switch {
			case !p.Approved && posted:
				a.Mismatches = append(a.Mismatches, fmt.Sprintf("payment %d of %s (key %s) was declined, yet journal transfer %d takes %d from the acquirer for it", seq, rider, p.Key, t.Seq, t.Amount))
			case !p.Approved:
			case !posted:
				a.Mismatches = append(a.Mismatches, fmt.Sprintf("payment %d of %s (key %s, %d approved) has no transfer from the acquirer in the journal", seq, rider, p.Key, p.Amount))
			case t.Credit != rider || t.Amount != p.Amount:
				a.Mismatches = append(a.Mismatches, fmt.Sprintf("payment %d of %s (key %s) approved %d; its journal transfer %d credits %s with %d", seq, rider, p.Key, p.Amount, t.Seq, t.Credit, t.Amount))
			}
			if p.Approved {
				a.Approved++
				a.Paid += p.Amount
			}
		}
		for _, t := range fromAcquirer {
			a.Mismatches = append(a.Mismatches, fmt.Sprintf("journal transfer %d takes %d from the acquirer for %s with no payment record", t.Seq, t.Amount, t.Credit))
		}
		for rider, ss := range seqs {
			b, err := getBilling(txn, rider)
			if err != nil {
				return err
			}
			slices.Sort(ss)
			if uint64(len(ss)) != b.Seq || ss[0] != 1 || ss[len(ss)-1] != b.Seq {
				a.Mismatches = append(a.Mismatches, fmt.Sprintf("rider %s has payments %v; its billing record counts %d", rider, ss, b.Seq))
			}
		}
		// A rider whose payment records are all gone (an outside recheck
		// deleted a declined rider's only one).
		return eachBilling(txn, func(b Billing) (bool, error) {
			if _, ok := seqs[b.Rider]; !ok && b.Seq > 0 {
				a.Mismatches = append(a.Mismatches, fmt.Sprintf("rider %s has no payments; its billing record counts %d", b.Rider, b.Seq))
			}
			return true, nil
		})
	})
	slices.Sort(a.Mismatches)
	return a, err
}
