package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// soak runs the fault schedule while the terminals tap, then keeps them
// tapping until Taps were taken.
func (h *harness) soak(ctx context.Context) error {
	// Let traffic flow before the first fault.
	if err := h.progress(ctx, marks(h.terms), time.Now()); err != nil {
		return fmt.Errorf("no progress before the first fault: %w", err)
	}
	for i := range h.cfg.Faults {
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted after %d of %d faults: %w", i, h.cfg.Faults, ctx.Err())
		case <-time.After(h.cfg.FaultInterval):
		}
		kind := h.cfg.Kinds[i%len(h.cfg.Kinds)]
		f, err := h.inject(ctx, kind)
		if f != nil {
			if err != nil && f.Unrecovered == "" {
				// The fault's own step failed (a restart, say) before any
				// progress could be looked for.
				f.Unrecovered = "failed"
				if ctx.Err() != nil {
					f.Unrecovered = "interrupted"
				}
			}
			h.rep.record(*f)
			h.logf("fault %d %s", i+1, f.logLine())
		}
		if err != nil {
			return fmt.Errorf("fault %d (%s): %w", i+1, kind, err)
		}
	}
	h.logf("fault schedule done; tapping until %d taps", h.cfg.Taps)
	if !waitUntil(ctx, 24*time.Hour, func() bool { return h.taps() >= uint64(h.cfg.Taps) }) {
		return fmt.Errorf("interrupted after every fault, with %d of %d taps taken: %w", h.taps(), h.cfg.Taps, ctx.Err())
	}
	return nil
}

// taps is the sum of the sequences the terminals printed.
func (h *harness) taps() uint64 {
	var n uint64
	for _, t := range h.terms {
		n += t.seq.Load()
	}
	return n
}

// marks are the sequences the terminals ts have printed so far.
func marks(ts []*term) map[string]uint64 {
	m := make(map[string]uint64, len(ts))
	for _, t := range ts {
		m[t.id] = t.seq.Load()
	}
	return m
}

// progress waits until clearing's watermark of every terminal in mark
// passes its mark: a tap the terminal took after the mark was taken (at
// since) is applied.
func (h *harness) progress(ctx context.Context, mark map[string]uint64, since time.Time) error {
	var last map[string]uint64
	var dead string
	ok := waitUntil(ctx, h.cfg.StallLimit-time.Since(since), func() bool {
		if dead = h.deadProcess(); dead != "" {
			return true
		}
		ok, wm := h.progressed(ctx, mark)
		if wm != nil {
			last = wm
		}
		return ok
	})
	if dead != "" {
		return fmt.Errorf("no progress can come: %s, which no fault stopped", dead)
	}
	if !ok {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted while waiting for progress after the fault: %w", err) // not a stall
		}
		return fmt.Errorf("no progress within %s of the fault: watermarks %v, sequences at the fault %v", h.cfg.StallLimit, last, mark)
	}
	return nil
}

// deadProcess names a process of the run that has exited though no fault
// stopped it (killed from outside, crashed), with its last log lines; ""
// when every one runs. A terminal whose taps are all given may end.
func (h *harness) deadProcess() string {
	h.mu.Lock()
	procs := append([]*proc{h.chain, h.clearing}, h.nodes...)
	for _, v := range h.verifiers {
		procs = append(procs, v.p)
	}
	h.mu.Unlock()
	for _, t := range h.terms {
		t.mu.Lock()
		if !t.inputClosed {
			procs = append(procs, t.p)
		}
		t.mu.Unlock()
	}
	for _, p := range procs {
		if p != nil && p.exited() {
			return fmt.Sprintf("%s exited (%v); its log ends:\n%s", p.name, p.err, p.log.tail(1500))
		}
	}
	return ""
}

// record adds f to the fault log; only a fault after which progress was
// observed counts in LongestStall.
func (r *Report) record(f Fault) {
	r.Faults = append(r.Faults, f)
	if f.Unrecovered == "" && f.Stall > r.LongestStall[f.Kind] {
		r.LongestStall[f.Kind] = f.Stall
	}
}

// logLine is f as the soak logs it.
func (f Fault) logLine() string {
	switch {
	case f.Unrecovered != "" && f.Waited == 0: // it ended before progress was looked for
		return fmt.Sprintf("%s %s: down %s, no progress observed (%s) %s", f.Kind, f.Target, f.Down, f.Unrecovered, f.Note)
	case f.Unrecovered != "":
		return fmt.Sprintf("%s %s: down %s, no progress observed within %s (%s) %s", f.Kind, f.Target, f.Down, f.Waited, f.Unrecovered, f.Note)
	}
	return fmt.Sprintf("%s %s: down %s, progress after %s %s", f.Kind, f.Target, f.Down, f.Stall, f.Note)
}

// unrecovered marks f as a fault after which no progress was observed
// within waited: interrupted (ctx done) or the stall limit reached.
func (f *Fault) unrecovered(ctx context.Context, waited time.Duration) {
	f.Stall, f.Waited, f.Unrecovered = 0, Duration(waited), "stall limit"
	if ctx.Err() != nil {
		f.Unrecovered = "interrupted"
	}
}

