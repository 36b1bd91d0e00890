package fare

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRunsCloseWaits: Close cancels every Run started and returns only once
// each has returned; a Start after Close is refused.
func TestRunsCloseWaits(t *testing.T) {
	var r Runs
	returned := make(chan int, 2)
	for i := range 2 {
		ctx, done, err := r.Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer done()
			<-ctx.Done()
			time.Sleep(20 * time.Millisecond) // a Run's own cleanup
			returned <- i
		}()
	}
	r.Close()
	if len(returned) != 2 {
		t.Fatalf("Close returned with %d of 2 runs returned", len(returned))
	}
	if _, _, err := r.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("start after close: %v, want ErrClosed", err)
	}
	r.Close() // again: nothing to wait for
}

// TestRunsStartOnly: a component whose Run keeps its state for one Run
// refuses a second while the first has not returned (two terminal Runs
// would race on its keys and run two senders), and takes one after; a
// Run that returned leaves nothing for Close (a Run restarted in a loop
// grew the list of cancels without end).
func TestRunsStartOnly(t *testing.T) {
	var r Runs
	_, done, err := r.StartOnly(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.StartOnly(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("a second Run while the first runs: %v, want ErrRunning", err)
	}
	done()
	for range 1000 {
		_, done, err := r.StartOnly(context.Background())
		if err != nil {
			t.Fatalf("a Run after the last returned: %v", err)
		}
		done()
	}
	r.mu.Lock()
	left := len(r.stops)
	r.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d cancels kept after every Run returned", left)
	}
	r.Close()
}
