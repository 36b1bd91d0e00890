package clearing

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
)

// Post-paid payments in the settlement API (payments.go):
//
//	POST /v1/riders/{media}/{pseudonym}/payments  the payments desk charges a
//	     rider's debt now (the rider paid, e.g. after updating their card
//	     with the acquirer); a payment that clears the debt reopens the gates
//	GET  /v1/riders/{media}/{pseudonym}/payments  the rider's billing and
//	     payment attempts (payments desk and auditors)

// BillingView is a rider's billing state in the API.
type BillingView struct {
	Rider         string        `json:"rider"`
	Status        string        `json:"status"`
	BilledThrough string        `json:"billed_through,omitempty"`
	Debt          RiderDebtView `json:"debt"`
	// Due is what POST .../payments would charge now: the debt, and what
	// fare days already billed or over charged since (a late tap).
	Due Money `json:"due"`
	// Credit is what the fare days that are over were paid above what
	// they cost now (a late exit lowered a day already paid): kept
	// against the rider's next bill, not refunded.
	Credit Money `json:"credit"`
	// ListedByHand says the rider's medium is on the deny list on a ground
	// of its own (a card reported stolen), which paying does not take off.
	ListedByHand bool          `json:"listed_by_hand"`
	Payments     []PaymentView `json:"payments"`
	Payment      *PaymentView  `json:"payment,omitempty"` // the one a POST made
	Note         string        `json:"note,omitempty"`
}

// PaymentView is one payment attempt in the API.
type PaymentView struct {
	Seq       uint64 `json:"seq"`
	Key       string `json:"key"`
	FareDay   string `json:"fare_day"`
	Amount    Money  `json:"amount"`
	Outcome   string `json:"outcome"`
	Reason    string `json:"reason,omitempty"`
	Reference string `json:"reference,omitempty"`
	// Attempt numbers the payments for the fare day (1 for the first), as
	// the rider view does.
	Attempt int    `json:"attempt"`
	Trigger string `json:"trigger"`
	// By names the API token (the desk) that asked for a payment of
	// trigger "api".
	By string `json:"by,omitempty"`
	At string `json:"at"`
}

func (a *API) billingView(rider string, b Billing, pays []Payment) (BillingView, error) {
	due, credit, err := a.c.dueAndCredit(rider)
	if err != nil {
		return BillingView{}, err
	}
	hand, err := a.c.listedByHand(rider)
	if err != nil {
		return BillingView{}, err
	}
	v := BillingView{Rider: rider, Status: b.Status, BilledThrough: b.BilledThrough, Debt: a.debtView(debtOf(b, pays)), Due: a.money(due), Credit: a.money(credit),
		ListedByHand: hand, Payments: []PaymentView{}}
	attempts := map[string]int{}
	for _, p := range pays {
		attempts[p.Through]++
		pv := a.paymentRecordView(p)
		pv.Attempt = attempts[p.Through]
		v.Payments = append(v.Payments, pv)
	}
	return v, nil
}

// attemptOf numbers pay among pays' payments for its fare day (1 for the
// first), as the lists do.
func attemptOf(pays []Payment, pay Payment) int {
	n := 0
	for _, p := range pays {
		if p.Through == pay.Through && p.Seq <= pay.Seq {
			n++
		}
	}
	return n
}

func (a *API) paymentRecordView(p Payment) PaymentView {
	v := PaymentView{Seq: p.Seq, Key: p.Key, FareDay: p.Through, Amount: a.money(p.Amount), Outcome: "declined", Reason: p.Decline,
		Reference: p.Reference, Trigger: p.Trigger, By: p.By, At: a.localTime(p.At)}
	if p.Approved {
		v.Outcome = "approved"
	}
	return v
}

