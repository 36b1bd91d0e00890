package clearing

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go"

	"github.com/faregate/faregate/fare"
)

// The deny list at the gates. Clearing's store is its source of truth:
// one record per listed medium, keyed by fare.HashDeny (no raw token is
// kept or sent), and the list's version, which every change (one medium on
// or off) raises by one. A change is written in one synced transaction;
// only then does clearing announce it on fare.DenySubject as a signed
// fare.DenyUpdate (with the confirmation key's rotation chain ahead of it,
// like a confirmation). Terminals apply an update on top of exactly the
// version before it; any other terminal asks on fare.DenySyncSubject for
// the whole list, and clearing answers page by page (fare.DenyPage) into
// that terminal's own inbox, at most denySyncRate pages a second per
// terminal. Clearing repeats the latest update every denyRepeat, so a
// terminal that missed the last change (core NATS drops what nobody
// receives) learns of it without waiting for the next one. Terminals get
// no JetStream access for any of this.
//
// Store keys (beside those in store.go):
//
//	n<key[16]>       a listed medium: JSON {media, reason, since (RFC 3339 UTC)}
//	mdeny-version    version u64 | listed u8 | key[16] of the change that made it

const pDeny = 'n'

var metaDenyVersion = []byte("mdeny-version")

const (
	// denyChunk bounds the changes one synced transaction writes.
	denyChunk = 1000
	// denyRepeat is how often clearing repeats its latest update.
	denyRepeat = 10 * time.Second
	// denySyncRate and denySyncBurst bound the pages clearing sends one
	// terminal: a 10,000-key list (5 pages) fits the burst, and a terminal
	// asking faster than the rate gets no answer.
	denySyncRate  = 20
	denySyncBurst = 40
	// maxDenyReason bounds the reason kept with an entry (it never leaves
	// clearing but for the auditors' API).
	maxDenyReason = 200
)

