package clearing

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger/merkle"
)

// API is the settlement API operators reconcile through. Every response is
// JSON; errors are {"error": "..."} with a 4xx or 5xx status.
type API struct {
	c        *Clearing
	mux      *http.ServeMux
	gatherer prometheus.Gatherer
}

// NewAPI builds the settlement API over a running clearing house. gatherer
// (may be nil) serves /metrics.
func NewAPI(c *Clearing, gatherer prometheus.Gatherer) *API {
	a := &API{c: c, mux: http.NewServeMux(), gatherer: gatherer}
	a.mux.HandleFunc("GET /v1/operators", a.operators)
	a.mux.HandleFunc("GET /v1/operators/{id}", a.operator)
	a.mux.HandleFunc("GET /v1/balances", a.balances)
	a.mux.HandleFunc("GET /v1/accounts/{account...}", a.account)
	a.mux.HandleFunc("GET /v1/batches", a.batches)
	a.mux.HandleFunc("GET /v1/batches/{id}", a.batch)
	a.mux.HandleFunc("GET /v1/events/{id}", a.event)
	a.mux.HandleFunc("GET /v1/terminals", a.terminals)
	a.mux.HandleFunc("GET /v1/stats", a.stats)
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	if gatherer != nil {
		a.mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s (see the README's settlement API section)", r.Method, r.URL.Path))
	})
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Money is an amount in minor units with its decimal rendering.
type Money struct {
	Minor    int64  `json:"minor"`
	Decimal  string `json:"decimal"`
	Currency string `json:"currency"`
}

func (a *API) money(v fare.Amount) Money {
	cur := a.c.cfg.Registry.Currency
	return Money{Minor: int64(v), Decimal: v.Format(cur), Currency: cur}
}

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
		return OperatorView{}, fmt.Errorf("operator %q: %w", id, ErrNotFound)
	}
	b, err := a.c.store.Balance(OperatorAccount(id))
	if err != nil {
		return OperatorView{}, err
	}
	n := a.c.terminals.Active(id)
	return OperatorView{ID: op.ID, Name: op.Name, FlatFare: a.money(op.FlatFare), Account: b.Account, Balance: a.money(b.Net()), Terminals: n}, nil
}

func (a *API) operators(w http.ResponseWriter, r *http.Request) {
	var out []OperatorView
	for _, id := range a.c.cfg.Registry.OperatorIDs() {
		v, err := a.operatorView(id)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"operators": out})
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
	bs, err := a.c.store.Balances(q.Get("prefix"), q.Get("after"), limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	out := make([]BalanceView, len(bs))
	var total fare.Amount
	for i, b := range bs {
		out[i] = a.balanceView(b)
		total += b.Net()
	}
	resp := map[string]any{"balances": out, "page_total": a.money(total)}
	if len(bs) == limit {
		resp["next_after"] = bs[len(bs)-1].Account
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) account(w http.ResponseWriter, r *http.Request) {
	acct := r.PathValue("account")
	if !strings.HasPrefix(acct, "operator/") && !strings.HasPrefix(acct, "passenger/") {
		writeError(w, http.StatusBadRequest, fmt.Errorf("account %q: names start with operator/ or passenger/", acct))
		return
	}
	b, err := a.c.store.Balance(acct)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
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
}

func (a *API) batchView(b *BatchRecord) (BatchView, error) {
	v := BatchView{ID: b.ID, PeriodStart: b.PeriodStart, PeriodEnd: b.PeriodEnd, EventCount: b.EventCount,
		Root: "0x" + hex.EncodeToString(b.Root[:]), Contract: a.c.cfg.Ledger.ContractAddress().Hex()}
	for _, am := range b.Amounts {
		v.Amounts = append(v.Amounts, OperatorNetView{Operator: am.Operator, Net: a.money(fare.Amount(am.Net))})
	}
	c, err := a.c.store.Commit(b.ID)
	switch {
	case err == nil:
		v.Committed = true
		v.Commit = &CommitRecordView{BlockNumber: c.BlockNumber, GasUsed: c.GasUsed, At: c.At}
		if c.TxHash != ([32]byte{}) {
			v.Commit.TxHash = "0x" + hex.EncodeToString(c.TxHash[:])
		}
	case !errors.Is(err, ErrNotFound):
		return v, err
	}
	return v, nil
}

func (a *API) batches(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err := intParam(q.Get("from"), 1, 1, 1<<62)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("from: %w", err))
		return
	}
	limit, err := intParam(q.Get("limit"), 100, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %w", err))
		return
	}
	bs, err := a.c.store.Batches(uint64(from), limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	out := make([]BatchView, 0, len(bs))
	for _, b := range bs {
		v, err := a.batchView(b)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"batches": out})
}