func (a *API) riderPaymentsList(w http.ResponseWriter, r *http.Request) {
	rider, err := riderParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	// A mistyped pseudonym is not a rider who owes nothing: a rider has a
	// medium on record (priced fares) or journal postings (flat fares).
	if _, _, err := a.c.riderMedium(rider); errors.Is(err, badger.ErrKeyNotFound) {
		bal, err := a.c.store.Balance(rider)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		if bal.Debits == 0 && bal.Credits == 0 {
			writeError(w, http.StatusNotFound, fmt.Errorf("rider %s: no fare days and no journal postings (no such rider, or one who has not travelled): %w", rider, ErrNotFound))
			return
		}
	} else if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	b, err := a.c.store.Billing(rider)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	pays, err := a.c.store.Payments(rider)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	v, err := a.billingView(rider, b, pays)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *API) payDebt(w http.ResponseWriter, r *http.Request) {
	rider, err := riderParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if hasBody(r) && !emptyChunked(w, r) {
		// An amount or a key in a body would be ignored and the whole
		// debt charged: refused, nothing charged.
		writeError(w, http.StatusBadRequest, errors.New("POST .../payments takes no request body: it charges what the rider owes for fare days that are over"))
		return
	}
	if a.c.cfg.Acquirer == nil {
		writeError(w, http.StatusConflict, fmt.Errorf("clearing has no acquirer configured: it takes no payments"))
		return
	}
	idem, err := idempotencyKey(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var pay *Payment
	var b Billing
	replayed := false
	if idem != "" {
		pay, b, replayed, err = a.c.PayDebtOnce(r.Context(), rider, principal(r).Name, idem)
	} else {
		pay, b, err = a.c.PayDebt(r.Context(), rider, principal(r).Name)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err)
		return
	case errors.Is(err, ErrIdempotencyConflict):
		writeError(w, http.StatusUnprocessableEntity, fmt.Errorf("%w: it paid for another rider", err))
		return
	case err != nil && pay == nil:
		writeError(w, http.StatusBadGateway, fmt.Errorf("payment of %s: %w", rider, err))
		return
	}
	// A payment posted whose deny-list update failed is answered as made:
	// the collector's next round makes the list good (reconcileDebtors).
	listErr := err
	pays, err := a.c.store.Payments(rider)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	v, err := a.billingView(rider, b, pays)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	status := http.StatusOK
	switch {
	case pay == nil:
		v.Note = "nothing owed for fare days that are over: nothing charged"
	case pay.Approved:
		pv := a.paymentRecordView(*pay)
		pv.Attempt = attemptOf(pays, *pay)
		v.Payment = &pv
		status = http.StatusCreated
	default:
		pv := a.paymentRecordView(*pay)
		pv.Attempt = attemptOf(pays, *pay)
		v.Payment = &pv
		status = http.StatusPaymentRequired
		v.Note = "the acquirer declined the payment: the rider stays in debt"
		if replayed && b.Status != BillingDebt {
			// The answer to the first request, given again; the rider's
			// state is today's (paid since, say).
			v.Note = "the acquirer declined this payment when it was asked (this is that answer again); the rider is no longer in debt since"
		}
	}
	if listErr != nil {
		v.Note = strings.TrimPrefix(v.Note+"; ", "; ") + "the deny list was not updated now (" + listErr.Error() + "): clearing makes it good in its collector's next round"
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, status, v)
}

// listedByHand says whether rider's medium is on the deny list on the
// hand ground (whatever its debt).
func (c *Clearing) listedByHand(rider string) (bool, error) {
	m, tok, err := c.riderMedium(rider)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	rec, err := c.store.denyRecordOf(fare.HashDeny(m, tok))
	if err != nil || rec == nil {
		return false, err
	}
	hand, _ := rec.grounds()
	return hand != "", nil
}

// debtOf is a billing state as the rider view's debt; pays are the
// rider's payments (Charges counts clearing's own since the debt began).
func debtOf(b Billing, pays []Payment) RiderDebt {
	if b.Status != BillingDebt {
		return RiderDebt{}
	}
	d := RiderDebt{Owed: b.Debt, Since: b.FirstDeclined, Denied: true, Attempts: b.Attempts, NextRetry: b.NextRetry}
	for _, p := range pays {
		if p.Trigger != "api" && !p.At.Before(b.FirstDeclined) {
			d.Charges++
		}
	}
	return d
}

// RiderPayments implements RiderPaymentSource for the rider view.
func (c *Clearing) RiderPayments(rider string) ([]RiderPayment, RiderDebt, error) {
	b, err := c.store.Billing(rider)
	if err != nil {
		return nil, RiderDebt{}, err
	}
	pays, err := c.store.Payments(rider)
	if err != nil {
		return nil, RiderDebt{}, err
	}
	out := make([]RiderPayment, 0, len(pays))
	attempts := map[string]int{}
	for _, p := range pays {
		d, err := parseFareDate(p.Through)
		if err != nil {
			return nil, RiderDebt{}, err
		}
		attempts[p.Through]++
		out = append(out, RiderPayment{FareDay: d, Amount: p.Amount, Approved: p.Approved, Reason: p.Decline, Reference: p.Reference,
			Attempt: attempts[p.Through], Trigger: p.Trigger, By: p.By, At: p.At, Overcharged: p.Overcharged})
	}
	return out, debtOf(b, pays), nil
}