// DenyEntry is one medium on the deny list as clearing keeps it: never the
// raw token, only its key.
type DenyEntry struct {
	// Key is fare.DenyKey of the medium (32 hex digits).
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

// denyChange is one medium on (listed) or off the list.
type denyChange struct {
	key    fare.DenyHash
	media  fare.MediaKind
	listed bool
	reason string
}

type denyRecord struct {
	Media  string    `json:"media"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

func denyStoreKey(k fare.DenyHash) []byte {
	return append([]byte{pDeny}, k[:]...)
}

func compareDeny(a, b fare.DenyHash) int { return bytes.Compare(a[:], b[:]) }

// denyList is clearing's in-memory view of the stored list: what the
// terminals' sync requests and the repeated update are answered from.
type denyList struct {
	writeMu sync.Mutex // serialises changes: store, view, announcement

	mu      sync.Mutex
	version uint64
	keys    []fare.DenyHash // ascending
	digest  fare.DenyDigest
	last    fare.DenyUpdate    // the change that made version (version 0: none)
	latest  []byte             // last signed and bundled
	pages   map[uint32][]byte  // signed, bundled pages of version
	buckets map[string]*bucket // per terminal: sync pages it may still ask for
	quiet   bool               // tests: announce nothing (a missed update)

	tally *fare.Tally
}

type bucket struct {
	tokens float64
	at     time.Time
}

// loadDenyList reads the stored list into memory.
func (c *Clearing) loadDenyList() error {
	d := &denyList{buckets: make(map[string]*bucket), tally: fare.NewTally(c.log, "deny-list sync requests refused")}
	err := c.store.db.View(func(txn *badger.Txn) error {
		var err error
		if d.version, d.last, err = getDenyVersion(txn); err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pDeny}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 1+fare.DenyKeySize {
				return fmt.Errorf("deny-list record %x: key of %d bytes", k, len(k))
			}
			d.keys = append(d.keys, fare.DenyHash(k[1:]))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load deny list: %w", err)
	}
	if uint64(len(d.keys)) > d.version {
		return fmt.Errorf("load deny list: %d entries at version %d: the store is damaged", len(d.keys), d.version)
	}
	d.digest = fare.DigestDenyList(d.keys)
	d.last.Digest = d.digest
	c.deny = d
	return nil
}

func getDenyVersion(txn *badger.Txn) (uint64, fare.DenyUpdate, error) {
	item, err := txn.Get(metaDenyVersion)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, fare.DenyUpdate{}, nil
	}
	if err != nil {
		return 0, fare.DenyUpdate{}, err
	}
	var u fare.DenyUpdate
	err = item.Value(func(v []byte) error {
		if len(v) != 8+1+fare.DenyKeySize || v[8] > 1 {
			return fmt.Errorf("%s: corrupt record of %d bytes", metaDenyVersion, len(v))
		}
		u.Version, u.Listed = binary.BigEndian.Uint64(v), v[8] == 1
		copy(u.Key[:], v[9:])
		return nil
	})
	return u.Version, u, err
}

func putDenyVersion(txn *badger.Txn, u fare.DenyUpdate) error {
	v := binary.BigEndian.AppendUint64(nil, u.Version)
	listed := byte(0)
	if u.Listed {
		listed = 1
	}
	v = append(v, listed)
	return txn.Set(metaDenyVersion, append(v, u.Key[:]...))
}

// Deny puts a medium on the deny list with a reason: written durably, then
// announced to every terminal. A medium already listed changes nothing (its
// reason and date stay, the version does not move).
func (c *Clearing) Deny(ctx context.Context, m fare.MediaKind, token, reason string) error {
	ch, err := denyChangeOf(m, token, reason, true)
	if err != nil {
		return fmt.Errorf("deny: %w", err)
	}
	_, err = c.changeDenyList(ctx, []denyChange{ch})
	return err
}

// Undeny takes a medium off the deny list: deleted durably (no marker is
// kept), then announced. A medium not listed changes nothing.
func (c *Clearing) Undeny(ctx context.Context, m fare.MediaKind, token string) error {
	ch, err := denyChangeOf(m, token, "", false)
	if err != nil {
		return fmt.Errorf("undeny: %w", err)
	}
	_, err = c.changeDenyList(ctx, []denyChange{ch})
	return err
}

// DenyAll puts several media on the deny list: each one listed is a version
// of its own, written in synced transactions of up to 1,000 media, and the
// last change of each is announced (terminals further behind sync). It
// returns how many it listed; those already listed change nothing.
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
// updates the view and announces each chunk's last change.
func (c *Clearing) changeDenyList(ctx context.Context, changes []denyChange) (int, error) {
	d := c.deny
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
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
		msg, quiet := d.apply(applied, version, c.signDenyUpdate)
		c.log.Info("deny list changed", "version", version, "changes", len(applied), "entries", len(d.keys))
		if msg != nil && !quiet {
			if err := c.nc.Publish(fare.DenySubject, msg); err != nil {
				c.log.Warn("announce deny-list update; terminals learn of it from the next one or the repeat", "version", version, "err", err)
			}
		}
	}
	return done, nil
}

// writeDenyChanges applies changes in one synced transaction, passing over
// those that change nothing (listing a listed medium, unlisting an absent
// one); each other takes the next version. It returns the changes made and
// the version after them.
func (s *Store) writeDenyChanges(changes []denyChange, now time.Time) (applied []denyChange, version uint64, err error) {
	since := now.UTC().Truncate(time.Second)
	err = s.db.Update(func(txn *badger.Txn) error {
		applied = applied[:0]
		v, _, err := getDenyVersion(txn)
		if err != nil {
			return err
		}
		for _, ch := range changes {
			k := denyStoreKey(ch.key)
			_, gerr := txn.Get(k)
			if gerr != nil && !errors.Is(gerr, badger.ErrKeyNotFound) {
				return gerr
			}
			if listed := gerr == nil; listed == ch.listed {
				continue
			}
			if err := writeDenyRecord(txn, k, ch, since); err != nil {
				return err
			}
			v++
			applied = append(applied, ch)
		}
		version = v
		if len(applied) == 0 {
			return nil
		}
		last := applied[len(applied)-1]
		return putDenyVersion(txn, fare.DenyUpdate{Version: v, Listed: last.listed, Key: last.key})
	})
	return applied, version, err
}

func writeDenyRecord(txn *badger.Txn, k []byte, ch denyChange, since time.Time) error {
	if !ch.listed {
		return txn.Delete(k)
	}
	rec, err := json.Marshal(denyRecord{Media: ch.media.String(), Reason: ch.reason, Since: since})
	if err != nil {
		return err
	}
	return txn.Set(k, rec)
}

// apply brings the view to version after applied (already durable) and
// returns the signed announcement of the last change (and whether a test
// silenced announcements).
func (d *denyList) apply(applied []denyChange, version uint64, sign func(fare.DenyUpdate) []byte) (msg []byte, quiet bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	final := make(map[fare.DenyHash]bool, len(applied))
	for _, ch := range applied {
		d.digest.Toggle(ch.key)
		final[ch.key] = ch.listed
	}
	if len(final) <= 16 {
		for k, listed := range final {
			i, found := slices.BinarySearchFunc(d.keys, k, compareDeny)
			switch {
			case listed && !found:
				d.keys = slices.Insert(d.keys, i, k)
			case !listed && found:
				d.keys = slices.Delete(d.keys, i, i+1)
			}
		}
	} else {
		kept := d.keys[:0:0]
		kept = slices.Grow(kept, len(d.keys)+len(final))
		for _, k := range d.keys {
			if listed, changed := final[k]; !changed || listed {
				kept = append(kept, k)
			}
			delete(final, k) // what is left is new
		}
		for k, listed := range final {
			if listed {
				kept = append(kept, k)
			}
		}
		slices.SortFunc(kept, compareDeny)
		d.keys = kept
	}
	last := applied[len(applied)-1]
	d.version = version
	d.last = fare.DenyUpdate{Version: version, Digest: d.digest, Listed: last.listed, Key: last.key}
	d.pages = nil
	d.latest = sign(d.last)
	return d.latest, d.quiet
}

// signDenyUpdate signs u with the confirmation key, the rotation chain
// ahead of it; nil (logged) if it cannot.
func (c *Clearing) signDenyUpdate(u fare.DenyUpdate) []byte {
	b, err := u.Sign(c.cfg.ConfirmKey)
	if err != nil {
		c.log.Error("sign deny-list update", "version", u.Version, "err", err)
		return nil
	}
	return fare.Bundle(c.rotations, b)
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
	return c.deny.version, len(c.deny.keys)
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
		if version, _, err = getDenyVersion(txn); err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte{pDeny}})
		defer it.Close()
		for it.Seek(start); it.Valid() && (limit <= 0 || len(out) < limit); it.Next() {
			k := it.Item().Key()
			var rec denyRecord
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				return fmt.Errorf("deny-list record %x: %w", k, err)
			}
			if len(k) != 1+fare.DenyKeySize {
				return fmt.Errorf("deny-list record %x: key of %d bytes", k, len(k))
			}
			out = append(out, DenyEntry{Key: fare.DenyHash(k[1:]).String(), Media: rec.Media, Reason: rec.Reason, Since: rec.Since})
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("read deny list: %w", err)
	}
	return version, out, nil
}

// answerDenySync answers a terminal's request for a page of the deny list
// on its sync subject (NATS lets only that terminal publish there), only
// into its own inbox and at most denySyncRate pages a second.
func (c *Clearing) answerDenySync(m *nats.Msg) {
	term := m.Subject[len(fare.DenySyncSubject("")):]
	// Clearing may publish anywhere; it must not be made to publish where
	// the terminal may not.
	if fare.ValidateID(term) != nil || !strings.HasPrefix(m.Reply, fare.TerminalInboxPrefix(term)+".") {
		c.deny.tally.Add("reply-outside-inbox", fmt.Sprintf("terminal %s asked for an answer on %q", term, m.Reply))
		return
	}
	if !c.deny.allow(term, time.Now()) {
		c.deny.tally.Add("rate", "terminal "+term+" asks for deny-list pages faster than "+fmt.Sprint(denySyncRate)+" a second")
		return
	}
	req, err := fare.DecodeDenySyncRequest(m.Data)
	if err != nil {
		c.deny.tally.Add("malformed", "terminal "+term+": "+err.Error())
		return
	}
	b, version := c.denyPage(req.Page)
	if req.Have > version {
		// The terminal refuses the older list (it keeps its own); the
		// likely cause is a store restored from an old backup.
		c.deny.tally.Add("terminal-ahead", fmt.Sprintf("terminal %s holds deny-list version %d, clearing only %d: was clearing's store restored from an older backup? Terminals keep their newer copy and refuse this one until clearing's version passes theirs", term, req.Have, version))
	}
	if b != nil {
		_ = m.Respond(b)
	}
}

// allow takes one page from term's bucket.
func (d *denyList) allow(term string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.buckets[term]
	if b == nil {
		b = &bucket{tokens: denySyncBurst, at: now}
		d.buckets[term] = b
	}
	b.tokens = min(denySyncBurst, b.tokens+now.Sub(b.at).Seconds()*denySyncRate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// denyPage returns the signed page (the last if page is past it) of the
// current list, and the list's version.
func (c *Clearing) denyPage(page uint32) ([]byte, uint64) {
	d := c.deny
	d.mu.Lock()
	defer d.mu.Unlock()
	pages := uint32(fare.DenyPages(len(d.keys)))
	page = min(page, pages-1)
	if b, ok := d.pages[page]; ok {
		return b, d.version
	}
	from := int(page) * fare.DenyPageKeys
	p := fare.DenyPage{Version: d.version, Digest: d.digest, Total: uint32(len(d.keys)), Page: page, Pages: pages,
		Keys: d.keys[from:min(len(d.keys), from+fare.DenyPageKeys)]}
	b, err := p.Sign(c.cfg.ConfirmKey)
	if err != nil {
		c.log.Error("sign deny-list page", "version", d.version, "page", page, "err", err)
		return nil, d.version
	}
	b = fare.Bundle(c.rotations, b)
	if d.pages == nil {
		d.pages = make(map[uint32][]byte)
	}
	d.pages[page] = b
	return b, d.version
}

// repeatDenyUpdate publishes the latest update again: a terminal that
// missed it (or is further behind) catches up without waiting for a change.
func (c *Clearing) repeatDenyUpdate() {
	d := c.deny
	d.mu.Lock()
	if d.latest == nil && d.version > 0 {
		d.latest = c.signDenyUpdate(d.last)
	}
	msg, quiet := d.latest, d.quiet
	d.mu.Unlock()
	if msg != nil && !quiet {
		_ = c.nc.Publish(fare.DenySubject, msg)
	}
}

// followDenyList applies queued requests (DenyRequestsDir) every second,
// repeats the latest update every denyRepeat and flushes the sync refusals'
// log until ctx ends.
func (c *Clearing) followDenyList(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.deny.tally.Run(ctx, 10*time.Second)
	}()
	defer wg.Wait()
	c.applyDenyQueue(ctx)
	c.applyEnrolQueue(ctx)
	repeat := time.NewTicker(denyRepeat)
	defer repeat.Stop()
	queue := time.NewTicker(time.Second)
	defer queue.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-repeat.C:
			c.repeatDenyUpdate()
		case <-queue.C:
			c.applyDenyQueue(ctx)
			c.applyEnrolQueue(ctx)
		}
	}
}
