package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/simulator"
)

// explorePick is one real event of a kept run and the anchored batch it
// settled in, for the commands printExplore suggests.
type explorePick struct {
	event   string
	batch   uint64
	batches int
}

// pickExplore opens a kept run's clearing store read-only and picks the
// first applied event that settled in a batch already on chain.
func pickExplore(runDir string) (explorePick, error) {
	st, err := clearing.OpenStoreReadOnly(filepath.Join(runDir, "clearing", "store"), slog.New(slog.DiscardHandler))
	if err != nil {
		return explorePick{}, err
	}
	defer st.Close()
	batches, err := st.Batches(0, 1<<20)
	if err != nil {
		return explorePick{}, err
	}
	ids, err := st.AppliedEventIDs()
	if err != nil {
		return explorePick{}, err
	}
	pick := explorePick{batches: len(batches)}
	for _, id := range ids {
		p, _, err := st.Prove(id)
		if err != nil {
			continue // still in the open period
		}
		if c, err := st.Commit(p.BatchID); err != nil || c == nil {
			continue // sealed, not on chain yet
		}
		pick.event, pick.batch = id.String(), p.BatchID
		return pick, nil
	}
	return pick, fmt.Errorf("no event of %s settled in an anchored batch", runDir)
}

// printExplore ends a kept run with the commands that explore it: reopen
// it, get a token, look at a batch and an event, prove the event, audit.
//
// natsListen and chainListen are the run's --nats-listen and
// --chain-rpc-listen (empty: its defaults): the reopened clearing listens
// where the run did (a firewalled host allows only those ports).
func printExplore(w io.Writer, runDir, apiAddr, natsListen, chainListen string) error {
	p, err := pickExplore(runDir)
	if err != nil {
		return err
	}
	if apiAddr == "" {
		apiAddr = "127.0.0.1:8080"
	}
	api := "http://" + apiAddr
	exe := "faregate"
	if filepath.Base(os.Args[0]) == "faregate" && strings.ContainsRune(os.Args[0], filepath.Separator) {
		exe = os.Args[0] // ./bin/faregate after make run
	}
	fmt.Fprintf(w, "\n== explore this run (kept in %s: %d batches) ==\n", runDir, p.batches)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	reopen := fmt.Sprintf(exe+" clearing --data %s --http %s", runDir, apiAddr)
	if natsListen != "" {
		reopen += " --nats-listen " + natsListen
	}
	if chainListen != "" {
		reopen += " --chain-rpc-listen " + chainListen
	}
	if man, ok, err := simulator.LoadManifest(runDir); err == nil && ok && man.Acquirer == "simulated" {
		// Billing as the run did: without an acquirer the reopened
		// clearing bills nobody and a payment asked through the API is
		// refused (an outside test reopened it so).
		reopen += fmt.Sprintf(" --acquirer simulated --acquirer-seed %d --decline-rate %s", man.AcquirerSeed, strconv.FormatFloat(man.DeclineRate, 'g', -1, 64))
	}
	rows := [][2]string{
		{"reopen it (same store, chain, contract):", reopen},
		{"a token for the API:", fmt.Sprintf("TOKEN=$("+exe+" clearing token issue --data %s --role auditor --name explorer)", filepath.Join(runDir, "clearing"))},
		{"a batch and its answers:", fmt.Sprintf("curl -H \"Authorization: Bearer $TOKEN\" %s/v1/batches/%d", api, p.batch)},
		{"its events (CSV):", fmt.Sprintf("curl -H \"Authorization: Bearer $TOKEN\" '%s/v1/batches/%d/events?format=csv'", api, p.batch)},
		{"one event:", fmt.Sprintf("curl -H \"Authorization: Bearer $TOKEN\" %s/v1/events/%s", api, p.event)},
		{"prove it on chain:", fmt.Sprintf(exe+" ledger prove --data %s --event %s", runDir, p.event)},
		{"audit everything:", fmt.Sprintf(exe+" ledger audit --data %s", runDir)},
		{"the operators' answers:", fmt.Sprintf(exe+" ledger status --data %s", runDir)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "  %s\t%s\n", r[0], r[1])
	}
	fmt.Fprintf(tw, "  (prove and audit read the store: run them while clearing is stopped; ledger status works either way)\n")
	return tw.Flush()
}
