package clearing

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// ConsumerOwner is the value of a consumer's key in OwnersBucket.
type ConsumerOwner struct {
	// Store is the owning store's id (StoreIDFile), 0x hex.
	Store string `json:"store"`
	// Host and DataDir say where it was when it claimed the consumer.
	Host    string    `json:"host"`
	DataDir string    `json:"data_dir"`
	Since   time.Time `json:"since"`
}

// storeID reads (or makes) the data dir's store id.
func storeID(dataDir string) (string, error) {
	b, err := fare.LoadOrCreateSecret(filepath.Join(dataDir, StoreIDFile), 16, "store id")
	if err != nil {
		return "", err
	}
	return "0x" + hex.EncodeToString(b), nil
}

// claimConsumer makes sure the event consumer is this store's: it records
// the store as the owner the first time (compare-and-set, so of two stores
// starting at once one wins), and refuses, naming the owner, when another
// store holds it. A restart of the owner, after a crash too, passes at once:
// ownership is the store's, not the process's.
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
	}
	kv, err := retryPlacement(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return c.js.CreateOrUpdateKeyValue(ctx, cfg) })
	if err != nil {
		return fmt.Errorf("clearing: owners bucket %s: %w", OwnersBucket, err)
	}
	mine, dir := c.ownerRecord(id)
	key := "consumer." + consumer
	for range 3 {
		if _, err := kv.Create(ctx, key, mine); err == nil {
			c.log.Info("event consumer claimed for this store", "consumer", consumer, "store", id)
			return nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("clearing: claim consumer %s: %w", consumer, err)
		}
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted between the two calls: try again
		}
		if err != nil {
			return fmt.Errorf("clearing: owner of consumer %s: %w", consumer, err)
		}
		owner, err := parseOwner(e.Value())
		if err != nil {
			// Not a record any clearing wrote: a JetStream reply a terminal
			// aimed at the bucket ($KV.<bucket>.<key> as a reply subject)
			// is written there by the server. It guards nothing; replace it.
			if _, err := kv.Update(ctx, key, mine, e.Revision()); err == nil {
				c.log.Warn("event consumer's owner record was not one (a JetStream reply written into the bucket?): replaced by this store's", "consumer", consumer, "store", id, "was", err)
				return nil
			}
			continue
		}
		if owner.Store == id {
			return nil
		}
		// A record whose consumer is gone (the stream was reset, the
		// consumer deleted) guards no position: the next store may take it.
		// The consumer reads the event stream, or the verified stream with
		// verifier partitions (partitions.go): gone means gone from both.
		if c.consumerGone(ctx, consumer) {
			if _, err := kv.Update(ctx, key, mine, e.Revision()); err == nil {
				c.log.Info("event consumer claimed for this store; the previous owner's consumer was gone", "consumer", consumer, "store", id, "previous", owner.Store)
				return nil
			}
			continue
		}
		return fmt.Errorf("%w: consumer %q of %s is owned by store %s (data dir %s on %s, since %s); this store is %s (%s). Stop this one, or release the consumer (nats kv del %s %s) only once the owner's store is gone for good",
			ErrConsumerOwned, consumer, fare.EventStream, owner.Store, owner.DataDir, owner.Host, owner.Since.Format(time.RFC3339), id, dir, OwnersBucket, key)
	}
	return fmt.Errorf("clearing: claim consumer %s: its owner record keeps changing", consumer)
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

// ownerRecord is the owner record of store id for this clearing (encoded),
// and its data dir.
func (c *Clearing) ownerRecord(id string) ([]byte, string) {
	host, _ := os.Hostname()
	dir, _ := filepath.Abs(c.cfg.DataDir)
	b, _ := json.Marshal(ConsumerOwner{Store: id, Host: host, DataDir: dir, Since: c.cfg.Now().UTC().Truncate(time.Second)})
	return b, dir
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

// guardOwnerRecord keeps this store's owner record of consumer in the
// owners bucket while clearing runs: anything else written there (a
// JetStream reply aimed at the key) is replaced at once, so no other store
// can take the consumer while this one holds it.
func (c *Clearing) guardOwnerRecord(ctx context.Context, consumer string) {
	id, err := storeID(c.cfg.DataDir)
	if err != nil {
		return
	}
	kv, err := c.js.KeyValue(ctx, OwnersBucket)
	if err != nil {
		c.log.Warn("owners bucket not watched", "err", err)
		return
	}
	key := "consumer." + consumer
	w, err := kv.Watch(ctx, key, jetstream.UpdatesOnly())
	if err != nil {
		c.log.Warn("owners bucket not watched", "err", err)
		return
	}
	defer w.Stop()
	for {
		var u jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return
		case u = <-w.Updates():
		}
		if u == nil {
			continue
		}
		if owner, err := parseOwner(u.Value()); err == nil && owner.Store == id && u.Operation() == jetstream.KeyValuePut {
			continue // this store's own record
		}
		mine, _ := c.ownerRecord(id)
		if _, err := kv.Update(ctx, key, mine, u.Revision()); err != nil && ctx.Err() == nil {
			c.log.Warn("event consumer's owner record changed and was not put back", "consumer", consumer, "err", err)
			continue
		}
		c.log.Warn("event consumer's owner record was overwritten while this store holds the consumer: put back", "consumer", consumer, "bytes", len(u.Value()))
	}
}
