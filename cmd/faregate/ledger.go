package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/ledger/merkle"
	"github.com/faregate/faregate/simulator"
)

// newLedgerCmd groups the commands that check clearing's results against the
// shared ledger. Other ledger subcommands attach here.
func newLedgerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Audit clearing's batches against the shared ledger and prove events",
	}
	cmd.AddCommand(newLedgerAuditCmd(), newLedgerProveCmd())
	return cmd
}

// auditSource says where an audit or a proof reads from: a clearing store
// and a chain, either both in one data directory or the store locally and
// the chain over JSON-RPC.
type auditSource struct {
	data, clearingData     string
	rpc, keyFile, contract string
	registry               string
	feed                   string
	nextFeed, nextFrom     string
}

func (s *auditSource) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.data, "data", "", "`DIR` of a simulate --data or clearing --data run: its clearing store (DIR/clearing/store or DIR/store) and embedded chain (DIR/chain)")
	f.StringVar(&s.clearingData, "clearing-data", "", "`DIR` of a clearing --data run whose store is checked against the chain at --eth-rpc")
	f.StringVar(&s.rpc, "eth-rpc", "", "Ethereum JSON-RPC endpoint of the shared ledger instead of the embedded chain")
	f.StringVar(&s.keyFile, "eth-key", "", "hex private key `FILE` (optional with --eth-rpc: only read calls are made, and none needs a key)")
	f.StringVar(&s.contract, "contract", "", "settlement contract address (required with --eth-rpc)")
	f.StringVar(&s.registry, "registry", "", "`FILE`: the registry clearing runs with, whose currency the output's money is in (default DIR/registry.json, which simulate --data keeps)")
	cmd.MarkFlagsMutuallyExclusive("data", "clearing-data")
}

// registerFeed adds --feed, the feed the audit reprices every rider day with.
func (s *auditSource) registerFeed(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.feed, "feed", "", "GTFS feed `DIR|ZIP` clearing prices with: every rider day is repriced from the stored events and compared with what they posted (default: a simulate --data run's own feed, named in its run.json)")
	cmd.Flags().StringVar(&s.nextFeed, "next-feed", "", "the next feed version clearing was given (`DIR|ZIP`, its --next-feed): fare days from --next-feed-from are repriced with it")
	cmd.Flags().StringVar(&s.nextFrom, "next-feed-from", "", "when --next-feed took effect, as clearing was told (RFC 3339 with zone)")
}

// auditFeed is the feed an audit reprices with, and where it came from;
// next is the next feed version clearing was given, from nextFrom.
type auditFeed struct {
	path     string
	from     string // "--feed" or the run.json that named it
	next     string
	nextFrom time.Time
}

// checkFeedFlags refuses --next-feed without its time or --feed, and a
// time that does not parse.
func (s *auditSource) checkFeedFlags() error {
	switch {
	case (s.nextFeed == "") != (s.nextFrom == ""):
		return usageErr("--next-feed and --next-feed-from go together")
	case s.nextFeed != "" && s.feed == "":
		return usageErr("--next-feed needs --feed, the version it replaced")
	}
	if s.nextFrom != "" {
		if _, err := time.Parse(time.RFC3339, s.nextFrom); err != nil {
			return usageErrorf("--next-feed-from %q: want an RFC 3339 time with its zone, e.g. 2027-01-01T04:00:00+01:00", s.nextFrom)
		}
	}
	return nil
}

// feedOf is the feed the audit reprices with: --feed, else the kept
// simulation's (its run.json names it); nil when neither.
func (s *auditSource) feedOf(dir string) (*auditFeed, error) {
	if err := s.checkFeedFlags(); err != nil {
		return nil, err
	}
	if s.feed != "" {
		f := &auditFeed{path: s.feed, from: "--feed", next: s.nextFeed}
		if s.nextFrom != "" {
			f.nextFrom, _ = time.Parse(time.RFC3339, s.nextFrom) // checked
		}
		return f, nil
	}
	man, ok, err := simulator.LoadManifest(dir)
	if err != nil || !ok || man.Feed == "" {
		return nil, err
	}
	return &auditFeed{path: filepath.Join(dir, man.Feed), from: filepath.Join(dir, simulator.ManifestFile)}, nil
}

// fareAudit is the repricing's outcome: the audit (with the feed version
// the store priced with), or why none was made (Skipped: not a failure)
// or why it failed (Err).
type fareAudit struct {
	*clearing.FareAudit
	Version   string
	Stored    []string // the versions the store's rider days were priced with
	Scheduled []string // versions from the feed schedule followed: "VERSION from DAY"
	// Given are the versions of the feeds given (--feed, --next-feed), and
	// Described them with their paths and when the next takes over.
	Given     []string
	Described string
	Skipped   string
	Err       error
}

