package clearing

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/fare/storecheck"
	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/ledger/merkle"
)

// ErrNoStore is OpenStoreReadOnly's error for a directory that holds no
// store: a mistyped --data, not a store a running clearing holds.
var ErrNoStore = errors.New("no Badger store there (no MANIFEST)")

// OpenStoreReadOnly opens an existing clearing store for an audit or a
// proof. It refuses a directory that holds no Badger store (so a mistyped
// path is an error, not a new empty store) and a store a running clearing
// house holds. Badger cannot open read-only a store whose write-ahead log
// still needs replaying, which is the state kill -9 leaves; such a store is
// opened read-write instead, which replays the log exactly as clearing's own
// restart would and changes nothing else.
func OpenStoreReadOnly(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open clearing store %s: %w", dir, ErrNoStore)
		}
		return nil, fmt.Errorf("open clearing store %s: %w", dir, err)
	}
	if err := checkStoreTables(dir, true); err != nil {
		return nil, err
	}
	opts := badger.DefaultOptions(dir).
		WithReadOnly(true).
		WithLogger(badgerLogger{log}).
		WithNumVersionsToKeep(1).
		WithChecksumVerificationMode(options.OnBlockRead)
	if empty := storecheck.EmptyLogs(dir); len(empty) > 0 {
		// Log files made and never written (a power cut right after):
		// a read-only open fails on them; the read-write open removes
		// them (an outside test's audit failed on one).
		log.Warn("clearing store holds log files created and never written; opening it read-write, which removes them, before the audit", "dir", dir, "files", empty)
		return OpenStore(dir, log)
	}
	db, err := badger.Open(opts)
	// Badger wraps this error with %+v, so errors.Is cannot see it.
	if err != nil && (errors.Is(err, badger.ErrTruncateNeeded) || strings.Contains(err.Error(), badger.ErrTruncateNeeded.Error())) {
		log.Warn("clearing store was not closed cleanly; replaying its log read-write before the audit", "dir", dir)
		return OpenStore(dir, log)
	}
	if err != nil {
		return nil, fmt.Errorf("open clearing store %s read-only: %w", dir, err)
	}
	return &Store{db: db, log: log}, nil
}

// AuditOptions tunes Store.Audit.
type AuditOptions struct {
	// Terminals, if set, is the terminal registry every stored event's
	// signature, terminal, operator and stop are checked against: normally
	// the chain's (NewChainTerminals, synced).
	Terminals TerminalKeys
	// MaxEventFindings caps the per-event findings listed for one batch; the
	// rest are counted in one more finding. Default 10.
	MaxEventFindings int
	// Currency, if set, is the registry's: amounts in findings are shown
	// as money (minor units, decimal, currency) rather than bare minor units.
	Currency string
	// Operators, beside those with a net in a batch, are the operators
	// whose on-chain answers to each committed batch are read (the
	// registry's: any operator may answer any batch).
	Operators []string
}

// AuditDispute is an operator's dispute of a committed batch on chain.
type AuditDispute struct {
	BatchID    uint64 `json:"batch_id"`
	Operator   string `json:"operator"`
	ReasonHash string `json:"reason_hash"`
}

// Mismatch is one disagreement an audit found. Events is the value
// recomputed from the stored events, Record what the store's sealed batch
// record (or commit record) says, Chain what the ledger says; a field that
// does not apply is empty. BatchID is 0 for store-wide findings.
type Mismatch struct {
	BatchID uint64 `json:"batch_id"`
	Field   string `json:"field"`
	Events  string `json:"events,omitempty"`
	Record  string `json:"record,omitempty"`
	Chain   string `json:"chain,omitempty"`
	Detail  string `json:"detail,omitempty"`
	// Amounts are the values of a mismatch about money, as money (the
	// strings above show them as text); nil for any other.
	Amounts *MismatchAmounts `json:"amounts,omitempty"`
}

// MismatchAmounts are a money mismatch's values: what the events, the
// store's record and the chain say (each nil where that side has none).
type MismatchAmounts struct {
	Events *Money `json:"events,omitempty"`
	Record *Money `json:"record,omitempty"`
	Chain  *Money `json:"chain,omitempty"`
}

// amountsOf gives a money mismatch its amounts in currency (nil without
// one); a nil value is a side without one.
func amountsOf(currency string, events, record, chain *int64) *MismatchAmounts {
	if currency == "" {
		return nil
	}
	m := func(v *int64) *Money {
		if v == nil {
			return nil
		}
		money := MoneyOf(fare.Amount(*v), currency)
		return &money
	}
	return &MismatchAmounts{Events: m(events), Record: m(record), Chain: m(chain)}
}

// netOf is op's net in m, nil when m has none.
func netOf(m map[string]int64, op string) *int64 {
	if v, ok := m[op]; ok {
		return &v
	}
	return nil
}

