package simulator

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/nats-io/nkeys"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/ledger"
)

// cityVerifiers are the verifier partitions of a run (clearing's
// VerifierPartitions): one verifier per partition, each with its own NATS
// user, sharing the run's ledger, stopped with the run.
type cityVerifiers struct {
	keys   []clearing.VerifierKey
	seeds  []string
	vs     []*clearing.Verifier
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// newCityVerifiers makes n verifiers' NATS users under dir/verifiers.
func newCityVerifiers(dir string, n int) (*cityVerifiers, error) {
	cv := &cityVerifiers{}
	if n <= 0 {
		return cv, nil
	}
	vdir := filepath.Join(dir, "verifiers")
	if err := os.MkdirAll(vdir, 0o700); err != nil {
		return nil, fmt.Errorf("verifiers: %w", err)
	}
	for p := range n {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, fmt.Errorf("verifier %d NATS user: %w", p, err)
		}
		seed, _ := kp.Seed()
		path := filepath.Join(vdir, fmt.Sprintf("verifier-%d.nk", p))
		if err := os.WriteFile(path, seed, 0o600); err != nil {
			return nil, fmt.Errorf("verifier %d NATS user: %w", p, err)
		}
		pub, _ := kp.PublicKey()
		cv.keys, cv.seeds = append(cv.keys, clearing.VerifierKey{Partition: p, Key: pub}), append(cv.seeds, path)
	}
	return cv, nil
}

// start opens and runs one verifier per partition until ctx ends or stop.
// A failed start stops those it started.
func (cv *cityVerifiers) start(ctx context.Context, url, ca string, led ledger.Ledger, log *slog.Logger) error {
	ctx, cv.cancel = context.WithCancel(ctx)
	for p, seed := range cv.seeds {
		v, err := clearing.OpenVerifier(ctx, clearing.VerifierConfig{NATSURL: url, NATSSeedFile: seed, NATSCA: ca, Ledger: led, Partition: p, Logger: log})
		if err != nil {
			cv.stop()
			return err
		}
		cv.vs = append(cv.vs, v)
		cv.wg.Add(1)
		go func() {
			defer cv.wg.Done()
			if err := v.Run(ctx); err != nil {
				log.Error("verifier", "partition", p, "err", err)
			}
		}()
	}
	return nil
}

// stop stops the verifiers and disconnects them.
func (cv *cityVerifiers) stop() {
	if cv.cancel != nil {
		cv.cancel()
	}
	cv.wg.Wait()
	for _, v := range cv.vs {
		v.Close()
	}
	cv.vs = nil
}

// forwarded is what each partition's verifier forwarded.
func (cv *cityVerifiers) forwarded() []uint64 {
	if len(cv.vs) == 0 {
		return nil
	}
	out := make([]uint64, len(cv.vs))
	for i, v := range cv.vs {
		out[i] = v.Stats().Forwarded
	}
	return out
}

// quarantined is what the verifiers quarantined, in all and by reason.
func (cv *cityVerifiers) quarantined() (n uint64, why map[string]uint64) {
	why = map[string]uint64{}
	for _, v := range cv.vs {
		st := v.Stats()
		n += st.Quarantined
		for k, c := range st.QuarantineByWhy {
			why[k] += c
		}
	}
	return n, why
}
