package galleryfeed

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/fare/gatefeed"
)

const (
	// retryMax bounds the wait before watching again after a failure.
	retryMax = 5 * time.Second
	// reconnectPoll is how often a session looks for a reconnect of the
	// connection, after which it reads the keys whole again.
	reconnectPoll = 250 * time.Millisecond
)

// headAheadTolerance is how far ahead of the gate's clock a head may be
// dated before a head of its version issued earlier replaces it (the
// clocks of a gate and of clearing differ by seconds when both keep NTP).
const headAheadTolerance = 5 * time.Minute

// errWatchEnded: the watch's subscription went away.
var errWatchEnded = errors.New("face gallery watch ended")

// update is one message of a watch (nil: the keys have been read whole).
type update struct {
	key  string
	seq  uint64
	op   string // "" put, else the KV operation (DEL, PURGE)
	data []byte
}

// session is what one watch has seen.
type session struct {
	seen     map[fare.FaceKeyToken]bool
	initDone bool
	staged   *fare.FaceHead // a head read before the whole: taken at the end
	stagedB  []byte
	// resumed: only what changed after the copy's position is sent
	// (nothing is dropped as unseen); grantHead is the terminal's head as
	// the bucket held it at the grant, checked at the end of the catch-up
	// when no newer one came; stream and last say where the copy stands;
	// mismatch: the resumed copy does not make the head, read whole.
	resumed   bool
	grantHead []byte
	stream    string
	last      uint64
	mismatch  bool
	// refusedOlder: a head older than the copy's was refused while
	// following (a clearing restored from an older backup): the next head
	// taken is checked against the copy, which may hold subjects the
	// restored store lost.
	refusedOlder bool
	// passed are the values a whole read found not newer than the copy's
	// and holding another record (finishInit may take them).
	passed map[fare.FaceKeyToken]*passedValue
}

// clearPassed overwrites the templates set aside and not taken.
func (s *session) clearPassed() {
	for _, p := range s.passed {
		clear(p.rec.Templates)
	}
	s.passed = nil
}

// passedValue is a value a whole read set aside (session.passed).
type passedValue struct {
	version uint64
	older   bool // than the copy's: stale unless taken
	sum     [32]byte
	rec     *fare.FaceRecord
	signed  []byte
}

// errResumedMismatch: a resumed copy does not make the terminal's head.
var errResumedMismatch = errors.New("face gallery copy resumed from its position does not make clearing's signed head; reading the keys whole")

// errRestoredMismatch: after heads refused as older, the copy does not make
// the newer head clearing issued.
var errRestoredMismatch = errors.New("face gallery copy does not make the head a restored clearing issued past it; reading the keys whole")

