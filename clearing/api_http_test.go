package clearing_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
)

// TestAPIHTTPEdges: the API's answers at the edges of HTTP, each case an
// outside review reproduced against an earlier build: an operator proves
// every event of its revenue statement, another operator's included; a
// cursor at the end of the apply indices gives an empty page, not the
// batches before; Accept's weights are honoured; CSV lines end in CRLF;
// an empty filter, a member named twice and a path ServeMux would redirect
// are refused in the API's error shape.
func TestAPIHTTPEdges(t *testing.T) {
	f := newPricedAPI(t)
	t.Run("a body never sent", func(t *testing.T) {
		// An outside test held 300 such connections open, unanswered,
		// without a token: the refusal must come at once, and the server
		// must have read and idle deadlines.
		for _, req := range []string{
			"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
			"GET /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
			"POST /v1/enrolments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
		} {
			conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := conn.Write([]byte(req)); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if err != nil || !(strings.Contains(line, " 401 ") || strings.Contains(line, " 405 ")) {
				t.Errorf("%q with no body sent: %q, %v; want a refusal at once", strings.SplitN(req, "\r", 2)[0], line, err)
			}
		}
		srv, err := clearing.APIServer(nil, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 || srv.ReadHeaderTimeout <= 0 || srv.WriteTimeout <= 0 {
			t.Errorf("API server deadlines: read %s, idle %s, header %s, write %s; want all set", srv.ReadTimeout, srv.IdleTimeout, srv.ReadHeaderTimeout, srv.WriteTimeout)
		}
	})
	t.Run("a query that does not decode, before a policy reads it", func(t *testing.T) {
		// An operator's token got a 403 "not every account" where the
		// auditor's got the 400: Go drops the pair it cannot read, and
		// the policy read what was left (an outside review).
		for _, party := range []string{"metro", "auditor"} {
			st, _, body := f.do(t, http.MethodGet, party, "/v1/balances?prefix=operator/metro;x=1")
			if st != http.StatusBadRequest || !strings.Contains(string(body), "invalid semicolon separator") {
				t.Errorf("a query with a semicolon as %s: %d %s, want 400 naming it", party, st, body)
			}
		}
	})
	t.Run("an empty chunked body is no body", func(t *testing.T) {
		// A client that sends every POST chunked sends no body as a last
		// chunk alone: refused as a body before (an outside review).
		tok, err := f.ts.Issue(clearing.RolePayments, "", "pay-desk")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			body string
			want int
		}{{"0\r\n\r\n", http.StatusConflict}, {"2\r\n{}\r\n0\r\n\r\n", http.StatusBadRequest}} {
			conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			req := "POST /v1/riders/card/0x" + strings.Repeat("ab", 16) + "/payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok +
				"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + c.body
			if _, err := conn.Write([]byte(req)); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			conn.Close()
			// 409: clearing has no acquirer here, which is answered only
			// once the request is taken as one without a body.
			if resp.StatusCode != c.want {
				t.Errorf("POST .../payments chunked %q: %d %s, want %d", c.body, resp.StatusCode, body, c.want)
			}
		}
	})
	t.Run("answers kept by no cache", func(t *testing.T) {
		// An outside test found the answers (card tokens, journeys) with
		// no Cache-Control and no nosniff: JSON, CSV and refusals alike.
		for _, c := range []struct{ party, path string }{
			{"auditor", "/v1/batches"}, {"auditor", "/v1/batches/1/events?format=csv"}, {"auditor", "/v1/nosuch"}, {"", "/v1/batches"},
		} {
			_, h, _ := f.do(t, http.MethodGet, c.party, c.path)
			if h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s as %q: Cache-Control %q, X-Content-Type-Options %q", c.path, c.party, h.Get("Cache-Control"), h.Get("X-Content-Type-Options"))
			}
		}
	})
	t.Run("statement events provable", func(t *testing.T) {
		var bus struct {
			Entries []struct {
				Event            string         `json:"event"`
				TerminalOperator string         `json:"terminal_operator"`
				Leaf             string         `json:"leaf"`
				Share            clearing.Money `json:"share"`
			} `json:"entries"`
		}
		inBus := map[string]bool{}
		foreign, own := 0, 0
		for _, b := range []int{1, 2} {
			f.getJSON(t, "auditor", fmt.Sprintf("/v1/batches/%d/statements/bus", b), &bus)
			for _, e := range bus.Entries {
				inBus[e.Event] = true
				if e.TerminalOperator != "bus" {
					foreign++
					var ev struct {
						Leaf  string `json:"leaf"`
						Proof struct {
							Verified bool `json:"verified"`
						} `json:"proof"`
						Signed   string         `json:"signed"`
						Fare     clearing.Money `json:"fare"`
						Sequence uint64         `json:"sequence"`
						Gate     string         `json:"gate"`
						Category string         `json:"rider_category"`
						Withheld []string       `json:"withheld"`
					}
					f.getJSON(t, "bus", "/v1/events/"+e.Event, &ev)
					// A proof's path is a list even when empty (a batch of one).
					if _, _, raw := f.do(t, http.MethodGet, "bus", "/v1/events/"+e.Event); !bytes.Contains(raw, []byte(`"path": [`)) {
						t.Errorf("event %s: proof path not a list: %s", e.Event, raw)
					}
					// The proof, and no more than the statement says: the
					// fare shown is bus's share, the other terminal's
					// sequence and gate withheld.
					if !ev.Proof.Verified || ev.Leaf != e.Leaf || ev.Signed != "" || ev.Fare.Minor != e.Share.Minor || ev.Sequence != 0 || ev.Gate != "" || ev.Category != "" ||
						!slices.Contains(ev.Withheld, "sequence") || !slices.Contains(ev.Withheld, "fare (the caller's share instead)") {
						t.Errorf("bus's statement entry %s (a %s terminal's): %+v, statement %+v", e.Event, e.TerminalOperator, ev, e)
					}
				} else {
					// Its own gate's event: the rider's fare and bus's share
					// of it as the statement lists it; no signed bytes (they
					// hold the raw token: the auditor's view only).
					own++
					var ev struct {
						Leaf   string          `json:"leaf"`
						Signed string          `json:"signed"`
						Fare   clearing.Money  `json:"fare"`
						Share  *clearing.Money `json:"share"`
					}
					f.getJSON(t, "bus", "/v1/events/"+e.Event, &ev)
					var aud struct {
						Signed string `json:"signed"`
					}
					f.getJSON(t, "auditor", "/v1/events/"+e.Event, &aud)
					raw, err := hex.DecodeString(strings.TrimPrefix(aud.Signed, "0x"))
					sum := sha256.Sum256(raw)
					if err != nil || len(raw) == 0 || "0x"+hex.EncodeToString(sum[:]) != ev.Leaf || ev.Signed != "" || ev.Share == nil || *ev.Share != e.Share {
						t.Errorf("bus's own event %s: %+v, statement share %+v", e.Event, ev, e.Share)
					}
				}
			}
		}
		if own == 0 {
			t.Fatal("no entry of bus's statements came from its own terminals")
		}
		if foreign == 0 {
			t.Fatal("no entry of bus's statements came from another operator's terminal: the case is not exercised")
		}
		var metro struct {
			Events []struct {
				ID string `json:"id"`
			} `json:"events"`
		}
		f.getJSON(t, "auditor", "/v1/batches/1/events?operator=metro", &metro)
		hidden := 0
		for _, e := range metro.Events {
			if inBus[e.ID] {
				continue
			}
			hidden++
			if status, _, body := f.do(t, http.MethodGet, "bus", "/v1/events/"+e.ID); status != http.StatusNotFound {
				t.Errorf("bus reads metro's event %s that moved none of its money: %d %s", e.ID, status, body)
			}
		}
		if hidden == 0 {
			t.Fatal("every metro event posted to bus: the refusal is not exercised")
		}
	})
	t.Run("cursor at the end", func(t *testing.T) {
		var page struct {
			Events    []json.RawMessage `json:"events"`
			NextAfter *string           `json:"next_after"`
		}
		f.getJSON(t, "auditor", "/v1/batches/2/events?after=18446744073709551615", &page)
		if len(page.Events) != 0 || page.NextAfter != nil {
			t.Fatalf("a cursor past the batch: %d events, next %v", len(page.Events), page.NextAfter)
		}
	})
	t.Run("content negotiation", func(t *testing.T) {
		for _, c := range []struct {
			accept string
			csv    bool
		}{
			{"text/csv", true},
			{"application/json, text/csv;q=0.5", false},
			{"text/csv, application/json;q=0.5", true},
			{"text/csv;q=0", false},
			{"*/*", false},
			{"text/csv;q=0.9, */*;q=0.1", true},
			{"application/json;q=0.5, text/csv;q=0.5", false},
		} {
			_, hdr, body := f.do(t, http.MethodGet, "auditor", "/v1/batches", "Accept", c.accept)
			gotCSV := strings.HasPrefix(hdr.Get("Content-Type"), "text/csv")
			if gotCSV != c.csv {
				t.Errorf("Accept %q: %s, want CSV %v", c.accept, hdr.Get("Content-Type"), c.csv)
			}
			if gotCSV && !bytes.Contains(body, []byte("\r\n")) {
				t.Errorf("CSV lines do not end in CRLF: %q", body[:min(len(body), 80)])
			}
		}
	})
	t.Run("refusals", func(t *testing.T) {
		for _, c := range []struct {
			name, method, path, party, body string
			status                          int
			says                            string
		}{
			{"an empty filter", "GET", "/v1/batches?operator=", "auditor", "", 400, `query parameter "operator" is empty`},
			{"an empty revocation time", "DELETE", "/v1/enrolments/passenger/card/0x00000000000000000000000000000000?valid_from=", "desk", "", 400, `"valid_from" is empty`},
			{"an empty cursor is the first page", "GET", "/v1/batches?after=", "auditor", "", 200, ""},
			{"a zone's + sent unencoded", "GET", "/v1/batches?since=2026-12-02T10:00:00+01:00", "auditor", "", 200, ""},
			{"a time that is none", "GET", "/v1/batches?since=2026-12-02T10:00:00%2001", "auditor", "", 400, "since"},
			{"a member named twice", "POST", "/v1/enrolments", "desk", `{"media":"card","token":"dup","category":"concession","valid_until":"2030-01-01T04:00:00+01:00","media":"face"}`, 400, `member "media" given twice`},
			{"another member named twice", "POST", "/v1/enrolments", "desk", `{"media":"card","token":"dup","token":"dup","category":"concession","valid_until":"2030-01-01T04:00:00+01:00"}`, 400, `member "token" given twice`},
			{"a token too long", "POST", "/v1/enrolments", "desk", `{"media":"card","token":"` + strings.Repeat("x", 200) + `","category":"concession","valid_until":"2030-01-01T04:00:00+01:00"}`, 400, "got 200 bytes"},
			{"a token of spaces", "POST", "/v1/enrolments", "desk", `{"media":"card","token":"   ","category":"concession","valid_until":"2030-01-01T04:00:00+01:00"}`, 400, "the token has a space, control or invisible character"},
			{"a token with NUL", "POST", "/v1/enrolments", "desk", `{"media":"card","token":"a\u0000b","category":"concession","valid_until":"2030-01-01T04:00:00+01:00"}`, 400, "the token has a space, control or invisible character"},
			{"valid until 9999", "POST", "/v1/enrolments", "desk", `{"media":"card","token":"c-9999","category":"concession","valid_until":"9999-12-31T23:59:59Z"}`, 400, "more than 20 years ahead"},
			{"a token not UTF-8", "POST", "/v1/enrolments", "desk", "{\"media\":\"card\",\"token\":\"ab\xff\xfe\",\"category\":\"concession\",\"valid_until\":\"2030-01-01T04:00:00+01:00\"}", 400, "invisible character"},
			{"a body said to be gzip", "POST", "/v1/enrolments", "desk", `{"media":"card","token":"gz","category":"concession","valid_until":"2030-01-01T04:00:00+01:00"}`, 415, `Content-Encoding "gzip": send the body unencoded`},
			{"a body said to be UTF-16", "POST", "/v1/enrolments", "desk", `{"media":"card","token":"u16","category":"concession","valid_until":"2030-01-01T04:00:00+01:00"}`, 415, `JSON is UTF-8, send charset=utf-8 or none`},
			{"a body said to be UTF-8", "POST", "/v1/enrolments", "desk", `{"media":"card","token":"u8","category":"concession","valid_until":"2030-01-01T04:00:00+01:00"}`, 201, ""},
			{"a body said to be utf8, an alias", "POST", "/v1/enrolments", "desk", `{"media":"card","token":"u8a","category":"concession","valid_until":"2030-01-01T04:00:00+01:00"}`, 201, ""},
			{"a rider account that is none", "GET", "/v1/accounts/passenger/card/0xzz", "auditor", "", 400, `account: rider "passenger/card/0xzz"`},
			{"an array for the body", "POST", "/v1/enrolments", "desk", `[{"media":"card"}]`, 400, "the body: want an object, got array"},
			{"null for the body", "POST", "/v1/enrolments", "desk", `null`, 400, "the body: want an object, got null"},
			{"a body after a byte order mark", "POST", "/v1/enrolments", "desk", "\ufeff" + `{"media":"card","token":"bom","category":"concession","valid_until":"2030-01-01T04:00:00+01:00"}`, 400, "begins with a UTF-8 byte order mark (EF BB BF)"},
			{"a number for a string", "POST", "/v1/enrolments", "desk", `{"media":"card","token":7,"category":"concession","valid_until":"2030-01-01T04:00:00+01:00"}`, 400, `member "token": want a string, got number`},
			{"a string for a time", "POST", "/v1/enrolments", "desk", `{"media":"card","token":"t","category":"concession","valid_until":2030}`, 400, `member "valid_until": want a string, got number`},
			{"a collection ServeMux would redirect, served with GET and POST", "DELETE", "/v1/enrolments", "desk", "", 405, "method not allowed (allowed: GET, HEAD, POST)"},
			{"a doubled slash", "GET", "/v1//batches", "auditor", "", 404, "no such endpoint"},
			{"an empty rider", "GET", "/v1/enrolments/", "desk", "", 404, "no such endpoint"},
		} {
			var rd *strings.Reader
			if c.body != "" {
				rd = strings.NewReader(c.body)
			} else {
				rd = strings.NewReader("")
			}
			req, _ := http.NewRequest(c.method, f.srv.URL+c.path, rd)
			req.Header.Set("Authorization", "Bearer "+f.tokens[c.party])
			if strings.Contains(c.name, "gzip") {
				req.Header.Set("Content-Encoding", "gzip")
			}
			switch {
			case strings.Contains(c.name, "UTF-16"):
				req.Header.Set("Content-Type", "application/json; charset=utf-16")
			case strings.Contains(c.name, "an alias"):
				req.Header.Set("Content-Type", "application/json; charset=utf8")
			case strings.Contains(c.name, "UTF-8"):
				req.Header.Set("Content-Type", "application/json; charset=UTF-8")
			case c.body != "":
				req.Header.Set("Content-Type", "application/json")
			}
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var out struct{ Error string }
			dec := json.NewDecoder(resp.Body)
			derr := dec.Decode(&out)
			resp.Body.Close()
			if resp.StatusCode != c.status || !strings.Contains(out.Error, c.says) || (c.status != 200 && derr != nil) {
				t.Errorf("%s: %d %q (%v), want %d saying %q", c.name, resp.StatusCode, out.Error, derr, c.status, c.says)
			}
		}
	})
	t.Run("slashes sent as %2F", func(t *testing.T) {
		// A client generated from the OpenAPI document sends a path
		// parameter's "/" as %2F (a parameter is one segment): the same
		// answer as the unescaped path (an outside integrator's client).
		rider := "passenger/card/0x" + strings.Repeat("0", 32)
		for _, c := range []struct{ party, prefix, param string }{
			{"auditor", "/v1/accounts/", "operator/metro"},
			{"metro", "/v1/accounts/", "operator/metro"},
			{"bus", "/v1/accounts/", "operator/metro"},
			{"auditor", "/v1/accounts/", f.riderA},
			{"desk", "/v1/enrolments/", rider},
		} {
			st, _, body := f.do(t, http.MethodGet, c.party, c.prefix+c.param)
			escaped := c.prefix + strings.ReplaceAll(c.param, "/", "%2F")
			est, _, ebody := f.do(t, http.MethodGet, c.party, escaped)
			if est != st || !bytes.Equal(ebody, body) {
				t.Errorf("%s%s as %s: %d %s; %s: %d %s", c.prefix, c.param, c.party, st, body, escaped, est, ebody)
			}
		}
	})
	t.Run("head", func(t *testing.T) {
		// A GET operation answers HEAD as its GET would, without the body
		// (the OpenAPI document says so once, in its description).
		for _, c := range []struct {
			party, path string
			status      int
		}{
			{"auditor", "/v1/batches", 200},
			{"none", "/v1/batches", 401},
			{"none", "/healthz", 200},
		} {
			status, hdr, body := f.do(t, http.MethodHead, c.party, c.path)
			if status != c.status || len(body) != 0 || hdr.Get("Content-Type") == "" {
				t.Errorf("HEAD %s as %q: %d, %d bytes, Content-Type %q; want %d, no body, the GET's type", c.path, c.party, status, len(body), hdr.Get("Content-Type"), c.status)
			}
		}
	})
	t.Run("allow", func(t *testing.T) {
		for _, c := range []struct{ method, party, path, allow string }{
			{http.MethodPut, "desk", "/v1/enrolments", "GET, HEAD, POST"},
			{http.MethodPatch, "auditor", "/v1/enrolments", "GET, HEAD, POST"},
			// The token-free paths answer 405 with or without a token.
			{http.MethodPost, "none", "/healthz", "GET, HEAD"},
			{http.MethodDelete, "none", "/v1/openapi.json", "GET, HEAD"},
			{http.MethodPost, "auditor", "/readyz", "GET, HEAD"},
		} {
			status, hdr, _ := f.do(t, c.method, c.party, c.path)
			if status != http.StatusMethodNotAllowed || hdr.Get("Allow") != c.allow {
				t.Errorf("%s %s as %q: %d, Allow %q; want 405, Allow %s", c.method, c.path, c.party, status, hdr.Get("Allow"), c.allow)
			}
		}
	})
}

