package clearing

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// auditFixture is a store with three sealed batches committed to a real
// embedded chain, built without NATS: signed events go straight to apply,
// as the consume loop hands them over.
type auditFixture struct {
	st     *Store
	led    *ledger.Embedded
	reg    *Registry
	keys   map[string]ed25519.PrivateKey
	cur    cursor
	clock  time.Time
	seq    map[string]uint64
	events [][]fare.EventID // by batch, 0-based
}

func auditLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

func newAuditFixture(t *testing.T) *auditFixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	f := &auditFixture{keys: map[string]ed25519.PrivateKey{}, seq: map[string]uint64{}}
	f.reg = &Registry{Currency: "EUR", Operators: []OperatorConfig{{ID: "metro", Name: "Metro", FlatFare: 250}, {ID: "bus", Name: "Bus", FlatFare: 180}}}
	for i, op := range []string{"metro", "bus"} {
		id := fmt.Sprintf("t%d", i+1)
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i + 1)
		f.keys[id] = ed25519.NewKeyFromSeed(seed)
		e, err := NewTerminalEntry(f.keys[id], id, op, "stop-"+id)
		if err != nil {
			t.Fatal(err)
		}
		f.reg.Terminals = append(f.reg.Terminals, e)
	}
	if err := f.reg.Validate(); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.st, err = OpenStore(filepath.Join(dir, "store"), auditLogger()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	if f.led, err = ledger.OpenEmbedded(ctx, filepath.Join(dir, "chain"), ledger.WithLogger(auditLogger())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.led.Close() })
	for _, op := range f.reg.Operators {
		if _, err := f.led.OperatorAccount(ctx, op.ID); err != nil {
			t.Fatalf("admit %s: %v", op.ID, err)
		}
	}
	f.clock = time.Now().UTC().Truncate(time.Second)
	if f.cur, err = f.st.loadCursor(f.clock); err != nil {
		t.Fatal(err)
	}
	for b := range 3 {
		f.seal(t, 3+2*b)
	}
	if n, err := f.st.commitPending(ctx, f.led, time.Now, nil); err != nil || n != 3 {
		t.Fatalf("commit: %d batches, %v", n, err)
	}
	return f
}

// seal applies n events (alternating terminals, every third an exit, which
// is free) and seals them into the next batch.
func (f *auditFixture) seal(t *testing.T, n int) {
	t.Helper()
	f.events = append(f.events, f.applyAt(t, n, f.clock))
	f.clock = f.clock.Add(10 * time.Second)
	rec, err := f.st.closePeriod(&f.cur, f.clock)
	if err != nil || rec == nil {
		t.Fatalf("seal: %v, %v", rec, err)
	}
}

// applyAt applies n events (as seal) at now and returns their ids.
func (f *auditFixture) applyAt(t *testing.T, n int, now time.Time) []fare.EventID {
	t.Helper()
	var cands []candidate
	var ids []fare.EventID
	for i := range n {
		term := fmt.Sprintf("t%d", i%2+1)
		rt, _ := f.reg.TerminalKey(term)
		f.seq[term]++
		dirn := fare.Validate
		if i%3 == 2 {
			dirn = fare.Exit
		}
		ev := fare.Event{ID: fare.NewEventID(f.clock), Terminal: term, Operator: rt.Operator, Stop: rt.Stop, Gate: "g1",
			Direction: dirn, Media: fare.Card, MediaToken: fmt.Sprintf("card-%d", i), DeviceTime: f.clock,
			Decision: fare.Accepted, Sequence: f.seq[term]}
		raw, err := fare.Sign(&ev, f.keys[term])
		if err != nil {
			t.Fatal(err)
		}
		sig, err := fare.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		var price fare.Amount
		if dirn != fare.Exit {
			op, _ := f.reg.Operator(rt.Operator)
			price = op.FlatFare
		}
		// Each fare posts to its rider's account, as clearing's own apply
		// path names it (the payments audit checks every transfer).
		rider := RiderAccount([]byte("audit-test-rider-key"), ev.Media, ev.MediaToken)
		cands = append(cands, candidate{ev: sig, digest: sig.Digest(), fare: price, rider: rider})
		ids = append(ids, ev.ID)
	}
	if _, err := f.st.apply(cands, &f.cur, now); err != nil {
		t.Fatal(err)
	}
	return ids
}

func (f *auditFixture) audit(t *testing.T) *AuditReport {
	t.Helper()
	rep, err := f.st.Audit(context.Background(), f.led, AuditOptions{Terminals: f.reg, Currency: "EUR"})
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	return rep
}

// rewrite replaces key's value through fn and returns a func restoring it;
// fn returning nil deletes the key.
func (f *auditFixture) rewrite(t *testing.T, key []byte, fn func([]byte) []byte) func() {
	t.Helper()
	var old []byte
	err := f.st.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		if old, err = item.ValueCopy(nil); err != nil {
			return err
		}
		if v := fn(append([]byte(nil), old...)); v != nil {
			return txn.Set(key, v)
		}
		return txn.Delete(key)
	})
	if err != nil {
		t.Fatalf("rewrite %q: %v", key, err)
	}
	return func() {
		if err := f.st.db.Update(func(txn *badger.Txn) error { return txn.Set(key, old) }); err != nil {
			t.Fatalf("restore %q: %v", key, err)
		}
	}
}

func (f *auditFixture) applyIndexOf(t *testing.T, id fare.EventID) uint64 {
	t.Helper()
	rec, err := f.st.Event(id)
	if err != nil {
		t.Fatal(err)
	}
	return rec.ApplyIndex
}

