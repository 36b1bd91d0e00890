package clearing_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

type batchesPage struct {
	Batches   []clearing.BatchView `json:"batches"`
	NextAfter string               `json:"next_after"`
}

type eventsPage struct {
	Batch     uint64                    `json:"batch"`
	Events    []clearing.BatchEventView `json:"events"`
	NextAfter string                    `json:"next_after"`
}

// TestAPIBatches runs the batch list's filters, cursor and CSV and the
// event list of a batch against the priced city (two committed batches).
func TestAPIBatches(t *testing.T) {
	f := newPricedAPI(t)
	var all batchesPage
	f.getJSON(t, "auditor", "/v1/batches", &all)
	if len(all.Batches) != 2 || all.NextAfter != "" {
		t.Fatalf("batches %+v, want 2 and no next page", all)
	}
	b1, b2 := all.Batches[0], all.Batches[1]
	t.Run("answers", func(t *testing.T) {
		for _, b := range all.Batches {
			if !b.Committed || len(b.Answers) != len(b.Amounts) {
				t.Fatalf("batch %d: committed %v, answers %+v for amounts %+v", b.ID, b.Committed, b.Answers, b.Amounts)
			}
			for i, an := range b.Answers {
				if an.Operator != b.Amounts[i].Operator || an.Answer != "none" {
					t.Errorf("batch %d: answer %+v, want none from %s", b.ID, an, b.Amounts[i].Operator)
				}
			}
		}
	})
	t.Run("cursor", func(t *testing.T) {
		var p1, p2 batchesPage
		f.getJSON(t, "auditor", "/v1/batches?limit=1", &p1)
		if len(p1.Batches) != 1 || p1.Batches[0].ID != 1 || p1.NextAfter != "1" {
			t.Fatalf("first page %+v", p1)
		}
		f.getJSON(t, "auditor", "/v1/batches?limit=1&after="+p1.NextAfter, &p2)
		if len(p2.Batches) != 1 || p2.Batches[0].ID != 2 || p2.NextAfter != "" {
			t.Fatalf("second page %+v", p2)
		}
	})
	t.Run("filters", func(t *testing.T) {
		hasNet := func(b clearing.BatchView, op string) bool {
			for _, am := range b.Amounts {
				if am.Operator == op {
					return true
				}
			}
			return false
		}
		for _, c := range []struct {
			query string
			want  []uint64
		}{
			{"since=" + url.QueryEscape(b1.PeriodEnd.Format(time.RFC3339Nano)), []uint64{2}},
			{"until=" + url.QueryEscape(b2.PeriodStart.Format(time.RFC3339Nano)), []uint64{1}},
			{"since=" + url.QueryEscape(b2.PeriodEnd.Add(time.Hour).Format(time.RFC3339)), nil},
			{"operator=bus", ids(all.Batches, func(b clearing.BatchView) bool { return hasNet(b, "bus") })},
			{"operator=metro", ids(all.Batches, func(b clearing.BatchView) bool { return hasNet(b, "metro") })},
			{"operator=metro&since=" + url.QueryEscape(b1.PeriodEnd.Format(time.RFC3339Nano)), ids(all.Batches[1:], func(b clearing.BatchView) bool { return hasNet(b, "metro") })},
		} {
			var p batchesPage
			f.getJSON(t, "auditor", "/v1/batches?"+c.query, &p)
			got := ids(p.Batches, func(clearing.BatchView) bool { return true })
			if !equalIDs(got, c.want) {
				t.Errorf("?%s: batches %v, want %v", c.query, got, c.want)
			}
		}
	})
	t.Run("csv", func(t *testing.T) {
		status, hdr, body := f.do(t, "GET", "auditor", "/v1/batches?format=csv")
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if status != 200 || hdr.Get("Content-Type") != "text/csv; charset=utf-8" || err != nil {
			t.Fatalf("CSV: %d %s %v", status, hdr.Get("Content-Type"), err)
		}
		want := 1
		for _, b := range all.Batches {
			want += max(1, len(b.Amounts))
		}
		if len(rows) != want || rows[0][0] != "batch" || hdr.Get("Link") != "" {
			t.Fatalf("CSV has %d rows, want %d, and no next page (Link %q): %v", len(rows), want, hdr.Get("Link"), rows)
		}
		// A CSV page that is not the last says where the next starts;
		// following the links gives every batch once.
		var got []string
		for path := "/v1/batches?format=csv&limit=1"; path != ""; {
			status, hdr, body := f.do(t, "GET", "auditor", path)
			rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
			if status != 200 || err != nil {
				t.Fatalf("CSV page %s: %d %v", path, status, err)
			}
			if len(rows) > 1 {
				got = append(got, rows[1][0])
			}
			path = ""
			if link := hdr.Get("Link"); link != "" {
				next := strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
				if !strings.HasPrefix(next, "/v1/batches?") || !strings.Contains(next, "after="+hdr.Get("Faregate-Next-After")) || !strings.Contains(next, "format=csv") {
					t.Fatalf("next page link %q, next after %q", link, hdr.Get("Faregate-Next-After"))
				}
				path = next
			}
		}
		if len(got) != len(all.Batches) || got[0] != strconv.FormatUint(all.Batches[0].ID, 10) {
			t.Errorf("CSV pages of one batch: %v, want the %d batches", got, len(all.Batches))
		}
		// Each net row says what the JSON says.
		i := 1
		for _, b := range all.Batches {
			for _, am := range b.Amounts {
				r := rows[i]
				i++
				if r[0] != strconv.FormatUint(b.ID, 10) || r[4] != b.Root || r[8] != am.Operator || r[9] != strconv.FormatInt(am.Net.Minor, 10) || r[10] != am.Net.Decimal || r[12] != "none" {
					t.Errorf("CSV row %v, JSON batch %d %+v", r, b.ID, am)
				}
			}
		}
	})
	t.Run("events", func(t *testing.T) {
		// Every batch lists all its events, the store's first (apply
		// index 0) included, and the fares add up to the batch's nets.
		for _, b := range all.Batches {
			var p eventsPage
			f.getJSON(t, "auditor", fmt.Sprintf("/v1/batches/%d/events?limit=1000", b.ID), &p)
			if uint64(len(p.Events)) != b.EventCount {
				t.Errorf("batch %d lists %d events, it counts %d", b.ID, len(p.Events), b.EventCount)
			}
			var fares, nets int64
			for _, e := range p.Events {
				fares += e.Fare.Minor
			}
			for _, am := range b.Amounts {
				nets += am.Net.Minor
			}
			if fares != nets {
				t.Errorf("batch %d: its events' fares sum to %d, its nets to %d", b.ID, fares, nets)
			}
		}
		if first := all.Batches[0]; first.ID == 1 {
			var p eventsPage
			f.getJSON(t, "auditor", "/v1/batches/1/events?limit=1", &p)
			if len(p.Events) != 1 || p.Events[0].ApplyIndex != 0 {
				t.Errorf("batch 1's first page: %+v, want the event at apply index 0", p.Events)
			}
		}
		var full eventsPage
		f.getJSON(t, "auditor", "/v1/batches/2/events", &full)
		if uint64(len(full.Events)) != b2.EventCount || full.Batch != 2 || full.NextAfter != "" {
			t.Fatalf("batch 2: %d events (next %q), the batch counts %d", len(full.Events), full.NextAfter, b2.EventCount)
		}
		// Paged one by one, the same events in the same order.
		var paged []clearing.BatchEventView
		after := ""
		for range 100 {
			var p eventsPage
			f.getJSON(t, "auditor", "/v1/batches/2/events?limit=1&after="+after, &p)
			paged = append(paged, p.Events...)
			if after = p.NextAfter; after == "" {
				break
			}
		}
		if len(paged) != len(full.Events) {
			t.Fatalf("paged %d events, unpaged %d", len(paged), len(full.Events))
		}
		for i := range paged {
			if paged[i].ID != full.Events[i].ID || (i > 0 && paged[i].ApplyIndex <= paged[i-1].ApplyIndex) {
				t.Errorf("event %d: paged %s, unpaged %s", i, paged[i].ID, full.Events[i].ID)
			}
		}
		ops := map[string]int{}
		for _, e := range full.Events {
			ops[e.Operator]++
			if e.Rider == "" || e.MediaToken != "" || len(e.Leaf) != 66 || e.Fare.Currency != "EUR" {
				t.Errorf("event %+v: want a pseudonymous rider, a 0x leaf, money", e)
			}
		}
		// Operator filter, and an operator token sees its own events only.
		for _, c := range []struct{ party, query, op string }{{"auditor", "?operator=metro", "metro"}, {"metro", "", "metro"}, {"bus", "", "bus"}} {
			var p eventsPage
			f.getJSON(t, c.party, "/v1/batches/2/events"+c.query, &p)
			if len(p.Events) != ops[c.op] {
				t.Errorf("%s %s: %d events, want %s's %d", c.party, c.query, len(p.Events), c.op, ops[c.op])
			}
			for _, e := range p.Events {
				if e.Operator != c.op {
					t.Errorf("%s %s: event of %s", c.party, c.query, e.Operator)
				}
			}
		}
		// Period: Thursday holds two taps, A's bus validation and B's at
		// a stop the feed does not know, which says why it is unpriced.
		var thu eventsPage
		f.getJSON(t, "auditor", "/v1/batches/2/events?since="+url.QueryEscape(pricedDay(3, 0, 0).Format(time.RFC3339))+"&until="+url.QueryEscape(pricedDay(4, 0, 0).Format(time.RFC3339)), &thu)
		var riders []string
		for _, e := range thu.Events {
			riders = append(riders, e.Rider)
			switch {
			case e.ID == f.unpriced.ID.String():
				if e.Fare.Minor != 0 || !strings.Contains(e.Unpriced, `unknown stop "bus-s99"`) {
					t.Errorf("the tap at an unknown stop: fare %+v, unpriced %q", e.Fare, e.Unpriced)
				}
			case e.Unpriced != "":
				t.Errorf("event %s priced %+v says unpriced %q", e.ID, e.Fare, e.Unpriced)
			}
		}
		if len(thu.Events) != 2 || !slices.Contains(riders, f.riderA) || !slices.Contains(riders, f.riderB) {
			t.Errorf("Thursday's events: %+v, want A's bus validation and B's unpriced one", thu.Events)
		}
		// CSV: a header and a row per event.
		status, _, body := f.do(t, "GET", "auditor", "/v1/batches/2/events", "Accept", "text/csv")
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if status != 200 || err != nil || len(rows) != len(full.Events)+1 {
			t.Fatalf("events CSV: %d, %v, %d rows for %d events", status, err, len(rows), len(full.Events))
		}
		for i, e := range full.Events {
			if r := rows[i+1]; r[2] != e.ID || r[3] != e.Leaf || r[10] != e.Rider || r[16] != strconv.FormatInt(e.Fare.Minor, 10) || r[20] != e.Unpriced {
				t.Errorf("CSV row %v, JSON %+v", r, e)
			}
		}
	})
	t.Run("other-cursors", func(t *testing.T) {
		// Terminals and operators page by id too.
		var terms []string
		after := ""
		for range 10 {
			var p struct {
				Terminals []clearing.TerminalView `json:"terminals"`
				NextAfter string                  `json:"next_after"`
			}
			f.getJSON(t, "auditor", "/v1/terminals?limit=1&after="+after, &p)
			for _, tv := range p.Terminals {
				terms = append(terms, tv.ID)
			}
			if after = p.NextAfter; after == "" {
				break
			}
		}
		if fmt.Sprint(terms) != "[bus-s01-g1 bus-s99-g1 metro-s01-g1 metro-s02-g1]" {
			t.Errorf("terminals paged one by one: %v", terms)
		}
		var metro struct{ Terminals []clearing.TerminalView }
		f.getJSON(t, "auditor", "/v1/terminals?operator=metro", &metro)
		if len(metro.Terminals) != 2 {
			t.Errorf("?operator=metro: %+v", metro.Terminals)
		}
		var ops struct {
			Operators []clearing.OperatorView `json:"operators"`
			NextAfter string                  `json:"next_after"`
		}
		f.getJSON(t, "auditor", "/v1/operators?limit=1", &ops)
		if len(ops.Operators) != 1 || ops.Operators[0].ID != "bus" || ops.NextAfter != "bus" {
			t.Errorf("operators page 1: %+v", ops)
		}
		f.getJSON(t, "auditor", "/v1/operators?limit=1&after=bus", &ops)
		if len(ops.Operators) != 1 || ops.Operators[0].ID != "ferry" || ops.NextAfter != "ferry" {
			t.Errorf("operators page 2: %+v", ops)
		}
		ops.NextAfter = ""
		f.getJSON(t, "auditor", "/v1/operators?limit=1&after=ferry", &ops)
		if len(ops.Operators) != 1 || ops.Operators[0].ID != "metro" || ops.NextAfter != "" {
			t.Errorf("operators page 3: %+v", ops)
		}
	})
	// Last (the answers are final): metro acknowledges batch 1, bus
	// disputes batch 2 and ferry, with no net in either, disputes batch 1
	// on chain; the batch view shows all three.
	t.Run("answered", func(t *testing.T) {
		led, ok := f.cl.Ledger().(*ledger.Embedded)
		if !ok {
			t.Fatalf("the priced city runs on %T, want the embedded chain", f.cl.Ledger())
		}
		ctx := context.Background()
		reason := [32]byte{0xd1, 0x5b}
		// An operator without a net in a batch may answer it too (the
		// contract lets any operator answer any batch): its answer must
		// show like any other.
		quiet := ""
		for _, op := range f.cl.Registry().OperatorIDs() {
			if !hasNetIn(b1, op) {
				quiet = op
			}
		}
		if quiet == "" {
			t.Fatalf("batch 1 has a net for every operator (%+v): the test needs one without", b1.Amounts)
		}
		for _, a := range []struct {
			op      string
			batch   uint64
			dispute bool
		}{{"metro", 1, false}, {"bus", 2, true}, {quiet, 1, true}, {"tram", 2, true}} {
			// tram is admitted on chain but not in the registry file.
			acct, err := led.OperatorAccount(ctx, a.op)
			if err != nil {
				t.Fatal(err)
			}
			if a.dispute {
				_, err = acct.DisputeBatch(ctx, a.batch, reason)
			} else {
				_, err = acct.AcknowledgeBatch(ctx, a.batch)
			}
			if err != nil {
				t.Fatalf("%s answering batch %d: %v", a.op, a.batch, err)
			}
		}
		want := map[uint64]map[string]clearing.AnswerView{
			1: {"metro": {Operator: "metro", Answer: "acknowledged"}, quiet: {Operator: quiet, Answer: "disputed", ReasonHash: "0x" + hex.EncodeToString(reason[:])}},
			2: {"bus": {Operator: "bus", Answer: "disputed", ReasonHash: "0x" + hex.EncodeToString(reason[:])},
				"tram": {Operator: "tram", Answer: "disputed", ReasonHash: "0x" + hex.EncodeToString(reason[:])}},
		}
		for id, answers := range want {
			var b clearing.BatchView
			f.getJSON(t, "metro", "/v1/batches/"+strconv.FormatUint(id, 10), &b)
			seen := 0
			for _, an := range b.Answers {
				w, ok := answers[an.Operator]
				if ok {
					seen++
				} else {
					w = clearing.AnswerView{Operator: an.Operator, Answer: "none"}
				}
				if an != w {
					t.Errorf("batch %d: answer %+v, want %+v", id, an, w)
				}
			}
			if seen != len(answers) {
				t.Errorf("batch %d: answers %+v, want %+v among them", id, b.Answers, answers)
			}
		}
		var mine batchesPage
		f.getJSON(t, quiet, "/v1/batches?operator="+quiet, &mine)
		if got := ids(mine.Batches, func(clearing.BatchView) bool { return true }); !slices.Contains(got, 1) {
			t.Errorf("?operator=%s lists batches %v: want batch 1, which it disputed without a net in it", quiet, got)
		}
		_, _, body := f.do(t, http.MethodGet, quiet, "/v1/batches?format=csv")
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, row := range rows[1:] {
			if row[0] == "1" && row[8] == quiet {
				found = row[9] == "" && row[12] == "disputed"
			}
		}
		if !found {
			t.Errorf("batches CSV has no row for %s's dispute of batch 1 with empty net columns:\n%s", quiet, body)
		}
	})
}

