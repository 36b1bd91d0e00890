package clearing

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
//	n<key[16]>       a listed medium: JSON {media, reason, debt, since (RFC 3339 UTC), version}
//
// A medium is listed on one or both of two grounds, each taken off on its
// own: by hand (an operator's `deny add`, a seed file; reason) and for debt
// (clearing's billing; debt). Paying a debt takes the debt ground off and
// leaves a card reported stolen listed; `deny remove` takes the hand ground
// off and leaves a rider in debt listed. The gates see one entry, listed
// while any ground holds, whose version is the one that first listed it.
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
	Key   string `json:"key"`
	Media string `json:"media"`
	// Reason is why, every ground's reason ("; " between them).
	Reason string `json:"reason"`
	// Grounds are what holds the medium listed: "listed" (by hand or a
	// seed: `deny remove` takes it off) and "debt" (the rider's unpaid
	// charge: paying takes it off).
	Grounds []string  `json:"grounds"`
	Since   time.Time `json:"since"`
}

// DenyMedium names a medium to put on the deny list (DenyAll); Debt lists
// it for debt rather than by hand.
type DenyMedium struct {
	Media  fare.MediaKind
	Token  string
	Reason string
	Debt   bool
}

// denyGround is what a listing rests on.
type denyGround uint8

const (
	groundHand denyGround = iota // an operator, a seed file, the simulator's stolen cards
	groundDebt                   // clearing's billing: a declined charge
)

// Deny grounds as DenyEntry.Grounds names them.
const (
	DenyGroundListed = "listed"
	DenyGroundDebt   = "debt"
)

// denyChange is one ground of one medium on (listed) or off the list;
// version is the list's version the change made, once written (0 when the
// gates' entry did not change), and note what it did when that was not
// simply listing or unlisting (a second ground recorded, a ground taken off
// with another still holding, nothing to do).
type denyChange struct {
	key     fare.DenyHash
	media   fare.MediaKind
	ground  denyGround
	listed  bool
	reason  string
	version uint64
	note    string
}

type denyRecord struct {
	Media string `json:"media"`
	// Reason is the hand listing's reason ("" when listed for debt
	// alone), Debt the debt listing's ("" when not in debt).
	Reason string    `json:"reason"`
	Debt   string    `json:"debt,omitempty"`
	Since  time.Time `json:"since"`
	// Version is the list's version that listed the medium (0 in records
	// written before entries carried versions: see loadDenyList).
	Version uint64 `json:"version,omitempty"`
	// Grounds marks a record written since grounds were kept (always
	// true then); see grounds.
	Grounds bool `json:"grounds,omitempty"`
}

// debtReasonPrefix starts every debt listing's reason (debtReason).
const debtReasonPrefix = "debt: "

// grounds reads rec's grounds. Records written before grounds were kept
// had one reason, a debt's starting with debtReasonPrefix; a newer
// record's hand reason may start so too and is still a hand reason.
func (rec *denyRecord) grounds() (hand, debt string) {
	if !rec.Grounds && rec.Debt == "" && strings.HasPrefix(rec.Reason, debtReasonPrefix) {
		return "", rec.Reason
	}
	return rec.Reason, rec.Debt
}

// entry is rec as the API shows it.
func (rec *denyRecord) entry(k fare.DenyHash) DenyEntry {
	hand, debt := rec.grounds()
	e := DenyEntry{Key: k.Hex(), Media: rec.Media, Since: rec.Since, Grounds: []string{}}
	var why []string
	if hand != "" {
		e.Grounds, why = append(e.Grounds, DenyGroundListed), append(why, hand)
	}
	if debt != "" {
		e.Grounds, why = append(e.Grounds, DenyGroundDebt), append(why, debt)
	}
	e.Reason = strings.Join(why, "; ")
	return e
}

// denyRecordOf reads k's deny-list record (nil: not listed).
func (s *Store) denyRecordOf(k fare.DenyHash) (*denyRecord, error) {
	v, err := s.value(denyStoreKey(k))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rec := &denyRecord{}
	if err := json.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("deny-list record %s: %w", k, err)
	}
	return rec, nil
}

func denyStoreKey(k fare.DenyHash) []byte {
	return append([]byte{pDeny}, k[:]...)
}

// enrolShare is a medium's share of the enrolments' digest.
type enrolShare struct {
	key fare.DenyHash
	sum [32]byte
}

