package terminal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/fare"
)

// The terminal's copy of the city's deny list (the JetStream key-value
// bucket fare.DenyBucket, keyed by fare.DenyKey). It is kept in the outbox's
// store under pDenied, so a gate that restarts offline still refuses what
// clearing listed; while connected the terminal watches the bucket and, on
// every (re)start of the watch, replaces its copy with the bucket's contents.

const pDenied = 'k'

// denyCopy is the in-memory view of the stored copy.
type denyCopy struct {
	mu     sync.RWMutex
	keys   map[string]struct{}
	synced bool // a full snapshot of the bucket has been stored since Open
}

func (d *denyCopy) has(key string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	_, ok := d.keys[key]
	return ok
}

func (t *Terminal) loadDenyCopy(txn *badger.Txn) error {
	t.denied.keys = make(map[string]struct{})
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pDenied}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		t.denied.keys[string(it.Item().Key()[1:])] = struct{}{}
	}
	return nil
}

// DenyListSynced reports whether the terminal has stored a full copy of the
// deny list since it opened, and how many media it lists.
func (t *Terminal) DenyListSynced() (bool, int) {
	t.denied.mu.RLock()
	defer t.denied.mu.RUnlock()
	return t.denied.synced, len(t.denied.keys)
}

// watchDenyList keeps the stored copy current until ctx ends, restarting
// the watch (and its snapshot) whenever it breaks.
func (t *Terminal) watchDenyList(ctx context.Context, js jetstream.JetStream) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		err := t.watchDenyOnce(ctx, js)
		if ctx.Err() != nil {
			return
		}
		t.log.Debug("deny list watch ended; restarting", "err", err)
		sleep(ctx, backoff)
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (t *Terminal) watchDenyOnce(ctx context.Context, js jetstream.JetStream) error {
	kv, err := js.KeyValue(ctx, fare.DenyBucket)
	if err != nil {
		return fmt.Errorf("deny list bucket: %w", err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch deny list: %w", err)
	}
	defer w.Stop()
	snapshot := map[string]struct{}{}
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("deny list watch closed")
			}
			switch {
			case e == nil: // every current entry seen: replace the copy
				if err := t.replaceDenyCopy(snapshot); err != nil {
					return err
				}
				initial = false
			case initial:
				if e.Operation() == jetstream.KeyValuePut {
					snapshot[e.Key()] = struct{}{}
				} else {
					delete(snapshot, e.Key())
				}
			default:
				if err := t.updateDenyCopy(e.Key(), e.Operation() == jetstream.KeyValuePut); err != nil {
					return err
				}
			}
		}
	}
}

func (t *Terminal) replaceDenyCopy(keys map[string]struct{}) error {
	err := t.db.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pDenied}})
		var stale [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			if _, keep := keys[string(it.Item().Key()[1:])]; !keep {
				stale = append(stale, it.Item().KeyCopy(nil))
			}
		}
		it.Close()
		for _, k := range stale {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		for k := range keys {
			if err := txn.Set(append([]byte{pDenied}, k...), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store deny list copy: %w", err)
	}
	t.denied.mu.Lock()
	t.denied.keys, t.denied.synced = keys, true
	t.denied.mu.Unlock()
	t.log.Info("deny list synced", "media", len(keys))
	return nil
}

func (t *Terminal) updateDenyCopy(key string, listed bool) error {
	k := append([]byte{pDenied}, key...)
	err := t.db.Update(func(txn *badger.Txn) error {
		if listed {
			return txn.Set(k, nil)
		}
		return txn.Delete(k)
	})
	if err != nil {
		return fmt.Errorf("store deny list update: %w", err)
	}
	t.denied.mu.Lock()
	if listed {
		t.denied.keys[key] = struct{}{}
	} else {
		delete(t.denied.keys, key)
	}
	t.denied.mu.Unlock()
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}
