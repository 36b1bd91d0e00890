package clearing

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/fare"
)

// Gate lists in JetStream key-value buckets (see fare/gatelist.go). Clearing
// owns and alone writes two buckets, the deny list (fare.DenyBucket) and the
// concession enrolments (fare.EnrolBucket): per medium (key fare.DenyKey)
// its signed fare.GateEntry, and per list its signed fare.GateHead. Its
// store stays the source of truth; the buckets are how the lists reach the
// gates, which watch them read only and keep a copy in their own store
// (terminal/deny.go).
//
// A terminal may watch the buckets but not write them (fare.TerminalPermissions),
// from an account of its own (NATSAccounts), so that a JetStream reply it
// aims at a $KV subject goes back into its account instead of into the
// bucket (on a server configured before those accounts it landed there).
// A push consumer it makes still delivers wherever its request says, and
// a party with full access can write anything. So:
//
//   - every value is signed, and terminals refuse what does not verify (a
//     replaced value changes nothing at a gate that holds the medium);
//   - clearing watches its buckets and puts back its own value whenever
//     another one appears (purging keys it never wrote), and reconciles each
//     bucket whole with its store at start and after a failed write;
//   - clearing reads JetStream's API audit advisories and deletes, at once,
//     every consumer on the buckets that is not a terminal's watch delivering
//     into that terminal's own inbox (durable, acknowledged, long-lived or
//     delivering anywhere else), and logs who made it.

const (
	// pEnrolIndex indexes enrolled media: G<key[16]> -> rider account
	// (enrol.go writes it with the rider's first record).
	pEnrolIndex = 'G'
	// pEnrolSum holds each enrolled medium's share of the enrolments'
	// digest: H<key[16]> -> fare.EnrolEntrySum of its entry (its version
	// and periods), written with every record, so that a start digests
	// the list without reading every rider's history.
	pEnrolSum = 'H'
	// gateReconcileEvery is how often clearing reconciles the buckets whole
	// after a write failed.
	gateReconcileEvery = 10 * time.Second
	// maxWatchInactive bounds the inactive threshold of a terminal's watch
	// consumer.
	maxWatchInactive = time.Minute
)

// gateLists is clearing's state of both gate lists.
type gateLists struct {
	denyWrite  sync.Mutex              // serialises deny-list changes and repairs: store, then bucket
	group      groupCommit[denyChange] // single changes waiting for denyWrite (deny.go)
	writes     atomic.Uint64           // deny-list transactions tried (deny.go)
	enrolWrite sync.Mutex              // serialises enrolments and their repairs

	mu           sync.Mutex
	denyVersion  uint64
	denyCount    int
	denyDigest   fare.DenyDigest
	enrolVersion uint64
	enrolCount   int
	enrolDigest  fare.DenyDigest

	kv [2]jetstream.KeyValue // deny, enrolments (nil before openGateLists)
	// streams are the buckets' streams, from which junk is purged by
	// subject (deleteJunk).
	streams [2]jetstream.Stream
	dirty   atomic.Bool // a bucket write failed: reconcile
	// repaired counts values put back or purged by the watch; deleted the
	// consumers the guard deleted.
	repaired, deleted atomic.Uint64
	tally             *fare.Tally // repairs and refused consumers
	usersMu           sync.Mutex
	users             map[string]string // NATS user NKey -> terminal id
	// raiseTo is, per list (deny list, enrolments), the newest version a
	// gate showed it follows (a head this clearing signed, newer than its
	// store: restored from an older backup); raise wakes followDenyList to
	// number past it.
	raiseTo [2]atomic.Uint64
	raise   chan struct{}
	// head is, per list, the head value last put (base64, as gates show
	// it): a gate showing it needs no check.
	head [2]atomic.Pointer[string]
}

func newGateLists(log *slog.Logger) *gateLists {
	return &gateLists{tally: fare.NewTally(log, "gate-list buckets guarded"), raise: make(chan struct{}, 1)}
}

func listIndex(l fare.GateList) int {
	if l == fare.EnrolGateList {
		return 1
	}
	return 0
}

