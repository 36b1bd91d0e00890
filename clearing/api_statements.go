package clearing

import (
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/fare"
)

// Revenue statements: every applied event of a settlement batch that posted
// to one operator, with that operator's apportioned share (negative for a
// credit: a later discount, a corrected maximum fare), and the totals,
// which are the batch's net for the operator (BatchRecord.Amounts, the
// amount committed on chain). Served as JSON or CSV.

// StatementView is one operator's revenue statement for one batch.
type StatementView struct {
	Batch       uint64 `json:"batch"`
	Operator    string `json:"operator"`
	PeriodStart string `json:"period_start"`
	PeriodEnd   string `json:"period_end"`
	// Root is the batch's Merkle root; Committed and TxHash say whether
	// and where it is on the ledger.
	Root      string `json:"root"`
	Committed bool   `json:"committed"`
	TxHash    string `json:"tx_hash,omitempty"`
	// Entries are the events that posted a non-zero share to the operator,
	// in apply order; Count counts them. ZeroShares counts the events of
	// the operator's terminals that posted it nothing (an entry waiting for
	// its exit, a denied tap, a flat-fare exit); Unpriced lists the events
	// posting to the operator that the fare feed could not price (revenue
	// to review: the feed does not know the tap's stop, route or network,
	// or has no fare for its journey), each with why; one whose journey's
	// fare is unknown may also be an entry, crediting back what the
	// journey's earlier taps were charged.
	Entries    []StatementEntry `json:"entries"`
	Count      int              `json:"count"`
	ZeroShares int              `json:"zero_share_events"`
	Unpriced   []UnpricedEvent  `json:"unpriced_events"`
	// Charges sums the positive shares, Credits the negative ones; Total
	// is their sum, the operator's net for the batch.
	Charges Money `json:"charges"`
	Credits Money `json:"credits"`
	Total   Money `json:"total"`
	// BatchNet is the operator's net as the sealed batch records it;
	// OnChainNet as the ledger holds it (once committed; OnChainError says
	// why it could not be read). Reconciled is true when Total equals
	// both.
	BatchNet     Money  `json:"batch_net"`
	OnChainNet   *Money `json:"on_chain_net,omitempty"`
	OnChainError string `json:"on_chain_error,omitempty"`
	Reconciled   bool   `json:"reconciled"`
}

// StatementEntry is one event's posting to the statement's operator.
type StatementEntry struct {
	ApplyIndex uint64 `json:"apply_index"`
	// Event is the event id (32 hex digits, see /v1/events/{id}); Leaf its
	// Merkle leaf value in the batch.
	Event string `json:"event"`
	Leaf  string `json:"leaf"`
	// Terminal and TerminalOperator took the tap: a transfer's later leg
	// may be another operator's terminal posting a share to this one.
	Terminal         string `json:"terminal"`
	TerminalOperator string `json:"terminal_operator"`
	Stop             string `json:"stop"`
	Direction        string `json:"direction"`
	// Time is the tap's device time (RFC 3339 with its fraction, the feed's
	// agency timezone; UTC without a feed), as the batch's event list shows
	// it, so the two join on time as well as on event id. Another
	// operator's tap is shown to the second, as its event is.
	Time string `json:"time"`
	// Rider is the pseudonymous journal account (passenger/<media>/0x...).
	Rider string `json:"rider"`
	// Share is what the event posted to the operator.
	Share Money `json:"share"`
}

// statementWriteTimeout bounds writing one statement.
const statementWriteTimeout = 30 * time.Minute

// statementCSVHeader are the CSV columns. Rows of record "entry" are the
// entries; "unpriced" rows the events the feed could not price (note: why);
// then the JSON's totals, one row each with the share columns: "charges",
// "credits", "total", "batch_net", "on_chain_net" (once read from the
// chain; note: on_chain_error instead when it could not be), and the
// counts and checks in note: "zero_share_events", "reconciled"; then
// what ties the file to the chain, in note: "period" (start/end, an ISO
// 8601 interval), "root", "committed" and, once committed, "tx_hash". A
// CSV-only reconciler has all the JSON says.
var statementCSVHeader = []string{"record", "batch", "operator", "apply_index", "event", "leaf", "terminal", "terminal_operator",
	"stop", "direction", "time", "rider", "share_minor", "share_decimal", "currency", "note"}