func hasMismatch(rep *AuditReport, batch uint64, field string) bool {
	for _, m := range rep.Mismatches {
		if m.BatchID == batch && strings.Contains(m.Field, field) {
			return true
		}
	}
	return false
}

func wantClean(t *testing.T, rep *AuditReport, what string) {
	t.Helper()
	if !rep.Clean() {
		for _, m := range rep.Mismatches {
			t.Errorf("%s: %s", what, m)
		}
	}
}

// TestAuditFindsTampering audits a clean store and chain, then tampers with
// one record at a time (the sealed batch, an event's signed bytes, its fare,
// its apply-index entry, a balance, a missing event, a missing batch record)
// and checks the audit names the batch and the field, and is clean again
// once the record is restored.
func TestAuditFindsTampering(t *testing.T) {
	f := newAuditFixture(t)
	rep := f.audit(t)
	wantClean(t, rep, "fresh store")
	if rep.StoreBatches != 3 || rep.ChainBatches != 3 || len(rep.Batches) != 3 || len(rep.Pending) != 0 {
		t.Errorf("report: %d store batches, %d chain batches, %d listed, pending %v; want 3, 3, 3, none",
			rep.StoreBatches, rep.ChainBatches, len(rep.Batches), rep.Pending)
	}
	if rep.EventsChecked != 3+5+7 || rep.SignaturesChecked != rep.EventsChecked || rep.ProofsChecked != 3 || !rep.BalancesChecked {
		t.Errorf("report checked %d events, %d signatures, %d proofs, balances %v", rep.EventsChecked, rep.SignaturesChecked, rep.ProofsChecked, rep.BalancesChecked)
	}
	for _, b := range rep.Batches {
		if b.State != BatchOK || b.ComputedRoot != b.ChainRoot || b.StoreRoot != b.ChainRoot {
			t.Errorf("batch %d: %+v", b.ID, b)
		}
	}

	ev2 := f.events[1][1] // batch 2, terminal t2 (bus), charged
	cases := []struct {
		name   string
		tamper func(t *testing.T) (restore func())
		batch  uint64
		fields []string
	}{
		{"sealed record root", func(t *testing.T) func() {
			return f.rewrite(t, keyU64(pBatch, 1), func(v []byte) []byte {
				var r BatchRecord
				json.Unmarshal(v, &r)
				r.Root[0] ^= 1
				b, _ := json.Marshal(r)
				return b
			})
		}, 1, []string{"root"}},
		{"sealed record amounts", func(t *testing.T) func() {
			return f.rewrite(t, keyU64(pBatch, 3), func(v []byte) []byte {
				var r BatchRecord
				json.Unmarshal(v, &r)
				r.Amounts[0].Net += 1
				b, _ := json.Marshal(r)
				return b
			})
		}, 3, []string{"net of bus"}},
		{"commit record block", func(t *testing.T) func() {
			return f.rewrite(t, keyU64(pCommit, 2), func(v []byte) []byte {
				var r CommitRecord
				if err := json.Unmarshal(v, &r); err != nil || r.TxHash == ([32]byte{}) {
					t.Fatalf("commit record of batch 2: %s, %v", v, err)
				}
				r.BlockNumber++
				b, _ := json.Marshal(r)
				return b
			})
		}, 2, []string{"commit"}},
		{"commit record transaction", func(t *testing.T) func() {
			return f.rewrite(t, keyU64(pCommit, 3), func(v []byte) []byte {
				var r CommitRecord
				json.Unmarshal(v, &r)
				r.TxHash[0] ^= 1
				b, _ := json.Marshal(r)
				return b
			})
		}, 3, []string{"commit"}},
		{"commit record without transaction", func(t *testing.T) func() {
			// As a commit recovered after a crash was recorded before.
			return f.rewrite(t, keyU64(pCommit, 1), func(v []byte) []byte {
				var r CommitRecord
				json.Unmarshal(v, &r)
				r.TxHash, r.BlockNumber = [32]byte{}, 0
				b, _ := json.Marshal(r)
				return b
			})
		}, 1, []string{"commit"}},
		{"event signature bytes", func(t *testing.T) func() {
			return f.rewrite(t, eventKey(ev2), func(v []byte) []byte {
				v[len(v)-1] ^= 1 // last byte of the ed25519 signature
				return v
			})
		}, 2, []string{"digest", "signature", "root"}},
		{"event fare", func(t *testing.T) func() {
			return f.rewrite(t, eventKey(ev2), func(v []byte) []byte {
				var r EventRecord
				r.UnmarshalBinary(v)
				r.Fare = 999
				b, _ := r.MarshalBinary()
				return b
			})
		}, 2, []string{"fare", "net of bus"}},
		{"apply-index entry operator", func(t *testing.T) func() {
			return f.rewrite(t, keyU64(pApplied, f.applyIndexOf(t, ev2)), func(v []byte) []byte {
				a, _ := parseApplied(v)
				return appliedValue(a.digest, a.id, []Posting{{Operator: "metro", Amount: a.fare}})
			})
		}, 2, []string{"postings"}},
		{"event missing", func(t *testing.T) func() {
			return f.rewrite(t, eventKey(ev2), func([]byte) []byte { return nil })
		}, 2, []string{"event " + ev2.String(), "root"}},
		{"batch record missing", func(t *testing.T) func() {
			return f.rewrite(t, keyU64(pBatch, 2), func([]byte) []byte { return nil })
		}, 2, []string{"batch"}},
		{"operator balance", func(t *testing.T) func() {
			return f.rewrite(t, keyStr(pBalance, OperatorAccount("metro")), func(v []byte) []byte {
				v[15]++ // credits
				return v
			})
		}, 0, []string{"journal"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			restore := c.tamper(t)
			rep := f.audit(t)
			restore()
			if rep.Clean() {
				t.Fatalf("audit is clean after tampering")
			}
			for _, field := range c.fields {
				if !hasMismatch(rep, c.batch, field) {
					t.Errorf("no mismatch on batch %d field %q; got %v", c.batch, field, rep.Mismatches)
				}
			}
			// Money mismatches carry their values as money too.
			for _, m := range rep.Mismatches {
				if !strings.HasPrefix(m.Field, "net of ") {
					continue
				}
				if m.Record == "missing" { // a batch the store lacks: what the chain's moved
					if m.Amounts == nil || m.Amounts.Chain == nil || m.Amounts.Chain.Currency != "EUR" || m.Amounts.Record != nil {
						t.Errorf("%s of a batch the store lacks: amounts %+v, want the chain's as money", m.Field, m.Amounts)
					}
					continue
				}
				if m.Amounts == nil || m.Amounts.Events == nil || m.Amounts.Record == nil || m.Amounts.Chain == nil ||
					m.Amounts.Record.Currency != "EUR" || m.Amounts.Events.Decimal == "" {
					t.Errorf("%s: amounts %+v, want events, record and chain as money", m.Field, m.Amounts)
				}
			}
			wantFailed := uint64(0)
			if slices.Contains(c.fields, "signature") || slices.Contains(c.fields, "terminal") { // an unknown terminal's is not checked: failed
				wantFailed = 1
			}
			if rep.SignaturesFailed != wantFailed {
				t.Errorf("%d signatures failed, want %d", rep.SignaturesFailed, wantFailed)
			}
			if c.batch != 0 {
				if b := rep.Batches[c.batch-1]; b.ID != c.batch || b.State == BatchOK || b.Problem == "" {
					t.Errorf("batch %d listed as %+v", c.batch, b)
				}
			}
			wantClean(t, f.audit(t), "after restoring")
		})
	}

	// A sealed batch not yet on chain is pending, not a mismatch...
	f.seal(t, 4)
	rep = f.audit(t)
	wantClean(t, rep, "pending batch")
	if len(rep.Pending) != 1 || rep.Pending[0] != 4 || rep.Batches[3].State != BatchPending {
		t.Errorf("pending %v, batch 4 %+v", rep.Pending, rep.Batches[3])
	}
	if ab, err := f.st.AuditBatches(context.Background(), f.led); err != nil || len(ab) != 4 || ab[3].Problem == "" || ab[0].Problem != "" {
		t.Errorf("AuditBatches: %+v, %v (want batch 4 flagged as pending, 1..3 clean)", ab, err)
	}
	// ...unless the store says it committed it.
	if err := f.st.recordCommit(CommitRecord{BatchID: 4, TxHash: [32]byte{1}, BlockNumber: 99}); err != nil {
		t.Fatal(err)
	}
	rep = f.audit(t)
	if !hasMismatch(rep, 4, "commit") {
		t.Errorf("commit record of a batch the chain lacks not flagged: %v", rep.Mismatches)
	}
	if err := f.st.db.Update(func(txn *badger.Txn) error { return txn.Delete(keyU64(pCommit, 4)) }); err != nil {
		t.Fatal(err)
	}
	// Someone else's batch 4 (another root) and 5 on chain.
	ctx := context.Background()
	b4, err := f.st.Batch(4)
	if err != nil {
		t.Fatal(err)
	}
	forged := b4.LedgerBatch()
	forged.Root[31] ^= 1
	if _, err := f.led.CommitBatch(ctx, forged); err != nil {
		t.Fatal(err)
	}
	forged.ID, forged.PeriodStart, forged.PeriodEnd = 5, b4.PeriodEnd, b4.PeriodEnd.Add(time.Second)
	if _, err := f.led.CommitBatch(ctx, forged); err != nil {
		t.Fatal(err)
	}
	rep = f.audit(t)
	if !hasMismatch(rep, 4, "root") || !hasMismatch(rep, 5, "batch") || len(rep.Pending) != 0 {
		t.Errorf("forged chain batches 4 and 5: mismatches %v, pending %v", rep.Mismatches, rep.Pending)
	}
	// Not said to be recorded at clearing's next start: it never will be.
	if slices.Contains(rep.Unrecorded, 4) {
		t.Errorf("a chain batch 4 that differs from the store's is listed as unrecorded: %v", rep.Unrecorded)
	}
	if len(rep.Batches) != 5 || rep.Batches[4].State != BatchMissingInStore || rep.Batches[3].State != BatchMismatch ||
		!strings.Contains(rep.Batches[4].Problem, "repeats batch 4's") {
		t.Errorf("batches %+v", rep.Batches)
	}
	// What the unsealed batch moved is named with its amounts.
	for _, a := range forged.Amounts {
		found := false
		for _, m := range rep.Mismatches {
			if m.BatchID == 5 && m.Field == "net of "+a.Operator && m.Amounts != nil && m.Amounts.Chain != nil && m.Amounts.Chain.Minor == a.Net {
				found = true
			}
		}
		if !found {
			t.Errorf("batch 5's net of %s (%d) not named: %v", a.Operator, a.Net, rep.Mismatches)
		}
	}
	if _, err := f.st.commitPending(ctx, f.led, time.Now, nil); !errors.Is(err, ErrForeignBatch) ||
		!strings.Contains(err.Error(), "batch 5, never sealed here (on the ledger: root 0x") || !strings.Contains(err.Error(), "nets in minor units [") {
		t.Errorf("clearing committing on top of a chain holding a batch it never sealed: %v, want ErrForeignBatch saying what the batch holds", err)
	}
}

