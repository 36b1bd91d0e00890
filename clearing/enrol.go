package clearing

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/journeys"
	"github.com/faregate/faregate/fare"
)

// Concession enrolments. A card (or face) is enrolled into one of the
// feed's rider categories by the concessions desk (API role concessions, or
// `faregate clearing enrol` on clearing's data dir), with who approved it
// and until when; clearing prices every rider by the category their
// enrolments give, never by what a tap line claims.
//
// A rider's enrolments are a history, TigerBeetle style: records are
// appended and never changed; a revocation is a record of its own. Every
// record is in force from its valid_from on and supersedes, from then on,
// every record made before it: the category at an instant is that of the
// latest-made record in force (an enrolment until its valid_until, after
// which the default category applies; a revocation gives the default).
// Records are never backdated and run in whole fare days: valid_from and
// valid_until move forward to the next start of a fare day (the feed's
// caps' day_start_time) unless they are one. A fare day is priced for the
// category of its start (Pricing.Category), so the category of a day that
// has begun never changes, whatever is enrolled later, and the gates, which
// get the same periods (fare.EnrolmentPeriod), show what clearing charges.
//
// Records are keyed by the rider's pseudonymous account (RiderAccount),
// never the raw token; each also names the medium's gate key
// (fare.DenyKey), under which the gates look it up.
//
// Store keys (beside those in store.go):
//
//	E<rider>\x00<seq u64>  one enrolment record (JSON Enrolment), appended once
//	G<key[16]>             the rider enrolled with a medium (fare.DenyHash), written with its first record
//	menrol-version         the enrolment list's version: records written so far u64
//	I<approver>\x00<idempotency key>  request fingerprint[32] | seq u64 | rider: the record a
//	                       request with that key made, written with it (see EnrolRequest)
const (
	pEnrol        = 'E'
	pEnrolIdemKey = 'I'
)

// ErrIdempotencyConflict is returned for an idempotency key already used
// by the same party for a different request: the settlement API answers
// 422 with it.
var ErrIdempotencyConflict = errors.New("idempotency key already used for a different request")

// MaxIdempotencyKeyLen bounds an idempotency key.
const MaxIdempotencyKeyLen = 255

var metaEnrolVersion = []byte("menrol-version")

// metaEnrolSumsAt is the enrolments' version up to which every medium's
// share of the digest (pEnrolSum) is its newest record's: a build before
// the shares appends records without them, and one that left a share
// behind its record would have gates read the list whole at every
// reconnect (an outside review of a downgrade and upgrade). Below the
// version, a start reckons every share again.
var metaEnrolSumsAt = []byte("menrol-sums-at")

// ErrInvalidEnrolment wraps every reason an enrolment or revocation is
// refused for (unknown category, bad or past times, no approver): the
// settlement API answers 400 with it.
var ErrInvalidEnrolment = errors.New("invalid enrolment")

// maxApproverLen bounds who approved an enrolment.
const maxApproverLen = 100

// Enrolment is one record of a rider's enrolment history.
type Enrolment struct {
	// Seq numbers every enrolment record of clearing (1, 2, 3 ...): the
	// order they were made in, and the enrolment list's version.
	Seq uint64 `json:"seq"`
	// Rider is the pseudonymous journal account (passenger/<media>/0x...).
	Rider string `json:"rider"`
	Media string `json:"media"`
	// Key is fare.DenyKey of the medium: what the gates look it up by.
	Key string `json:"key"`
	// Category is the rider category enrolled into (empty on a revocation).
	Category string `json:"category,omitempty"`
	// Revoked marks a revocation: from ValidFrom on, no earlier record
	// applies.
	Revoked    bool      `json:"revoked,omitempty"`
	ApprovedBy string    `json:"approved_by"`
	ValidFrom  time.Time `json:"valid_from"`
	ValidUntil time.Time `json:"valid_until,omitzero"`
	CreatedAt  time.Time `json:"created_at"`
	// Replayed marks the record returned for a repeated request (the same
	// idempotency key): it was made by the first, not now. Never stored.
	Replayed bool `json:"replayed,omitempty"`
}

// EnrolRequest asks for an enrolment (Category, ValidUntil) or a revocation
// (Revoke). A zero ValidFrom means now; both times move forward to the
// next start of a fare day.
type EnrolRequest struct {
	Category   string
	ApprovedBy string
	ValidFrom  time.Time
	ValidUntil time.Time
	Revoke     bool
	// IdempotencyKey, when set, makes the request idempotent for its
	// approver: the first request with the key is made; one repeated with
	// the same key and the same request returns the record the first made
	// (Replayed) and appends nothing, however late; one with the same key
	// and a different request is refused (ErrIdempotencyConflict).
	IdempotencyKey string
}

