package clearing_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/faregate/faregate/clearing"
)

// TestAPIStatements runs the revenue statements against the priced city
// (newPricedAPI): totals equal each batch's net per operator, in the store
// and on chain; CSV matches JSON; the bus is credited back part of its fare
// once the metro leg completes the journey; and the refusals.
func TestAPIStatements(t *testing.T) {
	f := newPricedAPI(t)
	t.Run("totals", func(t *testing.T) { testStatementTotals(t, f) })
	t.Run("csv", func(t *testing.T) { testStatementCSV(t, f) })
	t.Run("refusals", func(t *testing.T) { testStatementRefusals(t, f) })
	t.Run("zones", func(t *testing.T) { testAgencyZone(t, f) })
}

// testAgencyZone: every time the batch, event and statement views show is
// in the feed's agency timezone (Europe/Berlin, +01:00 in December), in
// JSON and CSV alike.
func testAgencyZone(t *testing.T, f *pricedAPI) {
	var batches struct {
		Batches []struct {
			ID          uint64 `json:"id"`
			PeriodStart string `json:"period_start"`
			PeriodEnd   string `json:"period_end"`
			Commit      struct {
				At string `json:"at"`
			} `json:"commit"`
		} `json:"batches"`
	}
	f.getJSON(t, "auditor", "/v1/batches", &batches)
	var events struct {
		Events []struct {
			ID         string `json:"id"`
			DeviceTime string `json:"device_time"`
			AppliedAt  string `json:"applied_at"`
		} `json:"events"`
	}
	f.getJSON(t, "auditor", "/v1/batches/1/events", &events)
	var one struct {
		DeviceTime string `json:"device_time"`
		AppliedAt  string `json:"applied_at"`
	}
	f.getJSON(t, "auditor", "/v1/events/"+f.out1.ID.String(), &one)
	_, _, csvBody := f.do(t, http.MethodGet, "auditor", "/v1/batches/1/events?format=csv")
	rows, err := csv.NewReader(bytes.NewReader(csvBody)).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("batch 1 events CSV: %d rows, %v", len(rows), err)
	}
	times := map[string]string{"event device_time": one.DeviceTime, "event applied_at": one.AppliedAt,
		"CSV device_time": rows[1][12], "CSV applied_at": rows[1][19]}
	for _, b := range batches.Batches {
		times[fmt.Sprintf("batch %d period_start", b.ID)] = b.PeriodStart
		times[fmt.Sprintf("batch %d period_end", b.ID)] = b.PeriodEnd
		times[fmt.Sprintf("batch %d commit at", b.ID)] = b.Commit.At
	}
	for _, e := range events.Events {
		times["batch event "+e.ID+" device_time"] = e.DeviceTime
		times["batch event "+e.ID+" applied_at"] = e.AppliedAt
	}
	if len(events.Events) == 0 || len(batches.Batches) == 0 {
		t.Fatalf("%d batches, %d events in batch 1", len(batches.Batches), len(events.Events))
	}
	for what, v := range times {
		if !strings.HasSuffix(v, "+01:00") {
			t.Errorf("%s %q: want the agency's zone, +01:00", what, v)
		}
	}
}

func statementPath(batch uint64, op string) string {
	return fmt.Sprintf("/v1/batches/%d/statements/%s", batch, op)
}