// openGateLists creates (or updates) both buckets, starts the consumer
// guard and reconciles the buckets with the store.
func (c *Clearing) openGateLists(ctx context.Context) error {
	g := c.deny
	for _, l := range []fare.GateList{fare.DenyGateList, fare.EnrolGateList} {
		cfg := jetstream.KeyValueConfig{
			Bucket:       l.Bucket(),
			Description:  "faregate " + l.String() + ": clearing's signed entries, watched by every gate",
			History:      1,
			Storage:      jetstream.FileStorage,
			MaxValueSize: MaxPayload,
			Replicas:     c.bucketReplicas(ctx, l.Bucket()),
			Metadata:     map[string]string{streamOwnerKey: streamOwnerValue},
		}
		kv, err := retryPlacement(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return c.js.CreateOrUpdateKeyValue(ctx, cfg) })
		if err != nil {
			return fmt.Errorf("gate-list bucket %s: %w", l.Bucket(), err)
		}
		g.kv[listIndex(l)] = kv
		st, err := c.js.Stream(ctx, "KV_"+l.Bucket())
		if err != nil {
			return fmt.Errorf("gate-list bucket %s: its stream: %w", l.Bucket(), err)
		}
		g.streams[listIndex(l)] = st
	}
	if !c.cfg.plain {
		sub, err := c.nc.Subscribe(jsAuditAdvisory, c.guardGateConsumer)
		if err != nil {
			return fmt.Errorf("subscribe JetStream API audit: %w", err)
		}
		c.denySub = sub
	}
	for _, l := range []fare.GateList{fare.DenyGateList, fare.EnrolGateList} {
		if err := c.reconcileGateList(ctx, l); err != nil {
			c.log.Warn("gate-list bucket not reconciled with the store; retrying", "list", l.String(), "err", err)
			g.dirty.Store(true)
		}
	}
	return nil
}

// signEntry is e signed with the confirmation key, the rotation chain ahead.
func (c *Clearing) signEntry(e fare.GateEntry) ([]byte, error) {
	b, err := e.Sign(c.cfg.ConfirmKey)
	if err != nil {
		return nil, err
	}
	return fare.Bundle(c.rotations, b), nil
}

// signHead is the list's current head, signed.
func (c *Clearing) signHead(l fare.GateList) ([]byte, error) {
	g := c.deny
	g.mu.Lock()
	h := fare.GateHead{List: l, Version: g.denyVersion, Count: uint64(g.denyCount), Digest: g.denyDigest}
	if l == fare.EnrolGateList {
		h = fare.GateHead{List: l, Version: g.enrolVersion, Count: uint64(g.enrolCount), Digest: g.enrolDigest}
	}
	g.mu.Unlock()
	b, err := h.Sign(c.cfg.ConfirmKey)
	if err != nil {
		return nil, err
	}
	v := fare.Bundle(c.rotations, b)
	// Ed25519 signs deterministically: this is the value the bucket gets
	// (a change, a reconciliation, a repair), which gates then show.
	shown := base64.StdEncoding.EncodeToString(v)
	g.head[listIndex(l)].Store(&shown)
	return v, nil
}

type gatePut struct {
	key   string
	value []byte
}

// putGateValues writes values into l's bucket, waiting for every
// acknowledgement.
func (c *Clearing) putGateValues(ctx context.Context, l fare.GateList, puts []gatePut) error {
	if c.deny.kv[listIndex(l)] == nil {
		return errors.New("gate-list buckets not open")
	}
	futures := make([]jetstream.PubAckFuture, 0, len(puts))
	for _, p := range puts {
		f, err := c.js.PublishAsync("$KV."+l.Bucket()+"."+p.key, p.value)
		if err != nil {
			return fmt.Errorf("put %s %s: %w", l.Bucket(), p.key, err)
		}
		futures = append(futures, f)
	}
	wait := time.NewTimer(30 * time.Second)
	defer wait.Stop()
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("put %s %s: %w", l.Bucket(), puts[i].key, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-wait.C:
			return fmt.Errorf("put %s: no acknowledgement in 30s", l.Bucket())
		}
	}
	return nil
}

