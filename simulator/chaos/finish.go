package chaos

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// finish stops the taps, waits for every terminal to drain and exit 0,
// lets clearing anchor the last period, stops it and checks the invariants
// from the stores and the chain.
func (h *harness) finish(ctx context.Context) error {
	close(h.stopFeeding)
	for _, t := range h.terms {
		t.closeInput() // also ends a feeder's write blocked on a full pipe
	}
	h.feeders.Wait()
	stopped := time.Now()
	h.logf("taps stopped at %d; waiting for the outboxes to drain", h.taps())
	for _, t := range h.terms {
		p := t.current()
		select {
		case <-p.done:
		case <-time.After(h.cfg.DrainLimit - time.Since(stopped)):
			h.addProblem("terminal %s did not drain and exit within %s of the last tap", t.id, h.cfg.DrainLimit)
			p.kill()
			continue
		case <-ctx.Done():
			return ctx.Err()
		}
		if p.err != nil {
			h.addProblem("terminal %s exited with %v after its input ended; log tail:\n%s", t.id, p.err, p.log.tail(1500))
		} else if !strings.Contains(p.log.String(), "outbox drained") {
			h.addProblem("terminal %s exited 0 without logging that its outbox drained", t.id)
		}
		t.readers.Wait()
	}
	h.rep.Drain = Duration(time.Since(stopped))
	h.logf("terminals drained and exited after %s", h.rep.Drain)

	// The last events' period is sealed and anchored before clearing
	// stops: wait two periods, then until every sealed batch is committed.
	if err := sleep(ctx, 2*h.cfg.Period+time.Second); err != nil {
		return fmt.Errorf("interrupted before the last batches were anchored: %w", err)
	}
	var st stats
	if !waitUntil(ctx, time.Minute, func() bool {
		var err error
		st, err = h.stats(ctx)
		return err == nil && st.Committed >= st.Sealed
	}) {
		h.addProblem("clearing did not anchor its sealed batches within a minute (%d sealed, %d committed since its last start)", st.Sealed, st.Committed)
	}
	h.finishPartitions(ctx)
	h.mu.Lock()
	cl := h.clearing
	h.mu.Unlock()
	if err := cl.stop(time.Minute); err != nil {
		h.addProblem("clearing's stop: %v", err)
	}
	h.logf("clearing stopped (started %d times); auditing", h.clearingStarts)

	h.audit(ctx)
	if h.chainProcess {
		h.mu.Lock()
		ch := h.chain
		h.mu.Unlock()
		if err := ch.stop(time.Minute); err != nil {
			h.addProblem("chain node's stop: %v", err)
		}
	}
	if err := h.checkStores(); err != nil {
		return err
	}
	return nil
}

// auditOutput is the part of `faregate ledger audit --json` the report
// uses.
type auditOutput struct {
	Batches []struct {
		ID      uint64 `json:"id"`
		State   string `json:"state"`
		Events  uint64 `json:"events"`
		Problem string `json:"problem"`
	} `json:"batches"`
	Mismatches        []json.RawMessage `json:"mismatches"`
	Pending           []uint64          `json:"pending"`
	Unrecorded        []uint64          `json:"unrecorded"`
	StoreBatches      int               `json:"store_batches"`
	ChainBatches      uint64            `json:"chain_batches"`
	EventsChecked     uint64            `json:"events_checked"`
	OpenEvents        uint64            `json:"open_events"`
	SignaturesChecked uint64            `json:"signatures_checked"`
	GapsChecked       bool              `json:"gaps_checked"`
	Journal           struct {
		Transfers  int            `json:"transfers"`
		Imbalance  clearing.Money `json:"imbalance"`
		Mismatches []string       `json:"mismatches"`
	} `json:"journal"`
}

