package clearing_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/terminal"
)

// desk is a running clearing with something on every panel of the
// operators' desk: applied taps of two operators from two running
// terminals, a quarantined message, a gap (t3's sequence 2 without its 1),
// a forged confirmation refused by t1, a committed batch metro has
// acknowledged on chain, and one Prometheus registry for clearing and its
// terminals.
type desk struct {
	cl      *running
	led     *ledger.Embedded
	prom    *prometheus.Registry
	t1, t2  *runningTerminal
	applied int
	root    string // batch 1's root, 0x hex
}

func startDesk(t *testing.T) *desk {
	t.Helper()
	dir := t.TempDir()
	reg, keys := testRegistry(3) // t1, t3 metro (2.50); t2 bus (1.80)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	d := &desk{led: led, prom: prometheus.NewRegistry()}
	d.cl = startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour, Metrics: d.prom})
	t.Cleanup(func() { d.cl.stop(t) })
	url := d.cl.NATSURL()
	withMetrics := func(c *terminal.Config) { c.Metrics = d.prom }
	d.t1 = startTerminalWith(t, dir, url, reg, keys, "t1", withMetrics)
	t.Cleanup(func() { d.t1.stop(t) })
	d.t2 = startTerminalWith(t, dir, url, reg, keys, "t2", withMetrics)
	t.Cleanup(func() { d.t2.stop(t) })

	for i := range 3 {
		tap(t, d.t1.Terminal, fmt.Sprintf("card-%d", i), fare.Entry)
	}
	for i := range 2 {
		tap(t, d.t2.Terminal, fmt.Sprintf("card-%d", i), fare.Validate)
	}
	waitFor(t, "t1 and t2 confirmed", 15*time.Second, func() bool { return d.t1.Pending() == 0 && d.t2.Pending() == 0 })

	ctx := context.Background()
	// Junk on t1's subject: quarantined as malformed.
	nc1 := terminalConn(t, url, keys["t1"], "t1")
	defer nc1.Close()
	publishEvent(t, nc1, fare.EventSubject("metro", "t1"), []byte("not an event"))
	// t3's sequence 2 without its 1: applied, and a gap.
	ev := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: "t3", Operator: "metro", Stop: "stop-t3", Gate: "g1",
		Direction: fare.Entry, Media: fare.Card, MediaToken: "card-9", DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: 2}
	raw, err := fare.Sign(&ev, keys["t3"])
	if err != nil {
		t.Fatal(err)
	}
	nc3 := terminalConn(t, url, keys["t3"], "t3")
	defer nc3.Close()
	publishEvent(t, nc3, fare.EventSubject("metro", "t3"), raw)
	d.applied = 6
	waitFor(t, "junk quarantined and t3's event applied", 10*time.Second, func() bool {
		s := d.cl.Stats()
		return s.Applied == uint64(d.applied) && s.Quarantined == 1
	})
	// A confirmation for t1 signed by a stranger's key, as a compromised
	// broker could send it.
	_, stranger, _ := ed25519.GenerateKey(nil)
	forged, err := (&fare.Confirmation{Terminal: "t1", Watermark: 3, IssuedAt: time.Now()}).Sign(stranger)
	if err != nil {
		t.Fatal(err)
	}
	admin := adminConn(t, url)
	defer admin.Close()
	if err := admin.Publish(fare.AppliedSubject("t1"), forged); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the forged confirmation refused", 10*time.Second, func() bool { return d.t1.RefusedConfirmations() >= 1 })

	if err := d.cl.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := d.cl.Store().Batch(1)
	if err != nil {
		t.Fatal(err)
	}
	d.root = "0x" + hex.EncodeToString(b.Root[:])
	acct, err := led.OperatorAccount(ctx, "metro")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acct.AcknowledgeBatch(ctx, 1); err != nil {
		t.Fatalf("metro acknowledging batch 1: %v", err)
	}
	return d
}

