package clearing

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/faregate/faregate/ledger"
)

// TestCommitRecoveredFromTheChain: clearing killed after a batch's commit
// transaction is mined but before the store records it (simulated here by
// committing the sealed batch straight to the real embedded chain) records
// the commit at its next attempt with the transaction, block and block
// time the chain holds, logs it and counts it. An outside test saw the
// recovered record with no transaction or block and the restart's time,
// neither logged nor counted, and the statement without tx_hash. A batch
// on chain under the same id and root that differs in anything else the
// chain keeps (event count, period, nets) is refused, nothing recorded.
func TestCommitRecoveredFromTheChain(t *testing.T) {
	cases := []struct {
		name string
		edit func(b *ledger.Batch) // the batch as the crashed run sent it
		want string                // "" recovered; else in the refusal
	}{
		{"as sealed", func(*ledger.Batch) {}, ""},
		{"event count", func(b *ledger.Batch) { b.EventCount++ }, "events on the ledger"},
		{"period start", func(b *ledger.Batch) { b.PeriodStart = b.PeriodStart.Add(-time.Second) }, "period start"},
		{"period end", func(b *ledger.Batch) { b.PeriodEnd = b.PeriodEnd.Add(time.Second) }, "period end"},
		{"net", func(b *ledger.Batch) { b.Amounts[0].Net++ }, "net of bus"},
		{"operator", func(b *ledger.Batch) { b.Amounts = b.Amounts[1:] }, "no net of bus on the ledger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newAuditFixture(t)
			f.seal(t, 4)
			rec, err := f.st.Batch(4)
			if err != nil {
				t.Fatal(err)
			}
			sent := rec.LedgerBatch()
			tc.edit(&sent)
			rcpt, err := f.led.CommitBatch(ctx, sent)
			if err != nil {
				t.Fatal(err)
			}
			onChain, err := f.led.Batch(ctx, 4)
			if err != nil {
				t.Fatal(err)
			}

			var logs bytes.Buffer
			c := &Clearing{store: f.st, metrics: newMetrics(prometheus.NewRegistry()), cfg: Config{Ledger: f.led, Now: time.Now},
				log: slog.New(slog.NewTextHandler(&logs, nil))}
			n, err := c.commitPending(ctx)
			if tc.want != "" {
				if !errors.Is(err, ErrForeignBatch) || !strings.Contains(err.Error(), tc.want) || n != 0 {
					t.Fatalf("chain's batch 4 differs in %s: %d committed, %v; want ErrForeignBatch naming %q", tc.name, n, err, tc.want)
				}
				if _, err := f.st.Commit(4); !errors.Is(err, ErrNotFound) {
					t.Fatalf("commit of a batch the chain holds otherwise recorded: %v", err)
				}
				return
			}
			if err != nil || n != 1 {
				t.Fatalf("recover batch 4: %d committed, %v; want 1", n, err)
			}
			cr, err := f.st.Commit(4)
			if err != nil {
				t.Fatal(err)
			}
			if cr.TxHash != rcpt.TxHash || cr.BlockNumber != rcpt.BlockNumber || !cr.Recovered {
				t.Errorf("recovered record: tx 0x%x block %d recovered %v; the chain's tx 0x%x block %d", cr.TxHash, cr.BlockNumber, cr.Recovered, rcpt.TxHash, rcpt.BlockNumber)
			}
			if onChain.CommittedAt.IsZero() || !cr.At.Equal(onChain.CommittedAt) {
				t.Errorf("recovered record at %s, the block's time is %s", cr.At, onChain.CommittedAt)
			}
			if got := testutil.ToFloat64(c.metrics.batchesCommitted); got != 1 || c.committed.Load() != 1 {
				t.Errorf("committed counted %v (metric) and %d, want 1", got, c.committed.Load())
			}
			if l := logs.String(); !strings.Contains(l, "batch committed to the ledger") || !strings.Contains(l, "recovered=") ||
				!strings.Contains(l, "tx=0x") || strings.Contains(l, "tx=0x000000") {
				t.Errorf("recovery log: %s", l)
			}
			wantClean(t, f.audit(t), "after recovery")
		})
	}
}
