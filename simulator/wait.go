package simulator

import (
	"context"
	"fmt"
	"time"

	"github.com/faregate/faregate/clearing"
)

// pause waits d or until ctx is done, and returns ctx's error then: every
// wait of a run ends at once on an interrupt.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// billingWait bounds the wait, at the end of a run, until clearing has
// billed every rider day that is over. A large city has many rider days to
// bill, so the bound grows with them; and a wait that ends while billing
// still makes progress is no broken guarantee but too short a wait, which
// wait reports as an error rather than as unbilled days.
type billingWait struct {
	// base plus perDay for each rider day unbilled when the wait began
	// bound the wait.
	base, perDay time.Duration
	// stalled ends the wait early when the count has not fallen for that
	// long: billing stopped, and the unbilled days are a broken guarantee.
	stalled time.Duration
	// window is how far back "still falling" looks; poll how often the
	// count is read.
	window, poll time.Duration
}

// billDayClose ends the travel day (end moves the city's clock past the
// cut-over and the billing delay), waits until every rider day is billed
// and records in rep how many there were and how long billing took.
func billDayClose(ctx context.Context, cl *clearing.Clearing, rep *Report, end func()) error {
	// Polled every 50 ms while clearing bills: the open-day index's keys
	// only (reading every payment and billing record each time took a
	// tenth of the machine from the billing it waits for).
	unbilled := cl.Store().UnbilledDays
	open, err := unbilled()
	if err != nil {
		return fmt.Errorf("unbilled rider days: %w", err)
	}
	start := time.Now()
	end()
	if _, err := defaultBillingWait.wait(ctx, unbilled); err != nil {
		return err
	}
	rep.DayCloseRiderDays, rep.DayCloseBillingSeconds = open, time.Since(start).Seconds()
	return nil
}

// defaultBillingWait is a run's: a minute, plus 10 ms per rider day.
var defaultBillingWait = billingWait{base: time.Minute, perDay: 10 * time.Millisecond, stalled: time.Minute, window: 10 * time.Second, poll: 50 * time.Millisecond}

// wait reads the unbilled rider days until none are left and returns the
// last count. It returns the count and no error when billing stalled
// (nothing billed for w.stalled): the caller's report shows the days
// unbilled; an error when the bound passed while the count still fell
// within w.window, or when ctx is done.
func (w billingWait) wait(ctx context.Context, unbilled func() (int, error)) (int, error) {
	type sample struct {
		at time.Time
		n  int
	}
	n, err := unbilled()
	if err != nil {
		return 0, fmt.Errorf("unbilled rider days: %w", err)
	}
	start := time.Now()
	limit := w.base + time.Duration(n)*w.perDay
	lastFall := start
	// Samples of the last window, oldest first, for the rate of billing.
	recent := []sample{{start, n}}
	for n > 0 {
		if err := pause(ctx, w.poll); err != nil {
			return n, fmt.Errorf("interrupted waiting for billing (%d rider days left): %w", n, err)
		}
		next, err := unbilled()
		if err != nil {
			return n, fmt.Errorf("unbilled rider days: %w", err)
		}
		now := time.Now()
		if next < n {
			lastFall = now
		}
		n = next
		recent = append(recent, sample{now, n})
		for len(recent) > 2 && now.Sub(recent[1].at) >= w.window {
			recent = recent[1:]
		}
		switch {
		case n == 0:
		case now.Sub(lastFall) >= w.stalled:
			return n, nil
		case now.Sub(start) >= limit:
			if now.Sub(lastFall) < w.window {
				first := recent[0]
				rate := float64(first.n-n) / now.Sub(first.at).Seconds()
				return n, fmt.Errorf("timed out waiting for billing after %s (%d rider days left, still falling at %.1f/s)", limit.Round(time.Millisecond), n, rate)
			}
			return n, nil
		}
	}
	return 0, nil
}
