package clearing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/journeys"
	"github.com/faregate/faregate/fare"
)

// Post-paid accounts. Riders travel first and pay after their fare day is
// over (the account-based model of TfL contactless or Visa MTT):
//
//  1. Each rider day live pricing creates joins an index of days to bill.
//  2. Once a fare day has ended (the feed's cut-over) and CloseAfter more
//     has passed on the fare clock, the collector asks the Acquirer for
//     what the rider owes for the days up to it: the rider account's debt
//     less what later, still open, days were charged. Late taps of a billed
//     day only change what the next collection asks for.
//  3. An approval posts a payment to the journal (the acquirer's account
//     to the rider's); a decline puts the rider in debt and their medium
//     on the deny list, so every gate refuses it from its next copy.
//  4. A rider in debt is retried by RetrySchedule (at most 6 retries within
//     14 days by default, as Visa allows), or pays through the API (POST
//     /v1/riders/{rider}/payments); a payment that clears the debt takes
//     the medium off the deny list.
//
// Every acquirer call carries an idempotency key (rider, billed fare day,
// attempt): a crash after the acquirer answered asks again with the same
// key and gets the same answer, so a rider is never charged twice. What
// the collector learns is written by the applying goroutine, the journal's
// only writer, in one synced transaction.
//
// Store keys (beside those in store.go):
//
//	o<fare day u32><rider>   a rider day not billed yet (empty value)
//	r<rider>                 the rider's medium: kind u8 | token
//	y<rider>                 the rider's billing state (JSON, Billing)
//	Y<rider>\x00<seq u64>    the rider's payment attempts (JSON, Payment), appended
//	K<rider>                 a charge asked for and not posted yet (JSON, chargeIntent)
const (
	pOpenDay      = 'o'
	pRiderMedium  = 'r'
	pBilling      = 'y'
	pPayment      = 'Y'
	pChargeIntent = 'K'
)

// Acquirer charges riders' payment media: the small interface a card
// acquirer or payment service provider sits behind. No real payment
// service is reachable from Faregate's test machines; the simulator brings
// one with a configurable decline rate (simulator.Acquirer).
type Acquirer interface {
	// Charge asks for a payment. The same Key must never be charged
	// twice: asked again, the acquirer answers as it did the first time.
	// An error means no answer (try again later), not a decline: the
	// charge stays held and is asked again with the same key, and the
	// rider's later days wait behind it, so a refusal that will not change
	// (a closed account, a token the acquirer does not know) must be
	// answered as a decline. Keys must be remembered for as long as
	// clearing may take to ask again (its downtime and more): an adapter
	// over a provider that forgets keys after a day keeps its own record
	// of the keys it charged. Charge must be safe for concurrent use:
	// clearing bills riders side by side (never two charges of one rider
	// at once).
	Charge(ctx context.Context, req ChargeRequest) (ChargeResult, error)
}

// ChargeRequest is one payment clearing asks an acquirer for.
type ChargeRequest struct {
	Key      string // idempotency key
	Rider    string // pseudonymous rider account
	Media    fare.MediaKind
	Token    string // the medium's token (a card's network token)
	Amount   fare.Amount
	Currency string
}

// ChargeResult is an acquirer's answer.
type ChargeResult struct {
	Approved bool
	// Amount is what was charged when approved: the requested amount, or
	// less (a partial authorisation, the rest a debt). An approval of
	// nothing is not posted: it is recorded as refused and logged for the
	// operator. An approval of more than was asked posts what was asked
	// and records the excess as overcharged (Payment.Overcharged), for the
	// acquirer to refund.
	Amount fare.Amount
	// Reference is the acquirer's id of the payment or decline.
	Reference string
	// Decline is the reason of a decline (e.g. ISO 8583 "51 insufficient
	// funds").
	Decline string
}

// DefaultRetrySchedule is when a rider in debt is charged again, after the
// first decline: six retries within 14 days.
var DefaultRetrySchedule = []time.Duration{24 * time.Hour, 48 * time.Hour, 96 * time.Hour, 7 * 24 * time.Hour, 10 * 24 * time.Hour, 14 * 24 * time.Hour}

// AcquirerAccount is the journal account payments come from: what riders
// paid through the acquirer (it goes negative as they pay).
const AcquirerAccount = "acquirer"

// Billing statuses.
const (
	BillingClear = "clear" // nothing owed beyond open days
	BillingDebt  = "debt"  // a payment was declined: on the deny list
)

// Billing is a rider's billing state.
type Billing struct {
	Rider  string `json:"rider"`
	Status string `json:"status"`
	// BilledThrough is the last fare day billed.
	BilledThrough string `json:"billed_through,omitempty"`
	// Debt is what the rider owes for the fare days billed while in debt
	// (minor units): the balance less what later days charged.
	Debt fare.Amount `json:"debt"`
	// Attempts counts clearing's own charges since the debt began (the
	// first decline is attempt 1): each uses up a step of the retry
	// schedule. Declined payments asked for through the API do not count.
	Attempts      int       `json:"attempts"`
	FirstDeclined time.Time `json:"first_declined,omitzero"`
	NextRetry     time.Time `json:"next_retry,omitzero"`
	LastDecline   string    `json:"last_decline,omitempty"`
	// Seq is the number of payment records (Y keys) the rider has.
	Seq uint64 `json:"seq"`
	// throughDate is BilledThrough as a fare day.
	throughDate fares.Date
}

// Payment is one charge clearing asked for, and its answer.
type Payment struct {
	Seq       uint64      `json:"seq"`
	Key       string      `json:"key"`
	Through   string      `json:"through"` // last fare day it pays for
	Amount    fare.Amount `json:"amount"`
	Approved  bool        `json:"approved"`
	Reference string      `json:"reference,omitempty"`
	Decline   string      `json:"decline,omitempty"`
	// Trigger says why it was asked for: "day-close", "retry" or "api";
	// By, for "api", names the API token (the desk) that asked for it.
	Trigger string    `json:"trigger"`
	By      string    `json:"by,omitempty"`
	At      time.Time `json:"at"`
	// Overcharged is what the acquirer approved beyond Amount, which was
	// asked and is what clearing posts: the acquirer's to refund.
	Overcharged fare.Amount `json:"overcharged,omitempty"`
}

func openDayKey(d fares.Date, rider string) []byte {
	k := make([]byte, 0, 5+len(rider))
	k = append(k, pOpenDay)
	k = binary.BigEndian.AppendUint32(k, uint32(d))
	return append(k, rider...)
}

func riderMediumKey(rider string) []byte { return keyStr(pRiderMedium, rider) }

func riderMediumValue(m fare.MediaKind, token string) []byte {
	return append([]byte{byte(m)}, token...)
}

func billingKey(rider string) []byte { return keyStr(pBilling, rider) }

func paymentKey(rider string, seq uint64) []byte {
	k := make([]byte, 0, 10+len(rider))
	k = append(k, pPayment)
	k = append(k, rider...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func getBilling(txn *badger.Txn, rider string) (Billing, error) {
	b := Billing{Rider: rider, Status: BillingClear}
	item, err := txn.Get(billingKey(rider))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return b, nil
	}
	if err != nil {
		return b, fmt.Errorf("billing of %s: %w", rider, err)
	}
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &b) }); err != nil {
		return b, fmt.Errorf("billing of %s: %w", rider, err)
	}
	if b.BilledThrough != "" {
		d, err := parseFareDate(b.BilledThrough)
		if err != nil {
			return b, fmt.Errorf("billing of %s: %w", rider, err)
		}
		b.throughDate = d
	}
	return b, nil
}

// eachBilling calls fn with every rider's billing state until it returns
// false or an error.
func eachBilling(txn *badger.Txn, fn func(Billing) (bool, error)) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pBilling}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var b Billing
		if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &b) }); err != nil {
			return fmt.Errorf("billing %q: %w", it.Item().Key()[1:], err)
		}
		if b.BilledThrough != "" {
			d, err := parseFareDate(b.BilledThrough)
			if err != nil {
				return fmt.Errorf("billing of %s: %w", b.Rider, err)
			}
			b.throughDate = d
		}
		more, err := fn(b)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

func getRiderMedium(txn *badger.Txn, rider string) (fare.MediaKind, string, error) {
	item, err := txn.Get(riderMediumKey(rider))
	if err != nil {
		return 0, "", fmt.Errorf("medium of rider %s: %w", rider, err)
	}
	var m fare.MediaKind
	var tok string
	err = item.Value(func(v []byte) error {
		if len(v) < 2 {
			return fmt.Errorf("medium of rider %s: %w", rider, errCorruptRecord)
		}
		m, tok = fare.MediaKind(v[0]), string(v[1:])
		return nil
	})
	return m, tok, err
}

