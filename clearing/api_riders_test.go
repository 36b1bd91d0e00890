package clearing_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// pricedAPI is the settlement API over a real clearing house (embedded
// NATS, Badger, chain) pricing live from the simulator city's GTFS feed,
// fed by real terminals: a bus validator and two metro gates.
//
// Batch 1: rider A validates on the bus (1.80) and enters the metro.
// Batch 2: A leaves the metro (the journey comes to 1.80 + 2.50 - 0.60 =
// 3.70: the bus's 1.80 is reduced to its share, a credit to the rider, and
// the metro gets the rest), A enters the metro again at 18:00 without
// leaving, rides the bus on Thursday; rider B rides the metro once. Every
// tap claims the concession category, which A and B are not enrolled in.
type pricedAPI struct {
	cl        *running
	srv       *httptest.Server
	tokens    map[string]string // party -> token
	ts        *clearing.TokenStore
	riderA    string // passenger/card/0x...
	riderB    string
	busTap    fare.Event // A's bus validation
	in1, out1 fare.Event // A's metro entry and exit
	late      fare.Event // A's 18:00 entry, waiting for its exit
	unpriced  fare.Event // B's bus validation at a stop the feed does not know
}

// pricedDay is a time on Wednesday 2026-12-02 (day 3: Thursday), Berlin.
func pricedDay(day, hh, mm int) time.Time {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		panic(err)
	}
	return time.Date(2026, 12, day, hh, mm, 0, 0, berlin)
}