// auditFares reprices every rider day of the store with the feed, as
// clearing priced them live: the registry's terminal legs, the riders'
// enrolled categories, the riders' pseudonyms under clearing's rider key.
// A store whose rider days were priced with several feed versions (a
// scheduled next feed) is not repriced: one feed would call every day of
// the other version wrong.
func (o *opened) auditFares(f *auditFeed, stderr io.Writer) fareAudit {
	feed, err := gtfs.LoadPath(f.path, feedWarnings(stderr))
	if err != nil {
		return fareAudit{Err: fmt.Errorf("the feed %s (from %s): %w", f.path, f.from, err)}
	}
	var next *fares.Feed
	if f.next != "" {
		if next, err = gtfs.LoadPath(f.next, feedWarnings(stderr)); err != nil {
			return fareAudit{Err: fmt.Errorf("the next feed %s: %w", f.next, err)}
		}
	}
	// Versions scheduled while clearing ran (POST /v1/feeds) are kept in
	// its data directory: the audit follows them as clearing does.
	sched, schedFeeds, err := clearing.LoadFeedSchedule(filepath.Dir(o.storeDir))
	if err != nil {
		return fareAudit{Err: err}
	}
	// Amounts are shown in the registry's currency: a feed pricing in
	// another is no feed clearing ran with (it refuses one at start).
	for _, fd := range []struct {
		path string
		feed *fares.Feed
	}{{f.path, feed}, {f.next, next}} {
		if fd.feed == nil {
			continue
		}
		if err := clearing.CheckFeedCurrency(fd.feed, o.currency); err != nil {
			return fareAudit{Err: fmt.Errorf("the feed %s: %w", fd.path, err)}
		}
	}
	book := clearing.NewPricingBook(o.currency, feed, "", next, "", f.nextFrom)
	chain := 1
	if next != nil {
		chain++
	}
	var followed []string
	for i, sf := range sched {
		var ok bool
		if book, ok = clearing.AppendFeedVersion(book, schedFeeds[i], sf.Version, sf.From); ok {
			chain++
			followed = append(followed, sf.Version+" from "+sf.FromFareDay)
		}
	}
	versions, err := o.store.RiderDayFeedVersions()
	if err != nil {
		return fareAudit{Err: err}
	}
	if len(versions) > chain {
		var vs []string
		for v, n := range versions {
			vs = append(vs, fmt.Sprintf("%s (%d rider days)", v, n))
		}
		slices.Sort(vs)
		return fareAudit{Skipped: fmt.Sprintf("the store's rider days were priced with %d feed versions, %s: give the feeds clearing was given (--feed, --next-feed, --next-feed-from)", len(vs), strings.Join(vs, ", "))}
	}
	version := strings.Join(slices.Sorted(maps.Keys(versions)), ", ")
	key, err := fare.LoadSecret(filepath.Join(filepath.Dir(o.storeDir), clearing.RiderKeyFile), clearing.RiderKeySize, "clearing's rider pseudonym key")
	if err != nil {
		return fareAudit{Err: fmt.Errorf("repricing fares needs the riders' pseudonyms: %w", err)}
	}
	p := &clearing.Pricing{
		Book:     book,
		Legs:     o.legs,
		StopLegs: o.stopLegs,
		Category: o.store.EnrolledCategory,
	}
	fa, err := o.store.AuditFares(p, func(m fare.MediaKind, token string) string { return clearing.RiderAccount(key, m, token) })
	if err != nil {
		return fareAudit{Err: fmt.Errorf("reprice fares with %s: %w", f.path, err)}
	}
	out := fareAudit{FareAudit: fa, Version: version, Stored: slices.Sorted(maps.Keys(versions)), Scheduled: followed, Described: f.path}
	for _, sf := range sched {
		out.Given = append(out.Given, sf.Version)
	}
	if v, err := clearing.FeedVersionOfPath(f.path); err == nil {
		out.Given = append(out.Given, v)
		out.Described = fmt.Sprintf("%s, version %s", f.path, v)
	}
	if f.next != "" {
		next := f.next
		if v, err := clearing.FeedVersionOfPath(f.next); err == nil {
			out.Given = append(out.Given, v)
			next += ", version " + v
		}
		out.Described += fmt.Sprintf("; then %s, from %s", next, f.nextFrom.Format(time.RFC3339))
	}
	return out
}

// registryPath is the registry file registryOf reads.
func (s *auditSource) registryPath(dir string) string {
	if s.registry != "" {
		return s.registry
	}
	return filepath.Join(dir, "registry.json")
}

// registryOf is the clearing house's registry (--registry, else
// registry.json in dir): its currency, in which the output shows money, its
// operators (whose answers to the batches the audit lists) and its terminals'
// legs (which a repricing needs).
func (s *auditSource) registryOf(dir string) (*clearing.Registry, error) {
	path := s.registryPath(dir)
	if s.registry == "" {
		if _, err := os.Stat(path); err != nil {
			return nil, usageErrorf("--registry FILE is required: the registry clearing runs with, for the currency of the money shown (%s has none)", dir)
		}
	}
	reg, err := loadRegistry("--registry", path)
	if err != nil {
		return nil, fmt.Errorf("--registry: %w", err)
	}
	return reg, nil
}

// findStore locates the clearing store under dir: DIR/clearing/store as
// `simulate --data` lays it out, or DIR/store as `clearing --data` does.
func findStore(dir string) (string, error) {
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	candidates := []string{clearing.StoreDir(filepath.Join(dir, "clearing")), clearing.StoreDir(dir)}
	for _, c := range candidates {
		if clearing.HasStore(c) {
			return c, nil
		}
	}
	return "", fmt.Errorf("no clearing store in %s (looked for %s)", dir, strings.Join(candidates, " and "))
}