func (a *API) batch(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("batch id %q: want a positive integer", r.PathValue("id")))
		return
	}
	b, err := a.c.store.Batch(id)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	v, err := a.batchView(b)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// EventFields are a fare event's decoded fields as JSON shows them (the API
// and `faregate ledger prove`).
type EventFields struct {
	ID            string    `json:"id"`
	Terminal      string    `json:"terminal"`
	Operator      string    `json:"operator"`
	Stop          string    `json:"stop"`
	Gate          string    `json:"gate"`
	Direction     string    `json:"direction"`
	Media         string    `json:"media"`
	MediaToken    string    `json:"media_token"`
	RiderCategory string    `json:"rider_category,omitempty"`
	DeviceTime    time.Time `json:"device_time"`
	Decision      string    `json:"decision"`
	Reason        string    `json:"reason,omitempty"`
	Sequence      uint64    `json:"sequence"`
}

// NewEventFields returns e's fields for display.
func NewEventFields(e *fare.Event) EventFields {
	return EventFields{
		ID: e.ID.String(), Terminal: e.Terminal, Operator: e.Operator, Stop: e.Stop, Gate: e.Gate,
		Direction: e.Direction.String(), Media: e.Media.String(), MediaToken: e.MediaToken,
		RiderCategory: e.RiderCategory, DeviceTime: e.DeviceTime, Decision: e.Decision.String(),
		Reason: e.Reason, Sequence: e.Sequence,
	}
}

// EventView is one applied event with its inclusion proof.
type EventView struct {
	EventFields
	Fare      Money     `json:"fare"`
	AppliedAt time.Time `json:"applied_at"`
	// Signed is the terminal-signed encoding (hex): anyone with the
	// registry can check Signature against the terminal's public key.
	Signed string `json:"signed"`
	// Leaf is the Merkle leaf value: sha256 of Signed.
	Leaf  string     `json:"leaf"`
	Proof *ProofView `json:"proof"`
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
	leaf := s.Digest()
	v := EventView{
		EventFields: NewEventFields(&e), Fare: a.money(rec.Fare), AppliedAt: rec.AppliedAt,
		Signed: hex.EncodeToString(rec.Raw), Leaf: "0x" + hex.EncodeToString(leaf[:]),
	}
	switch {
	case err == nil:
		pv := &ProofView{BatchID: proof.BatchID, Root: "0x" + hex.EncodeToString(proof.Root[:]), Verified: merkle.Verify(proof.Root, proof.Leaf, proof.Path)}
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
	ID        string `json:"id"`
	Operator  string `json:"operator"`
	Stop      string `json:"stop"`
	PublicKey string `json:"public_key"`
	Watermark uint64 `json:"watermark"`
	Highest   uint64 `json:"highest_sequence"`
	// Gap is true when clearing holds sequences above a missing one.
	Gap bool `json:"gap"`
	// RegisteredBlock and RevokedBlock are the on-chain registry's blocks;
	// RevokedBlock is omitted while the terminal is valid.
	RegisteredBlock uint64 `json:"registered_block"`
	RevokedBlock    uint64 `json:"revoked_block,omitempty"`
}

func (a *API) terminals(w http.ResponseWriter, r *http.Request) {
	all := a.c.terminals.All()
	out := make([]TerminalView, 0, len(all))
	for _, t := range all {
		hi, err := a.c.store.HighestSequence(t.ID)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		wm := a.c.TerminalWatermark(t.ID)
		out = append(out, TerminalView{ID: t.ID, Operator: t.Operator, Stop: t.Stop, PublicKey: EncodePublicKey(t.PublicKey),
			Watermark: wm, Highest: hi, Gap: hi > wm, RegisteredBlock: t.RegisteredBlock, RevokedBlock: t.RevokedBlock})
	}
	writeJSON(w, http.StatusOK, map[string]any{"terminals": out})
}

func (a *API) stats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.c.Stats())
}

func intParam(s string, def, lo, hi int64) (int, error) {
	if s == "" {
		return int(def), nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
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

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