// TestAuditNamesARepeatedRoot: a batch on chain the store never sealed
// whose root is another batch's (the same events anchored twice: the
// contract accepts any root from the clearing house's key) is named so,
// with the root and the batch it repeats; an outside test saw only
// "missing-in-store".
func TestAuditNamesARepeatedRoot(t *testing.T) {
	f := newAuditFixture(t)
	ctx := context.Background()
	b2, err := f.st.Batch(2)
	if err != nil {
		t.Fatal(err)
	}
	b3, err := f.st.Batch(3)
	if err != nil {
		t.Fatal(err)
	}
	again := b2.LedgerBatch()
	again.ID, again.PeriodStart, again.PeriodEnd = 4, b3.PeriodEnd, b3.PeriodEnd.Add(time.Second)
	if _, err := f.led.CommitBatch(ctx, again); err != nil {
		t.Fatal(err)
	}
	other := again
	other.ID, other.Root[0] = 5, other.Root[0]^1
	other.PeriodStart, other.PeriodEnd = again.PeriodEnd, again.PeriodEnd.Add(time.Second)
	if _, err := f.led.CommitBatch(ctx, other); err != nil {
		t.Fatal(err)
	}
	rep := f.audit(t)
	root := hexRoot(b2.Root)
	var m4, m5 string
	for _, m := range rep.Mismatches {
		switch {
		case m.Field != "batch": // the nets it moved follow
		case m.BatchID == 4:
			m4 = m.String()
		case m.BatchID == 5:
			m5 = m.String()
		}
	}
	if want := "its root " + root + " repeats batch 2's: the same events anchored twice"; !strings.Contains(m4, want) || !strings.Contains(rep.Batches[3].Problem, want) {
		t.Errorf("batch 4 on chain with batch 2's root: mismatch %q, problem %q; want %q", m4, rep.Batches[3].Problem, want)
	}
	if m5 == "" || strings.Contains(m5, "repeats") {
		t.Errorf("batch 5 on chain with a root of its own: mismatch %q, want missing-in-store without a repeat", m5)
	}
}

