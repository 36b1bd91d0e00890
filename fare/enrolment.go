package fare

import (
	"fmt"
	"time"
)

// Concession enrolments. Clearing keeps, per rider, the history of their
// enrolments into rider categories (who approved each, from when until
// when); what the history says at any instant is a list of periods, each
// naming the category the rider travels in from From (inclusive) until
// Until (exclusive). Outside every period the rider travels in the feed's
// default category. Clearing prices by these periods and sends them to the
// gates (GateEntry), so the gate applies the same rule as the back office:
// CategoryAt.

// MaxEnrolmentPeriods bounds the periods one medium's entry carries: the
// latest ones (the current and coming ones; older ones no longer matter at a
// gate).
const MaxEnrolmentPeriods = 16

// EnrolmentPeriod is one stretch of time in which a rider travels in a
// rider category other than the default.
type EnrolmentPeriod struct {
	From     time.Time `json:"from"`
	Until    time.Time `json:"until"`
	Category string    `json:"category"`
}

// CategoryAt is the category periods (ascending and disjoint, as
// ValidatePeriods requires) give at t: the category of the period with
// From <= t < Until, or "" (the default category) when none covers t.
func CategoryAt(periods []EnrolmentPeriod, t time.Time) string {
	for _, p := range periods {
		if !t.Before(p.From) && t.Before(p.Until) {
			return p.Category
		}
	}
	return ""
}

// ValidatePeriods checks that periods are ascending, disjoint, non-empty
// stretches with a valid category id, at most MaxEnrolmentPeriods of them,
// whole seconds (what the gate entry encoding carries).
func ValidatePeriods(periods []EnrolmentPeriod) error {
	if len(periods) > MaxEnrolmentPeriods {
		return fmt.Errorf("%d enrolment periods, at most %d", len(periods), MaxEnrolmentPeriods)
	}
	for i, p := range periods {
		if err := ValidateID(p.Category); err != nil {
			return fmt.Errorf("enrolment period %d: category %q: %w", i+1, p.Category, err)
		}
		if !p.From.Before(p.Until) {
			return fmt.Errorf("enrolment period %d: from %s is not before until %s", i+1, p.From.Format(time.RFC3339), p.Until.Format(time.RFC3339))
		}
		if p.From.Nanosecond() != 0 || p.Until.Nanosecond() != 0 {
			return fmt.Errorf("enrolment period %d: times must be whole seconds", i+1)
		}
		if i > 0 && p.From.Before(periods[i-1].Until) {
			return fmt.Errorf("enrolment period %d starts at %s, before period %d ends", i+1, p.From.Format(time.RFC3339), i)
		}
	}
	return nil
}
