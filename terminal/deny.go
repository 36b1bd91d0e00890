package terminal

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/fare"
)

// The terminal's copy of clearing's deny list (see fare/deny.go). It lives
// in the outbox's store (pDenied keys and keyDenyVersion), so a gate that
// starts without the network still refuses what clearing listed. While Run
// runs, one goroutine follows the list: it syncs the whole list at start and
// on every reconnect, applies each signed update that is exactly one
// version ahead and whose digest then matches, and syncs again on any other
// version ahead of its own. Nothing older than its version is ever applied:
// a replayed or stale update is ignored (and counted), and a whole list
// older than the stored one (a clearing restored from an old backup) is
// refused, counted and logged, never applied; the terminal keeps its newer
// copy until clearing's version passes it.

// Reasons a deny-list message is refused (the deny refusals metric's
// labels). Untrusted, malformed and older-list are anomalies; stale also
// counts an update a sync overtook while it was on its way.
const (
	DenyRefusedUntrusted = "untrusted"  // no trusted clearing key signed it
	DenyRefusedMalformed = "malformed"  // not a deny-list message, or pages that do not add up
	DenyRefusedStale     = "stale"      // an update older than the copy: replayed, or overtaken by a sync
	DenyRefusedOlder     = "older-list" // a whole list older than the copy (clearing restored from an old backup)
)

var denyRefusalReasons = []string{DenyRefusedUntrusted, DenyRefusedMalformed, DenyRefusedStale, DenyRefusedOlder}

const (
	// denyChunk bounds the keys one transaction of a full sync writes.
	denyChunk = 1000
	// denyPageTimeout is how long a sync waits for one page.
	denyPageTimeout = 2 * time.Second
	// denyPaced: from this page on a sync waits denyPace between requests,
	// under the rate clearing answers one terminal at (20 pages a second
	// after a burst of 40).
	denyPaced = 32
	denyPace  = 60 * time.Millisecond
	// denySyncAttempts bounds the syncs started over because the list
	// changed under them.
	denySyncAttempts = 5
)

// denyCopy is the in-memory view of the stored copy. decide reads it under
// mu; only the deny-list goroutine (and Open) write it.
type denyCopy struct {
	mu      sync.RWMutex
	keys    map[fare.DenyHash]struct{}
	version uint64
	digest  fare.DenyDigest
}

func (d *denyCopy) has(k fare.DenyHash) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	_, ok := d.keys[k]
	return ok
}

func denyKey(k fare.DenyHash) []byte { return append([]byte{pDenied}, k[:]...) }

// loadDenyCopy reads the stored copy (Open).
func (t *Terminal) loadDenyCopy(txn *badger.Txn) error {
	d := &t.deny
	d.keys = make(map[fare.DenyHash]struct{})
	v, err := getU64(txn, keyDenyVersion)
	if err != nil {
		return err
	}
	d.version = v
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pDenied}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != 1+fare.DenyKeySize {
			return fmt.Errorf("deny-list entry %x: key of %d bytes", k, len(k))
		}
		h := fare.DenyHash(k[1:])
		d.keys[h] = struct{}{}
		d.digest.Toggle(h)
	}
	return nil
}

// DenyListVersion is the version of the deny-list copy this terminal holds
// and how many media it lists.
func (t *Terminal) DenyListVersion() (version uint64, n int) {
	t.deny.mu.RLock()
	defer t.deny.mu.RUnlock()
	return t.deny.version, len(t.deny.keys)
}

// RefusedDenyMessages counts deny-list updates and pages the terminal
// ignored since it opened: untrusted, malformed, stale, or a list older than
// its own.
func (t *Terminal) RefusedDenyMessages() uint64 {
	var n uint64
	for _, c := range t.denyRefused {
		n += c.Load()
	}
	return n
}

// DenyRefusals counts the deny-list messages the terminal ignored since it
// opened, by reason (DenyRefusedUntrusted ...).
func (t *Terminal) DenyRefusals() map[string]uint64 {
	out := make(map[string]uint64, len(t.denyRefused))
	for r, c := range t.denyRefused {
		out[r] = c.Load()
	}
	return out
}

func newDenyRefusedMetric(id string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "faregate_terminal_deny_refused_total", Help: "Deny-list updates and pages the terminal ignored, by reason (untrusted signature, malformed, stale update, a whole list older than its own).",
		ConstLabels: prometheus.Labels{"terminal": id},
	}, []string{"reason"})
}

// denyFollower is the deny-list goroutine's state.
type denyFollower struct {
	t  *Terminal
	nc *nats.Conn
	// keys caches the keys a rotation chain leads to from the trusted ones.
	keysID [32]byte
	keys   []ed25519.PublicKey
}

func (f *denyFollower) refuse(reason, detail string) {
	t := f.t
	t.denyRefused[reason].Add(1)
	t.denyRefusedBy.WithLabelValues(reason).Inc()
	t.denyRefusals.Add(reason, detail)
}

