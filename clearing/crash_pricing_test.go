package clearing_test

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/clearing/journeys"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// Crash tests of live pricing: a real clearing process (the ledger crash
// child: embedded NATS, Badger, embedded chain) pricing from the city feed
// is SIGKILLed between a rider's taps, with taps in flight, and kept down
// while gates tap offline; the books must be the ones an uninterrupted run
// of the same taps gives.

// crashAction is what a step of a crash scenario does.
type crashAction int

const (
	tapAndConfirm crashAction = iota // tap, wait until clearing confirms it
	tapInFlight                      // tap and go on at once (the next step kills clearing)
	killClearing                     // SIGKILL clearing and restart it, let every outbox drain
	clearingDown                     // SIGKILL clearing and leave it down: gates tap offline
	clearingUp                       // restart it, let every outbox drain
)

type crashStep struct {
	do crashAction
	fareTap
}

func tapStep(card, stop string, dir fare.Direction, at time.Time) crashStep {
	return crashStep{do: tapAndConfirm, fareTap: fareTap{stop: stop, dir: dir, at: at, card: card}}
}

func inFlightStep(card, stop string, dir fare.Direction, at time.Time) crashStep {
	return crashStep{do: tapInFlight, fareTap: fareTap{stop: stop, dir: dir, at: at, card: card}}
}

var (
	crashKill = crashStep{do: killClearing}
	crashDown = crashStep{do: clearingDown}
	crashUp   = crashStep{do: clearingUp}
)

// pricedOutcome is what a run of a scenario left in clearing's store.
type pricedOutcome struct {
	riders    map[string]fare.Amount // card -> charged
	operators map[string]fare.Amount // operator -> revenue (balance)
	batchNets map[string]fare.Amount // operator -> sum of its batch nets
	// events is each applied event, by terminal/sequence: what it charged
	// and how it was split; cards says whose it was.
	events    map[string]string
	cards     map[string]string
	transfers int
	batches   int
	kills     int
}

