package clearing

import (
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
	kv, err := retryPlacement(ctx, func() (jetstream.KeyValue, error) { return c.js.CreateOrUpdateKeyValue(ctx, cfg) })
	if err != nil {
		return fmt.Errorf("clearing: owners bucket %s: %w", OwnersBucket, err)
	}
	host, _ := os.Hostname()
	dir, _ := filepath.Abs(c.cfg.DataDir)
	mine, _ := json.Marshal(ConsumerOwner{Store: id, Host: host, DataDir: dir, Since: c.cfg.Now().UTC().Truncate(time.Second)})
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
		var owner ConsumerOwner
		if err := json.Unmarshal(e.Value(), &owner); err != nil {
			return fmt.Errorf("clearing: owner of consumer %s: %w", consumer, err)
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