// String renders the mismatch on one line.
func (m Mismatch) String() string {
	var b strings.Builder
	if m.BatchID != 0 {
		fmt.Fprintf(&b, "batch %d: ", m.BatchID)
	}
	b.WriteString(m.Field)
	for _, kv := range [][2]string{{"events", m.Events}, {"store record", m.Record}, {"chain", m.Chain}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "; %s %s", kv[0], kv[1])
		}
	}
	if m.Detail != "" {
		b.WriteString("; " + m.Detail)
	}
	return b.String()
}

// Batch states in an AuditReport.
const (
	// BatchOK: the sealed record, the events and the chain agree.
	BatchOK = "ok"
	// BatchPending: sealed in the store, not yet on chain, and no later batch
	// is on chain: clearing commits it on its next round. Not a mismatch.
	BatchPending = "pending"
	// BatchMismatch: at least one Mismatch names this batch.
	BatchMismatch = "mismatch"
	// BatchMissingInStore: on chain, but the store holds no such batch.
	BatchMissingInStore = "missing-in-store"
)

// AuditReport is the outcome of Store.Audit.
type AuditReport struct {
	// Batches lists every batch id found in the store or on chain, in order.
	Batches []BatchAudit `json:"batches"`
	// Mismatches lists every disagreement; the audit is clean when empty.
	Mismatches []Mismatch `json:"mismatches"`
	// Pending lists sealed batches not yet on chain (see BatchPending).
	Pending []uint64 `json:"pending,omitempty"`
	// Unrecorded lists batches on chain whose commit the store has not
	// recorded yet (a crash between the receipt and the record; clearing
	// records them on its next start). Not a mismatch.
	Unrecorded []uint64 `json:"unrecorded,omitempty"`
	// StoreBatches is the number of sealed batches in the store, ChainBatches
	// the number on chain (its next batch id minus one).
	StoreBatches int    `json:"store_batches"`
	ChainBatches uint64 `json:"chain_batches"`
	// EventsChecked counts the batched events re-read and re-hashed;
	// OpenEvents the applied events in the still open period.
	EventsChecked uint64 `json:"events_checked"`
	OpenEvents    uint64 `json:"open_events"`
	// ProofsChecked counts batches whose first event was proven through the
	// contract's verify view.
	ProofsChecked int `json:"proofs_checked"`
	// SignaturesChecked counts events verified against AuditOptions.Terminals,
	// SignaturesFailed those whose signature did not verify (each also a
	// mismatch, though the listing of a batch's may be cut short).
	SignaturesChecked uint64 `json:"signatures_checked"`
	SignaturesFailed  uint64 `json:"signatures_failed"`
	// BalancesChecked says whether the contract's cumulative per-operator
	// balances were compared with the sum of the batches' nets (the ledger
	// must offer OperatorBalance).
	BalancesChecked bool `json:"balances_checked"`
	// GapsChecked says whether every terminal's recorded sequences were
	// checked for gaps (a missing sequence below a recorded one is a
	// mismatch naming the terminal and the sequences).
	GapsChecked bool `json:"gaps_checked"`
	// Journal is the journal audit (Store.AuditJournal).
	Journal Audit `json:"journal"`
	// Payments is the audit of riders' payments (Store.AuditPayments).
	Payments PaymentsAudit `json:"payments"`
	// AnswersChecked says whether the operators' answers were read (the
	// ledger must offer them); Acknowledged counts acknowledgements and
	// Disputes lists disputes, with their reason hashes. Answers are the
	// operators' word on a batch, not findings of the audit: a dispute
	// does not make it unclean.
	AnswersChecked bool           `json:"answers_checked"`
	Acknowledged   int            `json:"acknowledged"`
	Disputes       []AuditDispute `json:"disputes"`
}

// Clean reports whether the audit found no mismatch.
func (r *AuditReport) Clean() bool { return len(r.Mismatches) == 0 }

// BatchAudit is one batch in an audit: its roots as the sealed record, the
// recomputation from the stored events and the chain have them.
type BatchAudit struct {
	ID           uint64 `json:"id"`
	State        string `json:"state"`
	Events       uint64 `json:"events"`
	StoreRoot    string `json:"store_root"`
	ComputedRoot string `json:"computed_root"`
	ChainRoot    string `json:"chain_root"`
	// Problem joins the batch's mismatches; empty for a good batch. For a
	// pending batch it says so (AuditBatches' callers treat any Problem as a
	// failure, and after a final settlement nothing may be pending).
	Problem string `json:"problem,omitempty"`
}

// AuditBatches is Store.Audit reduced to one entry per sealed batch; kept
// for callers that only need per-batch verdicts.
func (s *Store) AuditBatches(ctx context.Context, l ledger.Ledger) ([]BatchAudit, error) {
	rep, err := s.Audit(ctx, l, AuditOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]BatchAudit, 0, len(rep.Batches))
	for _, b := range rep.Batches {
		if b.State == BatchPending {
			b.Problem = "not on chain (pending)"
		}
		out = append(out, b)
	}
	return out, nil
}

