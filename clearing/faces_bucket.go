package clearing

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/fare"
)

// The FAREGATE_FACES bucket (see fare/facegallery.go). Clearing alone
// writes it; each terminal watches its own keys read only. What clearing
// does to keep it so, and to leave no template bytes behind:
//
//   - The bucket's stream is made here, not by CreateKeyValue: a KV
//     bucket's stream denies message deletes, and an erased subject's
//     ciphertexts must be overwritten, not only marked deleted. Every
//     revision of a subject's value is securely deleted (JetStream
//     overwrites the record with random bytes and rewrites its block file)
//     before the key is purged; a new value's put is followed by the secure
//     deletion of every older revision of its key, since JetStream removes
//     a revision superseded by the history limit without overwriting it.
//   - Values are checked as they come (a watch of the whole bucket):
//     anything clearing did not write (a replay by someone with full
//     access; a JetStream reply a terminal aimed at a $KV subject, on a
//     server configured before NATSAccounts) is
//     overwritten and replaced by clearing's value, or purged.
//   - The bucket is reconciled whole with the records at start, after a
//     failed write and whenever the registry changes (a terminal
//     registered or revoked moves subjects in or out of its gallery).
//   - JetStream's API audit advisories show every consumer made on the
//     bucket; one a terminal made that is not a watch of its own keys into
//     its own inbox is deleted at once.
//   - Every terminal's head is issued again every FaceHeadEvery: how a gate
//     knows its copy is fresh.

const (
	// faceHistory is the bucket's history per key: room for a new value
	// beside the old one until the old one is overwritten.
	faceHistory = 8
	// faceReconcileEvery is how often a dirty bucket is reconciled.
	faceReconcileEvery = 5 * time.Second
	// faceMarkerAge is how long purge markers stay: watching gates have had
	// them by then, and a gate that reconnects later reads the bucket whole.
	faceMarkerAge = time.Hour
	// faceWait bounds one bucket operation.
	faceWait = 30 * time.Second
)

