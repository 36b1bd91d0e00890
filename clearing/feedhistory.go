package clearing

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/journeys"
)

// A rider day records the feed version it was priced with, and its late
// taps must be priced with that version again: the same events always
// give the same charges. Clearing keeps the chain of versions it last
// priced with (metaFeedChain); a start whose chain differs looks through
// the stored rider days and refuses to run if any would now be priced with
// another version (say, --feed given the next version once it took
// effect, dropping the one that priced the days before it).
var metaFeedChain = []byte("mfeed-chain")

// FeedLink is one version of a chain of feed versions: its version and
// the first fare day it prices ("" for the chain's first, which prices
// every day before the next one's).
type FeedLink struct {
	Version     string `json:"version"`
	FromFareDay string `json:"from_fare_day,omitempty"`
}

// feedChainOf lists book's chain of versions.
func feedChainOf(book *journeys.Book) []FeedLink {
	chain := []FeedLink{{Version: book.FeedVersion}}
	for b := book; b.Next != nil; b = b.Next {
		chain = append(chain, FeedLink{Version: b.Next.FeedVersion, FromFareDay: b.NextFrom.String()})
	}
	return chain
}

// describeChain is a chain for an error message.
func describeChain(chain []FeedLink) string {
	var parts []string
	for _, l := range chain {
		if l.FromFareDay == "" {
			parts = append(parts, "version "+l.Version)
			continue
		}
		parts = append(parts, fmt.Sprintf("version %s from fare day %s", l.Version, l.FromFareDay))
	}
	return strings.Join(parts, ", then ")
}

// ErrFeedHistory is returned by Open when its feeds would price a rider
// day already priced with another version.
var ErrFeedHistory = errors.New("feed versions would reprice days already priced")

// checkFeedHistory compares book's chain of versions with the one the
// store last priced with. The same chain (or a store that has none yet)
// passes at once; another is checked against every stored rider day, and
// refused if one of them was priced with another version than book gives
// its fare day. The chain is then recorded.
func (s *Store) checkFeedHistory(book *journeys.Book, log *slog.Logger) error {
	chain := feedChainOf(book)
	last, err := s.lastFeedChain(log)
	if err != nil {
		return err
	}
	if slices.Equal(last, chain) {
		return nil
	}
	// Without a chain of its own (a store from before chains were kept, or
	// whose record was lost), a day is judged against the new chain alone:
	// a version it names but gives another day is a conflict; a version it
	// does not name at all may be the same files named otherwise (as an
	// earlier build named a zip), and is reported, not refused.
	lastFor := func(fares.Date) string { return "" }
	if last != nil {
		if lastFor, err = chainVersions(last); err != nil {
			return fmt.Errorf("feed chain record: %w", err)
		}
	}
	start := time.Now()
	h, err := s.daysPricedOtherwise(book, lastFor, last == nil)
	if err != nil {
		return err
	}
	lastDesc := "no chain recorded"
	if last != nil {
		lastDesc = describeChain(last)
	}
	log.Info("feed versions changed: stored rider days checked", "rider_days", h.days, "took", time.Since(start).Round(time.Millisecond),
		"last_chain", lastDesc, "chain", describeChain(chain))
	if h.conflicts > 0 {
		return fmt.Errorf("%w: %d of %d stored rider days were priced with a version these feeds do not give their fare day (the earliest: fare day %s, priced with version %s, which these feeds would price with version %s); clearing last priced with %s, and these feeds give %s: start with the versions that priced them (their first version as --feed, a later one as --next-feed with --next-feed-from, or scheduled: `faregate clearing feeds schedule`), so that their late taps are priced as they were",
			ErrFeedHistory, h.conflicts, h.days, h.first.date, h.first.had, h.first.would, lastDesc, describeChain(chain))
	}
	if h.unknown > 0 {
		log.Warn("stored rider days name feed versions these feeds do not: if those days were priced with a version not given now, stop clearing and start it with that version too (late taps of those days are priced with these feeds)",
			"rider_days", h.unknown, "versions", strings.Join(h.unknownVersions, ", "), "chain", describeChain(chain))
	}
	return s.recordFeedChain(book)
}

