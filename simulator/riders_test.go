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