// owed is what the rider owes for fare days up to through: the rider
// account's debt less what later days (not billed yet) were charged.
func owed(txn *badger.Txn, rider string, through fares.Date) (fare.Amount, error) {
	b, err := getBalance(txn, rider)
	if err != nil {
		return 0, fmt.Errorf("balance of %s: %w", rider, err)
	}
	due := -b.Net()
	prefix := []byte(riderKey(pRiderDay, rider, 0))
	prefix = prefix[:len(prefix)-4]
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
	defer it.Close()
	for it.Seek([]byte(riderKey(pRiderDay, rider, through+1))); it.Valid(); it.Next() {
		var charged int64
		if err := it.Item().Value(func(v []byte) error {
			var err error
			charged, err = dayCharged(v)
			return err
		}); err != nil {
			return 0, fmt.Errorf("rider %s day: %w", rider, err)
		}
		due -= fare.Amount(charged)
	}
	return due, nil
}

// billItem is one rider the collector bills now.
type billItem struct {
	rider   string
	through fares.Date
	open    []openDayRef // index keys billed by it
	trigger string
	// due is what the rider owed through `through` when the bill was
	// asked for (chargeRequest; a held intent's amount): the post keeps
	// the open keys if the days it covers owe anything else by then.
	due fare.Amount
	// idem is the idempotency key of the API request that asked for the
	// bill, recorded with its payment (PayDebtOnce); by the API token that
	// asked for it ("" for clearing's own bills).
	idem []byte
	by   string
	// resume: the bill asks again for a charge intent a crash or an
	// error left held (resumeIntents), whatever the rider's state.
	resume bool
}

// openDayRef is a key of the index of days to bill as the collector read
// it: the post removes it only if no later write set it again (a late tap
// that changed the day while its bill was out: billed next round).
type openDayRef struct {
	key     []byte
	version uint64
}

// date is the fare day the key names.
func (r openDayRef) date() fares.Date { return fares.Date(int32(binary.BigEndian.Uint32(r.key[1:5]))) }

// chargeIntent is a charge clearing is about to ask of the acquirer, kept
// (synced) before it asks and removed with the answer's post: until then
// every attempt asks exactly this again (same key, amount and days), so an
// answer lost to a crash or a stop between the acquirer and the post is
// asked for again and never charged twice, however many of the rider's
// days close meanwhile (they would change the key).
type chargeIntent struct {
	Seq     uint64      `json:"seq"`
	Key     string      `json:"key"`
	Through int32       `json:"through"`
	Amount  fare.Amount `json:"amount"`
	// Trigger and Idem are the bill's (billItem): a charge asked again
	// after a crash is recorded as the bill that asked it first, under
	// the API request's idempotency key if it had one.
	Trigger string `json:"trigger,omitempty"`
	Idem    []byte `json:"idem,omitempty"`
	By      string `json:"by,omitempty"`
}

func chargeIntentKey(rider string) []byte { return keyStr(pChargeIntent, rider) }

// holdIntent makes req the charge the rider's open intent asks for (its
// key, amount and last day, it.open cut to those days) when one for
// payment seq is held, or else holds req as the intent, synced, before it
// is asked for. Intents of bills running side by side are written
// together (groupCommit): one synced transaction per rider made a day's
// close three times slower.
func (s *Store) holdIntent(it *billItem, req *ChargeRequest, seq uint64) error {
	return s.intents.add("charge intent", intentHold{it, req, seq}, &s.intentWrite, maxIntentGroup, s.writeIntents)
}

// intentHold is one bill's intent; the writer updates it and req in place
// when an intent was held already.
type intentHold struct {
	it  *billItem
	req *ChargeRequest
	seq uint64
}

// maxIntentGroup bounds the intents one transaction writes.
const maxIntentGroup = 256

// writeIntents holds hs's intents in one synced transaction. Intents of
// one rider never come together: a rider's bills run one at a time
// (billRiders). The in-place updates are applied once the transaction
// commits: a group that fails is written again one by one.
func (s *Store) writeIntents(hs []intentHold) error {
	staged := make([]intentHold, len(hs))
	err := s.db.Update(func(txn *badger.Txn) error {
		for i, h := range hs {
			it, req := *h.it, *h.req
			it.open = slices.Clone(h.it.open)
			staged[i] = intentHold{&it, &req, h.seq}
			if err := holdIntentTxn(txn, staged[i].it, staged[i].req, h.seq); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		for i, h := range hs {
			*h.it, *h.req = *staged[i].it, *staged[i].req
		}
	}
	return err
}

// holdIntentTxn is holdIntent for one rider inside txn.
func holdIntentTxn(txn *badger.Txn, it *billItem, req *ChargeRequest, seq uint64) error {
	k := chargeIntentKey(it.rider)
	item, err := txn.Get(k)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("charge intent of %s: %w", it.rider, err)
	default:
		var in chargeIntent
		if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &in) }); err != nil {
			return fmt.Errorf("charge intent of %s: %w: %w", it.rider, errCorruptRecord, err)
		}
		if in.Seq == seq {
			req.Key, req.Amount, it.through, it.due = in.Key, in.Amount, fares.Date(in.Through), in.Amount
			it.open = slices.DeleteFunc(it.open, func(r openDayRef) bool { return r.date() > it.through })
			if in.Trigger != "" {
				// Who asked follows what asked: a desk resuming the
				// collector's charge is not named as asking for it.
				it.trigger, it.by = in.Trigger, in.By
			}
			if len(in.Idem) > 0 {
				it.idem = in.Idem
			}
			return nil
		}
	}
	b, err := json.Marshal(chargeIntent{Seq: seq, Key: req.Key, Through: int32(it.through), Amount: req.Amount, Trigger: it.trigger, Idem: it.idem, By: it.by})
	if err != nil {
		return err
	}
	return txn.Set(k, b)
}

// noteDebt puts b in debt for debt after p's charge was declined (or
// approved in part, or in full with more owed: followOwed), and counts
// the attempt against the retry schedule.
func noteDebt(b *Billing, p *paymentPost, debt fare.Amount, why string, schedule []time.Duration) {
	if b.Status != BillingDebt {
		b.Status, b.FirstDeclined, b.Attempts = BillingDebt, p.at.UTC(), 0
	}
	b.Debt, b.LastDecline = debt, why
	// Only clearing's own attempts use up the retry schedule: a payment
	// the rider or a desk asked for that is declined leaves the next
	// automatic retry where it was (six pressed in a second used to end
	// the retries for good).
	if p.item.trigger != "api" || b.Attempts == 0 {
		b.Attempts++
		planRetry(b, b.Attempts-1, p.at, schedule) // noted once committed (postPayments)
	}
}

// planRetry sets b's next retry: the first slot of schedule from i on that
// is still ahead of at, and none once the schedule is spent. Slots that
// passed while no retry could be made (clearing down, the acquirer
// failing) are spent too: retries keep their days after the first
// decline, never made late one after another (an outside test saw five
// charges of one card in five seconds, sixteen days after its first
// decline). Attempts counts the slots used, the first decline included.
func planRetry(b *Billing, i int, at time.Time, schedule []time.Duration) {
	for i < len(schedule) && !b.FirstDeclined.Add(schedule[i]).After(at) {
		i++
	}
	b.Attempts, b.NextRetry = i+1, time.Time{}
	if i < len(schedule) {
		b.NextRetry = b.FirstDeclined.Add(schedule[i])
	}
}

// lastRetryGrace is how late the schedule's last retry may still be made.
const lastRetryGrace = time.Hour

// retryMissed reports whether the retry b has due at at was missed: the
// next slot of schedule has come too (or, for the last, its grace is
// over). A missed retry is not made: the next slot ahead is planned.
func retryMissed(b Billing, at time.Time, schedule []time.Duration) bool {
	if b.Status != BillingDebt || b.NextRetry.IsZero() {
		return false
	}
	if i := b.Attempts; i < len(schedule) {
		return !at.Before(b.FirstDeclined.Add(schedule[i]))
	}
	return at.After(b.NextRetry.Add(lastRetryGrace))
}

// paymentPost is what one acquirer answer writes: the payment record, the
// payment transfer when approved, the rider's billing state, and the
// billed days off the index.
type paymentPost struct {
	item     billItem
	req      ChargeRequest
	res      ChargeResult
	over     fare.Amount // approved beyond what was asked (Payment.Overcharged)
	at       time.Time
	currency string // the registry's: money in what the post writes
	reply    chan error
	billed   Billing     // the state after the post, for the deny list
	was      string      // the status before
	wasDebt  fare.Amount // the debt before
	// missed says the retry was due long ago (retryMissed): not made, the
	// next slot ahead planned.
	missed bool
}