// audit runs `faregate ledger audit --json` on the stopped clearing's data
// (and the chain node, when the chain runs as a process of its own).
func (h *harness) audit(ctx context.Context) {
	args := []string{"ledger", "audit", "--data", h.clearingDir, "--registry", h.registry, "--json"}
	if h.chainProcess {
		// The chain node still runs: the store here, the chain over JSON-RPC.
		args = []string{"ledger", "audit", "--clearing-data", h.clearingDir, "--eth-rpc", h.ethRPC(), "--eth-key", h.ethKey,
			"--contract", h.contract, "--registry", h.registry, "--json"}
	}
	out, runErr := run(ctx, h.cfg.Env, h.cfg.Faregate, args...)
	var a auditOutput
	if err := json.Unmarshal(out, &a); err != nil {
		h.addProblem("ledger audit: %v; output %q", errOr(runErr, err), out)
		return
	}
	h.rep.Batches, h.rep.ChainBatches = a.StoreBatches, a.ChainBatches
	h.rep.EventsInBatches, h.rep.OpenEvents, h.rep.SignaturesChecked = a.EventsChecked, a.OpenEvents, a.SignaturesChecked
	h.rep.Transfers, h.rep.Imbalance = a.Journal.Transfers, a.Journal.Imbalance
	for _, m := range a.Mismatches {
		h.rep.AuditMismatches = append(h.rep.AuditMismatches, string(m))
	}
	h.rep.AuditMismatches = append(h.rep.AuditMismatches, a.Journal.Mismatches...)
	h.rep.AuditClean = runErr == nil && len(h.rep.AuditMismatches) == 0
	if !h.rep.AuditClean {
		h.addProblem("ledger audit not clean (%v): %s", runErr, strings.Join(h.rep.AuditMismatches, "; "))
	}
	if a.Journal.Imbalance.Minor != 0 {
		h.addProblem("journal imbalance %d (%s %s)", a.Journal.Imbalance.Minor, a.Journal.Imbalance.Decimal, a.Journal.Imbalance.Currency)
	}
	if uint64(a.StoreBatches) != a.ChainBatches || len(a.Pending) > 0 || len(a.Unrecorded) > 0 {
		h.addProblem("batches: %d sealed in the store, %d on chain, pending %v, unrecorded %v", a.StoreBatches, a.ChainBatches, a.Pending, a.Unrecorded)
	}
	for _, b := range a.Batches {
		if b.Problem != "" {
			h.addProblem("batch %d (%s): %s", b.ID, b.State, b.Problem)
		}
	}
	if !a.GapsChecked {
		h.addProblem("the audit did not check the terminals' sequences for gaps")
	}
	h.logf("audit: %d batches (%d on chain), %d events re-hashed, %d open, %d signatures, clean %v",
		a.StoreBatches, a.ChainBatches, a.EventsChecked, a.OpenEvents, a.SignaturesChecked, h.rep.AuditClean)
}

func errOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// checkStores reads clearing's store and every terminal's store: each
// accepted tap applied exactly once, none applied that no terminal took,
// every outbox empty.
func (h *harness) checkStores() error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := clearing.OpenStoreReadOnly(filepath.Join(h.clearingDir, "store"), quiet)
	if err != nil {
		return err
	}
	defer store.Close()
	ids, err := store.AppliedEventIDs()
	if err != nil {
		return err
	}
	h.rep.Applied = uint64(len(ids))
	seenID := make(map[string]int, len(ids)) // by the id as a terminal prints it
	bySeq := make(map[string]map[uint64]int)
	for _, id := range ids {
		seenID[id.String()]++
		if seenID[id.String()] == 2 {
			h.rep.Twice++
		}
		rec, err := store.Event(id)
		if err != nil {
			return fmt.Errorf("applied event %s: %w", id, err)
		}
		sig, err := fare.Decode(rec.Raw)
		if err != nil {
			return fmt.Errorf("applied event %s: %w", id, err)
		}
		m := bySeq[sig.Terminal]
		if m == nil {
			m = make(map[uint64]int)
			bySeq[sig.Terminal] = m
		}
		m[sig.Sequence]++
		if m[sig.Sequence] == 2 && seenID[id.String()] == 1 {
			h.rep.Twice++ // the same sequence under another event id
		}
	}
	rejections, err := store.Rejections()
	if err != nil {
		return err
	}
	rejected := make(map[string]map[uint64]bool)
	for _, r := range rejections {
		if rejected[r.Terminal] == nil {
			rejected[r.Terminal] = make(map[uint64]bool)
		}
		rejected[r.Terminal][r.Sequence] = true
	}

	key, err := hex.DecodeString(strings.TrimPrefix(h.confirmKey, "0x"))
	if err != nil || len(key) != ed25519.PublicKeySize {
		return fmt.Errorf("clearing key %q: %v", h.confirmKey, err)
	}
	for _, t := range h.terms {
		tr, err := h.readTerminal(t, ed25519.PublicKey(key))
		if err != nil {
			return err
		}
		applied := bySeq[t.id]
		tr.Applied = uint64(len(applied))
		t.printedMu.Lock()
		lost, problems := terminalLoss(t.id, tr.Accepted, applied, rejected[t.id], seenID, t.printed)
		t.printedMu.Unlock()
		for _, p := range problems {
			h.addProblem("%s", p)
		}
		if len(lost) > 0 {
			h.rep.Lost += uint64(len(lost))
			h.addProblem("terminal %s: %d accepted taps not applied, first %v", t.id, len(lost), lost[:min(len(lost), 10)])
		}
		if tr.Pending > 0 {
			h.addProblem("terminal %s: %d events left in its outbox", t.id, tr.Pending)
		}
		// Every tap the soak takes is genuine: clearing rejecting one is
		// a tap the rider took that is never applied, whatever the
		// dead-letter store agrees (an outside review).
		if n := len(rejected[t.id]); n > 0 || tr.Rejected > 0 {
			seqs := slices.Sorted(maps.Keys(rejected[t.id]))
			h.addProblem("terminal %s: clearing rejected %d of its genuine taps (sequences %v), its dead-letter store holds %d", t.id, n, seqs[:min(len(seqs), 10)], tr.Rejected)
		}
		h.rep.Taps += tr.Accepted
		h.rep.OutboxPending += tr.Pending
		h.rep.Rejected += uint64(tr.Rejected)
		h.rep.Terminals = append(h.rep.Terminals, tr)
	}
	if h.rep.Twice > 0 {
		h.addProblem("%d taps applied twice", h.rep.Twice)
	}
	h.checkPartitions(bySeq)
	if want := h.rep.Taps - h.rep.Rejected; h.rep.Applied != want {
		h.addProblem("clearing's store holds %d events, the terminals accepted %d (less %d rejected): want %d", h.rep.Applied, h.rep.Taps, h.rep.Rejected, want)
	}
	// Clearing seals every period: two periods after the last tap
	// drained, every accepted tap is in an anchored batch. Events still
	// open mean sealing stopped (the anchoring wait above counts only
	// since clearing's last start, which a clearing sealing nothing meets).
	if h.rep.OpenEvents > 0 {
		h.addProblem("%d applied events are in no batch two periods after the terminals drained: clearing stopped sealing", h.rep.OpenEvents)
	}
	if h.rep.EventsInBatches+h.rep.OpenEvents != h.rep.Applied {
		h.addProblem("the audit re-hashed %d batched and %d open events, the store holds %d", h.rep.EventsInBatches, h.rep.OpenEvents, h.rep.Applied)
	}
	return nil
}