// fingerprint is what a repeat of the request must match: the rider and
// medium key, and the request as given (before "now" is filled in).
func (r EnrolRequest) fingerprint(rider string, key fare.DenyHash) [32]byte {
	h := sha256.New()
	// Times as instants: the same one written with another offset is the
	// same request.
	fmt.Fprintf(h, "%q|%s|%q|%v|%s|%s", rider, key.Hex(), r.Category, r.Revoke, r.ValidFrom.UTC().Format(time.RFC3339Nano), r.ValidUntil.UTC().Format(time.RFC3339Nano))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// ValidIdempotencyKey checks an idempotency key: 1 to
// MaxIdempotencyKeyLen visible ASCII characters.
func ValidIdempotencyKey(k string) error {
	if k == "" || len(k) > MaxIdempotencyKeyLen {
		return fmt.Errorf("idempotency key of %d bytes: want 1 to %d", len(k), MaxIdempotencyKeyLen)
	}
	for i := range len(k) {
		if k[i] < 0x21 || k[i] > 0x7e {
			return fmt.Errorf("idempotency key: byte %d (0x%02x) is not visible ASCII", i, k[i])
		}
	}
	return nil
}

// fareDays is what enrolments need of the feed: its rider categories and
// where its fare days begin.
type fareDays interface {
	RiderCategories() []string
	dayStartAtOrAfter(t time.Time) time.Time
}

type feedDays struct{ p *Pricing }

func (f feedDays) RiderCategories() []string { return f.p.Book.Feed.RiderCategories() }

// dayStartAtOrAfter is t if a fare day begins at t, else the start of the
// next fare day.
func (f feedDays) dayStartAtOrAfter(t time.Time) time.Time {
	feed := f.p.Book.Feed
	d := feed.FareDay(t)
	if b := feed.FareDayBegins(d); b.Equal(t) {
		return b.UTC()
	}
	for next := d + 1; ; next++ { // a DST jump could make a day start twice: take the first after t
		if b := feed.FareDayBegins(next); b.After(t) {
			return b.UTC()
		}
	}
}

// MaxEnrolmentYears is how far ahead of now an enrolment may begin or
// hold, and a revocation take effect: a concession is reviewed within it
// (a card's life is shorter), and a year 9999 date would not even have a
// next fare day to end on.
const MaxEnrolmentYears = 20

// maxEnrolmentDate is the latest date an enrolment asked for at now may
// name.
func maxEnrolmentDate(now time.Time) time.Time { return now.UTC().AddDate(MaxEnrolmentYears, 0, 0) }

// newEnrolment checks req against the rider's history and the feed and
// makes the record to append (Seq, Rider, Media and Key set by the caller);
// now is the fare clock.
func newEnrolment(req EnrolRequest, days fareDays, now time.Time) (Enrolment, error) {
	bad := func(format string, a ...any) (Enrolment, error) {
		return Enrolment{}, fmt.Errorf("%w: %s", ErrInvalidEnrolment, fmt.Sprintf(format, a...))
	}
	if days == nil {
		return bad("clearing prices flat fares (it runs without --feed): there are no rider categories to enrol into")
	}
	if err := validateApprover(req.ApprovedBy); err != nil {
		return bad("%v", err)
	}
	now = now.UTC()
	from := req.ValidFrom
	if from.IsZero() {
		from = now
	}
	if from.Before(now.Truncate(time.Second)) {
		return bad("valid_from %s is in the past (now %s): enrolments are never backdated", from.UTC().Format(time.RFC3339), now.Format(time.RFC3339))
	}
	limit := maxEnrolmentDate(now)
	if from.After(limit) {
		return bad("valid_from %s is more than %d years ahead (at most %s)", from.UTC().Format(time.RFC3339), MaxEnrolmentYears, limit.Format(time.RFC3339))
	}
	e := Enrolment{ApprovedBy: req.ApprovedBy, ValidFrom: days.dayStartAtOrAfter(from), CreatedAt: now.Truncate(time.Second)}
	if req.Revoke {
		if req.Category != "" || !req.ValidUntil.IsZero() {
			return bad("a revocation takes no category and no valid_until")
		}
		e.Revoked = true
		return e, nil
	}
	if req.Category == "" {
		return bad("no category: want one of the feed's rider categories (%s)", strings.Join(days.RiderCategories(), ", "))
	}
	if !slices.Contains(days.RiderCategories(), req.Category) {
		return bad("unknown rider category %q: the feed has %s", req.Category, strings.Join(days.RiderCategories(), ", "))
	}
	if err := fare.ValidateID(req.Category); err != nil {
		return bad("rider category %q cannot be sent to the gates: %v", req.Category, err)
	}
	if req.ValidUntil.IsZero() {
		return bad("no valid_until: an enrolment says until when it holds (RFC 3339)")
	}
	if !req.ValidUntil.After(now) {
		return bad("valid_until %s is in the past (now %s)", req.ValidUntil.UTC().Format(time.RFC3339), now.Format(time.RFC3339))
	}
	if !req.ValidUntil.After(from) {
		return bad("valid_until %s is not after valid_from %s", req.ValidUntil.UTC().Format(time.RFC3339), from.UTC().Format(time.RFC3339))
	}
	if req.ValidUntil.After(limit) {
		return bad("valid_until %s is more than %d years ahead (at most %s)", req.ValidUntil.UTC().Format(time.RFC3339), MaxEnrolmentYears, limit.Format(time.RFC3339))
	}
	e.Category = req.Category
	e.ValidUntil = days.dayStartAtOrAfter(req.ValidUntil)
	if !e.ValidUntil.After(e.ValidFrom) {
		return bad("valid_until %s ends before the first whole fare day, which begins %s", req.ValidUntil.UTC().Format(time.RFC3339), e.ValidFrom.Format(time.RFC3339))
	}
	return e, nil
}

func validateApprover(s string) error {
	if s == "" {
		return errors.New("no approver: say who approved the enrolment")
	}
	if len(s) > maxApproverLen || !utf8.ValidString(s) {
		return fmt.Errorf("approver: at most %d bytes of UTF-8", maxApproverLen)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return errors.New("approver: control characters")
	}
	// Who approved is the record's accountability: a name that shows as
	// nothing (white space, zero-width characters) is no approver (an
	// outside test enrolled a card approved by "   ").
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsSpace(r) && !unicode.Is(unicode.Cf, r) }) < 0 {
		return errors.New("no approver: the name is blank (white space or invisible characters only); say who approved the enrolment")
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.Is(unicode.Cf, r) }) >= 0 {
		return errors.New("approver: invisible (format) characters, such as a zero-width space: write the name as it reads")
	}
	return nil
}