// TestOpenStoreReadOnly: a wrong path is refused without creating anything,
// a store in use is refused, a closed one opens and audits.
func TestOpenStoreReadOnly(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope")
	if _, err := OpenStoreReadOnly(missing, auditLogger()); err == nil || !strings.Contains(err.Error(), "no Badger store") {
		t.Errorf("missing dir: %v", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("opening a missing store created %s", missing)
	}
	if _, err := OpenStoreReadOnly(dir, auditLogger()); err == nil {
		t.Error("opened an empty directory as a store")
	}
	st, err := OpenStore(filepath.Join(dir, "store"), auditLogger())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.loadCursor(time.Now()); err != nil {
		t.Fatal(err)
	}
	if ro, err := OpenStoreReadOnly(filepath.Join(dir, "store"), auditLogger()); err == nil {
		ro.Close()
		t.Error("opened a store another opener holds")
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenStoreReadOnly(filepath.Join(dir, "store"), auditLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	c, err := ro.readCursor()
	if err != nil || !c.hasPeriod || c.period.ID != 1 {
		t.Errorf("read-only cursor %+v, %v", c, err)
	}
}

// lagLedger reads the next batch id one behind the chain, as a lagging
// replica behind a load balancer may, and counts the commits sent.
type lagLedger struct {
	ledger.Ledger
	commits int
}

func (l *lagLedger) NextBatchID(ctx context.Context) (uint64, error) {
	n, err := l.Ledger.NextBatchID(ctx)
	if n > 1 {
		n--
	}
	return n, err
}

func (l *lagLedger) CommitBatch(ctx context.Context, b ledger.Batch) (ledger.Receipt, error) {
	l.commits++
	return l.Ledger.CommitBatch(ctx, b)
}

// TestCommitAgainstALaggingLedger: a node whose next batch id lags its
// state names as next a batch this store committed, and the node holds it
// when read by id. Clearing stops with ErrLedgerLags, saying what the node
// said, without sending anything (nor mistaking the node for another
// chain); Ready reports
// commits that keep failing, and stops once one succeeds.
func TestCommitAgainstALaggingLedger(t *testing.T) {
	f := newAuditFixture(t)
	f.seal(t, 2)
	lag := &lagLedger{Ledger: f.led}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := f.st.commitPending(ctx, lag, time.Now, nil)
	if !errors.Is(err, ErrLedgerLags) || n != 0 || lag.commits != 0 || !strings.Contains(err.Error(), "next batch id reads 3") {
		t.Fatalf("commit against a lagging node: %d committed, %d sent, %v; want ErrLedgerLags, nothing sent", n, lag.commits, err)
	}
	// The honest node takes batch 4.
	if n, err := f.st.commitPending(ctx, f.led, time.Now, nil); err != nil || n != 1 {
		t.Fatalf("commit against the node itself: %d, %v", n, err)
	}

	c := &Clearing{}
	c.noteCommit(err, false)
	if s := c.commitFailure(); s != "" {
		t.Fatalf("readiness after a success: %q", s)
	}
	c.noteCommit(fmt.Errorf("commit: %w", ErrLedgerLags), false)
	if s := c.commitFailure(); s != "" {
		t.Fatalf("readiness after one failure, within the grace: %q", s)
	}
	c.commitFailingSince = c.commitFailingSince.Add(-commitFailGrace)
	c.noteCommit(fmt.Errorf("commit: %w", ErrLedgerLags), true) // a cancelled attempt says nothing
	if s := c.commitFailure(); !strings.Contains(s, "ledger commits failing for") || !strings.Contains(s, "contradicts itself") {
		t.Fatalf("readiness after failing past the grace: %q", s)
	}
	c.noteCommit(nil, false)
	if s := c.commitFailure(); s != "" {
		t.Fatalf("readiness after a success: %q", s)
	}
}

// downLedger is a ledger node that cannot be reached.
type downLedger struct{ ledger.Ledger }

func (downLedger) NextBatchID(context.Context) (uint64, error) {
	return 0, errors.New("dial tcp 127.0.0.1:8545: connect: connection refused")
}

func (downLedger) Batch(context.Context, uint64) (ledger.Batch, error) {
	return ledger.Batch{}, errors.New("dial tcp 127.0.0.1:8545: connect: connection refused")
}

// TestCommitErrorsCounted: every failed attempt to commit counts in
// faregate_clearing_ledger_commit_errors_total, a ledger that cannot even
// be asked for the next batch id too (an outside test saw the counter stay
// at 0 through a whole chain outage: only refused commits counted).
func TestCommitErrorsCounted(t *testing.T) {
	f := newAuditFixture(t)
	f.seal(t, 1)
	c := &Clearing{store: f.st, metrics: newMetrics(prometheus.NewRegistry()), log: auditLogger(), cfg: Config{Ledger: downLedger{f.led}, Now: time.Now}}
	for range 3 {
		if _, err := c.commitPending(context.Background()); err == nil {
			t.Fatal("committed to a ledger that cannot be reached")
		}
	}
	if got := testutil.ToFloat64(c.metrics.commitErrors); got != 3 {
		t.Fatalf("commit errors %v after 3 failed attempts, want 3", got)
	}
	c.cfg.Ledger = f.led
	if n, err := c.commitPending(context.Background()); err != nil || n != 1 || testutil.ToFloat64(c.metrics.commitErrors) != 3 {
		t.Fatalf("the ledger back: %d committed, %v, errors %v; want 1, nil, still 3", n, err, testutil.ToFloat64(c.metrics.commitErrors))
	}
}

// silentLedger is a node that took the connection and never answers a
// read (over a WebSocket or IPC, where no HTTP request bound applies).
type silentLedger struct{ ledger.Ledger }

func (silentLedger) NextBatchID(ctx context.Context) (uint64, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

func (silentLedger) TerminalChanges(ctx context.Context, from uint64) (ledger.RegistryRead, error) {
	<-ctx.Done()
	return ledger.RegistryRead{Next: from}, ctx.Err()
}

// silentCommits is a node that answers reads and never a commit.
type silentCommits struct{ ledger.Ledger }

func (silentCommits) CommitBatch(ctx context.Context, b ledger.Batch) (ledger.Receipt, error) {
	<-ctx.Done()
	return ledger.Receipt{}, ctx.Err()
}

// TestBackgroundLedgerReadsBounded: the commit loop's reads and the
// registry read an event from an unknown terminal waits on give up on a
// node that never answers, saying so, instead of blocking for the
// process's life (an outside review found both unbounded).
func TestBackgroundLedgerReadsBounded(t *testing.T) {
	prev := ledgerReadTimeout
	ledgerReadTimeout = 200 * time.Millisecond
	t.Cleanup(func() { ledgerReadTimeout = prev })
	f := newAuditFixture(t)
	f.seal(t, 1)
	silent := silentLedger{f.led}
	c := &Clearing{store: f.st, metrics: newMetrics(prometheus.NewRegistry()), log: auditLogger(),
		cfg: Config{Ledger: silent, Now: time.Now, RegistryPoll: time.Second}, terminals: NewChainTerminals(silent)}
	start := time.Now()
	_, err := c.commitPending(context.Background()) // the commit loop's context: the process's life
	if took := time.Since(start); err == nil || took > 3*time.Second || !strings.Contains(err.Error(), "did not answer within 200ms") {
		t.Errorf("commit round on a silent node: %v after %s; want it to give up saying the ledger did not answer", err, took.Round(time.Millisecond))
	}
	// A node that answers reads and never a commit (its receipt wait, a
	// send over a WebSocket): the commit gives up too.
	prevCommit := ledgerCommitTimeout
	ledgerCommitTimeout = 300 * time.Millisecond
	t.Cleanup(func() { ledgerCommitTimeout = prevCommit })
	c.cfg.Ledger = silentCommits{f.led}
	start = time.Now()
	_, err = c.commitPending(context.Background())
	if took := time.Since(start); err == nil || took > 5*time.Second || !strings.Contains(err.Error(), "did not answer within 300ms") {
		t.Errorf("commit on a node that never answers a commit: %v after %s; want it to give up saying so", err, took.Round(time.Millisecond))
	}
	c.cfg.Ledger = silent
	start = time.Now()
	if !c.syncOnDemand(context.Background()) {
		t.Fatal("syncOnDemand did not read")
	}
	if took := time.Since(start); took > chainReadTimeout+2*time.Second {
		t.Errorf("registry read on demand from a silent node took %s, want at most %s", took.Round(time.Millisecond), chainReadTimeout)
	}
}

// unreadableLedger is a chain node that went away after the commits; it
// counts the reads asked of it.
type unreadableLedger struct {
	*ledger.Embedded
	reads int
}

func (u *unreadableLedger) Reconciliation(context.Context, uint64, string) (ledger.Reconciliation, error) {
	u.reads++
	return ledger.Reconciliation{}, errors.New("read reconciliation: dial tcp 127.0.0.1:8545: connect: connection refused")
}

// TestBatchShownWhileTheChainIsDown: a committed batch whose operators'
// answers cannot be read from the chain is shown from the store, its
// answers said to be unread (an outside test saw the batches API and the
// dashboard answer 500 through a chain outage).
func TestBatchShownWhileTheChainIsDown(t *testing.T) {
	f := newAuditFixture(t)
	f.seal(t, 1)
	if _, err := f.st.commitPending(context.Background(), f.led, time.Now, nil); err != nil {
		t.Fatal(err)
	}
	b, err := f.st.Batch(1)
	if err != nil {
		t.Fatal(err)
	}
	down := &unreadableLedger{Embedded: f.led}
	a := &API{c: &Clearing{store: f.st, cfg: Config{Ledger: down, Registry: f.reg}}}
	var cr chainReads // one request's
	for range 3 {
		v, err := a.batchView(context.Background(), b, &cr)
		if err != nil || !v.Committed || len(v.Answers) != 0 || !strings.Contains(v.AnswersUnread, "connection refused") || v.Root == "" || len(v.Amounts) == 0 {
			t.Fatalf("a batch while the chain is down: %+v, %v; want it shown, answers unread and why", v, err)
		}
	}
	if ok, err := a.answered(context.Background(), b, "bus", &cr); ok || err != nil {
		t.Fatalf("an ?operator= filter while the chain is down: %v, %v; want the batch left out, no error", ok, err)
	}
	if down.reads != 1 {
		t.Fatalf("%d chain reads in one request while the chain is down, want 1 (then the request waits on it no more)", down.reads)
	}
	a.c.cfg.Ledger = f.led
	if v, err := a.batchView(context.Background(), b, &chainReads{}); err != nil || v.AnswersUnread != "" || len(v.Answers) != len(v.Amounts) {
		t.Fatalf("the chain back: %+v, %v; want every answer read", v, err)
	}
}

// TestAuditListsAnswers: the audit reads every operator's answer to every
// batch on chain and lists the disputes with their reason hashes; an
// answer is an operator's word, not a finding: the audit stays clean.
func TestAuditListsAnswers(t *testing.T) {
	f := newAuditFixture(t)
	ctx := context.Background()
	reason := [32]byte{0xd1, 0x5b}
	for _, a := range []struct {
		op      string
		batch   uint64
		dispute bool
	}{{"metro", 1, false}, {"bus", 2, true}, {"metro", 3, true}, {"tram", 2, true}} {
		// tram is admitted on chain but not in the registry file: its
		// dispute is on record like any other.
		acct, err := f.led.OperatorAccount(ctx, a.op)
		if err != nil {
			t.Fatal(err)
		}
		if a.dispute {
			_, err = acct.DisputeBatch(ctx, a.batch, reason)
		} else {
			_, err = acct.AcknowledgeBatch(ctx, a.batch)
		}
		if err != nil {
			t.Fatalf("%s answering batch %d: %v", a.op, a.batch, err)
		}
	}
	rep, err := f.st.Audit(ctx, f.led, AuditOptions{Terminals: f.reg, Operators: f.reg.OperatorIDs()})
	if err != nil {
		t.Fatal(err)
	}
	wantClean(t, rep, "answered batches")
	hash := "0x" + hex.EncodeToString(reason[:])
	want := []AuditDispute{{BatchID: 2, Operator: "bus", ReasonHash: hash}, {BatchID: 2, Operator: "tram", ReasonHash: hash}, {BatchID: 3, Operator: "metro", ReasonHash: hash}}
	if !rep.AnswersChecked || rep.Acknowledged != 1 || !slices.Equal(rep.Disputes, want) {
		t.Fatalf("answers: checked %v, %d acknowledged, disputes %+v; want 1 and %+v", rep.AnswersChecked, rep.Acknowledged, rep.Disputes, want)
	}
}

// answerLogsWithin is the embedded ledger whose answer-log reads fail
// unless given the deadline want: how a slow node's log scan fares under
// a shorter one, without waiting for it.
type answerLogsWithin struct {
	*ledger.Embedded
	want time.Time
}

func (l answerLogsWithin) BatchAnswers(ctx context.Context, from uint64) ([]ledger.BatchAnswer, uint64, error) {
	if d, ok := ctx.Deadline(); !ok || !d.Equal(l.want) {
		return nil, from, fmt.Errorf("batch answers in blocks %d-%d: %w", from, from+4999, context.DeadlineExceeded)
	}
	return l.Embedded.BatchAnswers(ctx, from)
}

// TestAuditAnswersWithinItsOwnDeadline: the audit reads the answer logs
// within its own deadline (--timeout), not an API request's 5 s, and a
// failed read is one failed check naming the cause, not the loss of the
// whole report (an outside test saw `ledger audit --timeout 30m` on a long
// chain die after 11 s printing nothing but "context deadline exceeded").
func TestAuditAnswersWithinItsOwnDeadline(t *testing.T) {
	f := newAuditFixture(t)
	deadline := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	acct, err := f.led.OperatorAccount(ctx, "metro")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acct.AcknowledgeBatch(ctx, 1); err != nil {
		t.Fatal(err)
	}
	opt := AuditOptions{Terminals: f.reg, Operators: f.reg.OperatorIDs()}
	rep, err := f.st.Audit(ctx, answerLogsWithin{f.led, deadline}, opt)
	if err != nil {
		t.Fatalf("audit with its own deadline: %v", err)
	}
	wantClean(t, rep, "answers read within the audit's deadline")
	if !rep.AnswersChecked || rep.Acknowledged != 1 {
		t.Errorf("answers: checked %v, %d acknowledged; want 1", rep.AnswersChecked, rep.Acknowledged)
	}

	// A read that fails: the rest of the report stands.
	rep, err = f.st.Audit(ctx, answerLogsWithin{f.led, deadline.Add(time.Second)}, opt)
	if err != nil {
		t.Fatalf("audit whose answer read fails: %v, want a report", err)
	}
	if rep.AnswersChecked || len(rep.Batches) != 3 || rep.EventsChecked != 3+5+7 || !rep.GapsChecked || !rep.BalancesChecked {
		t.Errorf("report: answers checked %v, %d batches, %d events, gaps %v, balances %v; want the rest of the audit done",
			rep.AnswersChecked, len(rep.Batches), rep.EventsChecked, rep.GapsChecked, rep.BalancesChecked)
	}
	if len(rep.Mismatches) != 1 || rep.Mismatches[0].Field != "operators' answers" || !strings.Contains(rep.Mismatches[0].String(), "context deadline exceeded") ||
		!strings.Contains(rep.Mismatches[0].String(), "who acknowledged or disputed each batch") {
		t.Errorf("mismatches %v, want one failed answers check naming the cause", rep.Mismatches)
	}
}

// TestCommitRefusesALedgerBehindTheStore: a store whose batches 1-3 are on
// one chain, pointed at another chain whose contract holds none (a copied
// data dir on a second dev chain where the same admin key deployed at the
// same address; a chain rewound) with a fourth batch sealed: nothing is
// sent (re-anchoring batch 1 there would put it on two ledgers), and the
// error names the batch and where the store committed it.
func TestCommitRefusesALedgerBehindTheStore(t *testing.T) {
	f := newAuditFixture(t)
	ctx := context.Background()
	other, err := ledger.OpenEmbedded(ctx, filepath.Join(t.TempDir(), "chain"), ledger.WithLogger(auditLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, op := range f.reg.Operators {
		if _, err := other.OperatorAccount(ctx, op.ID); err != nil {
			t.Fatal(err)
		}
	}
	f.seal(t, 2)
	// A head behind the block that mined batch 1: a node syncing or cut
	// off from its peers, not called another chain (an outside test's
	// was), and nothing sent.
	n, err := f.st.commitPending(ctx, other, time.Now, nil)
	if !errors.Is(err, ErrLedgerLags) || n != 0 || !strings.Contains(err.Error(), "which mined batch 1") || !strings.Contains(err.Error(), "cut off from its peers") {
		t.Fatalf("commit to a ledger whose head is behind the store's first commit: %d committed, %v; want ErrLedgerLags", n, err)
	}
	if next, err := other.NextBatchID(ctx); err != nil || next != 1 {
		t.Fatalf("the other ledger's next batch: %d (%v), want 1: nothing sent", next, err)
	}
	// At start: a node whose head has not reached the block of the
	// store's last commit may be syncing, and is let be (the commit loop
	// waits for it); once its head is past that block without the batch,
	// it is another chain, and clearing does not start against its
	// registry (an outside test saw it quarantine every tap as from an
	// unknown terminal). The store's own ledger passes.
	cr, err := f.st.Commit(3)
	if err != nil {
		t.Fatal(err)
	}
	if head, err := other.HeadBlock(ctx); err != nil || head >= cr.BlockNumber {
		t.Fatalf("the other chain's head %d (%v): want it behind block %d for this test", head, err, cr.BlockNumber)
	}
	if err := f.st.checkLedgerHolds(ctx, other); err != nil {
		t.Fatalf("start against a node behind the store's last commit: %v, want no verdict", err)
	}
	for i := 0; ; i++ {
		if head, err := other.HeadBlock(ctx); err != nil || head >= cr.BlockNumber {
			break
		}
		if _, err := other.OperatorAccount(ctx, fmt.Sprintf("filler-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.st.checkLedgerHolds(ctx, other); !errors.Is(err, ErrLedgerBehindStore) || !strings.Contains(err.Error(), "batch 3, committed here in tx 0x") {
		t.Fatalf("start against a ledger past the store's last commit without it: %v", err)
	}
	// Its head past the block, without the batch: another chain, or one
	// rewound.
	n, err = f.st.commitPending(ctx, other, time.Now, nil)
	if !errors.Is(err, ErrLedgerBehindStore) || n != 0 || !strings.Contains(err.Error(), "its next batch id is 1, yet this store committed batch 1 in tx 0x") {
		t.Fatalf("commit to a ledger behind the store: %d committed, %v", n, err)
	}
	if err := f.st.checkLedgerHolds(ctx, f.led); err != nil {
		t.Fatalf("start against the store's ledger: %v", err)
	}
	// The store's own ledger takes the fourth.
	if n, err := f.st.commitPending(ctx, f.led, time.Now, nil); err != nil || n != 1 {
		t.Fatalf("commit to the store's ledger: %d, %v", n, err)
	}
	if err := f.st.checkLedgerHolds(ctx, downLedger{f.led}); err != nil {
		t.Fatalf("start while the ledger cannot be read: %v, want no verdict", err)
	}
}

// movedLedger is a chain that rewound past the blocks of the commits and
// mined the same transactions again, shift blocks later; otherTx, a chain
// that holds the batches under other transactions.
type movedLedger struct {
	ledger.Ledger
	shift   uint64
	otherTx bool
}

func (l *movedLedger) Batch(ctx context.Context, id uint64) (ledger.Batch, error) {
	b, err := l.Ledger.Batch(ctx, id)
	if err == nil {
		b.BlockNumber += l.shift
		if l.otherTx {
			b.TxHash[0] ^= 0xff
		}
	}
	return b, err
}

// TestCommitReminedFollowed: a chain that rewound past a commit's block
// (an outside test: a geth node killed before it wrote its recent state)
// mines the same transaction again in another block. Clearing's commit
// loop records the chain's block, keeping where it was first mined, so
// the audit, which says so until then, is clean again instead of failing
// every batch for ever; a commit under another transaction is left as
// recorded, a mismatch.
func TestCommitReminedFollowed(t *testing.T) {
	f := newAuditFixture(t)
	ctx := context.Background()
	before := make([]uint64, 4)
	for id := uint64(1); id <= 3; id++ {
		cr, err := f.st.Commit(id)
		if err != nil {
			t.Fatal(err)
		}
		before[id] = cr.BlockNumber
	}
	moved := &movedLedger{Ledger: f.led, shift: 1000}
	rep, err := f.st.Audit(ctx, moved, AuditOptions{Terminals: f.reg, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	// Until clearing follows the chain, the audit says where each is and
	// why it may be (it cannot tell a rewound chain from an edited record).
	if len(rep.Mismatches) != 3 || rep.Mismatches[0].Field != "commit" || !strings.Contains(rep.Mismatches[0].String(), fmt.Sprintf("the same tx in block %d", before[1]+1000)) ||
		!strings.Contains(rep.Mismatches[0].String(), "mined the transaction again") {
		t.Fatalf("audit of a chain that mined the commits again: mismatches %v; want the three commits, each saying the chain mined it again", rep.Mismatches)
	}
	// The commit loop follows the chain: every moved commit, the last
	// first, recorded with where it was.
	for range 2 { // the second pass finds nothing moved
		if n, err := f.st.commitPending(ctx, moved, time.Now, nil); err != nil || n != 0 {
			t.Fatalf("commit loop on the moved chain: %d, %v", n, err)
		}
		for id := uint64(1); id <= 3; id++ {
			cr, err := f.st.Commit(id)
			if err != nil {
				t.Fatal(err)
			}
			if cr.BlockNumber != before[id]+1000 || len(cr.Remined) != 1 || cr.Remined[0].FromBlock != before[id] || cr.Remined[0].ToBlock != before[id]+1000 {
				t.Fatalf("batch %d's commit after the loop: block %d, moves %+v; want block %d, one move from %d", id, cr.BlockNumber, cr.Remined, before[id]+1000, before[id])
			}
		}
	}
	if rep, err = f.st.Audit(ctx, moved, AuditOptions{Terminals: f.reg, Currency: "EUR"}); err != nil || !rep.Clean() {
		t.Fatalf("audit after the records followed: %v, mismatches %v; want clean", err, rep.Mismatches)
	}
	// Another transaction is not a re-mine: left as recorded, a mismatch.
	other := &movedLedger{Ledger: f.led, shift: 2000, otherTx: true}
	if _, err := f.st.commitPending(ctx, other, time.Now, nil); err != nil {
		t.Fatal(err)
	}
	if cr, _ := f.st.Commit(3); cr.BlockNumber != before[3]+1000 {
		t.Fatalf("a commit under another transaction moved the record to block %d", cr.BlockNumber)
	}
	if rep, err = f.st.Audit(ctx, other, AuditOptions{Terminals: f.reg, Currency: "EUR"}); err != nil || rep.Clean() {
		t.Fatalf("audit of a chain holding other transactions: %v, clean %v; want commit mismatches", err, rep.Clean())
	}
}

// TestPeriodHoldsEventsAfterAMovedEnd: a batch sealed after events applied
// past its scheduled end (its lease stale at the seal) ends at the next
// whole second after its last event; events applied within that second
// belong to the next batch and are stamped at its start, so each batch's
// [period_start, period_end) holds its events' applied_at (they were
// stamped before their batch's start).
func TestPeriodHoldsEventsAfterAMovedEnd(t *testing.T) {
	f := newAuditFixture(t)
	late := f.clock.Add(300 * time.Millisecond)
	last := f.cur.nextApply + 2
	f.applyAt(t, 3, late)
	rec, err := f.st.closePeriod(&f.cur, f.clock) // scheduled before the events
	if err != nil || rec == nil {
		t.Fatalf("seal: %v, %v", rec, err)
	}
	if want := f.clock.Add(time.Second); !rec.PeriodEnd.Equal(want) {
		t.Fatalf("period end %s, want %s (the whole second after the last event)", rec.PeriodEnd, want)
	}
	first := f.cur.nextApply
	f.applyAt(t, 2, late.Add(200*time.Millisecond)) // within the moved end's second
	for _, tc := range []struct {
		index      uint64
		start, end time.Time
	}{
		{last, rec.PeriodStart, rec.PeriodEnd},
		{first, f.cur.period.Start, time.Time{}},
		{first + 1, f.cur.period.Start, time.Time{}},
	} {
		at, err := f.st.appliedAt(tc.index)
		if err != nil {
			t.Fatal(err)
		}
		if at.Before(tc.start) || !tc.end.IsZero() && !at.Before(tc.end) {
			t.Errorf("event %d applied at %s: outside its batch's period [%s, %s)", tc.index, at, tc.start, tc.end)
		}
	}
}
