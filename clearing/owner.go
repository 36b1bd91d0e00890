package clearing

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/fare"
)

// StoreIDFile, in clearing's data dir, names the store: 16 random bytes,
// hex, made when the data dir is. A copy of the data dir (a restored
// volume) is the same store.
const StoreIDFile = "store-id"

// OwnersBucket is the NATS key-value bucket where each durable consumer of
// the event stream records the clearing store that consumes it.
const OwnersBucket = "FAREGATE_CLEARING_OWNERS"

// EventConsumer is the durable consumer clearing reads the event stream
// through.
const EventConsumer = "clearing"

// ErrConsumerOwned is returned by Open when the event consumer belongs to
// another clearing store: two stores on one consumer would split every
// terminal's events between them, each would see gaps and settle half.
var ErrConsumerOwned = errors.New("clearing: the event consumer belongs to another clearing store")

// ErrStoreRunning is returned by Open when another process runs the same
// store (a copy of its data dir: a restored volume, a failed-over disk
// still attached elsewhere) and holds the event consumer: it renews its
// owner record within OwnerLease. Two processes of one store would split
// every terminal's events between them, each confirming to the gates
// what the other never saw.
var ErrStoreRunning = errors.New("clearing: another process runs this clearing store")

// ErrLeaseLost is returned by Run when another process of the same store
// took the event consumer over (this one had not renewed its owner record
// within OwnerLease: a pause, a network cut): this process stops applying.
var ErrLeaseLost = errors.New("clearing: another process of this store took the event consumer over")

// DefaultOwnerLease is Config.OwnerLease's default.
const DefaultOwnerLease = 10 * time.Second

