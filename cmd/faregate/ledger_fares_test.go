package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/clearing/journeys"
)

// TestLedgerAuditRepricesFares: `ledger audit` reprices every rider day
// from the stored events with the run's feed (run.json names it) and finds
// nothing wrong in a fresh run; with a feed whose fares differ from those
// clearing charged (as when postings were moved between riders, which keep
// every batch net, root and balance), it lists the rider days and fails.
func TestLedgerAuditRepricesFares(t *testing.T) {
	dir := t.TempDir()
	out, err := runCLI(t, "simulate", "--data", dir, "--duration", "3s", "--rate", "60", "--period", "1s", "--http", "",
		"--operators", "2", "--stops", "1", "--gates", "1", "--passengers", "100", "--face", "0")
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, out)
	}
	// The run names its feed's version as clearing names any feed's.
	runVersion, err := clearing.FeedVersionOfPath(filepath.Join(dir, "feed"))
	if err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "ledger", "audit", "--data", dir)
	if err != nil || strings.Contains(out, "NOTE fares") || !strings.Contains(out, "fares repriced with "+filepath.Join(dir, "feed")+", version "+runVersion+" (the store priced with feed version "+runVersion+"; if that was another feed, give it with --feed): every rider day as the feed prices it") ||
		!strings.Contains(out, fmt.Sprintf("; pricing rules %d, by which the store priced from apply index 0 on\n", journeys.RulesVersion)) {
		t.Fatalf("audit of a fresh run: %v\n%s", err, out)
	}
	out, err = runCLI(t, "ledger", "audit", "--data", dir, "--json")
	var rep AuditOutput
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.Fares == nil {
		t.Fatalf("audit --json: %v\n%s", err, out)
	}
	if rep.Fares.Count != 0 || rep.Fares.RiderDays == 0 || rep.Fares.Posted.Minor == 0 || rep.Fares.Posted != rep.Fares.Recomputed ||
		rep.Fares.Posted.Currency != "EUR" || rep.FaresFeed != filepath.Join(dir, "feed") || rep.FaresFeedVersion != runVersion {
		t.Fatalf("fare audit of a fresh run: %+v (feed %q)", rep.Fares, rep.FaresFeed)
	}

	// A proof shows its times in the agency's zone (the run's feed), as
	// the settlement API does.
	st, err := clearing.OpenStoreReadOnly(filepath.Join(dir, "clearing", "store"), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	ids, err := st.AppliedEventIDs()
	st.Close()
	if err != nil || len(ids) == 0 {
		t.Fatalf("applied events: %d, %v", len(ids), err)
	}
	out, err = runCLI(t, "ledger", "prove", "--event", ids[0].String(), "--data", dir, "--json")
	var p ProofOutput
	if err != nil || json.Unmarshal([]byte(out), &p) != nil {
		t.Fatalf("prove: %v\n%s", err, out)
	}
	feed, err := gtfs.LoadPath(filepath.Join(dir, "feed"))
	if err != nil {
		t.Fatal(err)
	}
	_, want := p.Event.DeviceTime.In(feed.Location()).Zone()
	for what, at := range map[string]time.Time{"device time": p.Event.DeviceTime, "applied": p.Event.AppliedAt, "period start": p.Batch.PeriodStart} {
		if _, off := at.Zone(); off != want || want == 0 {
			t.Errorf("prove: %s %s, want the agency's zone %s (offset %d s)", what, at, feed.Location(), want)
		}
	}

	// The same feed with every product 0.10 dearer.
	dearer := filepath.Join(t.TempDir(), "feed")
	if err := os.CopyFS(dearer, os.DirFS(filepath.Join(dir, "feed"))); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dearer, "fare_products.txt")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) < 2 {
		t.Fatalf("fare_products.txt: %d rows, %v", len(rows), err)
	}
	col := -1
	for i, h := range rows[0] {
		if h == "amount" {
			col = i
		}
	}
	for _, r := range rows[1:] {
		v, err := fares.ParseAmount(r[col], "EUR")
		if err != nil {
			t.Fatal(err)
		}
		r[col] = fares.FormatAmount(v+10, "EUR")
	}
	var b strings.Builder
	w := csv.NewWriter(&b)
	if err := w.WriteAll(rows); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "ledger", "audit", "--data", dir, "--feed", dearer)
	if err == nil || !strings.Contains(err.Error(), "rider day(s) whose postings differ from the feed's price") ||
		!strings.Contains(out, "MISMATCH fares rider passenger/") || !strings.Contains(out, "RIDER DAYS DIFFER") {
		t.Fatalf("audit with a dearer feed: %v\n%s", err, out)
	}
	// The two versions side by side, once (not said for the run's own feed).
	if dearerVersion, err := clearing.FeedVersionOfPath(dearer); err != nil || strings.Count(out, "NOTE fares: the feeds given are "+dearer+", version "+dearerVersion+"; the store priced rider days with "+runVersion+", of which "+runVersion+" is none of them") != 1 {
		t.Errorf("audit with another feed: the versions not named side by side (%v)\n%s", err, out)
	}
	// The dearer feed scheduled while clearing ran (as POST /v1/feeds
	// keeps it): from 2030 it prices no day of the run and the audit,
	// following it, stays clean and names it; from the run's first fare
	// day it would have priced every day dearer, and the audit says so.
	z, err := feedZip(dearer)
	if err != nil {
		t.Fatal(err)
	}
	version, err := clearing.FeedVersionOfZip(z)
	if err != nil {
		t.Fatal(err)
	}
	feedsDir := filepath.Join(dir, "clearing", clearing.FeedScheduleDir)
	if err := os.MkdirAll(feedsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(feedsDir, strings.TrimPrefix(version, "sha256:0x")+".zip"), z, 0o600); err != nil {
		t.Fatal(err)
	}
	schedule := func(from time.Time) {
		sched := []clearing.ScheduledFeed{{Version: version, From: from, FromFareDay: feed.FareDay(from).String(), File: strings.TrimPrefix(version, "sha256:0x") + ".zip"}}
		b, _ := json.Marshal(sched)
		if err := os.WriteFile(filepath.Join(feedsDir, "schedule.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	schedule(time.Date(2030, 1, 1, 4, 0, 0, 0, feed.Location()))
	out, err = runCLI(t, "ledger", "audit", "--data", dir)
	if err != nil || !strings.Contains(out, "and the versions scheduled while clearing ran, "+version+" from 2030-01-01") || !strings.Contains(out, "every rider day as the feed prices it") {
		t.Fatalf("audit following a version scheduled from 2030: %v\n%s", err, out)
	}
	schedule(feed.FareDayBegins(feed.FareDay(p.Event.DeviceTime)))
	if out, err = runCLI(t, "ledger", "audit", "--data", dir); err == nil || !strings.Contains(out, "RIDER DAYS DIFFER") {
		t.Fatalf("audit following a version scheduled from the run's first day: %v\n%s", err, out)
	}
	os.RemoveAll(feedsDir)
	// The dearer feed as --next-feed from 2030: the chain given is named
	// whole, both versions, and no note is made (the store's version is
	// one of them; an outside test saw the note name the first feed only).
	out, err = runCLI(t, "ledger", "audit", "--data", dir, "--feed", filepath.Join(dir, "feed"), "--next-feed", dearer, "--next-feed-from", "2030-01-01T04:00:00+01:00")
	if dearerVersion, verr := clearing.FeedVersionOfPath(dearer); err != nil || verr != nil || strings.Contains(out, "NOTE fares") ||
		!strings.Contains(out, "fares repriced with "+filepath.Join(dir, "feed")+", version "+runVersion+"; then "+dearer+", version "+dearerVersion+", from 2030-01-01T04:00:00+01:00") {
		t.Fatalf("audit with the dearer feed next from 2030: %v %v\n%s", err, verr, out)
	}

	// A feed that does not load is named, and the rest of the audit is
	// still printed.
	if out, err = runCLI(t, "ledger", "audit", "--data", dir, "--feed", filepath.Join(dir, "no-such-feed")); err == nil ||
		!strings.Contains(err.Error(), "fares not repriced: the feed "+filepath.Join(dir, "no-such-feed")+" (from --feed)") || !strings.Contains(out, "audit clean:") {
		t.Fatalf("audit with a missing feed: %v\n%s", err, out)
	}
}
