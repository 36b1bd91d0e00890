package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/biometrics/templates"
	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/simulator"
)

// ledgerFlags select the shared ledger: the embedded chain in the data dir
// by default, or any Ethereum JSON-RPC endpoint.
type ledgerFlags struct {
	rpc, keyFile, contract string
	// chainListen is where the embedded chain serves its JSON-RPC ("":
	// a free loopback port); clearing sets it with --chain-rpc-listen.
	chainListen string
}

func (f *ledgerFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.rpc, "eth-rpc", "", "Ethereum JSON-RPC endpoint of the shared ledger (default: embedded chain in the data dir)")
	cmd.Flags().StringVar(&f.keyFile, "eth-key", "", "hex private key file of the clearing house's signer (with --eth-rpc)")
	cmd.Flags().StringVar(&f.contract, "contract", "", "settlement contract address (with --eth-rpc; empty deploys one)")
}

// check refuses, as usage errors, ledger flags that cannot go together or
// do not parse: flags given without --eth-rpc would be ignored, an
// --eth-rpc without its signer fail later.
func (f *ledgerFlags) check(fs *pflag.FlagSet) error {
	if f.rpc == "" {
		for _, name := range []string{"eth-key", "contract"} {
			if fs.Changed(name) {
				return usageErrorf("--%s goes with --eth-rpc (without it clearing runs the embedded chain in its data dir, with its own keys)", name)
			}
		}
		return nil
	}
	if err := checkChainFlags(f.rpc, f.contract); err != nil {
		return err
	}
	if f.keyFile == "" {
		return usageErrorf("--eth-rpc needs --eth-key: the clearing house's signer")
	}
	return nil
}

// checkChainFlags refuses, as usage errors, an --eth-rpc that is no
// JSON-RPC URL and a --contract that is no address (empty: not given).
func checkChainFlags(rpc, contract string) error {
	if u, err := url.Parse(rpc); rpc != "" && (err != nil || !slices.Contains([]string{"http", "https", "ws", "wss"}, u.Scheme) || u.Host == "" || !validPort(u.Port())) {
		return usageErrorf("--eth-rpc %q: want a JSON-RPC URL (http://, https://, ws:// or wss://HOST:PORT, PORT 1 to 65535)", fare.RedactURL(rpc))
	}
	if contract != "" && !common.IsHexAddress(contract) {
		return usageErrorf("--contract %q: want a 0x address of 40 hex digits", contract)
	}
	return nil
}