// operatorBalancer is implemented by ledgers that expose the contract's
// cumulative per-operator balance.
type operatorBalancer interface {
	OperatorBalance(ctx context.Context, operator string) (int64, error)
}

// Audit recomputes every sealed batch from the stored events (each event
// record's signed bytes are decoded and re-hashed; the per-batch leaf index
// and the sealed record are not trusted) and compares the resulting root,
// event count and per-operator nets with the sealed record, with the journal
// and with the chain. It also flags batches on chain that the store lacks,
// commit records for batches the chain lacks, gaps in batch ids and apply
// indexes, proves one event per batch through the contract's verify view,
// compares the contract's cumulative operator balances with the batches, and
// runs AuditJournal. Findings go to the report; an error means the audit
// could not run (store or chain unreadable).
func (s *Store) Audit(ctx context.Context, l ledger.Ledger, opt AuditOptions) (*AuditReport, error) {
	if opt.MaxEventFindings <= 0 {
		opt.MaxEventFindings = 10
	}
	rep := &AuditReport{Mismatches: []Mismatch{}}
	batches, err := s.Batches(1, 1<<30)
	if err != nil {
		return nil, fmt.Errorf("audit: read batches: %w", err)
	}
	rep.StoreBatches = len(batches)
	next, err := l.NextBatchID(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: read the ledger's next batch id: %w", err)
	}
	if next == 0 {
		return nil, errors.New("audit: ledger reports next batch id 0 (ids start at 1)")
	}
	rep.ChainBatches = next - 1
	journalNets, err := s.journalNetsByBatch(batches)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}

	chainTotals := make(map[string]int64)
	var prev *BatchRecord
	var maxID uint64
	for i, b := range batches {
		// Ids are dense from 1: a gap means the store lost a batch record.
		for want := maxID + 1; want < b.ID; want++ {
			ba := &BatchAudit{ID: want}
			m := Mismatch{BatchID: want, Field: "batch", Record: "missing", Detail: fmt.Sprintf("the store jumps from batch %d to %d", maxID, b.ID)}
			if want < next {
				onChain, err := l.Batch(ctx, want)
				if err != nil {
					return nil, fmt.Errorf("audit: read ledger batch %d: %w", want, err)
				}
				addNets(chainTotals, onChain.Amounts)
				ba.ChainRoot, ba.Events = hexRoot(onChain.Root), onChain.EventCount
				m.Chain = fmt.Sprintf("root %s, %d events", ba.ChainRoot, onChain.EventCount)
				rep.add(ba, m)
				addUnsealedNets(rep, ba, onChain, opt.Currency)
			} else {
				rep.add(ba, m)
			}
			ba.State = BatchMissingInStore
			rep.Batches = append(rep.Batches, *ba)
		}
		maxID = b.ID
		ba, err := s.auditBatch(ctx, l, rep, b, prev, next, journalNets[i], chainTotals, opt)
		if err != nil {
			return nil, err
		}
		rep.Batches = append(rep.Batches, *ba)
		prev = b
	}
	// Batches on chain beyond the store's last one.
	for id := maxID + 1; id < next; id++ {
		onChain, err := l.Batch(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("audit: read ledger batch %d: %w", id, err)
		}
		addNets(chainTotals, onChain.Amounts)
		ba := &BatchAudit{ID: id, State: BatchMissingInStore, Events: onChain.EventCount, ChainRoot: hexRoot(onChain.Root)}
		rep.add(ba, Mismatch{BatchID: id, Field: "batch", Record: "missing", Chain: fmt.Sprintf("root %s, %d events", hexRoot(onChain.Root), onChain.EventCount),
			Detail: "the chain holds a batch this store never sealed (the clearing house's key used by another process, wrong store, wrong contract, or a lost store)"})
		addUnsealedNets(rep, ba, onChain, opt.Currency)
		ba.State = BatchMissingInStore
		rep.Batches = append(rep.Batches, *ba)
	}
	nameRepeatedRoots(rep)
	if err := s.auditOpenPeriod(rep, prev); err != nil {
		return nil, err
	}
	if ob, ok := l.(operatorBalancer); ok {
		ops := make([]string, 0, len(chainTotals))
		for op := range chainTotals {
			ops = append(ops, op)
		}
		sort.Strings(ops)
		for _, op := range ops {
			bal, err := ob.OperatorBalance(ctx, op)
			if err != nil {
				return nil, fmt.Errorf("audit: read the contract's balance of operator %s: %w", op, err)
			}
			if bal != chainTotals[op] {
				rep.Mismatches = append(rep.Mismatches, Mismatch{Field: "cumulative balance of " + op,
					Chain: auditAmount(bal, opt.Currency), Detail: fmt.Sprintf("the chain's batches sum to %s", auditAmount(chainTotals[op], opt.Currency)),
					Amounts: amountsOf(opt.Currency, nil, nil, &bal)})
			}
		}
		rep.BalancesChecked = true
	}
	if err := auditAnswers(ctx, l, rep, batches, next, opt.Operators); err != nil {
		// The rest of the audit stands: the answers are one check of
		// many, and a slow node should not cost the whole report.
		rep.Mismatches = append(rep.Mismatches, Mismatch{Field: "operators' answers", Chain: "not read",
			Detail: fmt.Sprintf("the audit could not read who acknowledged or disputed each batch: %v", err)})
	}
	gaps, err := s.SequenceGaps()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	for _, g := range gaps {
		rep.Mismatches = append(rep.Mismatches, Mismatch{Field: "sequence gap of terminal " + g.Terminal,
			Detail: fmt.Sprintf("missing %d sequence(s): %s; clearing holds up to %d (lost before clearing saw them, or still to be resent by the terminal)", g.Count, g.String(), g.Highest)})
	}
	rep.GapsChecked = true
	j, err := s.AuditJournal()
	if err != nil {
		return nil, fmt.Errorf("audit: journal: %w", err)
	}
	rep.Journal = j
	if j.Imbalance != 0 {
		imb := int64(j.Imbalance)
		rep.Mismatches = append(rep.Mismatches, Mismatch{Field: "journal imbalance", Record: auditAmount(imb, opt.Currency),
			Detail: "the stored balances do not sum to zero", Amounts: amountsOf(opt.Currency, nil, &imb, nil)})
	}
	for _, m := range j.Mismatches {
		rep.Mismatches = append(rep.Mismatches, Mismatch{Field: "journal balance", Detail: m})
	}
	if rep.Payments, err = s.AuditPayments(); err != nil {
		return nil, fmt.Errorf("audit: payments: %w", err)
	}
	for _, m := range rep.Payments.Mismatches {
		rep.Mismatches = append(rep.Mismatches, Mismatch{Field: "payment", Detail: m})
	}
	return rep, nil
}

