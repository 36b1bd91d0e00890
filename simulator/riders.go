package simulator

import (
	"container/heap"
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// cityClock is the simulated city's time: it runs Speed times faster than
// the wall clock from CityStart, so a run of a minute covers whole travel
// days (rush hours, fare-day cut-overs, billing). Terminals stamp taps with
// it and clearing closes fare days by it; everything operational (periods,
// latencies) stays on the wall clock.
//
// It stands at CityStart until start: setting up a city (models, stores,
// terminals) takes seconds that would otherwise be city hours gone before
// the first tap. It stands again at the time holdAt names once it gets
// there, until the next jump: the run's last travel day does not end (and
// its rider days are not billed) while the outboxes drain.
type cityClock struct {
	cityStart time.Time
	speed     float64
	wallStart atomic.Int64 // Unix nanoseconds the city started; 0 until then
	skip      atomic.Int64 // city nanoseconds jumped ahead
	hold      atomic.Int64 // city nanoseconds after cityStart it stands at; 0: none
}

func newCityClock(cityStart time.Time, speed float64) *cityClock {
	return &cityClock{cityStart: cityStart, speed: speed}
}

// start sets the city's time running from now (once; later calls do
// nothing).
func (c *cityClock) start() { c.wallStart.CompareAndSwap(0, time.Now().UnixNano()) }

// Now is the city's time.
func (c *cityClock) Now() time.Time {
	off := c.elapsed() + c.skip.Load()
	if h := c.hold.Load(); h != 0 && off > h {
		off = h
	}
	return c.cityStart.Add(time.Duration(off))
}

// elapsed is the city nanoseconds run since start (0 before it), jumps and
// holds aside.
func (c *cityClock) elapsed() int64 {
	if ws := c.wallStart.Load(); ws != 0 {
		return int64(float64(time.Now().UnixNano()-ws) * c.speed)
	}
	return 0
}

// holdAt makes the clock stand at t once it gets there, until the next
// jumpTo.
func (c *cityClock) holdAt(t time.Time) {
	c.hold.Store(max(int64(t.Sub(c.cityStart)), 1))
}

// wall is how long d of city time takes on the wall clock.
func (c *cityClock) wall(d time.Duration) time.Duration { return time.Duration(float64(d) / c.speed) }

// jumpTo moves the city's time forward to t (never back) and lets it run
// from there, released from a hold.
func (c *cityClock) jumpTo(t time.Time) {
	if now := c.Now(); t.Before(now) {
		t = now
	}
	// The skip first: until the hold goes, the clock still stands at it.
	c.skip.Store(int64(t.Sub(c.cityStart)) - c.elapsed())
	c.hold.Store(0)
}

// rateAt is the tap rate at a city hour of day: rush hours peak at 08:00
// and 17:30, falling to a quarter of the peak between them and less at
// night.
func rateAt(peak, hour float64) float64 {
	g := func(c, w float64) float64 { return math.Exp(-math.Pow((hour-c)/w, 2)) }
	base := 0.25
	if hour < 6 || hour >= 23 {
		base = 0.05
	}
	return peak * (base + (1-base)*math.Max(g(8, 1.3), g(17.5, 1.6)))
}

// rider is a passenger's travel habits: where they live and work.
type rider struct {
	p                 Passenger
	homeBus, homeRail int // stop indexes on the bus and the gated operator
	work              int // station of work on the gated operator
	heavy             bool
	noExit            float64 // probability of leaving without tapping out
	// face: enrolled for face-only travel at the stops of the commute
	// (faceStops), the only stops such a rider travels between.
	face bool
}

// step is one tap of a journey, due at a wall time.
type step struct {
	due  time.Time
	seq  uint64 // ties broken by order of scheduling
	r    *rider
	t    *simTerminal
	dir  fare.Direction
	then []plannedTap // the journey's remaining taps
}

// plannedTap is a tap of a journey not yet due: at which terminal, and how
// long (city time) after the previous one.
type plannedTap struct {
	t     *simTerminal
	dir   fare.Direction
	after time.Duration
}

type stepHeap []*step

func (h stepHeap) Len() int { return len(h) }
func (h stepHeap) Less(i, j int) bool {
	if c := h[i].due.Compare(h[j].due); c != 0 {
		return c < 0
	}
	return h[i].seq < h[j].seq
}
func (h stepHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *stepHeap) Push(x any)   { *h = append(*h, x.(*step)) }
func (h *stepHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

// generator makes the city's riders travel: home to work and back with a
// bus-to-metro transfer, metro rides, single bus and tram rides, some
// entries never exited, a few heavy riders who reach the fare caps.
type generator struct {
	city  *City
	terms []*simTerminal
	rng   *rand.Rand
	clock *cityClock

	riders []rider
	heavy  []int
	// faces are the enrolled face riders (faceCity.enrol), who make
	// faceShare of the journeys.
	faces     []int
	faceShare float64
	byStop    map[string][]*simTerminal
	gated     *Operator // the metro: entries and exits
	feeder    *Operator // the bus: first leg of a commute
	others    []*Operator

	mu      sync.Mutex
	next    []*step // follow-up taps scheduled by the workers
	seq     uint64
	journey atomic.Uint64
}

func newGenerator(city *City, seed uint64, clock *cityClock) *generator {
	g := &generator{city: city, rng: rand.New(rand.NewPCG(seed, 1)), clock: clock, byStop: map[string][]*simTerminal{}}
	for i := range city.Operators {
		op := &city.Operators[i]
		switch {
		case op.TapOut && g.gated == nil:
			g.gated = op
		case !op.TapOut && g.feeder == nil:
			g.feeder = op
		default:
			g.others = append(g.others, op)
		}
	}
	g.riders = make([]rider, len(city.Passengers))
	for i, p := range city.Passengers {
		r := rider{p: p, noExit: 0.03}
		if g.feeder != nil {
			r.homeBus = g.rng.IntN(len(g.feeder.Stops))
		}
		if g.gated != nil {
			r.homeRail = g.rng.IntN(len(g.gated.Stops))
			r.work = g.rng.IntN(len(g.gated.Stops))
			if r.work == r.homeRail {
				r.work = (r.work + 1 + g.rng.IntN(max(len(g.gated.Stops)-1, 1))) % len(g.gated.Stops)
			}
		}
		if g.rng.Float64() < 0.04 {
			r.heavy = true
			g.heavy = append(g.heavy, i)
		}
		g.riders[i] = r
	}
	return g
}

// attach gives the generator the city's running terminals.
func (g *generator) attach(terms []*simTerminal) {
	g.terms = terms
	for _, t := range terms {
		g.byStop[t.stop.ID] = append(g.byStop[t.stop.ID], t)
	}
}

// faceStops are the stops of r's commute: home bus stop, home and work
// stations. A face rider is enrolled there and travels only there.
func (g *generator) faceStops(r *rider) []string {
	var stops []string
	if g.feeder != nil {
		stops = append(stops, g.feeder.Stops[r.homeBus].ID)
	}
	if g.gated != nil {
		stops = append(stops, g.gated.Stops[r.homeRail].ID, g.gated.Stops[r.work].ID)
	}
	return stops
}

// gate picks a terminal at a stop.
func (g *generator) gate(op *Operator, stop int) *simTerminal {
	ts := g.byStop[op.Stops[stop].ID]
	return ts[g.rng.IntN(len(ts))]
}

// plan draws one journey of r at city hour h.
func (g *generator) plan(r *rider, h float64) []plannedTap {
	minutes := func(lo, hi int) time.Duration { return time.Duration(lo+g.rng.IntN(hi-lo+1)) * time.Minute }
	var taps []plannedTap
	metro := func(from, to int, after time.Duration) {
		taps = append(taps, plannedTap{g.gate(g.gated, from), fare.Entry, after})
		if g.rng.Float64() >= r.noExit {
			taps = append(taps, plannedTap{g.gate(g.gated, to), fare.Exit, minutes(8, 30)})
		}
	}
	commute := (h < 11 || (h >= 15 && h < 20)) && g.gated != nil
	x := g.rng.Float64()
	if r.face && g.gated != nil {
		// Only between the stops where the rider is enrolled.
		if !commute || g.feeder == nil {
			from, to := r.homeRail, r.work
			if x < 0.5 {
				from, to = to, from
			}
			metro(from, to, 0)
			return taps
		}
		x = 0
	}
	switch {
	case commute && g.feeder != nil && x < 0.6:
		// Home by bus to the metro, then to work (or back in the evening).
		from, to := r.homeRail, r.work
		if h >= 15 {
			from, to = r.work, r.homeRail
		}
		if h < 11 {
			taps = append(taps, plannedTap{g.gate(g.feeder, r.homeBus), fare.Validate, 0})
			metro(from, to, minutes(5, 20))
		} else {
			metro(from, to, 0)
			taps = append(taps, plannedTap{g.gate(g.feeder, r.homeBus), fare.Validate, minutes(3, 15)})
		}
	case g.gated != nil && x < 0.75:
		a := g.rng.IntN(len(g.gated.Stops))
		b := (a + 1 + g.rng.IntN(max(len(g.gated.Stops)-1, 1))) % len(g.gated.Stops)
		metro(a, b, 0)
	default:
		ops := append([]*Operator{}, g.others...)
		if g.feeder != nil {
			ops = append(ops, g.feeder)
		}
		if len(ops) == 0 {
			ops = append(ops, g.gated)
		}
		op := ops[g.rng.IntN(len(ops))]
		if op.TapOut {
			a := g.rng.IntN(len(op.Stops))
			taps = append(taps, plannedTap{g.gate(op, a), fare.Entry, 0}, plannedTap{g.gate(op, (a+1)%len(op.Stops)), fare.Exit, minutes(8, 30)})
		} else {
			taps = append(taps, plannedTap{g.gate(op, g.rng.IntN(len(op.Stops))), fare.Validate, 0})
		}
	}
	return taps
}

// schedule queues a journey's next tap (called from the tap workers).
func (g *generator) schedule(r *rider, rest []plannedTap) {
	if len(rest) == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seq++
	g.next = append(g.next, &step{due: time.Now().Add(g.clock.wall(rest[0].after)), seq: g.seq, r: r, t: rest[0].t, dir: rest[0].dir, then: rest[1:]})
}

// run makes riders travel for cfg.Duration of wall time. tap performs one
// tap, due when it was scheduled (latencies count from then, so a tap that
// waited for a worker is not measured as if it had not), and reports the
// gate's decision; a journey stops at a denied tap.
func (g *generator) run(ctx context.Context, cfg Config, start time.Time, tap func(t *simTerminal, tap terminal.Tap, due time.Time) (fare.Event, bool), progress func(time.Duration)) error {
	type job struct {
		s *step
	}
	jobs := make(chan job, 4096)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				s := j.s
				ev, ok := tap(s.t, terminal.Tap{Gate: gateOf(s.t.ID()), Direction: s.dir, Media: s.r.p.Media, Token: s.r.p.Token, RiderCategory: s.r.p.RiderCategory, Time: g.clock.Now()}, s.due)
				if ok && ev.Decision == fare.Accepted {
					g.schedule(s.r, s.then)
				}
			}
		}()
	}
	defer func() {
		close(jobs)
		wg.Wait()
	}()
	var due stepHeap
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lastProgress, lastTick := start, start
	var owed float64
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			el := now.Sub(start)
			if el >= cfg.Duration {
				return nil
			}
			if now.Sub(lastProgress) >= time.Second {
				lastProgress = now
				progress(el)
			}
			g.mu.Lock()
			for _, s := range g.next {
				heap.Push(&due, s)
			}
			g.next = g.next[:0]
			g.mu.Unlock()
			for due.Len() > 0 && !due[0].due.After(now) {
				jobs <- job{heap.Pop(&due).(*step)}
			}
			city := g.clock.Now()
			h := float64(city.Hour()) + float64(city.Minute())/60
			// Journeys of about 2.2 taps, owed for the time since the last
			// tick (a late tick owes more, rather than the load shrinking).
			// Each is due when it fell due within that time, not now: a
			// tick late behind a full queue would otherwise hide the wait
			// (coordinated omission).
			var dues []time.Time
			dues, owed = journeysDue(lastTick, now, owed, rateAt(cfg.PeakRate, h)/2.2)
			lastTick = now
			for _, dueAt := range dues {
				i := g.rng.IntN(len(g.riders))
				switch x := g.rng.Float64(); {
				case len(g.faces) > 0 && x < g.faceShare:
					// Face riders make the face share of the journeys:
					// fewer people fit the galleries than asked to ride by
					// face, and they commute daily.
					i = g.faces[g.rng.IntN(len(g.faces))]
				case len(g.heavy) > 0 && x < g.faceShare+0.2:
					i = g.heavy[g.rng.IntN(len(g.heavy))]
				}
				r := &g.riders[i]
				taps := g.plan(r, h)
				g.journey.Add(1)
				g.mu.Lock()
				g.seq++
				s := &step{due: dueAt, seq: g.seq, r: r, t: taps[0].t, dir: taps[0].dir, then: taps[1:]}
				g.mu.Unlock()
				jobs <- job{s}
			}
		}
	}
}