// Run follows the terminal's keys in the bucket over nc (a connection as
// the terminal's NATS user, which the caller owns) until ctx ends: a watch
// that reads the keys whole, then follows them; again after every
// reconnect and after a failure (with backoff). It writes the copy as it
// changes and returns nil when ctx ends.
func (f *Feed) Run(ctx context.Context, nc *nats.Conn) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.tally.Run(ctx, 10*time.Second)
	}()
	defer wg.Wait()
	if err := f.flush(); err != nil { // a copy read from entries.new: settle it
		f.log.Error("face gallery copy not written", "err", err)
	}
	// Retries from 250 ms, doubling with ±20% jitter, up to retryMax.
	retry := &backoff.ExponentialBackOff{InitialInterval: 250 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: retryMax}
	retry.Reset()
	var movedSaid time.Time // when a feed moved by another's request was last said
	for {
		err := f.session(ctx, nc)
		if ferr := f.flush(); ferr != nil {
			f.log.Error("face gallery copy not written", "err", ferr)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			retry.Reset()
			continue
		}
		wait := retry.NextBackOff()
		if errors.Is(err, gatefeed.ErrMoved) {
			// Asked back past clearing's half second between grants of
			// one feed (sooner is refused as too soon: an outside review).
			wait = max(wait, gatefeed.RetakeAfter)
		}
		if errors.Is(err, gatefeed.ErrMoved) && time.Since(movedSaid) >= time.Minute {
			movedSaid = time.Now() // said once a minute at most
			f.log.Warn("clearing moved this gate's face gallery feed to another inbox at a request the gate did not make: another holder of this gate's key is reading its feed; the gate asks for it back (revoke the key if this gate's is the one: faregate ledger revoke-terminal)", "err", err)
		}
		f.log.Debug("face gallery watch failed; retrying", "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// session reads the keys whole and follows them until ctx ends or the
// connection reconnects (nil), or the watch fails.
func (f *Feed) session(ctx context.Context, nc *nats.Conn) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reconnects := nc.Stats().Reconnects
	// The feed clearing makes for the terminal (its own keys, delivering
	// into its inbox): the terminal has no JetStream API of its own.
	w, err := gatefeed.Resume(sctx, nc, f.cfg.Terminal, fare.FeedFace, f.position)
	if err != nil {
		return fmt.Errorf("watch %s: %w", fare.FaceBucket, err)
	}
	defer w.Stop()
	f.sessions.Add(1)
	s := &session{seen: map[fare.FaceKeyToken]bool{}, resumed: w.Resumed(), grantHead: w.Head(), stream: w.Stream()}
	defer s.clearPassed() // a session ended before its whole read did
	if s.resumed {
		f.resumed.Add(1)
	}
	poll := time.NewTicker(reconnectPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			if nc.Stats().Reconnects != reconnects {
				return nil // reconnected: read the keys whole again
			}
		case e, ok := <-w.Updates():
			if !ok {
				if err := w.Err(); err != nil {
					return fmt.Errorf("%w: %w", errWatchEnded, err)
				}
				return errWatchEnded
			}
			var u *update
			if e != nil {
				u = &update{key: e.Key, seq: e.Revision, op: e.Op, data: e.Value}
				s.last = max(s.last, e.Revision)
			}
			f.apply(s, u)
			if s.mismatch {
				f.position, f.dirtyPosition = fare.GateFeedPosition{}, true
				if s.resumed {
					return errResumedMismatch
				}
				return errRestoredMismatch
			}
			switch {
			case u == nil && !s.resumed && s.stream != "":
				// Read whole: the copy stands where the stream ends now,
				// even below a position held before (a restored stream
				// numbers its values again from there).
				f.position, f.dirtyPosition = fare.GateFeedPosition{Stream: s.stream, Revision: s.last}, true
			case (s.resumed || s.initDone) && s.stream != "" && s.last > 0 && (f.position.Stream != s.stream || f.position.Revision < s.last):
				// Everything up to s.last taken: where the next session
				// resumes.
				f.position, f.dirtyPosition = fare.GateFeedPosition{Stream: s.stream, Revision: s.last}, true
			}
			if len(w.Updates()) == 0 {
				if err := f.flush(); err != nil {
					f.log.Error("face gallery copy not written", "err", err)
				}
			}
		}
	}
}

// trustedFor are the keys a value with rotations is checked against: the
// copy's trusted keys moved along the chain; a rotation learnt retires the
// old key for good (remembered in the copy).
func (f *Feed) trustedFor(rotations [][]byte) []ed25519.PublicKey {
	f.mu.RLock()
	keys, retired := slices.Clone(f.trusted), slices.Clone(f.retired)
	f.mu.RUnlock()
	if len(rotations) == 0 {
		return keys
	}
	return fare.FollowRotations(keys, retired, rotations)
}

// learn remembers the keys a verified value's chain led to (f.mu held).
func (f *Feed) learn(keys []ed25519.PublicKey) {
	for _, k := range f.trusted {
		if !slices.ContainsFunc(keys, isKey(k)) && !slices.ContainsFunc(f.retired, isKey(k)) {
			f.retired = append(f.retired, k)
			f.dirtyHead = true
		}
	}
	if !slices.EqualFunc(keys, f.trusted, func(a, b ed25519.PublicKey) bool { return a.Equal(b) }) {
		f.trusted = slices.Clone(keys)
		f.dirtyHead = true
	}
}