// auditAnswers reads every operator's answer to every batch on chain (ids
// below next): the operators with a net in the batch and those given.
func auditAnswers(ctx context.Context, l ledger.Ledger, rep *AuditReport, batches []*BatchRecord, next uint64, operators []string) error {
	rl, ok := l.(reconciliations)
	if !ok {
		return nil
	}
	rep.Disputes = []AuditDispute{}
	// Operators admitted on chain but missing from the registry file may
	// answer too: the chain's answer logs say who did. The audit reads them
	// all, within its own deadline rather than an API request's.
	w := answerers{ownDeadline: true}
	var cr chainReads
	nets := make(map[uint64][]string, len(batches))
	for _, b := range batches {
		for _, am := range b.Amounts {
			nets[b.ID] = append(nets[b.ID], am.Operator)
		}
	}
	for id := uint64(1); id < next; id++ {
		ops := slices.Clone(nets[id])
		answered, err := w.of(ctx, l, id, &cr)
		if err != nil {
			return err
		}
		for _, op := range slices.Concat(operators, answered) {
			if !slices.Contains(ops, op) {
				ops = append(ops, op)
			}
		}
		slices.Sort(ops)
		for _, op := range ops {
			r, err := rl.Reconciliation(ctx, id, op)
			if err != nil {
				return fmt.Errorf("read %s's answer to batch %d: %w", op, id, err)
			}
			switch r.Answer {
			case ledger.Acknowledged:
				rep.Acknowledged++
			case ledger.Disputed:
				rep.Disputes = append(rep.Disputes, AuditDispute{BatchID: id, Operator: op, ReasonHash: "0x" + hex.EncodeToString(r.ReasonHash[:])})
			}
		}
	}
	rep.AnswersChecked = true
	return nil
}

// nameRepeatedRoots says, of each batch on chain the store never sealed,
// when its root is another batch's (as the store sealed it or the chain
// holds it): the same events anchored twice, which the contract accepts.
func nameRepeatedRoots(rep *AuditReport) {
	for i := range rep.Batches {
		ba := &rep.Batches[i]
		if ba.State != BatchMissingInStore || ba.ChainRoot == "" {
			continue
		}
		var other uint64
		for _, o := range rep.Batches {
			if o.ID != ba.ID && (o.ChainRoot == ba.ChainRoot || o.StoreRoot == ba.ChainRoot) {
				other = o.ID
				break
			}
		}
		if other == 0 {
			continue
		}
		note := fmt.Sprintf("its root %s repeats batch %d's: the same events anchored twice", ba.ChainRoot, other)
		for j := range rep.Mismatches {
			if m := &rep.Mismatches[j]; m.BatchID == ba.ID && m.Field == "batch" && m.Record == "missing" {
				m.Detail += "; " + note
			}
		}
		ba.Problem += "; " + note
	}
}

