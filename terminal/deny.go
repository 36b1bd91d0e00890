package terminal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/fare/gatefeed"
)

// The terminal's copy of clearing's gate lists (see fare/gatelist.go): the
// deny list and the concession enrolments. Both live in the outbox's store,
// so a gate that starts without the network still refuses what clearing
// listed and knows each enrolled card's category. While Run runs, one
// goroutine follows both JetStream key-value buckets through the gate feeds
// clearing makes for it (fare/gatefeed: consumers delivering into the
// terminal's inbox, the terminal having no JetStream API) and applies what
// it reads; it starts the watch again on every reconnect, so a terminal
// that was offline catches up. A gate that holds a copy asks to resume from
// its position (the stream and the last revision it took, stored with the
// copy): clearing then sends only what was written since, and a whole city
// of gates reconnecting at once does not read a large list whole each (an
// outside test: 600 gates, 50,000 media, half a minute). If the resumed
// copy does not then make the list's signed head (the one sent with the
// grant, or a newer one read), or the head is refused, the position is
// dropped and the bucket read whole, where what follows applies; a whole
// read leaves the position where the stream ends.
//
// A value is applied only if it verifies against a trusted clearing key
// (through the rotation chain bundled with it), is an entry of that
// bucket's list for the key it is stored under, and is newer than the entry
// the copy holds for that medium: a replayed or stale value is ignored (and
// counted). Unlisting is an entry of its own (a tombstone, kept in the
// copy), never a deletion. A head older than the copy's (a clearing
// restored from an old backup) is refused, counted and logged; once the
// bucket has been read whole and its head is at least as new as the copy's,
// media the bucket no longer holds are dropped from the copy, and if the
// copy then differs from what the head says (its count and digest) while
// the bucket's entries make it exactly, the copy takes the bucket's: a
// restored clearing's new changes repeat version numbers of the lost ones,
// which the per-medium rule alone would drop as not newer.
//
// Policy for categories: the event's rider category is the one the medium's
// enrolment gives at the tap's time (empty: the feed's default), never what
// the reader claims (Tap.RiderCategory); clearing prices by its own
// enrolment records anyway.

// Reasons a gate-list value is refused (the refusals metric's labels).
// Untrusted, malformed and older-list are anomalies; stale also counts a
// value a newer one overtook on its way.
const (
	DenyRefusedUntrusted = "untrusted"  // no trusted clearing key signed it
	DenyRefusedMalformed = "malformed"  // not a gate-list value, another list's or another key's
	DenyRefusedStale     = "stale"      // an entry not newer than the copy's for its medium
	DenyRefusedOlder     = "older-list" // a head older than the copy's (clearing restored from an old backup)
)

var denyRefusalReasons = []string{DenyRefusedUntrusted, DenyRefusedMalformed, DenyRefusedStale, DenyRefusedOlder}

// Store keys of the copy (see terminal.go's key layout).
const (
	pEnrolled = 'g' // g<key[16]>: the signed enrolment entry
)

// keyEnrolVersion is the version of the stored enrolments copy's head.
var keyEnrolVersion = []byte("menrol-version")

// keyFeedPosition are where the stored copies stand in their buckets'
// streams (fare.GateFeedPosition, JSON): deny list, enrolments.
var keyFeedPosition = [2][]byte{[]byte("mdeny-position"), []byte("menrol-position")}

const (
	// gateChunk bounds the writes one transaction of the copy holds.
	gateChunk = 1000
	// gateRetryMax bounds the wait before watching again after a failure.
	gateRetryMax = 5 * time.Second
)

type denyItem struct {
	version uint64
	listed  bool
}

// denyCopy is the in-memory view of the stored copy of both lists. decide
// and category read it under mu; only the follower goroutine (and Open)
// write it.
type denyCopy struct {
	mu        sync.RWMutex
	deny      map[fare.DenyHash]denyItem
	listed    int
	enrol     map[fare.DenyHash]*fare.GateEntry
	denyHead  uint64
	enrolHead uint64
	// headValue is each list's head the copy follows (deny list,
	// enrolments), as the bucket held it (signed): shown to clearing on
	// each watermark request (fare.DenyHeadHeader, fare.EnrolHeadHeader).
	headValue [2][]byte
	// position is where each copy stands in its bucket's stream (deny
	// list, enrolments): what the next feed resumes from.
	position [2]fare.GateFeedPosition
}