// apply acts on one message of s's watch (nil: the keys have been read
// whole).
func (f *Feed) apply(s *session, u *update) {
	if u == nil {
		if s.resumed && s.staged == nil && s.grantHead != nil {
			// No head after the position: the one the bucket held at the
			// grant is what the copy must make.
			f.apply(s, &update{key: fare.FaceHeadBucketKey(f.cfg.Terminal), data: s.grantHead})
		}
		f.finishInit(s)
		return
	}
	term, key, head, err := fare.ParseFaceKey(u.key)
	switch {
	case err != nil:
		f.refuse(RefusedMalformed, err.Error())
		return
	case term != f.cfg.Terminal:
		f.refuse(RefusedForeign, fmt.Sprintf("key %q is not this terminal's", u.key))
		return
	}
	if u.op != "" {
		// Only clearing can write the bucket: a delete or purge marker is
		// its erasure (a message the server writes for a reply carries no
		// KV operation).
		if !head {
			f.erase(s, key)
		}
		return
	}
	if !head {
		s.seen[key] = true // a key the bucket holds: never dropped for a refused value
	}
	rotations, b, err := fare.Unbundle(u.data)
	if err != nil {
		f.refuse(RefusedMalformed, fmt.Sprintf("%q: %v", u.key, err))
		return
	}
	trusted := f.trustedFor(rotations)
	if head {
		f.applyHead(s, b, trusted, len(rotations) > 0)
		return
	}
	e, err := fare.VerifyFaceEntry(b, trusted)
	switch {
	case errors.Is(err, fare.ErrUntrustedFace):
		f.refuse(RefusedUntrusted, fmt.Sprintf("%q: %v", u.key, err))
		return
	case err != nil:
		f.refuse(RefusedMalformed, fmt.Sprintf("%q: %v", u.key, err))
		return
	case e.Terminal != f.cfg.Terminal || e.Key != key:
		f.refuse(RefusedForeign, fmt.Sprintf("%q holds the entry of %s", u.key, fare.FaceEntryKey(e.Terminal, e.Key)))
		return
	}
	f.mu.RLock()
	cur, tomb := f.keys[key], f.tombs[key]
	var curSigned []byte
	if cur != nil {
		curSigned = cur.signed
	}
	f.mu.RUnlock()
	notNewer := cur != nil && e.Version <= cur.version
	stale := func() {
		f.refuse(RefusedStale, fmt.Sprintf("%q at version %d: the copy has a newer version (%d held, erased at %d)", u.key, e.Version, max(tomb, versionOf(cur)), tomb))
	}
	switch {
	case notNewer && bytes.Equal(b, curSigned):
		return // a repeat (clearing put its value back)
	case e.Version <= tomb:
		stale()
		return
	case notNewer && (s.resumed || s.initDone):
		if e.Version < cur.version {
			stale()
		}
		return // an equal version: a repeat signed again (a key rotation)
	}
	rec, err := e.Open(f.decrypt)
	if err != nil {
		if errors.Is(err, fare.ErrFaceSeal) {
			f.refuse(RefusedSeal, err.Error())
		} else {
			f.refuse(RefusedMalformed, err.Error())
		}
		return
	}
	if rec.ModelID != f.cfg.ModelID {
		f.refuse(RefusedModel, fmt.Sprintf("%q: templates of %q, the gate runs %q", u.key, rec.ModelID, f.cfg.ModelID))
		clear(rec.Templates)
		return
	}
	if notNewer {
		// Read whole, a value not newer than the copy's: set aside, and
		// taken at the end only if the copy does not make the head and the
		// bucket's values do (a clearing restored from a backup numbers
		// changes again with versions the gate has seen: finishInit);
		// counted stale there if it is older and not taken.
		sum := rec.Sum()
		if sum == cur.sum {
			clear(rec.Templates)
			if e.Version == cur.version {
				// The same record signed again (a key rotation): kept as
				// signed now, so the next whole read skips it unopened
				// (an outside review: every whole read after a rotation
				// opened every value).
				f.mu.Lock()
				if h := f.keys[key]; h == cur {
					h.signed = bytes.Clone(b)
					f.dirtyEntries = true
				}
				f.mu.Unlock()
			} else {
				stale()
			}
			return
		}
		if s.passed == nil {
			s.passed = map[fare.FaceKeyToken]*passedValue{}
		}
		if old := s.passed[key]; old != nil {
			clear(old.rec.Templates)
		}
		s.passed[key] = &passedValue{version: e.Version, older: e.Version < cur.version, sum: sum, rec: rec, signed: bytes.Clone(b)}
		return
	}
	f.mu.Lock()
	f.learn(trusted)
	f.add(key, e.Version, rec, bytes.Clone(b)) // its own copy: remove overwrites it
	f.dirtyEntries = true
	f.mu.Unlock()
}