// TestAPIConnectionsBounded: the API holds at most APIMaxConns connections
// at once (more wait to be accepted), and at most APIMaxConnsPerHost from
// one remote address (more are closed as they come), so idle keep-alive
// connections to /healthz, which needs no token, can neither run clearing
// out of file descriptors (an outside red team held 19,950 of them, and
// clearing's JetStream store failed with it) nor, from one host, shut
// everyone else out (an outside recheck held all 1,024); one closed lets
// the next in.
func TestAPIConnectionsBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })}
	clearing.SetAPITimeouts(srv)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- clearing.ServeAPI(ctx, srv, ln) }()
	defer func() { cancel(); <-done }()
	get := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			return err
		}
		_, err := http.ReadResponse(bufio.NewReader(c), nil)
		return err
	}
	// dial connects from the loopback address 127.0.0.host (every one of
	// 127/8 is this machine's).
	dial := func(host int) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(host))}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// One host: APIMaxConnsPerHost held and answered, the next closed; a
	// connection from another host is answered all the same.
	for range clearing.APIMaxConnsPerHost {
		c := dial(1)
		held = append(held, c)
		if err := get(c); err != nil {
			t.Fatal(err)
		}
	}
	if c := dial(1); get(c) == nil {
		t.Fatalf("connection %d from one host answered", clearing.APIMaxConnsPerHost+1)
	} else {
		c.Close()
	}
	other := dial(2)
	if err := get(other); err != nil {
		t.Fatalf("another host shut out by one holding its %d: %v", clearing.APIMaxConnsPerHost, err)
	}
	other.Close()
	// Many hosts: APIMaxConns in all, none idle (none has asked yet), then
	// the next waits to be accepted until one is closed.
	for _, c := range held {
		c.Close()
	}
	held = held[:0]
	time.Sleep(200 * time.Millisecond) // the server sees them closed
	for host := 2; len(held) < clearing.APIMaxConns; host++ {
		for range clearing.APIMaxConnsPerHost {
			if len(held) == clearing.APIMaxConns {
				break
			}
			held = append(held, dial(host))
		}
	}
	extra := dial(100) // the kernel's backlog takes it
	defer extra.Close()
	if err := get(extra); err == nil {
		t.Fatalf("connection %d answered while %d were held", clearing.APIMaxConns+1, clearing.APIMaxConns)
	}
	// One held connection asks and goes idle: the waiting one is let in,
	// the idle one closed for it (an outside recheck's waited for ever).
	if err := get(held[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the waiting connection served once one went idle", 5*time.Second, func() bool { return get(extra) == nil })
	if err := get(held[0]); err == nil {
		t.Fatal("the idle connection still served after its slot was given to the waiting one")
	}
	held[0].Close()
	held = held[1:]
	// Every slot held by a keep-alive connection between requests (the
	// outside recheck's 16 addresses, each asking now and then): the
	// next connection is served, the one idle the longest closed for it.
	for _, c := range held {
		if err := get(c); err != nil {
			t.Fatal(err)
		}
	}
	next := dial(101)
	defer next.Close()
	if err := get(next); err != nil {
		t.Fatalf("a new connection while every slot is held idle: %v", err)
	}
	closed := 0
	for _, c := range append(held, extra) {
		if get(c) != nil {
			closed++
		}
	}
	if closed != 1 {
		t.Errorf("%d held connections closed for the new one, want 1", closed)
	}
}

// TestAPIHostKey: connections count against their host, an IPv6 host
// being its /64 (an outside recheck held every slot from one machine's
// addresses).
func TestAPIHostKey(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
	} {
		if got := clearing.APIHostKey(&net.TCPAddr{IP: net.ParseIP(tc.addr), Port: 443}); got != tc.want {
			t.Errorf("%s counts as %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// TestAPIUnreadBodies: a request that declares a body the API does not
// read (a refusal, or an endpoint that takes none) holds its connection no
// longer than a body on its way takes to arrive. An outside red team sent,
// from 16 addresses, headers declaring a body and then nothing, and
// reconnected as the server closed: Go's server waited up to the read
// timeout (30 s) to discard the body of each, the connection busy (never
// idle, so never closed for another) all that time, and every slot stayed
// taken; an honest /healthz timed out 9 times in 9.
func TestAPIUnreadBodies(t *testing.T) {
	ts, err := clearing.LoadTokenStore(filepath.Join(t.TempDir(), "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Neither route answered here reads clearing: one never opened will do.
	api := clearing.NewAPI(&clearing.Clearing{}, nil, clearing.WithTokens(ts), clearing.WithAPILogger(quietLogger()))
	srv, err := clearing.APIServer(api, "", "")
	if err != nil {
		t.Fatal(err)
	}
	addr := serveAPI(t, srv)
	dial := func(host int) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(host))}}
		return d.Dial("tcp", addr)
	}
	// Each declares a body and sends none of it.
	attacks := []struct{ req, status string }{
		{"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", " 400 "},
		{"POST /v1/enrolments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", " 401 "},
		{"POST /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n", " 405 "},
		{"HEAD /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", " 400 "},
		{"GET /ui/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", " 200 "},
	}
	t.Run("answered and closed", func(t *testing.T) {
		for _, a := range attacks {
			c, err := dial(1)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(3 * time.Second))
			start := time.Now()
			if _, err := c.Write([]byte(a.req)); err != nil {
				t.Fatal(err)
			}
			// The answer, then the end of the connection: nothing else.
			got, err := io.ReadAll(c)
			c.Close()
			line, _, _ := strings.Cut(string(got), "\r\n")
			if err != nil || !strings.Contains(line, a.status) || !strings.Contains(string(got), "\r\nConnection: close\r\n") {
				t.Errorf("%q with its body never sent: after %s: %q, %v; want%sand the connection closed within 3 s", strings.SplitN(a.req, "\r", 2)[0], time.Since(start).Round(time.Millisecond), got, err, a.status)
			}
		}
	})
	t.Run("every slot", func(t *testing.T) {
		// 16 addresses, each with its APIMaxConnsPerHost connections, take
		// all APIMaxConns slots and reconnect as the server closes them.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		defer func() { close(stop); wg.Wait() }()
		var dialed sync.WaitGroup
		var conns atomic.Int64
		for i := range clearing.APIMaxConns {
			host, a := 2+i/clearing.APIMaxConnsPerHost, attacks[i%len(attacks)]
			dialed.Add(1)
			wg.Go(func() {
				first := true
				for {
					c, err := dial(host)
					if err == nil {
						conns.Add(1)
						c.Write([]byte(a.req))
					}
					if first {
						dialed.Done()
						first = false
					}
					if err != nil {
						return
					}
					go func() { <-stop; c.Close() }()
					io.Copy(io.Discard, c)
					c.Close()
					select {
					case <-stop:
						return
					default:
					}
				}
			})
		}
		dialed.Wait()
		// Honest clients from another address, a new connection each (as
		// curl), must be answered within a couple of seconds each time.
		for i := range 3 {
			c, err := dial(200)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c.SetDeadline(start.Add(3 * time.Second))
			_, err = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
			var resp *http.Response
			if err == nil {
				resp, err = http.ReadResponse(bufio.NewReader(c), nil)
			}
			c.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("honest GET /healthz %d beside %d connections sending no body: after %s: %v", i+1, clearing.APIMaxConns, time.Since(start).Round(time.Millisecond), err)
			}
			t.Logf("honest GET /healthz %d answered in %s (%d attacking connections so far)", i+1, time.Since(start).Round(time.Millisecond), conns.Load())
			time.Sleep(time.Second)
		}
		// Still attacking all along: connections taken again as closed.
		if n := conns.Load(); n < 2*clearing.APIMaxConns {
			t.Errorf("%d attacking connections in all, want the %d taken again and again", n, clearing.APIMaxConns)
		}
	})
}