// wantsCSV decides the statement's format: ?format=csv|json, else CSV
// when the Accept header asks for text/csv.
func wantsCSV(r *http.Request) (bool, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "csv":
		return true, nil
	case "json":
		return false, nil
	case "":
	default:
		return false, fmt.Errorf("format %q: want json or csv (or send Accept: text/csv)", f)
	}
	// Content negotiation (RFC 9110 12.5.1): CSV when the client rates
	// text/csv above JSON (application/json, or what */* or application/*
	// give it); at equal weight, JSON, the API's default.
	csvQ, jsonQ := -1.0, -1.0
	specific := map[string]bool{}
	for _, part := range strings.Split(strings.Join(r.Header.Values("Accept"), ","), ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(v, 64); err != nil || q < 0 || q > 1 {
				continue
			}
		}
		switch mt {
		case "text/csv":
			csvQ, specific["csv"] = q, true
		case "application/json":
			jsonQ, specific["json"] = q, true
		case "text/*":
			if !specific["csv"] {
				csvQ = max(csvQ, q)
			}
		case "application/*", "*/*":
			if !specific["json"] {
				jsonQ = max(jsonQ, q)
			}
		}
	}
	return csvQ > 0 && csvQ > jsonQ, nil
}

// UnpricedEvent is an accepted tap the fare feed could not price, to
// review: its journey has no fare in the feed and is charged leg by leg
// where the feed knows a leg's fare (its own alone, else its entry's
// maximum fare), else nothing (the tap may then credit back its journey's
// earlier charges).
type UnpricedEvent struct {
	ApplyIndex uint64 `json:"apply_index"`
	Event      string `json:"event"`
	Reason     string `json:"reason"`
}

// statementRow is what the store gives of one posting.
type statementRow struct {
	index  uint64
	digest [32]byte
	event  *fare.Event
	share  fare.Amount
}

// operatorPostings returns, in apply order, the applied events with apply
// index in [from, to) that posted a non-zero amount to op, how many of
// op's own terminals' events posted it nothing, and which of those the
// feed could not price.
func (s *Store) operatorPostings(from, to uint64, op string) (rows []statementRow, zero int, unpriced []UnpricedEvent, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 1000, Prefix: []byte{pApplied}})
		defer it.Close()
		next := from
		for it.Seek(keyU64(pApplied, from)); it.Valid(); it.Next() {
			idx := u64(it.Item().Key()[1:])
			if idx >= to {
				break
			}
			if idx != next {
				return fmt.Errorf("apply index %d missing", next)
			}
			next++
			var a appliedEntry
			if err := it.Item().Value(func(v []byte) error {
				var err error
				a, err = parseApplied(v)
				return err
			}); err != nil {
				return fmt.Errorf("apply index %d: %w", idx, err)
			}
			var share fare.Amount
			posted := false
			for _, p := range a.postings {
				if p.Operator == op {
					share += p.Amount
					posted = true
				}
			}
			if !posted {
				continue
			}
			rec, sig, err := appliedEvent(txn, a.id)
			if err != nil {
				return fmt.Errorf("apply index %d: %w", idx, err)
			}
			if rec.Unpriced != "" {
				unpriced = append(unpriced, UnpricedEvent{ApplyIndex: idx, Event: a.id.String(), Reason: rec.Unpriced})
			}
			if share == 0 {
				zero++
				continue
			}
			rows = append(rows, statementRow{index: idx, digest: a.digest, event: &sig.Event, share: share})
		}
		if next != to {
			return fmt.Errorf("applied events [%d,%d): found %d", from, to, next-from)
		}
		return nil
	})
	return rows, zero, unpriced, err
}