// dueRiders reads up to limit riders with days to bill before date upTo,
// and riders in debt whose retry is due at now. The index is read from
// where the last call stopped, wrapping to its start, so every rider due
// is read within a bounded number of calls whatever riders sit ahead of
// it. (It was read from the start each time: 1,500 riders whose issuers
// hung, back from their timeouts, filled every chunk, and a healthy rider
// after them was never billed: an outside recheck.) A rider read after
// the cursor may leave an earlier day of its own before it: that day is
// billed like a late one, with the days already billed.
func (s *Store) dueRiders(upTo fares.Date, now time.Time, limit int, skip func(rider string) bool) ([]billItem, error) {
	s.dueMu.Lock()
	defer s.dueMu.Unlock()
	var out []billItem
	skipped := map[string]bool{}
	skips := func(rider string) bool {
		if skip == nil {
			return false
		}
		v, ok := skipped[rider]
		if !ok {
			v = skip(rider)
			skipped[rider] = v
		}
		return v
	}
	// Read before the view: a decline posted since (noteRetry follows its
	// commit) changes it, and the earliest retry read below, which may
	// not see that decline, is then not stored over it.
	due0 := s.retryDue.Load()
	err := s.db.View(func(txn *badger.Txn) error {
		byRider := map[string]int{}
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte{pOpenDay}})
		defer it.Close()
		from, next := s.dueFrom, []byte(nil)
		// read reads keys from start up to end (nil: the days before
		// upTo), and notes the key it stopped at when limit was reached.
		read := func(start, end []byte) error {
			for it.Seek(start); it.Valid(); it.Next() {
				k := it.Item().KeyCopy(nil)
				if end != nil && bytes.Compare(k, end) >= 0 {
					return nil
				}
				if len(k) < 6 {
					return fmt.Errorf("open day key 0x%x: %w", k, errCorruptRecord)
				}
				d := fares.Date(int32(binary.BigEndian.Uint32(k[1:])))
				if d >= upTo {
					return nil
				}
				if len(out) >= limit {
					next = k
					return nil
				}
				rider := string(k[5:])
				if skips(rider) {
					continue
				}
				i, ok := byRider[rider]
				if !ok {
					i = len(out)
					byRider[rider] = i
					out = append(out, billItem{rider: rider, trigger: "day-close"})
				}
				out[i].through = max(out[i].through, d)
				out[i].open = append(out[i].open, openDayRef{key: k, version: it.Item().Version()})
			}
			return nil
		}
		start := []byte{pOpenDay}
		if from != nil {
			start = from
		}
		if err := read(start, nil); err != nil {
			return err
		}
		if from != nil && next == nil {
			// Wrapped: the keys before where this read began.
			if err := read([]byte{pOpenDay}, from); err != nil {
				return err
			}
		}
		s.dueFrom = next
		// Debtors are read only once a retry is due: the earliest retry
		// is known from the last read (and every decline since).
		if due := s.retryDue.Load(); due != 0 && now.UnixNano() < due {
			return nil
		}
		earliest, complete := int64(math.MaxInt64), true
		err := eachBilling(txn, func(b Billing) (bool, error) {
			if len(out) >= limit {
				complete = false
				return false, nil
			}
			if b.Status != BillingDebt || b.NextRetry.IsZero() {
				return true, nil
			}
			// A due retry counts too: if its bill fails, the next look
			// reads the debtors again.
			earliest = min(earliest, b.NextRetry.UnixNano())
			if b.NextRetry.After(now) {
				return true, nil
			}
			if _, ok := byRider[b.Rider]; !ok && !skips(b.Rider) {
				out = append(out, billItem{rider: b.Rider, through: max(b.throughDate, upTo-1), trigger: "retry"})
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		if complete {
			s.retryDue.CompareAndSwap(due0, earliest)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A retry names the rider's last fare day it pays for, not a day the
	// rider never had.
	for i := range out {
		if out[i].trigger != "retry" {
			continue
		}
		b, err := s.Billing(out[i].rider)
		if err != nil {
			return nil, err
		}
		last, err := s.lastRiderDay(out[i].rider, upTo-1)
		if err != nil {
			return nil, err
		}
		out[i].through = max(b.throughDate, last)
	}
	return out, nil
}

// noteBilledBefore records that the collector bills the fare days before
// upTo (riderBatch.billedBefore).
func (s *Store) noteBilledBefore(upTo fares.Date) {
	for {
		was := s.billedBefore.Load()
		if int32(upTo) <= was || s.billedBefore.CompareAndSwap(was, int32(upTo)) {
			return
		}
	}
}

// chargeRequest prepares the acquirer request for a rider: nil when
// nothing is owed (the billed days just leave the index). A day billed
// late (a late tap opened or changed it, before the last day billed) is
// billed with the days already billed: what the rider owes less what the
// days after them, not billed yet, charged; it.through is moved there.
func (s *Store) chargeRequest(it *billItem, currency string) (*ChargeRequest, Billing, error) {
	var req *ChargeRequest
	var b Billing
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		if b, err = getBilling(txn, it.rider); err != nil {
			return err
		}
		it.through = max(it.through, b.throughDate)
		due, err := owed(txn, it.rider, it.through)
		if err != nil {
			return err
		}
		it.due = due
		if due <= 0 && !it.resume {
			return nil
		}
		m, tok, err := getRiderMedium(txn, it.rider)
		if err != nil {
			return err
		}
		req = &ChargeRequest{Key: paymentKeyOf(it.rider, it.through, b.Seq+1), Rider: it.rider, Media: m, Token: tok, Amount: due, Currency: currency}
		return nil
	})
	return req, b, err
}

// paymentKeyOf is the idempotency key of a rider's seq-th payment, which
// pays for days up to through: the same on every retry after a crash.
func paymentKeyOf(rider string, through fares.Date, seq uint64) string {
	h := sha256.Sum256(fmt.Appendf(nil, "faregate/payment/v1\x00%s\x00%d\x00%d", rider, through, seq))
	return fmt.Sprintf("0x%x", h[:16])
}

// maxPaymentGroup bounds the payments posted in one transaction.
const maxPaymentGroup = 256

// postPayments posts first and the payments waiting behind it (up to
// maxPaymentGroup) in one synced transaction, and answers each. It runs
// on the applying goroutine.
func (c *Clearing) postPayments(first *paymentPost) {
	ps := []*paymentPost{first}
gather:
	for len(ps) < maxPaymentGroup {
		select {
		case p := <-c.payments:
			ps = append(ps, p)
		default:
			break gather
		}
	}
	if len(ps) > 1 {
		err := c.store.postPayments(&c.cur, ps, c.cfg.RetrySchedule)
		if err == nil {
			for _, p := range ps {
				p.reply <- nil
			}
			return
		}
		c.log.Warn("payments of several riders not posted together; posting each alone", "riders", len(ps), "err", err)
	}
	// Alone, a payment that cannot be posted fails only its own bill (its
	// rider's, whose error names no one else).
	for _, p := range ps {
		p.reply <- c.store.postPayments(&c.cur, []*paymentPost{p}, c.cfg.RetrySchedule)
	}
}

// postPayments writes acquirer answers (or, with a nil request, billed
// days leaving the index) of distinct riders in one synced transaction:
// all of them or, with an error, none. Only the applying goroutine calls
// it: it takes transfer sequence numbers from cur.
func (s *Store) postPayments(cur *cursor, ps []*paymentPost, schedule []time.Duration) error {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	next := *cur
	billed := make([]Billing, len(ps))
	var latest uint64
	for i, p := range ps {
		b, err := s.postPayment(txn, &next, p, schedule)
		if err != nil {
			if len(ps) == 1 {
				return err
			}
			return fmt.Errorf("payment of %s: %w", p.item.rider, err)
		}
		billed[i], latest = b, max(latest, uint64(max(0, p.at.UnixNano())))
	}
	// The latest fare time the journal has stamped: a clearing reopened
	// with a fare clock behind it carries on from it (Open).
	if high, err := getU64(txn, metaFareClockHigh); err != nil {
		return err
	} else if latest > high {
		if err := setU64(txn, metaFareClockHigh, latest); err != nil {
			return err
		}
	}
	if next.nextTransfer != cur.nextTransfer {
		if err := setU64(txn, metaNextTransfer, next.nextTransfer); err != nil {
			return err
		}
	}
	if err := txn.Commit(); err != nil {
		if len(ps) == 1 {
			return fmt.Errorf("commit payment of %s: %w", ps[0].item.rider, err)
		}
		return fmt.Errorf("commit the payments of %d riders: %w", len(ps), err)
	}
	*cur = next
	for i, p := range ps {
		p.billed = billed[i]
		if b := billed[i]; b.Status == BillingDebt && !b.NextRetry.IsZero() {
			s.noteRetry(b.NextRetry)
		}
	}
	return nil
}

// postPayment writes one acquirer answer into txn, taking transfer
// sequence numbers from next, and returns the rider's billing state after
// it.
func (s *Store) postPayment(txn *badger.Txn, next *cursor, p *paymentPost, schedule []time.Duration) (Billing, error) {
	b, err := getBilling(txn, p.item.rider)
	if err != nil {
		return Billing{}, err
	}
	p.was, p.wasDebt = b.Status, b.Debt
	// A batch prepared before the collector moved the billed-before day
	// did not put a day it changed back in the index (riderBatch
	// .billedBefore); if it committed after the bill was asked for, the
	// days covered owe something else now: their keys stay, and the next
	// round bills the difference.
	open := p.item.open
	if len(open) > 0 {
		now, err := owed(txn, p.item.rider, p.item.through)
		if err != nil {
			return Billing{}, err
		}
		if max(now, 0) != max(p.item.due, 0) {
			open = nil
		}
	}
	for _, r := range open {
		// Set again since the collector read it (a late tap changed the
		// day while its bill was out): kept, so the change is billed.
		item, err := txn.Get(r.key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return Billing{}, fmt.Errorf("billed day: %w", err)
		}
		if item.Version() != r.version {
			continue
		}
		if err := txn.Delete(r.key); err != nil {
			return Billing{}, fmt.Errorf("billed day: %w", err)
		}
	}
	if p.item.through > b.throughDate {
		b.throughDate, b.BilledThrough = p.item.through, p.item.through.String()
	}
	if p.req.Key != "" {
		if err := txn.Delete(chargeIntentKey(p.item.rider)); err != nil {
			return Billing{}, fmt.Errorf("charge intent: %w", err)
		}
		b.Seq++
		// Recorded with the payment, so a repeat of the request finds it
		// even if clearing stops before PayDebtOnce records it.
		if len(p.item.idem) > 0 {
			if err := txn.Set(payIdemKey(string(p.item.idem)), payIdemValue(p.item.rider, b.Seq)); err != nil {
				return Billing{}, fmt.Errorf("payment idempotency record: %w", err)
			}
		}
		pay := Payment{Seq: b.Seq, Key: p.req.Key, Through: p.item.through.String(), Amount: p.req.Amount,
			Approved: p.res.Approved, Reference: p.res.Reference, Decline: p.res.Decline, Trigger: p.item.trigger, By: p.item.by, At: p.at.UTC(), Overcharged: p.over}
		if p.res.Approved {
			pay.Amount = p.res.Amount
			t := Transfer{Seq: next.nextTransfer, ID: paymentTransferID(p.req.Key), Debit: AcquirerAccount, Credit: p.item.rider,
				Amount: p.res.Amount, ApplyIndex: math.MaxUint64, At: p.at.UTC()}
			next.nextTransfer++
			tb, err := t.MarshalBinary()
			if err != nil {
				return Billing{}, err
			}
			if err := txn.Set(keyU64(pTransfer, t.Seq), tb); err != nil {
				return Billing{}, fmt.Errorf("journal payment: %w", err)
			}
			for _, side := range []struct {
				acct string
				dr   bool
			}{{t.Debit, true}, {t.Credit, false}} {
				s.balances.forget(side.acct) // written here, not by the apply path
				bal, err := getBalance(txn, side.acct)
				if err != nil {
					return Billing{}, err
				}
				ok := false
				if side.dr {
					bal.Debits, ok = bal.Debits.Add(t.Amount)
				} else {
					bal.Credits, ok = bal.Credits.Add(t.Amount)
				}
				if !ok {
					return Billing{}, fmt.Errorf("payment of %d to %s: its balance would wrap int64", t.Amount, side.acct)
				}
				if err := putBalance(txn, bal); err != nil {
					return Billing{}, err
				}
			}
		}
		pb, err := json.Marshal(pay)
		if err != nil {
			return Billing{}, err
		}
		if err := txn.Set(paymentKey(p.item.rider, pay.Seq), pb); err != nil {
			return Billing{}, fmt.Errorf("payment record: %w", err)
		}
	}
	if err := s.followOwed(txn, &b, p, schedule); err != nil {
		return Billing{}, err
	}
	if p.missed && b.Status == BillingDebt {
		planRetry(&b, b.Attempts, p.at, schedule)
	}
	bb, err := json.Marshal(b)
	if err != nil {
		return Billing{}, err
	}
	if err := txn.Set(billingKey(p.item.rider), bb); err != nil {
		return Billing{}, fmt.Errorf("billing: %w", err)
	}
	return b, nil
}

// followOwed makes b's status and debt what the rider owes, after p's
// post, for the fare days billed (through b's last billed day): the
// balance less what later days charged. Held charges and day closes come
// in any order: a debtor's day that closed while a charge of theirs was
// held joined the debt and left the index of days to bill, so a held
// charge approved in full afterwards may leave something owed that
// nothing else would ever bill (an outside test saw such a rider marked
// clear, unlisted and never charged the rest).
func (s *Store) followOwed(txn *badger.Txn, b *Billing, p *paymentPost, schedule []time.Duration) error {
	due, err := owed(txn, p.item.rider, b.throughDate)
	if err != nil {
		return err
	}
	asked := p.req.Key != ""
	switch {
	case due <= 0:
		// Paid, or later credits (a late exit) covered it.
		clearBilling(b)
	case asked && p.res.Approved && p.res.Amount == p.req.Amount:
		// Paid what was asked, yet more is owed: days changed since the
		// bill was asked are billed by the next round if their index keys
		// are there (a late tap on a billed day); if not, the rest is a
		// debt, listed and retried like a decline.
		left, err := billableLeft(txn, p.item.rider, b.throughDate)
		if err != nil {
			return err
		}
		if left {
			clearBilling(b)
			return nil
		}
		noteDebt(b, p, due, fmt.Sprintf("%s%d (%s %s)", stillOwedAfter, p.res.Amount, p.res.Amount.Format(p.currency), p.currency), schedule)
	case asked && p.res.Approved:
		// Part approved (a partial authorisation, as a prepaid card's
		// issuer may give): the rest is a debt like a declined charge's,
		// listed at the gates and retried by the schedule. (It used to
		// stay owed with the rider clear: never asked again unless they
		// travelled.)
		noteDebt(b, p, due, fmt.Sprintf("partially approved: %d (%s %s) of %d (%s %s)",
			p.res.Amount, p.res.Amount.Format(p.currency), p.currency, p.req.Amount, p.req.Amount.Format(p.currency), p.currency), schedule)
	case asked:
		noteDebt(b, p, due, p.res.Decline, schedule)
	case b.Status == BillingDebt:
		// A debtor's day closed: it is not charged now (the retry
		// schedule or the rider asks), but the debt becomes what the
		// next charge asks for: what the day owes joins it, and a late
		// tap that lowered a billed day (an exit after the maximum fare)
		// lowers it.
		b.Debt = due
	}
	return nil
}

// stillOwedAfter starts the reason of a debt left after a charge approved
// in full (followOwed).
const stillOwedAfter = "still owed after paying "

// oddApproval starts the decline reason recorded for an approval of
// nothing (bill).
const oddApproval = "not posted: the acquirer approved "

// clearBilling puts b out of debt.
func clearBilling(b *Billing) {
	b.Status, b.Debt, b.Attempts, b.FirstDeclined, b.NextRetry, b.LastDecline = BillingClear, 0, 0, time.Time{}, time.Time{}, ""
}

// billableLeft reports whether the index of days to bill holds a day of
// rider up to through: the collector's next round bills everything the
// rider owes for the days up to it.
func billableLeft(txn *badger.Txn, rider string, through fares.Date) (bool, error) {
	prefix := []byte(riderKey(pRiderDay, rider, 0))
	prefix = prefix[:len(prefix)-4]
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix, Reverse: true})
	defer it.Close()
	for it.Seek([]byte(riderKey(pRiderDay, rider, through))); it.Valid(); it.Next() {
		k := it.Item().Key()
		d := fares.Date(int32(binary.BigEndian.Uint32(k[len(k)-4:])))
		_, err := txn.Get(openDayKey(d, rider))
		switch {
		case err == nil:
			return true, nil
		case !errors.Is(err, badger.ErrKeyNotFound):
			return false, fmt.Errorf("days of %s to bill: %w", rider, err)
		}
	}
	return false, nil
}