// opened is what an auditSource opens; close releases it all.
type opened struct {
	store     *clearing.Store
	storeDir  string
	dir       string // the data dir given
	currency  string // the registry's: money in the output is in it
	legs      map[string]clearing.TerminalLeg
	stopLegs  map[string]clearing.TerminalLeg
	operators []string
	led       ledger.Ledger
	chainDesc string
	terminals *clearing.ChainTerminals // the chain's terminal registry
}

func (o *opened) close() {
	if o.led != nil {
		o.led.Close()
	}
	if o.store != nil {
		o.store.Close()
	}
}

// open opens the store read-only and the chain, and reads the registry's
// currency. It never creates or deploys anything: a wrong directory, a
// missing contract or a missing registry is an error, found before the chain
// is opened.
func (s *auditSource) open(ctx context.Context, log *slog.Logger) (*opened, error) {
	dir := s.data
	switch {
	case s.data == "" && s.clearingData == "":
		return nil, usageErr("say where the clearing store is: --data DIR, or --clearing-data DIR with --eth-rpc")
	case s.clearingData != "":
		if s.rpc == "" {
			return nil, usageErr("--clearing-data needs --eth-rpc (for a store and its embedded chain in one directory use --data)")
		}
		dir = s.clearingData
	}
	storeDir, err := findStore(dir)
	if err != nil {
		return nil, err
	}
	chainDir := filepath.Join(dir, "chain")
	if s.rpc != "" {
		if s.contract == "" {
			return nil, usageErr("--eth-rpc needs --contract (auditing never deploys a contract)")
		}
	} else if _, err := os.Stat(filepath.Join(chainDir, "ledger.json")); err != nil {
		// ledger.json records the deployed contract; without it OpenEmbedded
		// would start a new chain and deploy one, which an audit must not do.
		return nil, fmt.Errorf("no embedded chain in %s (%v); use --eth-rpc for a remote chain", chainDir, err)
	}
	reg, err := s.registryOf(dir)
	if err != nil {
		return nil, err
	}
	o := &opened{storeDir: storeDir, dir: dir, currency: reg.Currency, operators: reg.OperatorIDs(), legs: reg.LegsByTerminal(), stopLegs: reg.LegsByStop()}
	if s.rpc != "" {
		var c *ledger.Client
		if s.keyFile != "" {
			c, err = dialLedger(ctx, s.rpc, s.keyFile, s.contract)
		} else {
			c, err = ledger.DialReadOnly(ctx, s.rpc, s.contract)
		}
		if err != nil {
			return nil, fmt.Errorf("open ledger: %w", err)
		}
		o.led, o.chainDesc = c, fmt.Sprintf("%s, contract %s", fare.RedactURL(s.rpc), c.ContractAddress().Hex())
	} else {
		// go-ethereum's start-up warnings (a P2P server with no peers) are
		// noise in a report; errors still show.
		quiet := quietLogger(os.Stderr)
		e, err := ledger.OpenEmbedded(ctx, chainDir, ledger.WithLogger(quiet))
		if err != nil {
			if strings.Contains(err.Error(), "datadir already used") {
				// The chain is one process's: clearing's, while it runs.
				return nil, fmt.Errorf("open ledger: the embedded chain in %s is open in another process (a clearing running on this data dir): stop it first (it holds its store too), or ask its API (GET /v1/batches/{id}, /v1/events/{id}), which serves the same proofs live; a copy of the data dir taken with clearing stopped (a backup) can be audited against the running chain over JSON-RPC with --clearing-data COPY --eth-rpc URL --contract ADDR (clearing logs the URL; DIR/chain/ledger.json holds the contract): %w", chainDir, err)
			}
			return nil, fmt.Errorf("open ledger: %w", err)
		}
		o.led, o.chainDesc = e, fmt.Sprintf("embedded chain %s, contract %s", chainDir, e.ContractAddress().Hex())
	}
	// The store must be checked against the chain it anchored to: the same
	// contract address on another chain is another contract.
	if err := clearing.CheckLedgerBinding(filepath.Dir(storeDir), o.led.ContractAddress(), o.led.ChainID()); err != nil {
		o.close()
		return nil, err
	}
	o.terminals = clearing.NewChainTerminals(o.led)
	if err := o.terminals.Sync(ctx); err != nil {
		o.close()
		return nil, err
	}
	if o.store, err = clearing.OpenStoreReadOnly(storeDir, log); err != nil {
		o.close()
		return nil, err
	}
	if err := o.store.CheckCurrency(o.currency); err != nil {
		o.close()
		return nil, fmt.Errorf("the registry %s: %w (give the registry clearing runs with)", s.registryPath(dir), err)
	}
	return o, nil
}

