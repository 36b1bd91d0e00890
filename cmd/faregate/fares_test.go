package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// sharedGTFS returns ../shared/testdata/gtfs from the repository root; a
// missing directory fails the test.
func sharedGTFS(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "testdata", "gtfs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("test data missing: %v", err)
	}
	return dir
}

// runFares runs `faregate fares ARGS` and returns what it printed on
// standard output.
func runFares(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	out, _, err := runFaresWithStderr(t, stdin, args...)
	return out, err
}

// runFaresWithStderr is runFares with what went to standard error (the
// feed loader's warnings) apart.
func runFaresWithStderr(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	var out, errs bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errs)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"fares"}, args...))
	err = root.Execute()
	return out.String(), errs.String(), err
}

// moneyLine is a passing `fares check` line with its total as money.
var moneyLine = regexp.MustCompile(`^PASS \S+: -?[0-9]+ \(-?[0-9.]+ [A-Z]{3}\)`)

func TestFaresCheckSharedFeeds(t *testing.T) {
	data := sharedGTFS(t)
	for feed, n := range map[string]string{"nigiri-fares": "5", "gtfsorg-translink-guide": "20", "nigiri-hsl-area-sets": "4"} {
		dir := filepath.Join(data, feed)
		out, errs, err := runFaresWithStderr(t, "", "check", "--feed", dir, "--cases", filepath.Join(dir, "cases.json"))
		if err != nil {
			t.Errorf("%s: %v\n%s", feed, err, out)
		}
		// The nigiri feeds' stops.txt rows are a field short of their
		// header: they load, and the command says so on stderr.
		if want := strings.HasPrefix(feed, "nigiri"); strings.Contains(errs, "warning: GTFS feed: stops.txt:2: 7 field(s) where the header names 8") != want {
			t.Errorf("%s: stderr %q, want the short rows warned of: %v", feed, errs, want)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		// Amounts are money: "PASS id: 1600 (16.00 EUR)".
		if first := lines[0]; !moneyLine.MatchString(first) {
			t.Errorf("%s: first line %q, want a PASS with money as minor units (decimal currency)", feed, first)
		}
		if last := lines[len(lines)-1]; last != n+" passed, 0 failed" {
			t.Errorf("%s: last line %q, want %q", feed, last, n+" passed, 0 failed")
		}
	}
}

func TestFaresCheckFailsOnWrongExpectation(t *testing.T) {
	dir := filepath.Join(sharedGTFS(t), "nigiri-fares")
	cases := `{"cases": [{"id": "wrong", "legs": [{"route_id": "line1", "from_stop": "A", "to_stop": "B",
	  "start_time": "2022-03-30T02:00:00+02:00", "end_time": "2022-03-30T02:30:00+02:00"}],
	  "rider_category": "adult", "fare_media": "paper-card", "expected_total": "9.99", "currency": "EUR"}]}`
	path := filepath.Join(t.TempDir(), "cases.json")
	os.WriteFile(path, []byte(cases), 0o644)
	out, err := runFares(t, "", "check", "--feed", dir, "--cases", path)
	if err == nil || !strings.Contains(out, "FAIL wrong: got 300 (3.00 EUR), want 999 (9.99 EUR)") || !strings.HasSuffix(out, "0 passed, 1 failed\n") {
		t.Errorf("err %v, output %q", err, out)
	}
}

// TestFaresRefusals: a request or cases file that would price something
// else than meant, or nothing, is refused, naming what is wrong.
func TestFaresRefusals(t *testing.T) {
	dir := filepath.Join(sharedGTFS(t), "nigiri-fares")
	leg := `{"route_id": "line1", "from_stop": "A", "to_stop": "B", "start_time": "2022-03-30T02:00:00+02:00", "end_time": "2022-03-30T02:30:00+02:00"}`
	for _, c := range []struct{ name, in, says string }{
		{"a misspelt member", `{"legs": [` + leg + `], "ridercategory": "adult"}`, `unknown field "ridercategory"`},
		{"a misspelt leg member", `{"legs": [` + strings.Replace(leg, "route_id", "route", 1) + `]}`, `unknown field "route"`},
		{"a second value", `{"legs": [` + leg + `]} {"x": 1}`, "more than one JSON value"},
		{"no legs", `{"legs": []}`, "no legs"},
		{"a time without its zone", `{"legs": [` + strings.Replace(leg, "02:00:00+02:00", "02:00:00", 1) + `]}`, `time "2022-03-30T02:00:00": want RFC 3339 with its zone`},
	} {
		if out, err := runFares(t, c.in, "quote", "--feed", dir); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("quote, %s: %v, want an error saying %q\n%s", c.name, err, c.says, out)
		}
	}
	// A feed with no leg rules (the fare files left out) is refused, not
	// quoted as charging 0 in no currency.
	noFares := t.TempDir()
	for _, name := range []string{"agency.txt", "routes.txt", "stops.txt", "calendar.txt", "calendar_dates.txt"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			os.WriteFile(filepath.Join(noFares, name), b, 0o644)
		}
	}
	if out, err := runFares(t, `{"legs": [`+leg+`]}`, "quote", "--feed", noFares); err == nil || !strings.Contains(err.Error(), "fare_leg_rules.txt is missing or empty") {
		t.Errorf("quote from a feed with no fare files: %v, want refused\n%s", err, out)
	}
	empty := filepath.Join(t.TempDir(), "empty.json")
	os.WriteFile(empty, []byte(`{}`), 0o644)
	if out, err := runFares(t, "", "check", "--feed", dir, "--cases", empty); err == nil || !strings.Contains(err.Error(), "no cases") {
		t.Errorf("check with no cases: %v, want refused\n%s", err, out)
	}
	// A cases file not there is named by its flag, before the feed loads.
	if out, err := runFares(t, "", "check", "--feed", filepath.Join(t.TempDir(), "no-feed"), "--cases", filepath.Join(t.TempDir(), "none.json")); err == nil || !strings.HasPrefix(err.Error(), "--cases") {
		t.Errorf("check with a cases file not there: %v, want it named by --cases\n%s", err, out)
	}
}