// keyHeadValue is where the stored copy keeps each list's head value (deny
// list, enrolments).
var keyHeadValue = [2][]byte{[]byte("mdeny-head"), []byte("menrol-head")}

// listIndex is l's index in the copy's per-list arrays: 0 the deny list,
// 1 the enrolments.
func listIndex(l fare.GateList) int {
	if l == fare.EnrolGateList {
		return 1
	}
	return 0
}

// headValues is the signed heads the copies follow (deny list, enrolments;
// nil: none).
func (d *denyCopy) headValues() [2][]byte {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.headValue
}

func (d *denyCopy) has(k fare.DenyHash) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.deny[k].listed
}

// categoryAt is the category the medium's enrolment gives at at ("" for
// the default).
func (d *denyCopy) categoryAt(k fare.DenyHash, at time.Time) string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if e := d.enrol[k]; e != nil {
		return fare.CategoryAt(e.Periods, at)
	}
	return ""
}

func denyKey(k fare.DenyHash) []byte  { return append([]byte{pDenied}, k[:]...) }
func enrolKey(k fare.DenyHash) []byte { return append([]byte{pEnrolled}, k[:]...) }

func denyValue(it denyItem) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 9), it.version)
	if it.listed {
		return append(v, 1)
	}
	return append(v, 0)
}

// loadDenyCopy reads the stored copy of both lists (Open).
func (t *Terminal) loadDenyCopy(txn *badger.Txn) error {
	d := &t.deny
	d.deny = make(map[fare.DenyHash]denyItem)
	d.enrol = make(map[fare.DenyHash]*fare.GateEntry)
	var err error
	if d.denyHead, err = getU64(txn, keyDenyVersion); err != nil {
		return err
	}
	if d.enrolHead, err = getU64(txn, keyEnrolVersion); err != nil {
		return err
	}
	for i, key := range keyHeadValue {
		switch item, err := txn.Get(key); {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			if d.headValue[i], err = item.ValueCopy(nil); err != nil {
				return err
			}
		}
	}
	for i, key := range keyFeedPosition {
		switch item, err := txn.Get(key); {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			// A position that does not decode is only a whole read.
			_ = item.Value(func(v []byte) error { return json.Unmarshal(v, &d.position[i]) })
		}
	}
	for _, p := range []byte{pDenied, pEnrolled} {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{p}})
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 1+fare.DenyKeySize {
				it.Close()
				return fmt.Errorf("gate-list entry %x: key of %d bytes", k, len(k))
			}
			h := fare.DenyHash(k[1:])
			err := it.Item().Value(func(v []byte) error {
				if p == pEnrolled {
					e, err := fare.DecodeGateEntry(v)
					if err != nil {
						return fmt.Errorf("stored enrolment %s: %w", h, err)
					}
					d.enrol[h] = e
					return nil
				}
				switch {
				case len(v) == 0: // stored before entries carried versions: listed
					d.deny[h] = denyItem{listed: true}
				case len(v) == 9 && v[8] <= 1:
					d.deny[h] = denyItem{version: binary.BigEndian.Uint64(v), listed: v[8] == 1}
				default:
					return fmt.Errorf("stored deny-list entry %s: %d bytes", h, len(v))
				}
				return nil
			})
			if err != nil {
				it.Close()
				return err
			}
		}
		it.Close()
	}
	for _, it := range d.deny {
		if it.listed {
			d.listed++
		}
	}
	return nil
}

// DenyListVersion is the version of the deny-list copy this terminal holds
// (its head's) and how many media it lists.
func (t *Terminal) DenyListVersion() (version uint64, n int) {
	t.deny.mu.RLock()
	defer t.deny.mu.RUnlock()
	return t.deny.denyHead, t.deny.listed
}