// bounce SIGKILLs the process *p (read under h.mu, which guards it), waits
// down and starts it again with restart; it records the outage in f and
// returns when the fault began and the affected terminals' sequences then.
// Interrupted during the outage, it restarts nothing.
func (h *harness) bounce(ctx context.Context, f *Fault, affected []*term, p **proc, down time.Duration, restart func() error) (time.Time, map[string]uint64, error) {
	began, mark := time.Now(), marks(affected)
	h.mu.Lock()
	victim := *p
	h.mu.Unlock()
	victim.kill()
	// Watched while down: the system may recover before the restart (a
	// stall measured from the restart was never shorter than the outage,
	// an outside test found).
	for end := began.Add(down); time.Now().Before(end); {
		if err := sleep(ctx, min(100*time.Millisecond, time.Until(end))); err != nil {
			f.Down = Duration(time.Since(began))
			return began, mark, fmt.Errorf("interrupted during the outage: %w", err)
		}
		if ok, _ := h.progressed(ctx, mark); ok && f.recovered.IsZero() {
			f.recovered = time.Now()
		}
	}
	f.Down = Duration(time.Since(began))
	return began, mark, restart()
}

// progressed says whether every terminal of mark has had a tap applied
// past its sequence there, with the watermarks read (nil: unread).
func (h *harness) progressed(ctx context.Context, mark map[string]uint64) (bool, map[string]uint64) {
	wm, err := h.watermarks(ctx)
	if err != nil {
		return false, nil
	}
	for id, m := range mark {
		if wm[id] <= m {
			return false, wm
		}
	}
	return true, wm
}