// raced reports whether err is a compare-and-set the store refused because
// another write came first: the store works (an outside recheck's stolen
// terminal key raced the renewals with replies aimed at the record, and
// clearing stopped as if its store had failed).
func raced(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// embeddedStoreFailures is how many renewals of the owner record in a row
// (a quarter of the lease apart: a minute at the default lease) may fail
// on the embedded NATS server before clearing stops to be restarted.
const embeddedStoreFailures = 24

// ConsumerOwner is the value of a consumer's key in OwnersBucket.
type ConsumerOwner struct {
	// Store is the owning store's id (StoreIDFile), 0x hex.
	Store string `json:"store"`
	// Host and DataDir say where it was when it claimed the consumer.
	Host    string    `json:"host"`
	DataDir string    `json:"data_dir"`
	Since   time.Time `json:"since"`
	// Process is the holding process's random id while it runs (renewing
	// the record every OwnerLease/4); empty once it stopped cleanly.
	Process string `json:"process,omitempty"`
	// Renewed is when the holding process last renewed the record (its
	// clock: other processes judge liveness by the record's revision).
	Renewed time.Time `json:"renewed,omitzero"`
	// Applied is how many events the store had applied at that renewal
	// (or at a clean stop): a copy of the store that has applied fewer is
	// older, and is refused (ErrStoreStale).
	Applied uint64 `json:"applied,omitempty"`
}

// ErrStoreStale is returned by Open when this data dir is an older copy
// of the store holding the event consumer: the holder had applied more
// events than it, and had confirmed them to the gates, which deleted them.
// Taken over, those events would be lost for good.
var ErrStoreStale = errors.New("clearing: this data dir is an older copy of the clearing store")

// ownerLease is a process's hold on the event consumer's owner record.
type ownerLease struct {
	mu      sync.Mutex
	kv      jetstream.KeyValue
	key     string
	store   string // this store's id
	process string // this process's id
	rev     uint64 // the revision of the record as this process last wrote it
	since   time.Time
	// fenced is set when another process of this store took the consumer.
	fenced atomic.Pointer[error]
	// base and renewed time this process's hold: renewed is when the
	// record was last written by it, as time since base (monotonic).
	base    time.Time
	renewed atomic.Int64
	// paused stops renewals (tests: a process frozen past its lease).
	paused atomic.Bool
}

// noteRenewed records that this process wrote its owner record, in a
// request sent at sent: the lease runs from the sending, since the server
// may have written the record long before its answer came (a taker counts
// from the write).
func (l *ownerLease) noteRenewed(sent time.Time) { l.renewed.Store(int64(sent.Sub(l.base))) }

// hold returns once this process may commit applied events: its owner
// record written within three quarters of the lease. Another process of
// the store takes the consumer only after the record went a whole lease
// unwritten (by its own clock), so a process that was frozen past that
// (a pause, a cut) never commits after being superseded: it waits for its
// next renewal, which finds the record taken and fences it (ErrLeaseLost).
func (c *Clearing) holdLease(ctx context.Context) error {
	l := &c.lease
	if l.kv == nil {
		return nil
	}
	fresh := func() bool { return time.Duration(int64(time.Since(l.base))-l.renewed.Load()) < c.cfg.OwnerLease*3/4 }
	for !fresh() {
		if f := l.fenced.Load(); f != nil {
			return *f
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		sleep(ctx, 20*time.Millisecond)
	}
	if f := l.fenced.Load(); f != nil {
		return *f
	}
	return nil
}

// leaseFresh says, without waiting, whether this process may seal now: its
// lease renewed recently (false: not now, try later), or the error of a
// process superseded (fenced). A process cut off from NATS but not from
// the chain kept sealing and anchoring batches after another had taken
// over, and the new owner's batches of the same ids conflicted on chain
// for good (an outside chaos test).
func (c *Clearing) leaseFresh() (bool, error) {
	l := &c.lease
	if l.kv == nil {
		return true, nil
	}
	if f := l.fenced.Load(); f != nil {
		return false, *f
	}
	return time.Duration(int64(time.Since(l.base))-l.renewed.Load()) < c.cfg.OwnerLease*3/4, nil
}

// consumerStream is the stream clearing's consumer reads: the event
// stream, or with verifier partitions the verified stream (partitions.go).
func (c *Clearing) consumerStream() string {
	if c.cfg.VerifierPartitions > 0 {
		return VerifiedStream
	}
	return fare.EventStream
}

// leaseLapsed says whether this process has lost its hold on the event
// consumer: superseded (fenced), or renewed once and not since for more
// than the fresh part of the lease (a pause another process may have
// taken over in). A process that claimed the consumer and has not renewed
// yet (opened, before Run's first renewal) has not lapsed: the claim
// checked the owner record.
func (c *Clearing) leaseLapsed() bool {
	l := &c.lease
	if l.kv == nil {
		return false
	}
	if l.fenced.Load() != nil {
		return true
	}
	r := l.renewed.Load()
	return r >= 0 && time.Duration(int64(time.Since(l.base))-r) >= c.cfg.OwnerLease*3/4
}

// storeID reads (or makes) the data dir's store id.
func storeID(dataDir string) (string, error) {
	b, err := fare.LoadOrCreateSecret(filepath.Join(dataDir, StoreIDFile), 16, "store id")
	if err != nil {
		return "", err
	}
	return "0x" + hex.EncodeToString(b), nil
}

// claimConsumer makes sure the event consumer is this store's and this
// process's: it records the store as the owner the first time
// (compare-and-set, so of two stores starting at once one wins), and
// refuses, naming the owner, when another store holds it. Another process
// of this same store (a copy of the data dir) that renews its record is
// refused too (ErrStoreRunning); one that stopped cleanly released it, and
// one that crashed is taken over once its record has gone OwnerLease
// without renewal.
func (c *Clearing) claimConsumer(ctx context.Context, consumer string) error {
	id, err := storeID(c.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("clearing: %w", err)
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:      OwnersBucket,
		Description: "faregate: the clearing store that owns each durable consumer of the event stream",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    c.bucketReplicas(ctx, OwnersBucket),
		Metadata:    map[string]string{streamOwnerKey: streamOwnerValue},
	}
	kv, err := retryPlacement(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return c.js.CreateOrUpdateKeyValue(ctx, cfg) })
	if err != nil {
		return fmt.Errorf("clearing: owners bucket %s: %w", OwnersBucket, err)
	}
	l := &c.lease
	l.kv, l.key, l.store, l.process, l.since = kv, "consumer."+consumer, id, newProcessID(), c.cfg.Now().UTC().Truncate(time.Second)
	l.base = time.Now()
	// Not fresh until Run's guard has written the record again (its first
	// renewal, at once): another store that read the record before this
	// one made its consumer may take it over meanwhile (consumerGone), and
	// this process must then commit nothing (an outside review ran two
	// stores, started together, on one consumer). A renewal compared and
	// set on this claim's revision either fails, fencing this process, or
	// makes the other store's take-over fail.
	l.renewed.Store(-int64(24 * time.Hour))
	mine, dir := c.ownerRecord()
	key := l.key
	for range 3 {
		// Each call retried while the cluster does not answer (a node
		// restarting, the bucket's replica moving as clearing starts).
		if rev, err := retryPlacement(ctx, func(ctx context.Context) (uint64, error) { return kv.Create(ctx, key, mine) }); err == nil {
			l.rev = rev
			c.log.Info("event consumer claimed for this store", "consumer", consumer, "store", id)
			return nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("clearing: claim consumer %s: %w%s", consumer, err, clusterHint(err))
		}
		e, err := retryPlacement(ctx, func(ctx context.Context) (jetstream.KeyValueEntry, error) { return kv.Get(ctx, key) })
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted between the two calls: try again
		}
		if err != nil {
			return fmt.Errorf("clearing: owner of consumer %s: %w%s", consumer, err, clusterHint(err))
		}
		owner, err := parseOwner(e.Value())
		if err != nil {
			// Not a record any clearing wrote (a party with full access;
			// a JetStream reply a terminal aimed at the bucket, on a
			// server configured before NATSAccounts). A running owner puts
			// its record back at once: taken only once it has stayed so
			// for a lease (taking it at once let a second store in beside
			// a running one).
			live, last, rerr := c.ownerRenews(ctx, kv, key, e.Revision())
			if rerr != nil {
				return fmt.Errorf("clearing: owner of consumer %s: %w", consumer, rerr)
			}
			if live {
				continue // written again: read what it is now
			}
			if rev, err := kv.Update(ctx, key, mine, last); err == nil {
				l.rev = rev
				c.log.Warn("event consumer's owner record was not one (a JetStream reply written into the bucket?): replaced by this store's", "consumer", consumer, "store", id, "was", err)
				return nil
			}
			continue
		}
		if owner.Store == id {
			rev := e.Revision()
			if have := c.store.appliedN.Load(); owner.Applied > have {
				return fmt.Errorf("%w: it has applied %d events, the store's process %s on %s (data dir %s) had applied %d when it last renewed its hold (%s), and confirmed them to the gates, which deleted them: taking over from here would lose them for good. Start clearing on the most recent copy; only if it is gone for good, release the consumer (nats kv del %s %s) and accept the loss",
					ErrStoreStale, have, owner.Process, owner.Host, owner.DataDir, owner.Applied, owner.Renewed.Format(time.RFC3339), OwnersBucket, key)
			}
			if owner.Process != "" && owner.Process != l.process && c.embedded == nil {
				// (Its own process's record is this start's: a create
				// whose answer was lost and was sent again.)
				// Held by a process of this store: a copy of the data
				// dir running, or this store's process that crashed. (On
				// the embedded server, started by this process from the
				// data dir, the holder can only be a process that died.)
				live, last, err := c.ownerRenews(ctx, kv, key, rev)
				if err != nil {
					return fmt.Errorf("clearing: owner of consumer %s: %w", consumer, err)
				}
				if live {
					return fmt.Errorf("%w: process %s holds consumer %q of %s for this store %s (data dir %s on %s, renewed %s): a copy of this data dir is running; stop one of them (two would split every terminal's events, each confirming what the other never saw)",
						ErrStoreRunning, owner.Process, consumer, c.consumerStream(), id, owner.DataDir, owner.Host, owner.Renewed.Format(time.RFC3339))
				}
				rev = last
				c.log.Warn("this store's previous process stopped renewing the event consumer (a crash): taken over", "consumer", consumer, "previous_process", owner.Process, "previous_host", owner.Host, "lease", c.cfg.OwnerLease)
			}
			if nrev, err := kv.Update(ctx, key, mine, rev); err == nil {
				l.rev = nrev
				return nil
			}
			continue
		}
		// A record whose consumer is gone (the stream was reset, the
		// consumer deleted) guards no position: the next store may take it.
		// The consumer reads the event stream, or the verified stream with
		// verifier partitions (partitions.go): gone means gone from both.
		if c.consumerGone(ctx, consumer) {
			if rev, err := kv.Update(ctx, key, mine, e.Revision()); err == nil {
				l.rev = rev
				c.log.Info("event consumer claimed for this store; the previous owner's consumer was gone", "consumer", consumer, "store", id, "previous", owner.Store)
				return nil
			}
			continue
		}
		return fmt.Errorf("%w: consumer %q of %s is owned by store %s (data dir %s on %s, since %s); this store is %s (%s). Stop this one, or release the consumer (nats kv del %s %s) only once the owner's store is gone for good",
			ErrConsumerOwned, consumer, c.consumerStream(), owner.Store, owner.DataDir, owner.Host, owner.Since.Format(time.RFC3339), id, dir, OwnersBucket, key)
	}
	return fmt.Errorf("clearing: claim consumer %s: its owner record keeps changing", consumer)
}

