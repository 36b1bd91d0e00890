// Package galleryfeed keeps a terminal's face gallery: its share of
// clearing's face templates, read from the FAREGATE_FACES bucket (see
// fare/facegallery.go), kept encrypted at rest in the terminal's data dir,
// and matched against only while it is fresh.
//
// A Feed watches the terminal's own keys in the bucket (the only ones its
// NATS permissions let it read), verifies every value against clearing's
// keys, opens each subject's templates with the terminal's key and keeps
// two galleries: the subjects enrolled for face-only travel (1:N, bounded
// by the matching policy) and the card holders (1:1: a presented card's
// holder, looked up by the card's fare.DenyKey hash). A value is taken
// only if it is signed by clearing, names this terminal and the key it is
// stored under, opens with this terminal's key, comes from the expected
// descriptor pipeline and is newer than what the copy holds for that key
// (a replayed older value, even of an erased subject, is refused). A purge
// of a key erases its subject at once. Each session (on start and every
// reconnect) catches up, so a terminal that was offline does: a copy that
// knows where it stands in the bucket's stream resumes from there (only
// what changed since is sent, purges included), and must then make the
// terminal's signed head (count and digest) or is read whole; a session
// reading the keys whole drops what the bucket no longer holds.
//
// Freshness: clearing issues every terminal's signed head (version, what it
// holds, issue time) every few seconds. The Feed matches only while its
// last head was issued within MaxAge (by the terminal's clock) and received
// within MaxAge (by its monotonic clock); past it, Identify and VerifyCard
// return ErrStale and the gate falls back to cards. MaxAge is the erasure
// bound for a gate that cannot hear from clearing; a watching gate has an
// erasure within the watch's latency. A head received while a session
// reads the keys whole takes effect only when the whole has been read, so
// a reconnecting gate never matches against a subject erased meanwhile.
package galleryfeed

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/fare"
)

// DefaultMaxAge is how old the last head may be before the gallery is not
// used: several of clearing's head intervals (clearing.DefaultFaceHeadEvery).
const DefaultMaxAge = 3 * time.Minute

// MaxMaxAge is the longest MaxAge a gate may set: clearing refuses a face
// tap of an erased subject taken later than this (and a clock allowance)
// after the erasure, so a gate matching longer would only take taps that
// are then refused.
const MaxMaxAge = 15 * time.Minute

// Errors of matching.
var (
	// ErrStale: the gallery's last head is older than MaxAge (or there is
	// none): no face may be matched; the gate decides by card.
	ErrStale = errors.New("face gallery stale: no face matching until clearing is heard from")
	// ErrNoHolder: no subject enrolled at this terminal holds the card.
	ErrNoHolder = errors.New("face gallery: no enrolled holder of this card here")
)

// Reasons a bucket value is refused (Refusals' keys).
const (
	RefusedUntrusted = "untrusted"    // no trusted clearing key signed it
	RefusedMalformed = "malformed"    // not a face gallery value of this key
	RefusedForeign   = "foreign"      // another terminal's key or value
	RefusedSeal      = "seal"         // does not open with this terminal's key
	RefusedModel     = "model"        // templates of another descriptor pipeline
	RefusedStale     = "stale"        // not newer than the copy's (a replay)
	RefusedOlder     = "older-head"   // a head older than the copy's
	RefusedMismatch  = "head-differs" // the keys read whole differ from the head's count or digest
)

var refusalReasons = []string{RefusedUntrusted, RefusedMalformed, RefusedForeign, RefusedSeal, RefusedModel, RefusedStale, RefusedOlder, RefusedMismatch}

// Config configures a Feed.
type Config struct {
	// Terminal is the terminal's id; Key its event key, whose X25519 form
	// opens the templates sealed for it.
	Terminal string
	Key      ed25519.PrivateKey
	// ClearingKeys are the confirmation keys the terminal was provisioned
	// with (faregate clearing key); rotations bundled with values are
	// followed and remembered.
	ClearingKeys []ed25519.PublicKey
	// DataDir is the terminal's data dir; the copy is kept in
	// DataDir/face-gallery.
	DataDir string
	// ModelID is the descriptor pipeline the gate's recognizer runs:
	// templates of another are refused.
	ModelID string
	// MaxAge bounds the age of the last head for matching (default
	// DefaultMaxAge).
	MaxAge time.Duration
	// Logger (default slog.Default()); Now is the clock (default time.Now).
	Logger *slog.Logger
	Now    func() time.Time
}