// journeysDue spreads the journeys owed between from and now, at perSec
// journeys a second with owed (under one) carried from before, over the
// moments each fell due; it returns those moments and what is owed after.
func journeysDue(from, now time.Time, owed, perSec float64) ([]time.Time, float64) {
	if perSec <= 0 || !now.After(from) {
		return nil, owed
	}
	total := owed + perSec*now.Sub(from).Seconds()
	var dues []time.Time
	for k := 1.0; k <= total; k++ {
		at := from.Add(time.Duration((k - owed) / perSec * float64(time.Second)))
		if at.After(now) {
			at = now
		}
		dues = append(dues, at)
	}
	return dues, total - float64(len(dues))
}

// deniedTaps records the taps gates denied, by token, in city time.
type deniedTaps struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (d *deniedTaps) add(token string, t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.at == nil {
		d.at = map[string][]time.Time{}
	}
	d.at[token] = append(d.at[token], t)
}

// since counts token's denied taps at or after t.
func (d *deniedTaps) since(token string, t time.Time) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, at := range d.at[token] {
		if !at.Before(t) {
			n++
		}
	}
	return n
}

// gateOf is the gate a simulated terminal stands at: the last part of its
// id (metro-s01-g2's is g2), as a station names its gates.
func gateOf(terminal string) string {
	if i := strings.LastIndexByte(terminal, '-'); i >= 0 && i+1 < len(terminal) {
		return terminal[i+1:]
	}
	return "g1"
}