// EnrolmentVersion is the version of the enrolments copy this terminal
// holds and how many media it has an entry for.
func (t *Terminal) EnrolmentVersion() (version uint64, n int) {
	t.deny.mu.RLock()
	defer t.deny.mu.RUnlock()
	return t.deny.enrolHead, len(t.deny.enrol)
}

// Category is the rider category the gate's copy of the enrolments gives
// the medium at at ("" for the feed's default): what a tap's event carries.
func (t *Terminal) Category(m fare.MediaKind, token string, at time.Time) string {
	return t.deny.categoryAt(fare.HashDeny(m, token), at)
}

// RefusedDenyMessages counts gate-list values (deny list and enrolments)
// the terminal ignored since it opened.
func (t *Terminal) RefusedDenyMessages() uint64 {
	var n uint64
	for _, c := range t.denyRefused {
		n += c.Load()
	}
	return n
}

// DenyRefusals counts the gate-list values the terminal ignored since it
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
		Name: "faregate_terminal_deny_refused_total", Help: "Gate-list values (deny list and enrolments) the terminal ignored, by reason (untrusted signature, malformed, stale entry, a head older than its own).",
		ConstLabels: prometheus.Labels{"terminal": id},
	}, []string{"reason"})
}

// gateFollower is the gate-list goroutine's state.
type gateFollower struct {
	t *Terminal
	// trustedValues counts the list values (entries and heads) whose
	// signature verified, over every session.
	trustedValues uint64
	nc            *nats.Conn // whose inbox is the terminal's (gatefeed.Start)
	// keys caches the keys a rotation chain leads to from the trusted ones.
	keysID [32]byte
	keys   []ed25519.PublicKey
	// pending holds writes of the copy not yet committed (nil value: delete).
	pending map[string][]byte
	// downSince is when the feeds were last followed, or first failed to
	// be since (zero while they are followed); downWarned: said so.
	downSince  time.Time
	downWarned bool
	movedSaid  time.Time // when a feed moved by another's request was last said
}

// followed notes that both feeds are followed again.
func (f *gateFollower) followed() {
	f.t.setListsLive(true)
	if f.downWarned {
		f.t.log.Info("gate lists followed again")
	}
	f.downSince, f.downWarned = time.Time{}, false
}

// unfollowed notes that the feeds are not followed (err: why), warning
// once a connected gate has gone Config.ListsDownWarn without them: a
// reconnect or a lost feed is followed again within seconds; longer,
// clearing is refusing its requests (an outside review: another holder of
// the gate's key asking for its feed twice a second kept every request of
// the gate's own refused as too soon, and the gate let a card listed
// meanwhile through, unsaid).
func (f *gateFollower) unfollowed(err error) {
	f.t.setListsLive(false)
	now := time.Now()
	if errors.Is(err, gatefeed.ErrMoved) && now.Sub(f.movedSaid) >= time.Minute {
		// Told by clearing: said at once, not after ListsDownWarn.
		f.movedSaid = now
		f.t.log.Warn("clearing moved this gate's list feed to another inbox at a request the gate did not make: another holder of this gate's key is reading its feeds; the gate asks for them back (revoke the key if this gate's is the one: faregate ledger revoke-terminal)", "err", err)
	}
	if !f.nc.IsConnected() {
		// Offline is no refusal: counted from the first failure after
		// the connection is back (a clearing restart longer than the
		// warning's wait made gates warn at their first too-soon retry).
		f.downSince = time.Time{}
		return
	}
	if f.downSince.IsZero() {
		f.downSince = now
	}
	if f.downWarned || now.Sub(f.downSince) < f.t.cfg.ListsDownWarn {
		return
	}
	f.downWarned = true
	f.t.log.Warn("the gate's lists are not followed though it is connected: clearing refuses or does not serve its requests for their feeds, and a card listed since is let through until they are (another holder of this gate's key asking for its feeds? clearing logs that)",
		"since", f.downSince.UTC().Format(time.RFC3339), "err", err)
}

