package clearing

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
)

// The live dashboard: static files under /ui/ (public: they hold no data)
// and GET /v1/dashboard, the one JSON document the page polls, behind an
// auditor token like /v1/stats. The page takes its token from the URL
// fragment (#token=..., never sent to a server) or a form, keeps it in
// sessionStorage and sends it as a bearer token.

//go:embed ui
var uiFiles embed.FS

// uiHandler serves the dashboard's embedded files under /ui/.
func uiHandler() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(fmt.Sprintf("clearing: embedded ui: %v", err)) // the embed pattern names ui: cannot happen
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Only the page's own files: no inline script, no other origin, so a
		// value shown on the page can never run as code nor leak the token.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		// A file the page does not have is the API's 404, in its error
		// shape (FileServer's is text, and it redirects index.html and
		// directories): the API never redirects.
		name := strings.TrimPrefix(r.URL.Path, "/ui/")
		if name == "index.html" {
			name = ""
		}
		if name != "" {
			if fi, err := fs.Stat(sub, name); err != nil || fi.IsDir() {
				writeError(w, http.StatusNotFound, fmt.Errorf("no such file of the dashboard: %s", r.URL.Path))
				return
			}
		}
		if name == "" && r.URL.Path != "/ui/" {
			r = r.Clone(r.Context())
			r.URL.Path = "/ui/"
		}
		files.ServeHTTP(w, r)
	})
}

const (
	// rateWindow is how many seconds of tap rate the dashboard shows.
	rateWindow = 60
	// latencyWindow is how many recent applied events the confirmation
	// latency quantiles are computed over.
	latencyWindow = 1024
	// dashboardBatches is how many recent batches the dashboard shows.
	dashboardBatches = 8
	// dashboardTerminals is the most terminals the dashboard lists (those
	// with a gap first).
	dashboardTerminals = 200
)

// liveWindow keeps what the dashboard shows of the recent past: events
// applied and quarantined per second, the latest confirmation latencies,
// and when each terminal was last heard from. The consume loop writes it,
// the API reads it.
type liveWindow struct {
	mu      sync.Mutex
	secs    [rateWindow]secondCount // ring indexed by unix second
	lat     [latencyWindow]float64  // ring of seconds
	latN    uint64                  // samples ever written
	contact map[string]time.Time    // terminal -> last verified event
}

type secondCount struct {
	unix                 int64
	applied, quarantined uint64
}

func newLiveWindow() *liveWindow { return &liveWindow{contact: map[string]time.Time{}} }

// add records one applied batch at now.
func (w *liveWindow) add(now time.Time, applied, quarantined int, lat []float64, touched map[string]*touch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sec := now.Unix()
	s := &w.secs[sec%rateWindow]
	if s.unix != sec {
		*s = secondCount{unix: sec}
	}
	s.applied += uint64(applied)
	s.quarantined += uint64(quarantined)
	for _, v := range lat {
		w.lat[w.latN%latencyWindow] = v
		w.latN++
	}
	for term := range touched {
		w.contact[term] = now
	}
}

// rates returns the events applied and quarantined in each of the
// rateWindow whole seconds before now, oldest first.
func (w *liveWindow) rates(now time.Time) (applied, quarantined []uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	applied, quarantined = make([]uint64, rateWindow), make([]uint64, rateWindow)
	cur := now.Unix()
	for i := range rateWindow {
		sec := cur - rateWindow + int64(i)
		if s := w.secs[((sec%rateWindow)+rateWindow)%rateWindow]; s.unix == sec {
			applied[i], quarantined[i] = s.applied, s.quarantined
		}
	}
	return applied, quarantined
}

// latencies returns the recent confirmation latencies (seconds), sorted.
func (w *liveWindow) latencies() []float64 {
	w.mu.Lock()
	n := min(w.latN, latencyWindow)
	out := slices.Clone(w.lat[:n])
	w.mu.Unlock()
	slices.Sort(out)
	return out
}

// lastContact is when a verified event of term last reached clearing.
func (w *liveWindow) lastContact(term string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.contact[term]
	return t, ok
}