// EnrolmentPeriods is what a rider's history (in Seq order) says, as a
// gate holds it: the last fare.MaxEnrolmentPeriods of allEnrolmentPeriods.
// An enrolment that would leave out one not ended is refused
// (checkGatePeriods), so they are the periods in force and to come.
func EnrolmentPeriods(history []Enrolment) []fare.EnrolmentPeriod {
	out := allEnrolmentPeriods(history)
	if len(out) > fare.MaxEnrolmentPeriods {
		out = out[len(out)-fare.MaxEnrolmentPeriods:]
	}
	return out
}

// allEnrolmentPeriods is what a rider's history (in Seq order) says, as
// periods in time order: the record in force at an instant is the
// latest-made one whose ValidFrom has come; an enrolment gives its
// category until its ValidUntil, a revocation nothing. Adjacent periods of
// one category are merged. Clearing prices by these, all of them (a late
// tap, a repricing of an old day).
func allEnrolmentPeriods(history []Enrolment) []fare.EnrolmentPeriod {
	var out []fare.EnrolmentPeriod
	for _, p := range enrolmentPieces(history) {
		if n := len(out); n > 0 && out[n-1].Until.Equal(p.From) && out[n-1].Category == p.Category {
			out[n-1].Until = p.Until
			continue
		}
		out = append(out, p)
	}
	return out
}

// checkGatePeriods refuses an enrolment whose history (e last) would have
// a gate leave out a period that has not ended at e's making: a gate holds
// the latest fare.MaxEnrolmentPeriods (an outside review enrolled a
// student term by term, 17 terms ahead, and the gate and clearing's
// pricing lost the term in force). A revocation is never refused.
func checkGatePeriods(hist []Enrolment) error {
	e := hist[len(hist)-1]
	if e.Revoked {
		return nil
	}
	all := allEnrolmentPeriods(hist)
	n := len(all) - fare.MaxEnrolmentPeriods
	if n <= 0 {
		return nil
	}
	if last := all[n-1]; last.Until.IsZero() || last.Until.After(e.CreatedAt) {
		return fmt.Errorf("%w: the rider would have %d enrolment periods in force or to come, and a gate holds %d: enrol fewer ahead (the next when one has ended)",
			ErrInvalidEnrolment, len(all)-countEnded(all, e.CreatedAt), fare.MaxEnrolmentPeriods)
	}
	return nil
}

// countEnded is how many of periods (in time order) ended by t.
func countEnded(periods []fare.EnrolmentPeriod, t time.Time) int {
	n := 0
	for _, p := range periods {
		if !p.Until.IsZero() && !p.Until.After(t) {
			n++
		}
	}
	return n
}

// enrolmentPieces is EnrolmentPeriods unmerged: each period lies within
// the one record that gives it, as that record's enrolment was checked
// against the feed (checkEnrolledCategories).
func enrolmentPieces(history []Enrolment) []fare.EnrolmentPeriod {
	recs := slices.Clone(history)
	slices.SortStableFunc(recs, func(a, b Enrolment) int { return a.ValidFrom.Compare(b.ValidFrom) })
	var out []fare.EnrolmentPeriod
	var cur *Enrolment
	for i := 0; i < len(recs); {
		at := recs[i].ValidFrom
		for ; i < len(recs) && recs[i].ValidFrom.Equal(at); i++ {
			if cur == nil || recs[i].Seq > cur.Seq {
				cur = &recs[i]
			}
		}
		if cur.Revoked {
			continue
		}
		until := cur.ValidUntil
		if i < len(recs) && recs[i].ValidFrom.Before(until) {
			until = recs[i].ValidFrom
		}
		if !at.Before(until) {
			continue
		}
		out = append(out, fare.EnrolmentPeriod{From: at.UTC(), Until: until.UTC(), Category: cur.Category})
	}
	return out
}

func enrolPrefix(rider string) []byte {
	return append(append([]byte{pEnrol}, rider...), 0)
}

func enrolStoreKey(rider string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(enrolPrefix(rider), seq)
}

// enrolledRider is the rider enrolled with medium key ("" for none).
func enrolledRider(txn *badger.Txn, key fare.DenyHash) (string, error) {
	return getString(txn, append([]byte{pEnrolIndex}, key[:]...))
}

// riderEnrolments reads a rider's history in Seq order.
func riderEnrolments(txn *badger.Txn, rider string) ([]Enrolment, error) {
	prefix := enrolPrefix(rider)
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 16, Prefix: prefix})
	defer it.Close()
	return riderEnrolmentsAt(it, rider)
}

// riderEnrolmentsAt is riderEnrolments through it, an iterator over
// enrolment records (prefix pEnrol or narrower) that a caller reading
// many riders' histories opens once: opening one costs a table iterator
// per level, seeking one does not.
func riderEnrolmentsAt(it *badger.Iterator, rider string) ([]Enrolment, error) {
	prefix := enrolPrefix(rider)
	var out []Enrolment
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		var e Enrolment
		if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
			return nil, fmt.Errorf("enrolment record %q: %w", it.Item().Key(), err)
		}
		out = append(out, e)
	}
	return out, nil
}

