package clearing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// feedCity is clearing pricing live from the simulator city's feed
// (journeys/testdata/city), with gates at its stops, on a fresh chain.
type feedCity struct {
	dir  string
	reg  *clearing.Registry
	keys map[string]ed25519.PrivateKey
	feed *fares.Feed
	cl   *running
}

var feedGates = []struct{ id, op, stop, network, route string }{
	{"bus-s01-g1", "bus", "bus-s01", "bus", "bus-L1"},
	{"metro-s01-g1", "metro", "metro-s01", "metro", "metro-L1"},
	{"metro-s03-g1", "metro", "metro-s03", "metro", "metro-L1"},
}

func startFeedCity(t *testing.T, edit ...func(*clearing.Config)) *feedCity {
	t.Helper()
	feed, err := gtfs.LoadPath("journeys/testdata/city")
	if err != nil {
		t.Fatal(err)
	}
	fc := &feedCity{dir: t.TempDir(), keys: map[string]ed25519.PrivateKey{}, feed: feed}
	fc.reg = &clearing.Registry{Currency: "EUR", Operators: []clearing.OperatorConfig{{ID: "metro", Name: "Metro", FlatFare: 250}, {ID: "bus", Name: "Bus", FlatFare: 180}}}
	for i, g := range feedGates {
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[1] = byte(60+i), 0xfe
		fc.keys[g.id] = ed25519.NewKeyFromSeed(seed)
		fc.reg.Terminals = append(fc.reg.Terminals, provenTerminal(fc.keys[g.id], g.id, g.op, g.stop))
		fc.reg.Legs = append(fc.reg.Legs, clearing.TerminalLeg{Terminal: g.id, Network: g.network, Route: g.route})
	}
	b, _ := json.Marshal(fc.reg)
	if fc.reg, err = clearing.ParseRegistry(b); err != nil {
		t.Fatal(err)
	}
	led := openLedger(t, filepath.Join(fc.dir, "chain"))
	t.Cleanup(func() { led.Close() })
	cfg := clearing.Config{DataDir: filepath.Join(fc.dir, "clearing"), Registry: fc.reg, Ledger: led, Period: time.Hour,
		Feed: feed, FeedVersion: "city-test",
		// The cases are dated in December 2026 on the wall clock.
		MaxDeviceTimeAhead: 60 * 24 * time.Hour}
	for _, e := range edit {
		e(&cfg)
	}
	fc.cl = startClearing(t, cfg)
	t.Cleanup(func() { fc.cl.stop(t) })
	return fc
}

// apiCall sends a request with a bearer token and decodes the JSON answer.
func apiCall(t *testing.T, srv *httptest.Server, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	status, _, out := apiCallWith(t, srv, method, path, token, body)
	return status, out
}

// apiCallWith is apiCall with more request headers (name, value pairs,
// each added) and the answer's headers.
func apiCallWith(t *testing.T, srv *httptest.Server, method, path, token string, body any, hdr ...string) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, srv.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header, out
}