// publishGate puts entries and the list's head; a failure is logged and
// leaves the bucket to the next reconciliation.
func (c *Clearing) publishGate(ctx context.Context, l fare.GateList, entries []fare.GateEntry) {
	puts := make([]gatePut, 0, len(entries)+1)
	for _, e := range entries {
		b, err := c.signEntry(e)
		if err != nil {
			c.log.Error("sign gate-list entry", "list", l.String(), "key", e.Key.Hex(), "err", err)
			c.deny.dirty.Store(true)
			return
		}
		puts = append(puts, gatePut{e.Key.String(), b})
	}
	head, err := c.signHead(l)
	if err != nil {
		c.log.Error("sign gate-list head", "list", l.String(), "err", err)
		c.deny.dirty.Store(true)
		return
	}
	puts = append(puts, gatePut{fare.GateHeadKey, head})
	if err := c.putGateValues(ctx, l, puts); err != nil {
		c.log.Warn("gate-list bucket not written; reconciling it with the store shortly (gates keep their copy meanwhile)", "list", l.String(), "err", err)
		c.deny.dirty.Store(true)
	}
}

// publishDenyChanges sends changes already durable in the store.
func (c *Clearing) publishDenyChanges(ctx context.Context, applied []denyChange) {
	entries := make([]fare.GateEntry, len(applied))
	for i, ch := range applied {
		entries[i] = fare.GateEntry{List: fare.DenyGateList, Version: ch.version, Key: ch.key, Listed: ch.listed}
	}
	c.publishGate(ctx, fare.DenyGateList, entries)
}

// enrolmentChanged is called after an enrolment record is durable (under
// enrolWrite): the medium's periods go to the enrolments bucket at version
// (the record's Seq); prev is the medium's share of the digest before (nil:
// the medium is new to the list).
func (c *Clearing) enrolmentChanged(ctx context.Context, key fare.DenyHash, version uint64, prev *[32]byte, periods []fare.EnrolmentPeriod) {
	g := c.deny
	g.mu.Lock()
	g.enrolVersion = max(g.enrolVersion, version)
	if prev == nil {
		g.enrolCount++
	} else {
		g.enrolDigest.ToggleSum(*prev)
	}
	g.enrolDigest.ToggleEnrolment(key, version, periods)
	g.mu.Unlock()
	c.publishGate(ctx, fare.EnrolGateList, []fare.GateEntry{{List: fare.EnrolGateList, Version: version, Key: key, Periods: periods}})
}

