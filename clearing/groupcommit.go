package clearing

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// groupCommit writes what concurrent callers queue in groups, one synced
// transaction for many. Whoever takes the write lock writes every item
// queued by then (at most max) with one call of write; the others find
// theirs done when they take the lock in turn, and leave at once. A group
// whose write fails is written again one item at a time, so each caller
// learns only its own outcome.
//
// Why: the callers (the collector's billing workers) each wanted one
// synced transaction, and a day's close was bounded by the disk's sync
// rate (BENCHMARKS.md, "Day-close billing").
type groupCommit[T any] struct {
	mu      sync.Mutex
	waiting []*groupItem[T]
	groups  atomic.Uint64 // groups written (tests read it)
}

// groupItem is one caller's item and, once written, its outcome.
type groupItem[T any] struct {
	v    T
	done bool
	err  error
}

// errGroupAbandoned: a caller's item was taken by a writer that never
// finished (it panicked).
var errGroupAbandoned = errors.New("taken by a write that failed to finish")

// add queues v and returns once a group holding it was written, with its
// outcome. lock is held while a group is written (other writers of the
// same store may hold it too); what names the items in the errors of the
// grouping itself.
func (g *groupCommit[T]) add(what string, v T, lock *sync.Mutex, max int, write func([]T) error) error {
	it := &groupItem[T]{v: v}
	g.mu.Lock()
	g.waiting = append(g.waiting, it)
	g.mu.Unlock()
	lock.Lock()
	defer lock.Unlock()
	for {
		g.mu.Lock()
		if it.done {
			g.mu.Unlock()
			return it.err
		}
		// The oldest first: ours is among them by the last round.
		n := min(len(g.waiting), max)
		if n == 0 {
			g.mu.Unlock()
			return fmt.Errorf("%s: %w", what, errGroupAbandoned)
		}
		group := slices.Clone(g.waiting[:n])
		g.waiting = slices.Delete(g.waiting, 0, n)
		g.mu.Unlock()
		g.writeGroup(what, group, write)
	}
}

// waitingNow is how many items wait.
func (g *groupCommit[T]) waitingNow() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting)
}

// writeGroup writes group (the caller holds the write lock) and marks
// each item done with its outcome, even if the write panics.
func (g *groupCommit[T]) writeGroup(what string, group []*groupItem[T], write func([]T) error) {
	errs := make([]error, len(group))
	defer func() {
		if p := recover(); p != nil {
			for i := range errs {
				if errs[i] == nil {
					errs[i] = fmt.Errorf("%s: a write panicked, this one may or may not be written: %v", what, p)
				}
			}
			defer panic(p)
		}
		g.mu.Lock()
		for i, it := range group {
			it.done, it.err = true, errs[i]
		}
		g.mu.Unlock()
	}()
	g.groups.Add(1)
	vs := make([]T, len(group))
	for i, it := range group {
		vs[i] = it.v
	}
	err := write(vs)
	if err != nil && len(group) > 1 {
		for i := range vs {
			errs[i] = write(vs[i : i+1])
		}
		return
	}
	for i := range errs {
		errs[i] = err
	}
}