// listSession is what one watch of one bucket has seen.
type listSession struct {
	list fare.GateList
	// resumed: the feed sends only what was written after the copy's
	// position (no whole read: nothing may be dropped as unseen); stream
	// names the stream read and last is the newest revision taken.
	resumed  bool
	stream   string
	last     uint64
	mismatch bool // resumed, the copy does not make the head: read whole
	// grantHead is the head the bucket held when a resumed feed was
	// granted: checked once the values after the position are taken, if
	// none of them was a head (it is the newest value, after its entries).
	grantHead []byte
	seen      map[fare.DenyHash]struct{}
	initDone  bool
	head      *fare.GateHead // the newest head taken this session
	warned    bool
	// bucket holds the last trusted entry read for each medium this
	// session, whatever the copy's version: after a clearing restored from
	// an older backup, its new versions repeat numbers of the lost
	// changes, and the copy takes the bucket's entries when they (and not
	// the copy) are what the signed head says (reconcile).
	bucket map[fare.DenyHash]bucketEntry
}

// bucketEntry is a trusted entry as read from a bucket.
type bucketEntry struct {
	e   *fare.GateEntry
	raw []byte // the signed entry, as the copy stores enrolments
}

func (f *gateFollower) refuse(reason, detail string) {
	t := f.t
	t.denyRefused[reason].Add(1)
	t.denyRefusedBy.WithLabelValues(reason).Inc()
	t.denyRefusals.Add(reason, detail)
}

// trusted are the keys a value bundled with rotations is checked against:
// the terminal's trusted keys, moved along the chain as learn would (the
// Run goroutine learns and stores rotations from confirmations; this
// goroutine only reads).
func (f *gateFollower) trusted(rotations [][]byte) []ed25519.PublicKey {
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

// follow keeps the copy current until ctx ends, watching both buckets
// again whenever kick fires (reconnected) or a watch fails.
func (f *gateFollower) follow(ctx context.Context, kick <-chan struct{}) {
	retry := newBackOff(250*time.Millisecond, gateRetryMax)
	for {
		err := f.session(ctx, kick)
		if ctx.Err() != nil {
			f.t.setListsLive(false)
			return
		}
		if err == nil {
			f.t.setListsLive(false) // a reconnect: asked again at once
			retry.Reset()
			continue
		}
		f.unfollowed(err)
		wait := retry.NextBackOff()
		if errors.Is(err, gatefeed.ErrMoved) {
			// Asked back past clearing's half second between grants of
			// one feed (sooner is refused as too soon: an outside review).
			wait = max(wait, gatefeed.RetakeAfter)
		}
		f.t.log.Debug("gate-list watch failed; retrying", "err", err, "in", wait)
		tm := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			tm.Stop()
			return
		case <-kick:
		case <-tm.C:
		}
		tm.Stop()
	}
}

// errWatchEnded: a watch's channel closed (its subscription went away).
var errWatchEnded = errors.New("gate-list watch ended")

// errResumedMismatch: a resumed copy does not make its list's head.
var errResumedMismatch = errors.New("gate-list copy resumed from its position does not make clearing's signed head; reading the bucket whole")

// advancePosition stages list i's position at what session s has taken,
// if that is past the copy's.
func (f *gateFollower) advancePosition(i int, s *listSession) {
	d := &f.t.deny
	d.mu.RLock()
	held := d.position[i]
	d.mu.RUnlock()
	if s.stream == "" || s.last == 0 || (held.Stream == s.stream && held.Revision >= s.last) {
		return
	}
	f.setPosition(i, fare.GateFeedPosition{Stream: s.stream, Revision: s.last})
}

// setPosition makes pos list i's position (zero: none, read whole next)
// and stages its write, after the entries (a meta key: flush).
func (f *gateFollower) setPosition(i int, pos fare.GateFeedPosition) {
	d := &f.t.deny
	d.mu.Lock()
	d.position[i] = pos
	d.mu.Unlock()
	if !pos.Valid() {
		f.stage(keyFeedPosition[i], nil)
		return
	}
	b, _ := json.Marshal(pos)
	f.stage(keyFeedPosition[i], b)
}