// paymentTransferID is the journal id of a payment: its key's first 16
// bytes (a payment is not an event).
func paymentTransferID(key string) fare.EventID {
	h := sha256.Sum256([]byte(key))
	var id fare.EventID
	copy(id[:], h[:])
	return id
}

// Billing returns a rider's billing state.
func (s *Store) Billing(rider string) (Billing, error) {
	var b Billing
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		b, err = getBilling(txn, rider)
		return err
	})
	return b, err
}

// Payments lists a rider's payment attempts, oldest first.
func (s *Store) Payments(rider string) ([]Payment, error) {
	var out []Payment
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := paymentKey(rider, 0)
		prefix = prefix[:len(prefix)-8]
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var p Payment
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &p) }); err != nil {
				return fmt.Errorf("payment of %s: %w", rider, err)
			}
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// PaymentTotals sums every rider's billing: what was asked, approved and
// declined, and the riders in debt now.
type PaymentTotals struct {
	Attempts     int         `json:"attempts"`
	Approved     int         `json:"approved"`
	Declined     int         `json:"declined"`
	Paid         fare.Amount `json:"paid"`
	RidersInDebt int         `json:"riders_in_debt"`
	Debt         fare.Amount `json:"debt"`
	UnbilledDays int         `json:"unbilled_days"`
}