// expectedEntry is the entry clearing's store says key's bucket value must
// be: (nil, false) for a medium the list does not hold. For the deny list,
// an unlisted medium's own tombstone is fine as it is (ok true, nil want).
func (c *Clearing) expectedEntry(l fare.GateList, key fare.DenyHash, got []byte) (want []byte, keep bool, err error) {
	var e fare.GateEntry
	held := false
	err = c.store.db.View(func(txn *badger.Txn) error {
		if l == fare.DenyGateList {
			v, listed, err := denyRecordVersion(txn, key)
			if err != nil {
				return err
			}
			if listed {
				e, held = fare.GateEntry{List: l, Version: v, Key: key, Listed: true}, true
			}
			return nil
		}
		rider, err := enrolledRider(txn, key)
		if err != nil || rider == "" {
			return err
		}
		hist, err := riderEnrolments(txn, rider)
		if err != nil || len(hist) == 0 {
			return err
		}
		e, held = fare.GateEntry{List: l, Version: hist[len(hist)-1].Seq, Key: key, Periods: EnrolmentPeriods(hist)}, true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if held {
		want, err = c.signEntry(e)
		return want, false, err
	}
	if l != fare.DenyGateList || got == nil {
		return nil, false, nil
	}
	// Unlisted: its tombstone stays; a listing of ours the store no longer
	// has (an unlisting whose put was lost) becomes a tombstone at the
	// list's version; anything else goes.
	_, b, err := fare.Unbundle(got)
	if err != nil {
		return nil, false, nil
	}
	ge, err := fare.VerifyGateEntry(b, []ed25519.PublicKey{c.ConfirmationKey()})
	if err != nil || ge.List != l || ge.Key != key {
		return nil, false, nil
	}
	if !ge.Listed {
		return nil, true, nil
	}
	c.deny.mu.Lock()
	v := c.deny.denyVersion
	c.deny.mu.Unlock()
	want, err = c.signEntry(fare.GateEntry{List: l, Version: max(v, ge.Version), Key: key})
	return want, false, err
}

// repairGateValue puts back clearing's value for key in l's bucket if got
// (at revision rev) is not it and is still the key's latest value (one that
// a newer write has replaced, clearing's own change racing the watch, is
// checked when that write's update comes); keys clearing never wrote are
// purged. It reports what it did ("" for nothing).
func (c *Clearing) repairGateValue(ctx context.Context, l fare.GateList, key string, got []byte, rev uint64) (string, error) {
	kv := c.deny.kv[listIndex(l)]
	superseded := func() bool {
		cur, err := kv.Get(ctx, key)
		return err == nil && cur.Revision() > rev
	}
	var want []byte
	if key == fare.GateHeadKey {
		var err error
		if want, err = c.signHead(l); err != nil {
			return "", err
		}
	} else {
		h, err := fare.ParseDenyKey(key)
		if err != nil {
			// A key clearing never writes: its message deleted (a purge
			// marker, got nil, from before, is left to reconcileGateList's sweep).
			if got == nil || superseded() {
				return "", nil
			}
			return "deleted", c.deleteJunk(ctx, l, []junkMsg{{key, rev}})
		}
		w, keep, err := c.expectedEntry(l, h, got)
		switch {
		case err != nil:
			return "", err
		case keep:
			return "", nil
		case w == nil && got == nil:
			return "", nil
		case w == nil:
			if superseded() {
				return "", nil
			}
			return "deleted", c.deleteJunk(ctx, l, []junkMsg{{key, rev}})
		}
		want = w
	}
	if bytes.Equal(got, want) || superseded() {
		return "", nil
	}
	return "put back", c.putGateValues(ctx, l, []gatePut{{key, want}})
}

// junkMsg is a value clearing never wrote: its key, and its revision.
type junkMsg struct {
	key string
	rev uint64
}

// deleteJunk removes values clearing never wrote from l's bucket: the
// key's messages up to the junk's revision, by a purge of its subject on
// the stream, which leaves nothing behind. Not kv.Purge, whose marker
// stays for ever and goes to every gate, at every start: a terminal could
// make the server write into the bucket before NATSAccounts (a JetStream
// API request whose reply subject is a key of it), and an outside test left 1.88 million
// markers that way, until a new gate missed its list wait and let a card
// listed as stolen through. A newer value of the key (clearing's own) is
// kept.
func (c *Clearing) deleteJunk(ctx context.Context, l fare.GateList, junk []junkMsg) error {
	st := c.deny.streams[listIndex(l)]
	for _, j := range junk {
		if j.rev == 0 {
			continue
		}
		if err := st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+l.Bucket()+"."+j.key), jetstream.WithPurgeSequence(j.rev+1)); err != nil {
			return fmt.Errorf("remove junk value %s of %s: %w", j.key, l.Bucket(), err)
		}
	}
	return nil
}

// lockList takes the writer lock of l, so a repair never races a change.
func (c *Clearing) lockList(l fare.GateList) func() {
	mu := &c.deny.denyWrite
	if l == fare.EnrolGateList {
		mu = &c.deny.enrolWrite
	}
	mu.Lock()
	return mu.Unlock
}