// trusted are the keys a deny-list message bundled with rotations is
// checked against: the terminal's trusted keys, moved along the chain as
// learn would (the Run goroutine learns and stores rotations from
// confirmations; this goroutine only reads).
func (f *denyFollower) trusted(rotations [][]byte) []ed25519.PublicKey {
	t := f.t
	t.keysMu.Lock()
	keys, retired := slices.Clone(t.cfg.ClearingKeys), slices.Clone(t.retired)
	t.keysMu.Unlock()
	if len(rotations) == 0 {
		return keys
	}
	h := sha256.New()
	for _, group := range [][]ed25519.PublicKey{keys, retired} {
		h.Write([]byte{byte(len(group))})
		for _, k := range group {
			h.Write(k)
		}
	}
	for _, r := range rotations {
		h.Write(r)
	}
	var id [32]byte
	h.Sum(id[:0])
	if id != f.keysID || f.keys == nil {
		f.keysID, f.keys = id, fare.FollowRotations(keys, retired, rotations)
	}
	return f.keys
}

// follow keeps the copy current until ctx ends: msgs are updates from
// fare.DenySubject, kick asks for a sync (reconnected).
func (f *denyFollower) follow(ctx context.Context, msgs <-chan []byte, kick <-chan struct{}) {
	t := f.t
	need, backoff := true, 250*time.Millisecond
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		// Updates already queued go first: one of them may close the gap.
		if need && len(msgs) == 0 {
			err := f.sync(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				t.log.Debug("deny-list sync failed; retrying", "err", err, "in", backoff)
				retry.Reset(backoff)
				backoff = min(2*backoff, 30*time.Second)
			default:
				need, backoff = false, 250*time.Millisecond
			}
		}
		select {
		case <-ctx.Done():
			return
		case b := <-msgs:
			if f.update(b) {
				need = true
			}
		case <-kick:
			need = true
		case <-retry.C:
		}
	}
}

// update acts on one message from fare.DenySubject and reports whether the
// copy needs a full sync.
func (f *denyFollower) update(msg []byte) (syncNeeded bool) {
	t := f.t
	rotations, b, err := fare.Unbundle(msg)
	if err != nil {
		f.refuse(DenyRefusedMalformed, err.Error())
		return false
	}
	u, err := fare.VerifyDenyUpdate(b, f.trusted(rotations))
	switch {
	case errors.Is(err, fare.ErrUntrustedDenyList):
		f.refuse(DenyRefusedUntrusted, err.Error())
		return false
	case err != nil:
		f.refuse(DenyRefusedMalformed, err.Error())
		return false
	}
	d := &t.deny
	d.mu.RLock()
	version, digest := d.version, d.digest
	_, listed := d.keys[u.Key]
	d.mu.RUnlock()
	switch {
	case u.Version == version && u.Digest == digest:
		return false // the repeat of what the copy holds
	case u.Version == version:
		t.log.Warn("deny-list copy differs from clearing's at the same version; syncing the whole list", "version", version)
		return true
	case u.Version < version:
		f.refuse(DenyRefusedStale, fmt.Sprintf("update to version %d, copy at %d", u.Version, version))
		return false
	case u.Version > version+1:
		t.log.Info("deny-list updates missed; syncing the whole list", "version", version, "update", u.Version)
		return true
	}
	digest.Toggle(u.Key)
	if listed == u.Listed || digest != u.Digest {
		t.log.Warn("deny-list copy differs from clearing's; syncing the whole list", "version", version, "update", u.Version)
		return true
	}
	err = t.db.Update(func(txn *badger.Txn) error {
		var err error
		if u.Listed {
			err = txn.Set(denyKey(u.Key), nil)
		} else {
			err = txn.Delete(denyKey(u.Key))
		}
		if err != nil {
			return err
		}
		return setU64(txn, keyDenyVersion, u.Version)
	})
	if err != nil {
		t.log.Error("store deny-list update; syncing later", "version", u.Version, "err", err)
		return true
	}
	d.mu.Lock()
	if u.Listed {
		d.keys[u.Key] = struct{}{}
	} else {
		delete(d.keys, u.Key)
	}
	d.version, d.digest = u.Version, digest
	d.mu.Unlock()
	return false
}

// errListChanged: the list changed under a sync too often in a row.
var errListChanged = errors.New("deny list changed under every sync attempt")