// openFacesBucket makes the bucket's stream, binds it, starts the consumer
// guard and reconciles the bucket with the records.
func (c *Clearing) openFacesBucket(ctx context.Context) error {
	f := c.faces
	if f == nil {
		return nil
	}
	st, err := c.ensureStream(ctx, jetstream.StreamConfig{
		Name:              fare.FaceStream,
		Description:       "faregate face galleries: per terminal, its subjects' templates sealed for it; clearing writes, each gate watches its own keys",
		Subjects:          []string{"$KV." + fare.FaceBucket + ".>"},
		Storage:           jetstream.FileStorage,
		MaxMsgsPerSubject: faceHistory,
		MaxMsgSize:        MaxPayload,
		Discard:           jetstream.DiscardNew,
		AllowRollup:       true,
		Duplicates:        2 * time.Minute,
		// DenyDelete stays false: erasure overwrites messages.
	})
	if err != nil {
		return fmt.Errorf("face gallery bucket %s: %w", fare.FaceBucket, err)
	}
	kv, err := c.js.KeyValue(ctx, fare.FaceBucket)
	if err != nil {
		return fmt.Errorf("face gallery bucket %s: %w", fare.FaceBucket, err)
	}
	f.stream, f.kv = st, kv
	if !c.cfg.plain {
		if f.sub, err = c.nc.Subscribe(jsAuditAdvisory, c.guardFaceConsumer); err != nil {
			return fmt.Errorf("subscribe JetStream API audit: %w", err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := c.reconcileFaces(ctx); err != nil {
		f.log.Warn("face gallery bucket not reconciled with the records; retrying", "err", err)
		f.dirty.Store(true)
	}
	return nil
}

// faceRev is one stored revision of a key.
type faceRev struct {
	seq  uint64
	put  bool
	data []byte
}

// faceRevisions reads every stored revision of the keys (all keys when
// keys is nil), oldest first.
func (c *Clearing) faceRevisions(ctx context.Context, keys []string) (map[string][]faceRev, error) {
	f := c.faces
	rctx, cancel := context.WithTimeout(ctx, faceWait)
	defer cancel()
	var w jetstream.KeyWatcher
	var err error
	if keys == nil {
		w, err = f.kv.WatchAll(rctx, jetstream.IncludeHistory())
	} else if len(keys) == 0 {
		return map[string][]faceRev{}, nil
	} else {
		w, err = f.kv.WatchFiltered(rctx, slices.Clone(keys), jetstream.IncludeHistory())
	}
	if err != nil {
		return nil, fmt.Errorf("read bucket %s: %w", fare.FaceBucket, err)
	}
	defer w.Stop()
	out := map[string][]faceRev{}
	for {
		select {
		case <-rctx.Done():
			return nil, fmt.Errorf("read bucket %s: %w", fare.FaceBucket, rctx.Err())
		case u, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("read bucket %s: watch ended", fare.FaceBucket)
			}
			if u == nil {
				return out, nil
			}
			r := faceRev{seq: u.Revision(), put: u.Operation() == jetstream.KeyValuePut}
			if r.put {
				r.data = u.Value()
			}
			out[u.Key()] = append(out[u.Key()], r)
		}
	}
}

// secureDelete overwrites stored messages; one already gone is fine.
func (c *Clearing) secureDelete(ctx context.Context, seqs []uint64) error {
	for _, seq := range seqs {
		err := c.faces.stream.SecureDeleteMsg(ctx, seq)
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("overwrite message %d of %s: %w", seq, fare.FaceStream, err)
		}
	}
	return nil
}

type facePut struct {
	key   string
	value []byte
}

// putFaceValues writes values into the bucket and returns each one's
// revision, waiting for every acknowledgement.
func (c *Clearing) putFaceValues(ctx context.Context, puts []facePut) ([]uint64, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(puts))
	for _, p := range puts {
		fu, err := c.js.PublishAsync("$KV."+fare.FaceBucket+"."+p.key, p.value)
		if err != nil {
			return nil, fmt.Errorf("put %s %s: %w", fare.FaceBucket, p.key, err)
		}
		futures = append(futures, fu)
	}
	wait := time.NewTimer(faceWait)
	defer wait.Stop()
	revs := make([]uint64, len(puts))
	for i, fu := range futures {
		select {
		case ack := <-fu.Ok():
			revs[i] = ack.Sequence
		case err := <-fu.Err():
			return nil, fmt.Errorf("put %s %s: %w", fare.FaceBucket, puts[i].key, err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wait.C:
			return nil, fmt.Errorf("put %s: no acknowledgement in %s", fare.FaceBucket, faceWait)
		}
	}
	return revs, nil
}

// sealFace is rec sealed for terminal t at r's version, signed and
// bundled with the key's rotation chain.
func (c *Clearing) sealFace(r *faceRecord, rec *fare.FaceRecord, t RegisteredTerminal) (facePut, error) {
	k := c.faces.token(t.ID, r.Subject)
	e, err := fare.SealFaceEntry(rec, t.ID, t.PublicKey, k, r.Version)
	if err != nil {
		return facePut{}, err
	}
	b, err := e.Sign(c.cfg.ConfirmKey)
	if err != nil {
		return facePut{}, err
	}
	return facePut{fare.FaceEntryKey(t.ID, k), fare.Bundle(c.rotations, b)}, nil
}

// publishFace writes r's sealed templates for terms, then overwrites every
// older revision of those keys and issues the terminals' heads (under
// f.mu).
func (c *Clearing) publishFace(ctx context.Context, r *faceRecord, rec *fare.FaceRecord, terms []RegisteredTerminal) error {
	if c.faces.kv == nil {
		return errors.New("face gallery bucket not open")
	}
	puts := make([]facePut, 0, len(terms))
	ids := make([]string, 0, len(terms))
	for _, t := range terms {
		p, err := c.sealFace(r, rec, t)
		if err != nil {
			return fmt.Errorf("seal %s for %s: %w", r.Subject, t.ID, err)
		}
		puts = append(puts, p)
		ids = append(ids, t.ID)
	}
	if err := c.replaceFaceValues(ctx, puts); err != nil {
		return err
	}
	return c.putFaceHeads(ctx, ids)
}

// replaceFaceValues puts values and overwrites every older revision of
// their keys.
func (c *Clearing) replaceFaceValues(ctx context.Context, puts []facePut) error {
	if len(puts) == 0 {
		return nil
	}
	revs, err := c.putFaceValues(ctx, puts)
	if err != nil {
		return err
	}
	keys := make([]string, len(puts))
	latest := map[string]uint64{}
	for i, p := range puts {
		keys[i] = p.key
		latest[p.key] = revs[i]
	}
	old, err := c.faceRevisions(ctx, keys)
	if err != nil {
		return err
	}
	var seqs []uint64
	for k, rs := range old {
		for _, r := range rs {
			if r.seq < latest[k] {
				seqs = append(seqs, r.seq)
			}
		}
	}
	return c.secureDelete(ctx, seqs)
}

// eraseFaceKeys overwrites every stored revision of subject's values at
// terminals, purges the keys (the purge marker tells watching gates) and
// issues the terminals' heads (under f.mu).
func (c *Clearing) eraseFaceKeys(ctx context.Context, subject string, terminals []string) error {
	f := c.faces
	if f.kv == nil {
		return errors.New("face gallery bucket not open")
	}
	keys := make([]string, len(terminals))
	for i, t := range terminals {
		keys[i] = fare.FaceEntryKey(t, f.token(t, subject))
	}
	revs, err := c.faceRevisions(ctx, keys)
	if err != nil {
		return err
	}
	if err := c.eraseRevisions(ctx, revs); err != nil {
		return err
	}
	return c.putFaceHeads(ctx, terminals)
}

// eraseRevisions overwrites the stored puts of each key, then purges every
// key whose last revision was a put: the marker, which holds no data, tells
// watching gates.
func (c *Clearing) eraseRevisions(ctx context.Context, revs map[string][]faceRev) error {
	f := c.faces
	var seqs []uint64
	for _, rs := range revs {
		for _, r := range rs {
			if r.put {
				seqs = append(seqs, r.seq)
			}
		}
	}
	if err := c.secureDelete(ctx, seqs); err != nil {
		return err
	}
	for k, rs := range revs {
		if len(rs) > 0 && rs[len(rs)-1].put {
			if err := f.kv.Purge(ctx, k); err != nil {
				return fmt.Errorf("purge %s %s: %w", fare.FaceBucket, k, err)
			}
		}
	}
	return nil
}

// putFaceHeads issues the heads of the terminals (nil: every active one):
// the galleries' version, what each holds, now (under f.mu).
func (c *Clearing) putFaceHeads(ctx context.Context, terminals []string) error {
	f := c.faces
	active := map[string]bool{}
	for _, t := range c.terminals.All() {
		if !t.Revoked() {
			active[t.ID] = true
		}
	}
	if terminals == nil {
		for t := range active {
			terminals = append(terminals, t)
		}
	}
	heads := map[string]*fare.FaceHead{}
	now := c.cfg.Now().UTC()
	for _, t := range terminals {
		if active[t] {
			heads[t] = &fare.FaceHead{Terminal: t, Version: f.version, IssuedAt: now}
		}
	}
	for k, subject := range f.byKey {
		term, tok, _, err := fare.ParseFaceKey(k)
		r := f.subjects[subject]
		if h := heads[term]; err == nil && h != nil && r != nil {
			h.Count++
			h.Digest.ToggleEntry(tok, r.Version, r.entrySum())
		}
	}
	puts := make([]facePut, 0, len(heads))
	for t, h := range heads {
		f.lastHead[t] = h.IssuedAt
		b, err := h.Sign(c.cfg.ConfirmKey)
		if err != nil {
			return fmt.Errorf("sign face head of %s: %w", t, err)
		}
		puts = append(puts, facePut{fare.FaceHeadBucketKey(t), fare.Bundle(c.rotations, b)})
	}
	for len(puts) > 0 {
		chunk := puts[:min(len(puts), denyChunk)]
		puts = puts[len(chunk):]
		if _, err := c.putFaceValues(ctx, chunk); err != nil {
			return err
		}
	}
	f.issued.Store(max(f.issued.Load(), f.version))
	return nil
}

// noteFaceHead takes the face gallery head terminal term showed on its
// watermark request (fare.FaceHeadHeader): one this clearing signed for
// it, newer than the galleries, says the store is older than galleries it
// issued (restored from a backup). The gate refuses its older heads (its
// gallery goes stale) and, once the version caught up, would keep subjects
// the store lost: the galleries are numbered past the gate's head at once
// (raiseFaceVersion). Anything else is ignored.
func (c *Clearing) noteFaceHead(term, value string) {
	f := c.faces
	if f == nil {
		return
	}
	b, ok := shownHead(value)
	if !ok {
		return
	}
	if h, err := fare.DecodeFaceHead(b); err != nil || h.Version <= f.issued.Load() || h.Version <= f.raiseTo.Load() {
		return // the usual case: not past what was issued, no signature to check
	}
	h, err := fare.VerifyFaceHead(b, []ed25519.PublicKey{c.ConfirmationKey()})
	if err != nil || h.Terminal != term || h.Version >= maxRaisedVersion {
		return
	}
	for {
		v := f.raiseTo.Load()
		if h.Version <= v || f.raiseTo.CompareAndSwap(v, h.Version) {
			break
		}
	}
	select {
	case f.raise <- struct{}{}:
	default:
	}
}

// raiseFaceVersion numbers the galleries past the newest head a gate
// showed (noteFaceHead): the version is written (synced), and heads at it
// issued to every terminal, newer than every gate's: a gate takes them
// once its copy makes them, and reads its keys whole otherwise, dropping
// what the store lost. f.mu is held.
func (c *Clearing) raiseFaceVersion(ctx context.Context) error {
	f := c.faces
	to := f.raiseTo.Load()
	if to <= f.version {
		return nil // nothing shown past the galleries (changes since, or heads being issued)
	}
	was, next := f.version, to+1
	if err := c.store.db.Update(func(txn *badger.Txn) error { return setU64(txn, metaFacesVersion, next) }); err != nil {
		return fmt.Errorf("raise the face galleries' version: %w", err)
	}
	f.version = next
	f.log.Warn("face galleries: a gate follows a newer gallery this clearing issued than its store holds (restored from an older backup?): numbered past it, so the gates follow this store's galleries again, dropping what it lost; face enrolments made since the backup are lost, enrol them again",
		"store_version", was, "gate_version", to, "version", next)
	return c.putFaceHeads(ctx, nil)
}

// isCurrentFace reports whether a stored value is clearing's current entry
// for key: signed with the current key (after a rotation everything is
// signed again), for that terminal and token, at the subject's version.
func (c *Clearing) isCurrentFace(value []byte, key string, version uint64) bool {
	term, tok, head, err := fare.ParseFaceKey(key)
	if err != nil || head {
		return false
	}
	_, b, err := fare.Unbundle(value)
	if err != nil {
		return false
	}
	e, err := fare.VerifyFaceEntry(b, []ed25519.PublicKey{c.ConfirmationKey()})
	return err == nil && e.Terminal == term && e.Key == tok && e.Version == version
}

// faceHeld reports whether the bucket holds r's current value for terminal.
func (c *Clearing) faceHeld(ctx context.Context, terminal string, r *faceRecord) bool {
	key := fare.FaceEntryKey(terminal, c.faces.token(terminal, r.Subject))
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	e, err := c.faces.kv.Get(gctx, key)
	return err == nil && c.isCurrentFace(e.Value(), key, r.Version)
}

// faceRecordOf reads r's templates back from the template store.
func (c *Clearing) faceRecordOf(ctx context.Context, r *faceRecord) (*fare.FaceRecord, error) {
	ts, err := c.faces.store.Templates(ctx, r.Subject)
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("face subject %q: no templates in the template store", r.Subject)
	}
	rec := &fare.FaceRecord{Subject: r.Subject, ModelID: r.ModelID, FaceOnly: r.FaceOnly}
	if r.CardKey != "" {
		rec.HasCard = true
		rec.Card, _ = fare.ParseDenyKey(r.CardKey)
	}
	for _, t := range ts {
		rec.Templates = append(rec.Templates, t.Descriptor)
	}
	return rec, nil
}

