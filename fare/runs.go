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
	stops  map[uint64]context.CancelFunc // of the Runs not yet returned
	next   uint64
	wg     sync.WaitGroup
	closed bool
}

// ErrClosed is Runs.Start's error after Close.
var ErrClosed = errors.New("closed")

// ErrRunning is Runs.StartOnly's error while another Run has not returned.
var ErrRunning = errors.New("already running")

// Start registers a Run: it returns ctx with a cancel Close calls, and done
// for the Run to call when it has returned (deferred). After Close it
// returns ErrClosed.
func (r *Runs) Start(ctx context.Context) (context.Context, func(), error) {
	return r.start(ctx, false)
}

// StartOnly is Start for a component whose Run must not run twice at once
// (its state is the one Run's): while another has not returned it returns
// ErrRunning.
func (r *Runs) StartOnly(ctx context.Context) (context.Context, func(), error) {
	return r.start(ctx, true)
}

func (r *Runs) start(ctx context.Context, only bool) (context.Context, func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ctx, func() {}, ErrClosed
	}
	if only && len(r.stops) > 0 {
		return ctx, func() {}, ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	if r.stops == nil {
		r.stops = map[uint64]context.CancelFunc{}
	}
	id := r.next
	r.next++
	r.stops[id] = cancel
	r.wg.Add(1)
	return ctx, func() {
		cancel()
		r.mu.Lock()
		delete(r.stops, id) // a Run restarted in a loop leaves nothing behind
		r.mu.Unlock()
		r.wg.Done()
	}, nil
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