// EnrolledCategory is the rider category rider travels in at at: the one
// its enrolments give (EnrolmentPeriods), or, when none does, the default
// of the feed version pricing at's fare day. It is Pricing.Category for live pricing and the fare audit.
func (s *Store) EnrolledCategory(txn *badger.Txn, rider string, at time.Time) (string, error) {
	pricing := s.pricing.Load()
	if ok, err := s.mayBeEnrolled(rider); err != nil || !ok {
		if err != nil || pricing == nil {
			return "", err
		}
		return defaultCategoryAt(pricing, at), nil
	}
	hist, err := riderEnrolments(txn, rider)
	if err != nil {
		return "", err
	}
	if c := fare.CategoryAt(allEnrolmentPeriods(hist), at); c != "" {
		return c, nil
	}
	if pricing == nil {
		return "", nil
	}
	return defaultCategoryAt(pricing, at), nil
}

// defaultCategoryAt is the default rider category of the feed version that
// prices the fare day at lies in. A version that renames its default
// prices the riders enrolled in nothing in its own: in the first version's
// (an outside review), which the next one does not know, every tap of
// theirs from the switch was unpriced, and they travelled free.
func defaultCategoryAt(p *Pricing, at time.Time) string {
	return p.Book.ForDay(p.Book.Feed.FareDay(at)).Feed.DefaultRiderCategory()
}

// appendEnrolment writes e as the rider's next record in one synced
// transaction and returns it with its Seq, the rider's whole history and
// the medium's share of the enrolments' digest before it (nil: the medium
// is new to the list).
func (s *Store) appendEnrolment(e Enrolment, idem *enrolIdem) (Enrolment, []Enrolment, *[32]byte, error) {
	var hist []Enrolment
	var prev *[32]byte
	s.noteEnrolled(e.Rider) // before the commit: pricing must never miss it
	err := s.db.Update(func(txn *badger.Txn) error {
		var err error
		if hist, err = riderEnrolments(txn, e.Rider); err != nil {
			return err
		}
		k, err := fare.ParseDenyKey(e.Key)
		if err != nil {
			return err
		}
		if n := len(hist); n > 0 && (hist[n-1].Key != e.Key || hist[n-1].Media != e.Media) {
			return fmt.Errorf("rider %s was enrolled with medium %s %s, not %s %s", e.Rider, hist[n-1].Media, hist[n-1].Key, e.Media, e.Key)
		}
		if len(hist) > 0 {
			sum, err := enrolSum(txn, k, hist)
			if err != nil {
				return err
			}
			prev = &sum
		} else if other, err := enrolledRider(txn, k); err != nil {
			return err
		} else if other != "" {
			// One medium, one rider: a request pairing a rider with
			// another's medium (a queued file made by hand) would point
			// the medium at it and count it twice (an outside review).
			return fmt.Errorf("%w: medium %s is enrolled for rider %s, not %s", ErrInvalidEnrolment, e.Key, other, e.Rider)
		}
		v, err := getU64(txn, metaEnrolVersion)
		if err != nil {
			return err
		}
		e.Seq = v + 1
		// The shares stay whole up to the new version if they were up to
		// the last (loadDenyList made them so).
		if at, err := getU64(txn, metaEnrolSumsAt); err != nil {
			return err
		} else if at == v {
			if err := setU64(txn, metaEnrolSumsAt, e.Seq); err != nil {
				return err
			}
		}
		b, err := json.Marshal(e)
		if err != nil {
			// Nothing a retry mends (a date JSON cannot write): refused,
			// so a queued request is set aside and the API answers 400.
			return fmt.Errorf("%w: the record cannot be written: %v", ErrInvalidEnrolment, err)
		}
		if err := txn.Set(enrolStoreKey(e.Rider, e.Seq), b); err != nil {
			return err
		}
		if len(hist) == 0 {
			if err := txn.Set(append([]byte{pEnrolIndex}, k[:]...), []byte(e.Rider)); err != nil {
				return err
			}
		}
		hist = append(hist, e)
		if err := checkGatePeriods(hist); err != nil {
			return err
		}
		sum := fare.EnrolEntrySum(k, e.Seq, EnrolmentPeriods(hist))
		if err := txn.Set(enrolSumKey(k), sum[:]); err != nil {
			return err
		}
		if idem != nil {
			v := append(append(idem.print[:], binary.BigEndian.AppendUint64(nil, e.Seq)...), e.Rider...)
			if err := txn.Set(idem.key, v); err != nil {
				return err
			}
		}
		return txn.Set(metaEnrolVersion, binary.BigEndian.AppendUint64(nil, e.Seq))
	})
	if err != nil {
		return Enrolment{}, nil, nil, fmt.Errorf("store enrolment of %s: %w", e.Rider, err)
	}
	return e, hist, prev, nil
}

func enrolSumKey(k fare.DenyHash) []byte { return append([]byte{pEnrolSum}, k[:]...) }