// reconcileFaces makes the bucket what the records say (under f.mu): every
// subject's current value for every active terminal in its scope, older
// revisions and anything else overwritten and purged, every head current.
func (c *Clearing) reconcileFaces(ctx context.Context) error {
	f := c.faces
	f.terminalsSeen = c.registryPrint()
	f.rebuildKeys(c)
	got, err := c.faceRevisions(ctx, nil)
	if err != nil {
		return err
	}
	active := map[string]RegisteredTerminal{}
	for _, t := range c.terminals.All() {
		if !t.Revoked() {
			active[t.ID] = t
		}
	}
	stale := map[string][]faceRev{} // keys to erase whole
	var older []uint64              // revisions behind a current value
	want := map[string][]RegisteredTerminal{}
	// Subjects to number anew: a terminal they were sent to before whose
	// key the bucket no longer holds (purged: the subject left its scope
	// and came back, or the value was lost) may hold a tombstone at the
	// subject's version, which refuses a value at it for good (an outside
	// review: a validator whose route left a subject's line and came back
	// never got the subject again).
	renumber := map[string]bool{}
	for key, rs := range got {
		term, _, head, err := fare.ParseFaceKey(key)
		last := rs[len(rs)-1]
		switch {
		case err == nil && head:
			if _, ok := active[term]; !ok && last.put {
				stale[key] = rs
			}
		case err != nil || f.byKey[key] == "":
			stale[key] = rs
		case last.put && c.isCurrentFace(last.data, key, f.subjects[f.byKey[key]].Version):
			for _, r := range rs[:len(rs)-1] {
				if r.put {
					older = append(older, r.seq)
				}
			}
		default:
			want[f.byKey[key]] = append(want[f.byKey[key]], active[term])
			if !last.put {
				renumber[f.byKey[key]] = true
			}
		}
	}
	for key, s := range f.byKey {
		if _, ok := got[key]; !ok {
			term, _, _, _ := fare.ParseFaceKey(key)
			want[s] = append(want[s], active[term])
			if slices.Contains(f.subjects[s].Sent, term) {
				renumber[s] = true
			}
		}
	}
	if err := c.secureDelete(ctx, older); err != nil {
		return err
	}
	if err := c.eraseRevisions(ctx, stale); err != nil {
		return err
	}
	for s, terms := range want {
		r := f.subjects[s]
		rec, err := c.faceRecordOf(ctx, r)
		if err != nil {
			f.log.Error("face subject not sent to its terminals", "subject", s, "err", err)
			continue
		}
		if renumber[s] {
			// A new version, sent to every terminal of the subject's scope.
			r.Version = f.version + 1
			if err := c.store.db.Update(func(txn *badger.Txn) error { return setU64(txn, metaFacesVersion, r.Version) }); err != nil {
				clear(rec.Templates)
				return fmt.Errorf("number face subject %s anew: %w", s, err)
			}
			f.version = r.Version
			terms = terms[:0]
			for key, o := range f.byKey {
				if o == s {
					term, _, _, _ := fare.ParseFaceKey(key)
					terms = append(terms, active[term])
				}
			}
		}
		puts := make([]facePut, 0, len(terms))
		for _, t := range terms {
			p, err := c.sealFace(r, rec, t)
			if err != nil {
				return fmt.Errorf("seal %s for %s: %w", s, t.ID, err)
			}
			puts = append(puts, p)
			if !slices.Contains(r.Sent, t.ID) {
				r.Sent = append(r.Sent, t.ID)
			}
		}
		c.faceClaims.note(r)
		clear(rec.Templates)
		if err := c.replaceFaceValues(ctx, puts); err != nil {
			return err
		}
		if err := c.putFaceRecord(r); err != nil {
			return err
		}
	}
	if err := c.putFaceHeads(ctx, nil); err != nil {
		return err
	}
	if len(stale) > 0 || len(want) > 0 {
		f.log.Info("face gallery bucket reconciled", "sent", len(want), "erased_keys", len(stale), "older_revisions_overwritten", len(older))
	}
	if err := c.markBucketErased(); err != nil {
		return err
	}
	if err := f.kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(faceMarkerAge)); err != nil {
		f.log.Warn("old purge markers not removed", "err", err)
	}
	return nil
}