func newLedgerAuditCmd() *cobra.Command {
	var (
		src     auditSource
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Recompute every batch from clearing's stored events and compare with the sealed records, the journal and the chain",
		Long: `audit re-reads every event of every sealed settlement batch from the clearing
store, re-hashes its signed bytes into the batch's Merkle root and sums its fares
into per-operator nets, and compares them with the stored batch record, the
journal and the chain. It lists batches the chain holds and the store lacks,
sealed batches not on chain yet (pending, not a mismatch), proves one event per
batch through the contract's verify view, compares the contract's cumulative
operator balances, and checks that the journal balances. Each mismatch is printed
with the batch, the field and the values; the exit status is non-zero if there
is any.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return usageErrorf("--timeout %s: want a positive duration", timeout)
			}
			if err := src.checkFeedFlags(); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			o, err := src.open(ctx, slog.Default())
			if err != nil {
				return err
			}
			defer o.close()
			f, err := src.feedOf(o.dir)
			if err != nil {
				return err
			}
			rep, err := o.store.Audit(ctx, o.led, clearing.AuditOptions{Terminals: o.terminals, Currency: o.currency, Operators: o.operators})
			if err != nil {
				return err
			}
			// The batches' nets are the events' postings summed; whether
			// each posting is what the feed charges is the repricing's.
			// Whatever becomes of it, the rest of the audit is printed.
			fa := fareAudit{Skipped: "no feed: give --feed DIR|ZIP, the feed clearing prices with, to reprice every rider day from the stored events"}
			feedPath := ""
			if f != nil {
				fa, feedPath = o.auditFares(f, cmd.ErrOrStderr()), f.path
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				ao := newAuditOutput(rep, fa, feedPath, o.currency)
				ao.RefusedRegistrations = o.terminals.Refused()
				if err := enc.Encode(ao); err != nil {
					return err
				}
			} else {
				printAudit(out, o, rep)
				printFareAudit(out, fa, feedPath, o.currency)
			}
			switch {
			case !rep.Clean():
				return fmt.Errorf("audit found %d mismatch(es)", len(rep.Mismatches)+fareMismatches(fa.FareAudit))
			case fa.Err != nil:
				return fmt.Errorf("fares not repriced: %w", fa.Err)
			case fareMismatches(fa.FareAudit) > 0:
				return fmt.Errorf("audit found %d rider day(s) whose postings differ from the feed's price", fa.Count)
			}
			return nil
		},
	}
	src.register(cmd)
	src.registerFeed(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	return cmd
}

// AuditOutput is what `faregate ledger audit --json` prints: the audit report
// with the journal's imbalance as money.
type AuditOutput struct {
	*clearing.AuditReport
	Journal  JournalAuditOutput  `json:"journal"`
	Payments PaymentsAuditOutput `json:"payments"`
	// Fares is the repricing of every rider day with FaresFeed; absent
	// when none was made, FaresSkipped or FaresError then saying why.
	Fares     *FareAuditOutput `json:"fares,omitempty"`
	FaresFeed string           `json:"fares_feed,omitempty"`
	// FaresFeedVersion is the version the store's rider days were priced
	// with.
	FaresFeedVersion string `json:"fares_feed_version,omitempty"`
	// FaresScheduled are the versions scheduled while clearing ran
	// (<data>/feeds) that the repricing followed: "VERSION from DAY".
	FaresScheduled []string `json:"fares_scheduled,omitempty"`
	FaresSkipped   string   `json:"fares_skipped,omitempty"`
	FaresError     string   `json:"fares_error,omitempty"`
	// RefusedRegistrations are terminal registrations on chain that
	// clearing does not follow (no event under them is applied): the
	// chain's registry holds them, Faregate's views list them apart. Not a
	// mismatch.
	RefusedRegistrations []clearing.RefusedRegistration `json:"refused_registrations,omitempty"`
}

// FareAuditOutput is clearing.FareAudit with its sums as money.
type FareAuditOutput struct {
	*clearing.FareAudit
	Posted     clearing.Money `json:"posted"`
	Recomputed clearing.Money `json:"recomputed"`
}

// fareMismatches counts the rider days a repricing found wrong (0 without one).
func fareMismatches(fa *clearing.FareAudit) int {
	if fa == nil {
		return 0
	}
	return fa.Count
}

// printFareAudit prints the repricing's findings, or why none was made.
func printFareAudit(w io.Writer, a fareAudit, feedPath, currency string) {
	switch {
	case a.Err != nil:
		fmt.Fprintf(w, "FARES NOT REPRICED: %v\n", a.Err)
		return
	case a.FareAudit == nil:
		fmt.Fprintf(w, "fares: not repriced (%s)\n", a.Skipped)
		return
	}
	fa := a.FareAudit
	var strangers []string // versions the store priced with that none given is
	for _, v := range a.Stored {
		if !slices.Contains(a.Given, v) {
			strangers = append(strangers, v)
		}
	}
	if len(strangers) > 0 && len(a.Given) > 0 {
		// An outside test read mismatches an older feed gave as the
		// store's, the versions named nowhere side by side; and, with
		// --next-feed, a note naming only the first feed, alike whether
		// the chain given was right or not.
		fmt.Fprintf(w, "NOTE fares: the feeds given are %s; the store priced rider days with %s, of which %s is none of them: a rider day priced with it may differ for that\n",
			a.Described, strings.Join(a.Stored, ", "), strings.Join(strangers, ", "))
	}
	for _, m := range fa.Mismatches {
		fmt.Fprintf(w, "MISMATCH fares %s\n", m)
	}
	for _, m := range fa.EarlierRules {
		fmt.Fprintf(w, "NOTE fares: earlier pricing rules: %s\n", m)
	}
	if fa.EarlierRulesCount > 0 {
		// Not a failure: an upgrade changed what is charged, and these
		// days' last events were priced by the build before it.
		fmt.Fprintf(w, "NOTE fares: %d rider day(s) priced under earlier pricing rules than this build's (%d) differ from today's price; not counted as mismatches\n",
			fa.EarlierRulesCount, fa.RulesVersion)
	}
	verdict := "every rider day as the feed prices it"
	if fa.Count > 0 {
		verdict = fmt.Sprintf("%d RIDER DAYS DIFFER", fa.Count)
	}
	with := feedPath
	if a.Described != "" {
		with = a.Described
	}
	if len(a.Scheduled) > 0 {
		with += " and the versions scheduled while clearing ran, " + strings.Join(a.Scheduled, ", ")
	}
	rules := fmt.Sprintf("pricing rules %d, by which the store records no event priced (its latest were priced by an earlier build)", fa.RulesVersion)
	if fa.RulesSince != nil {
		rules = fmt.Sprintf("pricing rules %d, by which the store priced from apply index %d on", fa.RulesVersion, *fa.RulesSince)
	}
	priced := fmt.Sprintf("the store priced with feed version %s; if that was another feed, give it with --feed", a.Version)
	if a.Version == "" {
		priced = "the store has priced no rider day yet" // an outside test read "feed version ;"
	}
	fmt.Fprintf(w, "fares repriced with %s (%s): %s; %d rider days, %d journeys (%d incomplete, %d capped), posted %s, recomputed %s; %s\n",
		with, priced, verdict, fa.RiderDays, fa.Journeys, fa.Incomplete, fa.Capped, moneyTextOf(fa.Posted, currency), moneyTextOf(fa.Recomputed, currency), rules)
}

// JournalAuditOutput is clearing.Audit with its imbalance as money.
type JournalAuditOutput struct {
	Transfers  int            `json:"transfers"`
	Imbalance  clearing.Money `json:"imbalance"`
	Mismatches []string       `json:"mismatches,omitempty"`
}

// PaymentsAuditOutput is clearing.PaymentsAudit with its sum as money.
type PaymentsAuditOutput struct {
	Payments   int            `json:"payments"`
	Approved   int            `json:"approved"`
	Paid       clearing.Money `json:"paid"`
	Mismatches []string       `json:"mismatches,omitempty"`
}

func newAuditOutput(rep *clearing.AuditReport, a fareAudit, feedPath, currency string) AuditOutput {
	j, p := rep.Journal, rep.Payments
	out := AuditOutput{AuditReport: rep, Journal: JournalAuditOutput{Transfers: j.Transfers,
		Imbalance: clearing.MoneyOf(j.Imbalance, currency), Mismatches: j.Mismatches},
		Payments:  PaymentsAuditOutput{Payments: p.Payments, Approved: p.Approved, Paid: clearing.MoneyOf(p.Paid, currency), Mismatches: p.Mismatches},
		FaresFeed: feedPath, FaresFeedVersion: a.Version, FaresScheduled: a.Scheduled, FaresSkipped: a.Skipped}
	if a.Err != nil {
		out.FaresError = a.Err.Error()
	}
	if fa := a.FareAudit; fa != nil {
		out.Fares = &FareAuditOutput{FareAudit: fa, Posted: clearing.MoneyOf(fa.Posted, currency), Recomputed: clearing.MoneyOf(fa.Recomputed, currency)}
	}
	return out
}

// maxRefusedShown bounds the registrations not followed that the text of
// an audit or a status lists one by one.
const maxRefusedShown = 20

func printAudit(w io.Writer, o *opened, rep *clearing.AuditReport) {
	fmt.Fprintf(w, "clearing store  %s\n", o.storeDir)
	fmt.Fprintf(w, "ledger          %s\n", o.chainDesc)
	for _, b := range rep.Batches {
		root := b.ComputedRoot
		if root == "" {
			root = b.ChainRoot
		}
		fmt.Fprintf(w, "batch %4d  %-16s %7d events  root %s\n", b.ID, b.State, b.Events, root)
	}
	for _, m := range rep.Mismatches {
		fmt.Fprintf(w, "MISMATCH %s\n", m)
	}
	for _, d := range rep.Disputes {
		fmt.Fprintf(w, "DISPUTED batch %d by %s (reason sha256 %s): an operator's answer, not a finding of this audit\n", d.BatchID, d.Operator, d.ReasonHash)
	}
	refused := o.terminals.Refused()
	for i, rr := range refused {
		if i == maxRefusedShown {
			// An operator can register junk at will: its notes must not
			// bury the findings above (an outside review's 150).
			fmt.Fprintf(w, "note: and %d more registrations on chain not followed by clearing (--json lists them all)\n", len(refused)-i)
			break
		}
		fmt.Fprintf(w, "note: terminal %q of operator %q (key %s, block %d) is registered on chain and not followed by clearing, so nothing it signs is applied: %s\n",
			rr.Terminal, rr.Operator, rr.PublicKey, rr.Block, rr.Why)
	}
	if len(rep.Unrecorded) > 0 {
		fmt.Fprintf(w, "note: batches %v are on chain but their commit is not recorded in the store yet (clearing records it on its next start)\n", rep.Unrecorded)
	}
	fmt.Fprintf(w, "journal: %d transfers, imbalance %s, %d balances differing from the journal\n",
		rep.Journal.Transfers, moneyTextOf(rep.Journal.Imbalance, o.currency), len(rep.Journal.Mismatches))
	fmt.Fprintf(w, "payments: %d acquirer answers posted, %d approved, paid %s, %d differing from the journal\n",
		rep.Payments.Payments, rep.Payments.Approved, moneyTextOf(rep.Payments.Paid, o.currency), len(rep.Payments.Mismatches))
	sigs := fmt.Sprintf("%d signatures checked against the on-chain terminal registry, %d failed", rep.SignaturesChecked, rep.SignaturesFailed)
	verdict := "clean"
	if !rep.Clean() {
		verdict = fmt.Sprintf("%d MISMATCHES", len(rep.Mismatches))
	}
	fmt.Fprintf(w, "audit %s: %d batches in the store, %d on chain, %d pending; %d events re-hashed, %s, %d proofs verified on chain, %d open-period events\n",
		verdict, rep.StoreBatches, rep.ChainBatches, len(rep.Pending), rep.EventsChecked, sigs, rep.ProofsChecked, rep.OpenEvents)
	if rep.AnswersChecked {
		fmt.Fprintf(w, "operators' answers on chain: %d acknowledged, %d disputed\n", rep.Acknowledged, len(rep.Disputes))
	}
}

// ProofOutput is what `faregate ledger prove --json` prints. Root, Value and
// Proof are what @openzeppelin/merkle-tree's StandardMerkleTree.verify takes
// with leaf encoding ["bytes32"] (see ledger/contracts/verify-proof.js).
type ProofOutput struct {
	Event EventOutput `json:"event"`
	Batch BatchOutput `json:"batch"`
	// Root is the batch's Merkle root as the store recomputes it.
	Root string `json:"root"`
	// Value is the leaf value: sha256 of the event's signed bytes.
	Value string `json:"value"`
	// Proof lists the sibling hashes from the leaf up.
	Proof []string `json:"proof"`
	// VerifiedOffChain: ledger/merkle accepts the proof against Root.
	VerifiedOffChain bool `json:"verified_off_chain"`
	// VerifiedOnChain: the contract's verify view accepts it for the batch.
	VerifiedOnChain bool `json:"verified_on_chain"`
	// ChainRoot is the root the chain holds for the batch.
	ChainRoot string `json:"chain_root"`
	Contract  string `json:"contract"`
	// Differences lists where the store's sealed record of the batch (its
	// root, period, event count, commit) differs from the events or the
	// chain; a proof with any is refused.
	Differences []string `json:"differences,omitempty"`
	// Remined says the chain holds the batch's commit transaction in
	// another block than the store recorded (Batch gives the chain's).
	Remined string `json:"remined,omitempty"`
}

// EventOutput is an event's decoded fields and how clearing applied it.
type EventOutput struct {
	clearing.EventFields
	// Fare is what the event posted, as money.
	Fare       clearing.Money `json:"fare"`
	AppliedAt  time.Time      `json:"applied_at"`
	ApplyIndex uint64         `json:"apply_index"`
	// Signed is the terminal-signed encoding, 0x hex.
	Signed string `json:"signed"`
}

// BatchOutput is the batch an event settled in.
type BatchOutput struct {
	ID          uint64    `json:"id"`
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	EventCount  uint64    `json:"event_count"`
	Root        string    `json:"root"`
	TxHash      string    `json:"tx_hash,omitempty"`
	BlockNumber uint64    `json:"block_number,omitempty"`
}

func newLedgerProveCmd() *cobra.Command {
	var (
		src     auditSource
		eventID string
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "prove --event ID",
		Short: "Print an event, its batch and its Merkle proof, and verify the proof off chain and through the contract",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Ids print bare; a 0x in front (as hashes and keys have) is taken too.
			id, err := fare.ParseEventID(strings.TrimPrefix(eventID, "0x"))
			if err != nil {
				return usageErrorf("--event: %v", err)
			}
			if timeout <= 0 {
				return usageErrorf("--timeout %s: want a positive duration", timeout)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			o, err := src.open(ctx, slog.Default())
			if err != nil {
				return err
			}
			defer o.close()
			po, err := prove(ctx, o, id)
			if err != nil {
				return err
			}
			// Times in the agency's zone when the feed is known, as the
			// settlement API shows them; UTC otherwise.
			loc := time.UTC
			if f, err := src.feedOf(o.dir); err == nil && f != nil {
				switch feed, err := gtfs.LoadPath(f.path); {
				case err == nil:
					loc = feed.Location()
				case f.from == "--feed":
					// Given by hand, a feed that does not load is a
					// mistake, as ledger audit takes it (an outside test
					// saw only a warning and exit 0).
					return fmt.Errorf("--feed %s does not load: %w", f.path, err)
				default:
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: times in UTC: the feed %s (from %s) does not load: %v\n", f.path, f.from, err)
				}
			}
			po.in(loc)
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(po); err != nil {
					return err
				}
				return proofVerdict(po)
			}
			verdict := proofVerdict(po)
			printProof(out, po, verdict)
			return verdict
		},
	}
	src.register(cmd)
	cmd.Flags().StringVar(&src.feed, "feed", "", "GTFS feed `DIR|ZIP` clearing prices with, whose agency's time zone the times are shown in (default: a simulate --data run's own feed; without one, UTC)")
	cmd.Flags().StringVar(&eventID, "event", "", "event id (32 hex digits, 0x optional)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (root, value and proof as @openzeppelin/merkle-tree takes them)")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	cmd.MarkFlagRequired("event")
	return cmd
}

// proofVerdict fails a proof unless the store's root is the chain's and
// the proof verifies both off chain and through the contract.
func proofVerdict(po *ProofOutput) error {
	id := po.Event.ID
	switch {
	case po.Root != po.ChainRoot:
		return fmt.Errorf("event %s: the store's root %s of batch %d differs from the chain's %s: the proof proves nothing about what was anchored (run faregate ledger audit)", id, po.Root, po.Batch.ID, po.ChainRoot)
	case len(po.Differences) > 0:
		return fmt.Errorf("event %s: the store's record of batch %d does not agree: %s (run faregate ledger audit)", id, po.Batch.ID, strings.Join(po.Differences, "; "))
	case !po.VerifiedOffChain && !po.VerifiedOnChain:
		return fmt.Errorf("event %s: the proof verifies neither off chain nor through the contract", id)
	case !po.VerifiedOffChain:
		return fmt.Errorf("event %s: the proof does not verify off chain", id)
	case !po.VerifiedOnChain:
		return fmt.Errorf("event %s: the contract's verify view rejects the proof", id)
	}
	return nil
}

// prove builds an event's proof from the store and checks it both ways. An
// event the store lacks, one still in the open period and one whose batch is
// not on chain yet are errors.
func prove(ctx context.Context, o *opened, id fare.EventID) (*ProofOutput, error) {
	proof, rec, err := o.store.Prove(id)
	if errors.Is(err, clearing.ErrNotFound) && rec == nil {
		return nil, fmt.Errorf("event %s is not in the clearing store %s", id, o.storeDir)
	}
	if errors.Is(err, clearing.ErrNotFound) {
		return nil, fmt.Errorf("event %s is in the open settlement period (apply index %d): it has a proof once the period is sealed", id, rec.ApplyIndex)
	}
	if err != nil {
		return nil, err
	}
	sig, err := fare.Decode(rec.Raw)
	if err != nil {
		return nil, fmt.Errorf("event %s: stored signed bytes: %w", id, err)
	}
	b, err := o.store.Batch(proof.BatchID)
	if err != nil {
		return nil, err
	}
	e := sig.Event
	// The rider as the API shows it, never the raw card token (it is in the
	// signed bytes, for whoever must check the signature).
	fields := clearing.NewEventFields(&e).Pseudonymous("")
	// Read, never made here: without the key the rider is not shown.
	if key, err := fare.LoadSecret(filepath.Join(filepath.Dir(o.storeDir), clearing.RiderKeyFile), clearing.RiderKeySize, "rider pseudonym key"); err == nil {
		fields = fields.Pseudonymous(clearing.RiderAccount(key, e.Media, e.MediaToken))
	}
	po := &ProofOutput{
		Event: EventOutput{
			EventFields: fields, Fare: clearing.MoneyOf(rec.Fare, o.currency), AppliedAt: rec.AppliedAt, ApplyIndex: rec.ApplyIndex,
			Signed: "0x" + hex.EncodeToString(rec.Raw),
		},
		Batch: BatchOutput{ID: b.ID, PeriodStart: b.PeriodStart, PeriodEnd: b.PeriodEnd, EventCount: b.EventCount, Root: hex32(b.Root)},
		Root:  hex32(proof.Root), Value: hex32(proof.Leaf), Proof: make([]string, len(proof.Path)),
		VerifiedOffChain: merkle.Verify(proof.Root, proof.Leaf, proof.Path),
		Contract:         o.led.ContractAddress().Hex(),
	}
	for i, p := range proof.Path {
		po.Proof[i] = hex32(p)
	}
	if c, err := o.store.Commit(b.ID); err == nil && c.TxHash != ([32]byte{}) {
		po.Batch.TxHash, po.Batch.BlockNumber = hex32(c.TxHash), c.BlockNumber
	}
	onChain, err := o.led.Batch(ctx, b.ID)
	if errors.Is(err, ledger.ErrBatchNotFound) {
		return nil, fmt.Errorf("event %s: batch %d is sealed but not on chain yet", id, b.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("event %s: read batch %d from the chain: %w", id, b.ID, err)
	}
	po.ChainRoot = hex32(onChain.Root)
	po.followChainBlock(onChain)
	po.Differences = recordDifferences(b, proof.Root, onChain, po.Batch)
	if po.VerifiedOnChain, err = o.led.VerifyInclusion(ctx, b.ID, proof.Leaf, proof.Path); err != nil {
		return nil, fmt.Errorf("event %s: contract verify: %w", id, err)
	}
	return po, nil
}

// followChainBlock shows the chain's block for the batch's commit when the
// chain holds the transaction the store recorded in another block: the
// chain rewound past the recorded one and mined it again, and a running
// clearing's commit loop records the chain's block (an outside test saw
// every proof of such batches refused for good).
func (po *ProofOutput) followChainBlock(onChain ledger.Batch) {
	if po.Batch.TxHash != hex32(onChain.TxHash) || po.Batch.BlockNumber == onChain.BlockNumber || onChain.BlockNumber == 0 {
		return
	}
	po.Remined = fmt.Sprintf("the store recorded the commit in block %d; the chain holds the same transaction in block %d (it rewound past block %d and mined it again; a running clearing records the chain's block at its next commit tick)", po.Batch.BlockNumber, onChain.BlockNumber, po.Batch.BlockNumber)
	po.Batch.BlockNumber = onChain.BlockNumber
}

// recordDifferences compares the store's sealed record of a batch with the
// root recomputed from its events and with the chain's batch (and the
// commit shown, when the store kept one).
func recordDifferences(b *clearing.BatchRecord, root [32]byte, onChain ledger.Batch, shown BatchOutput) []string {
	var out []string
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	if b.Root != root {
		out = append(out, fmt.Sprintf("the sealed record's root %s is not the root %s of the batch's events", hex32(b.Root), hex32(root)))
	}
	if b.EventCount != onChain.EventCount {
		out = append(out, fmt.Sprintf("the sealed record counts %d events, the chain %d", b.EventCount, onChain.EventCount))
	}
	if b.PeriodStart.Unix() != onChain.PeriodStart.Unix() || b.PeriodEnd.Unix() != onChain.PeriodEnd.Unix() {
		out = append(out, fmt.Sprintf("the sealed record's period %s .. %s, the chain's %s .. %s", rfc(b.PeriodStart), rfc(b.PeriodEnd), rfc(onChain.PeriodStart), rfc(onChain.PeriodEnd)))
	}
	if shown.TxHash != "" && (shown.TxHash != hex32(onChain.TxHash) || shown.BlockNumber != onChain.BlockNumber) {
		out = append(out, fmt.Sprintf("the store's commit (tx %s, block %d) is not the chain's (tx %s, block %d)", shown.TxHash, shown.BlockNumber, hex32(onChain.TxHash), onChain.BlockNumber))
	}
	return out
}

// in shows the proof's times in loc.
func (po *ProofOutput) in(loc *time.Location) {
	e, b := &po.Event, &po.Batch
	e.DeviceTime, e.AppliedAt = e.DeviceTime.In(loc), e.AppliedAt.In(loc)
	b.PeriodStart, b.PeriodEnd = b.PeriodStart.In(loc), b.PeriodEnd.In(loc)
}

func hex32(b [32]byte) string { return "0x" + hex.EncodeToString(b[:]) }

// printProof writes p as text, ending with the verdict (nil: proven): the
// two "verified" lines check the proof's path alone, and an outside test
// read their "yes" as the answer where the store's record disagreed.
func printProof(w io.Writer, p *ProofOutput, verdict error) {
	e := p.Event
	fmt.Fprintf(w, "event %s\n", e.ID)
	fmt.Fprintf(w, "  terminal %s  operator %s  stop %s  gate %s\n", e.Terminal, e.Operator, e.Stop, e.Gate)
	rider := e.Rider
	if rider == "" {
		rider = "(not shown: no rider key beside the store)"
	}
	category := e.RiderCategory
	if category == "" {
		category = "(the feed's default)"
	}
	fmt.Fprintf(w, "  %s  %s  rider %s  category %s  decision %s", e.Direction, e.Media, rider, category, e.Decision)
	if e.Reason != "" {
		fmt.Fprintf(w, " (%s)", e.Reason)
	}
	fmt.Fprintf(w, "\n  sequence %d  device time %s  fare %s\n", e.Sequence, e.DeviceTime.Format(time.RFC3339Nano), moneyText(e.Fare))
	fmt.Fprintf(w, "  applied %s at apply index %d\n", e.AppliedAt.Format(time.RFC3339Nano), e.ApplyIndex)
	// The signed bytes hold the raw card token: --json carries them (to
	// check the leaf and the signature), the text never shows them.
	fmt.Fprintf(w, "  signed bytes %d bytes (with --json; they hold the raw card token)\n", (len(e.Signed)-2)/2)
	fmt.Fprintf(w, "  leaf value   %s (sha256 of the signed bytes)\n", p.Value)
	b := p.Batch
	fmt.Fprintf(w, "batch %d\n", b.ID)
	fmt.Fprintf(w, "  period %s .. %s, %d events\n", b.PeriodStart.Format(time.RFC3339), b.PeriodEnd.Format(time.RFC3339), b.EventCount)
	fmt.Fprintf(w, "  root %s (recomputed from the batch's apply index: the digest each event was applied with; ledger audit re-hashes the events), %s (chain)\n", p.Root, p.ChainRoot)
	if b.TxHash != "" {
		fmt.Fprintf(w, "  committed in tx %s, block %d\n", b.TxHash, b.BlockNumber)
	} else {
		fmt.Fprintf(w, "  on chain; the store has no transaction hash for it (a commit recovered after a restart by an earlier build; ledger audit names it)\n")
	}
	if p.Remined != "" {
		fmt.Fprintf(w, "  NOTE: %s\n", p.Remined)
	}
	for _, d := range p.Differences {
		fmt.Fprintf(w, "  DIFFERS: %s\n", d)
	}
	fmt.Fprintf(w, "proof (%d siblings)\n", len(p.Proof))
	for _, s := range p.Proof {
		fmt.Fprintf(w, "  %s\n", s)
	}
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "NO"
	}
	fmt.Fprintf(w, "verified off chain (ledger/merkle):                  %s\n", yes(p.VerifiedOffChain))
	fmt.Fprintf(w, "verified by the contract's verify view (%s): %s\n", p.Contract, yes(p.VerifiedOnChain))
	if verdict != nil {
		fmt.Fprintf(w, "result: NOT PROVEN (the reason follows on stderr)\n")
	} else {
		fmt.Fprintf(w, "result: proven: the event is a leaf of batch %d's root as anchored\n", p.Batch.ID)
	}
}
