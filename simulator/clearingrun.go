package simulator

import (
	"context"
	"errors"
	"fmt"

	"github.com/faregate/faregate/clearing"
)

// clearingRun is clearing's Run on a goroutine of the simulation's.
type clearingRun struct {
	ctx  context.Context // Run's; ends with stop
	stop context.CancelFunc
	done chan error
}

// startClearing runs cl until stop. A clearing that stops on its own (its
// store failed) aborts the simulation with why: the traffic and the drain
// would otherwise go on against nothing.
func startClearing(ctx context.Context, cl *clearing.Clearing, abort context.CancelCauseFunc) *clearingRun {
	r := &clearingRun{done: make(chan error, 1)}
	r.ctx, r.stop = context.WithCancel(ctx)
	go func() {
		err := cl.Run(r.ctx)
		if err != nil {
			abort(fmt.Errorf("clearing stopped: %w", err))
		}
		r.done <- err
	}()
	return r
}

// wait stops clearing and returns what its Run returned.
func (r *clearingRun) wait() error {
	r.stop()
	return <-r.done
}

// withCause puts in front of err why ctx was cancelled, when it was not
// by its parent or a signal (clearing stopping on its own, say).
func withCause(ctx context.Context, err error) error {
	cause := context.Cause(ctx)
	if err == nil || cause == nil || errors.Is(cause, context.Canceled) || errors.Is(err, cause) {
		return err
	}
	return fmt.Errorf("%w; then %w", cause, err)
}
