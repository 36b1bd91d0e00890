package clearing_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// TestTokenStore issues, lists and revokes tokens on a real file and checks
// what the file holds: hashes, never tokens, mode 0600.
func TestTokenStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), clearing.APITokenFile)
	ts, err := clearing.LoadTokenStore(path)
	if err != nil {
		t.Fatalf("missing file: %v", err)
	}
	if n := ts.Len(); n != 0 {
		t.Fatalf("missing file holds %d tokens", n)
	}
	metro, err := ts.Issue(clearing.RoleOperator, "metro", "metro-recon")
	if err != nil {
		t.Fatal(err)
	}
	audit, err := ts.Issue(clearing.RoleAuditor, "", "auditor")
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{metro, audit} {
		if !strings.HasPrefix(tok, clearing.TokenPrefix) || len(tok) < len(clearing.TokenPrefix)+43 {
			t.Errorf("token %q: want %s and at least 32 random bytes", tok, clearing.TokenPrefix)
		}
	}
	if metro == audit {
		t.Fatal("two tokens are equal")
	}

	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", st.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	var file struct {
		Tokens []map[string]any `json:"tokens"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatalf("token file: %v\n%s", err, raw)
	}
	for _, tok := range []string{metro, audit} {
		if bytes.Contains(raw, []byte(tok)) || bytes.Contains(raw, []byte(strings.TrimPrefix(tok, clearing.TokenPrefix))) {
			t.Errorf("token file holds a token itself:\n%s", raw)
		}
	}
	if len(file.Tokens) != 2 {
		t.Fatalf("token file holds %d tokens, want 2:\n%s", len(file.Tokens), raw)
	}
	for _, e := range file.Tokens {
		want := hashHex(metro)
		if e["name"] == "auditor" {
			want = hashHex(audit)
		}
		if e["sha256"] != want {
			t.Errorf("token %v: sha256 %v, want %s", e["name"], e["sha256"], want)
		}
		created, _ := e["created"].(string)
		if ct, err := time.Parse(time.RFC3339, created); err != nil || ct.Location() != time.UTC || time.Since(ct) > time.Minute {
			t.Errorf("token %v: created %q: want a recent RFC 3339 UTC time", e["name"], created)
		}
	}

	p, err := ts.Authenticate(metro)
	if err != nil || p != (clearing.Principal{Name: "metro-recon", Role: clearing.RoleOperator, Operator: "metro"}) {
		t.Errorf("metro token: %+v, %v", p, err)
	}
	if p, err := ts.Authenticate(audit); err != nil || p.Role != clearing.RoleAuditor || p.Operator != "" {
		t.Errorf("auditor token: %+v, %v", p, err)
	}
	for _, bad := range []string{"", "metro", metro + "x", metro[:len(metro)-1], strings.TrimPrefix(metro, clearing.TokenPrefix), hashHex(metro)} {
		if _, err := ts.Authenticate(bad); !errors.Is(err, clearing.ErrBadToken) {
			t.Errorf("token %q: err %v, want ErrBadToken", bad, err)
		}
	}

	for _, c := range []struct {
		role           clearing.Role
		operator, name string
		want           string
	}{
		{"admin", "", "x", `unknown role "admin"`},
		{"", "", "x", `unknown role ""`},
		{clearing.RoleOperator, "", "x", "needs an operator id"},
		{clearing.RoleOperator, "no such/op", "x", `operator id "no such/op"`},
		{clearing.RoleAuditor, "metro", "x", "takes no operator id"},
		{clearing.RoleAuditor, "", "", "token name is empty"},
		{clearing.RoleAuditor, "", "two words", `token name "two words"`},
		{clearing.RoleAuditor, "", strings.Repeat("n", 65), "longer than 64"},
		{clearing.RoleOperator, "bus", "metro-recon", `a token named "metro-recon" exists already`},
	} {
		if _, err := ts.Issue(c.role, c.operator, c.name); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Issue(%q, %q, %q): %v, want an error containing %q", c.role, c.operator, c.name, err, c.want)
		}
	}
	if err := ts.Revoke("nobody"); err == nil || !strings.Contains(err.Error(), `no token named "nobody"`) {
		t.Errorf("revoke unknown: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, raw) {
		t.Errorf("refused issues and revokes changed the file")
	}

	list, err := ts.List()
	if err != nil || len(list) != 2 || list[0].Name != "auditor" || list[1].Name != "metro-recon" || list[1].Operator != "metro" {
		t.Errorf("list: %+v, %v", list, err)
	}

	// A token with an expiry is accepted until then and refused after,
	// saying so; one cannot be issued already expired.
	soon, err := ts.IssueUntil(clearing.RoleAuditor, "", "short-lived", time.Now().Add(1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Authenticate(soon); err != nil {
		t.Errorf("a token before its expiry: %v", err)
	}
	time.Sleep(2 * time.Second)
	if _, err := ts.Authenticate(soon); !errors.Is(err, clearing.ErrBadToken) || !strings.Contains(err.Error(), `token "short-lived" expired at`) {
		t.Errorf("an expired token: %v", err)
	}
	for _, at := range []time.Time{time.Now().Add(-time.Minute), time.Now(), time.Now().Truncate(time.Second).Add(999 * time.Millisecond)} {
		// Under a second ahead, the file's whole seconds would make it
		// expire as it is created, and the file invalid.
		if _, err := ts.IssueUntil(clearing.RoleAuditor, "", "stillborn", at); err == nil || !strings.Contains(err.Error(), "not a second or more in the future") {
			t.Errorf("a token issued to expire at %s: %v", at, err)
		}
	}
	if _, err := clearing.LoadTokenStore(path); err != nil {
		t.Errorf("the token file after the refusals: %v", err)
	}
	if err := ts.Revoke("short-lived"); err != nil {
		t.Fatal(err)
	}

	// Another store on the same file (the admin command beside a running
	// clearing) revokes; the first sees it on its next lookup.
	admin, err := clearing.LoadTokenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Revoke("metro-recon"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Authenticate(metro); !errors.Is(err, clearing.ErrBadToken) {
		t.Errorf("revoked token: err %v, want ErrBadToken", err)
	}
	if _, err := ts.Authenticate(audit); err != nil {
		t.Errorf("auditor token after another was revoked: %v", err)
	}

	// A broken file refuses every token (fail closed) and is no ErrBadToken:
	// the API answers 503, not "your token is wrong".
	if err := os.WriteFile(path, []byte(`{"tokens": [{"name": "x"`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Authenticate(audit); err == nil || errors.Is(err, clearing.ErrBadToken) {
		t.Errorf("broken file: err %v, want a file error", err)
	}
	if _, err := clearing.LoadTokenStore(path); err == nil {
		t.Errorf("LoadTokenStore of a broken file succeeded")
	}
	for name, content := range map[string]string{
		"unknown role":    `{"tokens": [{"name": "a", "role": "root", "created": "2025-01-01T00:00:00Z", "sha256": "` + hashHex("x") + `"}]}`,
		"operator no id":  `{"tokens": [{"name": "a", "role": "operator", "created": "2025-01-01T00:00:00Z", "sha256": "` + hashHex("x") + `"}]}`,
		"short hash":      `{"tokens": [{"name": "a", "role": "auditor", "created": "2025-01-01T00:00:00Z", "sha256": "0x1234"}]}`,
		"duplicate name":  `{"tokens": [{"name": "a", "role": "auditor", "created": "2025-01-01T00:00:00Z", "sha256": "` + hashHex("x") + `"}, {"name": "a", "role": "auditor", "created": "2025-01-01T00:00:00Z", "sha256": "` + hashHex("y") + `"}]}`,
		"plain token":     `{"tokens": [{"name": "a", "role": "auditor", "created": "2025-01-01T00:00:00Z", "token": "fgt_x", "sha256": "` + hashHex("x") + `"}]}`,
		"expires first":   `{"tokens": [{"name": "a", "role": "auditor", "created": "2025-01-01T00:00:00Z", "expires": "2024-01-01T00:00:00Z", "sha256": "` + hashHex("x") + `"}]}`,
		"not json at all": `fgt_abc`,
	} {
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := clearing.LoadTokenStore(path); err == nil {
			t.Errorf("%s: LoadTokenStore accepted %s", name, content)
		}
	}
	// Deleting the file revokes everything.
	os.Remove(path)
	if _, err := ts.Authenticate(audit); !errors.Is(err, clearing.ErrBadToken) {
		t.Errorf("after the file was deleted: %v, want ErrBadToken", err)
	}
}

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return "0x" + hex.EncodeToString(h[:])
}

// apiFixture is a real clearing house with events of two operators, sealed
// into a committed batch, and a settlement API with a token per party.
type apiFixture struct {
	cl             *running
	srv            *httptest.Server
	tokenFile      string
	dataDir        string            // clearing's
	tokens         map[string]string // party -> token
	metroEv, busEv fare.Event
	rider          string // the riders' pseudonymous account
}

// The raw media token every test tap uses; no API response may contain it.
const rawToken = "card-1"

func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	dir := t.TempDir()
	reg, keys := testRegistry(2) // t1: metro, t2: bus
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	promReg := prometheus.NewRegistry()
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour, Metrics: promReg})
	t.Cleanup(func() { cl.stop(t) })
	f := &apiFixture{cl: cl, tokenFile: filepath.Join(dir, "tokens.json"), dataDir: filepath.Join(dir, "clearing"), tokens: map[string]string{}}
	for _, id := range []string{"t1", "t2"} {
		rt := startTerminal(t, dir, cl.NATSURL(), reg, keys, id)
		ev := tap(t, rt.Terminal, rawToken, fare.Validate)
		if ev.Operator == "metro" {
			f.metroEv = ev
		} else {
			f.busEv = ev
		}
		waitFor(t, "outbox drained", 10*time.Second, func() bool { return rt.Pending() == 0 })
		rt.stop(t)
	}
	if err := cl.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.rider = cl.RiderAccount(fare.Card, rawToken)
	// The raw token is on the deny list too: /v1/deny shows its hash only.
	if err := cl.Deny(context.Background(), fare.Card, rawToken, "reported stolen"); err != nil {
		t.Fatal(err)
	}

	ts, err := clearing.LoadTokenStore(f.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct {
		party    string
		role     clearing.Role
		operator string
	}{
		{"metro", clearing.RoleOperator, "metro"}, {"bus", clearing.RoleOperator, "bus"},
		{"auditor", clearing.RoleAuditor, ""}, {"revoked", clearing.RoleAuditor, ""},
		{"ghost", clearing.RoleOperator, "ghost"}, // an operator the registry does not list
		{"scraper", clearing.RoleMetrics, ""},
	} {
		if f.tokens[g.party], err = ts.Issue(g.role, g.operator, g.party); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.Revoke("revoked"); err != nil {
		t.Fatal(err)
	}
	f.tokens["bad"] = clearing.TokenPrefix + strings.Repeat("A", 43)
	f.srv = httptest.NewServer(clearing.NewAPI(cl.Clearing, promReg, clearing.WithTokens(ts)))
	t.Cleanup(f.srv.Close)
	return f
}

// get requests path as party ("none": no Authorization header) and returns
// the status, headers and body.
func (f *apiFixture) get(t *testing.T, client *http.Client, base, party, path string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	if party != "none" {
		req.Header.Set("Authorization", "Bearer "+f.tokens[party])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s as %s: %v", path, party, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// TestAPIAccess runs every party against every endpoint of the settlement
// API over a real clearing house, then checks what each party's answers
// contain, token reload while serving, the secure default without a token
// file and HTTPS.
func TestAPIAccess(t *testing.T) {
	f := newAPIFixture(t)
	t.Run("matrix", func(t *testing.T) { testAPIMatrix(t, f) })
	t.Run("scoping", func(t *testing.T) { testAPIScoping(t, f) })
	t.Run("reload", func(t *testing.T) { testAPIReload(t, f) })
	t.Run("no-token-file", func(t *testing.T) { testAPINoTokenFile(t, f) })
	t.Run("tls", func(t *testing.T) { testAPITLS(t, f) })
	t.Run("refusals-recorded", func(t *testing.T) { testAPIRefusalsRecorded(t, f) })
	t.Run("token-rate", func(t *testing.T) { testAPITokenRate(t, f) })
}

// testAPITokenRate: a token past its request rate and burst is answered
// 429 with Retry-After, whatever it asks, while another token is served;
// the refusal is counted; it is served again once its budget refills.
func testAPITokenRate(t *testing.T, f *apiFixture) {
	srv := httptest.NewServer(clearing.NewAPI(f.cl.Clearing, nil, clearing.WithTokens(mustLoadTokens(t, f.tokenFile)),
		clearing.WithAPILogger(quietLogger()), clearing.WithTokenRate(2, 3)))
	defer srv.Close()
	for i := range 3 {
		if status, _, body := f.get(t, http.DefaultClient, srv.URL, "metro", "/v1/operators/metro"); status != 200 {
			t.Fatalf("request %d within the burst: %d %s", i+1, status, body)
		}
	}
	status, hdr, body := f.get(t, http.DefaultClient, srv.URL, "metro", "/v1/operators/bus") // refused before its policy
	if status != 429 || hdr.Get("Retry-After") != "1" || !strings.Contains(string(body), `token \"metro\" is over its 2 requests a second (burst 3)`) {
		t.Fatalf("past the burst: %d Retry-After %q %s, want 429 with Retry-After 1 naming the bound", status, hdr.Get("Retry-After"), body)
	}
	if status, _, body := f.get(t, http.DefaultClient, srv.URL, "bus", "/v1/operators/bus"); status != 200 {
		t.Errorf("another token while metro is bounded: %d %s", status, body)
	}
	time.Sleep(600 * time.Millisecond) // one request's worth at 2 a second
	if status, _, body := f.get(t, http.DefaultClient, srv.URL, "metro", "/v1/operators/metro"); status != 200 {
		t.Errorf("after its budget refilled: %d %s", status, body)
	}
	// Refusals take nothing from the budget, however many come at once
	// (a cancelled reservation did not always give its token back).
	var wg sync.WaitGroup
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.get(t, http.DefaultClient, srv.URL, "metro", "/v1/operators/metro")
		}()
	}
	wg.Wait()
	time.Sleep(600 * time.Millisecond)
	if status, _, body := f.get(t, http.DefaultClient, srv.URL, "metro", "/v1/operators/metro"); status != 200 {
		t.Errorf("after a burst of refusals and a refill: %d %s", status, body)
	}
	_, _, metrics := f.get(t, http.DefaultClient, f.srv.URL, "scraper", "/metrics")
	if !regexp.MustCompile(`faregate_clearing_api_refused_total\{reason="rate_limited",status="429"\} [1-9]`).Match(metrics) {
		t.Errorf("the 429 not counted:\n%s", metrics)
	}
}

