package simulator

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// goodReport is a report every check holds for: 100 applied events that
// posted 12.00 EUR to operators, riders charged as much, 2 riders in debt
// and listed, every gate holding the list.
func goodReport() *Report {
	eur := func(v int64) clearing.Money { return clearing.MoneyOf(fare.Amount(v), "EUR") }
	behind, wrong := 0, 0
	return &Report{
		Currency: "EUR", TapsGenerated: 100, Applied: 100,
		JournalMismatches: []string{}, BatchProblems: []string{}, AuditFindings: []string{},
		OperatorRevenue: map[string]clearing.Money{"metro": eur(700), "bus": eur(500)},
		RiderCharges:    eur(1200),
		FareRecompute:   &ReportFareAudit{RiderDays: 40, Posted: eur(1200), Recomputed: eur(1200)},
		RidersInDebt:    2, DenyListDebtListed: 2, GatesBehindDenyList: &behind, DenyListDebtWrong: &wrong,
		Payments: eur(300), AcquirerReceived: eur(300),
		BatchesSealed: 3, BatchesAnchored: 3,
	}
}

// TestReportChecks: each guarantee breaks on what it guards, from the
// figures read from the stores (an outside review of the simulator found
// taps a gate failed counted nowhere, the store audit's store-wide
// findings dropped, a repricing that did not run read as "0 differ",
// the revenue check unable to fail on its own and the deny list's debtors
// counted from payments rather than from the list).
func TestReportChecks(t *testing.T) {
	if err := goodReport().OK(); err != nil {
		t.Fatalf("the good report: %v", err)
	}
	two := 2
	for _, tc := range []struct {
		name   string
		change func(r *Report)
		broken []string // the checks that break
	}{
		{"a tap the gate failed", func(r *Report) { r.TapsFailed = 3 }, []string{"every tap taken at the gate"}},
		{"no repricing", func(r *Report) { r.FareRecompute = nil }, []string{"fares reprice the same", "operators' revenue is what the events posted"}},
		{"a transfer no event posted", func(r *Report) {
			r.OperatorRevenue["metro"] = clearing.MoneyOf(800, "EUR")
			r.RiderCharges = clearing.MoneyOf(1300, "EUR") // both sides of the journal moved
		}, []string{"operators' revenue is what the events posted"}},
		{"riders charged other than revenue", func(r *Report) { r.RiderCharges = clearing.MoneyOf(1100, "EUR") }, []string{"operators' revenue is what the events posted"}},
		{"a debtor not listed", func(r *Report) { r.DenyListDebtListed = 1 }, []string{"debtors on the deny list"}},
		{"a rider listed for debt who owes nothing", func(r *Report) { r.DenyListDebtListed = 3 }, []string{"debtors on the deny list"}},
		{"gates behind the list", func(r *Report) { r.GatesBehindDenyList = &two }, []string{"debtors on the deny list"}},
		// One listed who owes nothing, one in debt not listed: the counts
		// agree, the riders do not (a recheck).
		{"the wrong riders listed", func(r *Report) { r.DenyListDebtWrong = &two }, []string{"debtors on the deny list"}},
		{"a store-wide finding", func(r *Report) { r.AuditFindings = []string{"payment; transfer t-1 backs no applied event"} }, []string{"the store audit is clean"}},
		{"an event applied twice", func(r *Report) { r.DuplicatesApplied = 1 }, []string{"exactly once"}},
		{"no tap taken", func(r *Report) { r.TapsGenerated, r.Applied = 0, 0 }, []string{"taps were taken"}},
		{"a sequence lost", func(r *Report) { r.LostSequences = 1 }, []string{"exactly once"}},
		{"an event in the store no sequence accounts for", func(r *Report) { r.StoreEventMismatch = 1 }, []string{"exactly once"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := goodReport()
			tc.change(r)
			var broken []string
			for _, c := range r.Checks() {
				if c.Err != nil {
					broken = append(broken, c.Name)
				}
			}
			if !slices.Equal(broken, tc.broken) {
				t.Fatalf("broken checks %q, want %q", broken, tc.broken)
			}
			if r.OK() == nil {
				t.Fatal("OK with a broken check")
			}
		})
	}
	// A gate list nobody holds (--find-peak) is not checked, not broken.
	r := goodReport()
	r.GatesBehindDenyList = nil
	if err := r.OK(); err != nil {
		t.Fatalf("without gate lists: %v", err)
	}
	// A run stopped early checked nothing: not OK, whatever its figures.
	r.Stopped = "interrupted"
	if err := r.OK(); err == nil || !strings.Contains(err.Error(), "stopped early") {
		t.Fatalf("a stopped report: OK says %v", err)
	}
}