// session reads both buckets whole and then follows them, until ctx ends
// or kick fires (nil), or a watch fails.
func (f *gateFollower) session(ctx context.Context, kick <-chan struct{}) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A kick for the connection the feeds were asked on is no reconnect:
	// nats.go calls a late first connection's handler on an early one too,
	// and every start asked for its feeds twice (refused the second time
	// as too soon: an outside test).
	reconnects := f.nc.Stats().Reconnects
	var watchers [2]*gatefeed.Watch
	sessions := [2]*listSession{{list: fare.DenyGateList}, {list: fare.EnrolGateList}}
	for i, feed := range []string{fare.FeedDeny, fare.FeedEnrol} {
		s := sessions[i]
		s.seen = make(map[fare.DenyHash]struct{})
		f.t.deny.mu.RLock()
		pos := f.t.deny.position[i]
		f.t.deny.mu.RUnlock()
		w, err := gatefeed.Resume(sctx, f.nc, f.t.cfg.ID, feed, pos)
		if err != nil {
			return fmt.Errorf("bucket %s: %w", s.list.Bucket(), err)
		}
		defer w.Stop()
		watchers[i] = w
		s.resumed, s.stream, s.grantHead = w.Resumed(), w.Stream(), w.Head()
	}
	f.followed()
	defer f.flush()
	untrusted, trustedBefore := f.t.denyRefused[DenyRefusedUntrusted].Load(), f.trustedValues // before this session's reads
	// Writes a full disk held back are tried again while they wait, not
	// only at the next update.
	retry := time.NewTicker(5 * time.Second)
	defer retry.Stop()
	for {
		var u *gatefeed.Entry
		var ok bool
		var s *listSession
		var w *gatefeed.Watch
		var i int
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
			if f.nc.Stats().Reconnects == reconnects {
				continue
			}
			return nil
		case <-retry.C:
			if err := f.flush(); err != nil {
				return err
			}
			continue
		case u, ok = <-watchers[0].Updates():
			i = 0
		case u, ok = <-watchers[1].Updates():
			i = 1
		}
		s, w = sessions[i], watchers[i]
		if !ok {
			if err := w.Err(); err != nil {
				return fmt.Errorf("%w: %s: %w", errWatchEnded, s.list.Bucket(), err)
			}
			return errWatchEnded
		}
		f.apply(s, u)
		if u == nil && s.resumed && s.head == nil && s.grantHead != nil {
			f.apply(s, &gatefeed.Entry{Key: fare.GateHeadKey, Value: s.grantHead})
		}
		if s.mismatch {
			// Resumed, the copy does not make the list's signed head:
			// read whole (where a restored clearing's entries are taken).
			f.setPosition(i, fare.GateFeedPosition{})
			return fmt.Errorf("%w: %s", errResumedMismatch, s.list)
		}
		if u != nil {
			s.last = max(s.last, u.Revision)
		}
		switch {
		case u == nil && !s.resumed && s.stream != "":
			// Read whole: the copy stands where the stream ends now, even
			// below a position held before (a stream restored from a
			// backup numbers its values again from there: an outside
			// review saw a resumption from the older, higher position
			// skip them).
			f.setPosition(i, fare.GateFeedPosition{Stream: s.stream, Revision: s.last})
		case s.resumed || s.initDone:
			// Every value up to s.last taken: where the next feed resumes.
			f.advancePosition(i, s)
		}
		if u == nil && sessions[0].initDone && sessions[1].initDone {
			if f.t.denyRefused[DenyRefusedUntrusted].Load() > untrusted && f.trustedValues == trustedBefore {
				// Everything clearing sent was refused as not its: the
				// gate's copy is whatever it held before (none, for a new
				// gate), and saying "synced" would hide that listed cards
				// may pass.
				dv, _ := f.t.DenyListVersion()
				f.t.log.Error("gate lists NOT synced: every list value clearing sent was refused as not signed by a trusted clearing key, so the gate decides from what it held before (deny-list version shown; 0: none, listed cards pass): is --clearing-key clearing's current key? (`faregate clearing key --data DIR` prints it)", "deny_version", dv)
			} else {
				f.t.listsSynced()
			}
		}
		if len(f.pending) >= gateChunk || (len(watchers[0].Updates()) == 0 && len(watchers[1].Updates()) == 0) {
			if err := f.flush(); err != nil {
				return err
			}
		}
	}
}