// enrolSum is medium k's share of the enrolments' digest, its rider's
// history hist (non-empty) giving its entry: as stored, or reckoned from
// hist where a store of an earlier build has none.
func enrolSum(txn *badger.Txn, k fare.DenyHash, hist []Enrolment) ([32]byte, error) {
	var sum [32]byte
	item, err := txn.Get(enrolSumKey(k))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return fare.EnrolEntrySum(k, hist[len(hist)-1].Seq, EnrolmentPeriods(hist)), nil
	case err != nil:
		return sum, err
	}
	err = item.Value(func(v []byte) error {
		if len(v) != len(sum) {
			return fmt.Errorf("enrolment digest share of 0x%s: %d bytes: %w", k, len(v), errCorruptRecord)
		}
		copy(sum[:], v)
		return nil
	})
	return sum, err
}

// enrolIdem is an idempotent enrolment request's store key and fingerprint.
type enrolIdem struct {
	key   []byte
	print [32]byte
}

func enrolIdemStoreKey(approver, idemKey string) []byte {
	k := append([]byte{pEnrolIdemKey}, approver...)
	return append(append(k, 0), idemKey...)
}

// enrolmentByIdem returns the record an earlier request with idem's key
// made (found), Replayed set; ErrIdempotencyConflict if that request was
// a different one.
func (s *Store) enrolmentByIdem(idem *enrolIdem) (Enrolment, bool, error) {
	var e Enrolment
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		v, err := getBytes(txn, idem.key)
		if err != nil || v == nil {
			return err
		}
		if len(v) < 32+8 {
			return fmt.Errorf("idempotency record of %d bytes: %w", len(v), errCorruptRecord)
		}
		if [32]byte(v[:32]) != idem.print {
			return ErrIdempotencyConflict
		}
		seq, rider := binary.BigEndian.Uint64(v[32:40]), string(v[40:])
		item, err := txn.Get(enrolStoreKey(rider, seq))
		if err != nil {
			return fmt.Errorf("enrolment %d of %s, made by an earlier request with this idempotency key: %w", seq, rider, err)
		}
		found = true
		return item.Value(func(b []byte) error { return json.Unmarshal(b, &e) })
	})
	e.Replayed = found
	return e, found, err
}

// RiderEnrolments is a rider's enrolment history, oldest first (none for a
// rider never enrolled).
func (s *Store) RiderEnrolments(rider string) ([]Enrolment, error) {
	var out []Enrolment
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		out, err = riderEnrolments(txn, rider)
		return err
	})
	return out, err
}

// EnrolmentVersion is the enrolment list's version: the records written.
func (s *Store) EnrolmentVersion() (uint64, error) {
	var v uint64
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		v, err = getU64(txn, metaEnrolVersion)
		return err
	})
	return v, err
}

// LatestEnrolments returns the last record of every enrolled rider, by
// rider, after after (exclusive; "" from the start), at most limit (0: all).
func (s *Store) LatestEnrolments(after string, limit int) ([]Enrolment, error) {
	var out []Enrolment
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte{pEnrol}})
		defer it.Close()
		start := []byte{pEnrol}
		if after != "" {
			start = append(enrolPrefix(after), 0xff)
		}
		for it.Seek(start); it.Valid(); it.Next() {
			k := it.Item().Key()
			var e Enrolment
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return fmt.Errorf("enrolment record %q: %w", k, err)
			}
			if n := len(out); n > 0 && out[n-1].Rider == e.Rider {
				out[n-1] = e
				continue
			}
			if limit > 0 && len(out) == limit {
				break
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read enrolments: %w", err)
	}
	return out, nil
}

var riderAccountRE = regexp.MustCompile(`^passenger/(card|face)/0x[0-9a-f]{32}$`)

// canonicalRider is s with a rider account's hex digits (and 0x) in lower
// case, as the journal names it; anything else is returned unchanged. Hex
// is read in either case everywhere the API takes a rider.
func canonicalRider(s string) string {
	rest, ok := strings.CutPrefix(s, "passenger/")
	if !ok {
		return s
	}
	media, hexPart, ok := strings.Cut(rest, "/")
	if !ok || len(hexPart) != 34 || (hexPart[:2] != "0x" && hexPart[:2] != "0X") {
		return s
	}
	return "passenger/" + media + "/0x" + strings.ToLower(hexPart[2:])
}

// ParseRiderAccount checks a rider's pseudonymous account
// (passenger/card|face/0x + 32 lower-case hex digits) and returns its media.
func ParseRiderAccount(s string) (fare.MediaKind, error) {
	if !riderAccountRE.MatchString(s) {
		return 0, fmt.Errorf("rider %q: want passenger/card/0x... or passenger/face/0x... with 32 lower-case hex digits (faregate clearing rider-id prints it)", fares.ShortValue(s))
	}
	return ParseMedia(strings.Split(s, "/")[1])
}

// enrolDays is what enrolments need of clearing's feed (nil without one).
func (c *Clearing) enrolDays() fareDays {
	if c.store.pricing.Load() == nil {
		return nil
	}
	return feedDays{c.store.pricing.Load()}
}

// Enrol enrols the rider behind a medium into a rider category (req.Revoke
// revokes instead): the record is appended in a synced transaction, then
// the medium's periods go to the gates. It returns the record as stored.
func (c *Clearing) Enrol(ctx context.Context, m fare.MediaKind, token string, req EnrolRequest) (Enrolment, error) {
	if m != fare.Card && m != fare.Face {
		return Enrolment{}, fmt.Errorf("%w: media %s: want card or face", ErrInvalidEnrolment, m)
	}
	if err := fare.CheckDeskToken(token); err != nil {
		return Enrolment{}, fmt.Errorf("%w: %s token: %v", ErrInvalidEnrolment, m, err)
	}
	return c.enrol(ctx, c.RiderAccount(m, token), m, fare.HashDeny(m, token), req)
}