// testStatementTotals: for every batch and operator, the statement's
// entries sum to its total, which is the batch's net for the operator as
// /v1/batches shows it and as the chain holds it.
func testStatementTotals(t *testing.T, f *pricedAPI) {
	var batches struct{ Batches []clearing.BatchView }
	f.getJSON(t, "auditor", "/v1/batches", &batches)
	if len(batches.Batches) != 2 {
		t.Fatalf("%d batches, want 2", len(batches.Batches))
	}
	riders := map[string]bool{f.riderA: true, f.riderB: true}
	for _, b := range batches.Batches {
		nets := map[string]int64{}
		for _, am := range b.Amounts {
			nets[am.Operator] = am.Net.Minor
		}
		for _, op := range []string{"bus", "metro"} {
			var s clearing.StatementView
			f.getJSON(t, "auditor", statementPath(b.ID, op), &s)
			var sum, charges, credits int64
			for _, e := range s.Entries {
				sum += e.Share.Minor
				if e.Share.Minor > 0 {
					charges += e.Share.Minor
				} else {
					credits += e.Share.Minor
				}
				if !riders[e.Rider] || len(e.Event) != 32 || !strings.HasPrefix(e.Leaf, "0x") || e.Share.Minor == 0 || e.Share.Currency != "EUR" || !strings.HasSuffix(e.Time, "+01:00") {
					t.Errorf("batch %d %s: entry %+v", b.ID, op, e)
				}
			}
			if s.Batch != b.ID || s.Operator != op || s.Count != len(s.Entries) || s.Root != b.Root || !s.Committed || !strings.HasPrefix(s.TxHash, "0x") {
				t.Errorf("batch %d %s: statement header %+v, batch %+v", b.ID, op, s, b)
			}
			if s.Total.Minor != sum || s.Charges.Minor != charges || s.Credits.Minor != credits {
				t.Errorf("batch %d %s: total %d charges %d credits %d; entries sum to %d (%d, %d)", b.ID, op, s.Total.Minor, s.Charges.Minor, s.Credits.Minor, sum, charges, credits)
			}
			if s.Total.Minor != nets[op] || s.BatchNet.Minor != nets[op] || s.OnChainNet == nil || s.OnChainNet.Minor != nets[op] || !s.Reconciled {
				t.Errorf("batch %d %s: total %+v, batch net %+v, on chain %+v, reconciled %v; /v1/batches says %d",
					b.ID, op, s.Total, s.BatchNet, s.OnChainNet, s.Reconciled, nets[op])
			}
			// The operator sees the same statement as the auditor.
			var own clearing.StatementView
			f.getJSON(t, op, statementPath(b.ID, op), &own)
			if a, o := mustJSON(t, s), mustJSON(t, own); a != o {
				t.Errorf("batch %d: %s's own statement differs from the auditor's:\n%s\n%s", b.ID, op, o, a)
			}
		}
	}
	// Batch 2: A's metro exit completes the bus-to-metro journey; the bus
	// gets less than its 1.80 fare alone, so the exit credits the bus.
	var bus clearing.StatementView
	f.getJSON(t, "auditor", statementPath(2, "bus"), &bus)
	var credit *clearing.StatementEntry
	for i, e := range bus.Entries {
		if e.Event == f.out1.ID.String() {
			credit = &bus.Entries[i]
		}
	}
	if credit == nil || credit.Share.Minor >= 0 || credit.Terminal != "metro-s02-g1" || credit.TerminalOperator != "metro" || credit.Rider != f.riderA ||
		credit.Direction != "exit" || credit.Time != "2026-12-02T11:45:00+01:00" || !strings.HasPrefix(credit.Share.Decimal, "-") || bus.Credits.Minor >= 0 {
		t.Errorf("batch 2 bus statement %+v: want A's metro exit as a credit to the bus", bus)
	}
	// The metro's own exit shows its time as its event does, fraction and
	// all, so statements and event lists join on time.
	var metro clearing.StatementView
	f.getJSON(t, "metro", statementPath(2, "metro"), &metro)
	var ev struct {
		DeviceTime string `json:"device_time"`
	}
	f.getJSON(t, "metro", "/v1/events/"+f.out1.ID.String(), &ev)
	found := false
	for _, e := range metro.Entries {
		if e.Event == f.out1.ID.String() {
			found = true
			if e.Time != "2026-12-02T11:45:00.25+01:00" || e.Time != ev.DeviceTime {
				t.Errorf("metro's statement shows its exit at %q, its event at %q: want both 2026-12-02T11:45:00.25+01:00", e.Time, ev.DeviceTime)
			}
		}
	}
	if !found {
		t.Errorf("batch 2 metro statement %+v: no entry for A's exit", metro)
	}
	// The rider's day splits the journey the same way the batches did.
	var day clearing.FareDayView
	f.getJSON(t, "auditor", riderPath(f.riderA)+"/days/2026-12-02", &day)
	var busShare int64
	for _, sh := range day.Journeys[0].Shares {
		if sh.Operator == "bus" {
			busShare = sh.Amount.Minor
		}
	}
	var b1 clearing.StatementView
	f.getJSON(t, "auditor", statementPath(1, "bus"), &b1)
	if b1.Total.Minor+credit.Share.Minor != busShare {
		t.Errorf("bus: batch 1 %d + credit %d, the journey's bus share %d", b1.Total.Minor, credit.Share.Minor, busShare)
	}
}