// add records a mismatch against ba.
func (r *AuditReport) add(ba *BatchAudit, m Mismatch) {
	r.Mismatches = append(r.Mismatches, m)
	ba.State = BatchMismatch
	if ba.Problem != "" {
		ba.Problem += "; "
	}
	f := m
	f.BatchID = 0
	ba.Problem += f.String()
}

// addUnsealedNets names, with its amount, each operator's net in a batch
// the chain holds and the store never sealed: what it moved on the
// contract's balances (an outside test's forged batch credited 5000.00 EUR
// and the audit said only that the batch was missing).
func addUnsealedNets(rep *AuditReport, ba *BatchAudit, onChain ledger.Batch, currency string) {
	for _, a := range onChain.Amounts {
		net := a.Net
		rep.add(ba, Mismatch{BatchID: ba.ID, Field: "net of " + a.Operator, Record: "missing", Chain: auditAmount(net, currency),
			Detail: "credited or debited on the contract by a batch this store never sealed", Amounts: amountsOf(currency, nil, nil, &net)})
	}
}

func addNets(into map[string]int64, amounts []ledger.OperatorAmount) {
	for _, a := range amounts {
		into[a.Operator] += a.Net
	}
}

// auditBatch checks one sealed batch; prev is the batch before it (nil for
// the first) and next the chain's next batch id.
func (s *Store) auditBatch(ctx context.Context, l ledger.Ledger, rep *AuditReport, b, prev *BatchRecord, next uint64,
	journal map[string]fare.Amount, chainTotals map[string]int64, opt AuditOptions) (*BatchAudit, error) {
	ba := &BatchAudit{ID: b.ID, State: BatchOK, Events: b.EventCount, StoreRoot: hexRoot(b.Root)}
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }

	// The record's own shape: contiguous bounds and periods.
	wantStart, wantPeriodStart := uint64(0), time.Time{}
	if prev != nil {
		wantStart, wantPeriodStart = prev.EndIndex, prev.PeriodEnd
	}
	if b.StartIndex != wantStart {
		detail := "the first batch must start at apply index 0"
		if prev != nil {
			detail = fmt.Sprintf("batch %d ends at apply index %d: batches must cover apply indexes without gap or overlap", prev.ID, prev.EndIndex)
		}
		rep.add(ba, Mismatch{BatchID: b.ID, Field: "start index", Record: u(b.StartIndex), Detail: detail})
	}
	if b.EndIndex <= b.StartIndex {
		rep.add(ba, Mismatch{BatchID: b.ID, Field: "end index", Record: u(b.EndIndex), Detail: fmt.Sprintf("not after start index %d", b.StartIndex)})
		return ba, nil
	}
	if prev != nil && !b.PeriodStart.Equal(wantPeriodStart) {
		rep.add(ba, Mismatch{BatchID: b.ID, Field: "period start", Record: b.PeriodStart.UTC().Format(time.RFC3339),
			Detail: fmt.Sprintf("batch %d ended %s", prev.ID, wantPeriodStart.UTC().Format(time.RFC3339))})
	}
	if b.EventCount != b.EndIndex-b.StartIndex {
		rep.add(ba, Mismatch{BatchID: b.ID, Field: "event count", Events: u(b.EndIndex - b.StartIndex), Record: u(b.EventCount)})
	}

	// Recompute from the events.
	leaves, nets, findings, err := s.recomputeBatch(b.StartIndex, b.EndIndex, opt.Terminals, &rep.SignaturesChecked, &rep.SignaturesFailed)
	if err != nil {
		return nil, fmt.Errorf("audit batch %d: %w", b.ID, err)
	}
	rep.EventsChecked += uint64(len(leaves))
	for i, f := range findings {
		if i == opt.MaxEventFindings {
			rep.add(ba, Mismatch{BatchID: b.ID, Field: "events", Detail: fmt.Sprintf("%d more inconsistent events not listed", len(findings)-i)})
			break
		}
		f.BatchID = b.ID
		rep.add(ba, f)
	}
	if len(leaves) == 0 {
		rep.add(ba, Mismatch{BatchID: b.ID, Field: "events", Detail: "no readable event in the batch's range"})
		return ba, nil
	}
	tree, err := merkle.New(leaves)
	if err != nil {
		return nil, fmt.Errorf("audit batch %d: %w", b.ID, err)
	}
	root := tree.Root()
	ba.ComputedRoot = hexRoot(root)

	// What the chain holds, if the batch is there yet.
	commit, err := s.Commit(b.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("audit batch %d: %w", b.ID, err)
	}
	var onChain *ledger.Batch
	if b.ID < next {
		cb, err := l.Batch(ctx, b.ID)
		if err != nil {
			return nil, fmt.Errorf("audit: read ledger batch %d: %w", b.ID, err)
		}
		onChain = &cb
		ba.ChainRoot = hexRoot(cb.Root)
		addNets(chainTotals, cb.Amounts)
	}
	// compare reports one mismatch per field naming all three values when
	// the events, the record and (if committed) the chain disagree.
	compare := func(field, events, record, chain, detail string, amounts *MismatchAmounts) {
		if events == record && (onChain == nil || chain == events) && detail == "" {
			return
		}
		m := Mismatch{BatchID: b.ID, Field: field, Events: events, Record: record, Detail: detail, Amounts: amounts}
		if onChain != nil {
			m.Chain = chain
		} else if amounts != nil {
			amounts.Chain = nil
		}
		rep.add(ba, m)
	}
	var chainRoot, chainCount string
	var chainNets map[string]int64
	if onChain != nil {
		chainRoot, chainCount, chainNets = hexRoot(onChain.Root), u(onChain.EventCount), amountMap(onChain.Amounts)
	}
	compare("root", hexRoot(root), hexRoot(b.Root), chainRoot, "", nil)
	compare("event count", u(uint64(len(leaves))), u(b.EventCount), chainCount, "", nil)
	recNets := amountMap(b.Amounts)
	for _, op := range unionKeys(unionMap(nets, recNets), unionMap(chainNets, journalNets(journal))) {
		// The journal holds transfers only for charged taps: an operator
		// whose taps in the batch were all free has a zero net and none.
		detail := ""
		if j := int64(journal[op]); j != nets[op] {
			detail = fmt.Sprintf("the journal's transfers credit %s", auditAmount(j, opt.Currency))
		}
		compare("net of "+op, fmtNet(nets, op, opt.Currency), fmtNet(recNets, op, opt.Currency), fmtNet(chainNets, op, opt.Currency), detail,
			amountsOf(opt.Currency, netOf(nets, op), netOf(recNets, op), netOf(chainNets, op)))
	}

	if onChain == nil {
		if commit != nil {
			rep.add(ba, Mismatch{BatchID: b.ID, Field: "commit", Record: fmt.Sprintf("committed in tx 0x%x, block %d", commit.TxHash, commit.BlockNumber),
				Chain: "missing", Detail: fmt.Sprintf("the chain's next batch id is %d", next)})
			return ba, nil
		}
		if ba.State == BatchOK {
			ba.State = BatchPending
		}
		rep.Pending = append(rep.Pending, b.ID)
		return ba, nil
	}
	switch {
	case commit == nil && ba.State == BatchMismatch:
		// Not what the store sealed: clearing will not record it (an
		// outside test was told it would, at clearing's next start).
	case commit == nil:
		rep.Unrecorded = append(rep.Unrecorded, b.ID)
	case commit.TxHash == ([32]byte{}):
		// A record from before recovered commits read their transaction
		// from the chain: the API, the statements and `ledger prove` show
		// the batch committed with no transaction.
		rep.add(ba, Mismatch{BatchID: b.ID, Field: "commit", Record: fmt.Sprintf("committed with no transaction recorded (block %d, at %s)", commit.BlockNumber, commit.At.UTC().Format(time.RFC3339)),
			Chain: fmt.Sprintf("committed in tx 0x%x, block %d", onChain.TxHash, onChain.BlockNumber)})
	case commit.TxHash == onChain.TxHash && commit.BlockNumber != onChain.BlockNumber:
		// A chain that rewound mines the same transaction again: a
		// running clearing follows it (followRemined), after which this
		// is clean; until then, or if the record was edited, it differs.
		rep.add(ba, Mismatch{BatchID: b.ID, Field: "commit", Record: fmt.Sprintf("committed in tx 0x%x, block %d", commit.TxHash, commit.BlockNumber),
			Chain:  fmt.Sprintf("the same tx in block %d", onChain.BlockNumber),
			Detail: "the chain rewound past the recorded block and mined the transaction again (a running clearing records the chain's block at its next commit tick: audit again then), or the store's record was edited"})
	case commit.TxHash != onChain.TxHash:
		// What `ledger prove` and the API show as where the batch went.
		rep.add(ba, Mismatch{BatchID: b.ID, Field: "commit", Record: fmt.Sprintf("committed in tx 0x%x, block %d", commit.TxHash, commit.BlockNumber),
			Chain: fmt.Sprintf("committed in tx 0x%x, block %d", onChain.TxHash, onChain.BlockNumber)})
	}
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	if onChain.PeriodStart.Unix() != b.PeriodStart.Unix() {
		rep.add(ba, Mismatch{BatchID: b.ID, Field: "period start", Record: rfc(b.PeriodStart), Chain: rfc(onChain.PeriodStart)})
	}
	if onChain.PeriodEnd.Unix() != b.PeriodEnd.Unix() {
		rep.add(ba, Mismatch{BatchID: b.ID, Field: "period end", Record: rfc(b.PeriodEnd), Chain: rfc(onChain.PeriodEnd)})
	}
	if onChain.Root == root {
		proof, err := tree.Proof(0)
		if err != nil {
			return nil, fmt.Errorf("audit batch %d: %w", b.ID, err)
		}
		ok, err := l.VerifyInclusion(ctx, b.ID, tree.Value(0), proof)
		if err != nil {
			return nil, fmt.Errorf("audit batch %d: contract verify: %w", b.ID, err)
		}
		rep.ProofsChecked++
		if !ok {
			rep.add(ba, Mismatch{BatchID: b.ID, Field: "proof", Chain: "verify returned false", Detail: "the contract rejects a proof that verifies off chain"})
		}
	}
	return ba, nil
}