// RevokeEnrolment revokes a rider's enrolment (by its pseudonymous account)
// from the start of the fare day at or after from (zero: now), approved by
// approvedBy. A rider never enrolled is ErrNotFound. A non-empty
// idempotencyKey makes it idempotent (EnrolRequest.IdempotencyKey).
func (c *Clearing) RevokeEnrolment(ctx context.Context, rider, approvedBy string, from time.Time, idempotencyKey string) (Enrolment, error) {
	m, err := ParseRiderAccount(rider)
	if err != nil {
		return Enrolment{}, fmt.Errorf("%w: %v", ErrInvalidEnrolment, err)
	}
	hist, err := c.store.RiderEnrolments(rider)
	if err != nil {
		return Enrolment{}, err
	}
	if len(hist) == 0 {
		return Enrolment{}, fmt.Errorf("rider %s was never enrolled: %w", rider, ErrNotFound)
	}
	k, err := fare.ParseDenyKey(hist[len(hist)-1].Key)
	if err != nil {
		return Enrolment{}, fmt.Errorf("rider %s: %w", rider, err)
	}
	return c.enrol(ctx, rider, m, k, EnrolRequest{ApprovedBy: approvedBy, ValidFrom: from, Revoke: true, IdempotencyKey: idempotencyKey})
}

func (c *Clearing) enrol(ctx context.Context, rider string, m fare.MediaKind, key fare.DenyHash, req EnrolRequest) (Enrolment, error) {
	if err := ctx.Err(); err != nil {
		return Enrolment{}, err
	}
	var idem *enrolIdem
	if req.IdempotencyKey != "" {
		// The key as the caller scoped it (the API prefixes its token's
		// hash to the client's key): bounded, not judged.
		if len(req.IdempotencyKey) > 2*MaxIdempotencyKeyLen {
			return Enrolment{}, fmt.Errorf("%w: idempotency key of %d bytes", ErrInvalidEnrolment, len(req.IdempotencyKey))
		}
		idem = &enrolIdem{key: enrolIdemStoreKey(req.ApprovedBy, req.IdempotencyKey), print: req.fingerprint(rider, key)}
	}
	// prepare answers a repeat (replay), or makes the record and checks
	// it against the feed.
	prepare := func() (e Enrolment, replay bool, err error) {
		// A repeat is answered before the request is checked again: what
		// was valid when it was made (a start time since passed) stays
		// made.
		if idem != nil {
			if e, found, err := c.store.enrolmentByIdem(idem); err != nil || found {
				return e, true, err
			}
		}
		// The fare clock, as payments: it decides which fare days are over
		// (billed, or still open to late taps), so "never backdated" is
		// judged on it. A reopened simulated city's runs days ahead of the
		// wall clock.
		if e, err = newEnrolment(req, c.enrolDays(), c.cfg.FareClock()); err != nil {
			return Enrolment{}, false, err
		}
		return e, false, c.checkEnrolmentFeeds(ctx, e, m)
	}
	// Once before enrolWrite is taken, so that the feed check's work (up
	// to seconds on a large feed, ended by ctx) holds up no other
	// enrolment, and again under it, at little cost: the feed keeps its
	// answers.
	if e, replay, err := prepare(); err != nil || replay {
		return e, err
	}
	defer c.lockList(fare.EnrolGateList)()
	e, replay, err := prepare()
	if err != nil || replay {
		return e, err
	}
	return c.appendEnrolment(ctx, e, rider, m, key, idem)
}

// checkEnrolmentFeeds refuses an enrolment into days a version of the
// feed prices that cannot price its category on its medium wherever it
// prices a rider in no category (fares.Feed.UnpricedFor): a version
// scheduled to take over without the category would let the rider travel
// free from then.
func (c *Clearing) checkEnrolmentFeeds(ctx context.Context, e Enrolment, m fare.MediaKind) error {
	p := c.store.pricing.Load()
	if p == nil || e.Revoked {
		return nil
	}
	lack, err := newCategoryChecker(ctx, freshCheck).lacking(p.Book, e.Category, m.String(), e.ValidFrom, e.ValidUntil)
	if errors.Is(err, fares.ErrCategoryCheckTooLarge) {
		return fmt.Errorf("%w: %w: end the enrolment sooner (fewer days to check)", ErrInvalidEnrolment, err)
	}
	if err != nil {
		return fmt.Errorf("enrolment: check the feed: %w", err)
	}
	if len(lack) == 0 {
		return nil
	}
	if lack[0].Book == p.Book {
		return fmt.Errorf("%w: the feed clearing prices with (version %s) cannot price rider category %q (%s): its riders would ride free there",
			ErrInvalidEnrolment, lack[0].FeedVersion, e.Category, lack[0].why)
	}
	return fmt.Errorf("%w: feed version %s, which prices fare days from %s, cannot price rider category %q (%s): end the enrolment before then",
		ErrInvalidEnrolment, lack[0].FeedVersion, p.Book.Feed.FareDayBegins(nextFromOf(p.Book, lack[0].Book)).Format(time.RFC3339), e.Category, lack[0].why)
}