// testStatementCSV: ?format=csv and Accept: text/csv give CSV that
// encoding/csv reads and that says what the JSON says, totals included.
func testStatementCSV(t *testing.T, f *pricedAPI) {
	for _, c := range []struct {
		party, path string
		hdr         []string
	}{
		{"auditor", statementPath(2, "bus") + "?format=csv", nil},
		{"auditor", statementPath(2, "metro"), []string{"Accept", "text/csv"}},
		{"metro", statementPath(1, "metro"), []string{"Accept", "text/html, text/csv;q=0.9, */*;q=0.1"}},
		{"bus", statementPath(1, "bus") + "?format=csv", []string{"Accept", "application/json"}},
	} {
		var js clearing.StatementView
		f.getJSON(t, c.party, strings.Split(c.path, "?")[0], &js)
		status, hdr, body := f.do(t, http.MethodGet, c.party, c.path, c.hdr...)
		if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") || !strings.Contains(hdr.Get("Content-Disposition"), fmt.Sprintf("batch-%d-%s.csv", js.Batch, js.Operator)) {
			t.Fatalf("%s %v as %s: %d %v: %s", c.path, c.hdr, c.party, status, hdr, body)
		}
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatalf("%s: CSV does not parse: %v\n%s", c.path, err, body)
		}
		head := strings.Join(rows[0], ",")
		if head != "record,batch,operator,apply_index,event,leaf,terminal,terminal_operator,stop,direction,time,rider,share_minor,share_decimal,currency,note" {
			t.Fatalf("%s: header %s", c.path, head)
		}
		col := map[string]int{}
		for i, name := range rows[0] {
			col[name] = i
		}
		rows = rows[1:]
		// Entries, unpriced events, then one row per summary figure.
		summary := []string{"charges", "credits", "total", "batch_net", "zero_share_events", "reconciled", "period", "root", "committed"}
		if js.OnChainNet != nil || js.OnChainError != "" {
			summary = slices.Insert(summary, 4, "on_chain_net")
		}
		if js.TxHash != "" {
			summary = append(summary, "tx_hash")
		}
		if len(rows) != len(js.Entries)+len(js.Unpriced)+len(summary) {
			t.Fatalf("%s: %d rows for %d entries, %d unpriced and %v", c.path, len(rows), len(js.Entries), len(js.Unpriced), summary)
		}
		var sum int64
		for i, e := range js.Entries {
			r := rows[i]
			want := []string{"entry", strconv.FormatUint(js.Batch, 10), js.Operator, strconv.FormatUint(e.ApplyIndex, 10), e.Event, e.Leaf, e.Terminal,
				e.TerminalOperator, e.Stop, e.Direction, e.Time, e.Rider, strconv.FormatInt(e.Share.Minor, 10), e.Share.Decimal, e.Share.Currency, ""}
			if strings.Join(r, ",") != strings.Join(want, ",") {
				t.Errorf("%s row %d: %v, JSON says %v", c.path, i, r, want)
			}
			minor, err := strconv.ParseInt(r[col["share_minor"]], 10, 64)
			if err != nil {
				t.Errorf("%s row %d: share_minor %q: %v", c.path, i, r[col["share_minor"]], err)
			}
			sum += minor
		}
		if js.Total.Minor != sum {
			t.Errorf("%s: JSON total %+v, entry rows sum to %d", c.path, js.Total, sum)
		}
		for i, u := range js.Unpriced {
			r := rows[len(js.Entries)+i]
			if r[col["record"]] != "unpriced" || r[col["event"]] != u.Event || r[col["note"]] != u.Reason || r[col["share_minor"]] != "0" {
				t.Errorf("%s: unpriced row %v, JSON %+v", c.path, r, u)
			}
		}
		if js.Batch == 2 && js.Operator == "bus" {
			// B's tap at a stop the feed does not know.
			if len(js.Unpriced) != 1 || js.Unpriced[0].Event != f.unpriced.ID.String() || !strings.Contains(js.Unpriced[0].Reason, "unknown stop") {
				t.Errorf("%s: unpriced events %+v, want B's tap at bus-s99", c.path, js.Unpriced)
			}
		} else if len(js.Unpriced) != 0 {
			t.Errorf("%s: unpriced events %+v, want none", c.path, js.Unpriced)
		}
		byRecord := map[string][]string{}
		for i, r := range rows[len(js.Entries)+len(js.Unpriced):] {
			if r[col["record"]] != summary[i] {
				t.Fatalf("%s: summary row %d is %v, want record %s", c.path, i, r, summary[i])
			}
			byRecord[r[col["record"]]] = r
		}
		for _, m := range []struct {
			record string
			money  *clearing.Money
		}{{"charges", &js.Charges}, {"credits", &js.Credits}, {"total", &js.Total}, {"batch_net", &js.BatchNet}, {"on_chain_net", js.OnChainNet}} {
			r, ok := byRecord[m.record]
			if !ok || m.money == nil {
				continue
			}
			if r[col["share_minor"]] != strconv.FormatInt(m.money.Minor, 10) || r[col["share_decimal"]] != m.money.Decimal || r[col["currency"]] != "EUR" {
				t.Errorf("%s: %s row %v, JSON %+v", c.path, m.record, r, *m.money)
			}
		}
		if r := byRecord["zero_share_events"]; r[col["note"]] != strconv.Itoa(js.ZeroShares) {
			t.Errorf("%s: zero_share_events row %v, JSON %d", c.path, r, js.ZeroShares)
		}
		if r := byRecord["reconciled"]; r[col["note"]] != strconv.FormatBool(js.Reconciled) || !js.Reconciled {
			t.Errorf("%s: reconciled row %v, JSON %v", c.path, r, js.Reconciled)
		}
		// The file names the batch on chain by itself.
		for record, want := range map[string]string{"period": js.PeriodStart + "/" + js.PeriodEnd, "root": js.Root,
			"committed": strconv.FormatBool(js.Committed), "tx_hash": js.TxHash} {
			if r, ok := byRecord[record]; (ok || want != "") && (r == nil || r[col["note"]] != want) {
				t.Errorf("%s: %s row %v, JSON %q", c.path, record, r, want)
			}
		}
	}
	// JSON unless CSV is asked for.
	for _, accept := range []string{"", "application/json", "text/csv;q=0", "*/*"} {
		status, hdr, body := f.do(t, http.MethodGet, "auditor", statementPath(1, "bus"), "Accept", accept)
		var v map[string]any
		if status != 200 || hdr.Get("Content-Type") != "application/json" || json.Unmarshal(body, &v) != nil {
			t.Errorf("Accept %q: %d %s: %s", accept, status, hdr.Get("Content-Type"), body)
		}
	}
}