// apply acts on one value read from s's bucket (nil: the bucket has been
// read whole).
func (f *gateFollower) apply(s *listSession, u *gatefeed.Entry) {
	if u == nil {
		s.initDone = true
		f.reconcile(s)
		return
	}
	if u.Op != "" {
		f.refuse(DenyRefusedMalformed, fmt.Sprintf("%s: a %s of %q (clearing never deletes; ignored)", s.list.Bucket(), u.Op, u.Key))
		return
	}
	rotations, b, err := fare.Unbundle(u.Value)
	if err != nil {
		f.refuse(DenyRefusedMalformed, fmt.Sprintf("%s %q: %v", s.list.Bucket(), u.Key, err))
		return
	}
	if u.Key == fare.GateHeadKey {
		f.applyHead(s, b, rotations, u.Value)
		return
	}
	key, err := fare.ParseDenyKey(u.Key)
	if err != nil {
		f.refuse(DenyRefusedMalformed, fmt.Sprintf("%s: %v", s.list.Bucket(), err))
		return
	}
	s.seen[key] = struct{}{}
	e, err := fare.VerifyGateEntry(b, f.trusted(rotations))
	switch {
	case errors.Is(err, fare.ErrUntrustedGateList):
		f.refuse(DenyRefusedUntrusted, fmt.Sprintf("%s 0x%s: %v", s.list.Bucket(), key, err))
		return
	case err != nil:
		f.refuse(DenyRefusedMalformed, fmt.Sprintf("%s 0x%s: %v", s.list.Bucket(), key, err))
		return
	case e.List != s.list:
		f.refuse(DenyRefusedMalformed, fmt.Sprintf("%s 0x%s: an entry of the %s", s.list.Bucket(), key, e.List))
		return
	case e.Key != key:
		f.refuse(DenyRefusedMalformed, fmt.Sprintf("%s 0x%s: the entry of medium 0x%s", s.list.Bucket(), key, e.Key))
		return
	}
	f.trustedValues++
	if s.bucket == nil {
		s.bucket = make(map[fare.DenyHash]bucketEntry)
	}
	s.bucket[key] = bucketEntry{e: e, raw: b}
	d := &f.t.deny
	d.mu.Lock()
	defer d.mu.Unlock()
	if e.List == fare.DenyGateList {
		held, ok := d.deny[key]
		if ok && e.Version <= held.version {
			if e.Version < held.version || e.Listed != held.listed {
				f.refuse(DenyRefusedStale, fmt.Sprintf("deny-list entry 0x%s at version %d, copy at %d", key, e.Version, held.version))
			}
			return
		}
		f.setDeny(key, held, denyItem{version: e.Version, listed: e.Listed})
		return
	}
	if held := d.enrol[key]; held != nil && e.Version <= held.Version {
		if e.Version < held.Version {
			f.refuse(DenyRefusedStale, fmt.Sprintf("enrolment entry 0x%s at version %d, copy at %d", key, e.Version, held.Version))
		}
		return
	}
	d.enrol[key] = e
	f.stage(enrolKey(key), b)
}