func journalNets(j map[string]fare.Amount) map[string]int64 {
	m := make(map[string]int64, len(j))
	for op, v := range j {
		m[op] = int64(v)
	}
	return m
}

// unionMap merges the key sets of a and b (values are not used).
func unionMap(a, b map[string]int64) map[string]int64 {
	m := make(map[string]int64, len(a)+len(b))
	for k := range a {
		m[k] = 0
	}
	for k := range b {
		m[k] = 0
	}
	return m
}

// recomputeBatch re-reads the events with apply index in [from, to) from
// their event records: each record's signed bytes are decoded and hashed
// into the leaf, and its fare is added to the decoded operator's net. The
// apply-index entries (what sealing and proving use) are compared with the
// event records, and with reg when set. Inconsistencies come back as
// findings; an error means the store could not be read.
func (s *Store) recomputeBatch(from, to uint64, reg TerminalKeys, sigs, failed *uint64) ([][32]byte, map[string]int64, []Mismatch, error) {
	leaves := make([][32]byte, 0, to-from)
	nets := make(map[string]int64)
	var findings []Mismatch
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 1000, Prefix: []byte{pApplied}})
		defer it.Close()
		want := from
		for it.Seek(keyU64(pApplied, from)); it.Valid(); it.Next() {
			idx := u64(it.Item().Key()[1:])
			if idx >= to {
				break
			}
			if idx != want {
				findings = append(findings, Mismatch{Field: "apply index", Detail: fmt.Sprintf("apply indexes %d to %d missing", want, idx-1)})
			}
			want = idx + 1
			var a appliedEntry
			if err := it.Item().Value(func(v []byte) error {
				var err error
				a, err = parseApplied(v)
				return err
			}); err != nil {
				findings = append(findings, Mismatch{Field: "apply index", Detail: fmt.Sprintf("index %d: %v", idx, err)})
				continue
			}
			item, err := txn.Get(eventKey(a.id))
			if errors.Is(err, badger.ErrKeyNotFound) {
				findings = append(findings, Mismatch{Field: "event " + a.id.String(), Events: "missing", Detail: fmt.Sprintf("apply index %d names it", idx)})
				continue
			}
			if err != nil {
				return fmt.Errorf("event %s: %w", a.id, err)
			}
			var rec EventRecord
			if err := item.Value(rec.UnmarshalBinary); err != nil {
				findings = append(findings, Mismatch{Field: "event " + a.id.String(), Detail: err.Error()})
				continue
			}
			sig, err := fare.Decode(rec.Raw)
			if err != nil {
				findings = append(findings, Mismatch{Field: "event " + a.id.String(), Detail: fmt.Sprintf("stored signed bytes: %v", err)})
				continue
			}
			digest := sig.Digest()
			leaves = append(leaves, digest)
			recPostings := rec.PostingsOf(sig.Operator)
			for _, p := range recPostings {
				n, ok := fare.Amount(nets[p.Operator]).Add(p.Amount)
				if !ok {
					findings = append(findings, Mismatch{Field: "batch nets", Detail: fmt.Sprintf("operator %s's net wraps int64 at event %s", p.Operator, a.id)})
				}
				nets[p.Operator] = int64(n)
			}
			check := func(field, fromEvent, fromIndex string) {
				if fromEvent != fromIndex {
					findings = append(findings, Mismatch{Field: "event " + a.id.String() + " " + field, Events: fromEvent,
						Detail: fmt.Sprintf("apply index %d says %s", idx, fromIndex)})
				}
			}
			check("id", sig.ID.String(), a.id.String())
			check("apply index", strconv.FormatUint(rec.ApplyIndex, 10), strconv.FormatUint(idx, 10))
			check("digest", hexRoot(digest), hexRoot(a.digest))
			check("fare", strconv.FormatInt(int64(rec.Fare), 10), strconv.FormatInt(int64(a.fare), 10))
			check("postings", fmt.Sprint(recPostings), fmt.Sprint(a.postings))
			if reg != nil {
				*sigs++
				t, ok := reg.TerminalKey(sig.Terminal)
				switch {
				// An event whose terminal the registry does not hold as
				// the event says cannot have its signature checked: a
				// failed check, not a passed one.
				case !ok:
					*failed++
					findings = append(findings, Mismatch{Field: "event " + a.id.String() + " terminal", Events: sig.Terminal, Detail: "not in the registry"})
				case t.Operator != sig.Operator || t.Stop != sig.Stop:
					*failed++
					findings = append(findings, Mismatch{Field: "event " + a.id.String() + " terminal", Events: sig.Operator + "/" + sig.Stop,
						Detail: fmt.Sprintf("registry has terminal %s at %s/%s", t.ID, t.Operator, t.Stop)})
				default:
					if err := sig.Verify(t.PublicKey); err != nil {
						*failed++
						findings = append(findings, Mismatch{Field: "event " + a.id.String() + " signature", Detail: err.Error()})
					}
				}
			}
		}
		if want != to {
			findings = append(findings, Mismatch{Field: "apply index", Detail: fmt.Sprintf("apply indexes %d to %d missing", want, to-1)})
		}
		return nil
	})
	return leaves, nets, findings, err
}