// DashboardView is everything the live dashboard shows, in one response.
type DashboardView struct {
	// At is when the view was taken.
	At       time.Time `json:"at"`
	Currency string    `json:"currency"`
	Contract string    `json:"contract"`
	// Ready is what /readyz says; NotReady names what is not ready.
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
	// Stats are clearing's running totals since start, with every
	// quarantine reason present (0 for those never seen).
	Stats Stats `json:"stats"`
	// Quarantine is every quarantine reason with its count since start.
	Quarantine []ReasonCount `json:"quarantine"`
	TapRate    TapRateView   `json:"tap_rate"`
	Latency    LatencyView   `json:"confirmation_latency"`
	// ConsumerPending is the consumer's lag: events in the stream not yet
	// delivered to clearing.
	ConsumerPending  uint64 `json:"consumer_pending"`
	TerminalsWithGap int    `json:"terminals_with_gap"`
	// Operators are the operators' positions.
	Operators []PositionView `json:"operators"`
	// Batches are the most recent settlement batches, newest first, with
	// their commit and the operators' on-chain answers.
	Batches []BatchView `json:"batches"`
	// Terminals are the registered terminals, those with a gap first, at
	// most 200 of TerminalsTotal.
	Terminals      []DashboardTerminal `json:"terminals"`
	TerminalsTotal int                 `json:"terminals_total"`
	// VerifierPartitions are the verifier partitions' consumers (absent
	// when clearing verifies every event itself).
	VerifierPartitions []PartitionView `json:"verifier_partitions,omitempty"`
}

// ReasonCount is how many messages were quarantined for one reason.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
}

// TapRateView is the recent tap rate: events applied (and quarantined) in
// each of the last WindowSeconds whole seconds, oldest first.
type TapRateView struct {
	WindowSeconds int      `json:"window_seconds"`
	Applied       []uint64 `json:"applied"`
	Quarantined   []uint64 `json:"quarantined"`
	// PerSecond is the mean applied rate over the window.
	PerSecond float64 `json:"per_second"`
	// LastSecond is the rate over the last whole second.
	LastSecond uint64 `json:"last_second"`
}