// putFaceRecord rewrites a subject's record (its Sent list changed).
func (c *Clearing) putFaceRecord(r *faceRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return c.store.db.Update(func(txn *badger.Txn) error { return txn.Set(keyStr(pFace, r.Subject), b) })
}

// followFaces issues every terminal's head every FaceHeadEvery, reconciles
// the bucket when a write failed or the registry changed, removes old purge
// markers and guards the bucket's values, until ctx ends.
func (c *Clearing) followFaces(ctx context.Context) {
	f := c.faces
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		f.tally.Run(ctx, 10*time.Second)
	}()
	go func() {
		defer wg.Done()
		c.guardFaceValues(ctx)
	}()
	defer wg.Wait()
	heads := time.NewTicker(c.cfg.FaceHeadEvery)
	defer heads.Stop()
	check := time.NewTicker(time.Second)
	defer check.Stop()
	markers := time.NewTicker(faceMarkerAge / 6)
	defer markers.Stop()
	lastTry := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-markers.C:
			// Purge markers hold a key and no data; watching gates have had
			// them long since, and a gate reconnecting reads the keys whole.
			// Under f.mu: a key written meanwhile would be purged with them,
			// without being overwritten.
			f.mu.Lock()
			err := f.kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(faceMarkerAge))
			f.mu.Unlock()
			if err != nil && ctx.Err() == nil {
				f.log.Warn("old purge markers not removed", "err", err)
			}
		case <-f.raise:
			f.mu.Lock()
			err := c.raiseFaceVersion(ctx)
			f.mu.Unlock()
			if err != nil && ctx.Err() == nil {
				f.log.Error("face galleries: version not raised past a gate's", "err", err)
				f.dirty.Store(true)
			}
		case <-heads.C:
			f.mu.Lock()
			err := c.putFaceHeads(ctx, nil)
			f.mu.Unlock()
			if err != nil && ctx.Err() == nil {
				f.log.Warn("face gallery heads not issued; gates' copies age meanwhile", "err", err)
				f.dirty.Store(true)
			}
		case <-check.C:
			f.mu.Lock()
			c.retryForget(ctx)
			changed := c.registryPrint() != f.terminalsSeen
			due := changed || (f.dirty.Load() && time.Since(lastTry) >= faceReconcileEvery)
			if due {
				lastTry = time.Now()
				f.dirty.Store(false)
				if err := c.reconcileFaces(ctx); err != nil && ctx.Err() == nil {
					f.log.Warn("face gallery bucket not reconciled; retrying", "err", err)
					f.dirty.Store(true)
				}
			}
			f.mu.Unlock()
		}
	}
}