// ownerRenews watches the owner record under key, at revision rev, for
// OwnerLease: live when it is written again meanwhile (its holder renews
// it); else last is the revision it stayed at. Judged by revisions, not by
// the holder's clock.
func (c *Clearing) ownerRenews(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64) (live bool, last uint64, err error) {
	c.log.Info("this store's event consumer is held by a process of this store: waiting to see whether it renews its hold", "lease", c.cfg.OwnerLease)
	deadline := time.Now().Add(c.cfg.OwnerLease)
	for time.Now().Before(deadline) {
		sleep(ctx, c.cfg.OwnerLease/20)
		if err := ctx.Err(); err != nil {
			return false, 0, err
		}
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return false, 0, nil
		}
		if err != nil {
			return false, 0, err
		}
		if e.Revision() != rev {
			return true, 0, nil
		}
	}
	return false, rev, nil
}

// newProcessID is a random id for this process's hold on the consumer.
func newProcessID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "0x" + hex.EncodeToString(b)
}

// consumerGone says consumer exists on neither the event stream nor the
// verified stream.
func (c *Clearing) consumerGone(ctx context.Context, consumer string) bool {
	for _, stream := range []string{fare.EventStream, VerifiedStream} {
		_, err := c.js.Consumer(ctx, stream, consumer)
		if err == nil || !(errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)) {
			return false
		}
	}
	return true
}