// reconcileGateList reads l's bucket whole and makes it what the store
// says: every value clearing's, every medium the store holds there, the
// head current.
func (c *Clearing) reconcileGateList(ctx context.Context, l fare.GateList) error {
	defer c.lockList(l)()
	kv := c.deny.kv[listIndex(l)]
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	w, err := kv.WatchAll(rctx)
	if err != nil {
		return fmt.Errorf("read bucket %s: %w", l.Bucket(), err)
	}
	defer w.Stop()
	got := map[string][]byte{}
	revs := map[string]uint64{}
	markers := 0 // purge markers left by clearings before deleteJunk
	for u := range w.Updates() {
		if u == nil {
			break
		}
		revs[u.Key()] = u.Revision()
		if u.Operation() == jetstream.KeyValuePut {
			got[u.Key()] = u.Value()
		} else {
			got[u.Key()] = nil
			markers++
		}
	}
	if rctx.Err() != nil {
		return fmt.Errorf("read bucket %s: %w", l.Bucket(), rctx.Err())
	}
	// What the store holds, present or not in the bucket.
	var keys []fare.DenyHash
	err = c.store.db.View(func(txn *badger.Txn) error {
		prefix := []byte{pDeny}
		if l == fare.EnrolGateList {
			prefix = []byte{pEnrolIndex}
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if k := it.Item().Key(); len(k) == 1+fare.DenyKeySize {
				keys = append(keys, fare.DenyHash(k[1:]))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var puts []gatePut
	var purges []junkMsg
	for _, k := range keys {
		if _, ok := got[k.String()]; ok {
			continue
		}
		want, _, err := c.expectedEntry(l, k, nil)
		if err != nil {
			return err
		}
		if want != nil {
			puts = append(puts, gatePut{k.String(), want})
		}
	}
	for key, v := range got {
		if key == fare.GateHeadKey {
			continue
		}
		h, err := fare.ParseDenyKey(key)
		if err != nil {
			if v != nil { // a marker is swept below, not purged again
				purges = append(purges, junkMsg{key, revs[key]})
			}
			continue
		}
		want, keep, err := c.expectedEntry(l, h, v)
		switch {
		case err != nil:
			return err
		case keep || (want == nil && v == nil):
		case want == nil:
			purges = append(purges, junkMsg{key, revs[key]})
		case !bytes.Equal(v, want):
			puts = append(puts, gatePut{key, want})
		}
	}
	head, err := c.signHead(l)
	if err != nil {
		return err
	}
	if !bytes.Equal(got[fare.GateHeadKey], head) || len(puts) > 0 {
		puts = append(puts, gatePut{fare.GateHeadKey, head})
	}
	if err := c.deleteJunk(ctx, l, purges); err != nil {
		return err
	}
	if markers > 0 {
		// Purge markers of junk (clearings before deleteJunk purged it):
		// every one would go to every gate, at every start, for ever.
		if err := kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(-1)); err != nil {
			return fmt.Errorf("sweep purge markers of %s: %w", l.Bucket(), err)
		}
	}
	for len(puts) > 0 {
		chunk := puts[:min(len(puts), denyChunk)]
		puts = puts[len(chunk):]
		if err := c.putGateValues(ctx, l, chunk); err != nil {
			return err
		}
	}
	if n := len(purges); n > 0 || markers > 0 {
		c.log.Info("gate-list bucket reconciled", "list", l.String(), "deleted", n, "markers_swept", markers)
	}
	return nil
}

// guardGateLists watches both buckets and puts back clearing's value
// wherever another appears, until ctx ends.
func (c *Clearing) guardGateLists(ctx context.Context) {
	g := c.deny
	for ctx.Err() == nil {
		err := c.watchGateLists(ctx)
		if ctx.Err() != nil {
			return
		}
		c.log.Debug("gate-list repair watch ended; watching again", "err", err)
		g.dirty.Store(true) // what went by meanwhile is found by reconciling
		sleep(ctx, time.Second)
	}
}

func (c *Clearing) watchGateLists(ctx context.Context) error {
	g := c.deny
	var ws [2]jetstream.KeyWatcher
	for i, kv := range g.kv {
		w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
		if err != nil {
			return err
		}
		defer w.Stop()
		ws[i] = w
	}
	for {
		var u jetstream.KeyValueEntry
		var ok bool
		l := fare.DenyGateList
		select {
		case <-ctx.Done():
			return nil
		case u, ok = <-ws[0].Updates():
		case u, ok = <-ws[1].Updates():
			l = fare.EnrolGateList
		}
		if !ok {
			return errors.New("watch closed")
		}
		if u == nil {
			continue
		}
		var got []byte
		if u.Operation() == jetstream.KeyValuePut {
			got = u.Value()
		}
		unlock := c.lockList(l)
		did, err := c.repairGateValue(ctx, l, u.Key(), got, u.Revision())
		unlock()
		switch {
		case err != nil:
			c.log.Warn("gate-list value not repaired; reconciling the bucket shortly", "list", l.String(), "key", u.Key(), "err", err)
			g.dirty.Store(true)
		case did != "":
			g.repaired.Add(1)
			g.tally.Add("repaired", fmt.Sprintf("%s %q: a value clearing did not write (%d bytes); %s", l.Bucket(), u.Key(), len(got), did))
		}
	}
}

// jsAuditAdvisory is where the NATS server reports every JetStream API
// request with its client and body.
const jsAuditAdvisory = "$JS.EVENT.ADVISORY.API"

// guardGateConsumer deletes a consumer made on a gate-list bucket that is
// not a terminal's watch into its own inbox.
func (c *Clearing) guardGateConsumer(m *nats.Msg) {
	c.watchAPIRate(m.Data)
	cc, ok := parseConsumerCreate(m.Data)
	if !ok || (cc.stream != "KV_"+fare.DenyBucket && cc.stream != "KV_"+fare.EnrolBucket) || cc.user == c.natsID.public {
		return
	}
	stream, name := cc.stream, cc.name
	term := c.terminalOfNATSUser(cc.user)
	why := watchViolation(term, cc.cfg, "")
	if why == "" {
		if excess := c.watches.add(stream, term, name); len(excess) > 0 {
			c.dropWatches(context.Background(), stream, excess, overCap(term))
		}
		return
	}
	c.dropWatches(context.Background(), stream, []string{name}, fmt.Sprintf("made by terminal %q: %s", term, why))
}

// terminalOfNATSUser maps a NATS user NKey to its registered terminal.
func (c *Clearing) terminalOfNATSUser(user string) string {
	g := c.deny
	g.usersMu.Lock()
	defer g.usersMu.Unlock()
	if id, ok := g.users[user]; ok {
		return id
	}
	g.users = make(map[string]string)
	for _, t := range c.terminals.All() {
		if u, err := fare.NATSUserKey(t.PublicKey, t.ID); err == nil {
			g.users[u] = t.ID
		}
	}
	return g.users[user]
}

// followDenyList applies queued deny-list and enrolment requests every
// second, guards the gate-list buckets, reconciles them after a failed
// write and flushes the guard's log until ctx ends.
func (c *Clearing) followDenyList(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.deny.tally.Run(ctx, 10*time.Second)
	}()
	go func() {
		defer wg.Done()
		c.guardGateLists(ctx)
	}()
	defer wg.Wait()
	c.applyDenyQueue(ctx)
	c.applyEnrolQueue(ctx)
	queue := time.NewTicker(time.Second)
	defer queue.Stop()
	reconcile := time.NewTicker(gateReconcileEvery)
	defer reconcile.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-queue.C:
			c.applyDenyQueue(ctx)
			c.applyEnrolQueue(ctx)
		case <-c.deny.raise:
			c.raiseGateVersion(ctx, fare.DenyGateList)
			c.raiseGateVersion(ctx, fare.EnrolGateList)
		case <-reconcile.C:
			if !c.deny.dirty.Swap(false) {
				continue
			}
			for _, l := range []fare.GateList{fare.DenyGateList, fare.EnrolGateList} {
				if err := c.reconcileGateList(ctx, l); err != nil && ctx.Err() == nil {
					c.log.Warn("gate-list bucket not reconciled; retrying", "list", l.String(), "err", err)
					c.deny.dirty.Store(true)
				}
			}
		}
	}
}

