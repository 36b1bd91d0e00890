package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// TestClearingEnrolCommands: the enrol commands check their flags, queue
// requests holding the rider's account and the medium's key (never the
// token) that a running clearing with a feed applies; one it refuses is
// reported with clearing's reason; list reads a stopped clearing's history.
func TestClearingEnrolCommands(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "clearing")
	until := time.Now().Add(30 * 24 * time.Hour).Format(time.RFC3339)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"enrol", "add", "--media", "card", "--token", "x"}, "--data DIR"},
		{[]string{"enrol", "add", "--data", data, "--token", "x"}, "--media is required"},
		{[]string{"enrol", "add", "--data", data, "--media", "bus", "--token", "x"}, `media "bus"`},
		{[]string{"enrol", "add", "--data", data, "--media", "card"}, "--token is required"},
		{[]string{"enrol", "add", "--data", data, "--media", "card", "--token", "x"}, "no rider key"},
		{[]string{"enrol", "revoke", "--data", data, "--rider", "passenger/card/x", "--approved-by", "me"}, "32 lower-case hex"},
		{[]string{"enrol", "revoke", "--data", data, "--rider", "passenger/card/0x" + strings.Repeat("a", 32), "--media", "card", "--approved-by", "me"}, "not both"},
		{[]string{"enrol", "list"}, "--data DIR"},
	} {
		if _, _, err := runClearingCmd(t, "", c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %q", c.args, err, c.want)
		}
	}

	// A category that is no rider category is a usage error (exit status 64)
	// naming it and the categories, checked before anything is queued:
	// against the documented set, or the categories of --feed.
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, clearing.RiderKeyFile), []byte(strings.Repeat("ab", clearing.RiderKeySize)), 0o600); err != nil {
		t.Fatal(err)
	}
	cityFeed := "../../clearing/journeys/testdata/city"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--category", "superhero"}, `--category "superhero": not a rider category of Faregate's documented set (adult, concession); give --feed DIR|ZIP, the feed clearing prices with, for its categories`},
		{[]string{"--category", "superhero", "--feed", cityFeed}, `--category "superhero": not a rider category of the feed ` + cityFeed + ` (adult, concession)`},
		{[]string{"--category", "concession", "--feed", filepath.Join(sharedGTFS(t), "nigiri-fares")}, `--category "concession": not a rider category of the feed`},
		{[]string{"--category", "concession", "--feed", filepath.Join(dir, "no-feed")}, "--feed"},
		// Dates clearing would refuse whatever its clock, refused before
		// they are queued.
		{[]string{"--category", "concession", "--valid-until", "2020-12-31T04:00:00+01:00"}, "valid_until 2020-12-31T03:00:00Z is in the past"},
		{[]string{"--category", "concession", "--valid-from", "2020-01-01T04:00:00+01:00"}, "enrolments are never backdated"},
		{[]string{"--category", "concession", "--valid-from", time.Now().Add(31 * 24 * time.Hour).Format(time.RFC3339)}, "is not after valid_from"},
		// Who approved it is the record's accountability.
		{[]string{"--category", "concession", "--approved-by", "   "}, "the name is blank"},
	} {
		args := append([]string{"enrol", "add", "--data", data, "--media", "card", "--token", "x", "--valid-until", until, "--approved-by", "desk"}, c.args...)
		_, _, err := runClearingCmd(t, "", args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || exitCode(err) != exitUsage {
			t.Errorf("%v: %v (exit %d), want a usage error naming %q", c.args, err, exitCode(err), c.want)
		}
	}
	// A file of tokens piped to --token - is refused, not its first line
	// enrolled and the rest dropped.
	if _, _, err := runClearingCmd(t, "card-a\ncard-b\n", "enrol", "add", "--data", data, "--media", "card", "--token", "-",
		"--category", "concession", "--valid-until", until, "--approved-by", "desk"); err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), "stdin holds more than one line") {
		t.Errorf("two tokens on stdin: %v (exit %d), want a usage error", err, exitCode(err))
	}
	if pending, err := clearing.PendingEnrolments(data); err != nil || len(pending) != 0 {
		t.Fatalf("refused enrolments were queued: %v, %v", pending, err)
	}
	// The category is checked before the data dir is read.
	if _, _, err := runClearingCmd(t, "", "enrol", "add", "--data", filepath.Join(dir, "none"), "--media", "card", "--token", "x",
		"--category", "superhero", "--valid-until", until, "--approved-by", "desk"); err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), `"superhero"`) {
		t.Errorf("superhero with a missing data dir: %v", err)
	}
	if err := os.Remove(filepath.Join(data, clearing.RiderKeyFile)); err != nil {
		t.Fatal(err)
	}

	// A running clearing with the city feed applies what the commands queue.
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := clearing.ParseRegistry([]byte(`{"currency": "EUR", "operators": [{"id": "metro", "name": "Metro", "flat_fare": 250}]}`))
	if err != nil {
		t.Fatal(err)
	}
	led, err := ledger.OpenEmbedded(ctx, filepath.Join(dir, "chain"), ledger.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	if err := clearing.PublishRegistry(ctx, led, reg); err != nil {
		t.Fatal(err)
	}
	feed, version, err := loadFeed("../../clearing/journeys/testdata/city", quiet)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := clearing.Open(ctx, clearing.Config{DataDir: data, NATSPort: -1, Registry: reg, Ledger: led, Period: time.Hour, Logger: quiet, Feed: feed, FeedVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cl.Run(runCtx) }()

	for _, c := range []struct{ args []string }{
		{[]string{"enrol", "add", "--data", data, "--media", "card", "--token", "x", "--valid-until", until, "--approved-by", "desk"}},
		{[]string{"enrol", "add", "--data", data, "--media", "card", "--token", "x", "--category", "concession", "--approved-by", "desk"}},
		{[]string{"enrol", "add", "--data", data, "--media", "card", "--token", "x", "--category", "concession", "--valid-until", until}},
		{[]string{"enrol", "add", "--data", data, "--media", "card", "--token", "x", "--category", "concession", "--valid-until", "soon", "--approved-by", "desk"}},
	} {
		if _, _, err := runClearingCmd(t, "", c.args...); err == nil {
			t.Errorf("%v: accepted", c.args)
		}
	}
	out, _, err := runClearingCmd(t, "secret-card-9\n", "enrol", "add", "--data", data, "--media", "card", "--token", "-",
		"--category", "concession", "--valid-until", until, "--approved-by", "desk-2", "--wait", "10s")
	rider := cl.RiderAccount(fare.Card, "secret-card-9")
	if err != nil || !strings.Contains(out, "applied by clearing") || !strings.Contains(out, rider) {
		t.Fatalf("enrol add: %q, %v", out, err)
	}
	// A category the command knows (from another feed, --feed) but
	// clearing's feed does not: clearing refuses it, and --wait says so.
	_, _, err = runClearingCmd(t, "", "enrol", "add", "--data", data, "--media", "card", "--token", "other", "--feed", filepath.Join(sharedGTFS(t), "nigiri-fares"),
		"--category", "reduced", "--valid-until", until, "--approved-by", "desk-2", "--wait", "10s")
	if err == nil || !strings.Contains(err.Error(), `unknown rider category "reduced"`) {
		t.Fatalf("enrolment into a category clearing's feed lacks: %v", err)
	}
	if out, _, err = runClearingCmd(t, "", "enrol", "revoke", "--data", data, "--rider", rider, "--approved-by", "desk-3", "--wait", "10s"); err != nil || !strings.Contains(out, "applied") {
		t.Fatalf("enrol revoke: %q, %v", out, err)
	}
	hist, _, err := cl.RiderEnrolments(rider)
	if err != nil || len(hist) != 2 || hist[0].ApprovedBy != "desk-2" || hist[0].Category != "concession" || !hist[1].Revoked || hist[1].ApprovedBy != "desk-3" {
		t.Fatalf("history: %+v, %v", hist, err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}

	// Queued while clearing is stopped: the request names no token.
	if _, _, err := runClearingCmd(t, "", "enrol", "add", "--data", data, "--media", "face", "--token", "subject-77",
		"--category", "concession", "--valid-until", until, "--approved-by", "desk", "--wait", "0"); err != nil {
		t.Fatal(err)
	}
	pending, err := clearing.PendingEnrolments(data)
	if err != nil || len(pending) != 1 {
		t.Fatalf("pending: %v, %v", pending, err)
	}
	b, err := os.ReadFile(pending[0])
	if err != nil || strings.Contains(string(b), "subject-77") || !strings.Contains(string(b), fare.DenyKey(fare.Face, "subject-77")) {
		t.Fatalf("queued request %s: %v", b, err)
	}
	out, _, err = runClearingCmd(t, "secret-card-9\n", "enrol", "list", "--data", data, "--media", "card", "--token", "-")
	if err != nil || !strings.Contains(out, "1 request(s) queued") || !strings.Contains(out, "(revoked)") || !strings.Contains(out, "desk-2") {
		t.Fatalf("enrol list: %q, %v", out, err)
	}
	if out, _, err = runClearingCmd(t, "", "enrol", "list", "--data", data); err != nil || strings.Count(out, rider) != 1 || !strings.Contains(out, "Z\t") && !strings.Contains(out, "Z ") {
		t.Fatalf("enrol list of every rider (UTC without a feed): %q, %v", out, err)
	}
	// With the feed, its agency's zone (the city's is Europe/Berlin).
	if out, _, err = runClearingCmd(t, "", "enrol", "list", "--data", data, "--feed", cityFeed); err != nil || !regexp.MustCompile(`T\d\d:\d\d:\d\d\+0[12]:00`).MatchString(out) || strings.Contains(out, "Z ") {
		t.Fatalf("enrol list --feed: %q, %v", out, err)
	}
}
