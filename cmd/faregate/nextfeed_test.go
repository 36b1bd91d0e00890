package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// TestLiveFeedVersionTakesEffect: clearing started with a new feed version
// scheduled for Thursday 04:00 (the adult bus fare raised from 1.80 to
// 2.00) prices Wednesday's taps with the old version, also one arriving
// after Thursday's, and Thursday's with the new one; the independent
// repricing agrees day by day.
func TestLiveFeedVersionTakesEffect(t *testing.T) {
	next := filepath.Join(t.TempDir(), "city-2")
	if err := os.CopyFS(next, os.DirFS(cityFeedDir)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(next, "fare_products.txt")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), "adult,,1.80,EUR", "adult,,2.00,EUR", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	nextFeed, nextVersion, err := loadFeed(next, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	c := startLiveCity(t, []gateSpec{{"bus-s01-g1", "bus", "bus-s01", "bus", "bus-L1"}}, func(cfg *clearing.Config) {
		// Stated as 02:30 UTC: the first fare day beginning at or after it
		// is Thursday's (04:00 Berlin, 03:00 UTC).
		cfg.NextFeed, cfg.NextFeedVersion, cfg.NextFeedFrom = nextFeed, nextVersion, decAt(3, 3, 30)
	})
	c.tap("bus-s01-g1", fare.Validate, "card-v", decAt(2, 11, 0))
	c.tap("bus-s01-g1", fare.Validate, "card-v", decAt(3, 11, 0))
	c.tap("bus-s01-g1", fare.Validate, "card-v", decAt(2, 12, 0)) // late, after Thursday's
	c.waitFor("3 taps priced", func() bool { return c.cl.Stats().Priced >= 3 })
	bal, err := c.cl.Store().Balance(c.cl.RiderAccount(fare.Card, "card-v"))
	if err != nil {
		t.Fatal(err)
	}
	if bal.Net() != -(180 + 180 + 200) {
		t.Fatalf("rider charged %d, want 5.60 (two old bus fares on Wednesday, one new on Thursday)", -bal.Net())
	}
	fa, err := c.cl.AuditFares()
	if err != nil || fa.Count != 0 || fa.RiderDays != 2 {
		t.Fatalf("fare audit %+v, %v", fa, err)
	}

	// Once Thursday has begun, a restart with the new version as --feed
	// alone would price Wednesday's late taps with it: refused, naming
	// the day, both versions and what to start with instead.
	full := c.cfg
	c.stopGate("bus-s01-g1")
	c.stopRun()
	c.cfg.Feed, c.cfg.FeedVersion, c.cfg.NextFeed, c.cfg.NextFeedVersion, c.cfg.NextFeedFrom = nextFeed, nextVersion, nil, "", time.Time{}
	cl, err := clearing.Open(c.ctx, c.cfg)
	if err == nil {
		cl.Close()
		t.Fatal("clearing started with the next version as --feed alone, over a Wednesday priced with the first")
	}
	for _, want := range []string{"1 of 2 stored rider days", "fare day 2026-12-02, priced with version " + full.FeedVersion, "would price with version " + nextVersion, "--next-feed-from"} {
		if !errors.Is(err, clearing.ErrFeedHistory) || !strings.Contains(err.Error(), want) {
			t.Fatalf("restart with the next version alone: %v, want %v naming %q", err, clearing.ErrFeedHistory, want)
		}
	}
	// A later --next-feed-from would move Thursday back to the first
	// version: refused too. The same chain again starts, and a late
	// Wednesday tap keeps the old fare.
	c.cfg = full
	c.cfg.NextFeedFrom = decAt(4, 3, 30)
	if cl, err = clearing.Open(c.ctx, c.cfg); !errors.Is(err, clearing.ErrFeedHistory) || !strings.Contains(err.Error(), "fare day 2026-12-03") {
		if cl != nil {
			cl.Close()
		}
		t.Fatalf("restart moving the next version a day later: %v, want it refused for Thursday", err)
	}
	// Without a feed the store's days would have their late taps charged
	// flat fares: refused.
	c.cfg = full
	c.cfg.Feed, c.cfg.FeedVersion, c.cfg.NextFeed, c.cfg.NextFeedVersion, c.cfg.NextFeedFrom = nil, "", nil, "", time.Time{}
	if cl, err = clearing.Open(c.ctx, c.cfg); !errors.Is(err, clearing.ErrFeedHistory) || !strings.Contains(err.Error(), "no feed is given: start with --feed") {
		if cl != nil {
			cl.Close()
		}
		t.Fatalf("restart without a feed: %v, want it refused", err)
	}
	// A store whose chain record is lost (or unreadable) is judged by its
	// days against the chain given alone: the next version moved to
	// Tuesday would price Wednesday, priced with the first, and is still
	// refused; a record that is no chain stops nothing by itself (the good
	// start below).
	for _, rec := range []string{"", "[]", "{not json"} {
		setChainRecord(t, filepath.Join(c.dir, "clearing"), rec)
		c.cfg = full
		c.cfg.NextFeedFrom = decAt(1, 3, 30)
		if cl, err = clearing.Open(c.ctx, c.cfg); !errors.Is(err, clearing.ErrFeedHistory) || !strings.Contains(err.Error(), "no chain recorded") || !strings.Contains(err.Error(), "fare day 2026-12-02") {
			if cl != nil {
				cl.Close()
			}
			t.Fatalf("record %q, the next version from Tuesday: %v, want it refused for Wednesday", rec, err)
		}
	}
	c.cfg = full
	c.runClearing()
	c.startGate("bus-s01-g1")
	c.tap("bus-s01-g1", fare.Validate, "card-v", decAt(2, 13, 0))
	c.waitFor("the late tap priced", func() bool { return c.cl.Stats().Priced >= 1 })
	if bal, err = c.cl.Store().Balance(c.cl.RiderAccount(fare.Card, "card-v")); err != nil || bal.Net() != -(180+180+180+200) {
		t.Fatalf("rider charged %d (%v), want 7.40: the late Wednesday tap at the old fare", -bal.Net(), err)
	}
}

// TestLiveFeedVersionRenamesItsDefaultCategory: a new feed version whose
// default rider category has another id (adult renamed standard) prices a
// rider enrolled in nothing in its own default from its first day. Before,
// a day of the new version took the first version's default, which the
// new one does not know, and every such tap from the switch was unpriced:
// the rider travelled free (an outside review).
func TestLiveFeedVersionRenamesItsDefaultCategory(t *testing.T) {
	next := filepath.Join(t.TempDir(), "city-2")
	if err := os.CopyFS(next, os.DirFS(cityFeedDir)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"rider_categories.txt", "fare_products.txt", "fare_caps.txt"} {
		p := filepath.Join(next, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "adult", "standard")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nextFeed, nextVersion, err := loadFeed(next, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	if nextFeed.DefaultRiderCategory() != "standard" {
		t.Fatalf("the next version's default: %q", nextFeed.DefaultRiderCategory())
	}
	c := startLiveCity(t, []gateSpec{{"bus-s01-g1", "bus", "bus-s01", "bus", "bus-L1"}}, func(cfg *clearing.Config) {
		cfg.NextFeed, cfg.NextFeedVersion, cfg.NextFeedFrom = nextFeed, nextVersion, decAt(3, 3, 30)
	})
	c.tap("bus-s01-g1", fare.Validate, "card-r", decAt(2, 11, 0))
	c.tap("bus-s01-g1", fare.Validate, "card-r", decAt(3, 11, 0))
	c.waitFor("2 taps applied", func() bool { return c.cl.Stats().Priced+c.cl.Stats().Unpriced >= 2 })
	if s := c.cl.Stats(); s.Priced != 2 || s.Unpriced != 0 {
		t.Fatalf("priced %d, unpriced %d: want both taps priced, each day in its version's default category", s.Priced, s.Unpriced)
	}
	bal, err := c.cl.Store().Balance(c.cl.RiderAccount(fare.Card, "card-r"))
	if err != nil || bal.Net() != -(180+180) {
		t.Fatalf("rider charged %d (%v), want 3.60: a bus fare on each day", -bal.Net(), err)
	}
	if fa, err := c.cl.AuditFares(); err != nil || fa.Count != 0 || fa.RiderDays != 2 {
		t.Fatalf("fare audit %+v, %v", fa, err)
	}
}

// TestLoadFeedRefusesAFeedWithoutLegRules: a feed that loads but has no
// fare leg rules would apply every tap free of charge; clearing refuses
// it by name.
func TestLoadFeedRefusesAFeedWithoutLegRules(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"agency.txt", "stops.txt", "routes.txt"} {
		b, err := os.ReadFile(filepath.Join(cityFeedDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := loadFeed(dir, quietLog); err == nil || !strings.Contains(err.Error(), "fare_leg_rules.txt is missing or empty") {
		t.Fatalf("a feed without fares: %v, want it refused naming fare_leg_rules.txt", err)
	}
	if _, _, err := loadFeed(cityFeedDir, quietLog); err != nil {
		t.Fatalf("the city feed: %v", err)
	}
}

// TestFeedVersionScheduledLive: the fare desk schedules a new feed version
// on a running clearing house (`faregate clearing feeds schedule`, POST
// /v1/feeds) for Friday 04:00, with no restart: Thursday's taps, one
// arriving after Friday's, keep the old bus fare (1.80), Friday's pay the
// new one (2.00), and the independent repricing follows the schedule. The
// schedule survives a restart and `ledger audit` reads it. Refused: a
// token of another role, a body that is no feed, a version in another
// time zone, a time within a day of the fare clock, a second version not
// after it; the same request again is a replay.
func TestFeedVersionScheduledLive(t *testing.T) {
	next := filepath.Join(t.TempDir(), "city-2")
	if err := os.CopyFS(next, os.DirFS(cityFeedDir)); err != nil {
		t.Fatal(err)
	}
	edit := func(dir, file, old, new string) {
		p := filepath.Join(dir, file)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), old) {
			t.Fatalf("%s has no %q", file, old)
		}
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), old, new)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit(next, "fare_products.txt", "adult,,1.80,EUR", "adult,,2.00,EUR")
	var clock, fareAhead atomic.Int64
	clock.Store(decAt(3, 2, 0).UnixNano()) // Thursday 02:00: Wednesday's fare day
	c := startLiveCity(t, []gateSpec{{"bus-s01-g1", "bus", "bus-s01", "bus", "bus-L1"}}, func(cfg *clearing.Config) {
		cfg.Now = func() time.Time { return time.Unix(0, clock.Load()) }
		// The fare clock may run ahead of the wall (a kept city's days).
		cfg.FareClock = func() time.Time { return time.Unix(0, clock.Load()+fareAhead.Load()) }
	})
	tokens, err := clearing.LoadTokenStore(filepath.Join(c.dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(clearing.NewAPI(c.cl, nil, clearing.WithTokens(tokens), clearing.WithAPILogger(quietLog)))
	defer srv.Close()
	token := func(role clearing.Role, operator, name string) (string, string) {
		tok, err := tokens.Issue(role, operator, name)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(c.dir, name+".token")
		if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return tok, p
	}
	desk, deskFile := token(clearing.RoleFares, "", "fare-desk")
	metro, _ := token(clearing.RoleOperator, "metro", "metro")
	zipOf := func(dir string) []byte {
		z, err := feedZip(dir)
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
	post := func(tok, ctype, from string, body []byte) (int, string) {
		u := srv.URL + "/v1/feeds"
		if from != "" {
			u += "?from=" + url.QueryEscape(from)
		}
		req, _ := http.NewRequest("POST", u, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	friday := "2026-12-04T04:00:00+01:00"
	elsewhere := filepath.Join(t.TempDir(), "city-utc")
	if err := os.CopyFS(elsewhere, os.DirFS(next)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(elsewhere, "agency.txt"))
	if err := os.WriteFile(filepath.Join(elsewhere, "agency.txt"), []byte(strings.ReplaceAll(string(b), "Europe/Berlin", "Europe/Lisbon")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, tok, ctype, from string
		body                   []byte
		status                 int
		want                   string
	}{
		{"an operator's token", metro, "application/zip", friday, zipOf(next), 403, "fares"},
		{"no zip", desk, "application/zip", friday, []byte("agency_id,agency_name\n"), 400, "zip"},
		{"JSON", desk, "application/json", friday, zipOf(next), 415, "application/zip"},
		{"no from", desk, "application/zip", "", zipOf(next), 400, "missing from"},
		{"another time zone", desk, "application/zip", friday, zipOf(elsewhere), 422, "Europe/Lisbon"},
		{"within a day of the fare clock", desk, "application/zip", "2026-12-03T03:00:00+01:00", zipOf(next), 422, "within 24h0m0s of clearing's fare clock"},
		{"in the past", desk, "application/zip", "2025-01-01T04:00:00+01:00", zipOf(next), 422, "2025-01-01T04:00:00+01:00 is in the past"},
		{"a mistyped year", desk, "application/zip", "9999-12-31T04:00:00Z", zipOf(next), 422, "more than 732 days ahead of clearing's fare clock"},
		{"a + not escaped", desk, "application/zip", "2026-12-04T04:00:00 01:00", zipOf(next), 400, "sent as %2B"},
	} {
		if st, body := post(tc.tok, tc.ctype, tc.from, tc.body); st != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d naming %q", tc.name, st, body, tc.status, tc.want)
		}
	}
	// The wall clock would allow Friday, the fare clock (a day ahead of
	// it) does not: days up to Friday may be priced already.
	fareAhead.Store(int64(24 * time.Hour))
	if st, body := post(desk, "application/zip", friday, zipOf(next)); st != 422 || !strings.Contains(body, "fare clock (2026-12-04T02:00:00+01:00)") {
		t.Errorf("Friday with the fare clock on Friday 02:00: %d %s", st, body)
	}
	fareAhead.Store(0)
	if entries, _ := os.ReadDir(filepath.Join(c.dir, "clearing", clearing.FeedScheduleDir)); len(entries) != 0 {
		t.Errorf("refused versions left files: %v", entries)
	}

	// The desk schedules it with the CLI, twice: the second is a replay.
	for i, want := range []string{`"replayed": false`, `"replayed": true`} {
		out, err := runCLI(t, "clearing", "feeds", "schedule", "--api", srv.URL, "--token-file", deskFile, "--feed", next, "--from", friday)
		if err != nil || !strings.Contains(out, want) || !strings.Contains(out, `"from_fare_day": "2026-12-04"`) {
			t.Fatalf("schedule %d: %v\n%s", i, err, out)
		}
	}
	// Going back to the feed in effect is not a new version.
	if st, body := post(desk, "application/zip", "2026-12-10T04:00:00+01:00", zipOf(cityFeedDir)); st != 409 || !strings.Contains(body, "live pricing follows already") {
		t.Errorf("the feed in effect as a new version: %d %s", st, body)
	}
	// A second version must take effect after it.
	edit(elsewhere, "agency.txt", "Europe/Lisbon", "Europe/Berlin")
	edit(elsewhere, "fare_products.txt", "adult,,2.00,EUR", "adult,,2.10,EUR")
	if st, body := post(desk, "application/zip", friday, zipOf(elsewhere)); st != 409 || !strings.Contains(body, "a new version must take effect after it") {
		t.Errorf("a second version for the same day: %d %s", st, body)
	}

	c.tap("bus-s01-g1", fare.Validate, "card-s", decAt(3, 11, 0))
	clock.Store(decAt(4, 12, 0).UnixNano())
	c.tap("bus-s01-g1", fare.Validate, "card-s", decAt(4, 11, 0))
	c.tap("bus-s01-g1", fare.Validate, "card-s", decAt(3, 12, 30)) // late, after Friday's
	c.waitFor("3 taps priced", func() bool { return c.cl.Stats().Priced >= 3 })
	bal, err := c.cl.Store().Balance(c.cl.RiderAccount(fare.Card, "card-s"))
	if err != nil {
		t.Fatal(err)
	}
	if bal.Net() != -(180 + 180 + 200) {
		t.Fatalf("rider charged %d, want 5.60 (two old bus fares on Thursday, one new on Friday)", -bal.Net())
	}
	fa, err := c.cl.AuditFares()
	if err != nil || fa.Count != 0 || fa.RiderDays != 2 {
		t.Fatalf("fare audit %+v, %v", fa, err)
	}

	// A Sunday version sent ten times at once: one 201, nine replays;
	// then withdrawn (it has not begun), and it is gone.
	sunday := filepath.Join(t.TempDir(), "city-3")
	if err := os.CopyFS(sunday, os.DirFS(next)); err != nil {
		t.Fatal(err)
	}
	edit(sunday, "fare_products.txt", "adult,,2.00,EUR", "adult,,2.20,EUR")
	sundayZip := zipOf(sunday)
	statuses := make(chan int, 10)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, body := post(desk, "application/zip", "2026-12-06T04:00:00+01:00", sundayZip)
			if st != 201 && st != 200 {
				t.Errorf("a concurrent copy: %d %s", st, body)
			}
			statuses <- st
		}()
	}
	wg.Wait()
	close(statuses)
	created := 0
	for st := range statuses {
		if st == 201 {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d of 10 concurrent copies created the version, want 1", created)
	}
	sundayVersion := nextVersion(t, sunday)
	out, err := runCLI(t, "clearing", "feeds", "withdraw", "--api", srv.URL, "--token-file", deskFile, "--version", sundayVersion)
	if err != nil || !strings.Contains(out, `"from_fare_day": "2026-12-06"`) || strings.Count(out, `"version"`) != 3 {
		t.Fatalf("withdraw Sunday's version: %v\n%s", err, out) // the withdrawn entry and the two versions left
	}
	if _, err := os.Stat(filepath.Join(c.dir, "clearing", clearing.FeedScheduleDir, strings.TrimPrefix(sundayVersion, "sha256:0x")+".zip")); !os.IsNotExist(err) {
		t.Errorf("the withdrawn version's zip is still kept: %v", err)
	}
	if _, err := runCLI(t, "clearing", "feeds", "withdraw", "--api", srv.URL, "--token-file", deskFile, "--version", nextVersion(t, next)); err == nil || !strings.Contains(err.Error(), "(422)") {
		t.Errorf("withdrawing Friday's version once Friday is priced: %v", err)
	}

	// A restart that would put a --next-feed before the scheduled version
	// is refused; without it, the schedule is back.
	srv.Close()
	for id := range c.terms {
		c.stopGate(id)
	}
	c.stopRun()
	early := c.cfg
	early.NextFeed, early.NextFeedVersion, early.NextFeedFrom = c.cfg.Feed, "early", decAt(5, 4, 0)
	if cl, err := clearing.Open(c.ctx, early); err == nil || !strings.Contains(err.Error(), "does not take effect after") {
		if cl != nil {
			cl.Close()
		}
		t.Fatalf("a restart with a --next-feed from Saturday under a version scheduled from Friday: %v", err)
	}
	// Nor may it start with the scheduled version as --feed: Thursday's
	// late taps would be priced at Friday's fares.
	newFeed, newVersion, err := loadFeed(next, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	renamed := c.cfg
	renamed.Feed, renamed.FeedVersion = newFeed, newVersion
	if cl, err := clearing.Open(c.ctx, renamed); err == nil || !strings.Contains(err.Error(), "start clearing with the version in effect before it") {
		if cl != nil {
			cl.Close()
		}
		t.Fatalf("a restart with the scheduled version as --feed: %v", err)
	}
	c.runClearing()
	c.startGate("bus-s01-g1")
	c.tap("bus-s01-g1", fare.Validate, "card-s", decAt(4, 13, 0))
	c.waitFor("the tap after the restart priced", func() bool { return c.cl.Stats().Priced >= 1 })
	if bal, err = c.cl.Store().Balance(c.cl.RiderAccount(fare.Card, "card-s")); err != nil || bal.Net() != -(180+180+200+200) {
		t.Fatalf("after the restart the rider is charged %d, %v; want 7.60", -bal.Net(), err)
	}
	srv2 := httptest.NewServer(clearing.NewAPI(c.cl, nil, clearing.WithTokens(tokens), clearing.WithAPILogger(quietLog)))
	defer srv2.Close()
	out, err = runCLI(t, "clearing", "feeds", "list", "--api", srv2.URL, "--token-file", deskFile)
	if err != nil || strings.Count(out, `"version"`) != 2 || !strings.Contains(out, `"begins": "2026-12-04T04:00:00+01:00"`) {
		t.Fatalf("feeds list after the restart: %v\n%s", err, out)
	}
}

// nextVersion is the version clearing gives the feed directory dir sent
// as the CLI sends it.
func nextVersion(t *testing.T, dir string) string {
	z, err := feedZip(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := clearing.FeedVersionOfZip(z)
	if err != nil {
		t.Fatal(err)
	}
	// A directory and the zip of it are one version.
	if dv, err := clearing.FeedVersionOfPath(dir); err != nil || dv != v {
		t.Fatalf("%s: version %s as a directory (%v), %s as a zip", dir, dv, err, v)
	}
	return v
}

// setChainRecord replaces (or, with "", deletes) the chain of feed versions
// the store of a stopped clearing (its data dir) recorded.
func setChainRecord(t *testing.T, dataDir, rec string) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(clearing.StoreDir(dataDir)).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(txn *badger.Txn) error {
		if rec == "" {
			return txn.Delete([]byte("mfeed-chain"))
		}
		return txn.Set([]byte("mfeed-chain"), []byte(rec))
	}); err != nil {
		t.Fatal(err)
	}
}