// testStatementRefusals: from the attacker's side. An operator cannot read
// another's statement (even one that does not exist); nobody without a
// token; bad batch ids, operator ids and formats are named; unknown
// batches and operators are 404; anything but GET is 405.
func testStatementRefusals(t *testing.T, f *pricedAPI) {
	for _, c := range []struct {
		method, party, path string
		hdr                 []string
		status              int
		want                string
	}{
		{"GET", "metro", statementPath(1, "bus"), nil, 403, `may see operator "metro" only, not "bus"`},
		{"GET", "bus", statementPath(2, "metro") + "?format=csv", nil, 403, `not "metro"`},
		{"GET", "bus", statementPath(2, "metro"), []string{"Accept", "text/csv"}, 403, `not "metro"`},
		{"GET", "metro", statementPath(99, "bus"), nil, 403, `not "bus"`},
		{"GET", "metro", statementPath(1, "tram"), nil, 403, `not "tram"`},
		{"GET", "none", statementPath(1, "bus"), nil, 401, "missing bearer token"},
		{"GET", "auditor", "/v1/batches/abc/statements/bus", nil, 400, `batch id "abc": want a positive integer`},
		{"GET", "auditor", "/v1/batches/0/statements/bus", nil, 400, `batch id "0"`},
		{"GET", "bus", "/v1/batches/-1/statements/bus", nil, 400, `batch id "-1"`},
		{"GET", "auditor", "/v1/batches/99999999999999999999/statements/bus", nil, 400, `batch id "99999999999999999999": out of range: batch ids are 1 to 4611686018427387904`},
		{"GET", "auditor", "/v1/batches/4611686018427387905/statements/bus", nil, 400, `out of range: batch ids are 1 to 4611686018427387904`},
		{"GET", "auditor", "/v1/batches?from=4611686018427387905", nil, 400, `is outside [1, 4611686018427387904]`},
		// One resource, one path (an outside test read batch 1 as /01).
		{"GET", "auditor", "/v1/batches/01/statements/bus", nil, 400, `batch id "01": write it without leading zeros (1)`},
		{"GET", "auditor", "/v1/batches?operator=nosuch", nil, 404, `operator "nosuch": clearing's registry does not list it`},
		// A long id is not echoed back whole.
		{"GET", "auditor", statementPath(1, strings.Repeat("a", 5000)), nil, 400, `... (5000 bytes)`},
		{"GET", "metro", statementPath(1, strings.Repeat("b", 5000)), nil, 403, `... (5000 bytes)`},
		{"GET", "auditor", "/v1/no-such/" + strings.Repeat("c", 5000), nil, 404, `... (5012 bytes) (see /v1/openapi.json)`},
		{"GET", "auditor", "/v1/accounts/passenger/card/" + strings.Repeat("d", 5000), nil, 400, `account: rider "passenger/card/ddd`},
		{"GET", "auditor", "/v1/accounts/passenger/card/" + strings.Repeat("d", 5000), nil, 400, `... (5015 bytes)": want passenger/card/0x`},
		{"GET", "auditor", "/v1/accounts/" + strings.Repeat("e", 5000), nil, 400, `... (5000 bytes)": names start with operator/`},
		{"GET", "auditor", "/v1/accounts/operator/" + strings.Repeat("f", 5000), nil, 404, `... (5009 bytes)": the journal has no such account`},
		{"GET", "auditor", "/v1/batches?limit=99999999999999999999", nil, 400, `"99999999999999999999" is out of range: want an integer in [1, 1000]`},
		{"GET", "desk", "/v1/batches?operator=metro", nil, 403, `token "desk" is a concessions desk's, which sees no operator's figures: leave out ?operator=`},
		{"GET", "auditor", statementPath(99, "bus"), nil, 404, "batch 99: not found"},
		{"GET", "auditor", statementPath(1, "tram"), nil, 404, `operator "tram": not in the registry and no postings in batch 1`},
		{"GET", "auditor", statementPath(1, "no.such"), nil, 400, `operator id "no.such"`},
		{"GET", "auditor", statementPath(1, "bus") + "?format=xml", nil, 400, `format "xml": want json or csv`},
		{"POST", "auditor", statementPath(1, "bus"), nil, 405, "method not allowed"},
		{"DELETE", "bus", statementPath(1, "bus"), nil, 405, "method not allowed"},
		{"POST", "metro", statementPath(1, "bus"), nil, 403, `not "bus"`},
	} {
		status, hdr, body := f.do(t, c.method, c.party, c.path, c.hdr...)
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		if status != c.status || !strings.Contains(e.Error, c.want) || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s %v as %s: %d %s %s, want %d with an error containing %q", c.method, c.path, c.hdr, c.party, status, hdr.Get("Content-Type"), body, c.status, c.want)
		}
		if status == 405 && hdr.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: 405 with Allow %q", c.method, c.path, hdr.Get("Allow"))
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