// guardFaceValues watches the whole bucket and puts back clearing's value
// wherever another appears, until ctx ends.
func (c *Clearing) guardFaceValues(ctx context.Context) {
	f := c.faces
	for ctx.Err() == nil {
		err := c.watchFaceValues(ctx)
		if ctx.Err() != nil {
			return
		}
		f.log.Debug("face gallery repair watch ended; watching again", "err", err)
		f.dirty.Store(true) // what went by meanwhile is found by reconciling
		sleep(ctx, time.Second)
	}
}

func (c *Clearing) watchFaceValues(ctx context.Context) error {
	f := c.faces
	w, err := f.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		var u jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil
		case v, ok := <-w.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			u = v
		}
		if u == nil || u.Operation() != jetstream.KeyValuePut {
			continue // only clearing writes markers (terminals cannot publish to $KV)
		}
		f.mu.Lock()
		did, err := c.repairFaceValue(ctx, u.Key(), u.Value(), u.Revision())
		f.mu.Unlock()
		switch {
		case err != nil:
			f.log.Warn("face gallery value not repaired; reconciling the bucket shortly", "key", u.Key(), "err", err)
			f.dirty.Store(true)
		case did != "":
			f.repaired.Add(1)
			f.tally.Add("repaired", fmt.Sprintf("%s %q: a value clearing did not write (%d bytes); %s", fare.FaceBucket, u.Key(), len(u.Value()), did))
		}
	}
}