// held is what the copy holds under one key.
type held struct {
	version  uint64
	sum      [32]byte // the record's (fare.FaceRecord.Sum): its share of the head's digest
	subject  string
	faceOnly bool
	hasCard  bool
	card     fare.DenyHash
	signed   []byte
}

// Feed is a terminal's face gallery. Matching methods are safe for
// concurrent use with Run.
type Feed struct {
	cfg     Config
	log     *slog.Logger
	decrypt hpke.PrivateKey
	dir     string
	// macKey authenticates the copy's head file (copy.go): derived from
	// the terminal's own key.
	macKey []byte

	mu         sync.RWMutex
	keys       map[fare.FaceKeyToken]*held
	bySubject  map[string]fare.FaceKeyToken // the key holding each subject
	tombs      map[fare.FaceKeyToken]uint64
	cards      map[fare.DenyHash]string
	identify   *gallery.Gallery // face-only subjects (1:N)
	holders    *gallery.Gallery // card holders (1:1)
	head       *fare.FaceHead
	headSigned []byte
	receivedAt time.Time // monotonic: when the head was taken
	trusted    []ed25519.PublicKey
	retired    []ed25519.PublicKey

	dirtyEntries, dirtyHead bool // owned by the follower (and Open)
	// position is where the copy stands in the bucket's stream (the
	// follower's and Open's): what the next session resumes from.
	position      fare.GateFeedPosition
	dirtyPosition bool
	refused       map[string]*atomic.Uint64
	tally         *fare.Tally
	sessions      atomic.Uint64
	resumed       atomic.Uint64 // sessions that resumed the copy
}