// TestExactlyOnce: what the store holds of the terminals' sequences and
// applied events counts each way of breaking exactly-once, none an error
// (an outside review: a gap ended the run without its report).
func TestExactlyOnce(t *testing.T) {
	id := func(b byte) fare.EventID { return fare.EventID{b} }
	for _, tc := range []struct {
		name                 string
		seqs                 []terminalSeqs
		rejected             uint64
		all                  []fare.EventID
		applied, twice, lost uint64
		mismatch             int64
	}{
		{"all applied once", []terminalSeqs{{3, 0}, {2, 0}}, 0, []fare.EventID{id(1), id(2), id(3), id(4), id(5)}, 5, 0, 0, 0},
		{"one rejected", []terminalSeqs{{3, 0}, {2, 0}}, 1, []fare.EventID{id(1), id(2), id(3), id(4)}, 4, 0, 0, 0},
		// Sequences 1-10 used, 4 lost: the other nine applied (an outside
		// re-check found 7 lost and 3 applied counted).
		{"a sequence lost in the middle", []terminalSeqs{{10, 1}}, 0, []fare.EventID{id(1), id(2), id(3), id(5), id(6), id(7), id(8), id(9), id(10)}, 9, 0, 1, 0},
		{"two lost, one rejected", []terminalSeqs{{5, 2}, {2, 0}}, 1, []fare.EventID{id(1), id(2), id(3), id(4)}, 4, 0, 2, 0},
		{"an event applied twice", []terminalSeqs{{3, 0}}, 0, []fare.EventID{id(1), id(2), id(3), id(3)}, 3, 1, 0, 0},
		{"a sequence recorded applied, its event missing from the store", []terminalSeqs{{3, 0}}, 0, []fare.EventID{id(1), id(2)}, 2, 0, 0, -1},
		{"an event no sequence accounts for", []terminalSeqs{{2, 0}}, 0, []fare.EventID{id(1), id(2), id(3)}, 3, 0, 0, 1},
		{"nothing", nil, 0, nil, 0, 0, 0, 0},
	} {
		applied, twice, lost, mismatch := exactlyOnce(tc.seqs, tc.rejected, tc.all)
		if applied != tc.applied || twice != tc.twice || lost != tc.lost || mismatch != tc.mismatch {
			t.Errorf("%s: applied %d, twice %d, lost %d, mismatch %d; want %d, %d, %d, %d", tc.name, applied, twice, lost, mismatch, tc.applied, tc.twice, tc.lost, tc.mismatch)
		}
	}
}

// TestLatencyCDFNearestRank: the i-th point of n samples is the sample of
// nearest rank ceil(i·n/100), computed in integers (in floating point
// 0.07·100 is a hair over 7, and the 7th point took the 8th sample).
func TestLatencyCDFNearestRank(t *testing.T) {
	for _, n := range []int{1, 3, 100, 101, 1000, 12345} {
		ds := make([]time.Duration, n)
		for i := range ds {
			ds[i] = time.Duration(i+1) * time.Millisecond // rank r is r ms
		}
		c := latencyCDF(ds)
		for i, v := range c.Ms {
			want := max(1, (i*n+99)/100) // ceil(i·n/100), at least the first
			if v != float64(want) {
				t.Fatalf("n=%d: point %d is %v ms, want rank %d", n, i, v, want)
			}
		}
	}
}

// TestConfirmSeenBeforeItsTap: a tap's confirmation may be seen before
// the worker that took it records it (a later tap's confirmation covers
// it): it is measured once recorded, not dropped.
func TestConfirmSeenBeforeItsTap(t *testing.T) {
	st := &simTerminal{}
	at := time.Now().Add(-50 * time.Millisecond)
	st.tapped(2, at)   // sequence 1's worker has not recorded it yet
	st.seeConfirmed(2) // a confirmation covers both
	now := time.Now()
	if len(st.lat) != 1 {
		t.Fatalf("%d latencies before sequence 1 was recorded, want 1", len(st.lat))
	}
	st.tapped(1, at.Add(-10*time.Millisecond))
	if len(st.lat) != 2 || st.lat[1] < 60*time.Millisecond || st.lat[1] > now.Sub(at.Add(-10*time.Millisecond)) || len(st.confirmedAt) != 0 {
		t.Fatalf("after sequence 1 was recorded: latencies %v, waiting %v; want its own, from its tap to when it was seen confirmed", st.lat, st.confirmedAt)
	}
}

// TestJourneysDue: journeys owed over a late tick are due when each fell
// due, not at the tick (an outside review: after the dispatcher waited on
// a full queue, every first tap of the gap was dated at the resume, which
// hid the wait from the latencies).
func TestJourneysDue(t *testing.T) {
	from := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	// 10 a second for 1 s, 0.5 owed from before: due at 0.05, 0.15, ...,
	// 0.95 s, 0.5 carried.
	dues, rest := journeysDue(from, from.Add(time.Second), 0.5, 10)
	if len(dues) != 10 || rest < 0.499 || rest > 0.501 {
		t.Fatalf("%d journeys, %.3f carried; want 10 and 0.5", len(dues), rest)
	}
	for i, d := range dues {
		want := from.Add(time.Duration(50+100*i) * time.Millisecond)
		if diff := d.Sub(want); diff < -time.Microsecond || diff > time.Microsecond {
			t.Fatalf("journey %d due at +%s, want +%s", i, d.Sub(from), want.Sub(from))
		}
	}
	// No rate, or no time: nothing due, nothing lost.
	for _, tc := range []struct {
		now    time.Time
		perSec float64
	}{{from.Add(time.Second), 0}, {from, 10}} {
		if dues, rest := journeysDue(from, tc.now, 0.7, tc.perSec); len(dues) != 0 || rest != 0.7 {
			t.Fatalf("perSec %v over %s: %d due, %.2f carried; want none and 0.7", tc.perSec, tc.now.Sub(from), len(dues), rest)
		}
	}
}