// EnrolmentListVersion is the enrolments' version (the records written) and
// how many media have ever been enrolled: what the gates' copies reach.
func (c *Clearing) EnrolmentListVersion() (version uint64, n int) {
	c.deny.mu.Lock()
	defer c.deny.mu.Unlock()
	return c.deny.enrolVersion, c.deny.enrolCount
}

// GateListGuard counts what clearing did to keep its buckets its own since
// it started: values another party put there that it put back or purged,
// and consumers on the buckets it deleted.
func (c *Clearing) GateListGuard() (repaired, consumersDeleted uint64) {
	return c.deny.repaired.Load(), c.deny.deleted.Load()
}

// noteGateHead takes the head of list l a gate showed on its watermark
// request (fare.DenyHeadHeader, fare.EnrolHeadHeader): one this clearing
// signed, newer than its list, says its store is older than lists it
// issued (restored from a backup). Its next changes would repeat version
// numbers the gates have seen, and the gates refuse its older head
// meanwhile, keeping media this store no longer lists (or enrolments it no
// longer holds) and passing media it lists again: it numbers past the
// gate's head at once (raiseGateVersion). Anything else is ignored.
func (c *Clearing) noteGateHead(l fare.GateList, value string) {
	g := c.deny
	i := listIndex(l)
	if cur := g.head[i].Load(); cur != nil && *cur == value {
		return // the head this clearing put last: the usual case, no signature to check
	}
	b, ok := shownHead(value)
	if !ok {
		return
	}
	h, err := fare.VerifyGateHead(b, []ed25519.PublicKey{c.ConfirmationKey()})
	if err != nil || h.List != l || h.Version >= maxRaisedVersion {
		return
	}
	g.mu.Lock()
	behind := h.Version > g.versionLocked(l)
	g.mu.Unlock()
	if !behind {
		return
	}
	for {
		v := g.raiseTo[i].Load()
		if h.Version <= v || g.raiseTo[i].CompareAndSwap(v, h.Version) {
			break
		}
	}
	select {
	case g.raise <- struct{}{}:
	default:
	}
}