// repairFaceValue acts on a value read from the bucket at revision rev
// (under f.mu): nothing if it is clearing's current one or a newer
// revision replaced it; otherwise clearing's value goes back (or the key is
// purged) and the value is overwritten.
func (c *Clearing) repairFaceValue(ctx context.Context, key string, value []byte, rev uint64) (string, error) {
	f := c.faces
	if c.faceValueCurrent(key, value) {
		return "", nil // clearing's own write: the common case, judged without asking the server
	}
	gctx, cancel := context.WithTimeout(ctx, faceWait)
	defer cancel()
	// Only the key's latest message is judged: an older one was replaced
	// (and is judged, or overwritten, with its replacement), and one no
	// longer stored was overwritten or rolled up already.
	cur, err := f.stream.GetLastMsgForSubject(gctx, "$KV."+fare.FaceBucket+"."+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && cur.Sequence != rev) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	term, _, head, perr := fare.ParseFaceKey(key)
	if perr == nil && head {
		if err := c.putFaceHeads(gctx, []string{term}); err != nil {
			return "", err
		}
		return "head issued again and the value overwritten", c.secureDelete(gctx, []uint64{rev})
	}
	s := ""
	if perr == nil {
		s = f.byKey[key]
	}
	t, ok := c.terminals.Lookup(term)
	if s == "" || !ok {
		return "overwritten and purged", c.eraseRevisions(gctx, map[string][]faceRev{key: {{seq: rev, put: true}}})
	}
	r := f.subjects[s]
	rec, err := c.faceRecordOf(gctx, r)
	if err != nil {
		return "", err
	}
	defer clear(rec.Templates)
	p, err := c.sealFace(r, rec, t)
	if err != nil {
		return "", err
	}
	return "put back and overwritten", c.replaceFaceValues(gctx, []facePut{p})
}