// readTerminal opens a stopped terminal's store: the highest sequence it
// used, its stored watermark, what its outbox holds, its dead letters.
func (h *harness) readTerminal(t *term, clearingKey ed25519.PublicKey) (TerminalReport, error) {
	tr := TerminalReport{ID: t.id, Restarts: t.restarts}
	key, err := terminal.LoadOrCreateKey(t.key)
	if err != nil {
		return tr, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tm, err := terminal.Open(terminal.Config{ID: t.id, Operator: t.operator, Stop: t.stop, Key: key, DataDir: t.data,
		ClearingKeys: []ed25519.PublicKey{clearingKey}, Logger: quiet})
	if err != nil {
		return tr, fmt.Errorf("terminal %s's store: %w", t.id, err)
	}
	defer tm.Close()
	tr.Accepted, tr.Confirmed, tr.Pending = tm.LastSequence(), tm.Confirmed(), tm.Pending()
	dl, err := tm.DeadLetters()
	if err != nil {
		return tr, err
	}
	tr.Rejected = len(dl)
	if printed := t.seq.Load(); printed > tr.Accepted {
		h.addProblem("terminal %s printed sequence %d, its store's highest is %d", t.id, printed, tr.Accepted)
	}
	return tr, nil
}

// terminalLoss compares what terminal id took (sequences 1 to accepted,
// and the event id it printed for each sequence in printed) with what
// clearing holds: applied counts its applied events by sequence, rejected
// its rejections, seenID its applied event ids as a terminal prints them.
// It returns the accepted sequences clearing neither applied nor rejected,
// and those under which it applied another event than the one printed (a
// tap lost and its sequence used again: the count alone passes that),
// sorted; and a line for each other problem.
func terminalLoss(id string, accepted uint64, applied map[uint64]int, rejected map[uint64]bool, seenID map[string]int, printed map[uint64]string) (lost []uint64, problems []string) {
	for s := uint64(1); s <= accepted; s++ {
		if applied[s] == 0 && !rejected[s] {
			lost = append(lost, s)
		}
	}
	for s := range applied {
		if s > accepted || s == 0 {
			problems = append(problems, fmt.Sprintf("terminal %s: clearing applied sequence %d, the terminal took only %d", id, s, accepted))
		}
	}
	for s, ev := range printed {
		if applied[s] != 0 && seenID[ev] == 0 {
			lost = append(lost, s)
			problems = append(problems, fmt.Sprintf("terminal %s: the tap it printed as %s at sequence %d was never applied (another event was, under that sequence)", id, ev, s))
		}
	}
	slices.Sort(lost)
	slices.Sort(problems)
	return lost, problems
}