// seriesValue is the value of the series of name with labels in the
// gathered families (a histogram's sample count), and whether it exists.
func seriesValue(fams []*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// TestClearingMetrics reads the metrics of a running clearing and its
// terminals after real traffic: every series has its real value, and
// every labelled counter has a series for each known label value (0 for
// those never seen).
func TestClearingMetrics(t *testing.T) {
	d := startDesk(t)
	type series struct {
		name   string
		labels map[string]string
		want   float64
	}
	cases := []series{
		{"faregate_clearing_events_applied_total", nil, float64(d.applied)},
		{"faregate_clearing_tap_to_applied_seconds", nil, float64(d.applied)}, // one latency per applied event
		{"faregate_clearing_consumer_pending", nil, 0},
		{"faregate_clearing_batch_seal_seconds", nil, 1},
		{"faregate_clearing_ledger_commit_seconds", nil, 1},
		{"faregate_clearing_ledger_commit_errors_total", nil, 0},
		{"faregate_clearing_batches_committed_total", nil, 1},
		{"faregate_clearing_gaps_opened_total", nil, 1},
		{"faregate_clearing_terminals_with_gap", nil, 1},
	}
	for _, r := range clearing.QuarantineReasons() {
		want := 0.0
		if r == clearing.ReasonMalformed {
			want = 1
		}
		cases = append(cases, series{"faregate_clearing_events_quarantined_total", map[string]string{"reason": r}, want})
	}
	for _, term := range []string{"t1", "t2"} {
		for _, r := range []string{terminal.RefusedUntrusted, terminal.RefusedMalformed, terminal.RefusedOther, terminal.RefusedBeyond, terminal.RefusedDigest} {
			want := 0.0
			if term == "t1" && r == terminal.RefusedUntrusted {
				want = 1 // the forged confirmation
			}
			cases = append(cases, series{"faregate_terminal_confirmations_refused_total", map[string]string{"terminal": term, "reason": r}, want})
		}
	}
	// The gap gauge follows the registry poll (once a second): wait for it.
	var fams []*dto.MetricFamily
	waitFor(t, "the gap gauge", 5*time.Second, func() bool {
		var err error
		if fams, err = d.prom.Gather(); err != nil {
			t.Fatal(err)
		}
		v, _ := seriesValue(fams, "faregate_clearing_terminals_with_gap", nil)
		return v == 1
	})
	for _, c := range cases {
		got, ok := seriesValue(fams, c.name, c.labels)
		switch {
		case !ok:
			t.Errorf("%s%v: no such series", c.name, c.labels)
		case got != c.want:
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Latencies are real durations, not zeros.
	for _, f := range fams {
		if f.GetName() == "faregate_clearing_tap_to_applied_seconds" {
			if s := f.GetMetric()[0].GetHistogram().GetSampleSum(); s <= 0 {
				t.Errorf("tap-to-applied latencies sum to %v", s)
			}
		}
	}
}

// TestReadiness takes a running clearing apart piece by piece: /readyz is
// 200 while everything works, then 503 naming each part that stopped (its
// owner lease not renewed, the event consumer deleted on the server, the ledger closed, clearing
// stopped), every answer conforming to the OpenAPI document; /healthz
// (liveness) stays 200 throughout.
func TestReadiness(t *testing.T) {
	doc := loadOpenAPI(t)
	dir := t.TempDir()
	reg, _ := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	ledgerOpen := true
	t.Cleanup(func() {
		if ledgerOpen {
			led.Close()
		}
	})
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour, OwnerLease: 2 * time.Second})
	t.Cleanup(func() { cl.stop(t) })
	ts, err := clearing.LoadTokenStore(filepath.Join(dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(clearing.NewAPI(cl.Clearing, nil, clearing.WithTokens(ts)))
	t.Cleanup(srv.Close)
	admin := adminConn(t, cl.NATSURL())
	defer admin.Close()
	adminJS, _ := jetstream.New(admin)

	for _, step := range []struct {
		name  string
		do    func()
		want  int
		names []string // what the 503 must name
	}{
		{"running", func() {}, 200, nil},
		// The owner lease not renewed (the owners bucket unwritable):
		// nothing can be committed.
		{"owner lease not renewed", func() {
			cl.PauseLeaseRenewals(true)
			time.Sleep(2 * time.Second) // past three quarters of the lease
		}, 503, []string{"owner lease"}},
		{"owner lease renewed again", func() {
			cl.PauseLeaseRenewals(false)
			waitFor(t, "the lease renewed", 10*time.Second, func() bool { return cl.Ready(context.Background()) == nil })
		}, 200, nil},
		{"consumer deleted", func() {
			if err := adminJS.DeleteConsumer(context.Background(), fare.EventStream, "clearing"); err != nil {
				t.Fatal(err)
			}
		}, 503, []string{"event consumer"}},
		{"ledger closed", func() {
			led.Close()
			ledgerOpen = false
		}, 503, []string{"event consumer", "ledger"}},
		{"clearing stopped", func() { cl.stop(t) }, 503, []string{"store: closed", "consumer loop: not running", "nats: not connected", "ledger"}},
	} {
		step.do()
		// Ready's calls to NATS and the ledger stand for a moment (an
		// answer from before the step may be given meanwhile).
		waitFor(t, step.name, 5*time.Second, func() bool {
			resp, err := http.Get(srv.URL + "/readyz")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var body struct{ Error string }
			json.NewDecoder(resp.Body).Decode(&body)
			for _, n := range step.names {
				if !strings.Contains(body.Error, n) {
					return false
				}
			}
			return resp.StatusCode == step.want
		})
		checkConformance(t, doc, srv.URL, nil, []conformanceCase{
			{"GET", "none", "/readyz", "/readyz", nil, "", step.want},
			{"GET", "none", "/healthz", "/healthz", nil, "", 200},
		})
		var body struct{ Status, Error string }
		getPublicJSON(t, srv.URL+"/readyz", &body)
		t.Logf("%s: /readyz: %s%s", step.name, body.Status, body.Error)
		for _, n := range step.names {
			if !strings.Contains(body.Error, n) {
				t.Errorf("%s: /readyz says %q, which does not name %q", step.name, body.Error, n)
			}
		}
		if step.want == 200 && body.Status != "ready" {
			t.Errorf("%s: /readyz status %q, want ready", step.name, body.Status)
		}
	}
}

// countingLedger counts NextBatchID calls.
type countingLedger struct {
	ledger.Ledger
	next atomic.Int64
}

func (l *countingLedger) NextBatchID(ctx context.Context) (uint64, error) {
	l.next.Add(1)
	return l.Ledger.NextBatchID(ctx)
}

// TestReadinessProbesShared: /readyz needs no token, so callers asking at
// once share one call to NATS and the ledger (an outside review's 16
// clients made over 1,200 a second).
func TestReadinessProbesShared(t *testing.T) {
	dir := t.TempDir()
	reg, _ := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	counted := &countingLedger{Ledger: led}
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: counted, Period: time.Hour})
	t.Cleanup(func() { cl.stop(t) })
	waitFor(t, "ready", 10*time.Second, func() bool { return cl.Ready(context.Background()) == nil })
	before := counted.next.Load()
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if err := cl.Ready(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := counted.next.Load() - before; n > 3 {
		t.Errorf("200 readiness checks at once asked the ledger %d times, want them to share a call", n)
	}
}

func getPublicJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// TestDashboardInChromium opens the live dashboard in headless Chromium
// (Debian's package) over a running clearing with real traffic, with an
// auditor token in the URL fragment, and checks that the page shows the
// real numbers: the applied count, the operators' decimal positions, batch
// 1's root and metro's acknowledgement, the quarantine by reason, the
// terminal with a gap and the confirmation latency samples. It keeps a
// screenshot (go test -artifacts keeps it under -outputdir).
func TestDashboardInChromium(t *testing.T) {
	chromium := findChromium(t)
	d := startDesk(t)
	srv, token := auditedAPI(t, d.cl.Clearing, d.prom)

	// The page's files are public, with a policy that lets nothing but
	// them run; the data is not.
	for path, ctype := range map[string]string{"/ui/": "text/html", "/ui/index.html": "text/html", "/ui/dashboard.js": "text/javascript", "/ui/dashboard.css": "text/css"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: %d %q, CSP %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"))
		}
	}
	// What the page does not have is the API's 404, in its error shape,
	// never a redirect.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/ui/nosuch.js", "/ui/%2e%2e/v1/batches", "/ui/ui/"} {
		resp, err := noRedirect.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"error"`) {
			t.Errorf("GET %s: %d %q %s, want the API's 404", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	if resp, err := http.Get(srv.URL + "/v1/dashboard"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/dashboard without a token: %v %v, want 401", resp.Status, err)
	}

	shot := filepath.Join(t.ArtifactDir(), "dashboard.png")
	dom := dashboardDOM(t, chromium, srv.URL, token, shot)

	for _, c := range []struct{ what, pattern string }{
		{"the board shown", `<main id="board">`},
		{"ready", `id="ready" class="badge ok">ready<`},
		{"the applied count", fmt.Sprintf(`id="applied">%d<`, d.applied)},
		{"metro's position", `data-operator="metro">.*?class="num position"><span class="money" data-minor="1000">10\.00 EUR<`},
		{"bus's position", `data-operator="bus">.*?class="num position"><span class="money" data-minor="360">3\.60 EUR<`},
		{"batch 1's root", `data-batch="1">.*?class="mono root" title="` + d.root + `">` + regexp.QuoteMeta(d.root[:10]) + `…<`},
		{"batch 1 committed", `data-batch="1">.*?committed in block \d+`},
		{"metro's acknowledgement", `class="answer-acknowledged" data-operator="metro">metro: acknowledged<`},
		{"bus's answer", `class="answer-none" data-operator="bus">bus: none<`},
		{"the malformed message", `data-reason="malformed"><td>malformed</td><td class="num">1<`},
		{"a reason never seen, at 0", `data-reason="bad-signature"><td>bad-signature</td><td class="num">0<`},
		{"t3's gap", `data-terminal="t3">.*?class="gap">gap after 0<`},
		{"t1's watermark", `data-terminal="t1">.*?class="num watermark">3<`},
		{"t1's last contact", `data-terminal="t1">.*?title="\d{4}-\d\d-\d\dT[^"]+">\d+ s ago<`},
		{"latency samples", fmt.Sprintf(`id="lat-samples">%d<`, d.applied)},
		{"the gap count", `id="gaps">1<`},
		{"no verifier partitions", `<section id="partitions-section" hidden="">`},
	} {
		if !regexp.MustCompile(c.pattern).MatchString(dom) {
			t.Errorf("the dashboard does not show %s (%s)", c.what, c.pattern)
		}
	}
	if strings.Contains(dom, token) {
		t.Error("the token is in the page")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 20_000 {
		t.Errorf("screenshot %s: %v (%d bytes)", shot, err, sizeOf(fi))
	}
}

