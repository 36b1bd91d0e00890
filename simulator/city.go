// Package simulator drives a city of real terminals against a real clearing
// house: operators, lines, stops, gates and passengers with rush hours, to
// measure throughput and latency and to check the guarantees end to end.
package simulator

import (
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// City is the static shape of a simulated city.
type City struct {
	Currency  string
	Operators []Operator
	// Passengers are identified by card tokens; a share ride by face.
	Passengers []Passenger
	// Denied are card tokens on every terminal's deny list.
	Denied map[string]struct{}
	// RollingWeek: the weekly caps are rolling weeks (CityConfig).
	RollingWeek bool
}

// Operator runs one mode with its stops and gates.
type Operator struct {
	ID       string
	Name     string
	FlatFare fare.Amount
	// TapOut is true for gated systems (metro): passengers tap in and out.
	TapOut bool
	Stops  []Stop
}

// Stop is a GTFS stop with its gates; each gate is one terminal.
type Stop struct {
	ID        string
	Terminals []TerminalSpec
}

// TerminalSpec is one terminal with its signing key.
type TerminalSpec struct {
	ID  string
	Key ed25519.PrivateKey
}

// Passenger is one rider.
type Passenger struct {
	Token         string
	Media         fare.MediaKind
	RiderCategory string
}

// CityConfig sizes a generated city.
type CityConfig struct {
	Operators       int
	StopsPerOp      int
	GatesPerStop    int
	Passengers      int
	DeniedShare     float64 // share of passengers on the deny list
	FaceShare       float64 // share riding by face
	ConcessionShare float64
	// RollingWeek makes the feed's weekly caps rolling weeks (seven days
	// from the first journey they charge, fare_caps.txt cap_period 2)
	// instead of calendar weeks.
	RollingWeek bool
	Seed        uint64
}

// NewCity generates a deterministic city from cfg (keys included).
func NewCity(cfg CityConfig) *City {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	modes := []struct {
		id, name string
		fare     fare.Amount
		tapOut   bool
	}{
		{"metro", "City Metro", 250, true},
		{"bus", "City Bus", 180, false},
		{"tram", "Tram Company", 200, false},
		{"rail", "Suburban Rail", 320, true},
		{"ferry", "Harbour Ferry", 400, false},
	}
	c := &City{Currency: "EUR", Denied: make(map[string]struct{}), RollingWeek: cfg.RollingWeek}
	for i := 0; i < cfg.Operators; i++ {
		m := modes[i%len(modes)]
		id := m.id
		if i >= len(modes) {
			id = fmt.Sprintf("%s%d", m.id, i/len(modes)+1)
		}
		op := Operator{ID: id, Name: m.name, FlatFare: m.fare, TapOut: m.tapOut}
		for s := 0; s < cfg.StopsPerOp; s++ {
			st := Stop{ID: fmt.Sprintf("%s-s%02d", id, s+1)}
			for g := 0; g < cfg.GatesPerStop; g++ {
				seed := make([]byte, ed25519.SeedSize)
				for j := range seed {
					seed[j] = byte(rng.Uint32())
				}
				st.Terminals = append(st.Terminals, TerminalSpec{
					ID:  fmt.Sprintf("%s-g%d", st.ID, g+1),
					Key: ed25519.NewKeyFromSeed(seed),
				})
			}
			op.Stops = append(op.Stops, st)
		}
		c.Operators = append(c.Operators, op)
	}
	for p := 0; p < cfg.Passengers; p++ {
		pa := Passenger{Token: fmt.Sprintf("card-%06d", p), Media: fare.Card, RiderCategory: "adult"}
		if rng.Float64() < cfg.FaceShare {
			pa = Passenger{Token: fmt.Sprintf("subject-%06d", p), Media: fare.Face, RiderCategory: "adult"}
		}
		if rng.Float64() < cfg.ConcessionShare {
			pa.RiderCategory = "concession"
		}
		if pa.Media == fare.Card && rng.Float64() < cfg.DeniedShare {
			c.Denied[pa.Token] = struct{}{}
		}
		c.Passengers = append(c.Passengers, pa)
	}
	return c
}

// Registry is the public terminal registry of the city, each terminal's
// entry with its key's proof of its registration.
func (c *City) Registry() (*clearing.Registry, error) {
	r := &clearing.Registry{Currency: c.Currency}
	for _, op := range c.Operators {
		r.Operators = append(r.Operators, clearing.OperatorConfig{ID: op.ID, Name: op.Name, FlatFare: op.FlatFare})
		for _, st := range op.Stops {
			for _, t := range st.Terminals {
				e, err := clearing.NewTerminalEntry(t.Key, t.ID, op.ID, st.ID)
				if err != nil {
					return nil, fmt.Errorf("city registry: %w", err)
				}
				r.Terminals = append(r.Terminals, e)
			}
		}
	}
	return r, nil
}

// TerminalCount is the number of gates in the city.
func (c *City) TerminalCount() int {
	n := 0
	for _, op := range c.Operators {
		for _, st := range op.Stops {
			n += len(st.Terminals)
		}
	}
	return n
}
