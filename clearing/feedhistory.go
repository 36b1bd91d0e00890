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
	var last []FeedLink
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(metaFeedChain)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &last) })
	})
	if err != nil {
		return fmt.Errorf("feed chain record: %w", err)
	}
	if slices.Equal(last, chain) {
		return nil
	}
	if last != nil {
		lastFor, err := chainVersions(last)
		if err != nil {
			return fmt.Errorf("feed chain record: %w", err)
		}
		start := time.Now()
		n, conflicts, first, err := s.daysPricedOtherwise(book, lastFor)
		if err != nil {
			return err
		}
		log.Info("feed versions changed: stored rider days checked", "rider_days", n, "took", time.Since(start).Round(time.Millisecond),
			"last_chain", describeChain(last), "chain", describeChain(chain))
		if conflicts > 0 {
			return fmt.Errorf("%w: %d of %d stored rider days were priced with a version these feeds do not give their fare day (the first: fare day %s, priced with version %s, which these feeds would price with version %s); clearing last priced with %s, and these feeds give %s: start with the versions that priced them (their first version as --feed, a later one as --next-feed with --next-feed-from, or scheduled: `faregate clearing feeds schedule`), so that their late taps are priced as they were",
				ErrFeedHistory, conflicts, n, first.date, first.had, first.would, describeChain(last), describeChain(chain))
		}
	}
	return s.recordFeedChain(book)
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

// daysPricedOtherwise counts the stored rider days and those priced with
// the version the last chain gives their fare day (lastFor) that book
// would price with another, with the first of them. A day recording
// another version still was priced before the last chain was checked in
// (a version from before days recorded one, or named as an earlier build
// named it): this check has no chain of its own to judge it by.
func (s *Store) daysPricedOtherwise(book *journeys.Book, lastFor func(fares.Date) string) (n, conflicts int, first pricedOtherwise, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
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
			n++
			if would := book.ForDay(date).FeedVersion; had != "" && had == lastFor(date) && had != would {
				if conflicts == 0 {
					first = pricedOtherwise{date: date, had: had, would: would}
				}
				conflicts++
			}
		}
		return nil
	})
	return n, conflicts, first, err
}