// appendEnrolment stores e, made for rider's medium, and sends the
// medium's periods to the gates; enrolWrite is held.
func (c *Clearing) appendEnrolment(ctx context.Context, e Enrolment, rider string, m fare.MediaKind, key fare.DenyHash, idem *enrolIdem) (Enrolment, error) {
	e.Rider, e.Media, e.Key = rider, m.String(), key.Hex()
	e, hist, prev, err := c.store.appendEnrolment(e, idem)
	if err != nil {
		return Enrolment{}, err
	}
	what := "enrolled"
	if e.Revoked {
		what = "enrolment revoked"
	}
	c.log.Info(what, "rider", rider, "category", e.Category, "valid_from", e.ValidFrom, "valid_until", e.ValidUntil, "approved_by", e.ApprovedBy, "seq", e.Seq)
	c.enrolmentChanged(ctx, key, e.Seq, prev, EnrolmentPeriods(hist))
	return e, nil
}

// RiderEnrolments is a rider's enrolment history and the periods it gives.
func (c *Clearing) RiderEnrolments(rider string) ([]Enrolment, []fare.EnrolmentPeriod, error) {
	hist, err := c.store.RiderEnrolments(rider)
	if err != nil {
		return nil, nil, err
	}
	return hist, EnrolmentPeriods(hist), nil
}

// mayBeEnrolled reports whether rider has enrolment records, from the set
// of enrolled riders read once from the store: a prefix iterator inside
// the applying goroutine's write transaction sorts all its pending writes,
// far too dear for every tap of every rider.
func (s *Store) mayBeEnrolled(rider string) (bool, error) {
	s.enrolledMu.Lock()
	defer s.enrolledMu.Unlock()
	if !s.enrolledLoaded {
		set := map[string]bool{}
		err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte{pEnrol}})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().Key()
				if len(k) < 10 {
					return fmt.Errorf("enrolment key %q: %w", k, errCorruptRecord)
				}
				set[string(k[1:len(k)-9])] = true
			}
			return nil
		})
		if err != nil {
			return false, fmt.Errorf("enrolled riders: %w", err)
		}
		s.enrolled, s.enrolledLoaded = set, true
	}
	return s.enrolled[rider], nil
}

// noteEnrolled adds rider to the set of enrolled riders.
func (s *Store) noteEnrolled(rider string) {
	s.enrolledMu.Lock()
	defer s.enrolledMu.Unlock()
	if s.enrolledLoaded {
		s.enrolled[rider] = true
	}
}

// checkEnrolledCategories refuses a chain of feed versions that lacks a
// rider category riders are enrolled in, on their medium, for a time one
// of those versions prices (from now on): their taps would match no
// product sold to them and travel free, as a rider in no category would in
// a feed without a default (which CheckFeeds refuses). Each missing
// category is named with how many riders it leaves out and the version
// that lacks it. fresh is a version being added (checked as an enrolment
// is, within fares.CategoryCheckWork); the others were checked before, and
// are rechecked within recheckWork. revoked (rider -> when) holds the
// revocations queued but not yet applied (a clearing that refuses to start
// applies none: queuedRevocations), whose riders are checked only up to
// them. ctx ends the check.
func (s *Store) checkEnrolledCategories(ctx context.Context, book *journeys.Book, now time.Time, fresh *fares.Feed, revoked map[string]time.Time) error {
	type gap struct {
		riders map[string]bool
		until  time.Time
		why    string // fares.Feed.UnpricedFor
	}
	gaps := map[[3]string]*gap{} // version, category, medium
	check := newCategoryChecker(ctx, recheck(fresh))
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte{pEnrol}})
		defer it.Close()
		last := ""
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) < 10 {
				continue
			}
			rider := string(k[1 : len(k)-9])
			if rider == last {
				continue
			}
			last = rider
			if err := ctx.Err(); err != nil {
				return err
			}
			hist, err := riderEnrolments(txn, rider)
			if err != nil {
				return err
			}
			medium := enrolledMedium(rider, hist)
			// Each period as the record giving it was checked, not
			// merged with the next: consecutive enrolments each within
			// the work would together exceed it (an outside recheck saw
			// three of 6.7 years refuse a restart).
			for _, p := range enrolmentPieces(hist) {
				if cut, ok := revoked[rider]; ok && p.Until.After(cut) {
					p.Until = cut // revoked from then (a zero cut: at once)
				}
				if !p.Until.After(now) {
					continue
				}
				from := p.From
				if from.Before(now) {
					from = now
				}
				if !p.Until.After(from) {
					continue
				}
				lack, err := check.lacking(book, p.Category, medium, from, p.Until)
				if err != nil {
					return fmt.Errorf("rider %s, enrolled in %q until %s: %w", rider, p.Category, p.Until.Format(time.RFC3339), err)
				}
				for _, b := range lack {
					k := [3]string{b.FeedVersion, p.Category, medium}
					if gaps[k] == nil {
						gaps[k] = &gap{riders: map[string]bool{}, why: b.why}
					}
					gaps[k].riders[rider] = true
					if p.Until.After(gaps[k].until) {
						gaps[k].until = p.Until
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("enrolled categories: %w", err)
	}
	if len(gaps) == 0 {
		return nil
	}
	var msgs []string
	for _, k := range slices.SortedFunc(maps.Keys(gaps), func(a, b [3]string) int {
		return strings.Compare(strings.Join(a[:], "\x00"), strings.Join(b[:], "\x00"))
	}) {
		g := gaps[k]
		riders := slices.Sorted(maps.Keys(g.riders))
		named := strings.Join(riders[:min(len(riders), maxRidersNamed)], ", ")
		if len(riders) > maxRidersNamed {
			named += fmt.Sprintf(" and %d more", len(riders)-maxRidersNamed)
		}
		msgs = append(msgs, fmt.Sprintf("feed version %s cannot price rider category %q (%s), and %d riders are enrolled in it by %s (until %s at the latest: %s)",
			k[0], k[1], g.why, len(g.riders), k[2], g.until.Format(time.RFC3339), named))
	}
	return fmt.Errorf("%s: their taps would match no product sold to them and travel free there; keep the category in the feed (rider_categories.txt, and products for it on every rule's legs, on each medium riders are enrolled with), or revoke or move the enrolments first (`faregate clearing enrol revoke --data DIR --rider R`: a revocation queued while clearing is stopped counts at its next start)", strings.Join(msgs, "; "))
}

// maxRidersNamed bounds the riders an enrolled-category refusal names for
// each version and category.
const maxRidersNamed = 10

// queuedRevocations reads the revocations queued in dataDir's
// EnrolRequestsDir (QueueEnrolment) and not yet applied: rider -> when it
// takes effect (the fare day starting at or after its valid_from, or now
// when none, as enrol makes it: dayStart). A request that does not parse
// is left for applyEnrolQueue to set aside.
func queuedRevocations(dataDir string, now time.Time, dayStart func(time.Time) time.Time) (map[string]time.Time, error) {
	paths, err := PendingEnrolments(dataDir)
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		q, err := decodeQueuedEnrolment(b)
		if err != nil {
			continue
		}
		if !q.Revoke {
			delete(out, q.Rider) // enrolled again after it: checked when applied
			continue
		}
		at := q.ValidFrom
		if at.IsZero() || at.Before(now) {
			at = now
		}
		at = dayStart(at)
		if was, ok := out[q.Rider]; !ok || at.Before(was) {
			out[q.Rider] = at
		}
	}
	return out, nil
}

