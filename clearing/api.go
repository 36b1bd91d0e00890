package clearing

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger/merkle"
)

// API is the settlement API operators reconcile through. Every response is
// JSON; errors are {"error": "..."} with a 4xx or 5xx status.
//
// Every request but /healthz, /readyz, /v1/openapi.json and the
// dashboard's static files under /ui/ carries a bearer token from the API's
// TokenStore. What a party sees is decided in one place: each route is
// registered with a policy (see handle), and handlers that list or look up
// data of several operators show an operator only its own (Principal.Sees).
type API struct {
	c          *Clearing
	mux        *http.ServeMux
	gatherer   prometheus.Gatherer
	tokens     *TokenStore
	log        *slog.Logger
	warned     sync.Map     // token name -> struct{}: unknown operator logged
	routes     []string     // the patterns registered, for Routes
	answerMemo answerCache  // the operators' answers read from the chain
	answerers  answerers    // who answered which batch, from the chain's logs
	fallback   http.Handler // a path no route serves: 405 or 404, behind the token check
	// refusalLogged is when a refusal was last logged (unix ns);
	// refusalsSkipped the refusals since, not logged.
	refusalLogged   atomic.Int64
	refusalsSkipped atomic.Int64
	// tokenRate and tokenBurst bound each token's requests (WithTokenRate);
	// limiters holds a limiter per token name (as many as tokens issued).
	tokenRate  rate.Limit
	tokenBurst int
	limiters   sync.Map // token name -> *rate.Limiter
}

// DefaultTokenRate and DefaultTokenBurst bound the requests of one API
// token: generous for a desk, a dashboard polling every second or a
// reconciliation script paging through batches, and a stop to one client
// (a leaked token, a script looping) taking the API from every party.
const (
	DefaultTokenRate  = 100 // requests a second, sustained
	DefaultTokenBurst = 500
)

// WithTokenRate bounds each token to perSecond requests a second
// sustained, burst at once: past it the API answers 429 with Retry-After.
// perSecond 0 lifts the bound.
func WithTokenRate(perSecond float64, burst int) APIOption {
	return func(a *API) {
		a.tokenRate, a.tokenBurst = rate.Limit(perSecond), burst
		if perSecond <= 0 {
			a.tokenRate = rate.Inf
		}
	}
}

// allow takes one request from token name's budget, or says how long
// until the next would be taken.
func (a *API) allow(name string) (bool, time.Duration) {
	if a.tokenRate == rate.Inf {
		return true, 0
	}
	l, ok := a.limiters.Load(name)
	if !ok {
		l, _ = a.limiters.LoadOrStore(name, rate.NewLimiter(a.tokenRate, a.tokenBurst))
	}
	lim := l.(*rate.Limiter)
	if lim.Allow() {
		return true, 0
	}
	// Refused without taking from the budget (a reservation cancelled
	// does not always give its token back: an outside review).
	return false, time.Duration((1 - lim.Tokens()) / float64(a.tokenRate) * float64(time.Second))
}

// APIOption configures NewAPI.
type APIOption func(*API)

// WithTokens makes the API accept the tokens of ts instead of those in
// clearing's data dir (DataDir/api-tokens.json).
func WithTokens(ts *TokenStore) APIOption { return func(a *API) { a.tokens = ts } }

// WithAPILogger sets the API's logger (default: clearing's).
func WithAPILogger(l *slog.Logger) APIOption { return func(a *API) { a.log = l } }

// NewAPI builds the settlement API over a running clearing house. gatherer
// (may be nil) serves /metrics. The API accepts the tokens in clearing's
// data dir (APITokenFile) unless WithTokens names another store; with no
// token file every request but /healthz is refused (401) until a token is
// issued, which the API notices without a restart.
func NewAPI(c *Clearing, gatherer prometheus.Gatherer, opts ...APIOption) *API {
	a := &API{c: c, mux: http.NewServeMux(), gatherer: gatherer, tokenRate: DefaultTokenRate, tokenBurst: DefaultTokenBurst}
	for _, o := range opts {
		o(a)
	}
	if a.log == nil {
		a.log = c.cfg.Logger
	}
	a.log = a.log.With("component", "api")
	if a.tokens == nil {
		a.tokens = newTokenStore(filepath.Join(c.cfg.DataDir, APITokenFile))
	}
	a.tokens.mu.Lock()
	a.tokens.log = a.log
	a.tokens.refreshLocked()
	a.tokens.mu.Unlock()
	a.checkTokens()

	// Each route names the query parameters its handler reads: any other
	// is refused (handle), so a misspelt filter never passes for none.
	a.handle("GET /v1/operators", operatorOrAuditor, a.operators, "after", "limit")
	a.handle("GET /v1/operators/{id}", ownOperator(func(r *http.Request) string { return r.PathValue("id") }), a.operator)
	a.handle("GET /v1/balances", ownAccount(func(r *http.Request) string { return r.URL.Query().Get("prefix") }), a.balances, "prefix", "after", "limit")
	a.handle("GET /v1/accounts/{account...}", ownAccount(func(r *http.Request) string { return r.PathValue("account") }), a.account)
	// Batches are public on the chain; their events and statements are not.
	a.handle("GET /v1/batches", anyParty, a.batches, "operator", "since", "until", "after", "from", "limit", "format")
	a.handle("GET /v1/batches/{id}", anyParty, a.batch)
	a.handle("GET /v1/batches/{id}/events", operatorOrAuditor, a.batchEvents, "operator", "since", "until", "after", "limit", "format")
	a.handle("GET /v1/events/{id}", operatorOrAuditor, a.event)
	a.handle("GET /v1/terminals", operatorOrAuditor, a.terminals, "operator", "after", "limit")
	a.handle("GET /v1/stats", auditorOnly, a.stats)
	a.handle("GET /v1/deny", auditorOnly, a.denyList, "after", "limit")
	// Concession enrolments (api_enrol.go).
	a.handle("POST /v1/enrolments", deskOnly(RoleConcessions), a.enrolCreate)
	a.handle("DELETE /v1/enrolments/{rider...}", deskOnly(RoleConcessions), a.enrolRevoke, "valid_from")
	a.handle("GET /v1/enrolments/{rider...}", deskOrAuditor(RoleConcessions), a.enrolGet)
	a.handle("GET /v1/enrolments", deskOrAuditor(RoleConcessions), a.enrolList, "after", "limit")
	// Riders and statements (api_riders.go, api_statements.go): registered
	// for every method so that anything but GET gets 405, not the 404 below.
	a.handle("/v1/riders/{media}/{pseudonym}", auditorOnly, getOnly(a.rider))
	a.handle("/v1/riders/{media}/{pseudonym}/days", auditorOnly, getOnly(a.riderDays), "from", "to", "after", "limit")
	a.handle("/v1/riders/{media}/{pseudonym}/days/{date}", auditorOnly, getOnly(a.riderDay))
	a.handle("POST /v1/riders/{media}/{pseudonym}/payments", deskOnly(RolePayments), a.payDebt)
	a.handle("GET /v1/riders/{media}/{pseudonym}/payments", deskOrAuditor(RolePayments), a.riderPaymentsList)
	// Face subjects (api_faces.go).
	a.handle("POST /v1/faces", deskOnly(RoleFaces), a.faceEnrol)
	a.handle("DELETE /v1/faces/{subject}", deskOnly(RoleFaces), a.faceErase, "reason")
	a.handle("GET /v1/faces/{subject}", deskOrAuditor(RoleFaces), a.faceGet)
	a.handle("GET /v1/faces", deskOrAuditor(RoleFaces), a.faceList, "after", "limit")
	// Fare feed versions (api_feeds.go).
	a.handle("POST /v1/feeds", deskOnly(RoleFares), a.feedSchedule, "from")
	a.handle("GET /v1/feeds", deskOrAuditor(RoleFares), a.feedList)
	a.handle("DELETE /v1/feeds/{version}", deskOnly(RoleFares), a.feedWithdraw)
	a.handle("/v1/batches/{id}/statements/{operator}", ownOperator(func(r *http.Request) string { return r.PathValue("operator") }), getOnly(a.statement), "format")
	// The API's description holds no data: served without a token so that
	// tools can read it before one is issued.
	a.route("GET /v1/openapi.json")
	a.mux.HandleFunc("GET /v1/openapi.json", onlyParams(serveOpenAPI))
	// Liveness and readiness hold no data either: probes call them
	// without a token.
	a.route("GET /healthz")
	a.mux.HandleFunc("GET /healthz", onlyParams(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	a.route("GET /readyz")
	a.mux.HandleFunc("GET /readyz", onlyParams(a.readyz))
	// The live dashboard (dashboard.go): its page, scripts and styles are
	// public (no data in them); what it shows comes from /v1/dashboard,
	// behind a token. Not an API route, so not in the OpenAPI document.
	a.mux.Handle("GET /ui/", uiHandler())
	a.handle("GET /v1/dashboard", auditorOnly, a.dashboard)
	if gatherer != nil {
		a.handle("GET /metrics", metricsReader, promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}).ServeHTTP)
	}
	a.fallback = a.guard(anyParty, func(w http.ResponseWriter, r *http.Request) {
		if a.methodNotAllowed(w, r) {
			return
		}
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s (see /v1/openapi.json)", r.Method, fares.ShortValue(r.URL.Path)))
	})
	a.mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The paths served without a token answer a wrong method without
		// one too; every other path only once the caller is known.
		if (publicPaths[r.URL.Path] || strings.HasPrefix(r.URL.Path, "/ui/")) && a.methodNotAllowed(w, r) {
			return
		}
		a.fallback.ServeHTTP(w, r)
	}))
	return a
}