// ownerRecord is this process's owner record of the consumer (encoded),
// and its data dir.
func (c *Clearing) ownerRecord() ([]byte, string) {
	host, _ := os.Hostname()
	dir, _ := filepath.Abs(c.cfg.DataDir)
	b, _ := json.Marshal(ConsumerOwner{Store: c.lease.store, Host: host, DataDir: dir, Since: c.lease.since,
		Process: c.lease.process, Renewed: c.cfg.Now().UTC().Truncate(time.Second), Applied: c.store.appliedN.Load()})
	return b, dir
}

// releaseConsumer marks the owner record released (no process) when this
// process holds it, so this store's next process takes it at once.
func (c *Clearing) releaseConsumer() {
	l := &c.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kv == nil || l.rev == 0 || l.fenced.Load() != nil {
		return
	}
	host, _ := os.Hostname()
	dir, _ := filepath.Abs(c.cfg.DataDir)
	b, _ := json.Marshal(ConsumerOwner{Store: l.store, Host: host, DataDir: dir, Since: l.since, Applied: c.store.appliedN.Load()})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := l.kv.Update(ctx, l.key, b, l.rev); err != nil {
		c.log.Warn("event consumer not released (this store's next process waits the owner lease out)", "err", err)
	}
	l.rev = 0
}

// parseOwner reads an owner record strictly: every field known, the store
// id set. Anything else was not written by a clearing.
func parseOwner(v []byte) (ConsumerOwner, error) {
	var owner ConsumerOwner
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&owner); err != nil {
		return owner, fmt.Errorf("owner record: %w", err)
	}
	if owner.Store == "" || owner.Since.IsZero() {
		return owner, errors.New("owner record: no store or no since")
	}
	return owner, nil
}