// findChromium is the chromium binary the dashboard tests drive.
func findChromium(t *testing.T) string {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: `make deps` installs it (Debian package chromium)")
	}
	return chromium
}

// auditedAPI serves cl's settlement API for the test's lifetime with a
// token store of its own, and returns it with an auditor token.
func auditedAPI(t *testing.T, cl *clearing.Clearing, prom *prometheus.Registry) (*httptest.Server, string) {
	t.Helper()
	srv, ts := servedAPI(t, cl, prom)
	token, err := ts.Issue(clearing.RoleAuditor, "", "desk")
	if err != nil {
		t.Fatal(err)
	}
	return srv, token
}

// servedAPI serves cl's settlement API for the test's lifetime with an
// empty token store of its own, which it returns for the test's tokens.
func servedAPI(t *testing.T, cl *clearing.Clearing, prom *prometheus.Registry) (*httptest.Server, *clearing.TokenStore) {
	t.Helper()
	ts, err := clearing.LoadTokenStore(filepath.Join(t.TempDir(), "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(clearing.NewAPI(cl, prom, clearing.WithTokens(ts)))
	t.Cleanup(srv.Close)
	return srv, ts
}

// dashboardDOM opens the dashboard of the API at url in headless Chromium
// with token in the URL fragment, saves a screenshot to shot and returns
// the page's DOM once it has polled.
func dashboardDOM(t *testing.T, chromium, url, token, shot string) string {
	t.Helper()
	page := url + "/ui/#token=" + token
	// One run dumps the DOM and takes the picture; the virtual time budget
	// lets the page poll once or twice without waiting for real.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
		"--hide-scrollbars", "--user-data-dir="+t.TempDir(), "--window-size=1280,1500", "--virtual-time-budget=3000",
		"--dump-dom", "--screenshot="+shot, page)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return string(b)
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return 0
	}
	return fi.Size()
}

// TestQuarantineReasonsComplete: every reason clearing quarantines or
// rejects for is zero-initialised in the counter (an alert on a reason
// that has not happened yet must see 0, not no series).
func TestQuarantineReasonsComplete(t *testing.T) {
	all := []string{clearing.ReasonMalformed, clearing.ReasonSubjectMismatch, clearing.ReasonUnknownTerminal, clearing.ReasonTerminalRevoked,
		clearing.ReasonOperatorMismatch, clearing.ReasonStopMismatch, clearing.ReasonBadSignature, clearing.ReasonSequenceReplayed,
		clearing.ReasonSequenceConflict, clearing.ReasonSequenceAhead, clearing.ReasonFaceNotHeld, clearing.ReasonEventIDTaken,
		clearing.ReasonDeviceTimeAhead, clearing.ReasonDeviceTimeBehind, clearing.ReasonDeviceTimeFarAhead}
	listed := clearing.QuarantineReasons()
	for _, r := range all {
		if !slices.Contains(listed, r) {
			t.Errorf("reason %s not in QuarantineReasons %v", r, listed)
		}
	}
}