func newPricedAPI(t *testing.T) *pricedAPI {
	t.Helper()
	dir := t.TempDir()
	feed, err := gtfs.LoadPath("journeys/testdata/city")
	if err != nil {
		t.Fatal(err)
	}
	reg := &clearing.Registry{Currency: "EUR", Operators: []clearing.OperatorConfig{
		{ID: "metro", Name: "Metro", FlatFare: 250}, {ID: "bus", Name: "Bus", FlatFare: 180},
		{ID: "ferry", Name: "Ferry", FlatFare: 200}}} // ferry: no terminals here, no net in any batch
	keys := map[string]ed25519.PrivateKey{}
	for i, term := range []struct{ id, op, stop, network, route string }{
		{"bus-s01-g1", "bus", "bus-s01", "", "bus-L1"},
		{"metro-s01-g1", "metro", "metro-s01", "metro", ""},
		{"metro-s02-g1", "metro", "metro-s02", "metro", ""},
		// A gate at a stop the feed does not know: its taps are applied
		// unpriced, at zero, and say so.
		{"bus-s99-g1", "bus", "bus-s99", "", "bus-L1"},
	} {
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[1] = byte(i+1), 0xfe
		keys[term.id] = ed25519.NewKeyFromSeed(seed)
		reg.Terminals = append(reg.Terminals, provenTerminal(keys[term.id], term.id, term.op, term.stop))
		reg.Legs = append(reg.Legs, clearing.TerminalLeg{Terminal: term.id, Network: term.network, Route: term.route})
	}
	b, _ := json.Marshal(reg)
	if reg, err = clearing.ParseRegistry(b); err != nil {
		t.Fatal(err)
	}
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour, Feed: feed, FeedVersion: "city-test"})
	t.Cleanup(func() { cl.stop(t) })
	terms := map[string]*runningTerminal{}
	for _, id := range []string{"bus-s01-g1", "metro-s01-g1", "metro-s02-g1", "bus-s99-g1"} {
		rt := startTerminal(t, dir, cl.NATSURL(), reg, keys, id)
		t.Cleanup(func() { rt.stop(t) })
		terms[id] = rt
	}
	f := &pricedAPI{cl: cl, tokens: map[string]string{}, riderA: cl.RiderAccount(fare.Card, "card-a"), riderB: cl.RiderAccount(fare.Card, "card-b")}
	tapAt := func(term, card string, dir fare.Direction, at time.Time) fare.Event {
		ev, err := terms[term].Tap(context.Background(), terminal.Tap{Gate: "g1", Direction: dir, Media: fare.Card, Token: card, RiderCategory: "concession", Time: at})
		if err != nil {
			t.Fatalf("tap at %s: %v", term, err)
		}
		return ev
	}
	settle := func() {
		for id, rt := range terms {
			waitFor(t, "terminal "+id+" confirmed", 15*time.Second, func() bool { return rt.Pending() == 0 })
		}
		if err := cl.Settle(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	f.busTap = tapAt("bus-s01-g1", "card-a", fare.Validate, pricedDay(2, 11, 0))
	f.in1 = tapAt("metro-s01-g1", "card-a", fare.Entry, pricedDay(2, 11, 30))
	settle()
	// The exit has a fraction of a second: the metro's statement shows it
	// as the event does, the bus's (another operator's tap) to the second.
	f.out1 = tapAt("metro-s02-g1", "card-a", fare.Exit, pricedDay(2, 11, 45).Add(250*time.Millisecond))
	tapAt("metro-s01-g1", "card-b", fare.Entry, pricedDay(2, 12, 0))
	tapAt("metro-s02-g1", "card-b", fare.Exit, pricedDay(2, 12, 10))
	f.late = tapAt("metro-s01-g1", "card-a", fare.Entry, pricedDay(2, 18, 0))
	tapAt("bus-s01-g1", "card-a", fare.Validate, pricedDay(3, 9, 0))
	f.unpriced = tapAt("bus-s99-g1", "card-b", fare.Validate, pricedDay(3, 9, 30))
	settle()

	ts, err := clearing.LoadTokenStore(filepath.Join(dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct {
		party    string
		role     clearing.Role
		operator string
	}{{"metro", clearing.RoleOperator, "metro"}, {"bus", clearing.RoleOperator, "bus"}, {"ferry", clearing.RoleOperator, "ferry"}, {"auditor", clearing.RoleAuditor, ""}, {"desk", clearing.RoleConcessions, ""}} {
		if f.tokens[g.party], err = ts.Issue(g.role, g.operator, g.party); err != nil {
			t.Fatal(err)
		}
	}
	f.ts = ts
	f.srv = httptest.NewServer(clearing.NewAPI(cl.Clearing, nil, clearing.WithTokens(ts)))
	t.Cleanup(f.srv.Close)
	return f
}

// do sends method path as party ("none": no token) with extra headers
// (name, value pairs) and returns status, headers and body.
func (f *pricedAPI) do(t *testing.T, method, party, path string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if party != "none" {
		req.Header.Set("Authorization", "Bearer "+f.tokens[party])
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s as %s: %v", method, path, party, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// getJSON GETs path as party, wants 200 and decodes the body into v.
func (f *pricedAPI) getJSON(t *testing.T, party, path string, v any) {
	t.Helper()
	status, _, body := f.do(t, http.MethodGet, party, path)
	if status != http.StatusOK {
		t.Fatalf("GET %s as %s: %d: %s", path, party, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s as %s: %v: %s", path, party, err, body)
	}
}

// riderPath is a rider's path in the API.
func riderPath(rider string) string { return "/v1/riders/" + strings.TrimPrefix(rider, "passenger/") }

// TestAPIRiders runs the rider view against the priced city, then the
// refusals from the side of an operator, of nobody and of bad requests.
func TestAPIRiders(t *testing.T) {
	f := newPricedAPI(t)
	t.Run("day", func(t *testing.T) { testRiderDay(t, f) })
	t.Run("overview-and-pages", func(t *testing.T) { testRiderOverview(t, f) })
	t.Run("refusals", func(t *testing.T) { testRiderRefusals(t, f) })
}

// testRiderDay: the bus-to-metro journey shows both legs with their taps,
// the transfer, the products, both operators' shares summing to the
// charge; the waiting entry; the day's totals; times in Berlin time.
func testRiderDay(t *testing.T, f *pricedAPI) {
	var d clearing.FareDayView
	f.getJSON(t, "auditor", riderPath(f.riderA)+"/days/2026-12-02", &d)
	if d.Date != "2026-12-02" || d.FeedVersion != "city-test" || !d.Explanation.Matches || d.Explanation.FeedVersion != "city-test" || d.Closed {
		t.Fatalf("day %s, feed %q, explanation %+v, closed %v", d.Date, d.FeedVersion, d.Explanation, d.Closed)
	}
	if d.Begins != "2026-12-02T04:00:00+01:00" || d.Ends != "2026-12-03T04:00:00+01:00" {
		t.Errorf("fare day from %s to %s, want 04:00 to 04:00 Berlin time", d.Begins, d.Ends)
	}
	// The dashboard's times too.
	var dash struct {
		At string `json:"at"`
	}
	f.getJSON(t, "auditor", "/v1/dashboard", &dash)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at, err := time.Parse(time.RFC3339, dash.At)
	if _, want := time.Now().In(berlin).Zone(); err != nil || time.Since(at) > time.Minute {
		t.Errorf("dashboard at %q: %v", dash.At, err)
	} else if _, off := at.Zone(); off != want {
		t.Errorf("dashboard at %q, want now in Berlin time (offset %d s)", dash.At, want)
	}
	// Priced at the feed's default category: the tap's claimed concession
	// is ignored.
	if d.RiderCategory != "adult" || d.FareMedium != "card" || d.Taps != 4 {
		t.Errorf("category %q, medium %q, %d taps", d.RiderCategory, d.FareMedium, d.Taps)
	}
	// The bus-to-metro journey is the day's first; the 18:00 entry waits
	// for its exit (whether it is charged meanwhile is the fare engine's
	// rule: then it is a journey of its own too).
	if len(d.Journeys) == 0 || len(d.Journeys) > 2 {
		t.Fatalf("%d journeys, want the bus-to-metro one (and perhaps the waiting entry): %+v", len(d.Journeys), d.Journeys)
	}
	var dayTotal int64
	for _, j := range d.Journeys {
		dayTotal += j.Charged.Minor
	}
	if d.Charged.Minor != dayTotal || d.Charged.Currency != "EUR" || d.Charged.Decimal != clearingDecimal(dayTotal) {
		t.Errorf("day charged %+v, its journeys %d", d.Charged, dayTotal)
	}
	j := d.Journeys[0]
	if len(j.Legs) != 2 {
		t.Fatalf("journey legs %+v, want bus then metro", j.Legs)
	}
	bus, metro := j.Legs[0], j.Legs[1]
	checks := []struct {
		what      string
		got, want any
	}{
		{"bus leg operator", bus.Operator, "bus"},
		{"bus leg route", bus.Route, "bus-L1"},
		{"bus leg from", bus.FromStop, "bus-s01"},
		{"bus leg start", bus.Start, "2026-12-02T11:00:00+01:00"},
		{"bus leg entry event", bus.Entry != nil && bus.Entry.Event == f.busTap.ID.String() && bus.Entry.Kind == "validation" && bus.Entry.Terminal == "bus-s01-g1", true},
		{"bus leg exit", bus.Exit == nil, true},
		{"metro leg operator", metro.Operator, "metro"},
		{"metro leg network", metro.Network, "metro"},
		{"metro leg stops", metro.FromStop + ">" + metro.ToStop, "metro-s01>metro-s02"},
		{"metro leg times", metro.Start + " " + metro.End, "2026-12-02T11:30:00+01:00 2026-12-02T11:45:00.25+01:00"},
		{"metro leg entry", metro.Entry != nil && metro.Entry.Event == f.in1.ID.String() && metro.Entry.Kind == "entry" && metro.Entry.Terminal == "metro-s01-g1", true},
		{"metro leg exit", metro.Exit != nil && metro.Exit.Event == f.out1.ID.String() && metro.Exit.Kind == "exit" && metro.Exit.Terminal == "metro-s02-g1", true},
		{"metro leg complete", metro.Incomplete, false},
		{"fare legs", len(j.FareLegs), 2},
		{"bus product", j.FareLegs[0].Product, "bus-offpeak"},
		{"metro product", j.FareLegs[1].Product, "metro-offpeak-1zone"},
		{"transfers", len(j.Transfers), 1},
		{"journey fare", j.Fare.Minor, int64(370)},
		{"journey charged", j.Charged.Minor, int64(370)},
		{"capped", j.CappedBy, ""},
		{"shares", len(j.Shares), 2},
		{"pending entry", d.PendingEntry != nil && d.PendingEntry.Event == f.late.ID.String() && d.PendingEntry.Time == "2026-12-02T18:00:00+01:00" && d.PendingEntry.Terminal == "metro-s01-g1", true},
		{"summary", d.Summary.Pending == 1 && d.Summary.Journeys == len(d.Journeys), true},
		{"payments", len(d.Payments), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if tr := j.Transfers[0]; tr.FromLegGroup != "bus" || tr.ToLegGroup != "metro" || tr.Type != 1 || tr.Product != "transfer-discount" || tr.Price.Minor != -60 {
		t.Errorf("transfer %+v, want bus to metro, type 1, transfer-discount -0.60", tr)
	}
	shares := map[string]int64{}
	var sum int64
	for _, s := range j.Shares {
		shares[s.Operator] = s.Amount.Minor
		sum += s.Amount.Minor
	}
	if sum != j.Charged.Minor || shares["bus"] <= 0 || shares["metro"] <= 0 {
		t.Errorf("shares %v sum to %d, charged %d: want both operators paid", shares, sum, j.Charged.Minor)
	}
	// The day's bookings are its journeys' shares summed.
	booked, want := map[string]int64{}, map[string]int64{}
	for _, o := range d.Operators {
		booked[o.Operator] = o.Amount.Minor
	}
	for _, j := range d.Journeys {
		for _, s := range j.Shares {
			if s.Amount.Minor != 0 {
				want[s.Operator] += s.Amount.Minor
			}
		}
	}
	if fmt.Sprint(booked) != fmt.Sprint(want) {
		t.Errorf("day booked %v, journeys' shares %v", booked, want)
	}
	if len(d.Journeys) == 2 {
		late := d.Journeys[1]
		if len(late.Legs) != 1 || !late.Legs[0].Incomplete || late.Legs[0].Entry == nil || late.Legs[0].Entry.Event != f.late.ID.String() {
			t.Errorf("second journey %+v, want the waiting 18:00 entry", late)
		}
	}
}

// clearingDecimal renders EUR minor units as the API does.
func clearingDecimal(minor int64) string { return fare.Amount(minor).Format("EUR") }

// testRiderOverview: the overview's totals agree with the journal and the
// days; days page by date with a cursor and filter by range.
func testRiderOverview(t *testing.T, f *pricedAPI) {
	var v clearing.RiderView
	f.getJSON(t, "auditor", riderPath(f.riderA), &v)
	var wed, thu clearing.FareDayView
	f.getJSON(t, "auditor", riderPath(f.riderA)+"/days/2026-12-02", &wed)
	f.getJSON(t, "auditor", riderPath(f.riderA)+"/days/2026-12-03", &thu)
	// Thursday's bus at peak: 2.30.
	if thu.Charged.Minor != 230 || len(thu.Journeys) != 1 || thu.Journeys[0].FareLegs[0].Product != "bus-peak" || !thu.Explanation.Matches {
		t.Errorf("Thursday: %+v", thu)
	}
	total := wed.Charged.Minor + thu.Charged.Minor
	if v.Rider != f.riderA || v.Charged.Minor != total || v.DaysCharged.Minor != total || v.FareDays != 2 || v.FirstDay != "2026-12-02" || v.LastDay != "2026-12-03" {
		t.Errorf("overview %+v: want %d charged over 2 fare days", v, total)
	}
	if v.Account.Debits.Minor-v.Account.Credits.Minor != total {
		t.Errorf("journal account %+v, fare days %d", v.Account, total)
	}
	var ops int64
	for _, o := range v.Operators {
		ops += o.Amount.Minor
	}
	if ops != total || len(v.Operators) != 2 {
		t.Errorf("operators %+v, want bus and metro summing to %d", v.Operators, total)
	}
	if v.Payments == nil || len(v.Payments) != 0 || v.Debt.Owed.Minor != 0 || v.Debt.Owed.Currency != "EUR" || v.PaymentsStatus == "" || v.Days != riderPath(f.riderA)+"/days" {
		t.Errorf("payments %+v, debt %+v, status %q, days %q: want none yet, said so", v.Payments, v.Debt, v.PaymentsStatus, v.Days)
	}

	type page struct {
		Rider     string                 `json:"rider"`
		Days      []clearing.FareDayView `json:"days"`
		NextAfter string                 `json:"next_after"`
	}
	for _, c := range []struct {
		query string
		days  []string
		next  string
	}{
		{"", []string{"2026-12-02", "2026-12-03"}, ""},
		{"?limit=1", []string{"2026-12-02"}, "2026-12-02"},
		{"?limit=1&after=2026-12-02", []string{"2026-12-03"}, ""},
		{"?from=2026-12-03", []string{"2026-12-03"}, ""},
		{"?to=2026-12-02", []string{"2026-12-02"}, ""},
		{"?from=2026-12-04&to=2026-12-31", nil, ""},
		{"?from=2026-11-30&to=2026-12-06&after=2026-12-02", []string{"2026-12-03"}, ""},
		// Before 1970 (a negative fare day) is no later than any day (an
		// outside review got an empty page).
		{"?from=1969-12-31", []string{"2026-12-02", "2026-12-03"}, ""},
		{"?from=1900-01-01&to=2026-12-02", []string{"2026-12-02"}, ""},
	} {
		var p page
		f.getJSON(t, "auditor", riderPath(f.riderA)+"/days"+c.query, &p)
		var got []string
		for _, d := range p.Days {
			got = append(got, d.Date)
		}
		if strings.Join(got, ",") != strings.Join(c.days, ",") || p.NextAfter != c.next || p.Rider != f.riderA {
			t.Errorf("days%s: %v next %q, want %v next %q", c.query, got, p.NextAfter, c.days, c.next)
		}
	}
	var b clearing.RiderView
	f.getJSON(t, "auditor", riderPath(f.riderB), &b)
	if b.Charged.Minor != 250 || b.FareDays != 2 {
		t.Errorf("rider B: %+v, want 2.50 over two days", b)
	}
	// B's tap at a stop the feed does not know is booked in a journey of
	// its own, not charged and held for review, the stop named.
	var unknownDay clearing.FareDayView
	f.getJSON(t, "auditor", riderPath(f.riderB)+"/days/2026-12-03", &unknownDay)
	if unknownDay.Summary == nil || unknownDay.Summary.Unknown != 1 || unknownDay.Charged.Minor != 0 || len(unknownDay.Journeys) != 1 ||
		unknownDay.Journeys[0].FareKnown || unknownDay.Journeys[0].ChargedLegByLeg || !strings.Contains(unknownDay.Journeys[0].Reason, `unknown stop "bus-s99"`) ||
		len(unknownDay.Journeys[0].Legs) != 1 || unknownDay.Journeys[0].Legs[0].Entry == nil || unknownDay.Journeys[0].Legs[0].Entry.Event != f.unpriced.ID.String() {
		t.Errorf("rider B's day at an unknown stop: %+v", unknownDay)
	}
}

// testRiderRefusals: operators never see riders; no token is 401; bad
// rider ids, dates and parameters are 400 naming what is wrong; unknown
// riders and days 404; anything but GET 405.
func testRiderRefusals(t *testing.T, f *pricedAPI) {
	a := riderPath(f.riderA)
	for _, c := range []struct {
		method, party, path string
		status              int
		want                string // in the error
	}{
		{"GET", "metro", a, 403, "auditors only"},
		{"GET", "bus", a + "/days", 403, "auditors only"},
		{"GET", "metro", a + "/days/2026-12-02", 403, "auditors only"},
		{"GET", "none", a, 401, "missing bearer token"},
		{"GET", "auditor", "/v1/riders/bike/0x00000000000000000000000000000000", 400, `rider media "bike"`},
		{"GET", "auditor", "/v1/riders/card/00000000000000000000000000000000", 400, "want 0x and 32 hex digits"},
		{"GET", "auditor", "/v1/riders/card/0xnothex", 400, `rider pseudonym "0xnothex"`},
		{"GET", "auditor", "/v1/riders/card/0x0000000000000000000000000000000g", 400, "32 hex digits"},
		{"GET", "auditor", "/v1/riders/card/0x00000000000000000000000000000000", 404, "no journal postings and no fare days"},
		{"GET", "auditor", "/v1/riders/face" + strings.TrimPrefix(a, "/v1/riders/card"), 404, "no journal postings"},
		{"GET", "auditor", a + "/days/2026-13-01", 400, `fare day "2026-13-01": want a date YYYY-MM-DD`},
		{"GET", "auditor", a + "/days/2026-12-05", 404, "has no fare day 2026-12-05"},
		{"GET", "auditor", a + "/days?from=2026-12-05&to=2026-12-01", 400, "from 2026-12-05 is after to 2026-12-01"},
		{"GET", "auditor", a + "/days?from=yesterday", 400, `from "yesterday"`},
		{"GET", "auditor", a + "/days?after=12/02/2026", 400, `after "12/02/2026"`},
		{"GET", "auditor", a + "/days?limit=0", 400, "limit: 0 is outside"},
		{"POST", "auditor", a, 405, "method not allowed"},
		{"DELETE", "auditor", a + "/days/2026-12-02", 405, "method not allowed"},
		{"PUT", "auditor", a + "/days", 405, "method not allowed"},
		{"POST", "metro", a, 403, "auditors only"},
	} {
		status, hdr, body := f.do(t, c.method, c.party, c.path)
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		if status != c.status || !strings.Contains(e.Error, c.want) {
			t.Errorf("%s %s as %s: %d %s, want %d with an error containing %q", c.method, c.path, c.party, status, body, c.status, c.want)
		}
		if status == 405 && hdr.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: 405 with Allow %q", c.method, c.path, hdr.Get("Allow"))
		}
		if strings.Contains(string(body), "card-a") {
			t.Errorf("%s %s as %s: the raw card token is in the answer", c.method, c.path, c.party)
		}
	}
}
