package simulator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestBillingWait: the wait for billing ends when every rider day is
// billed; its bound grows with the rider days to bill; billing that
// stalls leaves the days unbilled for the report's guarantee to show,
// while a bound reached as the count still falls is an error that says
// so; an interrupt ends it at once.
func TestBillingWait(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	// falling counts down from n by one a read; stuck stays at n.
	falling := func(n int) func() (int, error) {
		return func() (int, error) { n = max(n-1, 0); return n, nil }
	}
	stuck := func(n int) func() (int, error) { return func() (int, error) { return n, nil } }
	ms := time.Millisecond
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		w        billingWait
		unbilled func() (int, error)
		left     int
		err      string // "" for none
	}{
		{"billed", context.Background(), billingWait{base: time.Minute, stalled: time.Minute, window: time.Second, poll: ms}, falling(20), 0, ""},
		// 100 days at 10 ms each: 1 s, where the base alone would have
		// ended the wait before the first read.
		{"bound grows with the days", context.Background(), billingWait{perDay: 10 * ms, stalled: time.Minute, window: time.Second, poll: ms}, falling(100), 0, ""},
		{"stalled", context.Background(), billingWait{base: time.Minute, stalled: 100 * ms, window: time.Second, poll: 5 * ms}, stuck(7), 7, ""},
		{"bound passed, not falling", context.Background(), billingWait{base: 50 * ms, stalled: time.Minute, window: 20 * ms, poll: 5 * ms}, stuck(7), 7, ""},
		{"bound passed, still falling", context.Background(), billingWait{base: 200 * ms, stalled: time.Minute, window: time.Second, poll: 5 * ms}, falling(1 << 30), -1,
			"timed out waiting for billing after 200ms ("},
		{"interrupted", canceled, billingWait{base: time.Minute, stalled: time.Minute, window: time.Second, poll: ms}, stuck(3), 3, "interrupted waiting for billing (3 rider days left)"},
	} {
		left, err := tc.w.wait(tc.ctx, tc.unbilled)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.err)
		case tc.left >= 0 && left != tc.left:
			t.Errorf("%s: %d rider days left, want %d", tc.name, left, tc.left)
		}
		if tc.name == "bound passed, still falling" && err != nil && !strings.Contains(err.Error(), "still falling at") {
			t.Errorf("%s: %v, want the rate it still falls at", tc.name, err)
		}
		if tc.ctx.Err() != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v, want context.Canceled", tc.name, err)
		}
	}
}

// TestPeakStepJudge: a step is within the objective only with every tap
// confirmed, p99 within the objective and clearing's applied rate at least
// MinAppliedShare of the offer; Failed says which rule broke.
func TestPeakStepJudge(t *testing.T) {
	lat := func(p99 float64) map[string]float64 {
		return map[string]float64{"p50": p99 / 4, "p90": p99 / 2, "p99": p99, "max": 2 * p99}
	}
	for _, tc := range []struct {
		name   string
		step   PeakStep
		failed string // "" within the objective
	}{
		{"kept", PeakStep{OfferedRate: 1000, Taps: 60000, GeneratedRate: 1000, AppliedRate: 990, ConfirmLatencyMs: lat(120)}, ""},
		{"exactly 95%", PeakStep{OfferedRate: 1000, Taps: 60000, GeneratedRate: 1000, AppliedRate: 950, ConfirmLatencyMs: lat(120)}, ""},
		{"p99 above", PeakStep{OfferedRate: 1000, Taps: 60000, GeneratedRate: 1000, AppliedRate: 990, ConfirmLatencyMs: lat(1200)}, "p99 1200 ms above the objective 1000 ms"},
		{"unconfirmed", PeakStep{OfferedRate: 1000, Taps: 60000, GeneratedRate: 1000, AppliedRate: 990, ConfirmLatencyMs: lat(120), Unconfirmed: 3}, "3 of 60000 taps unconfirmed"},
		{"fell behind, caught up after", PeakStep{OfferedRate: 1000, Taps: 60000, GeneratedRate: 1000, AppliedRate: 900, ConfirmLatencyMs: lat(800)},
			"clearing applied 900 of 1000 taps/s offered within the step (below 95%; the terminals took 1000/s)"},
		{"no taps", PeakStep{OfferedRate: 1000}, "no taps"},
	} {
		s := tc.step
		s.judge(time.Second)
		if s.WithinObjective != (tc.failed == "") || !strings.Contains(s.Failed, tc.failed) || (tc.failed == "") != (s.Failed == "") {
			t.Errorf("%s: within %v, failed %q; want failed %q", tc.name, s.WithinObjective, s.Failed, tc.failed)
		}
	}
}