// TestConcessionEnrolment: a card is enrolled as concession through the
// API by the concessions desk (approved_by = its token's name) and tapped
// at a real terminal through NATS, whose copy of the enrolments puts the
// category in the event: it is charged concession fares and the
// concession cap on its enrolled day, and the adult fare once the
// enrolment has expired; a card not enrolled whose tap line claims
// concession pays adult fares. The independent fare audit agrees. Each
// role is checked against each enrolment endpoint, and each wrong request
// is refused naming what is wrong.
func TestConcessionEnrolment(t *testing.T) {
	ctx := context.Background()
	fc := startFeedCity(t)
	tokens, err := clearing.LoadTokenStore(filepath.Join(fc.dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(r clearing.Role, op, name string) string {
		tok, err := tokens.Issue(r, op, name)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	desk, auditor, metro := issue(clearing.RoleConcessions, "", "desk-1"), issue(clearing.RoleAuditor, "", "audit"), issue(clearing.RoleOperator, "metro", "metro")
	srv := httptest.NewServer(clearing.NewAPI(fc.cl.Clearing, nil, clearing.WithTokens(tokens)))
	defer srv.Close()

	d := fc.feed.FareDay(time.Now()) + 2 // a day to come: enrolments are never backdated
	start := func(d fares.Date) string { return fc.feed.FareDayBegins(d).Format(time.RFC3339) }
	rider := fc.cl.RiderAccount(fare.Card, "conc-1")
	okBody := map[string]any{"media": "card", "token": "conc-1", "category": "concession", "valid_from": start(d), "valid_until": start(d + 1)}
	for _, tc := range []struct {
		name, method, path, token string
		body                      any
		status                    int
		says                      string
	}{
		{"operator enrols", "POST", "/v1/enrolments", metro, okBody, 403, "concessions tokens only"},
		{"auditor enrols", "POST", "/v1/enrolments", auditor, okBody, 403, "concessions tokens only"},
		{"unknown category", "POST", "/v1/enrolments", desk, map[string]any{"media": "card", "token": "x", "category": "senior", "valid_until": start(d + 1)}, 400, `unknown rider category "senior"`},
		{"bad time", "POST", "/v1/enrolments", desk, map[string]any{"media": "card", "token": "x", "category": "concession", "valid_until": "next tuesday"}, 400, `valid_until "next tuesday"`},
		{"missing token", "POST", "/v1/enrolments", desk, map[string]any{"media": "card", "category": "concession", "valid_until": start(d + 1)}, 400, "missing token"},
		{"past valid_from", "POST", "/v1/enrolments", desk, map[string]any{"media": "card", "token": "x", "category": "concession", "valid_from": start(d - 3), "valid_until": start(d + 1)}, 400, "never backdated"},
		{"unknown field", "POST", "/v1/enrolments", desk, map[string]any{"media": "card", "token": "x", "category": "concession", "valid_until": start(d + 1), "approved_by": "me"}, 400, "unknown field"},
		{"enrol", "POST", "/v1/enrolments", desk, okBody, 201, ""},
		{"operator reads", "GET", "/v1/enrolments/" + rider, metro, nil, 403, "operators do not see"},
		{"operator revokes", "DELETE", "/v1/enrolments/" + rider, metro, nil, 403, "concessions tokens only"},
		{"bad rider id", "GET", "/v1/enrolments/passenger/card/conc-1", auditor, nil, 400, "32 lower-case hex digits"},
		{"revoke a rider never enrolled", "DELETE", "/v1/enrolments/" + fc.cl.RiderAccount(fare.Card, "nobody"), desk, nil, 404, "never enrolled"},
		{"operator lists", "GET", "/v1/enrolments", metro, nil, 403, "operators do not see"},
		{"list after a bad rider", "GET", "/v1/enrolments?after=conc-1", desk, nil, 400, "after:"},
		{"list with a bad limit", "GET", "/v1/enrolments?limit=0", desk, nil, 400, "limit:"},
		{"concessions token elsewhere", "GET", "/v1/stats", desk, nil, 403, ""},
	} {
		status, out := apiCall(t, srv, tc.method, tc.path, tc.token, tc.body)
		if msg, _ := out["error"].(string); status != tc.status || !strings.Contains(msg, tc.says) {
			t.Errorf("%s: %d %v, want %d saying %q", tc.name, status, out, tc.status, tc.says)
		}
	}
	for _, tok := range []string{desk, auditor} {
		// The whole list, as a desk asks while clearing runs: the rider's
		// last record.
		status, out := apiCall(t, srv, "GET", "/v1/enrolments?limit=10", tok, nil)
		if list, _ := out["enrolments"].([]any); status != 200 || len(list) != 1 || list[0].(map[string]any)["rider"] != rider || out["next_after"] != nil {
			t.Fatalf("GET /v1/enrolments: %d %v", status, out)
		}
		if status, out := apiCall(t, srv, "GET", "/v1/enrolments?after="+rider, tok, nil); status != 200 || len(out["enrolments"].([]any)) != 0 {
			t.Fatalf("GET /v1/enrolments after the last rider: %d %v", status, out)
		}
		status, out = apiCall(t, srv, "GET", "/v1/enrolments/"+rider, tok, nil)
		hist, _ := out["history"].([]any)
		periods, _ := out["periods"].([]any)
		if status != 200 || len(hist) != 1 || len(periods) != 1 || out["category_now"] != "adult" {
			t.Fatalf("GET enrolments: %d %v", status, out)
		}
		rec := hist[0].(map[string]any)
		p := periods[0].(map[string]any)
		if rec["approved_by"] != "desk-1" || rec["category"] != "concession" || rec["key"] != fare.DenyKey(fare.Card, "conc-1") ||
			p["from"] != fc.feed.FareDayBegins(d).Format(time.RFC3339) || p["until"] != fc.feed.FareDayBegins(d+1).Format(time.RFC3339) || !strings.HasSuffix(rec["valid_from"].(string), "+01:00") {
			t.Fatalf("enrolment record %v, period %v", rec, p)
		}
		if b, _ := json.Marshal(out); strings.Contains(string(b), "conc-1") {
			t.Fatalf("the raw token in an API answer: %s", b)
		}
	}

	// Taps at a real bus validator, through NATS: five rides on the
	// enrolled day (0.90 each, capped at 4.00), one the day after (expired:
	// 1.80 adult); a card not enrolled claims concession: 1.80.
	term := startTerminalWith(t, fc.dir, fc.cl.NATSURL(), fc.reg, fc.keys, "bus-s01-g1", func(*terminal.Config) {})
	defer term.stop(t)
	// The gate holds the enrolment too: each event carries the category
	// it gives at the tap, never the line's claim.
	waitFor(t, "the enrolment at the gate", 10*time.Second, func() bool { v, _ := term.EnrolmentVersion(); return v == 1 })
	ride := func(card string, day fares.Date, hh int, want string) {
		t.Helper()
		at := fc.feed.FareDayBegins(day).Add(time.Duration(hh-4) * time.Hour)
		ev, err := term.Tap(ctx, terminal.Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: card, RiderCategory: "concession", Time: at})
		if err != nil {
			t.Fatal(err)
		}
		if ev.RiderCategory != want {
			t.Errorf("%s on %s at %d:00: the event says %q, want %q", card, day, hh, ev.RiderCategory, want)
		}
	}
	for hh := 10; hh < 15; hh++ {
		ride("conc-1", d, hh, "concession")
	}
	ride("conc-1", d+1, 10, "")
	ride("claims", d, 10, "")
	waitFor(t, "7 taps priced", 20*time.Second, func() bool { return fc.cl.Stats().Priced == 7 })
	for card, want := range map[string]fare.Amount{"conc-1": -400 - 180, "claims": -180} {
		b, err := fc.cl.Store().Balance(fc.cl.RiderAccount(fare.Card, card))
		if err != nil {
			t.Fatal(err)
		}
		if b.Net() != want {
			t.Errorf("%s charged %d, want %d", card, b.Net(), want)
		}
	}
	audit, err := fc.cl.AuditFares()
	if err != nil {
		t.Fatal(err)
	}
	if audit.Count != 0 || audit.Posted != audit.Recomputed || audit.Recomputed != 400+180+180 {
		t.Fatalf("fare audit: %+v", audit)
	}

	// Revoked by the desk: a record of its own, from the next fare day.
	status, out := apiCall(t, srv, "DELETE", "/v1/enrolments/"+rider, desk, nil)
	rec, _ := out["enrolment"].(map[string]any)
	if status != 200 || rec["revoked"] != true || rec["approved_by"] != "desk-1" || rec["seq"] != 2.0 ||
		rec["valid_from"] != fc.feed.FareDayBegins(fc.feed.FareDay(time.Now())+1).Format(time.RFC3339) {
		t.Fatalf("revoke: %d %v", status, out)
	}
	if hist, _, err := fc.cl.RiderEnrolments(rider); err != nil || len(hist) != 2 {
		t.Fatalf("history after the revocation: %+v, %v", hist, err)
	}
}

// TestEnrolmentIdempotency: an enrolment or revocation sent again with its
// Idempotency-Key (a desk's retry after a timeout) makes nothing new and
// answers with the first's record, however the second is worded in time;
// the same key for a different request is refused (422); keys are the
// calling party's own; a malformed key is refused. A queued request
// (`faregate clearing enrol add`) found again after it was applied (the
// file not yet deleted when clearing stopped) is not applied twice.
func TestEnrolmentIdempotency(t *testing.T) {
	fc := startFeedCity(t)
	tokens, err := clearing.LoadTokenStore(filepath.Join(fc.dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	desk1, _ := tokens.Issue(clearing.RoleConcessions, "", "desk-1")
	desk2, _ := tokens.Issue(clearing.RoleConcessions, "", "desk-2")
	srv := httptest.NewServer(clearing.NewAPI(fc.cl.Clearing, nil, clearing.WithTokens(tokens)))
	defer srv.Close()
	d := fc.feed.FareDay(time.Now()) + 2
	start := func(d fares.Date) string { return fc.feed.FareDayBegins(d).Format(time.RFC3339) }
	rider := fc.cl.RiderAccount(fare.Card, "idem-1")
	body := map[string]any{"media": "card", "token": "idem-1", "category": "concession", "valid_from": start(d), "valid_until": start(d + 1)}
	call := func(method, path, token string, body any, keys ...string) (int, http.Header, map[string]any) {
		t.Helper()
		var hdr []string
		for _, k := range keys {
			hdr = append(hdr, "Idempotency-Key", k)
		}
		return apiCallWith(t, srv, method, path, token, body, hdr...)
	}
	history := func() int {
		t.Helper()
		hist, _, err := fc.cl.RiderEnrolments(rider)
		if err != nil {
			t.Fatal(err)
		}
		return len(hist)
	}
	seqOf := func(out map[string]any) any { e, _ := out["enrolment"].(map[string]any); return e["seq"] }

	status, hdr, first := call("POST", "/v1/enrolments", desk1, body, "k-1")
	if status != 201 || hdr.Get("Idempotent-Replayed") != "" || history() != 1 {
		t.Fatalf("first enrolment: %d %v, %d records", status, first, history())
	}
	for _, tc := range []struct {
		name   string
		token  string
		body   map[string]any
		keys   []string
		status int
		says   string
		record int // records after
	}{
		{"the same request again", desk1, body, []string{"k-1"}, 200, "", 1},
		{"again, key in quotes", desk1, body, []string{`"k-1"`}, 200, "", 1},
		{"the same key, another category", desk1, map[string]any{"media": "card", "token": "idem-1", "category": "adult", "valid_from": start(d), "valid_until": start(d + 1)}, []string{"k-1"}, 422, "idempotency key already used for a different request", 1},
		{"the same key, another card", desk1, map[string]any{"media": "card", "token": "idem-2", "category": "concession", "valid_from": start(d), "valid_until": start(d + 1)}, []string{"k-1"}, 422, "different request", 1},
		{"a key with a space", desk1, body, []string{"k 1"}, 400, "not visible ASCII", 1},
		{"a key too long", desk1, body, []string{strings.Repeat("k", 256)}, 400, "want 1 to 255", 1},
		{"the key twice", desk1, body, []string{"k-1", "k-2"}, 400, "give it once", 1},
		{"the same request, until in another offset", desk1, map[string]any{"media": "card", "token": "idem-1", "category": "concession", "valid_from": start(d), "valid_until": fc.feed.FareDayBegins(d + 1).UTC().Format(time.RFC3339)}, []string{"k-1"}, 200, "", 1},
		{"another desk's same key is its own", desk2, body, []string{"k-1"}, 201, "", 2},
	} {
		status, hdr, out := call("POST", "/v1/enrolments", tc.token, tc.body, tc.keys...)
		msg, _ := out["error"].(string)
		if status != tc.status || !strings.Contains(msg, tc.says) || history() != tc.record {
			t.Errorf("%s: %d %v, %d records; want %d saying %q, %d records", tc.name, status, out, history(), tc.status, tc.says, tc.record)
		}
		if tc.status == 200 && (hdr.Get("Idempotent-Replayed") != "true" || seqOf(out) != seqOf(first)) {
			t.Errorf("%s: replayed %q, enrolment %v; want the first's (seq %v)", tc.name, hdr.Get("Idempotent-Replayed"), out["enrolment"], seqOf(first))
		}
	}
	// A token issued under a revoked token's name starts with no keys: it
	// neither replays nor probes its predecessor's.
	if err := tokens.Revoke("desk-1"); err != nil {
		t.Fatal(err)
	}
	desk1, _ = tokens.Issue(clearing.RoleConcessions, "", "desk-1")
	if status, hdr, out := call("POST", "/v1/enrolments", desk1, map[string]any{"media": "card", "token": "idem-1", "category": "adult", "valid_from": start(d), "valid_until": start(d + 1)}, "k-1"); status != 201 || hdr.Get("Idempotent-Replayed") != "" || history() != 3 {
		t.Fatalf("the new desk-1 token with the old holder's key: %d %v, %d records", status, out, history())
	}
	// A revocation retried.
	for i := range 2 {
		status, hdr, out := call("DELETE", "/v1/enrolments/"+rider, desk1, nil, "revoke-1")
		if want := []int{200, 200}[i]; status != want || history() != 4 || (i == 1) != (hdr.Get("Idempotent-Replayed") == "true") {
			t.Fatalf("revocation %d: %d %v, %d records", i+1, status, out, history())
		}
	}
	// A queued request applied, then found again as if clearing had
	// stopped before deleting it.
	path, err := clearing.QueueEnrolment(filepath.Join(fc.dir, "clearing"), clearing.QueuedEnrolment{Rider: rider, Media: "card", Key: fare.DenyKey(fare.Card, "idem-1"),
		Category: "concession", ApprovedBy: "cli", ValidFrom: fc.feed.FareDayBegins(d + 3), ValidUntil: fc.feed.FareDayBegins(d + 4)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A date a desk cannot mean is refused when queued: applied, the last
	// second of 9999 ended on a fare day JSON cannot write, and the queue
	// stalled behind it.
	if _, err := clearing.QueueEnrolment(filepath.Join(fc.dir, "clearing"), clearing.QueuedEnrolment{Rider: rider, Media: "card", Key: fare.DenyKey(fare.Card, "idem-1"),
		Category: "concession", ApprovedBy: "cli", ValidUntil: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}, time.Now()); err == nil || !strings.Contains(err.Error(), "more than 20 years ahead") {
		t.Fatalf("queueing an enrolment until 9999: %v", err)
	}
	if _, err := clearing.QueueEnrolment(filepath.Join(fc.dir, "clearing"), clearing.QueuedEnrolment{Rider: rider, Revoke: true, ApprovedBy: "cli",
		ValidFrom: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}, time.Now()); err == nil || !strings.Contains(err.Error(), "more than 20 years ahead") {
		t.Fatalf("queueing a revocation from 9999: %v", err)
	}
	waitFor(t, "the queued enrolment applied", 10*time.Second, func() bool { _, err := os.Stat(path); return os.IsNotExist(err) })
	if history() != 5 {
		t.Fatalf("%d records after the queued enrolment, want 5", history())
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request found again handled", 10*time.Second, func() bool { _, err := os.Stat(path); return os.IsNotExist(err) })
	if n := history(); n != 5 {
		t.Fatalf("%d records after the queued request was found again, want 5", n)
	}
	if _, err := os.Stat(path + ".rejected"); err == nil {
		t.Fatalf("the repeat was set aside as refused")
	}
	// A revocation queued (two hours ago) to take effect an hour ago, its
	// time passed before clearing applied it (stopped meanwhile): applied
	// now, not refused as backdated (the start check had counted it).
	past, err := clearing.QueueEnrolment(filepath.Join(fc.dir, "clearing"), clearing.QueuedEnrolment{Rider: rider, Revoke: true, ApprovedBy: "cli",
		ValidFrom: time.Now().Add(-time.Hour)}, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late revocation applied", 10*time.Second, func() bool { _, err := os.Stat(past); return os.IsNotExist(err) })
	if _, err := os.Stat(past + ".rejected"); err == nil {
		b, _ := os.ReadFile(past + ".rejected")
		t.Fatalf("a revocation whose time passed while queued was refused: %s", b)
	}
	if n := history(); n != 6 {
		t.Fatalf("%d records after the late revocation, want 6", n)
	}
}

// TestEnrolmentOnTheFareClock: an enrolment starts at the next fare day
// on the fare clock, not the wall clock's, and one asked to start at a
// day the fare clock has reached is refused as backdated. A reopened
// simulated city runs its fare clock days ahead of the wall clock: on the
// wall clock's day, an enrolment would re-rate fare days already billed.
func TestEnrolmentOnTheFareClock(t *testing.T) {
	const ahead = 62 * time.Hour
	fareNow := func() time.Time { return time.Now().Add(ahead) }
	fc := startFeedCity(t, func(cfg *clearing.Config) { cfg.FareClock = fareNow })
	ctx := context.Background()
	today := fc.feed.FareDay(fareNow())
	until := fc.feed.FareDayBegins(today + 30)
	e, err := fc.cl.Enrol(ctx, fare.Card, "ahead-1", clearing.EnrolRequest{Category: "concession", ApprovedBy: "desk", ValidUntil: until})
	if err != nil {
		t.Fatal(err)
	}
	if want := fc.feed.FareDayBegins(today + 1); !e.ValidFrom.Equal(want) {
		t.Errorf("enrolled from %s, want the fare clock's next fare day %s", e.ValidFrom.Format(time.RFC3339), want.Format(time.RFC3339))
	}
	wallTomorrow := fc.feed.FareDayBegins(fc.feed.FareDay(time.Now()) + 1)
	_, err = fc.cl.Enrol(ctx, fare.Card, "ahead-2", clearing.EnrolRequest{Category: "concession", ApprovedBy: "desk", ValidFrom: wallTomorrow, ValidUntil: until})
	if !errors.Is(err, clearing.ErrInvalidEnrolment) || !strings.Contains(err.Error(), "in the past") {
		t.Errorf("an enrolment from the wall clock's tomorrow, a day the fare clock has passed: %v, want refused as in the past", err)
	}
}

// TestQueuedRevocationFoundAgainAfterItsTime: a queued revocation from a
// later fare day, applied, then found again (clearing stopped before
// deleting its file) once that day has come, is a repeat: deleted, not
// made again, and the requests queued behind it are applied. Before, it
// was asked again with the start made now, conflicted with its own
// idempotency record, and held the queue for good (an outside review); a
// request file changed after it was applied is set aside, not retried.
func TestQueuedRevocationFoundAgainAfterItsTime(t *testing.T) {
	var ahead atomic.Int64
	fareNow := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	fc := startFeedCity(t, func(cfg *clearing.Config) { cfg.FareClock = fareNow })
	ctx := context.Background()
	data := filepath.Join(fc.dir, "clearing")
	today := fc.feed.FareDay(fareNow())
	if _, err := fc.cl.Enrol(ctx, fare.Card, "rq-1", clearing.EnrolRequest{Category: "concession", ApprovedBy: "desk", ValidUntil: fc.feed.FareDayBegins(today + 30)}); err != nil {
		t.Fatal(err)
	}
	rider := fc.cl.RiderAccount(fare.Card, "rq-1")
	records := func(rider string) int {
		hist, _, err := fc.cl.RiderEnrolments(rider)
		if err != nil {
			t.Fatal(err)
		}
		return len(hist)
	}
	path, err := clearing.QueueEnrolment(data, clearing.QueuedEnrolment{Rider: rider, Revoke: true, ApprovedBy: "cli", ValidFrom: fc.feed.FareDayBegins(today + 3)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revocation applied", 10*time.Second, func() bool { _, err := os.Stat(path); return os.IsNotExist(err) })
	if n := records(rider); n != 2 {
		t.Fatalf("%d records after the revocation, want 2", n)
	}
	ahead.Store(int64(5 * 24 * time.Hour))
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	other := fc.cl.RiderAccount(fare.Card, "rq-2")
	later, err := clearing.QueueEnrolment(data, clearing.QueuedEnrolment{Rider: other, Media: "card", Key: fare.DenyKey(fare.Card, "rq-2"),
		Category: "concession", ApprovedBy: "cli", ValidUntil: fc.feed.FareDayBegins(today + 40)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request behind the repeat applied", 10*time.Second, func() bool { _, err := os.Stat(later); return os.IsNotExist(err) })
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the repeated revocation is still queued (%v)", err)
	}
	if _, err := os.Stat(path + ".rejected"); err == nil {
		t.Error("the repeat was set aside as refused")
	}
	if n, m := records(rider), records(other); n != 2 || m != 1 {
		t.Errorf("%d and %d records, want 2 (the revocation not made again) and 1", n, m)
	}
	// The same file changed after it was applied (another start): refused
	// and set aside, and what follows it is applied.
	var q clearing.QueuedEnrolment
	if err := json.Unmarshal(raw, &q); err != nil {
		t.Fatal(err)
	}
	q.ValidFrom = fc.feed.FareDayBegins(today + 9)
	b, _ := json.Marshal(q)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	third, err := clearing.QueueEnrolment(data, clearing.QueuedEnrolment{Rider: fc.cl.RiderAccount(fare.Card, "rq-3"), Media: "card", Key: fare.DenyKey(fare.Card, "rq-3"),
		Category: "concession", ApprovedBy: "cli", ValidUntil: fc.feed.FareDayBegins(today + 40)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request behind the changed file applied", 10*time.Second, func() bool { _, err := os.Stat(third); return os.IsNotExist(err) })
	if b, err := os.ReadFile(path + ".rejected"); err != nil || !strings.Contains(string(b), "idempotency") {
		t.Errorf("the changed request file set aside: %s, %v", b, err)
	}
}