// PaymentTotals reads the payment records and billing states.
func (s *Store) PaymentTotals() (PaymentTotals, error) {
	var t PaymentTotals
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pPayment}})
		for it.Rewind(); it.Valid(); it.Next() {
			var p Payment
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &p) }); err != nil {
				it.Close()
				return fmt.Errorf("payment %x: %w", it.Item().Key(), err)
			}
			t.Attempts++
			if p.Approved {
				t.Approved++
				t.Paid += p.Amount
			} else {
				t.Declined++
			}
		}
		it.Close()
		if err := eachBilling(txn, func(b Billing) (bool, error) {
			if b.Status == BillingDebt {
				t.RidersInDebt++
				t.Debt += b.Debt
			}
			return true, nil
		}); err != nil {
			return err
		}
		oit := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte{pOpenDay}})
		defer oit.Close()
		for oit.Rewind(); oit.Valid(); oit.Next() {
			t.UnbilledDays++
		}
		return nil
	})
	return t, err
}

// UnbilledDays counts the rider days not billed yet: PaymentTotals'
// UnbilledDays alone, from the keys of the open-day index (no value read),
// for a caller that polls it while billing runs.
func (s *Store) UnbilledDays() (int, error) {
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte{pOpenDay}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// BillingSnapshot reads the payment totals and the deny list's version
// and size together, between two bills: a bill posts the acquirer's answer
// and then changes the deny list, and a read between the two would count a
// rider listed but no longer in debt (or in debt and not yet listed).
func (c *Clearing) BillingSnapshot() (t PaymentTotals, denyVersion uint64, denyEntries int, err error) {
	c.billMu.Lock()
	defer c.billMu.Unlock()
	t, err = c.store.PaymentTotals()
	denyVersion, denyEntries = c.DenyListVersion()
	return t, denyVersion, denyEntries, err
}

// debtReason is the deny-list reason of a rider in debt (money as minor
// units, decimal and currency, as everywhere).
func debtReason(b Billing, currency string) string {
	verb := "declined"
	if strings.HasPrefix(b.LastDecline, "partially approved") || strings.HasPrefix(b.LastDecline, stillOwedAfter) {
		verb = "owed" // the rest of a charge approved in part, or days billed after it
	}
	head := fmt.Sprintf(debtReasonPrefix+"payment of %d (%s %s) %s (", b.Debt, b.Debt.Format(currency), currency, verb)
	// The acquirer's text, in what is left of the list's bound in bytes
	// (it was cut to 80 characters: 55 of Japanese made a reason the list
	// refused, and the rider in debt was never listed: an outside review).
	why := strings.ToValidUTF8(b.LastDecline, "\uFFFD")
	if room := maxDenyReason - len(head) - len(")"); len(why) > room {
		n := max(0, room-len("..."))
		for n > 0 && !utf8.RuneStart(why[n]) {
			n--
		}
		why = why[:n] + "..."
	}
	return head + why + ")"
}

var errNoAcquirer = errors.New("clearing has no acquirer (Config.Acquirer)")

// collect runs the collector until ctx ends: every CollectEvery it bills
// the riders whose fare days are over and retries those in debt.
func (c *Clearing) collect(ctx context.Context) {
	t := time.NewTicker(c.cfg.CollectEvery)
	defer t.Stop()
	summary := time.NewTicker(10 * time.Second)
	defer summary.Stop()
	defer c.debtLog.Flush()
	var resuming atomic.Bool
	var resumeWG, bills sync.WaitGroup
	defer resumeWG.Wait()
	defer bills.Wait()
	slots := newBillSlots()
	c.debtListStale.Store(true) // a crash between a post and its listing
	var reconcileAfter time.Time
	for {
		// A reconciliation that failed is tried again a minute later, not
		// every round: it holds every bill's post while it walks the
		// billed riders.
		if !time.Now().Before(reconcileAfter) && c.debtListStale.Swap(false) && !c.reconcileDebtors(ctx) {
			c.debtListStale.Store(true)
			reconcileAfter = time.Now().Add(reconcileRetry)
		}
		select {
		case <-ctx.Done():
			return
		case <-summary.C:
			c.debtLog.Flush()
			continue
		case <-t.C:
		}
		// Held charges are asked again beside the round, never holding it
		// up: an issuer that does not answer costs each the acquirer's timeout
		// (an outside recheck saw a rider billed a minute late behind two).
		if !resuming.Load() {
			resuming.Store(true)
			resumeWG.Go(func() { defer resuming.Store(false); c.resumeIntents(ctx) })
		}
		for ctx.Err() == nil {
			n, billed, err := c.collectOnce(ctx, &bills, slots)
			if err != nil && ctx.Err() == nil {
				c.log.Error("collect payments", "err", err)
			}
			// A rider whose bill fails does not hold up the others: the
			// next chunk goes on while bills of this one went through.
			if n < collectChunk || billed == 0 {
				break
			}
		}
	}
}

const collectChunk = 256

// billWorkers is how many riders the collector bills at once: their
// acquirer calls overlap, and their answers are posted together, in one
// synced transaction (postPayments), not one commit a rider.
const billWorkers = 32

// collectOnce bills up to collectChunk riders, billWorkers at a time
// across rounds (slots), and reports how many it found and how many bills
// went through (an error: the first bill that failed; the others ran). It
// waits for its bills up to roundWait: bills still out then (an issuer
// that does not answer takes the acquirer's timeout) go on beside the
// next rounds, tracked by bills, and their riders are skipped until they
// end, as are riders whose last bill failed, for a while (billAfter):
// one hanging issuer held every round, and every rider's bill, for its
// timeouts (an outside recheck). A bill that is slow gives its slot to the
// next rider (billSlots): riders whose issuers hang cannot hold the others
// up for their timeouts.
func (c *Clearing) collectOnce(ctx context.Context, bills *sync.WaitGroup, slots *billSlots) (n, billed int, err error) {
	now := c.cfg.FareClock()
	upTo := c.cfg.Feed.FareDay(now.Add(-c.cfg.CloseAfter))
	c.store.noteBilledBefore(upTo) // before the index is read: see riderBatch.billedBefore
	// Riders with a bill out or backed off are skipped as the index is
	// read, not after: a first chunk of them (an issuer failing every
	// charge of 256 riders) kept every rider after them from being billed
	// (an outside recheck).
	items, err := c.store.dueRiders(upTo, now, collectChunk, func(rider string) bool { return !c.mayBill(rider) })
	if err != nil {
		return 0, 0, err
	}
	var (
		round sync.WaitGroup
		mu    sync.Mutex
		first error
		ok    int
	)
	for _, it := range items {
		if !slots.take(ctx) {
			mu.Lock() // the round's earlier bills still count under it
			defer mu.Unlock()
			return len(items), ok, ctx.Err()
		}
		round.Add(1)
		bills.Go(func() {
			done := make(chan struct{})
			go slots.hold(done)
			defer func() { close(done); round.Done() }()
			start := time.Now()
			_, err := c.bill(ctx, it)
			took := time.Since(start)
			if err == nil {
				slots.answered(took)
			}
			c.billed(ctx, it.rider, err, took)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case first == nil:
				first = err
			}
		})
	}
	done := make(chan struct{})
	go func() { round.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(roundWait):
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	return len(items), ok, first
}

// roundWait is how long a collector round waits for its bills.
const roundWait = 2 * time.Second

// billSlots bounds the collector's bills: billWorkers at once, and those
// out longer than slowAfter (an issuer that does not answer, until the
// acquirer's timeout) beside them, up to maxSlowBills. A round waits for
// a slot at most about slowAfter while slow ones are below that bound.
// (Slots were held to the end of each bill: 96 riders whose issuer hung
// kept every slot for three timeouts in a row, and a healthy rider after
// them in the index was billed 2½ minutes late: an outside test.)
type billSlots struct {
	fast, slow chan struct{}
	// typical is how long answered bills take (nanoseconds): a high-water
	// mark that rises at once with a slower answer and decays by an
	// eighth towards each quicker one. Bills that got no answer (the
	// acquirer's timeout) do not count.
	typical atomic.Int64
}

const (
	// slowBill is the longest a bill keeps its slot: at most a round.
	slowBill = roundWait
	// minSlowBill is the shortest: a bill is slow after four times what
	// answered bills take (typical), at least this. Riders whose issuers
	// hang pass through the slots at billWorkers a slowAfter: 16 a second
	// with the slot held slowBill, 128 with a quick acquirer (an outside
	// test had a healthy rider wait N/16 s behind N hanging issuers).
	minSlowBill = 250 * time.Millisecond
	// maxSlowBills bounds the slow bills out beside the slots: a bill
	// that is slow with that many out keeps its slot.
	maxSlowBills = 16 * billWorkers
)

func newBillSlots() *billSlots {
	s := &billSlots{fast: make(chan struct{}, billWorkers), slow: make(chan struct{}, maxSlowBills)}
	s.typical.Store(int64(slowBill / 4)) // until answers say otherwise
	return s
}

// answered notes how long a bill that got its acquirer's answer took.
func (s *billSlots) answered(took time.Duration) {
	for {
		old := s.typical.Load()
		next := int64(took)
		if next < old {
			next = old - (old-next)/8
		}
		if s.typical.CompareAndSwap(old, next) {
			return
		}
	}
}

// slowAfter is how long a bill keeps its slot before it counts as slow.
func (s *billSlots) slowAfter() time.Duration {
	return min(max(4*time.Duration(s.typical.Load()), minSlowBill), slowBill)
}

// take waits for a slot; false when ctx ended first.
func (s *billSlots) take(ctx context.Context) bool {
	select {
	case s.fast <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// hold keeps a slot taken (take) for a bill until done is closed, or
// hands it on once the bill is slow and a slow place is free.
func (s *billSlots) hold(done <-chan struct{}) {
	t := time.NewTimer(s.slowAfter())
	defer t.Stop()
	select {
	case <-done:
		<-s.fast
		return
	case <-t.C:
	}
	select {
	case s.slow <- struct{}{}:
		<-s.fast
		<-done
		<-s.slow
	case <-done:
		<-s.fast
	}
}

// mayBill says whether a round may bill rider now: no bill of it is out,
// and its last one did not fail within its back-off (billed).
func (c *Clearing) mayBill(rider string) bool {
	if v, ok := c.billAfter.Load(rider); ok && time.Now().Before(v.(billBackoff).next) {
		return false
	}
	return !c.billRiders.busy(rider)
}

// billBackoff is when a rider whose bills failed n times in a row may be
// billed again by the collector (the API's bills do not wait).
type billBackoff struct {
	next time.Time
	n    int
}

// billed notes how a collector's bill of rider ended, after took: a
// failure backs its next one off, twice CollectEvery doubling up to
// resumeBackoff, and at least twice as long as the failed bill took (an
// issuer that hangs to the acquirer's timeout is not asked again at once,
// for another timeout: such riders took most of the collector's bills).
func (c *Clearing) billed(ctx context.Context, rider string, err error, took time.Duration) {
	switch {
	case err == nil:
		c.billAfter.Delete(rider)
	case ctx.Err() == nil:
		b := billBackoff{n: 1}
		if v, ok := c.billAfter.Load(rider); ok {
			b.n = v.(billBackoff).n + 1
		}
		// Shifted from at most resumeBackoff: a long CollectEvery shifted
		// 16 times overflows into a negative wait, and no backoff.
		wait := min(c.cfg.CollectEvery, resumeBackoff) << min(b.n, 16)
		b.next = time.Now().Add(max(min(wait, resumeBackoff), 2*took))
		c.billAfter.Store(rider, b)
	}
}

// resumeIntents asks again for every charge whose intent is held with no
// bill of its rider running: its answer was lost to a crash or a stop
// between the acquirer and the post, or to an error (a timeout, a reset).
// The acquirer answers a key asked again as it did the first time, so
// nothing is charged twice; until then an approved charge would not be
// on the rider's record, and a rider whose retries had run out, or who
// paid through the API, would stay in debt and refused at the gates (an
// outside payments test saw that after a crash).
func (c *Clearing) resumeIntents(ctx context.Context) {
	held, err := c.store.heldIntents()
	if err != nil {
		c.log.Error("read held charge intents", "err", err)
		return
	}
	sem := make(chan struct{}, billWorkers)
	var wg sync.WaitGroup
	for _, it := range held {
		if ctx.Err() != nil {
			break
		}
		if !c.mayBill(it.rider) {
			continue // being billed now (that bill asks it), or backed off after a failure
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			start := time.Now()
			_, err := c.bill(ctx, it)
			c.billed(ctx, it.rider, err, time.Since(start))
			if err != nil && ctx.Err() == nil {
				c.log.Error("ask again for a held charge", "rider", it.rider, "err", err)
			}
		})
	}
	wg.Wait()
}

// resumeBackoff bounds how long a rider whose bills failed waits for the
// collector's next (billed).
const resumeBackoff = time.Minute

// heldIntents returns a bill for each charge intent held (a charge asked
// for and not posted), to ask it again.
func (s *Store) heldIntents() ([]billItem, error) {
	var out []billItem
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pChargeIntent}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var in chargeIntent
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &in) }); err != nil {
				return fmt.Errorf("charge intent %q: %w: %w", it.Item().Key(), errCorruptRecord, err)
			}
			trigger := in.Trigger
			if trigger == "" {
				trigger = "resume"
			}
			out = append(out, billItem{rider: string(it.Item().Key()[1:]), through: fares.Date(in.Through), trigger: trigger, idem: in.Idem, by: in.By, resume: true})
		}
		return nil
	})
	return out, err
}

