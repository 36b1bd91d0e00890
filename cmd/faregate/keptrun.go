package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/spf13/pflag"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/simulator"
)

// keptRun is a simulation's data dir (`simulate --data DIR --keep`) that
// `clearing --data DIR` reopens: the same store, chain, contract, registry
// and feed, named by DIR/run.json.
type keptRun struct {
	dir string
	man *simulator.RunManifest
}

// findKeptRun says whether dir is a kept simulation run: DIR/run.json, or
// DIR being the clearing dir a parent's run.json names (what a user who
// looked inside the run would type). Neither is nil, nil.
func findKeptRun(dir string) (*keptRun, error) {
	man, ok, err := simulator.LoadManifest(dir)
	if err != nil {
		return nil, err
	}
	if ok {
		return &keptRun{dir: dir, man: man}, nil
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if parent == filepath.Clean(dir) {
		return nil, nil
	}
	man, ok, err = simulator.LoadManifest(parent)
	if err != nil || !ok {
		return nil, err
	}
	if filepath.Join(parent, man.Clearing) != filepath.Clean(dir) {
		return nil, nil
	}
	return &keptRun{dir: parent, man: man}, nil
}

func (k *keptRun) path(rel string) string { return k.man.Path(k.dir, rel) }

// clearingDir is the clearing data directory --data names for the commands
// that queue requests in it or read its keys: a kept simulation's top
// directory stands for its clearing's, the one `clearing --data RUN` opens
// (a stolen card queued in the top directory was never applied, the command
// saying it was queued). Any other directory is itself.
func clearingDir(dir string) (string, error) {
	if dir == "" {
		return "", usageErr("--data DIR (clearing's data directory) is required")
	}
	man, ok, err := simulator.LoadManifest(dir)
	if err != nil {
		return "", err
	}
	if ok && man.Clearing != "" {
		return man.Path(dir, man.Clearing), nil
	}
	return dir, nil
}

// keptRunFlags are the clearing flags a kept run supplies when the command
// line does not give them.
type keptRunFlags struct {
	dataDir, chainDir, registry, feed, feedVersion *string
	natsCert, natsKey, faceKey, contract           *string
	period                                         *time.Duration
	faceMaxGallery, verifierPartitions             *int
	verifierKeys                                   *[]string
	ethRPC                                         string
	// fareClock is set to the run's city clock carried on, when it ran
	// ahead of the wall clock.
	fareClock *func() time.Time
}

// apply fills in what the command line left unset from the run's manifest;
// flags the user gave win.
func (k *keptRun) apply(fs *pflag.FlagSet, f keptRunFlags, log *slog.Logger) error {
	unset := func(name string) bool { return !fs.Changed(name) }
	*f.dataDir = k.path(k.man.Clearing)
	switch {
	case k.man.Chain != "":
		if f.ethRPC != "" {
			return usageErrorf("--data %s is a kept simulation on its embedded chain (%s): drop --eth-rpc", k.dir, k.path(k.man.Chain))
		}
		*f.chainDir = k.path(k.man.Chain)
	case f.ethRPC == "":
		return usageErrorf("--data %s is a kept simulation that anchored to an external chain (contract %s): give --eth-rpc and --eth-key", k.dir, k.man.Contract)
	case *f.contract == "":
		*f.contract = k.man.Contract
	}
	if unset("registry") {
		*f.registry = k.path(k.man.Registry)
	}
	if unset("feed") && k.man.Feed != "" {
		*f.feed, *f.feedVersion = k.path(k.man.Feed), k.man.FeedVersion
	}
	if unset("nats-tls-cert") && unset("nats-tls-key") && k.man.NATSTLSCert != "" {
		*f.natsCert, *f.natsKey = k.path(k.man.NATSTLSCert), k.path(k.man.NATSTLSKey)
	}
	if unset("face-key-file") && k.man.FaceKey != "" {
		*f.faceKey = k.path(k.man.FaceKey)
	}
	if unset("face-max-gallery") && k.man.FaceMaxGallery > 0 {
		*f.faceMaxGallery = k.man.FaceMaxGallery
	}
	// The run's verifier partitions: its event stream is laid out for them
	// (clearing refuses another count while it holds events), and its
	// verifiers' NATS users are admitted again.
	if unset("verifier-partitions") && k.man.VerifierPartitions > 0 {
		*f.verifierPartitions = k.man.VerifierPartitions
	}
	if unset("verifier-key") {
		for p, rel := range k.man.VerifierSeeds {
			pub, err := verifierPublicKey(k.path(rel))
			if err != nil {
				return fmt.Errorf("%s: verifier %d: %w", filepath.Join(k.dir, simulator.ManifestFile), p, err)
			}
			*f.verifierKeys = append(*f.verifierKeys, clearing.VerifierKey{Partition: p, Key: pub}.String())
			cmd := fmt.Sprintf("faregate clearing verifier --partition %d --nats-seed %s --data %s --nats <clearing's NATS URL>", p, k.path(rel), k.dir)
			if k.man.NATSTLSCert != "" {
				cmd += " --nats-ca " + k.path(k.man.NATSTLSCert)
			}
			log.Info("kept run's verifier partition: start its verifier", "partition", p, "command", cmd)
		}
	}
	if unset("period") {
		p, err := time.ParseDuration(k.man.Period)
		if err != nil {
			return fmt.Errorf("%s: period: %w", filepath.Join(k.dir, simulator.ManifestFile), err)
		}
		*f.period = p
	}
	if f.fareClock != nil {
		if ahead := time.Until(k.man.CityClock); ahead > 0 {
			// The city ran its days ahead of the wall clock: carried on from
			// where it stopped, not sent back to the wall's time (payments
			// would be stamped before the declines they settle).
			*f.fareClock = func() time.Time { return time.Now().Add(ahead) }
			log.Info("the kept run's city clock carries on as the fare clock", "city_clock", k.man.CityClock.Format(time.RFC3339), "ahead_of_the_wall_by", ahead.Round(time.Second).String())
		}
	}
	// On the embedded chain the contract is the one its ledger.json names
	// (clearing binds to it and logs it): the manifest's copy is not used,
	// so it is not shown as if it were (an outside review edited it).
	where := []any{"chain", *f.chainDir}
	if k.man.Chain == "" {
		where = []any{"eth_rpc", fare.RedactURL(f.ethRPC), "contract", *f.contract}
	}
	log.Info("reopening a kept simulation run", append(append([]any{"run", k.dir, "clearing", *f.dataDir}, where...),
		"registry", *f.registry, "feed", *f.feed, "started", k.man.Started.Format(time.RFC3339))...)
	return nil
}

// refuseNewChain stops clearing from creating a chain (and deploying a
// contract) for a data dir whose batches are already anchored elsewhere:
// on the embedded chain when chainDir holds none yet, on --eth-rpc when no
// --contract is given. It runs before anything is created.
func refuseNewChain(dataDir, chainDir string, lf ledgerFlags) error {
	b, ok, err := clearing.ReadLedgerBinding(dataDir)
	if err != nil || !ok {
		return err
	}
	if lf.rpc != "" {
		if lf.contract == "" {
			return usageErrorf("--data %s anchors its batches to contract %s: give --contract %s (without it a new contract would be deployed and the stored batches anchored twice)", dataDir, b.Contract, b.Contract)
		}
		return nil
	}
	if _, err := os.Stat(filepath.Join(chainDir, "ledger.json")); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s anchors its batches to contract %s, but %s holds no chain; refusing to start a new chain and deploy another contract (the stored batches would be anchored twice). Point --data at the run that holds both (a kept simulation's top dir), or restore the chain dir",
			clearing.ErrLedgerMismatch, dataDir, b.Contract, chainDir)
	}
	return nil
}

// verifierPublicKey reads a verifier's NATS user seed file and returns its
// public NKey.
func verifierPublicKey(seedFile string) (string, error) {
	seed, err := readInputFile("verifier seed", seedFile, maxKeyFileSize)
	if err != nil {
		return "", err
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return "", fmt.Errorf("%s: %w", seedFile, err)
	}
	defer kp.Wipe()
	return kp.PublicKey()
}