// publicPaths are the paths the API serves without a token (and /ui/...,
// the dashboard's page).
var publicPaths = map[string]bool{"/v1/openapi.json": true, "/healthz": true, "/readyz": true}

// readyz serves GET /readyz: 200 when clearing can do its work now (see
// Clearing.Ready), 503 naming what is not ready otherwise.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if err := a.c.Ready(r.Context()); err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// readyTimeout bounds each of Ready's calls to NATS and the ledger.
const readyTimeout = 2 * time.Second

// readyFresh is how long Ready's calls to NATS and the ledger stand for
// the next callers: /readyz needs no token, and an outside review's 16
// clients made over 1,200 such calls a second through it.
const readyFresh = 250 * time.Millisecond

// readyProbe is the last answer of Ready's calls to NATS and the ledger.
type readyProbe struct {
	mu     sync.Mutex // held while asking: callers meanwhile wait and share it
	at     time.Time
	failed []string
}

// readyProbes asks the event consumer and the ledger whether they answer
// (at most once per readyFresh) and returns what failed.
func (c *Clearing) readyProbes(ctx context.Context) []string {
	p := &c.ready
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.at.IsZero() && time.Since(p.at) < readyFresh {
		return p.failed
	}
	var failed notReady
	fail := failed.add
	var wg sync.WaitGroup
	if c.cons != nil && c.nc != nil && c.nc.IsConnected() {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, readyTimeout)
			defer cancel()
			info, err := c.cons.Info(cctx)
			if err != nil {
				fail("event consumer: %v", err)
				return
			}
			c.metrics.setPending(info.NumPending)
		})
	}
	if c.cfg.Ledger == nil {
		fail("ledger: none")
	} else {
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(ctx, readyTimeout)
			defer cancel()
			if _, err := c.cfg.Ledger.NextBatchID(lctx); err != nil {
				fail("ledger unreachable: %v", err)
			}
		})
	}
	wg.Wait()
	if ctx.Err() == nil { // a caller that gave up says nothing of the others
		p.at, p.failed = time.Now(), failed.list
	}
	return failed.list
}

// notReady gathers what is not ready, from goroutines side by side.
type notReady struct {
	mu   sync.Mutex
	list []string
}

func (n *notReady) add(format string, args ...any) {
	n.mu.Lock()
	n.list = append(n.list, fmt.Sprintf(format, args...))
	n.mu.Unlock()
}

// Ready reports whether clearing can do its work now: its store is open
// with room on its disk (Config.MinFreeBytes), Run's consume loop is
// going, the NATS connection is up and the durable event consumer exists
// on the server, and the ledger answers a read of its next batch id; each call to NATS or the ledger is bounded by 2
// seconds. The error names every part that is not ready. Reading the
// consumer also refreshes the consumer-lag gauge.
func (c *Clearing) Ready(ctx context.Context) error {
	var not notReady
	fail := not.add
	if c.store == nil || c.store.db.IsClosed() {
		fail("store: closed")
	}
	if !c.running.Load() {
		fail("consumer loop: not running")
	}
	for _, s := range c.stalledPartitions() {
		fail("%s", s)
	}
	if s := c.commitFailure(); s != "" {
		fail("%s", s)
	}
	// A lease not renewed holds every commit (holdLease): an outside test
	// saw /readyz say ready while the owners bucket's only replica was
	// down and nothing was applied for a minute.
	if fresh, err := c.leaseFresh(); err != nil {
		fail("owner lease: %v", err)
	} else if !fresh {
		fail("owner lease: not renewed for over %s (the owners bucket %s cannot be written: with --stream-replicas 1 on a cluster it lives on one node): no events are applied until it is", c.cfg.OwnerLease*3/4, OwnersBucket)
	}
	if err := roomError(c.room, c.cfg.Now(), 0, "taking no events"); err != nil {
		fail("disk: %v", err)
	}
	switch {
	case c.nc == nil || c.cons == nil:
		fail("nats: not connected")
	case !c.nc.IsConnected():
		fail("nats: not connected (%s)", strings.ToLower(c.nc.Status().String()))
	}
	for _, f := range c.readyProbes(ctx) {
		fail("%s", f)
	}
	if len(not.list) == 0 {
		return nil
	}
	sort.Strings(not.list)
	return fmt.Errorf("not ready: %s", strings.Join(not.list, "; "))
}

// ServeHTTP implements http.Handler. Paths are exact: where ServeMux would
// redirect (a doubled slash, a dot segment, a collection without the
// trailing slash of its items' pattern) the API answers 404 in its own
// error shape, not with an HTML redirect a client would follow with its
// method and body.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		// A handler's bug answers 500 in the API's error shape and is
		// logged with its stack; net/http's own recovery would close the
		// connection with no answer (an outside test met it on a feed
		// the loader panicked on). Deferred unlocks and discards have run.
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			a.log.Error("API handler failed: a bug, please report it", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			writeError(w, http.StatusInternalServerError, fmt.Errorf("internal error serving %s %s: a bug, logged by clearing with its stack; read back what the request was to change before sending it again", r.Method, fares.ShortValue(r.URL.Path)))
		}
	}()
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		// Answers carry card tokens, riders' journeys and money: kept by no
		// cache, and read as what they say they are (an outside test).
		// The dashboard's pages set their own.
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
	}
	if r.ContentLength != 0 && r.ProtoMajor == 1 {
		// HTTP/2 reads bodies per stream; "Connection: close" there would
		// end every stream of the client's connection.
		uw := &unreadBodyCloses{ResponseWriter: w, body: &eofBody{ReadCloser: r.Body}}
		defer uw.handlerDone()
		w = uw
		r = r.WithContext(r.Context()) // a copy: the server's request is not ours to change
		r.Body = uw.body
	}
	if h, _ := a.mux.Handler(r); isRedirect(h) {
		if len(a.allowedMethods(r)) > 0 {
			// Served with other methods (POST /v1/enrolments beside
			// GET /v1/enrolments/{rider}): 405, once the caller is known.
			a.fallback.ServeHTTP(w, r)
			return
		}
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s (paths are exact; see /v1/openapi.json)", r.Method, fares.ShortValue(r.URL.Path)))
		return
	}
	a.mux.ServeHTTP(w, r)
}