// chargeIntentOf reads the rider's held charge intent.
func (s *Store) chargeIntentOf(rider string) (in chargeIntent, held bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(chargeIntentKey(rider))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		held = true
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &in) })
	})
	if err != nil {
		return in, false, fmt.Errorf("charge intent of %s: %w", rider, err)
	}
	return in, held, nil
}

// riderLocks holds a lock for each rider with a bill running or waiting
// to run, and none for the others: a bill hanging at an issuer holds up
// only its own rider's. (Riders shared 64 striped locks: the hanging bills
// of a hundred riders held nearly every stripe, and a healthy rider's bill
// waited for their timeouts, or was skipped as if its own were out: an
// outside test saw one billed 2½ minutes late.)
type riderLocks struct {
	mu sync.Mutex
	m  map[string]*riderLock
}

// riderLock is one rider's lock, and how many bills hold or wait for it.
type riderLock struct {
	sync.Mutex
	refs int
}

// lock waits for rider's lock and returns its unlock.
func (l *riderLocks) lock(rider string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*riderLock)
	}
	e := l.m[rider]
	if e == nil {
		e = &riderLock{}
		l.m[rider] = e
	}
	e.refs++
	l.mu.Unlock()
	e.Lock()
	return func() {
		e.Unlock()
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, rider)
		}
		l.mu.Unlock()
	}
}

// busy reports whether a bill of rider runs or waits to.
func (l *riderLocks) busy(rider string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.m[rider]
	return ok
}

var billSeed = maphash.MakeSeed()

// bill charges one rider what they owe through it.through (nothing when
// nothing is owed, or when they are in debt and no retry is due) and
// records the answer.
func (c *Clearing) bill(ctx context.Context, it billItem) (*paymentPost, error) {
	// Bills run side by side, but never two of one rider: the collector
	// and the API must never both ask for (and post) the same payment.
	defer c.billRiders.lock(it.rider)()
	req, b, err := c.store.chargeRequest(&it, c.cfg.Registry.Currency)
	if err != nil {
		return nil, err
	}
	if it.resume {
		// Asked again only while the intent is the rider's next payment's:
		// one posted since (another bill) took it off.
		in, held, err := c.store.chargeIntentOf(it.rider)
		if err != nil || !held || in.Seq != b.Seq+1 || req == nil {
			return nil, err
		}
	}
	p := &paymentPost{item: it, at: c.cfg.FareClock(), currency: c.cfg.Registry.Currency}
	if it.trigger == "retry" && !it.resume && (b.Status != BillingDebt || b.NextRetry.IsZero() || b.NextRetry.After(p.at)) {
		// The retry was read due, but another bill of the rider (a held
		// charge asked again, the desk's) was posted since: it was this
		// slot's charge, and the next slot is ahead.
		return nil, nil
	}
	p.missed = !it.resume && it.trigger == "retry" && retryMissed(b, p.at, c.cfg.RetrySchedule)
	// A debtor's new days wait for the retry schedule (or the API).
	if req != nil && (it.resume || !p.missed && !(it.trigger == "day-close" && b.Status == BillingDebt)) {
		if c.cfg.Acquirer == nil {
			return nil, errNoAcquirer
		}
		if err := c.store.holdIntent(&it, req, b.Seq+1); err != nil {
			return nil, err
		}
		p.item = it
		cctx, cancel := context.WithTimeout(ctx, c.cfg.AcquirerTimeout)
		res, err := c.cfg.Acquirer.Charge(cctx, *req)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("charge rider %s: %w", it.rider, err)
		}
		if res.Approved && res.Amount > req.Amount {
			// The rider's account paid more than clearing asked: what was
			// asked is posted (the rider owes nothing more) and the excess
			// recorded with the payment for the acquirer to refund. (It was
			// recorded as refused: the rider stayed in debt and was charged
			// again by the next retry, an outside recheck.)
			c.log.Error("the acquirer approved more than clearing asked: the amount asked is posted, the excess recorded as overcharged; have the acquirer refund it",
				"rider", it.rider, "key", req.Key, "asked", req.Amount, "approved", res.Amount, "currency", req.Currency, "reference", res.Reference)
			p.over, res.Amount = res.Amount-req.Amount, req.Amount
		}
		if res.Approved && res.Amount <= 0 {
			// An answer clearing cannot post: recorded as refused, which
			// frees the intent and leaves the rider owing (in debt, retried
			// by the schedule with a new key), and said once for the
			// operator to settle with the acquirer. (It was refused and
			// the intent kept: every round asked again, got the same
			// answer and logged it, and the rider's later bills reused it,
			// stuck for good.)
			c.log.Error("the acquirer approved an amount clearing did not ask: recorded as refused, not posted; settle it with the acquirer",
				"rider", it.rider, "key", req.Key, "asked", req.Amount, "approved", res.Amount, "currency", req.Currency, "reference", res.Reference)
			res = ChargeResult{Reference: res.Reference, Decline: fmt.Sprintf("%s%d (%s %s) of %d (%s %s) asked", oddApproval,
				res.Amount, res.Amount.Format(req.Currency), req.Currency, req.Amount, req.Amount.Format(req.Currency), req.Currency)}
		}
		p.req, p.res = *req, res
	}
	posted, err := c.postBill(ctx, p)
	if !posted {
		return nil, err
	}
	return p, err
}