func hasNetIn(b clearing.BatchView, op string) bool {
	for _, am := range b.Amounts {
		if am.Operator == op {
			return true
		}
	}
	return false
}

func ids(bs []clearing.BatchView, keep func(clearing.BatchView) bool) []uint64 {
	var out []uint64
	for _, b := range bs {
		if keep(b) {
			out = append(out, b.ID)
		}
	}
	return out
}

func equalIDs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestAPIPagesEndWithoutAnEmptyPage: a list whose last page is exactly
// full says there is no next page, instead of sending the client for an
// empty one.
func TestAPIPagesEndWithoutAnEmptyPage(t *testing.T) {
	f := newPricedAPI(t)
	for _, tok := range []string{"stolen-1", "stolen-2"} {
		if err := f.cl.Deny(context.Background(), fare.Card, tok, "stolen"); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		path, items string
	}{
		{"/v1/balances", "balances"},
		{"/v1/deny", "entries"},
		{"/v1/operators", "operators"},
		{"/v1/terminals", "terminals"},
		{"/v1/batches", "batches"},
	} {
		var all map[string]any
		f.getJSON(t, "auditor", c.path+"?limit=1000", &all)
		n := len(all[c.items].([]any))
		if n < 2 {
			t.Fatalf("%s: %d %s, want a few", c.path, n, c.items)
		}
		var full, short map[string]any
		f.getJSON(t, "auditor", fmt.Sprintf("%s?limit=%d", c.path, n), &full)
		if len(full[c.items].([]any)) != n || full["next_after"] != nil {
			t.Errorf("%s?limit=%d (all of them): %d %s, next_after %v, want none", c.path, n, len(full[c.items].([]any)), c.items, full["next_after"])
		}
		f.getJSON(t, "auditor", fmt.Sprintf("%s?limit=%d", c.path, n-1), &short)
		if short["next_after"] == nil {
			t.Errorf("%s?limit=%d (one short): no next_after", c.path, n-1)
		}
	}
}
