package clearing

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
)

// The deny list at the gates. Clearing's store is its source of truth:
// one record per listed medium, keyed by fare.HashDeny (no raw token is
// kept or sent), and the list's version, which every change (one medium on
// or off) raises by one; each record keeps the version that listed it. A
// change is written in one synced transaction; only then does clearing put
// the medium's signed entry (listed, or a tombstone when unlisted) and the
// list's new head into the deny list's JetStream key-value bucket, which
// every terminal watches (gatelists.go).
//
// Store keys (beside those in store.go):
//
//	n<key[16]>       a listed medium: JSON {media, reason, since (RFC 3339 UTC), version}
//	mdeny-version    the list's version u64 (older stores: followed by the last change)

const pDeny = 'n'

var metaDenyVersion = []byte("mdeny-version")

const (
	// denyChunk bounds the changes one synced transaction writes.
	denyChunk = 1000
	// maxDenyReason bounds the reason kept with an entry (it never leaves
	// clearing but for the auditors' API).
	maxDenyReason = 200
)

// DenyEntry is one medium on the deny list as clearing keeps it: never the
// raw token, only its key.
type DenyEntry struct {
	// Key is fare.DenyKey of the medium (0x and 32 hex digits).
	Key    string    `json:"key"`
	Media  string    `json:"media"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// DenyMedium names a medium to put on the deny list (DenyAll).
type DenyMedium struct {
	Media  fare.MediaKind
	Token  string
	Reason string
}

// denyChange is one medium on (listed) or off the list; version is the
// list's version the change made, once written.
type denyChange struct {
	key     fare.DenyHash
	media   fare.MediaKind
	listed  bool
	reason  string
	version uint64
}

type denyRecord struct {
	Media  string    `json:"media"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	// Version is the list's version that listed the medium (0 in records
	// written before entries carried versions: see loadDenyList).
	Version uint64 `json:"version,omitempty"`
}

func denyStoreKey(k fare.DenyHash) []byte {
	return append([]byte{pDeny}, k[:]...)
}