// apiUnreadBodyGrace is how long the API waits, once a handler is done,
// for the rest of a request body it did not read (a refusal, an endpoint
// that takes none) before it closes the connection. A body on its way
// arrives well within it and is read, so that closing does not reset the
// connection under the client's answer; one never sent holds the
// connection no longer.
const apiUnreadBodyGrace = time.Second

// unreadBodyCloses closes the connection after answering a request whose
// body the handler did not read to the end. Go's server otherwise reads
// the rest to keep the connection: before it writes the answer (no
// "Connection: close"), and when the handler is done whatever the answer
// said, up to 256 KiB and until the read deadline (APIReadTimeout). All
// that time the connection is busy, so the listener never closes it for
// another (LimitAPIListener): an outside red team took every slot with
// headers declaring a body it never sent, without a token, and honest
// clients, /healthz's probes among them, waited in vain.
type unreadBodyCloses struct {
	http.ResponseWriter
	body        *eofBody
	wroteHeader bool
}

// eofBody is a request body that notes when it has been read to the end.
type eofBody struct {
	io.ReadCloser
	eof atomic.Bool
}

func (b *eofBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

func (w *unreadBodyCloses) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.wroteHeader = true
		if !w.body.eof.Load() {
			// The server's "closeAfterReply": it writes the answer without
			// reading the rest first.
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *unreadBodyCloses) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// handlerDone bounds, when the body was left unread, the server's reading
// of the rest (which it does even when closing) to apiUnreadBodyGrace.
func (w *unreadBodyCloses) handlerDone() {
	if w.body.eof.Load() {
		return
	}
	if !w.wroteHeader {
		w.Header().Set("Connection", "close")
	}
	// Only the connection's reads: the answer is written all the same.
	_ = http.NewResponseController(w.ResponseWriter).SetReadDeadline(time.Now().Add(apiUnreadBodyGrace))
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *unreadBodyCloses) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// redirectType is the type of ServeMux's internal redirects.
var redirectType = reflect.TypeOf(http.RedirectHandler("/", http.StatusMovedPermanently))

func isRedirect(h http.Handler) bool { return reflect.TypeOf(h) == redirectType }

// checkTokens logs, at start, how to issue a token when there is none, and
// each token bound to an operator the registry does not list (such a token
// is refused).
func (a *API) checkTokens() {
	ts, err := a.tokens.List()
	if err != nil {
		a.log.Error("settlement API token file unreadable: every request but /healthz is refused", "file", a.tokens.Path(), "err", err)
		return
	}
	if len(ts) == 0 {
		where := "--api-tokens " + a.tokens.Path()
		if dir := filepath.Dir(a.tokens.Path()); filepath.Join(dir, APITokenFile) == a.tokens.Path() {
			where = "--data " + dir
		}
		a.log.Warn("settlement API has no tokens: every request but /healthz, /readyz, /v1/openapi.json and /ui/ gets 401; issue one with `faregate clearing token issue "+where+" --role auditor|operator|concessions|payments|faces|fares|metrics [--operator ID] --name NAME`", "file", a.tokens.Path())
		return
	}
	for _, t := range ts {
		if t.Role == RoleOperator {
			if _, ok := a.c.cfg.Registry.Operator(t.Operator); !ok {
				a.warnUnknownOperator(t.Name, t.Operator)
			}
		}
	}
}

func (a *API) warnUnknownOperator(name, op string) {
	if _, seen := a.warned.LoadOrStore(name, struct{}{}); !seen {
		a.log.Warn("settlement API token is bound to an operator the registry does not list: refused", "token", name, "operator", op)
	}
}

// policy decides whether an authenticated party may call a route: nil to go
// ahead, or the status (403, 404) and reason to refuse it with.
type policy func(p Principal, r *http.Request) (int, error)

// anyParty lets every authenticated party through; the handler shows an
// operator only its own data.
func anyParty(Principal, *http.Request) (int, error) { return 0, nil }

// auditorOnly refuses operators.
func auditorOnly(p Principal, r *http.Request) (int, error) {
	if p.Role == RoleAuditor {
		return 0, nil
	}
	return http.StatusForbidden, fmt.Errorf("%s is for auditors only", r.URL.Path)
}

// metricsReader lets a metrics scraper's tokens and auditors through.
func metricsReader(p Principal, r *http.Request) (int, error) {
	if p.Role == RoleMetrics || p.Role == RoleAuditor {
		return 0, nil
	}
	return http.StatusForbidden, fmt.Errorf("%s is for metrics tokens and auditors (token %q is %s; issue one with --role metrics)", r.URL.Path, p.Name, p.Role)
}

// operatorOrAuditor lets operators (the handler shows each its own) and
// auditors through: the desks (concessions, payments, faces) see no
// operator's events, terminals or accounts.
func operatorOrAuditor(p Principal, r *http.Request) (int, error) {
	if p.Role == RoleOperator || p.Role == RoleAuditor {
		return 0, nil
	}
	return http.StatusForbidden, fmt.Errorf("%s is for operators and auditors (token %q is %s)", r.URL.Path, p.Name, p.Role)
}

// deskOnly lets only tokens of a desk's role through (the concessions or
// payments desk): what such a desk does, nobody else may.
func deskOnly(role Role) policy {
	return func(p Principal, r *http.Request) (int, error) {
		if p.Role == role {
			return 0, nil
		}
		return http.StatusForbidden, fmt.Errorf("%s %s is for %s tokens only (token %q is %s)", r.Method, r.URL.Path, role, p.Name, p.Role)
	}
}

// deskOrAuditor lets a desk's tokens and auditors through; operators never
// see riders' enrolments or payments.
func deskOrAuditor(role Role) policy {
	return func(p Principal, r *http.Request) (int, error) {
		if p.Role == role || p.Role == RoleAuditor {
			return 0, nil
		}
		// The fares desk's records are the feeds, not riders' (an outside
		// test read "riders' fares records" on /v1/feeds).
		what := "riders' " + string(role) + " records"
		if role == RoleFares {
			what = "the fares desk's feed schedule"
		}
		if p.Role == RoleOperator {
			return http.StatusForbidden, fmt.Errorf("%s is for %s tokens and auditors: operators do not see %s", r.URL.Path, role, what)
		}
		return http.StatusForbidden, fmt.Errorf("%s is for %s tokens and auditors: %s tokens do not see %s", r.URL.Path, role, p.Role, what)
	}
}

// ownOperator lets an operator through only when the operator id the
// request names is its own.
func ownOperator(named func(*http.Request) string) policy {
	return func(p Principal, r *http.Request) (int, error) {
		if status, err := operatorOrAuditor(p, r); err != nil {
			return status, err
		}
		if id := named(r); !p.Sees(id) {
			return http.StatusForbidden, fmt.Errorf("token %q may see operator %q only, not %q", p.Name, p.Operator, fares.ShortValue(id))
		}
		return 0, nil
	}
}

// ownAccount lets an operator through only when the account (or prefix)
// the request names is exactly its own operator account.
func ownAccount(named func(*http.Request) string) policy {
	return func(p Principal, r *http.Request) (int, error) {
		if status, err := operatorOrAuditor(p, r); err != nil {
			return status, err
		}
		if acct := named(r); !p.seesAccount(acct) {
			if acct == "" && r.URL.Path == "/v1/balances" {
				// The whole list is the auditors'; say how to ask for its own.
				return http.StatusForbidden, fmt.Errorf("token %q may see account %s only, not every account: ask for ?prefix=%s", p.Name, OperatorAccount(p.Operator), OperatorAccount(p.Operator))
			}
			return http.StatusForbidden, fmt.Errorf("token %q may see account %s only, not %q", p.Name, OperatorAccount(p.Operator), acct)
		}
		return 0, nil
	}
}

// seesAccount: an auditor sees every account, an operator its own operator
// account (never a rider's).
func (p Principal) seesAccount(acct string) bool {
	return p.Role == RoleAuditor || (p.Role == RoleOperator && acct == OperatorAccount(p.Operator))
}

type principalKey struct{}

// principal is the party the request was authenticated as (guard put it in
// the context).
func principal(r *http.Request) Principal {
	p, _ := r.Context().Value(principalKey{}).(Principal)
	return p
}

// handle registers h behind authentication and pol. params are the query
// parameters h reads: a request with any other, or with a query that does
// not decode, is refused (400) before h runs.
func (a *API) handle(pattern string, pol policy, h http.HandlerFunc, params ...string) {
	a.route(pattern)
	a.mux.Handle(pattern, a.guard(pol, onlyParams(h, params...)))
}

const bearerChallenge = `Bearer realm="faregate settlement API"`

// guard authenticates the request's bearer token (401 without a valid one)
// and applies the route's policy (403 or 404) before h runs.
func (a *API) guard(pol policy, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := len(r.Header.Values("Authorization")); n > 1 {
			// Which one would count is a proxy's guess: refused, not chosen.
			w.Header().Set("WWW-Authenticate", bearerChallenge+`, error="invalid_request"`)
			a.refuse(w, r, http.StatusUnauthorized, refusedMalformed, "", fmt.Errorf("the Authorization header given %d times: send one bearer token", n))
			return
		}
		authz := r.Header.Get("Authorization")
		if authz == "" {
			w.Header().Set("WWW-Authenticate", bearerChallenge)
			a.refuse(w, r, http.StatusUnauthorized, refusedMissing, "", errors.New("missing bearer token: send Authorization: Bearer <token> (tokens are issued by `faregate clearing token issue`)"))
			return
		}
		scheme, token, ok := strings.Cut(authz, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			w.Header().Set("WWW-Authenticate", bearerChallenge+`, error="invalid_request"`)
			a.refuse(w, r, http.StatusUnauthorized, refusedMalformed, "", errors.New("malformed Authorization header: want Bearer <token>"))
			return
		}
		p, err := a.tokens.Authenticate(strings.TrimSpace(token))
		switch {
		case errors.Is(err, ErrBadToken):
			w.Header().Set("WWW-Authenticate", bearerChallenge+`, error="invalid_token"`)
			a.refuse(w, r, http.StatusUnauthorized, refusedBadToken, "", err)
			return
		case err != nil:
			// Logged by the token store once per failure.
			writeError(w, http.StatusServiceUnavailable, errors.New("the API token file is unreadable: see clearing's log"))
			return
		}
		if ok, wait := a.allow(p.Name); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
			a.refuse(w, r, http.StatusTooManyRequests, refusedRateLimited, p.Name,
				fmt.Errorf("token %q is over its %v requests a second (burst %d): retry after %s", p.Name, float64(a.tokenRate), a.tokenBurst, wait.Round(time.Millisecond)))
			return
		}
		if p.Role == RoleOperator {
			if _, ok := a.c.cfg.Registry.Operator(p.Operator); !ok {
				a.warnUnknownOperator(p.Name, p.Operator)
				a.refuse(w, r, http.StatusForbidden, refusedUnknownOperator, p.Name, fmt.Errorf("token %q is bound to operator %q, which clearing's registry does not list", p.Name, p.Operator))
				return
			}
		}
		// A query that does not decode is refused as such before a policy
		// reads it: Go drops the pair it cannot read, and a policy reading
		// what is left refused an operator with a misleading 403 (an
		// outside review).
		if _, err := parseQuery(r); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if status, err := pol(p, r); err != nil {
			a.refuse(w, r, status, refusedNotPermitted, p.Name, err)
			return
		}
		// No body is decoded from gzip or any coding: one sent so would
		// be read as what it is not.
		if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") && r.ContentLength != 0 {
			writeError(w, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Encoding %q: send the body unencoded", ce))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// The reasons the API refuses who asks, as faregate_clearing_api_refused_total
// labels them.
const (
	refusedMissing         = "missing_token"
	refusedMalformed       = "malformed_header"
	refusedBadToken        = "bad_token"
	refusedUnknownOperator = "unknown_operator"
	refusedNotPermitted    = "not_permitted"
	refusedRateLimited     = "rate_limited"
)

// apiRefusalKinds are the status and reason pairs the refusal counter
// starts at 0 with, so a dashboard sees the series before the first.
var apiRefusalKinds = [][2]string{
	{"401", refusedMissing}, {"401", refusedMalformed}, {"401", refusedBadToken},
	{"403", refusedUnknownOperator}, {"403", refusedNotPermitted}, {"404", refusedNotPermitted},
	{"429", refusedRateLimited},
}

// refusalLogEvery spaces the refusal log lines: a client hammering the API
// with bad tokens is logged once a second with the count since the last
// line, not once a request (the counter has every one).
const refusalLogEvery = time.Second

// refuse answers a request refused for who asks (status 401, 403, or a 404
// that hides what exists), counts it by reason, and logs it for the
// security record: what was asked, from where, with whose token when it
// was a valid one. Never the token itself.
func (a *API) refuse(w http.ResponseWriter, r *http.Request, status int, reason, token string, err error) {
	writeError(w, status, err)
	if m := a.c.metrics; m != nil {
		m.apiRefused.WithLabelValues(strconv.Itoa(status), reason).Inc()
	}
	now := time.Now().UnixNano()
	last := a.refusalLogged.Load()
	if now-last < int64(refusalLogEvery) || !a.refusalLogged.CompareAndSwap(last, now) {
		a.refusalsSkipped.Add(1)
		return
	}
	skipped := a.refusalsSkipped.Swap(0)
	attrs := []any{"status", status, "reason", reason, "method", r.Method, "path", fares.ShortValue(r.URL.Path), "remote", r.RemoteAddr}
	if token != "" {
		attrs = append(attrs, "token", token)
	}
	if skipped > 0 {
		attrs = append(attrs, "refusals_not_logged_since_last", skipped)
	}
	attrs = append(attrs, "err", err)
	a.log.Warn("settlement API request refused", attrs...)
}

// scopeError answers a handler's refusal of what a request names: a 403
// (the token's party may not see it) is a refusal of who asks; any other
// status is the request's own error.
func (a *API) scopeError(w http.ResponseWriter, r *http.Request, status int, err error) {
	if status == http.StatusForbidden {
		a.refuse(w, r, status, refusedNotPermitted, principal(r).Name, err)
		return
	}
	writeError(w, status, err)
}

// Money is an amount in minor units with its decimal rendering.
type Money struct {
	Minor    int64  `json:"minor"`
	Decimal  string `json:"decimal"`
	Currency string `json:"currency"`
}

// MoneyOf is v in currency, as the API and report.json show money.
func MoneyOf(v fare.Amount, currency string) Money {
	return Money{Minor: int64(v), Decimal: v.Format(currency), Currency: currency}
}

func (a *API) money(v fare.Amount) Money { return MoneyOf(v, a.c.cfg.Registry.Currency) }

// OperatorView is one operator in the API.
type OperatorView struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	FlatFare  Money  `json:"flat_fare"`
	Account   string `json:"account"`
	Balance   Money  `json:"balance"` // revenue credited so far
	Terminals int    `json:"terminals"`
}

func (a *API) operatorView(id string) (OperatorView, error) {
	reg := a.c.cfg.Registry
	op, ok := reg.Operator(id)
	if !ok {
		return OperatorView{}, fmt.Errorf("operator %q: %w", fares.ShortValue(id), ErrNotFound)
	}
	b, err := a.c.store.Balance(OperatorAccount(id))
	if err != nil {
		return OperatorView{}, err
	}
	n := a.c.terminals.Active(id)
	return OperatorView{ID: op.ID, Name: op.Name, FlatFare: a.money(op.FlatFare), Account: b.Account, Balance: a.money(b.Net()), Terminals: n}, nil
}

// operators serves GET /v1/operators?after=&limit=: the operators the
// party sees, by id, paged (next_after).
func (a *API) operators(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 1000, 1, 10000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %w", err))
		return
	}
	out := []OperatorView{}
	more := false
	for _, id := range a.c.cfg.Registry.OperatorIDs() {
		if !p.Sees(id) || id <= q.Get("after") {
			continue
		}
		if len(out) == limit {
			more = true
			break
		}
		v, err := a.operatorView(id)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		out = append(out, v)
	}
	resp := map[string]any{"operators": out}
	if more {
		resp["next_after"] = out[len(out)-1].ID
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) operator(w http.ResponseWriter, r *http.Request) {
	v, err := a.operatorView(r.PathValue("id"))
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// BalanceView is one account in the API.
type BalanceView struct {
	Account string `json:"account"`
	Debits  Money  `json:"debits"`
	Credits Money  `json:"credits"`
	Balance Money  `json:"balance"`
}

func (a *API) balanceView(b Balance) BalanceView {
	return BalanceView{Account: b.Account, Debits: a.money(b.Debits), Credits: a.money(b.Credits), Balance: a.money(b.Net())}
}

func (a *API) balances(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 100, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %w", err))
		return
	}
	var bs []Balance
	if p := principal(r); p.Role == RoleAuditor {
		bs, err = a.c.store.Balances(q.Get("prefix"), q.Get("after"), limit+1) // one more: is there a next page?
	} else {
		// The policy let an operator in with its own account as the prefix:
		// it gets that one account (not others the prefix also matches,
		// such as operator/metro2 for operator/metro).
		var b Balance
		if b, err = a.c.store.Balance(OperatorAccount(p.Operator)); err == nil && q.Get("after") < b.Account {
			bs = []Balance{b}
		}
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	more := len(bs) > limit
	bs = bs[:min(len(bs), limit)]
	out := make([]BalanceView, len(bs))
	var total fare.Amount
	for i, b := range bs {
		out[i] = a.balanceView(b)
		total += b.Net()
	}
	resp := map[string]any{"balances": out, "page_total": a.money(total)}
	if more {
		resp["next_after"] = bs[len(bs)-1].Account
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) account(w http.ResponseWriter, r *http.Request) {
	acct := canonicalRider(r.PathValue("account"))
	if acct != AcquirerAccount && !strings.HasPrefix(acct, "operator/") && !strings.HasPrefix(acct, "passenger/") {
		writeError(w, http.StatusBadRequest, fmt.Errorf("account %q: names start with operator/ or passenger/, or are %s", fares.ShortValue(acct), AcquirerAccount))
		return
	}
	if strings.HasPrefix(acct, "passenger/") {
		if _, err := ParseRiderAccount(acct); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("account: %v", err))
			return
		}
	}
	b, found, err := a.c.store.FindBalance(acct)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	// A registered operator's account exists before its first posting;
	// any other name the journal never posted to is no account (a rider's
	// pseudonym in the wrong case included), not an empty one.
	_, registered := a.c.cfg.Registry.Operator(strings.TrimPrefix(acct, "operator/"))
	if !found && !(strings.HasPrefix(acct, "operator/") && registered) {
		writeError(w, http.StatusNotFound, fmt.Errorf("account %q: the journal has no such account (rider accounts are passenger/<media>/0x<32 lower-case hex>)", fares.ShortValue(acct)))
		return
	}
	writeJSON(w, http.StatusOK, a.balanceView(b))
}

// BatchView is one settlement batch in the API.
type BatchView struct {
	ID          uint64            `json:"id"`
	PeriodStart time.Time         `json:"period_start"`
	PeriodEnd   time.Time         `json:"period_end"`
	EventCount  uint64            `json:"event_count"`
	Root        string            `json:"root"`
	Amounts     []OperatorNetView `json:"amounts"`
	Committed   bool              `json:"committed"`
	Commit      *CommitRecordView `json:"commit,omitempty"`
	Contract    string            `json:"contract"`
	// Answers are the operators' on-chain answers to a committed batch
	// (acknowledged, disputed or none yet), one per operator with a net,
	// then any other operator that answered it; omitted before the commit.
	Answers []AnswerView `json:"answers,omitempty"`
	// AnswersUnread says why the answers could not be read from the chain
	// just now (the ledger unreachable): the batch is clearing's record,
	// shown all the same, its answers unknown.
	AnswersUnread string `json:"answers_unread,omitempty"`
}

// OperatorNetView is one operator's net in a batch.
type OperatorNetView struct {
	Operator string `json:"operator"`
	Net      Money  `json:"net"`
}

// CommitRecordView is a batch's ledger transaction.
type CommitRecordView struct {
	TxHash      string    `json:"tx_hash,omitempty"`
	BlockNumber uint64    `json:"block_number,omitempty"`
	GasUsed     uint64    `json:"gas_used,omitempty"`
	At          time.Time `json:"at"`
	// Recovered: clearing found the batch on the ledger at a start,
	// committed by a run stopped before it recorded the commit; at is then
	// the committing block's time and gas_used is not known.
	Recovered bool `json:"recovered,omitempty"`
}

func (a *API) batchView(ctx context.Context, b *BatchRecord, cr *chainReads) (BatchView, error) {
	v := BatchView{ID: b.ID, PeriodStart: a.zoned(b.PeriodStart), PeriodEnd: a.zoned(b.PeriodEnd), EventCount: b.EventCount,
		Root: "0x" + hex.EncodeToString(b.Root[:]), Contract: a.c.cfg.Ledger.ContractAddress().Hex()}
	for _, am := range b.Amounts {
		v.Amounts = append(v.Amounts, OperatorNetView{Operator: am.Operator, Net: a.money(fare.Amount(am.Net))})
	}
	c, err := a.c.store.Commit(b.ID)
	switch {
	case err == nil:
		v.Committed = true
		v.Commit = &CommitRecordView{BlockNumber: c.BlockNumber, GasUsed: c.GasUsed, At: a.zoned(c.At), Recovered: c.Recovered}
		if c.TxHash != ([32]byte{}) {
			v.Commit.TxHash = "0x" + hex.EncodeToString(c.TxHash[:])
		}
		if v.Answers, err = a.answers(ctx, b, cr); err != nil {
			// A chain outage does not blank the batches and the
			// dashboard, the moment they are looked at most.
			v.Answers, v.AnswersUnread = nil, err.Error()
		}
	case !errors.Is(err, ErrNotFound):
		return v, err
	}
	return v, nil
}

func (a *API) batch(w http.ResponseWriter, r *http.Request) {
	id, err := batchIDParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	b, err := a.c.store.Batch(id)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	v, err := a.batchView(r.Context(), b, &chainReads{})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// postsTo says whether an event (taken at a terminal of operator) moved
// money of op: another operator's event in op's revenue statement (a
// transfer discount, a leg's share), which op must be able to prove.
// shareOf is op's share of rec's fare, operator's terminal having taken it.
func shareOf(rec *EventRecord, operator, op string) fare.Amount {
	var share fare.Amount
	for _, po := range rec.PostingsOf(operator) {
		if po.Operator == op {
			share += po.Amount
		}
	}
	return share
}

func postsTo(rec *EventRecord, operator, op string) bool {
	if op == "" {
		return false
	}
	for _, po := range rec.PostingsOf(operator) {
		if po.Operator == op && po.Amount != 0 {
			return true
		}
	}
	return false
}

// EventFields are a fare event's decoded fields for display. The settlement
// API shows the rider as its pseudonymous journal account (Rider) and never
// the raw card token or face subject id; `faregate ledger prove`, run by
// whoever holds clearing's store, shows MediaToken.
type EventFields struct {
	ID         string `json:"id"`
	Terminal   string `json:"terminal"`
	Operator   string `json:"operator"`
	Stop       string `json:"stop"`
	Gate       string `json:"gate,omitempty"` // withheld from another operator
	Direction  string `json:"direction"`
	Media      string `json:"media"`
	MediaToken string `json:"media_token,omitempty"`
	Rider      string `json:"rider,omitempty"`
	// RiderCategory is the category the gate signed (what it showed the
	// rider), not what the tap was priced at: clearing prices by the
	// rider's enrolled category (the rider view's days name it).
	RiderCategory string    `json:"rider_category,omitempty"`
	DeviceTime    time.Time `json:"device_time"`
	Decision      string    `json:"decision"`
	Reason        string    `json:"reason,omitempty"`
	Sequence      uint64    `json:"sequence,omitempty"` // withheld from another operator
	// Face is a face tap's signed evidence (absent for a card).
	Face *FaceEvidenceView `json:"face,omitempty"`
}

// NewEventFields returns e's fields for display, raw media token included.
func NewEventFields(e *fare.Event) EventFields {
	return EventFields{
		ID: e.ID.String(), Terminal: e.Terminal, Operator: e.Operator, Stop: e.Stop, Gate: e.Gate,
		Direction: e.Direction.String(), Media: e.Media.String(), MediaToken: e.MediaToken,
		RiderCategory: e.RiderCategory, DeviceTime: e.DeviceTime, Decision: e.Decision.String(),
		Reason: e.Reason, Sequence: e.Sequence, Face: faceEvidenceView(e.Face),
	}
}

func faceEvidenceView(f *fare.FaceEvidence) *FaceEvidenceView {
	if f == nil {
		return nil
	}
	return &FaceEvidenceView{Mode: f.Mode.String(), Distance: finiteOr(f.Distance), Margin: finiteOr(f.Margin), Frames: f.Frames, Model: f.Model, Policy: f.Policy}
}

// finiteOr is x as JSON can write it: an unmatched face's distance is
// +Inf, shown as -1 (no subject was near).
func finiteOr(x float32) float64 {
	if math.IsInf(float64(x), 0) || math.IsNaN(float64(x)) {
		return -1
	}
	return float64(x)
}

// FaceEvidenceView is what a gate signed about the face that decided a
// tap: how it was matched, how far the probe lay from the subject's
// templates and from the next subject, over how many frames, with which
// pipeline and operating point. The subject is the rider's, by pseudonym.
type FaceEvidenceView struct {
	Mode     string  `json:"mode"`
	Distance float64 `json:"distance"`
	Margin   float64 `json:"margin"`
	Frames   uint8   `json:"frames"`
	Model    string  `json:"model"`
	Policy   string  `json:"policy"`
}

// eventFields are e's fields as the settlement API shows them: the rider
// as its pseudonymous account, the device time in the agency's zone.
func (a *API) eventFields(e *fare.Event) EventFields {
	f := NewEventFields(e).Pseudonymous(a.c.RiderAccount(e.Media, e.MediaToken))
	f.DeviceTime = a.zoned(f.DeviceTime)
	return f
}

// Pseudonymous returns f with the media token replaced by rider.
func (f EventFields) Pseudonymous(rider string) EventFields {
	f.MediaToken, f.Rider = "", rider
	return f
}

// EventView is one applied event with its inclusion proof.
type EventView struct {
	EventFields
	// Fare is what the tap charged the rider, every operator's share of it
	// together (a later tap of the journey may credit some back): the
	// shares follow the feed and the apportionment rule, which every
	// operator holds.
	Fare Money `json:"fare"`
	// Share is the calling operator's own share of Fare, as its statement
	// lists it (operators only).
	Share *Money `json:"share,omitempty"`
	// Unpriced says why the city's fare feed could not price this
	// accepted tap, revenue to review: a stop, route or network the feed
	// does not know, or a journey it has no fare for (charged leg by leg
	// where the feed knows a leg's fare, else nothing). Absent when priced.
	Unpriced  string    `json:"unpriced,omitempty"`
	AppliedAt time.Time `json:"applied_at"`
	// Signed is the terminal-signed encoding (0x hex): anyone with the
	// registry can check Signature against the terminal's public key. It
	// holds the raw media token, so only an auditor gets it: operators'
	// desks see riders by pseudonym only (the gate's own operator too),
	// and get Leaf and Proof.
	Signed string `json:"signed,omitempty"`
	// Leaf is the Merkle leaf value: sha256 of Signed.
	Leaf  string     `json:"leaf"`
	Proof *ProofView `json:"proof"`
	// Withheld names the fields left out (blank, zero, times to the
	// second) when an operator is shown another operator's event because
	// it moved the caller's money: then Fare is the caller's share of the
	// event, not the event's fare.
	Withheld []string `json:"withheld,omitempty"`
}

// ProofView is an inclusion proof; Verified says it checks out off chain
// against the root, OnChain whether the contract's verify view agrees.
type ProofView struct {
	BatchID  uint64   `json:"batch_id"`
	Root     string   `json:"root"`
	Path     []string `json:"path"`
	Verified bool     `json:"verified"`
	OnChain  *bool    `json:"on_chain,omitempty"`
	Pending  string   `json:"pending,omitempty"`
}

func (a *API) event(w http.ResponseWriter, r *http.Request) {
	id, err := fare.ParseEventID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	proof, rec, err := a.c.store.Prove(id)
	if rec == nil {
		writeStoreError(w, err)
		return
	}
	s, derr := fare.Decode(rec.Raw)
	if derr != nil {
		writeError(w, http.StatusInternalServerError, derr)
		return
	}
	e := s.Event
	p := principal(r)
	if !p.Sees(e.Operator) && !postsTo(rec, e.Operator, p.Operator) {
		// Another operator's event: whether it exists is not this party's
		// business either. Answered as an unknown id is, and counted and
		// logged as the refusal it is (an outside re-check saw an
		// operator probe other operators' ids without a trace).
		a.refuse(w, r, http.StatusNotFound, refusedNotPermitted, p.Name, fmt.Errorf("event %s: %w", id, ErrNotFound))
		return
	}
	leaf := s.Digest()
	v := EventView{
		EventFields: a.eventFields(&e), Fare: a.money(rec.Fare), Unpriced: rec.Unpriced, AppliedAt: a.zoned(rec.AppliedAt),
		Leaf: "0x" + hex.EncodeToString(leaf[:]),
	}
	if p.Role == RoleAuditor {
		v.Signed = "0x" + hex.EncodeToString(rec.Raw)
	}
	if p.Role == RoleOperator {
		share := a.money(shareOf(rec, e.Operator, p.Operator))
		v.Share = &share
	}
	if !p.Sees(e.Operator) {
		// Another operator's event, shown to prove its posting to this
		// one: what the statement already says, the leaf and the proof.
		// Its whole fare (the other operators' shares), its terminal's
		// sequence (a tap count) and gate stay the other operator's.
		share := shareOf(rec, e.Operator, p.Operator)
		v.Fare, v.Sequence, v.Gate, v.Reason, v.RiderCategory, v.Face = a.money(share), 0, "", "", "", nil
		v.DeviceTime, v.AppliedAt = v.DeviceTime.Truncate(time.Second), v.AppliedAt.Truncate(time.Second)
		v.Withheld = []string{"gate", "sequence", "reason", "rider_category", "face", "device_time (to the second)", "applied_at (to the second)", "fare (the caller's share instead)"}
	}
	switch {
	case err == nil:
		// A batch of one event has an empty path: [], never null, which
		// OpenZeppelin's verify cannot take.
		pv := &ProofView{BatchID: proof.BatchID, Root: "0x" + hex.EncodeToString(proof.Root[:]), Path: []string{}, Verified: merkle.Verify(proof.Root, proof.Leaf, proof.Path)}
		for _, p := range proof.Path {
			pv.Path = append(pv.Path, "0x"+hex.EncodeToString(p[:]))
		}
		if _, cerr := a.c.store.Commit(proof.BatchID); cerr == nil {
			ok, verr := a.c.cfg.Ledger.VerifyInclusion(r.Context(), proof.BatchID, proof.Leaf, proof.Path)
			if verr == nil {
				pv.OnChain = &ok
			}
		} else {
			pv.Pending = "batch sealed, not yet committed to the ledger"
		}
		v.Proof = pv
	case errors.Is(err, ErrNotFound):
		v.Proof = &ProofView{Pending: "event is in the open settlement period; its proof exists once the period is sealed"}
	default:
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// TerminalView is a registered terminal with clearing's view of its stream.
type TerminalView struct {
	ID       string `json:"id"`
	Operator string `json:"operator"`
	Stop     string `json:"stop"`
	// PublicKey is the terminal's Ed25519 key, 0x hex like every key and
	// hash in the API.
	PublicKey string `json:"public_key"`
	// KeyProof is the key's signature of its registration (operator, id,
	// stop, key) as the chain holds it: anyone can check that the key's
	// holder asked for this registration (fare.VerifyKeyProof).
	KeyProof  string `json:"key_proof"`
	Watermark uint64 `json:"watermark"`
	Highest   uint64 `json:"highest_sequence"`
	// Gap is true when clearing holds sequences above a missing one.
	Gap bool `json:"gap"`
	// RegisteredBlock and RevokedBlock are the on-chain registry's blocks;
	// RevokedBlock is omitted while the terminal is valid.
	RegisteredBlock uint64 `json:"registered_block"`
	RevokedBlock    uint64 `json:"revoked_block,omitempty"`
}

// terminals serves GET /v1/terminals?operator=&after=&limit=: the
// registered terminals the party sees, by id, paged (next_after).
func (a *API) terminals(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 1000, 1, 10000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %w", err))
		return
	}
	op, status, err := a.operatorFilter(r)
	if err != nil {
		a.scopeError(w, r, status, err)
		return
	}
	all := a.c.terminals.All()
	out := make([]TerminalView, 0, min(len(all), limit))
	more := false
	for _, t := range all {
		if !p.Sees(t.Operator) || (op != "" && t.Operator != op) || t.ID <= q.Get("after") {
			continue
		}
		if len(out) == limit {
			more = true
			break
		}
		hi, err := a.c.store.HighestSequence(t.ID)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		wm := a.c.TerminalWatermark(t.ID)
		out = append(out, TerminalView{ID: t.ID, Operator: t.Operator, Stop: t.Stop, PublicKey: "0x" + hex.EncodeToString(t.PublicKey),
			KeyProof: "0x" + hex.EncodeToString(t.KeyProof), Watermark: wm, Highest: hi, Gap: hi > wm, RegisteredBlock: t.RegisteredBlock, RevokedBlock: t.RevokedBlock})
	}
	// Registrations the chain holds and clearing does not follow: the
	// chain and this view would otherwise disagree without saying so.
	refused := []RefusedRegistration{}
	for _, rr := range a.c.terminals.Refused() {
		if p.Sees(rr.Operator) && (op == "" || rr.Operator == op) {
			refused = append(refused, rr)
		}
	}
	resp := map[string]any{"terminals": out, "refused": refused}
	if more {
		resp["next_after"] = out[len(out)-1].ID
	}
	writeJSON(w, http.StatusOK, resp)
}

// denyList serves the deny list to auditors: its version and a page of its
// entries (hashed keys, never a token) after the key named by after.
func (a *API) denyList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 100, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %w", err))
		return
	}
	if after := q.Get("after"); after != "" {
		if _, err := fare.ParseDenyKey(after); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("after: %w", err))
			return
		}
	}
	version, entries, err := a.c.store.DenyEntries(q.Get("after"), limit+1) // one more: is there a next page?
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if entries == nil {
		entries = []DenyEntry{}
	}
	more := len(entries) > limit
	entries = entries[:min(len(entries), limit)]
	resp := map[string]any{"version": version, "entries": entries}
	if more {
		resp["next_after"] = entries[len(entries)-1].Key
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) stats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.c.Stats())
}

