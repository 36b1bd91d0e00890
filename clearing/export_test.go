package clearing

import (
	"context"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
)

// WithoutSecurity turns NATS authentication and signed confirmations off
// (TLS is off unless the config names certificates): the baseline
// BenchmarkSecurityCost measures against. Nothing outside tests can.
func WithoutSecurity(cfg *Config) { cfg.plain = true }

// WithSerialCommits makes clearing commit each batch before it prepares
// the next: the baseline of the commit pipeline.
func WithSerialCommits(cfg *Config) { cfg.serialCommits = true }

// WithReplayBudget lowers how many replays name a terminal (replayBudget)
// to n, so a test floods for seconds, not a minute.
func WithReplayBudget(cfg *Config, n int) { cfg.replayBudget = n }

// ReplayBudget is replayBudget.
const ReplayBudget = replayBudget

// VerifyBatch is verifyBatch, for BenchmarkVerify.
var VerifyBatch = verifyBatch

// HoldDenyWrites takes the deny list's write lock until release is
// called: single changes made meanwhile queue for one group write.
func (c *Clearing) HoldDenyWrites() (release func()) {
	c.deny.denyWrite.Lock()
	return c.deny.denyWrite.Unlock
}

// DenyChangesWaiting is how many single deny-list changes wait for the
// write lock.
func (c *Clearing) DenyChangesWaiting() int {
	return c.deny.group.waitingNow()
}

// DenyWrites is how many deny-list transactions clearing has tried.
func (c *Clearing) DenyWrites() uint64 { return c.deny.writes.Load() }

// CorruptDenyRecord overwrites a listed medium's record with junk.
func (s *Store) CorruptDenyRecord(m fare.MediaKind, token string) error {
	return s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(denyStoreKey(fare.HashDeny(m, token)), []byte("{not json"))
	})
}

// SweepConsumers runs one sweep of the buckets' consumers now and returns
// how many it deleted.
func (c *Clearing) SweepConsumers(ctx context.Context) int { return c.sweepOnce(ctx) }

// PauseLeaseRenewals stops (true) or resumes this process's renewals of
// its owner record: a process frozen past its lease.
func (c *Clearing) PauseLeaseRenewals(paused bool) { c.lease.paused.Store(paused) }

// WithStatfs makes clearing read its data dir's free space and size from
// statfs instead of the file system: a full disk for tests.
func WithStatfs(cfg *Config, statfs func(dir string) (free, size uint64, err error)) {
	cfg.statfs = statfs
}

// ReconcileGateList is reconcileGateList, for a test that cannot wait for
// the next failed write.
func (c *Clearing) ReconcileGateList(ctx context.Context, l fare.GateList) error {
	return c.reconcileGateList(ctx, l)
}

// APIHostKey is apiHostKey, for TestAPIHostKey.
var APIHostKey = apiHostKey

// AgeLease makes this process's last owner-record write look d older: a
// Run that starts long after Open claimed the consumer.
func (c *Clearing) AgeLease(d time.Duration) { c.lease.renewed.Add(-int64(d)) }

// MarkUnforgotten has clearing take subject's templates as not forgotten
// by the template store (as after a failed Forget): the retry loop forgets
// them again within a second.
func (c *Clearing) MarkUnforgotten(subject string) {
	c.faces.mu.Lock()
	defer c.faces.mu.Unlock()
	c.faces.unforgotten[subject] = true
}