// validPort reports whether a URL's port is absent or 1 to 65535.
func validPort(p string) bool {
	if p == "" {
		return true
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// open opens the embedded chain in chainDir, serving its JSON-RPC on a
// loopback port so that the role commands can act while clearing runs, or
// dials --eth-rpc.
func (f *ledgerFlags) open(ctx context.Context, chainDir string, log *slog.Logger) (ledger.Ledger, error) {
	if f.rpc == "" {
		listen := f.chainListen
		if listen == "" {
			listen = "127.0.0.1:0"
		}
		return ledger.OpenEmbedded(ctx, chainDir, ledger.WithLogger(log), ledger.WithHTTP(listen))
	}
	if f.keyFile == "" {
		return nil, errors.New("--eth-rpc needs --eth-key")
	}
	return dialLedger(ctx, f.rpc, f.keyFile, f.contract)
}

// chainRPC is the embedded chain's loopback JSON-RPC endpoint, where the
// role commands reach it while clearing runs ("" on --eth-rpc).
func chainRPC(led ledger.Ledger) string {
	if emb, ok := led.(*ledger.Embedded); ok {
		return emb.HTTPEndpoint()
	}
	return ""
}

func newClearingCmd() *cobra.Command {
	var (
		dataDir, registry, natsURL, natsListen, httpAddr string
		apiTokens, tlsCert, tlsKey                       string
		natsCert, natsKey, natsCA, natsSeed              string
		feedPath                                         string
		period                                           time.Duration
		fetch                                            int
		minFreeMiB                                       int
		lf                                               ledgerFlags
		riderCache                                       int
		nextFeedPath, nextFeedFrom                       string
		closeAfter                                       time.Duration
		acquirer                                         string
		acquirerSeed                                     uint64
		declineRate                                      float64
		faceKeyFile                                      string
		faceErasureLog                                   string
		faceMaxGallery                                   int
		faceModels                                       []string
		streamReplicas                                   int
		limits                                           = clearing.DefaultLimits
		verifierKeys                                     []string
		fareClock                                        func() time.Time // nil: the wall clock
		verifierPartitions                               int
		apiTokenRate                                     float64
		apiTokenBurst                                    int
	)
	cmd := &cobra.Command{
		Use:   "clearing",
		Short: "Run the clearing house: consume, verify, apply, settle, anchor, serve the settlement API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := slog.Default()
			if err := lf.check(cmd.Flags()); err != nil {
				return err
			}
			if err := checkDataDir("--data", dataDir); err != nil {
				return err
			}
			if declineRate < 0 || declineRate > 1 || math.IsNaN(declineRate) {
				return usageErrorf("--decline-rate %v: want 0 to 1", declineRate)
			}
			if cmd.Flags().Changed("decline-rate") && acquirer == "" {
				return usageErrorf("--decline-rate goes with --acquirer simulated")
			}
			if cmd.Flags().Changed("acquirer-seed") && acquirer == "" {
				return usageErrorf("--acquirer-seed goes with --acquirer simulated")
			}
			if _, _, err := net.SplitHostPort(httpAddr); httpAddr != "" && err != nil {
				return usageErrorf("--http %q: want HOST:PORT (or empty for no API): %v", httpAddr, err)
			} else if httpAddr != "" {
				_, p, _ := net.SplitHostPort(httpAddr)
				if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
					return usageErrorf("--http %q: port %q is not 0 to 65535", httpAddr, p)
				}
			}
			var acq clearing.Acquirer
			switch acquirer {
			case "":
			case "simulated":
				// A fixed seed: a charge asked again after a restart (its
				// answer lost to a crash) gets the answer it got, as a real
				// acquirer's idempotency key does.
				sim, err := simulator.NewAcquirer(declineRate, acquirerSeed)
				if err != nil {
					return usageErrorf("--decline-rate: %w", err)
				}
				acq = sim
				log.Warn("billing riders through the simulated acquirer: no real payment is taken", "decline_rate", declineRate)
			default:
				return usageErrorf("--acquirer %q: want simulated (no real payment service is reachable from here) or empty for none", acquirer)
			}
			if riderCache < 0 {
				return usageErrorf("--rider-cache %d: want 0 (none) or more", riderCache)
			}
			if riderCache == 0 {
				riderCache = -1 // Config: negative is none
			}
			if closeAfter <= 0 {
				return usageErrorf("--close-after %s: want a positive duration", closeAfter)
			}
			var nextFrom time.Time
			if (nextFeedPath == "") != (nextFeedFrom == "") {
				return usageErrorf("--next-feed and --next-feed-from go together: the new feed version and when it takes effect")
			}
			if nextFeedPath != "" {
				var err error
				if nextFrom, err = time.Parse(time.RFC3339, nextFeedFrom); err != nil {
					return usageErrorf("--next-feed-from %q: want an RFC 3339 time with its zone, e.g. 2027-01-01T04:00:00+01:00", nextFeedFrom)
				}
			}
			if (tlsCert == "") != (tlsKey == "") {
				return usageErrorf("--http-tls-cert and --http-tls-key go together: give both (HTTPS) or neither (plain HTTP)")
			}
			if (natsCert == "") != (natsKey == "") {
				return usageErrorf("--nats-tls-cert and --nats-tls-key go together: give both (TLS) or neither")
			}
			if natsURL != "" && natsCert != "" {
				return usageErrorf("--nats-tls-cert is for the embedded server; with --nats, TLS is the external server's (trust its CA with --nats-ca)")
			}
			if natsURL != "" && natsSeed == "" {
				return usageErrorf("--nats needs --nats-seed: clearing's NATS user seed, admitted by the server's configuration (faregate nats config)")
			}
			if natsURL != "" {
				if err := checkNATSURLs(natsURL); err != nil {
					return asUsage(err)
				}
			}
			if natsCA != "" {
				if err := checkNATSCA(natsCA); err != nil {
					return asUsage(err)
				}
			}
			if period < minSimPeriod {
				// As simulate and chaos: shorter, each batch anchors an
				// event or two (an outside test's 1ns was taken).
				return usageErrorf("--period %s: want a settlement period of at least %s", period, minSimPeriod)
			}
			if streamReplicas < 0 || streamReplicas > 5 {
				return usageErrorf("--stream-replicas %d: want 1 to 5 (JetStream's limit), or 0 for 3 on a cluster and 1 on a single server", streamReplicas)
			}
			for _, l := range []struct {
				flag string
				v    int64
			}{{"event-max-bytes", limits.EventMaxBytes}, {"event-max-per-terminal", limits.EventMaxPerTerminal}, {"event-max-age", int64(limits.EventMaxAge)},
				{"quarantine-max-bytes", limits.QuarantineMaxBytes}, {"quarantine-max-messages", limits.QuarantineMaxMessages}, {"quarantine-max-age", int64(limits.QuarantineMaxAge)}} {
				if l.v <= 0 {
					return usageErrorf("--%s %s: want a positive limit", l.flag, cmd.Flags().Lookup(l.flag).Value)
				}
			}
			if minFreeMiB > 1<<20 {
				return usageErrorf("--min-free-mib %d: want at most %d (1 TiB), 0 for the default or negative for no check", minFreeMiB, 1<<20)
			}
			if fetch < 1 || fetch > clearing.MaxFetchBatch {
				return usageErrorf("--fetch %d: want 1 to %d events per fetch", fetch, clearing.MaxFetchBatch)
			}
			if math.IsNaN(apiTokenRate) || (apiTokenRate != 0 && (apiTokenRate < 1 || apiTokenRate > 1e6)) || (apiTokenRate > 0 && (apiTokenBurst < 1 || apiTokenBurst > 1e6)) {
				// Under one a second, a token spent its burst would wait
				// minutes to days (an outside re-check's 1e-300 gave one
				// request for the process's life).
				return usageErrorf("--api-token-rate %v --api-token-burst %d: want a rate of 0 (no bound) or 1 to 1000000 requests a second, and with a rate a burst of 1 to 1000000", apiTokenRate, apiTokenBurst)
			}
			chainDir, feedVersionOf := filepath.Join(dataDir, "chain"), ""
			run, err := findKeptRun(dataDir)
			if err != nil {
				return fmt.Errorf("--data: %w", err)
			}
			if run != nil {
				if err := run.apply(cmd.Flags(), keptRunFlags{dataDir: &dataDir, chainDir: &chainDir, registry: &registry,
					feed: &feedPath, feedVersion: &feedVersionOf, natsCert: &natsCert, natsKey: &natsKey, faceKey: &faceKeyFile,
					contract: &lf.contract, period: &period, faceMaxGallery: &faceMaxGallery, ethRPC: lf.rpc,
					verifierPartitions: &verifierPartitions, verifierKeys: &verifierKeys, fareClock: &fareClock}, log); err != nil {
					return err
				}
			}
			// A kept run brings its feed: these are checked once it has.
			if nextFeedPath != "" && feedPath == "" {
				return usageErrorf("--next-feed replaces the current --feed at a stated time: give --feed too")
			}
			if acq != nil && feedPath == "" {
				return usageErrorf("--acquirer bills priced fare days: it needs --feed")
			}
			if natsURL != "" && len(verifierKeys) > 0 {
				log.Warn("--verifier-key admits verifiers on clearing's embedded server only: with --nats the servers' own authorization decides (faregate nats config --verifier-key P=U..., then reload them)")
			}
			verifiers, err := checkVerifierFlags(verifierKeys, verifierPartitions)
			if err != nil {
				return err
			}
			if ps := unadmittedPartitions(verifiers); natsURL == "" && len(ps) > 0 {
				log.Warn("verifier partitions no verifier user is admitted to on the embedded server: no verifier may work on them, and their events wait; add --verifier-key P=U... for each (faregate clearing verifier-key FILE prints U...)", "partitions", fmt.Sprint(ps))
			}
			if err := refuseNewChain(dataDir, chainDir, lf); err != nil {
				return err
			}
			host, port, err := splitHostPort(natsListen)
			if err != nil {
				return usageErrorf("--nats-listen: %w", err)
			}
			if port < -1 || port > 65535 {
				return usageErrorf("--nats-listen %q: port %d is not in 0..65535 (or -1: any free port)", natsListen, port)
			}
			if lf.chainListen != "" {
				if lf.rpc != "" {
					return usageErrorf("--chain-rpc-listen is for the embedded chain; with --eth-rpc the chain is the node's")
				}
				if _, p, err := splitHostPort(lf.chainListen); err != nil || p < 0 || p > 65535 {
					return usageErrorf("--chain-rpc-listen %q: want host:port with a port from 0 to 65535", lf.chainListen)
				}
			}
			for _, m := range faceModels {
				if !slices.Contains(gallery.DlibModels, m) {
					return usageErrorf("--face-model %q: clearing screens templates of %s only", m, strings.Join(gallery.DlibModels, ", "))
				}
			}
			// Files read whole below, each a regular file of its kind's
			// size (a device given by mistake would be read for ever).
			if err := checkInputFiles(inputFile{"--nats-seed", natsSeed, maxKeyFileSize}, inputFile{"--http-tls-cert", tlsCert, maxPEMFileSize}, inputFile{"--http-tls-key", tlsKey, maxPEMFileSize},
				inputFile{"--nats-tls-cert", natsCert, maxPEMFileSize}, inputFile{"--nats-tls-key", natsKey, maxPEMFileSize}); err != nil {
				return err
			}
			// Read now, not after the ledger is opened: a file that is no
			// NKey seed left a data directory with a deployed contract
			// behind (an outside review).
			if natsSeed != "" {
				if _, err := clearing.ReadNATSUserSeed(natsSeed); err != nil {
					return usageErrorf("--nats-seed %s: %v", natsSeed, err)
				}
			}
			faceKey, err := loadFaceKey(faceKeyFile, dataDir, faceMaxGallery, log)
			if err != nil {
				return err
			}
			reg, err := loadRegistry("--registry", registry)
			if err != nil {
				return err
			}
			var feed, nextFeed *fares.Feed
			var feedVersion, nextFeedVersion string
			if nextFeedPath != "" {
				if nextFeed, nextFeedVersion, err = loadFeed(nextFeedPath, log); err != nil {
					return fmt.Errorf("--next-feed: %w", err)
				}
			}
			if feedPath != "" {
				if feed, feedVersion, err = loadFeed(feedPath, log); err != nil {
					return fmt.Errorf("--feed: %w", err)
				}
				if nextFeed != nil && nextFeedVersion == feedVersion {
					return usageErrorf("--next-feed %s is the same feed version as --feed %s (%s): a new version must differ", nextFeedPath, feedPath, feedVersion)
				}
				if feedVersion, err = keptFeedVersion(feedPath, feedVersionOf, feedVersion); err != nil {
					return err
				}
				if len(reg.Legs) == 0 {
					log.Warn("live pricing from the feed, but the registry names no terminal legs: taps at gates whose stop alone does not say the network or route will not be priced", "registry", registry)
				}
			}
			// A feed that does not fit the registry is refused before the
			// chain is opened or a contract deployed (clearing.Open checks
			// it again and logs what only warrants a warning).
			if err := clearing.CheckFeeds(feed, nextFeed, nextFrom, reg, slog.New(slog.DiscardHandler)); err != nil {
				return err
			}
			if apiTokens == "" {
				apiTokens = filepath.Join(dataDir, clearing.APITokenFile)
			}
			tokens, err := loadTokenStore(apiTokens)
			if err != nil {
				return fmt.Errorf("--api-tokens: %w", err)
			}
			// The certificate pair is read now: a bad one fails before
			// anything opens. The handler comes once clearing is open.
			srv, err := clearing.APIServer(nil, tlsCert, tlsKey)
			if err != nil {
				return err
			}
			// The ports now, before a chain is made or opened: one in use
			// fails here, naming it. Each is tried and let go: held until
			// clearing serves, the API's would take connections nobody
			// answers (a probe would hang instead of being refused).
			if err := portFree(httpAddr); err != nil {
				return fmt.Errorf("--http %s: %w", httpAddr, err)
			}
			if natsURL == "" && port > 0 {
				if err := portFree(net.JoinHostPort(host, strconv.Itoa(port))); err != nil {
					return fmt.Errorf("--nats-listen %s: %w", natsListen, err)
				}
			}
			if lf.chainListen != "" {
				if err := portFree(lf.chainListen); err != nil {
					return fmt.Errorf("--chain-rpc-listen %s: %w", lf.chainListen, err)
				}
			}
			// An external NATS nobody answers at fails here, before a
			// contract is deployed and a data dir written for a clearing
			// that cannot start (an outside re-check).
			if natsURL != "" {
				if err := natsReachable(cmd.Context(), natsURL); err != nil {
					return fmt.Errorf("--nats %s: %w", fare.RedactURLList(natsURL), err)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			stoppedClean := false
			defer func() { // after every close below
				if stoppedClean {
					log.Info("clearing stopped")
				}
			}()
			led, err := lf.open(ctx, chainDir, log)
			if err != nil {
				return fmt.Errorf("open ledger: %w", err)
			}
			defer led.Close()
			// On the embedded dev chain this process holds the admin and the
			// operators' keys, so it puts the registry file on chain itself.
			// On a shared chain each operator registers its own terminals.
			if emb, ok := led.(*ledger.Embedded); ok {
				if err := clearing.PublishRegistry(ctx, emb, reg); err != nil {
					return err
				}
			} else if len(reg.Terminals) > 0 {
				log.Warn("the registry file's terminals are ignored with --eth-rpc: terminal keys come from the chain's registry", "file_terminals", len(reg.Terminals))
			}
			// Only the clearing house commits batches: a wrong --eth-key
			// would apply and confirm taps for a period, then fail every
			// commit. Said now, naming both accounts.
			if c, ok := led.(*ledger.Client); ok {
				// Bounded as the dial is: over ws:// no request has a
				// deadline of its own, and a node that took the connection
				// and went silent held the start (an outside review).
				rctx, cancel := context.WithTimeout(ctx, ledger.DialTimeout)
				_, house, err := c.Roles(rctx)
				cancel()
				if err != nil {
					return fmt.Errorf("read the contract's clearing house: %w", err)
				}
				if me := c.KeyAccount().Address(); me != house {
					return fmt.Errorf("--eth-key %s is account %s, but the contract %s commits batches only from its clearing house %s: give that account's key (the admin can hand the role to another account with the contract's setClearingHouse)",
						lf.keyFile, me.Hex(), c.ContractAddress().Hex(), house.Hex())
				}
			}
			if faceKey != nil && faceErasureLog == "" {
				// The default is inside the data dir, which a restore of a
				// data dir backup replaces, log and all (an outside review).
				log.Warn("the face erasure log is in the data dir: restoring the data dir from a backup restores the log too, and faces erased since come back; keep it where backups are not restored over it (--face-erasure-log)",
					"log", filepath.Join(dataDir, clearing.FaceErasureLogFile))
			}
			promReg := prometheus.NewRegistry()
			promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfoGauge())
			cl, err := clearing.Open(ctx, clearing.Config{
				DataDir: dataDir, NATSURL: natsURL, NATSHost: host, NATSPort: port,
				NATSTLSCert: natsCert, NATSTLSKey: natsKey, NATSCA: natsCA, NATSSeedFile: natsSeed,
				Registry: reg, Ledger: led, Period: period, FetchBatch: fetch, Logger: log, Metrics: promReg, MinFreeBytes: int64(minFreeMiB) << 20,
				Feed: feed, FeedVersion: feedVersion,
				RiderCache: riderCache, CloseAfter: closeAfter, Acquirer: acq, FareClock: fareClock,
				NextFeed: nextFeed, NextFeedVersion: nextFeedVersion, NextFeedFrom: nextFrom,
				FaceKey: faceKey, FaceMaxGallery: faceMaxGallery, FaceModels: faceModels, FaceErasureLog: faceErasureLog,
				Limits: clearing.Limits{Replicas: streamReplicas, EventMaxBytes: limits.EventMaxBytes, EventMaxAge: limits.EventMaxAge,
					EventMaxPerTerminal: limits.EventMaxPerTerminal, QuarantineMaxBytes: limits.QuarantineMaxBytes,
					QuarantineMaxMessages: limits.QuarantineMaxMessages, QuarantineMaxAge: limits.QuarantineMaxAge},
				VerifierPartitions: verifiers.Partitions, VerifierKeys: verifiers.Keys,
			})
			if err != nil {
				return err
			}
			defer cl.Close()
			srv.Handler = clearing.NewAPI(cl, promReg, clearing.WithTokens(tokens), clearing.WithAPILogger(log), clearing.WithTokenRate(apiTokenRate, apiTokenBurst))
			ln, err := net.Listen("tcp", httpAddr)
			if err != nil {
				return fmt.Errorf("settlement API: --http %s: %w", httpAddr, err)
			}
			if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tlsCert == "" && !tcp.IP.IsLoopback() {
				log.Warn("the settlement API takes bearer tokens over plain HTTP on a non-loopback address; serve it with --http-tls-cert and --http-tls-key", "addr", ln.Addr().String())
			}
			runCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			served := make(chan error, 1)
			go func() {
				served <- clearing.ServeAPI(runCtx, srv, ln)
				cancel() // the API failed (or ctx ended): stop clearing too
			}()
			// What it prices with and how it is split, so the log alone
			// says whether live pricing is on.
			pricing := "flat fares per operator (no --feed)"
			if feed != nil {
				pricing = "feed " + feedPath + " version " + feedVersion
			}
			log.Info("clearing running", "nats", fare.RedactURL(cl.NATSURL()), "confirmation_key", "0x"+hex.EncodeToString(cl.ConfirmationKey()), "api", clearing.APIScheme(srv)+"://"+ln.Addr().String(), "api_tokens", apiTokens, "contract", led.ContractAddress().Hex(), "data", dataDir, "chain_rpc", chainRPC(led),
				"pricing", pricing, "verifier_partitions", verifierPartitions, "billing", acq != nil)
			runErr := cl.Run(runCtx)
			if ctx.Err() != nil {
				log.Info("clearing stopping: signalled; applying the batch in hand, then closing the store and the chain (a commit transaction sent and not yet recorded is found on the chain at the next start)")
			}
			cancel()
			if err := <-served; err != nil && runErr == nil {
				return err
			}
			stoppedClean = runErr == nil
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "data/clearing", "data directory (store, embedded JetStream, embedded chain)")
	f.StringVar(&feedPath, "feed", "", "GTFS Fares v2 feed (directory or zip, fare_caps.txt extension welcome) to price every tap live; empty: each operator's flat fare")
	f.StringVar(&registry, "registry", "registry.json", "registry JSON file: currency, operators and tariffs (and, on the embedded chain, terminals to register)")
	f.StringVar(&natsURL, "nats", "", "external NATS server or cluster URL (default: embedded nats-server)")
	f.StringVar(&natsListen, "nats-listen", "127.0.0.1:4222", "where the embedded nats-server listens")
	f.StringVar(&httpAddr, "http", "127.0.0.1:8080", "settlement API listen address")
	f.Float64Var(&apiTokenRate, "api-token-rate", clearing.DefaultTokenRate, "settlement API requests a second one token may make, sustained; past it (and its --api-token-burst) the API answers 429 with Retry-After (0: no bound)")
	f.IntVar(&apiTokenBurst, "api-token-burst", clearing.DefaultTokenBurst, "settlement API requests one token may make at once above --api-token-rate")
	f.StringVar(&apiTokens, "api-tokens", "", "settlement API token `FILE` (default <data>/"+clearing.APITokenFile+"; issue tokens with faregate clearing token issue)")
	f.StringVar(&tlsCert, "http-tls-cert", "", "PEM certificate (chain) for serving the settlement API over HTTPS (with --http-tls-key)")
	f.StringVar(&tlsKey, "http-tls-key", "", "PEM private key for --http-tls-cert")
	f.StringVar(&natsCert, "nats-tls-cert", "", "PEM certificate of the embedded nats-server: clients must then use TLS (with --nats-tls-key)")
	f.StringVar(&natsKey, "nats-tls-key", "", "PEM private key for --nats-tls-cert")
	f.StringVar(&natsCA, "nats-ca", "", "PEM CA file clearing trusts for its NATS connection (default with --nats-tls-cert: that certificate)")
	f.StringVar(&natsSeed, "nats-seed", "", "clearing's NATS user seed file (SU...), for an external server (--nats)")
	f.DurationVar(&period, "period", 10*time.Second, "settlement period")
	f.IntVar(&minFreeMiB, "min-free-mib", 0, "free disk (MiB) the data dir keeps: below it clearing takes no events, not writing into a full disk (0: 512 MiB, or a quarter of a smaller disk but at least 256 MiB; negative: no check)")
	f.IntVar(&fetch, "fetch", 1000, fmt.Sprintf("events per fetch and per synced store transaction (1 to %d)", clearing.MaxFetchBatch))
	f.StringVar(&nextFeedPath, "next-feed", "", "a new feed version (directory or zip) that replaces --feed at --next-feed-from: fare days beginning then or later are priced with it")
	f.StringVar(&nextFeedFrom, "next-feed-from", "", "when --next-feed takes effect (RFC 3339 with zone; from the first fare day beginning at or after it)")
	f.IntVar(&riderCache, "rider-cache", clearing.DefaultRiderCache, "rider fare days live pricing keeps decoded in memory (about 1.8 KB each; 0: none)")
	f.DurationVar(&closeAfter, "close-after", time.Hour, "how long after a fare day's cut-over its riders are billed (late taps still count, in the next bill)")
	f.StringVar(&acquirer, "acquirer", "", "who charges riders' post-paid accounts: empty bills nobody; simulated declines --decline-rate of charges and takes no real payment")
	f.Float64Var(&declineRate, "decline-rate", 0.05, "share of charges the simulated acquirer declines (0 to 1)")
	f.Uint64Var(&acquirerSeed, "acquirer-seed", 1, "seed of the simulated acquirer's answers, decided by charge key: the same seed and --decline-rate answer a key asked again (after a restart too) as they did; a kept simulation's are its --seed and --decline-rate")
	f.StringVar(&faceKeyFile, "face-key-file", "", "file holding the face template store's 32-byte key (default $"+templates.KeyEnv+"; neither: face enrolment off)")
	f.StringVar(&faceErasureLog, "face-erasure-log", "", "file every face erasure is appended to before the store records it, and read at start to erase again what a store restored from an older backup lacks (default DATA/"+clearing.FaceErasureLogFile+"; keep it where store backups are not restored over it)")
	f.IntVar(&faceMaxGallery, "face-max-gallery", 0, "most face-only subjects one terminal's 1:N gallery may hold (default the policy's measured bound)")
	f.StringSliceVar(&faceModels, "face-model", nil, "`ID` of a descriptor pipeline the city's gates run (repeat; default both dlib pipelines, "+strings.Join(gallery.DlibModels, " and ")+"): enrolments of any other are refused, for no gate could match them")
	f.IntVar(&streamReplicas, "stream-replicas", 0, "replicas of the streams and buckets clearing creates (0: 3 on a NATS cluster, 1 on a single server); streams an operator made keep theirs")
	f.Int64Var(&limits.EventMaxBytes, "event-max-bytes", limits.EventMaxBytes, "bytes the event stream clearing creates may hold (its oldest events go first; terminals still hold theirs)")
	f.DurationVar(&limits.EventMaxAge, "event-max-age", limits.EventMaxAge, "how long the event stream clearing creates keeps an event clearing has not taken (terminals resend older ones)")
	f.Int64Var(&limits.EventMaxPerTerminal, "event-max-per-terminal", limits.EventMaxPerTerminal, "events one terminal's subject may hold in the event stream clearing creates")
	f.Int64Var(&limits.QuarantineMaxBytes, "quarantine-max-bytes", limits.QuarantineMaxBytes, "bytes the quarantine stream clearing creates may hold")
	f.Int64Var(&limits.QuarantineMaxMessages, "quarantine-max-messages", limits.QuarantineMaxMessages, "messages the quarantine stream clearing creates may hold")
	f.DurationVar(&limits.QuarantineMaxAge, "quarantine-max-age", limits.QuarantineMaxAge, "how long the quarantine stream clearing creates keeps a message")
	f.IntVar(&verifierPartitions, "verifier-partitions", 0, "`N` partitions of the terminals whose signatures separate verifier processes check (faregate clearing verifier); 0: clearing verifies every event itself")
	f.StringSliceVar(&verifierKeys, "verifier-key", nil, "`P=U...`: a verifier's NATS user (its public NKey, as faregate clearing verifier-key prints it) admitted by the embedded server to partition P only, with a verifier's permissions (repeat for each partition and verifier)")
	lf.register(cmd)
	f.StringVar(&lf.chainListen, "chain-rpc-listen", "", "host:port where the embedded chain serves its JSON-RPC for the role commands (default: a free loopback port, logged as chain_rpc); a fixed one for firewalled hosts")
	cmd.AddCommand(newClearingAdminCmds()...)
	cmd.AddCommand(newVerifierCmd(), newVerifierKeyCmd())
	cmd.AddCommand(newFacesCmd(), newFeedsCmd())
	cmd.AddCommand(newClearingKeyCmd(), newClearingRotateKeyCmd())
	return cmd
}

func splitHostPort(s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: want a number", p)
	}
	return host, port, nil
}

func newClearingKeyCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Print clearing's confirmation public key, the one terminals are provisioned with",
		Long: `Print the public half of the key clearing signs confirmations with (0x hex).
Terminals act only on confirmations signed by a key they were given with
--clearing-key. The key is created in the data dir on clearing's first start,
or by this command.`,
		Example: "  faregate clearing key --data data/clearing\n  faregate terminal --clearing-key $(faregate clearing key --data data/clearing) ...",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := fare.PrivateDir(dataDir); err != nil {
				return err
			}
			// Beside an existing store the key is printed, never made.
			_, statErr := os.Stat(filepath.Join(dataDir, clearing.ConfirmKeyFile))
			key, err := clearing.LoadConfirmKey(dataDir, !clearing.HasStore(clearing.StoreDir(dataDir)))
			if err != nil {
				return err
			}
			if errors.Is(statErr, fs.ErrNotExist) {
				// Said on stderr, the key alone on stdout: a mistyped --data
				// otherwise gave gates a key no clearing signs with.
				fmt.Fprintf(cmd.ErrOrStderr(), "made a new confirmation key in %s (no clearing had run there): if you meant an existing clearing, check --data\n", dataDir)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "0x%x\n", key.Public())
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "data/clearing", "clearing's data directory")
	return cmd
}

func newClearingRotateKeyCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "rotate-key",
		Short: "Replace clearing's confirmation key; terminals learn the new one from a rotation signed with the old",
		Long: `Replace the key clearing signs confirmations with. The new key is made, the
rotation to it is signed with the old key and appended to <data>/confirm-rotations,
and the old key is kept as confirm.key.<n>.old. Clearing sends the rotation chain
with every confirmation, so terminals provisioned with any earlier key trust the
new one from their next confirmation on and keep it. It refuses to run while
clearing is running on the directory; it takes effect at the next start.`,
		Example: "  faregate clearing rotate-key --data data/clearing",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dataDir, err := clearingDir(dataDir)
			if err != nil {
				return err
			}
			oldKey, newKey, err := clearing.RotateConfirmKey(dataDir, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "confirmation key rotated\n  old 0x%x\n  new 0x%x\n", []byte(oldKey), []byte(newKey))
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "data/clearing", "clearing's data directory")
	return cmd
}

// loadFeed loads a GTFS feed for live pricing, logging the loader's
// warnings, and names its version by the sha256 of its files.
// keptFeedVersion is the feed version clearing prices a kept run's taps
// under: the one its run.json records (recorded; "" for no kept run), which
// its journeys name. A feed changed in place since would price new taps
// under the old name (an outside test) and the audit reprice old days with
// it: refused. Runs kept by builds that named the version rather than hash
// the feed's files ("simulated-city") keep their name.
func keptFeedVersion(path, recorded, computed string) (string, error) {
	switch {
	case recorded == "" || recorded == computed:
		return computed, nil
	case !strings.HasPrefix(recorded, "sha256:"):
		return recorded, nil
	}
	return "", fmt.Errorf("the kept run's feed %s is not the version its run.json records (%s, priced with) but %s: it was changed since the run; put the run's feed back, and give a new one as --next-feed from a stated time", path, recorded, computed)
}