// postBill posts p on the applying goroutine and follows it on the deny
// list. BillingSnapshot and reconcileDebtors wait for a post and its
// deny-list change (billMu), not for an acquirer's answer. posted says
// whether p was posted (an error after it: its listing failed).
func (c *Clearing) postBill(ctx context.Context, p *paymentPost) (posted bool, err error) {
	c.billMu.RLock()
	defer c.billMu.RUnlock()
	if err := c.postOnApplier(ctx, p); err != nil {
		return false, err
	}
	if p.req.Key != "" {
		c.paymentsAsked.Add(1)
		if !p.res.Approved {
			c.paymentsDeclined.Add(1)
		}
	}
	// The listing follows the post even when clearing is stopping. One
	// that fails is made good by the collector's next round
	// (reconcileDebtors), not only at the next start.
	if err := c.followDebt(context.WithoutCancel(ctx), p); err != nil {
		c.debtListStale.Store(true)
		return true, err
	}
	return true, nil
}

// followDebt puts a rider who went into debt on the deny list and takes
// one who left it off.
func (c *Clearing) followDebt(ctx context.Context, p *paymentPost) error {
	switch {
	case p.billed.Status == BillingDebt && p.was != BillingDebt:
		m, tok, err := c.riderMedium(p.item.rider)
		if err != nil {
			return err
		}
		if err := c.denyDebt(ctx, m, tok, debtReason(p.billed, c.cfg.Registry.Currency), true); err != nil {
			return fmt.Errorf("deny rider %s in debt: %w", p.item.rider, err)
		}
		c.debtLog.Add("denied for debt", fmt.Sprintf("rider %s: %s", p.item.rider, debtReason(p.billed, c.cfg.Registry.Currency)))
	case p.billed.Status == BillingClear && p.was == BillingDebt:
		m, tok, err := c.riderMedium(p.item.rider)
		if err != nil {
			return err
		}
		if err := c.denyDebt(ctx, m, tok, "", false); err != nil {
			return fmt.Errorf("reopen the gates to rider %s: %w", p.item.rider, err)
		}
		c.debtLog.Add("debt paid, gates open", "rider "+p.item.rider)
	case p.billed.Status == BillingDebt && p.billed.Debt != p.wasDebt:
		// Still in debt, for another amount: the listing's reason says
		// the debt as it stands (the gates' entry does not change).
		m, tok, err := c.riderMedium(p.item.rider)
		if err != nil {
			return err
		}
		if err := c.denyDebt(ctx, m, tok, debtReason(p.billed, c.cfg.Registry.Currency), true); err != nil {
			return fmt.Errorf("deny rider %s in debt: %w", p.item.rider, err)
		}
	}
	return nil
}

func (c *Clearing) riderMedium(rider string) (fare.MediaKind, string, error) {
	var m fare.MediaKind
	var tok string
	err := c.store.db.View(func(txn *badger.Txn) error {
		var err error
		m, tok, err = getRiderMedium(txn, rider)
		return err
	})
	return m, tok, err
}

// reconcileRetry is how long after a failed reconcileDebtors the
// collector tries again.
const reconcileRetry = time.Minute

// reconcileDebtors lists every rider in debt on the deny list and takes
// every rider out of debt off it: what a crash between a payment's post
// and its listing, or a listing that failed (debtListStale), left undone.
// It reports whether it read and changed everything it had to.
//
// It holds billMu throughout, so no bill posts or lists a rider between
// its read of the riders' billing and its changes: a rider who paid at the
// desk while it ran was listed again, and one declined while it ran taken
// off (an outside review, at start, with the API already served).
func (c *Clearing) reconcileDebtors(ctx context.Context) bool {
	c.billMu.Lock()
	defer c.billMu.Unlock()
	var debtors []Billing
	var paid []string
	err := c.store.db.View(func(txn *badger.Txn) error {
		return eachBilling(txn, func(b Billing) (bool, error) {
			switch {
			case b.Status == BillingDebt:
				debtors = append(debtors, b)
			case b.Seq > 0:
				paid = append(paid, b.Rider)
			}
			return true, nil
		})
	})
	if err != nil {
		c.log.Error("read riders in debt", "err", err)
		return false
	}
	ok := true
	// Riders out of debt whose unlisting a crash cut off: every rider who
	// was billed and is clear whose medium is listed for debt, whatever
	// made the debt (a debt of a charge approved in part has no declined
	// payment: an outside review found such a rider, paid, refused at
	// every gate for good after a crash).
	for _, rider := range paid {
		m, tok, err := c.riderMedium(rider)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
			continue // never tapped with a medium clearing holds: never listed
		case err != nil:
			c.log.Error("read the medium of a rider out of debt", "rider", rider, "err", err)
			ok = false
			continue
		}
		rec, err := c.store.denyRecordOf(fare.HashDeny(m, tok))
		if err != nil {
			c.log.Error("read the deny list", "rider", rider, "err", err)
			ok = false
			continue
		}
		if rec == nil {
			continue
		}
		if _, debt := rec.grounds(); debt == "" {
			continue
		}
		if err := c.denyDebt(ctx, m, tok, "", false); err != nil {
			c.log.Error("unlist rider out of debt", "rider", rider, "err", err)
			ok = false
		}
	}
	media := make([]DenyMedium, 0, len(debtors))
	for _, b := range debtors {
		m, tok, err := c.riderMedium(b.Rider)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
			c.log.Error("rider in debt without a medium: not listed", "rider", b.Rider)
			continue
		case err != nil:
			c.log.Error("read the medium of a rider in debt", "rider", b.Rider, "err", err)
			ok = false
			continue
		}
		reason := debtReason(b, c.cfg.Registry.Currency)
		if _, err := denyChangeOf(m, tok, reason, groundDebt, true); err != nil {
			// One medium the list cannot hold does not keep the others
			// off it (DenyAll refuses them all), nor is it tried again.
			c.log.Error("rider in debt whose medium the deny list cannot hold: not listed", "rider", b.Rider, "err", err)
			continue
		}
		media = append(media, DenyMedium{Media: m, Token: tok, Reason: reason, Debt: true})
	}
	n, err := c.DenyAll(ctx, media)
	if err != nil {
		c.log.Error("list riders in debt", "err", err)
		return false
	}
	if n > 0 {
		c.log.Info("riders in debt listed", "riders", n)
	}
	return ok
}