func versionOf(h *held) uint64 {
	if h == nil {
		return 0
	}
	return h.version
}

// erase removes key's subject: clearing purged the key.
func (f *Feed) erase(s *session, key fare.FaceKeyToken) {
	delete(s.seen, key)
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.keys[key]
	if h == nil {
		return
	}
	f.tombs[key] = max(f.tombs[key], h.version)
	f.remove(key)
	f.dirtyEntries = true
	f.log.Info("face subject erased from the gallery", "key", key.String())
}

// applyHead takes a verified head newer than the copy's: at once in a
// session that has read the keys whole, at the end of the whole read
// otherwise.
func (f *Feed) applyHead(s *session, b []byte, trusted []ed25519.PublicKey, rotated bool) {
	// A resumed copy is trusted only once it makes a head: one refused
	// (not clearing's, or older than the copy's: a restored clearing whose
	// values the position may have skipped) leaves nothing to check it
	// against, so it is read whole.
	refused := func(reason, detail string) {
		f.refuse(reason, detail)
		if s.resumed {
			s.mismatch = true
		}
	}
	h, err := fare.VerifyFaceHead(b, trusted)
	switch {
	case errors.Is(err, fare.ErrUntrustedFace):
		refused(RefusedUntrusted, "head: "+err.Error())
		return
	case err != nil:
		refused(RefusedMalformed, "head: "+err.Error())
		return
	case h.Terminal != f.cfg.Terminal:
		refused(RefusedForeign, fmt.Sprintf("the head of %s", h.Terminal))
		return
	}
	f.mu.RLock()
	cur := f.head
	f.mu.RUnlock()
	// Heads are ordered by version; the time of issue orders heads of one
	// version only (clearing issues one again every few seconds). A newer
	// version is taken whenever it was issued: a clearing whose clock was
	// ahead and was set back issued it earlier than the copy's head, and
	// gates refused every head as stale until its clock caught up (an
	// outside review). A head of the copy's version issued earlier is
	// taken too while the copy's is dated ahead of this gate's clock.
	switch {
	case cur != nil && h.Version < cur.Version:
		s.refusedOlder = true
		refused(RefusedOlder, fmt.Sprintf("head at version %d, the copy is at %d (a clearing restored from an old backup?)", h.Version, cur.Version))
		return
	case cur != nil && h.Version == cur.Version && !h.IssuedAt.After(cur.IssuedAt) && !cur.IssuedAt.After(f.cfg.Now().Add(headAheadTolerance)):
		if !h.IssuedAt.Equal(cur.IssuedAt) {
			f.refuse(RefusedStale, fmt.Sprintf("head issued %s, the copy's %s", h.IssuedAt.Format(time.RFC3339Nano), cur.IssuedAt.Format(time.RFC3339Nano)))
		}
		return
	}
	if rotated {
		f.mu.Lock()
		f.learn(trusted)
		f.mu.Unlock()
	}
	if !s.initDone {
		s.staged, s.stagedB = h, b
		return
	}
	if s.refusedOlder {
		// The first head past the ones refused as older: a restored
		// clearing numbered its galleries past this copy (clearing does
		// when a gate shows it its head, fare.FaceHeadHeader), or its
		// changes caught up. Its store may lack subjects this copy took
		// from what the restore lost: checked, and read whole (dropping
		// them) if the copy does not make the head.
		s.refusedOlder = false
		if n, d := f.countDigest(); uint32(n) != h.Count || d != h.Digest {
			f.refuse(RefusedMismatch, fmt.Sprintf("after older heads: the copy holds %d subjects (digest %s), the head at version %d says %d (%s)", n, d, h.Version, h.Count, h.Digest))
			s.mismatch = true
			return
		}
	}
	f.takeHead(h, b)
}

