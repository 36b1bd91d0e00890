package fare

import (
	"context"
	"errors"
	"sync"
)

// Runs tracks a component's Run calls so that its Close can stop them and
// wait for them before it closes what they use (a caller that returns early
// must not close a store under a running Run). The zero value is ready.
type Runs struct {
	mu     sync.Mutex
	stops  []context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

// ErrClosed is Runs.Start's error after Close.
var ErrClosed = errors.New("closed")

// Start registers a Run: it returns ctx with a cancel Close calls, and done
// for the Run to call when it has returned (deferred). After Close it
// returns ErrClosed.
func (r *Runs) Start(ctx context.Context) (context.Context, func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ctx, func() {}, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	r.stops = append(r.stops, cancel)
	r.wg.Add(1)
	return ctx, func() { cancel(); r.wg.Done() }, nil
}

// Close stops every Run started and waits for them; later Starts fail.
func (r *Runs) Close() {
	r.mu.Lock()
	r.closed = true
	for _, stop := range r.stops {
		stop()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