// APIServer builds the settlement API's HTTP server for h: over TLS with
// the PEM certificate (chain) and key in certFile and keyFile when both are
// set, plain HTTP when neither is. The files are read here, so a bad pair
// fails before anything is served. h may be nil and set on the returned
// server before it serves.
func APIServer(h http.Handler, certFile, keyFile string) (*http.Server, error) {
	srv := &http.Server{Handler: h, ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn)}
	SetAPITimeouts(srv)
	switch {
	case certFile == "" && keyFile == "":
		return srv, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("settlement API TLS needs both a certificate and a key file (or neither, for plain HTTP)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err == nil {
		err = CheckCertificateDates(cert, time.Now())
	}
	if err != nil {
		return nil, fmt.Errorf("settlement API TLS certificate %s, key %s: %w", certFile, keyFile, err)
	}
	srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	return srv, nil
}

// CheckCertificateDates refuses a certificate whose leaf is out of its
// validity dates at now: every client would refuse it (curl: "certificate
// has expired"), while the server started as if all were well.
func CheckCertificateDates(cert tls.Certificate, now time.Time) error {
	leaf := cert.Leaf
	if leaf == nil {
		if len(cert.Certificate) == 0 {
			return errors.New("no certificate")
		}
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return err
		}
	}
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("the certificate expired at %s: renew it", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("the certificate is not valid until %s (or this machine's clock is wrong)", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// The settlement API's deadlines. A caller that sends headers and then no
// body, or leaves a connection idle, must not hold it (and a file
// descriptor shared with NATS and the chain) for ever; a write may take a
// while for a large batch's CSV statement.
const (
	APIReadHeaderTimeout = 5 * time.Second
	APIReadTimeout       = 30 * time.Second
	APIWriteTimeout      = 5 * time.Minute
	APIIdleTimeout       = 30 * time.Second
	// APIMaxConns bounds the connections the API holds at once; more wait
	// to be accepted. Idle keep-alive connections to /healthz, which needs
	// no token, held 2 minutes each, ran clearing out of file descriptors
	// for an outside red team, and its JetStream store with it.
	APIMaxConns = 1024
	// APIMaxConnsPerHost bounds the connections one remote address holds
	// at once: more are closed as they come. Without it, 1,024 keep-alive
	// connections from one host, each asking /healthz now and then, held
	// every slot and shut everyone else out (an outside recheck).
	APIMaxConnsPerHost = 64
)

// LimitAPIListener is ln accepting at most APIMaxConns connections at once,
// APIMaxConnsPerHost of them from one remote host (an IPv4 address, an
// IPv6 /64: one IPv6 host holds a whole /64). When all are taken, the
// connection idle the longest is closed for the next one (its client
// reconnects), and while none is idle the next waits to be accepted: an
// outside recheck held every slot with keep-alive connections from 16
// addresses, asking /healthz now and then. The idle ones are known only
// to an http.Server whose ConnState is the listener's (ServeAPI sets it).
func LimitAPIListener(ln net.Listener) *APIListener {
	l := &APIListener{Listener: ln, open: map[string]int{}, conns: map[*hostConn]struct{}{}}
	l.freed = sync.NewCond(&l.mu)
	return l
}

// APIListener is the settlement API's listener (LimitAPIListener).
type APIListener struct {
	net.Listener
	mu    sync.Mutex
	freed *sync.Cond // a connection closed or went idle
	open  map[string]int
	conns map[*hostConn]struct{}
}

// Accept waits for a connection the limits admit.
func (l *APIListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := apiHostKey(c.RemoteAddr())
		l.mu.Lock()
		if l.open[host] >= APIMaxConnsPerHost {
			l.mu.Unlock()
			c.Close()
			continue
		}
		for len(l.conns) >= APIMaxConns {
			if idle := l.longestIdle(); idle != nil {
				l.drop(idle)
				idle.Conn.Close()
				continue
			}
			l.freed.Wait()
		}
		hc := &hostConn{Conn: c, l: l, host: host}
		l.open[host]++
		l.conns[hc] = struct{}{}
		l.mu.Unlock()
		return hc, nil
	}
}

// ConnState is http.Server's ConnState for a server serving l: it tells l
// which connections are idle.
func (l *APIListener) ConnState(c net.Conn, state http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	hc, ok := c.(*hostConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if state == http.StateIdle {
		hc.idleSince = time.Now()
		// An Accept waiting for a slot may close this one now (an outside
		// recheck's client waited for ever beside 1,024 idle connections).
		l.freed.Broadcast()
	} else {
		hc.idleSince = time.Time{}
	}
}

// longestIdle is the connection idle the longest, nil if none is (l.mu
// held).
func (l *APIListener) longestIdle() *hostConn {
	var out *hostConn
	for c := range l.conns {
		if !c.idleSince.IsZero() && (out == nil || c.idleSince.Before(out.idleSince)) {
			out = c
		}
	}
	return out
}

// drop forgets c (l.mu held), once.
func (l *APIListener) drop(c *hostConn) {
	if _, ok := l.conns[c]; !ok {
		return
	}
	delete(l.conns, c)
	if l.open[c.host]--; l.open[c.host] <= 0 {
		delete(l.open, c.host)
	}
	l.freed.Broadcast()
}

// apiHostKey is the host a remote address counts against
// (APIMaxConnsPerHost): an IPv4 address, or an IPv6 address's /64.
func apiHostKey(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if v4 := ta.IP.To4(); v4 != nil {
		return v4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// hostConn gives its slot back when closed.
type hostConn struct {
	net.Conn
	l         *APIListener
	host      string
	idleSince time.Time // zero: not idle (guarded by l.mu)
}

func (c *hostConn) Close() error {
	c.l.mu.Lock()
	c.l.drop(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// SetAPITimeouts gives srv the settlement API's deadlines.
func SetAPITimeouts(srv *http.Server) {
	srv.ReadHeaderTimeout, srv.ReadTimeout = APIReadHeaderTimeout, APIReadTimeout
	srv.WriteTimeout, srv.IdleTimeout = APIWriteTimeout, APIIdleTimeout
}

// APIScheme is "https" for a server APIServer built with TLS, else "http".
func APIScheme(srv *http.Server) string {
	if servesTLS(srv) {
		return "https"
	}
	return "http"
}

// servesTLS says whether srv has a certificate to serve TLS with. (Not
// whether TLSConfig is set: net/http's HTTP/2 setup may set one on a plain
// server once it serves, and the start-up log said https for plain HTTP.)
func servesTLS(srv *http.Server) bool {
	return srv.TLSConfig != nil && len(srv.TLSConfig.Certificates) > 0
}

// ServeAPI serves srv (from APIServer) on ln until ctx is done, then shuts
// it down, giving requests in flight 5 seconds. It returns nil after ctx
// ends and the error that stopped serving otherwise.
func ServeAPI(ctx context.Context, srv *http.Server, ln net.Listener) error {
	limited := LimitAPIListener(ln)
	ln = limited
	if srv.ConnState == nil {
		srv.ConnState = limited.ConnState
	}
	errc := make(chan error, 1)
	tlsOn := servesTLS(srv)
	go func() {
		if tlsOn {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("settlement API: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("settlement API: %w", err)
	}
	return nil
}

// maxBatchID bounds the batch ids the API takes, in a path and in ?from=
// and ?after= alike.
const maxBatchID = 1 << 62

// batchIDParam is the request's {id}, a batch id, written as the API
// writes it (no sign, no leading zero: a path names one resource once).
func batchIDParam(r *http.Request) (uint64, error) {
	s := r.PathValue("id")
	id, err := strconv.ParseUint(s, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) || err == nil && id > maxBatchID:
		return 0, fmt.Errorf("batch id %q: out of range: batch ids are 1 to %d", fares.ShortValue(s), uint64(maxBatchID))
	case err != nil || id == 0:
		return 0, fmt.Errorf("batch id %q: want a positive integer", fares.ShortValue(s))
	case s != strconv.FormatUint(id, 10):
		return 0, fmt.Errorf("batch id %q: write it without leading zeros (%d)", s, id)
	}
	return id, nil
}

func intParam(s string, def, lo, hi int64) (int, error) {
	if s == "" {
		return int(def), nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%q is out of range: want an integer in [%d, %d]", s, lo, hi)
	}
	if err != nil {
		if strings.ContainsRune(s, ' ') {
			// A "+" in a query string decodes as a space (+1 arrives as " 1").
			return 0, fmt.Errorf("%q is not an integer (a + in a query string is a space: write %%2B, or no sign)", s)
		}
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("%d is outside [%d, %d]", v, lo, hi)
	}
	return int(v), nil
}

func writeStoreError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, err)
		return
	}
	writeError(w, http.StatusInternalServerError, err)
}

// maxErrorBytes bounds an error answer's message: a refusal names what
// was wrong without echoing a long request back whole.
const maxErrorBytes = 8 << 10

func writeError(w http.ResponseWriter, status int, err error) {
	msg := err.Error()
	if len(msg) > maxErrorBytes {
		msg = fmt.Sprintf("%s... (message of %d bytes cut)", strings.ToValidUTF8(msg[:maxErrorBytes], ""), len(msg))
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