// sleep waits d or until ctx is done, and returns ctx's error then.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// inject makes a fault of kind and waits for the system to make progress
// again.
func (h *harness) inject(ctx context.Context, kind FaultKind) (*Fault, error) {
	var t *term
	if kind == KillTerminal || kind == CutTerminal {
		// Each terminal in turn, the cuts one behind the kills, so that
		// every terminal meets both kinds.
		n := h.termFaults[kind]
		h.termFaults[kind]++
		if kind == CutTerminal {
			n++
		}
		t = h.terms[n%len(h.terms)]
	}
	affected := h.terms
	f := &Fault{Kind: kind}
	var began time.Time
	var mark map[string]uint64
	defer func() {
		if !began.IsZero() { // a fault that failed half way too
			f.At = Duration(began.Sub(h.start))
		}
	}()
	switch kind {
	case KillClearing:
		f.Target = "clearing (with its embedded chain node)"
		if h.chainProcess {
			f.Target = "clearing"
		}
		var err error
		if began, mark, err = h.bounce(ctx, f, affected, &h.clearing, h.cfg.Outage, func() error { return h.startClearing(ctx) }); err != nil {
			return f, err
		}
	case KillStreamLeader:
		// With verifier partitions, every other kill takes the node leading
		// the verified stream, the one clearing itself reads.
		stream := fare.EventStream
		if h.cfg.VerifierPartitions > 0 && h.leaderKills%2 == 1 {
			stream = clearing.VerifiedStream
		}
		h.leaderKills++
		leader, _, err := h.streamLeader(ctx, stream)
		if err != nil {
			return nil, err
		}
		idx := -1
		for j, n := range h.natsNames {
			if n == leader {
				idx = j
			}
		}
		if idx < 0 {
			return nil, fmt.Errorf("stream leader %q is none of %v", leader, h.natsNames)
		}
		f.Target = fmt.Sprintf("nats %s (%s)", leader, stream)
		if began, mark, err = h.bounce(ctx, f, affected, &h.nodes[idx], h.cfg.NATSOutage, func() error { return h.startNode(idx) }); err != nil {
			return f, err
		}
		if err := h.nodes[idx].waitLog(ctx, "Server is ready", 30*time.Second); err != nil {
			return f, err
		}
		defer func() {
			// Before the next fault: the restarted node has caught up, so a
			// later kill cannot take the stream below quorum.
			var now string
			caughtUp := waitUntil(ctx, h.cfg.StallLimit, func() bool {
				l, ci, err := h.streamLeader(ctx, stream)
				if err != nil || ci == nil {
					return false
				}
				now = l
				current := 0
				for _, r := range ci.Replicas {
					if r.Current && !r.Offline {
						current++
					}
				}
				return current == len(h.natsNames)-1
			})
			f.Note = fmt.Sprintf("(leader now %s; replicas current again: %v)", now, caughtUp)
		}()
	case KillTerminal:
		affected = []*term{t}
		f.Target = t.id
		began, mark = time.Now(), marks(affected)
		t.kill()
		err := sleep(ctx, h.cfg.Outage)
		f.Down = Duration(time.Since(began))
		if err != nil {
			return f, fmt.Errorf("interrupted during the outage: %w", err)
		}
		if err := t.restart(); err != nil {
			return f, err
		}
	case CutTerminal:
		affected = []*term{t}
		f.Target = t.id
		began, mark = time.Now(), marks(affected)
		for _, px := range t.proxies {
			px.cut(h.cfg.CutOff)
		}
		err := sleep(ctx, h.cfg.CutOff)
		f.Down = Duration(time.Since(began))
		if err != nil {
			return f, fmt.Errorf("interrupted during the cut: %w", err)
		}
	case RestartChain:
		if !h.chainProcess {
			return nil, fmt.Errorf("%s: the chain is embedded in clearing", kind)
		}
		f.Target = "chain node " + h.chainAddr
		before, err := h.stats(ctx)
		if err != nil {
			return nil, err
		}
		// Down for two settlement periods at least (periods end on whole
		// seconds): clearing seals a batch it cannot anchor meanwhile,
		// which is what this fault is to test (with a 1 s outage and 3 s
		// periods, an outside review saw none sealed in either fault).
		down := h.cfg.OutageOf(RestartChain)
		if began, mark, err = h.bounce(ctx, f, affected, &h.chain, down, func() error { return h.startChain(ctx) }); err != nil {
			return f, err
		}
		// Progress for the chain is anchoring: every batch sealed by now
		// (those sealed while it was down too) and at least one more
		// commit than before the kill; taps applied while it was down
		// are not its recovery.
		f.recovered = time.Time{}
		atRestart, err := h.stats(ctx)
		if err != nil {
			return f, err
		}
		want := max(atRestart.Sealed, before.Committed+1)
		var last stats
		anchored := waitUntil(ctx, h.cfg.StallLimit-time.Since(began), func() bool {
			st, err := h.stats(ctx)
			last = st
			return err == nil && st.Committed >= want
		})
		f.Note = fmt.Sprintf("(batches committed by clearing since its last start %d -> %d, %d sealed at the restart, %d of them while the chain was down)",
			before.Committed, last.Committed, atRestart.Sealed, atRestart.Sealed-min(before.Sealed, atRestart.Sealed))
		if !anchored {
			f.At = Duration(began.Sub(h.start))
			f.unrecovered(ctx, time.Since(began))
			if err := ctx.Err(); err != nil {
				return f, fmt.Errorf("%s: interrupted while waiting for anchoring after the fault (%d of %d batches committed): %w", f.Target, last.Committed, want, err)
			}
			return f, fmt.Errorf("%s: clearing committed %d batches within %s of the fault, want %d", f.Target, last.Committed, h.cfg.StallLimit, want)
		}
	case KillVerifier:
		if len(h.verifiers) == 0 {
			return nil, fmt.Errorf("%s: no verifier partitions", kind)
		}
		v := h.verifiers[h.verifierKills%len(h.verifiers)]
		h.verifierKills++
		f.Target = fmt.Sprintf("verifier of partition %d", v.partition)
		f.Note = fmt.Sprintf("(its terminals %s)", strings.Join(v.terminals, ","))
		var err error
		if began, mark, err = h.bounce(ctx, f, affected, &v.p, h.cfg.Outage, func() error { return h.startVerifier(ctx, v) }); err != nil {
			return f, err
		}
	default:
		return nil, fmt.Errorf("unknown fault kind %q", kind)
	}
	f.At = Duration(began.Sub(h.start))
	err := h.progress(ctx, mark, began)
	if err != nil {
		f.unrecovered(ctx, time.Since(began))
		var ids []string
		for _, a := range affected {
			ids = append(ids, a.id)
		}
		return f, fmt.Errorf("%s: %w (terminals %s)", f.Target, err, strings.Join(ids, ","))
	}
	stall, within := stallOf(began, f.recovered, time.Now(), h.cfg.StallLimit)
	if !within {
		f.unrecovered(ctx, stall)
		return f, fmt.Errorf("%s: progress only %s after the fault, past the stall limit %s", f.Target, stall.Round(time.Millisecond), h.cfg.StallLimit)
	}
	f.Stall = Duration(stall)
	return f, nil
}

// stallOf is a fault's stall, from when it began to the progress seen
// after it (at recovered, when seen while its part was still down, else
// now), and whether it is within limit. Progress seen past the limit is a
// stall all the same: the wait for it had nothing left once the outage
// and the restart were over, and looked once (an outside re-check's 15 s
// stall passed a 6 s limit).
func stallOf(began, recovered, now time.Time, limit time.Duration) (time.Duration, bool) {
	stall := now.Sub(began)
	if !recovered.IsZero() {
		stall = recovered.Sub(began)
	}
	return stall, stall <= limit
}

// stats is the part of clearing's /v1/stats the harness reads: batches
// sealed and committed since clearing's last start.
type stats struct {
	Sealed    uint64 `json:"batches_sealed"`
	Committed uint64 `json:"batches_committed"`
}

func (h *harness) stats(ctx context.Context) (stats, error) {
	var st stats
	err := h.getJSON(ctx, "/v1/stats", &st)
	return st, err
}