// lastFeedChain reads the chain recorded (nil: none). A record that does
// not read as a chain is reported and taken as none: it only spares a
// start the reading of the stored days, which then decide.
func (s *Store) lastFeedChain(log *slog.Logger) ([]FeedLink, error) {
	var raw []byte
	err := s.db.View(func(txn *badger.Txn) (err error) { raw, err = getBytes(txn, metaFeedChain); return err })
	if err != nil {
		return nil, fmt.Errorf("feed chain record: %w", err)
	}
	if raw == nil {
		return nil, nil
	}
	var last []FeedLink
	err = json.Unmarshal(raw, &last)
	if err == nil && len(last) > 0 {
		_, err = chainVersions(last)
	}
	if err != nil || len(last) == 0 {
		log.Warn("the recorded chain of feed versions is unreadable: the stored rider days are checked against these feeds alone", "record", string(raw), "err", err)
		return nil, nil
	}
	return last, nil
}

// HasPricedDays says whether the store holds rider days or a chain of feed
// versions: a store that priced fares.
func (s *Store) HasPricedDays() (bool, error) {
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get(metaFeedChain); err == nil {
			found = true
			return nil
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pRiderDay}})
		defer it.Close()
		it.Rewind()
		found = it.Valid()
		return nil
	})
	return found, err
}

// recordFeedChain records book's chain as the one the store prices with.
func (s *Store) recordFeedChain(book *journeys.Book) error {
	b, err := json.Marshal(feedChainOf(book))
	if err != nil {
		return err
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(metaFeedChain, b) }); err != nil {
		return fmt.Errorf("record the feed chain: %w", err)
	}
	return nil
}

// pricedOtherwise is a stored rider day that book would price with
// another version than it was.
type pricedOtherwise struct {
	date       fares.Date
	had, would string
}

// dayHistory is what daysPricedOtherwise found.
type dayHistory struct {
	days, conflicts int
	first           pricedOtherwise // the earliest conflicting day
	// unknown counts days (without a last chain) whose version book does
	// not name, unknownVersions lists those versions (a few).
	unknown         int
	unknownVersions []string
}

// chainVersions is the version a recorded chain gives each fare day.
func chainVersions(chain []FeedLink) (func(fares.Date) string, error) {
	froms := make([]fares.Date, len(chain))
	for i, l := range chain {
		if i == 0 {
			continue
		}
		t, err := time.Parse(time.DateOnly, l.FromFareDay)
		if err != nil {
			return nil, fmt.Errorf("version %s from fare day %q: %w", l.Version, l.FromFareDay, err)
		}
		froms[i] = fares.DateOf(t.Year(), t.Month(), t.Day())
	}
	return func(d fares.Date) string {
		v := chain[0].Version
		for i := 1; i < len(chain) && d >= froms[i]; i++ {
			v = chain[i].Version
		}
		return v
	}, nil
}

// daysPricedOtherwise reads every stored rider day's version and counts
// the days priced with the version the last chain gives their fare day
// (lastFor) that book would price with another, the earliest of them
// first. A day recording another version still was priced before the last
// chain was checked in (a version from before days recorded one, or named
// as an earlier build named it): the last chain cannot judge it. With no
// last chain (noLast), a day is a conflict when book names its version but
// gives its fare day another, and is counted unknown when book does not
// name its version.
func (s *Store) daysPricedOtherwise(book *journeys.Book, lastFor func(fares.Date) string, noLast bool) (dayHistory, error) {
	var h dayHistory
	named := map[string]bool{}
	for _, l := range feedChainOf(book) {
		named[l.Version] = true
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{pRiderDay}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var date fares.Date
			var had string
			if err := it.Item().Value(func(v []byte) (err error) {
				date, had, err = journeys.PeekDay(v)
				return err
			}); err != nil {
				return fmt.Errorf("rider day %x: %w", it.Item().Key(), err)
			}
			h.days++
			would := book.ForDay(date).FeedVersion
			switch {
			case had == "" || had == would:
			case noLast && !named[had]:
				h.unknown++
				if len(h.unknownVersions) < 4 && !slices.Contains(h.unknownVersions, had) {
					h.unknownVersions = append(h.unknownVersions, had)
				}
			case noLast || had == lastFor(date):
				if h.conflicts == 0 || date < h.first.date {
					h.first = pricedOtherwise{date: date, had: had, would: would}
				}
				h.conflicts++
			}
		}
		return nil
	})
	return h, err
}