// journalNetsByBatch sums the journal's transfers per batch (by apply index)
// and credited operator. Transfers past the last batch are the open period's.
func (s *Store) journalNetsByBatch(batches []*BatchRecord) ([]map[string]fare.Amount, error) {
	out := make([]map[string]fare.Amount, len(batches))
	for i := range out {
		out[i] = make(map[string]fare.Amount)
	}
	err := s.db.View(func(txn *badger.Txn) error {
		return eachTransfer(txn, func(t *Transfer) {
			if t.Operator == "" {
				return // a rider's payment: no operator's revenue
			}
			i := sort.Search(len(batches), func(i int) bool { return batches[i].EndIndex > t.ApplyIndex })
			if i < len(batches) && t.ApplyIndex >= batches[i].StartIndex {
				out[i][t.Operator] += t.OperatorNet()
			}
		})
	})
	return out, err
}

// auditOpenPeriod checks that the open period starts where the last batch
// ends and counts its events.
func (s *Store) auditOpenPeriod(rep *AuditReport, last *BatchRecord) error {
	cur, err := s.readCursor()
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	wantID, wantStart := uint64(1), uint64(0)
	if last != nil {
		wantID, wantStart = last.ID+1, last.EndIndex
	}
	if cur.hasPeriod && (cur.period.ID != wantID || cur.period.StartIndex != wantStart) {
		rep.Mismatches = append(rep.Mismatches, Mismatch{Field: "open period",
			Record: fmt.Sprintf("batch %d from apply index %d", cur.period.ID, cur.period.StartIndex),
			Detail: fmt.Sprintf("the sealed batches end before batch %d at apply index %d", wantID, wantStart)})
	}
	if cur.nextApply < wantStart {
		rep.Mismatches = append(rep.Mismatches, Mismatch{Field: "next apply index", Record: strconv.FormatUint(cur.nextApply, 10),
			Detail: fmt.Sprintf("the sealed batches reach apply index %d", wantStart)})
		return nil
	}
	rep.OpenEvents = cur.nextApply - wantStart
	return nil
}

