package clearing

import (
	"slices"

	"github.com/faregate/faregate/clearing/journeys"
)

// DefaultRiderCache is how many rider fare days (and as many weeks) the
// applying goroutine keeps decoded in memory by default.
const DefaultRiderCache = 100_000

// riderCache keeps the rider days and weeks recent batches wrote, decoded,
// so that pricing a tap reads its rider's state from memory instead of the
// store. The store stays the truth: entries are installed once their batch
// is prepared (the next batch is priced while it commits), the cache is
// emptied if that commit fails, and a miss reads the store. Only the
// applying goroutine uses it.
//
// Eviction is by generations: lookups promote from the old generation to
// the current one, and when the current one is full it becomes the old one
// (dropping the previous old one). That keeps between max/2 and max of the
// most recently used entries for two map operations per lookup.
type riderCache struct {
	days  generations[*journeys.Day]
	weeks generations[[]journeys.WeekDay]
}

func newRiderCache(size int) *riderCache {
	if size <= 0 {
		return nil
	}
	return &riderCache{days: newGenerations[*journeys.Day](size), weeks: newGenerations[[]journeys.WeekDay](size)}
}

// day returns a copy of the cached day under key that the caller may
// reprice: journeys.Book never edits a day's slices in place.
func (c *riderCache) day(key string) (*journeys.Day, bool) {
	if c == nil {
		return nil, false
	}
	d, ok := c.days.get(key)
	if !ok {
		return nil, false
	}
	cp := *d
	return &cp, true
}

// peek returns the cached day under key to read only (not to reprice),
// without promoting it.
func (c *riderCache) peek(key string) (*journeys.Day, bool) {
	if c == nil {
		return nil, false
	}
	if d, ok := c.days.cur[key]; ok {
		return d, true
	}
	d, ok := c.days.old[key]
	return d, ok
}

// week returns a copy of the cached week under key.
func (c *riderCache) week(key string) ([]journeys.WeekDay, bool) {
	if c == nil {
		return nil, false
	}
	w, ok := c.weeks.get(key)
	if !ok {
		return nil, false
	}
	return slices.Clone(w), true
}

// install takes over a committed batch's days and weeks.
func (c *riderCache) install(rb *riderBatch) {
	if c == nil {
		return
	}
	for k, d := range rb.days {
		c.days.put(k, d)
	}
	for k, w := range rb.weeks {
		c.weeks.put(k, w)
	}
}

// reset empties the cache: it may hold days of a batch that did not commit.
func (c *riderCache) reset() {
	if c == nil {
		return
	}
	c.days = newGenerations[*journeys.Day](2 * c.days.half)
	c.weeks = newGenerations[[]journeys.WeekDay](2 * c.weeks.half)
}

// len is how many days the cache holds.
func (c *riderCache) len() int {
	if c == nil {
		return 0
	}
	return len(c.days.cur) + len(c.days.old)
}

type generations[V any] struct {
	half     int
	cur, old map[string]V
}

func newGenerations[V any](size int) generations[V] {
	half := max(size/2, 1)
	return generations[V]{half: half, cur: make(map[string]V, half)}
}

func (g *generations[V]) get(k string) (V, bool) {
	if v, ok := g.cur[k]; ok {
		return v, true
	}
	v, ok := g.old[k]
	if ok {
		delete(g.old, k)
		g.put(k, v)
	}
	return v, ok
}

func (g *generations[V]) put(k string, v V) {
	if _, ok := g.cur[k]; !ok && len(g.cur) >= g.half {
		g.old, g.cur = g.cur, make(map[string]V, g.half)
	}
	g.cur[k] = v
}
