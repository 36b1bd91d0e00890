package simulator

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/faregate/faregate/clearing"
)

// Acquirer is a card acquirer for simulations and tests: no real payment
// service is reachable from here. It declines a charge with probability
// DeclineRate, decided from the charge's idempotency key and the seed (so
// a run is reproducible and a key asked again gets the same answer), and
// approves every charge of a token in Recovered. It is safe for concurrent
// use.
type Acquirer struct {
	// DeclineRate is the probability that a charge is declined (0 to 1).
	DeclineRate float64
	Seed        uint64

	mu        sync.Mutex
	answers   map[string]clearing.ChargeResult
	recovered map[string]bool
	asked     int
}

// NewAcquirer returns an acquirer declining charges at rate.
func NewAcquirer(rate float64, seed uint64) (*Acquirer, error) {
	if rate < 0 || rate > 1 {
		return nil, fmt.Errorf("decline rate %v: want 0 to 1", rate)
	}
	return &Acquirer{DeclineRate: rate, Seed: seed, answers: map[string]clearing.ChargeResult{}, recovered: map[string]bool{}}, nil
}

// Recover makes every later charge of token succeed (the rider updated
// their card).
func (a *Acquirer) Recover(token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recovered[token] = true
}

// Asked is how many distinct charges were asked for.
func (a *Acquirer) Asked() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.asked
}

// Charge implements clearing.Acquirer.
func (a *Acquirer) Charge(ctx context.Context, req clearing.ChargeRequest) (clearing.ChargeResult, error) {
	if err := ctx.Err(); err != nil {
		return clearing.ChargeResult{}, err
	}
	if req.Key == "" || req.Amount <= 0 {
		return clearing.ChargeResult{}, fmt.Errorf("simulated acquirer: charge of %d with key %q refused", req.Amount, req.Key)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.answers[req.Key]; ok {
		return r, nil
	}
	a.asked++
	h := sha256.Sum256(fmt.Appendf(nil, "%d\x00%s", a.Seed, req.Key))
	u := float64(binary.BigEndian.Uint64(h[:8])>>11) / (1 << 53)
	ref := fmt.Sprintf("sim-%x", h[8:16])
	r := clearing.ChargeResult{Approved: true, Amount: req.Amount, Reference: ref}
	if u < a.DeclineRate && !a.recovered[req.Token] {
		r = clearing.ChargeResult{Reference: ref, Decline: "51 insufficient funds (simulated)"}
	}
	a.answers[req.Key] = r
	return r, nil
}