// LatencyView is the confirmation latency (a tap's device time to its
// event durably applied) over the last Samples applied events, in
// milliseconds; the quantiles are 0 without samples.
type LatencyView struct {
	Samples int     `json:"samples"`
	P50Ms   float64 `json:"p50_ms"`
	P90Ms   float64 `json:"p90_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// PositionView is an operator's position: revenue credited in clearing's
// journal, and what the contract holds for it over the committed batches.
type PositionView struct {
	Operator  string `json:"operator"`
	Name      string `json:"name"`
	Terminals int    `json:"terminals"`
	// Position is the operator's journal balance (every applied event).
	Position Money `json:"position"`
	// OnChain is its cumulative net over the committed batches, as the
	// contract keeps it; omitted when the ledger did not answer.
	OnChain *Money `json:"on_chain,omitempty"`
}

// DashboardTerminal is a terminal with clearing's view of its stream and
// when clearing last heard from it.
type DashboardTerminal struct {
	TerminalView
	// LastContact is when a verified event of the terminal last reached
	// clearing (applied, resent or rejected); omitted when none has since
	// clearing started.
	LastContact *time.Time `json:"last_contact,omitempty"`
}

// dashboard serves GET /v1/dashboard.
func (a *API) dashboard(w http.ResponseWriter, r *http.Request) {
	v, err := a.dashboardView(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, v)
}

func (a *API) dashboardView(ctx context.Context) (*DashboardView, error) {
	c := a.c
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	now := time.Now()
	v := &DashboardView{At: a.zoned(now), Currency: c.cfg.Registry.Currency, Contract: c.cfg.Ledger.ContractAddress().Hex(), Stats: c.Stats()}
	if err := c.Ready(ctx); err != nil {
		v.NotReady = err.Error()
	} else {
		v.Ready = true
	}
	for _, reason := range quarantineReasons {
		if _, ok := v.Stats.QuarantineByWhy[reason]; !ok {
			v.Stats.QuarantineByWhy[reason] = 0
		}
	}
	for _, reason := range sortedReasons(v.Stats.QuarantineByWhy) {
		v.Quarantine = append(v.Quarantine, ReasonCount{Reason: reason, Count: v.Stats.QuarantineByWhy[reason]})
	}
	m := c.metrics
	if m == nil { // not opened by Open: nothing recorded
		m = newMetrics(nil)
	}
	v.TapRate = TapRateView{WindowSeconds: rateWindow}
	v.TapRate.Applied, v.TapRate.Quarantined = m.live.rates(now)
	var sum uint64
	for _, n := range v.TapRate.Applied {
		sum += n
	}
	v.TapRate.PerSecond = float64(sum) / rateWindow
	v.TapRate.LastSecond = v.TapRate.Applied[rateWindow-1]
	if lat := m.live.latencies(); len(lat) > 0 {
		q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] * 1000 }
		v.Latency = LatencyView{Samples: len(lat), P50Ms: q(0.50), P90Ms: q(0.90), P99Ms: q(0.99), MaxMs: lat[len(lat)-1] * 1000}
	}
	v.ConsumerPending = m.pendingNow.Load()
	v.VerifierPartitions = c.VerifierPartitions(ctx)

	var cr chainReads
	v.Operators = []PositionView{}
	for _, id := range c.cfg.Registry.OperatorIDs() {
		op, _ := c.cfg.Registry.Operator(id)
		b, err := c.store.Balance(OperatorAccount(id))
		if err != nil {
			return nil, fmt.Errorf("dashboard: operator %s: %w", id, err)
		}
		p := PositionView{Operator: id, Name: op.Name, Terminals: c.terminals.Active(id), Position: a.money(b.Net())}
		if cr.down == nil {
			rctx, cancel := context.WithTimeout(ctx, chainReadTimeout)
			net, err := c.cfg.Ledger.OperatorBalance(rctx, id)
			cancel()
			if err != nil {
				cr.down = fmt.Errorf("operator %s's balance on chain: %w", id, err)
			} else {
				on := a.money(fare.Amount(net))
				p.OnChain = &on
			}
		}
		v.Operators = append(v.Operators, p)
	}

	recs, err := c.store.lastBatches(dashboardBatches)
	if err != nil {
		return nil, fmt.Errorf("dashboard: batches: %w", err)
	}
	v.Batches = []BatchView{}
	for _, b := range recs {
		bv, err := a.batchView(ctx, b, &cr)
		if err != nil {
			return nil, fmt.Errorf("dashboard: %w", err)
		}
		v.Batches = append(v.Batches, bv)
	}

	all := c.terminals.All()
	v.TerminalsTotal = len(all)
	terms := make([]DashboardTerminal, 0, len(all))
	c.wmMu.RLock()
	for _, t := range all {
		wm, hi := c.watermarks[t.ID], c.highest[t.ID]
		terms = append(terms, DashboardTerminal{TerminalView: TerminalView{ID: t.ID, Operator: t.Operator, Stop: t.Stop,
			PublicKey: fmt.Sprintf("0x%x", []byte(t.PublicKey)), KeyProof: fmt.Sprintf("0x%x", t.KeyProof), Watermark: wm, Highest: max(hi, wm), Gap: hi > wm,
			RegisteredBlock: t.RegisteredBlock, RevokedBlock: t.RevokedBlock}})
	}
	c.wmMu.RUnlock()
	for i := range terms {
		if terms[i].Gap {
			v.TerminalsWithGap++
		}
		if at, ok := m.live.lastContact(terms[i].ID); ok {
			at = a.zoned(at)
			terms[i].LastContact = &at
		}
	}
	sort.SliceStable(terms, func(i, j int) bool {
		if terms[i].Gap != terms[j].Gap {
			return terms[i].Gap
		}
		return terms[i].ID < terms[j].ID
	})
	v.Terminals = terms[:min(len(terms), dashboardTerminals)]
	return v, nil
}

func sortedReasons(m map[string]uint64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// lastBatches returns the n most recent sealed batches, newest first.
func (s *Store) lastBatches(n int) ([]*BatchRecord, error) {
	var out []*BatchRecord
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pBatch}, Reverse: true})
		defer it.Close()
		for it.Seek(keyU64(pBatch, ^uint64(0))); it.Valid() && len(out) < n; it.Next() {
			var r BatchRecord
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
				return fmt.Errorf("batch %d: %w", u64(it.Item().Key()[1:]), err)
			}
			out = append(out, &r)
		}
		return nil
	})
	return out, err
}