// statement serves GET /v1/batches/{id}/statements/{operator} (JSON, or
// CSV with ?format=csv or Accept: text/csv).
func (a *API) statement(w http.ResponseWriter, r *http.Request) {
	// A statement is not paged: a large batch's takes longer to write
	// than the server's deadline for other answers, and one cut short
	// would lose its summary rows (written last).
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(statementWriteTimeout))
	asCSV, err := wantsCSV(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	id, err := batchIDParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	op := r.PathValue("operator")
	if err := fare.ValidateID(op); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("operator id %q: %w", fares.ShortValue(op), err))
		return
	}
	b, err := a.c.store.Batch(id)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	v, err := a.statementView(r, b, op)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	if !asCSV {
		w.Header().Set("Vary", "Accept")
		writeJSON(w, http.StatusOK, v)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="batch-%d-%s.csv"`, v.Batch, v.Operator))
	w.Header().Set("Vary", "Accept")
	w.WriteHeader(http.StatusOK)
	cw := newCSVWriter(w)
	batch := strconv.FormatUint(v.Batch, 10)
	_ = cw.Write(statementCSVHeader)
	for _, e := range v.Entries {
		_ = cw.Write([]string{"entry", batch, v.Operator, strconv.FormatUint(e.ApplyIndex, 10), e.Event, e.Leaf, e.Terminal, e.TerminalOperator,
			e.Stop, e.Direction, e.Time, e.Rider, strconv.FormatInt(e.Share.Minor, 10), e.Share.Decimal, e.Share.Currency, ""})
	}
	zero := a.money(0)
	for _, u := range v.Unpriced {
		_ = cw.Write([]string{"unpriced", batch, v.Operator, strconv.FormatUint(u.ApplyIndex, 10), u.Event, "", "", "", "", "", "", "",
			strconv.FormatInt(zero.Minor, 10), zero.Decimal, zero.Currency, u.Reason})
	}
	sum := func(record string, m *Money, note string) {
		row := []string{record, batch, v.Operator, "", "", "", "", "", "", "", "", "", "", "", "", note}
		if m != nil {
			row[12], row[13], row[14] = strconv.FormatInt(m.Minor, 10), m.Decimal, m.Currency
		}
		_ = cw.Write(row)
	}
	sum("charges", &v.Charges, "")
	sum("credits", &v.Credits, "")
	sum("total", &v.Total, "")
	sum("batch_net", &v.BatchNet, "")
	switch {
	case v.OnChainNet != nil:
		sum("on_chain_net", v.OnChainNet, "")
	case v.OnChainError != "":
		sum("on_chain_net", nil, v.OnChainError)
	}
	sum("zero_share_events", nil, strconv.Itoa(v.ZeroShares))
	sum("reconciled", nil, strconv.FormatBool(v.Reconciled))
	// What ties the file to the chain, for a back office that imports the
	// CSV alone.
	sum("period", nil, v.PeriodStart+"/"+v.PeriodEnd)
	sum("root", nil, v.Root)
	sum("committed", nil, strconv.FormatBool(v.Committed))
	if v.TxHash != "" {
		sum("tx_hash", nil, v.TxHash)
	}
	cw.Flush()
}

// statementView builds op's statement of batch b. An operator neither in
// the registry nor in the batch's nets is not found.
func (a *API) statementView(r *http.Request, b *BatchRecord, op string) (*StatementView, error) {
	var net fare.Amount
	inBatch := false
	for _, am := range b.Amounts {
		if am.Operator == op {
			net, inBatch = fare.Amount(am.Net), true
		}
	}
	if _, known := a.c.cfg.Registry.Operator(op); !known && !inBatch {
		return nil, fmt.Errorf("operator %q: not in the registry and no postings in batch %d: %w", op, b.ID, ErrNotFound)
	}
	rows, zero, unpriced, err := a.c.store.operatorPostings(b.StartIndex, b.EndIndex, op)
	if err != nil {
		return nil, fmt.Errorf("statement of %s in batch %d: %w", op, b.ID, err)
	}
	v := &StatementView{
		Batch: b.ID, Operator: op, PeriodStart: a.localTime(b.PeriodStart), PeriodEnd: a.localTime(b.PeriodEnd),
		Root: "0x" + hex.EncodeToString(b.Root[:]), Entries: make([]StatementEntry, 0, len(rows)), Count: len(rows), ZeroShares: zero, Unpriced: append([]UnpricedEvent{}, unpriced...),
		BatchNet: a.money(net),
	}
	var charges, credits fare.Amount
	for _, row := range rows {
		e := row.event
		at := e.DeviceTime
		if e.Operator != op {
			at = at.Truncate(time.Second)
		}
		v.Entries = append(v.Entries, StatementEntry{
			ApplyIndex: row.index, Event: e.ID.String(), Leaf: "0x" + hex.EncodeToString(row.digest[:]),
			Terminal: e.Terminal, TerminalOperator: e.Operator, Stop: e.Stop, Direction: e.Direction.String(),
			Time: a.localTime(at), Rider: a.c.RiderAccount(e.Media, e.MediaToken), Share: a.money(row.share),
		})
		if row.share > 0 {
			charges += row.share
		} else {
			credits += row.share
		}
	}
	v.Charges, v.Credits, v.Total = a.money(charges), a.money(credits), a.money(charges+credits)
	v.Reconciled = charges+credits == net
	c, err := a.c.store.Commit(b.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		return v, nil
	case err != nil:
		return nil, err
	}
	v.Committed = true
	if c.TxHash != ([32]byte{}) {
		v.TxHash = "0x" + hex.EncodeToString(c.TxHash[:])
	}
	onChain, err := a.c.cfg.Ledger.Batch(r.Context(), b.ID)
	if err != nil {
		v.OnChainError = fmt.Sprintf("read batch %d from the ledger: %v", b.ID, err)
		return v, nil
	}
	var chainNet fare.Amount
	for _, am := range onChain.Amounts {
		if am.Operator == op {
			chainNet = fare.Amount(am.Net)
		}
	}
	m := a.money(chainNet)
	v.OnChainNet = &m
	v.Reconciled = v.Reconciled && chainNet == net
	return v, nil
}