// adoptPassed takes the values a whole read set aside (session.passed) in
// place of the copy's when, so taken, the copy makes h (whose digest d the
// copy's is now), and returns how many it took: none when they do not.
// Only values clearing signed are set aside, and only into a gallery the
// head vouches for whole; a key the copy saw erased is never among them.
func (f *Feed) adoptPassed(s *session, h *fare.FaceHead, d fare.FaceDigest) int {
	if len(s.passed) == 0 {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, p := range s.passed {
		cur := f.keys[k]
		if cur == nil {
			return 0 // dropped meanwhile: the sums below would not hold
		}
		d.ToggleEntry(k, cur.version, cur.sum)
		d.ToggleEntry(k, p.version, p.sum)
	}
	if uint32(len(f.keys)) != h.Count || d != h.Digest {
		return 0
	}
	for k, p := range s.passed {
		f.add(k, p.version, p.rec, p.signed) // clears p.rec's templates
	}
	f.dirtyEntries = true
	return len(s.passed)
}

// countDigest is what the copy holds: the head's count and digest.
func (f *Feed) countDigest() (int, fare.FaceDigest) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var d fare.FaceDigest
	for k, h := range f.keys {
		d.ToggleEntry(k, h.version, h.sum)
	}
	return len(f.keys), d
}

func (f *Feed) takeHead(h *fare.FaceHead, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.head, f.headSigned, f.receivedAt = h, b, time.Now()
	f.dirtyHead = true
}

// finishInit ends a session's whole read: under a head at least as new as
// the copy's, keys the bucket no longer holds are dropped (a tombstone at
// the head's version refuses their replay); then the head is taken and
// the copy checked against it.
func (f *Feed) finishInit(s *session) {
	s.initDone = true
	defer s.clearPassed()
	h := s.staged
	if h == nil {
		return // no head: nothing says what the keys should be
	}
	f.mu.Lock()
	dropped := 0
	// Read whole under a head at least as new as the copy's: it vouches
	// for the bucket's keys and values.
	vouched := !s.resumed && (f.head == nil || h.Version >= f.head.Version)
	if vouched {
		for k, held := range f.keys {
			if !s.seen[k] {
				f.tombs[k] = max(f.tombs[k], h.Version, held.version)
				f.remove(k)
				dropped++
			}
		}
	}
	if dropped > 0 {
		f.dirtyEntries = true
	}
	f.mu.Unlock()
	n, d := f.countDigest()
	taken := 0
	if (uint32(n) != h.Count || d != h.Digest) && vouched {
		if taken = f.adoptPassed(s, h, d); taken > 0 {
			n, d = f.countDigest()
			f.log.Warn("face gallery: the copy takes the bucket's values, which make clearing's signed head where the copy did not (their versions repeat or go back on numbers the copy had seen: clearing restored from an older backup?)",
				"head_version", h.Version, "values_taken", taken)
		}
	}
	if taken == 0 {
		for k, p := range s.passed {
			if p.older {
				f.refuse(RefusedStale, fmt.Sprintf("%q at version %d: the copy has a newer version (not taken: the bucket's values do not make the head)", fare.FaceEntryKey(f.cfg.Terminal, k), p.version))
			}
		}
	}
	if dropped > 0 {
		f.log.Info("face subjects the bucket no longer holds dropped from the gallery", "dropped", dropped, "head_version", h.Version)
	}
	if uint32(n) != h.Count || d != h.Digest {
		f.refuse(RefusedMismatch, fmt.Sprintf("the copy holds %d subjects (digest %s), the head at version %d says %d (%s)", n, d, h.Version, h.Count, h.Digest))
		if s.resumed {
			// Not taken: the gallery stays as fresh as it was while the
			// keys are read whole (a purge marker gone with its hour, a
			// restored clearing), which drops what the bucket lacks.
			s.mismatch = true
			return
		}
	}
	f.takeHead(h, s.stagedB)
}