// applyHead takes a list's head unless it is older than the copy's.
func (f *gateFollower) applyHead(s *listSession, b []byte, rotations [][]byte, value []byte) {
	taken := false
	defer func() {
		if s.resumed && !taken {
			// A resumed copy is trusted only once it makes a head: one
			// refused (older than the copy's: a restored clearing whose
			// values the position skipped; or not clearing's) leaves
			// nothing to check it against, so it is read whole (an
			// outside review: listed cards passed until the gate's next
			// tap showed clearing its newer head).
			s.mismatch = true
		}
	}()
	h, err := fare.VerifyGateHead(b, f.trusted(rotations))
	switch {
	case errors.Is(err, fare.ErrUntrustedGateList):
		f.refuse(DenyRefusedUntrusted, fmt.Sprintf("%s head: %v", s.list.Bucket(), err))
		return
	case err != nil:
		f.refuse(DenyRefusedMalformed, fmt.Sprintf("%s head: %v", s.list.Bucket(), err))
		return
	case h.List != s.list:
		f.refuse(DenyRefusedMalformed, fmt.Sprintf("%s head: the head of the %s", s.list.Bucket(), h.List))
		return
	}
	f.trustedValues++
	d := &f.t.deny
	d.mu.Lock()
	taken = true
	held, key := &d.denyHead, keyDenyVersion
	if s.list == fare.EnrolGateList {
		held, key = &d.enrolHead, keyEnrolVersion
	}
	if h.Version < *held {
		v := *held
		taken = false
		d.mu.Unlock()
		f.refuse(DenyRefusedOlder, fmt.Sprintf("clearing's %s is at version %d, this terminal holds %d: kept (was clearing restored from an older backup?)", s.list, h.Version, v))
		return
	}
	if h.Version > *held {
		*held = h.Version
		f.stage(key, binary.BigEndian.AppendUint64(nil, h.Version))
	}
	if i := listIndex(s.list); !bytes.Equal(d.headValue[i], value) {
		d.headValue[i] = bytes.Clone(value)
		f.stage(keyHeadValue[i], d.headValue[i])
	}
	d.mu.Unlock()
	s.head = h
	if s.initDone {
		f.reconcile(s)
	}
}

// reconcile, once the bucket has been read whole under a head at least as
// new as the copy's, drops what the bucket does not hold and checks the
// copy against the head.
func (f *gateFollower) reconcile(s *listSession) {
	if s.head == nil || !s.initDone {
		return
	}
	d := &f.t.deny
	d.mu.Lock()
	if s.resumed {
		// Only what changed was read: nothing is dropped as unseen, and a
		// copy that does not make the head is read whole (session).
		count, digest := d.countDigest(s.list)
		d.mu.Unlock()
		if count != s.head.Count || digest != s.head.Digest {
			f.t.log.Info("gate-list copy resumed from its position differs from clearing's head; reading the bucket whole", "list", s.list.String(), "version", s.head.Version, "copy", count, "clearing", s.head.Count)
			s.mismatch = true
		}
		return
	}
	var dropped int
	var count uint64
	var digest fare.DenyDigest
	if s.list == fare.DenyGateList {
		for k, it := range d.deny {
			if _, ok := s.seen[k]; !ok {
				if it.listed {
					d.listed--
				}
				delete(d.deny, k)
				f.stage(denyKey(k), nil)
				dropped++
				continue
			}
			if it.listed {
				count++
				digest.Toggle(k)
			}
		}
	} else {
		for k, e := range d.enrol {
			if _, ok := s.seen[k]; !ok {
				delete(d.enrol, k)
				f.stage(enrolKey(k), nil)
				dropped++
				continue
			}
			count++
			digest.ToggleEnrolment(k, e.Version, e.Periods)
		}
	}
	if count != s.head.Count || digest != s.head.Digest {
		if n := f.adoptBucket(s); n > 0 {
			count, digest = s.head.Count, s.head.Digest
			f.t.log.Warn("gate list: the copy takes the bucket's entries, which match clearing's signed head where the copy did not (their versions repeat numbers the copy had seen: clearing restored from an older backup?)",
				"list", s.list.String(), "version", s.head.Version, "entries_taken", n)
		}
	}
	d.mu.Unlock()
	if dropped > 0 {
		f.t.log.Info("gate list: media clearing no longer holds dropped from the copy", "list", s.list.String(), "dropped", dropped, "version", s.head.Version)
	}
	if (count != s.head.Count || digest != s.head.Digest) && !s.warned {
		s.warned = true
		f.t.log.Warn("gate-list copy differs from clearing's head (a value replaced in the bucket, which clearing puts back, or one on its way)", "list", s.list.String(), "version", s.head.Version, "copy", count, "clearing", s.head.Count)
	} else if count == s.head.Count && digest == s.head.Digest {
		s.warned = false
	}
}