// Open loads the stored copy (a gate restarted without the network has its
// gallery, usable while its head is within MaxAge) and returns the Feed;
// Run follows the bucket.
func Open(cfg Config) (*Feed, error) {
	if err := fare.ValidateID(cfg.Terminal); err != nil {
		return nil, fmt.Errorf("face gallery: terminal id %q: %w", cfg.Terminal, err)
	}
	if len(cfg.ClearingKeys) == 0 {
		return nil, errors.New("face gallery: no clearing key: the gallery trusts only what clearing signed")
	}
	if cfg.ModelID == "" {
		return nil, errors.New("face gallery: no model id: say which descriptor pipeline the gate runs")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("face gallery: no data dir")
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.MaxAge > MaxMaxAge {
		return nil, fmt.Errorf("face gallery: max age %s is over %s: an erased subject must stop matching within it (clearing refuses later taps of an erased subject)", cfg.MaxAge, MaxMaxAge)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	dk, err := fare.FaceDecryptionKey(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("face gallery: %w", err)
	}
	f := &Feed{
		cfg: cfg, log: cfg.Logger.With("component", "face-gallery", "terminal", cfg.Terminal), decrypt: dk,
		dir:  filepath.Join(cfg.DataDir, copyDir),
		keys: map[fare.FaceKeyToken]*held{}, bySubject: map[string]fare.FaceKeyToken{}, tombs: map[fare.FaceKeyToken]uint64{}, cards: map[fare.DenyHash]string{},
		identify: gallery.New(), holders: gallery.New(), trusted: slices.Clone(cfg.ClearingKeys), refused: map[string]*atomic.Uint64{},
	}
	mac := hmac.New(sha256.New, cfg.Key.Seed())
	mac.Write([]byte("faregate/face-gallery-copy-mac/v1"))
	f.macKey = mac.Sum(nil)
	f.tally = fare.NewTally(f.log, "face gallery values refused")
	for _, r := range refusalReasons {
		f.refused[r] = new(atomic.Uint64)
	}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return nil, fmt.Errorf("face gallery: %w", err)
	}
	st, err := loadCopy(f.dir, f.macKey)
	if err != nil {
		// Face matching is a convenience beside cards: a gate whose copy
		// is unreadable starts empty (and stale) and catches up online.
		f.log.Error("face gallery copy unreadable: overwritten, starting empty", "dir", f.dir, "err", err)
		for _, name := range []string{entriesFile, headFile} {
			for _, p := range []string{filepath.Join(f.dir, name), filepath.Join(f.dir, name+newSuffix)} {
				if zerr := zeroFile(p); zerr != nil {
					return nil, fmt.Errorf("face gallery: overwrite unreadable copy: %w", zerr)
				}
				if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
					return nil, fmt.Errorf("face gallery: remove unreadable copy: %w", rerr)
				}
			}
		}
		st = &storedCopy{tombs: map[fare.FaceKeyToken]uint64{}}
		f.dirtyPosition = true // none: the empty copy is read whole
	} else {
		f.position = loadPosition(f.dir)
	}
	for _, name := range []string{entriesFile, headFile} {
		if _, err := os.Stat(filepath.Join(f.dir, name+newSuffix)); err == nil {
			f.dirtyEntries, f.dirtyHead = true, true // a write cut short: Run settles it
		}
	}
	f.tombs = st.tombs
	for _, k := range st.retired {
		f.retired = append(f.retired, k)
		f.trusted = slices.DeleteFunc(f.trusted, isKey(k))
	}
	untaken := 0
	for _, k := range st.trusted {
		if !slices.ContainsFunc(f.trusted, isKey(k)) && !slices.ContainsFunc(f.retired, isKey(k)) {
			if !st.macOK {
				untaken++ // a key listed by a file this gate's key did not vouch for
				continue
			}
			f.trusted = append(f.trusted, k)
		}
	}
	if untaken > 0 {
		f.log.Warn("face gallery copy: clearing keys its head file lists not taken (the file's mac does not verify under this terminal's key: written by an earlier build, or not by this gate); what they signed is dropped and read again from clearing",
			"keys", untaken)
		f.dirtyHead = true
	}
	for _, e := range st.entries {
		// Checked against clearing's keys again: the disk's word is not
		// clearing's.
		fe, err := fare.VerifyFaceEntry(e.signed, f.trusted)
		var rec *fare.FaceRecord
		if err == nil {
			rec, err = fe.Open(f.decrypt)
		}
		if err == nil && (fe.Terminal != cfg.Terminal || fe.Key != e.key) {
			err = fmt.Errorf("the entry of %s", fare.FaceEntryKey(fe.Terminal, fe.Key))
		}
		if err != nil {
			f.log.Error("stored face entry dropped (not clearing's signature, or a copy of another terminal?)", "key", e.key.String(), "err", err)
			// The copy lacks what its position says it took: read whole.
			f.dirtyEntries = true
			f.position, f.dirtyPosition = fare.GateFeedPosition{}, true
			continue
		}
		f.add(e.key, fe.Version, rec, e.signed)
	}
	if st.headSigned != nil {
		h, err := fare.VerifyFaceHead(st.headSigned, f.trusted)
		if err == nil && h.Terminal != cfg.Terminal {
			err = fmt.Errorf("the head of %s", h.Terminal)
		}
		if err != nil {
			f.log.Error("stored face head dropped", "err", err)
			f.dirtyHead = true
			f.position, f.dirtyPosition = fare.GateFeedPosition{}, true
		} else {
			f.head, f.headSigned, f.receivedAt = h, st.headSigned, time.Now()
		}
	}
	f.log.Info("face gallery copy loaded", "subjects", len(f.keys), "face_only", f.identify.Subjects(), "card_holders", len(f.cards), "head_version", f.headVersion())
	return f, nil
}

