package clearing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/fare"
)

// The deny list lives in the JetStream key-value bucket fare.DenyBucket:
// clearing writes it, every terminal watches it (read only; see
// fare.TerminalPermissions) and keeps its last copy in its own store, so a
// gate refuses a listed medium offline too and catches up when it
// reconnects. Keys are fare.DenyKey: no raw token travels to the gates.

// DenyEntry is one medium on the deny list, as the bucket holds it.
type DenyEntry struct {
	Key    string    `json:"key"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

func (c *Clearing) openDenyList(ctx context.Context) error {
	kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: fare.DenyBucket, Description: "Faregate deny list: media refused at the gates (keys are fare.DenyKey)",
		History: 1, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("deny list bucket %s: %w", fare.DenyBucket, err)
	}
	c.denyKV = kv
	return nil
}

// Deny puts a medium on the deny list with a reason; every terminal refuses
// it from its next update on.
func (c *Clearing) Deny(ctx context.Context, m fare.MediaKind, token, reason string) error {
	if token == "" || reason == "" {
		return errors.New("deny: a token and a reason are needed")
	}
	b, err := json.Marshal(DenyEntry{Key: fare.DenyKey(m, token), Reason: reason, Since: c.cfg.Now().UTC()})
	if err != nil {
		return err
	}
	if _, err := c.denyKV.Put(ctx, fare.DenyKey(m, token), b); err != nil {
		return fmt.Errorf("deny %s: %w", m, err)
	}
	return nil
}

// Undeny takes a medium off the deny list.
func (c *Clearing) Undeny(ctx context.Context, m fare.MediaKind, token string) error {
	if err := c.denyKV.Delete(ctx, fare.DenyKey(m, token)); err != nil {
		return fmt.Errorf("undeny %s: %w", m, err)
	}
	return nil
}

// DenyList returns the media on the deny list.
func (c *Clearing) DenyList(ctx context.Context) ([]DenyEntry, error) {
	lister, err := c.denyKV.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("deny list: %w", err)
	}
	var out []DenyEntry
	for k := range lister.Keys() {
		e, err := c.denyKV.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("deny list %s: %w", k, err)
		}
		var d DenyEntry
		if err := json.Unmarshal(e.Value(), &d); err != nil {
			return nil, fmt.Errorf("deny list %s: %w", k, err)
		}
		out = append(out, d)
	}
	return out, nil
}