func loadFeed(path string, log *slog.Logger) (*fares.Feed, string, error) {
	feed, err := gtfs.LoadPath(path, gtfs.WithWarnings(func(w gtfs.Warning) { log.Warn("GTFS feed", "warning", w.String()) }))
	if err != nil {
		return nil, "", err
	}
	if feed.LegRules() == 0 {
		// Every tap would be applied unpriced, free of charge.
		return nil, "", fmt.Errorf("%s: fare_leg_rules.txt is missing or empty: the feed prices no leg (clearing prices live taps from Fares v2 leg rules)", path)
	}
	// The version depends on the feed's files alone (clearing.FeedVersionOf):
	// the same feed as a directory or a zip, under any name, is one version.
	version, err := clearing.FeedVersionOfPath(path)
	if err != nil {
		return nil, "", err
	}
	return feed, version, nil
}

// natsReachable reports an error when no server of the NATS URLs (comma
// separated, nats.go's forms) takes a TCP connection within a few seconds.
// It proves nothing about authentication: only that someone listens.
func natsReachable(ctx context.Context, urls string) error {
	var errs []error
	for _, u := range strings.Split(urls, ",") {
		p, err := parseNATSURL(u)
		if err != nil {
			continue // checkNATSURLs named it
		}
		port := p.Port()
		if port == "" {
			port = "4222"
			if p.Scheme == "ws" {
				port = "80"
			} else if p.Scheme == "wss" {
				port = "443"
			}
		}
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(p.Hostname(), port))
		if err == nil {
			c.Close()
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("no NATS server answers (nothing written: no contract deployed, no data dir): %w", errors.Join(errs...))
}

// portFree reports an error when addr cannot be listened on now (a port in
// use, an address not this host's): tried and let go again.
func portFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}
