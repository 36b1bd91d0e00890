package simulator

import (
	"fmt"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// report.json shows money as the settlement API does (minor units, the
// decimal string and the currency) and hashes as 0x hex; these are its
// shapes of what clearing keeps in other forms.

// ReportBatch is a sealed settlement batch.
type ReportBatch struct {
	ID          uint64    `json:"id"`
	StartIndex  uint64    `json:"start_index"` // first apply index, inclusive
	EndIndex    uint64    `json:"end_index"`   // exclusive
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	// Root is the batch's Merkle root, 0x hex, as anchored on the chain.
	Root       string                     `json:"root"`
	EventCount uint64                     `json:"event_count"`
	Nets       []clearing.OperatorNetView `json:"nets"` // credits minus debits, as the API's batch view
}

// ReportFareAudit is the independent repricing of every rider day
// (clearing.FareAudit) with its amounts as money.
type ReportFareAudit struct {
	RiderDays         int            `json:"rider_days"`
	Journeys          int            `json:"journeys"`
	Incomplete        int            `json:"journeys_incomplete"`
	Capped            int            `json:"journeys_capped"`
	MultiOperator     int            `json:"journeys_multi_operator"`
	MultiOperatorDays int            `json:"rider_days_multi_operator"`
	RidersCapped      int            `json:"riders_capped"`
	Posted            clearing.Money `json:"posted"`     // what the applied events posted
	Recomputed        clearing.Money `json:"recomputed"` // what the fresh repricing says
	Mismatches        []string       `json:"mismatches,omitempty"`
	Count             int            `json:"mismatch_count"`
}

// money is v in the report's currency.
func (r *Report) money(v int64) clearing.Money {
	return clearing.MoneyOf(fare.Amount(v), r.Currency)
}

func (r *Report) batch(b *clearing.BatchRecord) ReportBatch {
	rb := ReportBatch{ID: b.ID, StartIndex: b.StartIndex, EndIndex: b.EndIndex, PeriodStart: b.PeriodStart, PeriodEnd: b.PeriodEnd,
		Root: fmt.Sprintf("0x%x", b.Root), EventCount: b.EventCount, Nets: make([]clearing.OperatorNetView, 0, len(b.Amounts))}
	for _, a := range b.Amounts {
		rb.Nets = append(rb.Nets, clearing.OperatorNetView{Operator: a.Operator, Net: r.money(a.Net)})
	}
	return rb
}

func (r *Report) fareAudit(fa *clearing.FareAudit) *ReportFareAudit {
	return &ReportFareAudit{RiderDays: fa.RiderDays, Journeys: fa.Journeys, Incomplete: fa.Incomplete, Capped: fa.Capped,
		MultiOperator: fa.MultiOperator, MultiOperatorDays: fa.MultiOperatorDays, RidersCapped: fa.RidersCapped,
		Posted: r.money(int64(fa.Posted)), Recomputed: r.money(int64(fa.Recomputed)), Mismatches: fa.Mismatches, Count: fa.Count}
}