func TestFaresQuote(t *testing.T) {
	dir := filepath.Join(sharedGTFS(t), "nigiri-fares")
	journey := `{"legs": [
	  {"route_id": "line1", "from_stop": "A", "to_stop": "B", "start_time": "2022-03-30T02:00:00+02:00", "end_time": "2022-03-30T02:30:00+02:00"},
	  {"route_id": "line2", "from_stop": "B", "to_stop": "C", "start_time": "2022-03-30T02:35:00+02:00", "end_time": "2022-03-30T03:00:00+02:00"},
	  {"route_id": "line3", "from_stop": "C", "to_stop": "D", "start_time": "2022-03-30T03:05:00+02:00", "end_time": "2022-03-30T04:00:00+02:00"},
	  {"route_id": "air", "from_stop": "D", "to_stop": "E", "start_time": "2022-03-30T04:05:00+02:00", "end_time": "2022-03-30T04:30:00+02:00"}],
	  "rider_category": "adult", "fare_media": "paper-card"}`
	out, err := runFares(t, journey, "quote", "--feed", dir)
	if err != nil {
		t.Fatal(err)
	}
	var q quoteOutput
	if err := json.Unmarshal([]byte(out), &q); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	eur := func(minor int64, dec string) clearing.Money {
		return clearing.Money{Minor: minor, Decimal: dec, Currency: "EUR"}
	}
	if q.Total == nil || *q.Total != eur(1600, "16.00") || q.Currency != "EUR" || len(q.Legs) != 2 || len(q.Transfers) != 1 {
		t.Errorf("quote %s", out)
	}
	// Every amount is money: minor units, decimal and currency.
	for i, l := range q.Legs {
		if l.Amount == nil || l.Amount.Currency != "EUR" || clearing.MoneyOf(fare.Amount(l.Amount.Minor), "EUR") != *l.Amount {
			t.Errorf("leg %d amount %+v", i, l.Amount)
		}
	}
	if tr := q.Transfers[0].Amount; tr.Currency != "EUR" || clearing.MoneyOf(fare.Amount(tr.Minor), "EUR") != tr {
		t.Errorf("transfer amount %+v", tr)
	}
	if !strings.Contains(out, `"total":{"minor":1600,"decimal":"16.00","currency":"EUR"}`) {
		t.Errorf("total not in the money form: %s", out)
	}

	// An unknown fare prints "total": null.
	unknown := strings.Replace(journey, `"fare_media": "paper-card"`, `"fare_media": "app"`, 1)
	unknown = strings.Replace(unknown, `"rider_category": "adult"`, `"rider_category": "reduced"`, 1)
	out, err = runFares(t, unknown, "quote", "--feed", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"total":null`) {
		t.Errorf("want a null total, got %s", out)
	}

	// An entry that never tapped out ("incomplete") is quoted as live
	// clearing charges it: the city's maximum metro fare, 4.50; without the
	// mark the same leg has no fare.
	entry := `{"legs": [{"route_id": "", "network_id": "metro", "from_stop": "metro-s01", "to_stop": null,
	  "start_time": "2026-12-02T11:00:00+01:00", "end_time": "2026-12-02T11:00:00+01:00"%s}], "rider_category": "adult", "fare_media": "card"}`
	out, err = runFares(t, fmt.Sprintf(entry, `, "incomplete": true`), "quote", "--feed", "../../clearing/journeys/testdata/city")
	if err != nil {
		t.Fatal(err)
	}
	var maxq quoteOutput
	if err := json.Unmarshal([]byte(out), &maxq); err != nil || maxq.Total == nil || *maxq.Total != eur(450, "4.50") || len(maxq.Legs) != 1 || !maxq.Legs[0].MaximumFare {
		t.Errorf("an entry without exit: %v %s, want the maximum fare 4.50", err, out)
	}
	// An exit that never tapped in gives its end_time alone (an outside
	// review was asked for a start the rider never made): priced as the
	// same exit with its start at its end; a leg with neither time, or an
	// entry without its start, is still refused, saying which leg.
	exitOnly := `{"legs": [{"route_id": "", "network_id": "metro", "to_stop": "metro-s01", %s}], "rider_category": "adult", "fare_media": "card"}`
	alone, err := runFares(t, fmt.Sprintf(exitOnly, `"end_time": "2026-12-02T11:00:00+01:00", "incomplete": true`), "quote", "--feed", "../../clearing/journeys/testdata/city")
	if err != nil {
		t.Fatalf("an exit without entry, end_time alone: %v %s", err, alone)
	}
	both, err := runFares(t, fmt.Sprintf(exitOnly, `"start_time": "2026-12-02T11:00:00+01:00", "end_time": "2026-12-02T11:00:00+01:00", "incomplete": true`), "quote", "--feed", "../../clearing/journeys/testdata/city")
	if err != nil || alone != both || !strings.Contains(alone, `"maximum_fare":true`) {
		t.Errorf("an exit without entry, end_time alone: %s\nwith its start at its end: %v %s; want the same maximum fare", alone, err, both)
	}
	for _, bad := range []string{`"end_time": "2026-12-02T11:00:00+01:00"`, `"incomplete": true`} {
		if out, err := runFares(t, fmt.Sprintf(exitOnly, bad), "quote", "--feed", "../../clearing/journeys/testdata/city"); err == nil || !strings.Contains(err.Error()+out, "leg 0: no start_time") {
			t.Errorf("a leg with %s and no start_time: %v %s, want it refused naming the leg", bad, err, out)
		}
	}

	// Not marked, the same leg (a validation at a gated station) has no
	// fare, and the quote says what clearing charges all the same: its
	// entry's maximum fare (an outside test found the quote silent).
	out, err = runFares(t, fmt.Sprintf(entry, ""), "quote", "--feed", "../../clearing/journeys/testdata/city")
	if err != nil || !strings.Contains(out, `"total":null`) || !strings.Contains(out, `"charged_by_clearing":{"minor":450,"decimal":"4.50","currency":"EUR"}`) {
		t.Errorf("the same leg not marked incomplete: %v %s, want no fare, and clearing's charge 4.50", err, out)
	}

	// A feed whose bus fares are in another currency: a bus-to-metro
	// journey has no fare, and nothing is said to be charged for it (an
	// outside test saw 2.00 USD and 6.00 EUR added up as 8.00 USD); a bus
	// leg alone is priced in its own currency.
	mixed := t.TempDir()
	if err := os.CopyFS(mixed, os.DirFS("../../clearing/journeys/testdata/city")); err != nil {
		t.Fatal(err)
	}
	products, err := os.ReadFile(filepath.Join(mixed, "fare_products.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var usd []string
	for _, line := range strings.Split(string(products), "\n") {
		if strings.HasPrefix(line, "bus-") {
			line = strings.Replace(line, ",EUR", ",USD", 1)
		}
		usd = append(usd, line)
	}
	if err := os.WriteFile(filepath.Join(mixed, "fare_products.txt"), []byte(strings.Join(usd, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	busLeg := `{"route_id": "bus-L1", "from_stop": "bus-s01", "to_stop": "bus-s02", "start_time": "2026-12-02T11:00:00+01:00", "end_time": "2026-12-02T11:10:00+01:00"}`
	metroLeg := `{"route_id": "metro-L1", "from_stop": "metro-s01", "to_stop": "metro-s02", "start_time": "2026-12-02T11:15:00+01:00", "end_time": "2026-12-02T11:25:00+01:00"}`
	out, err = runFares(t, `{"legs": [`+busLeg+`, `+metroLeg+`], "rider_category": "adult"}`, "quote", "--feed", mixed)
	if err != nil || !strings.Contains(out, `"total":null`) || strings.Contains(out, "charged_by_clearing") {
		t.Errorf("bus (USD) then metro (EUR): %v %s, want no fare and no charge said", err, out)
	}
	out, err = runFares(t, `{"legs": [`+busLeg+`], "rider_category": "adult"}`, "quote", "--feed", mixed)
	if err != nil || !strings.Contains(out, `"currency":"USD"`) || strings.Contains(out, `"total":null`) {
		t.Errorf("a bus leg alone in a USD feed: %v %s, want its fare in USD", err, out)
	}

	// Refused, naming what is wrong (an outside test saw both priced).
	for _, bad := range []struct{ journey, want string }{
		{`{"legs": [{"route_id": "line1", "from_stop": "A", "to_stop": "B"}]}`, "leg 0: no start_time"},
		{`{"legs": [{"route_id": "metro-L1", "network_id": "bus", "from_stop": "metro-s01", "to_stop": "metro-s02",
		  "start_time": "2026-12-02T11:00:00+01:00", "end_time": "2026-12-02T11:10:00+01:00"}]}`, `route "metro-L1" is in network "metro", the leg names "bus"`},
	} {
		feed := dir
		if strings.Contains(bad.journey, "metro-L1") {
			feed = "../../clearing/journeys/testdata/city"
		}
		if out, err := runFares(t, bad.journey, "quote", "--feed", feed); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("quote %s: %v %s, want an error naming %q", bad.journey, err, out, bad.want)
		}
	}
}