// loadDenyList reads the stored list's version, count and digest into the
// gate lists' state, giving records written before entries carried
// versions the list's current version.
func (c *Clearing) loadDenyList() error {
	g := newGateLists(c.log)
	var old []fare.DenyHash
	err := c.store.db.View(func(txn *badger.Txn) error {
		var err error
		if g.denyVersion, err = getDenyVersion(txn); err != nil {
			return err
		}
		if g.enrolVersion, err = getU64(txn, metaEnrolVersion); err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte{pDeny}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 1+fare.DenyKeySize {
				return fmt.Errorf("deny-list record 0x%x: key of %d bytes", k, len(k))
			}
			var rec denyRecord
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				return fmt.Errorf("deny-list record 0x%x: %w", k, err)
			}
			h := fare.DenyHash(k[1:])
			g.denyCount++
			g.denyDigest.Toggle(h)
			if rec.Version == 0 {
				old = append(old, h)
			}
		}
		it.Close()
		it2 := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pEnrolIndex}})
		defer it2.Close()
		for it2.Rewind(); it2.Valid(); it2.Next() {
			k := it2.Item().Key()
			if len(k) != 1+fare.DenyKeySize {
				return fmt.Errorf("enrolment index 0x%x: key of %d bytes", k, len(k))
			}
			g.enrolCount++
			g.enrolDigest.Toggle(fare.DenyHash(k[1:]))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load gate lists: %w", err)
	}
	if uint64(g.denyCount) > g.denyVersion {
		return fmt.Errorf("load deny list: %d entries at version %d: the store is damaged", g.denyCount, g.denyVersion)
	}
	for len(old) > 0 {
		chunk := old[:min(len(old), denyChunk)]
		old = old[len(chunk):]
		err := c.store.db.Update(func(txn *badger.Txn) error {
			for _, h := range chunk {
				item, err := txn.Get(denyStoreKey(h))
				if err != nil {
					return err
				}
				var rec denyRecord
				if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
					return err
				}
				rec.Version = g.denyVersion
				b, err := json.Marshal(rec)
				if err != nil {
					return err
				}
				if err := txn.Set(denyStoreKey(h), b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("load deny list: give old records a version: %w", err)
		}
	}
	c.deny = g
	return nil
}

func getDenyVersion(txn *badger.Txn) (uint64, error) {
	item, err := txn.Get(metaDenyVersion)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	err = item.Value(func(b []byte) error {
		if len(b) != 8 && len(b) != 8+1+fare.DenyKeySize {
			return fmt.Errorf("%s: corrupt record of %d bytes", metaDenyVersion, len(b))
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	return v, err
}

// Deny puts a medium on the deny list with a reason: written durably, then
// sent to every terminal. A medium already listed changes nothing (its
// reason and date stay, the version does not move).
func (c *Clearing) Deny(ctx context.Context, m fare.MediaKind, token, reason string) error {
	ch, err := denyChangeOf(m, token, reason, true)
	if err != nil {
		return fmt.Errorf("deny: %w", err)
	}
	_, err = c.changeDenyList(ctx, []denyChange{ch})
	return err
}

// Undeny takes a medium off the deny list: its record is deleted durably
// and a tombstone entry goes to the terminals. A medium not listed changes
// nothing.
func (c *Clearing) Undeny(ctx context.Context, m fare.MediaKind, token string) error {
	ch, err := denyChangeOf(m, token, "", false)
	if err != nil {
		return fmt.Errorf("undeny: %w", err)
	}
	_, err = c.changeDenyList(ctx, []denyChange{ch})
	return err
}

// DenyAll puts several media on the deny list: each one listed is a version
// of its own, written in synced transactions of up to 1,000 media, each
// chunk then sent to the terminals. It returns how many it listed; those
// already listed change nothing.
func (c *Clearing) DenyAll(ctx context.Context, media []DenyMedium) (int, error) {
	changes := make([]denyChange, len(media))
	for i, m := range media {
		var err error
		if changes[i], err = denyChangeOf(m.Media, m.Token, m.Reason, true); err != nil {
			return 0, fmt.Errorf("deny medium %d: %w", i+1, err)
		}
	}
	return c.changeDenyList(ctx, changes)
}

func denyChangeOf(m fare.MediaKind, token, reason string, listed bool) (denyChange, error) {
	if m != fare.Card && m != fare.Face {
		return denyChange{}, fmt.Errorf("media %s: want card or face", m)
	}
	if token == "" || len(token) > fare.MaxTokenLen || !utf8.ValidString(token) {
		return denyChange{}, fmt.Errorf("a %s token must be 1 to %d bytes of UTF-8", m, fare.MaxTokenLen)
	}
	if listed && (reason == "" || len(reason) > maxDenyReason || !utf8.ValidString(reason)) {
		return denyChange{}, fmt.Errorf("a reason of 1 to %d bytes of UTF-8 is needed", maxDenyReason)
	}
	return denyChange{key: fare.HashDeny(m, token), media: m, listed: listed, reason: reason}, nil
}

// changeDenyList writes changes in chunks, each one synced transaction,
// and sends each chunk's entries and the list's new head to the bucket.
func (c *Clearing) changeDenyList(ctx context.Context, changes []denyChange) (int, error) {
	g := c.deny
	g.denyWrite.Lock()
	defer g.denyWrite.Unlock()
	done := 0
	for len(changes) > 0 {
		if err := ctx.Err(); err != nil {
			return done, fmt.Errorf("deny list: %d changes not written: %w", len(changes), err)
		}
		chunk := changes[:min(len(changes), denyChunk)]
		changes = changes[len(chunk):]
		applied, version, err := c.store.writeDenyChanges(chunk, c.cfg.Now())
		if err != nil {
			return done, fmt.Errorf("deny list: write %d changes: %w", len(chunk), err)
		}
		if len(applied) == 0 {
			continue
		}
		done += len(applied)
		g.mu.Lock()
		for _, ch := range applied {
			g.denyDigest.Toggle(ch.key)
			if ch.listed {
				g.denyCount++
			} else {
				g.denyCount--
			}
		}
		g.denyVersion = version
		n := g.denyCount
		g.mu.Unlock()
		// One change at a time (a rider in debt, a queued request) is
		// logged by whoever made it; bulk changes here.
		level := slog.LevelInfo
		if len(applied) == 1 {
			level = slog.LevelDebug
		}
		c.log.Log(ctx, level, "deny list changed", "version", version, "changes", len(applied), "entries", n)
		c.publishDenyChanges(ctx, applied)
	}
	return done, nil
}

// writeDenyChanges applies changes in one synced transaction, passing over
// those that change nothing (listing a listed medium, unlisting an absent
// one); each other takes the next version. It returns the changes made
// (with their versions) and the version after them.
func (s *Store) writeDenyChanges(changes []denyChange, now time.Time) (applied []denyChange, version uint64, err error) {
	since := now.UTC().Truncate(time.Second)
	err = s.db.Update(func(txn *badger.Txn) error {
		applied = applied[:0]
		v, err := getDenyVersion(txn)
		if err != nil {
			return err
		}
		seen := make(map[fare.DenyHash]bool, len(changes))
		for _, ch := range changes {
			k := denyStoreKey(ch.key)
			listed, ok := seen[ch.key]
			if !ok {
				_, gerr := txn.Get(k)
				if gerr != nil && !errors.Is(gerr, badger.ErrKeyNotFound) {
					return gerr
				}
				listed = gerr == nil
			}
			if listed == ch.listed {
				continue
			}
			v++
			ch.version = v
			if err := writeDenyRecord(txn, k, ch, since); err != nil {
				return err
			}
			seen[ch.key] = ch.listed
			applied = append(applied, ch)
		}
		version = v
		if len(applied) == 0 {
			return nil
		}
		return txn.Set(metaDenyVersion, binary.BigEndian.AppendUint64(nil, v))
	})
	return applied, version, err
}

func writeDenyRecord(txn *badger.Txn, k []byte, ch denyChange, since time.Time) error {
	if !ch.listed {
		return txn.Delete(k)
	}
	rec, err := json.Marshal(denyRecord{Media: ch.media.String(), Reason: ch.reason, Since: since, Version: ch.version})
	if err != nil {
		return err
	}
	return txn.Set(k, rec)
}

// DenyList lists every medium on the deny list, by key.
func (c *Clearing) DenyList() ([]DenyEntry, error) {
	_, out, err := c.store.DenyEntries("", 0)
	return out, err
}

// DenyListVersion is the deny list's version and how many media it lists.
func (c *Clearing) DenyListVersion() (version uint64, n int) {
	c.deny.mu.Lock()
	defer c.deny.mu.Unlock()
	return c.deny.denyVersion, c.deny.denyCount
}

// DenyEntries returns the deny list's version and its entries with keys
// after after (a fare.DenyKey, exclusive; "" from the start), at most limit
// of them (0: all), by key, read in one transaction.
func (s *Store) DenyEntries(after string, limit int) (version uint64, out []DenyEntry, err error) {
	start := []byte{pDeny}
	if after != "" {
		k, err := fare.ParseDenyKey(after)
		if err != nil {
			return 0, nil, err
		}
		start = append(denyStoreKey(k), 0)
	}
	err = s.db.View(func(txn *badger.Txn) error {
		var err error
		if version, err = getDenyVersion(txn); err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte{pDeny}})
		defer it.Close()
		for it.Seek(start); it.Valid() && (limit <= 0 || len(out) < limit); it.Next() {
			k := it.Item().Key()
			var rec denyRecord
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				return fmt.Errorf("deny-list record 0x%x: %w", k, err)
			}
			if len(k) != 1+fare.DenyKeySize {
				return fmt.Errorf("deny-list record 0x%x: key of %d bytes", k, len(k))
			}
			out = append(out, DenyEntry{Key: fare.DenyHash(k[1:]).Hex(), Media: rec.Media, Reason: rec.Reason, Since: rec.Since})
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("read deny list: %w", err)
	}
	return version, out, nil
}

// denyRecordVersion is the version of a listed medium's record (0, false:
// not listed).
func denyRecordVersion(txn *badger.Txn, k fare.DenyHash) (uint64, bool, error) {
	item, err := txn.Get(denyStoreKey(k))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var rec denyRecord
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
		return 0, false, fmt.Errorf("deny-list record %s: %w", k, err)
	}
	return rec.Version, true, nil
}
