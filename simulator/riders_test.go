package simulator

import (
	"testing"
	"time"
)

// TestCityClockStandsUntilStarted: setting a city up takes wall seconds
// that, at a city's speed, would be hours of its first travel day gone
// before the first tap. The clock stands at the city's start until the
// traffic starts it, then runs at its speed; starting twice changes
// nothing, and a jump moves it ahead.
func TestCityClockStandsUntilStarted(t *testing.T) {
	cityStart := time.Date(2026, 12, 2, 5, 0, 0, 0, time.FixedZone("CET", 3600))
	c := newCityClock(cityStart, 3600) // an hour of city a wall second
	time.Sleep(20 * time.Millisecond)  // setup: 72 city seconds if it ran
	if got := c.Now(); !got.Equal(cityStart) {
		t.Fatalf("before start the city is at %s, want %s", got, cityStart)
	}
	c.start()
	time.Sleep(20 * time.Millisecond)
	got := c.Now()
	if el := got.Sub(cityStart); el < 60*time.Second || el > time.Hour {
		t.Fatalf("20 ms after start the city moved %s, want about 72 s", el)
	}
	c.start() // no restart
	if again := c.Now(); again.Before(got) {
		t.Fatalf("a second start moved the city back: %s after %s", again, got)
	}
	c.jumpTo(cityStart.Add(24 * time.Hour))
	if now := c.Now(); now.Before(cityStart.Add(24 * time.Hour)) {
		t.Fatalf("after a jump to the next day the city is at %s", now)
	}
}

// TestCityClockHolds: held at a time, the clock runs up to it and stands
// there (the last travel day does not end while the outboxes drain); a
// jump releases it and it runs on from the jump's time.
func TestCityClockHolds(t *testing.T) {
	cityStart := time.Date(2026, 12, 2, 5, 0, 0, 0, time.FixedZone("CET", 3600))
	c := newCityClock(cityStart, 3600)
	hold := cityStart.Add(36 * time.Second) // 10 ms of wall
	c.holdAt(hold)
	c.start()
	time.Sleep(40 * time.Millisecond)
	if got := c.Now(); !got.Equal(hold) {
		t.Fatalf("held at %s, the city is at %s", hold, got)
	}
	next := cityStart.Add(24 * time.Hour)
	c.jumpTo(next)
	got := c.Now()
	if got.Before(next) || got.Sub(next) > time.Hour {
		t.Fatalf("after a jump to %s the city is at %s", next, got)
	}
	time.Sleep(20 * time.Millisecond)
	if later := c.Now(); later.Sub(got) < 60*time.Second {
		t.Fatalf("released, the city moved %s in 20 ms, want about 72 s", later.Sub(got))
	}
	// Never back: a jump behind the clock leaves it where it is.
	now := c.Now()
	c.jumpTo(cityStart)
	if back := c.Now(); back.Before(now) {
		t.Fatalf("a jump back moved the city from %s to %s", now, back)
	}
}
