package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/simulator"
)

// TestSimulateRefusesBadFlags: travel days, the decline rate and the
// report files are checked before anything starts (no data dir, no
// chain), as usage errors.
func TestSimulateRefusesBadFlags(t *testing.T) {
	tmp := t.TempDir()
	missing := filepath.Join(tmp, "missing", "report.html")
	plain := filepath.Join(tmp, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--days", "0"}, "--days 0: want 1 to 366 travel days"},
		{[]string{"--days", "-3"}, "--days -3: want 1 to 366 travel days"},
		{[]string{"--days", "100000"}, "--days 100000: want 1 to 366 travel days"},
		// A city too large for any machine (a typo of --passengers took
		// 24 GB before a tap, deaf to SIGTERM) is refused at once.
		{[]string{"--passengers", "100000000000"}, "--passengers 100000000000: at most 100 operators, 1000 stops per operator, 100 gates per stop and 1000000 passengers"},
		{[]string{"--operators", "1000000"}, "--operators 1000000,"},
		{[]string{"--gates", "100000"}, "--gates 100000,"},
		{[]string{"--operators", "50", "--stops", "50", "--gates", "2"}, "is 5000 terminals: at most 500"},
		// Not after the run's traffic (an outside test saw it panic).
		{[]string{"--inject-bad", "2305843009213693952"}, "--inject-bad 2305843009213693952: want 0 (none) to 10000 of each kind"},
		{[]string{"--inject-bad", "10001"}, "--inject-bad 10001: want 0 (none) to 10000"},
		{[]string{"--inject-bad", "-1"}, "--inject-bad -1: want 0 (none) to 10000"},
		{[]string{"--period", "1ns"}, "--period 1ns: want a settlement period of at least 100ms"},
		{[]string{"--http", "bogus"}, `--http "bogus": want HOST:PORT`},
		{[]string{"--http", "127.0.0.1:99999"}, `--http "127.0.0.1:99999": port "99999" is not 0 to 65535`},
		{[]string{"--nats-listen", "4222"}, `--nats-listen "4222": want HOST:PORT`},
		{[]string{"--duration", "1ns"}, "--duration 1ns at --rate 300: not one tap is due"},
		{[]string{"--nats-listen", "127.0.0.1:25999", "--http", "127.0.0.1:25999"}, "--http and --nats-listen are both 127.0.0.1:25999"},
		{[]string{"--chain-rpc-listen", "127.0.0.1:25998", "--nats-listen", "127.0.0.1:25998"}, "--nats-listen and --chain-rpc-listen are both 127.0.0.1:25998"},
		{[]string{"--chain-rpc-listen", "127.0.0.1:70000"}, `--chain-rpc-listen "127.0.0.1:70000": port "70000" is not 0 to 65535`},
		{[]string{"--find-peak", "--chain-rpc-listen", "127.0.0.1:8545"}, "--chain-rpc-listen 127.0.0.1:8545: not with --find-peak"},
		{[]string{"--decline-rate", "1.5"}, "--decline-rate 1.5: want 0 to 1"},
		{[]string{"--decline-rate", "-0.1"}, "--decline-rate -0.1: want 0 to 1"},
		{[]string{"--html", missing}, "--html " + missing + ": directory " + filepath.Dir(missing) + " does not exist"},
		{[]string{"--html", tmp}, "--html " + tmp + ": is a directory, want a file"},
		{[]string{"--report", missing}, "--report " + missing + ": directory " + filepath.Dir(missing) + " does not exist"},
		{[]string{"--report", filepath.Join(plain, "r.json")}, "--report " + filepath.Join(plain, "r.json") + ": " + plain + " is a file, not a directory"},
		{[]string{"--report", filepath.Join(tmp, "r"), "--html", filepath.Join(tmp, "r")}, "the same file as --report"},
		// Unused without face riders (an outside test's --face-data went
		// unused in silence).
		{[]string{"--face", "0", "--face-data", filepath.Join(tmp, "idols.json")}, "--face-data: no face riders with --face 0"},
		{[]string{"--face", "0", "--models", tmp}, "--models: no face riders with --face 0"},
		{[]string{"--face", "0", "--face-images", tmp}, "--face-images: no face riders with --face 0"},
		{[]string{"--face", "0", "--face-policy", filepath.Join(tmp, "p.json")}, "--face-policy: no face riders with --face 0"},
		{[]string{"--rate", "NaN"}, "--rate NaN: want a finite number"},
		{[]string{"--rate", "Inf"}, "--rate +Inf: want a finite number"},
		{[]string{"--rate", "1e12"}, "--rate 1e+12: want a positive rate of taps per second, at most"},
		{[]string{"--concession", "NaN"}, "--concession NaN: want a finite number"},
		{[]string{"--weekly-cap", "monthly"}, `invalid argument "monthly" for "--weekly-cap" flag: "monthly": want calendar or rolling`},
		{[]string{"--decline-rate", "NaN"}, "--decline-rate NaN: want a finite number"},
		{[]string{"--find-peak", "--peak-start", "Inf"}, "--peak-start +Inf: want a finite number"},
		{[]string{"--find-peak", "--peak-factor", "NaN"}, "--peak-factor NaN: want a finite number"},
		{[]string{"--find-peak", "--peak-factor", "1e9"}, "--peak-factor 1e+09: want more than 1, at most 100"},
		// The ramp's flags without the ramp would be ignored.
		{[]string{"--peak-p99", "2s"}, "--peak-p99 applies only with --find-peak"},
		{[]string{"--peak-step", "30s"}, "--peak-step applies only with --find-peak"},
		{[]string{"--peak-start", "400"}, "--peak-start applies only with --find-peak"},
		{[]string{"--peak-rider-taps", "6"}, "--peak-rider-taps applies only with --find-peak"},
	} {
		dir := filepath.Join(tmp, "sim")
		_, err := runCLI(t, append([]string{"simulate", "--data", dir, "--http", ""}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != exitUsage {
			t.Errorf("simulate %s: %v (exit %d), want a usage error containing %q", strings.Join(tc.args, " "), err, exitCode(err), tc.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("simulate %s created %s before failing", strings.Join(tc.args, " "), dir)
		}
	}
}

// TestSimulateRefusesUsedDirAndUnwritableReport: a --data directory that
// holds a kept run (or anything) is refused before anything is written
// into it, and a --report path that cannot be written is found before the
// run, not after it.
func TestSimulateRefusesUsedDirAndUnwritableReport(t *testing.T) {
	kept := t.TempDir()
	if err := os.WriteFile(filepath.Join(kept, "registry.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(other, "notes.txt")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--data", kept}, exitUsage, "holds a kept run already: reopen it with faregate clearing --data"},
		// A plain file, or a path through one, is a usage error naming
		// --data (an outside test saw exit 1 "not a directory").
		{[]string{"--data", file}, exitUsage, "--data " + file + ": not a directory"},
		{[]string{"--data", filepath.Join(file, "run")}, exitUsage, "--data " + filepath.Join(file, "run") + ": not a directory"},
		{[]string{"--find-peak", "--data", file}, exitUsage, "--data " + file + ": not a directory"},
		{[]string{"--data", other}, exitUsage, "is not empty"},
		{[]string{"--report", "/proc/r.json"}, exitFailure, "--report"},
	} {
		_, err := runCLI(t, append([]string{"simulate", "--http", ""}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) || exitCode(err) != c.code {
			t.Errorf("simulate %s: %v (exit %d), want exit %d containing %q", strings.Join(c.args, " "), err, exitCode(err), c.code, c.want)
		}
	}
	if ents, _ := os.ReadDir(kept); len(ents) != 1 {
		t.Errorf("the kept run's directory was written to: %d entries", len(ents))
	}
}

// TestSimulateSetupFailureLeavesNothing: a run that fails before its
// riders begin to tap leaves its --data directory as it found it, so the
// same command, mended, runs again (an outside test's retry after a taken
// port was refused as a kept run). The settlement API's port is taken
// before anything is written; a failure later in the setup (here the
// picture gates without pictures, found once the chain, clearing and the
// face enrolments are up) removes what was written.
func TestSimulateSetupFailureLeavesNothing(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	faces := filepath.Join("..", "..", "..", "shared", "testdata", "faces", "idols.json")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().String() // let go at once: free for the run to try
	_, freePort, _ := net.SplitHostPort(free)
	ln.Close()
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"a port taken", []string{"--http", taken.Addr().String(), "--face", "0"}, "--http " + taken.Addr().String() + ": listen tcp"},
		// The listen flags are used: a taken port is said, naming its
		// flag, before anything starts (firewalled hosts give the run its
		// ports; the NATS port's was "not ready after 10s").
		{"the NATS port taken", []string{"--http", "", "--face", "0", "--nats-listen", taken.Addr().String()}, "--nats-listen " + taken.Addr().String() + ": listen tcp"},
		{"the chain's port taken", []string{"--http", "", "--face", "0", "--chain-rpc-listen", taken.Addr().String()}, "--chain-rpc-listen " + taken.Addr().String() + ": listen tcp"},
		{"the NATS port taken, finding the peak", []string{"--find-peak", "--nats-listen", taken.Addr().String()}, "--nats-listen " + taken.Addr().String() + ": listen tcp"},
		// One free port given to two flags in two spellings: the second
		// finds it held by the first (the NATS server's said only "not
		// ready after 10s").
		{"one port spelled two ways", []string{"--face", "0", "--http", free, "--nats-listen", "localhost:" + freePort}, "--nats-listen localhost:" + freePort + ": listen tcp"},
		{"no pictures", []string{"--http", "", "--face", "0.2", "--face-data", faces, "--face-images", filepath.Join(t.TempDir(), "none")}, "image gates need"}, // the models, or the pictures
	} {
		data := filepath.Join(t.TempDir(), "run")
		_, err := runCLI(t, append([]string{"simulate", "--data", data, "--passengers", "40", "--duration", "2s"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) || exitCode(err) != exitFailure {
			t.Errorf("%s: %v (exit %d), want exit %d containing %q", c.name, err, exitCode(err), exitFailure, c.want)
		}
		if ents, err := os.ReadDir(data); err == nil && len(ents) > 0 {
			t.Errorf("%s: the failed setup left %d entries in --data (e.g. %s)", c.name, len(ents), ents[0].Name())
		}
		if err := checkNewDataDir(data); err != nil {
			t.Errorf("%s: the same command would be refused: %v", c.name, err)
		}
	}
}

// TestSimulateRefusesReportInsideData: a --report or --html path at or
// under --data (written there, the report replaced the kept run's
// run.json, or was the directory itself and lost after the run) is a
// usage error before the run, also through a symbolic link or a path
// that only resolves to it; nothing is written into the directory.
func TestSimulateRefusesReportInsideData(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tmp, "link")
	if err := os.Symlink(data, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		data string
		args []string
		want string
	}{
		{data, []string{"--report", filepath.Join(data, "run.json")}, "--report " + filepath.Join(data, "run.json") + ": inside --data " + data},
		{data, []string{"--report", data}, "--report " + data + ": inside --data"},
		{data, []string{"--html", filepath.Join(data, "chain", "r.html")}, "--html " + filepath.Join(data, "chain", "r.html") + ": inside --data"},
		{data, []string{"--report", filepath.Join(tmp, "x", "..", "data", "run.json")}, ": inside --data"},
		{link, []string{"--report", filepath.Join(data, "run.json")}, ": inside --data " + link},
		{data, []string{"--html", filepath.Join(link, "r.html")}, "--html " + filepath.Join(link, "r.html") + ": inside --data"},
		{filepath.Join(data, "new"), []string{"--report", filepath.Join(link, "new", "run.json")}, ": inside --data"},
		{data, []string{"--find-peak", "--report", filepath.Join(data, "peak.json")}, "--report " + filepath.Join(data, "peak.json") + ": inside --data"},
	} {
		args := append([]string{"simulate", "--http", "", "--data", tc.data}, tc.args...)
		_, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != exitUsage {
			t.Errorf("%s: %v (exit %d), want a usage error containing %q", strings.Join(args, " "), err, exitCode(err), tc.want)
		}
		if ents, _ := os.ReadDir(data); len(ents) != 0 {
			t.Fatalf("%s wrote into --data: %d entries", strings.Join(args, " "), len(ents))
		}
	}
	// A sibling whose name starts with the directory's is not inside it.
	if err := checkOutsideData("report", data+"-report.json", data); err != nil {
		t.Errorf("a report beside --data: %v", err)
	}
}

// testReport is a report as a run writes it: three operators, two
// batches, every guarantee held.
func testReport() *simulator.Report {
	eur := func(v int64) clearing.Money { return clearing.MoneyOf(fare.Amount(v), "EUR") }
	t0 := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	root := func(b byte) string { return "0x" + strings.Repeat(string("0123456789abcdef"[b%16])+"f", 32) }
	return &simulator.Report{
		Operators: 3, Terminals: 6, Passengers: 50, DurationSeconds: 2, TapRatePerSecond: 6, Currency: "EUR",
		TapsGenerated: 12, Applied: 12, Contract: "0x" + strings.Repeat("1a", 20),
		OperatorRevenue: map[string]clearing.Money{"metro": eur(123456), "bus": eur(250), "tram": eur(-75)},
		RiderCharges:    eur(123631),
		FareRecompute:   &simulator.ReportFareAudit{RiderDays: 9, Posted: eur(123631), Recomputed: eur(123631)},
		TimelineStart:   t0,
		Timeline:        []simulator.ReportSample{{T: 1, Taps: 7, Applied: 5}, {T: 2, Taps: 5, Applied: 7}},
		Batches: []simulator.ReportBatch{
			{ID: 1, PeriodStart: t0, PeriodEnd: t0.Add(time.Second), EventCount: 5, Root: root(1),
				Nets: []clearing.OperatorNetView{{Operator: "bus", Net: eur(250)}, {Operator: "metro", Net: eur(100)}}},
			{ID: 12, PeriodStart: t0.Add(time.Second), PeriodEnd: t0.Add(2 * time.Second), EventCount: 7, Root: root(2),
				Nets: []clearing.OperatorNetView{{Operator: "metro", Net: eur(123356)}, {Operator: "tram", Net: eur(-75)}}},
		},
		BatchesSealed: 2, BatchesAnchored: 2,
		Audit:        []clearing.BatchAudit{{ID: 1, State: clearing.BatchOK}, {ID: 12, State: clearing.BatchOK}},
		TapLatencyMs: map[string]float64{"p50": 1.5, "p90": 2, "p99": 4, "max": 9},
		CityStart:    "2026-12-02T05:00:00+01:00", CityEnd: "2026-12-04T04:31:00+01:00",
		Payments: eur(0), AcquirerReceived: eur(0), Debt: eur(0), JournalImbalance: eur(0),
	}
}

// TestPrintReportTables: the settlement, batches, guarantees and totals
// are tables whose columns line up; money carries its currency, roots
// are 0x hex.
func TestPrintReportTables(t *testing.T) {
	var b strings.Builder
	r := testReport()
	printReport(&b, r)
	out := b.String()
	section := func(name string) []string {
		_, rest, ok := strings.Cut(out, "== "+name)
		if !ok {
			t.Fatalf("no section %q in\n%s", name, out)
		}
		rest = rest[strings.Index(rest, "\n")+1:]
		body, _, _ := strings.Cut(rest, "\n\n")
		return strings.Split(strings.TrimRight(body, "\n"), "\n")
	}
	// Settlement: the money column's right edge is one column for every row.
	settle := section("settlement")
	want := []string{"bus", "250", "2.50 EUR", "metro", "123456", "1234.56 EUR", "tram", "-75", "-0.75 EUR", "all operators", "1236.31 EUR", "riders charged"}
	for _, w := range want {
		if !strings.Contains(strings.Join(settle, "\n"), w) {
			t.Errorf("settlement lacks %q:\n%s", w, strings.Join(settle, "\n"))
		}
	}
	edge := -1
	for _, line := range settle {
		i := strings.Index(line, "EUR")
		if line == settle[0] {
			i = strings.Index(line, "REVENUE") + len("REVENUE") - len("EUR")
		}
		if edge == -1 {
			edge = i
		} else if i != edge {
			t.Errorf("settlement's money column is not aligned:\n%s", strings.Join(settle, "\n"))
			break
		}
	}
	// Batches: one row each, the root 0x hex at one column, every net with
	// its currency under its operator.
	batches := section("batches")
	if len(batches) != 3 || !strings.Contains(batches[0], "BUS NET") || !strings.Contains(batches[0], "TRAM NET") {
		t.Fatalf("batches table:\n%s", strings.Join(batches, "\n"))
	}
	col := strings.Index(batches[0], "ROOT")
	for i, bt := range r.Batches {
		line := batches[i+1]
		if strings.Index(line, bt.Root) != col || !regexp.MustCompile(`^0x[0-9a-f]{64}$`).MatchString(bt.Root) {
			t.Errorf("batch %d's root is not at column %d:\n%s", bt.ID, col, strings.Join(batches, "\n"))
		}
		if !strings.Contains(line, "08:00:0") || !strings.Contains(line, " ok ") {
			t.Errorf("batch row %q lacks its period or on-chain state", line)
		}
	}
	if !strings.Contains(batches[1], "2.50 EUR") || !strings.Contains(batches[2], "-0.75 EUR") || !strings.Contains(batches[2], "1233.56 EUR") {
		t.Errorf("batch nets:\n%s", strings.Join(batches, "\n"))
	}
	if !strings.Contains(strings.Join(section("guarantees"), "\n"), "exactly once") || strings.Contains(out, "BROKE") {
		t.Errorf("guarantees:\n%s", strings.Join(section("guarantees"), "\n"))
	}
	totals := section("totals")
	value := strings.Index(totals[0], "12 (0 denied")
	for _, line := range totals {
		if len(line) <= value || line[value-1] != ' ' || line[value] == ' ' {
			t.Errorf("totals' values do not start at column %d:\n%s", value, strings.Join(totals, "\n"))
			break
		}
	}
	if !strings.Contains(out, "tap latency        p50 1.5 · p90 2.0 · p99 4.0 · max 9.0 ms") {
		t.Errorf("latencies in the totals:\n%s", strings.Join(totals, "\n"))
	}
}

// TestWriteReports: --report and --html write the JSON report and the
// HTML page and say where.
func TestWriteReports(t *testing.T) {
	dir := t.TempDir()
	r := testReport()
	var out strings.Builder
	jsonFile, htmlFile := filepath.Join(dir, "report.json"), filepath.Join(dir, "report.html")
	sim := newRootCmd()
	sim.SetOut(io.Discard)
	sim.SetArgs([]string{"simulate", "--rate", "300", "--passengers", "7", "--help"})
	_ = sim.Execute()
	simCmd, _, _ := sim.Find([]string{"simulate"})
	ri := newRunInfo(simCmd, []string{"simulate", "--rate", "300"})
	if err := writeReports(&out, r, jsonFile, htmlFile, ri); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "report written to "+jsonFile) || !strings.Contains(out.String(), "HTML report written to "+htmlFile) {
		t.Errorf("output: %q", out.String())
	}
	var back struct {
		simulator.Report
		Run runInfo `json:"run"`
	}
	if b, err := os.ReadFile(jsonFile); err != nil || json.Unmarshal(b, &back) != nil || back.OperatorRevenue["metro"].Decimal != "1234.56" {
		t.Fatalf("report.json: %v %+v", err, back.OperatorRevenue)
	}
	// What produced it: the build, the machine, its load, the command.
	if back.Run.CPUs < 1 || back.Run.GoVersion == "" || back.Run.Platform == "" || strings.Join(back.Run.Args, " ") != "simulate --rate 300" || back.Run.StartedAt.IsZero() ||
		back.Run.Flags["rate"] != "300" || back.Run.Flags["passengers"] != "7" {
		t.Errorf("report.json's run: %+v", back.Run)
	}
	page, err := os.ReadFile(htmlFile)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := simulator.HTMLReport(r, ri.rows()...)
	if string(page) != string(want) || !strings.Contains(string(page), "1234.56 EUR") || !strings.Contains(string(page), r.Batches[1].Root) {
		t.Errorf("report.html is not the report's page (%d bytes)", len(page))
	}
	// It says what produced it, as report.json does (an outside review
	// found the page silent): the command line, a setting and a default.
	for _, w := range []string{"What produced this report", "faregate simulate --rate 300", "--passengers (set)", "--period (default)"} {
		if !strings.Contains(string(page), w) {
			t.Errorf("report.html does not say %q", w)
		}
	}
	// Nothing asked, nothing written.
	out.Reset()
	if err := writeReports(&out, r, "", "", ri); err != nil || out.Len() != 0 {
		t.Errorf("no files asked: %v, %q", err, out.String())
	}
}

// TestPartialReportNullsUnmeasured: a report of a run stopped early
// writes what it did not measure as null, not as a real 0 or "" (an
// outside test read deny_list_entries 0, rejected 0 and city_start ""
// from an interrupted run), and what it measured as measured.
func TestPartialReportNullsUnmeasured(t *testing.T) {
	path := filepath.Join(t.TempDir(), "partial.json")
	r := &simulator.Report{Stopped: "simulation interrupted: context canceled", Terminals: 6, TapsGenerated: 12, EventsPublished: 13,
		Applied: 11, OutboxPending: 1, DeadLettered: 2, DurationSeconds: 3, Currency: "EUR"}
	if err := writeJSONReport(io.Discard, path, r, runInfo{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rejected", "deny_list_entries", "deny_list_version", "city_start", "city_end", "face_taps", "face_riders_enrolled",
		"face_policy", "duplicates_applied", "unbilled_days", "journal_imbalance"} {
		if v, ok := got[k]; !ok || v != nil {
			t.Errorf("%s: %v (present %v), want null", k, v, ok)
		}
	}
	for k, want := range map[string]float64{"terminals": 6, "taps_generated": 12, "events_published": 13, "applied": 11, "outbox_pending": 1, "dead_lettered": 2} {
		if got[k] != want {
			t.Errorf("%s: %v, want %v", k, got[k], want)
		}
	}
}

// TestSimulateFindPeakRefusesBadFlags: --find-peak's flags, and the flags
// it does not use, are refused as usage errors before anything starts.
func TestSimulateFindPeakRefusesBadFlags(t *testing.T) {
	tmp := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--peak-p99", "0s"}, "--peak-p99 0s: want a positive latency objective"},
		{[]string{"--peak-step", "-1s"}, "--peak-step -1s: want a positive step duration"},
		{[]string{"--peak-step", "4s", "--period", "1s"}, "--peak-step 4s: want at least 5s and twice --period 1s (2s)"},
		{[]string{"--peak-step", "15s"}, "--peak-step 15s: want at least 5s and twice --period 10s (20s)"},
		{[]string{"--peak-start", "0"}, "--peak-start 0: want a positive rate"},
		{[]string{"--peak-factor", "1"}, "--peak-factor 1: want more than 1"},
		// Below a tap a step, the ramp said the first step broke the
		// objective and advised a lower --peak-start.
		{[]string{"--peak-start", "0.05", "--peak-step", "10s", "--period", "1s"}, "--peak-start 0.05 x --peak-step 10s offers 0.5 taps in the first step: want at least 100"},
		{[]string{"--peak-start", "19", "--peak-step", "5s", "--period", "1s"}, "--peak-start 19 x --peak-step 5s offers 95 taps in the first step: want at least 100"},
		{[]string{"--peak-max-steps", "0"}, "--peak-max-steps 0: want 1 or more"},
		{[]string{"--peak-rider-taps", "0"}, "--peak-rider-taps 0: want 1 to 1000 taps a rider, or -1"},
		{[]string{"--peak-rider-taps", "-2"}, "--peak-rider-taps -2: want 1 to 1000"},
		{[]string{"--peak-rider-taps", "1001"}, "--peak-rider-taps 1001: want 1 to 1000"},
		{[]string{"--html", filepath.Join(tmp, "p.html")}, "--html: not with --find-peak"},
		{[]string{"--rate", "500"}, "--rate: does not apply to --find-peak"},
		{[]string{"--face", "0"}, "--face: does not apply to --find-peak"},
	} {
		dir := filepath.Join(tmp, "peak")
		_, err := runCLI(t, append([]string{"simulate", "--find-peak", "--data", dir, "--http", ""}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != exitUsage {
			t.Errorf("simulate --find-peak %s: %v (exit %d), want a usage error containing %q", strings.Join(tc.args, " "), err, exitCode(err), tc.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("simulate --find-peak %s created %s before failing", strings.Join(tc.args, " "), dir)
		}
	}
}

// TestSimulateFindPeakIgnoresRunFlagsFromEnv: the run's flags set through
// their variables (a shared environment file) are settings --find-peak
// ignores, as a plain run ignores FAREGATE_PEAK_STEP; given on the command
// line they are refused (TestSimulateFindPeakRefusesBadFlags). An outside
// test saw FAREGATE_DAYS=3 refused as "--days: does not apply". The ramp
// is stopped as it begins.
func TestSimulateFindPeakIgnoresRunFlagsFromEnv(t *testing.T) {
	captureLogs(t)
	tmp := t.TempDir()
	for k, v := range map[string]string{"FAREGATE_DAYS": "3", "FAREGATE_RATE": "500", "FAREGATE_DURATION": "5s", "FAREGATE_HTTP": "127.0.0.1:63600",
		"FAREGATE_HTML": filepath.Join(tmp, "data", "r.html"), "FAREGATE_FACE": "0", "FAREGATE_INJECT_BAD": "2", "FAREGATE_CONCESSION": "0.5"} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &cancelOn{mark: "finding the peak:", cancel: cancel}
	root := newRootCmd()
	root.SetOut(out)
	root.SetErr(out)
	root.SetArgs([]string{"simulate", "--find-peak", "--operators", "1", "--stops", "1", "--gates", "1", "--period", "1s", "--peak-step", "5s", "--peak-start", "20",
		"--nats-tls=false", "--data", filepath.Join(tmp, "data")})
	err := root.ExecuteContext(ctx)
	if exitCode(err) == exitUsage || !strings.Contains(out.String(), "finding the peak:") {
		t.Fatalf("find-peak with run flags from the environment: %v (exit %d), want the ramp started\n%s", err, exitCode(err), out)
	}
	if _, err := os.Stat(filepath.Join(tmp, "data", "r.html")); !os.IsNotExist(err) {
		t.Errorf("FAREGATE_HTML was written by --find-peak: %v", err)
	}
}

// cancelOn is stdout that cancels a context once a line containing mark
// was written: an interrupt at a known point of a run.
type cancelOn struct {
	mu     sync.Mutex
	out    strings.Builder
	mark   string
	cancel context.CancelFunc
}

func (w *cancelOn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if strings.Contains(string(p), w.mark) {
		w.cancel()
	}
	return w.out.Write(p)
}

func (w *cancelOn) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// TestSimulateFindPeakInterrupted: --find-peak interrupted after its
// first step (as by Ctrl-C) writes the partial report: the completed
// step, why it stopped, the peak so far marked as not final, and the
// flags of the run, one of them from the environment; it exits 1.
func TestSimulateFindPeakInterrupted(t *testing.T) {
	captureLogs(t)
	tmp := t.TempDir()
	report := filepath.Join(tmp, "peak.json")
	t.Setenv("FAREGATE_PASSENGERS", "50")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &cancelOn{mark: "step 1:", cancel: cancel}
	root := newRootCmd()
	root.SetOut(out)
	root.SetErr(out)
	root.SetArgs([]string{"simulate", "--find-peak", "--operators", "1", "--stops", "1", "--gates", "1", "--seed", "4",
		"--period", "1s", "--peak-step", "5s", "--peak-start", "20", "--http", "", "--nats-tls=false", "--data", filepath.Join(tmp, "data"), "--report", report})
	err := root.ExecuteContext(ctx)
	if err == nil || exitCode(err) != exitFailure || !strings.Contains(err.Error(), "stopped early") {
		t.Fatalf("interrupted find-peak: %v (exit %d), want exit 1 saying it stopped early\n%s", err, exitCode(err), out)
	}
	var back struct {
		simulator.PeakReport
		Run runInfo `json:"run"`
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("no partial report: %v\n%s", err, out)
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Steps) != 1 || back.Steps[0].Taps == 0 || back.PeakFinal || !strings.Contains(back.Stopped, "interrupted") ||
		!strings.Contains(back.Stopped, "step 2") || back.StopReason == "" {
		t.Errorf("partial report: %d steps %+v, peak final %v, stopped %q, stop reason %q", len(back.Steps), back.Steps, back.PeakFinal, back.Stopped, back.StopReason)
	}
	// What was measured by then is there (an outside test read 0 taps, 0
	// applied and 0 pending from a ramp interrupted after three steps).
	if r := back.Report; r == nil || r.TapsGenerated < back.Steps[0].Taps || r.EventsPublished == 0 || r.Applied == 0 || r.DurationSeconds <= 0 || r.ConfirmLatencyMs["p50"] <= 0 {
		t.Errorf("partial report's figures: %+v", back.Report)
	}
	// What the run never checked is null, not 0 (an outside test read
	// duplicates_applied 0 from a run that checked nothing).
	for _, field := range []string{`"duplicates_applied": null`, `"fare_recompute_mismatches": null`, `"unbilled_days": null`, `"journal_imbalance": null`,
		`"deny_list_entries": null`, `"city_start": null`} {
		if !bytes.Contains(b, []byte(field)) {
			t.Errorf("partial report lacks %s", field)
		}
	}
	if back.Run.Flags["seed"] != "4" || back.Run.Flags["passengers"] != "50" || !slices.Contains(back.Run.FlagsFromEnv, "passengers") {
		t.Errorf("run.flags %v, from the environment %v", back.Run.Flags, back.Run.FlagsFromEnv)
	}
	// The defaults listed are the ramp's: not a plain run's --rate or
	// --duration, which do not apply to it (an outside re-check).
	if _, ok := back.Run.Defaults["peak-p99"]; !ok || back.Run.Defaults["rate"] != "" || back.Run.Defaults["duration"] != "" || back.Run.Defaults["http"] != "" {
		t.Errorf("run.defaults %v: want --peak-p99's, no --rate, --duration or --http", back.Run.Defaults)
	}
	if !strings.Contains(out.String(), "so far (the ramp did not finish: not final)") {
		t.Errorf("output does not mark the peak as not final:\n%s", out)
	}
}

// TestClaimDataDir: one run at a time claims a --data dir; a second is
// refused, not left to clear the first's files away when its own setup
// fails (a code review saw that remove a running simulation's registry
// and feed). A failed setup's leftovers go, and the dir itself if the run
// made it; a run that ended keeps what it wrote, without the lock.
func TestClaimDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	release, err := claimDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := claimDataDir(dir); err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), "another run is using it") {
		t.Errorf("a second claim: %v (exit %d), want refused", err, exitCode(err))
	}
	if err := checkNewDataDir(dir); err == nil || !strings.Contains(err.Error(), "a run is using it") {
		t.Errorf("checkNewDataDir of a claimed dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "registry.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	release(true)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a failed setup's dir the run made: %v, want it gone", err)
	}

	kept := t.TempDir() // there and empty before the run
	release, err = claimDataDir(kept)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kept, "registry.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	release(false)
	ents, _ := os.ReadDir(kept)
	if len(ents) != 1 || ents[0].Name() != "registry.json" {
		t.Errorf("a run that ended left %v, want its registry.json alone", ents)
	}
	if err := checkNewDataDir(kept); err == nil || !strings.Contains(err.Error(), "holds a kept run already") {
		t.Errorf("after the run: %v, want a kept run", err)
	}
}

// TestFewSamples: a latency row of under 100 samples says its p99 is the
// slowest (nearest rank), for the tap and the confirmation latencies.
func TestFewSamples(t *testing.T) {
	for _, tc := range []struct {
		cdf  *simulator.LatencyCDF
		want string
	}{
		{nil, ""},
		{&simulator.LatencyCDF{Samples: 22}, "; 22 samples only: p99 is the slowest"},
		{&simulator.LatencyCDF{Samples: 99}, "; 99 samples only: p99 is the slowest"},
		{&simulator.LatencyCDF{Samples: 100}, ""},
	} {
		if got := fewSamples(tc.cdf); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.cdf, got, tc.want)
		}
	}
	r := &simulator.Report{Currency: "EUR", TapLatencyMs: map[string]float64{"p50": 1, "p99": 2}, TapLatencyCDF: &simulator.LatencyCDF{Samples: 22, Ms: make([]float64, 101)},
		ConfirmLatencyMs: map[string]float64{"p50": 3, "p99": 4}, ConfirmLatencyCDF: &simulator.LatencyCDF{Samples: 22, Ms: make([]float64, 101)}}
	var b bytes.Buffer
	printReport(&b, r)
	if n := strings.Count(b.String(), "22 samples only: p99 is the slowest"); n != 2 {
		t.Errorf("the note is on %d latency rows, want 2:\n%s", n, b.String())
	}
}