// sync fetches the whole list page by page and replaces the copy with it,
// unless clearing's list is the copy's version with its digest already, or
// older than the copy (refused).
func (f *denyFollower) sync(ctx context.Context) error {
	t := f.t
	for range denySyncAttempts {
		t.deny.mu.RLock()
		have, digest := t.deny.version, t.deny.digest
		t.deny.mu.RUnlock()
		first, err := f.page(ctx, have, 0)
		if err != nil {
			return err
		}
		if first.Version < have {
			f.refuse(DenyRefusedOlder, fmt.Sprintf("clearing's deny list is version %d, this terminal holds %d: kept (was clearing restored from an older backup?)", first.Version, have))
			return nil
		}
		if first.Version == have && first.Digest == digest {
			return nil
		}
		keys := make([]fare.DenyHash, 0, first.Total)
		keys = append(keys, first.Keys...)
		restart := false
		for p := uint32(1); p < first.Pages && !restart; p++ {
			if p >= denyPaced {
				sleep(ctx, denyPace)
			}
			pg, err := f.page(ctx, have, p)
			if err != nil {
				return err
			}
			if pg.Version != first.Version {
				restart = true // the list changed: start again
				break
			}
			if pg.Digest != first.Digest || pg.Total != first.Total {
				f.refuse(DenyRefusedMalformed, fmt.Sprintf("page %d of version %d disagrees with page 0", p, pg.Version))
				return fmt.Errorf("deny-list sync: page %d disagrees with page 0", p)
			}
			keys = append(keys, pg.Keys...)
		}
		if restart {
			continue
		}
		if uint32(len(keys)) != first.Total || fare.DigestDenyList(keys) != first.Digest {
			f.refuse(DenyRefusedMalformed, fmt.Sprintf("pages of version %d hold %d keys with another digest than announced", first.Version, len(keys)))
			return fmt.Errorf("deny-list sync: version %d does not add up", first.Version)
		}
		return f.replace(keys, first.Version, first.Digest)
	}
	return errListChanged
}

// page asks clearing for one page and checks it.
func (f *denyFollower) page(ctx context.Context, have uint64, page uint32) (*fare.DenyPage, error) {
	t := f.t
	rctx, cancel := context.WithTimeout(ctx, denyPageTimeout)
	defer cancel()
	m, err := f.nc.RequestWithContext(rctx, fare.DenySyncSubject(t.cfg.ID), fare.DenySyncRequest{Have: have, Page: page}.Encode())
	if err != nil {
		return nil, fmt.Errorf("deny-list page %d: %w", page, err)
	}
	rotations, b, err := fare.Unbundle(m.Data)
	if err != nil {
		f.refuse(DenyRefusedMalformed, err.Error())
		return nil, err
	}
	p, err := fare.VerifyDenyPage(b, f.trusted(rotations))
	switch {
	case errors.Is(err, fare.ErrUntrustedDenyList):
		f.refuse(DenyRefusedUntrusted, err.Error())
		return nil, err
	case err != nil:
		f.refuse(DenyRefusedMalformed, err.Error())
		return nil, err
	case p.Page != page && p.Pages > page:
		f.refuse(DenyRefusedMalformed, fmt.Sprintf("asked for page %d, got %d", page, p.Page))
		return nil, fmt.Errorf("deny-list page %d: got page %d", page, p.Page)
	}
	return p, nil
}

// replace makes the stored copy keys at version: new keys are added first,
// then stale ones deleted, each in transactions of denyChunk keys, and the
// version is stored last. A crash in between leaves a copy listing more
// than either version (it fails closed) at the old version, whose digest
// then differs from clearing's: the next update or start syncs again.
func (f *denyFollower) replace(keys []fare.DenyHash, version uint64, digest fare.DenyDigest) error {
	t, d := f.t, &f.t.deny
	want := make(map[fare.DenyHash]struct{}, len(keys))
	var add []fare.DenyHash
	d.mu.RLock()
	for _, k := range keys {
		want[k] = struct{}{}
		if _, ok := d.keys[k]; !ok {
			add = append(add, k)
		}
	}
	var stale []fare.DenyHash
	for k := range d.keys {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	d.mu.RUnlock()
	err := f.writeChunks(add, true)
	if err == nil {
		err = f.writeChunks(stale, false)
	}
	if err == nil {
		err = t.db.Update(func(txn *badger.Txn) error { return setU64(txn, keyDenyVersion, version) })
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.digest = fare.DigestDenyList(slices.Collect(maps.Keys(d.keys)))
		return fmt.Errorf("store deny-list copy of version %d: %w", version, err)
	}
	d.version, d.digest = version, digest
	t.log.Info("deny list synced", "version", version, "entries", len(keys), "added", len(add), "removed", len(stale))
	return nil
}

// writeChunks stores (listed) or deletes keys in transactions of denyChunk
// and follows each commit in memory.
func (f *denyFollower) writeChunks(keys []fare.DenyHash, listed bool) error {
	t, d := f.t, &f.t.deny
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), denyChunk)]
		keys = keys[len(chunk):]
		err := t.db.Update(func(txn *badger.Txn) error {
			for _, k := range chunk {
				var err error
				if listed {
					err = txn.Set(denyKey(k), nil)
				} else {
					err = txn.Delete(denyKey(k))
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		d.mu.Lock()
		for _, k := range chunk {
			if listed {
				d.keys[k] = struct{}{}
			} else {
				delete(d.keys, k)
			}
		}
		d.mu.Unlock()
	}
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