// runPricedCrash runs steps against a clearing child pricing from the city
// feed, with terminals at every gate of fareCityGates; with kills false the
// kill, down and up steps are skipped (the uninterrupted reference run).
// It settles everything, audits the store against the chain (batches,
// roots, signatures, journal) and reprices every rider day from the
// stored events (AuditFares: no mismatch).
func runPricedCrash(t *testing.T, steps []crashStep, kills bool) pricedOutcome {
	t.Helper()
	dir := t.TempDir()
	reg, keys := fareCityRegistry(t)
	regFile := filepath.Join(dir, "registry.json")
	if err := reg.Save(regFile); err != nil {
		t.Fatal(err)
	}
	feedDir, err := filepath.Abs(cityFeedDir)
	if err != nil {
		t.Fatal(err)
	}
	spec := ledgerCrashSpec{Dir: dir, Registry: regFile, Port: freePort(t), Period: 250 * time.Millisecond, Kill: killNever, Feed: feedDir}
	child := startLedgerCrashChild(t, spec)
	alive := true
	t.Cleanup(func() {
		if alive {
			child.cmd.Process.Kill()
			child.cmd.Wait()
		}
	})
	url := fmt.Sprintf("nats://127.0.0.1:%d", spec.Port)
	terms := map[string]*runningTerminal{}
	for _, g := range fareCityGates {
		terms[g.id] = startTerminal(t, dir, url, reg, keys, g.id)
	}
	drain := func() {
		for _, rt := range terms {
			waitFor(t, "outbox of "+rt.ID()+" drained", 60*time.Second, func() bool { return rt.Pending() == 0 })
		}
	}
	sigkill := func() {
		if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		child.cmd.Wait()
		alive = false
	}
	restart := func() {
		child = startLedgerCrashChild(t, spec)
		alive = true
		drain()
	}
	var out pricedOutcome
	isDown := false
	for i, s := range steps {
		switch s.do {
		case tapAndConfirm, tapInFlight:
			term := terms[s.stop+"-g1"]
			ev, err := term.Tap(context.Background(), terminal.Tap{Gate: "g1", Direction: s.dir, Media: fare.Card, Token: s.card, RiderCategory: "adult", Time: s.at})
			if err != nil || ev.Decision != fare.Accepted {
				t.Fatalf("step %d: tap at %s: %v %s", i, term.ID(), err, ev.Decision)
			}
			if s.do == tapAndConfirm && !isDown {
				waitFor(t, fmt.Sprintf("step %d: tap at %s confirmed", i, term.ID()), 30*time.Second, func() bool { return term.Pending() == 0 })
			}
		case killClearing:
			if kills {
				sigkill()
				out.kills++
				restart()
			} else {
				// The same sync point as the restart's: an event in flight
				// is applied before the next tap (else, on a loaded
				// machine, the next tap's gate may publish first and the
				// reference run books the two in the other order).
				drain()
			}
		case clearingDown:
			if kills {
				sigkill()
				out.kills++
				isDown = true
			}
		case clearingUp:
			if kills {
				restart()
				isDown = false
			}
		}
	}
	if isDown {
		t.Fatal("scenario ends with clearing down")
	}
	drain()
	for _, rt := range terms {
		rt.stop(t)
	}
	if err := child.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	child.expect(t, "settled", 90*time.Second)
	if err := child.cmd.Wait(); err != nil {
		t.Fatalf("clearing child after settling: %v", err)
	}
	alive = false

	rep := auditDir(t, dir, reg)
	if !rep.Clean() || len(rep.Pending) != 0 || len(rep.Unrecorded) != 0 || rep.OpenEvents != 0 || uint64(rep.StoreBatches) != rep.ChainBatches {
		t.Errorf("audit after settling: %d batches in the store, %d on chain, pending %v, unrecorded %v, %d events unsealed, %d mismatches",
			rep.StoreBatches, rep.ChainBatches, rep.Pending, rep.Unrecorded, rep.OpenEvents, len(rep.Mismatches))
	}
	if rep.Journal.Imbalance != 0 || len(rep.Journal.Mismatches) != 0 {
		t.Errorf("journal: %+v", rep.Journal)
	}

	st, err := clearing.OpenStoreReadOnly(filepath.Join(dir, "clearing", "store"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	riderKey, err := fare.LoadOrCreateSecret(filepath.Join(dir, "clearing", clearing.RiderKeyFile), clearing.RiderKeySize, "rider key")
	if err != nil {
		t.Fatal(err)
	}
	riderOf := func(m fare.MediaKind, tok string) string { return clearing.RiderAccount(riderKey, m, tok) }

	// Every tap applied once, in its terminal's sequence.
	var tapped uint64
	for _, rt := range terms {
		w, _ := st.Watermark(rt.ID())
		if w != rt.LastSequence() {
			t.Errorf("terminal %s: watermark %d, last sequence %d", rt.ID(), w, rt.LastSequence())
		}
		tapped += rt.LastSequence()
	}
	ids, err := st.AppliedEventIDs()
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(ids)) != tapped {
		t.Errorf("%d events applied, %d tapped", len(ids), tapped)
	}
	out.riders, out.operators, out.batchNets = map[string]fare.Amount{}, map[string]fare.Amount{}, map[string]fare.Amount{}
	out.events, out.cards = map[string]string{}, map[string]string{}
	var charged fare.Amount
	for _, id := range ids {
		rec, err := st.Event(id)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := fare.Decode(rec.Raw)
		if err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("%s/%d", sig.Terminal, sig.Sequence)
		if _, dup := out.events[k]; dup {
			t.Errorf("event %s applied twice", k)
		}
		ps := postingsByOperator(rec, sig.Operator)
		var sum fare.Amount
		for _, v := range ps {
			sum += v
		}
		if sum != rec.Fare {
			t.Errorf("event %s: postings %s sum to %d, fare %d", k, fmtPostings(ps), sum, rec.Fare)
		}
		out.events[k] = fmt.Sprintf("fare %d postings [%s]", rec.Fare, fmtPostings(ps))
		out.cards[k] = sig.MediaToken
		charged += rec.Fare
	}
	for _, s := range steps {
		if s.card != "" {
			b, err := st.Balance(riderOf(fare.Card, s.card))
			if err != nil {
				t.Fatal(err)
			}
			out.riders[s.card] = -b.Net()
		}
	}
	var revenue fare.Amount
	for _, op := range reg.OperatorIDs() {
		b, err := st.Balance(clearing.OperatorAccount(op))
		if err != nil {
			t.Fatal(err)
		}
		out.operators[op] = b.Net()
		revenue += b.Net()
	}
	var riders fare.Amount
	for _, v := range out.riders {
		riders += v
	}
	if revenue != charged || revenue != riders {
		t.Errorf("operators' revenue %d, events charged %d, riders charged %d", revenue, charged, riders)
	}
	batches, err := st.Batches(1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	out.batches = len(batches)
	for _, b := range batches {
		for _, a := range b.Amounts {
			out.batchNets[a.Operator] += fare.Amount(a.Net)
		}
	}
	if fmtPostings(nonZero(out.batchNets)) != fmtPostings(nonZero(out.operators)) {
		t.Errorf("batch nets %s, operators' balances %s", fmtPostings(out.batchNets), fmtPostings(out.operators))
	}
	j, err := st.AuditJournal()
	if err != nil {
		t.Fatal(err)
	}
	out.transfers = j.Transfers

	feed, err := gtfs.LoadPath(feedDir)
	if err != nil {
		t.Fatal(err)
	}
	pricing := &clearing.Pricing{Book: &journeys.Book{Feed: feed, FeedVersion: "crash-test", Currency: reg.Currency}, Legs: reg.LegsByTerminal()}
	fa, err := st.AuditFares(pricing, riderOf)
	if err != nil {
		t.Fatal(err)
	}
	if fa.Count != 0 || fa.Posted != charged || fa.Recomputed != charged {
		t.Errorf("fare audit: %d mismatches %v, posted %d, recomputed %d, events charged %d", fa.Count, fa.Mismatches, fa.Posted, fa.Recomputed, charged)
	}
	return out
}

// comparePricedRuns checks that a run with kills has the books of the
// uninterrupted run: riders' charges, operators' revenue, batch nets, and
// event by event (terminal and sequence) the same charge and split, except
// for the events of cards whose taps reached clearing in an order the
// kills may have changed (unordered: only their totals must agree).
func comparePricedRuns(t *testing.T, got, want pricedOutcome, unordered map[string]bool) {
	t.Helper()
	if fmt.Sprint(got.riders) != fmt.Sprint(want.riders) {
		t.Errorf("riders charged %v with kills, %v without", got.riders, want.riders)
	}
	if fmt.Sprint(got.operators) != fmt.Sprint(want.operators) {
		t.Errorf("operators' revenue %v with kills, %v without", got.operators, want.operators)
	}
	if fmtPostings(nonZero(got.batchNets)) != fmtPostings(nonZero(want.batchNets)) {
		t.Errorf("batch nets %v with kills, %v without", got.batchNets, want.batchNets)
	}
	if len(got.events) != len(want.events) {
		t.Errorf("%d events applied with kills, %d without", len(got.events), len(want.events))
	}
	compared := 0
	for k, w := range want.events {
		if got.cards[k] != want.cards[k] {
			t.Errorf("event %s: card %s with kills, %s without", k, got.cards[k], want.cards[k])
			continue
		}
		if unordered[want.cards[k]] {
			continue
		}
		compared++
		if got.events[k] != w {
			t.Errorf("event %s of %s: %s with kills, %s without", k, want.cards[k], got.events[k], w)
		}
	}
	if len(unordered) == 0 && got.transfers != want.transfers {
		t.Errorf("journal: %d transfers with kills, %d without", got.transfers, want.transfers)
	}
	if compared == 0 {
		t.Error("no event compared")
	}
	t.Logf("%d kills, %d batches with kills, %d without; %d events, %d compared one by one", got.kills, got.batches, want.batches, len(want.events), compared)
}

// TestPricingKilledBetweenEntryAndExit: clearing is SIGKILLed between a
// rider's metro entry and exit (once after the entry was applied, once
// with the entry still in flight), kept down while the exit is tapped at a
// gate offline, killed between the legs of a bus-to-metro journey, and
// between the taps of journeys across the 04:00 cut-over (entry first, and
// exit first: the exit is booked on Thursday until its entry moves it to
// Wednesday's fare day); every rider is charged what the uninterrupted run
// charges (and what the feed says), event by event.
func TestPricingKilledBetweenEntryAndExit(t *testing.T) {
	steps := []crashStep{
		tapStep("card-a", "metro-s01", fare.Entry, decAt(2, 11, 0)),
		crashKill,
		tapStep("card-a", "metro-s04", fare.Exit, decAt(2, 11, 20)), // zone 1 to 3 off-peak: 4.50
		inFlightStep("card-b", "metro-s02", fare.Entry, decAt(2, 11, 30)),
		crashKill,
		tapStep("card-b", "metro-s03", fare.Exit, decAt(2, 11, 50)), // zone 1 to 2: 3.50
		tapStep("card-c", "metro-s01", fare.Entry, decAt(2, 12, 0)),
		crashDown,
		tapStep("card-c", "metro-s04", fare.Exit, decAt(2, 12, 20)), // 4.50, tapped while clearing is down
		crashUp,
		tapStep("card-d", "bus-s01", fare.Validate, decAt(2, 13, 0)),
		crashKill,
		tapStep("card-d", "metro-s01", fare.Entry, decAt(2, 13, 20)),
		crashKill,
		tapStep("card-d", "metro-s02", fare.Exit, decAt(2, 13, 40)), // 1.80 + 2.50 - 0.60
		tapStep("card-night", "metro-s01", fare.Entry, decAt(3, 3, 50)),
		crashKill,
		tapStep("card-night", "metro-s02", fare.Exit, decAt(3, 4, 10)), // one 2.50 journey of Wednesday's fare day
		tapStep("card-dawn", "metro-s02", fare.Exit, decAt(3, 4, 10)),
		crashKill,
		inFlightStep("card-dawn", "metro-s01", fare.Entry, decAt(3, 3, 50)), // 2.50 too, the exit moved to Wednesday
		crashKill,
	}
	want := runPricedCrash(t, steps, false)
	if exp := map[string]fare.Amount{"card-a": 450, "card-b": 350, "card-c": 450, "card-d": 370, "card-dawn": 250, "card-night": 250}; fmt.Sprint(want.riders) != fmt.Sprint(exp) {
		t.Fatalf("uninterrupted run charged %v, the feed says %v", want.riders, exp)
	}
	got := runPricedCrash(t, steps, true)
	comparePricedRuns(t, got, want, nil)
}

// TestPricingKilledInCappedDay: a rider's day reaches the daily cap while
// clearing is SIGKILLed again and again (between the legs of a transfer,
// with the journey that reaches the cap in flight, after the cap), kept
// down while other riders tap offline, and the rider's next fare day
// starts after a kill; one rider's whole journey is tapped while clearing
// is down, so its taps arrive in any order. Charges, revenue, batch nets
// and every event's posting equal the uninterrupted run's.
func TestPricingKilledInCappedDay(t *testing.T) {
	steps := []crashStep{
		tapStep("card-cap", "bus-s01", fare.Validate, decAt(2, 7, 30)), // peak bus 2.30
		crashKill,
		tapStep("card-cap", "metro-s01", fare.Entry, decAt(2, 7, 50)),
		crashKill,
		tapStep("card-cap", "metro-s03", fare.Exit, decAt(2, 8, 10)), // + peak 4.00 - 0.60: 5.70
		inFlightStep("card-cap", "metro-s03", fare.Entry, decAt(2, 12, 0)),
		crashKill,
		inFlightStep("card-cap", "metro-s01", fare.Exit, decAt(2, 12, 15)), // 3.50, 2.30 left under the cap
		crashKill,
		crashDown,
		tapStep("card-cap", "tram-s01", fare.Validate, decAt(2, 14, 0)), // capped: 0
		tapStep("card-x1", "tram-s02", fare.Validate, decAt(2, 15, 0)),
		tapStep("card-x2", "bus-s02", fare.Validate, decAt(2, 15, 0)),
		tapStep("card-x3", "metro-s02", fare.Entry, decAt(2, 15, 0)),
		tapStep("card-offline", "bus-s01", fare.Validate, decAt(2, 16, 0)),
		tapStep("card-offline", "metro-s02", fare.Entry, decAt(2, 16, 20)),
		tapStep("card-offline", "metro-s04", fare.Exit, decAt(2, 16, 40)), // 1.80 + 4.50 - 0.60
		crashUp,
		tapStep("card-x3", "metro-s01", fare.Exit, decAt(2, 15, 10)),
		tapStep("card-cap", "metro-s01", fare.Entry, decAt(2, 17, 30)),
		crashKill,
		tapStep("card-cap", "metro-s04", fare.Exit, decAt(2, 17, 50)), // capped: 0
		crashKill,
		tapStep("card-cap", "bus-s02", fare.Validate, decAt(3, 6, 0)), // Thursday's fare day: 1.80
		crashKill,
	}
	want := runPricedCrash(t, steps, false)
	exp := map[string]fare.Amount{"card-cap": 800 + 180, "card-x1": 200, "card-x2": 180, "card-x3": 250, "card-offline": 570}
	if fmt.Sprint(want.riders) != fmt.Sprint(exp) {
		t.Fatalf("uninterrupted run charged %v, the feed says %v", want.riders, exp)
	}
	got := runPricedCrash(t, steps, true)
	// card-cap's exit at 12:15 is in flight at a kill and its tram ride at
	// 14:00 is tapped while clearing is down: after the restart the two
	// gates' outboxes resend them in either order. The entry was charged
	// the maximum fare at once, so which of the two events posts the
	// correction and which the cap's remainder depends on that order; the
	// rider's, operators' and batches' totals do not.
	comparePricedRuns(t, got, want, map[string]bool{"card-offline": true, "card-cap": true})
}