// postOnApplier hands p to the applying goroutine (the journal's only
// writer) and waits for it to be written.
func (c *Clearing) postOnApplier(ctx context.Context, p *paymentPost) error {
	p.reply = make(chan error, 1)
	select {
	case c.payments <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Taken, it is answered (posted or not) whatever ctx does: a bill that
	// stopped waiting here would leave a posted payment without its
	// deny-list change (followDebt) until the next start.
	return <-p.reply
}

// PayDebt charges a rider in debt now (the rider paid through the API, e.g.
// after updating their card with the acquirer): it returns the payment and
// the billing state after it. A rider who owes nothing gets a nil payment.
// by names who asked (the API token's name), recorded with the payment.
func (c *Clearing) PayDebt(ctx context.Context, rider, by string) (*Payment, Billing, error) {
	return c.payDebt(ctx, rider, by, nil)
}

// payDebt is PayDebt for an API request of idempotency key idem (nil:
// none), recorded with the payment it posts.
func (c *Clearing) payDebt(ctx context.Context, rider, by string, idem []byte) (*Payment, Billing, error) {
	if c.cfg.Feed == nil {
		return nil, Billing{}, errors.New("clearing prices no fares (no --feed): riders owe nothing")
	}
	b, err := c.store.Billing(rider)
	if err != nil {
		return nil, b, err
	}
	if _, _, err := c.riderMedium(rider); err != nil {
		return nil, b, fmt.Errorf("rider %s: %w", rider, ErrNotFound)
	}
	// The payment names the rider's last fare day it pays for, not a day
	// the rider never had.
	through, err := c.store.lastRiderDay(rider, c.payThrough(b))
	if err != nil {
		return nil, b, err
	}
	p, err := c.bill(ctx, billItem{rider: rider, through: max(through, b.throughDate), trigger: "api", idem: idem, by: by})
	if p == nil || p.req.Key == "" {
		// Nothing posted (an error before it), or nothing owed.
		if p != nil {
			b = p.billed
		}
		return nil, b, err
	}
	// Posted, even if the deny list's update after it failed (err): the
	// payment is returned with the error, found by its own key (the
	// collector may have posted another since).
	pays, perr := c.store.Payments(rider)
	if perr != nil {
		return nil, p.billed, errors.Join(err, perr)
	}
	for i := len(pays) - 1; i >= 0; i-- {
		if pays[i].Key == p.req.Key {
			return &pays[i], p.billed, err
		}
	}
	return nil, p.billed, errors.Join(err, fmt.Errorf("payment %s of %s posted but not found", p.req.Key, rider))
}

// metaFareClockHigh holds the latest fare-clock time (UnixNano u64) a
// payment was stamped with.
var metaFareClockHigh = []byte("mfare-clock-high")

// keepFareClockAhead makes the fare clock carry on from the latest time the
// journal has stamped when it would start behind it (a kept simulation,
// whose city ran its days ahead of the wall, reopened twice; a host whose
// clock went back): payments and retries must never be stamped before the
// ones already recorded.
func (c *Clearing) keepFareClockAhead() error {
	var high uint64
	err := c.store.db.View(func(txn *badger.Txn) error {
		var err error
		high, err = getU64(txn, metaFareClockHigh)
		return err
	})
	if err != nil || high == 0 {
		return err
	}
	behind := time.Unix(0, int64(high)).Sub(c.cfg.FareClock())
	if behind <= 0 {
		return nil
	}
	base := c.cfg.FareClock
	c.cfg.FareClock = func() time.Time { return base().Add(behind) }
	c.log.Info("the fare clock carries on from the latest payment the journal stamped", "latest", time.Unix(0, int64(high)).UTC().Format(time.RFC3339), "ahead_of_the_clock_by", behind.Round(time.Second).String())
	return nil
}

// payThrough is the last fare day a payment asked now pays for: the days
// billed already, and those over by the fare clock.
func (c *Clearing) payThrough(b Billing) fares.Date {
	return max(b.throughDate, c.cfg.Feed.FareDay(c.cfg.FareClock().Add(-c.cfg.CloseAfter))-1)
}

// lastRiderDay is rider's last fare day up to bound (bound when the rider
// has none).
func (s *Store) lastRiderDay(rider string, bound fares.Date) (fares.Date, error) {
	last := bound
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(riderKey(pRiderDay, rider, 0))
		prefix = prefix[:len(prefix)-4]
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix, Reverse: true})
		defer it.Close()
		it.Seek([]byte(riderKey(pRiderDay, rider, bound)))
		if it.Valid() {
			k := it.Item().Key()
			last = fares.Date(int32(binary.BigEndian.Uint32(k[len(k)-4:])))
		}
		return nil
	})
	return last, err
}

// DueNow is what PayDebt would charge rider now: the debt, and what fare
// days already billed or over have charged since (a late tap on a billed
// day, before the collector bills it). 0 without a feed.
func (c *Clearing) DueNow(rider string) (fare.Amount, error) {
	due, _, err := c.dueAndCredit(rider)
	return due, err
}

// dueAndCredit is DueNow, and the rider's credit: what the fare days that
// are over were paid above what they cost now (a late tap lowered a day
// already paid), kept against the next bill, not refunded.
func (c *Clearing) dueAndCredit(rider string) (due, credit fare.Amount, err error) {
	if c.cfg.Feed == nil {
		return 0, 0, nil
	}
	b, err := c.store.Billing(rider)
	if err != nil {
		return 0, 0, err
	}
	var owes fare.Amount
	err = c.store.db.View(func(txn *badger.Txn) error {
		owes, err = owed(txn, rider, c.payThrough(b))
		return err
	})
	return max(owes, 0), max(-owes, 0), err
}

// pPayIdem keys what a payment request with an Idempotency-Key did:
//
//	P<key as the caller scoped it>  rider \x00 payment seq u64 (0: nothing was owed)
const pPayIdem = 'P'

// PayDebtOnce is PayDebt made idempotent by key (the API scopes it to the
// calling token): the first request with the key charges, and every repeat
// gets the payment it made (replayed true), charging nothing again, however
// late; the key used for another rider is refused (ErrIdempotencyConflict).
// The key is recorded with the payment, in its transaction (a payment the
// collector posts after a crash, asking the request's charge again, too),
// and once the request's answer is known ("nothing owed" included).
func (c *Clearing) PayDebtOnce(ctx context.Context, rider, by, key string) (pay *Payment, b Billing, replayed bool, err error) {
	if len(key) > 2*MaxIdempotencyKeyLen {
		return nil, b, false, fmt.Errorf("idempotency key of %d bytes", len(key))
	}
	// Requests of one key wait for each other (the second must find the
	// first's record); others, across a slow acquirer's answer, do not.
	mu := &c.payIdem[maphash.String(billSeed, key)%uint64(len(c.payIdem))]
	mu.Lock()
	defer mu.Unlock()
	k := payIdemKey(key)
	v, err := c.store.value(k)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return nil, b, false, fmt.Errorf("payment idempotency record: %w", err)
	default:
		return c.idemReplay(rider, v)
	}
	pay, b, err = c.payDebt(ctx, rider, by, []byte(key))
	if err != nil && pay == nil {
		return pay, b, false, err // nothing posted: a repeat may ask again
	}
	// Posted (or nothing owed): recorded even when the deny list's update
	// after the post failed, so that a repeat gets this payment, not
	// "nothing owed".
	var seq uint64
	if pay != nil {
		seq = pay.Seq
	}
	rec := payIdemValue(rider, seq)
	var earlier []byte
	rerr := c.store.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(k)
		switch {
		case err == nil:
			earlier, err = item.ValueCopy(nil)
			return err
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		return txn.Set(k, rec)
	})
	if rerr != nil {
		return pay, b, false, errors.Join(err, fmt.Errorf("record the payment's idempotency key: %w", rerr))
	}
	if earlier != nil && !bytes.Equal(earlier, rec) {
		// A payment was posted under this key meanwhile (the collector
		// asked this request's held charge again while the request
		// waited): that payment is this request's answer, not "nothing
		// owed" (an outside recheck saw the record overwritten so).
		return c.idemReplay(rider, earlier)
	}
	return pay, b, false, err
}

// idemReplay answers a payment request whose idempotency key is recorded
// (v, payIdemValue) with the payment it names.
func (c *Clearing) idemReplay(rider string, v []byte) (*Payment, Billing, bool, error) {
	var b Billing
	who, seqb, ok := bytes.Cut(v, []byte{0})
	if !ok || len(seqb) != 8 {
		return nil, b, false, fmt.Errorf("payment idempotency record of %d bytes: %w", len(v), errCorruptRecord)
	}
	if string(who) != rider {
		return nil, b, false, ErrIdempotencyConflict
	}
	b, err := c.store.Billing(rider)
	if err != nil {
		return nil, b, false, err
	}
	seq := binary.BigEndian.Uint64(seqb)
	if seq == 0 {
		return nil, b, true, nil
	}
	pays, err := c.store.Payments(rider)
	if err != nil {
		return nil, b, false, err
	}
	for i := range pays {
		if pays[i].Seq == seq {
			return &pays[i], b, true, nil
		}
	}
	return nil, b, false, fmt.Errorf("payment %d of %s, made by an earlier request with this idempotency key: %w", seq, rider, errCorruptRecord)
}

// payIdemKey is the key of the record of a payment API request's
// idempotency key: its value (payIdemValue) names the rider and the
// payment's sequence, 0 for "nothing owed".
func payIdemKey(key string) []byte { return append([]byte{pPayIdem}, key...) }

func payIdemValue(rider string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(rider), 0), seq)
}

// dayCharged reads what an encoded journeys.Day charged.
func dayCharged(v []byte) (int64, error) {
	var d journeys.Day
	if err := d.UnmarshalBinary(v); err != nil {
		return 0, err
	}
	return d.Charged, nil
}

// parseFareDate reads a fare day written as YYYY-MM-DD.
func parseFareDate(s string) (fares.Date, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, fmt.Errorf("fare day %q: %w", s, err)
	}
	return fares.DateOf(t.Year(), t.Month(), t.Day()), nil
}

// paidBy is what rider paid through the acquirer in all.
func (s *Store) paidBy(rider string) (fare.Amount, error) {
	pays, err := s.Payments(rider)
	if err != nil {
		return 0, err
	}
	var paid fare.Amount
	for _, p := range pays {
		if p.Approved {
			paid += p.Amount
		}
	}
	return paid, nil
}

// noteRetry lowers the earliest retry dueRiders waits for to t.
func (s *Store) noteRetry(t time.Time) {
	for {
		due := s.retryDue.Load()
		if due == 0 || due <= t.UnixNano() || s.retryDue.CompareAndSwap(due, t.UnixNano()) {
			return
		}
	}
}