// testAPIRefusalsRecorded: every request refused for who asks is counted
// by status and reason on clearing's metrics, and logged for the security
// record (spaced: one line a second, saying how many were not logged)
// without the token sent.
func testAPIRefusalsRecorded(t *testing.T, f *apiFixture) {
	refused := func() map[string]float64 {
		t.Helper()
		status, _, body := f.get(t, http.DefaultClient, f.srv.URL, "scraper", "/metrics")
		if status != 200 {
			t.Fatalf("/metrics as scraper: %d", status)
		}
		got := map[string]float64{}
		for _, line := range strings.Split(string(body), "\n") {
			if rest, ok := strings.CutPrefix(line, "faregate_clearing_api_refused_total{"); ok {
				labels, value, _ := strings.Cut(rest, "} ")
				v, err := strconv.ParseFloat(value, 64)
				if err != nil {
					t.Fatalf("metric line %q", line)
				}
				got[labels] = v
			}
		}
		return got
	}
	var logs syncBuffer
	srv := httptest.NewServer(clearing.NewAPI(f.cl.Clearing, nil, clearing.WithTokens(mustLoadTokens(t, f.tokenFile)),
		clearing.WithAPILogger(slog.New(slog.NewTextHandler(&logs, nil)))))
	defer srv.Close()
	before := refused()
	for _, c := range []struct{ party, path string }{
		{"bad", "/v1/batches"}, // the first: logged
		{"none", "/v1/batches"},
		{"revoked", "/v1/stats"},
		{"ghost", "/v1/operators"},
		{"metro", "/v1/operators/bus"},
		{"metro", "/v1/terminals?operator=bus"},
		{"bus", "/v1/balances"},
		{"metro", "/v1/events/" + f.busEv.ID.String()}, // 404, as an unknown id
	} {
		if status, _, body := f.get(t, http.DefaultClient, srv.URL, c.party, c.path); status < 401 || status > 404 {
			t.Fatalf("%s as %s: %d, want a refusal: %s", c.path, c.party, status, body)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/batches", nil)
	req.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("a Basic header: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	time.Sleep(1100 * time.Millisecond) // past the log's spacing
	if status, _, _ := f.get(t, http.DefaultClient, srv.URL, "bus", "/v1/operators/metro"); status != 403 {
		t.Fatalf("bus asking for metro: %d", status)
	}
	after := refused()
	want := map[string]float64{
		`reason="bad_token",status="401"`:        2, // bad, revoked
		`reason="missing_token",status="401"`:    1,
		`reason="malformed_header",status="401"`: 1,
		`reason="unknown_operator",status="403"`: 1,
		`reason="not_permitted",status="403"`:    4, // metro's bus, ?operator=bus, bus's balances, bus's metro
		`reason="not_permitted",status="404"`:    1, // metro asking for a bus event
	}
	for k, n := range want {
		if d := after[k] - before[k]; d != n {
			t.Errorf("refusals %s: %v more, want %v (before %v, after %v)", k, d, n, before, after)
		}
	}
	out := logs.String()
	lines := strings.Count(out, "settlement API request refused")
	if lines != 2 || !strings.Contains(out, "reason=bad_token") || !strings.Contains(out, "refusals_not_logged_since_last=8") ||
		!strings.Contains(out, "token=bus") || !strings.Contains(out, "path=/v1/operators/metro") || !strings.Contains(out, "remote=127.0.0.1:") {
		t.Errorf("refusal log: %d lines, want the first and one after a second, counting the 8 between, naming path, remote and the valid token's name:\n%s", lines, out)
	}
	for _, party := range []string{"bad", "revoked", "bus"} {
		if strings.Contains(out, f.tokens[party]) {
			t.Errorf("the refusal log holds %s's token", party)
		}
	}
}

func testAPIMatrix(t *testing.T, f *apiFixture) {
	parties := []string{"none", "bad", "revoked", "ghost", "metro", "bus", "auditor", "scraper"}
	// A metrics scraper reads /metrics and, like every party, the
	// batches (public on chain); nothing else.
	scraper := func(path string, auditor int) int {
		switch {
		case path == "/metrics", path == "/v1/batches", path == "/v1/batches/1":
			return 200
		case auditor == 404 && (path == "/v1/batches/2" || path == "/v2/nothing"):
			return 404
		}
		return 403
	}
	// Statuses for metro, bus, auditor; none, bad and revoked always get
	// 401, ghost (an operator clearing does not know) 403; /healthz is open.
	rows := []struct {
		path                string
		metro, bus, auditor int
	}{
		{"/healthz", 200, 200, 200},
		{"/metrics", 403, 403, 200},
		{"/v1/operators", 200, 200, 200},
		{"/v1/operators/metro", 200, 403, 200},
		{"/v1/operators/bus", 403, 200, 200},
		{"/v1/operators/nobody", 403, 403, 404},
		{"/v1/balances", 403, 403, 200},
		{"/v1/balances?prefix=operator/metro", 200, 403, 200},
		{"/v1/balances?prefix=operator/", 403, 403, 200},
		{"/v1/balances?prefix=operator/met", 403, 403, 200},
		{"/v1/balances?prefix=passenger/", 403, 403, 200},
		{"/v1/accounts/operator/metro", 200, 403, 200},
		{"/v1/accounts/operator/bus", 403, 200, 200},
		{"/v1/accounts/" + f.rider, 403, 403, 200},
		{"/v1/accounts/cash", 403, 403, 400},
		{"/v1/batches", 200, 200, 200},
		{"/v1/batches/1", 200, 200, 200},
		{"/v1/batches/2", 404, 404, 404},
		{"/v1/events/" + f.metroEv.ID.String(), 200, 404, 200},
		{"/v1/events/" + f.busEv.ID.String(), 404, 200, 200},
		{"/v1/events/00000000000000000000000000000000", 404, 404, 404},
		{"/v1/terminals", 200, 200, 200},
		{"/v1/stats", 403, 403, 200},
		{"/v1/deny", 403, 403, 200},
		{"/v1/deny?limit=1&after=" + fare.DenyKey(fare.Card, rawToken), 403, 403, 200},
		{"/v1/deny?after=nothex", 403, 403, 400},
		{"/v2/nothing", 404, 404, 404},
	}
	hexToken := hex.EncodeToString([]byte(rawToken))
	for _, row := range rows {
		for _, party := range parties {
			want := map[string]int{"metro": row.metro, "bus": row.bus, "auditor": row.auditor, "none": 401, "bad": 401, "revoked": 401, "ghost": 403,
				"scraper": scraper(row.path, row.auditor)}[party]
			if row.path == "/healthz" {
				want = 200
			}
			status, hdr, body := f.get(t, http.DefaultClient, f.srv.URL, party, row.path)
			if status != want {
				t.Errorf("GET %s as %s: %d, want %d: %s", row.path, party, status, want, body)
				continue
			}
			if row.path != "/metrics" || status != 200 {
				if ct := hdr.Get("Content-Type"); ct != "application/json" {
					t.Errorf("GET %s as %s: content type %q", row.path, party, ct)
				}
				var v map[string]any
				if err := json.Unmarshal(body, &v); err != nil {
					t.Errorf("GET %s as %s: body is not a JSON object: %v: %s", row.path, party, err, body)
				} else if _, ok := v["error"]; (status >= 400) != ok {
					t.Errorf("GET %s as %s: status %d with body %s", row.path, party, status, body)
				}
			}
			if status == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("GET %s as %s: 401 without a Bearer challenge (WWW-Authenticate %q)", row.path, party, hdr.Get("WWW-Authenticate"))
			}
			if bytes.Contains(body, []byte(rawToken)) {
				t.Errorf("GET %s as %s: the raw media token %q is in the response: %s", row.path, party, rawToken, body)
			}
			if party != "auditor" && bytes.Contains(body, []byte(hexToken)) {
				t.Errorf("GET %s as %s: the raw media token (hex) is in the response: %s", row.path, party, body)
			}
		}
	}
	// Other schemes than Bearer are refused with a challenge too.
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/v1/operators", nil)
	req.Header.Set("Authorization", "Basic "+f.tokens["auditor"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("Basic authorization: %d, %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// Two Authorization headers, a valid one either first or second, are
	// refused: which one counts would be a proxy's guess.
	for _, order := range [][2]string{{"Bearer fgt_forged", "Bearer " + f.tokens["auditor"]}, {"Bearer " + f.tokens["auditor"], "Bearer fgt_forged"}} {
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/v1/operators", nil)
		req.Header.Add("Authorization", order[0])
		req.Header.Add("Authorization", order[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(string(body), "Authorization header given 2 times") {
			t.Errorf("two Authorization headers: %d %s", resp.StatusCode, body)
		}
	}
}

func testAPIScoping(t *testing.T, f *apiFixture) {
	getJSON := func(party, path string, into any) {
		t.Helper()
		status, _, body := f.get(t, http.DefaultClient, f.srv.URL, party, path)
		if status != 200 {
			t.Fatalf("GET %s as %s: %d: %s", path, party, status, body)
		}
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("GET %s as %s: %v", path, party, err)
		}
	}
	for _, op := range []string{"metro", "bus"} {
		var ops struct{ Operators []clearing.OperatorView }
		getJSON(op, "/v1/operators", &ops)
		if len(ops.Operators) != 1 || ops.Operators[0].ID != op {
			t.Errorf("%s sees operators %+v, want itself only", op, ops.Operators)
		}
		var terms struct{ Terminals []clearing.TerminalView }
		getJSON(op, "/v1/terminals", &terms)
		if len(terms.Terminals) != 1 || terms.Terminals[0].Operator != op {
			t.Errorf("%s sees terminals %+v, want its own (one)", op, terms.Terminals)
		}
		var bals struct{ Balances []clearing.BalanceView }
		getJSON(op, "/v1/balances?prefix=operator/"+op, &bals)
		if len(bals.Balances) != 1 || bals.Balances[0].Account != clearing.OperatorAccount(op) || bals.Balances[0].Balance.Minor == 0 {
			t.Errorf("%s sees balances %+v, want its own account with its revenue", op, bals.Balances)
		}
		ev := f.metroEv
		if op == "bus" {
			ev = f.busEv
		}
		var v clearing.EventView
		getJSON(op, "/v1/events/"+ev.ID.String(), &v)
		if v.Operator != op || v.Rider != f.rider || v.Signed != "" || v.Leaf == "" || v.Proof == nil || !v.Proof.Verified || v.Proof.OnChain == nil || !*v.Proof.OnChain {
			t.Errorf("%s's own event: %+v (proof %+v); want rider %s, no signed bytes, a verified proof", op, v, v.Proof, f.rider)
		}
	}

	var ops struct{ Operators []clearing.OperatorView }
	getJSON("auditor", "/v1/operators", &ops)
	if len(ops.Operators) != 2 {
		t.Errorf("auditor sees %d operators, want 2", len(ops.Operators))
	}
	var terms struct{ Terminals []clearing.TerminalView }
	getJSON("auditor", "/v1/terminals", &terms)
	if len(terms.Terminals) != 2 {
		t.Errorf("auditor sees %d terminals, want 2", len(terms.Terminals))
	}
	var bals struct{ Balances []clearing.BalanceView }
	getJSON("auditor", "/v1/balances", &bals)
	seen := map[string]int64{}
	for _, b := range bals.Balances {
		seen[b.Account] = b.Balance.Minor
	}
	if seen["operator/metro"] != 250 || seen["operator/bus"] != 180 || seen[f.rider] != -430 || len(seen) != 3 {
		t.Errorf("auditor sees balances %v; want both operators and the rider %s", seen, f.rider)
	}
	if !strings.HasPrefix(f.rider, "passenger/card/0x") || strings.Contains(f.rider, rawToken) {
		t.Errorf("rider account %q is not pseudonymous", f.rider)
	}
	for _, ev := range []fare.Event{f.metroEv, f.busEv} {
		var v clearing.EventView
		getJSON("auditor", "/v1/events/"+ev.ID.String(), &v)
		if v.Rider != f.rider || v.Signed == "" {
			t.Errorf("auditor's view of %s: rider %q, signed %q", ev.ID, v.Rider, v.Signed)
		}
		raw, err := hex.DecodeString(strings.TrimPrefix(v.Signed, "0x"))
		if err != nil {
			t.Fatal(err)
		}
		if leaf := sha256.Sum256(raw); "0x"+hex.EncodeToString(leaf[:]) != v.Leaf {
			t.Errorf("auditor's view of %s: leaf %s is not sha256 of the signed bytes", ev.ID, v.Leaf)
		}
	}
	var stats clearing.Stats
	getJSON("auditor", "/v1/stats", &stats)
	if stats.Applied != 2 {
		t.Errorf("stats applied %d, want 2", stats.Applied)
	}
	var batch clearing.BatchView
	getJSON("bus", "/v1/batches/1", &batch)
	if len(batch.Amounts) != 2 || !batch.Committed {
		t.Errorf("batch 1 as bus: %+v; want both operators' nets (public on chain)", batch)
	}
}

// testAPIReload issues and revokes tokens through another store on the
// same file, as `faregate clearing token` does beside a running clearing.
func testAPIReload(t *testing.T, f *apiFixture) {
	admin, err := clearing.LoadTokenStore(f.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := admin.Issue(clearing.RoleOperator, "bus", "bus-2")
	if err != nil {
		t.Fatal(err)
	}
	f.tokens["bus-2"] = tok
	if status, _, body := f.get(t, http.DefaultClient, f.srv.URL, "bus-2", "/v1/operators/bus"); status != 200 {
		t.Errorf("token issued while serving: %d: %s", status, body)
	}
	if err := admin.Revoke("bus-2"); err != nil {
		t.Fatal(err)
	}
	if status, _, body := f.get(t, http.DefaultClient, f.srv.URL, "bus-2", "/v1/operators/bus"); status != 401 {
		t.Errorf("token revoked while serving: %d, want 401: %s", status, body)
	}
	if status, _, _ := f.get(t, http.DefaultClient, f.srv.URL, "bus", "/v1/operators/bus"); status != 200 {
		t.Errorf("another token after a revoke: %d", status)
	}
}

// testAPINoTokenFile: an API over clearing's data dir, which has no token
// file, refuses every /v1 request, says how to issue a token, and accepts
// one issued later without a restart.
func testAPINoTokenFile(t *testing.T, f *apiFixture) {
	var logs bytes.Buffer
	api := clearing.NewAPI(f.cl.Clearing, nil, clearing.WithAPILogger(slog.New(slog.NewTextHandler(&logs, nil))))
	srv := httptest.NewServer(api)
	defer srv.Close()
	if !strings.Contains(logs.String(), "faregate clearing token issue") {
		t.Errorf("no log line saying how to issue a token:\n%s", logs.String())
	}
	for _, party := range []string{"none", "auditor"} {
		if status, hdr, _ := f.get(t, http.DefaultClient, srv.URL, party, "/v1/batches"); status != 401 || hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("no token file, %s: %d", party, status)
		}
	}
	if status, _, _ := f.get(t, http.DefaultClient, srv.URL, "none", "/healthz"); status != 200 {
		t.Errorf("healthz: %d", status)
	}
	ts, err := clearing.LoadTokenStore(filepath.Join(f.dataDir, clearing.APITokenFile))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Issue(clearing.RoleAuditor, "", "late")
	if err != nil {
		t.Fatal(err)
	}
	f.tokens["late"] = tok
	if status, _, body := f.get(t, http.DefaultClient, srv.URL, "late", "/v1/stats"); status != 200 {
		t.Errorf("token issued after start: %d: %s", status, body)
	}
}

func testAPITLS(t *testing.T, f *apiFixture) {
	certs := writeTestCerts(t, t.TempDir())
	api := clearing.NewAPI(f.cl.Clearing, nil, clearing.WithTokens(mustLoadTokens(t, f.tokenFile)))
	for _, bad := range [][2]string{{certs.Cert, ""}, {"", certs.Key}, {certs.Cert, certs.CA}, {filepath.Join(t.TempDir(), "none.pem"), certs.Key}} {
		if _, err := clearing.APIServer(api, bad[0], bad[1]); err == nil {
			t.Errorf("APIServer(%q, %q) accepted", bad[0], bad[1])
		}
	}
	srv, err := clearing.APIServer(api, certs.Cert, certs.Key)
	if err != nil {
		t.Fatal(err)
	}
	if clearing.APIScheme(srv) != "https" {
		t.Errorf("scheme %q", clearing.APIScheme(srv))
	}
	addr := serveAPI(t, srv)

	ca, _ := os.ReadFile(certs.CA)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("test CA")
	}
	trusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if status, _, body := f.get(t, trusting, "https://"+addr, "auditor", "/v1/stats"); status != 200 {
		t.Errorf("HTTPS with a token: %d: %s", status, body)
	}
	if status, _, _ := f.get(t, trusting, "https://"+addr, "none", "/v1/stats"); status != 401 {
		t.Errorf("HTTPS without a token: %d, want 401", status)
	}
	untrusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/v1/stats", nil)
	req.Header.Set("Authorization", "Bearer "+f.tokens["auditor"])
	if resp, err := untrusting.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("a client not trusting the test CA got %d", resp.StatusCode)
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client not trusting the test CA: %v, want a certificate error", err)
	}
	// Plain HTTP to the TLS port gets nothing from the API.
	plain := &http.Client{Timeout: 10 * time.Second}
	req, _ = http.NewRequest(http.MethodGet, "http://"+addr+"/v1/stats", nil)
	req.Header.Set("Authorization", "Bearer "+f.tokens["auditor"])
	if resp, err := plain.Do(req); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || bytes.Contains(body, []byte("applied")) {
			t.Errorf("plain HTTP to the TLS port: %d: %s", resp.StatusCode, body)
		}
	}
}

func mustLoadTokens(t *testing.T, path string) *clearing.TokenStore {
	t.Helper()
	ts, err := clearing.LoadTokenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// serveAPI serves srv through ServeAPI on a loopback port until the test
// ends, and returns its address; ServeAPI's error fails the test.
func serveAPI(t *testing.T, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- clearing.ServeAPI(ctx, srv, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeAPI: %v", err)
		}
	})
	return ln.Addr().String()
}