// countDigest (under mu) is how many media the copy of list holds (the
// deny list: listed) and their digest, as a head says them.
func (d *denyCopy) countDigest(list fare.GateList) (count uint64, digest fare.DenyDigest) {
	if list == fare.DenyGateList {
		for k, it := range d.deny {
			if it.listed {
				count++
				digest.Toggle(k)
			}
		}
		return count, digest
	}
	for k, e := range d.enrol {
		count++
		digest.ToggleEnrolment(k, e.Version, e.Periods)
	}
	return count, digest
}

// adoptBucket (under d.mu, the bucket read whole) makes the copy what the
// session read from the bucket when that, and not the copy, is what the
// head says (its count and digest; the head is signed and not older than
// the copy's), and returns how many entries changed; 0: the bucket's
// entries do not make the head either (a value on its way, one replaced),
// and the copy stays. Only an entry clearing signed is ever taken, and
// only into a list the head vouches for whole: a replayed old value would
// not make the head's digest.
func (f *gateFollower) adoptBucket(s *listSession) int {
	var count uint64
	var digest fare.DenyDigest
	for k, be := range s.bucket {
		switch {
		case s.list == fare.EnrolGateList:
			count++
			digest.ToggleEnrolment(k, be.e.Version, be.e.Periods)
		case be.e.Listed:
			count++
			digest.Toggle(k)
		}
	}
	if count != s.head.Count || digest != s.head.Digest {
		return 0
	}
	d := &f.t.deny
	n := 0
	for k, be := range s.bucket {
		if s.list == fare.DenyGateList {
			held, it := d.deny[k], denyItem{version: be.e.Version, listed: be.e.Listed}
			if held == it {
				continue
			}
			f.setDeny(k, held, it)
		} else {
			if held := d.enrol[k]; held != nil && reflect.DeepEqual(held, be.e) {
				continue
			}
			d.enrol[k] = be.e
			f.stage(enrolKey(k), be.raw)
		}
		n++
	}
	return n
}

// setDeny (under d.mu) makes it the copy's entry of key in place of held,
// keeping the listed count, and stages its write.
func (f *gateFollower) setDeny(key fare.DenyHash, held, it denyItem) {
	d := &f.t.deny
	if it.listed && !held.listed {
		d.listed++
	} else if !it.listed && held.listed {
		d.listed--
	}
	d.deny[key] = it
	f.stage(denyKey(key), denyValue(it))
}

// stage queues a write (nil: a deletion) of the copy for the next flush.
func (f *gateFollower) stage(key, value []byte) {
	if f.pending == nil {
		f.pending = make(map[string][]byte)
	}
	f.pending[string(key)] = value
}

// flush commits the staged writes in transactions of gateChunk. The
// in-memory copy is already ahead: a crash before the commit loses nothing
// the next watch does not read again.
func (f *gateFollower) flush() error {
	if len(f.pending) == 0 {
		return nil
	}
	// On a (nearly) full disk the writes wait (writing into the store's
	// mapped files there kills the process): the in-memory copy, which
	// decides, is current, and the staged writes stay staged.
	if err := f.t.room.checkAbove(time.Now(), openFloor); err != nil {
		f.t.diskLog.Add("gate-list copy not stored", err.Error())
		return nil
	}
	// Entries first, the heads (meta keys) last: a crash in between leaves
	// the copy at its older head, and the next watch reads the rest again.
	var heads, entries []string
	for k := range f.pending {
		if k[0] == 'm' {
			heads = append(heads, k)
		} else {
			entries = append(entries, k)
		}
	}
	slices.Sort(entries)
	for _, group := range [][]string{entries, heads} {
		for len(group) > 0 {
			chunk := group[:min(len(group), gateChunk)]
			group = group[len(chunk):]
			err := f.t.db.Update(func(txn *badger.Txn) error {
				for _, k := range chunk {
					var err error
					if v := f.pending[k]; v == nil {
						err = txn.Delete([]byte(k))
					} else {
						err = txn.Set([]byte(k), v)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("store gate-list copy: %w", err)
			}
			for _, k := range chunk {
				delete(f.pending, k)
			}
		}
	}
	return nil
}