type storedCursor struct {
	cursor
	hasPeriod bool
}

// readCursor reads the counters without loadCursor's side effect of
// persisting a fresh period.
func (s *Store) readCursor() (storedCursor, error) {
	var c storedCursor
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		if c.nextApply, err = getU64(txn, metaNextApply); err != nil {
			return err
		}
		item, err := txn.Get(metaPeriod)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		c.hasPeriod = true
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &c.period) })
	})
	if err != nil {
		return c, fmt.Errorf("read clearing counters: %w", err)
	}
	return c, nil
}

func hexRoot(r [32]byte) string { return fmt.Sprintf("0x%x", r) }

func amountMap(as []ledger.OperatorAmount) map[string]int64 {
	m := make(map[string]int64, len(as))
	for _, a := range as {
		m[a.Operator] += a.Net
	}
	return m
}

func unionKeys(a, b map[string]int64) []string {
	seen := make(map[string]bool, len(a)+len(b))
	var out []string
	for _, m := range []map[string]int64{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

func fmtNet(m map[string]int64, op, currency string) string {
	v, ok := m[op]
	if !ok {
		return "absent"
	}
	return auditAmount(v, currency)
}

// auditAmount shows v minor units as money in currency, or bare when the
// currency is unknown.
func auditAmount(v int64, currency string) string {
	if currency == "" {
		return strconv.FormatInt(v, 10)
	}
	m := MoneyOf(fare.Amount(v), currency)
	return fmt.Sprintf("%d (%s %s)", m.Minor, m.Decimal, m.Currency)
}
