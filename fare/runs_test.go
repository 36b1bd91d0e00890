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