// loadDenyList reads the stored list's version, count and digest into the
// gate lists' state, giving records written before entries carried
// versions the list's current version.
func (c *Clearing) loadDenyList() error {
	g := newGateLists(c.log)
	var old []fare.DenyHash
	var missing []enrolShare // digest shares a store of an earlier build lacks or left behind
	reckonAll := false
	err := c.store.db.View(func(txn *badger.Txn) error {
		var err error
		if g.denyVersion, err = getDenyVersion(txn); err != nil {
			return err
		}
		if g.enrolVersion, err = getU64(txn, metaEnrolVersion); err != nil {
			return err
		}
		sumsAt, err := getU64(txn, metaEnrolSumsAt)
		if err != nil {
			return err
		}
		// Shares a build before them may have left behind (records
		// appended since sumsAt) are all reckoned again.
		reckonAll = sumsAt != g.enrolVersion
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
		// Each medium's share of the digest (its entry's version and
		// periods) is stored beside the index, in the same order: read by
		// a second iterator alongside, not from each rider's history,
		// except where a store of an earlier build has none.
		sums := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte{pEnrolSum}})
		defer sums.Close()
		sums.Rewind()
		// Histories, where a share must be reckoned, are read through
		// one iterator (opened at the first need) seeking each rider.
		var hists *badger.Iterator
		defer func() {
			if hists != nil {
				hists.Close()
			}
		}()
		for it2.Rewind(); it2.Valid(); it2.Next() {
			k := it2.Item().Key()
			if len(k) != 1+fare.DenyKeySize {
				return fmt.Errorf("enrolment index 0x%x: key of %d bytes", k, len(k))
			}
			key := fare.DenyHash(k[1:])
			want := enrolSumKey(key)
			for sums.Valid() && bytes.Compare(sums.Item().Key(), want) < 0 {
				sums.Next()
			}
			g.enrolCount++
			if !reckonAll && sums.Valid() && bytes.Equal(sums.Item().Key(), want) {
				if err := sums.Item().Value(func(v []byte) error {
					if len(v) != 32 {
						return fmt.Errorf("enrolment digest share of 0x%s: %d bytes: %w", key, len(v), errCorruptRecord)
					}
					g.enrolDigest.ToggleSum([32]byte(v))
					return nil
				}); err != nil {
					return err
				}
				continue
			}
			rider, err := it2.Item().ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("enrolment index 0x%x: %w", k, err)
			}
			if hists == nil {
				hists = txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pEnrol}})
			}
			hist, err := riderEnrolmentsAt(hists, string(rider))
			if err != nil {
				return err
			}
			if len(hist) == 0 {
				return fmt.Errorf("enrolment index 0x%x: rider %s has no enrolment record: the store is damaged", k, rider)
			}
			sum := fare.EnrolEntrySum(key, hist[len(hist)-1].Seq, EnrolmentPeriods(hist))
			g.enrolDigest.ToggleSum(sum)
			missing = append(missing, enrolShare{key, sum})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load gate lists: %w", err)
	}
	if len(missing) > 0 {
		c.log.Info("enrolments: digest shares reckoned from the riders' histories (a store of an earlier build)", "media", len(missing), "reckoned_all", reckonAll)
	}
	for len(missing) > 0 {
		chunk := missing[:min(len(missing), denyChunk)]
		missing = missing[len(chunk):]
		if err := c.store.db.Update(func(txn *badger.Txn) error {
			for _, m := range chunk {
				if err := txn.Set(enrolSumKey(m.key), m.sum[:]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("load gate lists: store the enrolments' digest shares: %w", err)
		}
	}
	if reckonAll {
		// Last, once every share is written: a crash before this reckons
		// them all again at the next start.
		if err := c.store.db.Update(func(txn *badger.Txn) error { return setU64(txn, metaEnrolSumsAt, g.enrolVersion) }); err != nil {
			return fmt.Errorf("load gate lists: %w", err)
		}
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

// Deny lists a medium by hand with a reason: written durably, then sent to
// every terminal. A medium listed by hand already changes nothing (its
// reason and date stay); one listed for debt keeps its entry and gains the
// reason, so paying the debt leaves it listed.
func (c *Clearing) Deny(ctx context.Context, m fare.MediaKind, token, reason string) error {
	return c.denyOne(ctx, m, token, reason, groundHand, true)
}

// Undeny takes a medium's hand listing off: the record is deleted durably
// and a tombstone entry goes to the terminals, unless the rider is in
// debt, which keeps it listed until paid. A medium not listed by hand
// changes nothing.
func (c *Clearing) Undeny(ctx context.Context, m fare.MediaKind, token string) error {
	return c.denyOne(ctx, m, token, "", groundHand, false)
}

// denyDebt lists a rider's medium for debt (listed) or takes the debt
// listing off (!listed), leaving a hand listing as it is.
func (c *Clearing) denyDebt(ctx context.Context, m fare.MediaKind, token, reason string, listed bool) error {
	return c.denyOne(ctx, m, token, reason, groundDebt, listed)
}

// denyOne makes one change, written together with the changes other
// callers are making at the same time (changeDenyGrouped).
func (c *Clearing) denyOne(ctx context.Context, m fare.MediaKind, token, reason string, g denyGround, listed bool) error {
	ch, err := denyChangeOf(m, token, reason, g, listed)
	if err != nil {
		return fmt.Errorf("deny list: %w", err)
	}
	return c.changeDenyGrouped(ctx, ch)
}

// maxDenyGroup bounds the changes one group writes (the rest wait for
// the next holder of the lock).
const maxDenyGroup = denyChunk

// changeDenyGrouped makes one change with others queued meanwhile, in one
// transaction (groupCommit). Why: a day close that declines many riders'
// charges lists each from one of the collector's billing workers, and one
// synced transaction (and one signed head in the bucket) per rider bounded
// the day by the disk's sync rate.
func (c *Clearing) changeDenyGrouped(ctx context.Context, ch denyChange) error {
	// Written for everyone in the group, so not stopped by this caller's
	// ctx; each write is one synced commit and bounded bucket puts.
	wctx := context.WithoutCancel(ctx)
	return c.deny.group.add("deny list", ch, &c.deny.denyWrite, maxDenyGroup, func(chs []denyChange) error {
		_, err := c.changeDenyListLocked(wctx, chs)
		return err
	})
}

// DenyAll lists several media: each one newly listed is a version of its
// own, written in synced transactions of up to 1,000 media, each chunk then
// sent to the terminals. It returns how many it newly listed; those listed
// on that ground already change nothing.
func (c *Clearing) DenyAll(ctx context.Context, media []DenyMedium) (int, error) {
	changes := make([]denyChange, len(media))
	for i, m := range media {
		g := groundHand
		if m.Debt {
			g = groundDebt
		}
		var err error
		if changes[i], err = denyChangeOf(m.Media, m.Token, m.Reason, g, true); err != nil {
			return 0, fmt.Errorf("deny medium %d: %w", i+1, err)
		}
	}
	return c.changeDenyList(ctx, changes)
}

func denyChangeOf(m fare.MediaKind, token, reason string, g denyGround, listed bool) (denyChange, error) {
	if m != fare.Card && m != fare.Face {
		return denyChange{}, fmt.Errorf("media %s: want card or face", m)
	}
	if token == "" || len(token) > fare.MaxTokenLen || !utf8.ValidString(token) {
		return denyChange{}, fmt.Errorf("a %s token must be 1 to %d bytes of UTF-8", m, fare.MaxTokenLen)
	}
	if listed && (reason == "" || len(reason) > maxDenyReason || !utf8.ValidString(reason)) {
		return denyChange{}, fmt.Errorf("a reason of 1 to %d bytes of UTF-8 is needed", maxDenyReason)
	}
	return denyChange{key: fare.HashDeny(m, token), media: m, ground: g, listed: listed, reason: reason}, nil
}

// changeDenyList writes changes in chunks, each one synced transaction,
// and sends each chunk's entries and the list's new head to the bucket.
func (c *Clearing) changeDenyList(ctx context.Context, changes []denyChange) (int, error) {
	c.deny.denyWrite.Lock()
	defer c.deny.denyWrite.Unlock()
	return c.changeDenyListLocked(ctx, changes)
}

// changeDenyListLocked is changeDenyList for a caller holding denyWrite.
func (c *Clearing) changeDenyListLocked(ctx context.Context, changes []denyChange) (int, error) {
	g := c.deny
	done := 0
	for len(changes) > 0 {
		if err := ctx.Err(); err != nil {
			return done, fmt.Errorf("deny list: %d changes not written: %w", len(changes), err)
		}
		chunk := changes[:min(len(changes), denyChunk)]
		changes = changes[len(chunk):]
		applied, version, err := c.store.writeDenyChanges(chunk, c.cfg.Now())
		g.writes.Add(1)
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

// writeDenyChanges applies changes in one synced transaction. A change
// that lists a medium no ground held, or takes off its last ground, changes
// the gates' entry and takes the next version; one that adds or removes a
// ground beside another only rewrites the record (the gates' entry stays);
// one whose ground is as asked changes nothing. Each change's note says
// what it did when it was not a plain listing or unlisting. It returns the
// changes the gates must hear of (with their versions) and the version
// after them.
func (s *Store) writeDenyChanges(changes []denyChange, now time.Time) (applied []denyChange, version uint64, err error) {
	since := now.UTC().Truncate(time.Second)
	err = s.db.Update(func(txn *badger.Txn) error {
		applied = applied[:0]
		v, err := getDenyVersion(txn)
		if err != nil {
			return err
		}
		seen := make(map[fare.DenyHash]*denyRecord, len(changes))
		for i := range changes {
			ch := &changes[i]
			ch.note, ch.version = "", 0
			k := denyStoreKey(ch.key)
			rec, ok := seen[ch.key]
			if !ok {
				item, gerr := txn.Get(k)
				switch {
				case errors.Is(gerr, badger.ErrKeyNotFound):
				case gerr != nil:
					return gerr
				default:
					rec = &denyRecord{}
					if err := item.Value(func(b []byte) error { return json.Unmarshal(b, rec) }); err != nil {
						return fmt.Errorf("deny-list record %s: %w", ch.key, err)
					}
				}
			}
			next, note := changeGround(rec, ch)
			ch.note = note
			if next == rec {
				continue // as asked already
			}
			gates := (rec == nil) != (next == nil) // the gates' entry changes
			if gates {
				v++
				ch.version = v
			}
			if next == nil {
				if err := txn.Delete(k); err != nil {
					return err
				}
			} else {
				if rec == nil { // newly listed
					next.Media, next.Since, next.Version = ch.media.String(), since, v
				}
				b, err := json.Marshal(next)
				if err != nil {
					return err
				}
				if err := txn.Set(k, b); err != nil {
					return err
				}
			}
			seen[ch.key] = next
			if gates {
				applied = append(applied, *ch)
			}
		}
		version = v
		if len(applied) == 0 {
			return nil
		}
		return txn.Set(metaDenyVersion, binary.BigEndian.AppendUint64(nil, v))
	})
	return applied, version, err
}

// changeGround is rec (nil: not listed) with ch's ground set or taken off:
// rec itself when nothing changes, a new record otherwise (nil: no ground
// left), and a note when the change was not a plain listing or unlisting.
func changeGround(rec *denyRecord, ch *denyChange) (*denyRecord, string) {
	var hand, debt string
	if rec != nil {
		hand, debt = rec.grounds()
	}
	was := [2]string{hand, debt}
	g := &hand
	if ch.ground == groundDebt {
		g = &debt
	}
	var note string
	switch {
	case ch.listed && *g != "":
		if ch.ground == groundDebt && *g != ch.reason {
			*g = ch.reason // the debt as it stands now
		} else {
			note = "listed on that ground already: reason and date kept"
		}
	case ch.listed:
		*g = ch.reason
		if rec != nil {
			note = "listed already (" + otherGround(ch.ground) + "): this reason recorded as well, the gates' entry unchanged"
		}
	case *g == "":
		note = "not listed on that ground: nothing taken off"
		if rec != nil {
			note = "not listed on that ground: nothing taken off; still listed (" + otherGround(ch.ground) + ")"
		}
	default:
		*g = ""
		if hand != "" || debt != "" {
			note = "taken off, but still listed (" + otherGround(ch.ground) + ")"
			if ch.ground == groundHand {
				note += ": the rider is in debt, and paying takes it off"
			}
		}
	}
	if was == [2]string{hand, debt} {
		return rec, note
	}
	if hand == "" && debt == "" {
		return nil, note
	}
	next := &denyRecord{Reason: hand, Debt: debt, Grounds: true}
	if rec != nil {
		next.Media, next.Since, next.Version = rec.Media, rec.Since, rec.Version
	}
	return next, note
}

func otherGround(g denyGround) string {
	if g == groundDebt {
		return "by hand"
	}
	return "for debt"
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
			out = append(out, rec.entry(fare.DenyHash(k[1:])))
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
