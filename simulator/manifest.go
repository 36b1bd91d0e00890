package simulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// ManifestFile, at the top of a simulation's data dir, says where the run
// keeps each part, so that `faregate clearing --data DIR` reopens a kept
// run on the same store, chain and contract instead of starting a new one.
const ManifestFile = "run.json"

// ManifestFormat is the version of RunManifest this package writes.
const ManifestFormat = 1

// RunManifest describes a simulation's data dir. Paths are relative to it.
type RunManifest struct {
	Format int `json:"format"`
	// Clearing is clearing's data dir (store, embedded JetStream, keys,
	// API tokens).
	Clearing string `json:"clearing"`
	// Chain is the embedded chain's dir; empty when the run used an
	// external ledger (Contract then names its contract).
	Chain string `json:"chain,omitempty"`
	// Contract is the settlement contract the run anchored to, 0x hex.
	Contract string `json:"contract"`
	// Registry is the run's registry file (currency, operators, tariffs,
	// terminals and their legs).
	Registry string `json:"registry"`
	// Feed is the city's GTFS Fares v2 feed, FeedVersion the version its
	// journeys were priced with.
	Feed        string `json:"feed"`
	FeedVersion string `json:"feed_version"`
	// NATSTLSCert and NATSTLSKey are the embedded NATS server's certificate
	// pair; empty when the run's NATS took plain connections.
	NATSTLSCert string `json:"nats_tls_cert,omitempty"`
	NATSTLSKey  string `json:"nats_tls_key,omitempty"`
	// FaceKey is the face template store's key file; empty without face riders.
	FaceKey        string `json:"face_key,omitempty"`
	FaceMaxGallery int    `json:"face_max_gallery,omitempty"`
	// VerifierPartitions is how many verifier partitions the run's
	// clearing had (0: it verified every event itself); VerifierSeeds are
	// the verifiers' NATS user seed files, one per partition in order.
	VerifierPartitions int      `json:"verifier_partitions,omitempty"`
	VerifierSeeds      []string `json:"verifier_seeds,omitempty"`
	// Acquirer is "simulated" for a run that billed riders through
	// simulator.Acquirer, with the DeclineRate and AcquirerSeed it answered
	// by: a clearing reopened with them answers a charge asked again as
	// the run did (empty in a run of an earlier build).
	Acquirer     string  `json:"acquirer,omitempty"`
	DeclineRate  float64 `json:"decline_rate,omitempty"`
	AcquirerSeed uint64  `json:"acquirer_seed,omitempty"`
	// Period is the settlement period, as Go writes durations ("10s").
	Period string `json:"period"`
	// Started is when the run began (RFC 3339, UTC).
	Started time.Time `json:"started"`
	// CityClock is the city's clock when the run ended (the city runs its
	// days faster than the wall clock): a reopened clearing's fare clock
	// carries on from it, so fare days, payments and retries keep the
	// run's timeline. Zero for a run that did not end cleanly.
	CityClock time.Time `json:"city_clock,omitzero"`
}

// Path resolves one of the manifest's relative paths against the run's dir;
// empty stays empty.
func (m *RunManifest) Path(dir, rel string) string {
	if rel == "" {
		return ""
	}
	return filepath.Join(dir, rel)
}

// LoadManifest reads DIR/run.json; ok is false when dir is not a
// simulation's data dir.
func LoadManifest(dir string) (m *RunManifest, ok bool, err error) {
	path := filepath.Join(dir, ManifestFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	m = new(RunManifest)
	if err := json.Unmarshal(raw, m); err != nil {
		return nil, false, fmt.Errorf("simulation manifest %s: %w", path, err)
	}
	switch {
	case m.Format != ManifestFormat:
		return nil, false, fmt.Errorf("simulation manifest %s: format %d, this faregate reads %d", path, m.Format, ManifestFormat)
	case m.Clearing == "" || m.Registry == "":
		return nil, false, fmt.Errorf("simulation manifest %s: no clearing or registry path", path)
	case !common.IsHexAddress(m.Contract):
		return nil, false, fmt.Errorf("simulation manifest %s: contract %q is not a 0x address", path, m.Contract)
	}
	if _, err := time.ParseDuration(m.Period); err != nil {
		return nil, false, fmt.Errorf("simulation manifest %s: period: %w", path, err)
	}
	return m, true, nil
}

// cityManifest is the manifest of a city's run in dataDir (the layout
// writeCity and the run make: clearing, chain, registry.json, feed), with
// its contract, whether the chain is the embedded one in dataDir/chain,
// the feed version, the period, the NATS certificate pair (empty: plain),
// the verifiers' seeds and the acquirer riders were billed through.
func cityManifest(dataDir, contract string, embeddedChain bool, feedVersion string, period time.Duration, natsCert, natsKey string, verifiers *cityVerifiers, acq *Acquirer) (*RunManifest, error) {
	man := &RunManifest{Clearing: "clearing", Contract: contract, Registry: "registry.json",
		Feed: "feed", FeedVersion: feedVersion, Period: period.String(), Started: time.Now().UTC().Truncate(time.Second)}
	if acq != nil {
		man.Acquirer, man.DeclineRate, man.AcquirerSeed = "simulated", acq.DeclineRate, acq.Seed
	}
	if embeddedChain {
		man.Chain = "chain"
	}
	if natsCert != "" {
		man.NATSTLSCert, man.NATSTLSKey = filepath.Base(natsCert), filepath.Base(natsKey)
	}
	man.VerifierPartitions = len(verifiers.seeds)
	for _, seed := range verifiers.seeds {
		rel, err := filepath.Rel(dataDir, seed)
		if err != nil {
			return nil, err
		}
		man.VerifierSeeds = append(man.VerifierSeeds, rel)
	}
	return man, nil
}

// writeManifest writes m as DIR/run.json, atomically.
func writeManifest(dir string, m *RunManifest) error {
	m.Format = ManifestFormat
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ManifestFile+".tmp")
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("simulation manifest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestFile)); err != nil {
		return fmt.Errorf("simulation manifest: %w", err)
	}
	return nil
}