// add puts rec under key (f.mu held, or during Open), replacing what the
// key held and any other key's copy of the same subject.
func (f *Feed) add(key fare.FaceKeyToken, version uint64, rec *fare.FaceRecord, signed []byte) {
	f.remove(key)
	if k, ok := f.bySubject[rec.Subject]; ok {
		// An index, not a scan of every key: a start added each of N
		// subjects in O(N) (an outside review: 3.6 s of a 6 s start at
		// 20,000 subjects).
		f.log.Warn("face subject held under two keys; the newer wins", "subject", rec.Subject)
		f.remove(k)
	}
	h := &held{version: version, sum: rec.Sum(), subject: rec.Subject, faceOnly: rec.FaceOnly, hasCard: rec.HasCard, card: rec.Card, signed: signed}
	f.keys[key] = h
	f.bySubject[rec.Subject] = key
	// A tombstone stays under a subject enrolled again: no value at or
	// below the version the copy saw erased is ever taken again, also by
	// a whole read after a restore (an outside review: one brought a
	// re-enrolled subject's erased templates back).
	for _, t := range rec.Templates {
		if rec.FaceOnly {
			_ = f.identify.Add(rec.Subject, t) // validated when decoded
		}
		if rec.HasCard {
			_ = f.holders.Add(rec.Subject, t)
		}
	}
	if rec.HasCard {
		if old, ok := f.cards[rec.Card]; ok && old != rec.Subject {
			f.log.Warn("a card's holder changed", "card", rec.Card.Hex(), "was", old, "now", rec.Subject)
		}
		f.cards[rec.Card] = rec.Subject
	}
	clear(rec.Templates)
}

// remove erases what key holds from both galleries (their memory is
// overwritten); f.mu held.
func (f *Feed) remove(key fare.FaceKeyToken) {
	h := f.keys[key]
	if h == nil {
		return
	}
	f.identify.Remove(h.subject)
	f.holders.Remove(h.subject)
	delete(f.keys, key)
	if f.bySubject[h.subject] == key {
		delete(f.bySubject, h.subject)
	}
	if h.hasCard && f.cards[h.card] == h.subject {
		delete(f.cards, h.card)
		// Another subject still held for this card (clearing refuses a
		// second holder, but a copy may hold records from before) keeps
		// the card's face check: erasing one must not open the gate to
		// the card alone.
		// The newest of them, as when they arrived.
		var newest *held
		for _, o := range f.keys {
			if o.hasCard && o.card == h.card && o.subject != h.subject && (newest == nil || o.version > newest.version) {
				newest = o
			}
		}
		if newest != nil {
			f.cards[h.card] = newest.subject
		}
	}
	clear(h.signed)
}

func (f *Feed) headVersion() uint64 {
	if f.head == nil {
		return 0
	}
	return f.head.Version
}

// freshLocked is the age of the last head and whether it is within MaxAge.
func (f *Feed) freshLocked() (time.Duration, bool) {
	if f.head == nil {
		return 0, false
	}
	age := max(f.cfg.Now().Sub(f.head.IssuedAt), time.Since(f.receivedAt))
	return age, age <= f.cfg.MaxAge
}

func (f *Feed) staleErr(age time.Duration) error {
	if f.head == nil {
		return fmt.Errorf("%w: no head from clearing yet", ErrStale)
	}
	return fmt.Errorf("%w: last head is %s old, the bound is %s", ErrStale, age.Round(time.Second), f.cfg.MaxAge)
}

// Fresh reports the age of the last head and whether the gallery may be
// matched against.
func (f *Feed) Fresh() (age time.Duration, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.freshLocked()
}

// Identify is 1:N within the face-only subjects of this terminal's
// gallery (the policy bounds its size); ErrStale when the gallery is not
// fresh.
func (f *Feed) Identify(probe gallery.Vector, p gallery.Policy) (gallery.Decision, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if age, ok := f.freshLocked(); !ok {
		return gallery.Decision{}, f.staleErr(age)
	}
	return f.identify.Identify(probe, p)
}

// VerifyCard is 1:1: does probe belong to the enrolled holder of the card
// (its fare.DenyKey hash)? ErrNoHolder when the card has none here,
// ErrStale when the gallery is not fresh.
func (f *Feed) VerifyCard(card fare.DenyHash, probe gallery.Vector, p gallery.Policy) (gallery.Decision, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if age, ok := f.freshLocked(); !ok {
		return gallery.Decision{}, f.staleErr(age)
	}
	subject, ok := f.cards[card]
	if !ok {
		return gallery.Decision{}, fmt.Errorf("%w: card %s", ErrNoHolder, card)
	}
	return f.holders.Verify(subject, probe, p)
}