// guardOwnerRecord keeps this process's owner record of the event consumer
// in the owners bucket while clearing runs: it renews it every OwnerLease/4
// (compare-and-set on its last revision), and anything that is no owner
// record written there (a JetStream reply aimed at the key) is replaced at
// once. An owner record of another process fences this one: stop is
// called and Run returns ErrLeaseLost (a process of this store took the
// consumer over, this one having not renewed within the lease) or
// ErrConsumerOwned (another store claimed it, the consumer having been
// gone).
func (c *Clearing) guardOwnerRecord(ctx context.Context, stop context.CancelFunc) {
	l := &c.lease
	if l.kv == nil {
		return
	}
	w, err := l.kv.Watch(ctx, l.key, jetstream.UpdatesOnly())
	if err != nil {
		c.log.Warn("owners bucket not watched", "err", err)
	}
	var updates <-chan jetstream.KeyValueEntry
	if w != nil {
		defer w.Stop()
		updates = w.Updates()
	}
	renew := time.NewTicker(c.cfg.OwnerLease / 4)
	defer renew.Stop()
	failed := 0 // renewals the store failed to write, in a row
	// Put-backs are summarised: a terminal can aim JetStream replies at the
	// record thousands of times a second (an outside recheck saw 532,000
	// warning lines in five minutes).
	repairs := fare.NewTally(c.log, "event consumer's owner record overwritten (a JetStream reply aimed at it?)")
	tctx, stopTally := context.WithCancel(ctx)
	defer stopTally()
	go repairs.Run(tctx, 10*time.Second)
	fence := func(owner ConsumerOwner) {
		err := fmt.Errorf("%w: process %s on %s (data dir %s) holds it now; this one (%s) stops", ErrLeaseLost, owner.Process, owner.Host, owner.DataDir, l.process)
		if owner.Store != l.store {
			// Another store claimed the consumer, having found it gone
			// (deleted, the stream reset, or not yet made by this one
			// when both started). Putting this record back would run two
			// stores on one consumer, each applying part of every
			// terminal's events (an outside review): this one stops.
			err = fmt.Errorf("%w: store %s (process %s on %s, data dir %s) claimed it, the consumer having been gone; this store %s stops applying",
				ErrConsumerOwned, owner.Store, owner.Process, owner.Host, owner.DataDir, l.store)
		}
		if l.fenced.CompareAndSwap(nil, &err) {
			c.log.Error("another process took the event consumer over: this one stops applying", "err", err)
		}
		stop()
	}
	// renewRecord writes this process's record again; true: stop guarding
	// (fenced, or the store failing).
	renewRecord := func() bool {
		if l.paused.Load() {
			return false
		}
		l.mu.Lock()
		mine, _ := c.ownerRecord()
		sent := time.Now()
		rev, err := l.kv.Update(ctx, l.key, mine, l.rev)
		if err == nil {
			l.rev = rev
			l.noteRenewed(sent)
			failed = 0
		}
		l.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			e, gerr := l.kv.Get(ctx, l.key)
			if gerr == nil {
				if owner, perr := parseOwner(e.Value()); perr == nil {
					if owner.Store != l.store || owner.Process != l.process {
						fence(owner)
						return true
					}
					l.mu.Lock()
					l.rev = e.Revision() // this process's own record, written by a put-back
					l.mu.Unlock()
					failed = 0
					return false
				}
			}
			if raced(err) {
				// The store wrote another value first (a reply aimed at
				// the record): it takes writes. Ours goes back over it.
				repairs.Add("renewal raced", err.Error())
				if gerr == nil {
					l.mu.Lock()
					sent := time.Now()
					if rev, err := l.kv.Update(ctx, l.key, mine, e.Revision()); err == nil {
						l.rev = rev
						l.noteRenewed(sent)
					}
					l.mu.Unlock()
				}
				return false
			}
			c.log.Warn("event consumer's owner record not renewed", "err", err)
			if failed++; c.embedded != nil && failed >= embeddedStoreFailures {
				// The embedded server's JetStream store takes no writes
				// (a critical write error, such as running out of file
				// descriptors, sticks until the server restarts: an
				// outside red team saw clearing apply nothing for
				// minutes after the attack had ended). Its supervisor's
				// restart is what recovers it; nothing accepted is lost,
				// the gates keep their taps.
				err := fmt.Errorf("the embedded NATS server's JetStream store has taken no write for %s (%v): clearing stops, to be restarted", time.Duration(failed)*c.cfg.OwnerLease/4, err)
				if l.fenced.CompareAndSwap(nil, &err) {
					c.log.Error("embedded JetStream store failing: clearing stops so that a restart recovers it", "err", err)
				}
				stop()
				return true
			}
		}
		return false
	}
	// The first renewal is now, not a quarter lease from now: the record
	// was written when the consumer was claimed (Open), and a Run that
	// starts later than three quarters of a lease after that held every
	// commit until the first tick (a fresh-clone CI run saw the city's
	// first seconds applied late and sealed into one batch).
	if renewRecord() {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-renew.C:
			if renewRecord() {
				return
			}
		case u, ok := <-updates:
			if !ok {
				updates = nil // the watch ended (its bucket gone): renewals say the rest
				continue
			}
			if u == nil {
				continue
			}
			owner, perr := parseOwner(u.Value())
			if perr == nil && u.Operation() == jetstream.KeyValuePut {
				if owner.Store != l.store || owner.Process != l.process {
					fence(owner)
					return
				}
				continue // this process's own record
			}
			l.mu.Lock()
			mine, _ := c.ownerRecord()
			sent := time.Now()
			rev, err := l.kv.Update(ctx, l.key, mine, u.Revision())
			if err == nil {
				l.rev = rev
				l.noteRenewed(sent)
			}
			l.mu.Unlock()
			if err != nil && ctx.Err() == nil {
				repairs.Add("not put back", err.Error())
				continue
			}
			repairs.Add("put back", fmt.Sprintf("a value of %d bytes replaced", len(u.Value())))
		}
	}
}