// faceValueCurrent reports whether value is what clearing last wrote under
// key (under f.mu): for a head, the one it issued last (an older head put
// back would be refused by gates holding a newer one, but taken by a gate
// starting from nothing); for an entry, the subject's current version.
func (c *Clearing) faceValueCurrent(key string, value []byte) bool {
	f := c.faces
	term, _, head, err := fare.ParseFaceKey(key)
	if err != nil {
		return false
	}
	if !head {
		s := f.byKey[key]
		return s != "" && c.isCurrentFace(value, key, f.subjects[s].Version)
	}
	_, b, err := fare.Unbundle(value)
	if err != nil {
		return false
	}
	h, err := fare.VerifyFaceHead(b, []ed25519.PublicKey{c.ConfirmationKey()})
	return err == nil && h.Terminal == term && h.IssuedAt.Equal(f.lastHead[term])
}

// guardFaceConsumer deletes a consumer a terminal made on the face bucket
// that is not a watch of its own keys into its own inbox: ephemeral, no
// acknowledgements, a short inactive threshold.
func (c *Clearing) guardFaceConsumer(m *nats.Msg) {
	cc, ok := parseConsumerCreate(m.Data)
	if !ok || cc.stream != fare.FaceStream || cc.user == c.natsID.public {
		return
	}
	name := cc.name
	term := c.terminalOfNATSUser(cc.user)
	why := watchViolation(term, cc.cfg, fare.FaceWatchFilter(term))
	if why == "" {
		if excess := c.watches.add(fare.FaceStream, term, name); len(excess) > 0 {
			c.dropWatches(context.Background(), fare.FaceStream, excess, overCap(term))
		}
		return
	}
	c.dropWatches(context.Background(), fare.FaceStream, []string{name}, fmt.Sprintf("made by terminal %q: %s", term, why))
}

// FaceGuard counts what clearing did to keep the face bucket its own since
// it started: values it put back or purged, consumers it deleted.
func (c *Clearing) FaceGuard() (repaired, consumersDeleted uint64) {
	if c.faces == nil {
		return 0, 0
	}
	return c.faces.repaired.Load(), c.faces.deleted.Load()
}

// FaceGalleriesVersion is the face galleries' version (changes made so far)
// and how many subjects are enrolled.
func (c *Clearing) FaceGalleriesVersion() (version uint64, subjects int) {
	if c.faces == nil {
		return 0, 0
	}
	c.faces.mu.Lock()
	defer c.faces.mu.Unlock()
	return c.faces.version, len(c.faces.subjects)
}