// Galleries returns the 1:N gallery (face-only subjects) and the card
// holders' gallery, or ErrStale. They change in place as the bucket does;
// a caller that keeps them must call Fresh before each match.
func (f *Feed) Galleries() (identify, holders *gallery.Gallery, err error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if age, ok := f.freshLocked(); !ok {
		return nil, nil, f.staleErr(age)
	}
	return f.identify, f.holders, nil
}

// CardHolder is the subject enrolled as the holder of the card here.
func (f *Feed) CardHolder(card fare.DenyHash) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.cards[card]
	return s, ok
}

// Has reports whether the copy holds subject (fresh or not).
func (f *Feed) Has(subject string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.identify.Has(subject) || f.holders.Has(subject)
}

// Status is what a Feed holds, for logs, metrics and tests.
type Status struct {
	Subjects    int           `json:"subjects"`
	FaceOnly    int           `json:"face_only"`
	CardHolders int           `json:"card_holders"`
	HeadVersion uint64        `json:"head_version"`
	HeadIssued  time.Time     `json:"head_issued"`
	Age         time.Duration `json:"age"`
	Fresh       bool          `json:"fresh"`
	// Sessions counts the watches started (one per connect); Resumed,
	// those that resumed the copy from its position.
	Sessions uint64 `json:"sessions"`
	Resumed  uint64 `json:"resumed"`
}

// SignedHead is the signed head the copy follows, as clearing issued it
// (nil: none yet). A terminal shows it to clearing on its watermark
// requests (fare.FaceHeadHeader): a clearing restored from an older backup
// learns from it that it issued newer galleries, and numbers past them.
func (f *Feed) SignedHead() []byte {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.headSigned
}

// Status returns what the Feed holds now.
func (f *Feed) Status() Status {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := Status{Subjects: len(f.keys), FaceOnly: f.identify.Subjects(), CardHolders: len(f.cards), HeadVersion: f.headVersion(), Sessions: f.sessions.Load(), Resumed: f.resumed.Load()}
	if f.head != nil {
		s.HeadIssued = f.head.IssuedAt
	}
	s.Age, s.Fresh = f.freshLocked()
	return s
}

// RefusalReasons are the reasons Refusals counts by.
func RefusalReasons() []string { return slices.Clone(refusalReasons) }

// Refusals counts the values refused since Open, by reason.
func (f *Feed) Refusals() map[string]uint64 {
	out := make(map[string]uint64, len(f.refused))
	for r, c := range f.refused {
		out[r] = c.Load()
	}
	return out
}

func (f *Feed) refuse(reason, detail string) {
	f.refused[reason].Add(1)
	f.tally.Add(reason, detail)
}

// flush writes what changed to the copy (follower goroutine only).
func (f *Feed) flush() error {
	f.mu.RLock()
	var entriesB, headB []byte
	if f.dirtyEntries {
		entries := make([]storedEntry, 0, len(f.keys))
		for k, h := range f.keys {
			entries = append(entries, storedEntry{key: k, signed: h.signed})
		}
		entriesB = encodeEntries(entries, f.tombs)
	}
	if f.dirtyHead {
		headB = encodeHead(f.headSigned, f.trusted, f.retired, f.macKey)
	}
	f.mu.RUnlock()
	if entriesB != nil {
		if err := writeFile(filepath.Join(f.dir, entriesFile), entriesB, true); err != nil {
			return fmt.Errorf("face gallery copy: %w", err)
		}
		clear(entriesB)
		f.dirtyEntries = false
	}
	if headB != nil {
		if err := writeFile(filepath.Join(f.dir, headFile), headB, false); err != nil {
			return fmt.Errorf("face gallery head: %w", err)
		}
		f.dirtyHead = false
	}
	// The position last: a crash before it leaves the older one, from
	// which what the copy already holds is read again.
	if f.dirtyPosition {
		b, _ := json.Marshal(f.position)
		if err := writeFile(filepath.Join(f.dir, posFile), b, false); err != nil {
			return fmt.Errorf("face gallery position: %w", err)
		}
		f.dirtyPosition = false
	}
	return nil
}

func isKey(k ed25519.PublicKey) func(ed25519.PublicKey) bool {
	return func(x ed25519.PublicKey) bool { return x.Equal(k) }
}