// enrolledMedium is the medium ("card" or "face") of a rider's
// enrolments: their records', else their account's.
func enrolledMedium(rider string, hist []Enrolment) string {
	if n := len(hist); n > 0 && hist[n-1].Media != "" {
		return hist[n-1].Media
	}
	if m, err := ParseRiderAccount(rider); err == nil {
		return m.String()
	}
	return "card"
}

// recheckWork is the work the enrolled-category check may do on a version
// for enrolments accepted before (at start, and when a version is
// scheduled or withdrawn): twice a new enrolment's. An enrolment's days
// checked whole within fares.CategoryCheckWork cost at most that much
// again later (only its first day changes, to part of a day already
// tried), so a restart is never refused for a check that passed.
const recheckWork = 2 * fares.CategoryCheckWork

// freshCheck gives every version a new enrolment's work.
func freshCheck(*fares.Feed) int64 { return fares.CategoryCheckWork }

// recheck gives version fresh a new enrolment's work, the others
// recheckWork.
func recheck(fresh *fares.Feed) func(*fares.Feed) int64 {
	return func(f *fares.Feed) int64 {
		if f == fresh {
			return fares.CategoryCheckWork
		}
		return recheckWork
	}
}

// lacking is a version of a feed chain that cannot price a rider category
// wherever it prices a rider in no category, and why
// (fares.Feed.UnpricedFor).
type lacking struct {
	*journeys.Book
	why string
}

// categoryChecker asks the versions of feed chains about enrolments
// (lacking), within the work its limit gives each version's feed, and
// keeps the answers for the windows asked: many riders share one.
type categoryChecker struct {
	ctx   context.Context
	limit func(*fares.Feed) int64
	memo  map[checkWindow]string
}

type checkWindow struct {
	feed             *fares.Feed
	category, medium string
	first, last      fares.Date
}

func newCategoryChecker(ctx context.Context, limit func(*fares.Feed) int64) *categoryChecker {
	return &categoryChecker{ctx: ctx, limit: limit, memo: map[checkWindow]string{}}
}

// lacking returns the versions of book's chain that price some fare day
// between from and until and cannot price category on medium wherever
// they price a rider in no category on those days, the whole of each day
// (fares.Feed.UnpricedFor). A version whose check would be too large is
// an error (fares.ErrCategoryCheckTooLarge) naming it.
func (ch *categoryChecker) lacking(book *journeys.Book, category, medium string, from, until time.Time) ([]lacking, error) {
	var out []lacking
	first, last := book.Feed.FareDay(from), book.Feed.FareDay(until.Add(-time.Nanosecond))
	for b, start := book, fares.Date(math.MinInt32); b != nil; b, start = b.Next, b.NextFrom {
		end := fares.Date(math.MaxInt32) // the version prices fare days start..end-1
		if b.Next != nil {
			end = b.NextFrom
		}
		if last < start || first >= end {
			continue
		}
		w := checkWindow{b.Feed, category, medium, max(first, start), min(last, end-1)}
		why, ok := ch.memo[w]
		if !ok {
			var err error
			if why, err = b.Feed.UnpricedFor(ch.ctx, category, medium, w.first, w.last, ch.limit(b.Feed)); err != nil {
				return nil, fmt.Errorf("feed version %s: %w", b.FeedVersion, err)
			}
			ch.memo[w] = why
		}
		if why != "" {
			out = append(out, lacking{b, why})
		}
	}
	return out, nil
}

// nextFromOf is the first fare day version v of book's chain prices.
func nextFromOf(book, v *journeys.Book) fares.Date {
	start := fares.Date(0)
	for b := book; b != nil && b != v; b = b.Next {
		start = b.NextFrom
	}
	return start
}