// maxRaisedVersion bounds the versions a gate's head may number a list or
// the galleries past: only clearing's key signs heads, but one at 2^64-1
// would wrap the next version to 0 (an outside review).
const maxRaisedVersion = 1 << 62

// shownHead is the signed head in a value a gate showed on its watermark
// request (base64 of the value as the bucket held it, rotations ahead);
// false when it does not read as one.
func shownHead(value string) ([]byte, bool) {
	raw, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return nil, false
	}
	_, b, err := fare.Unbundle(raw)
	return b, err == nil
}

// versionLocked is list l's version; mu is held.
func (g *gateLists) versionLocked(l fare.GateList) uint64 {
	if l == fare.EnrolGateList {
		return g.enrolVersion
	}
	return g.denyVersion
}

// raiseGateVersion numbers list l past the newest head a gate showed
// (noteGateHead): the version is written (synced; an enrolment's record
// takes the next number after it), and a head at it issued, newer than
// every gate's, which the gates then follow (reading the bucket whole
// where their copy does not make it).
func (c *Clearing) raiseGateVersion(ctx context.Context, l fare.GateList) {
	g := c.deny
	defer c.lockList(l)()
	to := g.raiseTo[listIndex(l)].Load()
	g.mu.Lock()
	was := g.versionLocked(l)
	g.mu.Unlock()
	if to <= was {
		return // nothing shown past this list (the other one's raise, or changes since)
	}
	next := to + 1
	key := metaDenyVersion
	if l == fare.EnrolGateList {
		key = metaEnrolVersion
	}
	if err := c.store.db.Update(func(txn *badger.Txn) error {
		if l == fare.EnrolGateList {
			// No record at the raised version: the shares stay whole if
			// they were.
			if at, err := getU64(txn, metaEnrolSumsAt); err != nil {
				return err
			} else if at == was {
				if err := setU64(txn, metaEnrolSumsAt, next); err != nil {
					return err
				}
			}
		}
		return txn.Set(key, binary.BigEndian.AppendUint64(nil, next))
	}); err != nil {
		c.log.Error("gate list: version not raised past a gate's", "list", l.String(), "err", err)
		return
	}
	g.mu.Lock()
	if l == fare.EnrolGateList {
		g.enrolVersion = max(g.enrolVersion, next)
	} else {
		g.denyVersion = max(g.denyVersion, next)
	}
	g.mu.Unlock()
	lost := "listings made since the backup are lost, list them again"
	if l == fare.EnrolGateList {
		lost = "enrolments made since the backup are lost, enrol them again"
	}
	c.log.Warn("gate list: a gate follows a newer list this clearing issued than its store holds (restored from an older backup?): numbered past it, so the gates follow this store's list again; "+lost,
		"list", l.String(), "store_version", was, "gate_version", to, "version", next)
	c.publishGate(ctx, l, nil)
}
