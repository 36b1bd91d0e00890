package clearing

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing/fares"
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
//
// Every other transfer must be a fare's: a posting of the applied event it
// names, between that event's rider and operator, each posting once (an
// outside test planted a rider's payment to the acquirer, and a credit to
// a debtor from an account "acquirer2", and neither was found). Each
// rider's billing record must agree with what the rider owes for the fare
// days billed (the balance less what later days charged): in debt for
// exactly that, or clear when nothing is owed, unless a day of the rider's
// up to the last billed is still to bill (the collector's next round
// settles it). Each payment request's idempotency record names a payment
// that exists.
func (s *Store) AuditPayments() (PaymentsAudit, error) {
	var a PaymentsAudit
	err := s.db.View(func(txn *badger.Txn) error {
		fromAcquirer, err := auditTransfers(txn, &a)
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
		err = eachBilling(txn, func(b Billing) (bool, error) {
			if _, ok := seqs[b.Rider]; !ok && b.Seq > 0 {
				a.Mismatches = append(a.Mismatches, fmt.Sprintf("rider %s has no payments; its billing record counts %d", b.Rider, b.Seq))
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		if err := auditBillingStates(txn, &a); err != nil {
			return err
		}
		return auditPayIdem(txn, &a)
	})
	slices.Sort(a.Mismatches)
	return a, err
}

// isRiderAccount says whether acct is a rider's journal account
// (RiderAccount).
func isRiderAccount(acct string) bool { return strings.HasPrefix(acct, "passenger/") }

// eventPostings is what the audit has matched of an applied event: its
// rider and the postings no journal transfer has taken yet.
type eventPostings struct {
	rider    string
	apply    uint64
	postings []Posting
}

// auditTransfers reads the journal: it returns the transfers from the
// acquirer (payments, checked against the payment records by the
// caller) and checks every other transfer against the applied event it
// names.
func auditTransfers(txn *badger.Txn, a *PaymentsAudit) (map[fare.EventID]Transfer, error) {
	fromAcquirer := map[fare.EventID]Transfer{}
	events := map[fare.EventID]*eventPostings{}
	owners, err := riderOwners(txn)
	if err != nil {
		return nil, err
	}
	var failed error
	err = eachTransfer(txn, func(t *Transfer) {
		if failed != nil {
			return
		}
		switch {
		case t.Debit == AcquirerAccount:
			if _, dup := fromAcquirer[t.ID]; dup {
				a.Mismatches = append(a.Mismatches, fmt.Sprintf("journal transfers %d and another from the acquirer share id %s: a payment posted twice", t.Seq, t.ID))
			}
			fromAcquirer[t.ID] = *t
		case t.Credit == AcquirerAccount:
			a.Mismatches = append(a.Mismatches, fmt.Sprintf("journal transfer %d moves %d from %s to the acquirer: clearing posts nothing to the acquirer (no payment or fare does)", t.Seq, t.Amount, t.Debit))
		default:
			failed = auditFareTransfer(txn, t, events, owners, a)
		}
	})
	if err == nil {
		err = failed
	}
	if err != nil {
		return nil, err
	}
	for id, e := range events {
		for _, p := range e.postings {
			a.Mismatches = append(a.Mismatches, fmt.Sprintf("event %s posts %d to operator %s for %s; the journal has no transfer of it", id, p.Amount, p.Operator, e.rider))
		}
	}
	return fromAcquirer, nil
}

// riderOwners maps each medium clearing bills (riderMediumValue, stored
// with the rider's first day to bill) to its rider account.
func riderOwners(txn *badger.Txn) (map[string]string, error) {
	owners := map[string]string{}
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 500, Prefix: []byte{pRiderMedium}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		rider := string(it.Item().Key()[1:])
		if err := it.Item().Value(func(v []byte) error { owners[string(v)] = rider; return nil }); err != nil {
			return nil, fmt.Errorf("medium of rider %s: %w", rider, err)
		}
	}
	return owners, nil
}

// auditFareTransfer checks that t, which is no payment, is a posting of
// the applied event it names (events: what earlier transfers matched),
// between the event's rider and operator. The event's rider is the one
// whose medium is the event's (owners), where clearing bills it: the
// audit has no rider key to derive the account with. (It was the rider of
// the first transfer naming the event: a fare moved onto another
// account, with the balances to match, passed: an outside recheck.)
func auditFareTransfer(txn *badger.Txn, t *Transfer, events map[fare.EventID]*eventPostings, owners map[string]string, a *PaymentsAudit) error {
	// A fare moves money from the rider to the operator; a negative
	// posting (a later discount) the other way.
	var rider string
	var signed fare.Amount
	switch op := OperatorAccount(t.Operator); {
	case t.Operator != "" && t.Credit == op && isRiderAccount(t.Debit):
		rider, signed = t.Debit, t.Amount
	case t.Operator != "" && t.Debit == op && isRiderAccount(t.Credit):
		rider, signed = t.Credit, -t.Amount
	default:
		a.Mismatches = append(a.Mismatches, fmt.Sprintf("journal transfer %d moves %d from %s to %s: neither a fare's posting nor a payment", t.Seq, t.Amount, t.Debit, t.Credit))
		return nil
	}
	e, ok := events[t.ID]
	if !ok {
		item, err := txn.Get(eventKey(t.ID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			a.Mismatches = append(a.Mismatches, fmt.Sprintf("journal transfer %d moves %d from %s to %s for event %s, which clearing never applied", t.Seq, t.Amount, t.Debit, t.Credit, t.ID))
			return nil
		}
		if err != nil {
			return fmt.Errorf("event %s of journal transfer %d: %w", t.ID, t.Seq, err)
		}
		var rec EventRecord
		if err := item.Value(rec.UnmarshalBinary); err != nil {
			return fmt.Errorf("event %s of journal transfer %d: %w", t.ID, t.Seq, err)
		}
		e = &eventPostings{rider: rider, apply: rec.ApplyIndex}
		sig, err := fare.Decode(rec.Raw)
		if err != nil {
			return fmt.Errorf("event %s of journal transfer %d: stored signed bytes: %w", t.ID, t.Seq, err)
		}
		if owner, ok := owners[string(riderMediumValue(sig.Media, sig.MediaToken))]; ok {
			e.rider = owner
		}
		for _, p := range rec.PostingsOf(t.Operator) {
			if p.Amount != 0 { // journalled as no transfer
				e.postings = append(e.postings, p)
			}
		}
		events[t.ID] = e
	}
	i := slices.IndexFunc(e.postings, func(p Posting) bool { return p.Operator == t.Operator && p.Amount == signed })
	switch {
	case e.rider != rider:
		a.Mismatches = append(a.Mismatches, fmt.Sprintf("journal transfer %d moves %d from %s to %s for event %s, whose fare is %s's", t.Seq, t.Amount, t.Debit, t.Credit, t.ID, e.rider))
	case t.ApplyIndex != e.apply:
		a.Mismatches = append(a.Mismatches, fmt.Sprintf("journal transfer %d names apply index %d for event %s, applied at %d", t.Seq, t.ApplyIndex, t.ID, e.apply))
	case i < 0:
		a.Mismatches = append(a.Mismatches, fmt.Sprintf("journal transfer %d moves %d from %s to %s for event %s, which posts no such amount to %s (or it was journalled already)", t.Seq, t.Amount, t.Debit, t.Credit, t.ID, t.Operator))
	default:
		e.postings = slices.Delete(e.postings, i, i+1)
	}
	return nil
}

// auditBillingStates checks each rider's billing record against what the
// rider owes for the fare days billed.
func auditBillingStates(txn *badger.Txn, a *PaymentsAudit) error {
	// The earliest day of each rider still to bill: a rider with one up to
	// the last day billed may owe something else than the record says
	// until the next round bills it.
	toBill := map[string]fares.Date{}
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte{pOpenDay}})
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) < 6 {
			it.Close()
			return fmt.Errorf("open day key 0x%x: %w", k, errCorruptRecord)
		}
		d, rider := fares.Date(int32(binary.BigEndian.Uint32(k[1:5]))), string(k[5:])
		if was, ok := toBill[rider]; !ok || d < was {
			toBill[rider] = d
		}
	}
	it.Close()
	var bills []Billing
	if err := eachBilling(txn, func(b Billing) (bool, error) { bills = append(bills, b); return true, nil }); err != nil {
		return err
	}
	for _, b := range bills {
		if d, ok := toBill[b.Rider]; ok && d <= b.throughDate {
			continue
		}
		due, err := owed(txn, b.Rider, b.throughDate)
		if err != nil {
			return err
		}
		through := b.BilledThrough
		if through == "" {
			through = "(none)"
		}
		switch {
		case b.Status == BillingDebt && (due <= 0 || b.Debt != due):
			a.Mismatches = append(a.Mismatches, fmt.Sprintf("rider %s is in debt for %d; for the fare days billed (through %s) it owes %d", b.Rider, b.Debt, through, max(due, 0)))
		case b.Status == BillingClear && due > 0:
			a.Mismatches = append(a.Mismatches, fmt.Sprintf("rider %s is clear, yet owes %d for the fare days billed (through %s), none of them left to bill", b.Rider, due, through))
		case b.Status == BillingClear && b.Debt != 0:
			a.Mismatches = append(a.Mismatches, fmt.Sprintf("rider %s is clear with a debt of %d", b.Rider, b.Debt))
		case b.Status != BillingClear && b.Status != BillingDebt:
			a.Mismatches = append(a.Mismatches, fmt.Sprintf("rider %s has billing status %q", b.Rider, b.Status))
		}
	}
	return nil
}

// auditPayIdem checks that each payment request's idempotency record
// names a payment that exists (or says nothing was owed).
func auditPayIdem(txn *badger.Txn, a *PaymentsAudit) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pPayIdem}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		key := string(it.Item().Key()[1:])
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("payment idempotency record %q: %w", key, err)
		}
		who, seqb, ok := bytes.Cut(v, []byte{0})
		if !ok || len(seqb) != 8 {
			a.Mismatches = append(a.Mismatches, fmt.Sprintf("payment idempotency record %q is corrupt (%d bytes)", key, len(v)))
			continue
		}
		rider, seq := string(who), binary.BigEndian.Uint64(seqb)
		if seq == 0 {
			continue // nothing was owed
		}
		if _, err := txn.Get(paymentKey(rider, seq)); errors.Is(err, badger.ErrKeyNotFound) {
			a.Mismatches = append(a.Mismatches, fmt.Sprintf("payment idempotency record %q names payment %d of %s, which does not exist", key, seq, rider))
		} else if err != nil {
			return fmt.Errorf("payment idempotency record %q: %w", key, err)
		}
	}
	return nil
}
